/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Changing the virtual size of an image (see vhdx-resize.h). */
#include "vhdx-resize.h"

#include "vhdx-crc32c.h"
#include "vhdx-file-private.h"
#include "vhdx-private.h"
#include "vhdx-writer-private.h"
#include "vhdx-writer.h"

#define PAGE        VHDX_LOG_SECTOR_SIZE
#define COPY_BUFFER VHDX_MiB

/*
 * The order of the resize's changes, for a commit that takes several log
 * sequences: each must leave an image that reads as before or as after.
 * Growing: the entries of blocks moved out of the BAT's way first, then
 * the BAT's new part, then the region tables that make it part of the BAT,
 * then the size.  Shrinking: the size first; then the entries past the new
 * end, which are read no more.
 */
enum {
        ORDER_OLD_ENTRIES = VHDX_WRITER_ORDER_STRUCTURE,
        ORDER_NEW_ENTRIES,
        ORDER_REGION_TABLES,
        ORDER_GROWN_SIZE,
        ORDER_SHRUNK_SIZE = ORDER_OLD_ENTRIES,
        ORDER_DROPPED_ENTRIES,
};

static gboolean
stores_data (guint state)
{
        return state == VHDX_PAYLOAD_FULLY_PRESENT || state == VHDX_PAYLOAD_PARTIALLY_PRESENT;
}

static guint64
round_up (guint64 value, guint64 unit)
{
        return (value + unit - 1) / unit * unit;
}

/* The last payload block that stores data, found by a scan of the BAT. */
typedef struct {
        const VhdxBatGeometry *geometry;
        guint64 from_block; /* look at blocks from this one on */
        gboolean found;
        guint64 first; /* the first such block */
        guint64 last;  /* the last one */
        guint64 count;
} StoredScan;

static gboolean
find_stored (guint64 index, guint64 entry, gpointer user_data, GError **error)
{
        StoredScan *scan = user_data;
        guint64 block;

        if (vhdx_bat_index_is_bitmap (scan->geometry, index) ||
            !stores_data (vhdx_bat_entry_state (entry)))
                return TRUE;
        block = vhdx_bat_index_block (scan->geometry, index);
        if (block < scan->from_block || block >= scan->geometry->payload_blocks)
                return TRUE;
        if (!scan->found)
                scan->first = block;
        scan->found = TRUE;
        scan->last = block;
        scan->count++;
        return TRUE;
}

static gboolean
scan_stored (VhdxFile *file, guint64 from_block, StoredScan *scan, GError **error)
{
        *scan = (StoredScan){ &file->info.geometry, from_block, FALSE, 0, 0, 0 };
        return vhdx_bat_scan (file->bat, find_stored, scan, error);
}

gboolean
vhdx_file_get_minimum_size (VhdxFile *file, guint64 *size, GError **error)
{
        const VhdxInfo *info = &file->info;
        StoredScan scan;

        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (!scan_stored (file, 0, &scan, error))
                return FALSE;
        *size = scan.found ? MIN ((scan.last + 1) * info->block_size, info->virtual_size) : 0;
        return TRUE;
}

/* What a resize is to do, worked out before anything is changed. */
typedef struct {
        VhdxFile *file;
        VhdxResizeResult *result;
        VhdxBatGeometry geometry; /* the new one */
        guint64 old_table_bytes;
        guint64 new_table_bytes;
        guint64 bat_offset; /* where the BAT is after the resize */
        guint64 bat_length;
        gboolean relocate; /* a new BAT in fresh space */
        gboolean grow;
        /* BAT entries that change: index -> entry, for the new table, and
         * the range of their indexes. */
        GHashTable *entries;
        guint64 entries_first;
        guint64 entries_end;
        /* A fixed image's new blocks, in one run of fresh space. */
        guint64 new_blocks_first;
        guint64 new_blocks_end;
        guint64 new_blocks_offset;
        /* Table bytes [zero_start, zero_end) that become zeros. */
        guint64 zero_start;
        guint64 zero_end;
        VhdxProgressFunc progress;
        gpointer progress_data;
        guint64 done;
        guint64 total;
        GCancellable *cancellable;
} Resize;

