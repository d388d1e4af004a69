/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VhdxIo: the only way the engine reaches bytes.  A small vtable with a file
 * descriptor backend and a memory backend; the engine never opens files.
 */
#pragma once

#include <glib.h>
#include <sys/stat.h>

G_BEGIN_DECLS

typedef struct _VhdxIo VhdxIo;

/* How an image's file is locked against other processes. */
typedef enum {
        /* No lock; only tell whether another process writes the file. */
        VHDX_LOCK_TEST,
        /* A reader's: refuses a file being written, keeps it from being written. */
        VHDX_LOCK_READER,
        /* A writer's: refuses a file in use, keeps it from being used. */
        VHDX_LOCK_WRITER,
} VhdxLockMode;

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
        /* Optional, writable backends: make [@offset, @offset + @length)
         * read as zeros cheaply where the backend can: as a hole when
         * @punch, else keeping the space allocated.  The size of the file
         * does not change.  NULL: zeros are written. */
        gboolean (*zero_range) (VhdxIo *io,
                                guint64 offset,
                                guint64 length,
                                gboolean punch,
                                GError **error);
        /* Optional: lock the file against other processes
         * (vhdx_lock_image_fd()) as @mode says. */
        gboolean (*lock) (VhdxIo *io, VhdxLockMode mode, gboolean *written, GError **error);
        /* Optional, writable backends: make the file @size bytes long;
         * G_IO_ERROR_NOT_SUPPORTED where its size is fixed (a block device). */
        gboolean (*truncate) (VhdxIo *io, guint64 size, GError **error);
        /* Optional, writable backends: start writing [@offset, @offset +
         * @length) back to the disk without waiting for it (a hint: the
         * next flush waits for less). */
        void (*start_writeback) (VhdxIo *io, guint64 offset, guint64 length);
} VhdxIoVTable;

struct _VhdxIo {
        const VhdxIoVTable *vtable;
};

/* The descriptor is not closed by vhdx_io_free() unless @close_fd is TRUE.
 * Reads use pread(); finding data with SEEK_DATA moves the file position. */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_io_new_fd (int fd, gboolean close_fd);
/* vhdx_io_new_fd() of a descriptor that stays open (it is not closed by
 * vhdx_io_free()) and whose owner holds its locks (vhdx_lock_image_fd())
 * across images opened and closed on it, so that they are never let go
 * in between: the backend's lock() takes none, it only tells whether
 * another process writes the file. */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_io_new_fd_owner_locked (int fd);
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_io_new_memory (GBytes *bytes);
/*
 * Open @path as the file of an image, read-only or with @writable for reading
 * and writing: it must be a regular file or a block device.  Anything else is
 * refused at once (G_IO_ERROR_IS_DIRECTORY, G_IO_ERROR_NOT_REGULAR_FILE), a
 * FIFO included, which is opened without waiting for a writer.  Every file
 * opened on behalf of an image is opened this way.  The message does not
 * name @path: callers prefix it.  Returns the descriptor (close-on-exec),
 * and its status in @st when not NULL.
 */
int vhdx_open_image_fd (const char *path, gboolean writable, struct stat *st, GError **error);
/*
 * Lock the image open as @fd against other processes as QEMU does, so that
 * each refuses what the other holds: a reader refuses a file being
 * written, a writer any file in use.  G_IO_ERROR_BUSY on a conflict.  The
 * locks go with the descriptor (OFD locks; flock() where those are
 * missing): closing it, or the process dying, releases them.
 * VHDX_LOCK_TEST takes none and sets @written when another process writes.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_lock_image_fd (int fd,
                                                       VhdxLockMode mode,
                                                       gboolean *written,
                                                       GError **error);

/* The backend's lock, or nothing (TRUE, and not @written) when it has none.
 * @written (may be NULL) tells, for VHDX_LOCK_TEST, whether another process
 * writes the file. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_io_lock (VhdxIo *io,
                                                 VhdxLockMode mode,
                                                 gboolean *written,
                                                 GError **error);

/* vhdx_open_image_fd() with the file descriptor backend. */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_io_open_path (const char *path,
                                                     gboolean writable,
                                                     GError **error);

/* A G_IO_ERROR for @saved_errno whose message is its description. */
void vhdx_set_error_from_errno (GError **error, int saved_errno);
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

/* TRUE when @io can be written (pwrite and flush). */
gboolean vhdx_io_is_writable (VhdxIo *io);

/* Write all of @buf at @offset; VHDX_ERROR_NOT_SUPPORTED for a read-only backend. */
G_GNUC_WARN_UNUSED_RESULT gboolean
vhdx_io_write (VhdxIo *io, const void *buf, gsize count, guint64 offset, GError **error);

/* Make everything written so far durable (fdatasync); nothing to do for a read-only backend. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_io_flush (VhdxIo *io, GError **error);

/* Write zeros over [@offset, @offset + @length). */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_io_write_zeros (VhdxIo *io,
                                                        guint64 offset,
                                                        guint64 length,
                                                        GError **error);

/* Make [@offset, @offset + @length) read as zeros: the backend's zero_range
 * (a hole when @punch, else keeping the space allocated), or written zeros.
 * It must lie inside the file. */
G_GNUC_WARN_UNUSED_RESULT gboolean
vhdx_io_zero_range (VhdxIo *io, guint64 offset, guint64 length, gboolean punch, GError **error);

/* Make the file at least @size bytes long (the new bytes read as zeros). */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_io_extend (VhdxIo *io, guint64 size, GError **error);

/* Make the file @size bytes long (shorter: what lay past @size is gone);
 * G_IO_ERROR_NOT_SUPPORTED when the backend cannot. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_io_truncate (VhdxIo *io, guint64 size, GError **error);

/* TRUE when vhdx_io_truncate() can change the size of the file: it is
 * tried with the size the file has. */
gboolean vhdx_io_can_truncate (VhdxIo *io);

/* The backend's start_writeback(), or nothing; a @length of 0 reaches the end
 * of the file. */
void vhdx_io_start_writeback (VhdxIo *io, guint64 offset, guint64 length);

/* FALSE when the backend cannot tell. */
gboolean vhdx_io_identify (VhdxIo *io, guint64 *device, guint64 *inode);

/* The backend's next_data(), or @offset when it has none: every byte in
 * [@offset, result) reads as zero. */
guint64 vhdx_io_next_data (VhdxIo *io, guint64 offset);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxIo, vhdx_io_free)

G_END_DECLS
