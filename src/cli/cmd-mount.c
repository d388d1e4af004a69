/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx mount and vhdx umount: the file systems inside an image, mounted with libguestfs' guestmount
 * over nbdkit and the plugin, and unmounted again. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib-unix.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>

#include "vhdx-cli.h"

/*
 * Each mount keeps its state in a private directory (mode 0700) under the
 * user's runtime directory, $XDG_RUNTIME_DIR/vhdx/mount-XXXXXX: nbdkit's
 * socket and pid file, guestmount's pid file and, once mounted, the mount
 * point and the image, by which `vhdx umount` finds it.
 *
 * nbdkit serves the image on that socket under its exitwhen filter, which
 * stops it once the read end of a pipe closes and no client is connected;
 * guestmount (and the process it leaves in the background) holds the write
 * end.  So nbdkit stops, closing the image, whoever unmounts: `vhdx umount`,
 * guestunmount, fusermount or a file manager.  The exitlast filter would not
 * do: libguestfs connects once to make its read-only overlay before the
 * appliance connects.
 */
#define STATE_PREFIX        "mount-"
#define SOCKET_NAME         "nbd.sock"
#define NBDKIT_PID_NAME     "nbdkit.pid"
#define GUESTMOUNT_PID_NAME "guestmount.pid"
#define MOUNTPOINT_NAME     "mountpoint"
#define IMAGE_NAME          "image"
#define CREATED_NAME        "created-mountpoint"
/* The descriptor of the pipe in nbdkit and in guestmount. */
#define PIPE_TARGET_FD 3
/* How long umount waits for guestmount and nbdkit to exit after the
 * unmount: the appliance flushes and stops first, slowly when emulated. */
#define STOP_TIMEOUT_SECONDS  600
#define STOP_POLL_INTERVAL_US (50 * 1000)
/* Where the mount points that mount chooses lie, under the home directory,
 * where GNOME shows user mounts (with a button that unmounts them). */
#define DEFAULT_MOUNT_DIR "VHDX"

/* @program's path, or NULL with an error naming the Debian package. */
static char *
find_program (const char *program, const char *package, GError **error)
{
        char *path = g_find_program_in_path (program);

        if (path == NULL)
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                             _ ("mounting needs %s (Debian package %s), which is not installed"),
                             program, package);
        return path;
}

static char *
state_root (void)
{
        return g_build_filename (g_get_user_runtime_dir (), "vhdx", NULL);
}

/* The process of @pid_file when it still runs as part of the mount whose
 * state is in @dir (its command line names the directory), else 0. */
static pid_t
running_process (const char *dir, const char *pid_file)
{
        g_autofree char *path = g_build_filename (dir, pid_file, NULL);
        g_autofree char *text = NULL;
        g_autofree char *cmdline_path = NULL;
        g_autofree char *cmdline = NULL;
        gsize length = 0;
        gint64 pid;

        if (!g_file_get_contents (path, &text, NULL, NULL))
                return 0;
        pid = g_ascii_strtoll (g_strstrip (text), NULL, 10);
        if (pid <= 0 || pid > G_MAXINT)
                return 0;
        cmdline_path = g_strdup_printf ("/proc/%" G_GINT64_FORMAT "/cmdline", pid);
        if (!g_file_get_contents (cmdline_path, &cmdline, &length, NULL))
                return 0;
        /* The arguments are separated by NULs: search each. */
        for (gsize at = 0; at < length; at += strlen (cmdline + at) + 1)
                if (strstr (cmdline + at, dir) != NULL)
                        return (pid_t) pid;
        return 0;
}

static gboolean
mount_processes_gone (const char *dir)
{
        return running_process (dir, GUESTMOUNT_PID_NAME) == 0 &&
               running_process (dir, NBDKIT_PID_NAME) == 0;
}

/* Wait until guestmount and nbdkit of the mount in @dir are gone: only then
 * is the image closed and its lock released. */
static gboolean
wait_for_mount_processes (const char *dir)
{
        gint64 deadline = g_get_monotonic_time () + STOP_TIMEOUT_SECONDS * G_USEC_PER_SEC;

        while (!mount_processes_gone (dir)) {
                if (g_get_monotonic_time () > deadline)
                        return FALSE;
                g_usleep (STOP_POLL_INTERVAL_US);
        }
        return TRUE;
}

