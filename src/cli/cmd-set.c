/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx set: a new physical sector size or Virtual Disk ID, with the images made from it kept
 * linked. */
#include "config.h"

#include <stdlib.h>

#include <glib/gi18n.h>

#include "vhdx-cli.h"
#include "vhdx-set-metadata.h"

static void
add_guid (JsonBuilder *builder, const char *key, const VhdxGuid *guid)
{
        char text[VHDX_GUID_STRING_LENGTH + 1];

        vhdx_guid_to_string_buf (guid, text);
        json_builder_set_member_name (builder, key);
        json_builder_add_string_value (builder, text);
}

static void
add_paths (JsonBuilder *builder, const char *key, GPtrArray *paths)
{
        json_builder_set_member_name (builder, key);
        json_builder_begin_array (builder);
        for (guint i = 0; i < paths->len; i++) {
                g_autofree char *display = g_filename_display_name (g_ptr_array_index (paths, i));

                json_builder_add_string_value (builder, display);
        }
        json_builder_end_array (builder);
}

static JsonNode *
result_to_json (const char *path, const VhdxSetMetadataResult *result)
{
        g_autoptr (JsonBuilder) builder = json_builder_new ();
        g_autofree char *display = g_filename_display_name (path);

        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "filename");
        json_builder_add_string_value (builder, display);
        json_builder_set_member_name (builder, "changed");
        json_builder_add_boolean_value (builder, result->changed);
        json_builder_set_member_name (builder, "old-physical-sector-size");
        json_builder_add_int_value (builder, result->old_physical_sector_size);
        json_builder_set_member_name (builder, "new-physical-sector-size");
        json_builder_add_int_value (builder, result->new_physical_sector_size);
        add_guid (builder, "old-virtual-disk-id", &result->old_disk_id);
        add_guid (builder, "new-virtual-disk-id", &result->new_disk_id);
        add_guid (builder, "old-data-write-guid", &result->old_data_write_guid);
        add_guid (builder, "new-data-write-guid", &result->new_data_write_guid);
        add_paths (builder, "children-updated", result->children_updated);
        add_paths (builder, "children-orphaned", result->children_orphaned);
        json_builder_end_object (builder);
        return json_builder_get_root (builder);
}

/* A warning for each child left behind with --force, and how to link it again. */
static void
warn_orphaned (const char *path, const VhdxSetMetadataResult *result)
{
        for (guint i = 0; i < result->children_orphaned->len; i++) {
                g_autofree char *child =
                        g_filename_display_name (g_ptr_array_index (result->children_orphaned, i));
                g_autofree char *image = g_filename_display_name (path);
                /* TRANSLATORS: a differencing image, why it could not be updated, then the
                 * command that links it again (the differencing image and this image) */
                g_autofree char *line = g_strdup_printf (
                        _ ("warning: the differencing image %s was not updated (%s): it no longer "
                           "opens with this image; link it again with 'vhdx set-parent "
                           "--ignore-parent-mismatch %s %s'"),
                        child, (const char *) g_ptr_array_index (result->orphaned_reasons, i),
                        child, image);

                tool_print_error (path, line);
        }
}

static int
set_metadata (const char *path,
              guint32 physical_sector_size,
              VhdxSetMetadataFlags flags,
              gboolean json)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_auto (VhdxSetMetadataResult) result = { 0 };

        /* Nothing is read through the parent of a differencing image, which may be missing. */
        file = cli_open_image (path, VHDX_OPEN_FLAGS_READ_WRITE | VHDX_OPEN_FLAGS_NO_PARENT, NULL,
                               NULL, &error);
        if (file == NULL) {
                tool_print_file_error (path, error);
                return EXIT_FAILURE;
        }
        if (!vhdx_file_set_metadata (file, path, physical_sector_size, flags, &result, &error)) {
                tool_print_file_error (path, error);
                return EXIT_FAILURE;
        }
        if (!vhdx_file_close (file, &error)) {
                tool_print_file_error (path, error);
                return EXIT_FAILURE;
        }
        warn_orphaned (path, &result);
        if (json) {
                g_autoptr (JsonNode) root = result_to_json (path, &result);

                tool_print_json (root);
        }
        return EXIT_SUCCESS;
}

