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

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gi18n-lib.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "vhdx-check.h"
#include "vhdx-map.h"
#include "vhdx-writer.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* The largest preferred block size advertised.  Clients such as nbdcopy
 * make every request of the preferred size, and requests as large as a
 * 32 MiB block cost a new buffer of that size on both sides each time; at
 * 1 MiB, a block of data is still one pread of the file per request. */
#define PREFERRED_BLOCK_SIZE_MAX (1024 * 1024)

static char *image_path;       /* absolute: nbdkit may change directory */
static char *parent_path;      /* absolute, or NULL: follow the parent locator */
static GPtrArray *parent_dirs; /* absolute directories to look for parents in, NULL-terminated */
static gboolean ignore_parent_mismatch;
static gboolean force_share; /* served read-only, without locking others out */

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

/* One connection. */
typedef struct {
        VhdxFile *file;
        gboolean writable;
} Handle;

/* The errno an NBD client receives for a failed engine call: a request
 * outside the disk is the client's mistake (nbdkit refuses those before
 * they reach the plugin), a file system that is read-only or full is
 * reported as such, anything else (a damaged BAT entry, a block past the
 * end of the file, a failed pread or pwrite, an earlier failed flush) is an
 * I/O error. */
static int
errno_from_error (const GError *error)
{
        if (g_error_matches (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE))
                return EINVAL;
        if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY))
                return EROFS;
        if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE))
                return ENOSPC;
        return EIO;
}

/* Log the engine's message and record the errno that the client receives. */
static void
report_error (const char *operation, uint64_t count, uint64_t offset, const GError *error)
{
        nbdkit_error ("%s: %s %" PRIu64 " bytes at offset %" PRIu64 ": %s", image_path, operation,
                      count, offset, error->message);
        nbdkit_set_error (errno_from_error (error));
}

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
        g_clear_pointer (&parent_path, free);
        g_clear_pointer (&parent_dirs, g_ptr_array_unref);
}

static void
vhdx_plugin_dump_plugin (void)
{
        printf ("vhdx_version=%s\n", PACKAGE_VERSION);
}

