/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-spawn: time programs as processes, for the benchmarks.
 *
 *   bench-spawn ROUNDS PROGRAM ARGS...
 *       runs the command ROUNDS times and prints the median and the smallest
 *       wall time and the largest peak RSS (wait4) as one line of JSON
 *   bench-spawn --each LIST PROGRAM ARGS...
 *       runs the command once per line of LIST, with "{}" in ARGS replaced by
 *       the line, and prints the total wall time
 *   bench-spawn --status N ROUNDS PROGRAM ARGS...
 *       as the first form, for a command that must exit with status N (a
 *       command timed refusing an image)
 *
 * Standard output and standard error of the command go to /dev/null; a
 * command that exits with another status fails the whole run.  This program is small and uses only
 * libc on purpose: a forked child's peak RSS starts from its parent's.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double
now (void)
{
        struct timespec ts;

        clock_gettime (CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* The exit status every run must have. */
static int expected_status = 0;

/* Runs @argv; returns its wall time and stores its peak RSS in KiB. */
static double
run (char **argv, long *max_rss_kib)
{
        struct rusage usage;
        double t = now ();
        int status;
        pid_t pid = fork ();

        if (pid < 0) {
                perror ("bench-spawn: fork");
                exit (1);
        }
        if (pid == 0) {
                int null = open ("/dev/null", O_WRONLY);

                if (null >= 0) {
                        dup2 (null, 1);
                        if (expected_status != 0)
                                dup2 (null, 2);
                }
                execvp (argv[0], argv);
                fprintf (stderr, "bench-spawn: %s: %s\n", argv[0], strerror (errno));
                _exit (127);
        }
        while (wait4 (pid, &status, 0, &usage) < 0) {
                if (errno != EINTR) {
                        perror ("bench-spawn: wait4");
                        exit (1);
                }
        }
        t = now () - t;
        if (!WIFEXITED (status) || WEXITSTATUS (status) != expected_status) {
                fprintf (stderr, "bench-spawn: %s failed (status %d)\n", argv[0], status);
                exit (1);
        }
        if (usage.ru_maxrss > *max_rss_kib)
                *max_rss_kib = usage.ru_maxrss;
        return t;
}

static int
compare_doubles (const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y;
}

static int
each (const char *list_path, int argc, char **argv)
{
        FILE *list = fopen (list_path, "r");
        char **args = calloc ((size_t) argc + 1, sizeof *args);
        char line[4096];
        long rss = 0;
        double total = 0;
        int n = 0;

        if (list == NULL || args == NULL) {
                fprintf (stderr, "bench-spawn: %s: %s\n", list_path, strerror (errno));
                return 1;
        }
        while (fgets (line, sizeof line, list) != NULL) {
                line[strcspn (line, "\n")] = '\0';
                if (line[0] == '\0')
                        continue;
                for (int i = 0; i < argc; i++)
                        args[i] = strcmp (argv[i], "{}") == 0 ? line : argv[i];
                total += run (args, &rss);
                n++;
        }
        fclose (list);
        printf ("{\"runs\": %d, \"total\": %.6f, \"max_rss_kib\": %ld}\n", n, total, rss);
        free (args);
        return 0;
}

int
main (int argc, char **argv)
{
        double *times;
        long rss = 0;
        int rounds;

        if (argc >= 4 && strcmp (argv[1], "--each") == 0)
                return each (argv[2], argc - 3, argv + 3);
        if (argc >= 3 && strcmp (argv[1], "--status") == 0) {
                expected_status = atoi (argv[2]);
                argc -= 2;
                argv += 2;
        }
        if (argc < 3 || (rounds = atoi (argv[1])) < 1) {
                fprintf (stderr, "usage: bench-spawn [--status N] ROUNDS PROGRAM ARGS...\n"
                                 "       bench-spawn --each LIST PROGRAM ARGS...\n");
                return 1;
        }
        times = calloc ((size_t) rounds, sizeof *times);
        if (times == NULL)
                return 1;
        for (int i = 0; i < rounds; i++)
                times[i] = run (argv + 2, &rss);
        qsort (times, (size_t) rounds, sizeof *times, compare_doubles);
        printf ("{\"runs\": %d, \"median\": %.6f, \"min\": %.6f, \"max_rss_kib\": %ld}\n", rounds,
                rounds % 2 ? times[rounds / 2] : (times[rounds / 2 - 1] + times[rounds / 2]) / 2,
                times[0], rss);
        free (times);
        return 0;
}
