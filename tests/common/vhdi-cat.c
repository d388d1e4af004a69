/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdi-cat: writes the virtual disk of a VHDX image to standard output as
 * libvhdi reads it, an independent reader for the images QEMU cannot read
 * (4 KiB sectors, differencing images).  Not installed.
 *
 *   vhdi-cat IMAGE [PARENT [GRANDPARENT ...]]
 *
 * The parents of a differencing image are given explicitly, nearest first.
 * libvhdi is not an oracle for fixed images of more than one chunk (it skips
 * the BAT interleaving), nor for NOT_PRESENT blocks of differencing images
 * without a sector bitmap block: callers avoid those.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <libvhdi.h>

#define CHUNK (4 * 1024 * 1024)

static void
print_error (const char *what, const char *path, libvhdi_error_t **error)
{
        char message[1024] = "";

        if (*error != NULL)
                libvhdi_error_sprint (*error, message, sizeof message);
        g_printerr ("vhdi-cat: %s %s: %s\n", what, path, message);
        libvhdi_error_free (error);
}

int
main (int argc, char **argv)
{
        g_autofree libvhdi_file_t **files = NULL;
        g_autofree guint8 *buf = NULL;
        libvhdi_error_t *error = NULL;
        size64_t size = 0, offset;
        int n, i, status = EXIT_FAILURE;

        if (argc < 2) {
                g_printerr ("usage: vhdi-cat IMAGE [PARENT ...]\n");
                return EXIT_FAILURE;
        }
        n = argc - 1;
        files = g_new0 (libvhdi_file_t *, n);
        /* Open from the base up, so that each child gets its parent. */
        for (i = n - 1; i >= 0; i--) {
                const char *path = argv[1 + i];

                if (libvhdi_file_initialize (&files[i], &error) != 1) {
                        print_error ("initializing for", path, &error);
                        goto out;
                }
                if (libvhdi_file_open (files[i], path, LIBVHDI_OPEN_READ, &error) != 1) {
                        print_error ("opening", path, &error);
                        goto out;
                }
                if (i < n - 1 &&
                    libvhdi_file_set_parent_file (files[i], files[i + 1], &error) != 1) {
                        print_error ("setting the parent of", path, &error);
                        goto out;
                }
        }
        if (libvhdi_file_get_media_size (files[0], &size, &error) != 1) {
                print_error ("getting the size of", argv[1], &error);
                goto out;
        }

        buf = g_malloc (CHUNK);
        for (offset = 0; offset < size;) {
                size_t want = (size_t) MIN ((size64_t) CHUNK, size - offset);
                ssize_t got = libvhdi_file_read_buffer_at_offset (files[0], buf, want,
                                                                  (off64_t) offset, &error);

                if (got != (ssize_t) want) {
                        print_error ("reading", argv[1], &error);
                        goto out;
                }
                if (fwrite (buf, 1, want, stdout) != want) {
                        g_printerr ("vhdi-cat: writing: %s\n", g_strerror (errno));
                        goto out;
                }
                offset += want;
        }
        if (fflush (stdout) != 0) {
                g_printerr ("vhdi-cat: writing: %s\n", g_strerror (errno));
                goto out;
        }
        status = EXIT_SUCCESS;

out:
        for (i = 0; i < n; i++) {
                if (files[i] == NULL)
                        continue;
                libvhdi_file_close (files[i], NULL);
                libvhdi_file_free (&files[i], NULL);
        }
        return status;
}
