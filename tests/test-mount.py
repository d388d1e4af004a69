#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `vhdx mount` and `vhdx umount`, end to end, printed as TAP: an ext4 file
# system in a dynamic image made by QEMU, mounted read-only where the tool
# chooses (the file system found by libguestfs) and read; mounted with
# --rw at a given directory and written; a differencing child written
# through --rw; NTFS on a disk of 4 KiB sectors; the samples made by
# Windows (a btrfs partition; a disk of swap alone, which has nothing to
# mount); a disk with an operating system, whose file systems inspection
# mounts as its fstab says; a missing guestmount, and a directory that is
# not a mount.  A mount unmounted with fusermount3, as a file manager
# unmounts, stops its server all the same.  After each umount no process of the mount is left, and the image is
# released: `vhdx check --repair`, which refuses an image that anyone has
# open, opens it.
#
# Oracles: the file systems are made on raw disks by mkfs.ext4 -d and by
# mkntfs with ntfscp, and become images with `qemu-img convert` (with
# `vhdx convert` for 4 KiB sectors, which QEMU cannot make); what a --rw
# mount wrote is read back from the raw disk that `qemu-img convert` (for
# a differencing child, `vhdx cat`) makes of the image, by debugfs, and
# e2fsck -fn finds the file system clean; `vhdx check` and `qemu-img check`
# find the image clean; sha256 of images that must not change; the root
# of the btrfs sample as guestfish lists it from the raw disk QEMU reads.
#
# Each mount boots the libguestfs appliance (emulated, as the README
# advises where KVM may not work: LIBGUESTFS_BACKEND_SETTINGS=force_tcg
# unless the environment sets it), so the mounts are few.
#
# Environment: VHDX_TOOL (required); VHDX_SHARED_DIR (the samples, when
# present).

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'common'))
import clitest  # noqa: E402
from clitest import TOOL, Skip, expect, expect_equal, sha256  # noqa: E402

KiB = 1024
MiB = 1024 * KiB

QEMU_IMG = shutil.which('qemu-img')
NBDKIT = shutil.which('nbdkit')
GUESTMOUNT = shutil.which('guestmount')
SBIN = ['/usr/sbin', '/sbin']
# A hang detector, in polls of 0.05 s: no pass/fail depends on it.
POLLS = 12000


def sbin(program):
    return shutil.which(program) or shutil.which(program, path=':'.join(SBIN))


def run(args, env, timeout=900):
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=timeout)


def check_ok(result, what):
    if result.returncode != 0:
        raise AssertionError('%s exited with %d: %s' % (
            what, result.returncode, result.stderr.decode(errors='replace')[-3000:]))
    return result


def hello_tree(root):
    os.makedirs(os.path.join(root, 'docs'))
    with open(os.path.join(root, 'hello.txt'), 'w') as f:
        f.write('Hello from a VHDX disk\n')
    with open(os.path.join(root, 'docs', 'notes.txt'), 'w') as f:
        f.write(''.join('%d\n' % i for i in range(1000)))


def ext4_raw(raw, tree):
    """A 64 MiB raw disk: an MBR, and in partition 1 (from 1 MiB) ext4 holding @tree."""
    need_programs('sfdisk', 'mkfs.ext4')
    with open(raw, 'wb') as f:
        f.truncate(64 * MiB)
    check_ok(subprocess.run([sbin('sfdisk'), '-q', raw], input=b'label: dos\nstart=2048, type=83\n',
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE), 'sfdisk')
    check_ok(run([sbin('mkfs.ext4'), '-q', '-F', '-d', tree, '-E', 'offset=%d' % MiB, raw,
                  '%dk' % (63 * 1024)], clitest.ENV), 'mkfs.ext4')


def partition_1(raw, out):
    """Partition 1 of @raw (from 1 MiB to the end) copied into @out."""
    with open(raw, 'rb') as src, open(out, 'wb') as dst:
        src.seek(MiB)
        shutil.copyfileobj(src, dst)


