/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Concurrent reads.  Eight threads read and map random ranges of one freshly
 * opened image at once, racing to load the same BAT pages and sector bitmaps,
 * and compare every byte and extent with what the image holds.  Images: a
 * dynamic disk large enough for several BAT pages, a differencing chain with
 * partly present blocks in two chunks, and an image with a dirty log read
 * through its in-memory replay.  Then concurrent writes: threads that own
 * interleaved 4 KiB stripes of a dynamic and of a differencing image write,
 * zero and read back their stripes at once, racing to give the same blocks
 * space and to set bits of the same sector bitmap pages, with flushes in
 * between; the disk read back after the close must hold every thread's
 * last data.  Then concurrent flushes: threads that each write their own 4 KiB
 * and flush, over and over, on a recording in-memory file; a crash at the
 * point any flush returned must keep every write completed before that
 * flush was called, even when the flush found another one running and left
 * the work to it.  `./run tsan` runs this under ThreadSanitizer.
 *
 * The expected bytes come from the generator's raw disk, from the model of
 * the runs each level of the chain wrote, and for the dirty log from the
 * generator's disk with the log's updates applied by the test; the expected
 * extents from the generator's blocks, or from the BATs read by hand.
 */
#include "crash-io.h"
#include "test-util.h"
#include "vhdx-gen.h"
#include "vhdx-log-writer.h"
#include "vhdx-create.h"
#include "vhdx-writer.h"

#include <fcntl.h>
#include <gio/gio.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#include <dlfcn.h>
#endif

#define MiB         VHDX_MiB
#define GiB         VHDX_GiB
#define N_THREADS   8
#define N_ROUNDS    16
#define N_REGIONS   48
#define REGION_SIZE (192 * 1024)

#if defined(__SANITIZE_THREAD__)
/*
 * GLib's GMutex is built on futexes inside libglib, which is not
 * instrumented, so ThreadSanitizer cannot see that it orders the accesses it
 * protects and would report them as races.  Tell it: the real lock, then an
 * acquire; a release, then the real unlock.
 */
void __tsan_acquire (void *addr);
void __tsan_release (void *addr);

/* The real function NAME, found on first use.  GLib locks mutexes before
 * any constructor of the test runs, and threads may race to the first use:
 * the slot is read and set atomically. */
static gpointer
real_function (gpointer *slot, const char *name)
{
        gpointer function = g_atomic_pointer_get (slot);

        if (function == NULL) {
                function = dlsym (RTLD_NEXT, name);
                g_atomic_pointer_set (slot, function);
        }
        return function;
}

static gpointer real_mutex_lock;
static gpointer real_mutex_unlock;
static gpointer real_bytes_unref;

void
g_mutex_lock (GMutex *mutex)
{
        ((void (*) (GMutex *)) real_function (&real_mutex_lock, "g_mutex_lock")) (mutex);
        __tsan_acquire (mutex);
}

void
g_mutex_unlock (GMutex *mutex)
{
        __tsan_release (mutex);
        ((void (*) (GMutex *)) real_function (&real_mutex_unlock, "g_mutex_unlock")) (mutex);
}

/* Reference counts are GLib atomics too: each release of a reference
 * orders what its holder did before the free of the last one. */
void
g_bytes_unref (GBytes *bytes)
{
        if (bytes != NULL) {
                __tsan_release (bytes);
                __tsan_acquire (bytes);
        }
        ((void (*) (GBytes *)) real_function (&real_bytes_unref, "g_bytes_unref")) (bytes);
}
#endif

typedef struct {
        guint64 offset;
        gsize length;
        guint8 *expect;
} Region;

/* Where each block is stored, for the expected extents: at depth 0 (the
 * image opened) and 1 (its parent).  NOT_STORED: not in that file. */
#define NOT_STORED G_MAXUINT64

typedef struct {
        guint32 block_size;
        guint64 *stored[2];
        /* A differencing image: the runs of sectors it wrote itself. */
        gboolean differencing;
        guint64 *child_starts;
        guint n_child_starts;
        gsize child_run;
} Model;

typedef struct {
        const char *name;
        char *dir;
        char *path; /* the image opened */
        Region regions[N_REGIONS];
        Model model;
} Scenario;

typedef struct {
        Scenario *s;
        VhdxFile *file;
        guint32 seed;
        guint n_reads;
        guint64 n_bytes;
} Worker;

