/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Lists the volumes of a pool as libvirt sees them and, for each volume that
 * is a VHDX image (told by content, not by name), what the image really is.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>

#include "pool-scan.h"
#include "pool-util.h"
#include "vhdx-header.h"
#include "vhdx-io.h"

void
pool_volume_free (PoolVolume *volume)
{
        if (volume == NULL)
                return;
        g_free (volume->name);
        g_free (volume->path);
        g_free (volume->libvirt_format);
        g_free (volume->format);
        g_clear_pointer (&volume->parents, g_ptr_array_unref);
        g_free (volume->error);
        g_free (volume);
}

static void
pool_parent_free (PoolParent *parent)
{
        g_free (parent->path);
        g_free (parent->pool);
        g_free (parent->volume);
        g_free (parent);
}

const char *
pool_enum_nick (GType type, int value)
{
        g_autoptr (GEnumClass) klass = g_type_class_ref (type);
        GEnumValue *enum_value = g_enum_get_value (klass, value);

        return enum_value != NULL ? enum_value->value_nick : "";
}

/* Detection */

/* Whether the regular file or block device at @path starts like a VHDX file. */
gboolean
pool_file_is_vhdx (const char *path, gboolean *is_vhdx, GError **error)
{
        g_autoptr (GError) local_error = NULL;
        g_autoptr (VhdxIo) io = NULL;

        *is_vhdx = FALSE;
        io = vhdx_io_open_path (path, FALSE, &local_error);
        if (io == NULL) {
                /* Never hang on, or read, a FIFO or device someone left in a pool. */
                if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE) ||
                    g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY))
                        return TRUE;
                g_propagate_error (error, g_steal_pointer (&local_error));
                return FALSE;
        }
        return vhdx_probe (io, is_vhdx, error);
}

/* The same test through libvirt, for volumes that cannot be opened here. */
static gboolean
volume_is_vhdx_remote (virConnectPtr conn, virStorageVolPtr vol, gboolean *is_vhdx, GError **error)
{
        char signature[VHDX_PROBE_SIZE];
        g_autoptr (virStream) stream = virStreamNew (conn, 0);
        gsize got = 0;

        *is_vhdx = FALSE;
        if (stream == NULL || virStorageVolDownload (vol, stream, 0, sizeof signature, 0) < 0) {
                pool_set_libvirt_error (error, _ ("cannot read volume '%s'"),
                                        virStorageVolGetName (vol));
                return FALSE;
        }
        while (got < sizeof signature) {
                int n = virStreamRecv (stream, signature + got, sizeof signature - got);

                if (n < 0) {
                        pool_set_libvirt_error (error, _ ("cannot read volume '%s'"),
                                                virStorageVolGetName (vol));
                        virStreamAbort (stream);
                        return FALSE;
                }
                if (n == 0)
                        break;
                got += (gsize) n;
        }
        if (virStreamFinish (stream) < 0) {
                pool_set_libvirt_error (error, _ ("cannot read volume '%s'"),
                                        virStorageVolGetName (vol));
                return FALSE;
        }
        *is_vhdx = vhdx_probe_bytes (signature, got);
        return TRUE;
}

/* Which volume of which active pool each path is. */

typedef struct {
        char *pool;
        char *volume;
} VolumeRef;

static void
volume_ref_free (VolumeRef *ref)
{
        g_free (ref->pool);
        g_free (ref->volume);
        g_free (ref);
}

