/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx-pool expose: a FUSE file system that shows every VHDX image of a
 * directory as a raw file of the image's virtual size, read-only or, with
 * --read-write, writable.  Anything that reads or writes raw files can then
 * use the images, and a libvirt `dir` pool on the mount point lists each one
 * with its real size.  SEEK_DATA and SEEK_HOLE are answered from the image's
 * extents, so sparse-aware readers (qemu-img, cp, libvirt's sparse streams)
 * skip what the image does not store.
 *
 * The directory is scanned again when it is listed and when a name is looked
 * up that the mount does not have.  What the listing shows comes from images
 * opened with force-share, which take no lock: a guest may start on one while
 * it is exposed.  An image that cannot be opened (damaged, or a checkpoint
 * whose parent is missing) is shown as NAME.raw.error, a small read-only
 * text that says what is wrong and what would mend it, and tried again at
 * each scan.  The open raw files of an image share one opening of it,
 * locked as a reader while they only read and as a writer while one of them
 * was opened for writing, so that a file is not read while another process
 * writes the image, nor written while another process uses it (opening it
 * then fails with EBUSY), and no other process writes it while it is open.
 * One opening for all, because the lock of our own reader would refuse our
 * own writer.  Writes, zeroing and flushes are the engine's, which takes
 * them from several threads at once; the opening is replaced (for writing,
 * or back to read-only once the last writer is gone) only while no request
 * uses it.
 */
#include "config.h"

#define FUSE_USE_VERSION 31

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fuse.h>

#include <gio/gio.h>
#include <glib.h>
#include <glib/gi18n.h>

#include <vhdx.h>

#include "pool-extents.h"
#include "pool-scan.h"
#include "pool-util.h"
#include "vhdx-children.h"

/* Misses rescan the directory at most this often (microseconds). */
#define RESCAN_INTERVAL_US (G_USEC_PER_SEC / 2)

static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP };

/* What the listing shows of one image: its raw file or, for an image that
 * cannot be opened, a placeholder that says why. */
typedef struct {
        char *source;
        dev_t dev;
        ino_t ino;
        struct timespec mtime;
        struct timespec ctime;
        off_t source_size;
        VhdxImage *image; /* NULL for a placeholder */
        char *problem;    /* the text of a placeholder */
        guint64 size;
        GMutex lock;
        gboolean data_bytes_known;
        guint64 data_bytes;
} Exposed;

/*
 * The image that the open raw files of one source share.  @users is guarded
 * by the exposer's lock; the rest by @lock, held for reading by each request
 * on @image and for writing to open, replace or close it.
 */
typedef struct {
        char *source;
        guint users;
        GRWLock lock;
        VhdxImage *image; /* NULL when it could not be opened again */
        gboolean writable;
        guint writers;
        guint64 size;
} Opened;

/* An open raw file. */
typedef struct {
        Exposed *exposed;
        Opened *opened;
        gboolean writable;
} Handle;

typedef struct {
        char *dir;
        gboolean read_write;
        GMutex lock;
        GHashTable *by_name;
        /* Files that are not images, by path, with the identity they had. */
        GHashTable *rejected;
        /* Why each image that cannot be opened cannot, by path: reported once. */
        GHashTable *reported;
        /* The Opened of each source that has open raw files. */
        GHashTable *opened;
        /* Sources written through the mount since the last scan: what the
         * listing shows of them is old. */
        GHashTable *written;
        gint64 last_scan;
        uid_t uid;
        gid_t gid;
} Exposer;

static void
exposed_clear (Exposed *exposed)
{
        g_free (exposed->source);
        g_clear_object (&exposed->image);
        g_free (exposed->problem);
        g_mutex_clear (&exposed->lock);
}

static Exposed *
exposed_ref (Exposed *exposed)
{
        return g_atomic_rc_box_acquire (exposed);
}

static void
exposed_unref (Exposed *exposed)
{
        g_atomic_rc_box_release_full (exposed, (GDestroyNotify) exposed_clear);
}

static void
print_source_error (const char *source, const GError *error)
{
        g_autofree char *display = g_filename_display_name (source);

        tool_print_error_printf ("%s: %s", display, error->message);
}

