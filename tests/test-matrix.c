/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The corruption matrix.  Five undamaged images (fixed, dynamic, 4 KiB
 * sectors, a differencing chain of three, and a dirty log) are taken apart
 * into the fields of every structure they hold, and each field is damaged in
 * every way that means something: zero, all ones, the largest signed value,
 * off by one, every bit (or a spread of bits), the offsets of the other
 * structures (overlaps), lengths and counts at and past their limits, other
 * known GUIDs, invalid UTF-16, and parent paths that make the chain a cycle.
 * Checksummed structures get their checksum recomputed after the damage, so
 * that it reaches the checks behind the checksum, and once left stale.
 *
 * Each case must either fail to open with a VHDX_ERROR, or open and then
 * read, map, check and count allocated bytes, each succeeding or failing with
 * a VHDX_ERROR or G_IO_ERROR.  Damage to fields that cannot change the
 * virtual disk (the non-current copy of a table, GUIDs that only identify,
 * reserved fields) must leave the bytes read equal to the reference: the
 * generator's raw disk for generated images, and a model of the writes (and
 * of the log's updates) for the chain and the dirty image.  Cases run in
 * subprocesses, one per structure, under an address-space limit and a hang
 * detector; opening must stay within a fixed heap budget.
 *
 * The same damage, applied to real files opened by path, must leave every
 * file unchanged, opened O_RDONLY.
 */
#include "test-alloc.h"
#include "test-util.h"
#include "vhdx-crc32c.h"
#include "vhdx-problems.h"
#include "vhdx-gen.h"
#include "vhdx-parent.h"
#include "vhdx-create.h"

#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB VHDX_MiB
/* Virtual disks up to this size are read whole; larger claims are sampled. */
#define READ_LIMIT (16 * MiB)
/* A hang detector, not a time limit: a case that has not finished after this
 * many seconds is stuck (a case takes milliseconds, under the sanitizers
 * too).  The work a case may do is bounded by the address-space and heap
 * limits and by test-bounds, which counts it. */
#define CASE_HANG_SECONDS 300
/* The address space a subprocess may add to what it had at its start. */
#define ADDRESS_SPACE_LIMIT (1024 * MiB)
/* The heap that opening one of these images may take at its peak: the
 * structures of three images, and a 1 MiB log replayed in memory. */
#define OPEN_HEAP_BUDGET (8 * MiB)

typedef enum {
        K_INT,    /* any integer */
        K_OFFSET, /* a file offset: also the offsets of other structures */
        K_LENGTH, /* a length: also limits and file sizes */
        K_COUNT,  /* an entry count: also the limits of tables */
        K_BAT,    /* a BAT entry: every state, offsets of other structures */
        K_GUID,   /* a GUID: also the other known GUIDs */
        K_BYTES,  /* a signature */
        K_TEXT,   /* the first UTF-16 code unit of a text */
        K_DIGIT,  /* the digit of a parent name: loops and unknown parents */
} Kind;

typedef enum {
        CSUM_NONE,
        CSUM_HEADER,
        CSUM_REGION,
        CSUM_LOG,
} Csum;

typedef struct {
        char group[16];
        char name[64];
        guint image; /* index in Base.images */
        guint64 offset;
        guint width; /* at most 16 */
        Kind kind;
        gboolean neutral; /* damage cannot change what the disk reads as */
        Csum csum;
        guint64 csum_offset; /* the checksummed structure */
        guint32 csum_length;
        gboolean entry_length; /* a log entry's length: also what its CRC covers */
} Field;

typedef struct {
        char *name; /* "img0.vhdx" */
        GBytes *bytes;
        guint64 marks[16]; /* offsets of its structures, for overlaps */
        guint n_marks;
} Image;

#define MAX_IMAGES 3

typedef struct {
        const char *name;
        GPtrArray *images; /* Image; the last one is opened */
        GBytes *expect;    /* its virtual disk, from the generator or a model */
        guint64 virtual_size;
        GArray *fields; /* Field */
        /* The structure of each image, as the generator or the writer made it,
         * to count the fields the matrix must find in it. */
        guint n_regions[MAX_IMAGES];
        guint n_metadata_items[MAX_IMAGES];
        guint n_locator_entries[MAX_IMAGES];
        guint n_parent_digits[MAX_IMAGES];
        gboolean has_bitmap[MAX_IMAGES];
        gboolean bitmap_entry_in_bat[MAX_IMAGES];
        guint n_log_entries;
        guint n_log_descriptors;
        guint n_log_data;
} Base;

#define MAX_PATCHES 2

typedef struct {
        guint image;
        guint64 offset;
        guint len;
        guint8 data[16];
} Patch;

typedef struct {
        const Base *base;
        const Field *field;
        Patch patches[MAX_PATCHES];
        guint n_patches;
        char description[160];
} Case;

static GPtrArray *bases; /* Base */

/* Building the undamaged images */

static VhdxIo *
new_memfd_io (int *fd)
{
        *fd = memfd_create ("test-matrix", MFD_CLOEXEC);
        g_assert_cmpint (*fd, >=, 0);
        return vhdx_io_new_fd (*fd, FALSE);
}

static GBytes *
memfd_bytes (int fd)
{
        struct stat st;
        guint8 *data;

        g_assert_cmpint (fstat (fd, &st), ==, 0);
        data = g_malloc (st.st_size);
        g_assert_cmpint (pread (fd, data, st.st_size, 0), ==, st.st_size);
        return g_bytes_new_take (data, st.st_size);
}

static void
image_free (gpointer data)
{
        Image *image = data;

        g_free (image->name);
        g_bytes_unref (image->bytes);
        g_free (image);
}

static void
base_add_image (Base *base, const char *name, GBytes *bytes)
{
        Image *image = g_new0 (Image, 1);

        image->name = g_strdup (name);
        image->bytes = g_bytes_ref (bytes);
        g_ptr_array_add (base->images, image);
}

static Base *
base_new (const char *name)
{
        Base *base = g_new0 (Base, 1);

        base->name = name;
        base->images = g_ptr_array_new_with_free_func (image_free);
        base->fields = g_array_new (FALSE, TRUE, sizeof (Field));
        return base;
}

static void
base_free (gpointer data)
{
        Base *base = data;

        g_ptr_array_unref (base->images);
        g_clear_pointer (&base->expect, g_bytes_unref);
        g_array_unref (base->fields);
        g_free (base);
}

static VhdxGen *
gen_new (VhdxDiskType type,
         guint64 virtual_size,
         guint32 sector_size,
         gboolean disk2vhd_like,
         guint32 seed)
{
        VhdxGen *gen;
        VhdxGenParams params;

        vhdx_gen_params_init (&params);
        params.disk_type = type;
        params.virtual_size = virtual_size;
        params.block_size = MiB;
        params.logical_sector_size = sector_size;
        params.physical_sector_size = disk2vhd_like ? 4096 : sector_size;
        params.metadata_region_first = disk2vhd_like;
        params.shuffle_blocks = disk2vhd_like;
        params.zero_state = disk2vhd_like ? VHDX_PAYLOAD_ZERO : VHDX_PAYLOAD_NOT_PRESENT;
        params.seed = seed;
        gen = vhdx_gen_new (&params);
        g_assert_nonnull (gen);
        if (type == VHDX_DISK_TYPE_FIXED) {
                vhdx_gen_fill_pattern (gen, 0, virtual_size, seed);
        } else {
                vhdx_gen_fill_pattern (gen, 0, 512 * 1024, seed);
                vhdx_gen_fill_pattern (gen, 2 * MiB + 4096, 64 * 1024, seed + 1);
                vhdx_gen_fill_pattern (gen, virtual_size - 8192, 8192, seed + 2);
        }
        return gen;
}

/* A generated image; its virtual disk, from the generator, is the reference. */
static void
build_generated (Base *base,
                 VhdxDiskType type,
                 guint64 virtual_size,
                 guint32 sector_size,
                 gboolean disk2vhd_like,
                 guint32 seed)
{
        g_autoptr (VhdxGen) gen = gen_new (type, virtual_size, sector_size, disk2vhd_like, seed);
        g_autoptr (GBytes) bytes = vhdx_gen_build (gen);
        VhdxGenLayout layout;

        vhdx_gen_get_layout (gen, &layout);
        base_add_image (base, "img0.vhdx", bytes);
        base->expect = vhdx_gen_build_raw (gen);
        base->virtual_size = virtual_size;
        base->n_regions[0] = layout.region_count;
        base->n_metadata_items[0] = layout.metadata_count;
        base->bitmap_entry_in_bat[0] =
                (layout.chunk_ratio + 1) * VHDX_BAT_ENTRY_SIZE <= layout.bat_length;
}

/* Writes the pattern of @seed through @w, and into the model of the disk. */
static void
writer_write (VhdxCreator *w, guint8 *model, guint64 offset, gsize len, guint32 seed)
{
        g_autofree guint8 *buf = g_malloc (len);
        g_autoptr (GError) error = NULL;

        vhdx_gen_pattern_fill_buffer (buf, offset, len, seed);
        vhdx_gen_pattern_fill_buffer (model + offset, offset, len, seed);
        test_assert_ok (vhdx_creator_write (w, offset, buf, len, &error), error);
}