static GHashTable *
volume_paths_new (virConnectPtr conn)
{
        GHashTable *paths = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                   (GDestroyNotify) volume_ref_free);
        virStoragePoolPtr *pools = NULL;
        int n_pools;

        n_pools =
                virConnectListAllStoragePools (conn, &pools, VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE);
        for (int i = 0; i < n_pools; i++) {
                virStorageVolPtr *vols = NULL;
                int n_vols = virStoragePoolListAllVolumes (pools[i], &vols, 0);

                for (int j = 0; j < n_vols; j++) {
                        char *path = virStorageVolGetPath (vols[j]);

                        if (path != NULL) {
                                VolumeRef *ref = g_new0 (VolumeRef, 1);

                                ref->pool = g_strdup (virStoragePoolGetName (pools[i]));
                                ref->volume = g_strdup (virStorageVolGetName (vols[j]));
                                g_hash_table_insert (paths, pool_canonical_path (path), ref);
                                free (path);
                        }
                        virStorageVolFree (vols[j]);
                }
                free (vols);
                virStoragePoolFree (pools[i]);
        }
        free (pools);
        return paths;
}

/* Inspection of one volume */

/* The parent that the differencing image @image, opened without it, names. */
static PoolParent *
missing_parent (VhdxImage *image)
{
        static const char *const keys[] = { "relative_path", "absolute_win32_path", "volume_path" };
        GHashTable *locator = vhdx_image_get_parent_locator (image);
        PoolParent *parent = g_new0 (PoolParent, 1);

        parent->missing = TRUE;
        for (gsize i = 0; locator != NULL && i < G_N_ELEMENTS (keys) && parent->path == NULL; i++)
                parent->path = g_strdup (g_hash_table_lookup (locator, keys[i]));
        if (parent->path == NULL)
                parent->path = g_strdup ("");
        return parent;
}

/* The stored bytes of an image are counted by scanning its BAT, whose size
 * grows with the virtual disk (512 MiB for 64 TiB in 1 MiB blocks).  A listing
 * reads no BAT of more entries than this (1 MiB of table: 128 GiB of disk in
 * 1 MiB blocks, 4 TiB in 32 MiB blocks), so that listing a pool of large
 * images costs what opening them does; larger images have no stored bytes in
 * the listing (`vhdx info --allocated` counts them). */
#define ALLOCATED_MAX_BAT_ENTRIES (128 * 1024)

/* allocated_size of an image whose BAT is too large to scan. */
#define ALLOCATED_UNKNOWN G_MAXUINT64

/* The entries of @image's BAT, from its geometry (MS-VHDX 2.5): a sector
 * bitmap entry follows every chunk of data block entries. */
static guint64
bat_entries (VhdxImage *image)
{
        guint64 block = vhdx_image_get_block_size (image);
        guint64 sector = vhdx_image_get_logical_sector_size (image);
        guint64 chunk_ratio, blocks;

        if (block == 0 || sector == 0)
                return G_MAXUINT64;
        chunk_ratio = MAX ((G_GUINT64_CONSTANT (1) << 23) * sector / block, 1);
        blocks = (vhdx_image_get_virtual_size (image) + block - 1) / block;
        return blocks + (blocks + chunk_ratio - 1) / chunk_ratio;
}

