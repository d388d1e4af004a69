/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Opening an image (its fixed structures and pending log) and reading its virtual disk. */
#include "vhdx-reader.h"

#include <gio/gio.h>

#include "vhdx-chain.h"
#include "vhdx-check.h"
#include "vhdx-header.h"
#include "vhdx-log.h"
#include "vhdx-metadata.h"
#include "vhdx-parent.h"
#include "vhdx-private.h"
#include "vhdx-reader-private.h"
#include "vhdx-writer.h"

void
vhdx_file_free (VhdxFile *file)
{
        if (file == NULL)
                return;
        if (file->writer != NULL) {
                g_autoptr (GError) error = NULL;

                /* Whoever needed to know called vhdx_file_close(); a
                 * failure leaves the log, which the next open replays. */
                if (!vhdx_file_close (file, &error))
                        g_debug ("Closing the image: %s", error->message);
        }
        vhdx_bitmap_cache_free (file->bitmaps);
        vhdx_bat_free (file->bat);
        vhdx_writer_free (file->writer);
        vhdx_file_free (file->parent);
        g_free (file->parent_path);
        g_clear_error (&file->parent_error);
        g_free (file->parent_warning);
        g_clear_pointer (&file->locator, g_ptr_array_unref);
        vhdx_region_table_clear (&file->regions);
        g_clear_pointer (&file->open_problems, g_ptr_array_unref);
        g_free (file->info.creator);
        vhdx_io_free (file->io);
        g_free (file);
}

static gboolean
read_file_identifier (VhdxFile *file, GError **error)
{
        guint8 buf[VHDX_FILE_ID_CREATOR_OFFSET + VHDX_FILE_ID_CREATOR_SIZE];
        gsize n = (gsize) MIN ((guint64) sizeof buf, file->info.file_size);

        if (!vhdx_io_read_exact (file->io, buf, n, 0, _ ("file identifier"), error))
                return FALSE;
        if (n >= 8 && memcmp (buf, VHDX_FILE_ID_SIGNATURE, 8) != 0)
                return vhdx_file_identifier_parse (buf, n, &file->info.creator, error);
        if (file->info.file_size < VHDX_HEADER_SECTION_SIZE) {
                vhdx_set_error (error, VHDX_ERROR_TRUNCATED, _ ("header section"), 0,
                                _ ("the file has %" PRIu64
                                   " bytes, fewer than the 1 MiB header section"),
                                file->info.file_size);
                return FALSE;
        }
        return vhdx_file_identifier_parse (buf, n, &file->info.creator, error);
}

/*
 * The log must be replayed before anything but the headers and the log is
 * read.  Read-only: every later read goes through an overlay of the replayed
 * file.  Read-write: the log is replayed onto the file and LogGuid cleared.
 */
static gboolean
replay_log (VhdxFile *file, VhdxHeader *header, GError **error)
{
        VhdxInfo *info = &file->info;
        guint64 header_offset = info->header_index == 1 ? VHDX_HEADER1_OFFSET : VHDX_HEADER2_OFFSET;
        g_autoptr (VhdxLogSequence) sequence = NULL;

        sequence = vhdx_log_find_active (file->io, info->file_size, header, header_offset, error);
        if (sequence == NULL)
                return FALSE;
        info->log_entries_replayed = sequence->n_entries;
        info->log_writes_replayed = sequence->writes->len;
        info->log_head_sequence = sequence->head_sequence;

        if (file->flags & VHDX_OPEN_FLAGS_READ_WRITE) {
                /* The replay is a modification: a new FileWriteGuid first
                 * (MS-VHDX 2.2.2), then the replay, then a clean header. */
                vhdx_guid_new_random (&header->file_write_guid);
                if (!vhdx_headers_write (file->io, header, info->header_index, error))
                        return FALSE;
                file->file_write_guid_changed = TRUE;
                if (!vhdx_log_replay_to_file (file->io, sequence, error))
                        return FALSE;
                header->log_guid = vhdx_guid_zero;
                if (!vhdx_headers_write (file->io, header, info->header_index, error))
                        return FALSE;
                info->header_sequence = header->sequence;
                info->file_write_guid = header->file_write_guid;
                info->log_guid = header->log_guid;
                info->log_state = VHDX_LOG_STATE_REPLAYED;
                return vhdx_io_get_size (file->io, &info->file_size, error);
        }

        vhdx_problems_add (file->open_problems, VHDX_SEVERITY_WARNING, _ ("log"),
                           header->log_offset,
                           _ ("the log holds %u entries (%u writes, head sequence number %" PRIu64
                              ") that were not replayed onto the file; "
                              "they were replayed in memory"),
                           sequence->n_entries, sequence->writes->len, sequence->head_sequence);
        file->io = vhdx_io_new_log_overlay (file->io, g_steal_pointer (&sequence), error);
        if (file->io == NULL)
                return FALSE;
        info->log_state = VHDX_LOG_STATE_REPLAYED_IN_MEMORY;
        return vhdx_io_get_size (file->io, &info->file_size, error);
}

