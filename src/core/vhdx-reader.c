/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "vhdx-reader.h"

#include <gio/gio.h>

#include "vhdx-header.h"
#include "vhdx-log.h"
#include "vhdx-metadata.h"
#include "vhdx-parent.h"
#include "vhdx-private.h"
#include "vhdx-reader-private.h"

void
vhdx_file_free (VhdxFile *file)
{
        if (file == NULL)
                return;
        vhdx_bat_free (file->bat);
        vhdx_file_free (file->parent);
        g_clear_pointer (&file->bitmaps, g_hash_table_unref);
        g_mutex_clear (&file->bitmaps_lock);
        g_free (file->parent_path);
        g_clear_pointer (&file->locator, g_ptr_array_unref);
        vhdx_region_table_clear (&file->regions);
        g_clear_pointer (&file->open_findings, g_ptr_array_unref);
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
                if (!vhdx_log_replay_to_file (file->io, sequence, error))
                        return FALSE;
                header->log_guid = vhdx_guid_zero;
                vhdx_guid_new_random (&header->file_write_guid);
                if (!vhdx_headers_write (file->io, header, info->header_index, error))
                        return FALSE;
                info->header_sequence = header->sequence;
                info->file_write_guid = header->file_write_guid;
                info->log_guid = header->log_guid;
                info->log_state = VHDX_LOG_STATE_REPLAYED;
                return vhdx_io_get_size (file->io, &info->file_size, error);
        }

        vhdx_findings_add (file->open_findings, VHDX_SEVERITY_WARNING, _ ("log"),
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

static gboolean
open_structures (VhdxFile *file, GError **error)
{
        VhdxInfo *info = &file->info;
        VhdxHeader header;
        VhdxMetadata metadata;
        guint64 bat_bytes;

        if (!vhdx_io_get_size (file->io, &info->file_size, error))
                return FALSE;
        if (!read_file_identifier (file, error))
                return FALSE;

        if (!vhdx_headers_read (file->io, info->file_size, &header, &info->header_index,
                                file->open_findings, error))
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
                                      &info->region_table_index, file->open_findings, error))
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
                file->locator = vhdx_parent_locator_read (file->io, metadata.parent_locator_offset,
                                                          metadata.parent_locator_length, error);
                if (file->locator == NULL)
                        return FALSE;
        }

        /* Chunk ratio: payload blocks described by one sector bitmap block. */
        info->chunk_ratio = ((guint64) 1 << 23) * info->logical_sector_size / info->block_size;
        info->payload_blocks = (info->virtual_size + info->block_size - 1) / info->block_size;
        if (info->disk_type == VHDX_DISK_TYPE_DIFFERENCING)
                info->bat_entries = (info->payload_blocks + info->chunk_ratio - 1) /
                                    info->chunk_ratio * (info->chunk_ratio + 1);
        else
                info->bat_entries =
                        info->payload_blocks + (info->payload_blocks - 1) / info->chunk_ratio;
        bat_bytes = info->bat_entries * VHDX_BAT_ENTRY_SIZE;
        if (bat_bytes > info->bat_length) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("BAT region"), info->bat_offset,
                                _ ("length %u is too small for %" PRIu64 " entries (%" PRIu64
                                   " bytes)"),
                                info->bat_length, info->bat_entries, bat_bytes);
                return FALSE;
        }
        file->bat = vhdx_bat_new (file->io, info->bat_offset, info->bat_entries);
        return TRUE;
}

VhdxFile *
vhdx_file_open (VhdxIo *io, VhdxOpenFlags flags, GError **error)
{
        return vhdx_file_open_full (io, flags, NULL, error);
}

