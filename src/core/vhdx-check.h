/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Checking an opened image: every structure, every BAT entry, overlaps, and the parents. */
#pragma once

#include "vhdx-file.h"

G_BEGIN_DECLS

/*
 * Validate every structure and every BAT entry of an opened file, appending
 * what is wrong to @problems.  Returns FALSE with @error only when checking
 * itself failed (an I/O error); corruption is reported as problems.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_check (VhdxFile *file,
                                                    GPtrArray *problems,
                                                    GError **error);

/*
 * For opening @file for writing: VHDX_ERROR_INVALID, naming both, when two
 * BAT entries (payload blocks, sector bitmaps) give out the same bytes of
 * the file, since a write to one would destroy the other's data.  Reads
 * every BAT entry; memory grows with the runs of blocks that are not one
 * after the other in the file, not with the size of the disk.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_check_exclusive_space (VhdxFile *file, GError **error);

G_END_DECLS
