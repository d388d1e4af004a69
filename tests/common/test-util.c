/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "test-util.h"

#include "vhdx-crc32c.h"
#include "vhdx-gen.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

char *
test_tmpdir_new (void)
{
        g_autoptr (GError) error = NULL;
        char *path = g_dir_make_tmp ("libvhdx-test-XXXXXX", &error);

        g_assert_no_error (error);
        return path;
}

static void
remove_tree (const char *path)
{
        g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
        const char *name;

        if (dir != NULL) {
                while ((name = g_dir_read_name (dir)) != NULL) {
                        g_autofree char *child = g_build_filename (path, name, NULL);
                        if (g_file_test (child, G_FILE_TEST_IS_DIR) &&
                            !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
                                remove_tree (child);
                        else
                                g_unlink (child);
                }
        }
        g_rmdir (path);
}

void
test_tmpdir_free (char *path)
{
        if (path == NULL)
                return;
        remove_tree (path);
        g_free (path);
}

gboolean
test_have_program (const char *program)
{
        g_autofree char *path = g_find_program_in_path (program);

        return path != NULL;
}

void
test_run (const char *const *argv)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *out = NULL;
        g_autofree char *err = NULL;
        g_autofree char *cmdline = g_strjoinv (" ", (char **) argv);
        int status = 0;

        g_test_message ("running: %s", cmdline);
        g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                      &status, &error);
        g_assert_no_error (error);
        if (!g_spawn_check_wait_status (status, &error))
                g_error ("%s failed: %s\n%s%s", cmdline, error->message, out, err);
}

VhdxFile *
test_open_path (const char *path, GError **error)
{
        int fd = open (path, O_RDONLY | O_CLOEXEC);

        if (fd < 0) {
                g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "%s: %s", path,
                             g_strerror (errno));
                return NULL;
        }
        {
                /* With its path, so that a differencing image finds its parent. */
                VhdxOpenOptions options = { .path = path };
                return vhdx_file_open_full (vhdx_io_new_fd (fd, TRUE), VHDX_OPEN_FLAGS_NONE,
                                            &options, error);
        }
}

char *
test_sha256_file (const char *path)
{
        g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
        g_autofree guint8 *buf = g_malloc (1 << 20);
        int fd = open (path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        g_assert_cmpint (fd, >=, 0);
        while ((n = read (fd, buf, 1 << 20)) > 0)
                g_checksum_update (sum, buf, n);
        g_assert_cmpint (n, ==, 0);
        close (fd);
        return g_strdup (g_checksum_get_string (sum));
}

char *
test_sha256_virtual_disk (VhdxFile *file)
{
        const VhdxInfo *info = vhdx_file_get_info (file);
        g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
        const gsize chunk = 8 << 20;
        g_autofree guint8 *buf = g_malloc (chunk);

        for (guint64 offset = 0; offset < info->virtual_size;) {
                g_autoptr (GError) error = NULL;
                gsize n = (gsize) MIN ((guint64) chunk, info->virtual_size - offset);
                test_assert_ok (vhdx_file_read (file, offset, buf, n, &error), error);
                g_checksum_update (sum, buf, n);
                offset += n;
        }
        return g_strdup (g_checksum_get_string (sum));
}

void
test_assert_range_equal (VhdxFile *file, int raw_fd, guint64 offset, gsize length)
{
        g_autoptr (GError) error = NULL;
        g_autofree guint8 *got = g_malloc (MAX (length, 1));
        g_autofree guint8 *want = g_malloc0 (MAX (length, 1));
        gsize done = 0;

        test_assert_ok (vhdx_file_read (file, offset, got, length, &error), error);
        while (done < length) {
                ssize_t n = pread (raw_fd, want + done, length - done, (off_t) (offset + done));
                g_assert_cmpint (n, >=, 0);
                if (n == 0)
                        break; /* a raw file may end in a hole: the rest is zeros */
                done += (gsize) n;
        }
        if (memcmp (got, want, length) != 0) {
                for (gsize i = 0; i < length; i++) {
                        if (got[i] != want[i])
                                g_error ("read of %" G_GUINT64_FORMAT "+%" G_GSIZE_FORMAT
                                         " differs at virtual offset %" G_GUINT64_FORMAT
                                         ": got 0x%02x, want 0x%02x",
                                         offset, length, offset + i, got[i], want[i]);
                }
        }
}

char *
test_samples_dir (void)
{
        const char *shared = g_getenv ("VHDX_SHARED_DIR");
        g_autofree char *dir = NULL;

        if (shared == NULL)
                return NULL;
        dir = g_build_filename (shared, "samples", NULL);
        if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
                return NULL;
        return g_steal_pointer (&dir);
}

void
test_assert_bytes_equal (const guint8 *found,
                         const guint8 *expected,
                         gsize length,
                         guint64 offset,
                         const char *what)
{
        if (memcmp (found, expected, length) == 0)
                return;
        for (gsize i = 0; i < length; i++) {
                if (found[i] != expected[i])
                        g_error ("%s: %" G_GSIZE_FORMAT " bytes at %" G_GUINT64_FORMAT
                                 " differ first at virtual offset %" G_GUINT64_FORMAT
                                 ": found 0x%02x, expected 0x%02x",
                                 what, length, offset, offset + i, found[i], expected[i]);
        }
}

char *
test_guid_to_text (const guint8 *bytes)
{
        return g_strdup_printf ("%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                                (guint) bytes[0] | (guint) bytes[1] << 8 | (guint) bytes[2] << 16 |
                                        (guint) bytes[3] << 24,
                                (guint) bytes[4] | (guint) bytes[5] << 8,
                                (guint) bytes[6] | (guint) bytes[7] << 8, bytes[8], bytes[9],
                                bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]);
}

