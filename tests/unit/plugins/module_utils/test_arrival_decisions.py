# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Confinement on arrival (issue 14): the pure decisions in _confine.py that restore's option confine and
mtd.containers.confine share, with worked numbers."""

from __future__ import annotations

import pytest

from ansible_collections.mtd.containers.plugins.filter.migration_row import confined_how, migration_row
from ansible_collections.mtd.containers.plugins.module_utils import _cgroup as cg
from ansible_collections.mtd.containers.plugins.module_utils import _confine as cf
from ansible_collections.mtd.containers.plugins.module_utils._cgroup import MAX
from ansible_collections.mtd.containers.plugins.module_utils._seccomp import docker_profile, profile_digest

MiB = 1 << 20


# -- limits below the source's usage --------------------------------------------------------------------

@pytest.mark.parametrize('limits, usage, refused', [
    # 48 MiB limit, 30 MiB used: fits
    ({'memory': 48 * MiB, 'memory_swap': 48 * MiB}, {'memory': 30 * MiB, 'pids': 2}, None),
    # 48 MiB used under a 48 MiB limit: the restore needs every page back, refused
    ({'memory': 48 * MiB, 'memory_swap': 48 * MiB}, {'memory': 48 * MiB}, 'memory 48 MiB is at or above the limit 48 MiB'),
    # memsw is the lower ceiling only when it is lower (here it equals memory + 16 MiB swap)
    ({'memory': 32 * MiB, 'memory_swap': 48 * MiB}, {'memory': 40 * MiB}, 'memory 40 MiB is at or above the limit 32 MiB'),
    # max is no ceiling
    ({'memory': MAX, 'memory_swap': MAX}, {'memory': 10 << 30}, None),
    # 2 tasks (the shell and its sleep) cannot live under pids.max 1 (fork fails at 2)
    ({'pids': 1}, {'pids': 2}, '2 tasks reach the pids limit 1'),
    ({'pids': 2}, {'pids': 2}, '2 tasks reach the pids limit 2'),
    ({'pids': 3}, {'pids': 2}, None),
    ({'pids': MAX}, {'pids': 5000}, None),
    # unknown usage (the cgroup could not be read on the source): nothing to compare
    ({'memory': 8 * MiB, 'pids': 1}, {'memory': None, 'pids': None}, None),
    ({'memory': 8 * MiB}, None, None),
])
def test_usage_refusal(limits, usage, refused):
    message = cf.usage_refusal('web-1', limits, usage)
    if refused is None:
        assert message is None
    else:
        assert refused in message and 'web-1' in message and 'nothing was frozen' in message


def test_usage_refusal_names_both_problems():
    message = cf.usage_refusal('db', {'memory': 16 * MiB, 'memory_swap': 16 * MiB, 'pids': 4},
                               {'memory': 20 * MiB, 'pids': 9})
    assert 'memory 20 MiB is at or above the limit 16 MiB' in message and '9 tasks reach the pids limit 4' in message


# -- the cgroup namespace on arrival ---------------------------------------------------------------------

@pytest.mark.parametrize('requested, captured, version, mode, refused', [
    ('auto', 'host', 1, 'host', False),
    ('auto', '', 1, 'host', False),        # Docker's default on cgroup v1
    ('auto', None, 2, 'private', False),   # ... and on v2
    ('auto', 'private', 1, 'private', False),
    ('host', 'host', 1, 'host', False),
    ('private', 'private', 2, 'private', False),
    # the earlier finding: CRIU failed restoring a host-cgroupns dump into a private namespace
    ('private', 'host', 1, 'host', True),
    ('private', '', 1, 'host', True),
    ('host', 'private', 2, 'private', True),
])
def test_arrival_cgroupns(requested, captured, version, mode, refused):
    got, refusal = cf.arrival_cgroupns(requested, captured, version)
    assert got == mode
    assert bool(refusal) is refused
    if refused and requested == 'private':
        assert 'mtd.containers.confine' in refusal and 'cgroupns auto' in refusal


# -- the recreate path recognises the arrival confinement ----------------------------------------------

def _arrived(labels, cgroupns='host', parent='/mtd/web-1'):
    return {'Config': {'Labels': labels},
            'HostConfig': cf.confine_host_config({'CgroupnsMode': cgroupns}, parent, cgroupns=False)}


def test_recognised_differences_accepts_the_kept_host_namespace():
    desired = cf.desired_confinement('/mtd/web-1', cgroupns=True)
    inspect = _arrived(cf.arrival_labels('/mtd/web-1', cf.CGROUPNS_KEPT_REASON))
    differences = cf.confinement_differences(cf.current_confinement(inspect), desired)
    assert differences == ['cgroupns_mode']
    assert cf.recognised_differences(differences, inspect, desired) == []


@pytest.mark.parametrize('labels', [
    {},                                                       # never confined on arrival
    {cf.ARRIVAL_LABEL: '/mtd/web-1'},                         # arrival, but with no reason for the host namespace
    cf.arrival_labels('/mtd/other', cf.CGROUPNS_KEPT_REASON),  # another level
])
def test_recognised_differences_keeps_the_rest(labels):
    desired = cf.desired_confinement('/mtd/web-1', cgroupns=True)
    inspect = _arrived(labels)
    differences = cf.confinement_differences(cf.current_confinement(inspect), desired)
    assert cf.recognised_differences(differences, inspect, desired) == ['cgroupns_mode']


def test_recognised_differences_never_hides_a_missing_profile():
    desired = cf.desired_confinement('/mtd/web-1', cgroupns=True)
    inspect = {'Config': {'Labels': cf.arrival_labels('/mtd/web-1', cf.CGROUPNS_KEPT_REASON)},
               'HostConfig': {'CgroupParent': '/mtd/web-1', 'SecurityOpt': [], 'CgroupnsMode': 'host'}}
    differences = cf.confinement_differences(cf.current_confinement(inspect), desired)
    assert cf.recognised_differences(differences, inspect, desired) == ['seccomp_sha256']


def test_arrival_labels():
    assert cf.arrival_labels('/mtd/a', None) == {'mtd.confine.arrival': '/mtd/a'}
    assert cf.arrival_labels('/mtd/a', 'host-as-dumped') == {'mtd.confine.arrival': '/mtd/a',
                                                             'mtd.confine.cgroupns': 'host-as-dumped'}


# -- verification after the resume -----------------------------------------------------------------------

def test_limits_mismatch():
    wanted = {'memory': 48 * MiB, 'memory_swap': 48 * MiB, 'pids': 40}
    assert cf.limits_mismatch(wanted, dict(wanted, cpu_quota=MAX)) == []
    assert cf.limits_mismatch(wanted, {'memory': 64 * MiB, 'memory_swap': 48 * MiB, 'pids': 40}) == ['memory']
    assert cf.limits_mismatch(wanted, None) == ['memory', 'memory_swap', 'pids']


def test_cgroup_outside():
    cid = 'c0ffee'
    paths = cg.parse_proc_cgroup('12:pids:/mtd/web-1/%s\n5:memory:/mtd/web-1/%s\n4:cpu,cpuacct:/docker/%s\n'
                                 % (cid, cid, cid))
    assert cf.cgroup_outside(paths, '/mtd/web-1', ['memory', 'cpu', 'pids']) == ['cpu']
    assert cf.cgroup_outside(paths, 'mtd/web-1/', ['memory', 'pids']) == []
    # a sibling level whose name starts the same is outside
    assert cf.cgroup_outside({'memory': '/mtd/web-10/x'}, '/mtd/web-1', ['memory']) == ['memory']
    # v2: one path, key ''
    assert cf.cgroup_outside(cg.parse_proc_cgroup('0::/mtd/web-1/%s\n' % cid), '/mtd/web-1', ['']) == []


# -- shared with mtd.containers.confine -------------------------------------------------------------------

def test_limits_from_params_is_the_confine_normalisation():
    assert cf.limits_from_params({'memory': '48m', 'pids': 40, 'cpu_period': 100000}) == {
        'memory': 48 * MiB, 'memory_swap': 48 * MiB, 'pids': 40}
    assert cf.limits_from_params({'cpus': 0.5, 'cpu_period': 50000}) == {'cpu_period': 50000, 'cpu_quota': 25000}
    with pytest.raises(cg.CgroupError):
        cf.limits_from_params({'memory': '1m'})


INFO = {'SecurityOptions': ['name=seccomp,profile=default'], 'CgroupDriver': 'cgroupfs'}


@pytest.mark.parametrize('host_config, info, version, expected', [
    ({}, INFO, 1, None),
    ({'Privileged': True}, INFO, 1, 'is privileged'),
    ({'PidMode': 'host'}, INFO, 1, "shares the host's PID namespace"),
    ({'Binds': ['/run:/run']}, INFO, 1, 'exposes the socket /run/docker.sock'),
    ({'Mounts': [{'Type': 'bind', 'Source': '/sys/fs/cgroup', 'Target': '/cg'}]}, INFO, 1, 'host cgroup filesystem'),
    ({}, {'SecurityOptions': ['name=apparmor']}, 1, 'no seccomp support'),
    # systemd's slices are levels on cgroup v2 only
    ({}, dict(INFO, CgroupDriver='systemd'), 1, 'supports that driver on cgroup v2 only'),
    ({}, dict(INFO, CgroupDriver='systemd'), 2, None),
    ({}, dict(INFO, CgroupDriver='nonesuch'), 2, 'nonesuch cgroup driver'),
    ({'NanoCpus': 2000000000}, INFO, 2, 'own CPU limit of 2.0 CPUs'),
])
def test_container_refusal(host_config, info, version, expected):
    refusal = cf.container_refusal({'Name': '/web-1', 'HostConfig': host_config}, '20.10.24', info,
                                   {'cpu_quota': 50000, 'cpu_period': 100000}, None, version)
    if expected is None:
        assert refusal is None
    else:
        assert expected in refusal[0]


def test_arrival_host_config_is_what_confine_compares():
    host_config = cf.confine_host_config({'SecurityOpt': ['seccomp=unconfined'], 'CgroupnsMode': 'host'},
                                         '/mtd/web-1', cgroupns=False)
    current = cf.current_confinement({'HostConfig': host_config})
    assert current == {'cgroup_parent': '/mtd/web-1', 'seccomp_sha256': profile_digest(docker_profile()),
                       'cgroupns_mode': 'host'}


# -- the record and the summary say how -----------------------------------------------------------------

@pytest.mark.parametrize('value, how', [
    ('arrival', 'arrival'), ('recreate', 'recreate'), (True, 'recreate'), (False, 'none'), (None, 'none'),
    ('none', 'none'), ('yes', 'none'),
])
def test_confined_how(value, how):
    assert confined_how(value) == how
    assert migration_row({'confined': value})['confined'] == how


@pytest.mark.parametrize('version', [1, 2])
def test_pids_usage_of_pid(tmp_path, version):
    proc = tmp_path / 'proc'
    (proc / '42').mkdir(parents=True)
    root = tmp_path / 'cg'
    if version == 1:
        layout = cg.Layout(1, {'pids': str(root / 'pids')})
        (proc / '42' / 'cgroup').write_text('12:pids:/docker/abc\n5:memory:/docker/abc\n')
        target = root / 'pids' / 'docker' / 'abc' / 'pids.current'
    else:
        layout = cg.Layout(2, {}, str(root))
        (proc / '42' / 'cgroup').write_text('0::/system.slice/docker-abc.scope\n')
        target = root / 'system.slice' / 'docker-abc.scope' / 'pids.current'
    target.parent.mkdir(parents=True)
    target.write_text('3\n')
    assert cg.pids_usage_of_pid(42, layout, proc=str(proc)) == 3
    assert cg.pids_usage_of_pid(43, layout, proc=str(proc)) is None
    target.write_text('x\n')
    assert cg.pids_usage_of_pid(42, layout, proc=str(proc)) is None
