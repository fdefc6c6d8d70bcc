# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/plan.yml end to end on the lab: the attacked container gets a target with another OS."""

from __future__ import annotations

import json
import subprocess

from lab_helpers import run_playbook


def test_plan_moves_attacked_container_to_another_os(tmp_path):
    report = tmp_path / 'plan.json'
    run_playbook('lab/demo/workloads.yml')
    try:
        proc = run_playbook('playbooks/plan.yml', '-e', '@lab/demo/plan-vars.yml',
                            '-e', 'mtd_plan_report=%s' % report)
        plan = json.loads(report.read_text())
    finally:
        run_playbook('lab/demo/cleanup.yml')

    rows = {row['container']: row for row in plan['plan']}
    assert set(rows) >= {'web-1', 'db-1', 'web-2', 'worker-1', 'cache-1'}, rows
    assert plan['t1'] == 8 and plan['delta_t'] == 3

    web1 = rows['web-1']
    assert web1['due'] == 'ATTACKED'
    assert web1['decision'] == 'migrate', web1
    assert web1['target'] not in ('-', 'lab-1')
    assert web1['target_os'].split()[0] != web1['host_os'].split()[0], web1

    # the same decision, in full, with the reason for each rejected host
    decision = [d for d in plan['decisions'] if d['target'] == web1['target'] and d['alert'] is None]
    assert decision, plan['decisions']
    reasons = {r['name']: r['reason'] for r in decision[0]['rejected']}
    assert 'same OS' in reasons['lab-4'], reasons   # lab-4 runs Debian 12, like lab-1

    # thresholds T_i = T1 + (i-1) * delta_t over the schedule's order
    for entry in plan['schedule']:
        assert entry['threshold'] == 8 + (entry['i'] - 1) * 3

    # the readable table is printed
    assert 'decision' in proc.stdout and 'web-1' in proc.stdout


def test_defend_moves_the_attacked_container_with_its_state(tmp_path):
    report = tmp_path / 'defend.json'
    run_playbook('lab/demo/workloads.yml')
    try:
        proc = run_playbook('playbooks/defend.yml', '-e', '@lab/demo/plan-vars.yml',
                            '-e', '{"mtd_defend_reference": [6, 8, 10], "mtd_defend_delta_t": 3}',
                            '-e', '{"mtd_defend_attacked": ["lab-1/web-1"], "mtd_defend_max": 1}',
                            '-e', 'mtd_defend_report=%s' % report)
        result = json.loads(report.read_text())
        moved = result['migrations']
        assert [m['name'] for m in moved] == ['web-1'], moved     # the attacked one goes first, alone
        web1 = moved[0]
        assert web1['state'] == 'Succeeded', web1
        assert web1['source'] == 'lab-1' and web1['target'] != 'lab-1'
        assert web1['target_os']['id'] != web1['source_os']['id'], web1
        for phase in ('checkpoint', 'transfer', 'restore'):
            assert web1['phases'][phase], phase
        sock = 'unix:///var/lib/mtd-lab/%s/docker.sock' % web1['target']
        values = subprocess.run(['/usr/bin/docker', '-H', sock, 'exec', 'web-1', 'cat', '/data/counter.log'],
                                capture_output=True, text=True, check=True).stdout.split()
        assert [int(v) for v in values] == list(range(1, len(values) + 1)), 'the counter file lost or repeated values'
        assert 'Succeeded' in proc.stdout and 'frozen_s' in proc.stdout
    finally:
        run_playbook('lab/demo/cleanup.yml')
