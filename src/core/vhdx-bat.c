/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The block allocation table: geometry, entry states, and the lazily loaded table. */
#include "vhdx-bat.h"

#include "vhdx-private.h"

void
vhdx_bat_geometry_init (VhdxBatGeometry *g,
                        guint64 virtual_size,
                        guint32 block_size,
                        guint32 logical_sector_size,
                        gboolean differencing)
{
        g->virtual_size = virtual_size;
        g->block_size = block_size;
        g->logical_sector_size = logical_sector_size;
        g->differencing = differencing;
        g->chunk_ratio = VHDX_CHUNK_SECTORS * logical_sector_size / block_size;
        g->payload_blocks = (virtual_size + block_size - 1) / block_size;
        if (differencing)
                g->bat_entries = (g->payload_blocks + g->chunk_ratio - 1) / g->chunk_ratio *
                                 (g->chunk_ratio + 1);
        else
                g->bat_entries = g->payload_blocks + (g->payload_blocks - 1) / g->chunk_ratio;
}

gboolean
vhdx_bat_payload_state_is_valid (guint state, VhdxDiskType type)
{
        switch (state) {
        case VHDX_PAYLOAD_NOT_PRESENT:
        case VHDX_PAYLOAD_UNDEFINED:
        case VHDX_PAYLOAD_ZERO:
        case VHDX_PAYLOAD_UNMAPPED:
        case VHDX_PAYLOAD_FULLY_PRESENT:
                return TRUE;
        case VHDX_PAYLOAD_PARTIALLY_PRESENT:
                return type == VHDX_DISK_TYPE_DIFFERENCING;
        default:
                return FALSE;
        }
}

struct _VhdxBat {
        VhdxIo *io;
        guint64 file_offset;
        VhdxBatGeometry geometry;
        VhdxDiskType disk_type;
        guint64 file_size; /* atomic: an image being written grows */
        GArray *reserved;  /* VhdxFileRange */
        guint64 n_pages;
        /* Each page is NULL until first used, then an array of host-order
         * entries; set once with a compare-and-swap and never changed. */
        guint64 **pages;
};

VhdxBat *
vhdx_bat_new (VhdxIo *io,
              guint64 file_offset,
              const VhdxBatGeometry *geometry,
              VhdxDiskType disk_type,
              guint64 file_size,
              GArray *reserved)
{
        VhdxBat *bat = g_new0 (VhdxBat, 1);

        bat->io = io;
        bat->file_offset = file_offset;
        bat->geometry = *geometry;
        bat->disk_type = disk_type;
        bat->file_size = file_size;
        bat->reserved = g_array_copy (reserved);
        bat->n_pages = (geometry->bat_entries + VHDX_BAT_PAGE_ENTRIES - 1) / VHDX_BAT_PAGE_ENTRIES;
        bat->pages = g_new0 (guint64 *, bat->n_pages);
        return bat;
}

void
vhdx_bat_free (VhdxBat *bat)
{
        if (bat == NULL)
                return;
        for (guint64 i = 0; i < bat->n_pages; i++)
                g_free (bat->pages[i]);
        g_free (bat->pages);
        g_array_unref (bat->reserved);
        g_free (bat);
}

const VhdxBatGeometry *
vhdx_bat_get_geometry (VhdxBat *bat)
{
        return &bat->geometry;
}

static guint64 *
load_page (VhdxBat *bat, guint64 page, GError **error)
{
        guint64 first = page * VHDX_BAT_PAGE_ENTRIES;
        gsize n = (gsize) MIN ((guint64) VHDX_BAT_PAGE_ENTRIES, bat->geometry.bat_entries - first);
        g_autofree guint64 *entries = g_new (guint64, n);

        if (!vhdx_bat_read_range (bat, first, n, entries, error))
                return NULL;
        if (!g_atomic_pointer_compare_and_exchange (&bat->pages[page], NULL, entries)) {
                /* Another thread published the same page first: use its copy. */
                return g_atomic_pointer_get (&bat->pages[page]);
        }
        return g_steal_pointer (&entries);
}

gboolean
vhdx_bat_get (VhdxBat *bat, guint64 index, guint64 *entry, GError **error)
{
        guint64 page = index / VHDX_BAT_PAGE_ENTRIES;
        guint64 *entries;

        g_return_val_if_fail (index < bat->geometry.bat_entries, FALSE);

        entries = g_atomic_pointer_get (&bat->pages[page]);
        if (G_UNLIKELY (entries == NULL)) {
                entries = load_page (bat, page, error);
                if (entries == NULL)
                        return FALSE;
        }
        /* Writers store entries atomically (vhdx_bat_set). */
        *entry = __atomic_load_n (&entries[index % VHDX_BAT_PAGE_ENTRIES], __ATOMIC_ACQUIRE);
        return TRUE;
}

