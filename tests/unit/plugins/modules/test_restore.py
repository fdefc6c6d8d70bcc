# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""restore main() against a stateful fake engine, from a real bundle (GNU tar, sha256 manifest)."""

from __future__ import annotations

import base64
import copy
import fcntl
import json
import os
import pathlib
import stat
import socket
import threading
import time

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _bundle, _channel, _transfer
from ansible_collections.mtd.containers.plugins.module_utils import _cgroup as cgroup_lib
from ansible_collections.mtd.containers.plugins.module_utils import _confine
from ansible_collections.mtd.containers.plugins.module_utils import _systemd as systemd_lib
from ansible_collections.mtd.containers.plugins.modules import restore
from ansible_collections.mtd.containers.tests.unit.plugins.modules import migration_fakes as fakes
from ansible_collections.mtd.containers.tests.unit.plugins.modules import test_confine as confine_tests
from ansible_collections.mtd.containers.tests.unit.plugins.module_utils import test_systemd as systemd_tests
from ansible_collections.mtd.containers.tests.unit.plugins.module_utils.test_cgroup import v2_layout
from ansible_collections.mtd.containers.tests.unit.plugins.modules.module_harness import free_port

model = fakes.model
runc_conf = fakes.runc_conf
SOURCE_ID = 'ab' * 32
TOKEN = 'r' * 24

CAPTURED = {
    'name': 'it-web',
    'id': SOURCE_ID,
    'image': fakes.IMAGE_REF,
    'image_id': fakes.IMAGE_ID,
    'image_digest_ref': fakes.IMAGE_DIGEST_REF,
    'config': {'Hostname': SOURCE_ID[:12], 'Image': fakes.IMAGE_REF, 'Env': ['PATH=/bin'],
               'Cmd': ['sh', '-c', 'count'], 'Labels': {'mtd.units': '5'}},
    'host_config': {'NetworkMode': 'none', 'Memory': 33554432},
    'mounts': [{'type': 'volume', 'name': 'it-web-vol', 'source': '/var/lib/docker/volumes/it-web-vol/_data',
                'destination': '/vol', 'driver': 'local', 'rw': True, 'mode': 'z'}],
    'graph_driver': 'overlay2',
}


@pytest.fixture(autouse=True)
def no_docker_host(monkeypatch, model, runc_conf, tmp_path):
    monkeypatch.delenv('DOCKER_HOST', raising=False)
    model.runc_conf_path = runc_conf
    # never the machine's /dev/shm
    monkeypatch.setattr(restore, 'INCOMING_TMPFS', str(tmp_path / 'shm' / 'mtd-incoming'))
    monkeypatch.setattr(restore, 'tmpfs_free_bytes', lambda path: None)


def make_bundle(root, captured=None):
    """What checkpoint leaves on the target after the transfer: images, layer, volume, manifest."""
    bundle = root / 'mtd-migrations' / 'm-1'
    (bundle / 'criu').mkdir(parents=True)
    (bundle / 'volumes').mkdir()
    (bundle / 'criu' / 'pages-1.img').write_bytes(b'\x01' * 8192)
    (bundle / 'criu' / 'core-1.img').write_bytes(b'core')
    (bundle / 'criu' / 'descriptors.json').write_text('["/dev/null", "pipe:[1]", "pipe:[2]"]')
    layer = root / 'src-layer'
    (layer / 'state').mkdir(parents=True)
    (layer / 'state' / 'counter.log').write_text('1\n2\n3\n')
    _bundle.tar_create(str(layer), str(bundle / 'rootfs-diff.tar'), xattrs=True)
    vol = root / 'src-vol'
    vol.mkdir()
    (vol / 'counter.log').write_text('1\n2\n')
    _bundle.tar_create(str(vol), str(bundle / 'volumes' / 'it-web-vol.tar'))
    _bundle.write_manifest(str(bundle), captured or CAPTURED, extra={'checkpoint': 'm-1', 'method': 'runc'})
    return str(bundle)


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path)


def run(engine, fail=False, **args):
    args.setdefault('docker_host', engine.url)
    args.setdefault('migration_id', 'm-1')
    return fakes.run_module(restore, args, fail=fail)


def runc_conf_path(engine):
    return engine.runc_conf_path


def ours(engine, name='it-web'):
    inspect = engine.container(name)
    return inspect and inspect['Config']['Labels'].get('mtd.migration.id') == 'm-1'


# ---------------------------------------------------------------------------------------------------
# state=started

def test_started_restores_from_the_checkpoint(model, bundle):
    total = _bundle.read_manifest(bundle)['bytes']
    result = run(model, bundle=bundle, source_host='lab-1', health_cmd=['cat', '/state/counter.log'])
    assert result['changed'] is True
    c = model.container('it-web')
    assert result['container']['id'] == c['Id'] and result['container']['state'] == 'running'
    assert result['container']['image'] == fakes.IMAGE_DIGEST_REF
    assert model.started_from_checkpoint == [('it-web', 'm-1')]
    assert c['Config']['Labels'] == {'mtd.units': '5', 'mtd.migration.id': 'm-1', 'mtd.migration.from': 'lab-1',
                                     'mtd.migration.source_id': SOURCE_ID}
    assert c['HostConfig']['Mounts'] == [{'Type': 'volume', 'Source': 'it-web-vol', 'Target': '/vol',
                                          'ReadOnly': False}]
    # the writable layer and the volume are back
    upper = c['GraphDriver']['Data']['UpperDir']
    assert open(os.path.join(upper, 'state', 'counter.log')).read() == '1\n2\n3\n'
    assert open(os.path.join(model.volumes['it-web-vol']['Mountpoint'], 'counter.log')).read() == '1\n2\n'
    assert model.volumes['it-web-vol']['Labels']['mtd.migration.id'] == 'm-1'
    assert result['bytes_verified'] == total
    assert set(result['timings']) == {'verify', 'create', 'pull', 'layer', 'volumes', 'place', 'restore', 'health'}
    # the engine got only runc's descriptors.json; CRIU was told where the images are through runc.conf,
    # which existed only during the start
    assert result['place_method'] == 'direct'
    assert result['image_delivery'] == {'used': 'direct', 'reason': 'image_delivery=auto'}
    [(conf, cp_files)] = model.seen_at_start
    assert cp_files == ['descriptors.json']
    assert conf.splitlines()[0] == '# mtd.containers: temporary CRIU options for the engine\'s runc'
    assert conf.splitlines()[2:] == ['images-dir %s/criu-images' % bundle, 'work-dir %s/criu-work' % bundle]
    assert not os.path.exists(runc_conf_path(model))
    assert not os.path.exists(_bundle.checkpoint_dir(model.info['DockerRootDir'], c['Id'], 'm-1'))
    assert not os.path.exists(bundle)
    assert model.execs and list(model.execs.values())[0]['Cmd'] == ['cat', '/state/counter.log']
    assert [x for x in model.state_changes() if not x.startswith('POST /exec/')] == [
        'POST /volumes/create', 'POST /containers/create', 'POST /containers/%s/start' % c['Id'],
        'POST /containers/%s/exec' % c['Id']]


def test_started_with_image_delivery_engine(model, bundle):
    result = run(model, bundle=bundle, image_delivery='engine', keep_bundle=True)
    assert result['place_method'] == 'rename'
    assert result['image_delivery'] == {'used': 'engine', 'reason': 'image_delivery=engine'}
    [(conf, cp_files)] = model.seen_at_start
    assert conf is None
    assert cp_files == ['core-1.img', 'descriptors.json', 'pages-1.img']


def test_auto_leaves_the_hosts_own_runc_conf_alone(model, bundle, runc_conf):
    os.makedirs(os.path.dirname(runc_conf))
    with open(runc_conf, 'w') as handle:
        handle.write('tcp-established\n')
    result = run(model, bundle=bundle)
    assert result['image_delivery'] == {'used': 'engine',
                                        'reason': 'image_delivery=auto and the host has its own %s' % runc_conf}
    assert model.seen_at_start == [('tcp-established\n', ['core-1.img', 'descriptors.json', 'pages-1.img'])]
    assert open(runc_conf).read() == 'tcp-established\n'


