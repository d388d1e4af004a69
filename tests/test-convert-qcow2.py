#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `vhdx convert` to qcow2, end to end, printed as TAP: a dynamic image made
# by QEMU, a checkpoint chain and a 4 KiB-sector checkpoint made by us, a
# raw source, and the Hyper-V sample become qcow2 images that QEMU reads as
# the source disk, with the holes kept; a missing parent or a missing
# nbdkit fails with one error line and leaves nothing behind.
#
# Oracles: `qemu-img info` (format, size), `qemu-img compare` against the
# raw disk each image was made from (or QEMU's own reading of a dynamic
# image), `qemu-img check`, and the qcow2 file's allocation (`qemu-img map`
# of the output: no data where the source stores none).  The tool serves
# the source through nbdkit and the plugin of this build, beside it.
#
# Environment: VHDX_TOOL (required); VHDX_SHARED_DIR (the samples, when
# present).

import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'common'))
import clitest  # noqa: E402
from clitest import TOOL, Skip, expect, expect_equal, ok, vhdx, write_raw  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

QEMU_IMG = shutil.which('qemu-img')
NBDKIT = shutil.which('nbdkit')


def need_tools():
    if QEMU_IMG is None or NBDKIT is None:
        raise Skip('qemu-img or nbdkit is not installed')


def qemu_info(path):
    return json.loads(ok([QEMU_IMG, 'info', '--output=json', path]).stdout)


def data_bytes(path):
    """Bytes that qemu-img map says hold data in the qcow2 image."""
    extents = json.loads(ok([QEMU_IMG, 'map', '--output=json', '-f', 'qcow2', path]).stdout)
    return sum(e['length'] for e in extents if e['data'])


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp

    def path(self, *names):
        return os.path.join(self.tmp, *names)

    def expect_qcow2_of(self, out, raw, what):
        info = qemu_info(out)
        expect_equal(info['format'], 'qcow2', '%s: format' % what)
        expect_equal(info['virtual-size'], os.stat(raw).st_size, '%s: virtual size' % what)
        ok([QEMU_IMG, 'check', '-q', '-f', 'qcow2', out])
        ok([QEMU_IMG, 'compare', '-q', '-f', 'qcow2', '-F', 'raw', out, raw])
        leftovers = [n for n in os.listdir(os.path.dirname(out))
                     if n.startswith(os.path.basename(out) + '.')]
        expect(not leftovers, '%s: temporary files left: %r' % (what, leftovers))

    def chain(self, name, sector_size=512):
        """base.vhdx and its checkpoint; returns the checkpoint and its raw disk."""
        os.makedirs(self.path(name))
        base_raw, raw = self.path(name, 'base.raw'), self.path(name, 'child.raw')
        base_writes = [(0x21, 0, 6 * MiB), (0x22, 30 * MiB, 2 * MiB)]
        write_raw(base_raw, 64 * MiB, base_writes)
        write_raw(raw, 64 * MiB, base_writes + [(0x23, 4 * MiB, 4 * MiB), (0x00, 30 * MiB, MiB),
                                                (0x24, 50 * MiB, 4 * KiB)])
        base, child = self.path(name, 'base.vhdx'), self.path(name, 'vm_6D2B0C51.avhdx')
        ok([TOOL, 'convert', '--logical-sector-size=%d' % sector_size, base_raw, base])
        ok([TOOL, 'convert', '--parent', base, raw, child])
        return child, raw

    def test_qemu_dynamic(self):
        need_tools()
        img = self.path('qemu.vhdx')
        ok([QEMU_IMG, 'create', '-q', '-f', 'vhdx', img, '256M'])
        ok(['qemu-io', '-f', 'vhdx', '-c', 'write -P 0x31 0 3M', '-c',
            'write -P 0x32 200M 64K', img])
        raw = self.path('qemu.raw')
        ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', img, raw])
        out = self.path('qemu.qcow2')
        ok([TOOL, 'convert', img, out])
        self.expect_qcow2_of(out, raw, 'by name')
        expect(data_bytes(out) <= 4 * MiB, 'the holes are kept: %d bytes of data'
               % data_bytes(out))

    def test_checkpoint_chain(self):
        need_tools()
        child, raw = self.chain('chain')
        out = self.path('chain', 'disk.img')
        ok([TOOL, 'convert', '-O', 'qcow2', '--progress', child, out])
        self.expect_qcow2_of(out, raw, 'a checkpoint, -O qcow2')
        expect(data_bytes(out) <= 16 * MiB, 'the holes are kept: %d bytes of data'
               % data_bytes(out))

    def test_checkpoint_4k(self):
        need_tools()
        child, raw = self.chain('4k', sector_size=4096)
        out = self.path('4k', 'disk.qcow2')
        ok([TOOL, 'convert', child, out])
        self.expect_qcow2_of(out, raw, '4 KiB sectors')

    def test_moved_parent(self):
        need_tools()
        child, raw = self.chain('moved')
        os.makedirs(self.path('moved', 'store'))
        moved = self.path('moved', 'store', 'base.vhdx')
        os.rename(self.path('moved', 'base.vhdx'), moved)
        out = self.path('moved', 'disk.qcow2')
        result = vhdx('convert', child, out)
        expect_equal(result.returncode, 1, 'the parent is missing: %r' % result.stderr)
        expect(not os.path.exists(out), 'no destination')
        expect_equal(sorted(os.listdir(self.path('moved'))),
                     ['base.raw', 'child.raw', 'store', 'vm_6D2B0C51.avhdx'],
                     'nothing left behind')
        ok([TOOL, 'convert', '--parent-dir', self.path('moved', 'store'), child, out])
        self.expect_qcow2_of(out, raw, 'with --parent-dir')

    def test_raw_source(self):
        need_tools()
        raw = self.path('source.raw')
        write_raw(raw, 32 * MiB, [(0x41, MiB, MiB)])
        out = self.path('source.qcow2')
        ok([TOOL, 'convert', raw, out])
        self.expect_qcow2_of(out, raw, 'a raw source')

    def test_without_nbdkit(self):
        need_tools()
        child, raw = self.chain('nonbdkit')
        bin_dir = self.path('bin')
        os.makedirs(bin_dir)
        os.symlink(QEMU_IMG, os.path.join(bin_dir, 'qemu-img'))
        out = self.path('nonbdkit', 'disk.qcow2')
        result = clitest.run([TOOL, 'convert', child, out], env=dict(clitest.ENV, PATH=bin_dir))
        expect_equal(result.returncode, 1, 'exit status without nbdkit')
        expect(b'nbdkit' in result.stderr and len(result.stderr.splitlines()) == 1,
               'one error line naming nbdkit: %r' % result.stderr)
        expect(not os.path.exists(out), 'no destination')

    def test_hyperv_sample(self):
        need_tools()
        img = self.path('hyperv.vhdx')
        clitest.sample('iotest-dynamic-1G.vhdx.bz2', img)
        raw = self.path('hyperv.raw')
        ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', img, raw])
        out = self.path('hyperv.qcow2')
        ok([TOOL, 'convert', img, out])
        self.expect_qcow2_of(out, raw, 'Hyper-V\'s image')


if __name__ == '__main__':
    sys.exit(clitest.main(Tests, 'vhdx-convert-qcow2-'))
