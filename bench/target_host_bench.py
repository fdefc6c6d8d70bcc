#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Time the target host decision for 100 / 1 000 / 10 000 / 100 000 candidates. Prints, asserts nothing.

Run from the repo root:
  PYTHONPATH=.build/collections .venv/bin/python bench/target_host_bench.py [--repeat N] [SIZE ...]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from ansible_collections.mtd.containers.plugins.module_utils._placement import choose_target

OSES = [
    {'id': 'debian', 'version_id': '12', 'kernel': '6.1.0-28-amd64'},
    {'id': 'ubuntu', 'version_id': '24.04', 'kernel': '6.8.0-45-generic'},
    {'id': 'alpine', 'version_id': '3.20.3', 'kernel': '6.6.58-0-lts'},
    {'id': 'fedora', 'version_id': '41', 'kernel': '6.11.4-301.fc41.x86_64'},
]


def make_candidates(size, rng):
    """Host facts shaped like ansible_facts.mtd, half with remaining, half with capacity/reserved only."""
    candidates = {}
    for index in range(size):
        facts = {
            'os': dict(rng.choice(OSES)),
            'capacity': {'cpus': 4.0, 'memory_mb': 8192, 'units': 200},
            'reserved': {'cpus': rng.choice([0.0, 0.5, 1.0, 3.5]), 'memory_mb': rng.randrange(0, 8192, 256),
                         'units': rng.randrange(0, 200)},
            'docker': {'available': True},
        }
        if index % 2:
            facts['remaining'] = dict((key, facts['capacity'][key] - facts['reserved'][key]) for key in facts['capacity'])
        candidates['lab-%06d' % index] = facts
    return candidates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('sizes', nargs='*', type=int, default=[100, 1000, 10000, 100000])
    parser.add_argument('--repeat', type=int, default=3, help='runs per size; the best and the mean are printed')
    parser.add_argument('--seed', type=int, default=42)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    container = {'id': 'c0ffee', 'name': 'web-1', 'host': 'lab-000000',
                 'required': {'cpus': 0.5, 'memory_mb': 512, 'units': 20}}
    print('%10s %10s %10s %10s  %s' % ('candidates', 'best ms', 'mean ms', 'us/host', 'target (fitting / rejected)'))
    for size in args.sizes:
        candidates = make_candidates(size, rng)
        timings = []
        result = None
        for _dummy in range(max(1, args.repeat)):
            started = time.perf_counter()
            result = choose_target(container, candidates, granularity='id', ranking_limit=20)
            timings.append((time.perf_counter() - started) * 1000.0)
        best = min(timings)
        fitting = sum(1 for entry in result['rejected'] if entry['code'] == 'not_chosen') + (1 if result['fits'] else 0)
        print('%10d %10.2f %10.2f %10.2f  %s (%d / %d)' % (
            size, best, sum(timings) / len(timings), best * 1000.0 / size, result['target'], fitting,
            len(result['rejected'])))
    return 0


if __name__ == '__main__':
    sys.exit(main())