def test_direct_refuses_the_hosts_own_runc_conf_and_changes_nothing(model, bundle, runc_conf):
    os.makedirs(os.path.dirname(runc_conf))
    with open(runc_conf, 'w') as handle:
        handle.write('tcp-established\n')
    result = run(model, fail=True, bundle=bundle, image_delivery='direct')
    assert result['msg'] == ('image_delivery=direct needs %s, which this host keeps for its own CRIU options; '
                             'use image_delivery=engine or auto.' % runc_conf)
    assert model.state_changes() == [] and os.path.isfile(os.path.join(bundle, 'manifest.json'))
    assert open(runc_conf).read() == 'tcp-established\n'


def test_a_leftover_runc_conf_of_ours_is_replaced(model, bundle, runc_conf):
    os.makedirs(os.path.dirname(runc_conf))
    with open(runc_conf, 'w') as handle:
        handle.write("# mtd.containers: temporary CRIU options for the engine's runc\nimages-dir /gone\n")
    result = run(model, bundle=bundle)
    assert result['image_delivery']['used'] == 'direct'
    [(conf, dummy)] = model.seen_at_start
    assert 'images-dir %s/criu-images' % bundle in conf and '/gone' not in conf
    assert not os.path.exists(runc_conf)


def test_started_keep_bundle_then_idempotent(model, bundle):
    first = run(model, bundle=bundle, keep_bundle=True)
    assert first['changed'] is True
    cid = first['container']['id']
    assert os.path.isfile(os.path.join(bundle, 'manifest.json'))
    assert os.listdir(_bundle.checkpoint_dir(model.info['DockerRootDir'], cid, 'm-1')) != []
    del model.requests[:]
    second = run(model, bundle=bundle)
    assert second['changed'] is False and second['container']['id'] == cid
    assert model.state_changes() == []


def test_started_again_after_the_bundle_was_deleted(model, bundle):
    first = run(model, bundle=bundle)
    del model.requests[:]
    # the container of this migration already runs: nothing to do, even without the bundle
    second = run(model, bundle=bundle, name='it-web')
    assert second['changed'] is False
    assert second['container']['state'] == 'running' and second['container']['id'] == first['container']['id']
    assert model.state_changes() == []
    third = run(model, bundle=bundle, config=CAPTURED)
    assert third['changed'] is False
    # without a name the module cannot know which container to look at
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'].startswith('Cannot read the checkpoint manifest %s/manifest.json' % bundle)


def test_started_in_check_mode(model, bundle):
    result = run(model, bundle=bundle, _ansible_check_mode=True)
    assert result['changed'] is True
    assert result['bytes_verified'] == _bundle.read_manifest(bundle)['bytes']
    assert model.state_changes() == []
    assert model.container('it-web') is None and 'it-web-vol' not in model.volumes
    assert os.path.isdir(os.path.join(bundle, 'criu'))


def test_started_pulls_the_image_by_digest(model, bundle):
    model.images.clear()
    result = run(model, bundle=bundle)
    assert result['changed'] is True
    pull = [r for r in model.requests if r['path'] == '/images/create'][0]
    assert pull['query'] == {'fromImage': [fakes.REGISTRY + '/mtd/busybox'], 'tag': [fakes.DIGEST]}


def test_started_on_a_prepared_standby(model, bundle):
    prepared = run(model, state='prepared', config=CAPTURED, source_host='lab-1')
    assert prepared['changed'] is True and prepared['container']['state'] == 'created'
    result = run(model, bundle=bundle)
    assert result['changed'] is True
    assert result['container']['id'] == prepared['container']['id']
    assert [c for c in model.calls() if c == 'POST /containers/create'] == ['POST /containers/create']


# ---------------------------------------------------------------------------------------------------
# Refusals

@pytest.mark.parametrize('state', ['started', 'prepared'])
def test_name_clash_with_a_container_that_is_not_ours(model, bundle, state):
    other = model.add_container('it-web', labels={'app': 'someone else'})
    result = run(model, fail=True, state=state, bundle=bundle, config=CAPTURED)
    assert result['msg'] == 'A container named it-web already exists on this host and is not part of migration m-1.'
    assert model.state_changes() == []
    assert model.status(other['Id']) == 'running' and not ours(model)
    assert os.path.isdir(os.path.join(bundle, 'criu'))


def test_name_clash_with_a_container_of_another_migration(model, bundle):
    model.add_container('it-web', labels={'mtd.migration.id': 'm-0'})
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'] == 'A container named it-web already exists on this host and is not part of migration m-1.'
    assert model.state_changes() == []


def test_volume_clash(model, bundle):
    model.add_volume('it-web-vol', labels={'owner': 'someone else'})
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'] == ('A volume named it-web-vol already exists on this host and does not belong to migration '
                             'm-1: it was not made by a migration (no mtd.migration.id label) - another workload\'s '
                             'data, or the container\'s own volume kept when it left this host '
                             '(migrate_keep_source_volumes or migrate_keep_source). Refusing to overwrite it: check '
                             'its content, then remove it (docker volume rm it-web-vol) and run again.')
    assert model.state_changes() == []


@pytest.mark.parametrize('state', ['started', 'prepared'])
def test_volume_left_by_an_earlier_migration_is_refused_by_name(model, bundle, state):
    """A return trip that finds the volume an earlier hop of the same container left here (a crash, or a
    copy kept on purpose): refused, naming that migration, before anything is created or extracted."""
    model.add_volume('it-web-vol', labels={'mtd.migration.id': 'm-0', 'mtd.migration.from': 'lab-2',
                                           'mtd.migration.source_id': 'cd' * 32})
    marker = os.path.join(model.volumes['it-web-vol']['Mountpoint'], 'old.txt')
    with open(marker, 'w') as f:
        f.write('kept')
    result = run(model, fail=True, state=state, bundle=bundle, config=CAPTURED)
    assert result['msg'].startswith('A volume named it-web-vol already exists on this host and does not belong to '
                                    'migration m-1: it was left by the earlier migration m-0 (which came from lab-2, '
                                    'container cdcdcdcdcdcd)'), result['msg']
    assert 'docker volume rm it-web-vol, or mtd.containers.restore with migration_id m-0' in result['msg']
    assert result['volume_labels']['mtd.migration.id'] == 'm-0'
    assert model.state_changes() == [] and not ours(model)
    with open(marker) as f:
        assert f.read() == 'kept'


def test_volume_of_this_migration_used_by_another_container_is_refused(model, bundle):
    model.add_volume('it-web-vol', labels={'mtd.migration.id': 'm-1'})
    model.add_container('holder', volumes=['it-web-vol'])
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'] == ('A volume named it-web-vol made by migration m-1 is used by container holder, which is '
                             'not part of it; refusing to overwrite it.')
    assert model.state_changes() == []


def test_volume_of_this_migration_is_reused(model, bundle):
    """A retry of the same migration (its standby was removed, its volume not yet): the volume is its own."""
    model.add_volume('it-web-vol', labels={'mtd.migration.id': 'm-1'})
    result = run(model, bundle=bundle)
    assert result['container']['state'] == 'running'


def test_a_stopped_container_of_this_migration(model, bundle):
    c = model.add_container('it-web', status='exited', labels={'mtd.migration.id': 'm-1'})
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'] == ('Container it-web of migration m-1 exists in state exited; remove it (state=absent) '
                             'and retry.')
    assert model.state_changes() == [] and model.status(c['Id']) == 'exited'


def test_corrupted_bundle(model, bundle):
    pages = os.path.join(bundle, 'criu', 'pages-1.img')
    data = bytearray(open(pages, 'rb').read())
    data[4000] ^= 0x10
    open(pages, 'wb').write(bytes(data))
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'] == ('Checkpoint file criu/pages-1.img does not match its sha256 in the manifest: the '
                             'checkpoint was corrupted.')
    assert result['file'] == 'criu/pages-1.img'
    assert model.state_changes() == [] and model.container('it-web') is None


