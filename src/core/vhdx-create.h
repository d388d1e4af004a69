/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Creating new VHDX files: fixed, dynamic and differencing.  Data is written
 * as it comes; the BAT, sector bitmaps, metadata, region tables and headers
 * are written when the file is finished, so an interrupted creation never
 * looks like a valid image.
 */
#pragma once

#include "vhdx-format.h"
#include "vhdx-io.h"
#include "vhdx-types.h"

G_BEGIN_DECLS

/* Hyper-V's defaults (New-VHD): 32 MiB blocks for fixed and dynamic disks,
 * 2 MiB for differencing ones (checkpoints), a 1 MiB log. */
#define VHDX_DEFAULT_BLOCK_SIZE              (32 * VHDX_MiB)
#define VHDX_DEFAULT_DIFFERENCING_BLOCK_SIZE (2 * VHDX_MiB)
#define VHDX_DEFAULT_LOG_SIZE                (1 * VHDX_MiB)

typedef struct {
        VhdxDiskType disk_type;
        guint64 virtual_size;         /* a multiple of the logical sector size */
        guint32 block_size;           /* 0: 32 MiB */
        guint32 logical_sector_size;  /* 0: 512 */
        guint32 physical_sector_size; /* 0: 4096 */
        guint32 log_size;             /* 0: 1 MiB */
        /* Differencing only: the parent's DataWriteGuid and where to find it. */
        VhdxGuid parent_data_write_guid;
        const char *parent_relative_path; /* e.g. "parent.vhdx" or "../base/parent.vhdx" */
        const char *parent_absolute_path; /* the parent's absolute path, or NULL */
        /* Identity GUIDs; zero ones are made up. */
        VhdxGuid data_write_guid;
        VhdxGuid virtual_disk_id;
} VhdxCreateParams;

typedef struct _VhdxCreator VhdxCreator;

/* Check @params and fill in the defaults; VHDX_ERROR_INVALID naming the bad one. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_create_params_resolve (VhdxCreateParams *params,
                                                               GError **error);

/* Start a new image on @io (borrowed; writable and empty). */
G_GNUC_WARN_UNUSED_RESULT VhdxCreator *vhdx_creator_new (VhdxIo *io,
                                                         const VhdxCreateParams *params,
                                                         GError **error);
void vhdx_creator_free (VhdxCreator *writer);

/* The parameters of the new image, the defaults filled in. */
const VhdxCreateParams *vhdx_creator_get_params (VhdxCreator *creator);

/*
 * Store @count bytes of the virtual disk at @offset, both multiples of the
 * logical sector size.  Dynamic and differencing images allocate the blocks
 * they touch; in a differencing image only the sectors written are marked as
 * present (the others come from the parent).  Each sector may be written once.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_creator_write (VhdxCreator *writer,
                                                       guint64 offset,
                                                       const void *buf,
                                                       gsize count,
                                                       GError **error);

/* Write the BAT, sector bitmaps, metadata, region tables and headers, and flush. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_creator_finish (VhdxCreator *writer, GError **error);
/* vhdx_creator_finish(), or without @durable written but not flushed: the
 * data and the headers reach the disk when the kernel writes them back, in
 * no set order, and a crash soon after may leave a file that is no image
 * (for a caller that replaces it under its final name only after a crash
 * could no longer matter, or that says it need not survive one). */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_creator_finish_full (VhdxCreator *writer,
                                                             gboolean durable,
                                                             GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxCreator, vhdx_creator_free)

G_END_DECLS
