/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Extents: which ranges of the virtual disk hold data, where, and in which
 * member of the chain; the one rule by which adjacent extents merge; walking
 * a range of any size in windows of bounded memory; and the bytes an image
 * stores.  Nothing here reads payload.
 */
#pragma once

#include "vhdx-file.h"

G_BEGIN_DECLS

typedef enum {
        VHDX_EXTENT_DATA,   /* stored in a file of the chain at file_offset */
        VHDX_EXTENT_ZERO,   /* reads as zeros */
        VHDX_EXTENT_PARENT, /* the parent's, which was not opened (depth: its) */
} VhdxMapExtentKind;

typedef struct {
        guint64 offset; /* virtual disk offset */
        guint64 length;
        VhdxMapExtentKind kind;
        gboolean present;    /* FALSE: the block is not stored at all (holes) */
        guint64 file_offset; /* VHDX_EXTENT_DATA only */
        guint depth;         /* member of the chain supplying it; 0 = this file */
} VhdxMapExtent;

/*
 * Append @extent to @extents (a GArray of VhdxMapExtent), merged into the
 * last one when it continues it: the same kind, presence and depth, adjacent
 * on the disk and, for data, in the file.
 */
void vhdx_map_extents_append (GArray *extents, const VhdxMapExtent *extent);

/* A GArray of VhdxMapExtent covering [offset, offset + length), merged. */
G_GNUC_WARN_UNUSED_RESULT GArray *vhdx_file_map (VhdxFile *file,
                                                 guint64 offset,
                                                 guint64 length,
                                                 GError **error);

/*
 * Walks the extents of a range of any size, mapping it a window at a time,
 * and yields them merged as vhdx_file_map() would.  Stack-allocated:
 *
 *   VhdxMapIter iter;
 *   VhdxMapExtent e;
 *   vhdx_map_iter_init (&iter, file, 0, size);
 *   while (vhdx_map_iter_next (&iter, &e, &error))
 *           use (&e);
 *   vhdx_map_iter_clear (&iter);
 *   if (error != NULL) ...
 */
typedef struct {
        VhdxFile *file;
        guint64 position; /* where the next window starts */
        guint64 end;
        GArray *window;
        guint index;
        gboolean have_pending;
        VhdxMapExtent pending;
} VhdxMapIter;

void vhdx_map_iter_init (VhdxMapIter *iter, VhdxFile *file, guint64 offset, guint64 length);
/* The next extent; FALSE at the end (@error unset) or on failure (@error set). */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_map_iter_next (VhdxMapIter *iter,
                                                       VhdxMapExtent *extent,
                                                       GError **error);
void vhdx_map_iter_clear (VhdxMapIter *iter);

/* Bytes of the virtual disk that this file (not its parents) stores: a scan of the BAT. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_get_allocated_bytes (VhdxFile *file,
                                                                  guint64 *allocated,
                                                                  GError **error);

G_END_DECLS
