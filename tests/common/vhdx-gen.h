/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VhdxGen: a test-only VHDX writer.  It builds complete fixed or dynamic
 * images from parameters and a sparse record of what was written to the
 * virtual disk, together with the raw disk those images must read back as.
 *
 * It shares only the layout constants of vhdx-format.h and the CRC-32C
 * routine with the engine; it never calls the engine's parsers, so the
 * two can check each other.  The GUIDs of the known regions and metadata
 * items are encoded here from their text form for the same reason.
 */
#pragma once

#include <glib.h>

#include "vhdx-format.h"
#include "vhdx-types.h"

G_BEGIN_DECLS

#define VHDX_GEN_CREATOR "libvhdx test generator"

typedef struct {
        VhdxDiskType disk_type;         /* VHDX_DISK_TYPE_FIXED or VHDX_DISK_TYPE_DYNAMIC */
        guint64 virtual_size;           /* > 0, a multiple of logical_sector_size */
        guint32 block_size;             /* power of two, 1 MiB .. 256 MiB */
        guint32 logical_sector_size;    /* 512 or 4096 */
        guint32 physical_sector_size;   /* 512 or 4096 */
        guint32 log_size;               /* a multiple of 1 MiB, at least 1 MiB */
        gboolean metadata_region_first; /* metadata listed before the BAT, as Disk2VHD does */
        gboolean identical_headers;     /* both headers sequence 1 and byte-identical */
        gboolean shuffle_blocks;        /* payload blocks stored out of virtual order */
        guint32 zero_state;             /* BAT state of unwritten dynamic blocks: 0 or 2 */
        guint32 seed;                   /* GUIDs and the shuffle derive from it */
} VhdxGenParams;

/* The five metadata items every fixed or dynamic image carries, in table order. */
typedef enum {
        VHDX_GEN_ITEM_FILE_PARAMETERS,
        VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE,
        VHDX_GEN_ITEM_VIRTUAL_DISK_ID,
        VHDX_GEN_ITEM_LOGICAL_SECTOR_SIZE,
        VHDX_GEN_ITEM_PHYSICAL_SECTOR_SIZE,
        VHDX_GEN_N_ITEMS,
} VhdxGenItem;

/*
 * Where the generator puts everything, as file offsets.  Corruption tests
 * patch the built image at these offsets.
 */
typedef struct {
        guint64 header_offset[2];       /* header 1, header 2 */
        guint64 region_table_offset[2]; /* region table 1, region table 2 */
        guint region_index_bat;         /* entry index of the BAT in both region tables */
        guint region_index_metadata;
        guint region_count; /* entries in each region table */

        guint64 log_offset;
        guint32 log_length;

        guint64 metadata_offset; /* metadata region = metadata table */
        guint32 metadata_length;
        guint metadata_count;                            /* entries in the metadata table */
        guint64 metadata_entry_offset[VHDX_GEN_N_ITEMS]; /* the item's 32-byte table entry */
        guint64 metadata_item_offset[VHDX_GEN_N_ITEMS];  /* the item's payload */

        guint64 bat_offset;
        guint32 bat_length;  /* rounded up to 1 MiB */
        guint64 bat_entries; /* N + (N - 1) / chunk_ratio */
        guint64 chunk_ratio;
        guint64 payload_blocks; /* N */

        guint64 payload_offset;   /* first payload block */
        guint64 allocated_blocks; /* payload blocks stored in the file */
        guint64 file_size;
} VhdxGenLayout;

typedef struct _VhdxGen VhdxGen;

/* GUIDs of the known regions and items, encoded independently of the engine. */
extern const VhdxGuid vhdx_gen_guid_bat;
extern const VhdxGuid vhdx_gen_guid_metadata;
extern const VhdxGuid vhdx_gen_guid_item[VHDX_GEN_N_ITEMS];

/* Hyper-V-like defaults: dynamic, 1 GiB, 32 MiB blocks, 512/4096 sectors, 1 MiB log. */
void vhdx_gen_params_init (VhdxGenParams *params);

/* Parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" into the on-disk layout; aborts on bad text. */
VhdxGuid vhdx_gen_guid_from_text (const char *text);

/* Returns NULL (with a critical warning) on parameters outside the format's limits. */
G_GNUC_WARN_UNUSED_RESULT VhdxGen *vhdx_gen_new (const VhdxGenParams *params);
void vhdx_gen_free (VhdxGen *gen);
const VhdxGenParams *vhdx_gen_get_params (VhdxGen *gen);

/*
 * Writes to the virtual disk.  In a dynamic image every block touched
 * becomes FULLY_PRESENT, even when the data written are zeros.
 */
void vhdx_gen_write (VhdxGen *gen, guint64 offset, const void *data, gsize len);
void vhdx_gen_fill_byte (VhdxGen *gen, guint64 offset, guint64 len, guint8 value);
void vhdx_gen_fill_pattern (VhdxGen *gen, guint64 offset, guint64 len, guint32 seed);

/*
 * The deterministic pattern: each byte is a function of its absolute
 * virtual offset and the seed, so any sub-range can be recomputed.
 */
guint8 vhdx_gen_pattern_byte (guint64 offset, guint32 seed);
void vhdx_gen_pattern_fill_buffer (guint8 *buf, guint64 offset, gsize len, guint32 seed);

/*
 * Adds a region entry (after the BAT and metadata entries) backed by
 * @length bytes of zeros, rounded up to 1 MiB and placed after the BAT.
 */
void vhdx_gen_add_region (VhdxGen *gen, const VhdxGuid *guid, gboolean required, guint32 length);
/* Adds a metadata item after the standard five; @data is copied. */
void vhdx_gen_add_metadata_item (VhdxGen *gen,
                                 const VhdxGuid *item_id,
                                 guint32 flags,
                                 const void *data,
                                 guint32 len);

/* The layout of the image vhdx_gen_build() would return now. */
void vhdx_gen_get_layout (VhdxGen *gen, VhdxGenLayout *layout);
/* File offset of BAT entry @index. */
guint64 vhdx_gen_layout_bat_entry_offset (const VhdxGenLayout *layout, guint64 index);
/* File offset of entry @index of region table @table (1 or 2). */
guint64 vhdx_gen_layout_region_entry_offset (const VhdxGenLayout *layout, guint table, guint index);
/* BAT index of payload block @block: block + block / chunk_ratio. */
guint64 vhdx_gen_block_bat_index (VhdxGen *gen, guint64 block);
/* TRUE and the block's file offset when payload block @block is stored in the file. */
gboolean vhdx_gen_block_file_offset (VhdxGen *gen, guint64 block, guint64 *file_offset);
gboolean vhdx_gen_block_is_allocated (VhdxGen *gen, guint64 block);

/* The VHDX file, in memory.  Only for files of a few hundred MiB at most. */
G_GNUC_WARN_UNUSED_RESULT GByteArray *vhdx_gen_build_array (VhdxGen *gen);
G_GNUC_WARN_UNUSED_RESULT GBytes *vhdx_gen_build (VhdxGen *gen);
/* The VHDX file on disk, written sparsely: only the non-zero parts are written. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_gen_write_file (VhdxGen *gen,
                                                        const char *path,
                                                        GError **error);

/* The expected raw virtual disk.  vhdx_gen_build_raw() holds it all in memory. */
G_GNUC_WARN_UNUSED_RESULT GBytes *vhdx_gen_build_raw (VhdxGen *gen);
void vhdx_gen_read_raw (VhdxGen *gen, guint64 offset, void *buf, gsize len);
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_gen_write_raw_file (VhdxGen *gen,
                                                            const char *path,
                                                            GError **error);

/*
 * Recompute the CRC-32C of a 4 KiB header or a 64 KiB region table after
 * a deliberate edit; @data points at the start of the structure.
 */
void vhdx_gen_update_header_checksum (guint8 *header);
void vhdx_gen_update_region_table_checksum (guint8 *table);

