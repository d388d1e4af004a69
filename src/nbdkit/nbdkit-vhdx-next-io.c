/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's VhdxIo over the plugin below an nbdkit filter (see nbdkit-vhdx-next-io.h). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <gio/gio.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#include "nbdkit-vhdx-next-io.h"
#include "vhdx-format.h"

/*
 * Reads of metadata are made in aligned chunks of READ_AHEAD_CHUNK bytes,
 * kept in READ_AHEAD_SLOTS slots reused least recently used first.  The
 * engine reads its structures a few KiB at a time (a header, a region
 * table, a BAT page of 32 KiB); over HTTP or SSH each request costs a
 * round trip, and the structures of an image made by Hyper-V, QEMU or
 * `vhdx create` lie together in its first few MiB.  Reads larger than
 * READ_AHEAD_MAX go straight to the plugin below.
 */
#define READ_AHEAD_CHUNK VHDX_MiB
#define READ_AHEAD_SLOTS 8
#define READ_AHEAD_MAX   (256 * VHDX_KiB)
/* The largest request made of the plugin below (nbdkit's are 32-bit). */
#define REQUEST_MAX         (1024 * VHDX_MiB)
#define METADATA_RANGES_MAX 8

typedef struct {
        guint64 offset; /* G_MAXUINT64: empty */
        gsize length;   /* shorter than a chunk only at the end of the file */
        guint64 last_use;
        guint8 *data;
} Chunk;

typedef struct {
        VhdxIo io;
        nbdkit_next *next;
        gboolean serialize;
        GMutex next_lock; /* held around calls into next when serialize */

        GMutex cache_lock; /* guards what follows */
        Chunk chunks[READ_AHEAD_SLOTS];
        guint64 clock;
        gboolean ranges_set;
        guint n_ranges;
        guint64 ranges[METADATA_RANGES_MAX * 2]; /* start, end pairs */
        guint64 reads;                           /* atomic */
} NextIo;

static void
lock_next (NextIo *n)
{
        if (n->serialize)
                g_mutex_lock (&n->next_lock);
}

static void
unlock_next (NextIo *n)
{
        if (n->serialize)
                g_mutex_unlock (&n->next_lock);
}

static gboolean
next_io_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        NextIo *n = (NextIo *) io;
        int64_t r;

        lock_next (n);
        r = n->next->get_size (n->next);
        unlock_next (n);
        if (r < 0) {
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                                     "the plugin below the filter did not tell its size");
                return FALSE;
        }
        *size = (guint64) r;
        return TRUE;
}

/* Read [@offset, @offset + @count) from the plugin below, which holds it all. */
static gboolean
read_next (NextIo *n, void *buf, guint64 count, guint64 offset, GError **error)
{
        for (guint64 done = 0; done < count;) {
                uint32_t piece = (uint32_t) MIN (count - done, REQUEST_MAX);
                int err = 0;
                int r;

                lock_next (n);
                r = n->next->pread (n->next, (guint8 *) buf + done, piece, offset + done, 0, &err);
                unlock_next (n);
                __atomic_fetch_add (&n->reads, 1, __ATOMIC_RELAXED);
                if (r < 0) {
                        vhdx_set_error_from_errno (error, err != 0 ? err : EIO);
                        g_prefix_error (error, "reading the plugin below the filter: ");
                        return FALSE;
                }
                done += piece;
        }
        return TRUE;
}

/* Whether a read at @offset of @count bytes is read ahead; called with
 * cache_lock held. */
static gboolean
is_read_ahead (NextIo *n, guint64 offset, gsize count)
{
        if (count > READ_AHEAD_MAX)
                return FALSE;
        if (!n->ranges_set)
                return TRUE;
        for (guint i = 0; i < n->n_ranges; i++) {
                if (offset >= n->ranges[2 * i] && offset + count <= n->ranges[2 * i + 1])
                        return TRUE;
        }
        return FALSE;
}

/* The chunk that starts at @start, read from the plugin below if it is
 * not kept; called with cache_lock held.  @size is the file's. */
