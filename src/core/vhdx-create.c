/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Creating new images (see vhdx-create.h). */
#include "config.h"

#include "vhdx-create.h"

#include <gio/gio.h>

#include "vhdx-bat.h"
#include "vhdx-bitmap.h"
#include "vhdx-crc32c.h"
#include "vhdx-header.h"
#include "vhdx-parent.h"
#include "vhdx-private.h"

#define CREATOR "libvhdx " PACKAGE_VERSION

/* Where the pieces go: header section, log, metadata, BAT, then payload. */
#define LOG_OFFSET            VHDX_HEADER_SECTION_SIZE
#define METADATA_LENGTH       (1 * VHDX_MiB)
#define METADATA_ITEMS_OFFSET VHDX_METADATA_TABLE_SIZE

struct _VhdxCreator {
        VhdxIo *io;
        VhdxCreateParams params;
        VhdxBatGeometry geometry;
        guint64 *bat;
        guint64 metadata_offset;
        guint64 bat_offset;
        guint32 bat_length;
        guint64 next_free;   /* where the next allocated block goes */
        GHashTable *bitmaps; /* chunk -> 1 MiB sector bitmap (differencing) */
        gboolean finished;
};

static gboolean
is_power_of_two (guint64 v)
{
        return v != 0 && (v & (v - 1)) == 0;
}

gboolean
vhdx_create_params_resolve (VhdxCreateParams *p, GError **error)
{
        if (p->block_size == 0)
                p->block_size = p->disk_type == VHDX_DISK_TYPE_DIFFERENCING
                                        ? VHDX_DEFAULT_DIFFERENCING_BLOCK_SIZE
                                        : VHDX_DEFAULT_BLOCK_SIZE;
        if (p->logical_sector_size == 0)
                p->logical_sector_size = 512;
        if (p->physical_sector_size == 0)
                p->physical_sector_size = 4096;
        if (p->log_size == 0)
                p->log_size = VHDX_DEFAULT_LOG_SIZE;

        if (p->disk_type != VHDX_DISK_TYPE_FIXED && p->disk_type != VHDX_DISK_TYPE_DYNAMIC &&
            p->disk_type != VHDX_DISK_TYPE_DIFFERENCING) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID, _ ("Unknown disk type %d"),
                             (int) p->disk_type);
                return FALSE;
        }
        if (!is_power_of_two (p->block_size) || p->block_size < VHDX_MIN_BLOCK_SIZE ||
            p->block_size > VHDX_MAX_BLOCK_SIZE) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                             _ ("The block size %u is not a power of two from 1 MiB to 256 MiB"),
                             p->block_size);
                return FALSE;
        }
        if ((p->logical_sector_size != 512 && p->logical_sector_size != 4096) ||
            (p->physical_sector_size != 512 && p->physical_sector_size != 4096)) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                             _ ("Sector sizes must be 512 or 4096 (logical %u, physical %u)"),
                             p->logical_sector_size, p->physical_sector_size);
                return FALSE;
        }
        if (p->virtual_size == 0 || p->virtual_size > VHDX_MAX_VIRTUAL_SIZE ||
            p->virtual_size % p->logical_sector_size != 0) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                             _ ("The virtual size %" PRIu64 " is not a non-zero "
                                "multiple of the logical sector size (%u) up to 64 TiB"),
                             p->virtual_size, p->logical_sector_size);
                return FALSE;
        }
        if (p->log_size % VHDX_MiB != 0) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                             _ ("The log size %u is not a multiple of 1 MiB"), p->log_size);
                return FALSE;
        }
        if (p->disk_type == VHDX_DISK_TYPE_DIFFERENCING &&
            (p->parent_relative_path == NULL || vhdx_guid_is_zero (&p->parent_data_write_guid))) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                             _ ("A differencing image needs its parent's path and "
                                "DataWriteGuid"));
                return FALSE;
        }
        if (vhdx_guid_is_zero (&p->data_write_guid))
                vhdx_guid_new_random (&p->data_write_guid);
        if (vhdx_guid_is_zero (&p->virtual_disk_id))
                vhdx_guid_new_random (&p->virtual_disk_id);
        return TRUE;
}

static void
creator_clear_bitmap (gpointer data)
{
        g_free (data);
}

