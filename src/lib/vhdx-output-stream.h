/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxOutputStream, a seekable GOutputStream over the virtual disk. */
#pragma once

#include <gio/gio.h>

#include "vhdx-image.h"

G_BEGIN_DECLS

#define VHDX_TYPE_OUTPUT_STREAM (vhdx_output_stream_get_type ())

G_DECLARE_FINAL_TYPE (VhdxOutputStream, vhdx_output_stream, VHDX, OUTPUT_STREAM, GOutputStream)

VhdxImage *vhdx_output_stream_get_image (VhdxOutputStream *self);

G_END_DECLS
