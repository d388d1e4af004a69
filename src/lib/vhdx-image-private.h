/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxImage's instance structure, and the tasks that run its operations in worker threads. */
#pragma once

#include "vhdx-image.h"
#include "vhdx-reader.h"

G_BEGIN_DECLS

struct _VhdxImage {
        GObject parent_instance;

        GFile *file;
        GFile *parent_file;
        char **parent_search_path;
        VhdxOpenFlags flags;

        /* The engine's opened image: set once, by initable_init() or when
         * wrapping a parent; read-only after. */
        VhdxFile *handle;
        /* For the image of a parent: the image whose VhdxFile owns ours. */
        VhdxImage *owner;
        /* The engine's I/O of an image opened read-write, owned by handle:
         * the size of the file as it grows. */
        VhdxIo *io;
        /* Replaced by close() (the GUIDs) and set_metadata() (the disk
         * ID), which keep the strings replaced in retired_strings: a
         * caller may still hold them. */
        char *virtual_disk_id;
        char *data_write_guid;
        char *file_write_guid;
        GPtrArray *retired_strings;
        /* Replaced by set_parent(), which keeps the tables replaced in
         * retired_locators, for the same reason. */
        GHashTable *parent_locator;
        GPtrArray *retired_locators;

        /* Requests that use the engine's image (reads, writes, extents,
         * checks) hold it for reading; close() and the update of the GUIDs
         * after it, resize(), set_parent() and set_metadata(), for writing:
         * nothing runs while the image closes or changes its size, its
         * parent locator or its metadata. */
        GRWLock request_lock;
        /* Counts the writes made (atomic), so that the allocated size is
         * counted again after them. */
        gint writes;

        GMutex init_lock;
        gboolean init_done;
        GError *init_error;

        GMutex allocated_lock;
        gboolean allocated_known;
        gint allocated_writes; /* the count of writes it was counted after */
        guint64 allocated;

        /*
         * The image of the parent, cached weakly: it holds a reference to
         * its owner, so a strong reference here would be a cycle.
         */
        GMutex parent_lock;
        GWeakRef parent_ref;
};

/* What the engine read of the opened image; NULL before it is open. */
static inline const VhdxInfo *
vhdx_image_info (VhdxImage *self)
{
        return self->handle != NULL ? vhdx_file_get_info (self->handle) : NULL;
}

/* Notifies VhdxImage:virtual-size, which the engine's image changed. */
void vhdx_image_notify_virtual_size (VhdxImage *self);

/* Reads VhdxImage:parent-locator again from the engine's image, whose
 * locator changed (the request lock held for writing), and notifies it. */
void vhdx_image_reload_parent_locator (VhdxImage *self);
void vhdx_image_notify_parent_locator (VhdxImage *self);

/* Takes VhdxImage:virtual-disk-id again from the engine's image, whose
 * Virtual Disk ID changed (the request lock held for writing). */
void vhdx_image_reload_virtual_disk_id (VhdxImage *self);
/* Notifies VhdxImage:physical-sector-size and :virtual-disk-id, which the
 * engine's image changed, those said. */
void vhdx_image_notify_metadata (VhdxImage *self,
                                 gboolean physical_sector_size,
                                 gboolean virtual_disk_id);

/* A range of the virtual disk, and the buffer of its bytes: what a read or
 * a look at the extents works on. */
typedef struct {
        guint64 offset;
        guint64 length;
        void *buffer;
} VhdxImageRange;

/*
 * An operation of the image, which a call runs itself and its asynchronous
 * twin runs in a task: @data holds the call's arguments.  It returns a
 * result, or %NULL with @error set; an operation that only succeeds or
 * fails returns GINT_TO_POINTER (TRUE).
 */
typedef gpointer (*VhdxImageFunc) (VhdxImage *self,
                                   gpointer data,
                                   GCancellable *cancellable,
                                   GError **error);

