/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Differencing chains made by the project's writer.  The test keeps its own
 * model of what each level wrote (sector runs of a seeded pattern), computes
 * the expected disk and the owner of every sector from it, and compares the
 * engine's reads and map with that.  The tests under /chain/libvhdi/ compare
 * libvhdi's reads of the same chains with the model, and skip when libvhdi
 * is not available.  BAT entries are found by hand: the BAT from the region
 * table, entry b + floor (b / chunk ratio) for payload block b and
 * chunk * (chunk ratio + 1) + chunk ratio for a chunk's sector bitmap.
 */
#include "config.h"

#include "test-util.h"
#include "vhdx-gen.h"
#include "vhdx-create.h"

#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <unistd.h>

#ifdef HAVE_LIBVHDI
#include <libvhdi.h>
#endif

#define MiB (G_GUINT64_CONSTANT (1) << 20)
#define GiB (G_GUINT64_CONSTANT (1) << 30)

typedef struct {
        guint64 offset;
        guint64 length;
} Run;

typedef struct {
        char *path;
        VhdxGuid data_write_guid;
        GArray *runs;          /* Run, in write order */
        GHashTable *zeroed;    /* blocks set to ZERO/UNMAPPED/UNDEFINED: block -> state */
        GHashTable *allocated; /* base only: blocks the writer allocated */
} Level;

typedef struct {
        char *dir;
        guint64 virtual_size;
        guint32 block_size;
        guint32 sector_size;
        GPtrArray *levels; /* Level, base first */
} Chain;

static guint32
level_seed (guint level)
{
        return 1000 + level;
}

static void
level_free (gpointer data)
{
        Level *l = data;

        g_free (l->path);
        g_array_unref (l->runs);
        g_hash_table_unref (l->zeroed);
        g_hash_table_unref (l->allocated);
        g_free (l);
}

static void
chain_free (Chain *c)
{
        test_tmpdir_free (c->dir);
        g_ptr_array_unref (c->levels);
        g_free (c);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Chain, chain_free)

static Chain *
chain_new (guint64 virtual_size, guint32 block_size, guint32 sector_size)
{
        Chain *c = g_new0 (Chain, 1);

        c->dir = test_tmpdir_new ();
        c->virtual_size = virtual_size;
        c->block_size = block_size;
        c->sector_size = sector_size;
        c->levels = g_ptr_array_new_with_free_func (level_free);
        return c;
}

static Level *
top (Chain *c)
{
        return g_ptr_array_index (c->levels, c->levels->len - 1);
}

/* The model, over [offset, offset + count): for each byte, its expected
 * value; for each sector, which level stores it (OWNER_NONE: nobody, a hole;
 * OWNER_ZERO + state: a block zeroed in that state hides the levels below).
 * Levels are applied base first, so the topmost level that stores or zeroes
 * a byte decides it. */
#define OWNER_NONE (-1)
#define OWNER_ZERO (-100)

static void
model_range (Chain *c, guint64 offset, gsize count, guint8 *bytes, int *owners)
{
        guint32 ss = c->sector_size;
        guint64 end = offset + count;
        guint64 first_sector = offset / ss;

        if (bytes != NULL)
                memset (bytes, 0, count);
        if (owners != NULL) {
                for (guint64 s = first_sector; s * ss < end; s++)
                        owners[s - first_sector] = OWNER_NONE;
        }
        for (guint level = 0; level < c->levels->len; level++) {
                Level *l = g_ptr_array_index (c->levels, level);
                GHashTableIter iter;
                gpointer key, value;

                /* The base stores whole blocks (zeros where nothing was written). */
                g_hash_table_iter_init (&iter, level == 0 ? l->allocated : l->zeroed);
                while (g_hash_table_iter_next (&iter, &key, &value)) {
                        guint64 b = *(guint64 *) key;
                        guint64 lo = MAX (offset, b * c->block_size);
                        guint64 hi = MIN (end, (b + 1) * c->block_size);
                        if (lo >= hi)
                                continue;
                        if (bytes != NULL)
                                memset (bytes + (lo - offset), 0, hi - lo);
                        if (owners != NULL) {
                                for (guint64 s = lo / ss; s * ss < hi; s++)
                                        owners[s - first_sector] =
                                                level == 0 ? 0
                                                           : OWNER_ZERO +
                                                                     (int) GPOINTER_TO_UINT (value);
                        }
                }
                for (guint i = 0; i < l->runs->len; i++) {
                        const Run *r = &g_array_index (l->runs, Run, i);
                        guint64 lo = MAX (offset, r->offset);
                        guint64 hi = MIN (end, r->offset + r->length);
                        if (lo >= hi)
                                continue;
                        if (bytes != NULL)
                                vhdx_gen_pattern_fill_buffer (bytes + (lo - offset), lo, hi - lo,
                                                              level_seed (level));
                        if (owners != NULL) {
                                for (guint64 s = lo / ss; s * ss < hi; s++)
                                        owners[s - first_sector] = (int) level;
                        }
                }
        }
}

