#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The write benchmarks: the same NBD client (bench-nbd-write) against our
nbdkit plugin, against qemu-nbd on the same VHDX image, and against nbdkit's
file plugin on a raw file (the limit), in one run; prints a markdown table of
medians and ratios.

    bench-write.py --builddir BUILD [--data DIR] [--runs N] [CASE...]

Cases: fill (an empty 4 GiB dynamic image, 1 MiB sequential writes, one
flush), overwrite (200 000 random 4 KiB writes over an allocated 4 GiB image),
random-flush (random 4 KiB writes into an empty image, a flush every 64),
connections (one connection, then four writing their own quarter of an empty
image).  Every server flushes to the disk when the client flushes (fdatasync):
the durability compared is the same.  Images are made by qemu-img and by our
`vhdx create`; qemu-nbd writes the same files.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

GiB = 1 << 30
MiB = 1 << 20


class Server:
    """A server on a Unix socket, stopped (and its image closed) on exit."""

    def __init__(self, argv, sock):
        self.sock = sock
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        for _ in range(2000):
            if os.path.exists(sock):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f'{argv[0]} exited with {self.process.returncode}')
            time.sleep(0.01)
        raise RuntimeError(f'{argv[0]} did not listen on {sock}')

    @property
    def uri(self):
        return f'nbd+unix:///?socket={self.sock}'

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        if self.process.wait(timeout=600) not in (0, -signal.SIGTERM):
            raise RuntimeError(f'the server exited with {self.process.returncode}')