VhdxCreator *
vhdx_creator_new (VhdxIo *io, const VhdxCreateParams *params, GError **error)
{
        g_autoptr (VhdxCreator) w = g_new0 (VhdxCreator, 1);
        guint64 bat_bytes;

        g_return_val_if_fail (io != NULL && params != NULL, NULL);

        w->io = io;
        w->params = *params;
        if (!vhdx_create_params_resolve (&w->params, error))
                return NULL;
        if (!vhdx_io_is_writable (io)) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("The new image was not opened for writing"));
                return NULL;
        }
        vhdx_bat_geometry_init (&w->geometry, w->params.virtual_size, w->params.block_size,
                                w->params.logical_sector_size,
                                w->params.disk_type == VHDX_DISK_TYPE_DIFFERENCING);
        bat_bytes = vhdx_bat_geometry_table_bytes (&w->geometry);
        if (bat_bytes > G_MAXUINT32 - VHDX_MiB) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                             _ ("A BAT of %" PRIu64 " bytes is too large; use "
                                "larger blocks"),
                             bat_bytes);
                return NULL;
        }
        w->bat = g_try_new0 (guint64, w->geometry.bat_entries);
        if (w->bat == NULL) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                             _ ("Not enough memory for a BAT of %" PRIu64 " entries"),
                             w->geometry.bat_entries);
                return NULL;
        }
        w->metadata_offset = LOG_OFFSET + w->params.log_size;
        w->bat_offset = w->metadata_offset + METADATA_LENGTH;
        w->bat_length = (guint32) ((bat_bytes + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB);
        w->next_free = w->bat_offset + w->bat_length;
        w->bitmaps =
                g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, creator_clear_bitmap);

        if (w->params.disk_type == VHDX_DISK_TYPE_FIXED) {
                /* Every block is stored, in order. */
                for (guint64 b = 0; b < w->geometry.payload_blocks; b++) {
                        w->bat[vhdx_bat_payload_index (&w->geometry, b)] =
                                w->next_free | VHDX_PAYLOAD_FULLY_PRESENT;
                        w->next_free += w->params.block_size;
                }
        }
        return g_steal_pointer (&w);
}

const VhdxCreateParams *
vhdx_creator_get_params (VhdxCreator *creator)
{
        return &creator->params;
}

void
vhdx_creator_free (VhdxCreator *writer)
{
        if (writer == NULL)
                return;
        g_free (writer->bat);
        g_clear_pointer (&writer->bitmaps, g_hash_table_unref);
        g_free (writer);
}

static guint8 *
chunk_bitmap (VhdxCreator *w, guint64 chunk)
{
        guint8 *bits = g_hash_table_lookup (w->bitmaps, &chunk);

        if (bits == NULL) {
                bits = g_malloc0 (VHDX_MiB);
                g_hash_table_insert (w->bitmaps, g_memdup2 (&chunk, sizeof chunk), bits);
        }
        return bits;
}

static void
mark_present (VhdxCreator *w, guint64 block, guint64 in_block, guint64 length)
{
        guint32 lss = w->params.logical_sector_size;
        guint64 first =
                (block % w->geometry.chunk_ratio) * (w->params.block_size / lss) + in_block / lss;
        guint8 *bits = chunk_bitmap (w, block / w->geometry.chunk_ratio);

        vhdx_bitmap_set_range (bits, first, length / lss);
}

gboolean
vhdx_creator_write (VhdxCreator *w, guint64 offset, const void *buf, gsize count, GError **error)
{
        const guint8 *in = buf;
        guint64 end;

        g_return_val_if_fail (!w->finished, FALSE);

        if (offset % w->params.logical_sector_size != 0 ||
            count % w->params.logical_sector_size != 0 || !vhdx_add_u64 (offset, count, &end) ||
            end > w->params.virtual_size) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE,
                             _ ("The write %" PRIu64 "+%zu is not "
                                "whole sectors inside the virtual disk"),
                             offset, count);
                return FALSE;
        }
        while (count > 0) {
                guint64 block = offset / w->params.block_size;
                guint64 in_block = offset % w->params.block_size;
                gsize n = (gsize) MIN ((guint64) count, w->params.block_size - in_block);
                guint64 *entry = &w->bat[vhdx_bat_payload_index (&w->geometry, block)];

                if (vhdx_bat_entry_state (*entry) == VHDX_PAYLOAD_NOT_PRESENT) {
                        *entry = w->next_free | (w->params.disk_type == VHDX_DISK_TYPE_DIFFERENCING
                                                         ? VHDX_PAYLOAD_PARTIALLY_PRESENT
                                                         : VHDX_PAYLOAD_FULLY_PRESENT);
                        w->next_free += w->params.block_size;
                }
                if (!vhdx_io_write (w->io, in, n, vhdx_bat_entry_offset (*entry) + in_block, error))
                        return FALSE;
                if (w->params.disk_type == VHDX_DISK_TYPE_DIFFERENCING)
                        mark_present (w, block, in_block, n);
                in += n;
                offset += n;
                count -= n;
        }
        return TRUE;
}

