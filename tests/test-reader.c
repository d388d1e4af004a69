/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reads of fixed and dynamic images made by qemu-img/qemu-io, compared byte
 * for byte with `qemu-img convert -O raw` of the same image.
 */
#include "test-util.h"

#include <fcntl.h>
#include <unistd.h>

typedef struct {
        guint64 offset;
        guint64 length;
} Write;

typedef struct {
        const char *name;
        const char *subformat;
        guint32 block_size;
        guint64 virtual_size;
        Write writes[8];
        gboolean full_compare; /* compare the whole disk, not only samples */
} Fixture;

#define MiB (G_GUINT64_CONSTANT (1) << 20)
#define GiB (G_GUINT64_CONSTANT (1) << 30)

static const Fixture fixtures[] = {
        { "dynamic-1M",
          "dynamic",
          1 * MiB,
          10 * MiB + 1536,
          { { 0, 4096 }, { MiB - 1000, 3000 }, { 3 * MiB, 2 * MiB + 512 }, { 10 * MiB, 1536 } },
          TRUE },
        { "dynamic-2M",
          "dynamic",
          2 * MiB,
          33 * MiB,
          { { 5 * MiB + 7, 6 * MiB }, { 32 * MiB, MiB } },
          TRUE },
        { "dynamic-32M",
          "dynamic",
          32 * MiB,
          100 * MiB,
          { { 31 * MiB, 2 * MiB }, { 99 * MiB + 512, 512 } },
          TRUE },
        { "dynamic-256M",
          "dynamic",
          256 * MiB,
          600 * MiB,
          { { 255 * MiB + 3, 2 * MiB }, { 599 * MiB, MiB } },
          TRUE },
        { "fixed-1M",
          "fixed",
          1 * MiB,
          20 * MiB + 1024,
          { { 0, 512 }, { 7 * MiB - 5, 10 }, { 20 * MiB, 1024 } },
          TRUE },
        { "fixed-32M",
          "fixed",
          32 * MiB,
          70 * MiB,
          { { 33 * MiB, 40 * MiB - 33 * MiB }, { 69 * MiB, MiB } },
          TRUE },
        /* Larger than one chunk (4096 blocks of 1 MiB): the sector bitmap entry
         * interleaved at BAT index 4096 must be skipped. */
        { "dynamic-5G",
          "dynamic",
          1 * MiB,
          5 * GiB,
          { { 0, MiB },
            { 4 * GiB - MiB - 100, 2 * MiB + 200 },
            { 4 * GiB + 16 * MiB + 123, 4096 },
            { 5 * GiB - MiB - 7, MiB + 7 } },
          FALSE },
        { "fixed-5G",
          "fixed",
          1 * MiB,
          5 * GiB,
          { { 0, MiB },
            { 4 * GiB - MiB - 100, 2 * MiB + 200 },
            { 4 * GiB + 16 * MiB + 123, 4096 },
            { 5 * GiB - MiB - 7, MiB + 7 } },
          FALSE },
};

typedef struct {
        const Fixture *fixture;
        char *vhdx;
        char *raw;
} Made;

static char *tmpdir;
static Made made[G_N_ELEMENTS (fixtures)];

static void
write_pattern_file (const char *path, gsize length, guint32 seed)
{
        g_autoptr (GError) error = NULL;
        g_autofree guint8 *buf = g_malloc (length);
        g_autoptr (GRand) rand = g_rand_new_with_seed (seed);

        for (gsize i = 0; i < length; i++)
                buf[i] = (guint8) g_rand_int (rand);
        g_file_set_contents (path, (const char *) buf, length, &error);
        g_assert_no_error (error);
}

