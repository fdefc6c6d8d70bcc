# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where must a container move: the target host choice, severity levels and the no-target payloads.

Pure functions, no I/O. Private module_utils file; the API may change without notice.
Every step is linear in the number of candidates (the optional ranking is ``O(n log k)``), so
ten thousand candidates are decided in a few tens of milliseconds.

Candidate facts follow ``docs/facts-schema.md`` (``ansible_facts.mtd`` of each host).
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError

GRANULARITIES = ('id', 'id_version', 'kernel')
RESOURCES = ('cpus', 'memory_mb', 'units')
DEFAULT_RANK_BY = ('units', 'memory_mb', 'cpus')
DEFAULT_SEVERITY_LEVELS = {'low': 3, 'medium': 6, 'high': 9}
DEFAULT_REBUILD_THRESHOLD = 5

# Sub-dicts that may wrap the mtd facts of a candidate (hostvars, set_fact results, ...).
_WRAPPERS = ('mtd', 'facts', 'ansible_facts')
_FACT_KEYS = ('os', 'capacity', 'reserved', 'remaining')


def _fmt(number):
    """Format a figure for messages: ``200``, ``1.5`` (no float noise)."""
    number = float(number)
    if number.is_integer():
        return '%d' % number
    return ('%.6f' % number).rstrip('0').rstrip('.')