static GBytes *
build_with_writer (VhdxCreateParams *params, guint level, guint8 *model)
{
        g_autoptr (VhdxIo) io = NULL;
        g_autoptr (VhdxCreator) w = NULL;
        g_autoptr (GError) error = NULL;
        GBytes *bytes;
        int fd;

        io = new_memfd_io (&fd);
        w = vhdx_creator_new (io, params, &error);
        g_assert_no_error (error);
        switch (level) {
        case 0:
                writer_write (w, model, 0, MiB, 100);
                writer_write (w, model, 2 * MiB, 64 * 1024, 101);
                break;
        case 1:
                writer_write (w, model, 512, 1024, 110);
                writer_write (w, model, 64 * 1024, 4096, 111);
                writer_write (w, model, MiB + 512 * 1024, 8192, 112);
                break;
        default:
                writer_write (w, model, 1024, 512, 120);
                writer_write (w, model, 2 * MiB, MiB, 121);
                writer_write (w, model, 3 * MiB + 4096, 4096, 122);
                break;
        }
        test_assert_ok (vhdx_creator_finish (w, &error), error);
        bytes = memfd_bytes (fd);
        close (fd);
        return bytes;
}

/* Three images, img2 -> img1 -> img0, names of one length so that a parent
 * path can be turned into another member's by changing one digit.  The
 * reference is the model of the writes, each level over the one below. */
static void
build_chain (Base *base)
{
        const guint64 virtual_size = 4 * MiB;
        guint8 *model = g_malloc0 (virtual_size);
        VhdxGuid guids[3];

        for (guint level = 0; level < 3; level++) {
                g_autofree char *name = g_strdup_printf ("img%u.vhdx", level);
                g_autofree char *parent = g_strdup_printf ("img%u.vhdx", level - 1);
                g_autofree char *absolute = g_strdup_printf ("C:/vms/img%u.vhdx", level - 1);
                g_autoptr (GBytes) bytes = NULL;
                VhdxCreateParams params = {
                        .disk_type =
                                level == 0 ? VHDX_DISK_TYPE_DYNAMIC : VHDX_DISK_TYPE_DIFFERENCING,
                        .virtual_size = virtual_size,
                        .block_size = MiB,
                };

                vhdx_guid_new_random (&guids[level]);
                params.data_write_guid = guids[level];
                if (level > 0) {
                        params.parent_data_write_guid = guids[level - 1];
                        params.parent_relative_path = parent;
                        params.parent_absolute_path = absolute;
                }
                bytes = build_with_writer (&params, level, model);
                base_add_image (base, name, bytes);
                /* The writer's structure: the BAT and the metadata region; the
                 * five standard items and, in a child, the parent locator with
                 * parent_linkage, relative_path and absolute_win32_path, whose
                 * two paths name the parent by its digit.  Every child writes
                 * single sectors, so chunk 0 has a sector bitmap. */
                base->n_regions[level] = 2;
                base->n_metadata_items[level] = level == 0 ? 5 : 6;
                base->n_locator_entries[level] = level == 0 ? 0 : 3;
                base->n_parent_digits[level] = level == 0 ? 0 : 2;
                base->has_bitmap[level] = level > 0;
                base->bitmap_entry_in_bat[level] = TRUE;
        }
        base->expect = g_bytes_new_take (model, virtual_size);
        base->virtual_size = virtual_size;
}

/* A dynamic image with two log entries to replay: block 2 moved to a new
 * block past the old end of the file (its BAT sector only in the log), a
 * zeroed range and a new sector in block 0.
 * The log is built by hand from the specification; the reference is the
 * generator's disk with the effect of those updates applied here. */
static void
build_dirty (Base *base)
{
        const guint64 virtual_size = 4 * MiB;
        g_autoptr (VhdxGen) gen = gen_new (VHDX_DISK_TYPE_DYNAMIC, virtual_size, 512, FALSE, 40);
        g_autoptr (GByteArray) image = vhdx_gen_build_array (gen);
        g_autoptr (GBytes) raw = vhdx_gen_build_raw (gen);
        g_autoptr (GByteArray) entry1 = NULL;
        g_autoptr (GByteArray) entry2 = NULL;
        g_autoptr (GBytes) bytes = NULL;
        const VhdxGuid log_guid = vhdx_gen_guid_from_text ("6C2A1C5E-3B1D-4F7A-9E21-0B5D7C4E8A13");
        guint8 bat_sector[4096], sector[4096];
        VhdxGenLayout layout;
        guint64 block0, new_block, entry_offset, sector_offset;
        guint8 *disk;

        vhdx_gen_get_layout (gen, &layout);
        g_assert_true (vhdx_gen_block_file_offset (gen, 0, &block0));
        new_block = (layout.file_size + MiB - 1) / MiB * MiB;
        g_byte_array_set_size (image, new_block + MiB);
        memset (image->data + layout.file_size, 0, new_block - layout.file_size);
        vhdx_gen_pattern_fill_buffer (image->data + new_block, 2 * MiB, MiB, 41);

        /* Entry 1: the BAT sector with block 2 pointing at the new block, which
         * holds the pattern of seed 41 in place of the generator's data. */
        entry_offset =
                vhdx_gen_layout_bat_entry_offset (&layout, vhdx_gen_block_bat_index (gen, 2));
        sector_offset = entry_offset / 4096 * 4096;
        memcpy (bat_sector, image->data + sector_offset, sizeof bat_sector);
        vhdx_put_le64 (bat_sector + (entry_offset - sector_offset),
                       new_block | VHDX_PAYLOAD_FULLY_PRESENT);
        {
                const TestLogUpdate updates[] = { { sector_offset, bat_sector, 0 } };
                entry1 = test_log_entry_new (&log_guid, 3, 0, layout.file_size, new_block + MiB,
                                             updates, G_N_ELEMENTS (updates));
        }
        /* Entry 2, of the same sequence: 8 KiB of zeros and a sector of 0xa5 in block 0. */
        memset (sector, 0xa5, sizeof sector);
        {
                const TestLogUpdate updates[] = { { block0 + 8192, NULL, 8192 },
                                                  { block0 + 65536, sector, 0 } };
                entry2 = test_log_entry_new (&log_guid, 4, 0, layout.file_size, new_block + MiB,
                                             updates, G_N_ELEMENTS (updates));
        }
        g_assert_cmpuint (entry1->len + entry2->len, <=, layout.log_length);
        memcpy (image->data + layout.log_offset, entry1->data, entry1->len);
        memcpy (image->data + layout.log_offset + entry1->len, entry2->data, entry2->len);
        /* LogGuid in both headers makes the log pending. */
        test_headers_set_log_guid (image->data, &log_guid);
        bytes = g_bytes_new (image->data, image->len);
        base_add_image (base, "img0.vhdx", bytes);

        disk = g_memdup2 (g_bytes_get_data (raw, NULL), virtual_size);
        vhdx_gen_pattern_fill_buffer (disk + 2 * MiB, 2 * MiB, MiB, 41);
        memset (disk + 8192, 0, 8192);
        memset (disk + 65536, 0xa5, 4096);
        base->expect = g_bytes_new_take (disk, virtual_size);
        base->virtual_size = virtual_size;
        base->n_regions[0] = layout.region_count;
        base->n_metadata_items[0] = layout.metadata_count;
        base->bitmap_entry_in_bat[0] =
                (layout.chunk_ratio + 1) * VHDX_BAT_ENTRY_SIZE <= layout.bat_length;
        /* Entry 1: one data descriptor; entry 2: a zero and a data descriptor. */
        base->n_log_entries = 2;
        base->n_log_descriptors = 3;
        base->n_log_data = 2;
}

/* Opening from memory */

typedef struct {
        VhdxIo parent;
        const Case *c; /* NULL: undamaged */
        GBytes *bytes;
        guint image;
} PatchIo;

static gboolean
patch_io_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        PatchIo *self = (PatchIo *) io;
        gsize size;
        const guint8 *data = g_bytes_get_data (self->bytes, &size);
        guint8 *out = buf;

        if (offset >= size) {
                *n_read = 0;
                return TRUE;
        }
        *n_read = (gsize) MIN ((guint64) count, size - offset);
        memcpy (out, data + offset, *n_read);
        for (guint i = 0; self->c != NULL && i < self->c->n_patches; i++) {
                const Patch *p = &self->c->patches[i];
                guint64 lo = MAX (offset, p->offset);
                guint64 hi = MIN (offset + *n_read, p->offset + p->len);
                if (p->image == self->image && lo < hi)
                        memcpy (out + (lo - offset), p->data + (lo - p->offset), hi - lo);
        }
        return TRUE;
}

static gboolean
patch_io_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        *size = g_bytes_get_size (((PatchIo *) io)->bytes);
        return TRUE;
}

static void
patch_io_free (VhdxIo *io)
{
        g_bytes_unref (((PatchIo *) io)->bytes);
        g_free (io);
}

static gboolean
patch_io_identify (VhdxIo *io, guint64 *device, guint64 *inode)
{
        *device = 0;
        *inode = ((PatchIo *) io)->image + 1;
        return TRUE;
}

static const VhdxIoVTable patch_io_vtable = {
        .pread = patch_io_pread,
        .get_size = patch_io_get_size,
        .free = patch_io_free,
        .identify = patch_io_identify,
};

