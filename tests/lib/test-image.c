/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The GObject library's C-only parts, and everything that is easier to
 * check from C: reads into the caller's buffer, reads from many threads at
 * once, cancellation in the middle of a read, differencing images made by
 * the project's writer, writes.  The images read come from the test
 * generator, whose raw disk is the expected result of every read; the
 * images written are made by qemu-img, and checked by it once closed
 * against the disk the test expects.
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
open_path_with_flags (const char *path, VhdxOpenFlags flags, GError **error)
{
        g_autoptr (GFile) file = g_file_new_for_path (path);

        return vhdx_image_new (file, flags, NULL, error);
}

static VhdxImage *
open_path (const char *path, GError **error)
{
        return open_path_with_flags (path, VHDX_OPEN_FLAGS_NONE, error);
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
        g_clear_pointer (&bytes, g_bytes_unref);
        g_clear_object (&result);

        /* Cut at the end of the 64 MiB disk, and nothing past it. */
        vhdx_image_read_bytes_async (image, 63 * MiB, 4 * MiB, G_PRIORITY_DEFAULT, NULL,
                                     store_result, &result);
        bytes = vhdx_image_read_bytes_finish (image, wait_for_result (&result), &error);
        g_assert_no_error (error);
        g_assert_cmpuint (g_bytes_get_size (bytes), ==, 1 * MiB);
        assert_raw_range (fixture->gen, g_bytes_get_data (bytes, NULL), 63 * MiB, 1 * MiB);
        g_clear_pointer (&bytes, g_bytes_unref);
        g_clear_object (&result);
        vhdx_image_read_bytes_async (image, 64 * MiB, 4 * MiB, G_PRIORITY_DEFAULT, NULL,
                                     store_result, &result);
        bytes = vhdx_image_read_bytes_finish (image, wait_for_result (&result), &error);
        g_assert_no_error (error);
        g_assert_cmpuint (g_bytes_get_size (bytes), ==, 0);
}

/* The whole disk in 1 MiB requests, all in flight at once with mixed
 * priorities: each comes back once, with its bytes. */
static void
test_read_async_many (Fixture *fixture, gconstpointer data)
{
        g_autoptr (VhdxImage) image = open_fixture (fixture);
        GAsyncResult *results[64] = { NULL };
        static const int priorities[] = { G_PRIORITY_LOW, G_PRIORITY_DEFAULT, G_PRIORITY_HIGH };

        for (guint i = 0; i < G_N_ELEMENTS (results); i++)
                vhdx_image_read_bytes_async (image, i * MiB, 1 * MiB, priorities[i % 3], NULL,
                                             store_result, &results[i]);
        for (guint i = 0; i < G_N_ELEMENTS (results); i++) {
                g_autoptr (GError) error = NULL;
                g_autoptr (GBytes) bytes = NULL;

                bytes = vhdx_image_read_bytes_finish (image, wait_for_result (&results[i]), &error);
                g_assert_no_error (error);
                g_assert_cmpuint (g_bytes_get_size (bytes), ==, 1 * MiB);
                assert_raw_range (fixture->gen, g_bytes_get_data (bytes, NULL), i * MiB, 1 * MiB);
                g_clear_object (&results[i]);
        }
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

/* A long read notices a cancellation between its chunks and stops.  On a
 * busy machine the read may end before the canceller runs: the race is run
 * again, a bounded number of times. */
static void
test_read_cancelled_midway (void)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "big.vhdx", NULL);
        const gsize size = 256 * MiB;
        const guint attempts = 10;
        g_autofree guint8 *buf = g_malloc (size);
        VhdxGenParams params;
        gboolean stopped = FALSE;

        make_dynamic (&params);
        params.virtual_size = size;
        gen = vhdx_gen_new (&params);
        test_assert_ok (vhdx_gen_write_file (gen, path, &error), error);
        image = open_path (path, &error);
        g_assert_no_error (error);

        for (guint i = 0; i < attempts && !stopped; i++) {
                g_autoptr (GCancellable) cancellable = g_cancellable_new ();
                Watcher watcher = { &buf[MiB], cancellable };
                GThread *thread;

                memset (buf, 0xee, size);
                thread = g_thread_new ("canceller", cancel_after_first_chunk, &watcher);
                stopped = !vhdx_image_read (image, 0, buf, size, cancellable, &error);
                g_thread_join (thread);
                if (!stopped) {
                        g_test_message ("attempt %u: the read ended before it was cancelled",
                                        i + 1);
                        continue;
                }
                g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
                /* The read stopped long before the end of the disk. */
                g_assert_cmpuint (buf[size - 1], ==, 0xee);
        }
        if (!stopped)
                g_test_fail_printf ("the read never stopped at a cancellation in %u attempts",
                                    attempts);
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

/* Writing.  QEMU makes the images and reads them back once they are
 * closed (qemu-img check and compare); the test keeps the disk it expects
 * in a model buffer, changed as each call should change the disk. */

#define KiB (G_GUINT64_CONSTANT (1) << 10)

typedef struct {
        char *dir;
        char *path;
        guint64 size;
        guint8 *model;
        guint64 *initial_bat; /* the payload BAT entries QEMU wrote */
} Disk;

static void
disk_free (Disk *disk)
{
        g_free (disk->model);
        g_free (disk->initial_bat);
        g_free (disk->path);
        test_tmpdir_free (disk->dir);
        g_free (disk);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Disk, disk_free)

static gboolean
have_qemu_img (void)
{
        if (test_have_program ("qemu-img"))
                return TRUE;
        g_test_skip ("qemu-img is not installed: it makes the images written and checks them");
        return FALSE;
}

static void
qemu_img_create (const char *path, guint64 size)
{
        g_autofree char *size_text = g_strdup_printf ("%" G_GUINT64_FORMAT, size);
        const char *argv[] = {
                "qemu-img", "create",  "-q", "-f", "vhdx", "-o", "subformat=dynamic,block_size=1M",
                path,       size_text, NULL
        };

        test_run (argv);
}

/* An empty dynamic image of @size bytes in 1 MiB blocks, made by qemu-img,
 * and its model: zeros.  QEMU marks its blocks ZERO, as the BAT read from
 * the file tells. */
