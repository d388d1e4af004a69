#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `vhdx merge`, end to end, printed as TAP: a differencing image folded
# into its parent (made by QEMU, or by us with 4 KiB sectors), into a
# differencing parent, and through an image between into a grandparent;
# children larger and smaller than their parent; --delete-merged; other
# children of the parent refused unless --force; --json; refusals that
# leave every file as it was; the Hyper-V sample with a child on top.
#
# Oracles: each child is made by `vhdx convert --parent` from a raw file,
# which is what the merged image must read: QEMU converts the merged image
# to raw (sha256 equal to the raw file's) and checks it, and `qemu-img
# compare` compares them; libvhdi (vhdi-cat) reads 4 KiB and differencing
# results and, given the merged parent, the child kept beside it.  The
# headers and the parent locator are read from the files by
# tests/common/vhdxspec.py, written from the specification.
#
# Environment: VHDX_TOOL (required); VHDX_VHDI_CAT (when libvhdi was found
# at build time); VHDX_SHARED_DIR (the samples, when present).

import hashlib
import json
import os
import re
import shutil
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'common'))
import clitest  # noqa: E402
import vhdxspec  # noqa: E402
from clitest import TOOL, Skip, expect, expect_equal, ok, sha256, vhdx, write_raw  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

QEMU_IMG = shutil.which('qemu-img')
VHDI_CAT = os.environ.get('VHDX_VHDI_CAT')


def data_write_guid(path):
    return vhdxspec.Vhdx(path).header['data-write-guid'].lower()


def file_digests(paths):
    return {p: sha256(p) for p in paths}


def need_qemu():
    if QEMU_IMG is None:
        raise Skip('qemu-img is not installed')


def qemu_digest(image, scratch):
    """sha256 of the disk QEMU reads from @image."""
    ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', image, scratch])
    digest = sha256(scratch)
    os.unlink(scratch)
    return digest


def vhdi_digest(*images):
    return hashlib.sha256(ok([VHDI_CAT] + list(images)).stdout).hexdigest()


def tool_digest(image):
    return hashlib.sha256(ok([TOOL, 'cat', image]).stdout).hexdigest()