/* Taking a file apart by hand */

static void
pread_exact (int fd, void *buf, gsize length, guint64 offset)
{
        gsize done = 0;

        while (done < length) {
                ssize_t n =
                        pread (fd, (guint8 *) buf + done, length - done, (off_t) (offset + done));
                g_assert_cmpint (n, >, 0);
                done += (gsize) n;
        }
}

static gboolean
spec_checksum_ok (const guint8 *structure, gsize length)
{
        g_autofree guint8 *copy = g_memdup2 (structure, length);

        memset (copy + 4, 0, 4);
        return vhdx_crc32c (0, copy, length) == vhdx_get_le32 (structure + 4);
}

void
test_spec_read_layout (const char *path, TestSpecLayout *layout)
{
        /* The metadata item of a parent locator, as MS-VHDX names it. */
        const VhdxGuid parent_locator_item =
                vhdx_gen_guid_from_text ("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");
        g_autofree guint8 *headers = g_malloc (2 * 4096);
        g_autofree guint8 *table = g_malloc (64 * 1024);
        g_autofree guint8 *metadata = g_malloc (64 * 1024);
        gboolean valid[2];
        guint h, t;
        int fd = open (path, O_RDONLY | O_CLOEXEC);

        g_assert_cmpint (fd, >=, 0);
        memset (layout, 0, sizeof *layout);
        pread_exact (fd, headers, 8, 0);
        g_assert_true (memcmp (headers, "vhdxfile", 8) == 0);

        /* Headers at 64 KiB and 128 KiB: "head", CRC-32C over 4 KiB. */
        for (h = 0; h < 2; h++) {
                guint8 *p = headers + h * 4096;
                pread_exact (fd, p, 4096, (h + 1) * 64 * 1024);
                valid[h] = memcmp (p, "head", 4) == 0 && spec_checksum_ok (p, 4096);
        }
        g_assert_true (valid[0] || valid[1]);
        if (valid[0] && valid[1])
                h = vhdx_get_le64 (headers + 4096 + 8) > vhdx_get_le64 (headers + 8) ? 1 : 0;
        else
                h = valid[0] ? 0 : 1;
        {
                const guint8 *p = headers + h * 4096;
                layout->header_index = h + 1;
                layout->header_offset = (h + 1) * 64 * 1024;
                layout->header_sequence = vhdx_get_le64 (p + 8);
                memcpy (layout->file_write_guid, p + 16, 16);
                memcpy (layout->data_write_guid, p + 32, 16);
                memcpy (layout->log_guid, p + 48, 16);
                layout->log_length = vhdx_get_le32 (p + 68);
                layout->log_offset = vhdx_get_le64 (p + 72);
        }

        /* Region tables at 192 KiB and 256 KiB: "regi", CRC-32C over 64 KiB. */
        for (t = 0; t < 2; t++) {
                pread_exact (fd, table, 64 * 1024, (3 + t) * 64 * 1024);
                if (memcmp (table, "regi", 4) == 0 && spec_checksum_ok (table, 64 * 1024))
                        break;
        }
        g_assert_cmpuint (t, <, 2);
        layout->region_table_index = t + 1;
        for (guint32 i = 0; i < vhdx_get_le32 (table + 8); i++) {
                const guint8 *e = table + 16 + 32 * i;
                g_assert_cmpuint (16 + 32 * (i + 1), <=, 64 * 1024);
                if (memcmp (e, vhdx_gen_guid_bat.bytes, 16) == 0) {
                        layout->bat_offset = vhdx_get_le64 (e + 16);
                        layout->bat_length = vhdx_get_le32 (e + 24);
                } else if (memcmp (e, vhdx_gen_guid_metadata.bytes, 16) == 0) {
                        layout->metadata_offset = vhdx_get_le64 (e + 16);
                        layout->metadata_length = vhdx_get_le32 (e + 24);
                }
        }
        g_assert_cmpuint (layout->bat_offset, !=, 0);
        g_assert_cmpuint (layout->metadata_offset, !=, 0);

        /* The metadata table: "metadata", entries of 32 bytes from byte 32. */
        pread_exact (fd, metadata, 64 * 1024, layout->metadata_offset);
        g_assert_true (memcmp (metadata, "metadata", 8) == 0);
        for (guint i = 0; i < vhdx_get_le16 (metadata + 10); i++) {
                const guint8 *e = metadata + 32 + 32 * i;
                guint64 item = layout->metadata_offset + vhdx_get_le32 (e + 16);
                guint32 length = vhdx_get_le32 (e + 20);
                guint8 value[16];

                if (memcmp (e, parent_locator_item.bytes, 16) == 0) {
                        layout->parent_locator_offset = item;
                        layout->parent_locator_length = length;
                        continue;
                }
                if (length > sizeof value)
                        continue;
                pread_exact (fd, value, length, item);
                if (memcmp (e, vhdx_gen_guid_item[VHDX_GEN_ITEM_FILE_PARAMETERS].bytes, 16) == 0) {
                        layout->block_size = vhdx_get_le32 (value);
                        layout->leave_blocks_allocated = (vhdx_get_le32 (value + 4) & 1) != 0;
                        layout->has_parent = (vhdx_get_le32 (value + 4) & 2) != 0;
                } else if (memcmp (e, vhdx_gen_guid_item[VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE].bytes,
                                   16) == 0) {
                        layout->virtual_size = vhdx_get_le64 (value);
                } else if (memcmp (e, vhdx_gen_guid_item[VHDX_GEN_ITEM_VIRTUAL_DISK_ID].bytes,
                                   16) == 0) {
                        memcpy (layout->virtual_disk_id, value, 16);
                } else if (memcmp (e, vhdx_gen_guid_item[VHDX_GEN_ITEM_LOGICAL_SECTOR_SIZE].bytes,
                                   16) == 0) {
                        layout->logical_sector_size = vhdx_get_le32 (value);
                } else if (memcmp (e, vhdx_gen_guid_item[VHDX_GEN_ITEM_PHYSICAL_SECTOR_SIZE].bytes,
                                   16) == 0) {
                        layout->physical_sector_size = vhdx_get_le32 (value);
                }
        }
        close (fd);
        g_assert_cmpuint (layout->block_size, >, 0);
        g_assert_cmpuint (layout->logical_sector_size, >, 0);
        g_assert_cmpuint (layout->virtual_size, >, 0);

        /* MS-VHDX 2.5: the chunk ratio and the number of blocks. */
        layout->chunk_ratio =
                (G_GUINT64_CONSTANT (1) << 23) * layout->logical_sector_size / layout->block_size;
        layout->payload_blocks =
                (layout->virtual_size + layout->block_size - 1) / layout->block_size;
        layout->sector_bitmap_blocks =
                (layout->payload_blocks + layout->chunk_ratio - 1) / layout->chunk_ratio;
}

