/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "vhdx-extent.h"
#include "vhdx-reader.h"

G_BEGIN_DECLS

G_GNUC_WARN_UNUSED_RESULT VhdxExtent *vhdx_extent_new (const VhdxMapExtent *map_extent);

G_END_DECLS
