/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxIo backends (file descriptor, memory), and opening the files of images. */
#include "vhdx-io.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx-format.h"
#include "vhdx-private.h"

/* The file descriptor backend.  Only pread()/pwrite() are used, never the
 * file position, so one descriptor serves many threads at once. */
typedef struct {
        VhdxIo parent;
        int fd;
        gboolean close_fd;
        gboolean owner_locks; /* the descriptor's owner holds its locks */
} VhdxIoFd;

static void
set_errno_error (GError **error, int saved_errno, const char *what)
{
        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "%s: %s", what,
                     g_strerror (saved_errno));
}

static gboolean
fd_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        VhdxIoFd *self = (VhdxIoFd *) io;
        guint8 *p = buf;
        gsize done = 0;

        while (done < count) {
                ssize_t n;

                if (offset + done > (guint64) G_MAXINT64) {
                        break;
                }
                n = pread (self->fd, p + done, MIN (count - done, (gsize) G_MAXSSIZE),
                           (off_t) (offset + done));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        set_errno_error (error, errno, _ ("Could not read the image"));
                        return FALSE;
                }
                if (n == 0)
                        break;
                done += (gsize) n;
        }
        *n_read = done;
        return TRUE;
}

static gboolean
fd_pwrite (VhdxIo *io, const void *buf, gsize count, guint64 offset, GError **error)
{
        VhdxIoFd *self = (VhdxIoFd *) io;
        const guint8 *p = buf;
        gsize done = 0;

        while (done < count) {
                ssize_t n = pwrite (self->fd, p + done, count - done, (off_t) (offset + done));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        set_errno_error (error, errno, _ ("Could not write the image"));
                        return FALSE;
                }
                done += (gsize) n;
        }
        return TRUE;
}

static gboolean
fd_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        VhdxIoFd *self = (VhdxIoFd *) io;
        struct stat st;

        if (fstat (self->fd, &st) < 0) {
                set_errno_error (error, errno, _ ("Could not get the size of the image"));
                return FALSE;
        }
        if (S_ISBLK (st.st_mode)) {
                off_t end = lseek (self->fd, 0, SEEK_END);
                if (end < 0) {
                        set_errno_error (error, errno, _ ("Could not get the size of the image"));
                        return FALSE;
                }
                *size = (guint64) end;
                return TRUE;
        }
        *size = (guint64) st.st_size;
        return TRUE;
}

static gboolean
fd_flush (VhdxIo *io, GError **error)
{
        VhdxIoFd *self = (VhdxIoFd *) io;

        if (fdatasync (self->fd) < 0) {
                set_errno_error (error, errno, _ ("Could not flush the image"));
                return FALSE;
        }
        return TRUE;
}

static void
fd_free (VhdxIo *io)
{
        VhdxIoFd *self = (VhdxIoFd *) io;

        if (self->close_fd)
                close (self->fd);
        g_free (self);
}

static gboolean
fd_identify (VhdxIo *io, guint64 *device, guint64 *inode)
{
        VhdxIoFd *self = (VhdxIoFd *) io;
        struct stat st;

        if (fstat (self->fd, &st) < 0)
                return FALSE;
        *device = (guint64) st.st_dev;
        *inode = (guint64) st.st_ino;
        return TRUE;
}

static guint64
fd_next_data (VhdxIo *io, guint64 offset)
{
        VhdxIoFd *self = (VhdxIoFd *) io;
        struct stat st;
        off_t data;

        if (offset > (guint64) G_MAXINT64)
                return offset;
        data = lseek (self->fd, (off_t) offset, SEEK_DATA);
        if (data >= 0)
                return MAX ((guint64) data, offset);
        /* ENXIO: only a hole is left before the end of the file.  Any other
         * error (no SEEK_DATA here): assume data. */
        if (errno == ENXIO && fstat (self->fd, &st) == 0 && S_ISREG (st.st_mode) &&
            (guint64) st.st_size > offset)
                return (guint64) st.st_size;
        return offset;
}

