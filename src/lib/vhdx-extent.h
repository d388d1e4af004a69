/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxExtent, a range of the virtual disk and where its bytes come from. */
#pragma once

#include <glib-object.h>

G_BEGIN_DECLS

/**
 * VhdxExtentKind:
 * @VHDX_EXTENT_KIND_DATA: the range is stored in a file of the chain, at
 *   [method@Vhdx.Extent.get_file_offset]
 * @VHDX_EXTENT_KIND_ZERO: the range reads as zeros
 * @VHDX_EXTENT_KIND_PARENT: the range is the parent's, and the image was
 *   opened without its parent (%VHDX_OPEN_FLAGS_NO_PARENT,
 *   %VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT); the depth is the parent's
 *
 * What a range of the virtual disk holds.
 *
 * Since: 0.1
 */
typedef enum {
        VHDX_EXTENT_KIND_DATA,
        VHDX_EXTENT_KIND_ZERO,
        VHDX_EXTENT_KIND_PARENT,
} VhdxExtentKind;

#define VHDX_TYPE_EXTENT (vhdx_extent_get_type ())

/**
 * VhdxExtent:
 *
 * A range of the virtual disk whose bytes all come from the same place:
 * stored data in one file of the chain, or zeros.
 *
 * [method@Vhdx.Image.get_extents] returns the extents that cover a range,
 * in order and without gaps; adjacent extents of the same kind and depth
 * whose data lies contiguously in the same file are merged.
 *
 * Since: 0.1
 */
typedef struct _VhdxExtent VhdxExtent;

GType vhdx_extent_get_type (void) G_GNUC_CONST;

G_GNUC_WARN_UNUSED_RESULT VhdxExtent *vhdx_extent_copy (const VhdxExtent *self);
void vhdx_extent_free (VhdxExtent *self);

guint64 vhdx_extent_get_offset (const VhdxExtent *self);
guint64 vhdx_extent_get_length (const VhdxExtent *self);
VhdxExtentKind vhdx_extent_get_kind (const VhdxExtent *self);
guint vhdx_extent_get_depth (const VhdxExtent *self);
gboolean vhdx_extent_is_present (const VhdxExtent *self);
guint64 vhdx_extent_get_file_offset (const VhdxExtent *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxExtent, vhdx_extent_free)

G_END_DECLS
