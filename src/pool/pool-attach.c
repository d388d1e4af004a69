/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx-pool attach and detach: a VHDX image served by nbdkit on a UNIX socket, as an NBD disk of a
 * libvirt domain. */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>

#include "pool-util.h"
#include "vhdx.h"

/* How long a server may take to start or stop, and a guest to let a disk
 * go, in polls of POLL_MS. */
#define POLL_MS      50
#define SERVER_POLLS 1200 /* a minute */
#define UNPLUG_POLLS 400  /* twenty seconds */

/* The user that a system connection's QEMU runs as, on Debian. */
#define SYSTEM_QEMU_USER "libvirt-qemu"

/*
 * The server of one image: its files are in the run-time directory, named
 * by the first 16 hexadecimal digits of the SHA-256 of the image's path
 * (ID.sock, ID.pid, and ID.image holding the path); as a systemd user unit,
 * vhdx-nbd@ESCAPED.service, the instance the image's escaped path, whose
 * settings are in ESCAPED.env.
 */
typedef struct {
        char *image;
        char *dir;
        char *socket;
        char *pidfile;
        char *image_file;
        char *env_file;
        char *unit;
        gboolean system; /* served to a system connection's QEMU */
} Server;

static void
server_clear (Server *server)
{
        g_free (server->image);
        g_free (server->dir);
        g_free (server->socket);
        g_free (server->pidfile);
        g_free (server->image_file);
        g_free (server->env_file);
        g_free (server->unit);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Server, server_clear)

/* @path as `systemd-escape --path` writes it. */
static char *
escape_path (const char *path)
{
        GString *escaped = g_string_new (NULL);
        const char *start = path;
        gsize length = strlen (path);

        while (*start == '/')
                start++;
        while (length > (gsize) (start - path) && path[length - 1] == '/')
                length--;
        if (length <= (gsize) (start - path))
                return g_string_free (g_string_append_c (escaped, '-'), FALSE);
        for (const char *c = start; c < path + length; c++) {
                if (*c == '/')
                        g_string_append_c (escaped, '-');
                else if (g_ascii_isalnum (*c) || *c == ':' || *c == '_' ||
                         (*c == '.' && c != start))
                        g_string_append_c (escaped, *c);
                else
                        g_string_append_printf (escaped, "\\x%02x", (guchar) *c);
        }
        return g_string_free (escaped, FALSE);
}

/* The run-time directory of the servers: the user's, or /run/vhdx for a
 * system connection. */
static void
server_init (Server *server, const char *image, gboolean system)
{
        g_autofree char *digest = g_compute_checksum_for_string (G_CHECKSUM_SHA256, image, -1);
        g_autofree char *escaped = escape_path (image);

        digest[16] = '\0';
        server->image = g_strdup (image);
        server->system = system;
        server->dir = system ? g_strdup ("/run/vhdx")
                             : g_build_filename (g_get_user_runtime_dir (), "vhdx", NULL);
        server->socket = g_strdup_printf ("%s/%s.sock", server->dir, digest);
        server->pidfile = g_strdup_printf ("%s/%s.pid", server->dir, digest);
        server->image_file = g_strdup_printf ("%s/%s.image", server->dir, digest);
        server->env_file = g_strdup_printf ("%s/%s.env", server->dir, escaped);
        server->unit = g_strdup_printf ("vhdx-nbd@%s.service", escaped);
}

/* The server listening on @socket, one of ours: FALSE when it is not. */
static gboolean
server_init_from_socket (Server *server, const char *socket, gboolean system, GError **error)
{
        g_autofree char *base = NULL;
        g_autofree char *image_file = NULL;
        g_autofree char *image = NULL;

        if (!g_str_has_suffix (socket, ".sock"))
                return FALSE;
        base = g_strndup (socket, strlen (socket) - strlen (".sock"));
        image_file = g_strconcat (base, ".image", NULL);
        if (!g_file_get_contents (image_file, &image, NULL, NULL))
                return FALSE;
        g_strchomp (image);
        server_init (server, image, system);
        return g_str_equal (server->socket, socket);
}

