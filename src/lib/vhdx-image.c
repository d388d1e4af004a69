/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxImage, the GObject of an opened image: its properties, opening, its parent's image and
 * closing. */
#include "config.h"

#include <glib/gi18n-lib.h>
#include <stdlib.h>

#include "vhdx-enum-types.h"
#include "vhdx-gfile-io-private.h"
#include "vhdx-image-private.h"
#include "vhdx-writer.h"

/**
 * VhdxImage:
 *
 * An opened VHDX image: its properties, and the bytes of its virtual disk.
 *
 * Open an image with [ctor@Vhdx.Image.new] or, without blocking the main
 * loop, [func@Vhdx.Image.new_async].  Any [iface@Gio.File] can be opened:
 * local files are read through a file descriptor, others (such as
 * `resource://` URIs) through a seekable [class@Gio.FileInputStream].
 *
 * The image's structures are checked when it is opened; a damaged image
 * fails to open with an error in the `VHDX_ERROR` domain that names the
 * structure, its offset in the file and what was expected.  Images opened
 * read-only are never written to: a log that still has to be replayed is
 * replayed in memory.
 *
 * Reads ([method@Vhdx.Image.read_bytes], [method@Vhdx.Image.read_bytes_async],
 * [method@Vhdx.Image.open_stream]) may be made from several threads at once.
 * Every asynchronous call runs in a worker thread (reads in a pool of one
 * thread per CPU, taken in the order of their I/O priority), and every call
 * that takes a [class@Gio.Cancellable] honours it, between chunks for long
 * operations.
 *
 * An image opened with %VHDX_OPEN_FLAGS_READ_WRITE can be written
 * ([method@Vhdx.Image.write_bytes], [method@Vhdx.Image.write_zeroes],
 * [method@Vhdx.Image.discard], [method@Vhdx.Image.open_io_stream]), also
 * from several threads at once and while it is read.  Reads see every write
 * as soon as it returns; a write is durable once [method@Vhdx.Image.flush]
 * or [method@Vhdx.Image.close] has returned after it, or at once with
 * %VHDX_WRITE_FLAGS_FUA.  What was flushed survives a crash: the next open
 * replays the image's log.  Other images are read-only
 * ([property@Vhdx.Image:read-only]) and refuse writes with
 * %G_IO_ERROR_READ_ONLY.
 *
 * Close an image that was written with [method@Vhdx.Image.close], which
 * leaves it clean for other programs and reports what went wrong.  An image
 * released without being closed is closed when its last reference goes
 * away, the same way, but a failure then is not reported: the file keeps
 * its log, which the next open replays.
 *
 * The parent of a differencing image is found through its parent locator
 * (relative to the image's own directory when the image is a local file)
 * unless [property@Vhdx.Image:parent-file] names it.  The parents are
 * always opened read-only.
 *
 * Since: 0.1
 */

enum {
        PROP_0,
        PROP_FILE,
        PROP_FLAGS,
        PROP_PARENT_FILE,
        PROP_PARENT_SEARCH_PATH,
        PROP_VIRTUAL_SIZE,
        PROP_BLOCK_SIZE,
        PROP_LOGICAL_SECTOR_SIZE,
        PROP_PHYSICAL_SECTOR_SIZE,
        PROP_DISK_TYPE,
        PROP_VIRTUAL_DISK_ID,
        PROP_DATA_WRITE_GUID,
        PROP_FILE_WRITE_GUID,
        PROP_CREATOR,
        PROP_LOG_STATE,
        PROP_FILE_SIZE,
        PROP_ALLOCATED_SIZE,
        PROP_HAS_PARENT,
        PROP_PARENT,
        PROP_PARENT_LOCATOR,
        PROP_CHAIN_DEPTH,
        PROP_READ_ONLY,
        PROP_IN_USE,
        N_PROPS
};

static GParamSpec *props[N_PROPS];

static void vhdx_image_initable_iface_init (GInitableIface *iface);
static void vhdx_image_async_initable_iface_init (GAsyncInitableIface *iface);

/* clang-format off */
G_DEFINE_FINAL_TYPE_WITH_CODE (VhdxImage, vhdx_image, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                      vhdx_image_initable_iface_init)
                               G_IMPLEMENT_INTERFACE (G_TYPE_ASYNC_INITABLE,
                                                      vhdx_image_async_initable_iface_init))
