/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx-pool import: copies the virtual disk of a VHDX image into a new
 * volume of a storage pool.  The disk goes up as a sparse stream, so only
 * the ranges that hold data cross the connection; a qcow2 volume is made by
 * libvirt from the uploaded raw volume.  The new volume is then read back
 * through libvirt and compared with the image before the command succeeds.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib.h>
#include <glib/gi18n.h>

#include <vhdx.h>

#include "pool-extents.h"
#include "pool-util.h"

/* How much of the virtual disk is mapped at a time. */
/* How much is read at a time to check that a hole of the volume is zeros. */
#define ZERO_CHECK_CHUNK (1024 * 1024)

static volatile sig_atomic_t interrupted = 0;

static void
set_interrupted (int signum)
{
        interrupted = 1;
}

static void
install_interrupt_handlers (void)
{
        static const int signals[] = { SIGINT, SIGTERM, SIGHUP };
        struct sigaction action = { 0 };

        action.sa_handler = set_interrupted;
        action.sa_flags = SA_RESTART;
        sigemptyset (&action.sa_mask);
        for (gsize i = 0; i < G_N_ELEMENTS (signals); i++)
                sigaction (signals[i], &action, NULL);
}

static gboolean
check_interrupted (GError **error)
{
        if (!interrupted)
                return TRUE;
        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, _ ("interrupted"));
        return FALSE;
}

/* Upload: the virtual disk as a sparse stream */

typedef struct {
        PoolExtentCursor cursor;
        guint64 position;
        ToolProgress *progress;
        GError *error;
} Upload;

static int
upload_hole (virStreamPtr stream, int *in_data, long long *length, void *opaque)
{
        Upload *upload = opaque;
        const VhdxExtent *extent;

        if (upload->position >= upload->cursor.size) {
                /* The end of the disk. */
                *in_data = 0;
                *length = 0;
                return 0;
        }
        extent = pool_extent_cursor_find (&upload->cursor, upload->position, &upload->error);
        if (extent == NULL) {
                errno = EIO;
                return -1;
        }
        *in_data = vhdx_extent_get_kind (extent) == VHDX_EXTENT_KIND_DATA;
        *length = (long long) (vhdx_extent_get_offset (extent) + vhdx_extent_get_length (extent) -
                               upload->position);
        return 0;
}

static int
upload_skip (virStreamPtr stream, long long length, void *opaque)
{
        Upload *upload = opaque;

        upload->position += (guint64) length;
        tool_progress_update (upload->progress, upload->position);
        return 0;
}

static int
upload_read (virStreamPtr stream, char *data, size_t nbytes, void *opaque)
{
        Upload *upload = opaque;
        gsize count;

        if (upload->position >= upload->cursor.size || nbytes == 0)
                return 0;
        if (!check_interrupted (&upload->error)) {
                errno = EINTR;
                return -1;
        }
        count = (gsize) MIN ((guint64) nbytes, upload->cursor.size - upload->position);
        if (!vhdx_image_read (upload->cursor.image, upload->position, data, count, NULL,
                              &upload->error)) {
                errno = EIO;
                return -1;
        }
        upload->position += count;
        tool_progress_update (upload->progress, upload->position);
        return (int) count;
}