static const Made *
make_fixture (guint index)
{
        const Fixture *f = &fixtures[index];
        Made *m = &made[index];
        g_autofree char *size = NULL, *opts = NULL;
        g_autoptr (GPtrArray) io_argv = NULL;

        if (m->vhdx != NULL)
                return m;
        if (!test_have_program ("qemu-img") || !test_have_program ("qemu-io"))
                return NULL;

        m->fixture = f;
        m->vhdx = g_strdup_printf ("%s/%s.vhdx", tmpdir, f->name);
        m->raw = g_strdup_printf ("%s/%s.raw", tmpdir, f->name);
        size = g_strdup_printf ("%" G_GUINT64_FORMAT, f->virtual_size);
        opts = g_strdup_printf ("subformat=%s,block_size=%u", f->subformat, f->block_size);
        {
                const char *argv[] = { "qemu-img", "create", "-q",    "-f", "vhdx",
                                       "-o",       opts,     m->vhdx, size, NULL };
                test_run (argv);
        }

        io_argv = g_ptr_array_new_with_free_func (g_free);
        g_ptr_array_add (io_argv, g_strdup ("qemu-io"));
        g_ptr_array_add (io_argv, g_strdup ("-f"));
        g_ptr_array_add (io_argv, g_strdup ("vhdx"));
        for (guint i = 0; i < G_N_ELEMENTS (f->writes) && f->writes[i].length > 0; i++) {
                g_autofree char *pattern = g_strdup_printf ("%s/%s-%u.pattern", tmpdir, f->name, i);
                write_pattern_file (pattern, f->writes[i].length, index * 100 + i + 1);
                g_ptr_array_add (io_argv, g_strdup ("-c"));
                g_ptr_array_add (io_argv, g_strdup_printf ("write -q -s %s %" G_GUINT64_FORMAT
                                                           " %" G_GUINT64_FORMAT,
                                                           pattern, f->writes[i].offset,
                                                           f->writes[i].length));
        }
        g_ptr_array_add (io_argv, g_strdup (m->vhdx));
        g_ptr_array_add (io_argv, NULL);
        test_run ((const char *const *) io_argv->pdata);
        {
                const char *argv[] = { "qemu-img", "convert", "-f",   "vhdx", "-O",
                                       "raw",      m->vhdx,   m->raw, NULL };
                test_run (argv);
        }
        return m;
}

static void
test_fixture (gconstpointer data)
{
        guint index = GPOINTER_TO_UINT (data);
        const Made *m = make_fixture (index);
        const Fixture *f = &fixtures[index];
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GRand) rand = g_rand_new_with_seed (index + 7);
        const VhdxInfo *info;
        int raw_fd;

        if (m == NULL) {
                g_test_skip ("qemu-img and qemu-io are needed");
                return;
        }
        file = test_open_path (m->vhdx, &error);
        g_assert_no_error (error);
        info = vhdx_file_get_info (file);
        g_assert_cmpuint (info->virtual_size, ==, f->virtual_size);
        g_assert_cmpuint (info->block_size, ==, f->block_size);
        g_assert_cmpuint (info->logical_sector_size, ==, 512);
        g_assert_cmpint (info->disk_type, ==,
                         g_str_equal (f->subformat, "fixed") ? VHDX_DISK_TYPE_FIXED
                                                             : VHDX_DISK_TYPE_DYNAMIC);

        raw_fd = open (m->raw, O_RDONLY | O_CLOEXEC);
        g_assert_cmpint (raw_fd, >=, 0);

        if (f->full_compare) {
                g_autofree char *want = test_sha256_file (m->raw);
                g_autofree char *got = test_sha256_virtual_disk (file);
                g_assert_cmpstr (got, ==, want);
        }
        /* Around every write: its edges, and ranges crossing block boundaries. */
        for (guint i = 0; i < G_N_ELEMENTS (f->writes) && f->writes[i].length > 0; i++) {
                const Write *w = &f->writes[i];
                guint64 start = w->offset > 4099 ? w->offset - 4099 : 0;
                guint64 end = MIN (f->virtual_size, w->offset + w->length + 4099);
                test_assert_range_equal (file, raw_fd, start, end - start);
        }
        for (guint64 b = f->block_size; b < f->virtual_size && b < 64 * MiB; b += f->block_size)
                test_assert_range_equal (file, raw_fd, b - 777,
                                         (gsize) MIN (1554, f->virtual_size - b + 777));
        /* Random unaligned ranges, some several blocks long. */
        for (guint i = 0; i < 200; i++) {
                guint64 len = g_rand_int_range (rand, 1, i % 10 == 0 ? 3 * MiB : 70000);
                guint64 off = (guint64) (g_rand_double (rand) * (f->virtual_size - len));
                test_assert_range_equal (file, raw_fd, off, len);
        }
        close (raw_fd);
}