static void
model_fill (Chain *c, guint64 offset, guint8 *buf, gsize count)
{
        model_range (c, offset, count, buf, NULL);
}

static VhdxCreator *
writer_for (const char *path, VhdxCreateParams *params, VhdxIo **io)
{
        g_autoptr (GError) error = NULL;
        int fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        VhdxCreator *w;

        g_assert_cmpint (fd, >=, 0);
        *io = vhdx_io_new_fd (fd, TRUE);
        w = vhdx_creator_new (*io, params, &error);
        g_assert_no_error (error);
        return w;
}

/* Write @count random sector runs (and @full_blocks whole blocks) of level
 * @level's pattern through @w, recording them. */
static void
write_runs (Chain *c,
            VhdxCreator *w,
            Level *l,
            guint level,
            GRand *rand,
            guint count,
            guint full_blocks)
{
        g_autoptr (GError) error = NULL;
        guint64 sectors = c->virtual_size / c->sector_size;

        for (guint i = 0; i < count + full_blocks; i++) {
                Run r;
                g_autofree guint8 *buf = NULL;

                if (i < count) {
                        guint64 n = g_rand_int_range (rand, 1, 64);
                        guint64 start = (guint64) (g_rand_double (rand) * (sectors - n));
                        r.offset = start * c->sector_size;
                        r.length = n * c->sector_size;
                } else {
                        guint64 blocks = (c->virtual_size + c->block_size - 1) / c->block_size;
                        guint64 b = (guint64) (g_rand_double (rand) * blocks);
                        r.offset = b * c->block_size;
                        r.length = MIN ((guint64) c->block_size, c->virtual_size - r.offset);
                }
                buf = g_malloc (r.length);
                vhdx_gen_pattern_fill_buffer (buf, r.offset, r.length, level_seed (level));
                test_assert_ok (vhdx_creator_write (w, r.offset, buf, r.length, &error), error);
                g_array_append_val (l->runs, r);
                if (l->allocated != NULL) {
                        for (guint64 b = r.offset / c->block_size;
                             b * c->block_size < r.offset + r.length; b++)
                                g_hash_table_add (l->allocated, g_memdup2 (&b, sizeof b));
                }
        }
}

static Level *
level_new (Chain *c, const char *name)
{
        Level *l = g_new0 (Level, 1);

        l->path = g_build_filename (c->dir, name, NULL);
        l->runs = g_array_new (FALSE, FALSE, sizeof (Run));
        l->zeroed = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
        l->allocated = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
        return l;
}

static void
add_base (Chain *c, GRand *rand, guint runs, guint full_blocks)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxCreator) w = NULL;
        Level *l = level_new (c, "base.vhdx");
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                .virtual_size = c->virtual_size,
                .block_size = c->block_size,
                .logical_sector_size = c->sector_size,
        };
        g_autoptr (VhdxIo) io = NULL;

        vhdx_guid_new_random (&params.data_write_guid);
        l->data_write_guid = params.data_write_guid;
        w = writer_for (l->path, &params, &io);
        write_runs (c, w, l, 0, rand, runs, full_blocks);
        test_assert_ok (vhdx_creator_finish (w, &error), error);
        g_ptr_array_add (c->levels, l);
}

static void
add_child (Chain *c, GRand *rand, guint runs, guint full_blocks)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxCreator) w = NULL;
        guint level = c->levels->len;
        g_autofree char *name = g_strdup_printf ("child-%u.vhdx", level);
        Level *parent = top (c);
        g_autofree char *parent_name = g_path_get_basename (parent->path);
        Level *l = level_new (c, name);
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DIFFERENCING,
                .virtual_size = c->virtual_size,
                .block_size = c->block_size,
                .logical_sector_size = c->sector_size,
                .parent_data_write_guid = parent->data_write_guid,
                .parent_relative_path = parent_name,
                .parent_absolute_path = parent->path,
        };
        g_autoptr (VhdxIo) io = NULL;

        g_hash_table_remove_all (l->allocated);
        vhdx_guid_new_random (&params.data_write_guid);
        l->data_write_guid = params.data_write_guid;
        w = writer_for (l->path, &params, &io);
        write_runs (c, w, l, level, rand, runs, full_blocks);
        test_assert_ok (vhdx_creator_finish (w, &error), error);
        g_ptr_array_add (c->levels, l);
}

static VhdxFile *
open_top (Chain *c, GError **error)
{
        VhdxOpenOptions options = { .path = top (c)->path };
        VhdxIo *io = vhdx_io_open_path (top (c)->path, FALSE, error);

        if (io == NULL)
                return NULL;
        return vhdx_file_open_full (io, VHDX_OPEN_FLAGS_NONE, &options, error);
}

