/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes in place, checked against independent oracles: a raw model of the
 * disk kept by the test, QEMU (qemu-img check and compare) for the 512-byte
 * fixed and dynamic images it reads, libvhdi for differencing and 4 KiB
 * images, and the headers and BAT read by hand (test_spec_*) for the
 * specification's rules on identifiers, the log and unknown structures.
 * Images are made by qemu-img where QEMU can make them, else by the
 * project's own creator or the test generator.
 */
#include "config.h"

#include "test-io.h"
#include "test-util.h"
#include "vhdx-create.h"
#include "vhdx-gen.h"
#include "vhdx-writer.h"

#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef HAVE_LIBVHDI
#include <libvhdi.h>
#endif

#define MiB (G_GUINT64_CONSTANT (1) << 20)

/* Images. */

static gboolean
have_qemu_img (void)
{
        if (test_have_program ("qemu-img"))
                return TRUE;
        g_test_skip ("qemu-img is not installed: QEMU is this test's oracle");
        return FALSE;
}

static void
make_qemu_image (const char *path, const char *subformat, guint64 size, guint block_mib)
{
        g_autofree char *options =
                g_strdup_printf ("subformat=%s,block_size=%uM", subformat, block_mib);
        g_autofree char *size_text = g_strdup_printf ("%" G_GUINT64_FORMAT, size);
        const char *argv[] = { "qemu-img", "create", "-q", "-f",      "vhdx",
                               "-o",       options,  path, size_text, NULL };

        test_run (argv);
}

static void
make_our_image (const char *path, VhdxCreateParams *params, const guint8 *data)
{
        g_autoptr (GError) error = NULL;
        int fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        g_autoptr (VhdxIo) io = NULL;
        g_autoptr (VhdxCreator) creator = NULL;

        g_assert_cmpint (fd, >=, 0);
        io = vhdx_io_new_fd (fd, TRUE);
        creator = vhdx_creator_new (io, params, &error);
        g_assert_no_error (error);
        if (data != NULL)
                test_assert_ok (vhdx_creator_write (creator, 0, data, params->virtual_size, &error),
                                error);
        test_assert_ok (vhdx_creator_finish (creator, &error), error);
}

static VhdxFile *
open_image (const char *path, const char *parent, VhdxOpenFlags flags)
{
        g_autoptr (GError) error = NULL;
        VhdxOpenOptions options = { .path = path, .parent_path = parent };
        VhdxIo *io = vhdx_io_open_path (path, flags & VHDX_OPEN_FLAGS_READ_WRITE, &error);
        VhdxFile *file;

        g_assert_no_error (error);
        file = vhdx_file_open_full (io, flags, &options, &error);
        g_assert_no_error (error);
        return file;
}

static void
write_file (const char *path, const guint8 *data, gsize length)
{
        g_autoptr (GError) error = NULL;

        test_assert_ok (g_file_set_contents (path, (const char *) data, (gssize) length, &error),
                        error);
}

/* The disk as our read-only open reads it equals @model. */
static void
assert_reads (const char *path, const char *parent, const guint8 *model, guint64 size)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = open_image (path, parent, VHDX_OPEN_FLAGS_NONE);
        g_autofree guint8 *found = g_malloc (size);
        g_autoptr (GPtrArray) problems = vhdx_problems_new ();

        test_assert_ok (vhdx_file_read (file, 0, found, size, &error), error);
        test_assert_bytes_equal (found, model, size, 0, "the disk read back");
        test_assert_ok (vhdx_file_check (file, problems, &error), error);
        for (guint i = 0; i < problems->len; i++) {
                const VhdxProblem *p = g_ptr_array_index (problems, i);
                g_assert_cmpint (p->severity, !=, VHDX_SEVERITY_ERROR);
        }
}

/* QEMU finds no error in @path and reads the disk that @model holds. */
static void
assert_qemu_reads (const char *dir, const char *path, const guint8 *model, guint64 size)
{
        g_autofree char *raw = g_build_filename (dir, "model.raw", NULL);
        const char *check[] = { "qemu-img", "check", "-q", "-f", "vhdx", path, NULL };
        const char *compare[] = { "qemu-img", "compare", "-q", "-f", "vhdx",
                                  "-F",       "raw",     path, raw,  NULL };

        write_file (raw, model, size);
        test_run (check);
        test_run (compare);
}

