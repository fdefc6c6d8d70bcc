# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Migrations between a namespace host (lab-1: Docker 20.10, cgroup v1, cgroupfs driver, the machine's kernel and
CPU) and the lab's virtual machine (lab-vm: its own kernel, cgroup v2, Docker 26 with the systemd driver, TCG's
CPU), through the forwarders lab/vm.sh runs (the guest's network exists only in the netns mtdvm):

- lab-1 -> lab-vm: the source connects to the guest's stand-in 127.0.2.20 (forwarded into mtdvm to 10.77.0.2);
  refused before the freeze by the CPU gate (this machine has AVX-512, TCG has none).
- lab-vm -> lab-1: the source connects to 10.77.0.11 (forwarded out of mtdvm to 127.0.1.1); the restore maps the
  cgroup2 mount, leaves the tasks in the cgroup lab-1's engine made, and leaves out the guest engine's mounts on
  kernel files this machine's kernel lacks (/proc/sysrq-trigger, docs/lab-vm.md).

Few tests on purpose (the guest runs under TCG, about 15 times slower); they skip with vm.sh's reason when the
guest is not up. A migration that succeeds records the versions of both ends for the support matrix.
"""

from __future__ import annotations

import os
import random
import shlex
import subprocess
import time

import pytest

import support_record
from lab_helpers import ROOT, STATE, docker, require_lab
from test_migrate import COUNTER, IMAGE, assert_consecutive, counter_lines, migrate, record, start_workload, status
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


def hop_args(there, memory, port):
    """The playbook's extra arguments for one migration with the forwarders' addresses."""
    if there == 'lab-vm':
        connect, page_connect = '%s:%d' % (VM_LOOP, port), LAB1_IN_MTDVM
    else:
        connect, page_connect = '%s:%d' % (LAB1_IN_MTDVM, port), VM_LOOP
    return INV + ID_VERSION + ['-e', 'migrate_memory=%s' % memory, '-e', 'migrate_transfer_port=%d' % port,
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


def test_lab1_to_the_vm_is_refused_before_the_freeze_by_the_cpu_gate(ends, wanderer, tmp_path):
    """This machine's CPU has AVX-512, the TCG guest's has none: a process started on lab-1 chose its code at its
    start (busybox's static glibc picks AVX-512 routines) and, restored in the guest, died with "trap invalid
    opcode" (measured 2026-12-02). The preflight compares the hosts' user-visible instruction sets and refuses
    before anything is frozen; the container runs on, on lab-1."""
    if not set(ends['lab-1']['cpu']['isa'] or []) - set(ends['lab-vm']['cpu']['isa'] or []):
        pytest.skip('the guest\'s CPU has every instruction set of this machine\'s: nothing to refuse')
    report = str(tmp_path / 'refused.json')
    proc = migrate(wanderer, 'lab-1', target='lab-vm', report=report, extra=hop_args('lab-vm', 'copy', PORTS[0]),
                   check=False)
    assert proc.returncode != 0
    rec = record(report)
    assert rec['state'] == 'Failed' and "the target's CPU lacks instruction sets the source's CPU has" in rec['error']
    assert 'avx512f' in rec['error'] and rec.get('frozen_at') is None, rec
    assert (status('lab-1', wanderer), vm_status(wanderer)) == ('running', 'absent')
    before = len(counter_lines('lab-1', wanderer, '/state/counter.log'))
    time.sleep(1)
    lines = counter_lines('lab-1', wanderer, '/state/counter.log')
    assert_consecutive(lines, 'the counter on lab-1')
    assert len(lines) > before, 'the container on lab-1 did not run on after the refusal'


@pytest.mark.parametrize('memory', ['copy', 'precopy', 'postcopy'])
def test_vm_to_lab1_moves_across_kernels_cgroup_versions_and_engines(ends, tmp_path, request, memory):
    """A container started in the guest (cgroup v2, the systemd driver, Docker 26) moves to lab-1 (cgroup v1,
    Docker 20.10): the CPU gate lets it go (the guest's instruction sets are a subset of this machine's), the
    restore maps a cgroup2 mount of the dump to an empty stand-in (cgroup_mount_map; a container in the host's
    cgroup namespace has one), CRIU leaves the tasks in the cgroup lab-1's engine made, and the mounts Docker 26
    put on /proc files this machine's kernel lacks are left out (drop_absent_kernel_mounts; before it, CRIU
    stopped at /proc/sysrq-trigger). A failure must roll back to exactly one copy, running in the guest. Once with
    each way the memory moves: stop-and-copy, pre-copy rounds from the guest's kernel (the parent chain delivered
    to lab-1's CRIU), and post-copy (lab-1 fetches the pages from the frozen guest through the forwarders)."""
    name = 'it-vm-%06d' % random.randrange(10 ** 6)
    vm('docker', 'pull', IMAGE)     # by the registry forwarder, so that the image has its registry digest
    vm('docker', 'run', '-d', '--name', name, '--network', 'none', '--cpus', '0.25', '--memory', '32m',
       '--label', 'mtd.units=5', '-v', '%s-vol:/vol' % name,
       '--mount', 'type=tmpfs,dst=/scratch,tmpfs-size=4m,tmpfs-mode=1770', IMAGE, 'sh', '-c', COUNTER)
    time.sleep(3)
    report = str(tmp_path / 'back.json')
    try:
        proc = migrate(name, 'lab-vm', target='lab-1', report=report,
                       extra=hop_args('lab-1', 'lazy' if memory == 'postcopy' else 'copy', PORTS[2])
                       # pre-copy needs the source's dirty-page tracking: the guest's kernel has it
                       + (['-e', 'migrate_precopy=auto'] if memory == 'precopy' else []), check=False)
        rec = record(report)
        if proc.returncode != 0:
            assert rec['state'] == 'Failed', rec
            assert 'No mapping for' not in rec['error'], 'the cgroup mounts were not mapped: %s' % rec['error']
            assert (vm_status(name), status('lab-1', name)) == ('running', 'absent')
            lines = vm_counter(name, '/state/counter.log')
            assert_consecutive(lines, 'the counter in the guest after the rollback')
            raise AssertionError('the migration failed (rolled back to the guest): %s' % rec['error'])
        assert rec['state'] == 'Succeeded' and rec['target'] == 'lab-1', rec
        assert rec['phases']['memory'] == ('lazy' if memory == 'postcopy' else 'copy'), rec['phases']
        precopy = rec['precopy']
        if memory == 'precopy':
            # rounds while it ran in the guest, a documented stop, the freeze after them; lab-1 restored the chain
            assert precopy['used'] and precopy['stop']['code'], precopy
            kinds = [item['kind'] for item in precopy['rounds']]
            assert kinds[0] == 'pre-dump' and kinds[-1] == 'final', precopy['rounds']
            assert rec['phases']['image_delivery'] == 'direct', rec['phases']
        else:
            assert not precopy.get('used'), precopy
        adapted = rec['phases']['criu_adapted']
        assert adapted['manage_cgroups'] == 'ignore', adapted     # v2 images on a v1 host
        for path in ('/proc/sysrq-trigger', '/proc/kcore'):
            if not os.path.exists(path):
                # the guest's kernel has it and Docker 26 masks it (or makes it read-only) by a bind mount
                assert path in adapted['mounts_dropped'], adapted
        assert (vm_status(name), status('lab-1', name)) == ('absent', 'running')
        for path in ('/state/counter.log', '/vol/counter.log'):
            assert_consecutive(counter_lines('lab-1', name, path), '%s on lab-1' % path)
        support_record.record(request.node.name, [support_record.versions_row(h, ends[h]) for h in ('lab-vm', 'lab-1')])
    finally:
        docker('lab-1', 'rm', '-f', name, check=False)
        docker('lab-1', 'volume', 'rm', '-f', name + '-vol', check=False)
        vm('docker', 'rm', '-f', name, check=False)
        vm('docker', 'volume', 'rm', '-f', name + '-vol', check=False)
