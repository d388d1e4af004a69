/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fuzz-common.h"

#include <gio/gio.h>

#include "vhdx-crc32c.h"
#include "vhdx-gen.h"

/* Images are kept in pages, so that a 32 MiB file of zeros with a few
 * structures costs a few pages, and a template is shared, not copied. */
#define PAGE_SIZE_BYTES (16 * 1024)

struct _FuzzImage {
        gint ref_count;
        GBytes *base;
        guint64 size;
        guint64 n_pages;
        guint8 **pages; /* NULL: the base's bytes (zeros past its end) */
};

FuzzImage *
fuzz_image_new (GBytes *base, guint64 size)
{
        FuzzImage *image = g_new0 (FuzzImage, 1);

        image->ref_count = 1;
        image->base = base != NULL ? g_bytes_ref (base) : NULL;
        image->size = size;
        image->n_pages = (size + PAGE_SIZE_BYTES - 1) / PAGE_SIZE_BYTES;
        image->pages = g_new0 (guint8 *, image->n_pages);
        return image;
}

FuzzImage *
fuzz_image_ref (FuzzImage *image)
{
        image->ref_count++;
        return image;
}

void
fuzz_image_unref (FuzzImage *image)
{
        if (image == NULL || --image->ref_count > 0)
                return;
        for (guint64 i = 0; i < image->n_pages; i++)
                g_free (image->pages[i]);
        g_free (image->pages);
        g_clear_pointer (&image->base, g_bytes_unref);
        g_free (image);
}

guint64
fuzz_image_get_size (FuzzImage *image)
{
        return image->size;
}

static void
read_base (FuzzImage *image, guint64 offset, guint8 *buf, gsize len)
{
        gsize base_len = 0;
        const guint8 *base = image->base != NULL ? g_bytes_get_data (image->base, &base_len) : NULL;
        gsize n = 0;

        if (offset < base_len) {
                n = (gsize) MIN ((guint64) len, base_len - offset);
                memcpy (buf, base + offset, n);
        }
        memset (buf + n, 0, len - n);
}

void
fuzz_image_read (FuzzImage *image, guint64 offset, void *buf, gsize len)
{
        guint8 *out = buf;

        while (len > 0) {
                guint64 page = offset / PAGE_SIZE_BYTES;
                gsize in_page = (gsize) (offset % PAGE_SIZE_BYTES);
                gsize n = MIN (len, PAGE_SIZE_BYTES - in_page);

                if (offset >= image->size)
                        memset (out, 0, n);
                else if (image->pages[page] != NULL)
                        memcpy (out, image->pages[page] + in_page, n);
                else
                        read_base (image, offset, out, n);
                out += n;
                offset += n;
                len -= n;
        }
}

static void
grow (FuzzImage *image, guint64 size)
{
        guint64 n_pages = (size + PAGE_SIZE_BYTES - 1) / PAGE_SIZE_BYTES;

        if (n_pages > image->n_pages) {
                image->pages = g_renew (guint8 *, image->pages, n_pages);
                memset (image->pages + image->n_pages, 0,
                        (n_pages - image->n_pages) * sizeof (guint8 *));
                image->n_pages = n_pages;
        }
        /* Bytes between the old end and the new one read as zeros, whatever
         * the base holds there. */
        for (guint64 offset = image->size; offset < size;) {
                guint64 page = offset / PAGE_SIZE_BYTES;
                gsize in_page = (gsize) (offset % PAGE_SIZE_BYTES);
                gsize n = (gsize) MIN (size - offset, (guint64) PAGE_SIZE_BYTES - in_page);

                if (image->pages[page] == NULL) {
                        image->pages[page] = g_malloc (PAGE_SIZE_BYTES);
                        read_base (image, page * PAGE_SIZE_BYTES, image->pages[page],
                                   PAGE_SIZE_BYTES);
                }
                memset (image->pages[page] + in_page, 0, n);
                offset += n;
        }
        image->size = size;
}