# The parent's disk and the child's changes over it: data over the
# parent's, data where the parent has none, zeros over the parent's data,
# sectors here and there.
BASE_WRITES = [(0x11, 0, 10 * MiB), (0x22, 30 * MiB, 5 * MiB)]
CHILD_WRITES = BASE_WRITES + [(0x33, 5 * MiB, 7 * MiB), (0x44, 40 * MiB, 4 * KiB),
                              (0x00, 31 * MiB, 3 * MiB), (0x45, 47 * MiB + 512, 1536)]


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp

    def path(self, *names):
        return os.path.join(self.tmp, *names)

    def make_chain(self, name, sector_size=512, qemu_base=True, child_size=64 * MiB,
                   child_writes=CHILD_WRITES):
        """dir/base.vhdx (by QEMU when it can, else by us) and its child
        dir/child.avhdx reading child.raw; returns (base, child, raw)."""
        os.makedirs(self.path(name))
        base_raw = self.path(name, 'base.raw')
        raw = self.path(name, 'child.raw')
        write_raw(base_raw, 64 * MiB, BASE_WRITES)
        write_raw(raw, child_size, child_writes)
        base = self.path(name, 'base.vhdx')
        child = self.path(name, 'child.avhdx')
        if qemu_base and sector_size == 512 and QEMU_IMG is not None:
            ok([QEMU_IMG, 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic',
                base_raw, base])
        else:
            ok([TOOL, 'convert', '--block-size=2M', '--logical-sector-size=%d' % sector_size,
                base_raw, base])
        ok([TOOL, 'convert', '--parent', base, raw, child])
        expect_equal(tool_digest(child), sha256(raw), 'the child reads as made')
        return base, child, raw

    def expect_merged(self, target, raw, what, qemu=True):
        """@target alone reads @raw: QEMU (512-byte images) or libvhdi says so."""
        digest = sha256(raw)
        if qemu and QEMU_IMG is not None:
            expect_equal(qemu_digest(target, self.path('scratch.raw')), digest,
                         '%s: QEMU reads the merged image as the child' % what)
            ok([QEMU_IMG, 'compare', '-q', '-f', 'vhdx', '-F', 'raw', target, raw])
            ok([QEMU_IMG, 'check', '-q', '-f', 'vhdx', target])
        elif VHDI_CAT:
            expect_equal(vhdi_digest(target), digest,
                         '%s: libvhdi reads the merged image as the child' % what)
        expect_equal(tool_digest(target), digest, '%s: vhdx cat of the merged image' % what)
        ok([TOOL, 'check', target])

    def expect_child_relinked(self, child, base, raw, what):
        """The child kept beside names the merged image by parent_linkage
        alone and still reads as it did, for us and for libvhdi."""
        pairs = vhdxspec.Vhdx(child).parent_locator()
        expect_equal(pairs['parent_linkage'].lower(), '{%s}' % data_write_guid(base),
                     '%s: the child names the new DataWriteGuid' % what)
        expect('parent_linkage2' not in pairs, '%s: no parent_linkage2 left' % what)
        expect_equal(tool_digest(child), sha256(raw), '%s: the child reads as before' % what)
        if VHDI_CAT:
            expect_equal(vhdi_digest(child, base), sha256(raw),
                         '%s: libvhdi reads the child through the merged image' % what)

    # Into the parent

    def test_into_qemu_parent(self):
        base, child, raw = self.make_chain('qemu')
        need_qemu()
        old_guid = data_write_guid(base)
        report = json.loads(ok([TOOL, 'merge', '--json', child]).stdout)
        self.expect_merged(base, raw, 'into QEMU\'s image')
        expect_equal(os.path.realpath(report['target']), os.path.realpath(base), 'target')
        expect_equal(report['merged'], [child], 'merged')
        expect_equal(report['deleted'], False, 'deleted')
        expect_equal(report['old-data-write-guid'], old_guid, 'old DataWriteGuid')
        expect_equal(report['new-data-write-guid'], data_write_guid(base), 'new DataWriteGuid')
        expect(report['new-data-write-guid'] != old_guid, 'a new DataWriteGuid')
        expect_equal((report['old-size'], report['new-size']), (64 * MiB, 64 * MiB), 'sizes')
        expect(report['bytes-copied'] >= 7 * MiB + 4 * KiB, 'bytes copied: %r' % report)
        self.expect_child_relinked(child, base, raw, 'after the merge')
        # The disk identity travels with the child's metadata.
        expect_equal(vhdxspec.Vhdx(base).virtual_disk_id, vhdxspec.Vhdx(child).virtual_disk_id,
                     'the Virtual Disk ID is the child\'s')

    def test_into_fixed_parent(self):
        need_qemu()
        os.makedirs(self.path('fixed'))
        base_raw, raw = self.path('fixed', 'base.raw'), self.path('fixed', 'child.raw')
        write_raw(base_raw, 64 * MiB, BASE_WRITES)
        write_raw(raw, 64 * MiB, CHILD_WRITES)
        base, child = self.path('fixed', 'base.vhdx'), self.path('fixed', 'child.avhdx')
        ok([QEMU_IMG, 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=fixed', base_raw,
            base])
        ok([TOOL, 'convert', '--parent', base, raw, child])
        ok([TOOL, 'merge', child])
        self.expect_merged(base, raw, 'into a fixed image')
        # LeaveBlockAllocated (MS-VHDX 2.6.2.1) stays set, and no block was
        # made NOT_PRESENT (state 0).
        spec = vhdxspec.Vhdx(base)
        expect_equal(spec.file_parameter_flags & 1, 1, 'LeaveBlockAllocated')
        states = [spec.payload_entry(b)[0] for b in range(spec.payload_blocks)]
        expect(0 not in states, 'block states of the fixed image: %r' % states)

    def test_disk_metadata_taken(self):
        """The child's physical sector size and disk identifier (metadata of
        the virtual disk, MS-VHDX 2.6.1.2) become the parent's."""
        base, child, raw = self.make_chain('metadata')
        ok([TOOL, 'set', '--physical-sector-size=512', '--reset-disk-id', child])
        before = vhdxspec.Vhdx(child)
        expect(before.virtual_disk_id != vhdxspec.Vhdx(base).virtual_disk_id, 'IDs differ')
        ok([TOOL, 'merge', child])
        after = vhdxspec.Vhdx(base)
        expect_equal((after.physical_sector_size, after.virtual_disk_id),
                     (512, before.virtual_disk_id), 'the parent\'s disk metadata')
        self.expect_merged(base, raw, 'with the child\'s metadata')

    def test_other_disk_items(self):
        """Items marked IsVirtualDisk that the specification does not define:
        the parent's are destroyed and the child's copied (MS-VHDX 2.6.1.2);
        the parent's file items stay."""
        base, child, raw = self.make_chain('items')
        mine = uuid.UUID('6c1e1f0a-83d5-4c5e-9b1d-2f7a3e4c5d6b')
        theirs = uuid.UUID('0f6b7c3e-1d2a-4b5c-8e9f-a0b1c2d3e4f5')
        kept = uuid.UUID('5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d')
        vhdxspec.add_metadata_item(base, mine, b'parent disk item', 3)
        vhdxspec.add_metadata_item(base, kept, b'parent file item', 1)
        vhdxspec.add_metadata_item(child, theirs, b'child disk item\0' * 9, 3)
        ok([TOOL, 'merge', child])
        spec = vhdxspec.Vhdx(base)
        expect(mine not in spec.items, 'the parent\'s disk item is destroyed')
        expect_equal(spec.items.get(theirs), b'child disk item\0' * 9, 'the child\'s is copied')
        expect_equal(spec.item_flags.get(theirs), 3, 'with its flags')
        expect_equal(spec.items.get(kept), b'parent file item', 'the file item stays')
        self.expect_merged(base, raw, 'with other disk items')

    def test_delete_merged(self):
        base, child, raw = self.make_chain('delete')
        ok([TOOL, 'merge', '--delete-merged', '--progress', child])
        expect(not os.path.exists(child), 'the child is deleted')
        self.expect_merged(base, raw, 'with --delete-merged')

    def test_4k_sectors(self):
        base, child, raw = self.make_chain('4k', sector_size=4096)
        ok([TOOL, 'merge', child])
        expect_equal(vhdxspec.Vhdx(base).logical_sector_size, 4096, 'the sectors')
        self.expect_merged(base, raw, '4 KiB sectors', qemu=False)
        self.expect_child_relinked(child, base, raw, '4 KiB sectors')

    def test_larger_child(self):
        """The child grew past its parent: the parent grows, and reads zeros
        where the child read past the old end."""
        writes = CHILD_WRITES + [(0x66, 70 * MiB, MiB), (0x67, 63 * MiB, 2 * MiB)]
        base, child, raw = self.make_chain('larger', child_size=80 * MiB, child_writes=writes)
        report = json.loads(ok([TOOL, 'merge', '--json', child]).stdout)
        expect_equal((report['old-size'], report['new-size']), (64 * MiB, 80 * MiB), 'sizes')
        self.expect_merged(base, raw, 'a larger child')

    def test_smaller_child(self):
        writes = [(p, o, min(n, 40 * MiB - o)) for p, o, n in CHILD_WRITES if o < 40 * MiB]
        base, child, raw = self.make_chain('smaller', child_size=40 * MiB, child_writes=writes)
        report = json.loads(ok([TOOL, 'merge', '--json', child]).stdout)
        expect_equal((report['old-size'], report['new-size']), (64 * MiB, 40 * MiB), 'sizes')
        self.expect_merged(base, raw, 'a smaller child')

    # Longer chains

    def make_grandchild(self, name):
        """base <- mid <- top, each made from a raw file; returns the
        images and the raw files of mid and top."""
        base, mid, mid_raw = self.make_chain(name)
        top_raw = self.path(name, 'top.raw')
        shutil.copyfile(mid_raw, top_raw)
        with open(top_raw, 'r+b') as f:
            for pattern, offset, length in [(0x77, 6 * MiB, 3 * MiB), (0x00, 0, 64 * KiB),
                                            (0x78, 50 * MiB, 4 * KiB)]:
                f.seek(offset)
                f.write(bytes([pattern]) * length)
        top = self.path(name, 'top.avhdx')
        ok([TOOL, 'convert', '--parent', mid, top_raw, top])
        expect_equal(tool_digest(top), sha256(top_raw), 'the grandchild reads as made')
        return base, mid, top, mid_raw, top_raw

    def test_into_differencing_parent(self):
        base, mid, top, mid_raw, top_raw = self.make_grandchild('diff')
        base_file = sha256(base)
        report = json.loads(ok([TOOL, 'merge', '--json', top]).stdout)
        expect_equal(os.path.realpath(report['target']), os.path.realpath(mid), 'the target')
        expect_equal(report['merged'], [top], 'merged')
        expect_equal(sha256(base), base_file, 'the grandparent is not touched')
        expect_equal(tool_digest(mid), sha256(top_raw), 'the differencing parent reads as top')
        if VHDI_CAT:
            expect_equal(vhdi_digest(mid, base), sha256(top_raw),
                         'libvhdi reads the merged differencing parent as top')
        expect_equal(tool_digest(top), sha256(top_raw), 'top still reads as before')
        ok([TOOL, 'check', mid])

    def test_into_grandparent(self):
        base, mid, top, mid_raw, top_raw = self.make_grandchild('grand')
        report = json.loads(ok([TOOL, 'merge', '--json', '--into', base, '--delete-merged',
                                top]).stdout)
        expect_equal(report['merged'], [top, mid], 'both images folded, the child first')
        expect(not os.path.exists(top) and not os.path.exists(mid), 'both deleted')
        self.expect_merged(base, top_raw, 'into the grandparent')

    def test_into_grandparent_kept(self):
        base, mid, top, mid_raw, top_raw = self.make_grandchild('kept')
        ok([TOOL, 'merge', '--into', base, top])
        self.expect_merged(base, top_raw, 'into the grandparent, images kept')
        expect_equal(tool_digest(top), sha256(top_raw), 'top still reads as before')
        pairs = vhdxspec.Vhdx(mid).parent_locator()
        expect_equal(pairs['parent_linkage'].lower(), '{%s}' % data_write_guid(base),
                     'the image between names the merged image')

    # Other children

    def test_sibling_refused(self):
        base, child, raw = self.make_chain('sibling')
        sibling = self.path('sibling', 'sibling.avhdx')
        ok([TOOL, 'create', '--parent', base, sibling])
        before = file_digests([base, child, sibling])
        result = vhdx('merge', child)
        expect_equal(result.returncode, 1, 'refused: %r' % result.stderr)
        expect(b'sibling.avhdx' in result.stderr, 'the error names the sibling: %r'
               % result.stderr)
        expect_equal(file_digests([base, child, sibling]), before, 'no file changed')
        ok([TOOL, 'merge', '--force', child])
        self.expect_merged(base, raw, 'with --force')

    def test_child_of_deleted_refused(self):
        """A child of the image --delete-merged deletes would be orphaned."""
        base, child, raw = self.make_chain('orphan')
        grandchild = self.path('orphan', 'grandchild.avhdx')
        ok([TOOL, 'create', '--parent', child, grandchild])
        before = file_digests([base, child, grandchild])
        result = vhdx('merge', '--delete-merged', child)
        expect_equal(result.returncode, 1, 'refused: %r' % result.stderr)
        expect(b'grandchild.avhdx' in result.stderr, 'names it: %r' % result.stderr)
        expect_equal(file_digests([base, child, grandchild]), before, 'no file changed')
        # Kept, the child still reads as before, and so does its own child.
        ok([TOOL, 'merge', child])
        self.expect_merged(base, raw, 'the child kept')
        expect_equal(tool_digest(grandchild), sha256(raw), 'the grandchild reads as before')

    # Refusals

    def test_refusals(self):
        base, child, raw = self.make_chain('refused')
        other = self.path('refused', 'other.vhdx')
        ok([TOOL, 'create', other, '64M'])
        before = file_digests([base, child, other])
        for args, pattern in [(['merge', base], rb'differencing'),
                              (['merge', '--into', other, child], rb'not an ancestor'),
                              (['merge', '--into', child, child], rb'not an ancestor'),
                              (['merge', self.path('refused', 'missing.avhdx')], rb'.'),
                              (['merge'], rb'--help'),
                              (['merge', child, base], rb'--help')]:
            result = vhdx(*args)
            expect_equal(result.returncode, 1, 'exit status of %r' % args)
            expect(re.search(pattern, result.stderr), 'the error for %r: %r'
                   % (args, result.stderr))
        expect_equal(file_digests([base, child, other]), before, 'no file changed')

    # Hyper-V's image

    def test_hyperv_sample(self):
        need_qemu()
        os.makedirs(self.path('hyperv'))
        base = self.path('hyperv', 'disk.vhdx')
        clitest.sample('iotest-dynamic-1G.vhdx.bz2', base)
        # The child's disk: Hyper-V's, with changes over its data and past it.
        raw = self.path('hyperv', 'child.raw')
        ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', base, raw])
        with open(raw, 'r+b') as f:
            for pattern, offset, length in [(0x5a, 0, 4 * KiB), (0x5b, 100 * MiB, 3 * MiB),
                                            (0x00, 200 * MiB, 2 * MiB),
                                            (0x5c, GiB - 4 * KiB, 4 * KiB)]:
                f.seek(offset)
                f.write(bytes([pattern]) * length)
        child = self.path('hyperv', 'disk_0C4B9AD7-1234-4321-ABCD-0123456789AB.avhdx')
        ok([TOOL, 'convert', '--parent', base, raw, child])
        ok([TOOL, 'merge', '--delete-merged', child])
        self.expect_merged(base, raw, 'Hyper-V\'s image')


if __name__ == '__main__':
    sys.exit(clitest.main(Tests, 'vhdx-merge-'))
