/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx convert: a VHDX or raw image copied to a sparse raw image or a new VHDX image. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>

#include "convert-workers.h"
#include "vhdx-cli.h"
#include "vhdx-create.h"
#include "vhdx-header.h"
#include "vhdx-map.h"

/* Sources */

/* A source for convert: a VHDX image or a raw disk image, told apart by content. */
typedef struct {
        const char *path;
        VhdxFile *vhdx; /* NULL for a raw image */
        int fd;         /* raw images */
        int image_fd;   /* a VHDX image's own file, to copy its data from, or -1 */
        guint64 size;
        struct stat st;
} Source;

static void
source_clear (Source *source)
{
        g_clear_pointer (&source->vhdx, vhdx_file_free);
        if (source->fd >= 0)
                close (source->fd);
        source->fd = -1;
        if (source->image_fd >= 0)
                close (source->image_fd);
        source->image_fd = -1;
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Source, source_clear)

static gboolean
source_open (Source *source, const char *path, const CliOpenOptions *parents, GError **error)
{
        g_autoptr (VhdxIo) io = NULL;
        gboolean is_vhdx;
        int fd;

        source->path = path;
        source->fd = -1;
        source->image_fd = -1;
        fd = vhdx_open_image_fd (path, FALSE, &source->st, error);
        if (fd < 0)
                return FALSE;
        io = vhdx_io_new_fd (fd, TRUE);
        if (!vhdx_probe (io, &is_vhdx, error))
                return FALSE;
        if (is_vhdx) {
                struct stat opened;

                /* Kept to copy data extents straight from the file: only
                 * when it is the file the engine opened, and only while the
                 * file holds what the disk reads (no log replayed in memory
                 * over it). */
                source->image_fd = dup (fd);
                g_clear_pointer (&io, vhdx_io_free);
                source->vhdx = cli_open_image (path, VHDX_OPEN_FLAGS_NONE, parents, &opened, error);
                if (source->vhdx == NULL)
                        return FALSE;
                source->size = vhdx_file_get_info (source->vhdx)->virtual_size;
                if (source->image_fd >= 0 &&
                    (opened.st_dev != source->st.st_dev || opened.st_ino != source->st.st_ino ||
                     vhdx_file_get_info (source->vhdx)->log_state != VHDX_LOG_STATE_CLEAN)) {
                        close (source->image_fd);
                        source->image_fd = -1;
                }
                return TRUE;
        }
        if (!vhdx_io_get_size (io, &source->size, error))
                return FALSE;
        source->fd = dup (fd);
        if (source->fd < 0) {
                vhdx_set_error_from_errno (error, errno);
                return FALSE;
        }
        return TRUE;
}

static gboolean
source_read (Source *source, guint64 offset, guint8 *buf, gsize count, GError **error)
{
        gsize done = 0;

        if (source->vhdx != NULL)
                return vhdx_file_read (source->vhdx, offset, buf, count, error);
        while (done < count) {
                ssize_t n = pread (source->fd, buf + done, count - done, (off_t) (offset + done));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        vhdx_set_error_from_errno (error, errno);
                        return FALSE;
                }
                if (n == 0)
                        break;
                done += (gsize) n;
        }
        /* Past the end of a raw image (rounded up to whole sectors): zeros. */
        memset (buf + done, 0, count - done);
        return TRUE;
}

/*
 * The ranges of a source that may hold data, walked forward: a VHDX image's
 * data extents, or a raw file's data segments (all of it where the file
 * system cannot tell).
 */
typedef struct {
        VhdxFile *vhdx; /* or NULL for a raw file */
        int fd;
        guint64 size;
        VhdxMapIter iter;
        gboolean have_range;
        gboolean done;
        guint64 start; /* the current range */
        guint64 end;
} DataCursor;

static void
data_cursor_init (DataCursor *cursor, VhdxFile *vhdx, int fd, guint64 size)
{
        memset (cursor, 0, sizeof *cursor);
        cursor->vhdx = vhdx;
        cursor->fd = fd;
        cursor->size = size;
        if (vhdx != NULL)
                vhdx_map_iter_init (&cursor->iter, vhdx, 0, size);
}

