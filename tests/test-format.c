/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of the parsers on crafted buffers, built here field by field
 * from the specification's layout. */
#include "test-util.h"
#include "vhdx-crc32c.h"
#include "vhdx-error.h"
#include "vhdx-header.h"
#include "vhdx-region.h"

static void
test_guid_text (void)
{
        VhdxGuid g;
        g_autofree char *text = NULL;
        /* The BAT region GUID as the specification prints it. */
        g_assert_true (vhdx_guid_from_string ("2DC27766-F623-4200-9D64-115E9BFD4A08", &g));
        g_assert_true (vhdx_guid_equal (&g, &vhdx_guid_region_bat));
        /* Data1..3 are little-endian on disk. */
        g_assert_cmphex (g.bytes[0], ==, 0x66);
        g_assert_cmphex (g.bytes[3], ==, 0x2D);
        g_assert_cmphex (g.bytes[4], ==, 0x23);
        g_assert_cmphex (g.bytes[8], ==, 0x9D);
        g_assert_cmphex (g.bytes[15], ==, 0x08);
        text = vhdx_guid_to_string (&g);
        g_assert_cmpstr (text, ==, "2dc27766-f623-4200-9d64-115e9bfd4a08");
        g_assert_true (vhdx_guid_from_string ("{8b7ca206-4790-4b9a-b8fe-575f050f886e}", &g));
        g_assert_true (vhdx_guid_equal (&g, &vhdx_guid_region_metadata));
        g_assert_false (vhdx_guid_from_string ("8b7ca206-4790-4b9a-b8fe-575f050f886", &g));
        g_assert_false (vhdx_guid_from_string ("{8b7ca206-4790-4b9a-b8fe-575f050f886e", &g));
        g_assert_false (vhdx_guid_from_string ("8b7ca206+4790-4b9a-b8fe-575f050f886e", &g));
        g_assert_false (vhdx_guid_from_string ("8b7ca206-4790-4b9a-b8fe-575f050f886g", &g));
}