static Chunk *
get_chunk (NextIo *n, guint64 start, guint64 size, GError **error)
{
        Chunk *victim = &n->chunks[0];

        for (guint i = 0; i < READ_AHEAD_SLOTS; i++) {
                Chunk *c = &n->chunks[i];

                if (c->offset == start) {
                        c->last_use = ++n->clock;
                        return c;
                }
                if (c->offset == G_MAXUINT64 ||
                    (victim->offset != G_MAXUINT64 && c->last_use < victim->last_use))
                        victim = c;
        }
        if (victim->data == NULL)
                victim->data = g_malloc (READ_AHEAD_CHUNK);
        victim->offset = G_MAXUINT64;
        victim->length = (gsize) MIN (READ_AHEAD_CHUNK, size - start);
        if (!read_next (n, victim->data, victim->length, start, error))
                return NULL;
        victim->offset = start;
        victim->last_use = ++n->clock;
        return victim;
}

static gboolean
next_io_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        NextIo *n = (NextIo *) io;
        g_autoptr (GMutexLocker) locker = NULL;
        guint64 size;

        *n_read = 0;
        if (!next_io_get_size (io, &size, error))
                return FALSE;
        if (offset >= size || count == 0)
                return TRUE;
        count = (gsize) MIN ((guint64) count, size - offset);

        locker = g_mutex_locker_new (&n->cache_lock);
        if (!is_read_ahead (n, offset, count)) {
                g_clear_pointer (&locker, g_mutex_locker_free);
                if (!read_next (n, buf, count, offset, error))
                        return FALSE;
                *n_read = count;
                return TRUE;
        }
        for (gsize done = 0; done < count;) {
                guint64 at = offset + done;
                guint64 start = at / READ_AHEAD_CHUNK * READ_AHEAD_CHUNK;
                Chunk *c = get_chunk (n, start, size, error);
                gsize piece;

                if (c == NULL)
                        return FALSE;
                piece = (gsize) MIN ((guint64) (count - done), start + c->length - at);
                memcpy ((guint8 *) buf + done, c->data + (at - start), piece);
                done += piece;
        }
        *n_read = count;
        return TRUE;
}

/* Forget the chunks that [@offset, @offset + @length) overlaps, once it
 * has been written. */
static void
drop_chunks (NextIo *n, guint64 offset, guint64 length)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&n->cache_lock);

        for (guint i = 0; i < READ_AHEAD_SLOTS; i++) {
                Chunk *c = &n->chunks[i];

                if (c->offset != G_MAXUINT64 && c->offset < offset + length &&
                    offset < c->offset + c->length)
                        c->offset = G_MAXUINT64;
        }
}

/* A write past the end of the plugin's disk, which cannot grow. */
static gboolean
check_room (NextIo *n, guint64 offset, guint64 length, GError **error)
{
        guint64 size;

        if (!next_io_get_size (&n->io, &size, error))
                return FALSE;
        if (offset > size || length > size - offset) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                             "the image needs %" G_GUINT64_FORMAT
                             " bytes, but the plugin below the filter serves %" G_GUINT64_FORMAT
                             " and cannot grow",
                             offset + length, size);
                return FALSE;
        }
        return TRUE;
}

static gboolean
next_io_pwrite (VhdxIo *io, const void *buf, gsize count, guint64 offset, GError **error)
{
        NextIo *n = (NextIo *) io;
        gboolean ok = TRUE;

        if (!check_room (n, offset, count, error))
                return FALSE;
        for (gsize done = 0; ok && done < count;) {
                uint32_t piece = (uint32_t) MIN ((guint64) (count - done), REQUEST_MAX);
                int err = 0;

                lock_next (n);
                ok = n->next->pwrite (n->next, (const guint8 *) buf + done, piece, offset + done, 0,
                                      &err) == 0;
                unlock_next (n);
                if (!ok) {
                        vhdx_set_error_from_errno (error, err != 0 ? err : EIO);
                        g_prefix_error (error, "writing the plugin below the filter: ");
                }
                done += piece;
        }
        drop_chunks (n, offset, count);
        return ok;
}

