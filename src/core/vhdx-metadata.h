/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The metadata region: its table and the known items. */
#pragma once

#include "vhdx-format.h"
#include "vhdx-io.h"

G_BEGIN_DECLS

typedef struct {
        guint32 block_size;
        gboolean leave_block_allocated;
        gboolean has_parent;
        guint64 virtual_size;
        VhdxGuid virtual_disk_id;
        guint32 logical_sector_size;
        guint32 physical_sector_size;
        /* File offsets of the values of the items that can be changed. */
        guint64 virtual_size_offset;
        guint64 virtual_disk_id_offset;
        guint64 physical_sector_size_offset;
        /* The parent locator item, if present: file offset and length. */
        gboolean has_parent_locator;
        guint64 parent_locator_offset;
        guint32 parent_locator_length;
} VhdxMetadata;

/*
 * Parse the metadata table of the region at @region_offset (@region_length
 * bytes) and every known item; refuse unknown required items and check that
 * every required item is present and holds an allowed value.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_metadata_read (VhdxIo *io,
                                                       guint64 region_offset,
                                                       guint32 region_length,
                                                       VhdxMetadata *out,
                                                       GError **error);

/* The entries of the metadata @table (its 64 KiB as read): at most the
 * format's limit, whatever its count says. */
guint vhdx_metadata_table_count (const guint8 *table);

/* The index of the entry of item @item_id in @table, or -1. */
int vhdx_metadata_table_find (const guint8 *table, const VhdxGuid *item_id);

/*
 * Where an item of @length bytes can go in the metadata region of
 * @region_length bytes that @table describes: the lowest 8-byte aligned
 * offset (from the region's start) past the table that meets no item of
 * it.  FALSE when there is none.
 */
gboolean vhdx_metadata_table_find_space (const guint8 *table,
                                         guint32 region_length,
                                         guint32 length,
                                         guint32 *offset);

/* Whether @id is one of the items MS-VHDX 2.6.2 defines. */
gboolean vhdx_metadata_item_is_known (const VhdxGuid *id);

/* Entry @index of @table (its 32 bytes). */
static inline const guint8 *
vhdx_metadata_table_entry (const guint8 *table, guint index)
{
        return table + VHDX_METADATA_HEADER_SIZE + (gsize) index * VHDX_METADATA_ENTRY_SIZE;
}

/* Remove entry @index of @table: the later ones move up, the last slot
 * becomes zeros, the count is one less. */
void vhdx_metadata_table_remove (guint8 *table, guint index);

/* Append a copy of @entry naming its item at @offset of the region: FALSE
 * when @table holds as many entries as it can. */
gboolean vhdx_metadata_table_append (guint8 *table, const guint8 *entry, guint32 offset);

G_END_DECLS
