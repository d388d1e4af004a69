/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The journal of metadata changes and its commits through the log (see vhdx-journal.h). */
#include "vhdx-journal.h"

#include "vhdx-log-writer.h"
#include "vhdx-private.h"

/* A queued page: its 4 KiB (NULL for zeros), and where its commit puts it. */
typedef struct {
        GBytes *data;
        guint64 order;
} Page;

struct _VhdxJournal {
        VhdxIo *io;
        guint64 log_offset;
        guint32 log_length;
        VhdxLogWriter *log; /* NULL when the image has no log */
        guint64 sequences;
        guint32 entry_limit; /* half the log, or less for tests */
        gboolean failed;     /* a commit failed: the file lags behind memory */

        GMutex lock;
        GTree *pending;    /* file offset -> Page: queued for the next commit */
        GTree *committing; /* what the commit under way writes, or NULL */
        guint64 commits;   /* commits that ended, their pages in place (under lock) */

        VhdxIo view;
};

static gint
compare_offsets (gconstpointer a, gconstpointer b, gpointer user_data)
{
        guint64 x = *(const guint64 *) a, y = *(const guint64 *) b;

        return x < y ? -1 : x > y;
}

static void
page_free (gpointer data)
{
        Page *page = data;

        if (page->data != NULL)
                g_bytes_unref (page->data);
        g_free (page);
}

static Page *
page_new (const guint8 *data, guint64 order)
{
        Page *page = g_new (Page, 1);

        page->data = data != NULL ? g_bytes_new (data, VHDX_LOG_SECTOR_SIZE) : NULL;
        page->order = order;
        return page;
}

static GTree *
pages_new (void)
{
        return g_tree_new_full (compare_offsets, NULL, g_free, page_free);
}

/* The view: the file, with the committing pages over it and the pending ones over those. */

typedef struct {
        guint8 *out;
        guint64 start;
        guint64 end;
} Overlay;

static gboolean
overlay_page (gpointer key, gpointer value, gpointer user_data)
{
        Overlay *o = user_data;
        const Page *p = value;
        guint64 page = *(const guint64 *) key;
        guint64 lo = MAX (page, o->start);
        guint64 hi = MIN (page + VHDX_LOG_SECTOR_SIZE, o->end);

        if (page >= o->end)
                return TRUE; /* past the range: stop */
        if (lo >= hi)
                return FALSE;
        if (p->data != NULL)
                memcpy (o->out + (lo - o->start),
                        (const guint8 *) g_bytes_get_data (p->data, NULL) + (lo - page), hi - lo);
        else
                memset (o->out + (lo - o->start), 0, hi - lo);
        return FALSE;
}

static void
overlay_tree (GTree *tree, Overlay *o)
{
        guint64 first = o->start - o->start % VHDX_LOG_SECTOR_SIZE;
        GTreeNode *node;

        if (tree == NULL)
                return;
        node = g_tree_lower_bound (tree, &first);
        for (; node != NULL; node = g_tree_node_next (node)) {
                if (overlay_page (g_tree_node_key (node), g_tree_node_value (node), o))
                        break;
        }
}

static VhdxJournal *
journal_of_view (VhdxIo *io)
{
        return (VhdxJournal *) ((guint8 *) io - G_STRUCT_OFFSET (VhdxJournal, view));
}

static gboolean
view_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        VhdxJournal *journal = journal_of_view (io);
        guint64 commits;
        Overlay o;

        /* A commit that ends between the read of the file and the overlay
         * takes its pages out of the view after writing them in place:
         * the read, which may have come before those writes, is made again. */
        g_mutex_lock (&journal->lock);
        do {
                commits = journal->commits;
                g_mutex_unlock (&journal->lock);
                if (!journal->io->vtable->pread (journal->io, buf, count, offset, n_read, error))
                        return FALSE;
                g_mutex_lock (&journal->lock);
        } while (commits != journal->commits);
        /* Pages lie inside the file: those past a short read do not matter. */
        o.out = buf;
        o.start = offset;
        o.end = offset + *n_read;
        overlay_tree (journal->committing, &o);
        overlay_tree (journal->pending, &o);
        g_mutex_unlock (&journal->lock);
        return TRUE;
}

static gboolean
view_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        return vhdx_io_get_size (journal_of_view (io)->io, size, error);
}

/* The file's zeros, up to the first page queued or committing. */
static guint64
view_next_data (VhdxIo *io, guint64 offset)
{
        VhdxJournal *journal = journal_of_view (io);
        guint64 data = vhdx_io_next_data (journal->io, offset);
        guint64 first = offset - offset % VHDX_LOG_SECTOR_SIZE;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&journal->lock);
        GTree *trees[] = { journal->committing, journal->pending };

        for (guint i = 0; i < G_N_ELEMENTS (trees); i++) {
                GTreeNode *node = trees[i] != NULL ? g_tree_lower_bound (trees[i], &first) : NULL;

                if (node != NULL)
                        data = MIN (data, MAX (*(const guint64 *) g_tree_node_key (node), offset));
        }
        return data;
}