def _number(value):
    """Return ``value`` as a finite float, or None when it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number) or math.isinf(number):
        return None
    return number


def os_key(os_facts: Any, granularity: str = 'id') -> Tuple[str, ...]:
    """Return the tuple that decides whether two hosts run the "same OS".

    ``id``: ``(ID,)``; ``id_version``: ``(ID, VERSION_ID)``; ``kernel``: ``(ID, VERSION_ID, kernel)``
    (the finest: hosts differ when any of the three differs). Raises ``MtdError`` when the facts lack a
    field the granularity needs.
    """
    if granularity not in GRANULARITIES:
        raise MtdError('granularity %r is not supported; use one of %s' % (granularity, ', '.join(GRANULARITIES)))
    if not isinstance(os_facts, dict) or os_facts.get('id') in (None, ''):
        raise MtdError('missing OS facts (os.id)')
    os_id = str(os_facts['id']).strip().lower()
    if granularity == 'id':
        return (os_id,)
    version = os_facts.get('version_id')
    version = '' if version is None else str(version).strip()
    if granularity == 'id_version':
        return (os_id, version)
    kernel = os_facts.get('kernel')
    if kernel in (None, ''):
        raise MtdError('missing OS facts (os.kernel), needed for granularity kernel')
    return (os_id, version, str(kernel).strip())


def describe_os_key(key: Tuple[str, ...]) -> str:
    """Render an ``os_key`` tuple for messages: ``debian``, ``debian 12``, ``debian 12, kernel 6.1.0``."""
    text = ' '.join(part for part in key[:2] if part)
    if len(key) > 2:
        text = '%s, kernel %s' % (text, key[2])
    return text


def _unwrap(facts):
    for _dummy in range(4):
        if not isinstance(facts, dict) or any(key in facts for key in _FACT_KEYS):
            return facts
        for wrapper in _WRAPPERS:
            if isinstance(facts.get(wrapper), dict):
                facts = facts[wrapper]
                break
        else:
            return facts
    return facts


def remaining_of(facts: Dict[str, Any], keys: Optional[Iterable[str]] = None) -> Dict[str, float]:
    """Return ``{resource: float}``: ``facts['remaining']`` per key, else ``capacity - reserved``.

    ``keys`` limits the resources looked at (default: every key of ``remaining`` and ``capacity``).
    A resource whose figure is missing or not a number is left out (the caller reports it).
    """
    remaining = facts.get('remaining')
    capacity = facts.get('capacity')
    reserved = facts.get('reserved')
    remaining = remaining if isinstance(remaining, dict) else {}
    capacity = capacity if isinstance(capacity, dict) else {}
    reserved = reserved if isinstance(reserved, dict) else {}
    if keys is None:
        keys = set(remaining) | set(capacity)
    result = {}
    for key in keys:
        value = _number(remaining.get(key))
        if value is None and key in capacity:
            total = _number(capacity[key])
            used = _number(reserved.get(key, 0))
            if total is not None and used is not None:
                value = round(total - used, 6)
        if value is not None:
            result[key] = value
    return result


def normalise_candidates(candidates: Any) -> List[Dict[str, Any]]:
    """Return a list of ``{'name', 'facts', 'os', 'docker_available'}``, in input order.

    ``candidates`` is a dict ``{host name: mtd facts}`` or a list of dicts that carry ``name`` and
    either the mtd facts fields or a ``facts``/``mtd`` sub-dict. Raises ``MtdError`` on a malformed
    entry or a duplicate name.
    """
    if candidates is None:
        return []
    if isinstance(candidates, dict):
        pairs = list(candidates.items())
    elif isinstance(candidates, (list, tuple)):
        pairs = []
        for index, entry in enumerate(candidates):
            if not isinstance(entry, dict):
                raise MtdError('candidates[%d] must be a dict with a name, got %s' % (index, type(entry).__name__))
            if entry.get('name') in (None, ''):
                raise MtdError('candidates[%d] has no name; every candidate needs the inventory name of its host'
                               % index)
            pairs.append((entry['name'], entry))
    else:
        raise MtdError('candidates must be a dict of host name to mtd facts or a list of dicts with a name, got %s'
                       % type(candidates).__name__)

    result = []
    seen = set()
    for name, facts in pairs:
        name = str(name)
        if name in seen:
            raise MtdError('candidate %s appears twice; each host must be given once' % name)
        seen.add(name)
        facts = _unwrap(facts)
        if facts is None:
            facts = {}
        if not isinstance(facts, dict):
            raise MtdError('the facts of candidate %s must be a dict, got %s' % (name, type(facts).__name__))
        docker = facts.get('docker')
        result.append({
            'name': name,
            'facts': facts,
            'os': facts.get('os'),
            'docker_available': docker.get('available') if isinstance(docker, dict) else None,
        })
    return result


def _required(container, resources):
    required = container.get('required') or {}
    if not isinstance(required, dict):
        raise MtdError('container.required must be a dict such as {cpus: 0.5, memory_mb: 256, units: 10}')
    if resources is None:
        keys = [key for key in required if required[key] is not None]
    else:
        keys = list(resources)
    result = {}
    for key in keys:
        raw = required.get(key)
        if raw is None:
            continue
        value = _number(raw)
        if value is None:
            raise MtdError('container.required.%s must be a number, got %r' % (key, raw))
        if value < 0:
            raise MtdError('container.required.%s is negative (%s); required resources must be >= 0' % (key, _fmt(value)))
        result[key] = value
    return result


def _rank_key(remaining, rank_by):
    # Descending by each figure: negate; a missing figure ranks last.
    return tuple(-remaining[key] if key in remaining else math.inf for key in rank_by)


def choose_target(container: Dict[str, Any], candidates: Any, granularity: str = 'id',
                  resources: Optional[Iterable[str]] = None, rank_by: Iterable[str] = DEFAULT_RANK_BY,
                  ranking_limit: Optional[int] = None) -> Dict[str, Any]:
    """Choose the host a container should move to.

    ``container``: dict with ``id``, ``name``, ``ip``, ``host`` (inventory name of its current host,
    never chosen), ``os`` (``{id, version_id, kernel}`` of its host; read from ``candidates[host]``
    when absent) and ``required`` (``{cpus, memory_mb, units}``).

    ``candidates``: see ``normalise_candidates``. ``granularity``: see ``os_key``. ``resources``:
    the resource names that must fit (default: every key of ``container['required']``).
    ``rank_by``: the remaining figures compared, in order, to pick the largest. ``ranking_limit``:
    keep only the best N entries of the ranking (all when None).

    Steps: preliminary hosts are the candidates with a different OS key than the container's host
    (the current host excluded); those whose remaining figures are at least the required ones for
    every required resource fit; the fitting host with the largest remaining figures (lexicographic
    over ``rank_by``, host name ascending on ties) is the target.

    Returns a dict: ``target`` (name or None), ``fits``, ``preliminary`` (names), ``rejected``
    (``[{name, reason, code}]``, one for every candidate but the target, in candidate order),
    ``ranking`` (``[{rank, name, remaining}]`` of the fitting hosts, best first), ``chosen`` (summary
    of the target or None), ``target_facts``, ``container_os``, ``os_key``, ``required`` and ``reason``.
    """
    rank_by = _check_choice_options(container, granularity, rank_by)
    required = _required(container, resources)
    hosts = normalise_candidates(candidates)
    current = container.get('host')
    current = None if current in (None, '') else str(current)
    container_os = _container_os(container, hosts, current)
    try:
        reference = os_key(container_os, granularity)
    except MtdError as exc:
        raise MtdError("the OS of the container's host is unusable: %s" % exc)

    screen = _screen(hosts, current, reference, granularity, required, rank_by)
    if screen['fitting']:
        decision = _pick(screen['fitting'], screen['rejected'], rank_by, required, ranking_limit)
    else:
        decision = {'target': None, 'target_facts': None, 'chosen': None, 'ranking': [],
                    'reason': _no_target_reason(hosts, screen['rejected'])}
    rejected = screen['rejected']
    return {
        'target': decision['target'],
        'fits': decision['target'] is not None,
        'preliminary': screen['preliminary'],
        'rejected': [{'name': host['name'], 'reason': rejected[host['name']][0], 'code': rejected[host['name']][1]}
                     for host in hosts if host['name'] in rejected],
        'ranking': decision['ranking'],
        'chosen': decision['chosen'],
        'target_facts': decision['target_facts'],
        'container_os': container_os,
        'os_key': list(reference),
        'required': required,
        'reason': decision['reason'],
    }


def _check_choice_options(container: Any, granularity: str, rank_by: Iterable[str]) -> List[str]:
    """Validate the shape of the container and the choice options; return ``rank_by`` as a list."""
    if not isinstance(container, dict):
        raise MtdError('container must be a dict with id, name, host, os and required')
    if isinstance(rank_by, str):
        rank_by = [rank_by]
    rank_by = list(rank_by or ())
    if not rank_by or not all(isinstance(key, str) and key for key in rank_by):
        raise MtdError('rank_by must be a non-empty list of resource names such as units, memory_mb, cpus')
    if granularity not in GRANULARITIES:
        raise MtdError('granularity %r is not supported; use one of %s' % (granularity, ', '.join(GRANULARITIES)))
    return rank_by


def _container_os(container: Dict[str, Any], hosts: List[Dict[str, Any]], current: Optional[str]) -> Any:
    """``container.os``, else the OS facts of the container's current host among the candidates."""
    container_os = container.get('os') or None
    if container_os is None and current is not None:
        for host in hosts:
            if host['name'] == current:
                container_os = host['os']
                break
    if not container_os:
        raise MtdError('cannot tell the OS of the host of container %s: give container.os or include its host%s '
                       'in the candidates' % (_label(container), ' %s' % current if current else ''))
    return container_os


