/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxImage's management operations: changing the image itself rather than its virtual disk's
 * data, and merging a differencing image into an ancestor. */
#include "config.h"

#include <glib/gi18n-lib.h>

#include "vhdx-gfile-io-private.h"
#include "vhdx-compact.h"
#include "vhdx-image-private.h"
#include "vhdx-merge.h"
#include "vhdx-relink.h"
#include "vhdx-resize.h"
#include "vhdx-set-metadata.h"
#include "vhdx-writer.h"

/* The smallest size */

/**
 * vhdx_image_get_minimum_size:
 * @self: an image
 * @size: (out): return location for the size, in bytes
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Finds the smallest size that [method@Vhdx.Image.resize] can shrink the
 * virtual disk to without dropping data: the end of the last block that
 * stores data (or the virtual size, when the disk ends inside that block),
 * or 0 when no block does.  Every block of a fixed image stores data, so
 * its minimum is its size; a differencing image counts only the blocks
 * where it stores sectors itself, not those of its parents.
 *
 * This reads the whole block allocation table.
 *
 * Returns: (skip): %TRUE with @size set; %FALSE with @error set
 *
 * Since: 0.2
 */
gboolean
vhdx_image_get_minimum_size (VhdxImage *self,
                             guint64 *size,
                             GCancellable *cancellable,
                             GError **error)
{
        gboolean ok;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (size != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return FALSE;
        g_rw_lock_reader_lock (&self->request_lock);
        ok = vhdx_file_get_minimum_size (self->handle, size, error);
        g_rw_lock_reader_unlock (&self->request_lock);
        return ok;
}

/* Resizing */

/* A resize: its arguments, how it reports progress, and whether it
 * changed the size. */
typedef struct {
        guint64 size;
        VhdxResizeFlags flags;
        VhdxProgressFunc progress_func;
        gpointer progress_data;
        gboolean changed;
} Resize;

/* Resizes the engine's image once no other request runs, and none starts
 * before it ends. */
static gpointer
image_resize (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        Resize *resize = data;
        VhdxResizeResult result = { 0 };
        gboolean ok;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        g_rw_lock_writer_lock (&self->request_lock);
        /* The engine's refusals of a read-only or closed image, as writes
         * get them: an empty write asks for them. */
        ok = vhdx_file_write (self->handle, 0, NULL, 0, VHDX_WRITE_FLAGS_NONE, error) &&
             vhdx_file_resize (self->handle, resize->size, resize->flags, resize->progress_func,
                               resize->progress_data, cancellable, &result, error);
        if (ok)
                resize->changed = result.old_size != result.new_size;
        /* Blocks dropped or allocated: the allocated size is counted again. */
        g_atomic_int_inc (&self->writes);
        g_rw_lock_writer_unlock (&self->request_lock);
        return GINT_TO_POINTER (ok);
}

/* In the caller's context after a resize. */
static void
resize_done (VhdxImage *self, gpointer data)
{
        Resize *resize = data;

        if (resize->changed)
                vhdx_image_notify_virtual_size (self);
}

static const VhdxImageCall resize_call = { .func = image_resize, .done = resize_done };

/**
 * vhdx_image_resize:
 * @self: an image opened read-write
 * @size: the new size of the virtual disk, in bytes: a multiple of the
 *   logical sector size, at most 64 TiB
 * @flags: how to shrink the disk
 * @progress_callback: (scope call) (nullable) (closure progress_data): called
 *   as blocks are moved, or %NULL
 * @progress_data: data for @progress_callback
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Changes the size of the virtual disk, as Hyper-V's `Resize-VHD` does.
 *
 * Growing the disk, the new part reads as zeros (as the parent's data for
 * a differencing image, past the block that held the old end); a fixed
 * image gets the new blocks allocated in the file.  When the block
 * allocation table no longer fits its region, the payload blocks that
 * follow it are moved to the end of the file, or the table moves to a new
 * region there when another structure follows it.
 *
 * Shrinking the disk fails with %VHDX_ERROR_WOULD_DISCARD_DATA, naming the
 * first byte stored past @size, unless nothing is stored there
 * ([method@Vhdx.Image.get_minimum_size] says how small the disk can get) or
 * @flags has %VHDX_RESIZE_FLAGS_DISCARD_DATA: the blocks wholly past the
 * new end are then dropped (their file space stays in the file, unused),
 * and the block that holds the new end keeps its data up to it.
 *
 * The data up to the smaller of the two sizes reads as before.  The change
 * is committed at once through the image's log, in the flush that ends the
 * call, so that a crash leaves the old size or the new one; a failure or a
 * cancellation before that commit leaves the old size (with the file
 * perhaps longer).  No other request of the image runs meanwhile: those running
 * end first, later ones wait.  On success,
 * [property@Vhdx.Image:virtual-size] takes the new size and is notified
 * when it changed.
 *
 * @progress_callback runs in the calling thread while no other request of
 * the image can: it must not read or write the image.  A program with a
 * main loop should call [method@Vhdx.Image.resize_async] instead.
 *
 * Returns: %TRUE on success; %FALSE with @error set:
 *   %G_IO_ERROR_READ_ONLY for an image not opened read-write,
 *   %G_IO_ERROR_CLOSED after [method@Vhdx.Image.close],
 *   %VHDX_ERROR_WOULD_DISCARD_DATA, %G_IO_ERROR_CANCELLED
 *
 * Since: 0.2
 */
gboolean
vhdx_image_resize (VhdxImage *self,
                   guint64 size,
                   VhdxResizeFlags flags,
                   VhdxProgressCallback progress_callback,
                   gpointer progress_data,
                   GCancellable *cancellable,
                   GError **error)
{
        Resize resize = { size, flags, progress_callback, progress_data, FALSE };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (image_resize (self, &resize, cancellable, error) == NULL)
                return FALSE;
        resize_done (self, &resize);
        return TRUE;
}

/**
 * vhdx_image_resize_async:
 * @self: an image opened read-write
 * @size: the new size of the virtual disk, in bytes
 * @flags: how to shrink the disk
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @progress_callback: (scope notified) (nullable) (closure progress_data)
 *   (destroy progress_data_free): called as blocks are moved, or %NULL
 * @progress_data: data for @progress_callback
 * @progress_data_free: (nullable): frees @progress_data once
 *   @progress_callback is no longer called
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async) (closure user_data): called when the disk has
 *   its new size
 * @user_data: data for @callback
 *
 * Resizes the virtual disk in a worker thread, as
 * [method@Vhdx.Image.resize] does.  @progress_callback and the
 * notification of [property@Vhdx.Image:virtual-size] run in the
 * thread-default main context of the caller, as @callback does, and before
 * it; @progress_data_free is called there too, before @callback.  Call
 * [method@Vhdx.Image.resize_finish] from @callback.
 *
 * A cancellation noticed before the resize starts changes nothing; once it
 * has started, whether it stops is the resize's choice, and the result
 * says what it did.
 *
 * Since: 0.2
 */
void
vhdx_image_resize_async (VhdxImage *self,
                         guint64 size,
                         VhdxResizeFlags flags,
                         int io_priority,
                         VhdxProgressCallback progress_callback,
                         gpointer progress_data,
                         GDestroyNotify progress_data_free,
                         GCancellable *cancellable,
                         GAsyncReadyCallback callback,
                         gpointer user_data)
{
        GTask *task;
        VhdxImageProgress *progress;
        Resize *resize;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        task = vhdx_image_task_new (self, vhdx_image_resize_async, io_priority, cancellable,
                                    callback, user_data);
        g_task_set_check_cancellable (task, FALSE);
        progress = vhdx_image_progress_new (task, progress_callback, progress_data,
                                            progress_data_free);
        resize = g_new0 (Resize, 1);
        resize->size = size;
        resize->flags = flags;
        if (progress_callback != NULL) {
                resize->progress_func = vhdx_image_progress_report;
                resize->progress_data = progress;
        }
        vhdx_image_task_run_then (task, &resize_call, resize, g_free, progress);
}

/**
 * vhdx_image_resize_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.resize_async].
 *
 * Returns: %TRUE if the virtual disk has its new size; %FALSE with @error
 *   set
 *
 * Since: 0.2
 */
gboolean
vhdx_image_resize_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish (self, result, vhdx_image_resize_async, error);
}