static int
vhdx_plugin_config (const char *key, const char *value)
{
        char **slot;

        if (g_strcmp0 (key, "parent-dir") == 0) {
                char *dir = nbdkit_realpath (value);

                if (dir == NULL)
                        return -1;
                if (parent_dirs == NULL) {
                        parent_dirs = g_ptr_array_new_with_free_func (free);
                        g_ptr_array_add (parent_dirs, NULL);
                }
                /* Kept NULL-terminated: the new one goes before the NULL. */
                g_ptr_array_insert (parent_dirs, (gint) parent_dirs->len - 1, dir);
                return 0;
        }
        if (g_strcmp0 (key, "ignore-parent-mismatch") == 0) {
                int flag = nbdkit_parse_bool (value);

                if (flag < 0)
                        return -1;
                ignore_parent_mismatch = flag;
                return 0;
        }
        if (g_strcmp0 (key, "force-share") == 0) {
                int flag = nbdkit_parse_bool (value);

                if (flag < 0)
                        return -1;
                force_share = flag;
                return 0;
        }
        if (g_strcmp0 (key, "file") == 0) {
                slot = &image_path;
        } else if (g_strcmp0 (key, "parent") == 0) {
                slot = &parent_path;
        } else {
                nbdkit_error ("unknown parameter '%s'", key);
                return -1;
        }
        if (*slot != NULL) {
                nbdkit_error ("'%s' given more than once", key);
                return -1;
        }
        /* nbdkit_realpath() reports its own error. */
        *slot = nbdkit_realpath (value);
        return *slot != NULL ? 0 : -1;
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

#define vhdx_plugin_config_help                                                                    \
        "[file=]DISK.vhdx     (required) The VHDX image to serve (read-only with -r).\n"           \
        "parent=PARENT.vhdx   The parent of a differencing image, instead of\n"                    \
        "                     the one its parent locator names.\n"                                 \
        "parent-dir=DIR       Also look for parents in DIR (repeatable).\n"                        \
        "ignore-parent-mismatch=true\n"                                                            \
        "                     Use a parent that is not the one the image was\n"                    \
        "                     made from (its DataWriteGuid differs), with a warning.\n"            \
        "force-share=true     Serve the image (read-only, with -r) even while\n"                   \
        "                     another process writes it, without locking it."

/* TRUE when @error says that the file may be read but not written. */
static gboolean
is_write_refused (const GError *error)
{
        return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED) ||
               g_error_matches (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
}

/* Log what opening found: warnings about parents as errors (so that they
 * are seen without -v), the problems and the image's shape as debug
 * messages. */
static void
describe_image (VhdxFile *file)
{
        const VhdxInfo *info = vhdx_file_get_info (file);
        GPtrArray *problems;
        const char *path = image_path;

        for (VhdxFile *member = file; member != NULL; member = vhdx_file_get_parent (member)) {
                if (vhdx_file_get_parent_warning (member) != NULL)
                        nbdkit_error ("%s: warning: %s", image_path,
                                      vhdx_file_get_parent_warning (member));
                /* Seen without -v: clients may read data that changes
                 * under them, and the parts of the allocation table that
                 * have been read are kept, so blocks that the writer
                 * allocates or frees later may read as before. */
                if (vhdx_file_get_info (member)->written_elsewhere)
                        nbdkit_error ("%s: warning: another process is writing %s: served with "
                                      "force-share as it is at each moment, what clients read "
                                      "may change or be inconsistent",
                                      image_path, path);
                else if (force_share)
                        nbdkit_debug ("%s: opened with force-share; no other process writes %s",
                                      image_path, path);
                path = vhdx_file_get_parent_path (member);
        }
        problems = vhdx_file_get_open_problems (file);
        for (guint i = 0; i < problems->len; i++) {
                const VhdxProblem *problem = g_ptr_array_index (problems, i);

                nbdkit_debug ("%s: %s: %s (file offset %" G_GUINT64_FORMAT "): %s", image_path,
                              vhdx_severity_to_string (problem->severity), problem->structure,
                              problem->offset, problem->message);
        }
        nbdkit_debug ("%s: %s disk, %" G_GUINT64_FORMAT " bytes, %" G_GUINT32_FORMAT
                      "-byte blocks, %" G_GUINT32_FORMAT "-byte sectors, log %s, %s",
                      image_path, vhdx_disk_type_to_string (info->disk_type), info->virtual_size,
                      info->block_size, info->logical_sector_size,
                      vhdx_log_state_to_string (info->log_state),
                      vhdx_file_is_writable (file) ? "read-write" : "read-only");
}

/* An image that another process writes can still be served read-only:
 * a read-only open refused for that says how, in the plugin's terms. */
static void
suggest_force_share (gboolean writable, GError **error)
{
        if (writable || force_share || !g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_BUSY))
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
        VhdxOpenOptions options = {
                .path = image_path,
                .parent_path = parent_path,
                .parent_dirs =
                        parent_dirs != NULL ? (const char *const *) parent_dirs->pdata : NULL,
        };
        VhdxOpenFlags flags = VHDX_OPEN_FLAGS_NONE;

        if (ignore_parent_mismatch)
                flags |= VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH;
        if (force_share)
                flags |= VHDX_OPEN_FLAGS_FORCE_SHARE;
        if (writable)
                flags |= VHDX_OPEN_FLAGS_READ_WRITE;
        return vhdx_file_open_full (vhdx_io_new_fd_owner_locked (served_fd), flags, &options,
                                    error);
}

/*
 * The nbdkit options that take a value, in nbdkit's command line (its
 * option table, nbdkit(1)): the short ones, and the long ones with the
 * meaning of each for -r.
 */
#define NBDKIT_SHORT_OPTIONS_WITH_VALUE    "DegiPptuU"
#define NBDKIT_SHORT_OPTIONS_WITHOUT_VALUE "46fnorsvV"

typedef struct {
        const char *name;
        gboolean takes_value;
        gboolean read_only;
} NbdkitLongOption;

