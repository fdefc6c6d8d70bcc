# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


def _os(value):
    if not isinstance(value, dict) or not value.get('id'):
        return None
    return ('%s %s' % (value.get('id'), value.get('version_id') or '')).strip()


def confined_how(value):
    """How the migrated container was confined - arrival (restored confined), recreate (the older records'
    true: confined after the move by recreating it) or none."""
    if value is True:
        return 'recreate'
    if isinstance(value, str) and value in ('arrival', 'recreate'):
        return value
    return 'none'


def migration_row(record):
    """One summary row of a migration record (mtd.containers.migrate's migrate_result)."""
    record = record or {}
    phases = record.get('phases') or {}
    checkpoint = phases.get('checkpoint') or {}
    restore = phases.get('restore') or {}
    transfer = phases.get('transfer') or {}
    error = record.get('error')
    return {
        'container': record.get('name'),
        'from': record.get('source'),
        'from_os': _os(record.get('source_os')),
        'to': record.get('target') or None,
        'to_os': _os(record.get('target_os')),
        'state': record.get('state'),
        'frozen_s': record.get('frozen_seconds'),
        'total_s': record.get('duration_seconds'),
        'dump_s': checkpoint.get('dump'),
        'send_s': checkpoint.get('send'),
        'restore_s': restore.get('restore'),
        'wire_bytes': transfer.get('bytes_sent'),
        'confined': confined_how(record.get('confined')),
        'error': (error[:80] + '...') if error and len(error) > 80 else error,
    }


class FilterModule:
    def filters(self):
        return {'migration_row': migration_row}
