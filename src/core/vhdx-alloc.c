/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* File space for the blocks of an image being written (see vhdx-alloc.h). */
#include "vhdx-alloc.h"

#include "vhdx-format.h"

typedef struct {
        guint64 offset;
        guint64 size;
        guint64 batch; /* freed by a change of this batch */
} FreeRange;

struct _VhdxAlloc {
        guint64 end;     /* fresh space starts here */
        guint64 durable; /* batches up to this one are durable */
        gboolean any_durable;
        GArray *free; /* FreeRange, in the order freed */
};

VhdxAlloc *
vhdx_alloc_new (guint64 fresh_start)
{
        VhdxAlloc *alloc = g_new0 (VhdxAlloc, 1);

        g_return_val_if_fail (fresh_start % VHDX_MiB == 0, NULL);
        alloc->end = fresh_start;
        alloc->free = g_array_new (FALSE, FALSE, sizeof (FreeRange));
        return alloc;
}

void
vhdx_alloc_free (VhdxAlloc *alloc)
{
        if (alloc == NULL)
                return;
        g_array_unref (alloc->free);
        g_free (alloc);
}

guint64
vhdx_alloc_take (VhdxAlloc *alloc, guint64 size, gboolean *stale)
{
        guint64 offset;

        g_return_val_if_fail (size > 0 && size % VHDX_MiB == 0, 0);

        for (guint i = 0; alloc->any_durable && i < alloc->free->len; i++) {
                FreeRange *r = &g_array_index (alloc->free, FreeRange, i);

                if (r->batch > alloc->durable || r->size < size)
                        continue;
                offset = r->offset;
                r->offset += size;
                r->size -= size;
                if (r->size == 0)
                        g_array_remove_index (alloc->free, i);
                *stale = TRUE;
                return offset;
        }
        offset = alloc->end;
        alloc->end += size;
        *stale = FALSE;
        return offset;
}

void
vhdx_alloc_release (VhdxAlloc *alloc, guint64 offset, guint64 size, guint64 batch)
{
        FreeRange r = { offset, size, batch };

        g_return_if_fail (offset % VHDX_MiB == 0 && size % VHDX_MiB == 0);
        g_array_append_val (alloc->free, r);
}

void
vhdx_alloc_exclude (VhdxAlloc *alloc, guint64 start, guint64 end)
{
        for (guint i = alloc->free->len; i-- > 0;) {
                FreeRange *r = &g_array_index (alloc->free, FreeRange, i);
                guint64 r_end = r->offset + r->size;

                if (r_end <= start || r->offset >= end)
                        continue;
                if (r->offset < start && r_end > end) {
                        /* The structure splits the range in two. */
                        FreeRange after = { end, r_end - end, r->batch };

                        r->size = start - r->offset;
                        g_array_append_val (alloc->free, after);
                } else if (r->offset < start) {
                        r->size = start - r->offset;
                } else if (r_end > end) {
                        r->size = r_end - end;
                        r->offset = end;
                } else {
                        g_array_remove_index (alloc->free, i);
                }
        }
        alloc->end = MAX (alloc->end, (end + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB);
}

void
vhdx_alloc_set_durable (VhdxAlloc *alloc, guint64 batch)
{
        alloc->durable = batch;
        alloc->any_durable = TRUE;
}

guint64
vhdx_alloc_get_end (VhdxAlloc *alloc)
{
        return alloc->end;
}

guint64
vhdx_alloc_get_free_bytes (VhdxAlloc *alloc)
{
        guint64 bytes = 0;

        for (guint i = 0; i < alloc->free->len; i++)
                bytes += g_array_index (alloc->free, FreeRange, i).size;
        return bytes;
}