/* Differencing: blocks whose every sector was written become FULLY_PRESENT;
 * chunks with PARTIALLY_PRESENT blocks get their sector bitmap written. */
static gboolean
finish_bitmaps (VhdxCreator *w, GError **error)
{
        guint32 lss = w->params.logical_sector_size;
        guint64 sectors_per_block = w->params.block_size / lss;
        guint64 n_chunks = (w->geometry.payload_blocks + w->geometry.chunk_ratio - 1) /
                           w->geometry.chunk_ratio;

        for (guint64 chunk = 0; chunk < n_chunks; chunk++) {
                guint8 *bits = g_hash_table_lookup (w->bitmaps, &chunk);
                gboolean need_bitmap = FALSE;

                if (bits == NULL)
                        continue;
                for (guint64 b = chunk * w->geometry.chunk_ratio;
                     b < MIN (w->geometry.payload_blocks, (chunk + 1) * w->geometry.chunk_ratio);
                     b++) {
                        guint64 *entry = &w->bat[vhdx_bat_payload_index (&w->geometry, b)];
                        guint64 first = (b % w->geometry.chunk_ratio) * sectors_per_block;
                        guint64 sectors = vhdx_bat_block_length (&w->geometry, b) / lss;

                        if (vhdx_bat_entry_state (*entry) != VHDX_PAYLOAD_PARTIALLY_PRESENT)
                                continue;
                        if (vhdx_bitmap_count_set (bits, first, sectors) == sectors)
                                *entry =
                                        vhdx_bat_entry_offset (*entry) | VHDX_PAYLOAD_FULLY_PRESENT;
                        else
                                need_bitmap = TRUE;
                }
                if (!need_bitmap)
                        continue;
                if (!vhdx_io_write (w->io, bits, VHDX_MiB, w->next_free, error))
                        return FALSE;
                w->bat[vhdx_bat_bitmap_index (&w->geometry, chunk)] =
                        w->next_free | VHDX_SB_PRESENT;
                w->next_free += VHDX_MiB;
        }
        return TRUE;
}

static void
put_utf16 (guint8 *out, const char *text, gsize *n_bytes)
{
        g_autofree gunichar2 *utf16 = NULL;
        glong n = 0;

        utf16 = g_utf8_to_utf16 (text, -1, NULL, &n, NULL);
        for (glong i = 0; utf16 != NULL && i < n; i++)
                vhdx_put_le16 (out + 2 * i, utf16[i]);
        *n_bytes = utf16 != NULL ? (gsize) n * 2 : 0;
}

/* The parent locator item: the parent's DataWriteGuid and paths, with backslashes. */
static GBytes *
encode_locator (VhdxCreator *w, GError **error)
{
        g_autoptr (GPtrArray) locator = vhdx_parent_locator_new ();
        g_autofree char *linkage = vhdx_parent_linkage_text (&w->params.parent_data_write_guid);
        g_autofree char *relative =
                g_strdelimit (g_strdup (w->params.parent_relative_path), "/", '\\');

        vhdx_parent_locator_set (locator, "parent_linkage", linkage);
        vhdx_parent_locator_set (locator, "relative_path", relative);
        if (w->params.parent_absolute_path != NULL) {
                g_autofree char *absolute =
                        g_strdelimit (g_strdup (w->params.parent_absolute_path), "/", '\\');

                vhdx_parent_locator_set (locator, "absolute_win32_path", absolute);
        }
        return vhdx_parent_locator_encode (locator, error);
}