/* Compacting */

/* A compaction: its flags and how it reports progress. */
typedef struct {
        VhdxCompactFlags flags;
        VhdxProgressFunc progress_func;
        gpointer progress_data;
} Compact;

/* Compacts the engine's image once no other request runs, and none
 * starts before it ends. */
static gpointer
image_compact (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        Compact *compact = data;
        gboolean ok;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        g_rw_lock_writer_lock (&self->request_lock);
        /* The engine's refusals of a read-only or closed image, as writes
         * get them: an empty write asks for them. */
        ok = vhdx_file_write (self->handle, 0, NULL, 0, VHDX_WRITE_FLAGS_NONE, error) &&
             vhdx_file_compact (self->handle, compact->flags & VHDX_COMPACT_FLAGS_QUICK,
                                compact->progress_func, compact->progress_data, cancellable, NULL,
                                error);
        /* Blocks dropped: the allocated size is counted again. */
        g_atomic_int_inc (&self->writes);
        g_rw_lock_writer_unlock (&self->request_lock);
        return GINT_TO_POINTER (ok);
}

static const VhdxImageCall compact_call = { .func = image_compact };

/**
 * vhdx_image_compact:
 * @self: a dynamic or differencing image opened read-write
 * @flags: whether to read the stored blocks
 * @progress_callback: (scope call) (nullable) (closure progress_data): called
 *   as blocks are read and moved, or %NULL
 * @progress_data: data for @progress_callback
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Gives back the file space that the virtual disk does not need, as
 * Hyper-V's `Optimize-VHD` does; what the disk reads does not change.
 *
 * Unless @flags has %VHDX_COMPACT_FLAGS_QUICK, every stored block is read,
 * and a block that reads as zeros is dropped: a dynamic image's block
 * becomes one that is not stored (and reads as zeros), a differencing
 * image's becomes a zero block, which hides the parent's data as before.
 * A block of a differencing image that stores only some of its sectors
 * is dropped only when none of them is its own (it reads its parent), or
 * stays as it is.  Either way, blocks that are unallocated, zeroed or
 * unmapped but still name file space give it back, and so do sector
 * bitmaps no block needs any more.  Then the stored blocks move down into
 * the holes, and the file is cut after the last one; it never becomes
 * shorter than its headers, log and regions need.
 *
 * Only the image's FileWriteGuid changes: moving blocks is no change of
 * the disk's data (MS-VHDX 2.2.2), so differencing images made from @self
 * stay its children.  A fixed image, which keeps every block allocated,
 * is refused: convert it to a dynamic one instead.
 *
 * Data is copied only into space that no committed entry of the block
 * allocation table names, and the entries naming its new place are
 * committed through the image's log, many blocks at a time, once the
 * copies are durable; the file is cut only after that.  A crash at any
 * point leaves an image that reads as before, and so does a failure or a
 * cancellation, which is noticed between two commits and leaves the image
 * partly compacted.  No other request of the image runs meanwhile: those
 * running end first, later ones wait.  [property@Vhdx.Image:file-size]
 * then gives the new size of the file.
 *
 * @progress_callback runs in the calling thread while no other request of
 * the image can: it must not read or write the image.  A program with a
 * main loop should call [method@Vhdx.Image.compact_async] instead.
 *
 * Returns: %TRUE on success; %FALSE with @error set:
 *   %G_IO_ERROR_READ_ONLY for an image not opened read-write,
 *   %G_IO_ERROR_CLOSED after [method@Vhdx.Image.close],
 *   %VHDX_ERROR_NOT_SUPPORTED for a fixed image, %G_IO_ERROR_CANCELLED
 *
 * Since: 0.2
 */
