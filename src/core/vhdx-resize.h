/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Changing the virtual size of an image opened read-write, as Hyper-V's
 * Resize-VHD does: growing any image, shrinking one only where nothing is
 * stored past the new end (unless told to drop it), each step through the
 * journal so that a crash leaves the old size or the new one.
 */
#pragma once

#include <gio/gio.h>

/* VhdxResizeFlags is public: in the library's enumerations. */
#include "vhdx-enums.h"
#include "vhdx-file.h"

G_BEGIN_DECLS

/* For tests: grow the BAT region in place over the blocks that follow it
 * even when moving them costs more than moving the BAT. */
#define VHDX_RESIZE_FLAGS_MOVE_BLOCKS (1 << 16)

/* Progress of a long operation: @done of @total units so far. */
typedef void (*VhdxProgressFunc) (guint64 done, guint64 total, gpointer user_data);

/* What a resize changed. */
typedef struct {
        guint64 old_size;
        guint64 new_size;
        guint64 old_bat_length; /* bytes of the BAT region */
        guint64 new_bat_length;
        guint64 blocks_moved;     /* payload blocks moved out of the growing BAT's way */
        guint64 blocks_allocated; /* new blocks of a fixed image */
        guint64 blocks_dropped;   /* stored blocks past the new end (shrinking) */
        guint64 old_file_size;
        guint64 new_file_size;
} VhdxResizeResult;

/*
 * The smallest size @file can shrink to without dropping data: the end of
 * the last block that stores data (for a differencing image, sectors of
 * its own; every block of a fixed image does), or the virtual size if that
 * is smaller.  0 when no block stores data.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_get_minimum_size (VhdxFile *file,
                                                               guint64 *size,
                                                               GError **error);

/*
 * Make the virtual disk of @file, opened read-write, @new_size bytes (a
 * multiple of its logical sector size, at most 64 TiB).  Growing: the new
 * part reads as zeros (a differencing image: as its parent, past the block
 * that held the old end); a fixed image gets its new blocks allocated; when
 * the BAT no longer fits its region, the region grows over the blocks that
 * follow it, which are moved to the end of the file, when they hold less
 * data than the BAT; otherwise, or when another structure follows it, the
 * BAT moves to a new region at the end of the file.  Shrinking: VHDX_ERROR_WOULD_DISCARD_DATA,
 * naming the first block that stores data past @new_size and the minimum size, unless @flags has
 * VHDX_RESIZE_FLAGS_DISCARD_DATA; the blocks wholly past the new end are
 * dropped (their file space stays, unused) and the block that holds the new
 * end keeps its data up to it.  The data up to the smaller of the two sizes
 * reads as before.  No other request may run on @file meanwhile.
 * @progress (may be NULL) counts the blocks moved.  Everything before the
 * one commit that makes the change may fail or be cancelled leaving the
 * image as it was (with more file space); the commit is the flush at the
 * end: on success, the new size is durable.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_resize (VhdxFile *file,
                                                     guint64 new_size,
                                                     VhdxResizeFlags flags,
                                                     VhdxProgressFunc progress,
                                                     gpointer progress_data,
                                                     GCancellable *cancellable,
                                                     VhdxResizeResult *result,
                                                     GError **error);

G_END_DECLS
