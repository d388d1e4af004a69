/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the test programs. */
#pragma once

#include <glib.h>

#include "vhdx-check.h"
#include "vhdx-reader.h"
#include "vhdx-map.h"

G_BEGIN_DECLS

/*
 * Assert that @call, which reports failure through the GError @error,
 * succeeded: the error is asserted first, so that a failure shows its message.
 */
#define test_assert_ok(call, error)                                                                \
        G_STMT_START                                                                               \
        {                                                                                          \
                gboolean test_ok_ = (call);                                                        \
                g_assert_no_error (error);                                                         \
                g_assert_true (test_ok_);                                                          \
        }                                                                                          \
        G_STMT_END

/* A temporary directory removed (with its files) by test_tmpdir_free(). */
G_GNUC_WARN_UNUSED_RESULT char *test_tmpdir_new (void);
void test_tmpdir_free (char *path);

/* TRUE if @program is on PATH. */
gboolean test_have_program (const char *program);

/* Run @argv (NULL-terminated); fail the test unless it exits with 0. */
void test_run (const char *const *argv);

/* Open @path read-only through the file descriptor backend. */
G_GNUC_WARN_UNUSED_RESULT VhdxFile *test_open_path (const char *path, GError **error);

/* sha256 of a whole file, and of the whole virtual disk of an opened image. */
G_GNUC_WARN_UNUSED_RESULT char *test_sha256_file (const char *path);
G_GNUC_WARN_UNUSED_RESULT char *test_sha256_virtual_disk (VhdxFile *file);

/* Compare vhdx_file_read (@file, @offset, @length) with the same range of the
 * raw file @raw_fd, failing the test with the first differing offset. */
void test_assert_range_equal (VhdxFile *file, int raw_fd, guint64 offset, gsize length);

/* Directory of the shared real-world samples, or NULL when absent. */
G_GNUC_WARN_UNUSED_RESULT char *test_samples_dir (void);

/* Compare @length bytes read at virtual @offset with the expected ones,
 * failing the test with the first differing offset and @what. */
void test_assert_bytes_equal (const guint8 *found,
                              const guint8 *expected,
                              gsize length,
                              guint64 offset,
                              const char *what);

/*
 * The engine's text form of the GUID stored as @bytes: lowercase, with
 * Data1, Data2 and Data3 stored little-endian, computed here from the
 * bytes so that the engine's conversion is not its own reference.
 */
G_GNUC_WARN_UNUSED_RESULT char *test_guid_to_text (const guint8 *bytes);

/*
 * A VHDX file taken apart by hand, following MS-VHDX: the current header
 * (valid checksum, larger sequence number), the region table in use, the
 * metadata items and the geometry of the BAT.  No engine parser is called;
 * a file that is not well formed fails the test.
 */
typedef struct {
        guint header_index; /* 1 or 2 */
        guint64 header_offset;
        guint64 header_sequence;
        guint8 file_write_guid[16];
        guint8 data_write_guid[16];
        guint8 log_guid[16];
        guint64 log_offset;
        guint32 log_length;

        guint region_table_index; /* 1 or 2 */
        guint64 bat_offset;
        guint32 bat_length;
        guint64 metadata_offset;
        guint32 metadata_length;

        guint32 block_size;
        gboolean leave_blocks_allocated;
        gboolean has_parent;
        guint64 virtual_size;
        guint8 virtual_disk_id[16];
        guint32 logical_sector_size;
        guint32 physical_sector_size;
        guint64 parent_locator_offset; /* file offset of the item; 0: none */
        guint32 parent_locator_length;

        guint64 chunk_ratio;          /* 2^23 * logical_sector_size / block_size */
        guint64 payload_blocks;       /* ceil (virtual_size / block_size) */
        guint64 sector_bitmap_blocks; /* ceil (payload_blocks / chunk_ratio) */
} TestSpecLayout;

void test_spec_read_layout (const char *path, TestSpecLayout *layout);
/* BAT index of payload block @block: block + floor (block / chunk_ratio). */
guint64 test_spec_payload_index (const TestSpecLayout *layout, guint64 block);
/* BAT index of the sector bitmap block of chunk @chunk: chunk * (chunk_ratio + 1) + chunk_ratio. */
guint64 test_spec_bitmap_index (const TestSpecLayout *layout, guint64 chunk);
guint64 test_spec_read_bat_entry (const char *path, const TestSpecLayout *layout, guint64 index);
/* The BAT entries of all payload blocks, in block order (g_free() them). */
G_GNUC_WARN_UNUSED_RESULT guint64 *test_spec_read_payload_entries (const char *path,
                                                                   const TestSpecLayout *layout);

/*
 * Expected extents from a test's own model: @func tells what the byte at
 * @offset is (kind, present, depth and, for data, its file offset); it is
 * asked once per @granule bytes.  The extents are merged as vhdx_file_map()
 * documents it: neighbours of one kind, presence and depth, data ones also
 * contiguous in the file.
 */
typedef void (*TestExtentFunc) (guint64 offset, VhdxMapExtent *extent, gpointer user_data);

G_GNUC_WARN_UNUSED_RESULT GArray *test_model_extents (guint64 offset,
                                                      guint64 length,
                                                      guint32 granule,
                                                      TestExtentFunc func,
                                                      gpointer user_data);
/* Fails the test, listing both, unless the two arrays of VhdxMapExtent are equal. */
void test_assert_extents_equal (GArray *found, GArray *expected, const char *what);

/*
 * Log entries built by hand from MS-VHDX 2.3.1, for dirty images that do
 * not depend on the engine's log writer.  An update writes 4 KiB of @data
 * at @file_offset, or with @data NULL zeroes @zero_length bytes there.
 */
typedef struct {
        guint64 file_offset;
        const guint8 *data;
        guint64 zero_length;
} TestLogUpdate;

/* One entry: header, descriptors padded to 4 KiB, one data sector per data
 * update, and its CRC-32C.  @tail is the position (in the log) of the first
 * entry of its sequence. */
G_GNUC_WARN_UNUSED_RESULT GByteArray *test_log_entry_new (const VhdxGuid *log_guid,
                                                          guint64 sequence,
                                                          guint32 tail,
                                                          guint64 flushed_file_offset,
                                                          guint64 last_file_offset,
                                                          const TestLogUpdate *updates,
                                                          guint n_updates);
/* Store @log_guid in both headers of the image @image (in memory), checksums fixed. */
void test_headers_set_log_guid (guint8 *image, const VhdxGuid *log_guid);

G_END_DECLS
