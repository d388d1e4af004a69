/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx-copy-in: copy a file into the virtual disk of a VHDX image, at an
 * offset, writing the image in place.
 *
 * Build it with:
 *   cc -o vhdx-copy-in vhdx-copy-in.c $(pkg-config --cflags --libs vhdx-1.0)
 * and run it as:
 *   vhdx-copy-in IMAGE OFFSET FILE
 */
#include <stdio.h>
#include <stdlib.h>

#include <vhdx.h>

#define BUFFER_SIZE (1024 * 1024)

int
main (int argc, char **argv)
{
        g_autoptr (GFile) file = NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (GFile) source_file = NULL;
        g_autoptr (GFileInputStream) source = NULL;
        g_autoptr (GError) error = NULL;
        g_autofree char *buffer = g_malloc (BUFFER_SIZE);
        guint64 offset;
        gssize n;

        if (argc != 4 || !g_ascii_string_to_unsigned (argv[2], 10, 0, G_MAXUINT64, &offset, NULL)) {
                fprintf (stderr, "usage: %s IMAGE OFFSET FILE\n", argv[0]);
                return EXIT_FAILURE;
        }

        source_file = g_file_new_for_commandline_arg (argv[3]);
        source = g_file_read (source_file, NULL, &error);
        if (source == NULL) {
                fprintf (stderr, "%s: %s\n", argv[3], error->message);
                return EXIT_FAILURE;
        }

        /* Opened for writing, the image is locked against other writers
         * and readers until it is closed. */
        file = g_file_new_for_commandline_arg (argv[1]);
        image = vhdx_image_new (file, VHDX_OPEN_FLAGS_READ_WRITE, NULL, &error);
        if (image == NULL) {
                fprintf (stderr, "%s: %s\n", argv[1], error->message);
                return EXIT_FAILURE;
        }

        while ((n = g_input_stream_read (G_INPUT_STREAM (source), buffer, BUFFER_SIZE, NULL,
                                         &error)) > 0) {
                if (!vhdx_image_write (image, offset, buffer, (gsize) n, VHDX_WRITE_FLAGS_NONE,
                                       NULL, &error)) {
                        fprintf (stderr, "%s: %s\n", argv[1], error->message);
                        return EXIT_FAILURE;
                }
                offset += (guint64) n;
        }
        if (n < 0) {
                fprintf (stderr, "%s: %s\n", argv[3], error->message);
                return EXIT_FAILURE;
        }

        /* Closing flushes the data, commits the new blocks through the
         * image's log and leaves the image clean for other programs. */
        if (!vhdx_image_close (image, NULL, &error)) {
                fprintf (stderr, "%s: %s\n", argv[1], error->message);
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
