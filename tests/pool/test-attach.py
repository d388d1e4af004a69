#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# End-to-end tests of `vhdx-pool attach` and `detach` against a real libvirt
# session daemon (as nobody when run as root), printed as TAP.
#
# The oracles are independent of vhdx-pool: libvirt itself (it must accept
# the disk's XML and list the disk), libguestfs with its libvirt backend,
# whose appliance is a libvirt domain of the session that opens the
# attached NBD disk, QEMU's image locks, `qemu-img`
# reading the image afterwards, libvhdi (vhdi-cat) reading a differencing
# image that QEMU cannot, and e2fsprogs' debugfs reading the file system
# the guest made.  (libguestfs reads the same socket as the domain: its
# `-d DOMAIN` does not take an NBD disk on a UNIX socket.)
#
# Environment: VHDX_POOL, VHDX_TOOL, VHDX_NBDKIT_PLUGIN, VHDX_VHDI_CAT,
# VHDX_SHARED_DIR.

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'common'))
from libvirtsession import NOBODY, Session  # noqa: E402
import bootdisk  # noqa: E402
import clitest  # noqa: E402

MiB = 1024 * 1024
DOMAIN = 'vhdxattach'
GUESTFS_URI = 'libvirt:qemu:///session'

VHDX_TOOL = os.environ.get('VHDX_TOOL')
PLUGIN = os.environ.get('VHDX_NBDKIT_PLUGIN')
VHDI_CAT = os.environ.get('VHDX_VHDI_CAT')
UNIT = os.environ.get('VHDX_NBD_UNIT')


class Skip(Exception):
    pass


clitest.Skip = Skip


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def expect_equal(found, expected, what):
    if found != expected:
        raise AssertionError('%s: expected %r, found %r' % (what, expected, found))


def check_ok(result, what):
    if result.returncode != 0:
        raise AssertionError('%s exited with %d: %s%s' % (
            what, result.returncode, (result.stdout or b'').decode(errors='replace'),
            (result.stderr or b'').decode(errors='replace')))
    return result


def run_root(args, **kwargs):
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=600, **kwargs)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(4 * MiB), b''):
            digest.update(chunk)
    return digest.hexdigest()


def debugfs_cat(raw, path):
    debugfs = shutil.which('debugfs') or '/usr/sbin/debugfs'
    return check_ok(run_root([debugfs, '-R', 'cat %s' % path, raw]), 'debugfs').stdout


