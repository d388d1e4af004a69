/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Real images made by Hyper-V and Disk2VHD, read to the sha256 that two
 * independent readers (qemu-img and libvhdi) agree on.  Skipped when the
 * shared samples are not next to the source tree.
 */
#include "test-util.h"

typedef struct {
        const char *file;
        guint64 virtual_size;
        guint32 block_size;
        const char *sha256;
} Sample;

static const Sample samples[] = {
        { "iotest-dynamic-1G.vhdx.bz2", 1073741824, 32 << 20,
          "d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478" },
        { "test-disk2vhd.vhdx.bz2", 268435456, 2 << 20,
          "96d964042be9b58dda1725567abfb0cf9fd8380e2118754afa979c2ad445938a" },
};

static void
test_sample (gconstpointer data)
{
        const Sample *s = data;
        g_autofree char *dir = test_samples_dir ();
        g_autofree char *src = NULL, *tmp = NULL, *image = NULL, *cmd = NULL;
        g_autofree char *before = NULL, *after = NULL, *sum = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GPtrArray) problems = NULL;
        const VhdxInfo *info;

        if (dir == NULL) {
                g_test_skip ("the shared samples are not available");
                return;
        }
        src = g_build_filename (dir, s->file, NULL);
        if (!g_file_test (src, G_FILE_TEST_EXISTS) || !test_have_program ("bzcat")) {
                g_test_skip ("sample or bzcat missing");
                return;
        }
        tmp = test_tmpdir_new ();
        image = g_build_filename (tmp, "sample.vhdx", NULL);
        cmd = g_strdup_printf ("bzcat '%s' > '%s'", src, image);
        {
                const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
                test_run (argv);
        }
        before = test_sha256_file (image);

        file = test_open_path (image, &error);
        g_assert_no_error (error);
        info = vhdx_file_get_info (file);
        g_assert_cmpuint (info->virtual_size, ==, s->virtual_size);
        g_assert_cmpuint (info->block_size, ==, s->block_size);
        g_assert_cmpint (info->disk_type, ==, VHDX_DISK_TYPE_DYNAMIC);
        sum = test_sha256_virtual_disk (file);
        g_assert_cmpstr (sum, ==, s->sha256);

        problems = g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
        test_assert_ok (vhdx_file_check (file, problems, &error), error);
        for (guint i = 0; i < problems->len; i++) {
                VhdxProblem *p = g_ptr_array_index (problems, i);
                g_test_message ("%s: %s at %" G_GUINT64_FORMAT ": %s",
                                vhdx_severity_to_string (p->severity), p->structure, p->offset,
                                p->message);
        }
        g_assert_false (vhdx_problems_have_errors (problems));

        g_clear_pointer (&file, vhdx_file_free);
        after = test_sha256_file (image);
        g_assert_cmpstr (before, ==, after);
        test_tmpdir_free (g_steal_pointer (&tmp));
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);
        for (guint i = 0; i < G_N_ELEMENTS (samples); i++) {
                g_autofree char *path = g_strdup_printf ("/samples/%s", samples[i].file);
                g_test_add_data_func (path, &samples[i], test_sample);
        }
        return g_test_run ();
}
