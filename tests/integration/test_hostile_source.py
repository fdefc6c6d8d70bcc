# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A hostile source on the lab: bundles forged WITH a valid transfer token, sent to a real restore on a real
target engine, and containers the policy refuses on the source before anything is frozen (issue 11).

Each forged bundle is refused with a clear message and leaves the target as it was: no container, no volume
of the migration, nothing outside the bundle directory, no device node or setuid file anywhere it landed,
the foreign volume's content intact.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import stat
import string
import subprocess
import tarfile
import time

import pytest
from lab_helpers import INVENTORY, ROOT, STATE, VENV_BIN, docker, require_lab, run_playbook

from ansible_collections.mtd.containers.plugins.module_utils import _bundle, _transfer

IMAGE = '127.0.0.1:5000/mtd/busybox:latest'
SOURCE, TARGET = 'lab-1', 'lab-2'
ADDRESS = {'lab-1': '127.0.1.1', 'lab-2': '127.0.1.2', 'lab-3': '127.0.1.3', 'lab-4': '127.0.1.4'}
# where a bundle of a migration can land on the target (restore's two candidates)
INCOMING = ('/dev/shm/mtd-incoming', '/var/lib/docker/mtd-migrations')


def on_host(host, script):
    """A shell script run as root on a lab host (over its ssh); returns stdout."""
    cmd = ['ssh', '-i', '%s/ssh/id_ed25519' % STATE, '-o', 'UserKnownHostsFile=%s/ssh/known_hosts' % STATE,
           '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', 'root@%s' % ADDRESS[host], script]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, 'on %s: %s failed: %s' % (host, script, proc.stderr)
    return proc.stdout


def start_module(host, module, args, check_mode=False):
    """``ansible HOST -m MODULE -a JSON`` in the background; finish with module_result()."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_CALLBACK_RESULT_FORMAT='json',
               ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               PATH='%s:%s' % (VENV_BIN, os.environ.get('PATH', '')))
    cmd = [str(VENV_BIN / 'ansible'), '-i', str(INVENTORY), host, '-m', module, '-a', json.dumps(args)]
    if check_mode:
        cmd.append('--check')
    return subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def module_result(proc, host, timeout=300):
    """The module's result from the ad-hoc output (``HOST | STATUS => {json}``)."""
    out, err = proc.communicate(timeout=timeout)
    try:
        marker = out.index('%s | ' % host)
        arrow = out.index('=>', marker)
        result = json.loads(out[arrow + 2:])
    except ValueError:
        raise AssertionError('no module result (rc %s): %s %s' % (proc.returncode, out[-3000:], err[-3000:]))
    status = out[marker:arrow]
    result['failed'] = 'FAILED' in status or 'UNREACHABLE' in status
    return result


def run_module(host, module, args, check_mode=False):
    return module_result(start_module(host, module, args, check_mode=check_mode), host)


class GnuTarSource:
    """What a hostile source's sender emits: GNU tar of the forged bundle as it is (device nodes, FIFOs and
    setuid bits included). The collection's own sender refuses such files and writes modes 0600/0700
    (``_tarstream``), so the attacker is given the stream the collection's sender used to make."""

    def __init__(self, path, compression, late, hashes, digest=True):   # pylint: disable=unused-argument
        self.proc = subprocess.Popen(['tar', '--numeric-owner', '-C', path, '-cf', '-', '.'], stdout=subprocess.PIPE)

    def readinto(self, view):
        return self.proc.stdout.readinto(view)

    @staticmethod
    def take_work():
        return []

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def finish(self):
        self.proc.wait()


def send_forged(bundle, host, port, token):
    """The hostile source's one step: send ``bundle`` to the receiver on ``host`` WITH the valid token.

    The only place that speaks the transport. It runs the authenticated plaintext mode (both ends prove the
    token, every record is MAC'd): the attacker holds every key of the source, the TLS key included, so TLS
    would change nothing of what the target receives; what these cases test is what the target does with it.
    Returns {'ok': True, 'stats': ...} or {'ok': False, 'error': message}.
    """
    real = _transfer._source   # pylint: disable=protected-access
    _transfer._source = GnuTarSource   # pylint: disable=protected-access
    try:
        return {'ok': True, 'stats': _transfer.send(str(bundle), ADDRESS[host], port, token, compression='none',
                                                    connect_timeout=60, io_timeout=60, tls=None)}
    except _transfer.TransferError as exc:
        return {'ok': False, 'error': str(exc)}
    finally:
        _transfer._source = real   # pylint: disable=protected-access


