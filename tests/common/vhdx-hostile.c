/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Crafted images that claim the limits of the format (see vhdx-hostile.h). */
#include "vhdx-hostile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "vhdx-crc32c.h"
#include "vhdx-io.h"
#include "vhdx-log-writer.h"

#define MiB VHDX_MiB

static const char *const kind_names[VHDX_HOSTILE_N_KINDS] = {
        [VHDX_HOSTILE_HUGE_DISK] = "huge-disk",
        [VHDX_HOSTILE_FULL_TABLES] = "full-tables",
        [VHDX_HOSTILE_LOG_TOO_LONG] = "log-too-long",
        [VHDX_HOSTILE_LOG_FULL] = "log-full",
        [VHDX_HOSTILE_LOG_LONG_CHAIN] = "log-long-chain",
        [VHDX_HOSTILE_LOG_OVERLAPPING] = "log-overlapping",
};

const char *
vhdx_hostile_kind_name (VhdxHostileKind kind)
{
        return kind < VHDX_HOSTILE_N_KINDS ? kind_names[kind] : NULL;
}

VhdxHostileKind
vhdx_hostile_kind_from_name (const char *name)
{
        for (guint i = 0; i < VHDX_HOSTILE_N_KINDS; i++) {
                if (g_strcmp0 (kind_names[i], name) == 0)
                        return (VhdxHostileKind) i;
        }
        return VHDX_HOSTILE_N_KINDS;
}

/* An open image being patched; every failure of the file is an error. */
typedef struct {
        const char *path;
        int fd;
        GError **error;
        gboolean failed;
} Patch;

static void
set_errno (Patch *p, const char *what)
{
        int saved_errno = errno;

        if (!p->failed)
                g_set_error (p->error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                             "%s: %s: %s", p->path, what, g_strerror (saved_errno));
        p->failed = TRUE;
}

static void
patch_write (Patch *p, const void *buf, gsize len, guint64 offset)
{
        if (!p->failed && pwrite (p->fd, buf, len, (off_t) offset) != (gssize) len)
                set_errno (p, "pwrite");
}

static void
patch_read (Patch *p, void *buf, gsize len, guint64 offset)
{
        if (!p->failed && pread (p->fd, buf, len, (off_t) offset) != (gssize) len)
                set_errno (p, "pread");
}

static void
patch_truncate (Patch *p, guint64 size)
{
        if (!p->failed && ftruncate (p->fd, (off_t) size) != 0)
                set_errno (p, "ftruncate");
}

/* Change both region tables with @edit, then fix their checksums. */
static void
edit_region_tables (Patch *p,
                    void (*edit) (guint8 *table, const VhdxGenLayout *layout),
                    const VhdxGenLayout *layout)
{
        g_autofree guint8 *table = g_malloc (VHDX_REGION_TABLE_SIZE);

        for (guint t = 0; t < 2; t++) {
                patch_read (p, table, VHDX_REGION_TABLE_SIZE, layout->region_table_offset[t]);
                if (p->failed)
                        return;
                edit (table, layout);
                vhdx_gen_update_region_table_checksum (table);
                patch_write (p, table, VHDX_REGION_TABLE_SIZE, layout->region_table_offset[t]);
        }
}

/* Set LogGuid in both headers. */
static void
set_log_guid (Patch *p, const VhdxGenLayout *layout, const VhdxGuid *guid)
{
        guint8 header[VHDX_HEADER_SIZE];

        for (guint h = 0; h < 2; h++) {
                patch_read (p, header, sizeof header, layout->header_offset[h]);
                if (p->failed)
                        return;
                memcpy (header + VHDX_HEADER_OFF_LOG_GUID, guid->bytes, 16);
                vhdx_gen_update_header_checksum (header);
                patch_write (p, header, sizeof header, layout->header_offset[h]);
        }
}

static void
set_huge_bat (guint8 *table, const VhdxGenLayout *layout)
{
        guint8 *e =
                table + VHDX_REGION_HEADER_SIZE + layout->region_index_bat * VHDX_REGION_ENTRY_SIZE;

        vhdx_put_le32 (e + VHDX_REGION_ENTRY_OFF_LENGTH, 513 * MiB);
}

