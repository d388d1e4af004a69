/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * I/O faults.  A run opens an image (dynamic, differencing with its parent,
 * or with a dirty log), reads its whole virtual disk, maps it, checks it and
 * counts its allocated bytes.  The run is repeated with one fault injected at
 * the n-th read of the run, for every n:
 *
 * - through a VhdxIo that fails a pread with an I/O error, returns half of
 *   what was asked or nothing (which the pread contract allows only at the
 *   end of the file), or fails get_size;
 * - under the file descriptor backend, through pread(2) itself: EINTR, a
 *   short read, EIO, or end of file.
 *
 * An I/O error must fail the operation it hits with that error, never be
 * taken for damage or ignored.  A short read in the middle of the file may
 * fail the operation (the file looks truncated) or be survived, as when the
 * other copy of a header is used; either way, whatever succeeds returns
 * exactly what the image holds: the disk, extents and allocated bytes of
 * the generator's record or of the scenario's model of what was written,
 * and no finding from check (unless a short read passed for damage).  EINTR
 * and short reads from the system are retried and invisible.  After a
 * failure the same operation is tried again and must succeed: nothing
 * half-read was kept.  The AddressSanitizer build checks that no error path
 * leaks.
 */
#include "test-util.h"
#include "vhdx-problems.h"
#include "vhdx-gen.h"
#include "vhdx-log-writer.h"
#include "vhdx-create.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MiB VHDX_MiB

typedef enum {
        /* Through a VhdxIo */
        FAULT_IO_ERROR,
        FAULT_SHORT_READ,
        FAULT_EMPTY_READ,
        FAULT_SIZE_ERROR,
        /* Through pread(2) under the file descriptor backend */
        FAULT_SYS_EINTR,
        FAULT_SYS_SHORT,
        FAULT_SYS_EIO,
        FAULT_SYS_EOF,
        N_FAULTS
} Fault;

static const char *const fault_names[N_FAULTS] = {
        "io-error",  "short-read", "empty-read", "size-error",
        "sys-eintr", "sys-short",  "sys-eio",    "sys-eof",
};

static gboolean
fault_is_sys (Fault fault)
{
        return fault >= FAULT_SYS_EINTR;
}

/* Faults that make the file look shorter than it is. */
static gboolean
fault_is_short (Fault fault)
{
        return fault == FAULT_SHORT_READ || fault == FAULT_EMPTY_READ || fault == FAULT_SYS_EOF;
}

typedef struct {
        Fault fault;
        guint order; /* index in orders[] */
        guint at;    /* the call that fails; 0: none */
        guint calls; /* preads (or get_size calls for FAULT_SIZE_ERROR) so far */
        gboolean hit;
        gboolean damage_seen; /* a short read hit an open that succeeded */
} Plan;

typedef struct {
        const char *name;
        GPtrArray *names;  /* file names; the last one is opened */
        GPtrArray *images; /* GBytes */
        char *dir;         /* the images as files */
        /* What a run without faults must return, from the generator or from
         * the scenario's model of what was written. */
        GBytes *disk;
        GArray *extents;
        guint64 allocated;
} Scenario;

/* pread(2), for the file descriptor backend */

static Plan *sys_plan;

ssize_t pread64 (int fd, void *buf, size_t count, off64_t offset);

ssize_t
pread64 (int fd, void *buf, size_t count, off64_t offset)
{
        Plan *plan = sys_plan;

        if (plan != NULL && ++plan->calls == plan->at) {
                plan->hit = TRUE;
                switch (plan->fault) {
                case FAULT_SYS_EINTR:
                        errno = EINTR;
                        return -1;
                case FAULT_SYS_EIO:
                        errno = EIO;
                        return -1;
                case FAULT_SYS_SHORT:
                        if (count > 1)
                                count /= 2;
                        break;
                case FAULT_SYS_EOF:
                        return 0;
                default:
                        g_assert_not_reached ();
                }
        }
        return syscall (SYS_pread64, fd, buf, count, offset);
}

/* A VhdxIo that fails as planned */

typedef struct {
        VhdxIo parent;
        VhdxIo *inner;
        Plan *plan;
        guint64 identity;
} FaultIo;

