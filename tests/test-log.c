/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Dirty logs.  A clean image from the test generator is made dirty with the
 * engine's log writer, in every shape the specification allows; then the
 * read-only view (replayed in memory), the view after an on-disk repair, the
 * expected disk computed here from what the scenario means, and, where
 * qemu-img is present, QEMU's own replay of the same file must all agree.
 */
#include "test-util.h"
#include "vhdx-gen.h"
#include "vhdx-header.h"
#include "vhdx-log-writer.h"

#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB          (G_GUINT64_CONSTANT (1) << 20)
#define SECTOR       4096
#define VIRTUAL_SIZE (64 * MiB)
#define BLOCK_SIZE   MiB

typedef enum {
        SHAPE_ONE_ENTRY,
        SHAPE_SEVERAL_ENTRIES,
        SHAPE_RING_WRAPS,
        SHAPE_STALE_ENTRIES,
        SHAPE_TORN_HEAD,
        SHAPE_DATA_AND_ZERO,
        SHAPE_EXTENDS_FILE,
        SHAPE_DATA_WRAPS,
        N_SHAPES
} Shape;

static const char *shape_names[N_SHAPES] = {
        "one-entry", "several-entries", "ring-wraps",   "stale-entries",
        "torn-head", "data-and-zero",   "extends-file", "data-wraps",
};

typedef struct {
        char *dir;
        char *clean;        /* the generator's clean image */
        char *dirty;        /* the same image with a log to replay */
        GByteArray *expect; /* the virtual disk the dirty image must read as */
        VhdxGenLayout layout;
} Scenario;

static void
scenario_free (Scenario *s)
{
        test_tmpdir_free (s->dir);
        g_free (s->clean);
        g_free (s->dirty);
        g_byte_array_unref (s->expect);
        g_free (s);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Scenario, scenario_free)

static VhdxIo *
open_rw (const char *path)
{
        int fd = open (path, O_RDWR | O_CLOEXEC);

        g_assert_cmpint (fd, >=, 0);
        return vhdx_io_new_fd (fd, TRUE);
}

static void
copy_file (const char *from, const char *to)
{
        const char *argv[] = { "cp", "--sparse=always", from, to, NULL };

        test_run (argv);
}

static guint64
file_size (const char *path)
{
        struct stat st;

        g_assert_cmpint (stat (path, &st), ==, 0);
        return (guint64) st.st_size;
}

/* The 4 KiB sector of the clean file holding BAT entry @index, with entry
 * @index set to @entry. */
static void
bat_sector_with (int fd,
                 const VhdxGenLayout *layout,
                 guint64 index,
                 guint64 entry,
                 guint8 *sector,
                 guint64 *sector_offset)
{
        guint64 at = layout->bat_offset + index * 8;

        *sector_offset = at - at % SECTOR;
        g_assert_cmpint (pread (fd, sector, SECTOR, *sector_offset), ==, SECTOR);
        vhdx_put_le64 (sector + at % SECTOR, entry);
}

/* Set LogGuid in the current header of @path by the header update protocol. */
static void
set_log_guid (const char *path, const VhdxGuid *guid)
{
        g_autoptr (VhdxIo) io = open_rw (path);
        g_autoptr (GPtrArray) problems =
                g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
        g_autoptr (GError) error = NULL;
        VhdxHeader header;
        guint index;

        test_assert_ok (vhdx_headers_read (io, file_size (path), &header, &index, problems, &error),
                        error);
        header.log_guid = *guid;
        test_assert_ok (vhdx_headers_write (io, &header, index, &error), error);
}

static void
fill_expected_block (GByteArray *expect, guint64 block, const guint8 *data, gsize len)
{
        memset (expect->data + block * BLOCK_SIZE, 0, BLOCK_SIZE);
        memcpy (expect->data + block * BLOCK_SIZE, data, len);
}

/*
 * Build the scenario: a 64 MiB dynamic image with 1 MiB blocks and data in
 * blocks 0-3 and 10, then a log in shape @shape.  The expected disk is the
 * generator's raw disk changed by what the log's updates mean.
 */
