# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What the nbdkit tests share: the programs they run, nbdkit serving an
# image through the plugin under test, an nginx of their own (for the
# filter over HTTP), libguestfs, and the TAP runner.
#
# Environment: VHDX_NBDKIT_PLUGIN (the plugin under test), VHDX_NBDKIT_FILTER
# (the filter), VHDX_TOOL, VHDX_MKIMAGE; VHDX_ASAN_RUNTIME when the plugin is built with
# AddressSanitizer (nbdkit is not, so the runtime must be preloaded into
# it).

import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

MiB = 1024 * 1024
KiB = 1024

PLUGIN = os.environ.get('VHDX_NBDKIT_PLUGIN')
FILTER = os.environ.get('VHDX_NBDKIT_FILTER')
TOOL = os.environ.get('VHDX_TOOL')
MKIMAGE = os.environ.get('VHDX_MKIMAGE')
ASAN_RUNTIME = os.environ.get('VHDX_ASAN_RUNTIME', '')
NBDKIT = shutil.which('nbdkit')
NBDCOPY = shutil.which('nbdcopy')
NBDINFO = shutil.which('nbdinfo')
QEMU_IMG = shutil.which('qemu-img')
QEMU_IO = shutil.which('qemu-io')
QEMU_NBD = shutil.which('qemu-nbd')
NGINX = shutil.which('nginx') or (
    '/usr/sbin/nginx' if os.access('/usr/sbin/nginx', os.X_OK) else None)
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
# such a server is killed once the plugin has let the image go, or the
# filter has been unloaded (which their debug output says: nbdkit runs with
# -v under ASan), or after a grace period when there is no log to tell.
EXIT_GRACE = 5
RELEASED = ('closed, its locks released', 'vhdx filter unloaded')
ASAN_VERBOSE = ['-v'] if ASAN_RUNTIME else []


def wait_for_exit(proc, what, log=None):
    """The exit status of @proc, or None when it hung at exit under ASan.
    Polls of 0.05 s: a minute is the hang detector."""
    released = None
    for poll in range(1200):
        if proc.poll() is not None:
            return proc.returncode
        if ASAN_RUNTIME:
            if log is None and poll >= EXIT_GRACE * 20:
                break
            if log is not None and released is None and any(
                    marker in read_text(log) for marker in RELEASED):
                released = poll
            if released is not None and poll >= released + 10:
                break
        time.sleep(0.05)
    # With --run, the server is the child of the process that ran the
    # command: all of them, when they run in a session of their own.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (PermissionError, ProcessLookupError):
        proc.kill()
    proc.wait()
    if ASAN_RUNTIME:
        return None
    raise AssertionError('%s did not exit' % what)