static void
data_cursor_clear (DataCursor *cursor)
{
        if (cursor->vhdx != NULL)
                vhdx_map_iter_clear (&cursor->iter);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (DataCursor, data_cursor_clear)

/* Move to the next range that may hold data; cursor->done at the end. */
static gboolean
data_cursor_advance (DataCursor *cursor, GError **error)
{
        guint64 from = cursor->have_range ? cursor->end : 0;

        cursor->have_range = FALSE;
        if (cursor->vhdx != NULL) {
                VhdxMapExtent extent;
                g_autoptr (GError) local_error = NULL;

                while (vhdx_map_iter_next (&cursor->iter, &extent, &local_error)) {
                        if (extent.kind == VHDX_EXTENT_DATA) {
                                cursor->start = extent.offset;
                                cursor->end = extent.offset + extent.length;
                                cursor->have_range = TRUE;
                                return TRUE;
                        }
                }
                if (local_error != NULL) {
                        g_propagate_error (error, g_steal_pointer (&local_error));
                        return FALSE;
                }
                cursor->done = TRUE;
                return TRUE;
        }
        while (from < cursor->size) {
                off_t data = lseek (cursor->fd, (off_t) from, SEEK_DATA);
                off_t hole;

                if (data < 0) {
                        if (errno == ENXIO)
                                break; /* only a hole is left */
                        /* No SEEK_DATA here: treat the rest as data. */
                        data = (off_t) from;
                        hole = (off_t) cursor->size;
                } else {
                        hole = lseek (cursor->fd, data, SEEK_HOLE);
                        if (hole < 0)
                                hole = (off_t) cursor->size;
                }
                cursor->start = (guint64) data;
                cursor->end = MIN ((guint64) hole, cursor->size);
                if (cursor->end > cursor->start) {
                        cursor->have_range = TRUE;
                        return TRUE;
                }
                from = cursor->end;
        }
        cursor->done = TRUE;
        return TRUE;
}

/* Whether [@start, @end) meets a range that may hold data; @start never goes back. */
static gboolean
data_cursor_meets (DataCursor *cursor, guint64 start, guint64 end, gboolean *meets, GError **error)
{
        while (!cursor->done && (!cursor->have_range || cursor->end <= start)) {
                if (!data_cursor_advance (cursor, error))
                        return FALSE;
        }
        *meets = !cursor->done && cursor->start < end;
        return TRUE;
}

/* Output */

static gboolean
pwrite_all (int fd, const guint8 *buf, gsize count, guint64 offset, GError **error)
{
        while (count > 0) {
                ssize_t n = pwrite (fd, buf, MIN (count, (gsize) G_MAXSSIZE), (off_t) offset);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        vhdx_set_error_from_errno (error, errno);
                        return FALSE;
                }
                if (n == 0) {
                        vhdx_set_error_from_errno (error, EIO);
                        return FALSE;
                }
                buf += n;
                count -= (gsize) n;
                offset += (guint64) n;
        }
        return TRUE;
}

static gboolean
buffer_is_zero (const guint8 *buf, gsize count)
{
        return count == 0 || (buf[0] == 0 && memcmp (buf, buf + 1, count - 1) == 0);
}

/* The failure of a conversion: which file it concerns, and what happened. */
typedef struct {
        const char *path;
        GError *error;
} Failure;

static gboolean
fail (Failure *failure, const char *path, GError *error)
{
        failure->path = path;
        failure->error = error;
        return FALSE;
}

/*
 * The raw copy.  The data of the disk is copied a chunk at a time, and a
 * chunk that reads as zeros is left a hole.  A chunk whose first bytes are
 * not zeros cannot be a hole, so it is copied without reading it into
 * memory: with copy_file_range() from where the source file holds it (a
 * VHDX image's data extents of its own file, or a raw file), which the
 * kernel copies from page cache to page cache.  Only the chunks that begin
 * with zeros, and every chunk where the kernel cannot copy between the two
 * files (EXDEV between file systems), go through the buffer.
 */

/* How much of a chunk is looked at to tell it cannot be a hole. */
#define RAW_PROBE_SIZE ((gsize) 4096)

/* How far behind the copy the write-back is waited for, with sync: enough
 * to keep the disk's queue full (32 MiB behind, a 2 GiB copy took 1.1 to
 * 1.6 times as long on a virtual disk), little enough that the dirty pages
 * stay far below the kernel's limits. */
#define RAW_WRITE_BACK_LAG (32 * (guint64) CLI_CHUNK_SIZE)

typedef struct {
        Source *source;
        ToolOutput *output;
        int fd; /* the output's */
        const char *dst;
        gboolean sync;
        /* A file's holes read as zeros; a device is zeroed by the main
         * thread where no chunk goes, and chunks are written whole. */
        gboolean holes;
        guint64 zeroed; /* the device before it is zeroed or in a chunk */
        GError *zero_error;
        gint can_copy; /* copy_file_range() works between the two files (atomic) */
        /* Held by the thread writing to the output: the kernel writes to one
         * file one call at a time, and a thread that waits for it on its
         * own spins, taking the processor another thread reads with. */
        pthread_mutex_t write_lock;
        guint64 written_back; /* the output before this offset is on the disk */
} RawCopy;

/* The file of the source that holds [@offset, ...) of @extent as it is,
 * and where: -1 when none does (a parent's data, or through a log). */
static int
source_file_range (Source *source,
                   const VhdxMapExtent *extent,
                   guint64 offset,
                   guint64 *file_offset)
{
        if (source->vhdx == NULL) {
                *file_offset = offset;
                return source->fd;
        }
        if (source->image_fd < 0 || extent->depth != 0 || extent->kind != VHDX_EXTENT_DATA)
                return -1;
        *file_offset = extent->file_offset + (offset - extent->offset);
        return source->image_fd;
}

