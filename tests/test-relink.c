/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Pointing a differencing image at its moved parent.  The parent is made by
 * the test generator (its DataWriteGuid known without the engine), the
 * child by the project's writer; the parent moves, the engine rewrites the
 * child's locator, and then: the child opens with no parent given and
 * reads what it read before the move, through the new relative_path; the
 * metadata table, the locator and the headers, taken apart here by hand
 * from MS-VHDX 2.6.1 and 2.6.2.6, say what they should; libvhdi, given the
 * moved parent, reads the child as before.
 */
#include "config.h"

#include "test-util.h"
#include "vhdx-create.h"
#include "vhdx-gen.h"
#include "vhdx-relink.h"
#include "vhdx-writer-private.h"
#include "vhdx-writer.h"

#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <unistd.h>

#ifdef HAVE_LIBVHDI
#include <libvhdi.h>
#endif

#define MiB  (G_GUINT64_CONSTANT (1) << 20)
#define SIZE (8 * MiB)

/* MS-VHDX's GUIDs, from their text. */
#define LOCATOR_ITEM_TEXT "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C"
#define LOCATOR_TYPE_TEXT "B04AEFB7-D19E-4A81-B789-25B8E9445913"

typedef struct {
        char *dir;
        char *child;  /* dir/vm/child.vhdx */
        char *parent; /* where the parent is now */
        guint32 ss;
        VhdxGuid parent_guid; /* the parent's DataWriteGuid, as the generator wrote it */
        guint8 *before;       /* the child's disk before the move */
} Fixture;

static void
fixture_free (Fixture *f)
{
        test_tmpdir_free (f->dir);
        g_free (f->child);
        g_free (f->parent);
        g_free (f->before);
        g_free (f);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Fixture, fixture_free)

/* A dynamic image from the generator, a pattern of @seed in every other block. */
static VhdxGuid
make_base (const char *path, guint32 ss, guint32 seed)
{
        g_autoptr (GError) error = NULL;
        VhdxGenParams params;
        g_autoptr (VhdxGen) gen = NULL;
        VhdxGuid file_write, data_write, disk_id;

        vhdx_gen_params_init (&params);
        params.virtual_size = SIZE;
        params.block_size = 1 * MiB;
        params.logical_sector_size = ss;
        params.seed = seed;
        gen = vhdx_gen_new (&params);
        for (guint64 at = 0; at < SIZE; at += 2 * MiB)
                vhdx_gen_fill_pattern (gen, at, MiB, seed);
        test_assert_ok (vhdx_gen_write_file (gen, path, &error), error);
        vhdx_gen_get_guids (gen, &file_write, &data_write, &disk_id);
        return data_write;
}

static void
mkdirs (const char *path)
{
        g_assert_cmpint (g_mkdir_with_parents (path, 0755), ==, 0);
}

/* The child of @parent_guid at @path, with runs of its own data; its
 * locator names @relative and @absolute (may be NULL). */
static void
make_child (const char *path,
            guint32 ss,
            const VhdxGuid *parent_guid,
            const char *relative,
            const char *absolute)
{
        g_autoptr (GError) error = NULL;
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DIFFERENCING,
                .virtual_size = SIZE,
                .block_size = 1 * MiB,
                .logical_sector_size = ss,
                .parent_data_write_guid = *parent_guid,
                .parent_relative_path = relative,
                .parent_absolute_path = absolute,
        };
        int fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        g_autoptr (VhdxIo) io = NULL;
        g_autoptr (VhdxCreator) creator = NULL;
        g_autofree guint8 *data = g_malloc (64 * 1024);

        g_assert_cmpint (fd, >=, 0);
        io = vhdx_io_new_fd (fd, TRUE);
        creator = vhdx_creator_new (io, &params, &error);
        g_assert_no_error (error);
        /* Parts of blocks, some over the parent's data, some not. */
        for (guint64 at = 512 * 1024; at + 64 * 1024 <= SIZE; at += 1536 * 1024) {
                vhdx_gen_pattern_fill_buffer (data, at, 64 * 1024, 77);
                test_assert_ok (vhdx_creator_write (creator, at, data, 64 * 1024, &error), error);
        }
        test_assert_ok (vhdx_creator_finish (creator, &error), error);
}

/* The whole disk of the image at @path, its chain found from its locator;
 * the parent must be @expected_parent. */
static guint8 *
read_chain (const char *path, const char *expected_parent)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = test_open_path (path, &error);
        guint8 *disk = g_malloc (SIZE);
        g_autofree char *found = NULL;
        g_autofree char *expected = g_canonicalize_filename (expected_parent, NULL);

        g_assert_no_error (error);
        g_assert_nonnull (vhdx_file_get_parent (file));
        g_assert_null (vhdx_file_get_parent_warning (file));
        found = g_canonicalize_filename (vhdx_file_get_parent_path (file), NULL);
        g_assert_cmpstr (found, ==, expected);
        test_assert_ok (vhdx_file_read (file, 0, disk, SIZE, &error), error);
        return disk;
}

/* dir/vm/child.vhdx, child of dir/vm/base.vhdx, and the disk it reads. */
static Fixture *
fixture_new (guint32 ss, const char *absolute)
{
        Fixture *f = g_new0 (Fixture, 1);
        g_autofree char *vm = NULL;

        f->dir = test_tmpdir_new ();
        f->ss = ss;
        vm = g_build_filename (f->dir, "vm", NULL);
        mkdirs (vm);
        f->child = g_build_filename (vm, "child.vhdx", NULL);
        f->parent = g_build_filename (vm, "base.vhdx", NULL);
        f->parent_guid = make_base (f->parent, ss, 5);
        make_child (f->child, ss, &f->parent_guid, "base.vhdx",
                    absolute != NULL ? absolute : f->parent);
        f->before = read_chain (f->child, f->parent);
        return f;
}

