/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx-pool resize and merge: a VHDX volume of a pool changed in place, then the pool refreshed. */
#include "config.h"

#include <stdlib.h>

#include <gio/gio.h>
#include <glib/gi18n.h>

#include "pool-util.h"
#include "vhdx.h"

/* The local path of the volume @name of the active pool @pool_name, which
 * is changed in place: the connection must be to this host. */
static char *
volume_path (virConnectPtr conn, const char *pool_name, const char *name, GError **error)
{
        g_autoptr (virStoragePool) pool = NULL;
        g_autoptr (virStorageVol) vol = NULL;
        char *path;
        char *result;

        if (!pool_connection_is_local (conn)) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                             _ ("the images of a pool on another host cannot be changed from "
                                "here (%s)"),
                             pool_connection_uri_display (pool_connect_uri));
                return NULL;
        }
        pool = pool_lookup (conn, pool_name, error);
        if (pool == NULL || !pool_ensure_active (pool, error))
                return NULL;
        /* A volume made since the last refresh is found too. */
        if (virStoragePoolRefresh (pool, 0) < 0) {
                pool_set_libvirt_error (error, _ ("cannot refresh storage pool '%s'"), pool_name);
                return NULL;
        }
        vol = virStorageVolLookupByName (pool, name);
        if (vol == NULL) {
                pool_set_libvirt_error (error, _ ("volume '%s' of storage pool '%s'"), name,
                                        pool_name);
                return NULL;
        }
        path = virStorageVolGetPath (vol);
        if (path == NULL) {
                pool_set_libvirt_error (error, _ ("volume '%s' of storage pool '%s'"), name,
                                        pool_name);
                return NULL;
        }
        result = g_strdup (path);
        free (path);
        return result;
}

/* Refresh @pool_name so that libvirt, list and expose see the change. */
static gboolean
refresh (virConnectPtr conn, const char *pool_name, GError **error)
{
        g_autoptr (virStoragePool) pool = pool_lookup (conn, pool_name, error);

        if (pool == NULL)
                return FALSE;
        if (virStoragePoolRefresh (pool, 0) < 0) {
                pool_set_libvirt_error (error, _ ("cannot refresh storage pool '%s'"), pool_name);
                return FALSE;
        }
        return TRUE;
}