/* 2047 regions, the most a table may list: unknown, not required ones. */
static void
add_regions (guint8 *table, const VhdxGenLayout *layout)
{
        guint64 end = (layout->file_size + MiB - 1) / MiB * MiB;

        vhdx_put_le32 (table + VHDX_REGION_OFF_ENTRY_COUNT, VHDX_REGION_MAX_ENTRIES);
        for (guint i = 2; i < VHDX_REGION_MAX_ENTRIES; i++) {
                guint8 *e = table + VHDX_REGION_HEADER_SIZE + i * VHDX_REGION_ENTRY_SIZE;
                memset (e, 0, VHDX_REGION_ENTRY_SIZE);
                vhdx_put_le32 (e, 0x51000000 + i);
                vhdx_put_le64 (e + VHDX_REGION_ENTRY_OFF_FILE_OFFSET, end + (guint64) i * MiB);
                vhdx_put_le32 (e + VHDX_REGION_ENTRY_OFF_LENGTH, MiB);
        }
}

static void
add_metadata_entries (Patch *p, const VhdxGenLayout *layout)
{
        g_autofree guint8 *table = g_malloc (VHDX_METADATA_TABLE_SIZE);

        patch_read (p, table, VHDX_METADATA_TABLE_SIZE, layout->metadata_offset);
        if (p->failed)
                return;
        /* The five items, then empty unknown ones. */
        vhdx_put_le16 (table + VHDX_METADATA_OFF_ENTRY_COUNT, VHDX_METADATA_MAX_ENTRIES);
        for (guint i = VHDX_GEN_N_ITEMS; i < VHDX_METADATA_MAX_ENTRIES; i++) {
                guint8 *e = table + VHDX_METADATA_HEADER_SIZE + i * VHDX_METADATA_ENTRY_SIZE;
                memset (e, 0, VHDX_METADATA_ENTRY_SIZE);
                vhdx_put_le32 (e, 0x4d000000 + i);
        }
        patch_write (p, table, VHDX_METADATA_TABLE_SIZE, layout->metadata_offset);
}

/* A log entry header without descriptors at @position of @log, its checksum
 * over @checksum_length bytes (0: left wrong). */
static void
put_entry (guint8 *log,
           guint32 position,
           guint32 length,
           guint32 tail,
           guint64 sequence,
           const VhdxGuid *guid,
           guint32 checksum_length)
{
        guint8 *h = log + position;

        memcpy (h, VHDX_LOG_ENTRY_SIGNATURE, 4);
        vhdx_put_le32 (h + VHDX_LOG_OFF_ENTRY_LENGTH, length);
        vhdx_put_le32 (h + VHDX_LOG_OFF_TAIL, tail);
        vhdx_put_le64 (h + VHDX_LOG_OFF_SEQUENCE, sequence);
        vhdx_put_le32 (h + VHDX_LOG_OFF_DESCRIPTOR_COUNT, 0);
        memcpy (h + VHDX_LOG_OFF_LOG_GUID, guid->bytes, 16);
        if (checksum_length > 0)
                vhdx_put_le32 (h + VHDX_LOG_OFF_CHECKSUM,
                               vhdx_crc32c_with_zero_field (h, checksum_length,
                                                            VHDX_LOG_OFF_CHECKSUM));
}

/* The longest log allowed, full of data: 0x5a sectors past the end of the file. */
static void
fill_log (Patch *p, VhdxHostileImage *image, const VhdxGuid *guid)
{
        g_autoptr (VhdxIo) io = vhdx_io_new_fd (p->fd, FALSE);
        g_autoptr (VhdxLogWriter) writer = NULL;
        guint8 sector[VHDX_LOG_SECTOR_SIZE];
        guint32 log_length = image->log_length;

        /* Descriptor sectors plus one data sector per descriptor fill the log. */
        image->log_writes = (log_length / VHDX_LOG_SECTOR_SIZE) * 127 / 128 - 1;
        image->log_target = (image->layout.file_size + MiB - 1) / MiB * MiB;
        memset (sector, 0x5a, sizeof sector);
        writer = vhdx_log_writer_new (io, image->layout.log_offset, log_length, guid, 0, 1);
        for (guint i = 0; i < image->log_writes; i++)
                vhdx_log_writer_add_data (writer,
                                          image->log_target + (guint64) i * VHDX_LOG_SECTOR_SIZE,
                                          sector);
        if (!p->failed && !vhdx_log_writer_commit (writer, image->layout.file_size,
                                                   image->log_target + (guint64) image->log_writes *
                                                                               VHDX_LOG_SECTOR_SIZE,
                                                   p->error))
                p->failed = TRUE;
}