def test_a_stamped_bundle_is_not_hashed_twice_unless_asked(model, bundle):
    # the receiver stamps a bundle whose stream passed its HMAC check; auto then checks sizes only
    _transfer.write_stamp(bundle, bundle, {'integrity': 'hmac-sha256', 'bytes_received': 1})
    pages = os.path.join(bundle, 'criu', 'pages-1.img')
    data = bytearray(open(pages, 'rb').read())
    data[4000] ^= 0x10   # corrupted on this host's disk after the arrival (same size)
    open(pages, 'wb').write(bytes(data))
    result = run(model, fail=True, bundle=bundle, verify='sha256')
    assert result['msg'].startswith('Checkpoint file criu/pages-1.img does not match its sha256')
    assert model.state_changes() == []
    result = run(model, bundle=bundle, keep_bundle=True)
    assert result['verified'] == 'sizes (the content passed the HMAC-SHA256 check of the stream on arrival)'
    assert result['bytes_verified'] == _bundle.read_manifest(bundle)['bytes']


def test_an_unstamped_bundle_is_hashed(model, bundle):
    result = run(model, bundle=bundle)
    assert result['verified'] == 'sha256'


def test_a_stamp_file_inside_the_bundle_does_not_skip_the_hashes(model, bundle):
    """The stamp lives beside the bundle; whatever the bundle itself holds under the old name is data."""
    with open(os.path.join(bundle, 'received.json'), 'w') as handle:
        handle.write('{"integrity": "hmac-sha256"}')
    with open(os.path.join(bundle, 'criu', 'pages-1.img'), 'r+b') as handle:
        handle.seek(4000)
        byte = handle.read(1)
        handle.seek(4000)
        handle.write(bytes([byte[0] ^ 0x10]))
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'].startswith('Checkpoint file criu/pages-1.img does not match its sha256')


def test_stamped_bundle_missing_a_file(model, bundle):
    _transfer.write_stamp(bundle, bundle, {'integrity': 'hmac-sha256'})
    os.unlink(os.path.join(bundle, 'rootfs-diff.tar'))
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'] == 'Checkpoint file rootfs-diff.tar is missing.'
    assert model.state_changes() == []


def test_bundle_missing_a_file(model, bundle):
    os.unlink(os.path.join(bundle, 'volumes', 'it-web-vol.tar'))
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'] == 'Checkpoint file volumes/it-web-vol.tar is missing.'
    assert model.state_changes() == []


def test_no_image_digest(model, tmp_path):
    captured = dict(CAPTURED, image_digest_ref=None)
    bundle = make_bundle(tmp_path, captured)
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'] == 'The captured configuration names no image digest; cannot restore byte-identical files.'
    assert model.state_changes() == []


def test_engine_without_experimental(model, bundle):
    model.info['ExperimentalBuild'] = False
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'] == ('The Docker engine on this host does not run with experimental features on; restoring '
                             'from a checkpoint needs "experimental": true in daemon.json.')
    assert model.state_changes() == []


def test_bind_source_missing_on_this_host(model, tmp_path):
    captured = copy.deepcopy(CAPTURED)
    captured['mounts'].append({'type': 'bind', 'name': None, 'source': '/nonexistent/conf', 'destination': '/conf',
                               'driver': None, 'rw': False, 'mode': 'ro'})
    result = run(model, fail=True, state='prepared', config=captured, policy={'bind_prefixes': ['/nonexistent']})
    assert result['msg'] == 'Bind-mounted path /nonexistent/conf of the container does not exist on this host.'
    assert model.state_changes() == []


def test_prepared_needs_config(model):
    result = run(model, fail=True, state='prepared')
    # required_if in the argument spec (the message is Ansible's)
    assert result['msg'] == 'state is prepared but all of the following are missing: config'


def test_bad_migration_id(model):
    result = run(model, fail=True, migration_id='../m')
    assert result['msg'] == 'migration_id \'../m\' must be 1-128 characters of letters, digits, "_", "." or "-".'


def test_pull_failure(model, bundle):
    model.images.clear()
    captured = dict(CAPTURED, image_digest_ref=fakes.REGISTRY + '/mtd/busybox@sha256:' + '0' * 64)
    result = run(model, fail=True, state='prepared', config=captured)
    assert result['msg'].startswith('Pulling %s failed: manifest for ' % captured['image_digest_ref'])
    assert model.container('it-web') is None


def test_no_bundle_after_waiting(model, tmp_path):
    result = run(model, fail=True, bundle=str(tmp_path / 'never'), wait_for_bundle=1)
    assert result['msg'].startswith('Cannot read the checkpoint manifest %s/never/manifest.json' % tmp_path)
    assert 0.9 <= result['timings']['wait'] < 3


# ---------------------------------------------------------------------------------------------------
# Failures of the start itself

def test_criu_failure_on_start(model, bundle):
    model.start_error = 'failed to restore: criu failed: type RESTORE errno 0'
    result = run(model, fail=True, bundle=bundle)
    cid = model.container('it-web')['Id']
    assert result['msg'] == ('Starting it-web from its checkpoint failed: POST /containers/%s/start failed with 500 '
                             'Internal Server Error: failed to restore: criu failed: type RESTORE errno 0' % cid)
    assert result['criu_log'] == '(00.01) Error (criu/cr-restore.c:1) restore failed in the fake'
    assert 'restore' in result['timings']
    assert not os.path.exists(model.runc_conf_path)


def test_health_command_never_passes(model, bundle):
    model.exec_exit_code = 1
    result = run(model, fail=True, bundle=bundle, health_cmd=['cat', '/nonexistent'], health_timeout=1)
    assert result['msg'] == ('Container it-web did not become healthy within 1 s: health command exited 1: ran cat '
                             '/nonexistent\n')


# ---------------------------------------------------------------------------------------------------
# state=prepared and state=absent

def test_prepared_then_idempotent_and_check_mode(model):
    check = run(model, state='prepared', config=CAPTURED, _ansible_check_mode=True)
    assert check['changed'] is True and 'container' not in check
    assert model.state_changes() == []
    assert 'transfer_cert' not in check
    first = run(model, state='prepared', config=CAPTURED)
    assert first['changed'] is True and first['container']['state'] == 'created'
    assert first['transfer_cert'].startswith('-----BEGIN CERTIFICATE-----') and 'lazy_cert' not in first
    assert ours(model)
    del model.requests[:]
    second = run(model, state='prepared', config=CAPTURED)
    assert second['changed'] is False and second['container']['id'] == first['container']['id']
    assert second['transfer_cert'] == first['transfer_cert']
    assert model.state_changes() == []


def test_absent_with_nothing_there(model):
    result = run(model, state='absent', name='it-web')
    assert result['changed'] is False and result['removed'] == []
    assert model.state_changes() == []


def test_absent_removes_only_what_this_migration_made(model, bundle):
    run(model, state='prepared', config=CAPTURED)
    other = model.add_container('it-other', labels={'mtd.migration.id': 'm-2'})
    model.add_volume('it-keep', labels={})
    del model.requests[:]
    check = run(model, state='absent', bundle=bundle, _ansible_check_mode=True)
    assert check['changed'] is True
    assert check['removed'] == ['it-web', 'volume:it-web-vol', 'bundle:' + bundle]
    assert model.state_changes() == [] and ours(model) and os.path.isdir(bundle)
    first = run(model, state='absent', bundle=bundle)
    assert first['removed'] == check['removed']
    assert model.container('it-web') is None and 'it-web-vol' not in model.volumes and not os.path.exists(bundle)
    assert model.status(other['Id']) == 'running' and 'it-keep' in model.volumes
    second = run(model, state='absent', bundle=bundle)
    assert second['changed'] is False


def test_absent_leaves_a_container_of_the_same_name_that_is_not_ours(model):
    c = model.add_container('it-web')
    result = run(model, state='absent', name='it-web')
    assert result['changed'] is False
    assert model.status(c['Id']) == 'running'


# ---------------------------------------------------------------------------------------------------
# A restore launched before the freeze, called off by a rollback

