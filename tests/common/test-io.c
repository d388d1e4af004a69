/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxIo wrappers for tests: a counting one. */
#include "test-io.h"

typedef struct {
        VhdxIo parent;
        VhdxIo *inner;
        TestIoCounts *counts;
} CountingIo;

static void
count (guint64 *counter, guint64 n)
{
        __atomic_fetch_add (counter, n, __ATOMIC_RELAXED);
}

static gboolean
counting_pread (VhdxIo *io, void *buf, gsize n, guint64 offset, gsize *n_read, GError **error)
{
        CountingIo *self = (CountingIo *) io;

        count (&self->counts->preads, 1);
        count (&self->counts->bytes_read, n);
        return self->inner->vtable->pread (self->inner, buf, n, offset, n_read, error);
}

static gboolean
counting_pwrite (VhdxIo *io, const void *buf, gsize n, guint64 offset, GError **error)
{
        CountingIo *self = (CountingIo *) io;

        count (&self->counts->pwrites, 1);
        count (&self->counts->bytes_written, n);
        return self->inner->vtable->pwrite (self->inner, buf, n, offset, error);
}

static gboolean
counting_flush (VhdxIo *io, GError **error)
{
        CountingIo *self = (CountingIo *) io;

        count (&self->counts->flushes, 1);
        return self->inner->vtable->flush (self->inner, error);
}

static gboolean
counting_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        return vhdx_io_get_size (((CountingIo *) io)->inner, size, error);
}

static gboolean
counting_identify (VhdxIo *io, guint64 *device, guint64 *inode)
{
        return vhdx_io_identify (((CountingIo *) io)->inner, device, inode);
}

static guint64
counting_next_data (VhdxIo *io, guint64 offset)
{
        return vhdx_io_next_data (((CountingIo *) io)->inner, offset);
}

static void
counting_free (VhdxIo *io)
{
        vhdx_io_free (((CountingIo *) io)->inner);
        g_free (io);
}

/* Four variants: with and without writing, with and without next_data. */
#define COUNTING_VTABLE(write, skip)                                                               \
        {                                                                                          \
                .pread = counting_pread, .get_size = counting_get_size,                            \
                .pwrite = (write) ? counting_pwrite : NULL,                                        \
                .flush = (write) ? counting_flush : NULL, .free = counting_free,                   \
                .identify = counting_identify, .next_data = (skip) ? counting_next_data : NULL,    \
        }

static const VhdxIoVTable vtables[2][2] = {
        { COUNTING_VTABLE (FALSE, FALSE), COUNTING_VTABLE (FALSE, TRUE) },
        { COUNTING_VTABLE (TRUE, FALSE), COUNTING_VTABLE (TRUE, TRUE) },
};

VhdxIo *
test_counting_io_new (VhdxIo *inner, gboolean forward_next_data, TestIoCounts *counts)
{
        CountingIo *self = g_new0 (CountingIo, 1);
        gboolean writable = inner->vtable->pwrite != NULL && inner->vtable->flush != NULL;

        self->parent.vtable = &vtables[writable][forward_next_data != FALSE];
        self->inner = inner;
        self->counts = counts;
        return &self->parent;
}

void
test_io_counts_get (const TestIoCounts *counts, TestIoCounts *snapshot)
{
        snapshot->preads = __atomic_load_n (&counts->preads, __ATOMIC_RELAXED);
        snapshot->bytes_read = __atomic_load_n (&counts->bytes_read, __ATOMIC_RELAXED);
        snapshot->pwrites = __atomic_load_n (&counts->pwrites, __ATOMIC_RELAXED);
        snapshot->bytes_written = __atomic_load_n (&counts->bytes_written, __ATOMIC_RELAXED);
        snapshot->flushes = __atomic_load_n (&counts->flushes, __ATOMIC_RELAXED);
}
