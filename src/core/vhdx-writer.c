/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Writing the virtual disk of an image opened read-write (see vhdx-writer.h).
 * One file of about a thousand lines: every path below takes the same four
 * locks in the same order (described at the writer's structure), and reads
 * best beside them. */
#include "vhdx-writer.h"

#include <gio/gio.h>

#include "vhdx-alloc.h"
#include "vhdx-header.h"
#include "vhdx-journal.h"
#include "vhdx-private.h"
#include "vhdx-file-private.h"
#include "vhdx-reader.h"
#include "vhdx-writer-private.h"

/*
 * Locks, taken in this order:
 * - flush_lock serialises flushes and the close;
 * - moving: writes hold it for reading while they use a block's file
 *   space; freeing blocks (zeroing, discarding) holds it for writing, so
 *   that no write lands in space that is being freed and handed out again;
 * - header_lock guards the header updates;
 * - lock guards the allocator, the BAT and bitmap changes with their
 *   journal pages, the blocks being given space (busy) and the figures.
 * Reads take none of them: a BAT entry changes only once the data it
 * points at is in the file.
 */
struct _VhdxWriter {
        VhdxFile *file;
        VhdxJournal *journal;
        VhdxAlloc *alloc;
        VhdxGuid log_guid;

        GMutex flush_lock;
        GRWLock moving;
        GMutex lock;
        GCond block_done;
        GHashTable *busy; /* payload blocks being given space */
        guint64 batch;    /* the changes made now are committed by the flush that seals it */
        guint64 durable;  /* the last batch a flush sealed and committed (under flush_lock) */
        guint64 file_size;
        VhdxWriteStats stats;

        GMutex header_lock;
        gint file_guid_changed; /* atomic */
        gint data_guid_changed; /* atomic */
        /* The DataWriteGuid the first user-visible change writes, when chosen. */
        gboolean data_write_guid_chosen;
        VhdxGuid data_write_guid;
        gboolean log_guid_set;

        gint failed; /* atomic: a flush failed, the image needs its log replayed */
        gint closed; /* atomic */
};

VhdxIo *
vhdx_writer_attach (VhdxFile *file, guint64 structures_end, GError **error)
{
        VhdxWriter *w;

        g_return_val_if_fail (file->writer == NULL, NULL);

        w = g_new0 (VhdxWriter, 1);
        w->file = file;
        vhdx_guid_new_random (&w->log_guid);
        w->journal = vhdx_journal_new (file->io, file->info.log_offset, file->info.log_length,
                                       &w->log_guid);
        w->file_size = file->info.file_size;
        structures_end = MAX (structures_end, w->file_size);
        w->alloc = vhdx_alloc_new ((structures_end + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB);
        g_mutex_init (&w->flush_lock);
        g_rw_lock_init (&w->moving);
        g_mutex_init (&w->lock);
        g_cond_init (&w->block_done);
        w->busy = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
        w->batch = 1;
        g_mutex_init (&w->header_lock);
        w->file_guid_changed = file->file_write_guid_changed;
        file->writer = w;
        return vhdx_journal_get_view (w->journal);
}

VhdxIo *
vhdx_writer_get_view (VhdxWriter *w)
{
        return vhdx_journal_get_view (w->journal);
}

void
vhdx_writer_free (VhdxWriter *w)
{
        if (w == NULL)
                return;
        vhdx_journal_free (w->journal);
        vhdx_alloc_free (w->alloc);
        g_hash_table_unref (w->busy);
        g_mutex_clear (&w->flush_lock);
        g_rw_lock_clear (&w->moving);
        g_mutex_clear (&w->lock);
        g_cond_clear (&w->block_done);
        g_mutex_clear (&w->header_lock);
        g_free (w);
}

void
vhdx_file_get_write_stats (VhdxFile *file, VhdxWriteStats *stats)
{
        VhdxWriter *w = file->writer;

        memset (stats, 0, sizeof *stats);
        if (w == NULL)
                return;
        g_mutex_lock (&w->lock);
        *stats = w->stats;
        g_mutex_unlock (&w->lock);
        stats->log_sequences = vhdx_journal_get_sequences (w->journal);
}

void
vhdx_file_set_log_entry_limit (VhdxFile *file, guint32 bytes)
{
        g_return_if_fail (file->writer != NULL);
        vhdx_journal_set_entry_limit (file->writer->journal, bytes);
}

static gboolean
check_writable (VhdxFile *file, GError **error)
{
        VhdxWriter *w = file->writer;

        if (w == NULL) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY,
                             _ ("The image was opened read-only"));
                return FALSE;
        }
        if (g_atomic_int_get (&w->closed)) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED, _ ("The image was closed"));
                return FALSE;
        }
        if (g_atomic_int_get (&w->failed)) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                             _ ("An earlier flush of the image failed; it must be opened again, "
                                "which replays its log"));
                return FALSE;
        }
        return TRUE;
}

/* The headers: new identifiers before the first change. */

