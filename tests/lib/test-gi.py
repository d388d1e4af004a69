#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# libvhdx-1.0 through GObject introspection, as a Python program uses it,
# printed as TAP.
#
# The oracle is QEMU: qemu-img creates the images, qemu-io writes known
# patterns into them, `qemu-img info` describes them and
# `qemu-img convert -O raw` gives the expected bytes.  The images written
# through the library are checked by `qemu-img check` and by
# `qemu-img compare` against the bytes the test expects.  What QEMU does not
# report (GUIDs, sector sizes, the creator, header sequence numbers, a
# child's parent locator) is read from the bytes of the files with
# tests/common/vhdxspec.py, written from the specification.  Without
# qemu-img the tests that need it are skipped.
#
# Environment: GI_TYPELIB_PATH and LD_LIBRARY_PATH (the built library),
# VHDX_TOOL (the vhdx tool), VHDX_CAT_EXAMPLE and VHDX_CAT_PY_EXAMPLE (the
# examples), GLIB_COMPILE_RESOURCES (optional, for resource:// files).

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback

import gi
gi.require_version('Vhdx', '1.0')
from gi.repository import GLib, Gio, Vhdx  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'common'))
import vhdxspec  # noqa: E402

GiB = 1024 * 1024 * 1024
MiB = 1024 * 1024
KiB = 1024

QEMU_IMG = shutil.which('qemu-img')
QEMU_IO = shutil.which('qemu-io')
TOOL = os.environ.get('VHDX_TOOL')
# The environment of the programs run: without the sanitizer runtime that an
# instrumented library needs preloaded into Python, which qemu does not bear.
ENV = {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD'}
ENV['LC_ALL'] = 'C.UTF-8'
# The Python example loads the library as this test does.
PYTHON_ENV = dict(os.environ, LC_ALL='C.UTF-8')


class Skip(Exception):
    pass


def run(args, env=ENV):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=300)


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


def expect_error(function, domain, code, what):
    """Call function; it must raise GLib.Error with domain (a quark string) and code."""
    try:
        function()
    except GLib.Error as error:
        expect_equal((error.domain, error.code), (domain, int(code)),
                     '%s: error %r' % (what, error.message))
        return error
    raise AssertionError('%s: no error raised' % what)


def run_loop(start):
    """Run a main loop; start(done) begins an asynchronous call and done(value) ends it."""
    loop = GLib.MainLoop()
    outcome = {}
    timed_out = []

    def done(value=None, error=None):
        if not outcome:
            outcome.update(value=value, error=error)
        loop.quit()

    def on_timeout():
        timed_out.append(True)
        done(error=AssertionError('timed out'))
        return GLib.SOURCE_REMOVE

    start(done)
    source = GLib.timeout_add_seconds(120, on_timeout)
    loop.run()
    if not timed_out:
        GLib.source_remove(source)
    if outcome['error'] is not None:
        raise outcome['error']
    return outcome['value']


def finisher(finish, done):
    """An async callback that calls finish(result) and passes its value or error to done."""
    def callback(source, result, *user_data):
        try:
            value = finish(source, result)
        except GLib.Error as error:
            done(error=error)
        else:
            done(value)
    return callback


def open_async(gfile, flags=Vhdx.OpenFlags.NONE, cancellable=None):
    return run_loop(lambda done: Vhdx.Image.new_async(
        gfile, flags, GLib.PRIORITY_DEFAULT, cancellable,
        finisher(lambda source, result: Vhdx.Image.new_finish(result), done)))


def read_all_async(image, chunk=8 * MiB):
    """The whole virtual disk, read with read_bytes_async in chunks, in a main loop."""
    loop = GLib.MainLoop()
    state = {'offset': 0, 'parts': [], 'error': None}

    def next_chunk():
        image.read_bytes_async(state['offset'], chunk, GLib.PRIORITY_DEFAULT, None, got)

    def got(source, result):
        try:
            data = source.read_bytes_finish(result).get_data()
        except GLib.Error as error:
            state['error'] = error
            loop.quit()
            return
        if not data:
            loop.quit()
            return
        state['parts'].append(data)
        state['offset'] += len(data)
        next_chunk()

    next_chunk()
    loop.run()
    if state['error'] is not None:
        raise state['error']
    return b''.join(state['parts'])


