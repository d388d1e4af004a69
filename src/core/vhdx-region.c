/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The two copies of the region table (see vhdx-region.h). */
#include "vhdx-region.h"

#include "vhdx-crc32c.h"
#include "vhdx-private.h"
#include "vhdx-problems.h"

void
vhdx_region_table_clear (VhdxRegionTable *table)
{
        g_clear_pointer (&table->entries, g_array_unref);
}

static int
compare_by_offset (gconstpointer a, gconstpointer b)
{
        const VhdxRegionEntry *ra = a, *rb = b;

        return ra->file_offset < rb->file_offset ? -1 : ra->file_offset > rb->file_offset;
}

gboolean
vhdx_region_table_parse (const guint8 *buf,
                         gsize len,
                         guint64 file_offset,
                         const char *name,
                         guint64 file_size,
                         VhdxRegionTable *out,
                         GError **error)
{
        g_autoptr (GArray) entries = NULL;
        g_autoptr (GArray) sorted = NULL;
        guint32 stored, computed, count;
        gboolean have_bat = FALSE, have_metadata = FALSE;

        if (len < VHDX_REGION_TABLE_SIZE) {
                vhdx_set_error (error, VHDX_ERROR_TRUNCATED, name, file_offset,
                                _ ("expected %u bytes, found %zu"), (guint) VHDX_REGION_TABLE_SIZE,
                                len);
                return FALSE;
        }
        if (memcmp (buf + VHDX_REGION_OFF_SIGNATURE, VHDX_REGION_TABLE_SIGNATURE, 4) != 0) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, name, file_offset,
                                _ ("expected signature “regi”, found 0x%08x"), vhdx_get_le32 (buf));
                return FALSE;
        }
        stored = vhdx_get_le32 (buf + VHDX_REGION_OFF_CHECKSUM);
        computed =
                vhdx_crc32c_with_zero_field (buf, VHDX_REGION_TABLE_SIZE, VHDX_REGION_OFF_CHECKSUM);
        if (stored != computed) {
                vhdx_set_error (error, VHDX_ERROR_CHECKSUM, name, file_offset,
                                _ ("stored checksum 0x%08x, computed 0x%08x"), stored, computed);
                return FALSE;
        }
        count = vhdx_get_le32 (buf + VHDX_REGION_OFF_ENTRY_COUNT);
        if (count > VHDX_REGION_MAX_ENTRIES) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, name, file_offset,
                                _ ("entry count %u exceeds the limit of %u"), count,
                                (guint) VHDX_REGION_MAX_ENTRIES);
                return FALSE;
        }

        entries = g_array_sized_new (FALSE, TRUE, sizeof (VhdxRegionEntry), count);
        for (guint32 i = 0; i < count; i++) {
                const guint8 *e = buf + VHDX_REGION_HEADER_SIZE + i * VHDX_REGION_ENTRY_SIZE;
                guint64 entry_offset = file_offset + VHDX_REGION_HEADER_SIZE +
                                       (guint64) i * VHDX_REGION_ENTRY_SIZE;
                g_autofree char *what = g_strdup_printf (_ ("%s entry %u"), name, i);
                VhdxRegionEntry r;
                guint64 end;
                char guid[VHDX_GUID_STRING_LENGTH + 1];

                r.guid = vhdx_get_guid (e + VHDX_REGION_ENTRY_OFF_GUID);
                r.file_offset = vhdx_get_le64 (e + VHDX_REGION_ENTRY_OFF_FILE_OFFSET);
                r.length = vhdx_get_le32 (e + VHDX_REGION_ENTRY_OFF_LENGTH);
                r.required = (vhdx_get_le32 (e + VHDX_REGION_ENTRY_OFF_REQUIRED) & 1) != 0;
                vhdx_guid_to_string_buf (&r.guid, guid);

                for (guint j = 0; j < entries->len; j++) {
                        if (vhdx_guid_equal (&g_array_index (entries, VhdxRegionEntry, j).guid,
                                             &r.guid)) {
                                vhdx_set_error (error, VHDX_ERROR_INVALID, what, entry_offset,
                                                _ ("region %s is listed twice"), guid);
                                return FALSE;
                        }
                }
                if (r.file_offset < VHDX_HEADER_SECTION_SIZE ||
                    r.file_offset % VHDX_STRUCTURE_ALIGNMENT != 0) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, what, entry_offset,
                                        _ ("region %s offset %" PRIu64
                                           " is not 1 MiB-aligned past the header section"),
                                        guid, r.file_offset);
                        return FALSE;
                }
                if (r.length == 0 || r.length % VHDX_STRUCTURE_ALIGNMENT != 0) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, what, entry_offset,
                                        _ ("region %s length %u is not a non-zero multiple of "
                                           "1 MiB"),
                                        guid, r.length);
                        return FALSE;
                }
                if (!vhdx_add_u64 (r.file_offset, r.length, &end) || end > file_size) {
                        vhdx_set_error (error, VHDX_ERROR_TRUNCATED, what, entry_offset,
                                        _ ("region %s (offset %" PRIu64
                                           ", length %u) ends past the end of the file "
                                           "(%" PRIu64 " bytes)"),
                                        guid, r.file_offset, r.length, file_size);
                        return FALSE;
                }
                if (vhdx_guid_equal (&r.guid, &vhdx_guid_region_bat)) {
                        out->bat = r;
                        have_bat = TRUE;
                } else if (vhdx_guid_equal (&r.guid, &vhdx_guid_region_metadata)) {
                        out->metadata = r;
                        have_metadata = TRUE;
                } else if (r.required) {
                        vhdx_set_error (error, VHDX_ERROR_NOT_SUPPORTED, what, entry_offset,
                                        _ ("unknown region %s is marked required"), guid);
                        return FALSE;
                }
                g_array_append_val (entries, r);
        }

        sorted = g_array_copy (entries);
        g_array_sort (sorted, compare_by_offset);
        for (guint i = 1; i < sorted->len; i++) {
                const VhdxRegionEntry *a = &g_array_index (sorted, VhdxRegionEntry, i - 1);
                const VhdxRegionEntry *b = &g_array_index (sorted, VhdxRegionEntry, i);
                if (a->file_offset + a->length > b->file_offset) {
                        char ga[VHDX_GUID_STRING_LENGTH + 1], gb[VHDX_GUID_STRING_LENGTH + 1];
                        vhdx_guid_to_string_buf (&a->guid, ga);
                        vhdx_guid_to_string_buf (&b->guid, gb);
                        vhdx_set_error (error, VHDX_ERROR_INVALID, name, file_offset,
                                        _ ("regions %s and %s overlap at file offset "
                                           "%" PRIu64),
                                        ga, gb, b->file_offset);
                        return FALSE;
                }
        }
        if (!have_bat || !have_metadata) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, name, file_offset,
                                _ ("the required %s region is missing"),
                                !have_bat ? "BAT" : _ ("metadata"));
                return FALSE;
        }
        out->entries = g_steal_pointer (&entries);
        return TRUE;
}

