# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The support matrix from what the integration tests ran on.

The integration tests (tests/integration/support_record.py) append one JSON line per passed test and host
to the run record (default .build/support-record.jsonl): the host's engine, containerd, runc, CRIU, kernel,
cgroup version and driver as host_facts read them. This script takes the newest run of that record and

- writes docs/support-record.json (the rows: one per host and version set, with the tests that passed);
- renders the README's support-matrix table between the markers below;
- writes roles/migrate/vars/main.yml: the releases the tests ran, per component, which the migrate role's
  preflight gives the engine version gates (versions not in it give a warning).

    python3 scripts/support_matrix.py [--record FILE] [--all-runs]   # from a test run's record (or all its runs)
    python3 scripts/support_matrix.py --render          # again from the committed docs/support-record.json
    python3 scripts/support_matrix.py --check           # exit 1 when README or the role's vars are out of date
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORD = ROOT / '.build' / 'support-record.jsonl'
ROWS = ROOT / 'docs' / 'support-record.json'
README = ROOT / 'README.md'
ROLE_VARS = ROOT / 'roles' / 'migrate' / 'vars' / 'main.yml'
BEGIN = '<!-- support-matrix:begin (scripts/support_matrix.py writes this table; do not edit) -->'
END = '<!-- support-matrix:end -->'
KEYS = ('host', 'os', 'engine', 'containerd', 'runc', 'criu', 'kernel', 'cgroup', 'driver')
COMPONENTS = ('engine', 'containerd', 'runc', 'criu')


def release(text):
    match = re.match(r'\s*v?(\d+(?:\.\d+)*)', str(text or ''))
    return match.group(1) if match else None


def rows_of(entries, all_runs=False):
    """One row per host and version set of the newest run (of every run with ``all_runs``): the versions and
    the tests that passed on it."""
    entries = [e for e in entries if isinstance(e, dict)]
    if not entries:
        return {'run': None, 'rows': []}
    runs = sorted({str(e.get('run')) for e in entries})
    run = '%s .. %s' % (runs[0], runs[-1]) if all_runs and len(runs) > 1 else runs[-1]
    rows = {}
    for entry in entries:
        if not all_runs and str(entry.get('run')) != run:
            continue
        key = tuple(str(entry.get(k) or '') for k in KEYS)
        row = rows.setdefault(key, dict(zip(KEYS, key), tests=[]))
        if entry.get('test') not in row['tests']:
            row['tests'].append(entry.get('test'))
    out = sorted(rows.values(), key=lambda r: (r['host'], r['engine']))
    for row in out:
        row['tests'].sort()
    return {'run': run, 'rows': out}


def render_table(data):
    lines = [BEGIN, '',
             'What the integration tests ran on (run %s; `scripts/support_matrix.py` renders this from '
             '`docs/support-record.json`):' % data['run'], '',
             '| host | OS | engine | containerd | runc | CRIU | kernel | cgroup | driver | tests passed |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for row in data['rows']:
        lines.append('| %s | %s | %s | %s | %s | %s | %s | v%s | %s | %d |' % (
            row['host'], row['os'], row['engine'], row['containerd'], row['runc'], row['criu'], row['kernel'],
            row['cgroup'], row['driver'], len(row['tests'])))
    lines += ['', END]
    return '\n'.join(lines)


def tested_versions(data):
    return {c: sorted({release(r[c]) for r in data['rows'] if release(r[c])},
                      key=lambda v: [int(p) for p in v.split('.')]) for c in COMPONENTS}


def render_vars(data):
    lines = ['---', '# Written by scripts/support_matrix.py from docs/support-record.json (run %s): the releases'
             % data['run'], '# the integration tests ran. The preflight warns about versions not listed here.',
             '_migrate_tested_versions:']
    for component, versions in tested_versions(data).items():
        lines.append('  %s: [%s]' % (component, ', '.join('"%s"' % v for v in versions)))
    return '\n'.join(lines) + '\n'


def readme_with(table, text):
    if BEGIN not in text or END not in text:
        raise SystemExit('README.md has no support-matrix markers')
    head, rest = text.split(BEGIN, 1)
    return head + table + rest.split(END, 1)[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--record', type=pathlib.Path, default=RECORD)
    parser.add_argument('--all-runs', action='store_true', help='every run in the record, not only the newest')
    parser.add_argument('--render', action='store_true', help='from the committed docs/support-record.json')
    parser.add_argument('--check', action='store_true', help='only check README and the role vars')
    args = parser.parse_args(argv)
    if args.render or args.check:
        data = json.loads(ROWS.read_text())
    else:
        entries = [json.loads(line) for line in args.record.read_text().splitlines() if line.strip()]
        data = rows_of(entries, args.all_runs)
        if not data['rows']:
            raise SystemExit('%s has no passed test' % args.record)
    readme = readme_with(render_table(data), README.read_text())
    role_vars = render_vars(data)
    if args.check:
        stale = [str(p.relative_to(ROOT)) for p, text in ((README, readme), (ROLE_VARS, role_vars))
                 if not p.exists() or p.read_text() != text]
        if stale:
            print('out of date (run scripts/support_matrix.py --render): %s' % ', '.join(stale), file=sys.stderr)
            return 1
        return 0
    if not args.render:
        ROWS.write_text(json.dumps(data, indent=1, sort_keys=True) + '\n')
    README.write_text(readme)
    ROLE_VARS.parent.mkdir(parents=True, exist_ok=True)
    ROLE_VARS.write_text(role_vars)
    print('support matrix: %d rows from run %s' % (len(data['rows']), data['run']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