# ---------------------------------------------------------------------------------------------------
# Forging

def token():
    return ''.join(random.choice(string.ascii_letters + string.digits) for i in range(40))


def tar_of(path, members):
    """A tar file of (TarInfo, bytes or None) members, built member by member (device nodes need no mknod)."""
    with tarfile.open(str(path), 'w', format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)


def entry(name, kind=tarfile.REGTYPE, data=None, mode=0o644, major=0, minor=0):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.devmajor, info.devminor = kind, mode, major, minor
    return info, data


def forge(root, config, checkpoint, volume_members=None, manifest=None):
    """A bundle as a source would send it: dummy CRIU images, an empty layer, each volume's archive, the
    manifest over it (then ``manifest`` changes applied, or the manifest's text replaced when a str)."""
    bundle = root / 'forged'
    if bundle.exists():
        shutil.rmtree(str(bundle))
    (bundle / 'criu').mkdir(parents=True)
    (bundle / 'volumes').mkdir()
    (bundle / 'criu' / 'descriptors.json').write_text('["/dev/null", "/dev/null", "/dev/null"]')
    (bundle / 'criu' / 'core-1.img').write_bytes(b'\x00' * 4096)
    tar_of(bundle / 'rootfs-diff.tar', [entry('.', tarfile.DIRTYPE, mode=0o755)])
    for mount in config.get('mounts') or []:
        if mount.get('type') == 'volume':
            tar_of(bundle / 'volumes' / (mount['name'] + '.tar'),
                   volume_members or [entry('.', tarfile.DIRTYPE, mode=0o755), entry('./forged', data=b'forged\n')])
    _bundle.write_manifest(str(bundle), config, extra={'checkpoint': checkpoint, 'method': 'runc'})
    if isinstance(manifest, str):
        (bundle / 'manifest.json').write_text(manifest)
    elif manifest:
        data = json.loads((bundle / 'manifest.json').read_text())
        data.update(manifest)
        (bundle / 'manifest.json').write_text(json.dumps(data))
    for path in [bundle] + list(bundle.rglob('*')):
        os.chmod(str(path), 0o700 if path.is_dir() else 0o600)
    return bundle


# ---------------------------------------------------------------------------------------------------
# The target, before and after

def target_state(name, mid):
    """What a refused migration must not change on the target."""
    listing = docker(TARGET, 'ps', '-a', '--format', '{{.Names}}').stdout.split()
    volumes = docker(TARGET, 'volume', 'ls', '-q', '--filter', 'label=mtd.migration.id=%s' % mid).stdout.split()
    checkpoints = on_host(TARGET, 'ls -d /var/lib/docker/containers/*/checkpoints/* 2>/dev/null | sort || true')
    return {'containers': sorted(listing), 'ours': name in listing, 'volumes': volumes,
            'checkpoints': checkpoints.split()}


def dangerous_files():
    """Device nodes, FIFOs, sockets, setuid/setgid files and links where bundles land on the target."""
    found = on_host(TARGET, 'find %s \\( -type b -o -type c -o -type p -o -type s -o -type l -o -perm /6000 \\) '
                            '-print 2>/dev/null || true' % ' '.join(INCOMING))
    return found.split()


def bundle_dirs_private(mid):
    """Owner and mode of every bundle directory of ``mid`` on the target (root 700 each)."""
    out = on_host(TARGET, 'for d in %s; do [ -e "$d" ] && stat -c "%%n %%U %%a" "$d"; done; true'
                  % ' '.join('%s/%s %s/%s.part' % (d, mid, d, mid) for d in INCOMING))
    return [line.split()[1:] for line in out.splitlines()]


def clean_target(name, mid):
    run_module(TARGET, 'mtd.containers.restore', {'migration_id': mid, 'name': name, 'state': 'absent'})
    docker(TARGET, 'rm', '-f', name, check=False)


