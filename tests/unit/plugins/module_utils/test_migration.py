# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_migration: the captured configuration (pure, worked data) and the bundle helpers on a tmp dir."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _bundle
from ansible_collections.mtd.containers.plugins.module_utils import _cmd
from ansible_collections.mtd.containers.plugins.module_utils import _container
from ansible_collections.mtd.containers.plugins.module_utils import _criu
from ansible_collections.mtd.containers.plugins.module_utils import _files
from ansible_collections.mtd.containers.plugins.module_utils import _migration as mig
from ansible_collections.mtd.containers.plugins.module_utils._cmd import CommandError
from ansible_collections.mtd.containers.plugins.module_utils._migration import MigrationError

REG = '127.0.0.1:5000'
DIGEST_A = 'sha256:' + 'a' * 64
DIGEST_B = 'sha256:' + 'b' * 64
CID = '0123456789ab' + 'c' * 52


# ---------------------------------------------------------------------------------------------------
# the image by digest (_container.repo_digest_for, used by capture_config)

@pytest.mark.parametrize('config_image, repo_digests, expected', [
    # a tag after the registry port: the tag is cut, the port is kept
    (REG + '/mtd/busybox:latest', [REG + '/mtd/busybox@' + DIGEST_A], REG + '/mtd/busybox@' + DIGEST_A),
    # no tag at all: the colon of the registry port must not be taken for a tag
    (REG + '/mtd/busybox', ['other/busybox@' + DIGEST_B, REG + '/mtd/busybox@' + DIGEST_A],
     REG + '/mtd/busybox@' + DIGEST_A),
    # port and tag, several repositories: the one the container names wins, whatever the order
    (REG + '/mtd/app:1.2', [REG + '/mtd/base@' + DIGEST_B, REG + '/mtd/app@' + DIGEST_A],
     REG + '/mtd/app@' + DIGEST_A),
    # created by digest: the repository before '@' is matched
    (REG + '/mtd/app@' + DIGEST_A, [REG + '/mtd/other@' + DIGEST_B, REG + '/mtd/app@' + DIGEST_A],
     REG + '/mtd/app@' + DIGEST_A),
    # a Docker Hub short name
    ('busybox:1.36', ['busybox@' + DIGEST_B], 'busybox@' + DIGEST_B),
    # only other repositories carry a digest of this image: the first one (same bytes, another name)
    (REG + '/mtd/app:1', ['mirror.example:443/app@' + DIGEST_B, REG + '/x/app@' + DIGEST_A],
     'mirror.example:443/app@' + DIGEST_B),
    # created from an image id
    ('sha256:' + 'e' * 64, [REG + '/mtd/app@' + DIGEST_A], REG + '/mtd/app@' + DIGEST_A),
    # never pushed nor pulled: no digest
    (REG + '/mtd/app:1', [], None),
    (REG + '/mtd/app:1', None, None),
    (None, None, None),
])
def test_image_reference_by_digest(config_image, repo_digests, expected):
    # the image by digest that capture_config records: the one shared reference logic of _container
    assert _container.repo_digest_for(config_image, repo_digests) == expected


# ---------------------------------------------------------------------------------------------------
# capture_config, create_body

