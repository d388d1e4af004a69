/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The enumerations and the error domain of libvhdx.  Plain C: the format
 * engine includes this header too, so the engine, the tools and the GObject
 * library share one definition of every value.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * VhdxDiskType:
 * @VHDX_DISK_TYPE_FIXED: every block of the virtual disk is allocated in the file
 * @VHDX_DISK_TYPE_DYNAMIC: blocks are allocated in the file when first written
 * @VHDX_DISK_TYPE_DIFFERENCING: blocks not stored in the file are read from a parent image
 *
 * The kind of a VHDX image.
 *
 * Since: 0.1
 */
typedef enum {
        VHDX_DISK_TYPE_FIXED,
        VHDX_DISK_TYPE_DYNAMIC,
        VHDX_DISK_TYPE_DIFFERENCING,
} VhdxDiskType;

/**
 * VhdxLogState:
 * @VHDX_LOG_STATE_CLEAN: the image had no log to replay
 * @VHDX_LOG_STATE_REPLAYED_IN_MEMORY: the image has a pending log; it was
 *   replayed in memory so that reads see the current data, and the file
 *   was left unchanged
 * @VHDX_LOG_STATE_REPLAYED: the pending log was replayed onto the file
 *   (the image was opened with %VHDX_OPEN_FLAGS_READ_WRITE)
 *
 * What opening an image did with its log.
 *
 * Since: 0.1
 */
typedef enum {
        VHDX_LOG_STATE_CLEAN,
        VHDX_LOG_STATE_REPLAYED_IN_MEMORY,
        VHDX_LOG_STATE_REPLAYED,
} VhdxLogState;

/**
 * VhdxOpenFlags:
 * @VHDX_OPEN_FLAGS_NONE: open read-only; a pending log is replayed in memory
 * @VHDX_OPEN_FLAGS_READ_WRITE: open the file for writing and replay a pending
 *   log onto it
 * @VHDX_OPEN_FLAGS_NO_PARENT: open a differencing image without its parent,
 *   which is not looked for: the image's own structures are read and
 *   checked, and reads of what the parent holds fail with
 *   %VHDX_ERROR_PARENT_NOT_FOUND
 * @VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT: open the chain of parents as far as
 *   it can be found: a parent that cannot be found, or is not the image's
 *   parent, ends the chain there instead of failing the open; reads of what
 *   it holds fail with %VHDX_ERROR_PARENT_NOT_FOUND
 * @VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH: accept a parent whose
 *   DataWriteGuid is not the one the image was made from, as Hyper-V's
 *   `Set-VHD -IgnoreIdMismatch` does for recovery; the open records a
 *   warning naming both GUIDs
 * @VHDX_OPEN_FLAGS_FORCE_SHARE: open read-only without the lock that keeps
 *   other processes from writing the image meanwhile, and open even an
 *   image another process is writing (as QEMU's `--force-share`); a
 *   pending log is replayed in memory.  What is read may be changing.
 *
 * Every other open locks the image file (and its parents, shared) as QEMU
 * does: a read-only open fails with %G_IO_ERROR_BUSY while another process
 * writes the image, and an open for writing while another process has it
 * open at all.  The locks go when the image is closed or its process dies.
 *
 * How an image is opened.
 *
 * Since: 0.1
 */
typedef enum /*< flags >*/ {
        VHDX_OPEN_FLAGS_NONE = 0,
        VHDX_OPEN_FLAGS_READ_WRITE = 1 << 0,
        VHDX_OPEN_FLAGS_NO_PARENT = 1 << 1,
        VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT = 1 << 2,
        VHDX_OPEN_FLAGS_IGNORE_PARENT_MISMATCH = 1 << 3,
        VHDX_OPEN_FLAGS_FORCE_SHARE = 1 << 4,
} VhdxOpenFlags;

/**
 * VhdxWriteFlags:
 * @VHDX_WRITE_FLAGS_NONE: no flag: the change is durable once the image is
 *   next flushed or closed
 * @VHDX_WRITE_FLAGS_FUA: the change is durable when the call returns: the
 *   image is flushed after it, as [method@Vhdx.Image.flush] does
 * @VHDX_WRITE_FLAGS_MAY_UNMAP: zeroing may free the blocks of a dynamic or
 *   differencing image that it covers entirely: they then read as zeros
 *   without taking space in the file.  Without it, the blocks stored stay
 *   allocated and are filled with zeros.  Only
 *   [method@Vhdx.Image.write_zeroes] looks at this flag.
 *
 * How a write to the virtual disk is made.
 *
 * Since: 0.1
 */
typedef enum /*< flags >*/ {
        VHDX_WRITE_FLAGS_NONE = 0,
        VHDX_WRITE_FLAGS_FUA = 1 << 0,
        VHDX_WRITE_FLAGS_MAY_UNMAP = 1 << 1,
} VhdxWriteFlags;

/**
 * VhdxResizeFlags:
 * @VHDX_RESIZE_FLAGS_NONE: shrink only where nothing is stored past the new
 *   end
 * @VHDX_RESIZE_FLAGS_DISCARD_DATA: shrink even when data is stored past the
 *   new end, which is lost
 *
 * How [method@Vhdx.Image.resize] changes the size of a virtual disk.
 *
 * Since: 0.2
 */
typedef enum /*< flags >*/ {
        VHDX_RESIZE_FLAGS_NONE = 0,
        VHDX_RESIZE_FLAGS_DISCARD_DATA = 1 << 0,
} VhdxResizeFlags;

/**
 * VhdxSetParentFlags:
 * @VHDX_SET_PARENT_FLAGS_NONE: the parent must be the image the
 *   differencing image was made from
 * @VHDX_SET_PARENT_FLAGS_IGNORE_MISMATCH: take another parent, whose
 *   DataWriteGuid becomes the one the locator names
 *
 * How [method@Vhdx.Image.set_parent] points a differencing image at its
 * parent.
 *
 * Since: 0.2
 */
