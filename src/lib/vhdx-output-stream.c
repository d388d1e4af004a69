/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxOutputStream, a seekable GOutputStream over the virtual disk. */
#include "config.h"

#include <inttypes.h>

#include "vhdx-output-stream.h"
#include "vhdx-stream-seek-private.h"

#include <glib/gi18n-lib.h>

/**
 * VhdxOutputStream:
 *
 * A seekable stream that writes the virtual disk of a [class@Vhdx.Image]
 * opened read-write: the output stream of the [class@Gio.IOStream] that
 * [method@Vhdx.Image.open_io_stream] returns.
 *
 * Writes go to the disk at the stream's position, as
 * [method@Vhdx.Image.write] makes them; reads of the image see them at
 * once.  The disk does not grow: a write that crosses its end writes the
 * bytes that fit and returns their count, and a write at or past the end
 * fails with %G_IO_ERROR_NO_SPACE.  The stream can seek anywhere, also past
 * the end of the disk; it cannot be truncated.
 *
 * Flushing the stream flushes the image, as [method@Vhdx.Image.flush]
 * does; so does closing it, which leaves the image open.  Asynchronous
 * writes and flushes run in a worker thread.  Writes to a read-only image
 * fail with %G_IO_ERROR_READ_ONLY.
 *
 * Since: 0.1
 */

struct _VhdxOutputStream {
        GOutputStream parent_instance;

        VhdxImage *image;
        /* Only one operation is pending at a time, as GOutputStream ensures. */
        guint64 position;
};

enum { PROP_0, PROP_IMAGE, N_PROPS };

static GParamSpec *props[N_PROPS];

static void vhdx_output_stream_seekable_iface_init (GSeekableIface *iface);

/* clang-format off */
G_DEFINE_FINAL_TYPE_WITH_CODE (VhdxOutputStream, vhdx_output_stream, G_TYPE_OUTPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_SEEKABLE,
                                                      vhdx_output_stream_seekable_iface_init))
/* clang-format on */

/* GOutputStream */

static gssize
vhdx_output_stream_write_fn (GOutputStream *stream,
                             const void *buffer,
                             gsize count,
                             GCancellable *cancellable,
                             GError **error)
{
        VhdxOutputStream *self = VHDX_OUTPUT_STREAM (stream);
        guint64 size = vhdx_image_get_virtual_size (self->image);
        gsize n;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return -1;
        if (count == 0)
                return 0;
        if (self->position >= size) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                             _ ("Cannot write at offset %" PRIu64
                                ": the virtual disk ends at %" PRIu64 " bytes"),
                             self->position, size);
                return -1;
        }
        /* A write that crosses the end is short; GOutputStream never asks
         * for more than G_MAXSSIZE bytes. */
        n = (gsize) MIN ((guint64) count, size - self->position);
        if (!vhdx_image_write (self->image, self->position, buffer, n, VHDX_WRITE_FLAGS_NONE,
                               cancellable, error))
                return -1;
        self->position += n;
        return (gssize) n;
}

static gboolean
vhdx_output_stream_flush (GOutputStream *stream, GCancellable *cancellable, GError **error)
{
        VhdxOutputStream *self = VHDX_OUTPUT_STREAM (stream);

        return vhdx_image_flush (self->image, cancellable, error);
}

/* GOutputStream flushes before it closes; the image stays open. */
static gboolean
vhdx_output_stream_close_fn (GOutputStream *stream, GCancellable *cancellable, GError **error)
{
        return TRUE;
}

/* GSeekable */

static goffset
vhdx_output_stream_tell (GSeekable *seekable)
{
        return (goffset) VHDX_OUTPUT_STREAM (seekable)->position;
}

static gboolean
vhdx_output_stream_seek (GSeekable *seekable,
                         goffset offset,
                         GSeekType type,
                         GCancellable *cancellable,
                         GError **error)
{
        VhdxOutputStream *self = VHDX_OUTPUT_STREAM (seekable);
        GOutputStream *stream = G_OUTPUT_STREAM (seekable);
        guint64 target;

        if (!vhdx_stream_seek_target (self->position, vhdx_image_get_virtual_size (self->image),
                                      offset, type, &target, error) ||
            !g_output_stream_set_pending (stream, error))
                return FALSE;
        self->position = target;
        g_output_stream_clear_pending (stream);
        return TRUE;
}

static void
vhdx_output_stream_seekable_iface_init (GSeekableIface *iface)
{
        iface->tell = vhdx_output_stream_tell;
        iface->can_seek = vhdx_stream_can_seek;
        iface->seek = vhdx_output_stream_seek;
        iface->can_truncate = vhdx_stream_can_truncate;
        iface->truncate_fn = vhdx_stream_truncate_refused;
}

/* GObject */

static void
vhdx_output_stream_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
        VhdxOutputStream *self = VHDX_OUTPUT_STREAM (object);

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
vhdx_output_stream_set_property (GObject *object,
                                 guint prop_id,
                                 const GValue *value,
                                 GParamSpec *pspec)
{
        VhdxOutputStream *self = VHDX_OUTPUT_STREAM (object);

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
vhdx_output_stream_constructed (GObject *object)
{
        VhdxOutputStream *self = VHDX_OUTPUT_STREAM (object);

        G_OBJECT_CLASS (vhdx_output_stream_parent_class)->constructed (object);

        g_return_if_fail (VHDX_IS_IMAGE (self->image));
}

static void
vhdx_output_stream_finalize (GObject *object)
{
        VhdxOutputStream *self = VHDX_OUTPUT_STREAM (object);

        g_clear_object (&self->image);

        G_OBJECT_CLASS (vhdx_output_stream_parent_class)->finalize (object);
}

static void
vhdx_output_stream_class_init (VhdxOutputStreamClass *klass)
{
        GObjectClass *object_class = G_OBJECT_CLASS (klass);
        GOutputStreamClass *stream_class = G_OUTPUT_STREAM_CLASS (klass);

        object_class->get_property = vhdx_output_stream_get_property;
        object_class->set_property = vhdx_output_stream_set_property;
        object_class->constructed = vhdx_output_stream_constructed;
        object_class->finalize = vhdx_output_stream_finalize;

        /* The default asynchronous write, flush and close run these in a
         * worker thread. */
        stream_class->write_fn = vhdx_output_stream_write_fn;
        stream_class->flush = vhdx_output_stream_flush;
        stream_class->close_fn = vhdx_output_stream_close_fn;

        /**
         * VhdxOutputStream:image:
         *
         * The opened image whose virtual disk the stream writes.
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
vhdx_output_stream_init (VhdxOutputStream *self)
{
}

/**
 * vhdx_output_stream_get_image:
 * @self: a stream
 *
 * Gets the image whose virtual disk the stream writes.
 *
 * Returns: (transfer none): the image
 *
 * Since: 0.1
 */
VhdxImage *
vhdx_output_stream_get_image (VhdxOutputStream *self)
{
        g_return_val_if_fail (VHDX_IS_OUTPUT_STREAM (self), NULL);

        return self->image;
}
