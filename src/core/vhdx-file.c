/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Opening, holding and closing an image with its log, lock, writer and parents (see vhdx-file.h).
 */
#include "vhdx-file.h"

#include <gio/gio.h>

#include "vhdx-chain.h"
#include "vhdx-check.h"
#include "vhdx-file-private.h"
#include "vhdx-header.h"
#include "vhdx-log.h"
#include "vhdx-metadata.h"
#include "vhdx-parent.h"
#include "vhdx-private.h"
#include "vhdx-writer.h"

static VhdxFile *open_member (VhdxIo *io,
                              VhdxOpenFlags flags,
                              const VhdxOpenOptions *options,
                              guint depth,
                              GArray *identities,
                              GError **error);

void
vhdx_file_free (VhdxFile *file)
{
        if (file == NULL)
                return;
        if (file->writer != NULL) {
                g_autoptr (GError) error = NULL;

                /* Whoever needed to know called vhdx_file_close(); a
                 * failure leaves the log, which the next open replays. */
                if (!vhdx_writer_close (file->writer, &error))
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

/* The BAT (loaded lazily) and the bitmap cache of the layout in file->info. */
static void
load_bat (VhdxFile *file, VhdxIo *metadata_io, GArray *reserved)
{
        const VhdxInfo *info = &file->info;

        vhdx_bitmap_cache_free (file->bitmaps);
        vhdx_bat_free (file->bat);
        file->bat = vhdx_bat_new (metadata_io, info->bat_offset, &info->geometry, info->disk_type,
                                  info->file_size, reserved);
        file->bitmaps = vhdx_bitmap_cache_new (metadata_io, file->bat);
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
        file->metadata = metadata;
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
        load_bat (file, metadata_io, reserved);
        return TRUE;
}

/* Make @parent, opened from @path, the parent of @file. */
static gboolean
adopt_parent (VhdxFile *file, VhdxFile *parent, const char *path, GError **error)
{
        if (!vhdx_chain_check_sectors (&file->info, &parent->info, path, error)) {
                vhdx_file_free (parent);
                return FALSE;
        }
        file->parent = parent;
        file->parent_path = g_strdup (path);
        return TRUE;
}

static VhdxIo *
default_open_func (const char *path, gboolean writable, gpointer user_data, GError **error)
{
        return vhdx_io_open_path (path, writable, error);
}

/* A candidate that opened as an image but is not the parent, kept in case
 * mismatches are ignored and no other is found. */
typedef struct {
        VhdxFile *file;
        char *path;
} Mismatch;

static void
mismatch_clear (Mismatch *mismatch)
{
        vhdx_file_free (mismatch->file);
        g_free (mismatch->path);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Mismatch, mismatch_clear)

/*
 * Try the candidate @path: TRUE when the search is over (the parent found,
 * or an error that stops it), FALSE to go on with the next candidate.
 */
static gboolean
try_candidate (VhdxFile *file,
               const char *path,
               const VhdxOpenOptions *options,
               VhdxOpenFlags parent_flags,
               guint depth,
               GArray *identities,
               VhdxParentSearch *search,
               Mismatch *mismatch,
               gboolean *found,
               GError **error)
{
        VhdxOpenFunc open_func = options != NULL && options->open_func != NULL ? options->open_func
                                                                               : default_open_func;
        gpointer open_data = options != NULL ? options->open_data : NULL;
        guint64 writable_ancestors = options != NULL ? options->writable_ancestors : 0;
        gboolean writable = depth < 64 && (writable_ancestors & (G_GUINT64_CONSTANT (1) << depth));
        VhdxOpenOptions parent_options = {
                .path = path,
                .parent_dirs = options != NULL ? options->parent_dirs : NULL,
                .open_func = open_func,
                .open_data = open_data,
                .writable_ancestors = writable_ancestors,
        };
        g_autofree char *display = g_filename_display_name (path);
        g_autoptr (GError) local_error = NULL;
        guint n_identities = identities->len;
        VhdxFile *parent;
        VhdxIo *io;

        io = open_func (path, writable, open_data, &local_error);
        if (io == NULL) {
                if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
                        vhdx_parent_search_skip (search, path, NULL);
                        return FALSE;
                }
                /* A FIFO, a directory, a device named like the parent: not it. */
                if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE) ||
                    g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY)) {
                        vhdx_parent_search_skip (search, path, local_error->message);
                        return FALSE;
                }
                g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                            _ ("Parent %s: "), display);
                return TRUE;
        }
        if (writable)
                parent_flags =
                        (parent_flags & ~VHDX_OPEN_FLAGS_FORCE_SHARE) | VHDX_OPEN_FLAGS_READ_WRITE;
        parent = open_member (io, parent_flags, &parent_options, depth + 1, identities,
                              &local_error);
        if (parent == NULL) {
                g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                            _ ("Parent %s: "), display);
                return TRUE;
        }
        if (vhdx_parent_search_match (search, path, &parent->info.data_write_guid, &local_error)) {
                *found = adopt_parent (file, parent, path, error);
                return TRUE;
        }
        if (local_error != NULL) {
                vhdx_file_free (parent);
                g_propagate_error (error, g_steal_pointer (&local_error));
                return TRUE;
        }
        /* An image, but not the one the child was made from: go on.  Its
         * chain is no part of this one, which may share members with it. */
        g_array_set_size (identities, n_identities);
        if ((file->flags & VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH) && mismatch->file == NULL) {
                mismatch->file = parent;
                mismatch->path = g_strdup (path);
        } else {
                vhdx_file_free (parent);
        }
        return FALSE;
}

