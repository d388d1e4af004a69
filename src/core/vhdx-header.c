/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The file identifier and the two headers: parsing, choosing, updating. */
#include "vhdx-header.h"

#include "vhdx-crc32c.h"
#include "vhdx-private.h"
#include "vhdx-problems.h"

gboolean
vhdx_probe_bytes (const void *start, gsize len)
{
        return len >= VHDX_PROBE_SIZE &&
               memcmp (start, VHDX_FILE_ID_SIGNATURE, VHDX_PROBE_SIZE) == 0;
}

gboolean
vhdx_probe (VhdxIo *io, gboolean *is_vhdx, GError **error)
{
        guint8 start[VHDX_PROBE_SIZE];
        gsize n_read = 0;

        if (!io->vtable->pread (io, start, sizeof start, 0, &n_read, error))
                return FALSE;
        *is_vhdx = vhdx_probe_bytes (start, n_read);
        return TRUE;
}

gboolean
vhdx_file_identifier_parse (const guint8 *buf, gsize len, char **creator, GError **error)
{
        gunichar2 text[VHDX_FILE_ID_CREATOR_SIZE / 2];
        glong n_chars = 0;

        if (len < VHDX_FILE_ID_CREATOR_OFFSET + VHDX_FILE_ID_CREATOR_SIZE) {
                vhdx_set_error (error, VHDX_ERROR_TRUNCATED, _ ("file identifier"), 0,
                                _ ("expected %u bytes, found %zu"),
                                (guint) (VHDX_FILE_ID_CREATOR_OFFSET + VHDX_FILE_ID_CREATOR_SIZE),
                                len);
                return FALSE;
        }
        if (memcmp (buf, VHDX_FILE_ID_SIGNATURE, 8) != 0) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("file identifier"), 0,
                                _ ("expected signature “vhdxfile”, found bytes "
                                   "%02x %02x %02x %02x %02x %02x %02x %02x"),
                                buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7]);
                return FALSE;
        }
        /* The creator is diagnostic only: undecodable text becomes empty. */
        for (glong i = 0; i < (glong) G_N_ELEMENTS (text); i++) {
                text[i] = vhdx_get_le16 (buf + VHDX_FILE_ID_CREATOR_OFFSET + 2 * i);
                if (text[i] == 0)
                        break;
                n_chars++;
        }
        *creator = g_utf16_to_utf8 (text, n_chars, NULL, NULL, NULL);
        if (*creator == NULL)
                *creator = g_strdup ("");
        return TRUE;
}

gboolean
vhdx_header_parse (const guint8 *buf,
                   gsize len,
                   guint64 file_offset,
                   const char *name,
                   VhdxHeader *out,
                   GError **error)
{
        guint32 stored, computed;

        if (len < VHDX_HEADER_SIZE) {
                vhdx_set_error (error, VHDX_ERROR_TRUNCATED, name, file_offset,
                                _ ("expected %u bytes, found %zu"), (guint) VHDX_HEADER_SIZE, len);
                return FALSE;
        }
        if (memcmp (buf + VHDX_HEADER_OFF_SIGNATURE, VHDX_HEADER_SIGNATURE, 4) != 0) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, name, file_offset,
                                _ ("expected signature “head”, found 0x%08x"), vhdx_get_le32 (buf));
                return FALSE;
        }
        stored = vhdx_get_le32 (buf + VHDX_HEADER_OFF_CHECKSUM);
        computed = vhdx_crc32c_with_zero_field (buf, VHDX_HEADER_SIZE, VHDX_HEADER_OFF_CHECKSUM);
        if (stored != computed) {
                vhdx_set_error (error, VHDX_ERROR_CHECKSUM, name, file_offset,
                                _ ("stored checksum 0x%08x, computed 0x%08x"), stored, computed);
                return FALSE;
        }
        out->sequence = vhdx_get_le64 (buf + VHDX_HEADER_OFF_SEQUENCE);
        out->file_write_guid = vhdx_get_guid (buf + VHDX_HEADER_OFF_FILE_WRITE_GUID);
        out->data_write_guid = vhdx_get_guid (buf + VHDX_HEADER_OFF_DATA_WRITE_GUID);
        out->log_guid = vhdx_get_guid (buf + VHDX_HEADER_OFF_LOG_GUID);
        out->log_version = vhdx_get_le16 (buf + VHDX_HEADER_OFF_LOG_VERSION);
        out->version = vhdx_get_le16 (buf + VHDX_HEADER_OFF_VERSION);
        out->log_length = vhdx_get_le32 (buf + VHDX_HEADER_OFF_LOG_LENGTH);
        out->log_offset = vhdx_get_le64 (buf + VHDX_HEADER_OFF_LOG_OFFSET);
        return TRUE;
}

