/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxImage's I/O on the virtual disk: reads, streams, writes, zeroes, discards and flushes. */
#include "config.h"

#include <glib/gi18n-lib.h>

#include "vhdx-image-private.h"
#include "vhdx-input-stream.h"
#include "vhdx-output-stream.h"
#include "vhdx-writer.h"

/* Long reads and writes look at their cancellable between chunks of this size. */
#define IO_CHUNK_SIZE ((gsize) 8 * 1024 * 1024)

/* Zeroing and discarding look at their cancellable between chunks of this
 * size, a multiple of every block size (powers of two up to 256 MiB), so
 * that a block covered entirely by a range is covered entirely by a chunk. */
#define CLEAR_CHUNK_SIZE (G_GUINT64_CONSTANT (1) << 30)

/* Reading */

/* Reads a range known to lie inside the disk, a chunk at a time. */
static gboolean
read_chunked (VhdxImage *self,
              guint64 offset,
              guint8 *buffer,
              gsize count,
              GCancellable *cancellable,
              GError **error)
{
        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return FALSE;
        while (count > 0) {
                gsize n = MIN (count, IO_CHUNK_SIZE);

                if (!vhdx_file_read (self->handle, offset, buffer, n, error))
                        return FALSE;
                offset += n;
                buffer += n;
                count -= n;
                if (count > 0 && g_cancellable_set_error_if_cancelled (cancellable, error))
                        return FALSE;
        }
        return TRUE;
}

/* Reads a VhdxImageRange into its buffer, all of it or nothing. */
static gpointer
image_read (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        VhdxImageRange *range = data;
        gboolean ok;

        g_rw_lock_reader_lock (&self->request_lock);
        ok = vhdx_file_check_range (self->handle, range->offset, range->length, error) &&
             read_chunked (self, range->offset, range->buffer, (gsize) range->length, cancellable,
                           error);
        g_rw_lock_reader_unlock (&self->request_lock);
        return GINT_TO_POINTER (ok);
}

static const VhdxImageCall read_call = { .func = image_read, .read_pool = TRUE };

/**
 * vhdx_image_read: (skip)
 * @self: an image
 * @offset: where to start reading in the virtual disk
 * @buffer: where to put the bytes
 * @count: how many bytes to read
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Reads @count bytes of the virtual disk from @offset into @buffer, as a
 * guest would read them.  The range must lie inside the virtual disk:
 * unlike [method@Vhdx.Image.read_bytes], this never reads fewer bytes than
 * asked for.
 *
 * This may be called from several threads at once.  Bindings use
 * [method@Vhdx.Image.read_bytes], which allocates the buffer.
 *
 * Returns: %TRUE on success; %FALSE with @error set, with
 *   %VHDX_ERROR_OUT_OF_RANGE if the range goes beyond the end of the
 *   virtual disk
 *
 * Since: 0.1
 */
gboolean
vhdx_image_read (VhdxImage *self,
                 guint64 offset,
                 void *buffer,
                 gsize count,
                 GCancellable *cancellable,
                 GError **error)
{
        VhdxImageRange range = { offset, count, buffer };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (buffer != NULL || count == 0, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return image_read (self, &range, cancellable, error) != NULL;
}

/**
 * vhdx_image_read_async: (skip)
 * @self: an image
 * @offset: where to start reading in the virtual disk
 * @buffer: where to put the bytes; it must stay valid until @callback runs
 * @count: how many bytes to read
 * @io_priority: the I/O priority of the request
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the bytes are read
 * @user_data: (closure): data for @callback
 *
 * Reads into @buffer in a worker thread, as [method@Vhdx.Image.read] does.
 * Call [method@Vhdx.Image.read_finish] from @callback.  Bindings use
 * [method@Vhdx.Image.read_bytes_async], which allocates the buffer.
 *
 * Since: 0.1
 */
void
vhdx_image_read_async (VhdxImage *self,
                       guint64 offset,
                       void *buffer,
                       gsize count,
                       int io_priority,
                       GCancellable *cancellable,
                       GAsyncReadyCallback callback,
                       gpointer user_data)
{
        VhdxImageRange range = { offset, count, buffer };

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (buffer != NULL || count == 0);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        vhdx_image_run_async (self, &read_call, g_memdup2 (&range, sizeof range), g_free,
                              vhdx_image_read_async, io_priority, cancellable, callback, user_data);
}

/**
 * vhdx_image_read_finish: (skip)
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a read started with [method@Vhdx.Image.read_async].
 *
 * Returns: %TRUE if @buffer holds the bytes; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_read_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish (self, result, vhdx_image_read_async, error);
}

/* Gives a read of up to @range's length its buffer: the length is cut at
 * the end of the disk (0 and no buffer past it). */
static gboolean
range_buffer_new (VhdxImage *self, VhdxImageRange *range, GError **error)
{
        guint64 size = vhdx_file_get_info (self->handle)->virtual_size;

        range->buffer = NULL;
        if (range->offset >= size || range->length == 0) {
                range->length = 0;
                return TRUE;
        }
        range->length = MIN (range->length, size - range->offset);
        range->buffer = g_try_malloc ((gsize) range->length);
        if (range->buffer == NULL) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                             _ ("Not enough memory to read %llu bytes"),
                             (unsigned long long) range->length);
                return FALSE;
        }
        return TRUE;
}

