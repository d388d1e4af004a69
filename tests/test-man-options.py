# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks, printed as TAP, that the manual pages name every long option that
# vhdx and vhdx-pool print in their help, and every key of the nbdkit plugin
# and filter.
#
# For each program, the top-level --help gives the commands; each command's
# --help gives its options.  The options of the option tables are collected,
# except GOption's own --help and --help-all, and each must appear in the
# program's manual page (with roff's \- read as -).
#
# Environment: VHDX_TOOL (required), VHDX_DOCS_DIR (the docs/ directory of
# the source tree, required), VHDX_POOL, VHDX_NBDKIT_PLUGIN and
# VHDX_NBDKIT_FILTER (empty when they are not built), VHDX_ASAN_RUNTIME
# (preloaded into nbdkit when the plugin is built with AddressSanitizer).

import os
import re
import shutil
import subprocess
import sys

TOOL = os.environ.get('VHDX_TOOL', '')
DOCS_DIR = os.environ.get('VHDX_DOCS_DIR', '')
POOL = os.environ.get('VHDX_POOL', '')
PLUGIN = os.environ.get('VHDX_NBDKIT_PLUGIN', '')
FILTER = os.environ.get('VHDX_NBDKIT_FILTER', '')
ASAN_RUNTIME = os.environ.get('VHDX_ASAN_RUNTIME', '')
NBDKIT = shutil.which('nbdkit')

# An option line of a help text: "  -p, --progress   Show ..." or
# "  --parent=PARENT   Use ..."; the option names come before the description.
OPTION_LINE_RE = re.compile(r'^\s+(-[^\s].*?)(?:\s{2,}|$)')
LONG_OPTION_RE = re.compile(r'(?<![\w-])--([A-Za-z0-9][\w-]*)')
# A command line of the top-level help: "  info      Show what ...".
COMMAND_LINE_RE = re.compile(r'^  ([a-z][a-z0-9-]*)\s{2,}\S')
# A key of a plugin's config_help: "[file=]DISK.vhdx ..." or "parent=PARENT ...".
PLUGIN_KEY_RE = re.compile(r'^\[?([A-Za-z_][\w.-]*)=')
# The options that GOption adds to the "Help Options:" section by itself.
GOPTION_HELP = {'help', 'help-all'}


class Skip(Exception):
    pass


def help_env():
    env = dict(os.environ, LC_ALL='C.UTF-8')
    env.pop('LANGUAGE', None)
    return env


def run(args, env=None):
    result = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env or help_env(), timeout=60)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def parse_help(text):
    """The commands and the long options of a help text.  Options listed
    under "Help Options:" that GOption adds itself are left out."""
    commands = []
    options = []
    section = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            section = line.strip()
            continue
        if section == 'Commands:':
            match = COMMAND_LINE_RE.match(line)
            if match:
                commands.append(match.group(1))
            continue
        match = OPTION_LINE_RE.match(line)
        if not match:
            continue
        for name in LONG_OPTION_RE.findall(match.group(1)):
            if section == 'Help Options:' and name in GOPTION_HELP:
                continue
            if name not in options:
                options.append(name)
    return commands, options


def read_man_page(name):
    """The text of a manual page with roff's escapes of - and of fonts removed."""
    with open(os.path.join(DOCS_DIR, name), encoding='utf-8') as f:
        text = f.read()
    text = text.replace('\\-', '-')
    text = re.sub(r'\\f(\[[^\]]*\]|\(..|.)', '', text)
    return text.replace('\\&', '').replace('\\%', '')


def documents_option(man_text, name):
    return re.search(r'(?<![\w-])--%s(?![\w-])' % re.escape(name), man_text) is not None


def documents_key(man_text, key):
    return re.search(r'(?<![\w-])%s[ \t]*=' % re.escape(key), man_text) is not None


def expect_documented(man_page, man_text, options):
    missing = [o for o in options if not documents_option(man_text, o)]
    if missing:
        raise AssertionError('%s is missing %s' % (
            man_page, ', '.join('--' + o for o in missing)))


def help_of(program, args):
    """The commands and options that `program args` prints."""
    status, out, err = run([program] + args)
    what = ' '.join([os.path.basename(program)] + args)
    if status != 0:
        raise AssertionError('%s exited with %d: %s' % (what, status, err.strip()))
    commands, options = parse_help(out)
    # A command whose only options are GOption's own (umount) still prints them.
    if not commands and not options and 'Help Options:' not in out:
        raise AssertionError('%s printed neither commands nor options:\n%s' % (what, out))
    return commands, options


