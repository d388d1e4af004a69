/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Bounds on resources.  Images that claim the most the format allows (a
 * 64 TiB disk, 2047 regions and metadata items, a parent locator whose
 * entries share their bytes or number 65535, logs at and past the length
 * limit, logs crafted to make the scan for the active sequence quadratic)
 * must open, or fail to open, within a fixed heap budget and in well under
 * a few seconds.  The images are sparse files: what they claim costs no
 * disk space, as it would cost an attacker none.
 *
 * Heap figures come from counting malloc (test-alloc.c), which is not
 * available under the sanitizers; there only the time limits are checked.
 */
#include "test-alloc.h"
#include "test-util.h"
#include "vhdx-crc32c.h"
#include "vhdx-gen.h"
#include "vhdx-log-writer.h"
#include "vhdx-parent.h"

#include <fcntl.h>
#include <gio/gio.h>
#include <unistd.h>

#define MiB VHDX_MiB
/* What opening one image may take, whatever it claims, beyond a log to replay. */
#define OPEN_BUDGET (2 * MiB)
/* Seconds any of these may take, with room for the sanitizer builds. */
#define TIME_LIMIT_USEC (5 * G_USEC_PER_SEC)

typedef struct {
        gsize before;
        gint64 start;
} Measure;

static void
measure_start (Measure *m)
{
        m->before = test_alloc_current ();
        test_alloc_reset_peak ();
        m->start = g_get_monotonic_time ();
}

/* Check the time and the heap peak since measure_start(); the peak in bytes. */
static gsize
measure_end (const Measure *m, gsize budget, const char *what)
{
        gint64 elapsed = g_get_monotonic_time () - m->start;
        gsize peak = test_alloc_available () ? test_alloc_peak () - m->before : 0;

        g_test_message ("%s: %.3f s, heap peak %" G_GSIZE_FORMAT " KiB", what,
                        elapsed / 1e6, peak / 1024);
        g_assert_cmpint (elapsed, <, TIME_LIMIT_USEC);
        if (test_alloc_available ())
                g_assert_cmpuint (peak, <=, budget);
        return peak;
}

/* A small dynamic image on disk, with the generator's layout. */
static char *
write_image (const char *dir, guint32 log_size, VhdxGenLayout *layout)
{
        g_autoptr(VhdxGen) gen = NULL;
        g_autoptr(GError) error = NULL;
        VhdxGenParams params;
        char *path = g_build_filename (dir, "image.vhdx", NULL);

        vhdx_gen_params_init (&params);
        params.virtual_size = 8 * MiB;
        params.block_size = MiB;
        params.log_size = log_size;
        gen = vhdx_gen_new (&params);
        vhdx_gen_fill_pattern (gen, 0, 4096, 1);
        vhdx_gen_get_layout (gen, layout);
        test_assert_ok (vhdx_gen_write_file (gen, path, &error), error);
        return path;
}

static void
pwrite_all (int fd, const void *buf, gsize len, guint64 offset)
{
        g_assert_cmpint (pwrite (fd, buf, len, offset), ==, (gssize) len);
}

static void
pread_all (int fd, void *buf, gsize len, guint64 offset)
{
        g_assert_cmpint (pread (fd, buf, len, offset), ==, (gssize) len);
}

/* Change both region tables with @edit, then fix their checksums. */
static void
edit_region_tables (int fd, void (*edit) (guint8 *table, gpointer data), gpointer data)
{
        g_autofree guint8 *table = g_malloc (VHDX_REGION_TABLE_SIZE);

        for (guint t = 0; t < 2; t++) {
                guint64 o = t == 0 ? VHDX_REGION_TABLE1_OFFSET : VHDX_REGION_TABLE2_OFFSET;
                pread_all (fd, table, VHDX_REGION_TABLE_SIZE, o);
                edit (table, data);
                vhdx_gen_update_region_table_checksum (table);
                pwrite_all (fd, table, VHDX_REGION_TABLE_SIZE, o);
        }
}

