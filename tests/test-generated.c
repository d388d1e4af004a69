/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Images from the test generator, read back through the engine and compared
 * byte for byte with the raw disk the generator says they hold.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "test-util.h"
#include "vhdx-gen.h"
#include "vhdx-reader.h"
#include "vhdx-map.h"

/* Larger images go through a sparse temporary file instead of memory. */
#define MAX_MEMORY_FILE (128 * VHDX_MiB)
/* Disks up to this size are also compared in one whole-disk read. */
#define MAX_WHOLE_READ (64 * VHDX_MiB)
#define WINDOW         (8 * VHDX_MiB)

static VhdxFile *
open_generated (VhdxGen *gen)
{
        g_autoptr (GError) error = NULL;
        VhdxGenLayout layout;
        VhdxFile *file;
        VhdxIo *io;

        vhdx_gen_get_layout (gen, &layout);
        if (layout.file_size <= MAX_MEMORY_FILE) {
                g_autoptr (GBytes) bytes = vhdx_gen_build (gen);

                g_assert_nonnull (bytes);
                g_assert_cmpuint (g_bytes_get_size (bytes), ==, layout.file_size);
                io = vhdx_io_new_memory (bytes);
        } else {
                g_autofree char *path = NULL;
                int fd = g_file_open_tmp ("test-generated-XXXXXX.vhdx", &path, &error);

                g_assert_no_error (error);
                close (fd);
                test_assert_ok (vhdx_gen_write_file (gen, path, &error), error);
                fd = open (path, O_RDONLY | O_CLOEXEC);
                g_assert_cmpint (fd, >=, 0);
                unlink (path);
                io = vhdx_io_new_fd (fd, TRUE);
        }
        file = vhdx_file_open (io, VHDX_OPEN_FLAGS_NONE, &error);
        g_assert_no_error (error);
        g_assert_nonnull (file);
        return file;
}

static void
assert_bytes_equal (const guint8 *found, const guint8 *expected, gsize len, guint64 offset)
{
        gsize i;

        if (memcmp (found, expected, len) == 0)
                return;
        for (i = 0; i < len && found[i] == expected[i]; i++)
                ;
        g_test_message ("read of %" G_GSIZE_FORMAT " bytes at %" G_GUINT64_FORMAT
                        ": first difference at virtual offset %" G_GUINT64_FORMAT
                        " (found 0x%02x, expected 0x%02x)",
                        len, offset, offset + i, found[i], expected[i]);
        g_assert_cmpuint (offset + i, ==, G_MAXUINT64);
}

static void
assert_range (VhdxFile *file, VhdxGen *gen, guint64 offset, gsize len)
{
        g_autoptr (GError) error = NULL;
        g_autofree guint8 *found = g_malloc (MAX (len, 1));
        g_autofree guint8 *expected = g_malloc (MAX (len, 1));

        memset (found, 0xa5, len);
        test_assert_ok (vhdx_file_read (file, offset, found, len, &error), error);
        vhdx_gen_read_raw (gen, offset, expected, len);
        assert_bytes_equal (found, expected, len, offset);
}

/* The whole disk: in one read when small, else in windows that do not align with blocks. */
static void
assert_whole_disk (VhdxFile *file, VhdxGen *gen)
{
        const VhdxGenParams *params = vhdx_gen_get_params (gen);
        guint64 offset;

        if (params->virtual_size <= MAX_WHOLE_READ) {
                g_autoptr (GError) error = NULL;
                g_autoptr (GBytes) raw = vhdx_gen_build_raw (gen);
                g_autofree guint8 *found = g_malloc (params->virtual_size);

                test_assert_ok (vhdx_file_read (file, 0, found, params->virtual_size, &error),
                                error);
                assert_bytes_equal (found, g_bytes_get_data (raw, NULL), params->virtual_size, 0);
                return;
        }
        for (offset = 0; offset < params->virtual_size; offset += WINDOW - 4096)
                assert_range (file, gen, offset,
                              (gsize) MIN (WINDOW - 4096, params->virtual_size - offset));
}

static guint64
rand_below (guint64 n)
{
        guint64 r = ((guint64) g_test_rand_int () << 32) | (guint32) g_test_rand_int ();

        return n == 0 ? 0 : r % n;
}