static Scenario *
scenario_new (Shape shape)
{
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) raw = NULL;
        g_autoptr (VhdxIo) io = NULL;
        g_autoptr (VhdxLogWriter) writer = NULL;
        g_autoptr (VhdxLogWriter) stale = NULL;
        g_autofree guint8 *sector = g_malloc (SECTOR);
        g_autofree guint8 *payload = g_malloc (BLOCK_SIZE);
        VhdxGenParams params;
        VhdxGuid log_guid, old_guid;
        Scenario *s = g_new0 (Scenario, 1);
        guint64 size, sector_offset, new_block_offset;
        guint32 log_length;
        int fd;

        vhdx_gen_params_init (&params);
        params.disk_type = VHDX_DISK_TYPE_DYNAMIC;
        params.virtual_size = VIRTUAL_SIZE;
        params.block_size = BLOCK_SIZE;
        params.seed = 100 + shape;
        gen = vhdx_gen_new (&params);
        vhdx_gen_fill_pattern (gen, 0, 4 * MiB, 1);
        vhdx_gen_fill_pattern (gen, 10 * MiB, MiB, 2);
        vhdx_gen_get_layout (gen, &s->layout);
        log_length = s->layout.log_length;

        s->dir = test_tmpdir_new ();
        s->clean = g_build_filename (s->dir, "clean.vhdx", NULL);
        s->dirty = g_build_filename (s->dir, "dirty.vhdx", NULL);
        test_assert_ok (vhdx_gen_write_file (gen, s->clean, &error), error);
        raw = vhdx_gen_build_raw (gen);
        s->expect = g_byte_array_sized_new (VIRTUAL_SIZE);
        g_byte_array_append (s->expect, g_bytes_get_data (raw, NULL), VIRTUAL_SIZE);

        copy_file (s->clean, s->dirty);
        size = file_size (s->dirty);
        new_block_offset = (size + MiB - 1) / MiB * MiB;
        vhdx_guid_new_random (&log_guid);
        vhdx_guid_new_random (&old_guid);
        io = open_rw (s->dirty);
        fd = open (s->dirty, O_RDWR | O_CLOEXEC);
        vhdx_gen_pattern_fill_buffer (payload, 0, BLOCK_SIZE, 77);

        switch (shape) {
        case SHAPE_ONE_ENTRY:
                /* Block 5 allocated: its payload written in place, its BAT
                 * entry only in the log. */
                g_assert_cmpint (pwrite (fd, payload, BLOCK_SIZE, new_block_offset), ==,
                                 BLOCK_SIZE);
                bat_sector_with (fd, &s->layout, 5, new_block_offset | 6, sector, &sector_offset);
                writer =
                        vhdx_log_writer_new (io, s->layout.log_offset, log_length, &log_guid, 0, 1);
                vhdx_log_writer_add_data (writer, sector_offset, sector);
                test_assert_ok (vhdx_log_writer_commit (writer, size, new_block_offset + MiB,
                                                        &error),
                                error);
                fill_expected_block (s->expect, 5, payload, BLOCK_SIZE);
                break;

        case SHAPE_SEVERAL_ENTRIES:
        case SHAPE_RING_WRAPS:
        case SHAPE_STALE_ENTRIES:
                /* Blocks 5, 6 and 7 allocated by three entries of one sequence,
                 * each logging the BAT sector as it then was. */
                writer = vhdx_log_writer_new (io, s->layout.log_offset, log_length, &log_guid,
                                              shape == SHAPE_RING_WRAPS ? log_length - 3 * SECTOR
                                              : shape == SHAPE_STALE_ENTRIES ? 4 * SECTOR
                                                                             : 0,
                                              shape == SHAPE_STALE_ENTRIES ? 40 : 7);
                if (shape == SHAPE_STALE_ENTRIES) {
                        /* Entries of an earlier session, with higher sequence
                         * numbers, in front of and behind the active ones: they
                         * would free every block if replayed. */
                        stale = vhdx_log_writer_new (io, s->layout.log_offset, log_length,
                                                     &old_guid, 0, 500);
                        vhdx_log_writer_add_zero (stale, s->layout.bat_offset, SECTOR);
                        test_assert_ok (vhdx_log_writer_commit (stale, size, size, &error), error);
                        vhdx_log_writer_add_zero (stale, s->layout.bat_offset, SECTOR);
                        test_assert_ok (vhdx_log_writer_commit (stale, size, size, &error), error);
                }
                g_assert_cmpint (pread (fd, sector, SECTOR, s->layout.bat_offset), ==, SECTOR);
                for (guint i = 0; i < 3; i++) {
                        guint64 at = new_block_offset + i * MiB;
                        vhdx_gen_pattern_fill_buffer (payload, 0, BLOCK_SIZE, 80 + i);
                        g_assert_cmpint (pwrite (fd, payload, BLOCK_SIZE, at), ==, BLOCK_SIZE);
                        vhdx_put_le64 (sector + (5 + i) * 8, at | 6);
                        vhdx_log_writer_add_data (writer, s->layout.bat_offset, sector);
                        test_assert_ok (vhdx_log_writer_commit (writer, size, at + MiB, &error),
                                        error);
                        fill_expected_block (s->expect, 5 + i, payload, BLOCK_SIZE);
                }
                if (shape == SHAPE_STALE_ENTRIES) {
                        guint32 behind = vhdx_log_writer_get_position (writer);
                        g_autoptr (VhdxLogWriter) after =
                                vhdx_log_writer_new (io, s->layout.log_offset, log_length,
                                                     &old_guid, behind, 600);
                        vhdx_log_writer_add_zero (after, s->layout.bat_offset, SECTOR);
                        test_assert_ok (vhdx_log_writer_commit (after, size, size, &error), error);
                }
                break;

        case SHAPE_TORN_HEAD:
                /* Sequence one allocates block 5; sequence two, block 6, but its
                 * only entry is torn: sequence one is the active one. */
                g_assert_cmpint (pwrite (fd, payload, BLOCK_SIZE, new_block_offset), ==,
                                 BLOCK_SIZE);
                bat_sector_with (fd, &s->layout, 5, new_block_offset | 6, sector, &sector_offset);
                writer = vhdx_log_writer_new (io, s->layout.log_offset, log_length, &log_guid,
                                              8 * SECTOR, 3);
                vhdx_log_writer_add_data (writer, sector_offset, sector);
                test_assert_ok (vhdx_log_writer_commit (writer, size, new_block_offset + MiB,
                                                        &error),
                                error);
                fill_expected_block (s->expect, 5, payload, BLOCK_SIZE);
                {
                        guint32 torn = vhdx_log_writer_get_position (writer);
                        guint8 byte;
                        vhdx_put_le64 (sector + 6 * 8, (new_block_offset + MiB) | 6);
                        vhdx_log_writer_start_sequence (writer);
                        vhdx_log_writer_add_data (writer, sector_offset, sector);
                        test_assert_ok (vhdx_log_writer_commit (writer, size,
                                                                new_block_offset + 2 * MiB, &error),
                                        error);
                        /* Tear its data sector. */
                        g_assert_cmpint (pread (fd, &byte, 1,
                                                s->layout.log_offset + torn + SECTOR + 100),
                                         ==, 1);
                        byte ^= 0x40;
                        g_assert_cmpint (pwrite (fd, &byte, 1,
                                                 s->layout.log_offset + torn + SECTOR + 100),
                                         ==, 1);
                }
                break;

        case SHAPE_DATA_AND_ZERO:
                /* One entry zeroes the BAT sector (every block becomes absent)
                 * and then restores the entry of block 10 alone. */
                writer =
                        vhdx_log_writer_new (io, s->layout.log_offset, log_length, &log_guid, 0, 1);
                vhdx_log_writer_add_zero (writer, s->layout.bat_offset, SECTOR);
                memset (sector, 0, SECTOR);
                {
                        guint8 entry[8];
                        g_assert_cmpint (pread (fd, entry, 8, s->layout.bat_offset + 10 * 8), ==,
                                         8);
                        memcpy (sector + 10 * 8, entry, 8);
                }
                vhdx_log_writer_add_data (writer, s->layout.bat_offset, sector);
                test_assert_ok (vhdx_log_writer_commit (writer, size, size, &error), error);
                memset (s->expect->data, 0, 10 * MiB);
                memset (s->expect->data + 11 * MiB, 0, VIRTUAL_SIZE - 11 * MiB);
                break;

        case SHAPE_EXTENDS_FILE:
                /* The log writes past the end of the file: the first sector of
                 * a new block 20 at the end, and LastFileOffset covers the rest
                 * of the block, which the replay must add as zeros. */
                bat_sector_with (fd, &s->layout, 20, new_block_offset | 6, sector, &sector_offset);
                writer =
                        vhdx_log_writer_new (io, s->layout.log_offset, log_length, &log_guid, 0, 9);
                vhdx_log_writer_add_data (writer, sector_offset, sector);
                vhdx_log_writer_add_data (writer, new_block_offset, payload);
                test_assert_ok (vhdx_log_writer_commit (writer, size, new_block_offset + MiB,
                                                        &error),
                                error);
                fill_expected_block (s->expect, 20, payload, SECTOR);
                break;

        case SHAPE_DATA_WRAPS: {
                /* Block 5 allocated, the first sectors of its payload written
                 * only through the log (over a quarter of the log's length, so
                 * that the replay keeps the log's own buffer), the rest in
                 * place; entries of 16 data sectors from 3 sectors before the
                 * end of the ring, so that they wrap. */
                guint n_logged = log_length / 4 / SECTOR + 16;
                g_assert_cmpuint (n_logged * SECTOR, <, BLOCK_SIZE);
                g_assert_cmpuint (n_logged + n_logged / 16 + 2, <, log_length / SECTOR);
                g_assert_cmpint (pwrite (fd, payload + n_logged * SECTOR,
                                         BLOCK_SIZE - n_logged * SECTOR,
                                         new_block_offset + n_logged * SECTOR),
                                 ==, BLOCK_SIZE - n_logged * SECTOR);
                writer = vhdx_log_writer_new (io, s->layout.log_offset, log_length, &log_guid,
                                              log_length - 3 * SECTOR, 11);
                for (guint i = 0; i < n_logged; i++) {
                        vhdx_log_writer_add_data (writer, new_block_offset + i * SECTOR,
                                                  payload + i * SECTOR);
                        if (i % 16 == 15)
                                test_assert_ok (vhdx_log_writer_commit (writer, size,
                                                                        new_block_offset + MiB,
                                                                        &error),
                                                error);
                }
                bat_sector_with (fd, &s->layout, 5, new_block_offset | 6, sector, &sector_offset);
                vhdx_log_writer_add_data (writer, sector_offset, sector);
                test_assert_ok (vhdx_log_writer_commit (writer, size, new_block_offset + MiB,
                                                        &error),
                                error);
                fill_expected_block (s->expect, 5, payload, BLOCK_SIZE);
                break;
        }

        case N_SHAPES:
        default:
                g_assert_not_reached ();
        }
        g_assert_no_error (error);
        close (fd);
        set_log_guid (s->dirty, &log_guid);
        return s;
}

