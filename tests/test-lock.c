/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Image locking between processes: a holder process keeps an image open
 * (for reading or writing, through the engine or as qemu-nbd) while this one
 * tries to open it; QEMU's qemu-img and qemu-io are the other side's oracle.
 */
#include "config.h"

#include "test-util.h"
#include "vhdx-create.h"
#include "vhdx-writer.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (G_GUINT64_CONSTANT (1) << 20)

static void
make_image (const char *path, const char *parent)
{
        g_autoptr (GError) error = NULL;
        VhdxCreateParams params = { .disk_type = VHDX_DISK_TYPE_DYNAMIC, .virtual_size = 8 * MiB };
        int fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        g_autoptr (VhdxIo) io = NULL;
        g_autoptr (VhdxCreator) creator = NULL;

        g_assert_cmpint (fd, >=, 0);
        if (parent != NULL) {
                g_autoptr (VhdxFile) p = test_open_path (parent, &error);
                g_assert_no_error (error);
                params.disk_type = VHDX_DISK_TYPE_DIFFERENCING;
                params.parent_data_write_guid = vhdx_file_get_info (p)->data_write_guid;
                params.parent_relative_path = "base.vhdx";
        }
        io = vhdx_io_new_fd (fd, TRUE);
        creator = vhdx_creator_new (io, &params, &error);
        g_assert_no_error (error);
        test_assert_ok (vhdx_creator_finish (creator, &error), error);
}

static VhdxFile *
try_open (const char *path, VhdxOpenFlags flags, GError **error)
{
        VhdxOpenOptions options = { .path = path };
        VhdxIo *io = vhdx_io_open_path (path, flags & VHDX_OPEN_FLAGS_READ_WRITE, error);

        return io != NULL ? vhdx_file_open_full (io, flags, &options, error) : NULL;
}

/* A process that holds an image open until released. */
typedef struct {
        GPid pid;
        int release; /* closing it ends the holder */
} Holder;

static Holder
hold (const char *path, VhdxOpenFlags flags)
{
        int ready[2], release[2];
        Holder h;
        char c;

        g_assert_cmpint (pipe (ready), ==, 0);
        g_assert_cmpint (pipe (release), ==, 0);
        h.pid = fork ();
        g_assert_cmpint (h.pid, >=, 0);
        if (h.pid == 0) {
                g_autoptr (GError) error = NULL;
                VhdxFile *file;

                close (ready[0]);
                close (release[1]);
                file = try_open (path, flags, &error);
                if (file == NULL) {
                        g_printerr ("holder: %s\n", error->message);
                        _exit (1);
                }
                if (write (ready[1], "r", 1) != 1)
                        _exit (1);
                while (read (release[0], &c, 1) > 0)
                        ;
                vhdx_file_free (file);
                _exit (0);
        }
        close (ready[1]);
        close (release[0]);
        g_assert_cmpint (read (ready[0], &c, 1), ==, 1);
        close (ready[0]);
        h.release = release[1];
        return h;
}

static void
release (Holder *h)
{
        int status;

        close (h->release);
        g_assert_cmpint (waitpid (h->pid, &status, 0), ==, h->pid);
        g_assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
}

static void
assert_busy (const char *path, VhdxOpenFlags flags)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = try_open (path, flags, &error);

        g_assert_null (file);
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BUSY);
}

static void
assert_opens (const char *path, VhdxOpenFlags flags, gboolean written_elsewhere)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = try_open (path, flags, &error);

        g_assert_no_error (error);
        g_assert_nonnull (file);
        g_assert_cmpint (vhdx_file_get_info (file)->written_elsewhere, ==, written_elsewhere);
}

static void
test_two_writers (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "disk.vhdx", NULL);
        Holder writer;

        make_image (path, NULL);
        writer = hold (path, VHDX_OPEN_FLAGS_READ_WRITE);
        assert_busy (path, VHDX_OPEN_FLAGS_READ_WRITE);
        /* A reader is refused too, and reads anyway with force-share. */
        assert_busy (path, VHDX_OPEN_FLAGS_NONE);
        assert_opens (path, VHDX_OPEN_FLAGS_FORCE_SHARE, TRUE);
        release (&writer);
        assert_opens (path, VHDX_OPEN_FLAGS_READ_WRITE, FALSE);
        test_tmpdir_free (g_steal_pointer (&dir));
}