static gboolean
same_identity (const Exposed *exposed, const struct stat *st)
{
        return exposed->dev == st->st_dev && exposed->ino == st->st_ino &&
               exposed->source_size == st->st_size && exposed->mtime.tv_sec == st->st_mtim.tv_sec &&
               exposed->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static char *
identity_key (const struct stat *st)
{
        return g_strdup_printf ("%ju:%ju:%jd:%jd.%09ld", (uintmax_t) st->st_dev,
                                (uintmax_t) st->st_ino, (intmax_t) st->st_size,
                                (intmax_t) st->st_mtim.tv_sec, (long) st->st_mtim.tv_nsec);
}

/* disk.vhdx and disk.avhdx become disk.raw. */
static char *
exposed_name (const char *source_name)
{
        g_autofree char *lower = g_ascii_strdown (source_name, -1);
        gsize length = strlen (source_name);

        if (g_str_has_suffix (lower, ".avhdx"))
                length -= strlen (".avhdx");
        else if (g_str_has_suffix (lower, ".vhdx"))
                length -= strlen (".vhdx");
        if (length == 0)
                length = strlen (source_name);
        return g_strdup_printf ("%.*s.raw", (int) length, source_name);
}

static Exposed *
exposed_new (const char *source, const struct stat *st)
{
        Exposed *exposed = g_atomic_rc_box_new0 (Exposed);

        g_mutex_init (&exposed->lock);
        exposed->source = g_strdup (source);
        exposed->dev = st->st_dev;
        exposed->ino = st->st_ino;
        exposed->mtime = st->st_mtim;
        exposed->ctime = st->st_ctim;
        exposed->source_size = st->st_size;
        return exposed;
}

static Exposed *
exposed_open (const char *source, const struct stat *st, GError **error)
{
        g_autoptr (GFile) file = g_file_new_for_path (source);
        VhdxImage *image;
        Exposed *exposed;

        image = vhdx_image_new (file, VHDX_OPEN_FLAGS_FORCE_SHARE, NULL, error);
        if (image == NULL)
                return NULL;
        exposed = exposed_new (source, st);
        exposed->image = image;
        exposed->size = vhdx_image_get_virtual_size (image);
        return exposed;
}

/* The parent locator entries that name where the parent of the
 * differencing image @source (or of the last ancestor found) was, as
 * "  key: value" lines; "" when the image cannot be opened even without
 * its parent. */
static char *
missing_parent_lines (const char *source)
{
        static const char *const keys[] = { "relative_path", "absolute_win32_path", "volume_path" };
        g_autoptr (GFile) file = g_file_new_for_path (source);
        g_autoptr (VhdxImage) last = NULL;
        g_autoptr (GString) lines = g_string_new (NULL);
        GHashTable *locator;
        VhdxImage *parent;

        last = vhdx_image_new (file,
                               VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT | VHDX_OPEN_FLAGS_FORCE_SHARE,
                               NULL, NULL);
        if (last == NULL)
                return g_strdup ("");
        while ((parent = vhdx_image_dup_parent (last)) != NULL) {
                g_object_unref (last);
                last = parent;
        }
        locator = vhdx_image_get_parent_locator (last);
        for (gsize i = 0; locator != NULL && i < G_N_ELEMENTS (keys); i++) {
                const char *value = g_hash_table_lookup (locator, keys[i]);

                if (value != NULL)
                        g_string_append_printf (lines, "  %s: %s\n", keys[i], value);
        }
        return g_string_free (g_steal_pointer (&lines), FALSE);
}

/*
 * The text of the placeholder of the image @source that cannot be opened
 * because of @error: what is wrong, and what would mend it.
 */
static char *
placeholder_text (const char *source, const GError *error)
{
        g_autofree char *display = g_filename_display_name (source);
        g_autofree char *quoted = g_shell_quote (display);
        g_autoptr (GString) text = g_string_new (NULL);

        /* TRANSLATORS: the first line of the file shown in place of an image
         * that cannot be opened; the arguments are the image and why */
        g_string_append_printf (text, _ ("%s cannot be exposed: %s\n\n"), display, error->message);
        if (g_error_matches (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND)) {
                g_autofree char *lines = missing_parent_lines (source);

                g_string_append (text, _ ("It is a differencing image (a checkpoint) whose parent "
                                          "was not found where it was looked for.\n"));
                if (lines[0] != '\0') {
                        g_string_append (text, _ ("Its parent locator names the parent as:\n"));
                        g_string_append (text, lines);
                }
                g_string_append_printf (
                        text,
                        _ ("To mend it, put the parent back where the image looks for it, or\n"
                           "point the image at the parent where it is now:\n"
                           "  vhdx set-parent %s PARENT.vhdx\n"
                           "To read it without changing it, name the parent's directory:\n"
                           "  vhdx convert --parent-dir=DIR %s disk.raw\n"
                           "  nbdkit vhdx %s parent-dir=DIR\n"),
                        quoted, quoted, quoted);
        } else if (g_error_matches (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH)) {
                g_string_append_printf (
                        text,
                        _ ("It is a differencing image (a checkpoint), and the image found where\n"
                           "its parent should be is not the one it was made from: that image was\n"
                           "changed, or replaced, since.  Find the parent it was made from and\n"
                           "point the image at it:\n"
                           "  vhdx set-parent %s PARENT.vhdx\n"
                           "If the image found is its parent all the same (what the checkpoint\n"
                           "reads may then be inconsistent):\n"
                           "  vhdx set-parent --ignore-parent-mismatch %s PARENT.vhdx\n"),
                        quoted, quoted);
        } else if (g_error_matches (error, VHDX_ERROR, VHDX_ERROR_LOG)) {
                g_string_append_printf (text,
                                        _ ("Its log cannot be replayed.  See what is damaged, and "
                                           "replay what can be:\n"
                                           "  vhdx check %s\n"
                                           "  vhdx check --repair %s\n"),
                                        quoted, quoted);
        } else if (error->domain == VHDX_ERROR) {
                g_string_append_printf (text,
                                        _ ("The image is damaged, or uses what this version "
                                           "cannot read.  See what is wrong:\n"
                                           "  vhdx check %s\n"
                                           "A copy from a backup, or from the machine that made "
                                           "it, replaces it.\n"),
                                        quoted);
        } else {
                g_string_append (text, _ ("The file cannot be read: see that the user running "
                                          "vhdx-pool may read it.\n"));
        }
        g_string_append (text, _ ("\nThis file is read-only; once the image can be opened, its "
                                  "raw file takes its place.\n"));
        return g_string_free (g_steal_pointer (&text), FALSE);
}

/* The placeholder of @source, which cannot be opened because of @error;
 * @old when it says the same of the same file. */
static Exposed *
placeholder_new (const char *source, const struct stat *st, const GError *error, Exposed *old)
{
        g_autofree char *problem = placeholder_text (source, error);
        Exposed *exposed;

        if (old != NULL && old->problem != NULL && same_identity (old, st) &&
            g_str_equal (old->problem, problem))
                return exposed_ref (old);
        exposed = exposed_new (source, st);
        exposed->size = strlen (problem);
        exposed->problem = g_steal_pointer (&problem);
        return exposed;
}

/* disk.raw for the image disk.vhdx, disk.raw.error for its placeholder. */
static char *
exposed_file_name (const char *source_name, const Exposed *exposed)
{
        g_autofree char *name = exposed_name (source_name);

        return exposed->problem != NULL ? g_strconcat (name, ".error", NULL)
                                        : g_steal_pointer (&name);
}

static int
compare_strings (gconstpointer a, gconstpointer b)
{
        return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Scans the directory again; call with the lock held. */
static void
exposer_scan_locked (Exposer *exposer)
{
        g_autoptr (GHashTable) by_source = g_hash_table_new (g_str_hash, g_str_equal);
        g_autoptr (GHashTable) by_name = NULL;
        g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
        g_autoptr (GDir) dir = NULL;
        g_autoptr (GError) error = NULL;
        GHashTableIter iter;
        gpointer value;
        const char *entry;

        exposer->last_scan = g_get_monotonic_time ();
        dir = g_dir_open (exposer->dir, 0, &error);
        if (dir == NULL) {
                tool_print_error_printf ("%s", error->message);
                return;
        }
        while ((entry = g_dir_read_name (dir)) != NULL)
                g_ptr_array_add (names, g_strdup (entry));
        /* Sorted, so that names that clash resolve the same way each time. */
        g_ptr_array_sort (names, compare_strings);

        g_hash_table_iter_init (&iter, exposer->by_name);
        while (g_hash_table_iter_next (&iter, NULL, &value)) {
                Exposed *exposed = value;

                g_hash_table_insert (by_source, exposed->source, exposed);
        }

        by_name = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify) exposed_unref);
        for (guint i = 0; i < names->len; i++) {
                const char *source_name = g_ptr_array_index (names, i);
                g_autofree char *source = g_build_filename (exposer->dir, source_name, NULL);
                g_autofree char *key = NULL;
                g_autofree char *name = NULL;
                Exposed *exposed;
                struct stat st;
                gboolean is_vhdx = FALSE;

                if (stat (source, &st) < 0 || !S_ISREG (st.st_mode))
                        continue;
                exposed = g_hash_table_lookup (by_source, source);
                /* An image with open raw files stays as it was listed until
                 * they are closed: it may be in the middle of a write.  An
                 * image that could not be opened is tried again: its parent
                 * may be back. */
                if (exposed != NULL && exposed->problem == NULL &&
                    (g_hash_table_contains (exposer->opened, source) ||
                     (same_identity (exposed, &st) &&
                      !g_hash_table_contains (exposer->written, source)))) {
                        exposed = exposed_ref (exposed);
                } else {
                        g_autoptr (GError) open_error = NULL;

                        key = identity_key (&st);
                        if (g_strcmp0 (g_hash_table_lookup (exposer->rejected, source), key) == 0)
                                continue;
                        if (!pool_file_is_vhdx (source, &is_vhdx, &open_error) || !is_vhdx) {
                                g_hash_table_insert (exposer->rejected, g_strdup (source),
                                                     g_steal_pointer (&key));
                                continue;
                        }
                        g_hash_table_remove (exposer->rejected, source);
                        exposed = exposed_open (source, &st, &open_error);
                        if (exposed == NULL) {
                                if (g_strcmp0 (g_hash_table_lookup (exposer->reported, source),
                                               open_error->message) != 0) {
                                        print_source_error (source, open_error);
                                        g_hash_table_insert (exposer->reported, g_strdup (source),
                                                             g_strdup (open_error->message));
                                }
                                exposed = placeholder_new (source, &st, open_error,
                                                           g_hash_table_lookup (by_source, source));
                        } else {
                                g_hash_table_remove (exposer->reported, source);
                        }
                }
                name = exposed_file_name (source_name, exposed);
                if (g_hash_table_contains (by_name, name)) {
                        g_free (name);
                        name = g_strconcat (source_name, ".raw",
                                            exposed->problem != NULL ? ".error" : "", NULL);
                }
                if (g_hash_table_contains (by_name, name)) {
                        exposed_unref (exposed);
                        continue;
                }
                g_hash_table_insert (by_name, g_steal_pointer (&name), exposed);
        }
        g_hash_table_unref (exposer->by_name);
        exposer->by_name = g_steal_pointer (&by_name);
        g_hash_table_remove_all (exposer->written);
}