static void
resize_clear (Resize *r)
{
        g_clear_pointer (&r->entries, g_hash_table_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Resize, resize_clear)

static void
set_entry (Resize *r, guint64 index, guint64 entry)
{
        guint64 *key = g_new (guint64, 1);
        guint64 *value = g_new (guint64, 1);

        *key = index;
        *value = entry;
        if (g_hash_table_size (r->entries) == 0 || index < r->entries_first)
                r->entries_first = index;
        r->entries_end = MAX (r->entries_end, index + 1);
        g_hash_table_replace (r->entries, key, value);
}

/* The entry @index of the new table when it changes. */
static gboolean
changed_entry (Resize *r, guint64 index, guint64 *entry)
{
        const VhdxBatGeometry *g = &r->geometry;
        const guint64 *value;

        if (r->new_blocks_end > r->new_blocks_first && !vhdx_bat_index_is_bitmap (g, index)) {
                guint64 block = vhdx_bat_index_block (g, index);

                if (block >= r->new_blocks_first && block < r->new_blocks_end) {
                        *entry = (r->new_blocks_offset +
                                  (block - r->new_blocks_first) * (guint64) g->block_size) |
                                 VHDX_PAYLOAD_FULLY_PRESENT;
                        return TRUE;
                }
        }
        if (g_hash_table_size (r->entries) == 0)
                return FALSE;
        value = g_hash_table_lookup (r->entries, &index);
        if (value == NULL)
                return FALSE;
        *entry = *value;
        return TRUE;
}

static gboolean
step_done (Resize *r, GError **error)
{
        r->done++;
        if (r->progress != NULL)
                r->progress (r->done, r->total, r->progress_data);
        return !g_cancellable_set_error_if_cancelled (r->cancellable, error);
}

/* Whether [@start, @end) meets the log or a region other than the BAT. */
static gboolean
meets_other_structure (VhdxFile *file, guint64 start, guint64 end)
{
        const VhdxInfo *info = &file->info;

        if (info->log_length > 0 && start < info->log_offset + info->log_length &&
            info->log_offset < end)
                return TRUE;
        for (guint i = 0; i < file->regions.entries->len; i++) {
                const VhdxRegionEntry *e =
                        &g_array_index (file->regions.entries, VhdxRegionEntry, i);

                if (vhdx_guid_equal (&e->guid, &vhdx_guid_region_bat))
                        continue;
                if (start < e->file_offset + e->length && e->file_offset < end)
                        return TRUE;
        }
        return FALSE;
}

/* The blocks in the space the BAT grows over, to be moved out of its way. */
typedef struct {
        Resize *r;
        guint64 start;
        guint64 end;
        GArray *moves; /* guint64 index, entry pairs */
} InTheWay;

static gboolean
find_in_the_way (guint64 index, guint64 entry, gpointer user_data, GError **error)
{
        InTheWay *way = user_data;
        const VhdxBatGeometry *g = &way->r->file->info.geometry;
        guint64 offset = vhdx_bat_entry_offset (entry);
        guint64 length =
                vhdx_bat_index_is_bitmap (g, index) ? VHDX_BITMAP_BLOCK_SIZE : g->block_size;

        if (offset != 0 && offset < way->end && way->start < offset + length) {
                g_array_append_val (way->moves, index);
                g_array_append_val (way->moves, entry);
        }
        return TRUE;
}

/* Copy @length bytes of the file from @from to @to (fresh space). */
static gboolean
copy_space (VhdxFile *file,
            guint64 from,
            guint64 to,
            guint64 length,
            gboolean metadata,
            GError **error)
{
        g_autofree guint8 *buf = g_malloc (COPY_BUFFER);

        for (guint64 done = 0; done < length;) {
                gsize n = (gsize) MIN ((guint64) COPY_BUFFER, length - done);
                gboolean ok;

                if (from + done >= file->info.file_size)
                        break; /* past the end of the file: zeros, as the fresh space is */
                n = (gsize) MIN ((guint64) n, file->info.file_size - (from + done));
                ok = metadata ? vhdx_writer_read (file, from + done, buf, n, _ ("sector bitmap"),
                                                  error)
                              : vhdx_io_read_exact (file->io, buf, n, from + done,
                                                    _ ("payload block"), error);
                if (!ok || !vhdx_io_write (file->io, buf, n, to + done, error))
                        return FALSE;
                done += n;
        }
        return TRUE;
}

/* Grow the BAT region in place: move every block in its way to fresh space. */
static gboolean
move_blocks (Resize *r,
             guint64 start,
             guint64 end,
             VhdxResizeFlags flags,
             gboolean *moved,
             GError **error)
{
        VhdxFile *file = r->file;
        const VhdxBatGeometry *g = &file->info.geometry;
        g_autoptr (GArray) moves = g_array_new (FALSE, FALSE, sizeof (guint64));
        InTheWay way = { r, start, end, moves };
        guint64 data = 0;

        *moved = FALSE;
        if (!vhdx_bat_scan (file->bat, find_in_the_way, &way, error))
                return FALSE;
        /* Moving the blocks costs copying what they hold; moving the BAT,
         * copying the BAT: the cheaper one is done. */
        for (guint i = 0; i < moves->len; i += 2) {
                guint64 index = g_array_index (moves, guint64, i);
                guint state = vhdx_bat_entry_state (g_array_index (moves, guint64, i + 1));

                if (vhdx_bat_index_is_bitmap (g, index))
                        data += VHDX_BITMAP_BLOCK_SIZE;
                else if (stores_data (state))
                        data += g->block_size;
        }
        if (data > r->old_table_bytes && !(flags & VHDX_RESIZE_FLAGS_MOVE_BLOCKS))
                return TRUE;
        *moved = TRUE;
        /* No block is given space in the BAT's new part from now on. */
        if (!vhdx_writer_reserve (file, start, end, error))
                return FALSE;
        r->total += moves->len / 2;
        for (guint i = 0; i < moves->len; i += 2) {
                guint64 index = g_array_index (moves, guint64, i);
                guint64 entry = g_array_index (moves, guint64, i + 1);
                gboolean bitmap = vhdx_bat_index_is_bitmap (g, index);
                guint state = vhdx_bat_entry_state (entry);
                guint64 length = bitmap ? VHDX_BITMAP_BLOCK_SIZE : g->block_size;
                guint64 to;

                if (!bitmap && !stores_data (state)) {
                        /* Space kept by a block that reads as zeros: let it go. */
                        set_entry (r, index, state);
                } else {
                        if (!vhdx_writer_take_space (file, length, &to, error) ||
                            !copy_space (file, vhdx_bat_entry_offset (entry), to, length, bitmap,
                                         error))
                                return FALSE;
                        set_entry (r, index, to | state);
                        if (!bitmap)
                                r->result->blocks_moved++;
                }
                if (!step_done (r, error))
                        return FALSE;
        }
        return TRUE;
}

/* Where the BAT goes: the region it has, grown in place when only blocks
 * holding less than the BAT stand in the way, or a new region in fresh space. */
static gboolean
place_bat (Resize *r, VhdxResizeFlags flags, GError **error)
{
        VhdxFile *file = r->file;
        const VhdxInfo *info = &file->info;
        guint64 needed = round_up (r->new_table_bytes, VHDX_MiB);
        guint64 old_end = info->bat_offset + info->bat_length;

        r->bat_offset = info->bat_offset;
        r->bat_length = info->bat_length;
        if (needed <= info->bat_length)
                return TRUE;
        if (needed > G_MAXUINT32) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("The BAT of a %" PRIu64 "-byte disk with %u-byte blocks would "
                                "not fit a region"),
                             r->geometry.virtual_size, info->block_size);
                return FALSE;
        }
        r->bat_length = needed;
        if (!meets_other_structure (file, old_end, info->bat_offset + needed)) {
                gboolean moved;

                if (!move_blocks (r, old_end, info->bat_offset + needed, flags, &moved, error))
                        return FALSE;
                if (moved)
                        return TRUE;
        }
        r->relocate = TRUE;
        return vhdx_writer_take_space (file, needed, &r->bat_offset, error);
}

