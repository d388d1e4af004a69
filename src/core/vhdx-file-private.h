/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxFile's fields, shared by the engine files that work on an opened image. */
#pragma once

#include "vhdx-bat.h"
#include "vhdx-bitmap.h"
#include "vhdx-header.h"
#include "vhdx-metadata.h"
#include "vhdx-file.h"
#include "vhdx-region.h"

G_BEGIN_DECLS

struct _VhdxFile {
        VhdxIo *io;
        VhdxOpenFlags flags;
        VhdxInfo info;
        VhdxRegionTable regions;
        VhdxMetadata metadata;
        VhdxBat *bat;
        VhdxBitmapCache *bitmaps;
        GPtrArray *open_problems;
        VhdxFile *parent;
        char *parent_path;
        GError *parent_error; /* why a differencing image has no parent */
        char *parent_warning; /* a parent taken although it is not the one */
        GPtrArray *locator;   /* VhdxLocatorEntry */

        /* Opened read-write: */
        VhdxHeader header;                /* the current header */
        gboolean file_write_guid_changed; /* by the log replay at open */
        struct _VhdxWriter *writer;
};

/*
 * After a commit that changed the virtual size or moved the BAT: take the
 * new layout into the opened image (its info, region table, BAT and bitmap
 * cache).  No other request may run meanwhile.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_reset_layout (VhdxFile *file,
                                                           guint64 virtual_size,
                                                           guint64 bat_offset,
                                                           guint32 bat_length,
                                                           GError **error);

/*
 * After a commit that moved or rewrote the parent locator item: take its
 * new place (@offset, @length) and entries (@locator, a GPtrArray of
 * VhdxLocatorEntry; taken) into the opened image.  The parent it has
 * opened, if any, stays.  No other request may run meanwhile.
 */
void vhdx_file_reset_locator (VhdxFile *file, GPtrArray *locator, guint64 offset, guint32 length);

G_END_DECLS
