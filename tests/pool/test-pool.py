#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# End-to-end tests of vhdx-pool against a real libvirt storage driver,
# printed as TAP.
#
# libvirt runs as an unprivileged session daemon (qemu:///session) with a
# private HOME and XDG directories in a temporary directory; virsh starts it
# on first use and the test kills it at the end.  Run as root, the daemon,
# virsh and vhdx-pool all run as `nobody`, as a desktop user's would.
#
# The oracles are independent of vhdx-pool: `virsh vol-info` for what libvirt
# reports, `qemu-img convert` and `qemu-img compare` for the bytes of the
# virtual disks, the raw disks the test writes itself for the differencing
# images QEMU cannot open, and for the image with a dirty log the disk QEMU
# reads from a copy once `qemu-img check -r all` has replayed the log.
#
# Environment: VHDX_POOL, VHDX_TOOL, VHDX_MKIMAGE (the programs under test).

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'common'))
from libvirtsession import NOBODY, URI, Session  # noqa: E402
from qemunbd import QemuNbd  # noqa: E402

MiB = 1024 * 1024
POOL = 'vhdxtest'
EXPOSE_POOL = 'vhdxexposed'
WAIT_SECONDS = 20

VHDX_POOL = os.environ.get('VHDX_POOL')
VHDX_TOOL = os.environ.get('VHDX_TOOL')
VHDX_MKIMAGE = os.environ.get('VHDX_MKIMAGE')


class Skip(Exception):
    pass


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def expect_equal(found, expected, what):
    if found != expected:
        raise AssertionError('%s: expected %r, found %r' % (what, expected, found))


def wait_for(predicate, what, seconds=WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %d s waiting for %s' % (seconds, what))
        time.sleep(0.1)


def check_ok(result, what):
    if result.returncode != 0:
        raise AssertionError('%s exited with %d: %s' % (
            what, result.returncode, result.stderr.decode(errors='replace').strip()))
    return result


def expect_one_error_line(result, what):
    """A failure is one line on stderr, 'vhdx-pool: message', and exit status 1."""
    stderr = result.stderr.decode(errors='replace')
    expect_equal(result.returncode, 1, '%s: exit status' % what)
    lines = stderr.splitlines()
    expect(len(lines) == 1, '%s: expected one line on stderr, found %r' % (what, stderr))
    expect(lines[0].startswith('vhdx-pool: ') and len(lines[0]) > len('vhdx-pool: '),
           '%s: stderr %r does not start with "vhdx-pool: "' % (what, lines[0]))
    return lines[0]


def vol_info(session, pool, name):
    """Capacity and allocation as virsh reports them, in bytes."""
    result = session.virsh('vol-info', '--bytes', '--pool', pool, name)
    info = {}
    for line in result.stdout.decode().splitlines():
        key, _, value = line.partition(':')
        info[key.strip()] = value.strip()
    return int(info['Capacity'].split()[0]), int(info['Allocation'].split()[0])


def run_root(args):
    result = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=120)
    return check_ok(result, ' '.join(os.path.basename(str(a)) for a in args[:2]))


# The images

