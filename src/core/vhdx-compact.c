/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Compacting an image (see vhdx-compact.h). */
#include "vhdx-compact.h"

#include "vhdx-file-private.h"
#include "vhdx-private.h"
#include "vhdx-writer-private.h"
#include "vhdx-writer.h"

/* A stored block's first read: a block that holds data shows it at once. */
#define FIRST_READ (64 * VHDX_KiB)
/* Later reads of a block: small enough that the bytes read are still in
 * the CPU's cache when they are checked. */
#define ZERO_READ (256 * VHDX_KiB)
/* How far apart holes of a sparse file are looked for. */
#define HOLE_STEP (4 * VHDX_MiB)
/* The copies of the blocks moved. */
#define BIG_READ (8 * VHDX_MiB)
/* Data copied between two commits, at most. */
#define BATCH_BYTES (512 * VHDX_MiB)

/* A BAT entry that names file space. */
typedef struct {
        guint64 index;
        guint64 entry;     /* committed */
        guint64 new_entry; /* what it becomes: another state, or another place */
        guint64 length;    /* of its file space */
        gboolean bitmap;
        gboolean pinned; /* a state this code does not know: left where it is */
} Held;

typedef struct {
        guint64 start;
        guint64 end;
} Span;

typedef struct {
        VhdxFile *file;
        VhdxCompactFlags flags;
        VhdxCompactResult *result;
        GArray *held;        /* Held, in the order of their entries */
        GHashTable *partial; /* chunk -> its PARTIALLY_PRESENT blocks, counted */
        guint max_pages;     /* BAT sectors per commit: what one log entry holds */
        guint8 *buf;         /* BIG_READ bytes */
        VhdxProgressFunc progress;
        gpointer progress_data;
        guint64 done;
        guint64 total;
        GCancellable *cancellable;
} Compact;

static void
compact_clear (Compact *c)
{
        g_clear_pointer (&c->held, g_array_unref);
        g_clear_pointer (&c->partial, g_hash_table_unref);
        g_clear_pointer (&c->buf, g_free);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Compact, compact_clear)

static void
report (Compact *c)
{
        if (c->progress != NULL)
                c->progress (c->done, c->total, c->progress_data);
}

static gboolean
has_space (const Held *h)
{
        return vhdx_bat_entry_offset (h->new_entry) != 0;
}

/* The entries that name file space. */

static gboolean
collect_held (guint64 index, guint64 entry, gpointer user_data, GError **error)
{
        Compact *c = user_data;
        const VhdxInfo *info = &c->file->info;
        const VhdxBatGeometry *g = &info->geometry;
        gboolean bitmap = vhdx_bat_index_is_bitmap (g, index);
        guint state = vhdx_bat_entry_state (entry);
        Held h = { index,  entry, entry, bitmap ? VHDX_BITMAP_BLOCK_SIZE : info->block_size,
                   bitmap, FALSE };

        if (!bitmap && state == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
                guint64 chunk = vhdx_bat_index_block (g, index) / g->chunk_ratio;
                guint count = GPOINTER_TO_UINT (g_hash_table_lookup (c->partial, &chunk));

                g_hash_table_insert (c->partial, g_memdup2 (&chunk, sizeof chunk),
                                     GUINT_TO_POINTER (count + 1));
        }
        if (vhdx_bat_entry_offset (entry) == 0)
                return TRUE;
        if (bitmap)
                h.pinned = state != VHDX_SB_PRESENT && state != VHDX_SB_NOT_PRESENT;
        else
                h.pinned = !vhdx_bat_payload_state_is_valid (state, info->disk_type) ||
                           vhdx_bat_index_block (g, index) >= g->payload_blocks;
        g_array_append_val (c->held, h);
        return TRUE;
}

/* Whether bytes read as zeros: the first 16 checked, then the rest
 * compared with itself 16 bytes on. */
