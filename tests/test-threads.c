/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Concurrent reads.  Eight threads read and map random ranges of one freshly
 * opened image at once, racing to load the same BAT pages and sector bitmaps,
 * and compare every byte with what a single thread read before.  Images: a
 * dynamic disk large enough for several BAT pages, a differencing chain with
 * partly present blocks in two chunks, and an image with a dirty log read
 * through its in-memory replay.  `./run tsan` runs this under
 * ThreadSanitizer.
 */
#include "test-util.h"
#include "vhdx-gen.h"
#include "vhdx-log-writer.h"
#include "vhdx-writer.h"

#include <fcntl.h>
#include <gio/gio.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#include <dlfcn.h>
#endif

#define MiB VHDX_MiB
#define GiB VHDX_GiB
#define N_THREADS 8
#define N_ROUNDS 16
#define N_REGIONS 48
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

void
g_mutex_lock (GMutex *mutex)
{
        static void (*real) (GMutex *);

        if (real == NULL)
                real = (void (*) (GMutex *)) dlsym (RTLD_NEXT, "g_mutex_lock");
        real (mutex);
        __tsan_acquire (mutex);
}

void
g_mutex_unlock (GMutex *mutex)
{
        static void (*real) (GMutex *);

        if (real == NULL)
                real = (void (*) (GMutex *)) dlsym (RTLD_NEXT, "g_mutex_unlock");
        __tsan_release (mutex);
        real (mutex);
}
#endif

typedef struct {
        guint64 offset;
        gsize length;
        guint8 *expect;
} Region;

typedef struct {
        const char *name;
        char *dir;
        char *path;        /* the image opened */
        Region regions[N_REGIONS];
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
        g_autoptr(GError) error = NULL;
        VhdxOpenOptions options = { .path = s->path };
        VhdxIo *io = vhdx_io_open_file (s->path, &error);
        VhdxFile *file;

        g_assert_no_error (error);
        file = vhdx_file_open_full (io, VHDX_OPEN_FLAGS_NONE, &options, &error);
        g_assert_no_error (error);
        return file;
}

