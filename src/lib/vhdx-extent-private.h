/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Making a VhdxExtent from the engine's extent. */
#pragma once

#include "vhdx-extent.h"
#include "vhdx-map.h"

G_BEGIN_DECLS

G_GNUC_WARN_UNUSED_RESULT VhdxExtent *vhdx_extent_new (const VhdxMapExtent *map_extent);

G_END_DECLS