/* A hole where the file system can punch one (reading as zeros, taking no
 * space), or zeroed space that stays allocated; else written zeros. */
static gboolean
fd_zero_range (VhdxIo *io, guint64 offset, guint64 length, gboolean punch, GError **error)
{
        VhdxIoFd *self = (VhdxIoFd *) io;
        int mode = (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE;

        if (fallocate (self->fd, mode, (off_t) offset, (off_t) length) == 0)
                return TRUE;
        return vhdx_io_write_zeros (io, offset, length, error);
}

static gboolean
fd_lock (VhdxIo *io, VhdxLockMode mode, gboolean *written, GError **error)
{
        VhdxIoFd *self = (VhdxIoFd *) io;

        /* The owner's locks stay as they are; telling whether another
         * process writes takes none. */
        return vhdx_lock_image_fd (self->fd, self->owner_locks ? VHDX_LOCK_TEST : mode, written,
                                   error);
}

/* Regular files only: a block device keeps its size. */
static gboolean
fd_truncate (VhdxIo *io, guint64 size, GError **error)
{
        VhdxIoFd *self = (VhdxIoFd *) io;
        struct stat st;

        if (fstat (self->fd, &st) < 0) {
                set_errno_error (error, errno, _ ("Could not get the size of the image"));
                return FALSE;
        }
        if (!S_ISREG (st.st_mode)) {
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                     _ ("Only a regular file can be made shorter"));
                return FALSE;
        }
        if (size > G_MAXINT64 || ftruncate (self->fd, (off_t) size) < 0) {
                set_errno_error (error, size > G_MAXINT64 ? EFBIG : errno,
                                 _ ("Could not change the size of the image"));
                return FALSE;
        }
        return TRUE;
}

/* The data written so far, on its way to the disk while the writer goes on. */
static void
fd_start_writeback (VhdxIo *io, guint64 offset, guint64 length)
{
        VhdxIoFd *self = (VhdxIoFd *) io;

        if (offset <= G_MAXINT64 && length <= G_MAXINT64 - offset)
                (void) sync_file_range (self->fd, (off_t) offset, (off_t) length,
                                        SYNC_FILE_RANGE_WRITE);
}

static const VhdxIoVTable fd_vtable = {
        .pread = fd_pread,
        .get_size = fd_get_size,
        .pwrite = fd_pwrite,
        .flush = fd_flush,
        .free = fd_free,
        .identify = fd_identify,
        .next_data = fd_next_data,
        .zero_range = fd_zero_range,
        .lock = fd_lock,
        .truncate = fd_truncate,
        .start_writeback = fd_start_writeback,
};

void
vhdx_set_error_from_errno (GError **error, int saved_errno)
{
        g_set_error_literal (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                             g_strerror (saved_errno));
}

int
vhdx_open_image_fd (const char *path, gboolean writable, struct stat *st, GError **error)
{
        struct stat local_st;
        int fd;

        g_return_val_if_fail (path != NULL, -1);

        if (st == NULL)
                st = &local_st;
        /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
        fd = open (path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) {
                vhdx_set_error_from_errno (error, errno);
                return -1;
        }
        if (fstat (fd, st) < 0) {
                vhdx_set_error_from_errno (error, errno);
                close (fd);
                return -1;
        }
        if (S_ISDIR (st->st_mode)) {
                close (fd);
                vhdx_set_error_from_errno (error, EISDIR);
                return -1;
        }
        if (!S_ISREG (st->st_mode) && !S_ISBLK (st->st_mode)) {
                close (fd);
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE,
                                     _ ("Not a regular file or a block device"));
                return -1;
        }
        /* Reads of regular files and block devices never wait on O_NONBLOCK,
         * but the descriptor is shared by code that expects blocking I/O. */
        if (fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) & ~O_NONBLOCK) < 0) {
                vhdx_set_error_from_errno (error, errno);
                close (fd);
                return -1;
        }
        return fd;
}