gboolean
vhdx_region_tables_read (VhdxIo *io,
                         guint64 file_size,
                         VhdxRegionTable *out,
                         guint *index,
                         GPtrArray *problems,
                         GError **error)
{
        static const guint64 offsets[2] = { VHDX_REGION_TABLE1_OFFSET, VHDX_REGION_TABLE2_OFFSET };
        const char *names[2] = { _ ("region table 1"), _ ("region table 2") };
        g_autofree guint8 *buf = g_malloc (VHDX_REGION_TABLE_SIZE);
        g_autoptr (GError) first_error = NULL;
        g_autoptr (GError) second_error = NULL;
        int code;

        if (!vhdx_io_read_exact (io, buf, VHDX_REGION_TABLE_SIZE, offsets[0], names[0],
                                 &first_error) ||
            !vhdx_region_table_parse (buf, VHDX_REGION_TABLE_SIZE, offsets[0], names[0], file_size,
                                      out, &first_error)) {
                /* Only damage sends us to the copy: a valid table that asks for
                 * an unsupported feature, or an I/O failure, is final. */
                if (first_error->domain != VHDX_ERROR ||
                    first_error->code == VHDX_ERROR_NOT_SUPPORTED) {
                        g_propagate_error (error, g_steal_pointer (&first_error));
                        return FALSE;
                }
        } else {
                *index = 1;
                return TRUE;
        }

        if (vhdx_io_read_exact (io, buf, VHDX_REGION_TABLE_SIZE, offsets[1], names[1],
                                &second_error) &&
            vhdx_region_table_parse (buf, VHDX_REGION_TABLE_SIZE, offsets[1], names[1], file_size,
                                     out, &second_error)) {
                vhdx_problems_add (problems, VHDX_SEVERITY_WARNING, names[0], offsets[0],
                                   _ ("damaged, the other copy is used: %s"), first_error->message);
                *index = 2;
                return TRUE;
        }
        if (second_error->domain != VHDX_ERROR || second_error->code == VHDX_ERROR_NOT_SUPPORTED) {
                g_propagate_error (error, g_steal_pointer (&second_error));
                return FALSE;
        }
        code = first_error->code == second_error->code ? first_error->code : VHDX_ERROR_INVALID;
        g_set_error (error, VHDX_ERROR, code, _ ("No valid region table: %s; %s"),
                     first_error->message, second_error->message);
        return FALSE;
}