static VhdxFile *
open_scenario (Scenario *s)
{
        g_autoptr (GError) error = NULL;
        VhdxOpenOptions options = { .path = s->path };
        VhdxIo *io = vhdx_io_open_path (s->path, FALSE, &error);
        VhdxFile *file;

        g_assert_no_error (error);
        file = vhdx_file_open_full (io, VHDX_OPEN_FLAGS_NONE, &options, &error);
        g_assert_no_error (error);
        return file;
}

/* The extent of the byte at @offset, from the model.  Called from every
 * thread: it only reads the model. */
static void
model_extent (guint64 offset, VhdxMapExtent *e, gpointer user_data)
{
        const Model *m = user_data;
        guint64 block = offset / m->block_size;
        guint depth = 0;

        if (m->differencing) {
                gboolean written = FALSE;
                for (guint i = 0; i < m->n_child_starts && !written; i++)
                        written = offset >= m->child_starts[i] &&
                                  offset < m->child_starts[i] + m->child_run;
                /* What the child did not write comes from the parent. */
                if (!written)
                        depth = 1;
        }
        e->depth = depth;
        if (m->stored[depth][block] != NOT_STORED) {
                e->kind = VHDX_EXTENT_DATA;
                e->present = TRUE;
                e->file_offset = m->stored[depth][block] + offset % m->block_size;
        } else {
                e->kind = VHDX_EXTENT_ZERO;
                e->present = FALSE;
        }
}

static gpointer
worker_run (gpointer data)
{
        Worker *w = data;
        g_autoptr (GRand) rand = g_rand_new_with_seed (w->seed);
        g_autofree guint8 *buf = g_malloc (REGION_SIZE);

        for (guint i = 0; i < 120; i++) {
                const Region *r = &w->s->regions[g_rand_int_range (rand, 0, N_REGIONS)];
                gsize skip = g_rand_int_range (rand, 0, r->length);
                gsize len = g_rand_int_range (rand, 1, r->length - skip + 1);
                g_autoptr (GError) error = NULL;

                if (g_rand_int_range (rand, 0, 8) == 0) {
                        g_autoptr (GArray) extents =
                                vhdx_file_map (w->file, r->offset + skip, len, &error);
                        g_autoptr (GArray) expected =
                                test_model_extents (r->offset + skip, len, 512, model_extent,
                                                    &w->s->model);
                        g_assert_no_error (error);
                        test_assert_extents_equal (extents, expected, w->s->name);
                        continue;
                }
                test_assert_ok (vhdx_file_read (w->file, r->offset + skip, buf, len, &error),
                                error);
                test_assert_bytes_equal (buf, r->expect + skip, len, r->offset + skip, w->s->name);
                w->n_reads++;
                w->n_bytes += len;
        }
        return NULL;
}

static void
test_concurrent_reads (gconstpointer data)
{
        Scenario *s = (Scenario *) data;
        guint n_reads = 0;
        guint64 n_bytes = 0;

        for (guint round = 0; round < N_ROUNDS; round++) {
                /* A fresh file each round: nothing is loaded yet. */
                g_autoptr (VhdxFile) file = open_scenario (s);
                Worker workers[N_THREADS];
                GThread *threads[N_THREADS];

                for (guint t = 0; t < N_THREADS; t++) {
                        workers[t] = (Worker){ s, file, 1000 * round + t, 0, 0 };
                        threads[t] = g_thread_new ("reader", worker_run, &workers[t]);
                }
                for (guint t = 0; t < N_THREADS; t++) {
                        g_thread_join (threads[t]);
                        n_reads += workers[t].n_reads;
                        n_bytes += workers[t].n_bytes;
                }
        }
        g_test_message ("%s: %u concurrent reads, %" G_GUINT64_FORMAT " MiB", s->name, n_reads,
                        n_bytes / MiB);
}

typedef void (*ExpectFunc) (guint64 offset, guint8 *buf, gsize length, gpointer user_data);

/* The regions every thread reads, and their bytes as the scenario's oracle
 * gives them. */
