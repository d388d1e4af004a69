/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbdkit-vhdx-plugin: serves the virtual disk of a VHDX image, for reading
 * and writing.
 *
 *   nbdkit [-r] vhdx [file=]DISK.vhdx [parent=PARENT.vhdx]
 *   nbdkit -r vhdx [file=]DISK.vhdx force-share=true
 *
 * Every connection shares one opened VhdxFile: reads, writes, zeroes,
 * discards and flushes of an opened VhdxFile are thread-safe, so the plugin
 * runs in the parallel thread model, and since one journal changes the
 * file, a flush on any connection makes every connection's completed writes
 * durable (multi-conn).
 *
 * nbdkit calls get_ready before it forks (--run, a daemon) and after_fork in
 * the process that serves.  get_ready opens and checks the image as the
 * server will use it, so that a damaged or busy image stops nbdkit at once,
 * and closes it again: a descriptor open across the fork would stay open in
 * the other process (the one that runs --run's command does not exec), and
 * with it its lock.  after_fork opens the file for the server's lifetime and
 * locks it at once: as a writer unless nbdkit was started read-only (-r),
 * as a reader then.  The VhdxFile on that descriptor is read-only (a
 * pending log replayed in memory) until a connection may write; the first
 * such connection opens it for writing (replaying the log onto the file),
 * and the last one closes it cleanly, while the descriptor keeps the locks.
 * With force-share=true (and nbdkit -r) the image is opened without
 * locking other processes out, to be served while one of them writes it.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gi18n-lib.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "nbdkit-vhdx-cmdline.h"
#include "nbdkit-vhdx-common.h"
#include "vhdx-check.h"
#include "vhdx-writer.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static char *image_path; /* absolute: nbdkit may change directory */
static VhdxNbdkitOptions options;

/*
 * The served file and the image on it, guarded by image_lock, which
 * requests do not take.  served_fd is open from after_fork to unload,
 * holding the locks of served_lock all along.  The image is replaced only
 * while no connection uses it: read-only from after_fork on, opened for
 * writing by the first connection that may write, and closed cleanly by
 * the last connection that uses it when it was writable, which opens it
 * read-only again.
 */
static GMutex image_lock;
static int served_fd = -1;
static gboolean served_read_write; /* served_fd is open for writing */
static gboolean served_unwritable; /* ...and cannot be: its permissions, a read-only file system */
static VhdxLockMode served_lock;
static gboolean started_read_only; /* nbdkit -r, as far as its command line tells */
static VhdxFile *image;
static gboolean image_writable;
static guint image_users;

static void
vhdx_plugin_load (void)
{
        bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
        bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
}

/* Close a writable image cleanly (its metadata in place, LogGuid
 * cleared), then free it; called with image_lock held. */
static void
release_image (void)
{
        g_autoptr (GError) error = NULL;

        if (image == NULL)
                return;
        if (image_writable && !vhdx_file_close (image, &error))
                nbdkit_error ("%s: closing the image: %s", image_path, error->message);
        else if (image_writable)
                nbdkit_debug ("%s: closed cleanly", image_path);
        g_clear_pointer (&image, vhdx_file_free);
        image_writable = FALSE;
}

/* Close the image and the served file, letting the locks go; called with
 * image_lock held, or before nbdkit starts threads. */
static void
stop_serving (void)
{
        release_image ();
        if (served_fd >= 0)
                close (served_fd);
        served_fd = -1;
        served_read_write = FALSE;
}

static void
vhdx_plugin_unload (void)
{
        g_mutex_lock (&image_lock);
        if (served_fd >= 0) {
                stop_serving ();
                nbdkit_debug ("%s: closed, its locks released", image_path);
        }
        g_mutex_unlock (&image_lock);
        g_clear_pointer (&image_path, free);
        vhdx_nbdkit_options_clear (&options);
}

static void
vhdx_plugin_dump_plugin (void)
{
        printf ("vhdx_version=%s\n", PACKAGE_VERSION);
}

static int
vhdx_plugin_config (const char *key, const char *value)
{
        int taken = vhdx_nbdkit_options_config (&options, key, value);

        if (taken <= 0)
                return taken;
        if (g_strcmp0 (key, "file") == 0)
                return vhdx_nbdkit_config_path (&image_path, key, value);
        nbdkit_error ("unknown parameter '%s'", key);
        return -1;
}

static int
vhdx_plugin_config_complete (void)
{
        if (image_path == NULL) {
                nbdkit_error ("you must supply the file=DISK.vhdx parameter");
                return -1;
        }
        return 0;
}

/* clang-format off */
#define vhdx_plugin_config_help                                                                    \
        "[file=]DISK.vhdx     (required) The VHDX image to serve (read-only with -r).\n"           \
        VHDX_NBDKIT_OPTIONS_HELP
/* clang-format on */

/* TRUE when @error says that the file may be read but not written. */
static gboolean
is_write_refused (const GError *error)
{
        return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED) ||
               g_error_matches (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
}

/* An image that another process writes can still be served read-only:
 * a read-only open refused for that says how, in the plugin's terms. */
static void
suggest_force_share (gboolean writable, GError **error)
{
        if (writable || options.force_share ||
            !g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_BUSY))
                return;
        g_clear_error (error);
        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_BUSY,
                             "another process is writing the image (it is locked); nbdkit -r "
                             "with force-share=true serves it anyway, as it is at each moment");
}