/* ---- Identity, as the generator wrote it ---- */

/* The GUIDs the generator put in the headers and the Virtual Disk ID item. */
void vhdx_gen_get_guids (VhdxGen *gen,
                         VhdxGuid *file_write_guid,
                         VhdxGuid *data_write_guid,
                         VhdxGuid *virtual_disk_id);
/* The sequence number the generator gives header @header (1 or 2). */
guint64 vhdx_gen_get_header_sequence (VhdxGen *gen, guint header);
/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" in lowercase, the inverse of vhdx_gen_guid_from_text(). */
G_GNUC_WARN_UNUSED_RESULT char *vhdx_gen_guid_to_text (const VhdxGuid *guid);

/*
 * A 4 KiB header as the generator writes it, with @sequence and @log_guid
 * (NULL: zero, an empty log), its checksum computed.
 */
void vhdx_gen_build_header (VhdxGen *gen,
                            guint64 sequence,
                            const VhdxGuid *log_guid,
                            guint8 *header);
/* BAT entry @index as the generator writes it (sector-bitmap entries are 0). */
guint64 vhdx_gen_bat_entry (VhdxGen *gen, guint64 index);

/* ---- The log (MS-VHDX 2.3.1), encoded by the generator itself ---- */

/* A data descriptor and its data sector when @data is set, else a zero descriptor. */
typedef struct {
        guint64 file_offset; /* 4 KiB-aligned */
        const guint8 *data;  /* the whole 4 KiB sector to write at file_offset */
        guint64 zero_length; /* zero descriptors: a multiple of 4 KiB */
} VhdxGenLogDescriptor;

typedef struct {
        guint64 sequence;            /* SequenceNumber, > 0 */
        guint32 tail;                /* Tail: log offset of the first entry of the sequence */
        VhdxGuid log_guid;           /* LogGuid: the header's */
        guint64 flushed_file_offset; /* FlushedFileOffset */
        guint64 last_file_offset;    /* LastFileOffset */
} VhdxGenLogEntry;

/*
 * One log entry, EntryLength bytes: the entry header and descriptors in
 * the first sectors, then one data sector per data descriptor, with the
 * CRC-32C of the whole entry.
 */
G_GNUC_WARN_UNUSED_RESULT GBytes *vhdx_gen_encode_log_entry (
        const VhdxGenLogEntry *entry,
        const VhdxGenLogDescriptor *descriptors,
        guint n_descriptors);

/* What vhdx_gen_make_dirty() wrote. */
typedef struct {
        guint64 block;             /* the payload block allocated through the log */
        guint64 block_file_offset; /* where its payload was written */
        guint64 length;            /* payload bytes written (the block, clipped to the disk) */
        guint64 bat_entry_offset;  /* file offset of its BAT entry, changed only in the log */
        guint64 log_entry_offset;  /* file offset of the one log entry */
        guint32 log_entry_length;
        guint64 log_sequence;
        VhdxGuid log_guid;
        guint64 flushed_file_offset;
        guint64 last_file_offset;
        guint header_index;      /* the current header afterwards: 1 or 2 */
        guint64 header_sequence; /* and its sequence number */
} VhdxGenDirty;

/*
 * Leaves the file at @path, which must be what vhdx_gen_write_file() wrote
 * for @gen (a dynamic image), as a crash during the allocation of block
 * @block would: the payload (the pattern @seed) written in place after the
 * last block, the BAT sector pointing at it only in the log (one entry of
 * one data descriptor at the start of the log), and both headers rewritten
 * in the order of MS-VHDX 2.2.2.1 to name the log.  The generator's record
 * is not changed: call vhdx_gen_fill_pattern() afterwards for the raw disk
 * the image reads as once the log is replayed (its layout then no longer
 * describes the file).
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_gen_make_dirty (VhdxGen *gen,
                                                        const char *path,
                                                        guint64 block,
                                                        guint32 seed,
                                                        VhdxGenDirty *dirty,
                                                        GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxGen, vhdx_gen_free)

G_END_DECLS