#ifdef HAVE_LIBVHDI
static void
assert_libvhdi_reads (const char *path, const char *parent, const guint8 *model, guint64 size)
{
        libvhdi_file_t *child = NULL, *base = NULL;
        libvhdi_error_t *error = NULL;
        g_autofree guint8 *found = g_malloc (size);

        g_assert_cmpint (libvhdi_file_initialize (&child, &error), ==, 1);
        g_assert_cmpint (libvhdi_file_open (child, path, LIBVHDI_OPEN_READ, &error), ==, 1);
        if (parent != NULL) {
                g_assert_cmpint (libvhdi_file_initialize (&base, &error), ==, 1);
                g_assert_cmpint (libvhdi_file_open (base, parent, LIBVHDI_OPEN_READ, &error), ==,
                                 1);
                g_assert_cmpint (libvhdi_file_set_parent_file (child, base, &error), ==, 1);
        }
        g_assert_cmpint (libvhdi_file_read_buffer_at_offset (child, found, size, 0, &error), ==,
                         (ssize_t) size);
        test_assert_bytes_equal (found, model, size, 0, "libvhdi's read of the disk");
        libvhdi_file_close (child, &error);
        libvhdi_file_free (&child, &error);
        if (base != NULL) {
                libvhdi_file_close (base, &error);
                libvhdi_file_free (&base, &error);
        }
}
#endif

static void
compare_with_libvhdi (const char *path, const char *parent, const guint8 *model, guint64 size)
{
#ifdef HAVE_LIBVHDI
        assert_libvhdi_reads (path, parent, model, size);
#else
        g_test_skip ("libvhdi is not available: the disk was compared with the model only");
#endif
}

/* Workloads. */

typedef enum {
        OP_WRITE,
        OP_ZERO,
        OP_ZERO_UNMAP,
        OP_DISCARD,
        OP_FLUSH,
} OpKind;

typedef struct {
        gboolean unaligned;    /* writes that cover parts of sectors */
        gboolean whole_blocks; /* zeroes and discards of whole blocks */
        guint n_ops;
} Workload;

/* Apply @n_ops random operations to @file and to @model: writes of a
 * random pattern, zeroes, discards (which make the blocks they cover
 * entirely read as zeros) and flushes. */
static void
run_workload (VhdxFile *file, guint8 *model, const Workload *wl, guint32 seed)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GRand) rand = g_rand_new_with_seed (seed);
        const VhdxInfo *info = vhdx_file_get_info (file);
        guint64 size = info->virtual_size;
        guint32 ss = info->logical_sector_size;
        guint64 bs = info->block_size;

        for (guint i = 0; i < wl->n_ops; i++) {
                guint pick = g_rand_int_range (rand, 0, 100);
                OpKind kind = pick < 60   ? OP_WRITE
                              : pick < 72 ? OP_ZERO
                              : pick < 80 ? OP_ZERO_UNMAP
                              : pick < 90 ? OP_DISCARD
                                          : OP_FLUSH;
                guint64 offset, length, n;

                if (kind != OP_WRITE && kind != OP_FLUSH && wl->whole_blocks &&
                    g_rand_boolean (rand)) {
                        guint64 first = g_rand_int_range (rand, 0, (gint32) (size / bs));
                        offset = first * bs;
                        n = bs * (guint64) g_rand_int_range (rand, 1, 3);
                        length = MIN (size - offset, n);
                } else if (wl->unaligned && kind == OP_WRITE && g_rand_boolean (rand)) {
                        offset = g_rand_int_range (rand, 0, (gint32) (size - 1));
                        n = (guint64) g_rand_int_range (rand, 1, 3 * (gint32) ss);
                        length = MIN (size - offset, n);
                } else {
                        guint64 sectors = size / ss;
                        offset = g_rand_int_range (rand, 0, (gint32) sectors) * ss;
                        n = (guint64) ss * (guint64) g_rand_int_range (rand, 1, 600);
                        length = MIN (size - offset, n);
                }
                switch (kind) {
                case OP_WRITE: {
                        g_autofree guint8 *data = g_malloc (length);
                        for (guint64 j = 0; j < length; j++)
                                data[j] = (guint8) g_rand_int (rand);
                        test_assert_ok (vhdx_file_write (file, offset, data, length,
                                                         VHDX_WRITE_FLAGS_NONE, &error),
                                        error);
                        memcpy (model + offset, data, length);
                        break;
                }
                case OP_ZERO:
                case OP_ZERO_UNMAP:
                        test_assert_ok (vhdx_file_write_zeroes (file, offset, length,
                                                                kind == OP_ZERO_UNMAP
                                                                        ? VHDX_WRITE_FLAGS_MAY_UNMAP
                                                                        : VHDX_WRITE_FLAGS_NONE,
                                                                &error),
                                        error);
                        memset (model + offset, 0, length);
                        break;
                case OP_DISCARD:
                        test_assert_ok (vhdx_file_discard (file, offset, length,
                                                           VHDX_WRITE_FLAGS_NONE, &error),
                                        error);
                        /* Fixed images keep their blocks and their data. */
                        if (info->disk_type != VHDX_DISK_TYPE_FIXED) {
                                guint64 first = (offset + bs - 1) / bs;
                                guint64 end = offset + length == size ? (size + bs - 1) / bs
                                                                      : (offset + length) / bs;
                                for (guint64 b = first; b < end; b++)
                                        memset (model + b * bs, 0, MIN (bs, size - b * bs));
                        }
                        break;
                case OP_FLUSH:
                        test_assert_ok (vhdx_file_flush (file, &error), error);
                        break;
                }
        }
}

