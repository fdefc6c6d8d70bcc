# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection as a new user gets it: built with ansible-galaxy, installed into an empty collections path,
and its playbooks run by FQCN from an unrelated directory against the lab. Every output lands in the given
mtd_output_dir (or the default one, outside the collection); nothing is written inside the installed copy."""

from __future__ import annotations

import http.server
import json
import os
import random
import re
import stat
import subprocess
import threading
import time

import pytest
from lab_helpers import INVENTORY, ROOT, VENV_BIN, docker, require_lab

HOSTS = ('lab-1', 'lab-2', 'lab-3', 'lab-4')
IMAGE = '127.0.0.1:5000/mtd/busybox:latest'
COUNTER = 'mkdir -p /state; i=0; while true; do i=$((i+1)); echo "$i" >> /state/counter.log; sleep 0.1; done'
HEALTH = '{"mtd_health_cmd": ["cat", "/state/counter.log"]}'


def snapshot(tree):
    """Every path below ``tree`` with its size and mtime: what a run must leave as it found it."""
    found = {}
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = os.path.join(root, name)
            info = os.lstat(path)
            found[os.path.relpath(path, tree)] = (info.st_size, info.st_mtime_ns)
    return found


class Installed:
    """The built tarball installed into its own collections path; runs ansible-playbook from ``workdir``."""

    def __init__(self, base):
        self.base = base
        self.collections = base / 'collections'
        self.workdir = base / 'somewhere-else'
        self.home = base / 'home'
        for path in (self.workdir, self.home):
            path.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(('ANSIBLE_', 'MTD_', 'XDG_'))}
        self.env.update(PATH='%s:%s' % (VENV_BIN, os.environ.get('PATH', '')), HOME=str(self.home),
                        ANSIBLE_COLLECTIONS_PATH=str(self.collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false',
                        ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', ANSIBLE_SHOW_CUSTOM_STATS='true',
                        ANSIBLE_RETRY_FILES_ENABLED='false')

    @property
    def tree(self):
        return self.collections / 'ansible_collections' / 'mtd' / 'containers'

    def galaxy(self, *args):
        return subprocess.run([str(VENV_BIN / 'ansible-galaxy')] + list(args), cwd=str(self.workdir), env=self.env,
                              capture_output=True, text=True, timeout=300, check=True)

    def playbook(self, playbook, *args, env=None):
        cmd = [str(VENV_BIN / 'ansible-playbook'), '-i', str(INVENTORY), playbook] + list(args)
        proc = subprocess.run(cmd, cwd=str(self.workdir), env=dict(self.env, **(env or {})), capture_output=True,
                              text=True, timeout=900, check=False)
        if proc.returncode != 0:
            pytest.fail('%s failed (rc=%d):\n%s\n%s' % (' '.join(cmd[3:]), proc.returncode, proc.stdout[-12000:],
                                                        proc.stderr[-4000:]))
        return proc


def custom_stats(stdout):
    """The set_stats data of a run (ANSIBLE_SHOW_CUSTOM_STATS prints it as one JSON line after 'RUN:')."""
    match = re.search(r'^\s*RUN: (\{.*\})\s*$', stdout, re.M)
    assert match, 'no custom stats in the output:\n%s' % stdout[-3000:]
    return json.loads(match.group(1))


def private(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    require_lab()
    inst = Installed(tmp_path_factory.mktemp('installed'))
    build = inst.base / 'build'
    subprocess.run([str(VENV_BIN / 'ansible-galaxy'), 'collection', 'build', '--output-path', str(build), str(ROOT)],
                   check=True, capture_output=True, text=True, timeout=300)
    tarball = next(build.glob('mtd-containers-*.tar.gz'))
    inst.galaxy('collection', 'install', '--force', '-p', str(inst.collections), str(tarball))
    listed = inst.galaxy('collection', 'list', 'mtd.containers').stdout
    assert str(inst.collections) in listed and listed.count('mtd.containers') == 1, listed
    for dev_only in ('lab', 'bench', 'scripts', 'Makefile', 'ansible.cfg', '.build', '.venv'):
        assert not (inst.tree / dev_only).exists(), dev_only
    return inst


class Webhook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        Webhook.received.append(self.rfile.read(int(self.headers.get('Content-Length') or 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        del args


@pytest.fixture
def attacked_container():
    require_lab()
    name = 'it-inst-%06d' % random.randrange(10 ** 6)
    docker('lab-1', 'run', '-d', '--name', name, '--network', 'none', '--cpus', '0.25', '--memory', '32m',
           '--label', 'mtd.units=5', '--label', 'mtd.attacked=true', IMAGE, 'sh', '-c', COUNTER)
    time.sleep(1.5)
    yield name
    for host in HOSTS:
        docker(host, 'rm', '-f', name, check=False)


def where(name):
    running = [h for h in HOSTS if docker(h, 'inspect', '-f', '{{.State.Status}}', name, check=False).stdout.strip()
               == 'running']
    assert len(running) == 1, 'running copies of %s: %s' % (name, running)
    return running[0]


def run_readme_example(installed, tmp_path):
    """The README's 'Using the collection on real hosts' playbook, on the lab (its webhook: a local server)."""
    server = http.server.HTTPServer(('127.0.0.1', 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        readme = (installed.tree / 'README.md').read_text()
        section = readme.split('## Using the collection on real hosts', 1)[1]
        example = re.search(r'```yaml\n(.*?)```', section, re.S).group(1)
        example = example.replace('docker_hosts', 'lab').replace(
            'https://mgmt.example.com/mtd/alerts', 'http://127.0.0.1:%d/mtd/alerts' % server.server_port)
        path = tmp_path / 'readme-example.yml'
        path.write_text(example)
        return installed.playbook(str(path), '-v')
    finally:
        server.shutdown()


def test_installed_collection_runs_plan_migrate_and_defend_from_anywhere(installed, attacked_container, tmp_path):
    name = attacked_container
    out = tmp_path / 'mtd-out'
    before = snapshot(installed.tree)

    # the README example: target_host gets a container it accepts for every due one (ours is attacked)
    proc = run_readme_example(installed, tmp_path)
    assert 'Where may it go?' in proc.stdout and 'lab-1/%s' % name in proc.stdout, proc.stdout[-4000:]

    # plan with no output option at all: the default directory, outside the collection, created 0700
    proc = installed.playbook('mtd.containers.plan')
    default_dir = installed.home / '.local' / 'state' / 'mtd-containers'
    plan = json.loads((default_dir / 'plan.json').read_text())
    assert private(default_dir) == 0o700 and private(default_dir / 'plan.json') == 0o600
    row = [r for r in plan['plan'] if r['container'] == name]
    assert row and row[0]['due'] == 'ATTACKED' and row[0]['decision'] == 'migrate', plan['plan']
    stats = custom_stats(proc.stdout)['mtd_plan']
    assert stats['report'] == str(default_dir / 'plan.json') and stats['due'] >= 1, stats

    # migrate into an explicit mtd_output_dir that does not exist yet
    proc = installed.playbook('mtd.containers.migrate', '-e', 'mtd_container=%s' % name, '-e', 'mtd_source=lab-1',
                              '-e', 'mtd_output_dir=%s' % out, '-e', HEALTH)
    assert private(out) == 0o700
    record = json.loads((out / ('lab-1__%s.json' % name)).read_text())
    assert record['state'] == 'Succeeded', record
    target = record['target']
    assert where(name) == target != 'lab-1'
    stats = custom_stats(proc.stdout)['mtd_migrate']
    assert stats['state'] == 'Succeeded' and stats['to'] == target and stats['report'] == str(
        out / ('lab-1__%s.json' % name)), stats

    # defend: the (still attacked) container moves on; report and record in the same directory
    proc = installed.playbook('mtd.containers.defend', '-e', 'mtd_output_dir=%s' % out, '-e',
                              json.dumps({'mtd_defend_attacked': ['%s/%s' % (target, name)], 'mtd_defend_max': 1,
                                          'mtd_defend_reference': [86400, 86400, 86400],
                                          'mtd_defend_health_cmd': ['cat', '/state/counter.log']}))
    report = json.loads((out / 'defend-report.json').read_text())
    assert [m['name'] for m in report['migrations']] == [name], report['migrations']
    moved = report['migrations'][0]
    assert moved['state'] == 'Succeeded' and moved['source'] == target, moved
    assert json.loads((out / ('%s__%s.json' % (target, name))).read_text())['state'] == 'Succeeded'
    assert where(name) == moved['target']
    stats = custom_stats(proc.stdout)['mtd_defend']
    assert stats['succeeded'] == 1 and stats['failed'] == 0 and stats['rows'][0]['container'] == name, stats
    for path in out.iterdir():
        assert private(path) == 0o600, path

    values = [int(v) for v in docker(moved['target'], 'exec', name, 'cat', '/state/counter.log').stdout.split()]
    assert values == list(range(1, len(values) + 1)), 'the counter lost or repeated values across two moves'

    # nothing written inside the installed collection, nothing left in the directory the runs started from
    assert snapshot(installed.tree) == before
    assert not list(installed.workdir.iterdir()), list(installed.workdir.iterdir())
