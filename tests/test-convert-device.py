#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `vhdx convert -O raw` onto a block device, end to end, printed as TAP: a
# loop device over a sparse file, filled with garbage that holds no zero
# byte and larger than the disk, takes a dynamic image made by QEMU, a
# checkpoint, and a raw disk that ends inside a sector; each time its first
# SIZE bytes must be the disk (zeros where the disk reads as zeros, so the
# garbage there must have been zeroed) and the rest must still be the
# garbage.  Refused, with one error line and the device unchanged: a device
# smaller than the disk, VHDX or qcow2 output (and `vhdx create`) onto a
# device, a device held open exclusively by another program (as a mount
# holds it), and the source device itself as the destination.
#
# Oracles: `qemu-img convert -O raw` of the image QEMU made; the raw disk
# that the checkpoint was made from.
#
# Needs root and loop devices (losetup); skipped without them.
# Environment: VHDX_TOOL (required).

import os
import shutil
import stat
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'common'))
import clitest  # noqa: E402
from clitest import TOOL, Skip, expect, expect_equal, ok, vhdx, write_raw  # noqa: E402

KiB = 1024
MiB = 1024 * KiB

QEMU_IMG = shutil.which('qemu-img')
QEMU_IO = shutil.which('qemu-io')
LOSETUP = shutil.which('losetup', path=os.environ.get('PATH', '') + ':/usr/sbin:/sbin')

# How much larger than the disk the devices are: the part convert must leave alone.
SPARE = 5 * MiB + 3 * KiB


