#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The benchmarks of libvhdx: makes the images once, runs the cases and prints
a markdown table with our figure, the limit and the peers measured in the same
run, and the ratios.

    bench.py --builddir BUILD [--data DIR] [CASE...]

CASE is one of the names in CASES (all when none is given).  The images go to
DIR (default BUILD/bench-data) and are made only when missing.  The exit status
is non-zero only when the contenders read different bytes or a tool fails:
missing a target is reported in the table, not as a failure.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

GiB = 1 << 30
MiB = 1 << 20


class Bench:
    def __init__(self, builddir, data):
        self.builddir = os.path.abspath(builddir)
        self.data = os.path.abspath(data)
        self.vhdx = os.path.join(self.builddir, 'src', 'cli', 'vhdx')
        self.bench = os.path.join(self.builddir, 'tests', 'bench', 'vhdx-bench')
        self.spawn = os.path.join(self.builddir, 'tests', 'bench', 'bench-spawn')
        self.qemu_img = shutil.which('qemu-img')
        self.vhdiinfo = shutil.which('vhdiinfo')
        os.makedirs(self.data, exist_ok=True)

    def path(self, name):
        return os.path.join(self.data, name)

    def say(self, text):
        print(f'==> {text}', file=sys.stderr, flush=True)

    def run(self, *argv, capture=False):
        # In a session of its own (see raise_priority); this script stays in the
        # terminal's, so that an interrupt still stops everything.
        argv = [str(a) for a in argv]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                                   start_new_session=True, preexec_fn=raise_priority)
        try:
            out, _ = process.communicate()
        except BaseException:
            # The whole session: bench-spawn's children too.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        if process.returncode != 0:
            raise subprocess.CalledProcessError(process.returncode, argv)
        return out.decode() if capture else None

    def measure(self, *argv):
        """One line of JSON from a measuring program."""
        out = self.run(*argv, capture=True)
        return json.loads(out.strip().splitlines()[-1])

    # Fixtures: each is made once; its stamp is written when it is complete.

    def fixture(self, name, make):
        stamp = self.path(name + '.done')
        if not os.path.exists(stamp):
            self.say(f'making the {name} images (once)')
            t = time.monotonic()
            make()
            with open(stamp, 'w') as f:
                f.write('%.1f s\n' % (time.monotonic() - t))

    def fixture_full(self):
        def make():
            self.run(self.bench, 'fill', self.path('full-2g.raw'), 2 * GiB, 32 * MiB, 100, 1)
            self.run(self.vhdx, 'convert', self.path('full-2g.raw'), self.path('full-2g.vhdx'))
        self.fixture('full-2g', make)

    def fixture_half(self):
        def make():
            self.run(self.bench, 'fill', self.path('half-4g.raw'), 4 * GiB, 32 * MiB, 50, 2)
            self.run(self.vhdx, 'convert', self.path('half-4g.raw'), self.path('half-4g.vhdx'))
        self.fixture('half-4g', make)

    def fixture_big(self):
        def make():
            big = self.path('empty-64t.vhdx')
            if os.path.exists(big):
                os.unlink(big)
            self.run(self.vhdx, 'create', '--block-size=1M', big, '64T')
        self.fixture('empty-64t', make)

    def fixture_chain(self):
        # A base with data in 3/4 of its blocks, then four differencing levels;
        # each rewrites a few whole blocks and many short runs of sectors, and
        # stores only the sectors that differ from its parent.
        def make():
            work = self.path('chain-work.raw')
            self.run(self.bench, 'fill', work, 1 * GiB, 32 * MiB, 75, 3)
            self.run(self.vhdx, 'convert', work, self.path('chain-0.vhdx'))
            for level in range(1, 5):
                self.run(self.bench, 'scribble', work, 32 * MiB, 2, 4000, 100 + level)
                self.run(self.vhdx, 'convert', '--parent=' + self.path(f'chain-{level - 1}.vhdx'),
                         work, self.path(f'chain-{level}.vhdx'))
            self.run(self.vhdx, 'convert', work, self.path('chain-flat.vhdx'))
            os.unlink(work)
        self.fixture('chain', make)

    def fixture_many(self):
        def make():
            folder = self.path('many')
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
            names = []
            for i in range(1000):
                name = os.path.join(folder, f'disk-{i:04d}.vhdx')
                size = f'{64 * (1 + i % 16)}M'
                self.run(self.vhdx, 'create', '--block-size=1M', name, size)
                names.append(name)
            with open(self.path('many.list'), 'w') as f:
                f.write('\n'.join(names) + '\n')
        self.fixture('many', make)

    # Cases: each returns a row.

    def case_sequential(self):
        self.fixture_full()
        r = self.measure(self.bench, 'sequential', self.path('full-2g.vhdx'),
                         self.path('full-2g.raw'), 5)
        return self.read_row(1, 'Sequential read, 1 MiB requests, 2 GiB dynamic image, '
                             'fully allocated', r, 1.05, 2 * GiB)

    def case_random(self):
        self.fixture_half()
        r = self.measure(self.bench, 'random', self.path('half-4g.vhdx'),
                         self.path('half-4g.raw'), 5)
        return self.read_row(2, 'Random 4 KiB reads (200 000, fixed seed), 4 GiB dynamic '
                             'image, half allocated', r, 1.2, None)

    def read_row(self, number, title, r, target, size):
        ours, limit = r['vhdx'], r['pread']
        peers = []
        ratios = [f'{ours / limit:.2f}× pread']
        if 'libvhdi' in r:
            peers.append(f'libvhdi {self.fmt_time(r["libvhdi"], size, r)}')
            ratios.append(f'libvhdi {r["libvhdi"] / limit:.2f}×')
        return self.row(number, title, self.fmt_time(ours, size, r),
                        'pread of the raw file ' + self.fmt_time(limit, size, r),
                        ', '.join(peers) or '—', '; '.join(ratios), f'≤ {target}× pread',
                        ours / limit <= target, r['same'])

    def fmt_time(self, seconds, size, r):
        if size is not None:
            return f'{seconds:.3f} s ({size / seconds / GiB:.2f} GiB/s)'
        return f'{seconds:.3f} s ({r["requests"] / seconds / 1000:.0f} k reads/s)'

    def case_threads(self):
        self.fixture_half()
        r = self.measure(self.bench, 'threads', self.path('half-4g.vhdx'),
                         self.path('half-4g.raw'), 5)
        n = r['requests']
        speedup = r['vhdx_1'] / r['vhdx_2']
        return self.row(3, 'The random reads of 2 from 2 threads sharing one VhdxFile: '
                        'aggregate rate',
                        f'{n / r["vhdx_2"] / 1000:.0f} k reads/s (2 threads)',
                        f'one thread {n / r["vhdx_1"] / 1000:.0f} k reads/s',
                        f'pread of the raw file: 1 thread {n / r["pread_1"] / 1000:.0f} k/s, '
                        f'2 threads {n / r["pread_2"] / 1000:.0f} k/s',
                        f'{speedup:.2f}× one thread (pread {r["pread_1"] / r["pread_2"]:.2f}×)',
                        '≥ 1.6× one thread', speedup >= 1.6, r['same'])

    def case_info_64t(self):
        self.fixture_big()
        big = self.path('empty-64t.vhdx')
        ours = self.measure(self.spawn, 21, self.vhdx, 'info', big)
        peers = []
        if self.qemu_img:
            q = self.measure(self.spawn, 5, self.qemu_img, 'info', big)
            peers.append(f'qemu-img info {q["median"] * 1000:.1f} ms, '
                         f'{q["max_rss_kib"] / 1024:.1f} MiB')
        if self.vhdiinfo:
            v = self.measure(self.spawn, 21, self.vhdiinfo, big)
            peers.append(f'vhdiinfo {v["median"] * 1000:.1f} ms, '
                         f'{v["max_rss_kib"] / 1024:.1f} MiB')
        ms, rss = ours['median'] * 1000, ours['max_rss_kib'] / 1024
        return self.row(4, 'Open + info of an empty 64 TiB dynamic image, 1 MiB blocks '
                        '(processes; median time, peak RSS)',
                        f'`vhdx info` {ms:.1f} ms, {rss:.1f} MiB', '5 ms, 8 MiB',
                        '; '.join(peers) or '—',
                        f'{ms / 5:.2f}× the time limit, {rss / 8:.2f}× the RSS limit',
                        '≤ 5 ms and ≤ 8 MiB', ms <= 5 and rss <= 8, True)

    def case_convert(self):
        self.fixture_half()
        src = self.path('half-4g.vhdx')
        out = self.path('convert-out')
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        ours_raw, theirs_raw = os.path.join(out, 'vhdx.raw'), os.path.join(out, 'qemu.raw')
        ours, theirs = [], []
        for _ in range(3):
            for path in (ours_raw, theirs_raw):
                if os.path.exists(path):
                    os.unlink(path)
            # Dirty pages of one run must not be written back during the next.
            os.sync()
            ours.append(self.measure(self.spawn, 1, self.vhdx, 'convert',
                                     '--output-format=raw', src, ours_raw)['median'])
            os.sync()
            if self.qemu_img:
                theirs.append(self.measure(self.spawn, 1, self.qemu_img, 'convert', '-O', 'raw',
                                           src, theirs_raw)['median'])
        same = True
        if self.qemu_img:
            same = subprocess.run(['cmp', '-s', ours_raw, theirs_raw]).returncode == 0
        same = same and subprocess.run(['cmp', '-s', ours_raw,
                                        self.path('half-4g.raw')]).returncode == 0
        used = os.stat(ours_raw).st_blocks * 512
        shutil.rmtree(out, ignore_errors=True)
        t = min(ours)
        if not theirs:
            return self.row(5, 'Convert the half allocated 4 GiB image to sparse raw',
                            f'{t:.2f} s', '—', 'qemu-img not installed', '—',
                            '≥ 3× faster than qemu-img', False, same)
        q = min(theirs)
        return self.row(5, 'Convert the half allocated 4 GiB image to sparse raw '
                        f'({used / GiB:.1f} GiB of data; outputs compared with cmp)',
                        f'`vhdx convert` {t:.2f} s', f'`qemu-img convert -O raw` {q:.2f} s', '—',
                        f'{q / t:.2f}× faster', '≥ 3× faster than qemu-img', q / t >= 3, same)

    def case_async(self):
        self.fixture_full()
        r = self.measure(self.bench, 'async', self.path('full-2g.vhdx'), 5)
        ratio = r['async'] / r['sync']
        size = r['requests'] * r['request_bytes']
        return self.row(6, 'VhdxImage: read_bytes_async, 1 MiB requests, 4 in flight, '
                        'over the 2 GiB image',
                        f'{r["async"]:.3f} s ({size / r["async"] / GiB:.2f} GiB/s)',
                        f'read_bytes (sync) {r["sync"]:.3f} s '
                        f'({size / r["sync"] / GiB:.2f} GiB/s)', '—',
                        f'{ratio:.2f}× sync', '≤ 1.3× sync', ratio <= 1.3, r['same'])

    def case_chain(self):
        self.fixture_chain()
        r = self.measure(self.bench, 'chain', self.path('chain-4.vhdx'),
                         self.path('chain-flat.vhdx'), 5)
        ratio = r['chain'] / r['single']
        return self.row(7, f'Random 4 KiB reads (200 000) through a differencing chain of '
                        f'depth {r["depth"]} (1 GiB; every level owns whole blocks and '
                        f'runs of sectors)',
                        self.fmt_time(r['chain'], None, r),
                        'the same disk in one image ' + self.fmt_time(r['single'], None, r),
                        '—', f'{ratio:.2f}× one image', '≤ 2× one image', ratio <= 2,
                        r['same'])

    def case_info_many(self):
        self.fixture_many()
        listing = self.path('many.list')
        r = self.measure(self.bench, 'info-many', listing, 3)
        n = r['files']
        if not self.qemu_img:
            return self.row(8, f'Info of {n} small images', f'{r["vhdx"]:.3f} s', '—',
                            'qemu-img not installed', '—', '≥ 20× faster', False, True)
        q = self.measure(self.spawn, '--each', listing, self.qemu_img, 'info',
                         '--output=json', '{}')
        ratio = q['total'] / r['vhdx']
        return self.row(8, f'Info (JSON) of {n} small images: VhdxImage in one process, '
                        'against a `qemu-img info` process per image',
                        f'{r["vhdx"] * 1000:.0f} ms ({r["vhdx"] / n * 1e6:.0f} µs per image)',
                        f'`qemu-img info --output=json` per image {q["total"]:.2f} s '
                        f'({q["total"] / n * 1000:.1f} ms each)', '—',
                        f'{ratio:.0f}× faster', '≥ 20× faster', ratio >= 20, True)

    def case_hostile(self):
        # The images of tests/test-bounds.c, which asserts the work their opens
        # do (bytes read and checksummed); this times the same opens.
        mkhostile = os.path.join(self.builddir, 'data', 'vhdx-mkhostile')
        kinds = self.run(mkhostile, '--list', capture=True).split()
        figures = []
        slowest = 0
        for kind in kinds:
            image = self.path(f'hostile-{kind}.vhdx')
            if not os.path.exists(image):
                self.run(mkhostile, kind, image)
            # The refused images make `vhdx info` exit with 1 (huge-disk: its BAT region
            # claims the space of its first block, which info's allocation scan finds).
            status = 0 if kind in ('full-tables', 'log-full') else 1
            r = self.measure(self.spawn, '--status', status, 11, self.vhdx, 'info', image)
            figures.append(f'{kind} {r["median"] * 1000:.1f} ms')
            slowest = max(slowest, r['median'])
        return self.row(9, 'Open + info of crafted images claiming the limits of the format '
                        '(processes, median of 11; the log images are 16 and 32 MiB logs)',
                        ', '.join(figures), '—', '—', f'slowest {slowest * 1000:.1f} ms',
                        'none: bounded by work, tested in test-bounds', True, True)

    def row(self, number, title, ours, limit, peers, ratio, target, met, same):
        return {'number': number, 'title': title, 'ours': ours, 'limit': limit, 'peers': peers,
                'ratio': ratio, 'target': target, 'met': met, 'same': same}