static void
scenario_set_regions (Scenario *s,
                      const guint64 *starts,
                      guint n_starts,
                      guint64 virtual_size,
                      ExpectFunc expect,
                      gpointer user_data)
{
        guint with_data = 0;

        for (guint i = 0; i < N_REGIONS; i++) {
                Region *r = &s->regions[i];

                /* Around the places that hold data, crossing block boundaries. */
                r->offset = MIN (starts[i % n_starts] + (i / n_starts) * 160 * 1024,
                                 virtual_size - REGION_SIZE);
                r->length = REGION_SIZE;
                r->expect = g_malloc (r->length);
                expect (r->offset, r->expect, r->length, user_data);
                for (gsize k = 0; k < r->length; k++) {
                        if (r->expect[k] != 0) {
                                with_data++;
                                break;
                        }
                }
        }
        /* Reading holes only would race on little. */
        g_assert_cmpuint (with_data, >=, N_REGIONS / 2);
}

static void
expect_from_disk (guint64 offset, guint8 *buf, gsize length, gpointer user_data)
{
        memcpy (buf, (const guint8 *) user_data + offset, length);
}

static void
expect_from_gen (guint64 offset, guint8 *buf, gsize length, gpointer user_data)
{
        vhdx_gen_read_raw (user_data, offset, buf, length);
}

/* The blocks a generated image stores, where the generator put them. */
static guint64 *
stored_from_gen (VhdxGen *gen)
{
        const VhdxGenParams *params = vhdx_gen_get_params (gen);
        guint64 n = (params->virtual_size + params->block_size - 1) / params->block_size;
        guint64 *stored = g_new (guint64, n);

        /* The blocks not written are holes (NOT_PRESENT), not zero blocks. */
        g_assert_cmpuint (params->zero_state, ==, VHDX_PAYLOAD_NOT_PRESENT);
        for (guint64 b = 0; b < n; b++)
                if (!vhdx_gen_block_file_offset (gen, b, &stored[b]))
                        stored[b] = NOT_STORED;
        return stored;
}

/* The blocks a file made by the writer stores, from its BAT read by hand. */
static guint64 *
stored_from_bat (const char *path)
{
        TestSpecLayout layout;
        g_autofree guint64 *entries = NULL;
        guint64 *stored;

        test_spec_read_layout (path, &layout);
        entries = test_spec_read_payload_entries (path, &layout);
        stored = g_new (guint64, layout.payload_blocks);
        for (guint64 b = 0; b < layout.payload_blocks; b++) {
                guint64 state = entries[b] & VHDX_BAT_STATE_MASK;
                stored[b] = state == VHDX_PAYLOAD_FULLY_PRESENT ||
                                            state == VHDX_PAYLOAD_PARTIALLY_PRESENT
                                    ? entries[b] & VHDX_BAT_OFFSET_MASK
                                    : NOT_STORED;
        }
        return stored;
}

static Scenario *
scenario_new (const char *name)
{
        Scenario *s = g_new0 (Scenario, 1);

        s->name = name;
        s->dir = test_tmpdir_new ();
        return s;
}

static void
scenario_free (gpointer data)
{
        Scenario *s = data;

        for (guint i = 0; i < N_REGIONS; i++)
                g_free (s->regions[i].expect);
        g_free (s->model.stored[0]);
        g_free (s->model.stored[1]);
        g_free (s->model.child_starts);
        test_tmpdir_free (s->dir);
        g_free (s->path);
        g_free (s);
}

/* 8 GiB, 1 MiB blocks: three pages of BAT, data in blocks across them. */
static Scenario *
scenario_dynamic (void)
{
        Scenario *s = scenario_new ("dynamic");
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (GError) error = NULL;
        guint64 starts[16];
        VhdxGenParams params;

        vhdx_gen_params_init (&params);
        params.virtual_size = 8 * GiB;
        params.block_size = MiB;
        params.shuffle_blocks = TRUE;
        gen = vhdx_gen_new (&params);
        for (guint i = 0; i < G_N_ELEMENTS (starts); i++) {
                starts[i] = (guint64) i * (params.virtual_size / G_N_ELEMENTS (starts)) + MiB -
                            64 * 1024;
                vhdx_gen_fill_pattern (gen, starts[i], 512 * 1024, i + 1);
        }
        s->path = g_build_filename (s->dir, "dynamic.vhdx", NULL);
        test_assert_ok (vhdx_gen_write_file (gen, s->path, &error), error);
        scenario_set_regions (s, starts, G_N_ELEMENTS (starts), params.virtual_size,
                              expect_from_gen, gen);
        s->model.block_size = params.block_size;
        s->model.stored[0] = stored_from_gen (gen);
        return s;
}

