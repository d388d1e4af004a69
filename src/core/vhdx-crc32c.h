/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CRC-32C, the checksum of VHDX headers, region tables and log entries. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).  Start with @crc = 0
 * and chain calls over consecutive pieces; the pre- and post-inversion are
 * applied inside, so vhdx_crc32c (0, "123456789", 9) == 0xE3069283.
 */
guint32 vhdx_crc32c (guint32 crc, const void *data, gsize len);

/* CRC of a structure of @len bytes whose 4-byte checksum field at @checksum_offset
 * is taken as zero. */
guint32 vhdx_crc32c_with_zero_field (const guint8 *data, gsize len, gsize checksum_offset);

/* Bytes checksummed by this process so far, over all threads.  Tests bound
 * the work of scans (the log's) with it: counting work holds on any machine,
 * a duration does not. */
guint64 vhdx_crc32c_get_bytes_checksummed (void);

/* Which implementation computes the checksums: the CPU's CRC-32C instruction
 * (SSE 4.2 on x86-64, the CRC extension on ARMv8) when the CPU has one, the
 * tables otherwise. */
gboolean vhdx_crc32c_uses_instruction (void);

/* Test hook: with @table_only, the tables compute every checksum from now on,
 * whatever the CPU has; without it, the choice is made again.  Returns whether
 * the implementation asked for is the one in use (FALSE when the CPU has no
 * instruction and !@table_only).  Not for use while other threads checksum. */
gboolean vhdx_crc32c_set_table_only (gboolean table_only);

G_END_DECLS