/* Whether a fixed image's new block has an entry in [@at, @at + @n) of the table. */
static gboolean
new_blocks_in (Resize *r, guint64 at, guint64 n, guint64 *first, guint64 *end)
{
        const VhdxBatGeometry *g = &r->geometry;

        if (r->new_blocks_end == r->new_blocks_first)
                return FALSE;
        *first = MAX (at / VHDX_BAT_ENTRY_SIZE, vhdx_bat_payload_index (g, r->new_blocks_first));
        *end = MIN ((at + n) / VHDX_BAT_ENTRY_SIZE,
                    vhdx_bat_payload_index (g, r->new_blocks_end - 1) + 1);
        return *first < *end;
}

/* Whether an entry in [@at, @at + @n) of the table changes. */
static gboolean
range_has_entry (Resize *r, guint64 at, guint64 n)
{
        GHashTableIter iter;
        gpointer key;
        guint64 first, end;

        if (new_blocks_in (r, at, n, &first, &end))
                return TRUE;
        if (g_hash_table_size (r->entries) == 0 || r->entries_end * VHDX_BAT_ENTRY_SIZE <= at ||
            r->entries_first * VHDX_BAT_ENTRY_SIZE >= at + n)
                return FALSE;
        g_hash_table_iter_init (&iter, r->entries);
        while (g_hash_table_iter_next (&iter, &key, NULL)) {
                guint64 offset = *(guint64 *) key * VHDX_BAT_ENTRY_SIZE;

                if (offset >= at && offset < at + n)
                        return TRUE;
        }
        return FALSE;
}