def make_images(session):
    """Fixed, dynamic, differencing and dirty-log images, a damaged one and a
    file that is not VHDX; returns the expected raw disk of each image."""
    d = session.pool_dir
    work = session.path('work')
    expected = {}

    run_root([VHDX_MKIMAGE, '--size', '64M', '--block-size', '1M',
              '--pattern', '0:3M:1', '--pattern', '40M:1M:2',
              '--raw', os.path.join(work, 'base.raw'), os.path.join(d, 'base.vhdx')])
    expected['base.vhdx'] = os.path.join(work, 'base.raw')

    # A differencing image: the base with a few megabytes rewritten.
    with open(expected['base.vhdx'], 'rb') as f:
        data = bytearray(f.read())
    data[2 * MiB:2 * MiB + 1536 * 1024] = os.urandom(1536 * 1024)
    data[50 * MiB:51 * MiB] = os.urandom(MiB)
    modified = os.path.join(work, 'child.raw')
    with open(modified, 'wb') as f:
        f.write(data)
    run_root([VHDX_TOOL, 'convert', '--parent', os.path.join(d, 'base.vhdx'), modified,
              os.path.join(d, 'child.avhdx')])
    expected['child.avhdx'] = modified

    fixed_raw = os.path.join(work, 'fixed.raw')
    with open(fixed_raw, 'wb') as f:
        f.write(os.urandom(4 * MiB) + bytes(8 * MiB) + os.urandom(4 * MiB))
    run_root([VHDX_TOOL, 'convert', '--type=fixed', fixed_raw, os.path.join(d, 'fixed.vhdx')])
    expected['fixed.vhdx'] = fixed_raw

    # A dirty log: QEMU replays it in a copy, and the disk it then reads is
    # the expected one; it must be the generator's.
    dirty = os.path.join(d, 'dirty.vhdx')
    run_root([VHDX_MKIMAGE, '--size', '64M', '--block-size', '1M', '--pattern', '1M:2M:3',
              '--dirty', '--raw', os.path.join(work, 'dirty.raw'), dirty])
    replayed = os.path.join(work, 'dirty-replayed.vhdx')
    shutil.copy(dirty, replayed)
    report = json.loads(run_root(['qemu-img', 'check', '-r', 'all', '--output=json',
                                  '-f', 'vhdx', replayed]).stdout)
    expect_equal((report.get('check-errors'), report.get('corruptions-fixed')), (0, 1),
                 'qemu-img check -r all of dirty.vhdx: (check errors, corruptions fixed)')
    expected['dirty.vhdx'] = os.path.join(work, 'dirty.qemu.raw')
    run_root(['qemu-img', 'convert', '-f', 'vhdx', '-O', 'raw', replayed,
              expected['dirty.vhdx']])
    os.unlink(replayed)
    expect(same_bytes(expected['dirty.vhdx'], os.path.join(work, 'dirty.raw')),
           'QEMU\'s replay of dirty.vhdx differs from the generator\'s disk')

    with open(os.path.join(d, 'notes.img'), 'wb') as f:
        f.write(os.urandom(MiB) + bytes(9 * MiB))
    with open(os.path.join(d, 'broken.vhdx'), 'wb') as f:
        f.write(b'vhdxfile' + bytes(2 * MiB - 8))
    # A checkpoint whose parent is in no pool.
    outside_base = outside_base_path(session)
    shutil.copy(os.path.join(d, 'base.vhdx'), outside_base)
    run_root([VHDX_TOOL, 'convert', '--parent', outside_base, modified,
              os.path.join(d, 'outside.avhdx')])
    expected['outside.avhdx'] = modified

    # Told by content, not by name.
    with open(os.path.join(d, 'raw.vhdx'), 'wb') as f:
        f.write(bytes(MiB))
    shutil.copy(os.path.join(d, 'fixed.vhdx'), os.path.join(d, 'disk-image'))
    expected['disk-image'] = fixed_raw
    for name in os.listdir(d):
        os.chmod(os.path.join(d, name), 0o644)
    return expected


# What make_images() puts in the pool.
POOL_FILES = ['base.vhdx', 'broken.vhdx', 'child.avhdx', 'dirty.vhdx', 'disk-image',
              'fixed.vhdx', 'notes.img', 'outside.avhdx', 'raw.vhdx']


def outside_base_path(session):
    return session.path('work', 'outside-base.vhdx')


def same_bytes(a, b):
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        while True:
            x = fa.read(MiB)
            y = fb.read(MiB)
            if x != y:
                return False
            if not x:
                return True


# Tests

