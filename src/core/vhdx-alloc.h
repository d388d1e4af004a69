/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * File space for the blocks of an image being written: 1 MiB-aligned
 * ranges past every structure, either fresh (past the end of the file:
 * reads as zeros) or reused (freed by an earlier change of this open: may
 * hold stale bytes, and handed out only once the log entry that freed it is
 * durable).  Not thread-safe: the writer calls it under its lock.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _VhdxAlloc VhdxAlloc;

/* Space from @fresh_start (a 1 MiB multiple, past every structure of the file). */
G_GNUC_WARN_UNUSED_RESULT VhdxAlloc *vhdx_alloc_new (guint64 fresh_start);
void vhdx_alloc_free (VhdxAlloc *alloc);

/* @size bytes (a 1 MiB multiple); @stale is set when they may hold stale bytes. */
guint64 vhdx_alloc_take (VhdxAlloc *alloc, guint64 size, gboolean *stale);

/* [@offset, @offset + @size) is no longer used, by a change of batch @batch. */
void vhdx_alloc_release (VhdxAlloc *alloc, guint64 offset, guint64 size, guint64 batch);

/* [@start, @end) now holds a structure: no space in it is handed out, and
 * fresh space starts past it. */
void vhdx_alloc_exclude (VhdxAlloc *alloc, guint64 start, guint64 end);

/* The changes of every batch up to @batch are durable: their freed space may be reused. */
void vhdx_alloc_set_durable (VhdxAlloc *alloc, guint64 batch);

/* The end of the space handed out so far: every structure fits below it. */
guint64 vhdx_alloc_get_end (VhdxAlloc *alloc);

/* Bytes freed and not reused (waiting for their batch, or ready). */
guint64 vhdx_alloc_get_free_bytes (VhdxAlloc *alloc);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxAlloc, vhdx_alloc_free)

G_END_DECLS
