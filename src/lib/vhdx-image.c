/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VhdxImage, the GObject of an opened image: properties, reads, writes, extents and check. */
#include "config.h"

#include <inttypes.h>

#include "vhdx-image.h"

#include <glib/gi18n-lib.h>
#include <stdlib.h>

#include "vhdx-check.h"
#include "vhdx-enum-types.h"
#include "vhdx-extent-private.h"
#include "vhdx-gfile-io-private.h"
#include "vhdx-input-stream.h"
#include "vhdx-map.h"
#include "vhdx-output-stream.h"
#include "vhdx-problems.h"
#include "vhdx-read-pool-private.h"
#include "vhdx-reader.h"
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

/* Long reads and writes look at their cancellable between chunks of this size. */
#define IO_CHUNK_SIZE ((gsize) 8 * 1024 * 1024)

/* Zeroing and discarding look at their cancellable between chunks of this
 * size, a multiple of every block size (powers of two up to 256 MiB), so
 * that a block covered entirely by a range is covered entirely by a chunk. */
#define CLEAR_CHUNK_SIZE (G_GUINT64_CONSTANT (1) << 30)

/* get_extents() maps this many blocks between looks at its cancellable. */
#define MAP_CHUNK_BLOCKS G_GUINT64_CONSTANT (65536)

struct _VhdxImage {
        GObject parent_instance;

        GFile *file;
        GFile *parent_file;
        char **parent_search_path;
        VhdxOpenFlags flags;

        /* The engine's opened image: set once, by initable_init() or when
         * wrapping a parent; read-only after. */
        VhdxFile *handle;
        /* For the image of a parent: the image whose VhdxFile owns ours. */
        VhdxImage *owner;
        /* The engine's I/O of an image opened read-write, owned by handle:
         * the size of the file as it grows. */
        VhdxIo *io;
        char *virtual_disk_id;
        /* Replaced by close(), which keeps the strings replaced in
         * retired_strings: a caller may still hold them. */
        char *data_write_guid;
        char *file_write_guid;
        GPtrArray *retired_strings;
        GHashTable *parent_locator;

        /* Writes hold it for reading; close() and the update of the GUIDs
         * after it, for writing: no write runs while the image closes. */
        GRWLock close_lock;
        /* Counts the writes made (atomic), so that the allocated size is
         * counted again after them. */
        gint writes;

        GMutex init_lock;
        gboolean init_done;
        GError *init_error;

        GMutex allocated_lock;
        gboolean allocated_known;
        gint allocated_writes; /* the count of writes it was counted after */
        guint64 allocated;

        /*
         * The image of the parent, cached weakly: it holds a reference to
         * its owner, so a strong reference here would be a cycle.
         */
        GMutex parent_lock;
        GWeakRef parent_ref;
};

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

static const VhdxInfo *
image_info (VhdxImage *self)
{
        return self->handle != NULL ? vhdx_file_get_info (self->handle) : NULL;
}

/* Opening */

typedef struct {
        GCancellable *cancellable;
} OpenContext;

/* The engine's way of opening the parents: the same as the image itself, read-only. */
static VhdxIo *
open_parent_io (const char *name, gpointer user_data, GError **error)
{
        OpenContext *context = user_data;
        g_autoptr (GFile) file = vhdx_gfile_io_file_for_name (name);

        return vhdx_gfile_io_open (file, FALSE, context->cancellable, error);
}

static void
image_cache_strings (VhdxImage *self)
{
        const VhdxInfo *info = image_info (self);
        GPtrArray *locator = vhdx_file_get_parent_locator (self->handle);

        self->virtual_disk_id = vhdx_guid_to_string (&info->virtual_disk_id);
        self->data_write_guid = vhdx_guid_to_string (&info->data_write_guid);
        self->file_write_guid = vhdx_guid_to_string (&info->file_write_guid);
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

static void
init_thread (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
        GError *error = NULL;

        if (!vhdx_image_initable_init (G_INITABLE (source_object), cancellable, &error))
                g_task_return_error (task, error);
        else
                g_task_return_boolean (task, TRUE);
}

static void
vhdx_image_async_initable_init_async (GAsyncInitable *initable,
                                      int io_priority,
                                      GCancellable *cancellable,
                                      GAsyncReadyCallback callback,
                                      gpointer user_data)
{
        g_autoptr (GTask) task = g_task_new (initable, cancellable, callback, user_data);

        g_task_set_source_tag (task, vhdx_image_async_initable_init_async);
        g_task_set_priority (task, io_priority);
        g_task_run_in_thread (task, init_thread);
}

static gboolean
vhdx_image_async_initable_init_finish (GAsyncInitable *initable,
                                       GAsyncResult *result,
                                       GError **error)
{
        g_return_val_if_fail (g_task_is_valid (result, initable), FALSE);

        return g_task_propagate_boolean (G_TASK (result), error);
}

static void
vhdx_image_async_initable_iface_init (GAsyncInitableIface *iface)
{
        iface->init_async = vhdx_image_async_initable_init_async;
        iface->init_finish = vhdx_image_async_initable_init_finish;
}

/* The image of the parent of @child, sharing the VhdxFile that @child's chain owns. */
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
                g_value_set_string (value, self->virtual_disk_id);
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
        g_rw_lock_clear (&self->close_lock);

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
         * The size in bytes of the virtual disk.
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
         * `2d4f8a1e-...`.
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
        g_rw_lock_init (&self->close_lock);
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

/* Properties */

/**
 * vhdx_image_get_file:
 * @self: an image
 *
 * Gets the image file.
 *
 * Returns: (transfer none) (nullable): the file of [property@Vhdx.Image:file]
 *
 * Since: 0.1
 */
GFile *
vhdx_image_get_file (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return self->file;
}

/**
 * vhdx_image_get_parent_file:
 * @self: an image
 *
 * Gets the parent that was given with [property@Vhdx.Image:parent-file].
 *
 * Returns: (transfer none) (nullable): the file given, or %NULL
 *
 * Since: 0.1
 */
GFile *
vhdx_image_get_parent_file (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return self->parent_file;
}

/**
 * vhdx_image_get_parent_search_path:
 * @self: an image
 *
 * Gets the directories the image's parent is looked for in, besides those
 * its locator names.
 *
 * Returns: (transfer none) (nullable) (array zero-terminated=1): the
 *   directories, or %NULL
 *
 * Since: 0.1
 */
const char *const *
vhdx_image_get_parent_search_path (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return (const char *const *) self->parent_search_path;
}

/**
 * vhdx_image_get_flags:
 * @self: an image
 *
 * Gets how the image was opened.
 *
 * Returns: the flags of [property@Vhdx.Image:flags]
 *
 * Since: 0.1
 */
VhdxOpenFlags
vhdx_image_get_flags (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), VHDX_OPEN_FLAGS_NONE);

        return self->flags;
}

