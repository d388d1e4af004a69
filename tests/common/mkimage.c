/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx-mkimage: writes crafted VHDX images, and the raw disk they must read
 * back as, for shell and Python tests.  Not installed.
 */
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

#include "vhdx-gen.h"

/* A decimal or 0x number with an optional K, M, G or T (binary) suffix. */
static gboolean
parse_size (const char *text, guint64 *out)
{
        char *end = NULL;
        guint64 value, unit = 1;

        if (text == NULL || *text == '\0' || *text == '-')
                return FALSE;
        errno = 0;
        value = g_ascii_strtoull (text, &end, 0);
        if (errno != 0 || end == text)
                return FALSE;
        switch (g_ascii_toupper (*end)) {
        case '\0':
                break;
        case 'K':
                unit = VHDX_KiB;
                break;
        case 'M':
                unit = VHDX_MiB;
                break;
        case 'G':
                unit = VHDX_GiB;
                break;
        case 'T':
                unit = VHDX_TiB;
                break;
        default:
                return FALSE;
        }
        if (*end != '\0') {
                end++;
                if (g_ascii_toupper (*end) == 'I' && g_ascii_toupper (end[1]) == 'B')
                        end += 2;
                else if (g_ascii_toupper (*end) == 'B')
                        end++;
        }
        if (*end != '\0' || value > G_MAXUINT64 / unit)
                return FALSE;
        *out = value * unit;
        return TRUE;
}

static gboolean
parse_size_u32 (const char *option, const char *text, guint32 *out, GError **error)
{
        guint64 value;

        if (!parse_size (text, &value) || value > G_MAXUINT32) {
                g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                             "%s: not a valid size: \"%s\"", option, text);
                return FALSE;
        }
        *out = (guint32) value;
        return TRUE;
}

typedef struct {
        guint64 offset;
        guint64 length;
        guint32 seed;
} PatternSpec;

static gboolean
parse_pattern (const char *text, PatternSpec *spec, GError **error)
{
        g_auto (GStrv) parts = g_strsplit (text, ":", -1);
        guint64 seed;

        if (g_strv_length (parts) != 3 || !parse_size (parts[0], &spec->offset) ||
            !parse_size (parts[1], &spec->length) || !parse_size (parts[2], &seed) ||
            seed > G_MAXUINT32) {
                g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                             "--pattern: expected OFFSET:LENGTH:SEED, got \"%s\"", text);
                return FALSE;
        }
        spec->seed = (guint32) seed;
        return TRUE;
}

static gboolean
check_params (const VhdxGenParams *params, GError **error)
{
        guint32 bs = params->block_size;

        if (bs < VHDX_MIN_BLOCK_SIZE || bs > VHDX_MAX_BLOCK_SIZE || (bs & (bs - 1)) != 0) {
                g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                             "--block-size must be a power of two from 1 MiB to 256 MiB");
                return FALSE;
        }
        if ((params->logical_sector_size != 512 && params->logical_sector_size != 4096) ||
            (params->physical_sector_size != 512 && params->physical_sector_size != 4096)) {
                g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                             "sector sizes must be 512 or 4096");
                return FALSE;
        }
        if (params->virtual_size == 0 || params->virtual_size > VHDX_MAX_VIRTUAL_SIZE ||
            params->virtual_size % params->logical_sector_size != 0) {
                g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                             "--size must be a non-zero multiple of the logical sector size, "
                             "at most 64 TiB");
                return FALSE;
        }
        if (params->log_size < VHDX_MiB || params->log_size % VHDX_MiB != 0) {
                g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                             "--log-size must be a non-zero multiple of 1 MiB");
                return FALSE;
        }
        return TRUE;
}

/*
 * Make the image at @path dirty: allocate block @block (by default the first
 * unallocated one) as a writer would, the payload written in place at the end
 * of the file and the BAT update only in the log, with LogGuid set.  The log
 * entry and the headers are the generator's own encoding.  @dirty says what
 * was written; add_dirty_block() then gives the generator's record the same
 * data, so that its raw disk is what the image reads as once the log is
 * replayed.
 */
