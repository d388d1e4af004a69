/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxExtent, a range of the virtual disk and where its bytes come from. */
#include "config.h"

#include "vhdx-extent-private.h"

struct _VhdxExtent {
        guint64 offset;
        guint64 length;
        VhdxExtentKind kind;
        guint depth;
        gboolean present;
        guint64 file_offset;
};

G_DEFINE_BOXED_TYPE (VhdxExtent, vhdx_extent, vhdx_extent_copy, vhdx_extent_free)

VhdxExtent *
vhdx_extent_new (const VhdxMapExtent *map_extent)
{
        VhdxExtent *self = g_new0 (VhdxExtent, 1);

        self->offset = map_extent->offset;
        self->length = map_extent->length;
        switch (map_extent->kind) {
        case VHDX_EXTENT_DATA:
                self->kind = VHDX_EXTENT_KIND_DATA;
                break;
        case VHDX_EXTENT_PARENT:
                self->kind = VHDX_EXTENT_KIND_PARENT;
                break;
        case VHDX_EXTENT_ZERO:
        default:
                self->kind = VHDX_EXTENT_KIND_ZERO;
                break;
        }
        self->depth = map_extent->depth;
        self->present = map_extent->kind == VHDX_EXTENT_DATA || map_extent->present;
        self->file_offset = map_extent->kind == VHDX_EXTENT_DATA ? map_extent->file_offset : 0;
        return self;
}

/**
 * vhdx_extent_copy:
 * @self: an extent
 *
 * Copies an extent.
 *
 * Returns: (transfer full): a copy of @self
 *
 * Since: 0.1
 */
VhdxExtent *
vhdx_extent_copy (const VhdxExtent *self)
{
        g_return_val_if_fail (self != NULL, NULL);

        return g_memdup2 (self, sizeof *self);
}

/**
 * vhdx_extent_free:
 * @self: (nullable): an extent
 *
 * Frees an extent.
 *
 * Since: 0.1
 */
void
vhdx_extent_free (VhdxExtent *self)
{
        g_free (self);
}

/**
 * vhdx_extent_get_offset:
 * @self: an extent
 *
 * Gets where the extent starts.
 *
 * Returns: the offset in bytes of the extent in the virtual disk
 *
 * Since: 0.1
 */
guint64
vhdx_extent_get_offset (const VhdxExtent *self)
{
        g_return_val_if_fail (self != NULL, 0);

        return self->offset;
}

/**
 * vhdx_extent_get_length:
 * @self: an extent
 *
 * Gets the length of the extent.
 *
 * Returns: the length in bytes of the extent
 *
 * Since: 0.1
 */
guint64
vhdx_extent_get_length (const VhdxExtent *self)
{
        g_return_val_if_fail (self != NULL, 0);

        return self->length;
}

/**
 * vhdx_extent_get_kind:
 * @self: an extent
 *
 * Gets whether the extent holds data or reads as zeros.
 *
 * Returns: the kind of the extent
 *
 * Since: 0.1
 */
VhdxExtentKind
vhdx_extent_get_kind (const VhdxExtent *self)
{
        g_return_val_if_fail (self != NULL, VHDX_EXTENT_KIND_ZERO);

        return self->kind;
}

/**
 * vhdx_extent_get_depth:
 * @self: an extent
 *
 * Gets which image of a differencing chain supplies the extent.
 *
 * Returns: 0 for the image itself, 1 for its parent, and so on
 *
 * Since: 0.1
 */
guint
vhdx_extent_get_depth (const VhdxExtent *self)
{
        g_return_val_if_fail (self != NULL, 0);

        return self->depth;
}

/**
 * vhdx_extent_is_present:
 * @self: an extent
 *
 * Gets whether the image describes the extent at all.  Data extents are
 * always present; a zero extent is present when its blocks are marked as
 * zero in the image, and absent when they were never allocated.
 *
 * Returns: %TRUE if the extent is present
 *
 * Since: 0.1
 */
gboolean
vhdx_extent_is_present (const VhdxExtent *self)
{
        g_return_val_if_fail (self != NULL, FALSE);

        return self->present;
}

/**
 * vhdx_extent_get_file_offset:
 * @self: an extent
 *
 * Gets where the data of a %VHDX_EXTENT_KIND_DATA extent is stored, in the
 * file of the image at [method@Vhdx.Extent.get_depth] in the chain.
 *
 * Returns: the file offset in bytes, or 0 for a zero extent
 *
 * Since: 0.1
 */
guint64
vhdx_extent_get_file_offset (const VhdxExtent *self)
{
        g_return_val_if_fail (self != NULL, 0);

        return self->file_offset;
}
