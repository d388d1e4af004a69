/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The parent locator and the paths it names (see vhdx-parent.h). */
#include "vhdx-parent.h"

#include "vhdx-private.h"

const VhdxGuid vhdx_guid_locator_vhdx = { {
        0xB7,
        0xEF,
        0x4A,
        0xB0,
        0x9E,
        0xD1,
        0x81,
        0x4A,
        0xB7,
        0x89,
        0x25,
        0xB8,
        0xE9,
        0x44,
        0x59,
        0x13,
} };

static void
locator_entry_free (gpointer data)
{
        VhdxLocatorEntry *entry = data;

        g_free (entry->key);
        g_free (entry->value);
        g_free (entry);
}

static char *
decode_utf16 (const guint8 *item,
              guint32 length,
              guint32 offset,
              guint16 size,
              const char *what,
              guint64 entry_offset,
              GError **error)
{
        g_autofree gunichar2 *text = NULL;
        g_autoptr (GError) local_error = NULL;
        char *utf8;

        if ((guint64) offset + size > length || size % 2 != 0) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("parent locator entry"), entry_offset,
                                _ ("the %s (offset %u, length %u) is not an even number of "
                                   "bytes inside the %u-byte locator"),
                                what, offset, size, length);
                return NULL;
        }
        text = g_new (gunichar2, size / 2 + 1);
        for (guint i = 0; i < size / 2u; i++)
                text[i] = vhdx_get_le16 (item + offset + 2 * i);
        utf8 = g_utf16_to_utf8 (text, size / 2, NULL, NULL, &local_error);
        if (utf8 == NULL) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("parent locator entry"), entry_offset,
                                _ ("the %s is not valid UTF-16: %s"), what, local_error->message);
                return NULL;
        }
        return utf8;
}

GPtrArray *
vhdx_parent_locator_read (VhdxIo *io, guint64 file_offset, guint32 length, GError **error)
{
        g_autofree guint8 *item = NULL;
        g_autoptr (GPtrArray) entries = NULL;
        g_autoptr (GHashTable) keys = NULL;
        VhdxGuid type;
        guint16 count;
        guint64 text_bytes = 0;
        const char *what = _ ("parent locator");

        if (length < VHDX_LOCATOR_HEADER_SIZE) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, what, file_offset,
                                _ ("length %u is shorter than its %u-byte header"), length,
                                (guint) VHDX_LOCATOR_HEADER_SIZE);
                return NULL;
        }
        item = g_malloc (length);
        if (!vhdx_io_read_exact (io, item, length, file_offset, what, error))
                return NULL;
        type = vhdx_get_guid (item + VHDX_LOCATOR_OFF_TYPE);
        if (!vhdx_guid_equal (&type, &vhdx_guid_locator_vhdx)) {
                char text[VHDX_GUID_STRING_LENGTH + 1];
                vhdx_guid_to_string_buf (&type, text);
                vhdx_set_error (error, VHDX_ERROR_NOT_SUPPORTED, what, file_offset,
                                _ ("locator type %s is not the VHDX locator type"), text);
                return NULL;
        }
        count = vhdx_get_le16 (item + VHDX_LOCATOR_OFF_COUNT);
        if (VHDX_LOCATOR_HEADER_SIZE + (guint64) count * VHDX_LOCATOR_ENTRY_SIZE > length) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, what, file_offset,
                                _ ("%u entries do not fit in %u bytes"), count, length);
                return NULL;
        }

        entries = g_ptr_array_new_with_free_func (locator_entry_free);
        keys = g_hash_table_new (g_str_hash, g_str_equal);
        for (guint i = 0; i < count; i++) {
                const guint8 *e = item + VHDX_LOCATOR_HEADER_SIZE + i * VHDX_LOCATOR_ENTRY_SIZE;
                guint64 entry_offset = file_offset + VHDX_LOCATOR_HEADER_SIZE +
                                       (guint64) i * VHDX_LOCATOR_ENTRY_SIZE;
                guint16 key_length = vhdx_get_le16 (e + VHDX_LOCATOR_ENTRY_OFF_KEY_LENGTH);
                guint16 value_length = vhdx_get_le16 (e + VHDX_LOCATOR_ENTRY_OFF_VALUE_LENGTH);
                g_autofree char *key = NULL;
                g_autofree char *value = NULL;
                VhdxLocatorEntry *entry;

                if (key_length == 0 || value_length == 0) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("parent locator entry"),
                                        entry_offset, _ ("an empty key or value"));
                        return NULL;
                }
                /* Entries may point at the same bytes; without this bound, 65535
                 * of them sharing one 64 KiB value would decode gigabytes. */
                text_bytes += (guint64) key_length + value_length;
                if (text_bytes > length) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("parent locator entry"),
                                        entry_offset,
                                        _ ("the keys and values take more than the %u bytes "
                                           "of the locator"),
                                        length);
                        return NULL;
                }
                key = decode_utf16 (item, length,
                                    vhdx_get_le32 (e + VHDX_LOCATOR_ENTRY_OFF_KEY_OFFSET),
                                    key_length, _ ("key"), entry_offset, error);
                if (key == NULL)
                        return NULL;
                value = decode_utf16 (item, length,
                                      vhdx_get_le32 (e + VHDX_LOCATOR_ENTRY_OFF_VALUE_OFFSET),
                                      value_length, _ ("value"), entry_offset, error);
                if (value == NULL)
                        return NULL;
                /* A hash table: a linear lookup per key is quadratic in the count. */
                if (g_hash_table_contains (keys, key)) {
                        vhdx_set_error (error, VHDX_ERROR_INVALID, _ ("parent locator entry"),
                                        entry_offset, _ ("the key “%s” appears twice"), key);
                        return NULL;
                }
                entry = g_new0 (VhdxLocatorEntry, 1);
                entry->key = g_steal_pointer (&key);
                entry->value = g_steal_pointer (&value);
                g_ptr_array_add (entries, entry);
                g_hash_table_add (keys, entry->key);
        }
        if (vhdx_parent_locator_lookup (entries, "parent_linkage") == NULL) {
                vhdx_set_error (error, VHDX_ERROR_INVALID, what, file_offset,
                                _ ("the required key “parent_linkage” is missing"));
                return NULL;
        }
        return g_steal_pointer (&entries);
}