/* The structures that stored blocks must not overlap, besides the header section. */
static GArray *
reserved_ranges (VhdxFile *file)
{
        GArray *ranges = g_array_new (FALSE, FALSE, sizeof (VhdxFileRange));

        if (file->info.log_length > 0) {
                VhdxFileRange log = { file->info.log_offset,
                                      file->info.log_offset + file->info.log_length,
                                      _ ("the log") };
                g_array_append_val (ranges, log);
        }
        for (guint i = 0; i < file->regions.entries->len; i++) {
                const VhdxRegionEntry *r =
                        &g_array_index (file->regions.entries, VhdxRegionEntry, i);
                VhdxFileRange range = { r->file_offset, r->file_offset + r->length, NULL };

                if (vhdx_guid_equal (&r->guid, &vhdx_guid_region_bat))
                        range.name = _ ("the BAT");
                else if (vhdx_guid_equal (&r->guid, &vhdx_guid_region_metadata))
                        range.name = _ ("the metadata region");
                else
                        range.name = _ ("a region");
                g_array_append_val (ranges, range);
        }
        return ranges;
}

static gboolean
open_structures (VhdxFile *file, GError **error)
{
        VhdxInfo *info = &file->info;
        VhdxHeader header;
        VhdxMetadata metadata;
        g_autoptr (GArray) reserved = NULL;
        guint64 bat_bytes;
        VhdxIo *metadata_io;

        if (!vhdx_io_get_size (file->io, &info->file_size, error))
                return FALSE;
        if (!read_file_identifier (file, error))
                return FALSE;

        if (!vhdx_headers_read (file->io, info->file_size, &header, &info->header_index,
                                file->open_problems, error))
                return FALSE;
        info->header_sequence = header.sequence;
        info->file_write_guid = header.file_write_guid;
        info->data_write_guid = header.data_write_guid;
        info->log_guid = header.log_guid;
        info->log_offset = header.log_offset;
        info->log_length = header.log_length;
        info->log_state = VHDX_LOG_STATE_CLEAN;
        if (!vhdx_guid_is_zero (&header.log_guid) && !replay_log (file, &header, error))
                return FALSE;
        if (info->log_state != VHDX_LOG_STATE_CLEAN) {
                /* A log may write anywhere, the file identifier included.  What
                 * is opened is the file as replayed: check the identifier again,
                 * or a read-only open would accept an image that, replayed onto
                 * the file, is no VHDX file any more. */
                g_clear_pointer (&info->creator, g_free);
                if (!read_file_identifier (file, error))
                        return FALSE;
        }

        if (!vhdx_region_tables_read (file->io, info->file_size, &file->regions,
                                      &info->region_table_index, file->open_problems, error))
                return FALSE;
        info->bat_offset = file->regions.bat.file_offset;
        info->bat_length = file->regions.bat.length;
        info->metadata_offset = file->regions.metadata.file_offset;
        info->metadata_length = file->regions.metadata.length;

        if (!vhdx_metadata_read (file->io, info->metadata_offset, info->metadata_length, &metadata,
                                 error))
                return FALSE;
        info->block_size = metadata.block_size;
        info->leave_block_allocated = metadata.leave_block_allocated;
        info->has_parent = metadata.has_parent;
        info->virtual_size = metadata.virtual_size;
        info->virtual_disk_id = metadata.virtual_disk_id;
        info->logical_sector_size = metadata.logical_sector_size;
        info->physical_sector_size = metadata.physical_sector_size;
        if (metadata.has_parent)
                info->disk_type = VHDX_DISK_TYPE_DIFFERENCING;
        else if (metadata.leave_block_allocated)
                info->disk_type = VHDX_DISK_TYPE_FIXED;
        else
                info->disk_type = VHDX_DISK_TYPE_DYNAMIC;

        if (metadata.has_parent) {
                info->parent_locator_offset = metadata.parent_locator_offset;
                info->parent_locator_length = metadata.parent_locator_length;
                file->locator = vhdx_parent_locator_read (file->io, metadata.parent_locator_offset,
                                                          metadata.parent_locator_length, error);
                if (file->locator == NULL)
                        return FALSE;
        }

        vhdx_bat_geometry_init (&info->geometry, info->virtual_size, info->block_size,
                                info->logical_sector_size,
                                info->disk_type == VHDX_DISK_TYPE_DIFFERENCING);
        bat_bytes = vhdx_bat_geometry_table_bytes (&info->geometry);
        if (bat_bytes > info->bat_length) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("BAT region"), info->bat_offset,
                                _ ("length %u is too small for %" PRIu64 " entries (%" PRIu64
                                   " bytes)"),
                                info->bat_length, info->geometry.bat_entries, bat_bytes);
                return FALSE;
        }
        file->header = header;
        reserved = reserved_ranges (file);
        /* After the replay: a read-only open reads through its overlay. */
        metadata_io = file->io;
        if (file->flags & VHDX_OPEN_FLAGS_READ_WRITE) {
                guint64 end = 0;

                for (guint i = 0; i < reserved->len; i++)
                        end = MAX (end, g_array_index (reserved, VhdxFileRange, i).end);
                /* The BAT and the bitmaps are read through the journal. */
                metadata_io = vhdx_writer_attach (file, end, error);
                if (metadata_io == NULL)
                        return FALSE;
        }
        file->bat = vhdx_bat_new (metadata_io, info->bat_offset, &info->geometry, info->disk_type,
                                  info->file_size, reserved);
        file->bitmaps = vhdx_bitmap_cache_new (metadata_io, file->bat);
        return TRUE;
}