guint64
test_spec_payload_index (const TestSpecLayout *layout, guint64 block)
{
        return block + block / layout->chunk_ratio;
}

guint64
test_spec_bitmap_index (const TestSpecLayout *layout, guint64 chunk)
{
        return chunk * (layout->chunk_ratio + 1) + layout->chunk_ratio;
}

guint64
test_spec_read_bat_entry (const char *path, const TestSpecLayout *layout, guint64 index)
{
        guint8 entry[8];
        int fd = open (path, O_RDONLY | O_CLOEXEC);

        g_assert_cmpint (fd, >=, 0);
        g_assert_cmpuint ((index + 1) * 8, <=, layout->bat_length);
        pread_exact (fd, entry, 8, layout->bat_offset + index * 8);
        close (fd);
        return vhdx_get_le64 (entry);
}

guint64 *
test_spec_read_payload_entries (const char *path, const TestSpecLayout *layout)
{
        guint64 last = test_spec_payload_index (layout, layout->payload_blocks - 1);
        g_autofree guint8 *bat = g_malloc ((last + 1) * 8);
        guint64 *entries = g_new (guint64, layout->payload_blocks);
        int fd = open (path, O_RDONLY | O_CLOEXEC);

        g_assert_cmpint (fd, >=, 0);
        g_assert_cmpuint ((last + 1) * 8, <=, layout->bat_length);
        pread_exact (fd, bat, (last + 1) * 8, layout->bat_offset);
        close (fd);
        for (guint64 b = 0; b < layout->payload_blocks; b++)
                entries[b] = vhdx_get_le64 (bat + test_spec_payload_index (layout, b) * 8);
        return entries;
}

