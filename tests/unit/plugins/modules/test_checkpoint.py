# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""checkpoint main() against a stateful fake engine, with fake runc and criu scripts and real GNU tar."""

from __future__ import annotations

import os
import socket
import stat
import sys
import threading

import pytest
from ansible.module_utils import basic

from ansible_collections.mtd.containers.plugins.module_utils import _bundle, _channel, _transfer
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._migration import MigrationError
from ansible_collections.mtd.containers.plugins.modules import checkpoint
from ansible_collections.mtd.containers.tests.unit.plugins.modules import migration_fakes as fakes
from ansible_collections.mtd.containers.tests.unit.plugins.modules.module_harness import free_port

model = fakes.model
runc_conf = fakes.runc_conf
TOKEN = 'checkpoint-unit-token-0123'


@pytest.fixture(autouse=True)
def no_docker_host(monkeypatch, runc_conf):
    monkeypatch.delenv('DOCKER_HOST', raising=False)


@pytest.fixture
def scene(model, tmp_path):
    """A running container with a writable layer and a named volume; fake criu and runc."""
    c = model.add_container('it-web', volumes=['it-web-vol'])
    upper = c['GraphDriver']['Data']['UpperDir']
    os.makedirs(os.path.join(upper, 'state'))
    with open(os.path.join(upper, 'state', 'counter.log'), 'w') as f:
        f.write('1\n2\n3\n')
    with open(os.path.join(model.volumes['it-web-vol']['Mountpoint'], 'counter.log'), 'w') as f:
        f.write('1\n2\n')
    bins = tmp_path / 'bin'
    bins.mkdir()
    runc_root = tmp_path / 'runc-root'
    runc_root.mkdir()
    return {
        'model': model,
        'container': c,
        'dest': str(tmp_path / 'dest'),
        'bundle': str(tmp_path / 'dest' / 'm-1'),
        'criu': fakes.write_script(bins / 'criu', fakes.FAKE_CRIU),
        'runc': fakes.write_script(bins / 'runc', fakes.FAKE_RUNC),
        'runc_root': str(runc_root),
        'runc_args': str(tmp_path / 'runc-args'),
        'bins': bins,
    }


def args(scene, **extra):
    result = {'docker_host': scene['model'].url, 'container': 'it-web', 'name': 'm-1', 'dest': scene['dest'],
              'criu_path': scene['criu'], 'runc_path': scene['runc'], 'runc_root': scene['runc_root']}
    result.update(extra)
    return result


def run(scene, fail=False, **extra):
    return fakes.run_module(checkpoint, args(scene, **extra), fail=fail)


def assert_untouched(scene, status='running'):
    """Nothing was frozen, resumed, created or removed, and no bundle was written."""
    assert scene['model'].state_changes() == []
    assert scene['model'].status('it-web') == status
    assert not os.path.exists(scene['bundle'])


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# ---------------------------------------------------------------------------------------------------
# The checkpoint itself

def test_checkpoint_freezes_dumps_and_captures(scene, monkeypatch):
    monkeypatch.setenv('RUNC_ARGS', scene['runc_args'])
    cid = scene['container']['Id']
    result = run(scene)
    assert result['changed'] is True
    assert result['bundle'] == scene['bundle']
    assert result['container'] == {'id': cid, 'name': 'it-web', 'image_digest_ref': fakes.IMAGE_DIGEST_REF,
                                   'state': 'paused'}
    assert result['method'] == 'runc'
    assert result['precopy']['available'] is False and result['precopy']['used'] is False
    assert 'stop-and-copy' in result['precopy']['reason']
    assert set(result['timings']) == {'freeze', 'dump', 'rootfs', 'volumes', 'manifest', 'total'}
    assert result['config']['image_digest_ref'] == fakes.IMAGE_DIGEST_REF
    # frozen (not resumed): nothing the container writes after the dump can be lost
    assert scene['model'].state_changes() == ['POST /containers/%s/pause' % cid]
    assert scene['model'].status('it-web') == 'paused'
    # runc checkpoint through the engine's runc state, with our criu, leaving the (frozen) process alive
    runc_args = open(scene['runc_args']).read().split()
    assert runc_args[:5] == ['--root', scene['runc_root'], '--criu', scene['criu'], 'checkpoint']
    assert '--leave-running' in runc_args and runc_args[-1] == cid
    # the bundle: images, layer, volume, manifest; 0700 directories, 0600 files
    bundle = scene['bundle']
    manifest = _bundle.read_manifest(bundle)
    assert sorted(f['path'] for f in manifest['files']) == [
        'criu/core-1.img', 'criu/descriptors.json', 'criu/pages-1.img', 'dump.log', 'rootfs-diff.tar',
        'volumes/it-web-vol.tar']
    assert _bundle.verify_manifest(bundle, manifest) == result['bytes']['total'] == manifest['bytes']
    assert result['bytes']['criu'] == (len('pages of the counter process') + len('core')
                                       + len('["/dev/null","pipe:[1]","pipe:[2]"]'))
    assert result['files'] == 6
    assert not os.path.exists(os.path.join(bundle, 'work'))
    for root, _dirs, files in os.walk(bundle):
        assert mode(root) == 0o700, root
        for name in files:
            assert mode(os.path.join(root, name)) == 0o600, name
    # the layer and the volume round-trip through their tars
    out = os.path.join(str(scene['bins']), 'out')
    os.makedirs(out)
    _bundle.tar_extract(os.path.join(bundle, 'rootfs-diff.tar'), out)
    _bundle.tar_extract(os.path.join(bundle, 'volumes', 'it-web-vol.tar'), out)
    assert open(os.path.join(out, 'state', 'counter.log')).read() == '1\n2\n3\n'
    assert open(os.path.join(out, 'counter.log')).read() == '1\n2\n'


