/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The tasks that run VhdxImage's asynchronous calls in worker threads. */
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
