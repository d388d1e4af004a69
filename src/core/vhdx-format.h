/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * On-disk layout of VHDX files (MS-VHDX): field offsets, sizes, GUIDs,
 * limits and little-endian getters.  Structures are never cast over file
 * bytes; every parser reads fields through these getters.
 */
#pragma once

#include <glib.h>
#include <string.h>

G_BEGIN_DECLS

#define VHDX_KiB (G_GUINT64_CONSTANT (1024))
#define VHDX_MiB (VHDX_KiB * 1024)
#define VHDX_GiB (VHDX_MiB * 1024)
#define VHDX_TiB (VHDX_GiB * 1024)

/* Header section (first 1 MiB) */
#define VHDX_HEADER_SECTION_SIZE    (1 * VHDX_MiB)
#define VHDX_FILE_ID_OFFSET         0
#define VHDX_FILE_ID_SIZE           (64 * VHDX_KiB)
#define VHDX_FILE_ID_SIGNATURE      "vhdxfile"
#define VHDX_FILE_ID_CREATOR_OFFSET 8
#define VHDX_FILE_ID_CREATOR_SIZE   512

#define VHDX_HEADER1_OFFSET             (64 * VHDX_KiB)
#define VHDX_HEADER2_OFFSET             (128 * VHDX_KiB)
#define VHDX_HEADER_SIZE                (4 * VHDX_KiB)
#define VHDX_HEADER_SIGNATURE           "head"
#define VHDX_HEADER_OFF_SIGNATURE       0
#define VHDX_HEADER_OFF_CHECKSUM        4
#define VHDX_HEADER_OFF_SEQUENCE        8
#define VHDX_HEADER_OFF_FILE_WRITE_GUID 16
#define VHDX_HEADER_OFF_DATA_WRITE_GUID 32
#define VHDX_HEADER_OFF_LOG_GUID        48
#define VHDX_HEADER_OFF_LOG_VERSION     64
#define VHDX_HEADER_OFF_VERSION         66
#define VHDX_HEADER_OFF_LOG_LENGTH      68
#define VHDX_HEADER_OFF_LOG_OFFSET      72
#define VHDX_HEADER_VERSION             1
#define VHDX_LOG_VERSION                0

#define VHDX_REGION_TABLE1_OFFSET         (192 * VHDX_KiB)
#define VHDX_REGION_TABLE2_OFFSET         (256 * VHDX_KiB)
#define VHDX_REGION_TABLE_SIZE            (64 * VHDX_KiB)
#define VHDX_REGION_TABLE_SIGNATURE       "regi"
#define VHDX_REGION_OFF_SIGNATURE         0
#define VHDX_REGION_OFF_CHECKSUM          4
#define VHDX_REGION_OFF_ENTRY_COUNT       8
#define VHDX_REGION_HEADER_SIZE           16
#define VHDX_REGION_ENTRY_SIZE            32
#define VHDX_REGION_ENTRY_OFF_GUID        0
#define VHDX_REGION_ENTRY_OFF_FILE_OFFSET 16
#define VHDX_REGION_ENTRY_OFF_LENGTH      24
#define VHDX_REGION_ENTRY_OFF_REQUIRED    28
#define VHDX_REGION_MAX_ENTRIES           2047

/* Metadata region */
#define VHDX_METADATA_TABLE_SIZE           (64 * VHDX_KiB)
#define VHDX_METADATA_SIGNATURE            "metadata"
#define VHDX_METADATA_OFF_SIGNATURE        0
#define VHDX_METADATA_OFF_ENTRY_COUNT      10
#define VHDX_METADATA_HEADER_SIZE          32
#define VHDX_METADATA_ENTRY_SIZE           32
#define VHDX_METADATA_ENTRY_OFF_ITEM_ID    0
#define VHDX_METADATA_ENTRY_OFF_OFFSET     16
#define VHDX_METADATA_ENTRY_OFF_LENGTH     20
#define VHDX_METADATA_ENTRY_OFF_FLAGS      24
#define VHDX_METADATA_MAX_ENTRIES          2047
#define VHDX_METADATA_ITEM_MAX_LENGTH      (1 * VHDX_MiB)
#define VHDX_METADATA_FLAG_IS_USER         (1u << 0)
#define VHDX_METADATA_FLAG_IS_VIRTUAL_DISK (1u << 1)
#define VHDX_METADATA_FLAG_IS_REQUIRED     (1u << 2)

