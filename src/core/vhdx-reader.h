/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading the virtual disk of an opened image (vhdx-file.h): stored
 * payload, the parent's data where a differencing image stores none, zeros
 * elsewhere.  May be called from several threads at once, also while the
 * image is written.
 */
#pragma once

#include "vhdx-file.h"

G_BEGIN_DECLS

/* VHDX_ERROR_OUT_OF_RANGE unless [@offset, @offset + @length) lies inside the
 * virtual disk: the check every read, write and map of a range makes first. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_check_range (VhdxFile *file,
                                                          guint64 offset,
                                                          guint64 length,
                                                          GError **error);

/* Read @count bytes of the virtual disk at @offset, which must lie inside it. */
G_GNUC_WARN_UNUSED_RESULT gboolean
vhdx_file_read (VhdxFile *file, guint64 offset, void *buf, gsize count, GError **error);

G_END_DECLS
