#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The management commands on images made by Windows and other tools, printed
# as TAP: on each sample of ../shared/samples, a checkpoint made with
# `vhdx create --parent`, written through nbdkit and the plugin by QEMU's
# qemu-io; the parent moved and the checkpoint re-linked to it
# (`vhdx set-parent`); the checkpoint grown (`vhdx resize`); then folded
# into the sample (`vhdx merge --delete-merged`), which QEMU then reads.
#
# Oracles: the samples' README gives the sha256 of each disk, which QEMU's
# reading of the copy must match before anything is done; the disk the
# checkpoint must read is that reading with the writes qemu-io made (applied
# here to a raw copy), zeros past the old end; libvhdi (vhdi-cat) reads the
# re-linked checkpoint through the moved parent (but for the blocks in the
# ZERO state, which it reads from the parent); QEMU reads the merged
# sample (`qemu-img compare`, `qemu-img check`).
#
# Environment: VHDX_TOOL (required); VHDX_NBDKIT_PLUGIN (default: the
# plugin of the tool's build tree); VHDX_VHDI_CAT (when libvhdi was found at
# build time); VHDX_SHARED_DIR (the samples).

import hashlib
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'common'))
import clitest  # noqa: E402
from clitest import TOOL, Skip, expect, expect_equal, ok  # noqa: E402

KiB = 1024
MiB = 1024 * KiB

QEMU_IMG = shutil.which('qemu-img')
QEMU_IO = shutil.which('qemu-io')
NBDKIT = shutil.which('nbdkit')
# The plugin of this build, beside the tool's directory, unless named.
PLUGIN = os.environ.get('VHDX_NBDKIT_PLUGIN') or (
    os.path.join(os.path.dirname(os.path.dirname(TOOL)), 'nbdkit', 'nbdkit-vhdx-plugin.so')
    if TOOL else None)
VHDI_CAT = os.environ.get('VHDX_VHDI_CAT')

# Writes through the plugin: data over the sample's data and past it, a
# few sectors, and zeros (qemu-io's write -z) over a whole range.
WRITES = [('write -P 0x5a 0 64K', 0x5a, 0, 64 * KiB),
          ('write -P 0x5b 5M 3M', 0x5b, 5 * MiB, 3 * MiB),
          ('write -P 0x5c 100M 1536', 0x5c, 100 * MiB, 1536),
          ('write -z 20M 4M', 0x00, 20 * MiB, 4 * MiB)]
GROWTH = 64 * MiB


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(4 * MiB), b''):
            h.update(chunk)
    return h.hexdigest()


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp

    def path(self, *names):
        return os.path.join(self.tmp, *names)

    def run_sample(self, name):
        if QEMU_IMG is None or QEMU_IO is None or NBDKIT is None or not PLUGIN:
            raise Skip('qemu-img, qemu-io, nbdkit or the plugin is missing')
        top = self.path(name.split('.')[0])
        for sub in ('vm', 'store'):
            os.makedirs(os.path.join(top, sub))
        disk = os.path.join(top, 'vm', 'disk.vhdx')
        digest = clitest.sample(name, disk)
        expected = os.path.join(top, 'expected.raw')
        ok([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', disk, expected])
        expect_equal(file_sha256(expected), digest, '%s: QEMU reads the sample as the README '
                     'says' % name)

        # A checkpoint, written through the plugin by qemu-io.
        child = os.path.join(top, 'vm', 'disk_0C4B9AD7-1234-4321-ABCD-0123456789AB.avhdx')
        ok([TOOL, 'create', '--parent', disk, child])
        script = 'exec qemu-io -f raw %s "$uri"' % ' '.join("-c '%s'" % w[0] for w in WRITES)
        ok([NBDKIT, '-U', '-', PLUGIN, child, '--run', script])
        with open(expected, 'r+b') as f:
            for _, pattern, offset, length in WRITES:
                f.seek(offset)
                f.write(bytes([pattern]) * length)
        digest = file_sha256(expected)
        ok([TOOL, 'check', child])

        # The parent moves; the checkpoint is pointed at it again.
        moved = os.path.join(top, 'store', 'disk.vhdx')
        os.rename(disk, moved)
        ok([TOOL, 'set-parent', child, moved])
        expect_equal(hashlib.sha256(ok([TOOL, 'cat', child]).stdout).hexdigest(), digest,
                     '%s: the re-linked checkpoint reads its disk' % name)
        if VHDI_CAT:
            # libvhdi reads a differencing image's PAYLOAD_BLOCK_ZERO blocks
            # (the whole blocks that write -z made) from the parent, where
            # MS-VHDX 2.5.1.1 defines them as zeros: compared elsewhere.
            zeroed = (20 * MiB, 24 * MiB)
            out = ok([VHDI_CAT, child, moved]).stdout
            with open(expected, 'rb') as f:
                want = f.read()
            expect_equal(len(out), len(want), '%s: libvhdi\'s size' % name)
            expect(out[:zeroed[0]] == want[:zeroed[0]] and out[zeroed[1]:] == want[zeroed[1]:],
                   '%s: libvhdi reads the re-linked checkpoint otherwise' % name)

        # The checkpoint grows; the new part reads as zeros.
        ok([TOOL, 'resize', child, '+%d' % GROWTH])
        with open(expected, 'r+b') as f:
            f.truncate(os.path.getsize(expected) + GROWTH)
        ok([TOOL, 'check', child])

        # Folded into the sample, which grows with it.
        ok([TOOL, 'merge', '--delete-merged', child])
        expect(not os.path.exists(child), '%s: the checkpoint is deleted' % name)
        ok([QEMU_IMG, 'check', '-q', '-f', 'vhdx', moved])
        ok([QEMU_IMG, 'compare', '-q', '-f', 'vhdx', '-F', 'raw', moved, expected])
        ok([TOOL, 'check', moved])

    def test_iotest_dynamic(self):
        self.run_sample('iotest-dynamic-1G.vhdx.bz2')

    def test_disk2vhd(self):
        self.run_sample('test-disk2vhd.vhdx.bz2')

    def test_windows10_btrfs(self):
        self.run_sample('windows10-btrfs.vhdx.gz')


if __name__ == '__main__':
    sys.exit(clitest.main(Tests, 'vhdx-samples-manage-'))