static VhdxIo *
patch_io_new (const Base *base, guint image, const Case *c)
{
        PatchIo *self = g_new0 (PatchIo, 1);
        const Image *img = g_ptr_array_index (base->images, image);

        self->parent.vtable = &patch_io_vtable;
        self->bytes = g_bytes_ref (img->bytes);
        self->image = image;
        self->c = c;
        return &self->parent;
}

typedef struct {
        const Base *base;
        const Case *c;
} OpenContext;

static VhdxIo *
open_member (const char *path, gboolean writable, gpointer user_data, GError **error)
{
        const OpenContext *ctx = user_data;
        g_autofree char *name = g_path_get_basename (path);

        for (guint i = 0; i < ctx->base->images->len; i++) {
                const Image *img = g_ptr_array_index (ctx->base->images, i);
                if (strcmp (img->name, name) == 0)
                        return patch_io_new (ctx->base, i, ctx->c);
        }
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s: not in the matrix", path);
        return NULL;
}

static VhdxFile *
open_case (const Base *base, const Case *c, GError **error)
{
        guint top = base->images->len - 1;
        const Image *img = g_ptr_array_index (base->images, top);
        g_autofree char *path = g_build_filename ("/matrix", img->name, NULL);
        OpenContext ctx = { base, c };
        VhdxOpenOptions options = {
                .path = path,
                .open_func = open_member,
                .open_data = &ctx,
        };

        /* The context only lives during the open: parents are opened there. */
        return vhdx_file_open_full (patch_io_new (base, top, c), VHDX_OPEN_FLAGS_NONE, &options,
                                    error);
}

/* Taking the images apart into fields */

static void
add_field (Base *base,
           guint image,
           const char *group,
           const char *name,
           guint64 offset,
           guint width,
           Kind kind,
           gboolean neutral,
           Csum csum,
           guint64 csum_offset,
           guint32 csum_length)
{
        Field f = { .image = image,
                    .offset = offset,
                    .width = width,
                    .kind = kind,
                    .neutral = neutral,
                    .csum = csum,
                    .csum_offset = csum_offset,
                    .csum_length = csum_length };

        g_strlcpy (f.group, group, sizeof f.group);
        g_strlcpy (f.name, name, sizeof f.name);
        g_assert_cmpuint (width, <=, 16);
        g_array_append_val (base->fields, f);
}

static void
mark (Image *img, guint64 offset)
{
        if (img->n_marks < G_N_ELEMENTS (img->marks))
                img->marks[img->n_marks++] = offset;
}

static void
fields_of_headers (Base *base, guint image)
{
        for (guint h = 0; h < 2; h++) {
                guint64 o = h == 0 ? VHDX_HEADER1_OFFSET : VHDX_HEADER2_OFFSET;
                static const struct {
                        const char *name;
                        guint off, width;
                        Kind kind;
                        gboolean neutral;
                } f[] = {
                        { "signature", VHDX_HEADER_OFF_SIGNATURE, 4, K_BYTES, FALSE },
                        { "checksum", VHDX_HEADER_OFF_CHECKSUM, 4, K_INT, FALSE },
                        { "sequence", VHDX_HEADER_OFF_SEQUENCE, 8, K_INT, TRUE },
                        { "file-write-guid", VHDX_HEADER_OFF_FILE_WRITE_GUID, 16, K_GUID, TRUE },
                        { "data-write-guid", VHDX_HEADER_OFF_DATA_WRITE_GUID, 16, K_GUID, TRUE },
                        { "log-guid", VHDX_HEADER_OFF_LOG_GUID, 16, K_GUID, FALSE },
                        { "log-version", VHDX_HEADER_OFF_LOG_VERSION, 2, K_INT, FALSE },
                        { "version", VHDX_HEADER_OFF_VERSION, 2, K_INT, FALSE },
                        { "log-length", VHDX_HEADER_OFF_LOG_LENGTH, 4, K_LENGTH, FALSE },
                        { "log-offset", VHDX_HEADER_OFF_LOG_OFFSET, 8, K_OFFSET, FALSE },
                        { "reserved", 80, 4, K_INT, TRUE },
                };
                for (guint i = 0; i < G_N_ELEMENTS (f); i++) {
                        g_autofree char *name = g_strdup_printf ("header%u.%s", h + 1, f[i].name);
                        add_field (base, image, "header", name, o + f[i].off, f[i].width, f[i].kind,
                                   f[i].neutral,
                                   f[i].off == VHDX_HEADER_OFF_CHECKSUM ? CSUM_NONE : CSUM_HEADER,
                                   o, VHDX_HEADER_SIZE);
                }
        }
}

static const guint8 *
image_data (const Base *base, guint image, gsize *size)
{
        const Image *img = g_ptr_array_index (base->images, image);

        return g_bytes_get_data (img->bytes, size);
}

/* Region tables; returns the BAT and metadata regions of table 1. */
static void
fields_of_region_tables (Base *base,
                         guint image,
                         guint64 *bat_offset,
                         guint64 *metadata_offset,
                         guint32 *metadata_length)
{
        const guint8 *d = image_data (base, image, NULL);

        for (guint t = 0; t < 2; t++) {
                guint64 o = t == 0 ? VHDX_REGION_TABLE1_OFFSET : VHDX_REGION_TABLE2_OFFSET;
                guint32 count = vhdx_get_le32 (d + o + VHDX_REGION_OFF_ENTRY_COUNT);
                /* The second copy is not read while the first is good. */
                gboolean copy = t == 1;
                char name[64];

                g_snprintf (name, sizeof name, "region%u.signature", t + 1);
                add_field (base, image, "region", name, o, 4, K_BYTES, copy, CSUM_REGION, o,
                           VHDX_REGION_TABLE_SIZE);
                g_snprintf (name, sizeof name, "region%u.checksum", t + 1);
                add_field (base, image, "region", name, o + 4, 4, K_INT, copy, CSUM_NONE, o, 0);
                g_snprintf (name, sizeof name, "region%u.count", t + 1);
                add_field (base, image, "region", name, o + 8, 4, K_COUNT, copy, CSUM_REGION, o,
                           VHDX_REGION_TABLE_SIZE);
                g_snprintf (name, sizeof name, "region%u.reserved", t + 1);
                add_field (base, image, "region", name, o + 12, 4, K_INT, TRUE, CSUM_REGION, o,
                           VHDX_REGION_TABLE_SIZE);
                for (guint32 i = 0; i < count; i++) {
                        guint64 e = o + VHDX_REGION_HEADER_SIZE + i * VHDX_REGION_ENTRY_SIZE;
                        VhdxGuid guid = vhdx_get_guid (d + e);

                        if (t == 0 && vhdx_guid_equal (&guid, &vhdx_guid_region_bat)) {
                                *bat_offset = vhdx_get_le64 (d + e + 16);
                        } else if (t == 0 && vhdx_guid_equal (&guid, &vhdx_guid_region_metadata)) {
                                *metadata_offset = vhdx_get_le64 (d + e + 16);
                                *metadata_length = vhdx_get_le32 (d + e + 24);
                        }
                        g_snprintf (name, sizeof name, "region%u.entry%u.guid", t + 1, i);
                        add_field (base, image, "region", name, e, 16, K_GUID, copy, CSUM_REGION, o,
                                   VHDX_REGION_TABLE_SIZE);
                        g_snprintf (name, sizeof name, "region%u.entry%u.offset", t + 1, i);
                        add_field (base, image, "region", name, e + 16, 8, K_OFFSET, copy,
                                   CSUM_REGION, o, VHDX_REGION_TABLE_SIZE);
                        g_snprintf (name, sizeof name, "region%u.entry%u.length", t + 1, i);
                        add_field (base, image, "region", name, e + 24, 4, K_LENGTH, copy,
                                   CSUM_REGION, o, VHDX_REGION_TABLE_SIZE);
                        g_snprintf (name, sizeof name, "region%u.entry%u.required", t + 1, i);
                        add_field (base, image, "region", name, e + 28, 4, K_INT, TRUE, CSUM_REGION,
                                   o, VHDX_REGION_TABLE_SIZE);
                }
        }
}

