#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Every C file under src/ and tests/ is formatted as .clang-format says, printed as TAP.

One test per directory; a file that clang-format would change fails it, with the
first lines of the change.  Without clang-format the tests are skipped (./run
deps installs it)."""

import os
import shutil
import subprocess
import sys

TOP = os.environ.get('VHDX_SOURCE_ROOT') or os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))
CLANG_FORMAT = shutil.which('clang-format')


def c_files(directory):
    found = []
    for root, dirs, files in os.walk(os.path.join(TOP, directory)):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        found += [os.path.join(root, f) for f in sorted(files) if f.endswith(('.c', '.h'))]
    return found


def unformatted(path):
    """The diff clang-format would apply to path, or '' when there is none."""
    with open(path, 'rb') as f:
        original = f.read()
    formatted = subprocess.run([CLANG_FORMAT, '--style=file', '--assume-filename=' + path],
                               input=original, stdout=subprocess.PIPE, check=True,
                               cwd=TOP).stdout
    if formatted == original:
        return ''
    diff = subprocess.run(['diff', '-u', path, '-'], input=formatted, stdout=subprocess.PIPE)
    return diff.stdout.decode(errors='replace')


def main():
    directories = ['src', 'tests']
    print('1..%d' % len(directories))
    failed = 0
    for number, directory in enumerate(directories, 1):
        if CLANG_FORMAT is None:
            print('ok %d - %s # SKIP clang-format is not installed' % (number, directory))
            continue
        files = c_files(directory)
        bad = [(path, unformatted(path)) for path in files]
        bad = [(path, diff) for path, diff in bad if diff]
        if not files or bad:
            failed += 1
            print('not ok %d - %s: %d of %d files are not formatted' % (
                number, directory, len(bad), len(files)))
            for path, diff in bad:
                print('# %s' % os.path.relpath(path, TOP))
                for line in diff.splitlines()[:12]:
                    print('#   ' + line)
        else:
            print('ok %d - %s: %d files formatted' % (number, directory, len(files)))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