static gboolean
all_zeros (const guint8 *p, gsize n)
{
        for (gsize i = 0; i < MIN (n, (gsize) 16); i++) {
                if (p[i] != 0)
                        return FALSE;
        }
        return n <= 16 || memcmp (p, p + 16, n - 16) == 0;
}

/* Read up to @count bytes at @offset: fewer only at the end of the file. */
static gboolean
read_some (VhdxIo *io, guint8 *buf, gsize count, guint64 offset, gsize *n, GError **error)
{
        *n = 0;
        while (*n < count) {
                gsize got = 0;

                if (!io->vtable->pread (io, buf + *n, count - *n, offset + *n, &got, error))
                        return FALSE;
                if (got == 0)
                        break;
                *n += got;
        }
        return TRUE;
}

/* Whether the file reads as zeros over [@offset, @offset + @length):
 * holes of a sparse file are skipped unread, and a block that holds data
 * is mostly told by its first read. */
static gboolean
space_is_zeros (Compact *c, guint64 offset, guint64 length, gboolean *zeros, GError **error)
{
        VhdxIo *io = c->file->io;
        guint64 end = offset + length;
        gsize piece = FIRST_READ;
        guint64 look = offset; /* where to look for a hole next */

        *zeros = FALSE;
        for (guint64 at = offset; at < end;) {
                gsize n;

                /* Holes are looked for at the block's start and every
                 * HOLE_STEP bytes, not at every read. */
                if (at >= look) {
                        guint64 data = vhdx_io_next_data (io, at);

                        look = at + HOLE_STEP;
                        if (data >= end)
                                break;
                        if (data > at) {
                                at = data;
                                continue;
                        }
                }
                if (!read_some (io, c->buf, (gsize) MIN ((guint64) piece, end - at), at, &n, error))
                        return FALSE;
                if (n == 0)
                        break; /* past the end of the file: zeros */
                if (!all_zeros (c->buf, n))
                        return TRUE;
                at += n;
                piece = ZERO_READ;
        }
        *zeros = TRUE;
        return TRUE;
}

/* Full mode: what a stored block becomes when it reads as zeros. */
static gboolean
examine_block (Compact *c, Held *h, GError **error)
{
        VhdxFile *file = c->file;
        const VhdxInfo *info = &file->info;
        const VhdxBatGeometry *g = &info->geometry;
        guint64 block = vhdx_bat_index_block (g, h->index);
        guint64 length = vhdx_bat_block_length (g, block);
        gboolean differencing = info->disk_type == VHDX_DISK_TYPE_DIFFERENCING;
        gboolean zeros;

        if (vhdx_bat_entry_state (h->entry) == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
                g_autoptr (GBytes) bits = vhdx_bitmap_cache_get (file->bitmaps, block, error);
                guint64 sectors = length / info->logical_sector_size;
                guint64 present;

                if (bits == NULL)
                        return FALSE;
                present = vhdx_bitmap_count_set (g_bytes_get_data (bits, NULL), 0, sectors);
                if (present == 0) {
                        /* Every sector is the parent's. */
                        h->new_entry = VHDX_PAYLOAD_NOT_PRESENT;
                        return TRUE;
                }
                /* Some sectors are the parent's: the block stays, whatever it holds. */
                if (present < sectors)
                        return TRUE;
        }
        if (!space_is_zeros (c, vhdx_bat_entry_offset (h->entry), length, &zeros, error))
                return FALSE;
        if (zeros)
                h->new_entry = differencing ? VHDX_PAYLOAD_ZERO : VHDX_PAYLOAD_NOT_PRESENT;
        return TRUE;
}

static gint
compare_by_offset (gconstpointer a, gconstpointer b)
{
        guint64 x = vhdx_bat_entry_offset ((*(Held *const *) a)->entry);
        guint64 y = vhdx_bat_entry_offset ((*(Held *const *) b)->entry);

        return x < y ? -1 : x > y;
}

/* Which entries drop their file space: those whose state reads none, and
 * in full mode the stored blocks that read as zeros (read in file order). */
