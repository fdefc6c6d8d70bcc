# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which migration of a fleet run starts next, and where to: the scheduler of the reservation ledger.

Pure functions, no I/O (the ledger itself, a JSON file on the controller, is kept by the action plugin
``mtd.containers.fleet_ledger``). Private module_utils file; the API may change without notice.

The ledger is a dict::

    {'moves': [{'key', 'id', 'name', 'host', 'required', 'status', 'target', 'port', 'lane', 'started', 'ended'}],
     'hosts': {name: mtd facts as gathered at the start of the run (os, docker, capacity/reserved/remaining)},
     'limits': {'concurrency', 'max_outbound', 'max_inbound', 'stagger'}, 'granularity': 'id'}

A move's ``status`` is ``queued``, ``running``, ``succeeded``, ``failed`` or ``unplaced``. The resources of
running and succeeded moves are reserved on their target (a failed one releases them); the target of the next
move is chosen by ``_placement.choose_target`` over the hosts' remaining resources less those reservations.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._placement import (
    choose_target,
    remaining_of,
)

STATUSES = ('queued', 'running', 'succeeded', 'failed', 'unplaced')
HOLDING = ('running', 'succeeded')       # the moves whose resources stay reserved on their target
PORT_BASE = 47000
PORT_SPAN = 2000


def check_limits(limits: Dict[str, Any]) -> Dict[str, Any]:
    """Return the limits as numbers: ``concurrency``, ``max_outbound``, ``max_inbound`` >= 1, ``stagger`` >= 0."""
    result: Dict[str, Any] = {}
    for key in ('concurrency', 'max_outbound', 'max_inbound'):
        try:
            value = int(limits.get(key, 1))
        except (TypeError, ValueError):
            raise MtdError('%s must be an integer >= 1, got %r' % (key, limits.get(key)))
        if value < 1:
            raise MtdError('%s must be >= 1, got %d' % (key, value))
        result[key] = value
    try:
        result['stagger'] = float(limits.get('stagger', 0) or 0)
    except (TypeError, ValueError):
        raise MtdError('stagger must be a number of seconds >= 0, got %r' % (limits.get('stagger'),))
    if result['stagger'] < 0:
        raise MtdError('stagger must be >= 0, got %s' % result['stagger'])
    return result


def new_ledger(moves: List[Dict[str, Any]], containers: List[Dict[str, Any]], hosts: Dict[str, Any],
               limits: Dict[str, Any], granularity: str = 'id') -> Dict[str, Any]:
    """The ledger of a run: ``moves`` (due entries: id, name, host) in order, each with the ``required``
    resources of its container (from ``containers``, the fleet_containers list; none when absent)."""
    required = dict((str(c.get('id')), dict(c.get('required') or {})) for c in containers or [] if isinstance(c, dict))
    entries = []
    seen = set()
    for move in moves or []:
        if not isinstance(move, dict) or not move.get('host') or not move.get('name'):
            raise MtdError('every move needs a host and a name, got %r' % (move,))
        key = '%s/%s' % (move['host'], move['name'])
        if key in seen:
            raise MtdError('move %s is listed twice' % key)
        seen.add(key)
        entries.append({'key': key, 'id': move.get('id'), 'name': move['name'], 'host': move['host'],
                        'required': required.get(str(move.get('id')), dict(move.get('required') or {})),
                        'status': 'queued', 'target': None, 'port': None, 'lane': None, 'started': None,
                        'ended': None})
    return {'moves': entries, 'hosts': dict(hosts or {}), 'limits': check_limits(limits or {}),
            'granularity': granularity}


def reserved_on(ledger: Dict[str, Any], statuses=HOLDING) -> Dict[str, Dict[str, float]]:
    """``{host: {resource: sum}}`` of the required resources of the moves in ``statuses`` onto each host."""
    totals: Dict[str, Dict[str, float]] = {}
    for move in ledger['moves']:
        if move['status'] in statuses and move['target']:
            host = totals.setdefault(move['target'], {})
            for key, need in (move.get('required') or {}).items():
                host[key] = round(host.get(key, 0.0) + float(need or 0), 6)
    return totals


def effective_hosts(ledger: Dict[str, Any], statuses=HOLDING) -> Dict[str, Dict[str, Any]]:
    """The hosts' facts with ``remaining`` = remaining at the start less the reservations of ``statuses``."""
    reserved = reserved_on(ledger, statuses)
    result = {}
    for name, facts in ledger['hosts'].items():
        facts = dict(facts or {})
        left = remaining_of(facts)
        for key, used in reserved.get(name, {}).items():
            if key in left:
                left[key] = round(left[key] - used, 6)
        facts['remaining'] = left
        result[name] = facts
    return result


def _count(ledger, field):
    counts: Dict[str, int] = {}
    for move in ledger['moves']:
        if move['status'] == 'running':
            counts[move[field]] = counts.get(move[field], 0) + 1
    return counts


def _last_start(ledger, source):
    starts = [m['started'] for m in ledger['moves'] if m['host'] == source and m['started'] is not None]
    return max(starts) if starts else None


def _container(move):
    return {'id': move.get('id'), 'name': move['name'], 'host': move['host'], 'required': move.get('required') or {}}