static gboolean
make_dirty (VhdxGen *gen,
            const char *path,
            gint64 block,
            guint32 seed,
            VhdxGenDirty *dirty,
            GError **error)
{
        const VhdxGenParams *params = vhdx_gen_get_params (gen);

        if (block < 0) {
                for (block = 0; vhdx_gen_block_is_allocated (gen, (guint64) block); block++)
                        ;
        }
        if ((guint64) block * params->block_size >= params->virtual_size ||
            vhdx_gen_block_is_allocated (gen, (guint64) block)) {
                g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                             "--dirty needs an unallocated block");
                return FALSE;
        }
        return vhdx_gen_make_dirty (gen, path, (guint64) block, seed, dirty, error);
}

static void
add_dirty_block (VhdxGen *gen, const VhdxGenDirty *dirty, guint32 seed)
{
        const VhdxGenParams *params = vhdx_gen_get_params (gen);

        vhdx_gen_fill_pattern (gen, dirty->block * params->block_size, dirty->length, seed);
}

typedef struct {
        guint64 block;
        guint64 file_offset;
} BlockRecord;

/* The payload blocks stored in the file, before any dirty allocation changes the record. */
static GArray *
record_blocks (VhdxGen *gen)
{
        GArray *blocks = g_array_new (FALSE, FALSE, sizeof (BlockRecord));
        VhdxGenLayout layout;
        guint64 block;

        vhdx_gen_get_layout (gen, &layout);
        for (block = 0; block < layout.payload_blocks; block++) {
                BlockRecord record = { block, 0 };

                if (vhdx_gen_block_file_offset (gen, block, &record.file_offset))
                        g_array_append_val (blocks, record);
        }
        return blocks;
}

static void
append_guid (GString *out, const char *key, const VhdxGuid *guid, gboolean last)
{
        g_autofree char *text = vhdx_gen_guid_to_text (guid);

        g_string_append_printf (out, "  \"%s\": \"%s\"%s\n", key, text, last ? "" : ",");
}

/*
 * What the generator wrote, as JSON, from its own records: parameters,
 * identity, where the structures are and which blocks are stored where.
 * @blocks comes from record_blocks() before make_dirty().
 */
