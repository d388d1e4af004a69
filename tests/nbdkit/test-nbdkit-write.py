#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Writing through nbdkit-vhdx-plugin, printed as TAP.
#
# The default tests send random writes, zeroes, trims and flushes over two
# connections at once with the small NBD client of nbdclient.py, which
# sees the server's own answers (flags, error codes), and keep a model of
# the disk: the raw bytes that the requests must have left.  Through the
# server, every read must return the model; once the clients are gone the
# image must be clean (LogGuid cleared, read from the bytes with
# tests/common/vhdxspec.py), `qemu-img check` must find no error, and the
# image must read as the model with `qemu-img compare` (QEMU reads fixed
# and dynamic images) or `vhdx cat` (differencing images, which QEMU does
# not read; the parent must not change).  qemu-io and qemu-img write through
# the plugin as well.  A read-only server (nbdkit -r), one that cannot
# open the file for writing, and the cow filter must leave the file as it
# was, the first two refusing every write.  Fast zeroes, requests outside
# the disk, a full file system and halves of one sector written at once
# get their own tests, and so do the locks that keep the plugin and QEMU
# (qemu-nbd, qemu-img) from writing an image that the other uses, and
# force-share=true, which serves an image that another process writes.
#
# With --kill: rounds in which nbdkit is killed with SIGKILL after a random
# number of requests of a random workload (or right after the clients
# disconnected, while it closes the image), on dynamic images of QEMU and
# on differencing children; every sector must then read, through the
# read-only open of `vhdx cat`, as the last value that a completed flush
# made durable or as one sent after it; `vhdx check` must find the log
# pending and nothing corrupt, `vhdx check --repair` must replay it, and
# then `qemu-img check` must find no error and `qemu-img compare` must
# read the bytes read before the repair (dynamic images).
#
# With --libguestfs: guestfish makes ext4 file systems through the plugin
# and writes files into them, in an empty dynamic image and in differencing
# children of the real-world samples of ../shared/samples; e2fsck and
# debugfs check the file systems and read the files back from raw copies.
#
# Environment: VHDX_NBDKIT_PLUGIN, VHDX_TOOL, VHDX_MKIMAGE (see nbdtest.py),
# VHDX_SHARED_DIR (optional; its samples/ directory holds real-world
# images), VHDX_KILL_ROUNDS and VHDX_KILL_SEED (the rounds of --kill).

import bz2
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'common'))
import nbdclient  # noqa: E402
import vhdxspec  # noqa: E402
from nbdclient import (  # noqa: E402
    CMD_FLAG_FAST_ZERO, CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, CMD_FLUSH, CMD_READ, CMD_TRIM,
    CMD_WRITE, CMD_WRITE_ZEROES, Client, Disconnected)
from nbdtest import (  # noqa: E402
    CLIENT_ENV, GUESTFISH, KiB, MKIMAGE, MiB, NBDINFO, NBDKIT, QEMU_IMG, QEMU_IO, QEMU_NBD, TOOL,
    Server, Skip, check_ok, expect, expect_equal, guestfish, main, need, nbdkit_refuses,
    qemu_create, run, sha256_file, skip_unless_appliance_runs)

SHARED_DIR = os.environ.get('VHDX_SHARED_DIR')
SETPRIV = shutil.which('setpriv')
E2FSCK = shutil.which('e2fsck') or shutil.which('/usr/sbin/e2fsck')
DEBUGFS = shutil.which('debugfs') or shutil.which('/usr/sbin/debugfs')

ZERO_GUID = '00000000-0000-0000-0000-000000000000'
FULLY_PRESENT = 6
PARTIALLY_PRESENT = 7


def vhdx_json(command, path, *args):
    result = run([TOOL, command, '--json'] + list(args) + [path])
    return result, json.loads(result.stdout or b'null')


def log_state(path):
    result, info = vhdx_json('info', path)
    check_ok(result, 'vhdx info')
    return info['format-specific']['data']['log-state']


def vhdx_cat(path, raw=None, into=None):
    """The virtual disk of @path as `vhdx cat` reads it, written to @raw
    (a file, faster than a pipe) or to a file next to @path; read into the
    bytearray @into when given (which is returned)."""
    raw = raw or path + '.cat.raw'
    with open(raw, 'wb') as out:
        result = subprocess.run([TOOL, 'cat', path], stdout=out, stderr=subprocess.PIPE,
                                env=CLIENT_ENV, timeout=300)
    check_ok(result, 'vhdx cat')
    with open(raw, 'rb') as f:
        if into is None:
            return f.read()
        expect_equal(f.readinto(into), len(into), 'bytes read by vhdx cat')
        return into