static gboolean
fault_io_pread (VhdxIo *io, void *buf, gsize count, guint64 offset, gsize *n_read, GError **error)
{
        FaultIo *self = (FaultIo *) io;
        Plan *plan = self->plan;

        if (plan->fault != FAULT_SIZE_ERROR && ++plan->calls == plan->at) {
                plan->hit = TRUE;
                switch (plan->fault) {
                case FAULT_IO_ERROR:
                        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                                             "injected I/O error");
                        return FALSE;
                case FAULT_SHORT_READ:
                        return self->inner->vtable->pread (self->inner, buf, count / 2, offset,
                                                           n_read, error);
                case FAULT_EMPTY_READ:
                        *n_read = 0;
                        return TRUE;
                default:
                        g_assert_not_reached ();
                }
        }
        return self->inner->vtable->pread (self->inner, buf, count, offset, n_read, error);
}

static gboolean
fault_io_get_size (VhdxIo *io, guint64 *size, GError **error)
{
        FaultIo *self = (FaultIo *) io;
        Plan *plan = self->plan;

        if (plan->fault == FAULT_SIZE_ERROR && ++plan->calls == plan->at) {
                plan->hit = TRUE;
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                                     "injected failure of get_size");
                return FALSE;
        }
        return vhdx_io_get_size (self->inner, size, error);
}

static void
fault_io_free (VhdxIo *io)
{
        vhdx_io_free (((FaultIo *) io)->inner);
        g_free (io);
}

static gboolean
fault_io_identify (VhdxIo *io, guint64 *device, guint64 *inode)
{
        *device = 0;
        *inode = ((FaultIo *) io)->identity;
        return TRUE;
}

static const VhdxIoVTable fault_io_vtable = {
        .pread = fault_io_pread,
        .get_size = fault_io_get_size,
        .free = fault_io_free,
        .identify = fault_io_identify,
};

typedef struct {
        Scenario *s;
        Plan *plan;
} OpenContext;

static VhdxIo *
fault_io_open (const char *path, gboolean writable, gpointer user_data, GError **error)
{
        OpenContext *ctx = user_data;
        g_autofree char *name = g_path_get_basename (path);

        for (guint i = 0; i < ctx->s->names->len; i++) {
                if (strcmp (name, g_ptr_array_index (ctx->s->names, i)) == 0) {
                        FaultIo *self = g_new0 (FaultIo, 1);
                        self->parent.vtable = &fault_io_vtable;
                        self->inner = vhdx_io_new_memory (g_ptr_array_index (ctx->s->images, i));
                        self->plan = ctx->plan;
                        self->identity = i + 1;
                        return &self->parent;
                }
        }
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s: no such image", path);
        return NULL;
}

/* A run */

static VhdxFile *
open_top (Scenario *s, Plan *plan, GError **error)
{
        const char *top = g_ptr_array_index (s->names, s->names->len - 1);
        g_autofree char *path = g_build_filename (s->dir, top, NULL);
        OpenContext ctx = { s, plan };
        VhdxOpenOptions options = { .path = path };
        VhdxIo *io;

        if (fault_is_sys (plan->fault)) {
                io = vhdx_io_open_path (path, FALSE, error);
                if (io == NULL)
                        return NULL;
        } else {
                options.open_func = fault_io_open;
                options.open_data = &ctx;
                io = fault_io_open (path, FALSE, &ctx, error);
        }
        return vhdx_file_open_full (io, VHDX_OPEN_FLAGS_NONE, &options, error);
}

typedef enum { OP_OPEN, OP_READ, OP_MAP, OP_CHECK, OP_ALLOCATED, N_OPS } Op;

static const char *const op_names[N_OPS] = { "open", "read", "map", "check", "allocated" };

/* Two orders, so that each operation is the first to load the BAT and the
 * sector bitmaps in one of them. */
static const Op orders[][N_OPS] = {
        { OP_OPEN, OP_READ, OP_MAP, OP_CHECK, OP_ALLOCATED },
        { OP_OPEN, OP_ALLOCATED, OP_MAP, OP_CHECK, OP_READ },
};

static gboolean
extents_equal (GArray *a, GArray *b)
{
        if (a->len != b->len)
                return FALSE;
        /* Field by field: the structure has padding. */
        for (guint i = 0; i < a->len; i++) {
                const VhdxMapExtent *x = &g_array_index (a, VhdxMapExtent, i);
                const VhdxMapExtent *y = &g_array_index (b, VhdxMapExtent, i);
                if (x->offset != y->offset || x->length != y->length || x->kind != y->kind ||
                    x->present != y->present || x->file_offset != y->file_offset ||
                    x->depth != y->depth)
                        return FALSE;
        }
        return TRUE;
}