static void
fields_of_locator (Base *base, guint image, guint64 o, guint32 length)
{
        const guint8 *d = image_data (base, image, NULL);
        guint16 count = vhdx_get_le16 (d + o + VHDX_LOCATOR_OFF_COUNT);
        char name[64];

        add_field (base, image, "locator", "locator.type", o, 16, K_GUID, FALSE, CSUM_NONE, 0, 0);
        add_field (base, image, "locator", "locator.reserved", o + 16, 2, K_INT, TRUE, CSUM_NONE, 0,
                   0);
        add_field (base, image, "locator", "locator.count", o + VHDX_LOCATOR_OFF_COUNT, 2, K_COUNT,
                   FALSE, CSUM_NONE, 0, 0);
        for (guint i = 0; i < count; i++) {
                guint64 e = o + VHDX_LOCATOR_HEADER_SIZE + i * VHDX_LOCATOR_ENTRY_SIZE;
                guint32 key = vhdx_get_le32 (d + e + VHDX_LOCATOR_ENTRY_OFF_KEY_OFFSET);
                guint32 value = vhdx_get_le32 (d + e + VHDX_LOCATOR_ENTRY_OFF_VALUE_OFFSET);
                guint16 value_length = vhdx_get_le16 (d + e + VHDX_LOCATOR_ENTRY_OFF_VALUE_LENGTH);

                g_snprintf (name, sizeof name, "locator.entry%u.key-offset", i);
                add_field (base, image, "locator", name, e, 4, K_LENGTH, FALSE, CSUM_NONE, 0, 0);
                g_snprintf (name, sizeof name, "locator.entry%u.value-offset", i);
                add_field (base, image, "locator", name, e + 4, 4, K_LENGTH, FALSE, CSUM_NONE, 0,
                           0);
                g_snprintf (name, sizeof name, "locator.entry%u.key-length", i);
                add_field (base, image, "locator", name, e + 8, 2, K_LENGTH, FALSE, CSUM_NONE, 0,
                           0);
                g_snprintf (name, sizeof name, "locator.entry%u.value-length", i);
                add_field (base, image, "locator", name, e + 10, 2, K_LENGTH, FALSE, CSUM_NONE, 0,
                           0);
                g_snprintf (name, sizeof name, "locator.entry%u.key", i);
                add_field (base, image, "locator", name, o + key, 2, K_TEXT, FALSE, CSUM_NONE, 0,
                           0);
                g_snprintf (name, sizeof name, "locator.entry%u.value", i);
                add_field (base, image, "locator", name, o + value, 2, K_TEXT, FALSE, CSUM_NONE, 0,
                           0);
                /* "...imgN.vhdx": the digit names the parent. */
                for (guint c = 0; c + 2 <= value_length; c += 2) {
                        if (d[o + value + c] == '.' && c >= 2 &&
                            g_ascii_isdigit (d[o + value + c - 2])) {
                                g_snprintf (name, sizeof name, "locator.entry%u.parent-digit", i);
                                add_field (base, image, "locator", name, o + value + c - 2, 2,
                                           K_DIGIT, FALSE, CSUM_NONE, 0, 0);
                                break;
                        }
                }
        }
        (void) length;
}

static void
fields_of_metadata (Base *base, guint image, guint64 o, guint32 region_length)
{
        const guint8 *d = image_data (base, image, NULL);
        guint16 count = vhdx_get_le16 (d + o + VHDX_METADATA_OFF_ENTRY_COUNT);
        char name[64];

        add_field (base, image, "metadata", "metadata.signature", o, 8, K_BYTES, FALSE, CSUM_NONE,
                   0, 0);
        add_field (base, image, "metadata", "metadata.reserved", o + 8, 2, K_INT, TRUE, CSUM_NONE,
                   0, 0);
        add_field (base, image, "metadata", "metadata.count", o + VHDX_METADATA_OFF_ENTRY_COUNT, 2,
                   K_COUNT, FALSE, CSUM_NONE, 0, 0);
        add_field (base, image, "metadata", "metadata.reserved2", o + 12, 4, K_INT, TRUE, CSUM_NONE,
                   0, 0);
        for (guint i = 0; i < count; i++) {
                guint64 e = o + VHDX_METADATA_HEADER_SIZE + i * VHDX_METADATA_ENTRY_SIZE;
                VhdxGuid id = vhdx_get_guid (d + e);
                guint64 item = o + vhdx_get_le32 (d + e + VHDX_METADATA_ENTRY_OFF_OFFSET);
                guint32 length = vhdx_get_le32 (d + e + VHDX_METADATA_ENTRY_OFF_LENGTH);

                g_snprintf (name, sizeof name, "metadata.entry%u.id", i);
                add_field (base, image, "metadata", name, e, 16, K_GUID, FALSE, CSUM_NONE, 0, 0);
                g_snprintf (name, sizeof name, "metadata.entry%u.offset", i);
                add_field (base, image, "metadata", name, e + 16, 4, K_LENGTH, FALSE, CSUM_NONE, 0,
                           0);
                g_snprintf (name, sizeof name, "metadata.entry%u.length", i);
                add_field (base, image, "metadata", name, e + 20, 4, K_LENGTH, FALSE, CSUM_NONE, 0,
                           0);
                g_snprintf (name, sizeof name, "metadata.entry%u.flags", i);
                add_field (base, image, "metadata", name, e + 24, 4, K_INT, FALSE, CSUM_NONE, 0, 0);
                g_snprintf (name, sizeof name, "metadata.entry%u.reserved", i);
                add_field (base, image, "metadata", name, e + 28, 4, K_INT, TRUE, CSUM_NONE, 0, 0);

                if (vhdx_guid_equal (&id, &vhdx_guid_item_file_parameters)) {
                        add_field (base, image, "metadata", "item.block-size", item, 4, K_LENGTH,
                                   FALSE, CSUM_NONE, 0, 0);
                        add_field (base, image, "metadata", "item.file-flags", item + 4, 4, K_INT,
                                   FALSE, CSUM_NONE, 0, 0);
                } else if (vhdx_guid_equal (&id, &vhdx_guid_item_virtual_disk_size)) {
                        add_field (base, image, "metadata", "item.virtual-size", item, 8, K_LENGTH,
                                   FALSE, CSUM_NONE, 0, 0);
                } else if (vhdx_guid_equal (&id, &vhdx_guid_item_virtual_disk_id)) {
                        add_field (base, image, "metadata", "item.disk-id", item, 16, K_GUID, TRUE,
                                   CSUM_NONE, 0, 0);
                } else if (vhdx_guid_equal (&id, &vhdx_guid_item_logical_sector_size)) {
                        add_field (base, image, "metadata", "item.logical-sector", item, 4,
                                   K_LENGTH, FALSE, CSUM_NONE, 0, 0);
                } else if (vhdx_guid_equal (&id, &vhdx_guid_item_physical_sector_size)) {
                        add_field (base, image, "metadata", "item.physical-sector", item, 4,
                                   K_LENGTH, TRUE, CSUM_NONE, 0, 0);
                } else if (vhdx_guid_equal (&id, &vhdx_guid_item_parent_locator)) {
                        fields_of_locator (base, image, item, length);
                }
        }
        (void) region_length;
}

/* BAT entries of every payload block, the sector bitmap entry of the first
 * chunk and bytes of that bitmap, with the layout read from the image. */
static void
fields_of_bat (Base *base, guint image, guint64 bat_offset, guint64 metadata_offset)
{
        Image *img = g_ptr_array_index (base->images, image);
        gsize size;
        const guint8 *d = image_data (base, image, &size);
        guint16 count = vhdx_get_le16 (d + metadata_offset + VHDX_METADATA_OFF_ENTRY_COUNT);
        guint64 vs = 0, cr, blocks;
        guint32 block_size = 0, lss = 0;
        char name[64];

        for (guint i = 0; i < count; i++) {
                const guint8 *e = d + metadata_offset + VHDX_METADATA_HEADER_SIZE +
                                  i * VHDX_METADATA_ENTRY_SIZE;
                VhdxGuid g = vhdx_get_guid (e);
                const guint8 *item =
                        d + metadata_offset + vhdx_get_le32 (e + VHDX_METADATA_ENTRY_OFF_OFFSET);
                if (vhdx_guid_equal (&g, &vhdx_guid_item_file_parameters))
                        block_size = vhdx_get_le32 (item);
                else if (vhdx_guid_equal (&g, &vhdx_guid_item_virtual_disk_size))
                        vs = vhdx_get_le64 (item);
                else if (vhdx_guid_equal (&g, &vhdx_guid_item_logical_sector_size))
                        lss = vhdx_get_le32 (item);
        }
        g_assert_cmpuint (block_size, >, 0);
        cr = ((guint64) 1 << 23) * lss / block_size;
        blocks = (vs + block_size - 1) / block_size;
        for (guint64 b = 0; b < blocks; b++) {
                guint64 index = b + b / cr;
                guint64 entry = vhdx_get_le64 (d + bat_offset + index * VHDX_BAT_ENTRY_SIZE);
                g_snprintf (name, sizeof name, "bat.block%" G_GUINT64_FORMAT, b);
                add_field (base, image, "bat", name, bat_offset + index * VHDX_BAT_ENTRY_SIZE, 8,
                           K_BAT, FALSE, CSUM_NONE, 0, 0);
                if ((entry & VHDX_BAT_STATE_MASK) == VHDX_PAYLOAD_FULLY_PRESENT)
                        mark (img, entry & VHDX_BAT_OFFSET_MASK);
        }
        if (bat_offset + (cr + 1) * VHDX_BAT_ENTRY_SIZE <= size) {
                guint64 entry = vhdx_get_le64 (d + bat_offset + cr * VHDX_BAT_ENTRY_SIZE);
                add_field (base, image, "bat", "bat.bitmap0", bat_offset + cr * VHDX_BAT_ENTRY_SIZE,
                           8, K_BAT, FALSE, CSUM_NONE, 0, 0);
                if ((entry & VHDX_BAT_STATE_MASK) == VHDX_SB_PRESENT) {
                        guint64 bitmap = entry & VHDX_BAT_OFFSET_MASK;
                        guint64 per_block = block_size / lss / 8;
                        for (guint64 b = 0; b < MIN (blocks, 2); b++) {
                                g_snprintf (name, sizeof name, "bitmap.block%" G_GUINT64_FORMAT, b);
                                add_field (base, image, "bitmap", name, bitmap + b * per_block, 1,
                                           K_INT, FALSE, CSUM_NONE, 0, 0);
                        }
                        mark (img, bitmap);
                }
        }
}

