/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "test-alloc.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TEST_ALLOC_DISABLED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
        __has_feature(memory_sanitizer)
#define TEST_ALLOC_DISABLED 1
#endif
#endif

#ifdef TEST_ALLOC_DISABLED

gboolean
test_alloc_available (void)
{
        return FALSE;
}

gsize
test_alloc_current (void)
{
        return 0;
}

gsize
test_alloc_peak (void)
{
        return 0;
}

void
test_alloc_reset_peak (void)
{
}

#else

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>

/* glibc's own entry points, which the definitions below wrap. */
extern void *__libc_malloc (size_t size);
extern void *__libc_calloc (size_t n, size_t size);
extern void *__libc_realloc (void *p, size_t size);
extern void *__libc_memalign (size_t alignment, size_t size);
extern void __libc_free (void *p);

/* Signed: a block that the C library allocated for itself before main() may
 * be freed through free() without having been counted. */
static gint64 current_bytes;
static gint64 peak_bytes;

static void
count_alloc (void *p)
{
        gint64 now;

        if (p == NULL)
                return;
        now = __atomic_add_fetch (&current_bytes, (gint64) malloc_usable_size (p),
                                  __ATOMIC_RELAXED);
        /* A lost race only makes the peak a little low, never a failure. */
        if (now > __atomic_load_n (&peak_bytes, __ATOMIC_RELAXED))
                __atomic_store_n (&peak_bytes, now, __ATOMIC_RELAXED);
}

static void
count_free (void *p)
{
        if (p != NULL)
                __atomic_sub_fetch (&current_bytes, (gint64) malloc_usable_size (p),
                                    __ATOMIC_RELAXED);
}

void *malloc (size_t size);
void *calloc (size_t n, size_t size);
void *realloc (void *p, size_t size);
void free (void *p);
void *memalign (size_t alignment, size_t size);
int posix_memalign (void **out, size_t alignment, size_t size);
void *aligned_alloc (size_t alignment, size_t size);

void *
malloc (size_t size)
{
        void *p = __libc_malloc (size);

        count_alloc (p);
        return p;
}

void *
calloc (size_t n, size_t size)
{
        void *p = __libc_calloc (n, size);

        count_alloc (p);
        return p;
}

void *
realloc (void *p, size_t size)
{
        gint64 old = p != NULL ? (gint64) malloc_usable_size (p) : 0;
        void *q = __libc_realloc (p, size);

        if (q != NULL || size == 0) {
                __atomic_sub_fetch (&current_bytes, old, __ATOMIC_RELAXED);
                count_alloc (q);
        }
        return q;
}

void
free (void *p)
{
        count_free (p);
        __libc_free (p);
}

void *
memalign (size_t alignment, size_t size)
{
        void *p = __libc_memalign (alignment, size);

        count_alloc (p);
        return p;
}

int
posix_memalign (void **out, size_t alignment, size_t size)
{
        void *p = __libc_memalign (alignment, size);

        if (p == NULL)
                return ENOMEM;
        count_alloc (p);
        *out = p;
        return 0;
}

void *
aligned_alloc (size_t alignment, size_t size)
{
        return memalign (alignment, size);
}

gboolean
test_alloc_available (void)
{
        return TRUE;
}

gsize
test_alloc_current (void)
{
        return (gsize) MAX (__atomic_load_n (&current_bytes, __ATOMIC_RELAXED), 0);
}

gsize
test_alloc_peak (void)
{
        return (gsize) MAX (__atomic_load_n (&peak_bytes, __ATOMIC_RELAXED), 0);
}

void
test_alloc_reset_peak (void)
{
        __atomic_store_n (&peak_bytes, __atomic_load_n (&current_bytes, __ATOMIC_RELAXED),
                          __ATOMIC_RELAXED);
}

#endif
