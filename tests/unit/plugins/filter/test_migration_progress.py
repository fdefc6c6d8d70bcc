# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The progress line the migrate role prints at every state change, with worked records."""

from __future__ import annotations

import pytest

from ansible_collections.mtd.containers.plugins.filter.migration_progress import FilterModule, migration_progress


def record(state, *epochs, **extra):
    states = ['Pending', 'Ready', 'Started', 'Migrating', 'Completed', state]
    history = [{'state': s, 'epoch': e} for s, e in zip(states if state != 'Pending' else ['Pending'], epochs)]
    history[-1]['state'] = state
    return dict({'id': 'm-1', 'name': 'web-1', 'source': 'lab-1', 'target': 'lab-2', 'state': state,
                 'history': history, 'phases': {}}, **extra)


def test_registered():
    assert FilterModule().filters() == {'migration_progress': migration_progress}


@pytest.mark.parametrize('rec, line', [
    (record('Pending', 100.0, target=''),
     'm-1 web-1 lab-1 -> ?: Pending at +0 s - preflight: host facts, target choice, configuration capture; '
     'nothing is frozen'),
    (record('Ready', 100.0, 106.13, phases={'prepare': {'pull': 0.0007, 'create': 0.012}}),
     'm-1 web-1 lab-1 -> lab-2: Ready at +6.13 s - standby created on lab-2 (pull 0.0007 s, create 0.012 s); '
     'nothing is frozen'),
    (record('Migrating', 100.0, 106.0, 107.8, 107.95),
     'm-1 web-1 lab-1 -> lab-2: Migrating at +7.95 s - freeze, dump and send from lab-1 (the source is frozen '
     'from here until the target runs)'),
    (record('Completed', 100.0, 106.0, 107.8, 107.95, 109.97, frozen_seconds=0.727,
            phases={'checkpoint': {'dump': 0.2125, 'send': 0.0371}, 'restore': {'restore': 0.4508}}),
     'm-1 web-1 lab-1 -> lab-2: Completed at +9.97 s - runs on lab-2; frozen 0.727 s (dump 0.212 s, '
     'send 0.0371 s, CRIU restore 0.451 s)'),
    (record('Succeeded', 100.0, 106.0, 107.8, 107.95, 109.97, 111.2),
     'm-1 web-1 lab-1 -> lab-2: Succeeded at +11.2 s - done; the source is removed'),
    (record('Failed', 100.0, 106.0, 107.8, 107.95, 110.0, error='Sending the checkpoint failed: cut',
            rollback={'source': 'running', 'target_cleaned': True}),
     'm-1 web-1 lab-1 -> lab-2: Failed at +10.0 s - FAILED - rolled back, the source is running: '
     'Sending the checkpoint failed: cut'),
])
def test_lines(rec, line):
    assert migration_progress(rec) == line


def test_elapsed_counts_from_the_last_attempt():
    rec = record('Succeeded', 1.0, 2.0, 3.0, 4.0, 50.0, 58.5)
    rec['history'] = [{'state': 'Pending', 'epoch': 0.5}, {'state': 'Failed', 'epoch': 0.9}] + rec['history']
    assert ' at +57.5 s - ' in migration_progress(rec)


def test_odd_input():
    assert migration_progress(None) == '? ? ? -> ?: ? at +- - '