static void
assert_virtual_disk (VhdxFile *file, const GByteArray *expect)
{
        g_autoptr (GError) error = NULL;
        g_autofree guint8 *buf = g_malloc (VIRTUAL_SIZE);

        g_assert_cmpuint (vhdx_file_get_info (file)->virtual_size, ==, VIRTUAL_SIZE);
        test_assert_ok (vhdx_file_read (file, 0, buf, VIRTUAL_SIZE, &error), error);
        for (guint64 block = 0; block < VIRTUAL_SIZE / BLOCK_SIZE; block++) {
                if (memcmp (buf + block * BLOCK_SIZE, expect->data + block * BLOCK_SIZE,
                            BLOCK_SIZE) != 0)
                        g_error ("virtual block %" G_GUINT64_FORMAT
                                 " differs from the expected disk",
                                 block);
        }
}

static void
assert_raw_file (const char *raw, const GByteArray *expect)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *contents = NULL;
        gsize length;

        g_file_get_contents (raw, &contents, &length, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (length, ==, VIRTUAL_SIZE);
        g_assert_true (memcmp (contents, expect->data, VIRTUAL_SIZE) == 0);
}

static void
test_shape (gconstpointer data)
{
        Shape shape = GPOINTER_TO_INT (data);
        g_autoptr (Scenario) s = scenario_new (shape);
        g_autoptr (GError) error = NULL;
        g_autofree char *before = test_sha256_file (s->dirty);
        g_autofree char *repaired = g_build_filename (s->dir, "repaired.vhdx", NULL);
        struct stat st_before, st_after;

        /* The generator's clean image is the disk before the log. */
        {
                g_autoptr (VhdxFile) clean = test_open_path (s->clean, &error);
                g_assert_no_error (error);
                g_assert_cmpint (vhdx_file_get_info (clean)->log_state, ==, VHDX_LOG_STATE_CLEAN);
        }

        /* Read-only: replayed in memory, the file untouched. */
        g_assert_cmpint (stat (s->dirty, &st_before), ==, 0);
        {
                g_autoptr (VhdxFile) file = test_open_path (s->dirty, &error);
                g_autoptr (GPtrArray) problems =
                        g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
                g_assert_no_error (error);
                g_assert_cmpint (vhdx_file_get_info (file)->log_state, ==,
                                 VHDX_LOG_STATE_REPLAYED_IN_MEMORY);
                g_assert_cmpuint (vhdx_file_get_open_problems (file)->len, ==, 1);
                assert_virtual_disk (file, s->expect);
                test_assert_ok (vhdx_file_check (file, problems, &error), error);
                g_assert_false (vhdx_problems_have_errors (problems));
        }
        {
                g_autofree char *after = test_sha256_file (s->dirty);
                g_assert_cmpstr (before, ==, after);
                g_assert_cmpint (stat (s->dirty, &st_after), ==, 0);
                g_assert_cmpint (st_before.st_mtim.tv_sec, ==, st_after.st_mtim.tv_sec);
                g_assert_cmpint (st_before.st_mtim.tv_nsec, ==, st_after.st_mtim.tv_nsec);
        }

        /* Read-write: replayed onto a copy of the file, which is then clean. */
        copy_file (s->dirty, repaired);
        {
                g_autoptr (VhdxFile) file =
                        vhdx_file_open (open_rw (repaired), VHDX_OPEN_FLAGS_READ_WRITE, &error);
                g_assert_no_error (error);
                g_assert_cmpint (vhdx_file_get_info (file)->log_state, ==, VHDX_LOG_STATE_REPLAYED);
                assert_virtual_disk (file, s->expect);
        }
        {
                g_autoptr (VhdxFile) file = test_open_path (repaired, &error);
                g_assert_no_error (error);
                g_assert_cmpint (vhdx_file_get_info (file)->log_state, ==, VHDX_LOG_STATE_CLEAN);
                g_assert_cmpuint (vhdx_file_get_open_problems (file)->len, ==, 0);
                assert_virtual_disk (file, s->expect);
        }

        if (!test_have_program ("qemu-img")) {
                g_test_skip ("qemu-img is not installed: the engine's replays were checked, "
                             "but not against QEMU's replay of the dirty file, nor the repair "
                             "with qemu-img check");
                return;
        }
        /* QEMU replays the log of a copy when repairing it.  Not for a log
         * whose LastFileOffset lies past the end of the file: QEMU 7.2 extends
         * the file only when LastFileOffset is not a multiple of 1 MiB, which
         * the specification requires it to be, so its replay leaves a BAT
         * entry pointing past the end.  Nor for the data-wraps log: QEMU
         * 7.2's replay of it leaves out the sequence's first entry (17
         * sectors from 3 sectors before the end of the ring, so that it
         * wraps), whose 16 data sectors then read as zeros; the expected
         * disk there is the test's own, from the payload it logged. */
        if (shape != SHAPE_EXTENDS_FILE && shape != SHAPE_DATA_WRAPS) {
                g_autofree char *qcopy = g_build_filename (s->dir, "qemu.vhdx", NULL);
                g_autofree char *qraw = g_build_filename (s->dir, "qemu.raw", NULL);
                copy_file (s->dirty, qcopy);
                {
                        const char *argv[] = { "qemu-img", "check", "-q",  "-r", "all",
                                               "-f",       "vhdx",  qcopy, NULL };
                        test_run (argv);
                }
                {
                        const char *argv[] = { "qemu-img", "convert", "-f", "vhdx", "-O",
                                               "raw",      qcopy,     qraw, NULL };
                        test_run (argv);
                }
                assert_raw_file (qraw, s->expect);
        }
        /* And QEMU finds nothing wrong with our repair. */
        {
                g_autofree char *qraw = g_build_filename (s->dir, "repaired.raw", NULL);
                const char *check[] = { "qemu-img", "check", "-f", "vhdx", repaired, NULL };
                const char *info[] = { "qemu-img", "info", "-f", "vhdx", repaired, NULL };
                const char *convert[] = { "qemu-img", "convert", "-f", "vhdx", "-O",
                                          "raw",      repaired,  qraw, NULL };
                test_run (check);
                test_run (info);
                test_run (convert);
                assert_raw_file (qraw, s->expect);
        }
}