/* Copy @n bytes from @in at @in_offset to @out at @offset in the kernel;
 * FALSE (errno 0 when the source ended early) when not all were copied. */
static gboolean
copy_range (int in, guint64 in_offset, int out, guint64 offset, gsize n, gsize *done)
{
        *done = 0;
        while (*done < n) {
                off_t from = (off_t) (in_offset + *done);
                off_t to = (off_t) (offset + *done);
                ssize_t r = copy_file_range (in, &from, out, &to, n - *done, 0);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0) {
                        if (r == 0)
                                errno = 0;
                        return FALSE;
                }
                *done += (gsize) r;
        }
        return TRUE;
}

/* With sync, from a thread that wrote [@start, @end): start writing it back now. */
static void
raw_copy_start_write_back (RawCopy *copy, guint64 start, guint64 end)
{
        if (copy->sync)
                (void) sync_file_range (copy->fd, (off_t) start, (off_t) (end - start),
                                        SYNC_FILE_RANGE_WRITE);
}

/* With sync, from the main thread once the chunks before @end were
 * submitted: wait for what was written well before, so that dirty pages
 * never pile up and the final fsync() waits for the last chunks only. */
static void
raw_copy_wait_write_back (RawCopy *copy, guint64 end)
{
        if (copy->sync && end > copy->written_back + RAW_WRITE_BACK_LAG) {
                guint64 upto = end - RAW_WRITE_BACK_LAG;

                (void) sync_file_range (copy->fd, (off_t) copy->written_back,
                                        (off_t) (upto - copy->written_back),
                                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                                SYNC_FILE_RANGE_WAIT_AFTER);
                copy->written_back = upto;
        }
}

static gboolean
raw_write (RawCopy *copy, const guint8 *buf, gsize n, guint64 offset, GError **error)
{
        gboolean ok;

        pthread_mutex_lock (&copy->write_lock);
        ok = pwrite_all (copy->fd, buf, n, offset, error);
        pthread_mutex_unlock (&copy->write_lock);
        return ok;
}

/* How fine the holes of the buffer path are: a file system's block. */
#define RAW_HOLE_SIZE ((guint64) 4096)

/* Write the blocks of @buf, @n bytes of the disk at @offset, that are not
 * all zeros, in runs; the others are left holes (zeros on a device). */
static gboolean
raw_write_runs (RawCopy *copy, const guint8 *buf, guint64 offset, gsize n, GError **error)
{
        gsize pos = 0;

        if (!copy->holes)
                return raw_write (copy, buf, n, offset, error);
        while (pos < n) {
                gsize start;
                gboolean zero = TRUE;

                /* Runs of blocks alike, aligned on the disk's own blocks. */
                for (start = pos; pos < n;) {
                        gsize block = (gsize) MIN (RAW_HOLE_SIZE - (offset + pos) % RAW_HOLE_SIZE,
                                                   (guint64) (n - pos));
                        gboolean block_zero = buffer_is_zero (buf + pos, block);

                        if (pos > start && block_zero != zero)
                                break;
                        zero = block_zero;
                        pos += block;
                }
                if (!zero && !raw_write (copy, buf + start, pos - start, offset + start, error))
                        return FALSE;
        }
        return TRUE;
}

/* One chunk, [chunk->offset, + chunk->length) of chunk->extent, on a thread. */
static gboolean
raw_copy_chunk (CliChunk *chunk, gpointer user_data, const char **path, GError **error)
{
        RawCopy *copy = user_data;
        Source *source = copy->source;
        guint64 offset = chunk->offset;
        gsize n = chunk->length;
        guint64 file_offset = 0;
        int in = !chunk->buffered && g_atomic_int_get (&copy->can_copy)
                         ? source_file_range (source, &chunk->extent, offset, &file_offset)
                         : -1;

        *path = source->path;
        if (in >= 0) {
                gsize probe = MIN (n, RAW_PROBE_SIZE);
                gsize done = 0;

                if (!source_read (source, offset, chunk->buf, probe, error))
                        return FALSE;
                if (!buffer_is_zero (chunk->buf, probe)) {
                        gboolean copied;
                        int saved_errno;

                        pthread_mutex_lock (&copy->write_lock);
                        copied = copy_range (in, file_offset, copy->fd, offset, n, &done);
                        saved_errno = errno;
                        pthread_mutex_unlock (&copy->write_lock);
                        if (copied) {
                                raw_copy_start_write_back (copy, offset, offset + n);
                                return TRUE;
                        }
                        errno = saved_errno;
                        if (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                            errno == EOPNOTSUPP || errno == EBADF || errno == EPERM) {
                                /* Not between these two files: the buffer from now on. */
                                g_atomic_int_set (&copy->can_copy, FALSE);
                        } else if (errno != 0) {
                                *path = copy->dst;
                                vhdx_set_error_from_errno (error, errno);
                                return FALSE;
                        }
                        /* The rest is read as the engine reads it (a file that
                         * ends early is its error), and cannot be a hole once
                         * some of the chunk was copied. */
                        if (done > 0) {
                                if (!source_read (source, offset + done, chunk->buf, n - done,
                                                  error))
                                        return FALSE;
                                *path = copy->dst;
                                if (!raw_write (copy, chunk->buf, n - done, offset + done, error))
                                        return FALSE;
                                raw_copy_start_write_back (copy, offset, offset + n);
                                return TRUE;
                        }
                }
        }
        if (!source_read (source, offset, chunk->buf, n, error))
                return FALSE;
        *path = copy->dst;
        if (!raw_write_runs (copy, chunk->buf, offset, n, error))
                return FALSE;
        raw_copy_start_write_back (copy, offset, offset + n);
        return TRUE;
}

