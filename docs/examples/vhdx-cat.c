/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx-cat: write the virtual disk of a VHDX image to standard output.
 *
 * Build it with:
 *   cc -o vhdx-cat vhdx-cat.c $(pkg-config --cflags --libs vhdx-1.0)
 * and run it as:
 *   vhdx-cat IMAGE > disk.raw
 */
#include <stdio.h>
#include <stdlib.h>

#include <vhdx.h>

#define BUFFER_SIZE (4 * 1024 * 1024)

int
main (int argc, char **argv)
{
        g_autoptr (GFile) file = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GInputStream) stream = NULL;
        g_autoptr (GError) error = NULL;
        g_autofree char *buffer = g_malloc (BUFFER_SIZE);
        gssize n;

        if (argc != 2) {
                fprintf (stderr, "usage: %s IMAGE\n", argv[0]);
                return EXIT_FAILURE;
        }

        file = g_file_new_for_commandline_arg (argv[1]);
        image = vhdx_image_new (file, VHDX_OPEN_FLAGS_NONE, NULL, &error);
        if (image == NULL) {
                fprintf (stderr, "%s: %s\n", argv[1], error->message);
                return EXIT_FAILURE;
        }

        /* The virtual disk as a stream: read() returns 0 at its end. */
        stream = vhdx_image_open_stream (image);
        while ((n = g_input_stream_read (stream, buffer, BUFFER_SIZE, NULL, &error)) > 0) {
                if (fwrite (buffer, 1, (size_t) n, stdout) != (size_t) n) {
                        perror ("vhdx-cat: standard output");
                        return EXIT_FAILURE;
                }
        }
        if (n < 0) {
                fprintf (stderr, "%s: %s\n", argv[1], error->message);
                return EXIT_FAILURE;
        }
        if (fflush (stdout) != 0) {
                perror ("vhdx-cat: standard output");
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
