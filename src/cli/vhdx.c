/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhdx: a command line tool to inspect, check, map, read and convert
 * Hyper-V VHDX virtual disk images.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib.h>
#include <inttypes.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <vhdx.h>

#include "vhdx-check.h"
#include "vhdx-reader.h"
#include "vhdx-writer.h"

#define EXIT_CORRUPT 2

/* Large enough for fast sequential reads, small enough to keep memory low. */
#define CHUNK_SIZE (4 * VHDX_MiB)

typedef int (*CommandFunc) (int argc, char **argv);

typedef struct {
        const char *name;
        const char *summary;
        CommandFunc func;
} Command;

static int cmd_info (int argc, char **argv);
static int cmd_check (int argc, char **argv);
static int cmd_map (int argc, char **argv);
static int cmd_cat (int argc, char **argv);
static int cmd_convert (int argc, char **argv);
static int cmd_create (int argc, char **argv);

static const Command commands[] = {
        { "info", N_ ("Show what an image is made of"), cmd_info },
        { "check", N_ ("Check an image for corruption"), cmd_check },
        { "map", N_ ("Show which parts of the virtual disk hold data"), cmd_map },
        { "cat", N_ ("Write virtual disk bytes to standard output"), cmd_cat },
        { "convert", N_ ("Convert an image to a sparse raw image or to VHDX"), cmd_convert },
        { "create", N_ ("Create a new VHDX image"), cmd_create },
};

/*
 * The temporary file that `convert` is writing.  A fatal signal removes it,
 * so an interrupted conversion never leaves a half-written file behind.
 */
static char cleanup_path[PATH_MAX];
static volatile sig_atomic_t cleanup_armed = 0;

static const int cleanup_signals[] = { SIGINT, SIGTERM, SIGHUP };

/* The command being run, for the hint that follows a usage error. */
static const char *current_command = NULL;

/* Error output */

static void
print_line_error (const char *subject, const char *message)
{
        g_autofree char *flat = g_strdup (message);

        /* Keep every failure on exactly one line. */
        g_strdelimit (flat, "\r\n", ' ');
        if (subject != NULL)
                g_printerr ("vhdx: %s: %s\n", subject, flat);
        else
                g_printerr ("vhdx: %s\n", flat);
}

static void
print_file_error (const char *path, const GError *error)
{
        g_autofree char *display = g_filename_display_name (path);

        print_line_error (display, error->message);
}

static int usage_error (const char *format, ...) G_GNUC_PRINTF (1, 2);

static int
usage_error (const char *format, ...)
{
        va_list args;
        g_autofree char *message = NULL;

        va_start (args, format);
        message = g_strdup_vprintf (format, args);
        va_end (args);

        print_line_error (NULL, message);
        if (current_command != NULL)
                g_printerr (_ ("Try 'vhdx %s --help' for more information.\n"), current_command);
        else
                g_printerr (_ ("Try 'vhdx --help' for more information.\n"));
        return EXIT_FAILURE;
}

static void
set_error_from_errno (GError **error, int saved_errno)
{
        g_set_error_literal (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                             g_strerror (saved_errno));
}

/* Option parsing */

static GOptionContext *
command_context_new (const char *command,
                     const char *parameters,
                     const char *summary,
                     const char *description,
                     const GOptionEntry *entries)
{
        GOptionContext *context;
        g_autofree char *prgname = g_strdup_printf ("vhdx %s", command);

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

/* Parses the options of a command; prints a usage error and returns FALSE on failure. */
static gboolean
parse_command_line (GOptionContext *context, int argc, char **argv)
{
        g_autoptr (GError) error = NULL;

        if (!g_option_context_parse (context, &argc, &argv, &error)) {
                usage_error ("%s", error->message);
                return FALSE;
        }
        return TRUE;
}

static gboolean
check_arguments (const char *command, char **args, guint n_args)
{
        guint n_given = args != NULL ? g_strv_length (args) : 0;

        if (n_given < n_args) {
                usage_error (_ ("%s: missing argument"), command);
                return FALSE;
        }
        if (n_given > n_args) {
                g_autofree char *display = g_filename_display_name (args[n_args]);

                usage_error (_ ("%s: unexpected argument '%s'"), command, display);
                return FALSE;
        }
        return TRUE;
}

/* Opening images */

static VhdxFile *
open_image_full (const char *path,
                 VhdxOpenFlags flags,
                 const char *parent,
                 struct stat *st,
                 GError **error)
{
        VhdxOpenOptions options = { .path = path, .parent_path = parent };
        struct stat local_st;
        int fd;
        VhdxIo *io;

        fd = g_open (path, ((flags & VHDX_OPEN_FLAGS_READ_WRITE) ? O_RDWR : O_RDONLY) | O_CLOEXEC,
                     0);
        if (fd < 0) {
                set_error_from_errno (error, errno);
                return NULL;
        }
        if (fstat (fd, &local_st) < 0) {
                set_error_from_errno (error, errno);
                close (fd);
                return NULL;
        }
        if (S_ISDIR (local_st.st_mode)) {
                set_error_from_errno (error, EISDIR);
                close (fd);
                return NULL;
        }
        if (st != NULL)
                *st = local_st;

        io = vhdx_io_new_fd (fd, TRUE);
        return vhdx_file_open_full (io, flags, &options, error);
}

/* Output helpers */

static char *
format_size (guint64 bytes)
{
        return g_format_size_full (bytes, G_FORMAT_SIZE_IEC_UNITS | G_FORMAT_SIZE_LONG_FORMAT);
}

static gboolean
print_json (JsonNode *root)
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
        return TRUE;
}

typedef struct {
        char *label;
        char *value;
} Field;

static void
field_clear (Field *field)
{
        g_free (field->label);
        g_free (field->value);
}

static void
fields_add (GArray *fields, const char *label, char *value)
{
        Field field = { g_strdup (label), value };

        g_array_append_val (fields, field);
}

/* Prints "label: value" lines with the values in one column. */
static void
fields_print (GArray *fields)
{
        glong width = 0;

        for (guint i = 0; i < fields->len; i++) {
                const Field *field = &g_array_index (fields, Field, i);

                width = MAX (width, g_utf8_strlen (field->label, -1));
        }
        for (guint i = 0; i < fields->len; i++) {
                const Field *field = &g_array_index (fields, Field, i);
                glong pad = width - g_utf8_strlen (field->label, -1);

                g_print ("%s:%*s %s\n", field->label, (int) pad, "", field->value);
        }
}

/* vhdx info */

static void
info_print_text (const char *path, const VhdxInfo *info, const struct stat *st, guint64 allocated)
{
        g_autoptr (GArray) fields = g_array_new (FALSE, FALSE, sizeof (Field));

        g_array_set_clear_func (fields, (GDestroyNotify) field_clear);
        fields_add (fields, _ ("Image"), g_filename_display_name (path));
        fields_add (fields, _ ("Format"), g_strdup ("vhdx"));
        fields_add (fields, _ ("Disk type"), g_strdup (vhdx_disk_type_to_string (info->disk_type)));
        fields_add (fields, _ ("Virtual size"), format_size (info->virtual_size));
        fields_add (fields, _ ("Disk size"), format_size ((guint64) st->st_blocks * 512));
        fields_add (fields, _ ("Allocated"), format_size (allocated));
        fields_add (fields, _ ("Block size"), format_size (info->block_size));
        fields_add (fields, _ ("Logical sector size"),
                    g_strdup_printf ("%u", info->logical_sector_size));
        fields_add (fields, _ ("Physical sector size"),
                    g_strdup_printf ("%u", info->physical_sector_size));
        fields_add (fields, _ ("Virtual disk ID"), vhdx_guid_to_string (&info->virtual_disk_id));
        fields_add (fields, _ ("Data write GUID"), vhdx_guid_to_string (&info->data_write_guid));
        fields_add (fields, _ ("File write GUID"), vhdx_guid_to_string (&info->file_write_guid));
        fields_add (fields, _ ("Creator"), g_strdup (info->creator != NULL ? info->creator : ""));
        fields_add (fields, _ ("Log state"), g_strdup (vhdx_log_state_to_string (info->log_state)));
        fields_add (fields, _ ("Dirty"),
                    g_strdup (info->log_state != VHDX_LOG_STATE_CLEAN ? _ ("yes") : _ ("no")));
        fields_add (fields, _ ("Header sequence"),
                    /* TRANSLATORS: sequence number, then which header (1 or 2) is current */
                    g_strdup_printf (_ ("%llu (header %u)"),
                                     (unsigned long long) info->header_sequence,
                                     info->header_index));
        fields_print (fields);
}