static gboolean
upload_image (virConnectPtr conn,
              virStorageVolPtr vol,
              VhdxImage *image,
              ToolProgress *progress,
              GError **error)
{
        g_autoptr (virStream) stream = virStreamNew (conn, 0);
        Upload upload = {
                .progress = progress,
        };
        gboolean ok = FALSE;

        pool_extent_cursor_init (&upload.cursor, image);

        if (stream == NULL || virStorageVolUpload (vol, stream, 0, upload.cursor.size,
                                                   VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM) < 0) {
                pool_set_libvirt_error (error, _ ("cannot upload to volume '%s'"),
                                        virStorageVolGetName (vol));
                goto out;
        }
        tool_progress_start (progress, progress->enabled, _ ("Uploading"), upload.cursor.size);
        if (virStreamSparseSendAll (stream, upload_read, upload_hole, upload_skip, &upload) < 0) {
                if (upload.error != NULL)
                        g_propagate_error (error, g_steal_pointer (&upload.error));
                else
                        pool_set_libvirt_error (error, _ ("cannot upload to volume '%s'"),
                                                virStorageVolGetName (vol));
                goto out;
        }
        if (virStreamFinish (stream) < 0) {
                pool_set_libvirt_error (error, _ ("cannot upload to volume '%s'"),
                                        virStorageVolGetName (vol));
                goto out;
        }
        tool_progress_finish (progress);
        ok = TRUE;
out:
        if (!ok)
                tool_progress_abandon (progress);
        g_clear_error (&upload.error);
        pool_extent_cursor_clear (&upload.cursor);
        return ok;
}

/* Check: the volume, downloaded as a sparse stream, against the image */

typedef struct {
        PoolExtentCursor cursor;
        guint64 position;
        guint8 *buffer;
        gsize buffer_size;
        ToolProgress *progress;
        const char *volume;
        GError *error;
} Compare;

static guint8 *
compare_buffer (Compare *compare, gsize size)
{
        if (compare->buffer_size < size) {
                g_free (compare->buffer);
                compare->buffer = g_malloc (size);
                compare->buffer_size = size;
        }
        return compare->buffer;
}

static void
set_difference_error (Compare *compare, guint64 offset)
{
        g_set_error (&compare->error, G_IO_ERROR, G_IO_ERROR_FAILED,
                     _ ("volume '%s' differs from the image at offset %" PRIu64), compare->volume,
                     offset);
}

static gboolean
compare_fits (Compare *compare, guint64 length)
{
        if (length <= compare->cursor.size && compare->position <= compare->cursor.size - length)
                return TRUE;
        g_set_error (&compare->error, G_IO_ERROR, G_IO_ERROR_FAILED,
                     _ ("volume '%s' is larger than the virtual disk"), compare->volume);
        return FALSE;
}

static int
compare_data (virStreamPtr stream, const char *data, size_t nbytes, void *opaque)
{
        Compare *compare = opaque;
        guint8 *expected;

        if (!check_interrupted (&compare->error) || !compare_fits (compare, nbytes)) {
                errno = EIO;
                return -1;
        }
        expected = compare_buffer (compare, nbytes);
        if (!vhdx_image_read (compare->cursor.image, compare->position, expected, nbytes, NULL,
                              &compare->error)) {
                errno = EIO;
                return -1;
        }
        if (memcmp (expected, data, nbytes) != 0) {
                gsize i = 0;

                while (expected[i] == (guint8) data[i])
                        i++;
                set_difference_error (compare, compare->position + i);
                errno = EIO;
                return -1;
        }
        compare->position += nbytes;
        tool_progress_update (compare->progress, compare->position);
        return (int) nbytes;
}

/* A hole in the volume: the image must read as zeros there too. */
static int
compare_hole (virStreamPtr stream, long long length, void *opaque)
{
        Compare *compare = opaque;
        guint64 end;

        if (length < 0 || !compare_fits (compare, (guint64) length)) {
                errno = EIO;
                return -1;
        }
        end = compare->position + (guint64) length;
        while (compare->position < end) {
                const VhdxExtent *extent =
                        pool_extent_cursor_find (&compare->cursor, compare->position,
                                                 &compare->error);
                guint64 extent_end;
                guint64 stop;

                if (extent == NULL) {
                        errno = EIO;
                        return -1;
                }
                extent_end = vhdx_extent_get_offset (extent) + vhdx_extent_get_length (extent);
                stop = MIN (extent_end, end);
                if (vhdx_extent_get_kind (extent) == VHDX_EXTENT_KIND_ZERO) {
                        compare->position = stop;
                        continue;
                }
                while (compare->position < stop) {
                        gsize count = (gsize) MIN (stop - compare->position, ZERO_CHECK_CHUNK);
                        guint8 *expected = compare_buffer (compare, count);

                        if (!check_interrupted (&compare->error) ||
                            !vhdx_image_read (compare->cursor.image, compare->position, expected,
                                              count, NULL, &compare->error)) {
                                errno = EIO;
                                return -1;
                        }
                        for (gsize i = 0; i < count; i++) {
                                if (expected[i] != 0) {
                                        set_difference_error (compare, compare->position + i);
                                        errno = EIO;
                                        return -1;
                                }
                        }
                        compare->position += count;
                }
        }
        tool_progress_update (compare->progress, compare->position);
        return 0;
}

