/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Pointing a differencing image at its moved parent (see vhdx-relink.h). */
#include "vhdx-relink.h"

#include "vhdx-chain.h"
#include "vhdx-file-private.h"
#include "vhdx-private.h"
#include "vhdx-writer-private.h"
#include "vhdx-writer.h"

/*
 * The order of the changes, for a commit that takes several log sequences:
 * the new item in free space first, then the table entry that names it.
 * Rewritten in place, the item and the entry go together.
 */
enum {
        ORDER_ITEM = VHDX_WRITER_ORDER_STRUCTURE,
        ORDER_TABLE,
};

/* The table entry's offset and length are rewritten as one 8-byte field. */
G_STATIC_ASSERT (VHDX_METADATA_ENTRY_OFF_LENGTH == VHDX_METADATA_ENTRY_OFF_OFFSET + 4);

void
vhdx_set_parent_result_clear (VhdxSetParentResult *result)
{
        g_clear_pointer (&result->old_relative_path, g_free);
        g_clear_pointer (&result->new_relative_path, g_free);
        g_clear_pointer (&result->absolute_path, g_free);
        g_clear_pointer (&result->old_linkage, g_free);
        g_clear_pointer (&result->new_linkage, g_free);
}

/* VHDX_ERROR_INVALID when @parent is @child or one of @parent's own parents is. */
static gboolean
check_not_in_chain (VhdxFile *child, VhdxFile *parent, GError **error)
{
        g_autoptr (GArray) identities = vhdx_chain_identities_new ();

        if (!vhdx_chain_enter (identities, child->io, error))
                return FALSE;
        for (VhdxFile *p = parent; p != NULL; p = p->parent) {
                if (!vhdx_chain_enter (identities, p->io, error))
                        return FALSE;
        }
        return TRUE;
}

/* Whether @parent is the one @child was made from, by the linkage GUIDs of
 * its locator; with @ignore_mismatch, @locator names it from now on. */
static gboolean
check_linkage (VhdxFile *child,
               VhdxFile *parent,
               const char *parent_path,
               gboolean ignore_mismatch,
               GPtrArray *locator,
               VhdxSetParentResult *result,
               GError **error)
{
        g_auto (VhdxParentSearch) search = { 0 };
        g_autoptr (GError) local_error = NULL;
        const VhdxGuid *guid = &parent->info.data_write_guid;

        vhdx_parent_search_init (&search, child->locator);
        result->old_linkage =
                g_strdup (vhdx_parent_locator_lookup (child->locator, "parent_linkage"));
        if (vhdx_parent_search_match (&search, parent_path, guid, &local_error)) {
                result->new_linkage = g_strdup (result->old_linkage);
                return TRUE;
        }
        if (!ignore_mismatch) {
                if (local_error != NULL)
                        g_propagate_error (error, g_steal_pointer (&local_error));
                else
                        /* TRANSLATORS: the image's path, its DataWriteGuid and the expected one */
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH,
                                     _ ("Not the parent this differencing image was made from: "
                                        "%s"),
                                     search.tried->str);
                return FALSE;
        }
        /* Linked all the same: the parent's identity replaces both GUIDs. */
        result->linkage_changed = TRUE;
        result->new_linkage = vhdx_parent_linkage_text (guid);
        vhdx_parent_locator_set (locator, "parent_linkage", result->new_linkage);
        vhdx_parent_locator_remove (locator, "parent_linkage2");
        return TRUE;
}

/* @path (taken) with backslashes, as the locator's Windows paths are written. */
static char *
backslashes (char *path)
{
        return g_strdelimit (path, "/", '\\');
}