static void
test_file_identifier (void)
{
        guint8 buf[520] = { 0 };
        const char *creator = "Hyper-V";
        g_autofree char *text = NULL;
        g_autoptr (GError) error = NULL;

        memcpy (buf, "vhdxfile", 8);
        for (guint i = 0; creator[i]; i++)
                vhdx_put_le16 (buf + 8 + 2 * i, (guint16) creator[i]);
        test_assert_ok (vhdx_file_identifier_parse (buf, sizeof buf, &text, &error), error);
        g_assert_cmpstr (text, ==, "Hyper-V");

        buf[3] = 'X';
        g_assert_false (vhdx_file_identifier_parse (buf, sizeof buf, &text, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_assert_nonnull (strstr (error->message, "file identifier"));
}

static void
make_header (guint8 *buf, guint64 sequence)
{
        memset (buf, 0, VHDX_HEADER_SIZE);
        memcpy (buf, "head", 4);
        vhdx_put_le64 (buf + 8, sequence);
        for (guint i = 0; i < 16; i++) {
                buf[16 + i] = (guint8) (0x10 + i); /* FileWriteGuid */
                buf[32 + i] = (guint8) (0x40 + i); /* DataWriteGuid */
        }
        vhdx_put_le16 (buf + 66, 1);
        vhdx_put_le32 (buf + 68, 1 << 20);
        vhdx_put_le64 (buf + 72, 1 << 20);
        vhdx_put_le32 (buf + 4, vhdx_crc32c (0, buf, VHDX_HEADER_SIZE));
}

static void
test_header_parse (void)
{
        g_autofree guint8 *buf = g_malloc (VHDX_HEADER_SIZE);
        g_autoptr (GError) error = NULL;
        VhdxHeader h;

        make_header (buf, 42);
        test_assert_ok (vhdx_header_parse (buf, VHDX_HEADER_SIZE, 65536, "header 1", &h, &error),
                        error);
        g_assert_cmpuint (h.sequence, ==, 42);
        g_assert_cmpuint (h.version, ==, 1);
        g_assert_cmpuint (h.log_length, ==, 1 << 20);
        g_assert_cmpuint (h.log_offset, ==, 1 << 20);
        g_assert_cmphex (h.data_write_guid.bytes[0], ==, 0x40);
        g_assert_true (vhdx_guid_is_zero (&h.log_guid));

        buf[100] ^= 1; /* reserved area: covered by the checksum */
        g_assert_false (vhdx_header_parse (buf, VHDX_HEADER_SIZE, 65536, "header 1", &h, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_CHECKSUM);
        g_assert_nonnull (strstr (error->message, "header 1 at offset 65536"));
        g_clear_error (&error);

        make_header (buf, 42);
        buf[0] = 'H';
        g_assert_false (vhdx_header_parse (buf, VHDX_HEADER_SIZE, 65536, "header 1", &h, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_clear_error (&error);

        g_assert_false (vhdx_header_parse (buf, 100, 65536, "header 1", &h, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_TRUNCATED);
}

static void
put_region (guint8 *table,
            guint index,
            const VhdxGuid *guid,
            guint64 offset,
            guint32 length,
            guint32 required)
{
        guint8 *e = table + 16 + 32 * index;

        memcpy (e, guid->bytes, 16);
        vhdx_put_le64 (e + 16, offset);
        vhdx_put_le32 (e + 24, length);
        vhdx_put_le32 (e + 28, required);
}

static void
seal_region_table (guint8 *table, guint32 count)
{
        memcpy (table, "regi", 4);
        vhdx_put_le32 (table + 8, count);
        vhdx_put_le32 (table + 4, 0);
        vhdx_put_le32 (table + 4, vhdx_crc32c (0, table, VHDX_REGION_TABLE_SIZE));
}

static void
test_region_table_parse (void)
{
        g_autofree guint8 *t = g_malloc0 (VHDX_REGION_TABLE_SIZE);
        g_autoptr (GError) error = NULL;
        VhdxRegionTable table = { 0 };
        VhdxGuid unknown;
        const guint64 file_size = 8 << 20;

        /* Metadata first, as Disk2VHD writes it. */
        put_region (t, 0, &vhdx_guid_region_metadata, 2 << 20, 1 << 20, 1);
        put_region (t, 1, &vhdx_guid_region_bat, 3 << 20, 1 << 20, 1);
        seal_region_table (t, 2);
        test_assert_ok (vhdx_region_table_parse (t, VHDX_REGION_TABLE_SIZE, 196608, "rt", file_size,
                                                 &table, &error),
                        error);
        g_assert_cmpuint (table.bat.file_offset, ==, 3 << 20);
        g_assert_cmpuint (table.metadata.file_offset, ==, 2 << 20);
        g_assert_cmpuint (table.entries->len, ==, 2);
        vhdx_region_table_clear (&table);

        /* An unknown optional region is ignored, a required one refused. */
        g_assert_true (vhdx_guid_from_string ("01234567-89ab-cdef-0123-456789abcdef", &unknown));
        put_region (t, 2, &unknown, 4 << 20, 1 << 20, 0);
        seal_region_table (t, 3);
        test_assert_ok (vhdx_region_table_parse (t, VHDX_REGION_TABLE_SIZE, 196608, "rt", file_size,
                                                 &table, &error),
                        error);
        vhdx_region_table_clear (&table);
        put_region (t, 2, &unknown, 4 << 20, 1 << 20, 1);
        seal_region_table (t, 3);
        g_assert_false (vhdx_region_table_parse (t, VHDX_REGION_TABLE_SIZE, 196608, "rt", file_size,
                                                 &table, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED);
        g_assert_nonnull (strstr (error->message, "01234567-89ab-cdef-0123-456789abcdef"));
        g_clear_error (&error);

        /* Overlapping regions. */
        put_region (t, 2, &unknown, (3 << 20), 1 << 20, 0);
        seal_region_table (t, 3);
        g_assert_false (vhdx_region_table_parse (t, VHDX_REGION_TABLE_SIZE, 196608, "rt", file_size,
                                                 &table, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_clear_error (&error);

        /* Misaligned, past the end of the file, and missing BAT. */
        put_region (t, 1, &vhdx_guid_region_bat, (3 << 20) + 4096, 1 << 20, 1);
        seal_region_table (t, 2);
        g_assert_false (vhdx_region_table_parse (t, VHDX_REGION_TABLE_SIZE, 196608, "rt", file_size,
                                                 &table, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_clear_error (&error);
        put_region (t, 1, &vhdx_guid_region_bat, 8 << 20, 1 << 20, 1);
        seal_region_table (t, 2);
        g_assert_false (vhdx_region_table_parse (t, VHDX_REGION_TABLE_SIZE, 196608, "rt", file_size,
                                                 &table, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_TRUNCATED);
        g_clear_error (&error);
        seal_region_table (t, 1);
        g_assert_false (vhdx_region_table_parse (t, VHDX_REGION_TABLE_SIZE, 196608, "rt", file_size,
                                                 &table, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_assert_nonnull (strstr (error->message, "BAT"));
        g_clear_error (&error);

        /* Entry count over the limit, with a valid checksum. */
        seal_region_table (t, 2048);
        g_assert_false (vhdx_region_table_parse (t, VHDX_REGION_TABLE_SIZE, 196608, "rt", file_size,
                                                 &table, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_clear_error (&error);

        /* A flipped bit anywhere in the 64 KiB is caught by the checksum. */
        put_region (t, 1, &vhdx_guid_region_bat, 3 << 20, 1 << 20, 1);
        seal_region_table (t, 2);
        t[VHDX_REGION_TABLE_SIZE - 1] ^= 0x80;
        g_assert_false (vhdx_region_table_parse (t, VHDX_REGION_TABLE_SIZE, 196608, "rt", file_size,
                                                 &table, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_CHECKSUM);
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);
        g_test_add_func ("/format/guid-text", test_guid_text);
        g_test_add_func ("/format/file-identifier", test_file_identifier);
        g_test_add_func ("/format/header", test_header_parse);
        g_test_add_func ("/format/region-table", test_region_table_parse);
        return g_test_run ();
}
