/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Folding a differencing image into an ancestor (see vhdx-merge.h). */
#include "vhdx-merge.h"

#include <errno.h>
#include <glib/gstdio.h>

#include "vhdx-children.h"
#include "vhdx-file-private.h"
#include "vhdx-map.h"
#include "vhdx-metadata.h"
#include "vhdx-private.h"
#include "vhdx-relink.h"
#include "vhdx-set-metadata.h"
#include "vhdx-writer-private.h"
#include "vhdx-writer.h"

/* Data is copied in reads and writes of at most this many bytes, aligned. */
#define COPY_CHUNK (G_GUINT64_CONSTANT (8) << 20)

void
vhdx_merge_result_clear (VhdxMergeResult *result)
{
        g_clear_pointer (&result->target_path, g_free);
        g_clear_pointer (&result->folded, g_ptr_array_unref);
}

/* The member of @child's chain at @depth (0: @child), or NULL. */
static VhdxFile *
member (VhdxFile *child, guint depth)
{
        VhdxFile *file = child;

        for (guint i = 0; i < depth && file != NULL; i++)
                file = vhdx_file_get_parent (file);
        return file;
}

/* VHDX_ERROR_INVALID unless @depth names an ancestor of @child, every
 * image above it having the parent it was made from. */
static gboolean
check_chain (VhdxFile *child, guint depth, GError **error)
{
        guint chain_depth = vhdx_file_get_chain_depth (child);

        if (child->info.disk_type != VHDX_DISK_TYPE_DIFFERENCING) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("Only a differencing image can be merged into its parent; "
                                "this image is %s"),
                             vhdx_disk_type_to_string (child->info.disk_type));
                return FALSE;
        }
        if (depth == 0 || depth > chain_depth) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                             _ ("The image has %u ancestors opened; there is none at depth %u"),
                             chain_depth, depth);
                return FALSE;
        }
        for (guint i = 0; i < depth; i++) {
                VhdxFile *file = member (child, i);
                const char *warning = vhdx_file_get_parent_warning (file);

                if (vhdx_file_get_parent (file) == NULL) {
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND,
                                     _ ("The image at depth %u of the chain was opened without "
                                        "its parent"),
                                     i);
                        return FALSE;
                }
                if (warning != NULL) {
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH,
                                     _ ("Not merged through a parent the image was not made "
                                        "from: %s"),
                                     warning);
                        return FALSE;
                }
        }
        return TRUE;
}

GPtrArray *
vhdx_merge_find_endangered (VhdxFile *child,
                            const char *child_path,
                            guint depth,
                            VhdxMergeFlags flags,
                            GError **error)
{
        g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
        g_autoptr (GPtrArray) dirs = g_ptr_array_new_with_free_func (g_free);
        g_autoptr (GPtrArray) endangered = g_ptr_array_new_with_free_func (g_free);
        guint first = (flags & VHDX_MERGE_FLAGS_DELETE_MERGED) ? 0 : 1;

        if (!check_chain (child, depth, error))
                return NULL;
        /* Every member, to leave out; the directories of those down to the target. */
        g_ptr_array_add (paths, g_strdup (child_path));
        for (VhdxFile *file = child; vhdx_file_get_parent (file) != NULL;
             file = vhdx_file_get_parent (file))
                g_ptr_array_add (paths, g_strdup (vhdx_file_get_parent_path (file)));
        for (guint i = 0; i <= depth; i++) {
                g_autofree char *dir = g_path_get_dirname (g_ptr_array_index (paths, i));
                gboolean seen = FALSE;

                for (guint d = 0; d < dirs->len && !seen; d++)
                        seen = g_strcmp0 (g_ptr_array_index (dirs, d), dir) == 0;
                if (!seen)
                        g_ptr_array_add (dirs, g_steal_pointer (&dir));
        }
        g_ptr_array_add (paths, NULL);
        g_ptr_array_add (dirs, NULL);

        for (guint i = first; i <= depth; i++) {
                g_autoptr (GPtrArray) found =
                        vhdx_find_children ((const char *const *) dirs->pdata,
                                            &member (child, i)->info.data_write_guid,
                                            (const char *const *) paths->pdata, error);

                if (found == NULL)
                        return NULL;
                for (guint f = 0; f < found->len; f++)
                        g_ptr_array_add (endangered, g_strdup (g_ptr_array_index (found, f)));
        }
        return g_steal_pointer (&endangered);
}