static const NbdkitLongOption nbdkit_long_options[] = {
        { "ipv4-only", FALSE, FALSE },
        { "ipv6-only", FALSE, FALSE },
        { "debug", TRUE, FALSE },
        { "dump-config", FALSE, FALSE },
        { "dump-plugin", FALSE, FALSE },
        { "exit-with-parent", FALSE, FALSE },
        { "export", TRUE, FALSE },
        { "export-name", TRUE, FALSE },
        { "exportname", TRUE, FALSE },
        { "filter", TRUE, FALSE },
        { "foreground", FALSE, FALSE },
        { "no-fork", FALSE, FALSE },
        { "group", TRUE, FALSE },
        { "help", FALSE, FALSE },
        { "ip-addr", TRUE, FALSE },
        { "ipaddr", TRUE, FALSE },
        { "log", TRUE, FALSE },
        { "long-options", FALSE, FALSE },
        { "mask-handshake", TRUE, FALSE },
        { "new-style", FALSE, FALSE },
        { "newstyle", FALSE, FALSE },
        { "no-sr", FALSE, FALSE },
        { "old-style", FALSE, FALSE },
        { "oldstyle", FALSE, FALSE },
        { "pid-file", TRUE, FALSE },
        { "pidfile", TRUE, FALSE },
        { "port", TRUE, FALSE },
        { "read-only", FALSE, TRUE },
        { "readonly", FALSE, TRUE },
        { "run", TRUE, FALSE },
        { "selinux-label", TRUE, FALSE },
        { "short-options", FALSE, FALSE },
        { "single", FALSE, FALSE },
        { "stdin", FALSE, FALSE },
        { "swap", FALSE, FALSE },
        { "threads", TRUE, FALSE },
        { "tls", TRUE, FALSE },
        { "tls-certificates", TRUE, FALSE },
        { "tls-psk", TRUE, FALSE },
        { "tls-verify-peer", FALSE, FALSE },
        { "unix", TRUE, FALSE },
        { "user", TRUE, FALSE },
        { "verbose", FALSE, FALSE },
        { "version", FALSE, FALSE },
        { "vsock", FALSE, FALSE },
};

/* The long option @name (without "--" and "=value") stands for, as getopt
 * reads it: an exact name, or the beginning of names that all mean the
 * same; NULL when there is none or it is ambiguous. */
static const NbdkitLongOption *
find_long_option (const char *name, gsize length)
{
        const NbdkitLongOption *found = NULL;

        for (guint i = 0; i < G_N_ELEMENTS (nbdkit_long_options); i++) {
                const NbdkitLongOption *o = &nbdkit_long_options[i];

                if (strncmp (o->name, name, length) != 0)
                        continue;
                if (o->name[length] == '\0')
                        return o;
                if (found != NULL &&
                    (found->takes_value != o->takes_value || found->read_only != o->read_only))
                        return NULL;
                found = o;
        }
        return found;
}

/*
 * Whether nbdkit was started read-only (-r, --read-only, --readonly).  nbdkit
 * tells a plugin only when a client connects (.open), but the locks are
 * taken before: this reads nbdkit's own command line, as its getopt does.
 * FALSE when it cannot tell (an option it does not know, no /proc): the
 * server is then taken as writable, and the first connection, read-only or
 * not, settles it.
 */
static gboolean
nbdkit_is_read_only (void)
{
        g_autofree char *contents = NULL;
        g_autoptr (GPtrArray) args = g_ptr_array_new ();
        gsize length;

        if (!g_file_get_contents ("/proc/self/cmdline", &contents, &length, NULL))
                return FALSE;
        for (gsize i = 0; i < length; i += strlen (contents + i) + 1)
                g_ptr_array_add (args, contents + i);
        /* args[0] is nbdkit itself. */
        for (guint i = 1; i < args->len; i++) {
                const char *arg = g_ptr_array_index (args, i);

                if (strcmp (arg, "--") == 0)
                        return FALSE;
                if (g_str_has_prefix (arg, "--")) {
                        const char *equals = strchr (arg + 2, '=');
                        gsize name_length =
                                equals != NULL ? (gsize) (equals - arg - 2) : strlen (arg + 2);
                        const NbdkitLongOption *option = find_long_option (arg + 2, name_length);

                        if (option == NULL)
                                return FALSE;
                        if (option->read_only)
                                return TRUE;
                        if (option->takes_value && equals == NULL)
                                i++;
                        continue;
                }
                if (arg[0] != '-' || arg[1] == '\0')
                        continue; /* the plugin, its parameters */
                for (const char *c = arg + 1; *c != '\0'; c++) {
                        if (*c == 'r')
                                return TRUE;
                        if (strchr (NBDKIT_SHORT_OPTIONS_WITH_VALUE, *c) != NULL) {
                                if (c[1] == '\0')
                                        i++;
                                break;
                        }
                        if (strchr (NBDKIT_SHORT_OPTIONS_WITHOUT_VALUE, *c) == NULL)
                                return FALSE;
                }
        }
        return FALSE;
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
        lock = force_share ? VHDX_LOCK_TEST : read_write ? VHDX_LOCK_WRITER : VHDX_LOCK_READER;
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

        started_read_only = force_share || nbdkit_is_read_only ();
        nbdkit_debug ("%s: nbdkit %s", image_path,
                      started_read_only ? "serves read-only (-r)"
                                        : "may serve for writing: locking the image as a writer");
        if (!start_serving (!started_read_only, &error)) {
                nbdkit_error ("%s: %s", image_path, error->message);
                return -1;
        }
        describe_image (image);
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
        describe_image (file);
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
        Handle *h;

        /* Whether clients may write is known only here.  An image shared
         * with a writer elsewhere is never written: silently serving it
         * read-only would surprise a client that asked to write. */
        if (force_share && !readonly) {
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
        h = g_new0 (Handle, 1);
        h->file = image;
        h->writable = writable;
        image_users++;
        return h;
}

static void
vhdx_plugin_close (void *handle)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&image_lock);
        Handle *h = handle;

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