/* Move the parent to @relative_dir/@name under the fixture's directory. */
static void
move_parent (Fixture *f, const char *relative_dir, const char *name)
{
        char *to = g_build_filename (f->dir, relative_dir, name, NULL);
        g_autofree char *dir = g_path_get_dirname (to);

        mkdirs (dir);
        g_assert_cmpint (g_rename (f->parent, to), ==, 0);
        g_free (f->parent);
        f->parent = to;
}

static VhdxFile *
open_child (Fixture *f, VhdxOpenFlags flags, GError **error)
{
        VhdxOpenOptions options = { .path = f->child };
        VhdxIo *io = vhdx_io_open_path (f->child, TRUE, error);

        if (io == NULL)
                return NULL;
        return vhdx_file_open_full (io, VHDX_OPEN_FLAGS_READ_WRITE | flags, &options, error);
}

/* Relink the fixture's child to its parent where it is now. */
static gboolean
relink (Fixture *f, gboolean ignore_mismatch, VhdxSetParentResult *result, GError **error)
{
        g_autoptr (VhdxFile) child = open_child (f, VHDX_OPEN_FLAGS_NO_PARENT, error);
        g_autoptr (VhdxFile) parent = NULL;
        gboolean ok;

        g_assert_nonnull (child);
        parent = test_open_path (f->parent, error);
        g_assert_nonnull (parent);
        ok = vhdx_file_set_parent (child, f->child, parent, f->parent, ignore_mismatch, result,
                                   error);
        if (ok) {
                /* The opened child knows its new locator. */
                g_assert_cmpstr (vhdx_parent_locator_lookup (vhdx_file_get_parent_locator (child),
                                                             "relative_path"),
                                 ==, result->new_relative_path);
        }
        {
                g_autoptr (GError) close_error = NULL;
                test_assert_ok (vhdx_file_close (child, &close_error), close_error);
        }
        return ok;
}

/* ---- The metadata region and the locator, by hand ---- */

typedef struct {
        guint8 id[16];
        guint32 offset;
        guint32 length;
        guint32 flags;
} SpecItem;

static guint8 *
read_file_range (const char *path, guint64 offset, gsize length)
{
        int fd = open (path, O_RDONLY | O_CLOEXEC);
        guint8 *buf = g_malloc (length);

        g_assert_cmpint (fd, >=, 0);
        g_assert_cmpint (pread (fd, buf, length, (off_t) offset), ==, (gssize) length);
        close (fd);
        return buf;
}

static void
write_file_range (const char *path, guint64 offset, const void *data, gsize length)
{
        int fd = open (path, O_WRONLY | O_CLOEXEC);

        g_assert_cmpint (fd, >=, 0);
        g_assert_cmpint (pwrite (fd, data, length, (off_t) offset), ==, (gssize) length);
        close (fd);
}