/* Reads at random unaligned offsets, half of them across a block boundary. */
static void
assert_random_ranges (VhdxFile *file, VhdxGen *gen, guint n_reads)
{
        const VhdxGenParams *params = vhdx_gen_get_params (gen);
        guint64 n_blocks = (params->virtual_size + params->block_size - 1) / params->block_size;
        guint64 max_len = MIN (3 * (guint64) params->block_size, 4 * VHDX_MiB);
        guint i;

        for (i = 0; i < n_reads; i++) {
                guint64 offset, len;

                if (i % 2 == 0 && n_blocks > 1) {
                        guint64 boundary = (1 + rand_below (n_blocks - 1)) * params->block_size;
                        guint64 before = 1 + rand_below (70000);

                        offset = boundary > before ? boundary - before : 0;
                        len = before + 1 + rand_below (70000);
                } else {
                        offset = rand_below (params->virtual_size);
                        len = 1 + rand_below (max_len);
                }
                len = MIN (len, params->virtual_size - offset);
                assert_range (file, gen, offset, (gsize) len);
        }
}

/* The map gives data extents exactly where the generator stored blocks, at its offsets. */
static void
assert_map (VhdxFile *file, VhdxGen *gen)
{
        const VhdxGenParams *params = vhdx_gen_get_params (gen);
        g_autoptr (GError) error = NULL;
        g_autoptr (GArray) extents = vhdx_file_map (file, 0, params->virtual_size, &error);
        guint64 expected_offset = 0;
        guint64 allocated = 0, engine_allocated = 0;
        guint i;

        g_assert_no_error (error);
        g_assert_nonnull (extents);
        for (i = 0; i < extents->len; i++) {
                const VhdxMapExtent *e = &g_array_index (extents, VhdxMapExtent, i);
                guint64 pos;

                g_assert_cmpuint (e->offset, ==, expected_offset);
                g_assert_cmpuint (e->length, >, 0);
                g_assert_cmpuint (e->depth, ==, 0);
                /* Extents change only at block boundaries. */
                g_assert_true (e->offset % params->block_size == 0);
                g_assert_true ((e->offset + e->length) % params->block_size == 0 ||
                               e->offset + e->length == params->virtual_size);
                for (pos = e->offset; pos < e->offset + e->length; pos += params->block_size) {
                        guint64 block = pos / params->block_size;
                        guint64 block_offset = 0;
                        gboolean stored = vhdx_gen_block_file_offset (gen, block, &block_offset);

                        if (stored) {
                                g_assert_cmpint (e->kind, ==, VHDX_EXTENT_DATA);
                                g_assert_true (e->present);
                                g_assert_cmpuint (e->file_offset + (pos - e->offset), ==,
                                                  block_offset);
                                allocated += MIN ((guint64) params->block_size,
                                                  params->virtual_size - pos);
                        } else {
                                g_assert_cmpint (e->kind, ==, VHDX_EXTENT_ZERO);
                        }
                }
                expected_offset = e->offset + e->length;
        }
        g_assert_cmpuint (expected_offset, ==, params->virtual_size);

        test_assert_ok (vhdx_file_get_allocated_bytes (file, &engine_allocated, &error), error);
        g_assert_cmpuint (engine_allocated, ==, allocated);
}

static void
assert_info (VhdxFile *file, VhdxGen *gen)
{
        const VhdxGenParams *params = vhdx_gen_get_params (gen);
        const VhdxInfo *info = vhdx_file_get_info (file);
        VhdxGenLayout layout;

        vhdx_gen_get_layout (gen, &layout);
        g_assert_cmpint (info->disk_type, ==, params->disk_type);
        g_assert_cmpuint (info->virtual_size, ==, params->virtual_size);
        g_assert_cmpuint (info->block_size, ==, params->block_size);
        g_assert_cmpuint (info->logical_sector_size, ==, params->logical_sector_size);
        g_assert_cmpuint (info->physical_sector_size, ==, params->physical_sector_size);
        g_assert_cmpuint (info->geometry.chunk_ratio, ==, layout.chunk_ratio);
        g_assert_cmpuint (info->geometry.payload_blocks, ==, layout.payload_blocks);
        g_assert_cmpuint (info->geometry.bat_entries, ==, layout.bat_entries);
        g_assert_cmpuint (info->bat_offset, ==, layout.bat_offset);
        g_assert_cmpuint (info->bat_length, ==, layout.bat_length);
        g_assert_cmpuint (info->metadata_offset, ==, layout.metadata_offset);
        g_assert_cmpuint (info->metadata_length, ==, layout.metadata_length);
        g_assert_cmpuint (info->log_offset, ==, layout.log_offset);
        g_assert_cmpuint (info->log_length, ==, layout.log_length);
        g_assert_cmpuint (info->file_size, ==, layout.file_size);
        g_assert_true (vhdx_guid_is_zero (&info->log_guid));
        g_assert_cmpint (info->log_state, ==, VHDX_LOG_STATE_CLEAN);
        g_assert_cmpuint (info->region_table_index, ==, 1);
        g_assert_cmpuint (info->header_index, ==, params->identical_headers ? 1 : 2);
        g_assert_cmpuint (info->header_sequence, ==, params->identical_headers ? 1 : 2);
        g_assert_cmpint (info->leave_block_allocated, ==,
                         params->disk_type == VHDX_DISK_TYPE_FIXED);
        g_assert_false (info->has_parent);
        g_assert_cmpstr (info->creator, ==, VHDX_GEN_CREATOR);
        g_assert_cmpuint (vhdx_file_get_open_problems (file)->len, ==, 0);
}

