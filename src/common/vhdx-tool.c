/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the command line programs share (see vhdx-tool.h). */
#include "config.h"

#include "vhdx-tool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>

#include "vhdx-io.h"

static const char *program_name = "vhdx";
/* The command being run, for the hint that follows a usage error. */
static const char *current_command = NULL;

void
tool_init (const char *program)
{
        const char *localedir = secure_getenv ("VHDX_LOCALEDIR");

        setlocale (LC_ALL, "");
        /* VHDX_LOCALEDIR: the catalogs of a build tree, for its tests.  The
         * library reads it too, so both bind the domain to the same place. */
        bindtextdomain (GETTEXT_PACKAGE,
                        localedir != NULL && localedir[0] != '\0' ? localedir : LOCALEDIR);
        bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
        textdomain (GETTEXT_PACKAGE);
        program_name = program;
        g_set_prgname (program);
}

/* Errors */

void
tool_print_error (const char *subject, const char *message)
{
        g_autofree char *flat = g_strdup (message);

        /* Keep every failure on exactly one line. */
        g_strdelimit (flat, "\r\n", ' ');
        if (subject != NULL)
                g_printerr ("%s: %s: %s\n", program_name, subject, flat);
        else
                g_printerr ("%s: %s\n", program_name, flat);
}

void
tool_print_error_printf (const char *format, ...)
{
        g_autofree char *message = NULL;
        va_list args;

        va_start (args, format);
        message = g_strdup_vprintf (format, args);
        va_end (args);
        tool_print_error (NULL, message);
}

void
tool_print_file_error (const char *path, const GError *error)
{
        g_autofree char *display = g_filename_display_name (path);

        tool_print_error (display, error->message);
}

int
tool_usage_error (const char *format, ...)
{
        va_list args;
        g_autofree char *message = NULL;

        va_start (args, format);
        message = g_strdup_vprintf (format, args);
        va_end (args);

        tool_print_error (NULL, message);
        if (current_command != NULL)
                /* TRANSLATORS: the program, then the command */
                g_printerr (_ ("Try '%s %s --help' for more information.\n"), program_name,
                            current_command);
        else
                g_printerr (_ ("Try '%s --help' for more information.\n"), program_name);
        return EXIT_FAILURE;
}

/* Commands and options */

GOptionContext *
tool_command_context_new (const char *command,
                          const char *parameters,
                          const char *summary,
                          const char *description,
                          const GOptionEntry *entries)
{
        GOptionContext *context;
        g_autofree char *prgname = g_strdup_printf ("%s %s", program_name, command);

        g_set_prgname (prgname);
        current_command = command;
        context = g_option_context_new (parameters);
        g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
        g_option_context_set_summary (context, summary);
        if (description != NULL)
                g_option_context_set_description (context, description);
        g_option_context_add_main_entries (context, entries, GETTEXT_PACKAGE);
        return context;
}

gboolean
tool_parse_command_line (GOptionContext *context, int *argc, char ***argv)
{
        g_autoptr (GError) error = NULL;

        if (!g_option_context_parse (context, argc, argv, &error)) {
                tool_usage_error ("%s", error->message);
                return FALSE;
        }
        return TRUE;
}

gboolean
tool_check_arguments (const char *command, char **args, guint n_args)
{
        guint n_given = args != NULL ? g_strv_length (args) : 0;

        if (n_given < n_args) {
                tool_usage_error (_ ("%s: missing argument"), command);
                return FALSE;
        }
        if (n_given > n_args) {
                g_autofree char *display = g_filename_display_name (args[n_args]);

                tool_usage_error (_ ("%s: unexpected argument '%s'"), command, display);
                return FALSE;
        }
        return TRUE;
}

gboolean
tool_is_help_option (const char *arg)
{
        return g_str_equal (arg, "--help") || g_str_equal (arg, "-h") || g_str_equal (arg, "-?");
}

const ToolCommand *
tool_find_command (const ToolCommand *commands, gsize n_commands, const char *name)
{
        for (gsize i = 0; name != NULL && i < n_commands; i++) {
                if (g_str_equal (commands[i].name, name))
                        return &commands[i];
        }
        return NULL;
}

void
tool_print_commands (const ToolCommand *commands, gsize n_commands)
{
        /* The summaries in one column, past the longest name. */
        int width = (int) strlen ("help") + 2;

        for (gsize i = 0; i < n_commands; i++)
                width = MAX (width, (int) strlen (commands[i].name) + 2);
        g_print ("%s\n", _ ("Commands:"));
        for (gsize i = 0; i < n_commands; i++)
                g_print ("  %-*s%s\n", width, commands[i].name, _ (commands[i].summary));
        g_print ("  %-*s%s\n", width, "help", _ ("Show help for a command"));
}