static gpointer
worker_run (gpointer data)
{
        Worker *w = data;
        g_autoptr(GRand) rand = g_rand_new_with_seed (w->seed);
        g_autofree guint8 *buf = g_malloc (REGION_SIZE);

        for (guint i = 0; i < 120; i++) {
                const Region *r = &w->s->regions[g_rand_int_range (rand, 0, N_REGIONS)];
                gsize skip = g_rand_int_range (rand, 0, r->length);
                gsize len = g_rand_int_range (rand, 1, r->length - skip + 1);
                g_autoptr(GError) error = NULL;

                if (g_rand_int_range (rand, 0, 8) == 0) {
                        g_autoptr(GArray) extents = vhdx_file_map (w->file, r->offset + skip,
                                                                   len, &error);
                        g_assert_no_error (error);
                        g_assert_cmpuint (extents->len, >, 0);
                        continue;
                }
                test_assert_ok (vhdx_file_read (w->file, r->offset + skip, buf, len, &error), error);
                if (memcmp (buf, r->expect + skip, len) != 0)
                        g_error ("%s: %" G_GSIZE_FORMAT " bytes at %" G_GUINT64_FORMAT
                                 " differ from a single-threaded read",
                                 w->s->name, len, r->offset + skip);
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
                g_autoptr(VhdxFile) file = open_scenario (s);
                Worker workers[N_THREADS];
                GThread *threads[N_THREADS];

                for (guint t = 0; t < N_THREADS; t++) {
                        workers[t] = (Worker) { s, file, 1000 * round + t, 0, 0 };
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

/* The regions every thread reads, and their bytes read by one thread. */
static void
scenario_set_regions (Scenario *s, const guint64 *starts, guint n_starts, guint64 virtual_size)
{
        g_autoptr(VhdxFile) file = open_scenario (s);
        guint with_data = 0;

        for (guint i = 0; i < N_REGIONS; i++) {
                Region *r = &s->regions[i];
                g_autoptr(GError) error = NULL;

                /* Around the places that hold data, crossing block boundaries. */
                r->offset = MIN (starts[i % n_starts] + (i / n_starts) * 160 * 1024,
                                 virtual_size - REGION_SIZE);
                r->length = REGION_SIZE;
                r->expect = g_malloc (r->length);
                test_assert_ok (vhdx_file_read (file, r->offset, r->expect, r->length, &error), error);
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
        test_tmpdir_free (s->dir);
        g_free (s->path);
        g_free (s);
}

/* 8 GiB, 1 MiB blocks: three pages of BAT, data in blocks across them. */
static Scenario *
scenario_dynamic (void)
{
        Scenario *s = scenario_new ("dynamic");
        g_autoptr(VhdxGen) gen = NULL;
        g_autoptr(GError) error = NULL;
        guint64 starts[16];
        VhdxGenParams params;

        vhdx_gen_params_init (&params);
        params.virtual_size = 8 * GiB;
        params.block_size = MiB;
        params.shuffle_blocks = TRUE;
        gen = vhdx_gen_new (&params);
        for (guint i = 0; i < G_N_ELEMENTS (starts); i++) {
                starts[i] = (guint64) i * (params.virtual_size / G_N_ELEMENTS (starts)) +
                            MiB - 64 * 1024;
                vhdx_gen_fill_pattern (gen, starts[i], 512 * 1024, i + 1);
        }
        s->path = g_build_filename (s->dir, "dynamic.vhdx", NULL);
        test_assert_ok (vhdx_gen_write_file (gen, s->path, &error), error);
        scenario_set_regions (s, starts, G_N_ELEMENTS (starts), params.virtual_size);
        return s;
}

static void
write_level (const char *path, VhdxCreateParams *params, const guint64 *starts, guint n,
             gsize run, guint32 seed)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(VhdxIo) io = NULL;
        g_autoptr(VhdxWriter) w = NULL;
        g_autofree guint8 *buf = g_malloc (run);
        int fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        g_assert_cmpint (fd, >=, 0);
        io = vhdx_io_new_fd (fd, TRUE);
        w = vhdx_writer_new (io, params, &error);
        g_assert_no_error (error);
        for (guint i = 0; i < n; i++) {
                vhdx_gen_pattern_fill_buffer (buf, starts[i], run, seed + i);
                test_assert_ok (vhdx_writer_write (w, starts[i], buf, run, &error), error);
        }
        test_assert_ok (vhdx_writer_finish (w, &error), error);
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

        for (guint i = 0; i < G_N_ELEMENTS (base_starts); i++)
                base_starts[i] = (guint64) i * (params.virtual_size / 12) + MiB - 128 * 1024;
        for (guint i = 0; i < G_N_ELEMENTS (child_starts); i++) {
                child_starts[i] = base_starts[i / 2] + (i % 2) * 96 * 1024 + 8192;
                starts[i] = base_starts[i / 2] - 16384;
        }
        vhdx_guid_new_random (&params.data_write_guid);
        write_level (base, &params, base_starts, G_N_ELEMENTS (base_starts), 256 * 1024, 10);
        params.disk_type = VHDX_DISK_TYPE_DIFFERENCING;
        params.parent_data_write_guid = params.data_write_guid;
        params.parent_relative_path = "base.vhdx";
        vhdx_guid_new_random (&params.data_write_guid);
        s->path = g_build_filename (s->dir, "child.vhdx", NULL);
        write_level (s->path, &params, child_starts, G_N_ELEMENTS (child_starts), 24 * 1024,
                     100);
        scenario_set_regions (s, starts, G_N_ELEMENTS (starts), params.virtual_size);
        return s;
}

/* A dynamic image whose log rewrites sectors of several blocks. */
static Scenario *
scenario_dirty (void)
{
        Scenario *s = scenario_new ("dirty-log");
        g_autoptr(VhdxGen) gen = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(VhdxIo) io = NULL;
        g_autoptr(VhdxLogWriter) writer = NULL;
        guint64 starts[8];
        guint8 sector[4096];
        VhdxGenParams params;
        VhdxGenLayout layout;
        VhdxGuid log_guid;
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
                test_assert_ok (vhdx_log_writer_commit (writer, layout.file_size,
                                                       layout.file_size, &error), error);
        }
        for (guint h = 0; h < 2; h++) {
                guint8 header[VHDX_HEADER_SIZE];
                guint64 o = layout.header_offset[h];
                g_assert_cmpint (pread (fd, header, sizeof header, o), ==, sizeof header);
                memcpy (header + VHDX_HEADER_OFF_LOG_GUID, log_guid.bytes, 16);
                vhdx_gen_update_header_checksum (header);
                g_assert_cmpint (pwrite (fd, header, sizeof header, o), ==, sizeof header);
        }
        scenario_set_regions (s, starts, G_N_ELEMENTS (starts), params.virtual_size);
        return s;
}

int
main (int argc, char **argv)
{
        g_autoptr(GPtrArray) scenarios = g_ptr_array_new_with_free_func (scenario_free);

        g_test_init (&argc, &argv, NULL);
        g_ptr_array_add (scenarios, scenario_dynamic ());
        g_ptr_array_add (scenarios, scenario_differencing ());
        g_ptr_array_add (scenarios, scenario_dirty ());
        for (guint i = 0; i < scenarios->len; i++) {
                Scenario *s = g_ptr_array_index (scenarios, i);
                g_autofree char *path = g_strdup_printf ("/threads/%s", s->name);
                g_test_add_data_func (path, s, test_concurrent_reads);
        }
        return g_test_run ();
}
