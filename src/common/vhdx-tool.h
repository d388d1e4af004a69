/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the command line programs (vhdx, vhdx-pool) share: their start-up,
 * one-line error messages, commands and their option contexts, help,
 * progress on a terminal, JSON output, and output files written under a
 * temporary name that a fatal signal removes, or onto a block device.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef int (*ToolCommandFunc) (int argc, char **argv);

typedef struct {
        const char *name;
        const char *summary; /* N_() */
        ToolCommandFunc func;
} ToolCommand;

/* Set the locale, the translation domain and the program name (e.g. "vhdx"). */
void tool_init (const char *program);

/* "PROGRAM: SUBJECT: MESSAGE" (or "PROGRAM: MESSAGE") on standard error, on one line. */
void tool_print_error (const char *subject, const char *message);
/* tool_print_error() of a message made from @format. */
void tool_print_error_printf (const char *format, ...) G_GNUC_PRINTF (1, 2);
/* tool_print_error() with @path's display name as the subject. */
void tool_print_file_error (const char *path, const GError *error);
/* An error of the command line, then the hint to ask for help; returns EXIT_FAILURE. */
int tool_usage_error (const char *format, ...) G_GNUC_PRINTF (1, 2);

/*
 * The option context of @command: its parameters and summary and
 * description (translated already), and @entries (translated in the
 * program's domain).  The program name becomes "PROGRAM COMMAND".
 */
G_GNUC_WARN_UNUSED_RESULT GOptionContext *tool_command_context_new (const char *command,
                                                                    const char *parameters,
                                                                    const char *summary,
                                                                    const char *description,
                                                                    const GOptionEntry *entries);
/* Parse the command line; a usage error when it is wrong. */
G_GNUC_WARN_UNUSED_RESULT gboolean tool_parse_command_line (GOptionContext *context,
                                                            int *argc,
                                                            char ***argv);
/* A usage error unless @args (NULL-terminated, may be NULL) holds exactly @n_args. */
G_GNUC_WARN_UNUSED_RESULT gboolean tool_check_arguments (const char *command,
                                                         char **args,
                                                         guint n_args);

/* Whether @arg asks for help: --help, -h or -?. */
gboolean tool_is_help_option (const char *arg);
/* The command named @name in @commands, or NULL. */
const ToolCommand *tool_find_command (const ToolCommand *commands,
                                      gsize n_commands,
                                      const char *name);
/* The "Commands:" section of a help text, with the help command last. */
void tool_print_commands (const ToolCommand *commands, gsize n_commands);
/* Flush standard output; an error (unless the reader went away) and FALSE when it fails. */
gboolean tool_flush_stdout (void);

/* Print @root as indented JSON, UTF-8 whatever the locale. */
void tool_print_json (JsonNode *root);

/* A byte count with an optional K, M, G or T suffix (powers of 1024), at
 * least @min; a usage error naming @name otherwise. */
G_GNUC_WARN_UNUSED_RESULT gboolean tool_parse_size (const char *name,
                                                    const char *text,
                                                    guint64 min,
                                                    guint64 *value);

/* A SIZE argument: a size, or with a sign, a change of the current size. */
typedef struct {
        int sign; /* 0 for a size, +1 or -1 for a change */
        guint64 amount;
} ToolSizeChange;

G_GNUC_WARN_UNUSED_RESULT gboolean tool_size_change_parse (const char *name,
                                                           const char *text,
                                                           ToolSizeChange *change);
/* The new size of a disk of @current bytes; a usage error when it cannot be. */
G_GNUC_WARN_UNUSED_RESULT gboolean tool_size_change_apply (const ToolSizeChange *change,
                                                           guint64 current,
                                                           guint64 *value);

/*
 * A negative SIZE (-1G) would be taken for an unknown option: without a
 * "--" of the user's, such arguments are moved after one at the end.  An
 * argument that is the value of one of the options @takes_value
 * (NULL-terminated) before it stays where it is.  NULL when nothing moves;
 * the new vector (free it, not its strings) shares the strings of @argv.
 */
G_GNUC_WARN_UNUSED_RESULT char **tool_arguments_with_negative_sizes_last (
        int argc,
        char **argv,
        const char *const *takes_value);