static guint32
le32 (const guint8 *p)
{
        return (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 | (guint32) p[3] << 24;
}

static guint16
le16 (const guint8 *p)
{
        return (guint16) (p[0] | p[1] << 8);
}

static void
put_le32 (guint8 *p, guint32 v)
{
        for (guint i = 0; i < 4; i++)
                p[i] = (guint8) (v >> (8 * i));
}

static void
put_le16 (guint8 *p, guint16 v)
{
        p[0] = (guint8) v;
        p[1] = (guint8) (v >> 8);
}

/* The entries of the metadata table, checked as MS-VHDX 2.6.1 says: the
 * signature, items past the 64 KiB table, inside the region, none
 * overlapping another. */
static GArray *
spec_read_items (const char *path, const TestSpecLayout *layout)
{
        g_autofree guint8 *table = read_file_range (path, layout->metadata_offset, 64 * 1024);
        GArray *items = g_array_new (FALSE, FALSE, sizeof (SpecItem));
        guint count;

        g_assert_cmpmem (table, 8, "metadata", 8);
        count = le16 (table + 10);
        g_assert_cmpuint (count, <=, 2047);
        for (guint i = 0; i < count; i++) {
                const guint8 *e = table + 32 + 32 * i;
                SpecItem item;

                memcpy (item.id, e, 16);
                item.offset = le32 (e + 16);
                item.length = le32 (e + 20);
                item.flags = le32 (e + 24);
                if (item.length > 0) {
                        g_assert_cmpuint (item.offset, >=, 64 * 1024);
                        g_assert_cmpuint ((guint64) item.offset + item.length, <=,
                                          layout->metadata_length);
                }
                for (guint j = 0; j < items->len; j++) {
                        const SpecItem *other = &g_array_index (items, SpecItem, j);

                        if (item.length > 0 && other->length > 0)
                                g_assert_true (item.offset >= other->offset + other->length ||
                                               other->offset >= item.offset + item.length);
                }
                g_array_append_val (items, item);
        }
        return items;
}

/* The locator at the layout's parent locator item, as key, value pairs in
 * its order (MS-VHDX 2.6.2.6): the VHDX locator type, the count, 12-byte
 * entries with offsets from the item's start, UTF-16LE text. */
static GPtrArray *
spec_read_locator (const char *path, const TestSpecLayout *layout)
{
        const VhdxGuid type = vhdx_gen_guid_from_text (LOCATOR_TYPE_TEXT);
        guint32 length = layout->parent_locator_length;
        g_autofree guint8 *item = NULL;
        GPtrArray *pairs = g_ptr_array_new_with_free_func (g_free);
        guint count;

        g_assert_cmpuint (layout->parent_locator_offset, !=, 0);
        g_assert_cmpuint (length, >=, 20);
        item = read_file_range (path, layout->parent_locator_offset, length);
        g_assert_cmpmem (item, 16, type.bytes, 16);
        count = le16 (item + 18);
        g_assert_cmpuint (20 + 12 * count, <=, length);
        for (guint i = 0; i < count; i++) {
                const guint8 *e = item + 20 + 12 * i;
                guint32 offsets[2] = { le32 (e), le32 (e + 4) };
                guint16 lengths[2] = { le16 (e + 8), le16 (e + 10) };

                for (guint k = 0; k < 2; k++) {
                        g_autofree gunichar2 *text = NULL;
                        char *utf8;

                        g_assert_cmpuint (lengths[k] % 2, ==, 0);
                        g_assert_cmpuint (lengths[k], >, 0);
                        g_assert_cmpuint ((guint64) offsets[k] + lengths[k], <=, length);
                        text = g_new (gunichar2, lengths[k] / 2);
                        for (guint c = 0; c < lengths[k] / 2u; c++)
                                text[c] = le16 (item + offsets[k] + 2 * c);
                        utf8 = g_utf16_to_utf8 (text, lengths[k] / 2, NULL, NULL, NULL);
                        g_assert_nonnull (utf8);
                        g_ptr_array_add (pairs, utf8);
                }
        }
        return pairs;
}

/* The value of @key in @pairs, or NULL. */
static const char *
pairs_lookup (GPtrArray *pairs, const char *key)
{
        for (guint i = 0; i + 1 < pairs->len; i += 2) {
                if (g_str_equal (g_ptr_array_index (pairs, i), key))
                        return g_ptr_array_index (pairs, i + 1);
        }
        return NULL;
}

/* The keys of @pairs in order, joined by spaces. */
static char *
pairs_keys (GPtrArray *pairs)
{
        GString *keys = g_string_new (NULL);

        for (guint i = 0; i < pairs->len; i += 2)
                g_string_append_printf (keys, "%s%s", i > 0 ? " " : "",
                                        (const char *) g_ptr_array_index (pairs, i));
        return g_string_free (keys, FALSE);
}

/* A locator item of @n @keys and @values, encoded here. */
static GByteArray *
spec_encode_locator (const char *const *keys, const char *const *values, guint n)
{
        const VhdxGuid type = vhdx_gen_guid_from_text (LOCATOR_TYPE_TEXT);
        GByteArray *item = g_byte_array_new ();

        g_byte_array_set_size (item, 20 + 12 * n);
        memset (item->data, 0, item->len);
        memcpy (item->data, type.bytes, 16);
        put_le16 (item->data + 18, (guint16) n);
        for (guint i = 0; i < n; i++) {
                const char *texts[2] = { keys[i], values[i] };

                for (guint k = 0; k < 2; k++) {
                        glong units = 0;
                        g_autofree gunichar2 *utf16 =
                                g_utf8_to_utf16 (texts[k], -1, NULL, &units, NULL);
                        guint32 at = item->len;

                        for (glong c = 0; c < units; c++) {
                                guint8 le[2] = { (guint8) utf16[c], (guint8) (utf16[c] >> 8) };
                                g_byte_array_append (item, le, 2);
                        }
                        put_le32 (item->data + 20 + 12 * i + 4 * k, at);
                        put_le16 (item->data + 20 + 12 * i + 8 + 2 * k, (guint16) (units * 2));
                }
        }
        return item;
}

/* Index of the entry of the item @text in @items, or -1. */
static int
find_item (GArray *items, const char *text)
{
        const VhdxGuid id = vhdx_gen_guid_from_text (text);

        for (guint i = 0; i < items->len; i++) {
                if (memcmp (g_array_index (items, SpecItem, i).id, id.bytes, 16) == 0)
                        return (int) i;
        }
        return -1;
}

/* Give the child at @path the locator @item, at @region_offset of its
 * metadata region, and point the table at it. */
static void
patch_locator (const char *path, const GByteArray *item, guint32 region_offset)
{
        TestSpecLayout layout;
        g_autoptr (GArray) items = NULL;
        guint8 entry[8];
        int index;

        test_spec_read_layout (path, &layout);
        items = spec_read_items (path, &layout);
        index = find_item (items, LOCATOR_ITEM_TEXT);
        g_assert_cmpint (index, >=, 0);
        write_file_range (path, layout.metadata_offset + region_offset, item->data, item->len);
        put_le32 (entry, region_offset);
        put_le32 (entry + 4, item->len);
        write_file_range (path, layout.metadata_offset + 32 + 32 * (guint) index + 16, entry, 8);
}

/* Fill the metadata region past its last item with an unknown item, so
 * that no new item fits. */
static void
fill_metadata_region (const char *path)
{
        const VhdxGuid filler = vhdx_gen_guid_from_text ("6E2B0D85-3A3F-4C21-9D3C-1F0E4D5B7A90");
        TestSpecLayout layout;
        g_autoptr (GArray) items = NULL;
        guint32 end = 64 * 1024;
        guint8 entry[32] = { 0 };
        guint8 count[2];

        test_spec_read_layout (path, &layout);
        items = spec_read_items (path, &layout);
        for (guint i = 0; i < items->len; i++) {
                const SpecItem *item = &g_array_index (items, SpecItem, i);
                end = MAX (end, item->offset + item->length);
        }
        /* Less than 8 bytes stay free before it. */
        end = (end + 7) / 8 * 8;
        memcpy (entry, filler.bytes, 16);
        put_le32 (entry + 16, end);
        put_le32 (entry + 20, layout.metadata_length - end);
        write_file_range (path, layout.metadata_offset + 32 + 32 * items->len, entry, 32);
        put_le16 (count, (guint16) (items->len + 1));
        write_file_range (path, layout.metadata_offset + 10, count, 2);
}

/* "\" for "/": the Windows form the locator's paths take. */
static char *
windows_path (const char *path)
{
        return g_strdelimit (g_strdup (path), "/", '\\');
}

static void
assert_guid_text (const char *text, const VhdxGuid *guid)
{
        g_autofree char *expected = test_guid_to_text (guid->bytes);
        g_autofree char *braced = g_strdup_printf ("{%s}", expected);

        g_assert_cmpint (g_ascii_strcasecmp (text, braced), ==, 0);
}

/* libvhdi, given the moved parent, reads the child as it read before the move. */
static void
assert_libvhdi_reads (Fixture *f)
{
#ifdef HAVE_LIBVHDI
        libvhdi_file_t *child = NULL, *parent = NULL;
        libvhdi_error_t *error = NULL;
        g_autofree guint8 *disk = g_malloc (SIZE);

        g_assert_cmpint (libvhdi_file_initialize (&parent, &error), ==, 1);
        g_assert_cmpint (libvhdi_file_open (parent, f->parent, LIBVHDI_OPEN_READ, &error), ==, 1);
        g_assert_cmpint (libvhdi_file_initialize (&child, &error), ==, 1);
        g_assert_cmpint (libvhdi_file_open (child, f->child, LIBVHDI_OPEN_READ, &error), ==, 1);
        if (libvhdi_file_set_parent_file (child, parent, &error) != 1) {
                char message[1024] = "";

                libvhdi_error_sprint (error, message, sizeof message);
                g_error ("libvhdi does not take the moved parent: %s", message);
        }
        g_assert_cmpint (libvhdi_file_read_buffer_at_offset (child, disk, SIZE, 0, &error), ==,
                         (gssize) SIZE);
        test_assert_bytes_equal (disk, f->before, SIZE, 0, "libvhdi's read of the relinked child");
        libvhdi_file_close (child, &error);
        libvhdi_file_free (&child, &error);
        libvhdi_file_close (parent, &error);
        libvhdi_file_free (&parent, &error);
#else
        g_test_message ("libvhdi is not available: the child was not read by libvhdi");
#endif
}

/* ---- The tests ---- */

/* The parent moves to another directory under another name: the child
 * finds it through the new relative_path and reads as before; the locator
 * and the headers say what they should. */
static void
test_moved (gconstpointer data)
{
        guint32 ss = GPOINTER_TO_UINT (data);
        g_autoptr (Fixture) f = fixture_new (ss, NULL);
        g_autoptr (GError) error = NULL;
        g_auto (VhdxSetParentResult) result = { 0 };
        TestSpecLayout before, after;
        g_autoptr (GPtrArray) pairs = NULL;
        g_autoptr (GArray) items = NULL;
        g_autofree guint8 *disk = NULL;
        g_autofree char *absolute = NULL;
        g_autofree char *keys = NULL;
        const char *expected_relative =
                ss == 4096 ? "..\\store\\disks\\base-4k.vhdx" : "..\\store\\disks\\base-moved.vhdx";

        test_spec_read_layout (f->child, &before);
        move_parent (f, "store/disks", ss == 4096 ? "base-4k.vhdx" : "base-moved.vhdx");
        {
                /* The old locator finds it no more. */
                g_autoptr (VhdxFile) lost = test_open_path (f->child, &error);
                g_assert_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND);
                g_assert_null (lost);
                g_clear_error (&error);
        }
        test_assert_ok (relink (f, FALSE, &result, &error), error);
        g_assert_cmpstr (result.old_relative_path, ==, "base.vhdx");
        g_assert_cmpstr (result.new_relative_path, ==, expected_relative);
        g_assert_false (result.linkage_changed);
        g_assert_false (result.in_place);

        /* (a) the chain, through the new relative_path, reads as before. */
        disk = read_chain (f->child, f->parent);
        test_assert_bytes_equal (disk, f->before, SIZE, 0, "the relinked child");

        /* (b) the locator, by hand. */
        test_spec_read_layout (f->child, &after);
        items = spec_read_items (f->child, &after);
        pairs = spec_read_locator (f->child, &after);
        keys = pairs_keys (pairs);
        g_assert_cmpstr (keys, ==, "parent_linkage relative_path absolute_win32_path");
        g_assert_cmpstr (pairs_lookup (pairs, "relative_path"), ==, expected_relative);
        {
                g_autofree char *canonical = g_canonicalize_filename (f->parent, NULL);
                absolute = windows_path (canonical);
        }
        g_assert_cmpstr (pairs_lookup (pairs, "absolute_win32_path"), ==, absolute);
        assert_guid_text (pairs_lookup (pairs, "parent_linkage"), &f->parent_guid);
        /* A new item in free space, the old one's bytes no longer named. */
        g_assert_cmpuint (after.parent_locator_offset, !=, before.parent_locator_offset);
        g_assert_cmpuint (after.parent_locator_offset % 8, ==, 0);
        g_assert_cmpuint (items->len, ==, 6);

        /* (e) the headers: FileWriteGuid new, DataWriteGuid kept; no log left. */
        g_assert_cmpmem (after.data_write_guid, 16, before.data_write_guid, 16);
        g_assert_true (memcmp (after.file_write_guid, before.file_write_guid, 16) != 0);
        g_assert_cmpuint (after.header_sequence, >, before.header_sequence);
        {
                static const guint8 zero[16];
                g_assert_cmpmem (after.log_guid, 16, zero, 16);
        }
        g_assert_cmpuint (after.virtual_size, ==, before.virtual_size);

        /* (c) libvhdi agrees. */
        assert_libvhdi_reads (f);

        /* And check finds nothing wrong. */
        {
                g_autoptr (VhdxFile) file = test_open_path (f->child, &error);
                g_autoptr (GPtrArray) problems = vhdx_problems_new ();

                g_assert_no_error (error);
                test_assert_ok (vhdx_file_check (file, problems, &error), error);
                for (guint i = 0; i < problems->len; i++) {
                        const VhdxProblem *p = g_ptr_array_index (problems, i);
                        g_assert_cmpint (p->severity, !=, VHDX_SEVERITY_ERROR);
                }
        }
}

