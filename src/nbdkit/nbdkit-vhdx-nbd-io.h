/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine's VhdxIo over an image that another NBD server serves as
 * bytes, named by an NBD URI (nbd://, nbd+unix://), read through libnbd:
 * how the plugin and the filter read a parent given as parent=URI.
 */
#pragma once

#include <glib.h>

#include "vhdx-io.h"

G_BEGIN_DECLS

/* Whether @value names an NBD server rather than a file: it starts with
 * one of the URI schemes libnbd connects to (nbd, nbds, nbd+unix, ...). */
gboolean vhdx_nbd_io_is_uri (const char *value);

/*
 * Connect to the NBD server that @uri names and read its export as the
 * bytes of an image: a read-only VhdxIo, or NULL with @error set (also
 * when the library was built without libnbd).
 */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_nbd_io_open (const char *uri, GError **error);

G_END_DECLS
