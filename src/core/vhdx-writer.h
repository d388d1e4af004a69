/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writing the virtual disk of an image opened read-write: data, zeros and
 * discards in place, for fixed, dynamic and differencing images, from
 * several threads at once.  Payload goes straight to the file; BAT and
 * sector bitmap changes go through the journal, committed at each flush
 * (MS-VHDX 2.3); the headers get new identifiers before the first change
 * (MS-VHDX 2.2.2).  What was flushed survives a crash at any later moment.
 */
#pragma once

/* VhdxWriteFlags, how a write is made, is public: in the library's enumerations. */
#include "vhdx-enums.h"
#include "vhdx-reader.h"

G_BEGIN_DECLS

/* Write @count bytes at @offset of the virtual disk, which must lie inside it. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_write (VhdxFile *file,
                                                    guint64 offset,
                                                    const void *buf,
                                                    gsize count,
                                                    VhdxWriteFlags flags,
                                                    GError **error);

/* Make [@offset, @offset + @length) read as zeros (never as the parent's data). */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_write_zeroes (VhdxFile *file,
                                                           guint64 offset,
                                                           guint64 length,
                                                           VhdxWriteFlags flags,
                                                           GError **error);

/*
 * Say that [@offset, @offset + @length) is no longer needed: the blocks it
 * covers entirely are freed and read as zeros; the rest is unchanged.  The
 * blocks of a fixed image stay allocated.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_discard (VhdxFile *file,
                                                      guint64 offset,
                                                      guint64 length,
                                                      VhdxWriteFlags flags,
                                                      GError **error);

/*
 * Make everything written so far durable: the payload, then the metadata
 * changes through the log.  Concurrent flushes are serialised, and one that
 * waited returns as soon as a flush that started after it was called has
 * committed; writes may go on meanwhile.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_flush (VhdxFile *file, GError **error);

/* What the writer did since open, for tests and tools. */
typedef struct {
        guint64 blocks_allocated;  /* payload blocks given file space */
        guint64 bitmaps_allocated; /* sector bitmap blocks given file space */
        guint64 blocks_reused;     /* of those, in space freed earlier */
        guint64 blocks_freed;
        guint64 log_sequences; /* log sequences written */
        guint64 flushes;       /* flushes of the file (flushes merged into one count once) */
        guint64 header_updates;
} VhdxWriteStats;

void vhdx_file_get_write_stats (VhdxFile *file, VhdxWriteStats *stats);

/* For tests: log entries of at most @bytes, so that small commits take
 * several log sequences (vhdx_journal_set_entry_limit()). */
void vhdx_file_set_log_entry_limit (VhdxFile *file, guint32 bytes);

/* For vhdx-file.c, which opens and closes the image. */
typedef struct _VhdxWriter VhdxWriter;

/*
 * Start writing @file, whose fixed structures are read and whose log was
 * replayed onto it, all below @structures_end: returns the I/O that the BAT
 * and the sector bitmaps must be read through (the journal's view).
 */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_writer_attach (VhdxFile *file,
                                                      guint64 structures_end,
                                                      GError **error);
/* The I/O that the BAT and the sector bitmaps are read through (owned by @writer). */
VhdxIo *vhdx_writer_get_view (VhdxWriter *writer);
/* vhdx_file_close() of an image opened read-write. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_writer_close (VhdxWriter *writer, GError **error);
void vhdx_writer_free (VhdxWriter *writer);

G_END_DECLS