/* Run @op; when it succeeds, its result must be the clean run's. */
static gboolean
run_op (Scenario *s, Op op, VhdxFile **file, Plan *plan, const char *what, GError **error)
{
        switch (op) {
        case OP_OPEN:
                *file = open_top (s, plan, error);
                return *file != NULL;
        case OP_READ: {
                gsize size;
                const guint8 *expect = g_bytes_get_data (s->disk, &size);
                g_autofree guint8 *buf = g_malloc (size);

                /* Bytes a failed read would leave behind must never be mistaken
                 * for the disk's. */
                memset (buf, 0xee, size);
                if (!vhdx_file_read (*file, 0, buf, size, error))
                        return FALSE;
                if (memcmp (buf, expect, size) != 0)
                        g_error ("%s: the read succeeded with wrong bytes", what);
                return TRUE;
        }
        case OP_MAP: {
                g_autoptr (GArray) extents =
                        vhdx_file_map (*file, 0, vhdx_file_get_info (*file)->virtual_size, error);
                if (extents == NULL)
                        return FALSE;
                if (!extents_equal (extents, s->extents))
                        g_error ("%s: the map succeeded with wrong extents", what);
                return TRUE;
        }
        case OP_CHECK: {
                g_autoptr (GPtrArray) problems =
                        g_ptr_array_new_with_free_func ((GDestroyNotify) vhdx_problem_free);
                gboolean hit_before = plan->hit;

                if (!vhdx_file_check (*file, problems, error))
                        return FALSE;
                /* A short read while opening or checking may pass for damage
                 * and be reported as such; otherwise the findings are those of
                 * the undamaged image: none. */
                if (fault_is_short (plan->fault) &&
                    (plan->damage_seen || (plan->hit && !hit_before)))
                        return TRUE;
                for (guint i = 0; i < problems->len; i++) {
                        const VhdxProblem *p = g_ptr_array_index (problems, i);
                        g_test_message ("%s: %s at %" G_GUINT64_FORMAT ": %s", what, p->structure,
                                        p->offset, p->message);
                }
                if (problems->len != 0)
                        g_error ("%s: the check found %u problems, expected none", what,
                                 problems->len);
                return TRUE;
        }
        case OP_ALLOCATED: {
                guint64 allocated;
                if (!vhdx_file_get_allocated_bytes (*file, &allocated, error))
                        return FALSE;
                if (allocated != s->allocated)
                        g_error ("%s: %" G_GUINT64_FORMAT
                                 " bytes allocated, expected %" G_GUINT64_FORMAT,
                                 what, allocated, s->allocated);
                return TRUE;
        }
        case N_OPS:
                break;
        }
        g_assert_not_reached ();
}

/* One run with @plan; returns the number of calls it made. */
static guint
run (Scenario *s, Plan *plan)
{
        g_autoptr (VhdxFile) file = NULL;
        g_autofree char *what = NULL;

        if (fault_is_sys (plan->fault))
                sys_plan = plan;
        for (guint i = 0; i < N_OPS; i++) {
                Op op = orders[plan->order][i];
                g_autoptr (GError) error = NULL;
                gboolean hit_before = plan->hit;
                gboolean ok;

                g_free (what);
                what = g_strdup_printf ("%s, order %u, %s at call %u, %s", s->name, plan->order,
                                        fault_names[plan->fault], plan->at, op_names[op]);
                ok = run_op (s, op, &file, plan, what, &error);
                if (ok && op == OP_OPEN && plan->hit && !hit_before)
                        plan->damage_seen = TRUE;
                if (ok) {
                        /* An I/O error is never ignored or taken for damage. */
                        if (plan->hit && !hit_before &&
                            (plan->fault == FAULT_IO_ERROR || plan->fault == FAULT_SIZE_ERROR ||
                             plan->fault == FAULT_SYS_EIO))
                                g_error ("%s: succeeded after an I/O error", what);
                        continue;
                }

                if (!plan->hit || hit_before)
                        g_error ("%s: failed without a fault: %s", what, error->message);
                switch (plan->fault) {
                case FAULT_IO_ERROR:
                case FAULT_SIZE_ERROR:
                case FAULT_SYS_EIO:
                        if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_FAILED))
                                g_error ("%s: the I/O error became: %s", what, error->message);
                        break;
                case FAULT_SHORT_READ:
                case FAULT_EMPTY_READ:
                case FAULT_SYS_EOF:
                        if (error->domain != VHDX_ERROR)
                                g_error ("%s: a short read became: %s", what, error->message);
                        break;
                default:
                        g_error ("%s: EINTR and short reads from the system must be retried, "
                                 "but: %s",
                                 what, error->message);
                }
                /* The fault was one-off: the same operation now succeeds. */
                g_clear_error (&error);
                if (!run_op (s, op, &file, plan, what, &error))
                        g_error ("%s: failed again after the fault: %s", what, error->message);
        }
        sys_plan = NULL;
        return plan->calls;
}

