/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "vhdx-problem-private.h"

struct _VhdxProblem {
        VhdxSeverity severity;
        char *structure;
        guint64 offset;
        char *message;
};

G_DEFINE_BOXED_TYPE (VhdxProblem, vhdx_problem, vhdx_problem_copy, vhdx_problem_free)

VhdxProblem *
vhdx_problem_new (const VhdxFinding *finding)
{
        VhdxProblem *self = g_new0 (VhdxProblem, 1);

        self->severity = finding->severity;
        self->structure = g_strdup (finding->structure != NULL ? finding->structure : "");
        self->offset = finding->offset;
        self->message = g_strdup (finding->message != NULL ? finding->message : "");
        return self;
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
        VhdxProblem *copy;

        g_return_val_if_fail (self != NULL, NULL);

        copy = g_new0 (VhdxProblem, 1);
        copy->severity = self->severity;
        copy->structure = g_strdup (self->structure);
        copy->offset = self->offset;
        copy->message = g_strdup (self->message);
        return copy;
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

/**
 * vhdx_problem_get_severity:
 * @self: a problem
 *
 * Gets how serious the problem is.
 *
 * Returns: the severity: a warning, or an error for corruption
 *
 * Since: 0.1
 */
VhdxSeverity
vhdx_problem_get_severity (const VhdxProblem *self)
{
        g_return_val_if_fail (self != NULL, VHDX_SEVERITY_ERROR);

        return self->severity;
}

/**
 * vhdx_problem_get_structure:
 * @self: a problem
 *
 * Gets the structure the problem concerns, such as “header 1” or
 * “BAT entry 17”, in the language of the messages.
 *
 * Returns: (transfer none): the name of the structure
 *
 * Since: 0.1
 */
const char *
vhdx_problem_get_structure (const VhdxProblem *self)
{
        g_return_val_if_fail (self != NULL, NULL);

        return self->structure;
}

/**
 * vhdx_problem_get_offset:
 * @self: a problem
 *
 * Gets where the structure lies in the file.
 *
 * Returns: the file offset in bytes of the structure
 *
 * Since: 0.1
 */
guint64
vhdx_problem_get_offset (const VhdxProblem *self)
{
        g_return_val_if_fail (self != NULL, 0);

        return self->offset;
}

/**
 * vhdx_problem_get_message:
 * @self: a problem
 *
 * Gets what is wrong, as a translated sentence.
 *
 * Returns: (transfer none): the message
 *
 * Since: 0.1
 */
const char *
vhdx_problem_get_message (const VhdxProblem *self)
{
        g_return_val_if_fail (self != NULL, NULL);

        return self->message;
}
