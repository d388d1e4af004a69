#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The benchmarks of libvhdx: makes the images once, runs the cases and prints
a markdown table with our figure, the limit and the peers measured in the same
run, the ratios, and which image each row used.

    bench.py --builddir BUILD [--data DIR] [--samples DIR] [CASE...]

CASE is one of the names in CASES (all when none is given).  The images go to
DIR (default BUILD/bench-data) and are made only when missing: by this project
(`vhdx convert`, `vhdx create`), by QEMU (`qemu-img convert -O vhdx` from the
same raw files, `qemu-img create` and `qemu-io` writes) and, from the samples
of the shared folder (--samples, default ../shared/samples beside the source
tree), by Hyper-V and Disk2VHD.  A row whose image or tool is missing is
printed all the same, saying what is missing.  Every contender's bytes are
compared (with the raw equivalent of the image); the exit status is non-zero
only when they differ or a tool fails: missing a target is reported in the
table, not as a failure.
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
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
    def __init__(self, builddir, data, samples):
        self.builddir = os.path.abspath(builddir)
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

    def run(self, *argv, capture=False, stdin=None):
        # In a session of its own (see raise_priority); this script stays in the
        # terminal's, so that an interrupt still stops everything.
        argv = [str(a) for a in argv]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                                   stdin=subprocess.PIPE if stdin is not None else None,
                                   start_new_session=True, preexec_fn=raise_priority)
        try:
            out, _ = process.communicate(stdin)
        except BaseException:
            # The whole session: bench-spawn's children too.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        if process.returncode != 0:
            raise subprocess.CalledProcessError(process.returncode, argv)
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

    def measure(self, *argv):
        """One line of JSON from a measuring program."""
        out = self.run(*argv, capture=True)
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

    def case_convert(self):
        # Like with like: the durable copies end with the data on the disk
        # (ours syncs; `qemu-img convert` and `cp` are followed by `sync FILE`),
        # the others leave it to the kernel.  The limit is what `cp` makes of
        # the raw equivalent.  Ext4: the data folder; tmpfs: the image, its
        # raw equivalent and the output in /dev/shm.
        qemu_img = self.tools['qemu-img']
        rows = []
        letter = iter('abcdefghijklmnop')
        for key in ('ours-half', 'qemu-half-1m'):
            for fs in ('ext4', 'tmpfs'):
                for durable in (True, False):
                    label = f'5{next(letter)}'
                    title = ('Convert to sparse raw, ' + ('durable' if durable else 'not synced')
                             + f', on {fs}')
                    try:
                        vhdx, raw, desc = self.image(key)
                    except Missing as e:
                        rows.append(self.missing_row(label, title, key, str(e)))
                        continue
                    if fs == 'tmpfs' and not self.shm:
                        rows.append(self.missing_row(label, title, desc, 'no /dev/shm'))
                        continue
                    row = self.convert_row(vhdx, raw, fs, durable, qemu_img)
                    row.update(number=label, title=title, image=desc)
                    rows.append(row)
            self.drop_shm()
        return rows

    def drop_shm(self):
        if self.shm:
            shutil.rmtree(os.path.join(self.shm, 'vhdx-bench'), ignore_errors=True)

    def convert_row(self, vhdx, raw, fs, durable, qemu_img):
        if fs == 'tmpfs':
            folder = os.path.join(self.shm, 'vhdx-bench')
            os.makedirs(folder, exist_ok=True)
            src, src_raw = os.path.join(folder, 'src.vhdx'), os.path.join(folder, 'src.raw')
            if not os.path.exists(src) or os.path.getsize(src) != os.path.getsize(vhdx):
                shutil.copyfile(vhdx, src)
                subprocess.run(['cp', '--sparse=always', raw, src_raw], check=True)
        else:
            folder = self.path('convert-out')
            os.makedirs(folder, exist_ok=True)
            src, src_raw = vhdx, raw
        outs = {name: os.path.join(folder, name + '.raw') for name in ('vhdx', 'qemu', 'cp')}
        sync = ' && sync "$1"' if durable else ''
        commands = {
            'vhdx': [self.vhdx, 'convert', '-O', 'raw'] + ([] if durable else ['--no-sync'])
            + [src, outs['vhdx']],
            'cp': ['sh', '-c', 'cp --sparse=always "$0" "$1"' + sync, src_raw, outs['cp']],
        }
        if qemu_img:
            commands['qemu'] = ['sh', '-c', qemu_img + ' convert -O raw "$0" "$1"' + sync, src,
                                outs['qemu']]
        times = {name: [] for name in commands}
        same = True
        data = 0
        rounds = 3
        for round in range(rounds):
            for name, argv in commands.items():
                # Dirty pages of one run must not be written back during the next.
                os.sync()
                times[name].append(self.measure(self.spawn, 1, *argv)['median'])
                if round == rounds - 1:
                    same = same and self.same_file(outs[name], src_raw)
                    if name == 'vhdx':
                        data = os.stat(outs[name]).st_blocks * 512
                # One output at a time: on tmpfs they take memory.
                os.unlink(outs[name])
        best = {name: min(t) for name, t in times.items()}
        t, c = best['vhdx'], best['cp']
        how = ' (+ `sync FILE`)' if durable else ''
        limit = f'`cp --sparse=always` of the raw equivalent{how} {c:.2f} s'
        if 'qemu' not in best:
            return self.row(f'`vhdx convert` {t:.2f} s', limit, 'qemu-img not installed',
                            f'{t / c:.2f}× cp', 'faster than qemu-img, ≤ 1.1× cp', False, same)
        q = best['qemu']
        return self.row(f'`vhdx convert{"" if durable else " --no-sync"}` {t:.2f} s '
                        f'({data / GiB:.1f} GiB of data)', limit,
                        f'`qemu-img convert -O raw`{how} {q:.2f} s',
                        f'{q / t:.2f}× faster than qemu-img; {t / c:.2f}× cp',
                        'faster than qemu-img, ≤ 1.1× cp', t < q and t <= 1.1 * c, same)

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


def format_row(row):
    if row['met'] is None:
        met = row.get('note', 'not measured')
    else:
        met = 'yes' if row['met'] else '**no**'
    if not row['same']:
        met += ' (**different bytes**)'
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
    parser.add_argument('cases', nargs='*', metavar='CASE')
    args = parser.parse_args()
    for case in args.cases:
        if case not in CASES:
            parser.error(f'unknown case {case}; known: {", ".join(CASES)}')
    bench = Bench(args.builddir, args.data or os.path.join(args.builddir, 'bench-data'),
                  os.path.abspath(args.samples))
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
                 'median of 21 runs (5 for qemu-img); 5: best of 3 alternating runs, each '
                 'after sync; 11: best of 3 interleaved rounds after a checksum pass (one run '
                 'when it takes over 8 s), servers on Unix sockets.')
    text = '\n'.join(lines)
    print(text)
    if len(cases) == len(CASES):
        with open(bench.path('results.md'), 'w') as f:
            f.write(text + '\n')
    return 0 if all(row['same'] for row in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