static gboolean
block_written (const Fixture *f, guint64 block)
{
        guint64 start = block * f->block_size, end = start + f->block_size;

        for (guint i = 0; i < G_N_ELEMENTS (f->writes) && f->writes[i].length > 0; i++) {
                if (f->writes[i].offset < end && f->writes[i].offset + f->writes[i].length > start)
                        return TRUE;
        }
        return FALSE;
}

static void
test_map (gconstpointer data)
{
        guint index = GPOINTER_TO_UINT (data);
        const Made *m = make_fixture (index);
        const Fixture *f = &fixtures[index];
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GArray) extents = NULL;
        guint64 expect = 0;
        int vhdx_fd, raw_fd;

        if (m == NULL) {
                g_test_skip ("qemu-img and qemu-io are needed");
                return;
        }
        file = test_open_path (m->vhdx, &error);
        g_assert_no_error (error);
        extents = vhdx_file_map (file, 0, f->virtual_size, &error);
        g_assert_no_error (error);
        vhdx_fd = open (m->vhdx, O_RDONLY | O_CLOEXEC);
        raw_fd = open (m->raw, O_RDONLY | O_CLOEXEC);

        for (guint i = 0; i < extents->len; i++) {
                const VhdxMapExtent *e = &g_array_index (extents, VhdxMapExtent, i);
                g_assert_cmpuint (e->offset, ==, expect);
                g_assert_cmpuint (e->length, >, 0);
                expect = e->offset + e->length;
                /* Each block is data exactly when written: qemu-img marks the
                 * blocks of its fixed images ZERO until they are written too. */
                for (guint64 b = e->offset / f->block_size;
                     b * f->block_size < e->offset + e->length; b++)
                        g_assert_cmpint (e->kind == VHDX_EXTENT_DATA, ==, block_written (f, b));
                if (e->kind == VHDX_EXTENT_DATA) {
                        /* The file offset really holds the virtual bytes. */
                        gsize n = (gsize) MIN (e->length, 65536);
                        g_autofree guint8 *a = g_malloc0 (n);
                        g_autofree guint8 *b = g_malloc0 (n);
                        g_assert_cmpint (pread (vhdx_fd, a, n, e->file_offset), ==, n);
                        g_assert_cmpint (pread (raw_fd, b, n, e->offset), ==, n);
                        g_assert_cmpmem (a, n, b, n);
                } else {
                        g_assert_cmpint (e->kind, ==, VHDX_EXTENT_ZERO);
                }
        }
        g_assert_cmpuint (expect, ==, f->virtual_size);
        close (vhdx_fd);
        close (raw_fd);
}

/* A VhdxIo that counts pread calls, over the file descriptor backend. */
typedef struct {
        VhdxIo parent;
        VhdxIo *inner;
        gint n_preads;
} CountingIo;

static gboolean
counting_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        CountingIo *self = (CountingIo *) io;

        g_atomic_int_inc (&self->n_preads);
        return self->inner->vtable->pread (self->inner, buf, count, offset, n_read, error);
}

static gboolean
counting_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        CountingIo *self = (CountingIo *) io;

        return vhdx_io_get_size (self->inner, size, error);
}

static void
counting_free (VhdxIo *io)
{
        CountingIo *self = (CountingIo *) io;

        vhdx_io_free (self->inner);
        g_free (self);
}

static const VhdxIoVTable counting_vtable = {
        .pread = counting_pread,
        .get_size = counting_get_size,
        .free = counting_free,
};