VhdxFile *
vhdx_file_get_parent (VhdxFile *file)
{
        return file->parent;
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

/* (device, inode) of every member of a chain being opened, to detect loops. */
typedef struct {
        guint64 device;
        guint64 inode;
} Identity;

static VhdxFile *open_internal (VhdxIo *io,
                                VhdxOpenFlags flags,
                                const VhdxOpenOptions *options,
                                guint depth,
                                GArray *identities,
                                GError **error);

static VhdxIo *
default_open_func (const char *path, gpointer user_data, GError **error)
{
        return vhdx_io_open_file (path, error);
}

static gboolean
linkage_matches (VhdxFile *file, VhdxFile *parent, GError **error)
{
        static const char *const keys[] = { "parent_linkage", "parent_linkage2" };

        for (guint i = 0; i < G_N_ELEMENTS (keys); i++) {
                const char *text = vhdx_parent_locator_lookup (file->locator, keys[i]);
                VhdxGuid guid;

                if (text == NULL)
                        continue;
                if (!vhdx_guid_from_string (text, &guid)) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("parent locator"), 0,
                                        _ ("%s “%s” is not a GUID"), keys[i], text);
                        return FALSE;
                }
                if (vhdx_guid_equal (&guid, &parent->info.data_write_guid))
                        return TRUE;
        }
        return FALSE;
}

/*
 * Find and open the parent of a differencing image: the explicit parent or
 * the locator's paths in order.  A path that does not exist is skipped; one
 * that opens but is not the image's parent (DataWriteGuid differs from the
 * linkage) is remembered and skipped; anything else wrong with a parent that
 * exists stops the search.
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
                                        options != NULL ? options->parent_path : NULL);
        g_autoptr (GString) tried = g_string_new (NULL);
        g_autoptr (GError) mismatch = NULL;
        VhdxOpenFunc open_func = options != NULL && options->open_func != NULL ? options->open_func
                                                                               : default_open_func;
        gpointer open_data = options != NULL ? options->open_data : NULL;
        gboolean allow_mismatch = options != NULL && options->allow_parent_mismatch;

        if (depth + 1 > VHDX_MAX_CHAIN_DEPTH) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                             _ ("The chain of parents is longer than %u images"),
                             (guint) VHDX_MAX_CHAIN_DEPTH);
                return FALSE;
        }

        for (guint i = 0; i < candidates->len; i++) {
                const char *path = g_ptr_array_index (candidates, i);
                g_autofree char *display = g_filename_display_name (path);
                g_autoptr (GError) local_error = NULL;
                VhdxOpenOptions parent_options = {
                        .path = path,
                        .allow_parent_mismatch = allow_mismatch,
                        .open_func = open_func,
                        .open_data = open_data,
                };
                VhdxFile *parent;
                VhdxIo *io;

                g_string_append_printf (tried, "%s%s", tried->len > 0 ? ", " : "", display);
                io = open_func (path, open_data, &local_error);
                if (io == NULL) {
                        if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
                                continue;
                        g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                                    _ ("Parent %s: "), display);
                        return FALSE;
                }
                parent = open_internal (io, VHDX_OPEN_FLAGS_NONE, &parent_options, depth + 1,
                                        identities, &local_error);
                if (parent == NULL) {
                        g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                                    _ ("Parent %s: "), display);
                        return FALSE;
                }
                if (!linkage_matches (file, parent, &local_error)) {
                        char found[VHDX_GUID_STRING_LENGTH + 1];
                        if (local_error != NULL) {
                                vhdx_file_free (parent);
                                g_propagate_error (error, g_steal_pointer (&local_error));
                                return FALSE;
                        }
                        if (!allow_mismatch) {
                                const char *linkage2 =
                                        vhdx_parent_locator_lookup (file->locator,
                                                                    "parent_linkage2");
                                vhdx_guid_to_string_buf (&parent->info.data_write_guid, found);
                                g_clear_error (&mismatch);
                                g_set_error (&mismatch, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH,
                                             _ ("Parent %s has DataWriteGuid %s, but the image "
                                                "was made from %s%s%s"),
                                             display, found,
                                             vhdx_parent_locator_lookup (file->locator,
                                                                         "parent_linkage"),
                                             linkage2 != NULL ? _ (" or ") : "",
                                             linkage2 != NULL ? linkage2 : "");
                                vhdx_file_free (parent);
                                continue;
                        }
                }
                if (parent->info.logical_sector_size != file->info.logical_sector_size) {
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH,
                                     _ ("Parent %s has %u-byte logical sectors, the image %u"),
                                     display, parent->info.logical_sector_size,
                                     file->info.logical_sector_size);
                        vhdx_file_free (parent);
                        return FALSE;
                }
                file->parent = parent;
                file->parent_path = g_strdup (path);
                return TRUE;
        }

        if (mismatch != NULL) {
                g_propagate_error (error, g_steal_pointer (&mismatch));
                return FALSE;
        }
        if (candidates->len == 0) {
                const char *relative = vhdx_parent_locator_lookup (file->locator, "relative_path");
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND,
                             _ ("The parent of this differencing image cannot be found: no "
                                "path to look in (relative_path “%s”) and no parent was given"),
                             relative != NULL ? relative : "");
        } else
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND,
                             _ ("The parent of this differencing image cannot be found; tried: "
                                "%s"),
                             tried->str);
        return FALSE;
}

static VhdxFile *
open_internal (VhdxIo *io,
               VhdxOpenFlags flags,
               const VhdxOpenOptions *options,
               guint depth,
               GArray *identities,
               GError **error)
{
        g_autoptr (VhdxFile) file = NULL;
        Identity identity;

        file = g_new0 (VhdxFile, 1);
        file->io = io;
        file->flags = flags;
        file->open_findings = g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_finding_free);
        g_mutex_init (&file->bitmaps_lock);
        file->bitmaps = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free,
                                               (GDestroyNotify) g_bytes_unref);

        if ((flags & VHDX_OPEN_FLAGS_READ_WRITE) &&
            (io->vtable->pwrite == NULL || io->vtable->flush == NULL)) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("This image cannot be opened for writing"));
                return NULL;
        }
        if (vhdx_io_identify (io, &identity.device, &identity.inode)) {
                for (guint i = 0; i < identities->len; i++) {
                        const Identity *seen = &g_array_index (identities, Identity, i);
                        if (seen->device == identity.device && seen->inode == identity.inode) {
                                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                                             _ ("The chain of parents loops back to an image "
                                                "already in it"));
                                return NULL;
                        }
                }
                g_array_append_val (identities, identity);
        }
        if (!open_structures (file, error))
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
        g_autoptr (GArray) identities = g_array_new (FALSE, FALSE, sizeof (Identity));

        g_return_val_if_fail (io != NULL, NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        return open_internal (io, flags, options, 0, identities, error);
}

const VhdxInfo *
vhdx_file_get_info (VhdxFile *file)
{
        return &file->info;
}

GPtrArray *
vhdx_file_get_open_findings (VhdxFile *file)
{
        return file->open_findings;
}

/* The structure that the file bytes [start, end) would overlap, or NULL. */
static const char *
overlapped_structure (VhdxFile *file, guint64 start, guint64 end)
{
        if (start < VHDX_HEADER_SECTION_SIZE)
                return _ ("the header section");
        if (file->info.log_length > 0 && start < file->info.log_offset + file->info.log_length &&
            end > file->info.log_offset)
                return _ ("the log");
        for (guint i = 0; i < file->regions.entries->len; i++) {
                const VhdxRegionEntry *r =
                        &g_array_index (file->regions.entries, VhdxRegionEntry, i);
                if (start < r->file_offset + r->length && end > r->file_offset)
                        return vhdx_guid_equal (&r->guid, &vhdx_guid_region_bat) ? _ ("the BAT")
                               : vhdx_guid_equal (&r->guid, &vhdx_guid_region_metadata)
                                       ? _ ("the metadata region")
                                       : _ ("a region");
        }
        return NULL;
}