/* The pid of the server, or 0 when none runs. */
static pid_t
server_pid (const Server *server)
{
        g_autofree char *text = NULL;
        g_autofree char *stat_path = NULL;
        g_autofree char *stat = NULL;
        const char *state;
        gint64 pid;

        if (!g_file_get_contents (server->pidfile, &text, NULL, NULL) ||
            !g_ascii_string_to_signed (g_strstrip (text), 10, 1, G_MAXINT, &pid, NULL))
                return 0;
        /* Running, not a zombie. */
        stat_path = g_strdup_printf ("/proc/%d/stat", (int) pid);
        if (!g_file_get_contents (stat_path, &stat, NULL, NULL))
                return 0;
        state = strrchr (stat, ')');
        if (state == NULL || state[1] == '\0' || state[2] == 'Z' || state[2] == 'X')
                return 0;
        return (pid_t) pid;
}

/* Whether the server was started read-only. */
static gboolean
server_is_read_only (const Server *server)
{
        g_autofree char *text = NULL;

        return g_file_get_contents (server->env_file, &text, NULL, NULL) &&
               strstr (text, "VHDX_NBD_OPTIONS=\"-r\"") != NULL;
}

/* Run @argv, its output discarded unless it fails: then @error carries it. */
static gboolean
run_quietly (const char *const *argv, GError **error)
{
        g_autoptr (GSubprocess) process = NULL;
        g_autofree char *output = NULL;

        process =
                g_subprocess_newv (argv,
                                   G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE,
                                   error);
        if (process == NULL ||
            !g_subprocess_communicate_utf8 (process, NULL, NULL, &output, NULL, error))
                return FALSE;
        if (!g_subprocess_get_if_exited (process) || g_subprocess_get_exit_status (process) != 0) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, _ ("%s failed: %s"), argv[0],
                             output != NULL ? g_strstrip (output) : "");
                return FALSE;
        }
        return TRUE;
}

/* Whether the server is run by the user's systemd, from the installed
 * template vhdx-nbd@.service: for session connections, where a user
 * manager runs. */
static gboolean
server_uses_systemd (const Server *server)
{
        const char *const show[] = { "systemctl",         "--user", "--quiet", "cat",
                                     "vhdx-nbd@.service", NULL };
        g_autofree char *systemctl = g_find_program_in_path ("systemctl");

        if (server->system || systemctl == NULL || g_getenv ("XDG_RUNTIME_DIR") == NULL)
                return FALSE;
        return run_quietly (show, NULL);
}

/* Wait until the server serves (its pid file written, its socket made),
 * or has stopped. */
static gboolean
server_wait_started (const Server *server, GError **error)
{
        for (guint i = 0; i < SERVER_POLLS; i++) {
                if (server_pid (server) != 0 && g_file_test (server->socket, G_FILE_TEST_EXISTS))
                        return TRUE;
                g_usleep (POLL_MS * 1000);
        }
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                     _ ("the NBD server of %s did not start (socket %s)"), server->image,
                     server->socket);
        return FALSE;
}

/* @error from errno, after @path. */
static void
set_errno_error (GError **error, const char *path)
{
        int saved = errno;

        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "%s: %s", path,
                     g_strerror (saved));
}

/* Make the run-time directory, and the socket's permissions, let the QEMU
 * of the connection in and nobody else: the user's own for a session; for
 * a system connection, root's, with the group of libvirt's QEMU user. */
static gboolean
make_private_dir (const Server *server, gid_t *group, GError **error)
{
        *group = (gid_t) -1;
        if (server->system) {
                struct passwd *qemu = getpwnam (SYSTEM_QEMU_USER);

                if (qemu == NULL) {
                        g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                                     _ ("there is no user %s for QEMU to connect as"),
                                     SYSTEM_QEMU_USER);
                        return FALSE;
                }
                *group = qemu->pw_gid;
        }
        if (g_mkdir_with_parents (server->dir, 0700) != 0) {
                set_errno_error (error, server->dir);
                return FALSE;
        }
        if ((*group != (gid_t) -1 && chown (server->dir, (uid_t) -1, *group) != 0) ||
            chmod (server->dir, *group != (gid_t) -1 ? 0710 : 0700) != 0) {
                set_errno_error (error, server->dir);
                return FALSE;
        }
        return TRUE;
}

static void
server_remove_files (const Server *server)
{
        g_unlink (server->socket);
        g_unlink (server->pidfile);
        g_unlink (server->image_file);
        g_unlink (server->env_file);
}

