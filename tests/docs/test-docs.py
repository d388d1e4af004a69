#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Every example of README.md and of the manual pages' EXAMPLES, run as
# written, printed as TAP: one test per code block.
#
# The blocks are read from the documents themselves: README's fenced
# blocks, and the .RS/.RE blocks of each page's EXAMPLES section.  A block
# runs as a shell script in a directory of its own, with these changes
# only: `vhdx` as nbdkit's plugin (and `--filter=vhdx`) is the plugin (the
# filter) of the build tree, an HTTP server's port is that of the test's, and the
# paths the examples name under /tmp, /srv and /mnt lie in that directory.
# The tools come first in PATH from the build tree (`vhdx`, `vhdx-pool`).
# Where a block shows a session (`$ ` prompts), each command runs in turn
# and its output must be the one shown (compared word by word, since
# columns are as wide as the paths in them; `…` stands for the rest of a
# line).  Each block has a fixture (the files its commands name, made by
# QEMU where QEMU can make them) and a check of what the commands did,
# against QEMU, the raw disks the fixtures were made from, or the output
# shown.  The libvirt examples run against a private session daemon (as
# nobody when run as root), the `nbdkit vhdx disk.vhdx` that serves on
# NBD's port in a network namespace of its own.
#
# A block that the test does not know fails: a new example needs a fixture
# and a check here.  A block that cannot run here is reported as a skip
# with the reason; synopses and listings are checked against the programs'
# --help and the source tree.
#
# Arguments: DOCUMENT:LINE of the blocks to run, when not all of them.
# Environment: VHDX_SOURCE_ROOT, VHDX_BUILD_ROOT, VHDX_TOOL, VHDX_POOL,
# VHDX_NBDKIT_PLUGIN, VHDX_NBDKIT_FILTER, VHDX_MKIMAGE; VHDX_VHDI_CAT when libvhdi was found;
# VHDX_ASAN_RUNTIME in a build with AddressSanitizer.

import json
import os
import random
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'common'))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'nbdkit'))
from nbdtest import (  # noqa: E402
    Nginx, Skip, expect, expect_equal, process_alive, sha256_file)
import vhdxspec  # noqa: E402

SOURCE_ROOT = os.environ.get('VHDX_SOURCE_ROOT')
BUILD_ROOT = os.environ.get('VHDX_BUILD_ROOT')
TOOL = os.environ.get('VHDX_TOOL')
POOL_TOOL = os.environ.get('VHDX_POOL')
PLUGIN = os.environ.get('VHDX_NBDKIT_PLUGIN')
FILTER = os.environ.get('VHDX_NBDKIT_FILTER')
MKIMAGE = os.environ.get('VHDX_MKIMAGE')
ASAN_RUNTIME = os.environ.get('VHDX_ASAN_RUNTIME')
VHDI_CAT = os.environ.get('VHDX_VHDI_CAT')

MiB = 1024 * 1024
KiB = 1024
SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin'
# Hang detectors, in polls of 0.05 s: no pass/fail depends on them.
POLLS_PER_MINUTE = 1200


def run(args, cwd=None, env=None, input=None, timeout=600):
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, cwd=cwd, env=env, input=input,
                          timeout=timeout)


def check_ok(result, what):
    if result.returncode != 0:
        raise AssertionError('%s exited with %d: %s%s' % (
            what, result.returncode, result.stdout.decode(errors='replace')[-2000:],
            result.stderr.decode(errors='replace')[-4000:]))
    return result


def need(*programs):
    for program in programs:
        if shutil.which(program) is None and not os.path.exists(program):
            raise Skip('%s is not installed' % program)


def read_file(path):
    with open(path, 'rb') as f:
        return f.read()


def finish(proc, polls):
    """Wait for @proc, which runs in a session of its own, for @polls polls;
    False when it had to be killed then, with everything it started."""
    for _ in range(polls):
        if proc.poll() is not None:
            return True
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return False


def wait_until(condition, what, polls=POLLS_PER_MINUTE):
    for _ in range(polls):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError('%s: still not the case after %d polls' % (what, polls))


# The documents' code blocks

class Block:
    """A code block of a document: where it is, its language (README's info
    string, or 'roff'), and its lines as a reader types them."""

    def __init__(self, document, line, language, lines):
        self.document = document
        self.line = line
        self.language = language
        self.lines = lines

    @property
    def name(self):
        return '%s:%d' % (self.document, self.line)

    @property
    def text(self):
        return '\n'.join(self.lines) + '\n'

    @property
    def key(self):
        """The first line that is not a comment: what names the block here."""
        for line in self.lines:
            if line.strip() and not line.lstrip().startswith('#'):
                return line.strip()
        return ''


def readme_blocks(path):
    blocks = []
    inside = None
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if line.startswith('```'):
                if inside is None:
                    inside = Block('README.md', number, line[3:].strip(), [])
                else:
                    blocks.append(inside)
                    inside = None
            elif inside is not None:
                inside.lines.append(line)
    expect(inside is None, 'README.md: a code block is not closed')
    return blocks


def roff_text(line):
    """The text of one .B line of an example, as typed."""
    text = line[len('.B'):].strip()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1]
    for escape, plain in (('\\-', '-'), ('\\(dq', '"'), ('\\(aq', "'"), ('\\e', '\\'),
                          ('\\~', ' '), ('\\&', '')):
        text = text.replace(escape, plain)
    return text


def man_blocks(path):
    """The .RS/.RE blocks of the EXAMPLES section of a manual page."""
    document = os.path.join('docs', os.path.basename(path))
    blocks = []
    section = None
    current = None
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if line.startswith('.SH'):
                section = line[3:].strip().strip('"')
                continue
            if section != 'EXAMPLES':
                continue
            if line.startswith('.RS'):
                current = Block(document, number, 'roff', [])
            elif line.startswith('.RE'):
                blocks.append(current)
                current = None
            elif current is not None and line.startswith('.B '):
                current.lines.append(roff_text(line))
            elif current is not None and line not in ('.nf', '.fi', '.br', '.PP'):
                raise AssertionError('%s:%d: %r in an example' % (document, number, line))
    return blocks


def documented_blocks():
    blocks = readme_blocks(os.path.join(SOURCE_ROOT, 'README.md'))
    docs = os.path.join(SOURCE_ROOT, 'docs')
    for name in sorted(os.listdir(docs)):
        if name.endswith('.1'):
            blocks += man_blocks(os.path.join(docs, name))
    return blocks


# Running a block

class Place:
    """A directory of one block's own, the environment its commands run in,
    and the user that runs them (None: this one)."""

    def __init__(self, directory, session=None):
        self.dir = directory
        self.session = session
        tools = [os.path.dirname(TOOL)]
        if POOL_TOOL:
            tools.append(os.path.dirname(POOL_TOOL))
        self.env = {
            'PATH': ':'.join(tools) + ':' + SYSTEM_PATH,
            'HOME': os.environ.get('HOME', '/root'),
            'LC_ALL': 'C.UTF-8',
            'TMPDIR': directory,
            # The libguestfs appliance, emulated: the README's advice for
            # hosts where it cannot use KVM, which holds on any host.
            'LIBGUESTFS_BACKEND': os.environ.get('LIBGUESTFS_BACKEND', 'direct'),
            'LIBGUESTFS_BACKEND_SETTINGS': os.environ.get('LIBGUESTFS_BACKEND_SETTINGS',
                                                          'force_tcg'),
        }

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def substitute(self, text):
        """The block's text with the plugin of the build tree for nbdkit's
        `vhdx` (the filter for `--filter=vhdx`), and this directory for /tmp,
        /srv and /mnt."""
        for outside in ('/tmp/', '/srv/', '/mnt/'):
            inside = self.dir + outside
            text = re.sub(r'(?<![\w./])' + re.escape(outside), lambda m: inside, text)
        # The plugin's and the filter's paths last: they may lie in /tmp.
        if FILTER:
            text = re.sub(r'--filter=vhdx(?=\s)', lambda m: '--filter=' + FILTER, text)
        return re.sub(r'(\bnbdkit\b[^\n]*?\s)vhdx(?=\s)', lambda m: m.group(1) + PLUGIN, text)

    def unsubstitute(self, text):
        """Output as it would read with the paths of the document."""
        for outside in ('/tmp', '/srv', '/mnt'):
            text = text.replace(self.dir + outside, outside)
        return text

    def command(self, args):
        """@args as the block's user runs them: in the libvirt session's
        environment (as nobody when run as root), or in self.env."""
        args = [str(a) for a in args]
        if self.session is None:
            return args
        env = dict(self.session.env, TMPDIR=self.dir)
        prefix = []
        if self.session.as_nobody:
            prefix = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']
        return prefix + ['env', '-i'] + ['%s=%s' % item for item in env.items()] + args

    def environment(self):
        return None if self.session is not None else self.env

    def script(self, text, name='example.sh'):
        path = self.path(name)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(self.substitute(text))
        if self.session is not None and self.session.as_nobody:
            os.chown(path, 65534, 65534)
        return path

    def run_script(self, text, extra_env=None, polls=10 * POLLS_PER_MINUTE):
        """Run @text with sh -e, as one script; returns (status, stdout, stderr)."""
        script = self.script(text)
        env = self.environment()
        if extra_env:
            env = dict(env or {}, **extra_env)
        out_path, err_path = self.path('example.out'), self.path('example.err')
        with open(out_path, 'wb') as out, open(err_path, 'wb') as err:
            proc = subprocess.Popen(self.command(['/bin/sh', '-e', script]), stdout=out,
                                    stderr=err, cwd=self.dir, env=env, start_new_session=True)
            if not finish(proc, polls):
                raise AssertionError('the example did not finish: %s' % read_file(err_path))
        return (proc.returncode, read_file(out_path).decode(errors='replace'),
                read_file(err_path).decode(errors='replace'))

    def run_ok(self, text, extra_env=None):
        status, out, err = self.run_script(text, extra_env)
        expect(status == 0, 'the example exited with %d:\n%s\n%s' % (status, out, err))
        return out, err


