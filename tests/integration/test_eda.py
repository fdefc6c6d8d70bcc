# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The event-driven trigger on the lab: ansible-rulebook with extensions/eda/rulebooks/intrusion_defense.yml
listens on loopback, an intrusion alert moves the container to a host with another OS with its state
intact, and alerts below the threshold or repeated for the same container start no second run."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
import yaml
from lab_helpers import INVENTORY, ROOT, VENV_BIN, require_lab
from test_migrate import assert_consecutive, counter_lines, remove_everywhere, start_workload, status

RULEBOOK = ROOT / '.venv-eda' / 'bin' / 'ansible-rulebook'
OS_OF = {'lab-1': 'debian', 'lab-2': 'ubuntu', 'lab-3': 'rocky', 'lab-4': 'debian'}
STARTUP_S = 120       # JVM + drools + the webhook
DEFENSE_S = 600       # one defend run: facts of 4 hosts, one migration


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def require_rulebook():
    if shutil.which('java') is None:
        pytest.skip('Java is missing (Debian openjdk-17-jre-headless; scripts/setup.sh installs it)')
    if not RULEBOOK.exists():
        pytest.skip('ansible-rulebook is missing (%s; scripts/setup.sh creates .venv-eda)' % RULEBOOK)


class Rulebook:
    """One ansible-rulebook process of ours: its output in a file, stopped by its PID."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.log = tmp_path / 'rulebook.log'
        self.out_dir = tmp_path / 'out'
        variables = tmp_path / 'vars.yml'
        variables.write_text(yaml.safe_dump({
            'mtd_eda_host': '127.0.0.1', 'mtd_eda_port': self.port, 'mtd_eda_threshold': 'Critical',
            'mtd_eda_output_dir': str(self.out_dir), 'mtd_eda_health_cmd': ['cat', '/state/counter.log']}))
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
                   ANSIBLE_FORCE_COLOR='0', MTD_EDA_TOKEN=self.token, PATH='%s:%s' % (VENV_BIN, os.environ['PATH']))
        with open(self.log, 'w') as log:
            # from another directory: the rulebook, its filter, source routing and playbook are found by FQCN
            self.proc = subprocess.Popen(
                [str(RULEBOOK), '--rulebook', 'mtd.containers.intrusion_defense', '-i', str(INVENTORY),
                 '--vars', str(variables), '-E', 'MTD_EDA_TOKEN'],
                cwd=str(tmp_path), env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self):
        return self.log.read_text(errors='replace')

    def wait_listening(self):
        deadline = time.time() + STARTUP_S
        while time.time() < deadline:
            assert self.proc.poll() is None, 'ansible-rulebook exited:\n' + self.output()[-6000:]
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.5)
        pytest.fail('the webhook did not listen within %ds:\n%s' % (STARTUP_S, self.output()[-6000:]))

    def post(self, body, token=None):
        req = urllib.request.Request('http://127.0.0.1:%d/falco' % self.port, data=json.dumps(body).encode(),
                                     headers={'Content-Type': 'application/json',
                                              'Authorization': 'Bearer %s' % (token or self.token)})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def wait_for(self, text, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.output():
                return
            assert self.proc.poll() is None, 'ansible-rulebook exited:\n' + self.output()[-8000:]
            time.sleep(1)
        pytest.fail('%r not in the rulebook output within %ds:\n%s' % (text, timeout, self.output()[-12000:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def falco(priority, name, host='lab-1', rule='Terminal shell in container'):
    return {'output': '%s A shell was spawned in a container (container=%s)' % (priority, name),
            'priority': priority, 'rule': rule, 'hostname': host,
            'output_fields': {'container.name': name, 'proc.name': 'sh', 'user.name': 'root'}}


@pytest.fixture
def rulebook(tmp_path):
    require_lab()
    require_rulebook()
    book = Rulebook(tmp_path)
    yield book
    book.stop()


def test_alert_moves_the_container_once(rulebook):
    rulebook.wait_listening()
    name = start_workload('lab-1')
    try:
        before = counter_lines('lab-1', name, '/state/counter.log')
        assert rulebook.post(falco('Critical', name), token='wrong') == 401
        assert rulebook.post(falco('Critical', name)) == 200
        assert rulebook.post(falco('Critical', name)) == 200           # repeated while it moves
        assert rulebook.post(falco('Notice', name)) == 200             # below the threshold
        rulebook.wait_for('mtd: ignored Notice alert for lab-1/%s' % name, DEFENSE_S)
        rulebook.wait_for('PLAY RECAP', DEFENSE_S)
        # a last event: the rulebook runs its actions in order, so everything before it is done
        assert rulebook.post({'priority': 'Critical', 'hostname': 'lab-1', 'output_fields': {'container.name': 'host'}}) == 200
        rulebook.wait_for('mtd: rejected alert: the alert names no container', DEFENSE_S)
        out = rulebook.output()

        record = json.loads((rulebook.out_dir / ('lab-1__%s.json' % name)).read_text())
        assert record['state'] == 'Succeeded', record
        target = record['target']
        assert OS_OF[target] != OS_OF['lab-1'], 'moved to a host with the same OS: %s' % target
        assert status(target, name) == 'running' and status('lab-1', name) == 'absent'
        time.sleep(0.5)
        after = counter_lines(target, name, '/state/counter.log')
        assert_consecutive(after, 'the writable-layer counter on %s' % target)
        assert len(after) > len(before), 'the counter did not go on'

        # one report: one run (the fleet run's reservation ledger, <report>-ledger.json, lies beside it)
        [report_path] = [p for p in rulebook.out_dir.glob('defend-lab-1__%s-*.json' % name)
                         if not p.name.endswith('-ledger.json')]
        report = json.loads(report_path.read_text())
        assert [(m['name'], m['state']) for m in report['migrations']] == [(name, 'Succeeded')]
        assert [(e['name'], e['immediate'], e['severity']) for e in report['schedule']] == [(name, True, 'high')]

        # one run: the repeat was throttled, the Notice ignored, the wrong token refused
        assert out.count('PLAY RECAP') == 1, out[-12000:]
        assert out.count('Intrusion alert (Critical): moving lab-1/%s, severity high' % name) == 1, out[-12000:]
        assert out.index('PLAY RECAP') < out.index('mtd: rejected alert')
    finally:
        remove_everywhere(name)