static void
assert_reads (Chain *c, VhdxFile *file, guint64 offset, gsize count)
{
        g_autoptr (GError) error = NULL;
        g_autofree guint8 *got = g_malloc (count);
        g_autofree guint8 *want = g_malloc (count);

        test_assert_ok (vhdx_file_read (file, offset, got, count, &error), error);
        model_fill (c, offset, want, count);
        if (memcmp (got, want, count) != 0) {
                for (gsize i = 0; i < count; i++)
                        if (got[i] != want[i])
                                g_error ("read %" G_GUINT64_FORMAT "+%" G_GSIZE_FORMAT
                                         ": byte %" G_GUINT64_FORMAT " is 0x%02x, expected 0x%02x",
                                         offset, count, offset + i, got[i], want[i]);
        }
}

/* Every extent of the map agrees with the model, sector by sector. */
static void
assert_map (Chain *c, VhdxFile *file, guint64 limit)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GArray) extents = vhdx_file_map (file, 0, limit, &error);
        g_autofree int *owners = g_new (int, limit / c->sector_size + 1);
        guint64 expect = 0;
        guint top_level = c->levels->len - 1;

        g_assert_no_error (error);
        model_range (c, 0, limit, NULL, owners);
        for (guint i = 0; i < extents->len; i++) {
                const VhdxMapExtent *e = &g_array_index (extents, VhdxMapExtent, i);

                g_assert_cmpuint (e->offset, ==, expect);
                expect += e->length;
                for (guint64 x = e->offset; x < e->offset + e->length; x += c->sector_size) {
                        int owner = owners[x / c->sector_size];
                        if (owner >= 0) {
                                g_assert_cmpint (e->kind, ==, VHDX_EXTENT_DATA);
                                g_assert_cmpuint (e->depth, ==, top_level - (guint) owner);
                        } else {
                                g_assert_cmpint (e->kind, ==, VHDX_EXTENT_ZERO);
                                g_assert_cmpint (e->present, ==,
                                                 owner == OWNER_ZERO + VHDX_PAYLOAD_ZERO);
                        }
                }
        }
        g_assert_cmpuint (expect, ==, limit);
}

#ifdef HAVE_LIBVHDI
/* Read @ranges of the chain with libvhdi, the parents given explicitly, and
 * compare with the model. */
static void
assert_libvhdi_reads (Chain *c, const Run *ranges, guint n_ranges)
{
        libvhdi_file_t **files = g_new0 (libvhdi_file_t *, c->levels->len);
        libvhdi_error_t *error = NULL;

        for (guint i = 0; i < c->levels->len; i++) {
                Level *l = g_ptr_array_index (c->levels, i);
                g_assert_cmpint (libvhdi_file_initialize (&files[i], &error), ==, 1);
                g_assert_cmpint (libvhdi_file_open (files[i], l->path, LIBVHDI_OPEN_READ, &error),
                                 ==, 1);
                if (i > 0)
                        g_assert_cmpint (libvhdi_file_set_parent_file (files[i], files[i - 1],
                                                                       &error),
                                         ==, 1);
        }
        for (guint r = 0; r < n_ranges; r++) {
                gsize count = (gsize) ranges[r].length;
                g_autofree guint8 *theirs = g_malloc (count);
                g_autofree guint8 *want = g_malloc (count);

                g_assert_cmpint (libvhdi_file_read_buffer_at_offset (files[c->levels->len - 1],
                                                                     theirs, count,
                                                                     (off64_t) ranges[r].offset,
                                                                     &error),
                                 ==, (ssize_t) count);
                model_fill (c, ranges[r].offset, want, count);
                test_assert_bytes_equal (theirs, want, count, ranges[r].offset,
                                         "libvhdi's read of the chain");
        }
        for (guint i = c->levels->len; i > 0; i--) {
                libvhdi_file_close (files[i - 1], &error);
                libvhdi_file_free (&files[i - 1], &error);
        }
        g_free (files);
}
#endif

/* libvhdi reads @ranges of the chain as the model says; without libvhdi the
 * test says so by skipping. */
static void
compare_with_libvhdi (Chain *c, const Run *ranges, guint n_ranges)
{
#ifdef HAVE_LIBVHDI
        assert_libvhdi_reads (c, ranges, n_ranges);
#else
        g_test_skip ("libvhdi is not available: the chain was not compared with libvhdi "
                     "(the engine is still compared with the model)");
#endif
}

/* Ranges for libvhdi: around every run of every level, limited to 2 MiB. */
static GArray *
ranges_around_runs (Chain *c)
{
        GArray *ranges = g_array_new (FALSE, FALSE, sizeof (Run));

        for (guint level = 0; level < c->levels->len; level++) {
                Level *l = g_ptr_array_index (c->levels, level);
                for (guint i = 0; i < l->runs->len; i++) {
                        const Run *r = &g_array_index (l->runs, Run, i);
                        guint64 start = r->offset > 777 ? r->offset - 777 : 0;
                        guint64 end =
                                MIN (c->virtual_size, r->offset + MIN (r->length, 2 * MiB) + 777);
                        Run range = { start, end - start };
                        g_array_append_val (ranges, range);
                }
        }
        return ranges;
}