def transcript(block):
    """The commands of a block that shows a session, each with the output
    shown after it: [(command, [lines])]."""
    steps = []
    command = None
    for line in block.lines:
        if line.startswith('$ '):
            command = line[2:]
            steps.append([command, []])
        elif steps and steps[-1][0].endswith('\\'):
            steps[-1][0] += '\n' + line
        elif steps:
            if line.strip() or steps[-1][1]:
                steps[-1][1].append(line)
    for step in steps:
        while step[1] and not step[1][-1].strip():
            step[1].pop()
    return [(c, lines) for c, lines in steps]


def same_words(found_lines, shown_lines, what):
    """Compare output with what the document shows, word by word; a shown
    word `…` at the end of a line stands for the rest of it."""
    found = [line.split() for line in found_lines if line.strip()]
    shown = [line.split() for line in shown_lines if line.strip()]
    expect(len(found) == len(shown), '%s: %d lines shown, %d printed:\n%s' % (
        what, len(shown), len(found), '\n'.join(found_lines)))
    for f, s in zip(found, shown):
        if len(s) == 1 and len(f) == 1 and not s[0].strip('-') and not f[0].strip('-'):
            ok = True  # a rule under a table's heads, as wide as the table
        elif s and s[-1] == '…':
            ok = f[:len(s) - 1] == s[:-1] and len(f) >= len(s)
        else:
            ok = f == s
        expect(ok, '%s: shown %r, printed %r' % (what, ' '.join(s), ' '.join(f)))


def run_transcript(place, block, ready_polls=POLLS_PER_MINUTE):
    """Run each command of @block in turn and compare its output with what
    the block shows.  A command ending in `&` runs in the background while
    the next ones run, once it has printed what the block shows; it is
    stopped (SIGTERM) at the end."""
    background = []
    try:
        for number, (command, shown) in enumerate(transcript(block)):
            what = '%s: `%s`' % (block.name, command.splitlines()[0])
            if command.rstrip().endswith('&'):
                script = place.script(command.rstrip()[:-1] + '\n', 'step-%d.sh' % number)
                out = open(place.path('step-%d.out' % number), 'wb+')
                proc = subprocess.Popen(place.command(['/bin/sh', '-e', script]), stdout=out,
                                        stderr=subprocess.STDOUT, cwd=place.dir,
                                        env=place.environment(), start_new_session=True)
                background.append((proc, out))

                def printed(out=out, shown=shown):
                    out.seek(0)
                    return len(out.read().decode(errors='replace').splitlines()) >= len(shown)
                wait_until(lambda: printed() or proc.poll() is not None, what, ready_polls)
                out.seek(0)
                same_words(place.unsubstitute(out.read().decode(errors='replace')).splitlines(),
                           shown, what)
                continue
            status, out, err = place.run_script(command + '\n')
            expect(status == 0, '%s exited with %d: %s' % (what, status, err))
            same_words(place.unsubstitute(out).splitlines(), shown, what)
    finally:
        for proc, out in background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            out.close()
    return background


# Fixtures: the files that the examples name

def qemu_image(path, size, writes=(), subformat='dynamic', block_size=None):
    """An image made by qemu-img and written by qemu-io ((pattern, offset, length))."""
    options = 'subformat=%s' % subformat
    if block_size:
        options += ',block_size=%d' % block_size
    check_ok(run(['qemu-img', 'create', '-q', '-f', 'vhdx', '-o', options, path, str(size)]),
             'qemu-img create')
    commands = []
    for pattern, offset, length in writes:
        commands += ['-c', 'write -P 0x%02x %d %d' % (pattern, offset, length)]
    if commands:
        check_ok(run(['qemu-io', '-f', 'vhdx'] + commands + [path]), 'qemu-io')


def qemu_raw(image, raw):
    check_ok(run(['qemu-img', 'convert', '-f', 'vhdx', '-O', 'raw', image, raw]),
             'qemu-img convert -O raw')


def boot_sector():
    """A PC boot sector that writes itself to the second sector of the disk
    it was booted from (BIOS int 13h), reads that sector back, and powers the
    virtual machine off (ACPI, at the ports of QEMU's q35 and pc machines)
    when it reads what it wrote; otherwise it halts."""
    code = bytearray()
    jumps = []

    def emit(*data):
        code.extend(data)

    def jump(opcode):
        emit(opcode, 0)
        jumps.append(len(code) - 1)

    emit(0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0x8E, 0xC0, 0x8E, 0xD0)  # cli; ds = es = ss = 0
    emit(0xBC, 0x00, 0x7C, 0xFB)                                # sp = 0x7c00; sti
    emit(0x88, 0x16, 0x00, 0x06)                                # [0x600] = dl, the drive
    emit(0xB8, 0x01, 0x03, 0xB9, 0x02, 0x00, 0x30, 0xF6)        # write 1 sector, C0 H0 S2
    emit(0xBB, 0x00, 0x7C, 0xCD, 0x13)                          # from 0x7c00: int 13h
    jump(0x72)                                                  # jc halt
    emit(0xB8, 0x01, 0x02, 0xB9, 0x02, 0x00, 0x30, 0xF6)        # read it back
    emit(0x8A, 0x16, 0x00, 0x06)                                # dl = [0x600]
    emit(0xBB, 0x00, 0x80, 0xCD, 0x13)                          # to 0x8000: int 13h
    jump(0x72)                                                  # jc halt
    emit(0xBE, 0x00, 0x7C, 0xBF, 0x00, 0x80, 0xB9, 0x00, 0x01)  # si, di, cx = 256 words
    emit(0xFC, 0xF3, 0xA7)                                      # cld; repe cmpsw
    jump(0x75)                                                  # jne halt
    emit(0xB8, 0x00, 0x20)                                      # ax = 0x2000 (S5, enable)
    emit(0xBA, 0x04, 0x06, 0xEF)                                # out 0x604 (q35)
    emit(0xBA, 0x04, 0xB0, 0xEF)                                # out 0xb004 (pc)
    halt = len(code)
    emit(0xF4, 0xEB, 0xFD)                                      # halt: hlt; jmp halt
    for at in jumps:
        code[at] = halt - (at + 1)
    code += b'libvhdx documentation example\0'
    return bytes(code).ljust(510, b'\0') + b'\x55\xaa'


def boot_disk(place, path):
    """A 64 MiB VHDX (made by qemu-img from a raw disk) that boots into
    boot_sector(), with data beyond it; returns the raw disk."""
    raw = place.path(os.path.basename(path) + '.orig.raw')
    with open(raw, 'wb') as f:
        f.write(boot_sector())
        f.seek(5 * MiB)
        f.write(random.Random(1).randbytes(3 * MiB))
        f.truncate(64 * MiB)
    check_ok(run(['qemu-img', 'convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic',
                  raw, path]), 'qemu-img convert -O vhdx')
    return raw


def ext4_disk(place, path):
    """A VHDX (made by qemu-img) holding an MBR partition table and, in
    partition 1, an ext4 file system with hello.txt and docs/."""
    sfdisk = shutil.which('sfdisk') or '/usr/sbin/sfdisk'
    mkfs = shutil.which('mkfs.ext4') or '/usr/sbin/mkfs.ext4'
    need(sfdisk, mkfs)
    root = place.path('ext4-root')
    os.makedirs(os.path.join(root, 'docs'))
    with open(os.path.join(root, 'hello.txt'), 'w') as f:
        f.write('Hello from a VHDX disk\n')
    with open(os.path.join(root, 'docs', 'notes.txt'), 'w') as f:
        f.write(''.join('%d\n' % i for i in range(1000)))
    raw = place.path('ext4.raw')
    with open(raw, 'wb') as f:
        f.truncate(64 * MiB)
    check_ok(run([sfdisk, '-q', raw], input=b'label: dos\nstart=2048, type=83\n'), 'sfdisk')
    check_ok(run([mkfs, '-q', '-F', '-d', root, '-E', 'offset=%d' % MiB, raw,
                  '%dk' % (63 * 1024)]), 'mkfs.ext4')
    check_ok(run(['qemu-img', 'convert', '-f', 'raw', '-O', 'vhdx', raw, path]),
             'qemu-img convert')
    shutil.rmtree(root)
    return raw


def child_of(place, base, child, changes, block_size='2M'):
    """A differencing image of @base (made by `vhdx convert --parent`) whose
    disk is @base's with @changes ((offset, bytes)); returns its raw disk."""
    data = bytearray(check_ok(run([TOOL, 'cat', base]), 'vhdx cat').stdout)
    for offset, chunk in changes:
        data[offset:offset + len(chunk)] = chunk
    raw = place.path(os.path.basename(child) + '.raw')
    with open(raw, 'wb') as f:
        f.write(data)
    check_ok(run([TOOL, 'convert', '--block-size', block_size, '--parent', base, raw, child]),
             'vhdx convert --parent')
    return raw


def processes_naming(directory):
    """The processes whose command line names @directory."""
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = read_file('/proc/%s/cmdline' % pid)
        except OSError:
            continue
        if directory.encode() in cmdline:
            found.append(int(pid))
    return found


def mounts_under(directory):
    with open('/proc/self/mounts', encoding='utf-8') as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(directory + '/')]


def appliance_runs(place):
    probe = run(['guestfish', '--ro', '-a', '/dev/null', 'run'], env=place.env)
    if probe.returncode != 0:
        lines = probe.stderr.decode(errors='replace').strip().splitlines()
        raise Skip('libguestfs cannot run its appliance here: %s' % ' / '.join(lines[-3:]))


def expect_booted_and_wrote(place, image, raw, what):
    """The boot sector's second copy is in @image (read by QEMU when it can,
    else by `vhdx cat`), and the rest of the disk as it was."""
    expected = bytearray(read_file(raw))
    expected[512:1024] = expected[:512]
    found = run([TOOL, 'cat', image]).stdout
    expect(found[512:1024] == bytes(expected[512:1024]),
           '%s: the virtual machine did not write its second sector' % what)
    expect(found == bytes(expected), '%s: the disk differs elsewhere' % what)


