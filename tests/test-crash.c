/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Crash safety of the write path.  Each workload runs once against a
 * recording in-memory file (crash-io.h) while the test keeps its own model
 * of the disk; then, for crash points at the file's writes and flushes, the
 * files a power cut could leave are built (unflushed writes dropped, all
 * applied, a random subset in a random order, a prefix with the last write
 * torn) and each must open read-only and read-write, have no error in
 * `check` after the replay, and read, sector by sector, the value the model
 * had at the last completed flush or a value written after it.  QEMU checks
 * a sample of the repaired files of the 512-byte fixed and dynamic
 * workloads, whose images QEMU makes.  With -m thorough (./run crash),
 * every kind at every crash point.  The filter-* workloads write through
 * the nbdkit filter's VhdxIo (nbdkit-vhdx-next-io.c, its read-ahead cache
 * included) over a plugin below it that is the recording file, into
 * images whose blocks all have their space (the file below cannot grow).
 */
#include "config.h"

#include "crash-io.h"
#include "test-util.h"
#include "vhdx-compact.h"
#include "vhdx-create.h"
#include "vhdx-file-private.h"
#include "vhdx-map.h"
#include "vhdx-metadata.h"
#include "vhdx-merge.h"
#include "vhdx-relink.h"
#include "vhdx-resize.h"
#include "vhdx-set-metadata.h"
#include "vhdx-writer-private.h"
#include "vhdx-writer.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <malloc.h>
#include <unistd.h>

#ifdef VHDX_CRASH_THROUGH_FILTER
#include <errno.h>
#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#include "nbdkit-vhdx-next-io.h"
#endif

#define MiB  (G_GUINT64_CONSTANT (1) << 20)
#define GiB  (G_GUINT64_CONSTANT (1) << 30)
#define UNIT 512

/* An operation of the workload, and where in the file's calls it ran. */
typedef struct {
        gboolean flush;
        guint64 offset; /* what the disk reads after it, 512-byte aligned */
        guint64 length;
        guint8 *after;
        guint start_call;
        guint end_call;
} Op;

static void
op_clear (gpointer data)
{
        g_free (((Op *) data)->after);
}

typedef enum {
        IMAGE_QEMU_DYNAMIC,
        IMAGE_QEMU_FIXED,
        IMAGE_DYNAMIC,
        IMAGE_DYNAMIC_4K,
        IMAGE_DIFFERENCING,
        IMAGE_DIFFERENCING_4K,
} ImageKind;

typedef struct {
        char *dir;
        char *parent; /* differencing: the parent's path */
        ImageKind kind;
        guint64 size;
        guint32 ss;
        guint32 bs;
        VhdxDiskType type;
        VhdxFile *file;
        VhdxIo *io; /* the recording file, owned by file */
        GArray *ops;
        guint8 *model;   /* the disk now */
        guint8 *initial; /* the disk before the workload */
        GRand *rand;
        /* Buffers reused for every crash image. */
        GByteArray *image;
        GByteArray *repaired;
        GByteArray *ro;
        GByteArray *rw;
        guint64 images_checked;
        guint64 qemu_checked;
} Run;

static gboolean
kind_is_qemu (ImageKind kind)
{
        return kind == IMAGE_QEMU_DYNAMIC || kind == IMAGE_QEMU_FIXED;
}

/* Images. */

static GBytes *
create_image (Run *r, const VhdxCreateParams *params, const guint8 *data, const char *path)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxIo) io = crash_io_new (NULL, 0, FALSE);
        g_autoptr (VhdxCreator) creator = vhdx_creator_new (io, params, &error);
        const GByteArray *contents;

        g_assert_no_error (error);
        if (data != NULL)
                test_assert_ok (vhdx_creator_write (creator, 0, data, params->virtual_size, &error),
                                error);
        test_assert_ok (vhdx_creator_finish (creator, &error), error);
        contents = crash_io_get_contents (io);
        if (path != NULL)
                test_assert_ok (g_file_set_contents (path, (const char *) contents->data,
                                                     contents->len, &error),
                                error);
        return g_bytes_new (contents->data, contents->len);
}

static GBytes *
qemu_image (Run *r, const char *subformat)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *path = g_build_filename (r->dir, "qemu.vhdx", NULL);
        g_autofree char *size = g_strdup_printf ("%" G_GUINT64_FORMAT, r->size);
        g_autofree char *options =
                g_strdup_printf ("subformat=%s,block_size=%uM", subformat, (guint) (r->bs / MiB));
        const char *argv[] = { "qemu-img", "create", "-q", "-f", "vhdx",
                               "-o",       options,  path, size, NULL };
        char *contents;
        gsize length;

        test_run (argv);
        test_assert_ok (g_file_get_contents (path, &contents, &length, &error), error);
        return g_bytes_new_take (contents, length);
}

/* The image the workload starts from, and the disk it holds. */
static GBytes *
make_image (Run *r)
{
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                .virtual_size = r->size,
                .block_size = r->bs,
                .logical_sector_size = r->ss,
        };

        r->initial = g_malloc0 (r->size);
        switch (r->kind) {
        case IMAGE_QEMU_DYNAMIC:
                return qemu_image (r, "dynamic");
        case IMAGE_QEMU_FIXED:
                return qemu_image (r, "fixed");
        case IMAGE_DYNAMIC:
        case IMAGE_DYNAMIC_4K:
                return create_image (r, &params, NULL, NULL);
        case IMAGE_DIFFERENCING:
        case IMAGE_DIFFERENCING_4K: {
                g_autoptr (GBytes) parent = NULL;
                VhdxCreateParams child = params;
                g_autoptr (GError) error = NULL;

                for (guint64 i = 0; i < r->size; i++)
                        r->initial[i] = (guint8) (i / UNIT * 31 + 7);
                r->parent = g_build_filename (r->dir, "parent.vhdx", NULL);
                params.block_size = 1 * MiB;
                parent = create_image (r, &params, r->initial, r->parent);
                {
                        g_autoptr (VhdxFile) p = test_open_path (r->parent, &error);
                        g_assert_no_error (error);
                        child.parent_data_write_guid = vhdx_file_get_info (p)->data_write_guid;
                }
                child.disk_type = VHDX_DISK_TYPE_DIFFERENCING;
                child.parent_relative_path = "parent.vhdx";
                return create_image (r, &child, NULL, NULL);
        }
        default:
                g_assert_not_reached ();
        }
}

static VhdxFile *
open_image (Run *r, VhdxIo *io, VhdxOpenFlags flags, GError **error)
{
        VhdxOpenOptions options = { .parent_path = r->parent };

        return vhdx_file_open_full (io, flags, &options, error);
}

/* The workload's operations, on the image and on the model. */

static void
add_op (Run *r, gboolean flush, guint64 offset, guint64 length, guint start)
{
        Op op = { flush, 0, 0, NULL, start, crash_io_get_calls (r->io) };

        if (!flush) {
                op.offset = offset / UNIT * UNIT;
                op.length = (offset + length + UNIT - 1) / UNIT * UNIT - op.offset;
                op.after = g_memdup2 (r->model + op.offset, op.length);
        }
        g_array_append_val (r->ops, op);
}

static void
do_write (Run *r, guint64 offset, guint64 length)
{
        g_autoptr (GError) error = NULL;
        g_autofree guint8 *data = g_malloc (length);
        guint start = crash_io_get_calls (r->io);

        for (guint64 i = 0; i < length; i++)
                data[i] = (guint8) g_rand_int (r->rand);
        test_assert_ok (vhdx_file_write (r->file, offset, data, length, VHDX_WRITE_FLAGS_NONE,
                                         &error),
                        error);
        memcpy (r->model + offset, data, length);
        add_op (r, FALSE, offset, length, start);
}

static void
do_zero (Run *r, guint64 offset, guint64 length, VhdxWriteFlags flags)
{
        g_autoptr (GError) error = NULL;
        guint start = crash_io_get_calls (r->io);

        test_assert_ok (vhdx_file_write_zeroes (r->file, offset, length, flags, &error), error);
        memset (r->model + offset, 0, length);
        add_op (r, FALSE, offset, length, start);
}

/* Discards free the blocks they cover entirely (not in fixed images): those read as zeros. */
static void
do_discard (Run *r, guint64 offset, guint64 length)
{
        g_autoptr (GError) error = NULL;
        guint start = crash_io_get_calls (r->io);
        guint64 first = (offset + r->bs - 1) / r->bs;
        guint64 end = offset + length == r->size ? (r->size + r->bs - 1) / r->bs
                                                 : (offset + length) / r->bs;

        test_assert_ok (vhdx_file_discard (r->file, offset, length, VHDX_WRITE_FLAGS_NONE, &error),
                        error);
        if (first < end && r->type != VHDX_DISK_TYPE_FIXED) {
                guint64 zero_end = MIN (end * r->bs, r->size);
                memset (r->model + first * r->bs, 0, zero_end - first * r->bs);
                add_op (r, FALSE, first * r->bs, zero_end - first * r->bs, start);
        }
}

static void
do_flush (Run *r)
{
        g_autoptr (GError) error = NULL;
        guint start = crash_io_get_calls (r->io);

        test_assert_ok (vhdx_file_flush (r->file, &error), error);
        add_op (r, TRUE, 0, 0, start);
}

static guint64
random_sectors (Run *r, guint max_sectors, guint64 *length)
{
        guint64 sectors = r->size / r->ss;
        guint64 first = (guint64) g_rand_int_range (r->rand, 0, (gint32) sectors);
        guint64 n = (guint64) g_rand_int_range (r->rand, 1, (gint32) max_sectors + 1);

        *length = MIN (n, sectors - first) * r->ss;
        return first * r->ss;
}

typedef void (*WorkloadFunc) (Run *r);

static void
workload_sequential (Run *r)
{
        for (guint64 at = 0, i = 0; at < r->size; at += 128 * 1024, i++) {
                do_write (r, at, MIN (128 * 1024, r->size - at));
                if (i % 6 == 5)
                        do_flush (r);
        }
}

static void
workload_random (Run *r)
{
        for (guint i = 0; i < 60; i++) {
                guint64 length, offset = random_sectors (r, 64, &length);
                do_write (r, offset, length);
                if (i % 5 == 4)
                        do_flush (r);
        }
}

/* Zeroes and discards, whole blocks and parts, with and without unmap,
 * between writes that take the freed space again. */
static void
workload_zero_discard (Run *r)
{
        for (guint64 at = 0; at < r->size; at += r->bs)
                do_write (r, at, MIN (r->bs, r->size - at));
        do_flush (r);
        for (guint i = 0; i < 24; i++) {
                guint64 length, offset = random_sectors (r, 3000, &length);
                switch (g_rand_int_range (r->rand, 0, 5)) {
                case 0:
                        do_zero (r, offset, length, VHDX_WRITE_FLAGS_MAY_UNMAP);
                        break;
                case 1:
                        do_zero (r, offset, length, VHDX_WRITE_FLAGS_NONE);
                        break;
                case 2:
                        do_discard (r, offset, length);
                        break;
                default:
                        do_write (r, offset, MIN (length, 64 * r->ss));
                        break;
                }
                if (i % 4 == 3)
                        do_flush (r);
        }
}

