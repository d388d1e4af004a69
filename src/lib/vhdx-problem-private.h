/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "vhdx-finding.h"
#include "vhdx-problem.h"

G_BEGIN_DECLS

G_GNUC_WARN_UNUSED_RESULT VhdxProblem *vhdx_problem_new (const VhdxFinding *finding);

G_END_DECLS
