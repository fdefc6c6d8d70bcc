# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Migrations between a namespace host (lab-1: Docker 20.10, cgroup v1, cgroupfs driver, the machine's kernel)
and the lab's virtual machine (lab-vm: its own kernel, cgroup v2, Docker 26 with the systemd driver), both ways,
through the forwarders lab/vm.sh runs (the guest's network exists only in the netns mtdvm):

- lab-1 -> lab-vm: the source connects to the guest's stand-in 127.0.2.20 (forwarded into mtdvm to 10.77.0.2);
  the page server of a post-copy listens on 127.0.1.1 and the guest reaches it at 10.77.0.11.
- lab-vm -> lab-1: the source connects to 10.77.0.11 (forwarded out of mtdvm to 127.0.1.1); the guest's page
  server listens on 10.77.0.2 and lab-1 reaches it at 127.0.2.20.

Few tests on purpose (the guest runs under TCG, about 15 times slower); they skip with vm.sh's reason when the
guest is not up. Every passed test records the versions of both ends for the support matrix.
"""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

import support_record
from lab_helpers import ROOT, STATE, docker, require_lab
from test_migrate import assert_consecutive, counter_lines, migrate, record, start_workload, status
from test_vm_host import INVENTORY_VM, require_vm

INV = ['-i', str(INVENTORY_VM)]
# Debian 12 (lab-1) and 13 (the guest) are the same OS under granularity id
ID_VERSION = ['-e', 'migrate_granularity=id_version']
VM_LOOP = '127.0.2.20'          # the guest's stand-in in the machine's netns (lab/vm.sh VM_LOOP)
LAB1_IN_MTDVM = '10.77.0.11'    # lab-1 (127.0.1.1) as the guest reaches it (lab/vm.sh forward_hosts)
PORTS = (49100, 49101, 49102, 49103)   # lab/vm.sh VM_FORWARD_PORTS: a transfer port and its page-server port, twice


def vm(*args, check=True, timeout=180):
    """A command in the guest over ssh (lab/vm.sh ssh); the arguments are quoted for the guest's shell."""
    proc = subprocess.run(['bash', str(ROOT / 'lab' / 'vm.sh'), 'ssh', shlex.join(args)], capture_output=True,
                          text=True, timeout=timeout, check=False, env=dict(os.environ, MTD_LAB_STATE=STATE))
    if check and proc.returncode != 0:
        raise AssertionError('in the guest: %s failed: %s' % (shlex.join(args), proc.stderr))
    return proc


def on(host, *args, check=True):
    return vm('docker', *args, check=check) if host == 'lab-vm' else docker(host, *args, check=check)


def vm_status(name):
    proc = vm('docker', 'inspect', '-f', '{{.State.Status}}', name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else 'absent'


def vm_counter(name, path):
    return [int(x) for x in vm('docker', 'exec', name, 'cat', path).stdout.split()]


@pytest.fixture(scope='module')
def ends(tmp_path_factory):
    """host_facts of lab-1 and the guest (skips without the guest); the forwarders of lab/vm.sh run."""
    require_vm()
    require_lab()
    forward = os.path.join(STATE, 'vm', 'forward')
    missing = [p for p in PORTS if not os.path.exists(os.path.join(forward, 'vm-%d.pid' % p))]
    if missing:
        pytest.fail('lab/vm.sh runs no forwarder for ports %s: the lab was brought up by an older vm.sh '
                    '(run lab/lab.sh up again)' % missing)
    facts = support_record.gather(['lab-1', 'lab-vm'], str(tmp_path_factory.mktemp('vm-mig-facts')), *INV)
    return facts


@pytest.fixture
def wanderer():
    name = start_workload('lab-1')
    yield name
    docker('lab-1', 'rm', '-f', name, check=False)
    docker('lab-1', 'volume', 'rm', '-f', name + '-vol', check=False)
    vm('docker', 'rm', '-f', name, check=False)
    vm('docker', 'volume', 'rm', '-f', name + '-vol', check=False)


def hop(name, here, there, report, memory, port):
    """One migration with the forwarders' addresses; returns the record."""
    if there == 'lab-vm':
        connect, page_connect = '%s:%d' % (VM_LOOP, port), LAB1_IN_MTDVM
    else:
        connect, page_connect = '%s:%d' % (LAB1_IN_MTDVM, port), VM_LOOP
    extra = INV + ID_VERSION + ['-e', 'migrate_memory=%s' % memory, '-e', 'migrate_transfer_port=%d' % port,
                                '-e', 'migrate_transfer_connect=%s' % connect,
                                '-e', 'migrate_page_server_connect=%s' % page_connect,
                                '-e', 'migrate_transfer_timeout=300', '-e', 'migrate_health_timeout=120',
                                # Docker 20.10 on cgroup v1 gives a container the host's cgroup namespace; the
                                # restore keeps the namespaces of the dump, and the cgroup v2 target's policy
                                # accepts that only when told (docs/migration.md, "cgroup v1 and v2")
                                '-e', '{"migrate_policy_host_namespaces": ["cgroup"]}',
                                # the guest has no zstd (Debian's image of lab/vm.sh), and compression auto
                                # chooses on the source alone
                                '-e', 'migrate_transfer_compression=gzip']
    migrate(name, here, target=there, report=report, extra=extra)
    rec = record(report)
    assert rec['state'] == 'Succeeded' and rec['target'] == there, rec
    assert rec['phases']['memory'] == memory, rec['phases']
    gone = vm_status(name) if here == 'lab-vm' else status(here, name)
    running = vm_status(name) if there == 'lab-vm' else status(there, name)
    assert (gone, running) == ('absent', 'running'), (gone, running)
    return rec


@pytest.mark.parametrize('memory', ['copy', 'lazy'])
def test_migrate_lab1_to_the_vm_and_back(ends, wanderer, memory, tmp_path, request):
    """lab-1 (20.10, cgroup v1) -> lab-vm (26, cgroup v2, systemd driver) -> lab-1, the counter contiguous in
    the writable layer and the volume at every step, and the container's own output one unbroken sequence."""
    if (ends['lab-1']['cgroup']['version'], ends['lab-vm']['cgroup']['version']) == (1, 2):
        pytest.skip('a cgroup v1 -> v2 restore does not work yet (measured 2026-12-02, CRIU 4.1.1 on both ends): '
                    'with manage-cgroups=ignore CRIU passes the cgroup step, then stops with "mnt: No mapping for '
                    '521:(null) mountpoint" - the v1 dump holds the per-controller /sys/fs/cgroup/<controller> '
                    'bind mounts that runc records as external, and the v2 target\'s runc maps only its one '
                    'cgroup2 mount (docs/lab-vm.md)')
    name, seen = wanderer, 0
    for step, (here, there) in enumerate((('lab-1', 'lab-vm'), ('lab-vm', 'lab-1'))):
        hop(name, here, there, str(tmp_path / ('%d.json' % step)), memory, PORTS[2 * step])
        for path in ('/state/counter.log', '/vol/counter.log'):
            lines = vm_counter(name, path) if there == 'lab-vm' else counter_lines(there, name, path)
            assert_consecutive(lines, '%s on %s' % (path, there))
        assert len(lines) > seen, 'the counter did not go on after %s -> %s' % (here, there)
        seen = len(lines)
        if there == 'lab-vm':
            # the restored tree lives under the systemd driver's scope on cgroup v2
            pid = vm('docker', 'inspect', '-f', '{{.State.Pid}}', name).stdout.strip()
            cgroup = vm('cat', '/proc/%s/cgroup' % pid).stdout.strip()
            assert cgroup.startswith('0::/system.slice/docker-') and cgroup.endswith('.scope'), cgroup
    logs = [int(x) for x in docker('lab-1', 'logs', name).stdout.split()]
    assert logs and logs[0] > 1 and logs == list(range(logs[0], logs[0] + len(logs))), logs[:5]
    support_record.record(request.node.name, [support_record.versions_row(h, ends[h]) for h in ('lab-1', 'lab-vm')])