static int64_t
vhdx_plugin_get_size (void *handle)
{
        Handle *h = handle;

        return (int64_t) vhdx_file_get_info (h->file)->virtual_size;
}

static int
vhdx_plugin_block_size (void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
        Handle *h = handle;
        const VhdxInfo *info = vhdx_file_get_info (h->file);

        *minimum = info->logical_sector_size;
        *preferred = MIN (info->block_size, PREFERRED_BLOCK_SIZE_MAX);
        *maximum = 0xffffffff;
        return 0;
}

static int
vhdx_plugin_can_write (void *handle)
{
        Handle *h = handle;

        return h->writable;
}

/* A flush of a read-only connection has nothing to do, unless it shares a
 * writable image with others, whose completed writes it makes durable. */
static int
vhdx_plugin_can_flush (void *handle)
{
        return 1;
}

static int
vhdx_plugin_can_trim (void *handle)
{
        Handle *h = handle;

        return h->writable;
}

static int
vhdx_plugin_can_zero (void *handle)
{
        Handle *h = handle;

        return h->writable;
}

/* Fast zero requests are answered at once: done when they are cheap, or
 * refused (see zero_is_fast). */
static int
vhdx_plugin_can_fast_zero (void *handle)
{
        Handle *h = handle;

        return h->writable;
}

/* The engine flushes the image before a write with FUA returns. */
static int
vhdx_plugin_can_fua (void *handle)
{
        Handle *h = handle;

        return h->writable ? NBDKIT_FUA_NATIVE : NBDKIT_FUA_NONE;
}

/* Every connection uses the same VhdxFile, so each sees what the others
 * wrote, and a flush makes every completed write durable. */
static int
vhdx_plugin_can_multi_conn (void *handle)
{
        return 1;
}

static int
vhdx_plugin_can_extents (void *handle)
{
        return 1;
}

static VhdxWriteFlags
write_flags (uint32_t flags)
{
        VhdxWriteFlags out = VHDX_WRITE_FLAGS_NONE;

        if (flags & NBDKIT_FLAG_FUA)
                out |= VHDX_WRITE_FLAGS_FUA;
        if (flags & NBDKIT_FLAG_MAY_TRIM)
                out |= VHDX_WRITE_FLAGS_MAY_UNMAP;
        return out;
}

static int
vhdx_plugin_pread (void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
        g_autoptr (GError) error = NULL;
        Handle *h = handle;

        if (!vhdx_file_read (h->file, offset, buf, count, &error)) {
                report_error ("reading", count, offset, error);
                return -1;
        }
        return 0;
}

static int
vhdx_plugin_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
        g_autoptr (GError) error = NULL;
        Handle *h = handle;

        if (!vhdx_file_write (h->file, offset, buf, count, write_flags (flags), &error)) {
                report_error ("writing", count, offset, error);
                return -1;
        }
        return 0;
}

static int
vhdx_plugin_flush (void *handle, uint32_t flags)
{
        g_autoptr (GError) error = NULL;
        Handle *h = handle;

        if (!vhdx_file_flush (h->file, &error)) {
                nbdkit_error ("%s: flushing: %s", image_path, error->message);
                nbdkit_set_error (errno_from_error (error));
                return -1;
        }
        return 0;
}

/* Freed blocks are those the discard covers entirely; the rest of it is
 * ignored, and a fixed image keeps every block. */
static int
vhdx_plugin_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
        g_autoptr (GError) error = NULL;
        Handle *h = handle;

        if (!vhdx_file_discard (h->file, offset, count, write_flags (flags), &error)) {
                report_error ("discarding", count, offset, error);
                return -1;
        }
        return 0;
}

