/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Sector bitmaps: bit arithmetic and the cache of the bits that reads need. */
#include "vhdx-bitmap.h"

#include "vhdx-private.h"

/* Cached bits take at most this much memory; then the cache starts over. */
#define BITMAP_CACHE_MAX_BYTES (16 * VHDX_MiB)

void
vhdx_bitmap_set_range (guint8 *bits, guint64 first, guint64 count)
{
        for (guint64 s = first; s < first + count; s++)
                bits[s / 8] |= (guint8) (1u << (s % 8));
}

void
vhdx_bitmap_clear_range (guint8 *bits, guint64 first, guint64 count)
{
        for (guint64 s = first; s < first + count; s++)
                bits[s / 8] &= (guint8) ~(1u << (s % 8));
}

guint64
vhdx_bitmap_count_set (const guint8 *bits, guint64 first, guint64 count)
{
        guint64 n = 0;

        for (guint64 s = first; s < first + count; s++)
                n += vhdx_bitmap_bit (bits, s);
        return n;
}

guint64
vhdx_bitmap_run_end (const guint8 *bits,
                     guint32 sector_size,
                     guint64 pos,
                     guint64 end,
                     gboolean *present)
{
        guint64 sector = pos / sector_size;

        *present = vhdx_bitmap_bit (bits, sector);
        for (sector++; sector * sector_size < end; sector++) {
                if (vhdx_bitmap_bit (bits, sector) != *present)
                        return sector * sector_size;
        }
        return end;
}

struct _VhdxBitmapCache {
        VhdxIo *io;
        VhdxBat *bat;
        GMutex lock;
        GHashTable *blocks; /* block number -> GBytes */
        gsize bytes;
};

VhdxBitmapCache *
vhdx_bitmap_cache_new (VhdxIo *io, VhdxBat *bat)
{
        VhdxBitmapCache *cache = g_new0 (VhdxBitmapCache, 1);

        cache->io = io;
        cache->bat = bat;
        g_mutex_init (&cache->lock);
        cache->blocks = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free,
                                               (GDestroyNotify) g_bytes_unref);
        return cache;
}

void
vhdx_bitmap_cache_free (VhdxBitmapCache *cache)
{
        if (cache == NULL)
                return;
        g_hash_table_unref (cache->blocks);
        g_mutex_clear (&cache->lock);
        g_free (cache);
}

/* The bits of @block, loaded on a miss; called with the lock held, so that
 * an update (vhdx_bitmap_cache_update) never races a load of old bits. */
static GBytes *
get_locked (VhdxBitmapCache *cache, guint64 block, GError **error)
{
        const VhdxBatGeometry *g = vhdx_bat_get_geometry (cache->bat);
        guint64 sectors = vhdx_bat_sectors_per_block (g);
        guint64 first_bit = (block % g->chunk_ratio) * sectors;
        gsize length = (gsize) (sectors / 8);
        g_autofree guint8 *bits = NULL;
        guint64 offset;
        GBytes *bytes;
        guint64 key = block;

        bytes = g_hash_table_lookup (cache->blocks, &key);
        if (bytes != NULL)
                return g_bytes_ref (bytes);

        if (!vhdx_bat_lookup_bitmap (cache->bat, block, &offset, error))
                return NULL;
        bits = g_malloc (length);
        if (!vhdx_io_read_exact (cache->io, bits, length, offset + first_bit / 8,
                                 _ ("sector bitmap"), error))
                return NULL;
        bytes = g_bytes_new_take (g_steal_pointer (&bits), length);

        if (cache->bytes + length > BITMAP_CACHE_MAX_BYTES) {
                g_hash_table_remove_all (cache->blocks);
                cache->bytes = 0;
        }
        g_hash_table_insert (cache->blocks, g_memdup2 (&key, sizeof key), g_bytes_ref (bytes));
        cache->bytes += length;
        return bytes;
}

GBytes *
vhdx_bitmap_cache_get (VhdxBitmapCache *cache, guint64 block, GError **error)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&cache->lock);

        return get_locked (cache, block, error);
}

gboolean
vhdx_bitmap_cache_update (VhdxBitmapCache *cache,
                          guint64 block,
                          VhdxBitmapUpdateFunc func,
                          gpointer user_data,
                          GError **error)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&cache->lock);
        GBytes *bytes;
        guint64 key = block;

        if (!func (user_data, error))
                return FALSE;
        bytes = g_hash_table_lookup (cache->blocks, &key);
        if (bytes != NULL) {
                cache->bytes -= g_bytes_get_size (bytes);
                g_hash_table_remove (cache->blocks, &key);
        }
        return TRUE;
}