@pytest.mark.parametrize('waiting', ['wait_for_bundle', 'receive'])
def test_a_waiting_restore_is_called_off(model, tmp_path, waiting):
    bundle = str(tmp_path / 'mtd-migrations' / 'm-1')
    os.makedirs(os.path.dirname(bundle))
    how = ({'wait_for_bundle': 20} if waiting == 'wait_for_bundle'
           else {'receive': {'address': '127.0.0.1', 'port': free_port(), 'token': TOKEN, 'encryption': 'none'}})
    timer = threading.Timer(0.3, lambda: open(bundle + '.cancel', 'w').close())
    timer.start()
    started = time.time()
    result = run(model, fail=True, bundle=bundle, name='it-web', **how)
    timer.join()
    assert 0.25 < time.time() - started < 3
    assert result['msg'] == ('The restore of migration m-1 was called off (%s.cancel exists: the migration is being '
                             'rolled back); nothing was started.' % bundle)
    assert model.state_changes() == []


def test_absent_waits_for_a_running_restore_then_clears(model, bundle):
    seen = {}
    holder = open(bundle + '.lock', 'a')
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX)   # a restore of m-1 is running

    def finish_restore():
        seen['cancel_marker'] = os.path.exists(bundle + '.cancel')
        holder.close()

    timer = threading.Timer(0.5, finish_restore)
    timer.start()
    result = run(model, state='absent', bundle=bundle)
    timer.join()
    assert seen == {'cancel_marker': True}
    assert result['timings']['wait_restore'] >= 0.45
    assert result['removed'] == ['bundle:' + bundle]
    assert not os.path.exists(bundle + '.cancel') and not os.path.exists(bundle + '.lock')
    # and a restore after the cleanup is not called off by a stale marker
    assert run(model, fail=True, bundle=bundle)['msg'].startswith('Cannot read the checkpoint manifest')


def test_a_second_restore_of_the_same_migration_waits_its_turn(model, bundle, monkeypatch):
    monkeypatch.setattr(restore, 'LOCK_WAIT', 0.3)
    with open(bundle + '.lock', 'a') as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        result = run(model, fail=True, bundle=bundle)
    assert result['msg'] == 'Another restore of migration m-1 runs on this host (it holds %s.lock).' % bundle
    assert model.state_changes() == [] and os.path.isfile(os.path.join(bundle, 'manifest.json'))


# ---------------------------------------------------------------------------------------------------
# Where the bundle goes

@pytest.mark.parametrize('free, expected, tmpfs, reason', [
    (2 << 30, 256 << 20, True, '/dev/shm has 2048 MB free, 384 MB are needed'),
    (300 << 20, 256 << 20, False, '/dev/shm has 300 MB free, 384 MB are needed'),
    (2 << 30, 0, False, 'expected_bytes is unknown, so the room in /dev/shm cannot be judged'),
    (None, 256 << 20, False, '/dev/shm is not a writable tmpfs'),
])
def test_prepared_puts_the_bundle_in_tmpfs_when_it_fits(model, monkeypatch, free, expected, tmpfs, reason):
    monkeypatch.setattr(restore, 'tmpfs_free_bytes', lambda path: free)
    result = run(model, state='prepared', config=CAPTURED, expected_bytes=expected)
    assert result['bundle_location'] == {'tmpfs': tmpfs, 'reason': reason}
    if tmpfs:
        assert result['bundle'] == os.path.join(restore.INCOMING_TMPFS, 'm-1')
    else:
        assert result['bundle'] == os.path.join(model.info['DockerRootDir'], 'mtd-migrations', 'm-1')


def test_started_and_absent_find_a_bundle_in_tmpfs(model, tmp_path):
    incoming = os.path.join(restore.INCOMING_TMPFS, 'm-1')
    os.makedirs(restore.INCOMING_TMPFS)
    os.rename(make_bundle(tmp_path / 'x'), incoming)
    os.makedirs(incoming + '.part')   # a half-received copy as well
    result = run(model, name='it-web', keep_bundle=True)
    assert result['bundle'] == incoming and result['container']['state'] == 'running'
    cleaned = run(model, state='absent', name='it-web')
    assert cleaned['removed'] == ['it-web', 'volume:it-web-vol', 'bundle:' + incoming, 'bundle:' + incoming + '.part']
    assert os.listdir(restore.INCOMING_TMPFS) == []


def test_prepared_creates_the_default_place_private(model, monkeypatch):
    monkeypatch.setattr(restore, 'tmpfs_free_bytes', lambda path: 2 << 30)
    result = run(model, state='prepared', config=CAPTURED, expected_bytes=1 << 20)
    assert result['bundle'] == os.path.join(restore.INCOMING_TMPFS, 'm-1')
    info = os.lstat(restore.INCOMING_TMPFS)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    # its missing parent too: no 0755 directory on the way to a bundle
    assert stat.S_IMODE(os.lstat(os.path.dirname(restore.INCOMING_TMPFS)).st_mode) == 0o700


@pytest.mark.parametrize('trap', ['link', 'world-writable', 'foreign'])
def test_another_users_incoming_directory_is_avoided(model, monkeypatch, tmp_path, trap):
    """/dev/shm/mtd-incoming made first by someone else: the bundle goes to the data root instead, the trap is
    neither written through nor chmod'ed, and state=absent does not look into it."""
    monkeypatch.setattr(restore, 'tmpfs_free_bytes', lambda path: 2 << 30)
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    os.makedirs(os.path.dirname(restore.INCOMING_TMPFS))
    if trap == 'link':
        os.symlink(str(elsewhere), restore.INCOMING_TMPFS)
    else:
        os.mkdir(restore.INCOMING_TMPFS)
        os.chmod(restore.INCOMING_TMPFS, 0o777)
        if trap == 'foreign':
            if os.geteuid() != 0:
                pytest.skip('needs root to give a directory to another user')
            os.chmod(restore.INCOMING_TMPFS, 0o755)
            os.chown(restore.INCOMING_TMPFS, 65534, 65534)
    before = os.lstat(restore.INCOMING_TMPFS)
    result = run(model, state='prepared', config=CAPTURED, expected_bytes=1 << 20)
    assert result['bundle'] == os.path.join(model.info['DockerRootDir'], 'mtd-migrations', 'm-1')
    assert result['bundle_location']['tmpfs'] is False
    assert 'another user may have made it' in result['bundle_location']['reason']
    assert any('The bundle goes to' in w for w in result['_warnings'])
    run(model, state='absent', name='it-web')
    after = os.lstat(restore.INCOMING_TMPFS)
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)
    assert os.listdir(str(elsewhere)) == []
    if trap != 'link':
        assert os.listdir(restore.INCOMING_TMPFS) == []


def test_started_refuses_a_bundle_in_a_world_writable_directory(model, tmp_path, bundle):
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(str(shared), 0o777)
    moved = str(shared / 'm-1')
    os.rename(bundle, moved)
    result = run(model, fail=True, bundle=moved)
    assert result['msg'].startswith('The directory of bundle (%s) is writable by other users (mode 0777); ' % shared)
    assert model.state_changes() == [] and sorted(os.listdir(str(shared))) == ['m-1']
    assert stat.S_IMODE(os.lstat(str(shared)).st_mode) == 0o777


def test_absent_where_tmpfs_cannot_exist(model, tmp_path, monkeypatch):
    blocker = tmp_path / 'not-a-dir'
    blocker.write_text('')
    monkeypatch.setattr(restore, 'INCOMING_TMPFS', str(blocker / 'mtd-incoming'))
    result = run(model, state='absent', name='it-web')
    assert result['changed'] is False and result['removed'] == []
    result = run(model, fail=True, state='absent', bundle=str(blocker / 'm-1'))
    assert result['msg'].startswith('Cannot use the bundle directory %s: ' % blocker)


# ---------------------------------------------------------------------------------------------------
# receive: the restore is the bundle's receiver (one asynchronous task on the target)

def _send_later(source_bundle, port, delay=0.3, token=TOKEN, tls=None):
    """The source's side: connect (retrying until the restore listens) and stream the bundle."""
    holder = {}

    def sender():
        time.sleep(delay)
        try:
            holder['result'] = _transfer.send(source_bundle, '127.0.0.1', port, token, compression='none',
                                              connect_timeout=10, tls=tls)
        except _transfer.TransferError as exc:
            holder['error'] = exc

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    return thread, holder


