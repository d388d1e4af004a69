/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Finding the differencing images made from an image (see vhdx-children.h). */
#include "vhdx-children.h"

#include <string.h>
#include <glib/gstdio.h>
#include <sys/stat.h>

#include "vhdx-private.h"

/* The identity of a file, or FALSE when it cannot be looked at. */
static gboolean
identity (const char *path, dev_t *dev, ino_t *ino)
{
        GStatBuf st;

        if (g_stat (path, &st) != 0 || !S_ISREG (st.st_mode))
                return FALSE;
        *dev = st.st_dev;
        *ino = st.st_ino;
        return TRUE;
}

typedef struct {
        dev_t dev;
        ino_t ino;
} Identity;

/* Whether the file at @path is among @seen; added when not. */
static gboolean
seen_before (GArray *seen, const char *path)
{
        Identity id;

        if (!identity (path, &id.dev, &id.ino))
                return TRUE;
        for (guint i = 0; i < seen->len; i++) {
                const Identity *other = &g_array_index (seen, Identity, i);

                if (other->dev == id.dev && other->ino == id.ino)
                        return TRUE;
        }
        g_array_append_val (seen, id);
        return FALSE;
}

static gboolean
has_image_name (const char *name)
{
        g_autofree char *lower = g_ascii_strdown (name, -1);

        return g_str_has_suffix (lower, ".vhdx") || g_str_has_suffix (lower, ".avhdx");
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
        return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* Whether the image at @path was made from the image whose DataWriteGuid is @guid. */
static gboolean
is_child (const char *path, const VhdxGuid *guid)
{
        static const char *const keys[] = { "parent_linkage", "parent_linkage2" };
        g_autoptr (VhdxFile) file = NULL;
        VhdxIo *io = vhdx_io_open_path (path, FALSE, NULL);
        GPtrArray *locator;

        if (io == NULL)
                return FALSE;
        file = vhdx_file_open (io, VHDX_OPEN_FLAGS_NO_PARENT | VHDX_OPEN_FLAGS_FORCE_SHARE, NULL);
        if (file == NULL)
                return FALSE;
        locator = vhdx_file_get_parent_locator (file);
        if (locator == NULL)
                return FALSE;
        for (guint i = 0; i < G_N_ELEMENTS (keys); i++) {
                const char *text = vhdx_parent_locator_lookup (locator, keys[i]);
                VhdxGuid linkage;

                if (text != NULL && vhdx_guid_from_string (text, &linkage) &&
                    vhdx_guid_equal (&linkage, guid))
                        return TRUE;
        }
        return FALSE;
}

GPtrArray *
vhdx_find_children (const char *const *dirs,
                    const VhdxGuid *data_write_guid,
                    const char *const *skip,
                    GError **error)
{
        g_autoptr (GPtrArray) children = g_ptr_array_new_with_free_func (g_free);
        g_autoptr (GArray) seen = g_array_new (FALSE, FALSE, sizeof (Identity));

        for (guint i = 0; skip != NULL && skip[i] != NULL; i++)
                (void) seen_before (seen, skip[i]);
        for (guint d = 0; dirs[d] != NULL; d++) {
                g_autoptr (GDir) dir = g_dir_open (dirs[d], 0, error);
                g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
                const char *name;

                if (dir == NULL)
                        return NULL;
                while ((name = g_dir_read_name (dir)) != NULL) {
                        if (has_image_name (name))
                                g_ptr_array_add (names, g_strdup (name));
                }
                /* The same answer whatever order the directory lists them in. */
                g_ptr_array_sort (names, compare_names);
                for (guint n = 0; n < names->len; n++) {
                        g_autofree char *path =
                                g_build_filename (dirs[d], g_ptr_array_index (names, n), NULL);

                        if (!seen_before (seen, path) && is_child (path, data_write_guid))
                                g_ptr_array_add (children, g_steal_pointer (&path));
                }
        }
        return g_steal_pointer (&children);
}
