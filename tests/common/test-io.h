/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxIo wrappers for tests: one that counts what the engine asks of a file. */
#pragma once

#include "vhdx-io.h"

G_BEGIN_DECLS

/* What a counting VhdxIo has seen since it was made or last reset. */
typedef struct {
        guint64 preads;
        guint64 bytes_read;
        guint64 pwrites;
        guint64 bytes_written;
        guint64 flushes;
} TestIoCounts;

/*
 * A VhdxIo that forwards every call to @inner (owned) and counts them in
 * @counts, which the caller owns and which outlives the VhdxIo (an engine
 * that fails to open an image frees it).  With @forward_next_data FALSE it
 * hides the inner backend's next_data(), so that scans read what they would
 * otherwise skip.  The counts are updated atomically: several threads may
 * use it.
 */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *test_counting_io_new (VhdxIo *inner,
                                                        gboolean forward_next_data,
                                                        TestIoCounts *counts);
/* A snapshot of @counts, read atomically. */
void test_io_counts_get (const TestIoCounts *counts, TestIoCounts *snapshot);

G_END_DECLS
