/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Bounds on resources.  Images that claim the most the format allows (a
 * 64 TiB disk, 2047 regions and metadata items, a parent locator whose
 * entries share their bytes or number 65535, logs at and past the length
 * limit, logs crafted to make the scan for the active sequence quadratic)
 * must open, or fail to open, doing a bounded amount of work: the bytes read
 * from the file (a counting VhdxIo) and the bytes checksummed (the engine's
 * count) are asserted against formulas of the image's real size, and the
 * heap peak against a fixed budget.  Work is counted, not timed: the same
 * counts hold on any machine and in the sanitizer builds, where a clock would
 * not.  tests/bench times the same images (`./run bench hostile`).
 *
 * Heap figures come from counting malloc (test-alloc.c), which is not
 * available under the sanitizers; there the work counts are checked alone.
 */
#include "test-alloc.h"
#include "test-io.h"
#include "test-util.h"
#include "vhdx-bat.h"
#include "vhdx-crc32c.h"
#include "vhdx-gen.h"
#include "vhdx-hostile.h"
#include "vhdx-parent.h"

#include <fcntl.h>
#include <gio/gio.h>
#include <unistd.h>

#define MiB VHDX_MiB
/* What opening one image may take from the heap, whatever it claims, beyond a log to replay. */
#define OPEN_BUDGET (2 * MiB)
/* What opening one image may read, whatever it claims, beyond its log: the file
 * identifier, two headers, a region table (both when the first is bad), the
 * metadata table and its items (at most 1 MiB each, but these are small). */
#define OPEN_READ_BUDGET                                                                           \
        (VHDX_FILE_ID_CREATOR_OFFSET + VHDX_FILE_ID_CREATOR_SIZE + 2 * VHDX_HEADER_SIZE +          \
         2 * VHDX_REGION_TABLE_SIZE + VHDX_METADATA_TABLE_SIZE + 64 * VHDX_KiB)

typedef struct {
        gsize heap_before;
        guint64 checksummed_before;
        TestIoCounts io; /* what a counting VhdxIo counts into */
} Measure;

static void
measure_start (Measure *m)
{
        m->heap_before = test_alloc_current ();
        test_alloc_reset_peak ();
        m->checksummed_before = vhdx_crc32c_get_bytes_checksummed ();
        memset (&m->io, 0, sizeof m->io);
}

/* The work done since measure_start(); the heap peak is checked against @budget. */
typedef struct {
        gsize heap_peak;
        guint64 checksummed;
        TestIoCounts io;
} Work;

static void
measure_end (const Measure *m, gsize budget, const char *what, Work *work)
{
        memset (work, 0, sizeof *work);
        work->heap_peak = test_alloc_available () ? test_alloc_peak () - m->heap_before : 0;
        work->checksummed = vhdx_crc32c_get_bytes_checksummed () - m->checksummed_before;
        test_io_counts_get (&m->io, &work->io);
        g_test_message ("%s: read %" G_GUINT64_FORMAT " bytes in %" G_GUINT64_FORMAT
                        " preads, checksummed %" G_GUINT64_FORMAT
                        " bytes, heap peak %" G_GSIZE_FORMAT " KiB",
                        what, work->io.bytes_read, work->io.preads, work->checksummed,
                        work->heap_peak / 1024);
        if (test_alloc_available ())
                g_assert_cmpuint (work->heap_peak, <=, budget);
}

/* A crafted image on disk; its path is in @dir. */
static char *
write_hostile (const char *dir, VhdxHostileKind kind, VhdxHostileImage *image)
{
        g_autoptr (GError) error = NULL;
        char *path = g_build_filename (dir, "image.vhdx", NULL);

        test_assert_ok (vhdx_hostile_write (kind, path, image, &error), error);
        return path;
}

/* Open @path read-only through a VhdxIo counting into @m, and start measuring. */
static VhdxFile *
open_counted (const char *path, Measure *m, GError **error)
{
        int fd = open (path, O_RDONLY | O_CLOEXEC);

        g_assert_cmpint (fd, >=, 0);
        measure_start (m);
        return vhdx_file_open (test_counting_io_new (vhdx_io_new_fd (fd, TRUE), TRUE, &m->io),
                               VHDX_OPEN_FLAGS_NONE, error);
}