def inspect_data(**host_config):
    """A container as ``GET /containers/{id}/json`` shows it: network none, a volume and two binds."""
    hc = {
        'NetworkMode': 'none',
        'Binds': ['/srv/conf:/etc/app:ro', '/srv/logs:/logs', 'web-data:/data'],
        'Tmpfs': {'/run': 'rw,size=16m'},
        'Memory': 33554432,
        'NanoCpus': 250000000,
        'RestartPolicy': {'Name': 'unless-stopped', 'MaximumRetryCount': 0},
        'CapAdd': ['NET_BIND_SERVICE'],
        'CapDrop': None,
        'SecurityOpt': [],
        'CgroupParent': '',
        'Privileged': False,
        'Devices': [],
        'Runtime': 'runc',
        'PortBindings': {},
    }
    hc.update(host_config)
    return {
        'Id': CID,
        'Name': '/web-1',
        'Image': 'sha256:' + 'f' * 64,
        'State': {'Status': 'running', 'Running': True, 'Paused': False},
        'Config': {
            'Hostname': CID[:12],
            'Domainname': '',
            'User': 'app',
            'Env': ['PATH=/usr/bin:/bin', 'MODE=prod'],
            'Cmd': ['sh', '-c', 'run'],
            'Entrypoint': None,
            'WorkingDir': '/app',
            'Labels': {'mtd.units': '5', 'team': 'web'},
            'Image': REG + '/mtd/web:2',
            'StopSignal': 'SIGTERM',
            'Healthcheck': None,
            'Volumes': {'/data': {}},
            'Tty': False,
            'OnBuild': None,
        },
        'HostConfig': hc,
        'Mounts': [
            {'Type': 'volume', 'Name': 'web-data', 'Source': '/var/lib/docker/volumes/web-data/_data',
             'Destination': '/data', 'Driver': 'local', 'Mode': 'z', 'RW': True},
            {'Type': 'bind', 'Source': '/srv/conf', 'Destination': '/etc/app', 'Mode': 'ro', 'RW': False},
            {'Type': 'bind', 'Source': '/srv/logs', 'Destination': '/logs', 'Mode': '', 'RW': True},
        ],
        'GraphDriver': {'Name': 'overlay2', 'Data': {'UpperDir': '/var/lib/docker/overlay2/x/diff'}},
    }


IMAGE = {'Id': 'sha256:' + 'f' * 64, 'RepoDigests': [REG + '/mtd/web@' + DIGEST_A]}


def test_capture_config_keeps_what_recreates_the_container():
    captured = mig.capture_config(inspect_data(), IMAGE)
    assert captured['name'] == 'web-1'
    assert captured['id'] == CID
    assert captured['image'] == REG + '/mtd/web:2'
    assert captured['image_id'] == 'sha256:' + 'f' * 64
    assert captured['image_digest_ref'] == REG + '/mtd/web@' + DIGEST_A
    assert captured['graph_driver'] == 'overlay2'
    assert captured['mounts'] == [
        {'type': 'volume', 'name': 'web-data', 'source': '/var/lib/docker/volumes/web-data/_data',
         'destination': '/data', 'driver': 'local', 'rw': True, 'mode': 'z', 'propagation': ''},
        {'type': 'bind', 'name': None, 'source': '/srv/conf', 'destination': '/etc/app', 'driver': None,
         'rw': False, 'mode': 'ro', 'propagation': ''},
        {'type': 'bind', 'name': None, 'source': '/srv/logs', 'destination': '/logs', 'driver': None,
         'rw': True, 'mode': '', 'propagation': ''},
    ]
    assert captured['config'] == {
        'Hostname': CID[:12], 'Domainname': '', 'User': 'app', 'Env': ['PATH=/usr/bin:/bin', 'MODE=prod'],
        'Cmd': ['sh', '-c', 'run'], 'WorkingDir': '/app', 'Labels': {'mtd.units': '5', 'team': 'web'},
        'StopSignal': 'SIGTERM', 'Volumes': {'/data': {}}, 'Tty': False,
    }
    # None, '' and [] are dropped from HostConfig; keys outside the carried list (PortBindings) too
    assert captured['host_config'] == {
        'NetworkMode': 'none',
        'Binds': ['/srv/conf:/etc/app:ro', '/srv/logs:/logs', 'web-data:/data'],
        'Tmpfs': {'/run': 'rw,size=16m'},
        'Memory': 33554432,
        'NanoCpus': 250000000,
        'RestartPolicy': {'Name': 'unless-stopped', 'MaximumRetryCount': 0},
        'CapAdd': ['NET_BIND_SERVICE'],
        'Runtime': 'runc',
    }
    # the result must survive the trip through a module's JSON result
    assert json.loads(json.dumps(captured)) == captured


def test_capture_config_host_network_and_no_digest():
    captured = mig.capture_config(inspect_data(NetworkMode='host'), {'RepoDigests': []})
    assert captured['host_config']['NetworkMode'] == 'host'
    assert captured['image_digest_ref'] is None
    assert mig.capture_config(inspect_data(), None)['image_digest_ref'] is None