def shortfall(remaining: Dict[str, float], required: Dict[str, float]) -> Tuple[List[str], str]:
    """Why ``remaining`` figures do not cover ``required`` ones: ``(problems, code)``; no problems when they do.

    ``code`` is ``missing_facts`` when a required figure is missing, else ``insufficient``.
    ``shortfall({'units': 4}, {'units': 5})`` -> ``(['insufficient units: remaining 4 < required 5'], 'insufficient')``.
    """
    problems = []
    code = 'insufficient'
    for resource, need in required.items():
        have = remaining.get(resource)
        if have is None:
            problems.append('missing facts: no remaining %s' % resource)
            code = 'missing_facts'
        elif have < need:
            problems.append('insufficient %s: remaining %s < required %s' % (resource, _fmt(have), _fmt(need)))
    return problems, code


def _screen(hosts: List[Dict[str, Any]], current: Optional[str], reference: Tuple[str, ...], granularity: str,
            required: Dict[str, float], rank_by: List[str]) -> Dict[str, Any]:
    """Steps 1 and 2: the preliminary hosts (other OS), the fitting ones with their rank keys, and the rejected.

    Returns ``{'preliminary': [name], 'rejected': {name: (reason, code)}, 'fitting': [((rank key, name), host)]}``;
    every fitting host gets ``host['remaining']``.
    """
    # Only the figures that decide are computed per host; the target's full figures come at the end.
    needed = list(required) + [key for key in rank_by if key not in required]
    preliminary = []
    rejected = {}
    fitting = []
    for host in hosts:
        name = host['name']
        if name == current:
            rejected[name] = ("is the container's current host", 'current_host')
            continue
        try:
            key = os_key(host['os'], granularity)
        except MtdError as exc:
            rejected[name] = (str(exc), 'missing_facts')
            continue
        if key == reference:
            rejected[name] = ("same OS as the container's host (%s)" % describe_os_key(key), 'same_os')
            continue
        preliminary.append(name)
        if host['docker_available'] is False:
            rejected[name] = ('docker is not available on the host', 'no_docker')
            continue
        remaining = remaining_of(host['facts'], needed)
        host['remaining'] = remaining
        problems, code = shortfall(remaining, required)
        if problems:
            rejected[name] = ('; '.join(problems), code)
            continue
        fitting.append(((_rank_key(remaining, rank_by), name), host))
    return {'preliminary': preliminary, 'rejected': rejected, 'fitting': fitting}


