/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VhdxIo: the only way the engine reaches bytes.  A small vtable with a file
 * descriptor backend and a memory backend; the engine never opens files.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _VhdxIo VhdxIo;

typedef struct {
        /* Read up to @count bytes at @offset; *@n_read < @count only at end of file. */
        gboolean (*pread) (VhdxIo *io,
                           void *buf,
                           gsize count,
                           guint64 offset,
                           gsize *n_read,
                           GError **error);
        gboolean (*get_size) (VhdxIo *io, guint64 *size, GError **error);
        /* Reserved for writing; NULL in read-only backends. */
        gboolean (
                *pwrite) (VhdxIo *io, const void *buf, gsize count, guint64 offset, GError **error);
        gboolean (*flush) (VhdxIo *io, GError **error);
        void (*free) (VhdxIo *io);
        /* Optional: the identity of the underlying file (device and inode), so
         * that a parent chain can recognise a loop. */
        gboolean (*identify) (VhdxIo *io, guint64 *device, guint64 *inode);
        /* Optional: the first offset at or after @offset where the file may
         * hold something other than zeros, as lseek (SEEK_DATA) finds it.
         * Every byte from @offset up to the result lies inside the file and
         * reads as zero.  Returns @offset when the backend cannot tell. */
        guint64 (*next_data) (VhdxIo *io, guint64 offset);
} VhdxIoVTable;

struct _VhdxIo {
        const VhdxIoVTable *vtable;
};

/* The descriptor is not closed by vhdx_io_free() unless @close_fd is TRUE.
 * Reads use pread(); finding data with SEEK_DATA moves the file position. */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_io_new_fd (int fd, gboolean close_fd);
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_io_new_memory (GBytes *bytes);
/* Open @path read-only (O_RDONLY) with the file descriptor backend. */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_io_open_file (const char *path, GError **error);
void vhdx_io_free (VhdxIo *io);

G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_io_get_size (VhdxIo *io, guint64 *size, GError **error);

/*
 * Read exactly @count bytes at @offset.  A read that would cross the end of
 * the file fails with VHDX_ERROR_TRUNCATED naming @structure.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_io_read_exact (VhdxIo *io,
                                                       void *buf,
                                                       gsize count,
                                                       guint64 offset,
                                                       const char *structure,
                                                       GError **error);

/* FALSE when the backend cannot tell. */
gboolean vhdx_io_identify (VhdxIo *io, guint64 *device, guint64 *inode);

/* The backend's next_data(), or @offset when it has none: every byte in
 * [@offset, result) reads as zero. */
guint64 vhdx_io_next_data (VhdxIo *io, guint64 offset);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxIo, vhdx_io_free)

G_END_DECLS
