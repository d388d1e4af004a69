/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Opening the parents of a differencing image, and what an opened image says of its parent (see
 * vhdx-chain.h). */
#include "vhdx-chain.h"

#include <gio/gio.h>

#include "vhdx-parent.h"
#include "vhdx-private.h"
#include "vhdx-problems.h"
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

/* The text of the linkage GUIDs the image was made from: "{A}" or "{A} or {B}". */
static char *
linkage_text (VhdxFile *file)
{
        const char *linkage = vhdx_parent_locator_lookup (file->locator, "parent_linkage");
        const char *linkage2 = vhdx_parent_locator_lookup (file->locator, "parent_linkage2");

        if (linkage2 == NULL)
                return g_strdup (linkage);
        /* TRANSLATORS: two GUIDs, the ones a differencing image may have as its parent's */
        return g_strdup_printf (_ ("%s or %s"), linkage, linkage2);
}

/* What the search for a parent found, candidate by candidate. */
typedef struct {
        GString *tried;           /* "path (what was wrong), ..." */
        gboolean mismatched;      /* a candidate was an image, but not the parent */
        VhdxFile *first_mismatch; /* kept with VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH */
        char *first_mismatch_path;
} Search;

static void
search_clear (Search *search)
{
        g_string_free (search->tried, TRUE);
        vhdx_file_free (search->first_mismatch);
        g_free (search->first_mismatch_path);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Search, search_clear)

static void
search_note (Search *search, const char *display, const char *outcome)
{
        if (search->tried->len > 0)
                g_string_append (search->tried, ", ");
        g_string_append (search->tried, display);
        if (outcome != NULL)
                g_string_append_printf (search->tried, " (%s)", outcome);
}

/* Make @parent, opened from @path, the parent of @file. */
static gboolean
adopt_parent (VhdxFile *file, VhdxFile *parent, const char *path, GError **error)
{
        if (parent->info.logical_sector_size != file->info.logical_sector_size) {
                g_autofree char *display = g_filename_display_name (path);

                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH,
                             _ ("Parent %s has %u-byte logical sectors, the image %u"), display,
                             parent->info.logical_sector_size, file->info.logical_sector_size);
                vhdx_file_free (parent);
                return FALSE;
        }
        file->parent = parent;
        file->parent_path = g_strdup (path);
        return TRUE;
}

/*
 * Try the candidate @path: TRUE when the search is over (the parent found,
 * or an error that stops it), FALSE to go on with the next candidate.
 */
static gboolean
try_candidate (VhdxFile *file,
               const char *path,
               const VhdxOpenOptions *options,
               VhdxOpenFlags parent_flags,
               guint depth,
               GArray *identities,
               Search *search,
               gboolean *found,
               GError **error)
{
        VhdxOpenFunc open_func = options != NULL && options->open_func != NULL ? options->open_func
                                                                               : default_open_func;
        gpointer open_data = options != NULL ? options->open_data : NULL;
        VhdxOpenOptions parent_options = {
                .path = path,
                .parent_dirs = options != NULL ? options->parent_dirs : NULL,
                .open_func = open_func,
                .open_data = open_data,
        };
        g_autofree char *display = g_filename_display_name (path);
        g_autoptr (GError) local_error = NULL;
        char found_guid[VHDX_GUID_STRING_LENGTH + 1];
        g_autofree char *expected = NULL;
        g_autofree char *outcome = NULL;
        guint n_identities = identities->len;
        VhdxFile *parent;
        VhdxIo *io;

        io = open_func (path, open_data, &local_error);
        if (io == NULL) {
                if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
                        search_note (search, display, NULL);
                        return FALSE;
                }
                /* A FIFO, a directory, a device named like the parent: not it. */
                if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE) ||
                    g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY)) {
                        search_note (search, display, local_error->message);
                        return FALSE;
                }
                g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                            _ ("Parent %s: "), display);
                return TRUE;
        }
        parent = vhdx_file_open_member (io, parent_flags, &parent_options, depth + 1, identities,
                                        &local_error);
        if (parent == NULL) {
                g_propagate_prefixed_error (error, g_steal_pointer (&local_error),
                                            _ ("Parent %s: "), display);
                return TRUE;
        }
        if (linkage_matches (file, parent, &local_error)) {
                *found = adopt_parent (file, parent, path, error);
                return TRUE;
        }
        if (local_error != NULL) {
                vhdx_file_free (parent);
                g_propagate_error (error, g_steal_pointer (&local_error));
                return TRUE;
        }
        /* An image, but not the one the child was made from: go on.  Its
         * chain is no part of this one, which may share members with it. */
        g_array_set_size (identities, n_identities);
        vhdx_guid_to_string_buf (&parent->info.data_write_guid, found_guid);
        expected = linkage_text (file);
        /* TRANSLATORS: a GUID found, then the one (or two) expected */
        outcome = g_strdup_printf (_ ("DataWriteGuid %s, not %s"), found_guid, expected);
        search_note (search, display, outcome);
        search->mismatched = TRUE;
        if ((file->flags & VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH) &&
            search->first_mismatch == NULL) {
                search->first_mismatch = parent;
                search->first_mismatch_path = g_strdup (path);
        } else {
                vhdx_file_free (parent);
        }
        return FALSE;
}