void
fuzz_image_write (FuzzImage *image, guint64 offset, const void *buf, gsize len)
{
        const guint8 *in = buf;

        if (offset + len > image->size)
                grow (image, offset + len);
        while (len > 0) {
                guint64 page = offset / PAGE_SIZE_BYTES;
                gsize in_page = (gsize) (offset % PAGE_SIZE_BYTES);
                gsize n = MIN (len, PAGE_SIZE_BYTES - in_page);

                if (image->pages[page] == NULL) {
                        image->pages[page] = g_malloc (PAGE_SIZE_BYTES);
                        read_base (image, page * PAGE_SIZE_BYTES, image->pages[page],
                                   PAGE_SIZE_BYTES);
                }
                memcpy (image->pages[page] + in_page, in, n);
                in += n;
                offset += n;
                len -= n;
        }
}

GBytes *
fuzz_image_to_bytes (FuzzImage *image)
{
        guint8 *data = g_malloc (image->size);

        fuzz_image_read (image, 0, data, image->size);
        return g_bytes_new_take (data, image->size);
}

/* Fix the checksum of the log entries in [log_offset, log_offset + log_length):
 * every 4 KiB position that starts with "loge" and gives a usable length.
 * Later positions first, so that an entry covering another one is fixed
 * after it. */
static void
fix_log_checksums (FuzzImage *image, guint64 log_offset, guint32 log_length)
{
        g_autofree guint8 *entry = NULL;

        /* Larger logs would make every input slow; they are rare in seeds. */
        if (log_length == 0 || log_length > 4 * VHDX_MiB ||
            log_length % VHDX_LOG_SECTOR_SIZE != 0 || log_offset > image->size ||
            log_length > image->size - log_offset)
                return;
        for (guint32 pos = log_length; pos > 0;) {
                guint8 head[VHDX_LOG_OFF_ENTRY_LENGTH + 4];
                guint32 length, first;

                pos -= VHDX_LOG_SECTOR_SIZE;
                fuzz_image_read (image, log_offset + pos, head, sizeof head);
                if (memcmp (head, VHDX_LOG_ENTRY_SIGNATURE, 4) != 0)
                        continue;
                length = vhdx_get_le32 (head + VHDX_LOG_OFF_ENTRY_LENGTH);
                if (length == 0 || length % VHDX_LOG_SECTOR_SIZE != 0 || length > log_length)
                        continue;
                first = MIN (length, log_length - pos);
                g_free (entry);
                entry = g_malloc (length);
                fuzz_image_read (image, log_offset + pos, entry, first);
                fuzz_image_read (image, log_offset, entry + first, length - first);
                vhdx_put_le32 (head,
                               vhdx_crc32c_with_zero_field (entry, length, VHDX_LOG_OFF_CHECKSUM));
                fuzz_image_write (image, log_offset + pos + VHDX_LOG_OFF_CHECKSUM, head, 4);
        }
}

void
fuzz_image_fix_checksums (FuzzImage *image)
{
        static const guint64 headers[] = { VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET };
        static const guint64 tables[] = { VHDX_REGION_TABLE1_OFFSET, VHDX_REGION_TABLE2_OFFSET };
        g_autofree guint8 *buf = g_malloc (VHDX_REGION_TABLE_SIZE);

        guint64 done_offset = G_MAXUINT64;
        guint32 done_length = 0;

        for (guint i = 0; i < G_N_ELEMENTS (headers); i++) {
                guint64 log_offset;
                guint32 log_length;

                fuzz_image_read (image, headers[i], buf, VHDX_HEADER_SIZE);
                if (memcmp (buf, VHDX_HEADER_SIGNATURE, 4) != 0)
                        continue;
                log_offset = vhdx_get_le64 (buf + VHDX_HEADER_OFF_LOG_OFFSET);
                log_length = vhdx_get_le32 (buf + VHDX_HEADER_OFF_LOG_LENGTH);
                if (log_offset == done_offset && log_length == done_length)
                        continue;
                fix_log_checksums (image, log_offset, log_length);
                done_offset = log_offset;
                done_length = log_length;
        }
        for (guint i = 0; i < G_N_ELEMENTS (headers); i++) {
                if (headers[i] + VHDX_HEADER_SIZE > image->size)
                        continue;
                fuzz_image_read (image, headers[i], buf, VHDX_HEADER_SIZE);
                vhdx_put_le32 (buf + VHDX_HEADER_OFF_CHECKSUM,
                               vhdx_crc32c_with_zero_field (buf, VHDX_HEADER_SIZE,
                                                            VHDX_HEADER_OFF_CHECKSUM));
                fuzz_image_write (image, headers[i], buf, VHDX_HEADER_SIZE);
        }
        for (guint i = 0; i < G_N_ELEMENTS (tables); i++) {
                if (tables[i] + VHDX_REGION_TABLE_SIZE > image->size)
                        continue;
                fuzz_image_read (image, tables[i], buf, VHDX_REGION_TABLE_SIZE);
                vhdx_put_le32 (buf + VHDX_REGION_OFF_CHECKSUM,
                               vhdx_crc32c_with_zero_field (buf, VHDX_REGION_TABLE_SIZE,
                                                            VHDX_REGION_OFF_CHECKSUM));
                fuzz_image_write (image, tables[i], buf, VHDX_REGION_TABLE_SIZE);
        }
}

