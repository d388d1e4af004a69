/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvhdx: read and write Hyper-V VHDX virtual disk images.
 *
 * Include this header only: #include <vhdx.h>, with the flags of
 * `pkg-config --cflags vhdx-1.0`.
 */
#pragma once

#include "vhdx-enums.h"
#include "vhdx-enum-types.h"
#include "vhdx-extent.h"
#include "vhdx-image.h"
#include "vhdx-input-stream.h"
#include "vhdx-output-stream.h"
#include "vhdx-problem.h"
#include "vhdx-version.h"
