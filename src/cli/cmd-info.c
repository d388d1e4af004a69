/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx info: what an image (and with --backing-chain, each of its parents) is made of. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>

#include "vhdx-cli.h"
#include "vhdx-map.h"
#include "vhdx-parent.h"

/* What info says of one member of a chain; text and JSON print the same facts. */
typedef struct {
        char *filename;      /* as named: the argument, or the path the parent was opened from */
        char *json_filename; /* the argument, or a parent's absolute path, as qemu-img names them */
        const VhdxInfo *info;
        guint64 actual_size;        /* bytes the file occupies on its file system */
        gboolean has_allocated;     /* --allocated: the BAT was scanned */
        guint64 allocated;          /* bytes of the virtual disk the file stores */
        const char *parent_path;    /* the path the parent was opened from, or NULL */
        char *backing_name;         /* the parent as the locator names it */
        char *full_backing_name;    /* the parent's absolute path */
        GPtrArray *locator;         /* differencing images: VhdxLocatorEntry */
        const GError *parent_error; /* why the parent is missing, or NULL */
        GPtrArray *tried;           /* where it was looked for, when missing */
} Facts;

static void
facts_clear (Facts *facts)
{
        g_free (facts->filename);
        g_free (facts->json_filename);
        g_free (facts->backing_name);
        g_free (facts->full_backing_name);
        g_clear_pointer (&facts->tried, g_ptr_array_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Facts, facts_clear)

/* The parent as the image names it: the first of its locator's paths. */
static char *
backing_name (VhdxFile *file, const char *resolved)
{
        static const char *const keys[] = { "relative_path", "absolute_win32_path", "volume_path" };

        for (gsize i = 0; i < G_N_ELEMENTS (keys); i++) {
                const char *value =
                        vhdx_parent_locator_lookup (vhdx_file_get_parent_locator (file), keys[i]);

                if (value != NULL)
                        return g_strdup (value);
        }
        return g_strdup (resolved);
}

/* The facts of @file, named @filename; @top: the image named on the command
 * line, whose parents were looked for as @parents says.  The BAT is scanned
 * for the allocated bytes only with @allocated: without it, every fact comes
 * from the headers, region tables and metadata, whatever the image's size. */
static gboolean
facts_collect (Facts *facts,
               VhdxFile *file,
               const char *filename,
               gboolean top,
               const CliParentOptions *parents,
               gboolean allocated,
               GError **error)
{
        GStatBuf st;

        memset (facts, 0, sizeof *facts);
        facts->filename = g_strdup (filename);
        facts->json_filename = top ? g_strdup (filename) : g_canonicalize_filename (filename, NULL);
        facts->info = vhdx_file_get_info (file);
        facts->actual_size = g_stat (filename, &st) == 0 ? (guint64) st.st_blocks * 512 : 0;
        facts->locator = vhdx_file_get_parent_locator (file);
        if (vhdx_file_get_parent (file) != NULL) {
                facts->parent_path = vhdx_file_get_parent_path (file);
                facts->full_backing_name = g_canonicalize_filename (facts->parent_path, NULL);
                facts->backing_name = backing_name (file, facts->full_backing_name);
        } else if (facts->locator != NULL) {
                facts->backing_name = backing_name (file, NULL);
                facts->parent_error = vhdx_file_get_parent_error (file);
                facts->tried = vhdx_parent_candidates (facts->locator, filename,
                                                       top ? parents->parent : NULL,
                                                       (const char *const *) parents->parent_dirs);
        }
        if (!allocated)
                return TRUE;
        facts->has_allocated = TRUE;
        return vhdx_file_get_allocated_bytes (file, &facts->allocated, error);
}

static char *
format_size (guint64 bytes)
{
        return g_format_size_full (bytes, G_FORMAT_SIZE_IEC_UNITS | G_FORMAT_SIZE_LONG_FORMAT);
}

/* Prints "label: value" lines with the values in one column. */
static void
print_fields (const char *const *labels, char **values, gsize n)
{
        glong width = 0;

        for (gsize i = 0; i < n; i++)
                width = MAX (width, g_utf8_strlen (labels[i], -1));
        for (gsize i = 0; i < n; i++) {
                glong pad = width - g_utf8_strlen (labels[i], -1);

                g_print ("%s:%*s %s\n", labels[i], (int) pad, "", values[i]);
        }
}

/* The index of "Allocated" among the fields of facts_print_text(). */
#define ALLOCATED_FIELD 5

static void
facts_print_text (const Facts *facts)
{
        const VhdxInfo *info = facts->info;
        const char *labels[] = {
                _ ("Image"),
                _ ("Format"),
                _ ("Disk type"),
                _ ("Virtual size"),
                _ ("Disk size"),
                _ ("Allocated"),
                _ ("Block size"),
                _ ("Logical sector size"),
                _ ("Physical sector size"),
                _ ("Virtual disk ID"),
                _ ("Data write GUID"),
                _ ("File write GUID"),
                _ ("Creator"),
                _ ("Log state"),
                _ ("Dirty"),
                _ ("Header sequence"),
        };
        g_auto (GStrv) values = g_new0 (char *, G_N_ELEMENTS (labels) + 1);
        guint n = 0;

        values[n++] = g_filename_display_name (facts->filename);
        values[n++] = g_strdup ("vhdx");
        values[n++] = g_strdup (vhdx_disk_type_to_string (info->disk_type));
        values[n++] = format_size (info->virtual_size);
        values[n++] = format_size (facts->actual_size);
        g_assert (n == ALLOCATED_FIELD);
        values[n++] = facts->has_allocated ? format_size (facts->allocated) : NULL;
        values[n++] = format_size (info->block_size);
        values[n++] = g_strdup_printf ("%u", info->logical_sector_size);
        values[n++] = g_strdup_printf ("%u", info->physical_sector_size);
        values[n++] = vhdx_guid_to_string (&info->virtual_disk_id);
        values[n++] = vhdx_guid_to_string (&info->data_write_guid);
        values[n++] = vhdx_guid_to_string (&info->file_write_guid);
        values[n++] = g_strdup (info->creator != NULL ? info->creator : "");
        values[n++] = g_strdup (vhdx_log_state_to_string (info->log_state));
        values[n++] = g_strdup (info->log_state != VHDX_LOG_STATE_CLEAN ? _ ("yes") : _ ("no"));
        /* TRANSLATORS: sequence number, then which header (1 or 2) is current */
        values[n++] =
                g_strdup_printf (_ ("%llu (header %u)"), (unsigned long long) info->header_sequence,
                                 info->header_index);
        g_assert (n == G_N_ELEMENTS (labels));
        if (!facts->has_allocated) {
                /* Without --allocated, no "Allocated" line: its value is NULL. */
                memmove (&labels[ALLOCATED_FIELD], &labels[ALLOCATED_FIELD + 1],
                         (n - ALLOCATED_FIELD - 1) * sizeof labels[0]);
                memmove (&values[ALLOCATED_FIELD], &values[ALLOCATED_FIELD + 1],
                         (n - ALLOCATED_FIELD - 1) * sizeof values[0]);
                values[--n] = NULL;
        }
        print_fields (labels, values, n);
        if (facts->parent_path != NULL) {
                g_autofree char *display = g_filename_display_name (facts->parent_path);

                g_print ("%-22s%s\n", _ ("Parent:"), display);
        } else if (facts->locator != NULL) {
                g_autoptr (GString) tried = g_string_new (NULL);

                for (guint i = 0; i < facts->tried->len; i++) {
                        g_autofree char *display =
                                g_filename_display_name (g_ptr_array_index (facts->tried, i));

                        g_string_append_printf (tried, "%s%s", i > 0 ? ", " : "", display);
                }
                /* TRANSLATORS: the parent of a differencing image cannot be found */
                g_print ("%-22s%s\n", _ ("Parent:"), _ ("missing"));
                g_print ("%-22s%s\n", _ ("Parent looked for:"),
                         tried->len > 0 ? tried->str : _ ("nowhere"));
                g_print ("%-22s%s\n", _ ("Parent error:"),
                         facts->parent_error != NULL ? facts->parent_error->message : "");
        }
        if (facts->locator != NULL) {
                g_print ("%s\n", _ ("Parent locator:"));
                for (guint i = 0; i < facts->locator->len; i++) {
                        const VhdxLocatorEntry *entry = g_ptr_array_index (facts->locator, i);

                        g_print ("  %-20s%s\n", entry->key, entry->value);
                }
        }
}

/* A differencing image's parent locator and, when its parent is missing, why and where it was
 * looked for. */
static void
add_parent_json (JsonBuilder *builder, const Facts *facts)
{
        json_builder_set_member_name (builder, "parent-locator");
        json_builder_begin_object (builder);
        for (guint i = 0; i < facts->locator->len; i++) {
                const VhdxLocatorEntry *entry = g_ptr_array_index (facts->locator, i);

                json_builder_set_member_name (builder, entry->key);
                json_builder_add_string_value (builder, entry->value);
        }
        json_builder_end_object (builder);
        json_builder_set_member_name (builder, "parent-missing");
        json_builder_add_boolean_value (builder, facts->parent_path == NULL);
        if (facts->parent_path != NULL)
                return;
        json_builder_set_member_name (builder, "parent-error");
        json_builder_add_string_value (builder, facts->parent_error != NULL
                                                        ? facts->parent_error->message
                                                        : "");
        json_builder_set_member_name (builder, "parent-tried");
        json_builder_begin_array (builder);
        for (guint i = 0; i < facts->tried->len; i++) {
                g_autofree char *display =
                        g_filename_display_name (g_ptr_array_index (facts->tried, i));

                json_builder_add_string_value (builder, display);
        }
        json_builder_end_array (builder);
}

/* The keys of qemu-img info --output=json where they overlap. */
static JsonNode *
facts_to_json (const Facts *facts)
{
        const VhdxInfo *info = facts->info;
        g_autoptr (JsonBuilder) builder = json_builder_new ();
        g_autofree char *filename = g_filename_display_name (facts->json_filename);
        char guid[VHDX_GUID_STRING_LENGTH + 1];

        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "filename");
        json_builder_add_string_value (builder, filename);
        json_builder_set_member_name (builder, "format");
        json_builder_add_string_value (builder, "vhdx");
        json_builder_set_member_name (builder, "virtual-size");
        json_builder_add_int_value (builder, (gint64) info->virtual_size);
        json_builder_set_member_name (builder, "actual-size");
        json_builder_add_int_value (builder, (gint64) facts->actual_size);
        json_builder_set_member_name (builder, "cluster-size");
        json_builder_add_int_value (builder, info->block_size);
        json_builder_set_member_name (builder, "dirty-flag");
        json_builder_add_boolean_value (builder, info->log_state != VHDX_LOG_STATE_CLEAN);
        /* A missing parent still has the name the locator gives it, as
         * qemu-img names a missing backing file. */
        if (facts->backing_name != NULL) {
                json_builder_set_member_name (builder, "backing-filename");
                json_builder_add_string_value (builder, facts->backing_name);
        }
        if (facts->parent_path != NULL) {
                g_autofree char *full = g_filename_display_name (facts->full_backing_name);

                json_builder_set_member_name (builder, "full-backing-filename");
                json_builder_add_string_value (builder, full);
        }

        json_builder_set_member_name (builder, "format-specific");
        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "type");
        json_builder_add_string_value (builder, "vhdx");
        json_builder_set_member_name (builder, "data");
        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "disk-type");
        json_builder_add_string_value (builder, vhdx_disk_type_to_string (info->disk_type));
        json_builder_set_member_name (builder, "logical-sector-size");
        json_builder_add_int_value (builder, info->logical_sector_size);
        json_builder_set_member_name (builder, "physical-sector-size");
        json_builder_add_int_value (builder, info->physical_sector_size);
        json_builder_set_member_name (builder, "virtual-disk-id");
        vhdx_guid_to_string_buf (&info->virtual_disk_id, guid);
        json_builder_add_string_value (builder, guid);
        json_builder_set_member_name (builder, "data-write-guid");
        vhdx_guid_to_string_buf (&info->data_write_guid, guid);
        json_builder_add_string_value (builder, guid);
        json_builder_set_member_name (builder, "file-write-guid");
        vhdx_guid_to_string_buf (&info->file_write_guid, guid);
        json_builder_add_string_value (builder, guid);
        json_builder_set_member_name (builder, "creator");
        json_builder_add_string_value (builder, info->creator != NULL ? info->creator : "");
        json_builder_set_member_name (builder, "log-state");
        json_builder_add_string_value (builder, vhdx_log_state_to_string (info->log_state));
        if (facts->has_allocated) {
                json_builder_set_member_name (builder, "allocated-bytes");
                json_builder_add_int_value (builder, (gint64) facts->allocated);
        }
        json_builder_set_member_name (builder, "header-sequence");
        json_builder_add_int_value (builder, (gint64) info->header_sequence);
        if (facts->locator != NULL)
                add_parent_json (builder, facts);
        json_builder_end_object (builder);
        json_builder_end_object (builder);

        json_builder_end_object (builder);
        return json_builder_get_root (builder);
}

