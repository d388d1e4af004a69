/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The crash harness's file: a writable in-memory VhdxIo that records every
 * write, change of size and flush, and the files a power cut at any of those calls could
 * leave behind, built from the record: what the last flush made durable,
 * with none, all, a random subset in a random order, or a prefix (its last
 * write torn at a 512-byte boundary) of the writes since.
 */
#pragma once

#include "vhdx-io.h"

G_BEGIN_DECLS

/* A file holding @contents (copied); with @record, its writes and flushes are recorded. */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *crash_io_new (const guint8 *contents,
                                                gsize length,
                                                gboolean record);

/* A file (not recording) holding @contents, copied into @storage, which it
 * keeps a reference to and writes: the caller can reuse one buffer for
 * many files, and read what the file holds after it is freed. */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *crash_io_new_in (GByteArray *storage,
                                                   const guint8 *contents,
                                                   gsize length);

/* The writes, changes of size and flushes recorded so far (the crash points: a crash just
 * before call N, for N from 0 to the count). */
guint crash_io_get_calls (VhdxIo *io);

/* The file as it is now. */
const GByteArray *crash_io_get_contents (VhdxIo *io);
/* The file as it is now, taken from @io, which is then empty. */
G_GNUC_WARN_UNUSED_RESULT GBytes *crash_io_steal_contents (VhdxIo *io);

typedef struct _CrashTrace CrashTrace;

/* The record: the contents at creation and the calls since (@io keeps working). */
G_GNUC_WARN_UNUSED_RESULT CrashTrace *crash_io_get_trace (VhdxIo *io);
void crash_trace_free (CrashTrace *trace);
/* The writes and flushes of the record. */
guint crash_trace_get_calls (const CrashTrace *trace);

typedef enum {
        CRASH_DURABLE, /* only what the last flush made durable */
        CRASH_ALL,     /* and every write since */
        CRASH_SUBSET,  /* and a random subset of them, in a random order */
        CRASH_TORN,    /* and a prefix of them, its last write torn */
        CRASH_N_KINDS,
} CrashKind;

const char *crash_kind_name (CrashKind kind);

/* Walks the crash points of a trace, from a crash before the first call. */
typedef struct _CrashWalker CrashWalker;

G_GNUC_WARN_UNUSED_RESULT CrashWalker *crash_walker_new (const CrashTrace *trace);
void crash_walker_free (CrashWalker *walker);

/* The call that a crash now comes just before. */
guint crash_walker_get_point (CrashWalker *walker);
/* Writes since the last flush. */
guint crash_walker_get_volatile (CrashWalker *walker);
/* Move past the next call; FALSE when there is none. */
gboolean crash_walker_advance (CrashWalker *walker);

/* A file a crash now could leave, into @out (whose memory is reused). */
void crash_walker_build (CrashWalker *walker, CrashKind kind, GRand *rand, GByteArray *out);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CrashTrace, crash_trace_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CrashWalker, crash_walker_free)

G_END_DECLS