gboolean
vhdx_image_compact (VhdxImage *self,
                    VhdxCompactFlags flags,
                    VhdxProgressCallback progress_callback,
                    gpointer progress_data,
                    GCancellable *cancellable,
                    GError **error)
{
        Compact compact = { flags, progress_callback, progress_data };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return image_compact (self, &compact, cancellable, error) != NULL;
}

/**
 * vhdx_image_compact_async:
 * @self: a dynamic or differencing image opened read-write
 * @flags: whether to read the stored blocks
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @progress_callback: (scope notified) (nullable) (closure progress_data)
 *   (destroy progress_data_free): called as blocks are read and moved, or
 *   %NULL
 * @progress_data: data for @progress_callback
 * @progress_data_free: (nullable): frees @progress_data once
 *   @progress_callback is no longer called
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async) (closure user_data): called when the image is
 *   compacted
 * @user_data: data for @callback
 *
 * Compacts the image in a worker thread, as [method@Vhdx.Image.compact]
 * does.  @progress_callback runs in the thread-default main context of
 * the caller, as @callback does, and before it; @progress_data_free is
 * called there too, before @callback.  Call
 * [method@Vhdx.Image.compact_finish] from @callback.
 *
 * A cancellation noticed before the compaction starts changes nothing;
 * once it has started, it stops after the commit under way, leaving the
 * image partly compacted, and the result is %G_IO_ERROR_CANCELLED.
 *
 * Since: 0.2
 */