static void
fields_of_log (Base *base, guint image)
{
        gsize size;
        const guint8 *d = image_data (base, image, &size);
        guint64 log_offset = vhdx_get_le64 (d + VHDX_HEADER1_OFFSET + VHDX_HEADER_OFF_LOG_OFFSET);
        guint32 log_length = vhdx_get_le32 (d + VHDX_HEADER1_OFFSET + VHDX_HEADER_OFF_LOG_LENGTH);
        guint32 pos = 0;
        guint n = 0;
        char name[64];

        while (pos < log_length && memcmp (d + log_offset + pos, "loge", 4) == 0) {
                guint64 e = log_offset + pos;
                guint32 length = vhdx_get_le32 (d + e + VHDX_LOG_OFF_ENTRY_LENGTH);
                guint32 count = vhdx_get_le32 (d + e + VHDX_LOG_OFF_DESCRIPTOR_COUNT);
                guint64 data = e + (VHDX_LOG_ENTRY_HEADER_SIZE + count * 32 + 4095) / 4096 * 4096;
                static const struct {
                        const char *name;
                        guint off, width;
                        Kind kind;
                } h[] = {
                        { "signature", 0, 4, K_BYTES },
                        { "length", 8, 4, K_LENGTH },
                        { "tail", 12, 4, K_OFFSET },
                        { "sequence", 16, 8, K_INT },
                        { "descriptor-count", 24, 4, K_COUNT },
                        { "reserved", 28, 4, K_INT },
                        { "log-guid", 32, 16, K_GUID },
                        { "flushed-offset", 48, 8, K_OFFSET },
                        { "last-offset", 56, 8, K_OFFSET },
                };

                g_snprintf (name, sizeof name, "log.entry%u.checksum", n);
                add_field (base, image, "log", name, e + 4, 4, K_INT, FALSE, CSUM_NONE, 0, 0);
                for (guint i = 0; i < G_N_ELEMENTS (h); i++) {
                        g_snprintf (name, sizeof name, "log.entry%u.%s", n, h[i].name);
                        add_field (base, image, "log", name, e + h[i].off, h[i].width, h[i].kind,
                                   FALSE, CSUM_LOG, e, length);
                        if (h[i].off == 8)
                                g_array_index (base->fields, Field, base->fields->len - 1)
                                        .entry_length = TRUE;
                }
                for (guint32 i = 0; i < count; i++) {
                        guint64 desc = e + VHDX_LOG_ENTRY_HEADER_SIZE + i * 32;
                        gboolean is_data = memcmp (d + desc, "desc", 4) == 0;
                        static const struct {
                                const char *name;
                                guint off, width;
                                Kind kind;
                        } f[] = {
                                { "signature", 0, 4, K_BYTES },
                                { "trailing", 4, 4, K_INT },
                                { "leading-or-length", 8, 8, K_LENGTH },
                                { "file-offset", 16, 8, K_OFFSET },
                                { "sequence", 24, 8, K_INT },
                        };
                        for (guint k = 0; k < G_N_ELEMENTS (f); k++) {
                                g_snprintf (name, sizeof name, "log.entry%u.desc%u.%s", n, i,
                                            f[k].name);
                                add_field (base, image, "log", name, desc + f[k].off, f[k].width,
                                           f[k].kind, FALSE, CSUM_LOG, e, length);
                        }
                        if (is_data) {
                                static const struct {
                                        const char *name;
                                        guint off, width;
                                } s[] = {
                                        { "signature", 0, 4 },
                                        { "sequence-high", 4, 4 },
                                        { "byte", 100, 1 },
                                        { "sequence-low", 4092, 4 },
                                };
                                for (guint k = 0; k < G_N_ELEMENTS (s); k++) {
                                        g_snprintf (name, sizeof name, "log.entry%u.data%u.%s", n,
                                                    i, s[k].name);
                                        add_field (base, image, "log", name, data + s[k].off,
                                                   s[k].width, s[k].off == 0 ? K_BYTES : K_INT,
                                                   FALSE, CSUM_LOG, e, length);
                                }
                                data += 4096;
                        }
                }
                pos += length;
                n++;
        }
        g_assert_cmpuint (n, >, 0);
}

static void
fields_of_image (Base *base, guint image, gboolean dirty)
{
        Image *img = g_ptr_array_index (base->images, image);
        gsize size;
        const guint8 *d = image_data (base, image, &size);
        guint64 bat_offset = 0, metadata_offset = 0;
        guint32 metadata_length = 0;
        guint64 log_offset = vhdx_get_le64 (d + VHDX_HEADER1_OFFSET + VHDX_HEADER_OFF_LOG_OFFSET);

        add_field (base, image, "fileid", "file-id.signature", 0, 8, K_BYTES, FALSE, CSUM_NONE, 0,
                   0);
        add_field (base, image, "fileid", "file-id.creator", 8, 2, K_TEXT, TRUE, CSUM_NONE, 0, 0);
        fields_of_headers (base, image);
        fields_of_region_tables (base, image, &bat_offset, &metadata_offset, &metadata_length);
        fields_of_metadata (base, image, metadata_offset, metadata_length);
        mark (img, 0);
        mark (img, VHDX_HEADER1_OFFSET);
        mark (img, VHDX_REGION_TABLE1_OFFSET);
        mark (img, log_offset);
        mark (img, metadata_offset);
        mark (img, bat_offset);
        mark (img, size);
        mark (img, (size - 1) / MiB * MiB);
        fields_of_bat (base, image, bat_offset, metadata_offset);
        if (dirty)
                fields_of_log (base, image);
}

/* The damage done to each field */

static void
add_int (GByteArray *values, guint width, guint64 v)
{
        guint8 le[8];

        vhdx_put_le64 (le, v);
        g_byte_array_append (values, le, width);
}

static void
add_bytes (GByteArray *values, const guint8 *bytes, guint width)
{
        g_byte_array_append (values, bytes, width);
}

