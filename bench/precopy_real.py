#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compare the pre-copy stop rules on real CRIU pre-dump rounds measured on the lab's VM host. Prints tables.

``--record`` (needs the lab VM up, and the lab lock: ``flock /tmp/mtd-lab.lock ...``) runs on the VM, for each
workload of tests/integration/files/dirtier.c (the image that tests/integration/test_vm_precopy.py puts into
the guest): a single stop-and-copy dump (the baseline), ``checkpoint precopy: {rule: fixed}`` (the same
number of rounds whatever they copy: the trace), then the live runs of our rule (``predictive``) and of
P.Haul's (``phaul``). It writes the rounds to ``bench/data/precopy-vm.json``.

Without ``--record`` it prints, from that file, for each workload: the rules replayed on the fixed trace
(``_precopy.replay``: where each would have stopped, and the pages its final dump would have copied, the
downtime pages) and the live runs (their real final dump). Page counts are CRIU's own (``stats-dump``,
pages written). Wall times and frozen times are under TCG (about 15x slower than native) and are not
comparable with native ones.

Run from the repo root:
  PYTHONPATH=.build/collections .venv/bin/python bench/precopy_real.py [--markdown]
  flock /tmp/mtd-lab.lock env PYTHONPATH=.build/collections .venv/bin/python bench/precopy_real.py --record
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import textwrap

from ansible_collections.mtd.containers.plugins.module_utils._precopy import replay

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / 'bench' / 'data' / 'precopy-vm.json'
INVENTORY_VM = ROOT / 'lab' / 'inventory-vm.yml'
IMAGE = '127.0.0.1:5000/mtd/dirtier:latest'
# (name, MiB held, MiB of the rewritten region, pages rewritten per second)
WORKLOADS = [
    ('region16-rate512', 64, 16, 512),
    ('region64-rate4096', 64, 64, 4096),
]
FIXED_ROUNDS = 8                # P.Haul's own cap, so that its replay can run to its end
POLICIES = [
    ('ours', 'predictive', None),
    ('ours bare', 'predictive', {'min_shrink': 0}),
    ('P.Haul', 'phaul', None),
]

PLAY = '''
- hosts: lab-vm
  gather_facts: false
  vars:
    ctr: bench-pc-%(s)d
    dest: /dev/shm/bench-pc-%(s)d
  tasks:
    - name: One workload, four checkpoints
      block:
        - name: The workload
          ansible.builtin.command:
            argv: [docker, run, -d, --name, "{{ ctr }}", --network, none, "%(image)s", /dirtier, "%(total)d",
                   "%(region)d", "%(rate)d"]
          changed_when: true
        - name: It counts
          ansible.builtin.shell: docker logs {{ ctr }} 2>&1 | tail -n +2 | wc -l
          register: counted
          until: counted.stdout | int >= 3
          retries: 120
          delay: 1
          changed_when: false
        - name: A private place
          ansible.builtin.file: {path: "{{ dest }}", state: directory, mode: "0700"}
        - name: Checkpoints (left running)
          mtd.containers.checkpoint:
            container: "{{ ctr }}"
            name: "{{ item.name }}"
            dest: "{{ dest }}"
            leave_running: true
            precopy: "{{ item.precopy }}"
          loop:
            - {name: base, precopy: {mode: "off"}}
            - {name: fixed, precopy: {mode: auto, rule: fixed, max_rounds: %(fixed)d}}
            - {name: predictive, precopy: {mode: auto, rule: predictive}}
            - {name: phaul, precopy: {mode: auto, rule: phaul}}
          register: cps
        - name: The rounds
          ansible.builtin.copy:
            content: "{{ cps.results | map(attribute='precopy') | list | to_json }}"
            dest: "%(out)s"
            mode: "0600"
          delegate_to: localhost
      always:
        - name: Cleanup
          ansible.builtin.shell: docker rm -f {{ ctr }} >/dev/null 2>&1; rm -rf {{ dest }}; true
          changed_when: true
'''