def _pick(fitting: List[Tuple[Tuple[Any, str], Dict[str, Any]]], rejected: Dict[str, Tuple[str, str]],
          rank_by: List[str], required: Dict[str, float], ranking_limit: Optional[int]) -> Dict[str, Any]:
    """Step 3: the fitting host with the largest remaining figures; the others go to ``rejected``.

    Returns ``{'target', 'target_facts', 'chosen', 'ranking', 'reason'}``.
    """
    best_key, best = min(fitting, key=lambda pair: pair[0])
    target = best['name']
    for sort_key, host in fitting:
        if host is best:
            continue
        if sort_key[0] == best_key[0]:
            reason = 'fits but ties with %s on remaining %s; %s comes first by name' % (
                target, ', '.join(rank_by), target)
        else:
            reason = 'fits but has less remaining than %s' % target
        rejected[host['name']] = (reason, 'not_chosen')
    if ranking_limit is None:
        best_first = sorted(fitting, key=lambda pair: pair[0])
    else:
        best_first = heapq.nsmallest(max(0, int(ranking_limit)), fitting, key=lambda pair: pair[0])
    shown = list(rank_by) + [key for key in required if key not in rank_by]
    ranking = [{'rank': rank, 'name': host['name'], 'remaining': dict((key, host['remaining'].get(key)) for key in shown)}
               for rank, (_dummy, host) in enumerate(best_first, start=1)]
    remaining = remaining_of(best['facts'])
    chosen = {
        'name': target,
        'os': best['os'],
        'remaining': dict(remaining),
        'remaining_after': dict((key, round(remaining[key] - need, 6)) for key, need in required.items()),
    }
    reason = '%s has the largest remaining %s among %d fitting host%s' % (
        target, ', '.join(rank_by), len(fitting), '' if len(fitting) == 1 else 's')
    return {'target': target, 'target_facts': best['facts'], 'chosen': chosen, 'ranking': ranking, 'reason': reason}


_CODE_TEXT = (
    ('current_host', "the container's current host"),
    ('same_os', "same OS as the container's host"),
    ('missing_facts', 'missing facts'),
    ('no_docker', 'no docker'),
    ('insufficient', 'insufficient resources'),
)