# What each block is, and how it is checked

class Examples:
    """The handlers of the documents' blocks, by document and first line."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.session = None
        self.counter = 0

    def place(self, libvirt=False):
        self.counter += 1
        if libvirt:
            session = self.libvirt_session()
            directory = session.path('example-%d' % self.counter)
        else:
            session = None
            directory = os.path.join(self.workdir, 'example-%d' % self.counter)
        os.makedirs(directory)
        if session is not None and session.as_nobody:
            os.chown(directory, 65534, 65534)
        return Place(directory, session)

    def libvirt_session(self):
        if self.session is None:
            need('virsh', 'qemu-img')
            if not os.path.exists('/usr/sbin/libvirtd') and shutil.which('libvirtd') is None:
                raise Skip('libvirtd is not installed')
            if not POOL_TOOL:
                raise Skip('vhdx-pool is not built (libvirt\'s development files are missing)')
            from libvirtsession import Session
            self.session = Session()
        return self.session

    def close(self):
        if self.session is not None:
            self.session.close()

    # The handlers.  Each gets the block and returns a line of notes for
    # the TAP output, or raises Skip or AssertionError.

    def run_commands(self, block):
        # ./run (the demo) in a copy of the source tree; ./run test is this.
        commands = [line.split('#')[0].strip() for line in block.lines if line.strip()]
        expect_equal(commands, ['./run', './run test'], 'the two commands')
        tree = self.source_copy()
        status, out, err = tree.run_script('./run\n')
        expect(status == 0, './run exited with %d: %s' % (status, err[-3000:]))
        expect('No errors were found on the image.' in out, './run: %s' % out)
        image = tree.path('build', 'demo', 'demo.vhdx')
        info = json.loads(check_ok(run(['qemu-img', 'info', '--output=json', image]),
                                   'qemu-img info of the demo').stdout)
        expect_equal(info['virtual-size'], 1 << 30, 'virtual size of the demo (qemu-img)')
        raw = tree.path('demo.raw')
        qemu_raw(image, raw)
        disk = read_file(raw)
        readme = read_file(os.path.join(tree.dir, 'README.md'))
        copying = read_file(os.path.join(tree.dir, 'COPYING'))
        expect(disk[:len(readme)] == readme, 'QEMU does not read README.md at offset 0')
        expect(disk[600 * MiB:600 * MiB + len(copying)] == copying,
               'QEMU does not read COPYING at offset 600 MiB')
        return './run: demo written and read back by QEMU; `./run test` is this suite: not run'

    def source_copy(self):
        """A new copy of the source tree, without build directories, and
        with ../shared beside it when the tree has one."""
        place = self.place()
        tree = place.path('libvhdx')
        os.mkdir(tree)
        for name in os.listdir(SOURCE_ROOT):
            if name.startswith('build') or name == '.git':
                continue
            source = os.path.join(SOURCE_ROOT, name)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(tree, name), symlinks=True)
            else:
                shutil.copy2(source, os.path.join(tree, name))
        shared = os.path.join(os.path.dirname(SOURCE_ROOT), 'shared')
        if os.path.isdir(shared):
            os.symlink(shared, place.path('shared'))
        return Place(tree)

    def conventional_build(self, block):
        commands = [line.strip() for line in block.lines if line.strip()]
        expect_equal(commands, ['meson setup build', 'meson compile -C build',
                                'meson test -C build --print-errorlogs',
                                'meson install -C build'], 'the conventional build')
        tree = self.source_copy()
        expect(not os.path.exists(tree.path('build')), 'build/ exists in the copy already')
        tree.run_ok('meson setup build\nmeson compile -C build\n')
        destdir = tree.path('destdir')
        tree.run_ok('meson install -C build\n', {'DESTDIR': destdir})
        installed = []
        for root, _, files in os.walk(destdir):
            installed += [os.path.relpath(os.path.join(root, f), destdir) for f in files]
        for wanted in ('bin/vhdx', 'libvhdx-1.0.so', 'vhdx.h', 'vhdx-1.0.pc',
                       'man1/vhdx.1', 'nbdkit-vhdx-plugin.so', 'nbdkit-vhdx-filter.so',
                       'applications/vhdx-mount.desktop', 'mime/packages/vhdx-mime.xml'):
            expect(any(p.endswith(wanted) for p in installed),
                   'meson install did not install %s: %r' % (wanted, installed))
        return ('setup, compile and install (DESTDIR) in a copy of the tree, %d files '
                'installed; `meson test` is this suite: not run' % len(installed))

    def tool_synopsis(self, block, program, help_command):
        """Every command and option of a synopsis is one the program's --help knows."""
        checked = 0
        for line in block.lines:
            words = line.split()
            if not words:
                continue
            if words[0] == program:
                words = words[1:]
                while words and words[0].startswith('-') or (words and words[0] == '[-c'):
                    words = words[1:]
                if words and words[0] == 'URI]':
                    words = words[1:]
                command = words[0]
                result = run(help_command(command))
                check_ok(result, '%s %s --help' % (program, command))
                help_text = result.stdout.decode()
            for option in re.findall(r'--[a-z][a-z-]*', line):
                expect(option in help_text, '%s %s --help does not know %s' % (
                    program, command, option))
                checked += 1
        return '%d options found in the commands\' --help' % checked

    def vhdx_synopsis(self, block):
        return self.tool_synopsis(block, 'vhdx', lambda c: [TOOL, c, '--help'])

    def pool_synopsis(self, block):
        if not POOL_TOOL:
            raise Skip('vhdx-pool is not built')
        return self.tool_synopsis(block, 'vhdx-pool', lambda c: [POOL_TOOL, c, '--help'])

    def plugin_synopsis(self, block):
        self.need_nbdkit()
        result = check_ok(run(['nbdkit', PLUGIN, '--help']), 'nbdkit PLUGIN --help')
        help_text = result.stdout.decode()
        keys = re.findall(r'\b([a-z-]+)=', block.text)
        for key in keys:
            expect(key + '=' in help_text, 'nbdkit\'s help of the plugin lacks %s=' % key)
        return 'keys %s in the plugin\'s help' % ', '.join(sorted(set(keys)))

    def layout(self, block):
        for line in block.lines:
            path = line.split()[0]
            expect(os.path.isdir(os.path.join(SOURCE_ROOT, path)), 'no directory %s' % path)
        return 'a listing, not commands: every directory it names exists'

    def python_example(self, block):
        place = self.place()
        image = place.path('disk.vhdx')
        qemu_image(image, 1 << 30, [(0x11, 0, 3 * MiB), (0x22, 700 * MiB, MiB)],
                   block_size=MiB)
        lib = os.path.join(BUILD_ROOT, 'src', 'lib')
        script = place.path('example.py')
        with open(script, 'w') as f:
            f.write(block.text)
        env = dict(place.env, GI_TYPELIB_PATH=lib, LD_LIBRARY_PATH=lib)
        result = check_ok(run(['/usr/bin/python3', script], cwd=place.dir, env=env),
                          'the Python example')
        lines = result.stdout.decode().splitlines()
        expect_equal(lines[0], 'dynamic 1073741824 None', 'type, size and parent')
        extents = [tuple(line.split()) for line in lines[1:]]
        # QEMU allocates the 1 MiB blocks it writes, and no others.
        expect_equal([(int(o), int(n)) for o, n, kind in extents if kind == 'data'],
                     [(0, 3 * MiB), (700 * MiB, MiB)], 'the data extents')
        expect_equal(sum(int(n) for _, n, _ in extents), 1 << 30, 'the extents\' lengths')
        return '%d extents, the data ones the blocks QEMU wrote' % len(extents)

    def need_filter(self):
        need('nbdkit')
        if not FILTER:
            raise Skip('the nbdkit filter is not built (nbdkit-plugin-dev is missing)')

    def filter_synopsis(self, block):
        self.need_filter()
        result = check_ok(run(['nbdkit', '--filter=' + FILTER, 'null', '--help']),
                          'nbdkit --filter=FILTER null --help')
        help_text = result.stdout.decode()
        keys = re.findall(r'\b([a-z-]+)=', block.text.replace('--filter=', ''))
        for key in keys:
            expect(key + '=' in help_text, 'nbdkit\'s help of the filter lacks %s=' % key)
        return 'keys %s in the filter\'s help' % ', '.join(sorted(set(keys)))

    def served_over_http(self, block, place, image):
        """Run @block with nginx serving @image's directory, at the port the
        block names (8080) replaced by the test's."""
        need('nbdcopy', 'nbdinfo')
        with Nginx(place.path('nginx'), os.path.dirname(image)) as nginx:
            out, _ = place.run_ok(block.text.replace('127.0.0.1:8080',
                                                     '127.0.0.1:%d' % nginx.port))
            requests = len(nginx.requests(os.path.basename(image)))
        return out, requests

    def filter_http_copy(self, block):
        self.need_filter()
        place = self.place()
        os.mkdir(place.path('www'))
        image = place.path('www', 'disk.vhdx')
        qemu_image(image, 64 * MiB, [(0x91, 0, 2 * MiB), (0x92, 40 * MiB, MiB)])
        _, requests = self.served_over_http(block, place, image)
        check_ok(run(['qemu-img', 'compare', '-f', 'vhdx', '-F', 'raw', image,
                      place.path('disk.raw')]), 'qemu-img compare')
        return 'disk.raw as QEMU reads the image, in %d HTTP requests' % requests

    def filter_http_map(self, block):
        self.need_filter()
        place = self.place()
        os.mkdir(place.path('www'))
        image = place.path('www', 'disk.vhdx')
        qemu_image(image, 64 * MiB, [(0x93, 0, MiB), (0x94, 40 * MiB, MiB)], block_size=MiB)
        out, requests = self.served_over_http(block, place, image)
        extents = [line.split()[:3] for line in out.splitlines() if line.strip()]
        expect_equal([(int(o), int(n), int(t)) for o, n, t in extents],
                     [(0, MiB, 0), (MiB, 39 * MiB, 3), (40 * MiB, MiB, 0),
                      (41 * MiB, 23 * MiB, 3)], 'the extents')
        return 'the extents of the blocks QEMU wrote, in %d HTTP requests' % requests

    def filter_xz(self, block):
        self.need_filter()
        need('xz', 'qemu-img')
        place = self.place()
        image = place.path('disk.vhdx')
        qemu_image(image, 64 * MiB, [(0x95, MiB, 3 * MiB), (0x96, 60 * MiB, MiB)])
        place.run_ok(block.text)
        check_ok(run(['qemu-img', 'compare', '-f', 'vhdx', '-F', 'qcow2', image,
                      place.path('disk.qcow2')]), 'qemu-img compare')
        return 'disk.qcow2 as QEMU reads the image, through the xz filter'

    def filter_file_copy(self, block):
        self.need_filter()
        need('nbdcopy')
        place = self.place()
        image = place.path('disk.vhdx')
        qemu_image(image, 64 * MiB, [(0x97, 0, MiB), (0x98, 33 * MiB, 2 * MiB)])
        place.run_ok(block.text)
        check_ok(run(['qemu-img', 'compare', '-f', 'vhdx', '-F', 'raw', image,
                      place.path('disk.raw')]), 'qemu-img compare')
        return 'disk.raw as QEMU reads the image'

    def filter_moved_parent(self, block):
        self.need_filter()
        place = self.place()
        os.makedirs(place.path('srv'))
        made_base = place.path('base.vhdx')
        qemu_image(made_base, 64 * MiB, [(0x41, 0, 4 * MiB)])
        child_raw = child_of(place, made_base, place.path('vm.avhdx'),
                             [(MiB, b'\x42' * 8192), (30 * MiB, b'\x43' * MiB)])
        os.rename(made_base, place.path('srv', 'base.vhdx'))
        place.run_ok(block.text)
        check_ok(run(['qemu-img', 'compare', '-f', 'qcow2', '-F', 'raw', place.path('vm.qcow2'),
                      child_raw]), 'qemu-img compare')
        return 'vm.qcow2 as the checkpoint reads, with its moved parent'

    def filter_nbd_parent(self, block):
        """The checkpoint on nginx, its parent served by an nbdkit that the
        block starts in the background and stops."""
        self.need_filter()
        place = self.place()
        os.makedirs(place.path('srv'))
        os.makedirs(place.path('tmp'))
        os.mkdir(place.path('www'))
        base = place.path('srv', 'base.vhdx')
        qemu_image(base, 64 * MiB, [(0x51, 0, 4 * MiB), (0x52, 50 * MiB, MiB)])
        child = place.path('www', 'vm.avhdx')
        child_raw = child_of(place, base, child,
                             [(MiB + 512, b'\x53' * 4096), (50 * MiB, b'\x54' * MiB)])
        _, requests = self.served_over_http(block, place, child)
        expect(read_file(place.path('vm.raw')) == read_file(child_raw),
               'vm.raw is not the disk of the checkpoint')
        # kill only asks: the server exits soon after (polls of 0.05 s, a
        # minute at most).
        pid = int(read_file(place.path('tmp', 'base.pid')))
        for _ in range(1200):
            if not process_alive(pid):
                break
            time.sleep(0.05)
        else:
            raise AssertionError('the parent\'s server still runs after kill')
        return 'vm.raw as the checkpoint reads, in %d HTTP requests' % requests

    def need_nbdkit(self):
        need('nbdkit')
        if not PLUGIN:
            raise Skip('the nbdkit plugin is not built (nbdkit-plugin-dev is missing)')

    def guestfish_transcript(self, block):
        self.need_nbdkit()
        need('guestfish')
        place = self.place()
        ext4_disk(place, place.path('disk.vhdx'))
        appliance_runs(place)
        run_transcript(place, block)
        return 'output as shown'

    def qemu_examples(self, block):
        self.need_nbdkit()
        need('qemu-img', 'nbdcopy', 'qemu-system-x86_64')
        place = self.place()
        raw = boot_disk(place, place.path('disk.vhdx'))
        place.run_ok(block.text)
        check_ok(run(['qemu-img', 'compare', '-f', 'qcow2', '-F', 'raw', place.path('disk.qcow2'),
                      raw]), 'qemu-img compare of disk.qcow2')
        expect(read_file(place.path('disk.raw')) == read_file(raw), 'disk.raw differs')
        check_ok(run(['qemu-img', 'check', '-f', 'vhdx', place.path('disk.vhdx')]),
                 'qemu-img check after the boot')
        expect_booted_and_wrote(place, place.path('disk.vhdx'), raw, 'the boot')
        return 'qcow2 and raw copies as QEMU reads the image; the VM booted and wrote in place'

    def cow_server(self, block, image_name):
        """A server in the background with the cow filter, a VM started on
        its own, then kill: the VM read back what it wrote (it powers off
        only then), and the image is as it was."""
        self.need_nbdkit()
        need('qemu-system-x86_64')
        place = self.place()
        image = place.path(image_name)
        if image_name.endswith('.avhdx'):
            base = place.path('base.vhdx')
            boot_disk(place, base)
            child_of(place, base, image, [(10 * MiB, b'\x77' * 4096)])
        else:
            boot_disk(place, image)
        before = sha256_file(image)
        os.mkdir(place.path('tmp'))
        place.run_ok(block.text)
        pid = int(read_file(place.path('tmp', 'vhdx.pid')))
        wait_until(lambda: not os.path.exists('/proc/%d' % pid), 'nbdkit stops after kill')
        expect_equal(sha256_file(image), before, 'sha256 of the image under the cow filter')
        return 'the VM booted, wrote and read back through the overlay; the image unchanged'

    def cow_server_readme(self, block):
        return self.cow_server(block, 'disk.vhdx')

    def cow_server_checkpoint(self, block):
        return self.cow_server(block, 'vm_1234ABCD.avhdx')

    def boot_checkpoint(self, block):
        self.need_nbdkit()
        need('qemu-system-x86_64')
        place = self.place()
        base = place.path('base.vhdx')
        boot_disk(place, base)
        child = place.path('vm_1234ABCD.avhdx')
        child_raw = child_of(place, base, child, [(10 * MiB, b'\x77' * 4096)])
        base_sha = sha256_file(base)
        place.run_ok(block.text)
        expect_booted_and_wrote(place, child, child_raw, 'the boot from the checkpoint')
        expect_equal(sha256_file(base), base_sha, 'sha256 of the parent')
        return 'the VM booted from the checkpoint and wrote into it; its parent unchanged'

    def default_port(self, block):
        # nbdkit's default: every address, port 10809, in the background;
        # here in a network namespace where only the loopback exists.
        self.need_nbdkit()
        need('unshare', 'ip', 'nbdinfo')
        if os.geteuid() != 0:
            raise Skip('serving on NBD\'s port in a network namespace of its own needs root')
        place = self.place()
        qemu_image(place.path('disk.vhdx'), 64 * MiB, [(0x5a, 0, MiB)])
        script = place.script(block.text)
        check = ('ip link set lo up\n'
                 '/bin/sh -e %s\n'
                 'nbdinfo --size nbd://127.0.0.1\n'
                 'pkill -TERM nbdkit\n'
                 'while pgrep nbdkit > /dev/null; do sleep 0.05; done\n') % shlex.quote(script)
        result = run(['unshare', '--net', '--pid', '--fork', '--mount-proc', '/bin/sh', '-e',
                      '-c', check], cwd=place.dir, env=place.env, timeout=300)
        check_ok(result, 'nbdkit on the default port in a network namespace')
        expect_equal(result.stdout.decode().split(), [str(64 * MiB)], 'size read on port 10809')
        return 'served on port 10809 in a network namespace; nbdinfo read its size'

    def convert_qcow2(self, block):
        self.need_nbdkit()
        place = self.place()
        image = place.path('disk.vhdx')
        qemu_image(image, 256 * MiB, [(0x31, MiB, 5 * MiB), (0x32, 200 * MiB, MiB)])
        place.run_ok(block.text)
        check_ok(run(['qemu-img', 'compare', '-f', 'vhdx', '-F', 'qcow2', image,
                      place.path('disk.qcow2')]), 'qemu-img compare')
        return 'disk.qcow2 as QEMU reads the image'

    def moved_parent_copy(self, block):
        self.need_nbdkit()
        place = self.place()
        os.makedirs(place.path('srv'))
        made_base = place.path('base.vhdx')
        qemu_image(made_base, 64 * MiB, [(0x41, 0, 4 * MiB)])
        child_raw = child_of(place, made_base, place.path('vm.avhdx'),
                             [(MiB, b'\x42' * 8192), (30 * MiB, b'\x43' * MiB)])
        os.rename(made_base, place.path('srv', 'base.vhdx'))
        place.run_ok(block.text)
        expect(read_file(place.path('disk.raw')) == read_file(child_raw),
               'disk.raw is not the checkpoint\'s disk')
        return 'the checkpoint\'s disk, with its moved parent'

    def guestfish_list(self, block):
        self.need_nbdkit()
        need('guestfish')
        place = self.place()
        ext4_disk(place, place.path('disk.vhdx'))
        appliance_runs(place)
        out, _ = place.run_ok(block.text)
        expect_equal(out.split(), ['/dev/sda1:', 'ext4'], 'list-filesystems')
        return 'guestfish finds /dev/sda1: ext4'

    def guestfish_mkfs(self, block):
        self.need_nbdkit()
        need('guestfish')
        place = self.place()
        appliance_runs(place)
        place.run_ok(block.text)
        image = place.path('disk.vhdx')
        check_ok(run([TOOL, 'check', image]), 'vhdx check of the new file system\'s image')
        mbr = run([TOOL, 'cat', '--length=512', image]).stdout
        expect(mbr[510:512] == b'\x55\xaa' and mbr[446 + 4] == 0x83,
               'no MBR with a Linux partition: %r' % mbr[446:462])
        (start,) = struct.unpack_from('<I', mbr, 446 + 8)
        superblock = run([TOOL, 'cat', '--offset=%d' % (start * 512 + 1024), '--length=1024',
                          image]).stdout
        expect(superblock[56:58] == b'\x53\xef', 'no ext4 superblock in partition 1')
        return 'an MBR and an ext4 superblock in partition 1'

    def pool_transcript(self, block):
        place = self.place(libvirt=True)
        self.hyperv_pool(place)
        try:
            self.start_pool(place, 'hyperv', place.path('srv', 'hyperv'))
            run_transcript(place, block)
        finally:
            self.remove_pool(place, 'hyperv')
        return 'virsh and vhdx-pool print what is shown'

    def start_pool(self, place, pool, directory):
        for args in (('pool-define-as', pool, 'dir', '--target', directory),
                     ('pool-start', pool)):
            result = place.session.virsh(*args, check=False)
            if result.returncode != 0:
                raise Skip('the libvirt session daemon cannot be used: %s' %
                           result.stderr.decode(errors='replace').strip())

    def remove_pool(self, place, pool):
        place.session.virsh('pool-destroy', pool, check=False)
        place.session.virsh('pool-undefine', pool, check=False)

    def hyperv_pool(self, place):
        """The README's pool directory: six files, among them a damaged image,
        one left by a crash, a fixed and a dynamic one made by QEMU, a
        checkpoint of the dynamic one, and a raw swap file."""
        d = place.path('srv', 'hyperv')
        os.makedirs(d)
        with open(os.path.join(d, 'broken.vhdx'), 'wb') as f:
            f.write(b'vhdxfile' + bytes(2 * MiB - 8))
        check_ok(run([MKIMAGE, '--size', '4G', '--block-size', '32M', '--seed', '7',
                      '--pattern', '0:64M:1', '--dirty-block', '40', '--dirty-seed', '3',
                      os.path.join(d, 'crashed.vhdx')]), 'vhdx-mkimage')
        qemu_image(os.path.join(d, 'data.vhdx'), 64 * MiB, [(0x61, 0, 64 * MiB)],
                   subformat='fixed')
        disk = os.path.join(d, 'disk.vhdx')
        qemu_image(disk, 1 << 30, [(0x62, 0, 64 * MiB)])
        child_of(place, disk, os.path.join(d, 'disk_checkpoint.avhdx'),
                 [(2 * MiB, random.Random(2).randbytes(3 * MiB))])
        os.unlink(place.path('disk_checkpoint.avhdx.raw'))
        with open(os.path.join(d, 'swap.img'), 'wb') as f:
            for _ in range(100):
                f.write(bytes(MiB))
        place.session.give_away()

    def expose_transcript(self, block):
        reason = fuse_unavailable()
        if reason:
            raise Skip(reason)
        place = self.place(libvirt=True)
        self.hyperv_pool(place)
        run_transcript(place, block)
        return 'expose defines the pool; virsh lists what is shown'

    def man_pool_list(self, block):
        place = self.place(libvirt=True)
        d = place.path('images')
        os.makedirs(d)
        qemu_image(os.path.join(d, 'vm.vhdx'), 3 << 30, [(0x1, 0, 8 * MiB)])
        place.session.give_away()
        self.start_pool(place, 'default', d)
        try:
            out, _ = place.run_ok(block.text)
        finally:
            self.remove_pool(place, 'default')
        rows = [line.split() for line in out.splitlines() if line.split()[:1] == ['vm.vhdx']]
        expect_equal(len(rows), 2, 'vm.vhdx in both listings: %s' % out)
        expect('3.00 GiB' in ' '.join(rows[1]), 'the virtual size in vhdx-pool list: %s' % out)
        return 'vm.vhdx listed by virsh, and by vhdx-pool with its virtual size'

    def man_pool_manage(self, block):
        place = self.place(libvirt=True)
        d = place.path('images')
        os.makedirs(d)
        disk = os.path.join(d, 'vm.vhdx')
        qemu_image(disk, 64 * MiB, [(0x71, 0, 4 * MiB), (0x72, 40 * MiB, MiB)])
        child = os.path.join(d, 'vm_6D2B0C51.avhdx')
        child_raw = child_of(place, disk, child, [(2 * MiB, b'\x73' * MiB),
                                                  (63 * MiB, b'\x74' * 4096)])
        place.session.give_away()
        self.start_pool(place, 'hyperv', d)
        try:
            place.run_ok(block.text)
            listing = place.session.virsh('vol-list', 'hyperv').stdout.decode()
        finally:
            self.remove_pool(place, 'hyperv')
        expect('vm_6D2B0C51.avhdx' not in listing, 'libvirt lists the checkpoint: %s' % listing)
        expect(not os.path.exists(child), 'the checkpoint is still there')
        info = json.loads(check_ok(run(['qemu-img', 'info', '--output=json', disk]),
                                   'qemu-img info').stdout)
        expect_equal(info['virtual-size'], 64 * MiB + (10 << 30), 'qemu-img: the new size')
        check_ok(run(['qemu-img', 'check', '-f', 'vhdx', disk]), 'qemu-img check')
        raw = place.path('vm.raw')
        qemu_raw(disk, raw)
        with open(raw, 'rb') as f:
            expect(f.read(64 * MiB) == read_file(child_raw), 'QEMU: the first 64 MiB')
            for chunk in iter(lambda: f.read(64 * MiB), b''):
                expect(chunk == bytes(len(chunk)), 'QEMU: the 10 GiB added read as zeros')
        return 'the checkpoint merged and gone, vm.vhdx 10 GiB larger (qemu-img)'

    def remote_import(self, block):
        raise Skip('it names a remote host reached over SSH that runs libvirt\'s system daemon '
                   '(qemu+ssh://host/system); tests/pool runs import against a local session')

    def man_expose(self, block):
        reason = fuse_unavailable()
        if reason:
            raise Skip(reason)
        place = self.place(libvirt=True)
        home = place.session.home
        os.makedirs(os.path.join(home, 'HyperV'))
        qemu_image(os.path.join(home, 'HyperV', 'server.vhdx'), 2 << 30, [(0x7, MiB, MiB)])
        place.session.give_away()
        script = place.script(block.text)
        out_path = place.path('expose.out')
        with open(out_path, 'wb+') as out:
            proc = subprocess.Popen(place.command(['/bin/sh', '-e', script]), stdout=out,
                                    stderr=subprocess.STDOUT, cwd=place.dir,
                                    start_new_session=True)
            try:
                wait_until(lambda: b'is started' in read_file(out_path) or
                           proc.poll() is not None, 'expose starts')
                expect(proc.poll() is None, 'expose exited: %s' % read_file(out_path))
                listing = place.session.virsh('vol-list', 'hyperv').stdout.decode()
                expect('server.raw' in listing, 'virsh vol-list hyperv: %s' % listing)
            finally:
                # SIGTERM to vhdx-pool itself; the shell's status is its own.
                for pid in descendants(proc.pid):
                    if read_file('/proc/%d/comm' % pid).strip() == b'vhdx-pool':
                        os.kill(pid, signal.SIGTERM)
                finish(proc, POLLS_PER_MINUTE)
        expect_equal(proc.returncode, 0, 'exit status of expose after SIGTERM (%s)'
                     % read_file(out_path))
        return 'the pool hyperv lists server.raw; expose stops on SIGTERM'

    def attach_readme(self, block):
        """A defined domain of the session gets a checkpoint (of an image
        QEMU made) through the plugin, lists it, lets it go: the server
        stops, the chain is clean, the parent untouched."""
        self.need_nbdkit()
        need('qemu-system-x86_64')
        place = self.place(libvirt=True)
        session = place.session
        d = place.path('srv', 'hyperv')
        os.makedirs(d)
        base = os.path.join(d, 'disk.vhdx')
        qemu_image(base, 64 * MiB, [(0x61, 0, 2 * MiB)])
        child = os.path.join(d, 'disk_checkpoint.avhdx')
        child_of(place, base, child, [(3 * MiB, b'\x62' * 4096)])
        before = sha256_file(base)
        plugin_dir = session.path('bin', 'nbdkit')
        if not os.path.isdir(plugin_dir):
            os.makedirs(plugin_dir)
            shutil.copy2(PLUGIN, os.path.join(plugin_dir, 'nbdkit-vhdx-plugin.so'))
        domain_xml = place.path('vm.xml')
        with open(domain_xml, 'w') as f:
            f.write("<domain type='qemu'><name>vm</name><memory unit='MiB'>128</memory>"
                    "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices/></domain>\n")
        session.give_away()
        result = session.virsh('define', domain_xml, check=False)
        if result.returncode != 0:
            raise Skip('the libvirt session cannot define a domain: %s' %
                       result.stderr.decode(errors='replace').strip())
        try:
            out, _ = place.run_ok(block.text)
        finally:
            session.virsh('undefine', 'vm', check=False)
        expect(re.search(r'^\s*vda\s', out, re.M) is not None,
               'virsh domblklist does not list vda: %s' % out)
        expect('Stopped the NBD server' in out, 'detach did not stop the server: %s' % out)
        expect(not any(n.endswith('.sock') for n in os.listdir(os.path.join(session.runtime,
                                                                            'vhdx'))),
               'a socket is left')
        check_ok(run([TOOL, 'check', child]), 'vhdx check')
        expect_equal(sha256_file(base), before, 'sha256 of the parent')
        return 'vm listed vda, an NBD disk of the checkpoint; the server stopped after detach'

    def expose_read_write(self, block):
        """A file system made on a raw file of expose --read-write: QEMU
        reads the image, e2fsck finds the file system clean."""
        reason = fuse_unavailable()
        if reason:
            raise Skip(reason)
        need('mkfs.ext4', 'e2fsck')
        place = self.place()
        mnt = place.path('mnt', 'raw')
        try:
            place.run_ok(block.text)
        finally:
            if os.path.ismount(mnt):
                run(['fusermount3', '-u', '-z', mnt])
        image = place.path('srv', 'images', 'data.vhdx')
        # vhdx-pool closes the image once unmounted; QEMU waits for its lock.
        wait_until(lambda: run(['qemu-img', 'check', '-f', 'vhdx', image]).returncode == 0,
                   'qemu-img check of data.vhdx')
        raw = place.path('data.raw')
        qemu_raw(image, raw)
        check_ok(run(['e2fsck', '-fn', raw]), 'e2fsck of the disk QEMU reads')
        return 'QEMU reads an image with a clean ext4 file system'

    def vhdx_info_json(self, block):
        place = self.place()
        image = place.path('disk.vhdx')
        qemu_image(image, 100 * MiB, [(0x9, 0, MiB)])
        out, _ = place.run_ok(block.text)
        info = json.loads(out)
        qemu = json.loads(run(['qemu-img', 'info', '--output=json', image]).stdout)
        for key in ('virtual-size', 'cluster-size', 'format'):
            expect_equal(info[key], qemu[key], key)
        return 'virtual-size, cluster-size and format as qemu-img info says'

    def vhdx_cat_cmp(self, block):
        place = self.place()
        image = place.path('disk.vhdx')
        qemu_image(image, 100 * MiB, [(0x9, 0, MiB), (0x10, 50 * MiB, 3 * MiB)])
        qemu_raw(image, place.path('disk.raw'))
        place.run_ok(block.text)
        return 'cmp finds the virtual disk equal to qemu-img\'s raw conversion'

    def convert_moved_parent(self, block):
        place = self.place()
        os.makedirs(place.path('srv'))
        made_base = place.path('base.vhdx')
        qemu_image(made_base, 64 * MiB, [(0x51, 0, 4 * MiB)])
        child_raw = child_of(place, made_base, place.path('child.avhdx'),
                             [(3 * MiB, b'\x52' * 4096)])
        os.rename(made_base, place.path('srv', 'base.vhdx'))
        place.run_ok(block.text)
        expect(read_file(place.path('disk.raw')) == read_file(child_raw), 'disk.raw differs')
        return 'disk.raw is the checkpoint\'s disk'

    def export_folder(self, block):
        place = self.place()
        folder = place.path('mnt', 'export', 'Virtual Hard Disks')
        os.makedirs(folder)
        made = place.path('made-here')
        os.makedirs(made)
        base = os.path.join(made, 'base.vhdx')
        qemu_image(base, 64 * MiB, [(0x61, 0, 2 * MiB)])
        child_raw = child_of(place, base, place.path('disk.avhdx'), [(MiB, b'\x62' * 512)])
        os.rename(base, os.path.join(folder, 'base.vhdx'))
        out, _ = place.run_ok(block.text)
        expect('base.vhdx' in out, 'vhdx info does not name the parent: %s' % out)
        expect(read_file(place.path('disk.raw')) == read_file(child_raw), 'disk.raw differs')
        return 'info describes the checkpoint alone; cat finds its parent in the folder'

    def resize_shown(self, place, block, raw):
        """Run @block, which resizes disk.vhdx to 8 GiB and shows it with
        `vhdx info`; QEMU reads the result as @raw (None: zeros) extended
        with zeros."""
        out, _ = place.run_ok(block.text)
        image = place.path('disk.vhdx')
        qemu = json.loads(check_ok(run(['qemu-img', 'info', '--output=json', image]),
                                   'qemu-img info').stdout)
        expect_equal(qemu['virtual-size'], 8 << 30, 'qemu-img info virtual-size')
        check_ok(run(['qemu-img', 'check', '-f', 'vhdx', image]), 'qemu-img check')
        expect('(%d bytes)' % (8 << 30) in out, 'vhdx info does not show 8 GiB: %s' % out)
        expected = place.path('expected.raw')
        with open(expected, 'wb') as f:
            if raw is not None:
                f.write(read_file(raw))
            f.truncate(8 << 30)
        check_ok(run(['qemu-img', 'compare', '-q', '-f', 'vhdx', '-F', 'raw', image, expected]),
                 'qemu-img compare')

    def resize_new(self, block):
        place = self.place()
        self.resize_shown(place, block, None)
        return 'qemu-img: a clean 8 GiB image that reads as zeros; info shows the size'

    def resize_qemu_image(self, block):
        place = self.place()
        image = place.path('disk.vhdx')
        qemu_image(image, 1 << 30, [(0x71, 0, MiB), (0x72, (1 << 30) - 4096, 4096)])
        qemu_raw(image, place.path('disk.raw'))
        self.resize_shown(place, block, place.path('disk.raw'))
        return 'qemu-img: a clean 8 GiB image, its first GiB as before, zeros after'

    def compact_shown(self, block):
        """Run @block in a place whose disk.vhdx QEMU made with data in the
        even 1 MiB blocks and zeros (stored as data) in the odd ones, two
        of the data blocks then unmapped keeping their space, as Hyper-V
        leaves discarded blocks: the disk reads as before, QEMU finds the
        image clean, and the file is shorter by the blocks dropped."""
        place = self.place()
        image = place.path('disk.vhdx')
        qemu_image(image, 32 * MiB, [(0x81 + b if b % 2 == 0 else 0, b * MiB, MiB)
                                     for b in range(32)], block_size=MiB)
        spec = vhdxspec.Vhdx(image)
        with open(image, 'r+b') as f:
            for b in (2, 6):
                index = b + b // spec.chunk_ratio
                f.seek(spec.bat_offset + 8 * index)
                f.write(struct.pack('<Q', (spec.bat_entry(index) & ~7) | 3))
        qemu_raw(image, place.path('disk.raw'))
        before = os.stat(image).st_size
        out, _ = place.run_ok(block.text)
        report, _ = json.JSONDecoder().raw_decode(out[out.index('{'):])
        expect_equal(report['new-file-size'], os.stat(image).st_size, 'new-file-size')
        check_ok(run(['qemu-img', 'check', '-f', 'vhdx', image]), 'qemu-img check')
        check_ok(run(['qemu-img', 'compare', '-q', '-f', 'vhdx', '-F', 'raw', image,
                      place.path('disk.raw')]), 'qemu-img compare')
        expect(os.stat(image).st_size <= before - 18 * MiB, 'the file is %d bytes, %d before'
               % (os.stat(image).st_size, before))
        expect_equal(sorted(vhdxspec.Vhdx(image).stored_blocks()),
                     [b for b in range(0, 32, 2) if b not in (2, 6)], 'the blocks stored')
        return report

    def compact_man(self, block):
        report = self.compact_shown(block)
        expect_equal(report['blocks-dropped'], 18, 'blocks-dropped: zeros and unmapped')
        return 'qemu-img: clean, the same disk; 18 blocks dropped, the file shorter'

    def compact_readme(self, block):
        report = self.compact_shown(block)
        expect_equal(report['blocks-dropped'], 0, 'the quick compaction after the full one')
        return 'qemu-img: clean, the same disk; the zero and unmapped blocks dropped'

    def expect_locator_names(self, child, parent):
        """The locator of @child, read from the file as the specification
        lays it out: relative_path, with backslashes, leads from @child's
        directory to @parent, and parent_linkage is @parent's DataWriteGuid."""
        pairs = vhdxspec.Vhdx(child).parent_locator()
        relative = pairs['relative_path']
        expect('/' not in relative, 'relative_path has slashes: %r' % relative)
        resolved = os.path.join(os.path.dirname(child), *relative.split('\\'))
        expect_equal(os.path.realpath(resolved), os.path.realpath(parent), 'relative_path')
        expect_equal(pairs['parent_linkage'],
                     '{%s}' % vhdxspec.Vhdx(parent).header['data-write-guid'].lower(),
                     'parent_linkage')

    def expect_vhdi_reads(self, child, parent, raw):
        """libvhdi, given @child and @parent, reads @child as @raw."""
        if not VHDI_CAT:
            return False
        out = check_ok(run([VHDI_CAT, child, parent]), 'vhdi-cat').stdout
        expect(out == read_file(raw), 'libvhdi does not read the child as expected')
        return True

    def set_parent_readme(self, block):
        place = self.place()
        out, _ = place.run_ok(block.text)
        child, base = place.path('child.avhdx'), place.path('moved', 'base.vhdx')
        expect('Parent:               ./moved/base.vhdx' in out,
               'vhdx info does not find the moved parent: %s' % out)
        self.expect_locator_names(child, base)
        return 'the locator names moved/base.vhdx (vhdxspec); info finds it'

    def set_parent_man(self, block):
        place = self.place()
        os.makedirs(place.path('srv'))
        made_base = place.path('base.vhdx')
        qemu_image(made_base, 64 * MiB, [(0x41, 0, 4 * MiB), (0x42, 40 * MiB, MiB)])
        child_raw = child_of(place, made_base, place.path('vm.avhdx'),
                             [(3 * MiB, b'\x43' * 4096), (50 * MiB, b'\x44' * 512)])
        base = place.path('srv', 'base.vhdx')
        os.rename(made_base, base)
        place.run_ok(block.text)
        expect(read_file(place.path('disk.raw')) == read_file(child_raw), 'disk.raw differs')
        self.expect_locator_names(place.path('vm.avhdx'), base)
        vhdi = self.expect_vhdi_reads(place.path('vm.avhdx'), base, child_raw)
        return 'disk.raw is the checkpoint\'s disk; the locator names srv/base.vhdx%s' % (
            '; libvhdi reads the same' if vhdi else '')

    def expect_metadata_set(self, image, child, before, what):
        """@image, read from the file as the specification lays it out, has
        4 KiB physical sectors and a new Virtual Disk ID and DataWriteGuid
        (@before: as it was), which @child names as parent_linkage; QEMU
        finds @image clean."""
        after = vhdxspec.Vhdx(image)
        expect_equal(after.physical_sector_size, 4096, '%s: physical sector size' % what)
        expect(after.virtual_disk_id != before.virtual_disk_id, '%s: a new disk ID' % what)
        guid = after.header['data-write-guid'].lower()
        expect(guid != before.header['data-write-guid'].lower(),
               '%s: a new DataWriteGuid' % what)
        pairs = vhdxspec.Vhdx(child).parent_locator()
        expect_equal(pairs['parent_linkage'], '{%s}' % guid,
                     '%s: the child\'s parent_linkage' % what)
        expect('parent_linkage2' not in pairs, '%s: no parent_linkage2 left' % what)
        check_ok(run(['qemu-img', 'check', '-f', 'vhdx', image]), 'qemu-img check')

    def set_metadata_readme(self, block):
        place = self.place()
        script = block.text.split('vhdx set ')[0]
        place.run_ok(script)
        before = vhdxspec.Vhdx(place.path('base.vhdx'))
        expect_equal(before.physical_sector_size, 512, 'made with 512-byte physical sectors')
        out, _ = place.run_ok(block.text[len(script):])
        expect('Parent:               ./base.vhdx' in out,
               'vhdx info does not find the parent: %s' % out)
        self.expect_metadata_set(place.path('base.vhdx'), place.path('child.avhdx'), before,
                                 'README')
        return 'base.vhdx has 4 KiB physical sectors, a new ID (vhdxspec); the child is linked'

    def set_metadata_man(self, block):
        place = self.place()
        base = place.path('base.vhdx')
        qemu_image(base, 64 * MiB, [(0x51, 0, 4 * MiB), (0x52, 40 * MiB, MiB)])
        child_raw = child_of(place, base, place.path('vm.avhdx'),
                             [(3 * MiB, b'\x53' * 4096), (50 * MiB, b'\x54' * 512)])
        before = vhdxspec.Vhdx(base)
        expect_equal(before.physical_sector_size, 512, 'QEMU makes 512-byte physical sectors')
        qemu_raw(base, place.path('before.raw'))
        place.run_ok(block.text)
        expect(read_file(place.path('disk.raw')) == read_file(child_raw), 'disk.raw differs')
        self.expect_metadata_set(base, place.path('vm.avhdx'), before, 'vhdx(1)')
        qemu_raw(base, place.path('after.raw'))
        expect(read_file(place.path('after.raw')) == read_file(place.path('before.raw')),
               'QEMU reads the base otherwise')
        return ('base.vhdx: 4 KiB physical sectors, a new ID, QEMU reads it as before; '
                'disk.raw is the checkpoint\'s disk')

    def merge_readme(self, block):
        place = self.place()
        out, _ = place.run_ok(block.text)
        disk, child = place.path('disk.vhdx'), place.path('disk_6D2B0C51.avhdx')
        report = json.loads(out[out.index('{'):out.rindex('}') + 1])
        expect_equal(report['merged'], ['disk_6D2B0C51.avhdx'], 'the checkpoint merged')
        expect_equal(report['deleted'], True, 'deleted')
        expect(not os.path.exists(child), 'the checkpoint is still there')
        expect('Disk type:            dynamic' in out and 'Parent:' not in out,
               'vhdx info of the merged disk: %s' % out)
        info = json.loads(check_ok(run(['qemu-img', 'info', '--output=json', disk]),
                                   'qemu-img info').stdout)
        expect_equal(info['virtual-size'], 4 << 30, 'qemu-img: the size')
        check_ok(run(['qemu-img', 'check', '-f', 'vhdx', disk]), 'qemu-img check')
        return 'the checkpoint is gone; QEMU finds disk.vhdx clean, 4 GiB'

    def merge_man(self, block):
        place = self.place()
        base = place.path('base.vhdx')
        child = place.path('vm_6D2B0C51.avhdx')
        qemu_image(base, 64 * MiB, [(0x61, 0, 4 * MiB), (0x62, 40 * MiB, MiB)])
        child_raw = child_of(place, base, child,
                             [(3 * MiB, b'\x63' * 4096), (40 * MiB, bytes(MiB)),
                              (50 * MiB, b'\x64' * 512)])
        place.run_ok(block.text)
        expect(not os.path.exists(child), 'the checkpoint is still there')
        expect(read_file(place.path('disk.raw')) == read_file(child_raw), 'disk.raw differs')
        check_ok(run(['qemu-img', 'check', '-f', 'vhdx', base]), 'qemu-img check')
        check_ok(run(['qemu-img', 'compare', '-f', 'vhdx', '-F', 'raw', base, child_raw]),
                 'qemu-img compare')
        return 'QEMU reads base.vhdx as the checkpoint read; the checkpoint is gone'

    def convert_qcow2_man(self, block):
        self.need_nbdkit()
        place = self.place()
        base = place.path('base.vhdx')
        child = place.path('vm_6D2B0C51.avhdx')
        qemu_image(base, 64 * MiB, [(0x81, 0, 4 * MiB), (0x82, 40 * MiB, MiB)])
        child_raw = child_of(place, base, child, [(3 * MiB, b'\x83' * 4096),
                                                  (40 * MiB, bytes(MiB))])
        place.run_ok(block.text)
        out = place.path('vm.qcow2')
        info = json.loads(check_ok(run(['qemu-img', 'info', '--output=json', out]),
                                   'qemu-img info').stdout)
        expect_equal(info['format'], 'qcow2', 'the format')
        check_ok(run(['qemu-img', 'compare', '-f', 'qcow2', '-F', 'raw', out, child_raw]),
                 'qemu-img compare')
        return 'QEMU reads vm.qcow2 as the checkpoint chain read'

    def mounted(self, block, place, image):
        """Run @block, which mounts @image and unmounts it again, with a
        home and a runtime directory of the place's own: afterwards no
        process of the mount is left and the image is released (check
        --repair, which refuses an image that anyone has open, opens it).
        Whatever a failure left mounted is unmounted, its processes killed."""
        self.need_nbdkit()
        need('guestmount')
        if not os.path.exists('/dev/fuse'):
            raise Skip('no /dev/fuse')
        os.makedirs(place.path('home'))
        os.makedirs(place.path('run'), mode=0o700)
        env = {'HOME': place.path('home'), 'XDG_RUNTIME_DIR': place.path('run')}
        try:
            out, _ = place.run_ok(block.text, env)
            left = processes_naming(place.dir)
            expect(not left, 'processes left after vhdx umount: %r' % left)
        finally:
            for mountpoint in mounts_under(place.dir):
                run(['fusermount3', '-u', '-z', mountpoint])
            for pid in processes_naming(place.dir):
                os.kill(pid, signal.SIGKILL)
        check_ok(run([TOOL, 'check', '--repair', image]), 'vhdx check --repair after umount')
        return out

    def mount_readme(self, block):
        place = self.place()
        image = place.path('disk.vhdx')
        ext4_disk(place, image)
        before = sha256_file(image)
        out = self.mounted(block, place, image)
        expect_equal(out, 'Hello from a VHDX disk\n', 'what cat printed')
        expect_equal(sha256_file(image), before, 'sha256 of the image mounted read-only')
        return 'cat read hello.txt through the mount; the image unchanged and released'

    def mount_man_copy(self, block):
        place = self.place()
        image = place.path('disk.vhdx')
        ext4_disk(place, image)
        before = sha256_file(image)
        self.mounted(block, place, image)
        expect_equal(read_file(place.path('hello.txt')), b'Hello from a VHDX disk\n',
                     'the file copied out')
        expect_equal(sha256_file(image), before, 'sha256 of the image mounted read-only')
        return 'hello.txt copied out of the mount; the image unchanged and released'

    def mount_man_checkpoint(self, block):
        debugfs = shutil.which('debugfs') or '/usr/sbin/debugfs'
        need(debugfs)
        place = self.place()
        base = place.path('base.vhdx')
        ext4_disk(place, base)
        child = place.path('vm_6D2B0C51.avhdx')
        check_ok(run([TOOL, 'create', '--parent', base, child]), 'vhdx create --parent')
        before = sha256_file(base)
        self.mounted(block, place, child)
        expect_equal(sha256_file(base), before, 'sha256 of the parent')
        check_ok(run([TOOL, 'check', child]), 'vhdx check of the checkpoint')
        part = place.path('part1.raw')
        with open(part, 'wb') as f:
            f.write(check_ok(run([TOOL, 'cat', '--offset=%d' % MiB, child]), 'vhdx cat').stdout)
        out = check_ok(run([debugfs, '-R', 'cat /hello.txt', part]), 'debugfs').stdout
        expect_equal(out, b'hello\n', 'hello.txt in the checkpoint, as debugfs reads it')
        return 'debugfs reads hello.txt from the checkpoint; its parent unchanged'

    def benchmarks(self, block):
        raise Skip('the benchmarks take about an hour and 30 GB of disk; they compare '
                   'timings, which no test may assert')


