/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Open an image (a sparse input, see fuzz-common.h), look at everything open
 * reports, then check it and count its allocated bytes.  Differencing inputs
 * find the fixed parent; a locator that names the input itself is a loop.
 */
#include "fuzz-common.h"
#include "vhdx-check.h"
#include "vhdx-problems.h"

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
        g_autoptr (FuzzImage) image = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GPtrArray) problems = NULL;
        const guint8 *tail;
        gsize tail_len;
        guint8 flags;
        const VhdxInfo *info;
        GPtrArray *locator;
        guint64 allocated = 0;

        image = fuzz_image_decode (data, size, &flags, &tail, &tail_len);
        if (image == NULL)
                return 0;
        file = fuzz_open_image (image, FALSE, &error);
        fuzz_note ("open", error);
        if (file == NULL) {
                /* Nothing but damage can go wrong: the io never fails. */
                g_assert (error != NULL && error->domain == VHDX_ERROR);
                return 0;
        }
        g_assert_no_error (error);

        info = vhdx_file_get_info (file);
        g_assert (info->virtual_size > 0 && info->virtual_size <= VHDX_MAX_VIRTUAL_SIZE);
        g_assert (info->geometry.bat_entries * VHDX_BAT_ENTRY_SIZE <= info->bat_length);
        (void) vhdx_disk_type_to_string (info->disk_type);
        (void) vhdx_log_state_to_string (info->log_state);
        locator = vhdx_file_get_parent_locator (file);
        for (guint i = 0; locator != NULL && i < locator->len; i++) {
                const VhdxLocatorEntry *e = g_ptr_array_index (locator, i);
                g_assert (g_utf8_validate (e->key, -1, NULL));
                g_assert (g_utf8_validate (e->value, -1, NULL));
        }
        g_assert ((vhdx_file_get_parent (file) != NULL) ==
                  (info->disk_type == VHDX_DISK_TYPE_DIFFERENCING));
        g_assert_cmpuint (vhdx_file_get_chain_depth (file), <=, VHDX_MAX_CHAIN_DEPTH);
        g_assert (vhdx_file_get_open_problems (file) != NULL);

        problems = g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
        if (!vhdx_file_check (file, problems, &error)) {
                g_assert (error != NULL && error->domain == VHDX_ERROR);
                g_clear_error (&error);
        }
        (void) vhdx_problems_have_errors (problems);

        if (vhdx_file_get_allocated_bytes (file, &allocated, &error))
                g_assert_cmpuint (allocated, <=, info->virtual_size);
        else
                g_assert (error != NULL && error->domain == VHDX_ERROR);
        return 0;
}
