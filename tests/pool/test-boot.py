#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A guest of a private libvirt session boots to a shell prompt from a VHDX
# checkpoint chain that the nbdkit plugin serves over NBD, attached as
# `vhdx-pool attach` attaches an image: a network disk, protocol nbd, on a
# UNIX socket.  Printed as TAP.
#
# The boot disk (tests/common/bootdisk.py: SYSLINUX, the installed kernel,
# busybox) is made raw, converted to a dynamic VHDX by qemu-img (a writer
# independent of the library), and a differencing image of it is made by
# `vhdx convert --parent` with a marker written at the end of the disk; the
# guest prints the marker it reads, so its console tells that it read the
# checkpoint over its parent.  `vhdx-pool attach --config` gives the
# defined domain the checkpoint (nbdkit and the plugin on a socket of the
# session's user), `detach` takes it back and stops the server.  While the
# guest runs, a second image (made by qemu-img) is plugged in with `attach
# --live` and out with `detach --live`: the guest prints the marker it reads
# from the new disk, and says when the disk has gone.  libvirt,
# vhdx-pool, nbdkit and the guest's QEMU run as `nobody` when the test runs
# as root.  The guest is emulated (TCG): its boot is waited
# for in counted polls of its console, generously; their number is reported.
#
# Environment: VHDX_POOL (for the session), VHDX_TOOL, VHDX_NBDKIT_PLUGIN.

import os
import re
import shutil
import subprocess
import sys
import traceback
import xml.etree.ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'common'))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'nbdkit'))
import bootdisk  # noqa: E402
from libvirtsession import Session  # noqa: E402
from nbdtest import sha256_file  # noqa: E402

MiB = 1024 * 1024
SIZE = 64 * MiB
DOMAIN = 'vhdx-boot-test'
MARKER_TEXT = 'read from the checkpoint, not its parent'
SECOND_SIZE = 32 * MiB
SECOND_TEXT = 'read from the disk plugged in'
# Runs of `detach --live` while the guest has not yet let the disk go.
DETACH_TRIES = 10

VHDX_TOOL = os.environ.get('VHDX_TOOL')
PLUGIN = os.environ.get('VHDX_NBDKIT_PLUGIN')


class Skip(Exception):
    pass


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def expect_equal(found, expected, what):
    if found != expected:
        raise AssertionError('%s: expected %r, found %r' % (what, expected, found))


def run_root(args, what):
    result = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=300)
    if result.returncode != 0:
        raise AssertionError('%s exited with %d: %s' % (
            what, result.returncode, result.stderr.decode(errors='replace').strip()))
    return result


def need_programs():
    missing = [p for p in ('virsh', 'qemu-img', 'qemu-system-x86_64', 'nbdkit')
               if shutil.which(p) is None]
    if not os.path.exists('/usr/sbin/libvirtd') and shutil.which('libvirtd') is None:
        missing.append('libvirtd')
    if missing:
        raise Skip('not installed: %s' % ', '.join(missing))
    if os.geteuid() == 0 and shutil.which('setpriv') is None:
        raise Skip('setpriv is needed to run libvirt as nobody')


