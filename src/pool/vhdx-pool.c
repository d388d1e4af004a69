/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx-pool: VHDX images in libvirt storage pools.  libvirt has no VHDX
 * format: it lists a VHDX file as a raw volume the size of the container.
 * This helper shows what such volumes really are, keeps an index of them up
 * to date, imports images into pools as raw or qcow2 volumes, exposes a
 * directory of images as raw files that libvirt can use directly,
 * resizes and merges the images of a pool in place, and attaches images to
 * domains as NBD disks that nbdkit serves.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gi18n.h>

#include "pool-util.h"

static const ToolCommand commands[] = {
        { "list", N_ ("Show what the volumes of a pool really are"), pool_cmd_list },
        { "watch", N_ ("Keep a JSON index of pools up to date"), pool_cmd_watch },
        { "import", N_ ("Copy a VHDX image into a pool as a raw or qcow2 volume"),
          pool_cmd_import },
        { "expose", N_ ("Show VHDX images as raw files in a FUSE file system"), pool_cmd_expose },
        { "resize", N_ ("Change the size of a VHDX volume's virtual disk"), pool_cmd_resize },
        { "merge", N_ ("Fold a differencing VHDX volume into its parent"), pool_cmd_merge },
        { "attach", N_ ("Attach a VHDX image to a domain as an NBD disk"), pool_cmd_attach },
        { "detach", N_ ("Detach a VHDX image from a domain and stop its server"), pool_cmd_detach },
};

#ifndef HAVE_FUSE3
int
pool_cmd_expose (int argc, char **argv)
{
        tool_print_error_printf ("%s",
                                 _ ("expose is not available: vhdx-pool was built without FUSE"));
        return EXIT_FAILURE;
}
#endif

static void
print_help (void)
{
        g_print ("%s\n  vhdx-pool %s\n\n", _ ("Usage:"),
                 _ ("[OPTION…] COMMAND [OPTION…] ARGUMENTS"));
        g_print ("%s\n\n", _ ("Use VHDX images with libvirt storage pools."));
        tool_print_commands (commands, G_N_ELEMENTS (commands));
        g_print ("\n%s\n", _ ("Options:"));
        g_print ("  %-22s%s\n", "-c, --connect=URI", _ ("Connect to the hypervisor at URI"));
        g_print ("  %-22s%s\n", "-h, --help", _ ("Show this help"));
        g_print ("  %-22s%s\n", "--version", _ ("Show the version"));
        g_print ("\n%s\n",
                 _ ("Without --connect, LIBVIRT_DEFAULT_URI or libvirt's default is used."));
        g_print ("%s\n", _ ("Run 'vhdx-pool COMMAND --help' for the options of a command."));
}

int
main (int argc, char **argv)
{
        const ToolCommand *command;
        int first = 1;
        int status;

        tool_init ("vhdx-pool");

        /* Options before the command, as virsh takes them. */
        while (first < argc && argv[first][0] == '-') {
                const char *arg = argv[first];

                if (tool_is_help_option (arg)) {
                        print_help ();
                        return tool_flush_stdout () ? EXIT_SUCCESS : EXIT_FAILURE;
                }
                if (g_str_equal (arg, "--version")) {
                        g_print ("vhdx-pool (libvhdx) %s\n", PACKAGE_VERSION);
                        return tool_flush_stdout () ? EXIT_SUCCESS : EXIT_FAILURE;
                }
                if (g_str_equal (arg, "-c") || g_str_equal (arg, "--connect")) {
                        if (first + 1 >= argc)
                                return tool_usage_error (_ ("%s needs a URI"), arg);
                        g_free (pool_connect_uri);
                        pool_connect_uri = g_strdup (argv[first + 1]);
                        first += 2;
                        continue;
                }
                if (g_str_has_prefix (arg, "--connect=")) {
                        g_free (pool_connect_uri);
                        pool_connect_uri = g_strdup (arg + strlen ("--connect="));
                        first++;
                        continue;
                }
                return tool_usage_error (_ ("unknown option '%s'"), arg);
        }
        if (first >= argc)
                return tool_usage_error ("%s", _ ("no command given"));

        if (g_str_equal (argv[first], "help")) {
                /* "vhdx-pool help COMMAND" is "vhdx-pool COMMAND --help". */
                char *help_argv[] = { argv[first + 1], (char *) "--help", NULL };

                if (first + 1 >= argc || tool_is_help_option (argv[first + 1])) {
                        print_help ();
                        return tool_flush_stdout () ? EXIT_SUCCESS : EXIT_FAILURE;
                }
                command = tool_find_command (commands, G_N_ELEMENTS (commands), argv[first + 1]);
                if (command == NULL)
                        return tool_usage_error (_ ("unknown command '%s'"), argv[first + 1]);
                return command->func (2, help_argv);
        }

        command = tool_find_command (commands, G_N_ELEMENTS (commands), argv[first]);
        if (command == NULL)
                return tool_usage_error (_ ("unknown command '%s'"), argv[first]);

        pool_libvirt_init ();
        status = command->func (argc - first, argv + first);
        if (!tool_flush_stdout () && status == EXIT_SUCCESS)
                status = EXIT_FAILURE;
        g_free (pool_connect_uri);
        return status;
}