def descendants(pid):
    """The processes below @pid."""
    children = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                stat = read_file('/proc/%s/stat' % name).decode(errors='replace')
            except OSError:
                continue
            parent = int(stat.rsplit(')', 1)[1].split()[1])
            children.setdefault(parent, []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def fuse_unavailable():
    if not os.path.exists('/dev/fuse'):
        return '/dev/fuse is absent'
    if shutil.which('fusermount3') is None:
        return 'fusermount3 is not installed'
    return None


# The blocks, by document and first line, and their handlers.
HANDLERS = {
    ('README.md', './run        # installs what building needs, builds the tool, makes a VHDX, '
     'writes two files into it through the library, and shows `vhdx info`, `vhdx map` and '
     '`vhdx check` of it'): Examples.run_commands,
    ('README.md', 'meson setup build'): Examples.conventional_build,
    ('README.md', 'vhdx info [--json] IMAGE                    what the image is: sizes, type, '
     'GUIDs, log state'): Examples.vhdx_synopsis,
    ('README.md', 'import gi'): Examples.python_example,
    ('README.md', 'nbdkit vhdx [file=]DISK.vhdx [parent=PARENT.vhdx] [parent-dir=DIR ...] '
     '[ignore-parent-mismatch=true]'): Examples.plugin_synopsis,
    ('README.md', '$ nbdkit -U - vhdx disk.vhdx \\'): Examples.guestfish_transcript,
    ('README.md', 'nbdkit -U - vhdx disk.vhdx --run \'qemu-img convert -f raw -O qcow2 "$uri" '
     'disk.qcow2\''): Examples.qemu_examples,
    ('README.md', 'nbdkit -U /tmp/vhdx.sock -P /tmp/vhdx.pid --filter=cow vhdx disk.vhdx'):
        Examples.cow_server_readme,
    ('README.md', 'vhdx-pool [-c URI] list [--json] POOL            what libvirt says of each '
     'volume, and the truth'): Examples.pool_synopsis,
    ('README.md', '$ virsh vol-list --details hyperv'): Examples.pool_transcript,
    ('README.md', '$ mkdir -p /srv/hyperv-raw'): Examples.expose_transcript,
    ('README.md', 'src/core/    the format engine: a static library using only GLib; reads '
     'through VhdxIo'): Examples.layout,
    ('README.md', './run bench                     # all cases; or name some: ./run bench '
     'random convert serve'): Examples.benchmarks,
    ('README.md', './run bench-write               # every case; or name some: ./run '
     'bench-write fill fio'): Examples.benchmarks,
    ('README.md', './run bench-manage              # all cases; or name some: ./run '
     'bench-manage merge compact'): Examples.benchmarks,
    ('README.md', './run bench-filter              # or: ./run bench-filter --runs 9'):
        Examples.benchmarks,
    ('docs/nbdkit-vhdx-plugin.1', 'nbdkit vhdx disk.vhdx'): Examples.default_port,
    ('docs/nbdkit-vhdx-plugin.1', 'nbdkit -U - vhdx vm.avhdx parent=/srv/base.vhdx \\'):
        Examples.moved_parent_copy,
    ('docs/nbdkit-vhdx-plugin.1', 'vhdx create disk.vhdx 10G'): Examples.guestfish_mkfs,
    ('docs/nbdkit-vhdx-plugin.1', 'nbdkit -U - vhdx vm_1234ABCD.avhdx \\'):
        Examples.boot_checkpoint,
    ('docs/nbdkit-vhdx-plugin.1', 'nbdkit -U /tmp/vhdx.sock -P /tmp/vhdx.pid --filter=cow vhdx '
     'vm_1234ABCD.avhdx'): Examples.cow_server_checkpoint,
    ('README.md', 'nbdkit [-r] --filter=vhdx PLUGIN [PLUGIN-PARAMETERS ...] '
     '[parent=PARENT.vhdx] [parent-dir=DIR ...] [ignore-parent-mismatch=true]'):
        Examples.filter_synopsis,
    ('README.md', 'nbdkit -r -U - --filter=vhdx curl http://127.0.0.1:8080/disk.vhdx --run '
     '\'nbdcopy "$uri" disk.raw\''): Examples.filter_http_copy,
    ('README.md', 'xz -k --block-size=1MiB disk.vhdx'): Examples.filter_xz,
    ('README.md', 'nbdkit -r -U /tmp/base.sock -P /tmp/base.pid file /srv/base.vhdx'):
        Examples.filter_nbd_parent,
    ('docs/nbdkit-vhdx-filter.1', 'nbdkit -r -U /tmp/base.sock -P /tmp/base.pid file '
     '/srv/base.vhdx'): Examples.filter_nbd_parent,
    ('docs/nbdkit-vhdx-filter.1', 'nbdkit -U - --filter=vhdx file disk.vhdx \\'):
        Examples.filter_file_copy,
    ('docs/nbdkit-vhdx-filter.1', 'nbdkit -r -U - --filter=vhdx curl '
     'http://127.0.0.1:8080/disk.vhdx \\'): Examples.filter_http_map,
    ('docs/nbdkit-vhdx-filter.1', 'nbdkit -r -U - --filter=vhdx file vm.avhdx '
     'parent=/srv/base.vhdx \\'): Examples.filter_moved_parent,
    ('docs/vhdx-pool.1', 'virsh vol-list --details default'): Examples.man_pool_list,
    ('docs/vhdx-pool.1', 'vhdx-pool -c qemu+ssh://host/system import --progress --format=qcow2 '
     '--pool=default vm.avhdx'): Examples.remote_import,
    ('docs/vhdx-pool.1', 'mkdir -p ~/.local/share/hyperv-raw'): Examples.man_expose,
    ('docs/vhdx-pool.1', 'mkdir -p /srv/images /mnt/raw'): Examples.expose_read_write,
    ('README.md', 'mkdir -p /srv/images /mnt/raw'): Examples.expose_read_write,
    ('README.md', 'vhdx-pool attach --config vm /srv/hyperv/disk_checkpoint.avhdx'):
        Examples.attach_readme,
    ('docs/vhdx-pool.1', 'vhdx-pool merge --pool=hyperv --delete-merged vm_6D2B0C51.avhdx'):
        Examples.man_pool_manage,
    ('docs/vhdx.1', 'vhdx info --json disk.vhdx'): Examples.vhdx_info_json,
    ('docs/vhdx.1', 'vhdx cat disk.vhdx | cmp - disk.raw'): Examples.vhdx_cat_cmp,
    ('docs/vhdx.1', 'vhdx convert --source-parent=/srv/base.vhdx child.avhdx disk.raw'):
        Examples.convert_moved_parent,
    ('docs/vhdx.1', 'vhdx info disk.avhdx'): Examples.export_folder,
    ('docs/vhdx.1', 'vhdx resize disk.vhdx +9G'): Examples.resize_qemu_image,
    ('README.md', 'vhdx create disk.vhdx 1G'): Examples.resize_new,
    ('README.md', 'vhdx create base.vhdx 1G'): Examples.set_parent_readme,
    ('docs/vhdx.1', 'vhdx set-parent vm.avhdx /srv/base.vhdx'): Examples.set_parent_man,
    ('docs/vhdx.1', 'vhdx compact --json disk.vhdx'): Examples.compact_man,
    ('README.md', 'vhdx compact --progress disk.vhdx      # reads every block, drops those of '
     'zeros'): Examples.compact_readme,
    ('README.md', 'vhdx create --physical-sector-size=512 base.vhdx 1G'):
        Examples.set_metadata_readme,
    ('docs/vhdx.1', 'vhdx set --physical-sector-size=4096 --reset-disk-id base.vhdx'):
        Examples.set_metadata_man,
    ('README.md', 'vhdx create disk.vhdx 4G'): Examples.merge_readme,
    ('docs/vhdx.1', 'vhdx merge --delete-merged vm_6D2B0C51.avhdx'): Examples.merge_man,
    ('docs/vhdx.1', 'vhdx convert --progress vm_6D2B0C51.avhdx vm.qcow2'):
        Examples.convert_qcow2_man,
    ('README.md', 'mkdir -p mnt'): Examples.mount_readme,
    ('docs/vhdx.1', 'mkdir -p /mnt/disk'): Examples.mount_man_copy,
    ('docs/vhdx.1', 'dir=$(vhdx mount --rw --partition=1 vm_6D2B0C51.avhdx)'):
        Examples.mount_man_checkpoint,
}


def handler_of(block):
    """Two examples of nbdkit-vhdx-plugin(1) start alike: the second line
    tells them apart."""
    if block.document == 'docs/nbdkit-vhdx-plugin.1' and block.key == 'nbdkit -U - vhdx disk.vhdx \\':
        second = block.lines[1].strip()
        if second.startswith("--run 'qemu-img convert"):
            return Examples.convert_qcow2
        if 'list-filesystems' in block.text:
            return Examples.guestfish_list
        return None
    return HANDLERS.get((block.document, block.key))


def main():
    for name in ('VHDX_SOURCE_ROOT', 'VHDX_BUILD_ROOT', 'VHDX_TOOL', 'VHDX_MKIMAGE'):
        if not os.environ.get(name):
            print('Bail out! %s is not set' % name)
            return 1
    blocks = documented_blocks()
    if sys.argv[1:]:
        # Only the blocks named (DOCUMENT:LINE), to work on one example.
        blocks = [b for b in blocks if b.name in sys.argv[1:]]
    print('1..%d' % len(blocks))
    sys.stdout.flush()
    if ASAN_RUNTIME:
        # The plugin built with AddressSanitizer loads into nbdkit only with
        # the runtime preloaded, which the commands as written do not do,
        # and nbdkit then hangs at exit: the examples run in the plain build.
        for number, block in enumerate(blocks, 1):
            print('ok %d - %s # SKIP the examples run as written in the build without '
                  'sanitizers' % (number, block.name))
        return 0
    failed = 0
    with tempfile.TemporaryDirectory(prefix='vhdx-test-docs-') as workdir:
        examples = Examples(workdir)
        try:
            for number, block in enumerate(blocks, 1):
                title = '%s (%s)' % (block.name, block.language or 'plain')
                handler = handler_of(block)
                try:
                    if handler is None:
                        raise AssertionError('an example the documentation test does not '
                                             'know: give it a fixture and a check here:\n%s'
                                             % block.text)
                    note = handler(examples, block)
                except Skip as e:
                    print('ok %d - %s # SKIP %s' % (number, title, e))
                except Exception:
                    failed += 1
                    print('not ok %d - %s' % (number, title))
                    for line in traceback.format_exc().splitlines():
                        print('# ' + line)
                else:
                    print('ok %d - %s: %s' % (number, title, note))
                sys.stdout.flush()
        finally:
            examples.close()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
