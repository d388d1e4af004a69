/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxInputStream, a seekable GInputStream over the virtual disk. */
#include "config.h"

#include "vhdx-input-stream.h"
#include "vhdx-stream-seek-private.h"
#include "vhdx-read-pool-private.h"

/**
 * VhdxInputStream:
 *
 * A seekable stream over the virtual disk of a [class@Vhdx.Image], as
 * returned by [method@Vhdx.Image.open_stream].
 *
 * Reads return the bytes a guest would read, up to the end of the virtual
 * disk; asynchronous reads run in a worker thread.  The stream can seek
 * anywhere, also past the end of the disk, where reads return no bytes; it
 * cannot be truncated.  Several streams may read one image at once.
 *
 * Since: 0.1
 */

struct _VhdxInputStream {
        GInputStream parent_instance;

        VhdxImage *image;
        /* Only one operation is pending at a time, as GInputStream ensures. */
        guint64 position;
};

enum { PROP_0, PROP_IMAGE, N_PROPS };

static GParamSpec *props[N_PROPS];

static void vhdx_input_stream_seekable_iface_init (GSeekableIface *iface);

/* clang-format off */
G_DEFINE_FINAL_TYPE_WITH_CODE (VhdxInputStream, vhdx_input_stream, G_TYPE_INPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_SEEKABLE,
                                                      vhdx_input_stream_seekable_iface_init))
/* clang-format on */

/* GInputStream */

static gssize
vhdx_input_stream_read_fn (GInputStream *stream,
                           void *buffer,
                           gsize count,
                           GCancellable *cancellable,
                           GError **error)
{
        VhdxInputStream *self = VHDX_INPUT_STREAM (stream);
        guint64 size = vhdx_image_get_virtual_size (self->image);
        gsize n;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return -1;
        if (self->position >= size)
                return 0;
        n = (gsize) MIN ((guint64) count, size - self->position);
        if (!vhdx_image_read (self->image, self->position, buffer, n, cancellable, error))
                return -1;
        self->position += n;
        return (gssize) n;
}

static gssize
vhdx_input_stream_skip (GInputStream *stream,
                        gsize count,
                        GCancellable *cancellable,
                        GError **error)
{
        VhdxInputStream *self = VHDX_INPUT_STREAM (stream);
        guint64 size = vhdx_image_get_virtual_size (self->image);
        gsize n;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return -1;
        if (self->position >= size)
                return 0;
        n = (gsize) MIN ((guint64) count, size - self->position);
        self->position += n;
        return (gssize) n;
}

static gboolean
vhdx_input_stream_close_fn (GInputStream *stream, GCancellable *cancellable, GError **error)
{
        return TRUE;
}

typedef struct {
        void *buffer;
        gsize count;
} ReadData;

static void
read_thread (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
        ReadData *data = task_data;
        GError *error = NULL;
        gssize n;

        n = vhdx_input_stream_read_fn (G_INPUT_STREAM (source_object), data->buffer, data->count,
                                       cancellable, &error);
        if (n < 0)
                g_task_return_error (task, error);
        else
                g_task_return_int (task, n);
}

/* Reads run in a worker thread, so that a large read never blocks the main loop. */
static void
vhdx_input_stream_read_async (GInputStream *stream,
                              void *buffer,
                              gsize count,
                              int io_priority,
                              GCancellable *cancellable,
                              GAsyncReadyCallback callback,
                              gpointer user_data)
{
        g_autoptr (GTask) task = g_task_new (stream, cancellable, callback, user_data);
        ReadData *data = g_new0 (ReadData, 1);

        data->buffer = buffer;
        data->count = count;
        g_task_set_source_tag (task, vhdx_input_stream_read_async);
        g_task_set_priority (task, io_priority);
        g_task_set_task_data (task, data, g_free);
        vhdx_read_pool_run (task, read_thread);
}

static gssize
vhdx_input_stream_read_finish (GInputStream *stream, GAsyncResult *result, GError **error)
{
        g_return_val_if_fail (g_task_is_valid (result, stream), -1);
        g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
                                      vhdx_input_stream_read_async,
                              -1);

        return g_task_propagate_int (G_TASK (result), error);
}

