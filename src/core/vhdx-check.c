/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Checking every structure of an opened image (see vhdx-check.h). */
#include "vhdx-check.h"

#include "vhdx-header.h"
#include "vhdx-private.h"
#include "vhdx-file-private.h"

/* A byte range of the file that belongs to one structure. */
typedef enum {
        EXTENT_NAMED,  /* name holds the structure's name */
        EXTENT_BLOCK,  /* payload block number */
        EXTENT_BITMAP, /* sector bitmap of chunk number */
} ExtentKind;

typedef struct {
        guint64 start;
        guint64 end;
        guint64 entry_offset; /* where the structure is described */
        ExtentKind kind;
        guint64 number;
        char *name;
} Extent;

static void
extent_clear (gpointer data)
{
        Extent *e = data;

        g_free (e->name);
}

static char *
extent_name (const Extent *e)
{
        switch (e->kind) {
        case EXTENT_BLOCK:
                return g_strdup_printf (_ ("block %" PRIu64), e->number);
        case EXTENT_BITMAP:
                return g_strdup_printf (_ ("sector bitmap %" PRIu64), e->number);
        case EXTENT_NAMED:
        default:
                return g_strdup (e->name);
        }
}

static int
compare_extents (gconstpointer a, gconstpointer b)
{
        const Extent *ea = a, *eb = b;

        if (ea->start != eb->start)
                return ea->start < eb->start ? -1 : 1;
        return ea->end < eb->end ? -1 : ea->end > eb->end;
}

static void
add_extent (GArray *extents, guint64 start, guint64 length, guint64 entry_offset, char *name)
{
        Extent e = { start, start + length, entry_offset, EXTENT_NAMED, 0, name };

        g_array_append_val (extents, e);
}

static void
add_numbered_extent (GArray *extents,
                     guint64 start,
                     guint64 length,
                     guint64 entry_offset,
                     ExtentKind kind,
                     guint64 number)
{
        Extent e = { start, start + length, entry_offset, kind, number, NULL };

        g_array_append_val (extents, e);
}

/* The second copy of the region table is not read at open when the first is
 * good; a damaged or different copy would be used after damage to the first. */
static gboolean
check_region_table_copy (VhdxFile *file, GPtrArray *problems, GError **error)
{
        guint other = file->info.region_table_index == 1 ? 2 : 1;
        guint64 offset = other == 1 ? VHDX_REGION_TABLE1_OFFSET : VHDX_REGION_TABLE2_OFFSET;
        g_autofree char *name = g_strdup_printf (_ ("region table %u"), other);
        g_autofree guint8 *buf = g_malloc (VHDX_REGION_TABLE_SIZE);
        g_autoptr (GError) local_error = NULL;
        VhdxRegionTable copy = { 0 };

        if (file->info.region_table_index == 2)
                return TRUE; /* table 1 was damaged: already reported at open */
        if (!vhdx_io_read_exact (file->io, buf, VHDX_REGION_TABLE_SIZE, offset, name,
                                 &local_error) ||
            !vhdx_region_table_parse (buf, VHDX_REGION_TABLE_SIZE, offset, name,
                                      file->info.file_size, &copy, &local_error)) {
                if (local_error->domain != VHDX_ERROR) {
                        g_propagate_error (error, g_steal_pointer (&local_error));
                        return FALSE;
                }
                vhdx_problems_add (problems, VHDX_SEVERITY_ERROR, name, offset, "%s",
                                   local_error->message);
                return TRUE;
        }
        if (copy.bat.file_offset != file->regions.bat.file_offset ||
            copy.bat.length != file->regions.bat.length ||
            copy.metadata.file_offset != file->regions.metadata.file_offset ||
            copy.metadata.length != file->regions.metadata.length)
                vhdx_problems_add (problems, VHDX_SEVERITY_ERROR, name, offset,
                                   _ ("describes other BAT or metadata regions than region "
                                      "table 1"));
        vhdx_region_table_clear (&copy);
        return TRUE;
}

