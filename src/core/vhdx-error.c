/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The VHDX error domain, and errors that name a structure and its offset. */
#include "vhdx-error.h"

/* clang-format off */
G_DEFINE_QUARK (vhdx-error-quark, vhdx_error)
/* clang-format on */

#include "vhdx-private.h"

void
vhdx_set_error (GError **error,
                VhdxError code,
                const char *structure,
                guint64 offset,
                const char *format,
                ...)
{
        g_autofree char *details = NULL;
        va_list args;

        va_start (args, format);
        details = g_strdup_vprintf (format, args);
        va_end (args);
        /* TRANSLATORS: the first %s is a structure such as "header 1", then a
         * file offset in bytes, then what was wrong with it. */
        g_set_error (error, VHDX_ERROR, code, _ ("%s at offset %llu: %s"), structure,
                     (unsigned long long) offset, details);
}
