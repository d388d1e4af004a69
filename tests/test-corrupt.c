/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Damaged images: every structure broken on purpose in a generated image,
 * each failure asserted with its exact error code and a message naming the
 * structure.  Damage to one copy of a duplicated structure must not stop
 * the image from opening with the right data.
 */
#include <string.h>

#include "test-util.h"
#include "vhdx-crc32c.h"
#include "vhdx-gen.h"
#include "vhdx-reader.h"
#include "vhdx-map.h"

/* A GUID no implementation knows. */
#define UNKNOWN_GUID_TEXT  "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
#define UNKNOWN_GUID_LOWER "3f2504e0-4f89-11d3-9a0c-0305e82c3301"

typedef struct {
        VhdxGen *gen;
        VhdxGenLayout layout;
        GByteArray *image;
} Image;

static void
image_free (Image *image)
{
        vhdx_gen_free (image->gen);
        g_byte_array_unref (image->image);
        g_free (image);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Image, image_free)

static VhdxGen *
base_gen_new (void)
{
        VhdxGenParams params;
        VhdxGen *gen;

        vhdx_gen_params_init (&params);
        params.block_size = VHDX_MiB;
        params.virtual_size = 8 * VHDX_MiB;
        gen = vhdx_gen_new (&params);
        vhdx_gen_fill_pattern (gen, 1000, 5000, 1);
        vhdx_gen_fill_pattern (gen, 2 * VHDX_MiB + 4096, 2 * VHDX_MiB, 2);
        vhdx_gen_fill_pattern (gen, 8 * VHDX_MiB - 512, 512, 3);
        return gen;
}

/* Takes @gen; builds a dynamic 8 MiB image with 1 MiB blocks 0, 2, 3, 4 and 7 stored. */
static Image *
image_build (VhdxGen *gen)
{
        Image *image = g_new0 (Image, 1);

        image->gen = gen;
        vhdx_gen_get_layout (gen, &image->layout);
        image->image = vhdx_gen_build_array (gen);
        return image;
}

static Image *
base_image_new (void)
{
        return image_build (base_gen_new ());
}

static guint8 *
at (Image *image, guint64 offset)
{
        g_assert_cmpuint (offset, <, image->image->len);
        return image->image->data + offset;
}

static void
fix_headers (Image *image)
{
        vhdx_gen_update_header_checksum (at (image, image->layout.header_offset[0]));
        vhdx_gen_update_header_checksum (at (image, image->layout.header_offset[1]));
}

static void
fix_region_tables (Image *image)
{
        vhdx_gen_update_region_table_checksum (at (image, image->layout.region_table_offset[0]));
        vhdx_gen_update_region_table_checksum (at (image, image->layout.region_table_offset[1]));
}

/* The region table entry of the BAT or of the metadata region, in table @table. */
static guint8 *
region_entry (Image *image, guint table, gboolean bat)
{
        guint index = bat ? image->layout.region_index_bat : image->layout.region_index_metadata;

        return at (image, vhdx_gen_layout_region_entry_offset (&image->layout, table, index));
}

static VhdxFile *
image_open (Image *image, GError **error)
{
        /* A static view: the image must stay unchanged while the file is open. */
        g_autoptr (GBytes) bytes = g_bytes_new_static (image->image->data, image->image->len);

        return vhdx_file_open (vhdx_io_new_memory (bytes), VHDX_OPEN_FLAGS_NONE, error);
}

static void
assert_mentions (const GError *error, const char *keyword)
{
        g_autofree char *message = g_ascii_strdown (error->message, -1);
        g_autofree char *word = g_ascii_strdown (keyword, -1);

        if (strstr (message, word) == NULL) {
                g_test_message ("message \"%s\" does not mention \"%s\"", error->message, keyword);
                g_assert_not_reached ();
        }
}

static void
assert_open_fails (Image *image, gint code, const char *keyword)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = image_open (image, &error);

        g_assert_null (file);
        g_assert_error (error, VHDX_ERROR, code);
        assert_mentions (error, keyword);
}

static void
assert_reads_back (VhdxFile *file, VhdxGen *gen)
{
        const VhdxGenParams *params = vhdx_gen_get_params (gen);
        g_autoptr (GError) error = NULL;
        g_autoptr (GBytes) raw = vhdx_gen_build_raw (gen);
        g_autofree guint8 *found = g_malloc (params->virtual_size);

        test_assert_ok (vhdx_file_read (file, 0, found, params->virtual_size, &error), error);
        g_assert_cmpmem (found, params->virtual_size, g_bytes_get_data (raw, NULL),
                         g_bytes_get_size (raw));
}

/* Opens, reads the right data, and returns the file for more checks. */
static VhdxFile *
assert_opens (Image *image)
{
        g_autoptr (GError) error = NULL;
        VhdxFile *file = image_open (image, &error);

        g_assert_no_error (error);
        g_assert_nonnull (file);
        assert_reads_back (file, image->gen);
        return file;
}

/* ---- File identifier and header section ---- */

static void
test_file_identifier_signature (void)
{
        g_autoptr (Image) image = base_image_new ();

        memcpy (at (image, 0), "vhdxfilf", 8);
        assert_open_fails (image, VHDX_ERROR_INVALID, "file identifier");
}