void
vhdx_image_compact_async (VhdxImage *self,
                          VhdxCompactFlags flags,
                          int io_priority,
                          VhdxProgressCallback progress_callback,
                          gpointer progress_data,
                          GDestroyNotify progress_data_free,
                          GCancellable *cancellable,
                          GAsyncReadyCallback callback,
                          gpointer user_data)
{
        GTask *task;
        VhdxImageProgress *progress;
        Compact *compact;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        task = vhdx_image_task_new (self, vhdx_image_compact_async, io_priority, cancellable,
                                    callback, user_data);
        g_task_set_check_cancellable (task, FALSE);
        progress = vhdx_image_progress_new (task, progress_callback, progress_data,
                                            progress_data_free);
        compact = g_new0 (Compact, 1);
        compact->flags = flags;
        if (progress_callback != NULL) {
                compact->progress_func = vhdx_image_progress_report;
                compact->progress_data = progress;
        }
        vhdx_image_task_run_then (task, &compact_call, compact, g_free, progress);
}

/**
 * vhdx_image_compact_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.compact_async].
 *
 * Returns: %TRUE if the image was compacted; %FALSE with @error set
 *
 * Since: 0.2
 */
gboolean
vhdx_image_compact_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish (self, result, vhdx_image_compact_async, error);
}

/* A new parent */

typedef struct {
        GFile *parent;
        VhdxSetParentFlags flags;
} SetParent;

static void
set_parent_free (gpointer data)
{
        SetParent *set_parent = data;

        g_clear_object (&set_parent->parent);
        g_free (set_parent);
}

/* Opens the new parent read-only, its own parents found as the image's
 * are, then rewrites the image's locator once no other request runs. */
static gpointer
image_set_parent (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        SetParent *set_parent = data;
        g_autofree char *path = g_file_get_path (self->file);
        g_autofree char *parent_path = g_file_get_path (set_parent->parent);
        VhdxOpenOptions options = { 0 };
        g_autoptr (VhdxFile) parent = NULL;
        VhdxIo *io;
        gboolean ok;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        if (path == NULL || parent_path == NULL) {
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                     _ ("The image and its new parent must both be local files"));
                return NULL;
        }
        io = vhdx_gfile_io_open (set_parent->parent, FALSE, cancellable, error);
        if (io == NULL)
                return NULL;
        options.path = parent_path;
        options.parent_dirs = (const char *const *) self->parent_search_path;
        parent = vhdx_file_open_full (io, VHDX_OPEN_FLAGS_NONE, &options, error);
        if (parent == NULL)
                return NULL;
        g_rw_lock_writer_lock (&self->request_lock);
        /* The engine's refusals of a read-only or closed image, as writes
         * get them: an empty write asks for them. */
        ok = vhdx_file_write (self->handle, 0, NULL, 0, VHDX_WRITE_FLAGS_NONE, error) &&
             vhdx_file_set_parent (self->handle, path, parent, parent_path,
                                   (set_parent->flags & VHDX_SET_PARENT_FLAGS_IGNORE_MISMATCH) != 0,
                                   NULL, error);
        if (ok)
                vhdx_image_reload_parent_locator (self);
        g_rw_lock_writer_unlock (&self->request_lock);
        return GINT_TO_POINTER (ok);
}

/* In the caller's context after the locator changed. */
static void
set_parent_done (VhdxImage *self, gpointer data)
{
        vhdx_image_notify_parent_locator (self);
}

static const VhdxImageCall set_parent_call = { .func = image_set_parent, .done = set_parent_done };

