/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The metadata table and its known items (see vhdx-metadata.h). */
#include "vhdx-metadata.h"

#include "vhdx-private.h"

typedef enum {
        ITEM_FILE_PARAMETERS,
        ITEM_VIRTUAL_DISK_SIZE,
        ITEM_VIRTUAL_DISK_ID,
        ITEM_LOGICAL_SECTOR_SIZE,
        ITEM_PHYSICAL_SECTOR_SIZE,
        ITEM_PARENT_LOCATOR,
        N_ITEMS
} KnownItem;

typedef struct {
        const VhdxGuid *guid;
        const char *name;
        guint32 length; /* exact payload length, 0 = variable */
        gboolean required;
} KnownItemInfo;

static const KnownItemInfo known_items[N_ITEMS] = {
        [ITEM_FILE_PARAMETERS] = { &vhdx_guid_item_file_parameters, N_ ("file parameters"), 8,
                                   TRUE },
        [ITEM_VIRTUAL_DISK_SIZE] = { &vhdx_guid_item_virtual_disk_size, N_ ("virtual disk size"), 8,
                                     TRUE },
        [ITEM_VIRTUAL_DISK_ID] = { &vhdx_guid_item_virtual_disk_id, N_ ("virtual disk ID"), 16,
                                   TRUE },
        [ITEM_LOGICAL_SECTOR_SIZE] = { &vhdx_guid_item_logical_sector_size,
                                       N_ ("logical sector size"), 4, TRUE },
        [ITEM_PHYSICAL_SECTOR_SIZE] = { &vhdx_guid_item_physical_sector_size,
                                        N_ ("physical sector size"), 4, TRUE },
        [ITEM_PARENT_LOCATOR] = { &vhdx_guid_item_parent_locator, N_ ("parent locator"), 0, FALSE },
};

typedef struct {
        gboolean present;
        guint64 file_offset;
        guint32 length;
        guint8 value[16];
} FoundItem;

static gboolean
read_item (VhdxIo *io,
           const KnownItemInfo *info,
           guint64 entry_offset,
           FoundItem *item,
           GError **error)
{
        g_autofree char *what = g_strdup_printf (_ ("metadata item “%s”"), _ (info->name));

        if (info->length == 0)
                return TRUE;
        if (item->length != info->length) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, what, entry_offset,
                                _ ("expected length %u, found %u"), info->length, item->length);
                return FALSE;
        }
        return vhdx_io_read_exact (io, item->value, info->length, item->file_offset, what, error);
}

static gboolean
is_power_of_two (guint64 v)
{
        return v != 0 && (v & (v - 1)) == 0;
}

