#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `vhdx resize`, end to end, printed as TAP: growing and shrinking dynamic,
# fixed, 4 KiB-sector and differencing images, relative sizes, refusals
# that leave the image as it was, an image QEMU holds, and a Hyper-V sample.
#
# Oracles: QEMU makes the images and writes into them (qemu-img create,
# qemu-io); the expected disk is the bytes the test asked it to write, cut
# or extended with zeros, built here; after the resize, qemu-img info gives
# the new size, qemu-img check finds the image clean and qemu-img compare
# finds the disk equal to the expected one.  libvhdi (vhdi-cat) reads the
# images QEMU cannot (4 KiB sectors, differencing).  The structures of the
# file (region table, BAT) are read with tests/common/vhdxspec.py, written
# from the specification, to check what --json says changed.  The Hyper-V
# sample's checksum is the one its README gives.
#
# Environment: VHDX_TOOL (required); VHDX_VHDI_CAT (when libvhdi was found
# at build time); VHDX_SHARED_DIR (the samples, when present).

import hashlib
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'common'))
import clitest  # noqa: E402
import vhdxspec  # noqa: E402
from clitest import Skip, TOOL, expect, expect_equal, ok, run, sha256, vhdx  # noqa: E402
from qemunbd import QemuNbd  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

VHDI_CAT = os.environ.get('VHDX_VHDI_CAT')
QEMU_IMG = shutil.which('qemu-img')
QEMU_IO = shutil.which('qemu-io')
QEMU_NBD = shutil.which('qemu-nbd')


def need_qemu():
    if QEMU_IMG is None or QEMU_IO is None:
        raise Skip('qemu-img and qemu-io are not installed')


def need_libvhdi():
    if not VHDI_CAT:
        raise Skip('libvhdi was not found at build time (no vhdi-cat)')


def pattern_bytes(pattern, length):
    return bytes([pattern]) * length


def qemu_info(path):
    return json.loads(ok([QEMU_IMG, 'info', '--output=json', '-f', 'vhdx', path]).stdout)