/* Partial sectors and partial blocks of a child, whole blocks, zeroes. */
static void
workload_differencing (Run *r)
{
        for (guint i = 0; i < 40; i++) {
                guint pick = g_rand_int_range (r->rand, 0, 10);
                guint64 length, offset = random_sectors (r, 40, &length);

                if (pick < 4) {
                        /* Parts of sectors: the rest of each comes from the parent. */
                        guint64 at =
                                (guint64) g_rand_int_range (r->rand, 0, (gint32) (r->size - 1));
                        guint64 n = (guint64) g_rand_int_range (r->rand, 1, 2 * (gint32) r->ss);
                        do_write (r, at, MIN (n, r->size - at));
                } else if (pick < 6) {
                        do_write (r, offset, length);
                } else if (pick < 7) {
                        guint64 block =
                                (guint64) g_rand_int_range (r->rand, 0, (gint32) (r->size / r->bs));
                        do_write (r, block * r->bs, r->bs);
                } else if (pick < 8) {
                        do_zero (r, offset, length,
                                 g_rand_boolean (r->rand) ? VHDX_WRITE_FLAGS_MAY_UNMAP
                                                          : VHDX_WRITE_FLAGS_NONE);
                } else if (pick < 9) {
                        guint64 block =
                                (guint64) g_rand_int_range (r->rand, 0, (gint32) (r->size / r->bs));
                        if (g_rand_boolean (r->rand))
                                do_zero (r, block * r->bs, r->bs, VHDX_WRITE_FLAGS_MAY_UNMAP);
                        else
                                do_discard (r, block * r->bs, r->bs);
                } else {
                        do_flush (r);
                }
        }
}

/* Many small commits: the log ring wraps several times, and freed blocks
 * are taken again. */
static void
workload_log_wrap (Run *r)
{
        for (guint i = 0; i < 90; i++) {
                guint64 block = i % (r->size / r->bs);
                do_write (r, block * r->bs + (i % 7) * r->ss, r->ss);
                do_flush (r);
                /* Freed, and taken again by a later write. */
                if (i % 5 != 4) {
                        do_discard (r, block * r->bs, r->bs);
                        do_flush (r);
                }
        }
        {
                /* Entries of at least 8 KiB went round the 1 MiB log. */
                VhdxWriteStats stats;
                vhdx_file_get_write_stats (r->file, &stats);
                g_assert_cmpuint (stats.log_sequences * 8192, >, 1 * MiB);
                g_assert_cmpuint (stats.blocks_reused, >, 0);
        }
}

/* Checking the crash images. */

typedef struct {
        guint64 offset;
        guint64 length;
} Range;

/* The ranges of the disk to read back: all of it. */
static GArray *
check_ranges (Run *r)
{
        GArray *ranges = g_array_new (FALSE, FALSE, sizeof (Range));
        Range all = { 0, r->size };

        g_array_append_val (ranges, all);
        return ranges;
}

/*
 * The model at a crash point: @durable is the disk as of the last flush
 * that completed, and @since the writes after it that had started.
 */
typedef struct {
        const guint8 *durable;
        GPtrArray *since; /* Op */
} Allowed;

static void
assert_sector (Run *r,
               const Allowed *allowed,
               const guint8 *found,
               guint64 offset,
               const char *what)
{
        if (memcmp (found, allowed->durable + offset, UNIT) == 0)
                return;
        for (guint i = 0; i < allowed->since->len; i++) {
                const Op *op = g_ptr_array_index (allowed->since, i);
                if (offset >= op->offset && offset < op->offset + op->length &&
                    memcmp (found, op->after + (offset - op->offset), UNIT) == 0)
                        return;
        }
        g_error ("%s: the sector at virtual offset %" G_GUINT64_FORMAT
                 " reads neither its flushed value nor one written after the flush",
                 what, offset);
}

static void
read_ranges (VhdxFile *file, GArray *ranges, GByteArray *out, const char *what)
{
        g_autoptr (GError) error = NULL;

        g_byte_array_set_size (out, 0);
        for (guint i = 0; i < ranges->len; i++) {
                const Range *range = &g_array_index (ranges, Range, i);
                guint old = out->len;
                g_byte_array_set_size (out, old + (guint) range->length);
                if (!vhdx_file_read (file, range->offset, out->data + old, range->length, &error))
                        g_error ("%s: read at %" G_GUINT64_FORMAT ": %s", what, range->offset,
                                 error->message);
        }
}

static void
assert_check_clean (VhdxFile *file, const char *what)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GPtrArray) problems = vhdx_problems_new ();

        if (!vhdx_file_check (file, problems, &error))
                g_error ("%s: check failed: %s", what, error->message);
        for (guint i = 0; i < problems->len; i++) {
                const VhdxProblem *p = g_ptr_array_index (problems, i);
                if (p->severity == VHDX_SEVERITY_ERROR)
                        g_error ("%s: check finds an error: %s", what, p->message);
        }
}

/* QEMU finds no error in the repaired file and reads the disk we read. */
static void
assert_qemu (Run *r, GBytes *repaired, const GByteArray *disk, const char *what)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *path = g_build_filename (r->dir, "repaired.vhdx", NULL);
        g_autofree char *raw = g_build_filename (r->dir, "repaired.raw", NULL);
        const char *check[] = { "qemu-img", "check", "-q", "-f", "vhdx", path, NULL };
        const char *convert[] = {
                "qemu-img", "convert", "-f", "vhdx", "-O", "raw", path, raw, NULL
        };
        g_autofree char *contents = NULL;
        gsize length;

        test_assert_ok (g_file_set_contents (path, g_bytes_get_data (repaired, NULL),
                                             (gssize) g_bytes_get_size (repaired), &error),
                        error);
        test_run (check);
        test_run (convert);
        test_assert_ok (g_file_get_contents (raw, &contents, &length, &error), error);
        g_assert_cmpuint (length, ==, r->size);
        if (memcmp (contents, disk->data, r->size) != 0)
                g_error ("%s: QEMU reads the repaired image differently", what);
        r->qemu_checked++;
}

static void
check_image (Run *r, GByteArray *image, const Allowed *allowed, GArray *ranges, const char *what)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = g_bytes_new_static (image->data, image->len);
        g_autoptr (GBytes) repaired = NULL;
        guint64 at = 0;

        /* Read-write first, on a copy: the log replayed onto the file. */
        {
                VhdxIo *io = crash_io_new_in (r->repaired, image->data, image->len);
                g_autoptr (VhdxFile) file = open_image (r, io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
                if (file == NULL)
                        g_error ("%s: the read-write open fails: %s", what, error->message);
                read_ranges (file, ranges, r->rw, what);
                if (!vhdx_file_close (file, &error))
                        g_error ("%s: closing the repaired image fails: %s", what, error->message);
        }
        repaired = g_bytes_new_static (r->repaired->data, r->repaired->len);

        /* Read-only: the log replayed in memory. */
        {
                g_autoptr (VhdxFile) file =
                        open_image (r, vhdx_io_new_memory (bytes), VHDX_OPEN_FLAGS_NONE, &error);
                if (file == NULL)
                        g_error ("%s: the read-only open fails: %s", what, error->message);
                read_ranges (file, ranges, r->ro, what);
                assert_check_clean (file, what);
        }
        for (guint i = 0; i < ranges->len; i++) {
                const Range *range = &g_array_index (ranges, Range, i);
                for (guint64 s = 0; s < range->length; s += UNIT)
                        assert_sector (r, allowed, r->ro->data + at + s, range->offset + s, what);
                at += range->length;
        }
        if (r->rw->len != r->ro->len || memcmp (r->rw->data, r->ro->data, r->ro->len) != 0)
                g_error ("%s: the read-write open reads otherwise", what);

        /* Repaired: clean, nothing wrong, the same disk. */
        {
                g_autoptr (VhdxFile) file =
                        open_image (r, vhdx_io_new_memory (repaired), VHDX_OPEN_FLAGS_NONE, &error);
                if (file == NULL)
                        g_error ("%s: the repaired image does not open: %s", what, error->message);
                g_assert_cmpint (vhdx_file_get_info (file)->log_state, ==, VHDX_LOG_STATE_CLEAN);
                assert_check_clean (file, what);
                read_ranges (file, ranges, r->rw, what);
                if (memcmp (r->rw->data, r->ro->data, r->ro->len) != 0)
                        g_error ("%s: the repaired image reads otherwise", what);
        }
        r->images_checked++;
        /* QEMU on a sample of them. */
        if (kind_is_qemu (r->kind) && r->images_checked % (g_test_thorough () ? 10 : 40) == 1 &&
            test_have_program ("qemu-img"))
                assert_qemu (r, repaired, r->ro, what);
}

static void
run_crashes (Run *r, CrashTrace *trace, guint stride)
{
        g_autoptr (CrashWalker) walker = crash_walker_new (trace);
        g_autoptr (GArray) ranges = check_ranges (r);
        g_autofree guint8 *durable = g_memdup2 (r->initial, r->size);
        g_autoptr (GPtrArray) since = g_ptr_array_new ();
        gboolean thorough = g_test_thorough ();
        guint next_op = 0;
        gboolean durable_checked = FALSE;

        do {
                guint point = crash_walker_get_point (walker);
                Allowed allowed = { durable, since };
                gboolean sampled = thorough || point % stride == 0;

                /* The model at this point: flushes completed, writes started. */
                while (next_op < r->ops->len) {
                        Op *op = &g_array_index (r->ops, Op, next_op);
                        if (op->start_call >= point && !(op->flush && op->end_call <= point))
                                break;
                        if (op->flush) {
                                if (op->end_call > point)
                                        break;
                                for (guint i = 0; i < since->len; i++) {
                                        const Op *w = g_ptr_array_index (since, i);
                                        memcpy (durable + w->offset, w->after, w->length);
                                }
                                g_ptr_array_set_size (since, 0);
                                durable_checked = FALSE;
                        } else {
                                g_ptr_array_add (since, op);
                        }
                        next_op++;
                }
                for (CrashKind kind = 0; kind < CRASH_N_KINDS; kind++) {
                        g_autofree char *what = NULL;
                        guint vol = crash_walker_get_volatile (walker);

                        /* What the last flush left is one file per flush. */
                        if (kind == CRASH_DURABLE && durable_checked && vol > 0)
                                continue;
                        if (kind == CRASH_ALL && !sampled)
                                continue;
                        if ((kind == CRASH_SUBSET || kind == CRASH_TORN) &&
                            (vol == 0 || (!thorough && point % (3 * stride) != 0)))
                                continue;
                        crash_walker_build (walker, kind, r->rand, r->image);
                        what = g_strdup_printf ("crash before call %u of %u, %s", point,
                                                crash_trace_get_calls (trace),
                                                crash_kind_name (kind));
                        check_image (r, r->image, &allowed, ranges, what);
                        if (kind == CRASH_DURABLE)
                                durable_checked = TRUE;
                }
        } while (crash_walker_advance (walker));
}

#ifdef VHDX_CRASH_THROUGH_FILTER
/*
 * The plugin below the filter, as nbdkit's next_ops give it to the filter:
 * its calls go to the recording file.
 */
typedef struct {
        struct nbdkit_next_ops ops; /* first: the filter's nbdkit_next */
        VhdxIo *io;
} Below;

static VhdxIo *
below_io (nbdkit_next *next)
{
        return ((Below *) next)->io;
}

static int
below_failed (GError *error, int *err)
{
        *err = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE) ? ENOSPC : EIO;
        g_test_message ("the plugin below fails: %s", error->message);
        g_error_free (error);
        return -1;
}

static int64_t
below_get_size (nbdkit_next *next)
{
        guint64 size;

        if (!vhdx_io_get_size (below_io (next), &size, NULL))
                return -1;
        return (int64_t) size;
}

static int
below_can_zero (nbdkit_next *next)
{
        return NBDKIT_ZERO_NATIVE;
}

static int
below_pread (nbdkit_next *next,
             void *buf,
             uint32_t count,
             uint64_t offset,
             uint32_t flags,
             int *err)
{
        GError *error = NULL;

        if (!vhdx_io_read_exact (below_io (next), buf, count, offset, "the plugin below", &error))
                return below_failed (error, err);
        return 0;
}

static int
below_pwrite (nbdkit_next *next,
              const void *buf,
              uint32_t count,
              uint64_t offset,
              uint32_t flags,
              int *err)
{
        GError *error = NULL;

        if (!vhdx_io_write (below_io (next), buf, count, offset, &error))
                return below_failed (error, err);
        return 0;
}