/* VHDX_ERROR_WOULD_DISCARD_DATA naming the images the merge would spoil, if any. */
static gboolean
check_endangered (VhdxFile *child,
                  const char *child_path,
                  guint depth,
                  VhdxMergeFlags flags,
                  GError **error)
{
        g_autoptr (GPtrArray) endangered = NULL;
        g_autoptr (GString) names = g_string_new (NULL);

        endangered = vhdx_merge_find_endangered (child, child_path, depth, flags, error);
        if (endangered == NULL)
                return FALSE;
        if (endangered->len == 0)
                return TRUE;
        for (guint i = 0; i < endangered->len; i++) {
                g_autofree char *display =
                        g_filename_display_name (g_ptr_array_index (endangered, i));

                g_string_append_printf (names, "%s%s", i > 0 ? ", " : "", display);
        }
        g_set_error (error, VHDX_ERROR, VHDX_ERROR_WOULD_DISCARD_DATA,
                     /* TRANSLATORS: a list of image paths */
                     g_dngettext (GETTEXT_PACKAGE,
                                  "Another differencing image depends on an image the merge "
                                  "changes or deletes, and would no longer read as it does: %s",
                                  "Other differencing images depend on images the merge "
                                  "changes or deletes, and would no longer read as they do: %s",
                                  endangered->len),
                     names->str);
        return FALSE;
}

/* The copy of the merged sectors into the target. */
typedef struct {
        VhdxFile *child;
        VhdxFile *target;
        guint depth;
        guint64 old_target_size; /* before it took the child's size */
        guint64 size;            /* the child's */
        guint8 *buffer;          /* COPY_CHUNK bytes */
        VhdxProgressFunc progress;
        gpointer progress_data;
        GCancellable *cancellable;
        VhdxMergeResult *result;
        /* The run waiting to be copied: data, or zeros. */
        gboolean pending;
        gboolean pending_zero;
        guint64 pending_start;
        guint64 pending_end;
} Copy;

static gboolean
copy_data (Copy *c, guint64 offset, guint64 end, GError **error)
{
        while (offset < end) {
                guint64 n = MIN (end - offset, COPY_CHUNK - offset % COPY_CHUNK);

                if (g_cancellable_set_error_if_cancelled (c->cancellable, error))
                        return FALSE;
                if (!vhdx_file_read (c->child, offset, c->buffer, (gsize) n, error) ||
                    !vhdx_file_write (c->target, offset, c->buffer, (gsize) n,
                                      VHDX_WRITE_FLAGS_NONE, error))
                        return FALSE;
                c->result->bytes_copied += n;
                offset += n;
                if (c->progress != NULL)
                        c->progress (offset, c->size, c->progress_data);
        }
        return TRUE;
}

static gboolean
copy_pending (Copy *c, GError **error)
{
        gboolean ok;

        if (!c->pending)
                return TRUE;
        c->pending = FALSE;
        if (!c->pending_zero)
                return copy_data (c, c->pending_start, c->pending_end, error);
        ok = vhdx_file_write_zeroes (c->target, c->pending_start, c->pending_end - c->pending_start,
                                     VHDX_WRITE_FLAGS_MAY_UNMAP, error);
        if (ok) {
                c->result->bytes_zeroed += c->pending_end - c->pending_start;
                if (c->progress != NULL)
                        c->progress (c->pending_end, c->size, c->progress_data);
        }
        return ok;
}

