/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whether nbdkit was started read-only, read from its own command line. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/*
 * Whether nbdkit was started read-only (-r, --read-only, --readonly).  nbdkit
 * tells a plugin only when a client connects (.open), but the locks are
 * taken before: this reads nbdkit's own command line, as its getopt does.
 * FALSE when it cannot tell (an option it does not know, no /proc): the
 * server is then taken as writable, and the first connection, read-only or
 * not, settles it.
 */
gboolean vhdx_nbdkit_is_read_only (void);

G_END_DECLS
