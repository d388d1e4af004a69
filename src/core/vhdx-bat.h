/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The block allocation table, loaded lazily in pages and cached.  Pages are
 * published with an atomic compare-and-swap, so lookups from several threads
 * need no lock.
 */
#pragma once

#include "vhdx-format.h"
#include "vhdx-io.h"

G_BEGIN_DECLS

typedef struct _VhdxBat VhdxBat;

/* Entries per lazily loaded page (32 KiB of BAT). */
#define VHDX_BAT_PAGE_ENTRIES 4096

/* @io is borrowed and must outlive the BAT. */
G_GNUC_WARN_UNUSED_RESULT VhdxBat *vhdx_bat_new (VhdxIo *io,
                                                 guint64 file_offset,
                                                 guint64 n_entries);
void vhdx_bat_free (VhdxBat *bat);

guint64 vhdx_bat_get_n_entries (VhdxBat *bat);

/*
 * Read @count entries from @first into @entries (host order) straight from the
 * file, without filling the cache: for scans of the whole table (allocation
 * figures, check) that must not keep a large BAT in memory.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean
vhdx_bat_read_range (VhdxBat *bat, guint64 first, gsize count, guint64 *entries, GError **error);

/*
 * The first entry at or after @first that may be non-zero, or the number of
 * entries: the entries in between lie in a hole of the file (a sparse BAT)
 * and are zero, NOT_PRESENT.  Scans skip them without reading.
 */
guint64 vhdx_bat_skip_zeros (VhdxBat *bat, guint64 first);

/* Entries per step of a streaming scan (1 MiB of BAT). */
#define VHDX_BAT_SCAN_ENTRIES (128 * 1024)

/* The raw 64-bit entry @index, loading its page on first use. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_bat_get (VhdxBat *bat,
                                                 guint64 index,
                                                 guint64 *entry,
                                                 GError **error);

static inline guint
vhdx_bat_entry_state (guint64 entry)
{
        return (guint) (entry & VHDX_BAT_STATE_MASK);
}

static inline guint64
vhdx_bat_entry_offset (guint64 entry)
{
        return entry & VHDX_BAT_OFFSET_MASK;
}

/* Index of the BAT entry of payload block @block, given the chunk ratio. */
static inline guint64
vhdx_bat_payload_index (guint64 block, guint64 chunk_ratio)
{
        return block + block / chunk_ratio;
}

/* Index of the sector bitmap entry of chunk @chunk. */
static inline guint64
vhdx_bat_bitmap_index (guint64 chunk, guint64 chunk_ratio)
{
        return chunk * (chunk_ratio + 1) + chunk_ratio;
}

G_END_DECLS