def test_a_finished_checkpoint_of_the_frozen_container_is_not_made_again(scene):
    first = run(scene)
    del scene['model'].requests[:]
    second = run(scene)
    assert second['changed'] is False
    assert second['container']['state'] == 'paused' and second['files'] == first['files']
    assert second['bytes'] == first['bytes']
    assert scene['model'].state_changes() == []


def test_leave_running_resumes_after_the_dump(scene):
    cid = scene['container']['Id']
    result = run(scene, leave_running=True)
    assert result['changed'] is True and result['container']['state'] == 'running'
    assert scene['model'].state_changes() == ['POST /containers/%s/pause' % cid, 'POST /containers/%s/unpause' % cid]
    assert scene['model'].status('it-web') == 'running'
    assert 'resume' in result['timings']


def test_check_mode_freezes_and_writes_nothing(scene):
    result = run(scene, _ansible_check_mode=True)
    assert result['changed'] is True
    assert result['container']['state'] == 'running'
    assert result['config']['name'] == 'it-web'
    assert [m['name'] for m in result['config']['mounts']] == ['it-web-vol']
    assert_untouched(scene)
    assert not os.path.exists(scene['dest'])


def test_default_name(scene):
    result = run(scene, name=None, _ansible_check_mode=True)
    assert result['bundle'] == os.path.join(scene['dest'], 'mtd-' + scene['container']['Id'][:12])


# ---------------------------------------------------------------------------------------------------
# Refusals before anything is frozen

def test_unknown_container(scene):
    result = run(scene, fail=True, container='it-nothing')
    assert result['msg'] == "No such container 'it-nothing' on this host."
    assert_untouched(scene)


@pytest.mark.parametrize('status', ['exited', 'created'])
def test_container_not_running(scene, status):
    scene['model'].add_container('it-stopped', status=status)
    result = run(scene, fail=True, container='it-stopped')
    assert result['msg'] == ('Container it-stopped is not running (status %s); only a running container can be '
                             'checkpointed.' % status)
    assert scene['model'].state_changes() == []


def test_privileged_container(scene):
    scene['model'].add_container('it-priv', privileged=True)
    result = run(scene, fail=True, container='it-priv')
    assert result['msg'].startswith('Container it-priv runs privileged; privileged containers are not migrated')
    assert scene['model'].state_changes() == []


@pytest.mark.parametrize('check_mode', [True, False])
def test_policy_refuses_before_anything_is_frozen(scene, tmp_path, check_mode):
    sock = str(tmp_path / 'engine' / 'docker.sock')
    c = scene['model'].add_container('it-sock', binds=[(sock, '/var/run/docker.sock')])
    c['HostConfig']['CapAdd'] = ['SYS_ADMIN']
    result = run(scene, fail=True, container='it-sock', _ansible_check_mode=check_mode)
    assert result['msg'].startswith('The configuration of it-sock is refused by the migration policy on the source '
                                    '(nothing was frozen): ')
    assert 'capabilities SYS_ADMIN' in result['msg'] and 'bind mount of %s' % sock in result['msg']
    assert len(result['violations']) == 2
    assert scene['model'].state_changes() == []
    # widened for exactly these two, the same container passes the check
    ok = run(scene, container='it-sock', _ansible_check_mode=True,
             policy={'capabilities': ['ALL'], 'bind_prefixes': [str(tmp_path)]})
    assert ok['changed'] and scene['model'].state_changes() == []


def test_bridge_network(scene):
    scene['model'].add_container('it-bridge', network_mode='default')
    result = run(scene, fail=True, container='it-bridge')
    assert result['msg'] == ('Container it-bridge uses network mode \'default\'; only "none" and "host" can be '
                             'migrated (CRIU cannot move a bridge-network endpoint between engines).')
    assert scene['model'].state_changes() == []


def test_image_without_registry_digest(scene):
    scene['model'].add_image(ref='it-local:1', image_id='sha256:' + '7' * 64, repo_digests=())
    scene['model'].add_container('it-local', image='it-local:1', image_id='sha256:' + '7' * 64)
    result = run(scene, fail=True, container='it-local')
    assert result['msg'] == ('The image it-local:1 of it-local has no registry digest; push it to a registry the '
                             'target host can pull from (CRIU restores only into byte-identical files).')
    assert scene['model'].state_changes() == []


def test_engine_without_experimental(scene):
    scene['model'].info['ExperimentalBuild'] = False
    result = run(scene, fail=True)
    assert result['msg'] == ('The Docker engine on this host does not run with experimental features on; '
                             'checkpoint/restore needs "experimental": true in daemon.json.')
    assert_untouched(scene)


def test_other_storage_driver(scene):
    scene['container']['GraphDriver']['Name'] = 'devicemapper'
    result = run(scene, fail=True)
    assert result['msg'] == "Storage driver 'devicemapper' is not supported; the writable layer is captured from overlay2 only."
    assert_untouched(scene)


def test_volume_with_another_driver(scene):
    scene['container']['Mounts'][0]['Driver'] = 'nfs'
    result = run(scene, fail=True)
    assert result['msg'] == 'Volume it-web-vol uses driver nfs; only local volumes are migrated.'
    assert_untouched(scene)


def test_criu_missing(scene, monkeypatch):
    real = basic.AnsibleModule.get_bin_path

    def get_bin_path(self, arg, required=False, opt_dirs=None):
        return None if arg == 'criu' else real(self, arg, required=required, opt_dirs=opt_dirs)

    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', get_bin_path)
    result = run(scene, fail=True, criu_path=None)
    assert result['msg'] == 'CRIU was not found on this host (install CRIU >= 4.1, or set criu_path).'
    assert_untouched(scene)


def test_criu_path_that_does_not_exist(scene):
    result = run(scene, fail=True, criu_path='/nonexistent/criu')
    assert result['msg'] == ('CRIU was not found on this host: criu_path /nonexistent/criu does not exist or is '
                             'not a file.')
    assert_untouched(scene)