/* A locator with unknown keys, volume_path and a second linkage GUID: the
 * unknown keys and the linkage stay in their order, volume_path goes. */
static void
test_keys_kept (void)
{
        g_autoptr (Fixture) f = fixture_new (512, NULL);
        g_autoptr (GError) error = NULL;
        g_auto (VhdxSetParentResult) result = { 0 };
        g_autofree char *linkage = NULL;
        g_autofree char *guid = test_guid_to_text (f->parent_guid.bytes);
        g_autoptr (GByteArray) item = NULL;
        g_autoptr (GPtrArray) pairs = NULL;
        g_autofree char *keys = NULL;
        TestSpecLayout layout;

        linkage = g_strdup_printf ("{%s}", guid);
        {
                /* A second linkage GUID, as a merge leaves it (libvhdi
                 * checks only the first: the parent is that one here). */
                const char *k[] = { "parent_linkage", "x_vendor",        "relative_path",
                                    "volume_path",    "parent_linkage2", "x_other" };
                const char *v[] = {
                        linkage,
                        "kept as it was",
                        ".\\base.vhdx",
                        "\\\\?\\Volume{0b0f5a3e-0000-0000-0000-100000000000}\\vm\\base.vhdx",
                        "{01234567-89ab-cdef-0123-456789abcdef}",
                        "ünïcode value"
                };
                item = spec_encode_locator (k, v, G_N_ELEMENTS (k));
        }
        patch_locator (f->child, item, 512 * 1024);
        {
                /* The image made by hand reads as before. */
                g_autofree guint8 *disk = read_chain (f->child, f->parent);
                test_assert_bytes_equal (disk, f->before, SIZE, 0, "the patched child");
        }
        move_parent (f, "elsewhere", "base.vhdx");
        test_assert_ok (relink (f, FALSE, &result, &error), error);
        g_assert_true (result.volume_path_dropped);
        g_assert_false (result.linkage_changed);
        g_assert_cmpstr (result.old_relative_path, ==, ".\\base.vhdx");

        test_spec_read_layout (f->child, &layout);
        pairs = spec_read_locator (f->child, &layout);
        keys = pairs_keys (pairs);
        g_assert_cmpstr (keys, ==,
                         "parent_linkage x_vendor relative_path parent_linkage2 x_other "
                         "absolute_win32_path");
        g_assert_cmpstr (pairs_lookup (pairs, "parent_linkage"), ==, linkage);
        g_assert_cmpstr (pairs_lookup (pairs, "parent_linkage2"), ==,
                         "{01234567-89ab-cdef-0123-456789abcdef}");
        g_assert_cmpstr (pairs_lookup (pairs, "x_vendor"), ==, "kept as it was");
        g_assert_cmpstr (pairs_lookup (pairs, "x_other"), ==, "ünïcode value");
        g_assert_cmpstr (pairs_lookup (pairs, "relative_path"), ==, "..\\elsewhere\\base.vhdx");
        {
                g_autofree guint8 *disk = read_chain (f->child, f->parent);
                test_assert_bytes_equal (disk, f->before, SIZE, 0, "the relinked child");
        }
        assert_libvhdi_reads (f);
}