/* The parent was not found: the error that says so, with what was tried. */
static void
set_not_found (VhdxFile *file, GPtrArray *candidates, Search *search, GError **error)
{
        const char *relative = vhdx_parent_locator_lookup (file->locator, "relative_path");

        if (search->mismatched)
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_PARENT_MISMATCH,
                             _ ("No image found is the parent of this differencing image; "
                                "tried: %s"),
                             search->tried->str);
        else if (candidates->len == 0)
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

/*
 * Find and open the parent of a differencing image: the explicit parent or
 * the locator's paths in order.  A path that does not exist is skipped; one
 * that opens but is not the image's parent (DataWriteGuid differs from the
 * linkage) is noted and skipped, or kept as the parent if no other is found
 * and mismatches are ignored; anything else wrong with a parent that exists
 * stops the search.
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
                                        options != NULL ? options->parent_path : NULL,
                                        options != NULL ? options->parent_dirs : NULL);
        g_auto (Search) search = { g_string_new (NULL), FALSE, NULL, NULL };
        g_autoptr (GError) local_error = NULL;
        /* Parents are read-only (locked as readers, or not at all with
         * force-share); how a missing or mismatched parent is taken holds for
         * the whole chain. */
        VhdxOpenFlags parent_flags = file->flags & (VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT |
                                                    VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH |
                                                    VHDX_OPEN_FLAGS_FORCE_SHARE);
        gboolean found = FALSE;

        if (file->flags & VHDX_OPEN_FLAGS_NO_PARENT) {
                g_set_error (&file->parent_error, VHDX_ERROR, VHDX_ERROR_PARENT_NOT_FOUND,
                             _ ("The image was opened without its parent"));
                return TRUE;
        }
        if (depth + 1 > VHDX_MAX_CHAIN_DEPTH) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_INVALID,
                             _ ("The chain of parents is longer than %u images"),
                             (guint) VHDX_MAX_CHAIN_DEPTH);
                return FALSE;
        }
        for (guint i = 0; i < candidates->len; i++) {
                if (try_candidate (file, g_ptr_array_index (candidates, i), options, parent_flags,
                                   depth, identities, &search, &found, error))
                        return found;
        }
        if (search.first_mismatch != NULL) {
                char guid[VHDX_GUID_STRING_LENGTH + 1];
                g_autofree char *display = g_filename_display_name (search.first_mismatch_path);
                g_autofree char *expected = linkage_text (file);

                vhdx_guid_to_string_buf (&search.first_mismatch->info.data_write_guid, guid);
                file->parent_warning = g_strdup_printf (
                        _ ("the parent %s has DataWriteGuid %s, but the image was made from %s; "
                           "it is used as the parent all the same"),
                        display, guid, expected);
                vhdx_problems_add (file->open_problems, VHDX_SEVERITY_WARNING, _ ("parent locator"),
                                   file->info.parent_locator_offset, "%s", file->parent_warning);
                return adopt_parent (file, g_steal_pointer (&search.first_mismatch),
                                     search.first_mismatch_path, error);
        }
        set_not_found (file, candidates, &search, &local_error);
        if (file->flags & VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT) {
                file->parent_error = g_steal_pointer (&local_error);
                return TRUE;
        }
        g_propagate_error (error, g_steal_pointer (&local_error));
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

/* What an opened image says of its parent (declared in vhdx-reader.h). */

VhdxFile *
vhdx_file_get_parent (VhdxFile *file)
{
        return file->parent;
}

const GError *
vhdx_file_get_parent_error (VhdxFile *file)
{
        return file->parent_error;
}

const char *
vhdx_file_get_parent_warning (VhdxFile *file)
{
        return file->parent_warning;
}

const char *
vhdx_file_get_parent_path (VhdxFile *file)
{
        return file->parent_path;
}

guint
vhdx_file_get_chain_depth (VhdxFile *file)
{
        return file->parent != NULL ? 1 + vhdx_file_get_chain_depth (file->parent) : 0;
}

GPtrArray *
vhdx_file_get_parent_locator (VhdxFile *file)
{
        return file->locator;
}