/* Queue [@offset, @offset + @length), data or zeros, after the runs before it. */
static gboolean
copy_range (Copy *c, guint64 offset, guint64 length, gboolean zero, GError **error)
{
        if (c->pending && c->pending_zero == zero && c->pending_end == offset) {
                c->pending_end += length;
                return TRUE;
        }
        if (!copy_pending (c, error))
                return FALSE;
        c->pending = TRUE;
        c->pending_zero = zero;
        c->pending_start = offset;
        c->pending_end = offset + length;
        return TRUE;
}

/* The extent @e of the child's map: what of it the target must take. */
static gboolean
copy_extent (Copy *c, const VhdxMapExtent *e, GError **error)
{
        guint64 offset = e->offset;
        guint64 end = e->offset + e->length;

        /* Past the target's old end the child never read the target. */
        if (e->depth >= c->depth && end > c->old_target_size) {
                guint64 from = MAX (offset, c->old_target_size);

                if (from > offset && !copy_pending (c, error))
                        return FALSE;
                offset = from;
        } else if (e->depth >= c->depth) {
                return copy_pending (c, error);
        }
        switch (e->kind) {
        case VHDX_EXTENT_DATA:
                return copy_range (c, offset, end - offset, FALSE, error);
        case VHDX_EXTENT_ZERO:
                return copy_range (c, offset, end - offset, TRUE, error);
        case VHDX_EXTENT_PARENT:
        default:
                vhdx_set_error (error, VHDX_ERROR_PARENT_NOT_FOUND, _ ("parent"), e->offset,
                                _ ("the image at depth %u has no parent opened"), e->depth - 1);
                return FALSE;
        }
}

static gboolean
copy_sectors (Copy *c, GError **error)
{
        g_autoptr (GError) local_error = NULL;
        VhdxMapIter iter;
        VhdxMapExtent e;
        gboolean ok = TRUE;

        vhdx_map_iter_init (&iter, c->child, 0, c->size);
        while (ok && vhdx_map_iter_next (&iter, &e, &local_error))
                ok = copy_extent (c, &e, error);
        vhdx_map_iter_clear (&iter);
        if (local_error != NULL) {
                g_propagate_error (error, g_steal_pointer (&local_error));
                return FALSE;
        }
        if (!ok || !copy_pending (c, error))
                return FALSE;
        if (c->progress != NULL)
                c->progress (c->size, c->size, c->progress_data);
        return TRUE;
}

/* The order of the changes of the metadata region, for a commit that takes
 * several log sequences: the items in free space first, then the table
 * that names them. */
enum {
        ORDER_ITEM = VHDX_WRITER_ORDER_STRUCTURE,
        ORDER_TABLE,
};

/* Read @count bytes of @file at @offset as it is now (through the
 * writer's view when it is being written). */
static gboolean
read_file (VhdxFile *file,
           guint64 offset,
           void *buf,
           gsize count,
           const char *structure,
           GError **error)
{
        if (vhdx_file_is_writable (file))
                return vhdx_writer_read (file, offset, buf, count, structure, error);
        return vhdx_io_read_exact (file->io, buf, count, offset, structure, error);
}

/* An entry of an item marked IsVirtualDisk that the specification does
 * not define (those it defines are taken one by one). */
static gboolean
is_other_virtual_disk_item (const guint8 *entry)
{
        VhdxGuid id = vhdx_get_guid (entry + VHDX_METADATA_ENTRY_OFF_ITEM_ID);

        return (vhdx_get_le32 (entry + VHDX_METADATA_ENTRY_OFF_FLAGS) &
                VHDX_METADATA_FLAG_IS_VIRTUAL_DISK) &&
               !vhdx_metadata_item_is_known (&id);
}

/*
 * The other items marked IsVirtualDisk: the target's are destroyed and
 * the child's copied (MS-VHDX 2.6.1.2), queued for the next commit: each
 * copied item into space that neither the old table nor the new one
 * names, then the new table.
 */
