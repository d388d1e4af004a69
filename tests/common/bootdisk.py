# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A disk that boots a tiny Linux to a shell prompt, and a libvirt guest that
# boots from it (over NBD) until the prompt shows on its serial console.
#
# The disk: an MBR (SYSLINUX's mbr.bin) with one bootable FAT partition,
# made without mounting anything (sfdisk, mkfs.fat, mcopy, syslinux), holding
# SYSLINUX, the installed Debian kernel and an initramfs of busybox-static
# written here.  The last MiB of the disk is outside the partition: the
# guest prints the first line of text it finds there (the marker), so that
# a test can tell which image's data the guest read; it does the same for a
# second disk plugged in later (vdb), and says when that one goes.
#
# The guest: a transient libvirt domain (emulated, TCG), its first serial
# port written to a file that the test reads; boot_to_prompt() waits for the
# banner and the prompt in polls, a generous number of them, and destroys
# the domain.

import gzip
import os
import re
import shutil
import stat
import subprocess
import time
import xml.sax.saxutils

from libvirtsession import NOBODY

KiB = 1024
MiB = 1024 * KiB

BANNER = 'vhdx-guest: booted from '
PROMPT = 'vhdx-guest# '
MARKER = 'vhdx-guest: marker: '
# What the guest prints of a disk (vdb) plugged in after its boot.
PLUGGED = 'vhdx-guest: vdb plugged in, '
SECOND_MARKER = 'vhdx-guest: vdb marker: '
UNPLUGGED = 'vhdx-guest: vdb unplugged'
# The modules the guest loads to see its virtio disk (with what they need),
# when the kernel does not have them built in.
GUEST_MODULES = ('virtio_pci', 'virtio_blk')
# Where the tools are when PATH does not say (sfdisk and mkfs.fat are in
# /usr/sbin).
TOOL_DIRS = ('/usr/local/sbin', '/usr/sbin', '/sbin')
MBR_BIN = ('/usr/lib/syslinux/mbr/mbr.bin', '/usr/share/syslinux/mbr.bin')
BUSYBOX = ('/bin/busybox', '/usr/bin/busybox')
# Polls of the serial log: half a second each, ten minutes in all, for a
# busy host emulating the guest's CPU.
POLL_SECONDS = 0.5
POLLS = 1200


class Unavailable(Exception):
    """What the guest needs is not here (a tool, the kernel, libvirt)."""


def find_tool(name):
    path = shutil.which(name)
    if path:
        return path
    for d in TOOL_DIRS:
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def need_tools(skip, *names):
    """The paths of the programs @names; raises @skip naming the missing ones."""
    paths = {name: find_tool(name) for name in names}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        raise skip('not installed: %s (Debian: syslinux syslinux-common mtools dosfstools '
                   'fdisk busybox-static)' % ', '.join(missing))
    return paths


def is_static_elf(path):
    """Whether @path is a 64-bit little-endian ELF program without an
    interpreter (PT_INTERP), which runs alone in the initramfs."""
    with open(path, 'rb') as f:
        header = f.read(64)
        if header[:6] != b'\x7fELF\x02\x01':
            return False
        phoff = int.from_bytes(header[32:40], 'little')
        phentsize = int.from_bytes(header[54:56], 'little')
        phnum = int.from_bytes(header[56:58], 'little')
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(int.from_bytes(table[i:i + 4], 'little') != 3
               for i in range(0, len(table), phentsize))


def find_kernel(skip):
    """(vmlinuz, version) of the newest installed kernel whose modules are
    installed too; raises @skip when there is none, or it is unreadable."""
    kernels = []
    for name in os.listdir('/boot') if os.path.isdir('/boot') else []:
        if not name.startswith('vmlinuz-'):
            continue
        version = name[len('vmlinuz-'):]
        if os.path.exists(os.path.join('/lib/modules', version, 'modules.dep')):
            kernels.append(version)
    if not kernels:
        raise skip('no kernel with its modules in /boot and /lib/modules '
                   '(Debian: linux-image-amd64)')

    def key(version):
        return [int(p) if p.isdigit() else p for p in re.split(r'[.-]', version)]

    version = max(kernels, key=lambda v: [str(p).zfill(8) for p in key(v)])
    vmlinuz = os.path.join('/boot', 'vmlinuz-' + version)
    if not os.access(vmlinuz, os.R_OK):
        raise skip('%s is not readable by this user' % vmlinuz)
    return vmlinuz, version