class Guest:
    """The images, the server and what the boot showed."""

    def __init__(self, session):
        self.session = session
        self.work = session.path('work')
        self.base = session.path('pool', 'base.vhdx')
        self.child = session.path('pool', 'child.avhdx')
        self.child_raw = os.path.join(self.work, 'child.raw')
        self.second = session.path('pool', 'second.vhdx')
        self.hotplug = None
        self.hotplug_error = None
        self.boot = None
        self.server_output = None

    def make_images(self):
        raw = os.path.join(self.work, 'boot.raw')
        self.kernel = bootdisk.make_boot_disk(os.path.join(self.work, 'boot'), raw, SIZE,
                                              label='libvhdx-boot-disk', skip=Skip)
        run_root(['qemu-img', 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic',
                  raw, self.base], 'qemu-img convert -O vhdx')
        shutil.copy(raw, self.child_raw)
        with open(self.child_raw, 'r+b') as f:
            f.seek(bootdisk.marker_offset(SIZE))
            f.write(MARKER_TEXT.encode() + b'\n')
        run_root([VHDX_TOOL, 'convert', '--parent', self.base, self.child_raw, self.child],
                 'vhdx convert --parent')
        self.base_sha = sha256_file(self.base)
        os.unlink(raw)
        # The disk plugged in while the guest runs: made by qemu-img too.
        with open(raw, 'wb') as f:
            f.truncate(SECOND_SIZE)
            f.seek(bootdisk.marker_offset(SECOND_SIZE))
            f.write(SECOND_TEXT.encode() + b'\n')
        run_root(['qemu-img', 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic',
                  raw, self.second], 'qemu-img convert -O vhdx')
        os.unlink(raw)

    def run(self):
        """Attach the checkpoint to the domain with `vhdx-pool attach`, boot
        from it, detach it (which stops the server)."""
        def attach(name):
            result = self.session.tool('attach', '--config', name, self.child)
            expect(result.returncode == 0, 'vhdx-pool attach: %s' % result.stderr.decode())
            self.attach_output = result.stdout.decode()
            self.socket = re.search(r'NBD socket (\S+)\)', self.attach_output).group(1)

        def running(name):
            try:
                self.hotplug = self.plug_in_and_out(name)
            except Exception:
                self.hotplug_error = traceback.format_exc()

        try:
            self.boot = bootdisk.boot_to_prompt(self.session, None, name=DOMAIN, attach=attach,
                                                running=running)
        finally:
            result = self.session.tool('detach', '--config', DOMAIN, self.child)
            self.detach_output = result.stdout.decode() + result.stderr.decode()
            self.session.virsh('undefine', DOMAIN, check=False)
        expect('Stopped the NBD server' in self.detach_output,
               'vhdx-pool detach: %s' % self.detach_output)

    def plug_in_and_out(self, name):
        """`vhdx-pool attach --live` of a second image to the running
        guest, and `detach --live`, each followed by what the guest says."""
        plug = {}
        result = self.session.tool('attach', '--live', name, self.second)
        expect(result.returncode == 0, 'vhdx-pool attach --live: %s' % result.stderr.decode())
        plug['attach'] = result.stdout.decode().strip()
        plug['domblklist'] = self.session.virsh('domblklist', '--details', name).stdout.decode()
        plug['socket'] = re.search(r'NBD socket (\S+)\)', plug['attach']).group(1)
        plug['plugged'] = bootdisk.wait_for_line(self.session, name, bootdisk.SECOND_MARKER)
        outputs = []
        for _ in range(DETACH_TRIES):
            result = self.session.tool('detach', '--live', name, self.second)
            output = (result.stdout.decode() + result.stderr.decode()).strip()
            outputs.append(output)
            expect(result.returncode == 0, 'vhdx-pool detach --live: %s' % output)
            if 'Stopped the NBD server' in output:
                break
        plug['detach'] = outputs
        plug['unplugged'] = bootdisk.wait_for_line(self.session, name, bootdisk.UNPLUGGED)
        plug['after'] = self.session.virsh('domblklist', '--details', name).stdout.decode()
        return plug


def test_boot(guest):
    guest.run()
    boot = guest.boot
    print('# booted to the prompt after %d polls of the console' % boot.polls)
    for line in boot.lines:
        if line.strip():
            print('# console: %s' % line)
    banner = [line for line in boot.lines if line.startswith(bootdisk.BANNER)]
    expect_equal(banner, ['%slibvhdx-boot-disk, kernel %s' % (bootdisk.BANNER, guest.kernel)],
                 'the banner')
    expect(any(bootdisk.PROMPT in line for line in boot.lines), 'no prompt')


def test_domblklist(guest):
    text = guest.boot.domblklist
    for line in text.splitlines():
        print('# domblklist: %s' % line)
    rows = [line.split() for line in text.splitlines() if line.strip()]
    expect_equal([row[:3] for row in rows], [['network', 'disk', 'vda']],
                 'virsh domblklist --details (type, device, target)')
    # domblklist names no source for NBD: the live XML does.
    disks = guest.boot.disks
    expect_equal(len(disks), 1, 'disks in virsh dumpxml')
    for line in disks[0].splitlines():
        print('# dumpxml: %s' % line.rstrip())
    disk = xml.etree.ElementTree.fromstring(disks[0])
    expect_equal((disk.get('type'), disk.find('source').get('protocol')), ('network', 'nbd'),
                 'the disk\'s type and protocol')
    host = disk.find('source/host')
    expect_equal((host.get('transport'), host.get('socket')), ('unix', guest.socket),
                 'the disk\'s host')