typedef enum /*< flags >*/ {
        VHDX_SET_PARENT_FLAGS_NONE = 0,
        VHDX_SET_PARENT_FLAGS_IGNORE_MISMATCH = 1 << 0,
} VhdxSetParentFlags;

/**
 * VhdxCompactFlags:
 * @VHDX_COMPACT_FLAGS_NONE: read every stored block, and drop those that
 *   read as zeros, as `Optimize-VHD -Mode Full` does
 * @VHDX_COMPACT_FLAGS_QUICK: read no data: give back only the space of
 *   blocks already unallocated, zeroed or discarded, as `Optimize-VHD
 *   -Mode Quick` does
 *
 * How [method@Vhdx.Image.compact] finds the blocks whose file space it
 * gives back.
 *
 * Since: 0.2
 */
typedef enum /*< flags >*/ {
        VHDX_COMPACT_FLAGS_NONE = 0,
        VHDX_COMPACT_FLAGS_QUICK = 1 << 0,
} VhdxCompactFlags;

/**
 * VhdxMergeFlags:
 * @VHDX_MERGE_FLAGS_NONE: refuse when other differencing images were made
 *   from an image the merge changes, and keep the folded images
 * @VHDX_MERGE_FLAGS_DELETE_MERGED: delete the folded images once the merge
 *   succeeded
 * @VHDX_MERGE_FLAGS_FORCE: merge even when other differencing images made
 *   from the images it changes (or deletes) are found beside them: they
 *   will no longer read as they did
 *
 * How [func@Vhdx.Image.merge] folds a differencing image into an ancestor.
 *
 * Since: 0.2
 */
typedef enum /*< flags >*/ {
        VHDX_MERGE_FLAGS_NONE = 0,
        VHDX_MERGE_FLAGS_DELETE_MERGED = 1 << 0,
        VHDX_MERGE_FLAGS_FORCE = 1 << 1,
} VhdxMergeFlags;

/**
 * VhdxSetMetadataFlags:
 * @VHDX_SET_METADATA_FLAGS_NONE: keep the Virtual Disk ID; refuse the
 *   change when a differencing image made from the image cannot be updated
 * @VHDX_SET_METADATA_FLAGS_RESET_DISK_ID: give the virtual disk a new
 *   random Virtual Disk ID
 * @VHDX_SET_METADATA_FLAGS_FORCE: change the image even when differencing
 *   images made from it cannot be updated, which then no longer open with it
 *
 * How [method@Vhdx.Image.set_metadata] changes an image's metadata.
 *
 * Since: 0.2
 */
typedef enum /*< flags >*/ {
        VHDX_SET_METADATA_FLAGS_NONE = 0,
        VHDX_SET_METADATA_FLAGS_RESET_DISK_ID = 1 << 0,
        VHDX_SET_METADATA_FLAGS_FORCE = 1 << 1,
} VhdxSetMetadataFlags;

/**
 * VhdxSeverity:
 * @VHDX_SEVERITY_WARNING: the image reads correctly, but something is not as
 *   the specification says it should be
 * @VHDX_SEVERITY_ERROR: the image is corrupt
 *
 * How serious a problem found by [method@Vhdx.Image.check] is.
 *
 * Since: 0.1
 */
typedef enum {
        VHDX_SEVERITY_WARNING,
        VHDX_SEVERITY_ERROR,
} VhdxSeverity;

/**
 * VHDX_ERROR:
 *
 * Error domain for VHDX format errors.  Errors in this domain come from
 * the [error@Vhdx.Error] enumeration.  Failures of the underlying file stay
 * in the `G_IO_ERROR` domain.
 *
 * Since: 0.1
 */
#define VHDX_ERROR (vhdx_error_quark ())

/**
 * VhdxError:
 * @VHDX_ERROR_INVALID: a structure is corrupt or inconsistent
 * @VHDX_ERROR_CHECKSUM: a structure's CRC-32C does not match its contents
 * @VHDX_ERROR_NOT_SUPPORTED: the image uses a feature this version cannot handle
 * @VHDX_ERROR_TRUNCATED: the file ends before a structure it must contain
 * @VHDX_ERROR_PARENT_NOT_FOUND: the parent of a differencing image cannot be found
 * @VHDX_ERROR_PARENT_MISMATCH: the parent found is not the one the image was made from
 * @VHDX_ERROR_LOG: the log is corrupt or cannot be replayed
 * @VHDX_ERROR_OUT_OF_RANGE: a request lies outside the virtual disk
 * @VHDX_ERROR_WOULD_DISCARD_DATA: the change would drop data the image
 *   stores (shrinking it below its last stored byte); since 0.2
 *
 * Error codes in the `VHDX_ERROR` domain, whose quark string is
 * `vhdx-error-quark`.
 *
 * Since: 0.1
 */
typedef enum {
        VHDX_ERROR_INVALID,
        VHDX_ERROR_CHECKSUM,
        VHDX_ERROR_NOT_SUPPORTED,
        VHDX_ERROR_TRUNCATED,
        VHDX_ERROR_PARENT_NOT_FOUND,
        VHDX_ERROR_PARENT_MISMATCH,
        VHDX_ERROR_LOG,
        VHDX_ERROR_OUT_OF_RANGE,
        VHDX_ERROR_WOULD_DISCARD_DATA,
} VhdxError;

/**
 * vhdx_error_quark:
 *
 * The quark of the [error@Vhdx.Error] domain.
 *
 * Returns: the error domain, `vhdx-error-quark`
 *
 * Since: 0.1
 */
GQuark vhdx_error_quark (void);

G_END_DECLS