def garbage(size):
    """@size bytes that are never zero, and not the same from one sector to the next."""
    unit = bytes((i * 131 + i // 509) % 255 + 1 for i in range(MiB + 509))
    return (unit * (size // len(unit) + 1))[:size]


def first_difference(found, expected):
    for offset in range(0, min(len(found), len(expected)), 4096):
        if found[offset:offset + 4096] != expected[offset:offset + 4096]:
            chunk = zip(found[offset:offset + 4096], expected[offset:offset + 4096])
            return offset + next(i for i, (a, b) in enumerate(chunk) if a != b)
    return min(len(found), len(expected))


class LoopDevice:
    """A loop device over a new sparse file of @size bytes, filled with
    garbage through the device; detached on leaving."""

    def __init__(self, backing, size):
        self.backing = backing
        self.size = size
        self.path = None

    def __enter__(self):
        with open(self.backing, 'wb') as f:
            f.truncate(self.size)
        result = clitest.run([LOSETUP, '--find', '--show', self.backing])
        if result.returncode != 0:
            os.unlink(self.backing)
            raise Skip('no loop device: losetup --find --show: %s'
                       % result.stderr.decode(errors='replace').strip())
        self.path = result.stdout.decode().strip()
        try:
            self.garbage = garbage(self.size)
            with open(self.path, 'r+b', buffering=0) as f:
                f.write(self.garbage)
                os.fsync(f.fileno())
            expect_equal(self.read(), self.garbage, 'the garbage read back')
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.path is not None:
            ok([LOSETUP, '--detach', self.path])
            self.path = None
        os.unlink(self.backing)
        return False

    def read(self, path=None):
        with open(path or self.path, 'rb') as f:
            return f.read()

    def expect_disk(self, disk, what):
        """The device's first len(@disk) bytes are @disk; the rest is still the garbage."""
        found = self.read()
        expect_equal(len(found), self.size, '%s: device size' % what)
        if found[:len(disk)] != disk:
            raise AssertionError('%s: the device differs from the disk at byte %d' % (
                what, first_difference(found[:len(disk)], disk)))
        if found[len(disk):] != self.garbage[len(disk):]:
            raise AssertionError('%s: the device past the disk (%d bytes) was changed at '
                                 'byte %d' % (what, len(disk), len(disk) + first_difference(
                                     found[len(disk):], self.garbage[len(disk):])))
        expect(stat.S_ISBLK(os.stat(self.path).st_mode), '%s: still a block device' % what)
        leftovers = [n for n in os.listdir(os.path.dirname(self.path))
                     if n.startswith(os.path.basename(self.path) + '.')]
        expect(not leftovers, '%s: files left beside the device: %r' % (what, leftovers))

    def expect_unchanged(self, what):
        expect(self.read() == self.garbage, '%s: the device was written' % what)
        expect(stat.S_ISBLK(os.stat(self.path).st_mode), '%s: still a block device' % what)
        leftovers = [n for n in os.listdir(os.path.dirname(self.path))
                     if n.startswith(os.path.basename(self.path) + '.')]
        expect(not leftovers, '%s: files left beside the device: %r' % (what, leftovers))


def need_loop_devices():
    if os.geteuid() != 0:
        raise Skip('loop devices need root')
    if LOSETUP is None:
        raise Skip('losetup is not installed')
    if not os.path.exists('/dev/loop-control'):
        raise Skip('no /dev/loop-control: loop devices are not available')


def need_qemu():
    if QEMU_IMG is None or QEMU_IO is None:
        raise Skip('qemu-img or qemu-io is not installed')


def expect_refused(result, device, words, what):
    """One error line, `vhdx: DEVICE: ...` holding @words, and exit status 1."""
    stderr = result.stderr.decode(errors='replace')
    expect_equal(result.returncode, 1, '%s: exit status (%s)' % (what, stderr.strip()))
    lines = stderr.splitlines()
    expect(len(lines) == 1 and lines[0].startswith('vhdx: %s: ' % device),
           '%s: one error line naming the device: %r' % (what, stderr))
    for word in words:
        expect(word in lines[0], '%s: %r not in %r' % (what, word, lines[0]))


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp
        self._qemu_image = None

    def path(self, *names):
        return os.path.join(self.tmp, *names)

    def loop(self, name, size):
        return LoopDevice(self.path(name + '.backing'), size)

    def qemu_image(self):
        """A dynamic image made and written by QEMU, and its disk as QEMU reads it."""
        need_qemu()
        if self._qemu_image is None:
            img, raw = self.path('qemu.vhdx'), self.path('qemu.raw')
            ok([QEMU_IMG, 'create', '-q', '-f', 'vhdx', '-o', 'subformat=dynamic,block_size=1M',
                img, '40M'])
            ok([QEMU_IO, '-f', 'vhdx',
                '-c', 'write -P 0xa5 0 4K',
                '-c', 'write -P 0x3c 3M 1500K',
                '-c', 'write -P 0x00 10M 64K',  # a block of zeros, stored
                '-c', 'write -P 0x5e 20M 2M',
                '-c', 'write -P 0x77 39M 1M',  # the last block
                img])
            ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', img, raw])
            with open(raw, 'rb') as f:
                disk = f.read()
            expect_equal(len(disk), 40 * MiB, 'qemu-img convert: size')
            self._qemu_image = (img, disk)
        return self._qemu_image

    def test_qemu_dynamic(self):
        need_loop_devices()
        img, disk = self.qemu_image()
        with self.loop('dynamic', len(disk) + SPARE) as dev:
            ok([TOOL, 'convert', '-O', 'raw', img, dev.path])
            dev.expect_disk(disk, 'convert')
            # What the device holds reached its backing file: the sync.
            backing = dev.read(dev.backing)
            expect(backing[:len(disk)] == disk, 'the backing file after the sync')

    def test_no_sync(self):
        need_loop_devices()
        img, disk = self.qemu_image()
        with self.loop('nosync', len(disk) + SPARE) as dev:
            ok([TOOL, 'convert', '--no-sync', '--progress', '-O', 'raw', img, dev.path])
            dev.expect_disk(disk, 'convert --no-sync')

    def test_exact_size(self):
        need_loop_devices()
        img, disk = self.qemu_image()
        with self.loop('exact', len(disk)) as dev:
            ok([TOOL, 'convert', '-O', 'raw', img, dev.path])
            dev.expect_disk(disk, 'a device of the disk\'s size')

    def test_checkpoint(self):
        need_loop_devices()
        base_raw, raw = self.path('base.raw'), self.path('child.raw')
        base_writes = [(0x21, 0, 6 * MiB), (0x22, 30 * MiB, 2 * MiB)]
        write_raw(base_raw, 48 * MiB, base_writes)
        write_raw(raw, 48 * MiB, base_writes + [(0x23, 4 * MiB, 4 * MiB), (0x00, 30 * MiB, MiB),
                                                (0x24, 47 * MiB + 512, 4 * KiB)])
        base, child = self.path('base.vhdx'), self.path('vm_6D2B0C51.avhdx')
        ok([TOOL, 'convert', base_raw, base])
        ok([TOOL, 'convert', '--parent', base, raw, child])
        with open(raw, 'rb') as f:
            disk = f.read()
        with self.loop('checkpoint', len(disk) + SPARE) as dev:
            ok([TOOL, 'convert', '-O', 'raw', child, dev.path])
            dev.expect_disk(disk, 'a checkpoint')

    def test_raw_source_ending_inside_a_sector(self):
        # The kernel zeroes whole sectors: the last 1000 bytes, a hole of
        # the source, are written as zeros, and the rest of that sector is
        # left as it was.
        need_loop_devices()
        raw = self.path('odd.raw')
        write_raw(raw, 5 * MiB + 1000, [(0x41, MiB, MiB), (0x42, 4 * MiB, 100)])
        with open(raw, 'rb') as f:
            disk = f.read()
        with self.loop('odd', 8 * MiB) as dev:
            ok([TOOL, 'convert', '-O', 'raw', raw, dev.path])
            dev.expect_disk(disk, 'a raw disk of 5 MiB + 1000 bytes')

    def test_device_too_small(self):
        need_loop_devices()
        img, disk = self.qemu_image()
        with self.loop('small', len(disk) - MiB) as dev:
            result = vhdx('convert', '-O', 'raw', img, dev.path)
            expect_refused(result, dev.path, [str(len(disk) - MiB), str(len(disk))],
                           'a device smaller than the disk')
            dev.expect_unchanged('a device smaller than the disk')

    def test_only_raw_onto_a_device(self):
        need_loop_devices()
        img, disk = self.qemu_image()
        with self.loop('format', len(disk) + SPARE) as dev:
            for args in (['-O', 'vhdx'], ['-O', 'qcow2'], ['--type=fixed'],
                         ['--parent', img]):
                result = vhdx('convert', *args, img, dev.path)
                what = 'convert %s' % ' '.join(args)
                expect_refused(result, dev.path, ['raw'], what)
                dev.expect_unchanged(what)
            result = vhdx('create', dev.path, '1M')
            expect_refused(result, dev.path, ['block device'], 'create')
            dev.expect_unchanged('create')

    def test_device_held_exclusively(self):
        # O_EXCL claims the device as a mount does: the kernel refuses a
        # second claim while this one is open.
        need_loop_devices()
        img, disk = self.qemu_image()
        with self.loop('held', len(disk) + SPARE) as dev:
            fd = os.open(dev.path, os.O_RDONLY | os.O_EXCL)
            try:
                result = vhdx('convert', '-O', 'raw', img, dev.path)
            finally:
                os.close(fd)
            expect_refused(result, dev.path, ['in use'], 'a device held open exclusively')
            dev.expect_unchanged('a device held open exclusively')
            # Free again, it is written.
            ok([TOOL, 'convert', '-O', 'raw', img, dev.path])
            dev.expect_disk(disk, 'after the other program let it go')

    def test_device_is_the_source(self):
        need_loop_devices()
        with self.loop('itself', 4 * MiB) as dev:
            result = vhdx('convert', '-O', 'raw', dev.path, dev.path)
            expect_refused(result, dev.path, ['source'], 'the source device as the destination')
            dev.expect_unchanged('the source device as the destination')


if __name__ == '__main__':
    sys.exit(clitest.main(Tests, 'vhdx-convert-device-'))
