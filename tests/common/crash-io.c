/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The crash harness's recording file and the crash images built from its record (see crash-io.h).
 */
#include "crash-io.h"

#include <string.h>

#include "vhdx-format.h"

#define TEAR_UNIT 512

/* One recorded call: a write (data, or zeros when NULL), a flush, or a
 * change of the file's size to @offset. */
typedef struct {
        gboolean flush;
        gboolean truncate;
        guint64 offset;
        gsize length;
        guint8 *data;
} Call;

static void
call_clear (gpointer data)
{
        g_free (((Call *) data)->data);
}

struct _CrashTrace {
        GBytes *initial;
        GArray *calls; /* Call */
};

typedef struct {
        VhdxIo parent;
        GByteArray *contents;
        GMutex lock;
        CrashTrace *trace; /* NULL when not recording */
} CrashIo;

static void
apply_write (GByteArray *file, guint64 offset, const guint8 *data, gsize length)
{
        if (offset + length > file->len) {
                guint old = file->len;
                g_byte_array_set_size (file, (guint) (offset + length));
                memset (file->data + old, 0, file->len - old);
        }
        if (data != NULL)
                memcpy (file->data + offset, data, length);
        else
                memset (file->data + offset, 0, length);
}

/* The file after @call, a write or a change of size. */
static void
apply_call (GByteArray *file, const Call *call)
{
        if (!call->truncate) {
                apply_write (file, call->offset, call->data, call->length);
                return;
        }
        if (call->offset > file->len) {
                guint old = file->len;
                g_byte_array_set_size (file, (guint) call->offset);
                memset (file->data + old, 0, file->len - old);
        } else {
                g_byte_array_set_size (file, (guint) call->offset);
        }
}

static gboolean
crash_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        CrashIo *self = (CrashIo *) io;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);

        *n_read = offset >= self->contents->len
                          ? 0
                          : (gsize) MIN ((guint64) count, self->contents->len - offset);
        memcpy (buf, self->contents->data + offset, *n_read);
        return TRUE;
}

static gboolean
crash_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        CrashIo *self = (CrashIo *) io;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);

        *size = self->contents->len;
        return TRUE;
}

static void
record (CrashIo *self, gboolean flush, guint64 offset, const void *data, gsize length)
{
        Call call = { flush, FALSE, offset, length, NULL };

        /* Files that record nothing (the crash images themselves) keep no copy. */
        if (self->trace == NULL)
                return;
        if (data != NULL)
                call.data = g_memdup2 (data, length);
        g_array_append_val (self->trace->calls, call);
}

static gboolean
crash_pwrite (VhdxIo *io, const void *buf, gsize count, guint64 offset, GError **error)
{
        CrashIo *self = (CrashIo *) io;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);

        apply_write (self->contents, offset, buf, count);
        record (self, FALSE, offset, buf, count);
        return TRUE;
}

static gboolean
crash_zero_range (VhdxIo *io, guint64 offset, guint64 length, gboolean punch, GError **error)
{
        CrashIo *self = (CrashIo *) io;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);

        apply_write (self->contents, offset, NULL, length);
        record (self, FALSE, offset, NULL, length);
        return TRUE;
}

static gboolean
crash_flush (VhdxIo *io, GError **error)
{
        CrashIo *self = (CrashIo *) io;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);

        record (self, TRUE, 0, NULL, 0);
        return TRUE;
}

static gboolean
crash_truncate (VhdxIo *io, guint64 size, GError **error)
{
        CrashIo *self = (CrashIo *) io;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);
        Call call = { FALSE, TRUE, size, 0, NULL };

        apply_call (self->contents, &call);
        if (self->trace != NULL)
                g_array_append_val (self->trace->calls, call);
        return TRUE;
}

static void
crash_free (VhdxIo *io)
{
        CrashIo *self = (CrashIo *) io;

        g_byte_array_unref (self->contents);
        crash_trace_free (self->trace);
        g_mutex_clear (&self->lock);
        g_free (self);
}

static const VhdxIoVTable crash_vtable = {
        .pread = crash_pread,
        .get_size = crash_get_size,
        .pwrite = crash_pwrite,
        .flush = crash_flush,
        .free = crash_free,
        .zero_range = crash_zero_range,
        .truncate = crash_truncate,
};

VhdxIo *
crash_io_new (const guint8 *contents, gsize length, gboolean record_calls)
{
        CrashIo *self = g_new0 (CrashIo, 1);

        self->parent.vtable = &crash_vtable;
        self->contents = g_byte_array_sized_new ((guint) length);
        g_byte_array_append (self->contents, contents, (guint) length);
        g_mutex_init (&self->lock);
        if (record_calls) {
                self->trace = g_new0 (CrashTrace, 1);
                self->trace->initial = g_bytes_new (contents, length);
                self->trace->calls = g_array_new (FALSE, FALSE, sizeof (Call));
                g_array_set_clear_func (self->trace->calls, call_clear);
        }
        return &self->parent;
}

VhdxIo *
crash_io_new_in (GByteArray *storage, const guint8 *contents, gsize length)
{
        CrashIo *self = g_new0 (CrashIo, 1);

        self->parent.vtable = &crash_vtable;
        self->contents = g_byte_array_ref (storage);
        g_byte_array_set_size (storage, (guint) length);
        memcpy (storage->data, contents, length);
        g_mutex_init (&self->lock);
        return &self->parent;
}

guint
crash_io_get_calls (VhdxIo *io)
{
        CrashIo *self = (CrashIo *) io;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);

        return self->trace != NULL ? self->trace->calls->len : 0;
}