static Disk *
disk_new (guint64 size)
{
        Disk *disk = g_new0 (Disk, 1);
        TestSpecLayout layout;

        disk->dir = test_tmpdir_new ();
        disk->path = g_build_filename (disk->dir, "disk.vhdx", NULL);
        disk->size = size;
        disk->model = g_malloc0 (size);
        qemu_img_create (disk->path, size);
        test_spec_read_layout (disk->path, &layout);
        disk->initial_bat = test_spec_read_payload_entries (disk->path, &layout);
        return disk;
}

static VhdxImage *
disk_open (Disk *disk, VhdxOpenFlags flags)
{
        g_autoptr (GError) error = NULL;
        VhdxImage *image = open_path_with_flags (disk->path, flags, &error);

        g_assert_no_error (error);
        g_assert_nonnull (image);
        return image;
}

/* @length bytes of a random pattern made from @seed. */
static GBytes *
random_bytes (gsize length, guint32 seed)
{
        g_autoptr (GRand) rand = g_rand_new_with_seed (seed);
        guint8 *data = g_malloc (MAX (length, 1));

        for (gsize i = 0; i < length; i++)
                data[i] = (guint8) g_rand_int (rand);
        return g_bytes_new_take (data, length);
}

static void
model_write (Disk *disk, guint64 offset, GBytes *bytes)
{
        gsize length;
        const guint8 *data = g_bytes_get_data (bytes, &length);

        g_assert_cmpuint (offset + length, <=, disk->size);
        memcpy (disk->model + offset, data, length);
}

/* A discard frees the blocks of a dynamic image that the range covers
 * entirely, and they read as zeros; the rest keeps its data. */
static void
model_discard (Disk *disk, guint64 offset, guint64 length)
{
        guint64 first = (offset + MiB - 1) / MiB * MiB;
        guint64 end = offset + length == disk->size ? disk->size : (offset + length) / MiB * MiB;

        if (first < end)
                memset (disk->model + first, 0, end - first);
}

/* The image, open, reads as the model. */
static void
assert_reads_model (VhdxImage *image, Disk *disk)
{
        g_autoptr (GError) error = NULL;
        g_autofree guint8 *found = g_malloc (disk->size);

        test_assert_ok (vhdx_image_read (image, 0, found, disk->size, NULL, &error), error);
        test_assert_bytes_equal (found, disk->model, disk->size, 0, "the disk read back");
}

/* QEMU finds the image at @path clean, and reading as the model. */
static void
assert_qemu_reads_model (Disk *disk, const char *path)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *raw = g_build_filename (disk->dir, "model.raw", NULL);
        const char *check[] = { "qemu-img", "check", "-q", "-f", "vhdx", path, NULL };
        const char *compare[] = { "qemu-img", "compare", "-q", "-f", "vhdx",
                                  "-F",       "raw",     path, raw,  NULL };

        test_assert_ok (g_file_set_contents (raw, (const char *) disk->model, (gssize) disk->size,
                                             &error),
                        error);
        test_run (check);
        test_run (compare);
}

typedef enum {
        OP_WRITE,       /* vhdx_image_write() */
        OP_WRITE_BYTES, /* vhdx_image_write_bytes() */
        OP_ZEROES,
        OP_DISCARD,
} OpKind;

typedef struct {
        OpKind kind;
        guint64 offset;
        guint64 length;
        VhdxWriteFlags flags;
} Op;

/* The changes made to a 24 MiB disk, and the states of its blocks after them. */
static const Op write_ops[] = {
        /* Across three blocks, and a partial sector. */
        { OP_WRITE, 3 * MiB - 4096, MiB + 8192, VHDX_WRITE_FLAGS_NONE },
        { OP_WRITE_BYTES, 5 * MiB + 100, 3000, VHDX_WRITE_FLAGS_NONE },
        { OP_WRITE_BYTES, 10 * MiB, 3 * MiB, VHDX_WRITE_FLAGS_NONE },
        /* The end of the disk, durable at once. */
        { OP_WRITE, 24 * MiB - 64 * KiB, 64 * KiB, VHDX_WRITE_FLAGS_FUA },
        /* More than a chunk of the library's. */
        { OP_WRITE, 14 * MiB + 3, 9 * MiB + 10, VHDX_WRITE_FLAGS_NONE },
        /* Zeros inside a block; a block freed; a block zeroed in place. */
        { OP_ZEROES, 3 * MiB + 1000, 5000, VHDX_WRITE_FLAGS_NONE },
        { OP_ZEROES, 10 * MiB, MiB, VHDX_WRITE_FLAGS_MAY_UNMAP },
        { OP_ZEROES, 11 * MiB, MiB, VHDX_WRITE_FLAGS_NONE },
        /* Block 12 freed; the parts of blocks 11 and 13 kept. */
        { OP_DISCARD, 12 * MiB - 512, MiB + 1024, VHDX_WRITE_FLAGS_NONE },
        /* Over what was written. */
        { OP_WRITE_BYTES, 3 * MiB - 4096 + 77, 10 * KiB, VHDX_WRITE_FLAGS_FUA },
        { OP_ZEROES, 5 * MiB, 200, VHDX_WRITE_FLAGS_NONE },
};
#define WRITE_OPS_SIZE (24 * MiB)

/* The BAT states, from MS-VHDX 2.5.1.1: blocks 2 to 5, 10 to 12 and 14 to
 * 23 were written (FULLY_PRESENT, 6), 10 then zeroed with MAY_UNMAP (ZERO,
 * 2) and 12 discarded (UNMAPPED, 3); the others keep the state QEMU gave
 * them. */
static guint
write_ops_block_state (Disk *disk, guint64 block)
{
        if (block == 10)
                return 2;
        if (block == 12)
                return 3;
        if ((block >= 2 && block <= 5) || (block >= 10 && block <= 23 && block != 13))
                return 6;
        return (guint) (disk->initial_bat[block] & VHDX_BAT_STATE_MASK);
}

/* The model of @op, and the bytes it writes. */
static GBytes *
model_op (Disk *disk, const Op *op, guint32 seed)
{
        g_autoptr (GBytes) bytes = NULL;

        switch (op->kind) {
        case OP_WRITE:
        case OP_WRITE_BYTES:
                bytes = random_bytes ((gsize) op->length, seed);
                model_write (disk, op->offset, bytes);
                break;
        case OP_ZEROES:
                memset (disk->model + op->offset, 0, op->length);
                break;
        case OP_DISCARD:
                model_discard (disk, op->offset, op->length);
                break;
        }
        return g_steal_pointer (&bytes);
}

