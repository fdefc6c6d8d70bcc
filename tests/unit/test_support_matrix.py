# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""scripts/support_matrix.py: the README's support matrix and the migrate role's tested versions come from the
committed record of a real test run, and stay in step with it."""

from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location('support_matrix', str(ROOT / 'scripts' / 'support_matrix.py'))
support_matrix = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(support_matrix)

ROW = {'host': 'lab-13', 'os': 'Debian GNU/Linux 13 (trixie)', 'engine': '26.1.5+dfsg1', 'containerd': '1.7.24~ds1',
       'runc': '1.1.15+ds1', 'criu': '4.1.1', 'kernel': '6.18.44', 'cgroup': 1, 'driver': 'cgroupfs'}


def test_rows_keep_the_newest_run_and_group_the_tests():
    entries = [dict(ROW, test='test_a', run='2026-12-01T00:00:00Z'),
               dict(ROW, engine='25.0.0', test='test_old', run='2026-11-30T00:00:00Z'),
               dict(ROW, test='test_b', run='2026-12-01T00:00:00Z'),
               dict(ROW, test='test_a', run='2026-12-01T00:00:00Z'),
               dict(ROW, host='lab-1', engine='20.10.24+dfsg1', runc='1.1.5+ds1', test='test_a',
                    run='2026-12-01T00:00:00Z')]
    data = support_matrix.rows_of(entries)
    assert data['run'] == '2026-12-01T00:00:00Z'
    assert [(r['host'], r['engine'], r['tests']) for r in data['rows']] == [
        ('lab-1', '20.10.24+dfsg1', ['test_a']), ('lab-13', '26.1.5+dfsg1', ['test_a', 'test_b'])]
    assert support_matrix.tested_versions(data) == {
        'engine': ['20.10.24', '26.1.5'], 'containerd': ['1.7.24'], 'runc': ['1.1.5', '1.1.15'], 'criu': ['4.1.1']}
    table = support_matrix.render_table(data)
    assert '| lab-13 | Debian GNU/Linux 13 (trixie) | 26.1.5+dfsg1 | 1.7.24~ds1 | 1.1.15+ds1 | 4.1.1 | 6.18.44 | v1 | cgroupfs | 2 |' in table
    assert '_migrate_tested_versions:\n  engine: ["20.10.24", "26.1.5"]' in support_matrix.render_vars(data)


def test_committed_readme_and_role_vars_match_the_committed_record():
    assert support_matrix.main(['--check']) == 0


def test_all_runs_joins_the_sessions():
    entries = [dict(ROW, test='test_a', run='2026-12-01T00:00:00Z'), dict(ROW, test='test_b', run='2026-12-01T01:00:00Z')]
    data = support_matrix.rows_of(entries, all_runs=True)
    assert data['run'] == '2026-12-01T00:00:00Z .. 2026-12-01T01:00:00Z'
    assert data['rows'][0]['tests'] == ['test_a', 'test_b']