/* On a device, from the main thread: zero what lies between the last chunk
 * and @offset; FALSE with copy->zero_error when that failed. */
static gboolean
raw_copy_zero_upto (RawCopy *copy, guint64 offset)
{
        return copy->holes || offset <= copy->zeroed ||
               tool_output_zero_range (copy->output, copy->zeroed, offset, &copy->zero_error);
}

/* Submit [@offset, + @length) of @extent as one chunk, or through the
 * buffer when @buffered (@extent NULL); FALSE once one failed. */
static gboolean
raw_copy_submit_chunk (RawCopy *copy,
                       CliWorkers *workers,
                       const VhdxMapExtent *extent,
                       guint64 offset,
                       guint64 length,
                       gboolean buffered,
                       ToolProgress *progress)
{
        CliChunk *chunk;

        if (!raw_copy_zero_upto (copy, offset))
                return FALSE;
        copy->zeroed = offset + length;
        chunk = cli_workers_next (workers);
        if (chunk == NULL)
                return FALSE;
        chunk->offset = offset;
        chunk->length = (gsize) length;
        chunk->extent = extent != NULL ? *extent : (VhdxMapExtent){ 0 };
        chunk->buffered = buffered;
        cli_workers_submit (workers, chunk);
        raw_copy_wait_write_back (copy, offset + length);
        tool_progress_update (progress, offset + length);
        return TRUE;
}

/* Submit the chunks of [@start, @end) of @extent; FALSE once one failed. */
static gboolean
raw_copy_extent (RawCopy *copy,
                 CliWorkers *workers,
                 const VhdxMapExtent *extent,
                 guint64 start,
                 guint64 end,
                 ToolProgress *progress)
{
        for (guint64 offset = start; offset < end; offset += CLI_CHUNK_SIZE) {
                if (!raw_copy_submit_chunk (copy, workers, extent, offset,
                                            MIN (end - offset, CLI_CHUNK_SIZE), FALSE, progress))
                        return FALSE;
        }
        return TRUE;
}

/*
 * Extents that only the buffer path can copy (a parent's data, or any once
 * the kernel cannot copy between the files) are gathered into chunks of up
 * to CLI_CHUNK_SIZE of the disk: a differencing chain's data comes in runs
 * of a few sectors, and one chunk each would spend the time handing them
 * to the threads.  So are extents of the file's own too short to be worth
 * a call of their own.  What lies between them reads as zeros and is left a
 * hole; on a device, which the main thread zeroes there faster than a
 * thread writes zeros, only extents that touch are gathered.
 */
#define RAW_COPY_MIN_SIZE ((guint64) 1024 * 1024)

typedef struct {
        guint64 start;
        guint64 end; /* start == end: none gathered */
} RawGathered;

static gboolean
raw_gathered_flush (RawCopy *copy, CliWorkers *workers, RawGathered *g, ToolProgress *progress)
{
        guint64 start = g->start;

        g->start = g->end;
        return start == g->end ||
               raw_copy_submit_chunk (copy, workers, NULL, start, g->end - start, TRUE, progress);
}

/* Gather [@start, @end) of the disk, submitting each chunk once full. */
static gboolean
raw_gather (RawCopy *copy,
            CliWorkers *workers,
            RawGathered *g,
            guint64 start,
            guint64 end,
            ToolProgress *progress)
{
        while (start < end) {
                if (g->start != g->end &&
                    (start >= g->start + CLI_CHUNK_SIZE || (!copy->holes && start > g->end)) &&
                    !raw_gathered_flush (copy, workers, g, progress))
                        return FALSE;
                if (g->start == g->end)
                        g->start = g->end = start;
                g->end = MIN (end, g->start + CLI_CHUNK_SIZE);
                start = g->end;
        }
        return TRUE;
}

/* The data extents of @source (a VHDX image's, or a raw file's data
 * segments, which its own file holds) submitted to @workers; FALSE with
 * @error when they cannot be walked, or when a chunk failed. */