static void
check_chain (Chain *c)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = open_top (c, &error);
        g_autoptr (GRand) rand = g_rand_new_with_seed (7);

        g_assert_no_error (error);
        g_assert_cmpuint (vhdx_file_get_chain_depth (file), ==, c->levels->len - 1);
        if (c->virtual_size <= 64 * MiB) {
                assert_reads (c, file, 0, c->virtual_size);
                assert_map (c, file, c->virtual_size);
        }
        for (guint i = 0; i < 100; i++) {
                gsize n = g_rand_int_range (rand, 1, MIN (3 * c->block_size / 2, 3 * MiB));
                guint64 off = (guint64) (g_rand_double (rand) * (c->virtual_size - n));
                assert_reads (c, file, off, n);
        }
        /* Around every run of every level. */
        for (guint level = 0; level < c->levels->len; level++) {
                Level *l = g_ptr_array_index (c->levels, level);
                for (guint i = 0; i < l->runs->len; i++) {
                        const Run *r = &g_array_index (l->runs, Run, i);
                        guint64 start = r->offset > 777 ? r->offset - 777 : 0;
                        guint64 end =
                                MIN (c->virtual_size, r->offset + MIN (r->length, 2 * MiB) + 777);
                        assert_reads (c, file, start, end - start);
                }
        }
}

typedef struct {
        guint depth;
        gboolean libvhdi; /* compare libvhdi with the model, not the engine */
} DepthCase;

static const DepthCase depth_cases[] = {
        { 1, FALSE }, { 2, FALSE }, { 3, FALSE }, { 16, FALSE },
        { 1, TRUE },  { 2, TRUE },  { 3, TRUE },  { 16, TRUE },
};

static void
test_depth (gconstpointer data)
{
        const DepthCase *dc = data;
        /* Not a multiple of the block size. */
        g_autoptr (Chain) c = chain_new (20 * MiB + 3 * 512, MiB, 512);
        g_autoptr (GRand) rand = g_rand_new_with_seed (dc->depth);

        add_base (c, rand, 20, 2);
        /* Every child writes runs of sectors: chunk 0 (the only one) has a
         * sector bitmap in every child, which libvhdi needs. */
        for (guint i = 0; i < dc->depth; i++)
                add_child (c, rand, 30, i % 3 == 0 ? 1 : 0);
        if (dc->libvhdi) {
                Run all = { 0, c->virtual_size };
                compare_with_libvhdi (c, &all, 1);
        } else {
                check_chain (c);
        }
}

/* The chunk ratio, from MS-VHDX: 2^23 * logical sector size / block size. */
static guint64
chain_chunk_ratio (Chain *c)
{
        return (G_GUINT64_CONSTANT (1) << 23) * c->sector_size / c->block_size;
}

/* The layout of the top of @c, by hand: the BAT offset from its region
 * table; its chunk ratio must be the formula's. */
static void
top_layout (Chain *c, TestSpecLayout *layout)
{
        test_spec_read_layout (top (c)->path, layout);
        g_assert_cmpuint (layout->block_size, ==, c->block_size);
        g_assert_cmpuint (layout->logical_sector_size, ==, c->sector_size);
        g_assert_cmpuint (layout->chunk_ratio, ==, chain_chunk_ratio (c));
}

/* A base and a child with 4 KiB sectors; blocks the child does not store put
 * in each non-present state: they read as zeros, not as the parent. */
static Chain *
chain_4k_new (void)
{
        Chain *c = chain_new (40 * MiB, 2 * MiB, 4096);
        g_autoptr (GRand) rand = g_rand_new_with_seed (99);
        static const guint states[] = { VHDX_PAYLOAD_ZERO, VHDX_PAYLOAD_UNMAPPED,
                                        VHDX_PAYLOAD_UNDEFINED };
        guint64 cr = chain_chunk_ratio (c);
        guint64 blocks = (c->virtual_size + c->block_size - 1) / c->block_size;
        TestSpecLayout layout;
        guint placed = 0;
        int fd;

        add_base (c, rand, 40, 3);
        add_child (c, rand, 40, 1);
        top_layout (c, &layout);
        fd = open (top (c)->path, O_RDWR | O_CLOEXEC);
        g_assert_cmpint (fd, >=, 0);
        for (guint64 b = 0; b < blocks && placed < G_N_ELEMENTS (states); b++) {
                guint64 index = b + b / cr;
                guint8 entry[8];
                g_assert_cmpint (pread (fd, entry, 8, layout.bat_offset + index * 8), ==, 8);
                if (vhdx_get_le64 (entry) != 0)
                        continue;
                vhdx_put_le64 (entry, states[placed]);
                g_assert_cmpint (pwrite (fd, entry, 8, layout.bat_offset + index * 8), ==, 8);
                g_hash_table_insert (top (c)->zeroed, g_memdup2 (&b, sizeof b),
                                     GUINT_TO_POINTER (states[placed]));
                placed++;
        }
        g_assert_cmpuint (placed, ==, G_N_ELEMENTS (states));
        close (fd);
        return c;
}