const GByteArray *
crash_io_get_contents (VhdxIo *io)
{
        return ((CrashIo *) io)->contents;
}

GBytes *
crash_io_steal_contents (VhdxIo *io)
{
        CrashIo *self = (CrashIo *) io;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);
        GByteArray *contents = self->contents;

        self->contents = g_byte_array_new ();
        return g_byte_array_free_to_bytes (contents);
}

CrashTrace *
crash_io_get_trace (VhdxIo *io)
{
        CrashIo *self = (CrashIo *) io;
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);
        CrashTrace *copy;

        g_return_val_if_fail (self->trace != NULL, NULL);
        copy = g_new0 (CrashTrace, 1);
        copy->initial = g_bytes_ref (self->trace->initial);
        copy->calls = g_array_new (FALSE, FALSE, sizeof (Call));
        g_array_set_clear_func (copy->calls, call_clear);
        for (guint i = 0; i < self->trace->calls->len; i++) {
                Call c = g_array_index (self->trace->calls, Call, i);
                if (c.data != NULL)
                        c.data = g_memdup2 (c.data, c.length);
                g_array_append_val (copy->calls, c);
        }
        return copy;
}

void
crash_trace_free (CrashTrace *trace)
{
        if (trace == NULL)
                return;
        g_bytes_unref (trace->initial);
        g_array_unref (trace->calls);
        g_free (trace);
}

guint
crash_trace_get_calls (const CrashTrace *trace)
{
        return trace->calls->len;
}

const char *
crash_kind_name (CrashKind kind)
{
        static const char *const names[] = { "durable", "all", "subset", "torn" };

        g_return_val_if_fail (kind < CRASH_N_KINDS, NULL);
        return names[kind];
}

struct _CrashWalker {
        const CrashTrace *trace;
        guint point;          /* the next call */
        guint first_volatile; /* the first write since the last flush */
        GByteArray *durable;
};

CrashWalker *
crash_walker_new (const CrashTrace *trace)
{
        CrashWalker *walker = g_new0 (CrashWalker, 1);
        gsize length;
        const guint8 *initial = g_bytes_get_data (trace->initial, &length);

        walker->trace = trace;
        walker->durable = g_byte_array_sized_new ((guint) length);
        g_byte_array_append (walker->durable, initial, (guint) length);
        return walker;
}

void
crash_walker_free (CrashWalker *walker)
{
        if (walker == NULL)
                return;
        g_byte_array_unref (walker->durable);
        g_free (walker);
}

guint
crash_walker_get_point (CrashWalker *walker)
{
        return walker->point;
}

guint
crash_walker_get_volatile (CrashWalker *walker)
{
        return walker->point - walker->first_volatile;
}

static const Call *
call_at (CrashWalker *walker, guint i)
{
        return &g_array_index (walker->trace->calls, Call, i);
}

gboolean
crash_walker_advance (CrashWalker *walker)
{
        const Call *call;

        if (walker->point >= walker->trace->calls->len)
                return FALSE;
        call = call_at (walker, walker->point);
        walker->point++;
        if (call->flush) {
                for (guint i = walker->first_volatile; i < walker->point - 1; i++)
                        apply_call (walker->durable, call_at (walker, i));
                walker->first_volatile = walker->point;
        }
        return TRUE;
}

/* Apply the 512-byte pieces of @call that @rand picks (a change of size, or not). */
static void
apply_torn (GByteArray *file, const Call *call, GRand *rand)
{
        if (call->truncate) {
                if (g_rand_boolean (rand))
                        apply_call (file, call);
                return;
        }
        for (gsize at = 0; at < call->length; at += TEAR_UNIT) {
                gsize n = MIN ((gsize) TEAR_UNIT, call->length - at);
                if (g_rand_boolean (rand))
                        apply_write (file, call->offset + at,
                                     call->data != NULL ? call->data + at : NULL, n);
        }
}

void
crash_walker_build (CrashWalker *walker, CrashKind kind, GRand *rand, GByteArray *file)
{
        guint first = walker->first_volatile, end = walker->point;

        g_byte_array_set_size (file, walker->durable->len);
        memcpy (file->data, walker->durable->data, walker->durable->len);
        switch (kind) {
        case CRASH_DURABLE:
                break;
        case CRASH_ALL:
                for (guint i = first; i < end; i++)
                        apply_call (file, call_at (walker, i));
                break;
        case CRASH_SUBSET: {
                g_autoptr (GArray) order = g_array_new (FALSE, FALSE, sizeof (guint));
                for (guint i = first; i < end; i++) {
                        if (g_rand_boolean (rand))
                                g_array_append_val (order, i);
                }
                /* The disk may write them in any order. */
                for (guint i = order->len; i > 1; i--) {
                        guint j = (guint) g_rand_int_range (rand, 0, (gint32) i);
                        guint t = g_array_index (order, guint, i - 1);
                        g_array_index (order, guint, i - 1) = g_array_index (order, guint, j);
                        g_array_index (order, guint, j) = t;
                }
                for (guint i = 0; i < order->len; i++) {
                        apply_call (file, call_at (walker, g_array_index (order, guint, i)));
                }
                break;
        }
        case CRASH_TORN: {
                guint n = end - first;
                guint prefix = n > 0 ? (guint) g_rand_int_range (rand, 0, (gint32) n) : 0;
                for (guint i = first; i < first + prefix; i++)
                        apply_call (file, call_at (walker, i));
                if (n > 0)
                        apply_torn (file, call_at (walker, first + prefix), rand);
                break;
        }
        case CRASH_N_KINDS:
        default:
                g_assert_not_reached ();
        }
}