/*
 * Whether zeroing [@offset, @offset + @count) costs no payload I/O: whole
 * blocks of a dynamic or differencing image only change state in the BAT
 * (to ZERO), provided that the blocks that the image stores may be freed
 * (@may_unmap) or that there are none.  Zeroing a fixed image, or parts of
 * blocks, writes to the file (fallocate where it can, zeros where it
 * cannot), which is not faster than writing.
 */
static gboolean
zero_is_fast (VhdxFile *file, uint32_t count, uint64_t offset, gboolean may_unmap)
{
        const VhdxInfo *info = vhdx_file_get_info (file);
        g_autoptr (GError) error = NULL;
        g_autoptr (GArray) map = NULL;
        guint64 end = offset + count;

        if (info->disk_type == VHDX_DISK_TYPE_FIXED || offset % info->block_size != 0 ||
            (end % info->block_size != 0 && end != info->virtual_size))
                return FALSE;
        if (may_unmap)
                return TRUE;
        map = vhdx_file_map (file, offset, count, &error);
        if (map == NULL)
                return FALSE;
        for (guint i = 0; i < map->len; i++) {
                const VhdxMapExtent *extent = &g_array_index (map, VhdxMapExtent, i);

                if (extent->kind == VHDX_EXTENT_DATA && extent->depth == 0)
                        return FALSE;
        }
        return TRUE;
}

static int
vhdx_plugin_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
        g_autoptr (GError) error = NULL;
        Handle *h = handle;

        if ((flags & NBDKIT_FLAG_FAST_ZERO) &&
            !zero_is_fast (h->file, count, offset, (flags & NBDKIT_FLAG_MAY_TRIM) != 0)) {
                nbdkit_debug ("%s: zeroing %" PRIu32 " bytes at offset %" PRIu64
                              " would not be fast",
                              image_path, count, offset);
                nbdkit_set_error (ENOTSUP);
                return -1;
        }
        if (!vhdx_file_write_zeroes (h->file, offset, count, write_flags (flags), &error)) {
                report_error ("zeroing", count, offset, error);
                return -1;
        }
        return 0;
}

static uint32_t
extent_type (const VhdxMapExtent *extent)
{
        /* Zero extents take no space in the image, whether unallocated or in
         * the ZERO state: both are holes that read as zeros. */
        return extent->kind == VHDX_EXTENT_ZERO ? NBDKIT_EXTENT_ZERO | NBDKIT_EXTENT_HOLE : 0;
}

static int
vhdx_plugin_extents (void *handle,
                     uint32_t count,
                     uint64_t offset,
                     uint32_t flags,
                     struct nbdkit_extents *extents)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GArray) map = NULL;
        Handle *h = handle;
        const VhdxInfo *info = vhdx_file_get_info (h->file);
        gboolean req_one = (flags & NBDKIT_FLAG_REQ_ONE) != 0;
        guint64 length = count;

        /* One block is enough to describe the extent at @offset. */
        if (req_one)
                length = MIN (length, info->block_size - offset % info->block_size);

        map = vhdx_file_map (h->file, offset, length, &error);
        if (map == NULL) {
                report_error ("mapping", count, offset, error);
                return -1;
        }
        for (guint i = 0; i < map->len; i++) {
                const VhdxMapExtent *extent = &g_array_index (map, VhdxMapExtent, i);

                if (nbdkit_add_extent (extents, extent->offset, extent->length,
                                       extent_type (extent)) < 0)
                        return -1;
                if (req_one)
                        break;
        }
        return 0;
}

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
        .get_size = vhdx_plugin_get_size,
        .block_size = vhdx_plugin_block_size,
        .can_write = vhdx_plugin_can_write,
        .can_flush = vhdx_plugin_can_flush,
        .can_trim = vhdx_plugin_can_trim,
        .can_zero = vhdx_plugin_can_zero,
        .can_fast_zero = vhdx_plugin_can_fast_zero,
        .can_fua = vhdx_plugin_can_fua,
        .can_multi_conn = vhdx_plugin_can_multi_conn,
        .can_extents = vhdx_plugin_can_extents,
        .pread = vhdx_plugin_pread,
        .pwrite = vhdx_plugin_pwrite,
        .flush = vhdx_plugin_flush,
        .trim = vhdx_plugin_trim,
        .zero = vhdx_plugin_zero,
        .extents = vhdx_plugin_extents,
};

NBDKIT_REGISTER_PLUGIN (plugin)
