/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the engine's parsers. */
#pragma once

#include <glib.h>
#include <glib/gi18n-lib.h>
#include <inttypes.h>

#include "vhdx-error.h"

G_BEGIN_DECLS

/*
 * Set a VHDX_ERROR whose message reads "STRUCTURE at offset N: DETAILS", so
 * every error says what is wrong and where.
 */
void vhdx_set_error (GError **error,
                     VhdxError code,
                     const char *structure,
                     guint64 offset,
                     const char *format,
                     ...) G_GNUC_PRINTF (5, 6);

G_END_DECLS