static void
put_metadata_entry (guint8 *table,
                    guint index,
                    const VhdxGuid *id,
                    guint32 offset,
                    guint32 length,
                    guint32 flags)
{
        guint8 *e = table + VHDX_METADATA_HEADER_SIZE + index * VHDX_METADATA_ENTRY_SIZE;

        memcpy (e + VHDX_METADATA_ENTRY_OFF_ITEM_ID, id->bytes, 16);
        vhdx_put_le32 (e + VHDX_METADATA_ENTRY_OFF_OFFSET, offset);
        vhdx_put_le32 (e + VHDX_METADATA_ENTRY_OFF_LENGTH, length);
        vhdx_put_le32 (e + VHDX_METADATA_ENTRY_OFF_FLAGS, flags);
}

static gboolean
write_metadata (VhdxCreator *w, GError **error)
{
        g_autofree guint8 *region = g_malloc0 (METADATA_LENGTH);
        guint8 *items = region + METADATA_ITEMS_OFFSET;
        const guint32 vd = VHDX_METADATA_FLAG_IS_VIRTUAL_DISK | VHDX_METADATA_FLAG_IS_REQUIRED;
        guint32 flags = 0;
        guint count = 5;

        if (w->params.disk_type == VHDX_DISK_TYPE_FIXED)
                flags |= VHDX_FILE_PARAMS_LEAVE_BLOCK_ALLOCATED;
        if (w->params.disk_type == VHDX_DISK_TYPE_DIFFERENCING)
                flags |= VHDX_FILE_PARAMS_HAS_PARENT;
        vhdx_put_le32 (items + 0, w->params.block_size);
        vhdx_put_le32 (items + 4, flags);
        vhdx_put_le64 (items + 8, w->params.virtual_size);
        memcpy (items + 16, w->params.virtual_disk_id.bytes, 16);
        vhdx_put_le32 (items + 32, w->params.logical_sector_size);
        vhdx_put_le32 (items + 36, w->params.physical_sector_size);

        memcpy (region + VHDX_METADATA_OFF_SIGNATURE, VHDX_METADATA_SIGNATURE, 8);
        put_metadata_entry (region, 0, &vhdx_guid_item_file_parameters, METADATA_ITEMS_OFFSET, 8,
                            VHDX_METADATA_FLAG_IS_REQUIRED);
        put_metadata_entry (region, 1, &vhdx_guid_item_virtual_disk_size, METADATA_ITEMS_OFFSET + 8,
                            8, vd);
        put_metadata_entry (region, 2, &vhdx_guid_item_virtual_disk_id, METADATA_ITEMS_OFFSET + 16,
                            16, vd);
        put_metadata_entry (region, 3, &vhdx_guid_item_logical_sector_size,
                            METADATA_ITEMS_OFFSET + 32, 4, vd);
        put_metadata_entry (region, 4, &vhdx_guid_item_physical_sector_size,
                            METADATA_ITEMS_OFFSET + 36, 4, vd);
        if (w->params.disk_type == VHDX_DISK_TYPE_DIFFERENCING) {
                g_autoptr (GBytes) locator = encode_locator (w, error);
                gsize length;
                const guint8 *data;

                if (locator == NULL)
                        return FALSE;
                data = g_bytes_get_data (locator, &length);
                if (length > METADATA_LENGTH - METADATA_ITEMS_OFFSET - 40) {
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                                     _ ("The parent locator of %" G_GSIZE_FORMAT " bytes does not "
                                        "fit the metadata region"),
                                     length);
                        return FALSE;
                }
                memcpy (items + 40, data, length);
                put_metadata_entry (region, count++, &vhdx_guid_item_parent_locator,
                                    METADATA_ITEMS_OFFSET + 40, (guint32) length,
                                    VHDX_METADATA_FLAG_IS_REQUIRED);
        }
        vhdx_put_le16 (region + VHDX_METADATA_OFF_ENTRY_COUNT, (guint16) count);
        return vhdx_io_write (w->io, region, METADATA_LENGTH, w->metadata_offset, error);
}