class Bench:
    def __init__(self, builddir, data, runs):
        self.builddir = os.path.abspath(builddir)
        self.data = os.path.abspath(data)
        self.runs = runs
        self.client = os.path.join(self.builddir, 'tests', 'bench', 'bench-nbd-write')
        self.plugin = os.path.join(self.builddir, 'src', 'nbdkit', 'nbdkit-vhdx-plugin.so')
        self.vhdx = os.path.join(self.builddir, 'src', 'cli', 'vhdx')
        os.makedirs(self.data, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix='vhdx-bench-write-', dir=self.data)
        self.rows = []

    def path(self, name):
        return os.path.join(self.data, name)

    def say(self, text):
        print(f'==> {text}', file=sys.stderr, flush=True)

    def run(self, *argv):
        subprocess.run([str(a) for a in argv], check=True, stdout=subprocess.DEVNULL)

    # Images.

    def empty_qemu(self, name, size, block):
        path = self.path(name)
        if not os.path.exists(path):
            self.run('qemu-img', 'create', '-q', '-f', 'vhdx', '-o',
                     f'subformat=dynamic,block_size={block}', path, size)
        return path

    def empty_ours(self, name, size, block):
        path = self.path(name)
        if not os.path.exists(path):
            self.run(self.vhdx, 'create', '--type=dynamic', f'--block-size={block}', path, size)
        return path

    def pattern_raw(self, name, size):
        path = self.path(name)
        if not os.path.exists(path):
            self.say(f'writing {size >> 30} GiB of pattern for the allocated images (once)')
            chunk = bytes((i * 131 + 7) & 0xff for i in range(MiB))
            with open(path + '.part', 'wb') as f:
                for i in range(size // MiB):
                    f.write(chunk[i % 251:] + chunk[:i % 251])
            os.rename(path + '.part', path)
        return path

    def allocated_qemu(self, name, raw, block):
        path = self.path(name)
        if not os.path.exists(path):
            self.run('qemu-img', 'convert', '-f', 'raw', '-O', 'vhdx', '-o',
                     f'subformat=dynamic,block_size={block}', raw, path + '.part')
            os.rename(path + '.part', path)
        return path

    def fresh(self, image):
        """A copy of @image to write, holes kept."""
        copy = os.path.join(self.tmp, 'work' + os.path.splitext(image)[1])
        if os.path.exists(copy):
            os.unlink(copy)
        self.run('cp', '--sparse=always', image, copy)
        return copy

    def empty_raw(self, size):
        copy = os.path.join(self.tmp, 'work.raw')
        if os.path.exists(copy):
            os.unlink(copy)
        with open(copy, 'wb') as f:
            f.truncate(size)
        return copy

    # Servers.

    def serve(self, who, image, connections=1):
        sock = os.path.join(self.tmp, 'sock')
        if os.path.exists(sock):
            os.unlink(sock)
        if who == 'libvhdx':
            argv = ['nbdkit', '-f', '-U', sock, self.plugin, f'file={image}']
        elif who == 'qemu-nbd':
            argv = ['qemu-nbd', '-f', 'vhdx', '-k', sock, '--cache=writeback',
                    f'--shared={connections}', image]
        else:
            argv = ['nbdkit', '-f', '-U', sock, 'file', f'file={image}']
        return Server(argv, sock)

    def measure(self, who, image, client_args, connections=1):
        """Median seconds of the client against @who over fresh copies made by @image()."""
        times = []
        for _ in range(self.runs):
            path = image()
            subprocess.run(['sync'], check=True)
            server = self.serve(who, path, connections)
            try:
                out = subprocess.run([self.client, server.uri] + [str(a) for a in client_args],
                                     check=True, capture_output=True, text=True).stdout
            finally:
                server.stop()
            times.append(json.loads(out.strip().splitlines()[-1])['seconds'])
        return statistics.median(times)

    def row(self, case, made_by, ours, qemu, limit, unit):
        self.rows.append((case, made_by, ours, qemu, limit, unit))
        self.say(f'{case} ({made_by}): libvhdx {ours:.2f} s, qemu-nbd {qemu:.2f} s, '
                 f'raw {limit:.2f} s')

    # Cases.

    def case_fill(self):
        size = 4 * GiB
        args = ['fill', 0, size, MiB]
        for made_by, empty in (('qemu-img', self.empty_qemu('fill-qemu.vhdx', size, '32M')),
                               ('vhdx create', self.empty_ours('fill-ours.vhdx', size, '32M'))):
            ours = self.measure('libvhdx', lambda: self.fresh(empty), args)
            qemu = self.measure('qemu-nbd', lambda: self.fresh(empty), args)
            limit = self.measure('raw', lambda: self.empty_raw(size), args)
            self.row('fill 4 GiB, 1 MiB writes, flush', made_by, ours, qemu, limit, 's')

    def case_overwrite(self):
        size = 4 * GiB
        raw = self.pattern_raw('pattern.raw', size)
        image = self.allocated_qemu('allocated-qemu.vhdx', raw, '32M')
        args = ['random', 200000, size, 1]
        ours = self.measure('libvhdx', lambda: image, args)
        qemu = self.measure('qemu-nbd', lambda: image, args)
        limit = self.measure('raw', lambda: raw, args)
        self.row('200 000 random 4 KiB overwrites', 'qemu-img convert', ours, qemu, limit, 's')

    def case_random_flush(self):
        size = 16 * GiB
        args = ['random', 20000, size, 2, 64]
        for made_by, empty in (('qemu-img', self.empty_qemu('sparse-qemu.vhdx', size, '1M')),
                               ('vhdx create', self.empty_ours('sparse-ours.vhdx', size, '1M'))):
            ours = self.measure('libvhdx', lambda: self.fresh(empty), args)
            qemu = self.measure('qemu-nbd', lambda: self.fresh(empty), args)
            limit = self.measure('raw', lambda: self.empty_raw(size), args)
            self.row('20 000 random 4 KiB writes into empty 1 MiB blocks, flush every 64',
                     made_by, ours, qemu, limit, 's')

    def case_connections(self):
        size = 2 * GiB
        empty = self.empty_qemu('conn-qemu.vhdx', size, '32M')
        for who in ('libvhdx', 'qemu-nbd', 'raw'):
            image = (lambda: self.empty_raw(size)) if who == 'raw' else (lambda: self.fresh(empty))
            one = self.measure(who, image, ['fill', 0, size, MiB, 1], 1)
            four = self.measure(who, image, ['fill', 0, size, MiB, 4], 4)
            self.rows.append(('fill 2 GiB: 1 connection / 4 connections', who, one, four,
                              one / four, 'x'))
            self.say(f'connections ({who}): 1: {one:.2f} s, 4: {four:.2f} s, '
                     f'aggregate {one / four:.2f}x')

    def table(self):
        print('| case | image made by | libvhdx | qemu-nbd | raw (nbdkit file) | '
              'qemu-nbd / libvhdx | libvhdx / raw |')
        print('|---|---|---|---|---|---|---|')
        for case, made_by, a, b, c, unit in self.rows:
            if unit == 'x':
                print(f'| {case} | {made_by} | {a:.2f} s | {b:.2f} s | | | aggregate {c:.2f}x |')
            else:
                print(f'| {case} | {made_by} | {a:.2f} s | {b:.2f} s | {c:.2f} s | '
                      f'{b / a:.2f} | {a / c:.2f} |')


CASES = ['fill', 'overwrite', 'random-flush', 'connections']


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--builddir', required=True)
    parser.add_argument('--data')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('cases', nargs='*')
    args = parser.parse_args()
    for tool in ('nbdkit', 'qemu-nbd', 'qemu-img'):
        if shutil.which(tool) is None:
            print(f'{tool} is not installed: the write benchmarks need it', file=sys.stderr)
            return 77
    bench = Bench(args.builddir, args.data or os.path.join(args.builddir, 'bench-data'),
                  args.runs)
    try:
        for case in args.cases or CASES:
            if case not in CASES:
                parser.error(f'unknown case {case}')
            getattr(bench, 'case_' + case.replace('-', '_'))()
    finally:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    bench.table()
    return 0


if __name__ == '__main__':
    sys.exit(main())
