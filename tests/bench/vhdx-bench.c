/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx-bench: the measuring half of the benchmarks; bench.py makes the
 * images, runs the cases and prints the table.
 *
 * Each measuring command runs every contender over the same requests, in
 * interleaved rounds (A B C A B C ...), and prints one line of JSON: the
 * best time of each contender in seconds (other work on the machine only
 * ever adds time) and whether they all read the same bytes (checked in a
 * pass of its own that is not timed).  The page cache is warm: every file
 * is read once before the first timed round.
 *
 *   fill RAW SIZE BLOCK PERCENT SEED    a sparse raw file: PERCENT of its
 *                                       blocks hold seeded data, the rest holes
 *   scribble RAW BLOCK BLOCKS RANGES SEED
 *                                       overwrite BLOCKS whole blocks and RANGES
 *                                       short sector runs with new data
 *   sequential VHDX RAW ROUNDS          1 MiB requests over the whole disk
 *   random VHDX RAW ROUNDS              200000 random 4 KiB reads
 *   threads VHDX RAW ROUNDS             the same reads from 1 and 2 threads
 *   async VHDX ROUNDS                   VhdxImage: 1 MiB read_bytes_async, 4 in
 *                                       flight, against read_bytes
 *   chain TOP FLAT ROUNDS               random 4 KiB reads through a chain and
 *                                       from the same disk in one image
 *   info-many LIST ROUNDS               VhdxImage and the facts vhdx info prints
 *                                       (as JSON) for every file named in LIST,
 *                                       in one process
 *   open IMAGE ROUNDS                   vhdx_file_open of IMAGE (its pending log
 *                                       replayed in memory), with the CPU's CRC-32C
 *                                       instruction and with the tables
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <vhdx.h>

#include "vhdx-crc32c.h"
#include "vhdx-io.h"
#include "vhdx-reader.h"

#ifdef HAVE_LIBVHDI
#include <libvhdi.h>
#endif

#define KiB             ((guint64) 1024)
#define MiB             (KiB * 1024)
#define SEQ_REQUEST     MiB
#define RANDOM_REQUEST  (4 * KiB)
#define RANDOM_COUNT    200000
#define RANDOM_SEED     G_GUINT64_CONSTANT (0x5eed0f4b1d)
#define ASYNC_IN_FLIGHT 4

static G_NORETURN void die (const char *format, ...) G_GNUC_PRINTF (1, 2);

static G_NORETURN void
die (const char *format, ...)
{
        va_list args;

        fputs ("vhdx-bench: ", stderr);
        va_start (args, format);
        vfprintf (stderr, format, args);
        va_end (args);
        fputc ('\n', stderr);
        exit (1);
}