/*
 * Open the image on served_fd, read-only or for writing (its parents stay
 * read-only, locked by the engine as readers).  The descriptor's locks are
 * served_fd's own and stay as they are.
 */
static VhdxFile *
open_image (gboolean writable, GError **error)
{
        return vhdx_nbdkit_open_image (&options, vhdx_io_new_fd_owner_locked (served_fd),
                                       image_path, writable, error);
}

/*
 * Open served_fd and the image on it, read-only, and lock the file: as a
 * writer when @read_write, as a reader otherwise, without a lock with
 * force-share.  A file that cannot be opened for writing (its permissions,
 * a read-only file system) is served read-only, with a warning.  Called
 * with image_lock held, or before nbdkit starts threads.
 */
static gboolean
start_serving (gboolean read_write, GError **error)
{
        g_autoptr (GError) local_error = NULL;
        VhdxLockMode lock;
        int fd;

        g_assert (served_fd < 0 && image == NULL);
        served_unwritable = FALSE;
        fd = vhdx_open_image_fd (image_path, read_write, NULL, &local_error);
        if (fd < 0 && read_write && is_write_refused (local_error)) {
                nbdkit_error ("%s: warning: the image cannot be opened for writing (%s): serving "
                              "it read-only, a pending log replayed in memory",
                              image_path, local_error->message);
                g_clear_error (&local_error);
                read_write = FALSE;
                served_unwritable = TRUE;
                fd = vhdx_open_image_fd (image_path, FALSE, NULL, &local_error);
        }
        if (fd < 0) {
                g_propagate_error (error, g_steal_pointer (&local_error));
                return FALSE;
        }
        lock = options.force_share ? VHDX_LOCK_TEST
               : read_write        ? VHDX_LOCK_WRITER
                                   : VHDX_LOCK_READER;
        if (!vhdx_lock_image_fd (fd, lock, NULL, &local_error)) {
                close (fd);
                suggest_force_share (read_write, &local_error);
                g_propagate_error (error, g_steal_pointer (&local_error));
                return FALSE;
        }
        served_fd = fd;
        served_read_write = read_write;
        served_lock = lock;
        image = open_image (FALSE, &local_error);
        if (image == NULL) {
                suggest_force_share (FALSE, &local_error);
                g_propagate_error (error, g_steal_pointer (&local_error));
                stop_serving ();
                return FALSE;
        }
        image_writable = FALSE;
        return TRUE;
}

/*
 * Check the image before nbdkit forks and starts serving, so that a damaged
 * image, or one that another process uses, stops nbdkit with the engine's
 * message on the terminal; then close it, so that the process that does
 * not serve keeps nothing open.
 */
