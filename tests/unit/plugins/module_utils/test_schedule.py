# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._schedule import (
    due_order,
    due_timing,
    mean_time_to_first_attack,
    plan,
    time_to_first_attack,
)


# ---------------------------------------------------------------- T1

@pytest.mark.parametrize('reference, t1', [
    ([100, 200, 300], 200.0),
    (['100s', '200', 300.0], 200.0),
    (['15m'], 900.0),
    (['1h', '30m'], 2700.0),
    ([0, 0], 0.0),
    ([1, 2], 1.5),
    # Timestamps: 120 s, 300 s, 180 s -> 200 s.
    ([
        {'created': '2026-11-28T09:00:00Z', 'first_attack': '2026-11-28T09:02:00Z'},
        {'created': '2026-11-28T09:00:00Z', 'first_attack': '2026-11-28T09:05:00Z'},
        {'created': 1795856400, 'first_attack': 1795856580},
    ], 200.0),
    # Mixed records and durations, nanosecond timestamps: 100.5 s and 299.5 s -> 200 s.
    ([
        {'name': 'ref-1', 'created': '2026-11-28T09:00:00.000000000Z', 'first_attack': '2026-11-28T09:01:40.500000000Z'},
        '299.5s',
    ], 200.0),
    # An attack at the very creation counts as 0 s.
    ([{'created': '2026-11-28T09:00:00Z', 'first_attack': '2026-11-28T09:00:00Z'}, 400], 200.0),
    # An offset timestamp: 10:00+01:00 is 09:00Z, the attack comes 200 s later.
    ([{'created': '2026-11-28T10:00:00+01:00', 'first_attack': '2026-11-28T09:03:20Z'}], 200.0),
])
def test_mean_time_to_first_attack(reference, t1):
    assert mean_time_to_first_attack(reference) == pytest.approx(t1)


def test_time_to_first_attack_single_items():
    assert time_to_first_attack(42) == 42.0
    assert time_to_first_attack({'created': 10, 'first_attack': 70}) == 60.0


@pytest.mark.parametrize('reference, message', [
    ([], r'reference is empty: T1 is the mean over m >= 1'),
    ('100', 'must be a list'),
    ({'created': 1}, 'must be a list'),
    (None, 'must be a list'),
    ([100, -5], r'reference\[1\]: duration -5 is negative'),
    ([100, '-5m'], r'reference\[1\]: .*negative'),
    (['soon'], r'reference\[0\]: cannot parse duration'),
    ([None], r'reference\[0\] is empty'),
    ([{'created': '2026-11-28T09:00:00Z'}], r'reference\[0\] has no first_attack'),
    ([{}], r'has no created and first_attack'),
    ([{'created': 'later', 'first_attack': 5}], r'reference\[0\]: created: cannot parse timestamp'),
    ([{'name': 'ref-9', 'created': '2026-11-28T09:05:00Z', 'first_attack': '2026-11-28T09:00:00Z'}],
     r'reference\[0\] \(ref-9\): first_attack .* is 300s before created .*cannot precede creation'),
])
def test_mean_time_to_first_attack_rejects(reference, message):
    with pytest.raises(MtdError, match=message):
        mean_time_to_first_attack(reference)


# ---------------------------------------------------------------- plan

def _containers(*uptimes, **extra):
    return [dict({'id': 'c%d' % index, 'name': 'web-%d' % index, 'host': 'lab-1', 'uptime_seconds': uptime}, **extra)
            for index, uptime in enumerate(uptimes, start=1)]


def test_thresholds_are_t1_plus_i_minus_one_delta_t():
    # T1 = 200, delta_t = 30: thresholds 200, 230, 260, 290, 320 for i = 1..5, longest uptime first.
    result = plan(_containers(10, 50, 40, 30, 20), 200, 30)
    assert [entry['i'] for entry in result['plan']] == [1, 2, 3, 4, 5]
    assert [entry['name'] for entry in result['plan']] == ['web-2', 'web-3', 'web-4', 'web-5', 'web-1']
    assert [entry['threshold'] for entry in result['plan']] == [200, 230, 260, 290, 320]
    assert [entry['start_offset'] for entry in result['plan']] == [150, 190, 230, 270, 310]
    assert result['due'] == []
    assert all(entry['due'] is False and entry['immediate'] is False for entry in result['plan'])
    assert result['plan'][0]['reason'] == 'uptime 50s within threshold 200s; due in 150s'


