/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes the seed corpora of the fuzz targets: OUTDIR/open, OUTDIR/read,
 * OUTDIR/log and OUTDIR/locator.  Seeds are generated at build time rather
 * than committed, since a VHDX file is megabytes; in the sparse encoding of
 * fuzz-common.h each one takes a few KiB.  Then STAMP is written.
 *
 * Usage: make-seeds OUTDIR STAMP
 */
#include "fuzz-common.h"
#include "vhdx-gen.h"
#include "vhdx-log-writer.h"
#include "vhdx-parent.h"
#include "vhdx-create.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <stdio.h>

#define MiB VHDX_MiB

static const char *outdir;

/* The seeds come from the project's writers: a failure of theirs stops the build. */
static void
must_succeed (gboolean ok, GError **error)
{
        if (!ok)
                g_error ("making a seed failed: %s", *error != NULL ? (*error)->message : "?");
}

static void
save (const char *target, const char *name, const guint8 *data, gsize len)
{
        g_autofree char *dir = g_build_filename (outdir, target, NULL);
        g_autofree char *path = g_build_filename (dir, name, NULL);
        g_autoptr (GError) error = NULL;

        if (g_mkdir_with_parents (dir, 0755) < 0)
                g_error ("%s: %s", dir, g_strerror (errno));
        if (!g_file_set_contents (path, (const char *) data, (gssize) len, &error))
                g_error ("%s", error->message);
}

/* A read operation of fuzz-read's tail. */
static void
add_op (GByteArray *ops, guint kind, guint64 offset, guint32 length)
{
        guint8 op[9];

        op[0] = (guint8) kind;
        vhdx_put_le32 (op + 1, (guint32) offset);
        op[5] = (guint8) (offset >> 32);
        op[6] = (guint8) length;
        op[7] = (guint8) (length >> 8);
        op[8] = (guint8) (length >> 16);
        g_byte_array_append (ops, op, sizeof op);
}

/* Save @file as a seed of fuzz-open, and of fuzz-read with and without reads. */
static void
save_image (const char *name, GBytes *file, guint64 virtual_size)
{
        g_autoptr (GByteArray) plain = g_byte_array_new ();
        g_autoptr (GByteArray) with_ops = g_byte_array_new ();
        g_autoptr (GByteArray) ops = g_byte_array_new ();
        g_autofree char *ops_name = g_strconcat (name, "-ops", NULL);

        fuzz_image_encode (file, FUZZ_FLAG_FIX_CHECKSUMS, NULL, 0, plain);
        save ("open", name, plain->data, plain->len);
        save ("read", name, plain->data, plain->len);

        add_op (ops, 0, 0, 64 * 1024);
        add_op (ops, 0, MiB - 700, 1400); /* across a block boundary */
        add_op (ops, 0, 3 * 512, 3 * 512);
        add_op (ops, 2, 8192, 8192); /* the end of the disk */
        add_op (ops, 1, 0, (guint32) (virtual_size / 4096));
        add_op (ops, 1, 4096, 300);
        add_op (ops, 0, virtual_size - 512, 1024); /* past the end */
        fuzz_image_encode (file, FUZZ_FLAG_FIX_CHECKSUMS, ops->data, ops->len, with_ops);
        save ("read", ops_name, with_ops->data, with_ops->len);
}

/* Sparse contents: a few sectors here and there, so the encoding stays small. */
static void
write_sectors (VhdxGen *gen, guint64 offset, guint64 len, guint32 seed)
{
        vhdx_gen_fill_pattern (gen, offset, len, seed);
}