/* Every value @field is damaged with, @field->width bytes each. */
static GByteArray *
field_values (const Base *base, const Field *field)
{
        static const guint bits8[] = { 0,  1,  2,  3,  7,  8,  12, 15, 16, 20,
                                       24, 31, 32, 40, 47, 48, 52, 56, 62, 63 };
        const Image *img = g_ptr_array_index (base->images, field->image);
        gsize size;
        const guint8 *d = g_bytes_get_data (img->bytes, &size);
        const guint8 *orig = d + field->offset;
        GByteArray *values = g_byte_array_new ();
        guint w = field->width;

        switch (field->kind) {
        case K_INT:
        case K_OFFSET:
        case K_LENGTH:
        case K_COUNT: {
                guint64 mask = w == 8 ? G_MAXUINT64 : ((guint64) 1 << (8 * w)) - 1;
                guint64 v = 0;

                memcpy (&v, orig, w);
                v = GUINT64_FROM_LE (v);
                add_int (values, w, 0);
                add_int (values, w, mask);
                add_int (values, w, mask >> 1);
                add_int (values, w, (mask >> 1) + 1);
                add_int (values, w, v + 1);
                add_int (values, w, v - 1);
                add_int (values, w, v * 2);
                add_int (values, w, v / 2);
                add_int (values, w, 1);
                if (w <= 4) {
                        for (guint b = 0; b < 8 * w; b++)
                                add_int (values, w, v ^ ((guint64) 1 << b));
                } else {
                        for (guint i = 0; i < G_N_ELEMENTS (bits8); i++)
                                add_int (values, w, v ^ ((guint64) 1 << bits8[i]));
                }
                if (field->kind == K_OFFSET) {
                        for (guint i = 0; i < img->n_marks; i++)
                                add_int (values, w, img->marks[i]);
                        add_int (values, w, size + MiB);
                        add_int (values, w, v + MiB);
                        add_int (values, w, v - MiB);
                        add_int (values, w, v + 4096);
                        add_int (values, w, G_GUINT64_CONSTANT (1) << 32);
                        add_int (values, w, G_GUINT64_CONSTANT (1) << 40);
                        add_int (values, w, G_MAXUINT64 - MiB + 1);
                } else if (field->kind == K_LENGTH) {
                        static const guint64 lengths[] = {
                                4095,         4096,       65536,     MiB,
                                2 * MiB,      MiB + 4096, 256 * MiB, G_GUINT64_CONSTANT (1) << 31,
                                64 * VHDX_TiB
                        };
                        for (guint i = 0; i < G_N_ELEMENTS (lengths); i++)
                                add_int (values, w, lengths[i]);
                        add_int (values, w, size);
                        add_int (values, w, v + MiB);
                } else if (field->kind == K_COUNT) {
                        static const guint64 counts[] = { 2, 126, 127, 128, 2047, 2048, 4096 };
                        for (guint i = 0; i < G_N_ELEMENTS (counts); i++)
                                add_int (values, w, counts[i]);
                        add_int (values, w, v + 2);
                }
                break;
        }
        case K_BAT: {
                guint64 v = vhdx_get_le64 (orig);
                static const guint bits[] = { 0, 1, 2, 3, 19, 20, 21, 22, 30, 40, 63 };

                for (guint s = 0; s < 8; s++)
                        add_int (values, 8, (v & ~VHDX_BAT_STATE_MASK) | s);
                for (guint i = 0; i < img->n_marks; i++) {
                        add_int (values, 8,
                                 (img->marks[i] & VHDX_BAT_OFFSET_MASK) |
                                         VHDX_PAYLOAD_FULLY_PRESENT);
                        add_int (values, 8,
                                 (img->marks[i] & VHDX_BAT_OFFSET_MASK) |
                                         VHDX_PAYLOAD_PARTIALLY_PRESENT);
                }
                add_int (values, 8, VHDX_BAT_OFFSET_MASK | VHDX_PAYLOAD_FULLY_PRESENT);
                add_int (values, 8, (v & VHDX_BAT_OFFSET_MASK) + MiB);
                add_int (values, 8, v | VHDX_BAT_RESERVED_MASK);
                add_int (values, 8, v | 8);
                for (guint i = 0; i < G_N_ELEMENTS (bits); i++)
                        add_int (values, 8, v ^ ((guint64) 1 << bits[i]));
                break;
        }
        case K_GUID: {
                static const VhdxGuid *const known[] = {
                        &vhdx_guid_region_bat,
                        &vhdx_guid_region_metadata,
                        &vhdx_guid_item_file_parameters,
                        &vhdx_guid_item_virtual_disk_size,
                        &vhdx_guid_item_virtual_disk_id,
                        &vhdx_guid_item_logical_sector_size,
                        &vhdx_guid_item_physical_sector_size,
                        &vhdx_guid_item_parent_locator,
                        &vhdx_guid_locator_vhdx,
                };
                guint8 g[16];

                memset (g, 0, 16);
                add_bytes (values, g, 16);
                memset (g, 0xff, 16);
                add_bytes (values, g, 16);
                for (guint i = 0; i < 16; i++) {
                        memcpy (g, orig, 16);
                        g[i] ^= 1u << (i % 8);
                        add_bytes (values, g, 16);
                }
                for (guint i = 0; i < G_N_ELEMENTS (known); i++)
                        add_bytes (values, known[i]->bytes, 16);
                break;
        }
        case K_BYTES: {
                guint8 b[16];

                memset (b, 0, w);
                add_bytes (values, b, w);
                memset (b, 0xff, w);
                add_bytes (values, b, w);
                for (guint i = 0; i < w; i++) {
                        memcpy (b, orig, w);
                        b[i] ^= 0x20; /* the case of a letter */
                        add_bytes (values, b, w);
                        b[i] ^= 0x21;
                        add_bytes (values, b, w);
                }
                break;
        }
        case K_TEXT: {
                static const guint16 units[] = { 0,   0xd800, 0xdc00, 0xfffe, 0xffff,
                                                 '/', '\\',   '.',    'A',    0xe9 };
                for (guint i = 0; i < G_N_ELEMENTS (units); i++)
                        add_int (values, 2, units[i]);
                break;
        }
        case K_DIGIT: {
                static const char digits[] = "0129x";
                for (guint i = 0; digits[i] != '\0'; i++)
                        add_int (values, 2, (guint8) digits[i]);
                break;
        }
        }

        /* Values equal to the original damage nothing: drop them. */
        for (guint i = 0; i < values->len;) {
                if (memcmp (values->data + i, orig, w) == 0)
                        g_byte_array_remove_range (values, i, w);
                else
                        i += w;
        }
        return values;
}

/* The case for @value of @field: the field's bytes, then, when @fix_checksum,
 * the checksum of its structure recomputed over the damaged bytes. */
static void
make_case (Case *c,
           const Base *base,
           const Field *field,
           const guint8 *value,
           gboolean fix_checksum,
           guint index)
{
        memset (c, 0, sizeof *c);
        c->base = base;
        c->field = field;
        c->patches[0].image = field->image;
        c->patches[0].offset = field->offset;
        c->patches[0].len = field->width;
        memcpy (c->patches[0].data, value, field->width);
        c->n_patches = 1;
        g_snprintf (c->description, sizeof c->description, "%s/%s value %u%s", base->name,
                    field->name, index, fix_checksum ? "" : " (stale checksum)");

        if (fix_checksum && field->csum != CSUM_NONE) {
                const Image *img = g_ptr_array_index (base->images, field->image);
                gsize size;
                const guint8 *d = g_bytes_get_data (img->bytes, &size);
                guint32 length = field->csum_length;
                g_autofree guint8 *s = NULL;
                guint32 crc;

                if (field->entry_length) {
                        guint32 v = vhdx_get_le32 (value);
                        if (v > 0 && v % 4096 == 0 && field->csum_offset + v <= size &&
                            v <= 8 * MiB)
                                length = v;
                }
                s = g_malloc (length);
                memcpy (s, d + field->csum_offset, length);
                if (field->offset >= field->csum_offset &&
                    field->offset + field->width <= field->csum_offset + length)
                        memcpy (s + (field->offset - field->csum_offset), value, field->width);
                crc = vhdx_crc32c_with_zero_field (s, length, 4);
                c->patches[1].image = field->image;
                c->patches[1].offset = field->csum_offset + 4;
                c->patches[1].len = 4;
                vhdx_put_le32 (c->patches[1].data, crc);
                c->n_patches = 2;
        }
}

typedef void (*CaseFunc) (const Case *c, gpointer user_data);

/* Every case of the fields of image @image of @base. */
static guint
for_each_case (const Base *base, guint image, CaseFunc func, gpointer user_data)
{
        guint n = 0;

        for (guint i = 0; i < base->fields->len; i++) {
                const Field *f = &g_array_index (base->fields, Field, i);
                g_autoptr (GByteArray) values = NULL;

                if (f->image != image)
                        continue;
                values = field_values (base, f);
                for (guint v = 0; v * f->width < values->len; v++) {
                        Case c;
                        make_case (&c, base, f, values->data + v * f->width, TRUE, v);
                        if (func != NULL)
                                func (&c, user_data);
                        n++;
                        /* A stale checksum, once per field. */
                        if (v == 0 && f->csum != CSUM_NONE) {
                                make_case (&c, base, f, values->data, FALSE, v);
                                if (func != NULL)
                                        func (&c, user_data);
                                n++;
                        }
                }
        }
        return n;
}

/* Running a case */

static char current_case[200];
/* Outcomes of the cases run: opened, and failed to open by error code. */
static guint n_opened;
static guint n_failed[VHDX_ERROR_OUT_OF_RANGE + 1];

static void
report_case (int sig)
{
        static const char prefix[] = "\nfailing case: ";
        ssize_t r;

        r = write (STDERR_FILENO, prefix, sizeof prefix - 1);
        r = write (STDERR_FILENO, current_case, strlen (current_case));
        r = write (STDERR_FILENO, "\n", 1);
        (void) r;
        signal (sig, SIG_DFL);
        raise (sig);
}

static void
assert_soft_error (const GError *error, const char *what)
{
        if (error == NULL || (error->domain != VHDX_ERROR && error->domain != G_IO_ERROR))
                g_error ("%s: %s failed with %s", current_case, what,
                         error != NULL ? error->message : "no error");
}

static void
read_ranges (VhdxFile *file, const Case *c)
{
        const VhdxInfo *info = vhdx_file_get_info (file);
        guint64 vs = info->virtual_size;
        guint64 starts[3] = { 0, vs / 2, vs - MIN (vs, MiB) };
        guint64 lengths[3] = { MIN (vs, READ_LIMIT), MIN (vs - vs / 2, 64 * 1024), MIN (vs, MiB) };
        guint n = vs <= READ_LIMIT ? 1 : 3;
        /* One buffer for every case: megabytes allocated per case cost more
         * than the case under the sanitizers. */
        static guint8 *buf;

        if (buf == NULL)
                buf = g_malloc (READ_LIMIT);
        for (guint i = 0; i < n; i++) {
                g_autoptr (GError) error = NULL;

                if (!vhdx_file_read (file, starts[i], buf, lengths[i], &error)) {
                        assert_soft_error (error, "read");
                        continue;
                }
                if (c->field->neutral) {
                        gsize expect_len;
                        const guint8 *expect = g_bytes_get_data (c->base->expect, &expect_len);
                        if (vs != c->base->virtual_size || lengths[i] != expect_len ||
                            memcmp (buf, expect, expect_len) != 0)
                                g_error ("%s: damage to a field that holds no data changed "
                                         "what the disk reads as",
                                         current_case);
                }
        }
}