def test_started_receives_the_bundle_then_restores(model, bundle, tmp_path):
    """Mutual TLS: the target's identity from state=prepared, the source's made here; each pins the other."""
    port = free_port()
    target = str(tmp_path / 'incoming' / 'm-1')
    prepared = run(model, state='prepared', config=CAPTURED, bundle=target, source_host='lab-1')
    source_cert = _channel.ensure_identity(str(tmp_path / 'source.tls'), 'unit-source')[0]
    tls = _channel.load_identity(str(tmp_path / 'source.tls'), prepared['transfer_cert'], 'the test')
    thread, holder = _send_later(bundle, port, tls=tls)
    result = run(model, bundle=target, source_host='lab-1',
                 receive={'address': '127.0.0.1', 'port': port, 'token': TOKEN, 'timeout': 20, 'peer_cert': source_cert})
    thread.join(20)
    assert 'result' in holder, holder.get('error')
    assert holder['result']['receiver']['ok'] is True and holder['result']['encryption'] == 'tls'
    assert result['received']['encryption'] == 'tls' and result['received']['tls']['version'] == 'TLSv1.3'
    assert result['verified'] == 'sizes (the content passed the TLS check of the stream on arrival)'
    assert not [w for w in result['_warnings'] if 'unencrypted' in w]
    # the stamp and the identity went with the bundle
    assert not os.path.exists(target + '.received') and not os.path.exists(target + '.tls')
    assert result['changed'] is True and result['container']['state'] == 'running'
    assert model.started_from_checkpoint == [('it-web', 'm-1')]
    # it arrived through the checked stream: sizes only, no second hash pass
    assert result['verified'].startswith('sizes')
    assert result['received']['bytes_raw'] == holder['result']['bytes_raw']
    assert result['received']['peer'] == '127.0.0.1'
    assert result['timings']['wait'] >= 0.2 and result['timings']['receive'] >= 0
    assert TOKEN not in repr(result)
    assert not os.path.exists(target)


def test_a_wrong_token_is_refused_and_nothing_starts(model, bundle, tmp_path):
    port = free_port()
    target = str(tmp_path / 'incoming' / 'm-1')
    os.makedirs(os.path.dirname(target))
    thread, holder = _send_later(bundle, port, token='w' * 24)
    result = run(model, fail=True, bundle=target,
                 receive={'address': '127.0.0.1', 'port': port, 'token': TOKEN, 'timeout': 3, 'encryption': 'none'})
    thread.join(20)
    assert 'did not prove the transfer token' in str(holder.get('error'))
    assert result['msg'] == ('Receiving the checkpoint failed: no sender delivered a bundle within 3 s (1 connection(s) '
                             'did not authenticate).')
    assert not os.path.exists(target) and model.state_changes() == []