/**
 * vhdx_image_get_virtual_size:
 * @self: an image
 *
 * Gets the size of the virtual disk.
 *
 * Returns: the size in bytes of the virtual disk
 *
 * Since: 0.1
 */
guint64
vhdx_image_get_virtual_size (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        return self->handle != NULL ? image_info (self)->virtual_size : 0;
}

/**
 * vhdx_image_get_block_size:
 * @self: an image
 *
 * Gets the size of the image's payload blocks.
 *
 * Returns: the block size in bytes
 *
 * Since: 0.1
 */
guint
vhdx_image_get_block_size (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        return self->handle != NULL ? image_info (self)->block_size : 0;
}

/**
 * vhdx_image_get_logical_sector_size:
 * @self: an image
 *
 * Gets the logical sector size of the virtual disk.
 *
 * Returns: 512 or 4096
 *
 * Since: 0.1
 */
guint
vhdx_image_get_logical_sector_size (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        return self->handle != NULL ? image_info (self)->logical_sector_size : 0;
}

/**
 * vhdx_image_get_physical_sector_size:
 * @self: an image
 *
 * Gets the physical sector size of the virtual disk.
 *
 * Returns: 512 or 4096
 *
 * Since: 0.1
 */
guint
vhdx_image_get_physical_sector_size (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        return self->handle != NULL ? image_info (self)->physical_sector_size : 0;
}

/**
 * vhdx_image_get_disk_type:
 * @self: an image
 *
 * Gets whether the image is fixed, dynamic or differencing.
 *
 * Returns: the disk type
 *
 * Since: 0.1
 */
VhdxDiskType
vhdx_image_get_disk_type (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), VHDX_DISK_TYPE_FIXED);

        return self->handle != NULL ? image_info (self)->disk_type : VHDX_DISK_TYPE_FIXED;
}

/**
 * vhdx_image_get_virtual_disk_id:
 * @self: an image
 *
 * Gets the GUID of the virtual disk.
 *
 * Returns: (nullable): the GUID in lowercase, or %NULL before the image is open
 *
 * Since: 0.1
 */
const char *
vhdx_image_get_virtual_disk_id (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return self->virtual_disk_id;
}

/**
 * vhdx_image_get_data_write_guid:
 * @self: an image
 *
 * Gets the GUID that changes whenever the virtual disk's data changes,
 * as [property@Vhdx.Image:data-write-guid] says.
 *
 * Returns: (nullable): the GUID in lowercase, or %NULL before the image is open
 *
 * Since: 0.1
 */
const char *
vhdx_image_get_data_write_guid (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return g_atomic_pointer_get (&self->data_write_guid);
}

/**
 * vhdx_image_get_file_write_guid:
 * @self: an image
 *
 * Gets the GUID that changes whenever the file is opened for writing,
 * as [property@Vhdx.Image:file-write-guid] says.
 *
 * Returns: (nullable): the GUID in lowercase, or %NULL before the image is open
 *
 * Since: 0.1
 */
const char *
vhdx_image_get_file_write_guid (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return g_atomic_pointer_get (&self->file_write_guid);
}

/**
 * vhdx_image_get_creator:
 * @self: an image
 *
 * Gets the name of the program that made the image.
 *
 * Returns: (nullable): the creator, empty if the image names none, or
 *   %NULL before the image is open
 *
 * Since: 0.1
 */
const char *
vhdx_image_get_creator (VhdxImage *self)
{
        const VhdxInfo *info;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        info = image_info (self);
        if (info == NULL)
                return NULL;
        return info->creator != NULL ? info->creator : "";
}

/**
 * vhdx_image_get_log_state:
 * @self: an image
 *
 * Gets what opening the image did with its log.
 *
 * Returns: the state of the log
 *
 * Since: 0.1
 */
VhdxLogState
vhdx_image_get_log_state (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), VHDX_LOG_STATE_CLEAN);

        return self->handle != NULL ? image_info (self)->log_state : VHDX_LOG_STATE_CLEAN;
}

/**
 * vhdx_image_get_file_size:
 * @self: an image
 *
 * Gets the size of the image file: its current size for an image opened
 * read-write.
 *
 * Returns: the size in bytes of the file
 *
 * Since: 0.1
 */
guint64
vhdx_image_get_file_size (VhdxImage *self)
{
        g_autoptr (GError) error = NULL;
        guint64 size;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        if (self->handle == NULL)
                return 0;
        if (self->io != NULL) {
                if (vhdx_io_get_size (self->io, &size, &error))
                        return size;
                g_debug ("Could not get the size of the image: %s", error->message);
        }
        return vhdx_file_get_info (self->handle)->file_size;
}

static gboolean
image_get_allocated (VhdxImage *self, guint64 *allocated, GError **error)
{
        g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->allocated_lock);
        /* A write that ends during the count makes the next call count again. */
        gint writes = g_atomic_int_get (&self->writes);

        if (!self->allocated_known || self->allocated_writes != writes) {
                if (!vhdx_file_get_allocated_bytes (self->handle, &self->allocated, error))
                        return FALSE;
                self->allocated_known = TRUE;
                self->allocated_writes = writes;
        }
        *allocated = self->allocated;
        return TRUE;
}

/**
 * vhdx_image_get_allocated_size:
 * @self: an image
 *
 * Gets how many bytes of the virtual disk the image file stores itself.
 * The first call reads the whole block allocation table; later calls
 * return the figure it found, until the image is written.
 *
 * Returns: the number of bytes, or 0 if the block allocation table
 *   cannot be read
 *
 * Since: 0.1
 */
guint64
vhdx_image_get_allocated_size (VhdxImage *self)
{
        g_autoptr (GError) error = NULL;
        guint64 allocated = 0;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        if (self->handle == NULL)
                return 0;
        if (!image_get_allocated (self, &allocated, &error)) {
                g_debug ("Could not count the allocated bytes: %s", error->message);
                return 0;
        }
        return allocated;
}

