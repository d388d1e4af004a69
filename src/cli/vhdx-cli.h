/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the commands of the vhdx tool share: opening images, sizes, and the commands themselves. */
#pragma once

#include <sys/stat.h>

#include "vhdx-create.h"
#include "vhdx-reader.h"
#include "vhdx-tool.h"

G_BEGIN_DECLS

/* check's exit status for a corrupt image. */
#define EXIT_CORRUPT 2

/* Large enough for fast sequential reads, small enough to keep memory low. */
#define CLI_CHUNK_SIZE (4 * VHDX_MiB)

/* How the commands open images: where the parents of differencing images
 * are found, and whether an image that another process writes is read. */
typedef struct {
        char *parent;             /* --parent: instead of the locator's paths */
        char **parent_dirs;       /* --parent-dir: more directories to look in */
        gboolean ignore_mismatch; /* --ignore-parent-mismatch */
        gboolean force_share;     /* -U, --force-share: read despite a writer's lock */
} CliOpenOptions;

void cli_open_options_clear (CliOpenOptions *options);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (CliOpenOptions, cli_open_options_clear)

/* The option entries of a CliOpenOptions, in a command's entries, with
 * @parent_help as the help of --parent. */
#define CLI_PARENT_OPTION_ENTRIES(options, parent_help)                                            \
        { "parent", 0, 0, G_OPTION_ARG_FILENAME, &(options)->parent, parent_help, N_ ("PARENT") }, \
                CLI_PARENT_SEARCH_OPTION_ENTRIES (options)

/* --parent-dir and --ignore-parent-mismatch alone, for commands whose
 * --parent means something else. */
#define CLI_PARENT_SEARCH_OPTION_ENTRIES(options)                                                  \
        { "parent-dir",                                                                            \
          0,                                                                                       \
          0,                                                                                       \
          G_OPTION_ARG_FILENAME_ARRAY,                                                             \
          &(options)->parent_dirs,                                                                 \
          N_ ("Also look for parents in DIR, after the image's own directory (repeatable)"),       \
          N_ ("DIR") },                                                                            \
        {                                                                                          \
                "ignore-parent-mismatch", 0, 0, G_OPTION_ARG_NONE, &(options)->ignore_mismatch,    \
                        N_ ("Use a parent whose DataWriteGuid is not the one the image was made "  \
                            "from "                                                                \
                            "(with a warning)"),                                                   \
                        NULL                                                                       \
        }

/* -U, --force-share, for the commands that only read. */
#define CLI_FORCE_SHARE_OPTION_ENTRY(options)                                                      \
        {                                                                                          \
                "force-share", 'U', 0, G_OPTION_ARG_NONE, &(options)->force_share,                 \
                        N_ ("Read the image even while another process writes it (it may be "      \
                            "inconsistent)"),                                                      \
                        NULL                                                                       \
        }

#define CLI_PARENT_HELP                                                                            \
        N_ ("Use PARENT as the parent of a differencing image instead of the one its locator "     \
            "names")

/*
 * Open @path as the commands do, finding parents as @parents says (NULL:
 * as the locator says) and sharing it with a writer when it says so; the
 * file's status goes to @st when not NULL.  The warnings of a parent taken
 * despite a mismatch and of an image that another process writes are
 * printed.
 */
G_GNUC_WARN_UNUSED_RESULT VhdxFile *cli_open_image (const char *path,
                                                    VhdxOpenFlags flags,
                                                    const CliOpenOptions *parents,
                                                    struct stat *st,
                                                    GError **error);

/* Options that shape a new VHDX image. */
typedef struct {
        char *type;
        char *parent;
        const CliOpenOptions *search; /* how the parent's own parents are found */
        char *block_size;
        char *logical_sector_size;
        char *physical_sector_size;
        char *log_size;
} CliCreateOptions;

void cli_create_options_clear (CliCreateOptions *options);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (CliCreateOptions, cli_create_options_clear)

/*
 * Fill @params from the options for the new image @dst; with a parent, it
 * is opened into @parent and the image becomes its differencing child,
 * taking its sector size.  @for_convert: differencing is no --type there.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean cli_create_params_from_options (const CliCreateOptions *options,
                                                                   const char *dst,
                                                                   VhdxCreateParams *params,
                                                                   VhdxFile **parent,
                                                                   gboolean for_convert);

/* The plugin's arguments that serve @image, its parents found as @parents says. */
void cli_nbdkit_add_image_args (GPtrArray *argv, const char *image, const CliOpenOptions *parents);

/*
 * Write the virtual disk of @source (a VHDX image, or a raw disk image) as a
 * qcow2 image at @destination (a file that exists), with QEMU's qemu-img:
 * a VHDX image is served to it read-only through nbdkit and the plugin,
 * its parents found as @parents says.  qemu-img's own progress with
 * @show_progress on a terminal; its errors on standard error.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean cli_convert_to_qcow2 (const char *source,
                                                         gboolean source_is_vhdx,
                                                         const CliOpenOptions *parents,
                                                         const char *destination,
                                                         gboolean show_progress,
                                                         GError **error);

int cli_cmd_info (int argc, char **argv);
int cli_cmd_check (int argc, char **argv);
int cli_cmd_map (int argc, char **argv);
int cli_cmd_cat (int argc, char **argv);
int cli_cmd_convert (int argc, char **argv);
int cli_cmd_create (int argc, char **argv);
int cli_cmd_resize (int argc, char **argv);
int cli_cmd_compact (int argc, char **argv);
int cli_cmd_set_parent (int argc, char **argv);
int cli_cmd_merge (int argc, char **argv);
int cli_cmd_set (int argc, char **argv);
int cli_cmd_mount (int argc, char **argv);
int cli_cmd_umount (int argc, char **argv);

G_END_DECLS
