/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "vhdx-bat.h"

#include "vhdx-private.h"

struct _VhdxBat {
        VhdxIo *io;
        guint64 file_offset;
        guint64 n_entries;
        guint64 n_pages;
        /* Each page is NULL until first used, then an array of host-order
         * entries; set once with a compare-and-swap and never changed. */
        guint64 **pages;
};

VhdxBat *
vhdx_bat_new (VhdxIo *io, guint64 file_offset, guint64 n_entries)
{
        VhdxBat *bat = g_new0 (VhdxBat, 1);

        bat->io = io;
        bat->file_offset = file_offset;
        bat->n_entries = n_entries;
        bat->n_pages = (n_entries + VHDX_BAT_PAGE_ENTRIES - 1) / VHDX_BAT_PAGE_ENTRIES;
        bat->pages = g_new0 (guint64 *, bat->n_pages);
        return bat;
}

void
vhdx_bat_free (VhdxBat *bat)
{
        if (bat == NULL)
                return;
        for (guint64 i = 0; i < bat->n_pages; i++)
                g_free (bat->pages[i]);
        g_free (bat->pages);
        g_free (bat);
}

guint64
vhdx_bat_get_n_entries (VhdxBat *bat)
{
        return bat->n_entries;
}

static guint64 *
load_page (VhdxBat *bat, guint64 page, GError **error)
{
        guint64 first = page * VHDX_BAT_PAGE_ENTRIES;
        gsize n = (gsize) MIN ((guint64) VHDX_BAT_PAGE_ENTRIES, bat->n_entries - first);
        guint64 offset = bat->file_offset + first * VHDX_BAT_ENTRY_SIZE;
        g_autofree guint64 *entries = g_new (guint64, n);

        if (!vhdx_io_read_exact (bat->io, entries, n * VHDX_BAT_ENTRY_SIZE, offset, _ ("BAT"),
                                 error))
                return NULL;
        for (gsize i = 0; i < n; i++)
                entries[i] = GUINT64_FROM_LE (entries[i]);

        if (!g_atomic_pointer_compare_and_exchange (&bat->pages[page], NULL, entries)) {
                /* Another thread published the same page first: use its copy. */
                return g_atomic_pointer_get (&bat->pages[page]);
        }
        return g_steal_pointer (&entries);
}

gboolean
vhdx_bat_get (VhdxBat *bat, guint64 index, guint64 *entry, GError **error)
{
        guint64 page = index / VHDX_BAT_PAGE_ENTRIES;
        guint64 *entries;

        g_return_val_if_fail (index < bat->n_entries, FALSE);

        entries = g_atomic_pointer_get (&bat->pages[page]);
        if (G_UNLIKELY (entries == NULL)) {
                entries = load_page (bat, page, error);
                if (entries == NULL)
                        return FALSE;
        }
        *entry = entries[index % VHDX_BAT_PAGE_ENTRIES];
        return TRUE;
}

gboolean
vhdx_bat_read_range (VhdxBat *bat, guint64 first, gsize count, guint64 *entries, GError **error)
{
        g_return_val_if_fail (first <= bat->n_entries && count <= bat->n_entries - first, FALSE);

        if (!vhdx_io_read_exact (bat->io, entries, count * VHDX_BAT_ENTRY_SIZE,
                                 bat->file_offset + first * VHDX_BAT_ENTRY_SIZE, _ ("BAT"), error))
                return FALSE;
        for (gsize i = 0; i < count; i++)
                entries[i] = GUINT64_FROM_LE (entries[i]);
        return TRUE;
}

guint64
vhdx_bat_skip_zeros (VhdxBat *bat, guint64 first)
{
        guint64 offset, data;

        if (first >= bat->n_entries)
                return bat->n_entries;
        offset = bat->file_offset + first * VHDX_BAT_ENTRY_SIZE;
        data = vhdx_io_next_data (bat->io, offset);
        if (data <= offset)
                return first;
        /* The entry that holds @data may be non-zero; those before it are zeros. */
        return MIN (first + (data - offset) / VHDX_BAT_ENTRY_SIZE, bat->n_entries);
}