/* The image (and with @chain, each of its parents) as JSON, from the library. */
static JsonNode *
info_json (const char *path, const char *parent, gboolean chain, GError **error)
{
        g_autoptr (GFile) gfile = g_file_new_for_path (path);
        g_autoptr (GFile) parent_file = parent != NULL ? g_file_new_for_path (parent) : NULL;
        g_autoptr (VhdxImage) image = NULL;
        g_autoptr (JsonArray) array = json_array_new ();
        g_autofree char *display = g_filename_display_name (path);

        image = g_initable_new (VHDX_TYPE_IMAGE, NULL, error, "file", gfile, "flags",
                                VHDX_OPEN_FLAGS_NONE, "parent-file", parent_file, NULL);
        if (image == NULL)
                return NULL;
        for (VhdxImage *member = g_object_ref (image); member != NULL;) {
                g_autoptr (VhdxImage) current = member;
                JsonNode *node = vhdx_image_to_json (current, NULL, error);

                if (node == NULL)
                        return NULL;
                if (current == image)
                        /* The image as it was named, as qemu-img prints it. */
                        json_object_set_string_member (json_node_get_object (node), "filename",
                                                       display);
                if (!chain)
                        return node;
                json_array_add_element (array, node);
                member = vhdx_image_dup_parent (current);
        }
        return json_node_init_array (json_node_alloc (), array);
}

static int
cmd_info (int argc, char **argv)
{
        gboolean json = FALSE;
        gboolean chain = FALSE;
        g_autofree char *parent = NULL;
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "json", 0, 0, G_OPTION_ARG_NONE, &json, N_ ("Print a JSON object"), NULL },
                { "backing-chain", 0, 0, G_OPTION_ARG_NONE, &chain,
                  N_ ("Show every image of a differencing image's chain, down to the base"), NULL },
                { "parent", 0, 0, G_OPTION_ARG_FILENAME, &parent,
                  N_ ("Use PARENT as the parent of a differencing image instead of the one its "
                      "locator names"),
                  N_ ("PARENT") },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        struct stat st;

        context = command_context_new (
                "info", _ ("IMAGE"), _ ("Show what an image is made of."),
                _ ("With --json, prints one object with the keys filename, format,\n"
                   "virtual-size, actual-size (bytes the file occupies on disk),\n"
                   "cluster-size (the block size), dirty-flag and format-specific\n"
                   "(type \"vhdx\"; data: disk-type, logical-sector-size,\n"
                   "physical-sector-size, virtual-disk-id, data-write-guid,\n"
                   "file-write-guid, creator, log-state, allocated-bytes,\n"
                   "header-sequence), and for a differencing image backing-filename\n"
                   "and full-backing-filename (its parent's path).  Sizes are in bytes.\n"
                   "With --backing-chain, one such object for each image of the chain,\n"
                   "in an array.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!parse_command_line (context, argc, argv))
                return EXIT_FAILURE;
        if (!check_arguments ("info", args, 1))
                return EXIT_FAILURE;

        if (json) {
                g_autoptr (JsonNode) root = info_json (args[0], parent, chain, &error);

                if (root == NULL) {
                        print_file_error (args[0], error);
                        return EXIT_FAILURE;
                }
                print_json (root);
                return EXIT_SUCCESS;
        }

        file = open_image_full (args[0], VHDX_OPEN_FLAGS_NONE, parent, &st, &error);
        if (file == NULL) {
                print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        for (VhdxFile *member = file, *child = NULL; member != NULL;
             child = member, member = vhdx_file_get_parent (member)) {
                const char *path = child == NULL ? args[0] : vhdx_file_get_parent_path (child);
                guint64 allocated = 0;

                if (child != NULL) {
                        g_print ("\n");
                        if (g_stat (path, &st) < 0)
                                memset (&st, 0, sizeof st);
                }
                if (!vhdx_file_get_allocated_bytes (member, &allocated, &error)) {
                        print_file_error (path, error);
                        return EXIT_FAILURE;
                }
                info_print_text (path, vhdx_file_get_info (member), &st, allocated);
                if (vhdx_file_get_parent (member) != NULL) {
                        g_autofree char *display =
                                g_filename_display_name (vhdx_file_get_parent_path (member));
                        g_print ("%-22s%s\n", _ ("Parent:"), display);
                }
                if (!chain)
                        break;
        }
        return EXIT_SUCCESS;
}

/* vhdx check */

static gboolean
error_is_corruption (const GError *error)
{
        return g_error_matches (error, VHDX_ERROR, VHDX_ERROR_INVALID) ||
               g_error_matches (error, VHDX_ERROR, VHDX_ERROR_CHECKSUM) ||
               g_error_matches (error, VHDX_ERROR, VHDX_ERROR_TRUNCATED) ||
               g_error_matches (error, VHDX_ERROR, VHDX_ERROR_LOG);
}

static JsonNode *
problems_to_json (const char *path,
                  GPtrArray *problems,
                  guint n_errors,
                  guint n_warnings,
                  const VhdxInfo *info)
{
        g_autoptr (JsonBuilder) builder = json_builder_new ();
        g_autofree char *display = g_filename_display_name (path);

        json_builder_begin_object (builder);
        json_builder_set_member_name (builder, "filename");
        json_builder_add_string_value (builder, display);
        json_builder_set_member_name (builder, "format");
        json_builder_add_string_value (builder, "vhdx");
        json_builder_set_member_name (builder, "check-errors");
        json_builder_add_int_value (builder, n_errors);
        json_builder_set_member_name (builder, "warnings");
        json_builder_add_int_value (builder, n_warnings);
        json_builder_set_member_name (builder, "problems");
        json_builder_begin_array (builder);
        for (guint i = 0; i < problems->len; i++) {
                const VhdxFinding *problem = g_ptr_array_index (problems, i);

                json_builder_begin_object (builder);
                json_builder_set_member_name (builder, "severity");
                json_builder_add_string_value (builder,
                                               vhdx_severity_to_string (problem->severity));
                json_builder_set_member_name (builder, "structure");
                json_builder_add_string_value (builder, problem->structure);
                json_builder_set_member_name (builder, "offset");
                json_builder_add_int_value (builder, (gint64) problem->offset);
                json_builder_set_member_name (builder, "message");
                json_builder_add_string_value (builder, problem->message);
                json_builder_end_object (builder);
        }
        json_builder_end_array (builder);
        json_builder_set_member_name (builder, "log-replayed");
        if (info != NULL && info->log_state == VHDX_LOG_STATE_REPLAYED) {
                json_builder_begin_object (builder);
                json_builder_set_member_name (builder, "entries");
                json_builder_add_int_value (builder, info->log_entries_replayed);
                json_builder_set_member_name (builder, "writes");
                json_builder_add_int_value (builder, info->log_writes_replayed);
                json_builder_set_member_name (builder, "header-sequence");
                json_builder_add_int_value (builder, (gint64) info->header_sequence);
                json_builder_end_object (builder);
        } else {
                json_builder_add_null_value (builder);
        }
        json_builder_end_object (builder);
        return json_builder_get_root (builder);
}

static void
problems_print_text (GPtrArray *problems, guint n_errors, guint n_warnings)
{
        for (guint i = 0; i < problems->len; i++) {
                const VhdxFinding *problem = g_ptr_array_index (problems, i);

                /* TRANSLATORS: severity, structure, file offset, message */
                g_print (_ ("%s: %s at offset %llu: %s\n"),
                         vhdx_severity_to_string (problem->severity), problem->structure,
                         (unsigned long long) problem->offset, problem->message);
        }

        if (n_errors == 0 && n_warnings == 0) {
                g_print ("%s\n", _ ("No errors were found on the image."));
        } else if (n_errors == 0) {
                g_print (g_dngettext (GETTEXT_PACKAGE,
                                      "No errors and %u warning were found on the image.\n",
                                      "No errors and %u warnings were found on the image.\n",
                                      n_warnings),
                         n_warnings);
        } else {
                g_autofree char *errors = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u error",
                                                                        "%u errors", n_errors),
                                                           n_errors);
                g_autofree char *warnings =
                        g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u warning", "%u warnings",
                                                      n_warnings),
                                         n_warnings);

                /* TRANSLATORS: "3 errors and 1 warning were found on the image." */
                g_print (_ ("%s and %s were found on the image.\n"), errors, warnings);
        }
}

