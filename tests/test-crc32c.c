/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CRC-32C against published test vectors (RFC 3720 appendix B.4, and the
 * check value of the Castagnoli polynomial). */
#include "vhdx-crc32c.h"

#include <string.h>

static void
test_check_value (void)
{
        g_assert_cmphex (vhdx_crc32c (0, "123456789", 9), ==, 0xE3069283);
        g_assert_cmphex (vhdx_crc32c (0, "", 0), ==, 0);
}

static void
test_rfc3720 (void)
{
        guint8 buf[32];

        memset (buf, 0, sizeof buf);
        g_assert_cmphex (vhdx_crc32c (0, buf, sizeof buf), ==, 0x8A9136AA);
        memset (buf, 0xff, sizeof buf);
        g_assert_cmphex (vhdx_crc32c (0, buf, sizeof buf), ==, 0x62A8AB43);
        for (guint i = 0; i < sizeof buf; i++)
                buf[i] = (guint8) i;
        g_assert_cmphex (vhdx_crc32c (0, buf, sizeof buf), ==, 0x46DD794E);
        for (guint i = 0; i < sizeof buf; i++)
                buf[i] = (guint8) (31 - i);
        g_assert_cmphex (vhdx_crc32c (0, buf, sizeof buf), ==, 0x113FDB5C);
}

static void
test_chained_equals_whole (void)
{
        guint8 buf[1000];
        guint32 whole;

        for (guint i = 0; i < sizeof buf; i++)
                buf[i] = (guint8) (i * 7 + 3);
        whole = vhdx_crc32c (0, buf, sizeof buf);
        for (gsize split = 0; split <= sizeof buf; split += 37) {
                guint32 c = vhdx_crc32c (0, buf, split);
                c = vhdx_crc32c (c, buf + split, sizeof buf - split);
                g_assert_cmphex (c, ==, whole);
        }
}

static void
test_zero_field (void)
{
        guint8 buf[64];

        for (guint i = 0; i < sizeof buf; i++)
                buf[i] = (guint8) i;
        {
                guint32 with_field = vhdx_crc32c_with_zero_field (buf, sizeof buf, 4);
                memset (buf + 4, 0, 4);
                g_assert_cmphex (with_field, ==, vhdx_crc32c (0, buf, sizeof buf));
        }
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);
        g_test_add_func ("/crc32c/check-value", test_check_value);
        g_test_add_func ("/crc32c/rfc3720", test_rfc3720);
        g_test_add_func ("/crc32c/chained", test_chained_equals_whole);
        g_test_add_func ("/crc32c/zero-field", test_zero_field);
        return g_test_run ();
}