VhdxFile *
vhdx_file_open (VhdxIo *io, VhdxOpenFlags flags, GError **error)
{
        return vhdx_file_open_full (io, flags, NULL, error);
}

VhdxFile *
vhdx_file_open_member (VhdxIo *io,
                       VhdxOpenFlags flags,
                       const VhdxOpenOptions *options,
                       guint depth,
                       GArray *identities,
                       GError **error)
{
        g_autoptr (VhdxFile) file = NULL;

        file = g_new0 (VhdxFile, 1);
        file->io = io;
        file->flags = flags;
        file->open_problems = vhdx_problems_new ();

        if ((flags & VHDX_OPEN_FLAGS_READ_WRITE) &&
            (!vhdx_io_is_writable (io) || (flags & VHDX_OPEN_FLAGS_FORCE_SHARE))) {
                g_set_error_literal (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                                     (flags & VHDX_OPEN_FLAGS_FORCE_SHARE)
                                             ? _ ("An image opened with force-share cannot be "
                                                  "written")
                                             : _ ("This image cannot be opened for writing"));
                return NULL;
        }
        /* Force-share takes no lock: it only tests whether someone writes. */
        if (!vhdx_chain_enter (identities, io, error) ||
            !vhdx_io_lock (io,
                           (flags & VHDX_OPEN_FLAGS_FORCE_SHARE)  ? VHDX_LOCK_TEST
                           : (flags & VHDX_OPEN_FLAGS_READ_WRITE) ? VHDX_LOCK_WRITER
                                                                  : VHDX_LOCK_READER,
                           &file->info.written_elsewhere, error))
                return NULL;
        if (!open_structures (file, error))
                return NULL;
        /* A write must never land in space that another block holds. */
        if ((flags & VHDX_OPEN_FLAGS_READ_WRITE) && !vhdx_file_check_exclusive_space (file, error))
                return NULL;
        if (file->info.disk_type == VHDX_DISK_TYPE_DIFFERENCING &&
            !vhdx_chain_open_parent (file, options, depth, identities, error))
                return NULL;
        return g_steal_pointer (&file);
}

VhdxFile *
vhdx_file_open_full (VhdxIo *io,
                     VhdxOpenFlags flags,
                     const VhdxOpenOptions *options,
                     GError **error)
{
        g_autoptr (GArray) identities = NULL;

        g_return_val_if_fail (io != NULL, NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        identities = vhdx_chain_identities_new ();
        return vhdx_file_open_member (io, flags, options, 0, identities, error);
}

const VhdxInfo *
vhdx_file_get_info (VhdxFile *file)
{
        return &file->info;
}

GPtrArray *
vhdx_file_get_open_problems (VhdxFile *file)
{
        return file->open_problems;
}

/*
 * Read stored payload bytes.  Payload reads are the hot path, and gettext
 * takes a lock in the C library: the name of the structure is translated
 * only when a short read has to be reported (by reading again through
 * vhdx_io_read_exact(), which names it).
 */
static gboolean
read_payload (VhdxFile *file, void *buf, gsize count, guint64 offset, GError **error)
{
        gsize n_read = 0;

        if (!file->io->vtable->pread (file->io, buf, count, offset, &n_read, error))
                return FALSE;
        if (G_LIKELY (n_read == count))
                return TRUE;
        return vhdx_io_read_exact (file->io, buf, count, offset, _ ("payload block"), error);
}

gboolean
vhdx_file_check_range (VhdxFile *file, guint64 offset, guint64 length, GError **error)
{
        guint64 end;

        if (!vhdx_add_u64 (offset, length, &end) || end > file->info.virtual_size) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE,
                             _ ("The range %" PRIu64 "+%" PRIu64
                                " lies outside the virtual disk (%" PRIu64 " bytes)"),
                             offset, length, file->info.virtual_size);
                return FALSE;
        }
        return TRUE;
}

