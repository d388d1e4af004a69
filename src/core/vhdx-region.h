/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The two copies of the region table. */
#pragma once

#include "vhdx-format.h"
#include "vhdx-io.h"

G_BEGIN_DECLS

typedef struct {
        VhdxGuid guid;
        guint64 file_offset;
        guint32 length;
        gboolean required;
} VhdxRegionEntry;

typedef struct {
        VhdxRegionEntry bat;
        VhdxRegionEntry metadata;
        GArray *entries; /* every VhdxRegionEntry of the table, known or not */
} VhdxRegionTable;

void vhdx_region_table_clear (VhdxRegionTable *table);

/*
 * Parse a 64 KiB region table read from @file_offset: signature, checksum,
 * entry count, alignment, bounds against @file_size, duplicates and overlaps,
 * unknown required regions, and presence of the BAT and metadata regions.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_region_table_parse (const guint8 *buf,
                                                            gsize len,
                                                            guint64 file_offset,
                                                            const char *name,
                                                            guint64 file_size,
                                                            VhdxRegionTable *out,
                                                            GError **error);

/* Read region table 1, falling back to table 2 when the first is damaged (the
 * damage is appended to @problems). */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_region_tables_read (VhdxIo *io,
                                                            guint64 file_size,
                                                            VhdxRegionTable *out,
                                                            guint *index,
                                                            GPtrArray *problems,
                                                            GError **error);

G_END_DECLS
