/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Finding the active log sequence and replaying it (see vhdx-log.h). */
#include "vhdx-log.h"

#include "vhdx-crc32c.h"
#include "vhdx-private.h"

#include <sys/mman.h>

/* One entry of the ring that passed every check. */
typedef struct {
        guint32 position;
        guint32 length;
        guint32 tail;
        guint64 sequence;
        guint64 flushed_file_offset;
        guint64 last_file_offset;
        guint32 n_data; /* its data descriptors */
} Entry;

#define HUGE_PAGE_SIZE (2 * VHDX_MiB)

/*
 * A buffer of @size bytes for the log or its data, freed with
 * g_aligned_free().  Each 4 KiB page of new memory costs a page fault when
 * first written, and on virtual machines a fault costs tens of
 * microseconds: for the 8192 pages of a full log that is most of an open.
 * A buffer of 2 MiB or more is therefore aligned for transparent huge
 * pages and asks for them, where the kernel offers them (its
 * "transparent_hugepage" setting is "always" or "madvise"); elsewhere the
 * advice does nothing.
 */
static guint8 *
log_buffer_new (gsize size)
{
        guint8 *buffer;

        if (size < HUGE_PAGE_SIZE)
                return g_aligned_alloc (1, MAX (size, 1), VHDX_LOG_SECTOR_SIZE);
        buffer = g_aligned_alloc (1, size, HUGE_PAGE_SIZE);
#if defined(MADV_HUGEPAGE)
        (void) madvise (buffer, size, MADV_HUGEPAGE);
#endif
        return buffer;
}

void
vhdx_log_sequence_free (VhdxLogSequence *sequence)
{
        if (sequence == NULL)
                return;
        g_clear_pointer (&sequence->writes, g_array_unref);
        g_aligned_free (sequence->data);
        g_free (sequence);
}

/* The bytes of an entry, contiguous even when it wraps past the end of the ring. */
static const guint8 *
entry_bytes (const guint8 *log,
             guint32 log_length,
             guint32 position,
             guint32 length,
             guint8 **scratch)
{
        guint32 first;

        if ((guint64) position + length <= log_length)
                return log + position;
        first = log_length - position;
        g_free (*scratch);
        *scratch = g_malloc (length);
        memcpy (*scratch, log + position, first);
        memcpy (*scratch + first, log, length - first);
        return *scratch;
}

static guint32
descriptor_sectors (guint32 count)
{
        guint64 bytes = VHDX_LOG_ENTRY_HEADER_SIZE + (guint64) count * VHDX_LOG_DESCRIPTOR_SIZE;

        return (guint32) ((bytes + VHDX_LOG_SECTOR_SIZE - 1) / VHDX_LOG_SECTOR_SIZE);
}

/*
 * Check the entry at @position against every rule of the specification:
 * signature, lengths, checksum, a non-zero sequence number, the LogGuid, and
 * the sequence number in each descriptor and data sector.  Invalid entries
 * are an ordinary part of the ring, so this reports no error.  When @writes is
 * not NULL, the entry was checked before (its checksum is not computed
 * again) and its updates are appended to @writes.  The sector each data
 * descriptor writes is put at *@data, which moves past it, or, when *@data
 * is NULL, made in place: the descriptor's leading and trailing bytes are
 * written over the data sector's own signature and sequence number in
 * @ring, the log in memory (its mutable twin of @log).
 */