def test_receive_in_check_mode_only_probes_the_port(model, tmp_path):
    target = str(tmp_path / 'incoming' / 'm-1')
    result = run(model, bundle=target, _ansible_check_mode=True,
                 receive={'address': '127.0.0.1', 'port': free_port(), 'token': TOKEN, 'encryption': 'none'})
    assert result['changed'] is True and model.state_changes() == []
    busy = socket.socket()
    busy.bind(('127.0.0.1', 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        result = run(model, fail=True, bundle=target, _ansible_check_mode=True,
                     receive={'address': '127.0.0.1', 'port': port, 'token': TOKEN, 'encryption': 'none'})
    finally:
        busy.close()
    assert result['msg'].startswith('Cannot listen on 127.0.0.1:%d: ' % port)


@pytest.mark.parametrize('receive_args, extra, message', [
    ({'token': 'short'}, {}, 'receive.token must be at least 16 characters long.'),
    ({'port': 70000}, {}, 'receive.port must be between 1 and 65535, got 70000.'),
    ({'timeout': 0}, {}, 'receive.timeout and receive.auth_timeout must be positive.'),
    ({}, {'wait_for_bundle': 5}, 'receive and wait_for_bundle exclude each other (the receiver does the waiting).'),
    ({'encryption': 'tls'}, {}, "receive.peer_cert (the other end's certificate, PEM) is required with encryption tls; "
                                'set encryption none only on a trusted network.'),
    ({'auth_timeout': 0}, {}, 'receive.timeout and receive.auth_timeout must be positive.'),
])
def test_receive_bad_input(model, tmp_path, receive_args, extra, message):
    opts = dict({'address': '127.0.0.1', 'port': 4000, 'token': TOKEN, 'encryption': 'none'}, **receive_args)
    result = run(model, fail=True, bundle=str(tmp_path / 'm-1'), receive=opts, **extra)
    assert result['msg'] == message
    assert model.state_changes() == []


# ---------------------------------------------------------------------------------------------------
# lazy_pages (post-copy): the target's identity, and what a post-copy bundle needs

def test_prepared_with_lazy_pages_makes_one_identity(model, tmp_path):
    bundle = str(tmp_path / 'incoming' / 'm-1')
    check = run(model, state='prepared', config=CAPTURED, bundle=bundle, lazy_pages=True, _ansible_check_mode=True)
    assert 'lazy_cert' not in check and not os.path.exists(bundle + '.tls')
    first = run(model, state='prepared', config=CAPTURED, bundle=bundle, lazy_pages=True)
    assert first['lazy_cert'].startswith('-----BEGIN CERTIFICATE-----')
    assert oct(os.stat(bundle + '.tls').st_mode & 0o777) == '0o700'
    assert oct(os.stat(bundle + '.tls/key.pem').st_mode & 0o777) == '0o600'
    # the same migration keeps its identity (the source may already pin it)
    again = run(model, state='prepared', config=CAPTURED, bundle=bundle, lazy_pages=True)
    assert again['lazy_cert'] == first['lazy_cert']
    # and the cleanup removes it
    run(model, state='absent', bundle=bundle, name='it-web')
    assert not os.path.exists(bundle + '.tls')


def _lazy_bundle(tmp_path):
    bundle = make_bundle(tmp_path)
    _bundle.write_manifest(bundle, CAPTURED, extra={
        'checkpoint': 'm-1', 'method': 'runc',
        'lazy_pages': {'address': '127.0.0.1', 'port': 4000, 'source_cert': _bundle.LAZY_CERT}})
    return bundle


def test_a_lazy_bundle_without_the_identities_is_refused_before_the_start(model, tmp_path):
    bundle = _lazy_bundle(tmp_path)
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'].startswith('The post-copy restore needs %s/%s' % (bundle, _bundle.LAZY_CERT))
    assert model.started_from_checkpoint == [] and model.state_changes() == []


def test_a_lazy_bundle_needs_direct_image_delivery(model, tmp_path):
    bundle = _lazy_bundle(tmp_path)
    result = run(model, fail=True, bundle=bundle, image_delivery='engine')
    assert result['msg'] == ('A post-copy checkpoint needs image_delivery direct (CRIU gets its options through '
                             '%s), but image_delivery=engine.' % runc_conf_path(model))
    assert model.started_from_checkpoint == [] and model.state_changes() == []


def test_absent_ends_a_lazy_daemon_instead_of_waiting_for_its_transfer(model, tmp_path):
    import subprocess
    import sys
    bundle = str(tmp_path / 'incoming' / 'm-1')
    os.makedirs(bundle + '.tls')
    daemon = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', 'lazy-pages'])
    other = subprocess.Popen(['sleep', '600'])       # a reused number must not be killed
    try:
        with open(os.path.join(bundle + '.tls', restore.LAZY_PID), 'w') as handle:
            handle.write('%d\n' % daemon.pid)
        result = run(model, state='absent', bundle=bundle, name='it-web')
        assert result['lazy_daemon_ended'] is True
        assert daemon.wait(10) == -9
        assert not os.path.exists(bundle + '.tls')
        assert restore.end_lazy_daemon(str(tmp_path / 'none.tls')) is False
        os.makedirs(str(tmp_path / 'other.tls'))
        with open(os.path.join(str(tmp_path / 'other.tls'), restore.LAZY_PID), 'w') as handle:
            handle.write('%d\n' % other.pid)
        assert restore.end_lazy_daemon(str(tmp_path / 'other.tls')) is False and other.poll() is None
    finally:
        for proc in (daemon, other):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------------
# the target trusts only the controller (issue 11)

FORGED = dict(copy.deepcopy(CAPTURED), host_config={'NetworkMode': 'none', 'Privileged': True, 'PidMode': 'host',
                                                    'CapAdd': ['ALL'], 'Binds': ['/:/host']})


def rewrite_manifest(bundle, **changes):
    path = os.path.join(bundle, 'manifest.json')
    with open(path) as f:
        manifest = json.load(f)
    manifest.update(changes)
    with open(path, 'w') as f:
        json.dump(manifest, f)


def test_the_controllers_config_is_used_and_the_manifests_copy_ignored(model, tmp_path):
    bundle = make_bundle(tmp_path, captured=FORGED)
    result = run(model, bundle=bundle, config=CAPTURED)
    c = model.container('it-web')
    assert result['container']['state'] == 'running'
    assert not c['HostConfig'].get('Privileged') and not c['HostConfig'].get('PidMode')
    assert '/:/host' not in (c['HostConfig'].get('Binds') or []) and not c['HostConfig'].get('CapAdd')
    assert not [w for w in result['_warnings'] if 'manifest' in w]


def test_without_config_the_manifests_copy_passes_the_policy_or_nothing_happens(model, tmp_path):
    bundle = make_bundle(tmp_path, captured=FORGED)
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'].startswith('The configuration of it-web is refused by the migration policy on the target '
                                    '(nothing was created or started): Privileged')
    for needle in ('PidMode host', 'capabilities ALL', 'bind mount of /'):
        assert needle in result['msg']
    assert model.container('it-web') is None and model.state_changes() == []
    # a clean manifest without config: restored, with a warning that the source's copy was used
    clean = make_bundle(tmp_path / 'clean')
    ok = run(model, bundle=clean)
    assert ok['container']['state'] == 'running'
    assert any('configuration in the bundle\'s manifest' in w for w in ok['_warnings'])


def test_prepared_refuses_a_config_beyond_the_policy(model):
    forged = copy.deepcopy(CAPTURED)
    forged['host_config']['Devices'] = [{'PathOnHost': '/dev/mem', 'PathInContainer': '/dev/mem'}]
    result = run(model, fail=True, state='prepared', config=forged)
    assert 'device /dev/mem' in result['msg'] and result['violations'] == [
        'device /dev/mem of the host (policy.devices lists the host devices allowed)']
    assert model.state_changes() == []


@pytest.mark.parametrize('changes, needle', [
    ({'checkpoint': '../../../../etc'}, 'The checkpoint name'),
    ({'files': [{'path': '../outside', 'size': 0, 'sha256': '0' * 64}]}, 'leaves or bends its directory'),
    ({'files': [{'path': 'criu//core-1.img', 'size': 4, 'sha256': '0' * 64}]}, 'leaves or bends'),
    ({'files': 'all of them'}, 'its "files" is not a list'),
    ({'files': [{'path': 'criu/core-1.img', 'size': '4', 'sha256': '0' * 64}]}, 'is not a non-negative integer'),
    ({'container': ['x']}, 'its "container" is not an object'),
    ({'lazy_pages': {'address': '127.0.0.1; rm -rf /', 'port': 1}}, 'no valid address'),
    ({'format': True}, 'its format is True'),
])
def test_a_malformed_manifest_is_refused_with_a_clear_message(model, bundle, changes, needle):
    rewrite_manifest(bundle, **changes)
    result = run(model, fail=True, bundle=bundle, config=CAPTURED)
    assert 'is not a valid checkpoint manifest of format 1' in result['msg'] and needle in result['msg'], result['msg']
    assert 'Traceback' not in json.dumps(result)
    assert model.container('it-web') is None


def test_a_manifest_that_is_a_json_list_is_refused(model, bundle):
    with open(os.path.join(bundle, 'manifest.json'), 'w') as f:
        f.write('[1, 2]')
    result = run(model, fail=True, bundle=bundle, config=CAPTURED)
    assert result['msg'].endswith('manifest.json is not a valid checkpoint manifest of format 1: it is not a JSON '
                                  'object; the bundle is refused.')


def test_volume_ownership_is_checked_again_right_before_its_contents_are_laid_back(model, bundle):
    run(model, state='prepared', config=CAPTURED)
    model.volumes['it-web-vol']['Labels'] = {'mtd.migration.id': 'someone-else'}
    mountpoint = model.volumes['it-web-vol']['Mountpoint']
    with open(os.path.join(mountpoint, 'theirs'), 'w') as f:
        f.write('keep')
    result = run(model, fail=True, bundle=bundle, config=CAPTURED)
    assert 'Volume it-web-vol on this host does not belong to migration m-1' in result['msg']
    assert os.listdir(mountpoint) == ['theirs']
    assert model.started_from_checkpoint == []


@pytest.mark.parametrize('registry, sent', [('127.0.0.1:5000', True), ('registry.example.com', False)])
def test_registry_credentials_go_only_to_their_registry(model, registry, sent):
    model.images.clear()
    result = run(model, state='prepared', config=CAPTURED,
                 registry_auth={'registry': registry, 'username': 'u', 'password': 'secret-pw'})
    [pull] = [r for r in model.requests if r['path'] == '/images/create']
    header = pull['headers'].get('X-Registry-Auth')
    assert bool(header) == sent
    if sent:
        decoded = json.loads(base64.urlsafe_b64decode(header + '=' * (-len(header) % 4)))
        assert decoded == {'username': 'u', 'password': 'secret-pw', 'serveraddress': '127.0.0.1:5000'}
    else:
        assert any('pulled without credentials' in w for w in result['_warnings'])


@pytest.mark.parametrize('mode, needle', [(0o4755, 'setuid or setgid'), (0o644, None)])
def test_a_volume_archive_is_checked_before_anything_is_created(model, tmp_path, mode, needle):
    bundle = make_bundle(tmp_path)
    vol = tmp_path / 'evil-vol'
    vol.mkdir()
    (vol / 'sh').write_bytes(b'ELF')
    os.chmod(str(vol / 'sh'), mode)
    _bundle.tar_create(str(vol), os.path.join(bundle, 'volumes', 'it-web-vol.tar'))
    _bundle.write_manifest(bundle, CAPTURED, extra={'checkpoint': 'm-1', 'method': 'runc'})
    result = run(model, fail=bool(needle), bundle=bundle, config=CAPTURED)
    if needle:
        assert result['msg'].startswith('The contents of volume it-web-vol holds sh: a regular file with the setuid')
        assert model.container('it-web') is None and model.state_changes() == []
    else:
        assert result['container']['state'] == 'running'


# ---------------------------------------------------------------------------------------------------
# Option confine (confinement on arrival)

cgroupfs = confine_tests.cgroupfs
V1_FILES = confine_tests.V1_FILES

CONFINE = {'limits': {'memory': '48m', 'pids': 40}, 'source_usage': {'memory': 8 << 20, 'pids': 2}}


def _arrival_info(model):
    model.info.update(CgroupVersion='1', CgroupDriver='cgroupfs', SecurityOptions=['name=seccomp,profile=default'])


@pytest.fixture
def kernel_mkdir(cgroupfs, monkeypatch):
    """mkdir in the fake cgroupfs makes the interface files, as the kernel does."""
    original = cgroup_lib.Cgroup._mkdir_checked

    def mkdir(self, directory):
        original(self, directory)
        for controller, root in cgroupfs.v1_mounts.items():
            if directory.startswith(root + '/'):
                for name, value in V1_FILES[controller].items():
                    with open(os.path.join(directory, name), 'w') as handle:
                        handle.write(value)

    def write(self, filename, value):   # an interface file takes the whole value (no O_CREAT either)
        with open(filename, 'r+') as handle:
            handle.truncate()
            handle.write(str(value))
    monkeypatch.setattr(cgroup_lib.Cgroup, '_mkdir_checked', mkdir)
    monkeypatch.setattr(cgroup_lib.Cgroup, '_write', write)
    return cgroupfs


def test_prepared_confined_creates_the_standby_under_the_limited_level(model, kernel_mkdir):
    layout = kernel_mkdir
    _arrival_info(model)
    captured = copy.deepcopy(CAPTURED)
    captured['host_config']['CgroupnsMode'] = 'host'
    result = run(model, state='prepared', config=captured, confine=CONFINE)
    inspect = model.container('it-web')
    host_config, labels = inspect['HostConfig'], inspect['Config']['Labels']
    assert host_config['CgroupParent'] == '/mtd/it-web' and host_config['CgroupnsMode'] == 'host'
    assert _confine.current_confinement(inspect)['seccomp_sha256'] == _confine.desired_confinement('/mtd/it-web', False)[
        'seccomp_sha256']
    assert labels['mtd.confine.arrival'] == '/mtd/it-web' and labels['mtd.confine.cgroupns'] == 'host-as-dumped'
    memory = os.path.join(layout.v1_mounts['memory'], 'mtd', 'it-web')
    with open(os.path.join(memory, 'memory.limit_in_bytes')) as handle:
        assert int(handle.read()) == 48 << 20
    with open(os.path.join(layout.v1_mounts['pids'], 'mtd', 'it-web', 'pids.max')) as handle:
        assert handle.read().strip() == '40'
    assert result['confinement']['how'] == 'arrival' and result['confinement']['cgroup']['path'] == '/mtd/it-web'
    assert result['confinement']['cgroupns_mode'] == 'host'


@pytest.fixture
def unified(tmp_path, monkeypatch):
    """A cgroup v2 layout in tmp_path (Layout.from_host returns it) and a fake systemctl writing the slice's files."""
    layout = v2_layout(tmp_path)
    root = pathlib.Path(layout.unified)
    monkeypatch.setattr(cgroup_lib.Layout, 'from_host', staticmethod(lambda prefer='auto', mountinfo_path=None: layout))
    calls = []
    slice_dir = root / 'mtd.slice' / 'mtd-it\\x2dweb.slice'
    monkeypatch.setattr(systemd_lib, 'CmdRunner',
                        lambda binary, timeout=None: systemd_tests.FakeSystemctl(slice_dir, calls=calls))
    return slice_dir, calls


def test_prepared_confined_under_the_systemd_driver_gives_the_slice_its_limits(model, unified):
    slice_dir, calls = unified
    unit = 'mtd-it\\x2dweb.slice'
    model.info.update(CgroupVersion='2', CgroupDriver='systemd', SecurityOptions=['name=seccomp,profile=default'])
    captured = copy.deepcopy(CAPTURED)
    captured['host_config']['CgroupnsMode'] = 'private'
    result = run(model, state='prepared', config=captured, confine=CONFINE)
    inspect = model.container('it-web')
    host_config, labels = inspect['HostConfig'], inspect['Config']['Labels']
    # the parent is the slice unit (Docker's systemd driver), the limits its properties, read back from its files
    assert host_config['CgroupParent'] == unit and host_config['CgroupnsMode'] == 'private'
    assert labels['mtd.confine.arrival'] == unit and 'mtd.confine.cgroupns' not in labels
    assert calls == [['set-property', unit, 'MemoryMax=%d' % (48 << 20), 'MemorySwapMax=0', 'TasksMax=40'],
                     ['start', unit]]
    assert (slice_dir / 'memory.max').read_text().strip() == str(48 << 20)
    assert result['confinement']['cgroup'] == {'version': 2, 'path': '/mtd.slice/' + unit, 'systemd_slice': unit}
    assert result['confinement']['limits'] == {'memory': 48 << 20, 'memory_swap': 48 << 20, 'pids': 40}


def test_prepared_confined_under_the_systemd_driver_refuses_cgroup_v1(model, cgroupfs):
    model.info.update(CgroupVersion='1', CgroupDriver='systemd', SecurityOptions=['name=seccomp,profile=default'])
    captured = copy.deepcopy(CAPTURED)
    captured['host_config']['CgroupnsMode'] = 'host'
    result = run(model, fail=True, state='prepared', config=captured, confine=CONFINE)
    assert 'supports that driver on cgroup v2 only' in result['msg'] and not model.container('it-web')


@pytest.mark.parametrize('confine, captured_mode, expected', [
    (dict(CONFINE, source_usage={'memory': 8 << 20, 'pids': 41}), 'host', '41 tasks reach the pids limit 40'),
    (dict(CONFINE, source_usage={'memory': 60 << 20, 'pids': 2}), 'host', 'memory 60 MiB is at or above the limit'),
    (dict(CONFINE, cgroupns='private'), 'host', 'A private cgroup namespace cannot be given on arrival'),
])
def test_prepared_confined_refusals_change_nothing(model, cgroupfs, confine, captured_mode, expected):
    _arrival_info(model)
    captured = copy.deepcopy(CAPTURED)
    captured['host_config']['CgroupnsMode'] = captured_mode
    result = run(model, fail=True, state='prepared', config=captured, confine=confine)
    assert expected in result['msg']
    assert 'POST /containers/create' not in model.calls() and not model.container('it-web')
    assert not os.path.exists(os.path.join(cgroupfs.v1_mounts['memory'], 'mtd'))


def test_prepared_confined_refuses_a_privileged_configuration(model, cgroupfs):
    _arrival_info(model)
    captured = copy.deepcopy(CAPTURED)
    captured['host_config']['Binds'] = ['/sys/fs/cgroup:/cg:ro']
    result = run(model, fail=True, state='prepared', config=captured, confine=CONFINE,
                 policy={'bind_prefixes': ['/sys/fs/cgroup']})
    assert 'cgroup' in result['msg'] and not model.container('it-web')


def test_confine_labels_from_the_source_are_dropped(model):
    captured = copy.deepcopy(CAPTURED)
    captured['config']['Labels'].update({'mtd.confine.arrival': '/mtd/it-web', 'mtd.confine.cgroupns': 'host-as-dumped'})
    run(model, state='prepared', config=captured)
    labels = model.container('it-web')['Config']['Labels']
    assert not [k for k in labels if k.startswith('mtd.confine.')] and labels['mtd.units'] == '5'


def test_started_refuses_a_standby_prepared_without_confine(model, bundle, cgroupfs):
    _arrival_info(model)
    run(model, state='prepared', config=CAPTURED)
    result = run(model, fail=True, bundle=bundle, config=CAPTURED, confine=CONFINE)
    assert 'was not created confined under /mtd/it-web' in result['msg']
    assert model.status('it-web') == 'created'


def test_limits_spec_is_shared():
    assert restore.ARGUMENT_SPEC['confine']['options']['limits']['options'] is _confine.LIMITS_SPEC
    assert cgroup_lib.LIMIT_KEYS   # the keys the spec normalises into


@pytest.mark.parametrize('text, pid', [
    ('Name:\tsh\nNSpid:\t48213\t1\nSeccomp:\t2\n', 1),          # the container's pid namespace is the last
    ('NSpid:\t48213\n', 48213),                                # no nested namespace
    ('Name:\tsh\n', None), ('NSpid:\t\n', None), ('', None),
])
def test_namespace_pid(text, pid):
    assert restore.namespace_pid(text) == pid


# ---------------------------------------------------------------------------------------------------
# wait_detached: the result the receiver started by state=prepared detach=true left beside the bundle

def _detached_result(target, result, mode=0o600):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target + restore.RESULT_SUFFIX, 'w') as handle:
        json.dump(result, handle)
    os.chmod(target + restore.RESULT_SUFFIX, mode)