static gboolean
check_current_header (const VhdxHeader *h,
                      const char *name,
                      guint64 file_offset,
                      guint64 file_size,
                      GError **error)
{
        guint64 log_end;

        if (h->version != VHDX_HEADER_VERSION) {
                vhdx_set_error (error, VHDX_ERROR_NOT_SUPPORTED, name, file_offset,
                                _ ("format version %u is not supported (expected %u)"), h->version,
                                VHDX_HEADER_VERSION);
                return FALSE;
        }
        if (h->log_version != VHDX_LOG_VERSION) {
                vhdx_set_error (error, VHDX_ERROR_NOT_SUPPORTED, name, file_offset,
                                _ ("log version %u is not supported (expected %u)"), h->log_version,
                                VHDX_LOG_VERSION);
                return FALSE;
        }
        if (h->log_length == 0 && vhdx_guid_is_zero (&h->log_guid))
                return TRUE;
        if (h->log_length == 0 || h->log_length % VHDX_STRUCTURE_ALIGNMENT != 0) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, name, file_offset,
                                _ ("log length %u is not a non-zero multiple of 1 MiB"),
                                h->log_length);
                return FALSE;
        }
        if (h->log_offset < VHDX_HEADER_SECTION_SIZE ||
            h->log_offset % VHDX_STRUCTURE_ALIGNMENT != 0) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, name, file_offset,
                                _ ("log offset %" PRIu64
                                   " is not 1 MiB-aligned past the header section"),
                                h->log_offset);
                return FALSE;
        }
        if (!vhdx_add_u64 (h->log_offset, h->log_length, &log_end) || log_end > file_size) {
                vhdx_set_error (error, VHDX_ERROR_TRUNCATED, name, file_offset,
                                _ ("the log (offset %" PRIu64 ", length %u) ends past "
                                   "the end of the file (%" PRIu64 " bytes)"),
                                h->log_offset, h->log_length, file_size);
                return FALSE;
        }
        return TRUE;
}

static gboolean headers_select (VhdxIo *io,
                                guint64 file_size,
                                VhdxHeader *current,
                                guint *index,
                                GPtrArray *problems,
                                GError *errors[2],
                                GError **error);

gboolean
vhdx_headers_read (VhdxIo *io,
                   guint64 file_size,
                   VhdxHeader *current,
                   guint *index,
                   GPtrArray *problems,
                   GError **error)
{
        GError *errors[2] = { NULL, NULL };
        gboolean ok = headers_select (io, file_size, current, index, problems, errors, error);

        g_clear_error (&errors[0]);
        g_clear_error (&errors[1]);
        return ok;
}

