/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The VHDX error domain (its enumeration is public, in vhdx-enums.h). */
#pragma once

#include <glib.h>

/* VHDX_ERROR and VhdxError are public: the library installs their definitions. */
#include "vhdx-enums.h"
