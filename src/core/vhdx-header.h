/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The file identifier and the two headers of the header section. */
#pragma once

#include "vhdx-format.h"
#include "vhdx-io.h"

G_BEGIN_DECLS

typedef struct {
        guint64 sequence;
        VhdxGuid file_write_guid;
        VhdxGuid data_write_guid;
        VhdxGuid log_guid;
        guint16 log_version;
        guint16 version;
        guint32 log_length;
        guint64 log_offset;
} VhdxHeader;

/* The bytes at the start of a file that tell whether it is a VHDX file. */
#define VHDX_PROBE_SIZE 8

/* Whether a file whose first @len bytes are @start is a VHDX file by its
 * file identifier's signature, as the tools tell VHDX from raw images.  A
 * file too short to hold the signature is not one. */
gboolean vhdx_probe_bytes (const void *start, gsize len);

/* vhdx_probe_bytes() of the file behind @io; fails only on I/O errors. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_probe (VhdxIo *io, gboolean *is_vhdx, GError **error);

/* Parse the file identifier from the first @len bytes of the file; returns the
 * creator text (may be empty) in @creator. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_identifier_parse (const guint8 *buf,
                                                               gsize len,
                                                               char **creator,
                                                               GError **error);

/* Parse one 4 KiB header read from @file_offset: signature and checksum. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_header_parse (const guint8 *buf,
                                                      gsize len,
                                                      guint64 file_offset,
                                                      const char *name,
                                                      VhdxHeader *out,
                                                      GError **error);

/*
 * Read both headers and select the current one: the only valid one, or the
 * valid one with the larger sequence number; two byte-identical headers with
 * the same sequence number are accepted.  Damage to one copy next to a good
 * other copy is appended to @problems.  The current header's version and log
 * fields are checked against @file_size.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_headers_read (VhdxIo *io,
                                                      guint64 file_size,
                                                      VhdxHeader *current,
                                                      guint *index,
                                                      GPtrArray *problems,
                                                      GError **error);

/* Serialise @header into a 4 KiB buffer with its checksum. */
void vhdx_header_serialize (const VhdxHeader *header, guint8 *buf);

/*
 * The header update protocol of the specification: write @header with the
 * sequence number of @current + 1 over the non-current copy, flush, then with
 * + 2 over the other copy, flush.  @current_index (1 or 2) is the copy that
 * was current; on success @header's sequence number is the new one.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_headers_write (VhdxIo *io,
                                                       VhdxHeader *header,
                                                       guint current_index,
                                                       GError **error);

G_END_DECLS