static gboolean
write_headers (VhdxWriter *w, VhdxHeader *header, GError **error)
{
        VhdxFile *file = w->file;

        if (!vhdx_headers_write (file->io, header, file->info.header_index, error))
                return FALSE;
        file->header = *header;
        file->info.header_sequence = header->sequence;
        file->info.file_write_guid = header->file_write_guid;
        file->info.data_write_guid = header->data_write_guid;
        file->info.log_guid = header->log_guid;
        g_mutex_lock (&w->lock);
        w->stats.header_updates++;
        g_mutex_unlock (&w->lock);
        return TRUE;
}

/*
 * Before the first modification of the file after open, a new
 * FileWriteGuid; before the first change of what the disk reads
 * (@user_visible), a new DataWriteGuid too (MS-VHDX 2.2.2).
 */
static gboolean
prepare_change (VhdxWriter *w, gboolean user_visible, GError **error)
{
        g_autoptr (GMutexLocker) locker = NULL;
        VhdxHeader header;
        gboolean update = FALSE;

        if (g_atomic_int_get (&w->data_guid_changed) ||
            (!user_visible && g_atomic_int_get (&w->file_guid_changed)))
                return TRUE;
        locker = g_mutex_locker_new (&w->header_lock);
        header = w->file->header;
        if (!g_atomic_int_get (&w->file_guid_changed)) {
                vhdx_guid_new_random (&header.file_write_guid);
                update = TRUE;
        }
        if (user_visible && !g_atomic_int_get (&w->data_guid_changed)) {
                if (w->data_write_guid_chosen)
                        header.data_write_guid = w->data_write_guid;
                else
                        vhdx_guid_new_random (&header.data_write_guid);
                update = TRUE;
        }
        if (update && !write_headers (w, &header, error))
                return FALSE;
        g_atomic_int_set (&w->file_guid_changed, TRUE);
        if (user_visible)
                g_atomic_int_set (&w->data_guid_changed, TRUE);
        return TRUE;
}

/* Called by the first commit once its log entries are durable, before
 * they are applied: from now on a crash makes the log replay. */
static gboolean
set_log_guid (gpointer user_data, GError **error)
{
        VhdxWriter *w = user_data;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&w->header_lock);
        VhdxHeader header;

        if (w->log_guid_set)
                return TRUE;
        header = w->file->header;
        header.log_guid = w->log_guid;
        if (!write_headers (w, &header, error))
                return FALSE;
        w->log_guid_set = TRUE;
        return TRUE;
}

/* Metadata changes: BAT entries and sector bitmap bits, through the journal. */

static gboolean
check_log (VhdxWriter *w, GError **error)
{
        if (w->file->info.log_length == 0) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("The image has no log, through which its block allocation "
                                "table must be changed"));
                return FALSE;
        }
        return TRUE;
}

/*
 * The order in which a commit that takes several log sequences writes the
 * pages, so that each sequence leaves a consistent file: sector bitmap
 * pages first, then the BAT sectors that hold sector bitmap entries, the
 * last first (the payload entries after a bitmap entry belong to the next
 * chunk, whose bitmap entry lies further on), then the other BAT sectors.
 */
enum {
        ORDER_BITMAP = 0,
        ORDER_BAT_WITH_BITMAP_ENTRY = 1, /* + (G_MAXUINT32 - sector) */
        ORDER_BAT = G_MAXUINT32 + G_GUINT64_CONSTANT (2),
};

static guint64
bat_sector_order (VhdxWriter *w, guint64 index)
{
        const VhdxBatGeometry *g = &w->file->info.geometry;
        guint64 sector = index / VHDX_BAT_SECTOR_ENTRIES;
        guint64 first = sector * VHDX_BAT_SECTOR_ENTRIES;
        guint64 end = MIN (first + VHDX_BAT_SECTOR_ENTRIES, g->bat_entries);
        /* The first bitmap entry at or after @first. */
        guint64 chunk = first / (g->chunk_ratio + 1);

        if (vhdx_bat_bitmap_index (g, chunk) < end)
                return ORDER_BAT_WITH_BITMAP_ENTRY + (G_MAXUINT32 - MIN (sector, G_MAXUINT32));
        return ORDER_BAT;
}

/* Set BAT entry @index and queue its sector; called with w->lock held. */
static gboolean
set_bat_entry (VhdxWriter *w, guint64 index, guint64 entry, GError **error)
{
        VhdxBat *bat = w->file->bat;
        guint8 sector[VHDX_LOG_SECTOR_SIZE];

        if (!vhdx_bat_set (bat, index, entry, error) ||
            !vhdx_bat_sector_image (bat, index, sector, error))
                return FALSE;
        vhdx_journal_set_page (w->journal, vhdx_bat_sector_offset (bat, index), sector,
                               bat_sector_order (w, index));
        return TRUE;
}

static guint64
payload_entry (guint state, guint64 offset)
{
        return offset | state;
}

/* Space for a block or bitmap of @size bytes, zeros throughout; called with
 * w->lock held.  Fresh space past the end of the file is zeros already (the
 * file is extended over it); reused space is zeroed, and the flush that
 * publishes it makes that durable before the log entry. */
