#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `vhdx compact`, end to end, printed as TAP: dynamic images with blocks of
# data and blocks of written zeros, the quick mode after discards and on
# blocks unmapped with their space kept, 4 KiB sectors, a differencing
# image and the child made from it, refusals that leave the file as it
# was, and a Hyper-V sample.
#
# Oracles: QEMU makes the dynamic images and writes into them (qemu-img
# create, qemu-io, which stores written zeros as data); qemu-img convert -O
# raw gives the disk before and after, which must hash the same; qemu-img
# check finds the image clean and qemu-img info gives the virtual size.
# QEMU's VHDX driver reports no holes (qemu-img map shows the whole disk as
# data), so the blocks left stored are read from the BAT with
# tests/common/vhdxspec.py, written from the specification.  libvhdi
# (vhdi-cat) reads the images QEMU cannot (4 KiB sectors, differencing).
# Discards are sent by the project's NBD client to the nbdkit plugin.
#
# Environment: VHDX_TOOL (required); VHDX_VHDI_CAT (when libvhdi was found
# at build time); VHDX_NBDKIT_PLUGIN (when nbdkit was); VHDX_SHARED_DIR
# (the samples, when present).

import hashlib
import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'common'))
sys.path.insert(0, os.path.join(HERE, 'nbdkit'))
import clitest  # noqa: E402
import vhdxspec  # noqa: E402
from clitest import Skip, TOOL, expect, expect_equal, ok, run, sha256, vhdx  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

VHDI_CAT = os.environ.get('VHDX_VHDI_CAT')
PLUGIN = os.environ.get('VHDX_NBDKIT_PLUGIN')
QEMU_IMG = shutil.which('qemu-img')
QEMU_IO = shutil.which('qemu-io')
NBDKIT = shutil.which('nbdkit')
SETPRIV = shutil.which('setpriv')

UNMAPPED = 3
ZERO = 2
PARTIALLY_PRESENT = 7


def need_qemu():
    if QEMU_IMG is None or QEMU_IO is None:
        raise Skip('qemu-img and qemu-io are not installed')


def need_libvhdi():
    if not VHDI_CAT:
        raise Skip('libvhdi was not found at build time (no vhdi-cat)')


def need_nbdkit():
    if not PLUGIN or NBDKIT is None:
        raise Skip('nbdkit or its plugin is missing: the discards go through it')


def raw_sha256(path):
    """The disk as QEMU reads it."""
    raw = path + '.raw'
    ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', path, raw])
    digest = sha256(raw)
    os.unlink(raw)
    return digest


def vhdi_blocks(block_size, *chain):
    """The digest of each block of the disk as libvhdi reads it."""
    data = ok([VHDI_CAT] + list(chain)).stdout
    return [hashlib.sha256(data[at:at + block_size]).hexdigest()
            for at in range(0, len(data), block_size)]


def vhdi_sha256(*chain):
    return hashlib.sha256(ok([VHDI_CAT] + list(chain)).stdout).hexdigest()


def compact_json(path, *options):
    """The object that `vhdx compact --json` prints, checked against the
    file's sizes before and after."""
    before = os.stat(path).st_size
    result = ok([TOOL, 'compact', '--json'] + list(options) + [path])
    report = json.loads(result.stdout)
    expect_equal(report['filename'], path, 'filename')
    expect_equal(report['old-file-size'], before, 'old-file-size: the file\'s size before')
    expect_equal(report['new-file-size'], os.stat(path).st_size,
                 'new-file-size: the file\'s size after')
    expect_equal(report['bytes-reclaimed'], report['old-file-size'] - report['new-file-size'],
                 'bytes-reclaimed')
    return report