def module_files(version, names=GUEST_MODULES):
    """The module files that give the guest @names, each after what it
    needs, as modules.dep lists them; a module built into the kernel needs
    none."""
    root = os.path.join('/lib/modules', version)
    deps = {}
    with open(os.path.join(root, 'modules.dep')) as f:
        for line in f:
            module, _, needs = line.partition(':')
            deps[os.path.basename(module).split('.ko')[0].replace('-', '_')] = (
                module, needs.split())
    by_path = {path: name for name, (path, _) in deps.items()}
    ordered = []

    def add(name):
        if name not in deps:
            return  # built in, or not needed
        path, needs = deps[name]
        for need in needs:
            add(by_path[need])
        full = os.path.join(root, path)
        if full not in ordered:
            ordered.append(full)

    for name in names:
        add(name)
    for path in ordered:
        if not path.endswith('.ko'):
            raise Unavailable('%s is compressed: the guest\'s busybox cannot load it' % path)
    return ordered


def init_script(label):
    """The guest's /init: what it prints, then a shell on the console."""
    return '''#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /lib/modules/order); do
    insmod /lib/modules/$module
done
echo
echo "%(banner)s%(label)s, kernel $(uname -r)"
tries=0
while [ ! -e /sys/block/vda/size ] && [ $tries -lt 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
if [ -e /sys/block/vda/size ]; then
    sectors=$(cat /sys/block/vda/size)
    echo "vhdx-guest: vda has $sectors sectors of 512 bytes"
    echo "vhdx-guest: partitions:" $(awk 'NR > 2 { print $4 }' /proc/partitions)
    echo "%(marker)s$(dd if=/dev/vda bs=512 skip=$((sectors - 2048)) count=1 2>/dev/null \\
        | tr -d '\\000' | head -n 1)"
else
    echo "vhdx-guest: no vda"
fi
# A second disk plugged in while the shell runs is announced with the
# marker it holds, and so is its going.
(
    seen=
    while :; do
        if [ -z "$seen" ] && [ -e /sys/block/vdb/size ]; then
            seen=1
            sectors=$(cat /sys/block/vdb/size)
            echo  # after the prompt
            echo "%(plugged)s$sectors sectors"
            echo "%(second)s$(dd if=/dev/vdb bs=512 skip=$((sectors - 2048)) count=1 \
                2>/dev/null | tr -d '\000' | head -n 1)"
        elif [ -n "$seen" ] && [ ! -e /sys/block/vdb ]; then
            seen=
            echo
            echo "%(unplugged)s"
        fi
        sleep 0.2
    done
) </dev/null &
export PS1='%(prompt)s'
exec setsid cttyhack sh
''' % {'banner': BANNER, 'label': label, 'marker': MARKER, 'prompt': PROMPT,
       'plugged': PLUGGED, 'second': SECOND_MARKER, 'unplugged': UNPLUGGED}


def cpio_newc(entries):
    """A cpio archive (the kernel's "newc" format) of @entries: (name, mode,
    data, rdev) with rdev (major, minor) for device nodes."""
    out = bytearray()

    def pad():
        out.extend(b'\0' * (-len(out) % 4))

    for ino, (name, mode, data, rdev) in enumerate(entries + [('TRAILER!!!', 0, b'', (0, 0))],
                                                   1):
        encoded = name.encode() + b'\0'
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        out.extend(b'070701' + b''.join(b'%08X' % v for v in fields))
        out.extend(encoded)
        pad()
        out.extend(data)
        pad()
    return bytes(out)


