/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker threads that run the library's asynchronous reads: as many as
 * the machine has CPUs, taking requests in the order of their I/O priority
 * and, within one priority, in the order they came.
 *
 * A read is a copy out of the page cache, or a wait for the disk, and does
 * not wait for other requests.  GLib's own pool for GTask grows a thread
 * for each request in flight, so that reads running at once on fewer CPUs
 * preempt each other in the middle of their copies; with one thread per
 * CPU, each copy runs to its end and the next request waits in the queue.
 */
#include "config.h"

#include "vhdx-read-pool-private.h"

typedef struct {
        GTask *task;
        GTaskThreadFunc func;
        int priority;
        guint64 order;
} ReadJob;

static void
read_job_run (gpointer data, gpointer user_data)
{
        ReadJob *job = data;
        GTask *task = job->task;

        job->func (task, g_task_get_source_object (task), g_task_get_task_data (task),
                   g_task_get_cancellable (task));
        g_object_unref (task);
        g_free (job);
}

static int
read_job_compare (gconstpointer a, gconstpointer b, gpointer user_data)
{
        const ReadJob *x = a, *y = b;

        if (x->priority != y->priority)
                return x->priority < y->priority ? -1 : 1;
        return x->order < y->order ? -1 : x->order > y->order ? 1 : 0;
}

/* Runs FUNC for TASK in one of the read threads, as g_task_run_in_thread()
 * does in GLib's; FUNC returns the task's result. */
void
vhdx_read_pool_run (GTask *task, GTaskThreadFunc func)
{
        static GThreadPool *pool;
        static guint64 next_order;
        static GMutex lock;
        ReadJob *job;

        if (g_once_init_enter (&pool)) {
                GThreadPool *new_pool =
                        g_thread_pool_new (read_job_run, NULL,
                                           (int) MAX (g_get_num_processors (), 2), FALSE, NULL);

                g_thread_pool_set_sort_function (new_pool, read_job_compare, NULL);
                g_once_init_leave (&pool, new_pool);
        }
        job = g_new (ReadJob, 1);
        job->task = g_object_ref (task);
        job->func = func;
        job->priority = g_task_get_priority (task);
        /* Pushed under the lock, so that the queue sees the orders rising. */
        g_mutex_lock (&lock);
        job->order = next_order++;
        g_thread_pool_push (pool, job, NULL);
        g_mutex_unlock (&lock);
}
