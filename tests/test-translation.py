#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The German translation, from the build tree, printed as TAP: the tool and
# the library find the catalogs of the build tree through VHDX_LOCALEDIR.
#
# Environment: VHDX_TOOL (the tool), VHDX_LOCALEDIR (the po/ directory of
# the build tree, holding de/LC_MESSAGES/libvhdx.mo).

import os
import subprocess
import sys
import tempfile

TOOL = os.environ.get('VHDX_TOOL')
LOCALEDIR = os.environ.get('VHDX_LOCALEDIR')


def run(args, language=None):
    env = dict(os.environ, LC_ALL='C.UTF-8')
    env.pop('LANGUAGE', None)
    if language is not None:
        env['LANGUAGE'] = language
    result = subprocess.run([TOOL] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, timeout=60)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def main():
    if not TOOL or not LOCALEDIR:
        print('Bail out! VHDX_TOOL and VHDX_LOCALEDIR must be set')
        return 1
    catalog = os.path.join(LOCALEDIR, 'de', 'LC_MESSAGES', 'libvhdx.mo')
    checks = []

    def check(title, condition, details):
        checks.append((title, condition, details))

    check('the German catalog is built', os.path.exists(catalog),
          '%s is missing (is de in po/LINGUAS, and the build reconfigured?)' % catalog)

    status, out, _ = run(['--help'], 'de')
    check('vhdx --help in German', status == 0 and 'Befehle:' in out and 'Aufruf:' in out
          and 'Ein Abbild auf Beschädigungen prüfen' in out, out)

    status, out, _ = run(['info', '--help'], 'de')
    check('vhdx info --help in German', status == 0 and 'Rückgabewert' in out, out)

    status, out, _ = run(['--help'])
    check('vhdx --help without LANGUAGE stays English', status == 0 and 'Commands:' in out, out)

    with tempfile.NamedTemporaryFile(suffix='.vhdx') as junk:
        junk.write(b'not a virtual disk' * 100000)
        junk.flush()
        # The engine's messages, through the tool and through the library.
        for args in (['info', junk.name], ['info', '--json', junk.name]):
            status, _, err = run(args, 'de')
            check('%s: the error in German' % ' '.join(args[:-1]),
                  status == 1 and 'Dateikennung an Position 0' in err, err)

    print('1..%d' % len(checks))
    failed = 0
    for number, (title, condition, details) in enumerate(checks, 1):
        if condition:
            print('ok %d - %s' % (number, title))
        else:
            failed += 1
            print('not ok %d - %s' % (number, title))
            for line in details.splitlines():
                print('# ' + line)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