def test_t1_from_reference_feeds_the_plan():
    t1 = mean_time_to_first_attack([100, 200, 300])
    result = plan(_containers(250, 240, 100), t1, '30s')
    # i=1 uptime 250 > 200 due; i=2 uptime 240 > 230 due; i=3 uptime 100 < 260 not due (160 s to go).
    assert [(e['name'], e['threshold'], e['due'], e['start_offset']) for e in result['plan']] == [
        ('web-1', 200, True, 0),
        ('web-2', 230, True, 0),
        ('web-3', 260, False, 160),
    ]
    assert [entry['name'] for entry in result['due']] == ['web-1', 'web-2']
    assert result['plan'][0]['reason'] == 'uptime 250s exceeds threshold 200s'


def test_due_is_strictly_greater_than_threshold():
    result = plan(_containers(200, 100), 200, 30)
    first = result['plan'][0]
    assert (first['uptime'], first['threshold'], first['due'], first['start_offset']) == (200, 200, False, 0)
    result = plan(_containers(200.001, 100), 200, 30)
    assert result['plan'][0]['due'] is True


def test_attacked_is_immediate_and_first_in_due():
    containers = _containers(300, 250, 10, 5)
    result = plan(containers, 200, 30, attacked=['web-4'])
    by_name = dict((entry['name'], entry) for entry in result['plan'])
    assert by_name['web-4']['immediate'] is True
    assert by_name['web-4']['due'] is True
    assert by_name['web-4']['start_offset'] == 0
    assert by_name['web-4']['threshold'] == 290  # numbering is unchanged by the attack
    assert by_name['web-4']['reason'] == 'under attack: migrate now'
    assert by_name['web-3']['due'] is False
    # Immediate first, then by threshold.
    assert [entry['name'] for entry in result['due']] == ['web-4', 'web-1', 'web-2']


def test_attacked_flag_on_the_container():
    containers = _containers(10, 20)
    containers[0]['attacked'] = True
    containers[0]['severity'] = 'high'
    result = plan(containers, 200, 30)
    assert [(entry['name'], entry['immediate'], entry['severity']) for entry in result['due']] == [('web-1', True, 'high')]


def test_attacked_entries_by_id_prefix_name_and_host_name():
    containers = [
        {'id': '0123456789abcdef', 'name': 'web', 'host': 'lab-1', 'uptime_seconds': 1},
        {'id': 'fedcba9876543210', 'name': 'web', 'host': 'lab-2', 'uptime_seconds': 2},
        {'id': 'aaaa', 'name': 'db', 'host': 'lab-2', 'uptime_seconds': 3},
    ]

    def immediate(result):
        return sorted(entry['id'] for entry in result['plan'] if entry['immediate'])

    assert immediate(plan(containers, 100, 10, attacked=['lab-2/web'])) == ['fedcba9876543210']
    assert immediate(plan(containers, 100, 10, attacked=['0123456789ab'])) == ['0123456789abcdef']
    assert immediate(plan(containers, 100, 10, attacked=['fedcba9876543210', 'db'])) == ['aaaa', 'fedcba9876543210']
    assert immediate(plan(containers, 100, 10, attacked=['lab-2/aaaa'])) == ['aaaa']
    with pytest.raises(MtdError, match=r"attacked entry 'web' is ambiguous: it names lab-1/web, lab-2/web"):
        plan(containers, 100, 10, attacked=['web'])


@pytest.mark.parametrize('attacked', [['ghost'], ['lab-3/web'], ['0123'], ['deadbeef00']])
def test_attacked_unknown_container(attacked):
    containers = [{'id': '0123456789abcdef', 'name': 'web', 'host': 'lab-1', 'uptime_seconds': 1}]
    with pytest.raises(MtdError, match=r'unknown container .* in attacked'):
        plan(containers, 100, 10, attacked=attacked)


