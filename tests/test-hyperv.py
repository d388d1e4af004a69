#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Hyper-V checkpoints as people find them on Linux, printed as TAP: a
# checkpoint (.avhdx) whose locator holds Windows paths, laid out as a
# Hyper-V export keeps it (Snapshots/ beside Virtual Hard Disks/), copied
# with or without its parent; parents found through --parent-dir; a wrong
# parent refused, and accepted with --ignore-parent-mismatch; files that are
# not files (FIFOs) as images and as parents.
#
# Oracles: QEMU makes the base image and writes into it (qemu-img,
# qemu-io); libvhdi (vhdi-cat, vhdiinfo) reads the chain; the locator is
# rewritten from the specification (tests/common/vhdxspec.py), as Hyper-V
# writes it; the expected disk is the raw bytes the test wrote.
#
# Environment: VHDX_TOOL (required), VHDX_VHDI_CAT (when libvhdi was found).

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'common'))
import vhdxspec  # noqa: E402

MiB = 1024 * 1024

TOOL = os.environ.get('VHDX_TOOL')
VHDI_CAT = os.environ.get('VHDX_VHDI_CAT')
QEMU_IMG = shutil.which('qemu-img')
QEMU_IO = shutil.which('qemu-io')
VHDIINFO = shutil.which('vhdiinfo')
ENV = dict(os.environ, LC_ALL='C.UTF-8')
# A run that has not ended after this is stuck (a FIFO opened without
# O_NONBLOCK blocks forever); it is a hang detector, not a time limit.
HANG_SECONDS = 120

PARENT_NAME = 'Generation 1.vhdx'
CHILD_NAME = 'Generation 1_49C4A2D1-7E3B-4F0A-9C55-1B2D3E4F5A6B.avhdx'
WINDOWS_DIR = 'C:\\Users\\Public\\Documents\\Hyper-V\\Virtual hard disks'
VOLUME = '\\\\?\\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}'


class Skip(Exception):
    pass


def run(args):
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=ENV, timeout=HANG_SECONDS)


def ok(args):
    result = run(args)
    if result.returncode != 0:
        raise AssertionError('%s exited with %d: %s' % (
            ' '.join(str(a) for a in args), result.returncode,
            result.stderr.decode(errors='replace').strip()))
    return result


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def expect_equal(found, expected, what):
    if found != expected:
        raise AssertionError('%s: expected %r, found %r' % (what, expected, found))


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256(path):
    with open(path, 'rb') as f:
        return sha256_bytes(f.read())


def need(*programs):
    for name, program in programs:
        if not program:
            raise Skip('%s is not available' % name)