static void
test_faults (gconstpointer data)
{
        Scenario *s = (Scenario *) data;
        guint n_runs = 0;

        for (guint order = 0; order < G_N_ELEMENTS (orders); order++) {
                for (Fault fault = 0; fault < N_FAULTS; fault++) {
                        Plan clean = { fault, order, 0, 0, FALSE, FALSE };
                        guint calls = run (s, &clean);

                        g_assert_false (clean.hit);
                        g_assert_cmpuint (calls, >, 0);
                        /* One past the last call as well: a run with no fault hit. */
                        for (guint at = 1; at <= calls + 1; at++) {
                                Plan plan = { fault, order, at, 0, FALSE, FALSE };
                                run (s, &plan);
                                n_runs++;
                        }
                        g_test_message ("%s, order %u, %s: %u calls", s->name, order,
                                        fault_names[fault], calls);
                }
        }
        g_test_message ("%s: %u runs", s->name, n_runs);
}

/* The scenarios */

static GBytes *
memfd_bytes (int fd)
{
        struct stat st;
        guint8 *data;

        g_assert_cmpint (fstat (fd, &st), ==, 0);
        data = g_malloc (st.st_size);
        g_assert_cmpint (pread (fd, data, st.st_size, 0), ==, st.st_size);
        return g_bytes_new_take (data, st.st_size);
}

static void
scenario_add (Scenario *s, const char *name, GBytes *bytes)
{
        g_autofree char *path = g_build_filename (s->dir, name, NULL);
        g_autoptr (GError) error = NULL;

        g_ptr_array_add (s->names, g_strdup (name));
        g_ptr_array_add (s->images, g_bytes_ref (bytes));
        test_assert_ok (g_file_set_contents (path, g_bytes_get_data (bytes, NULL),
                                             (gssize) g_bytes_get_size (bytes), &error),
                        error);
}

static Scenario *
scenario_new (const char *name)
{
        Scenario *s = g_new0 (Scenario, 1);

        s->name = name;
        s->names = g_ptr_array_new_with_free_func (g_free);
        s->images = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
        s->dir = test_tmpdir_new ();
        return s;
}

static void
scenario_free (gpointer data)
{
        Scenario *s = data;

        g_ptr_array_unref (s->names);
        g_ptr_array_unref (s->images);
        test_tmpdir_free (s->dir);
        g_clear_pointer (&s->disk, g_bytes_unref);
        g_clear_pointer (&s->extents, g_array_unref);
        g_free (s);
}

/* Extents of a generated image (before any log): its allocated blocks. */
static void
gen_extent (guint64 offset, VhdxMapExtent *e, gpointer user_data)
{
        VhdxGen *gen = user_data;
        const VhdxGenParams *params = vhdx_gen_get_params (gen);
        guint64 file_offset;

        if (vhdx_gen_block_file_offset (gen, offset / params->block_size, &file_offset)) {
                e->kind = VHDX_EXTENT_DATA;
                e->present = TRUE;
                e->file_offset = file_offset + offset % params->block_size;
        } else {
                e->kind = VHDX_EXTENT_ZERO;
                e->present = params->zero_state == VHDX_PAYLOAD_ZERO;
        }
}