static char *
read_state (const char *dir, const char *name)
{
        g_autofree char *path = g_build_filename (dir, name, NULL);
        char *text = NULL;

        if (!g_file_get_contents (path, &text, NULL, NULL))
                return NULL;
        return text;
}

static gboolean
write_state (const char *dir, const char *name, const char *text, GError **error)
{
        g_autofree char *path = g_build_filename (dir, name, NULL);

        return g_file_set_contents_full (path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                         error);
}

/* Remove the state directory @dir, and the mount point that mount made
 * for it (when it is empty: nothing is mounted there). */
static void
remove_state (const char *dir)
{
        g_autoptr (GDir) listing = g_dir_open (dir, 0, NULL);
        g_autofree char *created = read_state (dir, CREATED_NAME);
        const char *name;

        if (created != NULL)
                g_rmdir (created);
        while (listing != NULL && (name = g_dir_read_name (listing)) != NULL) {
                g_autofree char *path = g_build_filename (dir, name, NULL);

                g_unlink (path);
        }
        g_rmdir (dir);
}

/* The state directories of the mounts, mounted or not. */
static GPtrArray *
list_states (void)
{
        g_autofree char *root = state_root ();
        g_autoptr (GDir) listing = g_dir_open (root, 0, NULL);
        GPtrArray *states = g_ptr_array_new_with_free_func (g_free);
        const char *name;

        while (listing != NULL && (name = g_dir_read_name (listing)) != NULL)
                if (g_str_has_prefix (name, STATE_PREFIX))
                        g_ptr_array_add (states, g_build_filename (root, name, NULL));
        return states;
}

/* Forget the mounts that ended without `vhdx umount` (unmounted by a file
 * manager or fusermount, or after a crash): their processes are gone.  A
 * mount still starting has no mount point written yet and is left alone. */
static void
remove_stale_states (void)
{
        g_autoptr (GPtrArray) states = list_states ();

        for (guint i = 0; i < states->len; i++) {
                const char *dir = states->pdata[i];
                g_autofree char *mountpoint = read_state (dir, MOUNTPOINT_NAME);

                if (mountpoint != NULL && mount_processes_gone (dir))
                        remove_state (dir);
        }
}

/* The state directory of the mount at @mountpoint (a canonical path), or NULL. */
static char *
find_state (const char *mountpoint)
{
        g_autoptr (GPtrArray) states = list_states ();

        for (guint i = 0; i < states->len; i++) {
                g_autofree char *recorded = read_state (states->pdata[i], MOUNTPOINT_NAME);

                if (recorded != NULL && g_str_equal (recorded, mountpoint))
                        return g_strdup (states->pdata[i]);
        }
        return NULL;
}

/* Whether something is mounted at @path (a FUSE mount whose process died
 * cannot even be looked at). */
static gboolean
is_mounted (const char *path)
{
        g_autofree char *parent = g_path_get_dirname (path);
        GStatBuf st, parent_st;

        return g_stat (path, &st) != 0 || g_stat (parent, &parent_st) != 0 ||
               st.st_dev != parent_st.st_dev;
}

static gboolean
is_mountpoint_in_use (const char *mountpoint)
{
        g_autoptr (GPtrArray) states = list_states ();

        if (is_mounted (mountpoint))
                return TRUE;
        for (guint i = 0; i < states->len; i++) {
                g_autofree char *recorded = read_state (states->pdata[i], MOUNTPOINT_NAME);

                if (recorded != NULL && g_str_equal (recorded, mountpoint))
                        return TRUE;
        }
        return FALSE;
}

/* A new empty directory named after @image under ~/VHDX, for the mount
 * point that the user did not give. */
