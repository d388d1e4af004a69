# SPDX-License-Identifier: LGPL-2.1-or-later
"""qemu-nbd serving an image in the background: QEMU's side of the image
locks in the tests of the tool and of the pool helper."""

import os
import signal
import time


class QemuNbd:
    """qemu-nbd on a Unix socket (or, with @port, on 127.0.0.1:@port, its
    pid file beside @socket); --fork returns once the image is open and
    locked.  @run runs an argv and returns its CompletedProcess (how the
    test runs its programs, as which user).  started is False, and result
    says why, when qemu-nbd could not open the image.  @fmt is the format
    qemu-nbd reads the file as; with @persistent, it serves client after
    client (-t) rather than stopping when the first one leaves."""

    def __init__(self, run, socket, path, writable=True, fmt='vhdx', port=None,
                 persistent=False):
        self.socket = socket
        pidfile = socket + '.pid'
        args = ['qemu-nbd', '--fork', '--pid-file', pidfile, '-f', fmt]
        if port is None:
            args += ['-k', socket]
        else:
            args += ['-b', '127.0.0.1', '-p', str(port)]
        if persistent:
            args.append('-t')
        self.result = run(args + ([] if writable else ['-r']) + [path])
        self.started = self.result.returncode == 0
        if self.started:
            with open(pidfile) as f:
                self.pid = int(f.read())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if not self.started:
            return
        # Not our child: wait, counted, until it is gone (or a zombie).
        # qemu-nbd ignores a SIGTERM that comes before its main loop runs,
        # which may be after --fork returned: ask again now and then.
        for count in range(6000):
            if count % 50 == 0:
                try:
                    os.kill(self.pid, signal.SIGTERM)
                except ProcessLookupError:
                    break
            try:
                with open('/proc/%d/stat' % self.pid) as f:
                    if f.read().rsplit(')', 1)[1].split()[0] in 'ZX':
                        break
            except FileNotFoundError:
                break
            time.sleep(0.01)
        else:
            raise AssertionError('qemu-nbd did not stop')
        self.started = False
        if os.path.exists(self.socket):
            os.unlink(self.socket)