static void
test_4k_sectors (gconstpointer data)
{
        gboolean libvhdi = GPOINTER_TO_INT (data);
        g_autoptr (Chain) c = chain_4k_new ();
        g_autoptr (GError) error = NULL;

        if (libvhdi) {
                /* libvhdi 20210425 reads the parent for a block of a
                 * differencing image in the ZERO state (and in UNMAPPED, whose
                 * contents MS-VHDX leaves undefined, as in UNDEFINED): it is
                 * asked for every other block. */
                g_autoptr (GArray) ranges = g_array_new (FALSE, FALSE, sizeof (Run));
                for (guint64 b = 0; b * c->block_size < c->virtual_size; b++) {
                        Run r = { b * c->block_size,
                                  MIN (c->block_size, c->virtual_size - b * c->block_size) };
                        if (!g_hash_table_contains (top (c)->zeroed, &b))
                                g_array_append_val (ranges, r);
                }
                g_assert_cmpuint (ranges->len, ==, c->virtual_size / c->block_size - 3);
                compare_with_libvhdi (c, (const Run *) ranges->data, ranges->len);
        } else {
                g_autoptr (VhdxFile) file = open_top (c, &error);
                g_assert_no_error (error);
                assert_reads (c, file, 0, c->virtual_size);
                assert_map (c, file, c->virtual_size);
        }
}

/* 9 GiB in 256 MiB blocks: three chunks of 16 blocks.  Chunk 0 gets partial
 * blocks (a bitmap block), chunk 1 only whole blocks (no bitmap block),
 * chunk 2 nothing. */
static Chain *
chain_many_chunks_new (void)
{
        Chain *c = chain_new (9 * GiB - 512, 256 * MiB, 512);
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxCreator) w = NULL;
        g_autoptr (GRand) rand = g_rand_new_with_seed (5);
        g_autoptr (VhdxIo) io = NULL;
        g_autofree char *parent_name = NULL;
        static const Run runs[] = {
                { 100 * 512, 5 * 512 },         /* chunk 0: partial */
                { 3 * 256 * MiB + 4096, 8192 }, /* chunk 0: partial */
                { 17 * 256 * MiB, 256 * MiB },  /* chunk 1: whole */
        };
        Level *base, *child;

        add_base (c, rand, 10, 0);
        base = top (c);
        parent_name = g_path_get_basename (base->path);
        {
                VhdxCreateParams params = {
                        .disk_type = VHDX_DISK_TYPE_DIFFERENCING,
                        .virtual_size = c->virtual_size,
                        .block_size = c->block_size,
                        .logical_sector_size = c->sector_size,
                        .parent_data_write_guid = base->data_write_guid,
                        .parent_relative_path = parent_name,
                };
                child = level_new (c, "child.vhdx");
                w = writer_for (child->path, &params, &io);
        }
        for (guint i = 0; i < G_N_ELEMENTS (runs); i++) {
                g_autofree guint8 *buf = g_malloc (runs[i].length);
                vhdx_gen_pattern_fill_buffer (buf, runs[i].offset, runs[i].length, level_seed (1));
                test_assert_ok (vhdx_creator_write (w, runs[i].offset, buf, runs[i].length, &error),
                                error);
                g_array_append_val (child->runs, runs[i]);
        }
        test_assert_ok (vhdx_creator_finish (w, &error), error);
        g_ptr_array_add (c->levels, child);
        return c;
}

