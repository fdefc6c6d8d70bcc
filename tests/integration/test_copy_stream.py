# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The stop-and-copy stream on the lab (issue 12): 128 MB of random memory travels through the sender's
own tar stream (no tar process), uncompressed (compression auto finds it does not shrink), intact; a
cut or a flipped bit in the middle of the memory pages rolls back and the source goes on."""

from __future__ import annotations

# pylint: disable=redefined-outer-name

import pytest
import test_migrate
from test_migrate import (
    assert_consecutive,
    counter_lines,
    leftover_checkpoints,
    memory_sha,
    migrate,
    record,
    status,
    wait_for_port_and_start_proxy,
)

memory_workload = test_migrate.memory_workload   # the fixture: 128 MB of random memory, hashed on demand
PAGES_OFFSET = 64 * 1024 * 1024   # well inside the 128 MB of pages, after the small images


def test_random_memory_travels_uncompressed_and_intact(memory_workload):  # noqa: F811
    name, report = memory_workload
    migrate(name, 'lab-1', target='lab-2', report=report)
    rec = record(report)
    assert rec['state'] == 'Succeeded', rec
    transfer = rec['phases']['transfer']
    # nothing was compressed: the stream (tar headers included) is at least as long as the bundle
    assert transfer['bytes_sent'] >= transfer['bytes_raw'] > 128 * 1024 * 1024, transfer
    assert status('lab-2', name) == 'running' and status('lab-1', name) == 'absent'
    first, last = memory_sha('lab-2', name)
    assert first == last, 'the 128 MB buffer changed in the move'
    assert_consecutive(counter_lines('lab-2', name, '/state/counter.log'), 'the writable-layer file')
    assert_consecutive(counter_lines('lab-2', name, '/vol/counter.log'), 'the volume file')
    assert not leftover_checkpoints(rec)


@pytest.mark.parametrize('mode,cause', [
    ('corrupt', 'integrity'),
    ('cut', 'Sending the checkpoint failed'),
])
def test_a_fault_in_the_middle_of_the_pages_rolls_back_and_the_source_goes_on(memory_workload, mode, cause):  # noqa: F811
    name, report = memory_workload
    proxy, extra = wait_for_port_and_start_proxy(mode, PAGES_OFFSET)
    try:
        proc = migrate(name, 'lab-1', target='lab-3', report=report, extra=extra, check=False)
    finally:
        proxy.kill()
        proxy.wait()
    assert proc.returncode != 0
    rec = record(report)
    assert rec['state'] == 'Failed', rec
    assert cause in rec['error'], rec['error']
    assert status('lab-1', name) == 'running', 'the source does not run after the rollback'
    first = counter_lines('lab-1', name, '/state/counter.log')
    before, after = memory_sha('lab-1', name)
    assert before == after, 'the source\'s memory changed in the rollback'
    later = counter_lines('lab-1', name, '/state/counter.log')
    assert_consecutive(later, 'the source file after rollback')
    assert len(later) > len(first), 'the source counter does not go on after the rollback'
    assert status('lab-3', name) == 'absent', 'the target kept a copy'
    assert not leftover_checkpoints(rec)
