/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A problem found while opening or checking an image. */
#pragma once

#include "vhdx-types.h"

G_BEGIN_DECLS

typedef struct {
        VhdxSeverity severity;
        char *structure; /* e.g. "header 1", "BAT entry 17" */
        guint64 offset;  /* file offset of the structure */
        char *message;
} VhdxFinding;

G_GNUC_WARN_UNUSED_RESULT VhdxFinding *vhdx_finding_new (VhdxSeverity severity,
                                                         const char *structure,
                                                         guint64 offset,
                                                         const char *message);
void vhdx_finding_free (VhdxFinding *problem);

/* Appends a problem to @problems (a GPtrArray owning VhdxFinding). */
void vhdx_findings_add (GPtrArray *problems,
                        VhdxSeverity severity,
                        const char *structure,
                        guint64 offset,
                        const char *format,
                        ...) G_GNUC_PRINTF (5, 6);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxFinding, vhdx_finding_free)

G_END_DECLS