static gboolean
find_drops (Compact *c, GError **error)
{
        g_autoptr (GPtrArray) stored = g_ptr_array_new ();

        for (guint i = 0; i < c->held->len; i++) {
                Held *h = &g_array_index (c->held, Held, i);
                guint state = vhdx_bat_entry_state (h->entry);

                if (h->pinned)
                        continue;
                if (h->bitmap) {
                        if (state == VHDX_SB_NOT_PRESENT)
                                h->new_entry = VHDX_SB_NOT_PRESENT;
                } else if (state != VHDX_PAYLOAD_FULLY_PRESENT &&
                           state != VHDX_PAYLOAD_PARTIALLY_PRESENT) {
                        h->new_entry = state;
                } else if (!(c->flags & VHDX_COMPACT_FLAGS_QUICK)) {
                        g_ptr_array_add (stored, h);
                }
        }
        g_ptr_array_sort (stored, compare_by_offset);
        c->total = stored->len;
        report (c);
        for (guint i = 0; i < stored->len; i++) {
                if (!examine_block (c, g_ptr_array_index (stored, i), error))
                        return FALSE;
                c->done++;
                report (c);
                if (g_cancellable_set_error_if_cancelled (c->cancellable, error))
                        return FALSE;
        }
        return TRUE;
}

/* The sector bitmaps of chunks where no block stays PARTIALLY_PRESENT:
 * dropped in a commit after the one that changes the blocks' entries. */
static void
find_dropped_bitmaps (Compact *c)
{
        const VhdxBatGeometry *g = &c->file->info.geometry;
        if (c->file->info.disk_type != VHDX_DISK_TYPE_DIFFERENCING)
                return;
        for (guint i = 0; i < c->held->len; i++) {
                const Held *h = &g_array_index (c->held, Held, i);
                guint64 chunk = vhdx_bat_index_block (g, h->index) / g->chunk_ratio;
                gpointer count;

                if (h->bitmap || h->new_entry == h->entry ||
                    vhdx_bat_entry_state (h->entry) != VHDX_PAYLOAD_PARTIALLY_PRESENT ||
                    !g_hash_table_lookup_extended (c->partial, &chunk, NULL, &count))
                        continue;
                g_hash_table_insert (c->partial, g_memdup2 (&chunk, sizeof chunk),
                                     GUINT_TO_POINTER (GPOINTER_TO_UINT (count) - 1));
        }
        for (guint i = 0; i < c->held->len; i++) {
                Held *h = &g_array_index (c->held, Held, i);
                guint64 chunk = h->index / (g->chunk_ratio + 1);

                if (!h->bitmap || h->pinned || vhdx_bat_entry_state (h->entry) != VHDX_SB_PRESENT ||
                    GPOINTER_TO_UINT (g_hash_table_lookup (c->partial, &chunk)) > 0)
                        continue;
                h->new_entry = VHDX_SB_NOT_PRESENT;
        }
}

/* Committing BAT entries. */

/* Set the entry of @h to @entry; commit when the batch has as many BAT
 * sectors as one log entry holds, or at @last. */
static gboolean
set_entry (Compact *c,
           const Held *h,
           guint64 entry,
           GHashTable *pages,
           gboolean last,
           GError **error)
{
        guint64 page = h->index / VHDX_BAT_SECTOR_ENTRIES;

        if (!vhdx_writer_set_bat_entry (c->file, h->index, entry, error))
                return FALSE;
        g_hash_table_add (pages, g_memdup2 (&page, sizeof page));
        if (!last && g_hash_table_size (pages) < c->max_pages)
                return TRUE;
        g_hash_table_remove_all (pages);
        if (!vhdx_file_flush (c->file, error))
                return FALSE;
        return !g_cancellable_set_error_if_cancelled (c->cancellable, error);
}

/* The new entries of the blocks that drop their space (@bitmaps: of the
 * sector bitmaps), in batches. */
