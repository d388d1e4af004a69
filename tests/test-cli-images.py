#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# End-to-end tests of the `vhdx` tool on images it creates and on dirty and
# differencing images, printed as TAP.
#
# Oracles: the raw bytes the tests write themselves; the test generator
# (vhdx-mkimage), which writes an image, the raw disk it must read as and a
# description of what it wrote; qemu-img check/compare/convert for fixed and
# dynamic images with 512-byte sectors (QEMU also replays dirty logs);
# libvhdi (through vhdi-cat, and vhdiinfo) for 4 KiB sectors and
# differencing images, which QEMU cannot open; and the structures of the
# images read from the bytes with tests/common/vhdxspec.py, written from the
# specification.
#
# Environment: VHDX_TOOL and VHDX_MKIMAGE (required); VHDX_VHDI_CAT (when
# libvhdi is found at build time).

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
MKIMAGE = os.environ.get('VHDX_MKIMAGE')
VHDI_CAT = os.environ.get('VHDX_VHDI_CAT')
QEMU_IMG = shutil.which('qemu-img')
VHDIINFO = shutil.which('vhdiinfo')
ENV = dict(os.environ, LC_ALL='C.UTF-8')


class Skip(Exception):
    pass


def run(args):
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=ENV, timeout=300)


def ok(args):
    result = run(args)
    if result.returncode != 0:
        raise AssertionError('%s exited with %d: %s' % (
            ' '.join(str(a) for a in args), result.returncode,
            result.stderr.decode(errors='replace').strip()))
    return result


def vhdx(*args):
    return run([TOOL] + list(args))


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def expect_equal(found, expected, what):
    if found != expected:
        raise AssertionError('%s: expected %r, found %r' % (what, expected, found))


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(MiB), b''):
            h.update(block)
    return h.hexdigest()


def cat_sha256(*args):
    return hashlib.sha256(ok([TOOL, 'cat'] + list(args)).stdout).hexdigest()


def need_qemu():
    if QEMU_IMG is None:
        raise Skip('qemu-img is not installed')


def need_libvhdi():
    if not VHDI_CAT:
        raise Skip('libvhdi was not found at build time (no vhdi-cat)')
    if VHDIINFO is None:
        raise Skip('vhdiinfo (libvhdi-utils) is not installed')


def vhdi_sha256(image, *parents):
    """sha256 of the virtual disk as libvhdi reads it, the parents given nearest first."""
    return hashlib.sha256(ok([VHDI_CAT, image] + list(parents)).stdout).hexdigest()


def vhdiinfo(image):
    """The 'Key : value' lines of vhdiinfo, as a dict."""
    found = {}
    for line in ok([VHDIINFO, image]).stdout.decode(errors='replace').splitlines():
        key, sep, value = line.strip().partition(':')
        if sep:
            found[key.strip()] = value.strip()
    return found


def qemu_replays_to(workdir, image, raw):
    """QEMU replays the dirty log of a copy of @image (`qemu-img check -r all`,
    which counts the replay as one corruption fixed) and reads it as @raw."""
    need_qemu()
    copy = os.path.join(workdir, os.path.basename(image) + '.qemu-replayed')
    shutil.copyfile(image, copy)
    report = json.loads(ok([QEMU_IMG, 'check', '-r', 'all', '--output=json', '-f', 'vhdx',
                            copy]).stdout)
    expect_equal((report.get('check-errors'), report.get('corruptions-fixed')), (0, 1),
                 'qemu-img check -r all: (check errors, corruptions fixed)')
    out = copy + '.raw'
    ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', copy, out])
    expect_equal(sha256(out), sha256(raw), 'qemu-img convert after QEMU\'s replay')
    os.unlink(copy)
    os.unlink(out)