static void
inspect_image (PoolVolume *volume, virConnectPtr conn, GHashTable **paths)
{
        g_autoptr (GFile) file = g_file_new_for_path (volume->path);
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxImage) last = NULL;
        VhdxImage *member;

        /* A checkpoint copied without its parent is still what it is: a
         * differencing image, whose chain ends at a missing parent. */
        image = vhdx_image_new (file, VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT, NULL, &error);
        if (image == NULL) {
                volume->error = g_strdup (error->message);
                return;
        }
        volume->details_known = TRUE;
        volume->virtual_size = vhdx_image_get_virtual_size (image);
        volume->allocated_size = bat_entries (image) <= ALLOCATED_MAX_BAT_ENTRIES
                                         ? vhdx_image_get_allocated_size (image)
                                         : ALLOCATED_UNKNOWN;
        volume->file_size = vhdx_image_get_file_size (image);
        volume->disk_type = vhdx_image_get_disk_type (image);
        volume->log_state = vhdx_image_get_log_state (image);
        volume->parents = g_ptr_array_new_with_free_func ((GDestroyNotify) pool_parent_free);

        last = g_object_ref (image);
        member = vhdx_image_dup_parent (image);
        while (member != NULL) {
                g_autoptr (VhdxImage) current = member;
                g_autofree char *path = g_file_get_path (vhdx_image_get_file (current));
                PoolParent *parent = g_new0 (PoolParent, 1);

                if (path != NULL) {
                        VolumeRef *ref;

                        parent->path = pool_canonical_path (path);
                        if (*paths == NULL)
                                *paths = volume_paths_new (conn);
                        ref = g_hash_table_lookup (*paths, parent->path);
                        if (ref != NULL) {
                                parent->pool = g_strdup (ref->pool);
                                parent->volume = g_strdup (ref->volume);
                        }
                } else {
                        parent->path = g_file_get_uri (vhdx_image_get_file (current));
                }
                g_ptr_array_add (volume->parents, parent);
                g_set_object (&last, current);
                member = vhdx_image_dup_parent (current);
        }
        if (vhdx_image_has_parent (last))
                g_ptr_array_add (volume->parents, missing_parent (last));
}

static PoolVolume *
inspect_volume (virConnectPtr conn, virStorageVolPtr vol, gboolean local, GHashTable **paths)
{
        PoolVolume *volume = g_new0 (PoolVolume, 1);
        virStorageVolInfo info;
        char *path;
        char *xml;
        gboolean is_vhdx = FALSE;
        g_autoptr (GError) error = NULL;

        volume->name = g_strdup (virStorageVolGetName (vol));
        path = virStorageVolGetPath (vol);
        volume->path = g_strdup (path != NULL ? path : "");
        free (path);
        xml = virStorageVolGetXMLDesc (vol, 0);
        volume->libvirt_format = pool_xml_get (xml, "volume/target/format", "type");
        free (xml);
        if (volume->libvirt_format == NULL)
                volume->libvirt_format = g_strdup ("");

        if (virStorageVolGetInfo (vol, &info) < 0) {
                g_autoptr (GError) info_error = NULL;

                pool_set_libvirt_error (&info_error, "%s", volume->name);
                volume->error = g_strdup (info_error->message);
                volume->format = g_strdup (volume->libvirt_format);
                return volume;
        }
        volume->libvirt_capacity = info.capacity;
        volume->libvirt_allocation = info.allocation;

        if (info.type == VIR_STORAGE_VOL_FILE || info.type == VIR_STORAGE_VOL_BLOCK) {
                gboolean known = local && volume->path[0] != '\0' &&
                                 pool_file_is_vhdx (volume->path, &is_vhdx, &error);

                /* A volume that cannot be opened here may still be read
                 * through libvirt, as it is on a remote host. */
                if (!known) {
                        g_autoptr (GError) remote_error = NULL;

                        if (!volume_is_vhdx_remote (conn, vol, &is_vhdx, &remote_error)) {
                                volume->error = g_strdup (error != NULL ? error->message
                                                                        : remote_error->message);
                        } else if (is_vhdx) {
                                /* TRANSLATORS: the image is a VHDX file that is not readable
                                 * from this machine; the argument says why */
                                volume->error =
                                        error != NULL
                                                ? g_strdup_printf (
                                                          _ ("cannot open the image here: %s"),
                                                          error->message)
                                                : g_strdup (_ ("the image is on another host"));
                        }
                }
        }

        if (!is_vhdx) {
                volume->format = g_strdup (volume->libvirt_format);
                volume->virtual_size = volume->libvirt_capacity;
                volume->allocated_size = volume->libvirt_allocation;
                return volume;
        }

        volume->is_vhdx = TRUE;
        volume->format = g_strdup ("vhdx");
        if (!g_str_equal (volume->libvirt_format, "vhdx"))
                volume->mismatches |= POOL_MISMATCH_FORMAT;
        if (volume->error != NULL)
                return volume;

        inspect_image (volume, conn, paths);
        if (volume->details_known) {
                if (volume->libvirt_capacity != volume->virtual_size)
                        volume->mismatches |= POOL_MISMATCH_CAPACITY;
                if (volume->allocated_size != ALLOCATED_UNKNOWN &&
                    volume->libvirt_allocation != volume->allocated_size)
                        volume->mismatches |= POOL_MISMATCH_ALLOCATION;
        }
        return volume;
}