static void
write_level (const char *path,
             VhdxCreateParams *params,
             const guint64 *starts,
             guint n,
             gsize run,
             guint32 seed)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxIo) io = NULL;
        g_autoptr (VhdxCreator) w = NULL;
        g_autofree guint8 *buf = g_malloc (run);
        int fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        g_assert_cmpint (fd, >=, 0);
        io = vhdx_io_new_fd (fd, TRUE);
        w = vhdx_creator_new (io, params, &error);
        g_assert_no_error (error);
        for (guint i = 0; i < n; i++) {
                vhdx_gen_pattern_fill_buffer (buf, starts[i], run, seed + i);
                test_assert_ok (vhdx_creator_write (w, starts[i], buf, run, &error), error);
        }
        test_assert_ok (vhdx_creator_finish (w, &error), error);
}

/* Runs of a seeded pattern, each level over the one below: the model of
 * what a chain made by write_level() holds. */
typedef struct {
        const guint64 *starts[2];
        guint n[2];
        gsize run[2];
        guint32 seed[2];
} Writes;

static void
expect_from_writes (guint64 offset, guint8 *buf, gsize length, gpointer user_data)
{
        const Writes *w = user_data;

        memset (buf, 0, length);
        for (guint level = 0; level < 2; level++) {
                for (guint i = 0; i < w->n[level]; i++) {
                        guint64 lo = MAX (offset, w->starts[level][i]);
                        guint64 hi = MIN (offset + length, w->starts[level][i] + w->run[level]);
                        if (lo < hi)
                                vhdx_gen_pattern_fill_buffer (buf + (lo - offset), lo, hi - lo,
                                                              w->seed[level] + i);
                }
        }
}

/* base <- child: 6 GiB (two chunks of sector bitmaps), runs of sectors
 * scattered in both, so that most blocks are partly present. */
static Scenario *
scenario_differencing (void)
{
        Scenario *s = scenario_new ("differencing");
        g_autofree char *base = g_build_filename (s->dir, "base.vhdx", NULL);
        guint64 base_starts[12], child_starts[24], starts[24];
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                .virtual_size = 6 * GiB,
                .block_size = MiB,
        };
        Writes writes = { { base_starts, child_starts },
                          { G_N_ELEMENTS (base_starts), G_N_ELEMENTS (child_starts) },
                          { 256 * 1024, 24 * 1024 },
                          { 10, 100 } };

        for (guint i = 0; i < G_N_ELEMENTS (base_starts); i++)
                base_starts[i] = (guint64) i * (params.virtual_size / 12) + MiB - 128 * 1024;
        for (guint i = 0; i < G_N_ELEMENTS (child_starts); i++) {
                child_starts[i] = base_starts[i / 2] + (i % 2) * 96 * 1024 + 8192;
                starts[i] = base_starts[i / 2] - 16384;
        }
        vhdx_guid_new_random (&params.data_write_guid);
        write_level (base, &params, base_starts, G_N_ELEMENTS (base_starts), writes.run[0],
                     writes.seed[0]);
        params.disk_type = VHDX_DISK_TYPE_DIFFERENCING;
        params.parent_data_write_guid = params.data_write_guid;
        params.parent_relative_path = "base.vhdx";
        vhdx_guid_new_random (&params.data_write_guid);
        s->path = g_build_filename (s->dir, "child.vhdx", NULL);
        write_level (s->path, &params, child_starts, G_N_ELEMENTS (child_starts), writes.run[1],
                     writes.seed[1]);
        scenario_set_regions (s, starts, G_N_ELEMENTS (starts), params.virtual_size,
                              expect_from_writes, &writes);
        s->model.block_size = params.block_size;
        s->model.stored[0] = stored_from_bat (s->path);
        s->model.stored[1] = stored_from_bat (base);
        s->model.differencing = TRUE;
        s->model.child_starts = g_memdup2 (child_starts, sizeof child_starts);
        s->model.n_child_starts = G_N_ELEMENTS (child_starts);
        s->model.child_run = writes.run[1];
        return s;
}

