/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a VhdxImage says of itself without reading its virtual disk: properties, extents, check. */
#include "config.h"

#include "vhdx-check.h"
#include "vhdx-extent-private.h"
#include "vhdx-image-private.h"
#include "vhdx-map.h"
#include "vhdx-problems.h"
#include "vhdx-writer.h"

/* Properties */

/**
 * vhdx_image_get_file:
 * @self: an image
 *
 * Gets the image file.
 *
 * Returns: (transfer none) (nullable): the file of [property@Vhdx.Image:file]
 *
 * Since: 0.1
 */
GFile *
vhdx_image_get_file (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return self->file;
}

/**
 * vhdx_image_get_parent_file:
 * @self: an image
 *
 * Gets the parent that was given with [property@Vhdx.Image:parent-file].
 *
 * Returns: (transfer none) (nullable): the file given, or %NULL
 *
 * Since: 0.1
 */
GFile *
vhdx_image_get_parent_file (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return self->parent_file;
}

/**
 * vhdx_image_get_parent_search_path:
 * @self: an image
 *
 * Gets the directories the image's parent is looked for in, besides those
 * its locator names.
 *
 * Returns: (transfer none) (nullable) (array zero-terminated=1): the
 *   directories, or %NULL
 *
 * Since: 0.1
 */
const char *const *
vhdx_image_get_parent_search_path (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return (const char *const *) self->parent_search_path;
}

/**
 * vhdx_image_get_flags:
 * @self: an image
 *
 * Gets how the image was opened.
 *
 * Returns: the flags of [property@Vhdx.Image:flags]
 *
 * Since: 0.1
 */
VhdxOpenFlags
vhdx_image_get_flags (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), VHDX_OPEN_FLAGS_NONE);

        return self->flags;
}

/**
 * vhdx_image_get_virtual_size:
 * @self: an image
 *
 * Gets the size of the virtual disk.
 *
 * Returns: the size in bytes of the virtual disk
 *
 * Since: 0.1
 */
guint64
vhdx_image_get_virtual_size (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        return self->handle != NULL ? vhdx_image_info (self)->virtual_size : 0;
}

/**
 * vhdx_image_get_block_size:
 * @self: an image
 *
 * Gets the size of the image's payload blocks.
 *
 * Returns: the block size in bytes
 *
 * Since: 0.1
 */
guint
vhdx_image_get_block_size (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        return self->handle != NULL ? vhdx_image_info (self)->block_size : 0;
}

/**
 * vhdx_image_get_logical_sector_size:
 * @self: an image
 *
 * Gets the logical sector size of the virtual disk.
 *
 * Returns: 512 or 4096
 *
 * Since: 0.1
 */
guint
vhdx_image_get_logical_sector_size (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        return self->handle != NULL ? vhdx_image_info (self)->logical_sector_size : 0;
}

/**
 * vhdx_image_get_physical_sector_size:
 * @self: an image
 *
 * Gets the physical sector size of the virtual disk.
 *
 * Returns: 512 or 4096
 *
 * Since: 0.1
 */
guint
vhdx_image_get_physical_sector_size (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        return self->handle != NULL ? vhdx_image_info (self)->physical_sector_size : 0;
}

/**
 * vhdx_image_get_disk_type:
 * @self: an image
 *
 * Gets whether the image is fixed, dynamic or differencing.
 *
 * Returns: the disk type
 *
 * Since: 0.1
 */
VhdxDiskType
vhdx_image_get_disk_type (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), VHDX_DISK_TYPE_FIXED);

        return self->handle != NULL ? vhdx_image_info (self)->disk_type : VHDX_DISK_TYPE_FIXED;
}

/**
 * vhdx_image_get_virtual_disk_id:
 * @self: an image
 *
 * Gets the GUID of the virtual disk.  [method@Vhdx.Image.set_metadata]
 * can give it a new one; the string returned before stays valid for as
 * long as @self.
 *
 * Returns: (nullable): the GUID in lowercase, or %NULL before the image is open
 *
 * Since: 0.1
 */