/* How a task runs an operation: in which threads, and what it returns. */
typedef struct {
        VhdxImageFunc func;
        /* Frees a result; %NULL for an operation that only succeeds or
         * fails, whose task returns a boolean. */
        GDestroyNotify result_free;
        /* TRUE for the read threads of vhdx-read-pool.c, FALSE for GLib's
         * threads of g_task_run_in_thread(). */
        gboolean read_pool;
        /* For vhdx_image_task_run_then(): what runs in the caller's context
         * once @func succeeded, before the caller's task returns (the
         * notifications of the properties it changed); may be %NULL. */
        void (*done) (VhdxImage *self, gpointer data);
} VhdxImageCall;

/*
 * A task of @self with the I/O priority of the request, named after its
 * source tag as g_task_set_source_tag() names a task.
 */
#define vhdx_image_task_new(self, source_tag, io_priority, cancellable, callback, user_data)       \
        vhdx_image_task_new_named ((self), (source_tag), G_STRINGIFY (source_tag), (io_priority),  \
                                   (cancellable), (callback), (user_data))
G_GNUC_WARN_UNUSED_RESULT GTask *vhdx_image_task_new_named (VhdxImage *self,
                                                            gpointer source_tag,
                                                            const char *name,
                                                            int io_priority,
                                                            GCancellable *cancellable,
                                                            GAsyncReadyCallback callback,
                                                            gpointer user_data);

/* Runs @call with @data in a worker thread for @task, which returns its
 * result; @data_free frees @data with the task.  Takes @task's reference. */
void vhdx_image_task_run (GTask *task,
                          const VhdxImageCall *call,
                          gpointer data,
                          GDestroyNotify data_free);

/*
 * The progress of an operation in a worker thread, reported in the
 * caller's main context: the worker keeps only the latest figures and
 * queues one report at a time, so that millions of steps do not queue
 * millions of reports.
 */
typedef struct _VhdxImageProgress VhdxImageProgress;

/* The progress of @task's operation for @callback, @data freed by
 * @data_free once it is no longer called; %NULL when both are %NULL. */
G_GNUC_WARN_UNUSED_RESULT VhdxImageProgress *vhdx_image_progress_new (GTask *task,
                                                                      VhdxProgressCallback callback,
                                                                      gpointer data,
                                                                      GDestroyNotify data_free);
/* The engine's VhdxProgressFunc, in the worker: @progress is a
 * VhdxImageProgress. */
void vhdx_image_progress_report (guint64 done, guint64 total, gpointer progress);

/*
 * Runs @call with @data in a worker thread for @task (the caller's),
 * through a worker task whose end comes back to @task's context: there
 * @progress (taken; may be %NULL) delivers its last report and frees its
 * data, then, when @call succeeded, @call's done() runs, then @task
 * returns the result.  @data_free frees @data after that.  The worker
 * does not check @task's cancellable once started: @task does, if set to.
 * Takes @task's reference.
 */
void vhdx_image_task_run_then (GTask *task,
                               const VhdxImageCall *call,
                               gpointer data,
                               GDestroyNotify data_free,
                               VhdxImageProgress *progress);

/* vhdx_image_task_new() and vhdx_image_task_run() at once: what the
 * asynchronous twin of a call does. */
#define vhdx_image_run_async(self, call, data, data_free, source_tag, io_priority, cancellable,    \
                             callback, user_data)                                                  \
        vhdx_image_task_run (vhdx_image_task_new ((self), source_tag, (io_priority),               \
                                                  (cancellable), (callback), (user_data)),         \
                             (call), (data), (data_free))

/* The result of a task of @self made with @source_tag: a boolean, or a
 * pointer. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_image_task_finish (VhdxImage *self,
                                                           GAsyncResult *result,
                                                           gpointer source_tag,
                                                           GError **error);
G_GNUC_WARN_UNUSED_RESULT gpointer vhdx_image_task_finish_pointer (VhdxImage *self,
                                                                   GAsyncResult *result,
                                                                   gpointer source_tag,
                                                                   GError **error);

G_END_DECLS
