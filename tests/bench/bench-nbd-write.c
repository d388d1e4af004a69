/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The NBD client of the write benchmarks: the same libnbd writer for every
 * server measured (our plugin, qemu-nbd, nbdkit's file plugin), keeping
 * several requests in flight on each connection, and printing one line of
 * JSON with the seconds from the first request to the end of the last
 * flush.
 *
 *   bench-nbd-write URI fill OFFSET LENGTH REQUEST [CONNECTIONS]
 *       sequential writes of REQUEST bytes over [OFFSET, OFFSET + LENGTH),
 *       split between CONNECTIONS connections (default 1), each writing its
 *       own part at once; one flush at the end
 *   bench-nbd-write URI random COUNT SPAN SEED [FLUSH_EVERY]
 *       COUNT random 4 KiB writes at 4 KiB-aligned offsets below SPAN; a
 *       flush after every FLUSH_EVERY writes (waiting for those in flight
 *       first) and at the end
 */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IN_FLIGHT 16
#define SMALL     4096

static void
die (const char *what)
{
        fprintf (stderr, "bench-nbd-write: %s: %s\n", what, nbd_get_error ());
        exit (1);
}

static double
now (void)
{
        struct timespec ts;

        clock_gettime (CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static struct nbd_handle *
connect_to (const char *uri)
{
        struct nbd_handle *nbd = nbd_create ();

        if (nbd == NULL || nbd_connect_uri (nbd, uri) == -1)
                die ("connect");
        return nbd;
}

/* Wait until fewer than @limit commands are in flight. */
static void
drain (struct nbd_handle *nbd, int limit)
{
        while (nbd_aio_in_flight (nbd) >= limit) {
                if (nbd_poll (nbd, -1) == -1)
                        die ("poll");
        }
}

static void
check_completed (struct nbd_handle *nbd)
{
        int64_t cookie;

        while ((cookie = nbd_aio_peek_command_completed (nbd)) > 0) {
                if (nbd_aio_command_completed (nbd, (uint64_t) cookie) == -1)
                        die ("write");
        }
}

static void
flush_all (struct nbd_handle *nbd)
{
        drain (nbd, 1);
        check_completed (nbd);
        if (nbd_flush (nbd, 0) == -1)
                die ("flush");
}

typedef struct {
        const char *uri;
        uint64_t offset;
        uint64_t length;
        size_t request;
} Part;

static void *
fill_part (void *data)
{
        Part *p = data;
        struct nbd_handle *nbd = connect_to (p->uri);
        char *buf = malloc (p->request);

        /* Not zeros, which a server could detect. */
        for (size_t i = 0; i < p->request; i++)
                buf[i] = (char) (i * 131 + 7);
        for (uint64_t at = 0; at < p->length; at += p->request) {
                size_t n = (size_t) (p->length - at < p->request ? p->length - at : p->request);
                drain (nbd, IN_FLIGHT);
                check_completed (nbd);
                if (nbd_aio_pwrite (nbd, buf, n, p->offset + at, NBD_NULL_COMPLETION, 0) == -1)
                        die ("pwrite");
        }
        flush_all (nbd);
        nbd_close (nbd);
        free (buf);
        return NULL;
}

static void
run_fill (const char *uri, uint64_t offset, uint64_t length, size_t request, int connections)
{
        pthread_t threads[64];
        Part parts[64];
        uint64_t share = length / (uint64_t) connections;
        double start;

        for (int i = 0; i < connections; i++)
                parts[i] = (Part){ uri, offset + share * (uint64_t) i, share, request };
        start = now ();
        for (int i = 0; i < connections; i++)
                pthread_create (&threads[i], NULL, fill_part, &parts[i]);
        for (int i = 0; i < connections; i++)
                pthread_join (threads[i], NULL);
        printf ("{\"seconds\": %.6f, \"bytes\": %" PRIu64 ", \"connections\": %d}\n",
                now () - start, length, connections);
}

static void
run_random (const char *uri, uint64_t count, uint64_t span, unsigned seed, uint64_t flush_every)
{
        struct nbd_handle *nbd = connect_to (uri);
        static char buf[SMALL];
        uint64_t slots = span / SMALL, state = seed * 2654435761u + 1;
        double start;

        for (size_t i = 0; i < sizeof buf; i++)
                buf[i] = (char) (i * 37 + seed);
        start = now ();
        for (uint64_t i = 0; i < count; i++) {
                /* xorshift: the same offsets for every server. */
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                drain (nbd, IN_FLIGHT);
                check_completed (nbd);
                if (nbd_aio_pwrite (nbd, buf, SMALL, (state % slots) * SMALL, NBD_NULL_COMPLETION,
                                    0) == -1)
                        die ("pwrite");
                if (flush_every > 0 && (i + 1) % flush_every == 0)
                        flush_all (nbd);
        }
        flush_all (nbd);
        printf ("{\"seconds\": %.6f, \"writes\": %" PRIu64 "}\n", now () - start, count);
        nbd_close (nbd);
}

int
main (int argc, char **argv)
{
        if (argc >= 6 && strcmp (argv[2], "fill") == 0) {
                int connections = argc >= 7 ? atoi (argv[6]) : 1;
                if (connections < 1 || connections > 64)
                        return 2;
                run_fill (argv[1], strtoull (argv[3], NULL, 0), strtoull (argv[4], NULL, 0),
                          (size_t) strtoull (argv[5], NULL, 0), connections);
                return 0;
        }
        if (argc >= 6 && strcmp (argv[2], "random") == 0) {
                run_random (argv[1], strtoull (argv[3], NULL, 0), strtoull (argv[4], NULL, 0),
                            (unsigned) strtoul (argv[5], NULL, 0),
                            argc >= 7 ? strtoull (argv[6], NULL, 0) : 0);
                return 0;
        }
        fprintf (stderr, "usage: bench-nbd-write URI fill OFFSET LENGTH REQUEST [CONNECTIONS]\n"
                         "       bench-nbd-write URI random COUNT SPAN SEED [FLUSH_EVERY]\n");
        return 2;
}
