/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's VhdxIo over a GFile: a file descriptor, or a seekable stream. */
#include "config.h"

#include "vhdx-gfile-io-private.h"

#include <glib/gi18n-lib.h>

/*
 * The stream backend, for GFiles without a local path (resource://, GVfs
 * mounts).  A stream has one position, so a seek and the read that follows
 * it are one step under the lock; only this backend pays for that.
 */
typedef struct {
        VhdxIo parent;
        GMutex lock;
        GFileInputStream *stream;
        guint64 size;
} VhdxGFileIo;

static gboolean
stream_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        VhdxGFileIo *self = (VhdxGFileIo *) io;
        g_autoptr (GMutexLocker) locker = NULL;

        *n_read = 0;
        if (offset >= self->size || count == 0)
                return TRUE;
        count = (gsize) MIN ((guint64) count, self->size - offset);

        locker = g_mutex_locker_new (&self->lock);
        if (!g_seekable_seek (G_SEEKABLE (self->stream), (goffset) offset, G_SEEK_SET, NULL, error))
                return FALSE;
        return g_input_stream_read_all (G_INPUT_STREAM (self->stream), buf, count, n_read, NULL,
                                        error);
}

static gboolean
stream_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        VhdxGFileIo *self = (VhdxGFileIo *) io;

        *size = self->size;
        return TRUE;
}

static void
stream_free (VhdxIo *io)
{
        VhdxGFileIo *self = (VhdxGFileIo *) io;

        g_clear_object (&self->stream);
        g_mutex_clear (&self->lock);
        g_free (self);
}

static const VhdxIoVTable stream_vtable = {
        .pread = stream_pread,
        .get_size = stream_get_size,
        .free = stream_free,
};

/* The size of the file behind @stream: from its info, or by seeking to its end. */
static gboolean
stream_query_size (GFileInputStream *stream,
                   guint64 *size,
                   GCancellable *cancellable,
                   GError **error)
{
        g_autoptr (GFileInfo) info = NULL;
        goffset end;

        info = g_file_input_stream_query_info (stream, G_FILE_ATTRIBUTE_STANDARD_SIZE, cancellable,
                                               NULL);
        if (info != NULL && g_file_info_has_attribute (info, G_FILE_ATTRIBUTE_STANDARD_SIZE)) {
                *size = (guint64) g_file_info_get_size (info);
                return TRUE;
        }
        if (!g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_END, cancellable, error))
                return FALSE;
        end = g_seekable_tell (G_SEEKABLE (stream));
        if (end < 0) {
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                                     _ ("Could not get the size of the image"));
                return FALSE;
        }
        *size = (guint64) end;
        return TRUE;
}

static VhdxIo *
open_stream (GFile *file, gboolean writable, GCancellable *cancellable, GError **error)
{
        g_autoptr (GFileInputStream) stream = NULL;
        VhdxGFileIo *self;
        guint64 size = 0;

        if (writable) {
                g_autofree char *uri = g_file_get_uri (file);

                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                             _ ("%s: only local files can be opened for writing"), uri);
                return NULL;
        }
        stream = g_file_read (file, cancellable, error);
        if (stream == NULL)
                return NULL;
        if (!g_seekable_can_seek (G_SEEKABLE (stream))) {
                g_autofree char *uri = g_file_get_uri (file);

                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                             _ ("%s: the file cannot be read at random offsets"), uri);
                return NULL;
        }
        if (!stream_query_size (stream, &size, cancellable, error))
                return NULL;

        self = g_new0 (VhdxGFileIo, 1);
        self->parent.vtable = &stream_vtable;
        g_mutex_init (&self->lock);
        self->stream = g_steal_pointer (&stream);
        self->size = size;
        return &self->parent;
}

VhdxIo *
vhdx_gfile_io_open (GFile *file, gboolean writable, GCancellable *cancellable, GError **error)
{
        g_autofree char *path = NULL;

        g_return_val_if_fail (G_IS_FILE (file), NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        path = g_file_get_path (file);
        if (path != NULL)
                return vhdx_io_open_path (path, writable, error);
        return open_stream (file, writable, cancellable, error);
}

GFile *
vhdx_gfile_io_file_for_name (const char *name)
{
        if (name[0] != '/' && g_uri_peek_scheme (name) != NULL)
                return g_file_new_for_uri (name);
        return g_file_new_for_path (name);
}

char *
vhdx_gfile_io_name (GFile *file)
{
        char *path = g_file_get_path (file);

        return path != NULL ? path : g_file_get_uri (file);
}
