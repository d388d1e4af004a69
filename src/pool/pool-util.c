/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The libvirt connection, pool lookup, XML fields and size formatting of vhdx-pool. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gio/gio.h>
#include <glib.h>
#include <glib/gi18n.h>
#include <libvirt/virterror.h>

#include "pool-util.h"
#include "vhdx-tool.h"

char *pool_connect_uri = NULL;

/* libvirt */

static void
ignore_libvirt_error (void *user_data, virErrorPtr error)
{
        /* Errors are reported once, by the caller, as one line. */
}

void
pool_libvirt_init (void)
{
        virSetErrorFunc (NULL, ignore_libvirt_error);
        if (virInitialize () < 0)
                tool_print_error (NULL, _ ("cannot initialize libvirt"));
}

void
pool_set_libvirt_error (GError **error, const char *format, ...)
{
        va_list args;
        g_autofree char *context = NULL;
        virErrorPtr last = virGetLastError ();
        int code = G_IO_ERROR_FAILED;

        va_start (args, format);
        context = g_strdup_vprintf (format, args);
        va_end (args);

        if (last != NULL) {
                switch (last->code) {
                case VIR_ERR_NO_STORAGE_POOL:
                case VIR_ERR_NO_STORAGE_VOL:
                        code = G_IO_ERROR_NOT_FOUND;
                        break;
                case VIR_ERR_AUTH_FAILED:
                case VIR_ERR_AUTH_CANCELLED:
                case VIR_ERR_ACCESS_DENIED:
                case VIR_ERR_OPERATION_DENIED:
                        code = G_IO_ERROR_PERMISSION_DENIED;
                        break;
                case VIR_ERR_OPERATION_INVALID:
                        code = G_IO_ERROR_INVALID_ARGUMENT;
                        break;
                default:
                        break;
                }
        }
        g_set_error (error, G_IO_ERROR, code, "%s: %s", context,
                     last != NULL && last->message != NULL ? last->message
                                                           : _ ("unknown libvirt error"));
}

int
pool_fail (const GError *error)
{
        tool_print_error_printf ("%s", error->message);
        return EXIT_FAILURE;
}

const char *
pool_connection_uri_display (const char *uri)
{
        const char *env;

        if (uri != NULL)
                return uri;
        env = g_getenv ("LIBVIRT_DEFAULT_URI");
        if (env != NULL && env[0] != '\0')
                return env;
        return _ ("the default hypervisor");
}

virConnectPtr
pool_connect (const char *uri, GError **error)
{
        virConnectPtr conn;

        conn = virConnectOpenAuth (uri, virConnectAuthPtrDefault, 0);
        if (conn == NULL)
                pool_set_libvirt_error (error, _ ("cannot connect to %s"),
                                        pool_connection_uri_display (uri));
        return conn;
}

/* Whether the pools of @conn are on this machine, so that their volumes'
 * paths can be opened here. */
gboolean
pool_connection_is_local (virConnectPtr conn)
{
        char *uri = virConnectGetURI (conn);
        g_autoptr (GUri) parsed = NULL;
        const char *host;
        gboolean local;

        if (uri == NULL)
                return FALSE;
        parsed = g_uri_parse (uri, G_URI_FLAGS_NON_DNS, NULL);
        free (uri);
        if (parsed == NULL)
                return FALSE;
        host = g_uri_get_host (parsed);
        local = host == NULL || host[0] == '\0' || g_ascii_strcasecmp (host, "localhost") == 0;
        return local;
}

virStoragePoolPtr
pool_lookup (virConnectPtr conn, const char *name, GError **error)
{
        virStoragePoolPtr pool = virStoragePoolLookupByName (conn, name);

        if (pool == NULL) {
                virErrorPtr last = virGetLastError ();

                if (last != NULL && last->code == VIR_ERR_NO_STORAGE_POOL)
                        g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                                     _ ("no storage pool named '%s'"), name);
                else
                        pool_set_libvirt_error (error, _ ("storage pool '%s'"), name);
        }
        return pool;
}

gboolean
pool_ensure_active (virStoragePoolPtr pool, GError **error)
{
        int active = virStoragePoolIsActive (pool);

        if (active < 0) {
                pool_set_libvirt_error (error, _ ("storage pool '%s'"),
                                        virStoragePoolGetName (pool));
                return FALSE;
        }
        if (active == 0) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                             _ ("storage pool '%s' is not active"), virStoragePoolGetName (pool));
                return FALSE;
        }
        return TRUE;
}