/**
 * vhdx_image_is_in_use: (get-property in-use)
 * @self: an image
 *
 * Gets whether another process had the image open for writing when it was
 * opened with %VHDX_OPEN_FLAGS_FORCE_SHARE.
 *
 * Returns: %TRUE when it had
 *
 * Since: 0.1
 */
gboolean
vhdx_image_is_in_use (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);

        return self->handle != NULL && image_info (self)->written_elsewhere;
}

/**
 * vhdx_image_is_read_only: (get-property read-only)
 * @self: an image
 *
 * Gets whether the image refuses writes.
 *
 * Returns: %TRUE unless the image was opened with
 *   %VHDX_OPEN_FLAGS_READ_WRITE
 *
 * Since: 0.1
 */
gboolean
vhdx_image_is_read_only (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), TRUE);

        if (self->handle != NULL)
                return !vhdx_file_is_writable (self->handle);
        return (self->flags & VHDX_OPEN_FLAGS_READ_WRITE) == 0;
}

/**
 * vhdx_image_has_parent:
 * @self: an image
 *
 * Gets whether the image is a differencing image.
 *
 * Returns: %TRUE if the image has a parent
 *
 * Since: 0.1
 */
gboolean
vhdx_image_has_parent (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);

        return self->handle != NULL && image_info (self)->has_parent;
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

/**
 * vhdx_image_get_parent_locator:
 * @self: an image
 *
 * Gets the entries of a differencing image's parent locator.
 *
 * Returns: (transfer none) (nullable) (element-type utf8 utf8): the
 *   locator's keys and values, or %NULL when the image has no locator
 *
 * Since: 0.1
 */
GHashTable *
vhdx_image_get_parent_locator (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);

        return self->parent_locator;
}

/**
 * vhdx_image_get_chain_depth:
 * @self: an image
 *
 * Gets how many ancestors the image has.
 *
 * Returns: 0 for an image without a parent, 1 when the parent has none,
 *   and so on
 *
 * Since: 0.1
 */
guint
vhdx_image_get_chain_depth (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), 0);

        return self->handle != NULL ? vhdx_file_get_chain_depth (self->handle) : 0;
}

/* Reading */

/* Reads a range known to lie inside the disk, a chunk at a time. */
static gboolean
read_chunked (VhdxImage *self,
              guint64 offset,
              guint8 *buffer,
              gsize count,
              GCancellable *cancellable,
              GError **error)
{
        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return FALSE;
        while (count > 0) {
                gsize n = MIN (count, IO_CHUNK_SIZE);

                if (!vhdx_file_read (self->handle, offset, buffer, n, error))
                        return FALSE;
                offset += n;
                buffer += n;
                count -= n;
                if (count > 0 && g_cancellable_set_error_if_cancelled (cancellable, error))
                        return FALSE;
        }
        return TRUE;
}

/**
 * vhdx_image_read: (skip)
 * @self: an image
 * @offset: where to start reading in the virtual disk
 * @buffer: where to put the bytes
 * @count: how many bytes to read
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Reads @count bytes of the virtual disk from @offset into @buffer, as a
 * guest would read them.  The range must lie inside the virtual disk:
 * unlike [method@Vhdx.Image.read_bytes], this never reads fewer bytes than
 * asked for.
 *
 * This may be called from several threads at once.  Bindings use
 * [method@Vhdx.Image.read_bytes], which allocates the buffer.
 *
 * Returns: %TRUE on success; %FALSE with @error set, with
 *   %VHDX_ERROR_OUT_OF_RANGE if the range goes beyond the end of the
 *   virtual disk
 *
 * Since: 0.1
 */
gboolean
vhdx_image_read (VhdxImage *self,
                 guint64 offset,
                 void *buffer,
                 gsize count,
                 GCancellable *cancellable,
                 GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (buffer != NULL || count == 0, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (!vhdx_file_check_range (self->handle, offset, count, error))
                return FALSE;
        return read_chunked (self, offset, buffer, count, cancellable, error);
}

/* The buffer for a read of up to *COUNT bytes at OFFSET: *COUNT is cut
 * at the end of the disk (0 and no buffer past it). */
static gboolean
bytes_buffer_new (VhdxImage *self, guint64 offset, gsize *count, guint8 **buffer, GError **error)
{
        guint64 size = vhdx_file_get_info (self->handle)->virtual_size;

        *buffer = NULL;
        if (offset >= size || *count == 0) {
                *count = 0;
                return TRUE;
        }
        *count = (gsize) MIN ((guint64) *count, size - offset);
        *buffer = g_try_malloc (*count);
        if (*buffer == NULL) {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                             _ ("Not enough memory to read %llu bytes"),
                             (unsigned long long) *count);
                return FALSE;
        }
        return TRUE;
}

/**
 * vhdx_image_read_bytes:
 * @self: an image
 * @offset: where to start reading in the virtual disk
 * @count: how many bytes to read at most
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Reads up to @count bytes of the virtual disk from @offset.  As with
 * [method@Gio.InputStream.read_bytes], fewer bytes are returned when the
 * range crosses the end of the disk, and an empty [struct@GLib.Bytes] at or
 * past the end.
 *
 * This may be called from several threads at once; a program with a main
 * loop should call [method@Vhdx.Image.read_bytes_async] instead.
 *
 * Returns: (transfer full): the bytes read, or %NULL with @error set
 *
 * Since: 0.1
 */
GBytes *
vhdx_image_read_bytes (VhdxImage *self,
                       guint64 offset,
                       gsize count,
                       GCancellable *cancellable,
                       GError **error)
{
        g_autofree guint8 *buffer = NULL;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (self->handle != NULL, NULL);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        if (!bytes_buffer_new (self, offset, &count, &buffer, error))
                return NULL;
        if (count == 0)
                return g_bytes_new (NULL, 0);
        if (!read_chunked (self, offset, buffer, count, cancellable, error))
                return NULL;
        return g_bytes_new_take (g_steal_pointer (&buffer), count);
}

typedef struct {
        guint64 offset;
        guint64 length;
        void *buffer;
} RangeData;

static RangeData *
range_data_new (guint64 offset, guint64 length, void *buffer)
{
        RangeData *data = g_new0 (RangeData, 1);

        data->offset = offset;
        data->length = length;
        data->buffer = buffer;
        return data;
}

static void
read_thread (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
        RangeData *data = task_data;
        GError *error = NULL;

        if (!vhdx_image_read (source_object, data->offset, data->buffer, (gsize) data->length,
                              cancellable, &error))
                g_task_return_error (task, error);
        else
                g_task_return_boolean (task, TRUE);
}

