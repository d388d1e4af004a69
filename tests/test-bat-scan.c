/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Scans of the whole BAT (allocation figures, check) skip the holes of a
 * sparse BAT with the backends' next_data().  They must give exactly what a
 * scan that reads every entry gives: each image here is scanned through its
 * backend and again through a wrapper without next_data(), and the two must
 * agree.  The wrappers also count the bytes read, to show that the holes
 * were skipped.
 */
#include "test-util.h"
#include "vhdx-gen.h"
#include "vhdx-create.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB    (G_GUINT64_CONSTANT (1) << 20)
#define TiB    (G_GUINT64_CONSTANT (1) << 40)
#define SECTOR 4096

/* A wrapper that counts the bytes read, and forwards next_data() or not. */
typedef struct {
        VhdxIo parent;
        VhdxIo *inner;
        guint64 bytes_read;
} CountingIo;

static gboolean
counting_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        CountingIo *self = (CountingIo *) io;

        self->bytes_read += count;
        return self->inner->vtable->pread (self->inner, buf, count, offset, n_read, error);
}

static gboolean
counting_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        return vhdx_io_get_size (((CountingIo *) io)->inner, size, error);
}

static void
counting_free (VhdxIo *io)
{
        vhdx_io_free (((CountingIo *) io)->inner);
        g_free (io);
}

static guint64
counting_next_data (VhdxIo *io, guint64 offset)
{
        return vhdx_io_next_data (((CountingIo *) io)->inner, offset);
}

static const VhdxIoVTable skipping_vtable = {
        .pread = counting_pread,
        .get_size = counting_get_size,
        .free = counting_free,
        .next_data = counting_next_data,
};

static const VhdxIoVTable reading_vtable = {
        .pread = counting_pread,
        .get_size = counting_get_size,
        .free = counting_free,
};

static CountingIo *
counting_io_new (VhdxIo *inner, gboolean skip)
{
        CountingIo *io = g_new0 (CountingIo, 1);

        io->parent.vtable = skip ? &skipping_vtable : &reading_vtable;
        io->inner = inner;
        return io;
}

static VhdxIo *
open_fd_io (const char *path, int flags)
{
        int fd = open (path, flags | O_CLOEXEC);

        g_assert_cmpint (fd, >=, 0);
        return vhdx_io_new_fd (fd, TRUE);
}

/* What the scans say of an image: allocated bytes and check's findings. */
typedef struct {
        guint64 allocated;
        char *findings;
        guint64 bytes_read; /* by both scans */
} ScanResult;

static void
scan_result_clear (ScanResult *r)
{
        g_free (r->findings);
}

static void
scan (const char *path, gboolean skip, ScanResult *r)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GPtrArray) problems =
                g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
        g_autoptr (GString) text = g_string_new (NULL);
        CountingIo *io = counting_io_new (open_fd_io (path, O_RDONLY), skip);
        guint64 before;

        file = vhdx_file_open (&io->parent, VHDX_OPEN_FLAGS_NONE, &error);
        g_assert_no_error (error);
        before = io->bytes_read;
        test_assert_ok (vhdx_file_get_allocated_bytes (file, &r->allocated, &error), error);
        test_assert_ok (vhdx_file_check (file, problems, &error), error);
        r->bytes_read = io->bytes_read - before;
        for (guint i = 0; i < problems->len; i++) {
                const VhdxProblem *p = g_ptr_array_index (problems, i);
                g_string_append_printf (text, "%d %s %" G_GUINT64_FORMAT " %s\n", p->severity,
                                        p->structure, p->offset, p->message);
        }
        r->findings = g_string_free (g_steal_pointer (&text), FALSE);
}

/* Both scans agree with what the image holds, @expected_allocated bytes and
 * the findings @expected_findings (one line each; "" for none); returns the
 * bytes the skipping one read. */
static guint64
assert_scans_agree (const char *path, guint64 expected_allocated, const char *expected_findings)
{
        ScanResult skipping = { 0 }, reading = { 0 };
        guint64 bytes_read;

        scan (path, TRUE, &skipping);
        scan (path, FALSE, &reading);
        g_assert_cmpuint (skipping.allocated, ==, expected_allocated);
        g_assert_cmpuint (reading.allocated, ==, expected_allocated);
        g_assert_cmpstr (skipping.findings, ==, expected_findings);
        g_assert_cmpstr (reading.findings, ==, expected_findings);
        g_assert_cmpuint (skipping.bytes_read, <=, reading.bytes_read);
        bytes_read = skipping.bytes_read;
        scan_result_clear (&skipping);
        scan_result_clear (&reading);
        return bytes_read;
}

