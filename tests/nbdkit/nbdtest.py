# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What the nbdkit tests share: the programs they run, nbdkit serving an
# image through the plugin under test, libguestfs, and the TAP runner.
#
# Environment: VHDX_NBDKIT_PLUGIN (the plugin under test), VHDX_TOOL,
# VHDX_MKIMAGE; VHDX_ASAN_RUNTIME when the plugin is built with
# AddressSanitizer (nbdkit is not, so the runtime must be preloaded into
# it).

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

MiB = 1024 * 1024
KiB = 1024

PLUGIN = os.environ.get('VHDX_NBDKIT_PLUGIN')
TOOL = os.environ.get('VHDX_TOOL')
MKIMAGE = os.environ.get('VHDX_MKIMAGE')
ASAN_RUNTIME = os.environ.get('VHDX_ASAN_RUNTIME', '')
NBDKIT = shutil.which('nbdkit')
NBDCOPY = shutil.which('nbdcopy')
NBDINFO = shutil.which('nbdinfo')
QEMU_IMG = shutil.which('qemu-img')
QEMU_IO = shutil.which('qemu-io')
QEMU_NBD = shutil.which('qemu-nbd')
GUESTFISH = shutil.which('guestfish')
CLIENT_ENV = dict(os.environ, LC_ALL='C.UTF-8')
CLIENT_ENV.pop('LD_PRELOAD', None)


class Skip(Exception):
    pass


def run(args, timeout=300, env=None, **kwargs):
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env or CLIENT_ENV, timeout=timeout,
                          **kwargs)


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


def need(*programs):
    for name, path in programs:
        if path is None:
            raise Skip('%s not installed' % name)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(MiB), b''):
            h.update(block)
    return h.hexdigest()


def nbdkit_env():
    env = dict(os.environ)
    if ASAN_RUNTIME:
        env['LD_PRELOAD'] = ASAN_RUNTIME
        # nbdkit itself is not built with the sanitizer: its own allocations
        # at exit are not ours to judge.
        env['ASAN_OPTIONS'] = 'detect_leaks=0:abort_on_error=1'
    return env


# With the AddressSanitizer runtime preloaded, nbdkit hangs in its exit
# handlers once anything in the process has called gettext (glibc's locale
# lock is left unbalanced and p11-kit's destructor waits on it).  Serving is
# over by then, and sanitizer reports are printed when an error happens, so
# such a server is killed after a grace period instead of failing the test.
EXIT_GRACE = 5


def wait_for_exit(proc, what):
    """The exit status of @proc, or None when it hung at exit under ASan."""
    try:
        return proc.wait(timeout=EXIT_GRACE if ASAN_RUNTIME else 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        if ASAN_RUNTIME:
            return None
        raise AssertionError('%s did not exit' % what)


def sanitizer_reports(text):
    return [line for line in text.splitlines()
            if 'AddressSanitizer' in line or 'runtime error:' in line
            or 'LeakSanitizer' in line]


def nbdkit_refuses(workdir, params, options=()):
    """Run nbdkit with the plugin (@options before it: -r); it must refuse
    to start.  Returns its output."""
    log = os.path.join(workdir, 'refused.log')
    args = [NBDKIT, '-U', os.path.join(workdir, 'refused.sock')] + list(options) + [
        PLUGIN] + params
    with open(log, 'wb') as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                env=nbdkit_env())
    status = wait_for_exit(proc, 'nbdkit')
    with open(log, 'rb') as f:
        output = f.read().decode(errors='replace')
    expect(status != 0, 'nbdkit started with %r: %s' % (params, output))
    expect('error' in output, 'nbdkit gave no error: %r' % output)
    expect(not sanitizer_reports(output), 'sanitizer reports: %s' % output)
    return output