/* The command that serves the image: nbdkit in the background with the
 * plugin (systemd runs it in the foreground, from the unit). */
static GPtrArray *
server_command (const Server *server, gboolean read_only)
{
        GPtrArray *argv = g_ptr_array_new_with_free_func (g_free);

        g_ptr_array_add (argv, g_strdup ("nbdkit"));
        g_ptr_array_add (argv, g_strdup ("-U"));
        g_ptr_array_add (argv, g_strdup (server->socket));
        g_ptr_array_add (argv, g_strdup ("-P"));
        g_ptr_array_add (argv, g_strdup (server->pidfile));
        if (read_only)
                g_ptr_array_add (argv, g_strdup ("-r"));
        g_ptr_array_add (argv, tool_nbdkit_plugin_path ());
        g_ptr_array_add (argv, g_strconcat ("file=", server->image, NULL));
        g_ptr_array_add (argv, NULL);
        return argv;
}

static void
private_umask (gpointer data)
{
        umask (0077);
}

static gboolean
server_start (const Server *server, gboolean read_only, GError **error)
{
        g_autofree char *env = NULL;
        g_autofree char *image_line = g_strconcat (server->image, "\n", NULL);
        gid_t group;

        if (!make_private_dir (server, &group, error))
                return FALSE;
        server_remove_files (server);
        env = g_strdup_printf ("# vhdx-pool attach: the NBD server of %s\n"
                               "VHDX_NBD_SOCKET=\"%s\"\nVHDX_NBD_PIDFILE=\"%s\"\n"
                               "VHDX_NBD_OPTIONS=\"%s\"\n",
                               server->image, server->socket, server->pidfile,
                               read_only ? "-r" : "");
        if (!g_file_set_contents_full (server->env_file, env, -1, G_FILE_SET_CONTENTS_CONSISTENT,
                                       0600, error) ||
            !g_file_set_contents_full (server->image_file, image_line, -1,
                                       G_FILE_SET_CONTENTS_CONSISTENT, 0600, error))
                return FALSE;
        if (server_uses_systemd (server)) {
                const char *const start[] = { "systemctl", "--user", "start", server->unit, NULL };

                if (!run_quietly (start, error))
                        return FALSE;
        } else {
                g_autoptr (GPtrArray) argv = server_command (server, read_only);
                g_autofree char *errors = NULL;
                int status;

                /* nbdkit forks once it listens; the socket is the user's
                 * alone. */
                if (!g_spawn_sync (NULL, (char **) argv->pdata, NULL,
                                   G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL, private_umask,
                                   NULL, NULL, &errors, &status, error))
                        return FALSE;
                if (!g_spawn_check_wait_status (status, NULL)) {
                        g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                                     _ ("nbdkit could not serve %s: %s"), server->image,
                                     errors != NULL ? g_strstrip (errors) : "");
                        server_remove_files (server);
                        return FALSE;
                }
        }
        if (!server_wait_started (server, error))
                return FALSE;
        if (group != (gid_t) -1 &&
            (chown (server->socket, (uid_t) -1, group) != 0 || chmod (server->socket, 0660) != 0)) {
                set_errno_error (error, server->socket);
                return FALSE;
        }
        return TRUE;
}

/* Stop the server (the plugin closes the image cleanly) and wait for it. */
static gboolean
server_stop (const Server *server, GError **error)
{
        pid_t pid = server_pid (server);

        if (server_uses_systemd (server)) {
                const char *const stop[] = { "systemctl", "--user", "stop", server->unit, NULL };

                if (!run_quietly (stop, error))
                        return FALSE;
        } else if (pid != 0 && kill (pid, SIGTERM) != 0 && errno != ESRCH) {
                int saved = errno;

                g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                             _ ("cannot stop the NBD server of %s: %s"), server->image,
                             g_strerror (saved));
                return FALSE;
        }
        for (guint i = 0; pid != 0 && i < SERVER_POLLS; i++) {
                if (server_pid (server) == 0)
                        break;
                g_usleep (POLL_MS * 1000);
        }
        if (server_pid (server) != 0) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                             _ ("the NBD server of %s (pid %d) did not stop"), server->image,
                             (int) pid);
                return FALSE;
        }
        server_remove_files (server);
        return TRUE;
}

