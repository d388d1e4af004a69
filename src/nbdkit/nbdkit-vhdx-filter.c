/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbdkit-vhdx-filter: serves the virtual disk of a VHDX image that the
 * plugin below it serves as bytes (a file, a URL, a file over SSH, a
 * decompressed xz file, another NBD server).
 *
 *   nbdkit [-r] --filter=vhdx file DISK.vhdx [parent=PARENT.vhdx]
 *   nbdkit -r --filter=vhdx curl https://example.com/DISK.vhdx
 *
 * Like the plugin, the filter opens the image once for all connections:
 * the first connection opens a context into the plugin below that every
 * connection shares (nbdkit_next_context_open, shared), and the image on
 * it, read-only when nbdkit runs read-only or the plugin below cannot
 * write or flush.  The connections' requests are answered by the code that
 * the plugin uses too (nbdkit-vhdx-common.c), on that image.  A writable
 * image is closed cleanly (its log applied, LogGuid cleared) and the
 * shared context closed when the last connection ends; a read-only one
 * stays open for the next connections, until nbdkit cleans up.  The file
 * below cannot grow: a write that needs new space in it fails (ENOSPC).
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <gio/gio.h>
#include <glib/gi18n-lib.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#include "nbdkit-vhdx-common.h"
#include "nbdkit-vhdx-next-io.h"
#include "vhdx-format.h"

/* The image in messages: the filter does not know what the plugin below
 * serves. */
#define IMAGE_NAME "vhdx"

static VhdxNbdkitOptions options;
/* The plugin below is not in the parallel thread model: calls into the
 * context that the connections share are made one at a time. */
static gboolean serialize_source;

/*
 * The shared context into the plugin below and the image on it, guarded by
 * image_lock, which requests do not take.  They are opened by the first
 * connection and replaced only while no connection uses them.
 */
static GMutex image_lock;
static nbdkit_next *source;
static gboolean source_read_only; /* opened read-only (nbdkit -r, or a filter above) */
static VhdxIo *source_io;         /* owned by image */
static VhdxFile *image;
static gboolean image_writable;
static guint image_users;

static void
vhdx_filter_load (void)
{
        bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
        bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
}

static void
vhdx_filter_unload (void)
{
        vhdx_nbdkit_options_clear (&options);
        nbdkit_debug ("vhdx filter unloaded");
}

static int
vhdx_filter_config (nbdkit_next_config *next,
                    nbdkit_backend *nxdata,
                    const char *key,
                    const char *value)
{
        int taken;

        /* The image below is not a file of the filter's to lock or share:
         * force-share is not its parameter. */
        if (g_strcmp0 (key, "force-share") == 0)
                return next (nxdata, key, value);
        taken = vhdx_nbdkit_options_config (&options, key, value);
        if (taken <= 0)
                return taken;
        return next (nxdata, key, value);
}

#define vhdx_filter_config_help VHDX_NBDKIT_PARENT_OPTIONS_HELP

static int
vhdx_filter_get_ready (int thread_model)
{
        serialize_source = thread_model != NBDKIT_THREAD_MODEL_PARALLEL;
        return 0;
}

/* Close the image (cleanly when it was written) and the shared context;
 * called with image_lock held. */
static void
stop_serving (void)
{
        g_autoptr (GError) error = NULL;

        if (image != NULL) {
                if (image_writable && !vhdx_file_close (image, &error))
                        nbdkit_error ("%s: closing the image: %s", IMAGE_NAME, error->message);
                else if (image_writable)
                        nbdkit_debug ("%s: closed cleanly", IMAGE_NAME);
                nbdkit_debug ("%s: %" G_GUINT64_FORMAT " reads of the plugin below", IMAGE_NAME,
                              vhdx_next_io_get_reads (source_io));
                g_clear_pointer (&image, vhdx_file_free);
        }
        source_io = NULL;
        image_writable = FALSE;
        if (source != NULL) {
                source->finalize (source);
                nbdkit_next_context_close (source);
                source = NULL;
        }
}

/*
 * Whether the image on the plugin below may be written: not when nbdkit
 * serves read-only, nor when the plugin cannot write, nor when it cannot
 * flush (the journal's order on the disk rests on flushes).  -1 with
 * nbdkit_error called when the plugin does not answer.
 */
static int
source_is_writable (void)
{
        int can_write, can_flush;

        if (source_read_only)
                return 0;
        can_write = source->can_write (source);
        if (can_write <= 0)
                return can_write;
        can_flush = source->can_flush (source);
        if (can_flush < 0)
                return -1;
        if (can_flush == 0) {
                nbdkit_error ("%s: warning: the plugin below the filter can write but not "
                              "flush: serving the image read-only, a pending log replayed in "
                              "memory",
                              IMAGE_NAME);
                return 0;
        }
        return 1;
}