static void
write_and_close (const char *path,
                 const char *parent,
                 guint8 *model,
                 const Workload *wl,
                 guint32 seed)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = open_image (path, parent, VHDX_OPEN_FLAGS_READ_WRITE);
        g_autofree guint8 *found = NULL;
        guint64 size = vhdx_file_get_info (file)->virtual_size;

        run_workload (file, model, wl, seed);
        /* The image being written reads what was written. */
        found = g_malloc (size);
        test_assert_ok (vhdx_file_read (file, 0, found, size, &error), error);
        test_assert_bytes_equal (found, model, size, 0, "the disk being written");
        test_assert_ok (vhdx_file_close (file, &error), error);
}

/* QEMU's images: fixed and dynamic, 512-byte sectors. */
static void
test_qemu (gconstpointer data)
{
        const char *subformat = data;
        g_autofree char *dir = NULL;
        g_autofree char *path = NULL;
        g_autofree guint8 *model = NULL;
        guint64 size = 40 * MiB + 512 * 7;
        Workload wl = { TRUE, TRUE, 400 };

        if (!have_qemu_img ())
                return;
        dir = test_tmpdir_new ();
        path = g_build_filename (dir, "disk.vhdx", NULL);
        make_qemu_image (path, subformat, size, 1);
        model = g_malloc0 (size);
        for (guint32 round = 0; round < 3; round++) {
                write_and_close (path, NULL, model, &wl, 10 + round);
                assert_reads (path, NULL, model, size);
                assert_qemu_reads (dir, path, model, size);
        }
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* Our images: dynamic with 4 KiB sectors, for libvhdi. */
static void
test_dynamic_4k (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "disk.vhdx", NULL);
        guint64 size = 24 * MiB;
        g_autofree guint8 *model = g_malloc0 (size);
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                .virtual_size = size,
                .block_size = 2 * MiB,
                .logical_sector_size = 4096,
        };
        Workload wl = { TRUE, TRUE, 300 };

        make_our_image (path, &params, NULL);
        write_and_close (path, NULL, model, &wl, 7);
        assert_reads (path, NULL, model, size);
        compare_with_libvhdi (path, NULL, model, size);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* A differencing child of an image full of data: its sha256 never changes. */