gboolean
tool_flush_stdout (void)
{
        if (fflush (stdout) != 0 || ferror (stdout)) {
                int saved_errno = errno != 0 ? errno : EIO;

                if (saved_errno != EPIPE)
                        tool_print_error (_ ("standard output"), g_strerror (saved_errno));
                return FALSE;
        }
        return TRUE;
}

/* Output */

void
tool_print_json (JsonNode *root)
{
        g_autoptr (JsonGenerator) generator = json_generator_new ();
        g_autofree char *text = NULL;

        json_generator_set_pretty (generator, TRUE);
        json_generator_set_indent (generator, 4);
        json_generator_set_root (generator, root);
        text = json_generator_to_data (generator, NULL);

        /* JSON is UTF-8 whatever the locale says: bypass g_print's conversion. */
        fputs (text, stdout);
        fputc ('\n', stdout);
}

gboolean
tool_parse_size (const char *name, const char *text, guint64 min, guint64 *value)
{
        g_autofree char *number = g_strdup (text);
        g_autoptr (GError) error = NULL;
        gsize len = strlen (number);
        guint shift = 0;
        guint64 v;

        if (len > 0) {
                switch (g_ascii_toupper (number[len - 1])) {
                case 'K':
                        shift = 10;
                        break;
                case 'M':
                        shift = 20;
                        break;
                case 'G':
                        shift = 30;
                        break;
                case 'T':
                        shift = 40;
                        break;
                default:
                        break;
                }
                if (shift > 0)
                        number[len - 1] = '\0';
        }
        /* The smallest count that makes @min with the suffix's unit. */
        if (!g_ascii_string_to_unsigned (number, 10,
                                         (min + (G_GUINT64_CONSTANT (1) << shift) - 1) >> shift,
                                         G_MAXUINT64 >> shift, &v, &error)) {
                tool_usage_error ("%s: %s", name, error->message);
                return FALSE;
        }
        *value = v << shift;
        return TRUE;
}

gboolean
tool_size_change_parse (const char *name, const char *text, ToolSizeChange *change)
{
        change->sign = 0;
        if (text[0] == '+' || text[0] == '-') {
                change->sign = text[0] == '+' ? 1 : -1;
                text++;
        }
        return tool_parse_size (name, text, 0, &change->amount);
}

gboolean
tool_size_change_apply (const ToolSizeChange *change, guint64 current, guint64 *value)
{
        if (change->sign > 0 && change->amount > G_MAXUINT64 - current) {
                tool_usage_error ("%s", _ ("SIZE: the disk cannot grow by that much"));
                return FALSE;
        }
        if (change->sign < 0 && change->amount > current) {
                tool_usage_error (_ ("SIZE: the disk has only %llu bytes"),
                                  (unsigned long long) current);
                return FALSE;
        }
        *value = change->sign > 0   ? current + change->amount
                 : change->sign < 0 ? current - change->amount
                                    : change->amount;
        return TRUE;
}

char **
tool_arguments_with_negative_sizes_last (int argc, char **argv, const char *const *takes_value)
{
        GPtrArray *options = g_ptr_array_new ();
        GPtrArray *sizes = g_ptr_array_new ();

        for (int i = 0; i < argc; i++) {
                gboolean is_value = FALSE;

                if (g_str_equal (argv[i], "--")) {
                        g_ptr_array_unref (options);
                        g_ptr_array_unref (sizes);
                        return NULL;
                }
                for (gsize j = 0; i > 0 && takes_value[j] != NULL; j++)
                        is_value = is_value || g_str_equal (argv[i - 1], takes_value[j]);
                if (i > 0 && !is_value && argv[i][0] == '-' && g_ascii_isdigit (argv[i][1]))
                        g_ptr_array_add (sizes, argv[i]);
                else
                        g_ptr_array_add (options, argv[i]);
        }
        if (sizes->len == 0) {
                g_ptr_array_unref (options);
                g_ptr_array_unref (sizes);
                return NULL;
        }
        g_ptr_array_add (options, (char *) "--");
        for (guint i = 0; i < sizes->len; i++)
                g_ptr_array_add (options, g_ptr_array_index (sizes, i));
        g_ptr_array_unref (sizes);
        g_ptr_array_add (options, NULL);
        return (char **) g_ptr_array_free (options, FALSE);
}