static gboolean
headers_select (VhdxIo *io,
                guint64 file_size,
                VhdxHeader *current,
                guint *index,
                GPtrArray *problems,
                GError *errors[2],
                GError **error)
{
        static const guint64 offsets[2] = { VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET };
        g_autofree guint8 *buf = g_malloc (2 * VHDX_HEADER_SIZE);
        VhdxHeader headers[2];
        const char *names[2] = { _ ("header 1"), _ ("header 2") };
        guint chosen;

        for (guint i = 0; i < 2; i++) {
                guint8 *b = buf + i * VHDX_HEADER_SIZE;
                if (!vhdx_io_read_exact (io, b, VHDX_HEADER_SIZE, offsets[i], names[i], &errors[i]))
                        continue;
                if (!vhdx_header_parse (b, VHDX_HEADER_SIZE, offsets[i], names[i], &headers[i],
                                        &errors[i]))
                        continue;
        }
        for (guint i = 0; i < 2; i++) {
                if (errors[i] != NULL && errors[i]->domain != VHDX_ERROR) {
                        /* An I/O failure is not damage: report it as it is. */
                        g_propagate_error (error, g_steal_pointer (&errors[i]));
                        return FALSE;
                }
        }

        if (errors[0] != NULL && errors[1] != NULL) {
                int code =
                        errors[0]->code == errors[1]->code ? errors[0]->code : VHDX_ERROR_INVALID;
                g_set_error (error, VHDX_ERROR, code, _ ("No valid header: %s; %s"),
                             errors[0]->message, errors[1]->message);
                return FALSE;
        }
        if (errors[0] != NULL || errors[1] != NULL) {
                guint bad = errors[0] != NULL ? 0 : 1;
                vhdx_problems_add (problems, VHDX_SEVERITY_WARNING, names[bad], offsets[bad],
                                   _ ("damaged, the other copy is used: %s"), errors[bad]->message);
                chosen = 1 - bad;
        } else if (headers[0].sequence > headers[1].sequence) {
                chosen = 0;
        } else if (headers[1].sequence > headers[0].sequence) {
                chosen = 1;
        } else if (memcmp (buf, buf + VHDX_HEADER_SIZE, VHDX_HEADER_SIZE) == 0) {
                /* Equal sequence numbers are invalid by the letter of the
                 * specification, but Disk2VHD writes two identical headers. */
                chosen = 0;
        } else {
                vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("header 2"), VHDX_HEADER2_OFFSET,
                                _ ("same sequence number %" PRIu64
                                   " as header 1 but different contents"),
                                headers[1].sequence);
                return FALSE;
        }

        if (!check_current_header (&headers[chosen], names[chosen], offsets[chosen], file_size,
                                   error))
                return FALSE;
        *current = headers[chosen];
        *index = chosen + 1;
        return TRUE;
}

void
vhdx_header_serialize (const VhdxHeader *header, guint8 *buf)
{
        memset (buf, 0, VHDX_HEADER_SIZE);
        memcpy (buf + VHDX_HEADER_OFF_SIGNATURE, VHDX_HEADER_SIGNATURE, 4);
        vhdx_put_le64 (buf + VHDX_HEADER_OFF_SEQUENCE, header->sequence);
        memcpy (buf + VHDX_HEADER_OFF_FILE_WRITE_GUID, header->file_write_guid.bytes, 16);
        memcpy (buf + VHDX_HEADER_OFF_DATA_WRITE_GUID, header->data_write_guid.bytes, 16);
        memcpy (buf + VHDX_HEADER_OFF_LOG_GUID, header->log_guid.bytes, 16);
        vhdx_put_le16 (buf + VHDX_HEADER_OFF_LOG_VERSION, header->log_version);
        vhdx_put_le16 (buf + VHDX_HEADER_OFF_VERSION, header->version);
        vhdx_put_le32 (buf + VHDX_HEADER_OFF_LOG_LENGTH, header->log_length);
        vhdx_put_le64 (buf + VHDX_HEADER_OFF_LOG_OFFSET, header->log_offset);
        vhdx_put_le32 (buf + VHDX_HEADER_OFF_CHECKSUM,
                       vhdx_crc32c_with_zero_field (buf, VHDX_HEADER_SIZE,
                                                    VHDX_HEADER_OFF_CHECKSUM));
}

gboolean
vhdx_headers_write (VhdxIo *io, VhdxHeader *header, guint current_index, GError **error)
{
        static const guint64 offsets[2] = { VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET };
        g_autofree guint8 *buf = g_malloc (VHDX_HEADER_SIZE);
        guint other = current_index == 1 ? 1 : 0; /* array index of the non-current copy */
        guint64 sequence = header->sequence;

        g_return_val_if_fail (current_index == 1 || current_index == 2, FALSE);

        if (!vhdx_io_is_writable (io)) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("The image was not opened for writing"));
                return FALSE;
        }
        for (guint step = 0; step < 2; step++) {
                guint index = step == 0 ? other : 1 - other;
                header->sequence = sequence + 1 + step;
                vhdx_header_serialize (header, buf);
                if (!vhdx_io_write (io, buf, VHDX_HEADER_SIZE, offsets[index], error) ||
                    !vhdx_io_flush (io, error))
                        return FALSE;
        }
        return TRUE;
}
