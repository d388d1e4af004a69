/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The names of the engine's enumerations, as the tools print them. */
#include "vhdx-types.h"

const char *
vhdx_disk_type_to_string (VhdxDiskType type)
{
        switch (type) {
        case VHDX_DISK_TYPE_FIXED:
                return "fixed";
        case VHDX_DISK_TYPE_DYNAMIC:
                return "dynamic";
        case VHDX_DISK_TYPE_DIFFERENCING:
                return "differencing";
        default:
                return "unknown";
        }
}

const char *
vhdx_log_state_to_string (VhdxLogState state)
{
        switch (state) {
        case VHDX_LOG_STATE_CLEAN:
                return "clean";
        case VHDX_LOG_STATE_REPLAYED_IN_MEMORY:
                return "replayed-in-memory";
        case VHDX_LOG_STATE_REPLAYED:
                return "replayed";
        default:
                return "unknown";
        }
}

const char *
vhdx_severity_to_string (VhdxSeverity severity)
{
        return severity == VHDX_SEVERITY_ERROR ? "error" : "warning";
}
