/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The threads of vhdx convert: chunks of the disk read and checked in parallel, written in order
 * when asked. */
#include "config.h"

#include <pthread.h>

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
/* Buffers start on a page: the kernel copies from one that does not (as
 * malloc() gives, 16 bytes in) at a third of the speed on some processors. */
#define BUFFER_ALIGNMENT 4096

/* The state is guarded by a POSIX mutex rather than GLib's queues and
 * GMutex, which wait on futexes that ThreadSanitizer cannot see. */
struct _CliWorkers {
        pthread_mutex_t lock;
        pthread_cond_t changed; /* any of the below */
        GThread **threads;
        guint n_threads;
        CliChunk *chunks;
        guint n_chunks;
        GQueue free_chunks;
        GQueue queued; /* submitted, not yet taken by a thread */
        gboolean closing;
        CliChunkFunc work;
        CliChunkFunc commit;
        gpointer user_data;
        guint64 submitted;
        guint64 turn; /* the chunk whose commit() is next */
        gboolean failed;
        const char *fail_path;
        GError *error;
};

/* The first failure is kept; later ones follow from it.  Called locked. */
static void
record_failure_locked (CliWorkers *w, const char *path, GError *error)
{
        if (!w->failed) {
                w->failed = TRUE;
                w->fail_path = path;
                w->error = error;
        } else {
                g_clear_error (&error);
        }
}

static void
run_chunk (CliWorkers *w, CliChunk *chunk, gboolean failed)
{
        const char *path = NULL;
        GError *error = NULL;

        if (!failed && !w->work (chunk, w->user_data, &path, &error)) {
                pthread_mutex_lock (&w->lock);
                record_failure_locked (w, path, error);
                pthread_mutex_unlock (&w->lock);
        }
        if (w->commit != NULL) {
                /* Threads take chunks in the order submitted: the one whose
                 * turn it is runs on another thread, or has run. */
                pthread_mutex_lock (&w->lock);
                while (w->turn != chunk->index)
                        pthread_cond_wait (&w->changed, &w->lock);
                failed = w->failed;
                pthread_mutex_unlock (&w->lock);
                error = NULL;
                if (!failed && !chunk->skip && !w->commit (chunk, w->user_data, &path, &error)) {
                        pthread_mutex_lock (&w->lock);
                        record_failure_locked (w, path, error);
                        pthread_mutex_unlock (&w->lock);
                }
                pthread_mutex_lock (&w->lock);
                w->turn++;
                pthread_mutex_unlock (&w->lock);
        }
        pthread_mutex_lock (&w->lock);
        g_queue_push_tail (&w->free_chunks, chunk);
        pthread_cond_broadcast (&w->changed);
        pthread_mutex_unlock (&w->lock);
}

static gpointer
worker_thread (gpointer data)
{
        CliWorkers *w = data;

        for (;;) {
                CliChunk *chunk;
                gboolean failed;

                pthread_mutex_lock (&w->lock);
                while (g_queue_is_empty (&w->queued) && !w->closing)
                        pthread_cond_wait (&w->changed, &w->lock);
                chunk = g_queue_pop_head (&w->queued);
                failed = w->failed;
                pthread_mutex_unlock (&w->lock);
                if (chunk == NULL)
                        return NULL;
                run_chunk (w, chunk, failed);
        }
}

/* Threads running @work (and @commit in order, unless NULL) on chunks of
 * one buffer, or two with @two_buffers. */
CliWorkers *
cli_workers_new (gboolean two_buffers, CliChunkFunc work, CliChunkFunc commit, gpointer user_data)
{
        CliWorkers *w = g_new0 (CliWorkers, 1);

        w->work = work;
        w->commit = commit;
        w->user_data = user_data;
        pthread_mutex_init (&w->lock, NULL);
        pthread_cond_init (&w->changed, NULL);
        g_queue_init (&w->free_chunks);
        g_queue_init (&w->queued);
        w->n_threads = CLAMP (g_get_num_processors (), MIN_THREADS, MAX_THREADS);
        w->n_chunks = w->n_threads + SPARE_CHUNKS;
        w->chunks = g_new0 (CliChunk, w->n_chunks);
        for (guint i = 0; i < w->n_chunks; i++) {
                w->chunks[i].buf = g_aligned_alloc (1, CLI_CHUNK_SIZE, BUFFER_ALIGNMENT);
                if (two_buffers)
                        w->chunks[i].base = g_aligned_alloc (1, CLI_CHUNK_SIZE, BUFFER_ALIGNMENT);
                g_queue_push_tail (&w->free_chunks, &w->chunks[i]);
        }
        w->threads = g_new0 (GThread *, w->n_threads);
        for (guint i = 0; i < w->n_threads; i++)
                w->threads[i] = g_thread_new ("vhdx convert", worker_thread, w);
        return w;
}

/* A free chunk, once there is one; NULL once a chunk has failed (nothing
 * more should be submitted: cli_workers_finish() tells what failed). */
CliChunk *
cli_workers_next (CliWorkers *w)
{
        CliChunk *chunk = NULL;

        pthread_mutex_lock (&w->lock);
        while (g_queue_is_empty (&w->free_chunks))
                pthread_cond_wait (&w->changed, &w->lock);
        if (!w->failed)
                chunk = g_queue_pop_head (&w->free_chunks);
        pthread_mutex_unlock (&w->lock);
        if (chunk != NULL) {
                chunk->offset = 0;
                chunk->length = 0;
                chunk->has_data = FALSE;
                chunk->parent_data = FALSE;
                chunk->skip = FALSE;
                chunk->buffered = FALSE;
        }
        return chunk;
}

/* Hand @chunk, from cli_workers_next(), its fields set, to the threads. */
void
cli_workers_submit (CliWorkers *w, CliChunk *chunk)
{
        pthread_mutex_lock (&w->lock);
        chunk->index = w->submitted++;
        g_queue_push_tail (&w->queued, chunk);
        pthread_cond_broadcast (&w->changed);
        pthread_mutex_unlock (&w->lock);
}

/* Wait for every chunk submitted and free @w; FALSE with the first
 * failure's @path and @error (either may be NULL to drop it). */
gboolean
cli_workers_finish (CliWorkers *w, const char **path, GError **error)
{
        gboolean ok;

        pthread_mutex_lock (&w->lock);
        while (g_queue_get_length (&w->free_chunks) < w->n_chunks)
                pthread_cond_wait (&w->changed, &w->lock);
        w->closing = TRUE;
        pthread_cond_broadcast (&w->changed);
        pthread_mutex_unlock (&w->lock);
        for (guint i = 0; i < w->n_threads; i++)
                g_thread_join (w->threads[i]);
        ok = !w->failed;
        if (!ok) {
                if (path != NULL)
                        *path = w->fail_path;
                g_propagate_error (error, w->error);
        }
        for (guint i = 0; i < w->n_chunks; i++) {
                g_aligned_free (w->chunks[i].buf);
                g_aligned_free (w->chunks[i].base);
        }
        g_free (w->chunks);
        g_free (w->threads);
        g_queue_clear (&w->free_chunks);
        pthread_cond_destroy (&w->changed);
        pthread_mutex_destroy (&w->lock);
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
