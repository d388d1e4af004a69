/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx-mkhostile: writes one of the crafted images of vhdx-hostile.h, for the
 * benchmark that times opening them.  Not installed.
 *
 *   vhdx-mkhostile KIND OUT.vhdx      (vhdx-mkhostile --list names the kinds)
 */
#include <stdio.h>
#include <stdlib.h>

#include "vhdx-hostile.h"

int
main (int argc, char **argv)
{
        g_autoptr (GError) error = NULL;
        VhdxHostileImage image;
        VhdxHostileKind kind;

        if (argc == 2 && g_str_equal (argv[1], "--list")) {
                for (guint i = 0; i < VHDX_HOSTILE_N_KINDS; i++)
                        printf ("%s\n", vhdx_hostile_kind_name ((VhdxHostileKind) i));
                return EXIT_SUCCESS;
        }
        if (argc != 3) {
                fprintf (stderr, "usage: vhdx-mkhostile KIND OUT.vhdx | --list\n");
                return EXIT_FAILURE;
        }
        kind = vhdx_hostile_kind_from_name (argv[1]);
        if (kind == VHDX_HOSTILE_N_KINDS) {
                fprintf (stderr, "vhdx-mkhostile: unknown kind “%s”\n", argv[1]);
                return EXIT_FAILURE;
        }
        if (!vhdx_hostile_write (kind, argv[2], &image, &error)) {
                fprintf (stderr, "vhdx-mkhostile: %s\n", error->message);
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
