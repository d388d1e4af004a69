/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whether nbdkit was started read-only, read from its own command line. */
#include "config.h"

#include <string.h>

#include <glib.h>

#include "nbdkit-vhdx-cmdline.h"

/*
 * The nbdkit options that take a value, in nbdkit's command line (its
 * option table, nbdkit(1)): the short ones, and the long ones with the
 * meaning of each for -r.
 */
#define NBDKIT_SHORT_OPTIONS_WITH_VALUE    "DegiPptuU"
#define NBDKIT_SHORT_OPTIONS_WITHOUT_VALUE "46fnorsvV"

typedef struct {
        const char *name;
        gboolean takes_value;
        gboolean read_only;
} NbdkitLongOption;

static const NbdkitLongOption nbdkit_long_options[] = {
        { "ipv4-only", FALSE, FALSE },
        { "ipv6-only", FALSE, FALSE },
        { "debug", TRUE, FALSE },
        { "dump-config", FALSE, FALSE },
        { "dump-plugin", FALSE, FALSE },
        { "exit-with-parent", FALSE, FALSE },
        { "export", TRUE, FALSE },
        { "export-name", TRUE, FALSE },
        { "exportname", TRUE, FALSE },
        { "filter", TRUE, FALSE },
        { "foreground", FALSE, FALSE },
        { "no-fork", FALSE, FALSE },
        { "group", TRUE, FALSE },
        { "help", FALSE, FALSE },
        { "ip-addr", TRUE, FALSE },
        { "ipaddr", TRUE, FALSE },
        { "log", TRUE, FALSE },
        { "long-options", FALSE, FALSE },
        { "mask-handshake", TRUE, FALSE },
        { "new-style", FALSE, FALSE },
        { "newstyle", FALSE, FALSE },
        { "no-sr", FALSE, FALSE },
        { "old-style", FALSE, FALSE },
        { "oldstyle", FALSE, FALSE },
        { "pid-file", TRUE, FALSE },
        { "pidfile", TRUE, FALSE },
        { "port", TRUE, FALSE },
        { "read-only", FALSE, TRUE },
        { "readonly", FALSE, TRUE },
        { "run", TRUE, FALSE },
        { "selinux-label", TRUE, FALSE },
        { "short-options", FALSE, FALSE },
        { "single", FALSE, FALSE },
        { "stdin", FALSE, FALSE },
        { "swap", FALSE, FALSE },
        { "threads", TRUE, FALSE },
        { "tls", TRUE, FALSE },
        { "tls-certificates", TRUE, FALSE },
        { "tls-psk", TRUE, FALSE },
        { "tls-verify-peer", FALSE, FALSE },
        { "unix", TRUE, FALSE },
        { "user", TRUE, FALSE },
        { "verbose", FALSE, FALSE },
        { "version", FALSE, FALSE },
        { "vsock", FALSE, FALSE },
};

/* The long option @name (without "--" and "=value") stands for, as getopt
 * reads it: an exact name, or the beginning of names that all mean the
 * same; NULL when there is none or it is ambiguous. */
static const NbdkitLongOption *
find_long_option (const char *name, gsize length)
{
        const NbdkitLongOption *found = NULL;

        for (guint i = 0; i < G_N_ELEMENTS (nbdkit_long_options); i++) {
                const NbdkitLongOption *o = &nbdkit_long_options[i];

                if (strncmp (o->name, name, length) != 0)
                        continue;
                if (o->name[length] == '\0')
                        return o;
                if (found != NULL &&
                    (found->takes_value != o->takes_value || found->read_only != o->read_only))
                        return NULL;
                found = o;
        }
        return found;
}

gboolean
vhdx_nbdkit_is_read_only (void)
{
        g_autofree char *contents = NULL;
        g_autoptr (GPtrArray) args = g_ptr_array_new ();
        gsize length;

        if (!g_file_get_contents ("/proc/self/cmdline", &contents, &length, NULL))
                return FALSE;
        for (gsize i = 0; i < length; i += strlen (contents + i) + 1)
                g_ptr_array_add (args, contents + i);
        /* args[0] is nbdkit itself. */
        for (guint i = 1; i < args->len; i++) {
                const char *arg = g_ptr_array_index (args, i);

                if (strcmp (arg, "--") == 0)
                        return FALSE;
                if (g_str_has_prefix (arg, "--")) {
                        const char *equals = strchr (arg + 2, '=');
                        gsize name_length =
                                equals != NULL ? (gsize) (equals - arg - 2) : strlen (arg + 2);
                        const NbdkitLongOption *option = find_long_option (arg + 2, name_length);

                        if (option == NULL)
                                return FALSE;
                        if (option->read_only)
                                return TRUE;
                        if (option->takes_value && equals == NULL)
                                i++;
                        continue;
                }
                if (arg[0] != '-' || arg[1] == '\0')
                        continue; /* the plugin, its parameters */
                for (const char *c = arg + 1; *c != '\0'; c++) {
                        if (*c == 'r')
                                return TRUE;
                        if (strchr (NBDKIT_SHORT_OPTIONS_WITH_VALUE, *c) != NULL) {
                                if (c[1] == '\0')
                                        i++;
                                break;
                        }
                        if (strchr (NBDKIT_SHORT_OPTIONS_WITHOUT_VALUE, *c) == NULL)
                                return FALSE;
                }
        }
        return FALSE;
}