/* The io */
typedef struct {
        VhdxIo parent;
        FuzzImage *image;
        guint64 identity;
} FuzzIo;

static gboolean
fuzz_io_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        FuzzIo *self = (FuzzIo *) io;
        guint64 size = self->image->size;

        *n_read = offset < size ? (gsize) MIN ((guint64) count, size - offset) : 0;
        fuzz_image_read (self->image, offset, buf, *n_read);
        return TRUE;
}

static gboolean
fuzz_io_pwrite (VhdxIo *io, const void *buf, gsize count, guint64 offset, GError **error)
{
        FuzzIo *self = (FuzzIo *) io;

        if (offset > FUZZ_MAX_WRITABLE_SIZE || count > FUZZ_MAX_WRITABLE_SIZE - offset) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                             "write of %" G_GSIZE_FORMAT " bytes at %" G_GUINT64_FORMAT
                             " past the fuzzing limit",
                             count, offset);
                return FALSE;
        }
        fuzz_image_write (self->image, offset, buf, count);
        return TRUE;
}

static gboolean
fuzz_io_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        *size = ((FuzzIo *) io)->image->size;
        return TRUE;
}

static gboolean
fuzz_io_flush (VhdxIo *io, GError **error)
{
        return TRUE;
}

static void
fuzz_io_free (VhdxIo *io)
{
        fuzz_image_unref (((FuzzIo *) io)->image);
        g_free (io);
}

static gboolean
fuzz_io_identify (VhdxIo *io, guint64 *device, guint64 *inode)
{
        FuzzIo *self = (FuzzIo *) io;

        if (self->identity == 0)
                return FALSE;
        *device = 0;
        *inode = self->identity;
        return TRUE;
}

static const VhdxIoVTable fuzz_io_vtable = {
        .pread = fuzz_io_pread,
        .get_size = fuzz_io_get_size,
        .free = fuzz_io_free,
        .identify = fuzz_io_identify,
};

static const VhdxIoVTable fuzz_io_writable_vtable = {
        .pread = fuzz_io_pread,
        .get_size = fuzz_io_get_size,
        .pwrite = fuzz_io_pwrite,
        .flush = fuzz_io_flush,
        .free = fuzz_io_free,
        .identify = fuzz_io_identify,
};

VhdxIo *
fuzz_image_new_io (FuzzImage *image, gboolean writable, guint64 identity)
{
        FuzzIo *self = g_new0 (FuzzIo, 1);

        self->parent.vtable = writable ? &fuzz_io_writable_vtable : &fuzz_io_vtable;
        self->image = fuzz_image_ref (image);
        self->identity = identity;
        return &self->parent;
}

