#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The benchmarks of the operations that change an image: each command
against its reference in one run (what the same image costs to open and
describe, `vhdx info`; or copying the bytes the command moves, `cp` and
`sync`); prints a markdown table of medians and ratios.

    bench-manage.py --builddir BUILD [--runs N] [--samples DIR] [CASE...]

Cases: resize-grow (an empty 1 TiB dynamic image, made by `vhdx create`, by
`qemu-img create`, and the Hyper-V sample grown from 1 GiB, grown to 64 TiB:
the BAT grows from 256 KiB to 16 MiB and its region with it, over the blocks
that follow it or to the end of the file), resize-refused (shrinking a 64 TiB
image whose last block holds data: the refusal reads the whole BAT).  Each
resize runs on a fresh copy of the image and ends with its flushes to the
disk; `vhdx info` reads.  merge (a 4 GiB child holding 1 GiB of changes,
made by `vhdx convert --parent` over an empty 4 GiB dynamic image made by
`qemu-img create`, merged into it: its reference is copying a 1 GiB file
with `cp` and `sync`, both reading from the page cache and ending durable).
compact: a 4 GiB dynamic image of 1 MiB blocks made by `qemu-img create` +
`qemu-io`, data written into half the blocks and zeros (stored as data)
into the others (every other block, or the second half), compacted on a
fresh copy, against reading the whole image once from the page cache
(`vhdx cat` to /dev/null, and `qemu-img convert` to its null driver).
"""

import argparse
import bz2
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

GiB = 1 << 30
TiB = 1 << 40


def timed(argv, expect=0):
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if result.returncode != expect:
        raise RuntimeError(f'{argv}: exit {result.returncode}, expected {expect}: '
                           f'{result.stderr.decode(errors="replace")}')
    return elapsed


class Bench:
    def __init__(self, builddir, runs, samples):
        self.vhdx = os.path.join(os.path.abspath(builddir), 'src', 'cli', 'vhdx')
        self.runs = runs
        self.samples = samples
        self.tmp = tempfile.mkdtemp(prefix='vhdx-bench-manage-')
        self.rows = []

    def path(self, name):
        return os.path.join(self.tmp, name)

    def say(self, text):
        print(text, file=sys.stderr, flush=True)

    def images(self):
        """The empty 1 TiB images, by who made them."""
        made = []
        ours = self.path('ours.vhdx')
        subprocess.run([self.vhdx, 'create', ours, '1T'], check=True)
        made.append(('vhdx create', ours))
        if shutil.which('qemu-img'):
            qemu = self.path('qemu.vhdx')
            subprocess.run(['qemu-img', 'create', '-q', '-f', 'vhdx', qemu, '1T'], check=True)
            made.append(('qemu-img', qemu))
        sample = os.path.join(self.samples or '', 'iotest-dynamic-1G.vhdx.bz2')
        if self.samples and os.path.exists(sample):
            hyperv = self.path('hyperv.vhdx')
            with bz2.open(sample) as f, open(hyperv, 'wb') as out:
                shutil.copyfileobj(f, out)
            made.append(('Hyper-V (1 GiB)', hyperv))
        return made

    def copy(self, image):
        """A fresh copy, on the disk before the clock starts: the first flush
        of the command must not write back the copy."""
        work = self.path('work.vhdx')
        shutil.copyfile(image, work)
        with open(work, 'rb+') as f:
            os.fsync(f.fileno())
        return work

    def row(self, case, made_by, command, reference, ref_name='vhdx info'):
        self.rows.append((case, made_by, command, ref_name, reference))
        self.say(f'{case} ({made_by}): {command * 1000:.1f} ms, {ref_name} '
                 f'{reference * 1000:.1f} ms, {command / reference:.2f}x')

    def case_resize_grow(self):
        for made_by, image in self.images():
            times, infos = [], []
            for _ in range(self.runs):
                work = self.copy(image)
                times.append(timed([self.vhdx, 'resize', work, '64T']))
                infos.append(timed([self.vhdx, 'info', work]))
            self.row('resize to 64 TiB', made_by, statistics.median(times),
                     statistics.median(infos))

    def case_resize_refused(self):
        image = self.path('full.vhdx')
        subprocess.run([self.vhdx, 'create', image, '64T'], check=True)
        # The last block holds data, written by QEMU.
        if shutil.which('qemu-io') is None:
            self.say('resize-refused: qemu-io is not installed, skipped')
            return
        subprocess.run(['qemu-io', '-f', 'vhdx', '-c', f'write -P 0x5a {64 * TiB - 4096} 4096',
                        image], check=True, stdout=subprocess.DEVNULL)
        times, infos = [], []
        for _ in range(self.runs):
            times.append(timed([self.vhdx, 'resize', image, '1G'], expect=1))
            infos.append(timed([self.vhdx, 'info', image]))
        self.row('shrink 64 TiB to 1 GiB, refused', 'vhdx create', statistics.median(times),
                 statistics.median(infos))

    def halves_image(self, name, interleaved):
        """4 GiB of 1 MiB blocks made by qemu-img + qemu-io: data in half the
        blocks, zeros (stored as data) in the others; alternating, or the
        data first."""
        image = self.path(name)
        block = 1 << 20
        blocks = 4 * GiB // block
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'vhdx', '-o',
                        f'subformat=dynamic,block_size={block}', image, str(4 * GiB)],
                       check=True)
        commands = []
        for b in range(blocks):
            data = b % 2 == 0 if interleaved else b < blocks // 2
            pattern = 0x11 + b % 200 if data else 0
            commands += ['-c', f'write -P {pattern} {b * block} {block}']
        # QEMU flushes three times per block it allocates: not while making it.
        subprocess.run(['qemu-io', '-t', 'unsafe', '-f', 'vhdx'] + commands + [image],
                       check=True, stdout=subprocess.DEVNULL)
        return image

    def case_compact(self):
        if shutil.which('qemu-img') is None or shutil.which('qemu-io') is None:
            self.say('compact: qemu-img or qemu-io is not installed, skipped')
            return
        layouts = (('every other block zeros: half the data moves', True),
                   ('the second half zeros: nothing moves', False))
        for layout, interleaved in layouts:
            image = self.halves_image('halves.vhdx', interleaved)
            times, cats, qemus, sizes = [], [], [], None
            for _ in range(self.runs):
                work = self.copy(image)
                cats.append(timed(['sh', '-c', f'exec "{self.vhdx}" cat "{work}" > /dev/null']))
                qemus.append(timed(['qemu-img', 'convert', '-f', 'vhdx', '-n',
                                    '--target-image-opts', work,
                                    f'driver=null-co,size={4 * GiB}']))
                before = os.stat(work).st_size
                times.append(timed([self.vhdx, 'compact', work]))
                sizes = (before, os.stat(work).st_size)
            case = 'compact 4 GiB, %s (%.1f -> %.1f GiB)' % (layout, sizes[0] / GiB,
                                                              sizes[1] / GiB)
            for against, what in ((cats, 'vhdx cat'), (qemus, 'qemu-img convert')):
                self.row(case, 'qemu-img + qemu-io', statistics.median(times),
                         statistics.median(against), what)
            os.unlink(image)

    def case_merge(self):
        if shutil.which('qemu-img') is None:
            self.say('merge: qemu-img is not installed, skipped')
            return
        base = self.path('merge-base.vhdx')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'vhdx', '-o', 'subformat=dynamic',
                        base, '4G'], check=True)
        # 1 GiB of changes: 4 MiB of data every 16 MiB of the 4 GiB disk.
        raw = self.path('merge-child.raw')
        changes = self.path('merge-changes.bin')
        chunk = os.urandom(1 << 20) * 4
        with open(raw, 'wb') as f, open(changes, 'wb') as c:
            f.truncate(4 * GiB)
            for offset in range(0, 4 * GiB, 16 << 20):
                f.seek(offset)
                f.write(chunk)
                c.write(chunk)
        child = self.path('merge-child.avhdx')
        subprocess.run([self.vhdx, 'convert', '--parent', base, raw, child], check=True)
        os.unlink(raw)
        # Fresh copies under the same names in another directory: the
        # child finds the copy of its parent by its relative path.
        work = self.path('work')
        os.makedirs(work)
        copy = self.path('copy.bin')
        times, copies = [], []
        for _ in range(self.runs):
            for src in (base, child):
                dst = os.path.join(work, os.path.basename(src))
                shutil.copyfile(src, dst)
                with open(dst, 'rb+') as f:
                    os.fsync(f.fileno())
            times.append(timed([self.vhdx, 'merge', os.path.join(work, 'merge-child.avhdx')]))
            copies.append(timed(['sh', '-c', 'cp "$0" "$1" && sync', changes, copy]))
            os.unlink(copy)
        self.row('merge 1 GiB of changes (4 GiB disk)', 'qemu-img + vhdx convert',
                 statistics.median(times), statistics.median(copies), 'cp + sync of 1 GiB')

    def table(self):
        print('| case | image made by | vhdx command | reference | ratio |')
        print('|---|---|---|---|---|')
        for case, made_by, command, ref_name, reference in self.rows:
            print(f'| {case} | {made_by} | {command * 1000:.1f} ms | {ref_name}: '
                  f'{reference * 1000:.1f} ms | {command / reference:.2f}x |')


CASES = ['resize-grow', 'resize-refused', 'merge', 'compact']


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--builddir', required=True)
    parser.add_argument('--runs', type=int, default=7)
    parser.add_argument('--samples')
    parser.add_argument('cases', nargs='*')
    args = parser.parse_args()
    bench = Bench(args.builddir, args.runs, args.samples)
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
