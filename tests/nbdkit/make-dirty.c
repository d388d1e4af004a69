/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx-make-dirty: leaves a clean dynamic image as a crash during a block
 * allocation would: the new payload block written past the old end of the
 * file, its BAT entry only in the log, and the log not yet replayed.  For
 * scripted tests of readers that must replay the log; not installed.
 *
 *   vhdx-make-dirty IMAGE BLOCK SEED
 *
 * Block BLOCK (unallocated in IMAGE) then holds the generator's pattern SEED.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>

#include "vhdx-bat.h"
#include "vhdx-gen.h"
#include "vhdx-header.h"
#include "vhdx-log-writer.h"
#include "vhdx-reader.h"

#define SECTOR 4096

static gboolean
parse_u64 (const char *text, guint64 *out)
{
        char *end = NULL;

        errno = 0;
        *out = g_ascii_strtoull (text, &end, 0);
        return errno == 0 && end != text && *end == '\0';
}

static gboolean
set_error_from_errno (GError **error, const char *what)
{
        int saved_errno = errno;

        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "%s: %s", what,
                     g_strerror (saved_errno));
        return FALSE;
}

static gboolean
make_dirty (const char *path, guint64 block, guint32 seed, GError **error)
{
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (VhdxIo) io = NULL;
        g_autoptr (VhdxLogWriter) writer = NULL;
        g_autoptr (GPtrArray) problems =
            g_ptr_array_new_with_free_func ((GDestroyNotify)vhdx_finding_free);
        g_autofree guint8 *payload = NULL;
        guint8 sector[SECTOR];
        const VhdxInfo *info;
        VhdxHeader header;
        VhdxGuid log_guid;
        guint64 file_size, new_block, entry_at, sector_at;
        guint32 block_size, log_length;
        guint64 log_offset, bat_offset, chunk_ratio;
        guint index;
        int fd;

        io = vhdx_io_open_file (path, error);
        if (io == NULL)
                return FALSE;
        file = vhdx_file_open (g_steal_pointer (&io), VHDX_OPEN_FLAGS_NONE, error);
        if (file == NULL)
                return FALSE;
        info = vhdx_file_get_info (file);
        if (info->disk_type != VHDX_DISK_TYPE_DYNAMIC || info->log_state != VHDX_LOG_STATE_CLEAN ||
            block >= info->payload_blocks) {
                g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                             "%s: expected a clean dynamic image with a block %" G_GUINT64_FORMAT,
                             path, block);
                return FALSE;
        }
        file_size = info->file_size;
        block_size = info->block_size;
        log_offset = info->log_offset;
        log_length = info->log_length;
        bat_offset = info->bat_offset;
        chunk_ratio = info->chunk_ratio;
        g_clear_pointer (&file, vhdx_file_free);

        fd = open (path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return set_error_from_errno (error, path);
        io = vhdx_io_new_fd (fd, TRUE);

        /* The payload goes in place, past the end of the file. */
        new_block = (file_size + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB;
        payload = g_malloc (block_size);
        vhdx_gen_pattern_fill_buffer (payload, block * block_size, block_size, seed);
        if (pwrite (fd, payload, block_size, (off_t)new_block) != (ssize_t)block_size)
                return set_error_from_errno (error, "writing the payload block");

        /* The BAT sector that points at it, only in the log. */
        entry_at = bat_offset + vhdx_bat_payload_index (block, chunk_ratio) * 8;
        sector_at = entry_at - entry_at % SECTOR;
        if (pread (fd, sector, SECTOR, (off_t)sector_at) != SECTOR)
                return set_error_from_errno (error, "reading the BAT");
        vhdx_put_le64 (sector + entry_at % SECTOR, new_block | VHDX_PAYLOAD_FULLY_PRESENT);

        vhdx_guid_new_random (&log_guid);
        writer = vhdx_log_writer_new (io, log_offset, log_length, &log_guid, 0, 1);
        vhdx_log_writer_add_data (writer, sector_at, sector);
        if (!vhdx_log_writer_commit (writer, file_size, new_block + block_size, error))
                return FALSE;

        /* Naming the log in the header is what makes the image dirty. */
        if (!vhdx_headers_read (io, new_block + block_size, &header, &index, problems, error))
                return FALSE;
        header.log_guid = log_guid;
        return vhdx_headers_write (io, &header, index, error);
}

int
main (int argc, char **argv)
{
        g_autoptr (GError) error = NULL;
        guint64 block, seed;

        if (argc != 4 || !parse_u64 (argv[2], &block) || !parse_u64 (argv[3], &seed) ||
            seed > G_MAXUINT32) {
                g_printerr ("usage: vhdx-make-dirty IMAGE BLOCK SEED\n");
                return EXIT_FAILURE;
        }
        if (!make_dirty (argv[1], block, (guint32)seed, &error)) {
                g_printerr ("vhdx-make-dirty: %s\n", error->message);
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
