/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxProblem, something wrong with an image. */
#pragma once

#include <glib-object.h>

#include "vhdx-enums.h"

G_BEGIN_DECLS

#define VHDX_TYPE_PROBLEM (vhdx_problem_get_type ())

/**
 * VhdxProblem:
 *
 * Something wrong with an image, found while opening it or by
 * [method@Vhdx.Image.check]: how serious it is, the structure it concerns,
 * that structure's offset in the file, and a message saying what is wrong.
 *
 * Since: 0.1
 */
typedef struct _VhdxProblem VhdxProblem;

GType vhdx_problem_get_type (void) G_GNUC_CONST;

G_GNUC_WARN_UNUSED_RESULT VhdxProblem *vhdx_problem_copy (const VhdxProblem *self);
void vhdx_problem_free (VhdxProblem *self);

VhdxSeverity vhdx_problem_get_severity (const VhdxProblem *self);
const char *vhdx_problem_get_structure (const VhdxProblem *self);
guint64 vhdx_problem_get_offset (const VhdxProblem *self);
const char *vhdx_problem_get_message (const VhdxProblem *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxProblem, vhdx_problem_free)

G_END_DECLS