static gboolean
take_space (VhdxWriter *w, guint64 size, guint64 *offset, GError **error)
{
        VhdxFile *file = w->file;
        gboolean stale;

        *offset = vhdx_alloc_take (w->alloc, size, &stale);
        if (stale) {
                w->stats.blocks_reused++;
                return vhdx_io_zero_range (file->io, *offset, size, TRUE, error);
        }
        if (*offset + size > w->file_size) {
                if (!vhdx_io_extend (file->io, *offset + size, error))
                        return FALSE;
                w->file_size = *offset + size;
                vhdx_bat_set_file_size (file->bat, w->file_size);
        }
        return TRUE;
}

/* The sector bitmap block of @block's chunk, given space on first use;
 * called with w->lock held. */
static gboolean
ensure_bitmap (VhdxWriter *w, guint64 block, guint64 *offset, GError **error)
{
        VhdxBat *bat = w->file->bat;
        const VhdxBatGeometry *g = vhdx_bat_get_geometry (bat);
        guint64 index = vhdx_bat_bitmap_index (g, block / g->chunk_ratio);
        guint64 entry;

        if (!vhdx_bat_get (bat, index, &entry, error))
                return FALSE;
        if (vhdx_bat_entry_state (entry) == VHDX_SB_PRESENT)
                return vhdx_bat_lookup_bitmap (bat, block, offset, error);
        if (!take_space (w, VHDX_BITMAP_BLOCK_SIZE, offset, error) ||
            !set_bat_entry (w, index, *offset | VHDX_SB_PRESENT, error))
                return FALSE;
        w->stats.bitmaps_allocated++;
        return TRUE;
}

typedef struct {
        VhdxWriter *w;
        guint64 block;
        guint64 bitmap_offset;
        gboolean clear;       /* clear the block's other bits first */
        guint64 first_sector; /* block-relative */
        guint64 n_sectors;
} BitsUpdate;

/* Change the bits of one block in the 4 KiB bitmap pages that hold them. */
static gboolean
update_bits (gpointer user_data, GError **error)
{
        BitsUpdate *u = user_data;
        VhdxFile *file = u->w->file;
        const VhdxBatGeometry *g = &file->info.geometry;
        guint64 per_block = vhdx_bat_sectors_per_block (g);
        guint64 base = (u->block % g->chunk_ratio) * per_block; /* the block's first bit */
        guint64 lo = u->clear ? base : base + u->first_sector;
        guint64 hi = u->clear ? base + per_block : base + u->first_sector + u->n_sectors;
        guint64 bits_per_page = VHDX_LOG_SECTOR_SIZE * 8;
        VhdxIo *view = vhdx_journal_get_view (u->w->journal);

        for (guint64 page = lo / bits_per_page; page * bits_per_page < hi; page++) {
                guint8 bits[VHDX_LOG_SECTOR_SIZE];
                guint64 page_first = page * bits_per_page;
                guint64 set_lo = MAX (base + u->first_sector, page_first);
                guint64 set_hi =
                        MIN (base + u->first_sector + u->n_sectors, page_first + bits_per_page);

                if (!vhdx_io_read_exact (view, bits, sizeof bits,
                                         u->bitmap_offset + page * VHDX_LOG_SECTOR_SIZE,
                                         _ ("sector bitmap block"), error))
                        return FALSE;
                if (u->clear) {
                        guint64 clear_lo = MAX (base, page_first);
                        guint64 clear_hi = MIN (base + per_block, page_first + bits_per_page);

                        vhdx_bitmap_clear_range (bits, clear_lo - page_first, clear_hi - clear_lo);
                }
                if (set_lo < set_hi)
                        vhdx_bitmap_set_range (bits, set_lo - page_first, set_hi - set_lo);
                vhdx_journal_set_page (u->w->journal,
                                       u->bitmap_offset + page * VHDX_LOG_SECTOR_SIZE, bits,
                                       ORDER_BITMAP);
        }
        return TRUE;
}

/* Mark sectors of @block present; called with w->lock held. */
static gboolean
set_bits (VhdxWriter *w,
          guint64 block,
          gboolean clear,
          guint64 first_sector,
          guint64 n_sectors,
          GError **error)
{
        BitsUpdate u = { w, block, 0, clear, first_sector, n_sectors };

        if (!ensure_bitmap (w, block, &u.bitmap_offset, error))
                return FALSE;
        return vhdx_bitmap_cache_update (w->file->bitmaps, block, update_bits, &u, error);
}

/* Writing one block. */

static gboolean
write_payload (VhdxFile *file, const guint8 *data, gsize n, guint64 file_offset, GError **error)
{
        return vhdx_io_write (file->io, data, n, file_offset, error);
}

/* Wait until no other write is giving @block space; called with w->lock held. */
static void
wait_block (VhdxWriter *w, guint64 block)
{
        while (g_hash_table_contains (w->busy, &block))
                g_cond_wait (&w->block_done, &w->lock);
}

static void
finish_block (VhdxWriter *w, guint64 block)
{
        g_hash_table_remove (w->busy, &block);
        g_cond_broadcast (&w->block_done);
}