static void
test_huge_virtual_disk (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autofree guint8 *buf = g_malloc (MiB);
        g_autofree char *path = NULL;
        VhdxHostileImage image;
        /* 2^26 blocks of 1 MiB, one sector bitmap entry after every 4096 of them. */
        const guint64 blocks = 64 * VHDX_TiB / MiB;
        Measure m;
        Work work;

        path = write_hostile (dir, VHDX_HOSTILE_HUGE_DISK, &image);
        file = open_counted (path, &m, &error);
        g_assert_no_error (error);
        measure_end (&m, OPEN_BUDGET, "open a 64 TiB disk", &work);
        g_assert_cmpuint (vhdx_file_get_info (file)->geometry.bat_entries, ==,
                          blocks + (blocks - 1) / 4096);
        /* Open reads the fixed structures, not the 512 MiB BAT. */
        g_assert_cmpuint (work.io.bytes_read, <=, OPEN_READ_BUDGET);

        /* Reads load the BAT pages they need, not the BAT: one page of
         * VHDX_BAT_PAGE_ENTRIES entries for the last MiB, which is not stored. */
        memset (buf, 0xee, MiB);
        measure_start (&m);
        test_assert_ok (vhdx_file_read (file, 64 * VHDX_TiB - MiB, buf, MiB, &error), error);
        measure_end (&m, OPEN_BUDGET, "read the end of a 64 TiB disk", &work);
        g_assert_cmpuint (work.io.bytes_read, <=, VHDX_BAT_PAGE_ENTRIES * VHDX_BAT_ENTRY_SIZE);
        g_assert_cmpuint (work.io.preads, ==, 1);
        for (gsize i = 0; i < MiB; i++)
                g_assert_cmpuint (buf[i], ==, 0);
        test_tmpdir_free (g_steal_pointer (&dir));
}