static gboolean
raw_copy_submit (RawCopy *copy, CliWorkers *workers, ToolProgress *progress, GError **error)
{
        Source *source = copy->source;
        VhdxMapIter iter;
        VhdxMapExtent extent;
        RawGathered gathered = { 0 };
        GError *walk_error = NULL;
        gboolean ok = TRUE;

        if (source->vhdx == NULL) {
                g_auto (DataCursor) cursor;

                data_cursor_init (&cursor, NULL, source->fd, source->size);
                for (;;) {
                        if (!data_cursor_advance (&cursor, error))
                                return FALSE;
                        if (cursor.done)
                                return TRUE;
                        extent = (VhdxMapExtent){ .offset = cursor.start,
                                                  .length = cursor.end - cursor.start,
                                                  .kind = VHDX_EXTENT_DATA,
                                                  .present = TRUE,
                                                  .file_offset = cursor.start };
                        if (!raw_copy_extent (copy, workers, &extent, cursor.start, cursor.end,
                                              progress))
                                return FALSE;
                }
        }
        /* A VHDX source: its data extents; holes and zero blocks stay holes. */
        vhdx_map_iter_init (&iter, source->vhdx, 0, source->size);
        while (ok && vhdx_map_iter_next (&iter, &extent, &walk_error)) {
                guint64 file_offset;
                guint64 end = extent.offset + extent.length;

                if (extent.kind != VHDX_EXTENT_DATA)
                        continue;
                if (extent.length >= RAW_COPY_MIN_SIZE && g_atomic_int_get (&copy->can_copy) &&
                    source_file_range (source, &extent, extent.offset, &file_offset) >= 0)
                        ok = raw_gathered_flush (copy, workers, &gathered, progress) &&
                             raw_copy_extent (copy, workers, &extent, extent.offset, end, progress);
                else
                        ok = raw_gather (copy, workers, &gathered, extent.offset, end, progress);
        }
        vhdx_map_iter_clear (&iter);
        if (walk_error != NULL) {
                g_propagate_error (error, walk_error);
                return FALSE;
        }
        return ok && raw_gathered_flush (copy, workers, &gathered, progress);
}

/* Copy the data of @source into the raw file or device of @output, leaving holes (zeros on a
 * device) wherever the disk reads as zeros; with @sync, writing it back as it goes, for the
 * caller's fsync(). */
static gboolean
convert_to_raw (Source *source,
                ToolOutput *output,
                const char *dst,
                gboolean sync,
                ToolProgress *progress,
                Failure *failure)
{
        RawCopy copy = { .source = source,
                         .output = output,
                         .fd = output->fd,
                         .dst = dst,
                         .sync = sync,
                         .can_copy = TRUE,
                         .holes = !output->is_device };
        CliWorkers *workers;
        GError *error = NULL;
        const char *path = NULL;
        gboolean ok;

        if (!tool_output_set_size (output, source->size, &error))
                return fail (failure, dst, error);
        pthread_mutex_init (&copy.write_lock, NULL);
        workers = cli_workers_new (FALSE, raw_copy_chunk, NULL, &copy);
        /* On a device, the zeros after the last chunk while the threads finish. */
        if (raw_copy_submit (&copy, workers, progress, &error))
                raw_copy_zero_upto (&copy, source->size);
        if (error != NULL) {
                /* The walk's own failure; the threads' is a consequence, if any. */
                path = source->path;
        } else if (copy.zero_error != NULL) {
                path = dst;
                error = g_steal_pointer (&copy.zero_error);
        }
        if (error != NULL) {
                cli_workers_abandon (workers);
                ok = FALSE;
        } else {
                ok = cli_workers_finish (workers, &path, &error);
        }
        pthread_mutex_destroy (&copy.write_lock);
        return ok || fail (failure, path, error);
}

/* Runs of sectors of @buf (at virtual @offset) that differ from @base are
 * written to @creator; equal sectors are left to the parent. */
static gboolean
write_differing_sectors (VhdxCreator *creator,
                         guint64 offset,
                         const guint8 *buf,
                         const guint8 *base,
                         gsize count,
                         guint32 sector_size,
                         GError **error)
{
        gsize pos = 0;

        while (pos < count) {
                gsize start;

                while (pos < count && memcmp (buf + pos, base + pos, sector_size) == 0)
                        pos += sector_size;
                start = pos;
                while (pos < count && memcmp (buf + pos, base + pos, sector_size) != 0)
                        pos += sector_size;
                if (pos > start &&
                    !vhdx_creator_write (creator, offset + start, buf + start, pos - start, error))
                        return FALSE;
        }
        return TRUE;
}

/* Read @n bytes of the parent at @offset into @base, zeros past its end. */
static gboolean
read_parent (VhdxFile *parent, guint64 offset, guint8 *base, gsize n, GError **error)
{
        guint64 parent_size = vhdx_file_get_info (parent)->virtual_size;
        gsize from_parent =
                offset < parent_size ? (gsize) MIN ((guint64) n, parent_size - offset) : 0;

        memset (base + from_parent, 0, n - from_parent);
        return vhdx_file_read (parent, offset, base, from_parent, error);
}

/* A conversion to VHDX in progress. */
typedef struct {
        Source *source;
        VhdxFile *parent;
        VhdxCreateParams *params;
        VhdxCreator *creator;
        const char *dst;
        VhdxIo *io;
        gboolean sync;
        guint64 written_back; /* with sync: the file before it is on its way to the disk */
} ToVhdx;