/* Table bytes [@at, @at + @n) of the new BAT (whole pages). */
static gboolean
build_range (Resize *r, guint64 at, guint8 *buf, gsize n, GError **error)
{
        VhdxFile *file = r->file;
        guint64 end = at + n;
        guint64 old_end = round_up (r->old_table_bytes, PAGE);
        gsize old = at < old_end ? (gsize) MIN ((guint64) n, old_end - at) : 0;
        GHashTableIter iter;
        gpointer key, value;
        guint64 first, last;

        if (old > 0 &&
            !vhdx_writer_read (file, file->info.bat_offset + at, buf, old, _ ("BAT"), error))
                return FALSE;
        memset (buf + old, 0, n - old);
        if (r->zero_start < end && at < r->zero_end) {
                guint64 from = MAX (r->zero_start, at), to = MIN (r->zero_end, end);

                memset (buf + (from - at), 0, to - from);
        }
        if (new_blocks_in (r, at, n, &first, &last)) {
                for (guint64 i = first; i < last; i++) {
                        guint64 entry;

                        if (changed_entry (r, i, &entry))
                                vhdx_put_le64 (buf + (i * VHDX_BAT_ENTRY_SIZE - at), entry);
                }
        }
        g_hash_table_iter_init (&iter, r->entries);
        while (g_hash_table_iter_next (&iter, &key, &value)) {
                guint64 offset = *(guint64 *) key * VHDX_BAT_ENTRY_SIZE;

                if (offset >= at && offset < end)
                        vhdx_put_le64 (buf + (offset - at), *(guint64 *) value);
        }
        return TRUE;
}

/* A new BAT in fresh space: written whole where it is not zeros, and made
 * durable by the flush that commits the region table that points at it. */
static gboolean
write_relocated_bat (Resize *r, GError **error)
{
        g_autofree guint8 *buf = g_malloc (COPY_BUFFER);
        guint64 table_end = round_up (r->new_table_bytes, PAGE);
        guint64 old_end = round_up (r->old_table_bytes, PAGE);

        for (guint64 at = 0; at < table_end; at += COPY_BUFFER) {
                gsize n = (gsize) MIN ((guint64) COPY_BUFFER, table_end - at);

                /* Fresh space reads as zeros already. */
                if (at >= old_end && !range_has_entry (r, at, n))
                        continue;
                if (!build_range (r, at, buf, n, error) ||
                    !vhdx_io_write (r->file->io, buf, n, r->bat_offset + at, error))
                        return FALSE;
        }
        return TRUE;
}

/* The order of the BAT page at table offset @at. */
static guint64
page_order (Resize *r, guint64 at)
{
        if (!r->grow)
                return ORDER_DROPPED_ENTRIES;
        return at < r->old_table_bytes ? ORDER_OLD_ENTRIES : ORDER_NEW_ENTRIES;
}

/* The BAT changed in place, through the journal: whole zero pages as
 * zeros, the others as pages. */