static int
compare_volumes (gconstpointer a, gconstpointer b)
{
        const PoolVolume *va = *(PoolVolume *const *) a;
        const PoolVolume *vb = *(PoolVolume *const *) b;

        return strcmp (va->name, vb->name);
}

/*
 * The volumes of @pool that libvirt knows (refresh the pool first to see
 * what its storage holds now), sorted by name.  A volume that cannot be
 * inspected is in the list with its error; only failures of libvirt itself
 * fail the scan.
 */
GPtrArray *
pool_scan (virConnectPtr conn, virStoragePoolPtr pool, GError **error)
{
        g_autoptr (GPtrArray) volumes = NULL;
        g_autoptr (GHashTable) paths = NULL;
        virStorageVolPtr *vols = NULL;
        gboolean local = pool_connection_is_local (conn);
        int n_vols;

        if (!pool_ensure_active (pool, error))
                return NULL;
        n_vols = virStoragePoolListAllVolumes (pool, &vols, 0);
        if (n_vols < 0) {
                pool_set_libvirt_error (error, _ ("cannot list the volumes of storage pool '%s'"),
                                        virStoragePoolGetName (pool));
                return NULL;
        }

        volumes = g_ptr_array_new_with_free_func ((GDestroyNotify) pool_volume_free);
        for (int i = 0; i < n_vols; i++) {
                g_ptr_array_add (volumes, inspect_volume (conn, vols[i], local, &paths));
                virStorageVolFree (vols[i]);
        }
        free (vols);
        g_ptr_array_sort (volumes, compare_volumes);
        return g_steal_pointer (&volumes);
}

/* Output */

static void
add_mismatches (JsonBuilder *builder, PoolMismatch mismatches)
{
        json_builder_set_member_name (builder, "mismatches");
        json_builder_begin_array (builder);
        if (mismatches & POOL_MISMATCH_FORMAT)
                json_builder_add_string_value (builder, "format");
        if (mismatches & POOL_MISMATCH_CAPACITY)
                json_builder_add_string_value (builder, "capacity");
        if (mismatches & POOL_MISMATCH_ALLOCATION)
                json_builder_add_string_value (builder, "allocation");
        json_builder_end_array (builder);
}