/* The disks of a domain's XML: target dev, and the UNIX socket of an NBD
 * source. */
typedef struct {
        char *target;
        char *socket;
} Disk;

static void
disk_free (gpointer data)
{
        Disk *disk = data;

        g_free (disk->target);
        g_free (disk->socket);
        g_free (disk);
}

typedef struct {
        GPtrArray *disks;
        Disk *current;
} DiskScan;

static void
scan_start (GMarkupParseContext *context,
            const char *element,
            const char **names,
            const char **values,
            gpointer data,
            GError **error)
{
        DiskScan *scan = data;
        const GSList *stack = g_markup_parse_context_get_element_stack (context);

        if (g_str_equal (element, "disk") && stack->next != NULL &&
            g_str_equal (stack->next->data, "devices")) {
                scan->current = g_new0 (Disk, 1);
                g_ptr_array_add (scan->disks, scan->current);
                return;
        }
        if (scan->current == NULL)
                return;
        for (guint i = 0; names[i] != NULL; i++) {
                char **slot = NULL;

                if (g_str_equal (element, "target") && g_str_equal (names[i], "dev"))
                        slot = &scan->current->target;
                else if (g_str_equal (element, "host") && g_str_equal (names[i], "socket") &&
                         stack->next != NULL && g_str_equal (stack->next->data, "source"))
                        slot = &scan->current->socket;
                if (slot != NULL) {
                        g_free (*slot);
                        *slot = g_strdup (values[i]);
                }
        }
}

static void
scan_end (GMarkupParseContext *context, const char *element, gpointer data, GError **error)
{
        DiskScan *scan = data;

        if (g_str_equal (element, "disk"))
                scan->current = NULL;
}

static GPtrArray *
domain_disks (const char *xml, GError **error)
{
        static const GMarkupParser parser = { .start_element = scan_start,
                                              .end_element = scan_end };
        DiskScan scan = { g_ptr_array_new_with_free_func (disk_free), NULL };
        g_autoptr (GMarkupParseContext) context =
                g_markup_parse_context_new (&parser, 0, &scan, NULL);

        if (!g_markup_parse_context_parse (context, xml, -1, error) ||
            !g_markup_parse_context_end_parse (context, error)) {
                g_ptr_array_unref (scan.disks);
                return NULL;
        }
        return scan.disks;
}

/* The disks of @domain as @flags (VIR_DOMAIN_AFFECT_*) address them: its
 * persistent definition for CONFIG, else the running domain's when it
 * runs. */
static GPtrArray *
domain_disks_of (virDomainPtr domain, unsigned int flags, GError **error)
{
        unsigned int xml_flags = 0;
        char *xml;
        GPtrArray *disks;

        if ((flags & VIR_DOMAIN_AFFECT_CONFIG) && !(flags & VIR_DOMAIN_AFFECT_LIVE))
                xml_flags = VIR_DOMAIN_XML_INACTIVE;
        xml = virDomainGetXMLDesc (domain, xml_flags);
        if (xml == NULL) {
                pool_set_libvirt_error (error, _ ("cannot read the definition of domain '%s'"),
                                        virDomainGetName (domain));
                return NULL;
        }
        disks = domain_disks (xml, error);
        free (xml);
        return disks;
}

static Disk *
find_disk (GPtrArray *disks, const char *target, const char *socket)
{
        for (guint i = 0; i < disks->len; i++) {
                Disk *disk = g_ptr_array_index (disks, i);

                if ((target != NULL && g_strcmp0 (disk->target, target) == 0) ||
                    (socket != NULL && g_strcmp0 (disk->socket, socket) == 0))
                        return disk;
        }
        return NULL;
}

/* The names of the domains on @conn (running or defined) whose definition,
 * live or persistent, has a disk on @socket, other than @except. */