static gboolean
queue_bat (Resize *r, GError **error)
{
        VhdxFile *file = r->file;
        g_autofree guint8 *page = g_malloc (PAGE);
        g_autofree guint8 *current = g_malloc (PAGE);
        g_autoptr (GArray) pages = g_array_new (FALSE, FALSE, sizeof (guint64));
        GHashTableIter iter;
        gpointer key;
        guint64 end;

        /* The pages with an entry that changes, and those the zeros touch;
         * a fixed image's new entries run from the old end of the table. */
        g_hash_table_iter_init (&iter, r->entries);
        while (g_hash_table_iter_next (&iter, &key, NULL)) {
                guint64 at = *(guint64 *) key * VHDX_BAT_ENTRY_SIZE / PAGE * PAGE;

                g_array_append_val (pages, at);
        }
        end = MAX (r->zero_end, r->new_blocks_end > r->new_blocks_first ? r->new_table_bytes : 0);
        for (guint64 at = r->zero_start / PAGE * PAGE; at < end; at += PAGE) {
                gboolean zeros = at >= r->zero_start && at + PAGE <= r->zero_end;

                if (range_has_entry (r, at, PAGE) || (!zeros && at < r->zero_end))
                        g_array_append_val (pages, at);
                else if (zeros)
                        vhdx_writer_queue_zeros (file, r->bat_offset + at, PAGE,
                                                 page_order (r, at));
        }
        for (guint i = 0; i < pages->len; i++) {
                guint64 at = g_array_index (pages, guint64, i);

                if (!build_range (r, at, page, PAGE, error))
                        return FALSE;
                /* A page that stays as it is (entries set to what they hold) is left alone. */
                if (r->bat_offset + at + PAGE <= r->result->old_file_size) {
                        if (!vhdx_writer_read (file, r->bat_offset + at, current, PAGE, _ ("BAT"),
                                               error))
                                return FALSE;
                        if (memcmp (current, page, PAGE) == 0)
                                continue;
                }
                vhdx_writer_queue_page (file, r->bat_offset + at, page, page_order (r, at));
        }
        return TRUE;
}

/* Both copies of the region table, made from the one in use with the BAT's new place. */
static gboolean
queue_region_tables (VhdxFile *file, guint64 bat_offset, guint32 bat_length, GError **error)
{
        static const guint64 copies[] = { VHDX_REGION_TABLE1_OFFSET, VHDX_REGION_TABLE2_OFFSET };
        g_autofree guint8 *table = g_malloc (VHDX_REGION_TABLE_SIZE);
        g_autofree guint8 *current = g_malloc (VHDX_REGION_TABLE_SIZE);
        guint64 in_use = copies[file->info.region_table_index == 2 ? 1 : 0];
        guint32 count;

        if (!vhdx_writer_read (file, in_use, table, VHDX_REGION_TABLE_SIZE, _ ("region table"),
                               error))
                return FALSE;
        count = MIN (vhdx_get_le32 (table + VHDX_REGION_OFF_ENTRY_COUNT),
                     (guint32) VHDX_REGION_MAX_ENTRIES);
        for (guint32 i = 0; i < count; i++) {
                guint8 *e = table + VHDX_REGION_HEADER_SIZE + i * VHDX_REGION_ENTRY_SIZE;
                VhdxGuid guid = vhdx_get_guid (e + VHDX_REGION_ENTRY_OFF_GUID);

                if (vhdx_guid_equal (&guid, &vhdx_guid_region_bat)) {
                        vhdx_put_le64 (e + VHDX_REGION_ENTRY_OFF_FILE_OFFSET, bat_offset);
                        vhdx_put_le32 (e + VHDX_REGION_ENTRY_OFF_LENGTH, bat_length);
                }
        }
        vhdx_put_le32 (table + VHDX_REGION_OFF_CHECKSUM,
                       vhdx_crc32c_with_zero_field (table, VHDX_REGION_TABLE_SIZE,
                                                    VHDX_REGION_OFF_CHECKSUM));
        for (guint c = 0; c < G_N_ELEMENTS (copies); c++) {
                if (!vhdx_writer_read (file, copies[c], current, VHDX_REGION_TABLE_SIZE,
                                       _ ("region table"), error))
                        return FALSE;
                for (guint64 at = 0; at < VHDX_REGION_TABLE_SIZE; at += PAGE) {
                        if (memcmp (current + at, table + at, PAGE) != 0)
                                vhdx_writer_queue_page (file, copies[c] + at, table + at,
                                                        ORDER_REGION_TABLES);
                }
        }
        return TRUE;
}