def test_capture_config_refuses_privileged():
    with pytest.raises(MigrationError) as info:
        mig.capture_config(inspect_data(Privileged=True), IMAGE)
    assert 'web-1 runs privileged' in str(info.value)
    assert 'capabilities' in str(info.value)


@pytest.mark.parametrize('mode', ['default', 'bridge', 'my-net', 'container:abc', None, ''])
def test_capture_config_refuses_bridge_networks(mode):
    with pytest.raises(MigrationError) as info:
        mig.capture_config(inspect_data(NetworkMode=mode), IMAGE)
    msg = str(info.value)
    assert msg.startswith('Container web-1 uses network mode %r' % (mode or 'default'))
    assert 'only "none" and "host" can be migrated' in msg
    assert 'bridge-network endpoint' in msg


def test_mount_selectors():
    captured = mig.capture_config(inspect_data(), IMAGE)
    assert [m['name'] for m in mig.named_volumes(captured)] == ['web-data']
    assert [m['destination'] for m in mig.bind_mounts(captured)] == ['/etc/app', '/logs']
    assert mig.named_volumes({}) == [] and mig.bind_mounts({'mounts': None}) == []


def test_create_body():
    captured = mig.capture_config(inspect_data(), IMAGE)
    labels = mig.migration_labels('m-42', 'lab-1', CID)
    body = mig.create_body(captured, labels=labels)
    # pulled and created by digest, never by the mutable tag
    assert body['Image'] == REG + '/mtd/web@' + DIGEST_A
    assert body['Labels'] == {'mtd.units': '5', 'team': 'web', 'mtd.migration.id': 'm-42',
                              'mtd.migration.from': 'lab-1', 'mtd.migration.source_id': CID}
    hc = body['HostConfig']
    assert hc['Mounts'] == [{'Type': 'volume', 'Source': 'web-data', 'Target': '/data', 'ReadOnly': False}]
    # binds keep their host paths and :ro; the volume is no longer a bind
    assert hc['Binds'] == ['/srv/conf:/etc/app:ro', '/srv/logs:/logs']
    assert hc['NetworkMode'] == 'none' and hc['Memory'] == 33554432
    assert body['Cmd'] == ['sh', '-c', 'run'] and body['WorkingDir'] == '/app' and body['User'] == 'app'
    # the captured data is not modified
    assert captured['config']['Labels'] == {'mtd.units': '5', 'team': 'web'}
    assert 'Mounts' not in captured['host_config']


def test_tmpfs_mounts_and_bind_options_survive():
    # as Docker 20.10 shows `--mount type=tmpfs,dst=/scratch,tmpfs-size=8m,tmpfs-mode=1770` and
    # `-v /tmp/bindsrc:/b:ro,rslave` (measured on the lab), plus an SELinux-labelled bind
    data = inspect_data(Binds=['/tmp/bindsrc:/b:ro,rslave', '/srv/z:/z:Z'],
                        Mounts=[{'Type': 'tmpfs', 'Target': '/scratch',
                                 'TmpfsOptions': {'SizeBytes': 8388608, 'Mode': 1016}}])
    data['Mounts'] = [
        {'Type': 'bind', 'Source': '/tmp/bindsrc', 'Destination': '/b', 'Mode': 'ro,rslave', 'RW': False,
         'Propagation': 'rslave'},
        {'Type': 'tmpfs', 'Source': '', 'Destination': '/scratch', 'Mode': '', 'RW': True, 'Propagation': ''},
        {'Type': 'bind', 'Source': '/srv/z', 'Destination': '/z', 'Mode': 'Z', 'RW': True,
         'Propagation': 'rprivate'},
    ]
    captured = mig.capture_config(data, IMAGE)
    assert 'Mounts' not in captured['host_config']
    assert json.loads(json.dumps(captured)) == captured
    hc = mig.create_body(captured)['HostConfig']
    assert hc['Binds'] == ['/tmp/bindsrc:/b:ro,rslave', '/srv/z:/z:Z']
    assert hc['Mounts'] == [{'Type': 'tmpfs', 'Target': '/scratch', 'ReadOnly': False,
                             'TmpfsOptions': {'SizeBytes': 8388608, 'Mode': 1016}}]


