/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the fuzz targets share: a sparse in-memory image, the compact input
 * encoding that describes one, and the fixed parent and dirty-log template
 * that make-seeds and the targets must agree on.
 *
 * A VHDX file is at least about 4 MiB with its structures 1 MiB apart, far too
 * big for a fuzzer to mutate as a whole.  An input is therefore a sparse
 * image: a flags byte, the file size, and records of bytes at file offsets
 * over a background of zeros.  An input that starts with "vhdxfile" is taken
 * as a whole file instead, so real images and crashers found elsewhere can be
 * replayed as they are.
 *
 *   u8   flags       FUZZ_FLAG_*
 *   u32  file size   little-endian, at most FUZZ_MAX_FILE_SIZE
 *   records:
 *     u32 offset     little-endian; 0xFFFFFFFF ends the records, and the
 *                    rest of the input is left to the target (the tail)
 *     u16 length     little-endian
 *     bytes          clipped to the file
 */
#pragma once

#include "vhdx-format.h"
#include "vhdx-io.h"
#include "vhdx-map.h"
#include "vhdx-reader.h"

G_BEGIN_DECLS

/* Recompute the CRC-32C of the headers, region tables and log entries after
 * decoding, so that mutations reach the checks behind the checksums. */
#define FUZZ_FLAG_FIX_CHECKSUMS (1u << 0)
/* Targets that can open for writing do so (replaying the log onto the image). */
#define FUZZ_FLAG_READ_WRITE (1u << 1)

#define FUZZ_HEADER_SIZE        5
#define FUZZ_RECORD_HEADER_SIZE 6
#define FUZZ_RECORD_END         G_MAXUINT32
/* Bounds the work of one input: every BAT entry of an image this size is
 * visited in well under a second. */
#define FUZZ_MAX_FILE_SIZE (32 * VHDX_MiB)
/* An image opened for writing may grow to this much, then writes fail. */
#define FUZZ_MAX_WRITABLE_SIZE (64 * VHDX_MiB)

/* Where a differencing input is opened from, and the name of its parent. */
#define FUZZ_CHILD_PATH  "/fuzz/child.vhdx"
#define FUZZ_CHILD_NAME  "child.vhdx"
#define FUZZ_PARENT_NAME "parent.vhdx"

typedef struct _FuzzImage FuzzImage;

/* An image of @size bytes: @base (may be NULL: zeros) with writes on top. */
G_GNUC_WARN_UNUSED_RESULT FuzzImage *fuzz_image_new (GBytes *base, guint64 size);
FuzzImage *fuzz_image_ref (FuzzImage *image);
void fuzz_image_unref (FuzzImage *image);
guint64 fuzz_image_get_size (FuzzImage *image);
/* Bytes past the end read as zeros. */
void fuzz_image_read (FuzzImage *image, guint64 offset, void *buf, gsize len);
/* Writes past the end grow the image. */
void fuzz_image_write (FuzzImage *image, guint64 offset, const void *buf, gsize len);
G_GNUC_WARN_UNUSED_RESULT GBytes *fuzz_image_to_bytes (FuzzImage *image);
/* Recompute the checksums of both headers, both region tables, and every
 * entry of the log that either header describes. */
void fuzz_image_fix_checksums (FuzzImage *image);

/*
 * A VhdxIo over @image (a new reference).  A writable io accepts pwrite up to
 * FUZZ_MAX_WRITABLE_SIZE.  A non-zero @identity is reported by identify(),
 * so that a chain that loops back to the same image is recognised.
 */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *fuzz_image_new_io (FuzzImage *image,
                                                     gboolean writable,
                                                     guint64 identity);

/* Decode an input (see above); NULL when it is too short to mean anything. */
G_GNUC_WARN_UNUSED_RESULT FuzzImage *fuzz_image_decode (const guint8 *data,
                                                        gsize size,
                                                        guint8 *flags,
                                                        const guint8 **tail,
                                                        gsize *tail_len);
/* Encode @file with @flags as an input, records only where bytes are not zero;
 * @tail (may be NULL) follows the end marker. */
void fuzz_image_encode (GBytes *file,
                        guint8 flags,
                        const guint8 *tail,
                        gsize tail_len,
                        GByteArray *out);

/* The fixed parent of differencing inputs: a dynamic image, built once. */
GBytes *fuzz_parent_bytes (void);
/* Its DataWriteGuid, which a child's parent_linkage must name. */
VhdxGuid fuzz_parent_data_write_guid (void);
guint64 fuzz_parent_virtual_size (void);
guint32 fuzz_parent_block_size (void);

/*
 * A VhdxOpenFunc: FUZZ_PARENT_NAME opens the fixed parent, FUZZ_CHILD_NAME the
 * image being opened (@user_data, a FuzzImage) again, so that a chain that
 * loops is recognised; any other name is G_IO_ERROR_NOT_FOUND.
 */
VhdxIo *fuzz_open_func (const char *path, gboolean writable, gpointer user_data, GError **error);

/* Open @image read-only (or read-write) as FUZZ_CHILD_PATH with fuzz_open_func. */
G_GNUC_WARN_UNUSED_RESULT VhdxFile *fuzz_open_image (FuzzImage *image,
                                                     gboolean read_write,
                                                     GError **error);

/* The dirty-log template of fuzz-log: a dynamic image whose headers carry
 * FUZZ_LOG_GUID and whose log region the input fills. */
#define FUZZ_LOG_INPUT_HEADER 5 /* u8 flags, u32 rotation */
GBytes *fuzz_log_template (void);
VhdxGuid fuzz_log_guid (void);
guint64 fuzz_log_template_log_offset (void);
guint32 fuzz_log_template_log_length (void);
guint64 fuzz_log_template_virtual_size (void);
/* Recompute the checksum of every entry in a log region (see fuzz_image_fix_checksums). */
void fuzz_image_fix_log_checksums (FuzzImage *image, guint64 log_offset, guint32 log_length);

/* GLib warnings and criticals abort, so that the fuzzer reports them. */
void fuzz_init (void);
/* Print @error when FUZZ_VERBOSE is set, to see what an input runs into. */
void fuzz_note (const char *what, const GError *error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (FuzzImage, fuzz_image_unref)

G_END_DECLS
