# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""host_facts main() against a fake engine on a Unix socket, fake /proc files and a fake criu."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import stat
import tempfile

import pytest

from ansible_collections.mtd.containers.plugins.modules import host_facts
from ansible_collections.mtd.containers.tests.unit.plugins.modules import module_harness

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'module_utils', 'fixtures')


def _load_fake_engine():
    spec = importlib.util.spec_from_file_location('mtd_fake_engine', os.path.join(FIXTURES, 'fake_engine.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake_engine = _load_fake_engine()

FAKE_CRIU = r"""#!/bin/sh
case "$*" in
  --version) echo "Version: 4.1.1" ;;
  check) echo "Looks good." ;;
  "check --feature mem_dirty_track") echo "Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work." >&2; exit 1 ;;
  "check --feature uffd-noncoop") echo "uffd-noncoop is supported" ;;
  *) exit 1 ;;
esac
"""

CONTRACT_KEYS = ['capacity', 'capacity_source', 'cgroup', 'cpu', 'criu', 'docker', 'gathered_at', 'hostname', 'os',
                 'remaining', 'reserved']
DOCKER_KEYS = ['api_version', 'available', 'cgroup_driver', 'containerd', 'containers', 'error', 'experimental',
               'operating_system', 'runc', 'version']
CONTAINER_KEYS = ['attacked', 'created', 'id', 'image', 'image_id', 'ip', 'labels', 'name', 'network_mode',
                  'reservations', 'severity', 'started_at', 'state', 'uptime_seconds']
CRIU_KEYS = ['available', 'check_ok', 'check_output', 'dirty_tracking', 'lazy_pages', 'path', 'version']


@pytest.fixture(autouse=True)
def no_docker_host(monkeypatch):
    monkeypatch.delenv('DOCKER_HOST', raising=False)


@pytest.fixture
def host(monkeypatch, tmp_path):
    """Fake /proc files and os-release; returns a dict of their paths."""
    paths = {}
    for key, name in (('meminfo', 'meminfo-debian12-vm.txt'), ('cpuinfo', 'cpuinfo-x86_64-2cpu.txt'),
                      ('mountinfo', 'mountinfo-hybrid-v1.txt'), ('os_release', 'os-release-rocky-9')):
        paths[key] = str(tmp_path / name)
        shutil.copy(os.path.join(FIXTURES, name), paths[key])
    monkeypatch.setattr(host_facts, 'PROC_MEMINFO', paths['meminfo'])
    monkeypatch.setattr(host_facts, 'PROC_CPUINFO', paths['cpuinfo'])
    monkeypatch.setattr(host_facts, 'PROC_MOUNTINFO', paths['mountinfo'])
    monkeypatch.setattr(host_facts, 'OS_RELEASE_FALLBACK', str(tmp_path / 'no-fallback'))
    criu = tmp_path / 'criu'
    criu.write_text(FAKE_CRIU)
    criu.chmod(criu.stat().st_mode | stat.S_IXUSR)
    paths['criu'] = str(criu)
    # the engine's PATH: no pidfile here, so the standard PATH, which is a directory with a runc and a criu
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    for name in ('runc', 'criu'):
        (bindir / name).write_text('#!/bin/sh\nexit 0\n')
        (bindir / name).chmod(0o755)
    monkeypatch.setattr(host_facts, 'ENGINE_PIDFILE', str(tmp_path / 'no-docker.pid'))
    monkeypatch.setattr(host_facts, 'DEFAULT_PATH', str(bindir))
    paths['bin'] = str(bindir)
    paths['local_fact'] = str(tmp_path / 'mtd.fact')
    paths['tmp'] = tmp_path
    return paths


@pytest.fixture
def engine():
    sockdir = tempfile.mkdtemp(prefix='mtd-', dir='/tmp')
    server = fake_engine.FakeEngine(os.path.join(sockdir, 'docker.sock'))
    server.standard_routes([fake_engine.load_json('docker-inspect-web-1.json'),
                            fake_engine.load_json('docker-inspect-db-1.json')])
    yield server
    server.close()
    shutil.rmtree(sockdir, ignore_errors=True)


def run_module(args):
    result = module_harness.run_module(host_facts.main, args, expect_failure=None, default_changed=False)
    if result.get('failed'):  # fail_json
        return result
    assert result['changed'] is False
    return result


def base_args(host, engine=None, **extra):
    args = {
        'os_release_path': host['os_release'],
        'local_fact_path': host['local_fact'],
        'criu_path': host['criu'],
        'docker_host': engine.url if engine else 'unix://%s/absent.sock' % host['tmp'],
        'timeout': 5,
    }
    args.update(extra)
    return args


def test_full_facts(host, engine):
    with open(host['local_fact'], 'w') as handle:
        json.dump({'capacity': {'cpus': 6, 'units': 120}, 'role': 'lab-3'}, handle)
    result = run_module(base_args(host, engine))
    assert 'failed' not in result
    mtd = result['ansible_facts']['mtd']
    assert sorted(mtd) == CONTRACT_KEYS
    assert mtd['hostname'] == socket.gethostname()
    assert re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$', mtd['gathered_at'])
    assert {k: v for k, v in mtd['os'].items() if k not in ('kernel', 'arch')} == {
        'id': 'rocky', 'version_id': '9.4', 'name': 'Rocky Linux', 'pretty_name': 'Rocky Linux 9.4 (Blue Onyx)'}
    assert mtd['os']['kernel'] == os.uname().release
    assert mtd['os']['arch'] == os.uname().machine

    assert mtd['capacity'] == {'cpus': 6.0, 'memory_mb': 24105, 'units': 120}
    assert mtd['capacity_source'] == {'cpus': 'local_fact', 'memory_mb': 'proc', 'units': 'local_fact'}
    # web-1: 0.5 CPU, 256 MiB, 10 units; db-1: 0.25 CPU, 128 MiB, 20 units
    assert mtd['reserved'] == {'cpus': 0.75, 'memory_mb': 384, 'units': 30}
    assert mtd['remaining'] == {'cpus': 5.25, 'memory_mb': 23721, 'units': 90}
    assert mtd['cgroup'] == {
        'version': 1, 'mountpoint': '/sys/fs/cgroup', 'unified_mountpoint': '/sys/fs/cgroup/unified',
        'controllers': ['blkio', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'memory', 'pids']}

    docker = mtd['docker']
    assert sorted(docker) == DOCKER_KEYS
    assert {k: v for k, v in docker.items() if k not in ('containers', 'containerd', 'runc')} == {
        'available': True, 'error': None, 'version': '20.10.24+dfsg1', 'api_version': '1.41',
        'experimental': True, 'operating_system': 'Debian GNU/Linux 12 (bookworm)', 'cgroup_driver': 'cgroupfs'}
    assert [c['name'] for c in docker['containers']] == ['web-1', 'db-1']
    for container in docker['containers']:
        assert sorted(container) == CONTAINER_KEYS
    web = docker['containers'][0]
    assert web['reservations'] == {'cpus': 0.5, 'memory_mb': 256, 'units': 10}
    assert web['started_at'] == '2026-11-28T09:30:01Z'
    assert web['network_mode'] == 'none' and web['ip'] is None
    assert docker['containers'][1]['attacked'] is True
    assert docker['containerd'] == {'version': '1.6.20~ds1', 'commit': '1.6.20~ds1-1+b1'}
    # runc 1.1 runs the criu the collection names: the checked one
    assert docker['runc'] == {'version': '1.1.5+ds1', 'commit': '1.1.5+ds1-1+deb12u1',
                              'path': os.path.join(host['bin'], 'runc'), 'criu_from_path': False,
                              'criu_path': host['criu']}

    assert mtd['criu'] == {'available': True, 'path': host['criu'], 'version': '4.1.1', 'check_ok': True,
                           'check_output': 'Looks good.', 'dirty_tracking': False, 'lazy_pages': True}
    assert sorted(mtd['criu']) == CRIU_KEYS

    # Only read-only calls went to the engine.
    assert {r['method'] for r in engine.requests} == {'GET'}
    # The result is plain JSON.
    json.dumps(result)


def test_check_mode_gives_the_same_facts(host, engine):
    normal = run_module(base_args(host, engine))['ansible_facts']['mtd']
    engine.requests[:] = []
    checked = run_module(base_args(host, engine, _ansible_check_mode=True))
    assert checked['changed'] is False
    mtd = checked['ansible_facts']['mtd']
    for key in ('capacity', 'reserved', 'remaining', 'cgroup', 'criu', 'os'):
        assert mtd[key] == normal[key]
    assert mtd['docker']['available'] is True
    assert {r['method'] for r in engine.requests} == {'GET'}


def test_unreachable_engine_does_not_fail(host):
    result = run_module(base_args(host))
    assert 'failed' not in result
    mtd = result['ansible_facts']['mtd']
    docker = mtd['docker']
    assert docker['available'] is False
    assert docker['error'].startswith('Cannot reach the Docker engine at unix://')
    assert 'does not exist' in docker['error']
    assert docker['containers'] == []
    assert sorted(docker) == DOCKER_KEYS
    assert mtd['reserved'] == {'cpus': 0.0, 'memory_mb': 0, 'units': 0}
    # No local fact file: /proc and the default units.
    assert mtd['capacity'] == {'cpus': 2.0, 'memory_mb': 24105, 'units': 100}
    assert mtd['capacity_source'] == {'cpus': 'proc', 'memory_mb': 'proc', 'units': 'default'}
    assert mtd['remaining'] == mtd['capacity']


def test_engine_error_is_reported_not_raised(host, engine):
    engine.routes[('GET', '/info')] = (500, {'message': 'error during connect: daemon is shutting down'})
    mtd = run_module(base_args(host, engine))['ansible_facts']['mtd']
    assert mtd['docker']['available'] is False
    assert mtd['docker']['error'] == ('GET /info failed with 500 Internal Server Error: '
                                      'error during connect: daemon is shutting down')


def test_container_gone_between_list_and_inspect(host, engine):
    db_id = fake_engine.load_json('docker-inspect-db-1.json')['Id']
    engine.routes[('GET', '/containers/%s/json' % db_id)] = (404, {'message': 'No such container: %s' % db_id})
    mtd = run_module(base_args(host, engine))['ansible_facts']['mtd']
    assert [c['name'] for c in mtd['docker']['containers']] == ['web-1']
    assert mtd['reserved'] == {'cpus': 0.5, 'memory_mb': 256, 'units': 10}


def test_docker_host_from_environment(host, engine, monkeypatch):
    monkeypatch.setenv('DOCKER_HOST', engine.url)
    args = base_args(host, engine)
    del args['docker_host']
    mtd = run_module(args)['ansible_facts']['mtd']
    assert mtd['docker']['available'] is True


def test_explicit_api_version(host, engine):
    run_module(base_args(host, engine, api_version='1.40'))
    assert {r['version'] for r in engine.requests} == {'1.40'}


@pytest.mark.parametrize('content, message', [
    ('{"capacity": {"cpus": -2}}', 'capacity.cpus must not be negative, got -2.'),
    ('{"capacity": {"cpus": 2,}}', 'it is not valid JSON'),
    ('{"capacity": {"ram": 2048}}', 'unknown key(s) ram'),
    ('[cpus]\nvalue=2\n', 'it is not valid JSON'),
])
def test_bad_local_fact_fails_clearly(host, content, message):
    with open(host['local_fact'], 'w') as handle:
        handle.write(content)
    result = run_module(base_args(host))
    assert result['failed'] is True
    assert result['msg'].startswith('The local fact file %s cannot be used: ' % host['local_fact'])
    assert message in result['msg']
    assert 'Traceback' not in result['msg']


def test_unreadable_local_fact_fails(host):
    os.mkdir(host['local_fact'])
    result = run_module(base_args(host))
    assert result['failed'] is True
    assert result['msg'].startswith('Cannot read the local fact file %s: ' % host['local_fact'])


def test_os_release_fallback(host, monkeypatch):
    monkeypatch.setattr(host_facts, 'OS_RELEASE_FALLBACK', os.path.join(FIXTURES, 'os-release-ubuntu-24.04'))
    mtd = run_module(base_args(host, os_release_path=str(host['tmp'] / 'missing')))['ansible_facts']['mtd']
    assert (mtd['os']['id'], mtd['os']['version_id']) == ('ubuntu', '24.04')


def test_os_release_missing_fails(host):
    missing = str(host['tmp'] / 'missing')
    result = run_module(base_args(host, os_release_path=missing))
    assert result['failed'] is True
    assert result['msg'].startswith('Cannot read an os-release file (%s: ' % missing)
    assert result['msg'].endswith('Set os_release_path to a readable file.')


def test_gather_subset_cgroup_only(host, engine):
    mtd = run_module(base_args(host, engine, gather_subset=['cgroup']))['ansible_facts']['mtd']
    assert engine.requests == []
    assert mtd['docker']['available'] is False
    assert mtd['docker']['error'] == 'Not gathered: docker is not in gather_subset.'
    assert mtd['criu'] == {'available': False, 'path': None, 'version': None, 'check_ok': False,
                           'check_output': None, 'dirty_tracking': False, 'lazy_pages': False}
    assert mtd['cgroup']['version'] == 1


def test_gather_subset_docker_only(host, engine):
    mtd = run_module(base_args(host, engine, gather_subset=['docker']))['ansible_facts']['mtd']
    assert mtd['docker']['available'] is True
    assert mtd['cgroup'] == {'version': None, 'mountpoint': None, 'controllers': [], 'unified_mountpoint': None}
    assert mtd['criu']['available'] is False


def test_gather_subset_bad_choice(host):
    result = run_module(base_args(host, gather_subset=['network']))
    assert result['failed'] is True
    assert 'gather_subset' in result['msg']


def test_cgroup_v2_controllers_are_read(host, monkeypatch):
    cgroot = host['tmp'] / 'cgroup'
    cgroot.mkdir()
    (cgroot / 'cgroup.controllers').write_text('cpuset cpu io memory hugetlb pids rdma misc\n')
    mountinfo = host['tmp'] / 'mountinfo-v2'
    mountinfo.write_text('33 25 0:29 / %s rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 '
                         'rw,nsdelegate,memory_recursiveprot\n' % cgroot)
    monkeypatch.setattr(host_facts, 'PROC_MOUNTINFO', str(mountinfo))
    mtd = run_module(base_args(host, gather_subset=['cgroup']))['ansible_facts']['mtd']
    assert mtd['cgroup'] == {'version': 2, 'mountpoint': str(cgroot), 'unified_mountpoint': str(cgroot),
                             'controllers': ['cpu', 'cpuset', 'hugetlb', 'io', 'memory', 'misc', 'pids', 'rdma']}


def test_cpuinfo_fallback_to_affinity(host):
    with open(host['cpuinfo'], 'w') as handle:
        handle.write('')
    mtd = run_module(base_args(host, gather_subset=['cgroup']))['ansible_facts']['mtd']
    assert mtd['capacity']['cpus'] == float(len(os.sched_getaffinity(0)))


def test_unreadable_meminfo_fails(host, monkeypatch):
    monkeypatch.setattr(host_facts, 'PROC_MEMINFO', str(host['tmp'] / 'no-meminfo'))
    result = run_module(base_args(host))
    assert result['failed'] is True
    assert result['msg'].startswith('Cannot read the memory size from ')


def test_bad_criu_path_fails(host):
    result = run_module(base_args(host, criu_path=str(host['tmp'] / 'no-criu')))
    assert result['failed'] is True
    assert result['msg'] == 'criu_path %s does not exist or is not a file.' % (host['tmp'] / 'no-criu')


def test_criu_not_installed(host, monkeypatch):
    monkeypatch.setattr(host_facts, 'find_criu', lambda module, path=None: None)
    args = base_args(host)
    del args['criu_path']
    mtd = run_module(args)['ansible_facts']['mtd']
    assert mtd['criu']['available'] is False
    assert mtd['criu']['path'] is None


def test_criu_broken_binary(host):
    with open(host['criu'], 'w') as handle:
        handle.write('#!/bin/sh\necho "criu: error while loading shared libraries: libprotobuf-c.so.1" >&2\nexit 127\n')
    mtd = run_module(base_args(host))['ansible_facts']['mtd']
    assert mtd['criu']['available'] is False
    assert mtd['criu']['path'] == host['criu']
    assert 'libprotobuf-c.so.1' in mtd['criu']['check_output']


@pytest.mark.parametrize('docker_host, message', [
    ('ssh://root@lab-1', 'Invalid Docker connection option: docker_host'),
    ('unix://relative/docker.sock', 'Invalid Docker connection option: docker_host'),
])
def test_bad_docker_host_fails(host, docker_host, message):
    result = run_module(base_args(host, docker_host=docker_host))
    assert result['failed'] is True
    assert result['msg'].startswith(message)


def _runc_version(engine, version):
    body = fake_engine.load_json('docker-version-20.10.json')
    for comp in body['Components']:
        if comp['Name'] == 'runc':
            comp['Version'] = version
    engine.routes[('GET', '/version')] = (200, body)


def test_runc_1_2_reports_the_criu_on_the_engine_path(host, engine):
    """runc >= 1.2 ignores --criu: the criu it runs is the engine's PATH's (here not the checked one)."""
    _runc_version(engine, '1.3.6+ds1')
    runc = run_module(base_args(host, engine))['ansible_facts']['mtd']['docker']['runc']
    assert runc['criu_from_path'] is True
    assert runc['criu_path'] == os.path.join(host['bin'], 'criu') != host['criu']


def test_runc_1_2_with_the_checked_criu_on_path(host, engine, monkeypatch):
    _runc_version(engine, '1.2.0')
    monkeypatch.setattr(host_facts, 'DEFAULT_PATH', '%s:%s' % (os.path.dirname(host['criu']), host['bin']))
    runc = run_module(base_args(host, engine))['ansible_facts']['mtd']['docker']['runc']
    assert (runc['criu_from_path'], runc['criu_path']) == (True, host['criu'])


def test_engine_path_is_read_from_the_engine_process(host, engine, monkeypatch):
    """The pidfile names a process: its PATH decides (here this test's own process, PATH set to bin)."""
    pidfile = host['tmp'] / 'docker.pid'
    pidfile.write_text('%d\n' % os.getpid())
    monkeypatch.setattr(host_facts, 'ENGINE_PIDFILE', str(pidfile))
    monkeypatch.setattr(host_facts, 'DEFAULT_PATH', '/nonexistent')
    with open('/proc/self/environ', 'rb') as handle:
        own = [e[5:].decode() for e in handle.read().split(b'\0') if e.startswith(b'PATH=')]
    assert host_facts.HostFactsCollector.engine_path() == (own[0] if own else '/nonexistent')