/* A write into a PARTIALLY_PRESENT block stored at @block_offset. */
static gboolean
write_partial (VhdxWriter *w,
               guint64 block,
               guint64 block_offset,
               guint64 in_block,
               const guint8 *data,
               gsize n,
               GError **error)
{
        VhdxFile *file = w->file;
        guint32 ss = file->info.logical_sector_size;
        guint64 length = vhdx_bat_block_length (&file->info.geometry, block);
        g_autoptr (GBytes) bits = vhdx_bitmap_cache_get (file->bitmaps, block, error);
        g_autoptr (GMutexLocker) locker = NULL;

        if (bits == NULL)
                return FALSE;
        /* The sectors are stored before the bits say so: readers see the
         * parent's data or the new data, never stale bytes. */
        if (!write_payload (file, data, n, block_offset + in_block, error))
                return FALSE;
        if (vhdx_bitmap_count_set (g_bytes_get_data (bits, NULL), in_block / ss, n / ss) ==
                    n / ss &&
            n < length)
                return TRUE;
        locker = g_mutex_locker_new (&w->lock);
        if (in_block == 0 && n == length)
                /* The whole block is stored now. */
                return set_bat_entry (w, vhdx_bat_payload_index (&file->info.geometry, block),
                                      payload_entry (VHDX_PAYLOAD_FULLY_PRESENT, block_offset),
                                      error);
        return set_bits (w, block, FALSE, in_block / ss, n / ss, error);
}

/* A write into a block that has no file space: give it some, store the
 * data, then publish the block. */
static gboolean
write_new_block (VhdxWriter *w,
                 guint64 block,
                 guint state,
                 guint64 in_block,
                 const guint8 *data,
                 gsize n,
                 gboolean *retry,
                 GError **error)
{
        VhdxFile *file = w->file;
        const VhdxBatGeometry *g = &file->info.geometry;
        guint32 ss = file->info.logical_sector_size;
        gboolean whole = in_block == 0 && n == vhdx_bat_block_length (g, block);
        guint new_state;
        guint64 offset, current;
        guint current_state;
        gboolean ok;

        g_mutex_lock (&w->lock);
        wait_block (w, block);
        /* Another write may have given it space meanwhile. */
        if (!vhdx_bat_lookup_block (file->bat, block, &current_state, &current, error)) {
                g_mutex_unlock (&w->lock);
                return FALSE;
        }
        if (current_state == VHDX_PAYLOAD_FULLY_PRESENT ||
            current_state == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
                g_mutex_unlock (&w->lock);
                *retry = TRUE;
                return TRUE;
        }
        /* Only a differencing block that is the parent's keeps the parent's
         * data around a partial write; zeros elsewhere are the new space's. */
        new_state = file->info.disk_type == VHDX_DISK_TYPE_DIFFERENCING &&
                                    state == VHDX_PAYLOAD_NOT_PRESENT && !whole
                            ? VHDX_PAYLOAD_PARTIALLY_PRESENT
                            : VHDX_PAYLOAD_FULLY_PRESENT;
        if (!check_log (w, error) || !take_space (w, file->info.block_size, &offset, error)) {
                g_mutex_unlock (&w->lock);
                return FALSE;
        }
        w->stats.blocks_allocated++;
        g_hash_table_add (w->busy, g_memdup2 (&block, sizeof block));
        g_mutex_unlock (&w->lock);

        ok = write_payload (file, data, n, offset + in_block, error);

        g_mutex_lock (&w->lock);
        if (ok && new_state == VHDX_PAYLOAD_PARTIALLY_PRESENT)
                ok = set_bits (w, block, TRUE, in_block / ss, n / ss, error);
        if (ok)
                ok = set_bat_entry (w, vhdx_bat_payload_index (g, block),
                                    payload_entry (new_state, offset), error);
        if (!ok)
                vhdx_alloc_release (w->alloc, offset, file->info.block_size, 0);
        finish_block (w, block);
        g_mutex_unlock (&w->lock);
        return ok;
}

/* Write @n bytes at @in_block of @block (sector-aligned in a differencing
 * image); called with w->moving held for reading. */
static gboolean
write_block (VhdxWriter *w,
             guint64 block,
             guint64 in_block,
             const guint8 *data,
             gsize n,
             GError **error)
{
        VhdxFile *file = w->file;

        for (;;) {
                guint state;
                guint64 offset;
                gboolean retry = FALSE;

                if (!vhdx_bat_lookup_block (file->bat, block, &state, &offset, error))
                        return FALSE;
                if (state == VHDX_PAYLOAD_FULLY_PRESENT)
                        return write_payload (file, data, n, offset + in_block, error);
                if (state == VHDX_PAYLOAD_PARTIALLY_PRESENT)
                        return write_partial (w, block, offset, in_block, data, n, error);
                if (!write_new_block (w, block, state, in_block, data, n, &retry, error))
                        return FALSE;
                if (!retry)
                        return TRUE;
        }
}

/* A differencing image stores whole sectors: widen a write that covers
 * parts of sectors with what the disk reads there now. */
