/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx map and vhdx cat: where the virtual disk's bytes are, and the bytes themselves. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gi18n.h>

#include "vhdx-cli.h"
#include "vhdx-map.h"

/* vhdx map */

static const char *
extent_kind_name (const VhdxMapExtent *extent)
{
        if (extent->kind == VHDX_EXTENT_DATA)
                return _ ("data");
        if (extent->kind == VHDX_EXTENT_PARENT)
                /* TRANSLATORS: a range of a disk that its missing parent holds */
                return _ ("parent");
        if (extent->present)
                return _ ("zero");
        return _ ("unallocated");
}

static void
add_extent_json (JsonBuilder *builder, const VhdxMapExtent *extent)
{
        gboolean data = extent->kind == VHDX_EXTENT_DATA;

        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "start");
        json_builder_add_int_value (builder, (gint64) extent->offset);
        json_builder_set_member_name (builder, "length");
        json_builder_add_int_value (builder, (gint64) extent->length);
        json_builder_set_member_name (builder, "depth");
        json_builder_add_int_value (builder, extent->depth);
        json_builder_set_member_name (builder, "present");
        json_builder_add_boolean_value (builder, data || extent->present);
        json_builder_set_member_name (builder, "zero");
        json_builder_add_boolean_value (builder, extent->kind == VHDX_EXTENT_ZERO);
        json_builder_set_member_name (builder, "data");
        json_builder_add_boolean_value (builder, data);
        if (data) {
                json_builder_set_member_name (builder, "offset");
                json_builder_add_int_value (builder, (gint64) extent->file_offset);
        }
        json_builder_end_object (builder);
}

static void
print_padded (const char *text, glong width)
{
        glong pad = width - g_utf8_strlen (text, -1);

        g_print ("%s%*s", text, (int) MAX (pad, 1), "");
}

#define OFFSET_WIDTH 20
#define KIND_WIDTH   13
#define DEPTH_WIDTH  7

static void
print_extent_header (void)
{
        print_padded (_ ("Offset"), OFFSET_WIDTH);
        print_padded (_ ("Length"), OFFSET_WIDTH);
        print_padded (_ ("Kind"), KIND_WIDTH);
        print_padded (_ ("Depth"), DEPTH_WIDTH);
        g_print ("%s\n", _ ("File-offset"));
}

static void
print_extent_text (const VhdxMapExtent *extent)
{
        g_autofree char *start = g_strdup_printf ("0x%" PRIx64, extent->offset);
        g_autofree char *length = g_strdup_printf ("0x%" PRIx64, extent->length);
        g_autofree char *depth = g_strdup_printf ("%u", extent->depth);

        print_padded (start, OFFSET_WIDTH);
        print_padded (length, OFFSET_WIDTH);
        print_padded (extent_kind_name (extent), KIND_WIDTH);
        print_padded (depth, DEPTH_WIDTH);
        if (extent->kind == VHDX_EXTENT_DATA)
                g_print ("0x%" PRIx64 "\n", extent->file_offset);
        else
                g_print ("-\n");
}