class AttachTests:
    def __init__(self, session):
        self.session = session
        self.work = session.path('work')
        self.images = session.path('images')

    def image(self, name):
        return os.path.join(self.images, name)

    def tool(self, *args):
        return self.session.tool(*args)

    def give(self, path):
        if self.session.as_nobody:
            os.chown(path, NOBODY, NOBODY)

    def socket_dir(self):
        return os.path.join(self.session.runtime, 'vhdx')

    def domblklist(self):
        out = self.session.virsh('domblklist', '--details', DOMAIN).stdout.decode()
        return [line.split() for line in out.splitlines() if line.strip()]

    def dumpxml(self):
        return self.session.virsh('dumpxml', '--inactive', DOMAIN).stdout.decode()

    def guestfish(self, socket, *commands):
        """guestfish on the NBD disk that the domain has, at @socket, read-
        write, its appliance a domain of the session (libvirt backend).
        (libguestfs 1.48's `-d DOMAIN` takes no NBD disk on a UNIX socket.)"""
        args = ['guestfish', '--rw', '--format=raw', '-a', 'nbd://?socket=' + socket, '--',
                'run']
        for command in commands:
            args += [':'] + command.split(' ')
        self.session.env['LIBGUESTFS_BACKEND'] = GUESTFS_URI
        self.session.env['LIBGUESTFS_BACKEND_SETTINGS'] = 'force_tcg'
        cache = self.session.path('guestfs-cache')
        if not os.path.isdir(cache):
            os.mkdir(cache)
            self.give(cache)
        self.session.env['LIBGUESTFS_CACHEDIR'] = cache
        try:
            return check_ok(self.session.run(args, timeout=1200), 'guestfish -d')
        finally:
            for name in ('LIBGUESTFS_BACKEND', 'LIBGUESTFS_BACKEND_SETTINGS',
                         'LIBGUESTFS_CACHEDIR'):
                del self.session.env[name]

    def server_pids(self):
        out = run_root(['pgrep', '-f', 'nbdkit.*' + re.escape(self.socket_dir())]).stdout
        return [int(p) for p in out.split()]

    def attached_server(self, path):
        """The socket of @path's server, checked: the user's alone, and the
        image locked by it as a writer (QEMU cannot open it)."""
        listed = [row for row in self.domblklist() if row[:2] == ['network', 'disk']]
        expect(len(listed) == 1, 'virsh domblklist: %r' % self.domblklist())
        sockets = [n for n in os.listdir(self.socket_dir()) if n.endswith('.sock')]
        expect_equal(len(sockets), 1, 'sockets in $XDG_RUNTIME_DIR/vhdx')
        socket = os.path.join(self.socket_dir(), sockets[0])
        expect("socket='%s'" % socket in self.dumpxml(), 'the socket in the domain\'s XML')
        mode = os.stat(socket)
        expect(stat.S_ISSOCK(mode.st_mode), '%s is not a socket' % socket)
        expect_equal(stat.S_IMODE(os.stat(self.socket_dir()).st_mode), 0o700,
                     'mode of the socket directory')
        if self.session.as_nobody:
            expect_equal(mode.st_uid, NOBODY, 'owner of the socket')
        locked = run_root(['qemu-io', '-f', 'vhdx', '-c', 'read 0 512', path])
        expect(locked.returncode != 0 and b'lock' in locked.stderr,
               'QEMU opened an image being served: %r' % locked.stderr)
        return socket

    def detach_and_check(self, path, target='vda'):
        result = check_ok(self.tool('detach', '--config', DOMAIN, path), 'vhdx-pool detach')
        out = result.stdout.decode()
        expect('Detached %s' % target in out and 'Stopped the NBD server' in out,
               'detach said: %s' % out)
        expect_equal([row for row in self.domblklist() if row[0] == 'network'], [],
                     'network disks left')
        expect_equal(self.server_pids(), [], 'servers left running')
        expect_equal([n for n in os.listdir(self.socket_dir()) if n.endswith('.sock')], [],
                     'sockets left')
        check_ok(run_root([VHDX_TOOL, 'check', path]), 'vhdx check after detach')

    def reset(self):
        """The domain as the test defined it, without disks, and no server."""
        for pid in self.server_pids():
            os.kill(pid, 9)
        for row in self.domblklist():
            if row[0] == 'network':
                self.session.virsh('detach-disk', DOMAIN, row[2], '--config', check=False)
        for name in os.listdir(self.socket_dir()) if os.path.isdir(self.socket_dir()) else []:
            os.unlink(os.path.join(self.socket_dir(), name))

    def test_dry_run(self):
        """The disk's XML shown, then given to libvirt as is: it takes it."""
        path = self.image('dry.vhdx')
        check_ok(run_root(['qemu-img', 'create', '-q', '-f', 'vhdx', path, '64M']),
                 'qemu-img create')
        fourk = self.image('dry-4k.vhdx')
        check_ok(run_root([VHDX_TOOL, 'create', '--logical-sector-size=4096', fourk, '64M']),
                 'vhdx create 4K')
        self.give(path)
        self.give(fourk)
        result = check_ok(self.tool('attach', '--dry-run', DOMAIN, path), 'attach --dry-run')
        xml = result.stdout.decode()
        expect("<target dev='vda' bus='virtio'/>" in xml, 'first free target: %s' % xml)
        expect("<blockio" not in xml and '<readonly/>' not in xml, xml)
        expect_equal(self.server_pids(), [], 'a server started by --dry-run')
        socket = re.search(r"socket='([^']+)'", xml).group(1)
        expect(socket.startswith(self.socket_dir() + '/'), 'socket %s' % socket)
        xml_file = self.session.path('work', 'disk.xml')
        with open(xml_file, 'w') as f:
            f.write(xml[:xml.index('</disk>') + len('</disk>')])
        self.give(xml_file)
        self.session.virsh('attach-device', DOMAIN, xml_file, '--config')
        expect_equal([r[:3] for r in self.domblklist() if r[0] == 'network'],
                     [['network', 'disk', 'vda']], 'domblklist after attach-device')
        expect("socket='%s'" % socket in self.dumpxml(), 'the socket in the domain\'s XML')
        result = check_ok(self.tool('attach', '--dry-run', '--read-only', DOMAIN, fourk),
                          'attach --dry-run of a 4K-sector image')
        xml = result.stdout.decode()
        expect("<target dev='vdb' bus='virtio'/>" in xml and '<readonly/>' in xml and
               "logical_block_size='4096'" in xml, xml)
        self.session.virsh('detach-device', DOMAIN, xml_file, '--config')

    def test_libguestfs_writes_dynamic(self):
        """libguestfs' appliance, a libvirt domain, makes a file system on an
        attached dynamic image made by QEMU."""
        path = self.image('dynamic.vhdx')
        check_ok(run_root(['qemu-img', 'create', '-q', '-f', 'vhdx', path, '128M']),
                 'qemu-img create')
        self.give(path)
        result = check_ok(self.tool('attach', '--config', DOMAIN, path), 'vhdx-pool attach')
        expect('as vda' in result.stdout.decode(), result.stdout.decode())
        socket = self.attached_server(path)
        self.guestfish(socket, 'mke2fs /dev/sda fstype:ext4 discard:false', 'mount /dev/sda /',
                       'write /hello.txt hello-from-libvirt', 'umount-all')
        self.detach_and_check(path)
        check_ok(run_root(['qemu-img', 'check', '-f', 'vhdx', path]), 'qemu-img check')
        raw = os.path.join(self.work, 'dynamic.raw')
        check_ok(run_root(['qemu-img', 'convert', '-f', 'vhdx', '-O', 'raw', path, raw]),
                 'qemu-img convert')
        expect_equal(debugfs_cat(raw, '/hello.txt'), b'hello-from-libvirt',
                     'the file QEMU reads back')

    def test_libguestfs_writes_checkpoint(self):
        """A checkpoint child of the Hyper-V sample attached: the guest's
        file system lands in the child, the parent is untouched."""
        parent = self.image('hyperv.vhdx')
        digest = clitest.sample('iotest-dynamic-1G.vhdx.bz2', parent)
        before = sha256(parent)
        child = self.image('hyperv_6D2B0C51.avhdx')
        check_ok(run_root([VHDX_TOOL, 'create', '--parent', parent, child]), 'vhdx create')
        self.give(parent)
        self.give(child)
        check_ok(self.tool('attach', '--config', DOMAIN, child), 'vhdx-pool attach')
        socket = self.attached_server(child)
        self.guestfish(socket, 'mke2fs /dev/sda fstype:ext4 discard:false', 'mount /dev/sda /',
                       'write /checkpoint.txt written-into-a-checkpoint', 'umount-all')
        self.detach_and_check(child)
        expect_equal(sha256(parent), before, 'sha256 of the parent file')
        raw = os.path.join(self.work, 'child.raw')
        with open(raw, 'wb') as out:
            check_ok(subprocess.run([VHDI_CAT, child, parent], stdout=out,
                                    stderr=subprocess.PIPE, timeout=600), 'vhdi-cat')
        expect_equal(debugfs_cat(raw, '/checkpoint.txt'), b'written-into-a-checkpoint',
                     'the file libvhdi reads back')
        # The parent's disk is still the sample's.
        expect_equal(hashlib.sha256(check_ok(run_root([VHDX_TOOL, 'cat', parent]),
                                             'vhdx cat').stdout).hexdigest(), digest,
                     'the disk of the parent')

    def test_systemd_unit(self):
        """The unit template that runs the server where a user manager
        runs: systemd takes it, for an instance named as systemd-escape
        names an image's path."""
        need = [p for p in ('systemd-analyze', 'systemd-escape') if shutil.which(p) is None]
        if need or not UNIT:
            raise Skip('no systemd here (%s)' % ', '.join(need or ['the unit is not built']))
        escaped = check_ok(run_root(['systemd-escape', '--path', self.image('my disk-1.vhdx')]),
                           'systemd-escape').stdout.decode().strip()
        units = self.session.path('work', 'units')
        os.makedirs(units, exist_ok=True)
        instance = os.path.join(units, 'vhdx-nbd@%s.service' % escaped)
        shutil.copy(UNIT, instance)
        runtime = self.session.path('work', 'units-run')
        os.makedirs(runtime, exist_ok=True)
        result = run_root(['systemd-analyze', 'verify', '--user', '--man=no', instance],
                          env=dict(os.environ, XDG_RUNTIME_DIR=runtime))
        check_ok(result, 'systemd-analyze verify')
        expect(result.stderr.strip() == b'', 'systemd-analyze: %s' % result.stderr)

    def test_refusals(self):
        """What cannot be attached says why, and starts nothing."""
        path = self.image('twice.vhdx')
        check_ok(run_root(['qemu-img', 'create', '-q', '-f', 'vhdx', path, '16M']),
                 'qemu-img create')
        self.give(path)
        missing = self.tool('attach', 'no-such-domain', path)
        expect(missing.returncode == 1 and b'no-such-domain' in missing.stderr,
               'attach to a missing domain: %r' % missing.stderr)
        check_ok(self.tool('attach', '--config', DOMAIN, path), 'vhdx-pool attach')
        again = self.tool('attach', '--config', DOMAIN, path)
        expect(again.returncode == 1 and b'already' in again.stderr,
               'attached twice: %r' % again.stderr)
        read_only = self.tool('attach', '--config', '--read-only', DOMAIN, path)
        expect(read_only.returncode == 1 and b'read-write' in read_only.stderr,
               'attached read-only while served read-write: %r' % read_only.stderr)
        self.detach_and_check(path)


