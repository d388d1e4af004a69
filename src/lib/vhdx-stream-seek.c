/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The seeking that the image's streams share (see vhdx-stream-seek-private.h). */
#include "config.h"

#include "vhdx-stream-seek-private.h"

#include <glib/gi18n-lib.h>

gboolean
vhdx_stream_seek_target (guint64 position,
                         guint64 size,
                         goffset offset,
                         GSeekType type,
                         guint64 *target,
                         GError **error)
{
        guint64 base;

        switch (type) {
        case G_SEEK_SET:
                base = 0;
                break;
        case G_SEEK_CUR:
                base = position;
                break;
        case G_SEEK_END:
                base = size;
                break;
        default:
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                     _ ("Invalid seek type"));
                return FALSE;
        }
        if ((offset > 0 && base > (guint64) (G_MAXINT64 - offset)) ||
            (offset < 0 && (guint64) - (offset + 1) >= base)) {
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                     _ ("Invalid seek position"));
                return FALSE;
        }
        *target = (guint64) ((gint64) base + offset);
        return TRUE;
}

gboolean
vhdx_stream_truncate_refused (GSeekable *seekable,
                              goffset offset,
                              GCancellable *cancellable,
                              GError **error)
{
        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                             _ ("A virtual disk stream cannot be truncated"));
        return FALSE;
}

gboolean
vhdx_stream_can_seek (GSeekable *seekable)
{
        return TRUE;
}

gboolean
vhdx_stream_can_truncate (GSeekable *seekable)
{
        return FALSE;
}
