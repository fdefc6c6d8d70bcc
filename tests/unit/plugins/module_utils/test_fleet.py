# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet scheduler: worked runs of the ledger - capacity never exceeded, limits kept, failures release."""

from __future__ import annotations

import random

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _fleet
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError

DEBIAN = {'id': 'debian', 'version_id': '12'}
UBUNTU = {'id': 'ubuntu', 'version_id': '24.04'}
ROCKY = {'id': 'rocky', 'version_id': '9'}


def host(os_facts, units, memory_mb=4096):
    return {'os': os_facts, 'docker': {'available': True}, 'remaining': {'units': units, 'memory_mb': memory_mb,
                                                                         'cpus': 4}}


def fleet(moves, hosts, **limits):
    """Ledger of ``moves`` = [(source, name, units)]."""
    due = [{'id': 'id-%s' % name, 'name': name, 'host': src} for src, name, dummy in moves]
    containers = [{'id': 'id-%s' % name, 'required': {'units': units, 'memory_mb': 32, 'cpus': 0.25}}
                  for dummy, name, units in moves]
    return _fleet.new_ledger(due, containers, hosts, dict({'concurrency': 6, 'max_outbound': 3, 'max_inbound': 3},
                                                          **limits))


# Sources a (debian, 2 containers) and d (debian, 3): targets b (ubuntu, 250 units, the largest) and c (rocky, 60).
# Every container needs 100 units: only b fits them, two at a time.
BIG = [('a', 'a1', 100), ('a', 'a2', 100), ('d', 'd1', 100), ('d', 'd2', 100), ('d', 'd3', 100)]
HOSTS = {'a': host(DEBIAN, 40), 'b': host(UBUNTU, 250), 'c': host(ROCKY, 60), 'd': host(DEBIAN, 500)}


def test_big_containers_fit_only_the_largest_host_two_at_a_time_and_the_rest_raise_the_alert():
    ledger = fleet(BIG, HOSTS)
    first = _fleet.claim(ledger, 'lane-1', 0.0)
    second = _fleet.claim(ledger, 'lane-2', 0.0)
    assert (first['action'], first['move']['key'], first['target']) == ('start', 'a/a1', 'b')
    assert (second['action'], second['move']['key'], second['target']) == ('start', 'a/a2', 'b')
    assert _fleet.reserved_on(ledger) == {'b': {'units': 200.0, 'memory_mb': 64.0, 'cpus': 0.5}}
    # b has 50 units left with both in flight; d1 would fit if one of them failed: it waits
    third = _fleet.next_move(ledger, 1.0)
    assert third['action'] == 'wait' and 'd/d1: waits for b (in flight)' in third['reason']
    # a1 arrives: its 100 units stay taken; b still has 50 - and would have 150 if a2 failed: still wait
    _fleet.release(ledger, 'a/a1', 'Succeeded', 2.0)
    assert _fleet.next_move(ledger, 2.0)['action'] == 'wait'
    # a2 arrives too: 250 - 200 = 50 < 100, for ever in this run -> d1, d2, d3 raise the alert, one each
    _fleet.release(ledger, 'a/a2', 'Succeeded', 3.0)
    alerts = [_fleet.claim(ledger, 'lane-1', 3.0) for dummy in range(3)]
    assert [(d['action'], d['move']['key']) for d in alerts] == [('alert', 'd/d1'), ('alert', 'd/d2'), ('alert', 'd/d3')]
    [on_b] = [r['reason'] for r in alerts[0]['choice']['rejected'] if r['name'] == 'b']
    assert 'insufficient units: remaining 50 < required 100' in on_b
    assert _fleet.next_move(ledger, 3.0)['action'] == 'done'
    assert [m['status'] for m in ledger['moves']] == ['succeeded', 'succeeded', 'unplaced', 'unplaced', 'unplaced']


def test_a_failed_migration_releases_its_reservation_and_the_waiting_move_takes_it():
    ledger = fleet(BIG, HOSTS)
    _fleet.claim(ledger, 'lane-1', 0.0)
    _fleet.claim(ledger, 'lane-2', 0.0)
    _fleet.release(ledger, 'a/a2', 'Failed', 1.0)         # rolled back: its 100 units come back to b
    assert _fleet.reserved_on(ledger)['b']['units'] == 100.0
    nxt = _fleet.claim(ledger, 'lane-2', 1.5)
    assert (nxt['action'], nxt['move']['key'], nxt['target']) == ('start', 'd/d1', 'b')
    assert _fleet.reserved_on(ledger)['b']['units'] == 200.0
    assert _fleet.release(ledger, 'a/a2', 'Succeeded', 2.0) is None, 'an ended move is released once'