def _no_target_reason(hosts, rejected):
    if not hosts:
        return 'no candidate hosts were given'
    counts: Dict[str, int] = {}
    for _reason, code in rejected.values():
        counts[code] = counts.get(code, 0) + 1
    parts = ['%d %s' % (counts[code], text) for code, text in _CODE_TEXT if counts.get(code)]
    return 'none of the %d candidate host%s fits (%s)' % (len(hosts), '' if len(hosts) == 1 else 's', ', '.join(parts))


def _label(container):
    name = container.get('name') or (str(container.get('id'))[:12] if container.get('id') else '<unnamed>')
    if container.get('host'):
        return '%s/%s' % (container['host'], name)
    return str(name)


def severity_level(severity: Any, levels: Optional[Dict[str, Any]] = None) -> Union[int, float]:
    """Return the numeric level of ``severity``.

    ``severity`` is a name looked up (case-insensitively) in ``levels`` (default low/medium/high =
    3/6/9), an integer, or a numeric string. ``None`` or an empty string is level 0. Raises
    ``MtdError`` for an unknown name or a negative level.
    """
    if levels is None:
        levels = DEFAULT_SEVERITY_LEVELS
    if not isinstance(levels, dict):
        raise MtdError('severity levels must be a dict of name to integer level')
    if severity is None or (isinstance(severity, str) and not severity.strip()):
        return 0
    if isinstance(severity, bool):
        raise MtdError('severity %r is a boolean; use a name (%s) or an integer' % (severity, ', '.join(sorted(levels))))
    level = _number(severity)
    if level is None:
        if not isinstance(severity, str):
            raise MtdError('severity %r must be a name or an integer' % (severity,))
        lowered = dict((str(name).lower(), value) for name, value in levels.items())
        key = severity.strip().lower()
        if key not in lowered:
            raise MtdError('unknown severity %r; use one of %s or an integer' % (severity, ', '.join(sorted(lowered))))
        level = _number(lowered[key])
        if level is None:
            raise MtdError('severity level of %r must be a number, got %r' % (severity, lowered[key]))
    if level < 0:
        raise MtdError('severity %r is negative; levels must be >= 0' % (severity,))
    return int(level) if level.is_integer() else level


def rebuild_decision(level: Union[int, float], threshold: Union[int, float] = DEFAULT_REBUILD_THRESHOLD) -> bool:
    """Return True when the container must be rebuilt: ``level > threshold``."""
    return level > threshold


def container_summary(container: Dict[str, Any]) -> Dict[str, Any]:
    """The identifying, JSON-serialisable fields of a container."""
    return {
        'id': container.get('id'),
        'name': container.get('name'),
        'ip': container.get('ip'),
        'host': container.get('host'),
        'attacked': bool(container.get('attacked')),
    }


def build_alert(container: Dict[str, Any], severity: Any, level: Union[int, float], reason: str) -> Dict[str, Any]:
    """The alert raised when no host fits: plain, JSON-serialisable dict."""
    return {
        'container': container_summary(container),
        'severity': severity,
        'level': level,
        'reason': reason,
        'message': 'no target host for container %s: %s' % (_label(container), reason),
    }


def build_rebuild_request(container: Dict[str, Any], os: Any, required: Any, level: Union[int, float],
                          threshold: Union[int, float] = DEFAULT_REBUILD_THRESHOLD) -> Dict[str, Any]:
    """The rebuild decision (and request) when no host fits: plain, JSON-serialisable dict.

    ``decision`` is ``rebuild_decision(level, threshold)``; ``os`` and ``required`` tell the
    receiver what to rebuild the container on.
    """
    decision = rebuild_decision(level, threshold)
    if decision:
        reason = 'severity level %s exceeds threshold %s: rebuild the container' % (level, threshold)
    else:
        reason = 'severity level %s does not exceed threshold %s: no rebuild' % (level, threshold)
    return {
        'decision': decision,
        'level': level,
        'threshold': threshold,
        'reason': reason,
        'container': container_summary(container),
        'os': dict(os) if isinstance(os, dict) else os,
        'required': dict(required) if isinstance(required, dict) else required,
    }