static void
seed_generated (void)
{
        static const struct {
                const char *name;
                VhdxDiskType type;
                guint64 virtual_size;
                guint32 logical, physical;
                gboolean metadata_first, identical, shuffle, extra;
                guint32 zero_state;
        } images[] = {
                { "fixed", VHDX_DISK_TYPE_FIXED, 4 * MiB, 512, 512, FALSE, FALSE, FALSE, FALSE, 0 },
                { "dynamic", VHDX_DISK_TYPE_DYNAMIC, 8 * MiB, 512, 4096, FALSE, FALSE, FALSE, FALSE,
                  0 },
                { "dynamic-disk2vhd", VHDX_DISK_TYPE_DYNAMIC, 8 * MiB, 512, 4096, TRUE, TRUE, TRUE,
                  FALSE, VHDX_PAYLOAD_ZERO },
                { "dynamic-4k", VHDX_DISK_TYPE_DYNAMIC, 3 * MiB + 3 * 4096, 4096, 4096, FALSE,
                  FALSE, FALSE, FALSE, 0 },
                { "dynamic-extra", VHDX_DISK_TYPE_DYNAMIC, 4 * MiB, 512, 512, FALSE, FALSE, FALSE,
                  TRUE, 0 },
        };

        for (guint i = 0; i < G_N_ELEMENTS (images); i++) {
                g_autoptr (VhdxGen) gen = NULL;
                g_autoptr (GBytes) file = NULL;
                VhdxGenParams params;
                guint64 vs = images[i].virtual_size;

                vhdx_gen_params_init (&params);
                params.disk_type = images[i].type;
                params.virtual_size = vs;
                params.block_size = MiB;
                params.logical_sector_size = images[i].logical;
                params.physical_sector_size = images[i].physical;
                params.metadata_region_first = images[i].metadata_first;
                params.identical_headers = images[i].identical;
                params.shuffle_blocks = images[i].shuffle;
                params.zero_state = images[i].zero_state;
                params.seed = 20 + i;
                gen = vhdx_gen_new (&params);
                g_assert (gen != NULL);
                write_sectors (gen, 0, 512, 1);
                write_sectors (gen, MiB - 256, 512, 2);
                write_sectors (gen, vs - 512, 512, 3);
                if (images[i].extra) {
                        static const guint8 value[4] = { 1, 2, 3, 4 };
                        VhdxGuid region =
                                vhdx_gen_guid_from_text ("a1b2c3d4-0000-4000-8000-000000000001");
                        VhdxGuid item =
                                vhdx_gen_guid_from_text ("da02d7bc-3d3a-423c-ac88-2a36ab21479b");
                        vhdx_gen_add_region (gen, &region, FALSE, MiB);
                        vhdx_gen_add_metadata_item (gen, &item, VHDX_METADATA_FLAG_IS_VIRTUAL_DISK,
                                                    value, sizeof value);
                }
                file = vhdx_gen_build (gen);
                save_image (images[i].name, file, vs);

                if (i == 1) {
                        /* The same image, cut short inside its BAT. */
                        g_autoptr (GBytes) cut = g_bytes_new_from_bytes (file, 0, 3 * MiB + 4096);
                        save_image ("dynamic-truncated", cut, vs);
                }
        }
}

static GBytes *
write_differencing (guint32 sector_size, const char *relative_path, gboolean full_block)
{
        g_autoptr (FuzzImage) image = fuzz_image_new (NULL, 0);
        g_autoptr (VhdxIo) io = fuzz_image_new_io (image, TRUE, 0);
        g_autoptr (VhdxCreator) writer = NULL;
        g_autoptr (GError) error = NULL;
        g_autofree guint8 *buf = g_malloc (MiB);
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DIFFERENCING,
                .virtual_size = fuzz_parent_virtual_size (),
                .block_size = fuzz_parent_block_size (),
                .logical_sector_size = sector_size,
                .parent_data_write_guid = fuzz_parent_data_write_guid (),
                .parent_relative_path = relative_path,
                .parent_absolute_path = "C:/vms/" FUZZ_PARENT_NAME,
        };

        writer = vhdx_creator_new (io, &params, &error);
        g_assert_no_error (error);
        vhdx_gen_pattern_fill_buffer (buf, 0, MiB, 9);
        /* Partly present blocks 0 and 1, and (optionally) block 3 whole. */
        must_succeed (vhdx_creator_write (writer, sector_size, buf, sector_size, &error), &error);
        must_succeed (vhdx_creator_write (writer, 8 * sector_size, buf, 3 * sector_size, &error),
                      &error);
        must_succeed (vhdx_creator_write (writer, MiB + 4096, buf, 4096, &error), &error);
        if (full_block) {
                memset (buf + 512, 0, MiB - 1024);
                must_succeed (vhdx_creator_write (writer, 3 * MiB, buf, MiB, &error), &error);
        }
        must_succeed (vhdx_creator_finish (writer, &error), &error);
        return fuzz_image_to_bytes (image);
}

static void
seed_differencing (void)
{
        g_autoptr (GBytes) diff = write_differencing (512, FUZZ_PARENT_NAME, TRUE);
        g_autoptr (GBytes) partial = write_differencing (512, "..\\fuzz\\" FUZZ_PARENT_NAME, FALSE);
        g_autoptr (GBytes) loop = write_differencing (512, FUZZ_CHILD_NAME, FALSE);
        g_autoptr (GBytes) sectors_4k = write_differencing (4096, FUZZ_PARENT_NAME, FALSE);

        save_image ("differencing", diff, fuzz_parent_virtual_size ());
        save_image ("differencing-relative", partial, fuzz_parent_virtual_size ());
        save_image ("differencing-loop", loop, fuzz_parent_virtual_size ());
        save_image ("differencing-4k-mismatch", sectors_4k, fuzz_parent_virtual_size ());
}

