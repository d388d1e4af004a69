/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx set-parent: a differencing image pointed at its parent after the parent moved. */
#include "config.h"

#include <stdlib.h>

#include <glib/gi18n.h>

#include "vhdx-cli.h"
#include "vhdx-relink.h"

static void
add_string_or_null (JsonBuilder *builder, const char *key, const char *value)
{
        json_builder_set_member_name (builder, key);
        if (value != NULL)
                json_builder_add_string_value (builder, value);
        else
                json_builder_add_null_value (builder);
}

static JsonNode *
result_to_json (const char *child_path, const char *parent_path, const VhdxSetParentResult *result)
{
        g_autoptr (JsonBuilder) builder = json_builder_new ();
        g_autofree char *child = g_filename_display_name (child_path);
        g_autofree char *parent = g_filename_display_name (parent_path);

        json_builder_begin_object (builder);
        add_string_or_null (builder, "filename", child);
        add_string_or_null (builder, "parent", parent);
        add_string_or_null (builder, "old-relative-path", result->old_relative_path);
        add_string_or_null (builder, "new-relative-path", result->new_relative_path);
        add_string_or_null (builder, "absolute-path", result->absolute_path);
        json_builder_set_member_name (builder, "linkage-changed");
        json_builder_add_boolean_value (builder, result->linkage_changed);
        add_string_or_null (builder, "old-linkage", result->old_linkage);
        add_string_or_null (builder, "new-linkage", result->new_linkage);
        json_builder_set_member_name (builder, "volume-path-dropped");
        json_builder_add_boolean_value (builder, result->volume_path_dropped);
        json_builder_end_object (builder);
        return json_builder_get_root (builder);
}

static int
set_parent (const char *child_path,
            const char *parent_path,
            gboolean ignore_mismatch,
            gboolean json,
            const CliOpenOptions *search)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) parent = NULL;
        g_autoptr (VhdxFile) child = NULL;
        g_auto (VhdxSetParentResult) result = { 0 };

        /* PARENT's own parents are found as --parent-dir says. */
        parent = cli_open_image (parent_path, 0, search, NULL, &error);
        if (parent == NULL) {
                tool_print_file_error (parent_path, error);
                return EXIT_FAILURE;
        }
        /* The child's old parent is typically gone: it is not opened. */
        child = cli_open_image (child_path, VHDX_OPEN_FLAGS_READ_WRITE | VHDX_OPEN_FLAGS_NO_PARENT,
                                NULL, NULL, &error);
        if (child == NULL) {
                tool_print_file_error (child_path, error);
                return EXIT_FAILURE;
        }
        if (!vhdx_file_set_parent (child, child_path, parent, parent_path, ignore_mismatch, &result,
                                   &error)) {
                tool_print_file_error (child_path, error);
                return EXIT_FAILURE;
        }
        if (!vhdx_file_close (child, &error)) {
                tool_print_file_error (child_path, error);
                return EXIT_FAILURE;
        }
        if (result.linkage_changed) {
                g_autofree char *line = g_strdup_printf (
                        _ ("warning: the parent is not the image this one was made from: its "
                           "linkage changed from %s to %s"),
                        result.old_linkage != NULL ? result.old_linkage : "-", result.new_linkage);

                tool_print_error (child_path, line);
        }
        if (json) {
                g_autoptr (JsonNode) root = result_to_json (child_path, parent_path, &result);

                tool_print_json (root);
        }
        return EXIT_SUCCESS;
}

int
cli_cmd_set_parent (int argc, char **argv)
{
        gboolean json = FALSE;
        g_auto (GStrv) args = NULL;
        g_auto (CliOpenOptions) options = { 0 };
        const GOptionEntry entries[] = { { "json", 0, 0, G_OPTION_ARG_NONE, &json,
                                           N_ ("Print what changed as a JSON object"), NULL },
                                         CLI_PARENT_SEARCH_OPTION_ENTRIES (&options),
                                         { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY,
                                           &args, NULL, NULL },
                                         G_OPTION_ENTRY_NULL };
        g_autoptr (GOptionContext) context = NULL;
        CliOpenOptions search = { 0 };

        context = tool_command_context_new (
                "set-parent", _ ("CHILD PARENT"),
                _ ("Point a differencing image at its parent after the parent moved."),
                _ ("Rewrites the parent locator of the differencing image CHILD so that\n"
                   "it names PARENT, as Hyper-V's Set-VHD -ParentPath does: the relative\n"
                   "path (from CHILD's directory, with backslashes) and the absolute one\n"
                   "are PARENT's; a volume path, which Linux cannot name, is dropped.\n"
                   "CHILD's old parent need not exist.  PARENT must be the image CHILD\n"
                   "was made from (its DataWriteGuid is the one CHILD's locator names)\n"
                   "and have the same logical sector size; --ignore-parent-mismatch takes\n"
                   "another image, with a warning, and makes its DataWriteGuid the one\n"
                   "CHILD names.  CHILD's DataWriteGuid is kept: what its disk reads does\n"
                   "not change.  The change goes through CHILD's log: a crash leaves the\n"
                   "old locator or the new one.  --parent-dir applies to the parents of\n"
                   "PARENT.\n"
                   "\n"
                   "With --json, prints one object with the keys filename, parent,\n"
                   "old-relative-path, new-relative-path, absolute-path,\n"
                   "linkage-changed, old-linkage, new-linkage and volume-path-dropped.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv) ||
            !tool_check_arguments ("set-parent", args, 2))
                return EXIT_FAILURE;
        /* --ignore-parent-mismatch is about CHILD: PARENT's chain must match. */
        search.parent_dirs = options.parent_dirs;
        return set_parent (args[0], args[1], options.ignore_mismatch, json, &search);
}