/* Set LogGuid in both headers. */
static void
set_log_guid (int fd, const VhdxGuid *guid)
{
        guint8 header[VHDX_HEADER_SIZE];

        for (guint h = 0; h < 2; h++) {
                guint64 o = h == 0 ? VHDX_HEADER1_OFFSET : VHDX_HEADER2_OFFSET;
                pread_all (fd, header, sizeof header, o);
                memcpy (header + VHDX_HEADER_OFF_LOG_GUID, guid->bytes, 16);
                vhdx_gen_update_header_checksum (header);
                pwrite_all (fd, header, sizeof header, o);
        }
}

static VhdxFile *
open_path (const char *path, GError **error)
{
        VhdxIo *io = vhdx_io_open_file (path, error);

        g_assert_nonnull (io);
        return vhdx_file_open (io, VHDX_OPEN_FLAGS_NONE, error);
}

/* A 64 TiB disk with 1 MiB blocks: a 513 MiB BAT, which open must not read. */
static void
set_huge_bat (guint8 *table, gpointer data)
{
        const VhdxGenLayout *layout = data;
        guint8 *e = table + VHDX_REGION_HEADER_SIZE +
                    layout->region_index_bat * VHDX_REGION_ENTRY_SIZE;

        vhdx_put_le32 (e + VHDX_REGION_ENTRY_OFF_LENGTH, 513 * MiB);
}