/* Check that a block of @length bytes at @offset, named by BAT entry @index,
 * lies inside the file and on no other structure. */
static gboolean
check_stored_block (VhdxFile *file, guint64 index, guint64 offset, guint64 length, GError **error)
{
        guint64 end;
        const char *overlapped;

        if (!vhdx_add_u64 (offset, length, &end) || end > file->info.file_size) {
                g_autofree char *what = g_strdup_printf (_ ("BAT entry %" PRIu64), index);
                vhdx_set_error (error, VHDX_ERROR_INVALID, what,
                                file->info.bat_offset + index * VHDX_BAT_ENTRY_SIZE,
                                _ ("the block at file offset %" PRIu64
                                   " ends past the end of the file (%" PRIu64 " bytes)"),
                                offset, file->info.file_size);
                return FALSE;
        }
        overlapped = overlapped_structure (file, offset, end);
        if (overlapped != NULL) {
                g_autofree char *what = g_strdup_printf (_ ("BAT entry %" PRIu64), index);
                vhdx_set_error (error, VHDX_ERROR_INVALID, what,
                                file->info.bat_offset + index * VHDX_BAT_ENTRY_SIZE,
                                _ ("the block at file offset %" PRIu64 " overlaps %s"), offset,
                                overlapped);
                return FALSE;
        }
        return TRUE;
}

