/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A program that does nothing but start and print one line, linked with
 * GLib alone or, with BENCH_STARTUP_FULL, with the libraries `vhdx` loads
 * (GIO, GObject, json-glib): the floor of any command of the tool, timed
 * beside `vhdx info` in the benchmarks.
 */
#include <glib.h>

#if defined(BENCH_STARTUP_FULL)
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#endif

int
main (void)
{
#if defined(BENCH_STARTUP_FULL)
        /* One type of each library, so that the linker keeps them all. */
        g_print ("%s %s\n", g_type_name (G_TYPE_FILE), g_type_name (JSON_TYPE_NODE));
#else
        g_print ("%u.%u\n", glib_major_version, glib_minor_version);
#endif
        return 0;
}