int
cli_cmd_set (int argc, char **argv)
{
        g_autofree char *physical_sector_size = NULL;
        g_autofree char *creator = NULL;
        gboolean reset_disk_id = FALSE;
        gboolean force = FALSE;
        gboolean json = FALSE;
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "physical-sector-size", 0, 0, G_OPTION_ARG_STRING, &physical_sector_size,
                  N_ ("Make the physical sector size N: 512 or 4096"), N_ ("N") },
                { "reset-disk-id", 0, 0, G_OPTION_ARG_NONE, &reset_disk_id,
                  N_ ("Give the virtual disk a new random Virtual Disk ID"), NULL },
                { "creator", 0, 0, G_OPTION_ARG_STRING, &creator,
                  N_ ("Refused: the creator text is written only when an image is made"),
                  N_ ("TEXT") },
                { "force", 0, 0, G_OPTION_ARG_NONE, &force,
                  N_ ("Change the image even when differencing images made from it cannot be "
                      "updated (they no longer open with it)"),
                  NULL },
                { "json", 0, 0, G_OPTION_ARG_NONE, &json,
                  N_ ("Print what changed as a JSON object"), NULL },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        VhdxSetMetadataFlags flags = VHDX_SET_METADATA_FLAGS_NONE;
        guint64 size = 0;

        context = tool_command_context_new (
                "set", _ ("IMAGE"),
                _ ("Change an image's physical sector size or Virtual Disk ID."),
                _ ("Changes the metadata of IMAGE in place, as Hyper-V's Set-VHD does:\n"
                   "--physical-sector-size (-PhysicalSectorSizeBytes) and\n"
                   "--reset-disk-id (-ResetDiskIdentifier).  What the disk reads does not\n"
                   "change.  Nothing is written when nothing changes.\n"
                   "\n"
                   "A guest sees both, so IMAGE gets a new DataWriteGuid, which the\n"
                   "differencing images made from it would no longer match.  Those in\n"
                   "IMAGE's directory are opened for writing and name the new GUID in\n"
                   "their parent locator (parent_linkage2) first; then IMAGE takes it,\n"
                   "and they name it as parent_linkage.\n"
                   "When one of them cannot be opened for writing (in use, or read-only),\n"
                   "nothing is changed, unless --force: it then no longer opens with\n"
                   "IMAGE, with a warning saying how to link it again ('vhdx set-parent\n"
                   "--ignore-parent-mismatch').  The change goes through IMAGE's log: a\n"
                   "crash leaves the old values or the new ones.\n"
                   "\n"
                   "--creator is refused: the creator text is written once, when the image\n"
                   "is made, and the specification forbids rewriting the first 64 KiB of\n"
                   "the file.\n"
                   "\n"
                   "With --json, prints one object with the keys filename, changed,\n"
                   "old-physical-sector-size, new-physical-sector-size,\n"
                   "old-virtual-disk-id, new-virtual-disk-id, old-data-write-guid,\n"
                   "new-data-write-guid, children-updated and children-orphaned (arrays\n"
                   "of paths).\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv) ||
            !tool_check_arguments ("set", args, 1))
                return EXIT_FAILURE;
        if (creator != NULL) {
                tool_print_error (NULL, _ ("--creator: the creator text is written once, when an "
                                           "image is made; MS-VHDX forbids rewriting the first "
                                           "64 KiB of the file, which holds it"));
                return EXIT_FAILURE;
        }
        if (physical_sector_size != NULL) {
                if (!tool_parse_size ("--physical-sector-size", physical_sector_size, 1, &size))
                        return EXIT_FAILURE;
                if (size > G_MAXUINT32)
                        return tool_usage_error (_ ("%s: %s is too large"),
                                                 "--physical-sector-size", physical_sector_size);
        }
        if (reset_disk_id)
                flags |= VHDX_SET_METADATA_FLAGS_RESET_DISK_ID;
        if (force)
                flags |= VHDX_SET_METADATA_FLAGS_FORCE;
        return set_metadata (args[0], (guint32) size, flags, json);
}