static void
test_flushed_beyond_end (void)
{
        g_autoptr (Scenario) s = scenario_new (SHAPE_ONE_ENTRY);
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxIo) io = open_rw (s->dirty);
        g_autoptr (VhdxLogWriter) writer = NULL;
        g_autoptr (VhdxFile) file = NULL;
        guint64 size = file_size (s->dirty);
        VhdxGuid guid;

        /* A later sequence claims the file was once larger than it is. */
        vhdx_guid_new_random (&guid);
        writer = vhdx_log_writer_new (io, s->layout.log_offset, s->layout.log_length, &guid,
                                      16 * SECTOR, 50);
        vhdx_log_writer_add_zero (writer, size - SECTOR, SECTOR);
        test_assert_ok (vhdx_log_writer_commit (writer, size + 8 * MiB, size + 8 * MiB, &error),
                        error);
        set_log_guid (s->dirty, &guid);

        file = test_open_path (s->dirty, &error);
        g_assert_null (file);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_TRUNCATED);
        g_assert_nonnull (strstr (error->message, "log entry"));
        g_clear_error (&error);
        file = vhdx_file_open (open_rw (s->dirty), VHDX_OPEN_FLAGS_READ_WRITE, &error);
        g_assert_null (file);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_TRUNCATED);
}

