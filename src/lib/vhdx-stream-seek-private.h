/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The seeking that VhdxInputStream and VhdxOutputStream share: positions in a virtual disk. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/*
 * The position that seeking by @offset from @type lands on, from @position
 * in a virtual disk of @size bytes: anywhere from 0 to G_MAXINT64, past the
 * end of the disk too.  FALSE with G_IO_ERROR_INVALID_ARGUMENT for another
 * @type or a position outside that range.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_stream_seek_target (guint64 position,
                                                            guint64 size,
                                                            goffset offset,
                                                            GSeekType type,
                                                            guint64 *target,
                                                            GError **error);

/* The refusal of GSeekable's truncate: a virtual disk has its size. */
gboolean vhdx_stream_truncate_refused (GSeekable *seekable,
                                       goffset offset,
                                       GCancellable *cancellable,
                                       GError **error);

/* GSeekable's can_seek (TRUE) and can_truncate (FALSE) of both streams. */
gboolean vhdx_stream_can_seek (GSeekable *seekable);
gboolean vhdx_stream_can_truncate (GSeekable *seekable);

G_END_DECLS