static char *
make_default_mountpoint (const char *image, GError **error)
{
        g_autofree char *base = g_path_get_basename (image);
        g_autofree char *parent = g_build_filename (g_get_home_dir (), DEFAULT_MOUNT_DIR, NULL);
        char *dot = strrchr (base, '.');

        if (dot != NULL && dot != base &&
            (g_ascii_strcasecmp (dot, ".vhdx") == 0 || g_ascii_strcasecmp (dot, ".avhdx") == 0))
                *dot = '\0';
        if (g_mkdir_with_parents (parent, 0755) != 0) {
                int saved_errno = errno;
                g_autofree char *display = g_filename_display_name (parent);

                g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "%s: %s",
                             display, g_strerror (saved_errno));
                return NULL;
        }
        for (guint n = 1; n < 1000; n++) {
                g_autofree char *name =
                        n == 1 ? g_strdup (base) : g_strdup_printf ("%s-%u", base, n);
                g_autofree char *path = g_build_filename (parent, name, NULL);

                /* A directory left empty by an earlier mount is taken again. */
                if (g_mkdir (path, 0755) == 0 ||
                    (errno == EEXIST && g_rmdir (path) == 0 && g_mkdir (path, 0755) == 0)) {
                        if (!is_mountpoint_in_use (path))
                                return g_steal_pointer (&path);
                        g_rmdir (path);
                }
        }
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                     _ ("no free directory for the mount point in %s: give one"), parent);
        return NULL;
}

/* Spawn @argv (NULL-terminated) with @launcher and wait for it; FALSE when
 * it fails, with an error saying which program @what failed. */
static gboolean
run_program (GSubprocessLauncher *launcher,
             const char *const *argv,
             const char *what,
             GError **error)
{
        g_autoptr (GSubprocess) process = g_subprocess_launcher_spawnv (launcher, argv, error);

        if (process == NULL || !g_subprocess_wait (process, NULL, error))
                return FALSE;
        if (!g_subprocess_get_successful (process)) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, _ ("%s failed"), what);
                return FALSE;
        }
        return TRUE;
}

/* What mount mounts at the root of the mount point. */
typedef struct {
        char *device;        /* a partition or file system: -m DEVICE */
        char *os_root;       /* or the root of the operating system found: -i */
        char *type;          /* the file system type of @device, when known */
        char **file_systems; /* the file systems found: "DEVICE: TYPE" */
} MountChoice;