static gboolean
parse_entry (const guint8 *log,
             guint32 log_length,
             guint32 position,
             const VhdxGuid *log_guid,
             Entry *out,
             GArray *writes,
             guint8 *ring,
             guint8 **data,
             gboolean *stale)
{
        g_autofree guint8 *scratch = NULL;
        const guint8 *h = log + position;
        const guint8 *e;
        guint32 length, tail, count, n_desc_sectors, n_data = 0;
        guint64 sequence;
        VhdxGuid guid;

        *stale = FALSE;
        if (memcmp (h + VHDX_LOG_OFF_SIGNATURE, VHDX_LOG_ENTRY_SIGNATURE, 4) != 0)
                return FALSE;
        length = vhdx_get_le32 (h + VHDX_LOG_OFF_ENTRY_LENGTH);
        tail = vhdx_get_le32 (h + VHDX_LOG_OFF_TAIL);
        sequence = vhdx_get_le64 (h + VHDX_LOG_OFF_SEQUENCE);
        count = vhdx_get_le32 (h + VHDX_LOG_OFF_DESCRIPTOR_COUNT);
        guid = vhdx_get_guid (h + VHDX_LOG_OFF_LOG_GUID);
        if (length == 0 || length % VHDX_LOG_SECTOR_SIZE != 0 || length > log_length ||
            tail % VHDX_LOG_SECTOR_SIZE != 0 || tail >= log_length || sequence == 0)
                return FALSE;
        n_desc_sectors = descriptor_sectors (count);
        if ((guint64) n_desc_sectors * VHDX_LOG_SECTOR_SIZE > length)
                return FALSE;

        e = entry_bytes (log, log_length, position, length, &scratch);
        if (writes == NULL &&
            vhdx_get_le32 (e + VHDX_LOG_OFF_CHECKSUM) !=
                    vhdx_crc32c_with_zero_field (e, length, VHDX_LOG_OFF_CHECKSUM))
                return FALSE;
        if (!vhdx_guid_equal (&guid, log_guid)) {
                /* Left behind by an earlier session of the file. */
                *stale = TRUE;
                return FALSE;
        }

        for (guint32 i = 0; i < count; i++) {
                const guint8 *d =
                        e + VHDX_LOG_ENTRY_HEADER_SIZE + (gsize) i * VHDX_LOG_DESCRIPTOR_SIZE;
                guint64 file_offset = vhdx_get_le64 (d + VHDX_LOG_DESC_OFF_FILE_OFFSET);

                if (vhdx_get_le64 (d + VHDX_LOG_DESC_OFF_SEQUENCE) != sequence ||
                    file_offset % VHDX_LOG_SECTOR_SIZE != 0)
                        return FALSE;
                if (memcmp (d, VHDX_LOG_ZERO_SIGNATURE, 4) == 0) {
                        guint64 zero_length = vhdx_get_le64 (d + VHDX_LOG_DESC_OFF_ZERO_LENGTH);
                        guint64 end;
                        if (zero_length % VHDX_LOG_SECTOR_SIZE != 0 ||
                            !vhdx_add_u64 (file_offset, zero_length, &end) ||
                            end > VHDX_LOG_MAX_FILE_OFFSET)
                                return FALSE;
                        if (writes != NULL) {
                                VhdxLogWrite w = { file_offset, zero_length, NULL };
                                g_array_append_val (writes, w);
                        }
                } else if (memcmp (d, VHDX_LOG_DATA_DESCRIPTOR_SIGNATURE, 4) == 0) {
                        guint64 data_offset =
                                (guint64) (n_desc_sectors + n_data) * VHDX_LOG_SECTOR_SIZE;
                        const guint8 *s;
                        /* Compared this way round so that a file offset near
                         * 2^64 cannot wrap past the limit. */
                        if (data_offset + VHDX_LOG_SECTOR_SIZE > length ||
                            file_offset > VHDX_LOG_MAX_FILE_OFFSET - VHDX_LOG_SECTOR_SIZE)
                                return FALSE;
                        s = e + data_offset;
                        if (memcmp (s, VHDX_LOG_DATA_SIGNATURE, 4) != 0 ||
                            vhdx_get_le32 (s + VHDX_LOG_DATA_OFF_SEQUENCE_HIGH) !=
                                    (guint32) (sequence >> 32) ||
                            vhdx_get_le32 (s + VHDX_LOG_DATA_OFF_SEQUENCE_LOW) !=
                                    (guint32) sequence)
                                return FALSE;
                        n_data++;
                        if (writes != NULL) {
                                guint8 *sector = *data;
                                VhdxLogWrite w = { file_offset, VHDX_LOG_SECTOR_SIZE, NULL };
                                /* The first 8 and last 4 bytes of the sector travel in
                                 * the descriptor; the data sector holds the rest. */
                                if (sector != NULL) {
                                        memcpy (sector + VHDX_LOG_LEADING_BYTES,
                                                s + VHDX_LOG_DATA_OFF_DATA,
                                                VHDX_LOG_SECTOR_SIZE - VHDX_LOG_LEADING_BYTES -
                                                        VHDX_LOG_TRAILING_BYTES);
                                        *data = sector + VHDX_LOG_SECTOR_SIZE;
                                } else {
                                        /* Contiguous in the ring even when the entry
                                         * wraps: the ring is made of whole sectors. */
                                        sector = ring +
                                                 ((guint64) position + data_offset) % log_length;
                                }
                                memcpy (sector, d + VHDX_LOG_DESC_OFF_LEADING_BYTES,
                                        VHDX_LOG_LEADING_BYTES);
                                memcpy (sector + VHDX_LOG_SECTOR_SIZE - VHDX_LOG_TRAILING_BYTES,
                                        d + VHDX_LOG_DESC_OFF_TRAILING_BYTES,
                                        VHDX_LOG_TRAILING_BYTES);
                                w.data = sector;
                                g_array_append_val (writes, w);
                        }
                } else {
                        return FALSE;
                }
        }

        out->position = position;
        out->length = length;
        out->tail = tail;
        out->sequence = sequence;
        out->flushed_file_offset = vhdx_get_le64 (e + VHDX_LOG_OFF_FLUSHED_FILE_OFFSET);
        out->last_file_offset = vhdx_get_le64 (e + VHDX_LOG_OFF_LAST_FILE_OFFSET);
        out->n_data = n_data;
        return TRUE;
}

