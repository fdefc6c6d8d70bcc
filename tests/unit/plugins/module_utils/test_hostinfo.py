# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import copy
import datetime
import json
import os

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._hostinfo import (
    HostInfoError,
    bytes_to_mb,
    container_reservations,
    container_summary,
    count_cpus,
    cpu_isa_flags,
    detect_cgroup,
    epoch_to_rfc3339,
    format_timestamp,
    merge_capacity,
    os_facts,
    parse_cgroup_controllers,
    parse_local_fact,
    parse_meminfo,
    parse_mountinfo,
    parse_os_release,
    parse_timestamp,
    remaining_capacity,
    sum_reservations,
)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


def fixture_text(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def fixture_json(name):
    return json.loads(fixture_text(name))


# -- os-release -----------------------------------------------------------------------------------

@pytest.mark.parametrize('name, expected', [
    ('os-release-debian-12', {'id': 'debian', 'version_id': '12', 'name': 'Debian GNU/Linux',
                              'pretty_name': 'Debian GNU/Linux 12 (bookworm)'}),
    ('os-release-ubuntu-24.04', {'id': 'ubuntu', 'version_id': '24.04', 'name': 'Ubuntu',
                                 'pretty_name': 'Ubuntu 24.04.1 LTS'}),
    ('os-release-rocky-9', {'id': 'rocky', 'version_id': '9.4', 'name': 'Rocky Linux',
                            'pretty_name': 'Rocky Linux 9.4 (Blue Onyx)'}),
])
def test_os_release_samples(name, expected):
    parsed = parse_os_release(fixture_text(name))
    facts = os_facts(parsed, '6.18.44-fc-v669', 'x86_64')
    assert facts == dict(expected, kernel='6.18.44-fc-v669', arch='x86_64')


def test_os_release_quoting_and_comments():
    text = '\n'.join([
        '# a comment',
        '',
        'ID=fancy',
        "NAME='Single Quoted $HOME'",
        r'PRETTY_NAME="Fancy \"Linux\" \$5 \\ back"',
        'not a variable line',
        '9BAD=skipped',
        'VARIANT = spaced ',
        'ID_LIKE="rhel centos fedora"',
    ])
    parsed = parse_os_release(text)
    assert parsed == {
        'ID': 'fancy',
        'NAME': 'Single Quoted $HOME',
        'PRETTY_NAME': 'Fancy "Linux" $5 \\ back',
        'VARIANT': 'spaced',
        'ID_LIKE': 'rhel centos fedora',
    }
    assert parse_os_release(fixture_text('os-release-rocky-9'))['ID_LIKE'] == 'rhel centos fedora'


def test_os_release_defaults_when_absent():
    facts = os_facts(parse_os_release('VERSION="rolling"\n'), '6.1.0', 'aarch64')
    # os-release(5): ID defaults to "linux", NAME and PRETTY_NAME to "Linux"; VERSION_ID "" when absent.
    assert facts == {'id': 'linux', 'version_id': '', 'name': 'Linux', 'pretty_name': 'Linux',
                     'kernel': '6.1.0', 'arch': 'aarch64'}


# -- meminfo / cpuinfo ----------------------------------------------------------------------------

def test_meminfo_real_sample():
    # MemTotal: 24684084 kB -> 24684084 * 1024 / 1048576 = 24105.55 -> 24105 MiB
    assert parse_meminfo(fixture_text('meminfo-debian12-vm.txt')) == 24105


@pytest.mark.parametrize('text, expected', [
    ('MemTotal:        8388608 kB\nMemFree: 1 kB\n', 8192),
    ('MemFree:   1024 kB\nMemTotal:  2097151 kB\n', 2047),
    ('MemTotal:  4 GB\n', 4096),
])
def test_meminfo_numbers(text, expected):
    assert parse_meminfo(text) == expected


@pytest.mark.parametrize('text', ['', 'MemFree: 1 kB\n', 'MemTotal: lots\n'])
def test_meminfo_without_total(text):
    with pytest.raises(HostInfoError, match='MemTotal'):
        parse_meminfo(text)


def test_cpuinfo_real_sample():
    assert count_cpus(fixture_text('cpuinfo-x86_64-2cpu.txt')) == 2


def test_cpuinfo_other_layouts():
    arm = 'processor\t: 0\nBogoMIPS\t: 50.00\n\nprocessor\t: 1\nBogoMIPS\t: 50.00\n\nprocessor\t: 2\n\nprocessor\t: 3\n'
    assert count_cpus(arm) == 4
    s390 = ('vendor_id       : IBM/S390\n# processors    : 2\nbogomips per cpu: 3241.00\n'
            'processor 0: version = FF,  identification = 0133E8,  machine = 8561\n'
            'processor 1: version = FF,  identification = 0133E8,  machine = 8561\n')
    assert count_cpus(s390) == 2
    assert count_cpus('') == 0
    assert count_cpus(None) == 0


# -- cgroups --------------------------------------------------------------------------------------

def test_cgroup_hybrid_real_sample():
    # This machine: v1 controllers under /sys/fs/cgroup plus cgroup2 at /sys/fs/cgroup/unified.
    assert detect_cgroup(fixture_text('mountinfo-hybrid-v1.txt')) == {
        'version': 1,
        'mountpoint': '/sys/fs/cgroup',
        'controllers': ['blkio', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'memory', 'pids'],
        'unified_mountpoint': '/sys/fs/cgroup/unified',
    }


def test_cgroup_legacy_v1_with_combined_mounts_and_selinux():
    # CentOS 7 style: cpu,cpuacct and net_cls,net_prio share hierarchies; "seclabel" is no controller.
    assert detect_cgroup(fixture_text('mountinfo-legacy-v1.txt')) == {
        'version': 1,
        'mountpoint': '/sys/fs/cgroup',
        'controllers': ['blkio', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'hugetlb', 'memory',
                        'net_cls', 'net_prio', 'perf_event', 'pids'],
        'unified_mountpoint': None,
    }


def test_cgroup_unified_v2():
    info = detect_cgroup(fixture_text('mountinfo-unified-v2.txt'))
    assert info == {'version': 2, 'mountpoint': '/sys/fs/cgroup', 'controllers': [],
                    'unified_mountpoint': '/sys/fs/cgroup'}
    assert parse_cgroup_controllers('cpuset cpu io memory hugetlb pids rdma misc\n') == [
        'cpu', 'cpuset', 'hugetlb', 'io', 'memory', 'misc', 'pids', 'rdma']


def test_cgroup_v2_with_named_v1_hierarchy_is_v2():
    text = fixture_text('mountinfo-unified-v2.txt') + (
        '40 33 0:40 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n')
    assert detect_cgroup(text)['version'] == 2


def test_cgroup_none_mounted():
    assert detect_cgroup('27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n') == {
        'version': None, 'mountpoint': None, 'controllers': [], 'unified_mountpoint': None}
    assert detect_cgroup('')['version'] is None


def test_mountinfo_escapes_and_optional_fields():
    text = '41 31 0:38 / /mnt/with\\040space rw,relatime shared:5 master:1 - cgroup2 cgroup2 rw\n'
    mounts = parse_mountinfo(text)
    assert mounts == [{'root': '/', 'mountpoint': '/mnt/with space', 'options': ['rw', 'relatime'], 'fstype': 'cgroup2',
                       'source': 'cgroup2', 'super_options': ['rw']}]
    assert detect_cgroup(text)['mountpoint'] == '/mnt/with space'
    assert parse_mountinfo('garbage line\n\n') == []


# -- timestamps -----------------------------------------------------------------------------------

@pytest.mark.parametrize('text, expected', [
    ('1970-01-01T00:00:00Z', 0.0),
    ('2026-11-28T09:30:01.000000000Z', 1795858201.0),
    ('2026-11-28T09:30:01.5Z', 1795858201.5),
    ('2026-11-28T10:30:01+01:00', 1795858201.0),
    ('2026-11-28T04:30:01.25-0500', 1795858201.25),
    ('0001-01-01T00:00:00Z', None),
    ('', None),
    (None, None),
])
def test_parse_timestamp(text, expected):
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize('text', ['yesterday', '2026-13-01T00:00:00Z', '2026-11-28'])
def test_parse_timestamp_errors(text):
    with pytest.raises(HostInfoError):
        parse_timestamp(text)


def test_format_timestamps():
    moment = datetime.datetime(2026, 11, 28, 10, 40, 0, 999999, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert format_timestamp(moment) == '2026-11-28T09:40:00Z'
    assert format_timestamp(datetime.datetime(2026, 11, 28, 9, 40)) == '2026-11-28T09:40:00Z'
    assert epoch_to_rfc3339(1795858201.9) == '2026-11-28T09:30:01Z'
    assert epoch_to_rfc3339(None) is None


# -- containers -----------------------------------------------------------------------------------

NOW = datetime.datetime(2026, 11, 28, 9, 40, 0, tzinfo=datetime.timezone.utc)


def test_container_summary_web():
    web = fixture_json('docker-inspect-web-1.json')
    assert container_summary(web, NOW) == {
        'id': '0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd',
        'name': 'web-1',
        'image': '127.0.0.1:5000/mtd/busybox:latest',
        'image_id': 'sha256:4567ef014567ef014567ef014567ef014567ef014567ef014567ef014567ef01',
        'state': 'running',
        'created': '2026-11-28T09:30:00Z',
        'started_at': '2026-11-28T09:30:01Z',
        'uptime_seconds': 599.0,
        'labels': {'mtd.units': '10', 'mtd.service': 'web'},
        'ip': None,
        'network_mode': 'none',
        'reservations': {'cpus': 0.5, 'memory_mb': 256, 'units': 10},
        'attacked': False,
        'severity': None,
    }


def test_container_summary_db_bridge_quota_and_labels():
    db = fixture_json('docker-inspect-db-1.json')
    summary = container_summary(db, NOW)
    # StartedAt 10:00:00.25+01:00 = 09:00:00.25Z -> 2399.75 s before NOW
    assert summary['started_at'] == '2026-11-28T09:00:00Z'
    assert summary['uptime_seconds'] == 2399.75
    assert summary['ip'] == '172.17.0.2'
    assert summary['network_mode'] == 'default'
    # CpuQuota 25000 / CpuPeriod 100000 = 0.25; MemoryReservation 134217728 B = 128 MiB
    assert summary['reservations'] == {'cpus': 0.25, 'memory_mb': 128, 'units': 20}
    assert summary['attacked'] is True
    assert summary['severity'] == 'high'


def test_container_summary_accepts_epoch_now_and_stopped_state():
    web = fixture_json('docker-inspect-web-1.json')
    assert container_summary(web, 1795858801.0)['uptime_seconds'] == 600.0
    web['State'].update(Status='exited', Running=False)
    summary = container_summary(web, NOW)
    assert summary['state'] == 'exited'
    assert summary['uptime_seconds'] == 0.0


def test_container_summary_network_fallbacks():
    web = fixture_json('docker-inspect-web-1.json')
    legacy = copy.deepcopy(web)
    legacy['NetworkSettings'] = {'IPAddress': '10.1.2.3', 'Networks': None}
    assert container_summary(legacy, NOW)['ip'] == '10.1.2.3'
    v6 = copy.deepcopy(web)
    v6['NetworkSettings'] = {'Networks': {'v6net': {'IPAddress': '', 'GlobalIPv6Address': 'fd00::2'}}}
    assert container_summary(v6, NOW)['ip'] == 'fd00::2'
    host = copy.deepcopy(web)
    host['HostConfig']['NetworkMode'] = 'host'
    host['NetworkSettings']['Networks'] = {'host': {'IPAddress': ''}}
    assert container_summary(host, NOW)['ip'] is None


@pytest.mark.parametrize('labels, attacked, severity', [
    ({}, False, None),
    ({'mtd.attacked': 'true', 'mtd.severity': 'low'}, True, 'low'),
    ({'mtd.attacked': '1', 'mtd.severity': ' Medium '}, True, 'medium'),
    ({'mtd.attacked': 'no', 'mtd.severity': '7'}, False, 7),
    ({'mtd.attacked': 'TRUE', 'mtd.severity': 'critical'}, True, None),
    ({'mtd.attacked': 'y', 'mtd.severity': ''}, False, None),
])
def test_attack_labels(labels, attacked, severity):
    web = fixture_json('docker-inspect-web-1.json')
    web['Config']['Labels'] = labels
    summary = container_summary(web, NOW)
    assert (summary['attacked'], summary['severity']) == (attacked, severity)


@pytest.mark.parametrize('host_config, labels, expected', [
    # NanoCpus wins over a quota; Memory wins over MemoryReservation.
    ({'NanoCpus': 1500000000, 'CpuQuota': 50000, 'CpuPeriod': 100000, 'Memory': 536870912,
      'MemoryReservation': 268435456}, {'mtd.units': '30'}, {'cpus': 1.5, 'memory_mb': 512, 'units': 30}),
    # CpuQuota with the default period (0 means the kernel's 100000 us).
    ({'CpuQuota': 150000, 'CpuPeriod': 0}, {}, {'cpus': 1.5, 'memory_mb': 0, 'units': 0}),
    ({'CpuQuota': 10000, 'CpuPeriod': 50000}, {}, {'cpus': 0.2, 'memory_mb': 0, 'units': 0}),
    # CpuQuota -1 means unlimited.
    ({'CpuQuota': -1, 'CpuPeriod': 100000, 'MemoryReservation': 67108864}, {}, {'cpus': 0.0, 'memory_mb': 64, 'units': 0}),
    # 100,000,000 bytes is not a whole number of MiB.
    ({'Memory': 100000000}, {'mtd.units': 'ten'}, {'cpus': 0.0, 'memory_mb': 95.37, 'units': 0}),
    ({}, {'mtd.units': '-5'}, {'cpus': 0.0, 'memory_mb': 0, 'units': 0}),
    (None, None, {'cpus': 0.0, 'memory_mb': 0, 'units': 0}),
])
def test_container_reservations(host_config, labels, expected):
    inspect = {'HostConfig': host_config, 'Config': {'Labels': labels}}
    assert container_reservations(inspect) == expected


def test_bytes_to_mb():
    assert bytes_to_mb(268435456) == 256
    assert isinstance(bytes_to_mb(268435456), int)
    assert bytes_to_mb(1572864) == 1.5


# -- capacity arithmetic --------------------------------------------------------------------------

def test_sum_and_remaining():
    reserved = sum_reservations([
        {'cpus': 0.1, 'memory_mb': 256, 'units': 10},
        {'cpus': 0.2, 'memory_mb': 95.37, 'units': 20},
    ])
    assert reserved == {'cpus': 0.3, 'memory_mb': 351.37, 'units': 30}
    capacity = {'cpus': 2.0, 'memory_mb': 24105, 'units': 100}
    assert remaining_capacity(capacity, reserved) == {'cpus': 1.7, 'memory_mb': 23753.63, 'units': 70}
    assert sum_reservations([]) == {'cpus': 0.0, 'memory_mb': 0, 'units': 0}


def test_remaining_may_go_negative():
    assert remaining_capacity({'cpus': 1.0, 'memory_mb': 512, 'units': 10},
                              {'cpus': 1.5, 'memory_mb': 1024, 'units': 25}) == {
        'cpus': -0.5, 'memory_mb': -512, 'units': -15}


def test_merge_capacity():
    proc = {'cpus': 2.0, 'memory_mb': 24105}
    assert merge_capacity(proc, {}, 100) == (
        {'cpus': 2.0, 'memory_mb': 24105, 'units': 100},
        {'cpus': 'proc', 'memory_mb': 'proc', 'units': 'default'})
    assert merge_capacity(proc, {'cpus': 4.0, 'units': 200}, 100) == (
        {'cpus': 4.0, 'memory_mb': 24105, 'units': 200},
        {'cpus': 'local_fact', 'memory_mb': 'proc', 'units': 'local_fact'})


# -- local fact -----------------------------------------------------------------------------------

@pytest.mark.parametrize('text, expected', [
    ('{"capacity": {"cpus": 4, "memory_mb": 8192, "units": 200}}', {'cpus': 4.0, 'memory_mb': 8192, 'units': 200}),
    ('{"capacity": {"cpus": 0.5}}', {'cpus': 0.5}),
    ('{"capacity": {"memory_mb": 1536.5, "units": 60.0}}', {'memory_mb': 1536.5, 'units': 60}),
    ('{"capacity": {"cpus": null, "units": 0}}', {'units': 0}),
    ('{"role": "edge", "capacity": {}}', {}),
    ('{"role": "edge"}', {}),
    ('', {}),
    ('  \n', {}),
])
def test_local_fact_ok(text, expected):
    result = parse_local_fact(text)
    assert result == expected
    if 'cpus' in expected:
        assert isinstance(result['cpus'], float)
    if 'units' in expected:
        assert isinstance(result['units'], int)


@pytest.mark.parametrize('text, message', [
    ('{"capacity": {"cpus": 4,}}', 'not valid JSON'),
    ('[1, 2]', 'must hold a JSON object'),
    ('{"capacity": [4]}', '"capacity" must be an object'),
    ('{"capacity": {"cpu": 4}}', 'unknown key(s) cpu; allowed are cpus, memory_mb, units'),
    ('{"capacity": {"cpus": -1}}', 'capacity.cpus must not be negative, got -1'),
    ('{"capacity": {"memory_mb": -0.5}}', 'capacity.memory_mb must not be negative'),
    ('{"capacity": {"units": "200"}}', "capacity.units must be a number, got str '200'"),
    ('{"capacity": {"cpus": true}}', 'capacity.cpus must be a number, got bool True'),
    ('{"capacity": {"units": 2.5}}', 'capacity.units must be an integer, got 2.5'),
    ('{"capacity": {"cpus": NaN}}', 'capacity.cpus must be a finite number'),
    ('{"capacity": {"memory_mb": Infinity}}', 'capacity.memory_mb must be a finite number'),
])
def test_local_fact_errors(text, message):
    with pytest.raises(HostInfoError) as excinfo:
        parse_local_fact(text)
    assert message in str(excinfo.value)


def test_cpu_isa_flags_keeps_the_user_visible_instruction_sets_of_the_first_cpu():
    text = ('processor\t: 0\nflags\t\t: fpu vme sse4_2 x2apic avx2 xsaves xsavec avx512f hypervisor\n\n'
            'processor\t: 1\nflags\t\t: fpu sse4_2\n')
    assert cpu_isa_flags(text) == ['avx2', 'avx512f', 'sse4_2', 'xsavec']   # not vme, x2apic, xsaves, hypervisor
    assert cpu_isa_flags('processor : 0\nFeatures : fp asimd\n') is None    # arm64 names them otherwise
    assert cpu_isa_flags('') is None
