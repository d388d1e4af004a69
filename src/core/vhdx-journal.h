/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The journal in front of an image being written: the metadata changes (BAT
 * and sector bitmap sectors, 4 KiB pages) collected in memory, a view of the
 * file in which they are already made (what the engine reads metadata
 * through), and their commit through the log (MS-VHDX 2.3): one log sequence
 * per commit, flushed, then applied in place.
 */
#pragma once

#include "vhdx-format.h"
#include "vhdx-io.h"

G_BEGIN_DECLS

typedef struct _VhdxJournal VhdxJournal;

/*
 * A journal writing the log at @log_offset (@log_length bytes, a multiple of
 * 1 MiB; 0 when the image has none) of @io (borrowed), with the new LogGuid
 * @log_guid: the log's earlier entries carry another one and are stale.
 */
G_GNUC_WARN_UNUSED_RESULT VhdxJournal *vhdx_journal_new (VhdxIo *io,
                                                         guint64 log_offset,
                                                         guint32 log_length,
                                                         const VhdxGuid *log_guid);
void vhdx_journal_free (VhdxJournal *journal);

/* The file as it is with the pending and committing changes made (owned by
 * the journal): read-only, for the BAT and the sector bitmaps. */
VhdxIo *vhdx_journal_get_view (VhdxJournal *journal);

/*
 * Queue the 4 KiB page @page (copied) for the file offset @offset
 * (4 KiB-aligned), replacing what was queued there.  A commit that takes
 * several log sequences writes pages of a lower @order first: each
 * sequence must leave a consistent file, so what a page refers to goes
 * before it (a sector bitmap before the BAT entries that need it).
 */
void vhdx_journal_set_page (VhdxJournal *journal,
                            guint64 offset,
                            const guint8 *page,
                            guint64 order);
/* Queue zeros over [@offset, @offset + @length), whole pages. */
void vhdx_journal_set_zeros (VhdxJournal *journal, guint64 offset, guint64 length, guint64 order);

/* TRUE when nothing is queued. */
gboolean vhdx_journal_is_empty (VhdxJournal *journal);

/* Called between the log entries of a commit being durable and their
 * updates being applied: where the header gets the log's GUID. */
typedef gboolean (*VhdxJournalHook) (gpointer user_data, GError **error);

/*
 * Take what is queued for the next commit (what is queued later goes to the
 * commit after): the caller does this where no change is half made, makes
 * the payload written so far durable, then commits.  FALSE when nothing is
 * queued.
 */
gboolean vhdx_journal_seal (VhdxJournal *journal);

/*
 * Commit what was sealed: write it to the log as one sequence (or, when it
 * does not fit half the log, as several, each applied and flushed before the
 * next one may overwrite log space), flush, call @before_apply, and write the
 * pages in place.  The in-place writes are made durable by the caller's next
 * flush; until then the log holds them.  @flushed_file_offset is a file size
 * known to be durable, @last_file_offset one that every structure fits in
 * (both multiples of 1 MiB).  Commits must not run concurrently.  After a
 * failure every later commit fails.  VHDX_ERROR_NOT_SUPPORTED when there is
 * something to commit but the image has no log.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_journal_commit (VhdxJournal *journal,
                                                        guint64 flushed_file_offset,
                                                        guint64 last_file_offset,
                                                        VhdxJournalHook before_apply,
                                                        gpointer user_data,
                                                        GError **error);

/* Log entries of at most @bytes (at least 8 KiB, at most half the log): for
 * tests, so that small commits take several sequences. */
void vhdx_journal_set_entry_limit (VhdxJournal *journal, guint32 bytes);

/* Log sequences written so far (each commit is one or more). */
guint64 vhdx_journal_get_sequences (VhdxJournal *journal);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxJournal, vhdx_journal_free)

G_END_DECLS
