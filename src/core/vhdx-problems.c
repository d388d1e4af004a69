/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Problems found while opening or checking an image (see vhdx-problems.h). */
#include "vhdx-problems.h"

VhdxProblem *
vhdx_problem_new (VhdxSeverity severity, const char *structure, guint64 offset, const char *message)
{
        VhdxProblem *problem = g_new0 (VhdxProblem, 1);

        problem->severity = severity;
        problem->structure = g_strdup (structure != NULL ? structure : "");
        problem->offset = offset;
        problem->message = g_strdup (message != NULL ? message : "");
        return problem;
}

/**
 * vhdx_problem_copy:
 * @self: a problem
 *
 * Copies a problem.
 *
 * Returns: (transfer full): a copy of @self
 *
 * Since: 0.1
 */
VhdxProblem *
vhdx_problem_copy (const VhdxProblem *self)
{
        g_return_val_if_fail (self != NULL, NULL);

        return vhdx_problem_new (self->severity, self->structure, self->offset, self->message);
}

/**
 * vhdx_problem_free:
 * @self: (nullable): a problem
 *
 * Frees a problem.
 *
 * Since: 0.1
 */
void
vhdx_problem_free (VhdxProblem *self)
{
        if (self == NULL)
                return;
        g_free (self->structure);
        g_free (self->message);
        g_free (self);
}

GPtrArray *
vhdx_problems_new (void)
{
        return g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
}

void
vhdx_problems_add (GPtrArray *problems,
                   VhdxSeverity severity,
                   const char *structure,
                   guint64 offset,
                   const char *format,
                   ...)
{
        g_autofree char *message = NULL;
        va_list args;

        va_start (args, format);
        message = g_strdup_vprintf (format, args);
        va_end (args);
        g_ptr_array_add (problems, vhdx_problem_new (severity, structure, offset, message));
}

void
vhdx_problems_add_all (GPtrArray *problems, GPtrArray *source)
{
        for (guint i = 0; source != NULL && i < source->len; i++)
                g_ptr_array_add (problems, vhdx_problem_copy (g_ptr_array_index (source, i)));
}

gboolean
vhdx_problems_have_errors (GPtrArray *problems)
{
        for (guint i = 0; i < problems->len; i++) {
                const VhdxProblem *p = g_ptr_array_index (problems, i);

                if (p->severity == VHDX_SEVERITY_ERROR)
                        return TRUE;
        }
        return FALSE;
}
