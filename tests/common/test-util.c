/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "test-util.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <unistd.h>

char *
test_tmpdir_new (void)
{
        g_autoptr(GError) error = NULL;
        char *path = g_dir_make_tmp ("libvhdx-test-XXXXXX", &error);

        g_assert_no_error (error);
        return path;
}

static void
remove_tree (const char *path)
{
        g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
        const char *name;

        if (dir != NULL) {
                while ((name = g_dir_read_name (dir)) != NULL) {
                        g_autofree char *child = g_build_filename (path, name, NULL);
                        if (g_file_test (child, G_FILE_TEST_IS_DIR) &&
                            !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
                                remove_tree (child);
                        else
                                g_unlink (child);
                }
        }
        g_rmdir (path);
}

void
test_tmpdir_free (char *path)
{
        if (path == NULL)
                return;
        remove_tree (path);
        g_free (path);
}

gboolean
test_have_program (const char *program)
{
        g_autofree char *path = g_find_program_in_path (program);

        return path != NULL;
}

void
test_run (const char *const *argv)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *out = NULL;
        g_autofree char *err = NULL;
        g_autofree char *cmdline = g_strjoinv (" ", (char **) argv);
        int status = 0;

        g_test_message ("running: %s", cmdline);
        g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                      &status, &error);
        g_assert_no_error (error);
        if (!g_spawn_check_wait_status (status, &error))
                g_error ("%s failed: %s\n%s%s", cmdline, error->message, out, err);
}

VhdxFile *
test_open_path (const char *path, GError **error)
{
        int fd = open (path, O_RDONLY | O_CLOEXEC);

        if (fd < 0) {
                g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "%s: %s",
                             path, g_strerror (errno));
                return NULL;
        }
        {
                /* With its path, so that a differencing image finds its parent. */
                VhdxOpenOptions options = { .path = path };
                return vhdx_file_open_full (vhdx_io_new_fd (fd, TRUE), VHDX_OPEN_FLAGS_NONE,
                                            &options, error);
        }
}

char *
test_sha256_file (const char *path)
{
        g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
        g_autofree guint8 *buf = g_malloc (1 << 20);
        int fd = open (path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        g_assert_cmpint (fd, >=, 0);
        while ((n = read (fd, buf, 1 << 20)) > 0)
                g_checksum_update (sum, buf, n);
        g_assert_cmpint (n, ==, 0);
        close (fd);
        return g_strdup (g_checksum_get_string (sum));
}

char *
test_sha256_virtual_disk (VhdxFile *file)
{
        const VhdxInfo *info = vhdx_file_get_info (file);
        g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
        const gsize chunk = 8 << 20;
        g_autofree guint8 *buf = g_malloc (chunk);

        for (guint64 offset = 0; offset < info->virtual_size;) {
                g_autoptr(GError) error = NULL;
                gsize n = (gsize) MIN ((guint64) chunk, info->virtual_size - offset);
                test_assert_ok (vhdx_file_read (file, offset, buf, n, &error), error);
                g_checksum_update (sum, buf, n);
                offset += n;
        }
        return g_strdup (g_checksum_get_string (sum));
}

void
test_assert_range_equal (VhdxFile *file, int raw_fd, guint64 offset, gsize length)
{
        g_autoptr(GError) error = NULL;
        g_autofree guint8 *got = g_malloc (MAX (length, 1));
        g_autofree guint8 *want = g_malloc0 (MAX (length, 1));
        gsize done = 0;

        test_assert_ok (vhdx_file_read (file, offset, got, length, &error), error);
        while (done < length) {
                ssize_t n = pread (raw_fd, want + done, length - done, (off_t) (offset + done));
                g_assert_cmpint (n, >=, 0);
                if (n == 0)
                        break; /* a raw file may end in a hole: the rest is zeros */
                done += (gsize) n;
        }
        if (memcmp (got, want, length) != 0) {
                for (gsize i = 0; i < length; i++) {
                        if (got[i] != want[i])
                                g_error ("read of %" G_GUINT64_FORMAT "+%" G_GSIZE_FORMAT
                                         " differs at virtual offset %" G_GUINT64_FORMAT
                                         ": got 0x%02x, want 0x%02x",
                                         offset, length, offset + i, got[i], want[i]);
                }
        }
}

char *
test_samples_dir (void)
{
        const char *shared = g_getenv ("VHDX_SHARED_DIR");
        g_autofree char *dir = NULL;

        if (shared == NULL)
                return NULL;
        dir = g_build_filename (shared, "samples", NULL);
        if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
                return NULL;
        return g_steal_pointer (&dir);
}
