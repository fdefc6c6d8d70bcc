# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real pre-copy on the lab's VM host (lab/vm.sh), the only lab kernel that tracks dirty pages.

A workload that dirties memory at a known rate (tests/integration/files/dirtier.c: 64 MiB held, 512 pages
a second rewritten in a 16 MiB region, a counter in memory) is checkpointed twice: once as a single
stop-and-copy snapshot (the baseline, left running), then with ``precopy: {mode: auto}``. The rounds must
stop for a documented reason, every round is listed with its pages, prediction and duration, the final
freeze writes fewer pages than the stop-and-copy dump, and the container restored from the bundle (the
pre-copy chain: ``precopy/1..N`` and the ``parent`` links, with ``image_delivery: direct``) counts on.

The source and the target are the same VM here, so that the module-level numbers (the rounds' pages against the
stop-and-copy dump of the same workload) come from one kernel; the role's pre-copy migration from the guest to
lab-1 (another kernel, cgroup v1, Docker 20.10) is test_vm_migrate's ``precopy`` case. Few runs on purpose: the
guest runs under TCG, about 15 times slower.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
import textwrap

import pytest

from lab_helpers import ROOT, STATE
from test_vm_host import require_vm
from test_vm_host import play as vm_play

DIRTIER_C = ROOT / 'tests' / 'integration' / 'files' / 'dirtier.c'
REGISTRY_BIN = '/usr/bin/docker-registry'      # Debian's docker-registry, run inside the guest on its loopback
GUEST_DIR = '/opt/mtd-precopy-test'
IMAGE = '127.0.0.1:5000/mtd/dirtier:latest'     # the guest's own registry (its own 127.0.0.1)
SOURCE = 'lab-vm'
TARGET = 'lab-vm'
# the workload: MiB held, MiB of the rewritten region, pages rewritten per second
TOTAL_MIB, REGION_MIB, RATE = 64, 16, 512
STOP_CODES = ('converged', 'diverging', 'stalled', 'time_limit', 'max_rounds')


def _ssh_argv(command):
    """ssh into the guest the way lab/inventory-vm.yml does (through socat inside the netns mtdvm)."""
    return ['ssh', '-i', '%s/ssh/id_ed25519' % STATE, '-o', 'UserKnownHostsFile=%s/vm/known_hosts' % STATE,
            '-o', 'StrictHostKeyChecking=yes', '-o', 'HostKeyAlias=lab-vm', '-o', 'BatchMode=yes',
            '-o', 'ProxyCommand=ip netns exec mtdvm socat STDIO TCP:%h:%p', 'root@10.77.0.2', command]