/* The images shown as raw files, placeholders left out. */
static guint
exposer_count_images_locked (Exposer *exposer)
{
        GHashTableIter iter;
        gpointer value;
        guint n = 0;

        g_hash_table_iter_init (&iter, exposer->by_name);
        while (g_hash_table_iter_next (&iter, NULL, &value))
                n += ((const Exposed *) value)->problem == NULL;
        return n;
}

static Exposer *
get_exposer (void)
{
        return fuse_get_context ()->private_data;
}

/* The image shown as @path, or NULL; rescans on a miss, at most so often,
 * and after an image was written through the mount. */
static Exposed *
exposer_lookup (Exposer *exposer, const char *path)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&exposer->lock);
        Exposed *exposed;

        if (path[0] != '/' || strchr (path + 1, '/') != NULL)
                return NULL;
        exposed = g_hash_table_lookup (exposer->by_name, path + 1);
        if ((exposed == NULL &&
             g_get_monotonic_time () - exposer->last_scan >= RESCAN_INTERVAL_US) ||
            g_hash_table_size (exposer->written) > 0) {
                exposer_scan_locked (exposer);
                exposed = g_hash_table_lookup (exposer->by_name, path + 1);
        }
        return exposed != NULL ? exposed_ref (exposed) : NULL;
}

/* Bytes of the virtual disk that hold data: what the raw file would store. */
static guint64
exposed_data_bytes (Exposed *exposed)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&exposed->lock);
        g_auto (PoolExtentCursor) cursor = { 0 };
        guint64 total = 0;

        if (exposed->data_bytes_known || exposed->problem != NULL)
                return exposed->problem != NULL ? exposed->size : exposed->data_bytes;
        pool_extent_cursor_init (&cursor, exposed->image);
        for (guint64 offset = 0; offset < exposed->size;) {
                const VhdxExtent *extent = pool_extent_cursor_find (&cursor, offset, NULL);

                if (extent == NULL)
                        return exposed->size;
                if (vhdx_extent_get_kind (extent) == VHDX_EXTENT_KIND_DATA)
                        total += vhdx_extent_get_length (extent);
                offset = vhdx_extent_get_offset (extent) + vhdx_extent_get_length (extent);
        }
        exposed->data_bytes = total;
        exposed->data_bytes_known = TRUE;
        return total;
}

/* The image the open raw files share */

static Opened *
opened_ref (Opened *opened)
{
        return g_atomic_rc_box_acquire (opened);
}

static void
opened_clear (Opened *opened)
{
        g_free (opened->source);
        g_clear_object (&opened->image);
        g_rw_lock_clear (&opened->lock);
}

static void
opened_unref (Opened *opened)
{
        g_atomic_rc_box_release_full (opened, (GDestroyNotify) opened_clear);
}

/* The errno of a failed open of an image: in use by another process, a file
 * that this user or the file system does not let us write, or anything else. */
static int
errno_from_open_error (const GError *error)
{
        if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_BUSY))
                return EBUSY;
        if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED))
                return EACCES;
        if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY))
                return EROFS;
        return EIO;
}

/* The errno of a failed request, as the nbdkit plugin gives it to clients. */
static int
errno_from_request_error (const GError *error)
{
        if (g_error_matches (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE))
                return EINVAL;
        if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY))
                return EROFS;
        if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE))
                return ENOSPC;
        return EIO;
}

/* Open the image again, for writing or read-only (and locked as such);
 * call with opened->lock held for writing and no image open. */
