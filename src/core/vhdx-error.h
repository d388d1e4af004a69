/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * VHDX_ERROR:
 *
 * Error domain for VHDX format errors.  Errors in this domain come from
 * the [enum@Vhdx.Error] enumeration.  Failures of the underlying file stay
 * in the `G_IO_ERROR` domain.
 *
 * Since: 0.1
 */
#define VHDX_ERROR (vhdx_error_quark ())

/**
 * VhdxError:
 * @VHDX_ERROR_INVALID: a structure is corrupt or inconsistent
 * @VHDX_ERROR_CHECKSUM: a structure's CRC-32C does not match its contents
 * @VHDX_ERROR_NOT_SUPPORTED: the image uses a feature this version cannot handle
 * @VHDX_ERROR_TRUNCATED: the file ends before a structure it must contain
 * @VHDX_ERROR_PARENT_NOT_FOUND: the parent of a differencing image cannot be found
 * @VHDX_ERROR_PARENT_MISMATCH: the parent found is not the one the image was made from
 * @VHDX_ERROR_LOG: the log is corrupt or cannot be replayed
 * @VHDX_ERROR_OUT_OF_RANGE: a request lies outside the virtual disk
 *
 * Error codes in the `VHDX_ERROR` domain.
 *
 * Since: 0.1
 */
typedef enum {
        VHDX_ERROR_INVALID,
        VHDX_ERROR_CHECKSUM,
        VHDX_ERROR_NOT_SUPPORTED,
        VHDX_ERROR_TRUNCATED,
        VHDX_ERROR_PARENT_NOT_FOUND,
        VHDX_ERROR_PARENT_MISMATCH,
        VHDX_ERROR_LOG,
        VHDX_ERROR_OUT_OF_RANGE,
} VhdxError;

GQuark vhdx_error_quark (void);

G_END_DECLS
