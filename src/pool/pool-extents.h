/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The extents of an image's virtual disk, walked forward a window at a time
 * so that memory stays bounded however large the disk: what import uploads
 * and compares, and what expose answers SEEK_DATA and SEEK_HOLE from.
 */
#pragma once

#include <vhdx.h>

G_BEGIN_DECLS

typedef struct {
        VhdxImage *image;
        guint64 size; /* the virtual size */
        GPtrArray *window;
        guint64 window_start;
        guint64 window_end;
        guint index;
} PoolExtentCursor;

void pool_extent_cursor_init (PoolExtentCursor *cursor, VhdxImage *image);
void pool_extent_cursor_clear (PoolExtentCursor *cursor);

/* The extent that holds @position (< the size), which never moves backwards. */
G_GNUC_WARN_UNUSED_RESULT const VhdxExtent *pool_extent_cursor_find (PoolExtentCursor *cursor,
                                                                     guint64 position,
                                                                     GError **error);

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (PoolExtentCursor, pool_extent_cursor_clear)

G_END_DECLS
