/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxInputStream, a seekable GInputStream over the virtual disk. */
#pragma once

#include <gio/gio.h>

#include "vhdx-image.h"

G_BEGIN_DECLS

#define VHDX_TYPE_INPUT_STREAM (vhdx_input_stream_get_type ())

G_DECLARE_FINAL_TYPE (VhdxInputStream, vhdx_input_stream, VHDX, INPUT_STREAM, GInputStream)

VhdxImage *vhdx_input_stream_get_image (VhdxInputStream *self);

G_END_DECLS
