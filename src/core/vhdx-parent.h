/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The parent locator of a differencing image, and finding the parent it names. */
#pragma once

#include "vhdx-format.h"
#include "vhdx-io.h"

G_BEGIN_DECLS

#define VHDX_LOCATOR_HEADER_SIZE            20
#define VHDX_LOCATOR_OFF_TYPE               0
#define VHDX_LOCATOR_OFF_COUNT              18
#define VHDX_LOCATOR_ENTRY_SIZE             12
#define VHDX_LOCATOR_ENTRY_OFF_KEY_OFFSET   0
#define VHDX_LOCATOR_ENTRY_OFF_VALUE_OFFSET 4
#define VHDX_LOCATOR_ENTRY_OFF_KEY_LENGTH   8
#define VHDX_LOCATOR_ENTRY_OFF_VALUE_LENGTH 10

extern const VhdxGuid vhdx_guid_locator_vhdx;

/* One key/value pair of the parent locator. */
typedef struct {
        char *key;
        char *value;
} VhdxLocatorEntry;

/*
 * Parse the parent locator item at @file_offset (@length bytes): the VHDX
 * locator type, the key/value table with every offset and length checked
 * against the item, UTF-16LE text, no duplicate keys, and a parent_linkage
 * key.  Returns a GPtrArray of VhdxLocatorEntry.
 */
G_GNUC_WARN_UNUSED_RESULT GPtrArray *vhdx_parent_locator_read (VhdxIo *io,
                                                               guint64 file_offset,
                                                               guint32 length,
                                                               GError **error);

/* The value of @key in @locator (case-sensitive, as the specification names them), or NULL. */
const char *vhdx_parent_locator_lookup (GPtrArray *locator, const char *key);

/* An empty locator: a GPtrArray of VhdxLocatorEntry. */
G_GNUC_WARN_UNUSED_RESULT GPtrArray *vhdx_parent_locator_new (void);

/* A copy of @locator, its entries in the same order. */
G_GNUC_WARN_UNUSED_RESULT GPtrArray *vhdx_parent_locator_copy (GPtrArray *locator);

/* Give @key the value @value: in its place when @locator has it, else at the end. */
void vhdx_parent_locator_set (GPtrArray *locator, const char *key, const char *value);

/* Drop @key from @locator; FALSE when it had none. */
gboolean vhdx_parent_locator_remove (GPtrArray *locator, const char *key);

/* "{GUID}", the form parent_linkage names the parent's DataWriteGuid in. */
G_GNUC_WARN_UNUSED_RESULT char *vhdx_parent_linkage_text (const VhdxGuid *data_write_guid);

/*
 * The parent locator item of @locator, entries in its order: the VHDX
 * locator type, the key/value table, then each key and value in UTF-16LE.
 * VHDX_ERROR_NOT_SUPPORTED when a key or value is empty, longer than a
 * 16-bit length can say, or not UTF-8, or the item would exceed 1 MiB.
 */
G_GNUC_WARN_UNUSED_RESULT GBytes *vhdx_parent_locator_encode (GPtrArray *locator, GError **error);

/*
 * The path of @parent_path relative to the directory of @child_path, with
 * slashes ("base.vhdx", "../disks/base.vhdx"): both are made absolute
 * (against the working directory) and cleaned of "." and ".." first.
 */
G_GNUC_WARN_UNUSED_RESULT char *vhdx_parent_relative_path (const char *child_path,
                                                           const char *parent_path);

/*
 * The paths to try for the parent, in order: @explicit_path if given, else
 * relative_path (backslashes made slashes) relative to the directory of
 * @child_path; then the file names of relative_path, absolute_win32_path and
 * volume_path in that directory, in the "Virtual Hard Disks" and "Snapshots"
 * folders beside it (where a Hyper-V export keeps disks and checkpoints),
 * and in each of @parent_dirs (NULL-terminated, may be NULL).  A name that
 * no file has exactly is matched without regard to case.  Duplicates are
 * dropped.  A @child_path that is a URI ("scheme://...") has no directory:
 * only @parent_dirs are looked in.
 */
G_GNUC_WARN_UNUSED_RESULT GPtrArray *vhdx_parent_candidates (GPtrArray *locator,
                                                             const char *child_path,
                                                             const char *explicit_path,
                                                             const char *const *parent_dirs);

G_END_DECLS
