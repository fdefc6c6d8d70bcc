# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Worked examples of the systemd-driver decisions of confine (plugins/module_utils/_systemd_slice.py)."""

from __future__ import annotations

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _cgroup as cgroup_lib
from ansible_collections.mtd.containers.plugins.module_utils._systemd_slice import (
    cpu_quota_percent,
    driver_refusal,
    escape_component,
    expected_cpu_quota,
    slice_cgroup_path,
    slice_properties,
    slice_unit,
)


@pytest.mark.parametrize('text, escaped', [
    ('web', 'web'),
    ('web-1', 'web\\x2d1'),            # a '-' would nest the slice one level deeper
    ('a_b.c:d', 'a_b.c:d'),
    ('.hidden', '\\x2ehidden'),
    ('a b', 'a\\x20b'),
    ('caf\u00e9', 'caf\\xc3\\xa9'),    # UTF-8 bytes, one escape each
])
def test_escape_component(text, escaped):
    assert escape_component(text) == escaped


@pytest.mark.parametrize('parent, name, unit, path', [
    ('mtd', 'web', 'mtd-web.slice', 'mtd.slice/mtd-web.slice'),
    ('mtd', 'web-1', 'mtd-web\\x2d1.slice', 'mtd.slice/mtd-web\\x2d1.slice'),
    ('mtd/team', 'web', 'mtd-team-web.slice', 'mtd.slice/mtd-team.slice/mtd-team-web.slice'),
    ('/mtd/', 'web', 'mtd-web.slice', 'mtd.slice/mtd-web.slice'),
    ('', 'web', 'web.slice', 'web.slice'),
    (None, 'web', 'web.slice', 'web.slice'),
])
def test_slice_unit_and_its_cgroup(parent, name, unit, path):
    assert slice_unit(parent, name) == unit
    assert slice_cgroup_path(unit) == path


def test_two_names_with_a_dash_do_not_nest():
    """web and web-1 are siblings: web's limits do not cap web-1."""
    web = slice_cgroup_path(slice_unit('mtd', 'web'))
    web_1 = slice_cgroup_path(slice_unit('mtd', 'web-1'))
    assert not web_1.startswith(web + '/')
    assert web_1.rsplit('/', 1)[0] == web.rsplit('/', 1)[0] == 'mtd.slice'


def test_slice_edge_cases():
    assert slice_cgroup_path('-.slice') == ''
    with pytest.raises(ValueError):
        slice_cgroup_path('docker-1.scope')
    with pytest.raises(ValueError):
        slice_unit('/', '')


@pytest.mark.parametrize('driver, version, refused', [
    (None, 1, None),
    ('cgroupfs', 1, None),
    ('cgroupfs', 2, None),
    ('systemd', 2, None),
    ('systemd', 1, 'cgroup v2 only'),
    ('other', 2, 'supports the cgroupfs driver'),
])
def test_driver_refusal(driver, version, refused):
    found = driver_refusal(driver, version)
    if refused is None:
        assert found is None
    else:
        assert refused in found


@pytest.mark.parametrize('quota, period, percent, back', [
    (50000, 100000, '50%', 50000),
    (200000, 100000, '200%', 200000),
    (12345, 100000, '12.35%', 12350),      # systemd keeps two decimals: not the quota asked for
    (25000, 50000, '50%', 25000),
    (1000, 100000, '1%', 1000),
    ('max', 100000, '', 'max'),
])
def test_cpu_quota_percent(quota, period, percent, back):
    assert cpu_quota_percent(quota, period) == percent
    assert expected_cpu_quota(quota, period) == back


def test_slice_properties_from_normalised_limits():
    limits = cgroup_lib.normalise_limits(memory='64m', memory_swap='96m', cpus=0.5, cpu_weight=200, pids=32)
    assert slice_properties(limits) == [
        'MemoryMax=67108864',
        'MemorySwapMax=33554432',         # the swap alone: (memory + swap) - memory
        'CPUQuota=50%',
        'CPUQuotaPeriodSec=100000us',
        'CPUWeight=200',
        'TasksMax=32',
    ]


def test_slice_properties_no_swap_and_unlimited():
    assert slice_properties(cgroup_lib.normalise_limits(memory='64m')) == ['MemoryMax=67108864', 'MemorySwapMax=0']
    assert slice_properties(cgroup_lib.normalise_limits(memory='max', memory_swap='max', cpus=0, pids='max')) == [
        'MemoryMax=infinity', 'MemorySwapMax=infinity', 'CPUQuota=', 'CPUQuotaPeriodSec=100000us',
        'TasksMax=infinity']
    assert slice_properties({}) == []


def test_cgroup_paths_accept_systemd_escapes_only():
    assert cgroup_lib.validate_relative_path('/mtd.slice/mtd-web\\x2d1.slice/') == 'mtd.slice/mtd-web\\x2d1.slice'
    for bad in ('mtd/a\\b', 'mtd/a\\x2', 'mtd/a\\X2D', 'mtd/../x'):
        with pytest.raises(cgroup_lib.CgroupError):
            cgroup_lib.validate_relative_path(bad)
