/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An image opened read-only is never modified: every operation of the engine
 * on a qemu-img image leaves the file's checksum and modification time as
 * they were, and the engine never asks its VhdxIo to write.  The operations
 * also give the right answers: the disk's sha256 is that of qemu-img
 * convert's raw output, the extents and allocated bytes those of the write
 * qemu-io made.
 */
#include "test-util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* A VhdxIo over a descriptor that fails the test if anything writes. */
typedef struct {
        VhdxIo parent;
        VhdxIo *inner;
} GuardIo;

static gboolean
guard_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        GuardIo *self = (GuardIo *) io;

        return self->inner->vtable->pread (self->inner, buf, count, offset, n_read, error);
}

static gboolean
guard_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        return vhdx_io_get_size (((GuardIo *) io)->inner, size, error);
}

static gboolean
guard_pwrite (VhdxIo *io, const void *buf, gsize count, guint64 offset, GError **error)
{
        g_error ("the engine wrote %" G_GSIZE_FORMAT " bytes at %" G_GUINT64_FORMAT
                 " to an image opened read-only",
                 count, offset);
        return FALSE;
}

static gboolean
guard_flush (VhdxIo *io, GError **error)
{
        g_error ("the engine flushed an image opened read-only");
        return FALSE;
}

static void
guard_free (VhdxIo *io)
{
        vhdx_io_free (((GuardIo *) io)->inner);
        g_free (io);
}

static const VhdxIoVTable guard_vtable = {
        .pread = guard_pread,
        .get_size = guard_get_size,
        .pwrite = guard_pwrite,
        .flush = guard_flush,
        .free = guard_free,
};

/* What the image must read as: qemu-io wrote 0x5a over [WRITE_START, WRITE_END)
 * in whole 1 MiB blocks; the raw disk is qemu-img convert's. */
#define BLOCK_SIZE   (1024 * 1024)
#define WRITE_START  (1 * BLOCK_SIZE)
#define WRITE_END    (4 * BLOCK_SIZE)
#define VIRTUAL_SIZE (24 * BLOCK_SIZE)

/* The expected extents: data exactly where qemu-io wrote, stored where the
 * BAT read by hand says; the other blocks zeros, allocated as zeros when
 * their BAT entry says ZERO. */
static void
written_extent (guint64 offset, VhdxMapExtent *e, gpointer user_data)
{
        const guint64 *entries = user_data;
        guint64 entry = entries[offset / BLOCK_SIZE];

        if (offset >= WRITE_START && offset < WRITE_END) {
                g_assert_cmpuint (entry & VHDX_BAT_STATE_MASK, ==, VHDX_PAYLOAD_FULLY_PRESENT);
                e->kind = VHDX_EXTENT_DATA;
                e->present = TRUE;
                e->file_offset = (entry & VHDX_BAT_OFFSET_MASK) + offset % BLOCK_SIZE;
        } else {
                e->kind = VHDX_EXTENT_ZERO;
                e->present = (entry & VHDX_BAT_STATE_MASK) == VHDX_PAYLOAD_ZERO;
        }
}

static void
exercise (const char *path, const char *raw_sum)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GArray) extents = NULL;
        g_autoptr (GArray) expected = NULL;
        g_autoptr (GPtrArray) problems = NULL;
        g_autofree char *sum = NULL;
        g_autofree guint64 *entries = NULL;
        GuardIo *io = g_new0 (GuardIo, 1);
        TestSpecLayout layout;
        guint64 allocated;
        int fd;

        test_spec_read_layout (path, &layout);
        g_assert_cmpuint (layout.block_size, ==, BLOCK_SIZE);
        g_assert_cmpuint (layout.virtual_size, ==, VIRTUAL_SIZE);
        entries = test_spec_read_payload_entries (path, &layout);

        fd = open (path, O_RDONLY | O_CLOEXEC);
        g_assert_cmpint (fd, >=, 0);
        io->parent.vtable = &guard_vtable;
        io->inner = vhdx_io_new_fd (fd, TRUE);
        file = vhdx_file_open (&io->parent, VHDX_OPEN_FLAGS_NONE, &error);
        g_assert_no_error (error);
        sum = test_sha256_virtual_disk (file);
        g_assert_cmpstr (sum, ==, raw_sum);
        extents = vhdx_file_map (file, 0, vhdx_file_get_info (file)->virtual_size, &error);
        g_assert_no_error (error);
        expected = test_model_extents (0, VIRTUAL_SIZE, BLOCK_SIZE, written_extent, entries);
        test_assert_extents_equal (extents, expected, path);
        test_assert_ok (vhdx_file_get_allocated_bytes (file, &allocated, &error), error);
        g_assert_cmpuint (allocated, ==, WRITE_END - WRITE_START);
        problems = g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
        test_assert_ok (vhdx_file_check (file, problems, &error), error);
        g_assert_cmpuint (problems->len, ==, 0);
}

static void
test_unchanged (gconstpointer data)
{
        const char *subformat = data;
        g_autofree char *tmp = test_tmpdir_new ();
        g_autofree char *image = g_build_filename (tmp, "ro.vhdx", NULL);
        g_autofree char *raw = g_build_filename (tmp, "ro.raw", NULL);
        g_autofree char *opts = g_strdup_printf ("subformat=%s,block_size=1M", subformat);
        g_autofree char *before = NULL, *after = NULL, *raw_sum = NULL;
        struct stat st_before, st_after;

        if (!test_have_program ("qemu-img") || !test_have_program ("qemu-io")) {
                g_test_skip ("qemu-img and qemu-io are needed");
                test_tmpdir_free (g_steal_pointer (&tmp));
                return;
        }
        {
                const char *argv[] = { "qemu-img", "create", "-q",  "-f",  "vhdx",
                                       "-o",       opts,     image, "24M", NULL };
                test_run (argv);
        }
        {
                const char *argv[] = { "qemu-io", "-f", "vhdx", "-c", "write -q -P 0x5a 1M 3M",
                                       image,     NULL };
                test_run (argv);
        }
        /* QEMU's reading of the disk. */
        {
                const char *argv[] = { "qemu-img", "convert", "-f", "vhdx", "-O",
                                       "raw",      image,     raw,  NULL };
                test_run (argv);
        }
        raw_sum = test_sha256_file (raw);
        /* Make the file read-only too, as a user's archived image would be. */
        g_assert_cmpint (chmod (image, 0444), ==, 0);
        before = test_sha256_file (image);
        g_assert_cmpint (stat (image, &st_before), ==, 0);

        exercise (image, raw_sum);

        after = test_sha256_file (image);
        g_assert_cmpint (stat (image, &st_after), ==, 0);
        g_assert_cmpstr (before, ==, after);
        g_assert_cmpint (st_before.st_mtim.tv_sec, ==, st_after.st_mtim.tv_sec);
        g_assert_cmpint (st_before.st_mtim.tv_nsec, ==, st_after.st_mtim.tv_nsec);
        g_assert_cmpint (st_before.st_size, ==, st_after.st_size);
        test_tmpdir_free (g_steal_pointer (&tmp));
}

static void
test_refuses_read_write (void)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = g_bytes_new_static ("", 0);
        VhdxFile *file =
                vhdx_file_open (vhdx_io_new_memory (bytes), VHDX_OPEN_FLAGS_READ_WRITE, &error);

        g_assert_null (file);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED);
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);
        g_test_add_data_func ("/readonly/dynamic", "dynamic", test_unchanged);
        g_test_add_data_func ("/readonly/fixed", "fixed", test_unchanged);
        g_test_add_func ("/readonly/refuses-read-write", test_refuses_read_write);
        return g_test_run ();
}
