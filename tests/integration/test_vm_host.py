# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's virtual machine host (lab/vm.sh): its own kernel, systemd, cgroup v2, Docker's systemd driver.

Few tests on purpose: the guest runs under TCG, about 15 times slower than the machine. When lab/vm.sh could
not bring the guest up within its budget, every test here skips with the reason vm.sh recorded.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import subprocess
import textwrap

import pytest

import support_record
from lab_helpers import ROOT, STATE, VENV_BIN

INVENTORY_VM = ROOT / 'lab' / 'inventory-vm.yml'
STATUS = pathlib.Path(STATE) / 'vm' / 'status.json'


@pytest.fixture(scope='module', autouse=True)
def vm_ready():
    """Skip (visibly, with vm.sh's reason) unless the guest is up and its inventory exists."""
    return require_vm()


def require_vm():
    """vm.sh's status of a guest that is up; skips the test (with vm.sh's reason) otherwise."""
    if not STATUS.exists():
        pytest.skip('the lab VM was not brought up (no %s): run lab/vm.sh up, or lab/lab.sh up without '
                    'MTD_LAB_VM=0' % STATUS)
    status = json.loads(STATUS.read_text())
    if status.get('state') != 'ready':
        pytest.skip('the lab VM is not available: %s' % status.get('reason'))
    if not INVENTORY_VM.exists():
        pytest.skip('the lab VM has no inventory (%s missing)' % INVENTORY_VM)
    return status


@pytest.fixture(scope='module')
def vm_facts(vm_ready, tmp_path_factory):
    """host_facts of the VM, gathered once, for the support matrix."""
    return support_record.gather(['lab-vm'], str(tmp_path_factory.mktemp('vm-facts')), '-i', str(INVENTORY_VM))


@pytest.fixture
def passed(request, vm_facts):
    """Call at the end of a test: the support matrix records that it passed on the VM."""
    return lambda: support_record.record(request.node.name, [support_record.versions_row('lab-vm', vm_facts['lab-vm'])])


def play(tmp_path, text, timeout=900):
    """Run a playbook (YAML text) against the VM's inventory; fail with its output when it fails."""
    playbook = tmp_path / 'play.yml'
    playbook.write_text(textwrap.dedent(text))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               PATH='%s:%s' % (VENV_BIN, os.environ.get('PATH', '')))
    cmd = [str(VENV_BIN / 'ansible-playbook'), '-i', str(INVENTORY_VM), str(playbook)]
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail('%s failed (rc=%d):\n%s\n%s' % (playbook.name, proc.returncode, proc.stdout[-12000:],
                                                    proc.stderr[-4000:]))
    return proc


def test_facts_report_cgroup_v2_the_systemd_driver_and_the_guests_own_kernel(tmp_path, passed):
    play(tmp_path, '''
        - hosts: vm
          gather_facts: false
          tasks:
            - name: Facts of the VM host
              mtd.containers.host_facts:
            - name: cgroup v2, the systemd driver, Debian's kernel (not the machine's), dirty-page tracking
              ansible.builtin.assert:
                that:
                  - ansible_facts.mtd.cgroup.version == 2
                  - ansible_facts.mtd.docker.cgroup_driver == 'systemd'
                  - ansible_facts.mtd.os.kernel != %r
                  - ansible_facts.mtd.os.kernel is search('deb13')
                  - ansible_facts.mtd.criu.check_ok
                  - ansible_facts.mtd.criu.dirty_tracking
                fail_msg: "{{ ansible_facts.mtd | to_nice_json }}"
    ''' % os.uname().release)
    passed()


