/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx merge: a differencing image folded into its parent or an ancestor. */
#include "config.h"

#include <stdlib.h>

#include <glib/gi18n.h>

#include "vhdx-cli.h"
#include "vhdx-merge.h"

static void
add_guid (JsonBuilder *builder, const char *key, const VhdxGuid *guid)
{
        g_autofree char *text = vhdx_guid_to_string (guid);

        json_builder_set_member_name (builder, key);
        json_builder_add_string_value (builder, text);
}

static void
add_uint (JsonBuilder *builder, const char *key, guint64 value)
{
        json_builder_set_member_name (builder, key);
        json_builder_add_int_value (builder, (gint64) value);
}

static JsonNode *
result_to_json (const VhdxMergeResult *result, gboolean deleted)
{
        g_autoptr (JsonBuilder) builder = json_builder_new ();
        g_autofree char *target = g_filename_display_name (result->target_path);

        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "target");
        json_builder_add_string_value (builder, target);
        json_builder_set_member_name (builder, "merged");
        json_builder_begin_array (builder);
        for (guint i = 0; i < result->folded->len; i++) {
                g_autofree char *name =
                        g_filename_display_name (g_ptr_array_index (result->folded, i));

                json_builder_add_string_value (builder, name);
        }
        json_builder_end_array (builder);
        json_builder_set_member_name (builder, "deleted");
        json_builder_add_boolean_value (builder, deleted);
        add_uint (builder, "bytes-copied", result->bytes_copied);
        add_uint (builder, "bytes-zeroed", result->bytes_zeroed);
        add_uint (builder, "old-size", result->old_size);
        add_uint (builder, "new-size", result->new_size);
        add_guid (builder, "old-data-write-guid", &result->old_data_write_guid);
        add_guid (builder, "new-data-write-guid", &result->new_data_write_guid);
        json_builder_end_object (builder);
        return json_builder_get_root (builder);
}

int
cli_cmd_merge (int argc, char **argv)
{
        gboolean delete_merged = FALSE;
        gboolean force = FALSE;
        gboolean show_progress = FALSE;
        gboolean json = FALSE;
        g_autofree char *into = NULL;
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "into", 0, 0, G_OPTION_ARG_FILENAME, &into,
                  N_ ("Merge into ANCESTOR, an image further down the chain, instead of the "
                      "parent"),
                  N_ ("ANCESTOR") },
                { "delete-merged", 0, 0, G_OPTION_ARG_NONE, &delete_merged,
                  N_ ("Delete CHILD and the images between it and the target once merged"), NULL },
                { "force", 'f', 0, G_OPTION_ARG_NONE, &force,
                  N_ ("Merge even when other differencing images depend on the images changed "
                      "(they will no longer read as they did)"),
                  NULL },
                { "progress", 'p', 0, G_OPTION_ARG_NONE, &show_progress,
                  N_ ("Show progress on a terminal"), NULL },
                { "json", 0, 0, G_OPTION_ARG_NONE, &json,
                  N_ ("Print what changed as a JSON object"), NULL },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_auto (VhdxMergeResult) result = { 0 };
        ToolReportedProgress progress = { FALSE, FALSE, { 0 } };
        VhdxMergeFlags flags = VHDX_MERGE_FLAGS_NONE;
        gboolean ok;

        context = tool_command_context_new (
                "merge", _ ("CHILD"),
                _ ("Fold a differencing image into its parent or an ancestor."),
                _ ("Copies into the parent of the differencing image CHILD (or into\n"
                   "ANCESTOR, given with --into) what CHILD, and the images between the\n"
                   "two, store, as Hyper-V's Merge-VHD does: the parent then reads as\n"
                   "CHILD did, with its virtual size, disk identifier and physical sector\n"
                   "size.  The specification's parent_linkage2 protocol keeps the chain\n"
                   "readable at every point: a crash leaves CHILD reading as it did.\n"
                   "CHILD still reads the same afterwards; an image between CHILD and\n"
                   "ANCESTOR no longer does alone.  --delete-merged deletes CHILD and the\n"
                   "images between once merged.\n"
                   "\n"
                   "Other differencing images made from the parent (or from an image\n"
                   "between), found in the directories of the chain, would read other\n"
                   "data afterwards: the merge is refused, naming them, unless --force.\n"
                   "\n"
                   "With --json, prints one object with the keys target, merged (the\n"
                   "images folded, CHILD first), deleted, bytes-copied, bytes-zeroed,\n"
                   "old-size, new-size (the target's virtual size), old-data-write-guid\n"
                   "and new-data-write-guid (the target's).\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv) ||
            !tool_check_arguments ("merge", args, 1))
                return EXIT_FAILURE;
        if (delete_merged)
                flags |= VHDX_MERGE_FLAGS_DELETE_MERGED;
        if (force)
                flags |= VHDX_MERGE_FLAGS_FORCE;
        progress.wanted = show_progress;
        ok = vhdx_merge_images (args[0], into, flags, tool_progress_report, &progress, NULL,
                                &result, &error);
        tool_reported_progress_end (&progress, ok);
        if (!ok) {
                tool_print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        if (json) {
                g_autoptr (JsonNode) root = result_to_json (&result, delete_merged);

                tool_print_json (root);
        }
        return EXIT_SUCCESS;
}