/* On a thread: read the unit of @chunk and, with a parent, the parent's
 * data under it; without one, an all-zero unit is skipped. */
static gboolean
read_unit (CliChunk *chunk, gpointer user_data, const char **path, GError **error)
{
        ToVhdx *c = user_data;

        *path = c->source->path;
        if (chunk->has_data) {
                if (!source_read (c->source, chunk->offset, chunk->buf, chunk->length, error))
                        return FALSE;
        } else {
                memset (chunk->buf, 0, chunk->length);
        }
        if (c->parent == NULL) {
                chunk->skip = buffer_is_zero (chunk->buf, chunk->length);
                return TRUE;
        }
        *path = c->params->parent_absolute_path;
        if (!chunk->parent_data) {
                memset (chunk->base, 0, chunk->length);
                return TRUE;
        }
        return read_parent (c->parent, chunk->offset, chunk->base, chunk->length, error);
}

/* In the order of the disk: store the unit as it is, or the sectors that differ from the parent. */
static gboolean
write_unit (CliChunk *chunk, gpointer user_data, const char **path, GError **error)
{
        ToVhdx *c = user_data;
        guint64 size;

        *path = c->dst;
        if (c->parent != NULL ? !write_differing_sectors (c->creator, chunk->offset, chunk->buf,
                                                          chunk->base, chunk->length,
                                                          c->params->logical_sector_size, error)
                              : !vhdx_creator_write (c->creator, chunk->offset, chunk->buf,
                                                     chunk->length, error))
                return FALSE;
        /* With sync, the data goes to the disk as it is written (blocks
         * are laid out at the end of the file, in order), not all at the
         * flush before the headers. */
        if (c->sync && vhdx_io_get_size (c->io, &size, NULL) && size > c->written_back) {
                vhdx_io_start_writeback (c->io, c->written_back, size - c->written_back);
                c->written_back = size;
        }
        return TRUE;
}

/* Submit the units (at most a block, at most CLI_CHUNK_SIZE) of @c's
 * source that hold data or lie over the parent's data; FALSE with @error
 * (of the file @path) when the data cannot be walked, FALSE alone when a
 * chunk failed. */
static gboolean
submit_units (ToVhdx *c,
              CliWorkers *workers,
              guint64 unit,
              ToolProgress *progress,
              const char **path,
              GError **error)
{
        guint64 size = c->params->virtual_size;
        g_auto (DataCursor) source_data;
        g_auto (DataCursor) parent_data;

        data_cursor_init (&source_data, c->source->vhdx, c->source->fd, c->source->size);
        data_cursor_init (&parent_data, c->parent, -1,
                          c->parent != NULL ? vhdx_file_get_info (c->parent)->virtual_size : 0);
        for (guint64 offset = 0; offset < size; offset += unit) {
                gsize n = (gsize) MIN (unit, size - offset);
                gboolean has_data = FALSE;
                gboolean under_data = FALSE;
                CliChunk *chunk;

                *path = c->source->path;
                if (!data_cursor_meets (&source_data, offset, offset + n, &has_data, error))
                        return FALSE;
                /* Holes of the parent read as zeros too: only its data matters. */
                *path = c->params->parent_absolute_path;
                if (c->parent != NULL &&
                    !data_cursor_meets (&parent_data, offset, offset + n, &under_data, error))
                        return FALSE;
                if (has_data || under_data) {
                        chunk = cli_workers_next (workers);
                        if (chunk == NULL)
                                return FALSE;
                        chunk->offset = offset;
                        chunk->length = n;
                        chunk->has_data = has_data;
                        chunk->parent_data = under_data;
                        cli_workers_submit (workers, chunk);
                }
                tool_progress_update (progress, offset + n);
        }
        return TRUE;
}

/*
 * Write @source into a new VHDX image on @fd: only units (at most a block,
 * at most CLI_CHUNK_SIZE) that are not all zeros, or, for a differencing image,
 * only the sectors that differ from @parent.  Threads read the units, and
 * store them in the order of the disk.  With @sync, flushed before its
 * headers are written and after.
 */
static gboolean
convert_to_vhdx (Source *source,
                 int fd,
                 const char *dst,
                 VhdxCreateParams *params,
                 VhdxFile *parent,
                 gboolean sync,
                 ToolProgress *progress,
                 Failure *failure)
{
        g_autoptr (VhdxIo) io = vhdx_io_new_fd (fd, FALSE);
        g_autoptr (VhdxCreator) creator = NULL;
        GError *error = NULL;
        ToVhdx c = { source, parent, params, NULL, dst, io, sync, 0 };
        CliWorkers *workers;
        const char *path = NULL;
        guint64 unit;

        if (parent == NULL) {
                guint32 lss = params->logical_sector_size != 0 ? params->logical_sector_size : 512;
                params->virtual_size = (source->size + lss - 1) / lss * lss;
        } else {
                params->virtual_size = source->size;
        }
        creator = vhdx_creator_new (io, params, &error);
        if (creator == NULL)
                return fail (failure, dst, error);
        /* Units of a block (the creator resolved the default), at most CLI_CHUNK_SIZE. */
        unit = MIN ((guint64) vhdx_creator_get_params (creator)->block_size,
                    (guint64) CLI_CHUNK_SIZE);
        c.creator = creator;
        workers = cli_workers_new (parent != NULL, read_unit, write_unit, &c);
        if (!submit_units (&c, workers, unit, progress, &path, &error) && error != NULL) {
                cli_workers_abandon (workers);
                return fail (failure, path, error);
        }
        if (!cli_workers_finish (workers, &path, &error))
                return fail (failure, path, error);
        /* Without sync nothing is flushed: as for raw output, the kernel
         * writes it back when it will. */
        if (!vhdx_creator_finish_full (creator, sync, &error))
                return fail (failure, dst, error);
        return TRUE;
}