static gboolean
compare_volume (virConnectPtr conn,
                virStorageVolPtr vol,
                const char *display_name,
                VhdxImage *image,
                ToolProgress *progress,
                GError **error)
{
        g_autoptr (virStream) stream = virStreamNew (conn, 0);
        Compare compare = {
                .progress = progress,
                .volume = display_name,
        };

        gboolean ok = FALSE;

        pool_extent_cursor_init (&compare.cursor, image);
        if (stream == NULL ||
            virStorageVolDownload (vol, stream, 0, 0, VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM) < 0) {
                pool_set_libvirt_error (error, _ ("cannot read volume '%s'"), display_name);
                goto out;
        }
        tool_progress_start (progress, progress->enabled, _ ("Checking"), compare.cursor.size);
        if (virStreamSparseRecvAll (stream, compare_data, compare_hole, &compare) < 0) {
                if (compare.error != NULL)
                        g_propagate_error (error, g_steal_pointer (&compare.error));
                else
                        pool_set_libvirt_error (error, _ ("cannot read volume '%s'"), display_name);
                virStreamAbort (stream);
                goto out;
        }
        if (virStreamFinish (stream) < 0) {
                pool_set_libvirt_error (error, _ ("cannot read volume '%s'"), display_name);
                goto out;
        }
        if (compare.position != compare.cursor.size) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                             _ ("volume '%s' is smaller than the virtual disk"), display_name);
                goto out;
        }
        tool_progress_finish (progress);
        ok = TRUE;
out:
        if (!ok)
                tool_progress_abandon (progress);
        g_clear_error (&compare.error);
        g_free (compare.buffer);
        pool_extent_cursor_clear (&compare.cursor);
        return ok;
}

/* Volumes */

static char *
volume_xml (const char *name, const char *format, guint64 capacity)
{
        g_autofree char *escaped = pool_xml_escape (name);

        return g_strdup_printf ("<volume>\n"
                                "  <name>%s</name>\n"
                                "  <capacity unit='bytes'>%" G_GUINT64_FORMAT "</capacity>\n"
                                "  <allocation unit='bytes'>0</allocation>\n"
                                "  <target>\n"
                                "    <format type='%s'/>\n"
                                "  </target>\n"
                                "</volume>\n",
                                escaped, capacity, format);
}

static gboolean
volume_exists (virStoragePoolPtr pool, const char *name)
{
        g_autoptr (virStorageVol) vol = virStorageVolLookupByName (pool, name);

        return vol != NULL;
}

static void
delete_volume (virStorageVolPtr vol)
{
        if (vol != NULL && virStorageVolDelete (vol, 0) < 0) {
                g_autoptr (GError) error = NULL;

                pool_set_libvirt_error (&error, _ ("cannot remove volume '%s'"),
                                        virStorageVolGetName (vol));
                tool_print_error_printf ("%s", error->message);
        }
}