def record():
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    out = {'workloads': []}
    uptime = subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()
    for name, total, region, rate in WORKLOADS:
        with tempfile.TemporaryDirectory() as tmp:
            result = os.path.join(tmp, 'rounds.json')
            playbook = os.path.join(tmp, 'play.yml')
            with open(playbook, 'w') as handle:
                handle.write(textwrap.dedent(PLAY % {'s': random.randint(100000, 999999), 'image': IMAGE,
                                                     'total': total, 'region': region, 'rate': rate,
                                                     'fixed': FIXED_ROUNDS, 'out': result}))
            proc = subprocess.run([str(ROOT / '.venv' / 'bin' / 'ansible-playbook'), '-i', str(INVENTORY_VM), playbook],
                                  cwd=str(ROOT), env=env, capture_output=True, text=True, check=False, timeout=1800)
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-2000:])
                return 1
            with open(result) as handle:
                base, fixed, predictive, phaul = json.load(handle)
        out['workloads'].append({'name': name, 'total_mib': total, 'region_mib': region, 'rate_pages_s': rate,
                                 'base': base, 'fixed': fixed, 'predictive': predictive, 'phaul': phaul})
    out['load'] = {'before': uptime,
                   'after': subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()}
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(json.dumps(out, indent=1, sort_keys=True) + '\n')
    print('wrote %s' % DATA)
    return 0


def table(headers, rows, markdown):
    if markdown:
        lines = ['| ' + ' | '.join(headers) + ' |', '|' + '|'.join('---' for dummy in headers) + '|']
        lines.extend('| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows)
        return '\n'.join(lines)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    fmt = '  '.join('%%-%ds' % width for width in widths)
    return '\n'.join((fmt % tuple(str(cell) for cell in row)).rstrip() for row in [headers] + rows)


def pre_rounds(precopy):
    return [item for item in precopy.get('rounds') or [] if item['kind'] == 'pre-dump']


def show(markdown):
    data = json.loads(DATA.read_text())
    print('Real rounds on the lab VM (TCG guest, kernel 6.12, CRIU 4.1.1, runc 1.1.15); load: %s / %s'
          % (data['load']['before'], data['load']['after']))
    print()
    print('Traces (rule fixed): pages CRIU wrote per pre-dump round, then the final dump; the baseline is the '
          'single stop-and-copy dump.')
    print()
    rows = []
    for work in data['workloads']:
        fixed = work['fixed']
        rows.append([work['name'], work['base']['final']['pages'],
                     ' '.join(str(item['pages']) for item in pre_rounds(fixed)), fixed['final']['pages'],
                     ' '.join('%.2f' % item['duration'] for item in pre_rounds(fixed))])
    print(table(['workload', 'stop-and-copy pages', 'pre-dump pages per round', 'final pages',
                 'round seconds (TCG, not comparable)'], rows, markdown))
    print()
    print('Replayed on each trace: rounds until the rule stops, pages copied in all, downtime pages (what the final '
          'dump copies: the next round\'s pages of the trace, or the measured final dump after the last round).')
    print()
    rows = []
    for work in data['workloads']:
        trace = [{'duration': item['duration'], 'pages': item['pages']} for item in pre_rounds(work['fixed'])]
        for label, policy, options in POLICIES:
            result = replay(trace, policy, options, final_pages=work['fixed']['final']['pages'])
            rows.append([work['name'] if label == POLICIES[0][0] else '', label, result['rounds'],
                         result['pages_copied'], result['downtime_pages'],
                         '%.3f' % (result['downtime_pages'] / float(work['base']['final']['pages'])), result['reason']])
    print(table(['workload', 'rule', 'rounds', 'pages copied', 'downtime pages', 'x stop-and-copy', 'stop reason'],
                rows, markdown))
    print()
    print('Live runs (the rule decided on the VM): final dump pages against the stop-and-copy dump of the same run; '
          'frozen ms is CRIU\'s frozen time of the final dump (TCG, not comparable with native).')
    print()
    rows = []
    for work in data['workloads']:
        base = work['base']['final']
        rows.append([work['name'], 'stop-and-copy', 1, base['pages'], '1.000', '%.0f' % base['frozen_ms'], '-'])
        for key, label in (('predictive', 'ours'), ('phaul', 'P.Haul')):
            run = work[key]
            rows.append(['', label, len(run.get('rounds') or []), run['final']['pages'],
                         '%.3f' % (run['final']['pages'] / float(base['pages'])), '%.0f' % run['final']['frozen_ms'],
                         (run.get('stop') or {}).get('reason', run.get('reason'))])
    print(table(['workload', 'rule', 'dumps', 'final pages', 'x stop-and-copy', 'frozen ms (TCG)', 'stop reason'],
                rows, markdown))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--markdown', action='store_true', help='print Markdown tables')
    parser.add_argument('--record', action='store_true', help='measure on the lab VM (hold the lab lock)')
    args = parser.parse_args(argv)
    if args.record:
        return record()
    return show(args.markdown)


if __name__ == '__main__':
    sys.exit(main())
