/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Extents of the virtual disk, walked through the BAT and sector bitmaps. */
#include "vhdx-map.h"

#include "vhdx-bitmap.h"
#include "vhdx-private.h"
#include "vhdx-reader.h"
#include "vhdx-file-private.h"

/* The iterator maps at least this much of the disk at a time (whole blocks). */
#define MAP_WINDOW_BYTES (64 * VHDX_MiB)

/* TRUE when @next continues @last. */
static gboolean
extent_continues (const VhdxMapExtent *last, const VhdxMapExtent *next)
{
        return last->kind == next->kind && last->present == next->present &&
               last->depth == next->depth && last->offset + last->length == next->offset &&
               (next->kind != VHDX_EXTENT_DATA ||
                last->file_offset + last->length == next->file_offset);
}

void
vhdx_map_extents_append (GArray *extents, const VhdxMapExtent *extent)
{
        if (extents->len > 0) {
                VhdxMapExtent *last = &g_array_index (extents, VhdxMapExtent, extents->len - 1);

                if (extent_continues (last, extent)) {
                        last->length += extent->length;
                        return;
                }
        }
        g_array_append_val (extents, *extent);
}

static gboolean map_range (VhdxFile *file,
                           guint64 offset,
                           guint64 length,
                           guint depth,
                           GArray *extents,
                           GError **error);

/* Extents for a range this differencing image does not store: the parent's,
 * one level deeper, and holes where the parent is smaller; one PARENT extent
 * when the image was opened without its parent. */
static gboolean
map_from_parent (VhdxFile *file,
                 guint64 offset,
                 guint64 length,
                 guint depth,
                 GArray *extents,
                 GError **error)
{
        guint64 from_parent = 0;

        if (file->parent == NULL) {
                /* A differencing image opened without its parent. */
                VhdxMapExtent missing = { .offset = offset,
                                          .length = length,
                                          .kind = VHDX_EXTENT_PARENT,
                                          .depth = depth + 1 };
                vhdx_map_extents_append (extents, &missing);
                return TRUE;
        }
        if (offset < file->parent->info.virtual_size) {
                from_parent = MIN (length, file->parent->info.virtual_size - offset);
                if (!map_range (file->parent, offset, from_parent, depth + 1, extents, error))
                        return FALSE;
        }
        if (from_parent < length) {
                VhdxMapExtent hole = { .offset = offset + from_parent,
                                       .length = length - from_parent,
                                       .kind = VHDX_EXTENT_ZERO,
                                       .present = FALSE,
                                       .depth = depth };
                vhdx_map_extents_append (extents, &hole);
        }
        return TRUE;
}

static gboolean
map_range (VhdxFile *file,
           guint64 offset,
           guint64 length,
           guint depth,
           GArray *extents,
           GError **error)
{
        while (length > 0) {
                guint64 block = offset / file->info.block_size;
                guint64 in_block = offset % file->info.block_size;
                guint64 n = MIN (length, file->info.block_size - in_block);
                VhdxMapExtent e = { .offset = offset, .length = n, .depth = depth };
                guint state;
                guint64 block_offset;

                if (!vhdx_bat_lookup_block (file->bat, block, &state, &block_offset, error))
                        return FALSE;
                if (state == VHDX_PAYLOAD_FULLY_PRESENT) {
                        e.kind = VHDX_EXTENT_DATA;
                        e.present = TRUE;
                        e.file_offset = block_offset + in_block;
                        vhdx_map_extents_append (extents, &e);
                } else if (state == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
                        g_autoptr (GBytes) bitmap =
                                vhdx_bitmap_cache_get (file->bitmaps, block, error);
                        guint64 pos = in_block, end = in_block + n;

                        if (bitmap == NULL)
                                return FALSE;
                        while (pos < end) {
                                gboolean present;
                                guint64 run_end =
                                        vhdx_bitmap_run_end (g_bytes_get_data (bitmap, NULL),
                                                             file->info.logical_sector_size, pos,
                                                             end, &present);
                                guint64 at = block * file->info.block_size + pos;
                                if (present) {
                                        VhdxMapExtent d = { .offset = at,
                                                            .length = run_end - pos,
                                                            .kind = VHDX_EXTENT_DATA,
                                                            .present = TRUE,
                                                            .file_offset = block_offset + pos,
                                                            .depth = depth };
                                        vhdx_map_extents_append (extents, &d);
                                } else if (!map_from_parent (file, at, run_end - pos, depth,
                                                             extents, error)) {
                                        return FALSE;
                                }
                                pos = run_end;
                        }
                } else if (state == VHDX_PAYLOAD_NOT_PRESENT &&
                           file->info.disk_type == VHDX_DISK_TYPE_DIFFERENCING) {
                        if (!map_from_parent (file, offset, n, depth, extents, error))
                                return FALSE;
                } else {
                        e.kind = VHDX_EXTENT_ZERO;
                        /* Explicitly zeroed blocks are allocated zeros; the others
                         * are holes in the image. */
                        e.present = state == VHDX_PAYLOAD_ZERO;
                        vhdx_map_extents_append (extents, &e);
                }
                offset += n;
                length -= n;
        }
        return TRUE;
}