const char *
vhdx_image_get_virtual_disk_id (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return g_atomic_pointer_get (&self->virtual_disk_id);
}

/**
 * vhdx_image_get_data_write_guid:
 * @self: an image
 *
 * Gets the GUID that changes whenever the virtual disk's data changes,
 * as [property@Vhdx.Image:data-write-guid] says.
 *
 * Returns: (nullable): the GUID in lowercase, or %NULL before the image is open
 *
 * Since: 0.1
 */
const char *
vhdx_image_get_data_write_guid (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return g_atomic_pointer_get (&self->data_write_guid);
}

/**
 * vhdx_image_get_file_write_guid:
 * @self: an image
 *
 * Gets the GUID that changes whenever the file is opened for writing,
 * as [property@Vhdx.Image:file-write-guid] says.
 *
 * Returns: (nullable): the GUID in lowercase, or %NULL before the image is open
 *
 * Since: 0.1
 */
const char *
vhdx_image_get_file_write_guid (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return g_atomic_pointer_get (&self->file_write_guid);
}

/**
 * vhdx_image_get_creator:
 * @self: an image
 *
 * Gets the name of the program that made the image.
 *
 * Returns: (nullable): the creator, empty if the image names none, or
 *   %NULL before the image is open
 *
 * Since: 0.1
 */
const char *
vhdx_image_get_creator (VhdxImage *self)
{
        const VhdxInfo *info;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        info = vhdx_image_info (self);
        if (info == NULL)
                return NULL;
        return info->creator != NULL ? info->creator : "";
}

/**
 * vhdx_image_get_log_state:
 * @self: an image
 *
 * Gets what opening the image did with its log.
 *
 * Returns: the state of the log
 *
 * Since: 0.1
 */
VhdxLogState
vhdx_image_get_log_state (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), VHDX_LOG_STATE_CLEAN);

        return self->handle != NULL ? vhdx_image_info (self)->log_state : VHDX_LOG_STATE_CLEAN;
}

/**
 * vhdx_image_get_file_size:
 * @self: an image
 *
 * Gets the size of the image file: its current size for an image opened
 * read-write.
 *
 * Returns: the size in bytes of the file
 *
 * Since: 0.1
 */
guint64
vhdx_image_get_file_size (VhdxImage *self)
{
        g_autoptr (GError) error = NULL;
        guint64 size;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        if (self->handle == NULL)
                return 0;
        if (self->io != NULL) {
                if (vhdx_io_get_size (self->io, &size, &error))
                        return size;
                g_debug ("Could not get the size of the image: %s", error->message);
        }
        return vhdx_file_get_info (self->handle)->file_size;
}

static gboolean
image_get_allocated (VhdxImage *self, guint64 *allocated, GError **error)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->allocated_lock);
        /* A write that ends during the count makes the next call count again. */
        gint writes = g_atomic_int_get (&self->writes);

        if (!self->allocated_known || self->allocated_writes != writes) {
                gboolean ok;

                g_rw_lock_reader_lock (&self->request_lock);
                ok = vhdx_file_get_allocated_bytes (self->handle, &self->allocated, error);
                g_rw_lock_reader_unlock (&self->request_lock);
                if (!ok)
                        return FALSE;
                self->allocated_known = TRUE;
                self->allocated_writes = writes;
        }
        *allocated = self->allocated;
        return TRUE;
}

/**
 * vhdx_image_get_allocated_size:
 * @self: an image
 *
 * Gets how many bytes of the virtual disk the image file stores itself.
 * The first call reads the whole block allocation table; later calls
 * return the figure it found, until the image is written.
 *
 * Returns: the number of bytes, or 0 if the block allocation table
 *   cannot be read
 *
 * Since: 0.1
 */
guint64
vhdx_image_get_allocated_size (VhdxImage *self)
{
        g_autoptr (GError) error = NULL;
        guint64 allocated = 0;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        if (self->handle == NULL)
                return 0;
        if (!image_get_allocated (self, &allocated, &error)) {
                g_debug ("Could not count the allocated bytes: %s", error->message);
                return 0;
        }
        return allocated;
}

