/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reading the virtual disk of an opened image (see vhdx-reader.h). */
#include "vhdx-reader.h"

#include "vhdx-file-private.h"
#include "vhdx-private.h"

/*
 * Read stored payload bytes.  Payload reads are the hot path, and gettext
 * takes a lock in the C library: the name of the structure is translated
 * only when a short read has to be reported (by reading again through
 * vhdx_io_read_exact(), which names it).
 */
static gboolean
read_payload (VhdxFile *file, void *buf, gsize count, guint64 offset, GError **error)
{
        gsize n_read = 0;

        if (!file->io->vtable->pread (file->io, buf, count, offset, &n_read, error))
                return FALSE;
        if (G_LIKELY (n_read == count))
                return TRUE;
        return vhdx_io_read_exact (file->io, buf, count, offset, _ ("payload block"), error);
}

gboolean
vhdx_file_check_range (VhdxFile *file, guint64 offset, guint64 length, GError **error)
{
        guint64 end;

        if (!vhdx_add_u64 (offset, length, &end) || end > file->info.virtual_size) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_OUT_OF_RANGE,
                             _ ("The range %" PRIu64 "+%" PRIu64
                                " lies outside the virtual disk (%" PRIu64 " bytes)"),
                             offset, length, file->info.virtual_size);
                return FALSE;
        }
        return TRUE;
}

/* Read a range that this file does not store: from the parent, zeros where
 * the parent is smaller or there is none. */
static gboolean
read_from_parent (VhdxFile *file, guint64 offset, guint8 *out, gsize count, GError **error)
{
        gsize from_parent = 0;

        if (file->parent == NULL && file->info.disk_type == VHDX_DISK_TYPE_DIFFERENCING) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND,
                             _ ("The %zu bytes at offset %" PRIu64
                                " of the virtual disk are the parent's, which is missing: %s"),
                             count, offset,
                             file->parent_error != NULL ? file->parent_error->message : "");
                return FALSE;
        }
        if (file->parent != NULL && offset < file->parent->info.virtual_size) {
                from_parent =
                        (gsize) MIN ((guint64) count, file->parent->info.virtual_size - offset);
                if (!vhdx_file_read (file->parent, offset, out, from_parent, error))
                        return FALSE;
        }
        memset (out + from_parent, 0, count - from_parent);
        return TRUE;
}

static gboolean
read_partial_block (VhdxFile *file,
                    guint64 block,
                    guint64 block_offset,
                    guint64 in_block,
                    guint8 *out,
                    gsize count,
                    GError **error)
{
        g_autoptr (GBytes) bitmap = vhdx_bitmap_cache_get (file->bitmaps, block, error);
        const guint8 *bits;
        guint64 pos = in_block, end = in_block + count;
        guint64 block_start = block * file->info.block_size;

        if (bitmap == NULL)
                return FALSE;
        bits = g_bytes_get_data (bitmap, NULL);
        while (pos < end) {
                gboolean present;
                guint64 run_end = vhdx_bitmap_run_end (bits, file->info.logical_sector_size, pos,
                                                       end, &present);
                guint8 *dest = out + (pos - in_block);
                gsize n = (gsize) (run_end - pos);

                if (present ? !read_payload (file, dest, n, block_offset + pos, error)
                            : !read_from_parent (file, block_start + pos, dest, n, error))
                        return FALSE;
                pos = run_end;
        }
        return TRUE;
}

gboolean
vhdx_file_read (VhdxFile *file, guint64 offset, void *buf, gsize count, GError **error)
{
        guint8 *out = buf;
        /* A run of stored bytes contiguous in the file, read with one pread. */
        guint8 *run_buf = NULL;
        guint64 run_file_offset = 0;
        gsize run_length = 0;

        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (buf != NULL || count == 0, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (!vhdx_file_check_range (file, offset, count, error))
                return FALSE;

        while (count > 0) {
                guint64 block = offset / file->info.block_size;
                guint64 in_block = offset % file->info.block_size;
                gsize n = (gsize) MIN ((guint64) count, file->info.block_size - in_block);
                guint state;
                guint64 block_offset;
                gboolean ok = TRUE;

                if (!vhdx_bat_lookup_block (file->bat, block, &state, &block_offset, error))
                        return FALSE;
                if (run_length > 0 && state == VHDX_PAYLOAD_FULLY_PRESENT &&
                    block_offset + in_block == run_file_offset + run_length &&
                    run_buf + run_length == out) {
                        run_length += n;
                } else {
                        if (run_length > 0 &&
                            !read_payload (file, run_buf, run_length, run_file_offset, error))
                                return FALSE;
                        run_length = 0;
                        switch (state) {
                        case VHDX_PAYLOAD_FULLY_PRESENT:
                                run_buf = out;
                                run_file_offset = block_offset + in_block;
                                run_length = n;
                                break;
                        case VHDX_PAYLOAD_PARTIALLY_PRESENT:
                                ok = read_partial_block (file, block, block_offset, in_block, out,
                                                         n, error);
                                break;
                        case VHDX_PAYLOAD_NOT_PRESENT:
                                /* Absent from a differencing image: the parent has it. */
                                ok = read_from_parent (file, offset, out, n, error);
                                break;
                        default:
                                memset (out, 0, n);
                                break;
                        }
                        if (!ok)
                                return FALSE;
                }
                out += n;
                offset += n;
                count -= n;
        }
        if (run_length > 0 && !read_payload (file, run_buf, run_length, run_file_offset, error))
                return FALSE;
        return TRUE;
}