/**
 * vhdx_image_read_async: (skip)
 * @self: an image
 * @offset: where to start reading in the virtual disk
 * @buffer: where to put the bytes; it must stay valid until @callback runs
 * @count: how many bytes to read
 * @io_priority: the I/O priority of the request
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the bytes are read
 * @user_data: (closure): data for @callback
 *
 * Reads into @buffer in a worker thread, as [method@Vhdx.Image.read] does.
 * Call [method@Vhdx.Image.read_finish] from @callback.  Bindings use
 * [method@Vhdx.Image.read_bytes_async], which allocates the buffer.
 *
 * Since: 0.1
 */
void
vhdx_image_read_async (VhdxImage *self,
                       guint64 offset,
                       void *buffer,
                       gsize count,
                       int io_priority,
                       GCancellable *cancellable,
                       GAsyncReadyCallback callback,
                       gpointer user_data)
{
        g_autoptr (GTask) task = NULL;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (buffer != NULL || count == 0);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        task = g_task_new (self, cancellable, callback, user_data);
        g_task_set_source_tag (task, vhdx_image_read_async);
        g_task_set_priority (task, io_priority);
        g_task_set_task_data (task, range_data_new (offset, count, buffer), g_free);
        vhdx_read_pool_run (task, read_thread);
}

/**
 * vhdx_image_read_finish: (skip)
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a read started with [method@Vhdx.Image.read_async].
 *
 * Returns: %TRUE if @buffer holds the bytes; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_read_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
        g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vhdx_image_read_async,
                              FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return g_task_propagate_boolean (G_TASK (result), error);
}

static void
read_bytes_thread (GTask *task,
                   gpointer source_object,
                   gpointer task_data,
                   GCancellable *cancellable)
{
        RangeData *data = task_data;
        GError *error = NULL;
        GBytes *bytes;

        if (g_cancellable_set_error_if_cancelled (cancellable, &error) ||
            !read_chunked (source_object, data->offset, data->buffer, (gsize) data->length,
                           cancellable, &error)) {
                g_task_return_error (task, error);
                return;
        }
        bytes = g_bytes_new_take (g_steal_pointer (&data->buffer), (gsize) data->length);
        g_task_return_pointer (task, bytes, (GDestroyNotify) g_bytes_unref);
}

static void
range_data_free_buffer (gpointer data)
{
        g_free (((RangeData *) data)->buffer);
        g_free (data);
}

/**
 * vhdx_image_read_bytes_async:
 * @self: an image
 * @offset: where to start reading in the virtual disk
 * @count: how many bytes to read at most
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the bytes are read
 * @user_data: (closure): data for @callback
 *
 * Reads up to @count bytes of the virtual disk from @offset in a worker
 * thread, as [method@Vhdx.Image.read_bytes] does.  Call
 * [method@Vhdx.Image.read_bytes_finish] from @callback to get them.
 *
 * Since: 0.1
 */
void
vhdx_image_read_bytes_async (VhdxImage *self,
                             guint64 offset,
                             gsize count,
                             int io_priority,
                             GCancellable *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer user_data)
{
        g_autoptr (GTask) task = NULL;
        GError *error = NULL;
        guint8 *buffer;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        task = g_task_new (self, cancellable, callback, user_data);
        g_task_set_source_tag (task, vhdx_image_read_bytes_async);
        g_task_set_priority (task, io_priority);
        /* The buffer comes from the caller's thread, where the bytes are
         * usually freed: the allocator then reuses it for the next request,
         * where a buffer of a worker's arena would be given back to the
         * kernel when freed here and faulted in again by the next. */
        if (!bytes_buffer_new (self, offset, &count, &buffer, &error)) {
                g_task_return_error (task, error);
                return;
        }
        if (count == 0) {
                g_task_return_pointer (task, g_bytes_new (NULL, 0), (GDestroyNotify) g_bytes_unref);
                return;
        }
        g_task_set_task_data (task, range_data_new (offset, count, buffer), range_data_free_buffer);
        vhdx_read_pool_run (task, read_bytes_thread);
}

/**
 * vhdx_image_read_bytes_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a read started with [method@Vhdx.Image.read_bytes_async].
 *
 * Returns: (transfer full): the bytes read, or %NULL with @error set
 *
 * Since: 0.1
 */
GBytes *
vhdx_image_read_bytes_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (g_task_is_valid (result, self), NULL);
        g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
                                      vhdx_image_read_bytes_async,
                              NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * vhdx_image_open_stream:
 * @self: an image
 *
 * Opens a stream over the virtual disk, positioned at its start.  The
 * stream can seek; several streams of one image may be read at once.
 *
 * Returns: (transfer full): a [class@Vhdx.InputStream]
 *
 * Since: 0.1
 */
GInputStream *
vhdx_image_open_stream (VhdxImage *self)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (self->handle != NULL, NULL);

        return g_object_new (VHDX_TYPE_INPUT_STREAM, "image", self, NULL);
}

/**
 * vhdx_image_open_io_stream:
 * @self: an image
 *
 * Opens a stream to read and write the virtual disk: its input stream is
 * a [class@Vhdx.InputStream], as [method@Vhdx.Image.open_stream] returns,
 * and its output stream a [class@Vhdx.OutputStream].  Each has its own
 * position, at the start of the disk: seek each of them on its own.
 *
 * Closing the stream flushes the image, as [method@Vhdx.Image.flush] does,
 * but does not close the image.  The stream of a read-only image can be
 * opened, but its writes fail with %G_IO_ERROR_READ_ONLY.
 *
 * Returns: (transfer full): a [class@Gio.IOStream] over the virtual disk
 *
 * Since: 0.1
 */
GIOStream *
vhdx_image_open_io_stream (VhdxImage *self)
{
        g_autoptr (GInputStream) input = NULL;
        g_autoptr (GOutputStream) output = NULL;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (self->handle != NULL, NULL);

        input = vhdx_image_open_stream (self);
        output = g_object_new (VHDX_TYPE_OUTPUT_STREAM, "image", self, NULL);
        return g_simple_io_stream_new (input, output);
}

/* Writing */

typedef enum {
        MODIFY_WRITE,
        MODIFY_ZEROES,
        MODIFY_DISCARD,
} ModifyKind;