static void
test_no_valid_sequence (void)
{
        g_autoptr (Scenario) s = scenario_new (SHAPE_ONE_ENTRY);
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        VhdxGuid other;

        /* The header names a LogGuid that no entry carries. */
        vhdx_guid_new_random (&other);
        set_log_guid (s->dirty, &other);
        file = test_open_path (s->dirty, &error);
        g_assert_null (file);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_LOG);
        g_assert_nonnull (strstr (error->message, "stale"));
}

/* A VhdxIo that fails its Nth write or flush. */
typedef struct {
        VhdxIo parent;
        VhdxIo *inner;
        int countdown;
        gboolean failed;
} FaultIo;

static gboolean
fault_hit (FaultIo *self, GError **error)
{
        if (--self->countdown == 0) {
                self->failed = TRUE;
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "injected fault");
                return TRUE;
        }
        return FALSE;
}

static gboolean
fault_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        FaultIo *self = (FaultIo *) io;

        return self->inner->vtable->pread (self->inner, buf, count, offset, n_read, error);
}

static gboolean
fault_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        return vhdx_io_get_size (((FaultIo *) io)->inner, size, error);
}

static gboolean
fault_pwrite (VhdxIo *io, const void *buf, gsize count, guint64 offset, GError **error)
{
        FaultIo *self = (FaultIo *) io;

        if (fault_hit (self, error))
                return FALSE;
        return self->inner->vtable->pwrite (self->inner, buf, count, offset, error);
}

