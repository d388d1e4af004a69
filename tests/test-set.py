#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `vhdx set`, end to end, printed as TAP: a new physical sector size and
# Virtual Disk ID on images QEMU made and on ours (4 KiB sectors,
# differencing), the disk reading as before; the differencing images made
# from the image kept linked (parent_linkage2 first, then parent_linkage
# once the image changed); nothing written when
# nothing changes; --json; --creator, bad sizes, a read-only file and a
# child in use refused without a change; --force leaving such a child
# behind with a warning.
#
# Oracles: the metadata items and the headers are read from the files by
# tests/common/vhdxspec.py, written from the specification (region table,
# metadata table, items, headers with their CRC-32C); QEMU converts the
# image to raw (hashed before and after) and checks it; libvhdi's vhdiinfo
# prints the DataWriteGuid ("Identifier") and the child's parent_linkage
# ("Parent identifier"), and reads the child through the changed image
# (vhdi-cat); the child reads the raw image that
# `vhdx convert --parent` was given.  qemu-img info says nothing of the
# physical sector size, and vhdiinfo's "Bytes per sector" is the logical one.
#
# Environment: VHDX_TOOL (required); VHDX_VHDI_CAT (when libvhdi was found
# at build time).

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'common'))
import clitest  # noqa: E402
import vhdxspec  # noqa: E402
from clitest import TOOL, Skip, expect, expect_equal, ok, run, sha256, vhdx  # noqa: E402

KiB = 1024
MiB = 1024 * KiB

QEMU_IMG = shutil.which('qemu-img')
VHDIINFO = shutil.which('vhdiinfo')
VHDI_CAT = os.environ.get('VHDX_VHDI_CAT')


# Holds locks on the file argv[1] as a process writing it with QEMU does,
# until its standard input closes: in a process of its own, since closing
# any descriptor of a file drops the POSIX locks the process holds on it.
HOLD_LOCKS = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
for byte in (100, 101, 201, 203):
    fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, byte)
print('locked', flush=True)
sys.stdin.read()
"""


def write_raw(path, size, writes):
    with open(path, 'wb') as f:
        f.truncate(size)
        for pattern, offset, length in writes:
            f.seek(offset)
            f.write(bytes([pattern]) * length)


def raw_item(path, item, length):
    """The bytes of metadata item @item, read from the file at the offset
    that the region table and the metadata table give (MS-VHDX 2.2.3,
    2.6.1), as vhdxspec finds it."""
    offset = vhdxspec.Vhdx(path).item_offsets[item]
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read(length)


def physical_sector_size(path):
    (size,) = struct.unpack('<I', raw_item(path, vhdxspec.PHYSICAL_SECTOR_SIZE, 4))
    return size


def data_write_guid(path):
    return vhdxspec.Vhdx(path).header['data-write-guid'].lower()


def vhdiinfo(path):
    """vhdiinfo's fields, or None without it."""
    if VHDIINFO is None:
        return None
    out = ok([VHDIINFO, path]).stdout.decode()
    fields = {}
    for line in out.splitlines():
        if ':' in line:
            key, value = line.split(':', 1)
            fields[key.strip()] = value.strip()
    return fields


def qemu_raw_digest(image, tmp):
    raw = os.path.join(tmp, 'qemu.raw')
    ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', image, raw])
    digest = sha256(raw)
    os.unlink(raw)
    return digest