static void
add_volume_json (JsonBuilder *builder, const PoolVolume *volume)
{
        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "name");
        json_builder_add_string_value (builder, volume->name);
        json_builder_set_member_name (builder, "path");
        json_builder_add_string_value (builder, volume->path);

        json_builder_set_member_name (builder, "libvirt");
        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "format");
        json_builder_add_string_value (builder, volume->libvirt_format);
        json_builder_set_member_name (builder, "capacity");
        json_builder_add_int_value (builder, (gint64) volume->libvirt_capacity);
        json_builder_set_member_name (builder, "allocation");
        json_builder_add_int_value (builder, (gint64) volume->libvirt_allocation);
        json_builder_end_object (builder);

        json_builder_set_member_name (builder, "vhdx");
        json_builder_add_boolean_value (builder, volume->is_vhdx);
        json_builder_set_member_name (builder, "format");
        json_builder_add_string_value (builder, volume->format);
        if (!volume->is_vhdx || volume->details_known) {
                json_builder_set_member_name (builder, "virtual-size");
                json_builder_add_int_value (builder, (gint64) volume->virtual_size);
                if (volume->allocated_size != ALLOCATED_UNKNOWN) {
                        json_builder_set_member_name (builder, "allocated-size");
                        json_builder_add_int_value (builder, (gint64) volume->allocated_size);
                }
        }
        if (volume->details_known) {
                json_builder_set_member_name (builder, "file-size");
                json_builder_add_int_value (builder, (gint64) volume->file_size);
                json_builder_set_member_name (builder, "disk-type");
                json_builder_add_string_value (builder, pool_enum_nick (VHDX_TYPE_DISK_TYPE,
                                                                        (int) volume->disk_type));
                json_builder_set_member_name (builder, "log-state");
                json_builder_add_string_value (builder, pool_enum_nick (VHDX_TYPE_LOG_STATE,
                                                                        (int) volume->log_state));
                json_builder_set_member_name (builder, "dirty-log");
                json_builder_add_boolean_value (builder, volume->log_state != VHDX_LOG_STATE_CLEAN);
                json_builder_set_member_name (builder, "parents");
                json_builder_begin_array (builder);
                for (guint i = 0; i < volume->parents->len; i++) {
                        const PoolParent *parent = g_ptr_array_index (volume->parents, i);

                        json_builder_begin_object (builder);
                        json_builder_set_member_name (builder, "path");
                        json_builder_add_string_value (builder, parent->path);
                        json_builder_set_member_name (builder, "pool");
                        if (parent->pool != NULL)
                                json_builder_add_string_value (builder, parent->pool);
                        else
                                json_builder_add_null_value (builder);
                        json_builder_set_member_name (builder, "volume");
                        if (parent->volume != NULL)
                                json_builder_add_string_value (builder, parent->volume);
                        else
                                json_builder_add_null_value (builder);
                        json_builder_set_member_name (builder, "missing");
                        json_builder_add_boolean_value (builder, parent->missing);
                        json_builder_end_object (builder);
                }
                json_builder_end_array (builder);
        }
        add_mismatches (builder, volume->mismatches);
        if (volume->error != NULL) {
                json_builder_set_member_name (builder, "error");
                json_builder_add_string_value (builder, volume->error);
        }
        json_builder_end_object (builder);
}

/* The volumes as a JSON array of objects, one per volume. */
JsonNode *
pool_volumes_to_json (GPtrArray *volumes)
{
        g_autoptr (JsonBuilder) builder = json_builder_new ();

        json_builder_begin_array (builder);
        for (guint i = 0; i < volumes->len; i++)
                add_volume_json (builder, g_ptr_array_index (volumes, i));
        json_builder_end_array (builder);
        return json_builder_get_root (builder);
}

enum {
        COLUMN_NAME,
        COLUMN_LIBVIRT_FORMAT,
        COLUMN_LIBVIRT_CAPACITY,
        COLUMN_LIBVIRT_ALLOCATION,
        COLUMN_FORMAT,
        COLUMN_VIRTUAL_SIZE,
        COLUMN_STORED,
        COLUMN_TYPE,
        COLUMN_LOG,
        COLUMN_PARENTS,
        N_COLUMNS
};

/* A value of libvirt's, with a mark when it is wrong. */
static char *
libvirt_cell (char *value, gboolean wrong)
{
        char *cell = wrong ? g_strconcat (value, "*", NULL) : g_strdup (value);

        g_free (value);
        return cell;
}

static char *
parents_cell (const PoolVolume *volume)
{
        g_autoptr (GString) text = g_string_new (NULL);

        if (volume->error != NULL)
                /* TRANSLATORS: in the last column of the table; the argument says why the
                 * volume could not be inspected */
                return g_strdup_printf (_ ("error: %s"), volume->error);
        if (volume->parents == NULL)
                return g_strdup ("");
        for (guint i = 0; i < volume->parents->len; i++) {
                const PoolParent *parent = g_ptr_array_index (volume->parents, i);

                if (i > 0)
                        g_string_append (text, " > ");
                if (parent->missing) {
                        /* TRANSLATORS: a parent image that cannot be found, as its child names it
                         */
                        g_string_append_printf (text, _ ("missing: %s"), parent->path);
                } else if (parent->pool != NULL) {
                        g_string_append_printf (text, "%s/%s", parent->pool, parent->volume);
                } else {
                        g_autofree char *display = g_filename_display_name (parent->path);

                        /* TRANSLATORS: a parent image that no storage pool holds */
                        g_string_append_printf (text, _ ("%s (in no pool)"), display);
                }
        }
        return g_string_free (g_steal_pointer (&text), FALSE);
}

