# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""When must each container move: T1 from reference attacks and the staggered migration plan.

Pure functions, no I/O. Private module_utils file; the API may change without notice.

The model: ``T1`` is the mean time to first attack measured on ``m`` reference containers. Running
containers are sorted (longest uptime first by default) and numbered ``i = 1..n``; container ``i`` is
due for migration once its uptime exceeds ``threshold_i = T1 + (i - 1) * delta_t``, so migrations are
staggered by ``delta_t``. A container flagged as under attack is due at once.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.mtd.containers.plugins.module_utils._common import (
    MtdError,
    parse_duration,
    to_epoch,
)

SORT_KEYS = ('uptime', 'name', 'started_at', 'given')
LABEL_PREFIX = 'label:'

# Shortest id prefix accepted in ``attacked`` (docker's short ids have 12 characters).
MIN_ID_PREFIX = 6


def _fmt(number):
    """Format seconds for messages: ``230`` or ``230.5`` (no float noise)."""
    number = float(number)
    if number.is_integer():
        return '%d' % number
    return ('%.3f' % number).rstrip('0').rstrip('.')


def _describe(item):
    """Name a reference record or container in messages."""
    if not isinstance(item, dict):
        return repr(item)
    name = item.get('name')
    host = item.get('host')
    ident = item.get('id')
    if name and host:
        return '%s/%s' % (host, name)
    if name:
        return str(name)
    if ident:
        return str(ident)[:12]
    return '<unnamed>'


def time_to_first_attack(item: Any, where: str = 'reference item') -> float:
    """Return the time to first attack, in seconds, of one reference item.

    ``item`` is a duration (number of seconds or a string such as ``"15m"``) or a dict with the
    timestamps ``created`` and ``first_attack`` (epoch or RFC 3339). ``where`` names the item in
    error messages.
    """
    if isinstance(item, dict):
        missing = [key for key in ('created', 'first_attack') if item.get(key) in (None, '')]
        if missing:
            raise MtdError(
                '%s has no %s; a reference record needs both created and first_attack timestamps'
                % (where, ' and '.join(missing)))
        try:
            created = to_epoch(item['created'])
        except ValueError as exc:
            raise MtdError('%s: created: %s' % (where, exc))
        try:
            first_attack = to_epoch(item['first_attack'])
        except ValueError as exc:
            raise MtdError('%s: first_attack: %s' % (where, exc))
        if first_attack < created:
            raise MtdError(
                '%s (%s): first_attack %s is %ss before created %s; the first attack cannot precede creation'
                % (where, _describe(item), item['first_attack'], _fmt(created - first_attack), item['created']))
        return first_attack - created
    if item is None:
        raise MtdError('%s is empty; give a duration or a {created, first_attack} record' % (where,))
    try:
        return parse_duration(item)
    except ValueError as exc:
        raise MtdError('%s: %s' % (where, exc))


def mean_time_to_first_attack(reference: Any) -> float:
    """Return T1, the mean time to first attack (float seconds) over the ``m`` reference items.

    ``reference`` is a list whose items are durations or ``{created, first_attack}`` records (see
    ``time_to_first_attack``). Raises ``MtdError`` when the list is empty or an item is invalid.
    """
    if isinstance(reference, (str, bytes, dict)) or not hasattr(reference, '__iter__'):
        raise MtdError('reference must be a list of durations or {created, first_attack} records, got %s'
                       % type(reference).__name__)
    reference = list(reference)
    if not reference:
        raise MtdError('reference is empty: T1 is the mean over m >= 1 reference containers, '
                       'so give at least one time to first attack')
    durations = [time_to_first_attack(item, 'reference[%d]' % index) for index, item in enumerate(reference)]
    return math.fsum(durations) / len(durations)


def _seconds(value, what):
    if value is None:
        raise MtdError('%s is required' % what)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise MtdError('%s: %s' % (what, exc))