static void
range_free_buffer (gpointer data)
{
        g_free (((VhdxImageRange *) data)->buffer);
        g_free (data);
}

/* Reads a range that range_buffer_new() cut, and gives its buffer to the
 * bytes returned. */
static gpointer
image_read_bytes (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        VhdxImageRange *range = data;
        gboolean ok;

        if (range->length == 0)
                return g_bytes_new (NULL, 0);
        g_rw_lock_reader_lock (&self->request_lock);
        ok = read_chunked (self, range->offset, range->buffer, (gsize) range->length, cancellable,
                           error);
        g_rw_lock_reader_unlock (&self->request_lock);
        if (!ok)
                return NULL;
        return g_bytes_new_take (g_steal_pointer (&range->buffer), (gsize) range->length);
}

static const VhdxImageCall read_bytes_call = {
        .func = image_read_bytes,
        .result_free = (GDestroyNotify) g_bytes_unref,
        .read_pool = TRUE,
};

/**
 * vhdx_image_read_bytes:
 * @self: an image
 * @offset: where to start reading in the virtual disk
 * @count: how many bytes to read at most
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Reads up to @count bytes of the virtual disk from @offset.  As with
 * [method@Gio.InputStream.read_bytes], fewer bytes are returned when the
 * range crosses the end of the disk, and an empty [struct@GLib.Bytes] at or
 * past the end.
 *
 * This may be called from several threads at once; a program with a main
 * loop should call [method@Vhdx.Image.read_bytes_async] instead.
 *
 * Returns: (transfer full): the bytes read, or %NULL with @error set
 *
 * Since: 0.1
 */
GBytes *
vhdx_image_read_bytes (VhdxImage *self,
                       guint64 offset,
                       gsize count,
                       GCancellable *cancellable,
                       GError **error)
{
        VhdxImageRange range = { offset, count, NULL };
        GBytes *bytes;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (self->handle != NULL, NULL);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        if (g_cancellable_set_error_if_cancelled (cancellable, error) ||
            !range_buffer_new (self, &range, error))
                return NULL;
        bytes = image_read_bytes (self, &range, cancellable, error);
        g_free (range.buffer);
        return bytes;
}

/**
 * vhdx_image_read_bytes_async:
 * @self: an image
 * @offset: where to start reading in the virtual disk
 * @count: how many bytes to read at most
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the bytes are read
 * @user_data: (closure): data for @callback
 *
 * Reads up to @count bytes of the virtual disk from @offset in a worker
 * thread, as [method@Vhdx.Image.read_bytes] does.  Call
 * [method@Vhdx.Image.read_bytes_finish] from @callback to get them.
 *
 * Since: 0.1
 */
void
vhdx_image_read_bytes_async (VhdxImage *self,
                             guint64 offset,
                             gsize count,
                             int io_priority,
                             GCancellable *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer user_data)
{
        g_autoptr (GTask) task = NULL;
        VhdxImageRange range = { offset, count, NULL };
        GError *error = NULL;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        task = vhdx_image_task_new (self, vhdx_image_read_bytes_async, io_priority, cancellable,
                                    callback, user_data);
        /* The buffer comes from the caller's thread, where the bytes are
         * usually freed: the allocator then reuses it for the next request,
         * where a buffer of a worker's arena would be given back to the
         * kernel when freed here and faulted in again by the next. */
        if (!range_buffer_new (self, &range, &error)) {
                g_task_return_error (task, error);
                return;
        }
        if (range.length == 0) {
                g_task_return_pointer (task, g_bytes_new (NULL, 0), (GDestroyNotify) g_bytes_unref);
                return;
        }
        vhdx_image_task_run (g_steal_pointer (&task), &read_bytes_call,
                             g_memdup2 (&range, sizeof range), range_free_buffer);
}