def test_criu_check_fails(scene, tmp_path):
    result = run(scene, fail=True, criu_path=fakes.write_script(tmp_path / 'criu-broken', fakes.BROKEN_CRIU))
    assert result['msg'].startswith('"criu check" fails on this host, so no checkpoint can be made: ')
    assert 'CAP_SYS_ADMIN' in result['msg']
    assert_untouched(scene)


def test_runc_path_that_does_not_exist(scene):
    result = run(scene, fail=True, runc_path='/nonexistent/runc')
    assert result['msg'] == 'runc_path /nonexistent/runc is not an executable file.'
    assert_untouched(scene)


def test_runc_state_not_found(scene):
    result = run(scene, fail=True, runc_root=None)
    assert result['msg'].startswith('The runc state of container it-web was not found; set runc_root')
    assert_untouched(scene)


def test_dest_that_cannot_hold_a_directory(scene, tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    result = run(scene, fail=True, dest=str(blocker))
    assert result['msg'].startswith('dest (%s) is not a directory; give a directory of uid ' % blocker)
    assert scene['model'].state_changes() == [] and scene['model'].status('it-web') == 'running'


def test_bad_checkpoint_name(scene):
    result = run(scene, fail=True, name='../escape')
    assert result['msg'] == ('Checkpoint name \'../escape\' must be 1-128 characters of letters, digits, "_", "." '
                             'or "-".')
    assert_untouched(scene)


# ---------------------------------------------------------------------------------------------------
# Failures after the freeze: the container is resumed, the bundle removed

def test_dump_failure_resumes_and_returns_the_criu_log(scene, tmp_path):
    cid = scene['container']['Id']
    result = run(scene, fail=True, runc_path=fakes.write_script(tmp_path / 'runc-fails', fakes.FAILING_RUNC))
    assert result['msg'].startswith('CRIU could not dump the container (runc checkpoint rc=1): ')
    assert 'criu failed: type NOTIFY' in result['msg']
    assert 'Dumping FAILED' in result['criu_log'] and 'external socket' in result['criu_log']
    assert scene['model'].state_changes() == ['POST /containers/%s/pause' % cid, 'POST /containers/%s/unpause' % cid]
    assert scene['model'].status('it-web') == 'running'
    assert not os.path.exists(scene['bundle'])


@pytest.mark.parametrize('leftover, kept', [
    ("# mtd.containers: temporary CRIU options for the engine's runc\nimages-dir /gone\n", False),
    ('tcp-established\n', True),
])
def test_dump_never_runs_with_a_leftover_runc_conf_of_ours(scene, tmp_path, runc_conf, leftover, kept):
    # runc hands CRIU /etc/criu/runc.conf: a leftover of a killed restore would redirect the dump, an
    # operator's own file is theirs
    os.makedirs(os.path.dirname(runc_conf))
    with open(runc_conf, 'w') as handle:
        handle.write(leftover)
    seen = tmp_path / 'seen'
    spy = fakes.write_script(tmp_path / 'runc-spy', '#!/bin/sh\n{ cat "%s" 2>/dev/null || echo none; } > "%s"\n%s'
                             % (runc_conf, seen, fakes.FAKE_RUNC.split('\n', 1)[1]))
    result = run(scene, runc_path=spy)
    assert result['changed'] is True
    assert seen.read_text() == (leftover if kept else 'none\n')
    assert os.path.exists(runc_conf) is kept


def test_dump_timeout_resumes(scene, tmp_path):
    slow = fakes.write_script(tmp_path / 'runc-slow', '#!/bin/sh\nsleep 5\n')
    result = run(scene, fail=True, runc_path=slow, dump_timeout=1)
    assert 'did not finish within 1 s' in result['msg']
    assert scene['model'].status('it-web') == 'running'
    assert not os.path.exists(scene['bundle'])


def test_unreadable_layer_resumes(scene):
    scene['container']['GraphDriver']['Data']['UpperDir'] = '/nonexistent/diff'
    result = run(scene, fail=True)
    assert result['msg'] == 'The writable layer of it-web (/nonexistent/diff) is not readable on this host.'
    assert scene['model'].status('it-web') == 'running'
    assert not os.path.exists(scene['bundle'])


def plain_receiver(dest, port):
    return _transfer.start_background(lambda: _transfer.receive(dest, '127.0.0.1', port, TOKEN, 20.0, tls=None))


def test_prepared_makes_the_identity_once(scene):
    check = run(scene, state='prepared', _ansible_check_mode=True)
    assert check['changed'] is True and check['transfer_cert'] is None
    assert not os.path.exists(scene['bundle'] + '.tls')
    first = run(scene, state='prepared')
    assert first['changed'] is True and first['transfer_cert'].startswith('-----BEGIN CERTIFICATE-----')
    tls = scene['bundle'] + '.tls'
    assert stat.S_IMODE(os.stat(tls).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(tls, 'key.pem')).st_mode) == 0o600
    again = run(scene, state='prepared')
    assert again['changed'] is False and again['transfer_cert'] == first['transfer_cert']
    # nothing else happened: the container runs, no bundle
    assert scene['model'].status('it-web') == 'running' and not os.path.exists(scene['bundle'])
    assert run(scene, state='absent')['changed'] is True and not os.path.exists(tls)