/* A change of the virtual disk, and the task data of its asynchronous call. */
typedef struct {
        ModifyKind kind;
        guint64 offset;
        guint64 length;
        const void *buffer; /* the bytes of a write */
        GBytes *bytes;      /* what holds them, for write_bytes_async() */
        VhdxWriteFlags flags;
} Modify;

static Modify *
modify_new (ModifyKind kind, guint64 offset, guint64 length, VhdxWriteFlags flags)
{
        Modify *m = g_new0 (Modify, 1);

        m->kind = kind;
        m->offset = offset;
        m->length = length;
        m->flags = flags;
        return m;
}

static void
modify_free (Modify *m)
{
        g_clear_pointer (&m->bytes, g_bytes_unref);
        g_free (m);
}

/* Makes a change allowed and known to lie inside the disk, a chunk at a
 * time; a flush at the end makes it durable when FUA asks for it. */
static gboolean
modify_chunked (VhdxImage *self, const Modify *m, GCancellable *cancellable, GError **error)
{
        VhdxWriteFlags flags = m->flags & ~VHDX_WRITE_FLAGS_FUA;
        const guint8 *buffer = m->buffer;
        guint64 offset = m->offset;
        guint64 length = m->length;

        while (length > 0) {
                guint64 n;
                gboolean ok;

                switch (m->kind) {
                case MODIFY_WRITE:
                        n = MIN (length, IO_CHUNK_SIZE);
                        ok = vhdx_file_write (self->handle, offset, buffer, (gsize) n, flags,
                                              error);
                        buffer += n;
                        break;
                case MODIFY_ZEROES:
                        n = MIN (length, CLEAR_CHUNK_SIZE - offset % CLEAR_CHUNK_SIZE);
                        ok = vhdx_file_write_zeroes (self->handle, offset, n, flags, error);
                        break;
                case MODIFY_DISCARD:
                default:
                        n = MIN (length, CLEAR_CHUNK_SIZE - offset % CLEAR_CHUNK_SIZE);
                        ok = vhdx_file_discard (self->handle, offset, n, flags, error);
                        break;
                }
                if (!ok)
                        return FALSE;
                offset += n;
                length -= n;
                if (length > 0 && g_cancellable_set_error_if_cancelled (cancellable, error))
                        return FALSE;
        }
        return (m->flags & VHDX_WRITE_FLAGS_FUA) == 0 || vhdx_file_flush (self->handle, error);
}

static gboolean
image_modify (VhdxImage *self, const Modify *m, GCancellable *cancellable, GError **error)
{
        gboolean ok;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return FALSE;
        g_rw_lock_reader_lock (&self->close_lock);
        /*
         * The engine's refusals of a read-only or closed image come first,
         * as it makes them: an empty write asks for them.  The range is
         * checked whole, so that a range that does not fit writes nothing.
         */
        ok = vhdx_file_write (self->handle, 0, NULL, 0, VHDX_WRITE_FLAGS_NONE, error) &&
             vhdx_file_check_range (self->handle, m->offset, m->length, error);
        if (ok) {
                ok = modify_chunked (self, m, cancellable, error);
                g_atomic_int_inc (&self->writes);
        }
        g_rw_lock_reader_unlock (&self->close_lock);
        return ok;
}

static void
modify_thread (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
        GError *error = NULL;

        if (!image_modify (source_object, task_data, cancellable, &error))
                g_task_return_error (task, error);
        else
                g_task_return_boolean (task, TRUE);
}

static void
modify_async (VhdxImage *self,
              Modify *m,
              gpointer source_tag,
              int io_priority,
              GCancellable *cancellable,
              GAsyncReadyCallback callback,
              gpointer user_data)
{
        g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);

        g_task_set_source_tag (task, source_tag);
        g_task_set_priority (task, io_priority);
        g_task_set_task_data (task, m, (GDestroyNotify) modify_free);
        g_task_run_in_thread (task, modify_thread);
}