static gboolean
opened_open_image (Opened *opened, gboolean writable, GError **error)
{
        g_autoptr (GFile) file = g_file_new_for_path (opened->source);
        VhdxImage *image;

        g_assert (opened->image == NULL);
        image = vhdx_image_new (file, writable ? VHDX_OPEN_FLAGS_READ_WRITE : VHDX_OPEN_FLAGS_NONE,
                                NULL, error);
        if (image == NULL)
                return FALSE;
        opened->image = image;
        opened->writable = writable;
        opened->size = vhdx_image_get_virtual_size (image);
        return TRUE;
}

/* Close the image, cleanly when it was open for writing (its log applied,
 * its header clean), and let its locks go; call with opened->lock held for
 * writing.  TRUE when it was open for writing. */
static gboolean
opened_close_image (Opened *opened)
{
        g_autoptr (GError) error = NULL;
        gboolean was_writable = opened->writable;

        if (opened->image == NULL)
                return FALSE;
        if (opened->writable && !vhdx_image_close (opened->image, NULL, &error))
                /* The log stays in the file: the next open replays it. */
                print_source_error (opened->source, error);
        g_clear_object (&opened->image);
        opened->writable = FALSE;
        return was_writable;
}

/* The source's Opened, with one more user (and a reference for the caller). */
static Opened *
exposer_enter (Exposer *exposer, const char *source)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&exposer->lock);
        Opened *opened = g_hash_table_lookup (exposer->opened, source);

        if (opened == NULL) {
                opened = g_atomic_rc_box_new0 (Opened);
                opened->source = g_strdup (source);
                g_rw_lock_init (&opened->lock);
                g_hash_table_insert (exposer->opened, opened->source, opened);
        }
        opened->users++;
        return opened_ref (opened);
}

/*
 * Have the image open for the new user of @opened: read-only, or for
 * writing when @writable.  An image open read-only for others is closed
 * first and opened again for writing (reopened read-only if that fails):
 * our own reader's lock would refuse our writer.
 */
static gboolean
opened_use (Opened *opened, gboolean writable, GError **error)
{
        gboolean ok = TRUE;

        g_rw_lock_writer_lock (&opened->lock);
        if (opened->image == NULL || (writable && !opened->writable)) {
                gboolean others = opened->image != NULL;

                opened_close_image (opened);
                ok = opened_open_image (opened, writable, error);
                if (!ok && others) {
                        g_autoptr (GError) reopen_error = NULL;

                        if (!opened_open_image (opened, FALSE, &reopen_error))
                                print_source_error (opened->source, reopen_error);
                }
        }
        if (ok && writable)
                opened->writers++;
        g_rw_lock_writer_unlock (&opened->lock);
        return ok;
}

/*
 * A user of @opened is gone (a writer when @writer).  The last one closes
 * the image; the last writer, while readers remain, opens it read-only
 * again, so that the image is open for writing only while a raw file is.
 * Takes the caller's reference.
 */
static void
exposer_leave (Exposer *exposer, Opened *opened, gboolean writer)
{
        gboolean last, written = FALSE;

        g_rw_lock_writer_lock (&opened->lock);
        if (writer)
                opened->writers--;
        g_mutex_lock (&exposer->lock);
        last = --opened->users == 0;
        g_mutex_unlock (&exposer->lock);
        if (last) {
                written = opened_close_image (opened);
        } else if (opened->writers == 0 && opened->writable) {
                g_autoptr (GError) error = NULL;

                written = opened_close_image (opened);
                if (!opened_open_image (opened, FALSE, &error))
                        print_source_error (opened->source, error);
        }
        g_rw_lock_writer_unlock (&opened->lock);

        g_mutex_lock (&exposer->lock);
        if (written)
                g_hash_table_add (exposer->written, g_strdup (opened->source));
        /* Forgotten only once closed: a new user meanwhile finds it, and
         * waits for the close. */
        if (opened->users == 0 && g_hash_table_lookup (exposer->opened, opened->source) == opened)
                g_hash_table_remove (exposer->opened, opened->source);
        g_mutex_unlock (&exposer->lock);
        opened_unref (opened);
}

/*
 * Whether other images of the directory were made from @exposed's image:
 * writing it would change its DataWriteGuid and leave them without their
 * parent, so it is refused, as Hyper-V keeps the parent of a checkpoint
 * read-only.  Logs their names.
 */
static gboolean
exposed_has_children (Exposer *exposer, Exposed *exposed)
{
        const char *dirs[] = { exposer->dir, NULL };
        const char *skip[] = { exposed->source, NULL };
        g_autoptr (GError) error = NULL;
        g_autoptr (GPtrArray) children = NULL;
        g_autoptr (GString) names = g_string_new (NULL);
        g_autofree char *display = g_filename_display_name (exposed->source);
        VhdxGuid guid;

        if (!vhdx_guid_from_string (vhdx_image_get_data_write_guid (exposed->image), &guid))
                return FALSE;
        children = vhdx_find_children (dirs, &guid, skip, &error);
        if (children == NULL) {
                print_source_error (exposed->source, error);
                return TRUE;
        }
        if (children->len == 0)
                return FALSE;
        for (guint i = 0; i < children->len; i++) {
                g_autofree char *child = g_filename_display_name (g_ptr_array_index (children, i));

                g_string_append_printf (names, "%s%s", i > 0 ? ", " : "", child);
        }
        tool_print_error_printf (_ ("%s: not opened for writing: it is the parent of %s (a "
                                    "write would change the image they were made from)"),
                                 display, names->str);
        return TRUE;
}

/* File system operations */

static void *
expose_init (struct fuse_conn_info *conn, struct fuse_config *cfg)
{
        /* An image may change under the mount: do not keep its pages. */
        cfg->kernel_cache = 0;
        cfg->entry_timeout = 1.0;
        cfg->attr_timeout = 1.0;
        cfg->negative_timeout = 0.0;
        return get_exposer ();
}