GArray *
vhdx_file_map (VhdxFile *file, guint64 offset, guint64 length, GError **error)
{
        g_autoptr (GArray) extents = NULL;

        g_return_val_if_fail (file != NULL, NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        if (!vhdx_file_check_range (file, offset, length, error))
                return NULL;
        extents = g_array_new (FALSE, TRUE, sizeof (VhdxMapExtent));
        if (!map_range (file, offset, length, 0, extents, error))
                return NULL;
        return g_steal_pointer (&extents);
}

void
vhdx_map_iter_init (VhdxMapIter *iter, VhdxFile *file, guint64 offset, guint64 length)
{
        memset (iter, 0, sizeof *iter);
        iter->file = file;
        iter->position = offset;
        iter->end = offset + length;
        iter->window = g_array_new (FALSE, TRUE, sizeof (VhdxMapExtent));
}

void
vhdx_map_iter_clear (VhdxMapIter *iter)
{
        g_clear_pointer (&iter->window, g_array_unref);
}

/* Map the next window into iter->window. */
static gboolean
map_window (VhdxMapIter *iter, GError **error)
{
        guint64 window = MAX ((guint64) iter->file->info.block_size, MAP_WINDOW_BYTES);
        guint64 window_end = MIN (iter->end, (iter->position / window + 1) * window);

        g_array_set_size (iter->window, 0);
        iter->index = 0;
        if (!vhdx_file_check_range (iter->file, iter->position, window_end - iter->position,
                                    error) ||
            !map_range (iter->file, iter->position, window_end - iter->position, 0, iter->window,
                        error))
                return FALSE;
        iter->position = window_end;
        return TRUE;
}

gboolean
vhdx_map_iter_next (VhdxMapIter *iter, VhdxMapExtent *extent, GError **error)
{
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        for (;;) {
                if (iter->index < iter->window->len) {
                        const VhdxMapExtent *e =
                                &g_array_index (iter->window, VhdxMapExtent, iter->index++);

                        if (!iter->have_pending) {
                                iter->pending = *e;
                                iter->have_pending = TRUE;
                        } else if (extent_continues (&iter->pending, e)) {
                                iter->pending.length += e->length;
                        } else {
                                *extent = iter->pending;
                                iter->pending = *e;
                                return TRUE;
                        }
                } else if (iter->position < iter->end) {
                        if (!map_window (iter, error))
                                return FALSE;
                } else if (iter->have_pending) {
                        *extent = iter->pending;
                        iter->have_pending = FALSE;
                        return TRUE;
                } else {
                        return FALSE;
                }
        }
}

typedef struct {
        VhdxFile *file;
        guint64 total;
} AllocatedScan;

static gboolean
count_allocated (guint64 index, guint64 entry, gpointer user_data, GError **error)
{
        AllocatedScan *scan = user_data;
        VhdxFile *file = scan->file;
        const VhdxBatGeometry *g = &file->info.geometry;
        guint64 block = vhdx_bat_index_block (g, index);
        guint state;
        guint64 block_offset;

        /* Sector bitmap entries and the padding of the last chunk. */
        if (vhdx_bat_index_is_bitmap (g, index) || block >= g->payload_blocks)
                return TRUE;
        if (!vhdx_bat_check_payload_entry (file->bat, block, entry, &state, &block_offset, error))
                return FALSE;
        if (state == VHDX_PAYLOAD_FULLY_PRESENT) {
                scan->total += vhdx_bat_block_length (g, block);
        } else if (state == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
                g_autoptr (GBytes) bitmap = vhdx_bitmap_cache_get (file->bitmaps, block, error);

                if (bitmap == NULL)
                        return FALSE;
                scan->total += g->logical_sector_size *
                               vhdx_bitmap_count_set (g_bytes_get_data (bitmap, NULL), 0,
                                                      vhdx_bat_block_length (g, block) /
                                                              g->logical_sector_size);
        }
        return TRUE;
}

gboolean
vhdx_file_get_allocated_bytes (VhdxFile *file, guint64 *allocated, GError **error)
{
        AllocatedScan scan = { file, 0 };

        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        /* A streaming scan: a 64 TiB image has a 512 MiB BAT that must not
         * end up in the cache. */
        if (!vhdx_bat_scan (file->bat, count_allocated, &scan, error))
                return FALSE;
        *allocated = scan.total;
        return TRUE;
}
