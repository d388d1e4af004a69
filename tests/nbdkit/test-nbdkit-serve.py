#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# How nbdkit runs the plugin, printed as TAP: every way nbdkit(1) starts a
# plugin, and the locks a server holds from the moment it serves.
#
# - Captive (--run), as the README and nbdkit-vhdx-plugin(1) show it: nbdcopy,
#   `qemu-img convert` to qcow2 and a qemu-io write through a writable
#   server on a Unix socket of its own (-U -), and a client over TCP on
#   127.0.0.1; what they read or wrote is compared with QEMU's own reading
#   of the image (`qemu-img compare`, `qemu-img convert -O raw`).
# - In the background (nbdkit's default: it forks and its first process
#   exits), and serving one connection on standard input and output (-s, as
#   libguestfs and virt-v2v start it).
# - Locks from the start: while a writable server has no client, `qemu-img
#   info` fails with QEMU's own lock message and a second server does not
#   start; a read-only one (-r in each of its spellings) lets QEMU read.
# - An image whose BAT gives two blocks the same file space (damage that
#   `vhdx check` reports): a writable server does not start, and the image
#   reads as before, through `nbdkit -r` and through QEMU.
#
# Environment: VHDX_NBDKIT_PLUGIN, VHDX_TOOL, VHDX_MKIMAGE (see nbdtest.py).

import os
import random
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'common'))
import nbdclient  # noqa: E402
import vhdxspec  # noqa: E402
from nbdclient import Client  # noqa: E402
from nbdtest import (  # noqa: E402
    ASAN_RUNTIME, Captive, MiB, NBDCOPY, NBDINFO, NBDKIT, PLUGIN, QEMU_IMG, QEMU_IO, TOOL,
    Server, check_ok, expect, expect_equal, main, need, nbdkit_env, nbdkit_refuses,
    process_alive, qemu_create, run, sanitizer_reports, sha256_file, wait_for_exit)

QEMU_LOCK_MESSAGE = b'Failed to get shared "write" lock'


