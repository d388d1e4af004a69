/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx-pool list: what libvirt says of each volume of a pool, and the truth. */
#include "config.h"

#include <stdlib.h>

#include <glib.h>
#include <glib/gi18n.h>
#include <json-glib/json-glib.h>

#include "pool-scan.h"
#include "pool-util.h"

int
pool_cmd_list (int argc, char **argv)
{
        gboolean json = FALSE;
        g_autofree char *uri = NULL;
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "connect", 'c', 0, G_OPTION_ARG_STRING, &uri,
                  N_ ("Connect to the hypervisor at URI, as virsh does"), N_ ("URI") },
                { "json", 0, 0, G_OPTION_ARG_NONE, &json, N_ ("Print a JSON array"), NULL },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (virConnect) conn = NULL;
        g_autoptr (virStoragePool) pool = NULL;
        g_autoptr (GPtrArray) volumes = NULL;

        context = tool_command_context_new (
                "list", _ ("POOL"), _ ("Show what the volumes of a storage pool really are."),
                _ ("Refreshes POOL and lists its volumes: what libvirt says of each (format,\n"
                   "capacity, allocation) and, for each VHDX image among them (told by\n"
                   "content, whatever its name), what the image is: its virtual size, the\n"
                   "bytes it stores, its type, its chain of parents (and the pools that hold\n"
                   "them) and the state of its log.  A '*' marks what libvirt gets wrong.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv))
                return EXIT_FAILURE;
        if (args == NULL || g_strv_length (args) != 1)
                return tool_usage_error ("%s", _ ("expected one POOL"));

        conn = pool_connect (uri != NULL ? uri : pool_connect_uri, &error);
        if (conn == NULL) {
                tool_print_error_printf ("%s", error->message);
                return EXIT_FAILURE;
        }
        pool = pool_lookup (conn, args[0], &error);
        if (pool == NULL) {
                tool_print_error_printf ("%s", error->message);
                return EXIT_FAILURE;
        }
        if (!pool_ensure_active (pool, &error)) {
                tool_print_error_printf ("%s", error->message);
                return EXIT_FAILURE;
        }
        /* The volumes as the storage holds them now.  A pool busy with an
         * upload cannot be refreshed: list what libvirt knows, and say so. */
        if (virStoragePoolRefresh (pool, 0) < 0) {
                pool_set_libvirt_error (&error, _ ("warning: cannot refresh storage pool '%s'"),
                                        args[0]);
                tool_print_error_printf ("%s", error->message);
                g_clear_error (&error);
        }
        volumes = pool_scan (conn, pool, &error);
        if (volumes == NULL) {
                tool_print_error_printf ("%s", error->message);
                return EXIT_FAILURE;
        }

        if (json) {
                g_autoptr (JsonNode) root = pool_volumes_to_json (volumes);
                g_autofree char *text = json_to_string (root, TRUE);

                g_print ("%s\n", text);
        } else {
                pool_volumes_print_table (volumes);
        }
        return EXIT_SUCCESS;
}