def bat_bytes_needed(size, block_size, sector_size, differencing=False):
    """Bytes of BAT that a disk of @size needs (MS-VHDX 2.5: payload
    entries with a sector bitmap entry after each chunk), rounded up to
    1 MiB as the region is."""
    chunk_ratio = (1 << 23) * sector_size // block_size
    payload = -(-size // block_size)
    if differencing:
        entries = -(-payload // chunk_ratio) * (chunk_ratio + 1)
    else:
        entries = payload + (payload - 1) // chunk_ratio
    return -(-entries * 8 // MiB) * MiB


class Image:
    """An image and the raw disk it must read as, both in the test's
    directory: made by QEMU and written by qemu-io at known offsets."""

    def __init__(self, tests, name, size, writes=(), subformat='dynamic', block_size=None):
        need_qemu()
        self.writes = list(writes)
        self.size = size
        self.path = tests.path(name + '.vhdx')
        self.raw = tests.path(name + '.raw')
        options = 'subformat=%s' % subformat
        if block_size:
            options += ',block_size=%d' % block_size
        ok([QEMU_IMG, 'create', '-q', '-f', 'vhdx', '-o', options, self.path, size])
        commands = []
        with open(self.raw, 'wb') as f:
            f.truncate(size)
            for pattern, offset, length in writes:
                commands += ['-c', 'write -P 0x%02x %d %d' % (pattern, offset, length)]
                f.seek(offset)
                f.write(pattern_bytes(pattern, length))
        if commands:
            ok([QEMU_IO, '-f', 'vhdx'] + commands + [self.path])

    def expected(self, size):
        """The raw disk cut or extended with zeros to @size."""
        with open(self.raw, 'r+b') as f:
            f.truncate(size)
        return self.raw

    def expect_reads_as(self, size, what):
        """QEMU finds the image clean, @size bytes large, and reading as the
        written bytes up to @size, zeros after."""
        expect_equal(qemu_info(self.path)['virtual-size'], size, '%s: qemu-img virtual-size'
                     % what)
        ok([QEMU_IMG, 'check', '-q', '-f', 'vhdx', self.path])
        if size > 16 * GiB:
            # QEMU reads every byte of a VHDX image to compare it: past
            # 16 GiB, qemu-io reads what was written, the disk's old end,
            # the start of the new part and the end.
            commands = []
            for pattern, offset, length in self.writes:
                commands += ['-c', 'read -P 0x%02x %d %d' % (pattern, offset, length)]
            for offset, length in ((self.size, 64 * MiB), (size - MiB, MiB)):
                commands += ['-c', 'read -P 0 %d %d' % (offset, length)]
            result = run([QEMU_IO, '-r', '-f', 'vhdx'] + commands + [self.path])
            expect(result.returncode == 0 and b'verification failed' not in result.stdout,
                   '%s: qemu-io reads: %s' % (what, result.stdout.decode(errors='replace')))
            return
        result = run([QEMU_IMG, 'compare', '-f', 'vhdx', '-F', 'raw', self.path,
                      self.expected(size)])
        expect(result.returncode == 0, '%s: qemu-img compare: %s%s' % (
            what, result.stdout.decode(errors='replace'), result.stderr.decode(errors='replace')))


def resize_json(path, size, *options):
    """The object that `vhdx resize --json` prints, whose file sizes are the
    file's before and after."""
    before = os.stat(path).st_size
    result = ok([TOOL, 'resize', '--json'] + list(options) + [path, size])
    report = json.loads(result.stdout)
    expect_equal(report['filename'], path, 'filename')
    expect_equal(report['old-file-size'], before, 'old-file-size: the file\'s size before')
    expect_equal(report['new-file-size'], os.stat(path).st_size,
                 'new-file-size: the file\'s size after')
    return report


def expect_bat_lengths(report, before, after):
    """old-bat-length and new-bat-length are the BAT regions that the region
    tables of the file gave before and give after."""
    expect_equal(report['old-bat-length'], before.regions[vhdxspec.BAT_REGION][1],
                 'old-bat-length: the BAT region before')
    expect_equal(report['new-bat-length'], after.regions[vhdxspec.BAT_REGION][1],
                 'new-bat-length: the BAT region after')


def expect_no_overlap(spec):
    """The BAT and metadata regions and the stored blocks each have file space
    of their own, past the 1 MiB of headers and the log."""
    ranges = [('BAT', spec.regions[vhdxspec.BAT_REGION][0], spec.regions[vhdxspec.BAT_REGION][1]),
              ('metadata', spec.regions[vhdxspec.METADATA_REGION][0],
               spec.regions[vhdxspec.METADATA_REGION][1]),
              ('log', spec.header['log-offset'], spec.header['log-length'])]
    ranges += [('block %d' % b, offset, spec.block_size)
               for b, offset in spec.stored_blocks().items()]
    ranges.sort(key=lambda r: r[1])
    expect(ranges[0][1] >= MiB, '%s lies in the header section' % ranges[0][0])
    for (name_a, start_a, length_a), (name_b, start_b, _) in zip(ranges, ranges[1:]):
        expect(start_a + length_a <= start_b, '%s (%d + %d) overlaps %s (%d)' % (
            name_a, start_a, length_a, name_b, start_b))


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp

    def path(self, name):
        return os.path.join(self.tmp, name)

    # Growing

    def test_grow_dynamic_within_bat(self):
        img = Image(self, 'grow', GiB, [(0x11, 0, MiB), (0x12, 500 * MiB, 64 * KiB),
                                        (0x13, GiB - 4096, 4096)], block_size=32 * MiB)
        before = vhdxspec.Vhdx(img.path)
        expect(before.regions[vhdxspec.BAT_REGION][1] >= bat_bytes_needed(2 * GiB, 32 * MiB, 512),
               'the BAT region QEMU made holds 2 GiB already')
        report = resize_json(img.path, '2G')
        img.expect_reads_as(2 * GiB, 'grown to 2 GiB')
        after = vhdxspec.Vhdx(img.path)
        expect_equal(after.virtual_size, 2 * GiB, 'VirtualDiskSize in the metadata')
        expect_equal((report['old-size'], report['new-size']), (GiB, 2 * GiB), 'old/new size')
        expect_bat_lengths(report, before, after)
        expect_equal((report['blocks-moved'], report['blocks-allocated'],
                      report['blocks-dropped']), (0, 0, 0), 'blocks moved, allocated, dropped')
        expect_equal(after.stored_blocks(), before.stored_blocks(),
                     'the stored blocks stay where they were')
        ok([TOOL, 'check', img.path])

    def test_grow_dynamic_bat_region(self):
        # 1 MiB blocks: the 1 MiB BAT region that QEMU gives a small image
        # maps at most 131072 entries, about 127 GiB; 200 GiB needs more.
        writes = [(0x21, 0, 4096), (0x22, MiB + 512, 8192), (0x23, 33 * MiB, MiB),
                  (0x24, 64 * MiB - 4096, 4096)]
        img = Image(self, 'bat', 64 * MiB, writes, block_size=MiB)
        before = vhdxspec.Vhdx(img.path)
        bat_offset, bat_length, _ = before.regions[vhdxspec.BAT_REGION]
        needed = bat_bytes_needed(200 * GiB, MiB, 512)
        expect(bat_length < needed, 'the BAT region QEMU made (%d) is too small for 200 GiB (%d)'
               % (bat_length, needed))
        report = resize_json(img.path, '200G')
        img.expect_reads_as(200 * GiB, 'grown to 200 GiB')
        after = vhdxspec.Vhdx(img.path)
        expect_equal(after.virtual_size, 200 * GiB, 'VirtualDiskSize in the metadata')
        expect(after.regions[vhdxspec.BAT_REGION][1] >= needed,
               'the new BAT region (%d) holds 200 GiB (%d)'
               % (after.regions[vhdxspec.BAT_REGION][1], needed))
        expect_bat_lengths(report, before, after)
        expect_no_overlap(after)
        # The blocks that lay where the larger BAT is now were moved; no
        # more blocks than the image stores.
        new_offset, new_length, _ = after.regions[vhdxspec.BAT_REGION]
        in_the_way = [b for b, offset in before.stored_blocks().items()
                      if offset < new_offset + new_length and offset + MiB > new_offset]
        expect(len(in_the_way) <= report['blocks-moved'] <= len(before.stored_blocks()),
               'blocks-moved %d: %d blocks were in the way of the BAT, %d stored' % (
                   report['blocks-moved'], len(in_the_way), len(before.stored_blocks())))
        expect_equal(sorted(after.stored_blocks()), sorted(before.stored_blocks()),
                     'the blocks stored')
        expect_equal((report['blocks-allocated'], report['blocks-dropped']), (0, 0),
                     'blocks allocated, dropped')
        ok([TOOL, 'check', img.path])

    def test_grow_unaligned(self):
        img = Image(self, 'odd', GiB, [(0x31, GiB - 512, 512)], block_size=32 * MiB)
        size = GiB + 3 * 512  # a multiple of the sector size, not of the block size
        before = sha256(img.path)
        result = vhdx('resize', img.path, str(GiB + 100))
        expect_equal(result.returncode, 1, 'a size that is not a multiple of 512')
        expect_equal(sha256(img.path), before, 'the image refused is unchanged')
        report = resize_json(img.path, str(size))
        expect_equal(report['new-size'], size, 'new-size')
        img.expect_reads_as(size, 'grown by 3 sectors')
        ok([TOOL, 'check', img.path])

    def test_grow_fixed(self):
        img = Image(self, 'fixed', 256 * MiB, [(0x41, 0, MiB), (0x42, 256 * MiB - 4096, 4096)],
                    subformat='fixed', block_size=8 * MiB)
        before = vhdxspec.Vhdx(img.path)
        report = resize_json(img.path, '+64M')
        img.expect_reads_as(320 * MiB, 'fixed, grown by 64 MiB')
        after = vhdxspec.Vhdx(img.path)
        expect_equal(report['blocks-allocated'], 8, 'blocks-allocated: 64 MiB of 8 MiB blocks')
        expect_equal([after.payload_entry(b)[0] for b in range(32, 40)],
                     [vhdxspec.FULLY_PRESENT] * 8, 'the new blocks of a fixed image are stored')
        expect_equal([after.payload_entry(b) for b in range(32)],
                     [before.payload_entry(b) for b in range(32)],
                     'the BAT entries of the blocks before are unchanged')
        expect(report['new-file-size'] >= report['old-file-size'] + 64 * MiB,
               'the file grew by the 64 MiB allocated: %r' % report)
        expect_bat_lengths(report, before, after)
        expect_no_overlap(after)
        ok([TOOL, 'check', img.path])

    def test_relative_sizes(self):
        img = Image(self, 'relative', 100 * MiB, [(0x51, 10 * MiB, MiB)], block_size=2 * MiB)
        ok([TOOL, 'resize', img.path, '+1G'])
        img.expect_reads_as(GiB + 100 * MiB, '+1G')
        ok([TOOL, 'resize', img.path, '-1G'])
        img.expect_reads_as(100 * MiB, '-1G')
        ok([TOOL, 'resize', img.path, '--', '-50M'])
        img.expect_reads_as(50 * MiB, '-- -50M')
        before = sha256(img.path)
        result = vhdx('resize', img.path, '-1G')
        expect_equal(result.returncode, 1, 'shrinking by more than the size')
        expect_equal(sha256(img.path), before, 'the image refused is unchanged')

    # Shrinking

    def test_shrink_nothing_past_end(self):
        img = Image(self, 'shrink', GiB, [(0x61, 0, MiB), (0x62, 100 * MiB, 4096)],
                    block_size=32 * MiB)
        # Block 3 (96-128 MiB) is stored: 128 MiB is the smallest size.
        report = resize_json(img.path, '512M')
        img.expect_reads_as(512 * MiB, 'shrunk to 512 MiB')
        expect_equal((report['old-size'], report['new-size'], report['blocks-dropped']),
                     (GiB, 512 * MiB, 0), 'old-size, new-size, blocks-dropped')
        ok([TOOL, 'resize', img.path, '128M'])
        img.expect_reads_as(128 * MiB, 'shrunk to the end of the last stored block')
        ok([TOOL, 'check', img.path])

    def test_shrink_refused(self):
        img = Image(self, 'refused', GiB, [(0x71, 0, MiB), (0x72, 700 * MiB, 64 * KiB)],
                    block_size=32 * MiB)
        before = sha256(img.path)
        result = vhdx('resize', img.path, '512M')
        expect_equal(result.returncode, 1, 'shrinking over stored data: exit status')
        # The first byte stored past 512 MiB: block 21 (672-704 MiB), which
        # QEMU stored whole.
        first = 21 * 32 * MiB
        message = result.stderr.decode(errors='replace')
        expect(str(first) in message or hex(first) in message.lower(),
               'the message names the first stored offset, %d: %r' % (first, message))
        expect(message.startswith('vhdx: ') and message.count('\n') == 1,
               'one line on standard error: %r' % message)
        expect_equal(sha256(img.path), before, 'the image refused is unchanged')
        expect_equal(result.stdout, b'', 'nothing on standard output')
        # 704 MiB keeps the block: it succeeds.
        ok([TOOL, 'resize', img.path, '704M'])
        img.expect_reads_as(704 * MiB, 'shrunk to the end of the last stored block')

    def test_shrink_discarding_data(self):
        img = Image(self, 'discard', GiB, [(0x81, 0, MiB), (0x82, 600 * MiB, MiB),
                                           (0x83, 900 * MiB, 4096)], block_size=32 * MiB)
        before = vhdxspec.Vhdx(img.path)
        dropped = len([b for b in before.stored_blocks() if b >= 16])
        expect_equal(dropped, 2, 'blocks QEMU stored past 512 MiB')
        report = resize_json(img.path, '512M', '--shrink-discarding-data')
        img.expect_reads_as(512 * MiB, 'shrunk over data')
        expect_equal(report['blocks-dropped'], dropped, 'blocks-dropped')
        expect(report['new-file-size'] <= report['old-file-size'],
               'the file did not grow: %r' % report)
        after = vhdxspec.Vhdx(img.path)
        expect_equal(after.stored_blocks(), {b: o for b, o in before.stored_blocks().items()
                                             if b < 16}, 'the blocks kept stay where they were')
        ok([TOOL, 'check', img.path])

    # Images QEMU cannot open

    def test_4k_sectors(self):
        need_libvhdi()
        raw = self.path('4k.raw')
        with open(raw, 'wb') as f:
            f.truncate(64 * MiB)
            f.seek(0)
            f.write(pattern_bytes(0x91, 3 * 4096))
            f.seek(40 * MiB)
            f.write(pattern_bytes(0x92, MiB))
        img = self.path('4k.vhdx')
        ok([TOOL, 'convert', '--logical-sector-size=4096', '--block-size=1M', raw, img])
        expect_equal(vhdxspec.Vhdx(img).logical_sector_size, 4096, 'LogicalSectorSize')
        before = sha256(img)
        result = vhdx('resize', img, str(GiB + 512))
        expect_equal(result.returncode, 1, 'a size that is not a multiple of 4096')
        expect_equal(sha256(img), before, 'the image refused is unchanged')
        size = GiB + 4096
        ok([TOOL, 'resize', img, str(size)])
        expect_equal(vhdxspec.Vhdx(img).virtual_size, size, 'VirtualDiskSize')
        with open(raw, 'r+b') as f:
            f.truncate(size)
        expect_equal(hashlib.sha256(ok([VHDI_CAT, img]).stdout).hexdigest(), sha256(raw),
                     'libvhdi reads the grown 4 KiB-sector image')
        ok([TOOL, 'resize', img, '48M'])
        with open(raw, 'r+b') as f:
            f.truncate(48 * MiB)
        expect_equal(hashlib.sha256(ok([VHDI_CAT, img]).stdout).hexdigest(), sha256(raw),
                     'libvhdi reads the shrunk 4 KiB-sector image')
        ok([TOOL, 'check', img])

    def test_differencing(self):
        need_libvhdi()
        base_raw, child_raw = self.path('base.raw'), self.path('child.raw')
        with open(base_raw, 'wb') as f:
            f.truncate(64 * MiB)
            f.write(pattern_bytes(0xa1, 8 * MiB))
        shutil.copyfile(base_raw, child_raw)
        with open(child_raw, 'r+b') as f:
            f.seek(5000 * 512)
            f.write(pattern_bytes(0xa2, 512))
            f.seek(30 * MiB)
            f.write(pattern_bytes(0xa3, 3 * MiB))
        base, child = self.path('base.vhdx'), self.path('child.avhdx')
        ok([TOOL, 'convert', '--block-size=2M', base_raw, base])
        ok([TOOL, 'convert', '--parent', base, child_raw, child])
        locator = vhdxspec.Vhdx(child).parent_locator()
        base_sum = sha256(base)
        # Shrunk: libvhdi reads what is left over the parent.  Nothing of
        # the child's own lies past 48 MiB.
        ok([TOOL, 'resize', child, '48M'])
        spec = vhdxspec.Vhdx(child)
        expect_equal((spec.virtual_size, spec.has_parent, spec.parent_locator()),
                     (48 * MiB, True, locator), 'size, HasParent and locator of the shrunk child')
        with open(child_raw, 'r+b') as f:
            f.truncate(48 * MiB)
        expect_equal(hashlib.sha256(ok([VHDI_CAT, child, base]).stdout).hexdigest(),
                     sha256(child_raw), 'libvhdi reads the shrunk child over its parent')
        ok([TOOL, 'check', child])
        # Grown past its parent's size: libvhdi cannot read a child larger
        # than its parent, so the file's structures are the oracle.
        ok([TOOL, 'resize', child, '96M'])
        spec = vhdxspec.Vhdx(child)
        expect_equal((spec.virtual_size, spec.has_parent, spec.parent_locator()),
                     (96 * MiB, True, locator), 'size, HasParent and locator of the grown child')
        expect_equal(sha256(base), base_sum, 'the parent is not written')
        ok([TOOL, 'check', child])
        # A child of a base made by vhdx create: the same, from an empty child.
        empty = self.path('empty.avhdx')
        ok([TOOL, 'create', '--parent', base, empty])
        before = sha256(empty)
        result = vhdx('resize', '--parent', self.path('missing.vhdx'), empty, '128M')
        expect_equal(result.returncode, 1, 'a child whose given parent is missing')
        expect_equal(sha256(empty), before, 'the image refused is unchanged')

    # Refusals

    def test_locked_by_qemu(self):
        if QEMU_NBD is None:
            raise Skip('qemu-nbd is not installed: QEMU holds the other side of the lock')
        img = Image(self, 'locked', 64 * MiB, [(0xb1, 0, MiB)], block_size=2 * MiB)
        before = sha256(img.path)
        with QemuNbd(run, self.path('qemu-nbd.sock'), img.path, writable=False) as reader:
            expect(reader.started, 'qemu-nbd -r: %r' % reader.result.stderr)
            result = vhdx('resize', img.path, '128M')
            expect_equal(result.returncode, 1, 'resize of an image QEMU has open')
            expect(b'Another process' in result.stderr, 'no lock error: %r' % result.stderr)
        expect_equal(sha256(img.path), before, 'the image refused is unchanged')
        ok([TOOL, 'resize', img.path, '128M'])
        img.expect_reads_as(128 * MiB, 'resized once QEMU let go')

    def test_not_an_image(self):
        raw = self.path('plain.raw')
        with open(raw, 'wb') as f:
            f.truncate(MiB)
        result = vhdx('resize', raw, '2M')
        expect_equal(result.returncode, 1, 'resize of a raw file')
        expect_equal(os.stat(raw).st_size, MiB, 'the raw file is unchanged')
        for args in ([], ['only-one'], ['a', 'b', 'c'], ['x.vhdx', '12Q']):
            result = vhdx('resize', *args)
            expect_equal(result.returncode, 1, 'usage error for %r' % args)
            expect(b'--help' in result.stderr, 'usage error hints at --help: %r' % result.stderr)

    # Hyper-V's image

    def test_hyperv_sample(self):
        need_qemu()
        img = self.path('hyperv.vhdx')
        digest = clitest.sample('iotest-dynamic-1G.vhdx.bz2', img)
        report = resize_json(img, '3G')
        expect_equal((report['old-size'], report['new-size']), (GiB, 3 * GiB), 'old/new size')
        expect_equal(qemu_info(img)['virtual-size'], 3 * GiB, 'qemu-img virtual-size')
        ok([QEMU_IMG, 'check', '-q', '-f', 'vhdx', img])
        raw = self.path('hyperv.raw')
        ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', img, raw])
        expect_equal(os.stat(raw).st_size, 3 * GiB, 'size of the raw disk')
        h = hashlib.sha256()
        zeros = bytes(4 * MiB)
        with open(raw, 'rb') as f:
            for _ in range(GiB // len(zeros)):
                h.update(f.read(len(zeros)))
            expect_equal(h.hexdigest(), digest, 'the first GiB, as Hyper-V wrote it')
            for block in iter(lambda: f.read(len(zeros)), b''):
                expect(block == zeros[:len(block)], 'the 2 GiB added read as zeros')
        ok([TOOL, 'check', img])


if __name__ == '__main__':
    sys.exit(clitest.main(Tests, 'vhdx-resize-'))
