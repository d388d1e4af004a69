/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine's VhdxIo over the plugin below an nbdkit filter (its
 * nbdkit_next), with the reads of the image's metadata made in large
 * aligned pieces.
 */
#pragma once

#include <glib.h>

#include "vhdx-io.h"

G_BEGIN_DECLS

struct nbdkit_next_ops;

/*
 * A VhdxIo over @next, which must stay prepared until the VhdxIo is freed.
 * Writable (pwrite, flush, zero_range) when @writable; its size is that of
 * @next and cannot change, so a write past it fails with
 * G_IO_ERROR_NO_SPACE.  With @serialize, calls into @next are made one at
 * a time (a plugin below that is not in the parallel thread model, whose
 * context every connection shares).
 */
G_GNUC_WARN_UNUSED_RESULT VhdxIo *vhdx_next_io_new (struct nbdkit_next_ops *next,
                                                    gboolean writable,
                                                    gboolean serialize);

/*
 * Tell @io where the image's metadata lies once the image is open: from
 * then on only reads in these ranges are read ahead, the reads of the
 * virtual disk's payload go straight to the plugin below.  Until then,
 * every small read is (opening reads nothing but metadata).
 */
void vhdx_next_io_set_metadata_ranges (VhdxIo *io, const guint64 *ranges, guint n_ranges);

/* How many reads of the plugin below @io made so far, for debug messages. */
guint64 vhdx_next_io_get_reads (VhdxIo *io);

G_END_DECLS
