/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Counting the heap: a test program that links test-alloc.c has malloc and
 * friends counted, so that it can assert how much memory an operation takes
 * at its peak.  GLib 2.74 has no memory vtable any more, so the C library's
 * allocator is wrapped instead.  Not available under AddressSanitizer or
 * ThreadSanitizer, which bring their own allocators.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* FALSE when allocations are not counted (sanitizer builds). */
gboolean test_alloc_available (void);
/* Bytes allocated now, and the most since the last test_alloc_reset_peak(). */
gsize test_alloc_current (void);
gsize test_alloc_peak (void);
void test_alloc_reset_peak (void);

G_END_DECLS