/* The loaded page of entry @index. */
static guint64 *
loaded_page (VhdxBat *bat, guint64 index, GError **error)
{
        guint64 page = index / VHDX_BAT_PAGE_ENTRIES;
        guint64 *entries = g_atomic_pointer_get (&bat->pages[page]);

        return entries != NULL ? entries : load_page (bat, page, error);
}

gboolean
vhdx_bat_set (VhdxBat *bat, guint64 index, guint64 entry, GError **error)
{
        guint64 *entries;

        g_return_val_if_fail (index < bat->geometry.bat_entries, FALSE);

        entries = loaded_page (bat, index, error);
        if (entries == NULL)
                return FALSE;
        /* Published to readers at once: they see the old entry or this one. */
        __atomic_store_n (&entries[index % VHDX_BAT_PAGE_ENTRIES], entry, __ATOMIC_RELEASE);
        return TRUE;
}

guint64
vhdx_bat_sector_offset (VhdxBat *bat, guint64 index)
{
        return bat->file_offset + index / VHDX_BAT_SECTOR_ENTRIES * VHDX_LOG_SECTOR_SIZE;
}

gboolean
vhdx_bat_sector_image (VhdxBat *bat, guint64 index, guint8 *sector, GError **error)
{
        guint64 first = index / VHDX_BAT_SECTOR_ENTRIES * VHDX_BAT_SECTOR_ENTRIES;
        guint64 *entries = loaded_page (bat, first, error);

        if (entries == NULL)
                return FALSE;
        /* The last sector of the table may be part table, part padding. */
        memset (sector, 0, VHDX_LOG_SECTOR_SIZE);
        for (guint64 i = first;
             i < MIN (first + VHDX_BAT_SECTOR_ENTRIES, bat->geometry.bat_entries); i++)
                vhdx_put_le64 (sector + (i - first) * VHDX_BAT_ENTRY_SIZE,
                               __atomic_load_n (&entries[i % VHDX_BAT_PAGE_ENTRIES],
                                                __ATOMIC_ACQUIRE));
        return TRUE;
}

void
vhdx_bat_set_file_size (VhdxBat *bat, guint64 file_size)
{
        __atomic_store_n (&bat->file_size, file_size, __ATOMIC_RELEASE);
}

/* The structure that the file bytes [start, end) would overlap, or NULL. */
static const char *
overlapped_structure (VhdxBat *bat, guint64 start, guint64 end)
{
        if (start < VHDX_HEADER_SECTION_SIZE)
                return _ ("the header section");
        for (guint i = 0; i < bat->reserved->len; i++) {
                const VhdxFileRange *r = &g_array_index (bat->reserved, VhdxFileRange, i);

                if (start < r->end && end > r->start)
                        return r->name;
        }
        return NULL;
}

/* Check that a block of @length bytes at @offset, named by entry @index,
 * lies inside the file and on no other structure. */
static gboolean
check_stored_block (VhdxBat *bat, guint64 index, guint64 offset, guint64 length, GError **error)
{
        const char *overlapped;
        guint64 end;

        guint64 file_size = __atomic_load_n (&bat->file_size, __ATOMIC_ACQUIRE);

        if (!vhdx_add_u64 (offset, length, &end) || end > file_size) {
                g_autofree char *what = g_strdup_printf (_ ("BAT entry %" PRIu64), index);
                vhdx_set_error (error, VHDX_ERROR_INVALID, what,
                                bat->file_offset + index * VHDX_BAT_ENTRY_SIZE,
                                _ ("the block at file offset %" PRIu64
                                   " ends past the end of the file (%" PRIu64 " bytes)"),
                                offset, file_size);
                return FALSE;
        }
        overlapped = overlapped_structure (bat, offset, end);
        if (overlapped != NULL) {
                g_autofree char *what = g_strdup_printf (_ ("BAT entry %" PRIu64), index);
                vhdx_set_error (error, VHDX_ERROR_INVALID, what,
                                bat->file_offset + index * VHDX_BAT_ENTRY_SIZE,
                                _ ("the block at file offset %" PRIu64 " overlaps %s"), offset,
                                overlapped);
                return FALSE;
        }
        return TRUE;
}