static void
test_differencing (gconstpointer data)
{
        guint32 ss = GPOINTER_TO_UINT (data);
        g_autoptr (GError) error = NULL;
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *base = g_build_filename (dir, "base.vhdx", NULL);
        g_autofree char *child = g_build_filename (dir, "child.avhdx", NULL);
        guint64 size = 20 * MiB;
        g_autofree guint8 *model = g_malloc (size);
        g_autofree char *base_sha = NULL;
        g_autofree char *base_sha_after = NULL;
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                .virtual_size = size,
                .block_size = 1 * MiB,
                .logical_sector_size = ss,
        };
        VhdxCreateParams child_params = {
                .disk_type = VHDX_DISK_TYPE_DIFFERENCING,
                .virtual_size = size,
                .block_size = 2 * MiB,
                .logical_sector_size = ss,
                .parent_relative_path = "base.vhdx",
        };
        /* Partial writes make sector bitmaps; whole-block zeroes and
         * discards are left out, as libvhdi reads ZERO blocks of a child
         * from its parent (the next test covers them). */
        Workload wl = { TRUE, FALSE, 300 };

        for (guint64 i = 0; i < size; i++)
                model[i] = (guint8) (i * 7 + i / 4096);
        make_our_image (base, &params, model);
        {
                g_autoptr (VhdxFile) parent = open_image (base, NULL, VHDX_OPEN_FLAGS_NONE);
                child_params.parent_data_write_guid = vhdx_file_get_info (parent)->data_write_guid;
        }
        make_our_image (child, &child_params, NULL);
        base_sha = test_sha256_file (base);

        {
                /* One partial write first, so that the chunk has a sector bitmap. */
                g_autoptr (VhdxFile) file = open_image (child, NULL, VHDX_OPEN_FLAGS_READ_WRITE);
                guint8 sector[4096];
                memset (sector, 0xA5, sizeof sector);
                test_assert_ok (vhdx_file_write (file, ss * 3, sector, ss, VHDX_WRITE_FLAGS_NONE,
                                                 &error),
                                error);
                memcpy (model + ss * 3, sector, ss);
                test_assert_ok (vhdx_file_close (file, &error), error);
        }
        write_and_close (child, NULL, model, &wl, 3);
        assert_reads (child, NULL, model, size);
        compare_with_libvhdi (child, base, model, size);
        base_sha_after = test_sha256_file (base);
        g_assert_cmpstr (base_sha, ==, base_sha_after);

        /* Whole-block zeroes and discards: read back by our reader, and the
         * states they leave read by hand. */
        wl.whole_blocks = TRUE;
        write_and_close (child, NULL, model, &wl, 4);
        assert_reads (child, NULL, model, size);
        {
                TestSpecLayout layout;
                g_autofree guint64 *entries = NULL;

                test_spec_read_layout (child, &layout);
                entries = test_spec_read_payload_entries (child, &layout);
                for (guint64 b = 0; b < layout.payload_blocks; b++) {
                        guint state = entries[b] & 7;
                        g_assert_true (state == 0 || state == 2 || state == 3 || state == 6 ||
                                       state == 7);
                }
        }
        g_clear_pointer (&base_sha_after, g_free);
        base_sha_after = test_sha256_file (base);
        g_assert_cmpstr (base_sha, ==, base_sha_after);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* A write of a whole block makes it FULLY_PRESENT; a partial write in a
 * child makes it PARTIALLY_PRESENT with the chunk's bitmap present, and the
 * sectors not written come from the parent; zeroes hide the parent. */
static void
test_differencing_states (void)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *base = g_build_filename (dir, "base.vhdx", NULL);
        g_autofree char *child = g_build_filename (dir, "child.avhdx", NULL);
        guint64 size = 8 * MiB, bs = 2 * MiB;
        g_autofree guint8 *model = g_malloc (size);
        g_autofree guint8 *block = g_malloc (bs);
        g_autofree guint64 *entries = NULL;
        TestSpecLayout layout;
        VhdxCreateParams params = { .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                                    .virtual_size = size,
                                    .block_size = 1 * MiB };
        VhdxCreateParams child_params = { .disk_type = VHDX_DISK_TYPE_DIFFERENCING,
                                          .virtual_size = size,
                                          .block_size = bs,
                                          .parent_relative_path = "base.vhdx" };

        memset (model, 0x11, size);
        make_our_image (base, &params, model);
        {
                g_autoptr (VhdxFile) parent = open_image (base, NULL, VHDX_OPEN_FLAGS_NONE);
                child_params.parent_data_write_guid = vhdx_file_get_info (parent)->data_write_guid;
        }
        make_our_image (child, &child_params, NULL);
        {
                g_autoptr (VhdxFile) file = open_image (child, NULL, VHDX_OPEN_FLAGS_READ_WRITE);

                memset (block, 0x22, bs);
                /* Block 0 whole, 4 sectors of block 1, zeroes over 3 sectors of block 2. */
                test_assert_ok (vhdx_file_write (file, 0, block, bs, VHDX_WRITE_FLAGS_NONE, &error),
                                error);
                test_assert_ok (vhdx_file_write (file, bs + 512 * 10, block, 512 * 4,
                                                 VHDX_WRITE_FLAGS_NONE, &error),
                                error);
                test_assert_ok (vhdx_file_write_zeroes (file, 2 * bs + 512, 512 * 3,
                                                        VHDX_WRITE_FLAGS_MAY_UNMAP, &error),
                                error);
                /* Block 3 whole zeroes: ZERO, no space. */
                test_assert_ok (vhdx_file_write_zeroes (file, 3 * bs, bs,
                                                        VHDX_WRITE_FLAGS_MAY_UNMAP, &error),
                                error);
                test_assert_ok (vhdx_file_close (file, &error), error);
        }
        memset (model, 0x22, bs);
        memset (model + bs + 512 * 10, 0x22, 512 * 4);
        memset (model + 2 * bs + 512, 0, 512 * 3);
        memset (model + 3 * bs, 0, bs);
        assert_reads (child, NULL, model, size);

        test_spec_read_layout (child, &layout);
        entries = test_spec_read_payload_entries (child, &layout);
        g_assert_cmpuint (entries[0] & 7, ==, 6);
        g_assert_cmpuint (entries[1] & 7, ==, 7);
        g_assert_cmpuint (entries[2] & 7, ==, 7);
        g_assert_cmpuint (entries[3] & 7, ==, 2);
        g_assert_cmpuint (entries[3] >> 20, ==, 0);
        g_assert_cmpuint (test_spec_read_bat_entry (child, &layout,
                                                    test_spec_bitmap_index (&layout, 0)) &
                                  7,
                          ==, 6);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* The specification's rules on the headers (MS-VHDX 2.2.2). */