/**
 * vhdx_image_set_parent:
 * @self: a differencing image opened read-write
 * @parent: the image to make its parent, a local file
 * @flags: whether @parent may be another image than the one @self was made
 *   from
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Points a differencing image at its parent after the parent moved, as
 * Hyper-V's `Set-VHD -ParentPath` does.  The image's parent may be missing:
 * open it with %VHDX_OPEN_FLAGS_NO_PARENT (or
 * %VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT).  @parent is opened read-only,
 * its own parents found as the image's are
 * ([property@Vhdx.Image:parent-search-path]).
 *
 * The parent locator's `relative_path` (from the image's directory, with
 * backslashes) and `absolute_win32_path` name @parent; a `volume_path` is
 * dropped; the other entries stay.  @parent must be the image @self was
 * made from (its DataWriteGuid is the locator's `parent_linkage` or
 * `parent_linkage2`) unless @flags has
 * %VHDX_SET_PARENT_FLAGS_IGNORE_MISMATCH, as `Set-VHD -IgnoreIdMismatch`
 * does: its DataWriteGuid then becomes `parent_linkage`.  The logical
 * sector sizes must be the same.  The image's DataWriteGuid is kept: what
 * its disk reads does not change.
 *
 * The new locator is committed through the image's log, so that a crash
 * leaves the old locator or the new one.  No other request of the image
 * runs meanwhile.  On success, [property@Vhdx.Image:parent-locator] takes
 * the new entries and is notified; the parent the image has open, if any,
 * stays: open the image again to read through @parent.
 *
 * Returns: %TRUE on success; %FALSE with @error set:
 *   %G_IO_ERROR_READ_ONLY for an image not opened read-write,
 *   %G_IO_ERROR_CLOSED after [method@Vhdx.Image.close],
 *   %G_IO_ERROR_NOT_SUPPORTED when the image or @parent has no local path,
 *   %VHDX_ERROR_NOT_SUPPORTED for an image that is not a differencing one,
 *   %VHDX_ERROR_PARENT_MISMATCH, %VHDX_ERROR_INVALID when @parent is the
 *   image or has it among its parents, %G_IO_ERROR_CANCELLED
 *
 * Since: 0.2
 */
gboolean
vhdx_image_set_parent (VhdxImage *self,
                       GFile *parent,
                       VhdxSetParentFlags flags,
                       GCancellable *cancellable,
                       GError **error)
{
        SetParent set_parent = { parent, flags };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (G_IS_FILE (parent), FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (image_set_parent (self, &set_parent, cancellable, error) == NULL)
                return FALSE;
        set_parent_done (self, &set_parent);
        return TRUE;
}

/**
 * vhdx_image_set_parent_async:
 * @self: a differencing image opened read-write
 * @parent: the image to make its parent, a local file
 * @flags: whether @parent may be another image than the one @self was made
 *   from
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async) (closure user_data): called when the locator
 *   names @parent
 * @user_data: data for @callback
 *
 * Points the image at @parent in a worker thread, as
 * [method@Vhdx.Image.set_parent] does.  The notification of
 * [property@Vhdx.Image:parent-locator] runs in the thread-default main
 * context of the caller, before @callback.  Call
 * [method@Vhdx.Image.set_parent_finish] from @callback.
 *
 * Since: 0.2
 */
void
vhdx_image_set_parent_async (VhdxImage *self,
                             GFile *parent,
                             VhdxSetParentFlags flags,
                             int io_priority,
                             GCancellable *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer user_data)
{
        GTask *task;
        SetParent *set_parent;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (G_IS_FILE (parent));
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        task = vhdx_image_task_new (self, vhdx_image_set_parent_async, io_priority, cancellable,
                                    callback, user_data);
        set_parent = g_new0 (SetParent, 1);
        set_parent->parent = g_object_ref (parent);
        set_parent->flags = flags;
        vhdx_image_task_run_then (task, &set_parent_call, set_parent, set_parent_free, NULL);
}

/**
 * vhdx_image_set_parent_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.set_parent_async].
 *
 * Returns: %TRUE if the parent locator names the new parent; %FALSE with
 *   @error set
 *
 * Since: 0.2
 */
gboolean
vhdx_image_set_parent_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish (self, result, vhdx_image_set_parent_async, error);
}

/* Merging */

typedef struct {
        GFile *child;
        GFile *into;
        VhdxMergeFlags flags;
        VhdxProgressFunc progress_func;
        gpointer progress_data;
} Merge;

static void
merge_free (gpointer data)
{
        Merge *merge = data;

        g_clear_object (&merge->child);
        g_clear_object (&merge->into);
        g_free (merge);
}