static gboolean
write_block_sectors (VhdxWriter *w,
                     guint64 block,
                     guint64 in_block,
                     const guint8 *data,
                     gsize n,
                     GError **error)
{
        VhdxFile *file = w->file;
        guint32 ss = file->info.logical_sector_size;
        guint64 start = in_block / ss * ss;
        guint64 end = (in_block + n + ss - 1) / ss * ss;
        guint64 block_start = block * file->info.block_size;
        g_autofree guint8 *sectors = NULL;

        if (file->info.disk_type != VHDX_DISK_TYPE_DIFFERENCING ||
            (start == in_block && end == in_block + n))
                return write_block (w, block, in_block, data, n, error);
        sectors = g_malloc (end - start);
        if (!vhdx_file_read (file, block_start + start, sectors, end - start, error))
                return FALSE;
        memcpy (sectors + (in_block - start), data, n);
        return write_block (w, block, start, sectors, end - start, error);
}

/* TRUE when a write covers parts of sectors of a differencing image. */
static gboolean
writes_parts_of_sectors (VhdxFile *file, guint64 offset, guint64 count)
{
        guint32 ss = file->info.logical_sector_size;

        return file->info.disk_type == VHDX_DISK_TYPE_DIFFERENCING &&
               (offset % ss != 0 || count % ss != 0);
}

