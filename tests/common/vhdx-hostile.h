/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Crafted images that claim the most the format allows, or logs shaped to
 * make a scan expensive: the inputs of the bounds tests and of the benchmark
 * that times opening them.  Each is a small image of the generator, patched;
 * what it claims is sparse and costs no disk space.
 */
#pragma once

#include <glib.h>

#include "vhdx-gen.h"

G_BEGIN_DECLS

typedef enum {
        /* A 64 TiB disk with 1 MiB blocks: a 513 MiB BAT region, a hole. */
        VHDX_HOSTILE_HUGE_DISK,
        /* 2047 region entries and 2047 metadata entries. */
        VHDX_HOSTILE_FULL_TABLES,
        /* A dirty log longer than VHDX_LOG_MAX_LENGTH. */
        VHDX_HOSTILE_LOG_TOO_LONG,
        /* The longest log allowed, one entry full of data descriptors. */
        VHDX_HOSTILE_LOG_FULL,
        /* A 16 MiB log of 4095 valid entries in sequence without a valid head. */
        VHDX_HOSTILE_LOG_LONG_CHAIN,
        /* A 16 MiB log with an entry header at every sector, each claiming the rest. */
        VHDX_HOSTILE_LOG_OVERLAPPING,
        VHDX_HOSTILE_N_KINDS,
} VhdxHostileKind;

/* What a crafted image is, for the tests' expectations. */
typedef struct {
        VhdxGenLayout layout;
        guint32 log_length; /* the log the header describes */
        guint64 log_target; /* LOG_FULL: the first file offset its data descriptors write */
        guint log_writes;   /* LOG_FULL: data descriptors (4 KiB each, 0x5a bytes) */
} VhdxHostileImage;

/* The kind's name ("huge-disk", "log-long-chain", ...), or NULL. */
const char *vhdx_hostile_kind_name (VhdxHostileKind kind);
/* The kind named @name, or VHDX_HOSTILE_N_KINDS. */
VhdxHostileKind vhdx_hostile_kind_from_name (const char *name);

/* Write the crafted image @kind to @path. */
G_GNUC_WARN_UNUSED_RESULT gboolean vhdx_hostile_write (VhdxHostileKind kind,
                                                       const char *path,
                                                       VhdxHostileImage *image,
                                                       GError **error);

G_END_DECLS