static void
test_truncated (void)
{
        static const guint sizes[] = { 0, 7, 100, 520, 64 * 1024, 512 * 1024, 1024 * 1024 - 1 };
        guint i;

        for (i = 0; i < G_N_ELEMENTS (sizes); i++) {
                g_autoptr (Image) image = base_image_new ();

                g_byte_array_set_size (image->image, sizes[i]);
                assert_open_fails (image, VHDX_ERROR_TRUNCATED, "header");
        }
}

/* The checksum stored in the structure of @length bytes at @offset, and the
 * one computed over it (the checksum field taken as zero), as the finding
 * about it must quote them. */
static char *
checksum_text (Image *image, guint64 offset, gsize length)
{
        g_autofree guint8 *copy = g_memdup2 (at (image, offset), length);
        guint32 stored = vhdx_get_le32 (copy + 4);

        memset (copy + 4, 0, 4);
        return g_strdup_printf ("stored checksum 0x%08x, computed 0x%08x", stored,
                                vhdx_crc32c (0, copy, length));
}

/* The image opened with exactly one finding: a warning about @structure at
 * @offset whose message contains @text. */
static void
assert_one_finding (VhdxFile *file, const char *structure, guint64 offset, const char *text)
{
        GPtrArray *problems = vhdx_file_get_open_problems (file);
        const VhdxProblem *problem;

        for (guint i = 0; i < problems->len; i++) {
                problem = g_ptr_array_index (problems, i);
                g_test_message ("finding: %s at %" G_GUINT64_FORMAT ": %s", problem->structure,
                                problem->offset, problem->message);
        }
        g_assert_cmpuint (problems->len, ==, 1);
        problem = g_ptr_array_index (problems, 0);
        g_assert_cmpint (problem->severity, ==, VHDX_SEVERITY_WARNING);
        g_assert_cmpstr (problem->structure, ==, structure);
        g_assert_cmpuint (problem->offset, ==, offset);
        if (strstr (problem->message, text) == NULL)
                g_error ("the finding \"%s\" does not contain \"%s\"", problem->message, text);
}

static void
test_header_one_bad_checksum (gconstpointer data)
{
        guint damaged = GPOINTER_TO_UINT (data);
        g_autoptr (Image) image = base_image_new ();
        g_autoptr (VhdxFile) file = NULL;
        guint64 offset = image->layout.header_offset[damaged - 1];
        g_autofree char *structure = g_strdup_printf ("header %u", damaged);
        g_autofree char *text = NULL;

        /* A reserved byte: only the checksum notices. */
        *at (image, offset + 1000) ^= 0x10;
        text = checksum_text (image, offset, VHDX_HEADER_SIZE);
        file = assert_opens (image);
        g_assert_cmpuint (vhdx_file_get_info (file)->header_index, ==, damaged == 1 ? 2 : 1);
        assert_one_finding (file, structure, offset, text);
}

static void
test_headers_both_bad_checksum (void)
{
        g_autoptr (Image) image = base_image_new ();

        *at (image, image->layout.header_offset[0] + 8) ^= 0x01;
        *at (image, image->layout.header_offset[1] + 3000) ^= 0x80;
        assert_open_fails (image, VHDX_ERROR_CHECKSUM, "header");
}

static void
test_header_one_bad_signature (void)
{
        g_autoptr (Image) image = base_image_new ();
        g_autoptr (VhdxFile) file = NULL;

        memcpy (at (image, image->layout.header_offset[1]), "HEAD", 4);
        vhdx_gen_update_header_checksum (at (image, image->layout.header_offset[1]));
        file = assert_opens (image);
        g_assert_cmpuint (vhdx_file_get_info (file)->header_index, ==, 1);
        /* "HEAD" read as a little-endian number. */
        assert_one_finding (file, "header 2", image->layout.header_offset[1], "0x44414548");
}

static void
test_headers_both_bad_signature (void)
{
        g_autoptr (Image) image = base_image_new ();

        memcpy (at (image, image->layout.header_offset[0]), "daeh", 4);
        memcpy (at (image, image->layout.header_offset[1]), "\0\0\0\0", 4);
        fix_headers (image);
        assert_open_fails (image, VHDX_ERROR_INVALID, "header");
}

static void
test_header_version (void)
{
        g_autoptr (Image) image = base_image_new ();
        guint i;

        for (i = 0; i < 2; i++)
                vhdx_put_le16 (at (image, image->layout.header_offset[i] + VHDX_HEADER_OFF_VERSION),
                               2);
        fix_headers (image);
        assert_open_fails (image, VHDX_ERROR_NOT_SUPPORTED, "version");
}

static void
test_header_log_version (void)
{
        g_autoptr (Image) image = base_image_new ();
        guint i;

        for (i = 0; i < 2; i++)
                vhdx_put_le16 (at (image,
                                   image->layout.header_offset[i] + VHDX_HEADER_OFF_LOG_VERSION),
                               1);
        fix_headers (image);
        assert_open_fails (image, VHDX_ERROR_NOT_SUPPORTED, "version");
}

