# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The cgroupfs client: parsing, the v1 memory/memsw write order (with worked numbers and an exhaustive
invariant check), layout detection, and planning/applying against a fake cgroupfs whose writes follow the
kernel's rules (memsw >= memory, EBUSY below usage, subtree_control)."""

from __future__ import annotations

import errno
import itertools
import os

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _cgroup as cg
from ansible_collections.mtd.containers.plugins.module_utils._cgroup import MAX

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
MiB = 1 << 20
V1_UNLIMITED = '9223372036854771712'


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


# -- input parsing ------------------------------------------------------------------------------------

@pytest.mark.parametrize('value, expected', [
    ('64m', 64 * MiB), ('64M', 64 * MiB), ('64MiB', 64 * MiB), ('64mb', 64 * MiB), ('1g', 1 << 30),
    ('512k', 512 * 1024), ('67108864', 67108864), (67108864, 67108864), (' 2 g ', 2 << 30), ('max', MAX),
    ('unlimited', MAX), ('-1', MAX), (-1, MAX), (1.0 * MiB, MiB), ('1t', 1 << 40),
])
def test_parse_size(value, expected):
    assert cg.parse_size(value) == expected


@pytest.mark.parametrize('value', ['lots', '64x', '', '-5', True, [64], -2, '1.5g'])
def test_parse_size_rejects(value):
    with pytest.raises(cg.CgroupError):
        cg.parse_size(value)


@pytest.mark.parametrize('value, expected', [(32, 32), ('32', 32), ('max', MAX), (-1, MAX), ('-1', MAX), (2.0, 2)])
def test_parse_count(value, expected):
    assert cg.parse_count(value) == expected


@pytest.mark.parametrize('value', [0, '0', 'many', False, 1.5, -3])
def test_parse_count_rejects(value):
    with pytest.raises(cg.CgroupError):
        cg.parse_count(value)


def test_normalise_limits_worked_example():
    assert cg.normalise_limits(memory='64m', cpus=0.5, pids=32, cpu_weight=50) == {
        'memory': 64 * MiB, 'memory_swap': 64 * MiB, 'cpu_period': 100000, 'cpu_quota': 50000,
        'cpu_weight': 50, 'pids': 32}


def test_normalise_limits_details():
    assert cg.normalise_limits() == {}
    assert cg.normalise_limits(memory='100000000')['memory'] == 100000000 - 100000000 % cg.PAGE_SIZE
    assert cg.normalise_limits(memory='64m', memory_swap='max')['memory_swap'] == MAX
    assert cg.normalise_limits(memory='max') == {'memory': MAX, 'memory_swap': MAX}
    assert cg.normalise_limits(cpus=0)['cpu_quota'] == MAX
    assert cg.normalise_limits(cpus='max')['cpu_quota'] == MAX
    assert cg.normalise_limits(cpus=1.5, cpu_period=200000) == {'cpu_period': 200000, 'cpu_quota': 300000}
    assert cg.normalise_limits(pids='max') == {'pids': MAX}


@pytest.mark.parametrize('kwargs, message', [
    ({'memory_swap': '1g'}, 'memory_swap needs memory'),
    ({'memory': '64m', 'memory_swap': '32m'}, 'must be at least memory'),
    ({'memory': 'max', 'memory_swap': '1g'}, 'cannot be limited when memory is max'),
    ({'memory': '1m'}, 'too small'),
    ({'cpus': 0.001}, 'at least 1000 us'),
    ({'cpus': -1}, 'must not be negative'),
    ({'cpus': 'half'}, 'number of CPUs'),
    ({'cpus': 1, 'cpu_period': 500}, 'between 1000 and 1000000'),
    ({'cpu_period': 100000}, 'cpu_period needs cpus'),
    ({'cpu_weight': 0}, 'between 1 and 10000'),
    ({'cpu_weight': 'heavy'}, 'integer between 1 and 10000'),
    ({'pids': 0}, 'at least 1'),
])
def test_normalise_limits_errors(kwargs, message):
    with pytest.raises(cg.CgroupError, match=message):
        cg.normalise_limits(**kwargs)


