/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the commands of the vhdx tool share: opening images, sizes, and the commands themselves. */
#pragma once

#include <sys/stat.h>

#include "vhdx-reader.h"
#include "vhdx-tool.h"

G_BEGIN_DECLS

/* check's exit status for a corrupt image. */
#define EXIT_CORRUPT 2

/* Large enough for fast sequential reads, small enough to keep memory low. */
#define CLI_CHUNK_SIZE (4 * VHDX_MiB)

/* Open @path as the commands do, with @parent (or NULL) instead of the
 * parent its locator names; the file's status goes to @st when not NULL. */
G_GNUC_WARN_UNUSED_RESULT VhdxFile *cli_open_image (const char *path,
                                                    VhdxOpenFlags flags,
                                                    const char *parent,
                                                    struct stat *st,
                                                    GError **error);

/* A byte count with an optional K, M, G or T suffix (powers of 1024); a
 * usage error naming @name when it is not one.  @min is the smallest allowed. */
G_GNUC_WARN_UNUSED_RESULT gboolean cli_parse_size (const char *name,
                                                   const char *text,
                                                   guint64 min,
                                                   guint64 *value);

int cli_cmd_info (int argc, char **argv);
int cli_cmd_check (int argc, char **argv);
int cli_cmd_map (int argc, char **argv);
int cli_cmd_cat (int argc, char **argv);
int cli_cmd_convert (int argc, char **argv);
int cli_cmd_create (int argc, char **argv);

G_END_DECLS
