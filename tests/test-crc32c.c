/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CRC-32C against published test vectors (RFC 3720 appendix B.4, and the
 * check value of the Castagnoli polynomial), by the CPU's instruction and by
 * the tables, and the two against each other. */
#include "vhdx-crc32c.h"

#include <string.h>

/* Each vector test first chooses its implementation: @table_only or the CPU's. */
static void
use (gconstpointer table_only)
{
        if (GPOINTER_TO_INT (table_only)) {
                g_assert_true (vhdx_crc32c_set_table_only (TRUE));
                g_assert_false (vhdx_crc32c_uses_instruction ());
        } else {
                vhdx_crc32c_set_table_only (FALSE);
        }
}

static void
test_check_value (gconstpointer table_only)
{
        use (table_only);
        g_assert_cmphex (vhdx_crc32c (0, "123456789", 9), ==, 0xE3069283);
        g_assert_cmphex (vhdx_crc32c (0, "", 0), ==, 0);
}

static void
test_rfc3720 (gconstpointer table_only)
{
        guint8 buf[32];

        use (table_only);
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
test_chained_equals_whole (gconstpointer table_only)
{
        guint8 buf[1000];
        guint32 whole;

        use (table_only);
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
test_zero_field (gconstpointer table_only)
{
        guint8 buf[64];

        use (table_only);
        for (guint i = 0; i < sizeof buf; i++)
                buf[i] = (guint8) i;
        {
                guint32 with_field = vhdx_crc32c_with_zero_field (buf, sizeof buf, 4);
                memset (buf + 4, 0, 4);
                g_assert_cmphex (with_field, ==, vhdx_crc32c (0, buf, sizeof buf));
        }
}

/* Every length up to 80 at every alignment up to 8, then a long buffer:
 * the instruction's byte loops at both ends and its word loop. */
static void
test_instruction_equals_tables (void)
{
        gsize len = 3 * 4096 + 5;
        guint8 *buf = g_malloc (len + 8);
        guint64 before;

        if (!vhdx_crc32c_set_table_only (FALSE)) {
                g_test_skip ("this CPU has no CRC-32C instruction");
                g_free (buf);
                return;
        }
        for (gsize i = 0; i < len + 8; i++)
                buf[i] = (guint8) (i * 131 + (i >> 7));
        for (gsize offset = 0; offset < 8; offset++) {
                for (gsize n = 0; n <= 80; n++) {
                        guint32 hw, table;
                        vhdx_crc32c_set_table_only (FALSE);
                        hw = vhdx_crc32c (0x12345678, buf + offset, n);
                        vhdx_crc32c_set_table_only (TRUE);
                        table = vhdx_crc32c (0x12345678, buf + offset, n);
                        g_assert_cmphex (hw, ==, table);
                }
        }
        vhdx_crc32c_set_table_only (FALSE);
        before = vhdx_crc32c_get_bytes_checksummed ();
        {
                guint32 hw = vhdx_crc32c (0, buf + 3, len);
                vhdx_crc32c_set_table_only (TRUE);
                g_assert_cmphex (hw, ==, vhdx_crc32c (0, buf + 3, len));
        }
        /* Both count what they checksum. */
        g_assert_cmpuint (vhdx_crc32c_get_bytes_checksummed () - before, ==, 2 * len);
        vhdx_crc32c_set_table_only (FALSE);
        g_free (buf);
}

/* The vectors, once with whatever the CPU offers and once with the tables. */
static void
add_vector_tests (const char *prefix, gboolean table_only)
{
        static const struct {
                const char *name;
                GTestDataFunc func;
        } tests[] = {
                { "check-value", test_check_value },
                { "rfc3720", test_rfc3720 },
                { "chained", test_chained_equals_whole },
                { "zero-field", test_zero_field },
        };

        for (gsize i = 0; i < G_N_ELEMENTS (tests); i++) {
                char *path = g_strdup_printf ("/crc32c/%s/%s", prefix, tests[i].name);
                g_test_add_data_func (path, GINT_TO_POINTER (table_only), tests[i].func);
                g_free (path);
        }
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);
        add_vector_tests ("default", FALSE);
        add_vector_tests ("tables", TRUE);
        g_test_add_func ("/crc32c/instruction-equals-tables", test_instruction_equals_tables);
        return g_test_run ();
}