static gboolean
modify_finish (VhdxImage *self, GAsyncResult *result, gpointer source_tag, GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
        g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == source_tag, FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * vhdx_image_write: (skip)
 * @self: an image opened read-write
 * @offset: where to start writing in the virtual disk
 * @buffer: (array length=count) (element-type guint8): the bytes to write
 * @count: how many bytes to write
 * @flags: how to write them
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Writes @count bytes from @buffer to the virtual disk at @offset.  The
 * range must lie inside the virtual disk: a write never goes past its end,
 * and one that would fails, writing nothing.  Reads see the bytes as soon
 * as the call returns; they are durable once the image is flushed, or at
 * once with %VHDX_WRITE_FLAGS_FUA.
 *
 * A cancellation noticed before the write starts writes nothing; a long
 * write notices it between chunks of 8 MiB, and what it wrote until then
 * stays written.
 *
 * This may be called from several threads at once.  Bindings use
 * [method@Vhdx.Image.write_bytes].
 *
 * Returns: %TRUE on success; %FALSE with @error set: %G_IO_ERROR_READ_ONLY
 *   for an image not opened read-write, %G_IO_ERROR_CLOSED after
 *   [method@Vhdx.Image.close], %VHDX_ERROR_OUT_OF_RANGE if the range goes
 *   beyond the end of the virtual disk, %G_IO_ERROR_CANCELLED
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write (VhdxImage *self,
                  guint64 offset,
                  const void *buffer,
                  gsize count,
                  VhdxWriteFlags flags,
                  GCancellable *cancellable,
                  GError **error)
{
        Modify m = { MODIFY_WRITE, offset, count, buffer, NULL, flags };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (buffer != NULL || count == 0, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return image_modify (self, &m, cancellable, error);
}

/**
 * vhdx_image_write_async: (skip)
 * @self: an image opened read-write
 * @offset: where to start writing in the virtual disk
 * @buffer: (array length=count) (element-type guint8): the bytes to write;
 *   they must stay valid until @callback runs
 * @count: how many bytes to write
 * @flags: how to write them
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the bytes are written
 * @user_data: (closure): data for @callback
 *
 * Writes @buffer in a worker thread, as [method@Vhdx.Image.write] does.
 * Call [method@Vhdx.Image.write_finish] from @callback.  Bindings use
 * [method@Vhdx.Image.write_bytes_async].
 *
 * Since: 0.1
 */
void
vhdx_image_write_async (VhdxImage *self,
                        guint64 offset,
                        const void *buffer,
                        gsize count,
                        VhdxWriteFlags flags,
                        int io_priority,
                        GCancellable *cancellable,
                        GAsyncReadyCallback callback,
                        gpointer user_data)
{
        Modify *m;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (buffer != NULL || count == 0);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        m = modify_new (MODIFY_WRITE, offset, count, flags);
        m->buffer = buffer;
        modify_async (self, m, vhdx_image_write_async, io_priority, cancellable, callback,
                      user_data);
}

/**
 * vhdx_image_write_finish: (skip)
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a write started with [method@Vhdx.Image.write_async].
 *
 * Returns: %TRUE if the bytes were written; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return modify_finish (self, result, vhdx_image_write_async, error);
}

/**
 * vhdx_image_write_bytes:
 * @self: an image opened read-write
 * @offset: where to start writing in the virtual disk
 * @bytes: the bytes to write
 * @flags: how to write them
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Writes @bytes to the virtual disk at @offset, as
 * [method@Vhdx.Image.write] does: all of them, or none if the range goes
 * beyond the end of the virtual disk.
 *
 * This may be called from several threads at once; a program with a main
 * loop should call [method@Vhdx.Image.write_bytes_async] instead.
 *
 * Returns: %TRUE on success; %FALSE with @error set: %G_IO_ERROR_READ_ONLY
 *   for an image not opened read-write, %G_IO_ERROR_CLOSED after
 *   [method@Vhdx.Image.close], %VHDX_ERROR_OUT_OF_RANGE if the range goes
 *   beyond the end of the virtual disk, %G_IO_ERROR_CANCELLED
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write_bytes (VhdxImage *self,
                        guint64 offset,
                        GBytes *bytes,
                        VhdxWriteFlags flags,
                        GCancellable *cancellable,
                        GError **error)
{
        Modify m = { MODIFY_WRITE, offset, 0, NULL, NULL, flags };
        gsize size;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (bytes != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        m.buffer = g_bytes_get_data (bytes, &size);
        m.length = size;
        return image_modify (self, &m, cancellable, error);
}

/**
 * vhdx_image_write_bytes_async:
 * @self: an image opened read-write
 * @offset: where to start writing in the virtual disk
 * @bytes: the bytes to write
 * @flags: how to write them
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the bytes are written
 * @user_data: (closure): data for @callback
 *
 * Writes @bytes to the virtual disk at @offset in a worker thread, as
 * [method@Vhdx.Image.write_bytes] does.  Call
 * [method@Vhdx.Image.write_bytes_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_write_bytes_async (VhdxImage *self,
                              guint64 offset,
                              GBytes *bytes,
                              VhdxWriteFlags flags,
                              int io_priority,
                              GCancellable *cancellable,
                              GAsyncReadyCallback callback,
                              gpointer user_data)
{
        Modify *m;
        gsize size;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (bytes != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        m = modify_new (MODIFY_WRITE, offset, 0, flags);
        m->bytes = g_bytes_ref (bytes);
        m->buffer = g_bytes_get_data (bytes, &size);
        m->length = size;
        modify_async (self, m, vhdx_image_write_bytes_async, io_priority, cancellable, callback,
                      user_data);
}

/**
 * vhdx_image_write_bytes_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a write started with [method@Vhdx.Image.write_bytes_async].
 *
 * Returns: %TRUE if the bytes were written; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write_bytes_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return modify_finish (self, result, vhdx_image_write_bytes_async, error);
}

/**
 * vhdx_image_write_zeroes:
 * @self: an image opened read-write
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @flags: how to write the zeros: with %VHDX_WRITE_FLAGS_MAY_UNMAP, the
 *   blocks that the range covers entirely may be freed
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Makes a range of the virtual disk read as zeros, never as the data of a
 * differencing image's parent.  Ranges of a dynamic or differencing image
 * that read as zeros already take no new space; the blocks that the range
 * covers entirely are freed with %VHDX_WRITE_FLAGS_MAY_UNMAP, and are
 * filled with zeros otherwise.  The range must lie inside the virtual disk.
 *
 * A cancellation noticed before the call starts changes nothing; a long
 * range notices it between chunks of 1 GiB, and what was zeroed until then
 * stays zeroed.
 *
 * Returns: %TRUE on success; %FALSE with @error set, with the errors of
 *   [method@Vhdx.Image.write]
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write_zeroes (VhdxImage *self,
                         guint64 offset,
                         guint64 length,
                         VhdxWriteFlags flags,
                         GCancellable *cancellable,
                         GError **error)
{
        Modify m = { MODIFY_ZEROES, offset, length, NULL, NULL, flags };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return image_modify (self, &m, cancellable, error);
}

/**
 * vhdx_image_write_zeroes_async:
 * @self: an image opened read-write
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @flags: how to write the zeros
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the range reads as zeros
 * @user_data: (closure): data for @callback
 *
 * Zeroes a range in a worker thread, as [method@Vhdx.Image.write_zeroes]
 * does.  Call [method@Vhdx.Image.write_zeroes_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_write_zeroes_async (VhdxImage *self,
                               guint64 offset,
                               guint64 length,
                               VhdxWriteFlags flags,
                               int io_priority,
                               GCancellable *cancellable,
                               GAsyncReadyCallback callback,
                               gpointer user_data)
{
        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        modify_async (self, modify_new (MODIFY_ZEROES, offset, length, flags),
                      vhdx_image_write_zeroes_async, io_priority, cancellable, callback, user_data);
}

/**
 * vhdx_image_write_zeroes_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.write_zeroes_async].
 *
 * Returns: %TRUE if the range reads as zeros; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_write_zeroes_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return modify_finish (self, result, vhdx_image_write_zeroes_async, error);
}

/**
 * vhdx_image_discard:
 * @self: an image opened read-write
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @flags: how to discard: %VHDX_WRITE_FLAGS_FUA makes the change durable
 *   at once; %VHDX_WRITE_FLAGS_MAY_UNMAP changes nothing
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Says that a range of the virtual disk is no longer needed, as a guest's
 * TRIM does.  A dynamic or differencing image frees the blocks that the
 * range covers entirely, which then read as zeros; the rest of the range,
 * and every block of a fixed image, keeps its data.  The range must lie
 * inside the virtual disk.
 *
 * A cancellation noticed before the call starts changes nothing; a long
 * range notices it between chunks of 1 GiB.
 *
 * Returns: %TRUE on success; %FALSE with @error set, with the errors of
 *   [method@Vhdx.Image.write]
 *
 * Since: 0.1
 */
gboolean
vhdx_image_discard (VhdxImage *self,
                    guint64 offset,
                    guint64 length,
                    VhdxWriteFlags flags,
                    GCancellable *cancellable,
                    GError **error)
{
        Modify m = { MODIFY_DISCARD, offset, length, NULL, NULL, flags };

        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        return image_modify (self, &m, cancellable, error);
}

/**
 * vhdx_image_discard_async:
 * @self: an image opened read-write
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @flags: how to discard
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the range is discarded
 * @user_data: (closure): data for @callback
 *
 * Discards a range in a worker thread, as [method@Vhdx.Image.discard]
 * does.  Call [method@Vhdx.Image.discard_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_discard_async (VhdxImage *self,
                          guint64 offset,
                          guint64 length,
                          VhdxWriteFlags flags,
                          int io_priority,
                          GCancellable *cancellable,
                          GAsyncReadyCallback callback,
                          gpointer user_data)
{
        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        modify_async (self, modify_new (MODIFY_DISCARD, offset, length, flags),
                      vhdx_image_discard_async, io_priority, cancellable, callback, user_data);
}

/**
 * vhdx_image_discard_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.discard_async].
 *
 * Returns: %TRUE if the range was discarded; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_discard_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return modify_finish (self, result, vhdx_image_discard_async, error);
}

/* Flushing and closing */

/**
 * vhdx_image_flush:
 * @self: an image
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Makes everything written to the image so far durable: the data, then
 * the changes of the image's structures, through its log.  Writes may go
 * on meanwhile, from other threads; they are made durable by a later
 * flush.  A read-only image has nothing to flush.
 *
 * If a flush fails, the image refuses every later write and flush with
 * %G_IO_ERROR_FAILED: it must be opened again, which replays its log.
 *
 * Returns: %TRUE on success; %FALSE with @error set, with
 *   %G_IO_ERROR_CLOSED after [method@Vhdx.Image.close]
 *
 * Since: 0.1
 */
gboolean
vhdx_image_flush (VhdxImage *self, GCancellable *cancellable, GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), FALSE);
        g_return_val_if_fail (self->handle != NULL, FALSE);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
        g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return FALSE;
        return vhdx_file_flush (self->handle, error);
}

