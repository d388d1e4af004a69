/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The block allocation table: its geometry (chunk ratio, entry counts, where
 * each block's and each sector bitmap's entry is), what its entry states
 * mean, and the table itself, loaded lazily in pages and cached.  Pages are
 * published with an atomic compare-and-swap, so lookups from several
 * threads need no lock.  Every entry is checked when it is used: a state
 * allowed for the disk type, and a stored block inside the file on no other
 * structure.
 */
#pragma once

#include "vhdx-format.h"
#include "vhdx-io.h"
#include "vhdx-types.h"

G_BEGIN_DECLS

/* A chunk is 2^23 logical sectors: what one 1 MiB sector bitmap block
 * describes, one bit a sector (MS-VHDX 2.5). */
#define VHDX_CHUNK_SECTORS (G_GUINT64_CONSTANT (1) << 23)
/* A sector bitmap block's size. */
#define VHDX_BITMAP_BLOCK_SIZE VHDX_MiB

/* The shape of a BAT, from the metadata that determines it. */
typedef struct {
        guint64 virtual_size;
        guint32 block_size;
        guint32 logical_sector_size;
        gboolean differencing;
        guint64 chunk_ratio;    /* payload blocks per chunk */
        guint64 payload_blocks; /* blocks of the virtual disk */
        guint64 bat_entries;    /* entries of the table, sector bitmap entries included */
} VhdxBatGeometry;

/*
 * The geometry of a disk of @virtual_size bytes.  The sizes must be valid
 * (a power-of-two block size from 1 MiB to 256 MiB, 512 or 4096-byte
 * sectors, a non-zero virtual size up to 64 TiB), as the metadata parser
 * and vhdx_create_params_resolve() check them.  Fixed and dynamic disks
 * interleave a bitmap entry after every chunk but the last; differencing
 * disks have whole chunks (MS-VHDX 2.5).
 */
void vhdx_bat_geometry_init (VhdxBatGeometry *geometry,
                             guint64 virtual_size,
                             guint32 block_size,
                             guint32 logical_sector_size,
                             gboolean differencing);

/* Bytes the table takes. */
static inline guint64
vhdx_bat_geometry_table_bytes (const VhdxBatGeometry *g)
{
        return g->bat_entries * VHDX_BAT_ENTRY_SIZE;
}

/* Index of the BAT entry of payload block @block. */
static inline guint64
vhdx_bat_payload_index (const VhdxBatGeometry *g, guint64 block)
{
        return block + block / g->chunk_ratio;
}

/* Index of the sector bitmap entry of chunk @chunk. */
static inline guint64
vhdx_bat_bitmap_index (const VhdxBatGeometry *g, guint64 chunk)
{
        return chunk * (g->chunk_ratio + 1) + g->chunk_ratio;
}

/* TRUE when entry @index is a sector bitmap entry. */
static inline gboolean
vhdx_bat_index_is_bitmap (const VhdxBatGeometry *g, guint64 index)
{
        return (index + 1) % (g->chunk_ratio + 1) == 0;
}

/* The payload block whose entry is @index (not a bitmap entry); past
 * payload_blocks for the padding of a differencing disk's last chunk. */
static inline guint64
vhdx_bat_index_block (const VhdxBatGeometry *g, guint64 index)
{
        return index - index / (g->chunk_ratio + 1);
}

/* Bytes of the virtual disk that block @block covers (the last one may be short). */
static inline guint64
vhdx_bat_block_length (const VhdxBatGeometry *g, guint64 block)
{
        return MIN ((guint64) g->block_size, g->virtual_size - block * g->block_size);
}

/* Logical sectors of one block. */
static inline guint64
vhdx_bat_sectors_per_block (const VhdxBatGeometry *g)
{
        return g->block_size / g->logical_sector_size;
}

static inline guint
vhdx_bat_entry_state (guint64 entry)
{
        return (guint) (entry & VHDX_BAT_STATE_MASK);
}

static inline guint64
vhdx_bat_entry_offset (guint64 entry)
{
        return entry & VHDX_BAT_OFFSET_MASK;
}

/* TRUE when a payload entry of state @state is allowed in a disk of @type:
 * PARTIALLY_PRESENT only in differencing disks, 4 and 5 never. */
gboolean vhdx_bat_payload_state_is_valid (guint state, VhdxDiskType type);

/* A range of the file that a structure other than a payload block holds. */
typedef struct {
        guint64 start;
        guint64 end;
        const char *name; /* translated, e.g. "the BAT" */
} VhdxFileRange;

