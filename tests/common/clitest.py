# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the command tests of the `vhdx` tool share: running programs, the
checks, and running a class's test_* methods as TAP in a temporary directory."""

import bz2
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

TOOL = os.environ.get('VHDX_TOOL')
# Messages in English, whatever the caller's locale.
ENV = dict(os.environ, LC_ALL='C.UTF-8')
ENV.pop('LANGUAGE', None)


class Skip(Exception):
    pass


def run(args, env=None):
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=ENV if env is None else env, timeout=600)


def ok(args):
    result = run(args)
    if result.returncode != 0:
        raise AssertionError('%s exited with %d: %s' % (
            ' '.join(str(a) for a in args), result.returncode,
            result.stderr.decode(errors='replace').strip()))
    return result


def vhdx(*args):
    return run([TOOL] + list(args))


def write_raw(path, size, writes):
    """A raw disk of @size bytes holding (pattern, offset, length) runs of one byte."""
    with open(path, 'wb') as f:
        f.truncate(size)
        for pattern, offset, length in writes:
            f.seek(offset)
            f.write(bytes([pattern]) * length)


def sample(name, dst):
    """Decompress the sample @name of ../shared/samples (VHDX_SHARED_DIR)
    into @dst and return the sha256 of its disk that the samples' README
    gives; Skip when the samples are not there."""
    shared = os.environ.get('VHDX_SHARED_DIR')
    path = os.path.join(shared, 'samples', name) if shared else None
    if not path or not os.path.exists(path):
        raise Skip('no samples (../shared/samples)')
    digest = None
    with open(os.path.join(os.path.dirname(path), 'README.md'), encoding='utf-8') as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            if cells[0] == name:
                digest = cells[-1]
    if digest is None or not re.fullmatch(r'[0-9a-f]{64}', digest):
        raise AssertionError('the samples\' README gives no checksum of %s: %r' % (name, digest))
    opener = bz2.open if name.endswith('.bz2') else gzip.open
    with opener(path, 'rb') as src, open(dst, 'wb') as out:
        shutil.copyfileobj(src, out, 4 << 20)
    return digest


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def expect_equal(found, expected, what):
    if found != expected:
        raise AssertionError('%s: expected %r, found %r' % (what, expected, found))


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(4 << 20), b''):
            h.update(block)
    return h.hexdigest()


def main(tests_class, prefix):
    """Run the test_* methods of @tests_class (made with a temporary
    directory named after @prefix), those named on the command line or all,
    printed as TAP; the exit status says whether one failed."""
    if TOOL is None:
        print('1..0 # SKIP VHDX_TOOL must be set')
        return 0
    names = sorted(n for n in dir(tests_class) if n.startswith('test_'))
    if sys.argv[1:]:
        names = [n for n in names if n[len('test_'):] in sys.argv[1:]]
    print('1..%d' % len(names))
    failed = 0
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        tests = tests_class(tmp)
        for number, name in enumerate(names, 1):
            label = name[len('test_'):].replace('_', ' ')
            try:
                getattr(tests, name)()
                print('ok %d - %s' % (number, label))
            except Skip as e:
                print('ok %d - %s # SKIP %s' % (number, label, e))
            except Exception:
                failed += 1
                print('not ok %d - %s' % (number, label))
                for line in traceback.format_exc().splitlines():
                    print('# ' + line)
            sys.stdout.flush()
    return 1 if failed else 0
