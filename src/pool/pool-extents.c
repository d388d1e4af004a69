/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The extents of an image, walked forward in windows (see pool-extents.h). */
#include "config.h"

#include "pool-extents.h"

#include <inttypes.h>
#include <string.h>

#include <glib/gi18n.h>

/* How much of the disk one window maps. */
#define EXTENT_WINDOW (G_GUINT64_CONSTANT (4) << 30)

void
pool_extent_cursor_init (PoolExtentCursor *cursor, VhdxImage *image)
{
        memset (cursor, 0, sizeof *cursor);
        cursor->image = image;
        cursor->size = vhdx_image_get_virtual_size (image);
}

void
pool_extent_cursor_clear (PoolExtentCursor *cursor)
{
        g_clear_pointer (&cursor->window, g_ptr_array_unref);
}

const VhdxExtent *
pool_extent_cursor_find (PoolExtentCursor *cursor, guint64 position, GError **error)
{
        if (cursor->window == NULL || position < cursor->window_start ||
            position >= cursor->window_end) {
                guint64 length = MIN (cursor->size - position, EXTENT_WINDOW);

                g_clear_pointer (&cursor->window, g_ptr_array_unref);
                cursor->window =
                        vhdx_image_get_extents (cursor->image, position, length, NULL, error);
                if (cursor->window == NULL)
                        return NULL;
                cursor->window_start = position;
                cursor->window_end = position + length;
                cursor->index = 0;
        }
        while (cursor->index < cursor->window->len) {
                const VhdxExtent *extent = g_ptr_array_index (cursor->window, cursor->index);

                if (vhdx_extent_get_offset (extent) + vhdx_extent_get_length (extent) > position)
                        return extent;
                cursor->index++;
        }
        g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                     _ ("the map of the virtual disk has a gap at offset %" PRIu64), position);
        return NULL;
}