/* The log seeds, written by the engine's log writer into the template. */
typedef enum {
        LOG_ONE_ENTRY,
        LOG_SEVERAL_ENTRIES,
        LOG_WRAPS,
        LOG_ZERO_DESCRIPTORS,
        LOG_MANY_DESCRIPTORS,
        LOG_STALE_ENTRIES,
        LOG_TORN_HEAD,
        LOG_EXTENDS_FILE,
        LOG_PAYLOAD,
        N_LOG_SHAPES
} LogShape;

static const char *const log_shape_names[N_LOG_SHAPES] = {
        "one-entry",     "several-entries", "wraps",        "zero-descriptors", "many-descriptors",
        "stale-entries", "torn-head",       "extends-file", "payload",
};

/* BAT offset of the template, from its first region table. */
static guint64
template_bat_offset (GBytes *template)
{
        const guint8 *data = g_bytes_get_data (template, NULL);
        const guint8 *table = data + VHDX_REGION_TABLE1_OFFSET;
        guint32 count = vhdx_get_le32 (table + VHDX_REGION_OFF_ENTRY_COUNT);

        for (guint32 i = 0; i < count; i++) {
                const guint8 *e = table + VHDX_REGION_HEADER_SIZE + i * VHDX_REGION_ENTRY_SIZE;
                VhdxGuid guid = vhdx_get_guid (e);
                if (vhdx_guid_equal (&guid, &vhdx_guid_region_bat))
                        return vhdx_get_le64 (e + VHDX_REGION_ENTRY_OFF_FILE_OFFSET);
        }
        g_assert_not_reached ();
}

/* The template's BAT sector holding entry @index, with that entry set to @entry. */
static void
bat_sector (FuzzImage *image,
            guint64 bat_offset,
            guint64 index,
            guint64 entry,
            guint8 *sector,
            guint64 *sector_offset)
{
        guint64 at = bat_offset + index * VHDX_BAT_ENTRY_SIZE;

        *sector_offset = at - at % VHDX_LOG_SECTOR_SIZE;
        fuzz_image_read (image, *sector_offset, sector, VHDX_LOG_SECTOR_SIZE);
        vhdx_put_le64 (sector + at % VHDX_LOG_SECTOR_SIZE, entry);
}

static void
commit (VhdxLogWriter *writer, guint64 flushed, guint64 last)
{
        g_autoptr (GError) error = NULL;

        must_succeed (vhdx_log_writer_commit (writer, flushed, last, &error), &error);
}