static void
test_huge_virtual_disk (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autoptr(GError) error = NULL;
        g_autoptr(VhdxFile) file = NULL;
        g_autofree guint8 *buf = g_malloc (MiB);
        g_autofree char *path = NULL;
        VhdxGenLayout layout;
        Measure m;
        guint8 size[8];
        int fd;

        path = write_image (dir, MiB, &layout);
        fd = open (path, O_RDWR | O_CLOEXEC);
        g_assert_cmpint (fd, >=, 0);
        vhdx_put_le64 (size, 64 * VHDX_TiB);
        pwrite_all (fd, size, 8, layout.metadata_item_offset[VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE]);
        edit_region_tables (fd, set_huge_bat, &layout);
        g_assert_cmpint (ftruncate (fd, layout.bat_offset + 513 * MiB), ==, 0);
        close (fd);

        measure_start (&m);
        file = open_path (path, &error);
        g_assert_no_error (error);
        measure_end (&m, OPEN_BUDGET, "open a 64 TiB disk");
        g_assert_cmpuint (vhdx_file_get_info (file)->bat_entries, >, 64 * 1024 * 1024);

        /* Reads load the BAT pages they need, not the BAT. */
        measure_start (&m);
        test_assert_ok (vhdx_file_read (file, 64 * VHDX_TiB - MiB, buf, MiB, &error), error);
        measure_end (&m, OPEN_BUDGET, "read the end of a 64 TiB disk");
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* 2047 regions, the most a table may list: unknown, not required ones. */
static void
add_regions (guint8 *table, gpointer data)
{
        const VhdxGenLayout *layout = data;

        vhdx_put_le32 (table + VHDX_REGION_OFF_ENTRY_COUNT, VHDX_REGION_MAX_ENTRIES);
        for (guint i = 2; i < VHDX_REGION_MAX_ENTRIES; i++) {
                guint8 *e = table + VHDX_REGION_HEADER_SIZE + i * VHDX_REGION_ENTRY_SIZE;
                memset (e, 0, VHDX_REGION_ENTRY_SIZE);
                vhdx_put_le32 (e, 0x51000000 + i);
                vhdx_put_le64 (e + VHDX_REGION_ENTRY_OFF_FILE_OFFSET,
                               layout->file_size + (guint64) i * MiB);
                vhdx_put_le32 (e + VHDX_REGION_ENTRY_OFF_LENGTH, MiB);
        }
}

static void
test_full_tables (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autoptr(GError) error = NULL;
        g_autoptr(VhdxFile) file = NULL;
        g_autofree char *path = NULL;
        g_autofree guint8 *table = g_malloc (VHDX_METADATA_TABLE_SIZE);
        VhdxGenLayout layout;
        Measure m;
        int fd;

        path = write_image (dir, MiB, &layout);
        fd = open (path, O_RDWR | O_CLOEXEC);
        g_assert_cmpint (fd, >=, 0);
        layout.file_size = (layout.file_size + MiB - 1) / MiB * MiB;
        edit_region_tables (fd, add_regions, &layout);
        g_assert_cmpint (ftruncate (fd, layout.file_size + (guint64) VHDX_REGION_MAX_ENTRIES * MiB),
                         ==, 0);

        /* 2047 metadata entries: the five items, then empty unknown ones. */
        pread_all (fd, table, VHDX_METADATA_TABLE_SIZE, layout.metadata_offset);
        vhdx_put_le16 (table + VHDX_METADATA_OFF_ENTRY_COUNT, VHDX_METADATA_MAX_ENTRIES);
        for (guint i = VHDX_GEN_N_ITEMS; i < VHDX_METADATA_MAX_ENTRIES; i++) {
                guint8 *e = table + VHDX_METADATA_HEADER_SIZE + i * VHDX_METADATA_ENTRY_SIZE;
                memset (e, 0, VHDX_METADATA_ENTRY_SIZE);
                vhdx_put_le32 (e, 0x4d000000 + i);
        }
        pwrite_all (fd, table, VHDX_METADATA_TABLE_SIZE, layout.metadata_offset);
        close (fd);

        measure_start (&m);
        file = open_path (path, &error);
        g_assert_no_error (error);
        measure_end (&m, OPEN_BUDGET, "open with full region and metadata tables");
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
locator_set_entry (Locator *l, guint i, guint32 key, guint16 key_length, guint32 value,
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
        g_autoptr(GBytes) bytes = g_bytes_new (l->item, l->length);
        g_autoptr(VhdxIo) io = vhdx_io_new_memory (bytes);

        return vhdx_parent_locator_read (io, 0, l->length, error);
}

/* 60000 entries with distinct keys, every value the same 64 KiB of text. */
static void
test_locator_shared_value (void)
{
        guint count = 60000;
        g_autoptr(Locator) l = locator_new (count);
        g_autoptr(GPtrArray) entries = NULL;
        g_autoptr(GError) error = NULL;
        guint32 value;
        Measure m;

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
        measure_end (&m, 4 * MiB, "locator whose entries share a 64 KiB value");
}

/* As many distinct entries as fit in 1 MiB. */
static void
test_locator_many_keys (void)
{
        guint count = 60000;
        g_autoptr(Locator) l = locator_new (count);
        g_autoptr(GPtrArray) entries = NULL;
        g_autoptr(GError) error = NULL;
        gsize peak;
        Measure m;

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
        peak = measure_end (&m, 8 * MiB, "locator with 60000 entries");
        (void) peak;
}

/* Logs */

typedef struct {
        char *dir;
        char *path;
        VhdxGenLayout layout;
        VhdxGuid log_guid;
        int fd;
} Dirty;

static Dirty *
dirty_new (guint32 log_size)
{
        Dirty *d = g_new0 (Dirty, 1);

        d->dir = test_tmpdir_new ();
        d->path = write_image (d->dir, log_size, &d->layout);
        d->fd = open (d->path, O_RDWR | O_CLOEXEC);
        g_assert_cmpint (d->fd, >=, 0);
        vhdx_guid_new_random (&d->log_guid);
        set_log_guid (d->fd, &d->log_guid);
        return d;
}

static void
dirty_free (Dirty *d)
{
        close (d->fd);
        g_free (d->path);
        test_tmpdir_free (d->dir);
        g_free (d);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Dirty, dirty_free)

/* A log entry header without descriptors at @position, its checksum over
 * @checksum_length bytes of @log (0: left wrong). */
static void
put_entry (guint8 *log, guint32 position, guint32 length, guint32 tail, guint64 sequence,
           const VhdxGuid *guid, guint32 checksum_length)
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

static void
open_dirty_expecting (Dirty *d, gint code, gsize budget, const char *what)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(VhdxFile) file = NULL;
        Measure m;

        measure_start (&m);
        file = open_path (d->path, &error);
        g_assert_error (error, VHDX_ERROR, code);
        measure_end (&m, budget, what);
}

/* A log longer than VHDX_LOG_MAX_LENGTH is refused before it is read. */
static void
test_log_too_long (void)
{
        g_autoptr(Dirty) d = dirty_new (VHDX_LOG_MAX_LENGTH + MiB);

        open_dirty_expecting (d, VHDX_ERROR_NOT_SUPPORTED, OPEN_BUDGET, "log past the limit");
}

/* The longest log allowed, full of data: replayed in memory within about
 * twice its length. */
static void
test_log_at_limit (void)
{
        guint32 log_length = VHDX_LOG_MAX_LENGTH;
        g_autoptr(Dirty) d = dirty_new (log_length);
        g_autoptr(VhdxIo) io = vhdx_io_new_fd (d->fd, FALSE);
        g_autoptr(VhdxLogWriter) writer = NULL;
        g_autoptr(VhdxFile) file = NULL;
        g_autoptr(GError) error = NULL;
        guint8 sector[4096];
        guint64 target = (d->layout.file_size + MiB - 1) / MiB * MiB;
        /* Descriptor sectors plus one data sector per descriptor fill the log. */
        guint n = (log_length / 4096) * 127 / 128 - 1;
        Measure m;

        memset (sector, 0x5a, sizeof sector);
        writer = vhdx_log_writer_new (io, d->layout.log_offset, log_length, &d->log_guid, 0, 1);
        for (guint i = 0; i < n; i++)
                vhdx_log_writer_add_data (writer, target + (guint64) i * 4096, sector);
        test_assert_ok (vhdx_log_writer_commit (writer, d->layout.file_size,
                                               target + (guint64) n * 4096, &error), error);

        measure_start (&m);
        file = open_path (d->path, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (vhdx_file_get_info (file)->log_writes_replayed, ==, n);
        measure_end (&m, OPEN_BUDGET + 2 * (gsize) log_length + n * 128,
                     "replay a full 32 MiB log in memory");
}

/* 4095 valid one-sector entries with consecutive sequence numbers, but no
 * head whose tail lies in its chain: the scan tries a chain from each. */
static void
test_log_long_chain (void)
{
        guint32 log_length = 16 * MiB;
        g_autoptr(Dirty) d = dirty_new (log_length);
        g_autofree guint8 *log = g_malloc0 (log_length);
        guint n = log_length / 4096 - 1;

        for (guint i = 0; i < n; i++)
                put_entry (log, i * 4096, 4096, n * 4096, i + 1, &d->log_guid, 4096);
        pwrite_all (d->fd, log, log_length, d->layout.log_offset);
        open_dirty_expecting (d, VHDX_ERROR_LOG, OPEN_BUDGET + 2 * (gsize) log_length,
                              "scan a log of 4095 entries without a sequence");
}

/* An entry header at every sector, each claiming the rest of the log. */
static void
test_log_overlapping_entries (void)
{
        guint32 log_length = 16 * MiB;
        g_autoptr(Dirty) d = dirty_new (log_length);
        g_autofree guint8 *log = g_malloc0 (log_length);

        for (guint32 pos = 0; pos < log_length; pos += 4096)
                put_entry (log, pos, log_length - pos, 0, 1 + pos / 4096, &d->log_guid, 0);
        pwrite_all (d->fd, log, log_length, d->layout.log_offset);
        open_dirty_expecting (d, VHDX_ERROR_LOG, OPEN_BUDGET + 2 * (gsize) log_length,
                              "scan a log of overlapping entries");
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);

        if (!test_alloc_available ())
                g_test_message ("heap use is not counted in this build; only time is checked");
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