static int
expose_getattr (const char *path, struct stat *st, struct fuse_file_info *fi)
{
        Exposer *exposer = get_exposer ();
        Exposed *exposed;

        memset (st, 0, sizeof *st);
        if (g_str_equal (path, "/")) {
                struct stat dir_st;

                if (stat (exposer->dir, &dir_st) < 0)
                        return -errno;
                st->st_mode = S_IFDIR | 0555;
                st->st_nlink = 2;
                st->st_uid = exposer->uid;
                st->st_gid = exposer->gid;
                st->st_mtim = dir_st.st_mtim;
                st->st_ctim = dir_st.st_ctim;
                st->st_atim = dir_st.st_atim;
                return 0;
        }
        /* An open file is its handle's image; anything else is looked up. */
        exposed = fi != NULL && fi->fh != 0
                          ? exposed_ref (((const Handle *) (uintptr_t) fi->fh)->exposed)
                          : exposer_lookup (exposer, path);
        if (exposed == NULL)
                return -ENOENT;
        st->st_mode = S_IFREG | (exposer->read_write && exposed->problem == NULL ? 0644 : 0444);
        st->st_nlink = 1;
        st->st_uid = exposer->uid;
        st->st_gid = exposer->gid;
        st->st_size = (off_t) exposed->size;
        st->st_blksize = 4096;
        st->st_blocks = (blkcnt_t) ((exposed_data_bytes (exposed) + 511) / 512);
        st->st_mtim = exposed->mtime;
        st->st_ctim = exposed->ctime;
        st->st_atim = exposed->mtime;
        exposed_unref (exposed);
        return 0;
}

static int
expose_readdir (const char *path,
                void *buf,
                fuse_fill_dir_t filler,
                off_t offset,
                struct fuse_file_info *fi,
                enum fuse_readdir_flags flags)
{
        Exposer *exposer = get_exposer ();
        g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);

        if (!g_str_equal (path, "/"))
                return -ENOTDIR;
        {
                g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&exposer->lock);
                GHashTableIter iter;
                gpointer key;

                exposer_scan_locked (exposer);
                g_hash_table_iter_init (&iter, exposer->by_name);
                while (g_hash_table_iter_next (&iter, &key, NULL))
                        g_ptr_array_add (names, g_strdup (key));
        }
        g_ptr_array_sort (names, compare_strings);
        filler (buf, ".", NULL, 0, 0);
        filler (buf, "..", NULL, 0, 0);
        for (guint i = 0; i < names->len; i++) {
                if (filler (buf, g_ptr_array_index (names, i), NULL, 0, 0) != 0)
                        break;
        }
        return 0;
}

static int
expose_open (const char *path, struct fuse_file_info *fi)
{
        Exposer *exposer = get_exposer ();
        gboolean writable = (fi->flags & O_ACCMODE) != O_RDONLY;
        g_autoptr (GError) error = NULL;
        Exposed *exposed;
        Opened *opened;
        Handle *handle;

        if (writable && !exposer->read_write)
                return -EROFS;
        exposed = exposer_lookup (exposer, path);
        if (exposed == NULL)
                return -ENOENT;
        if (exposed->problem != NULL) {
                if (writable) {
                        exposed_unref (exposed);
                        return -EACCES;
                }
                handle = g_new0 (Handle, 1);
                handle->exposed = exposed;
                fi->fh = (uint64_t) (uintptr_t) handle;
                return 0;
        }
        /* Truncating would change the size of the virtual disk. */
        if ((fi->flags & O_TRUNC) && exposed->size != 0) {
                exposed_unref (exposed);
                return -EINVAL;
        }
        if (writable && exposed_has_children (exposer, exposed)) {
                exposed_unref (exposed);
                return -EPERM;
        }
        opened = exposer_enter (exposer, exposed->source);
        if (!opened_use (opened, writable, &error)) {
                print_source_error (exposed->source, error);
                exposer_leave (exposer, opened, FALSE);
                exposed_unref (exposed);
                return -errno_from_open_error (error);
        }
        handle = g_new0 (Handle, 1);
        handle->exposed = exposed;
        handle->opened = opened;
        handle->writable = writable;
        fi->fh = (uint64_t) (uintptr_t) handle;
        return 0;
}

static int
expose_release (const char *path, struct fuse_file_info *fi)
{
        Handle *handle = (Handle *) (uintptr_t) fi->fh;

        if (handle->opened != NULL)
                exposer_leave (get_exposer (), handle->opened, handle->writable);
        exposed_unref (handle->exposed);
        g_free (handle);
        fi->fh = 0;
        return 0;
}

/* The image of @handle, or NULL when it could not be opened again; call
 * with opened->lock held for reading. */
static VhdxImage *
handle_image (const Handle *handle)
{
        if (handle->opened->image == NULL) {
                g_autofree char *display = g_filename_display_name (handle->opened->source);

                tool_print_error_printf (_ ("%s: the image is not open"), display);
        }
        return handle->opened->image;
}

/* The part of [@offset, @offset + @size) inside the disk of @handle's image:
 * 0 at or past its end, -1 for a negative offset. */
static gssize
clamp_request (const Handle *handle, off_t offset, size_t size)
{
        guint64 disk = handle->opened->size;

        if (offset < 0)
                return -1;
        if ((guint64) offset >= disk)
                return 0;
        return (gssize) MIN ((guint64) size, disk - (guint64) offset);
}

/* The text of a placeholder. */
static int
placeholder_read (const Exposed *exposed, char *buf, size_t size, off_t offset)
{
        if (offset < 0)
                return -EINVAL;
        if ((guint64) offset >= exposed->size)
                return 0;
        size = (size_t) MIN ((guint64) size, exposed->size - (guint64) offset);
        memcpy (buf, exposed->problem + offset, size);
        return (int) size;
}

static int
image_read (Handle *handle, char *buf, size_t size, off_t offset)
{
        g_autoptr (GRWLockReaderLocker) locker =
                g_rw_lock_reader_locker_new (&handle->opened->lock);
        g_autoptr (GError) error = NULL;
        VhdxImage *image = handle_image (handle);
        gssize count = clamp_request (handle, offset, size);

        if (image == NULL)
                return -EIO;
        if (count <= 0)
                return count < 0 ? -EINVAL : 0;
        if (!vhdx_image_read (image, (guint64) offset, buf, (gsize) count, NULL, &error)) {
                print_source_error (handle->opened->source, error);
                return -EIO;
        }
        return (int) count;
}

static int
expose_read (const char *path, char *buf, size_t size, off_t offset, struct fuse_file_info *fi)
{
        Handle *handle = (Handle *) (uintptr_t) fi->fh;

        if (handle->opened == NULL)
                return placeholder_read (handle->exposed, buf, size, offset);
        return image_read (handle, buf, size, offset);
}

/* A raw file is as large as the virtual disk: what would lie past its end
 * does not fit, as on a disk. */
static int
expose_write (const char *path,
              const char *buf,
              size_t size,
              off_t offset,
              struct fuse_file_info *fi)
{
        Handle *handle = (Handle *) (uintptr_t) fi->fh;
        g_autoptr (GRWLockReaderLocker) locker = NULL;
        g_autoptr (GError) error = NULL;
        VhdxImage *image;
        gssize count;