static gboolean
same_file (const char *path, const struct stat *st)
{
        struct stat other;

        if (g_stat (path, &other) != 0)
                return FALSE;
        /* Two nodes of one block device are one disk. */
        if (S_ISBLK (other.st_mode) && S_ISBLK (st->st_mode))
                return other.st_rdev == st->st_rdev;
        return other.st_dev == st->st_dev && other.st_ino == st->st_ino;
}

static gboolean
name_is_vhdx (const char *path)
{
        g_autofree char *lower = g_ascii_strdown (path, -1);

        return g_str_has_suffix (lower, ".vhdx") || g_str_has_suffix (lower, ".avhdx");
}

typedef enum {
        OUTPUT_RAW,
        OUTPUT_VHDX,
        OUTPUT_QCOW2,
} OutputFormat;

static gboolean
name_is_qcow2 (const char *path)
{
        g_autofree char *lower = g_ascii_strdown (path, -1);

        return g_str_has_suffix (lower, ".qcow2");
}

/* The output's format, from --output-format or the options and name. */
static gboolean
output_format_of (const char *output_format,
                  const CliCreateOptions *create,
                  const char *dst,
                  OutputFormat *format)
{
        gboolean vhdx_options = create->parent != NULL || create->type != NULL ||
                                create->block_size != NULL || create->logical_sector_size != NULL;

        if (output_format == NULL)
                *format = name_is_vhdx (dst) || create->parent != NULL || create->type != NULL
                                  ? OUTPUT_VHDX
                          : name_is_qcow2 (dst) ? OUTPUT_QCOW2
                                                : OUTPUT_RAW;
        else if (g_str_equal (output_format, "vhdx"))
                *format = OUTPUT_VHDX;
        else if (g_str_equal (output_format, "raw"))
                *format = OUTPUT_RAW;
        else if (g_str_equal (output_format, "qcow2"))
                *format = OUTPUT_QCOW2;
        else {
                tool_usage_error (_ ("--output-format: unknown format “%s”"), output_format);
                return FALSE;
        }
        if (*format != OUTPUT_VHDX && vhdx_options) {
                tool_usage_error ("%s", _ ("--type, --parent, --block-size and "
                                           "--logical-sector-size need VHDX output"));
                return FALSE;
        }
        return TRUE;
}