const char *
vhdx_parent_locator_lookup (GPtrArray *locator, const char *key)
{
        for (guint i = 0; locator != NULL && i < locator->len; i++) {
                const VhdxLocatorEntry *entry = g_ptr_array_index (locator, i);
                if (g_strcmp0 (entry->key, key) == 0)
                        return entry->value;
        }
        return NULL;
}

GPtrArray *
vhdx_parent_locator_new (void)
{
        return g_ptr_array_new_with_free_func (locator_entry_free);
}

static VhdxLocatorEntry *
locator_entry_new (const char *key, const char *value)
{
        VhdxLocatorEntry *entry = g_new0 (VhdxLocatorEntry, 1);

        entry->key = g_strdup (key);
        entry->value = g_strdup (value);
        return entry;
}

GPtrArray *
vhdx_parent_locator_copy (GPtrArray *locator)
{
        GPtrArray *copy = vhdx_parent_locator_new ();

        for (guint i = 0; i < locator->len; i++) {
                const VhdxLocatorEntry *entry = g_ptr_array_index (locator, i);
                g_ptr_array_add (copy, locator_entry_new (entry->key, entry->value));
        }
        return copy;
}

void
vhdx_parent_locator_set (GPtrArray *locator, const char *key, const char *value)
{
        for (guint i = 0; i < locator->len; i++) {
                VhdxLocatorEntry *entry = g_ptr_array_index (locator, i);

                if (g_str_equal (entry->key, key)) {
                        g_free (entry->value);
                        entry->value = g_strdup (value);
                        return;
                }
        }
        g_ptr_array_add (locator, locator_entry_new (key, value));
}

gboolean
vhdx_parent_locator_remove (GPtrArray *locator, const char *key)
{
        for (guint i = 0; i < locator->len; i++) {
                const VhdxLocatorEntry *entry = g_ptr_array_index (locator, i);

                if (g_str_equal (entry->key, key)) {
                        g_ptr_array_remove_index (locator, i);
                        return TRUE;
                }
        }
        return FALSE;
}

char *
vhdx_parent_linkage_text (const VhdxGuid *data_write_guid)
{
        char guid[VHDX_GUID_STRING_LENGTH + 1];

        vhdx_guid_to_string_buf (data_write_guid, guid);
        return g_strdup_printf ("{%s}", guid);
}

/* @text in UTF-16LE, appended to @out; FALSE when it is not UTF-8 or its
 * length does not fit 16 bits. */
static gboolean
append_utf16 (GByteArray *out, const char *text, guint16 *n_bytes)
{
        g_autofree gunichar2 *utf16 = NULL;
        glong n = 0;

        utf16 = g_utf8_to_utf16 (text, -1, NULL, &n, NULL);
        if (utf16 == NULL || n == 0 || n > G_MAXUINT16 / 2)
                return FALSE;
        for (glong i = 0; i < n; i++) {
                guint8 le[2];

                vhdx_put_le16 (le, utf16[i]);
                g_byte_array_append (out, le, 2);
        }
        *n_bytes = (guint16) (n * 2);
        return TRUE;
}

