/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VhdxFile: an opened VHDX image, from open to close.  Opening parses and
 * validates every fixed structure, replays a pending log, takes the file's
 * lock, attaches the writer when opened read-write and opens the parents of
 * a differencing image; the BAT is loaded lazily.  Reading is in
 * vhdx-reader.h, writing in vhdx-writer.h, the map in vhdx-map.h.
 */
#pragma once

#include "vhdx-error.h"
#include "vhdx-format.h"
#include "vhdx-io.h"
#include "vhdx-bat.h"
#include "vhdx-parent.h"
#include "vhdx-problems.h"
#include "vhdx-types.h"

G_BEGIN_DECLS

typedef struct _VhdxFile VhdxFile;

typedef struct {
        guint64 file_size;
        char *creator;

        guint header_index; /* 1 or 2: the current header */
        guint64 header_sequence;
        VhdxGuid file_write_guid;
        VhdxGuid data_write_guid;
        VhdxGuid log_guid;
        guint64 log_offset;
        guint32 log_length;
        VhdxLogState log_state;
        /* When the log was replayed (in memory or onto the file): */
        guint log_entries_replayed;
        guint log_writes_replayed;
        guint64 log_head_sequence;

        guint region_table_index; /* 1 or 2: the copy in use */
        guint64 bat_offset;
        guint32 bat_length;
        guint64 metadata_offset;
        guint32 metadata_length;

        VhdxDiskType disk_type;
        guint32 block_size;
        gboolean leave_block_allocated;
        gboolean has_parent;
        guint64 virtual_size;
        VhdxGuid virtual_disk_id;
        guint32 logical_sector_size;
        guint32 physical_sector_size;
        /* Differencing images: where the parent locator item lies. */
        guint64 parent_locator_offset;
        guint32 parent_locator_length;

        VhdxBatGeometry geometry;

        /* Opened with VHDX_OPEN_FLAGS_FORCE_SHARE while another process was
         * writing the image. */
        gboolean written_elsewhere;
} VhdxInfo;

/*
 * Opens a parent named by a locator or by the caller, read-only unless
 * @writable (VhdxOpenOptions.writable_ancestors).  Returns NULL with
 * G_IO_ERROR_NOT_FOUND when there is no such file (the next candidate is
 * tried), or with any other error to stop.
 */
typedef VhdxIo *(*VhdxOpenFunc) (const char *path,
                                 gboolean writable,
                                 gpointer user_data,
                                 GError **error);

/* The chain limit: a differencing image may have at most this many ancestors. */
#define VHDX_MAX_CHAIN_DEPTH 64

typedef struct {
        /* Path of the image itself, to resolve its parent locator against
         * (relative_path is relative to its directory); NULL when it has none. */
        const char *path;
        /* An explicit parent, tried instead of the locator's paths. */
        const char *parent_path;
        /* More directories to look for parents in (NULL-terminated, or NULL),
         * after the image's own directory. */
        const char *const *parent_dirs;
        /* How parents are opened; NULL: vhdx_io_open_path(). */
        VhdxOpenFunc open_func;
        gpointer open_data;
        /* The ancestors opened read-write, locked as writers (bit d - 1:
         * the ancestor at depth d, 1 being the parent); the others are
         * read-only.  For the operations that change a chain (merging). */
        guint64 writable_ancestors;
} VhdxOpenOptions;

/* Takes ownership of @io, also on failure.  Differencing images need
 * vhdx_file_open_full() to find their parent. */
G_GNUC_WARN_UNUSED_RESULT VhdxFile *vhdx_file_open (VhdxIo *io,
                                                    VhdxOpenFlags flags,
                                                    GError **error);
/* Takes ownership of @io, also on failure.  @options may be NULL. */
G_GNUC_WARN_UNUSED_RESULT VhdxFile *vhdx_file_open_full (VhdxIo *io,
                                                         VhdxOpenFlags flags,
                                                         const VhdxOpenOptions *options,
                                                         GError **error);

/* The parent of a differencing image (owned by @file), or NULL: always for
 * images without one, and for a differencing image opened without it. */
VhdxFile *vhdx_file_get_parent (VhdxFile *file);
/* Why a differencing image was opened without its parent (owned by @file),
 * or NULL when it was not: VHDX_ERROR_PARENT_NOT_FOUND or _PARENT_MISMATCH
 * with the paths tried, or VHDX_ERROR_PARENT_NOT_FOUND for
 * VHDX_OPEN_FLAGS_NO_PARENT. */
const GError *vhdx_file_get_parent_error (VhdxFile *file);
/* With VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH: the warning that the parent
 * taken is not the one the image was made from (owned by @file), or NULL. */
const char *vhdx_file_get_parent_warning (VhdxFile *file);
/* The path the parent was opened from (owned by @file), or NULL. */
const char *vhdx_file_get_parent_path (VhdxFile *file);
/* Ancestors below this image: 0 for an image without a parent. */
guint vhdx_file_get_chain_depth (VhdxFile *file);

/* The parent locator's entries in file order (a GPtrArray of VhdxLocatorEntry
 * owned by @file), or NULL when the image has no locator. */
GPtrArray *vhdx_file_get_parent_locator (VhdxFile *file);
void vhdx_file_free (VhdxFile *file);

const VhdxInfo *vhdx_file_get_info (VhdxFile *file);

/* Problems noticed while opening (e.g. a damaged first header next to a good
 * second one): a GPtrArray of VhdxProblem owned by @file. */
GPtrArray *vhdx_file_get_open_problems (VhdxFile *file);

/* TRUE when @file was opened with VHDX_OPEN_FLAGS_READ_WRITE. */
gboolean vhdx_file_is_writable (VhdxFile *file);

/*
 * Flush, write the metadata in place for good and clear the header's
 * LogGuid: the image is clean, as other tools expect it, and the file is
 * locked as a reader's.  No write may run or follow; vhdx_file_free() does
 * this too, reporting nothing.  Nothing to do for an image opened read-only.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_file_close (VhdxFile *file, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VhdxFile, vhdx_file_free)

G_END_DECLS
