#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# End-to-end tests of nbdkit-vhdx-filter, printed as TAP.
#
# The filter serves the virtual disk of a VHDX image that another plugin
# serves as bytes: nbdkit's file plugin, its curl plugin reading from an
# nginx of the test's own on 127.0.0.1, and its xz filter decompressing a
# file.  The bytes read through it must be those `qemu-img convert -O raw`
# or the test generator gives, and those the plugin serves; writes through
# it must leave an image that `qemu-img check` accepts.  Over SSH, the
# test's own sshd on 127.0.0.1 serves the image to nbdkit's ssh plugin,
# which reads and writes it through SFTP; QEMU's NBD server serves another
# as bytes to nbdkit's nbd plugin.  A differencing image's parent may be
# on another NBD server (nbdkit's file plugin on a socket, qemu-nbd on
# TCP), named by its URI in parent=.  Opening an image
# of 64 TiB over HTTP must cost a handful of requests: the count, from
# nginx's access log, is printed.
#
# Environment: VHDX_NBDKIT_FILTER (the filter under test), and what
# nbdtest.py takes.

import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbdtest import (  # noqa: E402
    FILTER, Captive, KiB, MiB, MKIMAGE, NBDCOPY, NBDINFO, NBDKIT, QEMU_IMG, QEMU_IO, TOOL,
    Nginx, Server, Skip, check_ok, expect, expect_equal, free_port, main, need, nbdkit_env,
    qemu_create, read_text, run, sha256_file)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'common'))
from qemunbd import QemuNbd  # noqa: E402

XZ = shutil.which('xz')
QEMU_NBD = shutil.which('qemu-nbd')
SSHD = '/usr/sbin/sshd' if os.access('/usr/sbin/sshd', os.X_OK) else None
SSH_KEYGEN = shutil.which('ssh-keygen')
SHARED_DIR = os.environ.get('VHDX_SHARED_DIR', '')
# The most HTTP requests that nbdinfo of a 64 TiB image may cost.
MAX_OPEN_REQUESTS = 8


def nbdkit_has(kind, name):
    """Whether nbdkit can load its plugin or filter @name."""
    if kind == 'filter':
        args = [NBDKIT, '--filter=' + name, 'null', '--dump-plugin']
    else:
        args = [NBDKIT, name, '--dump-plugin']
    return run(args).returncode == 0