/* GSeekable */

static goffset
vhdx_input_stream_tell (GSeekable *seekable)
{
        return (goffset) VHDX_INPUT_STREAM (seekable)->position;
}

static gboolean
vhdx_input_stream_seek (GSeekable *seekable,
                        goffset offset,
                        GSeekType type,
                        GCancellable *cancellable,
                        GError **error)
{
        VhdxInputStream *self = VHDX_INPUT_STREAM (seekable);
        GInputStream *stream = G_INPUT_STREAM (seekable);
        guint64 target;

        if (!vhdx_stream_seek_target (self->position, vhdx_image_get_virtual_size (self->image),
                                      offset, type, &target, error) ||
            !g_input_stream_set_pending (stream, error))
                return FALSE;
        self->position = target;
        g_input_stream_clear_pending (stream);
        return TRUE;
}

static void
vhdx_input_stream_seekable_iface_init (GSeekableIface *iface)
{
        iface->tell = vhdx_input_stream_tell;
        iface->can_seek = vhdx_stream_can_seek;
        iface->seek = vhdx_input_stream_seek;
        iface->can_truncate = vhdx_stream_can_truncate;
        iface->truncate_fn = vhdx_stream_truncate_refused;
}

/* GObject */

static void
vhdx_input_stream_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
        VhdxInputStream *self = VHDX_INPUT_STREAM (object);

        switch (prop_id) {
        case PROP_IMAGE:
                g_value_set_object (value, self->image);
                break;
        default:
                G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
                break;
        }
}

static void
vhdx_input_stream_set_property (GObject *object,
                                guint prop_id,
                                const GValue *value,
                                GParamSpec *pspec)
{
        VhdxInputStream *self = VHDX_INPUT_STREAM (object);

        switch (prop_id) {
        case PROP_IMAGE:
                g_set_object (&self->image, g_value_get_object (value));
                break;
        default:
                G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
                break;
        }
}

static void
vhdx_input_stream_constructed (GObject *object)
{
        VhdxInputStream *self = VHDX_INPUT_STREAM (object);

        G_OBJECT_CLASS (vhdx_input_stream_parent_class)->constructed (object);

        g_return_if_fail (VHDX_IS_IMAGE (self->image));
}

static void
vhdx_input_stream_finalize (GObject *object)
{
        VhdxInputStream *self = VHDX_INPUT_STREAM (object);

        g_clear_object (&self->image);

        G_OBJECT_CLASS (vhdx_input_stream_parent_class)->finalize (object);
}

static void
vhdx_input_stream_class_init (VhdxInputStreamClass *klass)
{
        GObjectClass *object_class = G_OBJECT_CLASS (klass);
        GInputStreamClass *stream_class = G_INPUT_STREAM_CLASS (klass);

        object_class->get_property = vhdx_input_stream_get_property;
        object_class->set_property = vhdx_input_stream_set_property;
        object_class->constructed = vhdx_input_stream_constructed;
        object_class->finalize = vhdx_input_stream_finalize;

        stream_class->read_fn = vhdx_input_stream_read_fn;
        stream_class->skip = vhdx_input_stream_skip;
        stream_class->close_fn = vhdx_input_stream_close_fn;
        stream_class->read_async = vhdx_input_stream_read_async;
        stream_class->read_finish = vhdx_input_stream_read_finish;

        /**
         * VhdxInputStream:image:
         *
         * The opened image whose virtual disk the stream reads.
         *
         * Since: 0.1
         */
        props[PROP_IMAGE] =
                g_param_spec_object ("image", NULL, NULL, VHDX_TYPE_IMAGE,
                                     G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                                             G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

        g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
vhdx_input_stream_init (VhdxInputStream *self)
{
}

/**
 * vhdx_input_stream_get_image:
 * @self: a stream
 *
 * Gets the image whose virtual disk the stream reads.
 *
 * Returns: (transfer none): the image
 *
 * Since: 0.1
 */
VhdxImage *
vhdx_input_stream_get_image (VhdxInputStream *self)
{
        g_return_val_if_fail (VHDX_IS_INPUT_STREAM (self), NULL);

        return self->image;
}