/* clang-format on */

/* Opening */

typedef struct {
        GCancellable *cancellable;
} OpenContext;

/* The engine's way of opening the parents: the same as the image itself, read-only. */
static VhdxIo *
open_parent_io (const char *name, gboolean writable, gpointer user_data, GError **error)
{
        OpenContext *context = user_data;
        g_autoptr (GFile) file = vhdx_gfile_io_file_for_name (name);

        return vhdx_gfile_io_open (file, writable, context->cancellable, error);
}

static void
image_cache_locator (VhdxImage *self)
{
        GPtrArray *locator = vhdx_file_get_parent_locator (self->handle);

        if (locator != NULL) {
                self->parent_locator =
                        g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
                for (guint i = 0; i < locator->len; i++) {
                        const VhdxLocatorEntry *entry = g_ptr_array_index (locator, i);

                        g_hash_table_insert (self->parent_locator, g_strdup (entry->key),
                                             g_strdup (entry->value));
                }
        }
}

static void
image_cache_strings (VhdxImage *self)
{
        const VhdxInfo *info = vhdx_image_info (self);

        self->virtual_disk_id = vhdx_guid_to_string (&info->virtual_disk_id);
        self->data_write_guid = vhdx_guid_to_string (&info->data_write_guid);
        self->file_write_guid = vhdx_guid_to_string (&info->file_write_guid);
        image_cache_locator (self);
}

static gboolean
image_open (VhdxImage *self, GCancellable *cancellable, GError **error)
{
        gboolean writable = (self->flags & VHDX_OPEN_FLAGS_READ_WRITE) != 0;
        g_autofree char *path = NULL;
        g_autofree char *parent_name = NULL;
        OpenContext context = { cancellable };
        VhdxOpenOptions options = { 0 };
        VhdxIo *io;

        if (self->file == NULL) {
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                     _ ("No image file was given"));
                return FALSE;
        }
        io = vhdx_gfile_io_open (self->file, writable, cancellable, error);
        if (io == NULL)
                return FALSE;

        /* Locator paths are relative to a local image's directory; other
         * images can only find their parent through parent-file. */
        path = g_file_get_path (self->file);
        if (self->parent_file != NULL)
                parent_name = vhdx_gfile_io_name (self->parent_file);
        options.path = path;
        options.parent_path = parent_name;
        options.parent_dirs = (const char *const *) self->parent_search_path;
        options.open_func = open_parent_io;
        options.open_data = &context;

        self->handle = vhdx_file_open_full (io, self->flags, &options, error);
        if (self->handle == NULL)
                return FALSE;
        if (writable)
                self->io = io;
        image_cache_strings (self);
        return TRUE;
}

static gboolean
vhdx_image_initable_init (GInitable *initable, GCancellable *cancellable, GError **error)
{
        VhdxImage *self = VHDX_IMAGE (initable);
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->init_lock);

        /* Only the first call opens; later calls give the same result. */
        if (!self->init_done) {
                self->init_done = TRUE;
                image_open (self, cancellable, &self->init_error);
        }
        if (self->init_error != NULL) {
                g_propagate_error (error, g_error_copy (self->init_error));
                return FALSE;
        }
        return TRUE;
}

static void
vhdx_image_initable_iface_init (GInitableIface *iface)
{
        iface->init = vhdx_image_initable_init;
}

/* vhdx_image_initable_init() as an operation of the image, for init_async(). */
static gpointer
image_init (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        return GINT_TO_POINTER (vhdx_image_initable_init (G_INITABLE (self), cancellable, error));
}

static const VhdxImageCall init_call = { .func = image_init };

static void
vhdx_image_async_initable_init_async (GAsyncInitable *initable,
                                      int io_priority,
                                      GCancellable *cancellable,
                                      GAsyncReadyCallback callback,
                                      gpointer user_data)
{
        vhdx_image_run_async (VHDX_IMAGE (initable), &init_call, NULL, NULL,
                              vhdx_image_async_initable_init_async, io_priority, cancellable,
                              callback, user_data);
}

static gboolean
vhdx_image_async_initable_init_finish (GAsyncInitable *initable,
                                       GAsyncResult *result,
                                       GError **error)
{
        return vhdx_image_task_finish (VHDX_IMAGE (initable), result,
                                       vhdx_image_async_initable_init_async, error);
}