static void
run_case (const Case *c, gpointer user_data)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GPtrArray) problems = NULL;
        g_autoptr (GArray) extents = NULL;
        const VhdxInfo *info;
        guint64 allocated;
        guint *n_run = user_data;
        gsize before = 0;

        g_strlcpy (current_case, c->description, sizeof current_case);
        alarm (CASE_HANG_SECONDS);
        (*n_run)++;

        if (test_alloc_available ()) {
                before = test_alloc_current ();
                test_alloc_reset_peak ();
        }
        file = open_case (c->base, c, &error);
        if (test_alloc_available () && test_alloc_peak () - before > OPEN_HEAP_BUDGET)
                g_error ("%s: opening took %" G_GSIZE_FORMAT " bytes of heap", current_case,
                         test_alloc_peak () - before);
        if (file == NULL) {
                if (error == NULL || error->domain != VHDX_ERROR || error->code < 0 ||
                    error->code > VHDX_ERROR_OUT_OF_RANGE)
                        g_error ("%s: open failed with %s", current_case,
                                 error != NULL ? error->message : "no error");
                n_failed[error->code]++;
                if (g_getenv ("MATRIX_VERBOSE") != NULL)
                        g_printerr ("%s: %s\n", current_case, error->message);
                return;
        }
        n_opened++;
        info = vhdx_file_get_info (file);

        read_ranges (file, c);

        extents = vhdx_file_map (file, 0, MIN (info->virtual_size, 64 * VHDX_GiB), &error);
        if (extents == NULL)
                assert_soft_error (error, "map");
        g_clear_error (&error);

        problems = g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
        if (!vhdx_file_check (file, problems, &error))
                assert_soft_error (error, "check");
        g_clear_error (&error);

        if (!vhdx_file_get_allocated_bytes (file, &allocated, &error))
                assert_soft_error (error, "allocated bytes");
        else if (allocated > info->virtual_size)
                g_error ("%s: %" G_GUINT64_FORMAT " bytes allocated of %" G_GUINT64_FORMAT,
                         current_case, allocated, info->virtual_size);
}

static const Base *get_base (const char *name);
static void get_all_bases (void);

/* The cases of one image of a base run in one subprocess. */
typedef struct {
        const char *base;
        guint image;
} Group;

static const Group groups[] = {
        { "fixed", 0 }, { "dynamic", 0 }, { "4k-sectors", 0 }, { "chain", 0 },
        { "chain", 1 }, { "chain", 2 },   { "dirty", 0 },
};

static void
limit_resources (void)
{
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
        g_autofree char *statm = NULL;
        struct rlimit limit;
        guint64 pages;

        /* What the process has mapped now, plus the allowance. */
        g_assert_true (g_file_get_contents ("/proc/self/statm", &statm, NULL, NULL));
        pages = g_ascii_strtoull (statm, NULL, 10);
        limit.rlim_cur = limit.rlim_max = pages * sysconf (_SC_PAGESIZE) + ADDRESS_SPACE_LIMIT;
        g_assert_cmpint (setrlimit (RLIMIT_AS, &limit), ==, 0);
#endif
        signal (SIGALRM, report_case);
        signal (SIGABRT, report_case);
        signal (SIGSEGV, report_case);
        signal (SIGBUS, report_case);
}

static void
test_group (gconstpointer data)
{
        const Group *g = data;

        if (g_test_subprocess ()) {
                const Base *base = get_base (g->base);
                guint n_run = 0;
                limit_resources ();
                for_each_case (base, g->image, run_case, &n_run);
                alarm (0);
                g_test_message ("%u cases: %u opened; failed to open: %u invalid, %u checksum, "
                                "%u not supported, %u truncated, %u parent not found, "
                                "%u parent mismatch, %u log",
                                n_run, n_opened, n_failed[VHDX_ERROR_INVALID],
                                n_failed[VHDX_ERROR_CHECKSUM], n_failed[VHDX_ERROR_NOT_SUPPORTED],
                                n_failed[VHDX_ERROR_TRUNCATED],
                                n_failed[VHDX_ERROR_PARENT_NOT_FOUND],
                                n_failed[VHDX_ERROR_PARENT_MISMATCH], n_failed[VHDX_ERROR_LOG]);
                return;
        }
        g_test_trap_subprocess (NULL, 600 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_INHERIT_STDERR);
        g_test_trap_assert_passed ();
}

static void
test_undamaged (void)
{
        /* Every base opens, reads as its reference (the generator's disk or
         * the model of the writes) and checks without errors. */
        get_all_bases ();
        for (guint i = 0; i < bases->len; i++) {
                const Base *base = g_ptr_array_index (bases, i);
                g_autoptr (GError) error = NULL;
                g_autoptr (VhdxFile) file = open_case (base, NULL, &error);
                g_autoptr (GPtrArray) problems =
                        g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
                g_autofree guint8 *buf = NULL;
                gsize size;
                const guint8 *expect = g_bytes_get_data (base->expect, &size);

                g_assert_no_error (error);
                g_assert_cmpuint (vhdx_file_get_chain_depth (file), ==, base->images->len - 1);
                g_assert_cmpuint (vhdx_file_get_info (file)->virtual_size, ==, base->virtual_size);
                g_assert_cmpuint (size, ==, base->virtual_size);
                g_assert_cmpuint (size, <=, READ_LIMIT);
                buf = g_malloc (size);
                test_assert_ok (vhdx_file_read (file, 0, buf, size, &error), error);
                test_assert_bytes_equal (buf, expect, size, 0, base->name);
                test_assert_ok (vhdx_file_check (file, problems, &error), error);
                for (guint k = 0; k < problems->len; k++) {
                        const VhdxProblem *p = g_ptr_array_index (problems, k);
                        g_test_message ("%s: %s at %" G_GUINT64_FORMAT ": %s", base->name,
                                        p->structure, p->offset, p->message);
                }
                g_assert_cmpuint (problems->len, ==, 0);
        }
}

static void
count_case (const Case *c, gpointer user_data)
{
        GHashTable *per_field = user_data;
        guint n = GPOINTER_TO_UINT (g_hash_table_lookup (per_field, c->field));

        g_hash_table_insert (per_field, (gpointer) c->field, GUINT_TO_POINTER (n + 1));
}

static const char *const group_names[] = { "fileid",  "header", "region", "metadata",
                                           "locator", "bat",    "bitmap", "log" };

/* The fields image @image of @base holds, by group, from the structure the
 * generator or the writer gave it and the field lists of MS-VHDX. */
static void
expected_fields (const Base *base, guint image, guint *n)
{
        guint64 blocks = (base->virtual_size + MiB - 1) / MiB;

        memset (n, 0, G_N_ELEMENTS (group_names) * sizeof *n);
        /* Signature and creator. */
        n[0] = 2;
        /* Signature, checksum, sequence, three GUIDs, two versions, the log's
         * length and offset, a reserved field: in each header. */
        n[1] = 2 * 11;
        /* Signature, checksum, count, reserved; each entry's GUID, offset,
         * length and flags: in each table. */
        n[2] = 2 * (4 + 4 * base->n_regions[image]);
        /* Signature, reserved, count, reserved; each entry's ID, offset,
         * length, flags and reserved; the six values of the standard items. */
        n[3] = 4 + 5 * base->n_metadata_items[image] + 6;
        /* Type, reserved, count; each entry's two offsets, two lengths, key
         * and value; the digits naming a parent. */
        if (base->n_locator_entries[image] > 0)
                n[4] = 3 + 6 * base->n_locator_entries[image] + base->n_parent_digits[image];
        /* Every payload block, the sector bitmap entry of chunk 0. */
        n[5] = blocks + (base->bitmap_entry_in_bat[image] ? 1 : 0);
        /* The bitmap bytes of the first two blocks. */
        n[6] = base->has_bitmap[image] ? MIN (blocks, 2) : 0;
        /* Each entry's checksum and nine header fields, each descriptor's
         * five fields, each data sector's four. */
        if (image == 0)
                n[7] = 10 * base->n_log_entries + 5 * base->n_log_descriptors +
                       4 * base->n_log_data;
}

/*
 * The matrix takes every structure apart: the number of fields it finds in
 * each group is what the structure of the images defines, and every field
 * gets at least one case.  (The number of cases itself is not asserted: a
 * field's values depend on its original value, equal ones being dropped, so
 * the only way to compute it would be to run the enumeration again.)
 */
static void
test_count (void)
{
        guint total = 0;

        get_all_bases ();
        for (guint i = 0; i < bases->len; i++) {
                const Base *base = g_ptr_array_index (bases, i);
                g_autoptr (GHashTable) per_field = g_hash_table_new (NULL, NULL);
                guint n = 0;

                for (guint image = 0; image < base->images->len; image++) {
                        guint expected[G_N_ELEMENTS (group_names)];
                        guint found[G_N_ELEMENTS (group_names)] = { 0 };

                        expected_fields (base, image, expected);
                        for (guint f = 0; f < base->fields->len; f++) {
                                const Field *field = &g_array_index (base->fields, Field, f);
                                guint g;

                                if (field->image != image)
                                        continue;
                                for (g = 0; g < G_N_ELEMENTS (group_names); g++)
                                        if (strcmp (field->group, group_names[g]) == 0)
                                                break;
                                g_assert_cmpuint (g, <, G_N_ELEMENTS (group_names));
                                found[g]++;
                        }
                        for (guint g = 0; g < G_N_ELEMENTS (group_names); g++) {
                                g_test_message ("%s img%u: %u %s fields", base->name, image,
                                                found[g], group_names[g]);
                                g_assert_cmpuint (found[g], ==, expected[g]);
                        }
                        n += for_each_case (base, image, count_case, per_field);
                }
                for (guint f = 0; f < base->fields->len; f++) {
                        const Field *field = &g_array_index (base->fields, Field, f);
                        if (!g_hash_table_contains (per_field, field))
                                g_error ("%s: field %s of img%u gets no case", base->name,
                                         field->name, field->image);
                }
                g_test_message ("%s: %u fields, %u cases", base->name, base->fields->len, n);
                total += n;
        }
        g_test_message ("%u cases in all", total);
}

