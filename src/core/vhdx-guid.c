/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GUIDs: comparison, text form, random ones, and the GUIDs the format defines. */
#include "vhdx-format.h"

#include <stdio.h>

/* GUIDs in on-disk byte order: Data1..Data3 little-endian, Data4 as is. */
#define GUID_BYTES(d1, d2, d3, b0, b1, b2, b3, b4, b5, b6, b7)                                     \
        {                                                                                          \
                {                                                                                  \
                        (d1) & 0xff, ((d1) >> 8) & 0xff, ((d1) >> 16) & 0xff, ((d1) >> 24) & 0xff, \
                                (d2) &0xff, ((d2) >> 8) & 0xff, (d3) &0xff, ((d3) >> 8) & 0xff,    \
                                b0, b1, b2, b3, b4, b5, b6, b7,                                    \
                }                                                                                  \
        }

const VhdxGuid vhdx_guid_region_bat =
        GUID_BYTES (0x2DC27766, 0xF623, 0x4200, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08);
const VhdxGuid vhdx_guid_region_metadata =
        GUID_BYTES (0x8B7CA206, 0x4790, 0x4B9A, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E);
const VhdxGuid vhdx_guid_item_file_parameters =
        GUID_BYTES (0xCAA16737, 0xFA36, 0x4D43, 0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B);
const VhdxGuid vhdx_guid_item_virtual_disk_size =
        GUID_BYTES (0x2FA54224, 0xCD1B, 0x4876, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8);
const VhdxGuid vhdx_guid_item_virtual_disk_id =
        GUID_BYTES (0xBECA12AB, 0xB2E6, 0x4523, 0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46);
const VhdxGuid vhdx_guid_item_logical_sector_size =
        GUID_BYTES (0x8141BF1D, 0xA96F, 0x4709, 0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F);
const VhdxGuid vhdx_guid_item_physical_sector_size =
        GUID_BYTES (0xCDA348C7, 0x445D, 0x4471, 0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56);
const VhdxGuid vhdx_guid_item_parent_locator =
        GUID_BYTES (0xA8D35F2D, 0xB30B, 0x454D, 0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C);
const VhdxGuid vhdx_guid_zero = { { 0 } };

gboolean
vhdx_guid_equal (const VhdxGuid *a, const VhdxGuid *b)
{
        return memcmp (a->bytes, b->bytes, sizeof a->bytes) == 0;
}

gboolean
vhdx_guid_is_zero (const VhdxGuid *g)
{
        return vhdx_guid_equal (g, &vhdx_guid_zero);
}

void
vhdx_guid_to_string_buf (const VhdxGuid *g, char out[VHDX_GUID_STRING_LENGTH + 1])
{
        const guint8 *b = g->bytes;

        g_snprintf (out, VHDX_GUID_STRING_LENGTH + 1,
                    "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", vhdx_get_le32 (b),
                    vhdx_get_le16 (b + 4), vhdx_get_le16 (b + 6), b[8], b[9], b[10], b[11], b[12],
                    b[13], b[14], b[15]);
}

char *
vhdx_guid_to_string (const VhdxGuid *g)
{
        char buf[VHDX_GUID_STRING_LENGTH + 1];

        vhdx_guid_to_string_buf (g, buf);
        return g_strdup (buf);
}

static gboolean
parse_hex (const char *text, guint n_digits, guint64 *out)
{
        guint64 v = 0;

        for (guint i = 0; i < n_digits; i++) {
                int d = g_ascii_xdigit_value (text[i]);
                if (d < 0)
                        return FALSE;
                v = (v << 4) | (guint) d;
        }
        *out = v;
        return TRUE;
}

gboolean
vhdx_guid_from_string (const char *text, VhdxGuid *out)
{
        static const guint groups[] = { 8, 4, 4, 4, 12 };
        guint64 v[5];
        gsize len;
        const char *p;

        g_return_val_if_fail (text != NULL, FALSE);
        g_return_val_if_fail (out != NULL, FALSE);

        len = strlen (text);
        p = text;
        if (len == VHDX_GUID_STRING_LENGTH + 2) {
                if (text[0] != '{' || text[len - 1] != '}')
                        return FALSE;
                p++;
        } else if (len != VHDX_GUID_STRING_LENGTH) {
                return FALSE;
        }
        for (guint i = 0; i < G_N_ELEMENTS (groups); i++) {
                if (!parse_hex (p, groups[i], &v[i]))
                        return FALSE;
                p += groups[i];
                if (i + 1 < G_N_ELEMENTS (groups)) {
                        if (*p != '-')
                                return FALSE;
                        p++;
                }
        }
        vhdx_put_le32 (out->bytes, (guint32) v[0]);
        vhdx_put_le16 (out->bytes + 4, (guint16) v[1]);
        vhdx_put_le16 (out->bytes + 6, (guint16) v[2]);
        out->bytes[8] = (guint8) (v[3] >> 8);
        out->bytes[9] = (guint8) v[3];
        for (guint i = 0; i < 6; i++)
                out->bytes[10 + i] = (guint8) (v[4] >> (8 * (5 - i)));
        return TRUE;
}

void
vhdx_guid_new_random (VhdxGuid *out)
{
        g_autofree char *text = g_uuid_string_random ();

        if (!vhdx_guid_from_string (text, out))
                g_assert_not_reached ();
}