/* The entries of the new locator. */
static GPtrArray *
new_locator (VhdxFile *child,
             const char *child_path,
             VhdxFile *parent,
             const char *parent_path,
             gboolean ignore_mismatch,
             VhdxSetParentResult *result,
             GError **error)
{
        g_autoptr (GPtrArray) locator = vhdx_parent_locator_copy (child->locator);

        if (!check_linkage (child, parent, parent_path, ignore_mismatch, locator, result, error))
                return NULL;
        result->old_relative_path =
                g_strdup (vhdx_parent_locator_lookup (child->locator, "relative_path"));
        result->new_relative_path =
                backslashes (vhdx_parent_relative_path (child_path, parent_path));
        result->absolute_path = backslashes (g_canonicalize_filename (parent_path, NULL));
        vhdx_parent_locator_set (locator, "relative_path", result->new_relative_path);
        vhdx_parent_locator_set (locator, "absolute_win32_path", result->absolute_path);
        /* A Linux host cannot name a Windows volume; a stale one would mislead. */
        result->volume_path_dropped = vhdx_parent_locator_remove (locator, "volume_path");
        return g_steal_pointer (&locator);
}

/*
 * Queue the item @item (@length bytes) at @offset of the metadata region
 * and the locator's table entry @index naming it, @old_length being the
 * item's length before: in place, its bytes past the new end become zeros.
 */
static gboolean
queue_locator (VhdxFile *child,
               guint index,
               guint32 offset,
               const guint8 *item,
               guint32 length,
               guint32 old_length,
               gboolean in_place,
               GError **error)
{
        guint64 region = child->info.metadata_offset;
        guint32 written = in_place ? MAX (length, old_length) : length;
        g_autofree guint8 *bytes = g_malloc0 (written);
        guint8 entry[8];

        memcpy (bytes, item, length);
        vhdx_put_le32 (entry, offset);
        vhdx_put_le32 (entry + 4, length);
        return vhdx_writer_queue_bytes (child, region + offset, bytes, written, ORDER_ITEM,
                                        _ ("parent locator"), error) &&
               vhdx_writer_queue_bytes (child,
                                        region + VHDX_METADATA_HEADER_SIZE +
                                                (guint64) index * VHDX_METADATA_ENTRY_SIZE +
                                                VHDX_METADATA_ENTRY_OFF_OFFSET,
                                        entry, sizeof entry, in_place ? ORDER_ITEM : ORDER_TABLE,
                                        _ ("metadata table"), error);
}

/*
 * Write @locator (taken) as @child's parent locator: to free space of the
 * metadata region, then the table entry naming it, or in place when only
 * the old item's space fits it; committed and durable on return.
 */
static gboolean
write_locator (VhdxFile *child, GPtrArray *locator, gboolean *in_place_out, GError **error)
{
        const VhdxInfo *info = &child->info;
        g_autoptr (GPtrArray) owned = locator;
        g_autoptr (GBytes) item = NULL;
        g_autofree guint8 *table = NULL;
        const guint8 *item_data;
        gsize length;
        guint32 offset, old_length;
        gboolean in_place = FALSE;
        int index;

        item = vhdx_parent_locator_encode (locator, error);
        if (item == NULL)
                return FALSE;
        item_data = g_bytes_get_data (item, &length);

        /* Start from a state with nothing queued: the view is the file. */
        if (!vhdx_file_flush (child, error))
                return FALSE;
        table = g_malloc (VHDX_METADATA_TABLE_SIZE);
        if (!vhdx_writer_read (child, info->metadata_offset, table, VHDX_METADATA_TABLE_SIZE,
                               _ ("metadata table"), error))
                return FALSE;
        index = vhdx_metadata_table_find (table, &vhdx_guid_item_parent_locator);
        if (index < 0) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("metadata table"),
                                info->metadata_offset, _ ("the parent locator item is missing"));
                return FALSE;
        }
        old_length = info->parent_locator_length;
        if (!vhdx_metadata_table_find_space (table, info->metadata_length, (guint32) length,
                                             &offset)) {
                if (length > old_length) {
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                                     _ ("The metadata region is full: it has no room for a "
                                        "parent locator of %" G_GSIZE_FORMAT " bytes, and the "
                                        "old one has %u"),
                                     length, old_length);
                        return FALSE;
                }
                offset = (guint32) (info->parent_locator_offset - info->metadata_offset);
                in_place = TRUE;
        }

        /* Not a change of what the disk reads: DataWriteGuid stays. */
        if (!vhdx_writer_begin_change (child, FALSE, error))
                return FALSE;
        if (!queue_locator (child, (guint) index, offset, item_data, (guint32) length, old_length,
                            in_place, error)) {
                vhdx_writer_fail (child);
                return FALSE;
        }
        if (!vhdx_file_flush (child, error))
                return FALSE;
        vhdx_file_reset_locator (child, g_steal_pointer (&owned), info->metadata_offset + offset,
                                 (guint32) length);
        if (in_place_out != NULL)
                *in_place_out = in_place;
        return TRUE;
}

