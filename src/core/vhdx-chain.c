/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Resolving the parent of a differencing image among opened candidates (see vhdx-chain.h). */
#include "vhdx-chain.h"

#include <gio/gio.h>

#include "vhdx-parent.h"
#include "vhdx-private.h"

/* (device, inode) of every member of a chain being opened, to detect loops. */
typedef struct {
        guint64 device;
        guint64 inode;
} Identity;

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

gboolean
vhdx_chain_check_depth (guint depth, GError **error)
{
        if (depth + 1 > VHDX_MAX_CHAIN_DEPTH) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                             _ ("The chain of parents is longer than %u images"),
                             (guint) VHDX_MAX_CHAIN_DEPTH);
                return FALSE;
        }
        return TRUE;
}

void
vhdx_parent_search_init (VhdxParentSearch *search, GPtrArray *locator)
{
        search->locator = locator;
        search->tried = g_string_new (NULL);
        search->mismatched = FALSE;
}

void
vhdx_parent_search_clear (VhdxParentSearch *search)
{
        if (search->tried != NULL)
                g_string_free (search->tried, TRUE);
        search->tried = NULL;
}

void
vhdx_parent_search_skip (VhdxParentSearch *search, const char *path, const char *outcome)
{
        g_autofree char *display = g_filename_display_name (path);

        if (search->tried->len > 0)
                g_string_append (search->tried, ", ");
        g_string_append (search->tried, display);
        if (outcome != NULL)
                g_string_append_printf (search->tried, " (%s)", outcome);
}

/* The text of the linkage GUIDs the image was made from: "{A}" or "{A} or {B}". */
static char *
linkage_text (GPtrArray *locator)
{
        const char *linkage = vhdx_parent_locator_lookup (locator, "parent_linkage");
        const char *linkage2 = vhdx_parent_locator_lookup (locator, "parent_linkage2");

        if (linkage2 == NULL)
                return g_strdup (linkage);
        /* TRANSLATORS: two GUIDs, the ones a differencing image may have as its parent's */
        return g_strdup_printf (_ ("%s or %s"), linkage, linkage2);
}

gboolean
vhdx_parent_search_match (VhdxParentSearch *search,
                          const char *path,
                          const VhdxGuid *data_write_guid,
                          GError **error)
{
        static const char *const keys[] = { "parent_linkage", "parent_linkage2" };
        char found_guid[VHDX_GUID_STRING_LENGTH + 1];
        g_autofree char *expected = NULL;
        g_autofree char *outcome = NULL;

        for (guint i = 0; i < G_N_ELEMENTS (keys); i++) {
                const char *text = vhdx_parent_locator_lookup (search->locator, keys[i]);
                VhdxGuid guid;

                if (text == NULL)
                        continue;
                if (!vhdx_guid_from_string (text, &guid)) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("parent locator"), 0,
                                        _ ("%s “%s” is not a GUID"), keys[i], text);
                        return FALSE;
                }
                if (vhdx_guid_equal (&guid, data_write_guid))
                        return TRUE;
        }
        /* An image, but not the one the child was made from. */
        vhdx_guid_to_string_buf (data_write_guid, found_guid);
        expected = linkage_text (search->locator);
        /* TRANSLATORS: a GUID found, then the one (or two) expected */
        outcome = g_strdup_printf (_ ("DataWriteGuid %s, not %s"), found_guid, expected);
        vhdx_parent_search_skip (search, path, outcome);
        search->mismatched = TRUE;
        return FALSE;
}

char *
vhdx_parent_search_mismatch_warning (VhdxParentSearch *search,
                                     const char *path,
                                     const VhdxGuid *data_write_guid)
{
        char guid[VHDX_GUID_STRING_LENGTH + 1];
        g_autofree char *display = g_filename_display_name (path);
        g_autofree char *expected = linkage_text (search->locator);

        vhdx_guid_to_string_buf (data_write_guid, guid);
        return g_strdup_printf (
                _ ("the parent %s has DataWriteGuid %s, but the image was made from %s; "
                   "it is used as the parent all the same"),
                display, guid, expected);
}

void
vhdx_parent_search_fail (VhdxParentSearch *search, guint n_candidates, GError **error)
{
        const char *relative = vhdx_parent_locator_lookup (search->locator, "relative_path");

        if (search->mismatched)
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH,
                             _ ("No image found is the parent of this differencing image; "
                                "tried: %s"),
                             search->tried->str);
        else if (n_candidates == 0)
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND,
                             _ ("The parent of this differencing image cannot be found: no "
                                "path to look in (relative_path “%s”) and no parent was given"),
                             relative != NULL ? relative : "");
        else
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND,
                             _ ("The parent of this differencing image cannot be found; tried: "
                                "%s"),
                             search->tried->str);
}

gboolean
vhdx_chain_check_sectors (const VhdxInfo *child,
                          const VhdxInfo *parent,
                          const char *path,
                          GError **error)
{
        if (parent->logical_sector_size != child->logical_sector_size) {
                g_autofree char *display = g_filename_display_name (path);

                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH,
                             _ ("Parent %s has %u-byte logical sectors, the image %u"), display,
                             parent->logical_sector_size, child->logical_sector_size);
                return FALSE;
        }
        return TRUE;
}