/* The input encoding */
FuzzImage *
fuzz_image_decode (const guint8 *data,
                   gsize size,
                   guint8 *flags,
                   const guint8 **tail,
                   gsize *tail_len)
{
        FuzzImage *image;
        guint64 file_size;
        gsize p = FUZZ_HEADER_SIZE;

        *flags = 0;
        *tail = NULL;
        *tail_len = 0;
        if (size >= 8 && memcmp (data, VHDX_FILE_ID_SIGNATURE, 8) == 0) {
                g_autoptr (GBytes) whole = g_bytes_new (data, size);
                return fuzz_image_new (whole, size);
        }
        if (size < FUZZ_HEADER_SIZE)
                return NULL;
        *flags = data[0];
        file_size = MIN (vhdx_get_le32 (data + 1), FUZZ_MAX_FILE_SIZE);
        image = fuzz_image_new (NULL, file_size);
        while (p + FUZZ_RECORD_HEADER_SIZE <= size) {
                guint32 offset = vhdx_get_le32 (data + p);
                gsize length = vhdx_get_le16 (data + p + 4);

                p += FUZZ_RECORD_HEADER_SIZE;
                if (offset == FUZZ_RECORD_END) {
                        *tail = data + p;
                        *tail_len = size - p;
                        break;
                }
                length = MIN (length, size - p);
                if (offset < file_size)
                        fuzz_image_write (image, offset, data + p,
                                          (gsize) MIN ((guint64) length, file_size - offset));
                p += length;
        }
        if (*flags & FUZZ_FLAG_FIX_CHECKSUMS)
                fuzz_image_fix_checksums (image);
        return image;
}

static void
append_record (GByteArray *out, guint32 offset, const guint8 *data, guint16 length)
{
        guint8 head[FUZZ_RECORD_HEADER_SIZE];

        vhdx_put_le32 (head, offset);
        vhdx_put_le16 (head + 4, length);
        g_byte_array_append (out, head, sizeof head);
        g_byte_array_append (out, data, length);
}

void
fuzz_image_encode (GBytes *file, guint8 flags, const guint8 *tail, gsize tail_len, GByteArray *out)
{
        gsize size;
        const guint8 *data = g_bytes_get_data (file, &size);
        guint8 head[FUZZ_HEADER_SIZE];
        /* Runs of zeros shorter than a record header are cheaper inside a record. */
        const gsize gap = 2 * FUZZ_RECORD_HEADER_SIZE;

        g_assert (size <= FUZZ_MAX_FILE_SIZE);
        head[0] = flags;
        vhdx_put_le32 (head + 1, (guint32) size);
        g_byte_array_append (out, head, sizeof head);
        for (gsize i = 0; i < size;) {
                gsize start, end, zeros;

                if (data[i] == 0) {
                        i++;
                        continue;
                }
                start = i;
                end = i + 1;
                zeros = 0;
                for (i++; i < size && end - start < G_MAXUINT16; i++) {
                        if (data[i] != 0) {
                                end = i + 1;
                                zeros = 0;
                        } else if (++zeros > gap) {
                                break;
                        }
                }
                end = MIN (end, start + G_MAXUINT16);
                append_record (out, (guint32) start, data + start, (guint16) (end - start));
                i = end;
        }
        if (tail != NULL) {
                append_record (out, FUZZ_RECORD_END, NULL, 0);
                g_byte_array_append (out, tail, tail_len);
        }
}

/* The fixed parent */
#define PARENT_VIRTUAL_SIZE (4 * VHDX_MiB)
#define PARENT_BLOCK_SIZE   VHDX_MiB

static gpointer
build_parent (gpointer data)
{
        g_autoptr (VhdxGen) gen = NULL;
        VhdxGenParams params;

        vhdx_gen_params_init (&params);
        params.disk_type = VHDX_DISK_TYPE_DYNAMIC;
        params.virtual_size = PARENT_VIRTUAL_SIZE;
        params.block_size = PARENT_BLOCK_SIZE;
        params.seed = 7;
        gen = vhdx_gen_new (&params);
        vhdx_gen_fill_pattern (gen, 0, 64 * 1024, 1);
        vhdx_gen_fill_pattern (gen, 2 * VHDX_MiB + 4096, 8192, 2);
        return vhdx_gen_build (gen);
}

GBytes *
fuzz_parent_bytes (void)
{
        static GOnce once = G_ONCE_INIT;

        return g_once (&once, build_parent, NULL);
}

VhdxGuid
fuzz_parent_data_write_guid (void)
{
        const guint8 *data = g_bytes_get_data (fuzz_parent_bytes (), NULL);

        return vhdx_get_guid (data + VHDX_HEADER1_OFFSET + VHDX_HEADER_OFF_DATA_WRITE_GUID);
}

guint64
fuzz_parent_virtual_size (void)
{
        return PARENT_VIRTUAL_SIZE;
}

guint32
fuzz_parent_block_size (void)
{
        return PARENT_BLOCK_SIZE;
}