static gboolean
take_other_virtual_disk_items (VhdxFile *child, VhdxFile *target, GError **error)
{
        g_autofree guint8 *from = g_malloc (VHDX_METADATA_TABLE_SIZE);
        g_autofree guint8 *table = g_malloc (VHDX_METADATA_TABLE_SIZE);
        g_autofree guint8 *taken = NULL;
        guint64 region = target->info.metadata_offset;
        guint old_count, others = 0;

        if (!read_file (child, child->info.metadata_offset, from, VHDX_METADATA_TABLE_SIZE,
                        _ ("metadata table"), error) ||
            !read_file (target, region, table, VHDX_METADATA_TABLE_SIZE, _ ("metadata table"),
                        error))
                return FALSE;
        old_count = vhdx_metadata_table_count (table);
        for (guint i = 0; i < vhdx_metadata_table_count (from); i++)
                others += is_other_virtual_disk_item (vhdx_metadata_table_entry (from, i));
        for (guint i = 0; i < old_count; i++)
                others += is_other_virtual_disk_item (vhdx_metadata_table_entry (table, i));
        if (others == 0)
                return TRUE;

        /* Space is looked for in a table that names both the old items and
         * those placed so far. */
        taken = g_memdup2 (table, VHDX_METADATA_TABLE_SIZE);
        for (guint i = old_count; i-- > 0;) {
                if (is_other_virtual_disk_item (vhdx_metadata_table_entry (table, i)))
                        vhdx_metadata_table_remove (table, i);
        }
        for (guint i = 0; i < vhdx_metadata_table_count (from); i++) {
                const guint8 *entry = vhdx_metadata_table_entry (from, i);
                guint32 offset = vhdx_get_le32 (entry + VHDX_METADATA_ENTRY_OFF_OFFSET);
                guint32 length = vhdx_get_le32 (entry + VHDX_METADATA_ENTRY_OFF_LENGTH);
                g_autofree guint8 *item = NULL;
                guint32 place;

                if (!is_other_virtual_disk_item (entry))
                        continue;
                item = g_malloc (MAX (length, 1));
                if (!read_file (child, child->info.metadata_offset + offset, item, length,
                                _ ("metadata item"), error))
                        return FALSE;
                if (!vhdx_metadata_table_find_space (taken, target->info.metadata_length, length,
                                                     &place) ||
                    !vhdx_metadata_table_append (taken, entry, place) ||
                    !vhdx_metadata_table_append (table, entry, place)) {
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                                     _ ("The metadata region of the image merged into has no "
                                        "room for the child's metadata item of %u bytes"),
                                     length);
                        return FALSE;
                }
                if (length > 0 && !vhdx_writer_queue_bytes (target, region + place, item, length,
                                                            ORDER_ITEM, _ ("metadata item"), error))
                        return FALSE;
        }
        /* The entries as far as the longer of the two tables reaches. */
        return vhdx_writer_queue_bytes (target, region, table,
                                        VHDX_METADATA_HEADER_SIZE +
                                                (gsize) MAX (old_count,
                                                             vhdx_metadata_table_count (table)) *
                                                        VHDX_METADATA_ENTRY_SIZE,
                                        ORDER_TABLE, _ ("metadata table"), error);
}

/* The child's metadata items marked IsVirtualDisk, besides its size, taken
 * by the target in one commit (MS-VHDX 2.6.1.2). */
static gboolean
take_virtual_disk_items (VhdxFile *child, VhdxFile *target, VhdxMergeResult *result, GError **error)
{
        const VhdxInfo *from = &child->info;
        const VhdxInfo *to = &target->info;

        result->disk_id_changed = !vhdx_guid_equal (&from->virtual_disk_id, &to->virtual_disk_id);
        result->physical_sector_size_changed =
                from->physical_sector_size != to->physical_sector_size;
        if (!result->disk_id_changed && !result->physical_sector_size_changed)
                return TRUE;
        return vhdx_file_write_disk_items (target,
                                           result->physical_sector_size_changed
                                                   ? from->physical_sector_size
                                                   : 0,
                                           result->disk_id_changed ? &from->virtual_disk_id : NULL,
                                           error);
}