/* What parse_entry() found at one 4 KiB position of the ring.  The scan
 * builds a chain from every position, and without this would checksum the
 * entries of a long chain once for each of its positions: quadratic in the
 * length of the log. */
typedef enum {
        PARSED_UNKNOWN,
        PARSED_INVALID,
        PARSED_STALE,
        PARSED_VALID,
} ParsedState;

typedef struct {
        ParsedState state;
        Entry entry;
} Parsed;

static gboolean
parse_entry_once (const guint8 *log,
                  guint32 log_length,
                  guint32 position,
                  const VhdxGuid *log_guid,
                  Parsed *parsed,
                  Entry *out,
                  gboolean *stale)
{
        Parsed *p = &parsed[position / VHDX_LOG_SECTOR_SIZE];

        if (p->state == PARSED_UNKNOWN) {
                gboolean is_stale;
                if (parse_entry (log, log_length, position, log_guid, &p->entry, NULL, NULL, NULL,
                                 &is_stale))
                        p->state = PARSED_VALID;
                else
                        p->state = is_stale ? PARSED_STALE : PARSED_INVALID;
        }
        *stale = p->state == PARSED_STALE;
        *out = p->entry;
        return p->state == PARSED_VALID;
}

/* The chain of valid entries with consecutive sequence numbers starting at
 * @start, never longer than the ring itself. */
static GArray *
read_chain (const guint8 *log,
            guint32 log_length,
            guint32 start,
            const VhdxGuid *log_guid,
            Parsed *parsed,
            guint *n_stale)
{
        GArray *chain = g_array_new (FALSE, FALSE, sizeof (Entry));
        guint64 covered = 0;
        guint32 position = start;

        while (covered < log_length) {
                Entry entry;
                gboolean stale;

                if (!parse_entry_once (log, log_length, position, log_guid, parsed, &entry,
                                       &stale)) {
                        if (stale && chain->len == 0)
                                (*n_stale)++;
                        break;
                }
                if (chain->len > 0 &&
                    entry.sequence != g_array_index (chain, Entry, chain->len - 1).sequence + 1)
                        break;
                if (covered + entry.length > log_length)
                        break;
                g_array_append_val (chain, entry);
                covered += entry.length;
                position = (guint32) (((guint64) position + entry.length) % log_length);
        }
        return chain;
}

/* Index in @chain of the entry the head points to as its tail, or -1. */
static int
chain_tail_index (GArray *chain)
{
        const Entry *head = &g_array_index (chain, Entry, chain->len - 1);

        for (guint i = 0; i < chain->len; i++) {
                if (g_array_index (chain, Entry, i).position == head->tail)
                        return (int) i;
        }
        return -1;
}

