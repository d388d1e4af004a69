/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The GObject library's C-only parts, and everything that is easier to
 * check from C: reads into the caller's buffer, reads from many threads at
 * once, cancellation in the middle of a read, differencing images made by
 * the project's writer.  The images come from the test generator, whose
 * raw disk is the expected result of every read.
 */
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include <vhdx.h>

#include "test-util.h"
#include "vhdx-crc32c.h"
#include "vhdx-gen.h"
#include "vhdx-create.h"

#define MiB (G_GUINT64_CONSTANT (1) << 20)

typedef struct {
        char *dir;
        char *path;
        VhdxGen *gen;
        VhdxGenLayout layout;
} Fixture;

/* A dynamic 64 MiB image with 2 MiB blocks: data, a block of zeros and holes. */
static void
make_dynamic (VhdxGenParams *params)
{
        vhdx_gen_params_init (params);
        params->disk_type = VHDX_DISK_TYPE_DYNAMIC;
        params->virtual_size = 64 * MiB;
        params->block_size = 2 * MiB;
        params->logical_sector_size = 512;
        params->physical_sector_size = 4096;
        params->seed = 7;
}

static void
fixture_set_up_with (Fixture *fixture, const VhdxGenParams *params)
{
        g_autoptr (GError) error = NULL;

        fixture->dir = test_tmpdir_new ();
        fixture->path = g_build_filename (fixture->dir, "image.vhdx", NULL);
        fixture->gen = vhdx_gen_new (params);
        g_assert_nonnull (fixture->gen);
        vhdx_gen_fill_pattern (fixture->gen, 3 * MiB + 512, 5 * MiB, 11);
        vhdx_gen_fill_byte (fixture->gen, 20 * MiB, 64 * 1024, 0);
        vhdx_gen_fill_pattern (fixture->gen, 40 * MiB, 2 * MiB, 12);
        vhdx_gen_fill_pattern (fixture->gen, params->virtual_size - 4096, 4096, 13);
        vhdx_gen_get_layout (fixture->gen, &fixture->layout);
        test_assert_ok (vhdx_gen_write_file (fixture->gen, fixture->path, &error), error);
}

static void
fixture_set_up (Fixture *fixture, gconstpointer data)
{
        VhdxGenParams params;

        make_dynamic (&params);
        fixture_set_up_with (fixture, &params);
}

static void
fixture_tear_down (Fixture *fixture, gconstpointer data)
{
        vhdx_gen_free (fixture->gen);
        g_free (fixture->path);
        test_tmpdir_free (fixture->dir);
}

static VhdxImage *
open_path (const char *path, GError **error)
{
        g_autoptr (GFile) file = g_file_new_for_path (path);

        return vhdx_image_new (file, VHDX_OPEN_FLAGS_NONE, NULL, error);
}

static VhdxImage *
open_fixture (Fixture *fixture)
{
        g_autoptr (GError) error = NULL;
        VhdxImage *image = open_path (fixture->path, &error);

        g_assert_no_error (error);
        g_assert_nonnull (image);
        return image;
}

static void
assert_bytes_equal (const guint8 *found, const guint8 *expected, gsize len, guint64 offset)
{
        gsize i;

        if (memcmp (found, expected, len) == 0)
                return;
        for (i = 0; i < len && found[i] == expected[i]; i++)
                ;
        g_test_message ("first difference at virtual offset %" G_GUINT64_FORMAT
                        ": found 0x%02x, expected 0x%02x",
                        offset + i, found[i], expected[i]);
        g_assert_not_reached ();
}

static void
assert_raw_range (VhdxGen *gen, const guint8 *found, guint64 offset, gsize len)
{
        g_autofree guint8 *expected = g_malloc (MAX (len, 1));

        vhdx_gen_read_raw (gen, offset, expected, len);
        assert_bytes_equal (found, expected, len, offset);
}

/* @length bytes of the file at @path from @offset. */
static guint8 *
file_bytes (const char *path, guint64 offset, gsize length)
{
        guint8 *buf = g_malloc (length);
        int fd = g_open (path, O_RDONLY, 0);

        g_assert_cmpint (fd, >=, 0);
        g_assert_cmpint (pread (fd, buf, length, (off_t) offset), ==, (gssize) length);
        close (fd);
        return buf;
}

/* The text of the GUID stored at @offset of the file at @path. */
static char *
file_guid_text (const char *path, guint64 offset)
{
        g_autofree guint8 *bytes = file_bytes (path, offset, 16);

        return test_guid_to_text (bytes);
}

/* The generator writes both headers; the current one has the larger
 * sequence number (MS-VHDX 2.2.2), read from the built file. */
static guint
current_header (const char *path, const VhdxGenLayout *layout, guint64 *sequence)
{
        guint64 seq[2];

        for (guint i = 0; i < 2; i++) {
                g_autofree guint8 *b = file_bytes (path, layout->header_offset[i] + 8, 8);
                seq[i] = vhdx_get_le64 (b);
        }
        *sequence = MAX (seq[0], seq[1]);
        return seq[1] > seq[0] ? 1 : 0;
}

static GAsyncResult *
wait_for_result (GAsyncResult **slot)
{
        while (*slot == NULL)
                g_main_context_iteration (NULL, TRUE);
        return *slot;
}

static void
store_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
        GAsyncResult **slot = user_data;

        *slot = g_object_ref (result);
}

/* Opening */

