#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fleet throughput benchmark: playbooks/defend.yml moving N busybox containers from 3 source hosts, at several
concurrencies, side by side in one run.

For each N (default 12 and 24) and each configuration (default: concurrency 1, 3, 6 with the default per-host
limits of one outbound and one inbound migration, and 6 with two of each), N busybox containers (a counter
loop, --network none, mtd.units=1) are started round-robin on lab-1, lab-2 and lab-4, all are marked attacked
(host/name, mtd_defend_attacked_only), and defend moves them. Reported per run: the wall time of the whole
ansible-playbook run, the median and max per-migration total (the records' duration_seconds) and frozen time
(frozen_seconds), the most migrations in flight at one instant (from the records' history), and the ratio of
the wall time to the concurrency-1 run of the same N, and what the run cost the CPUs: the machine's busy CPU
seconds during the run (/proc/stat: everything that ran, the lab hosts, their engines and CRIU, the controller, and
whatever else the machine did meanwhile), of which the controller's own (the ansible-playbook process and its forks),
per migration, and the wall-time floor that cost allows on this machine's CPUs (busy seconds / CPUs): no concurrency
can bring a run's wall time below the CPU time it needs divided by the CPUs.

Everything it creates is named bench-fl-*, removed after each run (also on failure or SIGTERM). Needs the lab
(lab/lab.sh up); run it under the lab lock.

Run from the repo root:
  flock /tmp/mtd-lab.lock env PYTHONPATH=.build/collections .venv/bin/python bench/fleet_bench.py [--n 12 24]
      [--configs 1:1:1 3:1:1 6:1:1 6:2:2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from ansible_collections.mtd.containers.plugins.module_utils._fleet import most_at_once

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.environ.get('MTD_LAB_STATE', '/var/lib/mtd-lab')
DOCKER = '/usr/bin/docker'
IMAGE = '127.0.0.1:5000/mtd/busybox:latest'
SOURCES = ('lab-1', 'lab-2', 'lab-4')
HOSTS = ('lab-1', 'lab-2', 'lab-3', 'lab-4')
COUNTER = 'mkdir -p /state; i=0; while true; do i=$((i+1)); echo "$i" >> /state/counter.log; sleep 0.1; done'
MADE = []


def docker(host, *args, check=True):
    proc = subprocess.run([DOCKER, '-H', 'unix://%s/%s/docker.sock' % (LAB, host)] + list(args),
                          capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError('docker %s on %s failed: %s' % (' '.join(args), host, proc.stderr.strip()))
    return proc.stdout


def cleanup():
    names = list(MADE)
    del MADE[:]
    for host in HOSTS:
        if names:
            docker(host, 'rm', '-f', *names, check=False)


def start_fleet(n):
    tag = uuid.uuid4().hex[:6]
    moves = []
    for i in range(n):
        host = SOURCES[i % len(SOURCES)]
        name = 'bench-fl-%s-%02d' % (tag, i)
        MADE.append(name)
        docker(host, 'run', '-d', '--name', name, '--network', 'none', '--label', 'mtd.units=1', IMAGE,
               'sh', '-c', COUNTER)
        moves.append('%s/%s' % (host, name))
    time.sleep(1)
    return moves


def config_file(workdir, poll):
    """ansible.cfg of the repo, with internal_poll_interval set when ``poll`` is given (it has no environment
    variable): how long the controller's strategy loop sleeps between two looks at its hosts and results."""
    if poll is None:
        return os.path.join(ROOT, 'ansible.cfg')
    path = os.path.join(workdir, 'ansible.cfg')
    with open(os.path.join(ROOT, 'ansible.cfg')) as handle:
        text = handle.read()
    text = text.replace('[defaults]\n', '[defaults]\ninternal_poll_interval = %s\n' % poll, 1)
    text = text.replace('./.build/collections', os.path.join(ROOT, '.build', 'collections'))
    with open(path, 'w') as handle:
        handle.write(text)
    return path


def machine_cpu():
    """(busy, all) CPU seconds of the whole machine since boot, from /proc/stat (busy: all but idle and iowait)."""
    with open('/proc/stat') as handle:
        fields = [int(x) for x in handle.readline().split()[1:9]]
    tick = os.sysconf('SC_CLK_TCK')
    return (sum(fields) - fields[3] - fields[4]) / tick, sum(fields) / tick


def controller_cpu():
    """User + system CPU seconds of this process's ended children (the ansible-playbook run and its forks)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_defend(moves, concurrency, outbound, inbound, workdir, poll=None):
    report = os.path.join(workdir, 'defend-%d-%d-%d-%d.json' % (len(moves), concurrency, outbound, inbound))
    extra = {'mtd_defend_attacked': moves, 'mtd_defend_attacked_only': True, 'mtd_defend_concurrency': concurrency,
             'mtd_defend_max_outbound': outbound, 'mtd_defend_max_inbound': inbound, 'mtd_defend_report': report,
             'mtd_defend_health_cmd': ['true']}
    env = dict(os.environ, ANSIBLE_CONFIG=config_file(workdir, poll), ANSIBLE_NOCOLOR='1')
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', os.path.join(ROOT, 'lab', 'inventory.yml'),
           os.path.join(ROOT, 'playbooks', 'defend.yml'), '-e', json.dumps(extra)]
    busy0, dummy = machine_cpu()
    ctl0 = controller_cpu()
    load0 = os.getloadavg()[0]
    began = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.monotonic() - began
    busy = machine_cpu()[0] - busy0
    controller = controller_cpu() - ctl0
    records = json.load(open(report))['migrations'] if os.path.exists(report) else []
    ok = [r for r in records if r.get('state') == 'Succeeded']
    if proc.returncode != 0 or len(ok) != len(moves):
        sys.stderr.write(proc.stdout[-6000:])
    totals = [r['duration_seconds'] for r in ok if r.get('duration_seconds') is not None]
    frozen = [r['frozen_seconds'] for r in ok if r.get('frozen_seconds') is not None]
    return {'n': len(moves), 'concurrency': concurrency, 'poll': poll, 'max_outbound': outbound, 'max_inbound': inbound,
            'wall': round(wall, 1), 'succeeded': len(ok), 'rc': proc.returncode, 'most_at_once': most_at_once(records),
            'total_median': round(statistics.median(totals), 2) if totals else None,
            'total_max': round(max(totals), 2) if totals else None,
            'frozen_median': round(statistics.median(frozen), 3) if frozen else None,
            'frozen_max': round(max(frozen), 3) if frozen else None,
            # what the run cost the machine's CPUs (everything that ran meanwhile: the lab, the controller, and
            # whatever else the machine did), per migration, and the wall time that cost allows at best
            'cpu_busy': round(busy, 1), 'cpu_controller': round(controller, 1),
            'cpu_per_migration': round(busy / len(moves), 2), 'wall_floor': round(busy / (os.cpu_count() or 1), 1),
            'load': [round(load0, 2), round(os.getloadavg()[0], 2)]}


def table(rows):
    base = dict((r['n'], r['wall']) for r in rows if r['concurrency'] == 1)
    lines = ['| N | concurrency | max out/in per host | wall s | wall / C=1 | most at once | succeeded | '
             'per-migration total s (median / max) | frozen s (median / max) | machine CPU s (controller) | '
             'CPU s / migration | wall floor = CPU / %d CPUs | load 1 min (start / end) |' % (os.cpu_count() or 1),
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        ratio = '%.2f' % (r['wall'] / base[r['n']]) if base.get(r['n']) else '-'
        lines.append('| %d | %d | %d / %d | %.1f | %s | %d | %d/%d | %s / %s | %s / %s | %s (%s) | %s | %s | %s / %s |' % (
            r['n'], r['concurrency'], r['max_outbound'], r['max_inbound'], r['wall'], ratio, r['most_at_once'],
            r['succeeded'], r['n'], r['total_median'], r['total_max'], r['frozen_median'], r['frozen_max'],
            r['cpu_busy'], r['cpu_controller'], r['cpu_per_migration'], r['wall_floor'], r['load'][0], r['load'][1]))
    return '\n'.join(lines)


def on_term(*dummy):
    cleanup()
    sys.exit(143)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, nargs='+', default=[12, 24])
    parser.add_argument('--configs', nargs='+', default=['1:1:1', '3:1:1', '6:1:1', '6:2:2'],
                        help='concurrency:max_outbound:max_inbound')
    parser.add_argument('--poll', type=float, help='internal_poll_interval of the controller (default: ansible.cfg)')
    parser.add_argument('--json', help='also write the rows as JSON to this file')
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    rows = []
    workdir = tempfile.mkdtemp(prefix='mtd-fleet-bench-')
    print('# %s, %d CPUs, %s' % (platform.node(), os.cpu_count() or 0, time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())))
    try:
        for n in args.n:
            for config in args.configs:
                concurrency, outbound, inbound = (int(x) for x in config.split(':'))
                try:
                    moves = start_fleet(n)
                    rows.append(run_defend(moves, concurrency, outbound, inbound, workdir, args.poll))
                finally:
                    cleanup()
                print(json.dumps(rows[-1]), flush=True)
    finally:
        cleanup()
    print(table(rows))
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(rows, handle, indent=2)


if __name__ == '__main__':
    main()