class Checkpoint:
    """A base made by QEMU and a checkpoint of it with Windows paths in its
    locator, 2 MiB blocks and partially present blocks, in an export folder."""

    def __init__(self, tmp):
        need(('qemu-img', QEMU_IMG), ('qemu-io', QEMU_IO))
        self.export = os.path.join(tmp, 'export')
        self.disks = os.path.join(self.export, 'Virtual Hard Disks')
        self.snapshots = os.path.join(self.export, 'Snapshots')
        os.makedirs(self.disks)
        os.makedirs(self.snapshots)
        self.parent = os.path.join(self.disks, PARENT_NAME)
        self.child = os.path.join(self.snapshots, CHILD_NAME)
        self.size = 64 * MiB

        # The base: dynamic, 32 MiB blocks, data written by qemu-io.
        ok([QEMU_IMG, 'create', '-q', '-f', 'vhdx', '-o', 'subformat=dynamic', self.parent,
            str(self.size)])
        ok([QEMU_IO, '-f', 'vhdx', '-c', 'write -P 0x5a 0 4M', '-c', 'write -P 0xc3 40M 1M',
            self.parent])
        self.base_raw = os.path.join(tmp, 'base.raw')
        ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', self.parent, self.base_raw])

        # The disk as the checkpoint has it: a few runs of sectors changed
        # inside blocks that keep other sectors of the parent's (partially
        # present), and some in a block the parent does not store.
        with open(self.base_raw, 'rb') as f:
            disk = bytearray(f.read())
        rng = random.Random(14)
        for offset, length in ((3 * 512, 512), (1 * MiB + 7 * 512, 6 * 512),
                               (40 * MiB + 4096, 8192), (20 * MiB, 2 * MiB)):
            disk[offset:offset + length] = rng.randbytes(length)
        self.disk = bytes(disk)
        self.raw = os.path.join(tmp, 'checkpoint.raw')
        with open(self.raw, 'wb') as f:
            f.write(self.disk)

        ok([TOOL, 'convert', '--parent', self.parent, self.raw, self.child])
        linkage = vhdxspec.Vhdx(self.child).parent_locator()['parent_linkage']
        # As Hyper-V writes it, the checkpoint having lived beside its parent.
        self.locator = [
            ('parent_linkage', linkage),
            ('relative_path', '.\\' + PARENT_NAME),
            ('volume_path', VOLUME + WINDOWS_DIR[2:] + '\\' + PARENT_NAME),
            ('absolute_win32_path', '\\\\?\\' + WINDOWS_DIR + '\\' + PARENT_NAME),
        ]
        vhdxspec.write_parent_locator(self.child, self.locator)
        spec = vhdxspec.Vhdx(self.child)
        expect_equal(spec.block_size, 2 * MiB, 'the checkpoint\'s block size')
        states = {spec.payload_entry(b)[0] for b in range(spec.payload_blocks)}
        expect(vhdxspec.PARTIALLY_PRESENT in states, 'partially present blocks: %r' % states)

    def info(self, *args):
        return json.loads(ok([TOOL, 'info', '--json'] + list(args) + [self.child]).stdout)


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp
        self.serial = 0

    def checkpoint(self):
        self.serial += 1
        folder = os.path.join(self.tmp, str(self.serial))
        os.makedirs(folder)
        return Checkpoint(folder)

    def test_export_layout(self):
        """The export as Hyper-V wrote it: the parent is found beside the checkpoint."""
        c = self.checkpoint()
        info = c.info()
        expect_equal(info['full-backing-filename'], c.parent, 'the parent found')
        expect_equal(info['backing-filename'], '.\\' + PARENT_NAME, 'backing-filename')
        expect_equal(info['format-specific']['data']['parent-missing'], False, 'parent-missing')
        out = ok([TOOL, 'cat', c.child]).stdout
        expect_equal(sha256_bytes(out), sha256_bytes(c.disk), 'vhdx cat of the chain')
        if VHDI_CAT:
            vhdi = ok([VHDI_CAT, c.child, c.parent]).stdout
            expect_equal(sha256_bytes(vhdi), sha256_bytes(c.disk), 'libvhdi reads the chain')
        ok([TOOL, 'check', c.child])

    def test_orphaned_checkpoint(self):
        """The checkpoint copied without its parent: described, checked, mapped, not read."""
        c = self.checkpoint()
        os.unlink(c.parent)
        result = ok([TOOL, 'info', c.child])
        text = result.stdout.decode()
        expect('Parent:               missing' in text, 'text info says missing: %s' % text)
        for key, value in c.locator:
            expect('  %-20s%s' % (key, value) in text, 'text info shows %s: %s' % (key, text))
        info = c.info()
        data = info['format-specific']['data']
        expect_equal(data['disk-type'], 'differencing', 'disk type')
        expect_equal(data['parent-locator'], dict(c.locator), 'parent-locator')
        expect_equal(data['parent-missing'], True, 'parent-missing')
        expect_equal(info['backing-filename'], '.\\' + PARENT_NAME, 'backing-filename')
        expect('full-backing-filename' not in info, 'no full-backing-filename')
        # Where it was looked for: relative_path, then the locator's file
        # name beside the checkpoint and in the export's folders.
        expected_tried = [os.path.join(c.snapshots, PARENT_NAME),
                          os.path.join(c.disks, PARENT_NAME)]
        expect_equal(data['parent-tried'], expected_tried, 'parent-tried')
        for path in expected_tried:
            expect(path in data['parent-error'], 'parent-error names %s' % path)
        expect_equal(info['virtual-size'], c.size, 'virtual size')
        if VHDIINFO:
            found = {}
            for line in ok([VHDIINFO, c.child]).stdout.decode(errors='replace').splitlines():
                key, sep, value = line.strip().partition(':')
                if sep:
                    found[key.strip()] = value.strip()
            expect_equal(found.get('Media size', '').split('(')[-1].split()[0], str(c.size),
                         'vhdiinfo media size')

        # check: the checkpoint's own structures are clean; the missing parent is one error.
        result = run([TOOL, 'check', '--json', c.child])
        expect_equal(result.returncode, 2, 'check: exit status')
        report = json.loads(result.stdout)
        expect_equal([(p['severity'], p['structure']) for p in report['problems']],
                     [('error', 'parent locator')], 'check: the problems')
        spec = vhdxspec.Vhdx(c.child)
        expect_equal(report['problems'][0]['offset'], spec.item_offsets[vhdxspec.PARENT_LOCATOR],
                     'check: the locator\'s offset')

        # map: the checkpoint's sectors, and the parent's ranges as such.
        extents = json.loads(ok([TOOL, 'map', '--json', c.child]).stdout)
        own = [(e['start'], e['length']) for e in extents if e['data']]
        expect_equal(own, [(3 * 512, 512), (1 * MiB + 7 * 512, 6 * 512),
                           (20 * MiB, 2 * MiB), (40 * MiB + 4096, 8192)], 'the checkpoint\'s data')
        for e in extents:
            if not e['data']:
                expect_equal((e['present'], e['zero'], e['depth']), (False, False, 1),
                             'a range of the missing parent at %d' % e['start'])
        expect_equal(sum(e['length'] for e in extents), c.size, 'the map covers the disk')

        # cat and convert need the data: a clear error.
        for args in (['cat', c.child], ['convert', c.child, os.path.join(c.export, 'x.raw')]):
            result = run([TOOL] + args)
            expect_equal(result.returncode, 1, '%s: exit status' % args[0])
            expect(b'cannot be found' in result.stderr, '%s: %r' % (args[0], result.stderr))

        # --backing-chain stops at the missing link.
        chain = json.loads(ok([TOOL, 'info', '--json', '--backing-chain', c.child]).stdout)
        expect_equal(len(chain), 1, 'the chain ends at the missing parent')
        expect_equal(chain[0]['format-specific']['data']['parent-missing'], True, 'said so')

    def test_parent_dir(self):
        """The parent elsewhere: --parent-dir finds it; libvhdi reads the same chain."""
        c = self.checkpoint()
        elsewhere = os.path.join(self.tmp, 'elsewhere-%d' % self.serial)
        os.makedirs(elsewhere)
        moved = os.path.join(elsewhere, PARENT_NAME)
        os.rename(c.parent, moved)
        info = c.info('--parent-dir', elsewhere)
        expect_equal(info['full-backing-filename'], moved, 'found in --parent-dir')
        out = ok([TOOL, 'cat', '--parent-dir', elsewhere, c.child]).stdout
        expect_equal(sha256_bytes(out), sha256_bytes(c.disk), 'vhdx cat with --parent-dir')
        need(('vhdi-cat', VHDI_CAT))
        vhdi = ok([VHDI_CAT, c.child, moved]).stdout
        expect_equal(sha256_bytes(vhdi), sha256_bytes(out), 'libvhdi reads the same chain')
        # The name is matched without regard to case, as Windows does.
        lower = os.path.join(elsewhere, PARENT_NAME.lower())
        os.rename(moved, lower)
        info = c.info('--parent-dir', elsewhere)
        expect_equal(info['full-backing-filename'], lower, 'found whatever the case')

    def test_wrong_parent(self):
        """Another image under the parent's name is refused, and used on purpose."""
        c = self.checkpoint()
        os.unlink(c.parent)
        # An image of the same size, with other data: not the checkpoint's parent.
        ok([QEMU_IMG, 'create', '-q', '-f', 'vhdx', '-o', 'subformat=dynamic', c.parent,
            str(c.size)])
        ok([QEMU_IO, '-f', 'vhdx', '-c', 'write -P 0x11 0 8M', c.parent])
        found_guid = vhdxspec.Vhdx(c.parent).header['data-write-guid']
        expected_guid = dict(c.locator)['parent_linkage'].strip('{}').lower()
        result = run([TOOL, 'cat', c.child])
        expect_equal(result.returncode, 1, 'a wrong parent: exit status')
        message = result.stderr.decode().lower()
        expect(found_guid in message and expected_guid in message,
               'the error names both GUIDs: %s' % message)
        info = c.info()
        expect_equal(info['format-specific']['data']['parent-missing'], True,
                     'info: no parent taken')

        result = ok([TOOL, 'cat', '--ignore-parent-mismatch', c.child])
        warning = result.stderr.decode().lower()
        expect('warning' in warning and found_guid in warning and expected_guid in warning,
               'the warning names both GUIDs: %s' % warning)
        # The checkpoint's sectors over the other image's data: the checkpoint
        # stores the sectors in which its disk differs from its own parent's.
        other_raw = os.path.join(self.tmp, 'other-%d.raw' % self.serial)
        ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', c.parent, other_raw])
        with open(c.base_raw, 'rb') as f:
            base = f.read()
        with open(other_raw, 'rb') as f:
            expected = bytearray(f.read())
        for at in range(0, c.size, 512):
            if c.disk[at:at + 512] != base[at:at + 512]:
                expected[at:at + 512] = c.disk[at:at + 512]
        expect_equal(sha256_bytes(result.stdout), sha256_bytes(bytes(expected)),
                     'the checkpoint\'s sectors over the other parent\'s data')

    def test_fifos(self):
        """FIFOs as an image and as a parent give an error; nothing waits for a writer."""
        c = self.checkpoint()
        fifo = os.path.join(self.tmp, 'fifo-%d.vhdx' % self.serial)
        os.mkfifo(fifo)
        for command in ('info', 'check', 'map', 'cat'):
            result = run([TOOL, command, fifo])
            expect_equal(result.returncode, 1, '%s of a FIFO: exit status' % command)
            expect(b'Not a regular file' in result.stderr, '%s: %r' % (command, result.stderr))
        os.unlink(c.parent)
        os.mkfifo(c.parent)
        info = c.info()
        data = info['format-specific']['data']
        expect_equal(data['parent-missing'], True, 'a FIFO is not the parent')
        expect(c.parent in data['parent-error'] and 'Not a regular file' in data['parent-error'],
               'the error names the FIFO: %s' % data['parent-error'])
        result = run([TOOL, 'cat', c.child])
        expect_equal(result.returncode, 1, 'cat with a FIFO for a parent: exit status')

    def test_small_checkpoint(self):
        """A checkpoint of a 512 MiB disk that changes 6 sectors: 2 MiB blocks, a small file."""
        base = os.path.join(self.tmp, 'big-base.vhdx')
        raw = os.path.join(self.tmp, 'big.raw')
        child = os.path.join(self.tmp, 'six-sectors.avhdx')
        ok([TOOL, 'create', base, '512M'])
        with open(raw, 'wb') as f:
            f.truncate(512 * MiB)
            f.seek(300 * MiB)
            f.write(random.Random(6).randbytes(6 * 512))
        ok([TOOL, 'convert', '--parent', base, raw, child])
        spec = vhdxspec.Vhdx(child)
        expect_equal(spec.block_size, 2 * MiB, 'convert --parent: 2 MiB blocks')
        size = os.stat(child).st_size
        expect(size < 16 * MiB, 'the checkpoint is %d bytes, not under 16 MiB' % size)
        out = ok([TOOL, 'cat', child]).stdout
        expect_equal(sha256_bytes(out), sha256(raw), 'the checkpoint reads as the disk')
        empty = os.path.join(self.tmp, 'empty.avhdx')
        ok([TOOL, 'create', '--type=differencing', '--parent', base, empty])
        expect_equal(vhdxspec.Vhdx(empty).block_size, 2 * MiB, 'create: 2 MiB blocks')
        print('# the 6-sector checkpoint of a 512 MiB disk: %d bytes (%d on disk)'
              % (size, os.stat(child).st_blocks * 512))


def main():
    if TOOL is None:
        print('1..0 # SKIP VHDX_TOOL must be set')
        return 0
    names = [n for n in Tests.__dict__ if n.startswith('test_')]
    print('1..%d' % len(names))
    failed = 0
    with tempfile.TemporaryDirectory(prefix='vhdx-hyperv-') as tmp:
        tests = Tests(tmp)
        for number, name in enumerate(names, 1):
            label = name[len('test_'):].replace('_', ' ')
            try:
                getattr(tests, name)()
                print('ok %d - %s' % (number, label))
            except Skip as e:
                print('ok %d - %s # SKIP %s' % (number, label, e))
            except Exception:
                failed += 1
                print('not ok %d - %s' % (number, label))
                for line in traceback.format_exc().splitlines():
                    print('# ' + line)
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