static GPtrArray *
domains_using (virConnectPtr conn, const char *socket, virDomainPtr except)
{
        GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
        virDomainPtr *domains = NULL;
        int n = virConnectListAllDomains (conn, &domains, 0);

        for (int i = 0; i < n; i++) {
                gboolean uses = FALSE;

                for (int pass = 0; pass < 2 && !uses; pass++) {
                        char *xml = virDomainGetXMLDesc (domains[i],
                                                         pass == 0 ? 0 : VIR_DOMAIN_XML_INACTIVE);
                        g_autoptr (GPtrArray) disks = xml != NULL ? domain_disks (xml, NULL) : NULL;

                        uses = disks != NULL && find_disk (disks, NULL, socket) != NULL;
                        free (xml);
                }
                if (uses && (except == NULL || g_strcmp0 (virDomainGetName (domains[i]),
                                                          virDomainGetName (except)) != 0))
                        g_ptr_array_add (names, g_strdup (virDomainGetName (domains[i])));
                virDomainFree (domains[i]);
        }
        free (domains);
        return names;
}

/* @names joined by commas. */
static char *
join_names (GPtrArray *names)
{
        GString *joined = g_string_new (NULL);

        for (guint i = 0; i < names->len; i++)
                g_string_append_printf (joined, "%s%s", i > 0 ? ", " : "",
                                        (const char *) g_ptr_array_index (names, i));
        return g_string_free (joined, FALSE);
}

/* The first virtio disk name (vda, vdb, ... vdz) that @disks do not use. */
static char *
free_target (GPtrArray *disks)
{
        for (char c = 'a'; c <= 'z'; c++) {
                g_autofree char *name = g_strdup_printf ("vd%c", c);

                if (find_disk (disks, name, NULL) == NULL)
                        return g_steal_pointer (&name);
        }
        return NULL;
}

/* The disk of @image's server: the export is named after the image (the
 * plugin serves the image whatever the name; libguestfs wants one). */
static char *
disk_xml (const char *image,
          const char *socket,
          const char *target,
          guint sector_size,
          gboolean read_only)
{
        g_autofree char *base = g_path_get_basename (image);
        g_autofree char *escaped_name = pool_xml_escape (base);
        g_autofree char *escaped = pool_xml_escape (socket);
        g_autofree char *escaped_target = pool_xml_escape (target);
        GString *xml = g_string_new ("<disk type='network' device='disk'>\n");

        g_string_append_printf (xml, "  <driver name='qemu' type='raw'%s/>\n",
                                read_only ? "" : " discard='unmap'");
        g_string_append_printf (xml,
                                "  <source protocol='nbd' name='%s'>\n"
                                "    <host transport='unix' socket='%s'/>\n"
                                "  </source>\n",
                                escaped_name, escaped);
        g_string_append_printf (xml, "  <target dev='%s' bus='%s'/>\n", escaped_target,
                                g_str_has_prefix (target, "vd")   ? "virtio"
                                : g_str_has_prefix (target, "sd") ? "scsi"
                                                                  : "ide");
        if (sector_size != 512)
                g_string_append_printf (xml,
                                        "  <blockio logical_block_size='%u' "
                                        "physical_block_size='%u'/>\n",
                                        sector_size, sector_size);
        if (read_only)
                g_string_append (xml, "  <readonly/>\n");
        g_string_append (xml, "</disk>\n");
        return g_string_free (xml, FALSE);
}

/* The domain named @name on @conn: by name, UUID or id, as virsh finds it. */
static virDomainPtr
lookup_domain (virConnectPtr conn, const char *name, GError **error)
{
        virDomainPtr domain = virDomainLookupByName (conn, name);
        gint64 id;

        if (domain == NULL)
                domain = virDomainLookupByUUIDString (conn, name);
        if (domain == NULL && g_ascii_string_to_signed (name, 10, 0, G_MAXINT, &id, NULL))
                domain = virDomainLookupByID (conn, (int) id);
        if (domain == NULL)
                pool_set_libvirt_error (error, _ ("domain '%s'"), name);
        return domain;
}

/* Whether @conn is a system connection (qemu:///system): its QEMU runs as
 * another user. */
static gboolean
connection_is_system (virConnectPtr conn)
{
        char *uri = virConnectGetURI (conn);
        gboolean system = uri != NULL && g_str_has_suffix (uri, "/system");

        free (uri);
        return system;
}