def test_list_json(session, expected):
    result = check_ok(session.tool('list', '--json', POOL), 'list --json')
    volumes = {v['name']: v for v in json.loads(result.stdout)}
    expect_equal(sorted(volumes), POOL_FILES, 'volumes')

    for name, v in volumes.items():
        capacity, allocation = vol_info(session, POOL, name)
        expect_equal(v['libvirt']['capacity'], capacity, '%s: libvirt capacity' % name)
        expect_equal(v['libvirt']['allocation'], allocation, '%s: libvirt allocation' % name)
        expect_equal(v['libvirt']['format'], 'raw', '%s: libvirt format' % name)

    for name in ('base.vhdx', 'child.avhdx', 'dirty.vhdx', 'fixed.vhdx', 'disk-image'):
        v = volumes[name]
        expect(v['vhdx'], '%s: not seen as VHDX' % name)
        expect_equal(v['format'], 'vhdx', '%s: format' % name)
        expect_equal(v['virtual-size'], os.path.getsize(expected[name]),
                     '%s: virtual size' % name)
        expect_equal(v['file-size'], os.path.getsize(os.path.join(session.pool_dir, name)),
                     '%s: file size' % name)
        expect('format' in v['mismatches'], '%s: format mismatch not flagged' % name)
        # libvirt takes the container's size for the disk's.
        expect_equal('capacity' in v['mismatches'],
                     v['libvirt']['capacity'] != v['virtual-size'],
                     '%s: capacity mismatch flag' % name)
        expect('error' not in v, '%s: unexpected error %r' % (name, v.get('error')))

    expect('capacity' in volumes['base.vhdx']['mismatches'], 'base: capacity mismatch')
    expect_equal(volumes['base.vhdx']['disk-type'], 'dynamic', 'base: type')
    expect_equal(volumes['base.vhdx']['allocated-size'], 4 * MiB, 'base: stored bytes')
    expect_equal(volumes['base.vhdx']['log-state'], 'clean', 'base: log')
    expect_equal(volumes['base.vhdx']['parents'], [], 'base: parents')
    expect_equal(volumes['fixed.vhdx']['disk-type'], 'fixed', 'fixed: type')
    expect_equal(volumes['fixed.vhdx']['allocated-size'], 16 * MiB, 'fixed: stored bytes')
    expect_equal(volumes['dirty.vhdx']['log-state'], 'replayed-in-memory', 'dirty: log')
    expect_equal(volumes['dirty.vhdx']['dirty-log'], True, 'dirty: dirty-log')

    child = volumes['child.avhdx']
    expect_equal(child['disk-type'], 'differencing', 'child: type')
    expect_equal(len(child['parents']), 1, 'child: chain length')
    expect_equal(child['parents'][0]['pool'], POOL, 'child: parent pool')
    expect_equal(child['parents'][0]['volume'], 'base.vhdx', 'child: parent volume')
    expect_equal(os.path.realpath(child['parents'][0]['path']),
                 os.path.realpath(os.path.join(session.pool_dir, 'base.vhdx')), 'child: parent')

    outside = volumes['outside.avhdx']['parents']
    expect_equal(len(outside), 1, 'outside.avhdx: chain length')
    expect_equal((outside[0]['pool'], outside[0]['volume']), (None, None),
                 'outside.avhdx: parent in a pool')
    expect_equal(os.path.realpath(outside[0]['path']), os.path.realpath(outside_base_path(session)),
                 'outside.avhdx: parent')

    notes = volumes['notes.img']
    expect(not notes['vhdx'], 'notes.img seen as VHDX')
    expect_equal(notes['format'], 'raw', 'notes.img: format')
    expect_equal(notes['virtual-size'], 10 * MiB, 'notes.img: size')
    expect_equal(notes['mismatches'], [], 'notes.img: mismatches')
    expect(not volumes['raw.vhdx']['vhdx'], 'raw.vhdx seen as VHDX')
    expect_equal(volumes['raw.vhdx']['mismatches'], [], 'raw.vhdx: mismatches')
    expect_equal(volumes['disk-image']['disk-type'], 'fixed', 'disk-image: type')

    broken = volumes['broken.vhdx']
    expect(broken['vhdx'], 'broken.vhdx: not seen as VHDX')
    # Both headers are zeros: the reason is that neither has its signature.
    expect_equal(broken.get('error'),
                 'No valid header: '
                 'header 1 at offset 65536: expected signature \u201chead\u201d, found 0x00000000; '
                 'header 2 at offset 131072: expected signature \u201chead\u201d, found 0x00000000',
                 'broken.vhdx: error')
    expect_equal(broken['mismatches'], ['format'], 'broken.vhdx: mismatches')


def test_list_text(session, expected):
    result = check_ok(session.tool('list', POOL), 'list')
    lines = result.stdout.decode().splitlines()
    rows = {line.split()[0]: line for line in lines[2:] if line and not line.startswith('*')}
    expect('libvirt says' in lines[0], 'no group heading in %r' % lines[0])
    expect(lines[1].startswith('Name'), 'no header in %r' % lines[1])
    expect_equal(sorted(rows), ['base.vhdx', 'broken.vhdx', 'child.avhdx', 'dirty.vhdx',
                                'disk-image', 'fixed.vhdx', 'notes.img', 'outside.avhdx',
                                'raw.vhdx'], 'rows')
    expect('outside-base.vhdx (in no pool)' in rows['outside.avhdx'],
           'outside row: %r' % rows['outside.avhdx'])
    expect('raw*' in rows['base.vhdx'] and '64.00 MiB' in rows['base.vhdx'],
           'base.vhdx row: %r' % rows['base.vhdx'])
    expect('%s/base.vhdx' % POOL in rows['child.avhdx'], 'child row: %r' % rows['child.avhdx'])
    expect('dirty' in rows['dirty.vhdx'].split(), 'dirty row: %r' % rows['dirty.vhdx'])
    expect('error:' in rows['broken.vhdx'], 'broken row: %r' % rows['broken.vhdx'])
    expect('*' not in rows['notes.img'], 'notes.img row: %r' % rows['notes.img'])
    # Aligned: the libvirt format column starts at the same place in each row.
    header = lines[1]
    column = header.index('Format')
    for name, row in rows.items():
        expect(row[column - 2:column] == '  ' and row[column] != ' ',
               'row %s is not aligned with the header' % name)