/* A dynamic image whose log rewrites sectors of several blocks. */
static Scenario *
scenario_dirty (void)
{
        Scenario *s = scenario_new ("dirty-log");
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxIo) io = NULL;
        g_autoptr (VhdxLogWriter) writer = NULL;
        guint64 starts[8];
        guint8 sector[4096];
        VhdxGenParams params;
        VhdxGenLayout layout;
        VhdxGuid log_guid;
        g_autofree guint8 *disk = NULL;
        int fd;

        vhdx_gen_params_init (&params);
        params.virtual_size = 64 * MiB;
        params.block_size = MiB;
        gen = vhdx_gen_new (&params);
        for (guint i = 0; i < G_N_ELEMENTS (starts); i++) {
                starts[i] = (guint64) i * 8 * MiB;
                vhdx_gen_fill_pattern (gen, starts[i], MiB, 20 + i);
        }
        vhdx_gen_get_layout (gen, &layout);
        s->path = g_build_filename (s->dir, "dirty.vhdx", NULL);
        test_assert_ok (vhdx_gen_write_file (gen, s->path, &error), error);

        fd = open (s->path, O_RDWR | O_CLOEXEC);
        g_assert_cmpint (fd, >=, 0);
        io = vhdx_io_new_fd (fd, TRUE);
        vhdx_guid_new_random (&log_guid);
        writer = vhdx_log_writer_new (io, layout.log_offset, layout.log_length, &log_guid, 0, 1);
        for (guint i = 0; i < G_N_ELEMENTS (starts); i++) {
                guint64 block;
                g_assert_true (vhdx_gen_block_file_offset (gen, starts[i] / MiB, &block));
                for (guint k = 0; k < 16; k++) {
                        memset (sector, 0x40 + i + k, sizeof sector);
                        vhdx_log_writer_add_data (writer, block + k * 3 * 4096, sector);
                }
                vhdx_log_writer_add_zero (writer, block + 256 * 1024, 64 * 1024);
                test_assert_ok (vhdx_log_writer_commit (writer, layout.file_size, layout.file_size,
                                                        &error),
                                error);
        }
        for (guint h = 0; h < 2; h++) {
                guint8 header[VHDX_HEADER_SIZE];
                guint64 o = layout.header_offset[h];
                g_assert_cmpint (pread (fd, header, sizeof header, o), ==, sizeof header);
                memcpy (header + VHDX_HEADER_OFF_LOG_GUID, log_guid.bytes, 16);
                vhdx_gen_update_header_checksum (header);
                g_assert_cmpint (pwrite (fd, header, sizeof header, o), ==, sizeof header);
        }
        /* The generator's disk with the log's updates, at the virtual
         * offsets of the file offsets they were given. */
        disk = g_malloc (params.virtual_size);
        vhdx_gen_read_raw (gen, 0, disk, params.virtual_size);
        for (guint i = 0; i < G_N_ELEMENTS (starts); i++) {
                for (guint k = 0; k < 16; k++)
                        memset (disk + starts[i] + k * 3 * 4096, 0x40 + i + k, 4096);
                memset (disk + starts[i] + 256 * 1024, 0, 64 * 1024);
        }
        scenario_set_regions (s, starts, G_N_ELEMENTS (starts), params.virtual_size,
                              expect_from_disk, disk);
        /* The log changes no BAT entry. */
        s->model.block_size = params.block_size;
        s->model.stored[0] = stored_from_gen (gen);
        return s;
}

/* Concurrent writes. */

#define STRIPE          4096
#define N_WRITERS       4
#define N_WRITES        150
#define WRITE_DISK_SIZE (12 * MiB)

typedef struct {
        VhdxFile *file;
        guint index;
        guint8 *model;   /* the whole disk; each thread changes its own stripes only */
        gboolean halves; /* two threads, halves of the same sectors */
} Writer;

static gboolean
owns (const Writer *w, guint64 stripe)
{
        return stripe % N_WRITERS == w->index;
}

