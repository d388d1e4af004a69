/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Appending entries to the log ring (see vhdx-log-writer.h). */
#include "vhdx-log-writer.h"

#include "vhdx-crc32c.h"
#include "vhdx-private.h"

typedef struct {
        guint64 file_offset;
        guint64 length;
        guint8 *data; /* 4 KiB, or NULL for zeros */
} Pending;

struct _VhdxLogWriter {
        VhdxIo *io;
        guint64 log_offset;
        guint32 log_length;
        VhdxGuid log_guid;
        guint32 position;
        guint32 tail;
        guint64 sequence;
        GArray *pending;
};

static void
pending_clear (gpointer data)
{
        g_free (((Pending *) data)->data);
}

VhdxLogWriter *
vhdx_log_writer_new (VhdxIo *io,
                     guint64 log_offset,
                     guint32 log_length,
                     const VhdxGuid *log_guid,
                     guint32 position,
                     guint64 sequence)
{
        VhdxLogWriter *writer;

        g_return_val_if_fail (log_length % VHDX_LOG_SECTOR_SIZE == 0 && log_length > 0, NULL);
        g_return_val_if_fail (position % VHDX_LOG_SECTOR_SIZE == 0 && position < log_length, NULL);
        g_return_val_if_fail (sequence > 0, NULL);

        writer = g_new0 (VhdxLogWriter, 1);
        writer->io = io;
        writer->log_offset = log_offset;
        writer->log_length = log_length;
        writer->log_guid = *log_guid;
        writer->position = position;
        writer->tail = position;
        writer->sequence = sequence;
        writer->pending = g_array_new (FALSE, FALSE, sizeof (Pending));
        g_array_set_clear_func (writer->pending, pending_clear);
        return writer;
}

void
vhdx_log_writer_free (VhdxLogWriter *writer)
{
        if (writer == NULL)
                return;
        g_array_unref (writer->pending);
        g_free (writer);
}

void
vhdx_log_writer_add_data (VhdxLogWriter *writer, guint64 file_offset, const guint8 *sector)
{
        Pending p = { file_offset, VHDX_LOG_SECTOR_SIZE, g_memdup2 (sector, VHDX_LOG_SECTOR_SIZE) };

        g_return_if_fail (file_offset % VHDX_LOG_SECTOR_SIZE == 0);
        g_array_append_val (writer->pending, p);
}

void
vhdx_log_writer_add_zero (VhdxLogWriter *writer, guint64 file_offset, guint64 length)
{
        Pending p = { file_offset, length, NULL };

        g_return_if_fail (file_offset % VHDX_LOG_SECTOR_SIZE == 0);
        g_return_if_fail (length % VHDX_LOG_SECTOR_SIZE == 0);
        g_array_append_val (writer->pending, p);
}

void
vhdx_log_writer_start_sequence (VhdxLogWriter *writer)
{
        writer->tail = writer->position;
}

guint32
vhdx_log_writer_get_position (VhdxLogWriter *writer)
{
        return writer->position;
}

guint64
vhdx_log_writer_get_sequence (VhdxLogWriter *writer)
{
        return writer->sequence;
}