void
tool_progress_start (ToolProgress *progress, gboolean wanted, const char *label, guint64 total)
{
        progress->enabled = wanted && isatty (STDERR_FILENO);
        progress->label = label;
        progress->total = total;
        progress->last_shown = -1;
        tool_progress_update (progress, 0);
}

void
tool_progress_update (ToolProgress *progress, guint64 done)
{
        int hundredths;

        if (!progress->enabled)
                return;
        hundredths = progress->total == 0
                             ? 10000
                             : (int) ((double) done * 10000.0 / (double) progress->total);
        if (hundredths == progress->last_shown)
                return;
        progress->last_shown = hundredths;
        fprintf (stderr, "%s    (%d.%02d/100%%)\r", progress->label != NULL ? progress->label : "",
                 hundredths / 100, hundredths % 100);
        fflush (stderr);
}

void
tool_progress_finish (ToolProgress *progress)
{
        if (!progress->enabled)
                return;
        tool_progress_update (progress, progress->total);
        fputc ('\n', stderr);
}

void
tool_progress_abandon (ToolProgress *progress)
{
        if (progress->enabled && progress->last_shown >= 0)
                fputc ('\n', stderr);
}

void
tool_progress_report (guint64 done, guint64 total, gpointer user_data)
{
        ToolReportedProgress *p = user_data;

        if (!p->started) {
                tool_progress_start (&p->progress, p->wanted, NULL, total);
                p->started = TRUE;
        }
        p->progress.total = total;
        tool_progress_update (&p->progress, done);
}

void
tool_reported_progress_end (ToolReportedProgress *progress, gboolean ok)
{
        if (!progress->started)
                return;
        if (ok)
                tool_progress_finish (&progress->progress);
        else
                tool_progress_abandon (&progress->progress);
}

/* Output files */

/*
 * The temporary file being written.  A fatal signal removes it: the path is
 * kept in static storage that the handler may read.
 */
static char cleanup_path[PATH_MAX];
static volatile sig_atomic_t cleanup_armed = 0;

static const int cleanup_signals[] = { SIGINT, SIGTERM, SIGHUP };

static void
handle_fatal_signal (int signum)
{
        if (cleanup_armed)
                unlink (cleanup_path);
        /* SA_RESETHAND restored the default action: die of the same signal. */
        raise (signum);
}

static void
block_cleanup_signals (gboolean block, sigset_t *old)
{
        sigset_t set;

        if (block) {
                sigemptyset (&set);
                for (gsize i = 0; i < G_N_ELEMENTS (cleanup_signals); i++)
                        sigaddset (&set, cleanup_signals[i]);
                sigprocmask (SIG_BLOCK, &set, old);
        } else {
                sigprocmask (SIG_SETMASK, old, NULL);
        }
}

static void
disarm_cleanup (void)
{
        sigset_t old;

        block_cleanup_signals (TRUE, &old);
        cleanup_armed = 0;
        block_cleanup_signals (FALSE, &old);
}

/* The size of the block device @fd in bytes. */
static gboolean
device_size_of (int fd, guint64 *size, GError **error)
{
        off_t end;

        if (ioctl (fd, BLKGETSIZE64, size) == 0)
                return TRUE;
        end = lseek (fd, 0, SEEK_END);
        if (end < 0) {
                vhdx_set_error_from_errno (error, errno);
                return FALSE;
        }
        *size = (guint64) end;
        return TRUE;
}

/*
 * Open the block device @destination for writing in place.  O_EXCL claims
 * it as a mount does: the kernel refuses a device that is mounted, part of
 * a RAID or LVM volume in use, or open with O_EXCL by another program.
 */
static gboolean
output_open_device (ToolOutput *output, const char *destination, GError **error)
{
        struct stat st;
        int fd;

        do
                fd = g_open (destination, O_WRONLY | O_CLOEXEC | O_EXCL, 0);
        while (fd < 0 && errno == EINTR);
        if (fd < 0) {
                if (errno == EBUSY)
                        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_BUSY,
                                             _ ("the device is in use (mounted, or open "
                                                "exclusively by another program)"));
                else
                        vhdx_set_error_from_errno (error, errno);
                return FALSE;
        }
        /* Without O_CREAT, O_EXCL claims a block device only: anything else
         * put there since the stat() is not written in place. */
        if (fstat (fd, &st) < 0) {
                vhdx_set_error_from_errno (error, errno);
                close (fd);
                return FALSE;
        }
        if (!S_ISBLK (st.st_mode)) {
                vhdx_set_error_from_errno (error, ENOTBLK);
                close (fd);
                return FALSE;
        }
        if (!device_size_of (fd, &output->device_size, error)) {
                close (fd);
                return FALSE;
        }
        output->fd = fd;
        output->is_device = TRUE;
        output->destination = g_strdup (destination);
        return TRUE;
}

