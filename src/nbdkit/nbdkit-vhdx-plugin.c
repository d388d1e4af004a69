/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbdkit-vhdx-plugin: serves the virtual disk of a VHDX image, read-only.
 *
 *   nbdkit vhdx [file=]DISK.vhdx [parent=PARENT.vhdx]
 *
 * The image is opened once, before nbdkit starts serving, and shared by every
 * connection: reads and maps of an opened VhdxFile are thread-safe, so the
 * plugin runs in the parallel thread model and allows multiple connections.
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

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* The NBD protocol's largest preferred block size. */
#define NBD_MAX_PREFERRED_BLOCK_SIZE (32 * 1024 * 1024)

static char *image_path;       /* absolute: nbdkit may change directory */
static char *parent_path;      /* absolute, or NULL: follow the parent locator */
static GPtrArray *parent_dirs; /* absolute directories to look for parents in, NULL-terminated */
static gboolean ignore_parent_mismatch;
static VhdxFile *image;

/* The errno an NBD client receives for a failed engine call: a request
 * outside the disk is the client's mistake, anything else (a damaged BAT
 * entry, a block past the end of the file, a failed pread) is an I/O error. */
static int
errno_from_error (const GError *error)
{
        if (g_error_matches (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE))
                return EINVAL;
        return EIO;
}

/* Log the engine's message and record the errno that the client receives. */
static void
report_error (const char *operation, uint32_t count, uint64_t offset, const GError *error)
{
        nbdkit_error ("%s: %s %" PRIu32 " bytes at offset %" PRIu64 ": %s", image_path, operation,
                      count, offset, error->message);
        nbdkit_set_error (errno_from_error (error));
}

static void
vhdx_plugin_load (void)
{
        bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
        bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
}

static void
vhdx_plugin_unload (void)
{
        g_clear_pointer (&image, vhdx_file_free);
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
        "[file=]DISK.vhdx     (required) The VHDX image to serve, read-only.\n"                    \
        "parent=PARENT.vhdx   The parent of a differencing image, instead of\n"                    \
        "                     the one its parent locator names.\n"                                 \
        "parent-dir=DIR       Also look for parents in DIR (repeatable).\n"                        \
        "ignore-parent-mismatch=true\n"                                                            \
        "                     Use a parent that is not the one the image was\n"                    \
        "                     made from (its DataWriteGuid differs), with a warning."

/*
 * Open the image before nbdkit forks and starts serving, so that a damaged
 * image stops nbdkit with the engine's message on the terminal.
 */
static int
vhdx_plugin_get_ready (void)
{
        g_autoptr (GError) error = NULL;
        VhdxOpenOptions options = {
                .path = image_path,
                .parent_path = parent_path,
                .parent_dirs =
                        parent_dirs != NULL ? (const char *const *) parent_dirs->pdata : NULL,
        };
        VhdxOpenFlags flags = ignore_parent_mismatch ? VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH
                                                     : VHDX_OPEN_FLAGS_NONE;
        const VhdxInfo *info;
        GPtrArray *problems;
        VhdxIo *io;

        io = vhdx_io_open_path (image_path, FALSE, &error);
        if (io == NULL) {
                nbdkit_error ("%s: %s", image_path, error->message);
                return -1;
        }
        image = vhdx_file_open_full (io, flags, &options, &error);
        if (image == NULL) {
                nbdkit_error ("%s: %s", image_path, error->message);
                return -1;
        }

        for (VhdxFile *member = image; member != NULL; member = vhdx_file_get_parent (member)) {
                if (vhdx_file_get_parent_warning (member) != NULL)
                        nbdkit_error ("%s: warning: %s", image_path,
                                      vhdx_file_get_parent_warning (member));
        }
        problems = vhdx_file_get_open_problems (image);
        for (guint i = 0; i < problems->len; i++) {
                const VhdxProblem *problem = g_ptr_array_index (problems, i);

                nbdkit_debug ("%s: %s: %s (file offset %" G_GUINT64_FORMAT "): %s", image_path,
                              vhdx_severity_to_string (problem->severity), problem->structure,
                              problem->offset, problem->message);
        }
        info = vhdx_file_get_info (image);
        nbdkit_debug ("%s: %s disk, %" G_GUINT64_FORMAT " bytes, %" G_GUINT32_FORMAT
                      "-byte blocks, %" G_GUINT32_FORMAT "-byte sectors, log %s",
                      image_path, vhdx_disk_type_to_string (info->disk_type), info->virtual_size,
                      info->block_size, info->logical_sector_size,
                      vhdx_log_state_to_string (info->log_state));
        return 0;
}

static void *
vhdx_plugin_open (int readonly)
{
        /* Every connection shares the one image opened by get_ready. */
        return NBDKIT_HANDLE_NOT_NEEDED;
}

static int64_t
vhdx_plugin_get_size (void *handle)
{
        return (int64_t) vhdx_file_get_info (image)->virtual_size;
}

static int
vhdx_plugin_block_size (void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
        const VhdxInfo *info = vhdx_file_get_info (image);

        *minimum = info->logical_sector_size;
        *preferred = MIN (info->block_size, NBD_MAX_PREFERRED_BLOCK_SIZE);
        *maximum = 0xffffffff;
        return 0;
}

static int
vhdx_plugin_can_write (void *handle)
{
        return 0;
}

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

static int
vhdx_plugin_pread (void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
        g_autoptr (GError) error = NULL;

        if (!vhdx_file_read (image, offset, buf, count, &error)) {
                report_error ("reading", count, offset, error);
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
        const VhdxInfo *info = vhdx_file_get_info (image);
        gboolean req_one = (flags & NBDKIT_FLAG_REQ_ONE) != 0;
        guint64 length = count;

        /* One block is enough to describe the extent at @offset. */
        if (req_one)
                length = MIN (length, info->block_size - offset % info->block_size);

        map = vhdx_file_map (image, offset, length, &error);
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
        .description = "Serves the virtual disk of a Hyper-V VHDX image, read-only.",
        .load = vhdx_plugin_load,
        .unload = vhdx_plugin_unload,
        .dump_plugin = vhdx_plugin_dump_plugin,
        .config = vhdx_plugin_config,
        .config_complete = vhdx_plugin_config_complete,
        .config_help = vhdx_plugin_config_help,
        .magic_config_key = "file",
        .get_ready = vhdx_plugin_get_ready,
        .open = vhdx_plugin_open,
        .get_size = vhdx_plugin_get_size,
        .block_size = vhdx_plugin_block_size,
        .can_write = vhdx_plugin_can_write,
        .can_multi_conn = vhdx_plugin_can_multi_conn,
        .can_extents = vhdx_plugin_can_extents,
        .pread = vhdx_plugin_pread,
        .extents = vhdx_plugin_extents,
};

NBDKIT_REGISTER_PLUGIN (plugin)