class _Clock:
    """Gives ``now`` lazily: the current time is read only when a container needs it."""

    def __init__(self, now):
        self._now = None
        if now is not None:
            try:
                self._now = to_epoch(now)
            except ValueError as exc:
                raise MtdError('now: %s' % exc)

    def now(self):
        if self._now is None:
            self._now = time.time()
        return self._now


def _normalise_containers(containers, clock):
    if isinstance(containers, (str, bytes, dict)) or not hasattr(containers, '__iter__'):
        raise MtdError('containers must be a list of dicts, got %s' % type(containers).__name__)
    items = []
    seen_ids: Dict[str, int] = {}
    seen_names: Dict[Tuple[Optional[str], str], int] = {}
    for index, container in enumerate(containers):
        where = 'containers[%d]' % index
        if not isinstance(container, dict):
            raise MtdError('%s must be a dict with id and/or name, got %s' % (where, type(container).__name__))
        ident = container.get('id')
        name = container.get('name')
        ident = str(ident) if ident not in (None, '') else None
        name = str(name).lstrip('/') if name not in (None, '') else None
        if ident is None and name is None:
            raise MtdError('%s has neither id nor name; every container needs at least one of them' % where)
        host = container.get('host')
        host = str(host) if host not in (None, '') else None
        if ident is not None:
            if ident in seen_ids:
                raise MtdError('duplicate container id %s (containers[%d] and %s); each container must appear once'
                               % (ident, seen_ids[ident], where))
            seen_ids[ident] = index
        # Docker names are unique per host: the same name on an unknown host is a duplicate only when the
        # ids cannot tell the two containers apart.
        if name is not None and (host is not None or ident is None):
            key = (host, name)
            if key in seen_names:
                raise MtdError('duplicate container %s (containers[%d] and %s); each container must appear once'
                               % ('%s/%s' % key if host else name, seen_names[key], where))
            seen_names[key] = index

        uptime, started_epoch = _uptime_of(container, where, clock)
        labels = container.get('labels') or {}
        if not isinstance(labels, dict):
            raise MtdError('%s (%s): labels must be a dict' % (where, _describe(container)))
        items.append({
            'index': index,
            'id': ident,
            'name': name,
            'host': host,
            'uptime': round(uptime, 3),
            'started_epoch': started_epoch,
            'attacked': container.get('attacked') in (True, 'true', 'True', 'yes', '1', 1),
            'severity': container.get('severity'),
            'labels': labels,
        })
    return items


def _uptime_of(container: Dict[str, Any], where: str, clock: _Clock) -> Tuple[float, Optional[float]]:
    """``(uptime seconds, start epoch or None)``: ``uptime_seconds``, else ``now - started_at``."""
    started_at = container.get('started_at')
    started_epoch = None
    if started_at not in (None, ''):
        try:
            started_epoch = to_epoch(started_at)
        except ValueError as exc:
            raise MtdError('%s (%s): started_at: %s' % (where, _describe(container), exc))
    uptime = container.get('uptime_seconds')
    if uptime not in (None, ''):
        try:
            return parse_duration(uptime), started_epoch
        except ValueError as exc:
            raise MtdError('%s (%s): uptime_seconds: %s' % (where, _describe(container), exc))
    if started_epoch is not None:
        # A start slightly in the future (clock skew between hosts) counts as just started.
        return max(0.0, clock.now() - started_epoch), started_epoch
    raise MtdError('%s (%s) has neither uptime_seconds nor started_at; give one of them'
                   % (where, _describe(container)))


