/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Opening the parents of a differencing image (see vhdx-chain.h). */
#include "vhdx-chain.h"

#include <gio/gio.h>

#include "vhdx-parent.h"
#include "vhdx-private.h"
#include "vhdx-reader-private.h"

/* (device, inode) of every member of a chain being opened, to detect loops. */
typedef struct {
        guint64 device;
        guint64 inode;
} Identity;

static VhdxIo *
default_open_func (const char *path, gpointer user_data, GError **error)
{
        return vhdx_io_open_path (path, FALSE, error);
}

static gboolean
linkage_matches (VhdxFile *file, VhdxFile *parent, GError **error)
{
        static const char *const keys[] = { "parent_linkage", "parent_linkage2" };

        for (guint i = 0; i < G_N_ELEMENTS (keys); i++) {
                const char *text = vhdx_parent_locator_lookup (file->locator, keys[i]);
                VhdxGuid guid;

                if (text == NULL)
                        continue;
                if (!vhdx_guid_from_string (text, &guid)) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("parent locator"), 0,
                                        _ ("%s “%s” is not a GUID"), keys[i], text);
                        return FALSE;
                }
                if (vhdx_guid_equal (&guid, &parent->info.data_write_guid))
                        return TRUE;
        }
        return FALSE;
}

/*
 * Find and open the parent of a differencing image: the explicit parent or
 * the locator's paths in order.  A path that does not exist is skipped; one
 * that opens but is not the image's parent (DataWriteGuid differs from the
 * linkage) is remembered and skipped; anything else wrong with a parent that
 * exists stops the search.
 */
gboolean
vhdx_chain_open_parent (VhdxFile *file,
                        const VhdxOpenOptions *options,
                        guint depth,
                        GArray *identities,
                        GError **error)
{
        g_autoptr (GPtrArray) candidates =
                vhdx_parent_candidates (file->locator, options != NULL ? options->path : NULL,
                                        options != NULL ? options->parent_path : NULL);
        g_autoptr (GString) tried = g_string_new (NULL);
        g_autoptr (GError) mismatch = NULL;
        VhdxOpenFunc open_func = options != NULL && options->open_func != NULL ? options->open_func
                                                                               : default_open_func;
        gpointer open_data = options != NULL ? options->open_data : NULL;
        gboolean allow_mismatch = options != NULL && options->allow_parent_mismatch;

        if (depth + 1 > VHDX_MAX_CHAIN_DEPTH) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                             _ ("The chain of parents is longer than %u images"),
                             (guint) VHDX_MAX_CHAIN_DEPTH);
                return FALSE;
        }

        for (guint i = 0; i < candidates->len; i++) {
                const char *path = g_ptr_array_index (candidates, i);
                g_autofree char *display = g_filename_display_name (path);
                g_autoptr (GError) local_error = NULL;
                VhdxOpenOptions parent_options = {
                        .path = path,
                        .allow_parent_mismatch = allow_mismatch,
                        .open_func = open_func,
                        .open_data = open_data,
                };
                VhdxFile *parent;
                VhdxIo *io;

                g_string_append_printf (tried, "%s%s", tried->len > 0 ? ", " : "", display);
                io = open_func (path, open_data, &local_error);
                if (io == NULL) {
                        if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
                                continue;
                        g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                                    _ ("Parent %s: "), display);
                        return FALSE;
                }
                parent = vhdx_file_open_member (io, VHDX_OPEN_FLAGS_NONE, &parent_options,
                                                depth + 1, identities, &local_error);
                if (parent == NULL) {
                        g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                                    _ ("Parent %s: "), display);
                        return FALSE;
                }
                if (!linkage_matches (file, parent, &local_error)) {
                        char found[VHDX_GUID_STRING_LENGTH + 1];
                        if (local_error != NULL) {
                                vhdx_file_free (parent);
                                g_propagate_error (error, g_steal_pointer (&local_error));
                                return FALSE;
                        }
                        if (!allow_mismatch) {
                                const char *linkage2 =
                                        vhdx_parent_locator_lookup (file->locator,
                                                                    "parent_linkage2");
                                vhdx_guid_to_string_buf (&parent->info.data_write_guid, found);
                                g_clear_error (&mismatch);
                                g_set_error (&mismatch, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH,
                                             _ ("Parent %s has DataWriteGuid %s, but the image "
                                                "was made from %s%s%s"),
                                             display, found,
                                             vhdx_parent_locator_lookup (file->locator,
                                                                         "parent_linkage"),
                                             linkage2 != NULL ? _ (" or ") : "",
                                             linkage2 != NULL ? linkage2 : "");
                                vhdx_file_free (parent);
                                continue;
                        }
                }
                if (parent->info.logical_sector_size != file->info.logical_sector_size) {
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH,
                                     _ ("Parent %s has %u-byte logical sectors, the image %u"),
                                     display, parent->info.logical_sector_size,
                                     file->info.logical_sector_size);
                        vhdx_file_free (parent);
                        return FALSE;
                }
                file->parent = parent;
                file->parent_path = g_strdup (path);
                return TRUE;
        }

        if (mismatch != NULL) {
                g_propagate_error (error, g_steal_pointer (&mismatch));
                return FALSE;
        }
        if (candidates->len == 0) {
                const char *relative = vhdx_parent_locator_lookup (file->locator, "relative_path");
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND,
                             _ ("The parent of this differencing image cannot be found: no "
                                "path to look in (relative_path “%s”) and no parent was given"),
                             relative != NULL ? relative : "");
        } else
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND,
                             _ ("The parent of this differencing image cannot be found; tried: "
                                "%s"),
                             tried->str);
        return FALSE;
}

GArray *
vhdx_chain_identities_new (void)
{
        return g_array_new (FALSE, FALSE, sizeof (Identity));
}

gboolean
vhdx_chain_enter (GArray *identities, VhdxIo *io, GError **error)
{
        Identity identity;

        if (!vhdx_io_identify (io, &identity.device, &identity.inode))
                return TRUE;
        for (guint i = 0; i < identities->len; i++) {
                const Identity *seen = &g_array_index (identities, Identity, i);

                if (seen->device == identity.device && seen->inode == identity.inode) {
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                                     _ ("The chain of parents loops back to an image "
                                        "already in it"));
                        return FALSE;
                }
        }
        g_array_append_val (identities, identity);
        return TRUE;
}
