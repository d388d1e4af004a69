/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "vhdx-reader.h"

G_BEGIN_DECLS

/*
 * Validate every structure and every BAT entry of an opened file, appending
 * what is wrong to @problems.  Returns FALSE with @error only when checking
 * itself failed (an I/O error); corruption is reported as problems.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_check (VhdxFile *file,
                                                    GPtrArray *problems,
                                                    GError **error);

/* TRUE if @problems holds a problem of severity error. */
gboolean vhdx_findings_have_errors (GPtrArray *problems);

G_END_DECLS