@pytest.mark.parametrize('mount, spec', [
    ({'source': '/a', 'destination': '/b', 'rw': True, 'mode': '', 'propagation': 'rprivate'}, '/a:/b'),
    ({'source': '/a', 'destination': '/b', 'rw': False, 'mode': '', 'propagation': ''}, '/a:/b:ro'),
    ({'source': '/a', 'destination': '/b', 'rw': True, 'mode': 'rw', 'propagation': 'rshared'}, '/a:/b:rshared'),
    ({'source': '/a', 'destination': '/b', 'rw': False, 'mode': 'z,ro', 'propagation': 'slave'}, '/a:/b:ro,z,slave'),
    ({'source': '/a', 'destination': '/b', 'rw': True, 'mode': 'cached'}, '/a:/b:cached'),
])
def test_bind_spec(mount, spec):
    assert _container.bind_spec(mount) == spec


def test_create_body_labels_override_and_image_fallbacks():
    captured = mig.capture_config(inspect_data(), IMAGE)
    captured['config']['Labels']['mtd.migration.id'] = 'm-old'
    body = mig.create_body(captured, labels=mig.migration_labels('m-new', None, None))
    assert body['Labels']['mtd.migration.id'] == 'm-new'
    assert body['Labels']['mtd.migration.from'] == '' and body['Labels']['mtd.migration.source_id'] == ''
    assert mig.create_body(captured, image='other@' + DIGEST_B)['Image'] == 'other@' + DIGEST_B
    captured['image_digest_ref'] = None
    assert mig.create_body(captured)['Image'] == REG + '/mtd/web:2'


def test_create_body_read_only_volume_and_no_binds():
    data = inspect_data(Binds=None)
    data['Mounts'] = [dict(data['Mounts'][0], RW=False)]
    body = mig.create_body(mig.capture_config(data, IMAGE))
    assert body['HostConfig']['Mounts'] == [{'Type': 'volume', 'Source': 'web-data', 'Target': '/data',
                                             'ReadOnly': True}]
    assert 'Binds' not in body['HostConfig']
    assert body['Labels'] == {'mtd.units': '5', 'team': 'web'}


def test_migration_labels():
    assert mig.migration_labels('m-1', 'lab-2', 'abc') == {
        'mtd.migration.id': 'm-1', 'mtd.migration.from': 'lab-2', 'mtd.migration.source_id': 'abc'}
    assert mig.migration_labels('m-1', None, '') == {
        'mtd.migration.id': 'm-1', 'mtd.migration.from': '', 'mtd.migration.source_id': ''}


@pytest.mark.parametrize('value', ['m', 'm-42', 'web_1.blue', '0abc', 'A' * 128])
def test_check_name_accepts(value):
    assert _bundle.check_name(value, 'Checkpoint name') == value


@pytest.mark.parametrize('value', ['', None, '-x', '.hidden', '../x', 'a/b', 'a b', 'é', 'A' * 129, 'x;rm'])
def test_check_name_refuses(value):
    with pytest.raises(MigrationError) as info:
        _bundle.check_name(value, 'migration_id')
    assert str(info.value) == ('migration_id %r must be 1-128 characters of letters, digits, "_", "." or "-".'
                               % (value,))


def test_checkpoint_dir_and_runc_root(tmp_path):
    assert _bundle.checkpoint_dir('/var/lib/docker', CID, 'm-1') == '/var/lib/docker/containers/%s/checkpoints/m-1' % CID
    first, second = tmp_path / 'a', tmp_path / 'b'
    (second / CID).mkdir(parents=True)
    (second / CID / 'state.json').write_text('{}')
    assert _criu.find_runc_root(CID, [str(first), str(second)]) == str(second)
    assert _criu.find_runc_root('other', [str(first), str(second)]) is None


def test_tail_and_read_tail(tmp_path):
    assert _cmd.output_tail('a\n\n b \nc\n', 2) == ' b\nc'
    assert _cmd.output_tail(None) == ''
    log = tmp_path / 'dump.log'
    log.write_text(''.join('line %d\n' % i for i in range(100)))
    assert _files.read_tail(str(log), 3) == 'line 97\nline 98\nline 99'
    assert _files.read_tail(str(tmp_path / 'missing.log')) == ''