CASES = {
    'sequential': Bench.case_sequential,
    'random': Bench.case_random,
    'threads': Bench.case_threads,
    'info-64t': Bench.case_info_64t,
    'convert': Bench.case_convert,
    'async': Bench.case_async,
    'chain': Bench.case_chain,
    'info-many': Bench.case_info_many,
    'hostile': Bench.case_hostile,
}

HEADER = ('| # | Benchmark | libvhdx | Limit | Other peers | Ratio | Target | Met |\n'
          '|---|---|---|---|---|---|---|---|')


def format_row(row):
    met = 'yes' if row['met'] else '**no**'
    if not row['same']:
        met += ' (**different bytes**)'
    return (f'| {row["number"]} | {row["title"]} | {row["ours"]} | {row["limit"]} | '
            f'{row["peers"]} | {row["ratio"]} | {row["target"]} | {met} |')


def raise_priority():
    """Background jobs (a fuzzer, say) are niced, but with autogroups nice
    only counts inside a session: the programs measured run in a session of
    their own whose autogroup is given the priority of an interactive
    program, which keeps those jobs from halving their CPU.  Only root may
    do that; others run as they are."""
    try:
        with open('/proc/self/autogroup', 'w') as f:
            f.write('-20')
    except OSError:
        pass


def own_priority():
    """What raise_priority() achieves here, for the notes under the table."""
    out = subprocess.run(['cat', '/proc/self/autogroup'], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, start_new_session=True,
                         preexec_fn=raise_priority).stdout.decode()
    if out.strip().endswith('nice -20'):
        return 'the programs measured ran in sessions of their own with autogroup nice -20'
    return 'priority unchanged'