gboolean
vhdx_file_write (VhdxFile *file,
                 guint64 offset,
                 const void *buf,
                 gsize count,
                 VhdxWriteFlags flags,
                 GError **error)
{
        VhdxWriter *w = file->writer;
        const guint8 *in = buf;
        gboolean ok = TRUE, exclusive;

        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (buf != NULL || count == 0, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (!check_writable (file, error) || !vhdx_file_check_range (file, offset, count, error))
                return FALSE;
        if (count == 0)
                return TRUE;
        if (!prepare_change (w, TRUE, error))
                return FALSE;

        /* Parts of sectors of a differencing image are read, merged and
         * written whole: alone, so that no other write to those sectors
         * comes in between. */
        exclusive = writes_parts_of_sectors (file, offset, count);
        if (exclusive)
                g_rw_lock_writer_lock (&w->moving);
        else
                g_rw_lock_reader_lock (&w->moving);
        while (ok && count > 0) {
                guint64 block = offset / file->info.block_size;
                guint64 in_block = offset % file->info.block_size;
                gsize n = (gsize) MIN ((guint64) count, file->info.block_size - in_block);

                ok = write_block_sectors (w, block, in_block, in, n, error);
                in += n;
                offset += n;
                count -= n;
        }
        if (exclusive)
                g_rw_lock_writer_unlock (&w->moving);
        else
                g_rw_lock_reader_unlock (&w->moving);
        if (ok && (flags & VHDX_WRITE_FLAGS_FUA))
                ok = vhdx_file_flush (file, error);
        return ok;
}

/* Zeros and discards. */

typedef enum {
        CLEAR_ZERO,
        CLEAR_DISCARD,
} ClearKind;

/* TRUE when a block in @state reads as zeros. */
static gboolean
reads_zeros (VhdxFile *file, guint state)
{
        switch (state) {
        case VHDX_PAYLOAD_FULLY_PRESENT:
        case VHDX_PAYLOAD_PARTIALLY_PRESENT:
                return FALSE;
        case VHDX_PAYLOAD_NOT_PRESENT:
                return file->info.disk_type != VHDX_DISK_TYPE_DIFFERENCING;
        default:
                return TRUE;
        }
}

/* Zero part of a block: in place where it is stored, as written zeros
 * where the parent's data must be hidden, nothing where it reads as zeros.
 * Called with w->moving held for reading. */
static gboolean
zero_in_block (VhdxWriter *w,
               guint64 block,
               guint64 in_block,
               guint64 n,
               VhdxWriteFlags flags,
               GError **error)
{
        VhdxFile *file = w->file;
        guint state;
        guint64 offset;
        g_autofree guint8 *zeros = NULL;

        if (!vhdx_bat_lookup_block (file->bat, block, &state, &offset, error))
                return FALSE;
        if (reads_zeros (file, state))
                return TRUE;
        if (!prepare_change (w, TRUE, error))
                return FALSE;
        if (state == VHDX_PAYLOAD_FULLY_PRESENT)
                return vhdx_io_zero_range (file->io, offset + in_block, n,
                                           (flags & VHDX_WRITE_FLAGS_MAY_UNMAP) &&
                                                   file->info.disk_type != VHDX_DISK_TYPE_FIXED,
                                           error);
        zeros = g_malloc0 (MIN (n, VHDX_MiB));
        for (guint64 done = 0; done < n;) {
                gsize piece = (gsize) MIN (n - done, VHDX_MiB);

                if (!write_block_sectors (w, block, in_block + done, zeros, piece, error))
                        return FALSE;
                done += piece;
        }
        return TRUE;
}

/* Zero or discard whole blocks [@first, @end); called with w->moving held
 * for writing. */
static gboolean
clear_blocks (VhdxWriter *w,
              guint64 first,
              guint64 end,
              ClearKind kind,
              VhdxWriteFlags flags,
              GError **error)
{
        VhdxFile *file = w->file;
        const VhdxBatGeometry *g = &file->info.geometry;
        gboolean may_unmap = kind == CLEAR_DISCARD || (flags & VHDX_WRITE_FLAGS_MAY_UNMAP);
        g_autoptr (GMutexLocker) locker = NULL;

        for (guint64 block = first; block < end; block++) {
                guint state, new_state;
                guint64 offset;
                gboolean stored;

                if (!vhdx_bat_lookup_block (file->bat, block, &state, &offset, error))
                        return FALSE;
                stored = state == VHDX_PAYLOAD_FULLY_PRESENT ||
                         state == VHDX_PAYLOAD_PARTIALLY_PRESENT;
                if (file->info.disk_type == VHDX_DISK_TYPE_FIXED &&
                    state == VHDX_PAYLOAD_FULLY_PRESENT) {
                        /* Every block of a fixed image stays where it is. */
                        if (kind == CLEAR_DISCARD)
                                continue;
                        if (!prepare_change (w, TRUE, error) ||
                            !vhdx_io_zero_range (file->io, offset, vhdx_bat_block_length (g, block),
                                                 FALSE, error))
                                return FALSE;
                        continue;
                }
                if (!stored) {
                        /* A differencing block that is the parent's is
                         * hidden by zeros; a discard may leave it. */
                        if (kind == CLEAR_DISCARD || reads_zeros (file, state))
                                continue;
                        new_state = VHDX_PAYLOAD_ZERO;
                } else if (!may_unmap) {
                        if (!prepare_change (w, TRUE, error) ||
                            !vhdx_io_zero_range (file->io, offset, vhdx_bat_block_length (g, block),
                                                 FALSE, error))
                                return FALSE;
                        if (state == VHDX_PAYLOAD_FULLY_PRESENT)
                                continue;
                        /* Zeros throughout: the parent's sectors are hidden too. */
                        new_state = VHDX_PAYLOAD_FULLY_PRESENT;
                } else {
                        new_state =
                                kind == CLEAR_DISCARD ? VHDX_PAYLOAD_UNMAPPED : VHDX_PAYLOAD_ZERO;
                }
                if (!prepare_change (w, TRUE, error) || !check_log (w, error))
                        return FALSE;
                locker = g_mutex_locker_new (&w->lock);
                if (!set_bat_entry (w, vhdx_bat_payload_index (g, block),
                                    payload_entry (new_state,
                                                   new_state == VHDX_PAYLOAD_FULLY_PRESENT ? offset
                                                                                           : 0),
                                    error))
                        return FALSE;
                if (stored && new_state != VHDX_PAYLOAD_FULLY_PRESENT) {
                        vhdx_alloc_release (w->alloc, offset, file->info.block_size, w->batch);
                        w->stats.blocks_freed++;
                }
                g_clear_pointer (&locker, g_mutex_locker_free);
        }
        return TRUE;
}

static gboolean
clear_range (VhdxFile *file,
             guint64 offset,
             guint64 length,
             ClearKind kind,
             VhdxWriteFlags flags,
             GError **error)
{
        VhdxWriter *w = file->writer;
        guint64 bs = file->info.block_size;
        guint64 end = offset + length;
        /* The blocks covered entirely; the last block of the disk may be short. */
        guint64 first_whole = (offset + bs - 1) / bs;
        guint64 end_whole = end == file->info.virtual_size ? (end + bs - 1) / bs : end / bs;
        gboolean ok = TRUE;

        if (!check_writable (file, error) || !vhdx_file_check_range (file, offset, length, error))
                return FALSE;
        if (first_whole < end_whole) {
                g_rw_lock_writer_lock (&w->moving);
                ok = clear_blocks (w, first_whole, end_whole, kind, flags, error);
                g_rw_lock_writer_unlock (&w->moving);
        } else {
                first_whole = end_whole = end / bs + 1; /* no whole block */
        }
        /* The parts of blocks: zeroed, or left alone by a discard. */
        if (kind == CLEAR_ZERO && ok) {
                gboolean exclusive = writes_parts_of_sectors (file, offset, length);

                if (exclusive)
                        g_rw_lock_writer_lock (&w->moving);
                else
                        g_rw_lock_reader_lock (&w->moving);
                while (ok && offset < end) {
                        guint64 block = offset / bs;
                        guint64 in_block = offset % bs;
                        guint64 n = MIN (end - offset, bs - in_block);

                        if (block >= first_whole && block < end_whole) {
                                offset = end_whole * bs;
                                continue;
                        }
                        ok = zero_in_block (w, block, in_block, n, flags, error);
                        offset += n;
                }
                if (exclusive)
                        g_rw_lock_writer_unlock (&w->moving);
                else
                        g_rw_lock_reader_unlock (&w->moving);
        }
        if (ok && (flags & VHDX_WRITE_FLAGS_FUA))
                ok = vhdx_file_flush (file, error);
        return ok;
}

gboolean
vhdx_file_write_zeroes (VhdxFile *file,
                        guint64 offset,
                        guint64 length,
                        VhdxWriteFlags flags,
                        GError **error)
{
        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return clear_range (file, offset, length, CLEAR_ZERO, flags, error);
}

gboolean
vhdx_file_discard (VhdxFile *file,
                   guint64 offset,
                   guint64 length,
                   VhdxWriteFlags flags,
                   GError **error)
{
        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return clear_range (file, offset, length, CLEAR_DISCARD, flags, error);
}

/* Flushing and closing. */

static gboolean
flush_locked (VhdxWriter *w, GError **error)
{
        VhdxFile *file = w->file;
        guint64 sealed, flushed_size, last;
        gboolean changes;

        /* The changes made so far, none of them half made (each is made
         * under the lock): their payload is in the file. */
        g_mutex_lock (&w->lock);
        sealed = w->batch++;
        changes = vhdx_journal_seal (w->journal);
        flushed_size = w->file_size / VHDX_MiB * VHDX_MiB;
        last = MAX (vhdx_alloc_get_end (w->alloc), w->file_size);
        last = (last + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB;
        w->stats.flushes++;
        g_mutex_unlock (&w->lock);

        /* The payload (and zeroed reused space) is durable before the log
         * entry that publishes it, and so are the in-place updates of the
         * last commit before this one may overwrite its log entry. */
        if (!vhdx_io_flush (file->io, error))
                goto failed;
        if (changes &&
            !vhdx_journal_commit (w->journal, flushed_size, last, set_log_guid, w, error))
                goto failed;
        g_mutex_lock (&w->lock);
        vhdx_alloc_set_durable (w->alloc, sealed);
        g_mutex_unlock (&w->lock);
        w->durable = sealed;
        return TRUE;

failed:
        g_atomic_int_set (&w->failed, TRUE);
        return FALSE;
}

gboolean
vhdx_file_flush (VhdxFile *file, GError **error)
{
        VhdxWriter *w = file->writer;
        g_autoptr (GMutexLocker) locker = NULL;
        guint64 current;

        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (w == NULL)
                return TRUE; /* nothing was written */
        if (!check_writable (file, error))
                return FALSE;

        /* Every write that completed before this call belongs to the
         * current batch or an earlier one.  Flushes that arrive while
         * another runs queue on flush_lock; the first of them to get it
         * seals a batch at least as late as theirs and so flushes for all
         * of them (the kernel merges concurrent fdatasync calls of a raw
         * file the same way). */
        g_mutex_lock (&w->lock);
        current = w->batch;
        g_mutex_unlock (&w->lock);
        locker = g_mutex_locker_new (&w->flush_lock);
        if (w->durable >= current)
                return TRUE;
        if (!check_writable (file, error))
                return FALSE;
        return flush_locked (w, error);
}

/* Closed: what stays open only reads, and lets other processes read too. */
static gboolean
release_writer_lock (VhdxFile *file, GError **error)
{
        if (file->flags & VHDX_OPEN_FLAGS_FORCE_SHARE)
                return TRUE;
        return vhdx_io_lock (file->io, VHDX_LOCK_READER, NULL, error);
}

gboolean
vhdx_writer_close (VhdxWriter *w, GError **error)
{
        VhdxFile *file = w->file;
        g_autoptr (GMutexLocker) locker = NULL;
        VhdxHeader header;

        locker = g_mutex_locker_new (&w->flush_lock);
        if (g_atomic_int_get (&w->closed)) {
                /* Closed before: clean, unless that close failed. */
                if (!w->log_guid_set && !g_atomic_int_get (&w->failed))
                        return TRUE;
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                             _ ("An earlier close of the image failed; it must be opened again, "
                                "which replays its log"));
                return FALSE;
        }
        if (!check_writable (file, error))
                return FALSE;
        g_atomic_int_set (&w->closed, TRUE);
        if (!flush_locked (w, error))
                return FALSE;
        if (!w->log_guid_set)
                return release_writer_lock (file, error);
        /* The in-place updates durable, the log is not needed any more. */
        if (!vhdx_io_flush (file->io, error))
                return FALSE;
        g_mutex_lock (&w->header_lock);
        header = file->header;
        header.log_guid = vhdx_guid_zero;
        if (write_headers (w, &header, error))
                w->log_guid_set = FALSE;
        g_mutex_unlock (&w->header_lock);
        return !w->log_guid_set && release_writer_lock (file, error);
}

/* The steps of the operations that change an image's structure (see vhdx-writer-private.h). */

gboolean
vhdx_writer_check (VhdxFile *file, GError **error)
{
        return check_writable (file, error) && check_log (file->writer, error);
}

gboolean
vhdx_writer_begin_change (VhdxFile *file, gboolean user_visible, GError **error)
{
        return prepare_change (file->writer, user_visible, error);
}

void
vhdx_writer_set_data_write_guid (VhdxFile *file, const VhdxGuid *guid)
{
        VhdxWriter *w = file->writer;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&w->header_lock);

        g_return_if_fail (!g_atomic_int_get (&w->data_guid_changed));
        w->data_write_guid = *guid;
        w->data_write_guid_chosen = TRUE;
}

