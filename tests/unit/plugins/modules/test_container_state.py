# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""container_state main() against a stateful fake engine: transitions, idempotence, check mode."""

from __future__ import annotations

import importlib.util
import os

import pytest

from ansible_collections.mtd.containers.plugins.modules import container_state

_spec = importlib.util.spec_from_file_location(
    'mtd_migration_fakes_cs', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'migration_fakes.py'))
fakes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fakes)

model = fakes.model


@pytest.fixture(autouse=True)
def no_docker_host(monkeypatch):
    monkeypatch.delenv('DOCKER_HOST', raising=False)


def run(engine, fail=False, **args):
    args.setdefault('docker_host', engine.url)
    return fakes.run_module(container_state, args, fail=fail)


# (status before, wanted state, the engine calls that change something, status after)
TRANSITIONS = [
    ('running', 'paused', ['pause'], 'paused'),
    ('paused', 'running', ['unpause'], 'running'),
    ('exited', 'running', ['start'], 'running'),
    ('created', 'running', ['start'], 'running'),
    ('running', 'stopped', ['stop'], 'exited'),
    ('paused', 'stopped', ['unpause', 'stop'], 'exited'),
    ('running', 'absent', ['stop', 'delete'], 'absent'),
    # a frozen container cannot get the stop signal: it is killed, then removed
    ('paused', 'absent', ['kill', 'delete'], 'absent'),
    ('exited', 'absent', ['delete'], 'absent'),
]


def calls(engine, cid):
    out = []
    for call in engine.state_changes():
        method, path = call.split(' ', 1)
        out.append('delete' if method == 'DELETE' else path.rsplit('/', 1)[1])
        assert cid in path
    return out


@pytest.mark.parametrize('before, want, expected_calls, after', TRANSITIONS)
def test_transition_then_idempotent(model, before, want, expected_calls, after):
    c = model.add_container('it-web', status=before, labels={'mtd.migration.id': 'm-1'})
    first = run(model, container='it-web', state=want)
    assert first['changed'] is True
    assert first['before'] == ('stopped' if before in ('exited', 'created') else before)
    assert first['after'] == want
    assert first['id'] == c['Id'] and first['labels'] == {'mtd.migration.id': 'm-1'}
    assert calls(model, c['Id']) == expected_calls
    assert model.status(c['Id']) == after
    # the second run finds the state reached and changes nothing
    del model.requests[:]
    second = run(model, container='it-web', state=want)
    assert second['changed'] is False
    assert second['before'] == second['after'] == want
    assert model.state_changes() == []


@pytest.mark.parametrize('before, want, expected_calls, after', TRANSITIONS)
def test_check_mode_reports_and_changes_nothing(model, before, want, expected_calls, after):
    c = model.add_container('it-web', status=before)
    result = run(model, container='it-web', state=want, _ansible_check_mode=True)
    assert result['changed'] is True and result['after'] == want
    assert model.state_changes() == []
    assert model.status(c['Id']) == before


def test_diff_shows_the_status(model):
    model.add_container('it-web', status='running')
    result = run(model, container='it-web', state='paused', _ansible_diff=True)
    assert result['diff'] == {'before': {'state': 'running'}, 'after': {'state': 'paused'}}
    result = run(model, container='it-web', state='paused', _ansible_diff=True)
    assert result['diff'] == {'before': {'state': 'paused'}, 'after': {'state': 'paused'}}


def test_by_id(model):
    c = model.add_container('it-web', status='paused')
    assert run(model, container=c['Id'], state='running')['changed'] is True
    assert model.status('it-web') == 'running'


def test_absent_on_a_missing_container(model):
    result = run(model, container='it-nothing', state='absent')
    assert result['changed'] is False and result['before'] == result['after'] == 'absent'
    assert 'id' not in result
    assert model.state_changes() == []
    result = run(model, container='it-nothing', state='absent', _ansible_check_mode=True)
    assert result['changed'] is False


def test_absent_on_a_missing_container_without_missing_ok(model):
    result = run(model, fail=True, container='it-nothing', state='absent', missing_ok=False)
    assert result['msg'] == "No such container 'it-nothing' on this host."
    assert result['before'] == 'absent'


@pytest.mark.parametrize('want', ['running', 'paused', 'stopped'])
def test_other_states_fail_on_a_missing_container(model, want):
    result = run(model, fail=True, container='it-nothing', state=want)
    assert result['msg'] == "No such container 'it-nothing' on this host."
    assert result['changed'] is False


@pytest.mark.parametrize('check_mode', [False, True])
def test_a_stopped_container_cannot_be_paused(model, check_mode):
    c = model.add_container('it-web', status='exited')
    result = run(model, fail=True, container='it-web', state='paused', _ansible_check_mode=check_mode)
    assert result['msg'] == 'Only a running container can be paused; it-web is stopped.'
    assert result['changed'] is False
    assert model.state_changes() == [] and model.status(c['Id']) == 'exited'


def test_remove_volumes_and_stop_timeout_reach_the_engine(model):
    c = model.add_container('it-web', status='running')
    run(model, container='it-web', state='absent', remove_volumes=True, stop_timeout=3)
    stop = [r for r in model.requests if r['path'].endswith('/stop')][0]
    delete = [r for r in model.requests if r['method'] == 'DELETE'][0]
    assert stop['query'] == {'t': ['3']}
    assert delete['query'] == {'force': ['true'], 'v': ['1']}
    assert model.status(c['Id']) == 'absent'
    c = model.add_container('it-web2', status='exited')
    run(model, container='it-web2', state='absent')
    delete = [r for r in model.requests if r['method'] == 'DELETE'][-1]
    assert delete['query'] == {'force': ['true']}