def test_guest_view(guest):
    lines = guest.boot.lines
    expect('vhdx-guest: vda has %d sectors of 512 bytes' % (SIZE // 512) in lines,
           'the guest\'s size of vda')
    expect('vhdx-guest: partitions: vda vda1' in lines, 'the guest\'s partitions')
    expect_equal([line for line in lines if line.startswith(bootdisk.MARKER)],
                 [bootdisk.MARKER + MARKER_TEXT], 'the marker the guest read')


def test_hotplug(guest):
    if guest.hotplug_error is not None:
        raise AssertionError(guest.hotplug_error)
    plug = guest.hotplug
    print('# %s' % plug['attach'])
    expect(' as vdb ' in plug['attach'], 'the target attach chose')
    rows = [line.split() for line in plug['domblklist'].splitlines() if line.strip()]
    expect_equal([row[:3] for row in rows], [['network', 'disk', 'vda'],
                                             ['network', 'disk', 'vdb']],
                 'virsh domblklist --details while plugged in')
    lines = plug['plugged']
    for line in lines:
        if line.startswith('vhdx-guest: vdb'):
            print('# console: %s' % line)
    expect_equal([line for line in lines if line.startswith(bootdisk.PLUGGED)],
                 ['%s%d sectors' % (bootdisk.PLUGGED, SECOND_SIZE // 512)],
                 'what the guest saw plugged in')
    expect_equal([line for line in lines if line.startswith(bootdisk.SECOND_MARKER)],
                 [bootdisk.SECOND_MARKER + SECOND_TEXT], 'the marker the guest read from vdb')
    for number, output in enumerate(plug['detach'], 1):
        for line in output.splitlines():
            print('# detach --live (run %d): %s' % (number, line))
    expect('Stopped the NBD server' in plug['detach'][-1],
           'detach --live did not stop the server after %d runs' % len(plug['detach']))
    expect(bootdisk.UNPLUGGED in plug['unplugged'], 'the guest did not see vdb go')
    rows = [line.split() for line in plug['after'].splitlines() if line.strip()]
    expect_equal([row[:3] for row in rows], [['network', 'disk', 'vda']],
                 'virsh domblklist --details after detach')
    expect(not os.path.exists(plug['socket']), 'the socket is left after detach')
    run_root([VHDX_TOOL, 'check', guest.second], 'vhdx check second.vhdx')
    run_root(['qemu-img', 'check', '-f', 'vhdx', guest.second], 'qemu-img check second.vhdx')


def test_after(guest):
    expect_equal(sha256_file(guest.base), guest.base_sha, 'sha256 of the parent')
    for image in (guest.base, guest.child):
        result = run_root([VHDX_TOOL, 'check', image], 'vhdx check ' + os.path.basename(image))
        print('# vhdx check %s: %s' % (os.path.basename(image),
                                       result.stdout.decode().strip().splitlines()[-1]))
    run_root(['qemu-img', 'check', '-f', 'vhdx', guest.base], 'qemu-img check')
    # The guest wrote nothing: the chain's disk is the one converted.
    cat = run_root([VHDX_TOOL, 'cat', guest.child], 'vhdx cat')
    with open(guest.child_raw, 'rb') as f:
        expect(cat.stdout == f.read(), 'the checkpoint\'s disk changed')


TESTS = [
    ('a guest boots to a prompt from a checkpoint chain served over NBD', test_boot),
    ('libvirt lists the NBD network disk while the guest runs', test_domblklist),
    ('the guest sees the disk and reads the checkpoint over its parent', test_guest_view),
    ('a disk plugged into the running guest and out again (--live)', test_hotplug),
    ('the parent is unchanged and the chain checks clean', test_after),
]


def start():
    need_programs()
    session = Session()
    try:
        bootdisk.configure_session(session)
        # The plugin where vhdx-pool looks for it, beside itself.
        os.makedirs(session.path('bin', 'nbdkit'))
        shutil.copy2(PLUGIN, session.path('bin', 'nbdkit', 'nbdkit-vhdx-plugin.so'))
        guest = Guest(session)
        guest.make_images()
        session.give_away()
        result = session.virsh('uri', check=False)
        if result.returncode != 0:
            raise Skip('the libvirt session daemon cannot be started: %s' %
                       result.stderr.decode(errors='replace').strip())
        caps = session.virsh('domcapabilities', '--virttype', 'qemu', '--arch', 'x86_64',
                             '--machine', 'pc', check=False)
        if caps.returncode != 0:
            raise Skip('libvirt cannot emulate an x86_64 pc guest: %s' %
                       caps.stderr.decode(errors='replace').strip())
    except BaseException:
        session.close()
        raise
    return session, guest


def main():
    for name in ('VHDX_POOL', 'VHDX_TOOL', 'VHDX_NBDKIT_PLUGIN'):
        if not os.environ.get(name):
            print('Bail out! %s is not set' % name)
            return 1
    try:
        session, guest = start()
    except (Skip, bootdisk.Unavailable) as skip:
        print('1..0 # SKIP %s' % skip)
        return 0

    failed = 0
    try:
        print('1..%d' % len(TESTS))
        for number, (description, func) in enumerate(TESTS, 1):
            try:
                if number > 1 and guest.boot is None:
                    raise AssertionError('the guest did not boot')
                func(guest)
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
