/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhdx create, and the options that shape a new VHDX image, which convert takes too. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib/gi18n.h>

#include "vhdx-cli.h"

void
cli_create_options_clear (CliCreateOptions *o)
{
        g_free (o->type);
        g_free (o->parent);
        g_free (o->block_size);
        g_free (o->logical_sector_size);
        g_free (o->physical_sector_size);
        g_free (o->log_size);
}

static gboolean
size_option_u32 (const char *name, const char *text, guint32 *value)
{
        guint64 v;

        if (text == NULL)
                return TRUE;
        if (!tool_parse_size (name, text, 1, &v))
                return FALSE;
        if (v > G_MAXUINT32) {
                tool_usage_error (_ ("%s: %s is too large"), name, text);
                return FALSE;
        }
        *value = (guint32) v;
        return TRUE;
}

static gboolean
disk_type_from_option (const char *type, gboolean for_convert, VhdxDiskType *disk_type)
{
        if (type == NULL)
                return TRUE;
        if (g_str_equal (type, "dynamic"))
                *disk_type = VHDX_DISK_TYPE_DYNAMIC;
        else if (g_str_equal (type, "fixed"))
                *disk_type = VHDX_DISK_TYPE_FIXED;
        else if (g_str_equal (type, "differencing") && !for_convert)
                *disk_type = VHDX_DISK_TYPE_DIFFERENCING;
        else {
                tool_usage_error (_ ("--type: unknown type “%s”"), type);
                return FALSE;
        }
        return TRUE;
}

/* Make the new image @dst a child of the image @path, opened into @parent. */
static gboolean
params_from_parent (VhdxCreateParams *params,
                    const char *path,
                    const char *dst,
                    const CliOpenOptions *search,
                    VhdxFile **parent)
{
        CliOpenOptions parents = { NULL, search != NULL ? search->parent_dirs : NULL,
                                   search != NULL && search->ignore_mismatch };
        g_autoptr (GError) error = NULL;
        g_autofree char *relative = NULL;
        g_autofree char *absolute = NULL;
        const VhdxInfo *info;

        *parent = cli_open_image (path, VHDX_OPEN_FLAGS_NONE, &parents, NULL, &error);
        if (*parent == NULL) {
                tool_print_file_error (path, error);
                return FALSE;
        }
        info = vhdx_file_get_info (*parent);
        if (params->logical_sector_size != 0 &&
            params->logical_sector_size != info->logical_sector_size) {
                tool_usage_error (_ ("--logical-sector-size: a differencing image has its "
                                     "parent's (%u)"),
                                  info->logical_sector_size);
                return FALSE;
        }
        params->logical_sector_size = info->logical_sector_size;
        if (params->physical_sector_size == 0)
                params->physical_sector_size = info->physical_sector_size;
        params->virtual_size = info->virtual_size;
        params->parent_data_write_guid = info->data_write_guid;
        /* Interned: the locator strings live as long as the process. */
        relative = vhdx_parent_relative_path (dst, path);
        absolute = g_canonicalize_filename (path, NULL);
        params->parent_relative_path = g_intern_string (relative);
        params->parent_absolute_path = g_intern_string (absolute);
        return TRUE;
}

gboolean
cli_create_params_from_options (const CliCreateOptions *o,
                                const char *dst,
                                VhdxCreateParams *params,
                                VhdxFile **parent,
                                gboolean for_convert)
{
        memset (params, 0, sizeof *params);
        params->disk_type =
                o->parent != NULL ? VHDX_DISK_TYPE_DIFFERENCING : VHDX_DISK_TYPE_DYNAMIC;
        if (!disk_type_from_option (o->type, for_convert, &params->disk_type))
                return FALSE;
        if ((params->disk_type == VHDX_DISK_TYPE_DIFFERENCING) != (o->parent != NULL)) {
                tool_usage_error ("%s", _ ("--parent makes a differencing image, and a "
                                           "differencing image needs --parent"));
                return FALSE;
        }
        if (!size_option_u32 ("--block-size", o->block_size, &params->block_size) ||
            !size_option_u32 ("--logical-sector-size", o->logical_sector_size,
                              &params->logical_sector_size) ||
            !size_option_u32 ("--physical-sector-size", o->physical_sector_size,
                              &params->physical_sector_size) ||
            !size_option_u32 ("--log-size", o->log_size, &params->log_size))
                return FALSE;
        return o->parent == NULL || params_from_parent (params, o->parent, dst, o->search, parent);
}

