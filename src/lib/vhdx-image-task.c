/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The tasks that run VhdxImage's asynchronous calls in worker threads, and their progress. */
#include "config.h"

#include "vhdx-image-private.h"
#include "vhdx-read-pool-private.h"

/* The task data: the operation, and the data it works on. */
typedef struct {
        const VhdxImageCall *call;
        gpointer data;
        GDestroyNotify data_free;
} ImageTaskData;

static void
image_task_data_free (gpointer data)
{
        ImageTaskData *task_data = data;

        if (task_data->data_free != NULL)
                task_data->data_free (task_data->data);
        g_free (task_data);
}

static void
image_task_thread (GTask *task, gpointer source_object, gpointer data, GCancellable *cancellable)
{
        ImageTaskData *task_data = data;
        const VhdxImageCall *call = task_data->call;
        GError *error = NULL;
        gpointer result;

        result = call->func (source_object, task_data->data, cancellable, &error);
        if (result == NULL)
                g_task_return_error (task, error);
        else if (call->result_free == NULL)
                g_task_return_boolean (task, TRUE);
        else
                g_task_return_pointer (task, result, call->result_free);
}

GTask *
vhdx_image_task_new_named (VhdxImage *self,
                           gpointer source_tag,
                           const char *name,
                           int io_priority,
                           GCancellable *cancellable,
                           GAsyncReadyCallback callback,
                           gpointer user_data)
{
        GTask *task = g_task_new (self, cancellable, callback, user_data);

        g_task_set_name (task, name);
        g_task_set_source_tag (task, source_tag);
        g_task_set_priority (task, io_priority);
        return task;
}

void
vhdx_image_task_run (GTask *task,
                     const VhdxImageCall *call,
                     gpointer data,
                     GDestroyNotify data_free)
{
        ImageTaskData *task_data = g_new (ImageTaskData, 1);

        task_data->call = call;
        task_data->data = data;
        task_data->data_free = data_free;
        g_task_set_task_data (task, task_data, image_task_data_free);
        if (call->read_pool)
                vhdx_read_pool_run (task, image_task_thread);
        else
                g_task_run_in_thread (task, image_task_thread);
        g_object_unref (task);
}

gboolean
vhdx_image_task_finish (VhdxImage *self, GAsyncResult *result, gpointer source_tag, GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
        g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == source_tag, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return g_task_propagate_boolean (G_TASK (result), error);
}

gpointer
vhdx_image_task_finish_pointer (VhdxImage *self,
                                GAsyncResult *result,
                                gpointer source_tag,
                                GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (g_task_is_valid (result, self), NULL);
        g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == source_tag, NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        return g_task_propagate_pointer (G_TASK (result), error);
}

/* Progress */

struct _VhdxImageProgress {
        GMutex lock;
        GMainContext *context;
        int priority;
        VhdxProgressCallback callback; /* NULL once the operation ended */
        gpointer data;
        GDestroyNotify data_free;
        guint64 done;
        guint64 total;
        gboolean queued; /* a report is queued with these figures */
};

static void
progress_clear (gpointer data)
{
        VhdxImageProgress *progress = data;

        g_mutex_clear (&progress->lock);
        g_main_context_unref (progress->context);
}

static void
progress_unref (gpointer data)
{
        g_atomic_rc_box_release_full (data, progress_clear);
}

VhdxImageProgress *
vhdx_image_progress_new (GTask *task,
                         VhdxProgressCallback callback,
                         gpointer data,
                         GDestroyNotify data_free)
{
        VhdxImageProgress *progress;

        if (callback == NULL && data_free == NULL)
                return NULL;
        progress = g_atomic_rc_box_new0 (VhdxImageProgress);
        g_mutex_init (&progress->lock);
        progress->context = g_main_context_ref (g_task_get_context (task));
        progress->priority = g_task_get_priority (task);
        progress->callback = callback;
        progress->data = data;
        progress->data_free = data_free;
        return progress;
}

