/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The log: finding the active sequence in the ring, and replaying it either
 * into a memory overlay (read-only opens) or onto the file (repair).
 */
#pragma once

#include "vhdx-format.h"
#include "vhdx-header.h"
#include "vhdx-io.h"

G_BEGIN_DECLS

/* One 4 KiB-granular update of the file, as a log descriptor describes it. */
typedef struct {
        guint64 file_offset;
        guint64 length;
        /* LENGTH bytes for a data descriptor, in the sequence's DATA; NULL for
         * a zero descriptor. */
        const guint8 *data;
} VhdxLogWrite;

typedef struct {
        GArray *writes;  /* VhdxLogWrite in replay order */
        guint8 *data;    /* the data descriptors' sectors, one after the other */
        guint n_entries; /* entries from the tail to the head */
        guint32 tail;    /* log offset of the tail entry */
        guint32 head;    /* log offset of the head entry */
        guint64 head_sequence;
        guint64 flushed_file_offset;
        guint64 last_file_offset;
        guint n_stale_entries; /* valid-looking entries of another LogGuid */
} VhdxLogSequence;

void vhdx_log_sequence_free (VhdxLogSequence *sequence);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxLogSequence, vhdx_log_sequence_free)

/*
 * Find the active sequence of the log that @header describes.  No valid
 * sequence is VHDX_ERROR_LOG; a file shorter than the head entry's
 * FlushedFileOffset is VHDX_ERROR_TRUNCATED.  @header_offset names the header
 * in messages.
 */
G_GNUC_WARN_UNUSED_RESULT VhdxLogSequence *vhdx_log_find_active (VhdxIo *io,
                                                                 guint64 file_size,
                                                                 const VhdxHeader *header,
                                                                 guint64 header_offset,
                                                                 GError **error);

/* The size of the file once @sequence is replayed onto a file of @file_size bytes. */
guint64 vhdx_log_sequence_replayed_size (const VhdxLogSequence *sequence, guint64 file_size);

/*
 * A read-only VhdxIo that shows @base as it is after replaying @sequence,
 * without writing to it.  Takes ownership of both.
 */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_io_new_log_overlay (VhdxIo *base,
                                                           VhdxLogSequence *sequence,
                                                           GError **error);

/*
 * Replay @sequence onto the file: apply every write, flush, extend the file
 * to LastFileOffset, flush.  The caller then clears LogGuid in the headers.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_log_replay_to_file (VhdxIo *io,
                                                            const VhdxLogSequence *sequence,
                                                            GError **error);

G_END_DECLS
