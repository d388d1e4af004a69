#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The filter over HTTP: reading the whole virtual disk of a VHDX image that
nginx serves, through nbdkit's curl plugin and the filter, against reading
its raw equivalent through the curl plugin alone; prints a markdown table of
medians, the ratio and the HTTP requests each read costs (from nginx's
access log).

    bench-filter.py --builddir BUILD [--runs N]

The image: 1 GiB, dynamic, made by `qemu-img create` (its default blocks of
32 MiB) and written whole with non-zero data by `qemu-io -t unsafe`; the raw
file by `qemu-img convert`.  Both are made once, in BUILD/bench-data/filter/.
nginx (a private one on 127.0.0.1) serves them from the page cache; each
read is `nbdkit -U - [--filter=vhdx] curl URL --run 'nbdcopy "$uri" null:'`,
the two alternating, medians of N runs (5 by default).  The filter
advertises a preferred block size of 1 MiB, which nbdcopy uses for its
requests, where the curl plugin alone gets 256 KiB ones: the raw file is
also read with `nbdcopy --request-size=1M`, the same requests.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'nbdkit'))
from nbdtest import Nginx  # noqa: E402

GiB = 1 << 30
MiB = 1 << 20
TARGET = 1.2


def say(text):
    print(text, file=sys.stderr, flush=True)


def make_images(data):
    """The 1 GiB image and its raw equivalent in @data, made once."""
    image = os.path.join(data, 'filter-1G.vhdx')
    raw = os.path.join(data, 'filter-1G.raw')
    if os.path.exists(image) and os.path.exists(raw):
        return image, raw
    os.makedirs(data, exist_ok=True)
    say('making %s and %s' % (image, raw))
    partial = image + '.partial'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'vhdx', '-o', 'subformat=dynamic',
                    partial, str(GiB)], check=True)
    # Non-zero data everywhere, a pattern for each 64 MiB; QEMU flushes
    # for every block it allocates: not while making the image.
    commands = []
    for n, offset in enumerate(range(0, GiB, 64 * MiB)):
        commands += ['-c', 'write -P 0x%02x %d %d' % (0x21 + n, offset, 64 * MiB)]
    subprocess.run(['qemu-io', '-t', 'unsafe', '-f', 'vhdx'] + commands + [partial],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(['qemu-img', 'convert', '-f', 'vhdx', '-O', 'raw', partial, raw + '.partial'],
                   check=True)
    os.rename(raw + '.partial', raw)
    os.rename(partial, image)
    return image, raw


def timed_read(args, copy_options=''):
    """Seconds that nbdkit @args takes to serve nbdcopy the whole disk."""
    start = time.perf_counter()
    command = 'nbdcopy %s"$uri" null:' % copy_options
    result = subprocess.run(['nbdkit', '-U', '-'] + args + ['--run', command],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError('nbdkit %s: exit %d: %s' % (
            ' '.join(args), result.returncode, result.stderr.decode(errors='replace')))
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--builddir', required=True)
    parser.add_argument('--runs', type=int, default=5)
    options = parser.parse_args()
    builddir = os.path.abspath(options.builddir)
    filter_so = os.path.join(builddir, 'src', 'nbdkit', 'nbdkit-vhdx-filter.so')
    if not os.path.exists(filter_so):
        sys.exit('%s is not built' % filter_so)
    image, raw = make_images(os.path.join(builddir, 'bench-data', 'filter'))
    www = tempfile.mkdtemp(prefix='vhdx-bench-filter-')
    for path in (image, raw):
        os.symlink(path, os.path.join(www, os.path.basename(path)))
    # The files in the page cache before the first run.
    for path in (image, raw):
        subprocess.run(['cat', path], stdout=subprocess.DEVNULL, check=True)
    # The filter advertises a preferred block size of 1 MiB, which nbdcopy
    # then uses for its requests; the curl plugin alone advertises none, and
    # nbdcopy asks for 256 KiB at a time: the raw file is read both ways.
    filtered = 'vhdx: --filter=vhdx curl'
    cases = (('raw: curl', os.path.basename(raw), [], ''),
             (filtered, os.path.basename(image), ['--filter=' + filter_so], ''),
             ('raw: curl, nbdcopy --request-size=1M', os.path.basename(raw), [],
              '--request-size=%d ' % MiB))
    times = {name: [] for name, _, _, _ in cases}
    requests = {name: [] for name, _, _, _ in cases}
    with Nginx(os.path.join(www, 'nginx'), www) as nginx:
        for run in range(options.runs):
            for name, file_name, args, copy_options in cases:
                before = len(nginx.requests(file_name))
                seconds = timed_read(args + ['curl', nginx.url(file_name)], copy_options)
                count = len(nginx.requests(file_name)) - before
                times[name].append(seconds)
                requests[name].append(count)
                say('run %d, %s: %.3f s, %d HTTP requests' % (run + 1, name, seconds, count))
    shutil.rmtree(www)
    vhdx_median = statistics.median(times[filtered])
    print('| read 1 GiB over HTTP (nbdcopy to null:) | median of %d | HTTP requests '
          '| filter / this (target <= %.1fx) |' % (options.runs, TARGET))
    print('|---|---|---|---|')
    for name, _, _, _ in cases:
        low, high = min(requests[name]), max(requests[name])
        median = statistics.median(times[name])
        print('| %s | %.3f s | %s | %s |' % (
            name, median, str(low) if low == high else '%d to %d' % (low, high),
            '' if name == filtered else '%.2fx' % (vhdx_median / median)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