gboolean
vhdx_file_set_parent (VhdxFile *child,
                      const char *child_path,
                      VhdxFile *parent,
                      const char *parent_path,
                      gboolean ignore_mismatch,
                      VhdxSetParentResult *result,
                      GError **error)
{
        const VhdxInfo *info = &child->info;
        g_auto (VhdxSetParentResult) local_result = { 0 };
        g_autoptr (GPtrArray) locator = NULL;

        g_return_val_if_fail (child != NULL && parent != NULL, FALSE);
        g_return_val_if_fail (child_path != NULL && parent_path != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (result == NULL)
                result = &local_result;
        memset (result, 0, sizeof *result);
        if (!vhdx_writer_check (child, error))
                return FALSE;
        if (info->disk_type != VHDX_DISK_TYPE_DIFFERENCING || child->locator == NULL) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("Only a differencing image has a parent; this image is %s"),
                             vhdx_disk_type_to_string (info->disk_type));
                return FALSE;
        }
        if (!vhdx_chain_check_sectors (info, &parent->info, parent_path, error) ||
            !check_not_in_chain (child, parent, error))
                return FALSE;
        locator = new_locator (child, child_path, parent, parent_path, ignore_mismatch, result,
                               error);
        if (locator == NULL)
                return FALSE;
        return write_locator (child, g_steal_pointer (&locator), &result->in_place, error);
}

/* VHDX_ERROR_NOT_SUPPORTED unless @child is a differencing image that can be changed. */
static gboolean
check_differencing (VhdxFile *child, GError **error)
{
        if (!vhdx_writer_check (child, error))
                return FALSE;
        if (child->info.disk_type != VHDX_DISK_TYPE_DIFFERENCING || child->locator == NULL) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("Only a differencing image has a parent; this image is %s"),
                             vhdx_disk_type_to_string (child->info.disk_type));
                return FALSE;
        }
        return TRUE;
}

gboolean
vhdx_file_set_parent_linkage2 (VhdxFile *child, const VhdxGuid *guid, GError **error)
{
        g_autoptr (GPtrArray) locator = NULL;
        g_autofree char *text = NULL;

        g_return_val_if_fail (child != NULL && guid != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (!check_differencing (child, error))
                return FALSE;
        text = vhdx_parent_linkage_text (guid);
        locator = vhdx_parent_locator_copy (child->locator);
        if (child->parent != NULL) {
                /* It may have matched through parent_linkage2 (an earlier
                 * change that ended half made), which is about to change. */
                g_autofree char *current =
                        vhdx_parent_linkage_text (&child->parent->info.data_write_guid);

                vhdx_parent_locator_set (locator, "parent_linkage", current);
        }
        vhdx_parent_locator_set (locator, "parent_linkage2", text);
        return write_locator (child, g_steal_pointer (&locator), NULL, error);
}

gboolean
vhdx_file_settle_parent_linkage (VhdxFile *child, const VhdxGuid *guid, GError **error)
{
        g_autoptr (GPtrArray) locator = NULL;
        g_autofree char *text = NULL;

        g_return_val_if_fail (child != NULL && guid != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (!check_differencing (child, error))
                return FALSE;
        text = vhdx_parent_linkage_text (guid);
        locator = vhdx_parent_locator_copy (child->locator);
        vhdx_parent_locator_set (locator, "parent_linkage", text);
        vhdx_parent_locator_remove (locator, "parent_linkage2");
        return write_locator (child, g_steal_pointer (&locator), NULL, error);
}