GBytes *
vhdx_parent_locator_encode (GPtrArray *locator, GError **error)
{
        g_autoptr (GByteArray) item = g_byte_array_new ();
        guint table_bytes;

        if (locator->len > G_MAXUINT16) {
                g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                             _ ("A parent locator cannot hold %u entries"), locator->len);
                return NULL;
        }
        table_bytes = VHDX_LOCATOR_HEADER_SIZE + locator->len * VHDX_LOCATOR_ENTRY_SIZE;
        g_byte_array_set_size (item, table_bytes);
        memset (item->data, 0, table_bytes);
        memcpy (item->data + VHDX_LOCATOR_OFF_TYPE, vhdx_guid_locator_vhdx.bytes, 16);
        vhdx_put_le16 (item->data + VHDX_LOCATOR_OFF_COUNT, (guint16) locator->len);
        for (guint i = 0; i < locator->len; i++) {
                const VhdxLocatorEntry *entry = g_ptr_array_index (locator, i);
                guint32 key_offset = item->len, value_offset = 0;
                guint16 key_bytes = 0, value_bytes = 0;
                gboolean ok;
                guint8 *e;

                ok = append_utf16 (item, entry->key, &key_bytes);
                if (ok) {
                        value_offset = item->len;
                        ok = append_utf16 (item, entry->value, &value_bytes);
                }
                if (!ok) {
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                                     _ ("The parent locator entry “%s” cannot be stored: its key "
                                        "and value must be UTF-8, not empty, and shorter than "
                                        "32768 UTF-16 characters"),
                                     entry->key);
                        return NULL;
                }
                if (item->len > VHDX_METADATA_ITEM_MAX_LENGTH) {
                        g_set_error (error, VHDX_ERROR, VHDX_ERROR_NOT_SUPPORTED,
                                     _ ("The parent locator would be longer than the 1 MiB a "
                                        "metadata item may have"));
                        return NULL;
                }
                e = item->data + VHDX_LOCATOR_HEADER_SIZE + i * VHDX_LOCATOR_ENTRY_SIZE;
                vhdx_put_le32 (e + VHDX_LOCATOR_ENTRY_OFF_KEY_OFFSET, key_offset);
                vhdx_put_le32 (e + VHDX_LOCATOR_ENTRY_OFF_VALUE_OFFSET, value_offset);
                vhdx_put_le16 (e + VHDX_LOCATOR_ENTRY_OFF_KEY_LENGTH, key_bytes);
                vhdx_put_le16 (e + VHDX_LOCATOR_ENTRY_OFF_VALUE_LENGTH, value_bytes);
        }
        return g_byte_array_free_to_bytes (g_steal_pointer (&item));
}

char *
vhdx_parent_relative_path (const char *child_path, const char *parent_path)
{
        g_autofree char *child_abs = g_canonicalize_filename (child_path, NULL);
        g_autofree char *parent_abs = g_canonicalize_filename (parent_path, NULL);
        g_autofree char *child_dir = g_path_get_dirname (child_abs);
        g_auto (GStrv) from = g_strsplit (child_dir, G_DIR_SEPARATOR_S, -1);
        g_auto (GStrv) to = g_strsplit (parent_abs, G_DIR_SEPARATOR_S, -1);
        g_autoptr (GString) out = g_string_new (NULL);
        guint common = 0;

        /* The directories both paths start with; the parent's file name
         * itself is never one of them. */
        while (from[common] != NULL && to[common] != NULL && to[common + 1] != NULL &&
               g_str_equal (from[common], to[common]))
                common++;
        for (guint i = common; from[i] != NULL; i++) {
                if (*from[i] != '\0')
                        g_string_append (out, "../");
        }
        for (guint i = common; to[i] != NULL; i++) {
                g_string_append (out, to[i]);
                if (to[i + 1] != NULL)
                        g_string_append_c (out, '/');
        }
        return g_string_free (g_steal_pointer (&out), FALSE);
}

static void
add_candidate (GPtrArray *candidates, char *path)
{
        for (guint i = 0; i < candidates->len; i++) {
                if (g_str_equal (g_ptr_array_index (candidates, i), path)) {
                        g_free (path);
                        return;
                }
        }
        g_ptr_array_add (candidates, path);
}

/* The last component of a Windows path: after the last backslash or slash. */
static const char *
windows_basename (const char *path)
{
        const char *slash = strrchr (path, '\\');
        const char *forward = strrchr (path, '/');

        if (forward != NULL && (slash == NULL || forward > slash))
                slash = forward;
        return slash != NULL ? slash + 1 : path;
}

/* @relative (slashes) under @dir, without "." components: "./x" from ".\\x". */
static char *
join_clean (const char *dir, const char *relative)
{
        g_auto (GStrv) parts = g_strsplit (relative, "/", -1);
        g_autoptr (GPtrArray) kept = g_ptr_array_new ();

        g_ptr_array_add (kept, (gpointer) dir);
        for (guint i = 0; parts[i] != NULL; i++) {
                if (*parts[i] != '\0' && strcmp (parts[i], ".") != 0)
                        g_ptr_array_add (kept, parts[i]);
        }
        g_ptr_array_add (kept, NULL);
        return g_build_filenamev ((char **) kept->pdata);
}