def test_format_and_display():
    assert cg.format_size(64 * MiB) == '64 MiB'
    assert cg.format_size(1 << 30) == '1 GiB'
    assert cg.format_size(MAX) == 'max'
    assert cg.format_size(1536) == '1536 bytes'
    assert cg.format_size(int(1.5 * MiB) + 1) == '1.5 MiB'
    assert cg.limits_for_display({'memory': 64 * MiB, 'cpu_quota': 50000, 'cpu_period': 100000, 'pids': MAX}) == {
        'memory': 64 * MiB, 'cpus': 0.5, 'cpu_period': 100000, 'pids': MAX}
    assert cg.limits_for_display({'cpu_quota': MAX, 'cpu_period': 100000}) == {'cpus': 0.0, 'cpu_period': 100000}
    assert cg.limits_for_display(None) is None


@pytest.mark.parametrize('path, expected', [('mtd/web', 'mtd/web'), ('/mtd/web/', 'mtd/web'), ('a//b', 'a/b')])
def test_validate_relative_path(path, expected):
    assert cg.validate_relative_path(path) == expected


@pytest.mark.parametrize('path', ['', '/', 'mtd/../etc', 'mtd/web 1', 'mtd/./x'])
def test_validate_relative_path_rejects(path):
    with pytest.raises(cg.CgroupError):
        cg.validate_relative_path(path)


@pytest.mark.parametrize('weight, shares', [(100, 1024), (1, 10), (50, 512), (10000, 102400), (200, 2048)])
def test_cpu_weight_to_shares(weight, shares):
    assert cg.v1_shares_from_weight(weight) == shares
    assert cg.weight_from_v1_shares(shares) == weight


# -- v1 memory/memsw ordering -------------------------------------------------------------------------

ORDER_CASES = [
    # current memory, current memsw, new memory, new memsw -> writes
    ('fresh level: lower both from unlimited', MAX, MAX, 64 * MiB, 64 * MiB,
     [('memory', 64 * MiB), ('memory_swap', 64 * MiB)]),
    ('raise both: memsw first', 64 * MiB, 64 * MiB, 128 * MiB, 256 * MiB,
     [('memory_swap', 256 * MiB), ('memory', 128 * MiB)]),
    ('lower both: memory first', 128 * MiB, 256 * MiB, 32 * MiB, 32 * MiB,
     [('memory', 32 * MiB), ('memory_swap', 32 * MiB)]),
    ('raise memory above the old memsw', 64 * MiB, 64 * MiB, 96 * MiB, 96 * MiB,
     [('memory_swap', 96 * MiB), ('memory', 96 * MiB)]),
    ('memory down, memsw up', 128 * MiB, 128 * MiB, 64 * MiB, 512 * MiB,
     [('memory_swap', 512 * MiB), ('memory', 64 * MiB)]),
    ('memory up, memsw down (still above)', 64 * MiB, 512 * MiB, 128 * MiB, 256 * MiB,
     [('memory', 128 * MiB), ('memory_swap', 256 * MiB)]),
    ('to unlimited: memsw first', 64 * MiB, 64 * MiB, MAX, MAX, [('memory_swap', MAX), ('memory', MAX)]),
    ('only memsw', 64 * MiB, 64 * MiB, 64 * MiB, 128 * MiB, [('memory_swap', 128 * MiB)]),
    ('only memory, within memsw', 64 * MiB, 128 * MiB, 96 * MiB, 128 * MiB, [('memory', 96 * MiB)]),
    ('nothing changes', 64 * MiB, 64 * MiB, 64 * MiB, 64 * MiB, []),
    ('memsw absent: memory only', 64 * MiB, None, 128 * MiB, 128 * MiB, [('memory', 128 * MiB)]),
    ('memsw not managed', 64 * MiB, 64 * MiB, 32 * MiB, None, [('memory', 32 * MiB)]),
]


