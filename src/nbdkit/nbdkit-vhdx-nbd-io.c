/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's VhdxIo over an NBD export read through libnbd (a parent=URI). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gi18n-lib.h>

#ifdef HAVE_LIBNBD
#include <libnbd.h>
#endif

#include "nbdkit-vhdx-nbd-io.h"

gboolean
vhdx_nbd_io_is_uri (const char *value)
{
        const char *end = value != NULL ? strstr (value, "://") : NULL;

        /* libnbd's schemes: nbd, nbds, nbd+unix, nbds+unix, nbd+vsock, ... */
        if (end == NULL || !g_str_has_prefix (value, "nbd"))
                return FALSE;
        for (const char *c = value; c < end; c++) {
                if (!g_ascii_islower (*c) && *c != '+')
                        return FALSE;
        }
        return TRUE;
}

#ifdef HAVE_LIBNBD

/* The largest request made when the server does not say: libnbd refuses
 * more than 64 MiB, QEMU's server more than 32 MiB. */
#define DEFAULT_MAX_REQUEST (32 * 1024 * 1024)

typedef struct {
        VhdxIo parent;
        struct nbd_handle *nbd;
        char *uri;
        guint64 size;
        gsize max_request;
} VhdxNbdIo;

/* Set @error from libnbd's last error in this thread, after @what. */
static void
set_nbd_error (GError **error, const char *what, const char *uri)
{
        int saved = nbd_get_errno ();
        const char *message = nbd_get_error ();

        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved != 0 ? saved : EIO),
                     "%s %s: %s", what, uri, message != NULL ? message : g_strerror (saved));
}

static gboolean
nbd_io_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        VhdxNbdIo *self = (VhdxNbdIo *) io;
        gsize done = 0;

        if (offset >= self->size)
                count = 0;
        else if (count > self->size - offset)
                count = self->size - offset;
        while (done < count) {
                gsize chunk = MIN (count - done, self->max_request);

                if (nbd_pread (self->nbd, (char *) buf + done, chunk, offset + done, 0) == -1) {
                        set_nbd_error (error, _ ("Reading from the NBD server"), self->uri);
                        return FALSE;
                }
                done += chunk;
        }
        *n_read = done;
        return TRUE;
}

static gboolean
nbd_io_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        *size = ((VhdxNbdIo *) io)->size;
        return TRUE;
}

static void
nbd_io_free (VhdxIo *io)
{
        VhdxNbdIo *self = (VhdxNbdIo *) io;

        /* Nothing was written: tell the server that the client leaves. */
        nbd_shutdown (self->nbd, 0);
        nbd_close (self->nbd);
        g_free (self->uri);
        g_free (self);
}

static const VhdxIoVTable nbd_vtable = {
        .pread = nbd_io_pread,
        .get_size = nbd_io_get_size,
        .free = nbd_io_free,
};

VhdxIo *
vhdx_nbd_io_open (const char *uri, GError **error)
{
        g_autofree VhdxNbdIo *self = g_new0 (VhdxNbdIo, 1);
        int64_t size, maximum;

        self->nbd = nbd_create ();
        if (self->nbd == NULL) {
                set_nbd_error (error, _ ("Cannot connect to the NBD server"), uri);
                return NULL;
        }
        /* Parents are only read: nothing is ever written to the export,
         * whether or not the server would allow it. */
        if (nbd_connect_uri (self->nbd, uri) == -1) {
                set_nbd_error (error, _ ("Cannot connect to the NBD server"), uri);
                nbd_close (self->nbd);
                return NULL;
        }
        size = nbd_get_size (self->nbd);
        if (size < 0) {
                set_nbd_error (error, _ ("Cannot read the size of the export of"), uri);
                nbd_close (self->nbd);
                return NULL;
        }
        maximum = nbd_get_block_size (self->nbd, LIBNBD_SIZE_MAXIMUM);
        self->max_request = maximum > 0 && maximum < DEFAULT_MAX_REQUEST ? (gsize) maximum
                                                                         : DEFAULT_MAX_REQUEST;
        self->size = (guint64) size;
        self->uri = g_strdup (uri);
        self->parent.vtable = &nbd_vtable;
        return &g_steal_pointer (&self)->parent;
}

#else

VhdxIo *
vhdx_nbd_io_open (const char *uri, GError **error)
{
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                     _ ("Cannot read %s: built without libnbd, parents are local files"), uri);
        return NULL;
}

#endif