static guint32
log_length_of (VhdxHostileKind kind)
{
        switch (kind) {
        case VHDX_HOSTILE_LOG_TOO_LONG:
                return VHDX_LOG_MAX_LENGTH + MiB;
        case VHDX_HOSTILE_LOG_FULL:
                return VHDX_LOG_MAX_LENGTH;
        case VHDX_HOSTILE_LOG_LONG_CHAIN:
        case VHDX_HOSTILE_LOG_OVERLAPPING:
                return 16 * MiB;
        default:
                return MiB;
        }
}

gboolean
vhdx_hostile_write (VhdxHostileKind kind, const char *path, VhdxHostileImage *image, GError **error)
{
        g_autoptr (VhdxGen) gen = NULL;
        g_autofree guint8 *log = NULL;
        VhdxGenParams params;
        VhdxGuid log_guid;
        Patch p = { path, -1, error, FALSE };
        guint8 size[8];

        g_return_val_if_fail (kind < VHDX_HOSTILE_N_KINDS, FALSE);

        memset (image, 0, sizeof *image);
        image->log_length = log_length_of (kind);
        vhdx_gen_params_init (&params);
        params.virtual_size = 8 * MiB;
        params.block_size = MiB;
        params.log_size = image->log_length;
        gen = vhdx_gen_new (&params);
        vhdx_gen_fill_pattern (gen, 0, 4096, 1);
        vhdx_gen_get_layout (gen, &image->layout);
        if (!vhdx_gen_write_file (gen, path, error))
                return FALSE;
        p.fd = open (path, O_RDWR | O_CLOEXEC);
        if (p.fd < 0) {
                set_errno (&p, "open");
                return FALSE;
        }
        /* Fixed, so that every image of a kind is the same file. */
        log_guid = vhdx_gen_guid_from_text ("5e1f7a3c-0b9d-4e26-8c41-d2a6b3f09e17");

        switch (kind) {
        case VHDX_HOSTILE_HUGE_DISK:
                vhdx_put_le64 (size, 64 * VHDX_TiB);
                patch_write (&p, size, 8,
                             image->layout.metadata_item_offset[VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE]);
                edit_region_tables (&p, set_huge_bat, &image->layout);
                patch_truncate (&p, image->layout.bat_offset + 513 * MiB);
                break;
        case VHDX_HOSTILE_FULL_TABLES:
                edit_region_tables (&p, add_regions, &image->layout);
                patch_truncate (&p, (image->layout.file_size + MiB - 1) / MiB * MiB +
                                            (guint64) VHDX_REGION_MAX_ENTRIES * MiB);
                add_metadata_entries (&p, &image->layout);
                break;
        case VHDX_HOSTILE_LOG_TOO_LONG:
                set_log_guid (&p, &image->layout, &log_guid);
                break;
        case VHDX_HOSTILE_LOG_FULL:
                set_log_guid (&p, &image->layout, &log_guid);
                fill_log (&p, image, &log_guid);
                break;
        case VHDX_HOSTILE_LOG_LONG_CHAIN: {
                /* Consecutive sequence numbers, but every Tail points outside the chain. */
                guint n = image->log_length / VHDX_LOG_SECTOR_SIZE - 1;

                set_log_guid (&p, &image->layout, &log_guid);
                log = g_malloc0 (image->log_length);
                for (guint i = 0; i < n; i++)
                        put_entry (log, i * VHDX_LOG_SECTOR_SIZE, VHDX_LOG_SECTOR_SIZE,
                                   n * VHDX_LOG_SECTOR_SIZE, i + 1, &log_guid,
                                   VHDX_LOG_SECTOR_SIZE);
                patch_write (&p, log, image->log_length, image->layout.log_offset);
                break;
        }
        case VHDX_HOSTILE_LOG_OVERLAPPING:
                set_log_guid (&p, &image->layout, &log_guid);
                log = g_malloc0 (image->log_length);
                for (guint32 pos = 0; pos < image->log_length; pos += VHDX_LOG_SECTOR_SIZE)
                        put_entry (log, pos, image->log_length - pos, 0,
                                   1 + pos / VHDX_LOG_SECTOR_SIZE, &log_guid, 0);
                patch_write (&p, log, image->log_length, image->layout.log_offset);
                break;
        default:
                g_assert_not_reached ();
        }
        close (p.fd);
        return !p.failed;
}