/* Extents from a model */

static void
model_append (GArray *extents, const VhdxMapExtent *e)
{
        if (extents->len > 0) {
                VhdxMapExtent *last = &g_array_index (extents, VhdxMapExtent, extents->len - 1);
                if (last->kind == e->kind && last->present == e->present &&
                    last->depth == e->depth &&
                    (e->kind != VHDX_EXTENT_DATA ||
                     last->file_offset + last->length == e->file_offset)) {
                        last->length += e->length;
                        return;
                }
        }
        g_array_append_val (extents, *e);
}

GArray *
test_model_extents (guint64 offset,
                    guint64 length,
                    guint32 granule,
                    TestExtentFunc func,
                    gpointer user_data)
{
        GArray *extents = g_array_new (FALSE, TRUE, sizeof (VhdxMapExtent));
        guint64 end = offset + length;

        for (guint64 at = offset; at < end;) {
                guint64 next = MIN (end, (at / granule + 1) * granule);
                VhdxMapExtent e = { 0 };

                func (at, &e, user_data);
                e.offset = at;
                e.length = next - at;
                if (e.kind != VHDX_EXTENT_DATA)
                        e.file_offset = 0;
                model_append (extents, &e);
                at = next;
        }
        return extents;
}

static void
print_extents (const char *title, GArray *extents)
{
        g_test_message ("%s:", title);
        for (guint i = 0; i < extents->len; i++) {
                const VhdxMapExtent *e = &g_array_index (extents, VhdxMapExtent, i);
                g_test_message ("  %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                                " %s present=%d depth=%u file=%" G_GUINT64_FORMAT,
                                e->offset, e->length, e->kind == VHDX_EXTENT_DATA ? "data" : "zero",
                                e->present, e->depth, e->file_offset);
        }
}

