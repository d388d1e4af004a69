#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `vhdx set-parent`, end to end, printed as TAP: a differencing image whose
# parent moved to another directory is pointed at it again, and then reads
# as it did before the move; a parent that is not the one the child was
# made from is refused unless --ignore-parent-mismatch; --json; refusals
# that leave the file as it was; 4 KiB sectors.
#
# Oracles: the disk the child must read is the raw image that
# `vhdx convert --parent` was given, hashed here; libvhdi (vhdi-cat), given
# the child and the moved parent, reads it too.  The locator, the headers
# (DataWriteGuid) and the parent's DataWriteGuid are read from the files
# with tests/common/vhdxspec.py, written from the specification, and the
# new relative path is resolved here, from the child's directory, to the
# moved parent.
#
# Environment: VHDX_TOOL (required); VHDX_VHDI_CAT (when libvhdi was found
# at build time).

import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'common'))
import clitest  # noqa: E402
import vhdxspec  # noqa: E402
from clitest import TOOL, expect, expect_equal, ok, sha256, vhdx, write_raw  # noqa: E402

KiB = 1024
MiB = 1024 * KiB

VHDI_CAT = os.environ.get('VHDX_VHDI_CAT')


def linkage(spec):
    """The DataWriteGuid of a file's current header, as a locator writes it."""
    return '{%s}' % spec.header['data-write-guid'].lower()


