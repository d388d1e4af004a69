#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The benchmarks of libvhdx: makes the images once, runs the cases and prints
a markdown table with our figure, the limit and the peers measured in the same
run, the ratios, and which image each row used.

    bench.py --builddir BUILD [--data DIR] [--samples DIR] [--pairs N] [CASE...]

CASE is one of the names in CASES (all when none is given).  The convert case
(raw output on ext4, on tmpfs and onto a loop device, VHDX output, and a
differencing chain to raw) times each of its rows in N rounds (default 5, or
VHDX_BENCH_PAIRS from the environment), every round running ours and the peers
once in turn; --pairs 1 makes a smoke run of its whole matrix in minutes.  Its
rows onto a block device need root and losetup (they say so when missing).

The images go to DIR (default BUILD/bench-data) and are made only when
missing: by this project (`vhdx convert`, `vhdx create`), by QEMU (`qemu-img
convert -O vhdx` from the same raw files, `qemu-img create` and `qemu-io`
writes) and, from the samples of the shared folder (--samples, default
../shared/samples beside the source tree), by Hyper-V and Disk2VHD.  A row
whose image or tool is missing is printed all the same, saying what is
missing.  Every contender's bytes are compared (with the raw equivalent of the
image); the exit status is non-zero only when they differ or a tool fails:
missing a target is reported in the table, not as a failure.
"""

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import time

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The samples of the shared folder and the sha256 of the virtual disk each
# reads as (its README: qemu-img and libvhdi agree on them).
SAMPLES = {
    'sample-hyperv-1g': ('iotest-dynamic-1G.vhdx.bz2',
                         'd3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478',
                         '1 GiB dynamic, 32 MiB blocks, made by Hyper-V (QEMU\'s sample; '
                         'mostly unallocated)'),
    'sample-disk2vhd-256m': ('test-disk2vhd.vhdx.bz2',
                             '96d964042be9b58dda1725567abfb0cf9fd8380e2118754afa979c2ad445938a',
                             '256 MiB dynamic, 2 MiB blocks, made by Disk2VHD (QEMU\'s sample; '
                             'mostly unallocated)'),
}


class Missing(Exception):
    """An image or a tool that this machine does not have: the row says so."""


class Bench:
    def __init__(self, builddir, data, samples, pairs=5):
        self.builddir = os.path.abspath(builddir)
        self.pairs = pairs
        self.data = os.path.abspath(data)
        self.samples = samples
        self.vhdx = os.path.join(self.builddir, 'src', 'cli', 'vhdx')
        self.bench = os.path.join(self.builddir, 'tests', 'bench', 'vhdx-bench')
        self.spawn = os.path.join(self.builddir, 'tests', 'bench', 'bench-spawn')
        self.plugin = os.path.join(self.builddir, 'src', 'nbdkit', 'nbdkit-vhdx-plugin.so')
        self.mkhostile = os.path.join(self.builddir, 'data', 'vhdx-mkhostile')
        self.tools = {name: shutil.which(name) for name in (
            'qemu-img', 'qemu-io', 'qemu-nbd', 'vhdiinfo', 'nbdkit', 'nbdcopy', 'bzcat')}
        self.shm = '/dev/shm' if os.path.isdir('/dev/shm') else None
        self.sums = {}
        os.makedirs(self.data, exist_ok=True)

    def path(self, name):
        return os.path.join(self.data, name)

    def say(self, text):
        print(f'==> {text}', file=sys.stderr, flush=True)

    def need(self, *tools):
        for tool in tools:
            if not self.tools.get(tool):
                raise Missing(f'{tool} is not installed')
        return [self.tools[t] for t in tools]

    def run(self, *argv, capture=False, stdin=None, errors=False):
        # In a session of its own (see raise_priority); this script stays in the
        # terminal's, so that an interrupt still stops everything.  With
        # @errors, the standard error goes with the exception of a failure.
        argv = [str(a) for a in argv]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                                   stdin=subprocess.PIPE if stdin is not None else None,
                                   stderr=subprocess.PIPE if errors else None,
                                   start_new_session=True, preexec_fn=raise_priority)
        try:
            out, err = process.communicate(stdin)
        except BaseException:
            # The whole session: bench-spawn's children too.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        if process.returncode != 0:
            raise subprocess.CalledProcessError(process.returncode, argv, stderr=err)
        if err:
            sys.stderr.buffer.write(err)
        return out.decode() if capture else None

    def recache(self, *paths):
        """Drop @paths from the page cache, to be read back by the measuring
        program's warm-up pass: every file's cache is then made the same way
        (by readahead, in large folios), not as its writer left it."""
        os.sync()
        for path in paths:
            if path is None or not os.path.isfile(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

    def measure(self, *argv, errors=False):
        """One line of JSON from a measuring program."""
        out = self.run(*argv, capture=True, errors=errors)
        return json.loads(out.strip().splitlines()[-1])

    def sha256(self, path):
        """sha256 of a file (holes read as zeros), remembered per file."""
        st = os.stat(path)
        key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self.sums:
            h = hashlib.sha256()
            with open(path, 'rb') as f:
                for block in iter(lambda: f.read(4 * MiB), b''):
                    h.update(block)
            self.sums[key] = h.hexdigest()
        return self.sums[key]

    def bytes_read(self, argv):
        """Bytes a command reads through read() and pread() (shared libraries
        included), counted with strace; None without strace."""
        strace = shutil.which('strace')
        if not strace:
            return None
        with tempfile.NamedTemporaryFile(mode='r') as log:
            subprocess.run([strace, '-f', '-qq', '-e', 'trace=read,pread64,preadv,preadv2',
                            '-o', log.name] + argv, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            total = 0
            for line in log:
                value = line.rsplit('=', 1)[-1].split()[0] if '=' in line else ''
                if value.isdigit():
                    total += int(value)
        return total

    def stream_equals(self, argv, path):
        """Whether the standard output of @argv has the bytes of the file @path."""
        equal = True
        with open(path, 'rb') as f, subprocess.Popen(argv, stdout=subprocess.PIPE) as p:
            for block in iter(lambda: p.stdout.read(4 * MiB), b''):
                equal = equal and f.read(len(block)) == block
            equal = equal and f.read(1) == b''
        return equal and p.returncode == 0

    def same_file(self, a, b):
        return subprocess.run(['cmp', '-s', a, b]).returncode == 0

    # Images: each is made once; its stamp is written when it is complete.
    # image() gives (vhdx, raw equivalent, description) or raises Missing.

    def fixture(self, name, make):
        stamp = self.path(name + '.done')
        if not os.path.exists(stamp):
            self.say(f'making the {name} images (once)')
            t = time.monotonic()
            make()
            with open(stamp, 'w') as f:
                f.write('%.1f s\n' % (time.monotonic() - t))

    def raw_full(self):
        self.fixture('full-2g-raw', lambda: self.run(self.bench, 'fill', self.path('full-2g.raw'),
                                                     2 * GiB, 32 * MiB, 100, 1))
        return self.path('full-2g.raw')

    def raw_half(self):
        self.fixture('half-4g-raw', lambda: self.run(self.bench, 'fill', self.path('half-4g.raw'),
                                                     4 * GiB, 32 * MiB, 50, 2))
        return self.path('half-4g.raw')

    def image(self, key):
        maker = IMAGES[key]
        return maker(self)

    def ours_from_raw(self, name, raw, desc):
        vhdx = self.path(name + '.vhdx')
        self.fixture(name, lambda: self.run(self.vhdx, 'convert', raw, vhdx))
        return vhdx, raw, desc

    def qemu_from_raw(self, name, raw, options, desc):
        qemu_img, = self.need('qemu-img')
        vhdx = self.path(name + '.vhdx')
        self.fixture(name, lambda: self.run(qemu_img, 'convert', '-O', 'vhdx', '-o', options,
                                            raw, vhdx))
        return vhdx, raw, desc

    def image_ours_full(self):
        return self.ours_from_raw('full-2g', self.raw_full(),
                                  'ours: 2 GiB dynamic, 32 MiB blocks, full (`vhdx convert`)')

    def image_ours_half(self):
        return self.ours_from_raw('half-4g', self.raw_half(),
                                  'ours: 4 GiB dynamic, 32 MiB blocks, half (`vhdx convert`)')

    def image_qemu_full_1m(self):
        return self.qemu_from_raw('qemu-full-2g-1m', self.raw_full(),
                                  'subformat=dynamic,block_size=1M',
                                  'QEMU: 2 GiB dynamic, 1 MiB blocks, full '
                                  '(`qemu-img convert -O vhdx`)')

    def image_qemu_full_32m(self):
        return self.qemu_from_raw('qemu-full-2g-32m', self.raw_full(),
                                  'subformat=dynamic,block_size=32M',
                                  'QEMU: 2 GiB dynamic, 32 MiB blocks, full '
                                  '(`qemu-img convert -O vhdx`)')

    def image_qemu_fixed(self):
        return self.qemu_from_raw('qemu-fixed-2g-32m', self.raw_full(),
                                  'subformat=fixed,block_size=32M',
                                  'QEMU: 2 GiB fixed, 32 MiB blocks '
                                  '(`qemu-img convert -O vhdx`)')

    def image_qemu_half_32m(self):
        return self.qemu_from_raw('qemu-half-4g-32m', self.raw_half(),
                                  'subformat=dynamic,block_size=32M',
                                  'QEMU: 4 GiB dynamic, 32 MiB blocks, half '
                                  '(`qemu-img convert -O vhdx`)')

    def image_qemu_half_1m(self):
        # Every other 1 MiB block written by qemu-io, in the order a guest
        # would: the BAT as QEMU grows it.  The raw equivalent is QEMU's reading.
        qemu_img, qemu_io = self.need('qemu-img', 'qemu-io')
        vhdx, raw = self.path('qemu-half-4g-1m.vhdx'), self.path('qemu-half-4g-1m.raw')

        def make():
            for p in (vhdx, raw):
                if os.path.exists(p):
                    os.unlink(p)
            self.run(qemu_img, 'create', '-q', '-f', 'vhdx',
                     '-o', 'subformat=dynamic,block_size=1M', vhdx, '4G')
            # Without flushes (cache=unsafe) the 2048 allocations take seconds.
            script = ''.join(f'write -P {block % 255 + 1} {block}M 1M\n'
                             for block in range(0, 4096, 2))
            self.run(qemu_io, '-t', 'unsafe', '-f', 'vhdx', vhdx, stdin=script.encode())
            self.run(qemu_img, 'convert', '-f', 'vhdx', '-O', 'raw', vhdx, raw)
        self.fixture('qemu-half-4g-1m', make)
        return vhdx, raw, ('QEMU: 4 GiB dynamic, 1 MiB blocks, every other block written '
                           '(`qemu-img create` + `qemu-io`)')

    def image_sample(self, key):
        name, want, desc = SAMPLES[key]
        source = os.path.join(self.samples, name)
        if not os.path.exists(source):
            raise Missing(f'the sample {name} is not in {self.samples}')
        vhdx, raw = self.path(key + '.vhdx'), self.path(key + '.raw')

        def make():
            # Holes where the image holds zeros, as a sparse copy of it would
            # be, and as the raw equivalent is: reading either costs the same.
            unpacked = vhdx + '.unpacked'
            with open(unpacked, 'wb') as out:
                subprocess.run(['bzcat', source], stdout=out, check=True)
            subprocess.run(['cp', '--sparse=always', unpacked, vhdx], check=True)
            os.unlink(unpacked)
            # The raw equivalent by QEMU where it is installed, else by us:
            # either way checked against the checksum of the samples' README.
            if self.tools['qemu-img']:
                self.run(self.tools['qemu-img'], 'convert', '-f', 'vhdx', '-O', 'raw', vhdx, raw)
            else:
                self.run(self.vhdx, 'convert', '-O', 'raw', vhdx, raw)
            if self.sha256(raw) != want:
                raise RuntimeError(f'{raw}: not the disk the samples README describes')
        self.fixture(key, make)
        return vhdx, raw, 'sample: ' + desc

    def image_ours_64t(self):
        big = self.path('empty-64t.vhdx')

        def make():
            if os.path.exists(big):
                os.unlink(big)
            self.run(self.vhdx, 'create', '--block-size=1M', big, '64T')
        self.fixture('empty-64t', make)
        return big, None, 'ours: 64 TiB dynamic, 1 MiB blocks, empty (`vhdx create`)'

    def image_qemu_64t(self):
        qemu_img, = self.need('qemu-img')
        big = self.path('qemu-empty-64t.vhdx')

        def make():
            if os.path.exists(big):
                os.unlink(big)
            self.run(qemu_img, 'create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', big, '64T')
        self.fixture('qemu-empty-64t', make)
        return big, None, ('QEMU: 64 TiB dynamic, 1 MiB blocks, empty, its 512 MiB BAT '
                           'written in full (`qemu-img create`)')

    def many(self, name, create):
        folder = self.path(name)
        listing = self.path(name + '.list')

        def make():
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
            names = []
            for i in range(1000):
                image = os.path.join(folder, f'disk-{i:04d}.vhdx')
                create(image, f'{64 * (1 + i % 16)}M')
                names.append(image)
            with open(listing, 'w') as f:
                f.write('\n'.join(names) + '\n')
        self.fixture(name, make)
        return listing

    def image_ours_many(self):
        listing = self.many('many', lambda image, size: self.run(
            self.vhdx, 'create', '--block-size=1M', image, size))
        return listing, None, 'ours: 1000 dynamic images of 64 MiB to 1 GiB (`vhdx create`)'

    def image_qemu_many(self):
        qemu_img, = self.need('qemu-img')
        listing = self.many('qemu-many', lambda image, size: self.run(
            qemu_img, 'create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', image, size))
        return listing, None, ('QEMU: 1000 dynamic images of 64 MiB to 1 GiB '
                               '(`qemu-img create`)')

    def image_chain(self):
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
        return (self.path('chain-4.vhdx'), self.path('chain-flat.vhdx'),
                'ours: 1 GiB, a base and 4 differencing levels (`vhdx convert --parent`)')

    def for_images(self, number, title, keys, measure):
        """A row per image: measure(vhdx, raw) gives the rest of the row; a
        missing image or tool gives a row saying so."""
        rows = []
        for i, key in enumerate(keys):
            label = f'{number}{chr(ord("a") + i)}' if len(keys) > 1 else str(number)
            try:
                vhdx, raw, desc = self.image(key)
            except Missing as e:
                rows.append(self.missing_row(label, title, key, str(e)))
                continue
            try:
                row = measure(vhdx, raw)
            except Missing as e:
                rows.append(self.missing_row(label, title, desc, str(e)))
                continue
            row.update(number=label, title=title, image=desc)
            rows.append(row)
        return rows

    def missing_row(self, number, title, image, reason):
        return {'number': number, 'title': title, 'image': image, 'ours': '—', 'limit': '—',
                'peers': '—', 'ratio': '—', 'target': '—', 'met': None, 'same': True,
                'note': f'not measured: {reason}'}

    def row(self, ours, limit, peers, ratio, target, met, same):
        return {'ours': ours, 'limit': limit, 'peers': peers, 'ratio': ratio, 'target': target,
                'met': met, 'same': same}

    # Cases: each returns a list of rows.

    def read_row(self, r, target, size):
        ours, limit = r['vhdx'], r['pread']
        peers = []
        ratios = [f'{ours / limit:.2f}× pread']
        if 'libvhdi' in r:
            peers.append(f'libvhdi {self.fmt_time(r["libvhdi"], size, r)}')
            ratios.append(f'libvhdi {r["libvhdi"] / limit:.2f}×')
        return self.row(self.fmt_time(ours, size, r),
                        'pread of the raw file ' + self.fmt_time(limit, size, r),
                        ', '.join(peers) or '—', '; '.join(ratios), f'≤ {target}× pread',
                        ours / limit <= target, r['same'])

    def fmt_time(self, seconds, size, r):
        if size is not None:
            return f'{seconds:.3f} s ({size / seconds / GiB:.2f} GiB/s)'
        return f'{seconds:.3f} s ({r["requests"] / seconds / 1000:.0f} k reads/s)'

    def case_sequential(self):
        def measure(vhdx, raw):
            self.recache(vhdx, raw)
            r = self.measure(self.bench, 'sequential', vhdx, raw, 5)
            return self.read_row(r, 1.05, os.path.getsize(raw))
        return self.for_images(1, 'Sequential read, 1 MiB requests (in process)',
                               ['ours-full', 'qemu-full-1m', 'qemu-full-32m', 'qemu-fixed',
                                'sample-hyperv-1g', 'sample-disk2vhd-256m'], measure)

    def case_random(self):
        def measure(vhdx, raw):
            self.recache(vhdx, raw)
            r = self.measure(self.bench, 'random', vhdx, raw, 5)
            return self.read_row(r, 1.2, None)
        return self.for_images(2, 'Random 4 KiB reads (200 000, fixed seed; in process)',
                               ['ours-half', 'qemu-half-1m', 'qemu-half-32m',
                                'sample-hyperv-1g', 'sample-disk2vhd-256m'], measure)

    def case_threads(self):
        def measure(vhdx, raw):
            self.recache(vhdx, raw)
            r = self.measure(self.bench, 'threads', vhdx, raw, 5)
            n = r['requests']
            speedup = r['vhdx_1'] / r['vhdx_2']
            return self.row(f'{n / r["vhdx_2"] / 1000:.0f} k reads/s (2 threads)',
                            f'one thread {n / r["vhdx_1"] / 1000:.0f} k reads/s',
                            f'pread of the raw file: 1 thread {n / r["pread_1"] / 1000:.0f} k/s, '
                            f'2 threads {n / r["pread_2"] / 1000:.0f} k/s',
                            f'{speedup:.2f}× one thread (pread {r["pread_1"] / r["pread_2"]:.2f}×)',
                            '≥ 1.6× one thread', speedup >= 1.6, r['same'])
        return self.for_images(3, 'The random reads of 2 from 2 threads sharing one VhdxFile: '
                               'aggregate rate', ['ours-half', 'qemu-half-1m'], measure)

    def case_info_64t(self):
        def measure(big, _):
            text = self.measure(self.spawn, 21, self.vhdx, 'info', big)
            js = self.measure(self.spawn, 21, self.vhdx, 'info', '--json', big)
            facts = json.loads(self.run(self.vhdx, 'info', '--json', big, capture=True))
            same = True
            peers = []
            if self.tools['qemu-img']:
                q = self.measure(self.spawn, 5, self.tools['qemu-img'], 'info', big)
                peers.append(f'qemu-img info {q["median"] * 1000:.1f} ms, '
                             f'{q["max_rss_kib"] / 1024:.1f} MiB')
                theirs = json.loads(self.run(self.tools['qemu-img'], 'info', '--output=json',
                                             big, capture=True))
                same = all(facts[k] == theirs[k] for k in ('virtual-size', 'cluster-size'))
            if self.tools['vhdiinfo']:
                v = self.measure(self.spawn, 21, self.tools['vhdiinfo'], big)
                peers.append(f'vhdiinfo {v["median"] * 1000:.1f} ms, '
                             f'{v["max_rss_kib"] / 1024:.1f} MiB')
            # The start-up alone, and the bytes read: what info itself costs.
            start = self.measure(self.spawn, 21, self.vhdx, '--version')
            true = self.measure(self.spawn, 21, 'true')
            floors = []
            for name, what in (('full', 'linked with GLib, GIO and json-glib'),
                               ('glib', 'with GLib alone')):
                program = os.path.join(self.builddir, 'tests', 'bench', 'bench-startup-' + name)
                if os.path.exists(program):
                    r = self.measure(self.spawn, 21, program)
                    floors.append(f'a program that only starts, {what}, '
                                  f'{r["median"] * 1000:.1f} ms')
            worst_ms = max(text['median'], js['median']) * 1000
            worst_rss = max(text['max_rss_kib'], js['max_rss_kib']) / 1024
            read = self.bytes_read([self.vhdx, 'info', '--json', big])
            read_note = f'; reads {read / KiB:.0f} KiB in all' if read is not None else ''
            return self.row(f'`vhdx info` {text["median"] * 1000:.1f} ms, '
                            f'{text["max_rss_kib"] / 1024:.1f} MiB; `--json` '
                            f'{js["median"] * 1000:.1f} ms, {js["max_rss_kib"] / 1024:.1f} MiB'
                            + read_note,
                            f'5 ms, 8 MiB; start-up alone (`vhdx --version`) '
                            f'{start["median"] * 1000:.1f} ms, '
                            + ''.join(f + ', ' for f in floors)
                            + f'`true` {true["median"] * 1000:.1f} ms', '; '.join(peers) or '—',
                            f'{worst_ms / 5:.2f}× the time limit, {worst_rss / 8:.2f}× the RSS '
                            f'limit; info itself {worst_ms - start["median"] * 1000:.1f} ms '
                            'over the start-up', '≤ 5 ms and ≤ 8 MiB',
                            worst_ms <= 5 and worst_rss <= 8, same)
        return self.for_images(4, 'Open + info (text and JSON) of an empty 64 TiB image '
                               '(processes; median of 21, peak RSS; virtual and block size '
                               'compared with qemu-img)', ['ours-64t', 'qemu-64t'], measure)

    # Convert: a matrix of rows, each `vhdx convert` against its peer measured
    # in the same rounds.  A round runs every contender once, in turn (ours,
    # the peer, ours, the peer...), each run after os.sync() so that no run's
    # write-back falls into the next one, and removes the run's output (on
    # tmpfs it takes memory); the figures are medians over self.pairs rounds.
    # The outputs of the last round are checked against the raw equivalent
    # (VHDX outputs with `qemu-img compare` and `qemu-img check`).  Like with
    # like: the durable copies end with the data on the disk (ours syncs;
    # `qemu-img convert`, `cp` and nbdcopy are followed by `sync` of the
    # output file or device), the others leave it to the kernel.  Each row
    # also shows ours against the peer synced the other way; the limit of a
    # raw row is what `cp` makes of the raw equivalent.

    # Raw output: (where, images).  ext4: the data folder; tmpfs: the image,
    # its raw equivalent and the output in /dev/shm; device: a loop device
    # (one image: writing every byte of 4 GiB is the slowest part).
    CONVERT_RAW = (
        ('ext4', ('qemu-half-1m', 'qemu-half-32m', 'sample-hyperv-1g', 'sample-disk2vhd-256m')),
        ('tmpfs', ('qemu-half-1m', 'qemu-half-32m')),
        ('device', ('qemu-half-1m',)),
    )
    # VHDX output of one image: (type, block size in MiB, with a durable row).
    CONVERT_VHDX_IMAGE = 'qemu-half-32m'
    CONVERT_VHDX = (('dynamic', 32, True), ('fixed', 32, False),
                    ('dynamic', 16, False), ('fixed', 16, False))

    def case_convert(self):
        labels = (f'5{a}' for a in 'abcdefghijklmnopqrstuvwxyz')
        rows = []
        try:
            for where, keys in self.CONVERT_RAW:
                rows += self.convert_raw_rows(where, keys, labels)
            rows += self.convert_vhdx_rows(labels)
            rows += self.convert_chain_rows(labels)
        finally:
            self.drop_shm()
        return rows

    def drop_shm(self):
        if self.shm:
            shutil.rmtree(os.path.join(self.shm, 'vhdx-bench'), ignore_errors=True)

    def failure(self, error):
        """What a failed command said (its last lines), to print in a cell."""
        text = (error.stderr or b'').decode(errors='replace')
        lines = [line.strip() for line in text.splitlines()
                 if line.strip() and not line.startswith('bench-spawn:')]
        said = '; '.join(lines[-2:]) or f'exit status {error.returncode}'
        return said[:200].replace('|', '\\|')

    def convert_rounds(self, contenders, target, check, errors):
        """Times @contenders ({name: argv of the output}) in self.pairs rounds.
        target(name) gives a new output for a run and the function that
        removes it (which returns what went wrong, if anything); check(name,
        out) tells whether the output of the last round is right.  @errors
        holds the contenders not to run, and why.  Returns the medians of the
        contenders that never failed, the errors and the names whose output
        was wrong."""
        errors = dict(errors)
        times = {name: [] for name in contenders}
        wrong = []
        # A first round is not timed: the first big run after a pause pays
        # for memory the machine has to find again (up to 10 times as long
        # on this virtual machine), whichever contender it is.  The order is
        # turned round every other round.
        for round in range(-1, self.pairs):
            order = list(contenders.items())
            if round % 2:
                order.reverse()
            for name, argv in order:
                if name in errors:
                    continue
                out, release = target(name)
                try:
                    # Dirty pages of one run must not be written back during the next.
                    os.sync()
                    try:
                        took = self.measure(self.spawn, 1, *argv(out), errors=True)['median']
                        if round >= 0:
                            times[name].append(took)
                    except subprocess.CalledProcessError as e:
                        errors[name] = self.failure(e)
                    else:
                        if round == self.pairs - 1:
                            try:
                                right = check(name, out)
                            except (OSError, ValueError, subprocess.CalledProcessError):
                                right = False
                            if not right:
                                wrong.append(name)
                finally:
                    problem = release()
                if problem:
                    errors[name] = problem
        medians = {name: statistics.median(t) for name, t in times.items()
                   if t and name not in errors}
        return medians, errors, wrong

    def versus_row(self, result, ours, peer, cross, limit, names, target, notes):
        """A row of @ours against @peer (the target is their ratio), with
        @cross (the peer synced the other way) and @limit beside it.
        names[n] is (how a cell names contender n, how a ratio names it);
        notes[n] is said after its time."""
        medians, errors, wrong = result

        def figure(name):
            if name is None:
                return None
            if name in errors:
                return f'{names[name][0]} **failed**: {errors[name]}'
            if name not in medians:
                return f'{names[name][0]} not run'
            return f'{names[name][0]} {medians[name]:.2f} s' + notes.get(name, '')
        ratios = [f'{medians[ours] / medians[n]:.2f}× {names[n][1]}' for n in (peer, cross, limit)
                  if n is not None and ours in medians and n in medians]
        met = ours in medians and peer in medians and medians[ours] / medians[peer] <= target
        row = self.row(figure(ours), figure(limit) or '—',
                       '; '.join(f for f in (figure(peer), figure(cross)) if f),
                       '; '.join(ratios) or '—', f'≤ {target}× {names[peer][1]}', met,
                       not any(n in wrong for n in (ours, peer, cross, limit)))
        failed = [names[n][1] for n in (ours, peer, cross, limit) if n in errors]
        if failed:
            row['failed'] = failed
        row['wrong'] = [names[n][1] for n in (ours, peer, cross, limit) if n in wrong]
        return row

    def files_target(self, folder, suffix):
        def target(name):
            out = os.path.join(folder, name + suffix)

            def release():
                if os.path.exists(out):
                    os.unlink(out)
            return out, release
        return target

    def loop_device(self, backing, size, stale=False):
        """A loop device over a new sparse file @backing of @size bytes:
        (device, release).  With @stale, old data where the images hold
        zeros (64 KiB every 16 MiB, 1 MiB in), which a copy must overwrite.
        release() detaches it and removes @backing; should the device node
        no longer be one (a tool renamed a file over it), it puts the node
        back and says so."""
        with open(backing, 'wb') as f:
            f.truncate(size)
            if stale:
                for offset in range(MiB, size, 16 * MiB):
                    f.seek(offset)
                    f.write(b'\xa5' * (64 * KiB))
        try:
            dev = subprocess.run(['losetup', '-f', '--show', backing], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, check=True).stdout.decode().strip()
        except BaseException:
            os.unlink(backing)
            raise
        node = os.stat(dev)
        # No page of an earlier use of the same device left in its cache.
        subprocess.run(['blockdev', '--flushbufs', dev], stderr=subprocess.DEVNULL)

        def release():
            problem = None
            try:
                st = os.lstat(dev)
                replaced = not stat.S_ISBLK(st.st_mode) or st.st_rdev != node.st_rdev
            except FileNotFoundError:
                replaced = True
            if replaced:
                problem = 'it replaced the device node with a regular file (node put back)'
                if os.path.lexists(dev):
                    os.unlink(dev)
                os.mknod(dev, node.st_mode, node.st_rdev)
            subprocess.run(['losetup', '-d', dev], check=True)
            os.unlink(backing)
            return problem
        return dev, release

    def device_unavailable(self):
        """Why no loop device can be used here, or None."""
        if os.geteuid() != 0:
            return 'a loop device needs root'
        if not shutil.which('losetup'):
            return 'losetup is not installed'
        try:
            _, release = self.loop_device(self.path('convert-out/probe.img'), MiB)
            release()
        except (OSError, subprocess.CalledProcessError) as e:
            said = getattr(e, 'stderr', None)
            return 'losetup failed: ' + (said.decode().strip() if said else str(e))
        return None

    def device_support(self):
        """None when `vhdx convert -O raw SOURCE DEVICE` writes into a block
        device, else what it does instead.  Tried first on a 1 MiB loop device
        in a private /dev (a mount namespace with a tmpfs on /dev holding
        that node): a tool that only writes files makes a new file and
        renames it over the node, which must not happen to the real /dev."""
        unshare = shutil.which('unshare')
        if not unshare:
            return 'unshare is not installed (needed to try a device destination safely)'
        tiny = self.path('convert-out/probe.raw')
        with open(tiny, 'wb') as f:
            f.write((bytes(range(1, 256)) * (MiB // 255 + 1))[:MiB])
        script = ('mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && '
                  'mknod -m 666 /dev/zero c 1 5 && mknod -m 666 /dev/urandom c 1 9 && '
                  'mknod -m 600 "$1" b "$2" "$3" || exit 98; '
                  '"$4" convert -O raw "$5" "$1"; status=$?; [ -b "$1" ] || exit 99; '
                  'exit $status')
        dev, release = self.loop_device(self.path('convert-out/probe.img'), MiB)
        try:
            rdev = os.stat(dev).st_rdev
            p = subprocess.run([unshare, '--mount', '--propagation', 'private', 'sh', '-c',
                                script, 'sh', dev, str(os.major(rdev)), str(os.minor(rdev)),
                                self.vhdx, tiny], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            said = self.failure(subprocess.CalledProcessError(p.returncode, [], None, p.stderr))
            if p.returncode == 98:
                return 'could not make a private /dev to try a device destination: ' + said
            if p.returncode == 99:
                return ('it wrote a new file and renamed it over the device node (tried on a '
                        '1 MiB device in a private /dev): no block device destinations')
            if p.returncode != 0:
                return said
            if not self.same_file(dev, tiny):
                return 'the device did not get the bytes of a 1 MiB source'
            return None
        finally:
            release()
            os.unlink(tiny)

    def convert_raw_rows(self, where, keys, labels):
        qemu_img = self.tools['qemu-img']
        device = where == 'device'
        unavailable = ours_problem = None
        if device:
            os.makedirs(self.path('convert-out'), exist_ok=True)
            unavailable = self.device_unavailable()
            if unavailable is None:
                ours_problem = self.device_support()
        if device:
            title = ('Convert to raw onto a block device (a loop device over a sparse file on '
                     'ext4, old data where the disk reads as zeros), {}')
            hows = ('durable (qemu-img and cp followed by `sync DEVICE`)', 'not synced')
        else:
            title = f'Convert to sparse raw, {{}}, on {where}'
            hows = ('durable', 'not synced')
        rows = []
        for key in keys:
            durable_label, label = next(labels), next(labels)
            desc = key
            try:
                vhdx, raw, desc = self.image(key)
                if not qemu_img:
                    raise Missing('qemu-img is not installed')
                if where == 'tmpfs' and not self.shm:
                    raise Missing('no /dev/shm')
                if unavailable:
                    raise Missing(unavailable)
            except Missing as e:
                rows.append(self.missing_row(durable_label, title.format(hows[0]), desc, str(e)))
                rows.append(self.missing_row(label, title.format(hows[1]), desc, str(e)))
                continue
            for row in self.convert_raw(where, vhdx, raw, qemu_img, ours_problem):
                durable = row.pop('durable')
                row.update(number=durable_label if durable else label, image=desc,
                           title=title.format(hows[0] if durable else hows[1]))
                rows.append(row)
            self.drop_shm()
        return rows

    def convert_raw(self, where, vhdx, raw, qemu_img, ours_problem):
        device = where == 'device'
        size = os.path.getsize(raw)
        if where == 'tmpfs':
            folder = os.path.join(self.shm, 'vhdx-bench')
            os.makedirs(folder, exist_ok=True)
            src, src_raw = os.path.join(folder, 'src.vhdx'), os.path.join(folder, 'src.raw')
            shutil.copyfile(vhdx, src)
            subprocess.run(['cp', '--sparse=always', raw, src_raw], check=True)
        else:
            folder = self.path('convert-out')
            os.makedirs(folder, exist_ok=True)
            src, src_raw = vhdx, raw
        sync = ' && sync "$1"'
        qemu = '"$2" convert ' + ('-n ' if device else '') + '-O raw "$0" "$1"'
        cp = 'cp "$0" "$1"' if device else 'cp --sparse=always "$0" "$1"'

        def ours(*options):
            return lambda out: [self.vhdx, 'convert', '-O', 'raw', *options, src, out]
        contenders = {
            'ours': ours(),
            'qemu-sync': lambda out: ['sh', '-c', qemu + sync, src, out, qemu_img],
            'ours-nosync': ours('--no-sync'),
            'qemu': lambda out: ['sh', '-c', qemu, src, out, qemu_img],
            'cp-sync': lambda out: ['sh', '-c', cp + sync, src_raw, out],
            'cp': lambda out: ['sh', '-c', cp, src_raw, out],
        }
        data = {}
        if device:
            def target(name):
                return self.loop_device(os.path.join(folder, 'device.img'), size, stale=True)

            def check(name, out):
                return subprocess.run(['cmp', '-s', '-n', str(size), out, src_raw]).returncode == 0
            dest, synced = 'DEVICE', '`sync DEVICE`'
        else:
            target = self.files_target(folder, '.raw')

            def check(name, out):
                data[name] = os.stat(out).st_blocks * 512
                return self.same_file(out, src_raw)
            dest, synced = 'FILE', '`sync FILE`'
        errors = {}
        if ours_problem:
            errors = {'ours': ours_problem, 'ours-nosync': ours_problem}
        result = self.convert_rounds(contenders, target, check, errors)
        cp_name = '`cp`' if device else '`cp --sparse=always`'
        names = {
            'ours': (f'`vhdx convert -O raw SRC {dest}`', 'ours'),
            'ours-nosync': (f'`vhdx convert -O raw --no-sync SRC {dest}`', 'ours --no-sync'),
            'qemu-sync': (f'`qemu-img convert {"-n " if device else ""}-O raw SRC {dest}` + '
                          + synced, 'qemu-img + sync'),
            'qemu': ('not synced', 'qemu-img not synced'),
            'cp-sync': (f'{cp_name} of the raw equivalent + {synced}', 'cp + sync'),
            'cp': (f'{cp_name} of the raw equivalent', 'cp'),
        }
        notes = {n: f' ({amount(data[n])} of data)' for n in data if n.startswith('ours')}
        durable = self.versus_row(result, 'ours', 'qemu-sync', 'qemu', 'cp-sync', names,
                                  0.5 if where == 'ext4' else 0.8, notes)
        names['qemu'] = (f'`qemu-img convert {"-n " if device else ""}-O raw SRC {dest}`',
                         'qemu-img not synced')
        names['qemu-sync'] = (f'+ {synced}', 'qemu-img + sync')
        plain = self.versus_row(result, 'ours-nosync', 'qemu', 'qemu-sync', 'cp', names, 0.8,
                                notes)
        durable['durable'], plain['durable'] = True, False
        return [durable, plain]

    def convert_vhdx_rows(self, labels):
        qemu_img = self.tools['qemu-img']
        key = self.CONVERT_VHDX_IMAGE
        rows = []
        for kind, block, with_durable in self.CONVERT_VHDX:
            default = {32: ' (ours\' default)', 16: ' (qemu-img\'s default for 4 GiB)'}[block]
            title = f'Convert to VHDX, {kind}, {block} MiB blocks{default}, {{}}, on ext4'
            numbers = [next(labels) for _ in range(2 if with_durable else 1)]
            desc = key
            try:
                vhdx, raw, desc = self.image(key)
                if not qemu_img:
                    raise Missing('qemu-img is not installed')
            except Missing as e:
                for number, how in zip(numbers, ('not synced', 'durable')):
                    rows.append(self.missing_row(number, title.format(how), desc, str(e)))
                continue
            made = self.convert_vhdx(vhdx, raw, qemu_img, kind, block, with_durable)
            for number, row, how in zip(numbers, made, ('not synced', 'durable')):
                row.update(number=number, title=title.format(how), image=desc)
                rows.append(row)
        return rows

    def convert_vhdx(self, src, raw, qemu_img, kind, block, with_durable):
        folder = self.path('convert-out')
        os.makedirs(folder, exist_ok=True)
        options = (['--type=fixed'] if kind == 'fixed' else []) + (
            [] if block == 32 else [f'--block-size={block}M'])
        qemu_options = f'subformat={kind},block_size={block * MiB}'
        qemu = '"$2" convert -O vhdx -o "$3" "$0" "$1"'
        contenders = {}
        if with_durable:
            contenders['ours'] = lambda out: [self.vhdx, 'convert', '-O', 'vhdx', *options,
                                              src, out]
            contenders['qemu-sync'] = lambda out: ['sh', '-c', qemu + ' && sync "$1"', src, out,
                                                   qemu_img, qemu_options]
        contenders['ours-nosync'] = lambda out: [self.vhdx, 'convert', '-O', 'vhdx', '--no-sync',
                                                 *options, src, out]
        contenders['qemu'] = lambda out: ['sh', '-c', qemu, src, out, qemu_img, qemu_options]
        sizes = {}

        def check(name, out):
            st = os.stat(out)
            sizes[name] = f' (file {amount(st.st_size)}, {amount(st.st_blocks * 512)} allocated)'
            info = json.loads(self.run(qemu_img, 'info', '-f', 'vhdx', '--output=json', out,
                                       capture=True))
            return (info.get('cluster-size') == block * MiB
                    and subprocess.run([qemu_img, 'compare', '-q', '-f', 'vhdx', '-F', 'raw',
                                        out, raw]).returncode == 0
                    and subprocess.run([qemu_img, 'check', '-q', '-f', 'vhdx', out],
                                       stdout=subprocess.DEVNULL).returncode == 0)
        result = self.convert_rounds(contenders, self.files_target(folder, '.vhdx'), check, {})
        spelled = ' '.join(options + ['SRC OUT.vhdx'])
        names = {
            'ours': (f'`vhdx convert -O vhdx {spelled}`', 'ours'),
            'ours-nosync': (f'`vhdx convert -O vhdx --no-sync {spelled}`', 'ours --no-sync'),
            'qemu': (f'`qemu-img convert -O vhdx -o {qemu_options} SRC OUT.vhdx`',
                     'qemu-img not synced'),
            'qemu-sync': ('+ `sync FILE`', 'qemu-img + sync'),
        }
        rows = [self.versus_row(result, 'ours-nosync', 'qemu',
                                'qemu-sync' if with_durable else None, None, names, 0.8, sizes)]
        if with_durable:
            names['qemu-sync'] = (f'`qemu-img convert -O vhdx -o {qemu_options} SRC OUT.vhdx` '
                                  '+ `sync FILE`', 'qemu-img + sync')
            names['qemu'] = ('not synced', 'qemu-img not synced')
            rows.append(self.versus_row(result, 'ours', 'qemu-sync', 'qemu', None, names, 0.8,
                                        sizes))
        return rows

    def chain_raw(self):
        """The raw equivalent of the chain, read by QEMU from its flat copy
        (by us without QEMU)."""
        _, flat, _ = self.image('chain')
        raw = self.path('chain-flat.raw')
        if self.tools['qemu-img']:
            read = [self.tools['qemu-img'], 'convert', '-f', 'vhdx', '-O', 'raw', flat, raw]
        else:
            read = [self.vhdx, 'convert', '-O', 'raw', flat, raw]
        self.fixture('chain-raw', lambda: self.run(*read))
        return raw

    def convert_chain_rows(self, labels):
        title = ('Convert a differencing chain (a base and 4 levels) to sparse raw, {}, on ext4: '
                 'QEMU cannot open differencing VHDX, the peer is nbdcopy through '
                 'nbdkit-vhdx-plugin')
        numbers = next(labels), next(labels)
        desc = 'chain'
        try:
            top, _, desc = self.image('chain')
            raw = self.chain_raw()
            nbdkit, nbdcopy = self.need('nbdkit', 'nbdcopy')
            if not os.path.exists(self.plugin):
                raise Missing('the plugin is not built')
        except Missing as e:
            return [self.missing_row(n, title.format(how), desc, str(e))
                    for n, how in zip(numbers, ('durable', 'not synced'))]
        folder = self.path('convert-out')
        os.makedirs(folder, exist_ok=True)

        def served(sync):
            def argv(out):
                script = f'{shlex.quote(nbdcopy)} "$uri" {shlex.quote(out)}'
                if sync:
                    script += f' && sync {shlex.quote(out)}'
                return [nbdkit, '-r', '-U', '-', self.plugin, 'file=' + top, '--run', script]
            return argv
        contenders = {
            'ours': lambda out: [self.vhdx, 'convert', '-O', 'raw', top, out],
            'nbdcopy-sync': served(True),
            'ours-nosync': lambda out: [self.vhdx, 'convert', '-O', 'raw', '--no-sync', top, out],
            'nbdcopy': served(False),
            'cp-sync': lambda out: ['sh', '-c', 'cp --sparse=always "$0" "$1" && sync "$1"', raw,
                                    out],
            'cp': lambda out: ['cp', '--sparse=always', raw, out],
        }
        data = {}

        def check(name, out):
            data[name] = os.stat(out).st_blocks * 512
            return self.same_file(out, raw)
        result = self.convert_rounds(contenders, self.files_target(folder, '.raw'), check, {})
        serve = '`nbdkit -r -U - vhdx file=TOP.vhdx --run \'nbdcopy "$uri" OUT\'`'
        names = {
            'ours': ('`vhdx convert -O raw TOP.vhdx OUT`', 'ours'),
            'ours-nosync': ('`vhdx convert -O raw --no-sync TOP.vhdx OUT`', 'ours --no-sync'),
            'nbdcopy-sync': (serve + ' + `sync OUT`', 'nbdcopy + sync'),
            'nbdcopy': ('not synced', 'nbdcopy not synced'),
            'cp-sync': ('`cp --sparse=always` of the raw equivalent + `sync FILE`', 'cp + sync'),
            'cp': ('`cp --sparse=always` of the raw equivalent', 'cp'),
        }
        notes = {n: f' ({amount(data[n])} of data)' for n in data}
        durable = self.versus_row(result, 'ours', 'nbdcopy-sync', 'nbdcopy', 'cp-sync', names,
                                  1.0, notes)
        names['nbdcopy'] = (serve, 'nbdcopy not synced')
        names['nbdcopy-sync'] = ('+ `sync OUT`', 'nbdcopy + sync')
        plain = self.versus_row(result, 'ours-nosync', 'nbdcopy', 'nbdcopy-sync', 'cp', names,
                                1.0, notes)
        durable.update(number=numbers[0], title=title.format('durable'), image=desc)
        plain.update(number=numbers[1], title=title.format('not synced'), image=desc)
        return [durable, plain]

    def case_async(self):
        def measure(vhdx, raw):
            self.recache(vhdx)
            r = self.measure(self.bench, 'async', vhdx, 5)
            ratio = r['async'] / r['sync']
            size = r['requests'] * r['request_bytes']
            same = r['same']
            return self.row(f'{r["async"]:.3f} s ({size / r["async"] / GiB:.2f} GiB/s)',
                            f'read_bytes (sync) {r["sync"]:.3f} s '
                            f'({size / r["sync"] / GiB:.2f} GiB/s)', '—',
                            f'{ratio:.2f}× sync', '≤ 1.3× sync', ratio <= 1.3, same)
        return self.for_images(6, 'VhdxImage: read_bytes_async, 1 MiB requests, 4 in flight',
                               ['ours-full', 'qemu-full-1m'], measure)

    def case_chain(self):
        def measure(top, flat):
            r = self.measure(self.bench, 'chain', top, flat, 5)
            ratio = r['chain'] / r['single']
            return self.row(self.fmt_time(r['chain'], None, r),
                            'the same disk in one image ' + self.fmt_time(r['single'], None, r),
                            '—', f'{ratio:.2f}× one image', '≤ 2× one image', ratio <= 2,
                            r['same'])
        rows = self.for_images(7, 'Random 4 KiB reads (200 000) through a differencing chain '
                               'of depth 4 (every level owns whole blocks and runs of sectors)',
                               ['chain'], measure)
        rows[0]['number'] = '7a'
        rows.append(self.missing_row('7b', rows[0]['title'], 'QEMU', 'QEMU cannot create '
                                     'differencing VHDX images, so no chain made by QEMU'))
        return rows

    def case_info_many(self):
        def measure(listing, _):
            qemu_img, = self.need('qemu-img')
            r = self.measure(self.bench, 'info-many', listing, 3)
            n = r['files']
            q = self.measure(self.spawn, '--each', listing, qemu_img, 'info', '--output=json',
                             '{}')
            # Both say the same of a sample of the images (not timed).
            with open(listing) as f:
                names = f.read().split()
            same = True
            for name in names[::50]:
                ours = json.loads(self.run(self.vhdx, 'info', '--json', name, capture=True))
                theirs = json.loads(self.run(qemu_img, 'info', '--output=json', name,
                                             capture=True))
                same = same and all(ours[k] == theirs[k]
                                    for k in ('virtual-size', 'cluster-size', 'format'))
            ratio = q['total'] / r['vhdx']
            return self.row(f'{r["vhdx"] * 1000:.0f} ms ({r["vhdx"] / n * 1e6:.0f} µs per image)',
                            f'`qemu-img info --output=json` per image {q["total"]:.2f} s '
                            f'({q["total"] / n * 1000:.1f} ms each)', '—',
                            f'{ratio:.0f}× faster', '≥ 20× faster', ratio >= 20, same)
        return self.for_images(8, 'Info (JSON) of 1000 small images: VhdxImage in one process, '
                               'against a `qemu-img info` process per image',
                               ['ours-many', 'qemu-many'], measure)

    def case_hostile(self):
        # The images of tests/test-bounds.c, which asserts the work their opens
        # do (bytes read and checksummed); this times the same opens.  Only
        # this project makes them: there are no peers' images of the kind.
        kinds = self.run(self.mkhostile, '--list', capture=True).split()
        figures = []
        slowest = 0
        for kind in kinds:
            image = self.path(f'hostile-{kind}.vhdx')
            if not os.path.exists(image):
                self.run(self.mkhostile, kind, image)
            # Refused or described: the status of an untimed run is the one timed.
            status = subprocess.run([self.vhdx, 'info', image], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL).returncode
            r = self.measure(self.spawn, '--status', status, 11, self.vhdx, 'info', image)
            figures.append(f'{kind} {r["median"] * 1000:.1f} ms'
                           + ('' if status == 0 else ' (refused)'))
            slowest = max(slowest, r['median'])
        row = self.row(', '.join(figures), '—', '—', f'slowest {slowest * 1000:.1f} ms',
                       'none: bounded by work, tested in test-bounds', True, True)
        row.update(number='9', title='Open + info of crafted images claiming the limits of the '
                   'format (processes, median of 11; the log images are 16 and 32 MiB logs)',
                   image='ours: `vhdx-mkhostile` (crafted)')
        return [row]

    def case_log_replay(self):
        image = self.path('hostile-log-full.vhdx')
        if not os.path.exists(image):
            self.run(self.mkhostile, 'log-full', image)
        r = self.measure(self.bench, 'open', image, 5)
        kind = 'the CPU\'s CRC-32C instruction' if r['instruction'] else 'tables (no instruction)'
        row = self.row(f'{r["hw"] * 1000:.1f} ms with {kind}',
                       f'reading the file: into memory already touched '
                       f'{r["warm_read"] * 1000:.1f} ms, into new 4 KiB pages '
                       f'{r["fresh_read"] * 1000:.1f} ms',
                       f'CRC-32C by tables {r["table"] * 1000:.1f} ms; CRC-32C of 32 MiB: '
                       f'instruction {r["crc_hw"] * 1000:.1f} ms, tables '
                       f'{r["crc_table"] * 1000:.1f} ms',
                       f'{r["hw"] * 1000 / 30:.2f}× the target; '
                       f'{r["checksummed"] / MiB:.0f} MiB checksummed per open',
                       '≤ 30 ms', r['hw'] <= 0.030, r['same'])
        row.update(number='10', title='In-process open of an image whose full 32 MiB log is '
                   'replayed in memory (best of 5)', image='ours: `vhdx-mkhostile log-full`')
        return [row]

    # Serving: nbdcopy through the servers, each started once per image.

    def serve_socket(self, argv, sock):
        """Start a server listening on @sock; returns its process."""
        if os.path.exists(sock):
            os.unlink(sock)
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True, preexec_fn=raise_priority)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f'{argv[0]} exited with {process.returncode}')
            if os.path.exists(sock):
                try:
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        s.connect(sock)
                    return process
                except OSError:
                    pass
            time.sleep(0.05)
        process.kill()
        raise RuntimeError(f'{argv[0]} did not listen on {sock}')

    def stop(self, process):
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def case_serve(self):
        nbdkit, nbdcopy, qemu_nbd = (self.tools['nbdkit'], self.tools['nbdcopy'],
                                     self.tools['qemu-nbd'])
        title = 'nbdcopy to null: of the whole disk through nbdkit-vhdx-plugin'
        keys = ['qemu-full-1m', 'qemu-full-32m', 'qemu-half-1m', 'qemu-half-32m']
        rows = []
        letter = iter('abcdefghijklmnop')
        missing = [t for t, p in (('nbdkit', nbdkit), ('nbdcopy', nbdcopy),
                                  ('qemu-nbd', qemu_nbd)) if not p]
        if not os.path.exists(self.plugin):
            missing.append('the plugin (not built)')
        for key in keys:
            try:
                vhdx, raw, desc = self.image(key)
            except Missing as e:
                vhdx, desc = None, key
                reason = str(e)
            if missing or vhdx is None:
                for conns in (1, 4):
                    rows.append(self.missing_row(f'11{next(letter)}', f'{title}, {conns} '
                                                 'connection(s)', desc,
                                                 ', '.join(missing) + ' missing' if missing
                                                 else reason))
                continue
            for conns, result in self.serve_image(vhdx, raw, nbdkit, nbdcopy, qemu_nbd).items():
                result.update(number=f'11{next(letter)}', image=desc,
                              title=f'{title}, `--connections={conns}`' +
                              (' (default)' if conns == 1 else ''))
                rows.append(result)
        return rows

    def serve_image(self, vhdx, raw, nbdkit, nbdcopy, qemu_nbd):
        work = tempfile.mkdtemp(prefix='vhdx-bench-nbd-')
        servers = {
            'plugin': [nbdkit, '-f', '-r', '-U', '{sock}', self.plugin, 'file=' + vhdx],
            'qemu': [qemu_nbd, '-f', 'vhdx', '-r', '-t', '-e', '8', '-k', '{sock}', vhdx],
            'file': [nbdkit, '-f', '-r', '-U', '{sock}', 'file', 'file=' + raw],
        }
        processes = {}
        best = {(name, c): None for name in servers for c in (1, 4)}
        same = True
        try:
            for name, argv in servers.items():
                sock = os.path.join(work, name + '.sock')
                processes[name] = self.serve_socket([a.replace('{sock}', sock) for a in argv],
                                                    sock)
            uri = {name: f'nbd+unix:///?socket={os.path.join(work, name + ".sock")}'
                   for name in servers}
            # Every server reads the raw equivalent's bytes (also the warm-up,
            # after which both files are cached alike: see recache).
            self.recache(vhdx, raw)
            for name in servers:
                same = same and self.stream_equals([nbdcopy, uri[name], '-'], raw)
            # Interleaved rounds, best of 3; a run over 8 s is not repeated.
            for _ in range(3):
                for conns in (1, 4):
                    for name in servers:
                        prior = best[(name, conns)]
                        if prior is not None and prior > 8:
                            continue
                        t = self.measure(self.spawn, 1, nbdcopy, f'--connections={conns}',
                                         uri[name], 'null:')['median']
                        best[(name, conns)] = t if prior is None else min(prior, t)
        finally:
            for process in processes.values():
                self.stop(process)
            shutil.rmtree(work, ignore_errors=True)
        size = os.path.getsize(raw)
        rows = {}
        for conns in (1, 4):
            t = {name: best[(name, conns)] for name in servers}

            def rate(s):
                return f'{s:.2f} s ({size / s / GiB:.2f} GiB/s)'
            met = t['qemu'] / t['plugin'] >= 1.5 and t['plugin'] / t['file'] <= 1.1
            rows[conns] = self.row(
                rate(t['plugin']), 'nbdkit `file` on the raw equivalent ' + rate(t['file']),
                f'qemu-nbd {rate(t["qemu"])}',
                f'qemu-nbd / plugin {t["qemu"] / t["plugin"]:.2f}×, plugin / file '
                f'{t["plugin"] / t["file"]:.2f}×',
                '≥ 1.5× faster than qemu-nbd, ≤ 1.1× file', met, same)
        return rows


IMAGES = {
    'ours-full': Bench.image_ours_full,
    'ours-half': Bench.image_ours_half,
    'qemu-full-1m': Bench.image_qemu_full_1m,
    'qemu-full-32m': Bench.image_qemu_full_32m,
    'qemu-fixed': Bench.image_qemu_fixed,
    'qemu-half-1m': Bench.image_qemu_half_1m,
    'qemu-half-32m': Bench.image_qemu_half_32m,
    'sample-hyperv-1g': lambda b: b.image_sample('sample-hyperv-1g'),
    'sample-disk2vhd-256m': lambda b: b.image_sample('sample-disk2vhd-256m'),
    'ours-64t': Bench.image_ours_64t,
    'qemu-64t': Bench.image_qemu_64t,
    'ours-many': Bench.image_ours_many,
    'qemu-many': Bench.image_qemu_many,
    'chain': Bench.image_chain,
}

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
    'log-replay': Bench.case_log_replay,
    'serve': Bench.case_serve,
}

HEADER = ('| # | Benchmark | Image | libvhdx | Limit | Other peers | Ratio | Target | Met |\n'
          '|---|---|---|---|---|---|---|---|---|')


def amount(size):
    """A number of bytes, in GiB or MiB."""
    return f'{size / GiB:.2f} GiB' if size >= GiB else f'{size / MiB:.0f} MiB'


def format_row(row):
    if row['met'] is None:
        met = row.get('note', 'not measured')
    else:
        met = 'yes' if row['met'] else '**no**'
    if row.get('failed'):
        met = '**failed**: ' + ', '.join(row['failed'])
    if not row['same']:
        wrong = row.get('wrong')
        met += ' (**different bytes**' + (': ' + ', '.join(wrong) if wrong else '') + ')'
    return (f'| {row["number"]} | {row["title"]} | {row["image"]} | {row["ours"]} | '
            f'{row["limit"]} | {row["peers"]} | {row["ratio"]} | {row["target"]} | {met} |')


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


def versions(bench):
    found = []
    for tool, args in (('qemu-img', ['--version']), ('nbdkit', ['--version']),
                       ('nbdcopy', ['--version'])):
        if bench.tools.get(tool):
            out = subprocess.run([bench.tools[tool]] + args, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL).stdout.decode().splitlines()
            if out:
                found.append(out[0].strip())
    return '; '.join(found) or 'no peers installed'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--builddir', required=True)
    parser.add_argument('--data')
    parser.add_argument('--samples', default=os.environ.get(
        'VHDX_SAMPLES_DIR', os.path.join(TOP, '..', 'shared', 'samples')))
    parser.add_argument('--pairs', type=int, default=int(os.environ.get('VHDX_BENCH_PAIRS', 5)),
                        help='rounds of the convert case (default 5, or VHDX_BENCH_PAIRS)')
    parser.add_argument('cases', nargs='*', metavar='CASE')
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error('--pairs must be at least 1')
    for case in args.cases:
        if case not in CASES:
            parser.error(f'unknown case {case}; known: {", ".join(CASES)}')
    bench = Bench(args.builddir, args.data or os.path.join(args.builddir, 'bench-data'),
                  os.path.abspath(args.samples), args.pairs)
    cases = args.cases or list(CASES)

    priority = own_priority()
    load_before = open('/proc/loadavg').read().split()[:3]
    rows = []
    try:
        for case in cases:
            bench.say(f'{case}')
            for row in CASES[case](bench):
                rows.append(row)
                print(format_row(row), file=sys.stderr, flush=True)
    finally:
        bench.drop_shm()
    load_after = open('/proc/loadavg').read().split()[:3]

    lines = [HEADER] + [format_row(row) for row in rows]
    lines.append('')
    lines.append(f'Machine: {machine()}; load average at the start {" ".join(load_before)}, '
                 f'at the end {" ".join(load_after)}; {priority}; {versions(bench)}.  Page '
                 'cache warm.  In-process figures: best of 5 interleaved rounds (3 for 8); 4: '
                 f'median of 21 runs (5 for qemu-img); 5: median of {bench.pairs} '
                 f'round{"s" if bench.pairs != 1 else ""}, '
                 'each running every contender once in turn (the order reversed every other '
                 'round), after an untimed round, each run after sync, its output '
                 'then removed; 11: best of 3 interleaved rounds after a checksum pass (one run '
                 'when it takes over 8 s), servers on Unix sockets.')
    text = '\n'.join(lines)
    print(text)
    if len(cases) == len(CASES):
        with open(bench.path('results.md'), 'w') as f:
            f.write(text + '\n')
    return 0 if all(row['same'] and not row.get('failed') for row in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
