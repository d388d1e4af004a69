/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx resize: a new size for the virtual disk of an image, written in place. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib/gi18n.h>

#include "vhdx-cli.h"
#include "vhdx-resize.h"

static JsonNode *
result_to_json (const char *path, const VhdxResizeResult *result)
{
        g_autoptr (JsonBuilder) builder = json_builder_new ();
        g_autofree char *display = g_filename_display_name (path);
        const struct {
                const char *key;
                guint64 value;
        } members[] = {
                { "old-size", result->old_size },
                { "new-size", result->new_size },
                { "old-bat-length", result->old_bat_length },
                { "new-bat-length", result->new_bat_length },
                { "blocks-moved", result->blocks_moved },
                { "blocks-allocated", result->blocks_allocated },
                { "blocks-dropped", result->blocks_dropped },
                { "old-file-size", result->old_file_size },
                { "new-file-size", result->new_file_size },
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
resize_image (const char *path,
              const ToolSizeChange *size,
              VhdxResizeFlags flags,
              gboolean show_progress,
              gboolean json,
              const CliOpenOptions *parents)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        ToolReportedProgress progress = { show_progress, FALSE, { 0 } };
        VhdxResizeResult result = { 0 };
        guint64 new_size;
        gboolean ok;

        /* The parents of a differencing image are opened read-only. */
        file = cli_open_image (path, VHDX_OPEN_FLAGS_READ_WRITE, parents, NULL, &error);
        if (file == NULL) {
                tool_print_file_error (path, error);
                return EXIT_FAILURE;
        }
        if (!tool_size_change_apply (size, vhdx_file_get_info (file)->virtual_size, &new_size))
                return EXIT_FAILURE;
        ok = vhdx_file_resize (file, new_size, flags, tool_progress_report, &progress, NULL,
                               &result, &error);
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
cli_cmd_resize (int argc, char **argv)
{
        gboolean discard = FALSE;
        gboolean show_progress = FALSE;
        gboolean json = FALSE;
        g_auto (GStrv) args = NULL;
        g_auto (CliOpenOptions) parents = { 0 };
        const GOptionEntry entries[] = {
                { "shrink-discarding-data", 0, 0, G_OPTION_ARG_NONE, &discard,
                  N_ ("Shrink even when data is stored past SIZE, which is lost"), NULL },
                { "progress", 'p', 0, G_OPTION_ARG_NONE, &show_progress,
                  N_ ("Show progress on a terminal"), NULL },
                { "json", 0, 0, G_OPTION_ARG_NONE, &json,
                  N_ ("Print what changed as a JSON object"), NULL },
                CLI_PARENT_OPTION_ENTRIES (&parents, CLI_PARENT_HELP),
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        static const char *const takes_value[] = { "--parent", "--parent-dir", NULL };
        g_autofree char **reordered = NULL;
        ToolSizeChange size;

        context = tool_command_context_new (
                "resize", _ ("IMAGE [+|-]SIZE"), _ ("Change the size of an image's virtual disk."),
                _ ("Makes the virtual disk of IMAGE SIZE bytes, in place, as Hyper-V's\n"
                   "Resize-VHD does (a K, M, G or T suffix multiplies by powers of 1024;\n"
                   "+SIZE and -SIZE grow or shrink the disk by SIZE).  SIZE must be a\n"
                   "multiple of the logical sector size, at most 64 TiB.\n"
                   "\n"
                   "Growing, the new part reads as zeros (as the parent's data for a\n"
                   "differencing image); a fixed image gets the new blocks allocated.\n"
                   "Shrinking is refused, naming the first byte stored past SIZE, unless\n"
                   "nothing is stored there or --shrink-discarding-data drops it.  The\n"
                   "data up to the smaller size reads as before.  Each step goes through\n"
                   "the image's log: a crash leaves the old size or the new one.\n"
                   "\n"
                   "With --json, prints one object with the keys filename, old-size,\n"
                   "new-size, old-bat-length and new-bat-length (bytes of the block\n"
                   "allocation table's region), blocks-moved (out of the way of a\n"
                   "growing table), blocks-allocated (of a fixed image), blocks-dropped,\n"
                   "old-file-size and new-file-size.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        reordered = tool_arguments_with_negative_sizes_last (argc, argv, takes_value);
        if (reordered != NULL) {
                argv = reordered;
                argc = (int) g_strv_length (argv);
        }
        if (!tool_parse_command_line (context, &argc, &argv) ||
            !tool_check_arguments ("resize", args, 2) ||
            !tool_size_change_parse ("SIZE", args[1], &size))
                return EXIT_FAILURE;
        return resize_image (args[0], &size,
                             discard ? VHDX_RESIZE_FLAGS_DISCARD_DATA : VHDX_RESIZE_FLAGS_NONE,
                             show_progress, json, &parents);
}