/**
 * vhdx_image_is_in_use: (get-property in-use)
 * @self: an image
 *
 * Gets whether another process had the image open for writing when it was
 * opened with %VHDX_OPEN_FLAGS_FORCE_SHARE.
 *
 * Returns: %TRUE when it had
 *
 * Since: 0.1
 */
gboolean
vhdx_image_is_in_use (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);

        return self->handle != NULL && vhdx_image_info (self)->written_elsewhere;
}

/**
 * vhdx_image_is_read_only: (get-property read-only)
 * @self: an image
 *
 * Gets whether the image refuses writes.
 *
 * Returns: %TRUE unless the image was opened with
 *   %VHDX_OPEN_FLAGS_READ_WRITE
 *
 * Since: 0.1
 */
gboolean
vhdx_image_is_read_only (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), TRUE);

        if (self->handle != NULL)
                return !vhdx_file_is_writable (self->handle);
        return (self->flags & VHDX_OPEN_FLAGS_READ_WRITE) == 0;
}

/**
 * vhdx_image_has_parent:
 * @self: an image
 *
 * Gets whether the image is a differencing image.
 *
 * Returns: %TRUE if the image has a parent
 *
 * Since: 0.1
 */
gboolean
vhdx_image_has_parent (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);

        return self->handle != NULL && vhdx_image_info (self)->has_parent;
}

/**
 * vhdx_image_get_parent_locator:
 * @self: an image
 *
 * Gets the entries of a differencing image's parent locator.
 *
 * Returns: (transfer none) (nullable) (element-type utf8 utf8): the
 *   locator's keys and values, or %NULL when the image has no locator
 *
 * Since: 0.1
 */
GHashTable *
vhdx_image_get_parent_locator (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return self->parent_locator;
}

/**
 * vhdx_image_get_chain_depth:
 * @self: an image
 *
 * Gets how many ancestors the image has.
 *
 * Returns: 0 for an image without a parent, 1 when the parent has none,
 *   and so on
 *
 * Since: 0.1
 */
guint
vhdx_image_get_chain_depth (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        return self->handle != NULL ? vhdx_file_get_chain_depth (self->handle) : 0;
}

/* Extents */

/* The extents of a VhdxImageRange. */
static gpointer
image_get_extents (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        const VhdxImageRange *range = data;
        g_autoptr (GPtrArray) extents = NULL;
        g_autoptr (GError) local_error = NULL;
        VhdxMapIter iter;
        VhdxMapExtent extent;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        g_rw_lock_reader_lock (&self->request_lock);
        if (!vhdx_file_check_range (self->handle, range->offset, range->length, error)) {
                g_rw_lock_reader_unlock (&self->request_lock);
                return NULL;
        }
        extents = g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_extent_free);
        vhdx_map_iter_init (&iter, self->handle, range->offset, range->length);
        while (vhdx_map_iter_next (&iter, &extent, &local_error)) {
                g_ptr_array_add (extents, vhdx_extent_new (&extent));
                if (g_cancellable_set_error_if_cancelled (cancellable, &local_error))
                        break;
        }
        vhdx_map_iter_clear (&iter);
        g_rw_lock_reader_unlock (&self->request_lock);
        if (local_error != NULL) {
                g_propagate_error (error, g_steal_pointer (&local_error));
                return NULL;
        }
        return g_steal_pointer (&extents);
}

static const VhdxImageCall get_extents_call = {
        .func = image_get_extents,
        .result_free = (GDestroyNotify) g_ptr_array_unref,
};

/**
 * vhdx_image_get_extents:
 * @self: an image
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Tells where the bytes of a range of the virtual disk come from, without
 * reading them: the extents returned cover the range in order, each
 * either data stored in one file of the chain or zeros.
 *
 * Returns: (transfer container) (element-type VhdxExtent): the extents,
 *   or %NULL with @error set, with %VHDX_ERROR_OUT_OF_RANGE if the
 *   range goes beyond the end of the virtual disk
 *
 * Since: 0.1
 */