static gboolean
next_io_flush (VhdxIo *io, GError **error)
{
        NextIo *n = (NextIo *) io;
        int err = 0;
        int r;

        lock_next (n);
        r = n->next->flush (n->next, 0, &err);
        unlock_next (n);
        if (r < 0) {
                vhdx_set_error_from_errno (error, err != 0 ? err : EIO);
                g_prefix_error (error, "flushing the plugin below the filter: ");
                return FALSE;
        }
        return TRUE;
}

/* The plugin's zero when it has one (trimming too when @punch), written
 * zeros otherwise. */
static gboolean
next_io_zero_range (VhdxIo *io, guint64 offset, guint64 length, gboolean punch, GError **error)
{
        NextIo *n = (NextIo *) io;
        gboolean ok = TRUE;
        int can_zero;

        if (!check_room (n, offset, length, error))
                return FALSE;
        lock_next (n);
        can_zero = n->next->can_zero (n->next);
        unlock_next (n);
        if (can_zero <= NBDKIT_ZERO_NONE)
                return vhdx_io_write_zeros (io, offset, length, error);
        for (guint64 done = 0; ok && done < length;) {
                uint32_t piece = (uint32_t) MIN (length - done, REQUEST_MAX);
                int err = 0;

                lock_next (n);
                ok = n->next->zero (n->next, piece, offset + done, punch ? NBDKIT_FLAG_MAY_TRIM : 0,
                                    &err) == 0;
                unlock_next (n);
                if (!ok) {
                        vhdx_set_error_from_errno (error, err != 0 ? err : EIO);
                        g_prefix_error (error, "zeroing the plugin below the filter: ");
                }
                done += piece;
        }
        drop_chunks (n, offset, length);
        return ok;
}

static void
next_io_free (VhdxIo *io)
{
        NextIo *n = (NextIo *) io;

        for (guint i = 0; i < READ_AHEAD_SLOTS; i++)
                g_free (n->chunks[i].data);
        g_mutex_clear (&n->next_lock);
        g_mutex_clear (&n->cache_lock);
        g_free (n);
}

/* No lock: a file behind HTTP, SSH or NBD cannot be locked from here
 * (vhdx_io_lock() takes none), nor identified. */
static const VhdxIoVTable read_only_vtable = {
        .pread = next_io_pread,
        .get_size = next_io_get_size,
        .free = next_io_free,
};

static const VhdxIoVTable writable_vtable = {
        .pread = next_io_pread,
        .get_size = next_io_get_size,
        .pwrite = next_io_pwrite,
        .flush = next_io_flush,
        .zero_range = next_io_zero_range,
        .free = next_io_free,
};

VhdxIo *
vhdx_next_io_new (struct nbdkit_next_ops *next, gboolean writable, gboolean serialize)
{
        NextIo *n = g_new0 (NextIo, 1);

        n->io.vtable = writable ? &writable_vtable : &read_only_vtable;
        n->next = next;
        n->serialize = serialize;
        g_mutex_init (&n->next_lock);
        g_mutex_init (&n->cache_lock);
        for (guint i = 0; i < READ_AHEAD_SLOTS; i++)
                n->chunks[i].offset = G_MAXUINT64;
        return &n->io;
}

void
vhdx_next_io_set_metadata_ranges (VhdxIo *io, const guint64 *ranges, guint n_ranges)
{
        NextIo *n = (NextIo *) io;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&n->cache_lock);

        g_return_if_fail (n_ranges <= METADATA_RANGES_MAX);
        memcpy (n->ranges, ranges, n_ranges * 2 * sizeof (guint64));
        n->n_ranges = n_ranges;
        n->ranges_set = TRUE;
}

guint64
vhdx_next_io_get_reads (VhdxIo *io)
{
        return __atomic_load_n (&((NextIo *) io)->reads, __ATOMIC_RELAXED);
}