        if (!handle->writable)
                return -EBADF;
        if (size == 0)
                return 0;
        locker = g_rw_lock_reader_locker_new (&handle->opened->lock);
        image = handle_image (handle);
        if (image == NULL)
                return -EIO;
        count = clamp_request (handle, offset, size);
        if (count <= 0)
                return count < 0 ? -EINVAL : -ENOSPC;
        if (!vhdx_image_write (image, (guint64) offset, buf, (gsize) count, VHDX_WRITE_FLAGS_NONE,
                               NULL, &error)) {
                print_source_error (handle->opened->source, error);
                return -errno_from_request_error (error);
        }
        return (int) count;
}

/* Punching a hole zeroes the range, freeing the blocks it covers entirely;
 * nothing else that fallocate does applies to a disk of fixed size. */
static int
expose_fallocate (const char *path, int mode, off_t offset, off_t length, struct fuse_file_info *fi)
{
        Handle *handle = (Handle *) (uintptr_t) fi->fh;
        g_autoptr (GRWLockReaderLocker) locker = NULL;
        g_autoptr (GError) error = NULL;
        VhdxImage *image;
        guint64 disk;
        guint64 end;

        if (mode != (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))
                return -EOPNOTSUPP;
        if (!handle->writable)
                return -EBADF;
        if (offset < 0 || length <= 0)
                return -EINVAL;
        locker = g_rw_lock_reader_locker_new (&handle->opened->lock);
        disk = handle->opened->size;
        image = handle_image (handle);
        if (image == NULL)
                return -EIO;
        if ((guint64) offset >= disk)
                return 0;
        end = (guint64) length > disk - (guint64) offset ? disk : (guint64) offset + length;
        if (!vhdx_image_write_zeroes (image, (guint64) offset, end - (guint64) offset,
                                      VHDX_WRITE_FLAGS_MAY_UNMAP, NULL, &error)) {
                print_source_error (handle->opened->source, error);
                return -errno_from_request_error (error);
        }
        return 0;
}

/* Make what was written durable: the engine's flush commits the log. */
static int
handle_flush (Handle *handle)
{
        g_autoptr (GRWLockReaderLocker) locker = NULL;
        g_autoptr (GError) error = NULL;

        if (handle->opened == NULL)
                return 0;
        locker = g_rw_lock_reader_locker_new (&handle->opened->lock);
        if (handle->opened->image == NULL || !handle->opened->writable)
                return 0;
        if (!vhdx_image_flush (handle->opened->image, NULL, &error)) {
                print_source_error (handle->opened->source, error);
                return -errno_from_request_error (error);
        }
        return 0;
}

/* fsync and fdatasync of any raw file of a writable image: the writes of
 * every file of that image are made durable, as a disk's flush does. */
static int
expose_fsync (const char *path, int datasync, struct fuse_file_info *fi)
{
        return handle_flush ((Handle *) (uintptr_t) fi->fh);
}

/* close() of a file opened for writing: its writes are durable when it
 * returns, and close reports a failure. */
static int
expose_flush (const char *path, struct fuse_file_info *fi)
{
        Handle *handle = (Handle *) (uintptr_t) fi->fh;

        return handle->writable ? handle_flush (handle) : 0;
}

/* The size of the virtual disk is changed with `vhdx resize`, not here. */
static int
expose_truncate (const char *path, off_t size, struct fuse_file_info *fi)
{
        Exposer *exposer = get_exposer ();
        Exposed *exposed = fi != NULL && fi->fh != 0
                                   ? exposed_ref (((const Handle *) (uintptr_t) fi->fh)->exposed)
                                   : exposer_lookup (exposer, path);
        gboolean same;

        if (exposed == NULL)
                return -ENOENT;
        if (exposed->problem != NULL) {
                exposed_unref (exposed);
                return -EACCES;
        }
        same = size >= 0 && (guint64) size == exposed->size;
        if (!same) {
                g_autofree char *display = g_filename_display_name (exposed->source);

                tool_print_error_printf (_ ("%s: the size of a virtual disk is not changed by "
                                            "truncating its raw file (vhdx resize changes it)"),
                                         display);
        }
        exposed_unref (exposed);
        return same ? 0 : -EINVAL;
}

/* SEEK_DATA and SEEK_HOLE, from the extents; the kernel does the rest. */
static off_t
expose_lseek (const char *path, off_t offset, int whence, struct fuse_file_info *fi)
{
        Handle *handle = (Handle *) (uintptr_t) fi->fh;
        g_autoptr (GRWLockReaderLocker) locker = NULL;
        g_auto (PoolExtentCursor) cursor = { 0 };
        VhdxImage *image;
        guint64 disk;
        gboolean want_data;

        if (whence != SEEK_DATA && whence != SEEK_HOLE)
                return -EINVAL;
        if (offset < 0)
                return -ENXIO;
        if (handle->opened == NULL) {
                /* A placeholder is all data. */
                if ((guint64) offset >= handle->exposed->size)
                        return -ENXIO;
                return whence == SEEK_DATA ? offset : (off_t) handle->exposed->size;
        }
        locker = g_rw_lock_reader_locker_new (&handle->opened->lock);
        disk = handle->opened->size;
        if ((guint64) offset >= disk)
                return -ENXIO;
        image = handle_image (handle);
        if (image == NULL)
                return -EIO;
        want_data = whence == SEEK_DATA;
        pool_extent_cursor_init (&cursor, image);
        for (guint64 start = (guint64) offset; start < disk;) {
                const VhdxExtent *extent = pool_extent_cursor_find (&cursor, start, NULL);

                if (extent == NULL)
                        return -EIO;
                if ((vhdx_extent_get_kind (extent) == VHDX_EXTENT_KIND_DATA) == want_data)
                        return (off_t) MAX (vhdx_extent_get_offset (extent), (guint64) offset);
                start = vhdx_extent_get_offset (extent) + vhdx_extent_get_length (extent);
        }
        /* No data after @offset; the implicit hole at the end. */
        return want_data ? -ENXIO : (off_t) disk;
}

static int
expose_statfs (const char *path, struct statvfs *st)
{
        Exposer *exposer = get_exposer ();

        if (statvfs (exposer->dir, st) < 0)
                return -errno;
        if (!exposer->read_write)
                st->f_flag |= ST_RDONLY;
        return 0;
}