def guest(command, stdin=None, timeout=300):
    """Run a shell command in the guest; AssertionError with its output when it fails."""
    proc = subprocess.run(_ssh_argv(command), input=stdin, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError('in the VM, %r failed (rc=%d): %s %s'
                             % (command, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    return proc.stdout.decode('utf-8', 'replace')


@pytest.fixture(scope='module')
def vm_image():
    """The guest is up; the workload image is in the guest's own registry (so that it has a digest)."""
    require_vm()
    gcc = shutil.which('gcc')
    if not gcc or not os.path.exists(REGISTRY_BIN):
        pytest.skip('the pre-copy workload needs gcc (static glibc) and %s on this machine' % REGISTRY_BIN)
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, 'dirtier')
        subprocess.run([gcc, '-static', '-O2', '-o', binary, str(DIRTIER_C)], check=True, timeout=120)
        guest('mkdir -p %s/root %s/data' % (GUEST_DIR, GUEST_DIR))
        with open(binary, 'rb') as handle:
            guest('cat > %s/root/dirtier && chmod 755 %s/root/dirtier' % (GUEST_DIR, GUEST_DIR), stdin=handle.read())
    if 'up' not in guest('test -s %s/registry.pid && kill -0 $(cat %s/registry.pid) && echo up; true'
                         % (GUEST_DIR, GUEST_DIR)):
        with open(REGISTRY_BIN, 'rb') as handle:
            guest('cat > %s/registry && chmod 755 %s/registry' % (GUEST_DIR, GUEST_DIR), stdin=handle.read())
        config = textwrap.dedent('''\
            version: 0.1
            storage: {filesystem: {rootdirectory: %s/data}}
            http: {addr: 127.0.0.1:5000}
        ''' % GUEST_DIR)
        guest('cat > %s/registry.yml' % GUEST_DIR, stdin=config.encode())
        guest('cd %s && (setsid ./registry serve registry.yml >registry.log 2>&1 & echo $! > registry.pid)' % GUEST_DIR)
    guest('tar -C %s/root -c dirtier | docker import - %s >/dev/null' % (GUEST_DIR, IMAGE))
    # the registry may still be starting
    guest('for i in $(seq 60); do docker push %s >/dev/null 2>&1 && exit 0; sleep 1; done; docker push %s'
          % (IMAGE, IMAGE), timeout=600)
    yield IMAGE
    guest('kill $(cat %s/registry.pid) 2>/dev/null; rm -f %s/registry.pid; true' % (GUEST_DIR, GUEST_DIR))


def play(tmp_path, text):
    """test_vm_host's playbook runner, with the longer time a pre-copy run under TCG takes."""
    return vm_play(tmp_path, text, timeout=1200)


def test_precopy_rounds_shrink_the_freeze_and_the_restored_counter_goes_on(tmp_path, vm_image):
    suffix = random.randint(100000, 999999)
    result = tmp_path / 'result.json'
    play(tmp_path, '''
        - hosts: %(source)s
          gather_facts: false
          vars:
            ctr: it-pc-%(s)d
            mig: it-pc-mig-%(s)d
            dest: /dev/shm/it-pc-%(s)d
          tasks:
            - name: The workload, the two checkpoints, the restore; and cleanup
              block:
                - name: The dirtying workload (one process, a counter in memory)
                  ansible.builtin.command:
                    argv: [docker, run, -d, --name, "{{ ctr }}", --network, none, "%(image)s", /dirtier,
                           "%(total)d", "%(region)d", "%(rate)d"]
                  changed_when: true

                - name: Its memory is written once (ready) and it counts
                  ansible.builtin.shell: docker logs {{ ctr }} 2>&1 | tail -n +2 | wc -l
                  register: counted
                  until: counted.stdout | int >= 2
                  retries: 120
                  delay: 1
                  changed_when: false

                - name: A private place for the bundles
                  ansible.builtin.file:
                    path: "{{ dest }}"
                    state: directory
                    mode: "0700"

                - name: The baseline - a single stop-and-copy dump of the same workload (left running)
                  mtd.containers.checkpoint:
                    container: "{{ ctr }}"
                    name: base
                    dest: "{{ dest }}"
                    leave_running: true
                  register: base

                - name: The baseline's bundle goes
                  mtd.containers.checkpoint:
                    container: "{{ ctr }}"
                    name: base
                    dest: "{{ dest }}"
                    state: absent

                - name: Check mode reports pre-copy as available and does nothing
                  mtd.containers.checkpoint:
                    container: "{{ ctr }}"
                    name: "{{ mig }}"
                    dest: "{{ dest }}"
                    precopy: {mode: auto}
                  check_mode: true
                  register: checked

                - name: Pre-copy rounds while it runs, then the freeze and the final dump
                  mtd.containers.checkpoint:
                    container: "{{ ctr }}"
                    name: "{{ mig }}"
                    dest: "{{ dest }}"
                    precopy: {mode: auto}
                  register: pc

                - name: The last count of the frozen source; the bundle's chain on disk
                  ansible.builtin.shell: |
                    docker logs {{ ctr }} 2>&1 | tail -1
                    readlink {{ dest }}/{{ mig }}/criu/parent
                  register: before
                  changed_when: false

                - name: The source leaves
                  ansible.builtin.command: docker rm -f {{ ctr }}
                  changed_when: true

                - name: The standby (the target would be another host)
                  mtd.containers.restore:
                    migration_id: "{{ mig }}"
                    state: prepared
                    config: "{{ pc.config }}"
                  delegate_to: %(target)s

                - name: Restore from the bundle with its pre-copy chain
                  mtd.containers.restore:
                    migration_id: "{{ mig }}"
                    state: started
                    bundle: "{{ dest }}/{{ mig }}"
                    config: "{{ pc.config }}"
                    image_delivery: direct
                    keep_bundle: true
                  delegate_to: %(target)s
                  register: restored

                - name: The restored counter goes on
                  ansible.builtin.shell: docker logs {{ ctr }} 2>&1 | tail -1
                  register: after
                  until: after.stdout is match('^[0-9]+$') and after.stdout | int > before.stdout_lines[0] | int
                  retries: 60
                  delay: 1
                  changed_when: false
                  delegate_to: %(target)s

                - name: What was measured, for the test's checks
                  ansible.builtin.copy:
                    content: "{{ {'base': base.precopy, 'checked': checked.precopy, 'pc': pc.precopy,
                                  'timings': pc.timings, 'before': before.stdout_lines, 'after': after.stdout,
                                  'restored': restored.precopy_rounds | default(none),
                                  'delivery': restored.image_delivery | default(none)} | to_json }}"
                    dest: %(result)s
                    mode: "0600"
                  delegate_to: localhost
              always:
                - name: Remove the containers and the bundles
                  ansible.builtin.shell: docker rm -f {{ ctr }} >/dev/null 2>&1; rm -rf {{ dest }}; true
                  changed_when: true
    ''' % {'s': suffix, 'image': vm_image, 'total': TOTAL_MIB, 'region': REGION_MIB, 'rate': RATE,
           'source': SOURCE, 'target': TARGET, 'result': result})
    seen = json.loads(result.read_text())
    base, pc, checked = seen['base'], seen['pc'], seen['checked']
    print(json.dumps(seen, indent=1))   # the rounds, in the test's output (-s) for bench/RESULTS.md
    # the single dump: the kernel tracks dirty pages, but precopy is off
    assert base['available'] and not base['used'], base
    assert base['final']['pages'] >= TOTAL_MIB * 256, base
    assert checked['available'] and checked['used'] and 'rounds' not in checked, checked
    # pre-copy: rounds, a documented stop reason, every round with pages, prediction and duration
    assert pc['used'], pc
    assert pc['stop']['code'] in STOP_CODES, pc['stop']
    rounds = pc['rounds']
    pre = [item for item in rounds if item['kind'] == 'pre-dump']
    assert len(pre) >= 2 and rounds[-1]['kind'] == 'final', rounds
    assert [item['dir'] for item in pre] == ['precopy/%d' % k for k in range(1, len(pre) + 1)], rounds
    for item in rounds:
        assert item['pages'] is not None and item['duration'] > 0, item
    for item in rounds[1:]:
        assert item['predicted_pages'] is not None, item
    assert pre[0]['pages'] >= TOTAL_MIB * 256, pre[0]       # round 1 copies everything
    assert pre[1]['pages'] < pre[0]['pages'] / 4, pre       # round 2 copies what round 1 left dirty
    # the freeze writes fewer pages than the stop-and-copy dump of the same workload
    assert rounds[-1]['pages'] == pc['final']['pages']
    assert pc['final']['pages'] < base['final']['pages'] / 4, (pc['final'], base['final'])
    # the target restored from the chain, directly, and the counter went on
    assert seen['before'][1] == '../precopy/%d' % len(pre), seen['before']
    assert seen['restored'] == len(pre) and seen['delivery']['used'] == 'direct', seen
    assert int(seen['after']) > int(seen['before'][0]), seen
