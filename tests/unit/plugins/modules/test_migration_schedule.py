# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest

from ansible_collections.mtd.containers.plugins.modules import migration_schedule
from ansible_collections.mtd.containers.tests.unit.plugins.modules import module_harness


def run_module(args, expect_failure=False):
    return module_harness.run_module(migration_schedule.main, args, expect_failure)


CONTAINERS = [
    {'id': 'a1', 'name': 'web-1', 'host': 'lab-1', 'uptime_seconds': 250.0, 'labels': {'mtd.service': 'web'}},
    {'id': 'b2', 'name': 'web-2', 'host': 'lab-2', 'uptime_seconds': 240.0, 'labels': {'mtd.service': 'web'}},
    {'id': 'c3', 'name': 'db-1', 'host': 'lab-1', 'uptime_seconds': 100.0, 'labels': {'mtd.service': 'db'},
     'image': '127.0.0.1:5000/mtd/busybox:latest', 'state': 'running'},
]


def test_worked_schedule():
    result = run_module({
        'reference': [100, '200s', {'created': '2026-11-28T09:00:00Z', 'first_attack': '2026-11-28T09:05:00Z'}],
        'delta_t': '30s',
        'containers': CONTAINERS,
        'now': '2026-11-28T09:40:00Z',
    })
    assert result['changed'] is False
    assert result['t1'] == 200.0
    assert result['delta_t'] == 30.0
    assert result['m'] == 3
    assert result['n'] == 3
    assert result['now'] == 1795858800.0
    assert [(e['i'], e['name'], e['threshold'], e['uptime'], e['due'], e['start_offset']) for e in result['plan']] == [
        (1, 'web-1', 200.0, 250.0, True, 0.0),
        (2, 'web-2', 230.0, 240.0, True, 0.0),
        (3, 'db-1', 260.0, 100.0, False, 160.0),
    ]
    assert [entry['name'] for entry in result['due']] == ['web-1', 'web-2']
    json.dumps(result)


def test_group_by_and_attacked():
    result = run_module({
        'reference': [200],
        'delta_t': 30,
        'containers': CONTAINERS,
        'group_by': 'mtd.service',
        'attacked': ['lab-1/db-1'],
    })
    assert [(e['name'], e['group'], e['i'], e['threshold']) for e in result['plan']] == [
        ('web-1', 'web', 1, 200.0), ('web-2', 'web', 2, 230.0), ('db-1', 'db', 1, 200.0)]
    assert [(e['name'], e['immediate']) for e in result['due']] == [('db-1', True), ('web-1', False), ('web-2', False)]


def test_check_mode_computes_the_same():
    args = {'reference': [200], 'delta_t': 30, 'containers': CONTAINERS, 'now': 1795858800}
    normal = run_module(args)
    checked = run_module(dict(args, _ansible_check_mode=True))
    assert checked['changed'] is False
    assert checked['plan'] == normal['plan']
    assert checked['due'] == normal['due']


def test_sort_key_and_descending():
    result = run_module({'reference': [200], 'delta_t': 30, 'containers': CONTAINERS, 'sort_key': 'name',
                         'descending': False})
    assert [entry['name'] for entry in result['plan']] == ['db-1', 'web-1', 'web-2']


@pytest.mark.parametrize('args, message', [
    ({'reference': []}, 'reference is empty: T1 is the mean over m >= 1 reference containers, '
                        'so give at least one time to first attack'),
    ({'reference': [100, -20]}, 'reference[1]: duration -20 is negative; durations must be >= 0 seconds'),
    ({'reference': [{'created': '2026-11-28T09:05:00Z', 'first_attack': '2026-11-28T09:00:00Z'}]},
     'cannot precede creation'),
    ({'delta_t': '-30s'}, "delta_t: duration '-30s' is negative; durations must be >= 0 seconds"),
    ({'delta_t': 'soon'}, "delta_t: cannot parse duration 'soon'"),
    ({'now': 'tomorrow'}, "now: cannot parse timestamp 'tomorrow'"),
    ({'attacked': ['ghost']}, "unknown container 'ghost' in attacked"),
    ({'containers': [{'id': 'x', 'uptime_seconds': 1}, {'id': 'x', 'uptime_seconds': 2}]}, 'duplicate container id x'),
    ({'containers': [{'name': 'w'}]}, 'has neither uptime_seconds nor started_at'),
    ({'sort_key': 'size'}, "sort_key 'size' is not supported"),
])
def test_bad_input_fails_with_a_clear_message(args, message):
    full = {'reference': [200], 'delta_t': 30, 'containers': CONTAINERS}
    full.update(args)
    result = run_module(full, expect_failure=True)
    assert result['failed'] is True
    assert message in result['msg']
    assert 'Traceback' not in result['msg']
    assert 'exception' not in result


def test_missing_required_option():
    result = run_module({'reference': [200], 'containers': CONTAINERS}, expect_failure=True)
    assert 'delta_t' in result['msg']