/* Read-only means read-only: the same damage applied to files on disk,
 * opened by path the way the tool opens them. */

typedef struct {
        char *dir;
        GPtrArray *paths;
        GHashTable *seen; /* fields already tried */
        guint n_run;
} FileContext;

/* Every descriptor of the process open on one of @paths is read-only;
 * returns how many there are. */
static guint
assert_descriptors_read_only (GPtrArray *paths)
{
        g_autoptr (GDir) dir = g_dir_open ("/proc/self/fd", 0, NULL);
        const char *name;
        guint n = 0;

        g_assert_nonnull (dir);
        while ((name = g_dir_read_name (dir)) != NULL) {
                g_autofree char *link = g_build_filename ("/proc/self/fd", name, NULL);
                g_autofree char *target = g_file_read_link (link, NULL);
                g_autofree char *info_path = NULL;
                g_autofree char *info = NULL;
                const char *flags;
                gboolean ours = FALSE;

                for (guint i = 0; target != NULL && i < paths->len; i++)
                        ours |= g_strcmp0 (target, g_ptr_array_index (paths, i)) == 0;
                if (!ours)
                        continue;
                info_path = g_build_filename ("/proc/self/fdinfo", name, NULL);
                g_assert_true (g_file_get_contents (info_path, &info, NULL, NULL));
                flags = strstr (info, "flags:");
                g_assert_nonnull (flags);
                g_assert_cmpint (g_ascii_strtoull (flags + 6, NULL, 8) & O_ACCMODE, ==, O_RDONLY);
                n++;
        }
        return n;
}

static void
apply_patches (const Case *c, FileContext *ctx, gboolean undo)
{
        for (guint i = 0; i < c->n_patches; i++) {
                const Patch *p = &c->patches[i];
                const Image *img = g_ptr_array_index (c->base->images, p->image);
                const guint8 *d = g_bytes_get_data (img->bytes, NULL);
                int fd = open (g_ptr_array_index (ctx->paths, p->image), O_WRONLY | O_CLOEXEC);

                g_assert_cmpint (fd, >=, 0);
                g_assert_cmpint (pwrite (fd, undo ? d + p->offset : p->data, p->len, p->offset), ==,
                                 p->len);
                close (fd);
        }
}

static void
run_file_case (const Case *c, gpointer user_data)
{
        FileContext *ctx = user_data;
        const Base *base = c->base;
        const char *top = g_ptr_array_index (ctx->paths, base->images->len - 1);
        struct stat before[4], after[4];
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        VhdxOpenOptions options = { .path = top };
        VhdxIo *io;

        /* The first value of every field. */
        if (g_hash_table_contains (ctx->seen, c->field))
                return;
        g_hash_table_add (ctx->seen, (gpointer) c->field);
        g_strlcpy (current_case, c->description, sizeof current_case);
        ctx->n_run++;

        apply_patches (c, ctx, FALSE);
        for (guint i = 0; i < ctx->paths->len; i++)
                g_assert_cmpint (stat (g_ptr_array_index (ctx->paths, i), &before[i]), ==, 0);

        io = vhdx_io_open_path (top, FALSE, &error);
        g_assert_no_error (error);
        file = vhdx_file_open_full (io, VHDX_OPEN_FLAGS_NONE, &options, &error);
        if (file != NULL) {
                g_autoptr (GPtrArray) problems =
                        g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
                g_autofree guint8 *buf = NULL;
                guint64 n = MIN (vhdx_file_get_info (file)->virtual_size, READ_LIMIT);

                g_assert_cmpuint (assert_descriptors_read_only (ctx->paths), ==,
                                  vhdx_file_get_chain_depth (file) + 1);
                buf = g_malloc (n);
                if (!vhdx_file_read (file, 0, buf, n, &error))
                        assert_soft_error (error, "read");
                g_clear_error (&error);
                if (!vhdx_file_check (file, problems, &error))
                        assert_soft_error (error, "check");
                g_clear_error (&error);
                g_clear_pointer (&file, vhdx_file_free);
        } else {
                g_assert_true (error->domain == VHDX_ERROR);
        }
        g_assert_cmpuint (assert_descriptors_read_only (ctx->paths), ==, 0);

        for (guint i = 0; i < ctx->paths->len; i++) {
                g_assert_cmpint (stat (g_ptr_array_index (ctx->paths, i), &after[i]), ==, 0);
                g_assert_cmpint (after[i].st_size, ==, before[i].st_size);
                g_assert_cmpint (after[i].st_mtim.tv_sec, ==, before[i].st_mtim.tv_sec);
                g_assert_cmpint (after[i].st_mtim.tv_nsec, ==, before[i].st_mtim.tv_nsec);
                g_assert_cmpint (after[i].st_ctim.tv_sec, ==, before[i].st_ctim.tv_sec);
                g_assert_cmpint (after[i].st_ctim.tv_nsec, ==, before[i].st_ctim.tv_nsec);
        }
        apply_patches (c, ctx, TRUE);
}

static void
test_read_only (void)
{
        guint total = 0;

        get_all_bases ();
        for (guint b = 0; b < bases->len; b++) {
                const Base *base = g_ptr_array_index (bases, b);
                FileContext ctx = { 0 };

                ctx.dir = test_tmpdir_new ();
                ctx.paths = g_ptr_array_new_with_free_func (g_free);
                ctx.seen = g_hash_table_new (NULL, NULL);
                for (guint i = 0; i < base->images->len; i++) {
                        const Image *img = g_ptr_array_index (base->images, i);
                        g_autoptr (GError) error = NULL;
                        char *path = g_build_filename (ctx.dir, img->name, NULL);
                        test_assert_ok (g_file_set_contents (path,
                                                             g_bytes_get_data (img->bytes, NULL),
                                                             (gssize) g_bytes_get_size (img->bytes),
                                                             &error),
                                        error);
                        g_ptr_array_add (ctx.paths, path);
                }
                for (guint image = 0; image < base->images->len; image++)
                        for_each_case (base, image, run_file_case, &ctx);

                /* Every file is again exactly the undamaged image. */
                for (guint i = 0; i < base->images->len; i++) {
                        const Image *img = g_ptr_array_index (base->images, i);
                        g_autofree char *contents = NULL;
                        gsize len;
                        g_assert_true (g_file_get_contents (g_ptr_array_index (ctx.paths, i),
                                                            &contents, &len, NULL));
                        g_assert_true (
                                len == g_bytes_get_size (img->bytes) &&
                                memcmp (contents, g_bytes_get_data (img->bytes, NULL), len) == 0);
                }
                total += ctx.n_run;
                g_hash_table_unref (ctx.seen);
                g_ptr_array_unref (ctx.paths);
                test_tmpdir_free (ctx.dir);
        }
        g_test_message ("%u damaged files opened read-only", total);
}

static const char *const base_names[] = { "fixed", "dynamic", "4k-sectors", "chain", "dirty" };

/* The base called @name, built on first use: a subprocess builds only its own. */
static const Base *
get_base (const char *name)
{
        Base *base;

        for (guint i = 0; i < bases->len; i++) {
                base = g_ptr_array_index (bases, i);
                if (strcmp (base->name, name) == 0)
                        return base;
        }
        if (strcmp (name, "fixed") == 0) {
                base = base_new ("fixed");
                build_generated (base, VHDX_DISK_TYPE_FIXED, 4 * MiB, 512, FALSE, 10);
        } else if (strcmp (name, "dynamic") == 0) {
                base = base_new ("dynamic");
                build_generated (base, VHDX_DISK_TYPE_DYNAMIC, 6 * MiB, 512, TRUE, 20);
        } else if (strcmp (name, "4k-sectors") == 0) {
                base = base_new ("4k-sectors");
                build_generated (base, VHDX_DISK_TYPE_DYNAMIC, 3 * MiB + 8192, 4096, FALSE, 30);
        } else if (strcmp (name, "chain") == 0) {
                base = base_new ("chain");
                build_chain (base);
        } else {
                g_assert_cmpstr (name, ==, "dirty");
                base = base_new ("dirty");
                build_dirty (base);
        }
        g_assert_cmpuint (base->images->len, <=, MAX_IMAGES);
        for (guint image = 0; image < base->images->len; image++)
                fields_of_image (base, image, strcmp (base->name, "dirty") == 0);
        g_ptr_array_add (bases, base);
        return base;
}

static void
get_all_bases (void)
{
        for (guint i = 0; i < G_N_ELEMENTS (base_names); i++)
                (void) get_base (base_names[i]);
}

int
main (int argc, char **argv)
{
        int status;

        g_test_init (&argc, &argv, NULL);
        bases = g_ptr_array_new_with_free_func (base_free);

        g_test_add_func ("/matrix/undamaged", test_undamaged);
        g_test_add_func ("/matrix/count", test_count);
        for (guint i = 0; i < G_N_ELEMENTS (groups); i++) {
                g_autofree char *path =
                        g_strdup_printf ("/matrix/%s/img%u", groups[i].base, groups[i].image);
                g_test_add_data_func (path, &groups[i], test_group);
        }
        g_test_add_func ("/matrix/read-only", test_read_only);

        status = g_test_run ();
        g_ptr_array_unref (bases);
        return status;
}
