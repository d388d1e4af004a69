/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Appending entries to the log ring: data and zero descriptors, several
 * entries per sequence, wrapping past the end of the log region.
 */
#pragma once

#include "vhdx-format.h"
#include "vhdx-io.h"

G_BEGIN_DECLS

typedef struct _VhdxLogWriter VhdxLogWriter;

/*
 * A writer for the log at @log_offset (@log_length bytes) of @io (borrowed),
 * tagging entries with @log_guid.  The first entry goes to @position (a 4 KiB
 * multiple inside the log) with sequence number @sequence (non-zero), and
 * starts a new sequence.
 */
G_GNUC_WARN_UNUSED_RESULT VhdxLogWriter *vhdx_log_writer_new (VhdxIo *io,
                                                              guint64 log_offset,
                                                              guint32 log_length,
                                                              const VhdxGuid *log_guid,
                                                              guint32 position,
                                                              guint64 sequence);
void vhdx_log_writer_free (VhdxLogWriter *writer);

/* Queue a 4 KiB update of the file at @file_offset (4 KiB-aligned). */
void vhdx_log_writer_add_data (VhdxLogWriter *writer, guint64 file_offset, const guint8 *sector);
/* Queue zeroing @length bytes at @file_offset (both 4 KiB multiples). */
void vhdx_log_writer_add_zero (VhdxLogWriter *writer, guint64 file_offset, guint64 length);

/*
 * Write the queued updates as one entry at the current position and flush.
 * Its Tail points at the first entry of the current sequence.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_log_writer_commit (VhdxLogWriter *writer,
                                                           guint64 flushed_file_offset,
                                                           guint64 last_file_offset,
                                                           GError **error);

/* The next entry starts a new sequence (its Tail points at itself). */
void vhdx_log_writer_start_sequence (VhdxLogWriter *writer);

/* Where the next entry goes, and the sequence number it gets. */
guint32 vhdx_log_writer_get_position (VhdxLogWriter *writer);
guint64 vhdx_log_writer_get_sequence (VhdxLogWriter *writer);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxLogWriter, vhdx_log_writer_free)

G_END_DECLS