static void
seed_log (LogShape shape)
{
        GBytes *template = fuzz_log_template ();
        guint64 size = g_bytes_get_size (template);
        guint64 log_offset = fuzz_log_template_log_offset ();
        guint32 log_length = fuzz_log_template_log_length ();
        guint64 bat_offset = template_bat_offset (template);
        guint64 new_block = (size + MiB - 1) / MiB * MiB;
        g_autoptr (FuzzImage) image = fuzz_image_new (template, size);
        g_autoptr (VhdxIo) io = fuzz_image_new_io (image, TRUE, 0);
        g_autoptr (VhdxLogWriter) writer = NULL;
        g_autoptr (VhdxLogWriter) stale = NULL;
        g_autoptr (GByteArray) seed = g_byte_array_new ();
        g_autofree guint8 *sector = g_malloc (VHDX_LOG_SECTOR_SIZE);
        g_autofree guint8 *log = g_malloc (log_length);
        VhdxGuid guid = fuzz_log_guid ();
        VhdxGuid other = vhdx_gen_guid_from_text ("0badc0de-1111-4222-8333-444455556666");
        guint32 start = shape == LOG_WRAPS           ? log_length - 2 * VHDX_LOG_SECTOR_SIZE
                        : shape == LOG_STALE_ENTRIES ? 4 * VHDX_LOG_SECTOR_SIZE
                                                     : 0;
        guint64 sector_offset;
        guint8 flags = FUZZ_FLAG_FIX_CHECKSUMS | FUZZ_FLAG_READ_WRITE;
        gsize used;
        guint8 head[FUZZ_LOG_INPUT_HEADER];

        writer = vhdx_log_writer_new (io, log_offset, log_length, &guid, start,
                                      shape == LOG_STALE_ENTRIES ? 40 : 5);
        switch (shape) {
        case LOG_ONE_ENTRY:
                bat_sector (image, bat_offset, 2, new_block | VHDX_PAYLOAD_FULLY_PRESENT, sector,
                            &sector_offset);
                vhdx_log_writer_add_data (writer, sector_offset, sector);
                commit (writer, size, new_block + MiB);
                break;
        case LOG_SEVERAL_ENTRIES:
        case LOG_WRAPS:
        case LOG_TORN_HEAD:
                for (guint b = 2; b < 4; b++) {
                        bat_sector (image, bat_offset, b,
                                    (new_block + (b - 2) * MiB) | VHDX_PAYLOAD_FULLY_PRESENT,
                                    sector, &sector_offset);
                        /* Later entries see the earlier ones' updates. */
                        fuzz_image_write (image, sector_offset, sector, VHDX_LOG_SECTOR_SIZE);
                        vhdx_log_writer_add_data (writer, sector_offset, sector);
                        commit (writer, size, new_block + (b - 1) * MiB);
                }
                if (shape == LOG_TORN_HEAD) {
                        /* Flags without FUZZ_FLAG_FIX_CHECKSUMS keep the damage. */
                        guint64 at = log_offset + vhdx_log_writer_get_position (writer) -
                                     VHDX_LOG_SECTOR_SIZE + 100;
                        guint8 junk = 0x5a;
                        fuzz_image_write (image, at, &junk, 1);
                        flags = FUZZ_FLAG_READ_WRITE;
                }
                break;
        case LOG_ZERO_DESCRIPTORS:
                vhdx_log_writer_add_zero (writer, 4 * MiB, 64 * 1024);
                bat_sector (image, bat_offset, 1, VHDX_PAYLOAD_ZERO, sector, &sector_offset);
                vhdx_log_writer_add_data (writer, sector_offset, sector);
                commit (writer, size, size);
                break;
        case LOG_MANY_DESCRIPTORS:
                /* More descriptors than fit in the entry's first sector. */
                for (guint i = 0; i < 130; i++)
                        vhdx_log_writer_add_zero (writer, 4 * MiB + i * 8192, 4096);
                commit (writer, size, size);
                break;
        case LOG_STALE_ENTRIES:
                stale = vhdx_log_writer_new (io, log_offset, log_length, &other, 0, 90);
                bat_sector (image, bat_offset, 3, VHDX_PAYLOAD_ZERO, sector, &sector_offset);
                vhdx_log_writer_add_data (stale, sector_offset, sector);
                commit (stale, size, size);
                bat_sector (image, bat_offset, 2, new_block | VHDX_PAYLOAD_FULLY_PRESENT, sector,
                            &sector_offset);
                vhdx_log_writer_add_data (writer, sector_offset, sector);
                commit (writer, size, new_block + MiB);
                start = 0;
                break;
        case LOG_EXTENDS_FILE:
                vhdx_log_writer_add_zero (writer, new_block + 3 * MiB, 4096);
                commit (writer, size, new_block + 4 * MiB);
                break;
        case LOG_PAYLOAD:
                /* New bytes for the first sector of block 0's payload. */
                memset (sector, 0xa5, VHDX_LOG_SECTOR_SIZE);
                vhdx_log_writer_add_data (writer, 4 * MiB, sector);
                commit (writer, size, size);
                break;
        case N_LOG_SHAPES:
                g_assert_not_reached ();
        }

        /* The ring from @start on, without its trailing zeros. */
        fuzz_image_read (image, log_offset + start, log, log_length - start);
        fuzz_image_read (image, log_offset, log + (log_length - start), start);
        for (used = log_length; used > 0 && log[used - 1] == 0; used--)
                ;
        head[0] = flags;
        vhdx_put_le32 (head + 1, start);
        g_byte_array_append (seed, head, sizeof head);
        g_byte_array_append (seed, log, (guint) used);
        save ("log", log_shape_names[shape], seed->data, seed->len);

        /* The whole dirty image is a seed of the other targets too. */
        if (shape == LOG_ONE_ENTRY || shape == LOG_WRAPS || shape == LOG_STALE_ENTRIES) {
                g_autoptr (FuzzImage) dirty = fuzz_image_new (template, size);
                g_autoptr (GBytes) file = NULL;
                g_autofree char *name = g_strconcat ("dirty-", log_shape_names[shape], NULL);

                fuzz_image_write (dirty, log_offset, log + (log_length - start), start);
                fuzz_image_write (dirty, log_offset + start, log, log_length - start);
                file = fuzz_image_to_bytes (dirty);
                save_image (name, file, fuzz_log_template_virtual_size ());
        }
}

