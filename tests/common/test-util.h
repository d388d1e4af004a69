/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the test programs. */
#pragma once

#include <glib.h>

#include "vhdx-check.h"
#include "vhdx-reader.h"

G_BEGIN_DECLS

/*
 * Assert that @call, which reports failure through the GError @error,
 * succeeded: the error is asserted first, so that a failure shows its message.
 */
#define test_assert_ok(call, error)                                                        \
        G_STMT_START                                                                       \
        {                                                                                  \
                gboolean test_ok_ = (call);                                                \
                g_assert_no_error (error);                                                 \
                g_assert_true (test_ok_);                                                  \
        }                                                                                  \
        G_STMT_END

/* A temporary directory removed (with its files) by test_tmpdir_free(). */
G_GNUC_WARN_UNUSED_RESULT char *test_tmpdir_new (void);
void test_tmpdir_free (char *path);

/* TRUE if @program is on PATH. */
gboolean test_have_program (const char *program);

/* Run @argv (NULL-terminated); fail the test unless it exits with 0. */
void test_run (const char *const *argv);

/* Open @path read-only through the file descriptor backend. */
G_GNUC_WARN_UNUSED_RESULT VhdxFile *test_open_path (const char *path, GError **error);

/* sha256 of a whole file, and of the whole virtual disk of an opened image. */
G_GNUC_WARN_UNUSED_RESULT char *test_sha256_file (const char *path);
G_GNUC_WARN_UNUSED_RESULT char *test_sha256_virtual_disk (VhdxFile *file);

/* Compare vhdx_file_read (@file, @offset, @length) with the same range of the
 * raw file @raw_fd, failing the test with the first differing offset. */
void test_assert_range_equal (VhdxFile *file, int raw_fd, guint64 offset, gsize length);

/* Directory of the shared real-world samples, or NULL when absent. */
G_GNUC_WARN_UNUSED_RESULT char *test_samples_dir (void);

G_END_DECLS