static Scenario *
scenario_dynamic (void)
{
        Scenario *s = scenario_new ("dynamic");
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (GBytes) bytes = NULL;
        VhdxGenParams params;
        VhdxGenLayout layout;

        vhdx_gen_params_init (&params);
        params.virtual_size = 4 * MiB;
        params.block_size = MiB;
        params.shuffle_blocks = TRUE;
        params.seed = 3;
        gen = vhdx_gen_new (&params);
        vhdx_gen_fill_pattern (gen, 0, 64 * 1024, 1);
        vhdx_gen_fill_pattern (gen, 2 * MiB, MiB, 2);
        vhdx_gen_fill_pattern (gen, 4 * MiB - 4096, 4096, 3);
        bytes = vhdx_gen_build (gen);
        scenario_add (s, "dynamic.vhdx", bytes);
        vhdx_gen_get_layout (gen, &layout);
        s->disk = vhdx_gen_build_raw (gen);
        s->extents =
                test_model_extents (0, params.virtual_size, params.block_size, gen_extent, gen);
        s->allocated = layout.allocated_blocks * params.block_size;
        return s;
}

static GBytes *
write_image (const VhdxCreateParams *params, const guint64 *runs, guint n_runs, guint8 *model)
{
        g_autoptr (GError) error = NULL;
        g_autoptr (VhdxCreator) w = NULL;
        g_autoptr (VhdxIo) io = NULL;
        VhdxCreateParams p = *params;
        GBytes *bytes;
        int fd = memfd_create ("test-faults", MFD_CLOEXEC);

        g_assert_cmpint (fd, >=, 0);
        io = vhdx_io_new_fd (fd, FALSE);
        w = vhdx_creator_new (io, &p, &error);
        g_assert_no_error (error);
        for (guint i = 0; i < n_runs; i++) {
                g_autofree guint8 *buf = g_malloc (runs[2 * i + 1]);
                vhdx_gen_pattern_fill_buffer (buf, runs[2 * i], runs[2 * i + 1], 50 + i);
                memcpy (model + runs[2 * i], buf, runs[2 * i + 1]);
                test_assert_ok (vhdx_creator_write (w, runs[2 * i], buf, runs[2 * i + 1], &error),
                                error);
        }
        test_assert_ok (vhdx_creator_finish (w, &error), error);
        bytes = memfd_bytes (fd);
        close (fd);
        return bytes;
}

static gboolean
runs_cover (const guint64 *runs, guint n_runs, guint64 lo, guint64 hi)
{
        for (guint i = 0; i < n_runs; i++)
                if (runs[2 * i] < hi && runs[2 * i] + runs[2 * i + 1] > lo)
                        return TRUE;
        return FALSE;
}

/* The model of a child over a dynamic base, both by the writer: the runs
 * each wrote, and where each block is stored, from the BATs read by hand. */
typedef struct {
        const guint64 *base_runs, *child_runs;
        guint n_base_runs, n_child_runs;
        guint32 block_size;
        guint64 *base_bat, *child_bat;
} DiffModel;

static void
diff_extent (guint64 offset, VhdxMapExtent *e, gpointer user_data)
{
        const DiffModel *m = user_data;
        guint64 block = offset / m->block_size;

        /* A sector the child wrote; otherwise its parent's block when the
         * parent wrote to it (a dynamic image stores whole blocks); otherwise
         * a hole, found at the parent. */
        if (runs_cover (m->child_runs, m->n_child_runs, offset, offset + 1)) {
                e->kind = VHDX_EXTENT_DATA;
                e->present = TRUE;
                e->depth = 0;
                e->file_offset =
                        (m->child_bat[block] & VHDX_BAT_OFFSET_MASK) + offset % m->block_size;
        } else if (runs_cover (m->base_runs, m->n_base_runs, block * m->block_size,
                               (block + 1) * m->block_size)) {
                e->kind = VHDX_EXTENT_DATA;
                e->present = TRUE;
                e->depth = 1;
                e->file_offset =
                        (m->base_bat[block] & VHDX_BAT_OFFSET_MASK) + offset % m->block_size;
        } else {
                e->kind = VHDX_EXTENT_ZERO;
                e->present = FALSE;
                e->depth = 1;
        }
}

