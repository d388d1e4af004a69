/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The threads of vhdx convert: chunks of the disk read and checked in parallel, written in order
 * when asked. */
#include "config.h"

#include "convert-workers.h"
#include "vhdx-cli.h"

/*
 * The main thread walks the disk and submits chunks; a pool of threads runs
 * work() on them, several at once, so that one thread reads while another
 * writes.  With commit(), each chunk's commit() runs after work(), in the
 * order the chunks were submitted, one at a time (a new image's blocks are
 * laid out in the order of the disk).  The chunks and their buffers are
 * made once and reused: the main thread waits for a free one, which bounds
 * both the memory and how far the walk runs ahead.  After the first
 * failure, the chunks still queued are passed over.
 */

/* As many threads as processors, at least two (one reads while another
 * writes), at most four (the kernel writes to one file one call at a time). */
#define MIN_THREADS 2
#define MAX_THREADS 4
/* Chunks beyond the threads': the next ones are ready when a thread is. */
#define SPARE_CHUNKS 2

struct _CliWorkers {
        GThreadPool *pool;
        GAsyncQueue *free_chunks;
        CliChunk *chunks;
        guint n_chunks;
        CliChunkFunc work;
        CliChunkFunc commit;
        gpointer user_data;
        guint64 submitted;
        GMutex lock;
        GCond turn_changed;
        guint64 turn; /* the chunk whose commit() is next */
        gboolean failed;
        const char *fail_path;
        GError *error;
};

static gboolean
has_failed (CliWorkers *w)
{
        gboolean failed;

        g_mutex_lock (&w->lock);
        failed = w->failed;
        g_mutex_unlock (&w->lock);
        return failed;
}

/* The first failure is kept; later ones follow from it. */
static void
record_failure (CliWorkers *w, const char *path, GError *error)
{
        g_mutex_lock (&w->lock);
        if (!w->failed) {
                w->failed = TRUE;
                w->fail_path = path;
                w->error = error;
                error = NULL;
        }
        g_mutex_unlock (&w->lock);
        g_clear_error (&error);
}

static void
run_chunk (gpointer data, gpointer user_data)
{
        CliChunk *chunk = data;
        CliWorkers *w = user_data;
        const char *path = NULL;
        GError *error = NULL;

        if (!has_failed (w) && !w->work (chunk, w->user_data, &path, &error))
                record_failure (w, path, error);
        if (w->commit != NULL) {
                gboolean failed;

                /* The pool takes chunks in the order submitted: the one
                 * whose turn it is runs on another thread, or has run. */
                g_mutex_lock (&w->lock);
                while (w->turn != chunk->index)
                        g_cond_wait (&w->turn_changed, &w->lock);
                failed = w->failed;
                g_mutex_unlock (&w->lock);
                if (!failed && !chunk->skip && !w->commit (chunk, w->user_data, &path, &error))
                        record_failure (w, path, error);
                g_mutex_lock (&w->lock);
                w->turn++;
                g_cond_broadcast (&w->turn_changed);
                g_mutex_unlock (&w->lock);
        }
        g_async_queue_push (w->free_chunks, chunk);
}

/* Threads running @work (and @commit in order, unless NULL) on chunks of
 * one buffer, or two with @two_buffers. */
CliWorkers *
cli_workers_new (gboolean two_buffers, CliChunkFunc work, CliChunkFunc commit, gpointer user_data)
{
        CliWorkers *w = g_new0 (CliWorkers, 1);
        guint threads = CLAMP (g_get_num_processors (), MIN_THREADS, MAX_THREADS);

        w->work = work;
        w->commit = commit;
        w->user_data = user_data;
        g_mutex_init (&w->lock);
        g_cond_init (&w->turn_changed);
        w->free_chunks = g_async_queue_new ();
        w->n_chunks = threads + SPARE_CHUNKS;
        w->chunks = g_new0 (CliChunk, w->n_chunks);
        for (guint i = 0; i < w->n_chunks; i++) {
                w->chunks[i].buf = g_malloc (CLI_CHUNK_SIZE);
                if (two_buffers)
                        w->chunks[i].base = g_malloc (CLI_CHUNK_SIZE);
                g_async_queue_push (w->free_chunks, &w->chunks[i]);
        }
        /* Not exclusive: cannot fail. */
        w->pool = g_thread_pool_new (run_chunk, w, (int) threads, FALSE, NULL);
        return w;
}

/* A free chunk, once there is one; NULL once a chunk has failed (nothing
 * more should be submitted: cli_workers_finish() tells what failed). */
CliChunk *
cli_workers_next (CliWorkers *w)
{
        CliChunk *chunk = g_async_queue_pop (w->free_chunks);

        if (has_failed (w)) {
                g_async_queue_push (w->free_chunks, chunk);
                return NULL;
        }
        chunk->offset = 0;
        chunk->length = 0;
        chunk->has_data = FALSE;
        chunk->parent_data = FALSE;
        chunk->skip = FALSE;
        return chunk;
}

/* Hand @chunk, from cli_workers_next(), its fields set, to the threads. */
void
cli_workers_submit (CliWorkers *w, CliChunk *chunk)
{
        chunk->index = w->submitted++;
        g_thread_pool_push (w->pool, chunk, NULL);
}

/* Wait for every chunk submitted and free @w; FALSE with the first
 * failure's @path and @error (either may be NULL to drop it). */
gboolean
cli_workers_finish (CliWorkers *w, const char **path, GError **error)
{
        gboolean ok;

        for (guint i = 0; i < w->n_chunks; i++)
                (void) g_async_queue_pop (w->free_chunks);
        g_thread_pool_free (w->pool, FALSE, TRUE);
        ok = !w->failed;
        if (!ok) {
                if (path != NULL)
                        *path = w->fail_path;
                g_propagate_error (error, w->error);
        }
        for (guint i = 0; i < w->n_chunks; i++) {
                g_free (w->chunks[i].buf);
                g_free (w->chunks[i].base);
        }
        g_free (w->chunks);
        g_async_queue_unref (w->free_chunks);
        g_cond_clear (&w->turn_changed);
        g_mutex_clear (&w->lock);
        g_free (w);
        return ok;
}

/* Wait for every chunk submitted and free @w, whatever befell them: the
 * caller failed on its own. */
void
cli_workers_abandon (CliWorkers *w)
{
        if (!cli_workers_finish (w, NULL, NULL))
                g_debug ("a chunk failed too after the conversion did");
}