static void
mount_choice_clear (MountChoice *choice)
{
        g_clear_pointer (&choice->device, g_free);
        g_clear_pointer (&choice->os_root, g_free);
        g_clear_pointer (&choice->type, g_free);
        g_clear_pointer (&choice->file_systems, g_strfreev);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (MountChoice, mount_choice_clear)

/* The markers between the answers of the probe's commands. */
#define PROBE_ROOTS       "vhdx-probe-roots"
#define PROBE_FILESYSTEMS "vhdx-probe-filesystems"
#define PROBE_PARTITIONS  "vhdx-probe-partitions"

/* The commands of the probe: the operating systems that inspection finds,
 * the file systems, and the partitions with their sizes (a disk without a
 * partition table has none: that error is ignored). */
static const char probe_script[] = "run\n"
                                   "echo " PROBE_ROOTS "\n"
                                   "inspect-os\n"
                                   "echo " PROBE_FILESYSTEMS "\n"
                                   "list-filesystems\n"
                                   "echo " PROBE_PARTITIONS "\n"
                                   "-part-list /dev/sda\n";

/* Whether a file system of @type can be mounted to read files from. */
static gboolean
is_mountable_type (const char *type)
{
        return type[0] != '\0' && !g_str_equal (type, "unknown") && !g_str_equal (type, "swap");
}

/* Choose from what the probe printed: an operating system's root if
 * inspection found one (guestmount -i mounts its file systems as the system
 * does), else the largest file system that can be mounted. */
static gboolean
choose_from_probe (const char *output, MountChoice *choice, GError **error)
{
        g_auto (GStrv) lines = g_strsplit (output, "\n", -1);
        g_autoptr (GHashTable) part_sizes =
                g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
        g_autoptr (GPtrArray) file_systems = g_ptr_array_new_with_free_func (g_free);
        g_autoptr (GPtrArray) types = g_ptr_array_new_with_free_func (g_free);
        const char *section = NULL;
        guint64 part_num = 0;
        guint64 best_size = 0;

        for (guint i = 0; lines[i] != NULL; i++) {
                const char *line = g_strstrip (lines[i]);
                const char *colon;

                if (g_str_equal (line, PROBE_ROOTS) || g_str_equal (line, PROBE_FILESYSTEMS) ||
                    g_str_equal (line, PROBE_PARTITIONS)) {
                        section = line;
                        continue;
                }
                if (section == NULL || line[0] == '\0')
                        continue;
                if (g_str_equal (section, PROBE_ROOTS) && choice->os_root == NULL) {
                        choice->os_root = g_strdup (line);
                } else if (g_str_equal (section, PROBE_FILESYSTEMS) &&
                           (colon = strrchr (line, ':')) != NULL) {
                        g_ptr_array_add (file_systems, g_strndup (line, colon - line));
                        g_ptr_array_add (types, g_strdup (g_strstrip ((char *) colon + 1)));
                } else if (g_str_equal (section, PROBE_PARTITIONS)) {
                        if (g_str_has_prefix (line, "part_num:"))
                                part_num = g_ascii_strtoull (line + strlen ("part_num:"), NULL, 10);
                        else if (g_str_has_prefix (line, "part_size:") && part_num > 0)
                                g_hash_table_insert (
                                        part_sizes,
                                        g_strdup_printf ("/dev/sda%" G_GUINT64_FORMAT, part_num),
                                        GSIZE_TO_POINTER (
                                                g_ascii_strtoull (line + strlen ("part_size:"),
                                                                  NULL, 10)));
                }
        }
        choice->file_systems = g_new0 (char *, file_systems->len + 1);
        for (guint i = 0; i < file_systems->len; i++) {
                const char *device = file_systems->pdata[i];
                const char *type = types->pdata[i];
                guint64 size = GPOINTER_TO_SIZE (g_hash_table_lookup (part_sizes, device));

                choice->file_systems[i] = g_strdup_printf ("%s: %s", device, type);
                /* btrfsvol:DEVICE/SUBVOLUME: mounting DEVICE shows the subvolumes. */
                if (choice->os_root != NULL || g_str_has_prefix (device, "btrfsvol:") ||
                    !is_mountable_type (type))
                        continue;
                if (choice->device == NULL || size > best_size) {
                        g_free (choice->device);
                        g_free (choice->type);
                        choice->device = g_strdup (device);
                        choice->type = g_strdup (type);
                        best_size = size;
                }
        }
        if (choice->os_root == NULL && choice->device == NULL) {
                g_autofree char *found = g_strjoinv (", ", choice->file_systems);

                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                             file_systems->len == 0
                                     ? _ ("no file system found on the virtual disk")
                                     : _ ("no file system found on the virtual disk that can be "
                                          "mounted (%s); give a partition with --partition=N"),
                             found);
                return FALSE;
        }
        return TRUE;
}

/* Ask libguestfs what the virtual disk served at @uri holds, with one
 * appliance run of guestfish, read-only. */
static gboolean
probe_disk (const char *guestfish,
            const char *uri,
            guint32 sector_size,
            MountChoice *choice,
            GError **error)
{
        g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
        g_autoptr (GSubprocess) process = NULL;
        g_autofree char *out = NULL;
        g_autofree char *err = NULL;

        g_ptr_array_add (argv, g_strdup (guestfish));
        g_ptr_array_add (argv, g_strdup ("--ro"));
        g_ptr_array_add (argv, g_strdup ("--format=raw"));
        if (sector_size != 512)
                g_ptr_array_add (argv, g_strdup_printf ("--blocksize=%u", sector_size));
        g_ptr_array_add (argv, g_strdup ("-a"));
        g_ptr_array_add (argv, g_strdup (uri));
        g_ptr_array_add (argv, NULL);
        process =
                g_subprocess_newv ((const char *const *) argv->pdata,
                                   G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                           G_SUBPROCESS_FLAGS_STDERR_PIPE,
                                   error);
        if (process == NULL ||
            !g_subprocess_communicate_utf8 (process, probe_script, NULL, &out, &err, error))
                return FALSE;
        if (!g_subprocess_get_successful (process)) {
                /* libguestfs' own message, then ours. */
                g_printerr ("%s", err != NULL ? err : "");
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                             _ ("guestfish could not look into the virtual disk"));
                return FALSE;
        }
        return choose_from_probe (out, choice, error);
}