void
test_assert_extents_equal (GArray *found, GArray *expected, const char *what)
{
        gboolean equal = found->len == expected->len;

        for (guint i = 0; equal && i < found->len; i++) {
                const VhdxMapExtent *a = &g_array_index (found, VhdxMapExtent, i);
                const VhdxMapExtent *b = &g_array_index (expected, VhdxMapExtent, i);
                equal = a->offset == b->offset && a->length == b->length && a->kind == b->kind &&
                        a->present == b->present && a->depth == b->depth &&
                        a->file_offset == b->file_offset;
        }
        if (equal)
                return;
        print_extents ("found", found);
        print_extents ("expected", expected);
        g_error ("%s: the extents differ from the expected ones", what);
}

/* Log entries by hand */

GByteArray *
test_log_entry_new (const VhdxGuid *log_guid,
                    guint64 sequence,
                    guint32 tail,
                    guint64 flushed_file_offset,
                    guint64 last_file_offset,
                    const TestLogUpdate *updates,
                    guint n_updates)
{
        const guint32 sector = 4096;
        guint32 n_data = 0;
        guint32 head_length, length;
        GByteArray *entry;
        guint8 *p;

        for (guint i = 0; i < n_updates; i++)
                n_data += updates[i].data != NULL;
        /* The 64-byte header and 32-byte descriptors, padded to a sector. */
        head_length = (64 + 32 * n_updates + sector - 1) / sector * sector;
        length = head_length + n_data * sector;
        entry = g_byte_array_sized_new (length);
        g_byte_array_set_size (entry, length);
        p = entry->data;
        memset (p, 0, length);

        memcpy (p, "loge", 4);
        vhdx_put_le32 (p + 8, length);
        vhdx_put_le32 (p + 12, tail);
        vhdx_put_le64 (p + 16, sequence);
        vhdx_put_le32 (p + 24, n_updates);
        memcpy (p + 32, log_guid->bytes, 16);
        vhdx_put_le64 (p + 48, flushed_file_offset);
        vhdx_put_le64 (p + 56, last_file_offset);

        for (guint i = 0, d = 0; i < n_updates; i++) {
                guint8 *desc = p + 64 + 32 * i;
                const TestLogUpdate *u = &updates[i];

                g_assert_cmpuint (u->file_offset % sector, ==, 0);
                vhdx_put_le64 (desc + 16, u->file_offset);
                vhdx_put_le64 (desc + 24, sequence);
                if (u->data == NULL) {
                        g_assert_cmpuint (u->zero_length % sector, ==, 0);
                        memcpy (desc, "zero", 4);
                        vhdx_put_le64 (desc + 8, u->zero_length);
                } else {
                        /* The first 8 and the last 4 bytes of the sector live
                         * in the descriptor, the rest in a data sector between
                         * the two halves of the sequence number. */
                        guint8 *data = p + head_length + d++ * sector;
                        memcpy (desc, "desc", 4);
                        memcpy (desc + 4, u->data + sector - 4, 4);
                        memcpy (desc + 8, u->data, 8);
                        memcpy (data, "data", 4);
                        vhdx_put_le32 (data + 4, (guint32) (sequence >> 32));
                        memcpy (data + 8, u->data + 8, sector - 12);
                        vhdx_put_le32 (data + sector - 4, (guint32) sequence);
                }
        }
        vhdx_put_le32 (p + 4, vhdx_crc32c (0, p, length));
        return entry;
}

void
test_headers_set_log_guid (guint8 *image, const VhdxGuid *log_guid)
{
        for (guint h = 0; h < 2; h++) {
                guint8 *header = image + (h + 1) * 64 * 1024;
                memcpy (header + 48, log_guid->bytes, 16);
                vhdx_gen_update_header_checksum (header);
        }
}