def qemu_raw(path):
    """The virtual disk of @path as QEMU reads it."""
    raw = path + '.qemu.raw'
    check_ok(run([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', path, raw]),
             'qemu-img convert')
    with open(raw, 'rb') as f:
        data = f.read()
    os.unlink(raw)
    return data


def expect_clean(path, qemu=True):
    """@path was closed cleanly: LogGuid is zero in the current header, our
    check finds nothing wrong, and neither does QEMU's."""
    spec = vhdxspec.Vhdx(path)
    expect_equal(spec.header['log-guid'], ZERO_GUID, 'LogGuid of %s' % path)
    expect_equal(log_state(path), 'clean', 'log state of %s' % path)
    result, report = vhdx_json('check', path)
    check_ok(result, 'vhdx check')
    expect_equal((report['check-errors'], report['warnings']), (0, 0),
                 'vhdx check: (errors, warnings)')
    if qemu:
        check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', path]), 'qemu-img check')


def whole_blocks(offset, length, block_size, size):
    """The blocks that [offset, offset + length) covers entirely (the last
    block of the disk may be short)."""
    end = offset + length
    first = -(-offset // block_size)
    last = -(-end // block_size) if end == size else end // block_size
    return range(first, max(first, last))


class Model:
    """The disk as the requests sent so far must have left it, by the rules
    that the manual page gives: zeroes read as zeros; a trim frees the
    blocks it covers entirely, which then read as zeros, and leaves the rest
    alone; the blocks of a fixed image stay, and so does their data; in a
    differencing image, a block that the image does not store (never
    written nor zeroed) goes on showing the parent's data."""

    def __init__(self, data, block_size, disk_type):
        self.data = bytearray(data)
        self.size = len(data)
        self.block_size = block_size
        self.disk_type = disk_type
        self.touched = set()  # blocks written or zeroed
        self.freed = set()    # blocks that the image cannot store now

    def _touch(self, offset, length):
        if length:
            self.touched.update(range(offset // self.block_size,
                                      (offset + length - 1) // self.block_size + 1))

    def write(self, offset, data):
        self.data[offset:offset + len(data)] = data
        self._touch(offset, len(data))
        if data:
            self.freed.difference_update(range(
                offset // self.block_size, (offset + len(data) - 1) // self.block_size + 1))

    def zero(self, offset, length, may_trim):
        """Zeroes; whole blocks are freed when @may_trim (not NO_HOLE)."""
        self.data[offset:offset + length] = bytes(length)
        self._touch(offset, length)
        if may_trim and self.disk_type != 'fixed':
            self.freed.update(whole_blocks(offset, length, self.block_size, self.size))

    def trim(self, offset, length):
        if self.disk_type == 'fixed':
            return
        for block in whole_blocks(offset, length, self.block_size, self.size):
            if self.disk_type == 'differencing' and block not in self.touched:
                continue
            start = block * self.block_size
            end = min(start + self.block_size, self.size)
            self.data[start:end] = bytes(end - start)
            self.freed.add(block)

    def read(self, offset, length):
        return bytes(self.data[offset:offset + length])


class Pipeline:
    """Requests over several connections, several in flight on each, never
    two in flight over the same bytes (whose order would be the server's
    choice); a barrier (a flush) waits for every reply first.  Each reply
    goes to the callback given with its request."""

    def __init__(self, clients, depth=4):
        self.clients = clients
        self.depth = depth
        self.ranges = {}  # (connection, cookie) -> (start, end, callback)

    def _receive(self, index):
        cookie, error, data = self.clients[index].receive()
        _, _, callback = self.ranges.pop((index, cookie))
        callback(error, data)

    def drain(self):
        for index, client in enumerate(self.clients):
            while client.in_flight:
                self._receive(index)

    def in_flight(self):
        return len(self.ranges)

    def submit(self, index, command, offset, length, data, flags, callback, barrier=False):
        end = offset + length
        if barrier or any(s < end and offset < e for s, e, _ in self.ranges.values()):
            self.drain()
        while len(self.clients[index].in_flight) >= self.depth:
            self._receive(index)
        cookie = self.clients[index].send(command, offset, length, data, flags)
        self.ranges[(index, cookie)] = (offset, end if length else offset, callback)


def expect_success(what):
    def callback(error, data):
        expect_equal(error, 0, 'error of %s' % what)
    return callback


def random_workload(rng, pipeline, model, count, allow_unaligned=True):
    """Send @count random requests through @pipeline, applying them to
    @model as they are sent; reads are compared with the model.  Returns
    the number of requests of each kind."""
    size = model.size
    bs = model.block_size
    counts = {}

    def aligned_range(max_length):
        length = 512 * rng.randint(1, max(1, min(max_length, size) // 512))
        offset = 512 * rng.randrange((size - length) // 512 + 1)
        return offset, length

    def block_range():
        first = rng.randrange(-(-size // bs))
        n = rng.randint(1, 3)
        offset = first * bs
        return offset, min(n * bs, size - offset)

    def any_range(max_length):
        if allow_unaligned and rng.random() < 0.25:
            length = rng.randint(1, 5000)
            return rng.randrange(size - length + 1), length
        return aligned_range(max_length)

    for _ in range(count):
        conn = rng.randrange(len(pipeline.clients))
        r = rng.random()
        if r < 0.40:
            kind = 'write'
            offset, length = any_range(2 * bs + 4096)
            data = rng.randbytes(length)
            model.write(offset, data)
            pipeline.submit(conn, CMD_WRITE, offset, length, data, 0, expect_success(kind))
        elif r < 0.48:
            kind = 'write+fua'
            offset, length = any_range(bs)
            data = rng.randbytes(length)
            model.write(offset, data)
            pipeline.submit(conn, CMD_WRITE, offset, length, data, CMD_FLAG_FUA,
                            expect_success(kind))
        elif r < 0.62:
            kind = 'zero'
            offset, length = block_range() if rng.random() < 0.4 else any_range(2 * bs)
            flags = rng.choice([0, CMD_FLAG_NO_HOLE, CMD_FLAG_FUA])
            model.zero(offset, length, not flags & CMD_FLAG_NO_HOLE)
            pipeline.submit(conn, CMD_WRITE_ZEROES, offset, length, None, flags,
                            expect_success(kind))
        elif r < 0.72:
            kind = 'trim'
            offset, length = block_range() if rng.random() < 0.6 else any_range(2 * bs)
            model.trim(offset, length)
            pipeline.submit(conn, CMD_TRIM, offset, length, None, 0, expect_success(kind))
        elif r < 0.92:
            kind = 'read'
            offset, length = any_range(2 * bs)
            expected = model.read(offset, length)

            def check_read(error, data, offset=offset, length=length, expected=expected):
                expect_equal(error, 0, 'error of a read')
                expect(data == expected, 'read of %d bytes at %d does not return what was '
                       'written' % (length, offset))
            pipeline.submit(conn, CMD_READ, offset, length, None, 0, check_read)
        else:
            kind = 'flush'
            pipeline.submit(conn, CMD_FLUSH, 0, 0, None, 0, expect_success(kind), barrier=True)
        counts[kind] = counts.get(kind, 0) + 1
    pipeline.drain()
    return counts


def read_all(client, size):
    chunks = []
    for offset in range(0, size, 4 * MiB):
        chunks.append(client.pread(offset, min(4 * MiB, size - offset)))
    return b''.join(chunks)


def describe(counts):
    return ', '.join('%d %s' % (n, k) for k, n in sorted(counts.items()))


class QemuNbd:
    """qemu-nbd serving @image (read-only with -r in @options) on a Unix
    socket until stop(), to as many connections in turn as come."""

    def __init__(self, workdir, image, options=()):
        self.socket = os.path.join(workdir, 'qemu-nbd.sock')
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.proc = subprocess.Popen([QEMU_NBD, '--persistent', '-f', 'vhdx', '-k', self.socket]
                                     + list(options) + [image], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=CLIENT_ENV)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError('qemu-nbd did not start: %s'
                                     % self.proc.stderr.read().decode(errors='replace'))
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()


def refused_connection(server):
    """Connect to @server, which must refuse the export; returns its output."""
    try:
        Client(server.socket).close()
    except AssertionError as e:
        expect('NBD_OPT_GO refused' in str(e), 'the connection failed otherwise: %s' % e)
    else:
        raise AssertionError('the export was served')
    return server.output()


class Tests:
    def __init__(self, workdir):
        self.workdir = workdir

    def path(self, name):
        return os.path.join(self.workdir, name)

    def round_trip(self, image, model, seed, count, parent=None):
        """The random workload over two connections through one server;
        what the server reads, then what the image holds once the clients
        are gone, must be the model."""
        parent_sha256 = sha256_file(parent) if parent else None
        with Server(self.workdir, ['file=' + image]) as server:
            with Client(server.socket) as a, Client(server.socket) as b:
                for client in (a, b):
                    expect(not client.has(nbdclient.FLAG_READ_ONLY), 'the export is read-only')
                    expect(client.has(nbdclient.FLAG_CAN_MULTI_CONN), 'no multi-conn')
                    expect_equal(client.size, model.size, 'export size')
                counts = random_workload(random.Random(seed), Pipeline([a, b]), model, count)
                print('# %s: %s' % (os.path.basename(image), describe(counts)))
                a.flush()
                # Each connection reads what both wrote.
                expect(read_all(b, model.size) == model.data, 'the disk read back through '
                       'the server is not what was written')
            output = server.stop()
        expect('error' not in output, 'nbdkit logged an error: %s' % output)
        if parent:
            expect_equal(sha256_file(parent), parent_sha256, 'sha256 of the parent')
        return counts

    def test_export_flags(self):
        need(('nbdinfo', NBDINFO))
        image = self.path('flags.vhdx')
        qemu_create(image, 'dynamic', 16 * MiB)
        with Server(self.workdir, ['file=' + image], foreground=True) as server:
            with Client(server.socket) as client:
                for flag, name in ((nbdclient.FLAG_SEND_FLUSH, 'flush'),
                                   (nbdclient.FLAG_SEND_FUA, 'FUA'),
                                   (nbdclient.FLAG_SEND_TRIM, 'trim'),
                                   (nbdclient.FLAG_SEND_WRITE_ZEROES, 'write zeroes'),
                                   (nbdclient.FLAG_SEND_FAST_ZERO, 'fast zero'),
                                   (nbdclient.FLAG_CAN_MULTI_CONN, 'multi-conn')):
                    expect(client.has(flag), 'the writable export does not offer %s' % name)
                expect(not client.has(nbdclient.FLAG_READ_ONLY), 'the export is read-only')
            info = json.loads(check_ok(run([NBDINFO, '--json', server.uri]), 'nbdinfo').stdout)
            export = info['exports'][0]
            for key, value in (('is_read_only', False), ('can_flush', True), ('can_fua', True),
                               ('can_trim', True), ('can_zero', True), ('can_fast_zero', True),
                               ('can_multi_conn', True)):
                expect_equal(export[key], value, 'nbdinfo %s' % key)
        with Server(self.workdir, ['file=' + image], options=['-r']) as server:
            with Client(server.socket) as client:
                expect(client.has(nbdclient.FLAG_READ_ONLY), 'nbdkit -r exports a writable disk')
                expect(client.has(nbdclient.FLAG_CAN_MULTI_CONN), 'no multi-conn with -r')

    def test_round_trip_dynamic(self):
        image = self.path('dynamic.vhdx')
        size = 48 * MiB
        qemu_create(image, 'dynamic', size, MiB, [
            (0x11, 0, 3 * MiB), (0x22, 17 * MiB + 512, 100 * KiB), (0x33, 47 * MiB, MiB)])
        model = Model(qemu_raw(image), MiB, 'dynamic')
        self.round_trip(image, model, 1, 400)
        expect_clean(image)
        check_ok(run([QEMU_IMG, 'compare', '-f', 'vhdx', '-F', 'raw', image,
                      self.write_raw('dynamic-model.raw', model)]), 'qemu-img compare')
        expect(vhdx_cat(image) == model.data, 'vhdx cat does not read the model')
        self.expect_freed(image, model)

    def test_round_trip_fixed(self):
        # QEMU leaves the blocks of its fixed images in the ZERO state until
        # they are written (and then gives them space at the end of the
        # file, as the plugin does); `vhdx create` stores them all.
        for maker in ('qemu-img', 'vhdx'):
            image = self.path('fixed-%s.vhdx' % maker)
            size = 24 * MiB
            if maker == 'qemu-img':
                qemu_create(image, 'fixed', size, MiB, [(0x44, 5 * MiB, 2 * MiB)])
            else:
                check_ok(run([TOOL, 'create', '--type', 'fixed', '--block-size', '1M', image,
                              size]), 'vhdx create --type fixed')
            file_size = os.path.getsize(image)
            blocks = vhdxspec.Vhdx(image).stored_blocks()
            model = Model(qemu_raw(image), MiB, 'fixed')
            self.round_trip(image, model, 2, 250)
            expect_clean(image)
            check_ok(run([QEMU_IMG, 'compare', '-f', 'vhdx', '-F', 'raw', image,
                          self.write_raw('fixed-model.raw', model)]), 'qemu-img compare')
            # A fixed image keeps every block where it was, trimmed or zeroed.
            after = vhdxspec.Vhdx(image).stored_blocks()
            expect_equal({b: after.get(b) for b in blocks}, blocks,
                         'the blocks of the fixed image made by %s' % maker)
            if maker == 'vhdx':
                expect_equal(len(blocks), size // MiB, 'blocks stored by vhdx create')
                expect_equal(os.path.getsize(image), file_size, 'size of the fixed image')

    def test_round_trip_differencing(self):
        parent = self.path('base.vhdx')
        size = 40 * MiB
        qemu_create(parent, 'dynamic', size, MiB, [
            (0x55, 0, 6 * MiB), (0x66, 20 * MiB, 5 * MiB + 512), (0x77, 39 * MiB, MiB)])
        child = self.path('child.vhdx')
        check_ok(run([TOOL, 'create', '--parent', parent, child]), 'vhdx create --parent')
        block_size = vhdxspec.Vhdx(child).block_size
        model = Model(qemu_raw(parent), block_size, 'differencing')
        self.round_trip(child, model, 3, 300, parent=parent)
        expect_clean(child, qemu=False)
        expect(vhdx_cat(child) == model.data, 'vhdx cat of the child does not read the model')
        self.expect_freed(child, model)
        check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', parent]), 'qemu-img check of the parent')

    def test_round_trip_4k_sectors(self):
        # 4 KiB logical sectors, which QEMU does not read: a dynamic image
        # and a differencing child, whose writes of parts of sectors read
        # the rest of the sector (from the parent) first.
        for kind in ('dynamic', 'differencing'):
            base = self.path('4k-%s.vhdx' % kind)
            check_ok(run([MKIMAGE, '--type', 'dynamic', '--size', '24M', '--block-size', '1M',
                          '--logical-sector-size', '4096', '--physical-sector-size', '4096',
                          '--pattern', '0:3M:1', '--pattern', '10M:1M:2', base]), 'vhdx-mkimage')
            image, parent = base, None
            if kind == 'differencing':
                image, parent = self.path('4k-child.vhdx'), base
                check_ok(run([TOOL, 'create', '--parent', parent, image]),
                         'vhdx create --parent')
            model = Model(vhdx_cat(base), vhdxspec.Vhdx(image).block_size, kind)
            self.round_trip(image, model, 4, 250, parent=parent)
            expect_clean(image, qemu=False)
            expect(vhdx_cat(image) == model.data, 'vhdx cat does not read the model')
            self.expect_freed(image, model)

    def test_parts_of_one_sector_at_once(self):
        # Two connections write the two halves of each sector of a
        # differencing child at the same time (the engine writes part of a
        # sector by reading and writing back the whole sector): both halves
        # must land.
        parent = self.path('halves-base.vhdx')
        check_ok(run([MKIMAGE, '--type', 'dynamic', '--size', '16M', '--block-size', '1M',
                      '--pattern', '0:16M:1', parent]), 'vhdx-mkimage')
        child = self.path('halves.vhdx')
        check_ok(run([TOOL, 'create', '--parent', parent, child]), 'vhdx create --parent')
        sectors = 20000
        with Server(self.workdir, ['file=' + child]) as server:
            with Client(server.socket) as a, Client(server.socket) as b:
                a.pwrite(b'\3' * (12 * MiB), 0)
                for sector in range(sectors):
                    a.send(CMD_WRITE, sector * 512, data=b'A' * 256)
                    b.send(CMD_WRITE, sector * 512 + 256, data=b'B' * 256)
                    if sector % 32 == 31 or sector == sectors - 1:
                        for client in (a, b):
                            while client.in_flight:
                                expect_equal(client.receive()[1], 0, 'error of a write')
                disk = a.pread(0, sectors * 512)
        lost = [s for s in range(sectors) if disk[s * 512:(s + 1) * 512] != b'A' * 256 + b'B' * 256]
        expect(not lost, '%d sectors lost half of what was written, the first at %d' % (
            len(lost), lost[0] * 512 if lost else 0))
        expect(vhdx_cat(child)[:sectors * 512] == disk, 'the child does not hold the halves')

    def write_raw(self, name, model):
        path = self.path(name)
        with open(path, 'wb') as f:
            f.write(model.data)
        return path

    def expect_freed(self, image, model):
        """The blocks last trimmed or zeroed whole (without NO_HOLE) take no
        space in @image: their BAT entries, read from the bytes, say so."""
        spec = vhdxspec.Vhdx(image)
        expect(model.freed, 'the workload freed no block')
        stored = [b for b in sorted(model.freed)
                  if spec.payload_entry(b)[0] in (FULLY_PRESENT, PARTIALLY_PRESENT)]
        expect(not stored, 'blocks freed are still stored: %r' % stored)
        print('# %s: %d blocks freed' % (os.path.basename(image), len(model.freed)))

    def test_multi_conn_flush(self):
        # A flush on one connection makes the completed writes of another
        # durable: nbdkit is killed right after it, and the file must hold
        # them, new blocks and all.
        image = self.path('multi.vhdx')
        qemu_create(image, 'dynamic', 32 * MiB, MiB)
        rng = random.Random(7)
        writes = [(offset, rng.randbytes(length)) for offset, length in (
            (0, 4096), (3 * MiB + 512, 200 * KiB), (10 * MiB, 2 * MiB), (31 * MiB, MiB))]
        with Server(self.workdir, ['file=' + image]) as server:
            with Client(server.socket) as a, Client(server.socket) as b:
                for offset, data in writes:
                    a.pwrite(data, offset)
                    expect(b.pread(offset, len(data)) == data,
                           'the other connection does not read the write')
                b.flush()
                server.kill()
        expect_equal(log_state(image), 'replayed-in-memory', 'log state after the kill')
        disk = vhdx_cat(image)
        for offset, data in writes:
            expect(disk[offset:offset + len(data)] == data,
                   'the write at %d was lost despite the flush of the other connection' % offset)

    def test_fast_zero(self):
        dynamic = self.path('fast-dynamic.vhdx')
        qemu_create(dynamic, 'dynamic', 16 * MiB, MiB, [(0x5a, 0, 4 * MiB)])
        fixed = self.path('fast-fixed.vhdx')
        qemu_create(fixed, 'fixed', 8 * MiB, MiB, [(0x5a, 0, 4 * MiB)])
        with Server(self.workdir, ['file=' + dynamic]) as server:
            with Client(server.socket) as c:
                fast = CMD_FLAG_FAST_ZERO
                # Parts of blocks would be written: refused at once, unchanged.
                for offset, length in ((512, 4096), (MiB, MiB + 512), (MiB - 512, MiB)):
                    expect_equal(c.error_of(CMD_WRITE_ZEROES, offset, length, flags=fast),
                                 nbdclient.ENOTSUP, 'fast zero of %d+%d' % (offset, length))
                expect(c.pread(0, 4 * MiB) == b'\x5a' * (4 * MiB), 'a refused zero wrote')
                # Stored blocks that must stay allocated (NO_HOLE): refused.
                expect_equal(c.error_of(CMD_WRITE_ZEROES, 0, MiB, flags=fast | CMD_FLAG_NO_HOLE),
                             nbdclient.ENOTSUP, 'fast zero of a stored block, NO_HOLE')
                # Whole blocks that may be freed, or are not stored: done.
                c.zero(MiB, 2 * MiB, flags=fast)
                c.zero(8 * MiB, 4 * MiB, flags=fast | CMD_FLAG_NO_HOLE)
                expect(c.pread(0, 4 * MiB) == b'\x5a' * MiB + bytes(2 * MiB) + b'\x5a' * MiB,
                       'fast zero did not zero')
                # Without FAST_ZERO, any range is zeroed.
                c.zero(512, 4096)
                expect(c.pread(0, 8192) == b'\x5a' * 512 + bytes(4096) + b'\x5a' * 3584,
                       'zero of part of a block')
        expect_clean(dynamic)
        expect_equal(sorted(vhdxspec.Vhdx(dynamic).stored_blocks()), [0, 3],
                     'blocks stored after the fast zeroes')
        with Server(self.workdir, ['file=' + fixed]) as server:
            with Client(server.socket) as c:
                expect_equal(c.error_of(CMD_WRITE_ZEROES, 0, 2 * MiB, flags=CMD_FLAG_FAST_ZERO),
                             nbdclient.ENOTSUP, 'fast zero of a fixed image')
                c.zero(0, 2 * MiB)
                expect(c.pread(0, 4 * MiB) == bytes(2 * MiB) + b'\x5a' * (2 * MiB),
                       'zero of a fixed image')
        expect_clean(fixed)

    def test_qemu_clients(self):
        # qemu-io and qemu-img write through the plugin as any client would.
        image = self.path('qemu-client.vhdx')
        size = 32 * MiB
        qemu_create(image, 'dynamic', size, 2 * MiB)
        source = self.path('qemu-source.raw')
        rng = random.Random(11)
        with open(source, 'wb') as f:
            f.truncate(size)
            for offset, length in ((0, MiB), (5 * MiB + 4096, 3 * MiB), (30 * MiB, 2 * MiB)):
                f.seek(offset)
                f.write(rng.randbytes(length))
        with Server(self.workdir, ['file=' + image]) as server:
            # Pre-zeroing, zero detection and holes: qemu-img's own choices.
            check_ok(run([QEMU_IMG, 'convert', '-n', '-f', 'raw', '-O', 'raw', source,
                          server.uri]), 'qemu-img convert into the export')
            check_ok(run([QEMU_IO, '-f', 'raw', '-c', 'write -P 0xcd 12M 1536K',
                          '-c', 'write -z 5M 1M', '-c', 'write -z -u 30M 2M', '-c', 'flush',
                          server.uri]), 'qemu-io')
            check_ok(run([QEMU_IO, '-f', 'raw', '-r', '-c', 'read -P 0xcd 12M 1536K',
                          '-c', 'read -P 0 5M 1M', '-c', 'read -P 0 30M 2M', server.uri]),
                     'qemu-io reading back')
        with open(source, 'r+b') as f:
            f.seek(12 * MiB)
            f.write(b'\xcd' * (1536 * KiB))
            f.seek(5 * MiB)
            f.write(bytes(MiB))
            f.seek(30 * MiB)
            f.write(bytes(2 * MiB))
        expect_clean(image)
        check_ok(run([QEMU_IMG, 'compare', '-f', 'vhdx', '-F', 'raw', image, source]),
                 'qemu-img compare')

    def test_read_only_server(self):
        image = self.path('ro.vhdx')
        qemu_create(image, 'dynamic', 16 * MiB, MiB, [(0x99, MiB, MiB)])
        before = sha256_file(image)
        with Server(self.workdir, ['file=' + image], options=['-r']) as server:
            self.expect_refuses_writes(server)
        expect_equal(sha256_file(image), before, 'sha256 of the image served with -r')

    def test_cow_filter(self):
        # nbdkit-cow-filter opens the plugin read-only: clients write to
        # its overlay, and the image is left as it was.
        if run([NBDKIT, '--filter=cow', 'null', '--dump-plugin']).returncode != 0:
            raise Skip('nbdkit has no cow filter')
        image = self.path('cow.vhdx')
        qemu_create(image, 'dynamic', 16 * MiB, MiB, [(0x99, MiB, MiB)])
        before = sha256_file(image)
        with Server(self.workdir, ['file=' + image], options=['--filter=cow', '-v']) as server:
            with Client(server.socket) as c:
                expect(not c.has(nbdclient.FLAG_READ_ONLY), 'the overlay is read-only')
                c.pwrite(b'\1' * 4096, MiB)
                c.flush()
                expect(c.pread(MiB, 8192) == b'\1' * 4096 + b'\x99' * 4096, 'the overlay')
            output = server.stop()
        expect('read-only' in output, 'the plugin was not opened read-only: %s' % output)
        expect_equal(sha256_file(image), before, 'sha256 of the image under the cow filter')

    def expect_refuses_writes(self, server):
        with Client(server.socket) as c:
            expect(c.has(nbdclient.FLAG_READ_ONLY), 'the export is not read-only')
            for command, data in ((CMD_WRITE, b'\1' * 4096), (CMD_WRITE_ZEROES, None),
                                  (CMD_TRIM, None)):
                expect_equal(c.error_of(command, MiB, 4096, data), nbdclient.EPERM,
                             'error of %s' % nbdclient.COMMAND_NAMES[command])
            c.flush()
            expect(c.pread(MiB, 4096) == b'\x99' * 4096, 'the disk changed')
        result = run([QEMU_IO, '-f', 'raw', '-c', 'write -P 1 0 4096', server.uri])
        expect(result.returncode != 0 or b'failed' in result.stdout + result.stderr,
               'qemu-io wrote to a read-only export')
        expect(server.alive(), 'nbdkit died')

    def test_fallback_to_read_only(self):
        # A file that may not be written is served read-only, its log
        # replayed in memory, as nbdkit's file plugin falls back.  Root may
        # write any file, so the server runs as nobody then.
        need(('qemu-io', QEMU_IO))
        prefix = []
        rundir = self.path('fallback')
        os.mkdir(rundir)
        if os.geteuid() == 0:
            need(('setpriv', SETPRIV))
            prefix = [SETPRIV, '--reuid=65534', '--regid=65534', '--clear-groups']
            os.chmod(self.workdir, 0o755)
            os.chmod(rundir, 0o777)
            probe = run(prefix + ['test', '-r', os.environ['VHDX_NBDKIT_PLUGIN']])
            if probe.returncode != 0:
                raise Skip('nobody (uid 65534) cannot read the plugin or run setpriv')
        made = os.path.join(rundir, 'fallback-made.json')
        image = os.path.join(rundir, 'fallback.vhdx')
        raw = os.path.join(rundir, 'fallback.raw')
        check_ok(run([MKIMAGE, '--type', 'dynamic', '--size', '16M', '--block-size', '1M',
                      '--pattern', '%d:%d:3' % (MiB, MiB), '--dirty-block', '6',
                      '--raw', raw, '--describe', made, image]), 'vhdx-mkimage')
        with open(raw, 'rb') as f:
            expected = f.read()
        os.chmod(image, 0o444)
        before = sha256_file(image)
        with Server(self.workdir, ['file=' + image], options=['-v'], prefix=prefix,
                    rundir=rundir, foreground=True) as server:
            with Client(server.socket) as c:
                expect(c.has(nbdclient.FLAG_READ_ONLY), 'the export is not read-only')
                expect(read_all(c, len(expected)) == expected,
                       'the disk, its log replayed in memory, is not the expected one')
                for command, data in ((CMD_WRITE, b'\1' * 4096), (CMD_WRITE_ZEROES, None),
                                      (CMD_TRIM, None)):
                    expect_equal(c.error_of(command, MiB, 4096, data), nbdclient.EPERM,
                                 'error of %s' % nbdclient.COMMAND_NAMES[command])
            output = server.stop()
        expect('cannot be opened for writing' in output,
               'no debug message about the fallback: %s' % output)
        expect_equal(sha256_file(image), before, 'sha256 of the image served read-only')
        expect_equal(log_state(image), 'replayed-in-memory', 'log state of the image')

    def test_locked_by_qemu(self):
        # qemu-nbd writes the image: nbdkit does not start, with -r or
        # without, unless force-share=true shares it with -r.  qemu-nbd only
        # reads it: nbdkit serves it read-only, and refuses connections that
        # may write.
        need(('qemu-nbd', QEMU_NBD))
        image = self.path('qemu-locked.vhdx')
        qemu_create(image, 'dynamic', 64 * MiB, MiB, writes=[(0x5a, 0, MiB)])
        written = random.Random(31).randbytes(MiB)
        with QemuNbd(self.workdir, image) as qemu:
            with Client(qemu.socket) as c:
                c.pwrite(written, 8 * MiB)
                c.flush()
                output = nbdkit_refuses(self.workdir, ['file=' + image])
                expect('Another process has the image open' in output,
                       'a writable nbdkit does not say that the image is in use: %s' % output)
                output = nbdkit_refuses(self.workdir, ['file=' + image], ['-r'])
                expect('another process is writing the image' in output
                       and 'force-share=true' in output,
                       'nbdkit -r does not say that the image is locked: %s' % output)
                with Server(self.workdir, ['file=' + image, 'force-share=true'],
                            options=['-r']) as server:
                    with Client(server.socket) as shared:
                        expect(shared.has(nbdclient.FLAG_READ_ONLY), 'the export is writable')
                        expect(shared.pread(0, MiB) == b'\x5a' * MiB,
                               'the data that QEMU wrote before it served the image')
                        expect(shared.pread(8 * MiB, MiB) == written,
                               'the data that qemu-nbd wrote and flushed')
                        expect(shared.pread(16 * MiB, MiB) == bytes(MiB), 'an unwritten block')
                    output = server.stop()
                expect('warning: another process is writing' in output,
                       'no warning that the image is written elsewhere: %s' % output)
                # force-share=true without -r: nbdkit starts (it takes no
                # lock) and refuses every connection.
                with Server(self.workdir, ['file=' + image, 'force-share=true']) as server:
                    output = refused_connection(server)
                    expect('force-share=true serves the image read-only only' in output,
                           'the refusal does not name force-share: %s' % output)
                # What qemu-nbd serves is still there for it.
                expect(c.pread(8 * MiB, MiB) == written, 'qemu-nbd reads otherwise')
        check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', image]), 'qemu-img check')

        before = sha256_file(image)
        with QemuNbd(self.workdir, image, ['-r']) as qemu:
            # A writable server would hold a writer's lock from the start:
            # it does not start.
            output = nbdkit_refuses(self.workdir, ['file=' + image])
            expect('Another process has the image open' in output,
                   'the refusal of a writable server says otherwise: %s' % output)
            with Server(self.workdir, ['file=' + image], options=['-r']) as server:
                with Client(server.socket) as c, Client(qemu.socket) as q:
                    expect(c.pread(8 * MiB, MiB) == written == q.pread(8 * MiB, MiB),
                           'nbdkit -r and qemu-nbd -r read otherwise')
        expect_equal(sha256_file(image), before, 'sha256 of the image that qemu-nbd -r served')

    def test_locked_by_the_plugin(self):
        # While nbdkit may serve the image for writing, a second nbdkit and
        # QEMU are kept out, with a client and without, unless the second
        # nbdkit shares the image (force-share=true; QEMU's -U reads it too).
        # Once no client writes, the image is closed cleanly (what QEMU
        # reads with -U) and the writer's lock kept.
        image = self.path('plugin-locked.vhdx')
        qemu_create(image, 'dynamic', 64 * MiB, MiB)
        written = random.Random(37).randbytes(2 * MiB)

        def expect_kept_out(when):
            output = nbdkit_refuses(self.workdir, ['file=' + image], ['-r'])
            expect('another process is writing the image' in output,
                   'a second nbdkit -r %s does not say that the image is locked: %s'
                   % (when, output))
            output = nbdkit_refuses(self.workdir, ['file=' + image])
            expect('Another process has the image open' in output,
                   'a second writable nbdkit %s does not say that the image is in use: %s'
                   % (when, output))
            result = run([QEMU_IMG, 'info', '-f', 'vhdx', image])
            expect(result.returncode != 0 and b'Failed to get shared "write" lock'
                   in result.stderr,
                   'qemu-img info opened the image %s: %r' % (when, result.stderr))

        with Server(self.workdir, ['file=' + image], options=['-v'], foreground=True) as writer:
            expect_kept_out('before any client')
            with Client(writer.socket) as c:
                c.pwrite(written, 3 * MiB)
                c.flush()
                expect_kept_out('while a client writes')
                with Server(self.workdir, ['file=' + image, 'force-share=true'],
                            options=['-r']) as server:
                    with Client(server.socket) as shared:
                        # The log that the flush committed is replayed in memory.
                        expect(shared.pread(3 * MiB, 2 * MiB) == written,
                               'the flushed data, read by a second nbdkit sharing the image')
                    output = server.stop()
                expect('warning: another process is writing' in output,
                       'no warning that the image is written elsewhere: %s' % output)
            # The last writer closed the image cleanly and opened it
            # read-only again (once nbdkit has run the close of the
            # connection, after the client left).  Hang detector: 60 s.
            for _ in range(1200):
                if 'open read-only again' in writer.output().partition('closed cleanly')[2]:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError('the image was not opened read-only again: %s'
                                     % writer.output())
            expect_kept_out('once no client writes')
            check_ok(run([QEMU_IMG, 'check', '-U', '-f', 'vhdx', image]),
                     'qemu-img check -U once no client writes')
            result = run([QEMU_IO, '-f', 'vhdx', '-c', 'write 0 4096', image])
            expect(result.returncode != 0 and b'lock' in result.stderr,
                   'qemu-io wrote to the image nbdkit serves: %r' % (result.stderr,))
        check_ok(run([QEMU_IO, '-f', 'vhdx', '-c', 'write 0 4096', image]),
                 'qemu-io once nbdkit stopped')

    def test_file_system_full(self):
        # A file system that fills up: writes fail with ENOSPC, the server
        # goes on, and the image keeps what was flushed before.  A small
        # tmpfs is mounted for it, which needs root.
        if os.geteuid() != 0:
            raise Skip('mounting a small file system needs root')
        mountpoint = self.path('full')
        os.mkdir(mountpoint)
        if run(['mount', '-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mountpoint]).returncode:
            raise Skip('cannot mount a tmpfs here')
        try:
            self.fill_up(mountpoint)
        finally:
            check_ok(run(['umount', mountpoint]), 'umount')

    def fill_up(self, directory):
        image = os.path.join(directory, 'full.vhdx')
        qemu_create(image, 'dynamic', 64 * MiB, MiB)
        rng = random.Random(21)
        flushed = rng.randbytes(4 * MiB)
        errors = []
        with Server(self.workdir, ['file=' + image]) as server:
            with Client(server.socket) as c:
                c.pwrite(flushed, 0)
                c.flush()
                for block in range(4, 40):
                    errors.append(c.error_of(CMD_WRITE, block * MiB, data=rng.randbytes(MiB)))
                errors.append(c.error_of(CMD_FLUSH))
                expect(c.pread(0, 4 * MiB) == flushed, 'the first blocks read otherwise')
            output = server.stop()
        expect(nbdclient.ENOSPC in errors, 'no write failed with ENOSPC: %r' % errors)
        expect(set(errors) <= {0, nbdclient.ENOSPC, nbdclient.EIO}, 'errors %r' % errors)
        expect('No space left on device' in output, 'the engine\'s message was not logged: %s'
               % output)
        # What was flushed is there; whatever the state of the log, nothing
        # is corrupt.
        result, report = vhdx_json('check', image)
        check_ok(result, 'vhdx check of the full image')
        expect_equal(report['check-errors'], 0, 'errors found by vhdx check')
        expect(vhdx_cat(image, self.path('full.raw'))[:4 * MiB] == flushed,
               'the data flushed before the file system filled up is lost')

    def test_requests_outside_the_disk(self):
        # nbdkit answers these itself, before the plugin.
        image = self.path('bounds.vhdx')
        qemu_create(image, 'dynamic', 8 * MiB, MiB)
        with Server(self.workdir, ['file=' + image]) as server:
            with Client(server.socket) as c:
                expect_equal(c.error_of(CMD_WRITE, 8 * MiB - 512, data=bytes(1024)),
                             nbdclient.ENOSPC, 'write past the end')
                expect_equal(c.error_of(CMD_WRITE_ZEROES, 8 * MiB, 512), nbdclient.ENOSPC,
                             'zero past the end')
                expect_equal(c.error_of(CMD_READ, 8 * MiB, 512), nbdclient.EINVAL,
                             'read past the end')
                expect_equal(c.error_of(CMD_TRIM, 8 * MiB - 512, 1024), nbdclient.EINVAL,
                             'trim past the end')
                c.pwrite(b'\7' * 512, 8 * MiB - 512)
                expect(c.pread(8 * MiB - 512, 512) == b'\7' * 512, 'the last sector')
        expect_clean(image)


# Killing the server.

KILL_ROUNDS = int(os.environ.get('VHDX_KILL_ROUNDS', '100'))
KILL_SEED = int(os.environ.get('VHDX_KILL_SEED', '20240611'))
KILL_SIZE = 64 * MiB
UNIT = 4 * KiB
ZERO_UNIT = bytes(UNIT)


class CrashModel:
    """What each 4 KiB unit of the disk may hold after a crash: the value
    that the last completed flush made durable (or a write with FUA whose
    reply came), or any value sent after it.  Value 0 is what the disk
    read before the workload (zeros, or a parent's data), ZEROS is zeros,
    and the others are writes, (offset, data)."""

    ZEROS = -1

    def __init__(self, size, block_size, base=None):
        self.size = size
        self.block_size = block_size
        self.base = base      # the parent's disk, or None: zeros
        self.durable = {}     # unit -> value; absent: 0
        self.current = {}     # unit -> value of the last request sent
        self.since = {}       # unit -> values sent since it was made durable
        self.touched = set()  # blocks written or zeroed
        self.values = {}
        self.next_value = 1
        self.cut_short = set()  # units that requests in flight at the kill cover
        self.torn_sectors = 0

    def in_flight_at_kill(self, ranges):
        for start, end in ranges:
            self.cut_short.update(self._units(start, end - start))

    def _units(self, offset, length):
        return range(offset // UNIT, (offset + length + UNIT - 1) // UNIT)

    def _send(self, offset, length, value):
        for unit in self._units(offset, length):
            self.since.setdefault(unit, []).append(value)
            self.current[unit] = value

    def _touch(self, offset, length):
        self.touched.update(range(offset // self.block_size,
                                  (offset + length - 1) // self.block_size + 1))

    def write(self, offset, data):
        value = self.next_value
        self.next_value += 1
        self.values[value] = (offset, data)
        self._send(offset, len(data), value)
        self._touch(offset, len(data))
        return value

    def zero(self, offset, length):
        self._send(offset, length, self.ZEROS)
        self._touch(offset, length)

    def trim(self, offset, length):
        # The blocks covered read as zeros, the rest is unchanged; in a
        # differencing image, blocks never written nor zeroed stay the
        # parent's.
        for block in whole_blocks(offset, length, self.block_size, self.size):
            if self.base is not None and block not in self.touched:
                continue
            start = block * self.block_size
            self._send(start, min(self.block_size, self.size - start), self.ZEROS)

    def flushed(self):
        """A flush completed, sent once every earlier request had its reply."""
        self.durable.update(self.current)
        self.since.clear()

    def fua_done(self, offset, length, value):
        """A write with FUA, sent alone, was acknowledged."""
        for unit in self._units(offset, length):
            self.durable[unit] = value
            self.current[unit] = value
            self.since.pop(unit, None)

    def sector(self, value, unit, index):
        return self.unit(value, unit)[index * 512:(index + 1) * 512]

    def unit(self, value, unit):
        if value == self.ZEROS or (value == 0 and self.base is None):
            return ZERO_UNIT
        if value == 0:
            return self.base[unit * UNIT:(unit + 1) * UNIT]
        offset, data = self.values[value]
        start = unit * UNIT - offset
        return data[start:start + UNIT]

    def check(self, disk):
        """Raise unless every sector of @disk (a bytearray) is allowed.  Returns how many
        units read as a value sent after the last flush that covers them."""
        newer = 0
        units = sorted(set(self.durable) | set(self.since))
        # Every unit never written reads as before: zeros (counted in
        # place), or the parent's data (compared a MiB at a time: the
        # disk is not copied whole).
        position = 0
        for start in [u * UNIT for u in units] + [self.size]:
            if self.base is None:
                same = disk.count(0, position, start) == start - position
            else:
                same = all(disk[o:min(o + MiB, start)] == self.base[o:min(o + MiB, start)]
                           for o in range(position, start, MiB))
            if not same:
                raise AssertionError('bytes never written changed between %d and %d'
                                     % (position, start))
            position = start + UNIT
        for unit in units:
            allowed = [self.durable.get(unit, 0)] + self.since.get(unit, [])
            found = disk[unit * UNIT:(unit + 1) * UNIT]
            if found == self.unit(allowed[0], unit):
                continue
            if any(found == self.unit(v, unit) for v in allowed[1:]):
                newer += 1
                continue
            # Sector by sector: a request cut short by the kill.
            seen_newer = False
            for index in range(UNIT // 512):
                start = unit * UNIT + index * 512
                found = bytes(disk[start:start + 512])
                matching = [v for v in allowed if self.sector(v, unit, index) == found]
                if not matching and unit in self.cut_short and self.torn(found, allowed, unit,
                                                                         index):
                    self.torn_sectors += 1
                    matching = [None]
                if not matching:
                    raise AssertionError(
                        'sector at %d holds none of the values allowed (durable: %r, '
                        'sent since: %r%s)' % (start, allowed[0], allowed[1:],
                                               ', in flight at the kill'
                                               if unit in self.cut_short else ''))
                if allowed[0] not in matching:
                    seen_newer = True
            newer += seen_newer
        return newer

    def torn(self, found, allowed, unit, index):
        """Whether @found is a value cut short by the kill: its first bytes
        from one allowed value, the rest from another.  The kernel may stop
        a write of a killed process at any byte (where a page of the buffer
        written from had to be faulted in), not only at a sector."""
        sectors = [self.sector(v, unit, index) for v in allowed]
        for new in sectors:
            split = next((i for i in range(512) if found[i] != new[i]), 512)
            if any(found[split:] == old[split:] for old in sectors):
                return True
        return False


class KillTests:
    def __init__(self, workdir):
        self.workdir = workdir
        # The disk read after each kill, and after the repair: allocated
        # once, as fresh memory is slow to come by on a busy machine.
        self.disk = bytearray(KILL_SIZE)
        self.repaired = bytearray(KILL_SIZE)

    def path(self, name):
        return os.path.join(self.workdir, name)

    def test_kill_rounds(self):
        need(('qemu-img', QEMU_IMG))
        size = KILL_SIZE
        totals = {'rounds': 0, 'differencing': 0, 'at close': 0, 'closed first': 0,
                  'dirty': 0, 'in flight': 0, 'flushes': 0, 'requests': 0, 'newer units': 0,
                  'torn sectors': 0, 'repaired': 0}
        for number in range(KILL_ROUNDS):
            self.kill_round(number, size, totals)
        print('# %d rounds (seed %d; %d on differencing children, %d killed as the clients '
              'left, of which %d after a clean close): %d with a dirty log at the kill, %d '
              'repaired by vhdx check --repair; %d requests, %d flushes completed, %d requests '
              'in flight at the kills, %d units reading a value newer than their last flush, '
              '%d sectors holding a request cut short'
              % (totals['rounds'], KILL_SEED, totals['differencing'], totals['at close'],
                 totals['closed first'], totals['dirty'], totals['repaired'],
                 totals['requests'], totals['flushes'], totals['in flight'],
                 totals['newer units'], totals['torn sectors']))
        expect(totals['dirty'] > 0, 'no round left a dirty log')

    def kill_round(self, number, size, totals):
        """A dynamic image made by QEMU, or (every fourth round) a
        differencing child of a parent that holds data."""
        rng = random.Random(KILL_SEED * 1000 + number)
        image = self.path('kill.vhdx')
        if os.path.exists(image):
            os.unlink(image)
        differencing = number % 4 == 3
        if differencing:
            parent = self.parent(size)
            check_ok(run([TOOL, 'create', '--parent', parent, image]), 'vhdx create --parent')
            model = CrashModel(size, vhdxspec.Vhdx(image).block_size, self.parent_disk)
            totals['differencing'] += 1
        else:
            check_ok(run([QEMU_IMG, 'create', '-q', '-f', 'vhdx', '-o',
                          'subformat=dynamic,block_size=%d' % MiB, image, size]),
                     'qemu-img create')
            model = CrashModel(size, MiB)
        kill_after = rng.randint(1, 48)
        # One round in eight, the clients disconnect after their requests
        # and nbdkit is killed at once: while it closes the image.
        at_close = rng.random() < 0.125
        what = 'round %d (seed %d, %s, kill %s %d requests)' % (
            number, KILL_SEED, 'differencing' if differencing else 'dynamic',
            'at the close after' if at_close else 'after', kill_after)
        server = Server(self.workdir, ['file=' + image])
        try:
            clients = [Client(server.socket), Client(server.socket)]
            pipeline = Pipeline(clients)
            sent = 0
            try:
                while sent < kill_after:
                    sent += 1
                    last = sent == kill_after and not at_close
                    self.kill_request(rng, pipeline, model, totals, last=last)
                if at_close:
                    pipeline.drain()
                    for client in clients:
                        client.close()
                    server.kill()
                    totals['at close'] += 1
                else:
                    totals['in flight'] += pipeline.in_flight()
                    model.in_flight_at_kill((s, e) for s, e, _ in pipeline.ranges.values())
                    server.kill()
                    # The client sees the connection go.
                    try:
                        pipeline.drain()
                        clients[0].request(CMD_READ, 0, 512)
                    except Disconnected:
                        pass
                    else:
                        raise AssertionError('%s: no disconnect after the kill' % what)
            except Disconnected:
                raise AssertionError('%s: disconnected before the kill' % what)
            for client in clients:
                client.sock.close()
        finally:
            if server.alive():
                server.kill()
        totals['rounds'] += 1
        totals['requests'] += sent

        try:
            dirty = self.check_after_kill(image, model, totals, differencing)
        except AssertionError as e:
            raise AssertionError('%s: %s' % (what, e))
        if at_close and not dirty:
            totals['closed first'] += 1

    def parent(self, size):
        """The parent of the differencing rounds, made once: data in some
        blocks, parts of others, nothing in the rest."""
        path = self.path('kill-parent.vhdx')
        if not os.path.exists(path):
            check_ok(run([MKIMAGE, '--type', 'dynamic', '--size', str(size), '--block-size',
                          '1M', '--pattern', '0:6M:11', '--pattern', '20M:3M:12',
                          '--pattern', '%d:%d:13' % (33 * MiB + 512, 5 * MiB),
                          '--pattern', '%d:1M:14' % (size - MiB), path]), 'vhdx-mkimage')
            self.parent_disk = vhdx_cat(path)
            self.parent_sha256 = sha256_file(path)
        return path

    def kill_request(self, rng, pipeline, model, totals, last):
        """Send one random request; the last one is not waited for."""
        size = model.size
        bs = model.block_size
        conn = rng.randrange(len(pipeline.clients))
        r = rng.random()
        length = UNIT * rng.randint(1, MiB // UNIT)
        offset = UNIT * rng.randrange((size - length) // UNIT + 1)
        if r < 0.60:
            data = rng.randbytes(length)
            model.write(offset, data)
            pipeline.submit(conn, CMD_WRITE, offset, length, data, 0, expect_success('write'))
        elif r < 0.67:
            data = rng.randbytes(length)
            pipeline.drain()
            value = model.write(offset, data)
            done = []
            pipeline.submit(conn, CMD_WRITE, offset, length, data, CMD_FLAG_FUA,
                            lambda error, _: done.append(error))
            if not last:
                pipeline.drain()
                expect_equal(done, [0], 'error of a write with FUA')
                model.fua_done(offset, length, value)
        elif r < 0.75:
            flags = rng.choice([0, CMD_FLAG_NO_HOLE])
            model.zero(offset, length)
            pipeline.submit(conn, CMD_WRITE_ZEROES, offset, length, None, flags,
                            expect_success('zero'))
        elif r < 0.80:
            first = rng.randrange(size // bs)
            n = min(rng.randint(1, 2), size // bs - first)
            model.trim(first * bs, n * bs)
            pipeline.submit(conn, CMD_TRIM, first * bs, n * bs, None, 0, expect_success('trim'))
        else:
            done = []
            pipeline.submit(conn, CMD_FLUSH, 0, 0, None, 0, lambda error, _: done.append(error),
                            barrier=True)
            if not last:
                pipeline.drain()
                expect_equal(done, [0], 'error of a flush')
                model.flushed()
                totals['flushes'] += 1

    def check_after_kill(self, image, model, totals, differencing):
        result, info = vhdx_json('info', image)
        check_ok(result, 'vhdx info after the kill')
        state = info['format-specific']['data']['log-state']
        expect(state in ('clean', 'replayed-in-memory'), 'log state %r' % state)
        dirty = state == 'replayed-in-memory'
        totals['dirty'] += dirty
        # Read-only: a pending log is a warning, nothing is corrupt.
        result, report = vhdx_json('check', image)
        check_ok(result, 'vhdx check after the kill')
        expect_equal(report['check-errors'], 0, 'errors found by vhdx check')
        if dirty:
            expect(any(p['structure'] == 'log' for p in report['problems']),
                   'vhdx check does not report the pending log: %r' % report['problems'])
        raw = self.path('kill.raw')
        disk = vhdx_cat(image, raw, into=self.disk)
        totals['newer units'] += model.check(disk)
        totals['torn sectors'] += model.torn_sectors

        result, report = vhdx_json('check', image, '--repair')
        check_ok(result, 'vhdx check --repair')
        expect_equal(report['check-errors'], 0, 'errors found by vhdx check --repair')
        expect_equal(report['log-replayed'] is not None, dirty, 'vhdx check --repair replayed')
        totals['repaired'] += report['log-replayed'] is not None
        expect_equal(log_state(image), 'clean', 'log state after the repair')
        if differencing:
            # QEMU does not read differencing images; the parent must not change.
            expect_equal(sha256_file(self.path('kill-parent.vhdx')), self.parent_sha256,
                         'sha256 of the parent')
        else:
            check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', image]),
                     'qemu-img check after repair')
            # QEMU reads the repaired image as we read the image with its log.
            check_ok(run([QEMU_IMG, 'compare', '-q', '-f', 'vhdx', '-F', 'raw', image, raw]),
                     'qemu-img compare of the repaired image with the read before the repair')
        expect(vhdx_cat(image, raw, into=self.repaired) == disk,
               'the repaired image reads otherwise')
        return dirty


# guestfish writing ext4 file systems.

def decompress_sample(name, destination):
    samples = os.path.join(SHARED_DIR, 'samples') if SHARED_DIR else None
    source = os.path.join(samples, name + '.bz2') if samples else None
    if not source or not os.path.isfile(source):
        return None
    with bz2.open(source, 'rb') as src, open(destination, 'wb') as dst:
        shutil.copyfileobj(src, dst, MiB)
    return destination


def mbr_partition(raw_path, number=1):
    """(start, length) in bytes of MBR partition @number of a raw disk."""
    with open(raw_path, 'rb') as f:
        mbr = f.read(512)
    expect_equal(mbr[510:512], b'\x55\xaa', 'MBR signature of %s' % raw_path)
    entry = 446 + 16 * (number - 1)
    start, sectors = struct.unpack_from('<II', mbr, entry + 8)
    return start * 512, sectors * 512


def extract(raw_path, start, length, destination):
    with open(raw_path, 'rb') as src, open(destination, 'wb') as dst:
        src.seek(start)
        remaining = length
        while remaining:
            chunk = src.read(min(remaining, 4 * MiB))
            expect(chunk, 'raw disk %s ends early' % raw_path)
            dst.write(chunk)
            remaining -= len(chunk)
    return destination


class Disk:
    """A drive of the guestfish session: its image, where the file system
    goes, the files written, and how it is checked afterwards."""

    def __init__(self, name, image, device, partition, files, parent=None):
        self.name = name
        self.image = image
        self.device = device        # /dev/sdX, whole disk
        self.partition = partition  # None: the file system on the whole disk; else 1
        self.files = files
        self.parent = parent
        self.parent_sha256 = sha256_file(parent) if parent else None

    @property
    def fs_device(self):
        return self.device + ('%d' % self.partition if self.partition else '')


class LibguestfsTests:
    def __init__(self, workdir):
        self.workdir = workdir
        self.session = None  # the disks written, or the reason why none were

    def path(self, name):
        return os.path.join(self.workdir, name)

    def test_guestfish_writes_ext4(self):
        need(('guestfish', GUESTFISH), ('qemu-img', QEMU_IMG), ('e2fsck', E2FSCK),
             ('debugfs', DEBUGFS))
        rng = random.Random(5)
        disks = []
        letters = iter('abcdefgh')

        def files(tag):
            return {
                '/hello.txt': ('Hello from %s through NBD\n' % tag).encode(),
                '/docs/numbers.txt': b''.join(b'%d %s\n' % (i, tag.encode())
                                              for i in range(30000)),
                '/random.bin': rng.randbytes(3 * MiB + 777),
            }

        # An empty dynamic image made by QEMU: a partition table and ext4.
        empty = self.path('empty.vhdx')
        check_ok(run([QEMU_IMG, 'create', '-q', '-f', 'vhdx', '-o', 'subformat=dynamic',
                      empty, 128 * MiB]), 'qemu-img create')
        disks.append(Disk('empty dynamic image', empty, '/dev/sd' + next(letters), 1,
                          files('an empty image')))
        # A child of the Hyper-V sample, whose disk holds a byte pattern but
        # no file system: ext4 on the whole disk of the child.
        hyperv = decompress_sample('iotest-dynamic-1G.vhdx', self.path('hyperv-base.vhdx'))
        if hyperv:
            child = self.path('hyperv-child.avhdx')
            check_ok(run([TOOL, 'create', '--parent', hyperv, child]), 'vhdx create --parent')
            disks.append(Disk('child of the Hyper-V sample', child, '/dev/sd' + next(letters),
                              None, files('a Hyper-V child'), parent=hyperv))
        # A child of the Disk2VHD sample, whose MBR names one (empty)
        # partition: ext4 in that partition, the partition table kept.
        d2v = decompress_sample('test-disk2vhd.vhdx', self.path('disk2vhd-base.vhdx'))
        if d2v:
            child = self.path('disk2vhd-child.avhdx')
            check_ok(run([TOOL, 'create', '--parent', d2v, child]), 'vhdx create --parent')
            disks.append(Disk('child of the Disk2VHD sample', child, '/dev/sd' + next(letters),
                              1, files('a Disk2VHD child'), parent=d2v))

        servers = []
        try:
            for disk in disks:
                servers.append(Server(self.workdir, ['file=' + disk.image]))
            args = ['--format=raw']
            for server in servers:
                args += ['-a', 'nbd://?socket=' + server.socket]
            script = ['run']
            for disk in disks:
                if disk.partition and disk.parent is None:
                    script.append('part-disk %s mbr' % disk.device)
                script += ['mkfs ext4 %s' % disk.fs_device,
                           'mount %s /' % disk.fs_device,
                           'mkdir /docs']
                for name, data in disk.files.items():
                    if name == '/hello.txt':
                        script.append('write %s "%s"' % (
                            name, data.decode().replace('\n', '\\n')))
                    else:
                        local = disk.image + '-' + os.path.basename(name)
                        with open(local, 'wb') as f:
                            f.write(data)
                        script.append('upload %s %s' % (local, name))
                script += ['umount /']
            result = guestfish(['-x'] + args, input=('\n'.join(script) + '\n').encode())
            if result.returncode != 0:
                skip_unless_appliance_runs()
                check_ok(result, 'guestfish')
            for server in servers:
                output = server.stop()
                expect('error' not in output, 'nbdkit logged an error: %s' % output)
        finally:
            for server in servers:
                if server.alive():
                    server.kill()
        # The transcript: the commands of the script and what they returned.
        print('# guestfish -x %s' % ' '.join(args))
        commands = {line.split()[0].replace('-', '_') for line in script}
        for line in result.stderr.decode(errors='replace').splitlines():
            words = line.split()
            if line.startswith('libguestfs: trace: ') and words[2] in commands:
                print('#   ' + line[len('libguestfs: trace: '):])
        self.session = disks

    def expect_written(self, disk):
        """The file system of @disk is sound and holds its files."""
        raw = disk.image + '.raw'
        if disk.parent:
            expect_equal(sha256_file(disk.parent), disk.parent_sha256,
                         'sha256 of the parent %s' % disk.parent)
            expect_clean(disk.image, qemu=False)
            check_ok(run([TOOL, 'convert', '-O', 'raw', disk.image, raw]), 'vhdx convert')
            # What the child does not store still reads as the parent's.
            self.expect_parent_shows(disk, raw)
        else:
            expect_clean(disk.image)
            check_ok(run([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', disk.image, raw]),
                     'qemu-img convert')
        if disk.partition:
            start, length = mbr_partition(raw, disk.partition)
            fs = extract(raw, start, length, raw + '.part')
        else:
            fs = raw
        fsck = run([E2FSCK, '-fn', fs])
        lines = (fsck.stdout + fsck.stderr).decode(errors='replace').strip().splitlines()
        for line in lines:
            print('# e2fsck: ' + line)
        expect_equal(fsck.returncode, 0, 'e2fsck -fn exit status')
        for name, data in disk.files.items():
            out = self.path('dumped.bin')
            if os.path.exists(out):
                os.unlink(out)
            check_ok(run([DEBUGFS, '-R', 'dump %s %s' % (name, out), fs]), 'debugfs dump')
            with open(out, 'rb') as f:
                expect(f.read() == data, '%s of %s does not hold what was written' % (
                    name, disk.name))
        print('# %s: %d files read back with debugfs' % (disk.name, len(disk.files)))

    def expect_parent_shows(self, disk, raw):
        parent_raw = disk.parent + '.raw'
        if not os.path.exists(parent_raw):
            check_ok(run([TOOL, 'convert', '-O', 'raw', disk.parent, parent_raw]),
                     'vhdx convert of the parent')
        extents = json.loads(check_ok(run([TOOL, 'map', '--json', disk.image]),
                                      'vhdx map').stdout)
        inherited = 0
        with open(raw, 'rb') as child, open(parent_raw, 'rb') as parent:
            for e in extents:
                if e['depth'] == 0:
                    continue
                child.seek(e['start'])
                parent.seek(e['start'])
                expect(child.read(e['length']) == parent.read(e['length']),
                       'the child does not read its parent at %d' % e['start'])
                inherited += e['length']
        expect(inherited > 0, 'the child stores its whole disk')
        print('# %s: %d bytes still read from the parent' % (disk.name, inherited))

    def disk(self, name):
        if self.session is None:
            raise Skip('the guestfish session did not run')
        for disk in self.session:
            if disk.name == name:
                return disk
        raise Skip('no such sample in %s' % (
            os.path.join(SHARED_DIR, 'samples') if SHARED_DIR else '$VHDX_SHARED_DIR/samples'))

    def test_ext4_in_empty_dynamic_image(self):
        self.expect_written(self.disk('empty dynamic image'))

    def test_ext4_in_child_of_hyperv_sample(self):
        self.expect_written(self.disk('child of the Hyper-V sample'))

    def test_ext4_in_child_of_disk2vhd_sample(self):
        disk = self.disk('child of the Disk2VHD sample')
        self.expect_written(disk)
        # The partition table is the parent's, untouched.
        with open(disk.parent + '.raw', 'rb') as f:
            mbr = f.read(512)
        with open(disk.image + '.raw', 'rb') as f:
            expect(f.read(512) == mbr, 'the MBR of the child differs from its parent\'s')


if __name__ == '__main__':
    if '--libguestfs' in sys.argv[1:]:
        suite = LibguestfsTests
    elif '--kill' in sys.argv[1:]:
        suite = KillTests
    else:
        suite = Tests
    sys.exit(main(suite, 'vhdx-test-nbdkit-write-'))
