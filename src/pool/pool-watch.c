/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx-pool watch: keeps a JSON index of the volumes of each pool named,
 * rewritten whenever libvirt reports that the pool changed (lifecycle and
 * refresh events) and, for pools whose directory is on this machine,
 * whenever a file appears in it, changes or goes away.
 *
 * libvirt's events are dispatched by the GLib main loop (pool-events.c).
 * Their callbacks only queue an idle callback, so that bursts of events are
 * coalesced and no libvirt call is made from inside libvirt's dispatch.
 * Each connection has a generation number, so that events of a connection
 * that is gone are recognized and dropped.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include <gio/gio.h>
#include <glib-unix.h>
#include <glib.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "pool-events.h"
#include "pool-scan.h"
#include "pool-util.h"

/* Coalesce bursts of events and of file changes. */
#define SCAN_DELAY_MS         100
#define REFRESH_DELAY_MS      500
#define RECONNECT_MIN_SECONDS 1
#define RECONNECT_MAX_SECONDS 30
/* Declare a connection dead after 3 unanswered keepalives 5 s apart. */
#define KEEPALIVE_INTERVAL 5
#define KEEPALIVE_COUNT    3

typedef struct _Watcher Watcher;

typedef struct {
        Watcher *watcher;
        char *name;
        char *index_path;
        char *monitored_dir;
        GFileMonitor *monitor;
        guint scan_source;
        guint refresh_source;
} WatchedPool;

struct _Watcher {
        GMainLoop *loop;
        char *uri;
        GPtrArray *pools;
        virConnectPtr conn;
        gboolean local;
        guint generation;
        int lifecycle_callback;
        int refresh_callback;
        gboolean close_callback;
        guint reconnect_source;
        guint backoff_seconds;
        gboolean reported_failure;
};

/* The watcher of this process, for the idle callbacks that events queue. */
static Watcher *the_watcher = NULL;

typedef enum {
        EVENT_POOL,
        EVENT_CLOSED,
} EventKind;

typedef struct {
        EventKind kind;
        guint generation;
        char *pool;
} QueuedEvent;

static void
queued_event_free (QueuedEvent *event)
{
        g_free (event->pool);
        g_free (event);
}

static void
watched_pool_free (WatchedPool *wp)
{
        g_clear_handle_id (&wp->scan_source, g_source_remove);
        g_clear_handle_id (&wp->refresh_source, g_source_remove);
        if (wp->monitor != NULL)
                g_file_monitor_cancel (wp->monitor);
        g_clear_object (&wp->monitor);
        g_free (wp->monitored_dir);
        g_free (wp->name);
        g_free (wp->index_path);
        g_free (wp);
}

static void schedule_scan (WatchedPool *wp, guint delay_ms);
static void connection_lost (Watcher *watcher);

/* Indexes */

static gboolean
write_index (WatchedPool *wp, const char *state, GPtrArray *volumes, const char *message)
{
        g_autoptr (JsonBuilder) builder = json_builder_new ();
        g_autoptr (JsonNode) root = NULL;
        g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
        g_autofree char *updated = g_date_time_format_iso8601 (now);
        g_autofree char *text = NULL;
        g_autoptr (GError) error = NULL;
        char *uri = virConnectGetURI (wp->watcher->conn);

        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "pool");
        json_builder_add_string_value (builder, wp->name);
        json_builder_set_member_name (builder, "uri");
        json_builder_add_string_value (builder, uri != NULL ? uri : "");
        free (uri);
        json_builder_set_member_name (builder, "state");
        json_builder_add_string_value (builder, state);
        json_builder_set_member_name (builder, "updated");
        json_builder_add_string_value (builder, updated);
        if (message != NULL) {
                json_builder_set_member_name (builder, "error");
                json_builder_add_string_value (builder, message);
        }
        json_builder_set_member_name (builder, "volumes");
        if (volumes != NULL) {
                json_builder_add_value (builder, pool_volumes_to_json (volumes));
        } else {
                json_builder_begin_array (builder);
                json_builder_end_array (builder);
        }
        json_builder_end_object (builder);
        root = json_builder_get_root (builder);
        text = json_to_string (root, TRUE);

        /* Readers see the old index or the new one, never a part of one. */
        if (!g_file_set_contents_full (wp->index_path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT,
                                       0644, &error)) {
                tool_print_error_printf ("%s", error->message);
                return FALSE;
        }
        return TRUE;
}