/* Locator items built by hand, each entry a key and a value. */
static void
save_locator (const char *name, const char *const *pairs, gboolean vhdx_type)
{
        g_autoptr (GByteArray) item = g_byte_array_new ();
        guint count = (guint) g_strv_length ((char **) pairs) / 2;
        guint32 data = VHDX_LOCATOR_HEADER_SIZE + count * VHDX_LOCATOR_ENTRY_SIZE;

        g_byte_array_set_size (item, data);
        memset (item->data, 0, data);
        if (vhdx_type)
                memcpy (item->data, vhdx_guid_locator_vhdx.bytes, 16);
        vhdx_put_le16 (item->data + VHDX_LOCATOR_OFF_COUNT, (guint16) count);
        for (guint i = 0; i < 2 * count; i++) {
                glong n = 0;
                g_autofree gunichar2 *text = g_utf8_to_utf16 (pairs[i], -1, NULL, &n, NULL);
                guint8 *e =
                        item->data + VHDX_LOCATOR_HEADER_SIZE + (i / 2) * VHDX_LOCATOR_ENTRY_SIZE;

                vhdx_put_le32 (e + (i % 2 == 0 ? VHDX_LOCATOR_ENTRY_OFF_KEY_OFFSET
                                               : VHDX_LOCATOR_ENTRY_OFF_VALUE_OFFSET),
                               item->len);
                vhdx_put_le16 (e + (i % 2 == 0 ? VHDX_LOCATOR_ENTRY_OFF_KEY_LENGTH
                                               : VHDX_LOCATOR_ENTRY_OFF_VALUE_LENGTH),
                               (guint16) (2 * n));
                for (glong k = 0; k < n; k++) {
                        guint8 le[2];
                        vhdx_put_le16 (le, text[k]);
                        g_byte_array_append (item, le, 2);
                }
        }
        save ("locator", name, item->data, item->len);
}

static void
seed_locators (void)
{
        const char *const writer[] = { "parent_linkage",
                                       "{6b0d3a2e-9f1c-4b7a-8e25-1d4c7f9a0b3e}",
                                       "relative_path",
                                       "..\\base\\parent.vhdx",
                                       "absolute_win32_path",
                                       "\\\\?\\C:\\vms\\base\\parent.vhdx",
                                       NULL };
        const char *const hyperv[] = { "parent_linkage",
                                       "{6B0D3A2E-9F1C-4B7A-8E25-1D4C7F9A0B3E}",
                                       "parent_linkage2",
                                       "{00000000-0000-0000-0000-000000000000}",
                                       "relative_path",
                                       ".\\parent.vhdx",
                                       "volume_path",
                                       "\\\\?\\Volume{1b2c3d4e-0000-0000-0000-100000000000}\\"
                                       "vms\\parent.vhdx",
                                       "absolute_win32_path",
                                       "\\\\server\\share\\parent.vhdx",
                                       NULL };
        const char *const unicode[] = { "parent_linkage",
                                        "6b0d3a2e-9f1c-4b7a-8e25-1d4c7f9a0b3e",
                                        "relative_path",
                                        "p\xc3\xa4rent-\xf0\x9f\x92\xbe.vhdx",
                                        "absolute_win32_path",
                                        "..",
                                        NULL };
        const char *const absolute[] = { "parent_linkage",
                                         "{not a guid}",
                                         "relative_path",
                                         "/abs/parent.vhdx",
                                         "volume_path",
                                         "\\",
                                         NULL };
        const char *const no_linkage[] = { "relative_path", "parent.vhdx", NULL };
        const char *const duplicate[] = { "parent_linkage", "{x}", "parent_linkage", "{y}", NULL };

        save_locator ("writer", writer, TRUE);
        save_locator ("hyper-v", hyperv, TRUE);
        save_locator ("unicode", unicode, TRUE);
        save_locator ("absolute", absolute, TRUE);
        save_locator ("no-linkage", no_linkage, TRUE);
        save_locator ("duplicate-key", duplicate, TRUE);
        save_locator ("other-type", writer, FALSE);
}

int
main (int argc, char **argv)
{
        g_autoptr (GError) error = NULL;

        if (argc != 3) {
                fprintf (stderr, "usage: %s OUTDIR STAMP\n", argv[0]);
                return 2;
        }
        outdir = argv[1];
        seed_generated ();
        seed_differencing ();
        for (guint s = 0; s < N_LOG_SHAPES; s++)
                seed_log (s);
        seed_locators ();
        if (!g_file_set_contents (argv[2], "", 0, &error))
                g_error ("%s", error->message);
        return 0;
}
