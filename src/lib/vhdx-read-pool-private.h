/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The worker threads that run the library's asynchronous reads. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

void vhdx_read_pool_run (GTask *task, GTaskThreadFunc func);

G_END_DECLS