gboolean
tool_output_create (ToolOutput *output, const char *destination, GError **error)
{
        return tool_output_create_full (output, destination, FALSE, error);
}

gboolean
tool_output_create_full (ToolOutput *output,
                         const char *destination,
                         gboolean allow_device,
                         GError **error)
{
        static gboolean handlers_installed = FALSE;
        g_autofree char *path = g_strdup_printf ("%s.XXXXXX", destination);
        struct stat st;

        g_return_val_if_fail (!cleanup_armed, FALSE);

        memset (output, 0, sizeof *output);
        output->fd = -1;
        /* A temporary name beside a device would be a file in /dev renamed
         * over the device's node. */
        if (g_stat (destination, &st) == 0 && S_ISBLK (st.st_mode)) {
                if (allow_device)
                        return output_open_device (output, destination, error);
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE,
                                     _ ("a block device: only raw output can be written "
                                        "onto one"));
                return FALSE;
        }
        if (strlen (path) >= sizeof cleanup_path) {
                vhdx_set_error_from_errno (error, ENAMETOOLONG);
                return FALSE;
        }
        if (!handlers_installed) {
                struct sigaction action;

                memset (&action, 0, sizeof action);
                action.sa_handler = handle_fatal_signal;
                action.sa_flags = SA_RESETHAND;
                sigemptyset (&action.sa_mask);
                for (gsize i = 0; i < G_N_ELEMENTS (cleanup_signals); i++)
                        sigaction (cleanup_signals[i], &action, NULL);
                handlers_installed = TRUE;
        }
        /* A signal between creating the file and arming its removal would leave it. */
        {
                sigset_t old;

                block_cleanup_signals (TRUE, &old);
                output->fd = g_mkstemp_full (path, O_RDWR | O_CLOEXEC, 0644);
                if (output->fd >= 0) {
                        memcpy (cleanup_path, path, strlen (path) + 1);
                        cleanup_armed = 1;
                } else {
                        vhdx_set_error_from_errno (error, errno);
                }
                block_cleanup_signals (FALSE, &old);
        }
        if (output->fd < 0)
                return FALSE;
        output->destination = g_strdup (destination);
        output->path = g_steal_pointer (&path);
        return TRUE;
}

static void
sync_directory (const char *path)
{
        g_autofree char *dir = g_path_get_dirname (path);
        int fd = g_open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);

        /* Best effort: the data itself was synced before the rename. */
        if (fd >= 0) {
                fsync (fd);
                close (fd);
        }
}

/* Zero [@start, @end) of the block device @fd, in whole logical blocks,
 * in the kernel: FALSE (errno set) when it cannot. */
static gboolean
zero_device_in_kernel (int fd, guint64 start, guint64 end)
{
        /* Unmapped where the device can and reads zeros after it (thin
         * volumes, loop devices over sparse files, most SSDs): no space
         * used, nothing written.  Otherwise written as zeros by the device
         * (WRITE ZEROES) or by the kernel.  Block devices take both modes
         * since Linux 4.9; BLKZEROOUT is the older ioctl for the second. */
        static const int modes[] = {
                FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
        };
        guint64 range[2] = { start, end - start };

        for (gsize i = 0; i < G_N_ELEMENTS (modes); i++) {
                if (fallocate (fd, modes[i], (off_t) start, (off_t) (end - start)) == 0)
                        return TRUE;
        }
        return ioctl (fd, BLKZEROOUT, range) == 0;
}

/* Write zeros over [@start, @end) of @fd. */
static gboolean
write_zeros (int fd, guint64 start, guint64 end, GError **error)
{
        gsize chunk = (gsize) MIN (end - start, (guint64) 1 << 20);
        g_autofree guint8 *zeros = NULL;

        if (start >= end)
                return TRUE;
        zeros = g_malloc0 (chunk);
        while (start < end) {
                ssize_t n = pwrite (fd, zeros, (gsize) MIN (end - start, (guint64) chunk),
                                    (off_t) start);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        vhdx_set_error_from_errno (error, n < 0 ? errno : EIO);
                        return FALSE;
                }
                start += (guint64) n;
        }
        return TRUE;
}

