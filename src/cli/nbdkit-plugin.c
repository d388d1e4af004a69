/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How the commands serve an image through nbdkit: the vhdx plugin's arguments. */
#include "config.h"

#include "vhdx-cli.h"

void
cli_nbdkit_add_image_args (GPtrArray *argv, const char *image, const CliOpenOptions *parents)
{
        g_ptr_array_add (argv, g_strdup_printf ("file=%s", image));
        if (parents->parent != NULL)
                g_ptr_array_add (argv, g_strdup_printf ("parent=%s", parents->parent));
        for (guint i = 0; parents->parent_dirs != NULL && parents->parent_dirs[i]; i++)
                g_ptr_array_add (argv, g_strdup_printf ("parent-dir=%s", parents->parent_dirs[i]));
        if (parents->ignore_mismatch)
                g_ptr_array_add (argv, g_strdup ("ignore-parent-mismatch=true"));
        if (parents->force_share)
                g_ptr_array_add (argv, g_strdup ("force-share=true"));
}