gboolean
vhdx_file_merge (VhdxFile *child,
                 const char *child_path,
                 guint depth,
                 VhdxMergeFlags flags,
                 VhdxProgressFunc progress,
                 gpointer progress_data,
                 GCancellable *cancellable,
                 VhdxMergeResult *result,
                 GError **error)
{
        VhdxMergeResult local_result = { 0 };
        g_autofree guint8 *buffer = NULL;
        VhdxFile *target, *above;
        VhdxGuid guid;
        Copy copy = { 0 };

        g_return_val_if_fail (child != NULL && child_path != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (result == NULL)
                result = &local_result;
        memset (result, 0, sizeof *result);
        if (!check_chain (child, depth, error))
                return FALSE;
        target = member (child, depth);
        above = member (child, depth - 1);
        if (!vhdx_writer_check (target, error) || !vhdx_writer_check (above, error))
                return FALSE;
        if (!(flags & VHDX_MERGE_FLAGS_FORCE) &&
            !check_endangered (child, child_path, depth, flags, error))
                return FALSE;
        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return FALSE;

        result->layers = depth;
        result->old_size = target->info.virtual_size;
        result->new_size = child->info.virtual_size;
        result->old_data_write_guid = target->info.data_write_guid;
        /* The target's next identity, known to the image above it first. */
        vhdx_guid_new_random (&guid);
        if (!vhdx_file_set_parent_linkage2 (above, &guid, error))
                return FALSE;
        vhdx_writer_set_data_write_guid (target, &guid);
        result->new_data_write_guid = guid;

        copy.child = child;
        copy.target = target;
        copy.depth = depth;
        copy.old_target_size = target->info.virtual_size;
        copy.size = child->info.virtual_size;
        copy.progress = progress;
        copy.progress_data = progress_data;
        copy.cancellable = cancellable;
        copy.result = result;
        if (copy.size != copy.old_target_size &&
            !vhdx_file_resize (target, copy.size, VHDX_RESIZE_FLAGS_DISCARD_DATA, NULL, NULL, NULL,
                               NULL, error))
                return FALSE;
        buffer = g_try_malloc (COPY_CHUNK);
        if (buffer == NULL) {
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                                     _ ("Out of memory for the copy buffer"));
                return FALSE;
        }
        copy.buffer = buffer;
        if (!copy_sectors (&copy, error)) {
                /* What was copied is harmless: the chain reads as before. */
                g_autoptr (GError) flush_error = NULL;

                if (!vhdx_file_flush (target, &flush_error))
                        g_debug ("flush after a failed merge: %s", flush_error->message);
                return FALSE;
        }
        if (!vhdx_file_flush (target, error))
                return FALSE;
        /* Nothing copied (an empty child): the target still gets its new identity. */
        if (!vhdx_writer_begin_change (target, TRUE, error) ||
            !take_other_virtual_disk_items (child, target, error) ||
            !take_virtual_disk_items (child, target, result, error) ||
            !vhdx_file_flush (target, error))
                return FALSE;
        /* The target's identity is durable: the image above names it alone. */
        return vhdx_file_settle_parent_linkage (above, &guid, error);
}

/* Merging images named by their paths */

/* Whether @a and @b name the same file. */
static gboolean
same_file (const char *a, const char *b)
{
        GStatBuf sa, sb;

        return g_stat (a, &sa) == 0 && g_stat (b, &sb) == 0 && sa.st_dev == sb.st_dev &&
               sa.st_ino == sb.st_ino;
}

/* The chain of the image at @path, opened as a merge into the ancestor at
 * @depth needs it: that ancestor and the image above it read-write, the
 * others read-only. */