gboolean
vhdx_writer_data_write_guid_changed (VhdxFile *file)
{
        return g_atomic_int_get (&file->writer->data_guid_changed);
}

gboolean
vhdx_writer_read (VhdxFile *file,
                  guint64 offset,
                  void *buf,
                  gsize count,
                  const char *structure,
                  GError **error)
{
        return vhdx_io_read_exact (vhdx_journal_get_view (file->writer->journal), buf, count,
                                   offset, structure, error);
}

void
vhdx_writer_queue_page (VhdxFile *file, guint64 offset, const guint8 *page, guint64 order)
{
        vhdx_journal_set_page (file->writer->journal, offset, page, order);
}

void
vhdx_writer_queue_zeros (VhdxFile *file, guint64 offset, guint64 length, guint64 order)
{
        vhdx_journal_set_zeros (file->writer->journal, offset, length, order);
}

gboolean
vhdx_writer_queue_bytes (VhdxFile *file,
                         guint64 offset,
                         const guint8 *bytes,
                         gsize count,
                         guint64 order,
                         const char *structure,
                         GError **error)
{
        guint64 first = offset / VHDX_LOG_SECTOR_SIZE * VHDX_LOG_SECTOR_SIZE;
        guint64 end = (offset + count + VHDX_LOG_SECTOR_SIZE - 1) / VHDX_LOG_SECTOR_SIZE *
                      VHDX_LOG_SECTOR_SIZE;
        g_autofree guint8 *pages = g_malloc (end - first);

        if (!vhdx_writer_read (file, first, pages, end - first, structure, error))
                return FALSE;
        memcpy (pages + (offset - first), bytes, count);
        for (guint64 at = first; at < end; at += VHDX_LOG_SECTOR_SIZE)
                vhdx_writer_queue_page (file, at, pages + (at - first), order);
        return TRUE;
}