static int
cmd_check (int argc, char **argv)
{
        gboolean json = FALSE;
        gboolean repair = FALSE;
        g_auto (GStrv) args = NULL;
        g_autofree char *parent = NULL;
        const GOptionEntry entries[] = {
                { "json", 0, 0, G_OPTION_ARG_NONE, &json, N_ ("Print a JSON object"), NULL },
                { "repair", 0, 0, G_OPTION_ARG_NONE, &repair,
                  N_ ("Replay a pending log onto the image (opens it for writing)"), NULL },
                { "parent", 0, 0, G_OPTION_ARG_FILENAME, &parent,
                  N_ ("Use PARENT as the parent of a differencing image instead of the one its "
                      "locator names"),
                  N_ ("PARENT") },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GPtrArray) problems = NULL;
        guint n_errors = 0;
        guint n_warnings = 0;

        context = command_context_new (
                "check", _ ("IMAGE"), _ ("Check an image for corruption."),
                _ ("Validates the headers, region tables, metadata, log and every BAT\n"
                   "entry, and prints one line per problem found, then a summary.\n"
                   "\n"
                   "With --json, prints one object with the keys filename, format,\n"
                   "check-errors (problems of severity error), warnings, problems\n"
                   "(an array of objects with severity, structure, offset and message)\n"
                   "and log-replayed (the entries and writes replayed onto the file\n"
                   "with --repair, or null).\n"
                   "\n"
                   "Without --repair the image is opened read-only: a log that still\n"
                   "has to be replayed is reported as a warning and the image is\n"
                   "checked as it reads after replaying it in memory.  With --repair\n"
                   "the log is replayed onto the file and the headers are updated,\n"
                   "so that every reader sees a clean image.\n"
                   "\n"
                   "Exit status: 0 if no error was found (warnings are allowed),\n"
                   "1 if the image could not be checked, 2 if it is corrupt."),
                entries);
        if (!parse_command_line (context, argc, argv))
                return EXIT_FAILURE;
        if (!check_arguments ("check", args, 1))
                return EXIT_FAILURE;

        problems = g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_finding_free);
        file = open_image_full (args[0], repair ? VHDX_OPEN_FLAGS_READ_WRITE : VHDX_OPEN_FLAGS_NONE,
                                parent, NULL, &error);
        if (file == NULL) {
                if (!error_is_corruption (error)) {
                        print_file_error (args[0], error);
                        return EXIT_FAILURE;
                }
                /* The image is too damaged to open: that is the finding. */
                vhdx_findings_add (problems, VHDX_SEVERITY_ERROR, _ ("image"), 0, "%s",
                                   error->message);
        } else {
                GPtrArray *open_findings = vhdx_file_get_open_findings (file);

                for (guint i = 0; open_findings != NULL && i < open_findings->len; i++) {
                        const VhdxFinding *problem = g_ptr_array_index (open_findings, i);

                        g_ptr_array_add (problems,
                                         vhdx_finding_new (problem->severity, problem->structure,
                                                           problem->offset, problem->message));
                }
                if (!vhdx_file_check (file, problems, &error)) {
                        print_file_error (args[0], error);
                        return EXIT_FAILURE;
                }
        }

        for (guint i = 0; i < problems->len; i++) {
                const VhdxFinding *problem = g_ptr_array_index (problems, i);

                if (problem->severity == VHDX_SEVERITY_ERROR)
                        n_errors++;
                else
                        n_warnings++;
        }

        if (json) {
                g_autoptr (JsonNode) root =
                        problems_to_json (args[0], problems, n_errors, n_warnings,
                                          file != NULL ? vhdx_file_get_info (file) : NULL);

                print_json (root);
        } else {
                if (file != NULL &&
                    vhdx_file_get_info (file)->log_state == VHDX_LOG_STATE_REPLAYED) {
                        const VhdxInfo *info = vhdx_file_get_info (file);
                        g_print (_ ("The log was replayed onto the image: %u entries, %u "
                                    "writes; header sequence number now %llu.\n"),
                                 info->log_entries_replayed, info->log_writes_replayed,
                                 (unsigned long long) info->header_sequence);
                }
                problems_print_text (problems, n_errors, n_warnings);
        }
        return vhdx_findings_have_errors (problems) ? EXIT_CORRUPT : EXIT_SUCCESS;
}

/* vhdx map */

static const char *
extent_kind_name (const VhdxMapExtent *extent)
{
        if (extent->kind == VHDX_EXTENT_DATA)
                return _ ("data");
        if (extent->present)
                return _ ("zero");
        return _ ("unallocated");
}

static JsonNode *
extents_to_json (GArray *extents)
{
        g_autoptr (JsonBuilder) builder = json_builder_new ();

        json_builder_begin_array (builder);
        for (guint i = 0; i < extents->len; i++) {
                const VhdxMapExtent *extent = &g_array_index (extents, VhdxMapExtent, i);
                gboolean data = extent->kind == VHDX_EXTENT_DATA;

                json_builder_begin_object (builder);
                json_builder_set_member_name (builder, "start");
                json_builder_add_int_value (builder, (gint64) extent->offset);
                json_builder_set_member_name (builder, "length");
                json_builder_add_int_value (builder, (gint64) extent->length);
                json_builder_set_member_name (builder, "depth");
                json_builder_add_int_value (builder, extent->depth);
                json_builder_set_member_name (builder, "present");
                json_builder_add_boolean_value (builder, data || extent->present);
                json_builder_set_member_name (builder, "zero");
                json_builder_add_boolean_value (builder, !data);
                json_builder_set_member_name (builder, "data");
                json_builder_add_boolean_value (builder, data);
                if (data) {
                        json_builder_set_member_name (builder, "offset");
                        json_builder_add_int_value (builder, (gint64) extent->file_offset);
                }
                json_builder_end_object (builder);
        }
        json_builder_end_array (builder);
        return json_builder_get_root (builder);
}

static void
print_padded (const char *text, glong width)
{
        glong pad = width - g_utf8_strlen (text, -1);

        g_print ("%s%*s", text, (int) MAX (pad, 1), "");
}

static void
extents_print_text (GArray *extents)
{
        const glong width = 20;
        const glong kind_width = 13;

        print_padded (_ ("Offset"), width);
        print_padded (_ ("Length"), width);
        print_padded (_ ("Kind"), kind_width);
        print_padded (_ ("Depth"), 7);
        g_print ("%s\n", _ ("File-offset"));

        for (guint i = 0; i < extents->len; i++) {
                const VhdxMapExtent *extent = &g_array_index (extents, VhdxMapExtent, i);
                g_autofree char *start = g_strdup_printf ("0x%" PRIx64, extent->offset);
                g_autofree char *length = g_strdup_printf ("0x%" PRIx64, extent->length);
                g_autofree char *depth = g_strdup_printf ("%u", extent->depth);

                print_padded (start, width);
                print_padded (length, width);
                print_padded (extent_kind_name (extent), kind_width);
                print_padded (depth, 7);
                if (extent->kind == VHDX_EXTENT_DATA)
                        g_print ("0x%" G_GINT64_MODIFIER "x\n", extent->file_offset);
                else
                        g_print ("-\n");
        }
}