static void
test_header_equal_sequence (void)
{
        g_autoptr (Image) image = base_image_new ();
        guint8 *h1 = at (image, image->layout.header_offset[0]);

        vhdx_put_le64 (h1 + VHDX_HEADER_OFF_SEQUENCE, 2);
        h1[VHDX_HEADER_OFF_FILE_WRITE_GUID] ^= 0xff;
        vhdx_gen_update_header_checksum (h1);
        assert_open_fails (image, VHDX_ERROR_INVALID, "sequence");
}

/* The header with the larger sequence number wins, whichever copy it is. */
static void
test_header_sequence_selects (void)
{
        g_autoptr (Image) image = base_image_new ();
        g_autoptr (VhdxFile) file = NULL;
        guint8 *h1 = at (image, image->layout.header_offset[0]);

        vhdx_put_le64 (h1 + VHDX_HEADER_OFF_SEQUENCE, 3);
        vhdx_gen_update_header_checksum (h1);
        file = assert_opens (image);
        g_assert_cmpuint (vhdx_file_get_info (file)->header_index, ==, 1);
        g_assert_cmpuint (vhdx_file_get_info (file)->header_sequence, ==, 3);
        g_assert_cmpuint (vhdx_file_get_open_problems (file)->len, ==, 0);
}

/* A LogGuid in the header, but a log of zeros: there is nothing to replay. */
static void
test_log_guid_without_log (void)
{
        g_autoptr (Image) image = base_image_new ();
        VhdxGuid guid = vhdx_gen_guid_from_text (UNKNOWN_GUID_TEXT);
        guint i;

        for (i = 0; i < 2; i++)
                memcpy (at (image, image->layout.header_offset[i] + VHDX_HEADER_OFF_LOG_GUID),
                        guid.bytes, sizeof guid.bytes);
        fix_headers (image);
        assert_open_fails (image, VHDX_ERROR_LOG, "log");
}

/* ---- Region table ---- */

static void
test_region_table_one_bad_checksum (void)
{
        g_autoptr (Image) image = base_image_new ();
        g_autoptr (VhdxFile) file = NULL;
        g_autofree char *text = NULL;

        *at (image, image->layout.region_table_offset[0] + 60000) ^= 0x04;
        text = checksum_text (image, image->layout.region_table_offset[0], VHDX_REGION_TABLE_SIZE);
        file = assert_opens (image);
        g_assert_cmpuint (vhdx_file_get_info (file)->region_table_index, ==, 2);
        assert_one_finding (file, "region table 1", image->layout.region_table_offset[0], text);
}

static void
test_region_tables_both_bad_checksum (void)
{
        g_autoptr (Image) image = base_image_new ();

        *at (image, image->layout.region_table_offset[0] + 60000) ^= 0x04;
        *at (image, image->layout.region_table_offset[1] + 4) ^= 0x04;
        assert_open_fails (image, VHDX_ERROR_CHECKSUM, "region table");
}

static void
test_region_tables_bad_signature (void)
{
        g_autoptr (Image) image = base_image_new ();

        memcpy (at (image, image->layout.region_table_offset[0]), "regx", 4);
        memcpy (at (image, image->layout.region_table_offset[1]), "REGI", 4);
        fix_region_tables (image);
        assert_open_fails (image, VHDX_ERROR_INVALID, "region table");
}

static void
test_region_entry_count (void)
{
        static const guint32 counts[] = { 2048, 0xffffffff };
        guint i, t;

        for (i = 0; i < G_N_ELEMENTS (counts); i++) {
                g_autoptr (Image) image = base_image_new ();

                for (t = 0; t < 2; t++)
                        vhdx_put_le32 (at (image, image->layout.region_table_offset[t] +
                                                          VHDX_REGION_OFF_ENTRY_COUNT),
                                       counts[i]);
                fix_region_tables (image);
                assert_open_fails (image, VHDX_ERROR_INVALID, "region table");
        }
}

static void
test_region_unknown_required (void)
{
        g_autoptr (VhdxGen) gen = base_gen_new ();
        g_autoptr (Image) image = NULL;
        VhdxGuid guid = vhdx_gen_guid_from_text (UNKNOWN_GUID_TEXT);

        vhdx_gen_add_region (gen, &guid, TRUE, VHDX_MiB);
        image = image_build (g_steal_pointer (&gen));
        assert_open_fails (image, VHDX_ERROR_NOT_SUPPORTED, UNKNOWN_GUID_LOWER);
}

static void
test_region_unknown_optional (void)
{
        g_autoptr (VhdxGen) gen = base_gen_new ();
        g_autoptr (Image) image = NULL;
        g_autoptr (VhdxFile) file = NULL;
        VhdxGuid guid = vhdx_gen_guid_from_text (UNKNOWN_GUID_TEXT);

        vhdx_gen_add_region (gen, &guid, FALSE, 2 * VHDX_MiB);
        image = image_build (g_steal_pointer (&gen));
        file = assert_opens (image);
        g_assert_cmpuint (vhdx_file_get_open_problems (file)->len, ==, 0);
}

static void
test_region_missing (gconstpointer data)
{
        gboolean bat = GPOINTER_TO_INT (data);
        g_autoptr (Image) image = base_image_new ();
        VhdxGuid guid = vhdx_gen_guid_from_text (UNKNOWN_GUID_TEXT);
        guint t;

        /* The entry becomes an unknown optional region: the known one is missing. */
        for (t = 1; t <= 2; t++) {
                guint8 *e = region_entry (image, t, bat);

                memcpy (e + VHDX_REGION_ENTRY_OFF_GUID, guid.bytes, sizeof guid.bytes);
                vhdx_put_le32 (e + VHDX_REGION_ENTRY_OFF_REQUIRED, 0);
        }
        fix_region_tables (image);
        assert_open_fails (image, VHDX_ERROR_INVALID, bat ? "BAT" : "metadata");
}