def test_group_by_restarts_numbering_per_service():
    containers = [
        {'name': 'web-1', 'uptime_seconds': 500, 'labels': {'mtd.service': 'web'}},
        {'name': 'db-1', 'uptime_seconds': 400, 'labels': {'mtd.service': 'db'}},
        {'name': 'web-2', 'uptime_seconds': 300, 'labels': {'mtd.service': 'web'}},
        {'name': 'db-2', 'uptime_seconds': 200, 'labels': {'mtd.service': 'db'}},
        {'name': 'solo', 'uptime_seconds': 100},
    ]
    result = plan(containers, 200, 30, group_by='mtd.service')
    assert [(e['name'], e['group'], e['i'], e['threshold']) for e in result['plan']] == [
        ('web-1', 'web', 1, 200),
        ('db-1', 'db', 1, 200),
        ('web-2', 'web', 2, 230),
        ('db-2', 'db', 2, 230),
        ('solo', None, 1, 200),
    ]
    assert [entry['name'] for entry in result['due']] == ['web-1', 'db-1', 'web-2']
    # Without grouping the same containers are numbered 1..5.
    assert [e['i'] for e in plan(containers, 200, 30)['plan']] == [1, 2, 3, 4, 5]
    # label: prefix is accepted too.
    assert plan(containers, 200, 30, group_by='label:mtd.service')['plan'] == result['plan']


def test_ties_broken_by_name_then_id():
    containers = [
        {'id': 'b', 'name': 'web', 'host': 'lab-2', 'uptime_seconds': 100},
        {'id': 'z', 'name': 'alpha', 'uptime_seconds': 100},
        {'id': 'a', 'name': 'web', 'host': 'lab-1', 'uptime_seconds': 100},
        {'id': 'c', 'name': 'old', 'uptime_seconds': 900},
    ]
    expected = ['c', 'z', 'a', 'b']
    assert [e['id'] for e in plan(containers, 60, 10)['plan']] == expected
    assert [e['id'] for e in plan(list(reversed(containers)), 60, 10)['plan']] == expected
    # Ascending uptime: the ties keep name/id ascending order.
    assert [e['id'] for e in plan(containers, 60, 10, descending=False)['plan']] == ['z', 'a', 'b', 'c']


def test_sort_keys():
    containers = [
        {'id': '1', 'name': 'b', 'uptime_seconds': 10, 'started_at': '2026-11-28T09:00:10Z', 'labels': {'prio': '10'}},
        {'id': '2', 'name': 'c', 'uptime_seconds': 30, 'started_at': '2026-11-28T08:59:50Z', 'labels': {'prio': '9'}},
        {'id': '3', 'name': 'a', 'uptime_seconds': 20, 'started_at': '2026-11-28T09:00:00Z'},
    ]

    def names(**kwargs):
        return [entry['name'] for entry in plan(containers, 60, 10, **kwargs)['plan']]

    assert names() == ['c', 'a', 'b']
    assert names(sort_key='name') == ['c', 'b', 'a']
    assert names(sort_key='name', descending=False) == ['a', 'b', 'c']
    assert names(sort_key='started_at', descending=False) == ['c', 'a', 'b']
    assert names(sort_key='given') == ['b', 'c', 'a']
    assert names(sort_key='given', descending=False) == ['b', 'c', 'a']
    # Numeric label values compare as numbers (10 > 9); a missing label comes last.
    assert names(sort_key='label:prio') == ['b', 'c', 'a']
    assert names(sort_key='label:prio', descending=False) == ['c', 'b', 'a']


def test_started_at_and_now():
    containers = [
        {'name': 'a', 'started_at': '2026-11-28T09:30:00Z'},
        {'name': 'b', 'started_at': '2026-11-28T09:26:40.000000000Z'},
        {'name': 'future', 'started_at': '2026-11-28T09:40:00Z'},
    ]
    result = plan(containers, 200, 30, now='2026-11-28T09:33:20Z')
    assert [(e['name'], e['uptime']) for e in result['plan']] == [('b', 400), ('a', 200), ('future', 0)]
    assert [e['name'] for e in result['due']] == ['b']
    # Same with an epoch now.
    same = plan(containers, 200, 30, now=1795858400)
    assert same['plan'] == result['plan']


def test_duration_strings_for_t1_and_delta_t():
    result = plan(_containers(1, 2, 3), '3m20s', '30s')
    assert [entry['threshold'] for entry in result['plan']] == [200, 230, 260]


def test_zero_delta_t_gives_one_threshold():
    result = plan(_containers(1, 2, 3), 200, 0)
    assert [entry['threshold'] for entry in result['plan']] == [200, 200, 200]


def test_empty_containers():
    assert plan([], 200, 30) == {'plan': [], 'due': []}


def test_result_is_json_serialisable_and_due_entries_are_copies():
    result = plan(_containers(300, 10), 200, 30, attacked=['c2'])
    json.dumps(result)
    result['due'][0]['reason'] = 'changed'
    assert result['plan'][1]['reason'] == 'under attack: migrate now'
    assert set(result['plan'][0]) == {'i', 'id', 'name', 'host', 'group', 'threshold', 'uptime', 'due', 'immediate',
                                      'start_offset', 'reason', 'severity'}