int
cli_cmd_convert (int argc, char **argv)
{
        gboolean show_progress = FALSE;
        gboolean no_sync = FALSE;
        g_autofree char *output_format = NULL;
        /* --source-parent, and how the parents of SOURCE and PARENT are found. */
        g_auto (CliOpenOptions) source_parents = { 0 };
        g_auto (CliCreateOptions) create = { .search = &source_parents };
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "progress", 'p', 0, G_OPTION_ARG_NONE, &show_progress,
                  N_ ("Show progress on a terminal"), NULL },
                { "no-sync", 0, 0, G_OPTION_ARG_NONE, &no_sync,
                  N_ ("Do not wait for DESTINATION to reach the disk (faster; a crash may lose "
                      "it)"),
                  NULL },
                { "output-format", 'O', 0, G_OPTION_ARG_STRING, &output_format,
                  N_ ("raw, vhdx or qcow2 (default: vhdx when DESTINATION ends in .vhdx or "
                      ".avhdx, qcow2 when it ends in .qcow2)"),
                  N_ ("FORMAT") },
                { "type", 0, 0, G_OPTION_ARG_STRING, &create.type,
                  N_ ("dynamic (default) or fixed, for VHDX output"), N_ ("TYPE") },
                { "parent", 0, 0, G_OPTION_ARG_FILENAME, &create.parent,
                  N_ ("Make DESTINATION a differencing image of PARENT storing only the sectors "
                      "that differ"),
                  N_ ("PARENT") },
                { "block-size", 0, 0, G_OPTION_ARG_STRING, &create.block_size,
                  N_ ("Block size of VHDX output (default 32M, with --parent 2M)"), N_ ("SIZE") },
                { "logical-sector-size", 0, 0, G_OPTION_ARG_STRING, &create.logical_sector_size,
                  N_ ("512 (default) or 4096, for VHDX output"), N_ ("N") },
                { "source-parent", 0, 0, G_OPTION_ARG_FILENAME, &source_parents.parent,
                  N_ ("Use PARENT as the parent of a differencing SOURCE instead of the one "
                      "its locator names"),
                  N_ ("PARENT") },
                CLI_PARENT_SEARCH_OPTION_ENTRIES (&source_parents),
                CLI_FORCE_SHARE_OPTION_ENTRY (&source_parents),
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) parent = NULL;
        g_auto (Source) source = { .fd = -1 };
        g_auto (ToolOutput) output = { .fd = -1 };
        Failure failure = { NULL, NULL };
        ToolProgress progress;
        VhdxCreateParams params;
        OutputFormat format;
        gboolean to_vhdx;
        gboolean ok;

        context = tool_command_context_new (
                "convert", _ ("SOURCE DESTINATION"),
                _ ("Convert a VHDX or raw image to a sparse raw image, a VHDX image or a qcow2 "
                   "image."),
                _ ("Reads SOURCE, a VHDX image or a raw disk image (told apart by content),\n"
                   "and writes its virtual disk to DESTINATION.  Raw output leaves holes\n"
                   "where the disk reads as zeros.  VHDX output stores only blocks that\n"
                   "are not all zeros; with --parent it is a differencing image that\n"
                   "stores only the sectors that differ from PARENT.  New images have\n"
                   "Hyper-V's defaults: 32 MiB blocks, 2 MiB for a differencing image.\n"
                   "DESTINATION is written under a temporary name in the same directory\n"
                   "and renamed into place only when complete; an existing DESTINATION\n"
                   "is replaced.  It is on the disk (synced, with its directory) when\n"
                   "convert exits, as after `qemu-img convert` and `sync DESTINATION`;\n"
                   "with --no-sync it is left to the kernel to write back, as `cp` and\n"
                   "`qemu-img convert -t unsafe` leave a copy, and a crash soon after\n"
                   "may lose it.\n"
                   "\n"
                   "A DESTINATION that is a block device (a disk, a partition, a logical\n"
                   "volume) takes raw output only and is written in place, as by\n"
                   "`qemu-img convert -n` or `dd`: it must not be mounted or in use, and\n"
                   "must hold at least the disk; it is zeroed where the disk reads as\n"
                   "zeros, and anything past the end of the disk is left as it was.\n"
                   "\n"
                   "Raw output is copied by the kernel (copy_file_range) from the data\n"
                   "blocks of the source file wherever both files are on one file\n"
                   "system; the holes of the source are never read.\n"
                   "\n"
                   "qcow2 output (the default when DESTINATION ends in .qcow2) is QEMU's\n"
                   "own: qemu-img convert writes it, reading a VHDX source (checkpoint\n"
                   "chains included) through nbdkit and the vhdx plugin over a private\n"
                   "socket, skipping what the image does not store; --progress shows\n"
                   "qemu-img's progress.  It needs qemu-img and nbdkit.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv) ||
            !tool_check_arguments ("convert", args, 2) ||
            !output_format_of (output_format, &create, args[1], &format))
                return EXIT_FAILURE;
        to_vhdx = format == OUTPUT_VHDX;
        if (!source_open (&source, args[0], &source_parents, &error)) {
                tool_print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        if (same_file (args[1], &source.st)) {
                tool_print_error (args[1], _ ("destination is the source image"));
                return EXIT_FAILURE;
        }
        if (to_vhdx && !cli_create_params_from_options (&create, args[1], &params, &parent, TRUE))
                return EXIT_FAILURE;
        if (!tool_output_create_full (&output, args[1], format == OUTPUT_RAW, &error)) {
                tool_print_file_error (args[1], error);
                return EXIT_FAILURE;
        }

        if (format == OUTPUT_QCOW2) {
                /* The source stays open, locked as a reader's, while
                 * qemu-img reads it through nbdkit. */
                ok = cli_convert_to_qcow2 (args[0], source.vhdx != NULL, &source_parents,
                                           output.path, show_progress, &failure.error) &&
                     tool_output_commit_full (&output, !no_sync, &failure.error);
                if (!ok) {
                        tool_print_file_error (args[1], failure.error);
                        g_clear_error (&failure.error);
                        return EXIT_FAILURE;
                }
                return EXIT_SUCCESS;
        }
        tool_progress_start (&progress, show_progress, NULL, source.size);
        ok = to_vhdx ? convert_to_vhdx (&source, output.fd, args[1], &params, parent, !no_sync,
                                        &progress, &failure)
                     : convert_to_raw (&source, &output, args[1], !no_sync, &progress, &failure);
        source_clear (&source);
        if (ok && !tool_output_commit_full (&output, !no_sync, &failure.error)) {
                failure.path = args[1];
                ok = FALSE;
        }
        if (!ok) {
                tool_progress_abandon (&progress);
                tool_print_file_error (failure.path, failure.error);
                g_clear_error (&failure.error);
                return EXIT_FAILURE;
        }
        tool_progress_finish (&progress);
        return EXIT_SUCCESS;
}