gboolean
vhdx_bat_check_payload_entry (VhdxBat *bat,
                              guint64 block,
                              guint64 entry,
                              guint *state,
                              guint64 *file_offset,
                              GError **error)
{
        guint64 index = vhdx_bat_payload_index (&bat->geometry, block);

        *state = vhdx_bat_entry_state (entry);
        *file_offset = 0;
        if (!vhdx_bat_payload_state_is_valid (*state, bat->disk_type)) {
                g_autofree char *what = g_strdup_printf (_ ("BAT entry %" PRIu64), index);
                vhdx_set_error (error, VHDX_ERROR_INVALID, what,
                                bat->file_offset + index * VHDX_BAT_ENTRY_SIZE,
                                _ ("state %u is not a valid payload block state for a %s disk"),
                                *state, vhdx_disk_type_to_string (bat->disk_type));
                return FALSE;
        }
        if (*state != VHDX_PAYLOAD_FULLY_PRESENT && *state != VHDX_PAYLOAD_PARTIALLY_PRESENT)
                return TRUE;
        if (!check_stored_block (bat, index, vhdx_bat_entry_offset (entry),
                                 vhdx_bat_block_length (&bat->geometry, block), error))
                return FALSE;
        *file_offset = vhdx_bat_entry_offset (entry);
        return TRUE;
}

gboolean
vhdx_bat_lookup_block (VhdxBat *bat,
                       guint64 block,
                       guint *state,
                       guint64 *file_offset,
                       GError **error)
{
        guint64 entry;

        if (!vhdx_bat_get (bat, vhdx_bat_payload_index (&bat->geometry, block), &entry, error))
                return FALSE;
        return vhdx_bat_check_payload_entry (bat, block, entry, state, file_offset, error);
}

gboolean
vhdx_bat_lookup_bitmap (VhdxBat *bat, guint64 block, guint64 *file_offset, GError **error)
{
        guint64 index = vhdx_bat_bitmap_index (&bat->geometry, block / bat->geometry.chunk_ratio);
        guint64 entry;

        if (!vhdx_bat_get (bat, index, &entry, error))
                return FALSE;
        if (vhdx_bat_entry_state (entry) != VHDX_SB_PRESENT) {
                g_autofree char *what = g_strdup_printf (_ ("BAT entry %" PRIu64), index);
                vhdx_set_error (error, VHDX_ERROR_INVALID, what,
                                bat->file_offset + index * VHDX_BAT_ENTRY_SIZE,
                                _ ("block %" PRIu64 " is partially present but the "
                                   "sector bitmap of its chunk is not (state %u)"),
                                block, vhdx_bat_entry_state (entry));
                return FALSE;
        }
        if (!check_stored_block (bat, index, vhdx_bat_entry_offset (entry), VHDX_BITMAP_BLOCK_SIZE,
                                 error))
                return FALSE;
        *file_offset = vhdx_bat_entry_offset (entry);
        return TRUE;
}

gboolean
vhdx_bat_read_range (VhdxBat *bat, guint64 first, gsize count, guint64 *entries, GError **error)
{
        g_return_val_if_fail (first <= bat->geometry.bat_entries &&
                                      count <= bat->geometry.bat_entries - first,
                              FALSE);

        if (!vhdx_io_read_exact (bat->io, entries, count * VHDX_BAT_ENTRY_SIZE,
                                 bat->file_offset + first * VHDX_BAT_ENTRY_SIZE, _ ("BAT"), error))
                return FALSE;
        for (gsize i = 0; i < count; i++)
                entries[i] = GUINT64_FROM_LE (entries[i]);
        return TRUE;
}

/*
 * The first entry at or after @first that may be non-zero, or the number of
 * entries: the entries in between lie in a hole of the file (a sparse BAT)
 * and are zero, NOT_PRESENT.
 */
static guint64
skip_zeros (VhdxBat *bat, guint64 first)
{
        guint64 offset, data;

        if (first >= bat->geometry.bat_entries)
                return bat->geometry.bat_entries;
        offset = bat->file_offset + first * VHDX_BAT_ENTRY_SIZE;
        data = vhdx_io_next_data (bat->io, offset);
        if (data <= offset)
                return first;
        /* The entry that holds @data may be non-zero; those before it are zeros. */
        return MIN (first + (data - offset) / VHDX_BAT_ENTRY_SIZE, bat->geometry.bat_entries);
}

gboolean
vhdx_bat_scan (VhdxBat *bat, VhdxBatScanFunc func, gpointer user_data, GError **error)
{
        const guint64 n_entries = bat->geometry.bat_entries;
        g_autofree guint64 *entries = g_new (guint64, VHDX_BAT_SCAN_ENTRIES);

        for (guint64 first = skip_zeros (bat, 0); first < n_entries;
             first = skip_zeros (bat, first + VHDX_BAT_SCAN_ENTRIES)) {
                gsize n = (gsize) MIN ((guint64) VHDX_BAT_SCAN_ENTRIES, n_entries - first);

                if (!vhdx_bat_read_range (bat, first, n, entries, error))
                        return FALSE;
                for (gsize i = 0; i < n; i++) {
                        if (!func (first + i, entries[i], user_data, error))
                                return FALSE;
                }
        }
        return TRUE;
}