typedef struct {
        gboolean read_write;
        gint partition;
        gboolean json;
        gboolean open;
        const CliOpenOptions *parents;
} MountOptions;

static void
print_mount_json (const char *image,
                  const char *mountpoint,
                  const MountOptions *options,
                  const MountChoice *choice)
{
        g_autoptr (JsonBuilder) builder = json_builder_new ();
        g_autoptr (JsonNode) root = NULL;
        g_autofree char *display = g_filename_display_name (image);
        g_autofree char *mount_display = g_filename_display_name (mountpoint);

        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "filename");
        json_builder_add_string_value (builder, display);
        json_builder_set_member_name (builder, "mountpoint");
        json_builder_add_string_value (builder, mount_display);
        json_builder_set_member_name (builder, "read-only");
        json_builder_add_boolean_value (builder, !options->read_write);
        json_builder_set_member_name (builder, "inspected");
        json_builder_add_boolean_value (builder, choice->os_root != NULL);
        json_builder_set_member_name (builder, "device");
        json_builder_add_string_value (builder,
                                       choice->os_root != NULL ? choice->os_root : choice->device);
        json_builder_set_member_name (builder, "type");
        if (choice->type != NULL)
                json_builder_add_string_value (builder, choice->type);
        else
                json_builder_add_null_value (builder);
        json_builder_set_member_name (builder, "file-systems");
        json_builder_begin_array (builder);
        for (guint i = 0; choice->file_systems != NULL && choice->file_systems[i]; i++)
                json_builder_add_string_value (builder, choice->file_systems[i]);
        json_builder_end_array (builder);
        json_builder_end_object (builder);
        root = json_builder_get_root (builder);
        tool_print_json (root);
}

/* Start nbdkit in the background on the socket of @state_dir, serving
 * @image (read-only unless @read_write) until @pipe_fd, the read end of a
 * pipe that it takes, is closed and no client is connected. */
static gboolean
start_server (const char *nbdkit,
              const char *image,
              const char *state_dir,
              int pipe_fd,
              const MountOptions *options,
              GError **error)
{
        g_autoptr (GSubprocessLauncher) launcher =
                g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
        g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
        g_autofree char *plugin = tool_nbdkit_plugin_path ();

        g_ptr_array_add (argv, g_strdup (nbdkit));
        if (!options->read_write)
                g_ptr_array_add (argv, g_strdup ("-r"));
        g_ptr_array_add (argv, g_strdup ("-U"));
        g_ptr_array_add (argv, g_build_filename (state_dir, SOCKET_NAME, NULL));
        g_ptr_array_add (argv, g_strdup ("-P"));
        g_ptr_array_add (argv, g_build_filename (state_dir, NBDKIT_PID_NAME, NULL));
        g_ptr_array_add (argv, g_strdup ("--filter=exitwhen"));
        g_ptr_array_add (argv, g_strdup (plugin));
        cli_nbdkit_add_image_args (argv, image, options->parents);
        g_ptr_array_add (argv, g_strdup_printf ("exit-when-pipe-closed=%d", PIPE_TARGET_FD));
        /* Once the pipe is closed and the last client gone, exit within a second. */
        g_ptr_array_add (argv, g_strdup ("exit-when-poll=1"));
        g_ptr_array_add (argv, NULL);
        g_subprocess_launcher_take_fd (launcher, pipe_fd, PIPE_TARGET_FD);
        /* nbdkit goes into the background once it serves. */
        return run_program (launcher, (const char *const *) argv->pdata, "nbdkit", error);
}

/* Run guestmount on the disk served at @uri, giving it @pipe_fd, the write
 * end of the server's pipe; it goes into the background once mounted. */
