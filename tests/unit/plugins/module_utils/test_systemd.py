# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The systemd slice client (plugins/module_utils/_systemd.py) against a fake systemctl that writes a
slice's files the way systemd does (the real one is exercised on the lab's VM host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _cgroup as cgroup_lib
from ansible_collections.mtd.containers.plugins.module_utils._cmd import CmdResult
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._systemd import (
    SliceLevel,
    quota_refusal,
    uses_systemd_driver,
)
from ansible_collections.mtd.containers.tests.unit.plugins.module_utils.test_cgroup import v2_layout

MiB = 1 << 20
FILES = {'MemoryMax': 'memory.max', 'MemorySwapMax': 'memory.swap.max', 'TasksMax': 'pids.max'}


class FakeSystemctl:
    """Records the calls; ``start`` writes the properties set so far into the slice's directory (``bend``
    changes what it writes: a systemd that ignores a property)."""

    def __init__(self, directory, bend=None, calls=None):
        self.calls = [] if calls is None else calls
        self.directory = directory
        self.props = {}
        self.bend = bend or {}

    def run(self, args, check=False, what=None):
        self.calls.append(list(args))
        if args[0] == 'set-property':
            self.props.update(item.split('=', 1) for item in args[2:])
        elif args[0] == 'start':
            self.directory.mkdir(parents=True, exist_ok=True)
            for prop, value in dict(self.props, **self.bend).items():
                if prop in FILES:
                    (self.directory / FILES[prop]).write_text('max\n' if value == 'infinity' else value + '\n')
        return CmdResult(['systemctl'] + list(args), 0, '', '', 0.0)


@pytest.fixture
def layout(tmp_path):
    return v2_layout(tmp_path)


def slice_dir(layout):
    return Path(layout.unified) / 'mtd.slice' / 'mtd-web\\x2d1.slice'


def test_the_level_is_the_escaped_slice_and_the_container_its_scope(layout):
    level = SliceLevel(layout, 'mtd', 'web-1', FakeSystemctl(slice_dir(layout)))
    assert level.unit == 'mtd-web\\x2d1.slice'
    assert level.cgroup.path == 'mtd.slice/mtd-web\\x2d1.slice'
    assert level.scope('ab12').path == 'mtd.slice/mtd-web\\x2d1.slice/docker-ab12.scope'


def test_a_bad_level_is_refused_before_it_is_escaped(layout):
    with pytest.raises(cgroup_lib.CgroupError):
        SliceLevel(layout, 'mtd/..', 'web', FakeSystemctl(slice_dir(layout)))


def test_apply_sets_the_properties_starts_and_reads_back(layout):
    fake = FakeSystemctl(slice_dir(layout))
    level = SliceLevel(layout, 'mtd', 'web-1', fake)
    limits = cgroup_lib.normalise_limits(memory='48m', pids=40)
    after, written = level.apply(limits, None, [])     # a new level: its properties are set
    assert written
    assert fake.calls == [['set-property', 'mtd-web\\x2d1.slice', 'MemoryMax=%d' % (48 * MiB), 'MemorySwapMax=0',
                           'TasksMax=40'],
                          ['start', 'mtd-web\\x2d1.slice']]
    assert after['memory'] == 48 * MiB and after['memory_swap'] == 48 * MiB and after['pids'] == 40
    # nothing to write: the slice is only started (realised) and read
    fake.calls = []
    assert level.apply(limits, after, []) == (after, False)
    assert fake.calls == [['start', 'mtd-web\\x2d1.slice']]


def test_apply_fails_when_the_files_do_not_hold_the_limits(layout):
    fake = FakeSystemctl(slice_dir(layout), bend={'TasksMax': '1000'})
    level = SliceLevel(layout, 'mtd', 'web-1', fake)
    limits = cgroup_lib.normalise_limits(memory='48m', pids=40)
    with pytest.raises(MtdError, match=r'does not hold the limits systemd was given \(pids differ'):
        level.apply(limits, None, [])


def test_a_quota_systemd_cannot_express_is_refused_before_any_call(layout):
    fake = FakeSystemctl(slice_dir(layout))
    level = SliceLevel(layout, 'mtd', 'web-1', fake)
    # 0.123456 CPU: 12345.6 us per 100000 us, CPUQuota keeps two decimals of a percent (12.35% -> 12350 us)
    limits = {'cpu_quota': 12345, 'cpu_period': 100000}
    assert 'round cpus to a multiple of 0.0001' in quota_refusal(limits)
    with pytest.raises(MtdError, match='systemd cannot express'):
        level.apply(limits, None, [])
    assert fake.calls == []
    assert quota_refusal({'cpu_quota': 50000, 'cpu_period': 100000}) is None
    assert quota_refusal({}) is None


def test_remove_stops_and_reverts(layout):
    fake = FakeSystemctl(slice_dir(layout))
    SliceLevel(layout, 'mtd', 'web-1', fake).remove()
    assert fake.calls == [['stop', 'mtd-web\\x2d1.slice'], ['revert', 'mtd-web\\x2d1.slice']]


@pytest.mark.parametrize('info, expected', [
    ({'CgroupDriver': 'systemd'}, True), ({'CgroupDriver': 'cgroupfs'}, False), ({}, False), (None, False)])
def test_uses_systemd_driver(info, expected):
    assert uses_systemd_driver(info) is expected


def test_limits_below_the_slices_usage_are_refused_before_any_call(layout):
    fake = FakeSystemctl(slice_dir(layout))
    level = SliceLevel(layout, 'mtd', 'web-1', fake)
    level.apply(cgroup_lib.normalise_limits(pids=100), None, [])
    (slice_dir(layout) / 'pids.current').write_text('50\n')
    fake.calls = []
    limits = cgroup_lib.normalise_limits(pids=40)
    before = level.cgroup.read_limits()
    with pytest.raises(cgroup_lib.CgroupError, match='below the current usage'):
        level.apply(limits, before, level.cgroup.plan(limits, before))
    assert fake.calls == []