/* Runs the merge, then deletes the folded images if asked to. */
static gpointer
image_merge (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        Merge *merge = data;
        g_autofree char *path = g_file_get_path (merge->child);
        g_autofree char *into_path = merge->into != NULL ? g_file_get_path (merge->into) : NULL;
        g_auto (VhdxMergeResult) result = { 0 };

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        if (path == NULL || (merge->into != NULL && into_path == NULL)) {
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                     _ ("The image and the one it merges into must be local "
                                        "files"));
                return NULL;
        }
        if (!vhdx_merge_images (path, into_path, merge->flags, merge->progress_func,
                                merge->progress_data, cancellable, &result, error))
                return NULL;
        return GINT_TO_POINTER (TRUE);
}

static const VhdxImageCall merge_call = { .func = image_merge };

/**
 * vhdx_image_merge:
 * @child: a differencing image, a local file
 * @into: (nullable): the ancestor to merge into, or %NULL for the parent
 * @flags: whether to delete the merged images, and whether to spoil other
 *   images that depend on those changed
 * @progress_callback: (scope call) (nullable) (closure progress_data):
 *   called as the bytes of the virtual disk are merged, or %NULL
 * @progress_data: data for @progress_callback
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Folds the differencing image @child, and the images between it and
 * @into, into @into, as Hyper-V's `Merge-VHD` does: afterwards @into reads
 * as @child did, with its virtual size, Virtual Disk ID and physical
 * sector size.  Only the sectors that @child and the images between store
 * (or read as zeros) are copied.  The images are opened here: @into and
 * the image just above it read-write (locked as a writer's), the others
 * read-only; none of them may be open for writing elsewhere.
 *
 * The merge follows the specification's `parent_linkage2` protocol: the
 * image above @into first names @into's next DataWriteGuid, then @into
 * takes it, so that a crash or a failure at any point leaves a chain that
 * opens and reads as @child did before.  Once merged, @child still reads
 * the same through @into; an image between them no longer does alone.
 * %VHDX_MERGE_FLAGS_DELETE_MERGED deletes @child and the images between
 * once the merge succeeded.
 *
 * Other differencing images made from @into or an image between, found
 * in the directories of the chain, would no longer read as they did: the
 * merge is refused with %VHDX_ERROR_WOULD_DISCARD_DATA naming them (and
 * the children of the deleted images, with
 * %VHDX_MERGE_FLAGS_DELETE_MERGED) unless @flags has
 * %VHDX_MERGE_FLAGS_FORCE.
 *
 * @progress_callback runs in the calling thread.  A program with a main
 * loop should call [func@Vhdx.Image.merge_async] instead.
 *
 * Returns: %TRUE on success; %FALSE with @error set:
 *   %G_IO_ERROR_NOT_SUPPORTED when an image is not a local file,
 *   %VHDX_ERROR_NOT_SUPPORTED when @child is not a differencing image,
 *   %VHDX_ERROR_INVALID when @into is not one of its ancestors,
 *   %VHDX_ERROR_WOULD_DISCARD_DATA, %G_IO_ERROR_CANCELLED, or an error of
 *   opening the chain
 *
 * Since: 0.2
 */