typedef struct {
        guint8 file_write_guid[16];
        guint8 data_write_guid[16];
        guint8 log_guid[16];
        guint64 sequence;
} Identity;

static void
read_identity (const char *path, Identity *id)
{
        TestSpecLayout layout;

        test_spec_read_layout (path, &layout);
        memcpy (id->file_write_guid, layout.file_write_guid, 16);
        memcpy (id->data_write_guid, layout.data_write_guid, 16);
        memcpy (id->log_guid, layout.log_guid, 16);
        id->sequence = layout.header_sequence;
}

static void
test_spec_guids (void)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "disk.vhdx", NULL);
        g_autofree char *sha_before = NULL;
        g_autofree char *sha_after = NULL;
        static const guint8 zero_guid[16];
        guint8 data[4096];
        Identity before, after;
        VhdxCreateParams params = { .disk_type = VHDX_DISK_TYPE_DYNAMIC, .virtual_size = 64 * MiB };

        make_our_image (path, &params, NULL);
        read_identity (path, &before);
        sha_before = test_sha256_file (path);

        /* Opened read-write, not changed: the file is not touched. */
        {
                g_autoptr (VhdxFile) file = open_image (path, NULL, VHDX_OPEN_FLAGS_READ_WRITE);
                /* A discard of what is not allocated changes nothing either. */
                test_assert_ok (vhdx_file_discard (file, 0, 64 * MiB, VHDX_WRITE_FLAGS_NONE,
                                                   &error),
                                error);
                test_assert_ok (vhdx_file_flush (file, &error), error);
                test_assert_ok (vhdx_file_close (file, &error), error);
        }
        sha_after = test_sha256_file (path);
        g_assert_cmpstr (sha_before, ==, sha_after);

        /* A write: new FileWriteGuid and DataWriteGuid, both headers
         * updated, and a clean log when closed. */
        {
                g_autoptr (VhdxFile) file = open_image (path, NULL, VHDX_OPEN_FLAGS_READ_WRITE);
                memset (data, 0x5A, sizeof data);
                test_assert_ok (vhdx_file_write (file, 5 * MiB, data, sizeof data,
                                                 VHDX_WRITE_FLAGS_FUA, &error),
                                error);
                test_assert_ok (vhdx_file_close (file, &error), error);
        }
        read_identity (path, &after);
        g_assert_cmpmem (after.log_guid, 16, zero_guid, 16);
        g_assert_true (memcmp (after.file_write_guid, before.file_write_guid, 16) != 0);
        g_assert_true (memcmp (after.data_write_guid, before.data_write_guid, 16) != 0);
        g_assert_cmpuint (after.sequence, >, before.sequence);
        {
                /* Both copies valid, the second copy one behind at most. */
                TestSpecLayout layout;
                test_spec_read_layout (path, &layout);
                g_assert_cmpuint (layout.header_sequence, ==, after.sequence);
        }
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* Replaying a dirty log at a read-write open: a new FileWriteGuid written
 * before the replay, the DataWriteGuid kept (nothing the disk reads
 * changed), LogGuid cleared. */