/* Report a problem with BAT entry @index; its name is made only when needed. */
static void entry_problem (GPtrArray *problems,
                           VhdxSeverity severity,
                           const VhdxInfo *info,
                           guint64 index,
                           const char *format,
                           ...) G_GNUC_PRINTF (5, 6);

static void
entry_problem (GPtrArray *problems,
               VhdxSeverity severity,
               const VhdxInfo *info,
               guint64 index,
               const char *format,
               ...)
{
        g_autofree char *name = g_strdup_printf (_ ("BAT entry %" PRIu64), index);
        g_autofree char *message = NULL;
        va_list args;

        va_start (args, format);
        message = g_strdup_vprintf (format, args);
        va_end (args);
        g_ptr_array_add (problems, vhdx_problem_new (severity, name,
                                                     info->bat_offset + index * VHDX_BAT_ENTRY_SIZE,
                                                     message));
}

/* Check sector bitmap entry @index; stored bitmaps go into @extents. */
static void
check_bitmap_entry (VhdxFile *file,
                    guint64 index,
                    guint64 entry,
                    GArray *extents,
                    GPtrArray *problems)
{
        const VhdxInfo *info = &file->info;
        guint state = vhdx_bat_entry_state (entry);
        guint64 offset = vhdx_bat_entry_offset (entry), end;

        if (state == VHDX_SB_NOT_PRESENT)
                return;
        if (info->disk_type != VHDX_DISK_TYPE_DIFFERENCING) {
                entry_problem (problems, VHDX_SEVERITY_ERROR, info, index,
                               _ ("sector bitmap state %u in a disk without a parent "
                                  "(expected 0)"),
                               state);
                return;
        }
        if (state != VHDX_SB_PRESENT) {
                entry_problem (problems, VHDX_SEVERITY_ERROR, info, index,
                               _ ("state %u is not a valid sector bitmap state"), state);
                return;
        }
        if (offset < VHDX_HEADER_SECTION_SIZE || !vhdx_add_u64 (offset, VHDX_MiB, &end) ||
            end > info->file_size) {
                entry_problem (problems, VHDX_SEVERITY_ERROR, info, index,
                               _ ("the sector bitmap at file offset %" PRIu64
                                  " is not inside the file's payload area"),
                               offset);
                return;
        }
        add_numbered_extent (extents, offset, VHDX_MiB,
                             info->bat_offset + index * VHDX_BAT_ENTRY_SIZE, EXTENT_BITMAP,
                             index / (info->geometry.chunk_ratio + 1));
}