/* A name for a temporary volume next to @name that the pool does not have. */
static char *
temporary_volume_name (virStoragePoolPtr pool, const char *name, const char *purpose)
{
        for (;;) {
                char *candidate =
                        g_strdup_printf ("%s.%s-%08x.raw", name, purpose, g_random_int ());

                if (!volume_exists (pool, candidate))
                        return candidate;
                g_free (candidate);
        }
}

static char *
default_volume_name (GFile *file, const char *format)
{
        g_autofree char *base = g_file_get_basename (file);
        g_autofree char *lower = g_ascii_strdown (base, -1);
        gsize length = strlen (base);

        if (g_str_has_suffix (lower, ".avhdx"))
                length -= strlen (".avhdx");
        else if (g_str_has_suffix (lower, ".vhdx"))
                length -= strlen (".vhdx");
        if (length == 0)
                length = strlen (base);
        return g_strdup_printf ("%.*s.%s", (int) length, base, format);
}

static virStorageVolPtr
create_volume (virStoragePoolPtr pool,
               const char *name,
               const char *format,
               guint64 capacity,
               virStorageVolPtr from,
               GError **error)
{
        g_autofree char *xml = volume_xml (name, format, capacity);
        virStorageVolPtr vol = from != NULL ? virStorageVolCreateXMLFrom (pool, xml, from, 0)
                                            : virStorageVolCreateXML (pool, xml, 0);

        if (vol == NULL)
                pool_set_libvirt_error (error, _ ("cannot create volume '%s'"), name);
        return vol;
}

/*
 * Makes volume @name of @format from @image; on failure, removes every
 * volume that it created.
 */
static virStorageVolPtr
import_image (virConnectPtr conn,
              virStoragePoolPtr pool,
              VhdxImage *image,
              const char *name,
              const char *format,
              ToolProgress *progress,
              GError **error)
{
        guint64 size = vhdx_image_get_virtual_size (image);
        gboolean raw = g_str_equal (format, "raw");
        g_autofree char *upload_name =
                raw ? g_strdup (name) : temporary_volume_name (pool, name, "upload");
        g_autofree char *check_name = NULL;
        g_autoptr (virStorageVol) uploaded = NULL;
        g_autoptr (virStorageVol) result = NULL;
        g_autoptr (virStorageVol) readable = NULL;

        uploaded = create_volume (pool, upload_name, "raw", size, NULL, error);
        if (uploaded == NULL)
                return NULL;
        if (!upload_image (conn, uploaded, image, progress, error) || !check_interrupted (error)) {
                delete_volume (uploaded);
                return NULL;
        }
        if (raw) {
                if (!compare_volume (conn, uploaded, name, image, progress, error)) {
                        delete_volume (uploaded);
                        return NULL;
                }
                return g_steal_pointer (&uploaded);
        }

        /* libvirt converts the raw volume (with qemu-img on the host). */
        if (progress->enabled)
                g_printerr ("%s\n", _ ("Converting to qcow2"));
        result = create_volume (pool, name, format, size, uploaded, error);
        delete_volume (uploaded);
        if (result == NULL)
                return NULL;
        if (!check_interrupted (error)) {
                delete_volume (result);
                return NULL;
        }

        /* What a guest reads from the qcow2 volume is what libvirt gives
         * when it converts the volume back to raw. */
        check_name = temporary_volume_name (pool, name, "check");
        readable = create_volume (pool, check_name, "raw", size, result, error);
        if (readable == NULL) {
                delete_volume (result);
                return NULL;
        }
        if (!compare_volume (conn, readable, name, image, progress, error)) {
                delete_volume (readable);
                delete_volume (result);
                return NULL;
        }
        delete_volume (readable);
        return g_steal_pointer (&result);
}