#define VHDX_FILE_PARAMS_LEAVE_BLOCK_ALLOCATED (1u << 0)
#define VHDX_FILE_PARAMS_HAS_PARENT            (1u << 1)

/* Log */
#define VHDX_LOG_SECTOR_SIZE               (4 * VHDX_KiB)
#define VHDX_LOG_ENTRY_SIGNATURE           "loge"
#define VHDX_LOG_ENTRY_HEADER_SIZE         64
#define VHDX_LOG_OFF_SIGNATURE             0
#define VHDX_LOG_OFF_CHECKSUM              4
#define VHDX_LOG_OFF_ENTRY_LENGTH          8
#define VHDX_LOG_OFF_TAIL                  12
#define VHDX_LOG_OFF_SEQUENCE              16
#define VHDX_LOG_OFF_DESCRIPTOR_COUNT      24
#define VHDX_LOG_OFF_LOG_GUID              32
#define VHDX_LOG_OFF_FLUSHED_FILE_OFFSET   48
#define VHDX_LOG_OFF_LAST_FILE_OFFSET      56
#define VHDX_LOG_DESCRIPTOR_SIZE           32
#define VHDX_LOG_ZERO_SIGNATURE            "zero"
#define VHDX_LOG_DATA_DESCRIPTOR_SIGNATURE "desc"
#define VHDX_LOG_DESC_OFF_SIGNATURE        0
#define VHDX_LOG_DESC_OFF_TRAILING_BYTES   4 /* data descriptor */
#define VHDX_LOG_DESC_OFF_LEADING_BYTES    8 /* data descriptor */
#define VHDX_LOG_DESC_OFF_ZERO_LENGTH      8 /* zero descriptor */
#define VHDX_LOG_DESC_OFF_FILE_OFFSET      16
#define VHDX_LOG_DESC_OFF_SEQUENCE         24
#define VHDX_LOG_DATA_SIGNATURE            "data"
#define VHDX_LOG_DATA_OFF_SEQUENCE_HIGH    4
#define VHDX_LOG_DATA_OFF_DATA             8
#define VHDX_LOG_DATA_OFF_SEQUENCE_LOW     4092
#define VHDX_LOG_LEADING_BYTES             8
#define VHDX_LOG_TRAILING_BYTES            4
/* The largest log read into memory for replay (Hyper-V and QEMU write 1 MiB
 * logs).  A read-only open of a dirty image holds the log and the sectors it
 * replays, about twice this at its peak, so it is kept well below what a
 * hostile file could otherwise make every open allocate. */
#define VHDX_LOG_MAX_LENGTH (32 * VHDX_MiB)
/* The most log entry bytes checksummed while looking for the active
 * sequence.  Entries of real logs do not overlap, so their lengths add up to
 * about the log's length; entries crafted to overlap each other could
 * otherwise make the scan checksum the log once per 4 KiB of it. */
#define VHDX_LOG_MAX_SCAN_BYTES (256 * VHDX_MiB)
/* No structure of a valid file lies past this: 64 TiB of payload plus its
 * BAT, bitmaps and metadata fit with room to spare.  Log descriptors beyond
 * it are treated as corrupt. */
#define VHDX_LOG_MAX_FILE_OFFSET (2 * VHDX_MAX_VIRTUAL_SIZE)

/* BAT */
#define VHDX_BAT_ENTRY_SIZE    8
#define VHDX_BAT_STATE_MASK    G_GUINT64_CONSTANT (0x7)
#define VHDX_BAT_RESERVED_MASK G_GUINT64_CONSTANT (0xFFFF8)
#define VHDX_BAT_OFFSET_MASK   G_GUINT64_CONSTANT (0xFFFFFFFFFFF00000)

