#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The write benchmarks: the same NBD clients (bench-nbd-write, and fio through
its nbd engine) against our nbdkit plugin, against qemu-nbd on the same VHDX
image, and against nbdkit's file plugin on a raw file (the limit), in one run;
prints markdown tables of medians and ratios.

    bench-write.py --builddir BUILD [--data DIR] [--runs N] [CASE...]

Cases: fill (an empty 4 GiB dynamic image, 1 MiB sequential writes, one
flush), overwrite (200 000 random 4 KiB writes over an allocated 4 GiB image),
random-flush (random 4 KiB writes into an empty image, a flush every 64),
connections (one connection, then four writing their own quarter of an empty
image), fio (four guest-like fio jobs through fio's nbd engine on an empty
4 GiB image made by qemu-img) and fio-child (the same jobs on a differencing
child, made by `vhdx create --parent`, of a 2 MiB-block parent made by
qemu-img; QEMU cannot open it, so the raw file is the only other contender).
Every server flushes to the disk when the client flushes (fdatasync): the
durability compared is the same.  Images are made by qemu-img and by our
`vhdx create`; qemu-nbd writes the same files.  After the fio jobs, each
image is compared with the raw file by `qemu-img compare`.
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

# The fio jobs, run in this order on the same image: a database-like guest,
# reading back what it wrote, a desktop guest, an install.  Each covers a fixed
# number of bytes (io_size), so the bytes written are the same for every
# server (fio's random offsets and buffers are seeded) and the images can be
# compared afterwards.
FIO_COMMON = ['--bs=4k', '--scramble_buffers=0', '--refill_buffers=1', '--randseed=1187',
              '--lat_percentiles=1']