def make_initramfs(path, label, busybox, modules):
    """A gzipped cpio of busybox, the modules and /init, with /dev/console
    for the kernel to open before /init runs."""
    def read(p):
        with open(p, 'rb') as f:
            return f.read()

    directory = stat.S_IFDIR | 0o755
    entries = [(d, directory, b'', (0, 0))
               for d in ('bin', 'dev', 'proc', 'sys', 'lib', 'lib/modules')]
    entries.append(('dev/console', stat.S_IFCHR | 0o600, b'', (5, 1)))
    entries.append(('bin/busybox', stat.S_IFREG | 0o755, read(busybox), (0, 0)))
    entries.append(('bin/sh', stat.S_IFLNK | 0o777, b'busybox', (0, 0)))
    for module in modules:
        entries.append(('lib/modules/' + os.path.basename(module), stat.S_IFREG | 0o644,
                        read(module), (0, 0)))
    order = ''.join(os.path.basename(m) + '\n' for m in modules)
    entries.append(('lib/modules/order', stat.S_IFREG | 0o644, order.encode(), (0, 0)))
    entries.append(('init', stat.S_IFREG | 0o755, init_script(label).encode(), (0, 0)))
    with open(path, 'wb') as f:
        f.write(gzip.compress(cpio_newc(entries), 9, mtime=0))


def syslinux_cfg(label):
    return '''SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
    LINUX vmlinuz
    INITRD initrd.gz
    APPEND console=ttyS0,115200 quiet panic=-1 vhdx_label=%s
''' % label


def run_tool(args, what, skip, input=None, env=None):
    result = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, input=input, env=env, timeout=300)
    if result.returncode != 0:
        raise AssertionError('%s exited with %d: %s' % (
            what, result.returncode, result.stderr.decode(errors='replace').strip()))
    return result


def marker_offset(size):
    """Where on a disk of @size bytes the guest reads its marker: the last
    MiB, outside the partition."""
    return size - MiB