TESTS = [name for name in AttachTests.__dict__ if name.startswith('test_')]


def start_session():
    missing = [p for p in ('virsh', 'qemu-img', 'qemu-io', 'nbdkit', 'guestfish',
                           'qemu-system-x86_64') if shutil.which(p) is None]
    if missing:
        raise Skip('not installed: %s' % ', '.join(missing))
    if os.geteuid() == 0 and shutil.which('setpriv') is None:
        raise Skip('setpriv is needed to run libvirt as nobody')
    session = Session()
    try:
        # No virtlogd outliving the test for libguestfs' appliance.
        bootdisk.configure_session(session)
        # The plugin where vhdx-pool looks for it beside itself.
        os.makedirs(session.path('bin', 'nbdkit'))
        shutil.copy2(PLUGIN, session.path('bin', 'nbdkit', 'nbdkit-vhdx-plugin.so'))
        os.mkdir(session.path('images'))
        session.give_away()
        domain_xml = session.path('work', 'domain.xml')
        with open(domain_xml, 'w') as f:
            f.write("<domain type='qemu'><name>%s</name><memory unit='MiB'>256</memory>"
                    "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
                    "<devices/></domain>\n" % DOMAIN)
        session.give_away()
        result = session.virsh('define', domain_xml, check=False)
        if result.returncode != 0:
            raise Skip('the libvirt session daemon cannot define a domain: %s' %
                       result.stderr.decode(errors='replace').strip())
    except BaseException:
        session.close()
        raise
    return session


def main():
    for name in ('VHDX_POOL', 'VHDX_TOOL', 'VHDX_NBDKIT_PLUGIN', 'VHDX_VHDI_CAT'):
        if not os.environ.get(name):
            print('Bail out! %s is not set' % name)
            return 1
    try:
        session = start_session()
    except Skip as skip:
        print('1..0 # SKIP %s' % skip)
        return 0
    failed = 0
    try:
        tests = AttachTests(session)
        print('1..%d' % len(TESTS))
        for number, name in enumerate(TESTS, 1):
            title = name[len('test_'):].replace('_', ' ')
            try:
                tests.reset()
                getattr(tests, name)()
                print('ok %d - %s' % (number, title))
            except Skip as skip:
                print('ok %d - %s # SKIP %s' % (number, title, skip))
            except Exception:
                failed += 1
                print('not ok %d - %s' % (number, title))
                for line in traceback.format_exc().splitlines():
                    print('# ' + line)
            sys.stdout.flush()
    finally:
        for pid in tests.server_pids() if 'tests' in locals() else []:
            os.kill(pid, 9)
        session.virsh('undefine', DOMAIN, check=False)
        session.close()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