/*
 * The bytes QEMU locks in an image it uses (block/file-posix.c): 100 + n for
 * each permission n it uses, 200 + n for each it does not share with
 * others, as OFD read locks; a conflict is another open file holding a
 * lock on a byte this one needs to be free.  Permissions: 0 consistent
 * read, 1 write, 3 resize.  A reader uses 0 and shares neither writing nor
 * resizing; a writer uses 0, 1 and 3 and shares neither.
 */
#define LOCK_USE_BASE     100
#define LOCK_UNSHARE_BASE 200
#define PERM_READ         0
#define PERM_WRITE        1
#define PERM_RESIZE       3

static int
lock_byte (int fd, int byte, short type)
{
        struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

        return fcntl (fd, F_OFD_SETLK, &fl);
}

/* 1 when another open file holds a lock on @byte, 0 when none, -1 on error. */
static int
byte_is_locked (int fd, int byte)
{
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

        if (fcntl (fd, F_OFD_GETLK, &fl) < 0)
                return -1;
        return fl.l_type != F_UNLCK;
}

static gboolean
set_busy_error (GError **error, gboolean writer)
{
        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_BUSY,
                             writer ? _ ("Another process has the image open; it cannot be "
                                         "written while it is in use")
                                    : _ ("Another process is writing the image; sharing it "
                                         "(force-share) reads it anyway, as it is at the moment"));
        return FALSE;
}