/* The scan of vhdx_log_find_active() over *@ring, the log that @header
 * describes, read into memory.  The sequence found keeps the ring (*@ring is
 * then NULL) when its data fills a good part of it. */
static VhdxLogSequence *
find_active_in (guint8 **ring,
                guint64 file_size,
                const VhdxHeader *header,
                guint64 header_offset,
                GError **error)
{
        g_autofree Parsed *parsed = NULL;
        g_autoptr (GArray) best = NULL;
        g_autoptr (VhdxLogSequence) sequence = NULL;
        const guint32 log_length = header->log_length;
        const guint8 *log = *ring;
        guint8 *in_place;
        guint32 current_tail = 0, old_tail = 0;
        int best_tail = -1;
        guint n_stale = 0;
        guint64 claimed = 0, n_data = 0;
        const Entry *head;
        guint8 *data;

        /* Every position is checksummed at most once (see parse_entry_once), over
         * the length its entry header claims: bound the sum before starting. */
        for (guint32 pos = 0; pos < log_length; pos += VHDX_LOG_SECTOR_SIZE) {
                guint32 length = vhdx_get_le32 (log + pos + VHDX_LOG_OFF_ENTRY_LENGTH);
                if (memcmp (log + pos, VHDX_LOG_ENTRY_SIGNATURE, 4) == 0 && length <= log_length)
                        claimed += length;
        }
        if (claimed > VHDX_LOG_MAX_SCAN_BYTES) {
                vhdx_set_error (error, VHDX_ERROR_LOG, _ ("log"), header->log_offset,
                                _ ("its entries overlap each other: together they claim %" PRIu64
                                   " bytes of a %u-byte log"),
                                claimed, log_length);
                return NULL;
        }
        parsed = g_new0 (Parsed, log_length / VHDX_LOG_SECTOR_SIZE);

        /* The scan of the specification (MS-VHDX 2.3.3): try each 4 KiB offset
         * as the tail of a sequence, skip over the sequences found, and keep the
         * valid one whose head has the highest sequence number. */
        for (guint64 steps = 0; steps <= log_length / VHDX_LOG_SECTOR_SIZE; steps++) {
                g_autoptr (GArray) chain = read_chain (log, log_length, current_tail,
                                                       &header->log_guid, parsed, &n_stale);
                int tail_index = chain->len > 0 ? chain_tail_index (chain) : -1;

                if (tail_index >= 0 &&
                    (best == NULL || g_array_index (chain, Entry, chain->len - 1).sequence >
                                             g_array_index (best, Entry, best->len - 1).sequence)) {
                        g_clear_pointer (&best, g_array_unref);
                        best = g_array_ref (chain);
                        best_tail = tail_index;
                }
                if (tail_index < 0) {
                        current_tail += VHDX_LOG_SECTOR_SIZE;
                        if (current_tail == log_length)
                                current_tail = 0;
                } else {
                        const Entry *last = &g_array_index (chain, Entry, chain->len - 1);
                        current_tail =
                                (guint32) (((guint64) last->position + last->length) % log_length);
                }
                if (current_tail <= old_tail && steps > 0)
                        break;
                old_tail = current_tail;
        }

        if (best == NULL) {
                vhdx_set_error (error, VHDX_ERROR_LOG, _ ("log"), header->log_offset,
                                _ ("LogGuid is set but no valid log sequence was found "
                                   "(%u stale entries of another LogGuid)"),
                                n_stale);
                return NULL;
        }
        head = &g_array_index (best, Entry, best->len - 1);
        if (file_size < head->flushed_file_offset) {
                vhdx_set_error (error, VHDX_ERROR_TRUNCATED, _ ("log entry"),
                                header->log_offset + head->position,
                                _ ("the file has %" PRIu64 " bytes but the log says "
                                   "it had at least %" PRIu64),
                                file_size, head->flushed_file_offset);
                return NULL;
        }

        /* The sequence's updates, from the entries the scan checked.  Their
         * data sectors are made in place in the ring, which the sequence then
         * keeps, or, when they fill less than a quarter of it, copied into a
         * buffer of their own and the ring is freed. */
        for (guint i = (guint) best_tail; i < best->len; i++)
                n_data += g_array_index (best, Entry, i).n_data;
        sequence = g_new0 (VhdxLogSequence, 1);
        sequence->writes = g_array_new (FALSE, FALSE, sizeof (VhdxLogWrite));
        if (n_data * VHDX_LOG_SECTOR_SIZE < log_length / 4) {
                sequence->data = log_buffer_new ((gsize) (n_data * VHDX_LOG_SECTOR_SIZE));
                data = sequence->data;
                in_place = NULL;
        } else {
                sequence->data = g_steal_pointer (ring);
                data = NULL;
                in_place = sequence->data;
        }
        for (guint i = (guint) best_tail; i < best->len; i++) {
                const Entry *entry = &g_array_index (best, Entry, i);
                Entry again;
                gboolean stale;
                if (!parse_entry (log, log_length, entry->position, &header->log_guid, &again,
                                  sequence->writes, in_place, &data, &stale))
                        g_assert_not_reached ();
        }
        sequence->n_entries = best->len - (guint) best_tail;
        sequence->tail = head->tail;
        sequence->head = head->position;
        sequence->head_sequence = head->sequence;
        sequence->flushed_file_offset = head->flushed_file_offset;
        sequence->last_file_offset = head->last_file_offset;
        sequence->n_stale_entries = n_stale;
        return g_steal_pointer (&sequence);
}