def _resolve_attacked(items, attacked):
    """Return the set of item indexes named in ``attacked`` (ids, id prefixes, names, host/name)."""
    if attacked is None:
        return set()
    if isinstance(attacked, str):
        attacked = [attacked]
    by_ref = {}
    by_name: Dict[str, List[Dict[str, Any]]] = {}
    for item in items:
        for ref in (item['id'], item['host'] and item['name'] and '%s/%s' % (item['host'], item['name']),
                    item['host'] and item['id'] and '%s/%s' % (item['host'], item['id'])):
            if ref:
                by_ref[ref] = item['index']
        if item['name']:
            by_name.setdefault(item['name'], []).append(item)

    flagged = set()
    for entry in attacked:
        if entry in (None, ''):
            continue
        entry = str(entry).strip()
        if entry in by_ref:
            flagged.add(by_ref[entry])
            continue
        named = by_name.get(entry.lstrip('/'))
        if named and len(named) == 1:
            flagged.add(named[0]['index'])
            continue
        if named:
            raise MtdError('attacked entry %r is ambiguous: it names %s; use host/name or the container id'
                           % (entry, ', '.join(sorted(_describe(item) for item in named))))
        matches = []
        if len(entry) >= MIN_ID_PREFIX:
            matches = [item for item in items if item['id'] and item['id'].startswith(entry)]
        if len(matches) == 1:
            flagged.add(matches[0]['index'])
        elif matches:
            raise MtdError('attacked entry %r is ambiguous: it is a prefix of %d container ids; give more of the id'
                           % (entry, len(matches)))
        else:
            raise MtdError('unknown container %r in attacked: it matches no id, name or host/name of the given containers'
                           % (entry,))
    return flagged