static int
vhdx_plugin_get_ready (void)
{
        g_autoptr (GError) error = NULL;

        started_read_only = options.force_share || vhdx_nbdkit_is_read_only ();
        nbdkit_debug ("%s: nbdkit %s", image_path,
                      started_read_only ? "serves read-only (-r)"
                                        : "may serve for writing: locking the image as a writer");
        if (!start_serving (!started_read_only, &error)) {
                nbdkit_error ("%s: %s", image_path, error->message);
                return -1;
        }
        vhdx_nbdkit_describe_image (image, image_path, &options);
        /* What opening for writing refuses stops a writable server now
         * rather than at its first connection. */
        if (!started_read_only && !served_unwritable &&
            !vhdx_file_check_exclusive_space (image, &error)) {
                nbdkit_error ("%s: %s (nbdkit -r serves it read-only)", image_path, error->message);
                stop_serving ();
                return -1;
        }
        stop_serving ();
        return 0;
}

/* Open and lock the image in the process that serves it, for its lifetime. */
static int
vhdx_plugin_after_fork (void)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&image_lock);

        if (!start_serving (!started_read_only, &error)) {
                nbdkit_error ("%s: %s", image_path, error->message);
                return -1;
        }
        return 0;
}

/*
 * Lock served_fd as @mode wants, called with image_lock held: a writer's
 * lock on a file open for writing, a reader's otherwise.  A served file
 * open read-only only because nbdkit's command line looked read-only is
 * opened again for writing.
 */
static gboolean
relock (VhdxLockMode mode, GError **error)
{
        if (served_lock == mode)
                return TRUE;
        if (mode == VHDX_LOCK_WRITER && !served_read_write) {
                stop_serving ();
                return start_serving (TRUE, error);
        }
        if (!vhdx_lock_image_fd (served_fd, mode, NULL, error))
                return FALSE;
        served_lock = mode;
        return TRUE;
}

/*
 * Make the shared image writable for a connection that may write; called
 * with image_lock held.  *@writable tells whether it may be written: not
 * when the file cannot be written (its permissions, a read-only file
 * system), nor while other connections read the read-only image.  Returns
 * FALSE with nbdkit_error called when it cannot be opened for writing
 * otherwise (another process uses it, it is damaged).
 */
static gboolean
make_writable (gboolean *writable)
{
        g_autoptr (GError) error = NULL;
        VhdxFile *file;

        *writable = image_writable;
        if (image_writable)
                return TRUE;
        if (image_users > 0) {
                /* Other connections read the read-only image (nbdkit
                 * filters can open a plugin read-only): it cannot be
                 * replaced under them. */
                nbdkit_debug ("%s: already served read-only to another connection: this one "
                              "is read-only too",
                              image_path);
                return TRUE;
        }
        if (served_unwritable) {
                nbdkit_debug ("%s: the file cannot be written: this connection is read-only",
                              image_path);
                return TRUE;
        }
        if (!relock (VHDX_LOCK_WRITER, &error)) {
                nbdkit_error ("%s: opening for writing: %s", image_path, error->message);
                return FALSE;
        }
        if (served_unwritable)
                return TRUE; /* opened again, and it cannot be written after all */
        /* The read-only image goes first: both would use the file, and a
         * replay of the log changes it under the other. */
        g_clear_pointer (&image, vhdx_file_free);
        file = open_image (TRUE, &error);
        if (file == NULL) {
                nbdkit_error ("%s: opening for writing: %s", image_path, error->message);
                return FALSE;
        }
        vhdx_nbdkit_describe_image (file, image_path, &options);
        image = file;
        image_writable = TRUE;
        *writable = TRUE;
        return TRUE;
}