static void
view_free (VhdxIo *io)
{
        /* Owned by the journal. */
}

static const VhdxIoVTable view_vtable = {
        .pread = view_pread,
        .get_size = view_get_size,
        .free = view_free,
        .next_data = view_next_data,
};

VhdxJournal *
vhdx_journal_new (VhdxIo *io, guint64 log_offset, guint32 log_length, const VhdxGuid *log_guid)
{
        VhdxJournal *journal = g_new0 (VhdxJournal, 1);

        journal->io = io;
        journal->log_offset = log_offset;
        journal->log_length = log_length;
        journal->entry_limit = log_length / 2;
        /* The entries start at the log's beginning: those there carry another LogGuid. */
        if (log_length > 0)
                journal->log = vhdx_log_writer_new (io, log_offset, log_length, log_guid, 0, 1);
        g_mutex_init (&journal->lock);
        journal->pending = pages_new ();
        journal->view.vtable = &view_vtable;
        return journal;
}

void
vhdx_journal_free (VhdxJournal *journal)
{
        if (journal == NULL)
                return;
        vhdx_log_writer_free (journal->log);
        g_clear_pointer (&journal->pending, g_tree_unref);
        g_clear_pointer (&journal->committing, g_tree_unref);
        g_mutex_clear (&journal->lock);
        g_free (journal);
}

VhdxIo *
vhdx_journal_get_view (VhdxJournal *journal)
{
        return &journal->view;
}

void
vhdx_journal_set_page (VhdxJournal *journal, guint64 offset, const guint8 *page, guint64 order)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&journal->lock);

        g_return_if_fail (offset % VHDX_LOG_SECTOR_SIZE == 0);
        g_tree_replace (journal->pending, g_memdup2 (&offset, sizeof offset),
                        page_new (page, order));
}

void
vhdx_journal_set_zeros (VhdxJournal *journal, guint64 offset, guint64 length, guint64 order)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&journal->lock);

        g_return_if_fail (offset % VHDX_LOG_SECTOR_SIZE == 0 && length % VHDX_LOG_SECTOR_SIZE == 0);
        for (guint64 at = offset; at < offset + length; at += VHDX_LOG_SECTOR_SIZE)
                g_tree_replace (journal->pending, g_memdup2 (&at, sizeof at),
                                page_new (NULL, order));
}

gboolean
vhdx_journal_is_empty (VhdxJournal *journal)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&journal->lock);

        return g_tree_nnodes (journal->pending) == 0;
}

void
vhdx_journal_set_entry_limit (VhdxJournal *journal, guint32 bytes)
{
        g_return_if_fail (bytes >= 2 * VHDX_LOG_SECTOR_SIZE);
        journal->entry_limit = MIN (bytes, journal->log_length / 2);
}

guint64
vhdx_journal_get_sequences (VhdxJournal *journal)
{
        return journal->sequences;
}

/* An update of the file: a page, or a run of zero pages. */
typedef struct {
        guint64 offset;
        guint64 length;
        GBytes *data; /* 4 KiB, or NULL for zeros */
        guint64 order;
} Update;