/*
 * Find and open the parent of a differencing image: the explicit parent or
 * the locator's paths in order.  A path that does not exist is skipped; one
 * that opens but is not the image's parent (DataWriteGuid differs from the
 * linkage) is noted and skipped, or kept as the parent if no other is found
 * and mismatches are ignored; anything else wrong with a parent that exists
 * stops the search.
 */
static gboolean
open_parent (VhdxFile *file,
             const VhdxOpenOptions *options,
             guint depth,
             GArray *identities,
             GError **error)
{
        g_autoptr (GPtrArray) candidates =
                vhdx_parent_candidates (file->locator, options != NULL ? options->path : NULL,
                                        options != NULL ? options->parent_path : NULL,
                                        options != NULL ? options->parent_dirs : NULL);
        g_auto (VhdxParentSearch) search = { NULL };
        g_auto (Mismatch) mismatch = { NULL, NULL };
        g_autoptr (GError) local_error = NULL;
        /* Parents are read-only (locked as readers, or not at all with
         * force-share) unless asked for read-write; how a missing or mismatched parent is taken
         * holds for the whole chain. */
        VhdxOpenFlags parent_flags = file->flags & (VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT |
                                                    VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH |
                                                    VHDX_OPEN_FLAGS_FORCE_SHARE);
        gboolean found = FALSE;

        if (file->flags & VHDX_OPEN_FLAGS_NO_PARENT) {
                g_set_error (&file->parent_error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND,
                             _ ("The image was opened without its parent"));
                return TRUE;
        }
        if (!vhdx_chain_check_depth (depth, error))
                return FALSE;
        vhdx_parent_search_init (&search, file->locator);
        for (guint i = 0; i < candidates->len; i++) {
                if (try_candidate (file, g_ptr_array_index (candidates, i), options, parent_flags,
                                   depth, identities, &search, &mismatch, &found, error))
                        return found;
        }
        if (mismatch.file != NULL) {
                file->parent_warning =
                        vhdx_parent_search_mismatch_warning (&search, mismatch.path,
                                                             &mismatch.file->info.data_write_guid);
                vhdx_problems_add (file->open_problems, VHDX_SEVERITY_WARNING, _ ("parent locator"),
                                   file->info.parent_locator_offset, "%s", file->parent_warning);
                return adopt_parent (file, g_steal_pointer (&mismatch.file), mismatch.path, error);
        }
        vhdx_parent_search_fail (&search, candidates->len, &local_error);
        if (file->flags & VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT) {
                file->parent_error = g_steal_pointer (&local_error);
                return TRUE;
        }
        g_propagate_error (error, g_steal_pointer (&local_error));
        return FALSE;
}

static VhdxFile *
open_member (VhdxIo *io,
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
            !open_parent (file, options, depth, identities, error))
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
        return open_member (io, flags, options, 0, identities, error);
}

VhdxFile *
vhdx_file_open (VhdxIo *io, VhdxOpenFlags flags, GError **error)
{
        return vhdx_file_open_full (io, flags, NULL, error);
}

gboolean
vhdx_file_reset_layout (VhdxFile *file,
                        guint64 virtual_size,
                        guint64 bat_offset,
                        guint32 bat_length,
                        GError **error)
{
        VhdxInfo *info = &file->info;
        g_autoptr (GArray) reserved = NULL;
        VhdxIo *metadata_io = file->writer != NULL ? vhdx_writer_get_view (file->writer) : file->io;

        if (!vhdx_io_get_size (file->io, &info->file_size, error))
                return FALSE;
        info->virtual_size = virtual_size;
        file->metadata.virtual_size = virtual_size;
        info->bat_offset = bat_offset;
        info->bat_length = bat_length;
        file->regions.bat.file_offset = bat_offset;
        file->regions.bat.length = bat_length;
        for (guint i = 0; i < file->regions.entries->len; i++) {
                VhdxRegionEntry *r = &g_array_index (file->regions.entries, VhdxRegionEntry, i);

                if (vhdx_guid_equal (&r->guid, &vhdx_guid_region_bat)) {
                        r->file_offset = bat_offset;
                        r->length = bat_length;
                }
        }
        vhdx_bat_geometry_init (&info->geometry, info->virtual_size, info->block_size,
                                info->logical_sector_size,
                                info->disk_type == VHDX_DISK_TYPE_DIFFERENCING);
        reserved = reserved_ranges (file);
        load_bat (file, metadata_io, reserved);
        return TRUE;
}

void
vhdx_file_reset_locator (VhdxFile *file, GPtrArray *locator, guint64 offset, guint32 length)
{
        g_clear_pointer (&file->locator, g_ptr_array_unref);
        file->locator = locator;
        file->info.parent_locator_offset = offset;
        file->info.parent_locator_length = length;
        file->metadata.has_parent_locator = TRUE;
        file->metadata.parent_locator_offset = offset;
        file->metadata.parent_locator_length = length;
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

VhdxFile *
vhdx_file_get_parent (VhdxFile *file)
{
        return file->parent;
}

const GError *
vhdx_file_get_parent_error (VhdxFile *file)
{
        return file->parent_error;
}

const char *
vhdx_file_get_parent_warning (VhdxFile *file)
{
        return file->parent_warning;
}

const char *
vhdx_file_get_parent_path (VhdxFile *file)
{
        return file->parent_path;
}

guint
vhdx_file_get_chain_depth (VhdxFile *file)
{
        return file->parent != NULL ? 1 + vhdx_file_get_chain_depth (file->parent) : 0;
}

GPtrArray *
vhdx_file_get_parent_locator (VhdxFile *file)
{
        return file->locator;
}

gboolean
vhdx_file_is_writable (VhdxFile *file)
{
        return file->writer != NULL;
}

gboolean
vhdx_file_close (VhdxFile *file, GError **error)
{
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (file->writer == NULL)
                return TRUE;
        return vhdx_writer_close (file->writer, error);
}