static void
test_readers (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "disk.vhdx", NULL);
        Holder reader;

        make_image (path, NULL);
        reader = hold (path, VHDX_OPEN_FLAGS_NONE);
        /* Readers share; a writer waits for them. */
        assert_opens (path, VHDX_OPEN_FLAGS_NONE, FALSE);
        assert_busy (path, VHDX_OPEN_FLAGS_READ_WRITE);
        assert_opens (path, VHDX_OPEN_FLAGS_FORCE_SHARE, FALSE);
        release (&reader);
        assert_opens (path, VHDX_OPEN_FLAGS_READ_WRITE, FALSE);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* Two opens of one process are two open files: they conflict as well. */
static void
test_same_process (void)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "disk.vhdx", NULL);

        make_image (path, NULL);
        {
                g_autoptr (VhdxFile) writer = try_open (path, VHDX_OPEN_FLAGS_READ_WRITE, &error);
                g_assert_no_error (error);
                assert_busy (path, VHDX_OPEN_FLAGS_NONE);
                /* Closed, it only reads: others may read too. */
                test_assert_ok (vhdx_file_close (writer, &error), error);
                assert_opens (path, VHDX_OPEN_FLAGS_NONE, FALSE);
                assert_busy (path, VHDX_OPEN_FLAGS_READ_WRITE);
        }
        assert_opens (path, VHDX_OPEN_FLAGS_READ_WRITE, FALSE);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* The kernel drops the locks of a process that dies. */