static int
cmd_map (int argc, char **argv)
{
        gboolean json = FALSE;
        g_auto (GStrv) args = NULL;
        g_autofree char *parent = NULL;
        const GOptionEntry entries[] = {
                { "json", 0, 0, G_OPTION_ARG_NONE, &json,
                  N_ ("Print a JSON array like qemu-img map --output=json"), NULL },
                { "parent", 0, 0, G_OPTION_ARG_FILENAME, &parent,
                  N_ ("Use PARENT as the parent of a differencing image instead of the one its "
                      "locator names"),
                  N_ ("PARENT") },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GArray) extents = NULL;

        context = command_context_new (
                "map", _ ("IMAGE"), _ ("Show which parts of the virtual disk hold data."),
                _ ("Prints the virtual disk as a list of extents, from offset 0 to the\n"
                   "virtual size: data (stored in the file at File-offset), zero\n"
                   "(allocated but reads as zeros) or unallocated.\n"
                   "\n"
                   "With --json, prints an array of objects with the keys start,\n"
                   "length, depth, present, zero, data and, for data, offset (the file\n"
                   "offset), as qemu-img map --output=json does.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!parse_command_line (context, argc, argv))
                return EXIT_FAILURE;
        if (!check_arguments ("map", args, 1))
                return EXIT_FAILURE;

        file = open_image_full (args[0], VHDX_OPEN_FLAGS_NONE, parent, NULL, &error);
        if (file == NULL) {
                print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        extents = vhdx_file_map (file, 0, vhdx_file_get_info (file)->virtual_size, &error);
        if (extents == NULL) {
                print_file_error (args[0], error);
                return EXIT_FAILURE;
        }

        if (json) {
                g_autoptr (JsonNode) root = extents_to_json (extents);

                print_json (root);
        } else {
                extents_print_text (extents);
        }
        return EXIT_SUCCESS;
}

/* vhdx cat */

static gboolean
write_all (int fd, const guint8 *buf, gsize count, GError **error)
{
        while (count > 0) {
                ssize_t n = write (fd, buf, MIN (count, (gsize) G_MAXSSIZE));

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        set_error_from_errno (error, errno);
                        return FALSE;
                }
                if (n == 0) {
                        set_error_from_errno (error, EIO);
                        return FALSE;
                }
                buf += n;
                count -= (gsize) n;
        }
        return TRUE;
}

static gboolean
parse_size_option (const char *name, const char *text, guint64 *value)
{
        g_autoptr (GError) error = NULL;

        if (!g_ascii_string_to_unsigned (text, 10, 0, G_MAXUINT64, value, &error)) {
                usage_error ("--%s: %s", name, error->message);
                return FALSE;
        }
        return TRUE;
}

static int
cmd_cat (int argc, char **argv)
{
        g_autofree char *offset_text = NULL;
        g_autofree char *length_text = NULL;
        g_auto (GStrv) args = NULL;
        g_autofree char *parent = NULL;
        const GOptionEntry entries[] = {
                { "offset", 0, 0, G_OPTION_ARG_STRING, &offset_text,
                  N_ ("Start at byte N of the virtual disk (default 0)"), N_ ("N") },
                { "length", 0, 0, G_OPTION_ARG_STRING, &length_text,
                  N_ ("Write N bytes (default: up to the end of the disk)"), N_ ("N") },
                { "parent", 0, 0, G_OPTION_ARG_FILENAME, &parent,
                  N_ ("Use PARENT as the parent of a differencing image instead of the one its "
                      "locator names"),
                  N_ ("PARENT") },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autofree guint8 *buf = NULL;
        guint64 virtual_size;
        guint64 offset = 0;
        guint64 length = 0;
        guint64 end;

        context = command_context_new (
                "cat", _ ("IMAGE"), _ ("Write virtual disk bytes to standard output."),
                _ ("Writes the bytes of the virtual disk, as a guest would read them,\n"
                   "from --offset for --length bytes.  Both are plain byte counts and\n"
                   "must lie inside the virtual disk.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!parse_command_line (context, argc, argv))
                return EXIT_FAILURE;
        if (!check_arguments ("cat", args, 1))
                return EXIT_FAILURE;
        if (offset_text != NULL && !parse_size_option ("offset", offset_text, &offset))
                return EXIT_FAILURE;
        if (length_text != NULL && !parse_size_option ("length", length_text, &length))
                return EXIT_FAILURE;

        file = open_image_full (args[0], VHDX_OPEN_FLAGS_NONE, parent, NULL, &error);
        if (file == NULL) {
                print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        virtual_size = vhdx_file_get_info (file)->virtual_size;

        if (offset > virtual_size) {
                g_autofree char *message = g_strdup_printf (
                        _ ("offset %llu is beyond the end of the virtual disk (%llu bytes)"),
                        (unsigned long long) offset, (unsigned long long) virtual_size);

                print_line_error (args[0], message);
                return EXIT_FAILURE;
        }
        if (length_text == NULL)
                length = virtual_size - offset;
        if (!vhdx_add_u64 (offset, length, &end) || end > virtual_size) {
                g_autofree char *message = g_strdup_printf (
                        _ ("range of %llu bytes at offset %llu goes beyond the end of the "
                           "virtual disk (%llu bytes)"),
                        (unsigned long long) length, (unsigned long long) offset,
                        (unsigned long long) virtual_size);

                print_line_error (args[0], message);
                return EXIT_FAILURE;
        }

        /* See a closed pipe as EPIPE from write() instead of being killed. */
        signal (SIGPIPE, SIG_IGN);

        buf = g_malloc (MIN (length, CHUNK_SIZE) + 1);
        while (offset < end) {
                gsize n = (gsize) MIN (end - offset, CHUNK_SIZE);

                if (!vhdx_file_read (file, offset, buf, n, &error)) {
                        print_file_error (args[0], error);
                        return EXIT_FAILURE;
                }
                if (!write_all (STDOUT_FILENO, buf, n, &error)) {
                        /* The reader went away: stop quietly, as killed by SIGPIPE. */
                        if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE))
                                print_line_error (_ ("standard output"), error->message);
                        return EXIT_FAILURE;
                }
                offset += n;
        }
        return EXIT_SUCCESS;
}

/* vhdx convert */

static void
handle_fatal_signal (int signum)
{
        if (cleanup_armed)
                unlink (cleanup_path);
        /* SA_RESETHAND restored the default action: die of the same signal. */
        raise (signum);
}

static void
install_cleanup_handlers (void)
{
        struct sigaction action;

        memset (&action, 0, sizeof action);
        action.sa_handler = handle_fatal_signal;
        action.sa_flags = SA_RESETHAND;
        sigemptyset (&action.sa_mask);
        for (gsize i = 0; i < G_N_ELEMENTS (cleanup_signals); i++)
                sigaction (cleanup_signals[i], &action, NULL);
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

/* Creates the temporary file next to @dst and arms its removal on signals. */
static int
create_temporary (const char *dst, char **out_path, GError **error)
{
        g_autofree char *path = g_strdup_printf ("%s.XXXXXX", dst);
        sigset_t old;
        int fd;

        if (strlen (path) >= sizeof cleanup_path) {
                set_error_from_errno (error, ENAMETOOLONG);
                return -1;
        }

        block_cleanup_signals (TRUE, &old);
        fd = g_mkstemp_full (path, O_RDWR | O_CLOEXEC, 0644);
        if (fd >= 0) {
                memcpy (cleanup_path, path, strlen (path) + 1);
                cleanup_armed = 1;
        } else {
                set_error_from_errno (error, errno);
        }
        block_cleanup_signals (FALSE, &old);

        if (fd >= 0)
                *out_path = g_steal_pointer (&path);
        return fd;
}

static gboolean
pwrite_all (int fd, const guint8 *buf, gsize count, guint64 offset, GError **error)
{
        while (count > 0) {
                ssize_t n = pwrite (fd, buf, MIN (count, (gsize) G_MAXSSIZE), (off_t) offset);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        set_error_from_errno (error, errno);
                        return FALSE;
                }
                if (n == 0) {
                        set_error_from_errno (error, EIO);
                        return FALSE;
                }
                buf += n;
                count -= (gsize) n;
                offset += (guint64) n;
        }
        return TRUE;
}

static gboolean
buffer_is_zero (const guint8 *buf, gsize count)
{
        return count == 0 || (buf[0] == 0 && memcmp (buf, buf + 1, count - 1) == 0);
}

typedef struct {
        gboolean enabled;
        guint64 total;
        guint64 done;
        int last_shown; /* hundredths of a percent, -1 before the first update */
} Progress;

static void
progress_update (Progress *progress, guint64 done)
{
        int hundredths;

        progress->done = done;
        if (!progress->enabled)
                return;
        hundredths = progress->total == 0
                             ? 10000
                             : (int) ((double) done * 10000.0 / (double) progress->total);
        if (hundredths == progress->last_shown)
                return;
        progress->last_shown = hundredths;
        fprintf (stderr, "    (%d.%02d/100%%)\r", hundredths / 100, hundredths % 100);
        fflush (stderr);
}

static void
progress_finish (Progress *progress)
{
        if (!progress->enabled)
                return;
        progress_update (progress, progress->total);
        fputc ('\n', stderr);
}

static gboolean
same_file (const char *path, const struct stat *st)
{
        struct stat other;

        return g_stat (path, &other) == 0 && other.st_dev == st->st_dev &&
               other.st_ino == st->st_ino;
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

/* A source for convert: a VHDX image or a raw disk image, told apart by content. */
typedef struct {
        const char *path;
        VhdxFile *vhdx; /* NULL for a raw image */
        int fd;         /* raw images */
        guint64 size;
        struct stat st;
} Source;

static void
source_clear (Source *source)
{
        g_clear_pointer (&source->vhdx, vhdx_file_free);
        if (source->fd >= 0)
                close (source->fd);
        source->fd = -1;
}

static gboolean
source_open (Source *source, const char *path, const char *parent, GError **error)
{
        char signature[8] = { 0 };
        ssize_t n;

        source->path = path;
        source->fd = g_open (path, O_RDONLY | O_CLOEXEC, 0);
        if (source->fd < 0 || fstat (source->fd, &source->st) < 0) {
                set_error_from_errno (error, errno);
                return FALSE;
        }
        if (S_ISDIR (source->st.st_mode)) {
                set_error_from_errno (error, EISDIR);
                return FALSE;
        }
        n = pread (source->fd, signature, sizeof signature, 0);
        if (n == (ssize_t) sizeof signature && memcmp (signature, VHDX_FILE_ID_SIGNATURE, 8) == 0) {
                VhdxOpenOptions options = { .path = path, .parent_path = parent };
                VhdxIo *io = vhdx_io_new_fd (source->fd, TRUE);

                source->fd = -1;
                source->vhdx = vhdx_file_open_full (io, VHDX_OPEN_FLAGS_NONE, &options, error);
                if (source->vhdx == NULL)
                        return FALSE;
                source->size = vhdx_file_get_info (source->vhdx)->virtual_size;
                return TRUE;
        }
        if (S_ISBLK (source->st.st_mode)) {
                off_t end = lseek (source->fd, 0, SEEK_END);
                if (end < 0) {
                        set_error_from_errno (error, errno);
                        return FALSE;
                }
                source->size = (guint64) end;
        } else {
                source->size = (guint64) source->st.st_size;
        }
        return TRUE;
}

static gboolean
source_read (Source *source, guint64 offset, guint8 *buf, gsize count, GError **error)
{
        gsize done = 0;

        if (source->vhdx != NULL)
                return vhdx_file_read (source->vhdx, offset, buf, count, error);
        while (done < count) {
                ssize_t n = pread (source->fd, buf + done, count - done, (off_t) (offset + done));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        set_error_from_errno (error, errno);
                        return FALSE;
                }
                if (n == 0)
                        break;
                done += (gsize) n;
        }
        /* Past the end of a raw image (rounded up to whole sectors): zeros. */
        memset (buf + done, 0, count - done);
        return TRUE;
}

/* The data extents of a whole image. */
static GArray *
data_extents (VhdxFile *file, GError **error)
{
        g_autoptr (GArray) extents =
                vhdx_file_map (file, 0, vhdx_file_get_info (file)->virtual_size, error);
        GArray *ranges;

        if (extents == NULL)
                return NULL;
        ranges = g_array_new (FALSE, TRUE, sizeof (VhdxMapExtent));
        for (guint i = 0; i < extents->len; i++) {
                const VhdxMapExtent *e = &g_array_index (extents, VhdxMapExtent, i);
                if (e->kind == VHDX_EXTENT_DATA)
                        g_array_append_val (ranges, *e);
        }
        return ranges;
}

/* The ranges of the source that may hold data: the image's data extents, or a
 * raw file's data segments (all of it where the file system cannot tell). */
static GArray *
source_data_ranges (Source *source, GError **error)
{
        g_autoptr (GArray) ranges = g_array_new (FALSE, TRUE, sizeof (VhdxMapExtent));
        off_t pos = 0;

        if (source->vhdx != NULL)
                return data_extents (source->vhdx, error);
        while ((guint64) pos < source->size) {
                off_t data = lseek (source->fd, pos, SEEK_DATA);
                off_t hole;
                VhdxMapExtent e = { .kind = VHDX_EXTENT_DATA, .present = TRUE };

                if (data < 0) {
                        if (errno == ENXIO)
                                break; /* only a hole is left */
                        /* No SEEK_DATA here: treat the rest as data. */
                        e.offset = (guint64) pos;
                        e.length = source->size - (guint64) pos;
                        g_array_append_val (ranges, e);
                        break;
                }
                hole = lseek (source->fd, data, SEEK_HOLE);
                if (hole < 0)
                        hole = (off_t) source->size;
                e.offset = (guint64) data;
                e.length = MIN ((guint64) hole, source->size) - (guint64) data;
                if (e.length > 0)
                        g_array_append_val (ranges, e);
                pos = hole;
        }
        return g_steal_pointer (&ranges);
}

/* TRUE if [start, end) meets a range of @ranges; *cursor walks forward only. */
static gboolean
ranges_intersect (GArray *ranges, guint *cursor, guint64 start, guint64 end)
{
        while (*cursor < ranges->len) {
                const VhdxMapExtent *e = &g_array_index (ranges, VhdxMapExtent, *cursor);
                if (e->offset + e->length <= start) {
                        (*cursor)++;
                        continue;
                }
                return e->offset < end;
        }
        return FALSE;
}

/* Copies the data of @source into the raw file @fd, leaving holes wherever the disk reads as zeros.
 */
static gboolean
convert_to_raw (Source *source, int fd, const char *dst, Progress *progress)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (GArray) ranges = source_data_ranges (source, &error);
        g_autofree guint8 *buf = g_malloc (CHUNK_SIZE);

        if (ranges == NULL) {
                print_file_error (source->path, error);
                return FALSE;
        }
        if (ftruncate (fd, (off_t) source->size) < 0) {
                set_error_from_errno (&error, errno);
                print_file_error (dst, error);
                return FALSE;
        }
        for (guint i = 0; i < ranges->len; i++) {
                const VhdxMapExtent *e = &g_array_index (ranges, VhdxMapExtent, i);
                guint64 offset = e->offset, end = e->offset + e->length;

                while (offset < end) {
                        gsize n = (gsize) MIN (end - offset, CHUNK_SIZE);

                        if (!source_read (source, offset, buf, n, &error)) {
                                print_file_error (source->path, error);
                                return FALSE;
                        }
                        if (!buffer_is_zero (buf, n)) {
                                if (!pwrite_all (fd, buf, n, offset, &error)) {
                                        print_file_error (dst, error);
                                        return FALSE;
                                }
                                /* Write back now: the disk works while the next chunks
                                 * are copied, and the final fsync() waits for less. */
                                (void) sync_file_range (fd, (off_t) offset, (off_t) n,
                                                        SYNC_FILE_RANGE_WRITE);
                        }
                        offset += n;
                        progress_update (progress, offset);
                }
        }
        return TRUE;
}

/* The locator's relative_path: @parent as seen from the directory of @child. */
static char *
relative_path_to (const char *child, const char *parent)
{
        g_autofree char *child_abs = g_canonicalize_filename (child, NULL);
        g_autofree char *parent_abs = g_canonicalize_filename (parent, NULL);
        g_autofree char *child_dir = g_path_get_dirname (child_abs);
        g_auto (GStrv) from = g_strsplit (child_dir, G_DIR_SEPARATOR_S, -1);
        g_auto (GStrv) to = g_strsplit (parent_abs, G_DIR_SEPARATOR_S, -1);
        g_autoptr (GString) out = g_string_new (NULL);
        guint common = 0;

        while (from[common] != NULL && to[common] != NULL && to[common + 1] != NULL &&
               g_str_equal (from[common], to[common]))
                common++;
        for (guint i = common; from[i] != NULL; i++) {
                if (*from[i] != '\0')
                        g_string_append (out, "../");
        }
        for (guint i = common; to[i] != NULL; i++) {
                g_string_append (out, to[i]);
                if (to[i + 1] != NULL)
                        g_string_append_c (out, '/');
        }
        return g_string_free (g_steal_pointer (&out), FALSE);
}

/* Options that shape a new VHDX image. */
typedef struct {
        char *type;
        char *parent;
        char *block_size;
        char *logical_sector_size;
        char *physical_sector_size;
        char *log_size;
} CreateOptions;

static void
create_options_clear (CreateOptions *o)
{
        g_free (o->type);
        g_free (o->parent);
        g_free (o->block_size);
        g_free (o->logical_sector_size);
        g_free (o->physical_sector_size);
        g_free (o->log_size);
}

/* A size with an optional K, M, G or T suffix (powers of 1024). */
static gboolean
parse_size_with_suffix (const char *name, const char *text, guint64 *value)
{
        g_autofree char *number = g_strdup (text);
        gsize len = strlen (number);
        guint shift = 0;
        guint64 v;
        g_autoptr (GError) error = NULL;

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
        if (!g_ascii_string_to_unsigned (number, 10, 1, G_MAXUINT64 >> shift, &v, &error)) {
                usage_error ("%s: %s", name, error->message);
                return FALSE;
        }
        *value = v << shift;
        return TRUE;
}

static gboolean
size_option_u32 (const char *name, const char *text, guint32 *value)
{
        guint64 v;

        if (text == NULL)
                return TRUE;
        if (!parse_size_with_suffix (name, text, &v))
                return FALSE;
        if (v > G_MAXUINT32) {
                usage_error (_ ("%s: %s is too large"), name, text);
                return FALSE;
        }
        *value = (guint32) v;
        return TRUE;
}

/*
 * Fill @params from the options; with a parent, it is opened into @parent
 * and the image becomes its differencing child, taking its sector size.
 */
static gboolean
create_params_from_options (const CreateOptions *o,
                            const char *dst,
                            VhdxCreateParams *params,
                            VhdxFile **parent,
                            gboolean for_convert)
{
        g_autoptr (GError) error = NULL;

        memset (params, 0, sizeof *params);
        params->disk_type =
                o->parent != NULL ? VHDX_DISK_TYPE_DIFFERENCING : VHDX_DISK_TYPE_DYNAMIC;
        if (o->type != NULL) {
                if (g_str_equal (o->type, "dynamic"))
                        params->disk_type = VHDX_DISK_TYPE_DYNAMIC;
                else if (g_str_equal (o->type, "fixed"))
                        params->disk_type = VHDX_DISK_TYPE_FIXED;
                else if (g_str_equal (o->type, "differencing") && !for_convert)
                        params->disk_type = VHDX_DISK_TYPE_DIFFERENCING;
                else {
                        usage_error (_ ("--type: unknown type “%s”"), o->type);
                        return FALSE;
                }
        }
        if ((params->disk_type == VHDX_DISK_TYPE_DIFFERENCING) != (o->parent != NULL)) {
                usage_error ("%s", _ ("--parent makes a differencing image, and a differencing "
                                      "image needs --parent"));
                return FALSE;
        }
        if (!size_option_u32 ("--block-size", o->block_size, &params->block_size) ||
            !size_option_u32 ("--logical-sector-size", o->logical_sector_size,
                              &params->logical_sector_size) ||
            !size_option_u32 ("--physical-sector-size", o->physical_sector_size,
                              &params->physical_sector_size) ||
            !size_option_u32 ("--log-size", o->log_size, &params->log_size))
                return FALSE;

        if (o->parent != NULL) {
                const VhdxInfo *info;
                g_autofree char *relative = NULL;
                g_autofree char *absolute = NULL;

                *parent = open_image_full (o->parent, VHDX_OPEN_FLAGS_NONE, NULL, NULL, &error);
                if (*parent == NULL) {
                        print_file_error (o->parent, error);
                        return FALSE;
                }
                info = vhdx_file_get_info (*parent);
                if (params->logical_sector_size != 0 &&
                    params->logical_sector_size != info->logical_sector_size) {
                        usage_error (_ ("--logical-sector-size: a differencing image has its "
                                        "parent's (%u)"),
                                     info->logical_sector_size);
                        return FALSE;
                }
                params->logical_sector_size = info->logical_sector_size;
                if (params->physical_sector_size == 0)
                        params->physical_sector_size = info->physical_sector_size;
                if (params->block_size == 0 && !for_convert)
                        params->block_size = info->block_size;
                params->virtual_size = info->virtual_size;
                params->parent_data_write_guid = info->data_write_guid;
                /* Interned: the locator strings live as long as the process. */
                relative = relative_path_to (dst, o->parent);
                absolute = g_canonicalize_filename (o->parent, NULL);
                params->parent_relative_path = g_intern_string (relative);
                params->parent_absolute_path = g_intern_string (absolute);
        }
        return TRUE;
}

/* Runs of sectors of @buf (at virtual @offset) that differ from @base are
 * written to @writer; equal sectors are left to the parent. */
static gboolean
write_differing_sectors (VhdxWriter *writer,
                         guint64 offset,
                         const guint8 *buf,
                         const guint8 *base,
                         gsize count,
                         guint32 sector_size,
                         GError **error)
{
        gsize pos = 0;

        while (pos < count) {
                gsize start;

                while (pos < count && memcmp (buf + pos, base + pos, sector_size) == 0)
                        pos += sector_size;
                start = pos;
                while (pos < count && memcmp (buf + pos, base + pos, sector_size) != 0)
                        pos += sector_size;
                if (pos > start &&
                    !vhdx_writer_write (writer, offset + start, buf + start, pos - start, error))
                        return FALSE;
        }
        return TRUE;
}

/*
 * Write @source into a new VHDX image on @fd: only units (at most a block,
 * at most CHUNK_SIZE) that are not all zeros, or, for a differencing image,
 * only the sectors that differ from @parent.
 */
static gboolean
convert_to_vhdx (Source *source,
                 int fd,
                 const char *dst,
                 VhdxCreateParams *params,
                 VhdxFile *parent,
                 Progress *progress)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxIo) io = vhdx_io_new_fd (fd, FALSE);
        g_autoptr (VhdxWriter) writer = NULL;
        g_autoptr (GArray) ranges = source_data_ranges (source, &error);
        g_autoptr (GArray) parent_ranges = NULL;
        g_autofree guint8 *buf = NULL;
        g_autofree guint8 *base = NULL;
        guint cursor = 0, parent_cursor = 0;
        guint64 unit;

        if (ranges == NULL) {
                print_file_error (source->path, error);
                return FALSE;
        }
        if (parent == NULL) {
                guint32 lss = params->logical_sector_size != 0 ? params->logical_sector_size : 512;
                params->virtual_size = (source->size + lss - 1) / lss * lss;
        } else {
                params->virtual_size = source->size;
                parent_ranges = data_extents (parent, &error);
                if (parent_ranges == NULL) {
                        print_file_error (params->parent_absolute_path, error);
                        return FALSE;
                }
        }
        writer = vhdx_writer_new (io, params, &error);
        if (writer == NULL) {
                print_file_error (dst, error);
                return FALSE;
        }
        unit = MIN ((guint64) params->block_size != 0 ? params->block_size
                                                      : VHDX_DEFAULT_BLOCK_SIZE,
                    (guint64) CHUNK_SIZE);
        buf = g_malloc (unit);
        if (parent != NULL)
                base = g_malloc (unit);

        for (guint64 offset = 0; offset < params->virtual_size; offset += unit) {
                gsize n = (gsize) MIN (unit, params->virtual_size - offset);
                gboolean has_data = ranges_intersect (ranges, &cursor, offset, offset + n);
                gboolean parent_data = FALSE;

                if (parent != NULL) {
                        guint64 parent_size = vhdx_file_get_info (parent)->virtual_size;
                        /* Holes of the parent read as zeros too: only its data matters. */
                        parent_data = ranges_intersect (parent_ranges, &parent_cursor, offset,
                                                        offset + n);
                        if (parent_data) {
                                gsize from_parent =
                                        offset < parent_size
                                                ? (gsize) MIN ((guint64) n, parent_size - offset)
                                                : 0;
                                if (!vhdx_file_read (parent, offset, base, from_parent, &error)) {
                                        print_file_error (params->parent_absolute_path, error);
                                        return FALSE;
                                }
                                memset (base + from_parent, 0, n - from_parent);
                        }
                }
                if (!has_data && !parent_data) {
                        progress_update (progress, offset + n);
                        continue;
                }
                if (has_data) {
                        if (!source_read (source, offset, buf, n, &error)) {
                                print_file_error (source->path, error);
                                return FALSE;
                        }
                } else {
                        memset (buf, 0, n);
                }
                if (parent != NULL) {
                        if (!parent_data)
                                memset (base, 0, n);
                        if (!write_differing_sectors (writer, offset, buf, base, n,
                                                      params->logical_sector_size, &error)) {
                                print_file_error (dst, error);
                                return FALSE;
                        }
                } else if (!buffer_is_zero (buf, n) &&
                           !vhdx_writer_write (writer, offset, buf, n, &error)) {
                        print_file_error (dst, error);
                        return FALSE;
                }
                progress_update (progress, offset + n);
        }
        if (!vhdx_writer_finish (writer, &error)) {
                print_file_error (dst, error);
                return FALSE;
        }
        return TRUE;
}

/* Put the finished temporary file in place of @dst. */
static gboolean
commit_temporary (int fd, const char *temp_path, const char *dst)
{
        g_autoptr (GError) error = NULL;
        sigset_t old;

        if (fsync (fd) < 0 || close (fd) < 0) {
                set_error_from_errno (&error, errno);
                print_file_error (dst, error);
                return FALSE;
        }
        block_cleanup_signals (TRUE, &old);
        if (rename (temp_path, dst) < 0) {
                set_error_from_errno (&error, errno);
                block_cleanup_signals (FALSE, &old);
                print_file_error (dst, error);
                return FALSE;
        }
        cleanup_armed = 0;
        block_cleanup_signals (FALSE, &old);
        sync_directory (dst);
        return TRUE;
}

static gboolean
name_is_vhdx (const char *path)
{
        g_autofree char *lower = g_ascii_strdown (path, -1);

        return g_str_has_suffix (lower, ".vhdx") || g_str_has_suffix (lower, ".avhdx");
}

static int
cmd_convert (int argc, char **argv)
{
        gboolean show_progress = FALSE;
        g_autofree char *output_format = NULL;
        g_autofree char *source_parent = NULL;
        CreateOptions create = { 0 };
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "progress", 'p', 0, G_OPTION_ARG_NONE, &show_progress,
                  N_ ("Show progress on a terminal"), NULL },
                { "output-format", 'O', 0, G_OPTION_ARG_STRING, &output_format,
                  N_ ("raw or vhdx (default: vhdx when DESTINATION ends in .vhdx or .avhdx)"),
                  N_ ("FORMAT") },
                { "type", 0, 0, G_OPTION_ARG_STRING, &create.type,
                  N_ ("dynamic (default) or fixed, for VHDX output"), N_ ("TYPE") },
                { "parent", 0, 0, G_OPTION_ARG_FILENAME, &create.parent,
                  N_ ("Make DESTINATION a differencing image of PARENT storing only the sectors "
                      "that differ"),
                  N_ ("PARENT") },
                { "block-size", 0, 0, G_OPTION_ARG_STRING, &create.block_size,
                  N_ ("Block size of VHDX output (default 32M)"), N_ ("SIZE") },
                { "logical-sector-size", 0, 0, G_OPTION_ARG_STRING, &create.logical_sector_size,
                  N_ ("512 (default) or 4096, for VHDX output"), N_ ("N") },
                { "source-parent", 0, 0, G_OPTION_ARG_FILENAME, &source_parent,
                  N_ ("Use PARENT as the parent of a differencing SOURCE instead of the one "
                      "its locator names"),
                  N_ ("PARENT") },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) parent = NULL;
        g_autofree char *temp_path = NULL;
        Source source = { .fd = -1 };
        Progress progress = { FALSE, 0, 0, -1 };
        VhdxCreateParams params;
        gboolean to_vhdx;
        gboolean ok;
        const char *src;
        const char *dst;
        int fd;

        context = command_context_new (
                "convert", _ ("SOURCE DESTINATION"),
                _ ("Convert a VHDX or raw image to a sparse raw image or to a VHDX image."),
                _ ("Reads SOURCE, a VHDX image or a raw disk image (told apart by content),\n"
                   "and writes its virtual disk to DESTINATION.  Raw output leaves holes\n"
                   "where the disk reads as zeros.  VHDX output stores only blocks that\n"
                   "are not all zeros; with --parent it is a differencing image that\n"
                   "stores only the sectors that differ from PARENT.  DESTINATION is\n"
                   "written under a temporary name in the same directory and renamed\n"
                   "into place only when complete; an existing DESTINATION is replaced.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!parse_command_line (context, argc, argv) || !check_arguments ("convert", args, 2)) {
                create_options_clear (&create);
                return EXIT_FAILURE;
        }
        src = args[0];
        dst = args[1];
        if (output_format == NULL)
                to_vhdx = name_is_vhdx (dst) || create.parent != NULL || create.type != NULL;
        else if (g_str_equal (output_format, "vhdx"))
                to_vhdx = TRUE;
        else if (g_str_equal (output_format, "raw"))
                to_vhdx = FALSE;
        else {
                create_options_clear (&create);
                return usage_error (_ ("--output-format: unknown format “%s”"), output_format);
        }
        if (!to_vhdx && (create.parent != NULL || create.type != NULL ||
                         create.block_size != NULL || create.logical_sector_size != NULL)) {
                create_options_clear (&create);
                return usage_error ("%s", _ ("--type, --parent, --block-size and "
                                             "--logical-sector-size need VHDX output"));
        }

        if (!source_open (&source, src, source_parent, &error)) {
                print_file_error (src, error);
                source_clear (&source);
                create_options_clear (&create);
                return EXIT_FAILURE;
        }
        if (same_file (dst, &source.st)) {
                print_line_error (dst, _ ("destination is the source image"));
                source_clear (&source);
                create_options_clear (&create);
                return EXIT_FAILURE;
        }
        if (to_vhdx && !create_params_from_options (&create, dst, &params, &parent, TRUE)) {
                source_clear (&source);
                create_options_clear (&create);
                return EXIT_FAILURE;
        }
        create_options_clear (&create);

        install_cleanup_handlers ();
        fd = create_temporary (dst, &temp_path, &error);
        if (fd < 0) {
                print_file_error (dst, error);
                source_clear (&source);
                return EXIT_FAILURE;
        }
        progress.enabled = show_progress && isatty (STDERR_FILENO);
        progress.total = source.size;
        progress_update (&progress, 0);

        ok = to_vhdx ? convert_to_vhdx (&source, fd, dst, &params, parent, &progress)
                     : convert_to_raw (&source, fd, dst, &progress);
        source_clear (&source);
        if (ok && commit_temporary (fd, temp_path, dst)) {
                progress_finish (&progress);
                return EXIT_SUCCESS;
        }
        if (!ok)
                close (fd);
        g_unlink (temp_path);
        disarm_cleanup ();
        if (progress.enabled)
                fputc ('\n', stderr);
        return EXIT_FAILURE;
}

