/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the nbdkit plugin and the nbdkit filter share: their common options,
 * opening and describing an image, and the requests of a connection answered
 * by its opened VhdxFile.
 */
#pragma once

#include <stdint.h>

#include <glib.h>

#include "vhdx-reader.h"

G_BEGIN_DECLS

struct nbdkit_extents;

/* The options that the plugin and the filter both take. */
typedef struct {
        char *parent_path;      /* absolute, an NBD URI, or NULL: follow the parent locator */
        gboolean parent_is_uri; /* parent_path names an NBD server's export */
        GPtrArray *parent_dirs; /* absolute directories to look for parents in, NULL-terminated */
        gboolean ignore_parent_mismatch;
        gboolean force_share; /* served read-only, without locking others out */
} VhdxNbdkitOptions;

/* Their lines of config_help, after the module's own: those of parents
 * (the filter's), then force-share (the plugin's only: the filter locks
 * no image of its own). */
#define VHDX_NBDKIT_PARENT_OPTIONS_HELP                                                            \
        "parent=PARENT.vhdx   The parent of a differencing image, instead of\n"                    \
        "                     the one its parent locator names: a file, or\n"                      \
        "                     an NBD URI (nbd://HOST/, nbd+unix:///?socket=S).\n"                  \
        "parent-dir=DIR       Also look for parents in DIR (repeatable).\n"                        \
        "ignore-parent-mismatch=true\n"                                                            \
        "                     Use a parent that is not the one the image was\n"                    \
        "                     made from (its DataWriteGuid differs), with a warning."
#define VHDX_NBDKIT_FORCE_SHARE_HELP                                                               \
        "force-share=true     Serve the image (read-only, with -r) even while\n"                   \
        "                     another process writes it, without locking it."
#define VHDX_NBDKIT_OPTIONS_HELP VHDX_NBDKIT_PARENT_OPTIONS_HELP "\n" VHDX_NBDKIT_FORCE_SHARE_HELP

/*
 * Take the parameter @key=@value into @options when it is one of theirs:
 * 0 when taken, -1 with nbdkit_error called when its value is wrong, 1 when
 * @key is not one of them.
 */
int vhdx_nbdkit_options_config (VhdxNbdkitOptions *options, const char *key, const char *value);
/* Set *@slot to the absolute path of the file @value, given for @key at
 * most once: 0, or -1 with nbdkit_error called. */
int vhdx_nbdkit_config_path (char **slot, const char *key, const char *value);
void vhdx_nbdkit_options_clear (VhdxNbdkitOptions *options);

/*
 * Open the image on @io (taken, also on failure) with @options, read-only or
 * for writing; its parents are opened read-only.  @path is the image's own,
 * to find parents from, or NULL.
 */
G_GNUC_WARN_UNUSED_RESULT VhdxFile *vhdx_nbdkit_open_image (const VhdxNbdkitOptions *options,
                                                            VhdxIo *io,
                                                            const char *path,
                                                            gboolean writable,
                                                            GError **error);
/* Log what opening @file found, its messages starting with @name. */
void vhdx_nbdkit_describe_image (VhdxFile *file,
                                 const char *name,
                                 const VhdxNbdkitOptions *options);

/*
 * One connection: the opened image it uses, and whether it may write.  All
 * the connections of a server use the same VhdxFile (can_multi_conn says
 * so).  The functions below take a handle that is one, and have the
 * signatures of nbdkit's plugin callbacks (API version 2).
 */
typedef struct {
        VhdxFile *file;
        const char *name; /* the image in messages, outliving the connection */
        gboolean writable;
} VhdxNbdkitConnection;

int64_t vhdx_nbdkit_get_size (void *handle);
int vhdx_nbdkit_block_size (void *handle,
                            uint32_t *minimum,
                            uint32_t *preferred,
                            uint32_t *maximum);
/* Also can_trim, can_zero and can_fast_zero. */
int vhdx_nbdkit_can_write (void *handle);
int vhdx_nbdkit_can_flush (void *handle);
int vhdx_nbdkit_can_fua (void *handle);
int vhdx_nbdkit_can_multi_conn (void *handle);
int vhdx_nbdkit_can_extents (void *handle);
int vhdx_nbdkit_pread (void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags);
int vhdx_nbdkit_pwrite (void *handle,
                        const void *buf,
                        uint32_t count,
                        uint64_t offset,
                        uint32_t flags);
int vhdx_nbdkit_flush (void *handle, uint32_t flags);
int vhdx_nbdkit_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags);
int vhdx_nbdkit_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags);
int vhdx_nbdkit_extents (void *handle,
                         uint32_t count,
                         uint64_t offset,
                         uint32_t flags,
                         struct nbdkit_extents *extents);

/* The errno that the last of the functions above to fail in this thread
 * gave the client (EIO when none did), forgotten once taken: what a
 * filter's callback returns in *err. */
int vhdx_nbdkit_take_errno (void);

G_END_DECLS