static gboolean
write_description (VhdxGen *gen,
                   GArray *blocks,
                   const VhdxGenDirty *dirty,
                   const char *path,
                   GError **error)
{
        const VhdxGenParams *params = vhdx_gen_get_params (gen);
        g_autoptr (GString) out = g_string_new ("{\n");
        VhdxGuid file_write_guid, data_write_guid, virtual_disk_id;
        VhdxGenLayout layout;
        guint64 stored_bytes = 0;
        guint i;

        vhdx_gen_get_layout (gen, &layout);
        vhdx_gen_get_guids (gen, &file_write_guid, &data_write_guid, &virtual_disk_id);
        g_string_append_printf (out, "  \"disk-type\": \"%s\",\n",
                                params->disk_type == VHDX_DISK_TYPE_FIXED ? "fixed" : "dynamic");
        g_string_append_printf (out, "  \"virtual-size\": %" G_GUINT64_FORMAT ",\n",
                                params->virtual_size);
        g_string_append_printf (out, "  \"block-size\": %u,\n", params->block_size);
        g_string_append_printf (out, "  \"logical-sector-size\": %u,\n",
                                params->logical_sector_size);
        g_string_append_printf (out, "  \"physical-sector-size\": %u,\n",
                                params->physical_sector_size);
        g_string_append_printf (out, "  \"zero-state\": %u,\n", params->zero_state);
        g_string_append_printf (out, "  \"creator\": \"%s\",\n", VHDX_GEN_CREATOR);
        append_guid (out, "file-write-guid", &file_write_guid, FALSE);
        append_guid (out, "data-write-guid", &data_write_guid, FALSE);
        append_guid (out, "virtual-disk-id", &virtual_disk_id, FALSE);
        g_string_append_printf (out, "  \"header-sequence\": %" G_GUINT64_FORMAT ",\n",
                                dirty != NULL ? dirty->header_sequence
                                              : MAX (vhdx_gen_get_header_sequence (gen, 1),
                                                     vhdx_gen_get_header_sequence (gen, 2)));
        g_string_append_printf (out, "  \"log-offset\": %" G_GUINT64_FORMAT ",\n",
                                layout.log_offset);
        g_string_append_printf (out, "  \"log-length\": %u,\n", layout.log_length);
        g_string_append_printf (out, "  \"metadata-offset\": %" G_GUINT64_FORMAT ",\n",
                                layout.metadata_offset);
        g_string_append_printf (out, "  \"bat-offset\": %" G_GUINT64_FORMAT ",\n",
                                layout.bat_offset);
        g_string_append_printf (out, "  \"bat-entries\": %" G_GUINT64_FORMAT ",\n",
                                layout.bat_entries);
        g_string_append_printf (out, "  \"chunk-ratio\": %" G_GUINT64_FORMAT ",\n",
                                layout.chunk_ratio);
        g_string_append_printf (out, "  \"payload-offset\": %" G_GUINT64_FORMAT ",\n",
                                layout.payload_offset);
        g_string_append_printf (out, "  \"payload-blocks\": %" G_GUINT64_FORMAT ",\n",
                                layout.payload_blocks);

        /* Each stored block: where it is on the disk, its length there, where it is in the file. */
        g_string_append (out, "  \"blocks\": [");
        for (i = 0; i < blocks->len; i++) {
                const BlockRecord *r = &g_array_index (blocks, BlockRecord, i);
                guint64 start = r->block * params->block_size;
                guint64 length = MIN ((guint64) params->block_size, params->virtual_size - start);

                g_string_append_printf (out,
                                        "%s\n    {\"block\": %" G_GUINT64_FORMAT
                                        ", \"start\": %" G_GUINT64_FORMAT
                                        ", \"length\": %" G_GUINT64_FORMAT
                                        ", \"file-offset\": %" G_GUINT64_FORMAT "}",
                                        i > 0 ? "," : "", r->block, start, length, r->file_offset);
                stored_bytes += length;
        }
        g_string_append (out, blocks->len > 0 ? "\n  ],\n" : "],\n");
        g_string_append_printf (out, "  \"stored-bytes\": %" G_GUINT64_FORMAT ",\n", stored_bytes);
        g_string_append_printf (out, "  \"file-size\": %" G_GUINT64_FORMAT ",\n",
                                dirty != NULL ? dirty->block_file_offset + dirty->length
                                              : layout.file_size);

        if (dirty == NULL) {
                g_string_append (out, "  \"dirty\": null\n");
        } else {
                g_autofree char *log_guid = vhdx_gen_guid_to_text (&dirty->log_guid);

                g_string_append_printf (
                        out,
                        "  \"dirty\": {\"block\": %" G_GUINT64_FORMAT
                        ", \"start\": %" G_GUINT64_FORMAT ", \"length\": %" G_GUINT64_FORMAT
                        ", \"file-offset\": %" G_GUINT64_FORMAT
                        ", \"bat-entry-offset\": %" G_GUINT64_FORMAT
                        ", \"log-guid\": \"%s\", \"log-entry-offset\": %" G_GUINT64_FORMAT
                        ", \"log-entry-length\": %u, \"log-sequence\": %" G_GUINT64_FORMAT
                        ", \"flushed-file-offset\": %" G_GUINT64_FORMAT
                        ", \"last-file-offset\": %" G_GUINT64_FORMAT ", \"header\": %u}\n",
                        dirty->block, dirty->block * params->block_size, dirty->length,
                        dirty->block_file_offset, dirty->bat_entry_offset, log_guid,
                        dirty->log_entry_offset, dirty->log_entry_length, dirty->log_sequence,
                        dirty->flushed_file_offset, dirty->last_file_offset, dirty->header_index);
        }
        g_string_append (out, "}\n");
        return g_file_set_contents (path, out->str, (gssize) out->len, error);
}