typedef struct _VhdxBat VhdxBat;

/* Entries per lazily loaded page (32 KiB of BAT). */
#define VHDX_BAT_PAGE_ENTRIES 4096

/* Entries per 4 KiB sector, the unit in which the log updates the table. */
#define VHDX_BAT_SECTOR_ENTRIES (VHDX_LOG_SECTOR_SIZE / VHDX_BAT_ENTRY_SIZE)

/* Entries per step of a streaming scan (1 MiB of BAT). */
#define VHDX_BAT_SCAN_ENTRIES (128 * 1024)

/*
 * The BAT at @file_offset of @io (borrowed, must outlive it) of a disk of
 * @disk_type with @geometry, in a file of @file_size bytes in which
 * @reserved (a GArray of VhdxFileRange, copied) lie.
 */
G_GNUC_WARN_UNUSED_RESULT VhdxBat *vhdx_bat_new (VhdxIo *io,
                                                 guint64 file_offset,
                                                 const VhdxBatGeometry *geometry,
                                                 VhdxDiskType disk_type,
                                                 guint64 file_size,
                                                 GArray *reserved);
void vhdx_bat_free (VhdxBat *bat);

const VhdxBatGeometry *vhdx_bat_get_geometry (VhdxBat *bat);

/* The raw 64-bit entry @index, loading its page on first use. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_bat_get (VhdxBat *bat,
                                                 guint64 index,
                                                 guint64 *entry,
                                                 GError **error);

/*
 * Set entry @index in the table in memory (its page loaded on the way);
 * readers see the old entry or the new one.  The file is written through the
 * journal: vhdx_bat_sector_image() gives the sector to log.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_bat_set (VhdxBat *bat,
                                                 guint64 index,
                                                 guint64 entry,
                                                 GError **error);
/* The file offset of the 4 KiB sector that holds entry @index. */
guint64 vhdx_bat_sector_offset (VhdxBat *bat, guint64 index);
/* The 4 KiB sector that holds entry @index, as it is in memory, in file order. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_bat_sector_image (VhdxBat *bat,
                                                          guint64 index,
                                                          guint8 *sector,
                                                          GError **error);
/* The file grew (an image being written): stored blocks may reach @file_size. */
void vhdx_bat_set_file_size (VhdxBat *bat, guint64 file_size);

/*
 * Check @entry as the entry of payload block @block: a state allowed for
 * the disk type and, for stored blocks, a block inside the file past the
 * header section and on no reserved range.  Returns its state and, for
 * FULLY_PRESENT and PARTIALLY_PRESENT, its file offset (0 otherwise).
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_bat_check_payload_entry (VhdxBat *bat,
                                                                 guint64 block,
                                                                 guint64 entry,
                                                                 guint *state,
                                                                 guint64 *file_offset,
                                                                 GError **error);

/* Look up and check the entry of payload block @block (vhdx_bat_check_payload_entry()). */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_bat_lookup_block (VhdxBat *bat,
                                                          guint64 block,
                                                          guint *state,
                                                          guint64 *file_offset,
                                                          GError **error);

/*
 * The file offset of the sector bitmap of chunk @chunk, which the
 * PARTIALLY_PRESENT block @block needs: its entry must be SB_BLOCK_PRESENT
 * and the 1 MiB bitmap block inside the file on no reserved range.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_bat_lookup_bitmap (VhdxBat *bat,
                                                           guint64 block,
                                                           guint64 *file_offset,
                                                           GError **error);

/*
 * Read @count entries from @first into @entries (host order) straight from the
 * file, without filling the cache: for scans of the whole table (allocation
 * figures, check) that must not keep a large BAT in memory.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean
vhdx_bat_read_range (VhdxBat *bat, guint64 first, gsize count, guint64 *entries, GError **error);

/* Called for each entry of a scan, with its index; returns FALSE with @error
 * to stop the scan. */
typedef gboolean (*VhdxBatScanFunc) (guint64 index,
                                     guint64 entry,
                                     gpointer user_data,
                                     GError **error);

/*
 * Call @func for the entries of the table in order, read in steps of
 * VHDX_BAT_SCAN_ENTRIES without filling the cache.  Entries that lie in holes
 * of a sparse BAT are zero and are skipped unread: @func sees every entry
 * that may be non-zero.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_bat_scan (VhdxBat *bat,
                                                  VhdxBatScanFunc func,
                                                  gpointer user_data,
                                                  GError **error);

G_END_DECLS
