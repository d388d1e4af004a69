#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# End-to-end tests of `vhdx-pool expose --read-write` and of the placeholders
# of images that cannot be opened, printed as TAP.
#
# vhdx-pool runs as the user of a private libvirt session (nobody when run
# as root), as in test-pool.py; the raw files are used by programs that know
# nothing of VHDX: mkfs.ext4, e2fsck, debugfs, dd, fallocate, qemu-io.  The
# oracles are independent of vhdx-pool: QEMU reads the dynamic image (after
# `qemu-img check -r all` has replayed its log, in a copy), e2fsck and
# debugfs read the file system QEMU converted, and the disk of the
# differencing image, which QEMU cannot open, is compared with the parent's
# raw disk (QEMU's) with the test's own writes applied.
#
# Environment: VHDX_POOL, VHDX_TOOL; VHDX_NBDKIT_PLUGIN (the nbdkit plugin of
# the build, when built) for the locks.

import os
import select
import shutil
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'common'))
from libvirtsession import NOBODY, URI, Session  # noqa: E402

MiB = 1024 * 1024
WAIT_SECONDS = 20
HELLO = b'Hello from a raw file of a VHDX image\n'

VHDX_POOL = os.environ.get('VHDX_POOL')
VHDX_TOOL = os.environ.get('VHDX_TOOL')
PLUGIN = os.environ.get('VHDX_NBDKIT_PLUGIN')


class Skip(Exception):
    pass


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def expect_equal(found, expected, what):
    if found != expected:
        raise AssertionError('%s: expected %r, found %r' % (what, expected, found))


def wait_for(predicate, what, seconds=WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %d s waiting for %s' % (seconds, what))
        time.sleep(0.1)


def check_ok(result, what):
    if result.returncode != 0:
        raise AssertionError('%s exited with %d: %s%s' % (
            what, result.returncode, result.stdout.decode(errors='replace')[-2000:],
            result.stderr.decode(errors='replace').strip()[-2000:]))
    return result


def run_root(args, what=None):
    result = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=120)
    return check_ok(result, what or ' '.join(os.path.basename(str(a)) for a in args[:2]))


def read_file(path):
    with open(path, 'rb') as f:
        return f.read()


def sha256(path):
    return run_root(['sha256sum', path]).stdout.split()[0]


def mounted(mnt):
    with open('/proc/self/mounts') as f:
        return any(line.split()[1] == mnt for line in f)


