/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "vhdx-gen.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "vhdx-crc32c.h"

/*
 * Written data are kept in 1 MiB pages indexed by virtual offset.  Every
 * block size is a multiple of the page size, so a page never straddles two
 * blocks, and a 256 MiB block with a few bytes written costs one page.
 */
#define GEN_PAGE_SIZE (1 * VHDX_MiB)

/* Where the standard items start in the metadata region, as Hyper-V and QEMU do. */
#define ITEMS_OFFSET (64 * VHDX_KiB)

typedef struct {
        VhdxGuid guid;
        gboolean required;
        guint32 length;
} GenRegion;

typedef struct {
        VhdxGuid item_id;
        guint32 flags;
        GBytes *data;
} GenItem;

struct _VhdxGen {
        VhdxGenParams params;
        guint64 n_blocks;
        guint64 chunk_ratio;

        GHashTable *pages;  /* page index -> guint8[GEN_PAGE_SIZE] */
        GHashTable *blocks; /* set of written block indices (dynamic images) */

        /* Block -> slot in the payload area; rebuilt after a block is added. */
        GHashTable *slots;    /* dynamic images */
        guint32 *fixed_slots; /* fixed images with shuffle_blocks */
        gboolean slots_valid;

        GArray *extra_regions;  /* GenRegion */
        GPtrArray *extra_items; /* GenItem */

        VhdxGuid file_write_guid;
        VhdxGuid data_write_guid;
        VhdxGuid virtual_disk_id;
};

const VhdxGuid vhdx_gen_guid_bat = { { 0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64,
                                       0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 } };
const VhdxGuid vhdx_gen_guid_metadata = { { 0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8,
                                            0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e } };
const VhdxGuid vhdx_gen_guid_item[VHDX_GEN_N_ITEMS] = {
        /* CAA16737-FA36-4D43-B3B6-33F0AA44E76B */
        { { 0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44,
            0xe7, 0x6b } },
        /* 2FA54224-CD1B-4876-B211-5DBED83BF4B8 */
        { { 0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b,
            0xf4, 0xb8 } },
        /* BECA12AB-B2E6-4523-93EF-C309E000C746 */
        { { 0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45, 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00,
            0xc7, 0x46 } },
        /* 8141BF1D-A96F-4709-BA47-F233A8FAAB5F */
        { { 0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa,
            0xab, 0x5f } },
        /* CDA348C7-445D-4471-9CC9-E9885251C556 */
        { { 0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51,
            0xc5, 0x56 } },
};

static const guint32 item_flags[VHDX_GEN_N_ITEMS] = {
        VHDX_METADATA_FLAG_IS_REQUIRED,
        VHDX_METADATA_FLAG_IS_REQUIRED | VHDX_METADATA_FLAG_IS_VIRTUAL_DISK,
        VHDX_METADATA_FLAG_IS_REQUIRED | VHDX_METADATA_FLAG_IS_VIRTUAL_DISK,
        VHDX_METADATA_FLAG_IS_REQUIRED | VHDX_METADATA_FLAG_IS_VIRTUAL_DISK,
        VHDX_METADATA_FLAG_IS_REQUIRED | VHDX_METADATA_FLAG_IS_VIRTUAL_DISK,
};

static const guint32 item_lengths[VHDX_GEN_N_ITEMS] = { 8, 8, 16, 4, 4 };

void
vhdx_gen_params_init (VhdxGenParams *params)
{
        g_return_if_fail (params != NULL);

        memset (params, 0, sizeof *params);
        params->disk_type = VHDX_DISK_TYPE_DYNAMIC;
        params->virtual_size = 1 * VHDX_GiB;
        params->block_size = 32 * VHDX_MiB;
        params->logical_sector_size = 512;
        params->physical_sector_size = 4096;
        params->log_size = 1 * VHDX_MiB;
        params->zero_state = VHDX_PAYLOAD_NOT_PRESENT;
        params->seed = 0x5648;
}