int
cli_cmd_info (int argc, char **argv)
{
        gboolean json = FALSE;
        gboolean chain = FALSE;
        gboolean allocated = FALSE;
        g_auto (CliParentOptions) parents = { 0 };
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "json", 0, 0, G_OPTION_ARG_NONE, &json, N_ ("Print a JSON object"), NULL },
                { "backing-chain", 0, 0, G_OPTION_ARG_NONE, &chain,
                  N_ ("Show every image of a differencing image's chain, down to the base"), NULL },
                { "allocated", 0, 0, G_OPTION_ARG_NONE, &allocated,
                  N_ ("Also count the bytes the image stores (scans the BAT)"), NULL },
                CLI_PARENT_OPTION_ENTRIES (&parents, CLI_PARENT_HELP),
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (JsonArray) array = NULL;
        const char *path;

        context = tool_command_context_new (
                "info", _ ("IMAGE"), _ ("Show what an image is made of."),
                _ ("With --json, prints one object with the keys filename, format,\n"
                   "virtual-size, actual-size (bytes the file occupies on disk),\n"
                   "cluster-size (the block size), dirty-flag and format-specific\n"
                   "(type \"vhdx\"; data: disk-type, logical-sector-size,\n"
                   "physical-sector-size, virtual-disk-id, data-write-guid,\n"
                   "file-write-guid, creator, log-state, allocated-bytes (only with\n"
                   "--allocated), header-sequence, and for a differencing image parent-locator, "
                   "an\n"
                   "object of the locator's keys and values, and parent-missing; when\n"
                   "the parent is missing, also parent-error and parent-tried, the paths\n"
                   "looked at), and for a differencing image backing-filename (the\n"
                   "parent as its locator names it) and, unless the parent is missing,\n"
                   "full-backing-filename (its path).  Sizes are in bytes.\n"
                   "With --backing-chain, one such object for each image of the chain,\n"
                   "in an array, down to the base or to the first parent missing.\n"
                   "\n"
                   "Takes the same time and memory whatever the image's size: it reads\n"
                   "the headers, region tables and metadata, never the BAT.  With\n"
                   "--allocated it also scans the BAT, whose size grows with the virtual\n"
                   "size (512 MiB for 64 TiB in 1 MiB blocks), and prints the bytes the\n"
                   "image stores (\"Allocated\", allocated-bytes).\n"
                   "\n"
                   "Of the commands of vhdx, info (without --allocated) and create take\n"
                   "a constant time; check reads every BAT entry; map, cat and convert\n"
                   "walk the BAT over the range they cover and read the data they copy.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv) ||
            !tool_check_arguments ("info", args, 1))
                return EXIT_FAILURE;

        /* An image whose parent cannot be found is still described: the chain
         * ends where the missing parent would be. */
        file = cli_open_image (args[0], VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT, &parents, NULL,
                               &error);
        if (file == NULL) {
                tool_print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        if (json && chain)
                array = json_array_new ();
        path = args[0];
        for (VhdxFile *member = file; member != NULL; member = vhdx_file_get_parent (member)) {
                g_auto (Facts) facts = { 0 };

                if (!facts_collect (&facts, member, path, member == file, &parents, allocated,
                                    &error)) {
                        tool_print_file_error (path, error);
                        return EXIT_FAILURE;
                }
                if (json && array != NULL) {
                        json_array_add_element (array, facts_to_json (&facts));
                } else if (json) {
                        g_autoptr (JsonNode) root = facts_to_json (&facts);

                        tool_print_json (root);
                } else {
                        if (member != file)
                                g_print ("\n");
                        facts_print_text (&facts);
                }
                if (!chain)
                        break;
                path = facts.parent_path;
        }
        if (array != NULL) {
                g_autoptr (JsonNode) root = json_node_init_array (json_node_alloc (), array);

                tool_print_json (root);
        }
        return EXIT_SUCCESS;
}