class Expose:
    """vhdx-pool expose of @src on @mnt, as the session's user, once it says
    it is ready."""

    def __init__(self, session, src, mnt, *options):
        self.session = session
        self.mnt = mnt
        self.stderr = b''
        self.proc = session.popen([session.pool_tool, '-c', URI, 'expose'] + list(options) +
                                  [src, mnt])
        ready = select.select([self.proc.stdout], [], [], WAIT_SECONDS)[0]
        if not ready or self.proc.poll() is not None:
            self.stop()
            raise AssertionError('expose did not start: %r' % self.stderr)
        self.line = self.proc.stdout.readline().decode(errors='replace')

    def stop(self):
        """SIGTERM, and the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            status = None
        self.stderr = self.proc.stderr.read()
        self.unmount()
        return status

    def kill(self):
        """SIGKILL, as a crash: the mount stays, with nobody serving it."""
        self.proc.kill()
        self.proc.wait()
        self.stderr = self.proc.stderr.read()
        self.unmount()

    def unmount(self):
        if mounted(self.mnt):
            subprocess.run(['fusermount3', '-u', '-z', self.mnt], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        wait_for(lambda: not mounted(self.mnt), 'the unmount of %s' % self.mnt)


class Holder:
    """A process of the session's user that holds @path open (for reading
    and writing with @write) until stopped; started tells whether it could."""

    def __init__(self, session, path, write=True):
        redirect = '3<>"$0"' if write else '3<"$0"'
        self.proc = session.popen(['sh', '-c', 'exec %s && echo open && exec sleep 600' %
                                   redirect, path])
        ready = select.select([self.proc.stdout], [], [], WAIT_SECONDS)[0]
        self.started = bool(ready) and self.proc.stdout.readline() == b'open\n'
        if not self.started:
            self.proc.wait(timeout=WAIT_SECONDS)
            self.stderr = self.proc.stderr.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def fuse_unavailable():
    if not os.path.exists('/dev/fuse'):
        return '/dev/fuse is absent'
    if shutil.which('fusermount3') is None:
        return 'fusermount3 is not installed'
    return None


def need(*programs):
    for program in programs:
        if shutil.which(program) is None and not os.path.exists('/usr/sbin/' + program):
            raise Skip('%s is not installed' % program)


def give(session, *paths):
    for path in paths:
        os.chmod(path, 0o644)
        if session.as_nobody:
            os.chown(path, NOBODY, NOBODY)


def make_dir(session, name):
    path = session.path(name)
    os.makedirs(path, exist_ok=True)
    if session.as_nobody:
        os.chown(path, NOBODY, NOBODY)
    return path


def qemu_raw(image, raw):
    run_root(['qemu-img', 'convert', '-f', 'vhdx', '-O', 'raw', image, raw])
    return raw


def range_of(path, offset, length):
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read(length)


def pattern(byte, length):
    return bytes([byte]) * length


# Tests

def test_read_write(session):
    """A dynamic image made by QEMU and a differencing child written through
    their raw files; vhdx-pool is killed once the writes were flushed, and
    what was flushed is found in the images."""
    reason = fuse_unavailable()
    if reason:
        raise Skip(reason)
    need('mkfs.ext4', 'e2fsck', 'debugfs', 'fallocate', 'qemu-io')
    src = make_dir(session, 'rw-src')
    mnt = make_dir(session, 'rw-mnt')
    work = make_dir(session, 'rw-work')
    disk = os.path.join(src, 'disk.vhdx')
    base = os.path.join(src, 'base.vhdx')
    child = os.path.join(src, 'child.avhdx')
    run_root(['qemu-img', 'create', '-q', '-f', 'vhdx', disk, '64M'])
    run_root(['qemu-img', 'create', '-q', '-f', 'vhdx', base, '64M'])
    run_root(['qemu-io', '-f', 'vhdx', '-c', 'write -P 0x61 0 6M', '-c',
              'write -P 0x62 40M 2M', base])
    run_root([VHDX_TOOL, 'create', '--parent', base, child])
    hello = os.path.join(work, 'hello.txt')
    with open(hello, 'wb') as f:
        f.write(HELLO)
    give(session, disk, base, child, hello)
    base_sha = sha256(base)
    base_raw = qemu_raw(base, os.path.join(session.path('work'), 'rw-base.raw'))

    expose = Expose(session, src, mnt, '--read-write')
    holder = None
    try:
        raw = os.path.join(mnt, 'disk.raw')
        child_raw = os.path.join(mnt, 'child.raw')
        # A FUSE mount is its owner's alone: everything on it runs as the
        # session's user.
        expect_equal(sorted(check_ok(session.run(['ls', mnt]), 'ls').stdout.decode().split()),
                     ['base.raw', 'child.raw', 'disk.raw'], 'the raw files')
        listing = check_ok(session.run(['ls', '-l', raw]), 'ls -l').stdout.decode()
        expect(listing.startswith('-rw-'), 'disk.raw is not writable: %r' % listing)

        # A file system made and checked on the raw file itself.
        check_ok(session.run(['mkfs.ext4', '-q', '-F', raw]), 'mkfs.ext4 on disk.raw')
        check_ok(session.run(['e2fsck', '-fn', raw]), 'e2fsck -fn of disk.raw')
        check_ok(session.run(['debugfs', '-w', '-R', 'write %s hello.txt' % hello, raw]),
                 'debugfs write')
        # From here on the image stays open for writing, so that killing
        # vhdx-pool leaves it with what was flushed in its log.
        holder = Holder(session, raw)
        expect(holder.started, 'the raw file cannot be held open for writing: %r' %
               getattr(holder, 'stderr', b''))

        # The child: written at an offset, a hole punched, fsync'd.
        check_ok(session.run(['sh', '-c', 'head -c 3145728 /dev/zero | tr "\\000" "\\143" | '
                              'dd of="$0" bs=1M seek=8 iflag=fullblock conv=notrunc,fsync '
                              'status=none', child_raw]), 'dd into child.raw')
        check_ok(session.run(['fallocate', '--punch-hole', '--offset', str(9 * MiB),
                              '--length', str(MiB), child_raw]), 'fallocate --punch-hole')
        check_ok(session.run(['fallocate', '--punch-hole', '--offset', str(2 * MiB),
                              '--length', str(512 * 1024), child_raw]),
                 'fallocate --punch-hole over the parent\'s data')
        got = check_ok(session.run(['dd', 'if=' + child_raw, 'bs=1M', 'skip=8', 'count=3',
                                    'status=none']), 'dd from child.raw').stdout
        expect(got == pattern(0x63, MiB) + bytes(MiB) + pattern(0x63, MiB),
               'child.raw does not read back what was written and punched')
        got = check_ok(session.run(['dd', 'if=' + child_raw, 'bs=512K', 'skip=4', 'count=1',
                                    'status=none']), 'dd from child.raw').stdout
        expect(got == bytes(512 * 1024), 'the hole over the parent\'s data does not read zeros')
        result = session.run(['fallocate', '--offset', '0', '--length', str(MiB), child_raw])
        expect(result.returncode != 0 and b'not supported' in result.stderr,
               'fallocate without --punch-hole: %r' % result.stderr)
        result = session.run(['truncate', '-s', '32M', child_raw])
        expect(result.returncode != 0 and b'Invalid argument' in result.stderr,
               'truncate of child.raw: %r' % result.stderr)
        # The parent of the child is not opened for writing.
        result = session.run(['sh', '-c', 'exec 3<>"$0"', os.path.join(mnt, 'base.raw')])
        expect(result.returncode != 0 and b'not permitted' in result.stderr,
               'base.raw opened for writing: %r' % result.stderr)

        # A guest (QEMU) writes disk.raw in the last megabyte, which the
        # file system does not use, while the holder keeps it open.
        check_ok(session.run(['qemu-io', '-f', 'raw', '-c', 'write -P 0x5c 63M 512K',
                              '-c', 'flush', raw]), 'qemu-io write into disk.raw')
        check_ok(session.run(['qemu-io', '-f', 'raw', '-c', 'read -P 0x5c 63M 512K', raw]),
                 'qemu-io read of disk.raw')
        check_ok(session.run(['sync', raw]), 'sync of disk.raw')

        # Another writer of the image is refused while a raw file of it is
        # open for writing, with the engine's message.
        if PLUGIN:
            result = subprocess.run(['nbdkit', '-U', '-', PLUGIN, disk, '--run', 'true'],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            expect(result.returncode != 0 and b'in use' in result.stderr,
                   'nbdkit opened an image whose raw file is open for writing: %r' %
                   result.stderr)
        result = subprocess.run(['qemu-img', 'info', disk], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=60)
        expect(result.returncode != 0 and b'lock' in result.stderr,
               'qemu-img info of an image open for writing: %r' % result.stderr)

        # vhdx-pool dies; the mount goes with it.
        expose.kill()
    finally:
        if holder is not None:
            holder.stop()
        if expose.proc.poll() is None:
            expose.stop()
        expose.unmount()

    # The dynamic image, killed while open for writing: its log (if the
    # engine had not applied it yet) replayed by QEMU in a copy, then read.
    copy = os.path.join(session.path('work'), 'rw-disk-copy.vhdx')
    shutil.copy(disk, copy)
    run_root(['qemu-img', 'check', '-q', '-r', 'all', '-f', 'vhdx', copy], 'qemu-img check -r all')
    disk_raw = qemu_raw(copy, os.path.join(session.path('work'), 'rw-disk.raw'))
    run_root(['e2fsck', '-fn', disk_raw], 'e2fsck -fn of the disk QEMU reads')
    result = run_root(['debugfs', '-R', 'cat hello.txt', disk_raw], 'debugfs cat')
    expect_equal(result.stdout, HELLO, 'hello.txt in the disk QEMU reads')
    expect(range_of(disk_raw, 63 * MiB, 512 * 1024) == pattern(0x5c, 512 * 1024),
           'the guest\'s write is not in the disk QEMU reads')
    # The image itself, repaired by the tool, reads as QEMU's copy does.
    run_root([VHDX_TOOL, 'check', '--repair', disk], 'vhdx check --repair')
    run_root([VHDX_TOOL, 'check', disk], 'vhdx check')
    run_root(['qemu-img', 'compare', '-f', 'vhdx', '-F', 'raw', disk, disk_raw],
             'qemu-img compare of the repaired image')

    # The differencing image: the parent unchanged, the child its disk with
    # the test's writes.
    expect_equal(sha256(base), base_sha, 'sha256 of the parent')
    expected = bytearray(read_file(base_raw))
    expected[8 * MiB:11 * MiB] = pattern(0x63, 3 * MiB)
    expected[9 * MiB:10 * MiB] = bytes(MiB)
    expected[2 * MiB:2 * MiB + 512 * 1024] = bytes(512 * 1024)
    run_root([VHDX_TOOL, 'check', '--repair', child], 'vhdx check --repair of the child')
    found = run_root([VHDX_TOOL, 'cat', child], 'vhdx cat of the child').stdout
    expect(found == bytes(expected), 'the child\'s disk differs from the parent\'s with the '
           'writes made')
    stderr = expose.stderr.decode(errors='replace')
    expect('base.vhdx: not opened for writing' in stderr,
           'no message for the parent refused: %r' % stderr)


def test_locked_by_others(session):
    """An image that another process writes (the nbdkit plugin) cannot be
    opened through the mount, read-only or for writing: EBUSY, and a
    message."""
    reason = fuse_unavailable()
    if reason:
        raise Skip(reason)
    if not PLUGIN:
        raise Skip('the nbdkit plugin is not built')
    need('nbdkit')
    src = make_dir(session, 'lock-src')
    mnt = make_dir(session, 'lock-mnt')
    disk = os.path.join(src, 'disk.vhdx')
    run_root(['qemu-img', 'create', '-q', '-f', 'vhdx', disk, '16M'])
    give(session, disk)
    sock = session.path('lock.sock')
    pidfile = session.path('lock.pid')
    expose = Expose(session, src, mnt, '--read-write')
    server = None
    try:
        raw = os.path.join(mnt, 'disk.raw')
        run_root(['nbdkit', '-U', sock, '-P', pidfile, PLUGIN, disk], 'nbdkit')
        server = int(wait_for(lambda: os.path.exists(pidfile) and read_file(pidfile).strip(),
                              'nbdkit\'s pid file'))
        for mode, redirect in (('for writing', '3<>'), ('read-only', '3<')):
            result = session.run(['sh', '-c', 'exec %s"$0"' % redirect, raw])
            expect(result.returncode != 0 and b'busy' in result.stderr.lower(),
                   'disk.raw opened %s while nbdkit writes the image: %r' %
                   (mode, result.stderr))
        os.kill(server, signal.SIGTERM)
        wait_for(lambda: not os.path.exists('/proc/%d' % server), 'nbdkit to stop')
        server = None
        # Once nbdkit is gone, the raw file opens for writing.
        holder = Holder(session, raw)
        try:
            expect(holder.started, 'disk.raw cannot be opened once nbdkit stopped: %r' %
                   getattr(holder, 'stderr', b''))
        finally:
            holder.stop()
    finally:
        if server is not None:
            os.kill(server, signal.SIGTERM)
        status = expose.stop()
    stderr = expose.stderr.decode(errors='replace')
    expect_equal(status, 0, 'expose exit status (%r)' % stderr)
    expect('disk.vhdx: Another process' in stderr, 'no message for EBUSY: %r' % stderr)


def test_placeholders(session):
    """A checkpoint whose parent was deleted and a damaged image are shown
    as NAME.raw.error, read-only, saying what is wrong and what mends it;
    the raw file takes its place once the parent is back."""
    reason = fuse_unavailable()
    if reason:
        raise Skip(reason)
    src = make_dir(session, 'ph-src')
    mnt = make_dir(session, 'ph-mnt')
    away = make_dir(session, 'ph-away')
    parent = os.path.join(src, 'parent.vhdx')
    orphan = os.path.join(src, 'orphan.avhdx')
    broken = os.path.join(src, 'broken.vhdx')
    run_root(['qemu-img', 'create', '-q', '-f', 'vhdx', parent, '32M'])
    run_root([VHDX_TOOL, 'create', '--parent', parent, orphan])
    with open(broken, 'wb') as f:
        f.write(b'vhdxfile' + bytes(2 * MiB - 8))
    moved = os.path.join(away, 'parent.vhdx')
    os.rename(parent, moved)
    give(session, moved, orphan, broken)

    for options in ([], ['--read-write']):
        expose = Expose(session, src, mnt, *options)
        try:
            expect('Exposing 0 images' in expose.line, 'expose said %r' % expose.line)
            names = check_ok(session.run(['ls', mnt]), 'ls').stdout.decode().split()
            expect_equal(names, ['broken.raw.error', 'orphan.raw.error'], 'the files shown')
            listing = check_ok(session.run(['ls', '-l', os.path.join(mnt, 'orphan.raw.error')]),
                               'ls -l').stdout.decode()
            expect(listing.startswith('-r--r--r--'), 'placeholder mode: %r' % listing)
            text = check_ok(session.run(['cat', os.path.join(mnt, 'orphan.raw.error')]),
                            'cat').stdout.decode()
            expect(text.startswith(orphan + ' cannot be exposed: '), 'first line: %r' % text)
            expect(os.path.join(src, 'parent.vhdx') in text,
                   'the parent looked for is not named: %r' % text)
            expect('relative_path: parent.vhdx' in text, 'no relative_path: %r' % text)
            expect("vhdx set-parent '%s' PARENT.vhdx" % orphan in text,
                   'no set-parent hint: %r' % text)
            expect('parent-dir=' in text, 'no parent-dir hint: %r' % text)
            text = check_ok(session.run(['cat', os.path.join(mnt, 'broken.raw.error')]),
                            'cat').stdout.decode()
            expect('No valid header' in text and "vhdx check '%s'" % broken in text,
                   'broken.raw.error: %r' % text)
            result = session.run(['sh', '-c', 'exec 3<>"$0"',
                                  os.path.join(mnt, 'orphan.raw.error')])
            expect(result.returncode != 0, 'a placeholder was opened for writing')
            result = session.run(['sh', '-c', 'exec 3<>"$0"', os.path.join(mnt, 'nothing.raw')])
            expect(result.returncode != 0, 'a missing file was opened for writing')
            if not options:
                # Without --read-write, raw files are not opened for writing.
                result = session.run(['sh', '-c', 'exec 3<>"$0"',
                                      os.path.join(mnt, 'broken.raw.error')])
                expect(result.returncode != 0 and b'read-only' in result.stderr.lower(),
                       'opened for writing on a read-only mount: %r' % result.stderr)
        finally:
            status = expose.stop()
        stderr = expose.stderr.decode(errors='replace')
        expect_equal(status, 0, 'expose exit status (%r)' % stderr)
        expect_equal(stderr.count('orphan.avhdx: '), 1, 'messages about orphan.avhdx: %r' %
                     stderr)

    # The parent back: the raw file replaces the placeholder, and reads.
    expose = Expose(session, src, mnt, '--read-write')
    try:
        os.rename(moved, parent)
        names = wait_for(lambda: (lambda n: 'orphan.raw' in n and n)(
            check_ok(session.run(['ls', mnt]), 'ls').stdout.decode().split()),
            'orphan.raw once the parent is back')
        expect_equal(sorted(names), ['broken.raw.error', 'orphan.raw', 'parent.raw'],
                     'the files shown')
        size = check_ok(session.run(['stat', '-c', '%s', os.path.join(mnt, 'orphan.raw')]),
                        'stat').stdout.strip()
        expect_equal(size, str(32 * MiB).encode(), 'size of orphan.raw')
    finally:
        expose.stop()


TESTS = [
    ('a file system made, written and flushed on the raw files survives a crash',
     test_read_write),
    ('an image that another process writes cannot be opened through the mount',
     test_locked_by_others),
    ('images that cannot be opened are shown as placeholders that say why', test_placeholders),
]


def main():
    for name in ('VHDX_POOL', 'VHDX_TOOL'):
        if not os.environ.get(name):
            print('Bail out! %s is not set' % name)
            return 1
    missing = [p for p in ('qemu-img', 'setpriv' if os.geteuid() == 0 else 'sh')
               if shutil.which(p) is None]
    if missing:
        print('1..0 # SKIP not installed: %s' % ', '.join(missing))
        return 0
    session = Session()
    failed = 0
    try:
        session.give_away()
        print('1..%d' % len(TESTS))
        for number, (description, func) in enumerate(TESTS, 1):
            try:
                func(session)
                print('ok %d - %s' % (number, description))
            except Skip as skip:
                print('ok %d - %s # SKIP %s' % (number, description, skip))
            except Exception:
                failed += 1
                print('not ok %d - %s' % (number, description))
                for line in traceback.format_exc().splitlines():
                    print('# ' + line)
            sys.stdout.flush()
    finally:
        session.close()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