static int
below_flush (nbdkit_next *next, uint32_t flags, int *err)
{
        GError *error = NULL;

        if (!vhdx_io_flush (below_io (next), &error))
                return below_failed (error, err);
        return 0;
}

static int
below_zero (nbdkit_next *next, uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
        GError *error = NULL;

        if (!vhdx_io_zero_range (below_io (next), offset, count,
                                 (flags & NBDKIT_FLAG_MAY_TRIM) != 0, &error))
                return below_failed (error, err);
        return 0;
}

/* The image on the filter's VhdxIo over @below, opened as the filter opens
 * it: its metadata's ranges read ahead once it is open. */
static VhdxFile *
open_through_filter (Run *r, Below *below)
{
        g_autoptr (GError) error = NULL;
        VhdxIo *io;
        VhdxFile *file;

        below->ops.get_size = below_get_size;
        below->ops.can_zero = below_can_zero;
        below->ops.pread = below_pread;
        below->ops.pwrite = below_pwrite;
        below->ops.flush = below_flush;
        below->ops.zero = below_zero;
        io = vhdx_next_io_new (&below->ops, TRUE, FALSE);
        file = open_image (r, io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
        g_assert_no_error (error);
        {
                const VhdxInfo *info = vhdx_file_get_info (file);
                const guint64 ranges[] = {
                        0,
                        MiB,
                        info->log_offset,
                        info->log_offset + info->log_length,
                        info->metadata_offset,
                        info->metadata_offset + info->metadata_length,
                        info->bat_offset,
                        info->bat_offset + info->bat_length,
                };
                vhdx_next_io_set_metadata_ranges (io, ranges, G_N_ELEMENTS (ranges) / 2);
        }
        return file;
}
#endif

typedef struct {
        const char *name;
        ImageKind image;
        guint64 size;
        guint32 block_size;
        WorkloadFunc workload;
        guint32 entry_limit;   /* log entries of at most this many bytes; 0: half the log */
        guint quick_stride;    /* without -m thorough, every this many crash points (0: 1) */
        guint64 resize_to;     /* a resize workload: the new size */
        guint set_parent;      /* a set-parent workload: SET_PARENT_* */
        guint resize_flags;    /* VhdxResizeFlags, or the engine's for tests */
        gboolean set_metadata; /* a set-metadata workload */
        gboolean merge;        /* a merge workload */
        gboolean compact;      /* a compaction workload */
        gboolean filter;       /* through the filter's VhdxIo, every block filled first */
        guint compact_flags;   /* VhdxCompactFlags, or the engine's for tests */
        guint compact_from;    /* the first of the 8 blocks it gets data in */
} Case;

enum {
        SET_PARENT_FREE_SPACE = 1, /* the new locator goes to free space */
        SET_PARENT_IN_PLACE,       /* the metadata region full, over the old one */
};

/*
 * Resizing.  The image gets data in every block first (not recorded), then
 * the resize is the workload.  A crash before the resize started leaves
 * the old disk; one after its commit is durable, the new one; one in
 * between, either: the old size and data, or the new size with the data
 * up to the smaller size and zeros past it (the grown part of a child
 * reads its parent, which ends where the child ended: zeros too).
 */

/* A block-sized pattern in every block, partly, so that every block stores data. */
static GBytes *
fill_image (Run *r, GBytes *image)
{
        g_autoptr (GError) error = NULL;
        gsize length;
        const guint8 *contents = g_bytes_get_data (image, &length);
        VhdxIo *io = crash_io_new (contents, length, FALSE);
        g_autoptr (VhdxFile) file = open_image (r, io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
        g_autofree guint8 *data = g_malloc (64 * 1024);

        g_assert_no_error (error);
        for (guint64 at = 0; at < r->size; at += r->bs) {
                guint64 offset = at + (at / r->bs % 4) * 64 * 1024;
                gsize n = (gsize) MIN ((guint64) 64 * 1024, r->size - offset);

                for (gsize i = 0; i < n; i++)
                        data[i] = (guint8) (offset / UNIT + i / UNIT + 1);
                test_assert_ok (vhdx_file_write (file, offset, data, n, 0, &error), error);
                memcpy (r->initial + offset, data, n);
        }
        test_assert_ok (vhdx_file_close (file, &error), error);
        return g_bytes_new (crash_io_get_contents (io)->data, crash_io_get_contents (io)->len);
}

/* The disk of @file reads @model up to @model_size and zeros from there to its end. */
static void
assert_resized_disk (VhdxFile *file, const guint8 *model, guint64 model_size, const char *what)
{
        g_autoptr (GError) error = NULL;
        guint64 size = vhdx_file_get_info (file)->virtual_size;
        guint64 common = MIN (size, model_size);
        /* Read past the model's end as far as this, then ask the map. */
        guint64 read_end = MIN (size, model_size + 8 * MiB);
        g_autofree guint8 *buf = g_malloc (MAX (common, read_end - common) + 1);
        g_autoptr (GArray) extents = NULL;

        if (!vhdx_file_read (file, 0, buf, common, &error))
                g_error ("%s: read: %s", what, error->message);
        if (memcmp (buf, model, common) != 0)
                g_error ("%s: the disk up to %" G_GUINT64_FORMAT " bytes reads otherwise", what,
                         common);
        if (read_end == common)
                return;
        if (!vhdx_file_read (file, common, buf, read_end - common, &error))
                g_error ("%s: read: %s", what, error->message);
        for (guint64 i = 0; i < read_end - common; i++) {
                if (buf[i] != 0)
                        g_error ("%s: the grown disk reads non-zero at %" G_GUINT64_FORMAT, what,
                                 common + i);
        }
        if (read_end == size)
                return;
        extents = vhdx_file_map (file, read_end, size - read_end, &error);
        g_assert_no_error (error);
        for (guint i = 0; i < extents->len; i++) {
                const VhdxMapExtent *e = &g_array_index (extents, VhdxMapExtent, i);
                if (e->kind == VHDX_EXTENT_DATA)
                        g_error ("%s: the grown disk stores data at %" G_GUINT64_FORMAT, what,
                                 e->offset);
        }
}

static void
check_resized_image (Run *r,
                     GByteArray *image,
                     guint64 old_size,
                     guint64 new_size,
                     gboolean may_be_old,
                     gboolean may_be_new,
                     const char *what)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = g_bytes_new_static (image->data, image->len);
        guint64 sizes[2] = { 0, 0 };

        {
                VhdxIo *io = crash_io_new_in (r->repaired, image->data, image->len);
                g_autoptr (VhdxFile) file = open_image (r, io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
                if (file == NULL)
                        g_error ("%s: the read-write open fails: %s", what, error->message);
                sizes[0] = vhdx_file_get_info (file)->virtual_size;
                assert_resized_disk (file, r->initial, old_size, what);
                if (!vhdx_file_close (file, &error))
                        g_error ("%s: closing the repaired image fails: %s", what, error->message);
        }
        {
                g_autoptr (VhdxFile) file =
                        open_image (r, vhdx_io_new_memory (bytes), VHDX_OPEN_FLAGS_NONE, &error);
                if (file == NULL)
                        g_error ("%s: the read-only open fails: %s", what, error->message);
                sizes[1] = vhdx_file_get_info (file)->virtual_size;
                assert_resized_disk (file, r->initial, old_size, what);
                assert_check_clean (file, what);
        }
        if (sizes[0] != sizes[1])
                g_error ("%s: read-only the size is %" G_GUINT64_FORMAT
                         ", read-write %" G_GUINT64_FORMAT,
                         what, sizes[1], sizes[0]);
        if (!((may_be_old && sizes[0] == old_size) || (may_be_new && sizes[0] == new_size)))
                g_error ("%s: the size is %" G_GUINT64_FORMAT ", neither %s%s", what, sizes[0],
                         may_be_old ? "the old one" : "", may_be_new ? " the new one" : "");
        {
                g_autoptr (GBytes) repaired =
                        g_bytes_new_static (r->repaired->data, r->repaired->len);
                g_autoptr (VhdxFile) file =
                        open_image (r, vhdx_io_new_memory (repaired), VHDX_OPEN_FLAGS_NONE, &error);
                if (file == NULL)
                        g_error ("%s: the repaired image does not open: %s", what, error->message);
                g_assert_cmpint (vhdx_file_get_info (file)->log_state, ==, VHDX_LOG_STATE_CLEAN);
                assert_check_clean (file, what);
                g_assert_cmpuint (vhdx_file_get_info (file)->virtual_size, ==, sizes[0]);
                if (kind_is_qemu (r->kind) &&
                    r->images_checked % (g_test_thorough () ? 10 : 40) == 1 &&
                    test_have_program ("qemu-img")) {
                        g_autofree char *path = g_build_filename (r->dir, "repaired.vhdx", NULL);
                        const char *check[] = {
                                "qemu-img", "check", "-q", "-f", "vhdx", path, NULL
                        };

                        test_assert_ok (g_file_set_contents (path, (const char *) r->repaired->data,
                                                             r->repaired->len, &error),
                                        error);
                        test_run (check);
                        r->qemu_checked++;
                }
        }
        r->images_checked++;
}

/*
 * The crash images of a change made by one call, whose file calls were
 * @start to @end of @trace: every kind at every point, each given to
 * @check with whether the image may still be as it was (a crash before the
 * call's last file call) and whether it may already be changed (after its
 * first).
 */
typedef struct {
        gboolean may_be_old;
        gboolean may_be_new;
} ChangePoint;

typedef void (*CheckChangeFunc) (Run *r,
                                 GByteArray *image,
                                 const ChangePoint *at,
                                 const char *what,
                                 gpointer data);

static void
walk_change_crashes (Run *r,
                     CrashTrace *trace,
                     const char *name,
                     guint start,
                     guint end,
                     CheckChangeFunc check,
                     gpointer data)
{
        g_autoptr (CrashWalker) walker = crash_walker_new (trace);

        do {
                guint point = crash_walker_get_point (walker);
                ChangePoint at = { point <= end, point > start };

                for (CrashKind kind = 0; kind < CRASH_N_KINDS; kind++) {
                        g_autofree char *what = NULL;

                        if ((kind == CRASH_SUBSET || kind == CRASH_TORN) &&
                            crash_walker_get_volatile (walker) == 0)
                                continue;
                        crash_walker_build (walker, kind, r->rand, r->image);
                        what = g_strdup_printf ("%s: crash before call %u of %u, %s", name, point,
                                                crash_trace_get_calls (trace),
                                                crash_kind_name (kind));
                        check (r, r->image, &at, what, data);
                }
        } while (crash_walker_advance (walker));
}

static void
check_resized (Run *r, GByteArray *image, const ChangePoint *at, const char *what, gpointer data)
{
        const Case *c = data;

        check_resized_image (r, image, r->size, c->resize_to, at->may_be_old, at->may_be_new, what);
}

static void
run_resize_case (Run *r, const Case *c, GBytes *image)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (CrashTrace) trace = NULL;
        gsize length;
        const guint8 *contents;
        guint start, end;
        VhdxResizeResult result;

        image = fill_image (r, image);
        contents = g_bytes_get_data (image, &length);
        r->io = crash_io_new (contents, length, TRUE);
        r->file = open_image (r, r->io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
        g_assert_no_error (error);
        if (c->entry_limit > 0)
                vhdx_file_set_log_entry_limit (r->file, c->entry_limit);
        start = crash_io_get_calls (r->io);
        test_assert_ok (vhdx_file_resize (r->file, c->resize_to,
                                          VHDX_RESIZE_FLAGS_DISCARD_DATA | c->resize_flags, NULL,
                                          NULL, NULL, &result, &error),
                        error);
        end = crash_io_get_calls (r->io);
        test_assert_ok (vhdx_file_close (r->file, &error), error);
        trace = crash_io_get_trace (r->io);
        g_clear_pointer (&r->file, vhdx_file_free);
        g_bytes_unref (image);
        g_test_message ("%s: %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT
                        " bytes, BAT region %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT
                        ", %" G_GUINT64_FORMAT " blocks moved, %" G_GUINT64_FORMAT " dropped",
                        c->name, result.old_size, result.new_size, result.old_bat_length,
                        result.new_bat_length, result.blocks_moved, result.blocks_dropped);

        walk_change_crashes (r, trace, c->name, start, end, check_resized, (gpointer) c);
        g_test_message ("%s: %u file calls, %" G_GUINT64_FORMAT
                        " crash images checked (%" G_GUINT64_FORMAT " also by QEMU)",
                        c->name, crash_trace_get_calls (trace), r->images_checked, r->qemu_checked);
}

/*
 * Setting the parent.  The child gets data first (not recorded), the
 * parent moves, then pointing the child at it is the workload.  Every
 * crash image reads the disk as before and holds the old locator or the
 * new one, whole: a crash before the change started, the old one; after
 * its commit, the new one; DataWriteGuid never changes.
 */

typedef struct {
        const char *old_relative;
        const char *new_relative;
        const char *new_absolute;
        VhdxGuid data_write_guid;
        gboolean may_be_old;
        gboolean may_be_new;
} Relinked;

/* The locator of @file: 0 the old one, 1 the new one. */
static guint
which_locator (VhdxFile *file, const Relinked *relinked, const char *what)
{
        GPtrArray *locator = vhdx_file_get_parent_locator (file);
        const char *relative = vhdx_parent_locator_lookup (locator, "relative_path");
        const char *absolute = vhdx_parent_locator_lookup (locator, "absolute_win32_path");

        if (g_strcmp0 (relative, relinked->old_relative) == 0 && absolute == NULL)
                return 0;
        if (g_strcmp0 (relative, relinked->new_relative) == 0 &&
            g_strcmp0 (absolute, relinked->new_absolute) == 0)
                return 1;
        g_error ("%s: the locator names %s and %s, neither the old paths nor the new ones", what,
                 relative, absolute);
}

/*
 * Leave no room in the metadata region of @image for a new locator: the
 * locator gets a long relative_path ("." components, which name the same
 * file), and an item of no known kind takes the rest of the region.
 */
static GBytes *
fill_metadata_region (Run *r, GBytes *image, const char *relative)
{
        g_autoptr (GError) error = NULL;
        GByteArray *patched = g_byte_array_new ();
        g_autoptr (GPtrArray) locator = NULL;
        g_autoptr (GBytes) item = NULL;
        guint8 *table;
        guint64 region;
        guint32 region_length, at, end;
        guint count;
        int index;

        g_byte_array_append (patched, g_bytes_get_data (image, NULL), g_bytes_get_size (image));
        {
                g_autoptr (VhdxFile) file = open_image (r, vhdx_io_new_memory (g_bytes_ref (image)),
                                                        VHDX_OPEN_FLAGS_NONE, &error);
                g_assert_no_error (error);
                region = vhdx_file_get_info (file)->metadata_offset;
                region_length = vhdx_file_get_info (file)->metadata_length;
                at = (guint32) (vhdx_file_get_info (file)->parent_locator_offset - region);
                locator = vhdx_parent_locator_copy (vhdx_file_get_parent_locator (file));
        }
        vhdx_parent_locator_set (locator, "relative_path", relative);
        item = vhdx_parent_locator_encode (locator, &error);
        g_assert_no_error (error);
        table = patched->data + region;
        index = vhdx_metadata_table_find (table, &vhdx_guid_item_parent_locator);
        g_assert_cmpint (index, >=, 0);
        memcpy (table + at, g_bytes_get_data (item, NULL), g_bytes_get_size (item));
        vhdx_put_le32 (table + VHDX_METADATA_HEADER_SIZE + index * VHDX_METADATA_ENTRY_SIZE +
                               VHDX_METADATA_ENTRY_OFF_LENGTH,
                       (guint32) g_bytes_get_size (item));
        end = (at + (guint32) g_bytes_get_size (item) + 7) / 8 * 8;
        count = vhdx_metadata_table_count (table);
        {
                guint8 *e = table + VHDX_METADATA_HEADER_SIZE + count * VHDX_METADATA_ENTRY_SIZE;
                VhdxGuid filler;

                vhdx_guid_new_random (&filler);
                memcpy (e + VHDX_METADATA_ENTRY_OFF_ITEM_ID, filler.bytes, 16);
                vhdx_put_le32 (e + VHDX_METADATA_ENTRY_OFF_OFFSET, end);
                vhdx_put_le32 (e + VHDX_METADATA_ENTRY_OFF_LENGTH, region_length - end);
        }
        vhdx_put_le16 (table + VHDX_METADATA_OFF_ENTRY_COUNT, (guint16) (count + 1));
        g_bytes_unref (image);
        return g_byte_array_free_to_bytes (patched);
}

/* @file reads the disk as before, with the one DataWriteGuid; its locator. */
static guint
check_relinked_file (Run *r, VhdxFile *file, const Relinked *relinked, const char *what)
{
        g_autoptr (GError) error = NULL;

        g_byte_array_set_size (r->ro, (guint) r->size);
        if (!vhdx_file_read (file, 0, r->ro->data, r->size, &error))
                g_error ("%s: read: %s", what, error->message);
        if (memcmp (r->ro->data, r->initial, r->size) != 0)
                g_error ("%s: the disk reads otherwise", what);
        if (!vhdx_guid_equal (&vhdx_file_get_info (file)->data_write_guid,
                              &relinked->data_write_guid))
                g_error ("%s: DataWriteGuid changed", what);
        return which_locator (file, relinked, what);
}

static void
check_relinked_image (Run *r, GByteArray *image, const Relinked *relinked, const char *what)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = g_bytes_new_static (image->data, image->len);
        guint found[3];

        {
                VhdxIo *io = crash_io_new_in (r->repaired, image->data, image->len);
                g_autoptr (VhdxFile) file = open_image (r, io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
                if (file == NULL)
                        g_error ("%s: the read-write open fails: %s", what, error->message);
                found[0] = check_relinked_file (r, file, relinked, what);
                if (!vhdx_file_close (file, &error))
                        g_error ("%s: closing the repaired image fails: %s", what, error->message);
        }
        {
                g_autoptr (VhdxFile) file =
                        open_image (r, vhdx_io_new_memory (bytes), VHDX_OPEN_FLAGS_NONE, &error);
                if (file == NULL)
                        g_error ("%s: the read-only open fails: %s", what, error->message);
                found[1] = check_relinked_file (r, file, relinked, what);
                assert_check_clean (file, what);
        }
        {
                g_autoptr (GBytes) repaired =
                        g_bytes_new_static (r->repaired->data, r->repaired->len);
                g_autoptr (VhdxFile) file =
                        open_image (r, vhdx_io_new_memory (repaired), VHDX_OPEN_FLAGS_NONE, &error);
                if (file == NULL)
                        g_error ("%s: the repaired image does not open: %s", what, error->message);
                g_assert_cmpint (vhdx_file_get_info (file)->log_state, ==, VHDX_LOG_STATE_CLEAN);
                assert_check_clean (file, what);
                found[2] = check_relinked_file (r, file, relinked, what);
        }
        if (found[0] != found[1] || found[1] != found[2])
                g_error ("%s: the read-write, read-only and repaired opens find other locators",
                         what);
        if ((found[0] == 0 && !relinked->may_be_old) || (found[0] == 1 && !relinked->may_be_new))
                g_error ("%s: the %s locator, too %s", what, found[0] == 0 ? "old" : "new",
                         found[0] == 0 ? "late" : "early");
        r->images_checked++;
}

static void
check_relinked (Run *r, GByteArray *image, const ChangePoint *at, const char *what, gpointer data)
{
        Relinked *relinked = data;

        relinked->may_be_old = at->may_be_old;
        relinked->may_be_new = at->may_be_new;
        check_relinked_image (r, image, relinked, what);
}

static void
run_set_parent_case (Run *r, const Case *c, GBytes *image)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (CrashTrace) trace = NULL;
        g_auto (VhdxSetParentResult) result = { 0 };
        g_autofree char *child_path = g_build_filename (r->dir, "child.vhdx", NULL);
        g_autofree char *store = g_build_filename (r->dir, "store", NULL);
        char *moved = g_build_filename (store, "moved.vhdx", NULL);
        g_autofree char *old_relative = NULL;
        g_autoptr (VhdxFile) parent = NULL;
        Relinked relinked = { 0 };
        VhdxWriteStats stats;
        guint64 sequences;
        gsize length;
        const guint8 *contents;
        guint start, end;

        image = fill_image (r, image);
        relinked.old_relative = "parent.vhdx";
        if (c->set_parent == SET_PARENT_IN_PLACE) {
                g_autoptr (GString) relative = g_string_new (NULL);

                for (guint i = 0; i < 100; i++)
                        g_string_append (relative, ".\\");
                g_string_append (relative, "parent.vhdx");
                old_relative = g_string_free (g_steal_pointer (&relative), FALSE);
                relinked.old_relative = old_relative;
                image = fill_metadata_region (r, image, old_relative);
        }
        g_assert_cmpint (g_mkdir (store, 0755), ==, 0);
        g_assert_cmpint (g_rename (r->parent, moved), ==, 0);
        g_free (r->parent);
        r->parent = moved;
        parent = test_open_path (moved, &error);
        g_assert_no_error (error);

        contents = g_bytes_get_data (image, &length);
        r->io = crash_io_new (contents, length, TRUE);
        r->file = open_image (r, r->io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
        g_assert_no_error (error);
        if (c->entry_limit > 0)
                vhdx_file_set_log_entry_limit (r->file, c->entry_limit);
        relinked.data_write_guid = vhdx_file_get_info (r->file)->data_write_guid;
        vhdx_file_get_write_stats (r->file, &stats);
        sequences = stats.log_sequences;
        start = crash_io_get_calls (r->io);
        test_assert_ok (vhdx_file_set_parent (r->file, child_path, parent, moved, FALSE, &result,
                                              &error),
                        error);
        end = crash_io_get_calls (r->io);
        vhdx_file_get_write_stats (r->file, &stats);
        sequences = stats.log_sequences - sequences;
        /* Split into its two orders when entries hold one page. */
        g_assert_cmpuint (sequences, ==, c->entry_limit > 0 ? 2 : 1);
        test_assert_ok (vhdx_file_close (r->file, &error), error);
        trace = crash_io_get_trace (r->io);
        g_clear_pointer (&r->file, vhdx_file_free);
        g_bytes_unref (image);
        g_assert_cmpstr (result.new_relative_path, ==, "store\\moved.vhdx");
        g_assert_cmpint (result.in_place, ==, c->set_parent == SET_PARENT_IN_PLACE);
        relinked.new_relative = result.new_relative_path;
        relinked.new_absolute = result.absolute_path;
        g_test_message ("%s: relative_path %s -> %s%s, %" G_GUINT64_FORMAT " log sequences",
                        c->name, result.old_relative_path, result.new_relative_path,
                        result.in_place ? " in place" : "", sequences);

        walk_change_crashes (r, trace, c->name, start, end, check_relinked, &relinked);
        g_test_message ("%s: %u file calls, %" G_GUINT64_FORMAT " crash images checked", c->name,
                        crash_trace_get_calls (trace), r->images_checked);
}

/*
 * Setting the metadata.  The image gets data first (not recorded), and a
 * differencing image made from it is written beside it; then a new
 * physical sector size and Virtual Disk ID are the workload, which names
 * the new DataWriteGuid in the child (on disk, not recorded) before the
 * image takes it.  Every crash image reads the disk as before, holds the
 * old values or the new ones, both items alike, with the old or the new
 * DataWriteGuid (the new one with the new values), and the child as the
 * first step left it (the new GUID as parent_linkage2) opens with it and
 * reads through it; the child as the last step left it (the new GUID as
 * parent_linkage alone) does with those holding the new values.
 */

typedef struct {
        guint32 physical_sector_size;
        VhdxGuid disk_id;
        VhdxGuid data_write_guid;
} Metadata;

typedef struct {
        Metadata old;
        Metadata new;
        /* The child between the two steps (parent_linkage old,
         * parent_linkage2 new), and at the end (parent_linkage new). */
        const char *child_path;
        const char *settled_child_path;
        gboolean may_be_old;
        gboolean may_be_new;
        gboolean new_guid_allowed; /* the change started: the headers may have the new one */
        guint seen[2];             /* crash images found with the old values, the new ones */
} MetadataSet;

static Metadata
metadata_of (VhdxFile *file)
{
        const VhdxInfo *info = vhdx_file_get_info (file);

        return (Metadata){ info->physical_sector_size, info->virtual_disk_id,
                           info->data_write_guid };
}

/* The image's crash image, for the child's open. */
typedef struct {
        Run *r;
        GBytes *image;
} ChildOpen;

static VhdxIo *
open_image_of_child (const char *path, gboolean writable, gpointer user_data, GError **error)
{
        ChildOpen *open = user_data;
        g_autofree char *name = g_path_get_basename (path);

        if (g_str_equal (name, "image.vhdx"))
                return vhdx_io_new_memory (g_bytes_ref (open->image));
        return vhdx_io_open_path (path, FALSE, error);
}

/* @file reads the disk as before; which values it holds (0 old, 1 new). */
static guint
check_set_file (Run *r, VhdxFile *file, const MetadataSet *set, const char *what)
{
        g_autoptr (GError) error = NULL;
        Metadata found = metadata_of (file);
        gboolean old_values, new_values;

        g_byte_array_set_size (r->ro, (guint) r->size);
        if (!vhdx_file_read (file, 0, r->ro->data, r->size, &error))
                g_error ("%s: read: %s", what, error->message);
        if (memcmp (r->ro->data, r->initial, r->size) != 0)
                g_error ("%s: the disk reads otherwise", what);
        old_values = found.physical_sector_size == set->old.physical_sector_size &&
                     vhdx_guid_equal (&found.disk_id, &set->old.disk_id);
        new_values =
                found.physical_sector_size ==
                set->new.physical_sector_size &&vhdx_guid_equal (&found.disk_id, &set->new.disk_id);
        if (!old_values && !new_values)
                g_error ("%s: physical sector size %u and a disk ID, neither the old values nor "
                         "the new ones",
                         what, found.physical_sector_size);
        if (old_values && !set->may_be_old)
                g_error ("%s: the old values, too late", what);
        if (new_values && !set->may_be_new)
                g_error ("%s: the new values, too early", what);
        if (new_values && !vhdx_guid_equal (&found.data_write_guid, &set->new.data_write_guid))
                g_error ("%s: the new values without the new DataWriteGuid", what);
        if (!vhdx_guid_equal (&found.data_write_guid, &set->old.data_write_guid) &&
            !(set->new_guid_allowed &&
              vhdx_guid_equal (&found.data_write_guid, &set->new.data_write_guid)))
                g_error ("%s: a DataWriteGuid neither the old one nor the new one", what);
        return new_values ? 1 : 0;
}

/* The child opens with @image as its parent, and reads @expected through it. */
static void
check_child_of (Run *r,
                GBytes *image,
                const char *child_path,
                const guint8 *expected,
                const char *what)
{
        g_autoptr (GError) error = NULL;
        ChildOpen open = { r, image };
        /* The image's own parent, if any, is beside it. */
        const char *parent_dirs[] = { r->dir, NULL };
        VhdxOpenOptions options = {
                .path = child_path,
                .parent_dirs = parent_dirs,
                .open_func = open_image_of_child,
                .open_data = &open,
        };
        VhdxIo *io = vhdx_io_open_path (child_path, FALSE, &error);
        g_autoptr (VhdxFile) child = NULL;

        g_assert_no_error (error);
        child = vhdx_file_open_full (io, VHDX_OPEN_FLAGS_NONE, &options, &error);
        if (child == NULL)
                g_error ("%s: the child does not open with the image: %s", what, error->message);
        g_byte_array_set_size (r->rw, (guint) r->size);
        if (!vhdx_file_read (child, 0, r->rw->data, r->size, &error))
                g_error ("%s: reading the child: %s", what, error->message);
        if (memcmp (r->rw->data, expected, r->size) != 0)
                g_error ("%s: the child reads otherwise", what);
}

static void
check_set_image (Run *r, GByteArray *image, MetadataSet *set, const char *what)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = g_bytes_new_static (image->data, image->len);
        g_autoptr (GBytes) repaired = NULL;
        guint found[3];

        {
                VhdxIo *io = crash_io_new_in (r->repaired, image->data, image->len);
                g_autoptr (VhdxFile) file = open_image (r, io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
                if (file == NULL)
                        g_error ("%s: the read-write open fails: %s", what, error->message);
                found[0] = check_set_file (r, file, set, what);
                if (!vhdx_file_close (file, &error))
                        g_error ("%s: closing the repaired image fails: %s", what, error->message);
        }
        repaired = g_bytes_new_static (r->repaired->data, r->repaired->len);
        {
                g_autoptr (VhdxFile) file = open_image (r, vhdx_io_new_memory (g_bytes_ref (bytes)),
                                                        VHDX_OPEN_FLAGS_NONE, &error);
                if (file == NULL)
                        g_error ("%s: the read-only open fails: %s", what, error->message);
                found[1] = check_set_file (r, file, set, what);
                assert_check_clean (file, what);
        }
        {
                g_autoptr (VhdxFile) file =
                        open_image (r, vhdx_io_new_memory (g_bytes_ref (repaired)),
                                    VHDX_OPEN_FLAGS_NONE, &error);
                if (file == NULL)
                        g_error ("%s: the repaired image does not open: %s", what, error->message);
                g_assert_cmpint (vhdx_file_get_info (file)->log_state, ==, VHDX_LOG_STATE_CLEAN);
                assert_check_clean (file, what);
                found[2] = check_set_file (r, file, set, what);
        }
        if (found[0] != found[1] || found[1] != found[2])
                g_error ("%s: the read-write, read-only and repaired opens find other values",
                         what);
        check_child_of (r, bytes, set->child_path, r->initial, what);
        check_child_of (r, repaired, set->child_path, r->initial, what);
        /* The last step comes after the image's change. */
        if (found[0] == 1) {
                check_child_of (r, bytes, set->settled_child_path, r->initial, what);
                check_child_of (r, repaired, set->settled_child_path, r->initial, what);
        }
        set->seen[found[0]]++;
        r->images_checked++;
}

/* A differencing image of the image @image at @path, empty: it reads the image. */
static void
write_child (Run *r, GBytes *image, const char *path)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) child = NULL;
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DIFFERENCING,
                .virtual_size = r->size,
                .block_size = 1 * MiB,
                .logical_sector_size = r->ss,
                .parent_relative_path = "image.vhdx",
        };
        g_autoptr (VhdxFile) file = open_image (r, vhdx_io_new_memory (g_bytes_ref (image)),
                                                VHDX_OPEN_FLAGS_NONE, &error);

        g_assert_no_error (error);
        params.parent_data_write_guid = vhdx_file_get_info (file)->data_write_guid;
        child = create_image (r, &params, NULL, path);
}

