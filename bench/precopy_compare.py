#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compare the pre-copy stop rules on synthetic dirty traces. Prints tables, asserts nothing.

Our rule (bench/precopy_model.py ``decide``, with its default options, the bare rule ``min_shrink: 0``
and the trend estimate ``estimate: last``) against P.Haul's fixed rules, first on the named traces of the
unit tests, then averaged over random traces of four families. Pure simulation: no CRIU, no engine.

Run from the repo root:
  PYTHONPATH=.build/collections .venv/bin/python bench/precopy_compare.py [--markdown] [--samples N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys

from ansible_collections.mtd.containers.plugins.module_utils._precopy import simulate

TOTAL = 65536               # 256 MiB of 4 KiB pages
BANDWIDTH = 50000           # pages/s (about 200 MB/s)

TRACES = [
    ('converging', 'dirty set shrinks 4x per round',
     {'total_pages': TOTAL, 'bandwidth': BANDWIDTH, 'overhead': 0.01, 'dirty_pages': [16384 * 0.25 ** k for k in range(8)]}),
    ('converging-rate', 'dirty rate halves per round',
     {'total_pages': TOTAL, 'bandwidth': BANDWIDTH, 'overhead': 0.02, 'rates': [8000 * 0.5 ** k for k in range(12)]}),
    ('constant-rate', '5000 pages/s, 0.05 s per round',
     {'total_pages': TOTAL, 'bandwidth': BANDWIDTH, 'overhead': 0.05, 'rates': [5000]}),
    ('constant', '5000 pages dirtied every round',
     {'total_pages': TOTAL, 'bandwidth': BANDWIDTH, 'overhead': 0.02, 'dirty_pages': [5000]}),
    ('diverging', 'dirty rate x1.9 per round',
     {'total_pages': TOTAL, 'bandwidth': BANDWIDTH, 'overhead': 0.02, 'rates': [3000 * 1.9 ** k for k in range(12)]}),
    ('diverging-slow', 'dirty rate x1.3 per round',
     {'total_pages': TOTAL, 'bandwidth': BANDWIDTH, 'overhead': 0.02, 'rates': [3000 * 1.3 ** k for k in range(20)]}),
    ('bursty', 'spike above bandwidth in round 3, then calm',
     {'total_pages': TOTAL, 'bandwidth': BANDWIDTH, 'overhead': 0.02, 'rates': [4000, 2000, 60000, 1500, 1000, 500]}),
    ('bursty-late', '10x spike in round 4 of a steady rate',
     {'total_pages': TOTAL, 'bandwidth': BANDWIDTH, 'overhead': 0.02, 'rates': [4000, 4000, 4000, 40000, 4000, 4000]}),
]

POLICIES = [
    ('ours', 'predictive', {'initial_rate': 2000}),
    ('ours bare', 'predictive', {'initial_rate': 2000, 'min_shrink': 0}),
    ('ours trend', 'predictive', {'initial_rate': 2000, 'estimate': 'last'}),
    ('P.Haul', 'phaul', None),
]


def random_rates(family, rng):
    base = rng.uniform(1000, 20000)
    if family == 'noisy':
        return [max(0.0, rng.gauss(base, base * 0.5)) for dummy in range(12)]
    if family == 'growing':
        growth = rng.uniform(1.1, 2.0)
        return [base * growth ** k * rng.uniform(0.8, 1.2) for k in range(12)]
    if family == 'decaying':
        decay = rng.uniform(0.3, 0.9)
        return [base * decay ** k * rng.uniform(0.8, 1.2) for k in range(12)]
    rates = [base * rng.uniform(0.8, 1.2) for dummy in range(12)]
    rates[rng.randrange(1, 5)] *= rng.uniform(5, 20)
    return rates


def table(headers, rows, markdown):
    if markdown:
        lines = ['| ' + ' | '.join(headers) + ' |', '|' + '|'.join('---' for dummy in headers) + '|']
        lines.extend('| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows)
        return '\n'.join(lines)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    fmt = '  '.join('%%-%ds' % width for width in widths)
    lines = [fmt % tuple(headers)] + [fmt % tuple(str(cell) for cell in row) for row in rows]
    return '\n'.join(line.rstrip() for line in lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--markdown', action='store_true', help='print Markdown tables')
    parser.add_argument('--samples', type=int, default=300, help='random traces per family (default 300)')
    parser.add_argument('--seed', type=int, default=7)
    args = parser.parse_args(argv)

    print('Named traces: %d pages total, bandwidth %d pages/s; downtime = the final stop-and-copy.' % (TOTAL, BANDWIDTH))
    print()
    rows = []
    for name, _description, trace in TRACES:
        for label, policy, options in POLICIES:
            result = simulate(trace, policy, options)
            rows.append([name if label == POLICIES[0][0] else '', label, result['rounds'], result['pages_copied'],
                         result['downtime_pages'], '%.3f' % result['downtime'], '%.3f' % result['total_time'],
                         result['reason']])
    print(table(['trace', 'policy', 'rounds', 'pages copied', 'downtime pages', 'downtime s', 'total s', 'stop reason'],
                rows, args.markdown))
    print()
    print('Random traces: %d per family (seed %d); mean / 90th percentile of the downtime pages, mean total time.'
          % (args.samples, args.seed))
    print()
    rng = random.Random(args.seed)
    rows = []
    for family in ('noisy', 'growing', 'decaying', 'burst'):
        results = dict((label, []) for label, dummy, dummy2 in POLICIES)
        for _dummy in range(max(1, args.samples)):
            trace = {'total_pages': TOTAL, 'bandwidth': BANDWIDTH, 'overhead': 0.02, 'rates': random_rates(family, rng)}
            for label, policy, options in POLICIES:
                results[label].append(simulate(trace, policy, options))
        for label, _dummy, _dummy2 in POLICIES:
            downtimes = sorted(result['downtime_pages'] for result in results[label])
            rows.append([family if label == POLICIES[0][0] else '', label,
                         '%.2f' % statistics.mean(result['rounds'] for result in results[label]),
                         '%.0f' % statistics.mean(downtimes), downtimes[int(0.9 * (len(downtimes) - 1))],
                         '%.3f' % statistics.mean(result['total_time'] for result in results[label])])
    print(table(['family', 'policy', 'mean rounds', 'mean downtime pages', 'p90 downtime pages', 'mean total s'],
                rows, args.markdown))
    return 0


if __name__ == '__main__':
    sys.exit(main())