/* Another image with the same data but not the parent: refused, naming
 * both GUIDs, with nothing written; accepted when told to, and then the
 * locator names it alone. */
static void
test_mismatch (void)
{
        g_autoptr (Fixture) f = fixture_new (512, NULL);
        g_autoptr (GError) error = NULL;
        g_auto (VhdxSetParentResult) result = { 0 };
        g_autofree char *other = g_build_filename (f->dir, "other", "base.vhdx", NULL);
        g_autofree char *sha_before = NULL;
        g_autofree char *sha_after = NULL;
        g_autofree char *expected_text = test_guid_to_text (f->parent_guid.bytes);
        g_autofree char *other_text = NULL;
        g_autoptr (GPtrArray) pairs = NULL;
        TestSpecLayout layout;
        VhdxGuid other_guid;

        /* The same pattern, the generator's other seed giving other GUIDs. */
        {
                g_autofree char *dir = g_path_get_dirname (other);
                VhdxGenParams params;
                g_autoptr (VhdxGen) gen = NULL;
                VhdxGuid file_write, disk_id;

                mkdirs (dir);
                vhdx_gen_params_init (&params);
                params.virtual_size = SIZE;
                params.block_size = 1 * MiB;
                params.logical_sector_size = 512;
                params.seed = 6;
                gen = vhdx_gen_new (&params);
                for (guint64 at = 0; at < SIZE; at += 2 * MiB)
                        vhdx_gen_fill_pattern (gen, at, MiB, 5);
                test_assert_ok (vhdx_gen_write_file (gen, other, &error), error);
                vhdx_gen_get_guids (gen, &file_write, &other_guid, &disk_id);
        }
        other_text = test_guid_to_text (other_guid.bytes);
        g_assert_cmpstr (other_text, !=, expected_text);
        g_free (f->parent);
        f->parent = g_strdup (other);

        sha_before = test_sha256_file (f->child);
        g_assert_false (relink (f, FALSE, &result, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH);
        g_assert_nonnull (strstr (error->message, expected_text));
        g_assert_nonnull (strstr (error->message, other_text));
        g_test_message ("%s", error->message);
        g_clear_error (&error);
        vhdx_set_parent_result_clear (&result);
        sha_after = test_sha256_file (f->child);
        g_assert_cmpstr (sha_after, ==, sha_before);

        test_assert_ok (relink (f, TRUE, &result, &error), error);
        g_assert_true (result.linkage_changed);
        assert_guid_text (result.new_linkage, &other_guid);
        assert_guid_text (result.old_linkage, &f->parent_guid);
        test_spec_read_layout (f->child, &layout);
        pairs = spec_read_locator (f->child, &layout);
        assert_guid_text (pairs_lookup (pairs, "parent_linkage"), &other_guid);
        g_assert_null (pairs_lookup (pairs, "parent_linkage2"));
        g_assert_cmpstr (pairs_lookup (pairs, "relative_path"), ==, "..\\other\\base.vhdx");
        {
                /* The same data: the child reads as before, with no warning. */
                g_autofree guint8 *disk = read_chain (f->child, other);
                test_assert_bytes_equal (disk, f->before, SIZE, 0, "the child of the other image");
        }
}

/* parent_linkage naming a stale parent and parent_linkage2 the one: not a
 * mismatch (MS-VHDX 2.6.2.6), and both stay. */
static void
test_linkage2_match (void)
{
        g_autoptr (Fixture) f = fixture_new (512, NULL);
        g_autoptr (GError) error = NULL;
        g_auto (VhdxSetParentResult) result = { 0 };
        g_autofree char *guid = test_guid_to_text (f->parent_guid.bytes);
        g_autofree char *linkage = g_ascii_strup (guid, -1);
        g_autofree char *braced = g_strdup_printf ("{%s}", linkage);
        g_autoptr (GByteArray) item = NULL;
        g_autoptr (GPtrArray) pairs = NULL;
        TestSpecLayout layout;
        const char *k[] = { "parent_linkage", "parent_linkage2", "relative_path" };
        const char *v[] = { "{aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee}", braced, "base.vhdx" };

        item = spec_encode_locator (k, v, G_N_ELEMENTS (k));
        patch_locator (f->child, item, 300 * 1024);
        move_parent (f, "vm/sub", "base.vhdx");
        test_assert_ok (relink (f, FALSE, &result, &error), error);
        g_assert_false (result.linkage_changed);
        test_spec_read_layout (f->child, &layout);
        pairs = spec_read_locator (f->child, &layout);
        g_assert_cmpstr (pairs_lookup (pairs, "parent_linkage"), ==,
                         "{aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee}");
        g_assert_cmpstr (pairs_lookup (pairs, "parent_linkage2"), ==, braced);
        g_assert_cmpstr (pairs_lookup (pairs, "relative_path"), ==, "sub\\base.vhdx");
        {
                g_autofree guint8 *disk = read_chain (f->child, f->parent);
                test_assert_bytes_equal (disk, f->before, SIZE, 0, "the relinked child");
        }
}

/* Long directory names: a locator far longer than the old item goes to
 * free space, and the child, still open, is relinked again and again. */
static void
test_long_path (void)
{
        g_autoptr (Fixture) f = fixture_new (512, NULL);
        g_autoptr (GError) error = NULL;
        g_autofree char *a = g_strnfill (200, 'a');
        g_autofree char *b = g_strnfill (200, 'b');
        g_autofree char *c = g_strnfill (200, 'c');
        g_autofree char *deep = g_build_filename (a, b, c, NULL);
        g_autoptr (VhdxFile) child = NULL;
        g_autofree char *first_parent = NULL;
        TestSpecLayout before, after;
        guint64 offsets[3];

        test_spec_read_layout (f->child, &before);
        move_parent (f, deep, "base.vhdx");
        first_parent = g_strdup (f->parent);
        child = open_child (f, VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT, &error);
        g_assert_no_error (error);
        for (guint round = 0; round < 3; round++) {
                g_auto (VhdxSetParentResult) result = { 0 };
                g_autoptr (VhdxFile) parent = NULL;
                g_autoptr (GPtrArray) pairs = NULL;
                g_autofree char *expected = NULL;

                if (round == 1)
                        move_parent (f, "short", "p.vhdx");
                else if (round == 2) {
                        g_assert_cmpint (g_rename (f->parent, first_parent), ==, 0);
                        g_free (f->parent);
                        f->parent = g_strdup (first_parent);
                }
                parent = test_open_path (f->parent, &error);
                g_assert_no_error (error);
                test_assert_ok (vhdx_file_set_parent (child, f->child, parent, f->parent, FALSE,
                                                      &result, &error),
                                error);
                g_assert_false (result.in_place);
                offsets[round] = vhdx_file_get_info (child)->parent_locator_offset;
                expected = round == 1 ? g_strdup ("..\\short\\p.vhdx")
                                      : g_strdup_printf ("..\\%s\\%s\\%s\\base.vhdx", a, b, c);
                g_assert_cmpstr (result.new_relative_path, ==, expected);
                /* The file says so already (the commit is durable). */
                test_spec_read_layout (f->child, &after);
                g_assert_cmpuint (after.parent_locator_offset, ==, offsets[round]);
                g_assert_cmpuint (after.parent_locator_length, ==,
                                  vhdx_file_get_info (child)->parent_locator_length);
                pairs = spec_read_locator (f->child, &after);
                g_assert_cmpstr (pairs_lookup (pairs, "relative_path"), ==, expected);
                {
                        g_autoptr (GArray) items = spec_read_items (f->child, &after);
                        g_assert_cmpuint (items->len, ==, 6);
                }
                if (round == 0)
                        g_assert_cmpuint (after.parent_locator_length, >,
                                          before.parent_locator_length + 1000);
        }
        /* Each item in space no other item names at the time. */
        g_assert_cmpuint (offsets[0], !=, before.parent_locator_offset);
        g_assert_cmpuint (offsets[1], !=, offsets[0]);
        test_assert_ok (vhdx_file_close (child, &error), error);
        g_clear_pointer (&child, vhdx_file_free);
        {
                g_autofree guint8 *disk = read_chain (f->child, f->parent);
                test_assert_bytes_equal (disk, f->before, SIZE, 0, "the relinked child");
        }
        assert_libvhdi_reads (f);
}

/* A full metadata region: a locator no longer than the old one is written
 * where it was (its tail zeroed); a longer one is refused. */
static void
test_region_full (void)
{
        const char *long_absolute =
                "C:\\Users\\Public\\Documents\\Hyper-V\\Virtual hard disks\\a folder with a "
                "long name\\base.vhdx";
        g_autoptr (Fixture) f = fixture_new (512, long_absolute);
        g_autoptr (GError) error = NULL;
        g_auto (VhdxSetParentResult) result = { 0 };
        g_autofree char *sha = NULL;
        g_autofree char *deep = NULL;
        g_autoptr (GPtrArray) pairs = NULL;
        g_autoptr (GArray) items = NULL;
        g_autofree guint8 *tail = NULL;
        TestSpecLayout before, after;
        gsize tail_length;

        fill_metadata_region (f->child);
        test_spec_read_layout (f->child, &before);
        move_parent (f, "s", "b.vhdx");
        test_assert_ok (relink (f, FALSE, &result, &error), error);
        g_assert_true (result.in_place);
        test_spec_read_layout (f->child, &after);
        g_assert_cmpuint (after.parent_locator_offset, ==, before.parent_locator_offset);
        g_assert_cmpuint (after.parent_locator_length, <, before.parent_locator_length);
        items = spec_read_items (f->child, &after);
        g_assert_cmpuint (items->len, ==, 7);
        pairs = spec_read_locator (f->child, &after);
        g_assert_cmpstr (pairs_lookup (pairs, "relative_path"), ==, "..\\s\\b.vhdx");
        tail_length = before.parent_locator_length - after.parent_locator_length;
        tail = read_file_range (f->child, after.parent_locator_offset + after.parent_locator_length,
                                tail_length);
        for (gsize i = 0; i < tail_length; i++)
                g_assert_cmpuint (tail[i], ==, 0);
        {
                g_autofree guint8 *disk = read_chain (f->child, f->parent);
                test_assert_bytes_equal (disk, f->before, SIZE, 0, "the child relinked in place");
        }
        vhdx_set_parent_result_clear (&result);

        /* Longer than the item: no room. */
        {
                g_autofree char *name = g_strnfill (250, 'x');
                deep = g_build_filename (name, "base.vhdx", NULL);
        }
        move_parent (f, "long", deep);
        sha = test_sha256_file (f->child);
        g_assert_false (relink (f, FALSE, &result, &error));
        g_assert_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED);
        g_assert_nonnull (strstr (error->message, "full"));
        {
                g_autofree char *sha_after = test_sha256_file (f->child);
                g_assert_cmpstr (sha_after, ==, sha);
        }
}

