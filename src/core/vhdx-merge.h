/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Folding a differencing image, and the images between it and an ancestor,
 * into that ancestor, as Hyper-V's Merge-VHD does, by the specification's
 * parent_linkage2 protocol: the chain reads as before at every point, and
 * once done the ancestor alone reads as the child did.
 */
#pragma once

#include <gio/gio.h>

/* VhdxMergeFlags is public: in the library's enumerations. */
#include "vhdx-enums.h"
#include "vhdx-file.h"
#include "vhdx-resize.h"

G_BEGIN_DECLS

/* What a merge did. */
typedef struct {
        guint layers;         /* images folded: the child and those between it and the target */
        guint64 bytes_copied; /* bytes of the virtual disk written into the target */
        guint64 bytes_zeroed; /* made to read as zeros in the target */
        guint64 old_size;     /* the target's virtual size before, and after */
        guint64 new_size;
        VhdxGuid old_data_write_guid; /* the target's DataWriteGuid before, and after */
        VhdxGuid new_data_write_guid;
        gboolean disk_id_changed;              /* the child's Virtual Disk ID was taken */
        gboolean physical_sector_size_changed; /* the child's physical sector size was taken */
        /* vhdx_merge_images(): the target, and the images folded into it
         * (the child first), deleted with VHDX_MERGE_FLAGS_DELETE_MERGED. */
        char *target_path;
        GPtrArray *folded;
} VhdxMergeResult;

void vhdx_merge_result_clear (VhdxMergeResult *result);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (VhdxMergeResult, vhdx_merge_result_clear)

/*
 * The images that a merge of @child (found at @child_path) into its
 * ancestor at @depth would leave reading other data than they did: the
 * differencing images found beside any member of the chain, down to the
 * target, that were made from the target or an image between it and
 * @child (and, with VHDX_MERGE_FLAGS_DELETE_MERGED, from the images to be
 * deleted), members of the chain left out.  A GPtrArray of paths.
 */
G_GNUC_WARN_UNUSED_RESULT GPtrArray *vhdx_merge_find_endangered (VhdxFile *child,
                                                                 const char *child_path,
                                                                 guint depth,
                                                                 VhdxMergeFlags flags,
                                                                 GError **error);

/*
 * Copy into the ancestor at @depth (1: the parent) of the differencing
 * image @child every sector that @child, or an image between the two,
 * stores or reads as zeros, so that the ancestor reads as @child did.
 * The ancestor and the image just above it must be opened read-write
 * (VhdxOpenOptions.writable_ancestors; @child itself when @depth is 1);
 * every member must be the parent its child was made from.
 *
 * First the image above the ancestor names a new GUID as its
 * parent_linkage2 (durably); then that GUID becomes the ancestor's
 * DataWriteGuid, as its first change (MS-VHDX 2.6.2.6.3): a crash at any
 * point leaves a chain that opens and reads as before.  The ancestor takes
 * @child's virtual size (resized first), its Virtual Disk ID and physical
 * sector size, and every other item marked IsVirtualDisk, its own such
 * items destroyed (MS-VHDX 2.6.1.2); its other items stay.
 * Unless @flags has VHDX_MERGE_FLAGS_FORCE, refused with
 * VHDX_ERROR_WOULD_DISCARD_DATA when vhdx_merge_find_endangered() finds
 * images (named in the message).  The images above the ancestor are not
 * changed otherwise: @child still reads as before; an image between them,
 * alone, no longer does.  @progress counts bytes of the virtual disk.
 * A cancellation stops the copy, leaving the chain as it read.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_merge (VhdxFile *child,
                                                    const char *child_path,
                                                    guint depth,
                                                    VhdxMergeFlags flags,
                                                    VhdxProgressFunc progress,
                                                    gpointer progress_data,
                                                    GCancellable *cancellable,
                                                    VhdxMergeResult *result,
                                                    GError **error);

/*
 * vhdx_file_merge() of the image at @child_path into its ancestor at
 * @into_path (NULL: its parent, found by its locator): opens the chain with
 * that ancestor and the image above it read-write, the others read-only,
 * merges, closes the images changed (the change is durable on success)
 * and, with VHDX_MERGE_FLAGS_DELETE_MERGED, deletes the folded images.
 * VHDX_ERROR_INVALID when @into_path is not an ancestor.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_merge_images (const char *child_path,
                                                      const char *into_path,
                                                      VhdxMergeFlags flags,
                                                      VhdxProgressFunc progress,
                                                      gpointer progress_data,
                                                      GCancellable *cancellable,
                                                      VhdxMergeResult *result,
                                                      GError **error);

G_END_DECLS
