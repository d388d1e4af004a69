#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# End-to-end tests of the `vhdx` tool, printed as TAP.
#
# The oracle is QEMU: qemu-img creates the images, qemu-io writes known
# patterns into them, `qemu-img convert -O raw` gives the expected bytes and
# `qemu-img info` the sizes.  What QEMU does not report (GUIDs, sector
# sizes, the creator, header sequence numbers) is read from the bytes of
# the images with tests/common/vhdxspec.py, written from the specification,
# or taken from the test generator's description of what it wrote
# (vhdx-mkimage --describe).  Without qemu-img the tests that need it are
# skipped.
#
# Environment: VHDX_TOOL (the tool under test, required), VHDX_MKIMAGE,
# VHDX_VERSION (the project's version, from meson), VHDX_SHARED_DIR
# (optional; its samples/ directory holds real-world images).

import bz2
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import traceback
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'common'))
import vhdxspec  # noqa: E402
from qemunbd import QemuNbd  # noqa: E402

MiB = 1024 * 1024
KiB = 1024

BAT_REGION_GUID = uuid.UUID('2DC27766-F623-4200-9D64-115E9BFD4A08').bytes_le
REGION_TABLE_OFFSET = 192 * KiB
HEADER1_OFFSET = 64 * KiB
PAYLOAD_FULLY_PRESENT = 6

TOOL = os.environ.get('VHDX_TOOL')
MKIMAGE = os.environ.get('VHDX_MKIMAGE')
QEMU_IMG = shutil.which('qemu-img')
QEMU_IO = shutil.which('qemu-io')
QEMU_NBD = shutil.which('qemu-nbd')
TOOL_ENV = dict(os.environ, LC_ALL='C.UTF-8')


class Skip(Exception):
    pass


def run(args, **kwargs):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=TOOL_ENV, timeout=120, **kwargs)


def vhdx(*args):
    return run([TOOL] + [str(a) for a in args])


def check_ok(result, what):
    if result.returncode != 0:
        raise AssertionError('%s exited with %d: %s' % (
            what, result.returncode, result.stderr.decode(errors='replace').strip()))
    return result


def expect_equal(found, expected, what):
    if found != expected:
        raise AssertionError('%s: expected %r, found %r' % (what, expected, found))


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def expect_one_error_line(result, path, status=1):
    """A failure is one line on stderr, 'vhdx: PATH: message', and exit status 1."""
    stderr = result.stderr.decode(errors='replace')
    expect_equal(result.returncode, status, 'exit status')
    lines = stderr.splitlines()
    expect(len(lines) == 1, 'expected one line on stderr, found %r' % stderr)
    prefix = 'vhdx: %s: ' % path
    expect(lines[0].startswith(prefix) and len(lines[0]) > len(prefix),
           'stderr %r does not start with %r' % (lines[0], prefix))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(MiB), b''):
            h.update(block)
    return h.hexdigest()


def sha256_of_output(args):
    """sha256 of a command's standard output, streamed (the disks can be large)."""
    h = hashlib.sha256()
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=TOOL_ENV) as proc:
        for block in iter(lambda: proc.stdout.read(MiB), b''):
            h.update(block)
        stderr = proc.stderr.read()
        proc.wait()
    if proc.returncode != 0:
        raise AssertionError('%s exited with %d: %s' % (
            ' '.join(args), proc.returncode, stderr.decode(errors='replace').strip()))
    return h.hexdigest()


def qemu_version():
    """QEMU's version as `qemu-img --version` prints it; QEMU writes 'QEMU v' and
    it as the creator of the images it makes."""
    out = check_ok(run([QEMU_IMG, '--version']), 'qemu-img --version').stdout.decode()
    match = re.match(r'qemu-img version (\S+)', out)
    expect(match, 'no version in %r' % out)
    return match.group(1)


class Image:
    """A qemu-made VHDX image and the facts we know about it from making it."""

    def __init__(self, workdir, name, subformat, size, block_size, writes):
        self.path = os.path.join(workdir, name + '.vhdx')
        self.raw_path = os.path.join(workdir, name + '.qemu.raw')
        self.subformat = subformat
        self.size = size
        self.block_size = block_size
        self.writes = writes  # (pattern, offset, length)

        options = 'subformat=%s' % subformat
        if block_size is not None:
            options += ',block_size=%d' % block_size
        check_ok(run([QEMU_IMG, 'create', '-q', '-f', 'vhdx', '-o', options,
                      self.path, str(size)]), 'qemu-img create')
        if writes:
            commands = []
            for pattern, offset, length in writes:
                commands += ['-c', 'write -P 0x%02x %d %d' % (pattern, offset, length)]
            check_ok(run([QEMU_IO, '-f', 'vhdx'] + commands + [self.path]), 'qemu-io')
        check_ok(run([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', self.path,
                      self.raw_path]), 'qemu-img convert')
        self.qemu_info = json.loads(check_ok(
            run([QEMU_IMG, 'info', '--output=json', '-f', 'vhdx', self.path]),
            'qemu-img info').stdout)
        self.qemu_version = qemu_version()
        if self.block_size is None:
            self.block_size = self.qemu_info['cluster-size']
        self.sha256 = sha256_file(self.path)
        with open(self.raw_path, 'rb') as f:
            self.raw = f.read()

    def written_blocks(self):
        blocks = set()
        for _, offset, length in self.writes:
            first = offset // self.block_size
            last = (offset + length - 1) // self.block_size
            blocks.update(range(first, last + 1))
        return blocks

    def allocated_bytes(self):
        """Bytes of the virtual disk in the blocks written.  The disk ends at
        VirtualDiskSize, so a last, partial block counts up to there only."""
        return sum(min(self.block_size, self.size - b * self.block_size)
                   for b in self.written_blocks())