static gboolean
write_header_section (VhdxCreator *w, GError **error)
{
        g_autofree guint8 *section = g_malloc0 (VHDX_REGION_TABLE2_OFFSET + VHDX_REGION_TABLE_SIZE);
        guint8 *table = section + VHDX_REGION_TABLE1_OFFSET;
        VhdxHeader header = { 0 };
        gsize creator_bytes;

        memcpy (section, VHDX_FILE_ID_SIGNATURE, 8);
        put_utf16 (section + VHDX_FILE_ID_CREATOR_OFFSET, CREATOR, &creator_bytes);

        vhdx_guid_new_random (&header.file_write_guid);
        header.data_write_guid = w->params.data_write_guid;
        header.version = VHDX_HEADER_VERSION;
        header.log_version = VHDX_LOG_VERSION;
        header.log_length = w->params.log_size;
        header.log_offset = LOG_OFFSET;
        for (guint i = 0; i < 2; i++) {
                header.sequence = i + 1;
                vhdx_header_serialize (&header, section + (i == 0 ? VHDX_HEADER1_OFFSET
                                                                  : VHDX_HEADER2_OFFSET));
        }

        memcpy (table + VHDX_REGION_OFF_SIGNATURE, VHDX_REGION_TABLE_SIGNATURE, 4);
        vhdx_put_le32 (table + VHDX_REGION_OFF_ENTRY_COUNT, 2);
        {
                guint8 *e = table + VHDX_REGION_HEADER_SIZE;
                memcpy (e, vhdx_guid_region_bat.bytes, 16);
                vhdx_put_le64 (e + VHDX_REGION_ENTRY_OFF_FILE_OFFSET, w->bat_offset);
                vhdx_put_le32 (e + VHDX_REGION_ENTRY_OFF_LENGTH, w->bat_length);
                vhdx_put_le32 (e + VHDX_REGION_ENTRY_OFF_REQUIRED, 1);
                e += VHDX_REGION_ENTRY_SIZE;
                memcpy (e, vhdx_guid_region_metadata.bytes, 16);
                vhdx_put_le64 (e + VHDX_REGION_ENTRY_OFF_FILE_OFFSET, w->metadata_offset);
                vhdx_put_le32 (e + VHDX_REGION_ENTRY_OFF_LENGTH, METADATA_LENGTH);
                vhdx_put_le32 (e + VHDX_REGION_ENTRY_OFF_REQUIRED, 1);
        }
        vhdx_put_le32 (table + VHDX_REGION_OFF_CHECKSUM,
                       vhdx_crc32c_with_zero_field (table, VHDX_REGION_TABLE_SIZE,
                                                    VHDX_REGION_OFF_CHECKSUM));
        memcpy (section + VHDX_REGION_TABLE2_OFFSET, table, VHDX_REGION_TABLE_SIZE);
        return vhdx_io_write (w->io, section, VHDX_REGION_TABLE2_OFFSET + VHDX_REGION_TABLE_SIZE, 0,
                              error);
}

gboolean
vhdx_creator_finish (VhdxCreator *w, GError **error)
{
        return vhdx_creator_finish_full (w, TRUE, error);
}

gboolean
vhdx_creator_finish_full (VhdxCreator *w, gboolean durable, GError **error)
{
        g_autofree guint8 *bat = NULL;
        guint64 size;

        g_return_val_if_fail (!w->finished, FALSE);
        w->finished = TRUE;

        if (w->params.disk_type == VHDX_DISK_TYPE_DIFFERENCING && !finish_bitmaps (w, error))
                return FALSE;
        /* Blocks hold zeros where nothing was written: make the file reach
         * the end of the last one. */
        if (!vhdx_io_get_size (w->io, &size, error))
                return FALSE;
        if (size < w->next_free && !vhdx_io_write (w->io, "", 1, w->next_free - 1, error))
                return FALSE;

        /* The BAT in 1 MiB pieces; all-zero pieces are left as holes, so a
         * large empty image takes little space. */
        bat = g_malloc (VHDX_MiB);
        for (guint64 done = 0; done < w->bat_length; done += VHDX_MiB) {
                guint64 first = done / VHDX_BAT_ENTRY_SIZE;
                gboolean zero = TRUE;

                memset (bat, 0, VHDX_MiB);
                for (guint64 i = first; i < w->geometry.bat_entries && i < first + VHDX_MiB / 8;
                     i++) {
                        vhdx_put_le64 (bat + (i - first) * VHDX_BAT_ENTRY_SIZE, w->bat[i]);
                        zero = zero && w->bat[i] == 0;
                }
                if (!zero && !vhdx_io_write (w->io, bat, VHDX_MiB, w->bat_offset + done, error))
                        return FALSE;
        }
        if (!write_metadata (w, error) || (durable && !vhdx_io_flush (w->io, error)))
                return FALSE;
        /* The headers and region tables last: only now is the file a VHDX. */
        return write_header_section (w, error) && (!durable || vhdx_io_flush (w->io, error));
}
