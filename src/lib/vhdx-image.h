/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxImage, the GObject of an opened image. */
#pragma once

#include <gio/gio.h>

#include "vhdx-enums.h"

G_BEGIN_DECLS

#define VHDX_TYPE_IMAGE (vhdx_image_get_type ())

G_DECLARE_FINAL_TYPE (VhdxImage, vhdx_image, VHDX, IMAGE, GObject)

G_GNUC_WARN_UNUSED_RESULT
VhdxImage *vhdx_image_new (GFile *file,
                           VhdxOpenFlags flags,
                           GCancellable *cancellable,
                           GError **error);
void vhdx_image_new_async (GFile *file,
                           VhdxOpenFlags flags,
                           int io_priority,
                           GCancellable *cancellable,
                           GAsyncReadyCallback callback,
                           gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
VhdxImage *vhdx_image_new_finish (GAsyncResult *result, GError **error);

GFile *vhdx_image_get_file (VhdxImage *self);
GFile *vhdx_image_get_parent_file (VhdxImage *self);
const char *const *vhdx_image_get_parent_search_path (VhdxImage *self);
VhdxOpenFlags vhdx_image_get_flags (VhdxImage *self);

guint64 vhdx_image_get_virtual_size (VhdxImage *self);
guint vhdx_image_get_block_size (VhdxImage *self);
guint vhdx_image_get_logical_sector_size (VhdxImage *self);
guint vhdx_image_get_physical_sector_size (VhdxImage *self);
VhdxDiskType vhdx_image_get_disk_type (VhdxImage *self);
const char *vhdx_image_get_virtual_disk_id (VhdxImage *self);
const char *vhdx_image_get_data_write_guid (VhdxImage *self);
const char *vhdx_image_get_file_write_guid (VhdxImage *self);
const char *vhdx_image_get_creator (VhdxImage *self);
VhdxLogState vhdx_image_get_log_state (VhdxImage *self);
guint64 vhdx_image_get_file_size (VhdxImage *self);
guint64 vhdx_image_get_allocated_size (VhdxImage *self);

gboolean vhdx_image_is_read_only (VhdxImage *self);
gboolean vhdx_image_is_in_use (VhdxImage *self);
gboolean vhdx_image_has_parent (VhdxImage *self);
G_GNUC_WARN_UNUSED_RESULT
VhdxImage *vhdx_image_dup_parent (VhdxImage *self);
GHashTable *vhdx_image_get_parent_locator (VhdxImage *self);
guint vhdx_image_get_chain_depth (VhdxImage *self);

G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_read (VhdxImage *self,
                          guint64 offset,
                          void *buffer,
                          gsize count,
                          GCancellable *cancellable,
                          GError **error);
void vhdx_image_read_async (VhdxImage *self,
                            guint64 offset,
                            void *buffer,
                            gsize count,
                            int io_priority,
                            GCancellable *cancellable,
                            GAsyncReadyCallback callback,
                            gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_read_finish (VhdxImage *self, GAsyncResult *result, GError **error);

G_GNUC_WARN_UNUSED_RESULT
GBytes *vhdx_image_read_bytes (VhdxImage *self,
                               guint64 offset,
                               gsize count,
                               GCancellable *cancellable,
                               GError **error);
void vhdx_image_read_bytes_async (VhdxImage *self,
                                  guint64 offset,
                                  gsize count,
                                  int io_priority,
                                  GCancellable *cancellable,
                                  GAsyncReadyCallback callback,
                                  gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
GBytes *vhdx_image_read_bytes_finish (VhdxImage *self, GAsyncResult *result, GError **error);

G_GNUC_WARN_UNUSED_RESULT
GInputStream *vhdx_image_open_stream (VhdxImage *self);
G_GNUC_WARN_UNUSED_RESULT
GIOStream *vhdx_image_open_io_stream (VhdxImage *self);

G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_write (VhdxImage *self,
                           guint64 offset,
                           const void *buffer,
                           gsize count,
                           VhdxWriteFlags flags,
                           GCancellable *cancellable,
                           GError **error);
void vhdx_image_write_async (VhdxImage *self,
                             guint64 offset,
                             const void *buffer,
                             gsize count,
                             VhdxWriteFlags flags,
                             int io_priority,
                             GCancellable *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_write_finish (VhdxImage *self, GAsyncResult *result, GError **error);

G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_write_bytes (VhdxImage *self,
                                 guint64 offset,
                                 GBytes *bytes,
                                 VhdxWriteFlags flags,
                                 GCancellable *cancellable,
                                 GError **error);
void vhdx_image_write_bytes_async (VhdxImage *self,
                                   guint64 offset,
                                   GBytes *bytes,
                                   VhdxWriteFlags flags,
                                   int io_priority,
                                   GCancellable *cancellable,
                                   GAsyncReadyCallback callback,
                                   gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_write_bytes_finish (VhdxImage *self, GAsyncResult *result, GError **error);

G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_write_zeroes (VhdxImage *self,
                                  guint64 offset,
                                  guint64 length,
                                  VhdxWriteFlags flags,
                                  GCancellable *cancellable,
                                  GError **error);
void vhdx_image_write_zeroes_async (VhdxImage *self,
                                    guint64 offset,
                                    guint64 length,
                                    VhdxWriteFlags flags,
                                    int io_priority,
                                    GCancellable *cancellable,
                                    GAsyncReadyCallback callback,
                                    gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_write_zeroes_finish (VhdxImage *self, GAsyncResult *result, GError **error);

G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_discard (VhdxImage *self,
                             guint64 offset,
                             guint64 length,
                             VhdxWriteFlags flags,
                             GCancellable *cancellable,
                             GError **error);
void vhdx_image_discard_async (VhdxImage *self,
                               guint64 offset,
                               guint64 length,
                               VhdxWriteFlags flags,
                               int io_priority,
                               GCancellable *cancellable,
                               GAsyncReadyCallback callback,
                               gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_discard_finish (VhdxImage *self, GAsyncResult *result, GError **error);

G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_flush (VhdxImage *self, GCancellable *cancellable, GError **error);
void vhdx_image_flush_async (VhdxImage *self,
                             int io_priority,
                             GCancellable *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_flush_finish (VhdxImage *self, GAsyncResult *result, GError **error);

G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_close (VhdxImage *self, GCancellable *cancellable, GError **error);
void vhdx_image_close_async (VhdxImage *self,
                             int io_priority,
                             GCancellable *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_close_finish (VhdxImage *self, GAsyncResult *result, GError **error);

/**
 * VhdxProgressCallback:
 * @done: how many units of the work are done
 * @total: how many units there are in all
 * @user_data: (closure): the data given with the callback
 *
 * Reports the progress of a long operation: @done of @total units.
 * [method@Vhdx.Image.resize] counts the blocks it moves out of the way of a
 * growing block allocation table; a resize that moves none may make no
 * report.  [method@Vhdx.Image.compact] counts the blocks it reads, then
 * those it moves: @total grows once it knows how many it moves.
 * [func@Vhdx.Image.merge] counts the bytes of the virtual disk.
 *
 * Since: 0.2
 */
typedef void (*VhdxProgressCallback) (guint64 done, guint64 total, gpointer user_data);

G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_resize (VhdxImage *self,
                            guint64 size,
                            VhdxResizeFlags flags,
                            VhdxProgressCallback progress_callback,
                            gpointer progress_data,
                            GCancellable *cancellable,
                            GError **error);
void vhdx_image_resize_async (VhdxImage *self,
                              guint64 size,
                              VhdxResizeFlags flags,
                              int io_priority,
                              VhdxProgressCallback progress_callback,
                              gpointer progress_data,
                              GDestroyNotify progress_data_free,
                              GCancellable *cancellable,
                              GAsyncReadyCallback callback,
                              gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_resize_finish (VhdxImage *self, GAsyncResult *result, GError **error);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_compact (VhdxImage *self,
                             VhdxCompactFlags flags,
                             VhdxProgressCallback progress_callback,
                             gpointer progress_data,
                             GCancellable *cancellable,
                             GError **error);
void vhdx_image_compact_async (VhdxImage *self,
                               VhdxCompactFlags flags,
                               int io_priority,
                               VhdxProgressCallback progress_callback,
                               gpointer progress_data,
                               GDestroyNotify progress_data_free,
                               GCancellable *cancellable,
                               GAsyncReadyCallback callback,
                               gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_compact_finish (VhdxImage *self, GAsyncResult *result, GError **error);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_set_parent (VhdxImage *self,
                                GFile *parent,
                                VhdxSetParentFlags flags,
                                GCancellable *cancellable,
                                GError **error);
void vhdx_image_set_parent_async (VhdxImage *self,
                                  GFile *parent,
                                  VhdxSetParentFlags flags,
                                  int io_priority,
                                  GCancellable *cancellable,
                                  GAsyncReadyCallback callback,
                                  gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_set_parent_finish (VhdxImage *self, GAsyncResult *result, GError **error);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_merge (GFile *child,
                           GFile *into,
                           VhdxMergeFlags flags,
                           VhdxProgressCallback progress_callback,
                           gpointer progress_data,
                           GCancellable *cancellable,
                           GError **error);
void vhdx_image_merge_async (GFile *child,
                             GFile *into,
                             VhdxMergeFlags flags,
                             int io_priority,
                             VhdxProgressCallback progress_callback,
                             gpointer progress_data,
                             GDestroyNotify progress_data_free,
                             GCancellable *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_merge_finish (GAsyncResult *result, GError **error);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_set_metadata (VhdxImage *self,
                                  guint physical_sector_size,
                                  VhdxSetMetadataFlags flags,
                                  GCancellable *cancellable,
                                  GError **error);
void vhdx_image_set_metadata_async (VhdxImage *self,
                                    guint physical_sector_size,
                                    VhdxSetMetadataFlags flags,
                                    int io_priority,
                                    GCancellable *cancellable,
                                    GAsyncReadyCallback callback,
                                    gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_set_metadata_finish (VhdxImage *self, GAsyncResult *result, GError **error);
G_GNUC_WARN_UNUSED_RESULT
gboolean vhdx_image_get_minimum_size (VhdxImage *self,
                                      guint64 *size,
                                      GCancellable *cancellable,
                                      GError **error);

G_GNUC_WARN_UNUSED_RESULT
GPtrArray *vhdx_image_get_extents (VhdxImage *self,
                                   guint64 offset,
                                   guint64 length,
                                   GCancellable *cancellable,
                                   GError **error);
void vhdx_image_get_extents_async (VhdxImage *self,
                                   guint64 offset,
                                   guint64 length,
                                   int io_priority,
                                   GCancellable *cancellable,
                                   GAsyncReadyCallback callback,
                                   gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
GPtrArray *vhdx_image_get_extents_finish (VhdxImage *self, GAsyncResult *result, GError **error);

G_GNUC_WARN_UNUSED_RESULT
GPtrArray *vhdx_image_check (VhdxImage *self, GCancellable *cancellable, GError **error);
void vhdx_image_check_async (VhdxImage *self,
                             int io_priority,
                             GCancellable *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer user_data);
G_GNUC_WARN_UNUSED_RESULT
GPtrArray *vhdx_image_check_finish (VhdxImage *self, GAsyncResult *result, GError **error);

G_END_DECLS
