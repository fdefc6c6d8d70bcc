# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Each AWX job template's playbook run the way AWX runs it: through ansible-runner (its awx_display callback,
job events, set_stats artifacts), with the survey's defaults as extra variables, against the lab.

A survey default that names something on the lab cannot be known in advance (the container to migrate or
confine, the image to roll out): the test creates that thing and answers the required questions, exactly
what an operator does when launching the template; every other question keeps its default. Output paths go
to the test's temporary directory (mtd_output_dir, and the per-playbook report variables).
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import random
import sys
import time

import pytest
import yaml
from lab_helpers import INVENTORY, ROOT, VENV_BIN, docker, require_lab

sys.path.insert(0, str(ROOT / 'tests' / 'unit'))
from test_awx_templates import SECRETS, load_awx  # noqa: E402  pylint: disable=wrong-import-position

IMAGE = '127.0.0.1:5000/mtd/busybox:latest'
COUNTER = 'i=0; while true; do i=$((i+1)); echo "$i" >> /state.log; sleep 0.1; done'
OTHER_OS = {'lab-1': 'debian', 'lab-2': 'ubuntu', 'lab-3': 'rocky', 'lab-4': 'debian'}
RESULTS: dict = {}


def running_on(name):
    return [h for h in OTHER_OS if docker(h, 'inspect', '-f', '{{.State.Running}}', name, check=False).stdout.strip() == 'true']


def remove_everywhere(name):
    for host in OTHER_OS:
        docker(host, 'rm', '-f', name, check=False)


@pytest.fixture(scope='module')
def templates():
    require_lab()
    return {t['playbook'].split('/')[-1][:-4]: t for t in load_awx(SECRETS)['templates']['controller_templates']}


def survey_defaults(template):
    return {q['variable']: q['default'] for q in template['survey_spec']['spec'] if 'default' in q}


def run_template(template, tmp_path, answers):
    """ansible-runner with the survey defaults plus ``answers``; returns the runner and its extra vars."""
    import ansible_runner

    extravars = dict(survey_defaults(template), mtd_output_dir=str(tmp_path / 'out'), **answers)
    missing = [q['variable'] for q in template['survey_spec']['spec'] if q['required'] and q['variable'] not in extravars]
    assert not missing, 'required survey questions without an answer: %s' % missing
    os.makedirs(tmp_path / 'out', mode=0o700, exist_ok=True)
    os.makedirs(tmp_path / 'runner', mode=0o700, exist_ok=True)
    env = {'PATH': '%s:%s' % (VENV_BIN, os.environ.get('PATH', '')), 'ANSIBLE_CONFIG': str(ROOT / 'ansible.cfg'),
           'ANSIBLE_NOCOLOR': '1'}
    runner = ansible_runner.run(private_data_dir=str(tmp_path / 'runner'), project_dir=str(ROOT),
                                playbook=template['playbook'], inventory=str(INVENTORY), extravars=extravars,
                                envvars=env, quiet=True, timeout=900)
    return runner, extravars


def assert_successful(runner, name):
    stdout = runner.stdout.read() if runner.stdout else ''
    assert runner.status == 'successful' and runner.rc == 0, '%s: %s rc=%s\n%s' % (name, runner.status, runner.rc,
                                                                                   stdout[-8000:])
    events = list(runner.events)
    kinds = {e['event'] for e in events}
    assert {'playbook_on_start', 'playbook_on_play_start', 'runner_on_ok', 'playbook_on_stats'} <= kinds, kinds
    files = glob.glob(os.path.join(runner.config.artifact_dir, 'job_events', '*.json'))
    assert len(files) == len(events), 'job events on disk %d, from the runner %d' % (len(files), len(events))
    [stats] = [e for e in events if e['event'] == 'playbook_on_stats']
    assert not stats['event_data'].get('failures') and not stats['event_data'].get('dark'), stats['event_data']
    return events, stats['event_data'].get('artifact_data') or {}


def set_stats_keys(playbook):
    """The keys the playbook (and the task files it includes) publish with ansible.builtin.set_stats."""
    keys = set()
    texts = [playbook.read_text()] + [p.read_text() for p in (playbook.parent / 'tasks').glob('*.yml')
                                      if p.name in playbook.read_text()]

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ('ansible.builtin.set_stats', 'set_stats') and isinstance(value, dict):
                    keys.update((value.get('data') or {}).keys())
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    for text in texts:
        walk(yaml.safe_load(text))
    return keys


def keep(name, template, events, artifacts):
    RESULTS[name] = {'playbook': ROOT / template['playbook'], 'events': events, 'artifacts': artifacts}


def test_plan(templates, tmp_path):
    t = templates['plan']
    runner, extravars = run_template(t, tmp_path, {'mtd_plan_report': str(tmp_path / 'plan.json')})
    events, artifacts = assert_successful(runner, 'plan')
    facts = [e for e in events if e['event'] == 'runner_on_ok' and e['event_data'].get('task_action') == 'mtd.containers.host_facts']
    assert sorted(e['event_data']['host'] for e in facts) == sorted(OTHER_OS), 'host_facts did not run on every lab host'
    plan = json.loads((tmp_path / 'plan.json').read_text())
    assert plan['delta_t'] == extravars['mtd_plan_delta_t'] and 't1' in plan
    keep('plan', t, events, artifacts)