static void *
vhdx_plugin_open (int readonly)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&image_lock);
        gboolean writable = FALSE;
        VhdxNbdkitConnection *h;

        /* Whether clients may write is known only here.  An image shared
         * with a writer elsewhere is never written: silently serving it
         * read-only would surprise a client that asked to write. */
        if (options.force_share && !readonly) {
                nbdkit_error ("%s: force-share=true serves the image read-only only: run "
                              "nbdkit with -r",
                              image_path);
                return NULL;
        }

        if (served_fd < 0) {
                /* Opening it for writing failed after the file was closed
                 * (relock). */
                g_autoptr (GError) error = NULL;

                if (!start_serving (!started_read_only, &error)) {
                        nbdkit_error ("%s: %s", image_path, error->message);
                        return NULL;
                }
        }
        if (!readonly && !make_writable (&writable))
                return NULL;
        if (readonly && image_users == 0 && served_lock == VHDX_LOCK_WRITER) {
                /* The server's command line looked writable, but it opens
                 * the plugin read-only (nbdkit -r in a form not recognised,
                 * or a filter such as cow): writing is given up. */
                g_autoptr (GError) error = NULL;

                nbdkit_debug ("%s: served read-only: locking it as a reader", image_path);
                if (!relock (VHDX_LOCK_READER, &error)) {
                        nbdkit_error ("%s: %s", image_path, error->message);
                        return NULL;
                }
        }
        if (image == NULL) {
                /* It could not be opened again when the last writable
                 * connection closed it, or opening it for writing failed. */
                g_autoptr (GError) error = NULL;

                image = open_image (FALSE, &error);
                if (image == NULL) {
                        nbdkit_error ("%s: %s", image_path, error->message);
                        return NULL;
                }
                image_writable = FALSE;
        }
        h = g_new0 (VhdxNbdkitConnection, 1);
        h->file = image;
        h->name = image_path;
        h->writable = writable;
        image_users++;
        return h;
}

static void
vhdx_plugin_close (void *handle)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&image_lock);
        VhdxNbdkitConnection *h = handle;

        g_assert (image_users > 0 && h->file == image);
        g_free (h);
        /* A read-only image stays open for the next connection; a writable
         * one is closed cleanly as soon as no connection writes to it, and
         * opened read-only again.  served_fd keeps the locks meanwhile. */
        if (--image_users == 0 && image_writable) {
                g_autoptr (GError) error = NULL;

                release_image ();
                image = open_image (FALSE, &error);
                if (image == NULL)
                        nbdkit_debug ("%s: opening read-only again: %s (the next connection "
                                      "tries again)",
                                      image_path, error->message);
                else
                        nbdkit_debug ("%s: open read-only again until a client may write, "
                                      "still locked as a writer",
                                      image_path);
        }
}

/* Requests are answered on a connection's VhdxNbdkitConnection by the code
 * that the plugin shares with the filter (nbdkit-vhdx-common.c). */
static struct nbdkit_plugin plugin = {
        .name = "vhdx",
        .longname = "nbdkit VHDX plugin",
        .version = PACKAGE_VERSION,
        .description = "Serves the virtual disk of a Hyper-V VHDX image.",
        .load = vhdx_plugin_load,
        .unload = vhdx_plugin_unload,
        .dump_plugin = vhdx_plugin_dump_plugin,
        .config = vhdx_plugin_config,
        .config_complete = vhdx_plugin_config_complete,
        .config_help = vhdx_plugin_config_help,
        .magic_config_key = "file",
        .get_ready = vhdx_plugin_get_ready,
        .after_fork = vhdx_plugin_after_fork,
        .open = vhdx_plugin_open,
        .close = vhdx_plugin_close,
        .get_size = vhdx_nbdkit_get_size,
        .block_size = vhdx_nbdkit_block_size,
        .can_write = vhdx_nbdkit_can_write,
        .can_flush = vhdx_nbdkit_can_flush,
        .can_trim = vhdx_nbdkit_can_write,
        .can_zero = vhdx_nbdkit_can_write,
        .can_fast_zero = vhdx_nbdkit_can_write,
        .can_fua = vhdx_nbdkit_can_fua,
        .can_multi_conn = vhdx_nbdkit_can_multi_conn,
        .can_extents = vhdx_nbdkit_can_extents,
        .pread = vhdx_nbdkit_pread,
        .pwrite = vhdx_nbdkit_pwrite,
        .flush = vhdx_nbdkit_flush,
        .trim = vhdx_nbdkit_trim,
        .zero = vhdx_nbdkit_zero,
        .extents = vhdx_nbdkit_extents,
};

NBDKIT_REGISTER_PLUGIN (plugin)