static const char *
log_cell (VhdxLogState state)
{
        switch (state) {
        case VHDX_LOG_STATE_CLEAN:
                return _ ("clean");
        case VHDX_LOG_STATE_REPLAYED_IN_MEMORY:
        case VHDX_LOG_STATE_REPLAYED:
        default:
                /* TRANSLATORS: the image's log holds writes that were not yet applied */
                return _ ("dirty");
        }
}

static const char *
type_cell (VhdxDiskType type)
{
        switch (type) {
        case VHDX_DISK_TYPE_FIXED:
                return _ ("fixed");
        case VHDX_DISK_TYPE_DYNAMIC:
                return _ ("dynamic");
        case VHDX_DISK_TYPE_DIFFERENCING:
        default:
                return _ ("differencing");
        }
}

static void
print_row (char **cells, const glong *widths)
{
        g_autoptr (GString) line = g_string_new (NULL);
        guint last = N_COLUMNS;

        /* No trailing blanks: stop after the last non-empty cell. */
        while (last > 0 && cells[last - 1][0] == '\0')
                last--;
        for (guint i = 0; i < last; i++) {
                g_string_append (line, cells[i]);
                if (i + 1 < last)
                        g_string_append_printf (line, "%*s",
                                                (int) (widths[i] - g_utf8_strlen (cells[i], -1) +
                                                       2),
                                                "");
        }
        g_print ("%s\n", line->str);
}

/* The line above the header: each group heading starts over its first column. */
static void
print_groups (char **groups, const glong *widths)
{
        g_autoptr (GString) line = g_string_new (NULL);
        glong position = 0;

        for (guint i = 0; i < N_COLUMNS; i++) {
                if (groups[i][0] != '\0') {
                        glong length = (glong) g_utf8_strlen (line->str, -1);

                        if (length < position)
                                g_string_append_printf (line, "%*s", (int) (position - length), "");
                        g_string_append (line, groups[i]);
                }
                position += widths[i] + 2;
        }
        g_print ("%s\n", line->str);
}