def test_wait_detached_ends_with_the_receivers_result_and_consumes_it(model, tmp_path):
    target = str(tmp_path / 'incoming' / 'm-1')
    _detached_result(target, {'changed': True, 'container': {'state': 'running'}, 'timings': {'receive': 0.2},
                              'warnings': ['the stream was not encrypted'], 'invocation': {'module_args': {}}})
    result = run(model, bundle=target, wait_detached=5)
    assert result['changed'] is True and result['container'] == {'state': 'running'}
    assert result['timings'] == {'receive': 0.2} and 'invocation' not in result
    assert result['detached']['waited_seconds'] < 1 and result['_warnings'] == ['the stream was not encrypted']
    assert not os.path.exists(target + restore.RESULT_SUFFIX) and model.state_changes() == []


def test_wait_detached_fails_with_the_receivers_failure(model, tmp_path):
    target = str(tmp_path / 'incoming' / 'm-1')
    _detached_result(target, {'failed': True, 'changed': False, 'msg': 'Receiving the checkpoint failed: cut.',
                              'criu_log': 'tail', 'timings': {'wait': 1.0}})
    result = run(model, fail=True, bundle=target, wait_detached=5)
    assert result['msg'] == 'Receiving the checkpoint failed: cut.'
    assert result['criu_log'] == 'tail' and result['timings'] == {'wait': 1.0}