def machine():
    model = '?'
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    with open('/proc/meminfo') as f:
        mem_kib = int(f.readline().split()[1])
    return (f'{os.cpu_count()} CPUs ({model}), {mem_kib / (1 << 20):.0f} GiB RAM, '
            f'{platform.system()} {platform.release()}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--builddir', required=True)
    parser.add_argument('--data')
    parser.add_argument('cases', nargs='*', metavar='CASE')
    args = parser.parse_args()
    for case in args.cases:
        if case not in CASES:
            parser.error(f'unknown case {case}; known: {", ".join(CASES)}')
    bench = Bench(args.builddir, args.data or os.path.join(args.builddir, 'bench-data'))
    cases = args.cases or list(CASES)

    priority = own_priority()
    load_before = open('/proc/loadavg').read().split()[:3]
    rows = []
    for case in cases:
        bench.say(f'{case}')
        rows.append(CASES[case](bench))
        print(format_row(rows[-1]), file=sys.stderr, flush=True)
    load_after = open('/proc/loadavg').read().split()[:3]

    lines = [HEADER] + [format_row(row) for row in rows]
    lines.append('')
    lines.append(f'Machine: {machine()}; load average before {" ".join(load_before)}, '
                 f'after {" ".join(load_after)}; {priority}.  Page cache warm.  In-process '
                 'figures: best of 5 interleaved rounds (3 for 8); 4: median of 21 runs '
                 '(5 for qemu-img); 5: best of 3 alternating runs, each after sync.')
    text = '\n'.join(lines)
    print(text)
    if len(cases) == len(CASES):
        with open(bench.path('results.md'), 'w') as f:
            f.write(text + '\n')
    return 0 if all(row['same'] for row in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