int
pool_cmd_import (int argc, char **argv)
{
        g_autofree char *uri = NULL;
        g_autofree char *pool_name = NULL;
        g_autofree char *name = NULL;
        g_autofree char *format = NULL;
        gboolean show_progress = FALSE;
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "connect", 'c', 0, G_OPTION_ARG_STRING, &uri,
                  N_ ("Connect to the hypervisor at URI, as virsh does"), N_ ("URI") },
                { "pool", 0, 0, G_OPTION_ARG_STRING, &pool_name,
                  N_ ("The storage pool to create the volume in"), N_ ("POOL") },
                { "name", 0, 0, G_OPTION_ARG_STRING, &name,
                  N_ ("Name of the new volume (default: the image's name, .raw or .qcow2)"),
                  N_ ("NAME") },
                { "format", 0, 0, G_OPTION_ARG_STRING, &format,
                  N_ ("Format of the new volume: raw (default) or qcow2"), N_ ("FORMAT") },
                { "progress", 'p', 0, G_OPTION_ARG_NONE, &show_progress,
                  N_ ("Show progress on a terminal"), NULL },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GFile) file = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (virConnect) conn = NULL;
        g_autoptr (virStoragePool) pool = NULL;
        g_autoptr (virStorageVol) vol = NULL;
        g_autofree char *display = NULL;
        g_autofree char *size_text = NULL;
        ToolProgress progress;

        context = tool_command_context_new (
                "import", _ ("--pool POOL IMAGE"),
                _ ("Copy the virtual disk of a VHDX image into a new volume."),
                _ ("Creates a volume in POOL of the image's virtual size and uploads the\n"
                   "virtual disk into it as a sparse stream: ranges that hold no data are\n"
                   "not sent.  For --format=qcow2, libvirt converts the uploaded raw volume,\n"
                   "which is then removed.  The new volume is read back and compared with the\n"
                   "image; if they differ, it is removed and the command fails.  This works\n"
                   "over remote connections too.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv))
                return EXIT_FAILURE;
        if (pool_name == NULL)
                return tool_usage_error ("%s", _ ("--pool is required"));
        if (args == NULL || g_strv_length (args) != 1)
                return tool_usage_error ("%s", _ ("expected one IMAGE"));
        if (format == NULL)
                format = g_strdup ("raw");
        if (!g_str_equal (format, "raw") && !g_str_equal (format, "qcow2"))
                return tool_usage_error (_ ("unknown format '%s' (expected raw or qcow2)"), format);

        display = g_filename_display_name (args[0]);
        file = g_file_new_for_commandline_arg (args[0]);
        image = vhdx_image_new (file, VHDX_OPEN_FLAGS_NONE, NULL, &error);
        if (image == NULL) {
                tool_print_error_printf ("%s: %s", display, error->message);
                return EXIT_FAILURE;
        }
        if (name == NULL)
                name = default_volume_name (file, format);

        conn = pool_connect (uri != NULL ? uri : pool_connect_uri, &error);
        if (conn == NULL) {
                tool_print_error_printf ("%s", error->message);
                return EXIT_FAILURE;
        }
        pool = pool_lookup (conn, pool_name, &error);
        if (pool == NULL || !pool_ensure_active (pool, &error)) {
                tool_print_error_printf ("%s", error->message);
                return EXIT_FAILURE;
        }
        if (volume_exists (pool, name)) {
                tool_print_error_printf (_ ("storage pool '%s' already has a volume named '%s'"),
                                         pool_name, name);
                return EXIT_FAILURE;
        }

        install_interrupt_handlers ();
        progress.enabled = show_progress && isatty (STDERR_FILENO);
        vol = import_image (conn, pool, image, name, format, &progress, &error);
        if (vol == NULL) {
                tool_print_error_printf ("%s: %s", display, error->message);
                return EXIT_FAILURE;
        }
        size_text = pool_format_capacity (vhdx_image_get_virtual_size (image));
        /* TRANSLATORS: volume name, pool name, format (raw or qcow2), virtual size */
        g_print (_ ("Created volume '%s' in pool '%s' (%s, %s)\n"), name, pool_name, format,
                 size_text);
        return EXIT_SUCCESS;
}
