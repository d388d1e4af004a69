/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Changing the physical sector size and the Virtual Disk ID (see vhdx-set-metadata.h). */
#include "vhdx-set-metadata.h"

#include <gio/gio.h>

#include "vhdx-children.h"
#include "vhdx-file-private.h"
#include "vhdx-private.h"
#include "vhdx-relink.h"
#include "vhdx-writer-private.h"
#include "vhdx-writer.h"

void
vhdx_set_metadata_result_clear (VhdxSetMetadataResult *result)
{
        g_clear_pointer (&result->children_updated, g_ptr_array_unref);
        g_clear_pointer (&result->children_orphaned, g_ptr_array_unref);
        g_clear_pointer (&result->orphaned_reasons, g_ptr_array_unref);
}

static gboolean
check_physical_sector_size (guint32 size, GError **error)
{
        if (size != 0 && size != 512 && size != 4096) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("A physical sector size of %u bytes is not possible: it must be "
                                "512 or 4096"),
                             size);
                return FALSE;
        }
        return TRUE;
}

/* A child that cannot be updated: with @force, listed as orphaned. */
static gboolean
child_not_updated (const char *path,
                   GError *reason,
                   gboolean force,
                   VhdxSetMetadataResult *result,
                   GError **error)
{
        g_autofree char *display = g_filename_display_name (path);

        if (!force) {
                /* TRANSLATORS: a path, then why it cannot be opened for writing */
                g_propagate_prefixed_error (error, reason,
                                            _ ("The differencing image %s was made from this "
                                               "image and cannot be updated to stay linked to "
                                               "it: "),
                                            display);
                return FALSE;
        }
        g_ptr_array_add (result->children_orphaned, g_strdup (path));
        g_ptr_array_add (result->orphaned_reasons, g_strdup (reason->message));
        g_error_free (reason);
        return TRUE;
}

/*
 * The differencing images beside @path made from @file, opened read-write
 * without their parents; with @force, those that cannot be are listed as
 * orphaned in @result instead of refusing.
 */
static GPtrArray *
open_children (VhdxFile *file,
               const char *path,
               gboolean force,
               VhdxSetMetadataResult *result,
               GError **error)
{
        g_autoptr (GPtrArray) opened =
                g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_file_free);
        g_autoptr (GPtrArray) paths = NULL;
        g_autofree char *dir = NULL;
        const char *dirs[2] = { NULL, NULL };
        const char *skip[2] = { path, NULL };

        if (path == NULL) {
                GError *reason = g_error_new_literal (
                        G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                        _ ("The image has no local path: the differencing images made from it "
                           "cannot be looked for"));

                if (!force) {
                        g_propagate_error (error, reason);
                        return NULL;
                }
                g_ptr_array_add (result->children_orphaned, g_strdup ("?"));
                g_ptr_array_add (result->orphaned_reasons, g_strdup (reason->message));
                g_error_free (reason);
                return g_steal_pointer (&opened);
        }
        dir = g_path_get_dirname (path);
        dirs[0] = dir;
        paths = vhdx_find_children (dirs, &file->info.data_write_guid, skip, error);
        if (paths == NULL)
                return NULL;
        for (guint i = 0; i < paths->len; i++) {
                const char *child_path = g_ptr_array_index (paths, i);
                GError *reason = NULL;
                VhdxIo *io = vhdx_io_open_path (child_path, TRUE, &reason);
                VhdxFile *child = NULL;

                if (io != NULL)
                        child = vhdx_file_open (io,
                                                VHDX_OPEN_FLAGS_READ_WRITE |
                                                        VHDX_OPEN_FLAGS_NO_PARENT,
                                                &reason);
                if (child == NULL) {
                        if (!child_not_updated (child_path, reason, force, result, error))
                                return NULL;
                        continue;
                }
                /* The path goes with the file, in the same order. */
                g_ptr_array_add (opened, child);
                g_ptr_array_add (result->children_updated, g_strdup (child_path));
        }
        return g_steal_pointer (&opened);
}

/*
 * Name @guid as parent_linkage2 of every child in @children (whose paths
 * are @result's children_updated), each durable before the next: the
 * image may then take @guid as its DataWriteGuid.  With @settle, once it
 * has: @guid becomes their parent_linkage, parent_linkage2 is dropped, and
 * they are closed.
 */
static gboolean
update_children (GPtrArray *children,
                 const VhdxGuid *guid,
                 gboolean settle,
                 VhdxSetMetadataResult *result,
                 GError **error)
{
        for (guint i = 0; i < children->len; i++) {
                VhdxFile *child = g_ptr_array_index (children, i);
                const char *child_path = g_ptr_array_index (result->children_updated, i);
                gboolean ok = settle ? vhdx_file_settle_parent_linkage (child, guid, error) &&
                                               vhdx_file_close (child, error)
                                     : vhdx_file_set_parent_linkage2 (child, guid, error);

                if (!ok) {
                        g_autofree char *display = g_filename_display_name (child_path);

                        g_prefix_error (error, "%s: ", display);
                        return FALSE;
                }
        }
        return TRUE;
}