/* File changes in a local pool's directory */

static gboolean
refresh_pool (gpointer user_data)
{
        WatchedPool *wp = user_data;
        Watcher *watcher = wp->watcher;
        g_autoptr (virStoragePool) pool = NULL;

        wp->refresh_source = 0;
        if (watcher->conn == NULL)
                return G_SOURCE_REMOVE;
        pool = virStoragePoolLookupByName (watcher->conn, wp->name);
        /* libvirt sends a refresh event, which schedules a scan; schedule
         * one here too, in case the refresh failed. */
        if (pool != NULL && virStoragePoolIsActive (pool) == 1)
                virStoragePoolRefresh (pool, 0);
        schedule_scan (wp, SCAN_DELAY_MS);
        return G_SOURCE_REMOVE;
}

static void
directory_changed (GFileMonitor *monitor,
                   GFile *file,
                   GFile *other_file,
                   GFileMonitorEvent event_type,
                   gpointer user_data)
{
        WatchedPool *wp = user_data;

        switch (event_type) {
        case G_FILE_MONITOR_EVENT_CHANGES_DONE_HINT:
        case G_FILE_MONITOR_EVENT_DELETED:
        case G_FILE_MONITOR_EVENT_CREATED:
        case G_FILE_MONITOR_EVENT_MOVED_IN:
        case G_FILE_MONITOR_EVENT_MOVED_OUT:
        case G_FILE_MONITOR_EVENT_RENAMED:
                break;
        case G_FILE_MONITOR_EVENT_CHANGED:
        case G_FILE_MONITOR_EVENT_ATTRIBUTE_CHANGED:
        case G_FILE_MONITOR_EVENT_PRE_UNMOUNT:
        case G_FILE_MONITOR_EVENT_UNMOUNTED:
        case G_FILE_MONITOR_EVENT_MOVED:
        default:
                /* Reading an image changes its access time: not a change. */
                return;
        }
        g_clear_handle_id (&wp->refresh_source, g_source_remove);
        wp->refresh_source = g_timeout_add (REFRESH_DELAY_MS, refresh_pool, wp);
}

/* Watches the directory of an active pool of a local connection. */
static void
update_monitor (WatchedPool *wp, virStoragePoolPtr pool, gboolean active)
{
        g_autofree char *target = NULL;
        g_autoptr (GFile) dir = NULL;
        g_autoptr (GError) error = NULL;

        if (active && wp->watcher->local) {
                char *xml = virStoragePoolGetXMLDesc (pool, 0);

                target = pool_xml_get (xml, "pool/target/path", NULL);
                free (xml);
                if (target != NULL && !g_file_test (target, G_FILE_TEST_IS_DIR))
                        g_clear_pointer (&target, g_free);
        }
        if (g_strcmp0 (target, wp->monitored_dir) == 0)
                return;
        if (wp->monitor != NULL) {
                g_file_monitor_cancel (wp->monitor);
                g_clear_object (&wp->monitor);
        }
        g_clear_pointer (&wp->monitored_dir, g_free);
        if (target == NULL)
                return;

        dir = g_file_new_for_path (target);
        wp->monitor = g_file_monitor_directory (dir, G_FILE_MONITOR_WATCH_MOVES, NULL, &error);
        if (wp->monitor == NULL) {
                g_autofree char *display = g_filename_display_name (target);

                /* Pool events still keep the index up to date. */
                tool_print_error_printf ("%s: %s", display, error->message);
                return;
        }
        g_signal_connect (wp->monitor, "changed", G_CALLBACK (directory_changed), wp);
        wp->monitored_dir = g_steal_pointer (&target);
}

/* Scans */

