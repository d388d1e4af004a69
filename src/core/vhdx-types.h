/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Plain enumerations shared by the engine and everything above it. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
        VHDX_DISK_TYPE_FIXED,
        VHDX_DISK_TYPE_DYNAMIC,
        VHDX_DISK_TYPE_DIFFERENCING,
} VhdxDiskType;

typedef enum {
        VHDX_LOG_STATE_CLEAN,
        VHDX_LOG_STATE_REPLAYED_IN_MEMORY,
        VHDX_LOG_STATE_REPLAYED,
} VhdxLogState;

typedef enum {
        VHDX_OPEN_FLAGS_NONE = 0,
        VHDX_OPEN_FLAGS_READ_WRITE = 1 << 0,
} VhdxOpenFlags;

typedef enum {
        VHDX_SEVERITY_WARNING,
        VHDX_SEVERITY_ERROR,
} VhdxSeverity;

const char *vhdx_disk_type_to_string (VhdxDiskType type);
const char *vhdx_log_state_to_string (VhdxLogState state);
const char *vhdx_severity_to_string (VhdxSeverity severity);

G_END_DECLS