GPtrArray *
vhdx_image_get_extents (VhdxImage *self,
                        guint64 offset,
                        guint64 length,
                        GCancellable *cancellable,
                        GError **error)
{
        VhdxImageRange range = { offset, length, NULL };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (self->handle != NULL, NULL);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        return image_get_extents (self, &range, cancellable, error);
}

/**
 * vhdx_image_get_extents_async:
 * @self: an image
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the extents are known
 * @user_data: (closure): data for @callback
 *
 * Finds the extents of a range in a worker thread, as
 * [method@Vhdx.Image.get_extents] does.  Call
 * [method@Vhdx.Image.get_extents_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_get_extents_async (VhdxImage *self,
                              guint64 offset,
                              guint64 length,
                              int io_priority,
                              GCancellable *cancellable,
                              GAsyncReadyCallback callback,
                              gpointer user_data)
{
        VhdxImageRange range = { offset, length, NULL };

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        vhdx_image_run_async (self, &get_extents_call, g_memdup2 (&range, sizeof range), g_free,
                              vhdx_image_get_extents_async, io_priority, cancellable, callback,
                              user_data);
}

/**
 * vhdx_image_get_extents_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.get_extents_async].
 *
 * Returns: (transfer container) (element-type VhdxExtent): the extents,
 *   or %NULL with @error set
 *
 * Since: 0.1
 */
GPtrArray *
vhdx_image_get_extents_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish_pointer (self, result, vhdx_image_get_extents_async, error);
}

/* Checking */

/* The problems of the image: those its opening found, then those of the check. */
static gpointer
image_check (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        g_autoptr (GPtrArray) problems = NULL;
        gboolean ok;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        problems = vhdx_problems_new ();
        vhdx_problems_add_all (problems, vhdx_file_get_open_problems (self->handle));
        g_rw_lock_reader_lock (&self->request_lock);
        ok = vhdx_file_check (self->handle, problems, error);
        g_rw_lock_reader_unlock (&self->request_lock);
        if (!ok)
                return NULL;
        return g_steal_pointer (&problems);
}

static const VhdxImageCall check_call = {
        .func = image_check,
        .result_free = (GDestroyNotify) g_ptr_array_unref,
};

/**
 * vhdx_image_check:
 * @self: an image
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Validates every structure of the image and every entry of its block
 * allocation table.  The problems noticed while opening the image (such
 * as a damaged header next to a good one) come first.
 *
 * Corruption is reported as problems, not as an error: @error is set only
 * when the check itself could not be made, such as when the file cannot
 * be read.
 *
 * Returns: (transfer container) (element-type VhdxProblem): the problems
 *   found, empty for a clean image, or %NULL with @error set
 *
 * Since: 0.1
 */
GPtrArray *
vhdx_image_check (VhdxImage *self, GCancellable *cancellable, GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (self->handle != NULL, NULL);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        return image_check (self, NULL, cancellable, error);
}

/**
 * vhdx_image_check_async:
 * @self: an image
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the check is done
 * @user_data: (closure): data for @callback
 *
 * Checks the image in a worker thread, as [method@Vhdx.Image.check] does.
 * Call [method@Vhdx.Image.check_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_check_async (VhdxImage *self,
                        int io_priority,
                        GCancellable *cancellable,
                        GAsyncReadyCallback callback,
                        gpointer user_data)
{
        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        vhdx_image_run_async (self, &check_call, NULL, NULL, vhdx_image_check_async, io_priority,
                              cancellable, callback, user_data);
}

/**
 * vhdx_image_check_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.check_async].
 *
 * Returns: (transfer container) (element-type VhdxProblem): the problems
 *   found, or %NULL with @error set
 *
 * Since: 0.1
 */
GPtrArray *
vhdx_image_check_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish_pointer (self, result, vhdx_image_check_async, error);
}