def qemu_raw(path, raw):
    check_ok(run([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', path, raw]),
             'qemu-img convert')
    return sha256_file(raw)


class Sshd:
    """Debian's sshd on 127.0.0.1 at a free port, in the foreground, with a
    configuration, a host key, a client key and a pid file of its own under
    @prefix; it lets in the user running the test with that key, which
    .identity names, and serves SFTP."""

    def __init__(self, prefix):
        if SSHD is None or SSH_KEYGEN is None:
            raise Skip('sshd or ssh-keygen not installed (Debian: openssh-server)')
        if os.geteuid() != 0:
            raise Skip('sshd can let in only the user it runs as, and needs /run/sshd: '
                       'run as root')
        os.makedirs(prefix)
        self.proc = None
        self.made_run_dir = False
        host_key = os.path.join(prefix, 'host_ed25519')
        self.identity = os.path.join(prefix, 'id_ed25519')
        for key in (host_key, self.identity):
            check_ok(run([SSH_KEYGEN, '-q', '-t', 'ed25519', '-N', '', '-f', key]),
                     'ssh-keygen')
        self.log = os.path.join(prefix, 'sshd.log')
        conf = os.path.join(prefix, 'sshd_config')
        try:
            # sshd refuses to start without its privilege separation
            # directory; one made here goes again in stop().
            if not os.path.isdir('/run/sshd'):
                os.makedirs('/run/sshd', mode=0o755)
                self.made_run_dir = True
            for attempt in range(5):
                self.port = free_port()
                with open(conf, 'w') as f:
                    f.write('ListenAddress 127.0.0.1\nPort %d\nHostKey %s\n'
                            'AuthorizedKeysFile %s\nPidFile %s\nStrictModes no\n'
                            'UsePAM no\nPasswordAuthentication no\n'
                            'KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n'
                            'Subsystem sftp internal-sftp\n' % (
                                self.port, host_key, self.identity + '.pub',
                                os.path.join(prefix, 'sshd.pid')))
                with open(self.log, 'wb') as log:
                    self.proc = subprocess.Popen([SSHD, '-D', '-e', '-f', conf],
                                                 stdin=subprocess.DEVNULL, stdout=log,
                                                 stderr=subprocess.STDOUT)
                if self._wait_listening():
                    return
            raise Skip('sshd cannot start here: %s' % ' / '.join(
                read_text(self.log).strip().splitlines()[-3:]))
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self):
        # sshd says so in its log once it listens; ten seconds of polls.
        for _ in range(500):
            if self.proc.poll() is not None:
                return False
            if 'Server listening on' in read_text(self.log):
                return True
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.made_run_dir:
            try:
                os.rmdir('/run/sshd')
            except OSError:
                pass
            self.made_run_dir = False

    def params(self, path):
        """The ssh plugin's parameters for the file @path on this server."""
        return ['host=127.0.0.1', 'port=%d' % self.port, 'user=root', 'path=' + path,
                'identity=' + self.identity, 'verify-remote-host=false', 'config=']

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class FilterTests:
    def __init__(self, workdir):
        self.workdir = workdir

    def path(self, name):
        return os.path.join(self.workdir, name)

    def filtered(self, plugin, params, command, options=(), expect_status=0):
        """nbdkit serving through the filter on top of @plugin, for @command."""
        return Captive(self.workdir, params, command,
                       options=['--filter=' + FILTER] + list(options), plugin=plugin,
                       expect_status=expect_status)

    def copy_sha256(self, plugin, params, name, options=()):
        """The sha256 of the disk that nbdcopy reads through the filter."""
        need(('nbdcopy', NBDCOPY))
        out = self.path(name + '.copy')
        self.filtered(plugin, params, 'nbdcopy "$uri" %s' % out, options)
        return sha256_file(out)

    def plugin_sha256(self, image, params=()):
        out = self.path(os.path.basename(image) + '.plugin-copy')
        Captive(self.workdir, [image] + list(params), 'nbdcopy "$uri" %s' % out, options=['-r'])
        return sha256_file(out)

    def test_filter_loads(self):
        result = check_ok(run([NBDKIT, '--filter=' + FILTER, 'null', '--help'],
                              env=nbdkit_env()), 'nbdkit --filter=vhdx null --help')
        expect('parent=PARENT.vhdx' in result.stdout.decode(),
               'the filter\'s parameters are not in --help')

    def test_file_qemu_images(self):
        need(('qemu-img', QEMU_IMG), ('qemu-io', QEMU_IO), ('nbdinfo', NBDINFO))
        for subformat in ('dynamic', 'fixed'):
            path = self.path('qemu-%s.vhdx' % subformat)
            qemu_create(path, subformat, '40M', MiB,
                        [(0x11, 0, 64 * KiB), (0x22, 5 * MiB + 512, MiB), (0x33, 39 * MiB, MiB)])
            expected = qemu_raw(path, self.path('qemu-%s.raw' % subformat))
            for options in ((), ('-r',)):
                expect_equal(self.copy_sha256('file', [path], subformat, options), expected,
                             'sha256 of the %s image through the filter %s' % (
                                 subformat, ' '.join(options)))
            expect_equal(self.plugin_sha256(path), expected, 'sha256 through the plugin')
        # Holes where the dynamic image stores nothing.
        result = self.filtered('file', [self.path('qemu-dynamic.vhdx')],
                               'nbdinfo --map "$uri"', ['-r'])
        lines = [line.split() for line in result.stdout.splitlines()]
        expect_equal([(int(f[0]), int(f[1]), int(f[2])) for f in lines], [
            (0, MiB, 0), (MiB, 4 * MiB, 3), (5 * MiB, 2 * MiB, 0), (7 * MiB, 32 * MiB, 3),
            (39 * MiB, MiB, 0)], 'nbdinfo --map through the filter')

    def test_file_4k_sectors(self):
        path = self.path('4k.vhdx')
        raw = self.path('4k.raw')
        check_ok(run([MKIMAGE, '--type', 'dynamic', '--size', '48M', '--block-size', '1M',
                      '--logical-sector-size', '4096', '--physical-sector-size', '4096',
                      '--pattern', '0:8K:1', '--pattern', '3M:2M:2', '--pattern', '47M:1M:3',
                      '--raw', raw, path]), 'vhdx-mkimage')
        expected = sha256_file(raw)
        expect_equal(self.copy_sha256('file', [path], '4k'), expected,
                     'sha256 of the 4K-sector image through the filter')
        expect_equal(self.plugin_sha256(path), expected, 'sha256 through the plugin')
        result = self.filtered('file', [path], 'nbdinfo --json "$uri"', ['-r'])
        expect('"block_size_minimum": 4096' in result.stdout,
               'minimum block size of a 4K-sector image: %s' % result.stdout)

    def differencing_chain(self, prefix, parent=None, parent_raw=None):
        """A differencing image of 24 MiB made by `vhdx convert --parent`
        over @parent (made by vhdx-mkimage when None), its sectors changed
        in three places: (child, parent, the child's raw disk)."""
        if parent is None:
            parent = self.path(prefix + 'parent.vhdx')
            parent_raw = self.path(prefix + 'parent.raw')
            check_ok(run([MKIMAGE, '--type', 'dynamic', '--size', '24M', '--block-size', '1M',
                          '--pattern', '0:3M:1', '--pattern', '10M:1M:2', '--raw', parent_raw,
                          parent]), 'vhdx-mkimage')
        child_raw = self.path(prefix + 'child.raw')
        shutil.copyfile(parent_raw, child_raw)
        with open(child_raw, 'r+b') as f:
            for offset, data in ((MiB + 512, os.urandom(7 * 512)), (5 * MiB, os.urandom(MiB)),
                                 (23 * MiB + 4 * KiB, os.urandom(4 * KiB))):
                f.seek(offset)
                f.write(data)
        child = self.path(prefix + 'child.vhdx')
        check_ok(run([TOOL, 'convert', '--block-size', '1M', '--parent', parent, child_raw,
                      child]), 'vhdx convert --parent')
        return child, parent, child_raw

    def test_file_differencing(self):
        child, parent, child_raw = self.differencing_chain('')
        expected = sha256_file(child_raw)
        expect_equal(self.copy_sha256('file', [child, 'parent=' + parent], 'child', ['-r']),
                     expected, 'sha256 of the differencing image with parent=')
        expect_equal(self.plugin_sha256(child), expected, 'sha256 through the plugin')
        # parent-dir= finds it by its name.
        expect_equal(self.copy_sha256('file', [child, 'parent-dir=' + self.workdir], 'child-dir',
                                      ['-r']),
                     expected, 'sha256 of the differencing image with parent-dir=')

    def test_parent_over_nbd(self):
        # The parent on another NBD server, which serves its file as bytes:
        # nbdkit's file plugin on a Unix socket and on TCP.
        need(('nbdcopy', NBDCOPY))
        child, parent, child_raw = self.differencing_chain('nbd-')
        expected = sha256_file(child_raw)
        # A grandchild, its parent the child: served with the child on the
        # NBD server, its own parent found by parent-dir=.
        grandchild, _, grandchild_raw = self.differencing_chain(
            'nbd-grand', parent=child, parent_raw=child_raw)
        elsewhere = self.path('nbd-elsewhere')
        os.mkdir(elsewhere)
        moved = os.path.join(elsewhere, os.path.basename(parent))
        os.rename(parent, moved)
        with Server(self.workdir, [moved], options=['-r'], plugin='file') as server:
            parent_uri = server.uri
            expect_equal(self.copy_sha256('file', [child, 'parent=' + parent_uri], 'nbd-unix',
                                          ['-r']),
                         expected, 'sha256 of the child with parent=%s' % parent_uri)
            expect_equal(self.plugin_sha256(child, ['parent=' + parent_uri]), expected,
                         'sha256 through the plugin with parent=%s' % parent_uri)
        with Server(self.workdir, [child], options=['-r'], plugin='file') as server:
            expect_equal(self.copy_sha256('file', [grandchild, 'parent=' + server.uri,
                                                   'parent-dir=' + elsewhere],
                                          'nbd-grandchild', ['-r']),
                         sha256_file(grandchild_raw),
                         'sha256 of a grandchild whose parent is on an NBD server')
            # Without parent-dir=, the child's parent is looked for nowhere.
            result = self.filtered('file', [grandchild, 'parent=' + server.uri], 'nbdinfo "$uri"',
                                   ['-r'],
                                   expect_status=None)
            expect(result.status != 0 and 'cannot be found' in result.output and
                   'tried: nbd' not in result.output,
                   'a grandparent looked for beside an NBD URI: %s' % result.output)
        # QEMU's NBD server on TCP.
        need(('qemu-nbd', QEMU_NBD))
        port = free_port()
        with QemuNbd(run, self.path('qemu-nbd-parent'), moved, writable=False, fmt='raw',
                     port=port) as server:
            check_ok(server.result, 'qemu-nbd')
            parent_uri = 'nbd://127.0.0.1:%d/' % port
            expect_equal(self.copy_sha256('file', [child, 'parent=' + parent_uri], 'nbd-tcp',
                                          ['-r']),
                         expected, 'sha256 of the child with parent=%s' % parent_uri)
        # A server that is not there: the error names it.
        missing = 'nbd+unix:///?socket=' + self.path('nobody-listens.sock')
        result = self.filtered('file', [child, 'parent=' + missing], 'nbdinfo "$uri"', ['-r'],
                               expect_status=None)
        expect(result.status != 0 and missing in result.output,
               'no error naming the NBD server that is not there: %s' % result.output)

    def test_dirty_log(self):
        # Block 5 is allocated by the log alone: read-only, the log is
        # replayed in memory and the file left as it is; writable, it is
        # replayed onto the file, which is clean once served.
        path = self.path('dirty.vhdx')
        raw = self.path('dirty.raw')
        check_ok(run([MKIMAGE, '--type', 'dynamic', '--size', '16M', '--block-size', '1M',
                      '--pattern', '0:2M:1', '--pattern', '10M:1M:2', '--dirty-block', '5',
                      '--dirty-seed', '9', '--raw', raw, path]), 'vhdx-mkimage')
        expected = sha256_file(raw)
        before = sha256_file(path)
        expect_equal(self.copy_sha256('file', [path], 'dirty-ro', ['-r']), expected,
                     'sha256 of the dirty image served read-only')
        expect_equal(sha256_file(path), before, 'the file served read-only changed')
        expect_equal(self.copy_sha256('file', [path], 'dirty-rw'), expected,
                     'sha256 of the dirty image served writable')
        info = check_ok(run([TOOL, 'info', '--json', path]), 'vhdx info').stdout.decode()
        expect('"log-state" : "clean"' in info or '"log-state": "clean"' in info,
               'the log was not replayed onto the file: %s' % info)
        check_ok(run([TOOL, 'check', path]), 'vhdx check')

    def test_http(self):
        need(('qemu-img', QEMU_IMG), ('qemu-io', QEMU_IO))
        if not nbdkit_has('plugin', 'curl'):
            raise Skip('nbdkit\'s curl plugin is not installed')
        root = self.path('www')
        os.mkdir(root)
        path = os.path.join(root, 'qemu.vhdx')
        qemu_create(path, 'dynamic', '100M', 8 * MiB,
                    [(0x44, 0, MiB), (0x55, 50 * MiB - 512, 3 * MiB), (0x66, 99 * MiB, MiB)])
        images = [('qemu.vhdx', qemu_raw(path, self.path('qemu-http.raw')))]
        sample = os.path.join(SHARED_DIR, 'samples', 'iotest-dynamic-1G.vhdx.bz2')
        if os.path.isfile(sample):
            hyperv = os.path.join(root, 'hyperv.vhdx')
            with open(hyperv, 'wb') as out:
                subprocess.run(['bzcat', sample], stdout=out, check=True)
            images.append(('hyperv.vhdx', qemu_raw(hyperv, self.path('hyperv.raw'))))
        with Nginx(self.path('nginx'), root) as nginx:
            for name, expected in images:
                found = self.copy_sha256('curl', [nginx.url(name)], 'http-' + name, ['-r'])
                expect_equal(found, expected, 'sha256 of %s over HTTP' % name)
                print('# %s: %d HTTP requests for nbdcopy' % (name, len(nginx.requests(name))))
        if len(images) == 1:
            raise Skip('read qemu.vhdx; the Hyper-V sample is not there (%s)' % sample)

    def test_ssh(self):
        need(('qemu-img', QEMU_IMG), ('qemu-io', QEMU_IO), ('nbdcopy', NBDCOPY))
        if not nbdkit_has('plugin', 'ssh'):
            raise Skip('nbdkit\'s ssh plugin is not installed')
        # The "remote" file, which sshd's SFTP serves: blocks of 1 MiB, of
        # which QEMU stores 0-2, 8 and 20-21.
        path = self.path('remote.vhdx')
        qemu_create(path, 'dynamic', '32M', MiB,
                    [(0x31, 0, 3 * MiB), (0x32, 8 * MiB + 512, 4 * KiB),
                     (0x33, 20 * MiB, 2 * MiB)])
        expected = qemu_raw(path, self.path('remote.raw'))
        with Sshd(self.path('sshd')) as sshd:
            params = sshd.params(path)
            for options in (('-r',), ()):
                expect_equal(self.copy_sha256('ssh', params, 'ssh', options), expected,
                             'sha256 of the image over SSH %s' % ' '.join(options))
            # Writes into blocks the file stores: nothing needs to grow.
            writes = [(0x5a, 4 * KiB, 8 * KiB), (0x5b, 3 * MiB - 512, 512),
                      (0x5c, 8 * MiB, MiB), (0x5d, 20 * MiB + 4 * KiB, 2 * MiB - 8 * KiB)]
            command = ' '.join('-c "write -P 0x%02x %d %d"' % w for w in writes)
            result = self.filtered('ssh', params, 'qemu-io -f raw %s "$uri"' % command)
            expect('is read-only' not in result.output, 'served read-only: %s' % result.output)
            # Block 12 has no space in the file, which cannot grow.
            result = self.filtered('ssh', params, 'qemu-io -f raw -c "write -P 0x5e %d 4096" '
                                   '"$uri"' % (12 * MiB), expect_status=None)
            expect('No space left on device' in result.output + result.stdout,
                   'a write over SSH that needs new space: %s' % result.output)
        check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', path]),
                 'qemu-img check after writing over SSH')
        reads = ' '.join('-c "read -P 0x%02x %d %d"' % w for w in writes)
        # What was not written stays.
        reads += ' -c "read -P 0x31 0 4096" -c "read -P 0x31 %d %d"' % (12 * KiB, MiB)
        reads += ' -c "read -P 0 %d %d"' % (3 * MiB, 5 * MiB)
        check_ok(run(['sh', '-c', 'qemu-io -f vhdx -r %s %s' % (reads, path)]),
                 'qemu-io reading back what the filter wrote over SSH')
        # The same bytes as writing them into QEMU's raw copy.
        raw = self.path('remote.raw')
        with open(raw, 'r+b') as f:
            for pattern, offset, length in writes:
                f.seek(offset)
                f.write(bytes([pattern]) * length)
        expect_equal(qemu_raw(path, self.path('remote-after.raw')), sha256_file(raw),
                     'sha256 of the image written over SSH')

    def test_http_requests_of_opening(self):
        need(('nbdinfo', NBDINFO))
        if not nbdkit_has('plugin', 'curl'):
            raise Skip('nbdkit\'s curl plugin is not installed')
        root = self.path('www-big')
        os.mkdir(root)
        check_ok(run([TOOL, 'create', os.path.join(root, 'big.vhdx'), '64T']), 'vhdx create')
        with Nginx(self.path('nginx-big'), root) as nginx:
            result = self.filtered('curl', [nginx.url('big.vhdx')], 'nbdinfo "$uri"', ['-r'])
            expect('export-size: %d' % (64 << 40) in result.stdout,
                   'nbdinfo of the 64 TiB image: %s' % result.stdout)
            count = len(nginx.requests('big.vhdx'))
        print('# nbdinfo of a 64 TiB image over HTTP: %d HTTP requests' % count)
        expect(count <= MAX_OPEN_REQUESTS, '%d HTTP requests to open the image (at most %d)' % (
            count, MAX_OPEN_REQUESTS))

    def test_xz(self):
        need(('qemu-img', QEMU_IMG), ('qemu-io', QEMU_IO), ('nbdinfo', NBDINFO))
        if XZ is None:
            raise Skip('xz not installed (Debian: xz-utils)')
        if not nbdkit_has('filter', 'xz'):
            raise Skip('nbdkit\'s xz filter is not installed')
        path = self.path('packed.vhdx')
        qemu_create(path, 'dynamic', '64M', 2 * MiB,
                    [(0x71, 0, 3 * MiB), (0x72, 33 * MiB, MiB)])
        expected = qemu_raw(path, self.path('packed.raw'))
        # Blocks of 1 MiB, so that the xz filter can seek.
        check_ok(run([XZ, '-k', '--block-size=1MiB', path]), 'xz')
        options = ['--filter=xz']
        expect_equal(self.copy_sha256('file', [path + '.xz'], 'xz', options), expected,
                     'sha256 of the image through the xz filter')
        result = self.filtered('file', [path + '.xz'], 'nbdinfo "$uri"', options)
        expect('is_read_only: true' in result.stdout,
               'the image below the xz filter is not read-only: %s' % result.stdout)

    def test_writes(self):
        need(('qemu-img', QEMU_IMG), ('qemu-io', QEMU_IO))
        for subformat in ('dynamic', 'fixed'):
            path = self.path('written-%s.vhdx' % subformat)
            if subformat == 'dynamic':
                # It stores blocks 0-3 and 8: writes there need no new
                # space in the file.
                qemu_create(path, subformat, '16M', MiB,
                            [(0x01, 0, 4 * MiB), (0x02, 8 * MiB, MiB)])
            else:
                # Every block has its space (QEMU's fixed images leave
                # the unwritten ones in the ZERO state, without).
                check_ok(run([TOOL, 'create', '--type', 'fixed', '--block-size', '1M', path,
                              '16M']), 'vhdx create --type fixed')
            writes = [(0xa1, 512, 4 * KiB), (0xa2, 2 * MiB - 4 * KiB, 12 * KiB),
                      (0xa3, 8 * MiB, MiB)]
            if subformat == 'fixed':
                writes.append((0xa4, 12 * MiB, 3 * MiB))
            command = ' '.join('-c "write -P 0x%02x %d %d"' % w for w in writes)
            command += ' -c "write -z %d %d"' % (3 * MiB, MiB)
            self.filtered('file', [path], 'qemu-io -f raw %s "$uri"' % command)
            check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', path]), 'qemu-img check')
            reads = ' '.join('-c "read -P 0x%02x %d %d"' % w for w in writes)
            reads += ' -c "read -P 0 %d %d"' % (3 * MiB, MiB)
            check_ok(run(['sh', '-c', 'qemu-io -f vhdx -r %s %s' % (reads, path)]),
                     'qemu-io reading back what the filter wrote')
        # A block the dynamic image does not store needs the file to grow,
        # which the file plugin cannot: the write fails, the image stays clean.
        path = self.path('written-dynamic.vhdx')
        result = self.filtered('file', [path], 'qemu-io -f raw -c "write -P 0xb1 %d 4096" "$uri"'
                               % (12 * MiB), expect_status=None)
        expect('No space left on device' in result.output + result.stdout,
               'a write that needs new space: %s' % result.output)
        check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', path]), 'qemu-img check after ENOSPC')

    def test_nbd_plugin_below(self):
        # The image's file served as bytes by QEMU's NBD server, read and
        # written through nbdkit's nbd plugin, with nbdkit's cache and
        # readahead filters between the two.
        need(('qemu-img', QEMU_IMG), ('qemu-io', QEMU_IO), ('qemu-nbd', QEMU_NBD))
        if not nbdkit_has('plugin', 'nbd'):
            raise Skip('nbdkit\'s nbd plugin is not installed')
        path = self.path('behind-nbd.vhdx')
        qemu_create(path, 'dynamic', '32M', MiB, [(0x61, 0, 2 * MiB), (0x62, 9 * MiB, MiB)])
        expected = qemu_raw(path, self.path('behind-nbd.raw'))
        socket = self.path('qemu-nbd-bytes.sock')
        writes = [(0xc1, 4 * KiB, 8 * KiB), (0xc2, 9 * MiB + 512, 512)]
        with QemuNbd(run, socket, path, fmt='raw', persistent=True) as server:
            check_ok(server.result, 'qemu-nbd')
            for options in (['-r'], ['-r', '--filter=cache', '--filter=readahead']):
                expect_equal(self.copy_sha256('nbd', ['socket=' + socket], 'nbd-below', options),
                             expected, 'sha256 through the nbd plugin %s' % ' '.join(options))
            command = ' '.join('-c "write -P 0x%02x %d %d"' % w for w in writes)
            self.filtered('nbd', ['socket=' + socket], 'qemu-io -f raw %s "$uri"' % command)
        check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', path]), 'qemu-img check')
        reads = ' '.join('-c "read -P 0x%02x %d %d"' % w for w in writes)
        check_ok(run(['sh', '-c', 'qemu-io -f vhdx -r %s %s' % (reads, path)]),
                 'qemu-io reading back what was written through the nbd plugin')

    def test_read_only_below(self):
        # A plugin below that can write but not flush: served read-only.
        need(('nbdinfo', NBDINFO))
        path = self.path('no-flush.vhdx')
        check_ok(run([TOOL, 'create', path, '8M']), 'vhdx create')
        size = os.path.getsize(path)
        # dd without the sanitizer runtime that nbdkit may have preloaded.
        dd = 'env -u LD_PRELOAD -u ASAN_OPTIONS dd'
        params = [
            'get_size=echo %d' % size,
            'pread=%s if=%s skip=$4 count=$3 iflag=skip_bytes,count_bytes status=none' % (
                dd, path),
            'pwrite=%s of=%s seek=$4 conv=notrunc oflag=seek_bytes status=none' % (dd, path),
            'can_write=exit 0', 'can_flush=exit 3',
        ]
        result = self.filtered('eval', params, 'nbdinfo "$uri"')
        expect('is_read_only: true' in result.stdout,
               'served writable without flushes: %s' % result.stdout)
        expect('cannot write' not in result.output and 'but not flush' in result.output,
               'no warning about the missing flush: %s' % result.output)


if __name__ == '__main__':
    if not FILTER:
        print('Bail out! VHDX_NBDKIT_FILTER must be set')
        sys.exit(1)
    sys.exit(main(FilterTests, 'nbdkit-filter-'))