static int
cmd_create (int argc, char **argv)
{
        CreateOptions create = { 0 };
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "type", 0, 0, G_OPTION_ARG_STRING, &create.type,
                  N_ ("dynamic (default), fixed or differencing"), N_ ("TYPE") },
                { "parent", 0, 0, G_OPTION_ARG_FILENAME, &create.parent,
                  N_ ("Make a differencing image of PARENT"), N_ ("PARENT") },
                { "block-size", 0, 0, G_OPTION_ARG_STRING, &create.block_size,
                  N_ ("Block size (default 32M, a differencing image: its parent's)"),
                  N_ ("SIZE") },
                { "logical-sector-size", 0, 0, G_OPTION_ARG_STRING, &create.logical_sector_size,
                  N_ ("512 (default) or 4096"), N_ ("N") },
                { "physical-sector-size", 0, 0, G_OPTION_ARG_STRING, &create.physical_sector_size,
                  N_ ("512 or 4096 (default)"), N_ ("N") },
                { "log-size", 0, 0, G_OPTION_ARG_STRING, &create.log_size,
                  N_ ("Log size (default 1M)"), N_ ("SIZE") },
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) parent = NULL;
        g_autoptr (VhdxIo) io = NULL;
        g_autoptr (VhdxWriter) writer = NULL;
        g_autofree char *temp_path = NULL;
        VhdxCreateParams params;
        guint n_args;
        const char *dst;
        int fd;

        context = command_context_new (
                "create", _ ("IMAGE [SIZE]"), _ ("Create a new VHDX image."),
                _ ("Creates IMAGE, a new empty VHDX image of SIZE bytes (a K, M, G or T\n"
                   "suffix multiplies by powers of 1024).  A differencing image (--parent)\n"
                   "takes its size and logical sector size from its parent, and its\n"
                   "locator names the parent by DataWriteGuid and relative path.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!parse_command_line (context, argc, argv)) {
                create_options_clear (&create);
                return EXIT_FAILURE;
        }
        n_args = args != NULL ? g_strv_length (args) : 0;
        if (n_args < 1 || n_args > 2) {
                create_options_clear (&create);
                return usage_error ("%s", _ ("expected IMAGE and, without --parent, SIZE"));
        }
        dst = args[0];
        if (!create_params_from_options (&create, dst, &params, &parent, FALSE)) {
                create_options_clear (&create);
                return EXIT_FAILURE;
        }
        if (create.parent == NULL) {
                if (n_args != 2) {
                        create_options_clear (&create);
                        return usage_error ("%s", _ ("expected the SIZE of the new image"));
                }
                if (!parse_size_with_suffix ("SIZE", args[1], &params.virtual_size)) {
                        create_options_clear (&create);
                        return EXIT_FAILURE;
                }
        } else if (n_args == 2) {
                create_options_clear (&create);
                return usage_error ("%s", _ ("a differencing image has its parent's size"));
        }
        create_options_clear (&create);

        install_cleanup_handlers ();
        fd = create_temporary (dst, &temp_path, &error);
        if (fd < 0) {
                print_file_error (dst, error);
                return EXIT_FAILURE;
        }
        io = vhdx_io_new_fd (fd, FALSE);
        writer = vhdx_writer_new (io, &params, &error);
        if (writer == NULL || !vhdx_writer_finish (writer, &error)) {
                print_file_error (dst, error);
                close (fd);
                g_unlink (temp_path);
                disarm_cleanup ();
                return EXIT_FAILURE;
        }
        if (!commit_temporary (fd, temp_path, dst)) {
                g_unlink (temp_path);
                disarm_cleanup ();
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

/* Top level */

static void
print_help (void)
{
        g_print ("%s\n  vhdx %s\n\n", _ ("Usage:"), _ ("COMMAND [OPTION…] ARGUMENTS"));
        g_print ("%s\n\n", _ ("Read Hyper-V VHDX virtual disk images."));
        g_print ("%s\n", _ ("Commands:"));
        for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
                g_print ("  %-10s%s\n", commands[i].name, _ (commands[i].summary));
        g_print ("  %-10s%s\n", "help", _ ("Show help for a command"));
        g_print ("\n%s\n", _ ("Options:"));
        g_print ("  %-18s%s\n", "-h, --help", _ ("Show this help"));
        g_print ("  %-18s%s\n", "--version", _ ("Show the version"));
        g_print ("\n%s\n", _ ("Run 'vhdx COMMAND --help' for the options of a command."));
}

static const Command *
find_command (const char *name)
{
        for (gsize i = 0; i < G_N_ELEMENTS (commands); i++) {
                if (g_str_equal (commands[i].name, name))
                        return &commands[i];
        }
        return NULL;
}

static gboolean
flush_stdout (void)
{
        if (fflush (stdout) != 0 || ferror (stdout)) {
                int saved_errno = errno != 0 ? errno : EIO;

                if (saved_errno != EPIPE)
                        print_line_error (_ ("standard output"), g_strerror (saved_errno));
                return FALSE;
        }
        return TRUE;
}

int
main (int argc, char **argv)
{
        const Command *command;
        const char *localedir = secure_getenv ("VHDX_LOCALEDIR");
        int status;

        setlocale (LC_ALL, "");
        /* VHDX_LOCALEDIR: the catalogs of a build tree, for its tests.  The
         * library reads it too, so both bind the domain to the same place. */
        bindtextdomain (GETTEXT_PACKAGE,
                        localedir != NULL && localedir[0] != '\0' ? localedir : LOCALEDIR);
        bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
        textdomain (GETTEXT_PACKAGE);
        g_set_prgname ("vhdx");

        if (argc < 2)
                return usage_error (_ ("no command given"));

        if (g_str_equal (argv[1], "--help") || g_str_equal (argv[1], "-h") ||
            g_str_equal (argv[1], "-?") || (g_str_equal (argv[1], "help") && argc == 2)) {
                print_help ();
                return flush_stdout () ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        if (g_str_equal (argv[1], "--version")) {
                g_print ("vhdx (libvhdx) %s\n", PACKAGE_VERSION);
                return flush_stdout () ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        if (g_str_equal (argv[1], "help")) {
                /* "vhdx help COMMAND" is "vhdx COMMAND --help". */
                char *help_argv[] = { argv[2], (char *) "--help", NULL };

                command = find_command (argv[2]);
                if (command == NULL)
                        return usage_error (_ ("unknown command '%s'"), argv[2]);
                return command->func (2, help_argv);
        }
        if (argv[1][0] == '-')
                return usage_error (_ ("unknown option '%s'"), argv[1]);

        command = find_command (argv[1]);
        if (command == NULL)
                return usage_error (_ ("unknown command '%s'"), argv[1]);

        status = command->func (argc - 1, argv + 1);
        if (!flush_stdout () && status == EXIT_SUCCESS)
                status = EXIT_FAILURE;
        return status;
}
