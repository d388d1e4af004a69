#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks the library's version script against its introspection data: every
# function, method, constructor and get_type function of the GIR must be
# exported by the .map file, and the .map file must export nothing else.
#
# With the built library as a third argument, also checks that the library
# exports exactly what the .map file lists (nm -D).
#
# Usage: check-symbols.py LIBVHDX.MAP VHDX-1.0.GIR [LIBVHDX.SO]

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

CORE = 'http://www.gtk.org/introspection/core/1.0'
C = 'http://www.gtk.org/introspection/c/1.0'
GLIB = 'http://www.gtk.org/introspection/glib/1.0'
CALLABLES = {'{%s}%s' % (CORE, tag) for tag in ('function', 'method', 'constructor')}


def gir_symbols(path):
    symbols = set()
    for element in ET.parse(path).iter():
        identifier = element.get('{%s}identifier' % C)
        if element.tag in CALLABLES and identifier:
            symbols.add(identifier)
        get_type = element.get('{%s}get-type' % GLIB)
        if get_type and get_type != 'intern':
            symbols.add(get_type)
    return symbols


def map_symbols(path):
    with open(path, encoding='utf-8') as f:
        text = re.sub(r'/\*.*?\*/', '', f.read(), flags=re.S)
    symbols = set()
    for block in re.findall(r'global:(.*?)(?:local:|\})', text, flags=re.S):
        symbols.update(s.strip() for s in block.split(';') if s.strip())
    return symbols


def library_symbols(path):
    output = subprocess.run(['nm', '-D', '--defined-only', path], check=True,
                            stdout=subprocess.PIPE, universal_newlines=True).stdout
    symbols = set()
    for line in output.splitlines():
        fields = line.split()
        # Functions and data; the version node itself is an absolute symbol.
        if len(fields) == 3 and fields[1] in 'TDBRVW':
            symbols.add(fields[2].split('@')[0])
    return symbols


def main():
    map_path, gir_path = sys.argv[1:3]
    library_path = sys.argv[3] if len(sys.argv) > 3 else None
    exported = map_symbols(map_path)
    introspected = gir_symbols(gir_path)
    status = 0
    print('1..3')
    missing = sorted(introspected - exported)
    if missing:
        print('not ok 1 - in the GIR but not exported by %s: %s' % (map_path, ', '.join(missing)))
        status = 1
    else:
        print('ok 1 - every symbol of the GIR (%d) is exported' % len(introspected))
    extra = sorted(exported - introspected)
    if extra:
        print('not ok 2 - exported but not in the GIR: %s' % ', '.join(extra))
        status = 1
    else:
        print('ok 2 - every exported symbol (%d) is in the GIR' % len(exported))
    if library_path is None or shutil.which('nm') is None:
        print('ok 3 # SKIP no library given or nm not installed')
    else:
        found = library_symbols(library_path)
        if found != exported:
            print('not ok 3 - %s differs from the .map file: exports %s; lacks %s' % (
                library_path, ', '.join(sorted(found - exported)) or 'nothing more',
                ', '.join(sorted(exported - found)) or 'nothing'))
            status = 1
        else:
            print('ok 3 - the library exports exactly the symbols of the .map file')
    return status


if __name__ == '__main__':
    sys.exit(main())