/**
 * vhdx_image_read_bytes_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a read started with [method@Vhdx.Image.read_bytes_async].
 *
 * Returns: (transfer full): the bytes read, or %NULL with @error set
 *
 * Since: 0.1
 */
GBytes *
vhdx_image_read_bytes_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish_pointer (self, result, vhdx_image_read_bytes_async, error);
}

/**
 * vhdx_image_open_stream:
 * @self: an image
 *
 * Opens a stream over the virtual disk, positioned at its start.  The
 * stream can seek; several streams of one image may be read at once.
 *
 * Returns: (transfer full): a [class@Vhdx.InputStream]
 *
 * Since: 0.1
 */
GInputStream *
vhdx_image_open_stream (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (self->handle != NULL, NULL);

        return g_object_new (VHDX_TYPE_INPUT_STREAM, "image", self, NULL);
}

/**
 * vhdx_image_open_io_stream:
 * @self: an image
 *
 * Opens a stream to read and write the virtual disk: its input stream is
 * a [class@Vhdx.InputStream], as [method@Vhdx.Image.open_stream] returns,
 * and its output stream a [class@Vhdx.OutputStream].  Each has its own
 * position, at the start of the disk: seek each of them on its own.
 *
 * Closing the stream flushes the image, as [method@Vhdx.Image.flush] does,
 * but does not close the image.  The stream of a read-only image can be
 * opened, but its writes fail with %G_IO_ERROR_READ_ONLY.
 *
 * Returns: (transfer full): a [class@Gio.IOStream] over the virtual disk
 *
 * Since: 0.1
 */
GIOStream *
vhdx_image_open_io_stream (VhdxImage *self)
{
        g_autoptr (GInputStream) input = NULL;
        g_autoptr (GOutputStream) output = NULL;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (self->handle != NULL, NULL);

        input = vhdx_image_open_stream (self);
        output = g_object_new (VHDX_TYPE_OUTPUT_STREAM, "image", self, NULL);
        return g_simple_io_stream_new (input, output);
}

/* Writing */

typedef enum {
        MODIFY_WRITE,
        MODIFY_ZEROES,
        MODIFY_DISCARD,
} ModifyKind;

/* A change of the virtual disk: what image_modify() makes. */
typedef struct {
        ModifyKind kind;
        guint64 offset;
        guint64 length;
        const void *buffer; /* the bytes of a write */
        GBytes *bytes;      /* what holds them, for write_bytes_async() */
        VhdxWriteFlags flags;
} Modify;

static void
modify_free (gpointer data)
{
        Modify *m = data;

        g_clear_pointer (&m->bytes, g_bytes_unref);
        g_free (m);
}

/* A write of @bytes, which @m does not hold. */
static void
modify_set_bytes (Modify *m, GBytes *bytes)
{
        gsize size;

        m->buffer = g_bytes_get_data (bytes, &size);
        m->length = size;
}

/* Makes a change allowed and known to lie inside the disk, a chunk at a
 * time; a flush at the end makes it durable when FUA asks for it. */
static gboolean
modify_chunked (VhdxImage *self, const Modify *m, GCancellable *cancellable, GError **error)
{
        VhdxWriteFlags flags = m->flags & ~VHDX_WRITE_FLAGS_FUA;
        const guint8 *buffer = m->buffer;
        guint64 offset = m->offset;
        guint64 length = m->length;

        while (length > 0) {
                guint64 n;
                gboolean ok;

                switch (m->kind) {
                case MODIFY_WRITE:
                        n = MIN (length, IO_CHUNK_SIZE);
                        ok = vhdx_file_write (self->handle, offset, buffer, (gsize) n, flags,
                                              error);
                        buffer += n;
                        break;
                case MODIFY_ZEROES:
                        n = MIN (length, CLEAR_CHUNK_SIZE - offset % CLEAR_CHUNK_SIZE);
                        ok = vhdx_file_write_zeroes (self->handle, offset, n, flags, error);
                        break;
                case MODIFY_DISCARD:
                default:
                        n = MIN (length, CLEAR_CHUNK_SIZE - offset % CLEAR_CHUNK_SIZE);
                        ok = vhdx_file_discard (self->handle, offset, n, flags, error);
                        break;
                }
                if (!ok)
                        return FALSE;
                offset += n;
                length -= n;
                if (length > 0 && g_cancellable_set_error_if_cancelled (cancellable, error))
                        return FALSE;
        }
        return (m->flags & VHDX_WRITE_FLAGS_FUA) == 0 || vhdx_file_flush (self->handle, error);
}

