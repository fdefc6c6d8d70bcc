# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_container.py: the inspect -> spec -> create body converter, the park-and-rollback replacement and the
wait for a running (healthy) container."""

from __future__ import annotations

import json

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _container as ct
from ansible_collections.mtd.containers.plugins.module_utils import _migration as mig
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._container import recreate_body
from ansible_collections.mtd.containers.plugins.module_utils._docker import DockerError

CONTAINER = {
    'Id': '0123456789abcdef' * 4,
    'Name': '/web-1',
    'Config': {
        'Hostname': '0123456789ab', 'Image': 'r.example/app:1',
        'Env': ['PATH=/bin', 'KEEP=me'], 'Cmd': ['app'], 'Entrypoint': None, 'WorkingDir': '/srv',
        'Labels': {'from.image': 'x', 'mtd.units': '3'},
    },
    'HostConfig': {'Binds': ['data:/data'], 'NetworkMode': 'none', 'Memory': 67108864},
    'Mounts': [
        {'Type': 'volume', 'Name': 'data', 'Destination': '/data', 'RW': True},
        {'Type': 'volume', 'Name': 'f00dcafe', 'Destination': '/cache', 'RW': True},
        {'Type': 'bind', 'Source': '/etc/x', 'Destination': '/x'},
    ],
    'NetworkSettings': {'Networks': {'none': {}}},
}
OLD_IMAGE = {'Env': ['PATH=/bin'], 'Cmd': ['app'], 'WorkingDir': '/srv', 'Labels': {'from.image': 'x'}}


def test_recreate_body_keeps_user_settings_and_all_volumes():
    body = recreate_body(CONTAINER, OLD_IMAGE, 'r.example/app@sha256:' + 'a' * 64)
    assert body['Image'] == 'r.example/app@sha256:' + 'a' * 64
    assert body['Env'] == ['KEEP=me']
    assert body['Labels'] == {'mtd.units': '3'}
    for key in ('Hostname', 'Cmd', 'WorkingDir'):
        assert key not in body
    assert body['HostConfig']['Binds'] == ['data:/data', 'f00dcafe:/cache']
    assert body['HostConfig']['Memory'] == 67108864
    assert 'NetworkingConfig' not in body


def test_recreate_body_user_command_and_network():
    container = dict(CONTAINER, Config=dict(CONTAINER['Config'], Cmd=['other']),
                     HostConfig={'NetworkMode': 'appnet'},
                     NetworkSettings={'Networks': {'appnet': {'Aliases': ['web', '0123456789ab']}}})
    body = recreate_body(container, OLD_IMAGE, 'img')
    assert body['Cmd'] == ['other']
    assert body['NetworkingConfig'] == {'EndpointsConfig': {'appnet': {'Aliases': ['web']}}}


def test_recreate_body_does_not_modify_the_inspect():
    container = json.loads(json.dumps(CONTAINER))
    recreate_body(container, OLD_IMAGE, 'img')
    assert container == CONTAINER


def test_recreate_body_without_old_image_config_drops_unset_defaults_only():
    body = recreate_body(dict(CONTAINER, Config=dict(CONTAINER['Config'], Labels=None)), None, 'img')
    assert body['Env'] == ['PATH=/bin', 'KEEP=me'] and body['Cmd'] == ['app'] and body['WorkingDir'] == '/srv'
    assert 'Entrypoint' not in body and body['Labels'] == {}


def test_recreate_body_read_only_anonymous_volume_and_mount_targets():
    container = dict(CONTAINER, HostConfig={'Mounts': [{'Type': 'volume', 'Source': 'data', 'Target': '/data'}]},
                     Mounts=[{'Type': 'volume', 'Name': 'data', 'Destination': '/data', 'RW': True},
                             {'Type': 'volume', 'Name': 'f00dcafe', 'Destination': '/cache', 'RW': False}])
    host_config = recreate_body(container, OLD_IMAGE, 'img')['HostConfig']
    assert host_config['Binds'] == ['f00dcafe:/cache:ro']
    assert host_config['Mounts'] == [{'Type': 'volume', 'Source': 'data', 'Target': '/data'}]


def test_create_body_refuses_an_unknown_mount_style():
    with pytest.raises(ValueError):
        ct.create_body({}, mounts='copy')


# -- the converter serves a migration too (_migration.capture_config / create_body) ---------------------

REG = '127.0.0.1:5000'
MIGRATING = {
    'Id': 'c' * 64, 'Name': '/web-1', 'Image': 'sha256:' + 'f' * 64,
    'Config': {'Hostname': 'c' * 12, 'Domainname': '', 'User': 'app', 'Env': ['PATH=/bin', 'MODE=prod'],
               'Cmd': ['sh', '-c', 'run'], 'Entrypoint': None, 'WorkingDir': '/app',
               'Labels': {'team': 'web'}, 'Image': REG + '/mtd/web:2', 'Volumes': {'/data': {}}, 'Tty': False},
    'HostConfig': {'NetworkMode': 'none', 'Binds': ['/srv/conf:/etc/app:ro', 'web-data:/data', '/tmp/b:/b:ro,rslave'],
                   'Memory': 33554432, 'CapDrop': None, 'SecurityOpt': [], 'PortBindings': {},
                   'Mounts': [{'Type': 'tmpfs', 'Target': '/scratch', 'TmpfsOptions': {'SizeBytes': 8388608}}]},
    'Mounts': [
        {'Type': 'volume', 'Name': 'web-data', 'Source': '/var/lib/docker/volumes/web-data/_data',
         'Destination': '/data', 'Driver': 'local', 'Mode': 'z', 'RW': True},
        {'Type': 'bind', 'Source': '/srv/conf', 'Destination': '/etc/app', 'Mode': 'ro', 'RW': False},
        {'Type': 'bind', 'Source': '/tmp/b', 'Destination': '/b', 'Mode': 'ro,rslave', 'RW': False,
         'Propagation': 'rslave'},
        {'Type': 'tmpfs', 'Source': '', 'Destination': '/scratch', 'Mode': '', 'RW': True, 'Propagation': ''},
    ],
    'GraphDriver': {'Name': 'overlay2'},
}
IMAGE = {'RepoDigests': ['other/x@sha256:' + 'b' * 64, REG + '/mtd/web@sha256:' + 'a' * 64]}


def test_container_spec_with_the_migration_keys_is_what_a_migration_captures():
    captured = mig.capture_config(MIGRATING, IMAGE)
    spec = ct.container_spec(MIGRATING, config_keys=mig.CONFIG_KEYS, host_config_keys=mig.HOSTCONFIG_KEYS)
    for key in ('name', 'id', 'image', 'image_id', 'config', 'host_config', 'mounts'):
        assert spec[key] == captured[key], key
    assert 'networks' not in spec
    assert ct.repo_digest_for(spec['image'], IMAGE['RepoDigests']) == captured['image_digest_ref']


@pytest.mark.parametrize('labels, image', [(None, None), ({'mtd.migration.id': 'm-1'}, None),
                                           ({'team': 'other'}, 'x@sha256:' + 'c' * 64)])
def test_create_body_rebuild_is_the_migration_create_body(labels, image):
    captured = mig.capture_config(MIGRATING, IMAGE)
    assert ct.create_body(captured, image=image, labels=labels, mounts=ct.REBUILD) == \
        mig.create_body(captured, labels=labels, image=image)
    spec = ct.container_spec(MIGRATING, config_keys=mig.CONFIG_KEYS, host_config_keys=mig.HOSTCONFIG_KEYS)
    spec['image_digest_ref'] = ct.repo_digest_for(spec['image'], IMAGE['RepoDigests'])
    assert ct.create_body(spec, image=image, labels=labels, mounts=ct.REBUILD) == \
        mig.create_body(captured, labels=labels, image=image)


def test_repository():
    assert ct.repository('127.0.0.1:5000/team/app:1@sha256:' + 'a' * 64) == '127.0.0.1:5000/team/app'
    assert ct.repository('busybox') == 'busybox' and ct.repository(None) == ''


def test_container_name():
    assert ct.container_name({'Name': '/web-1', 'Id': 'a' * 64}) == 'web-1'
    assert ct.container_name({'Id': 'a' * 64}) == 'a' * 12


# -- I/O primitives against a scripted client -------------------------------------------------------------

class FakeClient:
    """Answers inspect_container from a script of states; records the lifecycle calls; fails on demand."""

    def __init__(self, states=None, exec_answers=None, images=None, fail=None):
        self.states = list(states or [])
        self.exec_answers = list(exec_answers or [])
        self.images = images or {}
        self.fail = dict(fail or {})
        self.calls = []

    def _maybe_fail(self, name):
        if name in self.fail:
            error = self.fail[name]
            raise error if isinstance(error, Exception) else DockerError('%s failed' % name, status=error)

    def inspect_container(self, container_id):
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {'Id': container_id, 'State': state}

    def inspect_image(self, image):
        return self.images.get(image)

    def exec_run(self, container_id, cmd):
        self.calls.append(('exec', container_id, tuple(cmd)))
        return self.exec_answers.pop(0)

    def rename_container(self, container_id, name):
        self.calls.append(('rename', container_id, name))
        self._maybe_fail('rename:' + name)

    def create_container(self, name, body):
        self.calls.append(('create', name))
        self._maybe_fail('create')
        return 'new-id'

    def stop_container(self, container_id, timeout=10):
        self.calls.append(('stop', container_id, timeout))
        self._maybe_fail('stop')

    def start_container(self, container_id):
        self.calls.append(('start', container_id))
        self._maybe_fail('start:' + container_id)

    def remove_container(self, container_id, force=False, volumes=False):
        self.calls.append(('remove', container_id))
        self._maybe_fail('remove:' + container_id)


class Clock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


RUNNING = {'Status': 'running', 'Running': True, 'Pid': 42}
EXITED = {'Status': 'exited', 'Running': False, 'Pid': 0, 'ExitCode': 3, 'OOMKilled': True}


def _wait(client, **kwargs):
    clock = Clock()
    result = ct.wait_running(client, 'cid', sleep=clock.sleep, clock=clock.time, **kwargs)
    return result, clock


def test_wait_running_without_a_check_is_done_when_it_runs():
    result, clock = _wait(FakeClient([{'Status': 'created', 'Running': False, 'Pid': 0}, RUNNING]), interval=0.1)
    assert result['healthy'] is True and result['ended'] == 'healthy' and result['reason'] == ''
    assert result['attempts'] == 2 and clock.sleeps == [0.1] and result['state'] == RUNNING
    assert result['seconds'] == 0.1


def test_wait_running_gives_up_on_a_stopped_container_at_once_unless_told_to_wait():
    result, clock = _wait(FakeClient([EXITED]), timeout=10)
    assert result['ended'] == 'stopped' and not result['healthy'] and clock.sleeps == []
    assert result['reason'] == 'the container is not running (status exited, exit code 3)'
    assert result['state']['OOMKilled'] is True
    result, clock = _wait(FakeClient([EXITED, EXITED, RUNNING]), timeout=10, stop_on_exit=False)
    assert result['healthy'] is True and result['attempts'] == 3


def test_wait_running_restarting_is_not_running_yet():
    restarting = dict(RUNNING, Status='restarting', Restarting=True)
    result, clock = _wait(FakeClient([restarting]), timeout=1.0, interval=0.25)
    assert result['ended'] == 'timeout' and result['attempts'] == 5 and len(clock.sleeps) == 4
    assert result['reason'] == 'the container is not running (status restarting, exit code None)'


def test_wait_running_health_command_until_it_passes():
    client = FakeClient([RUNNING], exec_answers=[(1, 'not yet'), (0, 'x' * 3000)])
    result, clock = _wait(client, timeout=None, attempts=5, interval=1.0, first_delay=1.0, health_cmd=['probe'])
    assert result['healthy'] is True and result['exit_code'] == 0 and result['output'] == 'x' * 2000
    assert clock.sleeps == [1.0, 1.0] and result['attempts'] == 2
    assert client.calls == [('exec', 'cid', ('probe',)), ('exec', 'cid', ('probe',))]


def test_wait_running_health_command_runs_out_of_tries():
    client = FakeClient([RUNNING], exec_answers=[(1, 'no %d' % n) for n in range(3)])
    result, clock = _wait(client, timeout=None, attempts=3, interval=1.0, first_delay=1.0, health_cmd=['probe'])
    assert result['ended'] == 'timeout' and result['exit_code'] == 1 and result['output'] == 'no 2'
    assert result['reason'] == 'health command exited 1: no 2'
    assert clock.sleeps == [1.0, 1.0, 1.0]


@pytest.mark.parametrize('statuses, ended', [
    (['starting', 'healthy'], 'healthy'),
    (['starting', 'unhealthy'], 'unhealthy'),
    (['starting'], 'timeout'),
])
def test_wait_running_image_health(statuses, ended):
    client = FakeClient([dict(RUNNING, Health={'Status': s}) for s in statuses])
    result, clock = _wait(client, timeout=None, attempts=3, interval=0.5, image_health=True)
    assert result['ended'] == ended
    if ended != 'healthy':
        assert result['reason'] == 'the image health check reports %s' % statuses[-1]
    # without image_health the HEALTHCHECK is not looked at
    assert _wait(FakeClient([dict(RUNNING, Health={'Status': 'unhealthy'})]))[0]['healthy'] is True


def _old(running=True, auto_remove=False):
    return {'Id': 'old-id-0123456789', 'Name': '/web-1', 'State': {'Running': running},
            'HostConfig': {'AutoRemove': auto_remove}}


def test_replace_container_steps_in_order():
    client = FakeClient([RUNNING])
    carried = []
    result = ct.replace_container(client, _old(), {'Image': 'x'}, 'web-1-parked', stop_timeout=7,
                                  carry=lambda old, new: carried.append((old, new)) or {'copied': []},
                                  check=lambda new: client.calls.append(('check', new)))
    assert client.calls == [('rename', 'old-id-0123456789', 'web-1-parked'), ('create', 'web-1'),
                            ('stop', 'old-id-0123456789', 7), ('start', 'new-id'), ('check', 'new-id'),
                            ('remove', 'old-id-0123456789')]
    assert carried == [('old-id-0123456789', 'new-id')]
    assert result == {'id': 'new-id', 'previous_id': 'old-id-0123456789', 'started': True,
                      'carried': {'copied': []}, 'warnings': []}


def test_replace_container_stopped_old_one_is_not_started_unless_asked():
    client = FakeClient([RUNNING])
    assert ct.replace_container(client, _old(running=False), {}, 'p')['started'] is False
    assert [c[0] for c in client.calls] == ['rename', 'create', 'remove']
    client = FakeClient([RUNNING])
    assert ct.replace_container(client, _old(running=False), {}, 'p', start=True)['started'] is True
    assert [c[0] for c in client.calls] == ['rename', 'create', 'start', 'remove']


def test_replace_container_carry_before_stop():
    client = FakeClient([RUNNING])
    ct.replace_container(client, _old(auto_remove=True), {}, 'p', carry_before_stop=True,
                         carry=lambda old, new: client.calls.append(('carry',)))
    assert [c[0] for c in client.calls] == ['rename', 'create', 'carry', 'stop', 'start', 'remove']


@pytest.mark.parametrize('fail, expected', [
    ({'create': 409}, ['rename', 'create', 'rename']),
    ({'start:new-id': 500}, ['rename', 'create', 'stop', 'start', 'remove', 'rename', 'start']),
])
def test_replace_container_rolls_back(fail, expected):
    client = FakeClient([RUNNING], fail=fail)
    with pytest.raises(ct.ReplaceError) as info:
        ct.replace_container(client, _old(), {}, 'p')
    assert [c[0] for c in client.calls] == expected
    assert client.calls[-1][1] == 'old-id-0123456789'
    assert info.value.msg.endswith('failed') and 'rollback_errors' not in info.value.details


def test_replace_container_check_refusal_rolls_back_and_keeps_its_sentence():
    client = FakeClient([RUNNING], fail={'rename:web-1': 500})

    def refuse(new_id):
        raise MtdError('the new container exited right after its start', exit_code=1)
    with pytest.raises(ct.ReplaceError) as info:
        ct.replace_container(client, _old(), {}, 'p', check=refuse)
    assert info.value.msg == 'the new container exited right after its start'
    assert info.value.details == {'exit_code': 1,
                                  'rollback_errors': ['renaming the old container back: rename:web-1 failed']}
    assert [c[0] for c in client.calls][-3:] == ['remove', 'rename', 'start']


def test_replace_container_auto_remove_old_one_is_gone_after_the_stop():
    client = FakeClient([RUNNING], fail={'start:new-id': 500})
    with pytest.raises(ct.ReplaceError):
        ct.replace_container(client, _old(auto_remove=True), {}, 'p')
    # nothing to rename back or start again: the engine deleted it when it stopped
    assert [c[0] for c in client.calls] == ['rename', 'create', 'stop', 'start', 'remove']


def test_replace_container_other_exceptions_roll_back_and_propagate():
    client = FakeClient([RUNNING])

    def broken(old, new):
        raise OSError('disk full')
    with pytest.raises(OSError):
        ct.replace_container(client, _old(), {}, 'p', carry=broken)
    assert [c[0] for c in client.calls] == ['rename', 'create', 'stop', 'remove', 'rename', 'start']


def test_replace_container_parked_one_that_cannot_be_removed_is_a_warning():
    client = FakeClient([RUNNING], fail={'remove:old-id-0123456789': 500})
    result = ct.replace_container(client, _old(), {}, 'web-1-parked')
    assert result['warnings'] == ['The replaced container web-1-parked (old-id-01234) could not be removed: '
                                  'remove:old-id-0123456789 failed']
    client = FakeClient([RUNNING], fail={'remove:old-id-0123456789': 404})
    assert ct.replace_container(client, _old(), {}, 'p')['warnings'] == []


def test_same_image_reference():
    inspect = {'Image': 'sha256:1', 'Config': {'Image': 'app:1'}}
    assert ct.same_image_reference(FakeClient(images={'app:1': {'Id': 'sha256:1'}}), inspect) == 'app:1'
    assert ct.same_image_reference(FakeClient(images={'app:1': {'Id': 'sha256:2'}}), inspect) == 'sha256:1'
    assert ct.same_image_reference(FakeClient(), inspect) == 'sha256:1'