gboolean
vhdx_file_check_payload_entry (VhdxFile *file,
                               guint64 block,
                               guint64 entry,
                               guint *state,
                               guint64 *file_offset,
                               GError **error)
{
        guint64 index = vhdx_bat_payload_index (block, file->info.chunk_ratio);

        *state = vhdx_bat_entry_state (entry);
        *file_offset = 0;
        switch (*state) {
        case VHDX_PAYLOAD_NOT_PRESENT:
        case VHDX_PAYLOAD_UNDEFINED:
        case VHDX_PAYLOAD_ZERO:
        case VHDX_PAYLOAD_UNMAPPED:
                return TRUE;
        case VHDX_PAYLOAD_FULLY_PRESENT:
                break;
        case VHDX_PAYLOAD_PARTIALLY_PRESENT:
                if (file->info.disk_type == VHDX_DISK_TYPE_DIFFERENCING)
                        break;
                G_GNUC_FALLTHROUGH;
        default: {
                g_autofree char *what = g_strdup_printf (_ ("BAT entry %" PRIu64), index);
                vhdx_set_error (error, VHDX_ERROR_INVALID, what,
                                file->info.bat_offset + index * VHDX_BAT_ENTRY_SIZE,
                                _ ("state %u is not a valid payload block state for a %s disk"),
                                *state, vhdx_disk_type_to_string (file->info.disk_type));
                return FALSE;
        }
        }
        if (!check_stored_block (file, index, vhdx_bat_entry_offset (entry),
                                 vhdx_file_block_length (file, block), error))
                return FALSE;
        *file_offset = vhdx_bat_entry_offset (entry);
        return TRUE;
}

gboolean
vhdx_file_lookup_block (VhdxFile *file,
                        guint64 block,
                        guint *state,
                        guint64 *file_offset,
                        GError **error)
{
        guint64 entry;

        if (!vhdx_bat_get (file->bat, vhdx_bat_payload_index (block, file->info.chunk_ratio),
                           &entry, error))
                return FALSE;
        return vhdx_file_check_payload_entry (file, block, entry, state, file_offset, error);
}

/* Cached sector bitmaps take at most this much memory; then the cache starts over. */
#define BITMAP_CACHE_MAX_BYTES (16 * VHDX_MiB)

/*
 * The part of its chunk's sector bitmap that covers payload block @block of a
 * differencing image: one bit per logical sector, least significant first,
 * 1 = stored in this file.
 */
static GBytes *
get_block_bitmap (VhdxFile *file, guint64 block, GError **error)
{
        const VhdxInfo *info = &file->info;
        guint64 chunk = block / info->chunk_ratio;
        guint64 index = vhdx_bat_bitmap_index (chunk, info->chunk_ratio);
        guint64 sectors_per_block = info->block_size / info->logical_sector_size;
        guint64 first_bit = (block % info->chunk_ratio) * sectors_per_block;
        gsize length = (gsize) (sectors_per_block / 8);
        guint64 entry, offset;
        g_autofree guint8 *bits = NULL;
        GBytes *bytes;
        guint64 key = block;

        g_mutex_lock (&file->bitmaps_lock);
        bytes = g_hash_table_lookup (file->bitmaps, &key);
        if (bytes != NULL)
                g_bytes_ref (bytes);
        g_mutex_unlock (&file->bitmaps_lock);
        if (bytes != NULL)
                return bytes;

        if (!vhdx_bat_get (file->bat, index, &entry, error))
                return NULL;
        if (vhdx_bat_entry_state (entry) != VHDX_SB_PRESENT) {
                g_autofree char *what = g_strdup_printf (_ ("BAT entry %" PRIu64), index);
                vhdx_set_error (error, VHDX_ERROR_INVALID, what,
                                info->bat_offset + index * VHDX_BAT_ENTRY_SIZE,
                                _ ("block %" PRIu64 " is partially present but the "
                                   "sector bitmap of its chunk is not (state %u)"),
                                block, vhdx_bat_entry_state (entry));
                return NULL;
        }
        offset = vhdx_bat_entry_offset (entry);
        if (!check_stored_block (file, index, offset, VHDX_MiB, error))
                return NULL;
        bits = g_malloc (length);
        if (!vhdx_io_read_exact (file->io, bits, length, offset + first_bit / 8,
                                 _ ("sector bitmap"), error))
                return NULL;
        bytes = g_bytes_new_take (g_steal_pointer (&bits), length);

        g_mutex_lock (&file->bitmaps_lock);
        if (file->bitmaps_bytes + length > BITMAP_CACHE_MAX_BYTES) {
                g_hash_table_remove_all (file->bitmaps);
                file->bitmaps_bytes = 0;
        }
        if (!g_hash_table_contains (file->bitmaps, &key)) {
                g_hash_table_insert (file->bitmaps, g_memdup2 (&key, sizeof key),
                                     g_bytes_ref (bytes));
                file->bitmaps_bytes += length;
        }
        g_mutex_unlock (&file->bitmaps_lock);
        return bytes;
}