static gpointer
writer_thread (gpointer data)
{
        Writer *w = data;
        g_autoptr (GRand) rand = g_rand_new_with_seed (100 + w->index);
        guint8 buf[2 * STRIPE];
        guint64 stripes = WRITE_DISK_SIZE / STRIPE;

        if (w->halves) {
                /* Each thread its own half of the same sectors: each write is
                 * read, merged and written whole by the engine. */
                for (guint i = 0; i < 20 * N_WRITES; i++) {
                        g_autoptr (GError) error = NULL;
                        guint64 sector = (guint64) g_rand_int_range (rand, 0, 4);
                        guint64 offset = sector * 512 + w->index * 256;
                        for (guint j = 0; j < 256; j++)
                                buf[j] = (guint8) g_rand_int (rand);
                        test_assert_ok (vhdx_file_write (w->file, offset, buf, 256,
                                                         VHDX_WRITE_FLAGS_NONE, &error),
                                        error);
                        memcpy (w->model + offset, buf, 256);
                }
                return NULL;
        }
        for (guint i = 0; i < N_WRITES; i++) {
                g_autoptr (GError) error = NULL;
                guint64 stripe =
                        (guint64) g_rand_int_range (rand, 0, (gint32) (stripes / N_WRITERS)) *
                                N_WRITERS +
                        w->index;
                guint64 offset = stripe * STRIPE;
                guint pick = g_rand_int_range (rand, 0, 10);

                g_assert_true (owns (w, stripe));
                if (pick < 7) {
                        /* A part of the stripe, sometimes parts of sectors. */
                        guint64 start = (guint64) g_rand_int_range (rand, 0, STRIPE - 1);
                        guint64 n =
                                (guint64) g_rand_int_range (rand, 1, (gint32) (STRIPE - start) + 1);
                        if (pick < 4) {
                                start = start / 512 * 512;
                                n = (n + 511) / 512 * 512;
                                n = MIN (n, STRIPE - start);
                        }
                        for (guint64 j = 0; j < n; j++)
                                buf[j] = (guint8) g_rand_int (rand);
                        test_assert_ok (vhdx_file_write (w->file, offset + start, buf, n,
                                                         VHDX_WRITE_FLAGS_NONE, &error),
                                        error);
                        memcpy (w->model + offset + start, buf, n);
                } else if (pick < 8) {
                        test_assert_ok (vhdx_file_write_zeroes (w->file, offset, STRIPE,
                                                                VHDX_WRITE_FLAGS_MAY_UNMAP, &error),
                                        error);
                        memset (w->model + offset, 0, STRIPE);
                } else if (pick < 9) {
                        test_assert_ok (vhdx_file_flush (w->file, &error), error);
                }
                /* Read back a stripe of this thread's. */
                test_assert_ok (vhdx_file_read (w->file, offset, buf, STRIPE, &error), error);
                test_assert_bytes_equal (buf, w->model + offset, STRIPE, offset,
                                         "a stripe read back while others write");
        }
        return NULL;
}

static void
test_concurrent_writes (gconstpointer data)
{
        guint mode = GPOINTER_TO_UINT (data); /* 0 dynamic, 1 differencing, 2 halves of sectors */
        gboolean differencing = mode != 0;
        g_autoptr (GError) error = NULL;
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *base = g_build_filename (dir, "base.vhdx", NULL);
        g_autofree char *path = g_build_filename (dir, "disk.vhdx", NULL);
        g_autofree guint8 *model = g_malloc0 (WRITE_DISK_SIZE);
        g_autofree guint8 *found = g_malloc (WRITE_DISK_SIZE);
        Writer writers[N_WRITERS];
        GThread *threads[N_WRITERS];
        VhdxCreateParams params = { .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                                    .virtual_size = WRITE_DISK_SIZE,
                                    .block_size = 1 * MiB };
        VhdxOpenOptions options = { .path = path };

        if (differencing) {
                VhdxIo *io;
                for (guint64 i = 0; i < WRITE_DISK_SIZE; i++)
                        model[i] = (guint8) (i / 512 + 3);
                io = vhdx_io_new_fd (open (base, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644),
                                     TRUE);
                {
                        g_autoptr (VhdxCreator) c = vhdx_creator_new (io, &params, &error);
                        g_assert_no_error (error);
                        test_assert_ok (vhdx_creator_write (c, 0, model, WRITE_DISK_SIZE, &error),
                                        error);
                        test_assert_ok (vhdx_creator_finish (c, &error), error);
                }
                vhdx_io_free (io);
                {
                        g_autoptr (VhdxFile) parent = test_open_path (base, &error);
                        g_assert_no_error (error);
                        params.parent_data_write_guid =
                                vhdx_file_get_info (parent)->data_write_guid;
                }
                params.disk_type = VHDX_DISK_TYPE_DIFFERENCING;
                params.parent_relative_path = "base.vhdx";
                params.block_size = 2 * MiB;
        }
        {
                VhdxIo *io =
                        vhdx_io_new_fd (open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644),
                                        TRUE);
                g_autoptr (VhdxCreator) c = vhdx_creator_new (io, &params, &error);
                g_assert_no_error (error);
                test_assert_ok (vhdx_creator_finish (c, &error), error);
                vhdx_io_free (io);
        }
        {
                VhdxIo *io = vhdx_io_open_path (path, TRUE, &error);
                g_autoptr (VhdxFile) file = NULL;
                guint n = mode == 2 ? 2 : N_WRITERS;

                g_assert_no_error (error);
                file = vhdx_file_open_full (io, VHDX_OPEN_FLAGS_READ_WRITE, &options, &error);
                g_assert_no_error (error);
                for (guint i = 0; i < n; i++) {
                        writers[i] = (Writer){ file, i, model, mode == 2 };
                        threads[i] = g_thread_new ("writer", writer_thread, &writers[i]);
                }
                for (guint i = 0; i < n; i++)
                        g_thread_join (threads[i]);
                test_assert_ok (vhdx_file_close (file, &error), error);
        }
        {
                g_autoptr (VhdxFile) file = test_open_path (path, &error);
                g_assert_no_error (error);
                test_assert_ok (vhdx_file_read (file, 0, found, WRITE_DISK_SIZE, &error), error);
                test_assert_bytes_equal (found, model, WRITE_DISK_SIZE, 0,
                                         "the disk after the concurrent writes");
        }
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* Concurrent flushes. */