static void
test_one_pread_per_run (void)
{
        /* qemu-io allocated blocks 3 to 5 in order for one write: a read across
         * them is one run of the file. */
        const Made *m = make_fixture (0);
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autofree guint8 *buf = g_malloc (12 * MiB);
        CountingIo *io;
        int raw_fd;

        if (m == NULL) {
                g_test_skip ("qemu-img and qemu-io are needed");
                return;
        }
        io = g_new0 (CountingIo, 1);
        io->parent.vtable = &counting_vtable;
        io->inner = vhdx_io_new_fd (open (m->vhdx, O_RDONLY | O_CLOEXEC), TRUE);
        file = vhdx_file_open (&io->parent, VHDX_OPEN_FLAGS_NONE, &error);
        g_assert_no_error (error);
        /* Load the BAT page first. */
        test_assert_ok (vhdx_file_read (file, 0, buf, 1, &error), error);
        io->n_preads = 0;
        test_assert_ok (vhdx_file_read (file, 3 * MiB + 100, buf, 3 * MiB - 200, &error), error);
        g_assert_cmpint (io->n_preads, ==, 1);
        /* Blocks 2 to 6 are not all stored: the stored run is one pread, the rest zeros. */
        io->n_preads = 0;
        test_assert_ok (vhdx_file_read (file, 2 * MiB, buf, 5 * MiB, &error), error);
        g_assert_cmpint (io->n_preads, ==, 1);

        raw_fd = open (m->raw, O_RDONLY | O_CLOEXEC);
        test_assert_range_equal (file, raw_fd, 3 * MiB + 100, 3 * MiB - 200);
        test_assert_range_equal (file, raw_fd, 2 * MiB, 5 * MiB);
        close (raw_fd);
}

typedef struct {
        VhdxFile *file;
        const char *raw;
        guint seed;
} ThreadData;

static gpointer
reader_thread (gpointer data)
{
        ThreadData *td = data;
        const VhdxInfo *info = vhdx_file_get_info (td->file);
        g_autoptr (GRand) rand = g_rand_new_with_seed (td->seed);
        int raw_fd = open (td->raw, O_RDONLY | O_CLOEXEC);

        for (guint i = 0; i < 300; i++) {
                guint64 len = g_rand_int_range (rand, 1, 300000);
                guint64 off = (guint64) (g_rand_double (rand) * (info->virtual_size - len));
                test_assert_range_equal (td->file, raw_fd, off, len);
        }
        close (raw_fd);
        return NULL;
}

static void
test_threads (void)
{
        /* 5 GiB dynamic: the BAT pages load lazily while threads race. */
        const Made *m = make_fixture (6);
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        GThread *threads[4];
        ThreadData td[4];

        if (m == NULL) {
                g_test_skip ("qemu-img and qemu-io are needed");
                return;
        }
        file = test_open_path (m->vhdx, &error);
        g_assert_no_error (error);
        for (guint i = 0; i < G_N_ELEMENTS (threads); i++) {
                td[i] = (ThreadData){ file, m->raw, i + 1 };
                threads[i] = g_thread_new ("reader", reader_thread, &td[i]);
        }
        for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
                g_thread_join (threads[i]);
}

static void
test_out_of_range (void)
{
        const Made *m = make_fixture (0);
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        guint8 buf[16];

        if (m == NULL) {
                g_test_skip ("qemu-img and qemu-io are needed");
                return;
        }
        file = test_open_path (m->vhdx, &error);
        g_assert_no_error (error);
        g_assert_false (vhdx_file_read (file, fixtures[0].virtual_size - 8, buf, 16, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);
        g_assert_false (vhdx_file_read (file, G_MAXUINT64 - 4, buf, 16, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);
        test_assert_ok (vhdx_file_read (file, fixtures[0].virtual_size - 16, buf, 16, &error),
                        error);
        test_assert_ok (vhdx_file_read (file, fixtures[0].virtual_size, buf, 0, &error), error);
}

int
main (int argc, char **argv)
{
        int ret;

        g_test_init (&argc, &argv, NULL);
        tmpdir = test_tmpdir_new ();
        for (guint i = 0; i < G_N_ELEMENTS (fixtures); i++) {
                g_autofree char *read_path = g_strdup_printf ("/reader/read/%s", fixtures[i].name);
                g_autofree char *map_path = g_strdup_printf ("/reader/map/%s", fixtures[i].name);
                g_test_add_data_func (read_path, GUINT_TO_POINTER (i), test_fixture);
                g_test_add_data_func (map_path, GUINT_TO_POINTER (i), test_map);
        }
        g_test_add_func ("/reader/one-pread-per-run", test_one_pread_per_run);
        g_test_add_func ("/reader/threads", test_threads);
        g_test_add_func ("/reader/out-of-range", test_out_of_range);
        ret = g_test_run ();
        for (guint i = 0; i < G_N_ELEMENTS (made); i++) {
                g_free (made[i].vhdx);
                g_free (made[i].raw);
        }
        test_tmpdir_free (tmpdir);
        return ret;
}