/* The ranges of the open image's metadata, which reads ahead. */
static void
set_metadata_ranges (void)
{
        const VhdxInfo *info = vhdx_file_get_info (image);
        const guint64 ranges[] = {
                0,
                VHDX_MiB,
                info->log_offset,
                info->log_offset + info->log_length,
                info->metadata_offset,
                info->metadata_offset + info->metadata_length,
                info->bat_offset,
                info->bat_offset + info->bat_length,
        };

        vhdx_next_io_set_metadata_ranges (source_io, ranges, G_N_ELEMENTS (ranges) / 2);
}

/*
 * Open the shared context into the plugin below (read-only when
 * @read_only) and the image on it; called with image_lock held, with
 * nbdkit_error called on failure.
 */
static gboolean
start_serving (nbdkit_backend *backend, gboolean read_only, const char *exportname)
{
        g_autoptr (GError) error = NULL;
        int writable;

        g_assert (source == NULL && image == NULL);
        source = nbdkit_next_context_open (backend, read_only, exportname, 1);
        if (source == NULL)
                return FALSE;
        if (source->prepare (source) < 0) {
                nbdkit_next_context_close (source);
                source = NULL;
                return FALSE;
        }
        source_read_only = read_only;
        writable = source_is_writable ();
        if (writable < 0) {
                stop_serving ();
                return FALSE;
        }
        source_io = vhdx_next_io_new (source, writable, serialize_source);
        image = vhdx_nbdkit_open_image (&options, source_io, NULL, writable, &error);
        if (image == NULL) {
                source_io = NULL; /* freed by the failed open */
                nbdkit_error ("%s: %s", IMAGE_NAME, error->message);
                stop_serving ();
                return FALSE;
        }
        image_writable = writable;
        set_metadata_ranges ();
        vhdx_nbdkit_describe_image (image, IMAGE_NAME, &options);
        nbdkit_debug ("%s: opened with %" G_GUINT64_FORMAT " reads of the plugin below", IMAGE_NAME,
                      vhdx_next_io_get_reads (source_io));
        return TRUE;
}

/* The connection does not open its own context into the plugin below:
 * every callback that it reaches is the filter's, and answers from the
 * shared image. */
static void *
vhdx_filter_open (nbdkit_next_open *next,
                  nbdkit_context *context,
                  int readonly,
                  const char *exportname,
                  int is_tls)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&image_lock);
        VhdxNbdkitConnection *h;

        /* A server first opened read-only (by a filter above) opens the
         * plugin below again for a connection that may write, once no
         * connection uses it. */
        if (image != NULL && image_users == 0 && !readonly && source_read_only)
                stop_serving ();
        if (image == NULL &&
            !start_serving (nbdkit_context_get_backend (context), readonly, exportname))
                return NULL;
        h = g_new0 (VhdxNbdkitConnection, 1);
        h->file = image;
        h->name = IMAGE_NAME;
        h->writable = !readonly && image_writable;
        image_users++;
        return h;
}

static void
vhdx_filter_close (void *handle)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&image_lock);
        VhdxNbdkitConnection *h = handle;

        g_assert (image_users > 0 && h->file == image);
        g_free (h);
        if (--image_users == 0 && image_writable)
                stop_serving ();
}

static void
vhdx_filter_cleanup (nbdkit_backend *backend)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&image_lock);

        stop_serving ();
}

/*
 * The callbacks of a connection, on the shared image.  @next is NULL (the
 * connection has no context of its own into the plugin below); the
 * plugin's answers are wrapped for the filter's signatures.
 */

static int64_t
vhdx_filter_get_size (nbdkit_next *next, void *handle)
{
        return vhdx_nbdkit_get_size (handle);
}

static const char *
vhdx_filter_export_description (nbdkit_next *next, void *handle)
{
        return NULL;
}

static int
vhdx_filter_block_size (nbdkit_next *next,
                        void *handle,
                        uint32_t *minimum,
                        uint32_t *preferred,
                        uint32_t *maximum)
{
        return vhdx_nbdkit_block_size (handle, minimum, preferred, maximum);
}

/* Also can_trim and can_fast_zero, as in the plugin. */
static int
vhdx_filter_can_write (nbdkit_next *next, void *handle)
{
        return vhdx_nbdkit_can_write (handle);
}

/* A filter answers how it zeroes: the engine does, natively. */
static int
vhdx_filter_can_zero (nbdkit_next *next, void *handle)
{
        return vhdx_nbdkit_can_write (handle) ? NBDKIT_ZERO_NATIVE : NBDKIT_ZERO_NONE;
}