static void
check_set (Run *r, GByteArray *image, const ChangePoint *at, const char *what, gpointer data)
{
        MetadataSet *set = data;

        set->may_be_old = at->may_be_old;
        set->may_be_new = at->may_be_new;
        set->new_guid_allowed = at->may_be_new;
        check_set_image (r, image, set, what);
}

static void
run_set_metadata_case (Run *r, const Case *c, GBytes *image)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (CrashTrace) trace = NULL;
        g_auto (VhdxSetMetadataResult) result = { 0 };
        g_autofree char *image_path = g_build_filename (r->dir, "image.vhdx", NULL);
        g_autofree char *child_path = g_build_filename (r->dir, "child.avhdx", NULL);
        /* Elsewhere, so that the workload does not find it beside the image. */
        g_autofree char *linked_dir = g_build_filename (r->dir, "first-step", NULL);
        g_autofree char *linked_path = g_build_filename (linked_dir, "child.avhdx", NULL);
        MetadataSet set = { 0 };
        VhdxWriteStats stats;
        guint64 sequences;
        guint32 new_size;
        gsize length;
        const guint8 *contents;
        guint start, end;

        image = fill_image (r, image);
        write_child (r, image, child_path);
        set.settled_child_path = child_path;
        set.child_path = linked_path;
        {
                g_autofree char *child_bytes = NULL;
                gsize n;

                g_assert_cmpint (g_mkdir_with_parents (linked_dir, 0755), ==, 0);
                test_assert_ok (g_file_get_contents (child_path, &child_bytes, &n, &error), error);
                test_assert_ok (g_file_set_contents (linked_path, child_bytes, (gssize) n, &error),
                                error);
        }
        contents = g_bytes_get_data (image, &length);
        r->io = crash_io_new (contents, length, TRUE);
        r->file = open_image (r, r->io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
        g_assert_no_error (error);
        if (c->entry_limit > 0)
                vhdx_file_set_log_entry_limit (r->file, c->entry_limit);
        set.old = metadata_of (r->file);
        new_size = set.old.physical_sector_size == 4096 ? 512 : 4096;
        vhdx_file_get_write_stats (r->file, &stats);
        sequences = stats.log_sequences;
        start = crash_io_get_calls (r->io);
        /* The image's path is only where its children are looked for. */
        test_assert_ok (vhdx_file_set_metadata (r->file, image_path, new_size,
                                                VHDX_SET_METADATA_FLAGS_RESET_DISK_ID, &result,
                                                &error),
                        error);
        end = crash_io_get_calls (r->io);
        set.new = metadata_of (r->file);
        vhdx_file_get_write_stats (r->file, &stats);
        /* Both items in one sequence: they share a page, even when entries hold one. */
        g_assert_cmpuint (stats.log_sequences - sequences, ==, 1);
        test_assert_ok (vhdx_file_close (r->file, &error), error);
        trace = crash_io_get_trace (r->io);
        g_clear_pointer (&r->file, vhdx_file_free);
        g_bytes_unref (image);
        g_assert_true (result.changed);
        g_assert_cmpuint (set.new.physical_sector_size, ==, new_size);
        g_assert_false (vhdx_guid_equal (&set.new.disk_id, &set.old.disk_id));
        g_assert_false (vhdx_guid_equal (&set.new.data_write_guid, &set.old.data_write_guid));
        g_assert_true (vhdx_guid_equal (&result.new_data_write_guid, &set.new.data_write_guid));
        /* The child was found and names the new DataWriteGuid, its own kept. */
        g_assert_cmpuint (result.children_updated->len, ==, 1);
        g_assert_cmpstr (g_ptr_array_index (result.children_updated, 0), ==, child_path);
        g_assert_cmpuint (result.children_orphaned->len, ==, 0);
        {
                g_autoptr (VhdxFile) child =
                        vhdx_file_open (vhdx_io_open_path (child_path, FALSE, NULL),
                                        VHDX_OPEN_FLAGS_NO_PARENT, &error);
                g_autofree char *linkage = vhdx_parent_linkage_text (&set.new.data_write_guid);
                GPtrArray *locator;

                g_assert_no_error (error);
                locator = vhdx_file_get_parent_locator (child);
                g_assert_cmpstr (vhdx_parent_locator_lookup (locator, "parent_linkage"), ==,
                                 linkage);
                g_assert_null (vhdx_parent_locator_lookup (locator, "parent_linkage2"));
        }
        {
                /* The child as the first step left it: the old parent_linkage,
                 * the new GUID as parent_linkage2. */
                g_autoptr (VhdxFile) linked =
                        vhdx_file_open (vhdx_io_open_path (linked_path, TRUE, NULL),
                                        VHDX_OPEN_FLAGS_READ_WRITE | VHDX_OPEN_FLAGS_NO_PARENT,
                                        &error);

                g_assert_no_error (error);
                test_assert_ok (vhdx_file_set_parent_linkage2 (linked, &set.new.data_write_guid,
                                                               &error),
                                error);
                test_assert_ok (vhdx_file_close (linked, &error), error);
        }
        g_test_message ("%s: physical sector size %u -> %u, new disk ID and DataWriteGuid", c->name,
                        set.old.physical_sector_size, set.new.physical_sector_size);

        walk_change_crashes (r, trace, c->name, start, end, check_set, &set);
        g_assert_cmpuint (set.seen[0], >, 0);
        g_assert_cmpuint (set.seen[1], >, 0);
        g_test_message ("%s: %u file calls, %" G_GUINT64_FORMAT
                        " crash images checked (%u with the old values, %u with the new ones)",
                        c->name, crash_trace_get_calls (trace), r->images_checked, set.seen[0],
                        set.seen[1]);
}

