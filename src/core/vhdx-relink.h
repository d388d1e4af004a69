/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Pointing a differencing image at its parent again after the parent moved,
 * as Hyper-V's Set-VHD -ParentPath does: a new parent locator written
 * through the journal, so that a crash leaves the old locator or the new one.
 */
#pragma once

#include "vhdx-file.h"

G_BEGIN_DECLS

/* What vhdx_file_set_parent() changed. */
typedef struct {
        char *old_relative_path; /* the locator's before, or NULL when it had none */
        char *new_relative_path; /* written: backslashes, relative to the child's directory */
        char *absolute_path;     /* written as absolute_win32_path */
        /* The parent was not the one the image was made from, and its
         * DataWriteGuid became parent_linkage (parent_linkage2 dropped). */
        gboolean linkage_changed;
        char *old_linkage; /* parent_linkage before, and after ("{GUID}") */
        char *new_linkage;
        gboolean volume_path_dropped; /* the locator had a volume_path */
        gboolean in_place; /* the item was rewritten where it was, the region being full */
} VhdxSetParentResult;

void vhdx_set_parent_result_clear (VhdxSetParentResult *result);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (VhdxSetParentResult, vhdx_set_parent_result_clear)

/*
 * Point the differencing image @child (opened read-write; it may have been
 * opened with VHDX_OPEN_FLAGS_NO_PARENT or ALLOW_MISSING_PARENT) at the
 * image @parent (opened read-only) found at @parent_path; @child_path is
 * the child's own path, which relative_path is relative to.
 *
 * Refused with VHDX_ERROR_NOT_SUPPORTED when @child is not a differencing
 * image, with VHDX_ERROR_PARENT_MISMATCH when the logical sector sizes
 * differ or, unless @ignore_mismatch, when @parent's DataWriteGuid is
 * neither the locator's parent_linkage nor its parent_linkage2, and with
 * VHDX_ERROR_INVALID when @parent is @child or has it among its parents.
 *
 * The new locator keeps every entry, unknown ones included, in their
 * order; relative_path and absolute_win32_path name @parent_path (added
 * when missing); volume_path, which a Linux host cannot name, is dropped;
 * with @ignore_mismatch and a mismatch, parent_linkage becomes @parent's
 * DataWriteGuid and parent_linkage2 is dropped.  The item goes to free
 * space of the metadata region and the table entry then names it, in one
 * commit whose log sequences each leave a locator that names one place;
 * when no free space fits it but the old item's space does, it is
 * rewritten there (one log sequence unless the log's entries are limited
 * to fewer pages than it and the table take); otherwise
 * VHDX_ERROR_NOT_SUPPORTED.  DataWriteGuid does not change: what the disk
 * reads does not, and other images may have @child as their parent.
 *
 * On success the change is durable and @child's locator (and its info)
 * are the new ones; the parent @child has opened, if any, stays: reopen
 * @child to read through @parent.  @result (may be NULL; clear it with
 * vhdx_set_parent_result_clear()) says what changed.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_set_parent (VhdxFile *child,
                                                         const char *child_path,
                                                         VhdxFile *parent,
                                                         const char *parent_path,
                                                         gboolean ignore_mismatch,
                                                         VhdxSetParentResult *result,
                                                         GError **error);

/*
 * Name @guid as parent_linkage2 of the differencing image @child (opened
 * read-write), as the locator is rewritten by vhdx_file_set_parent():
 * committed and durable on return; @child's DataWriteGuid does not change.
 * When @child has its parent opened, parent_linkage names that parent's
 * DataWriteGuid in the same change (it may have matched through the old
 * parent_linkage2), so that the link holds at every point.
 * The first step of changing the DataWriteGuid of its parent to @guid
 * without orphaning it (MS-VHDX 2.6.2.6.3): the parent's changes next.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_set_parent_linkage2 (VhdxFile *child,
                                                                  const VhdxGuid *guid,
                                                                  GError **error);

/*
 * The last step of that change, once the parent's DataWriteGuid is @guid
 * for good: parent_linkage names @guid and parent_linkage2 is dropped, in
 * one commit, so that readers that know only parent_linkage find the
 * parent too.  Either locator names the parent: a crash is harmless.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_settle_parent_linkage (VhdxFile *child,
                                                                    const VhdxGuid *guid,
                                                                    GError **error);

G_END_DECLS
