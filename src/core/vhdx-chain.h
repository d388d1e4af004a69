/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Resolving the parent chain of a differencing image: which opened
 * candidate is the parent (its linkage GUID and sector size), the depth
 * limit, a chain that loops back to one of its members, and what to say
 * when no candidate is the parent.  vhdx-file.c opens the candidates.
 */
#pragma once

#include "vhdx-file.h"

G_BEGIN_DECLS

/* The identities (device, inode) of the members of a chain being opened. */
G_GNUC_WARN_UNUSED_RESULT GArray *vhdx_chain_identities_new (void);

/* Add the file behind @io to @identities; VHDX_ERROR_INVALID when it is
 * already a member of the chain. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_chain_enter (GArray *identities,
                                                     VhdxIo *io,
                                                     GError **error);

/* VHDX_ERROR_INVALID when an image at @depth of its chain (0: the image
 * opened) may not have a parent, the chain being as long as allowed. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_chain_check_depth (guint depth, GError **error);

/* The search for the parent of one differencing image, candidate by candidate. */
typedef struct {
        GPtrArray *locator;  /* the child's parent locator, not owned */
        GString *tried;      /* "path (what was wrong), ..." */
        gboolean mismatched; /* a candidate was an image, but not the parent */
} VhdxParentSearch;

void vhdx_parent_search_init (VhdxParentSearch *search, GPtrArray *locator);
void vhdx_parent_search_clear (VhdxParentSearch *search);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (VhdxParentSearch, vhdx_parent_search_clear)

/* Note the candidate @path as not the parent: @outcome says why, NULL when
 * there is no such file. */
void vhdx_parent_search_skip (VhdxParentSearch *search, const char *path, const char *outcome);

/*
 * Whether the image opened from @path, whose DataWriteGuid is
 * @data_write_guid, is the parent: TRUE when the locator's parent_linkage or
 * parent_linkage2 names it; FALSE with @error when the locator cannot say
 * (stop the search); FALSE without, noted as a mismatch, to go on.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_parent_search_match (VhdxParentSearch *search,
                                                             const char *path,
                                                             const VhdxGuid *data_write_guid,
                                                             GError **error);

/* The warning when the image at @path, which is not the parent, is used as
 * the parent all the same (VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH). */
G_GNUC_WARN_UNUSED_RESULT char *vhdx_parent_search_mismatch_warning (
        VhdxParentSearch *search,
        const char *path,
        const VhdxGuid *data_write_guid);

/* The error when none of the @n_candidates was the parent, with what was tried. */
void vhdx_parent_search_fail (VhdxParentSearch *search, guint n_candidates, GError **error);

/* VHDX_ERROR_PARENT_MISMATCH unless the parent found at @path, with @parent's
 * logical sectors, may be the parent of an image with @child's. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_chain_check_sectors (const VhdxInfo *child,
                                                             const VhdxInfo *parent,
                                                             const char *path,
                                                             GError **error);

G_END_DECLS