int
main (int argc, char **argv)
{
        gboolean metadata_first = FALSE;
        gboolean identical_headers = FALSE;
        gboolean shuffle = FALSE;
        gboolean zero_state = FALSE;
        gboolean dirty = FALSE;
        g_autofree char *type = NULL;
        g_autofree char *size = NULL;
        g_autofree char *block_size = NULL;
        g_autofree char *logical = NULL;
        g_autofree char *physical = NULL;
        g_autofree char *log_size = NULL;
        g_autofree char *raw_path = NULL;
        g_autofree char *describe_path = NULL;
        g_auto (GStrv) patterns = NULL;
        gint seed = -1;
        gint dirty_block = -1;
        gint dirty_seed = 4242;
        const GOptionEntry entries[] = {
                { "type", 't', 0, G_OPTION_ARG_STRING, &type, "Disk type (default dynamic)",
                  "fixed|dynamic" },
                { "size", 's', 0, G_OPTION_ARG_STRING, &size,
                  "Virtual size, with an optional K/M/G/T suffix (default 1G)", "N" },
                { "block-size", 'b', 0, G_OPTION_ARG_STRING, &block_size,
                  "Block size (default 32M)", "N" },
                { "logical-sector-size", 0, 0, G_OPTION_ARG_STRING, &logical,
                  "Logical sector size, 512 or 4096 (default 512)", "N" },
                { "physical-sector-size", 0, 0, G_OPTION_ARG_STRING, &physical,
                  "Physical sector size, 512 or 4096 (default 4096)", "N" },
                { "log-size", 0, 0, G_OPTION_ARG_STRING, &log_size, "Log size (default 1M)", "N" },
                { "pattern", 'p', 0, G_OPTION_ARG_STRING_ARRAY, &patterns,
                  "Fill LENGTH bytes at OFFSET with the pseudo-random pattern SEED (repeatable)",
                  "OFFSET:LENGTH:SEED" },
                { "metadata-first", 0, 0, G_OPTION_ARG_NONE, &metadata_first,
                  "List the metadata region before the BAT in the region table", NULL },
                { "identical-headers", 0, 0, G_OPTION_ARG_NONE, &identical_headers,
                  "Write two identical headers with sequence number 1", NULL },
                { "shuffle", 0, 0, G_OPTION_ARG_NONE, &shuffle, "Store payload blocks out of order",
                  NULL },
                { "zero-state", 0, 0, G_OPTION_ARG_NONE, &zero_state,
                  "Mark unwritten blocks ZERO instead of NOT_PRESENT", NULL },
                { "seed", 0, 0, G_OPTION_ARG_INT, &seed, "Seed of the GUIDs and the shuffle", "N" },
                { "dirty", 0, 0, G_OPTION_ARG_NONE, &dirty,
                  "Allocate one more block through the log and leave the log to be replayed",
                  NULL },
                { "dirty-block", 0, 0, G_OPTION_ARG_INT, &dirty_block,
                  "Allocate block N through the log, as --dirty does for the first unallocated one",
                  "N" },
                { "dirty-seed", 0, 0, G_OPTION_ARG_INT, &dirty_seed,
                  "With --dirty, the pattern seed of the new block (default 4242)", "N" },
                { "describe", 0, 0, G_OPTION_ARG_FILENAME, &describe_path,
                  "Write what was generated, as JSON, to FILE", "FILE" },
                { "raw", 'r', 0, G_OPTION_ARG_FILENAME, &raw_path,
                  "Also write the expected raw virtual disk (sparse) to FILE", "FILE" },
                G_OPTION_ENTRY_NULL,
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (GArray) blocks = NULL;
        VhdxGenParams params;
        VhdxGenDirty dirty_record;
        guint i;

        setlocale (LC_ALL, "");

        context = g_option_context_new ("OUT.vhdx");
        g_option_context_set_summary (context,
                                      "Write a crafted VHDX image and optionally its raw disk.");
        g_option_context_add_main_entries (context, entries, NULL);
        if (!g_option_context_parse (context, &argc, &argv, &error))
                goto fail;
        if (argc != 2) {
                g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                             "expected exactly one output file name");
                goto fail;
        }

        vhdx_gen_params_init (&params);
        if (type != NULL) {
                if (g_strcmp0 (type, "fixed") == 0)
                        params.disk_type = VHDX_DISK_TYPE_FIXED;
                else if (g_strcmp0 (type, "dynamic") == 0)
                        params.disk_type = VHDX_DISK_TYPE_DYNAMIC;
                else {
                        g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                     "--type must be fixed or dynamic");
                        goto fail;
                }
        }
        if (size != NULL && !parse_size (size, &params.virtual_size)) {
                g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                             "--size: not a valid size: \"%s\"", size);
                goto fail;
        }
        if ((block_size != NULL &&
             !parse_size_u32 ("--block-size", block_size, &params.block_size, &error)) ||
            (logical != NULL && !parse_size_u32 ("--logical-sector-size", logical,
                                                 &params.logical_sector_size, &error)) ||
            (physical != NULL && !parse_size_u32 ("--physical-sector-size", physical,
                                                  &params.physical_sector_size, &error)) ||
            (log_size != NULL &&
             !parse_size_u32 ("--log-size", log_size, &params.log_size, &error)))
                goto fail;
        params.metadata_region_first = metadata_first;
        params.identical_headers = identical_headers;
        params.shuffle_blocks = shuffle;
        params.zero_state = zero_state ? VHDX_PAYLOAD_ZERO : VHDX_PAYLOAD_NOT_PRESENT;
        if (seed >= 0)
                params.seed = (guint32) seed;
        if (!check_params (&params, &error))
                goto fail;

        gen = vhdx_gen_new (&params);
        for (i = 0; patterns != NULL && patterns[i] != NULL; i++) {
                PatternSpec spec;

                if (!parse_pattern (patterns[i], &spec, &error))
                        goto fail;
                if (spec.offset > params.virtual_size ||
                    spec.length > params.virtual_size - spec.offset) {
                        g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                     "--pattern %s lies outside the %" G_GUINT64_FORMAT
                                     "-byte disk",
                                     patterns[i], params.virtual_size);
                        goto fail;
                }
                vhdx_gen_fill_pattern (gen, spec.offset, spec.length, spec.seed);
        }

        if (dirty_seed < 0) {
                g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                             "--dirty-seed must not be negative");
                goto fail;
        }

        if (dirty_block >= 0)
                dirty = TRUE;
        blocks = record_blocks (gen);
        if (!vhdx_gen_write_file (gen, argv[1], &error))
                goto fail;
        if (dirty &&
            !make_dirty (gen, argv[1], dirty_block, (guint32) dirty_seed, &dirty_record, &error))
                goto fail;
        if (describe_path != NULL &&
            !write_description (gen, blocks, dirty ? &dirty_record : NULL, describe_path, &error))
                goto fail;
        if (dirty)
                add_dirty_block (gen, &dirty_record, (guint32) dirty_seed);
        if (raw_path != NULL && !vhdx_gen_write_raw_file (gen, raw_path, &error))
                goto fail;
        return EXIT_SUCCESS;

fail:
        g_printerr ("%s: %s\n", g_get_prgname (), error->message);
        return EXIT_FAILURE;
}
