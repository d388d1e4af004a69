/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The writer's steps that the operations changing an image's structure
 * (resize, and the other management operations) are made of: new
 * identifiers in the headers, file space, BAT entries and other metadata
 * pages through the journal, read back through its view.  The image must
 * be opened read-write, and no write may run meanwhile.
 */
#pragma once

#include "vhdx-file.h"

G_BEGIN_DECLS

/* The journal's order of a change to the file's structures (region tables,
 * metadata items, a BAT being laid out): after every BAT and sector bitmap
 * page, when a commit takes several log sequences. */
#define VHDX_WRITER_ORDER_STRUCTURE (G_MAXUINT32 + G_GUINT64_CONSTANT (3))

/* G_IO_ERROR_READ_ONLY, _CLOSED or _FAILED unless @file can be changed. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_writer_check (VhdxFile *file, GError **error);

/* New FileWriteGuid (and, for a change of what the disk reads, DataWriteGuid)
 * before the first change (MS-VHDX 2.2.2). */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_writer_begin_change (VhdxFile *file,
                                                             gboolean user_visible,
                                                             GError **error);

/* The DataWriteGuid that the first user-visible change since the image was
 * opened writes, instead of a random one: only before that change. */
void vhdx_writer_set_data_write_guid (VhdxFile *file, const VhdxGuid *guid);

/* Whether a user-visible change since the image was opened already gave it
 * a new DataWriteGuid. */
gboolean vhdx_writer_data_write_guid_changed (VhdxFile *file);

/* Read the file as it is with the queued changes made. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_writer_read (VhdxFile *file,
                                                     guint64 offset,
                                                     void *buf,
                                                     gsize count,
                                                     const char *structure,
                                                     GError **error);

/* Queue the 4 KiB page at @offset, or zeros over whole pages, for the next
 * commit, at @order (vhdx_journal_set_page()). */
void vhdx_writer_queue_page (VhdxFile *file, guint64 offset, const guint8 *page, guint64 order);
void vhdx_writer_queue_zeros (VhdxFile *file, guint64 offset, guint64 length, guint64 order);

/* Queue @count bytes at file offset @offset (a metadata item, a table
 * entry), which may start and end anywhere in a page: the pages they fall
 * in, as the journal's view has them, with these bytes rewritten, at
 * @order.  @structure names what is read, for errors. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_writer_queue_bytes (VhdxFile *file,
                                                            guint64 offset,
                                                            const guint8 *bytes,
                                                            gsize count,
                                                            guint64 order,
                                                            const char *structure,
                                                            GError **error);

/* Set BAT entry @index of the opened BAT and queue its page. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_writer_set_bat_entry (VhdxFile *file,
                                                              guint64 index,
                                                              guint64 entry,
                                                              GError **error);

/* @size bytes (a 1 MiB multiple) of file space that reads as zeros. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_writer_take_space (VhdxFile *file,
                                                           guint64 size,
                                                           guint64 *offset,
                                                           GError **error);

/* [@start, @end) becomes part of a structure: no block is given space in
 * it, and the file is extended over it. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_writer_reserve (VhdxFile *file,
                                                        guint64 start,
                                                        guint64 end,
                                                        GError **error);

/* Forget the space freed by the changes of this open: an operation that
 * finds the free space of the whole file itself (compaction) fills it.
 * New blocks go past the end of the file until more is freed. */
void vhdx_writer_forget_free_space (VhdxFile *file);

/*
 * Once a commit left nothing at or past @end (a 1 MiB multiple past every
 * structure and block): a log entry promising a file of @end bytes
 * (FlushedFileOffset and LastFileOffset, MS-VHDX 2.3.1.1), then the file
 * cut there, durably; @truncated says so.  When the file cannot be made
 * shorter (a block device), the space past @end becomes free space
 * instead, which may hold stale bytes.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_writer_shrink_file (VhdxFile *file,
                                                            guint64 end,
                                                            gboolean *truncated,
                                                            GError **error);

/* A change failed half made: every later write, flush and close fails
 * until the image is opened again, which replays its log. */
void vhdx_writer_fail (VhdxFile *file);

G_END_DECLS