gboolean
vhdx_metadata_read (VhdxIo *io,
                    guint64 region_offset,
                    guint32 region_length,
                    VhdxMetadata *out,
                    GError **error)
{
        g_autofree guint8 *table = g_malloc (VHDX_METADATA_TABLE_SIZE);
        FoundItem items[N_ITEMS] = { { 0 } };
        const char *table_name = _ ("metadata table");
        guint16 count;
        guint32 flags;

        if (region_length < VHDX_METADATA_TABLE_SIZE) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("metadata region"), region_offset,
                                _ ("length %u is smaller than the 64 KiB table"), region_length);
                return FALSE;
        }
        if (!vhdx_io_read_exact (io, table, VHDX_METADATA_TABLE_SIZE, region_offset, table_name,
                                 error))
                return FALSE;
        if (memcmp (table + VHDX_METADATA_OFF_SIGNATURE, VHDX_METADATA_SIGNATURE, 8) != 0) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, table_name, region_offset,
                                _ ("expected signature “metadata”, found bytes "
                                   "%02x %02x %02x %02x %02x %02x %02x %02x"),
                                table[0], table[1], table[2], table[3], table[4], table[5],
                                table[6], table[7]);
                return FALSE;
        }
        count = vhdx_get_le16 (table + VHDX_METADATA_OFF_ENTRY_COUNT);
        if (count > VHDX_METADATA_MAX_ENTRIES) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, table_name, region_offset,
                                _ ("entry count %u exceeds the limit of %u"), count,
                                (guint) VHDX_METADATA_MAX_ENTRIES);
                return FALSE;
        }

        for (guint i = 0; i < count; i++) {
                const guint8 *e = table + VHDX_METADATA_HEADER_SIZE + i * VHDX_METADATA_ENTRY_SIZE;
                guint64 entry_offset = region_offset + VHDX_METADATA_HEADER_SIZE +
                                       (guint64) i * VHDX_METADATA_ENTRY_SIZE;
                VhdxGuid id = vhdx_get_guid (e + VHDX_METADATA_ENTRY_OFF_ITEM_ID);
                guint32 offset = vhdx_get_le32 (e + VHDX_METADATA_ENTRY_OFF_OFFSET);
                guint32 length = vhdx_get_le32 (e + VHDX_METADATA_ENTRY_OFF_LENGTH);
                guint32 item_flags = vhdx_get_le32 (e + VHDX_METADATA_ENTRY_OFF_FLAGS);
                g_autofree char *what = g_strdup_printf (_ ("metadata entry %u"), i);
                char guid[VHDX_GUID_STRING_LENGTH + 1];
                guint known;

                vhdx_guid_to_string_buf (&id, guid);
                if (length > VHDX_METADATA_ITEM_MAX_LENGTH) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, what, entry_offset,
                                        _ ("item %s length %u exceeds 1 MiB"), guid, length);
                        return FALSE;
                }
                if (length != 0 && (offset < VHDX_METADATA_TABLE_SIZE ||
                                    (guint64) offset + length > region_length)) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, what, entry_offset,
                                        _ ("item %s (offset %u, length %u) lies outside the "
                                           "metadata region's item area (64 KiB to %u)"),
                                        guid, offset, length, region_length);
                        return FALSE;
                }
                for (known = 0; known < N_ITEMS; known++) {
                        if (vhdx_guid_equal (&id, known_items[known].guid))
                                break;
                }
                if (known == N_ITEMS) {
                        if (item_flags & VHDX_METADATA_FLAG_IS_REQUIRED) {
                                vhdx_set_error (error, VHDX_ERROR_NOT_SUPPORTED, what, entry_offset,
                                                _ ("unknown metadata item %s is marked required"),
                                                guid);
                                return FALSE;
                        }
                        continue;
                }
                if (items[known].present) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, what, entry_offset,
                                        _ ("metadata item %s is listed twice"), guid);
                        return FALSE;
                }
                items[known].present = TRUE;
                items[known].file_offset = region_offset + offset;
                items[known].length = length;
                if (!read_item (io, &known_items[known], entry_offset, &items[known], error))
                        return FALSE;
        }

        for (guint k = 0; k < N_ITEMS; k++) {
                if (known_items[k].required && !items[k].present) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, table_name, region_offset,
                                        _ ("the required item “%s” is missing"),
                                        _ (known_items[k].name));
                        return FALSE;
                }
        }

        memset (out, 0, sizeof *out);
        out->block_size = vhdx_get_le32 (items[ITEM_FILE_PARAMETERS].value);
        flags = vhdx_get_le32 (items[ITEM_FILE_PARAMETERS].value + 4);
        out->leave_block_allocated = (flags & VHDX_FILE_PARAMS_LEAVE_BLOCK_ALLOCATED) != 0;
        out->has_parent = (flags & VHDX_FILE_PARAMS_HAS_PARENT) != 0;
        out->virtual_size = vhdx_get_le64 (items[ITEM_VIRTUAL_DISK_SIZE].value);
        out->virtual_disk_id = vhdx_get_guid (items[ITEM_VIRTUAL_DISK_ID].value);
        out->logical_sector_size = vhdx_get_le32 (items[ITEM_LOGICAL_SECTOR_SIZE].value);
        out->physical_sector_size = vhdx_get_le32 (items[ITEM_PHYSICAL_SECTOR_SIZE].value);
        out->virtual_size_offset = items[ITEM_VIRTUAL_DISK_SIZE].file_offset;
        out->virtual_disk_id_offset = items[ITEM_VIRTUAL_DISK_ID].file_offset;
        out->physical_sector_size_offset = items[ITEM_PHYSICAL_SECTOR_SIZE].file_offset;
        out->has_parent_locator = items[ITEM_PARENT_LOCATOR].present;
        out->parent_locator_offset = items[ITEM_PARENT_LOCATOR].file_offset;
        out->parent_locator_length = items[ITEM_PARENT_LOCATOR].length;

        if (!is_power_of_two (out->block_size) || out->block_size < VHDX_MIN_BLOCK_SIZE ||
            out->block_size > VHDX_MAX_BLOCK_SIZE) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("metadata item “file parameters”"),
                                items[ITEM_FILE_PARAMETERS].file_offset,
                                _ ("block size %u is not a power of two from 1 MiB to 256 MiB"),
                                out->block_size);
                return FALSE;
        }
        if (out->logical_sector_size != 512 && out->logical_sector_size != 4096) {
                vhdx_set_error (error, VHDX_ERROR_INVALID,
                                _ ("metadata item “logical sector size”"),
                                items[ITEM_LOGICAL_SECTOR_SIZE].file_offset,
                                _ ("expected 512 or 4096, found %u"), out->logical_sector_size);
                return FALSE;
        }
        if (out->physical_sector_size != 512 && out->physical_sector_size != 4096) {
                vhdx_set_error (error, VHDX_ERROR_INVALID,
                                _ ("metadata item “physical sector size”"),
                                items[ITEM_PHYSICAL_SECTOR_SIZE].file_offset,
                                _ ("expected 512 or 4096, found %u"), out->physical_sector_size);
                return FALSE;
        }
        if (out->virtual_size == 0 || out->virtual_size > VHDX_MAX_VIRTUAL_SIZE ||
            out->virtual_size % out->logical_sector_size != 0) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("metadata item “virtual disk size”"),
                                items[ITEM_VIRTUAL_DISK_SIZE].file_offset,
                                _ ("size %" PRIu64 " is not a non-zero multiple of "
                                   "the logical sector size (%u) up to 64 TiB"),
                                out->virtual_size, out->logical_sector_size);
                return FALSE;
        }
        if (out->has_parent && !out->has_parent_locator) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, table_name, region_offset,
                                _ ("the image has a parent but no parent locator item"));
                return FALSE;
        }
        return TRUE;
}