class Server:
    """nbdkit serving one image through the plugin, in the foreground of a
    child process, on a Unix socket.  @options go to nbdkit before the
    plugin (-r, -v); @prefix runs nbdkit through another program (setpriv);
    @rundir holds the socket, the pid file and the log."""

    counter = 0

    def __init__(self, workdir, params, options=(), prefix=(), rundir=None):
        Server.counter += 1
        name = 'nbdkit-%d' % Server.counter
        self.killed = False
        self.stopped = False
        rundir = rundir or workdir
        self.socket = os.path.join(rundir, name + '.sock')
        self.pidfile = os.path.join(rundir, name + '.pid')
        self.log = os.path.join(workdir, name + '.log')
        self.uri = 'nbd+unix:///?socket=' + self.socket
        args = list(prefix) + [NBDKIT, '-f', '-U', self.socket, '-P', self.pidfile,
                               '--exit-with-parent'] + list(options) + [PLUGIN] + [
                                   str(p) for p in params]
        with open(self.log, 'wb') as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         env=nbdkit_env())
        deadline = time.monotonic() + 60
        while not os.path.exists(self.pidfile):
            if self.proc.poll() is not None:
                raise AssertionError('nbdkit exited with %d: %s' % (
                    self.proc.returncode, self.output().strip()))
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError('nbdkit did not start: %s' % self.output().strip())
            time.sleep(0.02)

    def output(self):
        with open(self.log, 'rb') as f:
            return f.read().decode(errors='replace')

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """Stop the server; it must not have crashed or reported memory
        errors.  Returns its output (again when called again)."""
        if self.stopped:
            return self.output()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        status = wait_for_exit(self.proc, 'nbdkit')
        self.stopped = True
        output = self.output()
        reports = sanitizer_reports(output)
        expect(not reports, 'sanitizer reports from nbdkit: %s' % output)
        if status is not None and not self.killed:
            expect_equal(status, 0, 'nbdkit exit status (output: %s)' % output)
        return output

    def kill(self):
        """SIGKILL, as a crash: nothing of the server runs after it."""
        self.killed = True
        self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        elif self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def libguestfs_env():
    env = dict(CLIENT_ENV)
    env.setdefault('LIBGUESTFS_BACKEND', 'direct')
    # KVM can hang the appliance on some hosts (a CPU MSR it cannot set);
    # emulation is slower but always works.  Set the variable to override.
    env.setdefault('LIBGUESTFS_BACKEND_SETTINGS', 'force_tcg')
    return env


def guestfish(args, timeout=600, env=None, **kwargs):
    return run([GUESTFISH] + args, timeout=timeout, env=env or libguestfs_env(), **kwargs)


def skip_unless_appliance_runs():
    """Tell a broken appliance from a broken plugin: try it without NBD."""
    probe = guestfish(['--ro', '-a', '/dev/null', 'run'])
    if probe.returncode != 0:
        lines = probe.stderr.decode(errors='replace').strip().splitlines()
        raise Skip('libguestfs cannot run its appliance here: %s' % (
            ' / '.join(lines[-3:]) or 'exit status %d' % probe.returncode))


def main(suite, prefix):
    """Run the test_ methods of @suite (in the order they are defined) as TAP,
    in a temporary directory whose name starts with @prefix."""
    if not PLUGIN or not TOOL or not MKIMAGE:
        print('Bail out! VHDX_NBDKIT_PLUGIN, VHDX_TOOL and VHDX_MKIMAGE must be set')
        return 1
    if NBDKIT is None:
        print('1..0 # SKIP nbdkit is not installed')
        return 0
    if ASAN_RUNTIME and not os.path.isabs(ASAN_RUNTIME):
        print('1..0 # SKIP no AddressSanitizer runtime to preload into nbdkit (%s)'
              % ASAN_RUNTIME)
        return 0

    names = [n for n in suite.__dict__ if n.startswith('test_')]
    print('1..%d' % len(names))
    sys.stdout.flush()
    failed = 0
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        tests = suite(workdir)
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


def qemu_create(path, subformat, size, block_size=None, writes=()):
    """An image made by qemu-img, with qemu-io's patterns (pattern, offset, length)."""
    need(('qemu-img', QEMU_IMG), ('qemu-io', QEMU_IO))
    options = 'subformat=%s' % subformat
    if block_size:
        options += ',block_size=%d' % block_size
    check_ok(run([QEMU_IMG, 'create', '-q', '-f', 'vhdx', '-o', options, path, size]),
             'qemu-img create')
    commands = []
    for pattern, offset, length in writes:
        commands += ['-c', 'write -P 0x%02x %d %d' % (pattern, offset, length)]
    if commands:
        check_ok(run([QEMU_IO, '-f', 'vhdx'] + commands + [path]), 'qemu-io')