/*
 * Merging.  The image gets data first, and a differencing image made from
 * it beside it gets data of its own over part of it and zeros over other
 * parts (neither recorded); then the merge of the child into the image is
 * the workload: the crash images are the image's, the child is on disk.
 * Every crash image opens, checks clean, and has the old DataWriteGuid or,
 * once the merge started, the new one; the child as the first step left it
 * (the old parent_linkage, the new GUID as parent_linkage2) opens with it
 * and reads as it did before the merge; once the merge is durable, the
 * image alone reads so too, and the child as the last step left it (the
 * new GUID as parent_linkage alone) opens with it.
 */

typedef struct {
        GBytes *image;    /* the crash image being checked */
        VhdxIo *recorded; /* the workload's, handed out once */
} MergeOpen;

static VhdxIo *
open_merge_member (const char *path, gboolean writable, gpointer user_data, GError **error)
{
        MergeOpen *open = user_data;
        g_autofree char *name = g_path_get_basename (path);

        if (g_str_equal (name, "image.vhdx") && open->recorded != NULL)
                return g_steal_pointer (&open->recorded);
        return vhdx_io_open_path (path, writable, error);
}

/* The child's data: a few sectors over the image's data, whole blocks, and
 * zeros over the image's data (written, or a whole block made to read as
 * zeros), block by block; returns what it reads. */