static void
check_image (VhdxGen *gen, guint n_random_reads)
{
        g_autoptr (VhdxFile) file = open_generated (gen);

        assert_info (file, gen);
        assert_whole_disk (file, gen);
        assert_random_ranges (file, gen, n_random_reads);
        assert_map (file, gen);
}

/*
 * Regions at the start, across the first block boundary, in the middle of
 * block 3 (leaving block 2 a hole when there are five blocks or more) and at
 * the very end of the disk.
 */
static void
write_test_regions (VhdxGen *gen)
{
        const VhdxGenParams *params = vhdx_gen_get_params (gen);
        guint64 bs = params->block_size;
        guint64 vs = params->virtual_size;
        guint64 n_blocks = (vs + bs - 1) / bs;

        vhdx_gen_fill_pattern (gen, 17, 4096, 1);
        if (n_blocks > 1)
                vhdx_gen_fill_pattern (gen, bs - 3001, 8004, 2);
        if (n_blocks >= 5)
                vhdx_gen_fill_pattern (gen, 3 * bs + bs / 2, 8192 + 333, 3);
        vhdx_gen_fill_pattern (gen, vs - 5000, 5000, 4);
}

typedef struct {
        VhdxDiskType disk_type;
        guint32 logical_sector_size;
        guint32 block_size;
} MatrixCase;

static guint64
matrix_virtual_size (guint32 block_size)
{
        /* Never a multiple of the block size: the last block is partial. */
        switch (block_size / VHDX_MiB) {
        case 1:
                return 13 * VHDX_MiB + 3 * 4096;
        case 2:
                return 9 * VHDX_MiB + 4096;
        case 32:
                return 100 * VHDX_MiB + 4096;
        default:
                return 3 * (guint64) block_size + VHDX_MiB + 4096;
        }
}

static void
test_matrix (gconstpointer data)
{
        const MatrixCase *c = data;
        g_autoptr (VhdxGen) gen = NULL;
        VhdxGenParams params;

        vhdx_gen_params_init (&params);
        params.disk_type = c->disk_type;
        params.logical_sector_size = c->logical_sector_size;
        params.physical_sector_size = 4096;
        params.block_size = c->block_size;
        params.virtual_size = matrix_virtual_size (c->block_size);
        gen = vhdx_gen_new (&params);
        write_test_regions (gen);
        check_image (gen, c->block_size >= 256 * VHDX_MiB ? 60 : 200);
}

static VhdxGen *
small_gen (VhdxGenParams *params)
{
        VhdxGen *gen;

        if (params->virtual_size == 0) {
                vhdx_gen_params_init (params);
                params->block_size = VHDX_MiB;
                params->virtual_size = 24 * VHDX_MiB + 512;
        }
        gen = vhdx_gen_new (params);
        write_test_regions (gen);
        vhdx_gen_fill_pattern (gen, 9 * VHDX_MiB - 100, 3 * VHDX_MiB, 5);
        vhdx_gen_fill_byte (gen, 20 * VHDX_MiB, VHDX_MiB, 0);
        return gen;
}

