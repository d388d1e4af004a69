/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxProblem as a boxed type, and its getters; the structure is the engine's (vhdx-problems.h). */
#include "config.h"

#include "vhdx-problems.h"

G_DEFINE_BOXED_TYPE (VhdxProblem, vhdx_problem, vhdx_problem_copy, vhdx_problem_free)

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