def test_prepared_with_capture_is_the_check_mode_capture_and_the_identity_in_one_call(scene, tmp_path):
    plan = run(scene, _ansible_check_mode=True)
    both = run(scene, state='prepared', capture=True)
    assert both['changed'] is True and both['transfer_cert'].startswith('-----BEGIN CERTIFICATE-----')
    assert both['config'] == plan['config'] and both['precopy'] == plan['precopy']
    assert both['memory_bytes'] == plan['memory_bytes']
    # nothing frozen, no bundle; a second run changes nothing and returns the same certificate
    assert scene['model'].state_changes() == [] and not os.path.exists(scene['bundle'])
    again = run(scene, state='prepared', capture=True)
    assert again['changed'] is False and again['transfer_cert'] == both['transfer_cert']
    # without capture the result carries no configuration (the role's old two-call shape still works)
    assert 'config' not in run(scene, state='prepared')
    # a container beyond the policy is refused before its identity is made
    sock = str(tmp_path / 'engine' / 'docker.sock')
    c = scene['model'].add_container('it-sock', binds=[(sock, '/var/run/docker.sock')])
    refused = run(scene, fail=True, container='it-sock', name='m-2', state='prepared', capture=True)
    assert refused['msg'].startswith('The configuration of it-sock is refused by the migration policy')
    assert not os.path.exists(os.path.join(scene['dest'], 'm-2.tls'))
    assert c['State']['Running'] and scene['model'].state_changes() == []


def test_send_streams_the_bundle_in_the_same_task(scene, tmp_path):
    """Mutual TLS: the source's identity from state=prepared, the receiver's made here; each pins the other."""
    port = free_port()
    dest = str(tmp_path / 'received' / 'm-1')
    os.makedirs(os.path.dirname(dest))
    source_cert = run(scene, state='prepared')['transfer_cert']
    receiver_cert, dummy = _channel.ensure_identity(dest + '.tls', 'unit-receiver')
    tls = _channel.load_identity(dest + '.tls', source_cert, 'the test')
    thread, holder = _transfer.start_background(
        lambda: _transfer.receive(dest, '127.0.0.1', port, TOKEN, 20.0, tls=tls))
    result = run(scene, send={'address': '127.0.0.1', 'port': port, 'token': TOKEN, 'compression': 'gzip',
                              'peer_cert': receiver_cert})
    thread.join(20)
    assert 'result' in holder, holder.get('error')
    assert result['transfer']['encryption'] == 'tls' and result['transfer']['tls']['version'] == 'TLSv1.3'
    assert not result['_warnings']
    # the identity served this one stream
    assert not os.path.exists(scene['bundle'] + '.tls')
    assert result['transfer']['compression'] == 'gzip'
    assert result['transfer']['receiver']['ok'] is True
    assert 'send' in result['timings']
    # the stream vouches for the files (the receiver's stamp), they were not hashed inside the freeze:
    # sizes check, a sha256 check refuses them
    manifest = _bundle.read_manifest(dest)
    assert manifest['files'] and all(entry['sha256'] is None for entry in manifest['files'])
    assert _transfer.read_stamp(dest)['integrity'] == 'tls'
    assert _bundle.verify_manifest(dest, manifest, hashes=False) > 0
    with pytest.raises(MigrationError, match='has no sha256 in the manifest: the source streamed it without hashing'):
        _bundle.verify_manifest(dest, manifest)
    assert TOKEN not in repr(result)
    # once the receiver confirmed it, the source's copy of the memory is gone (the frozen container is
    # the rollback)
    assert result['bundle_removed'] is True and not os.path.exists(scene['bundle'])


def test_send_with_hashes_writes_every_sha256(scene, tmp_path):
    """send.hashes true: the sha256 of every file, taken from the bytes as they were sent, checks on arrival."""
    port = free_port()
    dest = str(tmp_path / 'received' / 'm-1')
    os.makedirs(os.path.dirname(dest))
    source_cert = run(scene, state='prepared')['transfer_cert']
    receiver_cert, dummy = _channel.ensure_identity(dest + '.tls', 'unit-receiver')
    tls = _channel.load_identity(dest + '.tls', source_cert, 'the test')
    thread, holder = _transfer.start_background(
        lambda: _transfer.receive(dest, '127.0.0.1', port, TOKEN, 20.0, tls=tls))
    run(scene, send={'address': '127.0.0.1', 'port': port, 'token': TOKEN, 'compression': 'none',
                     'peer_cert': receiver_cert, 'hashes': True})
    thread.join(20)
    assert 'result' in holder, holder.get('error')
    manifest = _bundle.read_manifest(dest)
    assert manifest['files'] and all(len(entry['sha256']) == 64 for entry in manifest['files'])
    assert _bundle.verify_manifest(dest, manifest) > 0


def test_send_without_an_identity_fails_before_the_freeze(scene):
    receiver_cert = _channel.ensure_identity(scene['bundle'] + '-peer.tls', 'unit-receiver')[0]
    result = run(scene, fail=True, send={'address': '127.0.0.1', 'port': 1, 'token': TOKEN, 'peer_cert': receiver_cert})
    assert result['msg'].startswith('No checkpoint was made, the container was not frozen: this host has no TLS '
                                    'identity for this migration in %s.tls (checkpoint with state=prepared makes it'
                                    % scene['bundle']), result['msg']
    assert scene['model'].status('it-web') == 'running'


def test_send_to_a_squatter_fails_before_the_freeze(scene):
    """Something that is not the receiver holds the port: the TLS handshake fails on the pinned
    certificate, nothing is frozen, nothing is sent."""
    receiver_cert = _channel.ensure_identity(scene['bundle'] + '-peer.tls', 'unit-receiver')[0]
    run(scene, state='prepared')
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    got = bytearray()

    def squat():
        conn, dummy = server.accept()
        conn.settimeout(5)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                got.extend(data)
        except OSError:
            pass
        conn.close()

    thread = threading.Thread(target=squat, daemon=True)
    thread.start()
    result = run(scene, fail=True, send={'address': '127.0.0.1', 'port': server.getsockname()[1], 'token': TOKEN,
                                         'peer_cert': receiver_cert, 'auth_timeout': 1})
    thread.join(10)
    server.close()
    assert result['msg'].startswith('No checkpoint was made, the container was not frozen: the peer on 127.0.0.1:'), result['msg']
    assert "it is not this migration's receiver" in result['msg']
    assert scene['model'].status('it-web') == 'running' and not os.path.exists(scene['bundle'])
    assert TOKEN.encode() not in got and len(got) < 2048


