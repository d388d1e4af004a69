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
 * durable (multi-conn).  The image is opened read-only before nbdkit starts
 * serving, so that a damaged image stops nbdkit at once; the first
 * connection that may write opens it again for writing (replaying a pending
 * log onto the file), and the last one to close it closes it cleanly.
 * With force-share=true (and nbdkit -r) the image is opened without
 * locking other processes out, to be served while one of them writes it.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <gio/gio.h>
#include <glib/gi18n-lib.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

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
 * The image that every connection uses, guarded by image_lock, which
 * requests do not take.  It is replaced only while no connection uses it:
 * read-only from get_ready on, opened for writing by the first connection
 * that may write, and closed by the last connection that uses it when it
 * was writable, which opens it read-only again.  Its locks keep other
 * processes from writing the file all along, and from opening it at all
 * while it is writable (none with force-share).
 */
static GMutex image_lock;
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

static void
vhdx_plugin_unload (void)
{
        g_mutex_lock (&image_lock);
        release_image ();
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
 * Open the image, read-only or for writing (its parents stay read-only).
 * When @writable and the file cannot be opened for writing (its
 * permissions, a read-only file system), sets *@refused and returns NULL
 * without an error.
 */
static VhdxFile *
open_image (gboolean writable, gboolean *refused, GError **error)
{
        VhdxOpenOptions options = {
                .path = image_path,
                .parent_path = parent_path,
                .parent_dirs =
                        parent_dirs != NULL ? (const char *const *) parent_dirs->pdata : NULL,
        };
        VhdxOpenFlags flags = VHDX_OPEN_FLAGS_NONE;
        g_autoptr (GError) local_error = NULL;
        VhdxFile *file;
        VhdxIo *io;

        if (refused != NULL)
                *refused = FALSE;
        io = vhdx_io_open_path (image_path, writable, &local_error);
        if (io == NULL) {
                if (writable && refused != NULL && is_write_refused (local_error)) {
                        nbdkit_debug ("%s: cannot be opened for writing (%s): serving it "
                                      "read-only, a pending log replayed in memory",
                                      image_path, local_error->message);
                        *refused = TRUE;
                        return NULL;
                }
                g_propagate_error (error, g_steal_pointer (&local_error));
                return NULL;
        }
        if (ignore_parent_mismatch)
                flags |= VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH;
        if (force_share)
                flags |= VHDX_OPEN_FLAGS_FORCE_SHARE;
        if (writable)
                flags |= VHDX_OPEN_FLAGS_READ_WRITE;
        file = vhdx_file_open_full (io, flags, &options, &local_error);
        if (file == NULL) {
                suggest_force_share (writable, &local_error);
                g_propagate_error (error, g_steal_pointer (&local_error));
                return NULL;
        }
        describe_image (file);
        return file;
}

/*
 * Open the image read-only before nbdkit forks and starts serving, so that
 * a damaged image stops nbdkit with the engine's message on the terminal.
 * Whether clients may write is known only when they connect (nbdkit -r).
 */
static int
vhdx_plugin_get_ready (void)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&image_lock);

        image = open_image (FALSE, NULL, &error);
        if (image == NULL) {
                nbdkit_error ("%s: %s", image_path, error->message);
                return -1;
        }
        image_writable = FALSE;
        return 0;
}

/*
 * Make the shared image writable for a connection that may write; called
 * with image_lock held.  *@writable tells whether it may be written; when
 * the file may not be written (its permissions, a read-only file system),
 * the image may be left closed, to be opened read-only.  Returns FALSE with
 * nbdkit_error called, the image closed, when it cannot be opened for
 * writing otherwise (another process uses it, it is damaged).
 */
static gboolean
make_writable (gboolean *writable)
{
        g_autoptr (GError) error = NULL;
        gboolean refused;
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
        /* The read-only image holds a reader's lock on the file, which keeps
         * writers out, this process's own too: it goes first.  When the
         * image cannot be opened for writing, the caller opens it
         * read-only again. */
        g_clear_pointer (&image, vhdx_file_free);
        file = open_image (TRUE, &refused, &error);
        if (file == NULL && refused)
                return TRUE;
        if (file == NULL) {
                nbdkit_error ("%s: opening for writing: %s", image_path, error->message);
                return FALSE;
        }
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

        /* Whether nbdkit runs with -r is known only here.  An image shared
         * with a writer elsewhere is never written: silently serving it
         * read-only would surprise a client that asked to write. */
        if (force_share && !readonly) {
                nbdkit_error ("%s: force-share=true serves the image read-only only: run "
                              "nbdkit with -r",
                              image_path);
                return NULL;
        }

        if (!readonly && !make_writable (&writable))
                return NULL;
        if (image == NULL) {
                /* It could not be opened for writing, or not again
                 * read-only when the last writable connection closed it. */
                g_autoptr (GError) error = NULL;

                image = open_image (FALSE, NULL, &error);
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
         * opened read-only again, so that other processes are kept from
         * writing it meanwhile as they are from get_ready on. */
        if (--image_users == 0 && image_writable) {
                g_autoptr (GError) error = NULL;

                release_image ();
                image = open_image (FALSE, NULL, &error);
                if (image == NULL)
                        nbdkit_debug ("%s: opening read-only again: %s (the next connection "
                                      "tries again)",
                                      image_path, error->message);
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