static gboolean
start_guestmount (const char *guestmount,
                  const char *uri,
                  guint32 sector_size,
                  const char *state_dir,
                  const char *mountpoint,
                  int pipe_fd,
                  const MountOptions *options,
                  const MountChoice *choice,
                  GError **error)
{
        g_autoptr (GSubprocessLauncher) launcher =
                g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
        g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);

        g_ptr_array_add (argv, g_strdup (guestmount));
        g_ptr_array_add (argv, g_strdup ("--format=raw"));
        if (sector_size != 512)
                g_ptr_array_add (argv, g_strdup_printf ("--blocksize=%u", sector_size));
        g_ptr_array_add (argv, g_strdup ("-a"));
        g_ptr_array_add (argv, g_strdup (uri));
        if (choice->os_root != NULL) {
                g_ptr_array_add (argv, g_strdup ("-i"));
        } else {
                g_ptr_array_add (argv, g_strdup ("-m"));
                g_ptr_array_add (argv, g_strdup (choice->device));
        }
        g_ptr_array_add (argv, g_strdup (options->read_write ? "--rw" : "--ro"));
        g_ptr_array_add (argv, g_strdup ("--pid-file"));
        g_ptr_array_add (argv, g_build_filename (state_dir, GUESTMOUNT_PID_NAME, NULL));
        g_ptr_array_add (argv, g_strdup (mountpoint));
        g_ptr_array_add (argv, NULL);
        g_subprocess_launcher_take_fd (launcher, pipe_fd, PIPE_TARGET_FD);
        return run_program (launcher, (const char *const *) argv->pdata, "guestmount", error);
}

/* The logical sector size of @image, opened (and checked) as the commands
 * open images, and closed again before nbdkit opens it. */
static gboolean
image_sector_size (const char *image,
                   const CliOpenOptions *parents,
                   guint32 *sector_size,
                   GError **error)
{
        g_autoptr (VhdxFile) file =
                cli_open_image (image, VHDX_OPEN_FLAGS_NONE, parents, NULL, error);

        if (file == NULL)
                return FALSE;
        *sector_size = vhdx_file_get_info (file)->logical_sector_size;
        return TRUE;
}

static void
open_in_file_manager (const char *mountpoint)
{
        g_autoptr (GFile) file = g_file_new_for_path (mountpoint);
        g_autofree char *uri = g_file_get_uri (file);
        g_autoptr (GError) error = NULL;

        if (!g_app_info_launch_default_for_uri (uri, NULL, &error)) {
                g_autofree char *line =
                        g_strdup_printf (_ ("warning: cannot open the mount point: %s"),
                                         error->message);

                tool_print_error (mountpoint, line);
        }
}

/* Run guestunmount on @mountpoint; TRUE also when it is not mounted any
 * more (unmounted by someone else): the processes are waited for all the same. */
static gboolean
unmount (const char *mountpoint, GError **error)
{
        g_autofree char *guestunmount = NULL;
        const char *argv[] = { NULL, mountpoint, NULL };
        g_autoptr (GSubprocess) process = NULL;

        if (!is_mounted (mountpoint))
                return TRUE;
        guestunmount = find_program ("guestunmount", "libguestfs-tools", error);
        if (guestunmount == NULL)
                return FALSE;
        argv[0] = guestunmount;
        process = g_subprocess_newv (argv, G_SUBPROCESS_FLAGS_STDOUT_SILENCE, error);
        if (process == NULL || !g_subprocess_wait (process, NULL, error))
                return FALSE;
        /* Exit status 3: not mounted. */
        if (g_subprocess_get_if_exited (process) && (g_subprocess_get_exit_status (process) == 0 ||
                                                     g_subprocess_get_exit_status (process) == 3))
                return TRUE;
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_BUSY,
                     _ ("guestunmount failed: the mount point may be in use"));
        return FALSE;
}

