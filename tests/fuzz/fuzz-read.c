/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Open an image (a sparse input, see fuzz-common.h) and map and read ranges
 * that the tail of the input chooses.  Reads and maps must agree: zero
 * extents read as zeros, and data extents read as the bytes at their file
 * offset.  Requests past the end of the virtual disk must fail as such.
 *
 * Each operation in the tail is 9 bytes: u8 kind (bit 0: map instead of
 * read; bit 1: the offset counts back from the end of the disk), a 40-bit
 * offset and a 24-bit length (in bytes for reads, in 4 KiB units for maps).
 * Without a tail, the first 4 MiB are read and the whole disk is mapped.
 */
#include "fuzz-common.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

#define OP_SIZE     9
#define MAX_OPS     16
#define OP_MAP      (1u << 0)
#define OP_FROM_END (1u << 1)

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
        fuzz_init ();
        return 0;
}

static void
assert_request_error (const VhdxInfo *info, guint64 offset, guint64 length, GError *error)
{
        g_assert (error != NULL && error->domain == VHDX_ERROR);
        if (offset > info->virtual_size || length > info->virtual_size - offset)
                g_assert_cmpint (error->code, ==, VHDX_ERROR_OUT_OF_RANGE);
}

/* The bytes that a data extent names, in the file of its chain member. */
static gboolean
read_extent_source (VhdxFile *file,
                    FuzzImage *image,
                    const VhdxMapExtent *e,
                    guint64 skip,
                    guint8 *buf,
                    gsize len)
{
        VhdxFile *member = file;

        for (guint d = 0; d < e->depth; d++)
                member = vhdx_file_get_parent (member);
        /* Through a log overlay the file differs from the input: no oracle. */
        if (vhdx_file_get_info (member)->log_state != VHDX_LOG_STATE_CLEAN)
                return FALSE;
        if (member == file) {
                fuzz_image_read (image, e->file_offset + skip, buf, len);
        } else {
                gsize size;
                const guint8 *parent = g_bytes_get_data (fuzz_parent_bytes (), &size);
                /* The fixed parent is the only other image an input can reach:
                 * the input itself as its own parent is a loop. */
                g_assert_cmpuint (e->depth, ==, 1);
                g_assert (
                        g_str_has_suffix (vhdx_file_get_parent_path (file), "/" FUZZ_PARENT_NAME));
                g_assert_cmpuint (e->file_offset + skip + len, <=, size);
                memcpy (buf, parent + e->file_offset + skip, len);
        }
        return TRUE;
}

static gboolean
is_zero (const guint8 *p, gsize len)
{
        static const guint8 zeros[4096];

        for (gsize done = 0; done < len;) {
                gsize n = MIN (len - done, sizeof zeros);
                if (memcmp (p + done, zeros, n) != 0)
                        return FALSE;
                done += n;
        }
        return TRUE;
}

static void
check_map (VhdxFile *file,
           FuzzImage *image,
           guint64 offset,
           guint64 length,
           GArray *extents,
           const guint8 *bytes,
           guint64 bytes_offset,
           gsize bytes_len)
{
        guint64 expect = offset;

        for (guint i = 0; i < extents->len; i++) {
                const VhdxMapExtent *e = &g_array_index (extents, VhdxMapExtent, i);
                guint64 lo, hi;

                g_assert_cmpuint (e->offset, ==, expect);
                g_assert_cmpuint (e->length, >, 0);
                expect += e->length;
                if (bytes == NULL)
                        continue;
                lo = MAX (e->offset, bytes_offset);
                hi = MIN (e->offset + e->length, bytes_offset + bytes_len);
                if (lo >= hi)
                        continue;
                if (e->kind == VHDX_EXTENT_ZERO) {
                        g_assert (is_zero (bytes + (lo - bytes_offset), hi - lo));
                } else {
                        g_autofree guint8 *source = g_malloc (hi - lo);
                        if (read_extent_source (file, image, e, lo - e->offset, source, hi - lo))
                                g_assert (memcmp (source, bytes + (lo - bytes_offset), hi - lo) ==
                                          0);
                }
        }
        g_assert_cmpuint (expect, ==, offset + length);
}

static void
run_op (VhdxFile *file, FuzzImage *image, guint kind, guint64 offset, guint64 length)
{
        const VhdxInfo *info = vhdx_file_get_info (file);
        g_autoptr (GError) error = NULL;

        if (kind & OP_FROM_END)
                offset = info->virtual_size - MIN (offset, info->virtual_size);
        if (kind & OP_MAP) {
                g_autoptr (GArray) extents = vhdx_file_map (file, offset, length, &error);
                if (extents == NULL)
                        assert_request_error (info, offset, length, error);
                else
                        check_map (file, image, offset, length, extents, NULL, 0, 0);
        } else {
                g_autofree guint8 *buf = g_malloc (length > 0 ? length : 1);
                g_autoptr (GArray) extents = NULL;

                if (!vhdx_file_read (file, offset, buf, length, &error)) {
                        assert_request_error (info, offset, length, error);
                        return;
                }
                /* What was read must be what the map says. */
                extents = vhdx_file_map (file, offset, length, &error);
                if (extents == NULL)
                        g_assert (error != NULL && error->domain == VHDX_ERROR);
                else
                        check_map (file, image, offset, length, extents, buf, offset, length);
        }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
        g_autoptr (FuzzImage) image = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GError) error = NULL;
        const guint8 *tail;
        gsize tail_len;
        guint8 flags;
        const VhdxInfo *info;

        image = fuzz_image_decode (data, size, &flags, &tail, &tail_len);
        if (image == NULL)
                return 0;
        file = fuzz_open_image (image, FALSE, &error);
        fuzz_note ("open", error);
        if (file == NULL) {
                g_assert (error != NULL && error->domain == VHDX_ERROR);
                return 0;
        }
        info = vhdx_file_get_info (file);
        if (tail_len < OP_SIZE) {
                run_op (file, image, 0, 0, MIN (info->virtual_size, 4 * VHDX_MiB));
                if (info->virtual_size <= 64 * VHDX_GiB)
                        run_op (file, image, OP_MAP, 0, info->virtual_size);
                return 0;
        }
        for (gsize i = 0; i + OP_SIZE <= tail_len && i / OP_SIZE < MAX_OPS; i += OP_SIZE) {
                const guint8 *op = tail + i;
                guint64 offset = (guint64) vhdx_get_le32 (op + 1) | (guint64) op[5] << 32;
                guint64 length = (guint64) op[6] | (guint64) op[7] << 8 | (guint64) op[8] << 16;

                if (op[0] & OP_MAP)
                        length *= 4096;
                run_op (file, image, op[0], offset, length);
        }
        return 0;
}