@pytest.fixture(scope='module')
def captured():
    """The controller's configuration of a real container on the source (checkpoint in check mode)."""
    require_lab()
    name = 'it-hs-%06d' % random.randrange(10 ** 6)
    docker(SOURCE, 'run', '-d', '--name', name, '--network', 'none', '-v', '%s-vol:/vol' % name, IMAGE,
           'sh', '-c', 'while true; do date >> /vol/log; sleep 1; done')
    try:
        result = run_module(SOURCE, 'mtd.containers.checkpoint', {'container': name, 'name': 'x'}, check_mode=True)
        assert not result.get('failed'), result
        yield result['config']
    finally:
        docker(SOURCE, 'rm', '-f', name, check=False)
        docker(SOURCE, 'volume', 'rm', '-f', name + '-vol', check=False)
        for host in ('lab-2',):
            docker(host, 'rm', '-f', name, check=False)
            docker(host, 'volume', 'rm', '-f', name + '-vol', check=False)


@pytest.fixture
def case(captured, tmp_path):
    """One hostile attempt: a fresh migration id and the target's state before it; cleaned after."""
    mid = 'it-hs-%06d' % random.randrange(10 ** 6)
    docker(TARGET, 'rm', '-f', captured['name'], check=False)
    docker(TARGET, 'volume', 'rm', '-f', captured['name'] + '-vol', check=False)
    info = {'mid': mid, 'name': captured['name'], 'config': json.loads(json.dumps(captured)), 'root': tmp_path,
            'before': target_state(captured['name'], mid), 'dangerous_before': dangerous_files()}
    yield info
    clean_target(captured['name'], mid)


def attempt(case, bundle, with_config=True):
    """The real restore (state=started, receiving) on the target, and the forged bundle sent to it."""
    port = random.randrange(49000, 49900)
    secret = token()
    args = {'migration_id': case['mid'], 'source_host': SOURCE, 'health_timeout': 10,
            'receive': {'address': ADDRESS[TARGET], 'port': port, 'token': secret, 'timeout': 90,
                        'encryption': 'none'}}   # see send_forged
    if with_config:
        args['config'] = case['config']
    proc = start_module(TARGET, 'mtd.containers.restore', args)
    sent = send_forged(bundle, TARGET, port, secret)
    return sent, module_result(proc, TARGET)


def assert_refused(case, result, *needles):
    assert result.get('failed'), result
    msg = result['msg']
    for needle in needles:
        assert needle in msg, msg
    assert 'Traceback' not in json.dumps(result), result
    after = target_state(case['name'], case['mid'])
    assert not after['ours'], 'a container %s was created on the target' % case['name']
    assert after == case['before'], (case['before'], after)
    assert dangerous_files() == case['dangerous_before']
    for owner_mode in bundle_dirs_private(case['mid']):
        assert owner_mode == ['root', '700'], owner_mode


# ---------------------------------------------------------------------------------------------------
# Forged configurations

FORGED_HOST_CONFIGS = {
    'privileged': {'Privileged': True, 'CapAdd': ['ALL'], 'Binds': ['/:/host'],
                   'SecurityOpt': ['seccomp=unconfined', 'apparmor=unconfined']},
    'host_namespaces': {'PidMode': 'host', 'IpcMode': 'host', 'UTSMode': 'host', 'NetworkMode': 'host'},
}


@pytest.mark.parametrize('kind', sorted(FORGED_HOST_CONFIGS))
def test_a_forged_configuration_in_the_manifest_is_refused(case, kind):
    """Without the controller's config (standalone restore) the manifest's copy meets the target's policy."""
    forged = case['config']
    forged['host_config'].update(FORGED_HOST_CONFIGS[kind])
    sent, result = attempt(case, forge(case['root'], forged, case['mid']), with_config=False)
    assert sent['ok'], sent   # the bundle itself is well-formed: the refusal is the policy's
    needles = {'privileged': ['Privileged', 'capabilities ALL', 'bind mount of /', 'seccomp confinement off',
                              'apparmor confinement off'],
               'host_namespaces': ['PidMode host', 'IpcMode host', 'UTSMode host', 'NetworkMode host']}[kind]
    assert_refused(case, result, 'refused by the migration policy on the target (nothing was created or started)',
                   *needles)