def test_run_keeps_rc_and_output():
    rc, out, err = _cmd.run(['sh', '-c', 'echo $LANG; echo oops >&2; exit 3'])
    assert (rc, out, err) == (3, 'C\n', 'oops\n')


def test_run_timeout_and_missing_binary_are_command_errors():
    with pytest.raises(CommandError) as info:
        _cmd.run(['sleep', '5'], timeout=0.3)
    assert str(info.value) == 'sleep did not finish within 0.3 s.'
    with pytest.raises(CommandError) as info:
        _cmd.run(['/nonexistent/runc', 'checkpoint'])
    assert str(info.value).startswith('Cannot run /nonexistent/runc: [Errno 2] No such file or directory')


# ---------------------------------------------------------------------------------------------------
# Bundle files and the manifest

def make_bundle(root):
    """A small bundle: criu images, a writable-layer tar, a volume tar, an empty file and a symlink."""
    bundle = root / 'm-1'
    (bundle / 'criu').mkdir(parents=True)
    (bundle / 'volumes').mkdir()
    (bundle / 'criu' / 'pages-1.img').write_bytes(bytes(range(256)) * 64)
    (bundle / 'criu' / 'core-1.img').write_bytes(b'core')
    (bundle / 'rootfs-diff.tar').write_bytes(b'layer' * 100)
    (bundle / 'volumes' / 'web-data.tar').write_bytes(b'')
    os.symlink('criu/core-1.img', str(bundle / 'link'))
    return bundle


CAPTURED = {'name': 'web-1', 'id': CID, 'image_digest_ref': REG + '/mtd/web@' + DIGEST_A}


def test_write_and_read_manifest(tmp_path):
    bundle = make_bundle(tmp_path)
    manifest = _bundle.write_manifest(str(bundle), CAPTURED, extra={'method': 'runc', 'checkpoint': 'm-1'})
    assert [f['path'] for f in manifest['files']] == [
        'rootfs-diff.tar', 'criu/core-1.img', 'criu/pages-1.img', 'volumes/web-data.tar']
    sizes = dict((f['path'], f['size']) for f in manifest['files'])
    assert sizes == {'rootfs-diff.tar': 500, 'criu/core-1.img': 4, 'criu/pages-1.img': 16384,
                     'volumes/web-data.tar': 0}
    assert manifest['bytes'] == 16888
    core = [f for f in manifest['files'] if f['path'] == 'criu/core-1.img'][0]
    assert core['sha256'] == '0d45f5fd462b8c70bffb10021ac1bcff3f58f29b1faf7568595095427d42812c'
    assert manifest['format'] == 1 and manifest['method'] == 'runc' and manifest['container'] == CAPTURED
    path = bundle / 'manifest.json'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (bundle / 'manifest.json.tmp').exists()
    assert _bundle.read_manifest(str(bundle)) == manifest
    # a second manifest does not list the first one
    again = _bundle.write_manifest(str(bundle), CAPTURED)
    assert 'manifest.json' not in [f['path'] for f in again['files']]
    assert _bundle.verify_manifest(str(bundle), again) == 16888


def test_sha256_file_known_value(tmp_path):
    path = tmp_path / 'abc'
    path.write_bytes(b'abc')
    assert _bundle.sha256_file(str(path)) == 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    assert _bundle.sha256_file(str(path), bufsize=1) == _bundle.sha256_file(str(path))


def test_read_manifest_errors(tmp_path):
    with pytest.raises(MigrationError) as info:
        _bundle.read_manifest(str(tmp_path))
    assert str(info.value).startswith('Cannot read the checkpoint manifest %s/manifest.json' % tmp_path)
    (tmp_path / 'manifest.json').write_text('{"format": 1, "files": ')
    with pytest.raises(MigrationError, match='Cannot read the checkpoint manifest'):
        _bundle.read_manifest(str(tmp_path))
    (tmp_path / 'manifest.json').write_text('{"format": 2, "files": []}')
    with pytest.raises(MigrationError, match='is not a valid checkpoint manifest of format 1: its format is 2, not 1'):
        _bundle.read_manifest(str(tmp_path))
    (tmp_path / 'manifest.json').write_text('{"format": 1, "files": {}}')
    with pytest.raises(MigrationError, match='is not a valid checkpoint manifest of format 1'):
        _bundle.read_manifest(str(tmp_path))


