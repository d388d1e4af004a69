/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx compact: the file space of an image that its virtual disk does not need, given back. */
#include "config.h"

#include <stdlib.h>

#include <glib/gi18n.h>

#include "vhdx-cli.h"
#include "vhdx-compact.h"

static JsonNode *
result_to_json (const char *path, const VhdxCompactResult *result)
{
        g_autoptr (JsonBuilder) builder = json_builder_new ();
        g_autofree char *display = g_filename_display_name (path);
        const struct {
                const char *key;
                guint64 value;
        } members[] = {
                { "bytes-reclaimed", result->old_file_size - result->new_file_size },
                { "old-file-size", result->old_file_size },
                { "new-file-size", result->new_file_size },
                { "blocks-dropped", result->blocks_dropped },
                { "blocks-moved", result->blocks_moved },
        };

        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "filename");
        json_builder_add_string_value (builder, display);
        for (gsize i = 0; i < G_N_ELEMENTS (members); i++) {
                json_builder_set_member_name (builder, members[i].key);
                json_builder_add_int_value (builder, (gint64) members[i].value);
        }
        json_builder_end_object (builder);
        return json_builder_get_root (builder);
}

static int
compact_image (const char *path,
               VhdxCompactFlags flags,
               gboolean show_progress,
               gboolean json,
               const CliOpenOptions *parents)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        ToolReportedProgress progress = { show_progress, FALSE, { 0 } };
        VhdxCompactResult result = { 0 };
        gboolean ok;

        /* The parents of a differencing image are opened read-only. */
        file = cli_open_image (path, VHDX_OPEN_FLAGS_READ_WRITE, parents, NULL, &error);
        if (file == NULL) {
                tool_print_file_error (path, error);
                return EXIT_FAILURE;
        }
        /* The total grows once the blocks to move are known. */
        ok = vhdx_file_compact (file, flags, tool_progress_report, &progress, NULL, &result,
                                &error);
        tool_reported_progress_end (&progress, ok);
        if (!ok) {
                tool_print_file_error (path, error);
                return EXIT_FAILURE;
        }
        if (!vhdx_file_close (file, &error)) {
                tool_print_file_error (path, error);
                return EXIT_FAILURE;
        }
        if (json) {
                g_autoptr (JsonNode) root = result_to_json (path, &result);

                tool_print_json (root);
        }
        return EXIT_SUCCESS;
}

int
cli_cmd_compact (int argc, char **argv)
{
        gboolean quick = FALSE;
        gboolean show_progress = FALSE;
        gboolean json = FALSE;
        g_auto (GStrv) args = NULL;
        g_auto (CliOpenOptions) parents = { 0 };
        const GOptionEntry entries[] = {
                { "quick", 'q', 0, G_OPTION_ARG_NONE, &quick,
                  N_ ("Read no data: give back only the space of blocks already unallocated, "
                      "zeroed or discarded"),
                  NULL },
                { "progress", 'p', 0, G_OPTION_ARG_NONE, &show_progress,
                  N_ ("Show progress on a terminal"), NULL },
                { "json", 0, 0, G_OPTION_ARG_NONE, &json,
                  N_ ("Print what changed as a JSON object"), NULL },
                CLI_PARENT_OPTION_ENTRIES (&parents, CLI_PARENT_HELP),
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;

        context = tool_command_context_new (
                "compact", _ ("IMAGE"), _ ("Give back the file space an image does not need."),
                _ ("Makes the file of IMAGE, a dynamic or differencing image, smaller, in\n"
                   "place, as Hyper-V's Optimize-VHD does.  Every stored block is read;\n"
                   "one that reads as zeros is dropped (a dynamic image's reads as zeros\n"
                   "without file space, a differencing image's is marked zero so that the\n"
                   "parent stays hidden; a block of a differencing image that stores only\n"
                   "some of its sectors is dropped only when none of them is its own).\n"
                   "With --quick, no data is read: only blocks already unallocated, zeroed\n"
                   "or discarded give their space back.  Then the blocks left move down\n"
                   "into the holes, and the file is cut after the last one.\n"
                   "\n"
                   "What the virtual disk reads does not change, and neither does the\n"
                   "image's DataWriteGuid: differencing images made from IMAGE keep\n"
                   "working.  Each step goes through the image's log: a crash leaves an\n"
                   "image that reads as before.  A fixed image is refused: convert it\n"
                   "with 'vhdx convert --type=dynamic' instead.\n"
                   "\n"
                   "With --json, prints one object with the keys filename,\n"
                   "bytes-reclaimed, old-file-size, new-file-size, blocks-dropped and\n"
                   "blocks-moved.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv) ||
            !tool_check_arguments ("compact", args, 1))
                return EXIT_FAILURE;
        return compact_image (args[0], quick ? VHDX_COMPACT_FLAGS_QUICK : VHDX_COMPACT_FLAGS_NONE,
                              show_progress, json, &parents);
}