def _numeric_or_none(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _sort(items, sort_key, descending, clock):
    # Tie order first (name, then id, ascending); the stable sort below keeps it for equal keys.
    base = sorted(items, key=lambda item: (item['name'] is None, item['name'] or '', item['id'] or ''))
    if sort_key == 'given':
        return list(items)
    if sort_key == 'uptime':
        values = dict((item['index'], item['uptime']) for item in items)
    elif sort_key == 'name':
        values = dict((item['index'], item['name']) for item in items)
    elif sort_key == 'started_at':
        values = {}
        for item in items:
            started = item['started_epoch']
            if started is None:
                started = clock.now() - item['uptime']
            values[item['index']] = started
    else:
        label = sort_key[len(LABEL_PREFIX):]
        raw = dict((item['index'], item['labels'].get(label)) for item in items)
        present = [value for value in raw.values() if value is not None]
        numbers = [_numeric_or_none(value) for value in present]
        if present and all(number is not None for number in numbers):
            values = dict((index, _numeric_or_none(value)) for index, value in raw.items())
        else:
            values = dict((index, None if value is None else str(value)) for index, value in raw.items())
    present = [item for item in base if values[item['index']] is not None]
    missing = [item for item in base if values[item['index']] is None]
    present.sort(key=lambda item: values[item['index']], reverse=bool(descending))
    return present + missing


def _check_sort_key(sort_key):
    if sort_key is None:
        return 'uptime'
    if sort_key in SORT_KEYS:
        return sort_key
    if isinstance(sort_key, str) and sort_key.startswith(LABEL_PREFIX) and len(sort_key) > len(LABEL_PREFIX):
        return sort_key
    raise MtdError('sort_key %r is not supported; use one of %s or label:KEY'
                   % (sort_key, ', '.join(SORT_KEYS)))


def plan(containers: Any, t1: Any, delta_t: Any, sort_key: Optional[str] = 'uptime', descending: bool = True,
         attacked: Any = (), group_by: Optional[str] = None, now: Any = None) -> Dict[str, List[Dict[str, Any]]]:
    """Build the staggered migration plan.

    ``containers``: list of dicts with ``id`` and/or ``name``, optional ``host``, ``uptime_seconds``
    (or ``started_at``, then the uptime is ``now - started_at``), ``attacked`` (bool), ``severity``
    and ``labels``.

    ``t1`` and ``delta_t``: seconds (or duration strings), both ``>= 0``.

    ``sort_key``: ``uptime`` (default), ``name``, ``started_at``, ``given`` (input order, ``descending``
    ignored) or ``label:KEY``. Containers without a value for the key come last; ties are broken by
    name then id, ascending.

    ``attacked``: ids (or unique id prefixes of at least 6 characters), names or ``host/name`` of
    containers under attack; they are due at once.

    ``group_by``: a label key (such as ``mtd.service``); numbering restarts at 1 in every group.
    Containers without the label form one group (``None``).

    ``now``: epoch or RFC 3339 timestamp; the current time when omitted (read only when needed).

    Returns ``{'plan': [entry, ...], 'due': [entry, ...]}``. ``plan`` is in sort order; every entry has
    ``i, id, name, host, group, threshold, uptime, due, immediate, start_offset, reason, severity``.
    ``due`` holds (copies of) the due entries, immediate ones first, then by threshold and ``i``.
    """
    t1 = _seconds(t1, 't1')
    delta_t = _seconds(delta_t, 'delta_t')
    sort_key = _check_sort_key(sort_key)
    group_by = _check_group_by(group_by)
    clock = _Clock(now)

    items = _normalise_containers(containers, clock)
    flagged = _resolve_attacked(items, attacked)
    ordered = _sort(items, sort_key, descending, clock)

    counters: Dict[Optional[str], int] = {}
    entries = []
    for item in ordered:
        group = _group_of(item, group_by)
        i = counters.get(group, 0) + 1
        counters[group] = i
        threshold = round(t1 + (i - 1) * delta_t, 3)
        timing = due_timing(item['uptime'], threshold, item['attacked'] or item['index'] in flagged)
        entries.append({
            'i': i,
            'id': item['id'],
            'name': item['name'],
            'host': item['host'],
            'group': group,
            'threshold': threshold,
            'uptime': item['uptime'],
            'due': timing['due'],
            'immediate': timing['immediate'],
            'start_offset': timing['start_offset'],
            'reason': timing['reason'],
            'severity': item['severity'],
        })
    return {'plan': entries, 'due': due_order(entries)}


def _check_group_by(group_by: Any) -> Optional[str]:
    if group_by is not None and not isinstance(group_by, str):
        raise MtdError('group_by must be a label key such as mtd.service')
    if group_by and group_by.startswith(LABEL_PREFIX):
        group_by = group_by[len(LABEL_PREFIX):]
    return group_by


def _group_of(item: Dict[str, Any], group_by: Optional[str]) -> Optional[str]:
    if not group_by:
        return None
    group = item['labels'].get(group_by)
    return None if group is None else str(group)


def due_timing(uptime: float, threshold: float, attacked: bool) -> Dict[str, Any]:
    """When one container is due: ``{'due', 'immediate', 'start_offset', 'reason'}``.

    Under attack it is due at once; else it is due once its uptime exceeds the threshold, and
    ``start_offset`` is the time left until then: ``due_timing(200, 230, False)`` ->
    ``{'due': False, 'immediate': False, 'start_offset': 30.0, 'reason': 'uptime 200s within threshold 230s;
    due in 30s'}``.
    """
    past = uptime > threshold
    if attacked:
        start_offset = 0.0
        reason = 'under attack: migrate now'
    elif past:
        start_offset = 0.0
        reason = 'uptime %ss exceeds threshold %ss' % (_fmt(uptime), _fmt(threshold))
    else:
        start_offset = round(threshold - uptime, 3)
        reason = 'uptime %ss within threshold %ss; due in %ss' % (_fmt(uptime), _fmt(threshold), _fmt(start_offset))
    return {'due': past or attacked, 'immediate': attacked, 'start_offset': start_offset, 'reason': reason}


def due_order(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Copies of the due ``entries``: immediate first, then by threshold and ``i``; the plan position settles
    ties between groups."""
    ranked = [((not entry['immediate'], entry['threshold'], entry['i'], position), entry)
              for position, entry in enumerate(entries) if entry['due']]
    ranked.sort(key=lambda pair: pair[0])
    return [dict(entry) for dummy, entry in ranked]