gboolean
vhdx_file_write_disk_items (VhdxFile *file,
                            guint32 physical_sector_size,
                            const VhdxGuid *disk_id,
                            GError **error)
{
        VhdxInfo *info = &file->info;
        guint8 size_value[4];

        if (!vhdx_writer_begin_change (file, TRUE, error))
                return FALSE;
        /* Both items in one commit, each rewritten where it is. */
        vhdx_put_le32 (size_value, physical_sector_size);
        if ((physical_sector_size != 0 &&
             !vhdx_writer_queue_bytes (file, file->metadata.physical_sector_size_offset, size_value,
                                       sizeof size_value, VHDX_WRITER_ORDER_STRUCTURE,
                                       _ ("metadata region"), error)) ||
            (disk_id != NULL &&
             !vhdx_writer_queue_bytes (file, file->metadata.virtual_disk_id_offset, disk_id->bytes,
                                       sizeof disk_id->bytes, VHDX_WRITER_ORDER_STRUCTURE,
                                       _ ("metadata region"), error))) {
                vhdx_writer_fail (file);
                return FALSE;
        }
        if (!vhdx_file_flush (file, error))
                return FALSE;
        if (physical_sector_size != 0) {
                info->physical_sector_size = physical_sector_size;
                file->metadata.physical_sector_size = physical_sector_size;
        }
        if (disk_id != NULL) {
                info->virtual_disk_id = *disk_id;
                file->metadata.virtual_disk_id = *disk_id;
        }
        return TRUE;
}

gboolean
vhdx_file_set_metadata (VhdxFile *file,
                        const char *path,
                        guint32 physical_sector_size,
                        VhdxSetMetadataFlags flags,
                        VhdxSetMetadataResult *result,
                        GError **error)
{
        VhdxInfo *info = &file->info;
        g_auto (VhdxSetMetadataResult) local_result = { 0 };
        g_autoptr (GPtrArray) children = NULL;
        gboolean new_size, new_id;
        VhdxGuid disk_id, guid;

        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (result == NULL)
                result = &local_result;
        memset (result, 0, sizeof *result);
        result->children_updated = g_ptr_array_new_with_free_func (g_free);
        result->children_orphaned = g_ptr_array_new_with_free_func (g_free);
        result->orphaned_reasons = g_ptr_array_new_with_free_func (g_free);
        result->old_physical_sector_size = result->new_physical_sector_size =
                info->physical_sector_size;
        result->old_disk_id = result->new_disk_id = info->virtual_disk_id;
        result->old_data_write_guid = result->new_data_write_guid = info->data_write_guid;
        if (!vhdx_writer_check (file, error) ||
            !check_physical_sector_size (physical_sector_size, error))
                return FALSE;
        new_size = physical_sector_size != 0 && physical_sector_size != info->physical_sector_size;
        new_id = (flags & VHDX_SET_METADATA_FLAGS_RESET_DISK_ID) != 0;
        if (!new_size && !new_id)
                return TRUE;
        /* Start from a state with nothing queued: the commit below is ours alone. */
        if (!vhdx_file_flush (file, error))
                return FALSE;

        /*
         * A new DataWriteGuid, first named in the children (MS-VHDX
         * 2.6.2.6.3): a crash between the two leaves children that match
         * the old one.  Unless a change since the open already gave the
         * image a new one, which orphaned them then.
         */
        if (!vhdx_writer_data_write_guid_changed (file)) {
                children = open_children (file, path, (flags & VHDX_SET_METADATA_FLAGS_FORCE) != 0,
                                          result, error);
                if (children == NULL)
                        return FALSE;
                vhdx_guid_new_random (&guid);
                if (!update_children (children, &guid, FALSE, result, error))
                        return FALSE;
                vhdx_writer_set_data_write_guid (file, &guid);
        }
        if (new_id)
                vhdx_guid_new_random (&disk_id);
        if (!vhdx_file_write_disk_items (file, new_size ? physical_sector_size : 0,
                                         new_id ? &disk_id : NULL, error))
                return FALSE;
        /* The image's new DataWriteGuid is durable: the children name it alone. */
        if (children != NULL && !update_children (children, &guid, TRUE, result, error))
                return FALSE;
        result->changed = TRUE;
        result->new_physical_sector_size = info->physical_sector_size;
        result->new_disk_id = info->virtual_disk_id;
        result->new_data_write_guid = info->data_write_guid;
        return TRUE;
}