VhdxLogSequence *
vhdx_log_find_active (VhdxIo *io,
                      guint64 file_size,
                      const VhdxHeader *header,
                      guint64 header_offset,
                      GError **error)
{
        VhdxLogSequence *sequence = NULL;
        guint8 *log;

        if (header->log_length > VHDX_LOG_MAX_LENGTH) {
                vhdx_set_error (error, VHDX_ERROR_NOT_SUPPORTED, _ ("log"), header->log_offset,
                                _ ("length %u exceeds the supported %u bytes"), header->log_length,
                                (guint) VHDX_LOG_MAX_LENGTH);
                return NULL;
        }
        if (header->log_length == 0) {
                vhdx_set_error (error, VHDX_ERROR_LOG, _ ("log"), header_offset,
                                _ ("LogGuid is set but the log is empty"));
                return NULL;
        }
        log = log_buffer_new (header->log_length);
        if (vhdx_io_read_exact (io, log, header->log_length, header->log_offset, _ ("log"), error))
                sequence = find_active_in (&log, file_size, header, header_offset, error);
        g_aligned_free (log);
        return sequence;
}

guint64
vhdx_log_sequence_replayed_size (const VhdxLogSequence *sequence, guint64 file_size)
{
        guint64 size = MAX (file_size, sequence->last_file_offset);

        for (guint i = 0; i < sequence->writes->len; i++) {
                const VhdxLogWrite *w = &g_array_index (sequence->writes, VhdxLogWrite, i);
                size = MAX (size, w->file_offset + w->length);
        }
        return size;
}

/* The overlay: reads come from the base file, then every logged write that
 * touches the range is applied over them in log order. */
typedef struct {
        VhdxIo parent;
        VhdxIo *base;
        VhdxLogSequence *sequence;
        guint64 base_size;
        guint64 size;
        guint64 writes_start; /* the range any logged write touches */
        guint64 writes_end;
} VhdxIoOverlay;

static gboolean
overlay_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        VhdxIoOverlay *self = (VhdxIoOverlay *) io;
        guint8 *out = buf;
        guint64 end;
        gsize from_base = 0;

        if (offset >= self->size) {
                *n_read = 0;
                return TRUE;
        }
        count = (gsize) MIN ((guint64) count, self->size - offset);
        end = offset + count;
        if (offset < self->base_size) {
                gsize want = (gsize) MIN ((guint64) count, self->base_size - offset);
                if (!self->base->vtable->pread (self->base, out, want, offset, &from_base, error))
                        return FALSE;
                /* The base ended early (it shrank, or its backend failed to read
                 * everything): pass the short read on.  Filling the rest with
                 * zeros would present bytes that were never read as data. */
                if (from_base < want) {
                        count = from_base;
                        end = offset + count;
                }
        }
        /* Past the end of the base file the replayed file holds zeros. */
        memset (out + from_base, 0, count - from_base);

        if (end > self->writes_start && offset < self->writes_end) {
                for (guint i = 0; i < self->sequence->writes->len; i++) {
                        const VhdxLogWrite *w =
                                &g_array_index (self->sequence->writes, VhdxLogWrite, i);
                        guint64 lo = MAX (offset, w->file_offset);
                        guint64 hi = MIN (end, w->file_offset + w->length);
                        if (lo >= hi)
                                continue;
                        if (w->data != NULL)
                                memcpy (out + (lo - offset), w->data + (lo - w->file_offset),
                                        hi - lo);
                        else
                                memset (out + (lo - offset), 0, hi - lo);
                }
        }
        *n_read = count;
        return TRUE;
}