/* A dynamic image with 1 MiB blocks and data in @blocks, by the writer. */
static void
write_image (const char *path, guint64 virtual_size, const guint64 *blocks, guint n_blocks)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxCreator) writer = NULL;
        g_autofree guint8 *data = g_malloc (SECTOR);
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                .virtual_size = virtual_size,
                .block_size = MiB,
        };
        VhdxIo *io = open_fd_io (path, O_RDWR | O_CREAT | O_TRUNC);

        memset (data, 0xa5, SECTOR);
        test_assert_ok (vhdx_create_params_resolve (&params, &error), error);
        writer = vhdx_creator_new (io, &params, &error);
        g_assert_no_error (error);
        for (guint i = 0; i < n_blocks; i++) {
                test_assert_ok (vhdx_creator_write (writer, blocks[i] * MiB, data, SECTOR, &error),
                                error);
        }
        test_assert_ok (vhdx_creator_finish (writer, &error), error);
        g_clear_pointer (&writer, vhdx_creator_free);
        vhdx_io_free (io);
}

/* TRUE when the file system reports the byte at @offset of @path as a hole. */
static gboolean
is_hole (const char *path, guint64 offset)
{
        int fd = open (path, O_RDONLY | O_CLOEXEC);
        off_t data = lseek (fd, (off_t) offset, SEEK_DATA);
        int saved_errno = errno;

        close (fd);
        return data > (off_t) offset || (data < 0 && saved_errno == ENXIO);
}

static void
test_sparse_64t (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "sparse.vhdx", NULL);
        const guint64 blocks[] = { 0, 1, 4095, 4096, 17 * 1024 * 1024 + 5, 64 * 1024 * 1024 - 1 };
        guint64 bytes_read;

        write_image (path, 64 * TiB, blocks, G_N_ELEMENTS (blocks));
        /* The writer's image is clean: check finds nothing. */
        bytes_read = assert_scans_agree (path, G_N_ELEMENTS (blocks) * MiB, "");
        g_test_message ("the scans read %" G_GUINT64_FORMAT " bytes of a 512 MiB BAT", bytes_read);
        if (is_hole (path, 2 * MiB + 256 * MiB))
                g_assert_cmpuint (bytes_read, <, 64 * MiB);
        test_tmpdir_free (g_steal_pointer (&dir));
}

static void
test_empty_64t (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "empty.vhdx", NULL);
        guint64 bytes_read;

        write_image (path, 64 * TiB, NULL, 0);
        bytes_read = assert_scans_agree (path, 0, "");
        /* Only check's second region table copy, none of the BAT. */
        if (is_hole (path, 2 * MiB + 256 * MiB))
                g_assert_cmpuint (bytes_read, <=, VHDX_REGION_TABLE_SIZE);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/*
 * A dirty log that allocates a block whose BAT entry lies in a hole of the
 * file: the read-only open replays it in memory, and the scans through the
 * overlay must not skip the logged sector.  The BAT is found and the log
 * written by hand, following MS-VHDX.
 */
static void
test_log_overlay (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "dirty.vhdx", NULL);
        g_autoptr (GByteArray) entry = NULL;
        g_autofree guint8 *sector = g_malloc0 (SECTOR);
        g_autofree guint8 *data = g_malloc (SECTOR);
        const guint64 blocks[] = { 0 };
        const guint64 block = 500000;
        const VhdxGuid log_guid = vhdx_gen_guid_from_text ("0E5C7D3A-9B14-4C62-A8F0-37D2B6E1C945");
        guint64 size, new_block, entry_offset, sector_offset;
        TestSpecLayout layout;
        gboolean hole;
        struct stat st;
        int fd;

        write_image (path, TiB, blocks, G_N_ELEMENTS (blocks));
        test_spec_read_layout (path, &layout);
        g_assert_cmpuint (layout.log_length, >=, 3 * SECTOR);
        g_assert_cmpint (stat (path, &st), ==, 0);
        size = (guint64) st.st_size;
        new_block = (size + MiB - 1) / MiB * MiB;
        entry_offset = layout.bat_offset + test_spec_payload_index (&layout, block) * 8;
        sector_offset = entry_offset - entry_offset % SECTOR;
        hole = is_hole (path, sector_offset);

        /* The entry in the log only, pointing at a new block past the end of
         * the file, whose first sector the log writes too. */
        vhdx_put_le64 (sector + entry_offset % SECTOR, new_block | VHDX_PAYLOAD_FULLY_PRESENT);
        memset (data, 0x5a, SECTOR);
        {
                const TestLogUpdate updates[] = { { sector_offset, sector, 0 },
                                                  { new_block, data, 0 } };
                entry = test_log_entry_new (&log_guid, 1, 0, size, new_block + MiB, updates,
                                            G_N_ELEMENTS (updates));
        }
        fd = open (path, O_RDWR | O_CLOEXEC);
        g_assert_cmpint (fd, >=, 0);
        g_assert_cmpint (pwrite (fd, entry->data, entry->len, layout.log_offset), ==,
                         (gssize) entry->len);
        /* LogGuid in both headers: the log is to be replayed. */
        for (guint h = 0; h < 2; h++) {
                guint8 header[VHDX_HEADER_SIZE];
                off_t o = (off_t) (h + 1) * 64 * 1024;
                g_assert_cmpint (pread (fd, header, sizeof header, o), ==, sizeof header);
                memcpy (header + VHDX_HEADER_OFF_LOG_GUID, log_guid.bytes, 16);
                vhdx_gen_update_header_checksum (header);
                g_assert_cmpint (pwrite (fd, header, sizeof header, o), ==, sizeof header);
        }
        close (fd);

        /* Blocks 0 and the new one; nothing wrong once the log is replayed. */
        assert_scans_agree (path, 2 * MiB, "");
        test_tmpdir_free (g_steal_pointer (&dir));
        if (!hole)
                g_test_skip ("the file system stores the BAT sector of the entry, no hole: the "
                             "scans agreed, but the overlay was not the one that decides");
}

