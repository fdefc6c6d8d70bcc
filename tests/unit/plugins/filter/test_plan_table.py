# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.mtd.containers.plugins.filter.plan_table import FilterModule, plan_table
from ansible_collections.mtd.containers.plugins.module_utils._schedule import plan

ROWS = [
    {'i': 1, 'name': 'web-1', 'threshold': 200.0, 'due': True, 'group': None},
    {'i': 2, 'name': 'db-10', 'threshold': 230.5, 'due': False, 'group': 'db'},
]


def test_aligned_table_with_header_and_separator():
    assert plan_table(ROWS).splitlines() == [
        'i  name   threshold  due    group',
        '-  -----  ---------  -----  -----',
        '1  web-1        200  true   -',
        '2  db-10      230.5  false  db',
    ]


def test_columns_select_and_order():
    assert plan_table(ROWS, ['name', 'i']) == '\n'.join([
        'name   i',
        '-----  -',
        'web-1  1',
        'db-10  2',
    ])
    assert plan_table(ROWS, 'name, i') == plan_table(ROWS, ['name', 'i'])


def test_missing_keys_nested_keys_and_structures():
    rows = [
        {'name': 'lab-2', 'remaining': {'units': 7}, 'tags': ['a', 'b']},
        {'name': 'lab-10', 'remaining': {}},
    ]
    assert plan_table(rows, ['name', 'remaining.units', 'tags', 'absent']).splitlines() == [
        'name    remaining.units  tags       absent',
        '------  ---------------  ---------  ------',
        'lab-2                 7  ["a","b"]  -',
        'lab-10                -  -          -',
    ]


def test_columns_from_all_rows_in_order_of_appearance():
    rows = [{'a': 1}, {'b': 'x', 'a': 2}]
    assert plan_table(rows).splitlines()[0] == 'a  b'


def test_floats_and_multiline_text():
    rows = [{'v': 1.0 / 3, 'text': 'two\nlines'}]
    assert plan_table(rows).splitlines()[2] == '0.333  two lines'


def test_empty_input():
    assert plan_table([]) == ''
    assert plan_table(None) == ''
    assert plan_table([], ['i', 'name']) == 'i  name\n-  ----'


@pytest.mark.parametrize('rows, columns, message', [
    ({'i': 1}, None, 'expects a list of dicts, got dict'),
    ('text', None, 'expects a list of dicts, got str'),
    ([{'i': 1}, 'x'], None, 'item 1 is a str'),
    ([{'i': 1}], 5, 'columns must be a list of keys'),
])
def test_bad_input(rows, columns, message):
    with pytest.raises(AnsibleFilterError, match=message):
        plan_table(rows, columns)


def test_renders_a_real_plan():
    result = plan([{'name': 'web-1', 'host': 'lab-1', 'uptime_seconds': 250},
                   {'name': 'web-2', 'host': 'lab-2', 'uptime_seconds': 100}], 200, 30)
    table = plan_table(result['plan'], ['i', 'host', 'name', 'uptime', 'threshold', 'due', 'reason'])
    assert table.splitlines() == [
        'i  host   name   uptime  threshold  due    reason',
        '-  -----  -----  ------  ---------  -----  ----------------------------------------------',
        '1  lab-1  web-1     250        200  true   uptime 250s exceeds threshold 200s',
        '2  lab-2  web-2     100        230  false  uptime 100s within threshold 230s; due in 130s',
    ]


def test_filter_module_exports():
    assert FilterModule().filters() == {'plan_table': plan_table}