static gboolean
overlay_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        *size = ((VhdxIoOverlay *) io)->size;
        return TRUE;
}

static void
overlay_free (VhdxIo *io)
{
        VhdxIoOverlay *self = (VhdxIoOverlay *) io;

        vhdx_io_free (self->base);
        vhdx_log_sequence_free (self->sequence);
        g_free (self);
}

/* The base file's zeros, up to the first logged write. */
static guint64
overlay_next_data (VhdxIo *io, guint64 offset)
{
        VhdxIoOverlay *self = (VhdxIoOverlay *) io;
        guint64 data;

        if (offset >= self->writes_start && offset < self->writes_end)
                return offset;
        data = vhdx_io_next_data (self->base, offset);
        if (offset < self->writes_start)
                data = MIN (data, self->writes_start);
        return data;
}

static const VhdxIoVTable overlay_vtable = {
        .pread = overlay_pread,
        .get_size = overlay_get_size,
        .free = overlay_free,
        .next_data = overlay_next_data,
};

VhdxIo *
vhdx_io_new_log_overlay (VhdxIo *base, VhdxLogSequence *sequence, GError **error)
{
        VhdxIoOverlay *self;
        guint64 base_size;

        if (!vhdx_io_get_size (base, &base_size, error)) {
                vhdx_io_free (base);
                vhdx_log_sequence_free (sequence);
                return NULL;
        }
        self = g_new0 (VhdxIoOverlay, 1);
        self->parent.vtable = &overlay_vtable;
        self->base = base;
        self->sequence = sequence;
        self->base_size = base_size;
        self->size = vhdx_log_sequence_replayed_size (sequence, base_size);
        self->writes_start = G_MAXUINT64;
        for (guint i = 0; i < sequence->writes->len; i++) {
                const VhdxLogWrite *w = &g_array_index (sequence->writes, VhdxLogWrite, i);
                self->writes_start = MIN (self->writes_start, w->file_offset);
                self->writes_end = MAX (self->writes_end, w->file_offset + w->length);
        }
        return &self->parent;
}

gboolean
vhdx_log_replay_to_file (VhdxIo *io, const VhdxLogSequence *sequence, GError **error)
{
        g_autofree guint8 *zeros = g_malloc0 (VHDX_MiB);
        guint64 size;

        for (guint i = 0; i < sequence->writes->len; i++) {
                const VhdxLogWrite *w = &g_array_index (sequence->writes, VhdxLogWrite, i);

                if (w->data != NULL) {
                        if (!vhdx_io_write (io, w->data, w->length, w->file_offset, error))
                                return FALSE;
                        continue;
                }
                for (guint64 done = 0; done < w->length;) {
                        gsize n = (gsize) MIN (w->length - done, VHDX_MiB);
                        if (!vhdx_io_write (io, zeros, n, w->file_offset + done, error))
                                return FALSE;
                        done += n;
                }
        }
        if (!vhdx_io_flush (io, error))
                return FALSE;
        if (!vhdx_io_get_size (io, &size, error))
                return FALSE;
        if (size < sequence->last_file_offset) {
                /* Extend the file: everything past its old end reads as zeros. */
                if (!vhdx_io_write (io, zeros, 1, sequence->last_file_offset - 1, error) ||
                    !vhdx_io_flush (io, error))
                        return FALSE;
        }
        return TRUE;
}
