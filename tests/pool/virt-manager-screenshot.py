#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Screenshots of virt-manager showing a guest that runs on a VHDX checkpoint
# chain attached by `vhdx-pool attach`: for a person to run and look at (the
# test suite does not run it).
#
# A private libvirt session (qemu:///session, as nobody when run as root, as
# the pool tests make it) gets a domain without a disk; `vhdx-pool attach
# --config` gives it a checkpoint (made by `vhdx convert --parent`) of a boot
# disk converted to VHDX by qemu-img; the domain boots to its prompt.  Then
# virt-manager runs on a virtual display (Xvfb, in `dbus-run-session`) and
# three PNG files are written to OUTPUT-DIR:
#   virt-manager-list.png      the manager's window: the domain, running;
#   virt-manager-disk.png      the domain's details, its disk selected: the
#                              NBD source, named by the image;
#   virt-manager-disk-xml.png  the disk's XML: the UNIX socket of the server.
# The windows are driven with xdotool at positions of GTK's default theme.
# Everything started is stopped at the end, the images deleted.
#
# Usage: tests/pool/virt-manager-screenshot.py [--build DIR] [OUTPUT-DIR]
#   DIR: the build directory (default: build/ of the source tree), where
#   vhdx, vhdx-pool and the plugin are; OUTPUT-DIR defaults to the current
#   directory.  Needs, besides what `./run test` installs: virt-manager,
#   xvfb, xdotool (apt-get install virt-manager xvfb xdotool).

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))

DOMAIN = 'hyperv-checkpoint-guest'
DISPLAY = ':73'
MiB = 1024 * 1024
SIZE = 64 * MiB
MARKER_TEXT = 'read from the checkpoint, not its parent'
# The disk's row in the details window's hardware list, below Overview, OS
# information, Performance, CPUs, Memory and Boot Options.
DISK_ROW = 6
# Polls of a tenth of a second for a window to show (a minute in all).
WINDOW_POLLS = 600


def parse_args():
    parser = argparse.ArgumentParser(description='Screenshots of virt-manager showing a '
                                     'guest on a VHDX attached by vhdx-pool attach.')
    parser.add_argument('--build', default=os.path.join(SOURCE_ROOT, 'build'),
                        help='the build directory (default: %(default)s)')
    parser.add_argument('output', nargs='?', default='.', help='where the PNG files go')
    return parser.parse_args()


args = parse_args()
BUILD = os.path.abspath(args.build)
os.environ.setdefault('VHDX_POOL', os.path.join(BUILD, 'src', 'pool', 'vhdx-pool'))
os.environ.setdefault('VHDX_TOOL', os.path.join(BUILD, 'src', 'cli', 'vhdx'))
os.environ.setdefault('VHDX_NBDKIT_PLUGIN',
                      os.path.join(BUILD, 'src', 'nbdkit', 'nbdkit-vhdx-plugin.so'))
sys.path.insert(0, os.path.join(SOURCE_ROOT, 'tests', 'common'))
import bootdisk  # noqa: E402
from libvirtsession import Session  # noqa: E402

VHDX_TOOL = os.environ['VHDX_TOOL']
PLUGIN = os.environ['VHDX_NBDKIT_PLUGIN']

SCREENSHOT = '''
import sys
import gi
gi.require_version('Gdk', '3.0')
from gi.repository import Gdk
root = Gdk.get_default_root_window()
shot = Gdk.pixbuf_get_from_window(root, 0, 0, root.get_width(), root.get_height())
shot.savev(sys.argv[1], 'png', [], [])
'''


def say(text):
    print('==> ' + text, flush=True)


def run(argv, what):
    result = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    if result.returncode != 0:
        sys.exit('%s failed: %s' % (what, result.stderr.decode(errors='replace').strip()))
    return result


def need_programs():
    missing = [p for p in ('virt-manager', 'Xvfb', 'xdotool', 'dbus-run-session', 'virsh',
                           'qemu-img', 'qemu-system-x86_64', 'nbdkit')
               if shutil.which(p) is None]
    for path in (os.environ['VHDX_POOL'], VHDX_TOOL, PLUGIN):
        if not os.path.exists(path):
            missing.append(path)
    if missing:
        sys.exit('missing: %s (apt-get install virt-manager xvfb xdotool; ./run build)' %
                 ', '.join(missing))


def make_images(session):
    """A boot disk as a dynamic VHDX by qemu-img, and a checkpoint of it by
    `vhdx convert --parent` that holds the marker."""
    work = session.path('work')
    raw = os.path.join(work, 'boot.raw')
    bootdisk.make_boot_disk(os.path.join(work, 'boot'), raw, SIZE, label='hyperv-checkpoint',
                            skip=SystemExit)
    base = session.path('pool', 'Windows Server 2019.vhdx')
    child = session.path('pool', 'Windows Server 2019_6F1C2B9E.avhdx')
    run(['qemu-img', 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic', raw,
         base], 'qemu-img convert')
    with open(raw, 'r+b') as f:
        f.seek(bootdisk.marker_offset(SIZE))
        f.write(MARKER_TEXT.encode() + b'\n')
    run([VHDX_TOOL, 'convert', '--parent', base, raw, child], 'vhdx convert --parent')
    os.unlink(raw)
    return child