static gboolean
fault_flush (VhdxIo *io, GError **error)
{
        FaultIo *self = (FaultIo *) io;

        if (fault_hit (self, error))
                return FALSE;
        return self->inner->vtable->flush (self->inner, error);
}

static void
fault_free (VhdxIo *io)
{
        vhdx_io_free (((FaultIo *) io)->inner);
        g_free (io);
}

static const VhdxIoVTable fault_vtable = {
        .pread = fault_pread,
        .get_size = fault_get_size,
        .pwrite = fault_pwrite,
        .flush = fault_flush,
        .free = fault_free,
};

static void
test_interrupted_repair (gconstpointer data)
{
        Shape shape = GPOINTER_TO_INT (data);
        g_autoptr (Scenario) s = scenario_new (shape);
        g_autofree char *work = g_build_filename (s->dir, "work.vhdx", NULL);
        guint n_faults = 0;

        for (int fail_at = 1;; fail_at++) {
                g_autoptr (GError) error = NULL;
                FaultIo *io = g_new0 (FaultIo, 1);
                VhdxFile *file;

                g_unlink (work);
                copy_file (s->dirty, work);
                io->parent.vtable = &fault_vtable;
                io->inner = open_rw (work);
                io->countdown = fail_at;
                file = vhdx_file_open (&io->parent, VHDX_OPEN_FLAGS_READ_WRITE, &error);
                if (file != NULL) {
                        /* Every write and flush of the repair has failed once. */
                        g_assert_false (io->failed);
                        vhdx_file_free (file);
                        break;
                }
                g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
                n_faults++;
                g_clear_error (&error);

                /* Still readable, with the same content... */
                file = test_open_path (work, &error);
                g_assert_no_error (error);
                assert_virtual_disk (file, s->expect);
                vhdx_file_free (file);
                /* ...and a second repair completes. */
                file = vhdx_file_open (open_rw (work), VHDX_OPEN_FLAGS_READ_WRITE, &error);
                g_assert_no_error (error);
                vhdx_file_free (file);
                file = test_open_path (work, &error);
                g_assert_no_error (error);
                g_assert_cmpint (vhdx_file_get_info (file)->log_state, ==, VHDX_LOG_STATE_CLEAN);
                assert_virtual_disk (file, s->expect);
                vhdx_file_free (file);
        }
        g_test_message ("%u fault points", n_faults);
        /* Writes, flushes, extension and both header updates: at least 6. */
        g_assert_cmpuint (n_faults, >=, 6);
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);
        for (int shape = 0; shape < N_SHAPES; shape++) {
                g_autofree char *path = g_strdup_printf ("/log/replay/%s", shape_names[shape]);
                g_test_add_data_func (path, GINT_TO_POINTER (shape), test_shape);
        }
        g_test_add_func ("/log/flushed-beyond-end", test_flushed_beyond_end);
        g_test_add_func ("/log/no-valid-sequence", test_no_valid_sequence);
        g_test_add_data_func ("/log/interrupted-repair/several-entries",
                              GINT_TO_POINTER (SHAPE_SEVERAL_ENTRIES), test_interrupted_repair);
        g_test_add_data_func ("/log/interrupted-repair/extends-file",
                              GINT_TO_POINTER (SHAPE_EXTENDS_FILE), test_interrupted_repair);
        return g_test_run ();
}