static int
vhdx_filter_can_flush (nbdkit_next *next, void *handle)
{
        return vhdx_nbdkit_can_flush (handle);
}

static int
vhdx_filter_is_rotational (nbdkit_next *next, void *handle)
{
        return 0;
}

static int
vhdx_filter_can_extents (nbdkit_next *next, void *handle)
{
        return vhdx_nbdkit_can_extents (handle);
}

static int
vhdx_filter_can_fua (nbdkit_next *next, void *handle)
{
        return vhdx_nbdkit_can_fua (handle);
}

static int
vhdx_filter_can_multi_conn (nbdkit_next *next, void *handle)
{
        return vhdx_nbdkit_can_multi_conn (handle);
}

static int
vhdx_filter_can_cache (nbdkit_next *next, void *handle)
{
        return NBDKIT_CACHE_NONE;
}

static int
vhdx_filter_pread (nbdkit_next *next,
                   void *handle,
                   void *buf,
                   uint32_t count,
                   uint64_t offset,
                   uint32_t flags,
                   int *err)
{
        if (vhdx_nbdkit_pread (handle, buf, count, offset, flags) == 0)
                return 0;
        *err = vhdx_nbdkit_take_errno ();
        return -1;
}

static int
vhdx_filter_pwrite (nbdkit_next *next,
                    void *handle,
                    const void *buf,
                    uint32_t count,
                    uint64_t offset,
                    uint32_t flags,
                    int *err)
{
        if (vhdx_nbdkit_pwrite (handle, buf, count, offset, flags) == 0)
                return 0;
        *err = vhdx_nbdkit_take_errno ();
        return -1;
}

static int
vhdx_filter_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
        if (vhdx_nbdkit_flush (handle, flags) == 0)
                return 0;
        *err = vhdx_nbdkit_take_errno ();
        return -1;
}

static int
vhdx_filter_trim (nbdkit_next *next,
                  void *handle,
                  uint32_t count,
                  uint64_t offset,
                  uint32_t flags,
                  int *err)
{
        if (vhdx_nbdkit_trim (handle, count, offset, flags) == 0)
                return 0;
        *err = vhdx_nbdkit_take_errno ();
        return -1;
}

static int
vhdx_filter_zero (nbdkit_next *next,
                  void *handle,
                  uint32_t count,
                  uint64_t offset,
                  uint32_t flags,
                  int *err)
{
        if (vhdx_nbdkit_zero (handle, count, offset, flags) == 0)
                return 0;
        *err = vhdx_nbdkit_take_errno ();
        return -1;
}

static int
vhdx_filter_extents (nbdkit_next *next,
                     void *handle,
                     uint32_t count,
                     uint64_t offset,
                     uint32_t flags,
                     struct nbdkit_extents *extents,
                     int *err)
{
        if (vhdx_nbdkit_extents (handle, count, offset, flags, extents) == 0)
                return 0;
        *err = vhdx_nbdkit_take_errno ();
        return -1;
}

static struct nbdkit_filter filter = {
        .name = "vhdx",
        .longname = "nbdkit VHDX filter",
        .description = "Serves the virtual disk of a Hyper-V VHDX image that the plugin serves.",
        .load = vhdx_filter_load,
        .unload = vhdx_filter_unload,
        .config = vhdx_filter_config,
        .config_help = vhdx_filter_config_help,
        .get_ready = vhdx_filter_get_ready,
        .cleanup = vhdx_filter_cleanup,
        .open = vhdx_filter_open,
        .close = vhdx_filter_close,
        .get_size = vhdx_filter_get_size,
        .export_description = vhdx_filter_export_description,
        .block_size = vhdx_filter_block_size,
        .can_write = vhdx_filter_can_write,
        .can_flush = vhdx_filter_can_flush,
        .is_rotational = vhdx_filter_is_rotational,
        .can_trim = vhdx_filter_can_write,
        .can_zero = vhdx_filter_can_zero,
        .can_fast_zero = vhdx_filter_can_write,
        .can_extents = vhdx_filter_can_extents,
        .can_fua = vhdx_filter_can_fua,
        .can_multi_conn = vhdx_filter_can_multi_conn,
        .can_cache = vhdx_filter_can_cache,
        .pread = vhdx_filter_pread,
        .pwrite = vhdx_filter_pwrite,
        .flush = vhdx_filter_flush,
        .trim = vhdx_filter_trim,
        .zero = vhdx_filter_zero,
        .extents = vhdx_filter_extents,
};

NBDKIT_REGISTER_FILTER (filter)
