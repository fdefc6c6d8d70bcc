# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

MISSING = '-'
GAP = '  '


def _lookup(row, column):
    """Value of ``column`` in ``row``; a dotted name (``remaining.units``) walks into sub-dicts."""
    if column in row:
        return row[column]
    value = row
    for part in column.split('.'):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value):
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        if value.is_integer():
            return '%d' % value
        return ('%.3f' % value).rstrip('0').rstrip('.')
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(',', ':'), default=str)
    return ' '.join(str(value).splitlines())


def plan_table(rows, columns=None):
    """Render a list of dicts as an aligned plain-text table: header, separator, one line per row.

    ``columns`` lists the keys to show, in order (a list or a comma-separated string); by default every key,
    in order of first appearance. ``None`` and missing values show as ``-``; numbers are right-aligned.
    """
    if rows is None:
        rows = []
    if isinstance(rows, Mapping) or isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise AnsibleFilterError('plan_table expects a list of dicts, got %s' % type(rows).__name__)
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise AnsibleFilterError('plan_table expects a list of dicts, item %d is a %s' % (index, type(row).__name__))

    if columns is None:
        columns = []
        seen = set()
        for row in rows:
            for key in row:
                if key not in seen:
                    seen.add(key)
                    columns.append(key)
    elif isinstance(columns, str):
        columns = [column.strip() for column in columns.split(',') if column.strip()]
    elif isinstance(columns, Sequence):
        columns = [str(column) for column in columns]
    else:
        raise AnsibleFilterError('plan_table columns must be a list of keys, got %s' % type(columns).__name__)
    if not columns:
        return ''

    values = [[_lookup(row, column) for column in columns] for row in rows]
    cells = [[_cell(value) for value in line] for line in values]
    widths = [len(str(column)) for column in columns]
    # A column is right-aligned when it holds at least one number and nothing else but nulls.
    has_number = [False] * len(columns)
    has_text = [False] * len(columns)
    for line, raw in zip(cells, values):
        for index, (text, value) in enumerate(zip(line, raw)):
            widths[index] = max(widths[index], len(text))
            if _is_number(value):
                has_number[index] = True
            elif value is not None:
                has_text[index] = True
    numeric = [number and not text for number, text in zip(has_number, has_text)]

    def render(line):
        parts = []
        for index, text in enumerate(line):
            parts.append(text.rjust(widths[index]) if numeric[index] else text.ljust(widths[index]))
        return GAP.join(parts).rstrip()

    lines = [render([str(column) for column in columns]), GAP.join('-' * width for width in widths)]
    lines.extend(render(line) for line in cells)
    return '\n'.join(lines)


class FilterModule:
    """mtd.containers filters."""

    def filters(self):
        return {
            'plan_table': plan_table,
        }
