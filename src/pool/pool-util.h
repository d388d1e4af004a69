/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the commands of vhdx-pool share: the libvirt connection, pool lookup,
 * XML fields and size formatting (with what every program shares, vhdx-tool.h).
 */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>

#include "vhdx-tool.h"

G_BEGIN_DECLS

/* The URI given with -c/--connect before the command, or NULL. */
extern char *pool_connect_uri;

void pool_libvirt_init (void);
void pool_set_libvirt_error (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);
/* Print @error as the command's one line of failure: EXIT_FAILURE. */
int pool_fail (const GError *error);

G_GNUC_WARN_UNUSED_RESULT
virConnectPtr pool_connect (const char *uri, GError **error);
const char *pool_connection_uri_display (const char *uri);
gboolean pool_connection_is_local (virConnectPtr conn);
G_GNUC_WARN_UNUSED_RESULT
virStoragePoolPtr pool_lookup (virConnectPtr conn, const char *name, GError **error);
G_GNUC_WARN_UNUSED_RESULT
gboolean pool_ensure_active (virStoragePoolPtr pool, GError **error);

G_GNUC_WARN_UNUSED_RESULT
char *pool_xml_get (const char *xml, const char *element_path, const char *attribute);
G_GNUC_WARN_UNUSED_RESULT
char *pool_xml_escape (const char *text);

G_GNUC_WARN_UNUSED_RESULT
char *pool_format_capacity (guint64 bytes);

G_GNUC_WARN_UNUSED_RESULT
char *pool_canonical_path (const char *path);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (virConnect, virConnectClose)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (virStoragePool, virStoragePoolFree)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (virStorageVol, virStorageVolFree)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (virStream, virStreamFree)

int pool_cmd_list (int argc, char **argv);
int pool_cmd_watch (int argc, char **argv);
int pool_cmd_import (int argc, char **argv);
int pool_cmd_expose (int argc, char **argv);
int pool_cmd_resize (int argc, char **argv);
int pool_cmd_merge (int argc, char **argv);
int pool_cmd_attach (int argc, char **argv);
int pool_cmd_detach (int argc, char **argv);

G_END_DECLS