static gboolean
scan_pool (gpointer user_data)
{
        WatchedPool *wp = user_data;
        Watcher *watcher = wp->watcher;
        g_autoptr (virStoragePool) pool = NULL;
        g_autoptr (GPtrArray) volumes = NULL;
        g_autoptr (GError) error = NULL;
        int active;

        wp->scan_source = 0;
        if (watcher->conn == NULL)
                return G_SOURCE_REMOVE;

        pool = virStoragePoolLookupByName (watcher->conn, wp->name);
        if (pool == NULL) {
                if (virConnectIsAlive (watcher->conn) != 1) {
                        connection_lost (watcher);
                        return G_SOURCE_REMOVE;
                }
                update_monitor (wp, NULL, FALSE);
                write_index (wp, "undefined", NULL, NULL);
                return G_SOURCE_REMOVE;
        }
        active = virStoragePoolIsActive (pool);
        update_monitor (wp, pool, active == 1);
        if (active == 0) {
                write_index (wp, "inactive", NULL, NULL);
                return G_SOURCE_REMOVE;
        }
        volumes = pool_scan (watcher->conn, pool, &error);
        if (volumes == NULL) {
                if (virConnectIsAlive (watcher->conn) != 1) {
                        connection_lost (watcher);
                        return G_SOURCE_REMOVE;
                }
                tool_print_error_printf ("%s", error->message);
                write_index (wp, "error", NULL, error->message);
                return G_SOURCE_REMOVE;
        }
        write_index (wp, "active", volumes, NULL);
        return G_SOURCE_REMOVE;
}

static void
schedule_scan (WatchedPool *wp, guint delay_ms)
{
        if (wp->scan_source != 0)
                return;
        wp->scan_source = g_timeout_add (delay_ms, scan_pool, wp);
}

static void
schedule_all_scans (Watcher *watcher)
{
        for (guint i = 0; i < watcher->pools->len; i++)
                schedule_scan (g_ptr_array_index (watcher->pools, i), 0);
}

/* Events */

static gboolean
handle_event (gpointer user_data)
{
        QueuedEvent *event = user_data;
        Watcher *watcher = the_watcher;

        if (watcher == NULL || event->generation != watcher->generation || watcher->conn == NULL)
                return G_SOURCE_REMOVE;
        if (event->kind == EVENT_CLOSED) {
                connection_lost (watcher);
                return G_SOURCE_REMOVE;
        }
        for (guint i = 0; i < watcher->pools->len; i++) {
                WatchedPool *wp = g_ptr_array_index (watcher->pools, i);

                if (g_str_equal (wp->name, event->pool))
                        schedule_scan (wp, SCAN_DELAY_MS);
        }
        return G_SOURCE_REMOVE;
}

static void
queue_event (EventKind kind, gpointer opaque, virStoragePoolPtr pool)
{
        QueuedEvent *event = g_new0 (QueuedEvent, 1);

        event->kind = kind;
        event->generation = GPOINTER_TO_UINT (opaque);
        event->pool = pool != NULL ? g_strdup (virStoragePoolGetName (pool)) : NULL;
        g_idle_add_full (G_PRIORITY_DEFAULT, handle_event, event,
                         (GDestroyNotify) queued_event_free);
}

static void
pool_lifecycle_event (virConnectPtr conn,
                      virStoragePoolPtr pool,
                      int event,
                      int detail,
                      void *opaque)
{
        queue_event (EVENT_POOL, opaque, pool);
}

static void
pool_refresh_event (virConnectPtr conn, virStoragePoolPtr pool, void *opaque)
{
        queue_event (EVENT_POOL, opaque, pool);
}

static void
connection_closed (virConnectPtr conn, int reason, void *opaque)
{
        queue_event (EVENT_CLOSED, opaque, NULL);
}

/* The connection */

static void
disconnect (Watcher *watcher)
{
        if (watcher->conn == NULL)
                return;
        /* Late events of this connection are dropped by their generation. */
        watcher->generation++;
        if (watcher->lifecycle_callback >= 0)
                virConnectStoragePoolEventDeregisterAny (watcher->conn,
                                                         watcher->lifecycle_callback);
        if (watcher->refresh_callback >= 0)
                virConnectStoragePoolEventDeregisterAny (watcher->conn, watcher->refresh_callback);
        if (watcher->close_callback)
                virConnectUnregisterCloseCallback (watcher->conn, connection_closed);
        watcher->lifecycle_callback = -1;
        watcher->refresh_callback = -1;
        watcher->close_callback = FALSE;
        virConnectClose (watcher->conn);
        watcher->conn = NULL;
}