@pytest.mark.parametrize('kwargs, message', [
    (dict(containers=[{'id': 'x', 'uptime_seconds': 1}, {'id': 'x', 'uptime_seconds': 2}]),
     r'duplicate container id x \(containers\[0\] and containers\[1\]\)'),
    (dict(containers=[{'name': 'w', 'host': 'h', 'uptime_seconds': 1}, {'name': 'w', 'host': 'h', 'uptime_seconds': 2}]),
     r'duplicate container h/w'),
    (dict(containers=[{'name': 'w', 'uptime_seconds': 1}, {'name': 'w', 'uptime_seconds': 2}]),
     r'duplicate container w'),
    (dict(containers=[{'uptime_seconds': 1}]), r'containers\[0\] has neither id nor name'),
    (dict(containers=[{'name': 'w'}]), r'containers\[0\] \(w\) has neither uptime_seconds nor started_at'),
    (dict(containers=[{'name': 'w', 'uptime_seconds': -3}]), r'uptime_seconds: duration -3 is negative'),
    (dict(containers=[{'name': 'w', 'started_at': 'noon'}]), r'started_at: cannot parse timestamp'),
    (dict(containers=['w']), r'containers\[0\] must be a dict'),
    (dict(containers='w'), r'containers must be a list'),
    (dict(containers=[{'name': 'w', 'uptime_seconds': 1, 'labels': ['a']}]), r'labels must be a dict'),
    (dict(t1=-1), r't1: duration -1 is negative'),
    (dict(delta_t='-30s'), r'delta_t: .* negative'),
    (dict(delta_t=None), r'delta_t is required'),
    (dict(sort_key='size'), r"sort_key 'size' is not supported"),
    (dict(sort_key='label:'), r"sort_key 'label:' is not supported"),
    (dict(now='never'), r'now: cannot parse timestamp'),
])
def test_plan_rejects(kwargs, message):
    args = dict(containers=_containers(1), t1=200, delta_t=30)
    args.update(kwargs)
    with pytest.raises(MtdError, match=message):
        plan(**args)


def test_same_name_on_different_hosts_is_fine():
    containers = [
        {'id': 'a', 'name': 'web', 'host': 'lab-1', 'uptime_seconds': 1},
        {'id': 'b', 'name': 'web', 'host': 'lab-2', 'uptime_seconds': 1},
        {'id': 'c', 'name': 'db', 'uptime_seconds': 1},
        {'id': 'd', 'name': 'db', 'uptime_seconds': 1},
    ]
    assert len(plan(containers, 1, 1)['plan']) == 4


@pytest.mark.parametrize('uptime, threshold, attacked, expected', [
    # T1 = 200 s, delta_t = 30 s: container 2's threshold is 230 s
    (200.0, 230.0, False, (False, False, 30.0, 'uptime 200s within threshold 230s; due in 30s')),
    (230.0, 230.0, False, (False, False, 0.0, 'uptime 230s within threshold 230s; due in 0s')),   # not yet past
    (230.5, 230.0, False, (True, False, 0.0, 'uptime 230.5s exceeds threshold 230s')),
    (10.0, 230.0, True, (True, True, 0.0, 'under attack: migrate now')),
    (100.25, 130.5, False, (False, False, 30.25, 'uptime 100.25s within threshold 130.5s; due in 30.25s')),
])
def test_due_timing(uptime, threshold, attacked, expected):
    timing = due_timing(uptime, threshold, attacked)
    assert (timing['due'], timing['immediate'], timing['start_offset'], timing['reason']) == expected


def test_due_order_immediate_first_then_threshold_i_and_position():
    entries = [
        {'name': 'a', 'i': 1, 'threshold': 200.0, 'due': True, 'immediate': False},
        {'name': 'b', 'i': 2, 'threshold': 230.0, 'due': False, 'immediate': False},
        {'name': 'c', 'i': 3, 'threshold': 260.0, 'due': True, 'immediate': True},
        {'name': 'd', 'i': 1, 'threshold': 200.0, 'due': True, 'immediate': False},   # other group, same i
    ]
    due = due_order(entries)
    assert [entry['name'] for entry in due] == ['c', 'a', 'd']
    assert due[0] == entries[2] and due[0] is not entries[2]