def _choice(ledger, move, statuses, full_inbound):
    """``choose_target`` for ``move`` over the hosts less the reservations of ``statuses``, without the hosts
    in ``full_inbound`` (the container's own host stays: its OS is the reference)."""
    hosts = effective_hosts(ledger, statuses)
    candidates = dict((name, facts) for name, facts in hosts.items()
                      if name == move['host'] or name not in full_inbound)
    return choose_target(_container(move), candidates, granularity=ledger.get('granularity') or 'id')


def next_move(ledger: Dict[str, Any], now: float) -> Dict[str, Any]:
    """What a free lane does next: ``{'action': 'start' | 'alert' | 'wait' | 'done', 'move', 'target', 'choice',
    'reason'}`` (``move``/``target``/``choice`` for start and alert).

    Steps, over the queued moves in order: a move waits while ``concurrency`` migrations run, while its
    source has ``max_outbound`` running or started one less than ``stagger`` seconds ago. Its target is the
    ``_placement`` choice (another OS, the largest remaining that fits) among the hosts below ``max_inbound``,
    with the resources of running and succeeded moves reserved -> start. When none fits: if one would fit with
    only the succeeded moves reserved and no inbound limit, the move waits (a running migration may still fail
    and release its host, or end and free an inbound slot), else nothing can ever fit it in this run -> alert.
    Nothing startable: wait while a migration runs or a move waits, else done.
    """
    limits = ledger['limits']
    running = _count(ledger, 'host')
    if sum(running.values()) >= limits['concurrency']:
        return {'action': 'wait', 'reason': '%d migration(s) run, the concurrency' % sum(running.values())}
    inbound = _count(ledger, 'target')
    full_inbound = set(host for host, count in inbound.items() if count >= limits['max_inbound'])
    waiting = []
    for move in ledger['moves']:
        if move['status'] != 'queued':
            continue
        source = move['host']
        last = _last_start(ledger, source)
        if running.get(source, 0) >= limits['max_outbound']:
            waiting.append('%s: %s has %d outbound' % (move['key'], source, running[source]))
            continue
        if last is not None and now < last + limits['stagger']:
            waiting.append('%s: stagger on %s' % (move['key'], source))
            continue
        choice = _choice(ledger, move, HOLDING, full_inbound)
        if choice['target']:
            return {'action': 'start', 'move': move, 'target': choice['target'], 'choice': choice,
                    'reason': choice['reason']}
        later = _choice(ledger, move, ('succeeded',), set())
        if later['target']:
            waiting.append('%s: waits for %s (in flight)' % (move['key'], later['target']))
            continue
        return {'action': 'alert', 'move': move, 'target': None, 'choice': choice, 'reason': choice['reason']}
    if waiting or running:
        return {'action': 'wait', 'reason': '; '.join(waiting) or 'migrations in flight'}
    return {'action': 'done', 'reason': 'no move left'}


def free_port(seed: str, used: List[int]) -> int:
    """A transfer port in 47000-48998 for a new migration: derived from ``seed``, moved on by 2 until neither
    it nor the next one (the post-copy page server's) is one of ``used`` (the running migrations' ports)."""
    taken: set = set()
    for port in used:
        if port:
            taken.update((int(port) - 1, int(port), int(port) + 1))
    start = int(hashlib.md5(seed.encode('utf-8')).hexdigest()[:6], 16) % (PORT_SPAN - 1)
    for step in range(0, PORT_SPAN, 2):
        port = PORT_BASE + (start + step) % (PORT_SPAN - 1)
        if port not in taken and port + 1 not in taken:
            return port
    raise MtdError('no free transfer port left in %d-%d' % (PORT_BASE, PORT_BASE + PORT_SPAN - 1))


def claim(ledger: Dict[str, Any], lane: str, now: float) -> Dict[str, Any]:
    """Apply ``next_move`` to the ledger for ``lane``: a started move becomes running on its target with a free
    port and its resources reserved; an alerted one becomes unplaced. Returns the decision (its ``move`` is the
    updated entry)."""
    decision = next_move(ledger, now)
    move = decision.get('move') or {}
    if decision['action'] == 'start':
        used = [m['port'] for m in ledger['moves'] if m['status'] == 'running']
        move.update(status='running', target=decision['target'], lane=lane, started=now,
                    port=free_port('%s %s' % (move['key'], now), used))
    elif decision['action'] == 'alert':
        move.update(status='unplaced', lane=lane, started=now, ended=now)
    return decision


def release(ledger: Dict[str, Any], key: str, outcome: str, now: float) -> Optional[Dict[str, Any]]:
    """End the running move ``key``: ``Succeeded`` keeps its reservation on the target, anything else
    releases it (status failed). Returns the entry, None when ``key`` was not running (nothing changes)."""
    for move in ledger['moves']:
        if move['key'] == key and move['status'] == 'running':
            move.update(status='succeeded' if outcome == 'Succeeded' else 'failed', ended=now)
            return move
    return None


def most_at_once(records: List[Dict[str, Any]]) -> int:
    """The most migrations in flight at one instant, from migration records (a record is in flight from its
    first to its last history entry's ``epoch``; a record without history is not counted). One that ends at
    the instant another starts does not overlap it."""
    spans = [(r['history'][0]['epoch'], r['history'][-1]['epoch']) for r in records if r.get('history')]
    # at the same instant an end (-1) sorts before a start (+1)
    events = sorted([(start, 1) for start, dummy in spans] + [(end, -1) for dummy, end in spans])
    most = count = 0
    for _instant, step in events:
        count += step
        most = max(most, count)
    return most