gboolean
vhdx_image_merge (GFile *child,
                  GFile *into,
                  VhdxMergeFlags flags,
                  VhdxProgressCallback progress_callback,
                  gpointer progress_data,
                  GCancellable *cancellable,
                  GError **error)
{
        Merge merge = { child, into, flags, progress_callback, progress_data };

        g_return_val_if_fail (G_IS_FILE (child), FALSE);
        g_return_val_if_fail (into == NULL || G_IS_FILE (into), FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return image_merge (NULL, &merge, cancellable, error) != NULL;
}

/**
 * vhdx_image_merge_async:
 * @child: a differencing image, a local file
 * @into: (nullable): the ancestor to merge into, or %NULL for the parent
 * @flags: whether to delete the merged images, and whether to spoil other
 *   images that depend on those changed
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @progress_callback: (scope notified) (nullable) (closure progress_data)
 *   (destroy progress_data_free): called as the bytes of the virtual disk
 *   are merged, or %NULL
 * @progress_data: data for @progress_callback
 * @progress_data_free: (nullable): frees @progress_data once
 *   @progress_callback is no longer called
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async) (closure user_data): called when the merge ended
 * @user_data: data for @callback
 *
 * Merges in a worker thread, as [func@Vhdx.Image.merge] does.
 * @progress_callback runs in the thread-default main context of the
 * caller, as @callback does, and before it; @progress_data_free is called
 * there too, before @callback.  Call [func@Vhdx.Image.merge_finish] from
 * @callback.
 *
 * Since: 0.2
 */
void
vhdx_image_merge_async (GFile *child,
                        GFile *into,
                        VhdxMergeFlags flags,
                        int io_priority,
                        VhdxProgressCallback progress_callback,
                        gpointer progress_data,
                        GDestroyNotify progress_data_free,
                        GCancellable *cancellable,
                        GAsyncReadyCallback callback,
                        gpointer user_data)
{
        GTask *task;
        VhdxImageProgress *progress;
        Merge *merge;

        g_return_if_fail (G_IS_FILE (child));
        g_return_if_fail (into == NULL || G_IS_FILE (into));
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        task = vhdx_image_task_new (NULL, vhdx_image_merge_async, io_priority, cancellable,
                                    callback, user_data);
        g_task_set_check_cancellable (task, FALSE);
        progress = vhdx_image_progress_new (task, progress_callback, progress_data,
                                            progress_data_free);
        merge = g_new0 (Merge, 1);
        merge->child = g_object_ref (child);
        merge->into = into != NULL ? g_object_ref (into) : NULL;
        merge->flags = flags;
        if (progress_callback != NULL) {
                merge->progress_func = vhdx_image_progress_report;
                merge->progress_data = progress;
        }
        vhdx_image_task_run_then (task, &merge_call, merge, merge_free, progress);
}

/**
 * vhdx_image_merge_finish:
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [func@Vhdx.Image.merge_async].
 *
 * Returns: %TRUE if the image was merged; %FALSE with @error set
 *
 * Since: 0.2
 */
gboolean
vhdx_image_merge_finish (GAsyncResult *result, GError **error)
{
        g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
        g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vhdx_image_merge_async,
                              FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return g_task_propagate_boolean (G_TASK (result), error);
}

/* New metadata */

/* A change of the metadata: its arguments, and what it changed. */
typedef struct {
        guint physical_sector_size;
        VhdxSetMetadataFlags flags;
        gboolean size_changed;
        gboolean id_changed;
} SetMetadata;

/* Changes the engine's image once no other request runs, after the
 * differencing images beside it made from it are updated. */
static gpointer
image_set_metadata (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        SetMetadata *set = data;
        g_autofree char *path = g_file_get_path (self->file);
        g_auto (VhdxSetMetadataResult) result = { 0 };
        gboolean ok;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        g_rw_lock_writer_lock (&self->request_lock);
        /* The engine's refusals of a read-only or closed image, as writes
         * get them: an empty write asks for them. */
        ok = vhdx_file_write (self->handle, 0, NULL, 0, VHDX_WRITE_FLAGS_NONE, error) &&
             vhdx_file_set_metadata (self->handle, path, set->physical_sector_size, set->flags,
                                     &result, error);
        if (ok) {
                set->size_changed =
                        result.old_physical_sector_size != result.new_physical_sector_size;
                set->id_changed = !vhdx_guid_equal (&result.old_disk_id, &result.new_disk_id);
                if (set->id_changed)
                        vhdx_image_reload_virtual_disk_id (self);
        }
        g_rw_lock_writer_unlock (&self->request_lock);
        return GINT_TO_POINTER (ok);
}

/* In the caller's context: the notifications of what changed. */
static void
set_metadata_done (VhdxImage *self, gpointer data)
{
        SetMetadata *set = data;

        vhdx_image_notify_metadata (self, set->size_changed, set->id_changed);
}

static const VhdxImageCall set_metadata_call = { .func = image_set_metadata,
                                                 .done = set_metadata_done };

/**
 * vhdx_image_set_metadata:
 * @self: an image opened read-write
 * @physical_sector_size: the new physical sector size of the virtual disk:
 *   512 or 4096, or 0 to keep it
 * @flags: whether the virtual disk gets a new Virtual Disk ID, and whether
 *   differencing images made from the image may be left behind
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Changes the metadata of the virtual disk that Hyper-V's `Set-VHD`
 * changes: the physical sector size (`-PhysicalSectorSizeBytes`) and, with
 * %VHDX_SET_METADATA_FLAGS_RESET_DISK_ID, the Virtual Disk ID, a new
 * random one (`-ResetDiskIdentifier`).  Neither changes what the disk
 * reads.  When nothing is to change, nothing is written.
 *
 * A guest sees both, so the image gets a new DataWriteGuid, which the
 * differencing images made from it would no longer match.  Those in the
 * image's directory are updated first: each is opened for writing, without
 * its parent, and names the new DataWriteGuid in its parent locator
 * (`parent_linkage2`), as the specification's merge does; then the image
 * takes it.  A crash in between leaves them linked to the old one.  When
 * one cannot be opened for writing (another program uses it, or the file
 * is read-only), or the image has no local path to look for them, the
 * call fails before anything was changed, unless @flags has
 * %VHDX_SET_METADATA_FLAGS_FORCE: such children then no longer open with
 * the image, until [method@Vhdx.Image.set_parent] links them again with
 * %VHDX_SET_PARENT_FLAGS_IGNORE_MISMATCH.  When a write since the image
 * was opened already gave it a new DataWriteGuid, its children were left
 * behind by that write, and are not looked for.
 *
 * The creator text at the start of the file is not metadata that can
 * change: the specification forbids rewriting the first 64 KiB.
 *
 * The items are rewritten in place in one commit through the image's log,
 * so that a crash leaves the old values or the new ones.  No other
 * request of the image runs meanwhile.  On success,
 * [property@Vhdx.Image:physical-sector-size] and
 * [property@Vhdx.Image:virtual-disk-id] take the new values and are
 * notified when they changed; [property@Vhdx.Image:data-write-guid], as
 * after any change, when the image is closed.
 *
 * Returns: %TRUE on success; %FALSE with @error set:
 *   %G_IO_ERROR_READ_ONLY for an image not opened read-write,
 *   %G_IO_ERROR_CLOSED after [method@Vhdx.Image.close],
 *   %VHDX_ERROR_NOT_SUPPORTED for a physical sector size other than 512
 *   or 4096, the error that a differencing image made from the image
 *   could not be opened with (naming it), %G_IO_ERROR_NOT_SUPPORTED when
 *   the image has no local path, %G_IO_ERROR_CANCELLED
 *
 * Since: 0.2
 */
gboolean
vhdx_image_set_metadata (VhdxImage *self,
                         guint physical_sector_size,
                         VhdxSetMetadataFlags flags,
                         GCancellable *cancellable,
                         GError **error)
{
        SetMetadata set = { physical_sector_size, flags, FALSE, FALSE };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (image_set_metadata (self, &set, cancellable, error) == NULL)
                return FALSE;
        set_metadata_done (self, &set);
        return TRUE;
}

/**
 * vhdx_image_set_metadata_async:
 * @self: an image opened read-write
 * @physical_sector_size: the new physical sector size: 512 or 4096, or 0
 *   to keep it
 * @flags: whether the virtual disk gets a new Virtual Disk ID, and whether
 *   differencing images made from the image may be left behind
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async) (closure user_data): called when the image has
 *   its new metadata
 * @user_data: data for @callback
 *
 * Changes the metadata in a worker thread, as
 * [method@Vhdx.Image.set_metadata] does.  The notifications of
 * [property@Vhdx.Image:physical-sector-size] and
 * [property@Vhdx.Image:virtual-disk-id] run in the thread-default main
 * context of the caller, before @callback.  Call
 * [method@Vhdx.Image.set_metadata_finish] from @callback.
 *
 * Since: 0.2
 */
void
vhdx_image_set_metadata_async (VhdxImage *self,
                               guint physical_sector_size,
                               VhdxSetMetadataFlags flags,
                               int io_priority,
                               GCancellable *cancellable,
                               GAsyncReadyCallback callback,
                               gpointer user_data)
{
        GTask *task;
        SetMetadata *set;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        task = vhdx_image_task_new (self, vhdx_image_set_metadata_async, io_priority, cancellable,
                                    callback, user_data);
        /* Once the change started, the result says whether it was made. */
        g_task_set_check_cancellable (task, FALSE);
        set = g_new0 (SetMetadata, 1);
        set->physical_sector_size = physical_sector_size;
        set->flags = flags;
        vhdx_image_task_run_then (task, &set_metadata_call, set, g_free, NULL);
}

/**
 * vhdx_image_set_metadata_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.set_metadata_async].
 *
 * Returns: %TRUE if the image has its new metadata; %FALSE with @error set
 *
 * Since: 0.2
 */
gboolean
vhdx_image_set_metadata_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish (self, result, vhdx_image_set_metadata_async, error);
}