static void
vhdx_image_async_initable_iface_init (GAsyncInitableIface *iface)
{
        iface->init_async = vhdx_image_async_initable_init_async;
        iface->init_finish = vhdx_image_async_initable_init_finish;
}

static VhdxImage *
image_new_for_parent (VhdxImage *child, VhdxFile *handle, const char *name)
{
        g_autoptr (GFile) file = name != NULL ? vhdx_gfile_io_file_for_name (name) : NULL;
        VhdxImage *self = g_object_new (VHDX_TYPE_IMAGE, "file", file, NULL);

        self->owner = g_object_ref (child->owner != NULL ? child->owner : child);
        self->handle = handle;
        self->init_done = TRUE;
        image_cache_strings (self);
        return self;
}

/**
 * vhdx_image_dup_parent:
 * @self: an image
 *
 * Gets the parent of a differencing image.  The parent was opened
 * read-only with the image; it stays valid for as long as it is
 * referenced, even after @self is released.
 *
 * Returns: (transfer full) (nullable): the parent, or %NULL when the
 *   image has none
 *
 * Since: 0.1
 */
VhdxImage *
vhdx_image_dup_parent (VhdxImage *self)
{
        g_autoptr (GMutexLocker) locker = NULL;
        VhdxFile *parent_handle;
        VhdxImage *parent;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        if (self->handle == NULL)
                return NULL;
        parent_handle = vhdx_file_get_parent (self->handle);
        if (parent_handle == NULL)
                return NULL;

        locker = g_mutex_locker_new (&self->parent_lock);
        parent = g_weak_ref_get (&self->parent_ref);
        if (parent == NULL) {
                parent = image_new_for_parent (self, parent_handle,
                                               vhdx_file_get_parent_path (self->handle));
                g_weak_ref_set (&self->parent_ref, parent);
        }
        return parent;
}

/* GObject */

static void
vhdx_image_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
        VhdxImage *self = VHDX_IMAGE (object);

        switch (prop_id) {
        case PROP_FILE:
                g_value_set_object (value, self->file);
                break;
        case PROP_FLAGS:
                g_value_set_flags (value, self->flags);
                break;
        case PROP_PARENT_FILE:
                g_value_set_object (value, self->parent_file);
                break;
        case PROP_PARENT_SEARCH_PATH:
                g_value_set_boxed (value, self->parent_search_path);
                break;
        case PROP_VIRTUAL_SIZE:
                g_value_set_uint64 (value, vhdx_image_get_virtual_size (self));
                break;
        case PROP_BLOCK_SIZE:
                g_value_set_uint (value, vhdx_image_get_block_size (self));
                break;
        case PROP_LOGICAL_SECTOR_SIZE:
                g_value_set_uint (value, vhdx_image_get_logical_sector_size (self));
                break;
        case PROP_PHYSICAL_SECTOR_SIZE:
                g_value_set_uint (value, vhdx_image_get_physical_sector_size (self));
                break;
        case PROP_DISK_TYPE:
                g_value_set_enum (value, vhdx_image_get_disk_type (self));
                break;
        case PROP_VIRTUAL_DISK_ID:
                g_value_set_string (value, vhdx_image_get_virtual_disk_id (self));
                break;
        case PROP_DATA_WRITE_GUID:
                g_value_set_string (value, vhdx_image_get_data_write_guid (self));
                break;
        case PROP_FILE_WRITE_GUID:
                g_value_set_string (value, vhdx_image_get_file_write_guid (self));
                break;
        case PROP_CREATOR:
                g_value_set_string (value, vhdx_image_get_creator (self));
                break;
        case PROP_LOG_STATE:
                g_value_set_enum (value, vhdx_image_get_log_state (self));
                break;
        case PROP_FILE_SIZE:
                g_value_set_uint64 (value, vhdx_image_get_file_size (self));
                break;
        case PROP_ALLOCATED_SIZE:
                g_value_set_uint64 (value, vhdx_image_get_allocated_size (self));
                break;
        case PROP_HAS_PARENT:
                g_value_set_boolean (value, vhdx_image_has_parent (self));
                break;
        case PROP_PARENT:
                g_value_take_object (value, vhdx_image_dup_parent (self));
                break;
        case PROP_PARENT_LOCATOR:
                g_value_set_boxed (value, self->parent_locator);
                break;
        case PROP_CHAIN_DEPTH:
                g_value_set_uint (value, vhdx_image_get_chain_depth (self));
                break;
        case PROP_READ_ONLY:
                g_value_set_boolean (value, vhdx_image_is_read_only (self));
                break;
        case PROP_IN_USE:
                g_value_set_boolean (value, vhdx_image_is_in_use (self));
                break;
        default:
                G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
                break;
        }
}