/* What is refused: an image that is not differencing, other sector sizes,
 * the child as its own parent, an image opened read-only. */
static void
test_refused (void)
{
        g_autoptr (Fixture) f = fixture_new (512, NULL);
        g_autoptr (GError) error = NULL;
        g_autofree char *base4k = g_build_filename (f->dir, "base4k.vhdx", NULL);
        g_autoptr (VhdxFile) child = NULL;

        make_base (base4k, 4096, 9);
        child = open_child (f, VHDX_OPEN_FLAGS_NO_PARENT, &error);
        g_assert_no_error (error);
        {
                g_autoptr (VhdxFile) parent = test_open_path (base4k, &error);
                g_assert_no_error (error);
                g_assert_false (
                        vhdx_file_set_parent (child, f->child, parent, base4k, TRUE, NULL, &error));
                g_assert_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH);
                g_clear_error (&error);
        }
        {
                VhdxIo *io = vhdx_io_open_path (f->child, FALSE, &error);
                g_autoptr (VhdxFile) self = NULL;

                g_assert_no_error (error);
                self = vhdx_file_open (io, VHDX_OPEN_FLAGS_NO_PARENT | VHDX_OPEN_FLAGS_FORCE_SHARE,
                                       &error);
                g_assert_no_error (error);
                g_assert_false (
                        vhdx_file_set_parent (child, f->child, self, f->child, TRUE, NULL, &error));
                g_assert_error (error, VHDX_ERROR, VHDX_ERROR_INVALID);
                g_clear_error (&error);
        }
        {
                /* The base is not differencing. */
                VhdxIo *io = vhdx_io_open_path (f->parent, TRUE, &error);
                g_autoptr (VhdxFile) base = NULL;
                g_autoptr (VhdxFile) parent = test_open_path (base4k, &error);

                g_assert_no_error (error);
                base = vhdx_file_open (io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
                g_assert_no_error (error);
                g_assert_false (
                        vhdx_file_set_parent (base, f->parent, parent, base4k, TRUE, NULL, &error));
                g_assert_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED);
                g_clear_error (&error);
        }
        test_assert_ok (vhdx_file_close (child, &error), error);
        g_clear_pointer (&child, vhdx_file_free);
        {
                g_autoptr (VhdxFile) ro = test_open_path (f->child, &error);
                g_autoptr (VhdxFile) parent = test_open_path (f->parent, &error);

                g_assert_no_error (error);
                g_assert_false (vhdx_file_set_parent (ro, f->child, parent, f->parent, FALSE, NULL,
                                                      &error));
                g_assert_error (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY);
        }
}