static void
test_many_chunks (gconstpointer data)
{
        gboolean libvhdi = GPOINTER_TO_INT (data);
        g_autoptr (Chain) c = chain_many_chunks_new ();
        g_autoptr (GError) error = NULL;
        guint64 cr = chain_chunk_ratio (c);
        Level *child = top (c);
        TestSpecLayout layout;

        g_assert_cmpuint (cr, ==, 16);
        if (libvhdi) {
                g_autoptr (GArray) ranges = ranges_around_runs (c);
                g_autoptr (GRand) rand = g_rand_new_with_seed (17);
                guint64 blocks = (c->virtual_size + c->block_size - 1) / c->block_size;

                /* The first and last 64 KiB of every block, in the three
                 * chunks (with a bitmap block, whole blocks only, nothing),
                 * and random samples of the whole disk. */
                for (guint64 b = 0; b < blocks; b++) {
                        guint64 end = MIN ((b + 1) * c->block_size, c->virtual_size);
                        Run head = { b * c->block_size, 65536 };
                        Run tail = { end - 65536, 65536 };
                        g_array_append_val (ranges, head);
                        g_array_append_val (ranges, tail);
                }
                for (guint i = 0; i < 40; i++) {
                        Run r;
                        r.length = g_rand_int_range (rand, 1, 3 * MiB);
                        r.offset = (guint64) (g_rand_double (rand) * (c->virtual_size - r.length));
                        g_array_append_val (ranges, r);
                }
                g_test_message ("%u ranges compared with libvhdi", ranges->len);
                compare_with_libvhdi (c, (const Run *) ranges->data, ranges->len);
                return;
        }
        {
                g_autoptr (VhdxFile) file = open_top (c, &error);
                g_assert_no_error (error);
                g_assert_cmpuint (vhdx_file_get_info (file)->geometry.chunk_ratio, ==, cr);
                check_chain (c);
                assert_map (c, file, 512 * MiB);
        }
        /* Only chunk 0 has a bitmap block: the entries at chunk * (cr + 1) + cr
         * of the BAT found from the region table. */
        top_layout (c, &layout);
        {
                int rfd = open (child->path, O_RDONLY | O_CLOEXEC);
                guint8 entry[8];
                for (guint64 chunk = 0; chunk < 3; chunk++) {
                        guint64 index = chunk * (cr + 1) + cr;
                        g_assert_cmpint (pread (rfd, entry, 8, layout.bat_offset + index * 8), ==,
                                         8);
                        g_assert_cmpuint (vhdx_get_le64 (entry) & 7, ==,
                                          chunk == 0 ? VHDX_SB_PRESENT : VHDX_SB_NOT_PRESENT);
                }
                close (rfd);
        }
        /* A partially present block whose chunk lost its bitmap is corrupt. */
        {
                int rfd = open (child->path, O_RDWR | O_CLOEXEC);
                guint8 entry[8];
                memset (entry, 0, 8);
                g_assert_cmpint (pwrite (rfd, entry, 8, layout.bat_offset + cr * 8), ==, 8);
                close (rfd);
        }
        {
                g_autoptr (VhdxFile) file = open_top (c, &error);
                guint8 buf[512];
                g_assert_no_error (error);
                g_assert_false (vhdx_file_read (file, 100 * 512, buf, 512, &error));
                g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
                g_assert_nonnull (strstr (error->message, "sector bitmap"));
        }
}

/* Fixed and dynamic images from the writer, read by libvhdi (kept below one
 * chunk: libvhdi skips the BAT interleaving of fixed images). */
static void
test_writer_libvhdi (void)
{
        static const VhdxDiskType types[] = { VHDX_DISK_TYPE_FIXED, VHDX_DISK_TYPE_DYNAMIC };

        for (guint t = 0; t < G_N_ELEMENTS (types); t++) {
                g_autoptr (Chain) c = chain_new (30 * MiB + 512, 2 * MiB, 512);
                g_autoptr (GRand) rand = g_rand_new_with_seed (40 + t);
                g_autoptr (GError) error = NULL;
                g_autoptr (VhdxCreator) w = NULL;
                g_autoptr (VhdxIo) io = NULL;
                Level *l = level_new (c, "image.vhdx");
                VhdxCreateParams params = {
                        .disk_type = types[t],
                        .virtual_size = c->virtual_size,
                        .block_size = c->block_size,
                };
                Run all = { 0, c->virtual_size };

                w = writer_for (l->path, &params, &io);
                write_runs (c, w, l, 0, rand, 25, 1);
                test_assert_ok (vhdx_creator_finish (w, &error), error);
                if (types[t] == VHDX_DISK_TYPE_FIXED) {
                        /* A fixed image stores every block. */
                        for (guint64 b = 0; b * c->block_size < c->virtual_size; b++)
                                g_hash_table_add (l->allocated, g_memdup2 (&b, sizeof b));
                }
                g_ptr_array_add (c->levels, l);
                check_chain (c);
                compare_with_libvhdi (c, &all, 1);
        }
}

/* ---- Errors ---- */

static Chain *
two_levels (void)
{
        Chain *c = chain_new (8 * MiB, MiB, 512);
        g_autoptr (GRand) rand = g_rand_new_with_seed (3);

        add_base (c, rand, 5, 0);
        add_child (c, rand, 5, 0);
        return c;
}

static void
test_parent_missing (void)
{
        g_autoptr (Chain) c = two_levels ();
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        Level *base = g_ptr_array_index (c->levels, 0);

        g_assert_cmpint (g_unlink (base->path), ==, 0);
        file = open_top (c, &error);
        g_assert_null (file);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND);
        /* Every path tried is listed. */
        g_assert_nonnull (strstr (error->message, base->path));
}