static gboolean
commit_drops (Compact *c, gboolean bitmaps, GError **error)
{
        g_autoptr (GHashTable) pages =
                g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
        gint last = -1;

        for (guint i = 0; i < c->held->len; i++) {
                const Held *h = &g_array_index (c->held, Held, i);

                if (h->bitmap == bitmaps && h->new_entry != h->entry && !has_space (h))
                        last = (gint) i;
        }
        for (gint i = 0; i <= last; i++) {
                Held *h = &g_array_index (c->held, Held, i);

                if (h->bitmap != bitmaps || h->new_entry == h->entry || has_space (h))
                        continue;
                if (!set_entry (c, h, h->new_entry, pages, i == last, error))
                        return FALSE;
                h->entry = h->new_entry;
                if (!bitmaps)
                        c->result->blocks_dropped++;
        }
        return TRUE;
}

/* Moving the blocks down. */

static gint
compare_spans (gconstpointer a, gconstpointer b)
{
        const Span *x = a, *y = b;

        return x->start < y->start ? -1 : x->start > y->start;
}

/* The space of the file that the structures and the blocks kept hold;
 * @end is set to where the last of them ends. */
static GArray *
used_spans (Compact *c, guint64 *end)
{
        VhdxFile *file = c->file;
        GArray *used = g_array_new (FALSE, FALSE, sizeof (Span));
        Span header = { 0, VHDX_HEADER_SECTION_SIZE };

        g_array_append_val (used, header);
        if (file->info.log_length > 0) {
                Span log = { file->info.log_offset, file->info.log_offset + file->info.log_length };

                g_array_append_val (used, log);
        }
        for (guint i = 0; i < file->regions.entries->len; i++) {
                const VhdxRegionEntry *r =
                        &g_array_index (file->regions.entries, VhdxRegionEntry, i);
                Span region = { r->file_offset, r->file_offset + r->length };

                g_array_append_val (used, region);
        }
        for (guint i = 0; i < c->held->len; i++) {
                const Held *h = &g_array_index (c->held, Held, i);
                Span block = { vhdx_bat_entry_offset (h->new_entry), 0 };

                block.end = block.start + h->length;
                if (has_space (h))
                        g_array_append_val (used, block);
        }
        g_array_sort (used, compare_spans);
        *end = 0;
        for (guint i = 0; i < used->len; i++)
                *end = MAX (*end, g_array_index (used, Span, i).end);
        return used;
}