static guint8 *
write_child_data (Run *r, GBytes *image, const char *child_path)
{
        g_autoptr (GError) error = NULL;
        ChildOpen open = { r, image };
        const char *parent_dirs[] = { r->dir, NULL };
        VhdxOpenOptions options = {
                .path = child_path,
                .parent_dirs = parent_dirs,
                .open_func = open_image_of_child,
                .open_data = &open,
        };
        g_autoptr (VhdxFile) child =
                vhdx_file_open_full (vhdx_io_open_path (child_path, TRUE, NULL),
                                     VHDX_OPEN_FLAGS_READ_WRITE, &options, &error);
        g_autofree guint8 *data = g_malloc (r->bs);
        guint8 *disk = g_malloc (r->size);

        g_assert_no_error (error);
        for (guint64 at = 0; at < r->size; at += r->bs) {
                guint64 block = at / r->bs;
                gsize n = (gsize) MIN ((guint64) r->bs, r->size - at);

                memset (data, (int) (0xa0 + block % 32), n);
                if (block % 4 == 0)
                        test_assert_ok (vhdx_file_write (child, at + 8192, data, 2 * r->ss, 0,
                                                         &error),
                                        error);
                else if (block % 4 == 1)
                        test_assert_ok (vhdx_file_write (child, at, data, n, 0, &error), error);
                else if (block % 4 == 2)
                        test_assert_ok (vhdx_file_write_zeroes (child, at, MIN (n, 65536), 0,
                                                                &error),
                                        error);
                else
                        test_assert_ok (vhdx_file_write_zeroes (child, at, n,
                                                                VHDX_WRITE_FLAGS_MAY_UNMAP, &error),
                                        error);
        }
        test_assert_ok (vhdx_file_read (child, 0, disk, r->size, &error), error);
        test_assert_ok (vhdx_file_close (child, &error), error);
        return disk;
}

typedef struct {
        const guint8 *merged; /* what the child reads, and the image once merged */
        VhdxGuid old_guid;
        VhdxGuid new_guid;
        const char *linked_path;  /* the child after the first step */
        const char *settled_path; /* the child after the last step */
        gboolean may_be_old;      /* a crash before the merge ended */
        gboolean may_be_new;      /* a crash after it started */
        guint seen[2];            /* crash images with the old DataWriteGuid, the new one */
} MergeCheck;

static void
check_merged_image (Run *r, GByteArray *image, MergeCheck *m, const char *what)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) bytes = g_bytes_new_static (image->data, image->len);
        g_autoptr (GBytes) repaired = NULL;
        gboolean is_new;

        {
                VhdxIo *io = crash_io_new_in (r->repaired, image->data, image->len);
                g_autoptr (VhdxFile) file = open_image (r, io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
                const VhdxGuid *guid;

                if (file == NULL)
                        g_error ("%s: the read-write open fails: %s", what, error->message);
                guid = &vhdx_file_get_info (file)->data_write_guid;
                is_new = vhdx_guid_equal (guid, &m->new_guid);
                if (!is_new && !vhdx_guid_equal (guid, &m->old_guid))
                        g_error ("%s: a DataWriteGuid neither old nor new", what);
                if ((is_new && !m->may_be_new) || (!is_new && !m->may_be_old))
                        g_error ("%s: the %s DataWriteGuid at this point", what,
                                 is_new ? "new" : "old");
                assert_check_clean (file, what);
                if (!m->may_be_old) {
                        g_byte_array_set_size (r->rw, (guint) r->size);
                        if (!vhdx_file_read (file, 0, r->rw->data, r->size, &error))
                                g_error ("%s: reading: %s", what, error->message);
                        if (memcmp (r->rw->data, m->merged, r->size) != 0)
                                g_error ("%s: the merged image reads otherwise", what);
                }
                if (!vhdx_file_close (file, &error))
                        g_error ("%s: closing the repaired image fails: %s", what, error->message);
        }
        repaired = g_bytes_new_static (r->repaired->data, r->repaired->len);
        {
                g_autoptr (VhdxFile) file = open_image (r, vhdx_io_new_memory (g_bytes_ref (bytes)),
                                                        VHDX_OPEN_FLAGS_NONE, &error);
                if (file == NULL)
                        g_error ("%s: the read-only open fails: %s", what, error->message);
                assert_check_clean (file, what);
        }
        check_child_of (r, bytes, m->linked_path, m->merged, what);
        check_child_of (r, repaired, m->linked_path, m->merged, what);
        if (is_new) {
                check_child_of (r, bytes, m->settled_path, m->merged, what);
                check_child_of (r, repaired, m->settled_path, m->merged, what);
        }
        m->seen[is_new]++;
        r->images_checked++;
        /* QEMU on a sample of the merged ones: it reads what the child did. */
        if (!m->may_be_old && kind_is_qemu (r->kind) && test_have_program ("qemu-img") &&
            r->qemu_checked < (g_test_thorough () ? 16 : 2)) {
                g_autoptr (GByteArray) disk = g_byte_array_new ();

                g_byte_array_append (disk, m->merged, (guint) r->size);
                assert_qemu (r, repaired, disk, what);
        }
}

static void
check_merged (Run *r, GByteArray *image, const ChangePoint *at, const char *what, gpointer data)
{
        MergeCheck *m = data;

        m->may_be_old = at->may_be_old;
        m->may_be_new = at->may_be_new;
        check_merged_image (r, image, m, what);
}

static void
run_merge_case (Run *r, const Case *c, GBytes *image)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (CrashTrace) trace = NULL;
        g_autofree char *child_path = g_build_filename (r->dir, "child.avhdx", NULL);
        g_autofree char *linked_dir = g_build_filename (r->dir, "first-step", NULL);
        g_autofree char *linked_path = g_build_filename (linked_dir, "child.avhdx", NULL);
        g_autofree guint8 *merged = NULL;
        g_autofree char *child_bytes = NULL;
        const char *parent_dirs[] = { r->dir, NULL };
        MergeOpen open = { NULL, NULL };
        VhdxOpenOptions options = {
                .path = child_path,
                .parent_dirs = parent_dirs,
                .open_func = open_merge_member,
                .open_data = &open,
                .writable_ancestors = 1,
        };
        VhdxMergeResult result;
        MergeCheck m = { 0 };
        VhdxFile *target;
        gsize length, n;
        const guint8 *contents;
        guint start, end;

        image = fill_image (r, image);
        write_child (r, image, child_path);
        merged = write_child_data (r, image, child_path);
        test_assert_ok (g_file_get_contents (child_path, &child_bytes, &n, &error), error);
        contents = g_bytes_get_data (image, &length);
        r->io = crash_io_new (contents, length, TRUE);
        open.recorded = r->io;
        r->file = vhdx_file_open_full (vhdx_io_open_path (child_path, TRUE, NULL),
                                       VHDX_OPEN_FLAGS_READ_WRITE, &options, &error);
        g_assert_no_error (error);
        target = vhdx_file_get_parent (r->file);
        g_assert_nonnull (target);
        g_assert_true (vhdx_file_is_writable (target));
        if (c->entry_limit > 0)
                vhdx_file_set_log_entry_limit (target, c->entry_limit);
        m.old_guid = vhdx_file_get_info (target)->data_write_guid;
        start = crash_io_get_calls (r->io);
        test_assert_ok (vhdx_file_merge (r->file, child_path, 1, VHDX_MERGE_FLAGS_NONE, NULL, NULL,
                                         NULL, &result, &error),
                        error);
        end = crash_io_get_calls (r->io);
        test_assert_ok (vhdx_file_close (target, &error), error);
        test_assert_ok (vhdx_file_close (r->file, &error), error);
        trace = crash_io_get_trace (r->io);
        g_clear_pointer (&r->file, vhdx_file_free);
        g_bytes_unref (image);
        m.new_guid = result.new_data_write_guid;
        g_assert_false (vhdx_guid_equal (&m.old_guid, &m.new_guid));
        g_assert_cmpuint (result.bytes_copied, >, 0);
        g_assert_cmpuint (result.bytes_zeroed, >, 0);

        /* The child as the first step left it, from its bytes before the merge. */
        g_assert_cmpint (g_mkdir_with_parents (linked_dir, 0755), ==, 0);
        test_assert_ok (g_file_set_contents (linked_path, child_bytes, (gssize) n, &error), error);
        {
                g_autoptr (VhdxFile) linked =
                        vhdx_file_open (vhdx_io_open_path (linked_path, TRUE, NULL),
                                        VHDX_OPEN_FLAGS_READ_WRITE | VHDX_OPEN_FLAGS_NO_PARENT,
                                        &error);

                g_assert_no_error (error);
                test_assert_ok (vhdx_file_set_parent_linkage2 (linked, &m.new_guid, &error), error);
                test_assert_ok (vhdx_file_close (linked, &error), error);
        }
        g_test_message ("%s: %" G_GUINT64_FORMAT " bytes copied, %" G_GUINT64_FORMAT " zeroed",
                        c->name, result.bytes_copied, result.bytes_zeroed);

        m.merged = merged;
        m.linked_path = linked_path;
        m.settled_path = child_path;
        walk_change_crashes (r, trace, c->name, start, end, check_merged, &m);
        g_assert_cmpuint (m.seen[0], >, 0);
        g_assert_cmpuint (m.seen[1], >, 0);
        g_test_message ("%s: %u file calls, %" G_GUINT64_FORMAT
                        " crash images checked (%u with the old DataWriteGuid, %u with the new; "
                        "%" G_GUINT64_FORMAT " also by QEMU)",
                        c->name, crash_trace_get_calls (trace), r->images_checked, m.seen[0],
                        m.seen[1], r->qemu_checked);
}