@pytest.mark.parametrize('what, cur_m, cur_s, new_m, new_s, expected', ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_order_memory_writes(what, cur_m, cur_s, new_m, new_s, expected):
    assert cg.order_memory_writes(cur_m, cur_s, new_m, new_s) == expected


def _num(value):
    return float('inf') if value == MAX else value


def test_order_memory_writes_never_breaks_memory_le_memsw():
    """Every valid (current, target) pair over a grid: each intermediate state keeps memory <= memsw."""
    values = [16 * MiB, 32 * MiB, 64 * MiB, 128 * MiB, MAX]
    pairs = [(m, s) for m in values for s in values if _num(m) <= _num(s)]
    for (cur_m, cur_s), (new_m, new_s) in itertools.product(pairs, pairs):
        memory, swap = cur_m, cur_s
        for key, value in cg.order_memory_writes(cur_m, cur_s, new_m, new_s):
            if key == 'memory':
                memory = value
            else:
                swap = value
            assert _num(memory) <= _num(swap), (cur_m, cur_s, new_m, new_s)
        assert (memory, swap) == (new_m, new_s)


# -- layout ------------------------------------------------------------------------------------------

def test_detect_hybrid_v1_fixture():
    layout = cg.Layout.detect(fixture('mountinfo-hybrid-v1.txt'))
    assert layout.version == 1
    assert layout.v1_mounts['memory'].endswith('/memory')
    assert set(layout.v1_mounts) == {'memory', 'cpu', 'pids'}


def test_detect_unified_v2_fixture():
    layout = cg.Layout.detect(fixture('mountinfo-unified-v2.txt'))
    assert (layout.version, layout.unified, layout.v1_mounts) == (2, '/sys/fs/cgroup', {})


LAB_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
412 411 0:29 /docker/abc /mnt/inner\\040cpu ro,relatime - cgroup cgroup rw,cpu
"""


def test_detect_lab_layout_and_preferences():
    layout = cg.Layout.detect(LAB_MOUNTINFO)
    assert layout.as_dict() == {
        'version': 1, 'unified': '/sys/fs/cgroup/unified',
        'v1_mounts': {'cpu': '/sys/fs/cgroup/cpu', 'memory': '/sys/fs/cgroup/memory', 'pids': '/sys/fs/cgroup/pids'}}
    forced = cg.Layout.detect(LAB_MOUNTINFO, '2')
    assert forced.as_dict() == {'version': 2, 'unified': '/sys/fs/cgroup/unified', 'v1_mounts': {}}
    assert cg.Layout.from_dict(layout.as_dict()).as_dict() == layout.as_dict()
    mounts = cg.parse_mountinfo(LAB_MOUNTINFO)
    assert mounts[-1]['mountpoint'] == '/mnt/inner cpu' and mounts[-1]['root'] == '/docker/abc'


def test_co_mounted_controllers():
    text = '35 31 0:32 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n' \
           '36 31 0:33 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n'
    layout = cg.Layout.detect(text)
    assert layout.v1_mounts == {'cpu': '/sys/fs/cgroup/cpu,cpuacct', 'memory': '/sys/fs/cgroup/memory'}


@pytest.mark.parametrize('text, prefer, message', [
    ('', 'auto', 'No cgroup filesystem is mounted'),
    (LAB_MOUNTINFO.split('41 31', maxsplit=1)[0], '2', 'no cgroup2 filesystem is mounted'),
    ('41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n', '1', 'no cgroup v1 controller'),
    (LAB_MOUNTINFO, '3', 'must be auto, 1 or 2'),
])
def test_detect_errors(text, prefer, message):
    with pytest.raises(cg.CgroupError, match=message):
        cg.Layout.detect(text, prefer)


def test_parse_proc_cgroup():
    text = '9:name=systemd:/\n8:pids:/mtd/web\n2:cpu,cpuacct:/mtd/web\n0::/mtd/web\n'
    assert cg.parse_proc_cgroup(text) == {'name=systemd': '/', 'pids': '/mtd/web', 'cpu': '/mtd/web',
                                          'cpuacct': '/mtd/web', '': '/mtd/web'}


# -- a fake kernel ------------------------------------------------------------------------------------

V1_DEFAULTS = {
    'memory': {'memory.limit_in_bytes': V1_UNLIMITED, 'memory.memsw.limit_in_bytes': V1_UNLIMITED,
               'memory.usage_in_bytes': '0', 'memory.use_hierarchy': '1', 'cgroup.procs': ''},
    'cpu': {'cpu.cfs_quota_us': '-1', 'cpu.cfs_period_us': '100000', 'cpu.shares': '1024', 'cgroup.procs': ''},
    'pids': {'pids.max': 'max', 'pids.current': '0', 'cgroup.procs': ''},
}
V2_DEFAULTS = {'memory.max': 'max', 'memory.swap.max': 'max', 'memory.current': '0', 'cpu.max': 'max 100000',
               'cpu.weight': '100', 'pids.max': 'max', 'pids.current': '0', 'cgroup.procs': '',
               'cgroup.subtree_control': ''}


def _write_file(path, text):
    with open(path, 'w') as handle:
        handle.write(text)


def _read_file(path):
    with open(path) as handle:
        return handle.read().strip()


class FakeKernelCgroup(cg.Cgroup):
    """Writes go to plain files, but refused the way the kernel refuses them; every write is logged."""

    log = None

    def __init__(self, layout, path, log):
        super().__init__(layout, path)
        self.log = log

    def _controller_of(self, directory):
        if self.layout.version == 2:
            return None
        for controller, root in self.layout.v1_mounts.items():
            if directory == root or directory.startswith(root + '/'):
                return controller
        raise AssertionError(directory)

    def _mkdir(self, directory):
        os.mkdir(directory)
        if self.layout.version == 2:
            parent = os.path.dirname(directory)
            for name, value in V2_DEFAULTS.items():
                _write_file(os.path.join(directory, name), value)
            _write_file(os.path.join(directory, 'cgroup.controllers'),
                        _read_file(os.path.join(parent, 'cgroup.subtree_control')))
        else:
            for name, value in V1_DEFAULTS[self._controller_of(directory)].items():
                _write_file(os.path.join(directory, name), value)

    def _write(self, filename, value):
        directory, name = os.path.split(filename)
        self.log.append((name, value))
        if not os.path.exists(filename):
            raise IOError(errno.ENOENT, 'No such file or directory')

        def number(text):
            return float('inf') if text in ('-1', 'max', V1_UNLIMITED) else int(text)

        if name == 'memory.limit_in_bytes':
            if number(value) > number(_read_file(os.path.join(directory, 'memory.memsw.limit_in_bytes'))):
                raise IOError(errno.EINVAL, 'Invalid argument')
            if number(value) < number(_read_file(os.path.join(directory, 'memory.usage_in_bytes'))):
                raise IOError(errno.EBUSY, 'Device or resource busy')
        if name == 'memory.memsw.limit_in_bytes':
            if number(value) < number(_read_file(os.path.join(directory, 'memory.limit_in_bytes'))):
                raise IOError(errno.EINVAL, 'Invalid argument')
        if name == 'cgroup.subtree_control':
            enabled = _read_file(filename).split()
            available = _read_file(os.path.join(directory, 'cgroup.controllers')).split()
            for item in value.split():
                if item[1:] not in available:
                    raise IOError(errno.ENOENT, 'No such file or directory')
                if item.startswith('+') and item[1:] not in enabled:
                    enabled.append(item[1:])
            _write_file(filename, ' '.join(enabled))
            return
        if value == '-1' and name.startswith('memory.'):
            value = V1_UNLIMITED
        _write_file(filename, value)


@pytest.fixture
def v1(tmp_path):
    mounts = {}
    for controller in ('memory', 'cpu', 'pids'):
        root = tmp_path / controller
        root.mkdir()
        for name, value in V1_DEFAULTS[controller].items():
            (root / name).write_text(value)
        mounts[controller] = str(root)
    return cg.Layout(1, mounts, None)


def v2_layout(tmp_path):
    """A cgroup v2 hierarchy in ``tmp_path/unified`` with the usual controllers, and its Layout."""
    root = tmp_path / 'unified'
    root.mkdir()
    (root / 'cgroup.controllers').write_text('cpuset cpu io memory pids')
    (root / 'cgroup.subtree_control').write_text('')
    return cg.Layout(2, {}, str(root))


@pytest.fixture
def v2(tmp_path):
    return v2_layout(tmp_path)


def test_v1_ensure_creates_writes_in_order_and_is_idempotent(v1):
    log = []
    group = FakeKernelCgroup(v1, 'mtd/web', log)
    limits = cg.normalise_limits(memory='64m', cpus=0.5, pids=32, cpu_weight=50)
    assert group.read_limits() is None
    changed, before, after = group.ensure(limits)
    assert changed and before is None
    assert log == [('memory.limit_in_bytes', str(64 * MiB)), ('memory.memsw.limit_in_bytes', str(64 * MiB)),
                   ('cpu.cfs_quota_us', '50000'), ('cpu.shares', '512'), ('pids.max', '32')]
    assert after == {'memory': 64 * MiB, 'memory_swap': 64 * MiB, 'cpu_quota': 50000, 'cpu_period': 100000,
                     'cpu_weight': 50, 'pids': 32}
    assert os.path.isdir(os.path.join(v1.v1_mounts['memory'], 'mtd', 'web'))
    del log[:]
    assert group.ensure(limits)[0] is False
    assert log == []

    # Raising: memsw before memory (the fake kernel refuses the other order with EINVAL).
    group.ensure(cg.normalise_limits(memory='128m', memory_swap='256m'))
    assert log == [('memory.memsw.limit_in_bytes', str(256 * MiB)), ('memory.limit_in_bytes', str(128 * MiB))]
    del log[:]
    # Lowering: memory first.
    group.ensure(cg.normalise_limits(memory='32m'))
    assert log == [('memory.limit_in_bytes', str(32 * MiB)), ('memory.memsw.limit_in_bytes', str(32 * MiB))]
    del log[:]
    # Back to unlimited.
    group.ensure(cg.normalise_limits(memory='max', pids='max', cpus=0))
    assert log == [('memory.memsw.limit_in_bytes', '-1'), ('memory.limit_in_bytes', '-1'),
                   ('cpu.cfs_quota_us', '-1'), ('pids.max', 'max')]
    assert group.read_limits()['memory'] == MAX


def test_v1_period_change_clears_the_quota_first(v1):
    log = []
    group = FakeKernelCgroup(v1, 'mtd/web', log)
    group.ensure(cg.normalise_limits(cpus=0.5))
    del log[:]
    group.ensure(cg.normalise_limits(cpus=0.5, cpu_period=50000))
    assert log == [('cpu.cfs_quota_us', '-1'), ('cpu.cfs_period_us', '50000'), ('cpu.cfs_quota_us', '25000')]


def test_v1_limit_below_usage_is_a_clear_error(v1):
    log = []
    group = FakeKernelCgroup(v1, 'mtd/web', log)
    group.ensure(cg.normalise_limits(memory='128m'))
    _write_file(os.path.join(group.directory('memory'), 'memory.usage_in_bytes'), str(48 * MiB))
    with pytest.raises(cg.CgroupError) as excinfo:
        group.ensure(cg.normalise_limits(memory='16m'))
    assert excinfo.value.msg == ('The memory limit 16 MiB is below the current usage of cgroup /mtd/web (48 MiB) and '
                                 'the kernel could not reclaim enough; raise the limit or reduce the usage first.')
    assert group.read_limits()['memory'] == 128 * MiB


def test_pids_below_usage_is_refused_before_writing(v1):
    log = []
    group = FakeKernelCgroup(v1, 'mtd/web', log)
    group.ensure(cg.normalise_limits(pids=100))
    _write_file(os.path.join(group.directory('pids'), 'pids.current'), '12')
    del log[:]
    with pytest.raises(cg.CgroupError, match=r'pids limit 5 is below the current usage of cgroup /mtd/web \(12 tasks\)'):
        group.ensure(cg.normalise_limits(pids=5))
    assert log == []


def test_v1_missing_controller_and_missing_memsw(v1, tmp_path):
    no_pids = cg.Layout(1, {'memory': v1.v1_mounts['memory'], 'cpu': v1.v1_mounts['cpu']}, None)
    group = FakeKernelCgroup(no_pids, 'mtd/web', [])
    with pytest.raises(cg.CgroupError, match='The pids controller is not mounted as cgroup v1') as excinfo:
        group.ensure(cg.normalise_limits(pids=10))
    assert excinfo.value.details == {'missing_controller': 'pids'}
    # Without pids limits the level is made in the other hierarchies only.
    group.ensure(cg.normalise_limits(memory='64m'))
    assert group.directories() == [os.path.join(v1.v1_mounts['memory'], 'mtd/web'),
                                   os.path.join(v1.v1_mounts['cpu'], 'mtd/web')]
    # No swap accounting: memory_swap equal to memory is fine, different is an error.
    os.remove(os.path.join(v1.v1_mounts['memory'], 'memory.memsw.limit_in_bytes'))
    other = FakeKernelCgroup(v1, 'mtd/noswap', [])
    with pytest.raises(cg.CgroupError, match='no swap accounting'):
        other.ensure(cg.normalise_limits(memory='64m', memory_swap='128m'))


def test_v1_use_hierarchy_is_turned_on(v1):
    _write_file(os.path.join(v1.v1_mounts['memory'], 'memory.use_hierarchy'), '0')
    V1_DEFAULTS['memory']['memory.use_hierarchy'] = '0'
    try:
        log = []
        FakeKernelCgroup(v1, 'mtd', log).ensure({})
        assert ('memory.use_hierarchy', '1') in log
    finally:
        V1_DEFAULTS['memory']['memory.use_hierarchy'] = '1'


def test_v2_enables_controllers_down_the_path(v2):
    log = []
    group = FakeKernelCgroup(v2, 'mtd/web', log)
    changed, before, after = group.ensure(cg.normalise_limits(memory='64m', cpus=0.5, pids=32))
    assert changed
    assert log == [('cgroup.subtree_control', '+memory +cpu +pids'), ('cgroup.subtree_control', '+memory +cpu +pids'),
                   ('memory.max', str(64 * MiB)), ('memory.swap.max', '0'), ('cpu.max', '50000 100000'),
                   ('pids.max', '32')]
    assert after == {'memory': 64 * MiB, 'memory_swap': 64 * MiB, 'cpu_quota': 50000, 'cpu_period': 100000,
                     'cpu_weight': 100, 'pids': 32}
    del log[:]
    assert group.ensure(cg.normalise_limits(memory='64m', cpus=0.5, pids=32))[0] is False
    assert log == []
    group.ensure(cg.normalise_limits(memory='64m', memory_swap='96m', cpu_weight=200))
    assert log == [('memory.swap.max', str(32 * MiB)), ('cpu.weight', '200')]
    assert group.read_limits()['memory_swap'] == 96 * MiB


def test_v2_memory_below_usage_is_refused_before_writing(v2):
    log = []
    group = FakeKernelCgroup(v2, 'mtd/web', log)
    group.ensure(cg.normalise_limits(memory='128m'))
    _write_file(os.path.join(group.directory(), 'memory.current'), str(40 * MiB))
    del log[:]
    with pytest.raises(cg.CgroupError, match=r'memory limit 16 MiB is below the current usage of cgroup /mtd/web '
                                             r'\(40 MiB\)'):
        group.ensure(cg.normalise_limits(memory='16m'))
    assert log == []


def test_v2_missing_controller(v2):
    _write_file(os.path.join(v2.unified, 'cgroup.controllers'), 'cpu io')
    group = FakeKernelCgroup(v2, 'mtd/web', [])
    with pytest.raises(cg.CgroupError) as excinfo:
        group.ensure(cg.normalise_limits(memory='64m'))
    assert excinfo.value.msg == (
        'The memory controller is not available in %s/cgroup.controllers (cgroup.controllers lists: cpu io), so '
        'memory limits cannot be set; give it to cgroup v2 or leave those limits unset.' % v2.unified)
    assert not os.path.exists(os.path.join(v2.unified, 'mtd'))


def test_join_procs_and_remove(v1, tmp_path):
    group = FakeKernelCgroup(v1, 'mtd/web', [])
    group.ensure({})
    group.join(4242)
    assert group.procs() == [4242]
    _write_file(os.path.join(group.directory('memory'), 'cgroup.procs'), '')
    _write_file(os.path.join(group.directory('cpu'), 'cgroup.procs'), '')
    _write_file(os.path.join(group.directory('pids'), 'cgroup.procs'), '')
    for directory in group.directories():
        for name in os.listdir(directory):
            os.remove(os.path.join(directory, name))
    assert group.remove() == []
    assert not any(os.path.isdir(d) for d in group.directories())


def test_plan_for_a_level_that_does_not_exist_yet(v1):
    group = cg.Cgroup(v1, 'mtd/new')
    assert group.plan(cg.normalise_limits(memory='64m', pids=8), None) == [
        ('memory', 'memory.limit_in_bytes', str(64 * MiB), 'memory'),
        ('memory', 'memory.memsw.limit_in_bytes', str(64 * MiB), 'memory_swap'),
        ('pids', 'pids.max', '8', 'pids')]


@pytest.mark.parametrize('version', [1, 2])
def test_memory_usage_of_pid(tmp_path, version):
    proc = tmp_path / 'proc'
    (proc / '42').mkdir(parents=True)
    root = tmp_path / 'cg'
    if version == 1:
        layout = cg.Layout(1, {'memory': str(root / 'memory')})
        (proc / '42' / 'cgroup').write_text('12:pids:/docker/abc\n5:memory:/docker/abc\n0::/\n')
        target = root / 'memory' / 'docker' / 'abc' / 'memory.usage_in_bytes'
    else:
        layout = cg.Layout(2, {}, str(root))
        (proc / '42' / 'cgroup').write_text('0::/system.slice/docker-abc.scope\n')
        target = root / 'system.slice' / 'docker-abc.scope' / 'memory.current'
    target.parent.mkdir(parents=True)
    target.write_text('270532608\n')
    assert cg.memory_usage_of_pid(42, layout, proc=str(proc)) == 270532608
    assert cg.memory_usage_of_pid(43, layout, proc=str(proc)) is None   # no such process
    target.write_text('garbage\n')
    assert cg.memory_usage_of_pid(42, layout, proc=str(proc)) is None


@pytest.mark.parametrize('version', [1, 2])
def test_freeze_cgroup_of_pid(tmp_path, version):
    proc = tmp_path / 'proc'
    (proc / '42').mkdir(parents=True)
    mountinfo = tmp_path / 'mountinfo'
    if version == 1:
        mountinfo.write_text('37 31 0:34 / %s/freezer rw,relatime - cgroup cgroup rw,freezer\n'
                             '38 31 0:35 / %s/memory rw,relatime - cgroup cgroup rw,memory\n' % (tmp_path, tmp_path))
        (proc / '42' / 'cgroup').write_text('9:freezer:/docker/abc\n5:memory:/docker/abc\n')
        target = tmp_path / 'freezer' / 'docker' / 'abc' / 'freezer.state'
        expected = 'FROZEN'
    else:
        mountinfo.write_text('30 25 0:26 / %s/unified rw,nosuid - cgroup2 cgroup2 rw\n' % tmp_path)
        (proc / '42' / 'cgroup').write_text('0::/system.slice/docker-abc.scope\n')
        target = tmp_path / 'unified' / 'system.slice' / 'docker-abc.scope' / 'cgroup.freeze'
        expected = '1'
    target.parent.mkdir(parents=True)
    target.write_text('THAWED\n' if version == 1 else '0\n')
    assert cg.freeze_cgroup_of_pid(42, proc=str(proc), mountinfo_path=str(mountinfo)) == str(target)
    assert target.read_text() == expected
    with pytest.raises(cg.CgroupError, match='Cannot find the cgroup of process 43'):
        cg.freeze_cgroup_of_pid(43, proc=str(proc), mountinfo_path=str(mountinfo))


def test_freeze_cgroup_of_pid_without_a_freezer(tmp_path):
    proc = tmp_path / 'proc'
    (proc / '42').mkdir(parents=True)
    (proc / '42' / 'cgroup').write_text('5:memory:/docker/abc\n')
    mountinfo = tmp_path / 'mountinfo'
    mountinfo.write_text('38 31 0:35 / %s/memory rw,relatime - cgroup cgroup rw,memory\n' % tmp_path)
    with pytest.raises(cg.CgroupError, match='Process 42 has no freezer cgroup on this host'):
        cg.freeze_cgroup_of_pid(42, proc=str(proc), mountinfo_path=str(mountinfo))