static void
test_metadata_first (void)
{
        VhdxGenParams params = { 0 };
        g_autoptr (VhdxGen) gen = NULL;

        vhdx_gen_params_init (&params);
        params.block_size = 2 * VHDX_MiB;
        params.virtual_size = 24 * VHDX_MiB + 512;
        params.metadata_region_first = TRUE;
        gen = small_gen (&params);
        check_image (gen, 100);
}

static void
test_identical_headers (void)
{
        VhdxGenParams params = { 0 };
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (GBytes) bytes = NULL;
        VhdxGenLayout layout;
        const guint8 *data;

        vhdx_gen_params_init (&params);
        params.block_size = VHDX_MiB;
        params.virtual_size = 24 * VHDX_MiB + 512;
        params.identical_headers = TRUE;
        gen = small_gen (&params);

        bytes = vhdx_gen_build (gen);
        vhdx_gen_get_layout (gen, &layout);
        data = g_bytes_get_data (bytes, NULL);
        g_assert_cmpmem (data + layout.header_offset[0], VHDX_HEADER_SIZE,
                         data + layout.header_offset[1], VHDX_HEADER_SIZE);
        check_image (gen, 100);
}

static void
test_shuffled (gconstpointer data)
{
        VhdxGenParams params = { 0 };
        g_autoptr (VhdxGen) gen = NULL;
        guint64 block, previous = 0;
        gboolean out_of_order = FALSE;

        vhdx_gen_params_init (&params);
        params.disk_type = GPOINTER_TO_INT (data);
        params.block_size = VHDX_MiB;
        params.virtual_size = 24 * VHDX_MiB + 512;
        params.shuffle_blocks = TRUE;
        gen = small_gen (&params);

        for (block = 0; block < 25; block++) {
                guint64 offset;

                if (!vhdx_gen_block_file_offset (gen, block, &offset))
                        continue;
                if (offset < previous)
                        out_of_order = TRUE;
                previous = offset;
        }
        g_assert_true (out_of_order);
        check_image (gen, 200);
}

static void
test_zero_state (void)
{
        VhdxGenParams params = { 0 };
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GArray) extents = NULL;
        g_autoptr (GError) error = NULL;

        vhdx_gen_params_init (&params);
        params.block_size = VHDX_MiB;
        params.virtual_size = 24 * VHDX_MiB + 512;
        params.zero_state = VHDX_PAYLOAD_ZERO;
        gen = small_gen (&params);
        check_image (gen, 100);

        /* Block 2 was never written: a ZERO block, so an extent that reads as zeros. */
        file = open_generated (gen);
        extents = vhdx_file_map (file, 2 * VHDX_MiB + 10, 100, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (extents->len, ==, 1);
        g_assert_cmpint (g_array_index (extents, VhdxMapExtent, 0).kind, ==, VHDX_EXTENT_ZERO);
}

/* Windows around every boundary near @blocks, then random reads. */
static void
assert_around_blocks (VhdxFile *file, VhdxGen *gen, const guint64 *blocks, guint n_blocks)
{
        const VhdxGenParams *params = vhdx_gen_get_params (gen);
        guint i;

        for (i = 0; i < n_blocks; i++) {
                guint64 start = blocks[i] * params->block_size;
                guint64 from = start > 3 * VHDX_MiB / 2 ? start - 3 * VHDX_MiB / 2 : 0;
                guint64 to =
                        MIN (start + params->block_size + 3 * VHDX_MiB / 2, params->virtual_size);

                assert_range (file, gen, from + 511, (gsize) (to - from - 511));
        }
        assert_random_ranges (file, gen, 300);
}

/*
 * 4 KiB sectors and 1 MiB blocks give 32768 blocks per chunk: payload block
 * 32768 comes after the first sector-bitmap entry, at BAT index 32769.
 */
