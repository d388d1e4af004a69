#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The desktop integration in data/, printed as TAP: the desktop entry that
# mounts an image is valid (desktop-file-validate) and runs `vhdx mount`
# with options it knows; the MIME type declaration is well-formed XML that
# update-mime-database takes; installed into a private XDG_DATA_HOME (with
# no system data directory beside it), a VHDX image made by the tool, a
# checkpoint, a file with VHDX's signature alone and an *.avhdx file of
# zeros get the type application/x-vhdx-disk (xdg-mime query filetype, as
# GNOME's `gio info` sees it), which none of them had before, and GIO
# offers the desktop entry for that type.
#
# Environment: VHDX_TOOL (required), VHDX_DATA_DIR (data/ of the source tree).

import configparser
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'common'))
import clitest  # noqa: E402
from clitest import TOOL, Skip, expect, expect_equal, ok  # noqa: E402

DATA_DIR = os.environ.get('VHDX_DATA_DIR') or os.path.join(os.path.dirname(HERE), 'data')
DESKTOP = os.path.join(DATA_DIR, 'vhdx-mount.desktop')
MIME_XML = os.path.join(DATA_DIR, 'vhdx-mime.xml')
MIME_TYPE = 'application/x-vhdx-disk'


def need(*programs):
    for program in programs:
        if shutil.which(program) is None:
            raise Skip('%s is not installed' % program)


def desktop_entry():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(DESKTOP, encoding='utf-8')
    return parser['Desktop Entry']


class Tests:
    def __init__(self, tmp):
        self.tmp = tmp

    def path(self, *names):
        return os.path.join(self.tmp, *names)

    def xdg_env(self, name):
        """A private XDG_DATA_HOME, with an empty directory as the only
        system data directory, and the tool first in PATH (GIO hides
        entries whose program it does not find)."""
        home = self.path(name, 'home')
        system = self.path(name, 'system')
        os.makedirs(os.path.join(home, 'mime', 'packages'))
        os.makedirs(os.path.join(home, 'applications'))
        os.makedirs(system)
        return home, dict(clitest.ENV, XDG_DATA_HOME=home, XDG_DATA_DIRS=system,
                          XDG_CURRENT_DESKTOP='GNOME',
                          PATH=os.path.dirname(TOOL) + ':' + os.environ.get('PATH', ''))

    def test_desktop_entry_valid(self):
        need('desktop-file-validate')
        result = clitest.run(['desktop-file-validate', DESKTOP])
        expect_equal(result.returncode, 0, 'desktop-file-validate: %s' % result.stdout.decode())
        expect_equal(result.stdout + result.stderr, b'', 'desktop-file-validate\'s hints')

    def test_desktop_entry_runs_mount(self):
        entry = desktop_entry()
        expect_equal(entry['Type'], 'Application', 'Type')
        expect(MIME_TYPE in entry['MimeType'].split(';'), 'MimeType: %r' % entry['MimeType'])
        words = entry['Exec'].split()
        expect_equal(words[:2], ['vhdx', 'mount'], 'the command')
        expect_equal(words[-1], '%f', 'one local file as the argument')
        help_text = ok([TOOL, 'mount', '--help']).stdout.decode()
        for option in words[2:-1]:
            expect(option.startswith('--') and option in help_text,
                   'vhdx mount --help does not know %s' % option)

    def test_mime_xml_well_formed(self):
        need('xmllint')
        ok(['xmllint', '--noout', MIME_XML])

    def test_files_get_the_type(self):
        need('update-mime-database', 'xdg-mime', 'gio')
        home, env = self.xdg_env('mime')
        files = self.path('files')
        os.makedirs(files)
        image, child = os.path.join(files, 'disk.vhdx'), os.path.join(files, 'disk_6D2B.avhdx')
        ok([TOOL, 'create', image, '64M'])
        ok([TOOL, 'create', '--parent', image, child])
        signature = os.path.join(files, 'copied-disk.bin')
        shutil.copyfile(image, signature)
        zeros = os.path.join(files, 'zeros.avhdx')
        with open(zeros, 'wb') as f:
            f.write(bytes(4096))

        def types():
            found = []
            for path in (image, child, signature, zeros):
                result = clitest.run(['xdg-mime', 'query', 'filetype', path], env=env)
                expect_equal(result.returncode, 0, 'xdg-mime query filetype: %r' % result.stderr)
                found.append(result.stdout.decode().strip())
            return found

        result = clitest.run(['update-mime-database', os.path.join(home, 'mime')], env=env)
        expect_equal(result.returncode, 0, 'update-mime-database without the declaration')
        before = types()
        expect(MIME_TYPE not in before, 'the type without the declaration: %r' % before)
        shutil.copy(MIME_XML, os.path.join(home, 'mime', 'packages'))
        result = clitest.run(['update-mime-database', os.path.join(home, 'mime')], env=env)
        expect_equal(result.returncode, 0, 'update-mime-database: %r' % result.stderr)
        expect_equal(result.stderr, b'', 'update-mime-database\'s warnings')
        expect_equal(types(), [MIME_TYPE] * 4, 'the types of an image, a checkpoint, a file '
                     'with the signature and an *.avhdx file of zeros')

    def test_offered_for_the_type(self):
        need('update-mime-database', 'update-desktop-database')
        home, env = self.xdg_env('apps')
        shutil.copy(MIME_XML, os.path.join(home, 'mime', 'packages'))
        shutil.copy(DESKTOP, os.path.join(home, 'applications'))
        ok(['update-mime-database', os.path.join(home, 'mime')])
        ok(['update-desktop-database', os.path.join(home, 'applications')])
        script = ('from gi.repository import Gio\n'
                  'print(" ".join(a.get_id() for a in Gio.AppInfo.get_all_for_type(%r)))\n'
                  % MIME_TYPE)
        result = clitest.run(['/usr/bin/python3', '-c', script], env=env)
        if result.returncode != 0 and b'gi.repository' in result.stderr:
            raise Skip('PyGObject is not installed')
        expect_equal(result.returncode, 0, 'GIO: %r' % result.stderr)
        expect_equal(result.stdout.decode().split(), ['vhdx-mount.desktop'],
                     'the applications GIO offers for %s' % MIME_TYPE)


if __name__ == '__main__':
    sys.exit(clitest.main(Tests, 'vhdx-desktop-'))