static const struct fuse_operations expose_operations = {
        .init = expose_init,
        .getattr = expose_getattr,
        .readdir = expose_readdir,
        .open = expose_open,
        .release = expose_release,
        .read = expose_read,
        .write = expose_write,
        .fallocate = expose_fallocate,
        .fsync = expose_fsync,
        .flush = expose_flush,
        .truncate = expose_truncate,
        .lseek = expose_lseek,
        .statfs = expose_statfs,
};

/* The libvirt pool on the mount point */

typedef struct {
        char *uri;
        char *name;
        char *mountpoint;
        virConnectPtr conn;
        virStoragePoolPtr pool;
        gboolean defined;
        gboolean started;
        gboolean ready;
        GError *error;
        guint n_images;
} PoolSetup;

static char *
pool_target (virStoragePoolPtr pool)
{
        char *xml = virStoragePoolGetXMLDesc (pool, 0);
        char *target = pool_xml_get (xml, "pool/target/path", NULL);

        free (xml);
        return target;
}

/* Runs while the file system is served: libvirt reads the mount point. */
static gpointer
set_up_pool (gpointer user_data)
{
        PoolSetup *setup = user_data;
        virStoragePoolPtr pool = virStoragePoolLookupByName (setup->conn, setup->name);

        if (pool != NULL) {
                g_autofree char *target = pool_target (pool);
                g_autofree char *canonical = target != NULL ? pool_canonical_path (target) : NULL;
                int active = virStoragePoolIsActive (pool);

                setup->pool = pool;
                if (g_strcmp0 (canonical, setup->mountpoint) != 0) {
                        g_set_error (&setup->error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                                     _ ("storage pool '%s' already exists, on %s"), setup->name,
                                     target != NULL ? target : "?");
                        goto out;
                }
                if (active == 1) {
                        if (virStoragePoolRefresh (pool, 0) < 0) {
                                pool_set_libvirt_error (&setup->error,
                                                        _ ("cannot refresh storage pool '%s'"),
                                                        setup->name);
                                goto out;
                        }
                } else if (virStoragePoolCreate (pool, 0) < 0) {
                        pool_set_libvirt_error (&setup->error, _ ("cannot start storage pool '%s'"),
                                                setup->name);
                        goto out;
                } else {
                        setup->started = TRUE;
                }
        } else {
                g_autofree char *name = pool_xml_escape (setup->name);
                g_autofree char *path = pool_xml_escape (setup->mountpoint);
                g_autofree char *xml = g_strdup_printf ("<pool type='dir'>\n"
                                                        "  <name>%s</name>\n"
                                                        "  <target>\n"
                                                        "    <path>%s</path>\n"
                                                        "  </target>\n"
                                                        "</pool>\n",
                                                        name, path);

                setup->pool = virStoragePoolDefineXML (setup->conn, xml, 0);
                if (setup->pool == NULL) {
                        pool_set_libvirt_error (&setup->error,
                                                _ ("cannot define storage pool '%s'"), setup->name);
                        goto out;
                }
                setup->defined = TRUE;
                if (virStoragePoolCreate (setup->pool, 0) < 0) {
                        pool_set_libvirt_error (&setup->error, _ ("cannot start storage pool '%s'"),
                                                setup->name);
                        goto out;
                }
                setup->started = TRUE;
        }
        setup->ready = TRUE;
out:
        if (setup->error != NULL) {
                /* Stop serving: the signal wakes the main thread's loop. */
                kill (getpid (), SIGTERM);
        } else {
                g_print (g_dngettext (GETTEXT_PACKAGE,
                                      "Storage pool '%s' is started with %u image\n",
                                      "Storage pool '%s' is started with %u images\n",
                                      setup->n_images),
                         setup->name, setup->n_images);
                fflush (stdout);
        }
        return NULL;
}

/* Leaves libvirt as it was: stops the pool if it started it, and removes
 * it if it defined it. */
static void
tear_down_pool (PoolSetup *setup)
{
        g_autoptr (GError) error = NULL;

        if (setup->pool == NULL)
                return;
        if (setup->started && virStoragePoolDestroy (setup->pool) < 0)
                pool_set_libvirt_error (&error, _ ("cannot stop storage pool '%s'"), setup->name);
        else if (!setup->started && virStoragePoolIsActive (setup->pool) == 1)
                /* It was running already: forget the volumes of the mount. */
                virStoragePoolRefresh (setup->pool, 0);
        if (error == NULL && setup->defined && virStoragePoolUndefine (setup->pool) < 0)
                pool_set_libvirt_error (&error, _ ("cannot remove storage pool '%s'"), setup->name);
        if (error != NULL)
                tool_print_error_printf ("%s", error->message);
        virStoragePoolFree (setup->pool);
        setup->pool = NULL;
}