static void
test_region_unaligned (gconstpointer data)
{
        gboolean bat = GPOINTER_TO_INT (data);
        g_autoptr (Image) image = base_image_new ();
        guint t;

        for (t = 1; t <= 2; t++) {
                guint8 *e = region_entry (image, t, bat) + VHDX_REGION_ENTRY_OFF_FILE_OFFSET;

                vhdx_put_le64 (e, vhdx_get_le64 (e) + 4096);
        }
        fix_region_tables (image);
        assert_open_fails (image, VHDX_ERROR_INVALID, "region");
}

static void
test_region_in_header_section (void)
{
        g_autoptr (Image) image = base_image_new ();
        guint t;

        for (t = 1; t <= 2; t++)
                vhdx_put_le64 (region_entry (image, t, TRUE) + VHDX_REGION_ENTRY_OFF_FILE_OFFSET,
                               0);
        fix_region_tables (image);
        assert_open_fails (image, VHDX_ERROR_INVALID, "region");
}

static void
test_region_past_end (void)
{
        g_autoptr (Image) image = base_image_new ();
        guint64 beyond = (image->image->len + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB;
        guint t;

        for (t = 1; t <= 2; t++)
                vhdx_put_le64 (region_entry (image, t, TRUE) + VHDX_REGION_ENTRY_OFF_FILE_OFFSET,
                               beyond);
        fix_region_tables (image);
        assert_open_fails (image, VHDX_ERROR_TRUNCATED, "region");
}

static void
test_regions_overlap (void)
{
        g_autoptr (Image) image = base_image_new ();
        guint t;

        /* The BAT region placed over the metadata region. */
        for (t = 1; t <= 2; t++)
                vhdx_put_le64 (region_entry (image, t, TRUE) + VHDX_REGION_ENTRY_OFF_FILE_OFFSET,
                               image->layout.metadata_offset);
        fix_region_tables (image);
        assert_open_fails (image, VHDX_ERROR_INVALID, "overlap");
}

/* ---- Metadata ---- */

static void
test_metadata_signature (void)
{
        g_autoptr (Image) image = base_image_new ();

        memcpy (at (image, image->layout.metadata_offset), "metadate", 8);
        assert_open_fails (image, VHDX_ERROR_INVALID, "metadata");
}

static void
test_metadata_entry_count (void)
{
        g_autoptr (Image) image = base_image_new ();

        vhdx_put_le16 (at (image, image->layout.metadata_offset + VHDX_METADATA_OFF_ENTRY_COUNT),
                       2048);
        assert_open_fails (image, VHDX_ERROR_INVALID, "metadata");
}

static void
test_metadata_unknown_required (void)
{
        g_autoptr (VhdxGen) gen = base_gen_new ();
        g_autoptr (Image) image = NULL;
        VhdxGuid guid = vhdx_gen_guid_from_text (UNKNOWN_GUID_TEXT);
        guint64 value = 42;

        vhdx_gen_add_metadata_item (gen, &guid, VHDX_METADATA_FLAG_IS_REQUIRED, &value,
                                    sizeof value);
        image = image_build (g_steal_pointer (&gen));
        assert_open_fails (image, VHDX_ERROR_NOT_SUPPORTED, UNKNOWN_GUID_LOWER);
}

static void
test_metadata_unknown_optional (void)
{
        g_autoptr (VhdxGen) gen = base_gen_new ();
        g_autoptr (Image) image = NULL;
        g_autoptr (VhdxFile) file = NULL;
        VhdxGuid guid = vhdx_gen_guid_from_text (UNKNOWN_GUID_TEXT);
        VhdxGuid user_guid = vhdx_gen_guid_from_text ("0b7aa3a2-9c1a-4b8e-8d3c-1f1e0a5b6c7d");
        const char text[] = "a user item";

        vhdx_gen_add_metadata_item (gen, &guid, VHDX_METADATA_FLAG_IS_VIRTUAL_DISK, text,
                                    sizeof text);
        vhdx_gen_add_metadata_item (gen, &user_guid, VHDX_METADATA_FLAG_IS_USER, text, sizeof text);
        image = image_build (g_steal_pointer (&gen));
        file = assert_opens (image);
        g_assert_cmpuint (vhdx_file_get_open_problems (file)->len, ==, 0);
}

static void
test_metadata_missing_item (gconstpointer data)
{
        VhdxGenItem item = GPOINTER_TO_INT (data);
        g_autoptr (Image) image = base_image_new ();
        guint8 *entry = at (image, image->layout.metadata_entry_offset[item]);
        VhdxGuid guid = vhdx_gen_guid_from_text (UNKNOWN_GUID_TEXT);
        static const char *const names[VHDX_GEN_N_ITEMS] = {
                "file parameters",     "virtual disk size",    "virtual disk id",
                "logical sector size", "physical sector size",
        };

        /* The entry becomes an unknown optional item: the known one is missing. */
        memcpy (entry + VHDX_METADATA_ENTRY_OFF_ITEM_ID, guid.bytes, sizeof guid.bytes);
        vhdx_put_le32 (entry + VHDX_METADATA_ENTRY_OFF_FLAGS, 0);
        assert_open_fails (image, VHDX_ERROR_INVALID, names[item]);
}

static void
test_metadata_item_outside_region (void)
{
        g_autoptr (Image) image = base_image_new ();
        guint8 *entry =
                at (image, image->layout.metadata_entry_offset[VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE]);

        vhdx_put_le32 (entry + VHDX_METADATA_ENTRY_OFF_OFFSET, image->layout.metadata_length - 4);
        assert_open_fails (image, VHDX_ERROR_INVALID, "metadata");
}

static void
test_metadata_item_in_table (void)
{
        g_autoptr (Image) image = base_image_new ();
        guint8 *entry =
                at (image, image->layout.metadata_entry_offset[VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE]);

        /* Items start at 64 KiB: offset 32 would read the table itself. */
        vhdx_put_le32 (entry + VHDX_METADATA_ENTRY_OFF_OFFSET, 32);
        assert_open_fails (image, VHDX_ERROR_INVALID, "metadata");
}

static void
set_item_u32 (Image *image, VhdxGenItem item, guint field_offset, guint32 value)
{
        vhdx_put_le32 (at (image, image->layout.metadata_item_offset[item] + field_offset), value);
}

static void
test_block_size (void)
{
        static const guint32 sizes[] = { 3 * VHDX_MiB,   512 * VHDX_KiB, 0,
                                         512 * VHDX_MiB, VHDX_MiB + 1,   0x80000000u };
        guint i;

        for (i = 0; i < G_N_ELEMENTS (sizes); i++) {
                g_autoptr (Image) image = base_image_new ();

                set_item_u32 (image, VHDX_GEN_ITEM_FILE_PARAMETERS, 0, sizes[i]);
                assert_open_fails (image, VHDX_ERROR_INVALID, "block size");
        }
}

static void
test_sector_sizes (gconstpointer data)
{
        VhdxGenItem item = GPOINTER_TO_INT (data);
        static const guint32 sizes[] = { 1024, 0, 256, 8192, 513 };
        guint i;

        for (i = 0; i < G_N_ELEMENTS (sizes); i++) {
                g_autoptr (Image) image = base_image_new ();

                set_item_u32 (image, item, 0, sizes[i]);
                assert_open_fails (image, VHDX_ERROR_INVALID, "sector size");
        }
}

static void
test_virtual_size (void)
{
        static const guint64 sizes[] = { 0, 1000, 8 * VHDX_MiB + 100, 64 * VHDX_TiB + 512,
                                         G_MAXUINT64 };
        guint i;

        for (i = 0; i < G_N_ELEMENTS (sizes); i++) {
                g_autoptr (Image) image = base_image_new ();

                vhdx_put_le64 (at (image,
                                   image->layout
                                           .metadata_item_offset[VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE]),
                               sizes[i]);
                assert_open_fails (image, VHDX_ERROR_INVALID, "virtual disk size");
        }
}

/* A 4 KiB-sector disk whose size is a multiple of 512 but not of 4096. */
static void
test_virtual_size_4k (void)
{
        g_autoptr (Image) image = base_image_new ();

        set_item_u32 (image, VHDX_GEN_ITEM_LOGICAL_SECTOR_SIZE, 0, 4096);
        vhdx_put_le64 (at (image,
                           image->layout.metadata_item_offset[VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE]),
                       8 * VHDX_MiB - 512);
        assert_open_fails (image, VHDX_ERROR_INVALID, "virtual disk size");
}

static void
test_differencing_empty_locator (void)
{
        g_autoptr (VhdxGen) gen = base_gen_new ();
        g_autoptr (Image) image = NULL;
        VhdxGuid locator_id = vhdx_gen_guid_from_text ("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");
        VhdxGuid locator_type = vhdx_gen_guid_from_text ("B04AEFB7-D19E-4A81-B789-25B8E9445913");
        guint8 locator[20] = { 0 };

        memcpy (locator, locator_type.bytes, 16);
        vhdx_gen_add_metadata_item (gen, &locator_id, VHDX_METADATA_FLAG_IS_REQUIRED, locator,
                                    sizeof locator);
        image = image_build (g_steal_pointer (&gen));
        set_item_u32 (image, VHDX_GEN_ITEM_FILE_PARAMETERS, 4, VHDX_FILE_PARAMS_HAS_PARENT);
        /* A locator without keys cannot name the parent's identity. */
        assert_open_fails (image, VHDX_ERROR_INVALID, "parent_linkage");
}

static void
test_differencing_without_locator (void)
{
        g_autoptr (Image) image = base_image_new ();

        set_item_u32 (image, VHDX_GEN_ITEM_FILE_PARAMETERS, 4,
                      VHDX_FILE_PARAMS_HAS_PARENT | VHDX_FILE_PARAMS_LEAVE_BLOCK_ALLOCATED);
        assert_open_fails (image, VHDX_ERROR_INVALID, "parent locator");
}

/* ---- BAT ---- */

static void
test_bat_region_too_small (void)
{
        g_autoptr (Image) image = base_image_new ();

        /* 200 GiB in 1 MiB blocks needs 204800 + 49 entries: 1.6 MB, in a 1 MiB region. */
        vhdx_put_le64 (at (image,
                           image->layout.metadata_item_offset[VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE]),
                       200 * VHDX_GiB);
        assert_open_fails (image, VHDX_ERROR_INVALID, "BAT");
}

static void
set_bat_entry (Image *image, guint64 block, guint64 entry)
{
        guint64 index = vhdx_gen_block_bat_index (image->gen, block);

        vhdx_put_le64 (at (image, vhdx_gen_layout_bat_entry_offset (&image->layout, index)), entry);
}

static guint64
stored_block_offset (Image *image, guint64 block)
{
        guint64 offset = 0;

        g_assert_true (vhdx_gen_block_file_offset (image->gen, block, &offset));
        return offset;
}

/*
 * The BAT is read lazily: the image opens, the damaged block fails to read
 * and to map with VHDX_ERROR_INVALID naming the BAT entry, the others read.
 */
static void
assert_block_fails (Image *image, guint64 block)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = image_open (image, &error);
        g_autofree guint8 *buf = g_malloc (VHDX_MiB);
        GArray *extents;

        g_assert_no_error (error);
        g_assert_nonnull (file);

        g_assert_false (vhdx_file_read (file, block * VHDX_MiB + 10, buf, 100, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        assert_mentions (error, "BAT");
        g_clear_error (&error);

        extents = vhdx_file_map (file, 0, 8 * VHDX_MiB, &error);
        g_assert_null (extents);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_clear_error (&error);

        test_assert_ok (vhdx_file_read (file, 0, buf, VHDX_MiB, &error), error);
        g_assert_cmpuint (buf[1000], ==, vhdx_gen_pattern_byte (1000, 1));
}

static void
test_bat_reserved_state (gconstpointer data)
{
        guint state = GPOINTER_TO_UINT (data);
        g_autoptr (Image) image = base_image_new ();

        set_bat_entry (image, 2, stored_block_offset (image, 2) | state);
        assert_block_fails (image, 2);
        set_bat_entry (image, 5, state);
        assert_block_fails (image, 5);
}

static void
test_bat_partially_present (void)
{
        g_autoptr (Image) image = base_image_new ();

        set_bat_entry (image, 3, stored_block_offset (image, 3) | VHDX_PAYLOAD_PARTIALLY_PRESENT);
        assert_block_fails (image, 3);
}

static void
test_bat_beyond_end (void)
{
        g_autoptr (Image) image = base_image_new ();
        guint64 end = (image->image->len + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB;

        set_bat_entry (image, 2, (end + 10 * VHDX_MiB) | VHDX_PAYLOAD_FULLY_PRESENT);
        assert_block_fails (image, 2);
}

static void
test_bat_straddles_end (void)
{
        g_autoptr (Image) image = base_image_new ();

        /* The last stored block, cut in half. */
        g_byte_array_set_size (image->image, (guint) (image->image->len - VHDX_MiB / 2));
        set_bat_entry (image, 2, (image->image->len - VHDX_MiB / 2) | VHDX_PAYLOAD_FULLY_PRESENT);
        assert_block_fails (image, 2);
}

static void
test_bat_in_header_section (void)
{
        g_autoptr (Image) image = base_image_new ();

        set_bat_entry (image, 4, VHDX_PAYLOAD_FULLY_PRESENT);
        assert_block_fails (image, 4);
}

/* A payload block must not overlap another structure (MS-VHDX 2.5.1). */
static void
test_bat_overlaps_structure (gconstpointer data)
{
        guint which = GPOINTER_TO_UINT (data);
        g_autoptr (Image) image = base_image_new ();
        guint64 offsets[] = { image->layout.log_offset, image->layout.metadata_offset,
                              image->layout.bat_offset };

        set_bat_entry (image, 2, offsets[which] | VHDX_PAYLOAD_FULLY_PRESENT);
        assert_block_fails (image, 2);
}

/* The states without data read as zeros in a dynamic image, whatever their offset field. */
static void
test_bat_states_reading_zeros (void)
{
        static const guint states[] = { VHDX_PAYLOAD_NOT_PRESENT, VHDX_PAYLOAD_UNDEFINED,
                                        VHDX_PAYLOAD_ZERO, VHDX_PAYLOAD_UNMAPPED };
        guint i;

        for (i = 0; i < G_N_ELEMENTS (states); i++) {
                g_autoptr (Image) image = base_image_new ();
                g_autoptr (GError) error = NULL;
                g_autoptr (VhdxFile) file = NULL;
                guint8 buf[4096];
                guint8 zeros[4096] = { 0 };

                set_bat_entry (image, 2, stored_block_offset (image, 2) | states[i]);
                file = image_open (image, &error);
                g_assert_no_error (error);
                test_assert_ok (vhdx_file_read (file, 2 * VHDX_MiB + 4096, buf, sizeof buf, &error),
                                error);
                g_assert_cmpmem (buf, sizeof buf, zeros, sizeof zeros);
        }
}

/* ---- Never crash ---- */

/* @buf holds @buf_len bytes, reused across cases. */
static gboolean
try_open_and_read (Image *image, guint8 *buf, gsize buf_len)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = image_open (image, &error);
        GArray *extents;
        const VhdxInfo *info;
        guint64 length;

        if (file == NULL) {
                g_assert_nonnull (error);
                g_assert_true (error->domain == VHDX_ERROR);
                return FALSE;
        }
        g_assert_no_error (error);
        info = vhdx_file_get_info (file);
        length = MIN (info->virtual_size, buf_len);
        if (!vhdx_file_read (file, 0, buf, length, &error)) {
                g_assert_true (error->domain == VHDX_ERROR);
                g_clear_error (&error);
        }
        extents = vhdx_file_map (file, 0, length, &error);
        if (extents == NULL) {
                g_assert_true (error->domain == VHDX_ERROR);
                g_clear_error (&error);
        } else {
                g_array_unref (extents);
        }
        return TRUE;
}

typedef enum {
        FIX_NONE,
        FIX_HEADER,
        FIX_REGION_TABLE,
} FixChecksum;

static void
flip_bytes (Image *image,
            guint64 start,
            gsize span,
            FixChecksum fix,
            guint *n_opened,
            guint *n_cases)
{
        static const guint8 masks[] = { 0xff, 0x01, 0x80 };
        GRand *rand = g_rand_new_with_seed (g_test_rand_int ());
        g_autofree guint8 *buf = g_malloc (16 * VHDX_MiB);
        guint i;

        for (i = 0; i < 256 + 64; i++) {
                /* Every byte of the first 256, where the fields are, then random ones. */
                gsize pos = i < 256 ? i : (gsize) g_rand_int_range (rand, 256, (gint32) span);
                guint8 *p = at (image, start + pos);
                guint8 saved = *p;
                g_autofree guint8 *saved_checksum = g_memdup2 (at (image, start + 4), 4);

                *p ^= masks[i % G_N_ELEMENTS (masks)];
                if (fix == FIX_HEADER)
                        vhdx_gen_update_header_checksum (at (image, start));
                else if (fix == FIX_REGION_TABLE)
                        vhdx_gen_update_region_table_checksum (at (image, start));
                *n_opened += try_open_and_read (image, buf, 16 * VHDX_MiB);
                (*n_cases)++;
                *p = saved;
                memcpy (at (image, start + 4), saved_checksum, 4);
        }
        g_rand_free (rand);
}

static void
test_flip_bytes (void)
{
        g_autoptr (Image) image = base_image_new ();
        VhdxGenLayout *l = &image->layout;
        guint n_opened = 0, n_cases = 0;
        guint t;

        for (t = 0; t < 2; t++) {
                flip_bytes (image, l->header_offset[t], VHDX_HEADER_SIZE, FIX_NONE, &n_opened,
                            &n_cases);
                flip_bytes (image, l->header_offset[t], VHDX_HEADER_SIZE, FIX_HEADER, &n_opened,
                            &n_cases);
                flip_bytes (image, l->region_table_offset[t], 4096, FIX_NONE, &n_opened, &n_cases);
                flip_bytes (image, l->region_table_offset[t], 4096, FIX_REGION_TABLE, &n_opened,
                            &n_cases);
        }
        flip_bytes (image, l->metadata_offset, 4096, FIX_NONE, &n_opened, &n_cases);
        flip_bytes (image, l->metadata_item_offset[0] - 64, 4096, FIX_NONE, &n_opened, &n_cases);
        flip_bytes (image, l->bat_offset, 4096, FIX_NONE, &n_opened, &n_cases);
        g_test_message ("%u of %u damaged images opened", n_opened, n_cases);
        g_assert_cmpuint (n_opened, >, 0);
        g_assert_cmpuint (n_opened, <, n_cases);

        /* Every edit was undone. */
        {
                g_autoptr (GByteArray) pristine = vhdx_gen_build_array (image->gen);

                g_assert_cmpmem (image->image->data, image->image->len, pristine->data,
                                 pristine->len);
        }
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);

        g_test_add_func ("/corrupt/file-identifier/signature", test_file_identifier_signature);
        g_test_add_func ("/corrupt/file-identifier/truncated", test_truncated);

        g_test_add_data_func ("/corrupt/header/1-bad-checksum", GUINT_TO_POINTER (1),
                              test_header_one_bad_checksum);
        g_test_add_data_func ("/corrupt/header/2-bad-checksum", GUINT_TO_POINTER (2),
                              test_header_one_bad_checksum);
        g_test_add_func ("/corrupt/header/both-bad-checksum", test_headers_both_bad_checksum);
        g_test_add_func ("/corrupt/header/one-bad-signature", test_header_one_bad_signature);
        g_test_add_func ("/corrupt/header/both-bad-signature", test_headers_both_bad_signature);
        g_test_add_func ("/corrupt/header/version", test_header_version);
        g_test_add_func ("/corrupt/header/log-version", test_header_log_version);
        g_test_add_func ("/corrupt/header/equal-sequence", test_header_equal_sequence);
        g_test_add_func ("/corrupt/header/sequence-selects", test_header_sequence_selects);
        g_test_add_func ("/corrupt/header/log-guid-without-log", test_log_guid_without_log);

        g_test_add_func ("/corrupt/region/1-bad-checksum", test_region_table_one_bad_checksum);
        g_test_add_func ("/corrupt/region/both-bad-checksum", test_region_tables_both_bad_checksum);
        g_test_add_func ("/corrupt/region/bad-signature", test_region_tables_bad_signature);
        g_test_add_func ("/corrupt/region/entry-count", test_region_entry_count);
        g_test_add_func ("/corrupt/region/unknown-required", test_region_unknown_required);
        g_test_add_func ("/corrupt/region/unknown-optional", test_region_unknown_optional);
        g_test_add_data_func ("/corrupt/region/missing-bat", GINT_TO_POINTER (TRUE),
                              test_region_missing);
        g_test_add_data_func ("/corrupt/region/missing-metadata", GINT_TO_POINTER (FALSE),
                              test_region_missing);
        g_test_add_data_func ("/corrupt/region/unaligned-bat", GINT_TO_POINTER (TRUE),
                              test_region_unaligned);
        g_test_add_data_func ("/corrupt/region/unaligned-metadata", GINT_TO_POINTER (FALSE),
                              test_region_unaligned);
        g_test_add_func ("/corrupt/region/in-header-section", test_region_in_header_section);
        g_test_add_func ("/corrupt/region/past-end", test_region_past_end);
        g_test_add_func ("/corrupt/region/overlap", test_regions_overlap);

        g_test_add_func ("/corrupt/metadata/signature", test_metadata_signature);
        g_test_add_func ("/corrupt/metadata/entry-count", test_metadata_entry_count);
        g_test_add_func ("/corrupt/metadata/unknown-required", test_metadata_unknown_required);
        g_test_add_func ("/corrupt/metadata/unknown-optional", test_metadata_unknown_optional);
        g_test_add_data_func ("/corrupt/metadata/missing/file-parameters",
                              GINT_TO_POINTER (VHDX_GEN_ITEM_FILE_PARAMETERS),
                              test_metadata_missing_item);
        g_test_add_data_func ("/corrupt/metadata/missing/virtual-disk-size",
                              GINT_TO_POINTER (VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE),
                              test_metadata_missing_item);
        g_test_add_data_func ("/corrupt/metadata/missing/virtual-disk-id",
                              GINT_TO_POINTER (VHDX_GEN_ITEM_VIRTUAL_DISK_ID),
                              test_metadata_missing_item);
        g_test_add_data_func ("/corrupt/metadata/missing/logical-sector-size",
                              GINT_TO_POINTER (VHDX_GEN_ITEM_LOGICAL_SECTOR_SIZE),
                              test_metadata_missing_item);
        g_test_add_data_func ("/corrupt/metadata/missing/physical-sector-size",
                              GINT_TO_POINTER (VHDX_GEN_ITEM_PHYSICAL_SECTOR_SIZE),
                              test_metadata_missing_item);
        g_test_add_func ("/corrupt/metadata/item-outside-region",
                         test_metadata_item_outside_region);
        g_test_add_func ("/corrupt/metadata/item-in-table", test_metadata_item_in_table);
        g_test_add_func ("/corrupt/metadata/block-size", test_block_size);
        g_test_add_data_func ("/corrupt/metadata/logical-sector-size",
                              GINT_TO_POINTER (VHDX_GEN_ITEM_LOGICAL_SECTOR_SIZE),
                              test_sector_sizes);
        g_test_add_data_func ("/corrupt/metadata/physical-sector-size",
                              GINT_TO_POINTER (VHDX_GEN_ITEM_PHYSICAL_SECTOR_SIZE),
                              test_sector_sizes);
        g_test_add_func ("/corrupt/metadata/virtual-size", test_virtual_size);
        g_test_add_func ("/corrupt/metadata/virtual-size-4k", test_virtual_size_4k);
        g_test_add_func ("/corrupt/metadata/differencing-empty-locator",
                         test_differencing_empty_locator);
        g_test_add_func ("/corrupt/metadata/differencing-without-locator",
                         test_differencing_without_locator);

        g_test_add_func ("/corrupt/bat/region-too-small", test_bat_region_too_small);
        g_test_add_data_func ("/corrupt/bat/state-4", GUINT_TO_POINTER (4),
                              test_bat_reserved_state);
        g_test_add_data_func ("/corrupt/bat/state-5", GUINT_TO_POINTER (5),
                              test_bat_reserved_state);
        g_test_add_func ("/corrupt/bat/partially-present", test_bat_partially_present);
        g_test_add_func ("/corrupt/bat/beyond-end", test_bat_beyond_end);
        g_test_add_func ("/corrupt/bat/straddles-end", test_bat_straddles_end);
        g_test_add_func ("/corrupt/bat/in-header-section", test_bat_in_header_section);
        g_test_add_func ("/corrupt/bat/states-reading-zeros", test_bat_states_reading_zeros);

        g_test_add_func ("/corrupt/flip-bytes", test_flip_bytes);
        g_test_add_data_func ("/corrupt/bat/overlaps-log", GUINT_TO_POINTER (0),
                              test_bat_overlaps_structure);
        g_test_add_data_func ("/corrupt/bat/overlaps-metadata", GUINT_TO_POINTER (1),
                              test_bat_overlaps_structure);
        g_test_add_data_func ("/corrupt/bat/overlaps-bat", GUINT_TO_POINTER (2),
                              test_bat_overlaps_structure);

        return g_test_run ();
}
