# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/defend.yml at concurrency > 1 on the lab: migrations of different sources and targets overlap, the
per-host limits and the targets' capacity hold, two concurrent failures both roll back, and a controller killed
mid-run leaves what a re-run converges to exactly one copy of each container."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from lab_helpers import INVENTORY, ROOT, VENV_BIN, docker, require_lab, run_playbook

from ansible_collections.mtd.containers.plugins.module_utils._fleet import most_at_once
from ansible_collections.mtd.containers.plugins.module_utils._placement import remaining_of

IMAGE = '127.0.0.1:5000/mtd/busybox:latest'
HOSTS = ('lab-1', 'lab-2', 'lab-3', 'lab-4')
PROXY = str(ROOT / 'tests' / 'integration' / 'files' / 'fault_proxy.py')
COUNTER = ('mkdir -p /state; i=0; while true; do i=$((i+1)); echo "$i" >> /state/counter.log; sleep 0.1; done')


def start(host, units=5):
    name = 'it-fc-%06d' % random.randrange(10 ** 6)
    docker(host, 'run', '-d', '--name', name, '--network', 'none', '--memory', '32m', '--label', 'mtd.units=%d' % units,
           IMAGE, 'sh', '-c', COUNTER)
    return name


def remove(names):
    for host in HOSTS:
        if names:
            docker(host, 'rm', '-f', *names, check=False)