static gboolean
connect_and_subscribe (Watcher *watcher, GError **error)
{
        gpointer opaque;

        watcher->conn = pool_connect (watcher->uri, error);
        if (watcher->conn == NULL)
                return FALSE;
        watcher->generation++;
        opaque = GUINT_TO_POINTER (watcher->generation);
        watcher->local = pool_connection_is_local (watcher->conn);

        /* Not every driver has keepalives (local ones need none). */
        virConnectSetKeepAlive (watcher->conn, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT);
        if (virConnectRegisterCloseCallback (watcher->conn, connection_closed, opaque, NULL) == 0)
                watcher->close_callback = TRUE;
        watcher->lifecycle_callback =
                virConnectStoragePoolEventRegisterAny (watcher->conn, NULL,
                                                       VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE,
                                                       VIR_STORAGE_POOL_EVENT_CALLBACK (
                                                               pool_lifecycle_event),
                                                       opaque, NULL);
        if (watcher->lifecycle_callback < 0) {
                pool_set_libvirt_error (error, "%s", _ ("cannot subscribe to storage pool events"));
                disconnect (watcher);
                return FALSE;
        }
        watcher->refresh_callback =
                virConnectStoragePoolEventRegisterAny (watcher->conn, NULL,
                                                       VIR_STORAGE_POOL_EVENT_ID_REFRESH,
                                                       VIR_STORAGE_POOL_EVENT_CALLBACK (
                                                               pool_refresh_event),
                                                       opaque, NULL);
        if (watcher->refresh_callback < 0) {
                pool_set_libvirt_error (error, "%s", _ ("cannot subscribe to storage pool events"));
                disconnect (watcher);
                return FALSE;
        }
        return TRUE;
}

static gboolean
reconnect (gpointer user_data)
{
        Watcher *watcher = user_data;
        g_autoptr (GError) error = NULL;

        watcher->reconnect_source = 0;
        if (!connect_and_subscribe (watcher, &error)) {
                if (!watcher->reported_failure) {
                        tool_print_error_printf ("%s", error->message);
                        watcher->reported_failure = TRUE;
                }
                watcher->backoff_seconds =
                        MIN (watcher->backoff_seconds * 2, RECONNECT_MAX_SECONDS);
                watcher->reconnect_source =
                        g_timeout_add_seconds (watcher->backoff_seconds, reconnect, watcher);
                return G_SOURCE_REMOVE;
        }
        g_printerr (_ ("vhdx-pool: connected again to %s\n"),
                    pool_connection_uri_display (watcher->uri));
        watcher->backoff_seconds = RECONNECT_MIN_SECONDS;
        watcher->reported_failure = FALSE;
        /* Events were missed while the connection was down. */
        schedule_all_scans (watcher);
        return G_SOURCE_REMOVE;
}

static void
connection_lost (Watcher *watcher)
{
        if (watcher->conn == NULL)
                return;
        g_printerr (_ ("vhdx-pool: lost the connection to %s; connecting again\n"),
                    pool_connection_uri_display (watcher->uri));
        disconnect (watcher);
        g_clear_handle_id (&watcher->reconnect_source, g_source_remove);
        watcher->backoff_seconds = RECONNECT_MIN_SECONDS;
        watcher->reconnect_source =
                g_timeout_add_seconds (watcher->backoff_seconds, reconnect, watcher);
}

static gboolean
quit_on_signal (gpointer user_data)
{
        Watcher *watcher = user_data;

        g_main_loop_quit (watcher->loop);
        return G_SOURCE_CONTINUE;
}

static gboolean
refresh_at_start (Watcher *watcher, GError **error)
{
        for (guint i = 0; i < watcher->pools->len; i++) {
                WatchedPool *wp = g_ptr_array_index (watcher->pools, i);
                g_autoptr (virStoragePool) pool = pool_lookup (watcher->conn, wp->name, error);

                if (pool == NULL)
                        return FALSE;
                /* The first index reflects the files as they are now. */
                if (virStoragePoolIsActive (pool) == 1 && virStoragePoolRefresh (pool, 0) < 0) {
                        g_autoptr (GError) refresh_error = NULL;

                        pool_set_libvirt_error (&refresh_error,
                                                _ ("cannot refresh storage pool '%s'"), wp->name);
                        tool_print_error_printf ("%s", refresh_error->message);
                }
        }
        return TRUE;
}