static void
test_multi_chunk_4k (gconstpointer data)
{
        const guint64 blocks[] = { 0, 32767, 32768, 32770 };
        VhdxGenParams params;
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (VhdxFile) file = NULL;
        VhdxGenLayout layout;

        vhdx_gen_params_init (&params);
        params.disk_type = GPOINTER_TO_INT (data);
        params.logical_sector_size = 4096;
        params.block_size = VHDX_MiB;
        params.virtual_size = 32 * VHDX_GiB + 2 * VHDX_MiB + 8192;
        gen = vhdx_gen_new (&params);

        vhdx_gen_get_layout (gen, &layout);
        g_assert_cmpuint (layout.chunk_ratio, ==, 32768);
        g_assert_cmpuint (layout.payload_blocks, ==, 32771);
        g_assert_cmpuint (layout.bat_entries, ==, 32772);
        g_assert_cmpuint (vhdx_gen_block_bat_index (gen, 32767), ==, 32767);
        g_assert_cmpuint (vhdx_gen_block_bat_index (gen, 32768), ==, 32769);

        vhdx_gen_fill_pattern (gen, 0, 4096, 10);
        vhdx_gen_fill_pattern (gen, 32768 * VHDX_MiB - 5000, 10000, 11);
        vhdx_gen_fill_pattern (gen, 32768 * VHDX_MiB + 3 * VHDX_MiB / 4, VHDX_MiB / 2, 12);
        vhdx_gen_fill_pattern (gen, params.virtual_size - 12288, 12288, 13);

        file = open_generated (gen);
        assert_info (file, gen);
        assert_around_blocks (file, gen, blocks, G_N_ELEMENTS (blocks));
        assert_map (file, gen);
}

/* 512-byte sectors and 1 MiB blocks: 4096 blocks per chunk, so 4 GiB. */
static void
test_multi_chunk_512 (gconstpointer data)
{
        const guint64 blocks[] = { 4095, 4096, 4097, 8193, 8194 };
        VhdxGenParams params;
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (VhdxFile) file = NULL;

        vhdx_gen_params_init (&params);
        params.disk_type = GPOINTER_TO_INT (data);
        params.block_size = VHDX_MiB;
        params.virtual_size = 8 * VHDX_GiB + 2 * VHDX_MiB + 512;
        gen = vhdx_gen_new (&params);
        vhdx_gen_fill_pattern (gen, 4096 * VHDX_MiB - 700, 1400, 20);
        vhdx_gen_fill_pattern (gen, 4097 * VHDX_MiB, VHDX_MiB, 21);
        vhdx_gen_fill_pattern (gen, 8192 * VHDX_MiB - 1, 2, 22);
        vhdx_gen_fill_pattern (gen, params.virtual_size - 1024, 1024, 23);

        file = open_generated (gen);
        assert_info (file, gen);
        assert_around_blocks (file, gen, blocks, G_N_ELEMENTS (blocks));
        assert_map (file, gen);
}