static void
test_killed (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *path = g_build_filename (dir, "disk.vhdx", NULL);
        Holder writer;
        int status;

        make_image (path, NULL);
        writer = hold (path, VHDX_OPEN_FLAGS_READ_WRITE);
        assert_busy (path, VHDX_OPEN_FLAGS_NONE);
        g_assert_cmpint (kill (writer.pid, SIGKILL), ==, 0);
        g_assert_cmpint (waitpid (writer.pid, &status, 0), ==, writer.pid);
        g_assert_true (WIFSIGNALED (status));
        close (writer.release);
        assert_opens (path, VHDX_OPEN_FLAGS_READ_WRITE, FALSE);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* The parents of a chain being written are locked shared: nobody writes them. */
static void
test_parents (void)
{
        g_autofree char *dir = test_tmpdir_new ();
        g_autofree char *base = g_build_filename (dir, "base.vhdx", NULL);
        g_autofree char *child = g_build_filename (dir, "child.avhdx", NULL);
        Holder writer;

        make_image (base, NULL);
        make_image (child, base);
        writer = hold (child, VHDX_OPEN_FLAGS_READ_WRITE);
        assert_busy (base, VHDX_OPEN_FLAGS_READ_WRITE);
        assert_opens (base, VHDX_OPEN_FLAGS_NONE, FALSE);
        release (&writer);
        assert_opens (base, VHDX_OPEN_FLAGS_READ_WRITE, FALSE);
        test_tmpdir_free (g_steal_pointer (&dir));
}

/* QEMU. */

static int
run_status (const char *const *argv, char **err)
{
        g_autoptr (GError) error = NULL;
        int status;

        /* What QEMU prints is no part of the test's TAP output. */
        test_assert_ok (g_spawn_sync (NULL, (char **) argv, NULL,
                                      G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                                      NULL, err, &status, &error),
                        error);
        return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/* qemu-nbd --fork returns once the image is open (and locked) and the
 * server runs; the pid file names the server. */
static GPid
start_qemu_nbd (const char *sock, const char *path, gboolean read_only)
{
        g_autofree char *pidfile = g_strconcat (sock, ".pid", NULL);
        g_autofree char *contents = NULL;
        g_autofree char *err = NULL;
        g_autoptr (GError) error = NULL;
        const char *argv[] = { "qemu-nbd", "--fork", "--pid-file", pidfile, "-f", "vhdx",
                               "-k",       sock,     path,         NULL,    NULL };
        int status;

        if (read_only) {
                argv[8] = "-r";
                argv[9] = path;
        }
        test_assert_ok (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                                      NULL, &err, &status, &error),
                        error);
        if (!g_spawn_check_wait_status (status, NULL))
                g_error ("qemu-nbd did not start: %s", err);
        test_assert_ok (g_file_get_contents (pidfile, &contents, NULL, &error), error);
        return (GPid) g_ascii_strtoll (contents, NULL, 10);
}

/* Whether a process that is not our child still runs (a zombie does not:
 * whoever adopted it may never reap it). */
static gboolean
running (GPid pid)
{
        g_autofree char *path = g_strdup_printf ("/proc/%d/stat", (int) pid);
        g_autofree char *stat = NULL;
        const char *end;

        if (!g_file_get_contents (path, &stat, NULL, NULL))
                return kill (pid, 0) == 0;
        end = strrchr (stat, ')');
        return end == NULL || (end[1] == ' ' && end[2] != 'Z' && end[2] != 'X');
}

static void
stop (GPid pid, const char *sock)
{
        guint i;

        /* Not our child: ask it to go, and count the wait.  qemu-nbd ignores
         * a SIGTERM that comes before its main loop runs, which may be after
         * --fork returned: ask again now and then. */
        for (i = 0; i < 6000 && running (pid); i++) {
                if (i % 50 == 0)
                        g_assert_true (kill (pid, SIGTERM) == 0 || errno == ESRCH);
                g_usleep (10 * 1000);
        }
        g_assert_cmpint (i, <, 6000);
        g_unlink (sock);
}

static void
test_qemu (void)
{
        g_autofree char *dir = NULL;
        g_autofree char *path = NULL;
        g_autofree char *sock = NULL;
        Holder holder;
        GPid qemu;

        if (!test_have_program ("qemu-nbd") || !test_have_program ("qemu-img") ||
            !test_have_program ("qemu-io")) {
                g_test_skip ("qemu-nbd, qemu-img or qemu-io is not installed: QEMU is the oracle");
                return;
        }
        dir = test_tmpdir_new ();
        path = g_build_filename (dir, "disk.vhdx", NULL);
        sock = g_build_filename (dir, "nbd.sock", NULL);
        make_image (path, NULL);

        /* QEMU writes: we neither read nor write, but read with force-share. */
        qemu = start_qemu_nbd (sock, path, FALSE);
        assert_busy (path, VHDX_OPEN_FLAGS_NONE);
        assert_busy (path, VHDX_OPEN_FLAGS_READ_WRITE);
        assert_opens (path, VHDX_OPEN_FLAGS_FORCE_SHARE, TRUE);
        stop (qemu, sock);

        /* QEMU reads: we read, but do not write. */
        qemu = start_qemu_nbd (sock, path, TRUE);
        assert_opens (path, VHDX_OPEN_FLAGS_NONE, FALSE);
        assert_busy (path, VHDX_OPEN_FLAGS_READ_WRITE);
        stop (qemu, sock);

        /* We write: QEMU neither reads nor writes, but reads with -U. */
        holder = hold (path, VHDX_OPEN_FLAGS_READ_WRITE);
        {
                g_autofree char *err = NULL;
                const char *info[] = { "qemu-img", "info", path, NULL };
                const char *shared[] = { "qemu-img", "info", "-U", path, NULL };
                const char *write[] = { "qemu-io", "-f", "vhdx", "-c", "write 0 4k", path, NULL };

                g_assert_cmpint (run_status (info, &err), !=, 0);
                g_assert_nonnull (strstr (err, "Failed to get shared \"write\" lock"));
                g_clear_pointer (&err, g_free);
                g_assert_cmpint (run_status (shared, &err), ==, 0);
                g_clear_pointer (&err, g_free);
                g_assert_cmpint (run_status (write, &err), !=, 0);
                g_assert_nonnull (strstr (err, "lock"));
        }
        release (&holder);

        /* We read: QEMU reads, but does not write. */
        holder = hold (path, VHDX_OPEN_FLAGS_NONE);
        {
                g_autofree char *err = NULL;
                const char *info[] = { "qemu-img", "info", path, NULL };
                const char *write[] = { "qemu-io", "-f", "vhdx", "-c", "write 0 4k", path, NULL };

                g_assert_cmpint (run_status (info, &err), ==, 0);
                g_clear_pointer (&err, g_free);
                g_assert_cmpint (run_status (write, &err), !=, 0);
                g_assert_nonnull (strstr (err, "Failed to get \"write\" lock"));
        }
        release (&holder);
        test_tmpdir_free (g_steal_pointer (&dir));
}

int
main (int argc, char **argv)
{
        g_test_init (&argc, &argv, NULL);
        g_test_add_func ("/lock/two-writers", test_two_writers);
        g_test_add_func ("/lock/readers", test_readers);
        g_test_add_func ("/lock/same-process", test_same_process);
        g_test_add_func ("/lock/killed", test_killed);
        g_test_add_func ("/lock/parents", test_parents);
        g_test_add_func ("/lock/qemu", test_qemu);
        return g_test_run ();
}
