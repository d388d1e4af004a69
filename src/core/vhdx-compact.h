/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Compacting an image opened read-write, as Hyper-V's Optimize-VHD does:
 * blocks that read as zeros give their file space back, the blocks left
 * move down into the holes, and the file is cut after the last one, each
 * step through the journal so that a crash leaves a disk that reads as
 * before.
 */
#pragma once

#include <gio/gio.h>

/* VhdxCompactFlags is public: in the library's enumerations. */
#include "vhdx-enums.h"
#include "vhdx-file.h"
#include "vhdx-resize.h"

G_BEGIN_DECLS

/* For tests: one block moved per commit, so that a compaction of a small
 * image takes several. */
#define VHDX_COMPACT_FLAGS_ONE_BLOCK_PER_COMMIT (1 << 16)

/* What a compaction did. */
typedef struct {
        guint64 old_file_size;
        guint64 new_file_size;
        guint64 blocks_dropped; /* payload blocks that gave their file space back */
        guint64 blocks_moved;   /* payload blocks moved down (sector bitmaps move too) */
} VhdxCompactResult;

/*
 * Give back the file space of @file (opened read-write, dynamic or
 * differencing) that its virtual disk does not need; what the disk reads
 * does not change.  Unless @flags has VHDX_COMPACT_FLAGS_QUICK, every
 * stored block is read, and one that reads as zeros is dropped: a dynamic
 * image's becomes NOT_PRESENT, a differencing image's ZERO (a
 * PARTIALLY_PRESENT block only when its sector bitmap marks every sector
 * present, or none, which makes it NOT_PRESENT: it reads its parent).
 * Either way, blocks in a state that reads no file space (NOT_PRESENT,
 * UNDEFINED, ZERO, UNMAPPED) and still name some let it go, and so do the
 * sector bitmaps that no PARTIALLY_PRESENT block needs any more.  Then
 * the blocks left move into the holes below them, the last first, and the
 * file is cut after the last structure or block.  A fixed image is
 * refused (VHDX_ERROR_NOT_SUPPORTED).
 *
 * Only FileWriteGuid changes (MS-VHDX 2.2.2: moving blocks is no change
 * of the disk's data), so that differencing images made from @file stay
 * its children.  Data is copied only into space that no committed entry
 * names, and the entries naming its new place are committed, in batches
 * that fit the log, once the copies are durable; the size is cut only
 * after a commit that leaves nothing past the new end.  A failure or a
 * cancellation (noticed between commits) leaves an image that reads as
 * before, partly compacted.  @progress (may be NULL) counts the blocks
 * read and the blocks moved.  No other request may run on @file meanwhile.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_compact (VhdxFile *file,
                                                      VhdxCompactFlags flags,
                                                      VhdxProgressFunc progress,
                                                      gpointer progress_data,
                                                      GCancellable *cancellable,
                                                      VhdxCompactResult *result,
                                                      GError **error);

G_END_DECLS
