# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""container_recreate's main() against an in-memory engine: selection, image, recreation, health, rollback."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _docker
from ansible_collections.mtd.containers.plugins.module_utils._docker import DockerError
from ansible_collections.mtd.containers.plugins.modules import container_recreate
from ansible_collections.mtd.containers.tests.unit.plugins.modules import module_harness

OLD_ID = 'sha256:' + '1' * 64
NEW_ID = 'sha256:' + '2' * 64
CID = 'c' * 64


class Engine:
    """Containers by id and images by reference; lifecycle calls are recorded in ``calls``."""

    docker_host = 'unix:///fake.sock'

    def __init__(self):
        self.images = {
            'app:1': {'Id': OLD_ID, 'RepoDigests': ['app@sha256:' + 'a' * 64], 'Config': {'Env': ['PATH=/bin']}},
            'app:2': {'Id': NEW_ID, 'RepoDigests': ['app@sha256:' + 'b' * 64], 'Config': {}},
        }
        self.by_id = {CID: {
            'Id': CID, 'Name': '/web-1', 'Image': OLD_ID,
            'State': {'Status': 'running', 'Running': True, 'Pid': 7},
            'Config': {'Image': 'app:1', 'Hostname': CID[:12], 'Env': ['PATH=/bin', 'MODE=x']},
            'HostConfig': {'NetworkMode': 'none'}, 'Mounts': [],
        }}
        self.calls = []
        self.bodies = []
        self.fail = {}
        self.exit_code = 0

    def _find(self, ref):
        for inspect in self.by_id.values():
            if ref in (inspect['Id'], inspect['Name'].lstrip('/')):
                return inspect
        raise DockerError('No such container: %s' % ref, status=404)

    def inspect_container(self, ref):
        return copy.deepcopy(self._find(ref))

    def inspect_image(self, ref):
        for key, image in self.images.items():
            if ref in (key, image['Id']):
                return copy.deepcopy(image)
        return None

    def containers(self, all=False, filters=None):  # pylint: disable=redefined-builtin
        return [{'Id': c['Id']} for c in self.by_id.values() if c['State']['Running']]

    def pull_image(self, reference):
        self.calls.append(('pull', reference))

    def rename_container(self, ref, name):
        self.calls.append(('rename', name))
        self._find(ref)['Name'] = '/' + name

    def create_container(self, name, body):
        self.calls.append(('create', name))
        self.bodies.append(body)
        if 'create' in self.fail:
            raise DockerError('create refused', status=500)
        new = {'Id': 'd' * 64, 'Name': '/' + name, 'Image': self.inspect_image(body['Image'])['Id'],
               'State': {'Status': 'created', 'Running': False, 'Pid': 0},
               'Config': dict(body), 'HostConfig': body['HostConfig'], 'Mounts': []}
        self.by_id[new['Id']] = new
        return new['Id']

    def stop_container(self, ref, timeout=10):
        self.calls.append(('stop', timeout))
        self._find(ref)['State'] = {'Status': 'exited', 'Running': False, 'Pid': 0, 'ExitCode': 0}

    def start_container(self, ref):
        self.calls.append(('start', ref[:1]))
        self._find(ref)['State'] = {'Status': 'running', 'Running': True, 'Pid': 8}

    def remove_container(self, ref, force=False, volumes=False):
        self.calls.append(('remove', ref[:1]))
        del self.by_id[self._find(ref)['Id']]

    def exec_run(self, ref, cmd):
        self.calls.append(('exec', tuple(cmd)))
        return self.exit_code, 'probe said %d' % self.exit_code


@pytest.fixture
def engine(monkeypatch):
    fake = Engine()
    monkeypatch.setattr(_docker, 'client_from_params', lambda params: fake)
    return fake


def run(args, fail=False):
    return module_harness.run_module(container_recreate.main, args, expect_failure=fail)


BASE = {'image': 'app:2', 'containers': ['web-1'], 'health_interval': 0, 'health_retries': 2,
        'health_cmd': ['probe']}


def test_recreates_with_park_and_health(engine):
    result = run(BASE)
    assert result['changed'] is True and result['healthy'] is True and result['image_id'] == NEW_ID
    entry = result['containers'][0]
    assert entry['name'] == 'web-1' and entry['healthy'] is True and entry['health_output'] == 'probe said 0'
    assert entry['before']['image_id'] == OLD_ID and entry['after']['image_id'] == NEW_ID
    assert entry['before']['repo_digest'] == 'app@sha256:' + 'a' * 64
    assert engine.calls == [('rename', 'web-1-rb-old-cccccccccccc'), ('create', 'web-1'), ('stop', 10),
                            ('start', 'd'), ('remove', 'c'), ('exec', ('probe',))]
    # the old image's environment is left to the new image, the user's own is kept
    assert engine.bodies[0]['Env'] == ['MODE=x'] and 'Hostname' not in engine.bodies[0]


def test_second_run_and_check_mode_change_nothing(engine):
    run(BASE)
    engine.calls[:] = []
    result = run(BASE)
    assert result['changed'] is False and result['containers'][0]['changed'] is False and engine.calls == []


def test_check_mode_predicts(engine):
    result = run(dict(BASE, _ansible_check_mode=True))
    assert result['changed'] is True and result['containers'][0]['after'] is None
    assert engine.calls == []


def test_missing_container_and_missing_image(engine):
    result = run(dict(BASE, containers=['nope']), fail=True)
    assert result['msg'] == 'There is no container nope on this engine.'
    result = run(dict(BASE, image='app:3', pull='never'), fail=True)
    assert result['msg'] == 'The engine has no image app:3 and pull is never.'


def test_failed_create_puts_the_old_container_back(engine):
    engine.fail['create'] = True
    result = run(BASE, fail=True)
    assert result['msg'] == ('Recreating container web-1 from app:2 failed, the old container was restored: '
                             'create refused')
    assert engine.calls == [('rename', 'web-1-rb-old-cccccccccccc'), ('create', 'web-1'), ('rename', 'web-1')]
    assert engine.by_id[CID]['State']['Running'] is True and engine.by_id[CID]['Name'] == '/web-1'


def test_unhealthy(engine):
    engine.exit_code = 1
    result = run(BASE, fail=True)
    assert result['msg'] == 'The recreated containers web-1 are not healthy.'
    assert result['healthy'] is False and result['containers'][0]['health_output'] == 'probe said 1'
    assert [c for c in engine.calls if c[0] == 'exec'] == [('exec', ('probe',))] * 2


def test_unhealthy_without_failing(engine):
    engine.exit_code = 1
    result = run(dict(BASE, fail_unhealthy=False))
    assert result['healthy'] is False and result['changed'] is True


def test_from_image_selects_running_containers(engine):
    result = run({'image': 'app:2', 'from_image': 'app:1', 'health_interval': 0})
    assert [c['name'] for c in result['containers']] == ['web-1'] and result['containers'][0]['healthy'] is True