VhdxIo *
fuzz_open_func (const char *path, gboolean writable, gpointer user_data, GError **error)
{
        const char *slash = strrchr (path, '/');
        const char *name = slash != NULL ? slash + 1 : path;

        if (strcmp (name, FUZZ_PARENT_NAME) == 0)
                return vhdx_io_new_memory (fuzz_parent_bytes ());
        if (strcmp (name, FUZZ_CHILD_NAME) == 0 && user_data != NULL)
                return fuzz_image_new_io (user_data, FALSE, 1);
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s: no such file", path);
        return NULL;
}

VhdxFile *
fuzz_open_image (FuzzImage *image, gboolean read_write, GError **error)
{
        VhdxOpenOptions options = {
                .path = FUZZ_CHILD_PATH,
                .open_func = fuzz_open_func,
                .open_data = image,
        };

        return vhdx_file_open_full (fuzz_image_new_io (image, read_write, 1),
                                    read_write ? VHDX_OPEN_FLAGS_READ_WRITE : VHDX_OPEN_FLAGS_NONE,
                                    &options, error);
}

/* The dirty-log template */
#define LOG_TEMPLATE_VIRTUAL_SIZE (4 * VHDX_MiB)

static const char *const log_guid_text = "5f3a9c1e-2b47-4d8a-9e61-0c7b4f2d8a13";

VhdxGuid
fuzz_log_guid (void)
{
        return vhdx_gen_guid_from_text (log_guid_text);
}

typedef struct {
        GBytes *bytes;
        guint64 log_offset;
        guint32 log_length;
} LogTemplate;

static gpointer
build_log_template (gpointer data)
{
        static const guint64 headers[] = { VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET };
        g_autoptr (VhdxGen) gen = NULL;
        LogTemplate *t = g_new0 (LogTemplate, 1);
        VhdxGenParams params;
        VhdxGenLayout layout;
        VhdxGuid guid = fuzz_log_guid ();
        GByteArray *array;

        vhdx_gen_params_init (&params);
        params.disk_type = VHDX_DISK_TYPE_DYNAMIC;
        params.virtual_size = LOG_TEMPLATE_VIRTUAL_SIZE;
        params.block_size = VHDX_MiB;
        params.seed = 11;
        gen = vhdx_gen_new (&params);
        /* Blocks 0 and 1 allocated, with little in them to keep seeds small. */
        vhdx_gen_fill_pattern (gen, 0, 4096, 3);
        vhdx_gen_fill_pattern (gen, VHDX_MiB + 8192, 4096, 4);
        vhdx_gen_get_layout (gen, &layout);
        array = vhdx_gen_build_array (gen);
        for (guint i = 0; i < G_N_ELEMENTS (headers); i++) {
                memcpy (array->data + headers[i] + VHDX_HEADER_OFF_LOG_GUID, guid.bytes, 16);
                vhdx_gen_update_header_checksum (array->data + headers[i]);
        }
        t->bytes = g_byte_array_free_to_bytes (array);
        t->log_offset = layout.log_offset;
        t->log_length = layout.log_length;
        return t;
}

static const LogTemplate *
log_template (void)
{
        static GOnce once = G_ONCE_INIT;

        return g_once (&once, build_log_template, NULL);
}

GBytes *
fuzz_log_template (void)
{
        return log_template ()->bytes;
}

guint64
fuzz_log_template_log_offset (void)
{
        return log_template ()->log_offset;
}

guint32
fuzz_log_template_log_length (void)
{
        return log_template ()->log_length;
}

guint64
fuzz_log_template_virtual_size (void)
{
        return LOG_TEMPLATE_VIRTUAL_SIZE;
}

void
fuzz_image_fix_log_checksums (FuzzImage *image, guint64 log_offset, guint32 log_length)
{
        fix_log_checksums (image, log_offset, log_length);
}

void
fuzz_note (const char *what, const GError *error)
{
        static int verbose = -1;

        if (verbose < 0)
                verbose = g_getenv ("FUZZ_VERBOSE") != NULL;
        if (verbose)
                g_printerr ("  %s: %s\n", what, error != NULL ? error->message : "ok");
}

void
fuzz_init (void)
{
        g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL);
}
