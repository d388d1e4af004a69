/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the nbdkit plugin and the nbdkit filter share (see nbdkit-vhdx-common.h). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>

#include <gio/gio.h>
#include <glib/gi18n-lib.h>

/* Only what nbdkit gives plugins and filters alike is used here. */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "nbdkit-vhdx-common.h"
#include "nbdkit-vhdx-nbd-io.h"
#include "vhdx-map.h"
#include "vhdx-writer.h"

/* The largest preferred block size advertised.  Clients such as nbdcopy
 * make every request of the preferred size, and requests as large as a
 * 32 MiB block cost a new buffer of that size on both sides each time; at
 * 1 MiB, a block of data is still one pread of the file per request. */
#define PREFERRED_BLOCK_SIZE_MAX (1024 * 1024)

/* Set *@flag from the boolean @value: 0, or -1 with nbdkit_error called. */
static int
config_bool (gboolean *flag, const char *value)
{
        int parsed = nbdkit_parse_bool (value);

        if (parsed < 0)
                return -1;
        *flag = parsed;
        return 0;
}

int
vhdx_nbdkit_options_config (VhdxNbdkitOptions *options, const char *key, const char *value)
{
        if (g_strcmp0 (key, "parent-dir") == 0) {
                char *dir = nbdkit_realpath (value);

                if (dir == NULL)
                        return -1;
                if (options->parent_dirs == NULL) {
                        options->parent_dirs = g_ptr_array_new_with_free_func (free);
                        g_ptr_array_add (options->parent_dirs, NULL);
                }
                /* Kept NULL-terminated: the new one goes before the NULL. */
                g_ptr_array_insert (options->parent_dirs, (gint) options->parent_dirs->len - 1,
                                    dir);
                return 0;
        }
        if (g_strcmp0 (key, "ignore-parent-mismatch") == 0)
                return config_bool (&options->ignore_parent_mismatch, value);
        if (g_strcmp0 (key, "force-share") == 0)
                return config_bool (&options->force_share, value);
        if (g_strcmp0 (key, "parent") == 0 && vhdx_nbd_io_is_uri (value)) {
                /* Another NBD server's export: taken as it is. */
                if (options->parent_path != NULL) {
                        nbdkit_error ("'%s' given more than once", key);
                        return -1;
                }
                options->parent_path = strdup (value);
                options->parent_is_uri = TRUE;
                if (options->parent_path == NULL) {
                        nbdkit_error ("strdup: %m");
                        return -1;
                }
                return 0;
        }
        if (g_strcmp0 (key, "parent") == 0)
                return vhdx_nbdkit_config_path (&options->parent_path, key, value);
        return 1;
}

int
vhdx_nbdkit_config_path (char **slot, const char *key, const char *value)
{
        if (*slot != NULL) {
                nbdkit_error ("'%s' given more than once", key);
                return -1;
        }
        /* nbdkit_realpath() reports its own error. */
        *slot = nbdkit_realpath (value);
        return *slot != NULL ? 0 : -1;
}

void
vhdx_nbdkit_options_clear (VhdxNbdkitOptions *options)
{
        g_clear_pointer (&options->parent_path, free);
        options->parent_is_uri = FALSE;
        g_clear_pointer (&options->parent_dirs, g_ptr_array_unref);
}

/*
 * How the members of a chain are opened: the parent given as an NBD URI
 * through libnbd, read-only; every other candidate as a local file.  The
 * parent's own parents, if any, are looked for by the names its locator
 * gives in the directories of parent-dir= alone.
 */
static VhdxIo *
open_member (const char *path, gboolean writable, gpointer user_data, GError **error)
{
        const VhdxNbdkitOptions *options = user_data;

        if (options->parent_is_uri && g_strcmp0 (path, options->parent_path) == 0) {
                if (writable) {
                        g_set_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY,
                                     _ ("A parent on an NBD server can only be read"));
                        return NULL;
                }
                return vhdx_nbd_io_open (path, error);
        }
        return vhdx_io_open_path (path, writable, error);
}