@pytest.fixture
def written(tmp_path):
    bundle = make_bundle(tmp_path)
    return bundle, _bundle.write_manifest(str(bundle), CAPTURED)


def test_verify_manifest_flipped_byte(written):
    bundle, manifest = written
    pages = bundle / 'criu' / 'pages-1.img'
    data = bytearray(pages.read_bytes())
    data[1000] ^= 0x01
    pages.write_bytes(bytes(data))
    with pytest.raises(MigrationError) as info:
        _bundle.verify_manifest(str(bundle), manifest)
    assert str(info.value) == ('Checkpoint file criu/pages-1.img does not match its sha256 in the manifest: '
                               'the checkpoint was corrupted.')
    assert info.value.details == {'file': 'criu/pages-1.img'}


def test_verify_manifest_missing_file(written):
    bundle, manifest = written
    (bundle / 'volumes' / 'web-data.tar').unlink()
    with pytest.raises(MigrationError) as info:
        _bundle.verify_manifest(str(bundle), manifest)
    assert str(info.value) == 'Checkpoint file volumes/web-data.tar is missing.'
    assert info.value.details['file'] == 'volumes/web-data.tar'


def test_verify_manifest_wrong_size(written):
    bundle, manifest = written
    with open(str(bundle / 'rootfs-diff.tar'), 'ab') as f:
        f.write(b'x')
    with pytest.raises(MigrationError) as info:
        _bundle.verify_manifest(str(bundle), manifest)
    assert str(info.value) == ('Checkpoint file rootfs-diff.tar has 501 bytes, the manifest says 500: the '
                               'checkpoint is corrupt or incomplete.')


def test_streamed_unhashed_files_are_listed_with_a_null_sha256(tmp_path):
    """A file the stream carried unhashed (known digest None) is written as null; the rest are hashed."""
    bundle = make_bundle(tmp_path)
    manifest = _bundle.write_manifest(str(bundle), CAPTURED, known={'criu/pages-1.img': (16384, None),
                                                                    'criu/core-1.img': (3, None)})
    digests = dict((f['path'], f['sha256']) for f in manifest['files'])
    assert digests['criu/pages-1.img'] is None
    # a known size that differs from the file's: hashed from the file
    assert digests['criu/core-1.img'] == '0d45f5fd462b8c70bffb10021ac1bcff3f58f29b1faf7568595095427d42812c'
    again = _bundle.read_manifest(str(bundle))
    assert _bundle.verify_manifest(str(bundle), again, hashes=False) == 16888
    with pytest.raises(MigrationError) as info:
        _bundle.verify_manifest(str(bundle), again)
    assert str(info.value).startswith('Checkpoint file criu/pages-1.img has no sha256 in the manifest: the source '
                                      'streamed it without hashing it')


@pytest.mark.parametrize('digest, ok', [(None, True), ('0' * 64, True), ('x', False), (1, False), ('missing', False)])
def test_manifest_sha256_is_hex_or_null(written, digest, ok):
    bundle, manifest = written
    entry = manifest['files'][0]
    if digest == 'missing':
        del entry['sha256']
    else:
        entry['sha256'] = digest
    if ok:
        assert _bundle.check_manifest(manifest) is manifest
    else:
        with pytest.raises(MigrationError, match='is neither 64 hexadecimal digits nor null'):
            _bundle.check_manifest(manifest)


@pytest.mark.parametrize('path', ['../outside', 'criu/../../etc/passwd', '/etc/passwd', '..'])
def test_verify_manifest_refuses_unsafe_paths(written, path):
    bundle, manifest = written
    manifest['files'].append({'path': path, 'size': 0, 'sha256': 'x'})
    with pytest.raises(MigrationError) as info:
        _bundle.verify_manifest(str(bundle), manifest)
    assert str(info.value) == 'The checkpoint manifest names an unsafe path %r.' % path