static void
assert_properties (VhdxImage *image, const Fixture *fixture)
{
        const VhdxGenParams *params = vhdx_gen_get_params (fixture->gen);
        const VhdxGenLayout *layout = &fixture->layout;
        g_autofree char *expected_disk_id = NULL;
        g_autofree char *expected_data_guid = NULL;
        g_autofree char *expected_file_guid = NULL;
        guint64 sequence;
        guint current;
        g_autoptr (GFile) file = NULL;
        g_autoptr (VhdxImage) parent = NULL;
        g_autofree char *virtual_disk_id = NULL;
        g_autofree char *creator = NULL;
        guint64 virtual_size = 0;
        guint64 allocated = 0;
        guint64 file_size = 0;
        guint block_size = 0;
        guint logical = 0;
        guint physical = 0;
        guint depth = 99;
        VhdxDiskType disk_type = 99;
        VhdxLogState log_state = 99;
        gboolean has_parent = TRUE;

        g_object_get (image, "file", &file, "virtual-size", &virtual_size, "block-size",
                      &block_size, "logical-sector-size", &logical, "physical-sector-size",
                      &physical, "disk-type", &disk_type, "virtual-disk-id", &virtual_disk_id,
                      "creator", &creator, "log-state", &log_state, "file-size", &file_size,
                      "allocated-size", &allocated, "has-parent", &has_parent, "parent", &parent,
                      "chain-depth", &depth, NULL);
        g_assert_nonnull (file);
        g_assert_cmpuint (virtual_size, ==, params->virtual_size);
        g_assert_cmpuint (vhdx_image_get_virtual_size (image), ==, params->virtual_size);
        g_assert_cmpuint (block_size, ==, params->block_size);
        g_assert_cmpuint (logical, ==, params->logical_sector_size);
        g_assert_cmpuint (physical, ==, params->physical_sector_size);
        g_assert_cmpint (disk_type, ==, params->disk_type);
        g_assert_cmpint (log_state, ==, VHDX_LOG_STATE_CLEAN);
        g_assert_cmpstr (creator, ==, VHDX_GEN_CREATOR);
        g_assert_cmpuint (file_size, ==, layout->file_size);
        g_assert_cmpuint (allocated, ==, layout->allocated_blocks * params->block_size);
        g_assert_false (has_parent);
        g_assert_null (parent);
        g_assert_null (vhdx_image_get_parent_locator (image));
        g_assert_cmpuint (depth, ==, 0);
        /* The GUIDs as the generator stored them: VirtualDiskId in its
         * metadata item, FileWriteGuid and DataWriteGuid at bytes 16 and 32
         * of the current header. */
        current = current_header (fixture->path, layout, &sequence);
        expected_disk_id =
                file_guid_text (fixture->path,
                                layout->metadata_item_offset[VHDX_GEN_ITEM_VIRTUAL_DISK_ID]);
        expected_file_guid = file_guid_text (fixture->path, layout->header_offset[current] + 16);
        expected_data_guid = file_guid_text (fixture->path, layout->header_offset[current] + 32);
        g_assert_cmpstr (virtual_disk_id, ==, expected_disk_id);
        g_assert_cmpstr (vhdx_image_get_virtual_disk_id (image), ==, expected_disk_id);
        g_assert_cmpstr (vhdx_image_get_data_write_guid (image), ==, expected_data_guid);
        g_assert_cmpstr (vhdx_image_get_file_write_guid (image), ==, expected_file_guid);
        g_assert_cmpstr (expected_data_guid, !=, expected_file_guid);
}

static void
test_open_sync (Fixture *fixture, gconstpointer data)
{
        g_autoptr (VhdxImage) image = open_fixture (fixture);

        assert_properties (image, fixture);
        g_assert_cmpint (vhdx_image_get_flags (image), ==, VHDX_OPEN_FLAGS_NONE);
        g_assert_null (vhdx_image_get_parent_file (image));
}

static void
test_open_sector_4k (void)
{
        Fixture fixture = { 0 };
        VhdxGenParams params;
        g_autoptr (VhdxImage) image = NULL;

        make_dynamic (&params);
        params.disk_type = VHDX_DISK_TYPE_FIXED;
        params.logical_sector_size = 4096;
        params.block_size = 1 * MiB;
        fixture_set_up_with (&fixture, &params);
        image = open_fixture (&fixture);
        assert_properties (image, &fixture);
        g_clear_object (&image);
        fixture_tear_down (&fixture, NULL);
}

static void
test_open_async (Fixture *fixture, gconstpointer data)
{
        g_autoptr (GFile) file = g_file_new_for_path (fixture->path);
        g_autoptr (GAsyncResult) result = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GError) error = NULL;

        vhdx_image_new_async (file, VHDX_OPEN_FLAGS_NONE, G_PRIORITY_DEFAULT, NULL, store_result,
                              &result);
        image = vhdx_image_new_finish (wait_for_result (&result), &error);
        g_assert_no_error (error);
        g_assert_true (VHDX_IS_IMAGE (image));
        assert_properties (image, fixture);
}

static void
write_file (const char *path, gsize size, guint8 seed)
{
        g_autoptr (GError) error = NULL;
        g_autofree guint8 *data = g_malloc (MAX (size, 1));

        for (gsize i = 0; i < size; i++)
                data[i] = (guint8) (i * 31 + seed);
        test_assert_ok (g_file_set_contents (path, (const char *) data, (gssize) size, &error),
                        error);
}

static void
test_open_errors (Fixture *fixture, gconstpointer data)
{
        g_autofree char *missing = g_build_filename (fixture->dir, "missing.vhdx", NULL);
        g_autofree char *junk = g_build_filename (fixture->dir, "junk.vhdx", NULL);
        g_autofree char *short_file = g_build_filename (fixture->dir, "short.vhdx", NULL);
        g_autoptr (GFile) file = NULL;
        g_autoptr (GCancellable) cancellable = g_cancellable_new ();
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxImage) image = NULL;

        image = open_path (missing, &error);
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
        g_assert_null (image);
        g_clear_error (&error);

        image = open_path (fixture->dir, &error);
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY);
        g_clear_error (&error);

        write_file (junk, 2 * MiB, 1);
        image = open_path (junk, &error);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_clear_error (&error);

        write_file (short_file, 0, 0);
        image = open_path (short_file, &error);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_TRUNCATED);
        g_clear_error (&error);

        file = g_file_new_for_path (fixture->path);
        g_cancellable_cancel (cancellable);
        image = vhdx_image_new (file, VHDX_OPEN_FLAGS_NONE, cancellable, &error);
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_assert_null (image);
}