def test_migrate(templates, tmp_path):
    t = templates['migrate']
    name = 'it-awx-mg-%06d' % random.randrange(10 ** 6)
    docker('lab-1', 'run', '-d', '--name', name, '--network', 'none', '--memory', '32m', IMAGE, 'sh', '-c', COUNTER)
    try:
        time.sleep(1)
        runner, extravars = run_template(t, tmp_path, {'mtd_container': name, 'mtd_source': 'lab-1',
                                                       'mtd_report': str(tmp_path / 'record.json')})
        events, artifacts = assert_successful(runner, 'migrate')
        assert extravars['mtd_keep_source'] == 'false' and extravars['migrate_memory'] == 'copy'
        record = json.loads((tmp_path / 'record.json').read_text())
        assert record['state'] == 'Succeeded', record
        [host] = running_on(name)
        assert host == record['target'] and OTHER_OS[host] != OTHER_OS['lab-1'], (host, record['target'])
        values = [int(v) for v in docker(host, 'exec', name, 'cat', '/state.log').stdout.split()]
        assert values == list(range(1, len(values) + 1)), 'the state did not survive the move'
        keep('migrate', t, events, artifacts)
    finally:
        remove_everywhere(name)


def test_defend(templates, tmp_path):
    t = templates['defend']
    name = 'it-awx-df-%06d' % random.randrange(10 ** 6)
    docker('lab-1', 'run', '-d', '--name', name, '--network', 'none', '--memory', '32m', IMAGE, 'sh', '-c', COUNTER)
    try:
        time.sleep(1)
        # the attacked container is a list, which AWX passes as an extra variable (no survey question type)
        runner, extravars = run_template(t, tmp_path, {'mtd_defend_attacked': ['lab-1/%s' % name],
                                                       'mtd_defend_report': str(tmp_path / 'defend.json')})
        events, artifacts = assert_successful(runner, 'defend')
        assert extravars['mtd_defend_max'] == 1
        moved = json.loads((tmp_path / 'defend.json').read_text())['migrations']
        assert [(m['name'], m['state']) for m in moved] == [(name, 'Succeeded')], moved
        [host] = running_on(name)
        assert OTHER_OS[host] != OTHER_OS['lab-1']
        keep('defend', t, events, artifacts)
    finally:
        remove_everywhere(name)


def test_confine(templates, tmp_path):
    t = templates['confine']
    name = 'it-awx-cf-%06d' % random.randrange(10 ** 6)
    docker('lab-2', 'run', '-d', '--name', name, '--network', 'none', IMAGE, 'sleep', '3600')
    try:
        runner, extravars = run_template(t, tmp_path, {'mtd_confine_hosts': 'lab-2', 'mtd_confine_containers': name})
        events, artifacts = assert_successful(runner, 'confine')
        assert artifacts.get('mtd_confine') == [{'host': 'lab-2', 'name': name, 'changed': True, 'running': True,
                                                 'seccomp': 2, 'cgroup': artifacts['mtd_confine'][0]['cgroup']}]
        assert artifacts['mtd_confine'][0]['cgroup'].startswith('/mtd/')
        inspect = json.loads(docker('lab-2', 'inspect', name).stdout)[0]
        assert inspect['HostConfig']['CgroupParent'] == artifacts['mtd_confine'][0]['cgroup']
        status = docker('lab-2', 'exec', name, 'grep', 'Seccomp:', '/proc/1/status').stdout.split()
        assert status == ['Seccomp:', '2'], status
        keep('confine', t, events, artifacts)
    finally:
        remove_everywhere(name)


def test_rebase_rollout(templates, tmp_path):
    t = templates['rebase_rollout']
    suffix = '%06d' % random.randrange(10 ** 6)
    name, image = 'it-awx-rb-' + suffix, '127.0.0.1:5000/it-awx/rb:' + suffix
    docker('lab-3', 'build', '-q', '--network', 'none', '-t', image, '-',
           stdin='FROM %s\nLABEL mtd.it.awx=%s\n' % (IMAGE, suffix), timeout=300)
    docker('lab-3', 'run', '-d', '--name', name, '--network', 'none', IMAGE, 'sleep', '3600')
    try:
        runner, extravars = run_template(t, tmp_path, {'mtd_rollout_hosts': 'lab-3', 'mtd_rollout_image': image,
                                                       'mtd_rollout_containers': name})
        events, artifacts = assert_successful(runner, 'rebase_rollout')
        summary = artifacts.get('mtd_rollout')
        assert summary and summary['status'] == 'updated' and summary['image'] == image, artifacts
        assert [(c['host'], c['name'], c['phase'], c['healthy'], c['rolled_back']) for c in summary['containers']] == [
            ('lab-3', name, 'canary', True, False)], summary
        assert docker('lab-3', 'inspect', '-f', '{{.Config.Image}}', name).stdout.strip() == image
        assert extravars['mtd_rollout_rollback'] == 'true' and extravars['mtd_rollout_canary_count'] == 1
        record = json.loads((tmp_path / 'out' / 'rebase-rollout.json').read_text())   # mtd_output_dir
        assert [c['name'] for c in record['containers']] == [name]
        keep('rebase_rollout', t, events, artifacts)
    finally:
        remove_everywhere(name)
        docker('lab-3', 'rmi', '-f', image, check=False)


@pytest.mark.parametrize('name', ['plan', 'migrate', 'defend', 'confine', 'rebase_rollout'])
def test_set_stats_artifacts(name):
    """What each playbook publishes with set_stats reaches the job's artifacts (playbook_on_stats artifact_data)."""
    if name not in RESULTS:
        pytest.skip('the %s run above failed or did not run' % name)
    result = RESULTS[name]
    keys = set_stats_keys(result['playbook'])
    if not keys:
        pytest.skip('playbooks/%s has no set_stats yet (the i15-install part adds the summaries of plan, migrate '
                    'and defend); the run itself passed' % pathlib.Path(result['playbook']).name)
    assert keys <= set(result['artifacts']), 'set_stats %s, artifacts %s' % (sorted(keys), sorted(result['artifacts']))
    for key in keys:
        assert result['artifacts'][key], '%s is empty in the artifacts' % key