def test_smaller_containers_go_to_the_largest_remaining_in_turn_and_no_host_is_ever_over_capacity():
    # 8 containers of 40 units on the two debian sources; b has 250, c has 60: b takes them while it has the most
    # remaining (250, 210, 170, 130, 90 > 60), then c and b alternate by what is left; random ends, some fail
    moves = [('a', 'a%d' % i, 40) for i in range(4)] + [('d', 'd%d' % i, 40) for i in range(4)]
    rng = random.Random(12)
    for _round in range(30):
        ledger = fleet(moves, HOSTS, concurrency=4, max_outbound=2, max_inbound=2)
        now = 0.0
        while True:
            decision = _fleet.claim(ledger, 'lane', now)
            running = [m for m in ledger['moves'] if m['status'] == 'running']
            for name, total in (('b', 250), ('c', 60)):
                held = sum(m['required']['units'] for m in ledger['moves']
                           if m['status'] in ('running', 'succeeded') and m['target'] == name)
                assert held <= total, 'host %s over capacity: %s > %s' % (name, held, total)
                assert sum(1 for m in running if m['target'] == name) <= 2
            for source in ('a', 'd'):
                assert sum(1 for m in running if m['host'] == source) <= 2
            assert len(running) <= 4
            if decision['action'] == 'done':
                break
            if decision['action'] == 'wait':
                ended = rng.choice(running)
                _fleet.release(ledger, ended['key'], rng.choice(['Succeeded', 'Succeeded', 'Failed']), now)
            now += 1.0
        statuses = [m['status'] for m in ledger['moves']]
        assert 'queued' not in statuses and 'running' not in statuses
        # what arrived fits: at most 6 x 40 on b (250) and 1 x 40 on c (60); the others failed or raised the alert
        arrived = [m['target'] for m in ledger['moves'] if m['status'] == 'succeeded']
        assert arrived.count('b') <= 6 and arrived.count('c') <= 1


def test_default_limits_one_outbound_and_one_inbound_per_host():
    hosts = {'a': host(DEBIAN, 0), 'd': host(DEBIAN, 0), 'b': host(UBUNTU, 1000), 'c': host(ROCKY, 900)}
    ledger = fleet([('a', 'a1', 1), ('a', 'a2', 1), ('d', 'd1', 1)], hosts, concurrency=3, max_outbound=1,
                   max_inbound=1)
    one = _fleet.claim(ledger, 'lane-1', 0.0)
    two = _fleet.claim(ledger, 'lane-2', 0.0)
    assert (one['move']['key'], one['target']) == ('a/a1', 'b')
    # a2 waits for a's outbound slot; d1 takes c since b has its one inbound migration
    assert (two['move']['key'], two['target']) == ('d/d1', 'c')
    three = _fleet.next_move(ledger, 0.0)
    assert three['action'] == 'wait' and 'a/a2: a has 1 outbound' in three['reason']
    _fleet.release(ledger, 'a/a1', 'Succeeded', 5.0)
    four = _fleet.claim(ledger, 'lane-1', 5.0)
    assert (four['move']['key'], four['target']) == ('a/a2', 'b')


def test_concurrency_caps_the_run_and_stagger_spaces_the_starts_from_one_source():
    hosts = {'a': host(DEBIAN, 0), 'b': host(UBUNTU, 1000), 'c': host(ROCKY, 900)}
    ledger = fleet([('a', 'a1', 1), ('a', 'a2', 1), ('a', 'a3', 1)], hosts, concurrency=1, max_outbound=3,
                   max_inbound=3, stagger=10)
    assert _fleet.claim(ledger, 'lane-1', 0.0)['action'] == 'start'
    assert _fleet.next_move(ledger, 1.0)['reason'] == '1 migration(s) run, the concurrency'
    _fleet.release(ledger, 'a/a1', 'Succeeded', 2.0)
    early = _fleet.next_move(ledger, 9.9)
    assert early['action'] == 'wait' and 'stagger on a' in early['reason']
    assert _fleet.claim(ledger, 'lane-1', 10.0)['move']['key'] == 'a/a2'


def test_ports_of_concurrent_migrations_and_their_page_servers_never_collide():
    used = []
    for i in range(200):
        port = _fleet.free_port('m-%d' % i, used)
        assert 47000 <= port <= 48998
        assert not {port, port + 1} & set(p for u in used for p in (u, u + 1)), (port, used)
        used.append(port)
    assert _fleet.free_port('same seed', []) == _fleet.free_port('same seed', [])


def test_bad_limits_and_moves_are_refused_with_the_fix():
    with pytest.raises(MtdError, match='max_inbound must be >= 1'):
        _fleet.check_limits({'max_inbound': 0})
    with pytest.raises(MtdError, match='stagger must be >= 0'):
        _fleet.check_limits({'stagger': -1})
    with pytest.raises(MtdError, match='listed twice'):
        _fleet.new_ledger([{'host': 'a', 'name': 'x'}, {'host': 'a', 'name': 'x'}], [], {}, {})
    with pytest.raises(MtdError, match='needs a host and a name'):
        _fleet.new_ledger([{'name': 'x'}], [], {}, {})


def _rec(*epochs):
    return {'history': [{'epoch': e} for e in epochs]}


def test_most_at_once_counts_the_overlap_of_the_records_histories():
    # in flight at 6: 0-10 and 5-12; at 11: 5-12 and 11-13 (0-10 ended at 10); at 12: 5-12 ends as 12-20
    # starts, so 11-13 and 12-20: never three
    assert _fleet.most_at_once([_rec(0, 4, 10), _rec(5, 12), _rec(12, 20), _rec(11, 13)]) == 2
    assert _fleet.most_at_once([_rec(0, 10), _rec(1, 9), _rec(2, 8)]) == 3
    assert _fleet.most_at_once([_rec(0, 1), _rec(1, 2), _rec(2, 3)]) == 1
    assert _fleet.most_at_once([{'history': []}, {}]) == 0