static void
test_full_tables (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autofree char *path = NULL;
        VhdxHostileImage image;
        Measure m;
        Work work;

        path = write_hostile (dir, VHDX_HOSTILE_FULL_TABLES, &image);
        file = open_counted (path, &m, &error);
        g_assert_no_error (error);
        measure_end (&m, OPEN_BUDGET, "open with full region and metadata tables", &work);
        g_assert_cmpuint (work.io.bytes_read, <=, OPEN_READ_BUDGET);
        /* Checksums cover two headers and one region table, however full. */
        g_assert_cmpuint (work.checksummed, <=, 2 * VHDX_HEADER_SIZE + VHDX_REGION_TABLE_SIZE);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* A locator item of @length bytes: @count entries, the first parent_linkage. */
typedef struct {
        guint8 *item;
        guint32 length;
        guint32 used;
} Locator;

static guint32
locator_put_text (Locator *l, const char *text)
{
        guint32 at = l->used;

        for (const char *p = text; *p != '\0'; p++) {
                vhdx_put_le16 (l->item + l->used, (guint8) *p);
                l->used += 2;
        }
        return at;
}

static void
locator_set_entry (Locator *l,
                   guint i,
                   guint32 key,
                   guint16 key_length,
                   guint32 value,
                   guint16 value_length)
{
        guint8 *e = l->item + VHDX_LOCATOR_HEADER_SIZE + i * VHDX_LOCATOR_ENTRY_SIZE;

        vhdx_put_le32 (e + VHDX_LOCATOR_ENTRY_OFF_KEY_OFFSET, key);
        vhdx_put_le32 (e + VHDX_LOCATOR_ENTRY_OFF_VALUE_OFFSET, value);
        vhdx_put_le16 (e + VHDX_LOCATOR_ENTRY_OFF_KEY_LENGTH, key_length);
        vhdx_put_le16 (e + VHDX_LOCATOR_ENTRY_OFF_VALUE_LENGTH, value_length);
}

/* The UTF-16 code unit of distinct one-character key @i (< 60000): no
 * surrogates, no zero. */
static guint16
key_unit (guint i)
{
        guint16 unit = (guint16) (0x100 + i);

        return unit >= 0xd800 ? unit + 0x800 : unit;
}

static Locator *
locator_new (guint count)
{
        Locator *l = g_new0 (Locator, 1);
        guint32 key, value;

        l->length = (guint32) VHDX_METADATA_ITEM_MAX_LENGTH;
        l->item = g_malloc0 (l->length);
        memcpy (l->item, vhdx_guid_locator_vhdx.bytes, 16);
        vhdx_put_le16 (l->item + VHDX_LOCATOR_OFF_COUNT, (guint16) count);
        l->used = VHDX_LOCATOR_HEADER_SIZE + count * VHDX_LOCATOR_ENTRY_SIZE;
        key = locator_put_text (l, "parent_linkage");
        value = locator_put_text (l, "{6b0d3a2e-9f1c-4b7a-8e25-1d4c7f9a0b3e}");
        locator_set_entry (l, 0, key, 28, value, 76);
        return l;
}

static void
locator_free (Locator *l)
{
        g_free (l->item);
        g_free (l);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Locator, locator_free)

static GPtrArray *
read_locator (const Locator *l, GError **error)
{
        g_autoptr (GBytes) bytes = g_bytes_new (l->item, l->length);
        g_autoptr (VhdxIo) io = vhdx_io_new_memory (bytes);

        return vhdx_parent_locator_read (io, 0, l->length, error);
}

/* 60000 entries with distinct keys, every value the same 64 KiB of text. */
static void
test_locator_shared_value (void)
{
        guint count = 60000;
        g_autoptr (Locator) l = locator_new (count);
        g_autoptr (GPtrArray) entries = NULL;
        g_autoptr (GError) error = NULL;
        guint32 value;
        Measure m;
        Work work;

        for (guint i = 1; i < count; i++) {
                guint32 key = l->used;
                vhdx_put_le16 (l->item + l->used, key_unit (i));
                l->used += 2;
                locator_set_entry (l, i, key, 2, 0, 0);
        }
        value = l->used;
        for (guint i = 0; i < 32767; i++)
                vhdx_put_le16 (l->item + value + 2 * i, 'x');
        g_assert_cmpuint (value + 65534, <=, l->length);
        for (guint i = 1; i < count; i++) {
                guint8 *e = l->item + VHDX_LOCATOR_HEADER_SIZE + i * VHDX_LOCATOR_ENTRY_SIZE;
                vhdx_put_le32 (e + VHDX_LOCATOR_ENTRY_OFF_VALUE_OFFSET, value);
                vhdx_put_le16 (e + VHDX_LOCATOR_ENTRY_OFF_VALUE_LENGTH, 65534);
        }

        measure_start (&m);
        entries = read_locator (l, &error);
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
        g_assert_null (entries);
        measure_end (&m, 4 * MiB, "locator whose entries share a 64 KiB value", &work);
}

/* As many distinct entries as fit in 1 MiB. */
static void
test_locator_many_keys (void)
{
        guint count = 60000;
        g_autoptr (Locator) l = locator_new (count);
        g_autoptr (GPtrArray) entries = NULL;
        g_autoptr (GError) error = NULL;
        Measure m;
        Work work;

        for (guint i = 1; i < count; i++) {
                guint32 key = l->used;
                vhdx_put_le16 (l->item + l->used, key_unit (i));
                vhdx_put_le16 (l->item + l->used + 2, 'v');
                l->used += 4;
                locator_set_entry (l, i, key, 2, key + 2, 2);
        }
        g_assert_cmpuint (l->used, <=, l->length);

        measure_start (&m);
        entries = read_locator (l, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (entries->len, ==, count);
        /* Small allocations of a few bytes each: about 100 bytes an entry. */
        measure_end (&m, 8 * MiB, "locator with 60000 entries", &work);
        for (guint i = 1; i < count; i++) {
                const VhdxLocatorEntry *e = g_ptr_array_index (entries, i);
                g_autofree char *key =
                        g_utf16_to_utf8 ((gunichar2[]){ key_unit (i) }, 1, NULL, NULL, NULL);
                g_assert_cmpstr (e->key, ==, key);
                g_assert_cmpstr (e->value, ==, "v");
        }
}

/* Logs */

/*
 * Open the dirty image @kind, expecting @code (or success for -1).  A scan
 * checksums every position of the log at most once, so with the replay of
 * the sequence found it checksums at most twice the log's length beyond the
 * headers and region table that every open checks.
 */
static VhdxFile *
open_dirty (VhdxHostileKind kind, gint code, gsize budget, char **dir_out, VhdxHostileImage *image)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *path = NULL;
        VhdxFile *file;
        Measure m;
        Work work;
        guint64 fixed = 2 * VHDX_HEADER_SIZE + VHDX_REGION_TABLE_SIZE;

        *dir_out = test_tmpdir_new ();
        path = write_hostile (*dir_out, kind, image);
        file = open_counted (path, &m, &error);
        if (code >= 0) {
                g_assert_error (error, VHDX_ERROR, code);
                g_assert_null (file);
        } else {
                g_assert_no_error (error);
                g_assert_nonnull (file);
        }
        measure_end (&m, budget, vhdx_hostile_kind_name (kind), &work);
        g_assert_cmpuint (work.checksummed, <=, fixed + 2 * (guint64) image->log_length);
        /* The log is read once, whole, and only when it is not too long. */
        if (image->log_length > VHDX_LOG_MAX_LENGTH)
                g_assert_cmpuint (work.io.bytes_read, <=, OPEN_READ_BUDGET);
        else
                g_assert_cmpuint (work.io.bytes_read, <=,
                                  OPEN_READ_BUDGET + (guint64) image->log_length);
        return file;
}

/* A log longer than VHDX_LOG_MAX_LENGTH is refused before it is read. */
static void
test_log_too_long (void)
{
        g_autofree char *dir = NULL;
        VhdxHostileImage image;

        open_dirty (VHDX_HOSTILE_LOG_TOO_LONG, VHDX_ERROR_NOT_SUPPORTED, OPEN_BUDGET, &dir, &image);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* The longest log allowed, full of data: replayed in memory within about
 * twice its length, and the disk reads as replayed. */
static void
test_log_at_limit (void)
{
        g_autofree char *dir = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxIo) io = NULL;
        g_autofree guint8 *sector = g_malloc (VHDX_LOG_SECTOR_SIZE);
        VhdxHostileImage image;
        gsize budget;

        budget = OPEN_BUDGET + 2 * (gsize) VHDX_LOG_MAX_LENGTH +
                 (gsize) 128 * VHDX_LOG_MAX_LENGTH / VHDX_LOG_SECTOR_SIZE;
        file = open_dirty (VHDX_HOSTILE_LOG_FULL, -1, budget, &dir, &image);
        g_assert_cmpuint (vhdx_file_get_info (file)->log_writes_replayed, ==, image.log_writes);
        g_assert_cmpuint (vhdx_file_get_info (file)->log_state, ==,
                          VHDX_LOG_STATE_REPLAYED_IN_MEMORY);
        g_assert_cmpuint (vhdx_file_get_info (file)->file_size, ==,
                          image.log_target + (guint64) image.log_writes * VHDX_LOG_SECTOR_SIZE);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* 4095 valid one-sector entries with consecutive sequence numbers, but no
 * head whose tail lies in its chain: the scan tries a chain from each. */
static void
test_log_long_chain (void)
{
        g_autofree char *dir = NULL;
        VhdxHostileImage image;

        open_dirty (VHDX_HOSTILE_LOG_LONG_CHAIN, VHDX_ERROR_LOG, OPEN_BUDGET + 2 * (gsize) 16 * MiB,
                    &dir, &image);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* An entry header at every sector, each claiming the rest of the log. */
static void
test_log_overlapping_entries (void)
{
        g_autofree char *dir = NULL;
        VhdxHostileImage image;

        open_dirty (VHDX_HOSTILE_LOG_OVERLAPPING, VHDX_ERROR_LOG,
                    OPEN_BUDGET + 2 * (gsize) 16 * MiB, &dir, &image);
        test_tmpdir_free (g_steal_pointer (&dir));
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);

        if (!test_alloc_available ())
                g_test_message ("heap use is not counted in this build; the work counts are");
        g_test_add_func ("/bounds/huge-virtual-disk", test_huge_virtual_disk);
        g_test_add_func ("/bounds/full-tables", test_full_tables);
        g_test_add_func ("/bounds/locator-shared-value", test_locator_shared_value);
        g_test_add_func ("/bounds/locator-many-keys", test_locator_many_keys);
        g_test_add_func ("/bounds/log-too-long", test_log_too_long);
        g_test_add_func ("/bounds/log-at-limit", test_log_at_limit);
        g_test_add_func ("/bounds/log-long-chain", test_log_long_chain);
        g_test_add_func ("/bounds/log-overlapping-entries", test_log_overlapping_entries);
        return g_test_run ();
}