def program_checks(program, man_page):
    """The checks of a program with commands: the options of its top-level
    help, then those of each command's --help."""
    man_text = read_man_page(man_page)
    name = os.path.basename(program)
    commands, options = help_of(program, ['--help'])
    if not commands:
        raise AssertionError('%s --help lists no commands' % name)
    checks = [('%s --help: options in %s' % (name, man_page),
               lambda: expect_documented(man_page, man_text, options))]
    for command in commands:
        def check(command=command):
            if command == 'help':
                # "help COMMAND" takes a command name; given --help, it looks
                # for a command of that name.
                status, _, _ = run([program, 'help', '--help'])
                if status != 0:
                    raise Skip('%s help takes a command name, not options' % name)
            _, command_options = help_of(program, [command, '--help'])
            expect_documented(man_page, man_text, command_options)
        checks.append(('%s %s --help: options in %s' % (name, command, man_page), check))
    return checks


def nbdkit_keys(kind, module, man_page):
    """The keys of the plugin or filter @module in nbdkit's --help, each of
    which @man_page must name."""
    if not module:
        raise Skip('the nbdkit %s is not built' % kind)
    if not NBDKIT:
        raise Skip('nbdkit is not installed')
    env = help_env()
    if ASAN_RUNTIME:
        env['LD_PRELOAD'] = ASAN_RUNTIME
        env['ASAN_OPTIONS'] = 'detect_leaks=0:abort_on_error=1'
    args = [NBDKIT, module, '--help'] if kind == 'plugin' else [
        NBDKIT, '--filter=' + module, 'null', '--help']
    status, out, err = run(args, env)
    if status != 0:
        raise AssertionError('%s exited with %d: %s' % (' '.join(args), status, err.strip()))
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(kind + ': ')), None)
    if start is None:
        raise AssertionError('nbdkit --help printed no %s section:\n%s' % (kind, out))
    keys = []
    for line in lines[start + 1:]:
        if not line.strip():
            break  # the end of the section: the plugin below the filter follows
        match = PLUGIN_KEY_RE.match(line)
        if match and match.group(1) not in keys:
            keys.append(match.group(1))
    if not keys:
        raise AssertionError('nbdkit --help printed no keys of the %s:\n%s' % (kind, out))
    man_text = read_man_page(man_page)
    missing = [k for k in keys if not documents_key(man_text, k)]
    if missing:
        raise AssertionError('%s is missing %s' % (man_page, ', '.join(k + '=' for k in missing)))


def nbdkit_plugin_keys():
    nbdkit_keys('plugin', PLUGIN, 'nbdkit-vhdx-plugin.1')


def nbdkit_filter_keys():
    nbdkit_keys('filter', FILTER, 'nbdkit-vhdx-filter.1')


def main():
    if not TOOL or not DOCS_DIR:
        print('Bail out! VHDX_TOOL and VHDX_DOCS_DIR must be set')
        return 1

    checks = []
    try:
        checks += program_checks(TOOL, 'vhdx.1')
    except Exception as e:
        print('Bail out! %s' % e)
        return 1
    if POOL:
        try:
            checks += program_checks(POOL, 'vhdx-pool.1')
        except Exception as e:
            print('Bail out! %s' % e)
            return 1
    else:
        def pool_not_built():
            raise Skip('vhdx-pool is not built')
        checks.append(('vhdx-pool: options in vhdx-pool.1', pool_not_built))
    checks.append(('nbdkit-vhdx-plugin: keys in nbdkit-vhdx-plugin.1', nbdkit_plugin_keys))
    checks.append(('nbdkit-vhdx-filter: keys in nbdkit-vhdx-filter.1', nbdkit_filter_keys))

    print('1..%d' % len(checks))
    failed = 0
    for number, (title, check) in enumerate(checks, 1):
        try:
            check()
        except Skip as e:
            print('ok %d - %s # SKIP %s' % (number, title, e))
        except Exception as e:
            failed += 1
            print('not ok %d - %s' % (number, title))
            for line in str(e).splitlines():
                print('# ' + line)
        else:
            print('ok %d - %s' % (number, title))
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