/* The fd backend's answer is a promise: zeros up to it, inside the file. */
static void
assert_next_data_promise (VhdxIo *io, const guint8 *contents, guint64 size, guint64 offset)
{
        guint64 data = vhdx_io_next_data (io, offset);

        g_assert_cmpuint (data, >=, offset);
        g_assert_cmpuint (data, <=, MAX (offset, size));
        for (guint64 i = offset; i < data; i++)
                g_assert_cmpuint (contents[i], ==, 0);
}

static void
test_next_data_fd (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "holes", NULL);
        const guint64 size = 3 * MiB;
        g_autofree guint8 *contents = g_malloc0 (size);
        g_autoptr (VhdxIo) io = NULL;
        int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

        g_assert_cmpint (fd, >=, 0);
        memset (contents, 1, 64 * 1024);
        memset (contents + 2 * MiB, 2, SECTOR);
        g_assert_cmpint (pwrite (fd, contents, 64 * 1024, 0), ==, 64 * 1024);
        g_assert_cmpint (pwrite (fd, contents + 2 * MiB, SECTOR, 2 * MiB), ==, SECTOR);
        g_assert_cmpint (ftruncate (fd, (off_t) size), ==, 0);
        io = vhdx_io_new_fd (fd, TRUE);
        for (guint64 offset = 0; offset <= size + MiB; offset += 256 * 1024 + 512)
                assert_next_data_promise (io, contents, size, offset);
        assert_next_data_promise (io, contents, size, 2 * MiB + SECTOR);
        assert_next_data_promise (io, contents, size, size);
        /* Data is never skipped. */
        g_assert_cmpuint (vhdx_io_next_data (io, 100), ==, 100);
        g_assert_cmpuint (vhdx_io_next_data (io, 2 * MiB + 10), ==, 2 * MiB + 10);
        test_tmpdir_free (g_steal_pointer (&dir));
}

static void
test_next_data_memory (void)
{
        const gsize size = 5 * SECTOR + 100;
        guint8 *contents = g_malloc0 (size);
        g_autoptr (GBytes) bytes = NULL;
        g_autoptr (VhdxIo) io = NULL;

        contents[SECTOR + 7] = 1;
        contents[3 * SECTOR] = 1;
        bytes = g_bytes_new_take (contents, size);
        io = vhdx_io_new_memory (bytes);
        g_assert_cmpuint (vhdx_io_next_data (io, 0), ==, SECTOR);
        g_assert_cmpuint (vhdx_io_next_data (io, 10), ==, SECTOR);
        g_assert_cmpuint (vhdx_io_next_data (io, SECTOR + 8), ==, 3 * SECTOR);
        g_assert_cmpuint (vhdx_io_next_data (io, SECTOR + 3), ==, SECTOR + 3);
        g_assert_cmpuint (vhdx_io_next_data (io, 3 * SECTOR + 1), ==, size);
        g_assert_cmpuint (vhdx_io_next_data (io, 4 * SECTOR), ==, size);
        g_assert_cmpuint (vhdx_io_next_data (io, size + 5), ==, size + 5);
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);
        g_test_add_func ("/bat-scan/next-data/fd", test_next_data_fd);
        g_test_add_func ("/bat-scan/next-data/memory", test_next_data_memory);
        g_test_add_func ("/bat-scan/empty-64t", test_empty_64t);
        g_test_add_func ("/bat-scan/sparse-64t", test_sparse_64t);
        g_test_add_func ("/bat-scan/log-overlay", test_log_overlay);
        return g_test_run ();
}
