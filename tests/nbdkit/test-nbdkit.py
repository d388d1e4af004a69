#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# End-to-end tests of nbdkit-vhdx-plugin, printed as TAP.
#
# Each image is served by nbdkit through the plugin and read back by NBD
# clients: nbdcopy (the bytes, over several connections at once), nbdinfo
# (the extents and the export's properties), qemu-img (compare, and map,
# which asks for one extent at a time).  The expected bytes come from
# `qemu-img convert -O raw` for images QEMU makes, and from the test
# generator's raw disk for those it cannot (4 KiB sectors, ZERO blocks, a
# dirty log, replayed by QEMU as well).  The export's size and block size
# come from `qemu-img info` or the generator's description of what it
# wrote (vhdx-mkimage --describe); the expected extents from the blocks the
# test wrote or the generator stored.
#
# Every image is served read-only (nbdkit -r) and then writable, which
# must leave a clean image as it was when nothing is written; a dirty log
# is replayed onto the file by a writable server only.  Writing is tested
# by test-nbdkit-write.py.
#
# With --libguestfs, the one test is libguestfs reading files from an ext4
# filesystem in a VHDX image through the plugin.
#
# Environment: VHDX_NBDKIT_PLUGIN (the plugin under test), VHDX_TOOL,
# VHDX_MKIMAGE, VHDX_VERSION; VHDX_ASAN_RUNTIME when the
# plugin is built with AddressSanitizer (nbdkit is not, so the runtime must
# be preloaded into it).

import hashlib
import json
import os
import shlex
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbdtest import (  # noqa: E402
    Captive, KiB, MiB, MKIMAGE, NBDCOPY, NBDINFO, NBDKIT, PLUGIN, QEMU_IMG, QEMU_IO, GUESTFISH, TOOL,
    Server, Skip, check_ok, expect, expect_equal, guestfish, main, need, nbdkit_env,
    nbdkit_refuses, qemu_create, run, sha256_file, skip_unless_appliance_runs)

EXTENT_HOLE = 1
EXTENT_ZERO = 2


class Image:
    """A VHDX image, the raw disk it must read as, and what its maker says
    of it: virtual size, block size, logical sector size, and the ranges of
    the disk that the image (or its chain) stores, in (start, length)."""

    def __init__(self, path, raw_path, size, block_size, data_ranges,
                 logical_sector_size=512):
        self.path = path
        self.raw_path = raw_path
        self.size = size
        self.block_size = block_size
        self.data_ranges = sorted(data_ranges)
        self.logical_sector_size = logical_sector_size
        self.raw_sha256 = sha256_file(raw_path)

    def expected_extents(self):
        """(offset, length, NBD type), merged: data where the image stores
        data, and elsewhere (unallocated or in the ZERO state, no space in
        the image) a hole that reads as zeros."""
        extents = []
        position = 0
        for start, length in self.data_ranges:
            if start > position:
                extents.append((position, start - position, EXTENT_ZERO | EXTENT_HOLE))
            extents.append((start, length, 0))
            position = start + length
        if position < self.size:
            extents.append((position, self.size - position, EXTENT_ZERO | EXTENT_HOLE))
        return merge_extents(extents)


def merge_extents(extents):
    merged = []
    for offset, length, kind in extents:
        if merged and merged[-1][2] == kind and merged[-1][0] + merged[-1][1] == offset:
            merged[-1] = (merged[-1][0], merged[-1][1] + length, kind)
        else:
            merged.append((offset, length, kind))
    return merged