def tool_digest(image):
    return hashlib.sha256(ok([TOOL, 'cat', image]).stdout).hexdigest()


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp

    def path(self, *names):
        return os.path.join(self.tmp, *names)

    def need_qemu(self):
        if QEMU_IMG is None:
            raise Skip('qemu-img is not installed')

    def qemu_image(self, name, writes):
        """A dynamic image QEMU made from a raw disk with @writes."""
        self.need_qemu()
        raw = self.path(name + '.raw')
        image = self.path(name + '.vhdx')
        write_raw(raw, 16 * MiB, writes)
        ok([QEMU_IMG, 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic', raw,
            image])
        return image, sha256(raw)

    def expect_unchanged_but(self, image, before, what):
        """The first 64 KiB (file identifier and creator) are as they were."""
        with open(image, 'rb') as f:
            expect_equal(f.read(64 * KiB), before, '%s: the first 64 KiB' % what)

    def test_physical_sector_size(self):
        image, digest = self.qemu_image('pss', [(0x5a, 0, 3 * MiB), (0x33, 11 * MiB, 64 * KiB)])
        expect_equal(physical_sector_size(image), 512, 'QEMU writes 512-byte physical sectors')
        with open(image, 'rb') as f:
            first = f.read(64 * KiB)
        before = vhdxspec.Vhdx(image)
        result = ok([TOOL, 'set', '--physical-sector-size=4096', image])
        expect_equal((result.stdout, result.stderr), (b'', b''), 'nothing printed')
        after = vhdxspec.Vhdx(image)
        expect_equal(after.physical_sector_size, 4096, 'the Physical Sector Size item')
        expect_equal(physical_sector_size(image), 4096, 'its bytes in the file')
        expect_equal((after.item_offsets, after.item_flags, after.regions),
                     (before.item_offsets, before.item_flags, before.regions),
                     'rewritten in place: the tables are as they were')
        expect_equal(after.logical_sector_size, 512, 'the logical sector size is kept')
        expect_equal(after.virtual_disk_id, before.virtual_disk_id, 'the disk ID is kept')
        expect_equal(after.virtual_size, before.virtual_size, 'the size is kept')
        expect(after.header['data-write-guid'] != before.header['data-write-guid'],
               'a new DataWriteGuid (MS-VHDX 2.2.2)')
        expect(after.header['file-write-guid'] != before.header['file-write-guid'],
               'a new FileWriteGuid')
        expect_equal(after.header['log-guid'], str(uuid.UUID(int=0)), 'a clean log')
        expect(all(h['valid'] for h in after.headers), 'both headers valid')
        self.expect_unchanged_but(image, first, 'set')
        expect_equal(qemu_raw_digest(image, self.tmp), digest, 'QEMU reads the same disk')
        ok([QEMU_IMG, 'check', '-f', 'vhdx', image])
        ok([TOOL, 'check', image])
        info = vhdiinfo(image)
        if info is not None:
            expect_equal(info['Identifier'], after.header['data-write-guid'].lower(),
                         'libvhdi finds the new DataWriteGuid')
        # And back.
        ok([TOOL, 'set', '--physical-sector-size=512', image])
        expect_equal(physical_sector_size(image), 512, 'back to 512')
        expect_equal(qemu_raw_digest(image, self.tmp), digest, 'QEMU reads the same disk again')

    def test_reset_disk_id(self):
        image, digest = self.qemu_image('id', [(0x71, 2 * MiB, MiB)])
        before = vhdxspec.Vhdx(image)
        ok([TOOL, 'set', '--reset-disk-id', image])
        after = vhdxspec.Vhdx(image)
        expect(after.virtual_disk_id != before.virtual_disk_id, 'a new Virtual Disk ID')
        expect_equal(uuid.UUID(after.virtual_disk_id).version, 4, 'a random GUID')
        expect_equal(after.physical_sector_size, before.physical_sector_size,
                     'the physical sector size is kept')
        expect(after.header['data-write-guid'] != before.header['data-write-guid'],
               'a new DataWriteGuid')
        expect_equal(qemu_raw_digest(image, self.tmp), digest, 'QEMU reads the same disk')
        ok([QEMU_IMG, 'check', '-f', 'vhdx', image])
        # Each reset gives another one.
        ok([TOOL, 'set', '--reset-disk-id', '--physical-sector-size=4096', image])
        again = vhdxspec.Vhdx(image)
        expect(again.virtual_disk_id not in (before.virtual_disk_id, after.virtual_disk_id),
               'another Virtual Disk ID')
        expect_equal(again.physical_sector_size, 4096, 'both at once')

    def test_nothing_to_change(self):
        image = self.path('same.vhdx')
        ok([TOOL, 'create', '--physical-sector-size=4096', image, '8M'])
        digest = sha256(image)
        for args in ([], ['--physical-sector-size=4096'], ['--physical-sector-size=4K']):
            result = ok([TOOL, 'set', '--json'] + args + [image])
            report = json.loads(result.stdout)
            expect_equal(report['changed'], False, 'changed for %r' % args)
            expect_equal(report['old-data-write-guid'], report['new-data-write-guid'],
                         'the DataWriteGuid for %r' % args)
            expect_equal(sha256(image), digest, 'not a byte written for %r' % args)

    def test_json(self):
        image = self.path('json.vhdx')
        ok([TOOL, 'create', '--physical-sector-size=512', image, '8M'])
        before = vhdxspec.Vhdx(image)
        cwd = os.getcwd()
        os.chdir(self.tmp)
        try:
            result = ok([TOOL, 'set', '--json', '--physical-sector-size=4096', '--reset-disk-id',
                         'json.vhdx'])
        finally:
            os.chdir(cwd)
        after = vhdxspec.Vhdx(image)
        expect_equal(json.loads(result.stdout), {
            'filename': 'json.vhdx',
            'changed': True,
            'old-physical-sector-size': 512,
            'new-physical-sector-size': 4096,
            'old-virtual-disk-id': before.virtual_disk_id,
            'new-virtual-disk-id': after.virtual_disk_id,
            'old-data-write-guid': before.header['data-write-guid'].lower(),
            'new-data-write-guid': after.header['data-write-guid'].lower(),
            'children-updated': [],
            'children-orphaned': [],
        }, '--json')

    def make_chain(self, name, sector_size=512):
        """A base (QEMU's for 512-byte sectors, else ours) and a child made
        by vhdx convert --parent beside it, holding sectors of its own;
        returns (base, child, digest of what the child reads)."""
        base_raw = self.path(name + '-base.raw')
        child_raw = self.path(name + '-child.raw')
        base_writes = [(0x51, 0, 3 * MiB), (0x52, 9 * MiB, 64 * KiB)]
        write_raw(base_raw, 16 * MiB, base_writes)
        write_raw(child_raw, 16 * MiB, base_writes + [(0x61, MiB, 4 * KiB),
                                                      (0x62, 12 * MiB, MiB)])
        os.makedirs(self.path(name))
        base = self.path(name, 'base.vhdx')
        child = self.path(name, 'child.avhdx')
        if sector_size == 512 and QEMU_IMG is not None:
            ok([QEMU_IMG, 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic',
                base_raw, base])
        else:
            ok([TOOL, 'convert', '--block-size=2M', '--logical-sector-size=%d' % sector_size,
                base_raw, base])
        ok([TOOL, 'convert', '--parent', base, child_raw, child])
        digest = sha256(child_raw)
        expect_equal(tool_digest(child), digest, 'the child reads as made')
        return base, child, digest

    def expect_child_linked(self, base, child, digest, old_linkage, what, vhdi_cat=True):
        """@child names @base's new DataWriteGuid as parent_linkage, with no
        parent_linkage2 left, and reads through @base as made; libvhdi,
        which knows only parent_linkage, reads it through @base too."""
        pairs = vhdxspec.Vhdx(child).parent_locator()
        new_linkage = '{%s}' % data_write_guid(base)
        expect(new_linkage != old_linkage, '%s: the parent has a new DataWriteGuid' % what)
        expect_equal(pairs['parent_linkage'], new_linkage,
                     '%s: parent_linkage is the parent\'s new DataWriteGuid' % what)
        expect('parent_linkage2' not in pairs, '%s: parent_linkage2 is gone' % what)
        expect_equal(tool_digest(child), digest, '%s: the child reads through its parent' % what)
        ok([TOOL, 'check', child])
        info = vhdiinfo(child)
        if info is not None:
            expect_equal('{%s}' % info['Parent identifier'], new_linkage,
                         '%s: libvhdi reads the child\'s parent_linkage' % what)
        # vhdi-cat takes one parent: not a grandchild.
        if VHDI_CAT and vhdi_cat:
            expect_equal(hashlib.sha256(ok([VHDI_CAT, child, base]).stdout).hexdigest(), digest,
                         '%s: libvhdi reads the child through the changed parent' % what)

    def test_child_kept_linked(self):
        base, child, digest = self.make_chain('chain')
        linkage = vhdxspec.Vhdx(child).parent_locator()['parent_linkage']
        child_guid = data_write_guid(child)
        base_digest = qemu_raw_digest(base, self.tmp) if QEMU_IMG else None
        result = ok([TOOL, 'set', '--json', '--physical-sector-size=4096', base])
        report = json.loads(result.stdout)
        expect_equal(report['children-updated'], [child], 'the child is listed')
        expect_equal(report['children-orphaned'], [], 'no child left behind')
        expect_equal(report['new-data-write-guid'], data_write_guid(base), 'the new GUID')
        expect(report['new-data-write-guid'] != linkage.strip('{}'), 'a new DataWriteGuid')
        self.expect_child_linked(base, child, digest, linkage, 'after set')
        expect_equal(data_write_guid(child), child_guid, 'the child\'s own DataWriteGuid is kept')
        if QEMU_IMG:
            expect_equal(qemu_raw_digest(base, self.tmp), base_digest, 'QEMU reads the base')
            ok([QEMU_IMG, 'check', '-f', 'vhdx', base])
        # A second change: parent_linkage names the newest GUID.
        ok([TOOL, 'set', '--reset-disk-id', base])
        self.expect_child_linked(base, child, digest, linkage, 'after a second set')
        linkage = '{%s}' % data_write_guid(base)
        # A child made after the change links by parent_linkage.
        second = self.path('chain', 'second.avhdx')
        ok([TOOL, 'create', '--parent', base, second])
        ok([TOOL, 'set', '--physical-sector-size=512', base])
        self.expect_child_linked(base, child, digest, linkage, 'after a third set')
        pairs = vhdxspec.Vhdx(second).parent_locator()
        expect_equal(pairs['parent_linkage'], '{%s}' % data_write_guid(base),
                     'the second child is updated too')
        ok([TOOL, 'check', second])

    def test_differencing_image(self):
        base, child, digest = self.make_chain('diff')
        # A grandchild beside the child, made from it.
        grandchild = self.path('diff', 'grandchild.avhdx')
        ok([TOOL, 'create', '--parent', child, grandchild])
        linkage = vhdxspec.Vhdx(grandchild).parent_locator()['parent_linkage']
        base_before = sha256(base)
        before = vhdxspec.Vhdx(child)
        report = json.loads(ok([TOOL, 'set', '--json', '--physical-sector-size=4096',
                                '--reset-disk-id', child]).stdout)
        after = vhdxspec.Vhdx(child)
        expect_equal((after.physical_sector_size, after.has_parent), (4096, True),
                     'the child\'s physical sector size')
        expect(after.virtual_disk_id != before.virtual_disk_id, 'its new disk ID')
        expect_equal(after.parent_locator(), before.parent_locator(), 'its locator is kept')
        expect_equal(tool_digest(child), digest, 'the child reads as before')
        expect_equal(sha256(base), base_before, 'its parent is not touched')
        expect_equal(report['children-updated'], [grandchild], 'the grandchild is updated')
        self.expect_child_linked(child, grandchild, digest, linkage, 'the grandchild',
                                 vhdi_cat=False)
        ok([TOOL, 'check', child])

    def test_4k_sectors(self):
        image = self.path('4k.vhdx')
        raw = self.path('4k.raw')
        write_raw(raw, 8 * MiB, [(0x44, 4 * KiB, 8 * KiB), (0x45, 5 * MiB, MiB)])
        ok([TOOL, 'convert', '--logical-sector-size=4096', raw, image])
        before = vhdxspec.Vhdx(image)
        expect_equal((before.logical_sector_size, before.physical_sector_size), (4096, 4096),
                     'sectors as made')
        ok([TOOL, 'set', '--physical-sector-size=512', '--reset-disk-id', image])
        after = vhdxspec.Vhdx(image)
        expect_equal((after.logical_sector_size, after.physical_sector_size), (4096, 512),
                     'the physical sector size changed, the logical one not')
        expect(after.virtual_disk_id != before.virtual_disk_id, 'a new disk ID')
        expect_equal(tool_digest(image), sha256(raw), 'the disk reads as before')
        info = vhdiinfo(image)
        if info is not None:
            expect_equal(info['Bytes per sector'], '4096 bytes', 'libvhdi: logical sectors')
            expect_equal(info['Identifier'], data_write_guid(image), 'libvhdi: DataWriteGuid')
        ok([TOOL, 'check', image])

    def test_refusals(self):
        image = self.path('refused.vhdx')
        ok([TOOL, 'create', '--physical-sector-size=512', image, '8M'])
        digest = sha256(image)
        result = vhdx('set', '--creator=someone else', image)
        expect_equal(result.returncode, 1, '--creator')
        expect(b'64 KiB' in result.stderr and result.stderr.count(b'\n') == 1,
               '--creator: one line saying why: %r' % result.stderr)
        for size in ('1024', '8192', '0', '513', 'abc', '4097', '99999999999'):
            result = vhdx('set', '--physical-sector-size=' + size, image)
            expect_equal(result.returncode, 1, '--physical-sector-size=%s' % size)
            expect(result.stderr.startswith(b'vhdx: '), 'an error for %s: %r' %
                   (size, result.stderr))
        result = vhdx('set', '--physical-sector-size=1024', image)
        expect(b'512 or 4096' in result.stderr, 'the error names the sizes: %r' % result.stderr)
        for args in ([], ['a', 'b']):
            result = vhdx('set', '--reset-disk-id', *args)
            expect_equal(result.returncode, 1, 'usage error for %r' % args)
            expect(b'--help' in result.stderr, 'usage error hints at --help')
        result = vhdx('set', '--reset-disk-id', self.path('missing.vhdx'))
        expect_equal(result.returncode, 1, 'a missing image')
        expect_equal(sha256(image), digest, 'the refused image is unchanged')

    def read_only(self, path):
        """Make @path read-only for this process, or Skip; returns the undo."""
        os.chmod(path, 0o444)
        if not os.access(path, os.W_OK):
            return lambda: os.chmod(path, 0o644)
        # Root writes despite the mode: an immutable file, where the file system has them.
        if shutil.which('chattr') and run(['chattr', '+i', path]).returncode == 0:
            return lambda: (run(['chattr', '-i', path]), os.chmod(path, 0o644))
        os.chmod(path, 0o644)
        raise Skip('no way to make a file read-only for this user')

    def test_read_only_image(self):
        image = self.path('ro.vhdx')
        ok([TOOL, 'create', image, '8M'])
        digest = sha256(image)
        undo = self.read_only(image)
        try:
            result = vhdx('set', '--reset-disk-id', image)
        finally:
            undo()
        expect_equal(result.returncode, 1, 'a read-only image')
        expect(result.stderr.startswith(b'vhdx: ' + image.encode() + b': '),
               'the error names the image: %r' % result.stderr)
        expect_equal(sha256(image), digest, 'the read-only image is unchanged')

    def test_child_that_cannot_be_updated(self):
        base, child, digest = self.make_chain('stuck')
        linkage = vhdxspec.Vhdx(child).parent_locator()['parent_linkage']
        base_digest, child_digest = sha256(base), sha256(child)
        undo = self.read_only(child)
        try:
            result = vhdx('set', '--reset-disk-id', base)
            expect_equal(result.returncode, 1, 'a read-only child refuses the change')
            expect(child.encode() in result.stderr and result.stderr.count(b'\n') == 1,
                   'one error line naming the child: %r' % result.stderr)
            expect_equal((sha256(base), sha256(child)), (base_digest, child_digest),
                         'nothing changed')
        finally:
            undo()
        # In use: another process holds the child as QEMU's writers do
        # (shared locks on the bytes of the permissions used and not shared).
        holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCKS, child],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            expect_equal(holder.stdout.readline(), b'locked\n', 'the locks are held')
            result = vhdx('set', '--reset-disk-id', base)
            expect_equal(result.returncode, 1, 'a child in use refuses the change')
            expect(child.encode() in result.stderr, 'the error names it: %r' % result.stderr)
            expect_equal((sha256(base), sha256(child)), (base_digest, child_digest),
                         'nothing changed')
            result = ok([TOOL, 'set', '--json', '--force', '--reset-disk-id', base])
        finally:
            holder.stdin.close()
            holder.wait()
        report = json.loads(result.stdout)
        expect_equal((report['changed'], report['children-updated'],
                      report['children-orphaned']), (True, [], [child]), '--force: --json')
        stderr = result.stderr.decode()
        expect(stderr.startswith('vhdx: %s: warning: ' % base) and child in stderr
               and 'set-parent --ignore-parent-mismatch' in stderr,
               'a warning naming the child and the fix: %r' % stderr)
        expect_equal(sha256(child), child_digest, 'the child left behind is unchanged')
        expect_equal(vhdx('cat', child).returncode, 1, 'it no longer opens with its parent')
        # The fix the warning names.
        ok([TOOL, 'set-parent', '--ignore-parent-mismatch', child, base])
        expect_equal(tool_digest(child), digest, 'linked again, it reads as before')
        expect(vhdxspec.Vhdx(child).parent_locator()['parent_linkage'] != linkage,
               'it names the new DataWriteGuid')

    def test_help(self):
        result = ok([TOOL, 'set', '--help'])
        for option in (b'--physical-sector-size', b'--reset-disk-id', b'--creator', b'--force',
                       b'--json'):
            expect(option in result.stdout, '--help names %s' % option)
        expect(b' set ' in ok([TOOL, '--help']).stdout, 'vhdx --help lists set')


if __name__ == '__main__':
    sys.exit(clitest.main(Tests, 'vhdx-set-'))
