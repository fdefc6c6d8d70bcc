# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters of the mtd.containers.migrate role: the steps of its record, kept out of its tasks."""

from __future__ import annotations

import datetime
import time
from typing import Any, Dict, List, Mapping, Optional

from ansible.errors import AnsibleFilterError

from ansible_collections.mtd.containers.plugins.module_utils._versions import version_gates

STATES = ('Pending', 'Ready', 'Started', 'Migrating', 'Completed', 'Succeeded', 'Failed')


def _dict(value: Any) -> Dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _major(version: Any) -> Optional[str]:
    return str(version).split('.', maxsplit=1)[0] if version else None


def migration_preflight(choice: Any, source: Any, target: Any, memory: str = 'copy', network_mode: Any = None,
                        tested: Any = None) -> Dict[str, Any]:
    """Whether the source and the chosen target can take part, and if not, why (``{ok, reason, warnings}``).

    ``choice`` is the result of mtd.containers.target_host, ``source`` and ``target`` the hosts'
    ``ansible_facts.mtd`` (host_facts), ``memory`` the role's migrate_memory (copy | lazy),
    ``network_mode`` the container's and ``tested`` the versions the integration tests ran (the role's
    vars, written by scripts/support_matrix.py): the engine version gates (module_utils/_versions.py)
    refuse known-broken engines and runc/CRIU pairs, and warn about versions no test has run.
    """
    choice = _dict(choice)
    if not choice.get('target'):
        rejected = choice.get('rejected') or []
        return {'ok': False, 'warnings': [], 'reason': 'no target host fits: ' + '; '.join(
            '%s: %s' % (r.get('name'), r.get('reason')) for r in rejected if isinstance(r, Mapping))}
    base = _preflight_checks(_dict(source), _dict(target), memory)
    gates = version_gates({'source': _dict(source), 'target': _dict(target)}, network_mode,
                          tested if isinstance(tested, Mapping) else None)
    reasons = ([base['reason']] if not base['ok'] else []) + gates['refuse']
    return {'ok': not reasons, 'reason': '; '.join(reasons), 'warnings': gates['warn']}


def _preflight_checks(src: Dict[str, Any], tgt: Dict[str, Any], memory: str) -> Dict[str, Any]:
    """The engines' experimental mode, CRIU on both sides (same major) and lazy pages when asked."""
    docker = [_dict(src.get('docker')), _dict(tgt.get('docker'))]
    criu = [_dict(src.get('criu')), _dict(tgt.get('criu'))]
    ok = (all(d.get('available') for d in docker) and all(d.get('experimental') for d in docker)
          and all(c.get('check_ok') for c in criu)
          and _major(criu[0].get('version')) is not None
          and _major(criu[0].get('version')) == _major(criu[1].get('version'))
          and (memory == 'copy' or bool(criu[1].get('lazy_pages'))))
    reason = 'engines experimental %s, criu check %s, criu versions %s' % (
        [bool(d.get('experimental', False)) for d in docker], [bool(c.get('check_ok', False)) for c in criu],
        [c.get('version') or 'none' for c in criu])
    if memory == 'lazy':
        reason += ', lazy pages (userfaultfd) on the target %s' % bool(criu[1].get('lazy_pages', False))
    return {'ok': ok, 'reason': '' if ok else reason}


