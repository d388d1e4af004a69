/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An implementation of libvirt's event loop interface (virEventRegisterImpl)
 * over GLib's default main context.  libvirt's own default implementation
 * may or may not be built on GLib, depending on its version, and libvirt
 * asks applications not to rely on either; a thread running it next to a
 * GMainLoop can end up iterating the application's main context.  This one
 * is explicit.
 *
 * libvirt may add, update and remove handles and timers from any thread, so
 * the tables are locked; callbacks run without the lock.  A free callback
 * is never run from the removal itself (libvirt may hold its own locks
 * then): an idle callback runs it.
 */
#include "config.h"

#include <glib-unix.h>
#include <glib.h>
#include <libvirt/libvirt.h>

#include "pool-events.h"

typedef struct {
        int watch;
        int fd;
        int events;
        virEventHandleCallback callback;
        void *opaque;
        virFreeCallback free_opaque;
        GSource *source;
} EventHandle;

typedef struct {
        int timer;
        int interval;
        virEventTimeoutCallback callback;
        void *opaque;
        virFreeCallback free_opaque;
        GSource *source;
} EventTimer;

static GMutex events_lock;
static GHashTable *handles = NULL; /* watch → EventHandle */
static GHashTable *timers = NULL;  /* timer → EventTimer */
static int next_watch = 1;
static int next_timer = 1;

static void
destroy_source (GSource **source)
{
        if (*source != NULL) {
                g_source_destroy (*source);
                g_source_unref (*source);
                *source = NULL;
        }
}

/* File handles */

static GIOCondition
condition_from_events (int events)
{
        GIOCondition condition = 0;

        if (events & VIR_EVENT_HANDLE_READABLE)
                condition |= G_IO_IN;
        if (events & VIR_EVENT_HANDLE_WRITABLE)
                condition |= G_IO_OUT;
        /* poll() reports errors and hang-ups whatever was asked. */
        return condition | G_IO_ERR | G_IO_HUP;
}

static int
events_from_condition (GIOCondition condition)
{
        int events = 0;

        if (condition & G_IO_IN)
                events |= VIR_EVENT_HANDLE_READABLE;
        if (condition & G_IO_OUT)
                events |= VIR_EVENT_HANDLE_WRITABLE;
        if (condition & G_IO_ERR)
                events |= VIR_EVENT_HANDLE_ERROR;
        if (condition & G_IO_HUP)
                events |= VIR_EVENT_HANDLE_HANGUP;
        return events;
}

static gboolean
dispatch_handle (int fd, GIOCondition condition, gpointer user_data)
{
        int watch = GPOINTER_TO_INT (user_data);
        virEventHandleCallback callback;
        void *opaque;

        g_mutex_lock (&events_lock);
        {
                EventHandle *handle = g_hash_table_lookup (handles, GINT_TO_POINTER (watch));

                if (handle == NULL) {
                        g_mutex_unlock (&events_lock);
                        return G_SOURCE_REMOVE;
                }
                callback = handle->callback;
                opaque = handle->opaque;
        }
        g_mutex_unlock (&events_lock);

        callback (watch, fd, events_from_condition (condition), opaque);
        return G_SOURCE_CONTINUE;
}

/* Watches @handle->fd for its events, or not at all when it has none. */
static void
handle_update_source (EventHandle *handle)
{
        destroy_source (&handle->source);
        if (handle->events == 0)
                return;
        handle->source = g_unix_fd_source_new (handle->fd, condition_from_events (handle->events));
        g_source_set_callback (handle->source, G_SOURCE_FUNC (dispatch_handle),
                               GINT_TO_POINTER (handle->watch), NULL);
        g_source_set_static_name (handle->source, "libvirt handle");
        g_source_attach (handle->source, NULL);
}

static int
add_handle (int fd,
            int events,
            virEventHandleCallback callback,
            void *opaque,
            virFreeCallback free_opaque)
{
        EventHandle *handle = g_new0 (EventHandle, 1);
        int watch;

        g_mutex_lock (&events_lock);
        watch = next_watch++;
        handle->watch = watch;
        handle->fd = fd;
        handle->events = events;
        handle->callback = callback;
        handle->opaque = opaque;
        handle->free_opaque = free_opaque;
        handle_update_source (handle);
        g_hash_table_insert (handles, GINT_TO_POINTER (watch), handle);
        g_mutex_unlock (&events_lock);
        return watch;
}

static void
update_handle (int watch, int events)
{
        EventHandle *handle;

        g_mutex_lock (&events_lock);
        handle = g_hash_table_lookup (handles, GINT_TO_POINTER (watch));
        if (handle != NULL && handle->events != events) {
                handle->events = events;
                handle_update_source (handle);
        }
        g_mutex_unlock (&events_lock);
}