def make_boot_disk(workdir, raw_path, size=64 * MiB, label='libvhdx', skip=Unavailable):
    """Write @raw_path, a raw disk of @size bytes (32 MiB to 2 GiB) that
    SeaBIOS boots: SYSLINUX's MBR, one bootable FAT16 partition from 1 MiB
    to the last MiB with SYSLINUX, the installed kernel and an initramfs of
    busybox; the guest prints BANNER + @label (a word), its view of vda,
    MARKER + the first line at marker_offset(@size), then PROMPT.  Scratch
    files go in @workdir.  Raises @skip when a tool or the kernel is not
    here.  Returns the kernel version."""
    if not 32 * MiB <= size <= 2048 * MiB or size % MiB:
        raise ValueError('a boot disk is 32 MiB to 2 GiB, in MiB: %d' % size)
    if not re.fullmatch(r'[A-Za-z0-9._+-]+', label):
        raise ValueError('a boot disk label is one word: %r' % label)
    tools = need_tools(skip, 'sfdisk', 'mkfs.fat', 'mcopy', 'syslinux')
    mbr = next((p for p in MBR_BIN if os.path.exists(p)), None)
    if mbr is None:
        raise skip('SYSLINUX\'s mbr.bin is not installed (Debian: syslinux-common)')
    busybox = next((p for p in BUSYBOX if os.path.exists(p)), None)
    if busybox is None or not is_static_elf(busybox):
        raise skip('a static busybox is not installed (Debian: busybox-static)')
    vmlinuz, version = find_kernel(skip)
    try:
        modules = module_files(version)
    except Unavailable as e:
        raise skip(str(e))

    os.makedirs(workdir, exist_ok=True)
    initrd = os.path.join(workdir, 'initrd.gz')
    make_initramfs(initrd, label, busybox, modules)
    cfg = os.path.join(workdir, 'syslinux.cfg')
    with open(cfg, 'w') as f:
        f.write(syslinux_cfg(label))

    # The partition, as a file of its own: a FAT16 file system that knows
    # where it starts (hidden sectors), with SYSLINUX's boot sector.
    start = MiB
    part_size = size - 2 * MiB
    part = os.path.join(workdir, 'partition.img')
    if os.path.exists(part):
        os.unlink(part)
    run_tool([tools['mkfs.fat'], '-F', '16', '-n', 'VHDXBOOT', '-h', str(start // 512),
              '-C', part, str(part_size // KiB)], 'mkfs.fat', skip)
    env = dict(os.environ, MTOOLS_SKIP_CHECK='1')
    for source, name in ((vmlinuz, 'vmlinuz'), (initrd, 'initrd.gz'), (cfg, 'syslinux.cfg')):
        run_tool([tools['mcopy'], '-i', part, source, '::' + name], 'mcopy ' + name, skip,
                 env=env)
    run_tool([tools['syslinux'], '--install', part], 'syslinux --install', skip, env=env)

    with open(raw_path, 'wb') as disk:
        disk.truncate(size)
    with open(mbr, 'rb') as f:
        code = f.read()
    run_tool([tools['sfdisk'], '-q', '--no-reread', '--no-tell-kernel', raw_path],
             'sfdisk', skip,
             input=b'label: dos\nlabel-id: 0x56484458\nstart=%d, size=%d, type=e, bootable\n' % (
                 start // 512, part_size // 512))
    with open(raw_path, 'r+b') as disk:
        disk.write(code[:440])
        disk.seek(start)
        with open(part, 'rb') as f:
            for block in iter(lambda: f.read(MiB), b''):
                if block.count(0) == len(block):
                    disk.seek(len(block), os.SEEK_CUR)  # a hole stays a hole
                else:
                    disk.write(block)
    os.unlink(part)
    return version


# The guest

def nbd_disk_xml(socket, target='vda'):
    """A <disk> of a domain: the NBD export on the UNIX @socket, raw, on
    virtio, as vhdx-pool attaches an image."""
    quote = xml.sax.saxutils.quoteattr
    return ('<disk type=\'network\' device=\'disk\'>'
            '<driver name=\'qemu\' type=\'raw\'/>'
            '<source protocol=\'nbd\'><host transport=\'unix\' socket=%s/></source>'
            '<target dev=%s bus=\'virtio\'/></disk>' % (quote(socket), quote(target)))


def domain_xml(name, disk_xml, console_log, memory_mib=384):
    """A transient guest that the session's QEMU emulates (TCG): @disk_xml
    its only disk, booted by SeaBIOS, the first serial port written to
    @console_log; powering off, rebooting (panic=-1) and crashing end it."""
    quote = xml.sax.saxutils.quoteattr
    return '''<domain type='qemu'>
  <name>%(name)s</name>
  <memory unit='MiB'>%(memory)d</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    %(disk)s
    <serial type='file'>
      <source path=%(log)s/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
''' % {'name': xml.sax.saxutils.escape(name), 'memory': memory_mib, 'disk': disk_xml,
       'log': quote(console_log)}


def configure_session(session):
    """Before the session's daemon starts: QEMU's character devices and
    logs written by libvirtd itself, not by a virtlogd that would outlive
    the test."""
    config = os.path.join(session.env['XDG_CONFIG_HOME'], 'libvirt')
    os.makedirs(config, exist_ok=True)
    with open(os.path.join(config, 'qemu.conf'), 'w') as f:
        f.write('stdio_handler = "file"\n')


def console_lines(path):
    try:
        with open(path, 'rb') as f:
            text = f.read().decode(errors='replace')
    except FileNotFoundError:
        return []
    # Without the terminal queries of busybox's shell (ESC [ 6 n).
    text = re.sub(r'\x1b\[[0-9;?]*[A-Za-z]', '', text)
    return [line.rstrip('\r') for line in text.replace('\r\n', '\n').split('\n')]


class Boot:
    """What boot_to_prompt() saw: the console's lines (the prompt in the
    last ones), `virsh domblklist --details` and the <disk> elements of
    `virsh dumpxml` while the guest ran, and how many polls of the console the
    boot took (to report, not to judge)."""

    def __init__(self, lines, domblklist, disks, polls):
        self.lines = lines
        self.domblklist = domblklist
        self.disks = disks
        self.polls = polls


def console_log(session, name):
    """The file that the serial console of the guest @name is written to."""
    return session.path('guest-' + name, 'console.log')


def wait_for_line(session, name, prefix, polls=POLLS):
    """The console's lines once one of them starts with @prefix, polled
    as boot_to_prompt() polls; AssertionError with the console's output when
    none has after @polls polls."""
    lines = []
    for _ in range(polls):
        lines = console_lines(console_log(session, name))
        if any(line.startswith(prefix) for line in lines):
            return lines
        time.sleep(POLL_SECONDS)
    raise AssertionError('no line %r on the console after %d polls:\n%s' % (
        prefix, polls, '\n'.join(lines)))


def domain_exists(session, name):
    """Whether the domain @name runs (a transient one exists only then)."""
    result = session.virsh('domstate', name, check=False)
    return result.returncode == 0 and result.stdout.decode().strip() in (
        'running', 'paused', 'in shutdown', 'idle', 'blocked')


def boot_to_prompt(session, disk, name='vhdx-boot', memory_mib=384, polls=POLLS, attach=None,
                   running=None):
    """Start the transient domain @name (domain_xml()) with @disk, a <disk>
    element or the UNIX socket of an NBD server (nbd_disk_xml()), in
    @session (libvirtsession.Session), wait until its serial console shows
    BANNER and then PROMPT, and destroy it.  With @attach (and @disk None),
    the domain is defined without a disk, attach(name) gives it one, and it
    is started, destroyed and undefined.  With @running, running(name) is
    called once the prompt shows, before the domain is destroyed.  Returns a
    Boot; raises AssertionError with the console's output when the guest
    stops first, or has not reached the prompt after @polls polls."""
    if disk is None:
        disk = ''
    elif not disk.lstrip().startswith('<'):
        disk = nbd_disk_xml(disk)
    log = console_log(session, name)
    directory = os.path.dirname(log)
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(log):
        os.unlink(log)  # an earlier boot's
    xml_path = os.path.join(directory, 'domain.xml')
    with open(xml_path, 'w') as f:
        f.write(domain_xml(name, disk, log, memory_mib))
    os.chmod(xml_path, 0o644)
    if session.as_nobody:
        os.chown(directory, NOBODY, NOBODY)

    if attach is None:
        session.virsh('create', xml_path)
    else:
        session.virsh('define', xml_path)
        try:
            attach(name)
            session.virsh('start', name)
        except BaseException:
            session.virsh('undefine', name, check=False)
            raise
    try:
        domblklist = session.virsh('domblklist', '--details', name).stdout.decode()
        live = session.virsh('dumpxml', name).stdout.decode()
        disks = re.findall(r'<disk\b.*?</disk>', live, re.S)
        lines = []
        for poll in range(1, polls + 1):
            lines = console_lines(log)
            banner = [i for i, line in enumerate(lines) if line.startswith(BANNER)]
            # The prompt ends no line; a late kernel message may follow it.
            if banner and any(PROMPT in line for line in lines[banner[0] + 1:]):
                if running is not None:
                    running(name)
                return Boot(lines, domblklist, disks, poll)
            # Now and then: the guest may have stopped (a panic reboots it,
            # and rebooting ends it).
            if poll % 10 == 0 and not domain_exists(session, name):
                raise AssertionError('the guest stopped before its prompt; console:\n%s\n'
                                     'QEMU log:\n%s' % ('\n'.join(console_lines(log)),
                                                        qemu_log(session, name)))
            time.sleep(POLL_SECONDS)
        raise AssertionError('no prompt after %d polls; console:\n%s' % (
            polls, '\n'.join(lines)))
    finally:
        if domain_exists(session, name):
            session.virsh('destroy', name, check=False)
        for _ in range(600):
            if not domain_exists(session, name):
                break
            time.sleep(0.1)
        else:
            raise AssertionError('the domain %s still runs after destroy' % name)


def qemu_log(session, name):
    path = os.path.join(session.env['XDG_CACHE_HOME'], 'libvirt', 'qemu', 'log', name + '.log')
    try:
        with open(path, 'rb') as f:
            return f.read().decode(errors='replace')[-4000:]
    except OSError as e:
        return '(%s)' % e