gboolean
vhdx_writer_set_bat_entry (VhdxFile *file, guint64 index, guint64 entry, GError **error)
{
        VhdxWriter *w = file->writer;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&w->lock);

        return set_bat_entry (w, index, entry, error);
}

gboolean
vhdx_writer_take_space (VhdxFile *file, guint64 size, guint64 *offset, GError **error)
{
        VhdxWriter *w = file->writer;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&w->lock);

        return take_space (w, size, offset, error);
}

gboolean
vhdx_writer_reserve (VhdxFile *file, guint64 start, guint64 end, GError **error)
{
        VhdxWriter *w = file->writer;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&w->lock);

        vhdx_alloc_exclude (w->alloc, start, end);
        if (end > w->file_size) {
                if (!vhdx_io_extend (file->io, end, error))
                        return FALSE;
                w->file_size = end;
                vhdx_bat_set_file_size (file->bat, w->file_size);
        }
        return TRUE;
}

void
vhdx_writer_fail (VhdxFile *file)
{
        g_atomic_int_set (&file->writer->failed, TRUE);
}

void
vhdx_writer_forget_free_space (VhdxFile *file)
{
        VhdxWriter *w = file->writer;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&w->lock);
        guint64 end = vhdx_alloc_get_end (w->alloc);

        vhdx_alloc_free (w->alloc);
        w->alloc = vhdx_alloc_new (end);
}

gboolean
vhdx_writer_shrink_file (VhdxFile *file, guint64 end, gboolean *truncated, GError **error)
{
        VhdxWriter *w = file->writer;
        g_autoptr (GMutexLocker) flush_locker = NULL;
        guint8 sector[VHDX_LOG_SECTOR_SIZE];
        guint64 old_end;

        g_return_val_if_fail (end % VHDX_MiB == 0, FALSE);

        *truncated = FALSE;
        if (!check_writable (file, error))
                return FALSE;
        flush_locker = g_mutex_locker_new (&w->flush_lock);
        g_mutex_lock (&w->lock);
        old_end = vhdx_alloc_get_end (w->alloc);
        if (end >= old_end) {
                g_mutex_unlock (&w->lock);
                return TRUE;
        }
        if (!vhdx_io_can_truncate (file->io)) {
                vhdx_alloc_release (w->alloc, end, old_end - end, w->batch);
                g_mutex_unlock (&w->lock);
                return TRUE;
        }
        /* An update that changes nothing (the BAT's first sector as it is)
         * carries the new size to the log: a replay must not find the file
         * shorter than the size the last entry says is durable. */
        if (!vhdx_bat_sector_image (file->bat, 0, sector, error)) {
                g_mutex_unlock (&w->lock);
                return FALSE;
        }
        vhdx_journal_set_page (w->journal, vhdx_bat_sector_offset (file->bat, 0), sector,
                               bat_sector_order (w, 0));
        vhdx_alloc_free (w->alloc);
        w->alloc = vhdx_alloc_new (end);
        w->file_size = end;
        g_mutex_unlock (&w->lock);
        if (!flush_locked (w, error))
                return FALSE;
        /* Fresh space past @end must read as zeros: a file left longer
         * breaks that, so the image is given up on. */
        if (!vhdx_io_truncate (file->io, end, error) || !vhdx_io_flush (file->io, error)) {
                g_atomic_int_set (&w->failed, TRUE);
                return FALSE;
        }
        vhdx_bat_set_file_size (file->bat, end);
        file->info.file_size = end;
        *truncated = TRUE;
        return TRUE;
}