static gboolean
free_handle (gpointer user_data)
{
        EventHandle *handle = user_data;

        if (handle->free_opaque != NULL)
                handle->free_opaque (handle->opaque);
        g_free (handle);
        return G_SOURCE_REMOVE;
}

static int
remove_handle (int watch)
{
        EventHandle *handle = NULL;

        g_mutex_lock (&events_lock);
        if (g_hash_table_steal_extended (handles, GINT_TO_POINTER (watch), NULL,
                                         (gpointer *) &handle))
                destroy_source (&handle->source);
        g_mutex_unlock (&events_lock);
        if (handle == NULL)
                return -1;
        g_idle_add (free_handle, handle);
        return 0;
}

/* Timers */

static gboolean
dispatch_timer (gpointer user_data)
{
        int timer_id = GPOINTER_TO_INT (user_data);
        virEventTimeoutCallback callback;
        void *opaque;

        g_mutex_lock (&events_lock);
        {
                EventTimer *timer = g_hash_table_lookup (timers, GINT_TO_POINTER (timer_id));

                if (timer == NULL) {
                        g_mutex_unlock (&events_lock);
                        return G_SOURCE_REMOVE;
                }
                callback = timer->callback;
                opaque = timer->opaque;
        }
        g_mutex_unlock (&events_lock);

        callback (timer_id, opaque);
        return G_SOURCE_CONTINUE;
}

/* A negative interval disables the timer; 0 makes it fire at every
 * iteration of the loop; otherwise it fires every @interval ms. */
static void
timer_update_source (EventTimer *timer)
{
        destroy_source (&timer->source);
        if (timer->interval < 0)
                return;
        timer->source = g_timeout_source_new ((guint) timer->interval);
        g_source_set_callback (timer->source, dispatch_timer, GINT_TO_POINTER (timer->timer), NULL);
        g_source_set_static_name (timer->source, "libvirt timer");
        g_source_attach (timer->source, NULL);
}

static int
add_timer (int interval,
           virEventTimeoutCallback callback,
           void *opaque,
           virFreeCallback free_opaque)
{
        EventTimer *timer = g_new0 (EventTimer, 1);
        int timer_id;

        g_mutex_lock (&events_lock);
        timer_id = next_timer++;
        timer->timer = timer_id;
        timer->interval = interval;
        timer->callback = callback;
        timer->opaque = opaque;
        timer->free_opaque = free_opaque;
        timer_update_source (timer);
        g_hash_table_insert (timers, GINT_TO_POINTER (timer_id), timer);
        g_mutex_unlock (&events_lock);
        return timer_id;
}

static void
update_timer (int timer_id, int interval)
{
        EventTimer *timer;

        g_mutex_lock (&events_lock);
        timer = g_hash_table_lookup (timers, GINT_TO_POINTER (timer_id));
        if (timer != NULL && timer->interval != interval) {
                timer->interval = interval;
                timer_update_source (timer);
        }
        g_mutex_unlock (&events_lock);
}

static gboolean
free_timer (gpointer user_data)
{
        EventTimer *timer = user_data;

        if (timer->free_opaque != NULL)
                timer->free_opaque (timer->opaque);
        g_free (timer);
        return G_SOURCE_REMOVE;
}

static int
remove_timer (int timer_id)
{
        EventTimer *timer = NULL;

        g_mutex_lock (&events_lock);
        if (g_hash_table_steal_extended (timers, GINT_TO_POINTER (timer_id), NULL,
                                         (gpointer *) &timer))
                destroy_source (&timer->source);
        g_mutex_unlock (&events_lock);
        if (timer == NULL)
                return -1;
        g_idle_add (free_timer, timer);
        return 0;
}

/* Call once, before opening the connections whose events are wanted. */
void
pool_events_register (void)
{
        g_mutex_lock (&events_lock);
        if (handles == NULL) {
                handles = g_hash_table_new (g_direct_hash, g_direct_equal);
                timers = g_hash_table_new (g_direct_hash, g_direct_equal);
        }
        g_mutex_unlock (&events_lock);
        virEventRegisterImpl (add_handle, update_handle, remove_handle, add_timer, update_timer,
                              remove_timer);
}

/* Runs what is ready on the default main context, such as the free
 * callbacks of the handles and timers of a connection just closed.  A
 * timer that fires at every iteration must not keep it going forever. */
void
pool_events_flush (void)
{
        for (guint i = 0; i < 100 && g_main_context_iteration (NULL, FALSE); i++)
                ;
}
