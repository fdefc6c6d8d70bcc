# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One line of progress for a migration record that just changed state (the migrate role prints it)."""

from __future__ import annotations

from typing import Any, Mapping

from ansible_collections.mtd.containers.plugins.plugin_utils._timeline import last_attempt, num, seconds_text


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        mapping = mapping.get(key) if isinstance(mapping, Mapping) else None
    return mapping


def _what(record: Mapping[str, Any]) -> str:
    """What the state means, with the numbers the record has by then."""
    state, target, phases = record.get('state'), record.get('target') or '?', record.get('phases')

    def sec(*keys: str) -> str:
        return seconds_text(num(_get(phases, *keys)))

    if state == 'Pending':
        return 'preflight: host facts, target choice, configuration capture; nothing is frozen'
    if state == 'Ready':
        return 'standby created on %s (pull %s, create %s); nothing is frozen' % (
            target, sec('prepare', 'pull'), sec('prepare', 'create'))
    if state == 'Started':
        return 'the restore waits for the checkpoint on %s' % target
    if state == 'Migrating':
        return 'freeze, dump and send from %s (the source is frozen from here until the target runs)' % (
            record.get('source') or '?')
    if state == 'Completed':
        return 'runs on %s; frozen %s (dump %s, send %s, CRIU restore %s)' % (
            target, seconds_text(num(record.get('frozen_seconds'))), sec('checkpoint', 'dump'),
            sec('checkpoint', 'send'), sec('restore', 'restore'))
    if state == 'Succeeded':
        return 'done; the source is removed' + (' (%s)' % record['converged'] if record.get('converged') else '')
    if state == 'Failed':
        back_to = _get(record, 'rollback', 'source')
        back = (' - rolled back, the source is %s' % back_to) if back_to else ''
        return 'FAILED%s: %s' % (back, record.get('error') or '?')
    return ''


def migration_progress(record: Any) -> str:
    """``<id> <name> <source> -> <target>: <state> at +<seconds since Pending> s - <what it means>``."""
    record = dict(record) if isinstance(record, Mapping) else {}
    history = last_attempt(record.get('history'))
    elapsed = history[-1][1] - history[0][1] if history else None
    return '%s %s %s -> %s: %s at +%s - %s' % (
        record.get('id') or '?', record.get('name') or '?', record.get('source') or '?', record.get('target') or '?',
        record.get('state') or '?', seconds_text(elapsed), _what(record))


class FilterModule:
    def filters(self):
        return {'migration_progress': migration_progress}