def test_with_the_controllers_config_the_manifests_copy_is_ignored(case):
    """The role's way: the forged copy has no effect, the standby is the controller's configuration."""
    forged = json.loads(json.dumps(case['config']))
    forged['host_config'].update(FORGED_HOST_CONFIGS['privileged'])
    forged['host_config'].update(FORGED_HOST_CONFIGS['host_namespaces'])
    sent, result = attempt(case, forge(case['root'], forged, case['mid']))
    # the dummy CRIU images cannot start; what matters is what was created from which configuration
    assert result.get('failed') and 'from its checkpoint failed' in result['msg'], result
    host_config = json.loads(docker(TARGET, 'inspect', '-f', '{{json .HostConfig}}', case['name']).stdout)
    assert host_config['Privileged'] is False
    assert host_config['PidMode'] == '' and host_config['IpcMode'] != 'host' and host_config['UTSMode'] == ''
    assert host_config['NetworkMode'] == 'none' and not host_config.get('CapAdd')
    assert not host_config.get('Binds') and not host_config.get('SecurityOpt')


# ---------------------------------------------------------------------------------------------------
# Forged names and paths

def test_traversal_in_the_checkpoint_name_is_refused(case):
    victim = '/tmp/%s-victim' % case['mid']
    on_host(TARGET, 'mkdir -p %s && echo keep > %s/file' % (victim, victim))
    try:
        bundle = forge(case['root'], case['config'], '../../../../../../tmp/%s-victim' % case['mid'])
        sent, result = attempt(case, bundle)
        assert_refused(case, result, 'is not a valid checkpoint manifest', 'The checkpoint name')
        assert on_host(TARGET, 'cat %s/file' % victim) == 'keep\n'
    finally:
        on_host(TARGET, 'rm -rf %s' % victim)


def test_traversal_in_a_manifest_path_is_refused(case):
    bundle = forge(case['root'], case['config'], case['mid'],
                   manifest={'files': [{'path': '../../../etc/hostname', 'size': 1, 'sha256': '0' * 64}]})
    sent, result = attempt(case, bundle)
    assert_refused(case, result, 'is not a valid checkpoint manifest', 'leaves or bends its directory')


@pytest.mark.parametrize('text, needle', [
    ('[1, 2, 3]', 'it is not a JSON object'),
    ('{"format": 1, "files": [], "container": "privileged"}', 'its "container" is not an object'),
    ('{"format": 1, "files": [{"path": "criu/core-1.img", "size": "big", "sha256": 7}], "container": {}}',
     'is not a non-negative integer'),
    ('{"format": 1, "files": ', 'Cannot read the checkpoint manifest'),
])
def test_a_malformed_manifest_is_refused(case, text, needle):
    sent, result = attempt(case, forge(case['root'], case['config'], case['mid'], manifest=text))
    assert_refused(case, result, needle)


# ---------------------------------------------------------------------------------------------------
# Forged file types

@pytest.mark.parametrize('kind', ['device', 'setuid', 'fifo'])
def test_a_device_node_or_setuid_file_in_the_stream_is_refused(case, kind):
    bundle = forge(case['root'], case['config'], case['mid'])
    path = str(bundle / 'criu' / 'extra')
    if kind == 'device':
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))   # /dev/null's numbers: harmless if it leaked
    elif kind == 'fifo':
        os.mkfifo(path, 0o666)
    else:
        shutil.copy('/bin/true', path)
        os.chmod(path, 0o4755)
    try:
        sent, result = attempt(case, bundle)
    finally:
        os.unlink(path)
    assert not sent['ok'], sent
    assert_refused(case, result, 'Receiving the checkpoint failed',
                   {'device': 'character device 1:3', 'setuid': 'setuid or setgid', 'fifo': 'FIFO'}[kind])


@pytest.mark.parametrize('members, needle', [
    ([entry('./mem', tarfile.CHRTYPE, major=1, minor=1, mode=0o666)], 'character device 1:1'),
    ([entry('./sh', data=b'\x7fELF', mode=0o4755)], 'setuid or setgid'),
    ([entry('./x', tarfile.SYMTYPE), entry('./x/etc/cron.d/evil', data=b'* * * * * root sh\n')], 'below the symbolic link'),
    ([entry('../../../../etc/cron.d/evil', data=b'x')], 'leaves or bends'),
])
def test_a_hostile_volume_archive_is_refused_before_anything_is_created(case, members, needle):
    if members[0][0].type == tarfile.SYMTYPE:
        members[0][0].linkname = '/'
    bundle = forge(case['root'], case['config'], case['mid'], volume_members=members)
    sent, result = attempt(case, bundle)
    assert sent['ok'], sent
    assert_refused(case, result, 'The contents of volume %s-vol' % case['name'], needle)