class Chain:
    """A base made by vhdx convert in tmp/base/, and its child made by
    vhdx convert --parent in tmp/vm/, holding sectors of its own; @raw is
    the disk the child reads."""

    def __init__(self, tests, name, sector_size=512):
        self.dir = tests.path(name)
        for sub in ('base', 'vm', 'moved'):
            os.makedirs(os.path.join(self.dir, sub))
        base_raw = os.path.join(self.dir, 'base.raw')
        self.raw = os.path.join(self.dir, 'child.raw')
        write_raw(base_raw, 16 * MiB, [(0x51, 0, 3 * MiB), (0x52, 9 * MiB, 64 * KiB)])
        write_raw(self.raw, 16 * MiB, [(0x51, 0, 3 * MiB), (0x52, 9 * MiB, 64 * KiB),
                                       (0x61, MiB, 4 * KiB), (0x62, 12 * MiB, MiB)])
        self.base = os.path.join(self.dir, 'base', 'base.vhdx')
        self.child = os.path.join(self.dir, 'vm', 'child.avhdx')
        sectors = ['--logical-sector-size=%d' % sector_size]
        ok([TOOL, 'convert', '--block-size=2M'] + sectors + [base_raw, self.base])
        ok([TOOL, 'convert', '--parent', self.base, self.raw, self.child])
        self.digest = sha256(self.raw)
        expect_equal(hashlib.sha256(ok([TOOL, 'cat', self.child]).stdout).hexdigest(),
                     self.digest, 'the child reads as made, before the move')

    def move_base(self):
        moved = os.path.join(self.dir, 'moved', 'base.vhdx')
        os.rename(self.base, moved)
        self.base = moved
        result = vhdx('cat', self.child)
        expect_equal(result.returncode, 1, 'cat of the child whose parent moved')
        info = ok([TOOL, 'info', '--json', self.child]).stdout
        expect(b'cannot be found' in info, 'info says the parent is missing: %r' % info)

    def expect_reads(self, what):
        expect_equal(hashlib.sha256(ok([TOOL, 'cat', self.child]).stdout).hexdigest(),
                     self.digest, '%s: vhdx cat finds the parent by the locator' % what)
        if VHDI_CAT:
            expect_equal(hashlib.sha256(ok([VHDI_CAT, self.child, self.base]).stdout).hexdigest(),
                         self.digest, '%s: libvhdi reads the child over the moved parent' % what)
        ok([TOOL, 'check', self.child])

    def expect_locator_names_base(self):
        """relative_path, with backslashes, resolved from the child's
        directory, is the moved parent; absolute_win32_path names it too."""
        pairs = vhdxspec.Vhdx(self.child).parent_locator()
        relative = pairs['relative_path']
        expect('/' not in relative and '\\' in relative,
               'relative_path has backslashes: %r' % relative)
        resolved = os.path.normpath(os.path.join(os.path.dirname(self.child),
                                                 *relative.split('\\')))
        expect_equal(resolved, os.path.normpath(self.base), 'relative_path resolved')
        expect_equal(pairs['absolute_win32_path'].replace('\\', '/'),
                     os.path.abspath(self.base), 'absolute_win32_path')
        return pairs


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp

    def path(self, name):
        return os.path.join(self.tmp, name)

    def test_moved_parent(self):
        chain = Chain(self, 'moved')
        before = vhdxspec.Vhdx(chain.child)
        old_pairs = before.parent_locator()
        chain.move_base()
        result = ok([TOOL, 'set-parent', chain.child, chain.base])
        expect_equal((result.stdout, result.stderr), (b'', b''), 'nothing printed')
        chain.expect_reads('after set-parent')
        pairs = chain.expect_locator_names_base()
        expect_equal(pairs['relative_path'], '..\\moved\\base.vhdx', 'relative_path')
        expect_equal(pairs['parent_linkage'], old_pairs['parent_linkage'],
                     'parent_linkage is kept')
        expect_equal(pairs['parent_linkage'], linkage(vhdxspec.Vhdx(chain.base)),
                     'parent_linkage is the parent\'s DataWriteGuid')
        after = vhdxspec.Vhdx(chain.child)
        expect_equal(after.header['data-write-guid'], before.header['data-write-guid'],
                     'the child\'s DataWriteGuid is kept')
        expect_equal((after.virtual_size, after.has_parent), (before.virtual_size, True),
                     'size and HasParent')
        info = json.loads(ok([TOOL, 'info', '--json', chain.child]).stdout)
        expect(b'cannot be found' not in json.dumps(info).encode(), 'info finds the parent')

    def test_json(self):
        chain = Chain(self, 'json')
        old = vhdxspec.Vhdx(chain.child).parent_locator()
        chain.move_base()
        cwd = os.getcwd()
        os.chdir(chain.dir)
        try:
            result = ok([TOOL, 'set-parent', '--json', 'vm/child.avhdx', 'moved/base.vhdx'])
        finally:
            os.chdir(cwd)
        report = json.loads(result.stdout)
        pairs = chain.expect_locator_names_base()
        expect_equal(report, {
            'filename': 'vm/child.avhdx',
            'parent': 'moved/base.vhdx',
            'old-relative-path': old['relative_path'],
            'new-relative-path': pairs['relative_path'],
            'absolute-path': pairs['absolute_win32_path'],
            'linkage-changed': False,
            'old-linkage': old['parent_linkage'],
            'new-linkage': pairs['parent_linkage'],
            'volume-path-dropped': False,
        }, '--json')
        chain.expect_reads('set-parent --json with relative paths')

    def test_volume_path_dropped(self):
        chain = Chain(self, 'volume')
        pairs = vhdxspec.Vhdx(chain.child).parent_locator()
        pairs['volume_path'] = '\\\\?\\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\\base.vhdx'
        vhdxspec.write_parent_locator(chain.child, list(pairs.items()))
        chain.move_base()
        report = json.loads(ok([TOOL, 'set-parent', '--json', chain.child, chain.base]).stdout)
        expect_equal(report['volume-path-dropped'], True, 'volume-path-dropped')
        expect('volume_path' not in vhdxspec.Vhdx(chain.child).parent_locator(),
               'volume_path is gone from the locator')
        chain.expect_reads('after dropping the volume path')

    def test_mismatched_parent(self):
        chain = Chain(self, 'mismatch')
        # The same bytes, another image: its DataWriteGuid is not the linkage.
        other = os.path.join(chain.dir, 'moved', 'other.vhdx')
        ok([TOOL, 'convert', '--block-size=2M', os.path.join(chain.dir, 'base.raw'), other])
        before = sha256(chain.child)
        result = vhdx('set-parent', chain.child, other)
        expect_equal(result.returncode, 1, 'a parent the child was not made from')
        expect(result.stderr.startswith(b'vhdx: ' + chain.child.encode() + b': '),
               'one error line naming the child: %r' % result.stderr)
        expect_equal(result.stderr.count(b'\n'), 1, 'one line')
        expect_equal(sha256(chain.child), before, 'the refused child is unchanged')
        old = vhdxspec.Vhdx(chain.child).parent_locator()
        new_linkage = linkage(vhdxspec.Vhdx(other))
        result = ok([TOOL, 'set-parent', '--json', '--ignore-parent-mismatch', chain.child, other])
        report = json.loads(result.stdout)
        expect_equal((report['linkage-changed'], report['old-linkage'], report['new-linkage']),
                     (True, old['parent_linkage'], new_linkage), 'linkage in --json')
        stderr = result.stderr.decode()
        expect(stderr.startswith('vhdx: %s: warning: ' % chain.child)
               and old['parent_linkage'] in stderr and new_linkage in stderr,
               'a warning naming both linkages: %r' % stderr)
        pairs = vhdxspec.Vhdx(chain.child).parent_locator()
        expect_equal(pairs['parent_linkage'], new_linkage, 'parent_linkage is the new parent\'s')
        expect('parent_linkage2' not in pairs, 'no parent_linkage2')
        chain.base = other
        chain.expect_reads('over the other parent')

    def test_refusals(self):
        chain = Chain(self, 'refusals')
        before = sha256(chain.child)
        base_before = sha256(chain.base)
        # A CHILD that is not a differencing image.
        result = vhdx('set-parent', chain.base, chain.base)
        expect_equal(result.returncode, 1, 'a dynamic image as CHILD')
        expect_equal(sha256(chain.base), base_before, 'the dynamic image is unchanged')
        # PARENT missing, or not an image.
        for parent in (os.path.join(chain.dir, 'nothing.vhdx'),
                       os.path.join(chain.dir, 'base.raw')):
            result = vhdx('set-parent', chain.child, parent)
            expect_equal(result.returncode, 1, 'PARENT %s' % parent)
            expect(result.stderr.startswith(b'vhdx: ' + parent.encode() + b': '),
                   'the error names PARENT: %r' % result.stderr)
        # The child as its own parent.
        result = vhdx('set-parent', chain.child, chain.child)
        expect_equal(result.returncode, 1, 'the child as its own parent')
        expect_equal(sha256(chain.child), before, 'the refused child is unchanged')
        for args in ([], ['only-one'], ['a', 'b', 'c']):
            result = vhdx('set-parent', *args)
            expect_equal(result.returncode, 1, 'usage error for %r' % args)
            expect(b'--help' in result.stderr, 'usage error hints at --help: %r' % result.stderr)

    def test_4k_sectors(self):
        chain = Chain(self, 'sectors4k', sector_size=4096)
        expect_equal(vhdxspec.Vhdx(chain.child).logical_sector_size, 4096, 'the child\'s sectors')
        chain.move_base()
        ok([TOOL, 'set-parent', chain.child, chain.base])
        chain.expect_locator_names_base()
        chain.expect_reads('4 KiB sectors')
        # A parent of another sector size is refused, even when ignoring mismatches.
        other = os.path.join(chain.dir, 'moved', 'other512.vhdx')
        ok([TOOL, 'convert', '--block-size=2M', os.path.join(chain.dir, 'base.raw'), other])
        before = sha256(chain.child)
        result = vhdx('set-parent', '--ignore-parent-mismatch', chain.child, other)
        expect_equal(result.returncode, 1, 'a parent of 512-byte sectors')
        expect_equal(sha256(chain.child), before, 'the refused child is unchanged')

    def test_parent_dir(self):
        # A chain of three: the middle image is PARENT; its own parent is
        # found through --parent-dir.
        chain = Chain(self, 'three')
        middle_raw = chain.raw
        grandchild_raw = os.path.join(chain.dir, 'grandchild.raw')
        with open(middle_raw, 'rb') as f:
            data = bytearray(f.read())
        data[5 * MiB:5 * MiB + 8 * KiB] = bytes([0x71]) * 8 * KiB
        with open(grandchild_raw, 'wb') as f:
            f.write(data)
        os.makedirs(os.path.join(chain.dir, 'top'))
        grandchild = os.path.join(chain.dir, 'top', 'grandchild.avhdx')
        ok([TOOL, 'convert', '--parent', chain.child, grandchild_raw, grandchild])
        digest = sha256(grandchild_raw)
        # The base and the middle image move, each to its own directory:
        # the middle one's locator no longer finds the base.
        middle = os.path.join(chain.dir, 'moved', 'middle.avhdx')
        os.rename(chain.child, middle)
        os.makedirs(os.path.join(chain.dir, 'store'))
        store = os.path.join(chain.dir, 'store', 'base.vhdx')
        os.rename(chain.base, store)
        chain.base = store
        result = vhdx('set-parent', grandchild, middle)
        expect_equal(result.returncode, 1, 'PARENT whose own parent is not found')
        ok([TOOL, 'set-parent', '--parent-dir', os.path.dirname(chain.base), grandchild, middle])
        expect_equal(hashlib.sha256(ok([TOOL, 'cat', '--parent-dir', os.path.dirname(chain.base),
                                        grandchild]).stdout).hexdigest(),
                     digest, 'the grandchild reads through the moved middle image')


if __name__ == '__main__':
    sys.exit(clitest.main(Tests, 'vhdx-set-parent-'))