static gboolean
run_op (VhdxImage *image, const Op *op, GBytes *bytes, GCancellable *cancellable, GError **error)
{
        switch (op->kind) {
        case OP_WRITE:
                return vhdx_image_write (image, op->offset, g_bytes_get_data (bytes, NULL),
                                         g_bytes_get_size (bytes), op->flags, cancellable, error);
        case OP_WRITE_BYTES:
                return vhdx_image_write_bytes (image, op->offset, bytes, op->flags, cancellable,
                                               error);
        case OP_ZEROES:
                return vhdx_image_write_zeroes (image, op->offset, op->length, op->flags,
                                                cancellable, error);
        case OP_DISCARD:
        default:
                return vhdx_image_discard (image, op->offset, op->length, op->flags, cancellable,
                                           error);
        }
}

/* Waiting in a main loop for an asynchronous call. */
typedef struct {
        GMainLoop *loop;
        GAsyncResult *result;
} Waiter;

static void
waiter_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
        Waiter *waiter = user_data;

        g_assert_null (waiter->result);
        waiter->result = g_object_ref (result);
        g_main_loop_quit (waiter->loop);
}

/* Runs the loop until the call ends; the result is the waiter's until the next call. */
static GAsyncResult *
waiter_wait (Waiter *waiter)
{
        g_main_loop_run (waiter->loop);
        g_assert_nonnull (waiter->result);
        return waiter->result;
}

static void
waiter_clear (Waiter *waiter)
{
        g_clear_object (&waiter->result);
}

static gboolean
run_op_async (VhdxImage *image,
              const Op *op,
              GBytes *bytes,
              GCancellable *cancellable,
              Waiter *waiter,
              GError **error)
{
        gboolean ok;

        switch (op->kind) {
        case OP_WRITE:
                vhdx_image_write_async (image, op->offset, g_bytes_get_data (bytes, NULL),
                                        g_bytes_get_size (bytes), op->flags, G_PRIORITY_DEFAULT,
                                        cancellable, waiter_done, waiter);
                ok = vhdx_image_write_finish (image, waiter_wait (waiter), error);
                break;
        case OP_WRITE_BYTES:
                vhdx_image_write_bytes_async (image, op->offset, bytes, op->flags,
                                              G_PRIORITY_DEFAULT, cancellable, waiter_done, waiter);
                ok = vhdx_image_write_bytes_finish (image, waiter_wait (waiter), error);
                break;
        case OP_ZEROES:
                vhdx_image_write_zeroes_async (image, op->offset, op->length, op->flags,
                                               G_PRIORITY_DEFAULT, cancellable, waiter_done,
                                               waiter);
                ok = vhdx_image_write_zeroes_finish (image, waiter_wait (waiter), error);
                break;
        case OP_DISCARD:
        default:
                vhdx_image_discard_async (image, op->offset, op->length, op->flags,
                                          G_PRIORITY_DEFAULT, cancellable, waiter_done, waiter);
                ok = vhdx_image_discard_finish (image, waiter_wait (waiter), error);
                break;
        }
        waiter_clear (waiter);
        return ok;
}

/* Notifications of a property: how many, and in which thread the last. */
typedef struct {
        guint count;
        GThread *thread;
} Notified;

static void
count_notify (GObject *object, GParamSpec *pspec, gpointer user_data)
{
        Notified *notified = user_data;

        notified->count++;
        notified->thread = g_thread_self ();
}

/* What a closed image written by write_ops holds, read from its bytes: the
 * block states, a clean log, the GUIDs the image reports. */
static void
assert_closed_image (Disk *disk, VhdxImage *image, const char *data_guid_at_open)
{
        g_autofree guint64 *bat = NULL;
        g_autofree char *data_guid = NULL;
        g_autofree char *file_guid = NULL;
        static const guint8 zero_guid[16] = { 0 };
        TestSpecLayout layout;
        GStatBuf st;
        guint64 stored = 0;

        test_spec_read_layout (disk->path, &layout);
        bat = test_spec_read_payload_entries (disk->path, &layout);
        for (guint64 block = 0; block < layout.payload_blocks; block++) {
                guint state = (guint) (bat[block] & VHDX_BAT_STATE_MASK);

                g_test_message ("block %" G_GUINT64_FORMAT ": state %u", block, state);
                g_assert_cmpuint (state, ==, write_ops_block_state (disk, block));
                if (state == VHDX_PAYLOAD_FULLY_PRESENT)
                        stored += MiB;
        }
        /* Clean: the log's GUID cleared in the current header. */
        g_assert_cmpmem (layout.log_guid, 16, zero_guid, 16);
        /* The GUIDs given at the first write, as the properties now say. */
        data_guid = test_guid_to_text (layout.data_write_guid);
        file_guid = test_guid_to_text (layout.file_write_guid);
        g_assert_cmpstr (vhdx_image_get_data_write_guid (image), ==, data_guid);
        g_assert_cmpstr (vhdx_image_get_file_write_guid (image), ==, file_guid);
        g_assert_cmpstr (data_guid, !=, data_guid_at_open);
        g_assert_cmpuint (vhdx_image_get_allocated_size (image), ==, stored);
        g_assert_cmpint (g_stat (disk->path, &st), ==, 0);
        g_assert_cmpuint (vhdx_image_get_file_size (image), ==, (guint64) st.st_size);
}

