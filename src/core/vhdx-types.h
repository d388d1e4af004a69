/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Plain enumerations shared by the engine and everything above it. */
#pragma once

#include <glib.h>

/* VhdxDiskType, VhdxLogState, VhdxOpenFlags and VhdxSeverity are public:
 * the library installs their definitions. */
#include "vhdx-enums.h"

G_BEGIN_DECLS

const char *vhdx_disk_type_to_string (VhdxDiskType type);
const char *vhdx_log_state_to_string (VhdxLogState state);
const char *vhdx_severity_to_string (VhdxSeverity severity);

G_END_DECLS