/*
 * @name in @dir; when no file has exactly that name but one differs only in
 * case (Windows file names are not case-sensitive, and a copy keeps the case
 * the file had while the locator may spell it otherwise), that one.
 */
static char *
name_in_dir (const char *dir, const char *name)
{
        char *path = g_build_filename (dir, name, NULL);
        g_autoptr (GDir) listing = NULL;
        g_autofree char *folded = NULL;
        const char *entry;

        if (g_file_test (path, G_FILE_TEST_EXISTS))
                return path;
        listing = g_dir_open (dir, 0, NULL);
        if (listing == NULL)
                return path;
        folded = g_utf8_casefold (name, -1);
        while ((entry = g_dir_read_name (listing)) != NULL) {
                g_autofree char *entry_folded = g_utf8_casefold (entry, -1);

                if (g_str_equal (entry_folded, folded)) {
                        g_free (path);
                        return g_build_filename (dir, entry, NULL);
                }
        }
        return path;
}

/* Where Hyper-V keeps the disks of a virtual machine, beside its checkpoints:
 * an export or a copied machine folder has them as siblings. */
static const char *const hyperv_folders[] = { "Virtual Hard Disks", "Snapshots" };

GPtrArray *
vhdx_parent_candidates (GPtrArray *locator,
                        const char *child_path,
                        const char *explicit_path,
                        const char *const *parent_dirs)
{
        static const char *const keys[] = { "relative_path", "absolute_win32_path", "volume_path" };
        GPtrArray *candidates = g_ptr_array_new_with_free_func (g_free);
        g_autoptr (GPtrArray) dirs = g_ptr_array_new_with_free_func (g_free);
        g_autoptr (GPtrArray) names = g_ptr_array_new ();
        /* A child named by a URI (an image another server serves) has no
         * directory to look in. */
        g_autofree char *dir = child_path != NULL && strstr (child_path, "://") == NULL
                                       ? g_path_get_dirname (child_path)
                                       : NULL;
        const char *relative;

        if (explicit_path != NULL) {
                g_ptr_array_add (candidates, g_strdup (explicit_path));
                return candidates;
        }

        /* The file names the locator's paths end in. */
        for (guint i = 0; i < G_N_ELEMENTS (keys); i++) {
                const char *value = vhdx_parent_locator_lookup (locator, keys[i]);
                const char *name = value != NULL ? windows_basename (value) : NULL;
                gboolean seen = FALSE;

                if (name == NULL || *name == '\0' || strcmp (name, ".") == 0 ||
                    strcmp (name, "..") == 0)
                        continue;
                for (guint j = 0; j < names->len && !seen; j++)
                        seen = g_str_equal (g_ptr_array_index (names, j), name);
                if (!seen)
                        g_ptr_array_add (names, (gpointer) name);
        }

        /* The child's directory: relative_path as the specification means it,
         * then the names; then the folders of a Hyper-V machine beside it;
         * then the directories the caller gave. */
        if (dir != NULL) {
                relative = vhdx_parent_locator_lookup (locator, "relative_path");
                if (relative != NULL && *relative != '\0') {
                        g_autofree char *unix_path = g_strdelimit (g_strdup (relative), "\\", '/');

                        if (g_path_is_absolute (unix_path))
                                add_candidate (candidates, g_steal_pointer (&unix_path));
                        else
                                add_candidate (candidates, join_clean (dir, unix_path));
                }
                g_ptr_array_add (dirs, g_strdup (dir));
                for (guint i = 0; i < G_N_ELEMENTS (hyperv_folders); i++) {
                        /* The directory above ".", for an image named without one. */
                        g_autofree char *up =
                                g_str_equal (dir, ".") ? g_strdup ("..") : g_path_get_dirname (dir);
                        g_autofree char *base = g_path_get_basename (dir);

                        if (g_ascii_strcasecmp (base, hyperv_folders[i]) != 0)
                                g_ptr_array_add (dirs,
                                                 g_build_filename (up, hyperv_folders[i], NULL));
                }
        }
        for (guint i = 0; parent_dirs != NULL && parent_dirs[i] != NULL; i++)
                g_ptr_array_add (dirs, g_strdup (parent_dirs[i]));

        for (guint d = 0; d < dirs->len; d++) {
                for (guint n = 0; n < names->len; n++)
                        add_candidate (candidates, name_in_dir (g_ptr_array_index (dirs, d),
                                                                g_ptr_array_index (names, n)));
        }
        return candidates;
}