static void
test_parent_explicit (void)
{
        g_autoptr (Chain) c = two_levels ();
        g_autoptr (GError) error = NULL;
        Level *base = g_ptr_array_index (c->levels, 0);
        g_autofree char *moved = g_build_filename (c->dir, "elsewhere.vhdx", NULL);
        VhdxOpenOptions options = { .path = top (c)->path, .parent_path = moved };
        VhdxFile *file;

        g_assert_cmpint (g_rename (base->path, moved), ==, 0);
        file = vhdx_file_open_full (vhdx_io_open_path (top (c)->path, FALSE, NULL),
                                    VHDX_OPEN_FLAGS_NONE, &options, &error);
        g_assert_no_error (error);
        g_assert_cmpstr (vhdx_file_get_parent_path (file), ==, moved);
        vhdx_file_free (file);
}

static void
test_parent_mismatch (void)
{
        g_autoptr (Chain) c = two_levels ();
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GRand) rand = g_rand_new_with_seed (11);
        Level *base = g_ptr_array_index (c->levels, 0);
        g_autofree char *old = g_strconcat (base->path, ".old", NULL);
        char guid[VHDX_GUID_STRING_LENGTH + 1];

        /* Another image with the same name: its DataWriteGuid differs. */
        g_assert_cmpint (g_rename (base->path, old), ==, 0);
        {
                g_autoptr (Chain) other = chain_new (8 * MiB, MiB, 512);
                add_base (other, rand, 1, 0);
                g_assert_cmpint (g_rename (top (other)->path, base->path), ==, 0);
        }
        file = open_top (c, &error);
        g_assert_null (file);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH);
        vhdx_guid_to_string_buf (&base->data_write_guid, guid);
        {
                g_autofree char *message = g_ascii_strdown (error->message, -1);
                g_assert_nonnull (strstr (message, guid));
        }
        g_clear_error (&error);
        /* Unless the caller allows it. */
        {
                VhdxOpenOptions options = { .path = top (c)->path };
                GPtrArray *problems;

                file = vhdx_file_open_full (vhdx_io_open_path (top (c)->path, FALSE, NULL),
                                            VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH, &options,
                                            &error);
                g_assert_no_error (error);
                g_assert_nonnull (vhdx_file_get_parent (file));
                /* With a warning that names both GUIDs. */
                problems = vhdx_file_get_open_problems (file);
                g_assert_cmpuint (problems->len, ==, 1);
                {
                        const VhdxProblem *p = g_ptr_array_index (problems, 0);
                        g_autofree char *message = g_ascii_strdown (p->message, -1);

                        g_assert_cmpint (p->severity, ==, VHDX_SEVERITY_WARNING);
                        g_assert_nonnull (strstr (message, guid));
                }
        }
}

static void
test_sector_size_mismatch (void)
{
        g_autoptr (Chain) c = chain_new (8 * MiB, MiB, 4096);
        g_autoptr (GRand) rand = g_rand_new_with_seed (12);
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;

        add_base (c, rand, 2, 0);
        c->sector_size = 512; /* the child has 512-byte sectors */
        add_child (c, rand, 2, 0);
        file = open_top (c, &error);
        g_assert_null (file);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH);
        g_assert_nonnull (strstr (error->message, "sector"));
}

static void
test_depth_limit (void)
{
        g_autoptr (Chain) c = chain_new (4 * MiB, MiB, 512);
        g_autoptr (GRand) rand = g_rand_new_with_seed (13);
        g_autoptr (GError) error = NULL;

        add_base (c, rand, 1, 0);
        for (guint i = 0; i < VHDX_MAX_CHAIN_DEPTH; i++)
                add_child (c, rand, 1, 0);
        /* The longest chain allowed opens and reads... */
        {
                g_autoptr (VhdxFile) file = open_top (c, &error);
                g_assert_no_error (error);
                g_assert_cmpuint (vhdx_file_get_chain_depth (file), ==, VHDX_MAX_CHAIN_DEPTH);
                assert_reads (c, file, 0, c->virtual_size);
        }
        /* ...one more is refused. */
        add_child (c, rand, 1, 0);
        {
                g_autoptr (VhdxFile) file = open_top (c, &error);
                g_assert_null (file);
                g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
                g_assert_nonnull (strstr (error->message, "longer than"));
        }
}

static void
test_loop (void)
{
        g_autoptr (Chain) c = chain_new (8 * MiB, MiB, 512);
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxCreator) w = NULL;
        g_autoptr (VhdxFile) file = NULL;
        Level *l = level_new (c, "self.vhdx");
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DIFFERENCING,
                .virtual_size = c->virtual_size,
                .block_size = c->block_size,
                .parent_relative_path = "self.vhdx",
        };
        g_autoptr (VhdxIo) io = NULL;

        /* An image that names itself as its parent. */
        vhdx_guid_new_random (&params.data_write_guid);
        params.parent_data_write_guid = params.data_write_guid;
        w = writer_for (l->path, &params, &io);
        test_assert_ok (vhdx_creator_finish (w, &error), error);
        g_ptr_array_add (c->levels, l);
        file = open_top (c, &error);
        g_assert_null (file);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_assert_nonnull (strstr (error->message, "loop"));
}