enum {
        VHDX_PAYLOAD_NOT_PRESENT = 0,
        VHDX_PAYLOAD_UNDEFINED = 1,
        VHDX_PAYLOAD_ZERO = 2,
        VHDX_PAYLOAD_UNMAPPED = 3,
        VHDX_PAYLOAD_FULLY_PRESENT = 6,
        VHDX_PAYLOAD_PARTIALLY_PRESENT = 7,
};

enum {
        VHDX_SB_NOT_PRESENT = 0,
        VHDX_SB_PRESENT = 6,
};

/* Limits */
#define VHDX_MAX_VIRTUAL_SIZE    (64 * VHDX_TiB)
#define VHDX_MIN_BLOCK_SIZE      (1 * VHDX_MiB)
#define VHDX_MAX_BLOCK_SIZE      (256 * VHDX_MiB)
#define VHDX_STRUCTURE_ALIGNMENT (1 * VHDX_MiB)

/* A GUID as stored on disk (Microsoft layout, 16 bytes). */
typedef struct {
        guint8 bytes[16];
} VhdxGuid;

#define VHDX_GUID_STRING_LENGTH 36

extern const VhdxGuid vhdx_guid_region_bat;
extern const VhdxGuid vhdx_guid_region_metadata;
extern const VhdxGuid vhdx_guid_item_file_parameters;
extern const VhdxGuid vhdx_guid_item_virtual_disk_size;
extern const VhdxGuid vhdx_guid_item_virtual_disk_id;
extern const VhdxGuid vhdx_guid_item_logical_sector_size;
extern const VhdxGuid vhdx_guid_item_physical_sector_size;
extern const VhdxGuid vhdx_guid_item_parent_locator;
extern const VhdxGuid vhdx_guid_zero;

static inline guint16
vhdx_get_le16 (const guint8 *p)
{
        guint16 v;
        memcpy (&v, p, sizeof v);
        return GUINT16_FROM_LE (v);
}

static inline guint32
vhdx_get_le32 (const guint8 *p)
{
        guint32 v;
        memcpy (&v, p, sizeof v);
        return GUINT32_FROM_LE (v);
}

static inline guint64
vhdx_get_le64 (const guint8 *p)
{
        guint64 v;
        memcpy (&v, p, sizeof v);
        return GUINT64_FROM_LE (v);
}

static inline void
vhdx_put_le16 (guint8 *p, guint16 v)
{
        v = GUINT16_TO_LE (v);
        memcpy (p, &v, sizeof v);
}

static inline void
vhdx_put_le32 (guint8 *p, guint32 v)
{
        v = GUINT32_TO_LE (v);
        memcpy (p, &v, sizeof v);
}

static inline void
vhdx_put_le64 (guint8 *p, guint64 v)
{
        v = GUINT64_TO_LE (v);
        memcpy (p, &v, sizeof v);
}

static inline VhdxGuid
vhdx_get_guid (const guint8 *p)
{
        VhdxGuid g;
        memcpy (g.bytes, p, sizeof g.bytes);
        return g;
}

gboolean vhdx_guid_equal (const VhdxGuid *a, const VhdxGuid *b);
gboolean vhdx_guid_is_zero (const VhdxGuid *g);
/* Lowercase xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx; @out holds 37 bytes. */
void vhdx_guid_to_string_buf (const VhdxGuid *g, char out[VHDX_GUID_STRING_LENGTH + 1]);
G_GNUC_WARN_UNUSED_RESULT char *vhdx_guid_to_string (const VhdxGuid *g);
/* Accepts the text form with or without braces, any case. */
gboolean vhdx_guid_from_string (const char *text, VhdxGuid *out);
void vhdx_guid_new_random (VhdxGuid *out);

/* Overflow-checked a + b; FALSE on overflow. */
static inline gboolean
vhdx_add_u64 (guint64 a, guint64 b, guint64 *out)
{
        return !__builtin_add_overflow (a, b, out);
}

G_END_DECLS