static void
flush_thread (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
        GError *error = NULL;

        if (!vhdx_image_flush (source_object, cancellable, &error))
                g_task_return_error (task, error);
        else
                g_task_return_boolean (task, TRUE);
}

/**
 * vhdx_image_flush_async:
 * @self: an image
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the image is flushed
 * @user_data: (closure): data for @callback
 *
 * Flushes the image in a worker thread, as [method@Vhdx.Image.flush]
 * does.  Call [method@Vhdx.Image.flush_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_flush_async (VhdxImage *self,
                        int io_priority,
                        GCancellable *cancellable,
                        GAsyncReadyCallback callback,
                        gpointer user_data)
{
        g_autoptr (GTask) task = NULL;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        task = g_task_new (self, cancellable, callback, user_data);
        g_task_set_source_tag (task, vhdx_image_flush_async);
        g_task_set_priority (task, io_priority);
        g_task_run_in_thread (task, flush_thread);
}

/**
 * vhdx_image_flush_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.flush_async].
 *
 * Returns: %TRUE if the image was flushed; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
vhdx_image_flush_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        return modify_finish (self, result, vhdx_image_flush_async, error);
}

/* Closes the engine's image once no write runs. */
static gboolean
image_close (VhdxImage *self, GCancellable *cancellable, GError **error)
{
        gboolean ok;

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return FALSE;
        g_rw_lock_writer_lock (&self->close_lock);
        ok = vhdx_file_close (self->handle, error);
        g_rw_lock_writer_unlock (&self->close_lock);
        return ok;
}

/* Once the image is closed, nothing changes its headers any more: the
 * properties take the GUIDs they hold, and notify those that changed. */
static void
image_update_guids (VhdxImage *self)
{
        const VhdxInfo *info = image_info (self);
        struct {
                char **field;
                const VhdxGuid *guid;
                GParamSpec *pspec;
                gboolean changed;
        } guids[] = {
                { &self->data_write_guid, &info->data_write_guid, props[PROP_DATA_WRITE_GUID] },
                { &self->file_write_guid, &info->file_write_guid, props[PROP_FILE_WRITE_GUID] },
        };

        g_rw_lock_writer_lock (&self->close_lock);
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
        g_rw_lock_writer_unlock (&self->close_lock);
        for (gsize i = 0; i < G_N_ELEMENTS (guids); i++) {
                if (guids[i].changed)
                        g_object_notify_by_pspec (G_OBJECT (self), guids[i].pspec);
        }
}

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

        if (!image_close (self, cancellable, error))
                return FALSE;
        image_update_guids (self);
        return TRUE;
}

static void
close_thread (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
        GError *error = NULL;

        if (!image_close (source_object, cancellable, &error))
                g_task_return_error (task, error);
        else
                g_task_return_boolean (task, TRUE);
}

/* Back in the caller's context, where the GUIDs are notified: finishes the task of close_async().
 */
static void
close_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
        g_autoptr (GTask) task = user_data;
        GError *error = NULL;

        if (!g_task_propagate_boolean (G_TASK (result), &error)) {
                g_task_return_error (task, error);
                return;
        }
        image_update_guids (VHDX_IMAGE (source));
        g_task_return_boolean (task, TRUE);
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
        g_autoptr (GTask) task = NULL;
        g_autoptr (GTask) worker = NULL;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        /* The result is what the close did, even if the cancellable was
         * cancelled after it started. */
        task = g_task_new (self, cancellable, callback, user_data);
        g_task_set_source_tag (task, vhdx_image_close_async);
        g_task_set_priority (task, io_priority);
        g_task_set_check_cancellable (task, FALSE);
        worker = g_task_new (self, cancellable, close_done, g_steal_pointer (&task));
        g_task_set_source_tag (worker, close_thread);
        g_task_set_priority (worker, io_priority);
        g_task_set_check_cancellable (worker, FALSE);
        g_task_run_in_thread (worker, close_thread);
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
        return modify_finish (self, result, vhdx_image_close_async, error);
}

/* Extents */