static void
test_write_sync (void)
{
        g_autoptr (Disk) disk = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GError) error = NULL;
        g_autofree char *data_guid_at_open = NULL;
        g_autofree char *file_guid_at_open = NULL;
        Notified data_guid_notified = { 0 };
        Notified file_guid_notified = { 0 };
        gboolean read_only = TRUE;
        guint8 byte = 1;

        if (!have_qemu_img ())
                return;
        disk = disk_new (WRITE_OPS_SIZE);
        image = disk_open (disk, VHDX_OPEN_FLAGS_READ_WRITE);
        g_object_get (image, "read-only", &read_only, NULL);
        g_assert_false (read_only);
        g_assert_false (vhdx_image_is_read_only (image));
        /* QEMU's empty image stores no block; the count is made again after writes. */
        g_assert_cmpuint (vhdx_image_get_allocated_size (image), ==, 0);
        data_guid_at_open = g_strdup (vhdx_image_get_data_write_guid (image));
        file_guid_at_open = g_strdup (vhdx_image_get_file_write_guid (image));
        g_signal_connect (image, "notify::data-write-guid", G_CALLBACK (count_notify),
                          &data_guid_notified);
        g_signal_connect (image, "notify::file-write-guid", G_CALLBACK (count_notify),
                          &file_guid_notified);

        for (gsize i = 0; i < G_N_ELEMENTS (write_ops); i++) {
                g_autoptr (GBytes) bytes = model_op (disk, &write_ops[i], 100 + i);

                test_assert_ok (run_op (image, &write_ops[i], bytes, NULL, &error), error);
                /* Reads see each change at once. */
                assert_reads_model (image, disk);
        }
        g_assert_cmpuint (vhdx_image_get_allocated_size (image), ==, 15 * MiB);
        /* The properties keep the GUIDs of the open until the close. */
        g_assert_cmpstr (vhdx_image_get_data_write_guid (image), ==, data_guid_at_open);
        test_assert_ok (vhdx_image_flush (image, NULL, &error), error);
        test_assert_ok (vhdx_image_close (image, NULL, &error), error);
        g_assert_cmpuint (data_guid_notified.count, ==, 1);
        g_assert_cmpuint (file_guid_notified.count, ==, 1);
        g_assert_cmpstr (vhdx_image_get_file_write_guid (image), !=, file_guid_at_open);
        assert_closed_image (disk, image, data_guid_at_open);

        /* Closed: reads go on, writes and flushes are refused, closing again is nothing. */
        assert_reads_model (image, disk);
        g_assert_false (vhdx_image_write (image, 0, &byte, 1, VHDX_WRITE_FLAGS_NONE, NULL, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED);
        g_clear_error (&error);
        g_assert_false (vhdx_image_flush (image, NULL, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED);
        g_clear_error (&error);
        test_assert_ok (vhdx_image_close (image, NULL, &error), error);
        g_assert_cmpuint (data_guid_notified.count, ==, 1);
        g_clear_object (&image);

        assert_qemu_reads_model (disk, disk->path);
}

static void
test_write_async (void)
{
        g_autoptr (Disk) disk = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
        g_autofree char *data_guid_at_open = NULL;
        Waiter waiter = { loop, NULL };
        Notified notified = { 0 };

        if (!have_qemu_img ())
                return;
        disk = disk_new (WRITE_OPS_SIZE);
        image = disk_open (disk, VHDX_OPEN_FLAGS_READ_WRITE);
        data_guid_at_open = g_strdup (vhdx_image_get_data_write_guid (image));
        g_signal_connect (image, "notify::data-write-guid", G_CALLBACK (count_notify), &notified);

        for (gsize i = 0; i < G_N_ELEMENTS (write_ops); i++) {
                g_autoptr (GBytes) bytes = model_op (disk, &write_ops[i], 200 + i);

                test_assert_ok (run_op_async (image, &write_ops[i], bytes, NULL, &waiter, &error),
                                error);
        }
        assert_reads_model (image, disk);

        vhdx_image_flush_async (image, G_PRIORITY_DEFAULT, NULL, waiter_done, &waiter);
        test_assert_ok (vhdx_image_flush_finish (image, waiter_wait (&waiter), &error), error);
        waiter_clear (&waiter);
        vhdx_image_close_async (image, G_PRIORITY_DEFAULT, NULL, waiter_done, &waiter);
        test_assert_ok (vhdx_image_close_finish (image, waiter_wait (&waiter), &error), error);
        waiter_clear (&waiter);
        /* Notified in the thread that runs the loop, not in the worker. */
        g_assert_cmpuint (notified.count, ==, 1);
        g_assert_true (notified.thread == g_thread_self ());
        assert_closed_image (disk, image, data_guid_at_open);
        g_clear_object (&image);

        assert_qemu_reads_model (disk, disk->path);
}

/* What was flushed is in the file: a copy taken then, opened by QEMU, which
 * replays its log, reads as the model. */
static void
test_write_flush_durable (void)
{
        g_autoptr (Disk) disk = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = random_bytes (3 * MiB, 7);
        g_autoptr (GBytes) later = random_bytes (MiB, 8);
        g_autoptr (GFile) file = NULL;
        g_autoptr (GFile) copy = NULL;
        g_autofree char *copy_path = NULL;
        const char *replay[] = { "qemu-io", "-f", "vhdx", "-c", "flush", NULL, NULL };

        if (!have_qemu_img ())
                return;
        if (!test_have_program ("qemu-io")) {
                g_test_skip ("qemu-io is not installed: it replays the log of the copy");
                return;
        }
        disk = disk_new (8 * MiB);
        copy_path = g_build_filename (disk->dir, "copy.vhdx", NULL);
        image = disk_open (disk, VHDX_OPEN_FLAGS_READ_WRITE);
        test_assert_ok (vhdx_image_write_bytes (image, MiB + 512, bytes, VHDX_WRITE_FLAGS_NONE,
                                                NULL, &error),
                        error);
        model_write (disk, MiB + 512, bytes);
        test_assert_ok (vhdx_image_flush (image, NULL, &error), error);
        file = g_file_new_for_path (disk->path);
        copy = g_file_new_for_path (copy_path);
        test_assert_ok (g_file_copy (file, copy, G_FILE_COPY_NONE, NULL, NULL, NULL, &error),
                        error);
        /* Written after the copy was taken: only the image gets it, closed
         * when it is released. */
        test_assert_ok (vhdx_image_write_bytes (image, 6 * MiB, later, VHDX_WRITE_FLAGS_NONE, NULL,
                                                &error),
                        error);
        g_clear_object (&image);

        replay[5] = copy_path;
        test_run (replay);
        assert_qemu_reads_model (disk, copy_path);
        model_write (disk, 6 * MiB, later);
        assert_qemu_reads_model (disk, disk->path);
}

static void
test_write_range (void)
{
        g_autoptr (Disk) disk = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = random_bytes (16, 9);
        g_autoptr (GBytes) empty = g_bytes_new (NULL, 0);
        guint8 buf[16] = { 0x5a };

        if (!have_qemu_img ())
                return;
        disk = disk_new (4 * MiB);
        image = disk_open (disk, VHDX_OPEN_FLAGS_READ_WRITE);
        /* Ranges that do not fit write nothing, not even what fits. */
        g_assert_false (vhdx_image_write (image, 4 * MiB - 8, buf, sizeof buf,
                                          VHDX_WRITE_FLAGS_NONE, NULL, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);
        g_assert_false (vhdx_image_write_bytes (image, G_MAXUINT64 - 4, bytes,
                                                VHDX_WRITE_FLAGS_NONE, NULL, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);
        g_assert_false (vhdx_image_write_zeroes (image, 3 * MiB, MiB + 1,
                                                 VHDX_WRITE_FLAGS_MAY_UNMAP, NULL, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);
        g_assert_false (
                vhdx_image_discard (image, 5 * MiB, 0, VHDX_WRITE_FLAGS_NONE, NULL, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);
        /* Empty writes at the end are in range, and change nothing. */
        test_assert_ok (vhdx_image_write_bytes (image, 4 * MiB, empty, VHDX_WRITE_FLAGS_FUA, NULL,
                                                &error),
                        error);
        test_assert_ok (vhdx_image_write_zeroes (image, 4 * MiB, 0, VHDX_WRITE_FLAGS_NONE, NULL,
                                                 &error),
                        error);
        assert_reads_model (image, disk);
        g_clear_object (&image);
        assert_qemu_reads_model (disk, disk->path);
}

static void
test_write_read_only (Fixture *fixture, gconstpointer data)
{
        g_autofree char *before = test_sha256_file (fixture->path);
        g_autofree char *after = NULL;
        g_autoptr (VhdxImage) image = open_fixture (fixture);
        g_autoptr (VhdxImage) writable = NULL;
        g_autoptr (GBytes) bytes = random_bytes (4096, 10);
        g_autoptr (GError) error = NULL;
        g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
        g_autoptr (GIOStream) stream = NULL;
        g_autofree guint8 *found = g_malloc (64 * MiB);
        Waiter waiter = { loop, NULL };
        gboolean read_only = FALSE;
        gsize written = 99;

        g_object_get (image, "read-only", &read_only, NULL);
        g_assert_true (read_only);
        g_assert_true (vhdx_image_is_read_only (image));

        for (gsize i = 0; i < G_N_ELEMENTS (write_ops); i++) {
                g_assert_false (run_op (image, &write_ops[i], bytes, NULL, &error));
                g_assert_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
                g_clear_error (&error);
        }
        /* The refusal comes before the range is looked at. */
        g_assert_false (vhdx_image_write_bytes (image, 64 * MiB, bytes, VHDX_WRITE_FLAGS_NONE, NULL,
                                                &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
        g_clear_error (&error);
        vhdx_image_write_bytes_async (image, 0, bytes, VHDX_WRITE_FLAGS_FUA, G_PRIORITY_DEFAULT,
                                      NULL, waiter_done, &waiter);
        g_assert_false (vhdx_image_write_bytes_finish (image, waiter_wait (&waiter), &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
        g_clear_error (&error);
        waiter_clear (&waiter);
        stream = vhdx_image_open_io_stream (image);
        g_assert_false (g_output_stream_write_all (g_io_stream_get_output_stream (stream),
                                                   g_bytes_get_data (bytes, NULL), 4096, &written,
                                                   NULL, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
        g_assert_cmpuint (written, ==, 0);
        g_clear_error (&error);
        /* Nothing to flush or close. */
        test_assert_ok (vhdx_image_flush (image, NULL, &error), error);
        test_assert_ok (g_io_stream_close (stream, NULL, &error), error);
        test_assert_ok (vhdx_image_close (image, NULL, &error), error);
        test_assert_ok (vhdx_image_read (image, 0, found, 64 * MiB, NULL, &error), error);
        assert_raw_range (fixture->gen, found, 0, 64 * MiB);
        g_clear_object (&stream);
        g_clear_object (&image);

        after = test_sha256_file (fixture->path);
        g_assert_cmpstr (after, ==, before);

        writable = open_path_with_flags (fixture->path, VHDX_OPEN_FLAGS_READ_WRITE, &error);
        g_assert_no_error (error);
        g_assert_false (vhdx_image_is_read_only (writable));
}

/* The parents of an image opened read-write stay read-only. */
static void
test_write_parent_read_only (void)
{
        g_autoptr (Chain) chain = chain_new ();
        g_autofree char *base_before = test_sha256_file (chain->base_path);
        g_autofree char *base_after = NULL;
        g_autoptr (VhdxImage) child = NULL;
        g_autoptr (VhdxImage) parent = NULL;
        g_autoptr (GBytes) bytes = random_bytes (8192, 11);
        g_autoptr (GError) error = NULL;
        g_autofree guint8 *expected = g_malloc (chain->size);
        g_autofree guint8 *found = g_malloc (chain->size);
        gboolean read_only = FALSE;

        child = open_path_with_flags (chain->child_path, VHDX_OPEN_FLAGS_READ_WRITE, &error);
        g_assert_no_error (error);
        g_assert_false (vhdx_image_is_read_only (child));
        parent = vhdx_image_dup_parent (child);
        g_object_get (parent, "read-only", &read_only, NULL);
        g_assert_true (read_only);
        g_assert_false (vhdx_image_write_bytes (parent, 2 * MiB, bytes, VHDX_WRITE_FLAGS_NONE, NULL,
                                                &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
        g_clear_error (&error);

        /* Over the parent's data, and over the child's. */
        test_assert_ok (vhdx_image_write_bytes (child, 2 * MiB + 512, bytes, VHDX_WRITE_FLAGS_NONE,
                                                NULL, &error),
                        error);
        test_assert_ok (vhdx_image_write_zeroes (child, 4 * MiB, 4096, VHDX_WRITE_FLAGS_NONE, NULL,
                                                 &error),
                        error);
        test_assert_ok (vhdx_image_close (child, NULL, &error), error);
        g_clear_object (&parent);
        g_clear_object (&child);

        base_after = test_sha256_file (chain->base_path);
        g_assert_cmpstr (base_after, ==, base_before);
        chain_expected (0, expected, chain->size);
        memcpy (expected + 2 * MiB + 512, g_bytes_get_data (bytes, NULL), 8192);
        memset (expected + 4 * MiB, 0, 4096);
        child = open_child (chain, NULL);
        test_assert_ok (vhdx_image_read (child, 0, found, chain->size, NULL, &error), error);
        assert_bytes_equal (found, expected, chain->size, 0);
}

/* A cancelled cancellable: nothing is written, the file is unchanged. */
static void
test_write_cancelled (void)
{
        g_autoptr (Disk) disk = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GCancellable) cancellable = g_cancellable_new ();
        g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
        g_autoptr (GBytes) bytes = random_bytes (MiB, 12);
        g_autofree char *before = NULL;
        g_autofree char *after = NULL;
        Waiter waiter = { loop, NULL };

        if (!have_qemu_img ())
                return;
        disk = disk_new (WRITE_OPS_SIZE);
        before = test_sha256_file (disk->path);
        image = disk_open (disk, VHDX_OPEN_FLAGS_READ_WRITE);
        g_cancellable_cancel (cancellable);
        for (gsize i = 0; i < G_N_ELEMENTS (write_ops); i++) {
                g_assert_false (run_op (image, &write_ops[i], bytes, cancellable, &error));
                g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
                g_clear_error (&error);
                g_assert_false (
                        run_op_async (image, &write_ops[i], bytes, cancellable, &waiter, &error));
                g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
                g_clear_error (&error);
        }
        g_assert_false (vhdx_image_flush (image, cancellable, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_clear_error (&error);
        vhdx_image_flush_async (image, G_PRIORITY_DEFAULT, cancellable, waiter_done, &waiter);
        g_assert_false (vhdx_image_flush_finish (image, waiter_wait (&waiter), &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_clear_error (&error);
        waiter_clear (&waiter);
        g_assert_false (vhdx_image_close (image, cancellable, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_clear_error (&error);
        vhdx_image_close_async (image, G_PRIORITY_DEFAULT, cancellable, waiter_done, &waiter);
        g_assert_false (vhdx_image_close_finish (image, waiter_wait (&waiter), &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_clear_error (&error);
        waiter_clear (&waiter);
        assert_reads_model (image, disk);
        g_clear_object (&image);
        after = test_sha256_file (disk->path);
        g_assert_cmpstr (after, ==, before);

        /* The cancelled close did not close: the image can still be written. */
        image = disk_open (disk, VHDX_OPEN_FLAGS_READ_WRITE);
        g_assert_false (vhdx_image_close (image, cancellable, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_clear_error (&error);
        test_assert_ok (vhdx_image_write_bytes (image, 5 * MiB, bytes, VHDX_WRITE_FLAGS_NONE, NULL,
                                                &error),
                        error);
        model_write (disk, 5 * MiB, bytes);
        test_assert_ok (vhdx_image_close (image, NULL, &error), error);
        g_clear_object (&image);
        assert_qemu_reads_model (disk, disk->path);
}

typedef struct {
        VhdxImage *image;
        GCancellable *cancellable;
} WriteWatcher;

/* Cancels as soon as the first byte of the write reads back. */
static gpointer
cancel_after_first_write (gpointer user_data)
{
        WriteWatcher *watcher = user_data;
        guint8 byte = 0;

        while (byte == 0) {
                g_autoptr (GError) error = NULL;

                test_assert_ok (vhdx_image_read (watcher->image, 0, &byte, 1, NULL, &error), error);
        }
        g_cancellable_cancel (watcher->cancellable);
        return NULL;
}

/* One long write on a fresh disk, raced by the canceller: FALSE when the
 * write ended before the canceller saw its first byte; TRUE when it stopped
 * at the cancellation, after checking that it kept what it wrote. */
static gboolean
write_cancelled_once (const guint8 *data, gsize size)
{
        g_autoptr (Disk) disk = disk_new (size);
        g_autoptr (VhdxImage) image = disk_open (disk, VHDX_OPEN_FLAGS_READ_WRITE);
        g_autoptr (GError) error = NULL;
        g_autoptr (GCancellable) cancellable = g_cancellable_new ();
        guint8 first = 0, last = 0;
        WriteWatcher watcher = { image, cancellable };
        GThread *thread = g_thread_new ("canceller", cancel_after_first_write, &watcher);
        gboolean written =
                vhdx_image_write (image, 0, data, size, VHDX_WRITE_FLAGS_NONE, cancellable, &error);

        g_thread_join (thread);
        if (written)
                return FALSE;
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_clear_error (&error);
        test_assert_ok (vhdx_image_read (image, 0, &first, 1, NULL, &error), error);
        test_assert_ok (vhdx_image_read (image, size - 1, &last, 1, NULL, &error), error);
        g_assert_cmpuint (first, ==, 0xa5);
        g_assert_cmpuint (last, ==, 0);
        return TRUE;
}

/* A long write notices a cancellation between its chunks and stops, keeping
 * what it wrote.  On a busy machine the write may end before the canceller
 * runs: the race is run again, on a fresh disk, a bounded number of times. */
static void
test_write_cancelled_midway (void)
{
        const gsize size = 128 * MiB;
        const guint attempts = 10;
        g_autofree guint8 *data = NULL;

        if (!have_qemu_img ())
                return;
        data = g_malloc (size);
        memset (data, 0xa5, size);
        for (guint i = 0; i < attempts; i++) {
                if (write_cancelled_once (data, size))
                        return;
                g_test_message ("attempt %u: the write ended before it was cancelled", i + 1);
        }
        g_test_fail_printf ("the write never stopped at a cancellation in %u attempts", attempts);
}

/* Streams: seek, write and flush through the output stream, read back
 * through the input stream. */
/* The progress of an asynchronous resize: where and how often it was
 * reported, and whether its data was freed, once. */
typedef struct {
        guint reports;
        gboolean backwards;
        gboolean over_total;
        gboolean in_other_thread;
        GThread *loop_thread;
        guint64 last_done;
        guint freed;
} ResizeReports;

static void
resize_report (guint64 done, guint64 total, gpointer user_data)
{
        ResizeReports *reports = user_data;

        g_assert_cmpuint (reports->freed, ==, 0);
        reports->reports++;
        reports->backwards |= done < reports->last_done;
        reports->over_total |= done > total;
        reports->in_other_thread |= g_thread_self () != reports->loop_thread;
        reports->last_done = done;
}

static void
resize_reports_free (gpointer user_data)
{
        ((ResizeReports *) user_data)->freed++;
}

/* An image of QEMU's grown asynchronously far past what its BAT region
 * maps: the progress and the notification come in the loop's thread, the
 * data as before, zeros after, and QEMU finds the image clean. */
static void
test_resize_async (void)
{
        g_autoptr (Disk) disk = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = random_bytes (3 * MiB, 21);
        g_autofree guint8 *tail = g_malloc (MiB);
        g_autofree guint8 *zeros = g_malloc0 (MiB);
        const guint64 size = G_GUINT64_CONSTANT (200) << 30;
        const char *check[] = { "qemu-img", "check", "-q", "-f", "vhdx", NULL, NULL };
        Waiter waiter = { 0 };
        ResizeReports reports = { .loop_thread = g_thread_self () };
        Notified notified = { 0 };

        if (!have_qemu_img ())
                return;
        disk = disk_new (8 * MiB);
        waiter.loop = g_main_loop_new (NULL, FALSE);

        /* Read-only: refused, and the progress data freed all the same. */
        image = disk_open (disk, VHDX_OPEN_FLAGS_NONE);
        vhdx_image_resize_async (image, size, VHDX_RESIZE_FLAGS_NONE, G_PRIORITY_DEFAULT,
                                 resize_report, &reports, resize_reports_free, NULL, waiter_done,
                                 &waiter);
        g_assert_false (vhdx_image_resize_finish (image, waiter_wait (&waiter), &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
        g_clear_error (&error);
        waiter_clear (&waiter);
        g_assert_cmpuint (reports.freed, ==, 1);
        g_assert_cmpuint (reports.reports, ==, 0);
        /* The worker thread drops its reference to the task, and so to
         * the image and its lock, once the task has returned. */
        g_object_add_weak_pointer (G_OBJECT (image), (gpointer *) &image);
        g_object_unref (image);
        for (guint i = 0; g_atomic_pointer_get (&image) != NULL && i < 60000; i++)
                g_usleep (1000);
        g_assert_null (image);

        image = disk_open (disk, VHDX_OPEN_FLAGS_READ_WRITE);
        test_assert_ok (vhdx_image_write_bytes (image, 2 * MiB + 512, bytes, VHDX_WRITE_FLAGS_NONE,
                                                NULL, &error),
                        error);
        model_write (disk, 2 * MiB + 512, bytes);
        g_signal_connect (image, "notify::virtual-size", G_CALLBACK (count_notify), &notified);
        reports.freed = 0;
        vhdx_image_resize_async (image, size, VHDX_RESIZE_FLAGS_NONE, G_PRIORITY_DEFAULT,
                                 resize_report, &reports, resize_reports_free, NULL, waiter_done,
                                 &waiter);
        test_assert_ok (vhdx_image_resize_finish (image, waiter_wait (&waiter), &error), error);
        waiter_clear (&waiter);
        g_assert_cmpuint (reports.freed, ==, 1);
        g_assert_false (reports.backwards);
        g_assert_false (reports.over_total);
        g_assert_false (reports.in_other_thread);
        g_assert_cmpuint (notified.count, ==, 1);
        g_assert_true (notified.thread == g_thread_self ());
        g_assert_cmpuint (vhdx_image_get_virtual_size (image), ==, size);
        assert_reads_model (image, disk);
        test_assert_ok (vhdx_image_read (image, size - MiB, tail, MiB, NULL, &error), error);
        test_assert_bytes_equal (tail, zeros, MiB, size - MiB, "the end of the grown disk");
        test_assert_ok (vhdx_image_close (image, NULL, &error), error);
        g_clear_object (&image);
        g_main_loop_unref (waiter.loop);

        check[5] = disk->path;
        test_run (check);
}

static void
test_write_stream (void)
{
        g_autoptr (Disk) disk = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GIOStream) stream = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
        g_autoptr (GBytes) first = random_bytes (300 * KiB, 13);
        g_autoptr (GBytes) second = random_bytes (2000, 14);
        g_autoptr (GBytes) third = random_bytes (100, 15);
        g_autoptr (GBytes) fourth = random_bytes (MiB + MiB / 2, 16);
        g_autoptr (GBytes) after_close = random_bytes (512, 17);
        g_autofree guint8 *found = NULL;
        Waiter waiter = { loop, NULL };
        GOutputStream *output;
        GInputStream *input;
        GSeekable *seekable;
        gsize written = 0;
        gsize n_read = 0;
        gssize n;

        if (!have_qemu_img ())
                return;
        disk = disk_new (8 * MiB);
        image = disk_open (disk, VHDX_OPEN_FLAGS_READ_WRITE);
        stream = vhdx_image_open_io_stream (image);
        output = g_io_stream_get_output_stream (stream);
        input = g_io_stream_get_input_stream (stream);
        seekable = G_SEEKABLE (output);
        g_assert_true (VHDX_IS_OUTPUT_STREAM (output));
        g_assert_true (VHDX_IS_INPUT_STREAM (input));
        g_assert_true (vhdx_output_stream_get_image (VHDX_OUTPUT_STREAM (output)) == image);
        g_assert_true (g_seekable_can_seek (seekable));
        g_assert_false (g_seekable_can_truncate (seekable));
        g_assert_cmpint (g_seekable_tell (seekable), ==, 0);

        test_assert_ok (g_seekable_seek (seekable, 7 * MiB - 100, G_SEEK_SET, NULL, &error), error);
        test_assert_ok (g_output_stream_write_all (output, g_bytes_get_data (first, NULL),
                                                   g_bytes_get_size (first), &written, NULL,
                                                   &error),
                        error);
        g_assert_cmpuint (written, ==, g_bytes_get_size (first));
        model_write (disk, 7 * MiB - 100, first);
        g_assert_cmpint (g_seekable_tell (seekable), ==, 7 * MiB - 100 + 300 * KiB);

        test_assert_ok (g_seekable_seek (seekable, -1000, G_SEEK_CUR, NULL, &error), error);
        test_assert_ok (g_output_stream_write_all (output, g_bytes_get_data (second, NULL),
                                                   g_bytes_get_size (second), &written, NULL,
                                                   &error),
                        error);
        model_write (disk, 7 * MiB - 100 + 300 * KiB - 1000, second);

        /* The end: a short write, then no space, also past the end. */
        test_assert_ok (g_seekable_seek (seekable, -50, G_SEEK_END, NULL, &error), error);
        n = g_output_stream_write (output, g_bytes_get_data (third, NULL), 100, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpint (n, ==, 50);
        memcpy (disk->model + 8 * MiB - 50, g_bytes_get_data (third, NULL), 50);
        g_assert_cmpint (g_seekable_tell (seekable), ==, 8 * MiB);
        n = g_output_stream_write (output, g_bytes_get_data (third, NULL), 100, NULL, &error);
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
        g_assert_cmpint (n, ==, -1);
        g_clear_error (&error);
        test_assert_ok (g_seekable_seek (seekable, 9 * MiB, G_SEEK_SET, NULL, &error), error);
        g_assert_false (g_output_stream_write_all (output, g_bytes_get_data (third, NULL), 100,
                                                   &written, NULL, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
        g_assert_cmpuint (written, ==, 0);
        g_clear_error (&error);
        g_assert_false (g_seekable_seek (seekable, -1, G_SEEK_SET, NULL, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        g_clear_error (&error);
        g_assert_false (g_seekable_truncate (seekable, 0, NULL, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
        g_clear_error (&error);

        /* Asynchronous writes and flushes, in a worker thread. */
        test_assert_ok (g_seekable_seek (seekable, 2 * MiB - 7, G_SEEK_SET, NULL, &error), error);
        g_output_stream_write_all_async (output, g_bytes_get_data (fourth, NULL),
                                         g_bytes_get_size (fourth), G_PRIORITY_DEFAULT, NULL,
                                         waiter_done, &waiter);
        test_assert_ok (g_output_stream_write_all_finish (output, waiter_wait (&waiter), &written,
                                                          &error),
                        error);
        waiter_clear (&waiter);
        g_assert_cmpuint (written, ==, g_bytes_get_size (fourth));
        model_write (disk, 2 * MiB - 7, fourth);
        g_output_stream_flush_async (output, G_PRIORITY_DEFAULT, NULL, waiter_done, &waiter);
        test_assert_ok (g_output_stream_flush_finish (output, waiter_wait (&waiter), &error),
                        error);
        waiter_clear (&waiter);
        test_assert_ok (g_output_stream_flush (output, NULL, &error), error);

        /* The input stream has its own position, and reads what was written. */
        found = g_malloc (disk->size);
        g_assert_cmpint (g_seekable_tell (G_SEEKABLE (input)), ==, 0);
        test_assert_ok (g_input_stream_read_all (input, found, disk->size, &n_read, NULL, &error),
                        error);
        g_assert_cmpuint (n_read, ==, disk->size);
        test_assert_bytes_equal (found, disk->model, disk->size, 0, "the disk read by the stream");
        test_assert_ok (g_seekable_seek (G_SEEKABLE (input), 7 * MiB - 100, G_SEEK_SET, NULL,
                                         &error),
                        error);
        n = g_input_stream_read (input, found, 300 * KiB, NULL, &error);
        g_assert_no_error (error);
        g_assert_cmpint (n, ==, 300 * KiB);
        test_assert_bytes_equal (found, disk->model + 7 * MiB - 100, 300 * KiB, 7 * MiB - 100,
                                 "a range read by the stream");

        /* Closing the stream leaves the image open. */
        test_assert_ok (g_io_stream_close (stream, NULL, &error), error);
        g_assert_true (g_output_stream_is_closed (output));
        test_assert_ok (vhdx_image_write_bytes (image, 0, after_close, VHDX_WRITE_FLAGS_NONE, NULL,
                                                &error),
                        error);
        model_write (disk, 0, after_close);
        test_assert_ok (vhdx_image_close (image, NULL, &error), error);
        g_clear_object (&stream);
        g_clear_object (&image);
        assert_qemu_reads_model (disk, disk->path);
}

/* Whether qemu-img info opens @path: QEMU refuses an image that a writer
 * locks as it does. */
static gboolean
qemu_img_info_opens (const char *path)
{
        const char *argv[] = { "qemu-img", "info", path, NULL };
        int status;

        g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL,
                                     G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL |
                                             G_SPAWN_STDERR_TO_DEV_NULL,
                                     NULL, NULL, NULL, NULL, &status, NULL));
        return g_spawn_check_wait_status (status, NULL);
}

static void
test_lock_in_use (void)
{
        g_autoptr (Disk) disk = NULL;
        g_autoptr (VhdxImage) writer = NULL;
        g_autoptr (VhdxImage) reader = NULL;
        g_autoptr (GError) error = NULL;
        gboolean in_use = FALSE;

        if (!have_qemu_img ())
                return;
        disk = disk_new (4 * MiB);
        writer = disk_open (disk, VHDX_OPEN_FLAGS_READ_WRITE);
        g_assert_false (vhdx_image_is_in_use (writer));
        g_assert_false (qemu_img_info_opens (disk->path));

        /* A reader is refused while the writer has the image... */
        reader = open_path_with_flags (disk->path, VHDX_OPEN_FLAGS_NONE, &error);
        g_assert_null (reader);
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BUSY);
        g_clear_error (&error);
        /* ...but not with force-share, which says the image is in use. */
        reader = disk_open (disk, VHDX_OPEN_FLAGS_FORCE_SHARE);
        g_object_get (reader, "in-use", &in_use, NULL);
        g_assert_true (in_use);
        g_assert_true (vhdx_image_is_in_use (reader));
        g_clear_object (&reader);
        /* Force-share never writes. */
        reader = open_path_with_flags (disk->path,
                                       VHDX_OPEN_FLAGS_FORCE_SHARE | VHDX_OPEN_FLAGS_READ_WRITE,
                                       &error);
        g_assert_null (reader);
        g_assert_nonnull (error);
        g_clear_error (&error);

        /* Closing releases the writer's lock. */
        test_assert_ok (vhdx_image_close (writer, NULL, &error), error);
        g_assert_true (qemu_img_info_opens (disk->path));
        reader = disk_open (disk, VHDX_OPEN_FLAGS_FORCE_SHARE);
        g_assert_false (vhdx_image_is_in_use (reader));
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
        g_test_add ("/image/read/async-many", Fixture, NULL, fixture_set_up, test_read_async_many,
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
        g_test_add_func ("/image/write/sync", test_write_sync);
        g_test_add_func ("/image/write/async", test_write_async);
        g_test_add_func ("/image/write/flush-durable", test_write_flush_durable);
        g_test_add_func ("/image/write/range", test_write_range);
        g_test_add ("/image/write/read-only", Fixture, NULL, fixture_set_up, test_write_read_only,
                    fixture_tear_down);
        g_test_add_func ("/image/write/parent-read-only", test_write_parent_read_only);
        g_test_add_func ("/image/write/cancelled", test_write_cancelled);
        g_test_add_func ("/image/write/cancelled-midway", test_write_cancelled_midway);
        g_test_add_func ("/image/write/stream", test_write_stream);
        g_test_add_func ("/image/lock/in-use", test_lock_in_use);
        g_test_add_func ("/image/resize/async", test_resize_async);

        return g_test_run ();
}