def test_a_foreign_volume_of_the_same_name_is_not_touched(case):
    vol = case['name'] + '-vol'
    docker(TARGET, 'volume', 'create', vol)
    try:
        docker(TARGET, 'run', '--rm', '--network', 'none', '-v', '%s:/v' % vol, IMAGE, 'sh', '-c', 'echo theirs > /v/data')
        case['before'] = target_state(case['name'], case['mid'])
        sent, result = attempt(case, forge(case['root'], case['config'], case['mid']))
        assert sent['ok'], sent
        assert_refused(case, result, 'A volume named %s already exists on this host and does not belong to migration %s'
                       % (vol, case['mid']))
        content = docker(TARGET, 'run', '--rm', '--network', 'none', '-v', '%s:/v' % vol, IMAGE, 'ls', '/v').stdout.split()
        assert content == ['data']
        assert docker(TARGET, 'run', '--rm', '--network', 'none', '-v', '%s:/v' % vol, IMAGE, 'cat', '/v/data').stdout \
            == 'theirs\n'
    finally:
        docker(TARGET, 'volume', 'rm', '-f', vol, check=False)


# ---------------------------------------------------------------------------------------------------
# The source refuses before the freeze (the migrate role)

def pause_events(name, since):
    out = docker(SOURCE, 'events', '--since', str(int(since)), '--until', str(int(time.time()) + 1),
                 '--filter', 'container=%s' % name, '--format', '{{.Action}}').stdout.split()
    return [action for action in out if action in ('pause', 'unpause', 'checkpoint')]


@pytest.mark.parametrize('options, needle', [
    (['--privileged'], 'runs privileged'),
    (['--cap-add', 'SYS_ADMIN'], 'capabilities SYS_ADMIN beyond the allowed set'),
    (['--pid', 'host'], 'PidMode host'),
    (['-v', '/var/run/docker.sock:/var/run/docker.sock'], 'bind mount of /var/run/docker.sock'),
])
def test_the_source_refuses_before_anything_is_frozen(tmp_path, options, needle):
    require_lab()
    name = 'it-hs-src-%06d' % random.randrange(10 ** 6)
    report = str(tmp_path / 'record.json')
    started = docker(SOURCE, 'run', '-d', '--name', name, '--network', 'none', *options, IMAGE, 'sleep', '3600',
                     check=False)
    if started.returncode != 0:
        docker(SOURCE, 'rm', '-f', name, check=False)
        if 'unable to apply caps' in started.stderr:
            # the lab's engines run inside a user-less namespace without the full bounding set
            pytest.skip('this lab cannot run %s containers: %s' % (' '.join(options), started.stderr.strip()[-200:]))
        raise AssertionError('docker run %s failed: %s' % (' '.join(options), started.stderr))
    since = time.time() - 1
    try:
        proc = run_playbook('playbooks/migrate.yml', '-e', 'mtd_container=%s' % name, '-e', 'mtd_source=%s' % SOURCE,
                            '-e', 'mtd_target=%s' % TARGET, '-e', 'mtd_report=%s' % report, check=False)
        rec = json.load(open(report))
        assert rec['state'] == 'Failed', rec
        assert [h['state'] for h in rec['history']] == ['Pending', 'Failed'], rec['history']
        assert rec['error'].startswith('refused before the freeze'), rec['error']
        assert needle in rec['error'], rec['error']
        assert proc.returncode != 0
        state = json.loads(docker(SOURCE, 'inspect', '-f', '{{json .State}}', name).stdout)
        assert state['Running'] and not state['Paused']
        assert pause_events(name, since) == [], 'the container was frozen'
        assert docker(TARGET, 'ps', '-a', '-q', '--filter', 'name=^%s$' % name).stdout.strip() == ''
    finally:
        docker(SOURCE, 'rm', '-f', name, check=False)
        docker(TARGET, 'rm', '-f', name, check=False)