class Image:
    """A qemu-made VHDX image and the facts we know about it from making it."""

    def __init__(self, workdir, name, subformat, size, block_size, writes):
        self.path = os.path.join(workdir, name + '.vhdx')
        raw_path = os.path.join(workdir, name + '.raw')
        self.subformat = subformat
        self.size = size
        self.writes = writes
        options = 'subformat=%s' % subformat
        if block_size is not None:
            options += ',block_size=%d' % block_size
        check_ok(run([QEMU_IMG, 'create', '-q', '-f', 'vhdx', '-o', options, self.path,
                      str(size)]), 'qemu-img create')
        if writes:
            commands = []
            for pattern, offset, length in writes:
                commands += ['-c', 'write -P 0x%02x %d %d' % (pattern, offset, length)]
            check_ok(run([QEMU_IO, '-f', 'vhdx'] + commands + [self.path]), 'qemu-io')
        check_ok(run([QEMU_IMG, 'convert', '-f', 'vhdx', '-O', 'raw', self.path, raw_path]),
                 'qemu-img convert')
        with open(raw_path, 'rb') as f:
            self.raw = f.read()
        os.unlink(raw_path)
        self.qemu_info = json.loads(check_ok(
            run([QEMU_IMG, 'info', '--output=json', '-f', 'vhdx', self.path]),
            'qemu-img info').stdout)
        self.block_size = block_size or self.qemu_info['cluster-size']
        out = check_ok(run([QEMU_IMG, '--version']), 'qemu-img --version').stdout.decode()
        match = re.match(r'qemu-img version (\S+)', out)
        expect(match, 'no version in %r' % out)
        # QEMU writes 'QEMU v' and its version as the creator.
        self.creator = 'QEMU v' + match.group(1)
        self.spec = vhdxspec.Vhdx(self.path)

    def gfile(self):
        return Gio.File.new_for_path(self.path)

    def open(self):
        return Vhdx.Image.new(self.gfile(), Vhdx.OpenFlags.NONE, None)

    def allocated_bytes(self):
        blocks = set()
        for _, offset, length in self.writes:
            blocks.update(range(offset // self.block_size,
                                (offset + length - 1) // self.block_size + 1))
        return sum(min(self.block_size, self.size - b * self.block_size) for b in blocks)


class Tests:
    def __init__(self, workdir):
        self.workdir = workdir
        self._images = None

    def images(self):
        if QEMU_IMG is None or QEMU_IO is None:
            raise Skip('qemu-img or qemu-io not installed')
        if self._images is None:
            self._images = {
                'dynamic': Image(self.workdir, 'dynamic', 'dynamic', 40 * MiB, MiB, [
                    (0xa5, 3 * MiB, 1500 * KiB),
                    (0x3c, 20 * MiB, 4 * KiB),
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

    # opening and properties

    def check_properties(self, img, image):
        props = image.props
        expect_equal(props.virtual_size, img.qemu_info['virtual-size'], 'virtual-size')
        expect_equal(props.block_size, img.qemu_info['cluster-size'], 'block-size')
        expect_equal(props.disk_type.value_nick, img.subformat, 'disk-type')
        expect_equal(props.log_state, Vhdx.LogState.CLEAN, 'log-state')
        # The values in the bytes QEMU wrote.
        spec = img.spec
        expect_equal(spec.logical_sector_size, 512, 'LogicalSectorSize QEMU wrote')
        # QEMU writes its sector size, 512, as the physical sector size too
        # (vhdx_create_new_metadata in block/vhdx.c).
        expect_equal(spec.physical_sector_size, 512, 'PhysicalSectorSize QEMU wrote')
        expect_equal(spec.creator, img.creator, 'creator QEMU wrote')
        expect_equal({
            'logical-sector-size': props.logical_sector_size,
            'physical-sector-size': props.physical_sector_size,
            'virtual-disk-id': props.virtual_disk_id,
            'data-write-guid': props.data_write_guid,
            'file-write-guid': props.file_write_guid,
            'creator': props.creator,
        }, {
            'logical-sector-size': spec.logical_sector_size,
            'physical-sector-size': spec.physical_sector_size,
            'virtual-disk-id': spec.virtual_disk_id,
            'data-write-guid': spec.header['data-write-guid'],
            'file-write-guid': spec.header['file-write-guid'],
            'creator': img.creator,
        }, 'properties read from the file')
        expect_equal(props.file_size, os.stat(img.path).st_size, 'file-size')
        expect_equal(props.allocated_size, img.allocated_bytes(), 'allocated-size')
        expect_equal(props.has_parent, False, 'has-parent')
        expect_equal(props.parent, None, 'parent')
        expect_equal(props.parent_locator, None, 'parent-locator')
        expect_equal(props.chain_depth, 0, 'chain-depth')
        expect_equal(props.file.get_path(), img.path, 'file')
        expect_equal(props.flags, Vhdx.OpenFlags.NONE, 'flags')
        expect_equal(props.parent_file, None, 'parent-file')
        expect_equal(image.get_virtual_size(), props.virtual_size, 'get_virtual_size()')
        expect_equal(image.dup_parent(), None, 'dup_parent()')

    def test_open_sync(self):
        for img in self.images().values():
            self.check_properties(img, img.open())

    def test_open_async(self):
        for img in self.images().values():
            self.check_properties(img, open_async(img.gfile()))

    def test_open_async_initable(self):
        img = self.image('fixed')
        image = Vhdx.Image(file=img.gfile())
        run_loop(lambda done: image.init_async(
            GLib.PRIORITY_DEFAULT, None,
            finisher(lambda source, result: source.init_finish(result), done)))
        self.check_properties(img, image)

    def test_open_read_write(self):
        img = self.image('dynamic')
        copy = os.path.join(self.workdir, 'writable.vhdx')
        shutil.copyfile(img.path, copy)
        image = Vhdx.Image.new(Gio.File.new_for_path(copy), Vhdx.OpenFlags.READ_WRITE, None)
        expect_equal(image.props.flags, Vhdx.OpenFlags.READ_WRITE, 'flags')
        expect_equal(image.read_bytes(0, img.size, None).get_data(), img.raw, 'data')

    # errors

    def test_errors(self):
        missing = Gio.File.new_for_path(os.path.join(self.workdir, 'missing.vhdx'))
        expect_error(lambda: Vhdx.Image.new(missing, Vhdx.OpenFlags.NONE, None),
                     'g-io-error-quark', Gio.IOErrorEnum.NOT_FOUND, 'missing file')

        junk = os.path.join(self.workdir, 'junk.vhdx')
        with open(junk, 'wb') as f:
            f.write(os.urandom(2 * MiB))
        error = expect_error(
            lambda: Vhdx.Image.new(Gio.File.new_for_path(junk), Vhdx.OpenFlags.NONE, None),
            'vhdx-error-quark', Vhdx.Error.INVALID, 'random bytes')
        expect(error.matches(Vhdx.Error.quark(), Vhdx.Error.INVALID), 'matches()')
        expect(error.matches(Vhdx.error_quark(), Vhdx.Error.INVALID), 'error_quark()')
        expect('file identifier' in error.message, 'message %r' % error.message)

        # The same error through the asynchronous path.
        expect_error(lambda: open_async(Gio.File.new_for_path(junk)),
                     'vhdx-error-quark', Vhdx.Error.INVALID, 'random bytes, async')

        empty = os.path.join(self.workdir, 'empty.vhdx')
        open(empty, 'wb').close()
        expect_error(
            lambda: Vhdx.Image.new(Gio.File.new_for_path(empty), Vhdx.OpenFlags.NONE, None),
            'vhdx-error-quark', Vhdx.Error.TRUNCATED, 'empty file')

        image = self.image('dynamic').open()
        expect_error(lambda: image.get_extents(39 * MiB, 2 * MiB, None),
                     'vhdx-error-quark', Vhdx.Error.OUT_OF_RANGE, 'extents past the end')

    # reading

    def test_read_bytes_async(self):
        for img in self.images().values():
            image = img.open()
            data = read_all_async(image)
            expect(data == img.raw, '%s: the disk read differs from qemu-img convert' % img.path)
            # One read of the whole disk.
            whole = run_loop(lambda done: image.read_bytes_async(
                0, img.size, GLib.PRIORITY_DEFAULT, None,
                finisher(lambda source, result: source.read_bytes_finish(result), done)))
            expect(whole.get_data() == img.raw, '%s: one whole read differs' % img.path)

    def test_read_bytes_ranges(self):
        img = self.image('dynamic')
        image = img.open()
        for offset, count in ((3 * MiB - 5, 10), (39 * MiB + 511, 3 * KiB), (0, 1),
                              (20 * MiB, 4 * KiB)):
            found = image.read_bytes(offset, count, None).get_data()
            expect_equal(found, img.raw[offset:offset + count], 'read at %d' % offset)
        # Short at the end, empty at and past it.
        expect_equal(image.read_bytes(img.size - 100, 4096, None).get_data(), img.raw[-100:],
                     'read across the end')
        expect_equal(image.read_bytes(img.size, 4096, None).get_size(), 0, 'read at the end')
        expect_equal(image.read_bytes(img.size + MiB, 1, None).get_size(), 0, 'read past it')

    def test_cancellation(self):
        img = self.image('dynamic')
        image = img.open()
        cancellable = Gio.Cancellable()
        cancellable.cancel()
        cancelled = ('g-io-error-quark', Gio.IOErrorEnum.CANCELLED)
        expect_error(lambda: run_loop(lambda done: image.read_bytes_async(
            0, img.size, GLib.PRIORITY_DEFAULT, cancellable,
            finisher(lambda source, result: source.read_bytes_finish(result), done))),
            *cancelled, 'read_bytes_async')
        expect_error(lambda: image.read_bytes(0, img.size, cancellable), *cancelled,
                     'read_bytes')
        expect_error(lambda: open_async(img.gfile(), cancellable=cancellable), *cancelled,
                     'new_async')
        expect_error(lambda: run_loop(lambda done: image.get_extents_async(
            0, img.size, GLib.PRIORITY_DEFAULT, cancellable,
            finisher(lambda source, result: source.get_extents_finish(result), done))),
            *cancelled, 'get_extents_async')
        expect_error(lambda: run_loop(lambda done: image.check_async(
            GLib.PRIORITY_DEFAULT, cancellable,
            finisher(lambda source, result: source.check_finish(result), done))),
            *cancelled, 'check_async')
        error = expect_error(lambda: image.check(cancellable), *cancelled, 'check')
        expect(error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED), 'matches()')

    def test_stream(self):
        img = self.image('odd')
        stream = img.open().open_stream()
        expect(isinstance(stream, Gio.InputStream), 'not an input stream')
        expect(stream.can_seek() and not stream.can_truncate(), 'seek/truncate')
        stream.seek(64 * MiB, GLib.SeekType.SET, None)
        expect_equal(stream.read_bytes(8 * KiB, None).get_data(),
                     img.raw[64 * MiB:64 * MiB + 8 * KiB], 'read after seek')
        expect_equal(stream.tell(), 64 * MiB + 8 * KiB, 'tell')
        stream.seek(-10, GLib.SeekType.END, None)
        expect_equal(stream.read_bytes(100, None).get_data(), img.raw[-10:], 'read at the end')
        expect_equal(stream.read_bytes(100, None).get_size(), 0, 'read past the end')
        stream.seek(0, GLib.SeekType.SET, None)
        found = run_loop(lambda done: stream.read_bytes_async(
            MiB, GLib.PRIORITY_DEFAULT, None,
            finisher(lambda source, result: source.read_bytes_finish(result), done)))
        expect_equal(found.get_data(), img.raw[:MiB], 'read_bytes_async')
        expect_error(lambda: stream.truncate(0, None), 'g-io-error-quark',
                     Gio.IOErrorEnum.NOT_SUPPORTED, 'truncate')
        stream.close(None)

    # extents

    def test_extents(self):
        # qemu-img map reports every range of a VHDX image as data, without
        # file offsets, so the oracle is what was written: the data extents
        # are the blocks written to, and the file holds their bytes at the
        # file offsets given.
        for img in self.images().values():
            image = img.open()
            extents = image.get_extents(0, img.size, None)
            written = set()
            for _, offset, length in img.writes:
                written.update(range(offset // img.block_size,
                                     (offset + length - 1) // img.block_size + 1))
            position = 0
            data_blocks = set()
            with open(img.path, 'rb') as f:
                for e in extents:
                    start, length = e.get_offset(), e.get_length()
                    expect_equal(start, position, 'extents leave no gap')
                    expect_equal(e.get_depth(), 0, 'depth')
                    position = start + length
                    if e.get_kind() != Vhdx.ExtentKind.DATA:
                        expect_equal(e.get_file_offset(), 0, 'file offset of zeros')
                        expect(img.raw[start:start + length] == bytes(length),
                               'zero extent at %d holds data' % start)
                        continue
                    expect(e.is_present(), 'data extent not present')
                    data_blocks.update(range(start // img.block_size,
                                             (position - 1) // img.block_size + 1))
                    f.seek(e.get_file_offset())
                    expect(f.read(length) == img.raw[start:start + length],
                           'file bytes at %d differ from the disk at %d' % (
                               e.get_file_offset(), start))
            expect_equal(position, img.size, 'extents cover the disk')
            expect_equal(data_blocks, written, '%s: blocks holding data' % img.path)
            asynchronous = run_loop(lambda done: image.get_extents_async(
                0, img.size, GLib.PRIORITY_DEFAULT, None,
                finisher(lambda source, result: source.get_extents_finish(result), done)))
            expect_equal([(e.get_offset(), e.get_length()) for e in asynchronous],
                         [(e.get_offset(), e.get_length()) for e in extents], 'async extents')

    def test_check(self):
        image = self.image('dynamic').open()
        expect_equal(list(image.check(None)), [], 'problems of a clean image')
        problems = run_loop(lambda done: image.check_async(
            GLib.PRIORITY_DEFAULT, None,
            finisher(lambda source, result: source.check_finish(result), done)))
        expect_equal(list(problems), [], 'problems found asynchronously')

    # other GFiles

    def test_resource_file(self):
        compiler = os.environ.get('GLIB_COMPILE_RESOURCES')
        if not compiler:
            raise Skip('glib-compile-resources not found')
        img = self.image('dynamic')
        xml = os.path.join(self.workdir, 'images.gresource.xml')
        bundle = os.path.join(self.workdir, 'images.gresource')
        with open(xml, 'w') as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?>\n<gresources>\n'
                    '  <gresource prefix="/org/libvhdx/test">\n'
                    '    <file>dynamic.vhdx</file>\n'
                    '  </gresource>\n</gresources>\n')
        check_ok(run([compiler, '--sourcedir', self.workdir, '--target', bundle, xml]),
                 'glib-compile-resources')
        resource = Gio.Resource.load(bundle)
        resource._register()
        try:
            gfile = Gio.File.new_for_uri('resource:///org/libvhdx/test/dynamic.vhdx')
            expect(gfile.get_path() is None, 'a resource has no local path')
            image = Vhdx.Image.new(gfile, Vhdx.OpenFlags.NONE, None)
            expect_equal(image.props.virtual_size, img.size, 'virtual-size')
            expect_equal(image.props.file_size, os.stat(img.path).st_size, 'file-size')
            expect(read_all_async(image) == img.raw, 'data read through resource://')
            expect(open_async(gfile).read_bytes(3 * MiB, 4, None).get_data() == b'\xa5' * 4,
                   'async open of resource://')
            stream = image.open_stream()
            stream.seek(20 * MiB, GLib.SeekType.SET, None)
            expect_equal(stream.read_bytes(4 * KiB, None).get_data(),
                         img.raw[20 * MiB:20 * MiB + 4 * KiB], 'stream over resource://')
            expect_error(lambda: Vhdx.Image.new(gfile, Vhdx.OpenFlags.READ_WRITE, None),
                         'g-io-error-quark', Gio.IOErrorEnum.NOT_SUPPORTED, 'writing')
            missing = Gio.File.new_for_uri('resource:///org/libvhdx/test/missing.vhdx')
            expect_error(lambda: Vhdx.Image.new(missing, Vhdx.OpenFlags.NONE, None),
                         'g-io-error-quark', Gio.IOErrorEnum.NOT_FOUND, 'missing resource')
            expect_equal(image.props.file.get_uri(), 'resource:///org/libvhdx/test/dynamic.vhdx',
                         'file')
        finally:
            resource._unregister()

    # differencing images

    def make_child(self):
        """An empty differencing image of the dynamic image, made by the vhdx tool."""
        if not TOOL:
            raise Skip('VHDX_TOOL not set')
        img = self.image('dynamic')
        base_dir = os.path.join(self.workdir, 'chain')
        os.makedirs(base_dir, exist_ok=True)
        base = os.path.join(base_dir, 'base.vhdx')
        child = os.path.join(base_dir, 'child.avhdx')
        for path in (base, child):
            if os.path.exists(path):
                os.unlink(path)
        shutil.copyfile(img.path, base)
        check_ok(run([TOOL, 'create', '--parent', base, child]), 'vhdx create --parent')
        return img, base, child

    def test_parent(self):
        img, base, child = self.make_child()
        # The identity a child's parent_linkage refers to: the DataWriteGuid
        # of the parent's current header, read from its bytes.
        linkage = vhdxspec.Vhdx(base).header['data-write-guid']
        image = Vhdx.Image.new(Gio.File.new_for_path(child), Vhdx.OpenFlags.NONE, None)
        base_image = Vhdx.Image.new(Gio.File.new_for_path(base), Vhdx.OpenFlags.NONE, None)
        props = image.props
        expect_equal(props.has_parent, True, 'has-parent')
        expect_equal(props.disk_type, Vhdx.DiskType.DIFFERENCING, 'disk-type')
        expect_equal(props.chain_depth, 1, 'chain-depth')
        expect_equal(props.virtual_size, img.size, 'virtual-size')
        locator = props.parent_locator
        expect(isinstance(locator, dict), 'parent-locator %r' % (locator,))
        # The locator's values are as stored: a GUID in braces, in any case.
        expect_equal(locator.get('parent_linkage', '').lower(), '{%s}' % linkage,
                     'parent_linkage')
        expect_equal(locator, vhdxspec.Vhdx(child).parent_locator(),
                     'the locator as stored in the child')
        expect_equal(image.get_parent_locator(), locator, 'get_parent_locator()')
        parent = props.parent
        expect_equal(parent.props.file.get_path(), base, 'parent file')
        expect_equal(parent.props.data_write_guid, linkage, 'parent data-write-guid')
        expect_equal(base_image.props.data_write_guid, linkage, 'data-write-guid of the base')
        expect_equal(parent.props.has_parent, False, 'parent has-parent')
        expect(image.dup_parent() == parent, 'the parent object is shared')
        expect(read_all_async(image) == img.raw, 'data read through the parent')
        # The empty child stores nothing: the data are the blocks written
        # to the base (3 and 4, 20, 39 of 1 MiB), read from it at depth 1.
        data = [(e.get_offset(), e.get_length(), e.get_depth())
                for e in image.get_extents(0, img.size, None)
                if e.get_kind() == Vhdx.ExtentKind.DATA]
        merged = []
        for start, length, depth in data:
            if merged and merged[-1][2] == depth and sum(merged[-1][:2]) == start:
                merged[-1] = (merged[-1][0], merged[-1][1] + length, depth)
            else:
                merged.append((start, length, depth))
        expect_equal(merged, [(3 * MiB, 2 * MiB, 1), (20 * MiB, MiB, 1), (39 * MiB, MiB, 1)],
                     'data extents and their depths')
        # The parent outlives the child.
        del image
        expect_equal(parent.read_bytes(3 * MiB, 4, None).get_data(), b'\xa5' * 4,
                     'reading the parent after the child is gone')

    def test_parent_file(self):
        img, base, child = self.make_child()
        moved = os.path.join(self.workdir, 'moved-base.vhdx')
        os.replace(base, moved)
        expect_error(lambda: Vhdx.Image.new(Gio.File.new_for_path(child), Vhdx.OpenFlags.NONE,
                                            None),
                     'vhdx-error-quark', Vhdx.Error.PARENT_NOT_FOUND,
                     'a child whose parent is gone')
        image = Vhdx.Image(file=Gio.File.new_for_path(child),
                           parent_file=Gio.File.new_for_path(moved))
        image.init(None)
        expect_equal(image.props.parent.props.file.get_path(), moved, 'parent file')
        expect(image.read_bytes(0, img.size, None).get_data() == img.raw, 'data')

    def test_missing_parent(self):
        img, base, child = self.make_child()
        elsewhere = os.path.join(self.workdir, 'elsewhere')
        os.makedirs(elsewhere, exist_ok=True)
        moved = os.path.join(elsewhere, 'base.vhdx')
        os.replace(base, moved)
        # Opened without its parent, the child describes itself; what the
        # parent holds cannot be read, and its extents say whose it is.
        for flags in (Vhdx.OpenFlags.NO_PARENT, Vhdx.OpenFlags.ALLOW_MISSING_PARENT):
            image = Vhdx.Image.new(Gio.File.new_for_path(child), flags, None)
            expect_equal((image.props.has_parent, image.props.parent, image.props.chain_depth),
                         (True, None, 0), '%r: has-parent, parent, chain-depth' % flags)
            expect_equal(image.props.virtual_size, img.size, 'virtual size')
            expect_error(lambda: image.read_bytes(3 * MiB, 512, None), 'vhdx-error-quark',
                         Vhdx.Error.PARENT_NOT_FOUND, '%r: a read of the parent\'s' % flags)
            extents = [(e.get_offset(), e.get_length(), e.get_kind(), e.get_depth(),
                        e.is_present()) for e in image.get_extents(0, img.size, None)]
            expect_equal(extents, [(0, img.size, Vhdx.ExtentKind.PARENT, 1, False)],
                         '%r: the extents of an empty child' % flags)
        # The search path finds it under its own name.
        image = Vhdx.Image(file=Gio.File.new_for_path(child), parent_search_path=[elsewhere])
        image.init(None)
        expect_equal(image.get_parent_search_path(), [elsewhere], 'get_parent_search_path()')
        expect_equal(image.props.parent.props.file.get_path(), moved, 'found in the search path')
        expect(image.read_bytes(0, img.size, None).get_data() == img.raw, 'data')

    # writing: the images QEMU made, copied and written; the model of the
    # disk starts as `qemu-img convert` gave it, and QEMU reads the image
    # back once it is closed

    def writable_copy(self, name):
        """A copy of a QEMU-made image to write, and the model of its disk."""
        img = self.image(name)
        path = os.path.join(self.workdir, 'written-%s.vhdx' % name)
        shutil.copyfile(img.path, path)
        return img, path, bytearray(img.raw)

    def check_with_qemu(self, path, model):
        raw = path + '.raw'
        with open(raw, 'wb') as f:
            f.write(model)
        check_ok(run([QEMU_IMG, 'check', '-q', '-f', 'vhdx', path]), 'qemu-img check')
        check_ok(run([QEMU_IMG, 'compare', '-q', '-f', 'vhdx', '-F', 'raw', path, raw]),
                 'qemu-img compare')
        os.unlink(raw)

    def test_write(self):
        img, path, model = self.writable_copy('dynamic')
        gfile = Gio.File.new_for_path(path)
        image = Vhdx.Image.new(gfile, Vhdx.OpenFlags.READ_WRITE, None)
        expect_equal((image.props.read_only, image.is_read_only()), (False, False),
                     'read-only of an image opened read-write')
        guid_at_open = image.props.data_write_guid
        notified = []
        image.connect('notify::data-write-guid',
                      lambda obj, pspec: notified.append(obj.props.data_write_guid))

        for offset, length, flags in ((3 * MiB - 5, 10, Vhdx.WriteFlags.NONE),
                                      (20 * MiB + 1000, 100 * KiB, Vhdx.WriteFlags.NONE),
                                      (img.size - 512, 512, Vhdx.WriteFlags.FUA),
                                      (7 * MiB + 1, 9 * MiB + 3, Vhdx.WriteFlags.NONE)):
            data = os.urandom(length)
            image.write_bytes(offset, GLib.Bytes.new(data), flags, None)
            model[offset:offset + length] = data
        image.write_zeroes(3 * MiB + 4096, 64 * KiB, Vhdx.WriteFlags.MAY_UNMAP, None)
        model[3 * MiB + 4096:3 * MiB + 68 * KiB] = bytes(64 * KiB)
        # A dynamic image frees the last block, whole; the other range
        # covers no block whole and keeps its data.
        image.discard(39 * MiB, MiB, Vhdx.WriteFlags.NONE, None)
        model[39 * MiB:40 * MiB] = bytes(MiB)
        image.discard(20 * MiB + 2048, MiB, Vhdx.WriteFlags.NONE, None)
        expect(image.read_bytes(0, img.size, None).get_data() == bytes(model),
               'reads see the writes')
        expect_error(lambda: image.write_bytes(img.size - 4, GLib.Bytes.new(b'12345678'),
                                               Vhdx.WriteFlags.NONE, None),
                     'vhdx-error-quark', Vhdx.Error.OUT_OF_RANGE, 'a write across the end')
        image.flush(None)
        image.close(None)

        # The GUIDs of the closed file, read from its bytes.
        header = vhdxspec.Vhdx(path).header
        expect_equal(image.props.data_write_guid, header['data-write-guid'],
                     'data-write-guid after close')
        expect_equal(image.props.file_write_guid, header['file-write-guid'],
                     'file-write-guid after close')
        expect(header['data-write-guid'] != guid_at_open, 'a new DataWriteGuid')
        expect_equal(notified, [header['data-write-guid']], 'notify::data-write-guid')
        expect_error(lambda: image.write_bytes(0, GLib.Bytes.new(b'x'), Vhdx.WriteFlags.NONE,
                                               None),
                     'g-io-error-quark', Gio.IOErrorEnum.CLOSED, 'a write after close')
        del image

        reopened = Vhdx.Image.new(gfile, Vhdx.OpenFlags.NONE, None)
        expect_equal(reopened.props.read_only, True, 'read-only of an image opened read-only')
        expect(reopened.read_bytes(0, img.size, None).get_data() == bytes(model),
               'the disk read after reopening')
        expect_error(lambda: reopened.write_bytes(0, GLib.Bytes.new(b'x'), Vhdx.WriteFlags.NONE,
                                                  None),
                     'g-io-error-quark', Gio.IOErrorEnum.READ_ONLY, 'a write to it')
        del reopened
        self.check_with_qemu(path, model)

    def test_write_async(self):
        img, path, model = self.writable_copy('odd')
        image = open_async(Gio.File.new_for_path(path), Vhdx.OpenFlags.READ_WRITE)

        def call(start, finish):
            return run_loop(lambda done: start(GLib.PRIORITY_DEFAULT, None, finisher(
                lambda source, result: getattr(source, finish)(result), done)))

        data = os.urandom(5 * MiB)
        call(lambda *args: image.write_bytes_async(30 * MiB, GLib.Bytes.new(data),
                                                   Vhdx.WriteFlags.NONE, *args),
             'write_bytes_finish')
        model[30 * MiB:35 * MiB] = data
        call(lambda *args: image.write_zeroes_async(64 * MiB + 4 * KiB, 8 * KiB,
                                                    Vhdx.WriteFlags.NONE, *args),
             'write_zeroes_finish')
        model[64 * MiB + 4 * KiB:64 * MiB + 12 * KiB] = bytes(8 * KiB)
        # The second block of 32 MiB, whole.
        call(lambda *args: image.discard_async(32 * MiB, 32 * MiB, Vhdx.WriteFlags.NONE, *args),
             'discard_finish')
        model[32 * MiB:64 * MiB] = bytes(32 * MiB)

        cancellable = Gio.Cancellable()
        cancellable.cancel()
        expect_error(lambda: run_loop(lambda done: image.write_bytes_async(
            0, GLib.Bytes.new(b'\xff' * 4096), Vhdx.WriteFlags.NONE, GLib.PRIORITY_DEFAULT,
            cancellable, finisher(lambda source, result: source.write_bytes_finish(result),
                                  done))),
            'g-io-error-quark', Gio.IOErrorEnum.CANCELLED, 'a cancelled write')
        expect_equal(read_all_async(image), bytes(model), 'reads see the writes')
        call(image.flush_async, 'flush_finish')
        call(image.close_async, 'close_finish')
        expect_equal(image.props.data_write_guid, vhdxspec.Vhdx(path).header['data-write-guid'],
                     'data-write-guid after close_async')
        del image
        self.check_with_qemu(path, model)

    def test_write_read_only(self):
        img = self.image('fixed')
        with open(img.path, 'rb') as f:
            before = hashlib.sha256(f.read()).hexdigest()
        image = img.open()
        expect_equal((image.props.read_only, image.is_read_only()), (True, True), 'read-only')
        read_only = ('g-io-error-quark', Gio.IOErrorEnum.READ_ONLY)
        expect_error(lambda: image.write_bytes(0, GLib.Bytes.new(b'x' * 512),
                                               Vhdx.WriteFlags.NONE, None),
                     *read_only, 'write_bytes')
        expect_error(lambda: image.write_zeroes(0, MiB, Vhdx.WriteFlags.MAY_UNMAP, None),
                     *read_only, 'write_zeroes')
        expect_error(lambda: image.discard(0, MiB, Vhdx.WriteFlags.NONE, None), *read_only,
                     'discard')
        expect_error(lambda: run_loop(lambda done: image.write_bytes_async(
            0, GLib.Bytes.new(b'x'), Vhdx.WriteFlags.FUA, GLib.PRIORITY_DEFAULT, None,
            finisher(lambda source, result: source.write_bytes_finish(result), done))),
            *read_only, 'write_bytes_async')
        stream = image.open_io_stream()
        expect_error(lambda: stream.get_output_stream().write(b'x' * 512, None), *read_only,
                     'a write to the stream')
        stream.close(None)
        image.flush(None)
        image.close(None)
        del image
        with open(img.path, 'rb') as f:
            expect_equal(hashlib.sha256(f.read()).hexdigest(), before, 'sha256 of the file')

    # resizing: QEMU reads the resized image back as the model of its
    # disk, cut or extended with zeros

    def test_resize(self):
        img, path, model = self.writable_copy('dynamic')
        gfile = Gio.File.new_for_path(path)
        read_only = img.open()
        expect_error(lambda: read_only.resize(80 * MiB, Vhdx.ResizeFlags.NONE, None, None, None),
                     'g-io-error-quark', Gio.IOErrorEnum.READ_ONLY, 'resize of a read-only image')
        read_only = None

        image = Vhdx.Image.new(gfile, Vhdx.OpenFlags.READ_WRITE, None)
        # QEMU wrote into block 39 of 1 MiB, the last of the disk.
        expect_equal(image.get_minimum_size(None), 40 * MiB, 'minimum size')
        notified = []
        image.connect('notify::virtual-size', lambda obj, pspec: notified.append(
            obj.props.virtual_size))
        reports = []
        # 200 GiB of 1 MiB blocks needs a larger BAT than QEMU made.
        size = 200 * GiB
        image.resize(size, Vhdx.ResizeFlags.NONE,
                     lambda done, total, data: reports.append((done, total, data)), 'data',
                     None)
        expect_equal((image.props.virtual_size, image.get_virtual_size()), (size, size),
                     'virtual-size after resize')
        expect_equal(notified, [size], 'notify::virtual-size')
        expect(all(data == 'data' and done <= total for done, total, data in reports),
               'progress reports: %r' % reports[:10])
        expect([r[0] for r in reports] == sorted(r[0] for r in reports),
               'progress only goes forward: %r' % reports[:10])
        expect(image.read_bytes(0, len(model), None).get_data() == bytes(model),
               'the disk reads as before')
        expect_equal(image.read_bytes(size - MiB, 2 * MiB, None).get_data(), bytes(MiB),
                     'the end of the grown disk reads as zeros')
        expect_error(lambda: image.resize(20 * MiB, Vhdx.ResizeFlags.NONE, None, None, None),
                     'vhdx-error-quark', Vhdx.Error.WOULD_DISCARD_DATA,
                     'shrinking over stored data')
        expect_equal((image.props.virtual_size, notified), (size, [size]),
                     'a refused resize changes nothing')
        image.resize(size, Vhdx.ResizeFlags.NONE, None, None, None)
        expect_equal(notified, [size], 'a resize to the same size notifies nothing')
        image.close(None)
        image = None
        # QEMU reads every byte of a VHDX image to compare it: it reads the
        # blocks QEMU wrote, the old end and the new one instead.
        qinfo = json.loads(check_ok(run([QEMU_IMG, 'info', '--output=json', '-f', 'vhdx', path]),
                                    'qemu-img info').stdout)
        expect_equal(qinfo['virtual-size'], size, 'qemu-img virtual-size')
        check_ok(run([QEMU_IMG, 'check', '-q', '-f', 'vhdx', path]), 'qemu-img check')
        commands = []
        for pattern, offset, length in img.writes:
            commands += ['-c', 'read -P 0x%02x %d %d' % (pattern, offset, length)]
        commands += ['-c', 'read -P 0 %d %d' % (img.size, MiB),
                     '-c', 'read -P 0 %d %d' % (size - MiB, MiB)]
        result = check_ok(run([QEMU_IO, '-r', '-f', 'vhdx'] + commands + [path]), 'qemu-io')
        expect(b'verification failed' not in result.stdout, 'qemu-io: %r' % result.stdout)

    def test_resize_async(self):
        img = self.image('odd')
        path = os.path.join(self.workdir, 'resized-odd.vhdx')
        shutil.copyfile(img.path, path)
        model = img.raw
        image = open_async(Gio.File.new_for_path(path), Vhdx.OpenFlags.READ_WRITE)
        main_thread = threading.get_ident()
        events = []
        image.connect('notify::virtual-size', lambda obj, pspec: events.append(
            ('notify', obj.props.virtual_size, threading.get_ident())))

        def progress(done, total, data):
            events.append(('progress', done <= total, threading.get_ident()))

        def resize(size, flags):
            return run_loop(lambda done: image.resize_async(
                size, flags, GLib.PRIORITY_DEFAULT, progress, None, None,
                finisher(lambda source, result: (events.append(('done', None, None)),
                                                 source.resize_finish(result))[1], done)))

        # Block 2 (64-96 MiB) is stored: shrinking to 40 MiB drops it.
        expect_error(lambda: resize(40 * MiB, Vhdx.ResizeFlags.NONE), 'vhdx-error-quark',
                     Vhdx.Error.WOULD_DISCARD_DATA, 'shrinking over stored data')
        expect_equal(image.props.virtual_size, 70 * MiB, 'virtual-size after the refusal')
        expect(not [e for e in events if e[0] == 'notify'], 'no notify: %r' % events)
        del events[:]
        resize(40 * MiB, Vhdx.ResizeFlags.DISCARD_DATA)
        expect_equal(image.props.virtual_size, 40 * MiB, 'virtual-size after resize_async')
        expect_equal([e for e in events if e[0] != 'progress'],
                     [('notify', 40 * MiB, main_thread), ('done', None, None)],
                     'notify in the main context, before the callback')
        expect(all(e[1] and e[2] == main_thread for e in events if e[0] == 'progress'),
               'progress in the main context: %r' % events)
        image.close(None)
        image = None
        self.check_with_qemu(path, bytes(model[:40 * MiB]))

    # compacting: QEMU writes data and zeros (stored as data) into
    # alternate blocks; after the compaction QEMU reads the same disk,
    # and the file is shorter

    def zeros_and_data(self, name):
        """A dynamic image of 24 blocks of 1 MiB, QEMU's data in the even
        ones and zeros in the odd ones, and its disk."""
        if QEMU_IMG is None or QEMU_IO is None:
            raise Skip('qemu-img or qemu-io not installed')
        writes = [(0x60 + b if b % 2 == 0 else 0, b * MiB, MiB) for b in range(24)]
        img = Image(self.workdir, name, 'dynamic', 24 * MiB, MiB, writes)
        expect_equal(len(img.spec.stored_blocks()), 24, 'QEMU stores the zeros')
        return img

    def test_compact(self):
        img = self.zeros_and_data('compact')
        read_only = img.open()
        expect_error(lambda: read_only.compact(Vhdx.CompactFlags.NONE, None, None, None),
                     'g-io-error-quark', Gio.IOErrorEnum.READ_ONLY,
                     'compact of a read-only image')
        read_only = None
        fixed = Vhdx.Image.new(Gio.File.new_for_path(self.writable_copy('fixed')[1]),
                               Vhdx.OpenFlags.READ_WRITE, None)
        expect_error(lambda: fixed.compact(Vhdx.CompactFlags.NONE, None, None, None),
                     'vhdx-error-quark', Vhdx.Error.NOT_SUPPORTED, 'compact of a fixed image')
        fixed.close(None)
        fixed = None

        data_write_guid = vhdxspec.Vhdx(img.path).header['data-write-guid']
        image = Vhdx.Image.new(img.gfile(), Vhdx.OpenFlags.READ_WRITE, None)
        before = image.props.file_size
        # Quick: the zeros are not read, and stay.
        image.compact(Vhdx.CompactFlags.QUICK, None, None, None)
        expect_equal(len(vhdxspec.Vhdx(img.path).stored_blocks()), 24, 'quick keeps the zeros')
        reports = []
        image.compact(Vhdx.CompactFlags.NONE,
                      lambda done, total, data: reports.append((done, total, data)), 'data',
                      None)
        expect_equal(vhdxspec.Vhdx(img.path).header['data-write-guid'], data_write_guid,
                     'DataWriteGuid: compacting changes no data')
        expect(image.props.file_size <= before - 12 * MiB,
               'file-size %d after, %d before' % (image.props.file_size, before))
        expect(reports and all(data == 'data' and done <= total
                               for done, total, data in reports),
               'progress reports: %r' % reports[:10])
        expect([r[0] for r in reports] == sorted(r[0] for r in reports),
               'progress only goes forward: %r' % reports[:10])
        expect(image.read_bytes(0, img.size, None).get_data() == img.raw,
               'the disk reads as before')
        # Still writable where blocks moved and dropped.
        model = bytearray(img.raw)
        model[MiB:MiB + 4096] = b'\x7e' * 4096
        image.write_bytes(MiB, GLib.Bytes.new(b'\x7e' * 4096), Vhdx.WriteFlags.NONE, None)
        image.close(None)
        image = None
        expect_equal(sorted(vhdxspec.Vhdx(img.path).stored_blocks()),
                     sorted(list(range(0, 24, 2)) + [1]), 'the blocks stored')
        self.check_with_qemu(img.path, bytes(model))

    def test_compact_async(self):
        img = self.zeros_and_data('compact-async')
        image = open_async(img.gfile(), Vhdx.OpenFlags.READ_WRITE)
        main_thread = threading.get_ident()
        events = []

        def progress(done, total, data):
            events.append(('progress', done <= total and data == 'data', threading.get_ident()))

        def compact(cancellable=None):
            return run_loop(lambda done: image.compact_async(
                # PyGObject hands a notified callback's data, when it is
                # not the last argument, as extra arguments: a tuple.
                Vhdx.CompactFlags.NONE, GLib.PRIORITY_DEFAULT, progress, ('data',), cancellable,
                finisher(lambda source, result: (events.append(('done', None, None)),
                                                 source.compact_finish(result))[1], done)))

        cancellable = Gio.Cancellable()
        cancellable.cancel()
        with open(img.path, 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        expect_error(lambda: compact(cancellable), 'g-io-error-quark',
                     Gio.IOErrorEnum.CANCELLED, 'a compaction cancelled before it starts')
        with open(img.path, 'rb') as f:
            expect_equal(hashlib.sha256(f.read()).hexdigest(), digest,
                         'a compaction cancelled before it starts changes nothing')
        del events[:]
        size = os.stat(img.path).st_size
        compact()
        expect_equal(events[-1], ('done', None, None), 'the callback comes last')
        expect(len(events) > 1 and all(e[1] and e[2] == main_thread
                                       for e in events if e[0] == 'progress'),
               'progress in the main context: %r' % events)
        expect(os.stat(img.path).st_size <= size - 12 * MiB, 'the file is shorter')
        image.close(None)
        image = None
        self.check_with_qemu(img.path, img.raw)

    # a new parent: the locator read from the file (vhdxspec) names the
    # moved parent, and the child reopened reads its disk through it

    def moved_chain(self, name):
        """A base and its child with data of its own, made by the vhdx tool;
        the base then moves to another directory.  Returns the child, the
        moved base and the child's disk."""
        if not TOOL:
            raise Skip('VHDX_TOOL not set')
        top = os.path.join(self.workdir, name)
        for sub in ('vm', 'old', 'new'):
            os.makedirs(os.path.join(top, sub))
        base_raw, child_raw = os.path.join(top, 'base.raw'), os.path.join(top, 'child.raw')
        data = bytearray(16 * MiB)
        data[0:2 * MiB] = b'\x31' * (2 * MiB)
        with open(base_raw, 'wb') as f:
            f.write(data)
        data[5 * MiB:5 * MiB + 4096] = b'\x32' * 4096
        with open(child_raw, 'wb') as f:
            f.write(data)
        base = os.path.join(top, 'old', 'base.vhdx')
        child = os.path.join(top, 'vm', 'child.avhdx')
        check_ok(run([TOOL, 'convert', '--block-size=2M', base_raw, base]), 'vhdx convert')
        check_ok(run([TOOL, 'convert', '--parent', base, child_raw, child]),
                 'vhdx convert --parent')
        moved = os.path.join(top, 'new', 'base.vhdx')
        os.rename(base, moved)
        return child, moved, bytes(data)

    def expect_child_reads(self, child, moved, data):
        pairs = vhdxspec.Vhdx(child).parent_locator()
        expect_equal(pairs['relative_path'], '..\\new\\base.vhdx', 'relative_path')
        expect_equal(pairs['parent_linkage'],
                     '{%s}' % vhdxspec.Vhdx(moved).header['data-write-guid'].lower(),
                     'parent_linkage')
        image = Vhdx.Image.new(Gio.File.new_for_path(child), Vhdx.OpenFlags.NONE, None)
        expect_equal(image.dup_parent().get_file().get_path(), moved, 'the parent opened')
        expect(image.read_bytes(0, len(data), None).get_data() == data,
               'the child reads its disk through the moved parent')

    def test_set_parent(self):
        child, moved, data = self.moved_chain('set-parent')
        gchild = Gio.File.new_for_path(child)
        expect_error(lambda: Vhdx.Image.new(gchild, Vhdx.OpenFlags.NONE, None),
                     'vhdx-error-quark', Vhdx.Error.PARENT_NOT_FOUND, 'the parent moved')
        read_only = Vhdx.Image.new(gchild, Vhdx.OpenFlags.NO_PARENT, None)
        expect_error(lambda: read_only.set_parent(Gio.File.new_for_path(moved),
                                                  Vhdx.SetParentFlags.NONE, None),
                     'g-io-error-quark', Gio.IOErrorEnum.READ_ONLY, 'a read-only image')
        read_only = None
        image = Vhdx.Image.new(gchild, Vhdx.OpenFlags.READ_WRITE | Vhdx.OpenFlags.NO_PARENT,
                               None)
        guid = image.props.data_write_guid
        notified = []
        image.connect('notify::parent-locator', lambda obj, pspec: notified.append(
            dict(obj.props.parent_locator)))
        # Not the image the child was made from.
        other = os.path.join(os.path.dirname(moved), 'other.vhdx')
        check_ok(run([TOOL, 'create', other, '16M']), 'vhdx create')
        expect_error(lambda: image.set_parent(Gio.File.new_for_path(other),
                                              Vhdx.SetParentFlags.NONE, None),
                     'vhdx-error-quark', Vhdx.Error.PARENT_MISMATCH, 'another parent')
        expect_equal(notified, [], 'a refusal notifies nothing')
        image.set_parent(Gio.File.new_for_path(moved), Vhdx.SetParentFlags.NONE, None)
        expect_equal(image.get_parent_locator()['relative_path'], '..\\new\\base.vhdx',
                     'get_parent_locator() after set_parent')
        expect_equal([n.get('relative_path') for n in notified], ['..\\new\\base.vhdx'],
                     'notify::parent-locator')
        expect_equal(image.props.data_write_guid, guid, 'data-write-guid is kept')
        image.close(None)
        image = None
        self.expect_child_reads(child, moved, data)
        # A dynamic image has no parent to set.
        dynamic = Vhdx.Image.new(Gio.File.new_for_path(other), Vhdx.OpenFlags.READ_WRITE, None)
        expect_error(lambda: dynamic.set_parent(Gio.File.new_for_path(moved),
                                                Vhdx.SetParentFlags.NONE, None),
                     'vhdx-error-quark', Vhdx.Error.NOT_SUPPORTED, 'a dynamic image')
        dynamic.close(None)

    def test_set_parent_async(self):
        child, moved, data = self.moved_chain('set-parent-async')
        image = open_async(Gio.File.new_for_path(child),
                           Vhdx.OpenFlags.READ_WRITE | Vhdx.OpenFlags.ALLOW_MISSING_PARENT)
        main_thread = threading.get_ident()
        events = []
        image.connect('notify::parent-locator', lambda obj, pspec: events.append(
            ('notify', obj.props.parent_locator['relative_path'], threading.get_ident())))
        run_loop(lambda done: image.set_parent_async(
            Gio.File.new_for_path(moved), Vhdx.SetParentFlags.NONE, GLib.PRIORITY_DEFAULT, None,
            finisher(lambda source, result: (events.append(('done', None, None)),
                                             source.set_parent_finish(result))[1], done)))
        expect_equal(events, [('notify', '..\\new\\base.vhdx', main_thread),
                              ('done', None, None)],
                     'notify in the main context, before the callback')
        image.close(None)
        image = None
        self.expect_child_reads(child, moved, data)

    # new metadata: the physical sector size and the Virtual Disk ID as the
    # file holds them, the properties notified, and the child beside the
    # image still reading through it

    def chain_beside(self, name):
        """A base and its child with data of its own, made by the vhdx tool
        in one directory.  Returns their paths and the child's disk."""
        if not TOOL:
            raise Skip('VHDX_TOOL not set')
        top = os.path.join(self.workdir, name)
        os.makedirs(top)
        data = bytearray(16 * MiB)
        data[0:2 * MiB] = b'\x41' * (2 * MiB)
        base_raw, child_raw = os.path.join(top, 'base.raw'), os.path.join(top, 'child.raw')
        with open(base_raw, 'wb') as f:
            f.write(data)
        data[7 * MiB:7 * MiB + 4096] = b'\x42' * 4096
        with open(child_raw, 'wb') as f:
            f.write(data)
        base = os.path.join(top, 'base.vhdx')
        child = os.path.join(top, 'child.avhdx')
        check_ok(run([TOOL, 'convert', '--block-size=2M', base_raw, base]), 'vhdx convert')
        check_ok(run([TOOL, 'convert', '--parent', base, child_raw, child]),
                 'vhdx convert --parent')
        return base, child, bytes(data)

    def expect_child_linked(self, base, child, data):
        guid = vhdxspec.Vhdx(base).header['data-write-guid'].lower()
        pairs = vhdxspec.Vhdx(child).parent_locator()
        expect_equal(pairs['parent_linkage'], '{%s}' % guid,
                     'the child names the new DataWriteGuid as parent_linkage')
        expect('parent_linkage2' not in pairs, 'the child has no parent_linkage2 left')
        image = Vhdx.Image.new(Gio.File.new_for_path(child), Vhdx.OpenFlags.NONE, None)
        expect(image.read_bytes(0, len(data), None).get_data() == data,
               'the child reads its disk through the changed base')

    # merging: a static call of Vhdx.Image; the merged base read by QEMU
    # (check_with_qemu) as the child read before

    def test_merge(self):
        base, child, data = self.chain_beside('merge')
        gchild, gbase = Gio.File.new_for_path(child), Gio.File.new_for_path(base)
        expect_error(lambda: Vhdx.Image.merge(gbase, None, Vhdx.MergeFlags.NONE, None, None,
                                              None),
                     'vhdx-error-quark', Vhdx.Error.NOT_SUPPORTED, 'merging a base image')
        sibling = os.path.join(os.path.dirname(base), 'sibling.avhdx')
        check_ok(run([TOOL, 'create', '--parent', base, sibling]), 'vhdx create --parent')
        expect_error(lambda: Vhdx.Image.merge(gchild, gbase, Vhdx.MergeFlags.NONE, None, None,
                                              None),
                     'vhdx-error-quark', Vhdx.Error.WOULD_DISCARD_DATA, 'a sibling beside')
        os.unlink(sibling)
        reports = []
        Vhdx.Image.merge(gchild, gbase, Vhdx.MergeFlags.DELETE_MERGED,
                         lambda done, total, _: reports.append((done, total)), None, None)
        expect(not os.path.exists(child), 'the child is deleted')
        expect(reports and reports[-1] == (len(data), len(data)),
               'progress up to the whole disk: %r' % reports[-3:])
        self.check_with_qemu(base, data)

    def test_merge_async(self):
        base, child, data = self.chain_beside('merge-async')
        main_thread = threading.get_ident()
        events = []

        def progress(done, total, _):
            events.append(('progress', done <= total, threading.get_ident()))

        run_loop(lambda done: Vhdx.Image.merge_async(
            Gio.File.new_for_path(child), None, Vhdx.MergeFlags.NONE, GLib.PRIORITY_DEFAULT,
            progress, None, None,
            finisher(lambda source, result: (events.append(('done', None, None)),
                                             Vhdx.Image.merge_finish(result))[1], done)))
        expect(events and events[-1] == ('done', None, None), 'the callback last: %r' % events)
        expect(all(e[1] and e[2] == main_thread for e in events if e[0] == 'progress'),
               'progress in the main context: %r' % events)
        self.check_with_qemu(base, data)
        image = Vhdx.Image.new(Gio.File.new_for_path(child), Vhdx.OpenFlags.NONE, None)
        expect(image.read_bytes(0, len(data), None).get_data() == data,
               'the child kept reads as before')

    def test_set_metadata(self):
        base, child, data = self.chain_beside('set-metadata')
        gbase = Gio.File.new_for_path(base)
        read_only = Vhdx.Image.new(gbase, Vhdx.OpenFlags.NONE, None)
        expect_error(lambda: read_only.set_metadata(512, Vhdx.SetMetadataFlags.NONE, None),
                     'g-io-error-quark', Gio.IOErrorEnum.READ_ONLY, 'a read-only image')
        read_only = None
        before = vhdxspec.Vhdx(base)
        image = Vhdx.Image.new(gbase, Vhdx.OpenFlags.READ_WRITE, None)
        expect_equal(image.props.physical_sector_size, before.physical_sector_size,
                     'physical-sector-size as made')
        new_size = 512 if before.physical_sector_size == 4096 else 4096
        notified = []
        image.connect('notify::physical-sector-size', lambda obj, pspec: notified.append(
            ('physical-sector-size', obj.props.physical_sector_size)))
        image.connect('notify::virtual-disk-id', lambda obj, pspec: notified.append(
            ('virtual-disk-id', obj.props.virtual_disk_id)))
        for size in (1024, 8192, 1):
            expect_error(lambda: image.set_metadata(size, Vhdx.SetMetadataFlags.NONE, None),
                         'vhdx-error-quark', Vhdx.Error.NOT_SUPPORTED, 'a size of %d' % size)
        image.set_metadata(before.physical_sector_size, Vhdx.SetMetadataFlags.NONE, None)
        image.set_metadata(0, Vhdx.SetMetadataFlags.NONE, None)
        expect_equal(notified, [], 'nothing changed, nothing notified')
        old_id = image.get_virtual_disk_id()
        guid = image.props.data_write_guid
        image.set_metadata(new_size, Vhdx.SetMetadataFlags.RESET_DISK_ID, None)
        after = vhdxspec.Vhdx(base)
        expect_equal((after.physical_sector_size, after.virtual_disk_id),
                     (new_size, image.get_virtual_disk_id()), 'the file holds the new values')
        expect(after.virtual_disk_id != old_id, 'a new Virtual Disk ID')
        expect_equal(old_id, before.virtual_disk_id, 'the old string stays valid')
        expect_equal(notified, [('physical-sector-size', new_size),
                                ('virtual-disk-id', after.virtual_disk_id)],
                     'notify::physical-sector-size and notify::virtual-disk-id')
        expect_equal(image.get_physical_sector_size(), new_size, 'get_physical_sector_size()')
        expect_equal(image.props.data_write_guid, guid, 'data-write-guid until the close')
        image.close(None)
        expect_equal(image.props.data_write_guid, after.header['data-write-guid'].lower(),
                     'data-write-guid after the close')
        image = None
        self.expect_child_linked(base, child, data)
        if QEMU_IMG:
            check_ok(run([QEMU_IMG, 'check', '-f', 'vhdx', base]), 'qemu-img check')

    def test_set_metadata_async(self):
        base, child, data = self.chain_beside('set-metadata-async')
        image = open_async(Gio.File.new_for_path(base), Vhdx.OpenFlags.READ_WRITE)
        new_size = 512 if image.props.physical_sector_size == 4096 else 4096
        main_thread = threading.get_ident()
        events = []
        image.connect('notify::physical-sector-size', lambda obj, pspec: events.append(
            ('notify', obj.props.physical_sector_size, threading.get_ident())))
        run_loop(lambda done: image.set_metadata_async(
            new_size, Vhdx.SetMetadataFlags.NONE, GLib.PRIORITY_DEFAULT, None,
            finisher(lambda source, result: (events.append(('done', None, None)),
                                             source.set_metadata_finish(result))[1], done)))
        expect_equal(events, [('notify', new_size, main_thread), ('done', None, None)],
                     'notify in the main context, before the callback')
        expect_equal(vhdxspec.Vhdx(base).physical_sector_size, new_size, 'the file\'s item')
        image.close(None)
        image = None
        self.expect_child_linked(base, child, data)

    def test_set_metadata_after_write(self):
        # A write since the open gave the base a new DataWriteGuid: the
        # child was left behind by it, and set_metadata() does not touch it.
        base, child, data = self.chain_beside('set-metadata-written')
        with open(child, 'rb') as f:
            child_bytes = f.read()
        image = Vhdx.Image.new(Gio.File.new_for_path(base), Vhdx.OpenFlags.READ_WRITE, None)
        image.write_bytes(0, GLib.Bytes.new(b'\x99' * 512), Vhdx.WriteFlags.NONE, None)
        image.set_metadata(0, Vhdx.SetMetadataFlags.RESET_DISK_ID, None)
        image.close(None)
        image = None
        with open(child, 'rb') as f:
            expect(f.read() == child_bytes, 'the child is not touched')
        expect('parent_linkage2' not in vhdxspec.Vhdx(child).parent_locator(),
               'no parent_linkage2')

    def test_io_stream(self):
        img, path, model = self.writable_copy('fixed')
        image = Vhdx.Image.new(Gio.File.new_for_path(path), Vhdx.OpenFlags.READ_WRITE, None)
        stream = image.open_io_stream()
        output = stream.get_output_stream()
        input_ = stream.get_input_stream()
        expect(isinstance(output, Vhdx.OutputStream), 'not a Vhdx.OutputStream')
        expect(isinstance(input_, Vhdx.InputStream), 'not a Vhdx.InputStream')
        expect(output.get_image() == image, 'get_image()')
        expect(output.can_seek() and not output.can_truncate(), 'seek/truncate')
        output.seek(5 * MiB + 3, GLib.SeekType.SET, None)
        data = os.urandom(3 * MiB)
        ok, written = output.write_all(data, None)
        expect_equal((ok, written), (True, len(data)), 'write_all')
        model[5 * MiB + 3:8 * MiB + 3] = data
        expect_equal(output.tell(), 8 * MiB + 3, 'tell')
        output.seek(-10, GLib.SeekType.END, None)
        expect_equal(output.write(b'\x11' * 100, None), 10, 'a write across the end')
        model[-10:] = b'\x11' * 10
        expect_error(lambda: output.write(b'\x22', None), 'g-io-error-quark',
                     Gio.IOErrorEnum.NO_SPACE, 'a write at the end')
        expect_error(lambda: output.truncate(0, None), 'g-io-error-quark',
                     Gio.IOErrorEnum.NOT_SUPPORTED, 'truncate')
        output.flush(None)
        input_.seek(5 * MiB, GLib.SeekType.SET, None)
        expect_equal(input_.read_bytes(4 * MiB, None).get_data(), bytes(model[5 * MiB:9 * MiB]),
                     'read back through the input stream')
        # A fixed image keeps every block: a discard changes nothing.
        image.discard(0, 8 * MiB, Vhdx.WriteFlags.NONE, None)
        stream.close(None)
        image.close(None)
        del image
        self.check_with_qemu(path, model)

    # the examples

    def test_example_c(self):
        example = os.environ.get('VHDX_CAT_EXAMPLE')
        if not example:
            raise Skip('VHDX_CAT_EXAMPLE not set')
        for img in self.images().values():
            out = check_ok(run([example, img.path]), 'vhdx-cat').stdout
            expect(hashlib.sha256(out).hexdigest() == hashlib.sha256(img.raw).hexdigest(),
                   '%s: vhdx-cat differs from qemu-img convert' % img.path)

    def test_example_python(self):
        example = os.environ.get('VHDX_CAT_PY_EXAMPLE')
        if not example:
            raise Skip('VHDX_CAT_PY_EXAMPLE not set')
        for img in self.images().values():
            out = check_ok(run([sys.executable, example, img.path], PYTHON_ENV),
                           'vhdx-cat.py').stdout
            expect(hashlib.sha256(out).hexdigest() == hashlib.sha256(img.raw).hexdigest(),
                   '%s: vhdx-cat.py differs from qemu-img convert' % img.path)
        result = run([sys.executable, example, os.path.join(self.workdir, 'missing.vhdx')],
                     PYTHON_ENV)
        expect_equal(result.returncode, 1, 'exit status for a missing image')
        expect(b'No such file' in result.stderr, 'stderr %r' % result.stderr)


def main():
    names = [n for n in Tests.__dict__ if n.startswith('test_')]
    print('1..%d' % len(names))
    sys.stdout.flush()
    failed = 0
    with tempfile.TemporaryDirectory(prefix='vhdx-test-gi-') as workdir:
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