gboolean
tool_output_set_size (ToolOutput *output, guint64 size, GError **error)
{
        if (!output->is_device) {
                if (ftruncate (output->fd, (off_t) size) < 0) {
                        vhdx_set_error_from_errno (error, errno);
                        return FALSE;
                }
                return TRUE;
        }
        if (output->device_size < size) {
                g_autofree char *device =
                        g_format_size_full (output->device_size, G_FORMAT_SIZE_IEC_UNITS);
                g_autofree char *disk = g_format_size_full (size, G_FORMAT_SIZE_IEC_UNITS);

                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                             _ ("the device holds %s (%llu bytes), less than the disk's %s "
                                "(%llu bytes)"),
                             device, (unsigned long long) output->device_size, disk,
                             (unsigned long long) size);
                return FALSE;
        }
        return TRUE;
}

/* The kernel zeroes whole pages of the device here: a page that the
 * range shares with data another thread writes stays in the page cache,
 * where both writes meet, and its bytes in the range are written. */
#define DEVICE_ZERO_ALIGNMENT ((guint64) 4096)

gboolean
tool_output_zero_range (ToolOutput *output, guint64 start, guint64 end, GError **error)
{
        guint64 first =
                (start + DEVICE_ZERO_ALIGNMENT - 1) / DEVICE_ZERO_ALIGNMENT * DEVICE_ZERO_ALIGNMENT;
        guint64 last = end / DEVICE_ZERO_ALIGNMENT * DEVICE_ZERO_ALIGNMENT;

        if (!output->is_device || start >= end)
                return TRUE;
        if (first >= last)
                return write_zeros (output->fd, start, end, error);
        if (!zero_device_in_kernel (output->fd, first, last))
                return write_zeros (output->fd, start, end, error);
        return write_zeros (output->fd, start, first, error) &&
               write_zeros (output->fd, last, end, error);
}

gboolean
tool_output_commit (ToolOutput *output, GError **error)
{
        return tool_output_commit_full (output, TRUE, error);
}

gboolean
tool_output_commit_full (ToolOutput *output, gboolean sync, GError **error)
{
        sigset_t old;
        int fd = output->fd;

        output->fd = -1;
        if ((sync && fsync (fd) < 0) || close (fd) < 0) {
                vhdx_set_error_from_errno (error, errno);
                return FALSE;
        }
        if (output->is_device)
                return TRUE;
        block_cleanup_signals (TRUE, &old);
        if (rename (output->path, output->destination) < 0) {
                vhdx_set_error_from_errno (error, errno);
                block_cleanup_signals (FALSE, &old);
                return FALSE;
        }
        g_clear_pointer (&output->path, g_free);
        cleanup_armed = 0;
        block_cleanup_signals (FALSE, &old);
        if (sync)
                sync_directory (output->destination);
        return TRUE;
}

void
tool_output_clear (ToolOutput *output)
{
        /* The descriptor is open while path is set (the file not in place)
         * and on a device until committed. */
        if (output->fd >= 0)
                close (output->fd);
        if (output->path != NULL) {
                g_unlink (output->path);
                disarm_cleanup ();
        }
        output->fd = -1;
        output->is_device = FALSE;
        output->device_size = 0;
        g_clear_pointer (&output->path, g_free);
        g_clear_pointer (&output->destination, g_free);
}

/* nbdkit */

char *
tool_nbdkit_plugin_path (void)
{
        const char *env = g_getenv ("VHDX_NBDKIT_PLUGIN");
        g_autofree char *self = g_file_read_link ("/proc/self/exe", NULL);

        if (env != NULL && env[0] != '\0')
                return g_strdup (env);
        if (self != NULL) {
                g_autofree char *dir = g_path_get_dirname (self);
                g_autofree char *built =
                        g_build_filename (dir, "..", "nbdkit", "nbdkit-vhdx-plugin.so", NULL);

                if (g_file_test (built, G_FILE_TEST_IS_REGULAR))
                        return g_steal_pointer (&built);
        }
#ifdef NBDKIT_VHDX_PLUGIN
        if (g_file_test (NBDKIT_VHDX_PLUGIN, G_FILE_TEST_IS_REGULAR))
                return g_strdup (NBDKIT_VHDX_PLUGIN);
#endif
        return g_strdup ("vhdx");
}