def test_verify_manifest_moved_directory(written, tmp_path):
    bundle, manifest = written
    elsewhere = tmp_path / 'engine' / 'checkpoints' / 'm-1'
    elsewhere.parent.mkdir(parents=True)
    os.rename(str(bundle / 'criu'), str(elsewhere))
    with pytest.raises(MigrationError, match='criu/core-1.img is missing'):
        _bundle.verify_manifest(str(bundle), manifest)
    assert _bundle.verify_manifest(str(bundle), manifest, moved={'criu': str(elsewhere)}) == 16888
    # a prefix only matches whole directory names
    assert _bundle.verify_manifest(str(bundle), manifest, moved={'criu': str(elsewhere), 'cri': '/nonexistent'}) == 16888
    (elsewhere / 'core-1.img').write_bytes(b'CORE')
    with pytest.raises(MigrationError, match='criu/core-1.img does not match its sha256'):
        _bundle.verify_manifest(str(bundle), manifest, moved={'criu': str(elsewhere)})


# ---------------------------------------------------------------------------------------------------
# Modes, moves and removal

def mode(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


def test_make_private_dir(tmp_path):
    path = tmp_path / 'a' / 'b'
    _files.make_private_dir(str(path))
    assert mode(path) == 0o700
    path.chmod(0o755)
    _files.make_private_dir(str(path))
    assert mode(path) == 0o700


def test_restrict_tree(tmp_path):
    bundle = make_bundle(tmp_path)
    for p in (bundle, bundle / 'criu', bundle / 'volumes'):
        p.chmod(0o755)
    for p in (bundle / 'criu' / 'pages-1.img', bundle / 'rootfs-diff.tar'):
        p.chmod(0o644)
    (bundle / 'criu' / 'core-1.img').chmod(0o755)
    outside = tmp_path / 'outside'
    outside.write_text('not ours')
    outside.chmod(0o644)
    os.symlink(str(outside), str(bundle / 'criu' / 'escape'))
    _files.restrict_tree(str(bundle))
    assert [mode(p) for p in (bundle, bundle / 'criu', bundle / 'volumes')] == [0o700] * 3
    assert [mode(p) for p in (bundle / 'criu' / 'pages-1.img', bundle / 'criu' / 'core-1.img',
                              bundle / 'rootfs-diff.tar', bundle / 'volumes' / 'web-data.tar')] == [0o600] * 4
    # a symlink is not followed out of the bundle
    assert mode(outside) == 0o644


def test_remove_tree(tmp_path):
    bundle = make_bundle(tmp_path)
    assert _files.remove_tree(str(bundle)) is True
    assert not bundle.exists()
    assert _files.remove_tree(str(bundle)) is False
    assert _files.remove_tree('') is False and _files.remove_tree(None) is False


def tree(path):
    """{relative path: content or 'dir'} of a directory."""
    out = {}
    for root, dirs, files in os.walk(str(path)):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), str(path))] = 'dir'
        for name in files:
            full = os.path.join(root, name)
            out[os.path.relpath(full, str(path))] = ('-> ' + os.readlink(full)) if os.path.islink(full) else \
                open(full, 'rb').read()
    return out


def test_move_tree_rename(tmp_path):
    src = make_bundle(tmp_path) / 'criu'
    before = tree(src)
    dst = tmp_path / 'engine' / 'checkpoints' / 'm-1'
    dst.parent.mkdir(parents=True)
    assert _files.move_tree(str(src), str(dst)) == 'rename'
    assert not src.exists() and tree(dst) == before


def test_move_tree_replaces_an_old_destination(tmp_path):
    src = make_bundle(tmp_path) / 'criu'
    dst = tmp_path / 'old'
    (dst / 'stale').mkdir(parents=True)
    (dst / 'stale' / 'x.img').write_bytes(b'stale')
    _files.move_tree(str(src), str(dst))
    assert sorted(tree(dst)) == ['core-1.img', 'pages-1.img']