gboolean
vhdx_lock_image_fd (int fd, VhdxLockMode mode, gboolean *written, GError **error)
{
        static const int reader_use[] = { PERM_READ };
        static const int writer_use[] = { PERM_READ, PERM_WRITE, PERM_RESIZE };
        static const int unshared[] = { PERM_WRITE, PERM_RESIZE };
        gboolean writer = mode == VHDX_LOCK_WRITER;
        const int *use = writer ? writer_use : reader_use;
        guint n_use = writer ? G_N_ELEMENTS (writer_use) : G_N_ELEMENTS (reader_use);
        int locked;

        if (written != NULL)
                *written = FALSE;
        if (mode == VHDX_LOCK_TEST) {
                locked = byte_is_locked (fd, LOCK_USE_BASE + PERM_WRITE);
                if (locked >= 0) {
                        if (written != NULL)
                                *written = locked;
                        return TRUE;
                }
                /* Without OFD locks, nothing to tell. */
                return TRUE;
        }
        /* A writer that becomes a reader gives the writing up. */
        if (!writer && (lock_byte (fd, LOCK_USE_BASE + PERM_WRITE, F_UNLCK) < 0 ||
                        lock_byte (fd, LOCK_USE_BASE + PERM_RESIZE, F_UNLCK) < 0))
                goto no_ofd;
        for (guint i = 0; i < n_use; i++) {
                if (lock_byte (fd, LOCK_USE_BASE + use[i], F_RDLCK) < 0)
                        goto no_ofd;
        }
        for (guint i = 0; i < G_N_ELEMENTS (unshared); i++) {
                if (lock_byte (fd, LOCK_UNSHARE_BASE + unshared[i], F_RDLCK) < 0)
                        goto no_ofd;
        }
        /* Nobody may refuse to share what this open uses... */
        for (guint i = 0; i < n_use; i++) {
                locked = byte_is_locked (fd, LOCK_UNSHARE_BASE + use[i]);
                if (locked < 0)
                        goto no_ofd;
                if (locked)
                        return set_busy_error (error, writer);
        }
        /* ...nor use what it does not share. */
        for (guint i = 0; i < G_N_ELEMENTS (unshared); i++) {
                locked = byte_is_locked (fd, LOCK_USE_BASE + unshared[i]);
                if (locked < 0)
                        goto no_ofd;
                if (locked)
                        return set_busy_error (error, writer);
        }
        return TRUE;

no_ofd:
        if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
                vhdx_set_error_from_errno (error, errno);
                return FALSE;
        }
        /* Without OFD locks (old kernels, some network file systems): the
         * whole file, one writer or any readers. */
        /* (flock() turns a writer's lock into a reader's in place.) */
        if (flock (fd, (writer ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
                return TRUE;
        if (errno == EWOULDBLOCK)
                return set_busy_error (error, writer);
        /* No locks at all here: nothing to take. */
        if (errno == EINVAL || errno == ENOLCK || errno == EOPNOTSUPP)
                return TRUE;
        vhdx_set_error_from_errno (error, errno);
        return FALSE;
}

gboolean
vhdx_io_lock (VhdxIo *io, VhdxLockMode mode, gboolean *written, GError **error)
{
        if (written != NULL)
                *written = FALSE;
        return io->vtable->lock == NULL || io->vtable->lock (io, mode, written, error);
}

VhdxIo *
vhdx_io_open_path (const char *path, gboolean writable, GError **error)
{
        int fd = vhdx_open_image_fd (path, writable, NULL, error);

        return fd >= 0 ? vhdx_io_new_fd (fd, TRUE) : NULL;
}

VhdxIo *
vhdx_io_new_fd (int fd, gboolean close_fd)
{
        VhdxIoFd *self;

        g_return_val_if_fail (fd >= 0, NULL);

        self = g_new0 (VhdxIoFd, 1);
        self->parent.vtable = &fd_vtable;
        self->fd = fd;
        self->close_fd = close_fd;
        return &self->parent;
}

VhdxIo *
vhdx_io_new_fd_owner_locked (int fd)
{
        VhdxIoFd *self = (VhdxIoFd *) vhdx_io_new_fd (fd, FALSE);

        if (self == NULL)
                return NULL;
        self->owner_locks = TRUE;
        return &self->parent;
}

/* The memory backend: a read-only view of a GBytes, for tests and the fuzzer. */
#define MEMORY_PAGE_SIZE ((guint64) 4096)

typedef struct {
        VhdxIo parent;
        GBytes *bytes;
} VhdxIoMemory;

static gboolean
memory_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        VhdxIoMemory *self = (VhdxIoMemory *) io;
        gsize size;
        const guint8 *data = g_bytes_get_data (self->bytes, &size);

        if (offset >= size) {
                *n_read = 0;
                return TRUE;
        }
        *n_read = MIN (count, size - (gsize) offset);
        memcpy (buf, data + offset, *n_read);
        return TRUE;
}

static gboolean
memory_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        VhdxIoMemory *self = (VhdxIoMemory *) io;

        *size = g_bytes_get_size (self->bytes);
        return TRUE;
}

static void
memory_free (VhdxIo *io)
{
        VhdxIoMemory *self = (VhdxIoMemory *) io;

        g_bytes_unref (self->bytes);
        g_free (self);
}

/* Skips whole zero pages, so that the scans of the BAT take the same
 * path over a memory image as over a sparse file. */
static guint64
memory_next_data (VhdxIo *io, guint64 offset)
{
        VhdxIoMemory *self = (VhdxIoMemory *) io;
        gsize size;
        const guint8 *data = g_bytes_get_data (self->bytes, &size);
        guint64 pos = offset;

        while (pos < size) {
                guint64 end = MIN ((pos | (MEMORY_PAGE_SIZE - 1)) + 1, (guint64) size);

                for (guint64 i = pos; i < end; i++) {
                        if (data[i] != 0)
                                return pos;
                }
                pos = end;
        }
        return MAX (pos, offset);
}

static const VhdxIoVTable memory_vtable = {
        .pread = memory_pread,
        .get_size = memory_get_size,
        .free = memory_free,
        .next_data = memory_next_data,
};

VhdxIo *
vhdx_io_new_memory (GBytes *bytes)
{
        VhdxIoMemory *self;

        g_return_val_if_fail (bytes != NULL, NULL);

        self = g_new0 (VhdxIoMemory, 1);
        self->parent.vtable = &memory_vtable;
        self->bytes = g_bytes_ref (bytes);
        return &self->parent;
}