int
pool_cmd_watch (int argc, char **argv)
{
        g_autofree char *uri = NULL;
        g_autofree char *index_dir = NULL;
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "connect", 'c', 0, G_OPTION_ARG_STRING, &uri,
                  N_ ("Connect to the hypervisor at URI, as virsh does"), N_ ("URI") },
                { "index-dir", 0, 0, G_OPTION_ARG_FILENAME, &index_dir,
                  N_ ("Write the indexes into DIR (default $XDG_STATE_HOME/vhdx-pool)"),
                  N_ ("DIR") },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        Watcher watcher = {
                .lifecycle_callback = -1,
                .refresh_callback = -1,
                .backoff_seconds = RECONNECT_MIN_SECONDS,
        };
        guint sigterm_source;
        guint sigint_source;
        int status = EXIT_SUCCESS;

        context = tool_command_context_new (
                "watch", _ ("POOL…"), _ ("Keep a JSON index of the volumes of storage pools."),
                _ ("Writes DIR/POOL.json for each POOL, the volumes as 'list --json' shows\n"
                   "them, and writes it again whenever libvirt reports that the pool was\n"
                   "started, stopped or refreshed, and whenever a file of a local pool's\n"
                   "directory changes.  The file is replaced atomically.  When the\n"
                   "connection to libvirt is lost, it connects again.  SIGTERM or SIGINT\n"
                   "stops it.\n"
                   "\n"
                   "Exit status: 0 when stopped by a signal, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv))
                return EXIT_FAILURE;
        if (args == NULL || g_strv_length (args) == 0)
                return tool_usage_error ("%s", _ ("expected at least one POOL"));

        if (index_dir == NULL)
                index_dir = g_build_filename (g_get_user_state_dir (), "vhdx-pool", NULL);
        if (g_mkdir_with_parents (index_dir, 0755) < 0) {
                int saved_errno = errno;
                g_autofree char *display = g_filename_display_name (index_dir);

                tool_print_error_printf ("%s: %s", display, g_strerror (saved_errno));
                return EXIT_FAILURE;
        }

        watcher.uri = g_strdup (uri != NULL ? uri : pool_connect_uri);
        watcher.pools = g_ptr_array_new_with_free_func ((GDestroyNotify) watched_pool_free);
        for (guint i = 0; args[i] != NULL; i++) {
                WatchedPool *wp = g_new0 (WatchedPool, 1);
                g_autofree char *file_name = g_strconcat (args[i], ".json", NULL);

                wp->watcher = &watcher;
                wp->name = g_strdup (args[i]);
                wp->index_path = g_build_filename (index_dir, file_name, NULL);
                g_ptr_array_add (watcher.pools, wp);
        }

        pool_events_register ();
        if (!connect_and_subscribe (&watcher, &error) || !refresh_at_start (&watcher, &error)) {
                tool_print_error_printf ("%s", error->message);
                disconnect (&watcher);
                pool_events_flush ();
                g_ptr_array_unref (watcher.pools);
                g_free (watcher.uri);
                return EXIT_FAILURE;
        }

        the_watcher = &watcher;
        watcher.loop = g_main_loop_new (NULL, FALSE);
        sigterm_source = g_unix_signal_add (SIGTERM, quit_on_signal, &watcher);
        sigint_source = g_unix_signal_add (SIGINT, quit_on_signal, &watcher);
        schedule_all_scans (&watcher);

        g_main_loop_run (watcher.loop);

        g_source_remove (sigterm_source);
        g_source_remove (sigint_source);
        g_clear_handle_id (&watcher.reconnect_source, g_source_remove);
        disconnect (&watcher);
        the_watcher = NULL;
        pool_events_flush ();
        g_ptr_array_unref (watcher.pools);
        g_main_loop_unref (watcher.loop);
        g_free (watcher.uri);
        return status;
}