static void
test_out_of_range (void)
{
        VhdxGenParams params = { 0 };
        g_autoptr (VhdxGen) gen = small_gen (&params);
        g_autoptr (VhdxFile) file = open_generated (gen);
        g_autoptr (GError) error = NULL;
        guint8 buf[16];
        GArray *extents;

        g_assert_false (vhdx_file_read (file, params.virtual_size - 8, buf, 16, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);
        g_assert_false (vhdx_file_read (file, G_MAXUINT64 - 4, buf, 16, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);
        extents = vhdx_file_map (file, params.virtual_size, 1, &error);
        g_assert_null (extents);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE);
        g_clear_error (&error);

        /* The last byte and an empty read at the end are inside. */
        test_assert_ok (vhdx_file_read (file, params.virtual_size - 1, buf, 1, &error), error);
        g_assert_cmpuint (buf[0], ==, vhdx_gen_pattern_byte (params.virtual_size - 1, 4));
        test_assert_ok (vhdx_file_read (file, params.virtual_size, buf, 0, &error), error);
}

/* The generator's GUIDs, encoded from their text, agree with the engine's constants. */
static void
test_guids (void)
{
        g_assert_true (vhdx_guid_equal (&vhdx_gen_guid_bat, &vhdx_guid_region_bat));
        g_assert_true (vhdx_guid_equal (&vhdx_gen_guid_metadata, &vhdx_guid_region_metadata));
        g_assert_true (vhdx_guid_equal (&vhdx_gen_guid_item[VHDX_GEN_ITEM_FILE_PARAMETERS],
                                        &vhdx_guid_item_file_parameters));
        g_assert_true (vhdx_guid_equal (&vhdx_gen_guid_item[VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE],
                                        &vhdx_guid_item_virtual_disk_size));
        g_assert_true (vhdx_guid_equal (&vhdx_gen_guid_item[VHDX_GEN_ITEM_VIRTUAL_DISK_ID],
                                        &vhdx_guid_item_virtual_disk_id));
        g_assert_true (vhdx_guid_equal (&vhdx_gen_guid_item[VHDX_GEN_ITEM_LOGICAL_SECTOR_SIZE],
                                        &vhdx_guid_item_logical_sector_size));
        g_assert_true (vhdx_guid_equal (&vhdx_gen_guid_item[VHDX_GEN_ITEM_PHYSICAL_SECTOR_SIZE],
                                        &vhdx_guid_item_physical_sector_size));
        g_assert_true (vhdx_guid_equal (&vhdx_gen_guid_bat,
                                        (VhdxGuid[]){ vhdx_gen_guid_from_text (
                                                "2DC27766-F623-4200-9D64-115E9BFD4A08") }));
}

/* The pattern is a function of the absolute offset, not of where a fill starts. */
static void
test_pattern (void)
{
        guint8 a[100], b[90];
        guint distinct = 0;
        guint i;

        vhdx_gen_pattern_fill_buffer (a, 1000, sizeof a, 7);
        vhdx_gen_pattern_fill_buffer (b, 1010, sizeof b, 7);
        g_assert_cmpmem (a + 10, sizeof b, b, sizeof b);
        for (i = 1; i < sizeof a; i++)
                distinct += a[i] != a[0];
        g_assert_cmpuint (distinct, >, 50);
        vhdx_gen_pattern_fill_buffer (b, 1000, sizeof b, 8);
        g_assert_true (memcmp (a, b, sizeof b) != 0);
        for (i = 0; i < sizeof a; i++)
                g_assert_cmpuint (a[i], ==, vhdx_gen_pattern_byte (1000 + i, 7));
}

int
main (int argc, char **argv)
{
        static const VhdxDiskType types[] = { VHDX_DISK_TYPE_FIXED, VHDX_DISK_TYPE_DYNAMIC };
        static const guint32 sectors[] = { 512, 4096 };
        static const guint32 blocks[] = { 1, 2, 32, 256 };
        static MatrixCase
                cases[G_N_ELEMENTS (types) * G_N_ELEMENTS (sectors) * G_N_ELEMENTS (blocks)];
        guint n = 0, t, s, b;

        g_test_init (&argc, &argv, NULL);

        for (t = 0; t < G_N_ELEMENTS (types); t++) {
                for (s = 0; s < G_N_ELEMENTS (sectors); s++) {
                        for (b = 0; b < G_N_ELEMENTS (blocks); b++) {
                                MatrixCase *c = &cases[n++];
                                g_autofree char *path = NULL;

                                c->disk_type = types[t];
                                c->logical_sector_size = sectors[s];
                                c->block_size = blocks[b] * VHDX_MiB;
                                path = g_strdup_printf ("/generated/matrix/%s/sector-%u/block-%uM",
                                                        vhdx_disk_type_to_string (types[t]),
                                                        sectors[s], blocks[b]);
                                g_test_add_data_func (path, c, test_matrix);
                        }
                }
        }
        g_test_add_func ("/generated/guids", test_guids);
        g_test_add_func ("/generated/pattern", test_pattern);
        g_test_add_func ("/generated/metadata-first", test_metadata_first);
        g_test_add_func ("/generated/identical-headers", test_identical_headers);
        g_test_add_data_func ("/generated/shuffled/dynamic",
                              GINT_TO_POINTER (VHDX_DISK_TYPE_DYNAMIC), test_shuffled);
        g_test_add_data_func ("/generated/shuffled/fixed", GINT_TO_POINTER (VHDX_DISK_TYPE_FIXED),
                              test_shuffled);
        g_test_add_func ("/generated/zero-state", test_zero_state);
        g_test_add_func ("/generated/out-of-range", test_out_of_range);
        g_test_add_data_func ("/generated/multi-chunk/sector-4096/dynamic",
                              GINT_TO_POINTER (VHDX_DISK_TYPE_DYNAMIC), test_multi_chunk_4k);
        g_test_add_data_func ("/generated/multi-chunk/sector-4096/fixed",
                              GINT_TO_POINTER (VHDX_DISK_TYPE_FIXED), test_multi_chunk_4k);
        g_test_add_data_func ("/generated/multi-chunk/sector-512/dynamic",
                              GINT_TO_POINTER (VHDX_DISK_TYPE_DYNAMIC), test_multi_chunk_512);
        g_test_add_data_func ("/generated/multi-chunk/sector-512/fixed",
                              GINT_TO_POINTER (VHDX_DISK_TYPE_FIXED), test_multi_chunk_512);

        return g_test_run ();
}