def test_errors(session, expected):
    # "--help", "help" and "help --help" print the same text; "help list" is "list --help".
    helps = [session.tool(*args) for args in (['--help'], ['help'], ['help', '--help'])]
    for args, result in zip(('--help', 'help', 'help --help'), helps):
        expect(result.returncode == 0 and b'list' in result.stdout,
               '%s: status %d, %r' % (args, result.returncode, result.stderr))
        expect(result.stdout == helps[0].stdout, '%s differs from --help' % args)
    expect(session.tool('help', 'list').stdout == session.tool('list', '--help').stdout,
           'help list differs from list --help')

    line = expect_one_error_line(session.tool('list', 'no-such-pool'), 'missing pool')
    expect('no-such-pool' in line, 'missing pool: %r' % line)

    missing_socket = session.path('no-such-dir', 'sock')
    line = expect_one_error_line(
        session.run([session.pool_tool, '-c', 'qemu+unix:///session?socket=' + missing_socket,
                     'list', POOL]), 'unreachable libvirt')
    expect('cannot connect' in line, 'unreachable libvirt: %r' % line)

    # A socket that the user may not open.
    closed = session.path('closed')
    os.mkdir(closed)
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(os.path.join(closed, 'sock'))
        server.listen(1)
        os.chmod(closed, 0)
        line = expect_one_error_line(
            session.run([session.pool_tool, '-c',
                         'qemu+unix:///session?socket=' + os.path.join(closed, 'sock'),
                         'list', POOL]), 'permission denied')
        expect('ermission denied' in line, 'permission denied: %r' % line)
    finally:
        server.close()
        os.chmod(closed, 0o755)

    line = expect_one_error_line(
        session.tool('import', '--pool', 'no-such-pool',
                     os.path.join(session.pool_dir, 'base.vhdx')), 'import into missing pool')
    expect('no-such-pool' in line, 'import into missing pool: %r' % line)
    line = expect_one_error_line(
        session.tool('import', '--pool', POOL, '--name', 'notes.img',
                     os.path.join(session.pool_dir, 'base.vhdx')), 'import over a volume')
    expect('notes.img' in line, 'import over a volume: %r' % line)
    line = expect_one_error_line(
        session.tool('import', '--pool', POOL, os.path.join(session.pool_dir, 'broken.vhdx')),
        'import of a damaged image')