def test_confine_container_on_a_systemd_slice_and_the_control_escapes(tmp_path, passed):
    """Container mode under the systemd driver: limits on the slice, private cgroupns, mount refused; an
    unconfined control with the same capabilities, in the host's cgroup namespace as both start, mounts cgroup2
    and raises its own memory limit. (With a private cgroup namespace alone the kernel already refuses writes to
    the namespace root's limit files; the seccomp profile refuses the mount itself.)"""
    suffix = random.randint(100000, 999999)
    play(tmp_path, '''
        - hosts: vm
          gather_facts: false
          vars:
            ctr: it-vm-c-%(s)d
            ctl: it-vm-ctl-%(s)d
            image: 127.0.0.1:5000/mtd/busybox:latest
            slice_dir: /sys/fs/cgroup/mtd.slice/mtd-it\\x2dvm\\x2dc\\x2d%(s)d.slice
            attack: >-
              mkdir -p /mnt/cg; C=$(cut -d: -f3 /proc/self/cgroup);
              mount -t cgroup2 none /mnt/cg && echo mounted &&
              echo 536870912 > /mnt/cg$C/memory.max && echo raised && cat /mnt/cg$C/memory.max;
              echo 1000 > /sys/fs/cgroup/pids.max 2>/dev/null && echo sysfs-write;
              cat /proc/self/cgroup
          tasks:
            - name: Containers, and cleanup
              block:
                # The guest's engine has no bridge network (bridge: none), as on every lab host: --network none.
                # Both with CAP_SYS_ADMIN, 64 MiB and Docker's default seccomp profile (which allows mount with
                # that capability) in the host's cgroup namespace; confine gives the first one a private one.
                - name: The container to confine and the control
                  ansible.builtin.command:
                    argv: [docker, run, -d, --name, "{{ item }}", --cap-add, SYS_ADMIN, --memory, 64m,
                           --cgroupns, host, --network, none, "{{ image }}", sleep, "3600"]
                  loop: ["{{ ctr }}", "{{ ctl }}"]
                  changed_when: true

                - name: Confine the first one
                  mtd.containers.confine:
                    mode: container
                    name: "{{ ctr }}"
                    limits: {memory: 48m, pids: 32, cpus: 0.5, cpu_weight: 200}
                  register: confined

                - name: Again - nothing changes
                  mtd.containers.confine:
                    mode: container
                    name: "{{ ctr }}"
                    limits: {memory: 48m, pids: 32, cpus: 0.5, cpu_weight: 200}
                  register: again

                - name: What the engine, systemd and the cgroup files say
                  ansible.builtin.shell: |
                    set -e
                    docker inspect -f '{{ '{{' }}.HostConfig.CgroupParent{{ '}}' }} {{ '{{' }}.HostConfig.CgroupnsMode{{ '}}' }}' {{ ctr }}
                    cat /proc/$(docker inspect -f '{{ '{{' }}.State.Pid{{ '}}' }}' {{ ctr }})/cgroup
                    cat '{{ slice_dir }}/memory.max' '{{ slice_dir }}/pids.max' '{{ slice_dir }}/cpu.max' '{{ slice_dir }}/cpu.weight'
                    systemctl show -p MemoryMax -p TasksMax --value '{{ confined.cgroup.systemd_slice }}'
                  register: seen
                  changed_when: false

                - name: The attack inside the confined container and inside the control
                  ansible.builtin.command:
                    argv: [docker, exec, "{{ item }}", sh, -c, "{{ attack }}"]
                  loop: ["{{ ctr }}", "{{ ctl }}"]
                  register: attacks
                  failed_when: false
                  changed_when: false

                - name: Limits on the slice, private cgroupns, the confined attack refused, the control escapes
                  vars:
                    lines: "{{ seen.stdout_lines }}"
                    inside: "{{ attacks.results[0].stdout_lines }}"
                    control: "{{ attacks.results[1].stdout_lines }}"
                  ansible.builtin.assert:
                    that:
                      - confined is changed
                      - confined.container.recreated
                      - confined.cgroup.systemd_slice == 'mtd-it\\\\x2dvm\\\\x2dc\\\\x2d%(s)d.slice'
                      - confined.cgroup.path == '/mtd.slice/mtd-it\\\\x2dvm\\\\x2dc\\\\x2d%(s)d.slice'
                      - confined.seccomp.mode == 2
                      - again is not changed
                      - lines[0] == confined.cgroup.systemd_slice ~ ' private'
                      - lines[1] is match('0::/mtd.slice/mtd-it\\\\\\\\x2dvm.*\\.slice/docker-[0-9a-f]{64}\\.scope$')
                      - lines[2] == '50331648'
                      - lines[3] == '32'
                      - lines[4] == '50000 100000'
                      - lines[5] == '200'
                      - lines[6:8] == ['50331648', '32']
                      - "'mounted' not in inside"
                      - "'sysfs-write' not in inside"
                      - inside[-1] == '0::/'
                      - attacks.results[0].stderr is search('permission denied|Operation not permitted', ignorecase=true)
                      - control[0:3] == ['mounted', 'raised', '536870912']
                    fail_msg: "{{ [seen.stdout_lines, attacks.results | map(attribute='stdout_lines') | list,
                                  attacks.results | map(attribute='stderr') | list, confined] | to_json }}"
              always:
                - name: Remove the containers and the slice
                  ansible.builtin.shell: >-
                    docker rm -f {{ ctr }} {{ ctl }} >/dev/null 2>&1;
                    systemctl stop 'mtd-it\\x2dvm\\x2dc\\x2d%(s)d.slice'; systemctl revert 'mtd-it\\x2dvm\\x2dc\\x2d%(s)d.slice'; true
                  changed_when: true
    ''' % {'s': suffix})
    passed()