def test_engine_error_is_one_sentence(model):
    c = model.add_container('it-web', status='running')
    model.errors['/pause'] = (500, 'cannot pause: the freezer cgroup is gone')
    result = run(model, fail=True, container='it-web', state='paused')
    assert result['msg'] == ('Docker engine error on it-web: POST /containers/%s/pause failed with 500 Internal '
                             'Server Error: cannot pause: the freezer cgroup is gone' % c['Id'])
    assert model.status(c['Id']) == 'running'


def test_unreachable_engine(tmp_path):
    result = fakes.run_module(container_state, {'docker_host': 'unix://%s/none.sock' % tmp_path,
                                                'container': 'x', 'state': 'running'}, fail=True)
    assert result['msg'].startswith('Docker engine error on x: Cannot reach the Docker engine at unix://')


# ---- state=query: the read-only probe ------------------------------------------------------------

@pytest.mark.parametrize('engine_status, status', [
    ('running', 'running'), ('paused', 'paused'), ('exited', 'stopped'), ('created', 'stopped'),
])
@pytest.mark.parametrize('check_mode', [False, True])
def test_query_reports_and_changes_nothing(model, engine_status, status, check_mode):
    c = model.add_container('it-web', status=engine_status, labels={'mtd.migration.id': 'm-1'})
    result = run(model, container='it-web', state='query', _ansible_check_mode=check_mode, _ansible_diff=True)
    assert result['changed'] is False
    assert result['status'] == result['before'] == result['after'] == status
    assert result['id'] == c['Id'] and result['labels'] == {'mtd.migration.id': 'm-1'}
    assert result['diff'] == {'before': {'state': status}, 'after': {'state': status}}
    assert model.state_changes() == []
    assert model.status(c['Id']) == engine_status


@pytest.mark.parametrize('missing_ok', [True, False])
def test_query_of_a_missing_container_is_absent_not_an_error(model, missing_ok):
    result = run(model, container='it-nothing', state='query', missing_ok=missing_ok)
    assert result['changed'] is False
    assert result['status'] == result['before'] == result['after'] == 'absent'
    assert 'id' not in result and 'labels' not in result
    assert model.state_changes() == []


def test_query_reads_only(model):
    c = model.add_container('it-web', status='running')
    run(model, container=c['Id'][:12], state='query')
    assert [r['method'] for r in model.requests if '/containers/' in r['path']] == ['GET']


def test_query_of_an_unreachable_engine_fails(tmp_path):
    # a probe that cannot see the engine must not pass for "absent"
    result = fakes.run_module(container_state, {'docker_host': 'unix://%s/none.sock' % tmp_path,
                                                'container': 'x', 'state': 'query'}, fail=True)
    assert result['msg'].startswith('Docker engine error on x: Cannot reach the Docker engine at unix://')
    assert result['changed'] is False


# ---------------------------------------------------------------------------------------------------
# named_volumes: the source keeps no copy of the data a migration carried away

def test_absent_removes_the_named_volumes_it_carried(model):
    c = model.add_container('it-web', status='paused', volumes=['it-web-vol', 'it-web-logs'])
    model.add_volume('unrelated')
    result = run(model, container='it-web', state='absent', named_volumes=['it-web-vol', 'it-web-logs'])
    assert result['changed'] is True and result['after'] == 'absent'
    assert result['volumes_removed'] == ['it-web-vol', 'it-web-logs'] and result['volumes_kept'] == []
    assert sorted(model.volumes) == ['unrelated']
    assert model.status(c['Id']) == 'absent'
    # a second run: the container is gone, nothing tells a volume of that name would be its
    again = run(model, container='it-web', state='absent', named_volumes=['it-web-vol'])
    assert again['changed'] is False and again['volumes_removed'] == []
    assert again['volumes_kept'] == [{'name': 'it-web-vol',
                                      'reason': 'the container was already gone, so nothing tells that this volume is its'}]


def test_absent_keeps_a_volume_another_container_uses_or_it_does_not_mount(model):
    model.add_container('it-web', volumes=['shared'])
    model.add_container('other-1', volumes=['shared'])
    model.add_volume('not-mounted')
    result = run(model, container='it-web', state='absent', named_volumes=['shared', 'not-mounted'])
    assert result['changed'] is True and result['after'] == 'absent'
    assert result['volumes_removed'] == []
    assert result['volumes_kept'] == [{'name': 'not-mounted', 'reason': 'the container does not mount it'},
                                      {'name': 'shared', 'reason': 'container other-1 still uses it'}]
    assert sorted(model.volumes) == ['not-mounted', 'shared']


def test_absent_with_named_volumes_in_check_mode_changes_nothing(model):
    model.add_container('it-web', volumes=['it-web-vol'])
    result = run(model, container='it-web', state='absent', named_volumes=['it-web-vol'], _ansible_check_mode=True)
    assert result['changed'] is True and result['volumes_removed'] == ['it-web-vol']
    assert model.state_changes() == [] and 'it-web-vol' in model.volumes


def test_named_volumes_only_with_absent(model):
    model.add_container('it-web', volumes=['it-web-vol'])
    result = run(model, fail=True, container='it-web', state='stopped', named_volumes=['it-web-vol'])
    assert result['msg'] == 'named_volumes goes with state absent only (the volumes are removed with the container).'
    assert model.state_changes() == []