def expect_packed(spec, what):
    """The structures and the blocks stored each have file space of their
    own, past the 1 MiB of headers, and the file ends with the last of them."""
    ranges = [('log', spec.header['log-offset'], spec.header['log-length'])]
    ranges += [('region %s' % guid, offset, length)
               for guid, (offset, length, _) in spec.regions.items()]
    for block in range(spec.payload_blocks):
        state, offset = spec.payload_entry(block)
        if offset:
            ranges.append(('block %d' % block, offset, spec.block_size))
    for chunk in range(-(-spec.payload_blocks // spec.chunk_ratio)):
        entry = spec.bat_entry(chunk * (spec.chunk_ratio + 1) + spec.chunk_ratio)
        if entry & ~0xFFFFF:
            ranges.append(('sector bitmap %d' % chunk, entry & ~0xFFFFF, MiB))
    ranges.sort(key=lambda r: r[1])
    expect(ranges[0][1] >= MiB, '%s: %s lies in the header section' % (what, ranges[0][0]))
    for (name_a, start_a, length_a), (name_b, start_b, _) in zip(ranges, ranges[1:]):
        expect(start_a + length_a <= start_b, '%s: %s (%d + %d) overlaps %s (%d)' % (
            what, name_a, start_a, length_a, name_b, start_b))
    end = max(start + length for _, start, length in ranges)
    expect_equal(os.stat(spec.path).st_size, end, '%s: the file ends with its last block' % what)


def set_payload_state(path, block, state):
    """Give payload block @block the state @state, keeping its file offset,
    as Hyper-V leaves a block it unmapped (the image must be clean)."""
    spec = vhdxspec.Vhdx(path)
    index = block + block // spec.chunk_ratio
    entry = spec.bat_entry(index)
    with open(path, 'r+b') as f:
        f.seek(spec.bat_offset + 8 * index)
        f.write(struct.pack('<Q', (entry & ~7) | state))


def qemu_image(path, size, block_size, blocks):
    """A dynamic image QEMU makes and writes: @blocks maps a block to the
    byte it is filled with (0: zeros written as data), in that order."""
    need_qemu()
    ok([QEMU_IMG, 'create', '-q', '-f', 'vhdx', '-o',
        'subformat=dynamic,block_size=%d' % block_size, path, size])
    commands = []
    for block, pattern in blocks:
        commands += ['-c', 'write -P 0x%02x %d %d' % (pattern, block * block_size, block_size)]
    ok([QEMU_IO, '-f', 'vhdx'] + commands + [path])


class Nbd:
    """The image served by the nbdkit plugin, and a client connected to it."""

    def __init__(self, tmp, path):
        need_nbdkit()
        import nbdclient
        import nbdtest
        self.server = nbdtest.Server(tmp, ['file=' + path])
        self.client = nbdclient.Client(self.server.socket)

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        self.client.flush()
        self.client.close()
        self.server.stop()


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp

    def path(self, name):
        return os.path.join(self.tmp, name)

    def test_dynamic(self):
        # Data and written zeros alternate, in the file too: half the
        # blocks drop, and the data blocks of the upper half move down.
        img = self.path('dynamic.vhdx')
        blocks = [(b, 0x40 + b % 64 if b % 2 == 0 else 0) for b in range(64)]
        qemu_image(img, 128 * MiB, 2 * MiB, blocks)
        before = vhdxspec.Vhdx(img)
        expect_equal(len(before.stored_blocks()), 64, 'QEMU stores the zeros it was given')
        digest = raw_sha256(img)
        report = compact_json(img)
        expect_equal(raw_sha256(img), digest, 'the disk reads as before')
        ok([QEMU_IMG, 'check', '-q', '-f', 'vhdx', img])
        info = json.loads(ok([QEMU_IMG, 'info', '--output=json', '-f', 'vhdx', img]).stdout)
        expect_equal(info['virtual-size'], 128 * MiB, 'qemu-img virtual-size')
        after = vhdxspec.Vhdx(img)
        expect_equal(sorted(after.stored_blocks()), list(range(0, 64, 2)),
                     'only the blocks of data are stored')
        expect_equal(report['blocks-dropped'], 32, 'blocks-dropped')
        expect(0 < report['blocks-moved'] <= 32, 'blocks-moved: %r' % report)
        expect(report['bytes-reclaimed'] >= 32 * 2 * MiB, 'bytes-reclaimed: %r' % report)
        expect_packed(after, 'compacted')
        expect_equal(after.header['data-write-guid'], before.header['data-write-guid'],
                     'DataWriteGuid: moving blocks changes no data')
        expect(after.header['file-write-guid'] != before.header['file-write-guid'],
               'FileWriteGuid changes with the file')
        ok([TOOL, 'check', img])
        # Again: nothing left to do, the file is not written.
        digest = sha256(img)
        report = compact_json(img)
        expect_equal((report['blocks-dropped'], report['blocks-moved'],
                      report['bytes-reclaimed']), (0, 0, 0), 'a second compaction')
        expect_equal(sha256(img), digest, 'a compaction with nothing to do leaves the file')

    def test_quick(self):
        img = self.path('quick.vhdx')
        blocks = [(b, 0x21 if b % 4 == 0 else 0) for b in range(16)]
        qemu_image(img, 32 * MiB, 2 * MiB, blocks)
        digest = raw_sha256(img)
        size = os.stat(img).st_size
        report = compact_json(img, '--quick')
        expect_equal(report['blocks-dropped'], 0, '--quick reads no data: written zeros stay')
        expect_equal(len(vhdxspec.Vhdx(img).stored_blocks()), 16, 'every block stays stored')
        expect_equal(raw_sha256(img), digest, 'the disk reads as before')
        size = os.stat(img).st_size
        # Discards of whole blocks, as fstrim sends them: their space is
        # free, inside the file.
        with Nbd(self.tmp, img) as nbd:
            for block in range(16):
                if block % 4 != 0:
                    nbd.trim(block * 2 * MiB, 2 * MiB)
        digest = raw_sha256(img)
        expect_equal(os.stat(img).st_size, size, 'discards leave the file\'s size')
        report = compact_json(img, '--quick')
        expect_equal(raw_sha256(img), digest, 'the disk reads as before')
        expect_equal(sorted(vhdxspec.Vhdx(img).stored_blocks()), [0, 4, 8, 12],
                     'the blocks of data are stored')
        expect(report['bytes-reclaimed'] >= 12 * 2 * MiB, 'bytes-reclaimed: %r' % report)
        expect_packed(vhdxspec.Vhdx(img), 'compacted after discards')
        ok([QEMU_IMG, 'check', '-q', '-f', 'vhdx', img])

    def test_unmapped_keeping_space(self):
        img = self.path('unmapped.vhdx')
        qemu_image(img, 32 * MiB, MiB, [(b, 0x31 + b) for b in range(32)])
        for block in range(0, 32, 3):
            set_payload_state(img, block, UNMAPPED)
        digest = raw_sha256(img)
        report = compact_json(img, '--quick')
        expect_equal(report['blocks-dropped'], 11, 'blocks-dropped: the unmapped blocks')
        expect_equal(raw_sha256(img), digest, 'the disk reads as before')
        spec = vhdxspec.Vhdx(img)
        expect_equal([spec.payload_entry(b) for b in range(0, 32, 3)], [(UNMAPPED, 0)] * 11,
                     'the unmapped blocks name no file space')
        expect_packed(spec, 'unmapped blocks dropped')
        ok([QEMU_IMG, 'check', '-q', '-f', 'vhdx', img])

    def test_4k_sectors(self):
        need_libvhdi()
        need_nbdkit()
        raw = self.path('4k.raw')
        with open(raw, 'wb') as f:
            for block in range(32):
                f.write(bytes([0x51 + block]) * MiB)
        img = self.path('4k.vhdx')
        ok([TOOL, 'convert', '--logical-sector-size=4096', '--block-size=1M', raw, img])
        # Zeros written as data over every other block.
        with Nbd(self.tmp, img) as nbd:
            for block in range(1, 32, 2):
                nbd.pwrite(bytes(MiB), block * MiB)
        expect_equal(len(vhdxspec.Vhdx(img).stored_blocks()), 32, 'the zeros are stored')
        digest = vhdi_sha256(img)
        report = compact_json(img)
        expect_equal(report['blocks-dropped'], 16, 'blocks-dropped')
        expect_equal(vhdi_sha256(img), digest, 'libvhdi reads the disk as before')
        spec = vhdxspec.Vhdx(img)
        expect_equal((spec.logical_sector_size, sorted(spec.stored_blocks())),
                     (4096, list(range(0, 32, 2))), 'sector size and blocks stored')
        expect_packed(spec, '4 KiB sectors')
        ok([TOOL, 'check', img])

    def test_differencing(self):
        need_libvhdi()
        need_nbdkit()
        base_raw = self.path('base.raw')
        with open(base_raw, 'wb') as f:
            f.write(b'\xa1' * (32 * MiB))
        base, child, grandchild = (self.path(n) for n in ('base.vhdx', 'child.avhdx',
                                                          'grandchild.avhdx'))
        ok([TOOL, 'convert', '--block-size=1M', base_raw, base])
        ok([TOOL, 'create', '--block-size=1M', '--parent', base, child])
        with Nbd(self.tmp, child) as nbd:
            for block in range(16):
                if block % 4 == 0:
                    nbd.pwrite(b'\xb2' * MiB, block * MiB)      # data
                elif block % 4 == 1:
                    nbd.pwrite(bytes(MiB), block * MiB)         # zeros over the parent
                elif block % 4 == 2:
                    nbd.pwrite(bytes(4096), block * MiB + 8192)  # some sectors of zeros
        before = vhdxspec.Vhdx(child)
        # A whole block written into a child is PARTIALLY_PRESENT with
        # every sector present (or FULLY_PRESENT): either way its own.
        expect(before.payload_entry(1)[0] in (6, PARTIALLY_PRESENT) and
               before.payload_entry(2)[0] == PARTIALLY_PRESENT,
               'a block of zeros and a part of one are stored')
        ok([TOOL, 'create', '--parent', child, grandchild])
        with Nbd(self.tmp, grandchild) as nbd:
            nbd.pwrite(b'\xc3' * 4096, 5 * MiB)
        # libvhdi reads a child's ZERO blocks as the parent's data, which
        # MS-VHDX 2.5.1.1 forbids (they MUST read as zeros): it reads the
        # child block by block, and the blocks that become ZERO must have
        # read as zeros.
        child_blocks = vhdi_blocks(MiB, child, base)
        cat_digest = hashlib.sha256(ok([TOOL, 'cat', child]).stdout).hexdigest()
        grandchild_digest = hashlib.sha256(ok([TOOL, 'cat', grandchild]).stdout).hexdigest()
        base_digest = sha256(base)
        report = compact_json(child)
        expect_equal(report['blocks-dropped'], 4, 'blocks-dropped: the blocks of zeros')
        expect(report['new-file-size'] < report['old-file-size'], 'the file shrank: %r' % report)
        after = vhdxspec.Vhdx(child)
        expect_equal([after.payload_entry(b) for b in range(1, 16, 4)], [(ZERO, 0)] * 4,
                     'the blocks of zeros are ZERO: the parent stays hidden')
        zeros = hashlib.sha256(bytes(MiB)).hexdigest()
        expect_equal([child_blocks[b] for b in range(1, 16, 4)], [zeros] * 4,
                     'the blocks that became ZERO read as zeros before')
        expect_equal([d for b, d in enumerate(vhdi_blocks(MiB, child, base)) if b % 4 != 1],
                     [d for b, d in enumerate(child_blocks) if b % 4 != 1],
                     'libvhdi reads the other blocks of the child as before')
        expect_equal(hashlib.sha256(ok([TOOL, 'cat', child]).stdout).hexdigest(), cat_digest,
                     'vhdx cat reads the child as before')
        expect_equal([after.payload_entry(b)[0] for b in range(2, 16, 4)],
                     [PARTIALLY_PRESENT] * 4, 'the blocks with the parent\'s sectors stay')
        expect_equal(after.header['data-write-guid'], before.header['data-write-guid'],
                     'DataWriteGuid: the child of the image stays its child')
        expect_packed(after, 'differencing')
        expect_equal(sha256(base), base_digest, 'the parent is not written')
        ok([TOOL, 'check', child])
        ok([TOOL, 'check', grandchild])
        expect_equal(hashlib.sha256(ok([TOOL, 'cat', grandchild]).stdout).hexdigest(),
                     grandchild_digest, 'the child of the compacted image reads as before')

    def test_fixed_refused(self):
        need_qemu()
        img = self.path('fixed.vhdx')
        ok([QEMU_IMG, 'create', '-q', '-f', 'vhdx', '-o', 'subformat=fixed,block_size=1M', img,
            8 * MiB])
        before = sha256(img)
        result = vhdx('compact', img)
        expect_equal(result.returncode, 1, 'compact of a fixed image')
        message = result.stderr.decode(errors='replace')
        expect('convert --type=dynamic' in message and message.count('\n') == 1,
               'one line that names the way out: %r' % message)
        expect_equal(sha256(img), before, 'the image refused is unchanged')

    def test_read_only_file(self):
        img = self.path('ro/readonly.vhdx')
        os.mkdir(self.path('ro'))
        qemu_image(img, 8 * MiB, MiB, [(0, 0), (1, 0x11)])
        os.chmod(img, 0o444)
        os.chmod(self.path('ro'), 0o755)
        os.chmod(self.tmp, 0o755)
        before = sha256(img)
        args = [TOOL, 'compact', img]
        if os.geteuid() == 0:
            # root writes any file: the tool runs as nobody.
            if SETPRIV is None:
                raise Skip('running as root without setpriv')
            args = [SETPRIV, '--reuid=65534', '--regid=65534', '--clear-groups'] + args
        result = run(args)
        expect_equal(result.returncode, 1, 'compact of a read-only file')
        expect(b'ermission denied' in result.stderr, 'why: %r' % result.stderr)
        expect_equal(sha256(img), before, 'the read-only file is unchanged')

    def test_not_an_image(self):
        raw = self.path('plain.raw')
        with open(raw, 'wb') as f:
            f.truncate(MiB)
        result = vhdx('compact', raw)
        expect_equal(result.returncode, 1, 'compact of a raw file')
        expect_equal(os.stat(raw).st_size, MiB, 'the raw file is unchanged')
        for args in ([], ['a', 'b']):
            result = vhdx('compact', *args)
            expect_equal(result.returncode, 1, 'usage error for %r' % args)
            expect(b'--help' in result.stderr, 'usage error hints at --help: %r' % result.stderr)

    def test_hyperv_sample(self):
        need_qemu()
        img = self.path('hyperv.vhdx')
        digest = clitest.sample('iotest-dynamic-1G.vhdx.bz2', img)
        report = compact_json(img)
        expect(report['new-file-size'] <= report['old-file-size'], 'no growth: %r' % report)
        ok([QEMU_IMG, 'check', '-q', '-f', 'vhdx', img])
        expect_equal(raw_sha256(img), digest, 'the disk, as Hyper-V wrote it')
        expect_packed(vhdxspec.Vhdx(img), 'Hyper-V sample')
        ok([TOOL, 'check', img])


if __name__ == '__main__':
    sys.exit(clitest.main(Tests, 'vhdx-compact-'))
