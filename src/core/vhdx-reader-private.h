/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxFile internals shared by the reader and the checker. */
#pragma once

#include "vhdx-bat.h"
#include "vhdx-reader.h"
#include "vhdx-region.h"

G_BEGIN_DECLS

struct _VhdxFile {
        VhdxIo *io;
        VhdxOpenFlags flags;
        VhdxInfo info;
        VhdxRegionTable regions;
        VhdxBat *bat;
        GPtrArray *open_findings;
        VhdxFile *parent;
        char *parent_path;
        GPtrArray *locator; /* VhdxLocatorEntry */
        /* Sector bitmaps of PARTIALLY_PRESENT blocks: block number -> GBytes. */
        GMutex bitmaps_lock;
        GHashTable *bitmaps;
        gsize bitmaps_bytes;
};

/* Bytes of the virtual disk that payload block @block covers (the last block
 * may be shorter than the block size). */
static inline guint64
vhdx_file_block_length (const VhdxFile *file, guint64 block)
{
        guint64 start = block * file->info.block_size;

        return MIN ((guint64) file->info.block_size, file->info.virtual_size - start);
}

/*
 * Look up payload block @block: its state and, for FULLY_PRESENT, its file
 * offset.  The entry is checked on the way: a state allowed for the disk type,
 * and a stored block inside the file past the header section.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_check_payload_entry (VhdxFile *file,
                                                                  guint64 block,
                                                                  guint64 entry,
                                                                  guint *state,
                                                                  guint64 *file_offset,
                                                                  GError **error);
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_lookup_block (VhdxFile *file,
                                                           guint64 block,
                                                           guint *state,
                                                           guint64 *file_offset,
                                                           GError **error);

G_END_DECLS
