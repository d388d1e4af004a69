/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Sector bitmaps of differencing images: one bit per logical sector of a
 * chunk, least significant bit first, 1 = the sector is stored in this file,
 * 0 = it comes from the parent (MS-VHDX 2.5.2).  The bits of the blocks that
 * reads need are loaded on first use and cached, within a memory bound.
 */
#pragma once

#include "vhdx-bat.h"

G_BEGIN_DECLS

static inline gboolean
vhdx_bitmap_bit (const guint8 *bits, guint64 sector)
{
        return (bits[sector / 8] >> (sector % 8)) & 1;
}

/* Set the bits of sectors [@first, @first + @count). */
void vhdx_bitmap_set_range (guint8 *bits, guint64 first, guint64 count);

/* Clear the bits of sectors [@first, @first + @count). */
void vhdx_bitmap_clear_range (guint8 *bits, guint64 first, guint64 count);

/* The number of set bits among sectors [@first, @first + @count). */
guint64 vhdx_bitmap_count_set (const guint8 *bits, guint64 first, guint64 count);

/*
 * The end (a block-relative byte offset, at most @end) of the run of sectors
 * that starts at byte @pos of a block whose bits are @bits and whose bits all
 * equal the bit of @pos's sector, which is returned in @present.
 */
guint64 vhdx_bitmap_run_end (const guint8 *bits,
                             guint32 sector_size,
                             guint64 pos,
                             guint64 end,
                             gboolean *present);

typedef struct _VhdxBitmapCache VhdxBitmapCache;

/* The sector bitmaps that @bat (borrowed) points at, read from @io
 * (borrowed; for an image being written, the journal's view of the file). */
G_GNUC_WARN_UNUSED_RESULT VhdxBitmapCache *vhdx_bitmap_cache_new (VhdxIo *io, VhdxBat *bat);
void vhdx_bitmap_cache_free (VhdxBitmapCache *cache);

/*
 * The bits of PARTIALLY_PRESENT payload block @block: one per logical sector
 * of the block, the first sector's in bit 0 of byte 0.  The chunk's sector
 * bitmap entry is checked on the way.
 */
G_GNUC_WARN_UNUSED_RESULT GBytes *vhdx_bitmap_cache_get (VhdxBitmapCache *cache,
                                                         guint64 block,
                                                         GError **error);

/* Changes the bitmap that the cache reads (through the journal). */
typedef gboolean (*VhdxBitmapUpdateFunc) (gpointer user_data, GError **error);

/*
 * Call @func, which changes the bits of @block where the cache reads them,
 * and forget what the cache holds of @block, with no load of the block's
 * bits in between: later reads see the new bits.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_bitmap_cache_update (VhdxBitmapCache *cache,
                                                             guint64 block,
                                                             VhdxBitmapUpdateFunc func,
                                                             gpointer user_data,
                                                             GError **error);

G_END_DECLS
