/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx convert -O qcow2: QEMU writes the qcow2 image, reading the virtual disk through nbdkit and
 * the plugin. */
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

#include <glib/gi18n.h>

#include "vhdx-cli.h"

/* In the child, before exec: its standard output is our standard error. */
static void
stdout_to_stderr (gpointer data)
{
        dup2 (STDERR_FILENO, STDOUT_FILENO);
}

/* @program's path, or NULL with an error naming the Debian package. */
static char *
need_program (const char *program, const char *package, GError **error)
{
        char *path = g_find_program_in_path (program);

        if (path == NULL)
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                             _ ("qcow2 output needs %s (Debian package %s), which is not "
                                "installed"),
                             program, package);
        return path;
}

gboolean
cli_convert_to_qcow2 (const char *source,
                      gboolean source_is_vhdx,
                      const CliOpenOptions *parents,
                      const char *destination,
                      gboolean show_progress,
                      GError **error)
{
        g_autofree char *qemu_img = need_program ("qemu-img", "qemu-utils", error);
        g_autofree char *nbdkit = NULL;
        g_autofree char *plugin = NULL;
        g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
        g_auto (GStrv) env = g_get_environ ();
        gboolean progress = show_progress && isatty (STDERR_FILENO);
        int status = 0;

        if (qemu_img == NULL)
                return FALSE;
        /* The output goes to DESTINATION's temporary name, named here: no quoting. */
        env = g_environ_setenv (env, "VHDX_QCOW2_OUTPUT", destination, TRUE);
        if (source_is_vhdx) {
                nbdkit = need_program ("nbdkit", "nbdkit", error);
                if (nbdkit == NULL)
                        return FALSE;
                plugin = tool_nbdkit_plugin_path ();
                g_ptr_array_add (argv, g_strdup (nbdkit));
                /* A private UNIX socket, read-only, for as long as qemu-img runs. */
                g_ptr_array_add (argv, g_strdup ("--exit-with-parent"));
                g_ptr_array_add (argv, g_strdup ("-r"));
                g_ptr_array_add (argv, g_strdup ("-U"));
                g_ptr_array_add (argv, g_strdup ("-"));
                g_ptr_array_add (argv, g_strdup (plugin));
                cli_nbdkit_add_image_args (argv, source, parents);
                g_ptr_array_add (argv, g_strdup ("--run"));
                g_ptr_array_add (
                        argv, g_strdup_printf ("exec qemu-img convert %s-f raw -O qcow2 \"$uri\" "
                                               "\"$VHDX_QCOW2_OUTPUT\"",
                                               progress ? "-p " : ""));
        } else {
                g_ptr_array_add (argv, g_strdup (qemu_img));
                g_ptr_array_add (argv, g_strdup ("convert"));
                if (progress)
                        g_ptr_array_add (argv, g_strdup ("-p"));
                g_ptr_array_add (argv, g_strdup ("-f"));
                g_ptr_array_add (argv, g_strdup ("raw"));
                g_ptr_array_add (argv, g_strdup ("-O"));
                g_ptr_array_add (argv, g_strdup ("qcow2"));
                g_ptr_array_add (argv, g_strdup (source));
                g_ptr_array_add (argv, g_strdup (destination));
        }
        g_ptr_array_add (argv, NULL);
        /* qemu-img's progress goes to our standard error, as ours does. */
        if (!g_spawn_sync (NULL, (char **) argv->pdata, env,
                           progress ? G_SPAWN_CHILD_INHERITS_STDIN : G_SPAWN_DEFAULT,
                           progress ? stdout_to_stderr : NULL, NULL, NULL, NULL, &status, error))
                return FALSE;
        if (!g_spawn_check_wait_status (status, NULL)) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                             source_is_vhdx ? _ ("qemu-img convert through nbdkit failed")
                                            : _ ("qemu-img convert failed"));
                return FALSE;
        }
        return TRUE;
}