gboolean
vhdx_log_writer_commit (VhdxLogWriter *writer,
                        guint64 flushed_file_offset,
                        guint64 last_file_offset,
                        GError **error)
{
        guint32 count = writer->pending->len;
        guint64 header_bytes =
                VHDX_LOG_ENTRY_HEADER_SIZE + (guint64) count * VHDX_LOG_DESCRIPTOR_SIZE;
        guint32 n_desc_sectors =
                (guint32) ((header_bytes + VHDX_LOG_SECTOR_SIZE - 1) / VHDX_LOG_SECTOR_SIZE);
        guint32 n_data = 0, data_index = 0;
        guint64 length;
        g_autofree guint8 *entry = NULL;

        for (guint i = 0; i < count; i++) {
                if (g_array_index (writer->pending, Pending, i).data != NULL)
                        n_data++;
        }
        length = (guint64) (n_desc_sectors + n_data) * VHDX_LOG_SECTOR_SIZE;
        if (length > writer->log_length) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_LOG,
                             _ ("A log entry of %" PRIu64 " bytes does not fit in a "
                                "log of %u bytes"),
                             length, writer->log_length);
                return FALSE;
        }
        if (!vhdx_io_is_writable (writer->io)) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("The image was not opened for writing"));
                return FALSE;
        }

        entry = g_malloc0 (length);
        memcpy (entry + VHDX_LOG_OFF_SIGNATURE, VHDX_LOG_ENTRY_SIGNATURE, 4);
        vhdx_put_le32 (entry + VHDX_LOG_OFF_ENTRY_LENGTH, (guint32) length);
        vhdx_put_le32 (entry + VHDX_LOG_OFF_TAIL, writer->tail);
        vhdx_put_le64 (entry + VHDX_LOG_OFF_SEQUENCE, writer->sequence);
        vhdx_put_le32 (entry + VHDX_LOG_OFF_DESCRIPTOR_COUNT, count);
        memcpy (entry + VHDX_LOG_OFF_LOG_GUID, writer->log_guid.bytes, 16);
        vhdx_put_le64 (entry + VHDX_LOG_OFF_FLUSHED_FILE_OFFSET, flushed_file_offset);
        vhdx_put_le64 (entry + VHDX_LOG_OFF_LAST_FILE_OFFSET, last_file_offset);

        for (guint i = 0; i < count; i++) {
                const Pending *p = &g_array_index (writer->pending, Pending, i);
                guint8 *d =
                        entry + VHDX_LOG_ENTRY_HEADER_SIZE + (gsize) i * VHDX_LOG_DESCRIPTOR_SIZE;

                vhdx_put_le64 (d + VHDX_LOG_DESC_OFF_FILE_OFFSET, p->file_offset);
                vhdx_put_le64 (d + VHDX_LOG_DESC_OFF_SEQUENCE, writer->sequence);
                if (p->data == NULL) {
                        memcpy (d, VHDX_LOG_ZERO_SIGNATURE, 4);
                        vhdx_put_le64 (d + VHDX_LOG_DESC_OFF_ZERO_LENGTH, p->length);
                } else {
                        guint8 *s = entry +
                                    (gsize) (n_desc_sectors + data_index) * VHDX_LOG_SECTOR_SIZE;
                        memcpy (d, VHDX_LOG_DATA_DESCRIPTOR_SIGNATURE, 4);
                        memcpy (d + VHDX_LOG_DESC_OFF_LEADING_BYTES, p->data,
                                VHDX_LOG_LEADING_BYTES);
                        memcpy (d + VHDX_LOG_DESC_OFF_TRAILING_BYTES,
                                p->data + VHDX_LOG_SECTOR_SIZE - VHDX_LOG_TRAILING_BYTES,
                                VHDX_LOG_TRAILING_BYTES);
                        memcpy (s, VHDX_LOG_DATA_SIGNATURE, 4);
                        vhdx_put_le32 (s + VHDX_LOG_DATA_OFF_SEQUENCE_HIGH,
                                       (guint32) (writer->sequence >> 32));
                        memcpy (s + VHDX_LOG_DATA_OFF_DATA, p->data + VHDX_LOG_LEADING_BYTES,
                                VHDX_LOG_SECTOR_SIZE - VHDX_LOG_LEADING_BYTES -
                                        VHDX_LOG_TRAILING_BYTES);
                        vhdx_put_le32 (s + VHDX_LOG_DATA_OFF_SEQUENCE_LOW,
                                       (guint32) writer->sequence);
                        data_index++;
                }
        }
        vhdx_put_le32 (entry + VHDX_LOG_OFF_CHECKSUM,
                       vhdx_crc32c_with_zero_field (entry, length, VHDX_LOG_OFF_CHECKSUM));

        /* In two pieces where the entry wraps past the end of the ring. */
        for (guint64 done = 0; done < length;) {
                guint64 at = (writer->position + done) % writer->log_length;
                gsize n = (gsize) MIN (length - done, writer->log_length - at);

                if (!vhdx_io_write (writer->io, entry + done, n, writer->log_offset + at, error))
                        return FALSE;
                done += n;
        }
        if (!vhdx_io_flush (writer->io, error))
                return FALSE;

        writer->position = (guint32) ((writer->position + length) % writer->log_length);
        writer->sequence++;
        g_array_set_size (writer->pending, 0);
        return TRUE;
}