static void
test_spec_replay (void)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "dirty.vhdx", NULL);
        VhdxGenParams params;
        g_autoptr (VhdxGen) gen = NULL;
        VhdxGenDirty dirty;
        Identity before, after;
        static const guint8 zero_guid[16];
        TestIoCounts counts = { 0 };

        vhdx_gen_params_init (&params);
        params.virtual_size = 16 * MiB;
        params.block_size = 1 * MiB;
        gen = vhdx_gen_new (&params);
        test_assert_ok (vhdx_gen_write_file (gen, path, &error), error);
        test_assert_ok (vhdx_gen_make_dirty (gen, path, 3, 99, &dirty, &error), error);
        read_identity (path, &before);
        g_assert_true (memcmp (before.log_guid, zero_guid, 16) != 0);
        {
                VhdxIo *io = vhdx_io_open_path (path, TRUE, &error);
                g_autoptr (VhdxFile) file = NULL;
                g_assert_no_error (error);
                file = vhdx_file_open (test_counting_io_new (io, TRUE, &counts),
                                       VHDX_OPEN_FLAGS_READ_WRITE, &error);
                g_assert_no_error (error);
                g_assert_cmpint (vhdx_file_get_info (file)->log_state, ==, VHDX_LOG_STATE_REPLAYED);
                test_assert_ok (vhdx_file_close (file, &error), error);
        }
        read_identity (path, &after);
        g_assert_cmpmem (after.log_guid, 16, zero_guid, 16);
        g_assert_true (memcmp (after.file_write_guid, before.file_write_guid, 16) != 0);
        g_assert_cmpmem (after.data_write_guid, 16, before.data_write_guid, 16);
        /* Two header updates (new FileWriteGuid, then LogGuid cleared) of two
         * copies each, around the replay. */
        g_assert_cmpuint (after.sequence, ==, before.sequence + 4);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* Regions and metadata items the engine does not know are preserved. */
static void
test_spec_preserve (void)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "disk.vhdx", NULL);
        VhdxGenParams params;
        g_autoptr (VhdxGen) gen = NULL;
        VhdxGenLayout layout;
        VhdxGuid region = vhdx_gen_guid_from_text ("6a2a7b8c-1d2e-4f30-8a41-5b6c7d8e9f01");
        VhdxGuid item = vhdx_gen_guid_from_text ("0b1c2d3e-4f50-4a61-9b72-8c9daebfc0d1");
        g_autofree char *before = NULL, *after = NULL;
        gsize before_len, after_len;
        guint64 size = 16 * MiB;
        g_autofree guint8 *model = g_malloc0 (size);
        Workload wl = { FALSE, TRUE, 200 };

        vhdx_gen_params_init (&params);
        params.virtual_size = size;
        params.block_size = 1 * MiB;
        gen = vhdx_gen_new (&params);
        vhdx_gen_add_region (gen, &region, FALSE, 1 * MiB);
        vhdx_gen_add_metadata_item (gen, &item, 0, "kept as it is", 13);
        test_assert_ok (vhdx_gen_write_file (gen, path, &error), error);
        vhdx_gen_get_layout (gen, &layout);
        test_assert_ok (g_file_get_contents (path, &before, &before_len, &error), error);

        write_and_close (path, NULL, model, &wl, 21);
        assert_reads (path, NULL, model, size);
        test_assert_ok (g_file_get_contents (path, &after, &after_len, &error), error);
        /* The metadata region (every item) and everything up to the first
         * payload block but the headers, the log and the BAT are unchanged. */
        g_assert_cmpmem (after + layout.metadata_offset, layout.metadata_length,
                         before + layout.metadata_offset, layout.metadata_length);
        for (guint64 at = 0; at < layout.payload_offset; at += 4096) {
                gboolean header = at >= 64 * 1024 && at < 1 * MiB;
                gboolean log =
                        at >= layout.log_offset && at < layout.log_offset + layout.log_length;
                gboolean bat =
                        at >= layout.bat_offset && at < layout.bat_offset + layout.bat_length;
                if (!header && !log && !bat)
                        g_assert_cmpmem (after + at, 4096, before + at, 4096);
        }
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* A read-only image refuses writes and is not changed. */
static void
test_read_only (void)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "disk.vhdx", NULL);
        g_autofree char *sha_before = NULL, *sha_after = NULL;
        guint8 data[512] = { 1 };
        VhdxCreateParams params = { .disk_type = VHDX_DISK_TYPE_DYNAMIC, .virtual_size = 8 * MiB };

        make_our_image (path, &params, NULL);
        sha_before = test_sha256_file (path);
        {
                g_autoptr (VhdxFile) file = open_image (path, NULL, VHDX_OPEN_FLAGS_NONE);
                g_assert_false (vhdx_file_is_writable (file));
                g_assert_false (vhdx_file_write (file, 0, data, sizeof data, VHDX_WRITE_FLAGS_NONE,
                                                 &error));
                g_assert_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
                g_clear_error (&error);
                g_assert_false (
                        vhdx_file_write_zeroes (file, 0, 512, VHDX_WRITE_FLAGS_NONE, &error));
                g_assert_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
                g_clear_error (&error);
                g_assert_false (vhdx_file_discard (file, 0, 512, VHDX_WRITE_FLAGS_NONE, &error));
                g_assert_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
                g_clear_error (&error);
                /* Past the end: out of range, nothing written. */
        }
        {
                g_autoptr (VhdxFile) file = open_image (path, NULL, VHDX_OPEN_FLAGS_READ_WRITE);
                g_assert_false (vhdx_file_write (file, 8 * MiB - 256, data, sizeof data,
                                                 VHDX_WRITE_FLAGS_NONE, &error));
                g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
                g_clear_error (&error);
                test_assert_ok (vhdx_file_close (file, &error), error);
                g_assert_false (vhdx_file_write (file, 0, data, sizeof data, VHDX_WRITE_FLAGS_NONE,
                                                 &error));
                g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED);
        }
        sha_after = test_sha256_file (path);
        g_assert_cmpstr (sha_before, ==, sha_after);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/*
 * Opening for writing refuses an image whose BAT gives space of one block to
 * another too (block 1 on all of block 0, or on its second half), and
 * changes nothing; read-only, block 0 reads as it was written.
 */