/* The volumes as an aligned table: libvirt's view, then the truth. */
void
pool_volumes_print_table (GPtrArray *volumes)
{
        g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
        glong widths[N_COLUMNS] = { 0 };
        gboolean any_mismatch = FALSE;
        char **header = g_new0 (char *, N_COLUMNS + 1);
        char **groups = g_new0 (char *, N_COLUMNS + 1);

        header[COLUMN_NAME] = g_strdup (_ ("Name"));
        header[COLUMN_LIBVIRT_FORMAT] = g_strdup (_ ("Format"));
        header[COLUMN_LIBVIRT_CAPACITY] = g_strdup (_ ("Capacity"));
        header[COLUMN_LIBVIRT_ALLOCATION] = g_strdup (_ ("Allocation"));
        header[COLUMN_FORMAT] = g_strdup (_ ("Format"));
        header[COLUMN_VIRTUAL_SIZE] = g_strdup (_ ("Virtual size"));
        /* TRANSLATORS: the bytes of the virtual disk that the image file stores */
        header[COLUMN_STORED] = g_strdup (_ ("Stored"));
        header[COLUMN_TYPE] = g_strdup (_ ("Type"));
        header[COLUMN_LOG] = g_strdup (_ ("Log"));
        header[COLUMN_PARENTS] = g_strdup (_ ("Parents"));
        for (guint i = 0; i < N_COLUMNS; i++)
                groups[i] = g_strdup ("");
        g_free (groups[COLUMN_LIBVIRT_FORMAT]);
        /* TRANSLATORS: heads the columns of what libvirt reports */
        groups[COLUMN_LIBVIRT_FORMAT] = g_strdup (_ ("libvirt says"));
        g_free (groups[COLUMN_FORMAT]);
        /* TRANSLATORS: heads the columns of what the volume really is */
        groups[COLUMN_FORMAT] = g_strdup (_ ("the volume is"));
        g_ptr_array_add (rows, header);

        for (guint i = 0; i < volumes->len; i++) {
                const PoolVolume *volume = g_ptr_array_index (volumes, i);
                char **cells = g_new0 (char *, N_COLUMNS + 1);
                PoolMismatch wrong = volume->mismatches;

                any_mismatch |= wrong != 0;
                cells[COLUMN_NAME] = g_strdup (volume->name);
                cells[COLUMN_LIBVIRT_FORMAT] = libvirt_cell (g_strdup (volume->libvirt_format),
                                                             wrong & POOL_MISMATCH_FORMAT);
                cells[COLUMN_LIBVIRT_CAPACITY] =
                        libvirt_cell (pool_format_capacity (volume->libvirt_capacity),
                                      wrong & POOL_MISMATCH_CAPACITY);
                cells[COLUMN_LIBVIRT_ALLOCATION] =
                        libvirt_cell (pool_format_capacity (volume->libvirt_allocation),
                                      wrong & POOL_MISMATCH_ALLOCATION);
                if (volume->is_vhdx) {
                        cells[COLUMN_FORMAT] = g_strdup (volume->format);
                        if (volume->details_known) {
                                cells[COLUMN_VIRTUAL_SIZE] =
                                        pool_format_capacity (volume->virtual_size);
                                /* TRANSLATORS: the stored bytes of an image too large to
                                 * count them in a listing */
                                cells[COLUMN_STORED] =
                                        volume->allocated_size != ALLOCATED_UNKNOWN
                                                ? pool_format_capacity (volume->allocated_size)
                                                : g_strdup (_ ("not counted"));
                                cells[COLUMN_TYPE] = g_strdup (type_cell (volume->disk_type));
                                cells[COLUMN_LOG] = g_strdup (log_cell (volume->log_state));
                        }
                }
                for (guint c = COLUMN_FORMAT; c < COLUMN_PARENTS; c++) {
                        if (cells[c] == NULL)
                                cells[c] = g_strdup (volume->is_vhdx ? "-" : "");
                }
                cells[COLUMN_PARENTS] = parents_cell (volume);
                g_ptr_array_add (rows, cells);
        }

        for (guint r = 0; r < rows->len; r++) {
                char **cells = g_ptr_array_index (rows, r);

                for (guint c = 0; c < N_COLUMNS; c++)
                        widths[c] = MAX (widths[c], g_utf8_strlen (cells[c], -1));
        }
        /* A group heading spans the columns up to the next one. */
        {
                glong span = widths[COLUMN_LIBVIRT_FORMAT] + 2 + widths[COLUMN_LIBVIRT_CAPACITY] +
                             2 + widths[COLUMN_LIBVIRT_ALLOCATION];
                glong needed = g_utf8_strlen (groups[COLUMN_LIBVIRT_FORMAT], -1);

                if (needed > span)
                        widths[COLUMN_LIBVIRT_ALLOCATION] += needed - span;
        }
        print_groups (groups, widths);
        for (guint r = 0; r < rows->len; r++)
                print_row (g_ptr_array_index (rows, r), widths);
        if (any_mismatch)
                g_print ("%s\n", _ ("* libvirt's value is wrong: the volume is a VHDX image"));
        g_strfreev (groups);
}
