/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Log parsing and replay.  The input is the log region of a fixed dynamic
 * image whose headers carry a LogGuid, so every open finds the active
 * sequence and replays it: in memory for a read-only open, onto the image for
 * a read-write one.  Both views must agree.
 *
 *   u8  flags      FUZZ_FLAG_FIX_CHECKSUMS: fix every entry's CRC-32C;
 *                  FUZZ_FLAG_READ_WRITE: also replay onto a copy and compare
 *   u32 rotation   where in the ring the bytes start (rounded down to 4 KiB)
 *   bytes          the log, from that position on, wrapping at its end
 */
#include "fuzz-common.h"
#include "vhdx-check.h"
#include "vhdx-problems.h"

#include <gio/gio.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

/* The part of the virtual disk that is read and compared. */
#define READ_LIMIT (8 * VHDX_MiB)

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
        fuzz_init ();
        (void) fuzz_log_template ();
        return 0;
}

static FuzzImage *
build_image (const guint8 *data, gsize size)
{
        GBytes *template = fuzz_log_template ();
        FuzzImage *image = fuzz_image_new (template, g_bytes_get_size (template));
        guint64 log_offset = fuzz_log_template_log_offset ();
        guint32 log_length = fuzz_log_template_log_length ();
        guint32 position =
                vhdx_get_le32 (data + 1) % log_length / VHDX_LOG_SECTOR_SIZE * VHDX_LOG_SECTOR_SIZE;
        gsize n = MIN (size - FUZZ_LOG_INPUT_HEADER, (gsize) log_length);
        gsize first = MIN (n, (gsize) (log_length - position));

        fuzz_image_write (image, log_offset + position, data + FUZZ_LOG_INPUT_HEADER, first);
        fuzz_image_write (image, log_offset, data + FUZZ_LOG_INPUT_HEADER + first, n - first);
        if (data[0] & FUZZ_FLAG_FIX_CHECKSUMS)
                fuzz_image_fix_log_checksums (image, log_offset, log_length);
        return image;
}

/* Read (up to READ_LIMIT), map and check an opened image; the bytes read, or
 * NULL when reading failed. */
static GBytes *
exercise (VhdxFile *file)
{
        const VhdxInfo *info = vhdx_file_get_info (file);
        gsize n = (gsize) MIN (info->virtual_size, READ_LIMIT);
        g_autofree guint8 *buf = g_malloc (n);
        g_autoptr (GError) error = NULL;
        g_autoptr (GPtrArray) problems =
                g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
        g_autoptr (GArray) extents = NULL;
        gboolean read_ok;

        read_ok = vhdx_file_read (file, 0, buf, n, &error);
        if (!read_ok) {
                g_assert (error->domain == VHDX_ERROR);
                g_clear_error (&error);
        }
        if (info->virtual_size <= 64 * VHDX_GiB) {
                extents = vhdx_file_map (file, 0, info->virtual_size, &error);
                if (extents == NULL) {
                        g_assert (error->domain == VHDX_ERROR);
                        g_clear_error (&error);
                }
        }
        if (!vhdx_file_check (file, problems, &error)) {
                g_assert (error->domain == VHDX_ERROR);
                g_clear_error (&error);
        }
        return read_ok ? g_bytes_new_take (g_steal_pointer (&buf), n) : NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
        g_autoptr (FuzzImage) image = NULL;
        g_autoptr (FuzzImage) replayed = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (VhdxFile) writable = NULL;
        g_autoptr (VhdxFile) reopened = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) in_memory = NULL;
        g_autoptr (GBytes) on_file = NULL;
        guint64 virtual_size = 0;

        if (size < FUZZ_LOG_INPUT_HEADER)
                return 0;
        image = build_image (data, size);
        file = fuzz_open_image (image, FALSE, &error);
        fuzz_note ("open", error);
        if (file == NULL) {
                g_assert (error->domain == VHDX_ERROR);
                g_clear_error (&error);
        } else {
                g_assert_cmpint (vhdx_file_get_info (file)->log_state, ==,
                                 VHDX_LOG_STATE_REPLAYED_IN_MEMORY);
                virtual_size = vhdx_file_get_info (file)->virtual_size;
                in_memory = exercise (file);
        }
        if (!(data[0] & FUZZ_FLAG_READ_WRITE))
                return 0;

        replayed = build_image (data, size);
        writable = fuzz_open_image (replayed, TRUE, &error);
        fuzz_note ("open for writing", error);
        if (writable == NULL) {
                /* The copy may not grow without bound, but only a log that makes
                 * the file that large may run into the limit; anything else is
                 * damage, and the read-only open must have seen the same damage. */
                if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE)) {
                        g_assert (file == NULL ||
                                  vhdx_file_get_info (file)->file_size > FUZZ_MAX_WRITABLE_SIZE);
                        return 0;
                }
                g_assert (error->domain == VHDX_ERROR);
                g_assert (file == NULL);
                return 0;
        }
        g_assert (file != NULL);
        g_assert_cmpint (vhdx_file_get_info (writable)->log_state, ==, VHDX_LOG_STATE_REPLAYED);
        g_clear_pointer (&writable, vhdx_file_free);

        /* The replayed file reads as the in-memory replay did. */
        reopened = fuzz_open_image (replayed, FALSE, &error);
        g_assert_no_error (error);
        g_assert_cmpint (vhdx_file_get_info (reopened)->log_state, ==, VHDX_LOG_STATE_CLEAN);
        g_assert_cmpuint (vhdx_file_get_info (reopened)->virtual_size, ==, virtual_size);
        on_file = exercise (reopened);
        g_assert ((on_file == NULL) == (in_memory == NULL));
        if (on_file != NULL)
                g_assert (g_bytes_equal (on_file, in_memory));
        return 0;
}