static void
vhdx_image_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
        VhdxImage *self = VHDX_IMAGE (object);

        switch (prop_id) {
        case PROP_FILE:
                g_set_object (&self->file, g_value_get_object (value));
                break;
        case PROP_FLAGS:
                self->flags = g_value_get_flags (value);
                break;
        case PROP_PARENT_FILE:
                g_set_object (&self->parent_file, g_value_get_object (value));
                break;
        case PROP_PARENT_SEARCH_PATH:
                g_strfreev (self->parent_search_path);
                self->parent_search_path = g_value_dup_boxed (value);
                break;
        default:
                G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
                break;
        }
}

static void
vhdx_image_finalize (GObject *object)
{
        VhdxImage *self = VHDX_IMAGE (object);

        g_weak_ref_clear (&self->parent_ref);
        g_clear_pointer (&self->parent_locator, g_hash_table_unref);
        g_free (self->virtual_disk_id);
        g_free (self->data_write_guid);
        g_free (self->file_write_guid);
        g_clear_pointer (&self->retired_strings, g_ptr_array_unref);
        g_clear_pointer (&self->retired_locators, g_ptr_array_unref);
        /* The image of a parent only borrows its VhdxFile from the owner's chain. */
        if (self->owner != NULL) {
                self->handle = NULL;
                g_clear_object (&self->owner);
        }
        /* Closes an image opened read-write, reporting nothing. */
        self->io = NULL;
        g_clear_pointer (&self->handle, vhdx_file_free);
        g_clear_error (&self->init_error);
        g_clear_object (&self->parent_file);
        g_clear_pointer (&self->parent_search_path, g_strfreev);
        g_clear_object (&self->file);
        g_mutex_clear (&self->init_lock);
        g_mutex_clear (&self->allocated_lock);
        g_mutex_clear (&self->parent_lock);
        g_rw_lock_clear (&self->request_lock);

        G_OBJECT_CLASS (vhdx_image_parent_class)->finalize (object);
}

/* The catalog of the library's messages; VHDX_LOCALEDIR overrides where it
 * is, so that tests can use the catalogs of the build tree. */
static void
vhdx_image_bind_textdomain (void)
{
        const char *localedir = secure_getenv ("VHDX_LOCALEDIR");

        bindtextdomain (GETTEXT_PACKAGE,
                        localedir != NULL && localedir[0] != '\0' ? localedir : LOCALEDIR);
        bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
}