static double
now (void)
{
        struct timespec ts;

        clock_gettime (CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static guint64
splitmix64 (guint64 *state)
{
        guint64 z = (*state += G_GUINT64_CONSTANT (0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static void
fill_random (guint8 *buf, gsize count, guint64 *state)
{
        for (gsize i = 0; i + 8 <= count; i += 8) {
                guint64 v = splitmix64 (state);
                memcpy (buf + i, &v, 8);
        }
}

static guint64
parse_u64 (const char *text)
{
        guint64 value;
        g_autoptr (GError) error = NULL;

        if (!g_ascii_string_to_unsigned (text, 10, 0, G_MAXUINT64, &value, &error))
                die ("%s: %s", text, error->message);
        return value;
}

static void *
aligned_alloc_or_die (gsize size)
{
        void *p = NULL;

        if (posix_memalign (&p, 4096, MAX (size, 4096)) != 0)
                die ("out of memory");
        memset (p, 0, size);
        return p;
}

static void
pwrite_or_die (int fd, const guint8 *buf, gsize count, guint64 offset)
{
        while (count > 0) {
                ssize_t n = pwrite (fd, buf, count, (off_t) offset);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        die ("write: %s", g_strerror (errno));
                }
                buf += n;
                offset += (guint64) n;
                count -= (gsize) n;
        }
}

static int
open_or_die (const char *path, int flags)
{
        int fd = open (path, flags | O_CLOEXEC, 0644);

        if (fd < 0)
                die ("%s: %s", path, g_strerror (errno));
        return fd;
}

/* Fixtures */

static int
cmd_fill (int argc, char **argv)
{
        guint64 size, block, percent, seed, n_blocks, n_chosen, data_state;
        g_autofree guint64 *order = NULL;
        g_autofree guint8 *buf = NULL;
        int fd;

        if (argc != 5)
                die ("usage: fill RAW SIZE BLOCK PERCENT SEED");
        size = parse_u64 (argv[1]);
        block = parse_u64 (argv[2]);
        percent = parse_u64 (argv[3]);
        seed = parse_u64 (argv[4]);
        if (block == 0 || block % MiB != 0 || size % block != 0 || percent > 100)
                die ("fill: bad sizes");
        fd = open_or_die (argv[0], O_WRONLY | O_CREAT | O_TRUNC);
        if (ftruncate (fd, (off_t) size) < 0)
                die ("%s: %s", argv[0], g_strerror (errno));

        /* A seeded shuffle of the blocks; the first PERCENT of them get data. */
        n_blocks = size / block;
        n_chosen = (n_blocks * percent + 50) / 100;
        order = g_new (guint64, n_blocks);
        for (guint64 i = 0; i < n_blocks; i++)
                order[i] = i;
        for (guint64 i = n_blocks; i > 1; i--) {
                guint64 j = splitmix64 (&seed) % i, t = order[i - 1];
                order[i - 1] = order[j];
                order[j] = t;
        }
        buf = g_malloc (MiB);
        data_state = seed;
        for (guint64 i = 0; i < n_chosen; i++) {
                for (guint64 at = 0; at < block; at += MiB) {
                        fill_random (buf, MiB, &data_state);
                        pwrite_or_die (fd, buf, MiB, order[i] * block + at);
                }
        }
        if (close (fd) < 0)
                die ("%s: %s", argv[0], g_strerror (errno));
        return 0;
}

static int
cmd_scribble (int argc, char **argv)
{
        guint64 block, n_blocks, n_ranges, seed, size;
        g_autofree guint8 *buf = NULL;
        struct stat st;
        int fd;

        if (argc != 5)
                die ("usage: scribble RAW BLOCK BLOCKS RANGES SEED");
        block = parse_u64 (argv[1]);
        n_blocks = parse_u64 (argv[2]);
        n_ranges = parse_u64 (argv[3]);
        seed = parse_u64 (argv[4]);
        fd = open_or_die (argv[0], O_WRONLY);
        if (fstat (fd, &st) < 0)
                die ("%s: %s", argv[0], g_strerror (errno));
        size = (guint64) st.st_size;
        if (block == 0 || size < block)
                die ("scribble: bad sizes");
        buf = g_malloc (block);
        for (guint64 i = 0; i < n_blocks; i++) {
                guint64 at = splitmix64 (&seed) % (size / block) * block;
                fill_random (buf, block, &seed);
                pwrite_or_die (fd, buf, block, at);
        }
        /* Runs of 1 to 64 sectors of 512 bytes anywhere: partially present blocks. */
        for (guint64 i = 0; i < n_ranges; i++) {
                guint64 length = (1 + splitmix64 (&seed) % 64) * 512;
                guint64 at = splitmix64 (&seed) % ((size - length) / 512) * 512;
                fill_random (buf, length, &seed);
                pwrite_or_die (fd, buf, length, at);
        }
        if (close (fd) < 0)
                die ("%s: %s", argv[0], g_strerror (errno));
        return 0;
}

/* Readers: the contenders, behind one signature. */

typedef struct _Reader Reader;
struct _Reader {
        const char *name;
        gboolean (*read) (Reader *reader, guint64 offset, guint8 *buf, gsize count);
        guint64 size;
        int fd;
        VhdxFile *vfile;
#ifdef HAVE_LIBVHDI
        libvhdi_file_t *vhdi;
#endif
};

static gboolean
raw_read (Reader *reader, guint64 offset, guint8 *buf, gsize count)
{
        while (count > 0) {
                ssize_t n = pread (reader->fd, buf, count, (off_t) offset);
                if (n <= 0) {
                        if (n < 0 && errno == EINTR)
                                continue;
                        return FALSE;
                }
                buf += n;
                offset += (guint64) n;
                count -= (gsize) n;
        }
        return TRUE;
}

static gboolean
vhdx_read (Reader *reader, guint64 offset, guint8 *buf, gsize count)
{
        g_autoptr (GError) error = NULL;

        if (!vhdx_file_read (reader->vfile, offset, buf, count, &error))
                die ("read: %s", error->message);
        return TRUE;
}

static void
reader_open_raw (Reader *reader, const char *path)
{
        struct stat st;

        memset (reader, 0, sizeof *reader);
        reader->name = "pread";
        reader->read = raw_read;
        reader->fd = open_or_die (path, O_RDONLY);
        if (fstat (reader->fd, &st) < 0)
                die ("%s: %s", path, g_strerror (errno));
        reader->size = (guint64) st.st_size;
}

static void
reader_open_vhdx (Reader *reader, const char *path)
{
        g_autoptr (GError) error = NULL;
        VhdxOpenOptions options = { .path = path };
        VhdxIo *io = vhdx_io_open_path (path, FALSE, &error);

        memset (reader, 0, sizeof *reader);
        reader->name = "vhdx";
        reader->read = vhdx_read;
        reader->fd = -1;
        if (io != NULL)
                reader->vfile = vhdx_file_open_full (io, VHDX_OPEN_FLAGS_NONE, &options, &error);
        if (reader->vfile == NULL)
                die ("%s: %s", path, error->message);
        reader->size = vhdx_file_get_info (reader->vfile)->virtual_size;
}

#ifdef HAVE_LIBVHDI
static gboolean
vhdi_read (Reader *reader, guint64 offset, guint8 *buf, gsize count)
{
        libvhdi_error_t *error = NULL;
        ssize_t n = libvhdi_file_read_buffer_at_offset (reader->vhdi, buf, count, (off64_t) offset,
                                                        &error);

        if (n != (ssize_t) count) {
                libvhdi_error_free (&error);
                die ("libvhdi read at %" G_GUINT64_FORMAT " failed", offset);
        }
        return TRUE;
}

static gboolean
reader_open_vhdi (Reader *reader, const char *path)
{
        libvhdi_error_t *error = NULL;
        libvhdi_file_t *file = NULL;
        size64_t size = 0;

        memset (reader, 0, sizeof *reader);
        reader->name = "libvhdi";
        reader->read = vhdi_read;
        reader->fd = -1;
        if (libvhdi_file_initialize (&file, &error) != 1 ||
            libvhdi_file_open (file, path, LIBVHDI_OPEN_READ, &error) != 1 ||
            libvhdi_file_get_media_size (file, &size, &error) != 1) {
                libvhdi_error_free (&error);
                return FALSE;
        }
        reader->vhdi = file;
        reader->size = size;
        return TRUE;
}
#endif

static void
reader_close (Reader *reader)
{
        if (reader->fd >= 0)
                close (reader->fd);
        g_clear_pointer (&reader->vfile, vhdx_file_free);
#ifdef HAVE_LIBVHDI
        if (reader->vhdi != NULL) {
                libvhdi_file_close (reader->vhdi, NULL);
                libvhdi_file_free (&reader->vhdi, NULL);
        }
#endif
}

/* Requests */

typedef struct {
        guint64 *offsets;
        guint n;
        gsize length;
} Requests;

static void
requests_sequential (Requests *r, guint64 size)
{
        r->length = SEQ_REQUEST;
        r->n = (guint) (size / SEQ_REQUEST);
        r->offsets = g_new (guint64, r->n);
        for (guint i = 0; i < r->n; i++)
                r->offsets[i] = (guint64) i * SEQ_REQUEST;
}

static void
requests_random (Requests *r, guint64 size)
{
        guint64 state = RANDOM_SEED;

        r->length = RANDOM_REQUEST;
        r->n = RANDOM_COUNT;
        r->offsets = g_new (guint64, r->n);
        for (guint i = 0; i < r->n; i++)
                r->offsets[i] = splitmix64 (&state) % (size / RANDOM_REQUEST) * RANDOM_REQUEST;
}

static void
run_requests (Reader *reader, const Requests *r, guint first, guint end, guint8 *buf)
{
        for (guint i = first; i < end; i++) {
                if (!reader->read (reader, r->offsets[i], buf, r->length))
                        die ("%s: read at %" G_GUINT64_FORMAT " failed", reader->name,
                             r->offsets[i]);
        }
}

/* Every reader gives the same bytes for every request. */
static gboolean
same_bytes (Reader *readers, guint n_readers, const Requests *r)
{
        g_autofree guint8 *expected = g_malloc (r->length);
        g_autofree guint8 *got = g_malloc (r->length);

        for (guint i = 0; i < r->n; i++) {
                if (!readers[0].read (&readers[0], r->offsets[i], expected, r->length))
                        return FALSE;
                for (guint k = 1; k < n_readers; k++) {
                        if (!readers[k].read (&readers[k], r->offsets[i], got, r->length) ||
                            memcmp (expected, got, r->length) != 0) {
                                g_printerr ("%s and %s differ at %" G_GUINT64_FORMAT "\n",
                                            readers[0].name, readers[k].name, r->offsets[i]);
                                return FALSE;
                        }
                }
        }
        return TRUE;
}

static double
best (const double *values, guint n)
{
        double t = values[0];

        for (guint i = 1; i < n; i++)
                t = MIN (t, values[i]);
        return t;
}

static void
print_result_start (const char *bench, const Requests *r)
{
        g_print ("{\"bench\": \"%s\", \"requests\": %u, \"request_bytes\": %" G_GSIZE_FORMAT, bench,
                 r->n, r->length);
}

/* Times @n_readers readers over @r in @rounds interleaved rounds; @extra
 * goes into the JSON line. */
static void
time_readers (const char *bench,
              Reader *readers,
              guint n_readers,
              const Requests *r,
              guint rounds,
              const char *extra)
{
        g_autofree guint8 *buf = aligned_alloc_or_die (r->length);
        g_autofree double *times = g_new0 (double, (gsize) n_readers *rounds);
        gboolean same = same_bytes (readers, n_readers, r); /* also warms the cache */

        for (guint round = 0; round < rounds; round++) {
                for (guint k = 0; k < n_readers; k++) {
                        double t = now ();
                        run_requests (&readers[k], r, 0, r->n, buf);
                        times[k * rounds + round] = now () - t;
                }
        }
        print_result_start (bench, r);
        g_print (", \"same\": %s%s", same ? "true" : "false", extra);
        for (guint k = 0; k < n_readers; k++)
                g_print (", \"%s\": %.6f", readers[k].name, best (&times[k * rounds], rounds));
        g_print ("}\n");
}

static guint
open_contenders (Reader *readers, const char *vhdx, const char *raw)
{
        guint n = 0;

        reader_open_vhdx (&readers[n++], vhdx);
        reader_open_raw (&readers[n++], raw);
#ifdef HAVE_LIBVHDI
        if (reader_open_vhdi (&readers[n], vhdx))
                n++;
#endif
        if (readers[1].size != readers[0].size)
                die ("%s and %s differ in size", vhdx, raw);
        return n;
}

static int
cmd_reads (int argc, char **argv, gboolean random)
{
        Reader readers[3];
        Requests r;
        guint n;

        if (argc != 3)
                die ("usage: %s VHDX RAW ROUNDS", random ? "random" : "sequential");
        n = open_contenders (readers, argv[0], argv[1]);
        if (random)
                requests_random (&r, readers[0].size);
        else
                requests_sequential (&r, readers[0].size);
        time_readers (random ? "random" : "sequential", readers, n, &r, (guint) parse_u64 (argv[2]),
                      "");
        for (guint k = 0; k < n; k++)
                reader_close (&readers[k]);
        g_free (r.offsets);
        return 0;
}

/* Threads: one reader shared by 1 or 2 threads, each doing its share of the requests. */

typedef struct {
        Reader *reader;
        const Requests *r;
        guint first, end;
        GMutex *lock;
        GCond *cond;
        gboolean *go;
} Worker;

static gpointer
worker_run (gpointer data)
{
        Worker *w = data;
        g_autofree guint8 *buf = aligned_alloc_or_die (w->r->length);

        g_mutex_lock (w->lock);
        while (!*w->go)
                g_cond_wait (w->cond, w->lock);
        g_mutex_unlock (w->lock);
        run_requests (w->reader, w->r, w->first, w->end, buf);
        return NULL;
}

static double
time_threads (Reader *reader, const Requests *r, guint n_threads)
{
        GMutex lock;
        GCond cond;
        gboolean go = FALSE;
        Worker workers[8];
        GThread *threads[8];
        double t;

        g_mutex_init (&lock);
        g_cond_init (&cond);
        for (guint i = 0; i < n_threads; i++) {
                workers[i] = (Worker){
                        reader, r,  r->n * i / n_threads, r->n * (i + 1) / n_threads, &lock,
                        &cond,  &go
                };
                threads[i] = g_thread_new ("reader", worker_run, &workers[i]);
        }
        g_usleep (10000);
        g_mutex_lock (&lock);
        t = now ();
        go = TRUE;
        g_cond_broadcast (&cond);
        g_mutex_unlock (&lock);
        for (guint i = 0; i < n_threads; i++)
                g_thread_join (threads[i]);
        t = now () - t;
        g_mutex_clear (&lock);
        g_cond_clear (&cond);
        return t;
}

static int
cmd_threads (int argc, char **argv)
{
        Reader readers[2];
        Requests r;
        guint rounds;
        g_autofree double *times = NULL;

        if (argc != 3)
                die ("usage: threads VHDX RAW ROUNDS");
        reader_open_vhdx (&readers[0], argv[0]);
        reader_open_raw (&readers[1], argv[1]);
        rounds = (guint) parse_u64 (argv[2]);
        requests_random (&r, readers[0].size);
        times = g_new0 (double, 4 * rounds);
        {
                gboolean same = same_bytes (readers, 2, &r);

                for (guint round = 0; round < rounds; round++) {
                        for (guint k = 0; k < 2; k++) {
                                times[(k * 2 + 0) * rounds + round] =
                                        time_threads (&readers[k], &r, 1);
                                times[(k * 2 + 1) * rounds + round] =
                                        time_threads (&readers[k], &r, 2);
                        }
                }
                print_result_start ("threads", &r);
                g_print (", \"same\": %s", same ? "true" : "false");
        }
        g_print (", \"vhdx_1\": %.6f, \"vhdx_2\": %.6f, \"pread_1\": %.6f, \"pread_2\": %.6f}\n",
                 best (&times[0 * rounds], rounds), best (&times[1 * rounds], rounds),
                 best (&times[2 * rounds], rounds), best (&times[3 * rounds], rounds));
        reader_close (&readers[0]);
        reader_close (&readers[1]);
        g_free (r.offsets);
        return 0;
}

/* The library: read_bytes_async with a few requests in flight, and read_bytes. */

typedef struct {
        VhdxImage *image;
        GMainLoop *loop;
        guint64 size;
        guint64 next;
        guint in_flight;
        guint64 checksum;
        GError *error;
} AsyncRun;

typedef struct {
        AsyncRun *run;
        guint64 offset;
} AsyncRequest;

/* A cheap fingerprint of a request's bytes (first and last word, its
 * offset and length) that does not depend on the order of completion. */
static guint64
checksum_bytes (GBytes *bytes, guint64 offset)
{
        gsize n;
        const guint8 *p = g_bytes_get_data (bytes, &n);
        guint64 a = 0, b = 0;

        if (n >= 8) {
                memcpy (&a, p, 8);
                memcpy (&b, p + n - 8, 8);
        }
        return (a ^ (b * 31) ^ n) + offset * G_GUINT64_CONSTANT (0x9e3779b97f4a7c15);
}

static void async_start (AsyncRun *run);

static void
async_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
        AsyncRequest *req = user_data;
        AsyncRun *run = req->run;
        GError *error = NULL;
        GBytes *bytes = vhdx_image_read_bytes_finish (VHDX_IMAGE (source), result, &error);

        run->in_flight--;
        if (bytes != NULL) {
                run->checksum += checksum_bytes (bytes, req->offset);
                g_bytes_unref (bytes);
        } else if (run->error == NULL) {
                run->error = error;
        } else {
                g_error_free (error);
        }
        g_free (req);
        if (run->error == NULL)
                async_start (run);
        if (run->in_flight == 0)
                g_main_loop_quit (run->loop);
}

static void
async_start (AsyncRun *run)
{
        while (run->in_flight < ASYNC_IN_FLIGHT && run->next < run->size) {
                AsyncRequest *req = g_new (AsyncRequest, 1);

                req->run = run;
                req->offset = run->next;
                vhdx_image_read_bytes_async (run->image, run->next, SEQ_REQUEST, G_PRIORITY_DEFAULT,
                                             NULL, async_done, req);
                run->next += SEQ_REQUEST;
                run->in_flight++;
        }
}

static double
time_async (VhdxImage *image, guint64 size, guint64 *checksum)
{
        AsyncRun run = { image, g_main_loop_new (NULL, FALSE), size, 0, 0, 0, NULL };
        double t = now ();

        async_start (&run);
        g_main_loop_run (run.loop);
        t = now () - t;
        if (run.error != NULL)
                die ("async read: %s", run.error->message);
        g_main_loop_unref (run.loop);
        *checksum = run.checksum;
        return t;
}

static double
time_sync (VhdxImage *image, guint64 size, guint64 *checksum)
{
        double t = now ();

        *checksum = 0;
        for (guint64 offset = 0; offset < size; offset += SEQ_REQUEST) {
                g_autoptr (GError) error = NULL;
                GBytes *bytes = vhdx_image_read_bytes (image, offset, SEQ_REQUEST, NULL, &error);

                if (bytes == NULL)
                        die ("read: %s", error->message);
                *checksum += checksum_bytes (bytes, offset);
                g_bytes_unref (bytes);
        }
        return now () - t;
}

static int
cmd_async (int argc, char **argv)
{
        g_autoptr (GFile) file = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GError) error = NULL;
        g_autofree double *times = NULL;
        guint rounds;
        guint64 size, sum_sync = 0;
        gboolean same = TRUE;

        if (argc != 2)
                die ("usage: async VHDX ROUNDS");
        file = g_file_new_for_path (argv[0]);
        image = vhdx_image_new (file, VHDX_OPEN_FLAGS_NONE, NULL, &error);
        if (image == NULL)
                die ("%s: %s", argv[0], error->message);
        rounds = (guint) parse_u64 (argv[1]);
        size = vhdx_image_get_virtual_size (image) / SEQ_REQUEST * SEQ_REQUEST;
        times = g_new0 (double, 2 * rounds);
        time_sync (image, size, &sum_sync); /* warm the cache */
        for (guint round = 0; round < rounds; round++) {
                guint64 a, b;

                times[round] = time_sync (image, size, &a);
                times[rounds + round] = time_async (image, size, &b);
                same = same && a == sum_sync && b == sum_sync;
        }
        g_print ("{\"bench\": \"async\", \"requests\": %" G_GUINT64_FORMAT
                 ", \"request_bytes\": %" G_GUINT64_FORMAT
                 ", \"in_flight\": %d, \"same\": %s, \"sync\": %.6f, \"async\": %.6f}\n",
                 size / SEQ_REQUEST, SEQ_REQUEST, ASYNC_IN_FLIGHT, same ? "true" : "false",
                 best (times, rounds), best (times + rounds, rounds));
        return 0;
}

/* Differencing chain against the same disk in one image. */

static int
cmd_chain (int argc, char **argv)
{
        Reader readers[2];
        Requests r;
        g_autofree char *depth = NULL;

        if (argc != 3)
                die ("usage: chain TOP FLAT ROUNDS");
        reader_open_vhdx (&readers[0], argv[0]);
        readers[0].name = "chain";
        reader_open_vhdx (&readers[1], argv[1]);
        readers[1].name = "single";
        if (readers[0].size != readers[1].size)
                die ("%s and %s differ in size", argv[0], argv[1]);
        requests_random (&r, readers[0].size);
        depth = g_strdup_printf (", \"depth\": %u", vhdx_file_get_chain_depth (readers[0].vfile));
        time_readers ("chain", readers, 2, &r, (guint) parse_u64 (argv[2]), depth);
        reader_close (&readers[0]);
        reader_close (&readers[1]);
        g_free (r.offsets);
        return 0;
}

/* Info of many images in one process, as `vhdx info --json` builds it. */

/* What vhdx info --json says of an image, from its properties (no stored
 * bytes: info counts them only with --allocated). */
static JsonNode *
image_facts_json (VhdxImage *image)
{
        g_autoptr (JsonBuilder) builder = json_builder_new ();

        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "virtual-size");
        json_builder_add_int_value (builder, (gint64) vhdx_image_get_virtual_size (image));
        json_builder_set_member_name (builder, "cluster-size");
        json_builder_add_int_value (builder, vhdx_image_get_block_size (image));
        json_builder_set_member_name (builder, "disk-type");
        json_builder_add_int_value (builder, vhdx_image_get_disk_type (image));
        json_builder_set_member_name (builder, "virtual-disk-id");
        json_builder_add_string_value (builder, vhdx_image_get_virtual_disk_id (image));
        json_builder_set_member_name (builder, "data-write-guid");
        json_builder_add_string_value (builder, vhdx_image_get_data_write_guid (image));
        json_builder_set_member_name (builder, "file-write-guid");
        json_builder_add_string_value (builder, vhdx_image_get_file_write_guid (image));
        json_builder_set_member_name (builder, "creator");
        json_builder_add_string_value (builder, vhdx_image_get_creator (image));
        json_builder_end_object (builder);
        return json_builder_get_root (builder);
}

static int
cmd_info_many (int argc, char **argv)
{
        g_autofree char *list = NULL;
        g_auto (GStrv) paths = NULL;
        g_autoptr (GError) error = NULL;
        g_autofree double *times = NULL;
        guint rounds, n = 0;
        gsize text_bytes = 0;

        if (argc != 2)
                die ("usage: info-many LIST ROUNDS");
        if (!g_file_get_contents (argv[0], &list, NULL, &error))
                die ("%s", error->message);
        paths = g_strsplit (g_strstrip (list), "\n", -1);
        rounds = (guint) parse_u64 (argv[1]);
        times = g_new0 (double, rounds);
        for (guint round = 0; round < rounds; round++) {
                double t = now ();

                n = 0;
                text_bytes = 0;
                for (char **p = paths; *p != NULL; p++) {
                        g_autoptr (GFile) file = g_file_new_for_path (*p);
                        g_autoptr (VhdxImage) image = NULL;
                        g_autoptr (JsonNode) root = NULL;
                        g_autoptr (JsonGenerator) generator = json_generator_new ();
                        g_autofree char *text = NULL;

                        image = vhdx_image_new (file, VHDX_OPEN_FLAGS_NONE, NULL, &error);
                        if (image == NULL)
                                die ("%s: %s", *p, error->message);
                        root = image_facts_json (image);
                        json_generator_set_pretty (generator, TRUE);
                        json_generator_set_root (generator, root);
                        text = json_generator_to_data (generator, NULL);
                        text_bytes += strlen (text);
                        n++;
                }
                times[round] = now () - t;
        }
        g_print ("{\"bench\": \"info-many\", \"files\": %u, \"json_bytes\": %" G_GSIZE_FORMAT
                 ", \"vhdx\": %.6f}\n",
                 n, text_bytes, best (times, rounds));
        return 0;
}

/* In-process opens: what a crafted log costs to replay, by each CRC-32C. */

static double
time_open (const char *path, guint64 *checksummed)
{
        g_autoptr (GError) error = NULL;
        VhdxOpenOptions options = { .path = path };
        guint64 before = vhdx_crc32c_get_bytes_checksummed ();
        double t = now ();
        VhdxIo *io = vhdx_io_open_path (path, FALSE, &error);
        VhdxFile *vfile = NULL;

        if (io != NULL)
                vfile = vhdx_file_open_full (io, VHDX_OPEN_FLAGS_NONE, &options, &error);
        if (vfile == NULL)
                die ("%s: %s", path, error->message);
        vhdx_file_free (vfile);
        t = now () - t;
        *checksummed = vhdx_crc32c_get_bytes_checksummed () - before;
        return t;
}

/* What reading the whole file costs: into memory just allocated in 4 KiB
 * pages (a fault each), and into memory already touched (the copy alone,
 * the floor of an open that replays a log). */
static void
time_reads (const char *path, double *fresh, double *warm)
{
        int fd = open_or_die (path, O_RDONLY);
        struct stat st;
        Reader raw = { .fd = fd };
        guint8 *buf;
        double t;

        if (fstat (fd, &st) < 0)
                die ("%s: %s", path, g_strerror (errno));
        t = now ();
        buf = g_malloc ((gsize) st.st_size);
        if (!raw_read (&raw, 0, buf, (gsize) st.st_size))
                die ("%s: short read", path);
        *fresh = now () - t;
        t = now ();
        if (!raw_read (&raw, 0, buf, (gsize) st.st_size))
                die ("%s: short read", path);
        *warm = now () - t;
        g_free (buf);
        close (fd);
}

/* CRC-32C of @size bytes in memory already touched, by the implementation in use. */
static double
time_crc (const guint8 *buf, gsize size, guint32 *crc)
{
        double t = now ();

        *crc = vhdx_crc32c (0, buf, size);
        return now () - t;
}

static int
cmd_open (int argc, char **argv)
{
        g_autofree double *times = NULL;
        g_autofree double *crc_times = NULL;
        g_autofree double *read_times = NULL;
        g_autofree double *warm_times = NULL;
        g_autofree guint8 *block = NULL;
        const gsize crc_size = 32 * MiB;
        guint rounds;
        guint64 checksummed = 0;
        gboolean instruction;
        guint32 crc_hw = 0, crc_table = 0;

        if (argc != 2)
                die ("usage: open IMAGE ROUNDS");
        rounds = (guint) parse_u64 (argv[1]);
        times = g_new0 (double, 2 * rounds);
        crc_times = g_new0 (double, 2 * rounds);
        read_times = g_new0 (double, rounds);
        warm_times = g_new0 (double, rounds);
        block = g_malloc (crc_size);
        for (gsize i = 0; i < crc_size; i++)
                block[i] = (guint8) (i * 131 + (i >> 12));
        instruction = vhdx_crc32c_set_table_only (FALSE) && vhdx_crc32c_uses_instruction ();
        time_open (argv[0], &checksummed); /* warm-up: the page cache */
        for (guint round = 0; round < rounds; round++) {
                vhdx_crc32c_set_table_only (FALSE);
                times[round] = time_open (argv[0], &checksummed);
                crc_times[round] = time_crc (block, crc_size, &crc_hw);
                vhdx_crc32c_set_table_only (TRUE);
                times[rounds + round] = time_open (argv[0], &checksummed);
                crc_times[rounds + round] = time_crc (block, crc_size, &crc_table);
                time_reads (argv[0], &read_times[round], &warm_times[round]);
        }
        vhdx_crc32c_set_table_only (FALSE);
        g_print (
                "{\"bench\": \"open\", \"instruction\": %s, \"checksummed\": %" G_GUINT64_FORMAT
                ", \"hw\": %.6f, \"table\": %.6f, \"crc_bytes\": %" G_GSIZE_FORMAT
                ", \"crc_hw\": %.6f, \"crc_table\": %.6f, \"fresh_read\": %.6f, \"warm_read\": %.6f"
                ", \"same\": %s}\n",
                instruction ? "true" : "false", checksummed, best (times, rounds),
                best (times + rounds, rounds), crc_size, best (crc_times, rounds),
                best (crc_times + rounds, rounds), best (read_times, rounds),
                best (warm_times, rounds), crc_hw == crc_table ? "true" : "false");
        return 0;
}

int
main (int argc, char **argv)
{
        if (argc < 2)
                die ("usage: vhdx-bench COMMAND ARGS...");
        if (g_str_equal (argv[1], "fill"))
                return cmd_fill (argc - 2, argv + 2);
        if (g_str_equal (argv[1], "scribble"))
                return cmd_scribble (argc - 2, argv + 2);
        if (g_str_equal (argv[1], "sequential"))
                return cmd_reads (argc - 2, argv + 2, FALSE);
        if (g_str_equal (argv[1], "random"))
                return cmd_reads (argc - 2, argv + 2, TRUE);
        if (g_str_equal (argv[1], "threads"))
                return cmd_threads (argc - 2, argv + 2);
        if (g_str_equal (argv[1], "async"))
                return cmd_async (argc - 2, argv + 2);
        if (g_str_equal (argv[1], "chain"))
                return cmd_chain (argc - 2, argv + 2);
        if (g_str_equal (argv[1], "info-many"))
                return cmd_info_many (argc - 2, argv + 2);
        if (g_str_equal (argv[1], "open"))
                return cmd_open (argc - 2, argv + 2);
        die ("unknown command %s", argv[1]);
}