static gboolean
bitmap_bit (const guint8 *bits, guint64 sector)
{
        return (bits[sector / 8] >> (sector % 8)) & 1;
}

/* The end (a block-relative byte offset, at most @end) of the run of sectors
 * that starts at @pos and whose bits all equal the bit of @pos's sector. */
static guint64
bitmap_run_end (const guint8 *bits,
                guint32 sector_size,
                guint64 pos,
                guint64 end,
                gboolean *present)
{
        guint64 sector = pos / sector_size;

        *present = bitmap_bit (bits, sector);
        for (sector++; sector * sector_size < end; sector++) {
                if (bitmap_bit (bits, sector) != *present)
                        return sector * sector_size;
        }
        return end;
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

static gboolean
check_range (VhdxFile *file, guint64 offset, guint64 length, GError **error)
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
        g_autoptr (GBytes) bitmap = get_block_bitmap (file, block, error);
        const guint8 *bits;
        guint64 pos = in_block, end = in_block + count;
        guint64 block_start = block * file->info.block_size;

        if (bitmap == NULL)
                return FALSE;
        bits = g_bytes_get_data (bitmap, NULL);
        while (pos < end) {
                gboolean present;
                guint64 run_end =
                        bitmap_run_end (bits, file->info.logical_sector_size, pos, end, &present);
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

        if (!check_range (file, offset, count, error))
                return FALSE;

        while (count > 0) {
                guint64 block = offset / file->info.block_size;
                guint64 in_block = offset % file->info.block_size;
                gsize n = (gsize) MIN ((guint64) count, file->info.block_size - in_block);
                guint state;
                guint64 block_offset;
                gboolean ok = TRUE;

                if (!vhdx_file_lookup_block (file, block, &state, &block_offset, error))
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

static void
append_extent (GArray *extents, const VhdxMapExtent *e)
{
        if (extents->len > 0) {
                VhdxMapExtent *last = &g_array_index (extents, VhdxMapExtent, extents->len - 1);
                if (last->kind == e->kind && last->present == e->present &&
                    last->depth == e->depth && last->offset + last->length == e->offset &&
                    (e->kind != VHDX_EXTENT_DATA ||
                     last->file_offset + last->length == e->file_offset)) {
                        last->length += e->length;
                        return;
                }
        }
        g_array_append_val (extents, *e);
}

static gboolean map_range (VhdxFile *file,
                           guint64 offset,
                           guint64 length,
                           guint depth,
                           GArray *extents,
                           GError **error);

/* Extents for a range this file does not store: the parent's, one level
 * deeper; holes where the parent is smaller or there is none. */
static gboolean
map_from_parent (VhdxFile *file,
                 guint64 offset,
                 guint64 length,
                 guint depth,
                 GArray *extents,
                 GError **error)
{
        guint64 from_parent = 0;

        if (file->parent != NULL && offset < file->parent->info.virtual_size) {
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
                append_extent (extents, &hole);
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

                if (!vhdx_file_lookup_block (file, block, &state, &block_offset, error))
                        return FALSE;
                if (state == VHDX_PAYLOAD_FULLY_PRESENT) {
                        e.kind = VHDX_EXTENT_DATA;
                        e.present = TRUE;
                        e.file_offset = block_offset + in_block;
                        append_extent (extents, &e);
                } else if (state == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
                        g_autoptr (GBytes) bitmap = get_block_bitmap (file, block, error);
                        guint64 pos = in_block, end = in_block + n;

                        if (bitmap == NULL)
                                return FALSE;
                        while (pos < end) {
                                gboolean present;
                                guint64 run_end = bitmap_run_end (g_bytes_get_data (bitmap, NULL),
                                                                  file->info.logical_sector_size,
                                                                  pos, end, &present);
                                guint64 at = block * file->info.block_size + pos;
                                if (present) {
                                        VhdxMapExtent d = { .offset = at,
                                                            .length = run_end - pos,
                                                            .kind = VHDX_EXTENT_DATA,
                                                            .present = TRUE,
                                                            .file_offset = block_offset + pos,
                                                            .depth = depth };
                                        append_extent (extents, &d);
                                } else if (!map_from_parent (file, at, run_end - pos, depth,
                                                             extents, error)) {
                                        return FALSE;
                                }
                                pos = run_end;
                        }
                } else if (state == VHDX_PAYLOAD_NOT_PRESENT && file->parent != NULL) {
                        if (!map_from_parent (file, offset, n, depth, extents, error))
                                return FALSE;
                } else {
                        e.kind = VHDX_EXTENT_ZERO;
                        /* Explicitly zeroed blocks are allocated zeros; the others
                         * are holes in the image. */
                        e.present = state == VHDX_PAYLOAD_ZERO;
                        append_extent (extents, &e);
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

        if (!check_range (file, offset, length, error))
                return NULL;
        extents = g_array_new (FALSE, TRUE, sizeof (VhdxMapExtent));
        if (!map_range (file, offset, length, 0, extents, error))
                return NULL;
        return g_steal_pointer (&extents);
}

gboolean
vhdx_file_get_allocated_bytes (VhdxFile *file, guint64 *allocated, GError **error)
{
        const VhdxInfo *info = &file->info;
        g_autofree guint64 *entries = NULL;
        guint64 total = 0;

        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        /* A streaming scan: a 64 TiB image has a 512 MiB BAT that must not
         * end up in the cache.  Holes in a sparse BAT are NOT_PRESENT
         * entries, which count nothing: they are skipped unread. */
        entries = g_new (guint64, VHDX_BAT_SCAN_ENTRIES);
        for (guint64 first = vhdx_bat_skip_zeros (file->bat, 0); first < info->bat_entries;
             first = vhdx_bat_skip_zeros (file->bat, first + VHDX_BAT_SCAN_ENTRIES)) {
                gsize n = (gsize) MIN ((guint64) VHDX_BAT_SCAN_ENTRIES, info->bat_entries - first);

                if (!vhdx_bat_read_range (file->bat, first, n, entries, error))
                        return FALSE;
                for (gsize i = 0; i < n; i++) {
                        guint64 index = first + i;
                        guint64 block = index - index / (info->chunk_ratio + 1);
                        guint state;
                        guint64 block_offset;

                        /* Sector bitmap entries and the padding of the last chunk. */
                        if ((index + 1) % (info->chunk_ratio + 1) == 0 ||
                            block >= info->payload_blocks)
                                continue;
                        if (!vhdx_file_check_payload_entry (file, block, entries[i], &state,
                                                            &block_offset, error))
                                return FALSE;
                        if (state == VHDX_PAYLOAD_FULLY_PRESENT) {
                                total += vhdx_file_block_length (file, block);
                        } else if (state == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
                                g_autoptr (GBytes) bitmap = get_block_bitmap (file, block, error);
                                guint64 sectors = vhdx_file_block_length (file, block) /
                                                  info->logical_sector_size;
                                const guint8 *bits;

                                if (bitmap == NULL)
                                        return FALSE;
                                bits = g_bytes_get_data (bitmap, NULL);
                                for (guint64 s = 0; s < sectors; s++)
                                        total += bitmap_bit (bits, s) ? info->logical_sector_size
                                                                      : 0;
                        }
                }
        }
        *allocated = total;
        return TRUE;
}