/* Growing: the part of the block that held the old end past it reads as
 * zeros; a fixed image gets its new blocks. */
static gboolean
prepare_grow (Resize *r, GError **error)
{
        VhdxFile *file = r->file;
        const VhdxInfo *info = &file->info;
        guint64 old_blocks = info->geometry.payload_blocks;
        guint64 tail = info->virtual_size % info->block_size;

        if (tail != 0) {
                guint64 block = old_blocks - 1;
                guint state;
                guint64 offset;
                guint64 length = MIN ((guint64) info->block_size,
                                      r->geometry.virtual_size - block * info->block_size) -
                                 tail;

                if (!vhdx_bat_lookup_block (file->bat, block, &state, &offset, error))
                        return FALSE;
                if (stores_data (state) &&
                    !vhdx_io_write_zeros (file->io, offset + tail, length, error))
                        return FALSE;
        }
        /* Entries past the old end that the table holds (a differencing
         * image's last chunk) were not read: whatever they hold, the blocks
         * they are for start empty. */
        for (guint64 block = old_blocks;; block++) {
                guint64 index = vhdx_bat_payload_index (&info->geometry, block);

                if (index * VHDX_BAT_ENTRY_SIZE >= r->old_table_bytes)
                        break;
                set_entry (r, index, 0);
        }
        r->zero_start = r->old_table_bytes;
        r->zero_end = r->relocate ? r->new_table_bytes : r->bat_length;
        /* Past the old end of the file the region is fresh space: zeros already. */
        if (!r->relocate && r->bat_offset + r->zero_end > r->result->old_file_size)
                r->zero_end =
                        MAX (r->zero_start, round_up (r->result->old_file_size, PAGE) -
                                                    MIN (r->bat_offset, r->result->old_file_size));
        if (info->disk_type != VHDX_DISK_TYPE_FIXED || r->geometry.payload_blocks == old_blocks)
                return TRUE;
        /* A fixed image's new blocks: one run of fresh space. */
        r->new_blocks_first = old_blocks;
        r->new_blocks_end = r->geometry.payload_blocks;
        r->result->blocks_allocated = r->new_blocks_end - r->new_blocks_first;
        if (!vhdx_writer_take_space (file, r->result->blocks_allocated * info->block_size,
                                     &r->new_blocks_offset, error))
                return FALSE;
        return step_done (r, error);
}

/* Shrinking: refused when a block past the new end stores data, unless it
 * may be dropped; the entries past the new end become zeros. */
static gboolean
prepare_shrink (Resize *r, VhdxResizeFlags flags, GError **error)
{
        VhdxFile *file = r->file;
        const VhdxInfo *info = &file->info;
        guint64 new_size = r->geometry.virtual_size;
        /* The first block with bytes past the new end. */
        guint64 first = new_size / info->block_size;
        /* The first block wholly past it. */
        guint64 dropped = (new_size + info->block_size - 1) / info->block_size;
        StoredScan scan;

        if (!scan_stored (file, first, &scan, error))
                return FALSE;
        if (scan.found && !(flags & VHDX_RESIZE_FLAGS_DISCARD_DATA)) {
                guint64 start = scan.first * info->block_size;
                guint64 minimum = MIN ((scan.last + 1) * info->block_size, info->virtual_size);

                g_set_error (error, VHDX_ERROR, VHDX_ERROR_WOULD_DISCARD_DATA,
                             _ ("The image stores data past %" PRIu64 " bytes: block %" PRIu64
                                " (virtual offsets %" PRIu64 " to %" PRIu64 ") holds some; it "
                                "can shrink to %" PRIu64 " bytes without losing data"),
                             new_size, scan.first, start,
                             MIN (start + info->block_size, info->virtual_size), minimum);
                return FALSE;
        }
        /* The block that holds the new end keeps its data up to it. */
        r->result->blocks_dropped = scan.count - (scan.found && scan.first < dropped ? 1 : 0);
        /* Entries of dropped blocks that stay in the table (the last chunk
         * of a differencing image), and everything past the table. */
        for (guint64 block = dropped; block < info->geometry.payload_blocks; block++) {
                guint64 index = vhdx_bat_payload_index (&info->geometry, block);

                if (index * VHDX_BAT_ENTRY_SIZE >= r->new_table_bytes)
                        break;
                set_entry (r, index, 0);
        }
        r->zero_start = r->new_table_bytes;
        r->zero_end = r->old_table_bytes;
        return TRUE;
}

