/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CRC-32C, and the count of bytes checksummed that bounds the work of scans in tests. */
#include "vhdx-crc32c.h"

static guint64 bytes_checksummed;

/* Slicing-by-8 tables, built once.  CRC only covers headers, region tables and
 * log entries, but log replay runs over megabytes, so it is worth a fast path. */
static guint32 crc_table[8][256];

static gpointer
build_tables (gpointer data)
{
        for (guint i = 0; i < 256; i++) {
                guint32 c = i;
                for (guint k = 0; k < 8; k++)
                        c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
                crc_table[0][i] = c;
        }
        for (guint i = 0; i < 256; i++) {
                for (guint t = 1; t < 8; t++)
                        crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
                                          crc_table[0][crc_table[t - 1][i] & 0xff];
        }
        return NULL;
}

guint32
vhdx_crc32c (guint32 crc, const void *data, gsize len)
{
        static GOnce once = G_ONCE_INIT;
        const guint8 *p = data;

        g_once (&once, build_tables, NULL);
        __atomic_fetch_add (&bytes_checksummed, (guint64) len, __ATOMIC_RELAXED);
        crc = ~crc;
        while (len >= 8) {
                guint32 lo = crc ^ ((guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 |
                                    (guint32) p[3] << 24);
                crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
                      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
                      crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
                      crc_table[0][p[7]];
                p += 8;
                len -= 8;
        }
        while (len--)
                crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        return ~crc;
}

guint32
vhdx_crc32c_with_zero_field (const guint8 *data, gsize len, gsize checksum_offset)
{
        static const guint8 zeros[4] = { 0 };
        guint32 crc;

        g_assert (checksum_offset + 4 <= len);
        crc = vhdx_crc32c (0, data, checksum_offset);
        crc = vhdx_crc32c (crc, zeros, 4);
        return vhdx_crc32c (crc, data + checksum_offset + 4, len - checksum_offset - 4);
}

guint64
vhdx_crc32c_get_bytes_checksummed (void)
{
        return __atomic_load_n (&bytes_checksummed, __ATOMIC_RELAXED);
}