int
cli_cmd_map (int argc, char **argv)
{
        gboolean json = FALSE;
        g_auto (GStrv) args = NULL;
        g_auto (CliOpenOptions) parents = { 0 };
        const GOptionEntry entries[] = {
                { "json", 0, 0, G_OPTION_ARG_NONE, &json,
                  N_ ("Print a JSON array like qemu-img map --output=json"), NULL },
                CLI_PARENT_OPTION_ENTRIES (&parents, CLI_PARENT_HELP),
                CLI_FORCE_SHARE_OPTION_ENTRY (&parents),
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (JsonBuilder) builder = NULL;
        VhdxMapIter iter;
        VhdxMapExtent extent;

        context = tool_command_context_new (
                "map", _ ("IMAGE"), _ ("Show which parts of the virtual disk hold data."),
                _ ("Prints the virtual disk as a list of extents, from offset 0 to the\n"
                   "virtual size: data (stored in the file at File-offset), zero\n"
                   "(allocated but reads as zeros), unallocated, or parent (held by a\n"
                   "parent that cannot be found; Depth is that parent's).\n"
                   "\n"
                   "With --json, prints an array of objects with the keys start,\n"
                   "length, depth, present, zero, data and, for data, offset (the file\n"
                   "offset), as qemu-img map --output=json does; a range of a missing\n"
                   "parent is neither present, zero nor data.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv) ||
            !tool_check_arguments ("map", args, 1))
                return EXIT_FAILURE;

        /* Without its parent, an image's own map still says which ranges are the parent's. */
        file = cli_open_image (args[0], VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT, &parents, NULL,
                               &error);
        if (file == NULL) {
                tool_print_file_error (args[0], error);
                return EXIT_FAILURE;
        }

        /* Text goes out as the extents come; JSON once the array is complete,
         * so that a failure in the middle prints no half of it. */
        if (json) {
                builder = json_builder_new ();
                json_builder_begin_array (builder);
        } else {
                print_extent_header ();
        }
        vhdx_map_iter_init (&iter, file, 0, vhdx_file_get_info (file)->virtual_size);
        while (vhdx_map_iter_next (&iter, &extent, &error)) {
                if (json)
                        add_extent_json (builder, &extent);
                else
                        print_extent_text (&extent);
        }
        vhdx_map_iter_clear (&iter);
        if (error != NULL) {
                tool_print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        if (json) {
                g_autoptr (JsonNode) root = NULL;

                json_builder_end_array (builder);
                root = json_builder_get_root (builder);
                tool_print_json (root);
        }
        return EXIT_SUCCESS;
}

/* vhdx cat */

static gboolean
write_all (int fd, const guint8 *buf, gsize count, GError **error)
{
        while (count > 0) {
                ssize_t n = write (fd, buf, MIN (count, (gsize) G_MAXSSIZE));

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        vhdx_set_error_from_errno (error, errno);
                        return FALSE;
                }
                if (n == 0) {
                        vhdx_set_error_from_errno (error, EIO);
                        return FALSE;
                }
                buf += n;
                count -= (gsize) n;
        }
        return TRUE;
}

/* Write [@offset, @end) of the virtual disk to standard output. */
static int
cat_range (VhdxFile *file, const char *path, guint64 offset, guint64 end)
{
        g_autoptr (GError) error = NULL;
        g_autofree guint8 *buf = g_malloc (MIN (end - offset, CLI_CHUNK_SIZE) + 1);

        /* See a closed pipe as EPIPE from write() instead of being killed. */
        signal (SIGPIPE, SIG_IGN);

        while (offset < end) {
                gsize n = (gsize) MIN (end - offset, CLI_CHUNK_SIZE);

                if (!vhdx_file_read (file, offset, buf, n, &error)) {
                        tool_print_file_error (path, error);
                        return EXIT_FAILURE;
                }
                if (!write_all (STDOUT_FILENO, buf, n, &error)) {
                        /* The reader went away: stop quietly, as killed by SIGPIPE. */
                        if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE))
                                tool_print_error (_ ("standard output"), error->message);
                        return EXIT_FAILURE;
                }
                offset += n;
        }
        return EXIT_SUCCESS;
}

int
cli_cmd_cat (int argc, char **argv)
{
        g_autofree char *offset_text = NULL;
        g_autofree char *length_text = NULL;
        g_auto (GStrv) args = NULL;
        g_auto (CliOpenOptions) parents = { 0 };
        const GOptionEntry entries[] = {
                { "offset", 0, 0, G_OPTION_ARG_STRING, &offset_text,
                  N_ ("Start at byte N of the virtual disk (default 0)"), N_ ("N") },
                { "length", 0, 0, G_OPTION_ARG_STRING, &length_text,
                  N_ ("Write N bytes (default: up to the end of the disk)"), N_ ("N") },
                CLI_PARENT_OPTION_ENTRIES (&parents, CLI_PARENT_HELP),
                CLI_FORCE_SHARE_OPTION_ENTRY (&parents),
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        guint64 virtual_size;
        guint64 offset = 0;
        guint64 length = 0;
        guint64 end;

        context = tool_command_context_new (
                "cat", _ ("IMAGE"), _ ("Write virtual disk bytes to standard output."),
                _ ("Writes the bytes of the virtual disk, as a guest would read them,\n"
                   "from --offset for --length bytes.  Both are byte counts (a K, M, G\n"
                   "or T suffix multiplies by powers of 1024) and must lie inside the\n"
                   "virtual disk.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv) ||
            !tool_check_arguments ("cat", args, 1))
                return EXIT_FAILURE;
        if (offset_text != NULL && !tool_parse_size ("--offset", offset_text, 0, &offset))
                return EXIT_FAILURE;
        if (length_text != NULL && !tool_parse_size ("--length", length_text, 0, &length))
                return EXIT_FAILURE;

        file = cli_open_image (args[0], VHDX_OPEN_FLAGS_NONE, &parents, NULL, &error);
        if (file == NULL) {
                tool_print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        virtual_size = vhdx_file_get_info (file)->virtual_size;
        if (offset > virtual_size) {
                g_autofree char *message = g_strdup_printf (
                        _ ("offset %llu is beyond the end of the virtual disk (%llu bytes)"),
                        (unsigned long long) offset, (unsigned long long) virtual_size);

                tool_print_error (args[0], message);
                return EXIT_FAILURE;
        }
        if (length_text == NULL)
                length = virtual_size - offset;
        if (!vhdx_add_u64 (offset, length, &end) || end > virtual_size) {
                g_autofree char *message =
                        g_strdup_printf (_ ("range of %llu bytes at offset %llu goes beyond the "
                                            "end of the virtual disk (%llu bytes)"),
                                         (unsigned long long) length, (unsigned long long) offset,
                                         (unsigned long long) virtual_size);

                tool_print_error (args[0], message);
                return EXIT_FAILURE;
        }
        return cat_range (file, args[0], offset, end);
}