class Desktop:
    """Xvfb and virt-manager in one D-Bus session, as the session's user."""

    def __init__(self, session):
        self.session = session
        self.env = dict(session.env, DISPLAY=DISPLAY, GSETTINGS_BACKEND='memory',
                        NO_AT_BRIDGE='1')
        self.xvfb = self.start(['Xvfb', DISPLAY, '-screen', '0', '1280x800x24',
                                '-nolisten', 'tcp'])
        self.manager = None

    def command(self, argv):
        saved = self.session.env
        self.session.env = self.env
        try:
            return self.session.command(argv)
        finally:
            self.session.env = saved

    def start(self, argv):
        return subprocess.Popen(self.command(argv), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, cwd=self.session.tmp)

    def run(self, argv, check=True):
        result = subprocess.run(self.command(argv), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=self.session.tmp, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError('%s: %s' % (' '.join(argv),
                                           result.stderr.decode(errors='replace').strip()))
        return result

    def window(self, name):
        """The X window whose title is @name, once it shows."""
        for _ in range(WINDOW_POLLS):
            if self.xvfb.poll() is not None:
                raise RuntimeError('Xvfb stopped: %s' % self.xvfb.stderr.read().decode())
            result = self.run(['xdotool', 'search', '--onlyvisible', '--name', name],
                              check=False)
            ids = result.stdout.split()
            if ids:
                return ids[0].decode()
            time.sleep(0.1)
        raise RuntimeError('no window named %r showed' % name)

    def settle(self, polls=20):
        """A moment for GTK to draw what it was asked to."""
        for _ in range(polls):
            time.sleep(0.1)

    def screenshot(self, path):
        shot = self.session.path('work', os.path.basename(path))
        self.run(['/usr/bin/python3', '-c', SCREENSHOT, shot])
        shutil.copyfile(shot, path)
        say('wrote %s' % path)

    def virt_manager(self, *argv):
        self.manager = self.start(['dbus-run-session', '--', 'virt-manager', '--no-fork',
                                   '--connect', 'qemu:///session'] + list(argv))

    def close(self):
        for process in (self.manager, self.xvfb):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def show(session, output):
    desktop = Desktop(session)
    try:
        desktop.virt_manager()
        manager = desktop.window('Virtual Machine Manager')
        desktop.run(['xdotool', 'windowsize', manager, '900', '500'])
        desktop.settle(30)
        desktop.screenshot(os.path.join(output, 'virt-manager-list.png'))
        desktop.manager.terminate()
        desktop.manager.wait(10)

        # The details window on its hardware list.
        desktop.virt_manager('--show-domain-editor', DOMAIN)
        details = desktop.window(DOMAIN + ' on QEMU/KVM User session')
        desktop.run(['xdotool', 'windowsize', details, '1100', '700'])
        desktop.settle(30)
        # A click on the list's first row (Overview), then down to the disk.
        desktop.run(['xdotool', 'windowfocus', '--sync', details])
        desktop.run(['xdotool', 'mousemove', '--window', details, '60', '92', 'click', '1'])
        desktop.settle()
        desktop.run(['xdotool', 'key', '--delay', '100'] + ['Down'] * DISK_ROW)
        desktop.settle()
        desktop.screenshot(os.path.join(output, 'virt-manager-disk.png'))
        # Its XML tab, at the top of the page (Adwaita's sizes).
        desktop.run(['xdotool', 'mousemove', '--window', details, '304', '96', 'click', '1',
                     'mousemove', '--window', details, '700', '600'])
        desktop.settle()
        desktop.screenshot(os.path.join(output, 'virt-manager-disk-xml.png'))
    finally:
        desktop.close()


def main():
    need_programs()
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    session = Session()
    try:
        bootdisk.configure_session(session)
        os.makedirs(session.path('bin', 'nbdkit'))
        shutil.copy2(PLUGIN, session.path('bin', 'nbdkit', 'nbdkit-vhdx-plugin.so'))
        say('making the boot disk and its checkpoint')
        child = make_images(session)
        session.give_away()

        def attach(name):
            result = session.tool('attach', '--config', name, child)
            if result.returncode != 0:
                raise RuntimeError('vhdx-pool attach: %s' % result.stderr.decode())
            say(result.stdout.decode().strip())

        def running(name):
            say('the guest booted from the checkpoint; starting virt-manager')
            show(session, output)

        say('booting %s (emulated, this takes a while)' % DOMAIN)
        try:
            bootdisk.boot_to_prompt(session, None, name=DOMAIN, attach=attach, running=running)
        finally:
            result = session.tool('detach', '--config', DOMAIN, child)
            say((result.stdout.decode() + result.stderr.decode()).strip())
            session.virsh('undefine', DOMAIN, check=False)
    finally:
        session.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