static int
mount_image (const char *image_arg, const char *mountpoint_arg, const MountOptions *options)
{
        g_autoptr (GError) error = NULL;
        g_autofree char *nbdkit = NULL;
        g_autofree char *guestmount = NULL;
        g_autofree char *guestfish = NULL;
        g_autofree char *image = g_canonicalize_filename (image_arg, NULL);
        g_autofree char *mountpoint = NULL;
        g_autofree char *root = NULL;
        g_autofree char *state_dir = NULL;
        g_autofree char *uri = NULL;
        g_auto (MountChoice) choice = { 0 };
        gboolean created = FALSE;
        gboolean ok;
        guint32 sector_size = 512;
        int fds[2] = { -1, -1 };

        nbdkit = find_program ("nbdkit", "nbdkit", &error);
        if (nbdkit != NULL)
                guestmount = find_program ("guestmount", "libguestfs-tools", &error);
        if (guestmount != NULL && options->partition == 0)
                guestfish = find_program ("guestfish", "libguestfs-tools", &error);
        if (error != NULL ||
            !image_sector_size (image_arg, options->parents, &sector_size, &error)) {
                tool_print_file_error (image_arg, error);
                return EXIT_FAILURE;
        }
        remove_stale_states ();

        if (mountpoint_arg != NULL) {
                g_autofree char *resolved = realpath (mountpoint_arg, NULL);

                if (resolved == NULL || !g_file_test (resolved, G_FILE_TEST_IS_DIR)) {
                        tool_print_error_printf (_ ("%s: not a directory"), mountpoint_arg);
                        return EXIT_FAILURE;
                }
                mountpoint = g_steal_pointer (&resolved);
        } else {
                mountpoint = make_default_mountpoint (image, &error);
                if (mountpoint == NULL) {
                        tool_print_file_error (image_arg, error);
                        return EXIT_FAILURE;
                }
                created = TRUE;
        }

        root = state_root ();
        state_dir = g_build_filename (root, STATE_PREFIX "XXXXXX", NULL);
        if (g_mkdir_with_parents (root, 0700) != 0 || g_mkdtemp_full (state_dir, 0700) == NULL ||
            (created && !write_state (state_dir, CREATED_NAME, mountpoint, &error)) ||
            !g_unix_open_pipe (fds, FD_CLOEXEC, &error)) {
                if (error == NULL)
                        g_set_error (&error, G_IO_ERROR, g_io_error_from_errno (errno), "%s: %s",
                                     root, g_strerror (errno));
                tool_print_file_error (image_arg, error);
                if (created)
                        g_rmdir (mountpoint);
                remove_state (state_dir);
                return EXIT_FAILURE;
        }
        /* libguestfs' form of an NBD URI on a UNIX socket. */
        uri = g_strdup_printf ("nbd://?socket=%s" G_DIR_SEPARATOR_S SOCKET_NAME, state_dir);

        /* The launchers take the pipe's ends: our copies go with them. */
        ok = start_server (nbdkit, image, state_dir, fds[0], options, &error);
        if (ok && options->partition > 0)
                choice.device = g_strdup_printf ("/dev/sda%d", options->partition);
        else if (ok)
                ok = probe_disk (guestfish, uri, sector_size, &choice, &error);
        ok = ok && write_state (state_dir, IMAGE_NAME, image, &error);
        if (ok) {
                ok = start_guestmount (guestmount, uri, sector_size, state_dir, mountpoint, fds[1],
                                       options, &choice, &error);
                fds[1] = -1;
        }
        if (!ok) {
                /* Nobody holds the pipe's write end now: nbdkit stops once no
                 * client is connected.  Wait for it, so that the image is
                 * released when the command returns. */
                if (fds[1] >= 0)
                        close (fds[1]);
                tool_print_file_error (image_arg, error);
                wait_for_mount_processes (state_dir);
                remove_state (state_dir);
                return EXIT_FAILURE;
        }
        /* Written last: a mount whose state has no mount point is still starting. */
        if (!write_state (state_dir, MOUNTPOINT_NAME, mountpoint, &error)) {
                tool_print_file_error (image_arg, error);
                if (unmount (mountpoint, NULL))
                        wait_for_mount_processes (state_dir);
                remove_state (state_dir);
                return EXIT_FAILURE;
        }

        if (options->json)
                print_mount_json (image_arg, mountpoint, options, &choice);
        else if (mountpoint_arg == NULL)
                g_print ("%s\n", mountpoint);
        if (options->open)
                open_in_file_manager (mountpoint);
        return EXIT_SUCCESS;
}

