# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A private libvirt session (qemu:///session) for the tests: a temporary HOME
# and XDG directories, the daemon that virsh starts on first use, and, when
# run as root, everything run as `nobody`, as a desktop user's would be.
#
# Environment: VHDX_POOL (the vhdx-pool under test, copied with the library
# where nobody can run it).

import os
import shutil
import signal
import subprocess
import tempfile
import time

NOBODY = 65534
URI = 'qemu:///session'
VHDX_POOL = os.environ.get('VHDX_POOL')


class Session:
    """A private libvirt session, and the user that everything runs as."""

    def __init__(self):
        self.as_nobody = os.geteuid() == 0
        self.tmp = tempfile.mkdtemp(prefix='vhdx-pool-test-')
        os.chmod(self.tmp, 0o755)
        self.home = self.path('home')
        self.runtime = self.path('run')
        self.pool_dir = self.path('pool')
        self.bin = self.path('bin')
        for d in (self.home, self.runtime, self.pool_dir, self.path('index'),
                  self.path('src'), self.path('mnt'), self.path('work')):
            os.mkdir(d)
        os.chmod(self.runtime, 0o700)
        self.env = {
            'PATH': '/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin',
            'HOME': self.home,
            'XDG_RUNTIME_DIR': self.runtime,
            'XDG_CONFIG_HOME': os.path.join(self.home, '.config'),
            'XDG_CACHE_HOME': os.path.join(self.home, '.cache'),
            'XDG_STATE_HOME': os.path.join(self.home, '.local', 'state'),
            'LC_ALL': 'C.UTF-8',
        }
        for name in ('ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'MALLOC_PERTURB_'):
            if name in os.environ:
                self.env[name] = os.environ[name]
        try:
            self.pool_tool = self.install_tool()
            # vhdx-pool by its name too, as a user runs it.
            self.env['PATH'] = os.path.dirname(self.pool_tool) + ':' + self.env['PATH']
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def install_tool(self):
        """A copy of vhdx-pool and the library, which nobody can run
        wherever the build tree is; the tool finds the library at
        $ORIGIN/../lib, as in the build tree."""
        build_lib = os.path.join(os.path.dirname(os.path.dirname(VHDX_POOL)), 'lib')
        os.makedirs(os.path.join(self.bin, 'pool'))
        os.makedirs(os.path.join(self.bin, 'lib'))
        tool = os.path.join(self.bin, 'pool', 'vhdx-pool')
        shutil.copy2(VHDX_POOL, tool)
        for name in os.listdir(build_lib):
            if name.startswith('libvhdx-1.0.so') and not name.endswith('.p'):
                source = os.path.join(build_lib, name)
                target = os.path.join(self.bin, 'lib', name)
                if os.path.islink(source):
                    os.symlink(os.readlink(source), target)
                else:
                    shutil.copy2(source, target)
        return tool

    def give_away(self):
        """Everything in the temporary directory to the user of the session."""
        if not self.as_nobody:
            return
        for root, dirs, files in os.walk(self.tmp):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), NOBODY, NOBODY)
        os.chown(self.tmp, NOBODY, NOBODY)

    def command(self, args):
        prefix = []
        if self.as_nobody:
            prefix = ['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY,
                      '--clear-groups']
        return prefix + ['env', '-i'] + ['%s=%s' % item for item in self.env.items()] + \
            [str(a) for a in args]

    def run(self, args, timeout=120, input=None):
        return subprocess.run(self.command(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, cwd=self.tmp,
                              input=input)

    def popen(self, args):
        return subprocess.Popen(self.command(args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=self.tmp)

    def virsh(self, *args, check=True):
        result = self.run(['virsh', '-q', '-c', URI] + list(args))
        if check and result.returncode != 0:
            raise AssertionError('virsh %s: %s' % (' '.join(args),
                                                   result.stderr.decode(errors='replace')))
        return result

    def tool(self, *args):
        return self.run([self.pool_tool, '-c', URI] + list(args))

    def daemon_pid(self):
        try:
            with open(os.path.join(self.runtime, 'libvirt', 'libvirtd.pid')) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def kill_daemon(self):
        pid = self.daemon_pid()
        if pid is None or not process_alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)

    def close(self):
        self.kill_daemon()
        subprocess.run(['fusermount3', '-u', '-q', self.path('mnt')],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.tmp, ignore_errors=True)


def process_alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
        return state != 'Z'
    except OSError:
        return False