VhdxFile *
vhdx_nbdkit_open_image (const VhdxNbdkitOptions *options,
                        VhdxIo *io,
                        const char *path,
                        gboolean writable,
                        GError **error)
{
        VhdxOpenOptions open_options = {
                .path = path,
                .parent_path = options->parent_path,
                .parent_dirs = options->parent_dirs != NULL
                                       ? (const char *const *) options->parent_dirs->pdata
                                       : NULL,
                .open_func = open_member,
                .open_data = (gpointer) options,
        };
        VhdxOpenFlags flags = VHDX_OPEN_FLAGS_NONE;

        if (options->ignore_parent_mismatch)
                flags |= VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH;
        if (options->force_share)
                flags |= VHDX_OPEN_FLAGS_FORCE_SHARE;
        if (writable)
                flags |= VHDX_OPEN_FLAGS_READ_WRITE;
        return vhdx_file_open_full (io, flags, &open_options, error);
}

/* Warnings about parents are logged as errors (so that they are seen
 * without -v), the problems and the image's shape as debug messages. */
void
vhdx_nbdkit_describe_image (VhdxFile *file, const char *name, const VhdxNbdkitOptions *options)
{
        const VhdxInfo *info = vhdx_file_get_info (file);
        GPtrArray *problems;
        const char *path = name;

        for (VhdxFile *member = file; member != NULL; member = vhdx_file_get_parent (member)) {
                if (vhdx_file_get_parent_warning (member) != NULL)
                        nbdkit_error ("%s: warning: %s", name,
                                      vhdx_file_get_parent_warning (member));
                /* Seen without -v: clients may read data that changes
                 * under them, and the parts of the allocation table that
                 * have been read are kept, so blocks that the writer
                 * allocates or frees later may read as before. */
                if (vhdx_file_get_info (member)->written_elsewhere)
                        nbdkit_error ("%s: warning: another process is writing %s: served with "
                                      "force-share as it is at each moment, what clients read "
                                      "may change or be inconsistent",
                                      name, path);
                else if (options->force_share)
                        nbdkit_debug ("%s: opened with force-share; no other process writes %s",
                                      name, path);
                path = vhdx_file_get_parent_path (member);
        }
        problems = vhdx_file_get_open_problems (file);
        for (guint i = 0; i < problems->len; i++) {
                const VhdxProblem *problem = g_ptr_array_index (problems, i);

                nbdkit_debug ("%s: %s: %s (file offset %" G_GUINT64_FORMAT "): %s", name,
                              vhdx_severity_to_string (problem->severity), problem->structure,
                              problem->offset, problem->message);
        }
        nbdkit_debug ("%s: %s disk, %" G_GUINT64_FORMAT " bytes, %" G_GUINT32_FORMAT
                      "-byte blocks, %" G_GUINT32_FORMAT "-byte sectors, log %s, %s",
                      name, vhdx_disk_type_to_string (info->disk_type), info->virtual_size,
                      info->block_size, info->logical_sector_size,
                      vhdx_log_state_to_string (info->log_state),
                      vhdx_file_is_writable (file) ? "read-write" : "read-only");
}

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

/* The errno of the last failed request of this thread, for the filter,
 * whose callbacks return it rather than calling nbdkit_set_error(). */
static __thread int last_errno;

/* Record @err as the errno that the client receives. */
static void
set_error (int err)
{
        last_errno = err;
        nbdkit_set_error (err);
}

int
vhdx_nbdkit_take_errno (void)
{
        int err = last_errno != 0 ? last_errno : EIO;

        last_errno = 0;
        return err;
}

/* Log the engine's message and record the errno that the client receives. */
static void
report_error (const VhdxNbdkitConnection *c,
              const char *operation,
              uint64_t count,
              uint64_t offset,
              const GError *error)
{
        nbdkit_error ("%s: %s %" PRIu64 " bytes at offset %" PRIu64 ": %s", c->name, operation,
                      count, offset, error->message);
        set_error (errno_from_error (error));
}

int64_t
vhdx_nbdkit_get_size (void *handle)
{
        VhdxNbdkitConnection *c = handle;

        return (int64_t) vhdx_file_get_info (c->file)->virtual_size;
}

