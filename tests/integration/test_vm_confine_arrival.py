# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Confined on arrival on cgroup v2 under Docker's systemd driver (issue 14), on the lab's VM host.

test_confine_arrival.py proves confinement on arrival on the machine's cgroup v1 (cgroupfs driver). Here the
same CAP_SYS_ADMIN counter (tests/integration/test_confine_arrival.py's WORKLOAD: a counter in memory, in its
writable layer and in a volume) runs on the guest, which was never confined; before it moves, the very same
process tree mounts cgroup2 and tmpfs and unshares a mount namespace (the control). It is checkpointed, the
source container and its volume are removed (the target would be another host), and restore brings it back
with ``confine``: the level is the slice ``mtd-<name>.slice`` with its limits as unit properties, the tasks are
in ``docker-<id>.scope`` below it, and the same escapes now fail; the memory limit kills an allocation past it
and a fork loop stops at the pids limit.

The source and the target are the same VM (the only cgroup v2 host of the lab; a migration between the
namespace hosts and the VM stops at issue 13's image differences). The probes run as children of the
restored shell, given through the volume's directory on the guest (never `docker exec`, whose process gets the
container's configured profile from runc instead of what CRIU restored).
"""

from __future__ import annotations

import json
import random
import shlex

import pytest

from test_confine_arrival import WORKLOAD, assert_consecutive
from test_vm_host import play as vm_play
from test_vm_host import require_vm
from test_vm_precopy import guest

IMAGE = '127.0.0.1:5000/mtd/busybox:latest'
LIMITS = {'memory': '48m', 'pids': 40, 'cpus': 0.5}
CAPABILITIES = ['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE',
                'NET_RAW', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT', 'SYS_ADMIN']
# cgroup v2 forms of test_confine_arrival's PROBES; exit status 0 = the attempt succeeded
PROBES = {
    'mount_cgroupfs': 'mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg && umount /tmp/cg',
    'remount_cgroupfs_rw': 'mount -o remount,rw /sys/fs/cgroup && mount -o remount,ro /sys/fs/cgroup',
    'unshare_mount': 'mkdir -p /tmp/u && unshare -m sh -c "mount -t tmpfs none /tmp/u"',
    'mount_tmpfs': 'mkdir -p /tmp/t && mount -t tmpfs none /tmp/t && umount /tmp/t',
    'raise_memory_limit': 'echo 1073741824 > /sys/fs/cgroup/memory.max',
}
# what the unconfined source can do (the remount and the limit need a cgroup namespace root it owns: Docker's
# default profile on v2 keeps /sys/fs/cgroup read-only for that container as well)
CONTROL = ('mount_cgroupfs', 'unshare_mount', 'mount_tmpfs')


def in_tree(volume_dir, script, timeout=120):
    """Run ``script`` as a child of the container's own shell (its workload runs /vol/cmd.sh): (rc, output)."""
    out = guest('cd %s && rm -f rc.txt out.txt && cat > cmd.tmp && mv cmd.tmp cmd.sh && '
                'n=0; while [ ! -s rc.txt ] && [ $n -lt %d ]; do sleep 0.2; n=$((n+1)); done; '
                'cat rc.txt 2>/dev/null || echo timeout; echo ---; cat out.txt 2>/dev/null; true'
                % (shlex.quote(volume_dir), timeout * 5), stdin=script.encode(), timeout=timeout + 60)
    status, output = out.split('---\n', 1)
    assert status.strip() != 'timeout', 'the workload did not run %r within %s s' % (script, timeout)
    return int(status.strip()), output


@pytest.fixture
def workload():
    require_vm()
    name = 'itvmca%06d' % random.randrange(10 ** 6)
    # pulled through lab/vm.sh's registry forwarder: the image gets its registry digest (checkpoint needs it)
    guest('docker pull -q %s >/dev/null' % IMAGE, timeout=300)
    guest('docker run -d --name %s --network none --cap-add SYS_ADMIN -v %s-vol:/vol %s sh -c %s >/dev/null'
          % (name, name, IMAGE, shlex.quote(WORKLOAD)))
    yield name
    guest('docker rm -f %s >/dev/null 2>&1; docker volume rm -f %s-vol >/dev/null 2>&1; '
          'systemctl stop mtd-%s.slice; systemctl revert mtd-%s.slice; rm -rf /dev/shm/%s; true'
          % (name, name, name, name, name))


def test_confined_on_arrival_on_a_systemd_slice(tmp_path, workload):
    name = workload
    volume = '/var/lib/docker/volumes/%s-vol/_data' % name
    # the control: before the move, the same process tree escapes
    for what in CONTROL:
        rc, out = in_tree(volume, PROBES[what])
        assert rc == 0, 'the unconfined source could not %s: %s' % (what, out)
    result = tmp_path / 'result.json'
    vm_play(tmp_path, '''
        - hosts: vm
          gather_facts: false
          vars:
            ctr: %(name)s
            dest: /dev/shm/%(name)s
            confine: {limits: %(limits)s}
            policy: {capabilities: %(caps)s}
          tasks:
            - name: A private place for the bundle
              ansible.builtin.file:
                path: "{{ dest }}"
                state: directory
                mode: "0700"

            - name: Checkpoint (the source stops)
              mtd.containers.checkpoint:
                container: "{{ ctr }}"
                name: "{{ ctr }}"
                dest: "{{ dest }}"
                policy: "{{ policy }}"
              register: ck

            - name: The last count of the source; the source and its volume leave this host
              ansible.builtin.shell: |
                docker logs {{ ctr }} 2>&1 | tail -1
                docker rm -f {{ ctr }} >/dev/null && docker volume rm {{ ctr }}-vol >/dev/null
              register: before
              changed_when: true

            - name: Bad input - limits below the source's usage - is refused and creates nothing
              mtd.containers.restore:
                migration_id: "{{ ctr }}"
                state: prepared
                config: "{{ ck.config }}"
                confine: {limits: {memory: 48m, pids: 1}, source_usage: {pids: 3}}
                policy: "{{ policy }}"
              register: small
              failed_when: small is not failed or small.msg is not search('pids limit')

            - name: The confined standby (check mode first - nothing is created)
              mtd.containers.restore: &standby
                migration_id: "{{ ctr }}"
                state: prepared
                config: "{{ ck.config }}"
                confine: "{{ confine }}"
                policy: "{{ policy }}"
              check_mode: true
              register: predicted

            - name: Neither the refusal nor check mode made the slice or a container
              ansible.builtin.shell: |
                systemctl show -p ActiveState --value mtd-{{ ctr }}.slice
                test -d /sys/fs/cgroup/mtd.slice/mtd-{{ ctr }}.slice && echo level || echo no-level
                docker ps -aq --filter name={{ ctr }} | wc -l
              register: after_check
              changed_when: false

            - name: The confined standby
              mtd.containers.restore: *standby     # the same arguments, for real
              register: prepared

            - name: Restore into it
              mtd.containers.restore:
                migration_id: "{{ ctr }}"
                state: started
                bundle: "{{ dest }}/{{ ctr }}"
                config: "{{ ck.config }}"
                confine: "{{ confine }}"
                policy: "{{ policy }}"
              register: restored

            - name: What the engine, systemd and the cgroup files say
              ansible.builtin.shell: |
                set -e
                dir=/sys/fs/cgroup/mtd.slice/mtd-{{ ctr }}.slice
                docker inspect -f '{{ '{{' }}.HostConfig.CgroupParent{{ '}}' }} {{ '{{' }}.HostConfig.CgroupnsMode{{ '}}' }}' {{ ctr }}
                cat /proc/$(docker inspect -f '{{ '{{' }}.State.Pid{{ '}}' }}' {{ ctr }})/cgroup
                cat $dir/memory.max $dir/memory.swap.max $dir/cpu.max $dir/pids.max
                systemctl show -p MemoryMax -p TasksMax --value mtd-{{ ctr }}.slice
              register: seen
              changed_when: false

            - name: Idempotent - confine (the recreate path) takes the arrival confinement as its own
              mtd.containers.confine:
                mode: container
                name: "{{ ctr }}"
                limits: "{{ confine.limits }}"
              register: again

            - name: What was measured, for the test's checks
              ansible.builtin.copy:
                content: "{{ {'before': before.stdout_lines, 'predicted': predicted, 'after_check': after_check.stdout,
                              'prepared': prepared, 'restored': restored, 'seen': seen.stdout_lines,
                              'again': again} | to_json }}"
                dest: %(result)s
                mode: "0600"
              delegate_to: localhost
    ''' % {'name': name, 'limits': json.dumps(LIMITS), 'caps': json.dumps(CAPABILITIES), 'result': result})
    seen = json.loads(result.read_text())
    restored, lines = seen['restored'], seen['seen']
    unit = 'mtd-%s.slice' % name
    # check mode predicted the confinement and created nothing
    assert seen['predicted']['changed'] and seen['after_check'].split() == ['inactive', 'no-level', '0'], seen
    confinement = restored['confinement']
    assert confinement['verified'] is True, confinement
    assert confinement['cgroup'] == {'version': 2, 'path': '/mtd.slice/' + unit, 'systemd_slice': unit}, confinement
    assert confinement['tasks'] and all(t['seccomp'] == 2 for t in confinement['tasks'].values()), confinement
    assert restored['seccomp_filter']['filters_after'] > restored['seccomp_filter']['filters_before'], restored
    parent, cgroupns = lines[0].split()
    assert parent == unit and cgroupns == confinement['cgroupns_mode'], lines
    assert lines[1].startswith('0::/mtd.slice/%s/docker-' % unit) and lines[1].endswith('.scope'), lines
    assert lines[2:6] == [str(48 << 20), '0', '50000 100000', '40'], lines
    assert lines[6:8] == [str(48 << 20), '40'], lines
    again = seen['again']
    assert not again['changed'] and not again['container']['recreated'], again
    assert again['container']['id'] == restored['container']['id'] and again['cgroup']['systemd_slice'] == unit, again
    # the memory state went on: no gap, no repeat in the layer and the volume, stdout continues
    last = int(seen['before'][0])
    counted = guest('docker exec %s cat /state/counter.log; echo ---; cat %s/counter.log; echo ---; '
                    'docker logs %s 2>&1 | head -3' % (name, volume, name))
    layer, vol, logs = [[int(x) for x in part.split()] for part in counted.split('---\n')]
    assert_consecutive(layer, 'the writable-layer file')
    assert_consecutive(vol, 'the volume file')
    assert len(layer) > last and logs and logs[0] == last + 1, (last, logs, len(layer))
    # the escapes fail for the restored tree, CAP_SYS_ADMIN notwithstanding
    slice_dir = '/sys/fs/cgroup/mtd.slice/' + unit
    for what, script in PROBES.items():
        rc, out = in_tree(volume, script)
        assert rc != 0, '%s succeeded in the confined container: %s' % (what, out)
    assert guest('cat %s/memory.max' % slice_dir).strip() == str(48 << 20), 'the memory limit changed'
    # an allocation past the memory limit is killed (dd's one 200 MB buffer, every page touched)
    rc, out = in_tree(volume, 'dd if=/dev/zero of=/dev/null bs=200M count=1 && echo got')
    assert rc != 0 and 'got' not in out and 'Killed' in out, 'an allocation of 200 MB passed a 48 MB limit: %s' % out
    events = dict(line.split() for line in guest('cat %s/memory.events' % slice_dir).splitlines())
    peak = int(guest('cat %s/memory.peak' % slice_dir))
    assert int(events['oom_kill']) >= 1, events
    # a dying task is charged past the limit so that it can exit (see test_confine_arrival)
    assert peak <= (48 + 8) << 20, 'the slice held %d bytes under a limit of %d' % (peak, 48 << 20)
    # a fork loop stops at the pids limit; the workload itself survives (see test_confine_arrival)
    rc, out = in_tree(volume, '(n=0; while [ $n -lt 80 ]; do sleep 3 & n=$((n+1)); done; echo started $n; wait) '
                              '2>&1; while set -- /proc/[0-9]*; [ $# -gt 4 ]; do :; done')
    assert 'fork' in out.lower(), 'no fork failed with 80 tasks under pids.max 40: %s' % out
    assert guest('docker inspect -f {{.State.Running}} %s' % name).strip() == 'true', 'the workload was killed'