/* Makes the change of a Modify, or none. */
static gpointer
image_modify (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        const Modify *m = data;
        gboolean ok;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        g_rw_lock_reader_lock (&self->request_lock);
        /*
         * The engine's refusals of a read-only or closed image come first,
         * as it makes them: an empty write asks for them.  The range is
         * checked whole, so that a range that does not fit writes nothing.
         */
        ok = vhdx_file_write (self->handle, 0, NULL, 0, VHDX_WRITE_FLAGS_NONE, error) &&
             vhdx_file_check_range (self->handle, m->offset, m->length, error);
        if (ok) {
                ok = modify_chunked (self, m, cancellable, error);
                g_atomic_int_inc (&self->writes);
        }
        g_rw_lock_reader_unlock (&self->request_lock);
        return GINT_TO_POINTER (ok);
}

static const VhdxImageCall modify_call = { .func = image_modify };

/**
 * vhdx_image_write: (skip)
 * @self: an image opened read-write
 * @offset: where to start writing in the virtual disk
 * @buffer: (array length=count) (element-type guint8): the bytes to write
 * @count: how many bytes to write
 * @flags: how to write them
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Writes @count bytes from @buffer to the virtual disk at @offset.  The
 * range must lie inside the virtual disk: a write never goes past its end,
 * and one that would fails, writing nothing.  Reads see the bytes as soon
 * as the call returns; they are durable once the image is flushed, or at
 * once with %VHDX_WRITE_FLAGS_FUA.
 *
 * A cancellation noticed before the write starts writes nothing; a long
 * write notices it between chunks of 8 MiB, and what it wrote until then
 * stays written.
 *
 * This may be called from several threads at once.  Bindings use
 * [method@Vhdx.Image.write_bytes].
 *
 * Returns: %TRUE on success; %FALSE with @error set: %G_IO_ERROR_READ_ONLY
 *   for an image not opened read-write, %G_IO_ERROR_CLOSED after
 *   [method@Vhdx.Image.close], %VHDX_ERROR_OUT_OF_RANGE if the range goes
 *   beyond the end of the virtual disk, %G_IO_ERROR_CANCELLED
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write (VhdxImage *self,
                  guint64 offset,
                  const void *buffer,
                  gsize count,
                  VhdxWriteFlags flags,
                  GCancellable *cancellable,
                  GError **error)
{
        Modify m = { MODIFY_WRITE, offset, count, buffer, NULL, flags };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (buffer != NULL || count == 0, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return image_modify (self, &m, cancellable, error) != NULL;
}

/**
 * vhdx_image_write_async: (skip)
 * @self: an image opened read-write
 * @offset: where to start writing in the virtual disk
 * @buffer: (array length=count) (element-type guint8): the bytes to write;
 *   they must stay valid until @callback runs
 * @count: how many bytes to write
 * @flags: how to write them
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the bytes are written
 * @user_data: (closure): data for @callback
 *
 * Writes @buffer in a worker thread, as [method@Vhdx.Image.write] does.
 * Call [method@Vhdx.Image.write_finish] from @callback.  Bindings use
 * [method@Vhdx.Image.write_bytes_async].
 *
 * Since: 0.1
 */
void
vhdx_image_write_async (VhdxImage *self,
                        guint64 offset,
                        const void *buffer,
                        gsize count,
                        VhdxWriteFlags flags,
                        int io_priority,
                        GCancellable *cancellable,
                        GAsyncReadyCallback callback,
                        gpointer user_data)
{
        Modify m = { MODIFY_WRITE, offset, count, buffer, NULL, flags };

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (buffer != NULL || count == 0);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        vhdx_image_run_async (self, &modify_call, g_memdup2 (&m, sizeof m), modify_free,
                              vhdx_image_write_async, io_priority, cancellable, callback,
                              user_data);
}