int
vhdx_nbdkit_block_size (void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
        VhdxNbdkitConnection *c = handle;
        const VhdxInfo *info = vhdx_file_get_info (c->file);

        *minimum = info->logical_sector_size;
        *preferred = MIN (info->block_size, PREFERRED_BLOCK_SIZE_MAX);
        *maximum = 0xffffffff;
        return 0;
}

/* Also the answer of can_trim, can_zero and can_fast_zero: a connection
 * that may write may discard and zero too, and fast zero requests are
 * answered at once, done when they are cheap or refused (see
 * zero_is_fast). */
int
vhdx_nbdkit_can_write (void *handle)
{
        VhdxNbdkitConnection *c = handle;

        return c->writable;
}

/* A flush of a read-only connection has nothing to do, unless it shares a
 * writable image with others, whose completed writes it makes durable. */
int
vhdx_nbdkit_can_flush (void *handle)
{
        return 1;
}

/* The engine flushes the image before a write with FUA returns. */
int
vhdx_nbdkit_can_fua (void *handle)
{
        VhdxNbdkitConnection *c = handle;

        return c->writable ? NBDKIT_FUA_NATIVE : NBDKIT_FUA_NONE;
}

/* Every connection uses the same VhdxFile, so each sees what the others
 * wrote, and a flush makes every completed write durable. */
int
vhdx_nbdkit_can_multi_conn (void *handle)
{
        return 1;
}

int
vhdx_nbdkit_can_extents (void *handle)
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

int
vhdx_nbdkit_pread (void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
        g_autoptr (GError) error = NULL;
        VhdxNbdkitConnection *c = handle;

        if (!vhdx_file_read (c->file, offset, buf, count, &error)) {
                report_error (c, "reading", count, offset, error);
                return -1;
        }
        return 0;
}

int
vhdx_nbdkit_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
        g_autoptr (GError) error = NULL;
        VhdxNbdkitConnection *c = handle;

        if (!vhdx_file_write (c->file, offset, buf, count, write_flags (flags), &error)) {
                report_error (c, "writing", count, offset, error);
                return -1;
        }
        return 0;
}

int
vhdx_nbdkit_flush (void *handle, uint32_t flags)
{
        g_autoptr (GError) error = NULL;
        VhdxNbdkitConnection *c = handle;

        if (!vhdx_file_flush (c->file, &error)) {
                nbdkit_error ("%s: flushing: %s", c->name, error->message);
                set_error (errno_from_error (error));
                return -1;
        }
        return 0;
}

/* Freed blocks are those the discard covers entirely; the rest of it is
 * ignored, and a fixed image keeps every block. */
int
vhdx_nbdkit_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
        g_autoptr (GError) error = NULL;
        VhdxNbdkitConnection *c = handle;

        if (!vhdx_file_discard (c->file, offset, count, write_flags (flags), &error)) {
                report_error (c, "discarding", count, offset, error);
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

int
vhdx_nbdkit_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
        g_autoptr (GError) error = NULL;
        VhdxNbdkitConnection *c = handle;

        if ((flags & NBDKIT_FLAG_FAST_ZERO) &&
            !zero_is_fast (c->file, count, offset, (flags & NBDKIT_FLAG_MAY_TRIM) != 0)) {
                nbdkit_debug ("%s: zeroing %" PRIu32 " bytes at offset %" PRIu64
                              " would not be fast",
                              c->name, count, offset);
                set_error (ENOTSUP);
                return -1;
        }
        if (!vhdx_file_write_zeroes (c->file, offset, count, write_flags (flags), &error)) {
                report_error (c, "zeroing", count, offset, error);
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

int
vhdx_nbdkit_extents (void *handle,
                     uint32_t count,
                     uint64_t offset,
                     uint32_t flags,
                     struct nbdkit_extents *extents)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GArray) map = NULL;
        VhdxNbdkitConnection *c = handle;
        const VhdxInfo *info = vhdx_file_get_info (c->file);
        gboolean req_one = (flags & NBDKIT_FLAG_REQ_ONE) != 0;
        guint64 length = count;

        /* One block is enough to describe the extent at @offset. */
        if (req_one)
                length = MIN (length, info->block_size - offset % info->block_size);

        map = vhdx_file_map (c->file, offset, length, &error);
        if (map == NULL) {
                report_error (c, "mapping", count, offset, error);
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