/* Progress of a long copy on a terminal, as qemu-img -p shows it. */
typedef struct {
        gboolean enabled;
        const char *label; /* printed in front, or NULL */
        guint64 total;
        int last_shown; /* hundredths of a percent, -1 before the first update */
} ToolProgress;

/* Shown only with @wanted and when standard error is a terminal. */
void tool_progress_start (ToolProgress *progress,
                          gboolean wanted,
                          const char *label,
                          guint64 total);
void tool_progress_update (ToolProgress *progress, guint64 done);
/* Show 100 % and end the line. */
void tool_progress_finish (ToolProgress *progress);
/* End the line after a failure. */
void tool_progress_abandon (ToolProgress *progress);

/* Progress of a library or engine operation, shown from its first report,
 * which gives the total: tool_progress_report() is the operation's
 * progress callback, taking a ToolReportedProgress. */
typedef struct {
        gboolean wanted;
        gboolean started;
        ToolProgress progress;
} ToolReportedProgress;

void tool_progress_report (guint64 done, guint64 total, gpointer user_data);
/* The end of the operation: 100 % on success, the line ended on failure. */
void tool_reported_progress_end (ToolReportedProgress *progress, gboolean ok);

/*
 * An output file written under a temporary name next to its destination
 * and renamed into place only when complete.  A fatal signal (SIGINT,
 * SIGTERM, SIGHUP) removes it, so an interrupted command never leaves a
 * half-written file behind.  One at a time.
 *
 * A destination that is a block device (a disk, a partition, a logical
 * volume) is written in place instead, where the caller allows it: opened
 * exclusively, so that the kernel refuses one that is mounted or in use,
 * under no other name, and nothing is removed when the command fails.
 */
typedef struct {
        char *destination;
        char *path; /* the temporary name, while the file is not in place */
        int fd;     /* valid while path is set, or on a device until committed */
        gboolean is_device;
        guint64 device_size; /* in bytes, when is_device */
} ToolOutput;

/* tool_output_create_full() that refuses a block device. */
G_GNUC_WARN_UNUSED_RESULT gboolean tool_output_create (ToolOutput *output,
                                                       const char *destination,
                                                       GError **error);
/* With @allow_device, an existing block device as @destination is opened
 * in place; without, it is refused (only a raw image can go onto one). */
G_GNUC_WARN_UNUSED_RESULT gboolean tool_output_create_full (ToolOutput *output,
                                                            const char *destination,
                                                            gboolean allow_device,
                                                            GError **error);
/*
 * Make the output ready for @size bytes of a disk: a new file becomes @size
 * bytes of holes; a device must hold at least @size bytes, and is left as
 * it is (tool_output_zero_range() zeroes what the copy does not write).
 */
G_GNUC_WARN_UNUSED_RESULT gboolean tool_output_set_size (ToolOutput *output,
                                                         guint64 size,
                                                         GError **error);
/*
 * Make [@start, @end) of a device read as zeros, by the fastest means the
 * kernel has (whole pages; the bytes beyond are written); nothing to do in
 * a new file, whose holes read as zeros.  Other ranges may be written at
 * the same time by other threads.
 */
G_GNUC_WARN_UNUSED_RESULT gboolean tool_output_zero_range (ToolOutput *output,
                                                           guint64 start,
                                                           guint64 end,
                                                           GError **error);
/* fsync, rename into place, sync the directory (a device: fsync only). */
G_GNUC_WARN_UNUSED_RESULT gboolean tool_output_commit (ToolOutput *output, GError **error);
/* tool_output_commit() without either sync (@sync FALSE): the file is in
 * place, and the kernel writes it back when it will, as `cp` leaves a copy. */
G_GNUC_WARN_UNUSED_RESULT gboolean tool_output_commit_full (ToolOutput *output,
                                                            gboolean sync,
                                                            GError **error);
/* Remove the temporary file (if any), close a device; also what g_auto() does. */
void tool_output_clear (ToolOutput *output);

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (ToolOutput, tool_output_clear)

/* Where nbdkit finds the vhdx plugin: $VHDX_NBDKIT_PLUGIN; beside the
 * program in a build tree; where it is installed; else by its name. */
G_GNUC_WARN_UNUSED_RESULT char *tool_nbdkit_plugin_path (void);

G_END_DECLS