/* The 1 MiB-aligned holes between the spans used, below @end. */
static GArray *
holes_between (GArray *used)
{
        GArray *holes = g_array_new (FALSE, FALSE, sizeof (Span));
        guint64 at = 0;

        for (guint i = 0; i < used->len; i++) {
                const Span *u = &g_array_index (used, Span, i);
                Span hole = { (at + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB,
                              u->start / VHDX_MiB * VHDX_MiB };

                if (hole.start < hole.end)
                        g_array_append_val (holes, hole);
                at = MAX (at, u->end);
        }
        return holes;
}

/*
 * Where each block goes: the last block first, into the lowest hole
 * below it that it fits.  The space a block leaves lies above every
 * block still to place, so no hole is made by a move.  A cursor per
 * size: the holes before it are too small for that size, for good.
 * Returns the blocks to move, the last first; @end is set to where the
 * file's contents end afterwards.
 */
static GPtrArray *
plan_moves (Compact *c, guint64 *end)
{
        g_autoptr (GArray) used = used_spans (c, end);
        g_autoptr (GArray) holes = holes_between (used);
        g_autoptr (GPtrArray) blocks = g_ptr_array_new ();
        GPtrArray *moves = g_ptr_array_new ();
        guint cursor[2] = { 0, 0 };

        for (guint i = 0; i < c->held->len; i++) {
                Held *h = &g_array_index (c->held, Held, i);

                if (has_space (h) && !h->pinned)
                        g_ptr_array_add (blocks, h);
        }
        g_ptr_array_sort (blocks, compare_by_offset);
        for (guint i = blocks->len; i-- > 0;) {
                Held *h = g_ptr_array_index (blocks, i);
                guint *at = &cursor[h->length > VHDX_MiB];
                guint64 from = vhdx_bat_entry_offset (h->entry);
                Span *hole;

                while (*at < holes->len && g_array_index (holes, Span, *at).end -
                                                           g_array_index (holes, Span, *at).start <
                                                   h->length)
                        (*at)++;
                if (*at == holes->len)
                        continue;
                hole = &g_array_index (holes, Span, *at);
                if (hole->start >= from)
                        continue;
                h->new_entry = hole->start | vhdx_bat_entry_state (h->entry);
                hole->start += h->length;
                g_ptr_array_add (moves, h);
        }
        /* Where the file ends with the blocks in their new places. */
        g_array_unref (used_spans (c, end));
        *end = (*end + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB;
        return moves;
}

/* Copy @length bytes of the file from @from to @to (space no entry names). */
static gboolean
copy_block (Compact *c, const Held *h, GError **error)
{
        VhdxFile *file = c->file;
        /* Sector bitmaps are read as the journal has them. */
        VhdxIo *source = h->bitmap ? vhdx_writer_get_view (file->writer) : file->io;
        guint64 from = vhdx_bat_entry_offset (h->entry);
        guint64 to = vhdx_bat_entry_offset (h->new_entry);

        for (guint64 done = 0; done < h->length;) {
                gsize piece = (gsize) MIN ((guint64) BIG_READ, h->length - done);
                gsize n;

                if (!read_some (source, c->buf, piece, from + done, &n, error))
                        return FALSE;
                /* Past the end of the file the block reads as zeros; the
                 * space it goes to may hold stale bytes. */
                memset (c->buf + n, 0, piece - n);
                if (!vhdx_io_write (file->io, c->buf, piece, to + done, error))
                        return FALSE;
                done += piece;
        }
        /* The flush before the commit then waits for less: the disk writes
         * while the next blocks are copied. */
        vhdx_io_start_writeback (file->io, to, h->length);
        return TRUE;
}

/* Copy the blocks in batches; each batch's entries are committed once
 * its copies are durable (the flush makes them so before the log entry). */
static gboolean
move_blocks (Compact *c, GPtrArray *moves, GError **error)
{
        g_autoptr (GHashTable) pages =
                g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
        guint first = 0;

        while (first < moves->len) {
                guint end = first;
                guint64 bytes = 0;

                /* A batch: as much data as BATCH_BYTES, as many BAT sectors
                 * as one log entry holds. */
                g_hash_table_remove_all (pages);
                while (end < moves->len) {
                        const Held *h = g_ptr_array_index (moves, end);
                        guint64 page = h->index / VHDX_BAT_SECTOR_ENTRIES;

                        if (end > first && ((c->flags & VHDX_COMPACT_FLAGS_ONE_BLOCK_PER_COMMIT) ||
                                            bytes + h->length > BATCH_BYTES ||
                                            (!g_hash_table_contains (pages, &page) &&
                                             g_hash_table_size (pages) >= c->max_pages)))
                                break;
                        g_hash_table_add (pages, g_memdup2 (&page, sizeof page));
                        bytes += h->length;
                        end++;
                }
                for (guint i = first; i < end; i++) {
                        if (!copy_block (c, g_ptr_array_index (moves, i), error))
                                return FALSE;
                        c->done++;
                        report (c);
                }
                for (guint i = first; i < end; i++) {
                        Held *h = g_ptr_array_index (moves, i);

                        if (!vhdx_writer_set_bat_entry (c->file, h->index, h->new_entry, error))
                                return FALSE;
                        h->entry = h->new_entry;
                        if (!h->bitmap)
                                c->result->blocks_moved++;
                }
                if (!vhdx_file_flush (c->file, error))
                        return FALSE;
                first = end;
                if (first < moves->len &&
                    g_cancellable_set_error_if_cancelled (c->cancellable, error))
                        return FALSE;
        }
        return TRUE;
}

/* BAT sectors that one log entry of half the log holds: its header and
 * descriptors take a sector, each sector of data one more. */
static guint
pages_per_commit (VhdxFile *file)
{
        guint64 half = file->info.log_length / 2;
        guint64 pages = half > 2 * VHDX_LOG_SECTOR_SIZE
                                ? (half - 2 * VHDX_LOG_SECTOR_SIZE) /
                                          (VHDX_LOG_SECTOR_SIZE + VHDX_LOG_DESCRIPTOR_SIZE)
                                : 1;

        return (guint) CLAMP (pages, 1, 4096);
}

gboolean
vhdx_file_compact (VhdxFile *file,
                   VhdxCompactFlags flags,
                   VhdxProgressFunc progress,
                   gpointer progress_data,
                   GCancellable *cancellable,
                   VhdxCompactResult *result,
                   GError **error)
{
        const VhdxInfo *info = &file->info;
        VhdxCompactResult local_result;
        g_auto (Compact) c = { 0 };
        g_autoptr (GPtrArray) moves = NULL;
        guint64 new_end;
        gboolean drops = FALSE;
        gboolean truncated;

        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (result == NULL)
                result = &local_result;
        memset (result, 0, sizeof *result);
        result->old_file_size = result->new_file_size = info->file_size;
        if (!vhdx_writer_check (file, error))
                return FALSE;
        /* LeaveBlockAllocated makes an image fixed; a differencing one
         * ignores it (MS-VHDX 2.6.2.1). */
        if (info->disk_type == VHDX_DISK_TYPE_FIXED) {
                g_set_error_literal (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                                     _ ("A fixed image keeps every block allocated "
                                        "(LeaveBlockAllocated) and cannot be compacted; "
                                        "convert it to a dynamic one first "
                                        "(vhdx convert --type=dynamic)"));
                return FALSE;
        }
        /* Start from a state with nothing queued. */
        if (!vhdx_file_flush (file, error) ||
            !vhdx_io_get_size (file->io, &result->old_file_size, error))
                return FALSE;
        result->new_file_size = result->old_file_size;

        c.file = file;
        c.flags = flags;
        c.result = result;
        c.held = g_array_new (FALSE, FALSE, sizeof (Held));
        c.partial = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
        c.max_pages = pages_per_commit (file);
        c.buf = g_malloc (BIG_READ);
        c.progress = progress;
        c.progress_data = progress_data;
        c.cancellable = cancellable;

        /* What may fail or be cancelled without changing anything: which
         * blocks drop their space, and where the others go. */
        if (!vhdx_bat_scan (file->bat, collect_held, &c, error))
                return FALSE;
        if (!find_drops (&c, error))
                return FALSE;
        find_dropped_bitmaps (&c);
        for (guint i = 0; i < c.held->len; i++) {
                const Held *h = &g_array_index (c.held, Held, i);

                drops = drops || h->new_entry != h->entry;
        }
        moves = plan_moves (&c, &new_end);
        c.total += moves->len;
        report (&c);
        if (!drops && moves->len == 0 &&
            new_end >= (result->old_file_size + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB)
                return TRUE;

        /* Moves are not a change of what the disk reads: FileWriteGuid only. */
        if (!vhdx_writer_begin_change (file, FALSE, error))
                return FALSE;
        /* The space the writer knew free may now take a moved block. */
        vhdx_writer_forget_free_space (file);
        if (!commit_drops (&c, FALSE, error) || !commit_drops (&c, TRUE, error) ||
            !move_blocks (&c, moves, error))
                return FALSE;
        if (!vhdx_writer_shrink_file (file, MAX (new_end, VHDX_HEADER_SECTION_SIZE), &truncated,
                                      error))
                return FALSE;
        if (truncated)
                result->new_file_size = info->file_size;
        return TRUE;
}