/**
 * vhdx_image_write_finish: (skip)
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a write started with [method@Vhdx.Image.write_async].
 *
 * Returns: %TRUE if the bytes were written; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish (self, result, vhdx_image_write_async, error);
}

/**
 * vhdx_image_write_bytes:
 * @self: an image opened read-write
 * @offset: where to start writing in the virtual disk
 * @bytes: the bytes to write
 * @flags: how to write them
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Writes @bytes to the virtual disk at @offset, as
 * [method@Vhdx.Image.write] does: all of them, or none if the range goes
 * beyond the end of the virtual disk.
 *
 * This may be called from several threads at once; a program with a main
 * loop should call [method@Vhdx.Image.write_bytes_async] instead.
 *
 * Returns: %TRUE on success; %FALSE with @error set: %G_IO_ERROR_READ_ONLY
 *   for an image not opened read-write, %G_IO_ERROR_CLOSED after
 *   [method@Vhdx.Image.close], %VHDX_ERROR_OUT_OF_RANGE if the range goes
 *   beyond the end of the virtual disk, %G_IO_ERROR_CANCELLED
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write_bytes (VhdxImage *self,
                        guint64 offset,
                        GBytes *bytes,
                        VhdxWriteFlags flags,
                        GCancellable *cancellable,
                        GError **error)
{
        Modify m = { MODIFY_WRITE, offset, 0, NULL, NULL, flags };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (bytes != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        modify_set_bytes (&m, bytes);
        return image_modify (self, &m, cancellable, error) != NULL;
}

/**
 * vhdx_image_write_bytes_async:
 * @self: an image opened read-write
 * @offset: where to start writing in the virtual disk
 * @bytes: the bytes to write
 * @flags: how to write them
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the bytes are written
 * @user_data: (closure): data for @callback
 *
 * Writes @bytes to the virtual disk at @offset in a worker thread, as
 * [method@Vhdx.Image.write_bytes] does.  Call
 * [method@Vhdx.Image.write_bytes_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_write_bytes_async (VhdxImage *self,
                              guint64 offset,
                              GBytes *bytes,
                              VhdxWriteFlags flags,
                              int io_priority,
                              GCancellable *cancellable,
                              GAsyncReadyCallback callback,
                              gpointer user_data)
{
        Modify m = { MODIFY_WRITE, offset, 0, NULL, NULL, flags };

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (bytes != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        modify_set_bytes (&m, bytes);
        m.bytes = g_bytes_ref (bytes);
        vhdx_image_run_async (self, &modify_call, g_memdup2 (&m, sizeof m), modify_free,
                              vhdx_image_write_bytes_async, io_priority, cancellable, callback,
                              user_data);
}

/**
 * vhdx_image_write_bytes_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a write started with [method@Vhdx.Image.write_bytes_async].
 *
 * Returns: %TRUE if the bytes were written; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write_bytes_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish (self, result, vhdx_image_write_bytes_async, error);
}

/**
 * vhdx_image_write_zeroes:
 * @self: an image opened read-write
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @flags: how to write the zeros: with %VHDX_WRITE_FLAGS_MAY_UNMAP, the
 *   blocks that the range covers entirely may be freed
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Makes a range of the virtual disk read as zeros, never as the data of a
 * differencing image's parent.  Ranges of a dynamic or differencing image
 * that read as zeros already take no new space; the blocks that the range
 * covers entirely are freed with %VHDX_WRITE_FLAGS_MAY_UNMAP, and are
 * filled with zeros otherwise.  The range must lie inside the virtual disk.
 *
 * A cancellation noticed before the call starts changes nothing; a long
 * range notices it between chunks of 1 GiB, and what was zeroed until then
 * stays zeroed.
 *
 * Returns: %TRUE on success; %FALSE with @error set, with the errors of
 *   [method@Vhdx.Image.write]
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write_zeroes (VhdxImage *self,
                         guint64 offset,
                         guint64 length,
                         VhdxWriteFlags flags,
                         GCancellable *cancellable,
                         GError **error)
{
        Modify m = { MODIFY_ZEROES, offset, length, NULL, NULL, flags };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return image_modify (self, &m, cancellable, error) != NULL;
}

/**
 * vhdx_image_write_zeroes_async:
 * @self: an image opened read-write
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @flags: how to write the zeros
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the range reads as zeros
 * @user_data: (closure): data for @callback
 *
 * Zeroes a range in a worker thread, as [method@Vhdx.Image.write_zeroes]
 * does.  Call [method@Vhdx.Image.write_zeroes_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_write_zeroes_async (VhdxImage *self,
                               guint64 offset,
                               guint64 length,
                               VhdxWriteFlags flags,
                               int io_priority,
                               GCancellable *cancellable,
                               GAsyncReadyCallback callback,
                               gpointer user_data)
{
        Modify m = { MODIFY_ZEROES, offset, length, NULL, NULL, flags };

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        vhdx_image_run_async (self, &modify_call, g_memdup2 (&m, sizeof m), modify_free,
                              vhdx_image_write_zeroes_async, io_priority, cancellable, callback,
                              user_data);
}

/**
 * vhdx_image_write_zeroes_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.write_zeroes_async].
 *
 * Returns: %TRUE if the range reads as zeros; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write_zeroes_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish (self, result, vhdx_image_write_zeroes_async, error);
}

/**
 * vhdx_image_discard:
 * @self: an image opened read-write
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @flags: how to discard: %VHDX_WRITE_FLAGS_FUA makes the change durable
 *   at once; %VHDX_WRITE_FLAGS_MAY_UNMAP changes nothing
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Says that a range of the virtual disk is no longer needed, as a guest's
 * TRIM does.  A dynamic or differencing image frees the blocks that the
 * range covers entirely, which then read as zeros; the rest of the range,
 * and every block of a fixed image, keeps its data.  The range must lie
 * inside the virtual disk.
 *
 * A cancellation noticed before the call starts changes nothing; a long
 * range notices it between chunks of 1 GiB.
 *
 * Returns: %TRUE on success; %FALSE with @error set, with the errors of
 *   [method@Vhdx.Image.write]
 *
 * Since: 0.1
 */