/* The relative path the locator gets, for paths as they are given. */
static void
test_relative_path (void)
{
        static const struct {
                const char *child, *parent, *expected;
        } cases[] = {
                { "/a/b/child.vhdx", "/a/b/base.vhdx", "base.vhdx" },
                { "/a/b/child.vhdx", "/a/c/d/base.vhdx", "../c/d/base.vhdx" },
                { "/a/b/child.vhdx", "/base.vhdx", "../../base.vhdx" },
                { "/a/b/child.vhdx", "/a/b/c/../base.vhdx", "base.vhdx" },
                { "/child.vhdx", "/x/base.vhdx", "x/base.vhdx" },
                { "/a/child.vhdx", "/a/a/a", "a/a" },
        };

        for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
                g_autofree char *found =
                        vhdx_parent_relative_path (cases[i].child, cases[i].parent);
                g_assert_cmpstr (found, ==, cases[i].expected);
        }
}

/* The protocol that changes a parent's DataWriteGuid without orphaning its
 * child (MS-VHDX 2.6.2.6.3): the new GUID first becomes the child's
 * parent_linkage2, then the parent's DataWriteGuid; the child then opens
 * with that parent, and without the first step it would not. */
static void
test_linkage2_protocol (void)
{
        g_autoptr (Fixture) f = fixture_new (512, NULL);
        g_autoptr (GError) error = NULL;
        g_autoptr (GPtrArray) pairs = NULL;
        g_autofree guint8 *disk = NULL;
        TestSpecLayout layout;
        VhdxGuid guid;

        vhdx_guid_new_random (&guid);
        {
                g_autoptr (VhdxFile) child = open_child (f, VHDX_OPEN_FLAGS_NO_PARENT, &error);

                g_assert_no_error (error);
                test_assert_ok (vhdx_file_set_parent_linkage2 (child, &guid, &error), error);
                test_assert_ok (vhdx_file_close (child, &error), error);
        }
        test_spec_read_layout (f->child, &layout);
        pairs = spec_read_locator (f->child, &layout);
        assert_guid_text (pairs_lookup (pairs, "parent_linkage2"), &guid);
        assert_guid_text (pairs_lookup (pairs, "parent_linkage"), &f->parent_guid);
        {
                /* A write of what the parent reads: a new DataWriteGuid, the one chosen. */
                VhdxIo *io = vhdx_io_open_path (f->parent, TRUE, &error);
                g_autoptr (VhdxFile) parent = NULL;
                guint8 sector[512];

                g_assert_nonnull (io);
                parent = vhdx_file_open (io, VHDX_OPEN_FLAGS_READ_WRITE, &error);
                g_assert_no_error (error);
                vhdx_writer_set_data_write_guid (parent, &guid);
                test_assert_ok (vhdx_file_read (parent, 0, sector, sizeof sector, &error), error);
                test_assert_ok (vhdx_file_write (parent, 0, sector, sizeof sector,
                                                 VHDX_WRITE_FLAGS_NONE, &error),
                                error);
                test_assert_ok (vhdx_file_close (parent, &error), error);
        }
        test_spec_read_layout (f->parent, &layout);
        g_assert_cmpmem (layout.data_write_guid, 16, guid.bytes, 16);
        disk = read_chain (f->child, f->parent);
        test_assert_bytes_equal (disk, f->before, SIZE, 0, "the child after the parent changed");
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);
        g_test_add_data_func ("/relink/moved", GUINT_TO_POINTER (512), test_moved);
        g_test_add_data_func ("/relink/moved-4k", GUINT_TO_POINTER (4096), test_moved);
        g_test_add_func ("/relink/keys-kept", test_keys_kept);
        g_test_add_func ("/relink/mismatch", test_mismatch);
        g_test_add_func ("/relink/linkage2", test_linkage2_match);
        g_test_add_func ("/relink/linkage2-protocol", test_linkage2_protocol);
        g_test_add_func ("/relink/long-path", test_long_path);
        g_test_add_func ("/relink/region-full", test_region_full);
        g_test_add_func ("/relink/refused", test_refused);
        g_test_add_func ("/relink/relative-path", test_relative_path);
        return g_test_run ();
}
