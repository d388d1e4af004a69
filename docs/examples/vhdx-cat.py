#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# vhdx-cat.py: write the virtual disk of a VHDX image to standard output,
# reading it asynchronously in a GLib main loop.
#
#   python3 vhdx-cat.py IMAGE > disk.raw

import sys

import gi
gi.require_version('Vhdx', '1.0')
from gi.repository import GLib, Gio, Vhdx  # noqa: E402

CHUNK = 8 * 1024 * 1024


class Cat:
    def __init__(self, path):
        self.path = path
        self.loop = GLib.MainLoop()
        self.status = 0
        self.offset = 0
        self.image = None

    def fail(self, error):
        print('%s: %s' % (self.path, error.message), file=sys.stderr)
        self.status = 1
        self.loop.quit()

    def opened(self, source, result):
        try:
            self.image = Vhdx.Image.new_finish(result)
        except GLib.Error as error:
            return self.fail(error)
        self.read_next()

    def read_next(self):
        self.image.read_bytes_async(self.offset, CHUNK, GLib.PRIORITY_DEFAULT, None, self.got_bytes)

    def got_bytes(self, image, result):
        try:
            data = image.read_bytes_finish(result).get_data()
        except GLib.Error as error:
            return self.fail(error)
        if not data:  # the end of the virtual disk
            self.loop.quit()
            return
        sys.stdout.buffer.write(data)
        self.offset += len(data)
        self.read_next()

    def run(self):
        file = Gio.File.new_for_commandline_arg(self.path)
        Vhdx.Image.new_async(file, Vhdx.OpenFlags.NONE, GLib.PRIORITY_DEFAULT, None, self.opened)
        self.loop.run()
        sys.stdout.buffer.flush()
        return self.status


if __name__ == '__main__':
    if len(sys.argv) != 2:
        print('usage: %s IMAGE' % sys.argv[0], file=sys.stderr)
        sys.exit(1)
    sys.exit(Cat(sys.argv[1]).run())
