/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Problems found while opening or checking an image, and lists of them.
 * VhdxProblem is the library's public boxed type (vhdx-problem.h, whose
 * copy and free functions live here): its structure is defined once, here.
 */
#pragma once

#include "vhdx-problem.h"
#include "vhdx-types.h"

G_BEGIN_DECLS

struct _VhdxProblem {
        VhdxSeverity severity;
        char *structure; /* e.g. "header 1", "BAT entry 17" */
        guint64 offset;  /* file offset of the structure */
        char *message;
};

G_GNUC_WARN_UNUSED_RESULT VhdxProblem *vhdx_problem_new (VhdxSeverity severity,
                                                         const char *structure,
                                                         guint64 offset,
                                                         const char *message);

/* An empty GPtrArray that owns VhdxProblems. */
G_GNUC_WARN_UNUSED_RESULT GPtrArray *vhdx_problems_new (void);

/* Append a problem to @problems. */
void vhdx_problems_add (GPtrArray *problems,
                        VhdxSeverity severity,
                        const char *structure,
                        guint64 offset,
                        const char *format,
                        ...) G_GNUC_PRINTF (5, 6);

/* Append copies of the problems of @source to @problems. */
void vhdx_problems_add_all (GPtrArray *problems, GPtrArray *source);

/* TRUE if @problems holds a problem of severity error. */
gboolean vhdx_problems_have_errors (GPtrArray *problems);

G_END_DECLS
