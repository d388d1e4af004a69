/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Changing the virtual disk's metadata items that Hyper-V's Set-VHD changes
 * (the physical sector size, the Virtual Disk ID) in place through the
 * journal, after naming the image's new DataWriteGuid in the differencing
 * images made from it, so that none is orphaned and a crash leaves the old
 * values or the new ones.
 */
#pragma once

/* VhdxSetMetadataFlags is public: in the library's enumerations. */
#include "vhdx-enums.h"
#include "vhdx-file.h"

G_BEGIN_DECLS

/* What vhdx_file_set_metadata() changed. */
typedef struct {
        gboolean changed; /* FALSE: nothing was to change, nothing was written */
        guint32 old_physical_sector_size;
        guint32 new_physical_sector_size;
        VhdxGuid old_disk_id;
        VhdxGuid new_disk_id;
        VhdxGuid old_data_write_guid;
        VhdxGuid new_data_write_guid;
        /* Paths of the differencing images found beside the image whose
         * parent_linkage2 now names its new DataWriteGuid. */
        GPtrArray *children_updated;
        /* With VHDX_SET_METADATA_FLAGS_FORCE: those that could not be
         * updated and no longer open with the image, and why (as many). */
        GPtrArray *children_orphaned;
        GPtrArray *orphaned_reasons;
} VhdxSetMetadataResult;

void vhdx_set_metadata_result_clear (VhdxSetMetadataResult *result);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (VhdxSetMetadataResult, vhdx_set_metadata_result_clear)

/*
 * Make the physical sector size of @file (opened read-write)
 * @physical_sector_size (512 or 4096; 0 keeps it) and, with
 * VHDX_SET_METADATA_FLAGS_RESET_DISK_ID in @flags, give it a new random
 * Virtual Disk ID.  Any other size is refused with VHDX_ERROR_NOT_SUPPORTED.
 * When nothing changes (the same size, no new ID), nothing is written, not
 * even new header GUIDs.
 *
 * Both items are system metadata the user sees, so the image gets a new
 * DataWriteGuid (MS-VHDX 2.2.2), which the differencing images made from
 * it would no longer match.  What they read does not change, so before
 * the image is changed, each of them found in the directory of @path (the
 * image's own path; NULL: none can be looked for) is opened read-write,
 * without its parent, and gets the new GUID as parent_linkage2, durably
 * (MS-VHDX 2.6.2.6.3); then the image's DataWriteGuid becomes that GUID;
 * then it becomes their parent_linkage and parent_linkage2 is dropped, so
 * that readers that know only parent_linkage find the image too.
 * A child that cannot be opened for writing (in use, read-only), or
 * children that cannot be looked for, refuse the whole change before
 * anything was written, the error naming it, unless @flags has
 * VHDX_SET_METADATA_FLAGS_FORCE: it is then left orphaned and listed in
 * @result.  When a change since the open already gave @file a new
 * DataWriteGuid, its children were orphaned by that change and are not
 * looked for.
 *
 * The items are rewritten in place in one commit through the log (one log
 * sequence unless its entries are limited to fewer pages than the items
 * fall in), durable on return: a crash leaves the old values or the new
 * ones.  No other request may run on @file meanwhile.  @result (may be
 * NULL; clear it with vhdx_set_metadata_result_clear()) says what changed.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_set_metadata (VhdxFile *file,
                                                           const char *path,
                                                           guint32 physical_sector_size,
                                                           VhdxSetMetadataFlags flags,
                                                           VhdxSetMetadataResult *result,
                                                           GError **error);

/*
 * Rewrite in place, in one commit through the journal, the physical sector
 * size of @file (opened read-write; 0 keeps it) and its Virtual Disk ID
 * (NULL keeps it), after the new DataWriteGuid that this user-visible
 * change needs (chosen beforehand with vhdx_writer_set_data_write_guid()
 * if it must be a given one); durable on return.  No checks: the values
 * must be valid.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_write_disk_items (VhdxFile *file,
                                                               guint32 physical_sector_size,
                                                               const VhdxGuid *disk_id,
                                                               GError **error);

G_END_DECLS
