# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the command tests of the `vhdx` tool share: running programs, the
checks, and running a class's test_* methods as TAP in a temporary directory."""

import hashlib
import os
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