#define N_FLUSHERS    6
#define FLUSH_ROUNDS  32
#define FLUSH_DISK    (16 * MiB)
#define FLUSH_SPACING (80 * 1024)
#define FLUSH_WRITE   4096

typedef struct {
        VhdxFile *file;
        VhdxIo *io;
        guint index;
        guint returned[FLUSH_ROUNDS]; /* the crash point at which each flush had returned */
} Flusher;

/* Each write's own place and bytes: the writes of a round spread over the
 * disk, so that new blocks are given space (and flushes commit them) in
 * most rounds. */
static guint64
flush_offset (guint index, guint round)
{
        return ((guint64) round * N_FLUSHERS + index) * FLUSH_SPACING;
}

static guint8
flush_value (guint index, guint round)
{
        return (guint8) (1 + index * FLUSH_ROUNDS + round);
}

static gpointer
flusher_thread (gpointer data)
{
        Flusher *f = data;
        g_autoptr (GError) error = NULL;
        guint8 buf[FLUSH_WRITE];

        for (guint round = 0; round < FLUSH_ROUNDS; round++) {
                memset (buf, flush_value (f->index, round), sizeof buf);
                test_assert_ok (vhdx_file_write (f->file, flush_offset (f->index, round), buf,
                                                 sizeof buf, VHDX_WRITE_FLAGS_NONE, &error),
                                error);
                test_assert_ok (vhdx_file_flush (f->file, &error), error);
                f->returned[round] = crash_io_get_calls (f->io);
        }
        return NULL;
}

typedef struct {
        guint point;
        guint index;
        guint round;
} Returned;

static gint
returned_compare (gconstpointer a, gconstpointer b)
{
        const Returned *x = a, *y = b;

        return x->point < y->point ? -1 : x->point > y->point;
}