def data_blocks(extents, block_size):
    """{block: file offset} from the data extents of `vhdx map --json`."""
    found = {}
    for e in extents:
        if not e['data']:
            continue
        for start in range(e['start'], e['start'] + e['length'], block_size):
            found[start // block_size] = e['offset'] + (start - e['start'])
    return found


def write_random_raw(path, size, regions, seed):
    """A sparse raw file with random data in (offset, length) regions."""
    rng = random.Random(seed)
    with open(path, 'wb') as f:
        f.truncate(size)
        for offset, length in regions:
            f.seek(offset)
            f.write(rng.randbytes(length))


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp

    def path(self, name):
        return os.path.join(self.tmp, name)

    # Dirty logs

    def dirty(self, name):
        """A dirty image from the generator: blocks 0-2 and 9 written, block 3
        (the first unallocated one) allocated through the log alone."""
        img, raw = self.path(name + '.vhdx'), self.path(name + '.raw')
        described = self.path(name + '.json')
        ok([MKIMAGE, '--size', '64M', '--block-size', '1M', '--pattern', '0:3M:1',
            '--pattern', '9M:4096:2', '--dirty', '--raw', raw, '--describe', described, img])
        with open(described, encoding='utf-8') as f:
            self.made = json.load(f)
        expect_equal(self.made['dirty']['start'], 3 * MiB, 'the block the log allocates')
        return img, raw

    def test_dirty_read_only(self):
        img, raw = self.dirty('dirty-ro')
        # The independent reader: QEMU replays the log of a copy.
        qemu_replays_to(self.tmp, img, raw)
        before = (sha256(img), os.stat(img).st_mtime_ns)
        info = json.loads(ok([TOOL, 'info', '--json', img]).stdout)
        expect_equal(info['dirty-flag'], True, 'dirty-flag')
        expect_equal(info['format-specific']['data']['log-state'], 'replayed-in-memory',
                     'log-state')
        expect_equal(cat_sha256(img), sha256(raw), 'cat of a dirty image')
        out = self.path('dirty-ro.out')
        ok([TOOL, 'convert', img, out])
        expect_equal(sha256(out), sha256(raw), 'convert of a dirty image')
        extents = json.loads(ok([TOOL, 'map', '--json', img]).stdout)
        expect_equal(sum(e['length'] for e in extents), 64 * MiB, 'map covers the disk')
        # The blocks the generator stored, and the one the log allocated
        # (block 3, at 8 MiB in the file): exactly those are data.
        stored = {b['block']: b['file-offset'] for b in self.made['blocks']}
        stored[self.made['dirty']['block']] = self.made['dirty']['file-offset']
        expect_equal(stored, {0: 4 * MiB, 1: 5 * MiB, 2: 6 * MiB, 3: 8 * MiB, 9: 7 * MiB},
                     'blocks the generator stored')
        expect_equal(data_blocks(extents, MiB), stored, 'data blocks and their file offsets')
        result = vhdx('check', img)
        expect_equal(result.returncode, 0, 'check exit status')
        report = json.loads(ok([TOOL, 'check', '--json', img]).stdout)
        expect_equal((report['check-errors'], report['warnings']), (0, 1),
                     'check: (errors, warnings)')
        problem = report['problems'][0]
        expect_equal((problem['severity'], problem['structure'], problem['offset']),
                     ('warning', 'log', self.made['log-offset']), 'the finding on the log')
        expect('1 entries' in problem['message'] and 'replayed in memory' in problem['message'],
               'the message says one entry was replayed in memory: %r' % problem['message'])
        expect_equal((sha256(img), os.stat(img).st_mtime_ns), before, 'image unchanged')

    def test_dirty_repair(self):
        img, raw = self.dirty('dirty-rw')
        qemu_replays_to(self.tmp, img, raw)
        result = ok([TOOL, 'check', '--json', '--repair', img])
        report = json.loads(result.stdout)
        expect_equal(report['log-replayed']['entries'], 1, 'entries replayed')
        expect_equal(report['check-errors'], 0, 'check errors')
        info = json.loads(ok([TOOL, 'info', '--json', img]).stdout)
        expect_equal(info['format-specific']['data']['log-state'], 'clean', 'log-state')
        expect_equal(info['dirty-flag'], False, 'dirty-flag')
        expect_equal(cat_sha256(img), sha256(raw), 'cat after repair')
        # The file itself: LogGuid cleared in the current header, the BAT
        # entry of block 3 applied from the log.
        spec = vhdxspec.Vhdx(img)
        expect_equal(spec.header['log-guid'], '00000000-0000-0000-0000-000000000000',
                     'LogGuid after repair')
        expect_equal(spec.payload_entry(3), (vhdxspec.FULLY_PRESENT, 8 * MiB),
                     'BAT entry of block 3 after repair')
        # A clean image for QEMU now: it opens it read-only and reads the disk.
        ok([QEMU_IMG, 'check', '-f', 'vhdx', img])
        out = self.path('dirty-rw.qemu')
        ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', img, out])
        expect_equal(sha256(out), sha256(raw), 'qemu-img reads the repaired image')

    # Creating images

    def test_create(self):
        need_qemu()
        for kind in ('dynamic', 'fixed'):
            img = self.path('new-%s.vhdx' % kind)
            ok([TOOL, 'create', '--type=' + kind, '--block-size=2M', img, '100M'])
            ok([QEMU_IMG, 'check', '-f', 'vhdx', img])
            qinfo = json.loads(ok([QEMU_IMG, 'info', '--output=json', img]).stdout)
            expect_equal(qinfo['virtual-size'], 100 * MiB, 'qemu-img virtual-size')
            expect_equal(qinfo['cluster-size'], 2 * MiB, 'qemu-img cluster-size')
            # FileParameters: LeaveBlockAllocated (bit 0) for fixed images only.
            spec = vhdxspec.Vhdx(img)
            expect_equal((spec.block_size, spec.file_parameter_flags),
                         (2 * MiB, 1 if kind == 'fixed' else 0), 'FileParameters')
            expect_equal(spec.logical_sector_size, 512, 'LogicalSectorSize')
            zeros = hashlib.sha256(bytes(100 * MiB)).hexdigest()
            expect_equal(cat_sha256(img), zeros, 'a new image reads as zeros')
            out = self.path('new-%s.qemu.raw' % kind)
            ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', img, out])
            expect_equal(sha256(out), zeros, 'qemu-img reads a new image as zeros')
            os.unlink(out)
        img = self.path('new-4k.vhdx')
        ok([TOOL, 'create', '--logical-sector-size=4096', img, '1G'])
        spec = vhdxspec.Vhdx(img)
        expect_equal(spec.logical_sector_size, 4096, 'LogicalSectorSize')
        expect_equal((spec.block_size, spec.file_parameter_flags), (32 * MiB, 0),
                     'FileParameters: the default block size')
        expect_equal(spec.virtual_size, 1 << 30, 'VirtualDiskSize')
        expect_equal(spec.stored_blocks(), {}, 'stored blocks of a new dynamic image')
        result = vhdx('create', self.path('bad.vhdx'), '100M', '--block-size=3M')
        expect_equal(result.returncode, 1, 'a bad block size fails')
        expect(not os.path.exists(self.path('bad.vhdx')), 'no file is left')

    def test_round_trips(self):
        need_qemu()
        need_libvhdi()
        size = 70 * MiB + 3 * 4096  # not a multiple of any block size
        raw = self.path('rt.raw')
        write_random_raw(raw, size, [(0, 4096), (5 * MiB - 100, 300 * 1024),
                                     (33 * MiB, 2 * MiB), (size - 8192, 8192)], 1)
        want = sha256(raw)
        for kind in ('dynamic', 'fixed'):
            for block in ('1M', '2M', '32M', '256M'):
                for sector in ('512', '4096'):
                    img = self.path('rt-%s-%s-%s.vhdx' % (kind, block, sector))
                    back = self.path('rt.back')
                    ok([TOOL, 'convert', '--type=' + kind, '--block-size=' + block,
                        '--logical-sector-size=' + sector, raw, img])
                    ok([TOOL, 'convert', img, back])
                    expect_equal(sha256(back), want, 'round trip %s %s %s' % (kind, block, sector))
                    ok([TOOL, 'check', img])
                    if sector == '512':
                        ok([QEMU_IMG, 'check', '-f', 'vhdx', img])
                        ok([QEMU_IMG, 'compare', '-f', 'vhdx', '-F', 'raw', img, raw])
                    else:
                        # QEMU does not open 4 KiB sectors; libvhdi does (the
                        # disk is far below one chunk, where libvhdi's reading
                        # of fixed images is right).
                        expect_equal(vhdi_sha256(img), want,
                                     'libvhdi reads %s %s %s' % (kind, block, sector))
                    os.unlink(img)
        # A dynamic image stores only blocks that hold data.
        img = self.path('rt-sparse.vhdx')
        ok([TOOL, 'convert', '--block-size=1M', raw, img])
        info = json.loads(ok([TOOL, 'info', '--json', '--allocated', img]).stdout)
        # Blocks 0, 4, 5, 33 and 34, and the 12 KiB last block 70: bytes of
        # the virtual disk, which ends 12 KiB into block 70.
        expect_equal(sorted(vhdxspec.Vhdx(img).stored_blocks()), [0, 4, 5, 33, 34, 70],
                     'blocks stored in the file')
        expect_equal(info['format-specific']['data']['allocated-bytes'], 5 * MiB + 12288,
                     'allocated bytes')

    # Differencing images

    def differencing(self):
        base_raw, mod_raw = self.path('base.raw'), self.path('mod.raw')
        write_random_raw(base_raw, 64 * MiB, [(0, 10 * MiB), (40 * MiB, 1 * MiB)], 2)
        shutil.copy(base_raw, mod_raw)
        with open(mod_raw, 'r+b') as f:
            f.seek(5000 * 512)
            f.write(b'changed sector')          # one sector inside base data
            f.seek(40 * MiB + 4096)
            f.write(bytes(8192))                 # zeros over base data
            f.seek(50 * MiB)
            f.write(random.Random(3).randbytes(3 * MiB))  # where the base is empty
        base = self.path('base.vhdx')
        child = self.path('child.avhdx')
        ok([TOOL, 'convert', '--block-size=2M', base_raw, base])
        ok([TOOL, 'convert', '--parent', base, mod_raw, child])
        return base, child, base_raw, mod_raw

    def expect_linked(self, child, parent, relative_path):
        """The child's metadata, read from its bytes, names @parent: HasParent,
        parent_linkage = the DataWriteGuid of the parent's current header."""
        spec = vhdxspec.Vhdx(child)
        expect(spec.has_parent, '%s: FileParameters without HasParent' % child)
        locator = spec.parent_locator()
        linkage = vhdxspec.Vhdx(parent).header['data-write-guid']
        expect_equal(locator['parent_linkage'].lower(), '{%s}' % linkage, 'parent_linkage')
        expect_equal(locator['relative_path'], relative_path, 'relative_path')
        return spec

    def test_differencing_convert(self):
        need_libvhdi()
        base, child, base_raw, mod_raw = self.differencing()
        expect_equal(cat_sha256(child), sha256(mod_raw), 'child reads as the modified disk')
        expect_equal(cat_sha256(base), sha256(base_raw), 'the parent is untouched')
        # libvhdi reads the chain as the modified disk (the child has a sector
        # bitmap block, so libvhdi's reading of NOT_PRESENT blocks is right).
        expect_equal(vhdi_sha256(child, base), sha256(mod_raw), 'libvhdi reads the child')
        expect_equal(vhdi_sha256(base), sha256(base_raw), 'libvhdi reads the parent')
        spec = self.expect_linked(child, base, 'base.vhdx')
        found = vhdiinfo(child)
        expect_equal(found.get('Disk type'), 'Differential', 'vhdiinfo disk type')
        expect_equal(found.get('Parent identifier'),
                     vhdxspec.Vhdx(base).header['data-write-guid'], 'vhdiinfo parent identifier')
        expect_equal(spec.virtual_size, 64 * MiB, 'VirtualDiskSize of the child')
        info = json.loads(ok([TOOL, 'info', '--json', '--allocated', child]).stdout)
        data = info['format-specific']['data']
        expect_equal(data['disk-type'], 'differencing', 'disk type')
        # Only the differing sectors are stored: 1 + 16 + 6144 sectors.
        expect_equal(data['allocated-bytes'], (1 + 16 + 6144) * 512, 'allocated bytes')
        expect(os.stat(child).st_blocks * 512 < 8 * MiB, 'the child file is small')
        # The sectors changed are the child's (depth 0); the rest of the
        # parent's stored blocks, 0-4 and 20 of 2 MiB, are read from it.
        extents = json.loads(ok([TOOL, 'map', '--json', child]).stdout)
        merged = []
        for e in extents:
            if not e['data']:
                continue
            if merged and merged[-1][2] == e['depth'] and sum(merged[-1][:2]) == e['start']:
                merged[-1] = (merged[-1][0], merged[-1][1] + e['length'], e['depth'])
            else:
                merged.append((e['start'], e['length'], e['depth']))
        expect_equal(merged, [
            (0, 5000 * 512, 1), (5000 * 512, 512, 0), (5001 * 512, 10 * MiB - 5001 * 512, 1),
            (40 * MiB, 4096, 1), (40 * MiB + 4096, 8192, 0),
            (40 * MiB + 12288, 2 * MiB - 12288, 1), (50 * MiB, 3 * MiB, 0),
        ], 'data extents and their depths')
        ok([TOOL, 'check', child])

    def test_differencing_to_raw(self):
        # The chain's data comes in runs of a few sectors from two files:
        # raw output gathers them into chunks and leaves holes where it
        # reads zeros, 4 KiB at a time (the 8 KiB of zeros over the base).
        base, child, base_raw, mod_raw = self.differencing()
        # A second child whose own runs of a sector each lie where the base
        # has none, far apart in its file, then over the base's data.
        mod2_raw, child2 = self.path('mod2.raw'), self.path('child2.avhdx')
        shutil.copy(base_raw, mod2_raw)
        with open(mod2_raw, 'r+b') as f:
            for i, at in enumerate((20 * MiB, 20 * MiB + 65536, 21 * MiB - 512, 3 * MiB)):
                f.seek(at)
                f.write(bytes([i + 1]) * 512)
        ok([TOOL, 'convert', '--parent', base, mod2_raw, child2])
        out = self.path('chain2.raw')
        ok([TOOL, 'convert', '-O', 'raw', child2, out])
        expect_equal(sha256(out), sha256(mod2_raw), 'raw output of sectors from two files')
        for sync in ([], ['--no-sync']):
            out = self.path('chain.raw')
            ok([TOOL, 'convert', '-O', 'raw'] + sync + [child, out])
            expect_equal(sha256(out), sha256(mod_raw), 'raw output of the chain %s' % sync)
            expect_equal(os.path.getsize(out), 64 * MiB, 'its size')
            with open(out, 'rb') as f:
                fd = f.fileno()
                expect_equal(os.lseek(fd, 40 * MiB, os.SEEK_HOLE), 40 * MiB + 4096,
                             'the zeros over the base are a hole')
                expect_equal(os.lseek(fd, 40 * MiB + 4096, os.SEEK_DATA), 40 * MiB + 12288,
                             'data after the hole')
                expect_equal(os.lseek(fd, 11 * MiB, os.SEEK_DATA), 40 * MiB,
                             'nothing between the runs of data')
            expect(os.stat(out).st_blocks * 512 <= 14 * MiB,
                   'no more than the data is allocated (%d bytes)' % (os.stat(out).st_blocks * 512))
            os.unlink(out)

    def test_differencing_parent_override(self):
        base, child, base_raw, mod_raw = self.differencing()
        moved = self.path('moved-base.vhdx')
        os.rename(base, moved)
        result = vhdx('cat', child)
        expect_equal(result.returncode, 1, 'no parent: exit status')
        expect(b'cannot be found' in result.stderr and base.encode() in result.stderr,
               'the message lists the paths tried: %r' % result.stderr)
        # check checks the child and finds the missing parent: one error.
        result = vhdx('check', '--json', child)
        expect_equal(result.returncode, 2, 'check without the parent: exit status')
        report = json.loads(result.stdout)
        expect_equal([(p['severity'], p['structure']) for p in report['problems']],
                     [('error', 'parent locator')], 'check without the parent: its problems')
        expect_equal(cat_sha256('--parent', moved, child), sha256(mod_raw), '--parent')
        ok([TOOL, 'map', '--parent', moved, child])
        info = json.loads(ok([TOOL, 'info', '--json', '--parent', moved, child]).stdout)
        expect_equal((info['backing-filename'], info['full-backing-filename']),
                     ('base.vhdx', os.path.realpath(moved)), '--parent: the backing file names')
        ok([TOOL, 'check', '--parent', moved, child])
        out = self.path('override.raw')
        ok([TOOL, 'convert', '--source-parent', moved, child, out])
        expect_equal(sha256(out), sha256(mod_raw), 'convert --source-parent')
        # Another image in the parent's place is refused.
        ok([TOOL, 'create', base, '64M'])
        result = vhdx('cat', child)
        expect_equal(result.returncode, 1, 'wrong parent: exit status')
        expect(b'DataWriteGuid' in result.stderr, 'mismatch message: %r' % result.stderr)

    def test_create_differencing(self):
        base, child, base_raw, mod_raw = self.differencing()
        empty = self.path('empty-child.vhdx')
        ok([TOOL, 'create', '--parent', base, empty])
        expect_equal(cat_sha256(empty), sha256(base_raw), 'an empty child reads as its parent')
        # libvhdi is no oracle for the data of an empty child (it takes
        # NOT_PRESENT blocks without a sector bitmap block for present ones);
        # the file's bytes are: every payload block NOT_PRESENT reads from the
        # parent, whose size and block size the child has.
        spec = self.expect_linked(empty, base, 'base.vhdx')
        expect_equal((spec.virtual_size, spec.block_size), (64 * MiB, 2 * MiB),
                     'the parent\'s size and block size')
        expect_equal({spec.payload_entry(b)[0] for b in range(spec.payload_blocks)},
                     {vhdxspec.NOT_PRESENT}, 'states of the payload blocks of an empty child')
        need_libvhdi()
        expect_equal(vhdiinfo(empty).get('Parent identifier'),
                     vhdxspec.Vhdx(base).header['data-write-guid'], 'vhdiinfo parent identifier')
        info = json.loads(ok([TOOL, 'info', '--json', empty]).stdout)
        expect_equal(info['virtual-size'], 64 * MiB, 'the parent\'s size')
        expect_equal(info['cluster-size'], 2 * MiB, 'the parent\'s block size')
        # A grandchild of the child, in another directory.
        grand = self.path('sub/grandchild.vhdx')
        os.mkdir(self.path('sub'))
        ok([TOOL, 'create', '--parent', child, grand])
        self.expect_linked(grand, child, '..\\child.avhdx')
        expect_equal(cat_sha256(grand), sha256(mod_raw), 'a grandchild reads through the chain')
        chain = json.loads(ok([TOOL, 'info', '--json', '--backing-chain', grand]).stdout)
        expect_equal(len(chain), 3, 'images in the chain')
        expect_equal(chain[0]['full-backing-filename'], os.path.realpath(child), 'first parent')
        expect_equal(chain[1]['full-backing-filename'], os.path.realpath(base), 'second parent')
        # backing-filename: the parent as the locator names it, its relative_path.
        expect_equal([c.get('backing-filename') for c in chain],
                     ['..\\child.avhdx', 'base.vhdx', None], 'backing-filename')
        expect_equal([c['filename'] for c in chain],
                     [grand, os.path.realpath(child), os.path.realpath(base)], 'filename')
        expect('full-backing-filename' not in chain[2], 'the base has no parent')
        expect_equal([c['format-specific']['data']['disk-type'] for c in chain],
                     ['differencing', 'differencing', 'dynamic'], 'disk types')
        text = ok([TOOL, 'info', '--backing-chain', grand]).stdout.decode()
        expect_equal(text.count('Disk type:'), 3, 'text output of the chain')
        # Without the base, the chain ends at the child, whose parent is missing.
        os.rename(base, base + '.gone')
        chain = json.loads(ok([TOOL, 'info', '--json', '--backing-chain', grand]).stdout)
        expect_equal([(c['filename'], c['format-specific']['data']['parent-missing'])
                      for c in chain],
                     [(grand, False), (os.path.realpath(child), True)],
                     'the chain down to the missing base')
        expect_equal(os.path.realpath(chain[1]['format-specific']['data']['parent-tried'][0]),
                     os.path.realpath(base),
                     'the base looked for first where the locator says')
        result = vhdx('check', grand)
        expect_equal(result.returncode, 2, 'check of a chain missing its base: exit status')
        os.rename(base + '.gone', base)


def main():
    if TOOL is None or MKIMAGE is None:
        print('1..0 # SKIP VHDX_TOOL and VHDX_MKIMAGE must be set')
        return 0
    names = sorted(n for n in dir(Tests) if n.startswith('test_'))
    print('1..%d' % len(names))
    failed = 0
    with tempfile.TemporaryDirectory(prefix='vhdx-cli-images-') as tmp:
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
