# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab hosts with their own Debian userland (lab/debhost.sh, inventory lab/inventory-varied.yml): lab-13
(trixie: Docker 26, containerd 1.7, runc 1.1, CRIU 4.1) and lab-t (Debian testing's docker.io) next to the
Docker 20.10 hosts. host_facts reads their real versions; migrations cross engines both ways, copy and
post-copy; confine and a rebase rollout run on each new engine; the version gates refuse and warn on the real
versions. Every passed test records what it ran on (support_record.py -> scripts/support_matrix.py)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import support_record
from lab_helpers import ROOT, STATE, docker, require_lab, run_playbook
from test_migrate import COUNTER, IMAGE, assert_consecutive, counter_lines, migrate, record, start_workload, status

VARIED = ROOT / 'lab' / 'inventory-varied.yml'
INV = ['-i', str(VARIED)]
NEW = ('lab-13', 'lab-t')
ADDRESS = {'lab-13': '127.0.2.13', 'lab-t': '127.0.2.14'}
ALL = ('lab-1', 'lab-2', 'lab-3', 'lab-4') + NEW
# Debian 12 and 13 are the same OS under granularity id
ID_VERSION = ['-e', 'migrate_granularity=id_version']


@pytest.fixture(scope='module')
def fleet(tmp_path_factory):
    """host_facts of lab-1 and the new hosts, gathered once: ``{host: ansible_facts.mtd}``."""
    require_lab()
    if os.environ.get('MTD_LAB_VARIED') == '0':
        pytest.skip('MTD_LAB_VARIED=0: the lab was brought up without the hosts of lab/debhost.sh')
    if not VARIED.exists():
        pytest.fail('lab/inventory-varied.yml is missing: the varied hosts are not up (lab/debhost.sh up)')
    return support_record.gather(['lab-1'] + list(NEW), str(tmp_path_factory.mktemp('facts')), *INV)


def passed(request, fleet, *hosts):
    support_record.record(request.node.name, [support_record.versions_row(h, fleet[h]) for h in hosts])


def on_host(host, command):
    """A command on a new host over its own sshd (the key and known hosts of lab/debhost.sh)."""
    cmd = ['ssh', '-n', '-i', '%s/ssh/id_ed25519' % STATE, '-o', 'UserKnownHostsFile=%s/ssh/known_hosts-varied' % STATE,
           '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', 'root@%s' % ADDRESS[host], command]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout


def release(text):
    return text.split('+')[0].split('~')[0].split('-')[0]


def remove(name, hosts=ALL):
    for host in hosts:
        docker(host, 'rm', '-f', name, check=False)
        docker(host, 'volume', 'rm', '-f', name + '-vol', check=False)


@pytest.fixture
def wanderer():
    name = start_workload('lab-1')
    yield name
    remove(name)


# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('host', NEW)
def test_host_facts_report_the_rootfs_own_versions(fleet, host, request):
    facts = fleet[host]
    dpkg = dict(line.split(' ', 1) for line in on_host(
        host, "dpkg-query -W -f '${Package} ${Version}\\n' docker.io containerd runc criu").splitlines())
    docker_facts, criu = facts['docker'], facts['criu']
    assert release(docker_facts['version']) == release(dpkg['docker.io']), (docker_facts['version'], dpkg)
    assert release(docker_facts['containerd']['version']) == release(dpkg['containerd'])
    assert release(docker_facts['runc']['version']) == release(dpkg['runc'])
    assert release(criu['version']) == release(dpkg['criu'].split(':')[-1])
    assert criu['check_ok'] and criu['path'] == '/usr/sbin/criu'     # the rootfs's own, not the machine's
    assert docker_facts['runc']['path'] == '/usr/sbin/runc'
    # runc >= 1.2 runs the criu on the engine's PATH: here the checked one; runc 1.1 the one it is given
    from_path = tuple(int(x) for x in release(dpkg['runc']).split('.')[:2]) >= (1, 2)
    assert docker_facts['runc']['criu_from_path'] is from_path
    assert docker_facts['runc']['criu_path'] == criu['path']
    # its own /etc/os-release, the real Debian one of the rootfs
    osr = dict(line.split('=', 1) for line in on_host(host, 'cat /etc/os-release').splitlines() if '=' in line)
    assert facts['os']['id'] == 'debian' and facts['os']['pretty_name'] == osr['PRETTY_NAME'].strip('"')
    assert facts['os']['version_id'] == osr.get('VERSION_ID', '').strip('"')
    assert facts['hostname'] == host and facts['capacity']['units'] == 100
    # a different userland than lab-1's: another engine
    assert release(docker_facts['version']) != release(fleet['lab-1']['docker']['version'])
    if host == 'lab-13':
        assert (facts['os']['version_id'], release(docker_facts['version'])) == ('13', '26.1.5')
    passed(request, fleet, host)


def hop(name, here, there, report, extra=()):
    migrate(name, here, target=there, report=report, extra=INV + ID_VERSION + list(extra))
    rec = record(report)
    assert rec['state'] == 'Succeeded' and rec['target'] == there, rec
    assert status(here, name) == 'absent' and status(there, name) == 'running'
    # the source kept no copy of the volume (no stale volume waits there for a return trip)
    assert name + '-vol' not in docker(here, 'volume', 'ls', '-q').stdout.split()
    assert rec['source_volumes'] == {'removed': [name + '-vol'], 'kept': []}, rec.get('source_volumes')
    for path in ('/state/counter.log', '/vol/counter.log'):
        assert_consecutive(counter_lines(there, name, path), '%s on %s' % (path, there))
    return rec


@pytest.mark.parametrize('memory', ['copy', 'lazy'])
def test_migrate_between_docker_20_10_and_26_both_ways(fleet, wanderer, memory, tmp_path, request):
    """lab-1 (Docker 20.10) -> lab-13 (Docker 26) -> lab-1, the counter contiguous throughout."""
    name, seen = wanderer, 0
    extra = ['-e', 'migrate_memory=%s' % memory]
    for step, (here, there) in enumerate((('lab-1', 'lab-13'), ('lab-13', 'lab-1'))):
        rec = hop(name, here, there, str(tmp_path / ('%d.json' % step)), extra)
        assert rec['phases']['memory'] == memory
        lines = counter_lines(there, name, '/vol/counter.log')
        assert len(lines) > seen, 'the counter did not go on after %s -> %s' % (here, there)
        seen = len(lines)
    logs = [int(x) for x in docker('lab-1', 'logs', name).stdout.split()]
    assert logs and logs[0] > 1 and logs == list(range(logs[0], logs[0] + len(logs))), logs[:5]
    passed(request, fleet, 'lab-1', 'lab-13')


def docker_28(fleet):
    version = fleet['lab-t']['docker']['version']
    if int(release(version).split('.')[0]) != 28:
        pytest.skip('lab-t runs Docker %s, not 28: Debian testing moved on' % version)
    return version


def test_docker_28_gate_refuses_network_none_before_the_freeze(fleet, tmp_path, request):
    """Docker 28 gives a --network none container a network namespace too; its restores fail (moby#50750; on
    this lab "bind-mount /proc/0/ns/net -> /var/run/docker/netns/...: no such file or directory"), so the
    preflight refuses lab-t as its target, before anything is frozen (the source is lab-13, Docker 26)."""
    version = docker_28(fleet)
    name = start_workload('lab-13')
    try:
        report = str(tmp_path / 'refused.json')
        proc = migrate(name, 'lab-13', target='lab-t', report=report, extra=INV + ID_VERSION, check=False)
        assert proc.returncode != 0 and 'Traceback' not in proc.stdout
        rec = record(report)
        assert rec['state'] == 'Failed' and 'refused before the freeze' in rec['error'], rec
        assert 'target: Docker %s fails restores' % version in rec['error'] and 'moby#50750' in rec['error']
        assert 'network mode none' in rec['error'], rec['error']
        assert status('lab-13', name) == 'running' and status('lab-t', name) == 'absent'
        assert_consecutive(counter_lines('lab-13', name, '/vol/counter.log'), 'the volume file after the refusal')
    finally:
        remove(name, NEW)
    passed(request, fleet, 'lab-13', 'lab-t')


HOST_NET = ['-e', '{"migrate_policy_host_namespaces": ["network"]}']


def test_docker_28_host_network_migrates_and_warns_when_untested(fleet, tmp_path, request):
    """--network host is the mode moby#50750 spares: lab-13 (Docker 26) -> lab-t (Docker 28) works; with tested
    versions that do not name lab-t's engine, the preflight warns and the migration goes on. The way back is
    refused before the freeze: lab-t's CRIU (4.2) is newer than lab-13's (4.1), and images of lab-t's CRIU failed
    to restore with 4.1.1 (measured lab-t -> lab-1: "vdso: ELF header magic mismatch")."""
    version = docker_28(fleet)
    name = 'it-vf-host-%d' % os.getpid()
    tested = ['-e', json.dumps({'_migrate_tested_versions': {'engine': ['20.10.24', '26.1.5']}})]
    try:
        docker('lab-13', 'run', '-d', '--name', name, '--network', 'host', '-v', '%s-vol:/vol' % name,
               IMAGE, 'sh', '-c', COUNTER)
        time.sleep(1.5)
        report = str(tmp_path / 'there.json')
        proc = migrate(name, 'lab-13', target='lab-t', report=report, extra=INV + ID_VERSION + HOST_NET + tested)
        rec = record(report)
        assert rec['state'] == 'Succeeded' and rec['target'] == 'lab-t', rec
        assert 'WARNING target: no integration test has run engine %s' % release(version) in proc.stdout
        assert_consecutive(counter_lines('lab-t', name, '/vol/counter.log'), 'the volume file on lab-t')
        src, tgt = fleet['lab-t']['criu']['version'], fleet['lab-13']['criu']['version']
        if tuple(map(int, release(src).split('.')[:2])) > tuple(map(int, release(tgt).split('.')[:2])):
            back = str(tmp_path / 'back.json')
            proc = migrate(name, 'lab-t', target='lab-13', report=back, check=False,
                           extra=INV + ID_VERSION + HOST_NET)
            failed = record(back)
            assert failed['state'] == 'Failed' and 'refused before the freeze' in failed['error'], failed
            assert "the target's CRIU %s is older than the source's %s" % (tgt, src) in failed['error']
            assert status('lab-t', name) == 'running' and status('lab-13', name) == 'absent'
    finally:
        remove(name, NEW)
    passed(request, fleet, 'lab-13', 'lab-t')


def test_docker_28_gate_refuses_a_container_in_another_network_namespace(fleet, tmp_path, request):
    """On lab-t (Docker 28) a container sharing another container's network namespace is refused before anything
    is frozen, with moby#50750 as the reason; it keeps running."""
    docker_28(fleet)
    name = 'it-vf-net-%d' % os.getpid()
    try:
        docker('lab-t', 'run', '-d', '--name', name + '-ns', '--network', 'none', IMAGE, 'sleep', '3600')
        docker('lab-t', 'run', '-d', '--name', name, '--network', 'container:%s-ns' % name, IMAGE,
               'sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done')
        report = str(tmp_path / 'refused.json')
        proc = migrate(name, 'lab-t', target='lab-13', report=report, extra=INV + ID_VERSION, check=False)
        assert proc.returncode != 0 and 'Traceback' not in proc.stdout
        rec = record(report)
        assert rec['state'] == 'Failed' and 'refused before the freeze' in rec['error'], rec
        assert 'source: Docker %s fails restores' % fleet['lab-t']['docker']['version'] in rec['error']
        assert 'moby#50750' in rec['error'] and 'network mode container:' in rec['error'], rec['error']
        assert status('lab-t', name) == 'running' and status('lab-13', name) == 'absent'
    finally:
        remove(name, NEW)
        remove(name + '-ns', ('lab-t',))
    passed(request, fleet, 'lab-t')


@pytest.mark.parametrize('host', NEW)
def test_confine_on_the_new_engine(fleet, host, request):
    """The confine target (container mode and process mode, escapes refused, controls escape) on this engine."""
    run_playbook('tests/integration/targets/confine/runme.yml', *INV, '-e', 'cf_container_host=%s' % host,
                 '-e', 'cf_process_host=%s' % host)
    passed(request, fleet, host)


def test_rebase_rollout_on_the_new_engines(fleet, request):
    """The rebase_rollout target with two containers on lab-13 and two on lab-t (canary, rest, rollback); the images
    are built on lab-13."""
    layout = json.dumps({'rb_hosts': 'lab-13:lab-t', 'rb_builder': 'lab-13', 'rb_layout': {'lab-13': ['a', 'b'], 'lab-t': ['c', 'd']},
                         'rb_expected_hosts': ['lab-13', 'lab-13', 'lab-t', 'lab-t']})
    run_playbook('tests/integration/targets/rebase_rollout/runme.yml', *INV, '-e', layout)
    passed(request, fleet, 'lab-13', 'lab-t')