def need_programs(*programs):
    for program in programs:
        if sbin(program) is None:
            raise Skip('%s is not installed' % program)


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp
        self.env = dict(clitest.ENV, HOME=self.path('home'), XDG_RUNTIME_DIR=self.path('run'))
        self.env.setdefault('LIBGUESTFS_BACKEND', 'direct')
        self.env.setdefault('LIBGUESTFS_BACKEND_SETTINGS', 'force_tcg')
        os.makedirs(self.path('home'))
        os.makedirs(self.path('run'), mode=0o700)
        self.mounted = []

    def path(self, *names):
        return os.path.join(self.tmp, *names)

    def vhdx(self, *args, env=None):
        return run([TOOL] + list(args), env or self.env)

    def need_tools(self):
        if QEMU_IMG is None or NBDKIT is None or GUESTMOUNT is None:
            raise Skip('qemu-img, nbdkit or guestmount (libguestfs-tools) is not installed')
        if not os.path.exists('/dev/fuse'):
            raise Skip('no /dev/fuse')

    def mount(self, *args):
        """`vhdx mount ARGS`; returns its standard output."""
        result = self.vhdx('mount', *args)
        check_ok(result, 'vhdx mount %s' % ' '.join(args))
        return result.stdout.decode()

    def mount_at(self, name, *args):
        """`vhdx mount ARGS MOUNTPOINT` at a new directory @name, which the
        cleanup then unmounts; returns the mount point and the output."""
        mountpoint = self.path(name)
        os.mkdir(mountpoint)
        out = self.mount(*args, mountpoint)
        self.mounted.append(mountpoint)
        return mountpoint, out

    def umount(self, mountpoint, image):
        """`vhdx umount`, then: no process of the mount left, its state
        gone, and @image released (check --repair opens it)."""
        check_ok(self.vhdx('umount', mountpoint), 'vhdx umount')
        self.mounted.remove(mountpoint)
        expect_equal(self.processes(), [], 'processes left after umount')
        expect_equal(os.listdir(os.path.join(self.path('run'), 'vhdx')), [],
                     'the state of the mount after umount')
        check_ok(self.vhdx('check', '--repair', image), 'vhdx check --repair after umount')

    def processes(self):
        """The processes whose command line names the test's directory."""
        found = []
        for pid in os.listdir('/proc'):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    cmdline = f.read()
            except OSError:
                continue
            if self.tmp.encode() in cmdline and b'test-mount.py' not in cmdline:
                found.append(cmdline.replace(b'\0', b' ').decode(errors='replace'))
        return found

    def close(self):
        """Unmount what a failed test left mounted, and stop its processes."""
        for mountpoint in list(self.mounted):
            self.vhdx('umount', mountpoint)
            subprocess.run(['fusermount3', '-u', '-z', mountpoint], stderr=subprocess.DEVNULL)
        for pid in os.listdir('/proc'):
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    if self.tmp.encode() in f.read() and int(pid) != os.getpid():
                        os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                continue
        time.sleep(0.5)

    def ext4_image(self, name):
        """A dynamic image that QEMU made of an ext4 disk holding hello.txt and docs/."""
        tree = self.path(name + '-tree')
        hello_tree(tree)
        raw = self.path(name + '.raw')
        ext4_raw(raw, tree)
        image = self.path(name + '.vhdx')
        check_ok(run([QEMU_IMG, 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic',
                      raw, image], self.env), 'qemu-img convert')
        return image

    def expect_hello(self, mountpoint):
        expect_equal(sorted(os.listdir(mountpoint)), ['docs', 'hello.txt', 'lost+found'],
                     'the root of the file system')
        with open(os.path.join(mountpoint, 'hello.txt')) as f:
            expect_equal(f.read(), 'Hello from a VHDX disk\n', 'hello.txt')
        with open(os.path.join(mountpoint, 'docs', 'notes.txt')) as f:
            expect_equal(f.read(), ''.join('%d\n' % i for i in range(1000)), 'docs/notes.txt')

    def expect_written(self, raw, name):
        """The ext4 file system of @raw's partition 1 holds what a --rw
        mount wrote, as debugfs reads it, and e2fsck finds it clean."""
        need_programs('debugfs', 'e2fsck')
        part = raw + '.part1'
        partition_1(raw, part)
        check_ok(run([sbin('e2fsck'), '-fn', part], self.env), 'e2fsck -fn of %s' % name)
        out = check_ok(run([sbin('debugfs'), '-R', 'cat /written/new.txt', part], self.env),
                       'debugfs').stdout
        expect_equal(out, b'written through vhdx mount --rw\n' * 1000, '%s: /written/new.txt'
                     % name)
        out = check_ok(run([sbin('debugfs'), '-R', 'cat /hello.txt', part], self.env),
                       'debugfs').stdout
        expect_equal(out, b'Hello from a VHDX disk\n', '%s: /hello.txt' % name)

    def write_through(self, mountpoint):
        os.mkdir(os.path.join(mountpoint, 'written'))
        with open(os.path.join(mountpoint, 'written', 'new.txt'), 'w') as f:
            f.write('written through vhdx mount --rw\n' * 1000)

    def test_read_only_where_the_tool_chooses(self):
        self.need_tools()
        image = self.ext4_image('disk')
        before = sha256(image)
        report = json.loads(self.mount('--json', image))
        mountpoint = report['mountpoint']
        self.mounted.append(mountpoint)
        expect_equal(mountpoint, self.path('home', 'VHDX', 'disk'), 'the mount point chosen')
        expect_equal((report['read-only'], report['inspected'], report['device'], report['type']),
                     (True, False, '/dev/sda1', 'ext4'), 'what was mounted')
        expect_equal(report['file-systems'], ['/dev/sda1: ext4'], 'the file systems found')
        self.expect_hello(mountpoint)
        try:
            open(os.path.join(mountpoint, 'new.txt'), 'w').close()
            written = True
        except OSError:
            written = False
        expect(not written, 'a file was created on a read-only mount')
        self.umount(mountpoint, image)
        expect(not os.path.exists(mountpoint), 'the mount point the tool made is left')
        expect_equal(sha256(image), before, 'sha256 of the image mounted read-only')

    def test_read_write_partition(self):
        self.need_tools()
        image = self.ext4_image('rw')
        mountpoint, out = self.mount_at('mnt-rw', '--rw', '--partition=1', image)
        expect_equal(out, '', 'output with a mount point given')
        self.expect_hello(mountpoint)
        self.write_through(mountpoint)
        self.umount(mountpoint, image)
        expect(os.path.isdir(mountpoint) and not os.listdir(mountpoint),
               'the mount point given is left empty')
        check_ok(self.vhdx('check', image), 'vhdx check')
        check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', image], self.env), 'qemu-img check')
        raw = self.path('rw-after.raw')
        check_ok(run([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', image, raw], self.env),
                 'qemu-img convert')
        self.expect_written(raw, 'QEMU\'s reading of the image')

    def test_differencing_child_read_write(self):
        self.need_tools()
        base = self.ext4_image('base')
        child = self.path('base_6D2B0C51.avhdx')
        check_ok(self.vhdx('create', '--parent', base, child), 'vhdx create --parent')
        before = sha256(base)
        mountpoint, _ = self.mount_at('mnt-child', '--rw', '--partition=1', child)
        self.expect_hello(mountpoint)
        self.write_through(mountpoint)
        self.umount(mountpoint, child)
        expect_equal(sha256(base), before, 'sha256 of the parent')
        check_ok(self.vhdx('check', child), 'vhdx check of the child')
        raw = self.path('child-after.raw')
        with open(raw, 'wb') as f:
            f.write(check_ok(self.vhdx('cat', child), 'vhdx cat').stdout)
        self.expect_written(raw, 'the child')

    def test_ntfs_4k_sectors(self):
        self.need_tools()
        need_programs('mkntfs', 'ntfscp')
        sector = 4096
        part = self.path('ntfs.part')
        with open(part, 'wb') as f:
            f.truncate(63 * MiB)
        check_ok(run([sbin('mkntfs'), '-q', '-F', '-Q', '-s', sector, '-p', MiB // sector,
                      '-H', 255, '-S', 63, '-L', 'DATA', part], self.env), 'mkntfs')
        hello = self.path('hello-ntfs.txt')
        with open(hello, 'w') as f:
            f.write('Hello from NTFS on 4 KiB sectors\n')
        check_ok(run([sbin('ntfscp'), '-q', part, hello, 'Hello.txt'], self.env), 'ntfscp')
        raw = self.path('ntfs.raw')
        with open(raw, 'wb') as f:
            # An MBR counting in 4 KiB sectors: one NTFS partition from 1 MiB.
            entry = struct.pack('<B3sB3sII', 0, b'\xfe\xff\xff', 0x07, b'\xfe\xff\xff',
                                MiB // sector, 63 * MiB // sector)
            f.write(bytes(446) + entry + bytes(48) + b'\x55\xaa')
            f.seek(MiB)
            with open(part, 'rb') as src:
                shutil.copyfileobj(src, f)
        image = self.path('ntfs.vhdx')
        check_ok(self.vhdx('convert', '--logical-sector-size=%d' % sector, raw, image),
                 'vhdx convert')
        before = sha256(image)
        mountpoint, out = self.mount_at('mnt-ntfs', '--json', image)
        report = json.loads(out)
        expect_equal((report['device'], report['type']), ('/dev/sda1', 'ntfs'),
                     'what was mounted')
        expect('Hello.txt' in os.listdir(mountpoint), 'the NTFS root: %r' % os.listdir(mountpoint))
        with open(os.path.join(mountpoint, 'Hello.txt')) as f:
            expect_equal(f.read(), 'Hello from NTFS on 4 KiB sectors\n', 'Hello.txt')
        # Unmounted as a file manager does, without the tool: the server
        # stops all the same; `vhdx umount` then only forgets the mount.
        check_ok(run(['fusermount3', '-u', mountpoint], self.env), 'fusermount3 -u')
        for _ in range(POLLS):
            if not self.processes():
                break
            time.sleep(0.05)
        expect_equal(self.processes(), [], 'processes left after fusermount3 -u')
        self.umount(mountpoint, image)
        expect_equal(sha256(image), before, 'sha256 of the image mounted read-only')

    def test_operating_system_inspected(self):
        self.need_tools()
        need_programs('sfdisk', 'mkfs.ext4')
        # A Debian root in partition 2 whose fstab mounts partition 1 at /boot.
        boot, root = self.path('os-boot'), self.path('os-root')
        os.makedirs(boot)
        with open(os.path.join(boot, 'marker.txt'), 'w') as f:
            f.write('the boot partition\n')
        for d in ('etc', 'bin', 'boot', 'usr/bin', 'home/user'):
            os.makedirs(os.path.join(root, d))
        files = {
            'etc/os-release': 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\n',
            'etc/debian_version': '12.5\n',
            'etc/fstab': '/dev/sda2 / ext4 defaults 0 1\n/dev/sda1 /boot ext4 defaults 0 2\n',
            'home/user/notes.txt': 'notes of the user\n',
        }
        for name, text in files.items():
            with open(os.path.join(root, name), 'w') as f:
                f.write(text)
        shutil.copy('/bin/ls', os.path.join(root, 'bin', 'ls'))
        raw = self.path('os.raw')
        with open(raw, 'wb') as f:
            f.truncate(96 * MiB)
        check_ok(subprocess.run([sbin('sfdisk'), '-q', raw],
                                input=b'label: dos\nstart=2048, size=32768, type=83\n'
                                      b'start=34816, type=83\n',
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE), 'sfdisk')
        for tree, offset, size in ((boot, MiB, 16 * MiB), (root, 17 * MiB, 79 * MiB)):
            check_ok(run([sbin('mkfs.ext4'), '-q', '-F', '-d', tree, '-E', 'offset=%d' % offset,
                          raw, '%dk' % (size // KiB)], self.env), 'mkfs.ext4')
        image = self.path('os.vhdx')
        check_ok(run([QEMU_IMG, 'convert', '-f', 'raw', '-O', 'vhdx', raw, image], self.env),
                 'qemu-img convert')
        mountpoint, out = self.mount_at('mnt-os', '--json', image)
        report = json.loads(out)
        expect_equal((report['inspected'], report['device']), (True, '/dev/sda2'),
                     'what inspection found')
        with open(os.path.join(mountpoint, 'home', 'user', 'notes.txt')) as f:
            expect_equal(f.read(), 'notes of the user\n', 'a file of the root file system')
        with open(os.path.join(mountpoint, 'boot', 'marker.txt')) as f:
            expect_equal(f.read(), 'the boot partition\n', 'a file of /boot, as fstab mounts it')
        self.umount(mountpoint, image)

    def test_btrfs_sample(self):
        self.need_tools()
        image = self.path('windows10-btrfs.vhdx')
        clitest.sample('windows10-btrfs.vhdx.gz', image)
        raw = self.path('windows10-btrfs.raw')
        check_ok(run([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', image, raw], self.env),
                 'qemu-img convert')
        listing = check_ok(run(['guestfish', '--ro', '--format=raw', '-a', raw, '-m', '/dev/sda1',
                                'ls', '/'], self.env), 'guestfish ls of the raw disk').stdout
        expected = sorted(listing.decode().split())
        expect(expected, 'guestfish lists nothing')
        before = sha256(image)
        mountpoint, out = self.mount_at('mnt-btrfs', '--json', image)
        report = json.loads(out)
        expect_equal((report['device'], report['type']), ('/dev/sda1', 'btrfs'),
                     'what was mounted')
        expect_equal(sorted(os.listdir(mountpoint)), expected, 'the root of the btrfs partition')
        self.umount(mountpoint, image)
        expect_equal(sha256(image), before, 'sha256 of the sample mounted read-only')

    def test_nothing_to_mount(self):
        self.need_tools()
        image = self.path('windows10-swap.vhdx')
        clitest.sample('windows10-swap.vhdx.gz', image)
        before = sha256(image)
        result = self.vhdx('mount', image)
        expect_equal(result.returncode, 1, 'exit status of a disk of swap alone')
        last = result.stderr.decode().strip().splitlines()[-1]
        expect(last.startswith('vhdx: %s: ' % image) and '/dev/sda: swap' in last and
               '--partition' in last, 'the error names the file systems found: %r' % last)
        expect_equal(os.listdir(self.path('home', 'VHDX')), [], 'the mount point made is left')
        expect_equal(self.processes(), [], 'processes left after the failure')
        expect_equal(os.listdir(os.path.join(self.path('run'), 'vhdx')), [],
                     'the state of the mount after the failure')
        check_ok(self.vhdx('check', '--repair', image), 'vhdx check --repair after the failure')
        expect_equal(sha256(image), before, 'sha256 of the sample')

    def test_without_guestmount(self):
        if QEMU_IMG is None or NBDKIT is None:
            raise Skip('qemu-img or nbdkit is not installed')
        image = self.path('missing.vhdx')
        check_ok(self.vhdx('create', image, '64M'), 'vhdx create')
        bin_dir = self.path('bin')
        os.makedirs(bin_dir)
        os.symlink(NBDKIT, os.path.join(bin_dir, 'nbdkit'))
        result = self.vhdx('mount', image, self.tmp, env=dict(self.env, PATH=bin_dir))
        expect_equal(result.returncode, 1, 'exit status without guestmount')
        expect_equal(result.stderr.decode().splitlines(),
                     ['vhdx: %s: mounting needs guestmount (Debian package libguestfs-tools), '
                      'which is not installed' % image], 'the error')

    def test_umount_not_mounted(self):
        directory = self.path('not-mounted')
        os.mkdir(directory)
        result = self.vhdx('umount', directory)
        expect_equal(result.returncode, 1, 'exit status')
        expect_equal(result.stderr.decode().splitlines(),
                     ['vhdx: %s: not mounted by \'vhdx mount\'' % directory], 'the error')


class TestsClosing(Tests):
    """The tests, leaving no mount and no process behind even when one fails."""

    def __getattribute__(self, name):
        attr = object.__getattribute__(self, name)
        if not name.startswith('test_'):
            return attr

        def guarded():
            try:
                attr()
            finally:
                self.close()
        return guarded


if __name__ == '__main__':
    sys.exit(clitest.main(TestsClosing, 'vhdx-mount-'))