def status(host, name):
    proc = docker(host, 'inspect', '-f', '{{.State.Status}}', name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else 'absent'


def copies(name):
    return [h for h in HOSTS if status(h, name) == 'running']


def counter(host, name):
    return [int(x) for x in docker(host, 'exec', name, 'cat', '/state/counter.log').stdout.split()]


def assert_consecutive(values, what):
    assert values and values[0] == 1, '%s does not start at 1: %s' % (what, values[:5])
    gaps = [(a, b) for a, b in zip(values, values[1:]) if b != a + 1]
    assert not gaps, '%s lost or repeated values: %s' % (what, gaps[:5])


def defend_args(report, moves, concurrency, *extra):
    return ['-e', json.dumps({'mtd_defend_attacked': ['%s/%s' % m for m in moves], 'mtd_defend_attacked_only': True,
                              'mtd_defend_concurrency': concurrency, 'mtd_defend_report': str(report),
                              'mtd_defend_health_cmd': ['cat', '/state/counter.log']})] + list(extra)


@pytest.fixture
def fleet():
    """start(host) -> name; every container made is removed from every host at the end."""
    require_lab()
    made = []

    def make(host, units=5):
        made.append(start(host, units))
        return made[-1]
    yield make
    remove(made)


def interval(rec):
    return rec['history'][0]['epoch'], rec['history'][-1]['epoch']


def overlapping_pairs(records, field):
    """Pairs of records with the same ``field`` (source or target) whose migrations overlap in time."""
    pairs = []
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            (a0, a1), (b0, b1) = interval(a), interval(b)
            if a[field] == b[field] and a0 < b1 and b0 < a1:
                pairs.append((a['name'], b['name'], a[field]))
    return pairs


def test_defend_at_concurrency_3_overlaps_within_the_per_host_limits_and_capacity(fleet, tmp_path):
    moves = [(h, fleet(h)) for h in ('lab-1', 'lab-2', 'lab-4') for dummy in range(2)]
    time.sleep(1)
    report = tmp_path / 'defend.json'
    proc = run_playbook('playbooks/defend.yml', *defend_args(report, moves, 3))
    migrations = json.loads(report.read_text())['migrations']
    assert sorted(m['name'] for m in migrations) == sorted(n for dummy, n in moves)
    assert all(m['state'] == 'Succeeded' for m in migrations), [(m['name'], m.get('error')) for m in migrations]
    for m in migrations:
        assert copies(m['name']) == [m['target']], (m['name'], copies(m['name']), m['target'])
        assert_consecutive(counter(m['target'], m['name']), 'the counter of %s' % m['name'])
    most = most_at_once(migrations)
    print('most migrations at once: %d of %d' % (most, len(migrations)))
    assert most >= 2, 'the migrations ran one after another'
    assert not overlapping_pairs(migrations, 'target'), 'two inbound migrations into one host overlapped'
    assert not overlapping_pairs(migrations, 'source'), 'two outbound migrations from one host overlapped'
    # capacity: what arrived on each target fits what it had at the start of the run (the ledger's facts)
    ledger = json.loads((tmp_path / 'defend-ledger.json').read_text())
    for name, facts in ledger['hosts'].items():
        arrived = [mv for mv in ledger['moves'] if mv['target'] == name and mv['status'] == 'succeeded']
        for key, have in facts['remaining'].items():
            assert sum(float(mv['required'].get(key) or 0) for mv in arrived) <= have, (name, key)
    assert sorted(mv['status'] for mv in ledger['moves']) == ['succeeded'] * len(moves)
    assert '6 migration(s): 6 succeeded, 0 failed' in proc.stdout


def test_containers_that_fit_only_a_few_at_a_time_never_overfill_a_target(fleet, tmp_path):
    # a run with no move (mtd_defend_max=0) writes the ledger with the hosts' remaining resources
    probe = tmp_path / 'probe.json'
    run_playbook('playbooks/defend.yml', '-e', 'mtd_defend_max=0', '-e', 'mtd_defend_report=%s' % probe)
    hosts = json.loads((tmp_path / 'probe-ledger.json').read_text())['hosts']
    room = dict((h, remaining_of(hosts[h])['units']) for h in ('lab-2', 'lab-3'))
    # the debian sources (lab-1, lab-4) may only go to lab-2 (ubuntu) and lab-3 (rocky); each container asks for
    # more than 60 % of the larger room, so a target takes one at most: three containers, the third gets the alert
    units = int(0.6 * max(room.values())) + 1
    moves = [(h, fleet(h, units)) for h in ('lab-1', 'lab-4', 'lab-1')]
    time.sleep(1)
    report = tmp_path / 'defend.json'
    proc = run_playbook('playbooks/defend.yml', *defend_args(report, moves, 3), check=False)
    migrations = json.loads(report.read_text())['migrations']
    done = [m for m in migrations if m['state'] == 'Succeeded']
    alerted = [m for m in migrations if m['state'] == 'Failed']
    fits = sorted(h for h, left in room.items() if left >= units)
    assert sorted(m['target'] for m in done) == fits, (room, units, migrations)
    assert len(alerted) == len(moves) - len(fits), migrations
    assert all('no target host for container' in m['error'] for m in alerted), alerted
    for m in alerted:
        assert copies(m['name']) == [m['source']], 'a container that fits nowhere must stay where it runs'
    for m in done:
        assert copies(m['name']) == [m['target']]
    assert proc.returncode != 0 and 'failed to move' in proc.stdout
    print('room %s, %d units each: %d moved, %d alerts' % (room, units, len(done), len(alerted)))


def start_proxies(mode, offset, receiver_port):
    """One fault proxy per target (lab-2, lab-3); migrate_transfer_connect picks the one of the chosen target."""
    base = random.randrange(20000, 29000)
    procs = [subprocess.Popen([sys.executable, PROXY, str(base + n), '127.0.1.%d' % n, str(receiver_port), mode,
                               str(offset)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in (2, 3)]
    time.sleep(0.3)
    # templated where the role uses it (_migrate_target is set by then; empty while the role checks its arguments)
    connect = ('{{ ("127.0.0.1:%%d" %% (%d + (hostvars[_migrate_target].ansible_host.split(".")[-1] | int)))'
               ' if _migrate_target | default("") else "" }}' % base)
    return procs, ['-e', json.dumps({'migrate_transfer_port': receiver_port, 'migrate_transfer_connect': connect})]


@pytest.mark.parametrize('mode,cause', [('cut', 'Sending the checkpoint failed'), ('corrupt', 'integrity')])
def test_two_concurrent_migrations_fail_and_both_sources_resume(fleet, tmp_path, mode, cause):
    # two debian sources, the two other-OS targets: one migration into each, at the same time, both broken
    moves = [('lab-1', fleet('lab-1')), ('lab-4', fleet('lab-4'))]
    time.sleep(1)
    report = tmp_path / 'defend.json'
    procs, extra = start_proxies(mode, 16384, random.randrange(40000, 46000))
    try:
        proc = run_playbook('playbooks/defend.yml', *defend_args(report, moves, 2, *extra), check=False)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert proc.returncode != 0 and 'failed to move' in proc.stdout
    migrations = json.loads(report.read_text())['migrations']
    assert [m['state'] for m in migrations] == ['Failed', 'Failed'], migrations
    assert sorted(m['target'] for m in migrations) == ['lab-2', 'lab-3']
    assert most_at_once(migrations) == 2, 'the two migrations did not run at the same time'
    for m in migrations:
        assert cause in m['error'], m['error']
        assert m['rollback']['source'] == 'running', m['rollback']
        assert [h['state'] for h in m['history']][-2:] == ['Migrating', 'Failed']
        assert copies(m['name']) == [m['source']], (m['name'], copies(m['name']))
        first = counter(m['source'], m['name'])
        time.sleep(0.4)
        later = counter(m['source'], m['name'])
        assert_consecutive(later, 'the source counter of %s after the rollback' % m['name'])
        assert len(later) > len(first), 'the source of %s does not go on' % m['name']
    ledger = json.loads((tmp_path / 'defend-ledger.json').read_text())
    assert [mv['status'] for mv in ledger['moves']] == ['failed', 'failed'] and not any(
        v for host in ledger_reserved(ledger).values() for v in host.values()), 'a failure kept its reservation'


def ledger_reserved(ledger):
    held = {}
    for mv in ledger['moves']:
        if mv['status'] in ('running', 'succeeded'):
            for key, need in mv['required'].items():
                held.setdefault(mv['target'], {})[key] = held.get(mv['target'], {}).get(key, 0) + need
    return held


def records_of(tmp_path, moves):
    found = {}
    for host, name in moves:
        path = tmp_path / ('%s__%s.json' % (host, name))
        try:
            found[name] = json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    return found


def test_controller_killed_at_concurrency_3_then_the_rerun_converges(fleet, tmp_path):
    moves = [(h, fleet(h)) for h in ('lab-1', 'lab-2', 'lab-4')]
    time.sleep(1)
    report = tmp_path / 'defend.json'
    cmd = [str(VENV_BIN / 'ansible-playbook'), '-i', str(INVENTORY), 'playbooks/defend.yml'] + defend_args(report, moves, 3)
    run = subprocess.Popen(cmd, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True, env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg')))
    deadline = time.time() + 180
    states = {}
    while time.time() < deadline and run.poll() is None:
        states = dict((n, r['state']) for n, r in records_of(tmp_path, moves).items())
        if 'Migrating' in states.values() and len(states) >= 2:
            break
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)                   # the controller dies with migrations in flight
    run.wait()
    assert 'Migrating' in states.values() and len(states) >= 2, 'killed too late or too early: %s' % states
    for _host, name in moves:
        assert len(copies(name)) <= 1, (name, copies(name))
    proc = run_playbook('playbooks/defend.yml', *defend_args(report, moves, 3), check=False)
    for host, name in moves:
        running = copies(name)
        assert len(running) == 1, 'not exactly one copy of %s: %s\n%s' % (name, running, proc.stdout[-4000:])
        assert_consecutive(counter(running[0], name), 'the counter of %s after convergence' % name)
        rec = records_of(tmp_path, [(host, name)]).get(name)
        if running[0] != host:
            assert rec and rec['state'] == 'Succeeded' and rec['target'] == running[0], rec
        else:
            assert status(host, name) == 'running' and (rec is None or rec['state'] != 'Succeeded'), rec
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_a_check_mode_run_leaves_no_ledger_and_moves_nothing(fleet, tmp_path, monkeypatch):
    moves = [(h, fleet(h)) for h in ('lab-1', 'lab-4')]
    time.sleep(1)
    # the controller's temporary directory of this run: where a check-mode run keeps its private copy of the ledger
    scratch = tmp_path / 'tmp'
    scratch.mkdir()
    monkeypatch.setenv('TMPDIR', str(scratch))
    report = tmp_path / 'defend.json'
    proc = run_playbook('playbooks/defend.yml', *defend_args(report, moves, 2), '--check', check=False)
    out = proc.stdout
    # the lanes shared the private copy (each took its own move) and the report play removed it at the end
    assert 'TASK [Take the next move from the ledger]' in out and 'TASK [Remove the check-mode copy of the ledger]' in out, \
        out[-6000:]
    assert not (tmp_path / 'defend-ledger.json').exists() and not (tmp_path / 'defend-ledger.json.lock').exists()
    assert not list(scratch.glob('mtd-fleet-ledger-check-*')), list(scratch.iterdir())
    for host, name in moves:
        assert copies(name) == [host], 'a check-mode run moved %s' % name