static Scenario *
scenario_differencing (void)
{
        static const guint64 base_runs[] = { 0, MiB, 3 * MiB, 8192 };
        /* Runs of sectors: partly present blocks, and one whole block. */
        static const guint64 child_runs[] = {
                512, 1024, 8192, 512, MiB + 4096, 4096, 2 * MiB, MiB
        };
        Scenario *s = scenario_new ("differencing");
        g_autoptr (GBytes) base = NULL;
        g_autoptr (GBytes) child = NULL;
        g_autofree char *base_path = NULL;
        g_autofree char *child_path = NULL;
        g_autofree guint64 *base_bat = NULL;
        g_autofree guint64 *child_bat = NULL;
        TestSpecLayout base_layout, child_layout;
        guint8 *model = g_malloc0 (4 * MiB);
        DiffModel m = { base_runs,
                        child_runs,
                        G_N_ELEMENTS (base_runs) / 2,
                        G_N_ELEMENTS (child_runs) / 2,
                        MiB,
                        NULL,
                        NULL };
        VhdxCreateParams params = {
                .disk_type = VHDX_DISK_TYPE_DYNAMIC,
                .virtual_size = 4 * MiB,
                .block_size = MiB,
        };

        /* The model: the base's runs, then the child's over them. */
        vhdx_guid_new_random (&params.data_write_guid);
        base = write_image (&params, base_runs, G_N_ELEMENTS (base_runs) / 2, model);
        scenario_add (s, "base.vhdx", base);
        params.disk_type = VHDX_DISK_TYPE_DIFFERENCING;
        params.parent_data_write_guid = params.data_write_guid;
        params.parent_relative_path = "base.vhdx";
        vhdx_guid_new_random (&params.data_write_guid);
        child = write_image (&params, child_runs, G_N_ELEMENTS (child_runs) / 2, model);
        scenario_add (s, "child.vhdx", child);
        s->disk = g_bytes_new_take (model, 4 * MiB);

        base_path = g_build_filename (s->dir, "base.vhdx", NULL);
        child_path = g_build_filename (s->dir, "child.vhdx", NULL);
        test_spec_read_layout (base_path, &base_layout);
        test_spec_read_layout (child_path, &child_layout);
        g_assert_cmpuint (child_layout.payload_blocks, ==, 4);
        base_bat = test_spec_read_payload_entries (base_path, &base_layout);
        child_bat = test_spec_read_payload_entries (child_path, &child_layout);
        /* The writer allocated exactly the blocks each level wrote to. */
        for (guint64 b = 0; b < 4; b++) {
                gboolean in_base = runs_cover (base_runs, m.n_base_runs, b * MiB, (b + 1) * MiB);
                gboolean in_child = runs_cover (child_runs, m.n_child_runs, b * MiB, (b + 1) * MiB);
                guint64 child_state = child_bat[b] & VHDX_BAT_STATE_MASK;

                g_assert_cmpuint (base_bat[b] & VHDX_BAT_STATE_MASK, ==,
                                  in_base ? VHDX_PAYLOAD_FULLY_PRESENT : VHDX_PAYLOAD_NOT_PRESENT);
                if (in_child)
                        g_assert_true (child_state == VHDX_PAYLOAD_FULLY_PRESENT ||
                                       child_state == VHDX_PAYLOAD_PARTIALLY_PRESENT);
                else
                        g_assert_cmpuint (child_state, ==, VHDX_PAYLOAD_NOT_PRESENT);
        }
        m.base_bat = base_bat;
        m.child_bat = child_bat;
        s->extents = test_model_extents (0, 4 * MiB, 512, diff_extent, &m);
        /* The child stores the sectors it wrote. */
        for (guint i = 0; i < m.n_child_runs; i++)
                s->allocated += child_runs[2 * i + 1];
        return s;
}

/* The dirty scenario's extents: the generator's blocks, and block 1 where
 * the log puts it. */
typedef struct {
        VhdxGen *gen;
        guint64 new_block;
} DirtyModel;

static void
dirty_extent (guint64 offset, VhdxMapExtent *e, gpointer user_data)
{
        const DirtyModel *m = user_data;

        if (offset / MiB == 1) {
                e->kind = VHDX_EXTENT_DATA;
                e->present = TRUE;
                e->file_offset = m->new_block + offset % MiB;
        } else {
                gen_extent (offset, e, m->gen);
        }
}

