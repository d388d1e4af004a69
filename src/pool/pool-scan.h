/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What libvirt says about the volumes of a pool, next to what the VHDX
 * images among them really are.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <libvirt/libvirt.h>

#include <vhdx.h>

G_BEGIN_DECLS

/* What libvirt gets wrong about a volume that is a VHDX image. */
typedef enum {
        POOL_MISMATCH_FORMAT = 1 << 0,
        POOL_MISMATCH_CAPACITY = 1 << 1,
        POOL_MISMATCH_ALLOCATION = 1 << 2,
} PoolMismatch;

typedef struct {
        char *path;
        /* The pool and the volume that the parent is, or NULL. */
        char *pool;
        char *volume;
        /* The parent cannot be found: path is the one its child's locator names. */
        gboolean missing;
} PoolParent;

typedef struct {
        char *name;
        char *path;

        /* What libvirt says. */
        char *libvirt_format;
        guint64 libvirt_capacity;
        guint64 libvirt_allocation;

        /* What the volume is: for a volume that is not a VHDX image, what
         * libvirt says. */
        gboolean is_vhdx;
        char *format;
        guint64 virtual_size;
        guint64 allocated_size;
        guint64 file_size;
        gboolean details_known;
        VhdxDiskType disk_type;
        VhdxLogState log_state;
        gboolean in_use;    /* another process writes it */
        GPtrArray *parents; /* of PoolParent, nearest first */
        PoolMismatch mismatches;

        /* Why the volume could not be inspected, or NULL. */
        char *error;
} PoolVolume;

void pool_volume_free (PoolVolume *volume);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PoolVolume, pool_volume_free)

G_GNUC_WARN_UNUSED_RESULT
gboolean pool_file_is_vhdx (const char *path, gboolean *is_vhdx, GError **error);

G_GNUC_WARN_UNUSED_RESULT
GPtrArray *pool_scan (virConnectPtr conn, virStoragePoolPtr pool, GError **error);

G_GNUC_WARN_UNUSED_RESULT
JsonNode *pool_volumes_to_json (GPtrArray *volumes);
void pool_volumes_print_table (GPtrArray *volumes);

const char *pool_enum_nick (GType type, int value);

G_END_DECLS