int
pool_cmd_resize (int argc, char **argv)
{
        static const char *const takes_value[] = { "--connect", "-c", "--pool", NULL };
        g_autofree char *uri = NULL;
        g_autofree char *pool_name = NULL;
        gboolean discard = FALSE;
        gboolean show_progress = FALSE;
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "connect", 'c', 0, G_OPTION_ARG_STRING, &uri,
                  N_ ("Connect to the hypervisor at URI, as virsh does"), N_ ("URI") },
                { "pool", 0, 0, G_OPTION_ARG_STRING, &pool_name,
                  N_ ("The storage pool that holds the volume"), N_ ("POOL") },
                { "shrink-discarding-data", 0, 0, G_OPTION_ARG_NONE, &discard,
                  N_ ("Shrink even when data is stored past SIZE, which is lost"), NULL },
                { "progress", 'p', 0, G_OPTION_ARG_NONE, &show_progress,
                  N_ ("Show progress on a terminal"), NULL },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (virConnect) conn = NULL;
        g_autoptr (GFile) file = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autofree char *path = NULL;
        g_autofree char **reordered = NULL;
        g_autofree char *size_text = NULL;
        ToolReportedProgress progress = { show_progress, FALSE, { 0 } };
        ToolSizeChange change;
        guint64 new_size;
        gboolean ok;

        context = tool_command_context_new (
                "resize", _ ("--pool POOL VOLUME [+|-]SIZE"),
                _ ("Change the size of the virtual disk of a VHDX volume."),
                _ ("Makes the virtual disk of the VHDX image VOLUME of POOL SIZE bytes in\n"
                   "place, as 'vhdx resize' does (a K, M, G or T suffix; +SIZE and -SIZE\n"
                   "grow or shrink it by SIZE), then refreshes POOL, so that libvirt,\n"
                   "'vhdx-pool list' and 'vhdx-pool expose' show the new size.  Shrinking\n"
                   "is refused where data is stored past SIZE, unless\n"
                   "--shrink-discarding-data.  The connection must be to this host.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        reordered = tool_arguments_with_negative_sizes_last (argc, argv, takes_value);
        if (reordered != NULL) {
                argv = reordered;
                argc = (int) g_strv_length (argv);
        }
        if (!tool_parse_command_line (context, &argc, &argv))
                return EXIT_FAILURE;
        if (pool_name == NULL)
                return tool_usage_error ("%s", _ ("--pool is required"));
        if (args == NULL || g_strv_length (args) != 2)
                return tool_usage_error ("%s", _ ("expected VOLUME and SIZE"));
        if (!tool_size_change_parse ("SIZE", args[1], &change))
                return EXIT_FAILURE;

        conn = pool_connect (uri != NULL ? uri : pool_connect_uri, &error);
        if (conn == NULL)
                return pool_fail (error);
        path = volume_path (conn, pool_name, args[0], &error);
        if (path == NULL)
                return pool_fail (error);
        file = g_file_new_for_path (path);
        image = vhdx_image_new (file, VHDX_OPEN_FLAGS_READ_WRITE, NULL, &error);
        if (image == NULL) {
                g_prefix_error (&error, "%s: ", args[0]);
                return pool_fail (error);
        }
        if (!tool_size_change_apply (&change, vhdx_image_get_virtual_size (image), &new_size))
                return EXIT_FAILURE;
        ok = vhdx_image_resize (image, new_size,
                                discard ? VHDX_RESIZE_FLAGS_DISCARD_DATA : VHDX_RESIZE_FLAGS_NONE,
                                tool_progress_report, &progress, NULL, &error) &&
             vhdx_image_close (image, NULL, &error);
        tool_reported_progress_end (&progress, ok);
        if (!ok) {
                g_prefix_error (&error, "%s: ", args[0]);
                return pool_fail (error);
        }
        if (!refresh (conn, pool_name, &error))
                return pool_fail (error);
        size_text = pool_format_capacity (new_size);
        g_print ("%s: %s\n", args[0], size_text);
        return EXIT_SUCCESS;
}

int
pool_cmd_merge (int argc, char **argv)
{
        g_autofree char *uri = NULL;
        g_autofree char *pool_name = NULL;
        g_autofree char *into = NULL;
        gboolean delete_merged = FALSE;
        gboolean force = FALSE;
        gboolean show_progress = FALSE;
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "connect", 'c', 0, G_OPTION_ARG_STRING, &uri,
                  N_ ("Connect to the hypervisor at URI, as virsh does"), N_ ("URI") },
                { "pool", 0, 0, G_OPTION_ARG_STRING, &pool_name,
                  N_ ("The storage pool that holds the volume"), N_ ("POOL") },
                { "into", 0, 0, G_OPTION_ARG_STRING, &into,
                  N_ ("Merge into the volume ANCESTOR of POOL, further down the chain, instead "
                      "of the parent"),
                  N_ ("ANCESTOR") },
                { "delete-merged", 0, 0, G_OPTION_ARG_NONE, &delete_merged,
                  N_ ("Delete VOLUME and the images between it and the target once merged"), NULL },
                { "force", 'f', 0, G_OPTION_ARG_NONE, &force,
                  N_ ("Merge even when other differencing images depend on the images changed "
                      "(they will no longer read as they did)"),
                  NULL },
                { "progress", 'p', 0, G_OPTION_ARG_NONE, &show_progress,
                  N_ ("Show progress on a terminal"), NULL },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (virConnect) conn = NULL;
        g_autoptr (GFile) child = NULL;
        g_autoptr (GFile) ancestor = NULL;
        g_autofree char *path = NULL;
        ToolReportedProgress progress = { show_progress, FALSE, { 0 } };
        VhdxMergeFlags flags = VHDX_MERGE_FLAGS_NONE;
        gboolean ok;

        context = tool_command_context_new (
                "merge", _ ("--pool POOL VOLUME"),
                _ ("Fold a differencing VHDX volume into its parent."),
                _ ("Merges the differencing image VOLUME of POOL (a checkpoint) into its\n"
                   "parent, or into the volume ANCESTOR given with --into, as 'vhdx merge'\n"
                   "does: the parent then reads as VOLUME did.  --delete-merged deletes\n"
                   "VOLUME (and the images between) once merged.  Other differencing\n"
                   "images made from the images changed refuse the merge unless --force.\n"
                   "POOL is refreshed afterwards, so that libvirt, 'vhdx-pool list' and\n"
                   "'vhdx-pool expose' show the new state.  The connection must be to this\n"
                   "host.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv))
                return EXIT_FAILURE;
        if (pool_name == NULL)
                return tool_usage_error ("%s", _ ("--pool is required"));
        if (args == NULL || g_strv_length (args) != 1)
                return tool_usage_error ("%s", _ ("expected one VOLUME"));
        if (delete_merged)
                flags |= VHDX_MERGE_FLAGS_DELETE_MERGED;
        if (force)
                flags |= VHDX_MERGE_FLAGS_FORCE;

        conn = pool_connect (uri != NULL ? uri : pool_connect_uri, &error);
        if (conn == NULL)
                return pool_fail (error);
        path = volume_path (conn, pool_name, args[0], &error);
        if (path == NULL)
                return pool_fail (error);
        child = g_file_new_for_path (path);
        if (into != NULL) {
                g_autofree char *into_path = volume_path (conn, pool_name, into, &error);

                if (into_path == NULL)
                        return pool_fail (error);
                ancestor = g_file_new_for_path (into_path);
        }
        ok = vhdx_image_merge (child, ancestor, flags, tool_progress_report, &progress, NULL,
                               &error);
        tool_reported_progress_end (&progress, ok);
        if (!ok) {
                g_prefix_error (&error, "%s: ", args[0]);
                return pool_fail (error);
        }
        if (!refresh (conn, pool_name, &error))
                return pool_fail (error);
        return EXIT_SUCCESS;
}