gboolean
vhdx_image_discard (VhdxImage *self,
                    guint64 offset,
                    guint64 length,
                    VhdxWriteFlags flags,
                    GCancellable *cancellable,
                    GError **error)
{
        Modify m = { MODIFY_DISCARD, offset, length, NULL, NULL, flags };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return image_modify (self, &m, cancellable, error) != NULL;
}

/**
 * vhdx_image_discard_async:
 * @self: an image opened read-write
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @flags: how to discard
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the range is discarded
 * @user_data: (closure): data for @callback
 *
 * Discards a range in a worker thread, as [method@Vhdx.Image.discard]
 * does.  Call [method@Vhdx.Image.discard_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_discard_async (VhdxImage *self,
                          guint64 offset,
                          guint64 length,
                          VhdxWriteFlags flags,
                          int io_priority,
                          GCancellable *cancellable,
                          GAsyncReadyCallback callback,
                          gpointer user_data)
{
        Modify m = { MODIFY_DISCARD, offset, length, NULL, NULL, flags };

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        vhdx_image_run_async (self, &modify_call, g_memdup2 (&m, sizeof m), modify_free,
                              vhdx_image_discard_async, io_priority, cancellable, callback,
                              user_data);
}

/**
 * vhdx_image_discard_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.discard_async].
 *
 * Returns: %TRUE if the range was discarded; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_discard_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish (self, result, vhdx_image_discard_async, error);
}

/* Flushing */

static gpointer
image_flush (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        gboolean ok;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        g_rw_lock_reader_lock (&self->request_lock);
        ok = vhdx_file_flush (self->handle, error);
        g_rw_lock_reader_unlock (&self->request_lock);
        return GINT_TO_POINTER (ok);
}

static const VhdxImageCall flush_call = { .func = image_flush };

/**
 * vhdx_image_flush:
 * @self: an image
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Makes everything written to the image so far durable: the data, then
 * the changes of the image's structures, through its log.  Writes may go
 * on meanwhile, from other threads; they are made durable by a later
 * flush.  A read-only image has nothing to flush.
 *
 * If a flush fails, the image refuses every later write and flush with
 * %G_IO_ERROR_FAILED: it must be opened again, which replays its log.
 *
 * Returns: %TRUE on success; %FALSE with @error set, with
 *   %G_IO_ERROR_CLOSED after [method@Vhdx.Image.close]
 *
 * Since: 0.1
 */
gboolean
vhdx_image_flush (VhdxImage *self, GCancellable *cancellable, GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return image_flush (self, NULL, cancellable, error) != NULL;
}

/**
 * vhdx_image_flush_async:
 * @self: an image
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the image is flushed
 * @user_data: (closure): data for @callback
 *
 * Flushes the image in a worker thread, as [method@Vhdx.Image.flush]
 * does.  Call [method@Vhdx.Image.flush_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_flush_async (VhdxImage *self,
                        int io_priority,
                        GCancellable *cancellable,
                        GAsyncReadyCallback callback,
                        gpointer user_data)
{
        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        vhdx_image_run_async (self, &flush_call, NULL, NULL, vhdx_image_flush_async, io_priority,
                              cancellable, callback, user_data);
}

/**
 * vhdx_image_flush_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.flush_async].
 *
 * Returns: %TRUE if the image was flushed; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_flush_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish (self, result, vhdx_image_flush_async, error);
}