/**
 * vhdx_image_get_extents:
 * @self: an image
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Tells where the bytes of a range of the virtual disk come from, without
 * reading them: the extents returned cover the range in order, each
 * either data stored in one file of the chain or zeros.
 *
 * Returns: (transfer container) (element-type VhdxExtent): the extents,
 *   or %NULL with @error set, with %VHDX_ERROR_OUT_OF_RANGE if the
 *   range goes beyond the end of the virtual disk
 *
 * Since: 0.1
 */
GPtrArray *
vhdx_image_get_extents (VhdxImage *self,
                        guint64 offset,
                        guint64 length,
                        GCancellable *cancellable,
                        GError **error)
{
        g_autoptr (GPtrArray) extents = NULL;
        g_autoptr (GError) local_error = NULL;
        VhdxMapIter iter;
        VhdxMapExtent extent;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (self->handle != NULL, NULL);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        if (g_cancellable_set_error_if_cancelled (cancellable, error) ||
            !vhdx_file_check_range (self->handle, offset, length, error))
                return NULL;
        extents = g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_extent_free);
        vhdx_map_iter_init (&iter, self->handle, offset, length);
        while (vhdx_map_iter_next (&iter, &extent, &local_error)) {
                g_ptr_array_add (extents, vhdx_extent_new (&extent));
                if (g_cancellable_set_error_if_cancelled (cancellable, &local_error))
                        break;
        }
        vhdx_map_iter_clear (&iter);
        if (local_error != NULL) {
                g_propagate_error (error, g_steal_pointer (&local_error));
                return NULL;
        }
        return g_steal_pointer (&extents);
}

static void
get_extents_thread (GTask *task,
                    gpointer source_object,
                    gpointer task_data,
                    GCancellable *cancellable)
{
        RangeData *data = task_data;
        GError *error = NULL;
        GPtrArray *extents;

        extents = vhdx_image_get_extents (source_object, data->offset, data->length, cancellable,
                                          &error);
        if (extents == NULL)
                g_task_return_error (task, error);
        else
                g_task_return_pointer (task, extents, (GDestroyNotify) g_ptr_array_unref);
}

/**
 * vhdx_image_get_extents_async:
 * @self: an image
 * @offset: where the range starts in the virtual disk
 * @length: the length of the range
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the extents are known
 * @user_data: (closure): data for @callback
 *
 * Finds the extents of a range in a worker thread, as
 * [method@Vhdx.Image.get_extents] does.  Call
 * [method@Vhdx.Image.get_extents_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_get_extents_async (VhdxImage *self,
                              guint64 offset,
                              guint64 length,
                              int io_priority,
                              GCancellable *cancellable,
                              GAsyncReadyCallback callback,
                              gpointer user_data)
{
        g_autoptr (GTask) task = NULL;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        task = g_task_new (self, cancellable, callback, user_data);
        g_task_set_source_tag (task, vhdx_image_get_extents_async);
        g_task_set_priority (task, io_priority);
        g_task_set_task_data (task, range_data_new (offset, length, NULL), g_free);
        g_task_run_in_thread (task, get_extents_thread);
}

/**
 * vhdx_image_get_extents_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.get_extents_async].
 *
 * Returns: (transfer container) (element-type VhdxExtent): the extents,
 *   or %NULL with @error set
 *
 * Since: 0.1
 */
GPtrArray *
vhdx_image_get_extents_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (g_task_is_valid (result, self), NULL);
        g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
                                      vhdx_image_get_extents_async,
                              NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        return g_task_propagate_pointer (G_TASK (result), error);
}

/* Checking */

/**
 * vhdx_image_check:
 * @self: an image
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Validates every structure of the image and every entry of its block
 * allocation table.  The problems noticed while opening the image (such
 * as a damaged header next to a good one) come first.
 *
 * Corruption is reported as problems, not as an error: @error is set only
 * when the check itself could not be made, such as when the file cannot
 * be read.
 *
 * Returns: (transfer container) (element-type VhdxProblem): the problems
 *   found, empty for a clean image, or %NULL with @error set
 *
 * Since: 0.1
 */
GPtrArray *
vhdx_image_check (VhdxImage *self, GCancellable *cancellable, GError **error)
{
        g_autoptr (GPtrArray) problems = NULL;

        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (self->handle != NULL, NULL);
        g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        if (g_cancellable_set_error_if_cancelled (cancellable, error))
                return NULL;
        problems = vhdx_problems_new ();
        vhdx_problems_add_all (problems, vhdx_file_get_open_problems (self->handle));
        if (!vhdx_file_check (self->handle, problems, error))
                return NULL;
        return g_steal_pointer (&problems);
}

static void
check_thread (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
        GError *error = NULL;
        GPtrArray *problems;

        problems = vhdx_image_check (source_object, cancellable, &error);
        if (problems == NULL)
                g_task_return_error (task, error);
        else
                g_task_return_pointer (task, problems, (GDestroyNotify) g_ptr_array_unref);
}

/**
 * vhdx_image_check_async:
 * @self: an image
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the check is done
 * @user_data: (closure): data for @callback
 *
 * Checks the image in a worker thread, as [method@Vhdx.Image.check] does.
 * Call [method@Vhdx.Image.check_finish] from @callback.
 *
 * Since: 0.1
 */
void
vhdx_image_check_async (VhdxImage *self,
                        int io_priority,
                        GCancellable *cancellable,
                        GAsyncReadyCallback callback,
                        gpointer user_data)
{
        g_autoptr (GTask) task = NULL;

        g_return_if_fail (VHDX_IS_IMAGE (self));
        g_return_if_fail (self->handle != NULL);
        g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

        task = g_task_new (self, cancellable, callback, user_data);
        g_task_set_source_tag (task, vhdx_image_check_async);
        g_task_set_priority (task, io_priority);
        g_task_run_in_thread (task, check_thread);
}

/**
 * vhdx_image_check_finish:
 * @self: an image
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Vhdx.Image.check_async].
 *
 * Returns: (transfer container) (element-type VhdxProblem): the problems
 *   found, or %NULL with @error set
 *
 * Since: 0.1
 */
GPtrArray *
vhdx_image_check_finish (VhdxImage *self, GAsyncResult *result, GError **error)
{
        g_return_val_if_fail (VHDX_IS_IMAGE (self), NULL);
        g_return_val_if_fail (g_task_is_valid (result, self), NULL);
        g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vhdx_image_check_async,
                              NULL);
        g_return_val_if_fail (error == NULL || *error == NULL, NULL);

        return g_task_propagate_pointer (G_TASK (result), error);
}