def process_alive(pid):
    """Whether process @pid has threads that run: not when it is gone, nor
    when it is a zombie whose other threads have all exited too (a killed
    process's first thread can be a zombie while others still close its
    files, and its locks with them)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
        return state != 'Z' or len(os.listdir('/proc/%d/task' % pid)) > 1
    except (OSError, IndexError):
        return False


def read_text(path):
    with open(path, 'rb') as f:
        return f.read().decode(errors='replace')


def sanitizer_reports(text):
    return [line for line in text.splitlines()
            if 'AddressSanitizer' in line or 'runtime error:' in line
            or 'LeakSanitizer' in line]


def nbdkit_refuses(workdir, params, options=()):
    """Run nbdkit with the plugin (@options before it: -r); it must refuse
    to start.  Returns its output."""
    log = os.path.join(workdir, 'refused.log')
    # In the foreground: a server that starts after all is stopped below.
    args = [NBDKIT, '-f', '-U', os.path.join(workdir, 'refused.sock')] + list(options) + [
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
    """nbdkit serving one image through the plugin on a Unix socket, for the
    test's clients.  nbdkit runs as `nbdkit --run` starts it, by default:
    the server serves for the life of a command of its own, here one that
    reads the test's pipe until stop() closes it (as a user's
    `--run 'qemu-system-x86_64 ...'` serves for the life of the virtual
    machine); with @foreground, as `nbdkit -f`.  @options go to nbdkit
    before the plugin (-r, -v, --filter=...); @plugin is another plugin than
    the one under test (`file` below the filter); @prefix runs nbdkit
    through another program (setpriv); @rundir holds the socket, the pid
    file and the log."""

    counter = 0

    def __init__(self, workdir, params, options=(), prefix=(), rundir=None, foreground=False,
                 plugin=None):
        Server.counter += 1
        name = 'nbdkit-%d' % Server.counter
        self.killed = False
        self.stopped = False
        self.foreground = foreground
        rundir = rundir or workdir
        self.socket = os.path.join(rundir, name + '.sock')
        self.pidfile = os.path.join(rundir, name + '.pid')
        self.log = os.path.join(workdir, name + '.log')
        self.uri = 'nbd+unix:///?socket=' + self.socket
        args = list(prefix) + [NBDKIT, '-U', self.socket, '-P', self.pidfile] + ASAN_VERBOSE
        if foreground:
            args += ['-f', '--exit-with-parent']
        args += list(options) + [plugin or PLUGIN] + [str(p) for p in params]
        if not foreground:
            args += ['--run', 'cat > /dev/null']
        with open(self.log, 'wb') as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=log,
                                         stderr=subprocess.STDOUT, env=nbdkit_env(),
                                         start_new_session=True)
        # The pid file holds the server's pid (not --run's command's) once it
        # serves.  Hang detector: a minute of polls.
        self.pid = None
        for _ in range(3000):
            if self.proc.poll() is not None:
                raise AssertionError('nbdkit exited with %d: %s' % (
                    self.proc.returncode, self.output().strip()))
            try:
                with open(self.pidfile) as f:
                    text = f.read()
                if text.endswith('\n'):  # written whole
                    self.pid = int(text)
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        else:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError('nbdkit did not start: %s' % self.output().strip())
        # nbdkit writes the pid file before the plugin's after_fork opens
        # and locks the image: serving starts once the lock is there.  The
        # filter opens the image at the first connection, and locks nothing.
        if plugin is None:
            self._wait_for_lock(params)

    def _wait_for_lock(self, params):
        image = None
        for p in (str(p) for p in params):
            if p.startswith('file='):
                image = p[len('file='):]
            elif '=' not in p and image is None:
                image = p
            if p.startswith('force-share'):
                return  # no lock to wait for
        if image is None or not os.path.isfile(image):
            return
        inode = os.stat(image).st_ino
        pattern = re.compile(r'\s\S+:\S+:%d\s' % inode)
        # Hang detector: a minute of polls.
        for _ in range(3000):
            if self.proc.poll() is not None and not process_alive(self.pid):
                return  # the caller sees why it stopped
            with open('/proc/locks') as f:
                if pattern.search(f.read()):
                    return
            time.sleep(0.02)
        os.killpg(self.proc.pid, signal.SIGKILL)
        raise AssertionError('nbdkit never locked %s: %s' % (image, self.output().strip()))

    def output(self):
        with open(self.log, 'rb') as f:
            return f.read().decode(errors='replace')

    def alive(self):
        """Whether the server (not --run's command) still runs."""
        return process_alive(self.pid)

    def stop(self):
        """Stop the server; it must not have crashed or reported memory
        errors.  Returns its output (again when called again)."""
        if self.stopped:
            return self.output()
        if self.proc.poll() is None:
            # --run's command ends, and nbdkit with it; -f stops on SIGTERM.
            self.proc.stdin.close()
            if self.foreground:
                self.proc.send_signal(signal.SIGTERM)
        status = wait_for_exit(self.proc, 'nbdkit', self.log)
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
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        # Until the server is gone (a zombie has closed its files, and let
        # its locks go); a minute of polls is the hang detector.
        for _ in range(1200):
            if not self.alive():
                break
            time.sleep(0.05)
        else:
            raise AssertionError('nbdkit survived SIGKILL')
        # What is left (--run's command, the process that ran it) goes too.
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        elif self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Captive:
    """nbdkit as its documentation and nbdkit(1) show it: serving the plugin
    for the one shell @command it runs (--run), on a Unix socket of its own
    (-U -) unless @listen says otherwise, its clients getting $uri,
    $unixsocket, $port and $nbd.  @options go before the plugin (-r,
    --filter=cow); @plugin is another plugin than the one under test.  Waits until nbdkit has exited; then .status is its exit
    status (the command's), .stdout the command's standard output and
    .output what nbdkit and the command wrote to standard error."""

    counter = 0

    def __init__(self, workdir, params, command, options=(), listen=('-U', '-'),
                 expect_status=0, plugin=None):
        Captive.counter += 1
        name = os.path.join(workdir, 'captive-%d' % Captive.counter)
        done = name + '.done'
        script = ''
        if ASAN_RUNTIME:
            # The clients are not ours: no sanitizer runtime in them.
            script += 'unset LD_PRELOAD ASAN_OPTIONS\n'
        # The marker keeps the command's status, for a server that hangs at
        # exit under ASan (see wait_for_exit) and is killed.
        script += '%s\nstatus=$?\necho $status > %s\nexit $status\n' % (
            command, shlex.quote(done))
        args = [NBDKIT] + list(listen) + ASAN_VERBOSE + list(options) + [plugin or PLUGIN] + [
            str(p) for p in params] + ['--run', script]
        with open(name + '.out', 'wb') as out, open(name + '.err', 'wb') as err:
            proc = subprocess.Popen(args, stdout=out, stderr=err, env=nbdkit_env(),
                                    start_new_session=True)
        # A hang detector of ten minutes for the command, in polls of 0.05 s.
        for _ in range(12000):
            if proc.poll() is not None or os.path.exists(done):
                break
            time.sleep(0.05)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError('nbdkit --run %r did not finish' % command)
        self.status = wait_for_exit(proc, 'nbdkit --run', name + '.err')
        if self.status is None:
            self.status = int(read_text(done))
        with open(name + '.out', 'rb') as f:
            self.stdout = f.read().decode(errors='replace')
        with open(name + '.err', 'rb') as f:
            self.output = f.read().decode(errors='replace')
        reports = sanitizer_reports(self.output)
        expect(not reports, 'sanitizer reports from nbdkit: %s' % self.output)
        if expect_status is not None:
            expect_equal(self.status, expect_status, 'exit status of nbdkit --run %r (%s)' % (
                command, self.output.strip()))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Nginx:
    """nginx serving @root on 127.0.0.1 at a free port, with a configuration,
    logs and temporary files of its own under @prefix."""

    def __init__(self, prefix, root):
        if NGINX is None:
            raise Skip('nginx not installed (Debian: nginx-light)')
        os.makedirs(prefix, exist_ok=True)
        self.access_log = os.path.join(prefix, 'access.log')
        self.error_log = os.path.join(prefix, 'error.log')
        conf = os.path.join(prefix, 'nginx.conf')
        for attempt in range(5):
            self.port = free_port()
            temp = ''.join('%s_temp_path %s;\n' % (kind, os.path.join(prefix, kind))
                           for kind in ('client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'))
            with open(conf, 'w') as f:
                # One process, which stays the test's child and keeps its
                # user (as root, workers would switch to nobody).
                f.write('daemon off;\nmaster_process off;\npid %s;\nerror_log %s;\n'
                        'events { worker_connections 64; }\n'
                        'http {\naccess_log %s;\n%s'
                        'server { listen 127.0.0.1:%d; root %s; }\n}\n' % (
                            os.path.join(prefix, 'nginx.pid'), self.error_log,
                            self.access_log, temp, self.port, root))
            self.proc = subprocess.Popen([NGINX, '-p', prefix, '-c', conf, '-e', self.error_log],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_listening():
                return
        raise AssertionError('nginx did not start: %s' % self.errors())

    def _wait_listening(self):
        for _ in range(500):
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        return False

    def errors(self):
        try:
            with open(self.error_log, errors='replace') as f:
                return f.read().strip()
        except OSError:
            return ''

    def url(self, name):
        return 'http://127.0.0.1:%d/%s' % (self.port, name)

    def requests(self, name):
        """The requests for /@name in the access log so far."""
        with open(self.access_log, errors='replace') as f:
            return [line for line in f if ' /%s ' % name in line]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


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