static void
block_stop_signals (gboolean block)
{
        sigset_t set;

        sigemptyset (&set);
        for (gsize i = 0; i < G_N_ELEMENTS (stop_signals); i++)
                sigaddset (&set, stop_signals[i]);
        pthread_sigmask (block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

static gboolean
check_directory (const char *path)
{
        struct stat st;
        int saved_errno = 0;

        if (stat (path, &st) < 0)
                saved_errno = errno;
        else if (!S_ISDIR (st.st_mode))
                saved_errno = ENOTDIR;
        if (saved_errno != 0) {
                g_autofree char *display = g_filename_display_name (path);

                tool_print_error_printf ("%s: %s", display, g_strerror (saved_errno));
                return FALSE;
        }
        return TRUE;
}

int
pool_cmd_expose (int argc, char **argv)
{
        g_autofree char *uri = NULL;
        g_autofree char *define_pool = NULL;
        gboolean read_write = FALSE;
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "connect", 'c', 0, G_OPTION_ARG_STRING, &uri,
                  N_ ("Connect to the hypervisor at URI, as virsh does"), N_ ("URI") },
                { "define-pool", 0, 0, G_OPTION_ARG_STRING, &define_pool,
                  N_ ("Define and start a libvirt 'dir' pool NAME on MOUNTPOINT"), N_ ("NAME") },
                { "read-write", 0, 0, G_OPTION_ARG_NONE, &read_write,
                  N_ ("Let the raw files be written: writes go to the images"), NULL },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autofree char *dir = NULL;
        g_autofree char *mountpoint = NULL;
        g_autofree char *display = NULL;
        char *fuse_argv[] = { (char *) "vhdx-pool", (char *) "-o",
                              (char *) "ro,default_permissions,fsname=vhdx-pool,subtype=vhdx",
                              NULL };
        char *fuse_argv_rw[] = { (char *) "vhdx-pool", (char *) "-o",
                                 (char *) "default_permissions,fsname=vhdx-pool,subtype=vhdx",
                                 NULL };
        struct fuse_args fuse_arguments = FUSE_ARGS_INIT (3, fuse_argv);
        Exposer exposer = { 0 };
        PoolSetup setup = { 0 };
        GThread *setup_thread = NULL;
        struct fuse *fuse;
        int status = EXIT_SUCCESS;
        int loop_result;

        context = tool_command_context_new (
                "expose", _ ("DIR MOUNTPOINT"),
                _ ("Show the VHDX images of a directory as raw files."),
                _ ("Mounts a read-only FUSE file system on MOUNTPOINT in which each VHDX\n"
                   "image of DIR (told by content) is a raw file of its virtual size, named\n"
                   "like the image with .raw for .vhdx or .avhdx.  Images added to DIR appear\n"
                   "when the mount point is listed.  With --read-write, the raw files can be\n"
                   "written: writes, punched holes and fsync go to the image (a\n"
                   "differencing image's parents stay read-only), which is open for writing,\n"
                   "and locked against other processes, while a raw file is open for\n"
                   "writing, and closed cleanly after.  With --define-pool, a libvirt 'dir' pool\n"
                   "on MOUNTPOINT is defined (unless it exists) and started, so that virsh and\n"
                   "virt-manager list each disk with its real size; it is stopped, and removed\n"
                   "if it was defined here, when the file system is unmounted.\n"
                   "\n"
                   "Runs until SIGTERM or SIGINT, or until MOUNTPOINT is unmounted.\n"
                   "\n"
                   "Exit status: 0 when stopped, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv))
                return EXIT_FAILURE;
        if (args == NULL || g_strv_length (args) != 2)
                return tool_usage_error ("%s", _ ("expected DIR and MOUNTPOINT"));
        if (read_write)
                fuse_arguments.argv = fuse_argv_rw;
        if (!check_directory (args[0]) || !check_directory (args[1]))
                return EXIT_FAILURE;
        dir = pool_canonical_path (args[0]);
        mountpoint = pool_canonical_path (args[1]);
        display = g_filename_display_name (mountpoint);

        if (access ("/dev/fuse", R_OK | W_OK) < 0) {
                int saved_errno = errno;

                tool_print_error_printf (
                        _ ("/dev/fuse is not available (%s): FUSE file systems cannot "
                           "be mounted here"),
                        g_strerror (saved_errno));
                return EXIT_FAILURE;
        }

        if (define_pool != NULL) {
                /* Fail before mounting when libvirt cannot be reached. */
                setup.conn = pool_connect (uri != NULL ? uri : pool_connect_uri, &error);
                if (setup.conn == NULL) {
                        tool_print_error_printf ("%s", error->message);
                        return EXIT_FAILURE;
                }
                setup.name = define_pool;
                setup.mountpoint = mountpoint;
        }

        /* Only the main thread takes the signals that stop the loop: a
         * signal taken by another thread would not wake it. */
        block_stop_signals (TRUE);

        exposer.dir = dir;
        exposer.read_write = read_write;
        g_mutex_init (&exposer.lock);
        exposer.by_name = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                 (GDestroyNotify) exposed_unref);
        exposer.rejected = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
        exposer.reported = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
        exposer.opened = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                                (GDestroyNotify) opened_unref);
        exposer.written = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
        exposer.uid = getuid ();
        exposer.gid = getgid ();
        g_mutex_lock (&exposer.lock);
        exposer_scan_locked (&exposer);
        setup.n_images = exposer_count_images_locked (&exposer);
        g_mutex_unlock (&exposer.lock);

        fuse = fuse_new (&fuse_arguments, &expose_operations, sizeof expose_operations, &exposer);
        if (fuse == NULL) {
                tool_print_error_printf ("%s", _ ("cannot set up the FUSE file system"));
                status = EXIT_FAILURE;
                goto out;
        }
        if (fuse_mount (fuse, mountpoint) != 0) {
                tool_print_error_printf (
                        _ ("cannot mount a FUSE file system on %s: FUSE mounts are not "
                           "permitted here"),
                        display);
                fuse_destroy (fuse);
                status = EXIT_FAILURE;
                goto out;
        }
        if (fuse_set_signal_handlers (fuse_get_session (fuse)) != 0) {
                tool_print_error_printf ("%s", _ ("cannot install signal handlers"));
                fuse_unmount (fuse);
                fuse_destroy (fuse);
                status = EXIT_FAILURE;
                goto out;
        }

        if (define_pool != NULL) {
                setup_thread = g_thread_new ("define-pool", set_up_pool, &setup);
        } else {
                g_print (g_dngettext (GETTEXT_PACKAGE, "Exposing %u image of %s on %s\n",
                                      "Exposing %u images of %s on %s\n", setup.n_images),
                         setup.n_images, dir, mountpoint);
                fflush (stdout);
        }

        block_stop_signals (FALSE);
        loop_result = fuse_loop_mt (fuse, 0);
        block_stop_signals (TRUE);
        if (loop_result < 0) {
                tool_print_error_printf ("%s: %s", display, g_strerror (-loop_result));
                status = EXIT_FAILURE;
        }

        fuse_remove_signal_handlers (fuse_get_session (fuse));
        /* Unmount first: libvirt must not find a mount that nobody serves. */
        fuse_unmount (fuse);
        if (setup_thread != NULL)
                g_thread_join (setup_thread);
        if (setup.error != NULL) {
                tool_print_error_printf ("%s", setup.error->message);
                g_clear_error (&setup.error);
                status = EXIT_FAILURE;
        }
        tear_down_pool (&setup);
        fuse_destroy (fuse);
out:
        fuse_opt_free_args (&fuse_arguments);
        if (setup.conn != NULL)
                virConnectClose (setup.conn);
        g_hash_table_unref (exposer.by_name);
        g_hash_table_unref (exposer.rejected);
        g_hash_table_unref (exposer.reported);
        g_hash_table_unref (exposer.opened);
        g_hash_table_unref (exposer.written);
        g_mutex_clear (&exposer.lock);
        /* The stop signals stay blocked: one still pending would now kill
         * the process instead of ending the loop. */
        return status;
}