def test_plaintext_send_warns(scene, tmp_path):
    port = free_port()
    dest = str(tmp_path / 'received' / 'm-1')
    os.makedirs(os.path.dirname(dest))
    thread, holder = plain_receiver(dest, port)
    result = run(scene, send={'address': '127.0.0.1', 'port': port, 'token': TOKEN, 'encryption': 'none'})
    thread.join(20)
    assert 'result' in holder, holder.get('error')
    assert result['transfer']['encryption'] == 'none'
    assert any('travels unencrypted' in w for w in result['_warnings']), result['_warnings']


def test_send_can_keep_the_bundle(scene, tmp_path):
    port = free_port()
    dest = str(tmp_path / 'received' / 'm-1')
    os.makedirs(os.path.dirname(dest))
    thread, holder = plain_receiver(dest, port)
    result = run(scene, send={'address': '127.0.0.1', 'port': port, 'token': TOKEN, 'encryption': 'none', 'keep': True})
    thread.join(20)
    assert 'result' in holder, holder.get('error')
    assert 'bundle_removed' not in result
    assert _bundle.verify_manifest(scene['bundle'], _bundle.read_manifest(scene['bundle']), hashes=False) > 0


def test_send_without_receiver_fails_before_the_freeze(scene):
    port = free_port()
    result = run(scene, fail=True, send={'address': '127.0.0.1', 'port': port, 'token': TOKEN, 'encryption': 'none', 'connect_timeout': 1})
    assert result['msg'].startswith('No checkpoint was made, the container was not frozen: no receiver answered on '
                                    '127.0.0.1:%d within 1 s' % port)
    # the channel is opened before the freeze: nothing happened to the container, nothing was written
    assert scene['model'].status('it-web') == 'running'
    assert not os.path.exists(scene['bundle'])