static gboolean
check_size (VhdxFile *file, guint64 new_size, GError **error)
{
        guint32 sector = file->info.logical_sector_size;

        if (new_size == 0 || new_size > VHDX_MAX_VIRTUAL_SIZE || new_size % sector != 0) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("A virtual disk of %" PRIu64 " bytes is not possible: the size "
                                "must be a multiple of the %u-byte logical sector, from %u "
                                "bytes to 64 TiB"),
                             new_size, sector, sector);
                return FALSE;
        }
        return TRUE;
}

gboolean
vhdx_file_resize (VhdxFile *file,
                  guint64 new_size,
                  VhdxResizeFlags flags,
                  VhdxProgressFunc progress,
                  gpointer progress_data,
                  GCancellable *cancellable,
                  VhdxResizeResult *result,
                  GError **error)
{
        const VhdxInfo *info = &file->info;
        VhdxResizeResult local_result;
        g_auto (Resize) r = { 0 };
        guint8 size_value[8];
        gboolean grow;

        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (result == NULL)
                result = &local_result;
        memset (result, 0, sizeof *result);
        result->old_size = result->new_size = info->virtual_size;
        result->old_bat_length = result->new_bat_length = info->bat_length;
        result->old_file_size = result->new_file_size = info->file_size;
        if (!vhdx_writer_check (file, error) || !check_size (file, new_size, error))
                return FALSE;
        /* Start from a state with nothing queued. */
        if (!vhdx_file_flush (file, error))
                return FALSE;
        if (!vhdx_io_get_size (file->io, &result->old_file_size, error))
                return FALSE;
        result->new_file_size = result->old_file_size;
        if (new_size == info->virtual_size)
                return TRUE;

        r.file = file;
        r.result = result;
        r.entries = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
        r.progress = progress;
        r.progress_data = progress_data;
        r.cancellable = cancellable;
        vhdx_bat_geometry_init (&r.geometry, new_size, info->block_size, info->logical_sector_size,
                                info->disk_type == VHDX_DISK_TYPE_DIFFERENCING);
        r.old_table_bytes = vhdx_bat_geometry_table_bytes (&info->geometry);
        r.new_table_bytes = vhdx_bat_geometry_table_bytes (&r.geometry);
        grow = new_size > info->virtual_size;
        r.grow = grow;
        /* Progress: the blocks moved (counted when found) and one step for
         * a fixed image's new blocks. */
        r.total = grow && info->disk_type == VHDX_DISK_TYPE_FIXED ? 1 : 0;

        /* First what may fail or be cancelled without changing what the
         * image reads: the new headers, blocks copied and file space taken. */
        r.bat_offset = info->bat_offset;
        r.bat_length = info->bat_length;
        if (!grow && !prepare_shrink (&r, flags, error))
                return FALSE;
        if (!vhdx_writer_begin_change (file, TRUE, error))
                return FALSE;
        if (grow && (!place_bat (&r, flags, error) || !prepare_grow (&r, error)))
                return FALSE;
        if (r.relocate && !write_relocated_bat (&r, error))
                return FALSE;

        /* Then the change itself, one commit: the BAT, the region tables, the size. */
        vhdx_put_le64 (size_value, new_size);
        if ((!r.relocate && !queue_bat (&r, error)) ||
            ((r.bat_offset != info->bat_offset || r.bat_length != info->bat_length) &&
             !queue_region_tables (file, r.bat_offset, (guint32) r.bat_length, error)) ||
            !vhdx_writer_queue_bytes (file, file->metadata.virtual_size_offset, size_value,
                                      sizeof size_value,
                                      grow ? ORDER_GROWN_SIZE : ORDER_SHRUNK_SIZE,
                                      _ ("metadata region"), error)) {
                vhdx_writer_fail (file);
                return FALSE;
        }
        if (!vhdx_file_flush (file, error))
                return FALSE;
        if (!vhdx_file_reset_layout (file, new_size, r.bat_offset, (guint32) r.bat_length, error)) {
                vhdx_writer_fail (file);
                return FALSE;
        }
        result->new_size = new_size;
        result->new_bat_length = r.bat_length;
        result->new_file_size = info->file_size;
        return TRUE;
}