/* In the caller's context: the latest figures, if not reported yet. */
static gboolean
progress_deliver (gpointer data)
{
        VhdxImageProgress *progress = data;
        VhdxProgressCallback callback;
        gpointer callback_data;
        guint64 done;
        guint64 total;

        g_mutex_lock (&progress->lock);
        callback = progress->queued ? progress->callback : NULL;
        callback_data = progress->data;
        done = progress->done;
        total = progress->total;
        progress->queued = FALSE;
        g_mutex_unlock (&progress->lock);
        if (callback != NULL)
                callback (done, total, callback_data);
        return G_SOURCE_REMOVE;
}

void
vhdx_image_progress_report (guint64 done, guint64 total, gpointer data)
{
        VhdxImageProgress *progress = data;
        gboolean queue;

        g_mutex_lock (&progress->lock);
        progress->done = done;
        progress->total = total;
        queue = !progress->queued;
        progress->queued = TRUE;
        g_mutex_unlock (&progress->lock);
        if (queue) {
                /* Always through a source: g_main_context_invoke() would run
                 * the report here, in the worker, whenever no thread owns the
                 * caller's context at the moment (before its loop runs). */
                GSource *source = g_idle_source_new ();

                g_source_set_priority (source, progress->priority);
                g_source_set_callback (source, progress_deliver, g_atomic_rc_box_acquire (progress),
                                       progress_unref);
                g_source_set_static_name (source, "[vhdx] progress report");
                g_source_attach (source, progress->context);
                g_source_unref (source);
        }
}

/* In the caller's context, once the operation ended: the last report, then
 * the callback's data freed; reports still queued find no callback. */
static void
progress_end (VhdxImageProgress *progress)
{
        GDestroyNotify data_free;
        gpointer data;

        progress_deliver (progress);
        g_mutex_lock (&progress->lock);
        progress->callback = NULL;
        data_free = g_steal_pointer (&progress->data_free);
        data = g_steal_pointer (&progress->data);
        g_mutex_unlock (&progress->lock);
        if (data_free != NULL)
                data_free (data);
}

/* An operation whose end comes back to the caller's context */

typedef struct {
        GTask *task; /* the caller's */
        const VhdxImageCall *call;
        gpointer data;
        GDestroyNotify data_free;
        VhdxImageProgress *progress;
} ThenState;

static void
then_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
        ThenState *state = user_data;
        g_autoptr (GTask) task = state->task;
        GError *error = NULL;
        gpointer value;

        if (state->progress != NULL) {
                progress_end (state->progress);
                progress_unref (state->progress);
        }
        if (state->call->result_free == NULL)
                value = GINT_TO_POINTER (g_task_propagate_boolean (G_TASK (result), &error));
        else
                value = g_task_propagate_pointer (G_TASK (result), &error);
        if (value == NULL) {
                g_task_return_error (task, error);
        } else {
                if (state->call->done != NULL)
                        state->call->done (VHDX_IMAGE (source), state->data);
                if (state->call->result_free == NULL)
                        g_task_return_boolean (task, TRUE);
                else
                        g_task_return_pointer (task, value, state->call->result_free);
        }
        if (state->data_free != NULL)
                state->data_free (state->data);
        g_free (state);
}

void
vhdx_image_task_run_then (GTask *task,
                          const VhdxImageCall *call,
                          gpointer data,
                          GDestroyNotify data_free,
                          VhdxImageProgress *progress)
{
        ThenState *state = g_new0 (ThenState, 1);
        GTask *worker;

        state->task = task;
        state->call = call;
        state->data = data;
        state->data_free = data_free;
        state->progress = progress;
        worker = vhdx_image_task_new_named (g_task_get_source_object (task), (gpointer) call->func,
                                            g_task_get_name (task), g_task_get_priority (task),
                                            g_task_get_cancellable (task), then_done, state);
        g_task_set_check_cancellable (worker, FALSE);
        vhdx_image_task_run (worker, call, data, NULL);
}