/* Damage one field of the child's parent locator and expect @code. */
static void
damage_locator (guint64 field, gsize size, guint64 value, int code, const char *word)
{
        g_autoptr (Chain) c = two_levels ();
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        guint64 locator = 0;
        int fd;

        /* The writer puts the locator item 40 bytes into the item area, which
         * starts 64 KiB into the metadata region: find it from the table. */
        fd = open (top (c)->path, O_RDWR | O_CLOEXEC);
        {
                guint8 table[VHDX_METADATA_TABLE_SIZE];
                guint64 metadata = 0;
                guint8 region[VHDX_REGION_TABLE_SIZE];
                g_assert_cmpint (pread (fd, region, sizeof region, VHDX_REGION_TABLE1_OFFSET), ==,
                                 sizeof region);
                for (guint i = 0; i < vhdx_get_le32 (region + 8); i++) {
                        const guint8 *e = region + 16 + 32 * i;
                        if (memcmp (e, vhdx_guid_region_metadata.bytes, 16) == 0)
                                metadata = vhdx_get_le64 (e + 16);
                }
                g_assert_cmpuint (metadata, !=, 0);
                g_assert_cmpint (pread (fd, table, sizeof table, metadata), ==, sizeof table);
                for (guint i = 0; i < vhdx_get_le16 (table + 10); i++) {
                        const guint8 *e = table + 32 + 32 * i;
                        if (memcmp (e, vhdx_guid_item_parent_locator.bytes, 16) == 0)
                                locator = metadata + vhdx_get_le32 (e + 16);
                }
                g_assert_cmpuint (locator, !=, 0);
        }
        {
                guint8 buf[8];
                vhdx_put_le64 (buf, value);
                g_assert_cmpint (pwrite (fd, buf, size, locator + field), ==, (ssize_t) size);
        }
        close (fd);
        file = open_top (c, &error);
        g_assert_null (file);
        g_assert_error (error, VHDX_ERROR, code);
        g_assert_nonnull (strstr (error->message, word));
}

static void
test_locator_damage (void)
{
        /* Locator type. */
        damage_locator (0, 1, 0x11, VHDX_ERROR_NOT_SUPPORTED, "locator type");
        /* Key/value count past the item. */
        damage_locator (18, 2, 0x7fff, VHDX_ERROR_INVALID, "entries");
        /* First entry: key offset past the item, odd key length, zero value
         * length, value offset past the item. */
        damage_locator (20, 4, 0x100000, VHDX_ERROR_INVALID, "key");
        damage_locator (28, 2, 3, VHDX_ERROR_INVALID, "key");
        damage_locator (30, 2, 0, VHDX_ERROR_INVALID, "empty");
        damage_locator (24, 4, 0xfffffff0, VHDX_ERROR_INVALID, "value");
        /* The first key "parent_linkage" renamed: the required key is gone. */
        damage_locator (20 + 3 * 12, 2, 'q', VHDX_ERROR_INVALID, "parent_linkage");
        /* The linkage value is no GUID. */
        damage_locator (20 + 3 * 12 + 28 + 2, 2, 'x', VHDX_ERROR_INVALID, "GUID");
        /* Invalid UTF-16 (a lone surrogate) in the first key. */
        damage_locator (20 + 3 * 12, 2, 0xD800, VHDX_ERROR_INVALID, "UTF-16");
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);
        for (guint i = 0; i < G_N_ELEMENTS (depth_cases); i++) {
                g_autofree char *path = g_strdup_printf ("/chain/%sdepth-%u",
                                                         depth_cases[i].libvhdi ? "libvhdi/" : "",
                                                         depth_cases[i].depth);
                g_test_add_data_func (path, &depth_cases[i], test_depth);
        }
        g_test_add_data_func ("/chain/4k-sectors-every-state", GINT_TO_POINTER (FALSE),
                              test_4k_sectors);
        g_test_add_data_func ("/chain/libvhdi/4k-sectors-every-state", GINT_TO_POINTER (TRUE),
                              test_4k_sectors);
        g_test_add_data_func ("/chain/many-chunks", GINT_TO_POINTER (FALSE), test_many_chunks);
        g_test_add_data_func ("/chain/libvhdi/many-chunks", GINT_TO_POINTER (TRUE),
                              test_many_chunks);
        g_test_add_func ("/chain/libvhdi/writer", test_writer_libvhdi);
        g_test_add_func ("/chain/error/parent-missing", test_parent_missing);
        g_test_add_func ("/chain/error/parent-explicit", test_parent_explicit);
        g_test_add_func ("/chain/error/parent-mismatch", test_parent_mismatch);
        g_test_add_func ("/chain/error/sector-size-mismatch", test_sector_size_mismatch);
        g_test_add_func ("/chain/error/loop", test_loop);
        g_test_add_func ("/chain/error/depth-limit", test_depth_limit);
        g_test_add_func ("/chain/error/locator", test_locator_damage);
        return g_test_run ();
}
