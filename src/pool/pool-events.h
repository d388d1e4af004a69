/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt's event loop on GLib's default main context: once registered,
 * libvirt's file handles and timers are GSources of that context, so that
 * the application's GMainLoop dispatches libvirt's event and close
 * callbacks in its own thread, next to its other sources.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

void pool_events_register (void);
void pool_events_flush (void);

G_END_DECLS
