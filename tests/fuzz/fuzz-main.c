/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replays fuzz inputs without libFuzzer, so that every seed and every saved
 * crasher runs as an ordinary test in every build.  Arguments are files or
 * directories of files; a directory that does not exist is skipped.
 */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

static int
compare_names (gconstpointer a, gconstpointer b)
{
        return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static void
collect (const char *path, GPtrArray *files)
{
        g_autoptr (GDir) dir = NULL;
        g_autoptr (GPtrArray) names = NULL;
        const char *name;

        if (!g_file_test (path, G_FILE_TEST_EXISTS))
                return;
        if (!g_file_test (path, G_FILE_TEST_IS_DIR)) {
                g_ptr_array_add (files, g_strdup (path));
                return;
        }
        dir = g_dir_open (path, 0, NULL);
        if (dir == NULL)
                return;
        names = g_ptr_array_new_with_free_func (g_free);
        while ((name = g_dir_read_name (dir)) != NULL) {
                if (name[0] != '.')
                        g_ptr_array_add (names, g_build_filename (path, name, NULL));
        }
        g_ptr_array_sort (names, compare_names);
        for (guint i = 0; i < names->len; i++)
                collect (g_ptr_array_index (names, i), files);
}

int
main (int argc, char **argv)
{
        g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_free);

        LLVMFuzzerInitialize (&argc, &argv);
        if (argc < 2) {
                fprintf (stderr, "usage: %s FILE-OR-DIRECTORY...\n", argv[0]);
                return 2;
        }
        for (int i = 1; i < argc; i++)
                collect (argv[i], files);
        for (guint i = 0; i < files->len; i++) {
                const char *path = g_ptr_array_index (files, i);
                g_autofree char *data = NULL;
                g_autoptr (GError) error = NULL;
                gsize size;

                if (!g_file_get_contents (path, &data, &size, &error)) {
                        fprintf (stderr, "%s: %s\n", path, error->message);
                        return 1;
                }
                fprintf (stderr, "%s\n", path);
                LLVMFuzzerTestOneInput ((const uint8_t *) data, size);
        }
        printf ("%u inputs replayed\n", files->len);
        return files->len > 0 ? 0 : 1;
}
