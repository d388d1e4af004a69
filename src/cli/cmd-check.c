/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx check: validate every structure of an image, and replay its log with --repair. */
#include "config.h"

#include <stdlib.h>

#include <gio/gio.h>
#include <glib/gi18n.h>

#include "vhdx-check.h"
#include "vhdx-cli.h"

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
                const VhdxProblem *problem = g_ptr_array_index (problems, i);

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
problems_print_text (GPtrArray *problems, guint n_errors, guint n_warnings, const VhdxInfo *info)
{
        if (info != NULL && info->log_state == VHDX_LOG_STATE_REPLAYED)
                g_print (_ ("The log was replayed onto the image: %u entries, %u "
                            "writes; header sequence number now %llu.\n"),
                         info->log_entries_replayed, info->log_writes_replayed,
                         (unsigned long long) info->header_sequence);
        for (guint i = 0; i < problems->len; i++) {
                const VhdxProblem *problem = g_ptr_array_index (problems, i);

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

/*
 * The problems of the image at @path: those noticed while opening it and
 * those the check finds, or the one that kept it from opening.  FALSE when
 * it could not be checked at all; @file is the opened image, or NULL.
 */
static gboolean
collect_problems (const char *path,
                  gboolean repair,
                  const CliOpenOptions *parents,
                  GPtrArray *problems,
                  VhdxFile **file,
                  GError **error)
{
        g_autoptr (GError) local_error = NULL;

        /* A parent that cannot be found is one of the problems, after those
         * of the image itself. */
        *file = cli_open_image (path,
                                (repair ? VHDX_OPEN_FLAGS_READ_WRITE : VHDX_OPEN_FLAGS_NONE) |
                                        VHDX_OPEN_FLAGS_ALLOW_MISSING_PARENT,
                                parents, NULL, &local_error);
        if (*file == NULL) {
                if (!error_is_corruption (local_error)) {
                        g_propagate_error (error, g_steal_pointer (&local_error));
                        return FALSE;
                }
                /* The image is too damaged to open: that is the finding. */
                vhdx_problems_add (problems, VHDX_SEVERITY_ERROR, _ ("image"), 0, "%s",
                                   local_error->message);
                return TRUE;
        }
        vhdx_problems_add_all (problems, vhdx_file_get_open_problems (*file));
        return vhdx_file_check (*file, problems, error);
}

int
cli_cmd_check (int argc, char **argv)
{
        gboolean json = FALSE;
        gboolean repair = FALSE;
        g_auto (GStrv) args = NULL;
        g_auto (CliOpenOptions) parents = { 0 };
        const GOptionEntry entries[] = {
                { "json", 0, 0, G_OPTION_ARG_NONE, &json, N_ ("Print a JSON object"), NULL },
                { "repair", 0, 0, G_OPTION_ARG_NONE, &repair,
                  N_ ("Replay a pending log onto the image (opens it for writing)"), NULL },
                CLI_PARENT_OPTION_ENTRIES (&parents, CLI_PARENT_HELP),
                CLI_FORCE_SHARE_OPTION_ENTRY (&parents),
                { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &args, NULL, NULL },
                G_OPTION_ENTRY_NULL
        };
        g_autoptr (GOptionContext) context = NULL;
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxFile) file = NULL;
        g_autoptr (GPtrArray) problems = vhdx_problems_new ();
        const VhdxInfo *info;
        guint n_errors = 0;
        guint n_warnings = 0;

        context = tool_command_context_new (
                "check", _ ("IMAGE"), _ ("Check an image for corruption."),
                _ ("Validates the headers, region tables, metadata, log and every BAT\n"
                   "entry, and prints one line per problem found, then a summary.  Every\n"
                   "image of a differencing image's chain is checked; a parent that\n"
                   "cannot be found is an error, after the image itself was checked.\n"
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
        if (!tool_parse_command_line (context, &argc, &argv) ||
            !tool_check_arguments ("check", args, 1))
                return EXIT_FAILURE;
        if (repair && parents.force_share) {
                tool_usage_error (_ ("--repair writes the image: it cannot be used with "
                                     "--force-share"));
                return EXIT_FAILURE;
        }

        if (!collect_problems (args[0], repair, &parents, problems, &file, &error)) {
                tool_print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        for (guint i = 0; i < problems->len; i++) {
                const VhdxProblem *problem = g_ptr_array_index (problems, i);

                if (problem->severity == VHDX_SEVERITY_ERROR)
                        n_errors++;
                else
                        n_warnings++;
        }
        info = file != NULL ? vhdx_file_get_info (file) : NULL;
        if (json) {
                g_autoptr (JsonNode) root =
                        problems_to_json (args[0], problems, n_errors, n_warnings, info);

                tool_print_json (root);
        } else {
                problems_print_text (problems, n_errors, n_warnings, info);
        }
        return n_errors > 0 ? EXIT_CORRUPT : EXIT_SUCCESS;
}