static VhdxFile *
open_chain (const char *path, guint depth, GError **error)
{
        VhdxOpenOptions options = { .path = path };
        gboolean child_writable = depth == 1;
        VhdxIo *io = vhdx_io_open_path (path, child_writable, error);

        if (io == NULL)
                return NULL;
        if (depth > 0) {
                options.writable_ancestors = G_GUINT64_CONSTANT (1) << (depth - 1);
                if (depth > 1)
                        options.writable_ancestors |= G_GUINT64_CONSTANT (1) << (depth - 2);
        }
        return vhdx_file_open_full (io,
                                    child_writable ? VHDX_OPEN_FLAGS_READ_WRITE
                                                   : VHDX_OPEN_FLAGS_NONE,
                                    &options, error);
}

/* The depth of the ancestor at @into_path in the chain of the image at @path. */
static gboolean
find_depth (const char *path, const char *into_path, guint *depth, GError **error)
{
        g_autoptr (VhdxFile) chain = open_chain (path, 0, error);
        guint d = 1;

        if (chain == NULL)
                return FALSE;
        for (VhdxFile *file = chain; vhdx_file_get_parent (file) != NULL;
             file = vhdx_file_get_parent (file), d++) {
                if (same_file (vhdx_file_get_parent_path (file), into_path)) {
                        *depth = d;
                        return TRUE;
                }
        }
        g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                     _ ("%s is not an ancestor of the image"), into_path);
        return FALSE;
}

/* Closes the images the merge changed, reporting what failed. */
static gboolean
close_changed (VhdxFile *chain, guint depth, GError **error)
{
        VhdxFile *above = chain;

        for (guint i = 1; i < depth; i++)
                above = vhdx_file_get_parent (above);
        return vhdx_file_close (vhdx_file_get_parent (above), error) &&
               vhdx_file_close (above, error);
}

gboolean
vhdx_merge_images (const char *child_path,
                   const char *into_path,
                   VhdxMergeFlags flags,
                   VhdxProgressFunc progress,
                   gpointer progress_data,
                   GCancellable *cancellable,
                   VhdxMergeResult *result,
                   GError **error)
{
        g_auto (VhdxMergeResult) local_result = { 0 };
        g_autoptr (VhdxFile) chain = NULL;
        g_autoptr (GPtrArray) folded = g_ptr_array_new_with_free_func (g_free);
        g_autofree char *target_path = NULL;
        guint depth = 1;

        g_return_val_if_fail (child_path != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (result == NULL)
                result = &local_result;
        if (into_path != NULL && !find_depth (child_path, into_path, &depth, error))
                return FALSE;
        chain = open_chain (child_path, depth, error);
        if (chain == NULL)
                return FALSE;
        /* The images folded, the child first, and the target below them. */
        g_ptr_array_add (folded, g_strdup (child_path));
        for (VhdxFile *file = chain; file != NULL && target_path == NULL;
             file = vhdx_file_get_parent (file)) {
                const char *parent_path = vhdx_file_get_parent_path (file);

                if (parent_path == NULL)
                        break;
                if (folded->len < depth)
                        g_ptr_array_add (folded, g_strdup (parent_path));
                else
                        target_path = g_strdup (parent_path);
        }
        if (!vhdx_file_merge (chain, child_path, depth, flags, progress, progress_data, cancellable,
                              result, error) ||
            !close_changed (chain, depth, error))
                return FALSE;
        g_clear_pointer (&chain, vhdx_file_free);
        result->target_path = g_steal_pointer (&target_path);
        result->folded = g_ptr_array_ref (folded);
        if (!(flags & VHDX_MERGE_FLAGS_DELETE_MERGED))
                return TRUE;
        for (guint i = 0; i < folded->len; i++) {
                const char *name = g_ptr_array_index (folded, i);

                if (g_unlink (name) != 0) {
                        int saved_errno = errno;
                        g_autofree char *display = g_filename_display_name (name);

                        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                                     _ ("Merged, but %s could not be deleted: %s"), display,
                                     g_strerror (saved_errno));
                        return FALSE;
                }
        }
        return TRUE;
}