def test_wait_detached_without_a_receiver_or_past_its_time(model, tmp_path):
    target = str(tmp_path / 'incoming' / 'm-1')
    os.makedirs(os.path.dirname(target))
    # nobody holds the lock and there is no result: the receiver was killed
    gone = run(model, fail=True, bundle=target, wait_detached=5)
    assert gone['msg'].startswith('The detached restore of migration m-1 ended without a result')
    # a receiver that still runs (its unfinished result file is locked) past the wait
    with open(target + '.result.part', 'w') as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        late = run(model, fail=True, bundle=target, wait_detached=1)
    # one that was killed: its unfinished result is there, unlocked
    killed = run(model, fail=True, bundle=target, wait_detached=5)
    assert late['msg'] == ('The detached restore of migration m-1 gave no result within 1 s (wait_detached); it still '
                           'holds %s.lock.' % target)
    assert killed['msg'].startswith('The detached restore of migration m-1 ended without a result')
    # the collector never makes a lock file of its own
    assert not os.path.exists(target + '.lock')


def test_a_result_others_can_read_or_write_is_not_used(model, tmp_path):
    target = str(tmp_path / 'incoming' / 'm-1')
    _detached_result(target, {'changed': True}, mode=0o644)
    result = run(model, fail=True, bundle=target, wait_detached=5)
    assert result['msg'] == '%s.result is not a private regular file of this user; its result is not used.' % target


@pytest.mark.parametrize('args, message', [
    ({'state': 'prepared', 'config': CAPTURED, 'detach': True},
     'detach starts the receiver of state=prepared: give it with state=prepared and receive.'),
    ({'detach': True, 'receive': {'address': '127.0.0.1', 'port': 4000, 'token': TOKEN, 'encryption': 'none'}},
     'detach starts the receiver of state=prepared: give it with state=prepared and receive.'),
    ({'wait_detached': 5, 'receive': {'address': '127.0.0.1', 'port': 4000, 'token': TOKEN, 'encryption': 'none'}},
     'wait_detached waits for the receiver that state=prepared with detach started: give it with state=started and '
     'without receive or wait_for_bundle.'),
])
def test_detach_and_wait_detached_misuse(model, tmp_path, args, message):
    result = run(model, fail=True, bundle=str(tmp_path / 'm-1'), **args)
    assert result['msg'] == message and model.state_changes() == []


def test_prepared_with_detach_starts_the_receiver_and_wait_detached_gets_its_result(model, bundle, tmp_path):
    """The real fork: the detached receiver (a process of its own, talking to the fake engine of this test) receives
    over mutual TLS, restores, and leaves its result; wait_detached ends with it."""
    port = free_port()
    target = str(tmp_path / 'incoming' / 'm-1')
    source_cert = _channel.ensure_identity(str(tmp_path / 'source.tls'), 'unit-source')[0]
    prepared = run(model, state='prepared', config=CAPTURED, bundle=target, source_host='lab-1', detach=True,
                   receive={'address': '127.0.0.1', 'port': port, 'token': TOKEN, 'timeout': 20, 'peer_cert': source_cert})
    assert prepared['detached'] == {'result': target + '.result', 'lock': target + '.lock'}
    # the receiver holds the migration's lock: a second restore of it is refused
    with open(target + '.lock') as probe:
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    tls = _channel.load_identity(str(tmp_path / 'source.tls'), prepared['transfer_cert'], 'the test')
    thread, holder = _send_later(bundle, port, delay=0, tls=tls)
    result = run(model, bundle=target, wait_detached=30)
    thread.join(20)
    assert 'result' in holder, holder.get('error')
    assert result['changed'] is True and result['container']['state'] == 'running'
    assert result['received']['encryption'] == 'tls' and model.started_from_checkpoint == [('it-web', 'm-1')]
    assert TOKEN not in repr(result) and not os.path.exists(target + '.result')


# ---------------------------------------------------------------------------------------------------
# A bundle made with pre-copy: the rounds' parent links are rebuilt here, direct delivery only

def _precopy_bundle(tmp_path, rounds=2, make_dirs=True):
    bundle = make_bundle(tmp_path)
    entries = []
    for k in range(1, rounds + 1):
        if make_dirs:
            os.makedirs(os.path.join(bundle, 'precopy', str(k)))
            with open(os.path.join(bundle, 'precopy', str(k), 'pages-1.img'), 'wb') as handle:
                handle.write(b'\x02' * 4096)
        entries.append({'round': k, 'kind': 'pre-dump', 'dir': 'precopy/%d' % k, 'pages': 1})
    entries.append({'round': rounds + 1, 'kind': 'final', 'dir': 'criu', 'pages': 1})
    extra = {'checkpoint': 'm-1', 'method': 'runc', 'precopy': {'used': True, 'rounds': entries}}
    _bundle.write_manifest(bundle, CAPTURED, extra=extra)
    return bundle


def test_a_precopy_bundle_is_restored_from_its_chain(model, tmp_path):
    bundle = _precopy_bundle(tmp_path)
    # a link the stream could never carry, left by a hostile source, is replaced, not followed
    os.symlink('/etc', os.path.join(bundle, 'precopy', '2', 'parent'))
    result = run(model, bundle=bundle, keep_bundle=True)
    assert result['precopy_rounds'] == 2 and result['image_delivery']['used'] == 'direct'
    assert os.readlink(os.path.join(bundle, 'criu', 'parent')) == '../precopy/2'
    assert os.readlink(os.path.join(bundle, 'precopy', '2', 'parent')) == '../1'
    assert not os.path.lexists(os.path.join(bundle, 'precopy', '1', 'parent'))
    assert model.started_from_checkpoint == [('it-web', 'm-1')]


def test_a_precopy_bundle_is_refused_with_engine_delivery_before_anything_is_created(model, tmp_path):
    bundle = _precopy_bundle(tmp_path)
    result = run(model, fail=True, bundle=bundle, image_delivery='engine')
    assert result['msg'].startswith('The checkpoint was made with 2 pre-copy rounds, whose images only '
                                    'image_delivery=direct gives CRIU (image_delivery=engine)')
    assert model.started_from_checkpoint == [] and model.state_changes() == []


def test_a_precopy_bundle_without_its_round_directories_is_refused(model, tmp_path):
    bundle = _precopy_bundle(tmp_path, make_dirs=False)
    result = run(model, fail=True, bundle=bundle)
    assert 'lacks the pre-copy round directory precopy/1' in result['msg']
    assert model.started_from_checkpoint == []


def test_a_precopy_manifest_with_a_foreign_chain_is_refused(model, tmp_path):
    bundle = make_bundle(tmp_path)
    _bundle.write_manifest(bundle, CAPTURED, extra={'checkpoint': 'm-1', 'method': 'runc', 'precopy': {
        'used': True, 'rounds': [{'kind': 'pre-dump', 'dir': '../../etc'}, {'kind': 'final', 'dir': 'criu'}]}})
    result = run(model, fail=True, bundle=bundle)
    assert result['msg'] == ('The checkpoint bundle cannot be restored: pre-copy round 1 of the manifest is not in '
                             'precopy/1.')
    assert model.started_from_checkpoint == [] and model.state_changes() == []