/* Check payload entry @index (block @block); stored blocks go into @extents. */
static gboolean
check_payload_entry (VhdxFile *file,
                     guint64 index,
                     guint64 block,
                     guint64 entry,
                     GArray *extents,
                     GPtrArray *problems,
                     GError **error)
{
        const VhdxInfo *info = &file->info;
        guint state = vhdx_bat_entry_state (entry);
        guint64 offset = vhdx_bat_entry_offset (entry), length, end;

        if (entry & VHDX_BAT_RESERVED_MASK)
                entry_problem (problems, VHDX_SEVERITY_WARNING, info, index,
                               _ ("reserved bits are set (0x%" PRIx64 ")"),
                               entry & VHDX_BAT_RESERVED_MASK);
        if (block >= info->geometry.payload_blocks) {
                /* The padding of a differencing image's last chunk: never
                 * read, and cleared when the disk grows over it. */
                if (state != VHDX_PAYLOAD_NOT_PRESENT)
                        entry_problem (problems, VHDX_SEVERITY_WARNING, info, index,
                                       _ ("state %u past the end of the virtual disk "
                                          "(expected 0)"),
                                       state);
                return TRUE;
        }
        if (!vhdx_bat_payload_state_is_valid (state, info->disk_type)) {
                entry_problem (problems, VHDX_SEVERITY_ERROR, info, index,
                               _ ("state %u is not a valid payload block state for a %s "
                                  "disk"),
                               state, vhdx_disk_type_to_string (info->disk_type));
                return TRUE;
        }
        if (state == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
                guint64 chunk = block / info->geometry.chunk_ratio;
                guint64 bitmap_entry;

                /* Read directly: a scan must not fill the BAT cache. */
                if (!vhdx_bat_read_range (file->bat, vhdx_bat_bitmap_index (&info->geometry, chunk),
                                          1, &bitmap_entry, error))
                        return FALSE;
                if (vhdx_bat_entry_state (bitmap_entry) != VHDX_SB_PRESENT)
                        entry_problem (problems, VHDX_SEVERITY_ERROR, info, index,
                                       _ ("block %" PRIu64 " is partially "
                                          "present but the sector bitmap of chunk %" PRIu64
                                          " is not"),
                                       block, chunk);
        } else if (state != VHDX_PAYLOAD_FULLY_PRESENT) {
                return TRUE;
        }
        length = vhdx_bat_block_length (&info->geometry, block);
        if (offset < VHDX_HEADER_SECTION_SIZE) {
                entry_problem (problems, VHDX_SEVERITY_ERROR, info, index,
                               _ ("block %" PRIu64 " at file offset %" PRIu64
                                  " lies in the header section"),
                               block, offset);
                return TRUE;
        }
        if (!vhdx_add_u64 (offset, length, &end) || end > info->file_size) {
                entry_problem (problems, VHDX_SEVERITY_ERROR, info, index,
                               _ ("block %" PRIu64 " at file offset %" PRIu64
                                  " ends past the end of the file (%" PRIu64 " bytes)"),
                               block, offset, info->file_size);
                return TRUE;
        }
        add_numbered_extent (extents, offset, length,
                             info->bat_offset + index * VHDX_BAT_ENTRY_SIZE, EXTENT_BLOCK, block);
        return TRUE;
}

typedef struct {
        VhdxFile *file;
        GArray *extents;
        GPtrArray *problems;
} BatCheck;

static gboolean
check_entry (guint64 index, guint64 entry, gpointer user_data, GError **error)
{
        BatCheck *check = user_data;
        const VhdxBatGeometry *g = &check->file->info.geometry;

        if (vhdx_bat_index_is_bitmap (g, index)) {
                check_bitmap_entry (check->file, index, entry, check->extents, check->problems);
                return TRUE;
        }
        if (entry == 0)
                return TRUE; /* NOT_PRESENT, the common case */
        return check_payload_entry (check->file, index, vhdx_bat_index_block (g, index), entry,
                                    check->extents, check->problems, error);
}

/* Every entry of the BAT, read in a streaming scan. */
static gboolean
check_bat (VhdxFile *file, GArray *extents, GPtrArray *problems, GError **error)
{
        BatCheck check = { file, extents, problems };

        return vhdx_bat_scan (file->bat, check_entry, &check, error);
}

static void
check_overlaps (GArray *extents, GPtrArray *problems)
{
        const Extent *reach = NULL; /* the extent reaching furthest so far */

        g_array_sort (extents, compare_extents);
        for (guint i = 0; i < extents->len; i++) {
                const Extent *e = &g_array_index (extents, Extent, i);

                if (reach != NULL && e->start < reach->end) {
                        g_autofree char *name = extent_name (e);
                        g_autofree char *other = extent_name (reach);
                        vhdx_problems_add (problems, VHDX_SEVERITY_ERROR, name, e->entry_offset,
                                           _ ("file bytes %" PRIu64 " to %" PRIu64 " overlap %s"),
                                           e->start, e->end, other);
                }
                if (reach == NULL || e->end > reach->end)
                        reach = e;
        }
}