static unsigned int
affect_flags (gboolean live, gboolean config)
{
        unsigned int flags = VIR_DOMAIN_AFFECT_CURRENT;

        if (live)
                flags |= VIR_DOMAIN_AFFECT_LIVE;
        if (config)
                flags |= VIR_DOMAIN_AFFECT_CONFIG;
        return flags;
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (virDomain, virDomainFree)

/* Open the image as the server will, to refuse at once what it could not
 * serve; its logical sector size in *@sector_size. */
static gboolean
check_image (const char *path, gboolean read_only, guint *sector_size, GError **error)
{
        g_autoptr (GFile) file = g_file_new_for_path (path);
        g_autoptr (VhdxImage) image =
                vhdx_image_new (file, read_only ? VHDX_OPEN_FLAGS_NONE : VHDX_OPEN_FLAGS_READ_WRITE,
                                NULL, error);

        if (image == NULL)
                return FALSE;
        *sector_size = vhdx_image_get_logical_sector_size (image);
        return vhdx_image_close (image, NULL, error);
}

int
pool_cmd_attach (int argc, char **argv)
{
        g_autofree char *uri = NULL;
        g_autofree char *target = NULL;
        gboolean live = FALSE, config = FALSE, read_only = FALSE, dry_run = FALSE;
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "connect", 'c', 0, G_OPTION_ARG_STRING, &uri,
                  N_ ("Connect to the hypervisor at URI, as virsh does"), N_ ("URI") },
                { "target", 0, 0, G_OPTION_ARG_STRING, &target,
                  N_ ("The disk's name in the guest (default: the first free vdX)"), N_ ("DEV") },
                { "live", 0, 0, G_OPTION_ARG_NONE, &live, N_ ("Attach to the running domain"),
                  NULL },
                { "config", 0, 0, G_OPTION_ARG_NONE, &config,
                  N_ ("Attach to the domain's persistent definition"), NULL },
                { "read-only", 'r', 0, G_OPTION_ARG_NONE, &read_only,
                  N_ ("Serve the image read-only, as a read-only disk"), NULL },
                { "dry-run", 'n', 0, G_OPTION_ARG_NONE, &dry_run,
                  N_ ("Show the disk's XML and the server, change nothing"), NULL },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (virConnect) conn = NULL;
        g_autoptr (virDomain) domain = NULL;
        g_autoptr (GPtrArray) disks = NULL;
        g_autoptr (GPtrArray) users = NULL;
        g_autofree char *path = NULL;
        g_autofree char *xml = NULL;
        g_auto (Server) server = { NULL };
        unsigned int flags;
        guint sector_size = 512;
        gboolean running, started = FALSE;

        context = tool_command_context_new (
                "attach", _ ("DOMAIN IMAGE"),
                _ ("Attach a VHDX image to a libvirt domain as an NBD disk."),
                _ ("Serves the virtual disk of the VHDX image IMAGE (fixed, dynamic or\n"
                   "differencing, its parents found as 'vhdx info' finds them) with nbdkit\n"
                   "and the vhdx plugin on a UNIX socket in $XDG_RUNTIME_DIR/vhdx/ (as the\n"
                   "systemd user unit vhdx-nbd@.service where it is installed, else in the\n"
                   "background), and adds it to DOMAIN as a network disk (protocol nbd),\n"
                   "as 'virsh attach-device' does.  Only the user, and the QEMU of a\n"
                   "system connection, can connect to the socket.  The image is locked\n"
                   "while it is served.  Without --live or --config, the running domain\n"
                   "is changed if it runs, else its definition.  The connection must be\n"
                   "to this host.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv))
                return EXIT_FAILURE;
        if (args == NULL || g_strv_length (args) != 2)
                return tool_usage_error ("%s", _ ("expected DOMAIN and IMAGE"));
        if (!g_file_test (args[1], G_FILE_TEST_IS_REGULAR)) {
                tool_print_error_printf (_ ("%s: not a file"), args[1]);
                return EXIT_FAILURE;
        }
        path = pool_canonical_path (args[1]);
        flags = affect_flags (live, config);

        conn = pool_connect (uri != NULL ? uri : pool_connect_uri, &error);
        if (conn == NULL)
                return pool_fail (error);
        if (!pool_connection_is_local (conn)) {
                tool_print_error_printf (_ ("the image is served on this host: the connection "
                                            "must be to it (%s)"),
                                         pool_connection_uri_display (
                                                 uri != NULL ? uri : pool_connect_uri));
                return EXIT_FAILURE;
        }
        domain = lookup_domain (conn, args[0], &error);
        if (domain == NULL)
                return pool_fail (error);
        server_init (&server, path, connection_is_system (conn));

        running = server_pid (&server) != 0;
        if (running && server_is_read_only (&server) != read_only) {
                tool_print_error_printf (
                        read_only ? _ ("%s is served read-write already; detach it first")
                                  : _ ("%s is served read-only already; detach it first"),
                        path);
                return EXIT_FAILURE;
        }
        users = domains_using (conn, server.socket, domain);
        if (running && !read_only && users->len > 0) {
                g_autofree char *list = join_names (users);

                tool_print_error_printf (_ ("%s is attached read-write to %s already"), path, list);
                return EXIT_FAILURE;
        }
        if (!running && !check_image (path, read_only, &sector_size, &error))
                return pool_fail (error);
        if (running) {
                g_autoptr (GFile) file = g_file_new_for_path (path);
                g_autoptr (VhdxImage) image =
                        vhdx_image_new (file, VHDX_OPEN_FLAGS_FORCE_SHARE, NULL, NULL);

                if (image != NULL)
                        sector_size = vhdx_image_get_logical_sector_size (image);
        }

        disks = domain_disks_of (domain, flags, &error);
        if (disks == NULL)
                return pool_fail (error);
        if (find_disk (disks, NULL, server.socket) != NULL) {
                tool_print_error_printf (_ ("%s is attached to domain '%s' already"), path,
                                         virDomainGetName (domain));
                return EXIT_FAILURE;
        }
        if (target == NULL)
                target = free_target (disks);
        if (target == NULL || find_disk (disks, target, NULL) != NULL) {
                tool_print_error_printf (_ ("domain '%s' has a disk %s already"),
                                         virDomainGetName (domain),
                                         target != NULL ? target : "vda-vdz");
                return EXIT_FAILURE;
        }
        xml = disk_xml (path, server.socket, target, sector_size, read_only);

        if (dry_run) {
                g_autoptr (GPtrArray) command = server_command (&server, read_only);
                g_autofree char *line = g_strjoinv (" ", (char **) command->pdata);

                g_print ("%s", xml);
                if (running)
                        g_print (_ ("# served already (pid %d)\n"), (int) server_pid (&server));
                else if (server_uses_systemd (&server))
                        g_print ("# systemctl --user start %s\n", server.unit);
                else
                        g_print ("# %s\n", line);
                return EXIT_SUCCESS;
        }

        if (!running) {
                if (!server_start (&server, read_only, &error)) {
                        g_autoptr (GError) ignored = NULL;

                        (void) server_stop (&server, &ignored);
                        return pool_fail (error);
                }
                started = TRUE;
        }
        if (virDomainAttachDeviceFlags (domain, xml, flags) < 0) {
                pool_set_libvirt_error (&error, _ ("cannot attach %s to domain '%s'"), path,
                                        virDomainGetName (domain));
                if (started) {
                        g_autoptr (GError) ignored = NULL;

                        (void) server_stop (&server, &ignored);
                }
                return pool_fail (error);
        }
        g_print (_ ("Attached %s to domain '%s' as %s (NBD socket %s)\n"), path,
                 virDomainGetName (domain), target, server.socket);
        return EXIT_SUCCESS;
}

/* Wait until the running @domain no longer has the disk @target: a guest
 * lets a disk go when it will.  FALSE when it still has it. */
static gboolean
wait_unplugged (virDomainPtr domain, const char *target)
{
        for (guint i = 0; i < UNPLUG_POLLS; i++) {
                g_autoptr (GPtrArray) disks =
                        domain_disks_of (domain, VIR_DOMAIN_AFFECT_LIVE, NULL);

                if (disks != NULL && find_disk (disks, target, NULL) == NULL)
                        return TRUE;
                g_usleep (POLL_MS * 1000);
        }
        return FALSE;
}

int
pool_cmd_detach (int argc, char **argv)
{
        g_autofree char *uri = NULL;
        gboolean live = FALSE, config = FALSE;
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "connect", 'c', 0, G_OPTION_ARG_STRING, &uri,
                  N_ ("Connect to the hypervisor at URI, as virsh does"), N_ ("URI") },
                { "live", 0, 0, G_OPTION_ARG_NONE, &live, N_ ("Detach from the running domain"),
                  NULL },
                { "config", 0, 0, G_OPTION_ARG_NONE, &config,
                  N_ ("Detach from the domain's persistent definition"), NULL },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (virConnect) conn = NULL;
        g_autoptr (virDomain) domain = NULL;
        g_autoptr (GPtrArray) disks = NULL;
        g_autoptr (GPtrArray) users = NULL;
        g_auto (Server) server = { NULL };
        g_autofree char *xml = NULL;
        g_autofree char *target = NULL;
        g_autofree char *socket = NULL;
        unsigned int flags;
        gboolean system, ours;
        Disk *disk;

        context = tool_command_context_new (
                "detach", _ ("DOMAIN IMAGE|DEV"),
                _ ("Detach a VHDX image that attach added to a libvirt domain."),
                _ ("Removes the NBD disk of the VHDX image IMAGE (or the disk DEV) from\n"
                   "DOMAIN, as 'virsh detach-device' does, and stops the image's server\n"
                   "once no domain uses it: the image is closed cleanly and unlocked.  A\n"
                   "running guest lets the disk go when it will; while it has not, the\n"
                   "server keeps running.  Without --live or --config, the running domain\n"
                   "is changed if it runs, else its definition.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv))
                return EXIT_FAILURE;
        if (args == NULL || g_strv_length (args) != 2)
                return tool_usage_error ("%s", _ ("expected DOMAIN and IMAGE or DEV"));
        flags = affect_flags (live, config);

        conn = pool_connect (uri != NULL ? uri : pool_connect_uri, &error);
        if (conn == NULL)
                return pool_fail (error);
        domain = lookup_domain (conn, args[0], &error);
        if (domain == NULL)
                return pool_fail (error);
        system = connection_is_system (conn);
        disks = domain_disks_of (domain, flags, &error);
        if (disks == NULL)
                return pool_fail (error);
        if (g_file_test (args[1], G_FILE_TEST_EXISTS)) {
                g_autofree char *path = pool_canonical_path (args[1]);
                g_auto (Server) image_server = { NULL };

                server_init (&image_server, path, system);
                disk = find_disk (disks, NULL, image_server.socket);
        } else {
                disk = find_disk (disks, args[1], NULL);
        }
        if (disk == NULL || disk->socket == NULL || disk->target == NULL) {
                tool_print_error_printf (_ ("domain '%s' has no NBD disk of %s"),
                                         virDomainGetName (domain), args[1]);
                return EXIT_FAILURE;
        }
        target = g_strdup (disk->target);
        socket = g_strdup (disk->socket);
        ours = server_init_from_socket (&server, socket, system, NULL);
        {
                g_autofree char *escaped_socket = pool_xml_escape (socket);
                g_autofree char *escaped_target = pool_xml_escape (target);

                xml = g_strdup_printf ("<disk type='network' device='disk'><source protocol='nbd'>"
                                       "<host transport='unix' socket='%s'/></source>"
                                       "<target dev='%s'/></disk>",
                                       escaped_socket, escaped_target);
        }
        if (virDomainDetachDeviceFlags (domain, xml, flags) < 0) {
                pool_set_libvirt_error (&error, _ ("cannot detach %s from domain '%s'"), target,
                                        virDomainGetName (domain));
                return pool_fail (error);
        }
        if (virDomainIsActive (domain) == 1 && (live || !config) &&
            !wait_unplugged (domain, target)) {
                g_print (_ ("Asked domain '%s' to let %s go; the guest has not yet, and the "
                            "server keeps running: run detach again once it has\n"),
                         virDomainGetName (domain), target);
                return EXIT_SUCCESS;
        }
        g_print (_ ("Detached %s from domain '%s'\n"), target, virDomainGetName (domain));
        if (!ours)
                return EXIT_SUCCESS;
        users = domains_using (conn, socket, NULL);
        if (users->len > 0) {
                g_autofree char *list = join_names (users);

                g_print (_ ("The server of %s keeps running for %s\n"), server.image, list);
                return EXIT_SUCCESS;
        }
        if (!server_stop (&server, &error))
                return pool_fail (error);
        g_print (_ ("Stopped the NBD server of %s\n"), server.image);
        return EXIT_SUCCESS;
}