static void
test_concurrent_flushes (void)
{
        g_autoptr (GError) error = NULL;
        VhdxCreateParams params = { .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                                    .virtual_size = FLUSH_DISK,
                                    .block_size = 1 * MiB };
        g_autoptr (GBytes) image = NULL;
        g_autoptr (CrashTrace) trace = NULL;
        g_autoptr (CrashWalker) walker = NULL;
        g_autoptr (GArray) returned = g_array_new (FALSE, FALSE, sizeof (Returned));
        g_autoptr (GByteArray) crashed = g_byte_array_new ();
        g_autoptr (GRand) rand = g_rand_new_with_seed (5);
        Flusher flushers[N_FLUSHERS];
        GThread *threads[N_FLUSHERS];
        VhdxIo *io;
        VhdxFile *file;
        guint checked = 0;

        {
                g_autoptr (VhdxIo) created = crash_io_new (NULL, 0, FALSE);
                g_autoptr (VhdxCreator) c = vhdx_creator_new (created, &params, &error);
                const GByteArray *contents;

                g_assert_no_error (error);
                test_assert_ok (vhdx_creator_finish (c, &error), error);
                contents = crash_io_get_contents (created);
                image = g_bytes_new (contents->data, contents->len);
        }
        io = crash_io_new (g_bytes_get_data (image, NULL), g_bytes_get_size (image), TRUE);
        file = vhdx_file_open_full (io, VHDX_OPEN_FLAGS_READ_WRITE, NULL, &error);
        g_assert_no_error (error);
        for (guint i = 0; i < N_FLUSHERS; i++) {
                flushers[i] = (Flusher){ file, io, i, { 0 } };
                threads[i] = g_thread_new ("flusher", flusher_thread, &flushers[i]);
        }
        for (guint i = 0; i < N_FLUSHERS; i++)
                g_thread_join (threads[i]);
        trace = crash_io_get_trace (io);
        test_assert_ok (vhdx_file_close (file, &error), error);
        vhdx_file_free (file);

        for (guint i = 0; i < N_FLUSHERS; i++) {
                for (guint round = 0; round < FLUSH_ROUNDS; round++) {
                        Returned r = { flushers[i].returned[round], i, round };
                        g_array_append_val (returned, r);
                }
        }
        g_array_sort (returned, returned_compare);

        /* At each point where a flush had returned, only what flushes made
         * durable survives: every write of a flush returned by then is in it. */
        walker = crash_walker_new (trace);
        for (guint n = 0; n < returned->len; n++) {
                guint point = g_array_index (returned, Returned, n).point;
                g_autoptr (GBytes) bytes = NULL;
                g_autoptr (VhdxFile) crash = NULL;
                g_autofree char *what = NULL;

                if (n + 1 < returned->len &&
                    g_array_index (returned, Returned, n + 1).point == point)
                        continue;
                while (crash_walker_get_point (walker) < point)
                        g_assert_true (crash_walker_advance (walker));
                crash_walker_build (walker, CRASH_DURABLE, rand, crashed);
                bytes = g_bytes_new_static (crashed->data, crashed->len);
                crash = vhdx_file_open_full (vhdx_io_new_memory (bytes), VHDX_OPEN_FLAGS_NONE, NULL,
                                             &error);
                g_assert_no_error (error);
                what = g_strdup_printf ("a crash before call %u, after flushes had returned",
                                        point);
                for (guint k = 0; k <= n; k++) {
                        const Returned *r = &g_array_index (returned, Returned, k);
                        guint8 buf[FLUSH_WRITE], expected[FLUSH_WRITE];
                        guint64 offset = flush_offset (r->index, r->round);

                        memset (expected, flush_value (r->index, r->round), sizeof expected);
                        test_assert_ok (vhdx_file_read (crash, offset, buf, sizeof buf, &error),
                                        error);
                        test_assert_bytes_equal (buf, expected, sizeof buf, offset, what);
                }
                checked++;
        }
        g_test_message ("%u crash points checked, %u calls to the file", checked,
                        crash_trace_get_calls (trace));
}

int
main (int argc, char **argv)
{
        g_autoptr (GPtrArray) scenarios = g_ptr_array_new_with_free_func (scenario_free);

        g_test_init (&argc, &argv, NULL);
        g_ptr_array_add (scenarios, scenario_dynamic ());
        g_ptr_array_add (scenarios, scenario_differencing ());
        g_ptr_array_add (scenarios, scenario_dirty ());
        for (guint i = 0; i < scenarios->len; i++) {
                Scenario *s = g_ptr_array_index (scenarios, i);
                g_autofree char *path = g_strdup_printf ("/threads/%s", s->name);
                g_test_add_data_func (path, s, test_concurrent_reads);
        }
        g_test_add_data_func ("/threads/writes/dynamic", GUINT_TO_POINTER (0),
                              test_concurrent_writes);
        g_test_add_data_func ("/threads/writes/differencing", GUINT_TO_POINTER (1),
                              test_concurrent_writes);
        g_test_add_data_func ("/threads/writes/halves-of-sectors", GUINT_TO_POINTER (2),
                              test_concurrent_writes);
        g_test_add_func ("/threads/flushes", test_concurrent_flushes);
        return g_test_run ();
}