/*
 * Compacting.  Eight blocks of the image get, one after the other (not
 * recorded), data in a part of the block, zeros written over all of it,
 * data over all of it, and data over all of it that is then unmapped
 * keeping its file space (as Hyper-V leaves trimmed blocks); then the
 * compaction is the workload.  Every crash image reads those blocks as
 * before (the others name no file space: nothing changes them), with the
 * DataWriteGuid it had.
 */
#define COMPACT_BLOCKS 8

static GBytes *
prepare_compact_image (Run *r, const Case *c, GBytes *taken)
{
        g_autoptr (GBytes) image = taken;
        g_autoptr (GError) error = NULL;
        gsize length;
        const guint8 *contents = g_bytes_get_data (image, &length);
        VhdxIo *io = crash_io_new (contents, length, FALSE);
        g_autoptr (VhdxFile) file = open_image (r, io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
        g_autofree guint8 *data = g_malloc (r->bs);

        g_assert_no_error (error);
        for (guint64 block = c->compact_from;
             block < c->compact_from + COMPACT_BLOCKS && block * r->bs < r->size; block++) {
                guint64 at = block * r->bs;
                gsize n = (gsize) MIN ((guint64) r->bs, r->size - at);

                for (gsize i = 0; i < n; i++)
                        data[i] = (guint8) ((at + i) / UNIT * 13 + 5);
                switch (block % 4) {
                case 0:
                        n = MIN (n, (gsize) 64 * 1024);
                        break;
                case 1:
                        memset (data, 0, n);
                        break;
                default:
                        break;
                }
                test_assert_ok (vhdx_file_write (file, at, data, n, 0, &error), error);
                memcpy (r->initial + at, data, n);
                if (block % 4 == 3) {
                        guint state;
                        guint64 offset;

                        test_assert_ok (vhdx_bat_lookup_block (file->bat, block, &state, &offset,
                                                               &error),
                                        error);
                        test_assert_ok (vhdx_writer_set_bat_entry (
                                                file,
                                                vhdx_bat_payload_index (&file->info.geometry,
                                                                        block),
                                                offset | VHDX_PAYLOAD_UNMAPPED, &error),
                                        error);
                        memset (r->initial + at, 0, n);
                }
        }
        test_assert_ok (vhdx_file_close (file, &error), error);
        return g_bytes_new (crash_io_get_contents (io)->data, crash_io_get_contents (io)->len);
}

static void
run_compact_case (Run *r, const Case *c, GBytes *image)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (CrashTrace) trace = NULL;
        g_autoptr (CrashWalker) walker = NULL;
        g_autoptr (GArray) ranges = g_array_new (FALSE, FALSE, sizeof (Range));
        Range blocks = { c->compact_from * r->bs,
                         MIN (r->size, (c->compact_from + COMPACT_BLOCKS) * r->bs) -
                                 c->compact_from * r->bs };
        g_autoptr (GPtrArray) since = g_ptr_array_new ();
        Allowed allowed = { NULL, since };
        VhdxCompactResult result;
        VhdxGuid data_write_guid;
        VhdxWriteStats stats;
        guint64 sequences;
        gsize length;
        const guint8 *contents;

        g_array_append_val (ranges, blocks);
        image = prepare_compact_image (r, c, image);
        allowed.durable = r->initial;
        contents = g_bytes_get_data (image, &length);
        r->io = crash_io_new (contents, length, TRUE);
        r->file = open_image (r, r->io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
        g_assert_no_error (error);
        if (c->entry_limit > 0)
                vhdx_file_set_log_entry_limit (r->file, c->entry_limit);
        data_write_guid = vhdx_file_get_info (r->file)->data_write_guid;
        vhdx_file_get_write_stats (r->file, &stats);
        sequences = stats.log_sequences;
        test_assert_ok (vhdx_file_compact (r->file, c->compact_flags, NULL, NULL, NULL, &result,
                                           &error),
                        error);
        vhdx_file_get_write_stats (r->file, &stats);
        sequences = stats.log_sequences - sequences;
        test_assert_ok (vhdx_file_close (r->file, &error), error);
        trace = crash_io_get_trace (r->io);
        g_clear_pointer (&r->file, vhdx_file_free);
        g_bytes_unref (image);
        g_test_message ("%s: file %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT
                        " bytes, %" G_GUINT64_FORMAT " blocks dropped, %" G_GUINT64_FORMAT
                        " moved, %" G_GUINT64_FORMAT " log sequences",
                        c->name, result.old_file_size, result.new_file_size, result.blocks_dropped,
                        result.blocks_moved, sequences);
        g_assert_cmpuint (result.new_file_size, <, result.old_file_size);
        g_assert_cmpuint (result.blocks_dropped, >, 0);
        if (!(c->compact_flags & VHDX_COMPACT_FLAGS_QUICK))
                g_assert_cmpuint (result.blocks_moved, >, 0);

        walker = crash_walker_new (trace);
        do {
                guint point = crash_walker_get_point (walker);

                for (CrashKind kind = 0; kind < CRASH_N_KINDS; kind++) {
                        g_autofree char *what = NULL;

                        if ((kind == CRASH_SUBSET || kind == CRASH_TORN) &&
                            crash_walker_get_volatile (walker) == 0)
                                continue;
                        crash_walker_build (walker, kind, r->rand, r->image);
                        what = g_strdup_printf ("%s: crash before call %u of %u, %s", c->name,
                                                point, crash_trace_get_calls (trace),
                                                crash_kind_name (kind));
                        check_image (r, r->image, &allowed, ranges, what);
                        {
                                g_autoptr (GBytes) bytes =
                                        g_bytes_new_static (r->image->data, r->image->len);
                                g_autoptr (VhdxFile) file =
                                        open_image (r, vhdx_io_new_memory (bytes),
                                                    VHDX_OPEN_FLAGS_NONE, &error);

                                g_assert_no_error (error);
                                if (!vhdx_guid_equal (&vhdx_file_get_info (file)->data_write_guid,
                                                      &data_write_guid))
                                        g_error ("%s: DataWriteGuid changed", what);
                        }
                }
        } while (crash_walker_advance (walker));
        g_test_message ("%s: %u file calls, %" G_GUINT64_FORMAT
                        " crash images checked (%" G_GUINT64_FORMAT " also by QEMU)",
                        c->name, crash_trace_get_calls (trace), r->images_checked, r->qemu_checked);
}

/* Cancelled once the first block moved: the image reads as before, is
 * clean, and a compaction started again ends the work. */
typedef struct {
        GCancellable *cancellable;
        gboolean reported;
        guint64 examined; /* the blocks read, the total of the first report */
} CancelAt;

static void
cancel_after_first_move (guint64 done, guint64 total, gpointer user_data)
{
        CancelAt *at = user_data;

        if (!at->reported)
                at->examined = total;
        at->reported = TRUE;
        if (done > at->examined)
                g_cancellable_cancel (at->cancellable);
}

static void
test_compact_cancelled (void)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GCancellable) cancellable = g_cancellable_new ();
        Case c = { "compact-cancelled", IMAGE_DYNAMIC, 8 * MiB, 1 * MiB, .compact = TRUE };
        Run r = { 0 };
        g_autoptr (GBytes) image = NULL;
        g_autofree guint8 *disk = NULL;
        VhdxCompactResult result;
        CancelAt at = { cancellable, FALSE, 0 };
        gsize length;
        const guint8 *contents;

        r.dir = test_tmpdir_new ();
        r.kind = c.image;
        r.size = c.size;
        r.bs = c.block_size;
        r.ss = 512;
        image = prepare_compact_image (&r, &c, make_image (&r));
        contents = g_bytes_get_data (image, &length);
        r.io = crash_io_new (contents, length, FALSE);
        r.file = open_image (&r, r.io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
        g_assert_no_error (error);
        /* The stored blocks are read, then blocks move one per commit. */
        g_assert_false (vhdx_file_compact (r.file, VHDX_COMPACT_FLAGS_ONE_BLOCK_PER_COMMIT,
                                           cancel_after_first_move, &at, cancellable, &result,
                                           &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        g_clear_error (&error);
        g_assert_cmpuint (result.blocks_moved, ==, 1);
        g_assert_cmpuint (result.new_file_size, ==, result.old_file_size);
        disk = g_malloc (r.size);
        test_assert_ok (vhdx_file_read (r.file, 0, disk, r.size, &error), error);
        g_assert_true (memcmp (disk, r.initial, r.size) == 0);
        assert_check_clean (r.file, "cancelled");
        /* Written again after the cancellation, in the space it left. */
        test_assert_ok (vhdx_file_write (r.file, 5 * MiB, disk, MiB, 0, &error), error);
        memcpy (r.initial + 5 * MiB, disk, MiB);
        test_assert_ok (vhdx_file_compact (r.file, 0, NULL, NULL, NULL, &result, &error), error);
        g_assert_cmpuint (result.new_file_size, <, result.old_file_size);
        test_assert_ok (vhdx_file_close (r.file, &error), error);
        /* The file's bytes, taken before the image that owns it goes. */
        {
                g_autoptr (GBytes) bytes = crash_io_steal_contents (r.io);
                g_autoptr (VhdxFile) file = NULL;

                g_clear_pointer (&r.file, vhdx_file_free);
                file = open_image (&r, vhdx_io_new_memory (bytes), VHDX_OPEN_FLAGS_NONE, &error);

                g_assert_no_error (error);
                test_assert_ok (vhdx_file_read (file, 0, disk, r.size, &error), error);
                g_assert_true (memcmp (disk, r.initial, r.size) == 0);
                assert_check_clean (file, "compacted after the cancellation");
        }
        g_free (r.initial);
        test_tmpdir_free (r.dir);
}

static void
test_case (gconstpointer data)
{
        const Case *c = data;
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) image = NULL;
        g_autoptr (CrashTrace) trace = NULL;
        Run r = { 0 };
#ifdef VHDX_CRASH_THROUGH_FILTER
        Below below = { { 0 } };
#endif

        if (kind_is_qemu (c->image) && !test_have_program ("qemu-img")) {
                g_test_skip ("qemu-img is not installed: QEMU makes this workload's image");
                return;
        }
        r.dir = test_tmpdir_new ();
        r.kind = c->image;
        r.size = c->size;
        r.bs = c->block_size;
        r.ss = c->image == IMAGE_DYNAMIC_4K || c->image == IMAGE_DIFFERENCING_4K ? 4096 : 512;
        r.type = c->image == IMAGE_QEMU_FIXED ? VHDX_DISK_TYPE_FIXED
                 : c->image == IMAGE_DIFFERENCING || c->image == IMAGE_DIFFERENCING_4K
                         ? VHDX_DISK_TYPE_DIFFERENCING
                         : VHDX_DISK_TYPE_DYNAMIC;
        r.rand = g_rand_new_with_seed (g_str_hash (c->name));
        r.image = g_byte_array_new ();
        r.repaired = g_byte_array_new ();
        r.ro = g_byte_array_new ();
        r.rw = g_byte_array_new ();
        r.ops = g_array_new (FALSE, FALSE, sizeof (Op));
        g_array_set_clear_func (r.ops, op_clear);
        image = make_image (&r);
        if (c->filter) {
#ifdef VHDX_CRASH_THROUGH_FILTER
                GBytes *filled = fill_image (&r, image);
                g_bytes_unref (image);
                image = filled;
#else
                g_test_skip ("the nbdkit filter is not built");
                goto done;
#endif
        }
        if (c->compact) {
                /* Only a few blocks change: no copy of the whole disk. */
                run_compact_case (&r, c, g_steal_pointer (&image));
                goto done;
        }
        r.model = g_memdup2 (r.initial, r.size);
        if (c->resize_to != 0) {
                run_resize_case (&r, c, g_steal_pointer (&image));
                goto done;
        }
        if (c->set_parent != 0) {
                run_set_parent_case (&r, c, g_steal_pointer (&image));
                goto done;
        }
        if (c->merge) {
                run_merge_case (&r, c, g_steal_pointer (&image));
                goto done;
        }
        if (c->set_metadata) {
                run_set_metadata_case (&r, c, g_steal_pointer (&image));
                goto done;
        }

        {
                gsize length;
                const guint8 *contents = g_bytes_get_data (image, &length);
                r.io = crash_io_new (contents, length, TRUE);
        }
#ifdef VHDX_CRASH_THROUGH_FILTER
        if (c->filter) {
                below.io = r.io;
                r.file = open_through_filter (&r, &below);
        } else
#endif
        {
                r.file = open_image (&r, r.io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
                g_assert_no_error (error);
        }
        if (c->entry_limit > 0)
                vhdx_file_set_log_entry_limit (r.file, c->entry_limit);
        c->workload (&r);
        {
                guint start = crash_io_get_calls (r.io);
                test_assert_ok (vhdx_file_close (r.file, &error), error);
                add_op (&r, TRUE, 0, 0, start);
        }
        trace = crash_io_get_trace (r.io);
        g_clear_pointer (&r.file, vhdx_file_free);
        if (c->filter) /* the filter's VhdxIo does not own the file below */
                vhdx_io_free (r.io);

        run_crashes (&r, trace, MAX (c->quick_stride, 1));
        g_test_message ("%s: %u file calls, %" G_GUINT64_FORMAT
                        " crash images checked (%" G_GUINT64_FORMAT " also by QEMU)",
                        c->name, crash_trace_get_calls (trace), r.images_checked, r.qemu_checked);
done:

        g_free (r.model);
        g_free (r.initial);
        g_free (r.parent);
        g_array_unref (r.ops);
        g_byte_array_unref (r.image);
        g_byte_array_unref (r.repaired);
        g_byte_array_unref (r.ro);
        g_byte_array_unref (r.rw);
        g_rand_free (r.rand);
        test_tmpdir_free (r.dir);
}

static const Case cases[] = {
        { "sequential", IMAGE_QEMU_DYNAMIC, 4 * MiB, 1 * MiB, workload_sequential },
        { "random", IMAGE_QEMU_DYNAMIC, 4 * MiB, 1 * MiB, workload_random },
        { "zero-discard", IMAGE_QEMU_DYNAMIC, 4 * MiB, 1 * MiB, workload_zero_discard },
        { "fixed", IMAGE_QEMU_FIXED, 4 * MiB, 1 * MiB, workload_zero_discard },
        { "dynamic-4k", IMAGE_DYNAMIC_4K, 4 * MiB, 1 * MiB, workload_random },
        { "differencing", IMAGE_DIFFERENCING, 4 * MiB, 1 * MiB, workload_differencing },
        { "differencing-4k", IMAGE_DIFFERENCING_4K, 4 * MiB, 1 * MiB, workload_differencing },
        { "log-wrap", IMAGE_DYNAMIC, 4 * MiB, 1 * MiB, workload_log_wrap, 0, 3 },
        /* Entries of one page: every commit of a child's BAT and bitmap
         * pages takes several log sequences, and the log wraps often. */
        { "split-commits", IMAGE_DIFFERENCING, 4 * MiB, 1 * MiB, workload_differencing, 8192 },
        { "split-commits-4k", IMAGE_DIFFERENCING_4K, 4 * MiB, 1 * MiB, workload_differencing,
          8192 },
        /* Resizing: within the BAT region, a fixed image's new blocks, a
         * shrink that drops blocks, the BAT region grown over the blocks
         * that follow it (our layout) or moved past the metadata region
         * that follows it (QEMU's), a child with 4 KiB sectors. */
        { "resize-grow", IMAGE_QEMU_DYNAMIC, 4 * MiB, 1 * MiB, NULL, 0, 0, 6 * MiB + 512 },
        { "resize-grow-fixed", IMAGE_QEMU_FIXED, 4 * MiB, 1 * MiB, NULL, 0, 0, 8 * MiB },
        { "resize-shrink", IMAGE_QEMU_DYNAMIC, 8 * MiB, 1 * MiB, NULL, 0, 0, 3 * MiB + 4096 },
        { "resize-bat-moves-blocks", IMAGE_DYNAMIC, 4 * MiB, 1 * MiB, NULL, 0, 0, 130 * GiB, 0,
          VHDX_RESIZE_FLAGS_MOVE_BLOCKS },
        /* Blocks holding more than the BAT follow it: the BAT moves. */
        { "resize-bat-relocated-past-blocks", IMAGE_DYNAMIC, 4 * MiB, 1 * MiB, NULL, 0, 0,
          130 * GiB },
        { "resize-bat-relocated", IMAGE_QEMU_DYNAMIC, 4 * MiB, 1 * MiB, NULL, 0, 0, 130 * GiB },
        /* The resize's commit in log entries of two pages: several sequences. */
        { "resize-split-commits", IMAGE_DYNAMIC, 4 * MiB, 1 * MiB, NULL, 16384, 0, 130 * GiB, 0,
          VHDX_RESIZE_FLAGS_MOVE_BLOCKS },
        { "resize-shrink-split-commits", IMAGE_DIFFERENCING, 8 * MiB, 1 * MiB, NULL, 8192, 0,
          3 * MiB },
        { "resize-differencing-4k", IMAGE_DIFFERENCING_4K, 4 * MiB, 1 * MiB, NULL, 0, 0, 12 * MiB },
        /* Setting the parent: the new locator in free space, then the
         * table entry; with entries of one page, in two sequences. */
        { "set-parent", IMAGE_DIFFERENCING, 4 * MiB, 1 * MiB, NULL, 0, 0, 0,
          SET_PARENT_FREE_SPACE },
        { "set-parent-split-commits", IMAGE_DIFFERENCING, 4 * MiB, 1 * MiB, NULL, 8192, 0, 0,
          SET_PARENT_FREE_SPACE },
        { "set-parent-4k", IMAGE_DIFFERENCING_4K, 4 * MiB, 1 * MiB, NULL, 0, 0, 0,
          SET_PARENT_FREE_SPACE },
        /* The metadata region full: the locator rewritten where it was. */
        { "set-parent-in-place", IMAGE_DIFFERENCING, 4 * MiB, 1 * MiB, NULL, 0, 0, 0,
          SET_PARENT_IN_PLACE },
        /* Setting the metadata: a child beside the image updated first,
         * then both items in one commit; an image of QEMU's, 4 KiB
         * sectors, a differencing image (whose parent stays as it is). */
        { "set-metadata", IMAGE_DYNAMIC, 4 * MiB, 1 * MiB, NULL, 0, 0, 0, 0, 0, TRUE },
        { "set-metadata-qemu", IMAGE_QEMU_DYNAMIC, 4 * MiB, 1 * MiB, NULL, 0, 0, 0, 0, 0, TRUE },
        { "set-metadata-4k", IMAGE_DYNAMIC_4K, 4 * MiB, 1 * MiB, NULL, 0, 0, 0, 0, 0, TRUE },
        { "set-metadata-differencing", IMAGE_DIFFERENCING, 4 * MiB, 1 * MiB, NULL, 0, 0, 0, 0, 0,
          TRUE },
        { "set-metadata-split-commits", IMAGE_DYNAMIC, 4 * MiB, 1 * MiB, NULL, 8192, 0, 0, 0, 0,
          TRUE },
        /* The merge of a child into the image. */
        { "merge", IMAGE_DYNAMIC, 4 * MiB, 1 * MiB, NULL, 0, 0, 0, 0, 0, FALSE, TRUE },
        { "merge-qemu", IMAGE_QEMU_DYNAMIC, 4 * MiB, 1 * MiB, NULL, 0, 0, 0, 0, 0, FALSE, TRUE },
        { "merge-4k", IMAGE_DYNAMIC_4K, 4 * MiB, 1 * MiB, NULL, 0, 0, 0, 0, 0, FALSE, TRUE },
        { "merge-into-differencing", IMAGE_DIFFERENCING, 4 * MiB, 1 * MiB, NULL, 0, 0, 0, 0, 0,
          FALSE, TRUE },
        { "merge-split-commits", IMAGE_DIFFERENCING, 4 * MiB, 1 * MiB, NULL, 8192, 0, 0, 0, 0,
          FALSE, TRUE },
        /* Compacting: blocks dropped, then moved down in one commit or in
         * one commit each, then the file cut; a child's zero blocks marked
         * ZERO and its bitmaps moved; commits of one page per log entry;
         * the quick mode, which drops only the unmapped blocks. */
        { "compact", IMAGE_QEMU_DYNAMIC, 8 * MiB, 1 * MiB, .compact = TRUE },
        { "compact-one-block-per-commit", IMAGE_DYNAMIC, 8 * MiB, 1 * MiB, .compact = TRUE,
          .compact_flags = VHDX_COMPACT_FLAGS_ONE_BLOCK_PER_COMMIT },
        { "compact-4k", IMAGE_DYNAMIC_4K, 8 * MiB, 1 * MiB, .compact = TRUE },
        { "compact-differencing", IMAGE_DIFFERENCING, 8 * MiB, 1 * MiB, .compact = TRUE },
        { "compact-differencing-4k", IMAGE_DIFFERENCING_4K, 8 * MiB, 1 * MiB, .compact = TRUE,
          .compact_flags = VHDX_COMPACT_FLAGS_ONE_BLOCK_PER_COMMIT },
        /* Blocks 508 to 515: their entries lie in two BAT sectors, which
         * the commits of one page per log entry split. */
        { "compact-split-commits", IMAGE_DYNAMIC, 520 * MiB, 1 * MiB, NULL, 8192, .compact = TRUE,
          .compact_from = 508 },
        { "compact-quick", IMAGE_QEMU_DYNAMIC, 8 * MiB, 1 * MiB, .compact = TRUE,
          .compact_flags = VHDX_COMPACT_FLAGS_QUICK },
        /* Through the filter's VhdxIo, into blocks that all have their space. */
        { "filter-sequential", IMAGE_QEMU_DYNAMIC, 4 * MiB, 1 * MiB, workload_sequential,
          .filter = TRUE },
        { "filter-random", IMAGE_DYNAMIC, 4 * MiB, 1 * MiB, workload_random, .filter = TRUE },
        { "filter-random-4k", IMAGE_DYNAMIC_4K, 4 * MiB, 1 * MiB, workload_random, .filter = TRUE },
        { "filter-zero-discard", IMAGE_QEMU_DYNAMIC, 4 * MiB, 1 * MiB, workload_zero_discard,
          .filter = TRUE },
        { "filter-log-wrap", IMAGE_DYNAMIC, 4 * MiB, 1 * MiB, workload_log_wrap, 0, 3,
          .filter = TRUE },
};

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);
        /* Crash images are copied by the thousand: keep the memory they
         * take instead of mapping it afresh each time. */
        mallopt (M_MMAP_THRESHOLD, 512 * 1024 * 1024);
        mallopt (M_TRIM_THRESHOLD, 1024 * 1024 * 1024);

        for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
                g_autofree char *path = g_strdup_printf ("/crash/%s", cases[i].name);
                g_test_add_data_func (path, &cases[i], test_case);
        }
        g_test_add_func ("/crash/compact-cancelled", test_compact_cancelled);
        return g_test_run ();
}