/* XML fields */

typedef struct {
        char **path;
        guint path_len;
        const char *attribute;
        GSList *stack;
        guint depth_matched;
        gboolean in_target;
        GString *text;
        char *result;
} XmlQuery;

static gboolean
xml_stack_matches (XmlQuery *query)
{
        guint depth = g_slist_length (query->stack);
        GSList *link = query->stack;

        if (depth != query->path_len)
                return FALSE;
        /* The stack holds the innermost element first. */
        for (guint i = query->path_len; i > 0; i--, link = link->next) {
                if (!g_str_equal (link->data, query->path[i - 1]))
                        return FALSE;
        }
        return TRUE;
}

static void
xml_start_element (GMarkupParseContext *context,
                   const char *element_name,
                   const char **attribute_names,
                   const char **attribute_values,
                   gpointer user_data,
                   GError **error)
{
        XmlQuery *query = user_data;

        query->stack = g_slist_prepend (query->stack, g_strdup (element_name));
        if (query->result != NULL || !xml_stack_matches (query))
                return;
        if (query->attribute != NULL) {
                for (guint i = 0; attribute_names[i] != NULL; i++) {
                        if (g_str_equal (attribute_names[i], query->attribute)) {
                                query->result = g_strdup (attribute_values[i]);
                                break;
                        }
                }
        } else {
                query->in_target = TRUE;
                g_string_truncate (query->text, 0);
        }
}

static void
xml_end_element (GMarkupParseContext *context,
                 const char *element_name,
                 gpointer user_data,
                 GError **error)
{
        XmlQuery *query = user_data;

        if (query->in_target) {
                query->in_target = FALSE;
                query->result = g_strdup (g_strstrip (query->text->str));
        }
        g_free (query->stack->data);
        query->stack = g_slist_delete_link (query->stack, query->stack);
}

static void
xml_text (GMarkupParseContext *context,
          const char *text,
          gsize text_len,
          gpointer user_data,
          GError **error)
{
        XmlQuery *query = user_data;

        if (query->in_target)
                g_string_append_len (query->text, text, (gssize) text_len);
}

/*
 * The value of @attribute of the first element at @element_path (such as
 * "volume/target/format"), or its text when @attribute is NULL; NULL when
 * there is no such element.
 */
char *
pool_xml_get (const char *xml, const char *element_path, const char *attribute)
{
        static const GMarkupParser parser = {
                .start_element = xml_start_element,
                .end_element = xml_end_element,
                .text = xml_text,
        };
        g_auto (GStrv) path = g_strsplit (element_path, "/", -1);
        XmlQuery query = {
                .path = path,
                .path_len = g_strv_length (path),
                .attribute = attribute,
                .text = g_string_new (NULL),
        };
        g_autoptr (GMarkupParseContext) context = NULL;
        gboolean ok;

        if (xml == NULL)
                return NULL;
        context = g_markup_parse_context_new (&parser, 0, &query, NULL);
        ok = g_markup_parse_context_parse (context, xml, -1, NULL) &&
             g_markup_parse_context_end_parse (context, NULL);
        g_slist_free_full (query.stack, g_free);
        g_string_free (query.text, TRUE);
        if (!ok) {
                g_free (query.result);
                return NULL;
        }
        return query.result;
}

char *
pool_xml_escape (const char *text)
{
        return g_markup_escape_text (text, -1);
}

/* Sizes, as virsh prints them: two decimals and a binary unit. */
char *
pool_format_capacity (guint64 bytes)
{
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        double value = (double) bytes;
        gsize unit = 0;

        while (value >= 1024.0 && unit + 1 < G_N_ELEMENTS (units)) {
                value /= 1024.0;
                unit++;
        }
        return g_strdup_printf ("%.2f %s", value, units[unit]);
}

/* @path with symbolic links resolved when it exists here, for comparisons. */
char *
pool_canonical_path (const char *path)
{
        char *resolved = realpath (path, NULL);
        char *result;

        if (resolved == NULL)
                return g_canonicalize_filename (path, "/");
        result = g_strdup (resolved);
        free (resolved);
        return result;
}