/* A second init gives the first one's result, as GInitable requires. */
static void
test_open_init_twice (Fixture *fixture, gconstpointer data)
{
        g_autofree char *junk = g_build_filename (fixture->dir, "junk.vhdx", NULL);
        g_autoptr (GFile) file = g_file_new_for_path (junk);
        g_autoptr (GFile) good = g_file_new_for_path (fixture->path);
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (VhdxImage) opened = NULL;
        g_autoptr (GError) error = NULL;

        write_file (junk, 2 * MiB, 2);
        image = g_object_new (VHDX_TYPE_IMAGE, "file", file, NULL);
        g_assert_false (g_initable_init (G_INITABLE (image), NULL, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_clear_error (&error);
        g_assert_false (g_initable_init (G_INITABLE (image), NULL, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_clear_error (&error);

        opened = g_object_new (VHDX_TYPE_IMAGE, "file", good, NULL);
        g_assert_cmpuint (vhdx_image_get_virtual_size (opened), ==, 0);
        test_assert_ok (g_initable_init (G_INITABLE (opened), NULL, &error), error);
        test_assert_ok (g_initable_init (G_INITABLE (opened), NULL, &error), error);
        g_assert_cmpuint (vhdx_image_get_virtual_size (opened), ==, 64 * MiB);
}

/* Reading */

static void
test_read_buffer (Fixture *fixture, gconstpointer data)
{
        static const struct {
                guint64 offset;
                gsize length;
        } ranges[] = {
                { 0, 64 * MiB }, /* the whole disk, in several chunks */
                { 3 * MiB, 512 },         { 3 * MiB + 511, 2 },
                { 2 * MiB - 7, 5 * MiB }, /* across blocks, unaligned */
                { 64 * MiB - 1, 1 },      { 64 * MiB, 0 },
        };
        g_autoptr (VhdxImage) image = open_fixture (fixture);

        for (gsize i = 0; i < G_N_ELEMENTS (ranges); i++) {
                g_autoptr (GError) error = NULL;
                g_autofree guint8 *buf = g_malloc (MAX (ranges[i].length, 1));

                memset (buf, 0xee, ranges[i].length);
                test_assert_ok (vhdx_image_read (image, ranges[i].offset, buf, ranges[i].length,
                                                 NULL, &error),
                                error);
                assert_raw_range (fixture->gen, buf, ranges[i].offset, ranges[i].length);
        }
}

static void
test_read_range (Fixture *fixture, gconstpointer data)
{
        g_autoptr (VhdxImage) image = open_fixture (fixture);
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = NULL;
        guint8 buf[16];

        g_assert_false (vhdx_image_read (image, 64 * MiB - 8, buf, 16, NULL, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);
        g_assert_false (vhdx_image_read (image, G_MAXUINT64 - 4, buf, 16, NULL, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);

        /* read_bytes stops at the end, as g_input_stream_read_bytes() does. */
        bytes = vhdx_image_read_bytes (image, 64 * MiB - 4096, 1 * MiB, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (g_bytes_get_size (bytes), ==, 4096);
        assert_raw_range (fixture->gen, g_bytes_get_data (bytes, NULL), 64 * MiB - 4096, 4096);
        g_clear_pointer (&bytes, g_bytes_unref);

        bytes = vhdx_image_read_bytes (image, 64 * MiB, 100, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (g_bytes_get_size (bytes), ==, 0);
        g_clear_pointer (&bytes, g_bytes_unref);

        bytes = vhdx_image_read_bytes (image, G_MAXUINT64, G_MAXSIZE, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (g_bytes_get_size (bytes), ==, 0);
}

typedef struct {
        VhdxImage *image;
        VhdxGen *gen;
        guint32 seed;
} ThreadData;

static gpointer
read_randomly (gpointer user_data)
{
        ThreadData *data = user_data;
        g_autoptr (GRand) rand = g_rand_new_with_seed (data->seed);
        guint64 size = vhdx_image_get_virtual_size (data->image);

        for (guint i = 0; i < 200; i++) {
                g_autoptr (GError) error = NULL;
                guint64 offset = (guint64) g_rand_double_range (rand, 0, (double) size);
                guint64 wanted = (guint64) g_rand_int_range (rand, 1, 3 * MiB);
                gsize length = (gsize) MIN (wanted, size - offset);
                g_autoptr (GBytes) bytes =
                        vhdx_image_read_bytes (data->image, offset, length, NULL, &error);

                g_assert_no_error (error);
                g_assert_cmpuint (g_bytes_get_size (bytes), ==, length);
                assert_raw_range (data->gen, g_bytes_get_data (bytes, NULL), offset, length);
        }
        return NULL;
}

static void
test_read_threads (Fixture *fixture, gconstpointer data)
{
        g_autoptr (VhdxImage) image = open_fixture (fixture);
        ThreadData thread_data[8];
        GThread *threads[8];

        for (guint i = 0; i < G_N_ELEMENTS (threads); i++) {
                thread_data[i] = (ThreadData){ image, fixture->gen, 100 + i };
                threads[i] = g_thread_new ("reader", read_randomly, &thread_data[i]);
        }
        for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
                g_thread_join (threads[i]);
}

static void
test_read_async (Fixture *fixture, gconstpointer data)
{
        g_autoptr (VhdxImage) image = open_fixture (fixture);
        g_autoptr (GAsyncResult) result = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = NULL;
        g_autofree guint8 *buf = g_malloc (9 * MiB);

        vhdx_image_read_async (image, 1 * MiB, buf, 9 * MiB, G_PRIORITY_DEFAULT, NULL, store_result,
                               &result);
        test_assert_ok (vhdx_image_read_finish (image, wait_for_result (&result), &error), error);
        assert_raw_range (fixture->gen, buf, 1 * MiB, 9 * MiB);
        g_clear_object (&result);

        vhdx_image_read_async (image, 60 * MiB, buf, 9 * MiB, G_PRIORITY_DEFAULT, NULL,
                               store_result, &result);
        g_assert_false (vhdx_image_read_finish (image, wait_for_result (&result), &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);
        g_clear_object (&result);

        vhdx_image_read_bytes_async (image, 39 * MiB, 4 * MiB, G_PRIORITY_DEFAULT, NULL,
                                     store_result, &result);
        bytes = vhdx_image_read_bytes_finish (image, wait_for_result (&result), &error);
        g_assert_no_error (error);
        g_assert_cmpuint (g_bytes_get_size (bytes), ==, 4 * MiB);
        assert_raw_range (fixture->gen, g_bytes_get_data (bytes, NULL), 39 * MiB, 4 * MiB);
}

static void
test_read_cancelled (Fixture *fixture, gconstpointer data)
{
        g_autoptr (VhdxImage) image = open_fixture (fixture);
        g_autoptr (GCancellable) cancellable = g_cancellable_new ();
        g_autoptr (GAsyncResult) result = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = NULL;
        g_autoptr (GPtrArray) extents = NULL;
        g_autoptr (GPtrArray) problems = NULL;
        guint8 buf[512];

        g_cancellable_cancel (cancellable);
        g_assert_false (vhdx_image_read (image, 0, buf, sizeof buf, cancellable, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_clear_error (&error);
        bytes = vhdx_image_read_bytes (image, 0, 512, cancellable, &error);
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_assert_null (bytes);
        g_clear_error (&error);
        extents = vhdx_image_get_extents (image, 0, 64 * MiB, cancellable, &error);
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_assert_null (extents);
        g_clear_error (&error);
        problems = vhdx_image_check (image, cancellable, &error);
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_assert_null (problems);
        g_clear_error (&error);

        vhdx_image_read_bytes_async (image, 0, 64 * MiB, G_PRIORITY_DEFAULT, cancellable,
                                     store_result, &result);
        bytes = vhdx_image_read_bytes_finish (image, wait_for_result (&result), &error);
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_assert_null (bytes);
}

typedef struct {
        volatile guint8 *first_chunk_end;
        GCancellable *cancellable;
} Watcher;

/* Cancels as soon as the first chunk of the read has arrived. */
static gpointer
cancel_after_first_chunk (gpointer user_data)
{
        Watcher *watcher = user_data;

        while (*watcher->first_chunk_end == 0xee)
                g_thread_yield ();
        g_cancellable_cancel (watcher->cancellable);
        return NULL;
}

/* A long read notices a cancellation between its chunks and stops. */
static void
test_read_cancelled_midway (void)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GCancellable) cancellable = g_cancellable_new ();
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "big.vhdx", NULL);
        const gsize size = 256 * MiB;
        g_autofree guint8 *buf = g_malloc (size);
        VhdxGenParams params;
        Watcher watcher;
        GThread *thread;

        make_dynamic (&params);
        params.virtual_size = size;
        gen = vhdx_gen_new (&params);
        test_assert_ok (vhdx_gen_write_file (gen, path, &error), error);
        image = open_path (path, &error);
        g_assert_no_error (error);

        memset (buf, 0xee, size);
        watcher.first_chunk_end = &buf[MiB];
        watcher.cancellable = cancellable;
        thread = g_thread_new ("canceller", cancel_after_first_chunk, &watcher);
        g_assert_false (vhdx_image_read (image, 0, buf, size, cancellable, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_thread_join (thread);
        /* The read stopped long before the end of the disk. */
        g_assert_cmpuint (buf[size - 1], ==, 0xee);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* Streams */

static void
test_stream (Fixture *fixture, gconstpointer data)
{
        g_autoptr (VhdxImage) image = open_fixture (fixture);
        g_autoptr (GInputStream) stream = vhdx_image_open_stream (image);
        GSeekable *seekable = G_SEEKABLE (stream);
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = NULL;
        g_autoptr (GAsyncResult) result = NULL;
        guint8 buf[4096];
        gsize n_read = 0;
        gssize n;

        g_assert_true (VHDX_IS_INPUT_STREAM (stream));
        g_assert_true (vhdx_input_stream_get_image (VHDX_INPUT_STREAM (stream)) == image);
        g_assert_true (g_seekable_can_seek (seekable));
        g_assert_false (g_seekable_can_truncate (seekable));
        g_assert_cmpint (g_seekable_tell (seekable), ==, 0);

        test_assert_ok (g_seekable_seek (seekable, 3 * MiB + 100, G_SEEK_SET, NULL, &error), error);
        test_assert_ok (g_input_stream_read_all (stream, buf, sizeof buf, &n_read, NULL, &error),
                        error);
        g_assert_cmpuint (n_read, ==, sizeof buf);
        assert_raw_range (fixture->gen, buf, 3 * MiB + 100, sizeof buf);
        g_assert_cmpint (g_seekable_tell (seekable), ==, 3 * MiB + 100 + sizeof buf);

        test_assert_ok (g_seekable_seek (seekable, -1000, G_SEEK_CUR, NULL, &error), error);
        n = g_input_stream_skip (stream, 10, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpint (n, ==, 10);
        g_assert_cmpint (g_seekable_tell (seekable), ==, 3 * MiB + 100 + sizeof buf - 990);

        /* The end: a short read, then nothing, also past the end. */
        test_assert_ok (g_seekable_seek (seekable, -100, G_SEEK_END, NULL, &error), error);
        n = g_input_stream_read (stream, buf, sizeof buf, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpint (n, ==, 100);
        assert_raw_range (fixture->gen, buf, 64 * MiB - 100, 100);
        n = g_input_stream_read (stream, buf, sizeof buf, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpint (n, ==, 0);
        test_assert_ok (g_seekable_seek (seekable, 100 * MiB, G_SEEK_SET, NULL, &error), error);
        n = g_input_stream_read (stream, buf, sizeof buf, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpint (n, ==, 0);

        g_assert_false (g_seekable_seek (seekable, -1, G_SEEK_SET, NULL, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        g_clear_error (&error);
        g_assert_false (g_seekable_truncate (seekable, 0, NULL, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
        g_clear_error (&error);

        /* Asynchronous reads, in a worker thread. */
        test_assert_ok (g_seekable_seek (seekable, 40 * MiB - 10, G_SEEK_SET, NULL, &error), error);
        g_input_stream_read_bytes_async (stream, 2 * MiB, G_PRIORITY_DEFAULT, NULL, store_result,
                                         &result);
        bytes = g_input_stream_read_bytes_finish (stream, wait_for_result (&result), &error);
        g_assert_no_error (error);
        g_assert_cmpuint (g_bytes_get_size (bytes), ==, 2 * MiB);
        assert_raw_range (fixture->gen, g_bytes_get_data (bytes, NULL), 40 * MiB - 10, 2 * MiB);
        g_assert_cmpint (g_seekable_tell (seekable), ==, 42 * MiB - 10);

        test_assert_ok (g_input_stream_close (stream, NULL, &error), error);
        g_assert_false (g_seekable_seek (seekable, 0, G_SEEK_SET, NULL, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED);
}

/* Extents */

static void
assert_extents_match (Fixture *fixture, GPtrArray *extents, guint64 offset, guint64 length)
{
        const VhdxGenParams *params = vhdx_gen_get_params (fixture->gen);
        guint64 position = offset;

        g_assert_cmpuint (extents->len, >, 0);
        for (guint i = 0; i < extents->len; i++) {
                VhdxExtent *extent = g_ptr_array_index (extents, i);
                guint64 start = vhdx_extent_get_offset (extent);
                guint64 end = start + vhdx_extent_get_length (extent);

                g_assert_cmpuint (start, ==, position);
                g_assert_cmpuint (vhdx_extent_get_depth (extent), ==, 0);
                for (guint64 at = start; at < end;) {
                        guint64 block = at / params->block_size;
                        guint64 block_end = MIN ((block + 1) * params->block_size, end);
                        guint64 file_offset = 0;
                        gboolean allocated =
                                vhdx_gen_block_file_offset (fixture->gen, block, &file_offset);

                        if (vhdx_extent_get_kind (extent) == VHDX_EXTENT_KIND_DATA) {
                                g_assert_true (allocated);
                                g_assert_true (vhdx_extent_is_present (extent));
                                g_assert_cmpuint (vhdx_extent_get_file_offset (extent) +
                                                          (at - start),
                                                  ==, file_offset + at % params->block_size);
                        } else {
                                g_assert_false (allocated);
                                g_assert_cmpuint (vhdx_extent_get_file_offset (extent), ==, 0);
                        }
                        at = block_end;
                }
                position = end;
        }
        g_assert_cmpuint (position, ==, offset + length);
}

static void
test_extents (Fixture *fixture, gconstpointer data)
{
        g_autoptr (VhdxImage) image = open_fixture (fixture);
        g_autoptr (GPtrArray) extents = NULL;
        g_autoptr (GAsyncResult) result = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxExtent) copy = NULL;

        extents = vhdx_image_get_extents (image, 0, 64 * MiB, NULL, &error);
        g_assert_no_error (error);
        assert_extents_match (fixture, extents, 0, 64 * MiB);
        copy = vhdx_extent_copy (g_ptr_array_index (extents, 0));
        g_assert_cmpuint (vhdx_extent_get_offset (copy), ==, 0);
        g_clear_pointer (&extents, g_ptr_array_unref);

        extents = vhdx_image_get_extents (image, 3 * MiB + 5, 2 * MiB, NULL, &error);
        g_assert_no_error (error);
        assert_extents_match (fixture, extents, 3 * MiB + 5, 2 * MiB);
        g_clear_pointer (&extents, g_ptr_array_unref);

        extents = vhdx_image_get_extents (image, 63 * MiB, 2 * MiB, NULL, &error);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_assert_null (extents);
        g_clear_error (&error);

        vhdx_image_get_extents_async (image, 0, 64 * MiB, G_PRIORITY_DEFAULT, NULL, store_result,
                                      &result);
        extents = vhdx_image_get_extents_finish (image, wait_for_result (&result), &error);
        g_assert_no_error (error);
        assert_extents_match (fixture, extents, 0, 64 * MiB);
}

/* Checking */

static void
test_check_clean (Fixture *fixture, gconstpointer data)
{
        g_autoptr (VhdxImage) image = open_fixture (fixture);
        g_autoptr (GPtrArray) problems = NULL;
        g_autoptr (GAsyncResult) result = NULL;
        g_autoptr (GError) error = NULL;

        problems = vhdx_image_check (image, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (problems->len, ==, 0);
        g_clear_pointer (&problems, g_ptr_array_unref);

        vhdx_image_check_async (image, G_PRIORITY_DEFAULT, NULL, store_result, &result);
        problems = vhdx_image_check_finish (image, wait_for_result (&result), &error);
        g_assert_no_error (error);
        g_assert_cmpuint (problems->len, ==, 0);
}

/* A damaged header 1 next to a good header 2: the image opens, and the
 * problem noticed while opening comes first in the check. */
static void
test_check_open_findings (Fixture *fixture, gconstpointer data)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GPtrArray) problems = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (VhdxProblem) copy = NULL;
        g_autofree guint8 *header = NULL;
        g_autofree char *checksums = NULL;
        guint32 stored;
        guint8 byte;
        VhdxProblem *problem;
        int fd;

        fd = g_open (fixture->path, O_RDWR, 0);
        g_assert_cmpint (fd, >=, 0);
        g_assert_cmpint (pread (fd, &byte, 1, (off_t) fixture->layout.header_offset[0] + 1000), ==,
                         1);
        byte ^= 0x10;
        g_assert_cmpint (pwrite (fd, &byte, 1, (off_t) fixture->layout.header_offset[0] + 1000), ==,
                         1);
        close (fd);
        /* The checksum stored in header 1 and the one of its damaged bytes. */
        header = file_bytes (fixture->path, fixture->layout.header_offset[0], 4096);
        stored = vhdx_get_le32 (header + 4);
        memset (header + 4, 0, 4);
        checksums = g_strdup_printf ("stored checksum 0x%08x, computed 0x%08x", stored,
                                     vhdx_crc32c (0, header, 4096));

        image = open_fixture (fixture);
        problems = vhdx_image_check (image, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (problems->len, ==, 1);
        problem = g_ptr_array_index (problems, 0);
        g_assert_cmpint (vhdx_problem_get_severity (problem), ==, VHDX_SEVERITY_WARNING);
        g_assert_cmpuint (vhdx_problem_get_offset (problem), ==, fixture->layout.header_offset[0]);
        g_assert_cmpstr (vhdx_problem_get_structure (problem), ==, "header 1");
        if (strstr (vhdx_problem_get_message (problem), checksums) == NULL)
                g_error ("the problem \"%s\" does not quote \"%s\"",
                         vhdx_problem_get_message (problem), checksums);
        copy = vhdx_problem_copy (problem);
        g_assert_cmpstr (vhdx_problem_get_message (copy), ==, vhdx_problem_get_message (problem));
}

/* Differencing images */

typedef struct {
        char *dir;
        char *base_path;
        char *child_path;
        guint64 size;
        char *base_guid; /* the base's DataWriteGuid, as the test chose it */
} Chain;

static void
chain_free (Chain *chain)
{
        g_free (chain->base_path);
        g_free (chain->child_path);
        g_free (chain->base_guid);
        test_tmpdir_free (chain->dir);
        g_free (chain);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Chain, chain_free)

static void
write_image (const char *path,
             const VhdxCreateParams *params,
             guint64 offset,
             gsize length,
             guint32 seed)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxIo) io = NULL;
        g_autoptr (VhdxCreator) writer = NULL;
        g_autofree guint8 *buf = g_malloc (length);
        int fd = g_open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        g_assert_cmpint (fd, >=, 0);
        io = vhdx_io_new_fd (fd, TRUE);
        writer = vhdx_creator_new (io, params, &error);
        g_assert_no_error (error);
        vhdx_gen_pattern_fill_buffer (buf, offset, length, seed);
        test_assert_ok (vhdx_creator_write (writer, offset, buf, length, &error), error);
        test_assert_ok (vhdx_creator_finish (writer, &error), error);
}

/* The DataWriteGuids the chain's images are given. */
#define BASE_GUID  "5B0E7C41-2D9A-4F36-8C1E-A47B3D92F605"
#define CHILD_GUID "E2C94A17-60B3-4D8F-9A25-1F7C0B6D3E48"

/* A base with a run of pattern 1, and a child with a run of pattern 2 over
 * part of it.  The base's DataWriteGuid is chosen here, and the child names
 * it as its parent. */
static Chain *
chain_new (void)
{
        g_autoptr (Chain) chain = g_new0 (Chain, 1);
        VhdxCreateParams base_params = {
                .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                .virtual_size = 16 * MiB,
                .block_size = 1 * MiB,
        };
        VhdxCreateParams child_params = base_params;

        chain->dir = test_tmpdir_new ();
        chain->size = base_params.virtual_size;
        chain->base_path = g_build_filename (chain->dir, "base.vhdx", NULL);
        chain->child_path = g_build_filename (chain->dir, "child.avhdx", NULL);
        base_params.data_write_guid = vhdx_gen_guid_from_text (BASE_GUID);
        chain->base_guid = g_ascii_strdown (BASE_GUID, -1);
        write_image (chain->base_path, &base_params, 2 * MiB, 4 * MiB, 1);

        child_params.disk_type = VHDX_DISK_TYPE_DIFFERENCING;
        child_params.parent_data_write_guid = base_params.data_write_guid;
        child_params.data_write_guid = vhdx_gen_guid_from_text (CHILD_GUID);
        child_params.parent_relative_path = "base.vhdx";
        child_params.parent_absolute_path = chain->base_path;
        write_image (chain->child_path, &child_params, 3 * MiB + 4096, 1 * MiB, 2);
        return g_steal_pointer (&chain);
}

/* The bytes the base of a chain made by chain_new() reads as. */
static void
chain_base_expected (guint64 offset, guint8 *buf, gsize length)
{
        for (gsize i = 0; i < length; i++) {
                guint64 at = offset + i;

                buf[i] = at >= 2 * MiB && at < 6 * MiB ? vhdx_gen_pattern_byte (at, 1) : 0;
        }
}

/* The bytes a chain made by chain_new() reads as. */
static void
chain_expected (guint64 offset, guint8 *buf, gsize length)
{
        for (gsize i = 0; i < length; i++) {
                guint64 at = offset + i;

                if (at >= 3 * MiB + 4096 && at < 4 * MiB + 4096)
                        buf[i] = vhdx_gen_pattern_byte (at, 2);
                else if (at >= 2 * MiB && at < 6 * MiB)
                        buf[i] = vhdx_gen_pattern_byte (at, 1);
                else
                        buf[i] = 0;
        }
}

/* Opens the child of a chain. */
static VhdxImage *
open_child (Chain *chain, GFile *parent_file)
{
        g_autoptr (GFile) file = g_file_new_for_path (chain->child_path);
        g_autoptr (GError) error = NULL;
        VhdxImage *image = g_initable_new (VHDX_TYPE_IMAGE, NULL, &error, "file", file,
                                           "parent-file", parent_file, NULL);

        g_assert_no_error (error);
        g_assert_nonnull (image);
        return image;
}

/* The chain of chain_new() as the test knows it: the base stores blocks 2
 * to 5 whole (a dynamic image allocates the blocks written to), the child
 * the sectors of [3 MiB + 4 KiB, 4 MiB + 4 KiB); where, the BATs read by
 * hand tell. */
typedef struct {
        guint64 *base_bat;
        guint64 *child_bat;
} ChainModel;

static void
chain_extent (guint64 offset, VhdxMapExtent *e, gpointer user_data)
{
        const ChainModel *m = user_data;
        guint64 block = offset / MiB;

        if (offset >= 3 * MiB + 4096 && offset < 4 * MiB + 4096) {
                e->kind = VHDX_EXTENT_DATA;
                e->present = TRUE;
                e->depth = 0;
                e->file_offset = (m->child_bat[block] & VHDX_BAT_OFFSET_MASK) + offset % MiB;
        } else if (block >= 2 && block < 6) {
                e->kind = VHDX_EXTENT_DATA;
                e->present = TRUE;
                e->depth = 1;
                e->file_offset = (m->base_bat[block] & VHDX_BAT_OFFSET_MASK) + offset % MiB;
        } else {
                /* A hole, found at the parent. */
                e->kind = VHDX_EXTENT_ZERO;
                e->present = FALSE;
                e->depth = 1;
        }
}

static void
assert_chain_extents (Chain *chain, GPtrArray *extents)
{
        g_autoptr (GArray) found = g_array_new (FALSE, TRUE, sizeof (VhdxMapExtent));
        g_autoptr (GArray) expected = NULL;
        g_autofree guint64 *base_bat = NULL;
        g_autofree guint64 *child_bat = NULL;
        TestSpecLayout base_layout, child_layout;
        ChainModel m;

        test_spec_read_layout (chain->base_path, &base_layout);
        test_spec_read_layout (chain->child_path, &child_layout);
        base_bat = test_spec_read_payload_entries (chain->base_path, &base_layout);
        child_bat = test_spec_read_payload_entries (chain->child_path, &child_layout);
        for (guint64 b = 0; b < 16; b++) {
                g_assert_cmpuint (base_bat[b] & VHDX_BAT_STATE_MASK, ==,
                                  b >= 2 && b < 6 ? VHDX_PAYLOAD_FULLY_PRESENT
                                                  : VHDX_PAYLOAD_NOT_PRESENT);
                g_assert_cmpuint (child_bat[b] & VHDX_BAT_STATE_MASK, ==,
                                  b == 3 || b == 4 ? VHDX_PAYLOAD_PARTIALLY_PRESENT
                                                   : VHDX_PAYLOAD_NOT_PRESENT);
        }
        m.base_bat = base_bat;
        m.child_bat = child_bat;
        expected = test_model_extents (0, chain->size, 512, chain_extent, &m);
        for (guint i = 0; i < extents->len; i++) {
                VhdxExtent *extent = g_ptr_array_index (extents, i);
                VhdxMapExtent e = {
                        .offset = vhdx_extent_get_offset (extent),
                        .length = vhdx_extent_get_length (extent),
                        .kind = vhdx_extent_get_kind (extent) == VHDX_EXTENT_KIND_DATA
                                        ? VHDX_EXTENT_DATA
                                        : VHDX_EXTENT_ZERO,
                        .present = vhdx_extent_is_present (extent),
                        .file_offset = vhdx_extent_get_file_offset (extent),
                        .depth = vhdx_extent_get_depth (extent),
                };
                g_array_append_val (found, e);
        }
        test_assert_extents_equal (found, expected, "the child's extents");
}

static void
test_parent (void)
{
        g_autoptr (Chain) chain = chain_new ();
        g_autoptr (VhdxImage) child = open_child (chain, NULL);
        g_autoptr (VhdxImage) parent = NULL;
        g_autoptr (VhdxImage) parent_again = NULL;
        g_autoptr (VhdxImage) from_property = NULL;
        g_autoptr (GHashTable) locator = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = NULL;
        g_autoptr (GPtrArray) extents = NULL;
        g_autofree char *parent_path = NULL;
        g_autofree char *linkage = NULL;
        g_autofree char *child_guid = g_ascii_strdown (CHILD_GUID, -1);
        g_autofree guint8 *expected = NULL;

        g_assert_true (vhdx_image_has_parent (child));
        g_assert_cmpint (vhdx_image_get_disk_type (child), ==, VHDX_DISK_TYPE_DIFFERENCING);
        g_assert_cmpuint (vhdx_image_get_chain_depth (child), ==, 1);
        g_assert_cmpstr (vhdx_image_get_data_write_guid (child), ==, child_guid);

        g_object_get (child, "parent-locator", &locator, "parent", &from_property, NULL);
        g_assert_nonnull (locator);
        /* The locator's values are as stored: a GUID in braces, in any case. */
        linkage = g_strdup_printf ("{%s}", chain->base_guid);
        g_assert_cmpint (g_ascii_strcasecmp (g_hash_table_lookup (locator, "parent_linkage"),
                                             linkage),
                         ==, 0);
        g_assert_cmpstr (g_hash_table_lookup (locator, "relative_path"), ==, "base.vhdx");

        /* The parent's image is shared while it lives, and outlives the child. */
        parent = vhdx_image_dup_parent (child);
        parent_again = vhdx_image_dup_parent (child);
        g_assert_true (parent == parent_again);
        g_assert_true (parent == from_property);
        parent_path = g_file_get_path (vhdx_image_get_file (parent));
        g_assert_cmpstr (parent_path, ==, chain->base_path);
        g_assert_false (vhdx_image_has_parent (parent));
        g_assert_cmpuint (vhdx_image_get_chain_depth (parent), ==, 0);
        g_assert_cmpstr (vhdx_image_get_data_write_guid (parent), ==, chain->base_guid);
        g_assert_cmpuint (vhdx_image_get_allocated_size (parent), ==, 4 * MiB);

        extents = vhdx_image_get_extents (child, 0, chain->size, NULL, &error);
        g_assert_no_error (error);
        assert_chain_extents (chain, extents);

        g_clear_object (&child);
        g_clear_object (&from_property);
        g_clear_object (&parent_again);
        bytes = vhdx_image_read_bytes (parent, 0, chain->size, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (g_bytes_get_size (bytes), ==, chain->size);
        expected = g_malloc (chain->size);
        chain_base_expected (0, expected, chain->size);
        assert_bytes_equal (g_bytes_get_data (bytes, NULL), expected, chain->size, 0);
        g_clear_pointer (&bytes, g_bytes_unref);

        child = open_child (chain, NULL);
        bytes = vhdx_image_read_bytes (child, 0, chain->size, NULL, &error);
        g_assert_no_error (error);
        chain_expected (0, expected, chain->size);
        assert_bytes_equal (g_bytes_get_data (bytes, NULL), expected, chain->size, 0);
}

static void
test_parent_file (void)
{
        g_autoptr (Chain) chain = chain_new ();
        g_autofree char *moved_dir = g_build_filename (chain->dir, "elsewhere", NULL);
        g_autofree char *moved = g_build_filename (moved_dir, "renamed.vhdx", NULL);
        g_autoptr (GFile) moved_file = g_file_new_for_path (moved);
        g_autoptr (GFile) child_file = g_file_new_for_path (chain->child_path);
        g_autoptr (VhdxImage) child = NULL;
        g_autoptr (VhdxImage) parent = NULL;
        g_autoptr (GError) error = NULL;
        g_autofree char *parent_path = NULL;

        g_assert_cmpint (g_mkdir (moved_dir, 0755), ==, 0);
        g_assert_cmpint (g_rename (chain->base_path, moved), ==, 0);

        child = vhdx_image_new (child_file, VHDX_OPEN_FLAGS_NONE, NULL, &error);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND);
        g_assert_null (child);
        g_clear_error (&error);

        child = open_child (chain, moved_file);
        g_assert_true (vhdx_image_get_parent_file (child) == moved_file);
        parent = vhdx_image_dup_parent (child);
        parent_path = g_file_get_path (vhdx_image_get_file (parent));
        g_assert_cmpstr (parent_path, ==, moved);

        g_assert_cmpint (vhdx_image_get_disk_type (child), ==, VHDX_DISK_TYPE_DIFFERENCING);
        g_assert_cmpuint (vhdx_image_get_chain_depth (child), ==, 1);
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);

        g_test_add ("/image/open/sync", Fixture, NULL, fixture_set_up, test_open_sync,
                    fixture_tear_down);
        g_test_add_func ("/image/open/4k-sectors", test_open_sector_4k);
        g_test_add ("/image/open/async", Fixture, NULL, fixture_set_up, test_open_async,
                    fixture_tear_down);
        g_test_add ("/image/open/errors", Fixture, NULL, fixture_set_up, test_open_errors,
                    fixture_tear_down);
        g_test_add ("/image/open/init-twice", Fixture, NULL, fixture_set_up, test_open_init_twice,
                    fixture_tear_down);
        g_test_add ("/image/read/buffer", Fixture, NULL, fixture_set_up, test_read_buffer,
                    fixture_tear_down);
        g_test_add ("/image/read/range", Fixture, NULL, fixture_set_up, test_read_range,
                    fixture_tear_down);
        g_test_add ("/image/read/threads", Fixture, NULL, fixture_set_up, test_read_threads,
                    fixture_tear_down);
        g_test_add ("/image/read/async", Fixture, NULL, fixture_set_up, test_read_async,
                    fixture_tear_down);
        g_test_add ("/image/read/cancelled", Fixture, NULL, fixture_set_up, test_read_cancelled,
                    fixture_tear_down);
        g_test_add_func ("/image/read/cancelled-midway", test_read_cancelled_midway);
        g_test_add ("/image/stream", Fixture, NULL, fixture_set_up, test_stream, fixture_tear_down);
        g_test_add ("/image/extents", Fixture, NULL, fixture_set_up, test_extents,
                    fixture_tear_down);
        g_test_add ("/image/check/clean", Fixture, NULL, fixture_set_up, test_check_clean,
                    fixture_tear_down);
        g_test_add ("/image/check/open-findings", Fixture, NULL, fixture_set_up,
                    test_check_open_findings, fixture_tear_down);
        g_test_add_func ("/image/parent/locator", test_parent);
        g_test_add_func ("/image/parent/parent-file", test_parent_file);

        return g_test_run ();
}