def migration_completed(record: Any, checkpoint: Any, restored: Any, memory: str = 'copy') -> Dict[str, Any]:
    """What the record gains in state Completed, from the checkpoint and restore results.

    ``checkpoint`` is the result of mtd.containers.checkpoint (with send), ``restored`` the finished
    restore job (async_status of mtd.containers.restore). Returns ``target_container_id``, ``precopy``,
    ``frozen_seconds`` (the target's resume minus the source's freeze, both hosts' clocks; None when
    either is unknown) and ``phases`` (the record's phases plus transfer, checkpoint, bytes, receive,
    restore, memory, image_delivery and criu_adapted), and ``frozen_at`` / ``resumed_at`` (the instants themselves, for
    the run report's timeline).
    """
    record, cp, restored = _dict(record), _dict(checkpoint), _dict(restored)
    sent, received = _dict(cp.get('transfer')), _dict(restored.get('received'))
    frozen_at, resumed_at = cp.get('frozen_at'), restored.get('resumed_at')
    frozen = round(float(resumed_at) - float(frozen_at), 3) if frozen_at and resumed_at else None
    phases = _dict(record.get('phases'))
    phases.update({
        'transfer': {key: sent.get(key) for key in
                     ('seconds', 'bytes_raw', 'bytes_sent', 'compression', 'encryption', 'throughput_mb_s')},
        'checkpoint': cp.get('timings'),
        'bytes': cp.get('bytes'),
        'receive': {'seconds': received.get('seconds'), 'bytes_received': received.get('bytes_received')},
        'restore': restored.get('timings'),
        'memory': memory,
        'image_delivery': _dict(restored.get('image_delivery')).get('used'),
        # what the target changed in the images or CRIU's options for its own kernel and cgroups
        'criu_adapted': {'manage_cgroups': restored.get('criu_manage_cgroups'),
                         'cgroup_mounts': restored.get('criu_cgroup_mounts') or [],
                         'mounts_dropped': restored.get('criu_mounts_dropped') or []},
    })
    return {
        'target_container_id': _dict(restored.get('container')).get('id'),
        'precopy': cp['precopy'] if 'precopy' in cp else record.get('precopy'),
        'frozen_seconds': frozen,
        'frozen_at': frozen_at,
        'resumed_at': resumed_at,
        'phases': phases,
    }


def migration_transition(record: Any, state: str, extra: Any = None, now: Optional[float] = None) -> Dict[str, Any]:
    """The record moved to ``state``: ``extra`` merged in (top level), ``updated`` and one history entry.

    ``now`` (seconds since the epoch) defaults to the controller's clock.
    """
    if state not in STATES:
        raise AnsibleFilterError('migration_transition: state must be one of %s, got %r' % (', '.join(STATES), state))
    if not isinstance(record, Mapping):
        raise AnsibleFilterError('migration_transition: the record must be a dict, got %s' % type(record).__name__)
    epoch = time.time() if now is None else float(now)
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    history: List[Any] = list(record.get('history') or [])
    out = dict(record)
    out.update(_dict(extra))
    history.append({'state': state, 'at': stamp, 'epoch': epoch})
    out.update(state=state, updated=stamp, history=history)
    return out


def rollback_outcome(target: Any, checkpoint: Any, source: Any) -> Dict[str, Any]:
    """What a rollback achieved, from the registered results of its three steps.

    ``source`` is the source's status after the resume (or ``unknown``); ``target_cleaned`` and
    ``checkpoint_cleaned`` are true when that cleanup ran and did not fail.
    """
    def cleaned(result: Any) -> bool:
        result = _dict(result)
        return bool(result) and not (result.get('skipped') or result.get('unreachable') or result.get('failed')
                                     or 'msg' in result)
    return {
        'source': _dict(source).get('after') or 'unknown',
        'target_cleaned': cleaned(target),
        'checkpoint_cleaned': cleaned(checkpoint),
    }


def migration_source_volumes(removed: Any, volumes: Any, keep_source: bool = False,
                             keep_volumes: bool = False) -> Dict[str, Any]:
    """What the source kept of the volumes a migration carried away, for the record: ``{removed, kept}``.

    ``removed`` is the result of mtd.containers.container_state (its ``volumes_removed`` and
    ``volumes_kept``), ``volumes`` the names the migration carried. With ``keep_source`` or ``keep_volumes``
    (the role's migrate_keep_source / migrate_keep_source_volumes) every volume was kept on purpose.
    """
    names = [str(v) for v in volumes or []] if isinstance(volumes, (list, tuple)) else []
    if keep_source or keep_volumes:
        why = ('migrate_keep_source (the source container was kept, stopped)' if keep_source
               else 'migrate_keep_source_volumes')
        return {'removed': [], 'kept': [{'name': n, 'reason': why} for n in names]}
    result = _dict(removed)
    return {'removed': list(result.get('volumes_removed') or []), 'kept': list(result.get('volumes_kept') or [])}


class FilterModule:
    def filters(self):
        return {
            'migration_source_volumes': migration_source_volumes,
            'migration_preflight': migration_preflight,
            'migration_completed': migration_completed,
            'migration_transition': migration_transition,
            'rollback_outcome': rollback_outcome,
        }