def _receiver_that_drops_after_the_handshake(port):
    """Accept one sender, let it authenticate, then close: a transfer channel cut after the freeze."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(('127.0.0.1', port))
    server.listen(1)

    def serve():
        conn, dummy = server.accept()
        _channel.server_handshake(conn, TOKEN, None)
        conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_send_cut_after_the_freeze_fails_and_leaves_the_container_frozen(scene):
    port = free_port()
    thread = _receiver_that_drops_after_the_handshake(port)
    result = run(scene, fail=True, send={'address': '127.0.0.1', 'port': port, 'token': TOKEN, 'encryption': 'none', 'connect_timeout': 5})
    thread.join(10)
    assert result['msg'].startswith('Sending the checkpoint failed: '), result['msg']
    # documented: the container stays frozen for the caller's rollback (container_state running)
    assert scene['model'].status('it-web') == 'paused'
    # but the process memory does not stay behind
    assert result['msg'].endswith('; the bundle was removed.') and result['bundle_removed'] is True
    assert os.listdir(scene['dest']) == []


def test_send_with_a_short_token(scene):
    result = run(scene, fail=True, send={'address': '127.0.0.1', 'port': 1, 'token': 'short'})
    assert result['msg'] == 'send.token must be at least 16 characters long.'


# ---------------------------------------------------------------------------------------------------
# state=absent

def test_absent_deletes_the_bundle_once(scene):
    run(scene)
    assert os.path.isdir(scene['bundle'])
    check = run(scene, state='absent', _ansible_check_mode=True)
    assert check['changed'] is True and os.path.isdir(scene['bundle'])
    first = run(scene, state='absent')
    assert first['changed'] is True and not os.path.exists(scene['bundle'])
    second = run(scene, state='absent')
    assert second['changed'] is False
    # the container is not touched by state=absent
    assert scene['model'].status('it-web') == 'paused'


def test_absent_of_a_removed_container_needs_the_name(scene):
    result = run(scene, fail=True, state='absent', container='it-gone', name=None)
    assert result['msg'] == "Give name: the container 'it-gone' is gone, so the default name cannot be derived."
    assert run(scene, state='absent', container='it-gone')['changed'] is False


# ---------------------------------------------------------------------------------------------------
# lazy_pages (post-copy): input checks before anything happens, and the end of a waiting page server

PEER_CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'


@pytest.mark.parametrize('extra, message', [
    # required_by in the argument spec (the message is Ansible's)
    ({'send': None}, "missing parameter(s) required by 'lazy_pages': send"),
    ({'leave_running': True},
     'lazy_pages and leave_running exclude each other (the pages are served from the frozen container).'),
    ({'lazy_pages': {'address': '127.0.0.1', 'port': 0, 'peer_cert': PEER_CERT}},
     'lazy_pages.port must be between 1 and 65535, got 0.'),
    ({'lazy_pages': {'address': '127.0.0.1', 'port': 4000, 'peer_cert': 'not a cert'}},
     'lazy_pages.peer_cert is not a PEM certificate.'),
])
def test_lazy_pages_bad_input_changes_nothing(scene, extra, message):
    args = {'send': {'address': '127.0.0.1', 'port': 1, 'token': TOKEN, 'encryption': 'none'},
            'lazy_pages': {'address': '127.0.0.1', 'port': 4000, 'peer_cert': PEER_CERT}}
    args.update(extra)
    result = run(scene, fail=True, **args)
    assert result['msg'] == message
    assert_untouched(scene)


def test_lazy_pages_on_a_host_that_cannot_serve_them(scene, monkeypatch):
    monkeypatch.setattr(checkpoint, 'lazy_pages_blocker', lambda: 'fs.pipe-max-size is 1048576 and ...')
    result = run(scene, fail=True, send={'address': '127.0.0.1', 'port': 1, 'token': TOKEN, 'encryption': 'none'},
                 lazy_pages={'address': '127.0.0.1', 'port': 4000, 'peer_cert': PEER_CERT})
    assert result['msg'] == 'This host cannot serve lazy pages: fs.pipe-max-size is 1048576 and ....'
    assert_untouched(scene)


def test_absent_ends_a_waiting_page_server_after_freezing_the_container(scene, monkeypatch):
    import subprocess
    lazy_dir = scene['bundle'] + '.lazy'
    os.makedirs(lazy_dir)
    # a page server that waits for ever, leading its own process group (as the detached runc does)
    server = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', 'checkpoint', '--lazy-pages'],
                              start_new_session=True)
    reaper = threading.Thread(target=server.wait, daemon=True)   # init reaps the real, detached one
    reaper.start()
    with open(os.path.join(lazy_dir, 'runc.pid'), 'w') as handle:
        handle.write('%d\n' % server.pid)
    scene['container']['State']['Pid'] = 4242
    events = []
    monkeypatch.setattr(checkpoint, 'freeze_cgroup_of_pid',
                        lambda pid: events.append(('freeze', pid, server.poll())) or '/fake/freezer.state')
    result = run(scene, state='absent')
    reaper.join(10)
    assert result['changed'] is True and result['page_server'] == 'stopped'
    # the container's tasks were frozen while the page server still held them, then it was ended
    assert events == [('freeze', 4242, None)]
    assert server.returncode == -9
    assert not os.path.exists(lazy_dir)
    assert scene['model'].status('it-web') == 'running'   # absent never resumes or removes the container


def test_absent_leaves_a_process_that_reused_the_page_servers_number_alone(scene, monkeypatch):
    import subprocess
    lazy_dir = scene['bundle'] + '.lazy'
    os.makedirs(lazy_dir)
    other = subprocess.Popen(['sleep', '600'], start_new_session=True)
    try:
        with open(os.path.join(lazy_dir, 'runc.pid'), 'w') as handle:
            handle.write('%d\n' % other.pid)
        monkeypatch.setattr(checkpoint, 'freeze_cgroup_of_pid', lambda pid: pytest.fail('froze the container'))
        result = run(scene, state='absent')
        assert result['page_server'] == 'finished' and other.poll() is None
        assert not os.path.exists(lazy_dir)
    finally:
        other.kill()
        other.wait()


def test_absent_after_a_page_server_that_finished(scene):
    lazy_dir = scene['bundle'] + '.lazy'
    os.makedirs(lazy_dir)
    with open(os.path.join(lazy_dir, 'runc.pid'), 'w') as handle:
        handle.write('999999999\n')
    result = run(scene, state='absent')
    assert result['changed'] is True and result['page_server'] == 'finished'
    assert not os.path.exists(lazy_dir)
    assert run(scene, state='absent')['changed'] is False


def test_a_lazy_dump_that_never_gets_ready_resumes_the_container(scene, monkeypatch):
    """The fake runc writes its images and exits without ever reporting a ready page server."""
    monkeypatch.setattr(checkpoint, 'lazy_pages_blocker', lambda: None)
    monkeypatch.setenv('RUNC_ARGS', scene['runc_args'])
    port = free_port()
    thread, holder = plain_receiver(str(scene['bundle']) + '-recv', port)
    result = run(scene, fail=True, send={'address': '127.0.0.1', 'port': port, 'token': TOKEN, 'encryption': 'none'},
                 lazy_pages={'address': '127.0.0.1', 'port': 4000, 'peer_cert': PEER_CERT, 'ready_timeout': 5})
    thread.join(20)
    assert result['msg'].startswith("CRIU's lazy dump did not get ready (runc exited with rc 0)"), result['msg']
    # the fake runc saw the post-copy options
    runc_args = open(scene['runc_args']).read()
    assert '--lazy-pages' in runc_args and '--page-server 127.0.0.1:4000' in runc_args and '--status-fd' in runc_args
    # frozen, then resumed; nothing of the attempt is left
    assert scene['model'].status('it-web') == 'running'
    assert not os.path.exists(scene['bundle']) and not os.path.exists(scene['bundle'] + '.lazy')


class _RollbackWorker:
    """The two calls the rollback makes on the worker, recorded; ending the page server fails."""

    def __init__(self):
        self.inspected = {'Id': 'c' * 64}
        self.calls = []

    def end_page_server(self, lazy_dir, inspected):
        self.calls.append('end_page_server')
        raise OSError('the page server would not die')

    def resume(self, cid):
        self.calls.append('resume')


def test_rollback_resumes_the_container_even_when_a_cleanup_before_it_fails(tmp_path):
    bundle, lazy = tmp_path / 'm-1', tmp_path / 'm-1.lazy'
    bundle.mkdir()
    lazy.mkdir()
    worker = _RollbackWorker()
    with pytest.raises(MtdError) as info:
        with checkpoint.Rollback(worker, str(bundle), None) as undo:
            undo.frozen = True
            undo.lazy_dir = str(lazy)
            raise MtdError('the dump failed')
    assert worker.calls == ['end_page_server', 'resume']
    assert not bundle.exists() and not lazy.exists()
    assert info.value.details['rollback_errors'] == ['end_page_server: the page server would not die']


# ---------------------------------------------------------------------------------------------------
# The default place for bundles: made private by the module, another user's avoided

@pytest.fixture
def shm(monkeypatch, tmp_path):
    """A stand-in for /dev/shm (never the machine's) that counts as a tmpfs."""
    place = tmp_path / 'shm' / 'mtd-migrations'
    monkeypatch.setattr(checkpoint, 'SOURCE_TMPFS', str(place))
    monkeypatch.setattr(checkpoint, 'tmpfs_free_bytes', lambda path: 1 << 30)
    return place


def test_default_place_is_created_private_with_its_parents(scene, shm):
    result = run(scene, dest=None)
    assert result['bundle'] == str(shm / 'm-1')
    assert result['bundle_location'] == {'tmpfs': True, 'reason': '%s is a tmpfs' % shm.parent}
    for path in (shm, shm.parent, shm / 'm-1'):
        info = os.lstat(str(path))
        assert mode(str(path)) == 0o700 and info.st_uid == os.geteuid(), path
    assert run(scene, dest=None, state='absent')['changed'] is True
    assert os.listdir(str(shm)) == []


@pytest.mark.parametrize('trap', ['link', 'world-writable'])
def test_another_users_default_place_is_avoided_and_never_written_through(scene, shm, tmp_path, trap):
    bait = tmp_path / 'bait'
    bait.mkdir()
    os.chmod(str(bait), 0o777)
    shm.parent.mkdir()
    if trap == 'link':
        os.symlink(str(bait), str(shm))
        reason = '%s is a symbolic link (another user may have made it), so it is not used' % shm
    else:
        shm.mkdir()
        os.chmod(str(shm), 0o777)
        reason = '%s is writable by other users (mode 0777) (another user may have made it), so it is not used' % shm
    before = os.lstat(str(shm))
    result = run(scene, dest=None)
    data_root = scene['model'].info['DockerRootDir']
    assert result['bundle'] == os.path.join(data_root, 'mtd-migrations', 'm-1')
    assert result['bundle_location'] == {'tmpfs': False, 'reason': reason}
    assert any(reason in w for w in result['_warnings'])
    assert mode(os.path.join(data_root, 'mtd-migrations')) == 0o700
    absent = run(scene, dest=None, state='absent')
    assert absent['changed'] is True and absent['bundle'] == result['bundle']
    assert not os.path.exists(result['bundle'])
    assert os.listdir(str(bait)) == [] and (os.lstat(str(shm)).st_mode, os.lstat(str(shm)).st_uid) == (
        before.st_mode, before.st_uid)


def test_given_dest_that_others_can_write_is_refused_before_the_freeze(scene, tmp_path):
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(str(shared), 0o777)
    result = run(scene, fail=True, dest=str(shared))
    assert result['msg'].startswith('dest (%s) is writable by other users (mode 0777); ' % shared)
    assert_untouched(scene)
    assert os.listdir(str(shared)) == [] and mode(str(shared)) == 0o777
    # a sticky one such as /tmp is fine, and stays as it is
    os.chmod(str(shared), 0o1777)
    result = run(scene, dest=str(shared))
    assert result['bundle'] == str(shared / 'm-1') and mode(str(shared)) == 0o1777


# seccomp_precheck (confinement on arrival): before anything is frozen, in check mode too

def _with_pid(scene):
    scene['container']['State']['Pid'] = 4242


def test_seccomp_precheck_reports_what_the_target_will_extend(scene, monkeypatch):
    _with_pid(scene)
    statuses = {7: 'Seccomp:\t2\nSeccomp_filters:\t1\n', 8: 'Seccomp:\t0\nSeccomp_filters:\t0\n'}
    monkeypatch.setattr(checkpoint, 'task_statuses', lambda pid: statuses)
    result = run(scene, seccomp_precheck=True, _ansible_check_mode=True)
    assert result['seccomp_precheck'] == {'criu_version': '4.1.1', 'threads': 2, 'filtered': 1, 'unfiltered': 1,
                                          'machine': os.uname().machine}
    assert_untouched(scene)


@pytest.mark.parametrize('criu, statuses, expected', [
    (fakes.FAKE_CRIU.replace('Version: 4.1.1', 'Version: 9.0'), {7: 'Seccomp:\t0\n'},
     'CRIU 9.0.0 writes an image format this collection does not know'),
    (fakes.FAKE_CRIU, {7: 'Seccomp:\t1\n'}, 'Thread 7 is in seccomp strict mode'),
])
@pytest.mark.parametrize('check_mode', [True, False])
def test_seccomp_precheck_refuses_before_the_freeze(scene, monkeypatch, tmp_path, criu, statuses, expected,
                                                    check_mode):
    _with_pid(scene)
    monkeypatch.setattr(checkpoint, 'task_statuses', lambda pid: statuses)
    result = run(scene, fail=True, seccomp_precheck=True, _ansible_check_mode=check_mode,
                 criu_path=fakes.write_script(tmp_path / 'criu-other', criu))
    assert expected in result['msg']
    assert_untouched(scene)
    assert not os.path.exists(scene['bundle'])


def test_seccomp_precheck_without_a_process_refuses(scene):
    result = run(scene, fail=True, seccomp_precheck=True, _ansible_check_mode=True)
    assert 'names no process of container it-web' in result['msg']


# ---------------------------------------------------------------------------------------------------
# Pre-copy: a CRIU that tracks dirty pages, a runc whose every dump writes the next prepared stats-dump

DIRTY_CRIU = r"""#!/bin/sh
case "$*" in
  --version) echo "Version: 4.1.1" ;;
  check) echo "Looks good." ;;
  "check --feature mem_dirty_track") echo "mem_dirty_track is supported" ;;
  *) exit 1 ;;
esac
"""

# runc checkpoint [--pre-dump] [--parent-path P] ...: CRIU's parent link and the next stats-dump of $STATS_DIR
STATS_RUNC = r"""#!/bin/sh
echo "$*" >> "$RUNC_ARGS"
images=; work=; parent=; pre=
while [ $# -gt 0 ]; do
  case "$1" in
    --image-path) images=$2; shift ;;
    --work-path) work=$2; shift ;;
    --parent-path) parent=$2; shift ;;
    --pre-dump) pre=1 ;;
  esac
  shift
done
n=$(cat "$STATS_DIR/next"); echo $((n + 1)) > "$STATS_DIR/next"
[ -e "$STATS_DIR/fail-$n" ] && { echo "(00.1) Error (criu/page-xfer.c:342): page-xfer: Hole not found in parent" > "$work/dump.log"; exit 1; }
[ -n "$parent" ] && ln -s "$parent" "$images/parent"
cp "$STATS_DIR/$n" "$work/stats-dump"
echo "(00.000100) Dumping finished successfully" > "$work/dump.log"
printf 'pages' > "$images/pages-1.img"
[ -z "$pre" ] && printf 'core' > "$images/core-1.img" && printf '["/dev/null","pipe:[1]","pipe:[2]"]' > "$images/descriptors.json"
exit 0
"""


def _stats_image(pages, frozen_us):
    def varint(value):
        out = b''
        while True:
            byte = value & 0x7f
            value >>= 7
            out += bytes([byte | (0x80 if value else 0)])
            if not value:
                return out
    dump = b'\x10' + varint(frozen_us) + b'\x38' + varint(pages)          # fields 2 and 7
    entry = b'\x0a' + varint(len(dump)) + dump                              # stats_entry.dump
    return bytes.fromhex('4059105506330957') + len(entry).to_bytes(4, 'little') + entry


@pytest.fixture
def precopy_scene(scene, tmp_path, monkeypatch):
    stats = tmp_path / 'stats'
    stats.mkdir()
    (stats / 'next').write_text('1\n')
    # the VM's rounds: 16400, 1030, 518 pages (decide stops after round 3: diverging), final dump 1027
    for index, pages in enumerate([16400, 1030, 518, 1027], 1):
        (stats / str(index)).write_bytes(_stats_image(pages, 1000 * index))
    scene['criu'] = fakes.write_script(scene['bins'] / 'criu-dirty', DIRTY_CRIU)
    scene['runc'] = fakes.write_script(scene['bins'] / 'runc-stats', STATS_RUNC)
    scene['stats'] = stats
    monkeypatch.setenv('STATS_DIR', str(stats))
    monkeypatch.setenv('RUNC_ARGS', scene['runc_args'])
    return scene


def test_precopy_rounds_then_the_final_dump_with_the_last_round_as_parent(precopy_scene):
    scene = precopy_scene
    # rule fixed: exactly 3 rounds whatever the (wall-clock) durations; the predictive rule's decisions on these
    # pages are worked out in test_precopy.py
    result = run(scene, precopy={'mode': 'auto', 'rule': 'fixed', 'max_rounds': 3})
    pc = result['precopy']
    assert pc['used'] and pc['available'] and pc['rule'] == 'fixed'
    assert pc['stop'] == {'code': 'max_rounds', 'reason': 'max rounds: 3 rounds done, cap 3'}
    assert [(e['round'], e['kind'], e['dir'], e['pages'], e['decision']) for e in pc['rounds']] == [
        (1, 'pre-dump', 'precopy/1', 16400, 'fixed'), (2, 'pre-dump', 'precopy/2', 1030, 'fixed'),
        (3, 'pre-dump', 'precopy/3', 518, 'max_rounds'), (4, 'final', 'criu', 1027, None)]
    assert [e['frozen_ms'] for e in pc['rounds']] == [1.0, 2.0, 3.0, 4.0]
    assert all(e['duration'] > 0 for e in pc['rounds'])
    assert pc['final']['pages'] == 1027 and pc['final']['frozen_ms'] == 4.0
    calls = open(scene['runc_args']).read().splitlines()
    assert len(calls) == 4
    assert '--pre-dump' in calls[0] and '--parent-path' not in calls[0]
    assert '--pre-dump --parent-path ../1' in calls[1] and '--pre-dump --parent-path ../2' in calls[2]
    assert '--leave-running --parent-path ../precopy/3' in calls[3]
    bundle = scene['bundle']
    assert os.readlink(os.path.join(bundle, 'criu', 'parent')) == '../precopy/3'
    assert os.readlink(os.path.join(bundle, 'precopy', '3', 'parent')) == '../2'
    assert not os.path.exists(os.path.join(bundle, 'work'))
    # the rounds' images are in the manifest (hashed, sent, verified); the links are not files of it
    files = [entry['path'] for entry in _bundle.read_manifest(bundle)['files']]
    assert 'precopy/1/pages-1.img' in files and 'precopy/3/pages-1.img' in files
    assert not any(path.endswith('parent') for path in files)
    assert _bundle.read_manifest(bundle)['precopy']['rounds'][-1]['kind'] == 'final'
    assert scene['model'].status('it-web') == 'paused'


def test_precopy_off_or_untracked_is_the_single_dump(precopy_scene):
    result = run(precopy_scene)
    assert not result['precopy']['used'] and 'precopy.mode is off' in result['precopy']['reason']
    assert result['precopy']['final']['pages'] == 16400 and 'rounds' not in result['precopy']
    assert len(open(precopy_scene['runc_args']).read().splitlines()) == 1


def test_a_failed_pre_dump_round_falls_back_to_the_single_dump(precopy_scene):
    scene = precopy_scene
    (scene['stats'] / 'fail-2').write_text('')
    result = run(scene, precopy={'mode': 'auto'})
    pc = result['precopy']
    assert not pc['used'] and 'pre-dump round 2 failed' in pc['reason'] and pc['rounds'] == []
    assert any('Pre-copy was given up' in warning for warning in result['_warnings'])
    calls = open(scene['runc_args']).read().splitlines()
    assert len(calls) == 3 and '--parent-path' not in calls[2]
    assert not os.path.exists(os.path.join(scene['bundle'], 'precopy'))
    assert pc['final']['pages'] == 518


def test_precopy_check_mode_reports_and_runs_nothing(precopy_scene):
    result = fakes.run_module(checkpoint, dict(args(precopy_scene), precopy={'mode': 'auto'}, _ansible_check_mode=True))
    assert result['precopy']['used'] and 'rounds' not in result['precopy']
    assert not os.path.exists(precopy_scene['runc_args'])
    assert_untouched(precopy_scene)
