/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Finding the differencing images made from an image: the files beside it
 * whose parent linkage names its DataWriteGuid, which a change of what the
 * image reads (a merge into it, new metadata) would leave without their
 * parent.
 */
#pragma once

#include "vhdx-file.h"

G_BEGIN_DECLS

/*
 * The paths of the images in @dirs (a NULL-terminated array of
 * directories, searched in order, not recursively) whose parent_linkage or
 * parent_linkage2 is @data_write_guid: files named *.vhdx or *.avhdx (any
 * case), opened read-only without their own parents, even when another
 * process writes them.  Files that are not images, or that cannot be
 * opened, are not counted; the files named in @skip (NULL-terminated, or
 * NULL: members of the chain being changed) are left out, as are
 * duplicates.  A directory that cannot be listed is an error.
 */
G_GNUC_WARN_UNUSED_RESULT GPtrArray *vhdx_find_children (const char *const *dirs,
                                                         const VhdxGuid *data_write_guid,
                                                         const char *const *skip,
                                                         GError **error);

G_END_DECLS