def touched_blocks(writes, block_size, size):
    """(start, length) of every block that the writes (pattern, offset, length) touch."""
    blocks = set()
    for _, offset, length in writes:
        blocks.update(range(offset // block_size, (offset + length - 1) // block_size + 1))
    return [(b * block_size, min(block_size, size - b * block_size)) for b in sorted(blocks)]


def qemu_image(workdir, name, subformat, size, block_size, writes):
    """An image made and written by QEMU; QEMU's raw conversion is the truth,
    and `qemu-img info` gives the sizes.  QEMU stores exactly the blocks
    written to (those of a fixed image that were never written are in the
    ZERO state)."""
    path = os.path.join(workdir, name + '.vhdx')
    raw = os.path.join(workdir, name + '.raw')
    qemu_create(path, subformat, size, block_size, writes)
    check_ok(run([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', path, raw]),
             'qemu-img convert')
    info = json.loads(check_ok(run([QEMU_IMG, 'info', '--output=json', '-f', 'vhdx', path]),
                               'qemu-img info').stdout)
    expect_equal(info['virtual-size'], size, 'qemu-img virtual-size of %s' % path)
    if block_size:
        expect_equal(info['cluster-size'], block_size, 'qemu-img cluster-size of %s' % path)
    return Image(path, raw, info['virtual-size'], info['cluster-size'],
                 touched_blocks(writes, info['cluster-size'], size))


def generated_image(workdir, name, options, logical_sector_size=512):
    """An image from the project's generator, with the raw disk it writes and
    its description of what it wrote."""
    path = os.path.join(workdir, name + '.vhdx')
    raw = os.path.join(workdir, name + '.raw')
    describe = os.path.join(workdir, name + '.json')
    check_ok(run([MKIMAGE] + options + ['--raw', raw, '--describe', describe, path]),
             'vhdx-mkimage')
    with open(describe, encoding='utf-8') as f:
        made = json.load(f)
    expect_equal(made['logical-sector-size'], logical_sector_size,
                 'logical sector size asked of the generator')
    stored = [(b['start'], b['length']) for b in made['blocks']]
    if made['dirty'] is not None:
        stored.append((made['dirty']['start'], made['dirty']['length']))
    image = Image(path, raw, made['virtual-size'], made['block-size'], stored,
                  logical_sector_size)
    image.made = made
    return image


def qemu_replays_to(workdir, image, raw_path):
    """QEMU, an independent reader, replays the dirty log of a copy of @image
    (`qemu-img check -r all`, which counts the replay as one corruption
    fixed) and then reads it as @raw_path."""
    need(('qemu-img', QEMU_IMG))
    copy = os.path.join(workdir, os.path.basename(image) + '.qemu-replayed')
    shutil.copyfile(image, copy)
    report = json.loads(check_ok(run([QEMU_IMG, 'check', '-r', 'all', '--output=json',
                                      '-f', 'vhdx', copy]), 'qemu-img check -r all').stdout)
    expect_equal((report.get('check-errors'), report.get('corruptions-fixed')), (0, 1),
                 'qemu-img check -r all: (check errors, corruptions fixed)')
    check_ok(run([QEMU_IMG, 'compare', '-f', 'vhdx', '-F', 'raw', copy, raw_path]),
             'qemu-img compare after QEMU\'s replay')
    os.unlink(copy)


def expect_served_correctly(workdir, image, bare_file_param=False, writable=True):
    """Every client reads @image through the plugin as its raw disk: served
    read-only (nbdkit -r), then, unless not @writable, writable, where
    opening it for writing and closing it again with nothing written must
    leave the file as it was."""
    before = sha256_file(image.path)
    skipped = serve_and_compare(workdir, image, bare_file_param, True)
    expect_equal(sha256_file(image.path), before, 'sha256 of the image served read-only')
    if writable:
        skipped = serve_and_compare(workdir, image, bare_file_param, False) or skipped
        expect_equal(sha256_file(image.path), before,
                     'sha256 of the image served writable, nothing written')
    if skipped:
        raise Skip(skipped)


def serve_and_compare(workdir, image, bare_file_param, readonly):
    """Serve @image, read-only or writable, and compare what every client
    reads with its raw disk.  Each client runs as nbdkit(1) shows it, under
    a server of its own that runs it (--run).  Returns why some comparisons
    were skipped, or None."""
    need(('nbdcopy', NBDCOPY), ('nbdinfo', NBDINFO))
    params = [image.path] if bare_file_param else ['file=' + image.path]
    copy = os.path.join(workdir, 'copy.raw')

    def served(command, expect_status=0):
        return Captive(workdir, params, command, ['-r'] if readonly else [],
                       expect_status=expect_status)

    info = json.loads(served('nbdinfo --json "$uri"').stdout)
    export = info['exports'][0]
    expect_equal(export['export-size'], image.size, 'export size')
    expect_equal(export['is_read_only'], readonly, 'is_read_only')
    expect_equal(export['can_multi_conn'], True, 'can_multi_conn')
    expect_equal(export['block_size_minimum'], image.logical_sector_size, 'minimum block size')
    # The image's block size (from qemu-img info or the generator), up to
    # the 1 MiB that nbdkit-vhdx-plugin(1) documents.
    expect_equal(export['block_size_preferred'], min(image.block_size, MiB),
                 'preferred block size')
    expect_equal(export['block_size_maximum'], 0xffffffff, 'maximum block size')

    # nbdcopy reads over four connections with several requests in flight.
    if os.path.exists(copy):
        os.unlink(copy)
    served('nbdcopy --connections=4 --requests=16 "$uri" %s' % shlex.quote(copy))
    expect_equal(sha256_file(copy), image.raw_sha256, 'sha256 of the copy')
    os.unlink(copy)

    found = json.loads(served('nbdinfo --map --json "$uri"').stdout)
    expect_equal(merge_extents((e['offset'], e['length'], e['type']) for e in found),
                 image.expected_extents(), 'extents')

    if QEMU_IMG is None:
        skipped = 'qemu-img not installed: not compared or mapped by QEMU'
    else:
        skipped = None
        served('qemu-img compare -f raw -F raw "$uri" %s' % shlex.quote(image.raw_path))
        # QEMU asks for one extent at a time (NBD_CMD_FLAG_REQ_ONE).
        qemu_map = json.loads(served('qemu-img map --output=json -f raw "$uri"').stdout)
        expect_equal(
            merge_extents((e['start'], e['length'], (e['data'], e['zero'])) for e in qemu_map),
            merge_extents((o, n, (not t & EXTENT_HOLE, bool(t & EXTENT_ZERO)))
                          for o, n, t in image.expected_extents()),
            'extents seen by qemu-img map')

    if readonly:
        # A read-only export: a client cannot write to it.
        result = served('nbdcopy %s "$uri"' % shlex.quote(image.raw_path), expect_status=None)
        expect(result.status != 0, 'nbdcopy wrote to the export')
    return skipped


class Tests:
    def __init__(self, workdir):
        self.workdir = workdir

    def path(self, name):
        return os.path.join(self.workdir, name)

    def test_dump_plugin(self):
        result = check_ok(run([NBDKIT, PLUGIN, '--dump-plugin'], env=nbdkit_env()),
                          'nbdkit --dump-plugin')
        lines = result.stdout.decode().splitlines()
        expect('vhdx_version=%s' % os.environ.get('VHDX_VERSION', '') in lines,
               'no vhdx_version=%s in %r' % (os.environ.get('VHDX_VERSION'), lines))
        expect('thread_model=parallel' in lines, 'thread model is not parallel: %r' % lines)
        expect('name=vhdx' in lines, 'plugin name is not vhdx')

    def test_file_parameter_required(self):
        output = nbdkit_refuses(self.workdir, [])
        expect('file=' in output, 'no mention of file= in %r' % output)

    def test_fixed(self):
        image = qemu_image(self.workdir, 'fixed', 'fixed', 24 * MiB, None, [
            (0x5a, 5 * MiB, 2 * MiB),
            (0xc3, 24 * MiB - 4 * KiB, 4 * KiB),
        ])
        expect_served_correctly(self.workdir, image, bare_file_param=True)

    def test_dynamic(self):
        image = qemu_image(self.workdir, 'dynamic', 'dynamic', 40 * MiB, MiB, [
            (0xa5, 3 * MiB, 1500 * KiB),
            (0x3c, 20 * MiB, 4 * KiB),
            (0x00, 10 * MiB, 64 * KiB),  # allocates a block of zeros
            (0x5e, 39 * MiB + 512, 4 * KiB),
        ])
        expect_served_correctly(self.workdir, image)

    def test_dynamic_32m_blocks(self):
        image = qemu_image(self.workdir, 'big-blocks', 'dynamic', 70 * MiB, 32 * MiB, [
            (0x42, 0, 512),
            (0x77, 64 * MiB + 4 * KiB, 6 * MiB - 8 * KiB),
        ])
        expect_served_correctly(self.workdir, image)

    def test_4k_sectors(self):
        image = generated_image(self.workdir, '4k', [
            '--type', 'dynamic', '--size', '48M', '--block-size', '1M',
            '--logical-sector-size', '4096', '--physical-sector-size', '4096',
            '--pattern', '0:8K:1', '--pattern', '3M:2M:2', '--pattern', '47M:1M:3',
        ], logical_sector_size=4096)
        expect_served_correctly(self.workdir, image)

    def test_zero_blocks(self):
        # Untouched blocks in the ZERO state are served as holes too.
        image = generated_image(self.workdir, 'zero-state', [
            '--type', 'dynamic', '--size', '16M', '--block-size', '1M', '--zero-state',
            '--pattern', '2M:1M:4', '--pattern', '9M:100K:5',
        ])
        # The generator wrote blocks 2 and 9 and left the 14 others ZERO (2).
        expect_equal(image.made['zero-state'], 2, 'BAT state of the unwritten blocks')
        expect_equal(image.data_ranges, [(2 * MiB, MiB), (9 * MiB, MiB)], 'stored blocks')
        expect_equal(image.expected_extents(), [
            (0, 2 * MiB, EXTENT_ZERO | EXTENT_HOLE), (2 * MiB, MiB, 0),
            (3 * MiB, 6 * MiB, EXTENT_ZERO | EXTENT_HOLE), (9 * MiB, MiB, 0),
            (10 * MiB, 6 * MiB, EXTENT_ZERO | EXTENT_HOLE)], 'expected extents')
        expect_served_correctly(self.workdir, image)

    def test_fixed_generated(self):
        image = generated_image(self.workdir, 'fixed-gen', [
            '--type', 'fixed', '--size', '20M', '--block-size', '1M', '--shuffle',
            '--pattern', '1M:3M:6', '--pattern', '19M:1M:7',
        ])
        expect_served_correctly(self.workdir, image)

    def test_dirty_log(self):
        options = ['--type', 'dynamic', '--size', '16M', '--block-size', '1M',
                   '--pattern', '0:2M:1', '--pattern', '10M:1M:2']
        # Block 5 is allocated by the log alone, as a crash during its
        # allocation leaves it: the payload written, the BAT entry only in
        # the log.  The expected disk is the generator's with the same
        # pattern written there, which a clean image shows as well.
        image = generated_image(self.workdir, 'dirty',
                                options + ['--dirty-block', '5', '--dirty-seed', '9'])
        clean = generated_image(self.workdir, 'dirty-expected',
                                options + ['--pattern', '5M:1M:9'])
        expect_equal(image.raw_sha256, clean.raw_sha256, 'the disk once the log is replayed')
        expect_equal(image.data_ranges, [(0, MiB), (MiB, MiB), (5 * MiB, MiB), (10 * MiB, MiB)],
                     'stored blocks')
        info = json.loads(check_ok(run([TOOL, 'info', '--json', image.path]),
                                   'vhdx info').stdout)
        expect_equal(info['format-specific']['data']['log-state'], 'replayed-in-memory',
                     'log state of the dirty image')
        before = sha256_file(image.path)
        # Served read-only (nbdkit -r), the log is replayed in memory only.
        expect_served_correctly(self.workdir, image, writable=False)
        expect_equal(sha256_file(image.path), before, 'the dirty image was modified')
        # QEMU replays the log of a copy and reads the disk expected.
        qemu_replays_to(self.workdir, image.path, image.raw_path)

        # Served writable, the log is replayed onto the file when the first
        # client connects; the image is clean once the last one is gone.
        skipped = serve_and_compare(self.workdir, image, False, False)
        info = json.loads(check_ok(run([TOOL, 'info', '--json', image.path]),
                                   'vhdx info').stdout)
        expect_equal(info['format-specific']['data']['log-state'], 'clean',
                     'log state of the image served writable')
        check_ok(run([TOOL, 'check', image.path]), 'vhdx check')
        if QEMU_IMG is not None:
            check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', image.path]), 'qemu-img check')
            check_ok(run([QEMU_IMG, 'compare', '-f', 'vhdx', '-F', 'raw', image.path,
                          image.raw_path]), 'qemu-img compare after the replay')
        if skipped:
            raise Skip(skipped)

    def test_malformed_image_refused(self):
        image = generated_image(self.workdir, 'malformed', ['--size', '8M'])
        with open(image.path, 'r+b') as f:
            for header in (64 * KiB, 128 * KiB):
                f.seek(header + 100)
                byte = f.read(1)
                f.seek(header + 100)
                f.write(bytes([byte[0] ^ 0xff]))
        result = run([TOOL, 'info', image.path])
        expect(result.returncode != 0, 'vhdx info accepted the malformed image')
        message = result.stderr.decode().strip().split(': ', 2)[-1]
        expect(message, 'no message from vhdx info')

        output = nbdkit_refuses(self.workdir, ['file=' + image.path])
        expect(message in output, 'engine message %r not in %r' % (message, output))

    def test_differencing(self):
        need(('nbdcopy', NBDCOPY))
        parent = generated_image(self.workdir, 'parent', [
            '--type', 'dynamic', '--size', '24M', '--block-size', '1M',
            '--pattern', '0:3M:1', '--pattern', '10M:1M:2', '--pattern', '20M:512K:3',
        ])
        # The child's disk: the parent's with sectors changed here and there,
        # so that the child stores whole blocks, parts of blocks (sector
        # bitmaps) and nothing at all.
        child_raw = self.path('child.raw')
        shutil.copyfile(parent.raw_path, child_raw)
        with open(child_raw, 'r+b') as f:
            for offset, data in ((MiB + 512, os.urandom(7 * 512)),
                                 (5 * MiB, os.urandom(MiB)),
                                 (10 * MiB, bytes(64 * KiB)),
                                 (23 * MiB + 4 * KiB, os.urandom(4 * KiB))):
                f.seek(offset)
                f.write(data)
        child = self.path('child.vhdx')
        check_ok(run([TOOL, 'convert', '--block-size', '1M', '--parent', parent.path,
                      child_raw, child]), 'vhdx convert --parent')
        # The child stores the sectors changed (every one differs from the
        # parent's) and reads the parent's stored blocks 0-2, 10 and 20
        # elsewhere: its own data at depth 0, the parent's at depth 1.
        own = [(MiB + 512, 7 * 512), (5 * MiB, MiB), (10 * MiB, 64 * KiB),
               (23 * MiB + 4 * KiB, 4 * KiB)]
        expect_equal(parent.data_ranges, [(0, MiB), (MiB, MiB), (2 * MiB, MiB),
                                          (10 * MiB, MiB), (20 * MiB, MiB)],
                     'blocks stored by the parent')
        expected_depths = merge_extents([
            (0, MiB + 512, 1), (MiB + 512, 7 * 512, 0), (MiB + 4 * KiB, 2 * MiB - 4 * KiB, 1),
            (5 * MiB, MiB, 0), (10 * MiB, 64 * KiB, 0),
            (10 * MiB + 64 * KiB, MiB - 64 * KiB, 1), (20 * MiB, MiB, 1),
            (23 * MiB + 4 * KiB, 4 * KiB, 0)])
        found = json.loads(check_ok(run([TOOL, 'map', '--json', child]), 'vhdx map').stdout)
        expect_equal(merge_extents((e['start'], e['length'], e['depth'])
                                   for e in found if e['data']),
                     expected_depths, 'data extents of the chain and their depths')
        image = Image(child, child_raw, parent.size, MiB,
                      [(o, n) for o, n, _ in expected_depths])
        expect_served_correctly(self.workdir, image)

        # parent= names a parent that the locator cannot find.
        elsewhere = self.path('elsewhere')
        os.mkdir(elsewhere)
        moved = os.path.join(elsewhere, 'moved-parent.vhdx')
        os.rename(parent.path, moved)
        output = nbdkit_refuses(self.workdir, ['file=' + child])
        expect('parent' in output, 'the error does not mention the parent: %r' % output)
        with Server(self.workdir, ['file=' + child, 'parent=' + moved]) as server:
            copy = self.path('child-copy.raw')
            check_ok(run([NBDCOPY, server.uri, copy]), 'nbdcopy')
            expect_equal(sha256_file(copy), image.raw_sha256, 'sha256 with parent=')

        # parent-dir= finds it under its own name in another directory.
        os.rename(moved, os.path.join(elsewhere, os.path.basename(parent.path)))
        with Server(self.workdir, ['file=' + child, 'parent-dir=' + elsewhere]) as server:
            copy = self.path('child-copy-dir.raw')
            check_ok(run([NBDCOPY, server.uri, copy]), 'nbdcopy')
            expect_equal(sha256_file(copy), image.raw_sha256, 'sha256 with parent-dir=')

        # Another image under the parent's name: refused, and served on purpose.
        other = generated_image(self.workdir, 'other', [
            '--type', 'dynamic', '--size', '24M', '--block-size', '1M', '--seed', '99'])
        shutil.copyfile(other.path, parent.path)
        output = nbdkit_refuses(self.workdir, ['file=' + child])
        expect('DataWriteGuid' in output, 'the error does not name the GUIDs: %r' % output)
        with Server(self.workdir, ['file=' + child, 'ignore-parent-mismatch=true']) as server:
            check_ok(run([NBDCOPY, server.uri, self.path('other-chain.raw')]), 'nbdcopy')
            output = server.stop()
        expect('warning' in output and 'DataWriteGuid' in output,
               'no warning naming the GUIDs: %r' % output)

        # A FIFO where the locator leads: not the parent, and nothing waits on it.
        os.unlink(parent.path)
        os.mkfifo(parent.path)
        output = nbdkit_refuses(self.workdir, ['file=' + child])
        expect('Not a regular file' in output, 'the FIFO is not named: %r' % output)

    def test_missing_parent_refused(self):
        image = generated_image(self.workdir, 'no-parent', ['--size', '8M'])
        output = nbdkit_refuses(self.workdir, ['file=' + image.path,
                                               'parent=' + self.path('does-not-exist.vhdx')])
        expect('does-not-exist.vhdx' in output, 'error does not name the parent: %r' % output)

    def test_read_error_while_serving(self):
        need(('qemu-io', QEMU_IO), ('nbdcopy', NBDCOPY))
        image = generated_image(self.workdir, 'truncated', [
            '--type', 'dynamic', '--size', '16M', '--block-size', '1M',
            '--pattern', '0:1M:1', '--pattern', '15M:1M:2',
        ])
        last = [b for b in image.made['blocks'] if b['block'] == 15]
        expect_equal(len(last), 1, 'block 15 stored by the generator')
        with Server(self.workdir, ['file=' + image.path]) as server:
            # The last block now lies partly past the end of the file.
            os.truncate(image.path, last[0]['file-offset'] + 512)
            result = run([QEMU_IO, '-f', 'raw', '-r', '-c', 'read %d 4096' % (15 * MiB),
                          server.uri])
            output = (result.stdout + result.stderr).decode(errors='replace')
            expect('Input/output error' in output,
                   'qemu-io did not get EIO: %s' % output)
            result = run([NBDCOPY, server.uri, 'null:'])
            expect(result.returncode != 0, 'nbdcopy read a truncated image without error')
            # The server goes on serving what can be read.
            check_ok(run([QEMU_IO, '-f', 'raw', '-r', '-c', 'read -P 0 %d 4096' % (5 * MiB),
                          server.uri]), 'qemu-io after the error')
            expect(server.alive(), 'nbdkit died after a read error')
        log = server.output()
        expect(image.path in log and 'error' in log,
               'the engine\'s message was not logged: %s' % log)


class LibguestfsTests:
    def __init__(self, workdir):
        self.workdir = workdir

    def path(self, name):
        return os.path.join(self.workdir, name)

    def make_disk(self):
        """A raw disk with an MBR partition table and an ext4 filesystem in
        partition 1 holding known files, made without an appliance."""
        sfdisk = shutil.which('sfdisk') or shutil.which('/usr/sbin/sfdisk')
        mkfs = shutil.which('mkfs.ext4') or shutil.which('/usr/sbin/mkfs.ext4')
        need(('sfdisk', sfdisk), ('mkfs.ext4', mkfs))
        root = self.path('root')
        os.makedirs(os.path.join(root, 'docs'))
        files = {
            'hello.txt': b'Hello from a VHDX disk\n',
            'docs/numbers.txt': b''.join(b'%d\n' % i for i in range(20000)),
            'random.bin': os.urandom(3 * MiB + 123),
        }
        for name, data in files.items():
            with open(os.path.join(root, name), 'wb') as f:
                f.write(data)
        raw = self.path('disk.raw')
        with open(raw, 'wb') as f:
            f.truncate(64 * MiB)
        check_ok(run([sfdisk, '-q', raw], input=b'label: dos\nstart=2048, type=83\n'),
                 'sfdisk')
        check_ok(run([mkfs, '-q', '-F', '-L', 'vhdxtest', '-d', root,
                      '-E', 'offset=%d' % MiB, raw, '%dk' % (63 * 1024)]), 'mkfs.ext4')
        return raw, files

    def test_guestfish_reads_files(self):
        need(('guestfish', GUESTFISH), ('qemu-img', QEMU_IMG))
        raw, files = self.make_disk()
        vhdx = self.path('disk.vhdx')
        check_ok(run([QEMU_IMG, 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic',
                      raw, vhdx]), 'qemu-img convert')
        with Server(self.workdir, ['file=' + vhdx]) as server:
            uri = 'nbd://?socket=' + server.socket
            result = guestfish(['--ro', '--format=raw', '-a', uri, '-m', '/dev/sda1',
                                '--', 'ls', '/', ':', 'cat', '/hello.txt', ':',
                                'checksum', 'sha256', '/random.bin', ':',
                                'checksum', 'sha256', '/docs/numbers.txt'])
            if result.returncode != 0:
                skip_unless_appliance_runs()
                check_ok(result, 'guestfish')
        out = result.stdout.decode()
        print('# guestfish output:')
        for line in out.splitlines():
            print('#   ' + line)
        # ls prints one name a line; cat, the file and a newline.
        lines = out.splitlines()
        listing = lines[:4]
        expect_equal(listing, ['docs', 'hello.txt', 'lost+found', 'random.bin'], 'ls /')
        expect_equal('\n'.join(lines[4:-2]) + '\n', files['hello.txt'].decode() + '\n',
                     'cat /hello.txt')
        expect_equal(lines[-2], hashlib.sha256(files['random.bin']).hexdigest(),
                     'sha256 of /random.bin')
        expect_equal(lines[-1], hashlib.sha256(files['docs/numbers.txt']).hexdigest(),
                     'sha256 of /docs/numbers.txt')


if __name__ == '__main__':
    sys.exit(main(LibguestfsTests if '--libguestfs' in sys.argv[1:] else Tests,
                  'vhdx-test-nbdkit-'))