def qemu_raw(image, raw):
    check_ok(run([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', image, raw]),
             'qemu-img convert -O raw')
    with open(raw, 'rb') as f:
        return f.read()


def expect_qemu_locked_out(image, when):
    result = run([QEMU_IMG, 'info', '-f', 'vhdx', image])
    expect(result.returncode != 0 and QEMU_LOCK_MESSAGE in result.stderr,
           'qemu-img info opened the image %s: %r' % (when, result.stderr))


def free_tcp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def read_text(path):
    with open(path, 'rb') as f:
        return f.read().decode(errors='replace')


def wait_until(condition, what, steps=1200):
    """Poll @condition every 0.05 s; a hang detector of @steps polls."""
    for _ in range(steps):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError('%s: not reached' % what)


class Tests:
    def __init__(self, workdir):
        self.workdir = workdir

    def path(self, name):
        return os.path.join(self.workdir, name)

    def test_documented_clients_under_run(self):
        # The README's first commands, on an image that `qemu-img create`
        # made as the README shows, with data QEMU wrote into it.
        need(('qemu-img', QEMU_IMG), ('qemu-io', QEMU_IO), ('nbdcopy', NBDCOPY))
        image = self.path('disk.vhdx')
        check_ok(run([QEMU_IMG, 'create', '-q', '-f', 'vhdx', image, '1G']), 'qemu-img create')
        check_ok(run([QEMU_IO, '-f', 'vhdx', '-c', 'write -P 0x3c 1M 3M', '-c',
                      'write -P 0xd1 700M 64k', image]), 'qemu-io')
        expected = qemu_raw(image, self.path('expected.raw'))

        copy = self.path('disk.raw')
        Captive(self.workdir, [image], 'nbdcopy "$uri" %s' % shlex.quote(copy))
        expect(sha256_file(copy) == sha256_file(self.path('expected.raw')),
               'nbdcopy under --run copied otherwise than qemu-img reads')

        qcow2 = self.path('disk.qcow2')
        Captive(self.workdir, [image],
                'qemu-img convert -f raw -O qcow2 "$uri" %s' % shlex.quote(qcow2))
        check_ok(run([QEMU_IMG, 'compare', '-f', 'vhdx', '-F', 'qcow2', image, qcow2]),
                 'qemu-img compare of the image and the qcow2 made under --run')

        # A write through a writable server, then QEMU reads the image.
        Captive(self.workdir, [image], 'qemu-io -f raw -c "write -P 0x5b 3M 64k" '
                '-c "write -z 700M 4k" "$uri"')
        expected = bytearray(expected)
        expected[3 * MiB:3 * MiB + 65536] = b'\x5b' * 65536
        expected[700 * MiB:700 * MiB + 4096] = bytes(4096)
        with open(self.path('expected.raw'), 'wb') as f:
            f.write(expected)
        check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', image]), 'qemu-img check after --run')
        check_ok(run([QEMU_IMG, 'compare', '-f', 'vhdx', '-F', 'raw', image,
                      self.path('expected.raw')]),
                 'qemu-img compare of what qemu-io wrote under --run')

        # Every lock is gone once nbdkit --run has returned.
        check_ok(run([QEMU_IO, '-f', 'vhdx', '-c', 'write -P 0x77 0 4k', image]),
                 'qemu-io writing after nbdkit --run')

    def test_run_over_tcp(self):
        # --run with a TCP port on the loopback address: $uri is nbd://.
        need(('nbdinfo', NBDINFO), ('qemu-img', QEMU_IMG))
        image = self.path('tcp.vhdx')
        qemu_create(image, 'dynamic', 96 * MiB, MiB, writes=[(0x42, 5 * MiB, MiB)])
        expected = self.path('tcp.raw')
        qemu_raw(image, expected)
        captive = Captive(self.workdir, [image],
                          'echo "$uri"; nbdinfo --size "$uri"; qemu-img compare -f raw '
                          '-F raw "$uri" %s' % shlex.quote(expected),
                          listen=('-i', '127.0.0.1', '-p', str(free_tcp_port())))
        lines = captive.stdout.splitlines()
        expect(lines[0].startswith('nbd://'), 'the URI is not TCP: %r' % lines)
        expect_equal(int(lines[1]), 96 * MiB, 'size read over TCP')

    def test_daemonised_server(self):
        # nbdkit's default: its first process exits once the server runs in
        # the background.  The server holds the writer's lock before any
        # client, serves writes, and closes the image cleanly on SIGTERM.
        need(('qemu-img', QEMU_IMG))
        image = self.path('daemon.vhdx')
        qemu_create(image, 'dynamic', 32 * MiB, MiB)
        sock = self.path('daemon.sock')
        pidfile = self.path('daemon.pid')
        log = self.path('daemon.log')
        with open(log, 'wb') as out:
            first = subprocess.Popen([NBDKIT, '-U', sock, '-P', pidfile, PLUGIN, image],
                                     stdout=out, stderr=subprocess.STDOUT, env=nbdkit_env())
        # The first process exits once the server runs (under ASan, it may
        # hang in its exit handlers: see wait_for_exit).
        status = wait_for_exit(first, 'the first process of nbdkit')
        if status is not None:
            expect_equal(status, 0, 'exit status of nbdkit going into the background')
        expect(not sanitizer_reports(read_text(log)), 'sanitizer reports: %s' % read_text(log))
        wait_until(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0,
                   'the pid file of the server in the background')
        with open(pidfile) as f:
            pid = int(f.read())
        try:
            expect_qemu_locked_out(image, 'served in the background, no client yet')
            data = random.Random(5).randbytes(3 * MiB)
            with Client(sock) as c:
                expect(not c.has(nbdclient.FLAG_READ_ONLY), 'the export is read-only')
                c.pwrite(data, 2 * MiB)
                c.flush()
            expect_qemu_locked_out(image, 'served in the background, the client gone')
        finally:
            os.kill(pid, signal.SIGTERM)

            def gone():
                # Under ASan the server hangs at exit (see wait_for_exit),
                # once it has let the image go: QEMU may open it then.
                if (ASAN_RUNTIME and process_alive(pid) and
                        run([QEMU_IMG, 'info', image]).returncode == 0):
                    os.kill(pid, signal.SIGKILL)
                return not process_alive(pid)
            try:
                wait_until(gone, 'the server exits')
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
                raise
        raw = qemu_raw(image, self.path('daemon.raw'))
        expect(raw[2 * MiB:5 * MiB] == data, 'QEMU does not read what the client wrote')
        check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', image]), 'qemu-img check')

    def test_single_connection_on_stdin(self):
        # nbdkit -s serves one connection on its standard input and output,
        # as libguestfs and virt-v2v start it.
        need(('qemu-img', QEMU_IMG))
        image = self.path('stdin.vhdx')
        qemu_create(image, 'dynamic', 16 * MiB, MiB, writes=[(0x11, 0, MiB)])
        ours, theirs = socket.socketpair()
        log = self.path('stdin.log')
        with open(log, 'wb') as err:
            proc = subprocess.Popen([NBDKIT, '-s', PLUGIN, image], stdin=theirs, stdout=theirs,
                                    stderr=err, env=nbdkit_env())
        theirs.close()
        data = random.Random(9).randbytes(MiB + 512)
        with Client(connected=ours) as c:
            expect(not c.has(nbdclient.FLAG_READ_ONLY), 'the export is read-only')
            expect(c.pread(0, 4096) == b'\x11' * 4096, 'what QEMU wrote')
            expect_qemu_locked_out(image, 'served with -s')
            c.pwrite(data, 4 * MiB)
            c.flush()
        status = wait_for_exit(proc, 'nbdkit -s')
        with open(log, 'rb') as f:
            output = f.read().decode(errors='replace')
        expect(not sanitizer_reports(output), 'sanitizer reports: %s' % output)
        if status is not None:
            expect_equal(status, 0, 'exit status of nbdkit -s (%s)' % output)
        raw = qemu_raw(image, self.path('stdin.raw'))
        expect(raw[4 * MiB:5 * MiB + 512] == data, 'QEMU does not read what was written')

    def test_read_only_server_locks_as_a_reader(self):
        # However -r is spelt, a read-only server holds a reader's lock from
        # the start: QEMU reads the image, nobody writes it.
        need(('qemu-img', QEMU_IMG), ('qemu-io', QEMU_IO))
        image = self.path('reader.vhdx')
        qemu_create(image, 'dynamic', 16 * MiB, MiB, writes=[(0x22, MiB, MiB)])
        before = sha256_file(image)
        for number, options in enumerate((['-r'], ['--read-only'], ['--readonly'], ['-vr'],
                                          ['--read'], ['-t', '2', '-r'])):
            with Server(self.workdir, [image], options=options,
                        foreground=number % 2 == 1) as server:
                check_ok(run([QEMU_IMG, 'info', '-f', 'vhdx', image]),
                         'qemu-img info while nbdkit %s serves, no client yet' % options)
                output = nbdkit_refuses(self.workdir, [image])
                expect('Another process has the image open' in output,
                       'a writable nbdkit beside nbdkit %s: %s' % (options, output))
                result = run([QEMU_IO, '-f', 'vhdx', '-c', 'write 0 512', image])
                expect(result.returncode != 0 and b'lock' in result.stderr,
                       'qemu-io wrote while nbdkit %s serves: %r' % (options, result.stderr))
                with Client(server.socket) as c:
                    expect(c.has(nbdclient.FLAG_READ_ONLY), 'nbdkit %s: writable' % options)
                    expect(c.pread(MiB, 512) == b'\x22' * 512, 'what QEMU wrote')
        expect_equal(sha256_file(image), before, 'sha256 of the image served read-only')

    def test_cow_filter_locks_as_a_reader_from_its_first_connection(self):
        # nbdkit's cow filter opens the plugin read-only, which the plugin
        # learns from the first connection: until then it holds a writer's
        # lock, from then on a reader's.  The image is never written.
        need(('qemu-img', QEMU_IMG))
        if run([NBDKIT, '--filter=cow', 'null', '--dump-plugin']).returncode != 0:
            raise AssertionError('nbdkit has no cow filter')
        image = self.path('cow.vhdx')
        qemu_create(image, 'dynamic', 16 * MiB, MiB, writes=[(0x33, 0, MiB)])
        before = sha256_file(image)
        with Server(self.workdir, [image], options=['--filter=cow']) as server:
            expect_qemu_locked_out(image, 'under the cow filter before any client')
            with Client(server.socket) as c:
                c.pwrite(b'\1' * 4096, 0)
                expect(c.pread(0, 8192) == b'\1' * 4096 + b'\x33' * 4096, 'the overlay')
            check_ok(run([QEMU_IMG, 'info', '-f', 'vhdx', image]),
                     'qemu-img info under the cow filter after its first client')
        expect_equal(sha256_file(image), before, 'sha256 of the image under the cow filter')

    def test_overlapping_blocks_refused_for_writing(self):
        # Block 1's BAT entry is made to point at block 0's file space.  A
        # writable server refuses to start, naming both; served read-only,
        # block 0 reads as QEMU wrote it, and nothing changed the file.
        need(('qemu-img', QEMU_IMG), ('qemu-io', QEMU_IO))
        image = self.path('overlap.vhdx')
        qemu_create(image, 'dynamic', 8 * MiB, MiB, writes=[(0xaa, 0, MiB), (0xbb, MiB, MiB)])
        spec = vhdxspec.Vhdx(image)
        expect_equal(spec.payload_entry(0)[0], 6, 'state of block 0')
        with open(image, 'r+b') as f:
            f.seek(spec.bat_offset + 8)
            f.write(struct.pack('<Q', spec.bat_entry(0)))
        before = sha256_file(image)
        report = run([TOOL, 'check', image])
        expect_equal(report.returncode, 2, 'exit status of vhdx check of the damaged image')
        expect(b'overlap block 0' in report.stdout, 'vhdx check: %r' % report.stdout)

        output = nbdkit_refuses(self.workdir, [image])
        expect('block 1' in output and 'block 0' in output and 'vhdx check' in output,
               'the refusal does not name the blocks: %s' % output)
        Captive(self.workdir, [image], 'qemu-io -f raw -r -c "read -P 0xaa 0 1M" '
                '-c "read -P 0xaa 1M 1M" "$uri"', options=['-r'])
        check_ok(run([QEMU_IO, '-f', 'vhdx', '-r', '-c', 'read -P 0xaa 0 1M', image]),
                 'QEMU reading block 0')
        expect_equal(sha256_file(image), before, 'sha256 of the damaged image')


if __name__ == '__main__':
    sys.exit(main(Tests, 'vhdx-test-nbdkit-serve-'))
