/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VhdxFile: an opened VHDX image.  Open parses and validates every fixed
 * structure; the BAT is loaded lazily.  After open, vhdx_file_read() and
 * vhdx_file_map() may be called from several threads at once.
 */
#pragma once

#include "vhdx-error.h"
#include "vhdx-format.h"
#include "vhdx-io.h"
#include "vhdx-problem.h"
#include "vhdx-types.h"

G_BEGIN_DECLS

typedef struct _VhdxFile VhdxFile;

typedef struct {
        guint64 file_size;
        char *creator;

        guint header_index; /* 1 or 2: the current header */
        guint64 header_sequence;
        VhdxGuid file_write_guid;
        VhdxGuid data_write_guid;
        VhdxGuid log_guid;
        guint64 log_offset;
        guint32 log_length;
        VhdxLogState log_state;

        guint region_table_index; /* 1 or 2: the copy in use */
        guint64 bat_offset;
        guint32 bat_length;
        guint64 metadata_offset;
        guint32 metadata_length;

        VhdxDiskType disk_type;
        guint32 block_size;
        gboolean leave_block_allocated;
        gboolean has_parent;
        guint64 virtual_size;
        VhdxGuid virtual_disk_id;
        guint32 logical_sector_size;
        guint32 physical_sector_size;

        guint64 chunk_ratio;
        guint64 payload_blocks;
        guint64 bat_entries;
} VhdxInfo;

typedef enum {
        VHDX_EXTENT_DATA,   /* stored in this file at file_offset */
        VHDX_EXTENT_ZERO,   /* reads as zeros */
} VhdxExtentKind;

typedef struct {
        guint64 offset; /* virtual disk offset */
        guint64 length;
        VhdxExtentKind kind;
        gboolean present;     /* FALSE: the block is not stored at all (holes) */
        guint64 file_offset;  /* VHDX_EXTENT_DATA only */
        guint depth;          /* member of the chain supplying it; 0 = this file */
} VhdxExtent;

/* Takes ownership of @io, also on failure. */
G_GNUC_WARN_UNUSED_RESULT VhdxFile *vhdx_file_open (VhdxIo *io, VhdxOpenFlags flags,
                                                    GError **error);
void vhdx_file_free (VhdxFile *file);

const VhdxInfo *vhdx_file_get_info (VhdxFile *file);

/* Problems noticed while opening (e.g. a damaged first header next to a good second one). */
GPtrArray *vhdx_file_get_open_problems (VhdxFile *file);

G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_read (VhdxFile *file, guint64 offset, void *buf,
                                                   gsize count, GError **error);

/* A GArray of VhdxExtent covering [offset, offset + length), adjacent extents merged. */
G_GNUC_WARN_UNUSED_RESULT GArray *vhdx_file_map (VhdxFile *file, guint64 offset,
                                                 guint64 length, GError **error);

/* Bytes of the virtual disk that this file stores (FULLY_PRESENT blocks). */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_get_allocated_bytes (VhdxFile *file,
                                                                  guint64 *allocated,
                                                                  GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxFile, vhdx_file_free)

G_END_DECLS