def read_index(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stop(process, what):
    process.send_signal(signal.SIGTERM)
    try:
        status = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError('%s did not stop on SIGTERM' % what)
    return status


def test_watch(session, expected):
    index_dir = session.path('index')
    index = os.path.join(index_dir, POOL + '.json')
    watch = session.popen([session.pool_tool, '-c', URI, 'watch', '--index-dir', index_dir,
                           POOL])
    try:
        first = wait_for(lambda: read_index(index), 'the first index')
        expect_equal(first['pool'], POOL, 'index: pool')
        expect_equal(first['state'], 'active', 'index: state')
        names = sorted(v['name'] for v in first['volumes'])
        expect_equal(sorted(os.listdir(session.pool_dir)), POOL_FILES, 'files in the pool')
        expect_equal(names, POOL_FILES, 'index volumes')

        # A refresh through libvirt rewrites the index.
        session.virsh('pool-refresh', POOL)
        wait_for(lambda: (read_index(index) or first)['updated'] != first['updated'],
                 'the index after pool-refresh')

        # So does a new file in the pool's directory.
        added = os.path.join(session.pool_dir, 'added.vhdx')
        check_ok(session.run(['cp', os.path.join(session.pool_dir, 'base.vhdx'),
                              added + '.tmp']), 'cp')
        check_ok(session.run(['mv', added + '.tmp', added]), 'mv')

        def added_volume():
            data = read_index(index)
            for v in (data or {}).get('volumes', []):
                if v['name'] == 'added.vhdx':
                    return v
            return None

        v = wait_for(added_volume, 'added.vhdx in the index')
        expect(v['vhdx'] and v['virtual-size'] == 64 * MiB, 'added.vhdx: %r' % v)

        # libvirtd goes away and comes back: the watcher connects again.
        pid = session.daemon_pid()
        session.kill_daemon()
        before = read_index(index)['updated']
        wait_for(lambda: session.daemon_pid() not in (None, pid) or
                 b'lost the connection' in peek_stderr(watch),
                 'the watcher to notice')
        os.unlink(added)
        session.virsh('pool-refresh', POOL)

        def without_added():
            data = read_index(index)
            return data is not None and data['updated'] != before and \
                'added.vhdx' not in [v['name'] for v in data['volumes']]

        wait_for(without_added, 'the index after libvirtd restarted')
        expect(watch.poll() is None, 'the watcher exited')
    finally:
        status = stop(watch, 'watch')
    stderr = watch_stderr.get(watch, b'') + watch.stderr.read()
    expect_equal(status, 0, 'watch exit status (stderr %r)' % stderr)
    expect(b'connected again' in stderr, 'watch did not report reconnecting: %r' % stderr)

    # The default index is in $XDG_STATE_HOME/vhdx-pool.
    default_index = os.path.join(session.env['XDG_STATE_HOME'], 'vhdx-pool', POOL + '.json')
    watch = session.popen([session.pool_tool, '-c', URI, 'watch', POOL])
    try:
        wait_for(lambda: read_index(default_index), 'the index in XDG_STATE_HOME')
    finally:
        expect_equal(stop(watch, 'watch'), 0, 'watch exit status')

    expect_one_error_line(session.tool('watch', '--index-dir', index_dir, 'no-such-pool'),
                          'watch of a missing pool')


watch_stderr = {}


def peek_stderr(process):
    """What @process wrote to stderr so far, without blocking."""
    data = watch_stderr.get(process, b'')
    fd = process.stderr.fileno()
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    watch_stderr[process] = data
    return data


def qemu_raw(session, image):
    out = session.path('work', os.path.basename(image) + '.qemu.raw')
    run_root(['qemu-img', 'convert', '-f', 'vhdx', '-O', 'raw', image, out])
    return out


def test_import(session, expected):
    base = os.path.join(session.pool_dir, 'base.vhdx')
    fixed = os.path.join(session.pool_dir, 'fixed.vhdx')

    check_ok(session.tool('import', '--pool', POOL, base), 'import raw')
    capacity, allocation = vol_info(session, POOL, 'base.raw')
    expect_equal(capacity, 64 * MiB, 'base.raw capacity')
    # Sent as a sparse stream: the holes stay holes.
    expect(allocation < 16 * MiB, 'base.raw is not sparse: %d bytes allocated' % allocation)
    expect(same_bytes(os.path.join(session.pool_dir, 'base.raw'), qemu_raw(session, base)),
           'base.raw differs from qemu-img convert of base.vhdx')

    check_ok(session.tool('import', '--pool', POOL, '--format', 'qcow2', '--name',
                          'fixed-copy.qcow2', fixed), 'import qcow2')
    volume = os.path.join(session.pool_dir, 'fixed-copy.qcow2')
    info = json.loads(run_root(['qemu-img', 'info', '--output=json', volume]).stdout)
    expect_equal(info['format'], 'qcow2', 'fixed-copy.qcow2 format')
    expect_equal(info['virtual-size'], 16 * MiB, 'fixed-copy.qcow2 virtual size')
    run_root(['qemu-img', 'compare', '-f', 'qcow2', '-F', 'raw', volume,
              qemu_raw(session, fixed)])

    # Images that QEMU cannot open: compared with the expected disks.
    check_ok(session.tool('import', '--pool', POOL, '--format', 'qcow2',
                          os.path.join(session.pool_dir, 'child.avhdx')), 'import child')
    run_root(['qemu-img', 'compare', '-f', 'qcow2', '-F', 'raw',
              os.path.join(session.pool_dir, 'child.qcow2'), expected['child.avhdx']])
    check_ok(session.tool('import', '--pool', POOL,
                          os.path.join(session.pool_dir, 'dirty.vhdx')), 'import dirty')
    expect(same_bytes(os.path.join(session.pool_dir, 'dirty.raw'), expected['dirty.vhdx']),
           'dirty.raw differs from the expected disk')

    # No temporary volume is left behind.
    names = session.virsh('vol-list', POOL).stdout.decode()
    expect('upload-' not in names and 'check-' not in names, 'temporary volumes: %s' % names)


def fuse_unavailable():
    if not os.path.exists('/dev/fuse'):
        return '/dev/fuse is absent'
    if shutil.which('fusermount3') is None:
        return 'fusermount3 is not installed'
    return None


def start_expose(session, src, mnt, *options):
    """vhdx-pool expose of @src on @mnt, once it says it is ready: the
    process and its first line."""
    expose = session.popen([session.pool_tool, '-c', URI, 'expose'] + list(options) + [src, mnt])
    ready = select.select([expose.stdout], [], [], WAIT_SECONDS)[0]
    if not ready or expose.poll() is not None:
        if expose.poll() is None:
            stop(expose, 'expose')
        expose.wait(timeout=10)
        stderr = expose.stderr.read().decode(errors='replace')
        if 'fuse' in stderr.lower() or 'mount' in stderr.lower():
            raise Skip('FUSE mounts are not permitted here: %s' % stderr.strip())
        raise AssertionError('expose did not start: %s' % stderr)
    return expose, expose.stdout.readline().decode()


def test_expose(session, expected):
    reason = fuse_unavailable()
    if reason:
        raise Skip(reason)
    src = session.path('src')
    mnt = session.path('mnt')
    for name in ('base.vhdx', 'child.avhdx', 'dirty.vhdx', 'fixed.vhdx', 'notes.img'):
        check_ok(session.run(['cp', os.path.join(session.pool_dir, name), src]), 'cp')

    expose, line = start_expose(session, src, mnt, '--define-pool', EXPOSE_POOL)
    try:
        expect(EXPOSE_POOL in line, 'expose said %r' % line)

        names = session.virsh('vol-list', EXPOSE_POOL).stdout.decode().split()
        for name in ('base.raw', 'child.raw', 'dirty.raw', 'fixed.raw'):
            expect(name in names, '%s not in %r' % (name, names))
        expect('notes.img' not in names and 'notes.raw' not in names, 'notes.img exposed')

        capacity, allocation = vol_info(session, EXPOSE_POOL, 'base.raw')
        expect_equal(capacity, 64 * MiB, 'exposed base.raw capacity')
        expect_equal(allocation, 4 * MiB, 'exposed base.raw allocation')
        capacity, _ = vol_info(session, EXPOSE_POOL, 'fixed.raw')
        expect_equal(capacity, 16 * MiB, 'exposed fixed.raw capacity')

        # A FUSE mount is its owner's alone, so the comparisons run as the
        # session's user.
        check_ok(session.run(['qemu-img', 'compare', '-f', 'raw', '-F', 'vhdx',
                              os.path.join(mnt, 'base.raw'), os.path.join(src, 'base.vhdx')]),
                 'qemu-img compare base.raw')
        check_ok(session.run(['qemu-img', 'compare', '-f', 'raw', '-F', 'vhdx',
                              os.path.join(mnt, 'fixed.raw'),
                              os.path.join(src, 'fixed.vhdx')]), 'qemu-img compare fixed.raw')
        for name, image in (('child.raw', 'child.avhdx'), ('dirty.raw', 'dirty.vhdx')):
            check_ok(session.run(['qemu-img', 'compare', '-f', 'raw', '-F', 'raw',
                                  os.path.join(mnt, name), expected[image]]),
                     'qemu-img compare ' + name)
        # SEEK_DATA and SEEK_HOLE come from the image's extents.
        result = check_ok(session.run(['qemu-img', 'map', '-f', 'raw', '--output=json',
                                       os.path.join(mnt, 'base.raw')]), 'qemu-img map')
        data = [(e['start'], e['length']) for e in json.loads(result.stdout) if e['data']]
        expect_equal(data, [(0, 3 * MiB), (40 * MiB, MiB)], 'data ranges of base.raw')

        # A new image appears when the pool is refreshed.
        check_ok(session.run(['cp', os.path.join(src, 'base.vhdx'),
                              os.path.join(src, 'later.vhdx')]), 'cp')
        session.virsh('pool-refresh', EXPOSE_POOL)
        capacity, _ = vol_info(session, EXPOSE_POOL, 'later.raw')
        expect_equal(capacity, 64 * MiB, 'exposed later.raw capacity')
    finally:
        status = stop(expose, 'expose')
    stderr = expose.stderr.read().decode(errors='replace')
    expect_equal(status, 0, 'expose exit status (stderr %r)' % stderr)
    with open('/proc/self/mounts') as f:
        expect(mnt not in f.read(), '%s is still mounted' % mnt)
    # The pool was defined by expose, so it is gone with the mount.
    pools = session.virsh('pool-list', '--all', '--name').stdout.decode().split()
    expect(EXPOSE_POOL not in pools, 'pool %s is left: %r' % (EXPOSE_POOL, pools))


def test_missing_parents_and_fifos(session, expected):
    """A checkpoint copied without its parent is a differencing volume whose
    parent is missing, not an error; a FIFO in the pool, and a checkpoint
    whose locator leads to it, stop nothing.  The files are removed after."""
    d = session.pool_dir
    work = session.path('work')
    base = os.path.join(work, 'gone-base.vhdx')
    shutil.copy(os.path.join(d, 'base.vhdx'), base)
    orphan = os.path.join(d, 'orphan.avhdx')
    fifo_parent = os.path.join(d, 'fifo-parent.avhdx')
    fifo = os.path.join(d, 'pipe.vhdx')
    run_root([VHDX_TOOL, 'convert', '--parent', base, expected['child.avhdx'], orphan])
    shutil.copy(os.path.join(d, 'base.vhdx'), os.path.join(d, 'pipe-base.vhdx'))
    run_root([VHDX_TOOL, 'convert', '--parent', os.path.join(d, 'pipe-base.vhdx'),
              expected['child.avhdx'], fifo_parent])
    os.unlink(os.path.join(d, 'pipe-base.vhdx'))
    os.unlink(base)
    # The checkpoint's locator leads to the FIFO, under the name it looks for.
    os.mkfifo(os.path.join(d, 'pipe-base.vhdx'))
    os.mkfifo(fifo)
    for path in (orphan, fifo_parent, fifo, os.path.join(d, 'pipe-base.vhdx')):
        os.chmod(path, 0o644)
        os.lchown(path, NOBODY, NOBODY) if session.as_nobody else None
    try:
        result = check_ok(session.tool('list', '--json', POOL), 'list --json')
        volumes = {v['name']: v for v in json.loads(result.stdout)}
        # Named as the locator's relative_path names them, from the pool directory.
        for name, link in (('orphan.avhdx', '..\\work\\gone-base.vhdx'),
                           ('fifo-parent.avhdx', 'pipe-base.vhdx')):
            v = volumes[name]
            expect('error' not in v, '%s: an error %r' % (name, v.get('error')))
            expect_equal(v['disk-type'], 'differencing', '%s: disk type' % name)
            expect_equal(v['parents'], [{'path': link, 'pool': None, 'volume': None,
                                         'missing': True}], '%s: parents' % name)
        for name in ('pipe.vhdx', 'pipe-base.vhdx'):
            if name in volumes:
                expect(not volumes[name]['vhdx'] and 'error' not in volumes[name],
                       '%s: %r' % (name, volumes[name]))
        text = check_ok(session.tool('list', POOL), 'list').stdout.decode()
        row = [line for line in text.splitlines() if line.startswith('orphan.avhdx')]
        expect(len(row) == 1 and 'missing: ..\\work\\gone-base.vhdx' in row[0],
               'orphan.avhdx row: %r' % row)
    finally:
        for path in (orphan, fifo_parent, fifo, os.path.join(d, 'pipe-base.vhdx')):
            os.unlink(path)
        session.virsh('pool-refresh', POOL)


def test_in_use(session, expected):
    """The image of a running guest is listed as in use, and exposed raw
    files are not read while it is written, nor written while read."""
    if shutil.which('qemu-nbd') is None:
        raise Skip('qemu-nbd is not installed: it plays the guest')
    image = os.path.join(session.pool_dir, 'base.vhdx')
    guest = QemuNbd(session.run, session.path('qemu-nbd.sock'), image)
    check_ok(guest.result, 'qemu-nbd on base.vhdx')
    try:
        result = check_ok(session.tool('list', '--json', POOL), 'list --json')
        volumes = {v['name']: v for v in json.loads(result.stdout)}
        expect_equal(volumes['base.vhdx'].get('in-use'), True, 'base.vhdx: in-use')
        expect_equal(volumes['fixed.vhdx'].get('in-use'), False, 'fixed.vhdx: in-use')
        expect('error' not in volumes['base.vhdx'], 'base.vhdx: %r' % volumes['base.vhdx'])
        expect_equal(volumes['child.avhdx']['parents'][0]['volume'], 'base.vhdx',
                     'child of an image in use: parent')
        rows = check_ok(session.tool('list', POOL), 'list').stdout.decode().splitlines()
        row = next(r for r in rows if r.startswith('base.vhdx '))
        expect('in use' in row, 'base.vhdx row: %r' % row)
    finally:
        guest.stop()

    reason = fuse_unavailable()
    if reason:
        raise Skip(reason)
    src = session.path('src-in-use')
    mnt = session.path('mnt-in-use')
    for d in (src, mnt):
        check_ok(session.run(['mkdir', '-p', d]), 'mkdir')
    check_ok(session.run(['cp', image, src]), 'cp')
    source = os.path.join(src, 'base.vhdx')
    raw = os.path.join(mnt, 'base.raw')
    expose, _ = start_expose(session, src, mnt)
    try:
        # Listed without a lock: the guest starts while the image is exposed.
        check_ok(session.run(['ls', '-l', mnt]), 'ls of the mount')
        guest = QemuNbd(session.run, session.path('qemu-nbd.sock'), source)
        check_ok(guest.result, 'qemu-nbd on an exposed image')
        try:
            result = session.run(['head', '-c', '512', raw])
            expect(result.returncode != 0, 'the raw file of an image in use was read')
            expect(b'busy' in result.stderr.lower(), 'no EBUSY: %r' % result.stderr)
            check_ok(session.run(['ls', '-l', raw]), 'ls of the raw file of an image in use')
        finally:
            guest.stop()
        # An open raw file keeps writers out until it is closed.
        reader = session.popen(['sh', '-c', 'exec 3<"$0" && echo open && exec sleep 60', raw])
        try:
            expect(select.select([reader.stdout], [], [], WAIT_SECONDS)[0], 'no reader')
            expect_equal(reader.stdout.readline(), b'open\n', 'the reader opened the file')
            guest = QemuNbd(session.run, session.path('qemu-nbd.sock'), source)
            expect(not guest.started, 'qemu-nbd wrote an image whose raw file is open')
            expect(b'lock' in guest.result.stderr, 'qemu-nbd: %r' % guest.result.stderr)
            guest.stop()
        finally:
            reader.kill()
            reader.wait()
        guest = QemuNbd(session.run, session.path('qemu-nbd.sock'), source)
        check_ok(guest.result, 'qemu-nbd once the raw file is closed')
        guest.stop()
    finally:
        status = stop(expose, 'expose')
    expect_equal(status, 0, 'expose exit status')


def test_resize_and_merge(session, expected):
    """resize and merge change a volume in place and refresh the pool: list
    shows the new size at once, and the merged checkpoint is gone."""
    d = session.pool_dir
    work = session.path('work')
    grow = os.path.join(d, 'grow.vhdx')
    run_root(['qemu-img', 'create', '-q', '-f', 'vhdx', grow, '64M'])
    run_root(['qemu-io', '-f', 'vhdx', '-c', 'write -P 0x5a 1M 64K', grow])
    base = os.path.join(d, 'm-base.vhdx')
    run_root(['qemu-img', 'create', '-q', '-f', 'vhdx', base, '64M'])
    run_root(['qemu-io', '-f', 'vhdx', '-c', 'write -P 0x61 0 4M', base])
    child_raw = os.path.join(work, 'm-child.raw')
    run_root(['qemu-img', 'convert', '-f', 'vhdx', '-O', 'raw', base, child_raw])
    with open(child_raw, 'r+b') as f:
        f.seek(3 * MiB)
        f.write(b'\x62' * MiB)
        f.seek(60 * MiB)
        f.write(b'\x63' * 4096)
    child = os.path.join(d, 'm-child.avhdx')
    run_root([VHDX_TOOL, 'convert', '--parent', base, child_raw, child])
    for path in (grow, base, child):
        if session.as_nobody:
            os.chown(path, NOBODY, NOBODY)
    session.virsh('pool-refresh', POOL)

    def listed():
        result = check_ok(session.tool('list', '--json', POOL), 'list --json')
        return {v['name']: v for v in json.loads(result.stdout)}

    before = listed()
    expect_equal(before['grow.vhdx']['virtual-size'], 64 * MiB, 'grow.vhdx before')
    result = check_ok(session.tool('resize', '--pool', POOL, 'grow.vhdx', '+64M'), 'resize')
    expect(b'grow.vhdx: 128' in result.stdout, 'resize says the new size: %r' % result.stdout)
    expect_equal(listed()['grow.vhdx']['virtual-size'], 128 * MiB,
                 'grow.vhdx in list after resize')
    info = json.loads(run_root(['qemu-img', 'info', '--output=json', grow]).stdout)
    expect_equal(info['virtual-size'], 128 * MiB, 'qemu-img: grow.vhdx')
    run_root(['qemu-io', '-f', 'vhdx', '-c', 'read -P 0x5a 1M 64K', grow])
    # A shrink over data is refused, and changes nothing.
    result = session.tool('resize', '--pool', POOL, 'grow.vhdx', '-127M')
    expect_equal(result.returncode, 1, 'a shrink over data is refused')
    expect_equal(listed()['grow.vhdx']['virtual-size'], 128 * MiB, 'grow.vhdx kept')

    check_ok(session.tool('merge', '--pool', POOL, '--delete-merged', 'm-child.avhdx'),
             'merge')
    after = listed()
    expect('m-child.avhdx' not in after, 'the merged checkpoint is still listed')
    names = session.virsh('vol-list', POOL).stdout.decode()
    expect('m-child.avhdx' not in names, 'libvirt still lists the checkpoint: %s' % names)
    run_root(['qemu-img', 'compare', '-f', 'vhdx', '-F', 'raw', base, child_raw])
    run_root(['qemu-img', 'check', '-f', 'vhdx', base])
    for path in (grow, base):
        os.unlink(path)
    session.virsh('pool-refresh', POOL)


TESTS = [
    ('list --json reports the real sizes and flags libvirt\'s', test_list_json),
    ('list prints an aligned table', test_list_text),
    ('errors are one line and exit status 1', test_errors),
    ('missing parents and FIFOs are no errors', test_missing_parents_and_fifos),
    ('watch rewrites the index on refresh, new files and libvirtd restarts', test_watch),
    ('import makes raw and qcow2 volumes with the virtual disk', test_import),
    ('expose shows the images as raw files to libvirt', test_expose),
    ('an image in use is listed as such, and exposed files lock it', test_in_use),
    ('resize and merge change volumes in place and refresh the pool', test_resize_and_merge),
]


def start_session():
    missing = [p for p in ('virsh', 'qemu-img') if shutil.which(p) is None]
    if not os.path.exists('/usr/sbin/libvirtd') and shutil.which('libvirtd') is None:
        missing.append('libvirtd')
    if missing:
        raise Skip('not installed: %s' % ', '.join(missing))
    if os.geteuid() == 0 and shutil.which('setpriv') is None:
        raise Skip('setpriv is needed to run libvirt as nobody')
    session = Session()
    try:
        expected = make_images(session)
        session.give_away()
        result = session.virsh('pool-define-as', POOL, 'dir', '--target', session.pool_dir,
                               check=False)
        if result.returncode != 0:
            raise Skip('the libvirt session daemon cannot be started: %s' %
                       result.stderr.decode(errors='replace').strip())
        session.virsh('pool-start', POOL)
    except BaseException:
        session.close()
        raise
    return session, expected


def main():
    for name in ('VHDX_POOL', 'VHDX_TOOL', 'VHDX_MKIMAGE'):
        if not os.environ.get(name):
            print('Bail out! %s is not set' % name)
            return 1
    try:
        session, expected = start_session()
    except Skip as skip:
        print('1..0 # SKIP %s' % skip)
        return 0

    failed = 0
    try:
        print('1..%d' % len(TESTS))
        for number, (description, func) in enumerate(TESTS, 1):
            try:
                func(session, expected)
                print('ok %d - %s' % (number, description))
            except Skip as skip:
                print('ok %d - %s # SKIP %s' % (number, description, skip))
            except Exception:
                failed += 1
                print('not ok %d - %s' % (number, description))
                for line in traceback.format_exc().splitlines():
                    print('# ' + line)
            sys.stdout.flush()
    finally:
        session.close()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