guint
vhdx_metadata_table_count (const guint8 *table)
{
        return MIN (vhdx_get_le16 (table + VHDX_METADATA_OFF_ENTRY_COUNT),
                    (guint) VHDX_METADATA_MAX_ENTRIES);
}

gboolean
vhdx_metadata_item_is_known (const VhdxGuid *id)
{
        for (guint i = 0; i < N_ITEMS; i++) {
                if (vhdx_guid_equal (id, known_items[i].guid))
                        return TRUE;
        }
        return FALSE;
}

void
vhdx_metadata_table_remove (guint8 *table, guint index)
{
        guint count = vhdx_metadata_table_count (table);
        guint8 *entry = (guint8 *) vhdx_metadata_table_entry (table, index);

        g_return_if_fail (index < count);
        memmove (entry, entry + VHDX_METADATA_ENTRY_SIZE,
                 (gsize) (count - index - 1) * VHDX_METADATA_ENTRY_SIZE);
        memset ((guint8 *) vhdx_metadata_table_entry (table, count - 1), 0,
                VHDX_METADATA_ENTRY_SIZE);
        vhdx_put_le16 (table + VHDX_METADATA_OFF_ENTRY_COUNT, (guint16) (count - 1));
}

gboolean
vhdx_metadata_table_append (guint8 *table, const guint8 *entry, guint32 offset)
{
        guint count = vhdx_metadata_table_count (table);
        guint8 *slot;

        if (count >= VHDX_METADATA_MAX_ENTRIES)
                return FALSE;
        slot = (guint8 *) vhdx_metadata_table_entry (table, count);
        memcpy (slot, entry, VHDX_METADATA_ENTRY_SIZE);
        vhdx_put_le32 (slot + VHDX_METADATA_ENTRY_OFF_OFFSET, offset);
        vhdx_put_le16 (table + VHDX_METADATA_OFF_ENTRY_COUNT, (guint16) (count + 1));
        return TRUE;
}

int
vhdx_metadata_table_find (const guint8 *table, const VhdxGuid *item_id)
{
        guint count = vhdx_metadata_table_count (table);

        for (guint i = 0; i < count; i++) {
                const guint8 *e = table + VHDX_METADATA_HEADER_SIZE + i * VHDX_METADATA_ENTRY_SIZE;
                VhdxGuid id = vhdx_get_guid (e + VHDX_METADATA_ENTRY_OFF_ITEM_ID);

                if (vhdx_guid_equal (&id, item_id))
                        return (int) i;
        }
        return -1;
}

typedef struct {
        guint64 start;
        guint64 end;
} ItemRange;

static gint
compare_ranges (gconstpointer a, gconstpointer b)
{
        const ItemRange *x = a, *y = b;

        return x->start < y->start ? -1 : x->start > y->start;
}

gboolean
vhdx_metadata_table_find_space (const guint8 *table,
                                guint32 region_length,
                                guint32 length,
                                guint32 *offset)
{
        guint count = vhdx_metadata_table_count (table);
        g_autoptr (GArray) items = g_array_new (FALSE, FALSE, sizeof (ItemRange));
        guint64 candidate = VHDX_METADATA_TABLE_SIZE;

        for (guint i = 0; i < count; i++) {
                const guint8 *e = table + VHDX_METADATA_HEADER_SIZE + i * VHDX_METADATA_ENTRY_SIZE;
                ItemRange range;

                range.start = vhdx_get_le32 (e + VHDX_METADATA_ENTRY_OFF_OFFSET);
                range.end = range.start + vhdx_get_le32 (e + VHDX_METADATA_ENTRY_OFF_LENGTH);
                if (range.end > range.start)
                        g_array_append_val (items, range);
        }
        g_array_sort (items, compare_ranges);
        for (guint i = 0; i < items->len; i++) {
                const ItemRange *range = &g_array_index (items, ItemRange, i);

                if (candidate + length <= range->start)
                        break;
                candidate = MAX (candidate, (range->end + 7) / 8 * 8);
        }
        if (candidate + length > region_length)
                return FALSE;
        *offset = (guint32) candidate;
        return TRUE;
}