gboolean
vhdx_file_check (VhdxFile *file, GPtrArray *problems, GError **error)
{
        const VhdxInfo *info;
        g_autoptr (GArray) extents = NULL;

        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (problems != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        info = &file->info;
        extents = g_array_new (FALSE, TRUE, sizeof (Extent));
        g_array_set_clear_func (extents, extent_clear);

        if (!check_region_table_copy (file, problems, error))
                return FALSE;

        add_extent (extents, 0, VHDX_HEADER_SECTION_SIZE, 0, g_strdup (_ ("the header section")));
        if (info->log_length > 0)
                add_extent (extents, info->log_offset, info->log_length,
                            info->header_index == 1 ? VHDX_HEADER1_OFFSET : VHDX_HEADER2_OFFSET,
                            g_strdup (_ ("the log")));
        for (guint i = 0; i < file->regions.entries->len; i++) {
                const VhdxRegionEntry *r =
                        &g_array_index (file->regions.entries, VhdxRegionEntry, i);
                char guid[VHDX_GUID_STRING_LENGTH + 1];
                vhdx_guid_to_string_buf (&r->guid, guid);
                add_extent (extents, r->file_offset, r->length,
                            (info->region_table_index == 1 ? VHDX_REGION_TABLE1_OFFSET
                                                           : VHDX_REGION_TABLE2_OFFSET) +
                                    VHDX_REGION_HEADER_SIZE + (guint64) i * VHDX_REGION_ENTRY_SIZE,
                            g_strdup_printf (_ ("region %s"), guid));
        }
        if (!check_bat (file, extents, problems, error))
                return FALSE;
        check_overlaps (extents, problems);

        /* A broken chain is a broken image: the image itself is checked,
         * and the missing parent is one error. */
        if (file->parent == NULL && file->parent_error != NULL)
                vhdx_problems_add (problems, VHDX_SEVERITY_ERROR, _ ("parent locator"),
                                   info->parent_locator_offset, "%s", file->parent_error->message);

        /* Every member of the chain is checked; its problems name it. */
        if (file->parent != NULL) {
                g_autoptr (GPtrArray) parent_problems =
                        g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
                g_autofree char *display = g_filename_display_name (file->parent_path);

                if (!vhdx_file_check (file->parent, parent_problems, error))
                        return FALSE;
                for (guint i = 0; i < parent_problems->len; i++) {
                        const VhdxProblem *p = g_ptr_array_index (parent_problems, i);
                        g_autofree char *structure =
                                g_strdup_printf (_ ("%s of parent %s"), p->structure, display);
                        g_ptr_array_add (problems, vhdx_problem_new (p->severity, structure,
                                                                     p->offset, p->message));
                }
        }
        return TRUE;
}

/*
 * The file space that the BAT gives out, for vhdx_file_check_exclusive_space():
 * runs of payload blocks that follow each other both in the disk and in the
 * file (a fixed image is one run), and sector bitmaps one by one.
 */
typedef struct {
        guint64 start;
        guint64 end;
        ExtentKind kind;
        guint64 first; /* block number, or chunk number of a bitmap */
} SpaceRun;

typedef struct {
        VhdxFile *file;
        GArray *runs; /* SpaceRun */
} SpaceScan;

static void
add_space (SpaceScan *scan, ExtentKind kind, guint64 number, guint64 start, guint64 length)
{
        const VhdxInfo *info = &scan->file->info;
        SpaceRun run = { start, 0, kind, number };
        guint64 end;

        /* Space that is not inside the file's payload area is refused when
         * the entry is used; only what could be written counts here. */
        if (start < VHDX_HEADER_SECTION_SIZE || !vhdx_add_u64 (start, length, &end) ||
            end > info->file_size)
                return;
        if (kind == EXTENT_BLOCK && scan->runs->len > 0) {
                SpaceRun *last = &g_array_index (scan->runs, SpaceRun, scan->runs->len - 1);

                if (last->kind == EXTENT_BLOCK && last->end == start &&
                    last->first + (last->end - last->start) / info->block_size == number) {
                        last->end = end;
                        return;
                }
        }
        run.end = end;
        g_array_append_val (scan->runs, run);
}

static gboolean
claim_entry (guint64 index, guint64 entry, gpointer user_data, GError **error)
{
        SpaceScan *scan = user_data;
        const VhdxBatGeometry *g = &scan->file->info.geometry;
        guint state = vhdx_bat_entry_state (entry);
        guint64 block;

        if (vhdx_bat_index_is_bitmap (g, index)) {
                if (state == VHDX_SB_PRESENT)
                        add_space (scan, EXTENT_BITMAP, index / (g->chunk_ratio + 1),
                                   vhdx_bat_entry_offset (entry), VHDX_MiB);
                return TRUE;
        }
        block = vhdx_bat_index_block (g, index);
        if (block < g->payload_blocks &&
            (state == VHDX_PAYLOAD_FULLY_PRESENT || state == VHDX_PAYLOAD_PARTIALLY_PRESENT))
                add_space (scan, EXTENT_BLOCK, block, vhdx_bat_entry_offset (entry),
                           vhdx_bat_block_length (g, block));
        return TRUE;
}

static int
compare_space_runs (gconstpointer a, gconstpointer b)
{
        const SpaceRun *ra = a, *rb = b;

        if (ra->start != rb->start)
                return ra->start < rb->start ? -1 : 1;
        return ra->end < rb->end ? -1 : ra->end > rb->end;
}

/* The name of what @run holds at file offset @offset, and its BAT entry's
 * file offset. */
static char *
space_name (VhdxFile *file, const SpaceRun *run, guint64 offset, guint64 *entry_offset)
{
        const VhdxBatGeometry *g = &file->info.geometry;
        Extent e = { 0, 0, 0, run->kind, run->first, NULL };
        guint64 index;

        if (run->kind == EXTENT_BLOCK) {
                e.number = run->first + (offset - run->start) / file->info.block_size;
                index = vhdx_bat_payload_index (g, e.number);
        } else {
                index = vhdx_bat_bitmap_index (g, e.number);
        }
        *entry_offset = file->info.bat_offset + index * VHDX_BAT_ENTRY_SIZE;
        return extent_name (&e);
}

gboolean
vhdx_file_check_exclusive_space (VhdxFile *file, GError **error)
{
        g_autoptr (GArray) runs = g_array_new (FALSE, FALSE, sizeof (SpaceRun));
        SpaceScan scan = { file, runs };
        const SpaceRun *reach = NULL; /* the run reaching furthest so far */

        g_return_val_if_fail (file != NULL, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (!vhdx_bat_scan (file->bat, claim_entry, &scan, error))
                return FALSE;
        g_array_sort (runs, compare_space_runs);
        for (guint i = 0; i < runs->len; i++) {
                const SpaceRun *run = &g_array_index (runs, SpaceRun, i);

                if (reach != NULL && run->start < reach->end) {
                        guint64 entry_offset, other_offset;
                        guint64 end = MIN (run->end, reach->end);
                        g_autofree char *name = space_name (file, run, run->start, &entry_offset);
                        g_autofree char *other =
                                space_name (file, reach, run->start, &other_offset);
                        g_autofree char *structure = g_strdup_printf (_ ("BAT entry of %s"), name);

                        vhdx_set_error (error, VHDX_ERROR_INVALID, structure, entry_offset,
                                        _ ("%s lies on file bytes %" PRIu64 " to %" PRIu64
                                           " that %s (BAT entry at offset %" PRIu64
                                           ") holds too: writing either would destroy the "
                                           "other's data, so the image is not opened for "
                                           "writing (expected each block and sector bitmap in "
                                           "space of its own; `vhdx check` lists what is "
                                           "damaged)"),
                                        name, run->start, end, other, other_offset);
                        return FALSE;
                }
                if (reach == NULL || run->end > reach->end)
                        reach = run;
        }
        return TRUE;
}