static void
test_overlap_refused (gconstpointer data)
{
        guint64 shift = GPOINTER_TO_UINT (data) * MiB;
        g_autoptr (GError) error = NULL;
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "disk.vhdx", NULL);
        g_autofree char *sha_before = NULL, *sha_after = NULL;
        guint64 size = 8 * MiB, bs = 2 * MiB, entry, bat_offset;
        g_autofree guint8 *disk = g_malloc (size);
        g_autofree guint8 *block = g_malloc (bs);
        VhdxCreateParams params = { .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                                    .virtual_size = size,
                                    .block_size = bs };
        int fd;

        for (guint64 i = 0; i < size; i++)
                disk[i] = (guint8) (i / bs + 1);
        make_our_image (path, &params, disk);
        {
                g_autoptr (VhdxFile) file = open_image (path, NULL, VHDX_OPEN_FLAGS_NONE);
                bat_offset = vhdx_file_get_info (file)->bat_offset;
        }
        /* Entry 1 of the BAT, block 1, gets block 0's offset (+ @shift). */
        fd = open (path, O_RDWR | O_CLOEXEC);
        g_assert_cmpint (fd, >=, 0);
        g_assert_cmpint (pread (fd, &entry, 8, (off_t) bat_offset), ==, 8);
        entry = GUINT64_TO_LE (GUINT64_FROM_LE (entry) + shift);
        g_assert_cmpint (pwrite (fd, &entry, 8, (off_t) bat_offset + 8), ==, 8);
        close (fd);
        sha_before = test_sha256_file (path);

        {
                VhdxIo *io = vhdx_io_open_path (path, TRUE, &error);
                g_autoptr (VhdxFile) file = NULL;

                g_assert_no_error (error);
                file = vhdx_file_open (io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
                g_assert_null (file);
                g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
                g_test_message ("refused: %s", error->message);
                g_assert_nonnull (strstr (error->message, "block 1 "));
                g_assert_nonnull (strstr (error->message, "block 0 "));
                g_clear_error (&error);
        }
        {
                g_autoptr (VhdxFile) file = open_image (path, NULL, VHDX_OPEN_FLAGS_NONE);

                test_assert_ok (vhdx_file_read (file, 0, block, bs, &error), error);
                g_assert_cmpmem (block, bs, disk, bs);
        }
        sha_after = test_sha256_file (path);
        g_assert_cmpstr (sha_before, ==, sha_after);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* Freed blocks are reused only after the flush that freed them. */
static void
test_reuse (void)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "disk.vhdx", NULL);
        guint64 size = 16 * MiB, bs = 1 * MiB;
        g_autofree guint8 *block = g_malloc (bs);
        g_autofree guint8 *model = g_malloc0 (size);
        VhdxWriteStats stats;
        struct stat st1, st2;
        VhdxCreateParams params = { .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                                    .virtual_size = size,
                                    .block_size = bs };

        make_our_image (path, &params, NULL);
        memset (block, 0x77, bs);
        {
                g_autoptr (VhdxFile) file = open_image (path, NULL, VHDX_OPEN_FLAGS_READ_WRITE);
                for (guint b = 0; b < 4; b++)
                        test_assert_ok (vhdx_file_write (file, b * bs, block, bs,
                                                         VHDX_WRITE_FLAGS_NONE, &error),
                                        error);
                test_assert_ok (vhdx_file_flush (file, &error), error);
                test_assert_ok (vhdx_file_discard (file, 0, 2 * bs, VHDX_WRITE_FLAGS_NONE, &error),
                                error);
                /* Not flushed yet: new blocks take new space. */
                test_assert_ok (vhdx_file_write (file, 8 * bs, block, bs, VHDX_WRITE_FLAGS_NONE,
                                                 &error),
                                error);
                vhdx_file_get_write_stats (file, &stats);
                g_assert_cmpuint (stats.blocks_reused, ==, 0);
                g_assert_cmpuint (stats.blocks_freed, ==, 2);
                test_assert_ok (vhdx_file_flush (file, &error), error);
                g_assert_cmpint (g_stat (path, &st1), ==, 0);
                test_assert_ok (vhdx_file_write (file, 9 * bs + 4096, block, 4096,
                                                 VHDX_WRITE_FLAGS_NONE, &error),
                                error);
                test_assert_ok (vhdx_file_write (file, 10 * bs, block, bs, VHDX_WRITE_FLAGS_NONE,
                                                 &error),
                                error);
                vhdx_file_get_write_stats (file, &stats);
                g_assert_cmpuint (stats.blocks_reused, ==, 2);
                g_assert_cmpuint (stats.blocks_allocated, ==, 7);
                test_assert_ok (vhdx_file_close (file, &error), error);
        }
        g_assert_cmpint (g_stat (path, &st2), ==, 0);
        g_assert_cmpint (st2.st_size, ==, st1.st_size);
        memset (model + 2 * bs, 0x77, 2 * bs);
        memset (model + 8 * bs, 0x77, bs);
        memset (model + 9 * bs + 4096, 0x77, 4096);
        memset (model + 10 * bs, 0x77, bs);
        /* The reused block's stale bytes are gone: the rest of block 9 is zeros. */
        assert_reads (path, NULL, model, size);
        test_tmpdir_free (g_steal_pointer (&dir));
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);

        g_test_add_data_func ("/writer/qemu/dynamic", "dynamic", test_qemu);
        g_test_add_data_func ("/writer/qemu/fixed", "fixed", test_qemu);
        g_test_add_func ("/writer/ours/dynamic-4k", test_dynamic_4k);
        g_test_add_data_func ("/writer/ours/differencing-512", GUINT_TO_POINTER (512),
                              test_differencing);
        g_test_add_data_func ("/writer/ours/differencing-4k", GUINT_TO_POINTER (4096),
                              test_differencing);
        g_test_add_func ("/writer/differencing/states", test_differencing_states);
        g_test_add_func ("/writer/spec/guids", test_spec_guids);
        g_test_add_func ("/writer/spec/replay", test_spec_replay);
        g_test_add_func ("/writer/spec/preserve", test_spec_preserve);
        g_test_add_func ("/writer/read-only", test_read_only);
        g_test_add_func ("/writer/reuse", test_reuse);
        g_test_add_data_func ("/writer/overlap/whole-block", GUINT_TO_POINTER (0),
                              test_overlap_refused);
        g_test_add_data_func ("/writer/overlap/half-block", GUINT_TO_POINTER (1),
                              test_overlap_refused);
        return g_test_run ();
}