FIO_JOBS = (
    ('randwrite 4k, iodepth 32, fsync every 64, 1 GiB span',
     ['--rw=randwrite', '--iodepth=32', '--fsync=64', '--offset=0', '--size=1g',
      '--io_size=256m']),
    ('randread 4k, iodepth 32, after the randwrite',
     ['--rw=randread', '--iodepth=32', '--offset=0', '--size=1g', '--io_size=1g']),
    ('randrw 70/30 4k, iodepth 16',
     ['--rw=randrw', '--rwmixread=70', '--iodepth=16', '--offset=0', '--size=1g',
      '--io_size=1g']),
    ('seq write 1M, iodepth 4, fsync at the end, 2 GiB',
     ['--rw=write', '--bs=1m', '--iodepth=4', '--offset=2g', '--size=2g', '--end_fsync=1']),
)


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
        self.fio_rows = []

    def path(self, name):
        return os.path.join(self.data, name)

    def say(self, text):
        print(f'==> {text}', file=sys.stderr, flush=True)

    def run(self, *argv):
        subprocess.run([str(a) for a in argv], check=True, stdout=subprocess.DEVNULL)

    # Images.

    def empty_qemu(self, name, size, block=None):
        """An empty dynamic image made by qemu-img (its own block size without @block)."""
        path = self.path(name)
        if not os.path.exists(path):
            options = 'subformat=dynamic' + (f',block_size={block}' if block else '')
            self.run('qemu-img', 'create', '-q', '-f', 'vhdx', '-o', options, path, size)
        return path

    def empty_ours(self, name, size, block):
        path = self.path(name)
        if not os.path.exists(path):
            self.run(self.vhdx, 'create', '--type=dynamic', f'--block-size={block}', path, size)
        return path

    def pattern_raw(self, name, size, every=1):
        """A raw file of a pattern that differs from MiB to MiB; with @every 2, only every
        other 2 MiB holds it, the rest are holes."""
        path = self.path(name)
        if not os.path.exists(path):
            self.say(f'writing {size >> 30} GiB of pattern for the allocated images (once)')
            chunk = bytes((i * 131 + 7) & 0xff for i in range(MiB))
            with open(path + '.part', 'wb') as f:
                for i in range(size // MiB):
                    if (i // 2) % every == 0:
                        f.seek(i * MiB)
                        f.write(chunk[i % 251:] + chunk[:i % 251])
                f.truncate(size)
            os.rename(path + '.part', path)
        return path

    def allocated_qemu(self, name, raw, block):
        path = self.path(name)
        if not os.path.exists(path):
            self.run('qemu-img', 'convert', '-f', 'raw', '-O', 'vhdx', '-o',
                     f'subformat=dynamic,block_size={block}', raw, path + '.part')
            os.rename(path + '.part', path)
        return path

    def fresh(self, image, name='work'):
        """A copy of @image to write, holes kept."""
        copy = os.path.join(self.tmp, name + os.path.splitext(image)[1])
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
            argv = ['qemu-nbd', '-f', 'vhdx', '-k', sock, '--cache=writeback', '--persistent',
                    f'--shared={connections}', image]
        else:
            argv = ['nbdkit', '-f', '-U', sock, 'file', f'file={image}']
        return Server(argv, sock)

    def settle(self, path):
        """Writes everything back and drops @path from the page cache, so that every server
        starts from the same state: the pages another tool's writes left cached, in the
        sizes its writes chose, cost the next writer of the file more or less than fresh
        ones."""
        subprocess.run(['sync'], check=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    def warm(self, path):
        """Reads the data of @path (not its holes) into the page cache."""
        with open(path, 'rb', buffering=0) as f:
            end = os.fstat(f.fileno()).st_size
            at = 0
            while at < end:
                try:
                    at = os.lseek(f.fileno(), at, os.SEEK_DATA)
                except OSError:
                    break
                hole = os.lseek(f.fileno(), at, os.SEEK_HOLE)
                while at < hole:
                    at += len(os.pread(f.fileno(), min(4 * MiB, hole - at), at))

    def rounds(self, contenders):
        """(who, make) of every run: self.runs rounds, the order of the contenders reversed
        every other round, so that none is always the first after a pause (this virtual
        machine's memory is slow to touch again once it has been idle)."""
        for round_ in range(self.runs):
            yield from contenders if round_ % 2 == 0 else contenders[::-1]

    def measure(self, contenders, client_args, connections=1):
        """Median seconds of the client against each contender, (who, image) where image()
        makes the file to serve."""
        times = {who: [] for who, _ in contenders}
        for who, image in self.rounds(contenders):
            path = image()
            self.settle(path)
            server = self.serve(who, path, connections)
            try:
                out = subprocess.run([self.client, server.uri] + [str(a) for a in client_args],
                                     check=True, capture_output=True, text=True).stdout
            finally:
                server.stop()
            times[who].append(json.loads(out.strip().splitlines()[-1])['seconds'])
        return {who: statistics.median(t) for who, t in times.items()}

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
            t = self.measure([('libvhdx', lambda: self.fresh(empty)),
                              ('qemu-nbd', lambda: self.fresh(empty)),
                              ('raw', lambda: self.empty_raw(size))], args)
            self.row('fill 4 GiB, 1 MiB writes, flush', made_by, t['libvhdx'], t['qemu-nbd'],
                     t['raw'], 's')

    def case_overwrite(self):
        size = 4 * GiB
        raw = self.pattern_raw('pattern.raw', size)
        image = self.allocated_qemu('allocated-qemu.vhdx', raw, '32M')
        args = ['random', 200000, size, 1]
        t = self.measure([('libvhdx', lambda: image), ('qemu-nbd', lambda: image),
                          ('raw', lambda: raw)], args)
        self.row('200 000 random 4 KiB overwrites', 'qemu-img convert', t['libvhdx'],
                 t['qemu-nbd'], t['raw'], 's')

    def case_random_flush(self):
        size = 16 * GiB
        args = ['random', 20000, size, 2, 64]
        for made_by, empty in (('qemu-img', self.empty_qemu('sparse-qemu.vhdx', size, '1M')),
                               ('vhdx create', self.empty_ours('sparse-ours.vhdx', size, '1M'))):
            t = self.measure([('libvhdx', lambda: self.fresh(empty)),
                              ('qemu-nbd', lambda: self.fresh(empty)),
                              ('raw', lambda: self.empty_raw(size))], args)
            self.row('20 000 random 4 KiB writes into empty 1 MiB blocks, flush every 64',
                     made_by, t['libvhdx'], t['qemu-nbd'], t['raw'], 's')

    def case_connections(self):
        size = 2 * GiB
        empty = self.empty_qemu('conn-qemu.vhdx', size, '32M')
        contenders = [('libvhdx', lambda: self.fresh(empty)),
                      ('qemu-nbd', lambda: self.fresh(empty)),
                      ('raw', lambda: self.empty_raw(size))]
        ones = self.measure(contenders, ['fill', 0, size, MiB, 1], 1)
        fours = self.measure(contenders, ['fill', 0, size, MiB, 4], 4)
        for who, _ in contenders:
            one, four = ones[who], fours[who]
            self.rows.append(('fill 2 GiB: 1 connection / 4 connections', who, one, four,
                              one / four, 'x'))
            self.say(f'connections ({who}): 1: {one:.2f} s, 4: {four:.2f} s, '
                     f'aggregate {one / four:.2f}x')

    # fio through its nbd engine.

    def fio(self, uri, job):
        """IOPS, bytes per second and the p99 latency in seconds (the worse of reads and
        writes) of one fio job against @uri."""
        out = subprocess.run(['fio', '--name=guest', '--ioengine=nbd', f'--uri={uri}',
                              '--output-format=json'] + FIO_COMMON + job,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f'fio exited with {out.returncode}: {out.stderr.strip()}')
        result = json.loads(out.stdout[out.stdout.index('{'):])['jobs'][0]
        if result['error']:
            raise RuntimeError(f'fio failed with error {result["error"]}')
        done = [result[d] for d in ('read', 'write') if result[d]['total_ios']]
        return (sum(d['iops'] for d in done), sum(d['bw_bytes'] for d in done),
                max(d['lat_ns']['percentile']['99.000000'] for d in done) / 1e9)

    def fio_contenders(self, label, contenders, check, warm=False):
        """Runs every fio job, in order, on a fresh image of each contender in each round
        (with @warm, its data read into the page cache first); adds a row per job with the
        medians, after @check has compared each contender's last image with the raw
        file's."""
        runs = {who: [] for who, _ in contenders}
        last = {}
        for who, make in self.rounds(contenders):
            path = make()
            self.settle(path)
            if warm:
                self.warm(path)
            server = self.serve(who, path)
            try:
                runs[who].append([self.fio(server.uri, job) for _, job in FIO_JOBS])
            finally:
                server.stop()
            last[who] = path
        for who, path in last.items():
            if who != 'raw':
                check(path, last['raw'])
        for i, (job, _) in enumerate(FIO_JOBS):
            medians = {who: tuple(statistics.median(run[i][k] for run in runs[who])
                                  for k in range(3)) for who in runs}
            self.fio_rows.append((job, label, medians))
            self.say(f'{job} ({label}): ' + ', '.join(
                f'{who} {m[0]:.0f} IOPS p99 {m[2] * 1e3:.2f} ms' for who, m in medians.items()))

    def have_fio(self):
        if shutil.which('fio') is None or subprocess.run(
                ['fio', '--enghelp=nbd'], capture_output=True).returncode != 0:
            self.say('skipped: fio with its nbd engine is not installed (apt-get install fio)')
            return False
        return True

    def compare(self, image, raw, image_format):
        out = subprocess.run(['qemu-img', 'compare', '-f', image_format, '-F', 'raw', image, raw],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f'{image} and {raw} differ after the fio jobs: {out.stdout}'
                               f'{out.stderr}')

    def case_fio(self):
        if not self.have_fio():
            return
        size = 4 * GiB
        empty = self.empty_qemu('fio-qemu.vhdx', size)
        contenders = [('libvhdx', lambda: self.fresh(empty, 'libvhdx')),
                      ('qemu-nbd', lambda: self.fresh(empty, 'qemu-nbd')),
                      ('raw', lambda: self.empty_raw(size))]
        self.fio_contenders('empty 4 GiB dynamic, qemu-img', contenders,
                            lambda path, raw: self.compare(path, raw, 'vhdx'))

    def case_fio_child(self):
        if not self.have_fio():
            return
        size = 4 * GiB
        half = self.pattern_raw('half-2m.raw', size, every=2)
        parent = self.allocated_qemu('parent-2m.vhdx', half, '2M')

        def child():
            path = os.path.join(self.tmp, 'child.vhdx')
            if os.path.exists(path):
                os.unlink(path)
            self.run(self.vhdx, 'create', f'--parent={parent}', path)
            self.settle(parent)
            self.warm(parent)
            return path

        def check(path, raw):
            # QEMU cannot open a differencing image: qemu-img reads it through the plugin.
            subprocess.run(['nbdkit', '-U', '-', '--readonly', self.plugin, f'file={path}',
                            '--run', f'qemu-img compare -f raw -F raw "$uri" {raw}'],
                           check=True, stdout=subprocess.DEVNULL)

        # Both read what the parent holds from the page cache: the parent, a file kept
        # between runs, and the fresh copy of the raw file would come from the host's
        # cache or its disk unequally.
        contenders = [('libvhdx', child), ('raw', lambda: self.fresh(half, 'raw'))]
        self.fio_contenders('differencing child of a 2 MiB-block parent, half allocated',
                            contenders, check, warm=True)

    def table(self):
        if self.rows:
            self.client_table()
        if self.fio_rows:
            self.fio_table()

    def client_table(self):
        print('| case | image made by | libvhdx | qemu-nbd | raw (nbdkit file) | '
              'qemu-nbd / libvhdx | libvhdx / raw |')
        print('|---|---|---|---|---|---|---|')
        for case, made_by, a, b, c, unit in self.rows:
            if unit == 'x':
                print(f'| {case} | {made_by} | {a:.2f} s | {b:.2f} s | | | aggregate {c:.2f}x |')
            else:
                print(f'| {case} | {made_by} | {a:.2f} s | {b:.2f} s | {c:.2f} s | '
                      f'{b / a:.2f} | {a / c:.2f} |')

    def fio_table(self):
        print()
        print('| fio job | image | libvhdx | qemu-nbd | raw (nbdkit file) | libvhdx / raw '
              '(IOPS, p99) | libvhdx / qemu-nbd (IOPS) |')
        print('|---|---|---|---|---|---|---|')
        for job, label, m in self.fio_rows:
            def cell(who):
                if who not in m:
                    return 'cannot open it'
                iops, bw, p99 = m[who]
                rate = f'{bw / MiB:.0f} MiB/s' if 'seq' in job else f'{iops:.0f} IOPS'
                return f'{rate}, p99 {p99 * 1e3:.2f} ms'
            ours, raw = m['libvhdx'], m['raw']
            peer = f'{ours[0] / m["qemu-nbd"][0]:.2f}' if 'qemu-nbd' in m else ''
            print(f'| {job} | {label} | {cell("libvhdx")} | {cell("qemu-nbd")} | {cell("raw")} | '
                  f'{ours[0] / raw[0]:.2f}, {ours[2] / raw[2]:.2f} | {peer} |')


CASES = ['fill', 'overwrite', 'random-flush', 'connections', 'fio', 'fio-child']


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