/* Read a range that this file does not store: from the parent, zeros where
 * the parent is smaller or there is none. */
static gboolean
read_from_parent (VhdxFile *file, guint64 offset, guint8 *out, gsize count, GError **error)
{
        gsize from_parent = 0;

        if (file->parent == NULL && file->info.disk_type == VHDX_DISK_TYPE_DIFFERENCING) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND,
                             _ ("The %zu bytes at offset %" PRIu64
                                " of the virtual disk are the parent's, which is missing: %s"),
                             count, offset,
                             file->parent_error != NULL ? file->parent_error->message : "");
                return FALSE;
        }
        if (file->parent != NULL && offset < file->parent->info.virtual_size) {
                from_parent =
                        (gsize) MIN ((guint64) count, file->parent->info.virtual_size - offset);
                if (!vhdx_file_read (file->parent, offset, out, from_parent, error))
                        return FALSE;
        }
        memset (out + from_parent, 0, count - from_parent);
        return TRUE;
}

static gboolean
read_partial_block (VhdxFile *file,
                    guint64 block,
                    guint64 block_offset,
                    guint64 in_block,
                    guint8 *out,
                    gsize count,
                    GError **error)
{
        g_autoptr (GBytes) bitmap = vhdx_bitmap_cache_get (file->bitmaps, block, error);
        const guint8 *bits;
        guint64 pos = in_block, end = in_block + count;
        guint64 block_start = block * file->info.block_size;

        if (bitmap == NULL)
                return FALSE;
        bits = g_bytes_get_data (bitmap, NULL);
        while (pos < end) {
                gboolean present;
                guint64 run_end = vhdx_bitmap_run_end (bits, file->info.logical_sector_size, pos,
                                                       end, &present);
                guint8 *dest = out + (pos - in_block);
                gsize n = (gsize) (run_end - pos);

                if (present ? !read_payload (file, dest, n, block_offset + pos, error)
                            : !read_from_parent (file, block_start + pos, dest, n, error))
                        return FALSE;
                pos = run_end;
        }
        return TRUE;
}

gboolean
vhdx_file_read (VhdxFile *file, guint64 offset, void *buf, gsize count, GError **error)
{
        guint8 *out = buf;
        /* A run of stored bytes contiguous in the file, read with one pread. */
        guint8 *run_buf = NULL;
        guint64 run_file_offset = 0;
        gsize run_length = 0;

        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (buf != NULL || count == 0, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (!vhdx_file_check_range (file, offset, count, error))
                return FALSE;

        while (count > 0) {
                guint64 block = offset / file->info.block_size;
                guint64 in_block = offset % file->info.block_size;
                gsize n = (gsize) MIN ((guint64) count, file->info.block_size - in_block);
                guint state;
                guint64 block_offset;
                gboolean ok = TRUE;

                if (!vhdx_bat_lookup_block (file->bat, block, &state, &block_offset, error))
                        return FALSE;
                if (run_length > 0 && state == VHDX_PAYLOAD_FULLY_PRESENT &&
                    block_offset + in_block == run_file_offset + run_length &&
                    run_buf + run_length == out) {
                        run_length += n;
                } else {
                        if (run_length > 0 &&
                            !read_payload (file, run_buf, run_length, run_file_offset, error))
                                return FALSE;
                        run_length = 0;
                        switch (state) {
                        case VHDX_PAYLOAD_FULLY_PRESENT:
                                run_buf = out;
                                run_file_offset = block_offset + in_block;
                                run_length = n;
                                break;
                        case VHDX_PAYLOAD_PARTIALLY_PRESENT:
                                ok = read_partial_block (file, block, block_offset, in_block, out,
                                                         n, error);
                                break;
                        case VHDX_PAYLOAD_NOT_PRESENT:
                                /* Absent from a differencing image: the parent has it. */
                                ok = read_from_parent (file, offset, out, n, error);
                                break;
                        default:
                                memset (out, 0, n);
                                break;
                        }
                        if (!ok)
                                return FALSE;
                }
                out += n;
                offset += n;
                count -= n;
        }
        if (run_length > 0 && !read_payload (file, run_buf, run_length, run_file_offset, error))
                return FALSE;
        return TRUE;
}
