/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reaching the bytes of a GFile through the engine's VhdxIo. */
#pragma once

#include <gio/gio.h>

#include "vhdx-io.h"

G_BEGIN_DECLS

/*
 * Open @file for the engine.  A local file (one with a path) is opened as a
 * file descriptor, read-write when @writable, so that reads from several
 * threads go straight to pread().  Any other GFile is read through a
 * seekable GFileInputStream; such files can only be opened read-only.
 */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_gfile_io_open (GFile *file,
                                                      gboolean writable,
                                                      GCancellable *cancellable,
                                                      GError **error);

/*
 * The GFile that the engine's @name of a file stands for: a URI for files
 * that have no local path, a path otherwise.  The inverse of
 * vhdx_gfile_io_name().
 */
G_GNUC_WARN_UNUSED_RESULT GFile *vhdx_gfile_io_file_for_name (const char *name);
G_GNUC_WARN_UNUSED_RESULT char *vhdx_gfile_io_name (GFile *file);

G_END_DECLS
