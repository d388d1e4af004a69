/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The parent locator item: the input is the item's bytes.  Parse it, then
 * look up its keys and derive the paths where the parent is looked for.
 */
#include "fuzz-common.h"
#include "vhdx-parent.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
        fuzz_init ();
        return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
        g_autoptr (GBytes) bytes = g_bytes_new (data, size);
        g_autoptr (VhdxIo) io = vhdx_io_new_memory (bytes);
        g_autoptr (GPtrArray) locator = NULL;
        g_autoptr (GPtrArray) candidates = NULL;
        g_autoptr (GPtrArray) explicit = NULL;
        g_autoptr (GError) error = NULL;
        const char *linkage;
        VhdxGuid guid;
        gsize text_bytes = 0;

        if (size > VHDX_METADATA_ITEM_MAX_LENGTH)
                return 0;
        locator = vhdx_parent_locator_read (io, 0, (guint32) size, &error);
        fuzz_note ("locator", error);
        if (locator == NULL) {
                g_assert (error != NULL && error->domain == VHDX_ERROR);
                return 0;
        }
        linkage = vhdx_parent_locator_lookup (locator, "parent_linkage");
        g_assert (linkage != NULL);
        (void) vhdx_guid_from_string (linkage, &guid);
        for (guint i = 0; i < locator->len; i++) {
                const VhdxLocatorEntry *e = g_ptr_array_index (locator, i);
                g_assert (g_utf8_validate (e->key, -1, NULL));
                g_assert (g_utf8_validate (e->value, -1, NULL));
                g_assert (vhdx_parent_locator_lookup (locator, e->key) == e->value);
                text_bytes += strlen (e->key) + strlen (e->value);
        }
        /* UTF-8 takes at most 3 bytes for each 2 of UTF-16: the text decoded is
         * bounded by the item, however its entries point into it. */
        g_assert_cmpuint (text_bytes, <=, 3 * size / 2);

        candidates = vhdx_parent_candidates (locator, "/fuzz/dir/" FUZZ_CHILD_NAME, NULL, NULL);
        for (guint i = 0; i < candidates->len; i++) {
                const char *path = g_ptr_array_index (candidates, i);
                g_assert (path != NULL && *path != '\0');
                for (guint j = 0; j < i; j++)
                        g_assert_cmpstr (g_ptr_array_index (candidates, j), !=, path);
        }
        explicit = vhdx_parent_candidates (locator, NULL, "/elsewhere/parent.vhdx", NULL);
        g_assert_cmpuint (explicit->len, ==, 1);
        g_clear_pointer (&candidates, g_ptr_array_unref);
        candidates = vhdx_parent_candidates (locator, NULL, NULL, NULL);
        g_assert_cmpuint (candidates->len, ==, 0);
        return 0;
}