/* The arguments of create: IMAGE, and SIZE unless the image has a parent. */
static gboolean
create_size (char **args, const CliCreateOptions *create, VhdxCreateParams *params)
{
        guint n_args = args != NULL ? g_strv_length (args) : 0;

        if (create->parent == NULL) {
                if (n_args != 2) {
                        tool_usage_error ("%s", _ ("expected the SIZE of the new image"));
                        return FALSE;
                }
                return tool_parse_size ("SIZE", args[1], 1, &params->virtual_size);
        }
        if (n_args == 2) {
                tool_usage_error ("%s", _ ("a differencing image has its parent's size"));
                return FALSE;
        }
        return TRUE;
}

int
cli_cmd_create (int argc, char **argv)
{
        g_auto (CliOpenOptions) search = { 0 };
        g_auto (CliCreateOptions) create = { .search = &search };
        g_auto (GStrv) args = NULL;
        const GOptionEntry entries[] = {
                { "type", 0, 0, G_OPTION_ARG_STRING, &create.type,
                  N_ ("dynamic (default), fixed or differencing"), N_ ("TYPE") },
                { "parent", 0, 0, G_OPTION_ARG_FILENAME, &create.parent,
                  N_ ("Make a differencing image of PARENT"), N_ ("PARENT") },
                CLI_PARENT_SEARCH_OPTION_ENTRIES (&search),
                { "block-size", 0, 0, G_OPTION_ARG_STRING, &create.block_size,
                  N_ ("Block size (default 32M, a differencing image 2M)"), N_ ("SIZE") },
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
        g_autoptr (VhdxCreator) creator = NULL;
        g_auto (ToolOutput) output = { .fd = -1 };
        VhdxCreateParams params;
        guint n_args;

        context = tool_command_context_new (
                "create", _ ("IMAGE [SIZE]"), _ ("Create a new VHDX image."),
                _ ("Creates IMAGE, a new empty VHDX image of SIZE bytes (a K, M, G or T\n"
                   "suffix multiplies by powers of 1024).  A differencing image (--parent)\n"
                   "takes its size and logical sector size from its parent, and its\n"
                   "locator names the parent by DataWriteGuid and relative path.  The\n"
                   "defaults are Hyper-V's: dynamic, 32 MiB blocks (2 MiB for a\n"
                   "differencing image), 512-byte logical and 4 KiB physical sectors\n"
                   "(a differencing image: its parent's), a 1 MiB log.\n"
                   "\n"
                   "Exit status: 0 on success, 1 on failure."),
                entries);
        if (!tool_parse_command_line (context, &argc, &argv))
                return EXIT_FAILURE;
        n_args = args != NULL ? g_strv_length (args) : 0;
        if (n_args < 1 || n_args > 2)
                return tool_usage_error ("%s", _ ("expected IMAGE and, without --parent, SIZE"));
        if (!cli_create_params_from_options (&create, args[0], &params, &parent, FALSE) ||
            !create_size (args, &create, &params))
                return EXIT_FAILURE;

        if (!tool_output_create (&output, args[0], &error)) {
                tool_print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        io = vhdx_io_new_fd (output.fd, FALSE);
        creator = vhdx_creator_new (io, &params, &error);
        if (creator == NULL || !vhdx_creator_finish (creator, &error) ||
            !tool_output_commit (&output, &error)) {
                tool_print_file_error (args[0], error);
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
