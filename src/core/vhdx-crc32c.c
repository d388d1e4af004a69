/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CRC-32C, by the CPU's instruction where it has one and by tables elsewhere, and the count
 * of bytes checksummed that bounds the work of scans in tests. */
#include "vhdx-crc32c.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define VHDX_CRC32C_X86 1
#elif defined(__aarch64__) && defined(__GNUC__) && defined(__linux__)
#define VHDX_CRC32C_ARM 1
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

static guint64 bytes_checksummed;

/* Slicing-by-8 tables, built once: the fallback for CPUs without a CRC-32C
 * instruction (and the reference the tests compare the instruction with). */
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

/* The three implementations take and return the inverted register. */
static guint32
crc_by_table (guint32 crc, const guint8 *p, gsize len)
{
        static GOnce once = G_ONCE_INIT;

        g_once (&once, build_tables, NULL);
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
        return crc;
}

#if defined(VHDX_CRC32C_X86)
/* SSE 4.2's CRC32 instruction computes exactly this polynomial, eight bytes at
 * a time; memcpy keeps the unaligned loads defined. */
__attribute__ ((target ("sse4.2"))) static guint32
crc_by_instruction (guint32 crc, const guint8 *p, gsize len)
{
        guint64 c = crc;

        while (len > 0 && ((guintptr) p & 7) != 0) {
                c = __builtin_ia32_crc32qi ((guint32) c, *p++);
                len--;
        }
        while (len >= 8) {
                guint64 word;
                memcpy (&word, p, 8);
                c = __builtin_ia32_crc32di (c, word);
                p += 8;
                len -= 8;
        }
        while (len--)
                c = __builtin_ia32_crc32qi ((guint32) c, *p++);
        return (guint32) c;
}

static gboolean
cpu_has_instruction (void)
{
        __builtin_cpu_init ();
        return __builtin_cpu_supports ("sse4.2");
}
#elif defined(VHDX_CRC32C_ARM)
/* The ARMv8 CRC extension's CRC32C instructions, eight bytes at a time. */
#if defined(__clang__)
__attribute__ ((target ("crc")))
#else
__attribute__ ((target ("+crc")))
#endif
static guint32
crc_by_instruction (guint32 crc, const guint8 *p, gsize len)
{
        while (len > 0 && ((guintptr) p & 7) != 0) {
                crc = __crc32cb (crc, *p++);
                len--;
        }
        while (len >= 8) {
                guint64 word;
                memcpy (&word, p, 8);
                crc = __crc32cd (crc, word);
                p += 8;
                len -= 8;
        }
        while (len--)
                crc = __crc32cb (crc, *p++);
        return crc;
}

static gboolean
cpu_has_instruction (void)
{
        return (getauxval (AT_HWCAP) & HWCAP_CRC32) != 0;
}
#endif

typedef guint32 (*CrcFunc) (guint32 crc, const guint8 *p, gsize len);

/* Chosen on first use; the test hook may put the tables back. */
static CrcFunc crc_impl;
static gboolean force_table;

static CrcFunc
choose (void)
{
#if defined(VHDX_CRC32C_X86) || defined(VHDX_CRC32C_ARM)
        if (!force_table && cpu_has_instruction ())
                return crc_by_instruction;
#endif
        return crc_by_table;
}

guint32
vhdx_crc32c (guint32 crc, const void *data, gsize len)
{
        CrcFunc impl = __atomic_load_n (&crc_impl, __ATOMIC_ACQUIRE);

        if (G_UNLIKELY (impl == NULL)) {
                impl = choose ();
                __atomic_store_n (&crc_impl, impl, __ATOMIC_RELEASE);
        }
        __atomic_fetch_add (&bytes_checksummed, (guint64) len, __ATOMIC_RELAXED);
        return ~impl (~crc, data, len);
}

gboolean
vhdx_crc32c_set_table_only (gboolean table_only)
{
        force_table = table_only;
        __atomic_store_n (&crc_impl, choose (), __ATOMIC_RELEASE);
        return vhdx_crc32c_uses_instruction () == !table_only;
}

gboolean
vhdx_crc32c_uses_instruction (void)
{
        CrcFunc impl = __atomic_load_n (&crc_impl, __ATOMIC_ACQUIRE);

        if (impl == NULL)
                impl = choose ();
        return impl != crc_by_table;
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