class Tests:
    def __init__(self, workdir):
        self.workdir = workdir
        self._images = None

    def path(self, name):
        return os.path.join(self.workdir, name)

    def images(self):
        if QEMU_IMG is None or QEMU_IO is None:
            raise Skip('qemu-img or qemu-io not installed')
        if self._images is None:
            self._images = {
                'dynamic': Image(self.workdir, 'dynamic', 'dynamic', 40 * MiB, MiB, [
                    (0xa5, 3 * MiB, 1500 * KiB),
                    (0x3c, 20 * MiB, 4 * KiB),
                    (0x00, 10 * MiB, 64 * KiB),  # allocates a block of zeros
                    (0x5e, 39 * MiB + 512, 4 * KiB),
                ]),
                'fixed': Image(self.workdir, 'fixed', 'fixed', 24 * MiB, None, [
                    (0x5a, 5 * MiB, 2 * MiB),
                ]),
                'odd': Image(self.workdir, 'odd', 'dynamic', 70 * MiB, 32 * MiB, [
                    (0x42, 0, 512),
                    (0x77, 64 * MiB + 4 * KiB, 6 * MiB - 8 * KiB),
                ]),
            }
        return self._images

    def image(self, name):
        return self.images()[name]

    # info

    def info_json(self, name):
        img = self.image(name)
        info = json.loads(check_ok(vhdx('info', '--json', '--allocated', img.path), 'info').stdout)
        data = info['format-specific']['data']
        # The keys qemu-img info shares, and the file's allocation.
        for key in ('format', 'virtual-size', 'cluster-size', 'dirty-flag', 'actual-size'):
            expect_equal(info[key], img.qemu_info[key], '%s (qemu-img info)' % key)
        expect_equal(info['actual-size'], os.stat(img.path).st_blocks * 512, 'actual-size')
        expect_equal(info['virtual-size'], img.size, 'virtual-size asked of qemu-img')
        expect_equal(info['format-specific']['type'], 'vhdx', 'format-specific type')
        expect_equal(info['filename'], img.path, 'filename')
        expect_equal(data['disk-type'], img.subformat, 'disk-type')
        expect_equal(data['log-state'], 'clean', 'log-state')
        # The rest from the bytes QEMU wrote.
        spec = vhdxspec.Vhdx(img.path)
        expect_equal(spec.creator, 'QEMU v' + img.qemu_version, 'creator QEMU wrote')
        expected = {
            'logical-sector-size': spec.logical_sector_size,
            'physical-sector-size': spec.physical_sector_size,
            'virtual-disk-id': spec.virtual_disk_id,
            'data-write-guid': spec.header['data-write-guid'],
            'file-write-guid': spec.header['file-write-guid'],
            'creator': spec.creator,
            'header-sequence': spec.header['sequence'],
        }
        expect_equal({k: data[k] for k in expected}, expected, 'values parsed from the file')
        expect_equal(spec.logical_sector_size, 512, 'LogicalSectorSize QEMU wrote')
        # QEMU writes its sector size, 512, as the physical sector size too
        # (vhdx_create_new_metadata in block/vhdx.c).
        expect_equal(spec.physical_sector_size, 512, 'PhysicalSectorSize QEMU wrote')
        # QEMU marks the blocks of a fixed image that were never written as
        # ZERO, so fixed and dynamic images alike store exactly the blocks
        # written.
        expect_equal(set(spec.stored_blocks()), img.written_blocks(), 'blocks stored')
        expect_equal(data['allocated-bytes'], img.allocated_bytes(), 'allocated-bytes')

    def test_info_json_dynamic(self):
        self.info_json('dynamic')

    def test_info_json_fixed(self):
        self.info_json('fixed')

    def test_info_json_odd_size(self):
        self.info_json('odd')

    def expect_qemu_replays(self, path, raw):
        """QEMU replays the dirty log of a copy of @path (`qemu-img check -r
        all` counts the replay as one corruption fixed) and reads it as @raw."""
        if QEMU_IMG is None:
            raise Skip('qemu-img not installed')
        copy = path + '.qemu-replayed'
        shutil.copyfile(path, copy)
        report = json.loads(check_ok(run([QEMU_IMG, 'check', '-r', 'all', '--output=json',
                                          '-f', 'vhdx', copy]), 'qemu-img check').stdout)
        expect_equal((report.get('check-errors'), report.get('corruptions-fixed')), (0, 1),
                     'qemu-img check -r all: (check errors, corruptions fixed)')
        out = copy + '.raw'
        check_ok(run([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', copy, out]),
                 'qemu-img convert')
        expect_equal(sha256_file(out), sha256_file(raw), 'qemu-img convert after the replay')
        os.unlink(copy)
        os.unlink(out)

    def test_info_json_generated(self):
        # Shapes QEMU does not write, described by the generator that made them.
        if not MKIMAGE:
            raise Skip('VHDX_MKIMAGE not set')
        shapes = {
            'gen-4k': ['--size', '48M', '--block-size', '1M', '--logical-sector-size', '4096',
                       '--physical-sector-size', '4096', '--pattern', '3M:2M:2', '--seed', '7'],
            'gen-512': ['--size', '70M', '--block-size', '32M', '--physical-sector-size',
                        '512', '--pattern', '0:4K:1', '--pattern', '65M:1M:2', '--shuffle'],
            'gen-identical': ['--type', 'fixed', '--size', '20M', '--block-size', '2M',
                              '--identical-headers', '--pattern', '1M:3M:6'],
            'gen-dirty': ['--size', '16M', '--block-size', '1M', '--pattern', '0:2M:1',
                          '--dirty'],
        }
        for name, options in shapes.items():
            path = self.path(name + '.vhdx')
            raw = self.path(name + '.raw')
            described = self.path(name + '.json')
            check_ok(run([MKIMAGE] + options + ['--describe', described, '--raw', raw, path]),
                     'vhdx-mkimage')
            with open(described, encoding='utf-8') as f:
                made = json.load(f)
            if made['dirty'] is not None:
                self.expect_qemu_replays(path, raw)
            info = json.loads(check_ok(vhdx('info', '--json', '--allocated', path), 'info').stdout)
            data = info['format-specific']['data']
            stored = made['stored-bytes'] + (made['dirty']['length'] if made['dirty'] else 0)
            expect_equal({
                'virtual-size': info['virtual-size'],
                'cluster-size': info['cluster-size'],
                'dirty-flag': info['dirty-flag'],
                'actual-size': info['actual-size'],
                'disk-type': data['disk-type'],
                'logical-sector-size': data['logical-sector-size'],
                'physical-sector-size': data['physical-sector-size'],
                'virtual-disk-id': data['virtual-disk-id'],
                'data-write-guid': data['data-write-guid'],
                'file-write-guid': data['file-write-guid'],
                'creator': data['creator'],
                'header-sequence': data['header-sequence'],
                'allocated-bytes': data['allocated-bytes'],
                'log-state': data['log-state'],
            }, {
                'virtual-size': made['virtual-size'],
                'cluster-size': made['block-size'],
                'dirty-flag': made['dirty'] is not None,
                'actual-size': os.stat(path).st_blocks * 512,
                'disk-type': made['disk-type'],
                'logical-sector-size': made['logical-sector-size'],
                'physical-sector-size': made['physical-sector-size'],
                'virtual-disk-id': made['virtual-disk-id'],
                'data-write-guid': made['data-write-guid'],
                'file-write-guid': made['file-write-guid'],
                'creator': made['creator'],
                'header-sequence': made['header-sequence'],
                'allocated-bytes': stored,
                'log-state': 'replayed-in-memory' if made['dirty'] else 'clean',
            }, '%s: vhdx info --json and the generator\'s description' % name)

    def test_info_text(self):
        img = self.image('dynamic')
        out = check_ok(vhdx('info', img.path), 'info').stdout.decode()
        out = out.replace('\u00a0', ' ')  # GLib separates numbers and units with NBSP
        expect('41943040' in out, 'virtual size in bytes missing from %r' % out)
        expect('40 MiB' in out or '40.0 MiB' in out, 'humanised virtual size missing')
        expect('dynamic' in out, 'disk type missing')

    # cat

    def cat_whole(self, name):
        img = self.image(name)
        found = sha256_of_output([TOOL, 'cat', img.path])
        expect_equal(found, hashlib.sha256(img.raw).hexdigest(), 'sha256 of cat')

    def test_cat_dynamic(self):
        self.cat_whole('dynamic')

    def test_cat_fixed(self):
        self.cat_whole('fixed')

    def test_cat_odd_size(self):
        self.cat_whole('odd')

    def test_cat_range(self):
        img = self.image('dynamic')
        out = check_ok(vhdx('cat', '--offset=3145000', '--length=1000000', img.path),
                       'cat').stdout
        expect(out == img.raw[3145000:3145000 + 1000000], 'cat slice differs from qemu')
        out = check_ok(vhdx('cat', '--offset=%d' % (img.size - 100), img.path), 'cat').stdout
        expect(out == img.raw[-100:], 'cat tail differs from qemu')

    def test_cat_out_of_range(self):
        img = self.image('dynamic')
        expect_one_error_line(vhdx('cat', '--offset=%d' % (img.size + 1), img.path), img.path)
        expect_one_error_line(vhdx('cat', '--offset=%d' % (img.size - 10), '--length=11',
                                   img.path), img.path)
        result = vhdx('cat', '--offset=12x', img.path)
        expect_equal(result.returncode, 1, 'exit status for a bad number')

    # convert

    def convert(self, name, sparse):
        img = self.image(name)
        out = self.path(name + '.converted.raw')
        check_ok(vhdx('convert', img.path, out), 'convert')
        with open(out, 'rb') as f:
            expect(f.read() == img.raw, 'converted bytes differ from qemu-img convert')
        st = os.stat(out)
        expect_equal(st.st_size, img.size, 'size of the raw file')
        if sparse:
            expect(st.st_blocks * 512 < img.size,
                   'raw file is not sparse: %d bytes allocated' % (st.st_blocks * 512))
            # The block of zeros written by qemu-io must be a hole as well.
            data_blocks = len(img.written_blocks()) * img.block_size
            expect(st.st_blocks * 512 < data_blocks,
                   'zero-filled data blocks were written: %d bytes allocated' %
                   (st.st_blocks * 512))
        leftovers = [n for n in os.listdir(self.workdir)
                     if n.startswith(os.path.basename(out) + '.')]
        expect(not leftovers, 'temporary files left: %r' % leftovers)

    def test_convert_dynamic(self):
        self.convert('dynamic', True)

    def test_convert_fixed(self):
        self.convert('fixed', False)

    def test_convert_odd_size(self):
        self.convert('odd', True)

    def test_convert_missing_directory(self):
        img = self.image('dynamic')
        missing = self.path('no-such-dir')
        out = os.path.join(missing, 'out.raw')
        expect_one_error_line(vhdx('convert', img.path, out), out)
        expect(not os.path.exists(missing), 'directory was created')

    def test_convert_not_vhdx(self):
        # A file that claims to be a VHDX but is damaged beyond the signature:
        # an error, and nothing left behind.
        src = self.random_file()
        with open(src, 'r+b') as f:
            f.write(b'vhdxfile')
        outdir = self.path('convert-not-vhdx')
        os.mkdir(outdir)
        out = os.path.join(outdir, 'out.raw')
        expect_one_error_line(vhdx('convert', src, out), src)
        expect_equal(os.listdir(outdir), [], 'files left in the destination directory')

    # map

    def map_json(self, name):
        img = self.image(name)
        extents = json.loads(check_ok(vhdx('map', '--json', img.path), 'map').stdout)
        # Where QEMU put each block it stored, from the BAT bytes.
        stored = vhdxspec.Vhdx(img.path).stored_blocks()
        position = 0
        data_blocks = {}
        for e in extents:
            expect_equal(e['start'], position, 'start of extent %r' % e)
            expect(e['length'] > 0, 'empty extent %r' % e)
            expect_equal(e['depth'], 0, 'depth')
            if e['data']:
                expect(e['present'] and not e['zero'], 'inconsistent data extent %r' % e)
                expect(e['start'] % img.block_size == 0, 'unaligned data extent %r' % e)
                for start in range(e['start'], e['start'] + e['length'], img.block_size):
                    data_blocks[start // img.block_size] = e['offset'] + start - e['start']
            else:
                expect(e['zero'] and 'offset' not in e, 'inconsistent zero extent %r' % e)
            position += e['length']
        expect_equal(position, img.size, 'end of the last extent')
        expect_equal(sorted(data_blocks), sorted(img.written_blocks()), 'data blocks')
        expect_equal(data_blocks, stored, 'file offsets of the data blocks (the BAT)')

    def test_map_json_dynamic(self):
        self.map_json('dynamic')

    def test_map_json_fixed(self):
        self.map_json('fixed')

    def test_map_json_odd_size(self):
        self.map_json('odd')

    def test_map_text(self):
        img = self.image('dynamic')
        out = check_ok(vhdx('map', img.path), 'map').stdout.decode()
        lines = out.splitlines()
        expect(lines[0].split()[:2] == ['Offset', 'Length'], 'header %r' % lines[0])
        expect(any(line.startswith('0x300000 ') for line in lines),
               'no extent at 0x300000 in %r' % out)

    # check

    def test_check_clean(self):
        img = self.image('dynamic')
        result = check_ok(vhdx('check', img.path), 'check')
        expect('No errors were found on the image.' in result.stdout.decode(),
               'summary missing from %r' % result.stdout)
        report = json.loads(check_ok(vhdx('check', '--json', img.path), 'check').stdout)
        expect_equal(report['check-errors'], 0, 'check-errors')
        expect_equal(report['problems'], [], 'problems')

    def damaged_bat_image(self):
        """The dynamic image with BAT entry 0 (block 0, unallocated) pointing
        32 GiB into the 10 MiB file.  Returns its path and the BAT's offset."""
        img = self.image('dynamic')
        bad = self.path('bad-bat.vhdx')
        shutil.copyfile(img.path, bad)
        with open(bad, 'r+b') as f:
            f.seek(REGION_TABLE_OFFSET)
            table = f.read(64 * KiB)
            expect(table[:4] == b'regi', 'no region table')
            (count,) = struct.unpack_from('<I', table, 8)
            bat_offset = None
            for i in range(count):
                entry = 16 + 32 * i
                if table[entry:entry + 16] == BAT_REGION_GUID:
                    (bat_offset,) = struct.unpack_from('<Q', table, entry + 16)
            expect(bat_offset is not None, 'no BAT region')
            f.seek(bat_offset)
            f.write(struct.pack('<Q', 0x7fff00000 | PAYLOAD_FULLY_PRESENT))
        return bad, bat_offset

    def test_check_damaged_bat(self):
        bad, bat_offset = self.damaged_bat_image()
        result = vhdx('check', bad)
        expect_equal(result.returncode, 2, 'exit status of check')
        result = vhdx('check', '--json', bad)
        expect_equal(result.returncode, 2, 'exit status of check --json')
        report = json.loads(result.stdout)
        expect_equal((report['check-errors'], report['warnings']), (1, 0),
                     'check: (errors, warnings)')
        problem = report['problems'][0]
        expect_equal((problem['severity'], problem['structure'], problem['offset']),
                     ('error', 'BAT entry 0', bat_offset), 'the finding')
        # QEMU refuses the image for the same entry and offset.
        if QEMU_IMG is not None:
            qemu = run([QEMU_IMG, 'info', '-f', 'vhdx', bad])
            expect(qemu.returncode != 0 and b'BAT entry 0 start offset 34358689792' in
                   qemu.stderr, 'qemu-img info of the damaged image: %r' % qemu.stderr)
        expect('34358689792' in problem['message'],
               'the message names the offset the entry points at: %r' % problem['message'])

    def test_cat_damaged_bat(self):
        bad, _ = self.damaged_bat_image()
        expect_one_error_line(vhdx('cat', bad), bad)

    def test_check_damaged_header1(self):
        img = self.image('dynamic')
        bad = self.path('bad-header1.vhdx')
        shutil.copyfile(img.path, bad)
        with open(bad, 'r+b') as f:
            f.seek(HEADER1_OFFSET + 1000)  # reserved bytes covered by the checksum
            f.write(b'\xff')
        result = vhdx('check', bad)
        expect_equal(result.returncode, 0, 'exit status of check')
        report = json.loads(check_ok(vhdx('check', '--json', bad), 'check').stdout)
        expect_equal((report['check-errors'], report['warnings']), (0, 1),
                     'check: (errors, warnings)')
        problem = report['problems'][0]
        expect_equal((problem['severity'], problem['structure'], problem['offset']),
                     ('warning', 'header 1', HEADER1_OFFSET), 'the finding')
        out = check_ok(vhdx('cat', bad), 'cat').stdout
        expect(out == img.raw, 'data read through header 2 differs')

    # errors

    def random_file(self):
        path = self.path('random.bin')
        if not os.path.exists(path):
            with open(path, 'wb') as f:
                f.write(os.urandom(2 * MiB))
        return path

    def test_missing_file(self):
        path = self.path('does-not-exist.vhdx')
        for command in ('info', 'check', 'map', 'cat'):
            expect_one_error_line(vhdx(command, path), path)

    def test_not_vhdx(self):
        path = self.random_file()
        for command in ('info', 'map', 'cat'):
            expect_one_error_line(vhdx(command, path), path)

    def test_usage(self):
        result = vhdx('frobnicate')
        expect_equal(result.returncode, 1, 'exit status for an unknown command')
        expect(result.stderr.startswith(b'vhdx: '), 'usage error %r' % result.stderr)
        result = vhdx('info')
        expect_equal(result.returncode, 1, 'exit status for a missing argument')
        result = check_ok(vhdx('--help'), '--help')
        for command in ('info', 'check', 'map', 'cat', 'convert'):
            expect(command in result.stdout.decode(), '%s missing from --help' % command)
        help_text = check_ok(vhdx('help'), 'help').stdout
        expect_equal(check_ok(vhdx('help', '--help'), 'help --help').stdout, help_text,
                     'help --help')
        check_ok(vhdx('check', '--help'), 'check --help')
        expect_equal(check_ok(vhdx('help', 'check'), 'help check').stdout,
                     vhdx('check', '--help').stdout, 'help check')
        result = check_ok(vhdx('--version'), '--version')
        version = os.environ.get('VHDX_VERSION')
        if not version:
            raise Skip('VHDX_VERSION (the project version) not set: --version not checked')
        expect(version.encode() in result.stdout.split(),
               '%r does not print version %s' % (result.stdout, version))

    # real-world samples

    def test_samples(self):
        shared = os.environ.get('VHDX_SHARED_DIR')
        samples = os.path.join(shared, 'samples') if shared else None
        if not samples or not os.path.isdir(samples):
            raise Skip('no samples directory')
        # The README's table: file, made by, virtual size, block size and the
        # sha256 of the disk, figures from Hyper-V, QEMU and libvhdi.
        expected = {}
        units = {'KiB': KiB, 'MiB': MiB}
        with open(os.path.join(samples, 'README.md'), encoding='utf-8') as f:
            for line in f:
                cells = [c.strip() for c in line.strip().strip('|').split('|')]
                if len(cells) == 5 and re.fullmatch(r'[0-9a-f]{64}', cells[4]):
                    number, unit = cells[3].split()
                    expected[cells[0]] = (int(cells[2]), int(number) * units[unit], cells[4])
        names = sorted(n for n in os.listdir(samples) if n.endswith('.vhdx.bz2'))
        if not names:
            raise Skip('no samples')
        if QEMU_IMG is None:
            raise Skip('qemu-img not installed')
        for name in names:
            expect(name in expected, '%s has no row in README.md' % name)
            size, block_size, digest = expected[name]
            path = self.path(name[:-len('.bz2')])
            with bz2.open(os.path.join(samples, name), 'rb') as src, open(path, 'wb') as dst:
                shutil.copyfileobj(src, dst, MiB)
            before = sha256_file(path)
            expect_equal(sha256_of_output([TOOL, 'cat', path]), digest, 'sha256 of %s' % name)
            info = json.loads(check_ok(vhdx('info', '--json', path), 'info of %s' % name).stdout)
            expect_equal((info['virtual-size'], info['cluster-size']), (size, block_size),
                         '%s: (virtual size, block size)' % name)
            # Every data extent is the file's bytes at its file offset, as
            # QEMU reads the disk there; every other extent reads as zeros.
            raw = path + '.qemu.raw'
            check_ok(run([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', path, raw]),
                     'qemu-img convert of %s' % name)
            expect_equal(sha256_file(raw), digest, 'sha256 of qemu-img convert of %s' % name)
            extents = json.loads(check_ok(vhdx('map', '--json', path),
                                          'map of %s' % name).stdout)
            position = 0
            n_data = 0
            with open(path, 'rb') as image, open(raw, 'rb') as disk:
                for e in extents:
                    expect_equal(e['start'], position, '%s: start of %r' % (name, e))
                    position += e['length']
                    disk.seek(e['start'])
                    want = disk.read(e['length'])
                    if e['data']:
                        n_data += 1
                        image.seek(e['offset'])
                        expect(image.read(e['length']) == want,
                               '%s: file bytes at %d differ from the disk at %d' % (
                                   name, e['offset'], e['start']))
                    else:
                        expect(want == bytes(e['length']),
                               '%s: zero extent at %d holds data' % (name, e['start']))
            expect_equal(position, size, '%s: end of the last extent' % name)
            expect(n_data > 0, '%s: no data extents' % name)
            expect_equal(sha256_file(path), before, '%s modified' % name)
            os.unlink(raw)
            os.unlink(path)

    # must run last: every command above has read the images

    def test_images_unchanged(self):
        for img in self.images().values():
            vhdx('check', img.path)
            expect_equal(sha256_file(img.path), img.sha256, '%s modified' % img.path)

    # info reads no BAT unless asked to count (--allocated)

    def test_info_reads_no_bat(self):
        img = self.image('dynamic')
        path = self.path('bat-damaged.vhdx')
        shutil.copyfile(img.path, path)
        spec = vhdxspec.Vhdx(path)
        with open(path, 'r+b') as f:
            # State 5 is no BAT entry state of MS-VHDX: only a scan finds it.
            f.seek(spec.bat_offset)
            f.write(struct.pack('<Q', 5))
        info = json.loads(check_ok(vhdx('info', '--json', path), 'info').stdout)
        expect('allocated-bytes' not in info['format-specific']['data'],
               'allocated-bytes without --allocated')
        out = check_ok(vhdx('info', path), 'info').stdout.decode()
        expect('Allocated' not in out, 'an Allocated line without --allocated: %r' % out)
        for args in (['info', '--allocated', path], ['info', '--allocated', '--json', path]):
            result = vhdx(*args)
            expect_equal(result.returncode, 1, '%s of a damaged BAT' % ' '.join(args[:-1]))
        os.unlink(path)

    def test_info_allocated(self):
        img = self.image('dynamic')
        out = check_ok(vhdx('info', '--allocated', img.path), 'info').stdout.decode()
        expect(re.search(r'^Allocated: +.*\(%d bytes\)$' % img.allocated_bytes(), out, re.M),
               'Allocated line of --allocated: %r' % out)

    # convert to raw: the kernel's copy, the buffer's, and --no-sync

    def expect_raw_copy(self, source, out, want, what, *options):
        check_ok(vhdx('convert', '-O', 'raw', *options, source, out), 'convert ' + what)
        expect_equal(sha256_file(out), sha256_file(want), what)
        expect_equal(os.path.getsize(out), os.path.getsize(want), what + ': size')
        leftovers = [n for n in os.listdir(os.path.dirname(out))
                     if n.startswith(os.path.basename(out) + '.')]
        expect(not leftovers, what + ': temporary files left: %r' % leftovers)
        os.unlink(out)

    def test_convert_raw_paths(self):
        img = self.image('dynamic')
        raw = self.path('dynamic.expected.raw')
        with open(raw, 'wb') as f:
            f.write(img.raw)
        self.expect_raw_copy(img.path, self.path('c1.raw'), raw, 'one file system')
        self.expect_raw_copy(img.path, self.path('c2.raw'), raw, '--no-sync', '--no-sync')
        # A raw source, copied the same way.
        self.expect_raw_copy(raw, self.path('c3.raw'), raw, 'raw source')
        # Another file system: copy_file_range() cannot copy there (EXDEV), the buffer does.
        shm = '/dev/shm'
        if os.path.isdir(shm) and os.stat(shm).st_dev != os.stat(self.workdir).st_dev:
            out = os.path.join(shm, 'vhdx-test-cli-%d.raw' % os.getpid())
            try:
                self.expect_raw_copy(img.path, out, raw, 'to another file system')
            finally:
                if os.path.exists(out):
                    os.unlink(out)
        os.unlink(raw)

    # A write that fails halfway through a conversion (several chunks in
    # flight on threads): one error naming DESTINATION, nothing left behind.

    def expect_failed_convert(self, out, what, *args, preexec_fn=None):
        source = self.path('random-24m.raw')
        if not os.path.exists(source):
            with open(source, 'wb') as f:
                f.write(os.urandom(24 * MiB))
        result = subprocess.run([TOOL, 'convert'] + list(args) + [source, out],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=TOOL_ENV,
                                timeout=120, preexec_fn=preexec_fn)
        expect_one_error_line(result, out)
        message = result.stderr.decode(errors='replace').strip()
        print('# %s: %s' % (what, message))
        return message

    def test_convert_fails_midway(self):
        def limit_file_size():
            # Writes past 8 MiB fail with EFBIG instead of raising SIGXFSZ.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (8 * MiB, 8 * MiB))

        outdir = self.path('convert-midway')
        os.mkdir(outdir)
        out = os.path.join(outdir, 'out.vhdx')
        message = self.expect_failed_convert(out, 'VHDX output past a file size limit',
                                             '-O', 'vhdx', '--block-size=1M',
                                             preexec_fn=limit_file_size)
        expect(os.strerror(27) in message, 'not the error of the limit: %r' % message)
        expect_equal(os.listdir(outdir), [], 'files left by VHDX output')
        # Raw output onto a full file system: a tmpfs of 12 MiB (root only).
        if os.geteuid() != 0 or shutil.which('mount') is None:
            raise Skip('mounting a small tmpfs needs root')
        if run(['mount', '-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', outdir]).returncode != 0:
            raise Skip('cannot mount a tmpfs here')
        try:
            out = os.path.join(outdir, 'out.raw')
            for args in ([], ['--no-sync']):
                message = self.expect_failed_convert(out, 'raw output onto a full file system',
                                                     '-O', 'raw', *args)
                expect(os.strerror(28) in message, 'not ENOSPC: %r' % message)
                expect_equal(os.listdir(outdir), [], 'files left by raw output')
        finally:
            run(['umount', outdir])

    def test_convert_raw_dirty_log(self):
        # The file is not what the disk reads until the log is replayed: the
        # data must come through the engine, not straight from the file.
        if not MKIMAGE:
            raise Skip('VHDX_MKIMAGE not set')
        path = self.path('conv-dirty.vhdx')
        raw = self.path('conv-dirty.raw')
        described = self.path('conv-dirty.json')
        check_ok(run([MKIMAGE, '--size', '16M', '--block-size', '1M', '--pattern', '0:6M:1',
                      '--dirty', '--describe', described, '--raw', raw, path]), 'vhdx-mkimage')
        with open(described, encoding='utf-8') as f:
            dirty = json.load(f)['dirty']
        expect(dirty is not None, 'the image has a log to replay')
        # A second data descriptor in the log entry rewrites one sector of
        # block 0, whose payload the file holds: the file's bytes there are
        # then not the disk's until the log is replayed.
        sector = 3 * 4096
        payload = vhdxspec.Vhdx(path).stored_blocks()[0]
        new_sector = bytes((i * 7 + 1) % 251 for i in range(4096))
        with open(path, 'r+b') as f:
            f.seek(dirty['log-entry-offset'])
            entry = bytearray(f.read(dirty['log-entry-length']))
            (count,) = struct.unpack_from('<I', entry, 24)
            (sequence,) = struct.unpack_from('<Q', entry, 16)
            expect(64 + 32 * (count + 1) <= 4096, 'room for one more descriptor')
            struct.pack_into('<4s4s8sQQ', entry, 64 + 32 * count, b'desc', new_sector[-4:],
                             new_sector[:8], payload + sector, sequence)
            entry += struct.pack('<4sI', b'data', sequence >> 32) + new_sector[8:-4] + \
                struct.pack('<I', sequence & 0xFFFFFFFF)
            struct.pack_into('<II', entry, 4, 0, len(entry))
            struct.pack_into('<I', entry, 24, count + 1)
            struct.pack_into('<I', entry, 4, vhdxspec.crc32c(bytes(entry)))
            f.seek(dirty['log-entry-offset'])
            f.write(entry)
        with open(raw, 'r+b') as f:
            f.seek(sector)
            f.write(new_sector)
        expect_equal(sha256_of_output([TOOL, 'cat', path]), sha256_file(raw),
                     'vhdx cat of the image with the longer log entry')
        before = sha256_file(path)
        self.expect_raw_copy(path, self.path('conv-dirty.out.raw'), raw, 'dirty image')
        self.expect_raw_copy(path, self.path('conv-dirty.out.raw'), raw, 'dirty, --no-sync',
                             '--no-sync')
        expect_equal(sha256_file(path), before, 'the dirty image modified')

    # locking: an image QEMU has open

    def test_locking(self):
        if QEMU_NBD is None:
            raise Skip('qemu-nbd not installed: QEMU holds the other side of the lock')
        img = self.image('dynamic')
        path = self.path('locked.vhdx')
        shutil.copyfile(img.path, path)
        want = hashlib.sha256(img.raw).hexdigest()
        with QemuNbd(run, self.path('qemu-nbd.sock'), path) as guest:
            check_ok(guest.result, 'qemu-nbd')
            for args in (['info'], ['map'], ['check'], ['cat'], ['convert', '-O', 'raw']):
                result = vhdx(*(args + [path] + ([self.path('no.raw')] if 'convert' in args
                                                   else [])))
                expect_equal(result.returncode, 1, '%s of an image QEMU writes' % args[0])
                expect(b'Another process is writing the image' in result.stderr,
                       '%s: no lock error: %r' % (args[0], result.stderr))
            result = check_ok(vhdx('info', '--json', '--force-share', path), 'info -U')
            expect(b'warning: another process is writing' in result.stderr,
                   'info -U: no warning: %r' % result.stderr)
            info = json.loads(result.stdout)
            expect_equal(info['format-specific']['data']['in-use-by-writer'], True,
                         'in-use-by-writer while qemu-nbd writes')
            out = check_ok(vhdx('info', '-U', path), 'info -U').stdout.decode()
            expect(re.search(r'^In use: +by a writer$', out, re.M), 'no In use line: %r' % out)
            # What QEMU itself reads shared (qemu-img -U) is what we read shared.
            qemu_raw = self.path('locked.qemu.raw')
            check_ok(run([QEMU_IMG, 'convert', '-U', '-f', 'vhdx', '-O', 'raw', path, qemu_raw]),
                     'qemu-img convert -U')
            expect_equal(sha256_file(qemu_raw), want, 'qemu-img convert -U')
            expect_equal(sha256_of_output([TOOL, 'cat', '-U', path]), want, 'cat -U')
            check_ok(vhdx('convert', '-U', '-O', 'raw', path, self.path('locked.raw')),
                     'convert -U')
            expect_equal(sha256_file(self.path('locked.raw')), want, 'convert -U')
            check_ok(vhdx('map', '-U', path), 'map -U')
            check_ok(vhdx('check', '-U', path), 'check -U')
            result = vhdx('check', '--repair', '-U', path)
            expect_equal(result.returncode, 1, 'check --repair -U')
            expect(b'--force-share' in result.stderr, 'check --repair -U: %r' % result.stderr)
        with QemuNbd(run, self.path('qemu-nbd.sock'), path, writable=False) as guest:
            check_ok(guest.result, 'qemu-nbd -r')
            info = json.loads(check_ok(vhdx('info', '--json', path), 'info').stdout)
            expect_equal(info['format-specific']['data']['in-use-by-writer'], False,
                         'in-use-by-writer while qemu-nbd reads')
            result = vhdx('check', '--repair', path)
            expect_equal(result.returncode, 1, 'check --repair of an image QEMU reads')
            expect(b'Another process has the image open' in result.stderr,
                   'check --repair: no lock error: %r' % result.stderr)
        # The locks went with qemu-nbd.
        check_ok(vhdx('check', '--repair', path), 'check --repair after qemu-nbd stopped')
        expect_equal(sha256_of_output([TOOL, 'cat', path]), want, 'cat after qemu-nbd')



def main():
    if not TOOL:
        print('Bail out! VHDX_TOOL is not set')
        return 1

    names = [n for n in Tests.__dict__ if n.startswith('test_')]
    last = 'test_images_unchanged'
    names.remove(last)
    names.append(last)

    print('1..%d' % len(names))
    sys.stdout.flush()
    failed = 0
    with tempfile.TemporaryDirectory(prefix='vhdx-test-cli-') as workdir:
        tests = Tests(workdir)
        for number, name in enumerate(names, 1):
            title = name[len('test_'):].replace('_', ' ')
            try:
                getattr(tests, name)()
            except Skip as e:
                print('ok %d - %s # SKIP %s' % (number, title, e))
            except Exception:
                failed += 1
                print('not ok %d - %s' % (number, title))
                for line in traceback.format_exc().splitlines():
                    print('# ' + line)
            else:
                print('ok %d - %s' % (number, title))
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