static int
hex_digit_value (char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

VhdxGuid
vhdx_gen_guid_from_text (const char *text)
{
        /* Text order of the 16 bytes, then their place on disk (first three fields LE). */
        static const guint disk_position[16] = { 3, 2, 1,  0,  5,  4,  7,  6,
                                                 8, 9, 10, 11, 12, 13, 14, 15 };
        VhdxGuid guid;
        guint n = 0;
        const char *p;

        memset (&guid, 0, sizeof guid);
        for (p = text; *p != '\0'; p++) {
                int hi, lo;

                if (*p == '-' || *p == '{' || *p == '}')
                        continue;
                hi = hex_digit_value (p[0]);
                lo = hex_digit_value (p[1]);
                if (hi < 0 || lo < 0 || n >= 16)
                        g_error ("bad GUID text \"%s\"", text);
                guid.bytes[disk_position[n++]] = (guint8) (hi << 4 | lo);
                p++;
        }
        if (n != 16)
                g_error ("bad GUID text \"%s\"", text);
        return guid;
}

static void
random_guid (GRand *rand, VhdxGuid *guid)
{
        guint i;

        for (i = 0; i < sizeof guid->bytes; i++)
                guid->bytes[i] = (guint8) g_rand_int_range (rand, 0, 256);
        /* Version 4 (in the high nibble of Data3, stored little-endian), RFC 4122 variant. */
        guid->bytes[7] = (guint8) ((guid->bytes[7] & 0x0f) | 0x40);
        guid->bytes[8] = (guint8) ((guid->bytes[8] & 0x3f) | 0x80);
}

static gboolean
is_power_of_two (guint64 v)
{
        return v != 0 && (v & (v - 1)) == 0;
}

static void
gen_item_free (gpointer data)
{
        GenItem *item = data;

        g_bytes_unref (item->data);
        g_free (item);
}

VhdxGen *
vhdx_gen_new (const VhdxGenParams *params)
{
        VhdxGen *gen;
        GRand *rand;

        g_return_val_if_fail (params != NULL, NULL);
        g_return_val_if_fail (params->disk_type == VHDX_DISK_TYPE_FIXED ||
                                      params->disk_type == VHDX_DISK_TYPE_DYNAMIC,
                              NULL);
        g_return_val_if_fail (params->logical_sector_size == 512 ||
                                      params->logical_sector_size == 4096,
                              NULL);
        g_return_val_if_fail (params->physical_sector_size == 512 ||
                                      params->physical_sector_size == 4096,
                              NULL);
        g_return_val_if_fail (is_power_of_two (params->block_size) &&
                                      params->block_size >= VHDX_MIN_BLOCK_SIZE &&
                                      params->block_size <= VHDX_MAX_BLOCK_SIZE,
                              NULL);
        g_return_val_if_fail (params->virtual_size > 0 &&
                                      params->virtual_size <= VHDX_MAX_VIRTUAL_SIZE &&
                                      params->virtual_size % params->logical_sector_size == 0,
                              NULL);
        g_return_val_if_fail (params->log_size >= VHDX_MiB && params->log_size % VHDX_MiB == 0,
                              NULL);
        g_return_val_if_fail (params->zero_state == VHDX_PAYLOAD_NOT_PRESENT ||
                                      params->zero_state == VHDX_PAYLOAD_ZERO,
                              NULL);

        gen = g_new0 (VhdxGen, 1);
        gen->params = *params;
        gen->n_blocks = (params->virtual_size + params->block_size - 1) / params->block_size;
        gen->chunk_ratio =
                ((G_GUINT64_CONSTANT (1) << 23) * params->logical_sector_size) / params->block_size;
        gen->pages = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
        gen->blocks = g_hash_table_new (g_direct_hash, g_direct_equal);
        gen->extra_regions = g_array_new (FALSE, TRUE, sizeof (GenRegion));
        gen->extra_items = g_ptr_array_new_with_free_func (gen_item_free);

        rand = g_rand_new_with_seed (params->seed);
        random_guid (rand, &gen->file_write_guid);
        random_guid (rand, &gen->data_write_guid);
        random_guid (rand, &gen->virtual_disk_id);
        g_rand_free (rand);
        return gen;
}

void
vhdx_gen_free (VhdxGen *gen)
{
        if (gen == NULL)
                return;
        g_hash_table_unref (gen->pages);
        g_hash_table_unref (gen->blocks);
        if (gen->slots != NULL)
                g_hash_table_unref (gen->slots);
        g_free (gen->fixed_slots);
        g_array_unref (gen->extra_regions);
        g_ptr_array_unref (gen->extra_items);
        g_free (gen);
}

const VhdxGenParams *
vhdx_gen_get_params (VhdxGen *gen)
{
        g_return_val_if_fail (gen != NULL, NULL);
        return &gen->params;
}

/* ---- The pattern ---- */

static guint64
mix64 (guint64 z)
{
        z += G_GUINT64_CONSTANT (0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static guint64
pattern_word (guint64 word_index, guint32 seed)
{
        return mix64 (word_index ^ ((guint64) seed * G_GUINT64_CONSTANT (0xd6e8feb86659fd93)));
}

guint8
vhdx_gen_pattern_byte (guint64 offset, guint32 seed)
{
        return (guint8) (pattern_word (offset >> 3, seed) >> ((offset & 7) * 8));
}

void
vhdx_gen_pattern_fill_buffer (guint8 *buf, guint64 offset, gsize len, guint32 seed)
{
        gsize i = 0;

        while (i < len && ((offset + i) & 7) != 0) {
                buf[i] = vhdx_gen_pattern_byte (offset + i, seed);
                i++;
        }
        for (; i + 8 <= len; i += 8)
                vhdx_put_le64 (buf + i, pattern_word ((offset + i) >> 3, seed));
        for (; i < len; i++)
                buf[i] = vhdx_gen_pattern_byte (offset + i, seed);
}

/* ---- Writing the virtual disk ---- */

typedef enum {
        SOURCE_DATA,
        SOURCE_BYTE,
        SOURCE_PATTERN,
} SourceKind;

typedef struct {
        SourceKind kind;
        const guint8 *data;
        guint8 value;
        guint32 seed;
} Source;

static guint8 *
get_page (VhdxGen *gen, guint64 page_index)
{
        gpointer key = GUINT_TO_POINTER ((guint) page_index);
        guint8 *page = g_hash_table_lookup (gen->pages, key);

        if (page == NULL) {
                page = g_malloc0 (GEN_PAGE_SIZE);
                g_hash_table_insert (gen->pages, key, page);
        }
        return page;
}

static void
mark_block_written (VhdxGen *gen, guint64 block)
{
        gpointer key = GUINT_TO_POINTER ((guint) block);

        if (gen->params.disk_type == VHDX_DISK_TYPE_FIXED)
                return;
        if (!g_hash_table_contains (gen->blocks, key)) {
                g_hash_table_add (gen->blocks, key);
                gen->slots_valid = FALSE;
        }
}

static void
write_source (VhdxGen *gen, guint64 offset, guint64 len, const Source *source)
{
        guint64 done = 0;

        g_return_if_fail (offset <= gen->params.virtual_size &&
                          len <= gen->params.virtual_size - offset);

        while (done < len) {
                guint64 pos = offset + done;
                guint64 in_page = pos % GEN_PAGE_SIZE;
                guint64 n = MIN (len - done, GEN_PAGE_SIZE - in_page);
                guint8 *page = get_page (gen, pos / GEN_PAGE_SIZE);

                switch (source->kind) {
                case SOURCE_DATA:
                        memcpy (page + in_page, source->data + done, n);
                        break;
                case SOURCE_BYTE:
                        memset (page + in_page, source->value, n);
                        break;
                case SOURCE_PATTERN:
                        vhdx_gen_pattern_fill_buffer (page + in_page, pos, n, source->seed);
                        break;
                }
                mark_block_written (gen, pos / gen->params.block_size);
                done += n;
        }
}

void
vhdx_gen_write (VhdxGen *gen, guint64 offset, const void *data, gsize len)
{
        Source source = { SOURCE_DATA, data, 0, 0 };

        g_return_if_fail (gen != NULL);
        g_return_if_fail (data != NULL || len == 0);
        write_source (gen, offset, len, &source);
}

void
vhdx_gen_fill_byte (VhdxGen *gen, guint64 offset, guint64 len, guint8 value)
{
        Source source = { SOURCE_BYTE, NULL, value, 0 };

        g_return_if_fail (gen != NULL);
        write_source (gen, offset, len, &source);
}

void
vhdx_gen_fill_pattern (VhdxGen *gen, guint64 offset, guint64 len, guint32 seed)
{
        Source source = { SOURCE_PATTERN, NULL, 0, seed };

        g_return_if_fail (gen != NULL);
        write_source (gen, offset, len, &source);
}

void
vhdx_gen_add_region (VhdxGen *gen, const VhdxGuid *guid, gboolean required, guint32 length)
{
        GenRegion region;

        g_return_if_fail (gen != NULL && guid != NULL);
        g_return_if_fail (length > 0 && length <= G_MAXUINT32 - VHDX_MiB);

        region.guid = *guid;
        region.required = required;
        region.length = (guint32) ((length + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB);
        g_array_append_val (gen->extra_regions, region);
}

void
vhdx_gen_add_metadata_item (VhdxGen *gen,
                            const VhdxGuid *item_id,
                            guint32 flags,
                            const void *data,
                            guint32 len)
{
        GenItem *item;

        g_return_if_fail (gen != NULL && item_id != NULL);
        g_return_if_fail (data != NULL || len == 0);
        g_return_if_fail (len <= VHDX_METADATA_ITEM_MAX_LENGTH);

        item = g_new0 (GenItem, 1);
        item->item_id = *item_id;
        item->flags = flags;
        item->data = g_bytes_new (data, len);
        g_ptr_array_add (gen->extra_items, item);
}

/* ---- Placement of payload blocks ---- */

static gint
compare_block_index (gconstpointer a, gconstpointer b)
{
        guint x = *(const guint *) a;
        guint y = *(const guint *) b;

        return x < y ? -1 : x > y;
}

static void
shuffle_slots (guint32 *slots, guint n, guint32 seed)
{
        GRand *rand = g_rand_new_with_seed (seed ^ 0x5eed5eedu);
        guint i;

        for (i = n; i > 1; i--) {
                guint j = (guint) g_rand_int_range (rand, 0, (gint32) i);
                guint32 tmp = slots[i - 1];

                slots[i - 1] = slots[j];
                slots[j] = tmp;
        }
        g_rand_free (rand);
}

static void
ensure_slots (VhdxGen *gen)
{
        if (gen->slots_valid)
                return;

        if (gen->params.disk_type == VHDX_DISK_TYPE_FIXED) {
                if (gen->params.shuffle_blocks && gen->fixed_slots == NULL) {
                        guint32 i;

                        g_return_if_fail (gen->n_blocks <= G_MAXINT32);
                        gen->fixed_slots = g_new (guint32, gen->n_blocks);
                        for (i = 0; i < gen->n_blocks; i++)
                                gen->fixed_slots[i] = i;
                        shuffle_slots (gen->fixed_slots, (guint) gen->n_blocks, gen->params.seed);
                }
        } else {
                GArray *sorted = g_array_new (FALSE, FALSE, sizeof (guint));
                guint32 *order;
                GHashTableIter iter;
                gpointer key;
                guint i;

                g_hash_table_iter_init (&iter, gen->blocks);
                while (g_hash_table_iter_next (&iter, &key, NULL)) {
                        guint block = GPOINTER_TO_UINT (key);
                        g_array_append_val (sorted, block);
                }
                g_array_sort (sorted, compare_block_index);

                order = g_new (guint32, sorted->len + 1);
                for (i = 0; i < sorted->len; i++)
                        order[i] = i;
                if (gen->params.shuffle_blocks)
                        shuffle_slots (order, sorted->len, gen->params.seed);

                if (gen->slots != NULL)
                        g_hash_table_unref (gen->slots);
                gen->slots = g_hash_table_new (g_direct_hash, g_direct_equal);
                for (i = 0; i < sorted->len; i++)
                        g_hash_table_insert (gen->slots,
                                             GUINT_TO_POINTER (g_array_index (sorted, guint, i)),
                                             GUINT_TO_POINTER (order[i]));
                g_free (order);
                g_array_unref (sorted);
        }
        gen->slots_valid = TRUE;
}

gboolean
vhdx_gen_block_is_allocated (VhdxGen *gen, guint64 block)
{
        g_return_val_if_fail (gen != NULL, FALSE);

        if (block >= gen->n_blocks)
                return FALSE;
        if (gen->params.disk_type == VHDX_DISK_TYPE_FIXED)
                return TRUE;
        return g_hash_table_contains (gen->blocks, GUINT_TO_POINTER ((guint) block));
}

static guint64
round_up_mib (guint64 v)
{
        return (v + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB;
}

static guint32
metadata_items_end (VhdxGen *gen)
{
        guint32 end = ITEMS_OFFSET + 40;
        guint i;

        for (i = 0; i < gen->extra_items->len; i++) {
                GenItem *item = g_ptr_array_index (gen->extra_items, i);
                end += (guint32) ((g_bytes_get_size (item->data) + 7) / 8 * 8);
        }
        return end;
}

void
vhdx_gen_get_layout (VhdxGen *gen, VhdxGenLayout *layout)
{
        guint64 offset;
        guint32 item_offset = ITEMS_OFFSET;
        guint i;

        g_return_if_fail (gen != NULL && layout != NULL);

        memset (layout, 0, sizeof *layout);
        layout->header_offset[0] = VHDX_HEADER1_OFFSET;
        layout->header_offset[1] = VHDX_HEADER2_OFFSET;
        layout->region_table_offset[0] = VHDX_REGION_TABLE1_OFFSET;
        layout->region_table_offset[1] = VHDX_REGION_TABLE2_OFFSET;
        layout->region_index_bat = gen->params.metadata_region_first ? 1 : 0;
        layout->region_index_metadata = gen->params.metadata_region_first ? 0 : 1;
        layout->region_count = 2 + gen->extra_regions->len;

        layout->log_offset = VHDX_HEADER_SECTION_SIZE;
        layout->log_length = gen->params.log_size;

        layout->metadata_offset = layout->log_offset + layout->log_length;
        layout->metadata_length = (guint32) round_up_mib (metadata_items_end (gen));
        layout->metadata_count = VHDX_GEN_N_ITEMS + gen->extra_items->len;
        for (i = 0; i < VHDX_GEN_N_ITEMS; i++) {
                layout->metadata_entry_offset[i] = layout->metadata_offset +
                                                   VHDX_METADATA_HEADER_SIZE +
                                                   i * VHDX_METADATA_ENTRY_SIZE;
                layout->metadata_item_offset[i] = layout->metadata_offset + item_offset;
                item_offset += item_lengths[i];
        }

        layout->chunk_ratio = gen->chunk_ratio;
        layout->payload_blocks = gen->n_blocks;
        layout->bat_entries = gen->n_blocks + (gen->n_blocks - 1) / gen->chunk_ratio;
        layout->bat_offset = layout->metadata_offset + layout->metadata_length;
        layout->bat_length = (guint32) round_up_mib (layout->bat_entries * VHDX_BAT_ENTRY_SIZE);

        offset = layout->bat_offset + layout->bat_length;
        for (i = 0; i < gen->extra_regions->len; i++)
                offset += g_array_index (gen->extra_regions, GenRegion, i).length;
        layout->payload_offset = offset;

        if (gen->params.disk_type == VHDX_DISK_TYPE_FIXED)
                layout->allocated_blocks = gen->n_blocks;
        else
                layout->allocated_blocks = g_hash_table_size (gen->blocks);
        layout->file_size =
                layout->payload_offset + layout->allocated_blocks * gen->params.block_size;
}

guint64
vhdx_gen_layout_bat_entry_offset (const VhdxGenLayout *layout, guint64 index)
{
        g_return_val_if_fail (layout != NULL, 0);
        return layout->bat_offset + index * VHDX_BAT_ENTRY_SIZE;
}

guint64
vhdx_gen_layout_region_entry_offset (const VhdxGenLayout *layout, guint table, guint index)
{
        g_return_val_if_fail (layout != NULL && (table == 1 || table == 2), 0);
        return layout->region_table_offset[table - 1] + VHDX_REGION_HEADER_SIZE +
               (guint64) index * VHDX_REGION_ENTRY_SIZE;
}

guint64
vhdx_gen_block_bat_index (VhdxGen *gen, guint64 block)
{
        g_return_val_if_fail (gen != NULL, 0);
        return block + block / gen->chunk_ratio;
}

static guint64
payload_offset (VhdxGen *gen)
{
        VhdxGenLayout layout;

        vhdx_gen_get_layout (gen, &layout);
        return layout.payload_offset;
}

/* The slot of an allocated block; ensure_slots() must have run. */
static guint64
block_slot (VhdxGen *gen, guint64 block)
{
        if (gen->params.disk_type == VHDX_DISK_TYPE_FIXED)
                return gen->fixed_slots != NULL ? gen->fixed_slots[block] : block;
        return GPOINTER_TO_UINT (
                g_hash_table_lookup (gen->slots, GUINT_TO_POINTER ((guint) block)));
}

gboolean
vhdx_gen_block_file_offset (VhdxGen *gen, guint64 block, guint64 *file_offset)
{
        g_return_val_if_fail (gen != NULL, FALSE);

        if (!vhdx_gen_block_is_allocated (gen, block))
                return FALSE;
        ensure_slots (gen);
        if (file_offset != NULL)
                *file_offset =
                        payload_offset (gen) + block_slot (gen, block) * gen->params.block_size;
        return TRUE;
}

/* ---- Building the structures ---- */

void
vhdx_gen_update_header_checksum (guint8 *header)
{
        g_return_if_fail (header != NULL);
        vhdx_put_le32 (header + VHDX_HEADER_OFF_CHECKSUM, 0);
        vhdx_put_le32 (header + VHDX_HEADER_OFF_CHECKSUM,
                       vhdx_crc32c (0, header, VHDX_HEADER_SIZE));
}

void
vhdx_gen_update_region_table_checksum (guint8 *table)
{
        g_return_if_fail (table != NULL);
        vhdx_put_le32 (table + VHDX_REGION_OFF_CHECKSUM, 0);
        vhdx_put_le32 (table + VHDX_REGION_OFF_CHECKSUM,
                       vhdx_crc32c (0, table, VHDX_REGION_TABLE_SIZE));
}

static void
put_guid (guint8 *p, const VhdxGuid *guid)
{
        memcpy (p, guid->bytes, sizeof guid->bytes);
}

static void
build_file_identifier (guint8 *p)
{
        const char *creator = VHDX_GEN_CREATOR;
        gsize i;

        memcpy (p, VHDX_FILE_ID_SIGNATURE, 8);
        for (i = 0; creator[i] != '\0' && 2 * i + 2 <= VHDX_FILE_ID_CREATOR_SIZE; i++)
                vhdx_put_le16 (p + VHDX_FILE_ID_CREATOR_OFFSET + 2 * i, (guint8) creator[i]);
}

static void
build_header (VhdxGen *gen, const VhdxGenLayout *layout, guint8 *p, guint64 sequence)
{
        memcpy (p, VHDX_HEADER_SIGNATURE, 4);
        vhdx_put_le64 (p + VHDX_HEADER_OFF_SEQUENCE, sequence);
        put_guid (p + VHDX_HEADER_OFF_FILE_WRITE_GUID, &gen->file_write_guid);
        put_guid (p + VHDX_HEADER_OFF_DATA_WRITE_GUID, &gen->data_write_guid);
        /* LogGuid stays zero: the log is empty. */
        vhdx_put_le16 (p + VHDX_HEADER_OFF_LOG_VERSION, VHDX_LOG_VERSION);
        vhdx_put_le16 (p + VHDX_HEADER_OFF_VERSION, VHDX_HEADER_VERSION);
        vhdx_put_le32 (p + VHDX_HEADER_OFF_LOG_LENGTH, layout->log_length);
        vhdx_put_le64 (p + VHDX_HEADER_OFF_LOG_OFFSET, layout->log_offset);
        vhdx_gen_update_header_checksum (p);
}

static void
put_region_entry (guint8 *p,
                  const VhdxGuid *guid,
                  guint64 offset,
                  guint32 length,
                  gboolean required)
{
        put_guid (p + VHDX_REGION_ENTRY_OFF_GUID, guid);
        vhdx_put_le64 (p + VHDX_REGION_ENTRY_OFF_FILE_OFFSET, offset);
        vhdx_put_le32 (p + VHDX_REGION_ENTRY_OFF_LENGTH, length);
        vhdx_put_le32 (p + VHDX_REGION_ENTRY_OFF_REQUIRED, required ? 1 : 0);
}

static void
build_region_table (VhdxGen *gen, const VhdxGenLayout *layout, guint8 *p)
{
        guint8 *entries = p + VHDX_REGION_HEADER_SIZE;
        guint64 offset = layout->bat_offset + layout->bat_length;
        guint i;

        memcpy (p, VHDX_REGION_TABLE_SIGNATURE, 4);
        vhdx_put_le32 (p + VHDX_REGION_OFF_ENTRY_COUNT, layout->region_count);
        put_region_entry (entries + layout->region_index_bat * VHDX_REGION_ENTRY_SIZE,
                          &vhdx_gen_guid_bat, layout->bat_offset, layout->bat_length, TRUE);
        put_region_entry (entries + layout->region_index_metadata * VHDX_REGION_ENTRY_SIZE,
                          &vhdx_gen_guid_metadata, layout->metadata_offset, layout->metadata_length,
                          TRUE);
        for (i = 0; i < gen->extra_regions->len; i++) {
                const GenRegion *region = &g_array_index (gen->extra_regions, GenRegion, i);

                put_region_entry (entries + (2 + i) * VHDX_REGION_ENTRY_SIZE, &region->guid, offset,
                                  region->length, region->required);
                offset += region->length;
        }
        vhdx_gen_update_region_table_checksum (p);
}

static void
put_metadata_entry (guint8 *p,
                    const VhdxGuid *item_id,
                    guint32 offset,
                    guint32 length,
                    guint32 flags)
{
        put_guid (p + VHDX_METADATA_ENTRY_OFF_ITEM_ID, item_id);
        vhdx_put_le32 (p + VHDX_METADATA_ENTRY_OFF_OFFSET, length > 0 ? offset : 0);
        vhdx_put_le32 (p + VHDX_METADATA_ENTRY_OFF_LENGTH, length);
        vhdx_put_le32 (p + VHDX_METADATA_ENTRY_OFF_FLAGS, flags);
}

/* @p is the start of the metadata region. */
static void
build_metadata (VhdxGen *gen, const VhdxGenLayout *layout, guint8 *p)
{
        guint32 offsets[VHDX_GEN_N_ITEMS];
        guint32 file_flags = 0;
        guint32 offset;
        guint i;

        memcpy (p, VHDX_METADATA_SIGNATURE, 8);
        vhdx_put_le16 (p + VHDX_METADATA_OFF_ENTRY_COUNT, (guint16) layout->metadata_count);

        for (i = 0; i < VHDX_GEN_N_ITEMS; i++) {
                offsets[i] = (guint32) (layout->metadata_item_offset[i] - layout->metadata_offset);
                put_metadata_entry (p + VHDX_METADATA_HEADER_SIZE + i * VHDX_METADATA_ENTRY_SIZE,
                                    &vhdx_gen_guid_item[i], offsets[i], item_lengths[i],
                                    item_flags[i]);
        }
        if (gen->params.disk_type == VHDX_DISK_TYPE_FIXED)
                file_flags |= VHDX_FILE_PARAMS_LEAVE_BLOCK_ALLOCATED;
        vhdx_put_le32 (p + offsets[VHDX_GEN_ITEM_FILE_PARAMETERS], gen->params.block_size);
        vhdx_put_le32 (p + offsets[VHDX_GEN_ITEM_FILE_PARAMETERS] + 4, file_flags);
        vhdx_put_le64 (p + offsets[VHDX_GEN_ITEM_VIRTUAL_DISK_SIZE], gen->params.virtual_size);
        put_guid (p + offsets[VHDX_GEN_ITEM_VIRTUAL_DISK_ID], &gen->virtual_disk_id);
        vhdx_put_le32 (p + offsets[VHDX_GEN_ITEM_LOGICAL_SECTOR_SIZE],
                       gen->params.logical_sector_size);
        vhdx_put_le32 (p + offsets[VHDX_GEN_ITEM_PHYSICAL_SECTOR_SIZE],
                       gen->params.physical_sector_size);

        offset = ITEMS_OFFSET + 40;
        for (i = 0; i < gen->extra_items->len; i++) {
                GenItem *item = g_ptr_array_index (gen->extra_items, i);
                gsize len;
                const guint8 *data = g_bytes_get_data (item->data, &len);

                put_metadata_entry (p + VHDX_METADATA_HEADER_SIZE +
                                            (VHDX_GEN_N_ITEMS + i) * VHDX_METADATA_ENTRY_SIZE,
                                    &item->item_id, offset, (guint32) len, item->flags);
                if (len > 0)
                        memcpy (p + offset, data, len);
                offset += (guint32) ((len + 7) / 8 * 8);
        }
}

/* @p is the start of the BAT region. */
static void
build_bat (VhdxGen *gen, const VhdxGenLayout *layout, guint8 *p)
{
        guint64 block;

        ensure_slots (gen);
        for (block = 0; block < gen->n_blocks; block++) {
                guint64 entry;

                if (vhdx_gen_block_is_allocated (gen, block))
                        entry = (layout->payload_offset +
                                 block_slot (gen, block) * gen->params.block_size) |
                                VHDX_PAYLOAD_FULLY_PRESENT;
                else
                        entry = gen->params.zero_state;
                /* Sector-bitmap entries between chunks stay zero: NOT_PRESENT. */
                vhdx_put_le64 (p + vhdx_gen_block_bat_index (gen, block) * VHDX_BAT_ENTRY_SIZE,
                               entry);
        }
}

/* Everything before the first payload block: layout->payload_offset bytes. */
static void
build_structures (VhdxGen *gen, const VhdxGenLayout *layout, guint8 *p)
{
        build_file_identifier (p);
        build_header (gen, layout, p + layout->header_offset[0], 1);
        build_header (gen, layout, p + layout->header_offset[1],
                      gen->params.identical_headers ? 1 : 2);
        build_region_table (gen, layout, p + layout->region_table_offset[0]);
        build_region_table (gen, layout, p + layout->region_table_offset[1]);
        build_metadata (gen, layout, p + layout->metadata_offset);
        build_bat (gen, layout, p + layout->bat_offset);
}

typedef gboolean (*PageFunc) (guint64 file_offset,
                              const guint8 *data,
                              gsize len,
                              gpointer user_data,
                              GError **error);

/* Calls @func for each stored page with its place in the VHDX file. */
static gboolean
foreach_payload_page (VhdxGen *gen,
                      const VhdxGenLayout *layout,
                      PageFunc func,
                      gpointer user_data,
                      GError **error)
{
        GHashTableIter iter;
        gpointer key, value;

        ensure_slots (gen);
        g_hash_table_iter_init (&iter, gen->pages);
        while (g_hash_table_iter_next (&iter, &key, &value)) {
                guint64 virtual_offset = (guint64) GPOINTER_TO_UINT (key) * GEN_PAGE_SIZE;
                guint64 block = virtual_offset / gen->params.block_size;
                guint64 file_offset = layout->payload_offset +
                                      block_slot (gen, block) * gen->params.block_size +
                                      virtual_offset % gen->params.block_size;

                if (!func (file_offset, value, GEN_PAGE_SIZE, user_data, error))
                        return FALSE;
        }
        return TRUE;
}

static gboolean
copy_page_to_buffer (guint64 file_offset,
                     const guint8 *data,
                     gsize len,
                     gpointer user_data,
                     G_GNUC_UNUSED GError **error)
{
        memcpy ((guint8 *) user_data + file_offset, data, len);
        return TRUE;
}

/* Images this large belong in a sparse file. */
#define MAX_MEMORY_IMAGE (G_GUINT64_CONSTANT (3) * VHDX_GiB)

GByteArray *
vhdx_gen_build_array (VhdxGen *gen)
{
        VhdxGenLayout layout;
        guint8 *buf;

        g_return_val_if_fail (gen != NULL, NULL);

        vhdx_gen_get_layout (gen, &layout);
        if (layout.file_size > MAX_MEMORY_IMAGE || layout.file_size > G_MAXUINT) {
                g_critical ("a %" G_GUINT64_FORMAT "-byte image is too large for memory; "
                            "use vhdx_gen_write_file()",
                            layout.file_size);
                return NULL;
        }
        buf = g_malloc0 (layout.file_size);
        build_structures (gen, &layout, buf);
        foreach_payload_page (gen, &layout, copy_page_to_buffer, buf, NULL);
        return g_byte_array_new_take (buf, layout.file_size);
}

GBytes *
vhdx_gen_build (VhdxGen *gen)
{
        GByteArray *array = vhdx_gen_build_array (gen);

        return array != NULL ? g_byte_array_free_to_bytes (array) : NULL;
}

/* ---- Sparse files ---- */

static gboolean
is_all_zero (const guint8 *p, gsize len)
{
        return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

static gboolean
pwrite_all (int fd, const guint8 *data, gsize len, guint64 offset, GError **error)
{
        while (len > 0) {
                ssize_t n = pwrite (fd, data, len, (off_t) offset);

                if (n < 0) {
                        int saved_errno = errno;

                        if (saved_errno == EINTR)
                                continue;
                        g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                                     "writing at offset %" G_GUINT64_FORMAT ": %s", offset,
                                     g_strerror (saved_errno));
                        return FALSE;
                }
                data += n;
                len -= (gsize) n;
                offset += (guint64) n;
        }
        return TRUE;
}

/* Writes the non-zero 64 KiB pieces of @data only; the file was extended with zeros. */
static gboolean
pwrite_sparse (int fd, const guint8 *data, gsize len, guint64 offset, GError **error)
{
        const gsize piece = 64 * VHDX_KiB;
        gsize done;

        for (done = 0; done < len; done += piece) {
                gsize n = MIN (piece, len - done);

                if (!is_all_zero (data + done, n) &&
                    !pwrite_all (fd, data + done, n, offset + done, error))
                        return FALSE;
        }
        return TRUE;
}

static gboolean
write_page_to_fd (guint64 file_offset,
                  const guint8 *data,
                  gsize len,
                  gpointer user_data,
                  GError **error)
{
        return pwrite_sparse (GPOINTER_TO_INT (user_data), data, len, file_offset, error);
}

static int
create_sized_file (const char *path, guint64 size, GError **error)
{
        int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        if (fd < 0) {
                int saved_errno = errno;

                g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                             "creating %s: %s", path, g_strerror (saved_errno));
                return -1;
        }
        if (ftruncate (fd, (off_t) size) < 0) {
                int saved_errno = errno;

                g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                             "resizing %s: %s", path, g_strerror (saved_errno));
                close (fd);
                return -1;
        }
        return fd;
}

static gboolean
close_file (int fd, const char *path, GError **error)
{
        if (close (fd) < 0) {
                int saved_errno = errno;

                g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                             "closing %s: %s", path, g_strerror (saved_errno));
                return FALSE;
        }
        return TRUE;
}

gboolean
vhdx_gen_write_file (VhdxGen *gen, const char *path, GError **error)
{
        VhdxGenLayout layout;
        g_autofree guint8 *structures = NULL;
        int fd;

        g_return_val_if_fail (gen != NULL && path != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        vhdx_gen_get_layout (gen, &layout);
        structures = g_malloc0 (layout.payload_offset);
        build_structures (gen, &layout, structures);

        fd = create_sized_file (path, layout.file_size, error);
        if (fd < 0)
                return FALSE;
        if (!pwrite_sparse (fd, structures, layout.payload_offset, 0, error) ||
            !foreach_payload_page (gen, &layout, write_page_to_fd, GINT_TO_POINTER (fd), error)) {
                close (fd);
                return FALSE;
        }
        return close_file (fd, path, error);
}

/* ---- The raw virtual disk ---- */

void
vhdx_gen_read_raw (VhdxGen *gen, guint64 offset, void *buf, gsize len)
{
        guint8 *out = buf;
        gsize done = 0;

        g_return_if_fail (gen != NULL);
        g_return_if_fail (offset <= gen->params.virtual_size &&
                          len <= gen->params.virtual_size - offset);

        while (done < len) {
                guint64 pos = offset + done;
                guint64 in_page = pos % GEN_PAGE_SIZE;
                gsize n = (gsize) MIN (len - done, GEN_PAGE_SIZE - in_page);
                const guint8 *page =
                        g_hash_table_lookup (gen->pages,
                                             GUINT_TO_POINTER ((guint) (pos / GEN_PAGE_SIZE)));

                if (page != NULL)
                        memcpy (out + done, page + in_page, n);
                else
                        memset (out + done, 0, n);
                done += n;
        }
}

GBytes *
vhdx_gen_build_raw (VhdxGen *gen)
{
        guint8 *buf;

        g_return_val_if_fail (gen != NULL, NULL);
        if (gen->params.virtual_size > MAX_MEMORY_IMAGE) {
                g_critical ("a %" G_GUINT64_FORMAT "-byte disk is too large for memory; "
                            "use vhdx_gen_read_raw() or vhdx_gen_write_raw_file()",
                            gen->params.virtual_size);
                return NULL;
        }
        buf = g_malloc (gen->params.virtual_size);
        vhdx_gen_read_raw (gen, 0, buf, gen->params.virtual_size);
        return g_bytes_new_take (buf, gen->params.virtual_size);
}

gboolean
vhdx_gen_write_raw_file (VhdxGen *gen, const char *path, GError **error)
{
        GHashTableIter iter;
        gpointer key, value;
        int fd;

        g_return_val_if_fail (gen != NULL && path != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        fd = create_sized_file (path, gen->params.virtual_size, error);
        if (fd < 0)
                return FALSE;
        g_hash_table_iter_init (&iter, gen->pages);
        while (g_hash_table_iter_next (&iter, &key, &value)) {
                guint64 offset = (guint64) GPOINTER_TO_UINT (key) * GEN_PAGE_SIZE;
                gsize len = (gsize) MIN (GEN_PAGE_SIZE, gen->params.virtual_size - offset);

                if (!pwrite_sparse (fd, value, len, offset, error)) {
                        close (fd);
                        return FALSE;
                }
        }
        return close_file (fd, path, error);
}

/* ---- Identity ---- */

void
vhdx_gen_get_guids (VhdxGen *gen,
                    VhdxGuid *file_write_guid,
                    VhdxGuid *data_write_guid,
                    VhdxGuid *virtual_disk_id)
{
        g_return_if_fail (gen != NULL);

        if (file_write_guid != NULL)
                *file_write_guid = gen->file_write_guid;
        if (data_write_guid != NULL)
                *data_write_guid = gen->data_write_guid;
        if (virtual_disk_id != NULL)
                *virtual_disk_id = gen->virtual_disk_id;
}

guint64
vhdx_gen_get_header_sequence (VhdxGen *gen, guint header)
{
        g_return_val_if_fail (gen != NULL && (header == 1 || header == 2), 0);

        /* As build_structures() writes them. */
        return header == 1 || gen->params.identical_headers ? 1 : 2;
}

char *
vhdx_gen_guid_to_text (const VhdxGuid *guid)
{
        const guint8 *b;

        g_return_val_if_fail (guid != NULL, NULL);
        b = guid->bytes;
        /* Data1, Data2 and Data3 are little-endian on disk; Data4 is as it is. */
        return g_strdup_printf ("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                                "%02x%02x%02x%02x%02x%02x",
                                b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10],
                                b[11], b[12], b[13], b[14], b[15]);
}

void
vhdx_gen_build_header (VhdxGen *gen, guint64 sequence, const VhdxGuid *log_guid, guint8 *header)
{
        VhdxGenLayout layout;

        g_return_if_fail (gen != NULL && header != NULL);

        vhdx_gen_get_layout (gen, &layout);
        memset (header, 0, VHDX_HEADER_SIZE);
        build_header (gen, &layout, header, sequence);
        if (log_guid != NULL) {
                put_guid (header + VHDX_HEADER_OFF_LOG_GUID, log_guid);
                vhdx_gen_update_header_checksum (header);
        }
}

guint64
vhdx_gen_bat_entry (VhdxGen *gen, guint64 index)
{
        guint64 group, block;

        g_return_val_if_fail (gen != NULL, 0);

        /* Each chunk is chunk_ratio payload entries, then its sector-bitmap entry. */
        group = gen->chunk_ratio + 1;
        if (index % group == gen->chunk_ratio)
                return 0;
        block = index - index / group;
        if (block >= gen->n_blocks)
                return 0;
        if (!vhdx_gen_block_is_allocated (gen, block))
                return gen->params.zero_state;
        ensure_slots (gen);
        return (payload_offset (gen) + block_slot (gen, block) * gen->params.block_size) |
               VHDX_PAYLOAD_FULLY_PRESENT;
}

/* ---- The log ---- */

GBytes *
vhdx_gen_encode_log_entry (const VhdxGenLogEntry *entry,
                           const VhdxGenLogDescriptor *descriptors,
                           guint n_descriptors)
{
        guint64 descriptor_bytes, length;
        guint64 n_descriptor_sectors, n_data = 0, data_index = 0;
        guint8 *buf;
        guint i;

        g_return_val_if_fail (entry != NULL && entry->sequence > 0, NULL);
        g_return_val_if_fail (descriptors != NULL || n_descriptors == 0, NULL);

        for (i = 0; i < n_descriptors; i++) {
                g_return_val_if_fail (descriptors[i].file_offset % VHDX_LOG_SECTOR_SIZE == 0, NULL);
                if (descriptors[i].data != NULL)
                        n_data++;
                else
                        g_return_val_if_fail (descriptors[i].zero_length % VHDX_LOG_SECTOR_SIZE ==
                                                      0,
                                              NULL);
        }
        /* The header and the descriptors fill whole sectors: 126 in the first, 128 after. */
        descriptor_bytes =
                VHDX_LOG_ENTRY_HEADER_SIZE + (guint64) n_descriptors * VHDX_LOG_DESCRIPTOR_SIZE;
        n_descriptor_sectors = (descriptor_bytes + VHDX_LOG_SECTOR_SIZE - 1) / VHDX_LOG_SECTOR_SIZE;
        length = (n_descriptor_sectors + n_data) * VHDX_LOG_SECTOR_SIZE;
        g_return_val_if_fail (length <= VHDX_LOG_MAX_LENGTH, NULL);

        buf = g_malloc0 (length);
        memcpy (buf + VHDX_LOG_OFF_SIGNATURE, VHDX_LOG_ENTRY_SIGNATURE, 4);
        vhdx_put_le32 (buf + VHDX_LOG_OFF_ENTRY_LENGTH, (guint32) length);
        vhdx_put_le32 (buf + VHDX_LOG_OFF_TAIL, entry->tail);
        vhdx_put_le64 (buf + VHDX_LOG_OFF_SEQUENCE, entry->sequence);
        vhdx_put_le32 (buf + VHDX_LOG_OFF_DESCRIPTOR_COUNT, n_descriptors);
        put_guid (buf + VHDX_LOG_OFF_LOG_GUID, &entry->log_guid);
        vhdx_put_le64 (buf + VHDX_LOG_OFF_FLUSHED_FILE_OFFSET, entry->flushed_file_offset);
        vhdx_put_le64 (buf + VHDX_LOG_OFF_LAST_FILE_OFFSET, entry->last_file_offset);

        for (i = 0; i < n_descriptors; i++) {
                const VhdxGenLogDescriptor *desc = &descriptors[i];
                guint8 *d = buf + VHDX_LOG_ENTRY_HEADER_SIZE + (gsize) i * VHDX_LOG_DESCRIPTOR_SIZE;
                guint8 *s;

                vhdx_put_le64 (d + VHDX_LOG_DESC_OFF_FILE_OFFSET, desc->file_offset);
                vhdx_put_le64 (d + VHDX_LOG_DESC_OFF_SEQUENCE, entry->sequence);
                if (desc->data == NULL) {
                        memcpy (d + VHDX_LOG_DESC_OFF_SIGNATURE, VHDX_LOG_ZERO_SIGNATURE, 4);
                        vhdx_put_le64 (d + VHDX_LOG_DESC_OFF_ZERO_LENGTH, desc->zero_length);
                        continue;
                }
                /* The first 8 and the last 4 bytes of the sector live in the descriptor. */
                memcpy (d + VHDX_LOG_DESC_OFF_SIGNATURE, VHDX_LOG_DATA_DESCRIPTOR_SIGNATURE, 4);
                memcpy (d + VHDX_LOG_DESC_OFF_TRAILING_BYTES,
                        desc->data + VHDX_LOG_SECTOR_SIZE - VHDX_LOG_TRAILING_BYTES,
                        VHDX_LOG_TRAILING_BYTES);
                memcpy (d + VHDX_LOG_DESC_OFF_LEADING_BYTES, desc->data, VHDX_LOG_LEADING_BYTES);

                s = buf + (gsize) (n_descriptor_sectors + data_index) * VHDX_LOG_SECTOR_SIZE;
                memcpy (s, VHDX_LOG_DATA_SIGNATURE, 4);
                vhdx_put_le32 (s + VHDX_LOG_DATA_OFF_SEQUENCE_HIGH,
                               (guint32) (entry->sequence >> 32));
                memcpy (s + VHDX_LOG_DATA_OFF_DATA, desc->data + VHDX_LOG_LEADING_BYTES,
                        VHDX_LOG_SECTOR_SIZE - VHDX_LOG_LEADING_BYTES - VHDX_LOG_TRAILING_BYTES);
                vhdx_put_le32 (s + VHDX_LOG_DATA_OFF_SEQUENCE_LOW, (guint32) entry->sequence);
                data_index++;
        }
        /* CRC-32C over EntryLength bytes, the checksum field zero. */
        vhdx_put_le32 (buf + VHDX_LOG_OFF_CHECKSUM, vhdx_crc32c (0, buf, length));
        return g_bytes_new_take (buf, length);
}

static gboolean
pread_all (int fd, guint8 *data, gsize len, guint64 offset, GError **error)
{
        while (len > 0) {
                ssize_t n = pread (fd, data, len, (off_t) offset);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        int saved_errno = n < 0 ? errno : EIO;

                        g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                                     "reading at offset %" G_GUINT64_FORMAT ": %s", offset,
                                     n < 0 ? g_strerror (saved_errno) : "end of file");
                        return FALSE;
                }
                data += n;
                len -= (gsize) n;
                offset += (guint64) n;
        }
        return TRUE;
}

gboolean
vhdx_gen_make_dirty (VhdxGen *gen,
                     const char *path,
                     guint64 block,
                     guint32 seed,
                     VhdxGenDirty *dirty,
                     GError **error)
{
        const VhdxGenParams *params;
        VhdxGenLayout layout;
        VhdxGenDirty d;
        VhdxGenLogEntry entry;
        VhdxGenLogDescriptor descriptor;
        g_autoptr (GBytes) encoded = NULL;
        g_autofree guint8 *payload = NULL;
        guint8 sector[VHDX_LOG_SECTOR_SIZE];
        guint8 on_disk[VHDX_LOG_SECTOR_SIZE];
        guint8 header[VHDX_HEADER_SIZE];
        guint64 sector_offset, first_index, sequence;
        guint current, step, i;
        GRand *rand;
        int fd;

        g_return_val_if_fail (gen != NULL && path != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        params = &gen->params;
        if (params->disk_type != VHDX_DISK_TYPE_DYNAMIC || block >= gen->n_blocks ||
            vhdx_gen_block_is_allocated (gen, block)) {
                g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                             "a dirty log needs an unallocated block of a dynamic image, "
                             "not block %" G_GUINT64_FORMAT,
                             block);
                return FALSE;
        }

        vhdx_gen_get_layout (gen, &layout);
        memset (&d, 0, sizeof d);
        d.block = block;
        d.block_file_offset = round_up_mib (layout.file_size);
        d.length = MIN ((guint64) params->block_size,
                        params->virtual_size - block * params->block_size);
        d.bat_entry_offset =
                vhdx_gen_layout_bat_entry_offset (&layout, vhdx_gen_block_bat_index (gen, block));

        /* The BAT sector holding the entry, as written, then with the new entry. */
        sector_offset = d.bat_entry_offset - d.bat_entry_offset % VHDX_LOG_SECTOR_SIZE;
        first_index = (sector_offset - layout.bat_offset) / VHDX_BAT_ENTRY_SIZE;
        for (i = 0; i < VHDX_LOG_SECTOR_SIZE / VHDX_BAT_ENTRY_SIZE; i++)
                vhdx_put_le64 (sector + i * VHDX_BAT_ENTRY_SIZE,
                               vhdx_gen_bat_entry (gen, first_index + i));

        /* A log GUID of its own, reproducible from the seeds. */
        rand = g_rand_new_with_seed (params->seed ^ seed ^ 0x106e106eu);
        random_guid (rand, &d.log_guid);
        g_rand_free (rand);

        d.log_entry_offset = layout.log_offset;
        d.log_sequence = 1;
        d.flushed_file_offset = layout.file_size;
        d.last_file_offset = d.block_file_offset + params->block_size;

        fd = open (path, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                int saved_errno = errno;

                g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                             "opening %s: %s", path, g_strerror (saved_errno));
                return FALSE;
        }
        /* The file must be the generator's: its BAT sector is what the record says. */
        if (!pread_all (fd, on_disk, sizeof on_disk, sector_offset, error))
                goto fail;
        if (memcmp (on_disk, sector, sizeof sector) != 0) {
                g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                             "%s: the BAT at %" G_GUINT64_FORMAT " is not the generator's", path,
                             sector_offset);
                goto fail;
        }
        vhdx_put_le64 (sector + (d.bat_entry_offset - sector_offset),
                       d.block_file_offset | VHDX_PAYLOAD_FULLY_PRESENT);

        /* The payload first, in place: payload never goes through the log. */
        payload = g_malloc (d.length);
        vhdx_gen_pattern_fill_buffer (payload, block * params->block_size, d.length, seed);
        if (!pwrite_all (fd, payload, d.length, d.block_file_offset, error))
                goto fail;

        /* One entry at the start of the log, the tail of its own sequence. */
        entry.sequence = d.log_sequence;
        entry.tail = 0;
        entry.log_guid = d.log_guid;
        entry.flushed_file_offset = d.flushed_file_offset;
        entry.last_file_offset = d.last_file_offset;
        descriptor.file_offset = sector_offset;
        descriptor.data = sector;
        descriptor.zero_length = 0;
        encoded = vhdx_gen_encode_log_entry (&entry, &descriptor, 1);
        d.log_entry_length = (guint32) g_bytes_get_size (encoded);
        if (!pwrite_all (fd, g_bytes_get_data (encoded, NULL), d.log_entry_length,
                         d.log_entry_offset, error))
                goto fail;

        /*
         * Both headers name the log: the non-current one first with the
         * sequence number + 1, then the other with + 2.  With identical
         * headers the first is taken as current.
         */
        current = params->identical_headers ? 0 : 1;
        sequence = vhdx_gen_get_header_sequence (gen, current + 1);
        for (step = 0; step < 2; step++) {
                guint slot = step == 0 ? 1 - current : current;

                vhdx_gen_build_header (gen, sequence + 1 + step, &d.log_guid, header);
                if (!pwrite_all (fd, header, sizeof header, layout.header_offset[slot], error))
                        goto fail;
        }
        d.header_index = current + 1;
        d.header_sequence = sequence + 2;

        if (!close_file (fd, path, error))
                return FALSE;
        if (dirty != NULL)
                *dirty = d;
        return TRUE;

fail:
        close (fd);
        return FALSE;
}