/* A dynamic image whose log allocates a block and changes sectors of another. */
static Scenario *
scenario_dirty (void)
{
        Scenario *s = scenario_new ("dirty-log");
        g_autoptr (VhdxGen) gen = NULL;
        g_autoptr (GBytes) clean = NULL;
        g_autoptr (GBytes) dirty = NULL;
        g_autoptr (VhdxIo) io = NULL;
        g_autoptr (VhdxLogWriter) writer = NULL;
        g_autoptr (GError) error = NULL;
        VhdxGenParams params;
        VhdxGenLayout layout;
        VhdxGuid log_guid;
        guint8 sector[4096];
        guint64 new_block, block0;
        DirtyModel m;
        guint8 *disk;
        int fd = memfd_create ("test-faults", MFD_CLOEXEC);

        vhdx_gen_params_init (&params);
        params.virtual_size = 4 * MiB;
        params.block_size = MiB;
        params.seed = 4;
        gen = vhdx_gen_new (&params);
        vhdx_gen_fill_pattern (gen, 0, 128 * 1024, 5);
        vhdx_gen_get_layout (gen, &layout);
        clean = vhdx_gen_build (gen);
        g_assert_true (vhdx_gen_block_file_offset (gen, 0, &block0));
        g_assert_false (vhdx_gen_block_is_allocated (gen, 1));
        new_block = (layout.file_size + MiB - 1) / MiB * MiB;

        g_assert_cmpint (fd, >=, 0);
        io = vhdx_io_new_fd (fd, FALSE);
        g_assert_cmpint (pwrite (fd, g_bytes_get_data (clean, NULL), layout.file_size, 0), ==,
                         (gssize) layout.file_size);
        vhdx_guid_new_random (&log_guid);
        writer = vhdx_log_writer_new (io, layout.log_offset, layout.log_length, &log_guid, 0, 9);
        /* Block 1 allocated past the end of the file: it reads as zeros. */
        g_assert_cmpint (pread (fd, sector, sizeof sector, layout.bat_offset), ==, sizeof sector);
        g_assert_cmpuint (vhdx_gen_block_bat_index (gen, 1), ==, 1);
        vhdx_put_le64 (sector + 8, new_block | VHDX_PAYLOAD_FULLY_PRESENT);
        vhdx_log_writer_add_data (writer, layout.bat_offset, sector);
        memset (sector, 0x3c, sizeof sector);
        vhdx_log_writer_add_data (writer, block0 + 4096, sector);
        test_assert_ok (vhdx_log_writer_commit (writer, layout.file_size, new_block + MiB, &error),
                        error);
        vhdx_log_writer_add_zero (writer, block0 + 16384, 8192);
        test_assert_ok (vhdx_log_writer_commit (writer, layout.file_size, new_block + MiB, &error),
                        error);
        for (guint h = 0; h < 2; h++) {
                guint8 header[VHDX_HEADER_SIZE];
                guint64 o = layout.header_offset[h];
                g_assert_cmpint (pread (fd, header, sizeof header, o), ==, sizeof header);
                memcpy (header + VHDX_HEADER_OFF_LOG_GUID, log_guid.bytes, 16);
                vhdx_gen_update_header_checksum (header);
                g_assert_cmpint (pwrite (fd, header, sizeof header, o), ==, sizeof header);
        }
        dirty = memfd_bytes (fd);
        close (fd);
        scenario_add (s, "dirty.vhdx", dirty);

        /* The generator's disk with the log's updates: a sector of 0x3c and
         * 8 KiB of zeros in block 0 (stored at block0), and block 1, new,
         * zeros as well. */
        disk = g_malloc (params.virtual_size);
        vhdx_gen_read_raw (gen, 0, disk, params.virtual_size);
        memset (disk + 4096, 0x3c, 4096);
        memset (disk + 16384, 0, 8192);
        memset (disk + MiB, 0, MiB);
        s->disk = g_bytes_new_take (disk, params.virtual_size);
        m.gen = gen;
        m.new_block = new_block;
        s->extents = test_model_extents (0, params.virtual_size, MiB, dirty_extent, &m);
        s->allocated = (layout.allocated_blocks + 1) * MiB;
        return s;
}

int
main (int argc, char **argv)
{
        g_autoptr (GPtrArray) scenarios = g_ptr_array_new_with_free_func (scenario_free);
        int status;

        g_test_init (&argc, &argv, NULL);
        g_ptr_array_add (scenarios, scenario_dynamic ());
        g_ptr_array_add (scenarios, scenario_differencing ());
        g_ptr_array_add (scenarios, scenario_dirty ());
        for (guint i = 0; i < scenarios->len; i++) {
                Scenario *s = g_ptr_array_index (scenarios, i);
                g_autofree char *path = g_strdup_printf ("/faults/%s", s->name);
                g_test_add_data_func (path, s, test_faults);
        }
        status = g_test_run ();
        return status;
}
