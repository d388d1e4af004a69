/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The parent chain of a differencing image: finding the parent among the
 * locator's candidates, checking its linkage GUID and sector size, the depth
 * limit, and recognising a chain that loops back to one of its members.
 */
#pragma once

#include "vhdx-reader.h"

G_BEGIN_DECLS

/* The identities (device, inode) of the members of a chain being opened. */
G_GNUC_WARN_UNUSED_RESULT GArray *vhdx_chain_identities_new (void);

/* Add the file behind @io to @identities; VHDX_ERROR_INVALID when it is
 * already a member of the chain. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_chain_enter (GArray *identities,
                                                     VhdxIo *io,
                                                     GError **error);

/*
 * Find and open the parent of @file, a differencing image at depth @depth
 * of its chain (0 for the image opened), and store it in @file.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_chain_open_parent (VhdxFile *file,
                                                           const VhdxOpenOptions *options,
                                                           guint depth,
                                                           GArray *identities,
                                                           GError **error);

G_END_DECLS
