/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "vhdx-reader.h"

#include "vhdx-header.h"
#include "vhdx-log.h"
#include "vhdx-metadata.h"
#include "vhdx-private.h"
#include "vhdx-reader-private.h"

void
vhdx_file_free (VhdxFile *file)
{
        if (file == NULL)
                return;
        vhdx_bat_free (file->bat);
        vhdx_file_free (file->parent);
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

        if (!vhdx_io_read_exact (file->io, buf, n, 0, _("file identifier"), error))
                return FALSE;
        if (n >= 8 && memcmp (buf, VHDX_FILE_ID_SIGNATURE, 8) != 0)
                return vhdx_file_identifier_parse (buf, n, &file->info.creator, error);
        if (file->info.file_size < VHDX_HEADER_SECTION_SIZE) {
                vhdx_set_error (error, VHDX_ERROR_TRUNCATED, _("header section"), 0,
                                _("the file has %" G_GUINT64_FORMAT
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
        guint64 header_offset = info->header_index == 1 ? VHDX_HEADER1_OFFSET
                                                        : VHDX_HEADER2_OFFSET;
        g_autoptr(VhdxLogSequence) sequence = NULL;

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

        vhdx_findings_add (file->open_findings, VHDX_SEVERITY_WARNING, _("log"),
                           header->log_offset,
                           _("the log holds %u entries (%u writes, head sequence number %"
                             G_GUINT64_FORMAT ") that were not replayed onto the file; "
                             "they were replayed in memory"),
                           sequence->n_entries, sequence->writes->len,
                           sequence->head_sequence);
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

        if (!vhdx_region_tables_read (file->io, info->file_size, &file->regions,
                                      &info->region_table_index, file->open_findings, error))
                return FALSE;
        info->bat_offset = file->regions.bat.file_offset;
        info->bat_length = file->regions.bat.length;
        info->metadata_offset = file->regions.metadata.file_offset;
        info->metadata_length = file->regions.metadata.length;

        if (!vhdx_metadata_read (file->io, info->metadata_offset, info->metadata_length,
                                 &metadata, error))
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

        if (info->disk_type == VHDX_DISK_TYPE_DIFFERENCING) {
                vhdx_set_error (error, VHDX_ERROR_NOT_SUPPORTED, _("metadata item “file parameters”"),
                                info->metadata_offset,
                                _("the image is a differencing disk, and differencing disks are "
                                  "not supported yet"));
                return FALSE;
        }

        /* Chunk ratio: payload blocks described by one sector bitmap block. */
        info->chunk_ratio = ((guint64) 1 << 23) * info->logical_sector_size / info->block_size;
        info->payload_blocks = (info->virtual_size + info->block_size - 1) / info->block_size;
        info->bat_entries = info->payload_blocks + (info->payload_blocks - 1) / info->chunk_ratio;
        bat_bytes = info->bat_entries * VHDX_BAT_ENTRY_SIZE;
        if (bat_bytes > info->bat_length) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, _("BAT region"), info->bat_offset,
                                _("length %u is too small for %" G_GUINT64_FORMAT
                                  " entries (%" G_GUINT64_FORMAT " bytes)"),
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

VhdxFile *
vhdx_file_open_full (VhdxIo *io, VhdxOpenFlags flags, const VhdxOpenOptions *options,
                     GError **error)
{
        g_autoptr(VhdxFile) file = NULL;

        g_return_val_if_fail (io != NULL, NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        file = g_new0 (VhdxFile, 1);
        file->io = io;
        file->flags = flags;
        file->open_findings = g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_finding_free);

        if ((flags & VHDX_OPEN_FLAGS_READ_WRITE) &&
            (io->vtable->pwrite == NULL || io->vtable->flush == NULL)) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _("This image cannot be opened for writing"));
                return NULL;
        }
        if (!open_structures (file, error))
                return NULL;
        return g_steal_pointer (&file);
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

gboolean
vhdx_file_lookup_block (VhdxFile *file, guint64 block, guint *state, guint64 *file_offset,
                        GError **error)
{
        guint64 index = vhdx_bat_payload_index (block, file->info.chunk_ratio);
        guint64 entry, offset, end;

        if (!vhdx_bat_get (file->bat, index, &entry, error))
                return FALSE;
        *state = vhdx_bat_entry_state (entry);
        offset = vhdx_bat_entry_offset (entry);
        switch (*state) {
        case VHDX_PAYLOAD_NOT_PRESENT:
        case VHDX_PAYLOAD_UNDEFINED:
        case VHDX_PAYLOAD_ZERO:
        case VHDX_PAYLOAD_UNMAPPED:
                *file_offset = 0;
                return TRUE;
        case VHDX_PAYLOAD_FULLY_PRESENT:
                break;
        default: {
                g_autofree char *what = g_strdup_printf (_("BAT entry %" G_GUINT64_FORMAT), index);
                vhdx_set_error (error, VHDX_ERROR_INVALID, what,
                                file->info.bat_offset + index * VHDX_BAT_ENTRY_SIZE,
                                _("state %u is not a valid payload block state for a %s disk"),
                                *state, vhdx_disk_type_to_string (file->info.disk_type));
                return FALSE;
        }
        }
        if (offset < VHDX_HEADER_SECTION_SIZE ||
            !vhdx_add_u64 (offset, vhdx_file_block_length (file, block), &end) ||
            end > file->info.file_size) {
                g_autofree char *what = g_strdup_printf (_("BAT entry %" G_GUINT64_FORMAT), index);
                vhdx_set_error (error, VHDX_ERROR_INVALID, what,
                                file->info.bat_offset + index * VHDX_BAT_ENTRY_SIZE,
                                _("block %" G_GUINT64_FORMAT " at file offset %" G_GUINT64_FORMAT
                                  " is not inside the payload area of the file (1 MiB to %"
                                  G_GUINT64_FORMAT ")"),
                                block, offset, file->info.file_size);
                return FALSE;
        }
        *file_offset = offset;
        return TRUE;
}

static gboolean
check_range (VhdxFile *file, guint64 offset, guint64 length, GError **error)
{
        guint64 end;

        if (!vhdx_add_u64 (offset, length, &end) || end > file->info.virtual_size) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE,
                             _("The range %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                               " lies outside the virtual disk (%" G_GUINT64_FORMAT " bytes)"),
                             offset, length, file->info.virtual_size);
                return FALSE;
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

                if (!vhdx_file_lookup_block (file, block, &state, &block_offset, error))
                        return FALSE;
                if (run_length > 0 && state == VHDX_PAYLOAD_FULLY_PRESENT &&
                    block_offset + in_block == run_file_offset + run_length &&
                    run_buf + run_length == out) {
                        run_length += n;
                } else {
                        if (run_length > 0 &&
                            !vhdx_io_read_exact (file->io, run_buf, run_length,
                                                 run_file_offset, _("payload block"), error))
                                return FALSE;
                        run_length = 0;
                        if (state == VHDX_PAYLOAD_FULLY_PRESENT) {
                                run_buf = out;
                                run_file_offset = block_offset + in_block;
                                run_length = n;
                        } else {
                                memset (out, 0, n);
                        }
                }
                out += n;
                offset += n;
                count -= n;
        }
        if (run_length > 0 &&
            !vhdx_io_read_exact (file->io, run_buf, run_length, run_file_offset,
                                 _("payload block"), error))
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

GArray *
vhdx_file_map (VhdxFile *file, guint64 offset, guint64 length, GError **error)
{
        g_autoptr(GArray) extents = NULL;

        g_return_val_if_fail (file != NULL, NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        if (!check_range (file, offset, length, error))
                return NULL;

        extents = g_array_new (FALSE, TRUE, sizeof (VhdxMapExtent));
        while (length > 0) {
                guint64 block = offset / file->info.block_size;
                guint64 in_block = offset % file->info.block_size;
                guint64 n = MIN (length, file->info.block_size - in_block);
                VhdxMapExtent e = { .offset = offset, .length = n, .depth = 0 };
                guint state;
                guint64 block_offset;

                if (!vhdx_file_lookup_block (file, block, &state, &block_offset, error))
                        return NULL;
                if (state == VHDX_PAYLOAD_FULLY_PRESENT) {
                        e.kind = VHDX_EXTENT_DATA;
                        e.present = TRUE;
                        e.file_offset = block_offset + in_block;
                } else {
                        e.kind = VHDX_EXTENT_ZERO;
                        /* Explicitly zeroed blocks are allocated zeros; the others
                         * are holes in the image. */
                        e.present = state == VHDX_PAYLOAD_ZERO;
                }
                append_extent (extents, &e);
                offset += n;
                length -= n;
        }
        return g_steal_pointer (&extents);
}

gboolean
vhdx_file_get_allocated_bytes (VhdxFile *file, guint64 *allocated, GError **error)
{
        guint64 total = 0;

        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        for (guint64 block = 0; block < file->info.payload_blocks; block++) {
                guint state;
                guint64 block_offset;

                if (!vhdx_file_lookup_block (file, block, &state, &block_offset, error))
                        return FALSE;
                if (state == VHDX_PAYLOAD_FULLY_PRESENT)
                        total += vhdx_file_block_length (file, block);
        }
        *allocated = total;
        return TRUE;
}
