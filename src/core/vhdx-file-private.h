/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxFile's fields, shared by the engine files that work on an opened image. */
#pragma once

#include "vhdx-bat.h"
#include "vhdx-bitmap.h"
#include "vhdx-header.h"
#include "vhdx-file.h"
#include "vhdx-region.h"

G_BEGIN_DECLS

struct _VhdxFile {
        VhdxIo *io;
        VhdxOpenFlags flags;
        VhdxInfo info;
        VhdxRegionTable regions;
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

G_END_DECLS