void
vhdx_io_free (VhdxIo *io)
{
        if (io != NULL)
                io->vtable->free (io);
}

gboolean
vhdx_io_identify (VhdxIo *io, guint64 *device, guint64 *inode)
{
        return io->vtable->identify != NULL && io->vtable->identify (io, device, inode);
}

guint64
vhdx_io_next_data (VhdxIo *io, guint64 offset)
{
        return io->vtable->next_data != NULL ? io->vtable->next_data (io, offset) : offset;
}

gboolean
vhdx_io_is_writable (VhdxIo *io)
{
        return io->vtable->pwrite != NULL && io->vtable->flush != NULL;
}

gboolean
vhdx_io_write (VhdxIo *io, const void *buf, gsize count, guint64 offset, GError **error)
{
        if (!vhdx_io_is_writable (io)) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("The image was not opened for writing"));
                return FALSE;
        }
        return io->vtable->pwrite (io, buf, count, offset, error);
}

gboolean
vhdx_io_flush (VhdxIo *io, GError **error)
{
        return io->vtable->flush == NULL || io->vtable->flush (io, error);
}

gboolean
vhdx_io_write_zeros (VhdxIo *io, guint64 offset, guint64 length, GError **error)
{
        g_autofree guint8 *zeros = g_malloc0 (MIN (length, VHDX_MiB));

        for (guint64 done = 0; done < length;) {
                gsize n = (gsize) MIN (length - done, VHDX_MiB);

                if (!vhdx_io_write (io, zeros, n, offset + done, error))
                        return FALSE;
                done += n;
        }
        return TRUE;
}

gboolean
vhdx_io_zero_range (VhdxIo *io, guint64 offset, guint64 length, gboolean punch, GError **error)
{
        if (io->vtable->zero_range != NULL && vhdx_io_is_writable (io))
                return io->vtable->zero_range (io, offset, length, punch, error);
        return vhdx_io_write_zeros (io, offset, length, error);
}

gboolean
vhdx_io_truncate (VhdxIo *io, guint64 size, GError **error)
{
        if (io->vtable->truncate == NULL || !vhdx_io_is_writable (io)) {
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                     _ ("The image's file cannot be made shorter"));
                return FALSE;
        }
        return io->vtable->truncate (io, size, error);
}

void
vhdx_io_start_writeback (VhdxIo *io, guint64 offset, guint64 length)
{
        if (io->vtable->start_writeback != NULL)
                io->vtable->start_writeback (io, offset, length);
}

gboolean
vhdx_io_can_truncate (VhdxIo *io)
{
        guint64 size;

        return io->vtable->truncate != NULL && vhdx_io_is_writable (io) &&
               vhdx_io_get_size (io, &size, NULL) && io->vtable->truncate (io, size, NULL);
}

gboolean
vhdx_io_extend (VhdxIo *io, guint64 size, GError **error)
{
        guint64 current;

        if (!vhdx_io_get_size (io, &current, error))
                return FALSE;
        /* One zero byte at the new end: the rest reads as zeros (a hole). */
        return current >= size || vhdx_io_write (io, "", 1, size - 1, error);
}

gboolean
vhdx_io_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        return io->vtable->get_size (io, size, error);
}

gboolean
vhdx_io_read_exact (VhdxIo *io,
                    void *buf,
                    gsize count,
                    guint64 offset,
                    const char *structure,
                    GError **error)
{
        gsize n_read = 0;

        if (!io->vtable->pread (io, buf, count, offset, &n_read, error))
                return FALSE;
        if (n_read < count) {
                vhdx_set_error (error, VHDX_ERROR_TRUNCATED, structure, offset,
                                _ ("the file ends at byte %" PRIu64
                                   " but the structure needs %zu bytes here"),
                                offset + n_read, count);
                return FALSE;
        }
        return TRUE;
}