static void
vhdx_image_class_init (VhdxImageClass *klass)
{
        GObjectClass *object_class = G_OBJECT_CLASS (klass);
        const GParamFlags readable =
                G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY;
        const GParamFlags construct = G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                                      G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY;

        vhdx_image_bind_textdomain ();

        object_class->get_property = vhdx_image_get_property;
        object_class->set_property = vhdx_image_set_property;
        object_class->finalize = vhdx_image_finalize;

        /**
         * VhdxImage:file:
         *
         * The image file.
         *
         * Since: 0.1
         */
        props[PROP_FILE] = g_param_spec_object ("file", NULL, NULL, G_TYPE_FILE, construct);

        /**
         * VhdxImage:flags:
         *
         * How the image is opened: read-only unless
         * %VHDX_OPEN_FLAGS_READ_WRITE is given.
         *
         * Since: 0.1
         */
        props[PROP_FLAGS] = g_param_spec_flags ("flags", NULL, NULL, VHDX_TYPE_OPEN_FLAGS,
                                                VHDX_OPEN_FLAGS_NONE, construct);

        /**
         * VhdxImage:parent-file:
         *
         * The parent of a differencing image, to open instead of the
         * files its parent locator names.  Ignored for other images.
         *
         * Since: 0.1
         */
        props[PROP_PARENT_FILE] =
                g_param_spec_object ("parent-file", NULL, NULL, G_TYPE_FILE, construct);

        /**
         * VhdxImage:parent-search-path:
         *
         * More directories to look for the parent of a differencing image
         * in (and for its parents), after the image's own directory and the
         * folders beside it where Hyper-V keeps disks and checkpoints
         * (`Virtual Hard Disks`, `Snapshots`).  The file names of the
         * parent locator's paths are looked for in each; a file found must
         * still carry the DataWriteGuid the image was made from.
         *
         * Since: 0.1
         */
        props[PROP_PARENT_SEARCH_PATH] =
                g_param_spec_boxed ("parent-search-path", NULL, NULL, G_TYPE_STRV, construct);

        /**
         * VhdxImage:virtual-size:
         *
         * The size in bytes of the virtual disk.  It changes, and is
         * notified, when [method@Vhdx.Image.resize] changes it.
         *
         * Since: 0.1
         */
        props[PROP_VIRTUAL_SIZE] =
                g_param_spec_uint64 ("virtual-size", NULL, NULL, 0, G_MAXUINT64, 0, readable);

        /**
         * VhdxImage:block-size:
         *
         * The size in bytes of the payload blocks, the unit in which the
         * image allocates space (1 MiB to 256 MiB).
         *
         * Since: 0.1
         */
        props[PROP_BLOCK_SIZE] =
                g_param_spec_uint ("block-size", NULL, NULL, 0, G_MAXUINT, 0, readable);

        /**
         * VhdxImage:logical-sector-size:
         *
         * The sector size in bytes that the virtual disk reports to a guest:
         * 512 or 4096.
         *
         * Since: 0.1
         */
        props[PROP_LOGICAL_SECTOR_SIZE] =
                g_param_spec_uint ("logical-sector-size", NULL, NULL, 0, G_MAXUINT, 0, readable);

        /**
         * VhdxImage:physical-sector-size:
         *
         * The physical sector size in bytes of the virtual disk: 512 or 4096.
         * [method@Vhdx.Image.set_metadata] changes it, and notifies it.
         *
         * Since: 0.1
         */
        props[PROP_PHYSICAL_SECTOR_SIZE] =
                g_param_spec_uint ("physical-sector-size", NULL, NULL, 0, G_MAXUINT, 0, readable);

        /**
         * VhdxImage:disk-type:
         *
         * Whether the image is fixed, dynamic or differencing.
         *
         * Since: 0.1
         */
        props[PROP_DISK_TYPE] = g_param_spec_enum ("disk-type", NULL, NULL, VHDX_TYPE_DISK_TYPE,
                                                   VHDX_DISK_TYPE_FIXED, readable);

        /**
         * VhdxImage:virtual-disk-id:
         *
         * The GUID of the virtual disk, in lowercase, such as
         * `2d4f8a1e-...`.  [method@Vhdx.Image.set_metadata] can give it a
         * new one, and notifies it.
         *
         * Since: 0.1
         */
        props[PROP_VIRTUAL_DISK_ID] =
                g_param_spec_string ("virtual-disk-id", NULL, NULL, NULL, readable);

        /**
         * VhdxImage:data-write-guid:
         *
         * The GUID that changes whenever the virtual disk's data changes,
         * in lowercase.  Differencing images name their parent by it.
         *
         * The first write to an image gives it a new DataWriteGuid in the
         * file; the property keeps the GUID the image was opened with until
         * [method@Vhdx.Image.close] gives it the new one, and notifies it.
         *
         * Since: 0.1
         */
        props[PROP_DATA_WRITE_GUID] =
                g_param_spec_string ("data-write-guid", NULL, NULL, NULL, readable);

        /**
         * VhdxImage:file-write-guid:
         *
         * The GUID that changes whenever the file is opened for writing,
         * in lowercase.
         *
         * The file gets a new one before it is first changed; the property
         * keeps the GUID the image was opened with until
         * [method@Vhdx.Image.close] gives it the new one, and notifies it.
         *
         * Since: 0.1
         */
        props[PROP_FILE_WRITE_GUID] =
                g_param_spec_string ("file-write-guid", NULL, NULL, NULL, readable);

        /**
         * VhdxImage:creator:
         *
         * The name of the program that made the image, as it recorded it;
         * empty when it recorded none.
         *
         * Since: 0.1
         */
        props[PROP_CREATOR] = g_param_spec_string ("creator", NULL, NULL, NULL, readable);

        /**
         * VhdxImage:log-state:
         *
         * What opening the image did with its log.
         *
         * Since: 0.1
         */
        props[PROP_LOG_STATE] = g_param_spec_enum ("log-state", NULL, NULL, VHDX_TYPE_LOG_STATE,
                                                   VHDX_LOG_STATE_CLEAN, readable);

        /**
         * VhdxImage:file-size:
         *
         * The size in bytes of the image file: its current size for an
         * image opened read-write, which grows as blocks are written.
         *
         * Since: 0.1
         */
        props[PROP_FILE_SIZE] =
                g_param_spec_uint64 ("file-size", NULL, NULL, 0, G_MAXUINT64, 0, readable);

        /**
         * VhdxImage:allocated-size:
         *
         * How many bytes of the virtual disk the image file stores itself
         * (blocks of a differencing image's parents do not count).
         * Counting them reads the whole block allocation table, when the
         * property is first read and again after the image was written;
         * 0 if the table cannot be read, as [method@Vhdx.Image.check] then
         * reports.
         *
         * Since: 0.1
         */
        props[PROP_ALLOCATED_SIZE] =
                g_param_spec_uint64 ("allocated-size", NULL, NULL, 0, G_MAXUINT64, 0, readable);

        /**
         * VhdxImage:has-parent:
         *
         * Whether the image is a differencing image, which has a parent.
         *
         * Since: 0.1
         */
        props[PROP_HAS_PARENT] = g_param_spec_boolean ("has-parent", NULL, NULL, FALSE, readable);

        /**
         * VhdxImage:parent:
         *
         * The parent of a differencing image, opened read-only, or %NULL.
         *
         * Since: 0.1
         */
        props[PROP_PARENT] = g_param_spec_object ("parent", NULL, NULL, VHDX_TYPE_IMAGE, readable);

        /**
         * VhdxImage:parent-locator: (type GLib.HashTable(utf8,utf8))
         *
         * The entries of a differencing image's parent locator, such as
         * `parent_linkage`, `relative_path` and `absolute_win32_path`, or
         * %NULL when the image has none.
         *
         * Since: 0.1
         */
        props[PROP_PARENT_LOCATOR] =
                g_param_spec_boxed ("parent-locator", NULL, NULL, G_TYPE_HASH_TABLE, readable);

        /**
         * VhdxImage:chain-depth:
         *
         * How many ancestors the image has: 0 for an image without a
         * parent, 1 when the parent has none, and so on.
         *
         * Since: 0.1
         */
        props[PROP_CHAIN_DEPTH] =
                g_param_spec_uint ("chain-depth", NULL, NULL, 0, G_MAXUINT, 0, readable);

        /**
         * VhdxImage:read-only: (getter is_read_only)
         *
         * Whether the image refuses writes, with %G_IO_ERROR_READ_ONLY:
         * %TRUE unless it was opened with %VHDX_OPEN_FLAGS_READ_WRITE.  The
         * parents of a differencing image are always read-only.
         *
         * Since: 0.1
         */
        props[PROP_READ_ONLY] = g_param_spec_boolean ("read-only", NULL, NULL, TRUE, readable);

        /**
         * VhdxImage:in-use: (getter is_in_use)
         *
         * Whether another process had the image open for writing when it
         * was opened (this library, QEMU, or anything that locks images as
         * QEMU does).  Only an image opened with
         * %VHDX_OPEN_FLAGS_FORCE_SHARE can be: without it, opening such an
         * image fails with %G_IO_ERROR_BUSY.  What such an image reads may
         * change, or be inconsistent, while the other process writes.
         *
         * Since: 0.1
         */
        props[PROP_IN_USE] = g_param_spec_boolean ("in-use", NULL, NULL, FALSE, readable);

        g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
vhdx_image_init (VhdxImage *self)
{
        g_mutex_init (&self->init_lock);
        g_mutex_init (&self->allocated_lock);
        g_mutex_init (&self->parent_lock);
        g_rw_lock_init (&self->request_lock);
        g_weak_ref_init (&self->parent_ref, NULL);
}

/* Constructors */

/**
 * vhdx_image_new:
 * @file: the image file
 * @flags: how to open it
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Opens a VHDX image, and its parents if it is a differencing image.
 *
 * This reads and checks the image's headers, log, region tables and
 * metadata; it blocks, so a program with a main loop should call
 * [func@Vhdx.Image.new_async] instead.
 *
 * Returns: (transfer full): the image, or %NULL with @error set: in the
 *   `VHDX_ERROR` domain when the image is damaged or not supported, in the
 *   `G_IO_ERROR` domain when the file cannot be read
 *
 * Since: 0.1
 */
VhdxImage *
vhdx_image_new (GFile *file, VhdxOpenFlags flags, GCancellable *cancellable, GError **error)
{
        g_return_val_if_fail (G_IS_FILE (file), NULL);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        return g_initable_new (VHDX_TYPE_IMAGE, cancellable, error, "file", file, "flags", flags,
                               NULL);
}

/**
 * vhdx_image_new_async:
 * @file: the image file
 * @flags: how to open it
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the image is open
 * @user_data: (closure): data for @callback
 *
 * Opens a VHDX image in a worker thread, as [ctor@Vhdx.Image.new] does.
 * Call [ctor@Vhdx.Image.new_finish] from @callback to get the image.
 *
 * Since: 0.1
 */
void
vhdx_image_new_async (GFile *file,
                      VhdxOpenFlags flags,
                      int io_priority,
                      GCancellable *cancellable,
                      GAsyncReadyCallback callback,
                      gpointer user_data)
{
        g_return_if_fail (G_IS_FILE (file));
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        g_async_initable_new_async (VHDX_TYPE_IMAGE, io_priority, cancellable, callback, user_data,
                                    "file", file, "flags", flags, NULL);
}

/**
 * vhdx_image_new_finish:
 * @result: the result passed to the callback of [func@Vhdx.Image.new_async]
 * @error: return location for an error
 *
 * Finishes opening an image.
 *
 * Returns: (transfer full): the image, or %NULL with @error set
 *
 * Since: 0.1
 */
VhdxImage *
vhdx_image_new_finish (GAsyncResult *result, GError **error)
{
        g_autoptr (GObject) source = NULL;
        GObject *object;

        g_return_val_if_fail (G_IS_ASYNC_RESULT (result), NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        source = g_async_result_get_source_object (result);
        g_return_val_if_fail (VHDX_IS_IMAGE (source), NULL);
        object = g_async_initable_new_finish (G_ASYNC_INITABLE (source), result, error);
        return object != NULL ? VHDX_IMAGE (object) : NULL;
}

void
vhdx_image_notify_virtual_size (VhdxImage *self)
{
        g_object_notify_by_pspec (G_OBJECT (self), props[PROP_VIRTUAL_SIZE]);
}

void
vhdx_image_reload_parent_locator (VhdxImage *self)
{
        if (self->parent_locator != NULL) {
                if (self->retired_locators == NULL)
                        self->retired_locators = g_ptr_array_new_with_free_func (
                                (GDestroyNotify) g_hash_table_unref);
                g_ptr_array_add (self->retired_locators, g_steal_pointer (&self->parent_locator));
        }
        image_cache_locator (self);
}

void
vhdx_image_notify_parent_locator (VhdxImage *self)
{
        g_object_notify_by_pspec (G_OBJECT (self), props[PROP_PARENT_LOCATOR]);
}

void
vhdx_image_reload_virtual_disk_id (VhdxImage *self)
{
        if (self->retired_strings == NULL)
                self->retired_strings = g_ptr_array_new_with_free_func (g_free);
        g_ptr_array_add (self->retired_strings, self->virtual_disk_id);
        g_atomic_pointer_set (&self->virtual_disk_id,
                              vhdx_guid_to_string (&vhdx_image_info (self)->virtual_disk_id));
}

void
vhdx_image_notify_metadata (VhdxImage *self,
                            gboolean physical_sector_size,
                            gboolean virtual_disk_id)
{
        if (physical_sector_size)
                g_object_notify_by_pspec (G_OBJECT (self), props[PROP_PHYSICAL_SECTOR_SIZE]);
        if (virtual_disk_id)
                g_object_notify_by_pspec (G_OBJECT (self), props[PROP_VIRTUAL_DISK_ID]);
}

/* Closes the engine's image once no write runs. */
static gpointer
image_close (VhdxImage *self, gpointer data, GCancellable *cancellable, GError **error)
{
        gboolean ok;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return FALSE;
        g_rw_lock_writer_lock (&self->request_lock);
        ok = vhdx_file_close (self->handle, error);
        g_rw_lock_writer_unlock (&self->request_lock);
        return GINT_TO_POINTER (ok);
}

/* Once the image is closed, nothing changes its headers any more: the
 * properties take the GUIDs they hold, and notify those that changed. */
static void
image_update_guids (VhdxImage *self)
{
        const VhdxInfo *info = vhdx_image_info (self);
        struct {
                char **field;
                const VhdxGuid *guid;
                GParamSpec *pspec;
                gboolean changed;
        } guids[] = {
                { &self->data_write_guid, &info->data_write_guid, props[PROP_DATA_WRITE_GUID] },
                { &self->file_write_guid, &info->file_write_guid, props[PROP_FILE_WRITE_GUID] },
        };

        g_rw_lock_writer_lock (&self->request_lock);
        for (gsize i = 0; i < G_N_ELEMENTS (guids); i++) {
                char *text = vhdx_guid_to_string (guids[i].guid);

                if (g_strcmp0 (text, *guids[i].field) == 0) {
                        g_free (text);
                        continue;
                }
                if (self->retired_strings == NULL)
                        self->retired_strings = g_ptr_array_new_with_free_func (g_free);
                g_ptr_array_add (self->retired_strings, *guids[i].field);
                g_atomic_pointer_set (guids[i].field, text);
                guids[i].changed = TRUE;
        }
        g_rw_lock_writer_unlock (&self->request_lock);
        for (gsize i = 0; i < G_N_ELEMENTS (guids); i++) {
                if (guids[i].changed)
                        g_object_notify_by_pspec (G_OBJECT (self), guids[i].pspec);
        }
}

/* In the caller's context after the close. */
static void
close_done (VhdxImage *self, gpointer data)
{
        image_update_guids (self);
}

static const VhdxImageCall close_call = { .func = image_close, .done = close_done };

/**
 * vhdx_image_close:
 * @self: an image
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Finishes writing an image: flushes it, writes the changes of its
 * structures in place for good and clears the log's GUID in its header,
 * so that other programs find the image clean.  Writes running in other
 * threads end first; later writes and flushes fail with
 * %G_IO_ERROR_CLOSED.  The image can still be read.
 * [property@Vhdx.Image:data-write-guid] and
 * [property@Vhdx.Image:file-write-guid] then take the GUIDs the file holds.
 *
 * A read-only image has nothing to close; closing an image again does
 * nothing.  An image released without being closed is closed when its
 * last reference goes away, in the same way, but without a word if that
 * fails.  If closing fails, the image keeps its log, which the next open
 * replays, and refuses any more writes.
 *
 * Returns: %TRUE on success; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_close (VhdxImage *self, GCancellable *cancellable, GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (image_close (self, NULL, cancellable, error) == NULL)
                return FALSE;
        image_update_guids (self);
        return TRUE;
}

/**
 * vhdx_image_close_async:
 * @self: an image
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the image is closed
 * @user_data: (closure): data for @callback
 *
 * Closes the image in a worker thread, as [method@Vhdx.Image.close] does;
 * the GUID properties are notified in the thread-default main context of
 * the caller.  Call [method@Vhdx.Image.close_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_close_async (VhdxImage *self,
                        int io_priority,
                        GCancellable *cancellable,
                        GAsyncReadyCallback callback,
                        gpointer user_data)
{
        GTask *task;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        /* The result is what the close did, even if the cancellable was
         * cancelled after it started. */
        task = vhdx_image_task_new (self, vhdx_image_close_async, io_priority, cancellable,
                                    callback, user_data);
        g_task_set_check_cancellable (task, FALSE);
        vhdx_image_task_run_then (task, &close_call, NULL, NULL, NULL);
}

/**
 * vhdx_image_close_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.close_async].
 *
 * Returns: %TRUE if the image was closed; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_close_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return vhdx_image_task_finish (self, result, vhdx_image_close_async, error);
}