def test_confine_process_on_cgroup_v2_and_the_control_escapes(tmp_path, passed):
    """Process mode on cgroup v2 beside systemd: the level gets its limits; the confined command (an
    unprivileged user) can neither raise them nor leave the level; root unconfined can."""
    suffix = random.randint(100000, 999999)
    play(tmp_path, '''
        - hosts: vm
          gather_facts: false
          vars:
            job: it-vm-p-%(s)d
            level: /sys/fs/cgroup/mtd/it-vm-p-%(s)d
            attack: >-
              cat /proc/self/cgroup; cat /sys/fs/cgroup/mtd/it-vm-p-%(s)d/pids.max;
              echo 1000 > /sys/fs/cgroup/mtd/it-vm-p-%(s)d/pids.max && echo raised;
              echo $$ > /sys/fs/cgroup/cgroup.procs && echo moved;
              mount -t cgroup2 none /mnt && echo mounted; true
          tasks:
            - name: Process, and cleanup
              block:
                - name: The attack as a confined unprivileged command
                  mtd.containers.confine:
                    mode: process
                    name: "{{ job }}"
                    user: nobody
                    detach: false
                    limits: {pids: 32, memory: 64m}
                    command: [sh, -c, "{{ attack }}"]
                  register: confined

                - name: The level's files after the confined run
                  ansible.builtin.command: "cat {{ level }}/pids.max {{ level }}/memory.max"
                  register: level_files
                  changed_when: false

                - name: Control - root, unconfined, in a throwaway level of its own
                  ansible.builtin.shell: >-
                    mkdir -p {{ level }}-ctl && echo 32 > {{ level }}-ctl/pids.max &&
                    sh -c 'echo $$ > {{ level }}-ctl/cgroup.procs; echo 1000 > {{ level }}-ctl/pids.max && echo raised;
                    echo $$ > /sys/fs/cgroup/cgroup.procs && echo moved'
                  register: control
                  changed_when: true

                - name: The confined command stayed in its level under its limits; the control escaped
                  vars:
                    out: "{{ confined.stdout_lines }}"
                  ansible.builtin.assert:
                    that:
                      - confined.rc == 0
                      - confined.cgroup.version == 2
                      - confined.cgroup.path == '/mtd/' ~ job
                      - out[0] == '0::/mtd/' ~ job
                      - out[1] == '32'
                      - "'raised' not in out"
                      - "'moved' not in out"
                      - "'mounted' not in out"
                      - level_files.stdout_lines == ['32', '67108864']
                      - control.stdout_lines == ['raised', 'moved']
                    fail_msg: "{{ [confined, level_files.stdout_lines, control.stdout_lines] | to_json }}"
              always:
                - name: Remove the levels
                  ansible.builtin.shell: "rmdir {{ level }}-ctl {{ level }} 2>/dev/null; rmdir /sys/fs/cgroup/mtd 2>/dev/null; true"
                  changed_when: true
    ''' % {'s': suffix})
    passed()