def test_move_tree_copies_across_filesystems(tmp_path):
    if not os.path.isdir('/dev/shm') or os.stat('/dev/shm').st_dev == os.stat(str(tmp_path)).st_dev:
        pytest.skip('/dev/shm is not a separate file system here, so no cross-device move can be made')
    bundle = make_bundle(tmp_path)
    before = tree(bundle)
    shm = '/dev/shm/mtd-unit-%d' % os.getpid()
    os.makedirs(shm)
    try:
        assert _files.move_tree(str(bundle), shm + '/m-1') == 'copy'
        assert not bundle.exists()
        assert tree(shm + '/m-1') == before
        assert os.path.islink(shm + '/m-1/link')
    finally:
        shutil.rmtree(shm, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# GNU tar

def test_gnu_tar_is_present():
    out = subprocess.run(['tar', '--version'], stdout=subprocess.PIPE, check=True).stdout.decode()
    assert 'GNU tar' in out, 'the bundle code needs GNU tar: %s' % out.splitlines()[0]


def test_tar_round_trip(tmp_path):
    src = tmp_path / 'upper'
    (src / 'etc' / 'app').mkdir(parents=True)
    (src / 'empty-dir').mkdir()
    (src / 'etc' / 'app' / 'conf').write_text('a=1\n')
    (src / 'etc' / 'app' / 'conf').chmod(0o640)
    (src / 'bin').mkdir()
    (src / 'bin' / 'tool').write_bytes(b'#!/bin/sh\n')
    (src / 'bin' / 'tool').chmod(0o755)
    os.symlink('../etc/app/conf', str(src / 'bin' / 'conf-link'))
    with open(str(src / 'sparse'), 'wb') as f:
        f.seek(8 * 1024 * 1024)
        f.write(b'end')
    if os.geteuid() == 0:
        os.chown(str(src / 'etc' / 'app' / 'conf'), 1234, 5678)
    archive = tmp_path / 'layer.tar'
    _bundle.tar_create(str(src), str(archive))
    dst = tmp_path / 'out'
    dst.mkdir()
    _bundle.tar_extract(str(archive), str(dst))
    assert tree(dst) == tree(src)
    assert mode(dst / 'etc' / 'app' / 'conf') == 0o640 and mode(dst / 'bin' / 'tool') == 0o755
    assert os.readlink(str(dst / 'bin' / 'conf-link')) == '../etc/app/conf'
    # --sparse: the hole is not stored
    assert archive.stat().st_size < 1024 * 1024
    if os.geteuid() == 0:
        st = os.lstat(str(dst / 'etc' / 'app' / 'conf'))
        assert (st.st_uid, st.st_gid) == (1234, 5678)


def test_tar_round_trip_overlay_whiteouts_and_xattrs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip('overlay whiteouts (device 0/0) and trusted.* xattrs need root')
    src = tmp_path / 'upper'
    (src / 'opaque').mkdir(parents=True)
    try:
        os.mknod(str(src / 'deleted'), stat.S_IFCHR | 0o600, os.makedev(0, 0))
        os.setxattr(str(src / 'opaque'), 'trusted.overlay.opaque', b'y')
    except OSError as exc:
        pytest.skip('cannot make whiteouts or trusted xattrs here: %s' % exc)
    archive = tmp_path / 'layer.tar'
    _bundle.tar_create(str(src), str(archive), xattrs=True)
    dst = tmp_path / 'out'
    dst.mkdir()
    _bundle.tar_extract(str(archive), str(dst), xattrs=True)
    st = os.lstat(str(dst / 'deleted'))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(str(dst / 'opaque'), 'trusted.overlay.opaque') == b'y'


def test_tar_errors_are_migration_errors(tmp_path):
    with pytest.raises(MigrationError) as info:
        _bundle.tar_create(str(tmp_path / 'nonexistent'), str(tmp_path / 'x.tar'))
    assert str(info.value).startswith('tar of %s/nonexistent failed: ' % tmp_path)
    junk = tmp_path / 'junk.tar'
    junk.write_bytes(b'this is not a tar archive' * 40)
    with pytest.raises(MigrationError) as info:
        _bundle.tar_extract(str(junk), str(tmp_path))
    assert str(info.value).startswith('Extracting %s into %s failed: ' % (junk, tmp_path))
    assert 'tar' in str(info.value)
