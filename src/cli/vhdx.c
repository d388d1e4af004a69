/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx: a command line tool to inspect, check, map, read, convert, create,
 * resize, compact, re-link, merge, set the metadata of and mount Hyper-V VHDX virtual disk images.
 * This file holds the command table and what the commands share; each group of commands has
 * its file.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gi18n.h>

#include "vhdx-cli.h"

static const ToolCommand commands[] = {
        { "info", N_ ("Show what an image is made of"), cli_cmd_info },
        { "check", N_ ("Check an image for corruption"), cli_cmd_check },
        { "map", N_ ("Show which parts of the virtual disk hold data"), cli_cmd_map },
        { "cat", N_ ("Write virtual disk bytes to standard output"), cli_cmd_cat },
        { "convert", N_ ("Convert an image to a sparse raw image, VHDX or qcow2"),
          cli_cmd_convert },
        { "create", N_ ("Create a new VHDX image"), cli_cmd_create },
        { "resize", N_ ("Change the size of an image's virtual disk"), cli_cmd_resize },
        { "compact", N_ ("Give back the file space an image does not need"), cli_cmd_compact },
        { "set-parent", N_ ("Point a differencing image at its moved parent"), cli_cmd_set_parent },
        { "merge", N_ ("Fold a differencing image into its parent or an ancestor"), cli_cmd_merge },
        { "set", N_ ("Change an image's physical sector size or Virtual Disk ID"), cli_cmd_set },
        { "mount", N_ ("Mount the file systems inside an image"), cli_cmd_mount },
        { "umount", N_ ("Unmount what 'vhdx mount' mounted"), cli_cmd_umount },
};

void
cli_open_options_clear (CliOpenOptions *options)
{
        g_clear_pointer (&options->parent, g_free);
        g_clear_pointer (&options->parent_dirs, g_strfreev);
}

VhdxFile *
cli_open_image (const char *path,
                VhdxOpenFlags flags,
                const CliOpenOptions *parents,
                struct stat *st,
                GError **error)
{
        VhdxOpenOptions options = {
                .path = path,
                .parent_path = parents != NULL ? parents->parent : NULL,
                .parent_dirs = parents != NULL ? (const char *const *) parents->parent_dirs : NULL,
        };
        VhdxFile *file;
        const char *member_path = path;
        int fd = vhdx_open_image_fd (path, (flags & VHDX_OPEN_FLAGS_READ_WRITE) != 0, st, error);

        if (fd < 0)
                return NULL;
        if (parents != NULL && parents->ignore_mismatch)
                flags |= VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH;
        if (parents != NULL && parents->force_share)
                flags |= VHDX_OPEN_FLAGS_FORCE_SHARE;
        file = vhdx_file_open_full (vhdx_io_new_fd (fd, TRUE), flags, &options, error);
        for (VhdxFile *member = file; member != NULL; member = vhdx_file_get_parent (member)) {
                const char *warning = vhdx_file_get_parent_warning (member);

                if (vhdx_file_get_info (member)->written_elsewhere) {
                        g_autofree char *display = g_filename_display_name (member_path);
                        g_autofree char *line = g_strdup_printf (
                                _ ("warning: another process is writing %s: what is read may "
                                   "change under it or be inconsistent"),
                                display);

                        tool_print_error (path, line);
                }
                if (warning != NULL) {
                        /* TRANSLATORS: a warning about an image, e.g. that its parent is not the
                         * one */
                        g_autofree char *line = g_strdup_printf (_ ("warning: %s"), warning);

                        tool_print_error (path, line);
                }
                member_path = vhdx_file_get_parent_path (member);
        }
        return file;
}

static void
print_help (void)
{
        g_print ("%s\n  vhdx %s\n\n", _ ("Usage:"), _ ("COMMAND [OPTION…] ARGUMENTS"));
        g_print ("%s\n\n", _ ("Inspect, check, repair, read, convert, create, resize, compact, "
                              "re-link, merge and set the metadata of Hyper-V VHDX virtual "
                              "disk images."));
        tool_print_commands (commands, G_N_ELEMENTS (commands));
        g_print ("\n%s\n", _ ("Options:"));
        g_print ("  %-18s%s\n", "-h, --help", _ ("Show this help"));
        g_print ("  %-18s%s\n", "--version", _ ("Show the version"));
        g_print ("\n%s\n", _ ("Run 'vhdx COMMAND --help' for the options of a command."));
}

int
main (int argc, char **argv)
{
        const ToolCommand *command;
        int status;

        tool_init ("vhdx");
        if (argc < 2)
                return tool_usage_error (_ ("no command given"));

        /* "vhdx help" and "vhdx help --help" are "vhdx --help". */
        if (tool_is_help_option (argv[1]) ||
            (g_str_equal (argv[1], "help") && (argc == 2 || tool_is_help_option (argv[2])))) {
                print_help ();
                return tool_flush_stdout () ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        if (g_str_equal (argv[1], "--version")) {
                g_print ("vhdx (libvhdx) %s\n", PACKAGE_VERSION);
                return tool_flush_stdout () ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        if (g_str_equal (argv[1], "help")) {
                /* "vhdx help COMMAND" is "vhdx COMMAND --help". */
                char *help_argv[] = { argv[2], (char *) "--help", NULL };

                command = tool_find_command (commands, G_N_ELEMENTS (commands), argv[2]);
                if (command == NULL)
                        return tool_usage_error (_ ("unknown command '%s'"), argv[2]);
                return command->func (2, help_argv);
        }
        if (argv[1][0] == '-')
                return tool_usage_error (_ ("unknown option '%s'"), argv[1]);

        command = tool_find_command (commands, G_N_ELEMENTS (commands), argv[1]);
        if (command == NULL)
                return tool_usage_error (_ ("unknown command '%s'"), argv[1]);

        status = command->func (argc - 1, argv + 1);
        if (!tool_flush_stdout () && status == EXIT_SUCCESS)
                status = EXIT_FAILURE;
        return status;
}
