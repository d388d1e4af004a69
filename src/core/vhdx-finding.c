/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "vhdx-finding.h"

VhdxFinding *
vhdx_finding_new (VhdxSeverity severity, const char *structure, guint64 offset, const char *message)
{
        VhdxFinding *problem = g_new0 (VhdxFinding, 1);

        problem->severity = severity;
        problem->structure = g_strdup (structure);
        problem->offset = offset;
        problem->message = g_strdup (message);
        return problem;
}

void
vhdx_finding_free (VhdxFinding *problem)
{
        if (problem == NULL)
                return;
        g_free (problem->structure);
        g_free (problem->message);
        g_free (problem);
}

void
vhdx_findings_add (GPtrArray *problems,
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
        g_ptr_array_add (problems, vhdx_finding_new (severity, structure, offset, message));
}
