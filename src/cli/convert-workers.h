/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The threads of vhdx convert: chunks of the disk read and checked in parallel, written in order
 * when asked. */
#pragma once

#include "vhdx-map.h"

G_BEGIN_DECLS

/* One chunk of the disk and the buffers it is read into; what the fields
 * beyond the first four mean is up to the conversion. */
typedef struct {
        guint64 index;  /* in the order the chunks were submitted */
        guint64 offset; /* of the virtual disk */
        gsize length;
        guint8 *buf;  /* CLI_CHUNK_SIZE bytes of its own */
        guint8 *base; /* the same, with two buffers a chunk (else NULL) */
        VhdxMapExtent extent;
        gboolean has_data;
        gboolean parent_data;
        gboolean skip;     /* work() found nothing to write */
        gboolean buffered; /* read into buf, never copied by the kernel */
} CliChunk;

/* What a thread does with a chunk: FALSE with @error and the @path of the
 * file it concerns on failure. */
typedef gboolean (*CliChunkFunc) (CliChunk *chunk,
                                  gpointer user_data,
                                  const char **path,
                                  GError **error);

typedef struct _CliWorkers CliWorkers;

CliWorkers *cli_workers_new (gboolean two_buffers,
                             CliChunkFunc work,
                             CliChunkFunc commit,
                             gpointer user_data);
CliChunk *cli_workers_next (CliWorkers *workers);
void cli_workers_submit (CliWorkers *workers, CliChunk *chunk);
G_GNUC_WARN_UNUSED_RESULT gboolean cli_workers_finish (CliWorkers *workers,
                                                       const char **path,
                                                       GError **error);

void cli_workers_abandon (CliWorkers *workers);

G_END_DECLS