int
cli_cmd_mount (int argc, char **argv)
{
        gboolean read_write = FALSE;
        gint partition = 0;
        gboolean json = FALSE;
        gboolean open = FALSE;
        g_auto (GStrv) args = NULL;
        g_auto (CliOpenOptions) parents = { 0 };
        const GOptionEntry entries[] = {
                { "rw", 0, 0, G_OPTION_ARG_NONE, &read_write,
                  N_ ("Mount read-write: what is written goes into the image"), NULL },
                { "partition", 0, 0, G_OPTION_ARG_INT, &partition,
                  N_ ("Mount partition N (from 1) instead of what inspection finds"), N_ ("N") },
                { "json", 0, 0, G_OPTION_ARG_NONE, &json,
                  N_ ("Print what was mounted where as a JSON object"), NULL },
                { "open", 0, 0, G_OPTION_ARG_NONE, &open,
                  N_ ("Show the mount point in the file manager once mounted"), NULL },
                CLI_PARENT_OPTION_ENTRIES (&parents, CLI_PARENT_HELP),
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        MountOptions options = { 0 };
        guint n_args;

        context = tool_command_context_new (
                "mount", _ ("IMAGE [MOUNTPOINT]"), _ ("Mount the file systems inside an image."),
                _ ("Mounts the file systems of the virtual disk of IMAGE (NTFS, FAT, ext4\n"
                   "and the others that libguestfs knows) at MOUNTPOINT, an existing\n"
                   "directory, with libguestfs' guestmount, which reads the disk that\n"
                   "nbdkit and the vhdx plugin serve on a private socket.  Without\n"
                   "MOUNTPOINT, a new directory named after IMAGE under ~/VHDX is the\n"
                   "mount point, and its path is printed.\n"
                   "\n"
                   "What is mounted: with --partition=N, the file system of partition N;\n"
                   "otherwise the file systems of the operating system that inspection\n"
                   "finds, mounted as that system mounts them, or, when there is none,\n"
                   "the largest file system.\n"
                   "\n"
                   "Read-only unless --rw.  The mount stays after the command exits;\n"
                   "'vhdx umount MOUNTPOINT' unmounts it and returns once the image is\n"
                   "closed.  Unmounted any other way, the server stops all the same.\n"
                   "\n"
                   "With --json, prints one object with the keys filename, mountpoint,\n"
                   "read-only, inspected, device, type and file-systems.\n"
                   "\n"
                   "Needs nbdkit (Debian package nbdkit) and guestmount (Debian package\n"
                   "libguestfs-tools).  Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv))
                return EXIT_FAILURE;
        n_args = args != NULL ? g_strv_length (args) : 0;
        if (!tool_check_arguments ("mount", args, CLAMP (n_args, 1, 2)))
                return EXIT_FAILURE;
        if (partition < 0) {
                tool_usage_error (_ ("mount: --partition must be 1 or more"));
                return EXIT_FAILURE;
        }
        options.read_write = read_write;
        options.partition = partition;
        options.json = json;
        options.open = open;
        options.parents = &parents;
        return mount_image (args[0], n_args == 2 ? args[1] : NULL, &options);
}

/* vhdx umount */

int
cli_cmd_umount (int argc, char **argv)
{
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = { { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY,
                                           &args, NULL, NULL },
                                         G_OPTION_ENTRY_NULL };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autofree char *mountpoint = NULL;
        g_autofree char *state_dir = NULL;

        context = tool_command_context_new (
                "umount", _ ("MOUNTPOINT"), _ ("Unmount what 'vhdx mount' mounted."),
                _ ("Unmounts MOUNTPOINT with guestunmount, which retries for a while\n"
                   "when it is in use, then waits until guestmount and nbdkit have exited,\n"
                   "so that the image is closed (its log written and its lock released)\n"
                   "when the command returns.  A mount point that mount made is removed.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv) ||
            !tool_check_arguments ("umount", args, 1))
                return EXIT_FAILURE;
        mountpoint = realpath (args[0], NULL);
        if (mountpoint == NULL)
                mountpoint = g_canonicalize_filename (args[0], NULL);
        state_dir = find_state (mountpoint);
        if (state_dir == NULL) {
                tool_print_error (args[0], _ ("not mounted by 'vhdx mount'"));
                return EXIT_FAILURE;
        }
        if (!unmount (mountpoint, &error)) {
                tool_print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        if (!wait_for_mount_processes (state_dir)) {
                tool_print_error (args[0], _ ("unmounted, but guestmount or nbdkit still runs"));
                return EXIT_FAILURE;
        }
        remove_state (state_dir);
        return EXIT_SUCCESS;
}