static gint
compare_updates (gconstpointer a, gconstpointer b)
{
        const Update *x = a, *y = b;

        if (x->order != y->order)
                return x->order < y->order ? -1 : 1;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static gboolean
collect_update (gpointer key, gpointer value, gpointer user_data)
{
        GArray *updates = user_data;
        const Page *page = value;
        guint64 offset = *(const guint64 *) key;
        Update *last = updates->len > 0 ? &g_array_index (updates, Update, updates->len - 1) : NULL;

        /* Adjacent zero pages are one zero descriptor. */
        if (page->data == NULL && last != NULL && last->data == NULL &&
            last->order == page->order && last->offset + last->length == offset) {
                last->length += VHDX_LOG_SECTOR_SIZE;
        } else {
                Update u = { offset, VHDX_LOG_SECTOR_SIZE, page->data, page->order };
                g_array_append_val (updates, u);
        }
        return FALSE;
}

/* Bytes of a log entry with @n_descriptors descriptors, @n_data of them data. */
static guint64
entry_length (guint n_descriptors, guint n_data)
{
        guint64 header =
                VHDX_LOG_ENTRY_HEADER_SIZE + (guint64) n_descriptors * VHDX_LOG_DESCRIPTOR_SIZE;

        return (header + VHDX_LOG_SECTOR_SIZE - 1) / VHDX_LOG_SECTOR_SIZE * VHDX_LOG_SECTOR_SIZE +
               (guint64) n_data * VHDX_LOG_SECTOR_SIZE;
}

/* Write @updates[@first, @end) in place. */
static gboolean
apply (VhdxJournal *journal, GArray *updates, guint first, guint end, GError **error)
{
        for (guint i = first; i < end; i++) {
                const Update *u = &g_array_index (updates, Update, i);

                if (u->data != NULL
                            ? !vhdx_io_write (journal->io, g_bytes_get_data (u->data, NULL),
                                              VHDX_LOG_SECTOR_SIZE, u->offset, error)
                            : !vhdx_io_zero_range (journal->io, u->offset, u->length, FALSE, error))
                        return FALSE;
        }
        return TRUE;
}

static gboolean
commit_updates (VhdxJournal *journal,
                GArray *updates,
                guint64 flushed_file_offset,
                guint64 last_file_offset,
                VhdxJournalHook before_apply,
                gpointer user_data,
                GError **error)
{
        guint first = 0;

        while (first < updates->len) {
                guint end = first, n_data = 0;

                /* As many updates as one entry of half the log holds: an entry
                 * never overwrites the one before it, which must stay valid
                 * until this one is whole (a crash in between replays it).
                 * The updates of one order go into one entry when they fit
                 * one: they are made together (both copies of the region
                 * table, say). */
                while (end < updates->len) {
                        const Update *u = &g_array_index (updates, Update, end);
                        guint group_end = end, group_data = 0;

                        if (end > first && u->order != (u - 1)->order) {
                                while (group_end < updates->len &&
                                       g_array_index (updates, Update, group_end).order == u->order)
                                        group_data +=
                                                g_array_index (updates, Update, group_end++).data !=
                                                NULL;
                                if (entry_length (group_end - end, group_data) <=
                                            journal->entry_limit &&
                                    entry_length (group_end - first, n_data + group_data) >
                                            journal->entry_limit)
                                        break;
                        }
                        if (entry_length (end - first + 1, n_data + (u->data != NULL)) >
                            journal->entry_limit)
                                break;
                        n_data += u->data != NULL;
                        end++;
                }
                if (end == first) {
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                                     _ ("The log of %u bytes is too small for one update"),
                                     journal->log_length);
                        return FALSE;
                }
                vhdx_log_writer_start_sequence (journal->log);
                for (guint i = first; i < end; i++) {
                        const Update *u = &g_array_index (updates, Update, i);

                        if (u->data != NULL)
                                vhdx_log_writer_add_data (journal->log, u->offset,
                                                          g_bytes_get_data (u->data, NULL));
                        else
                                vhdx_log_writer_add_zero (journal->log, u->offset, u->length);
                }
                /* The entry, flushed: from here a crash replays it. */
                if (!vhdx_log_writer_commit (journal->log, flushed_file_offset, last_file_offset,
                                             error))
                        return FALSE;
                journal->sequences++;
                if (before_apply != NULL && first == 0 && !before_apply (user_data, error))
                        return FALSE;
                if (!apply (journal, updates, first, end, error))
                        return FALSE;
                /* The next entry may overwrite this one's log space only once
                 * its updates are durable in place. */
                if (end < updates->len && !vhdx_io_flush (journal->io, error))
                        return FALSE;
                first = end;
        }
        return TRUE;
}

gboolean
vhdx_journal_seal (VhdxJournal *journal)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&journal->lock);

        g_return_val_if_fail (journal->committing == NULL || journal->failed, FALSE);
        if (journal->committing != NULL || g_tree_nnodes (journal->pending) == 0)
                return FALSE;
        journal->committing = journal->pending;
        journal->pending = pages_new ();
        return TRUE;
}

gboolean
vhdx_journal_commit (VhdxJournal *journal,
                     guint64 flushed_file_offset,
                     guint64 last_file_offset,
                     VhdxJournalHook before_apply,
                     gpointer user_data,
                     GError **error)
{
        g_autoptr (GArray) updates = g_array_new (FALSE, FALSE, sizeof (Update));
        GTree *batch;

        if (journal->failed) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_LOG,
                             _ ("An earlier update of the image's metadata failed"));
                return FALSE;
        }
        /* Only the commit changes the sealed tree: read it unlocked. */
        batch = journal->committing;
        if (batch == NULL)
                return TRUE;
        g_tree_foreach (batch, collect_update, updates);
        /* Stable: pages of one order stay in file order. */
        g_array_sort (updates, compare_updates);
        if (journal->log == NULL) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("The image has no log, through which its metadata must be "
                                "updated"));
                journal->failed = TRUE;
                return FALSE;
        }
        if (!commit_updates (journal, updates, flushed_file_offset, last_file_offset, before_apply,
                             user_data, error)) {
                /* What is committing stays in the view: memory is ahead of the file. */
                journal->failed = TRUE;
                return FALSE;
        }
        g_mutex_lock (&journal->lock);
        journal->committing = NULL;
        journal->commits++;
        g_mutex_unlock (&journal->lock);
        g_tree_unref (batch);
        return TRUE;
}
