# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


# -- the VM part's own time budget --------------------------------------------------------------------------
# The tests on the lab's VM host (test_vm_*.py) run under TCG, about 15 times slower than the machine. Their
# time is summed (setup, call and teardown of each test) and reported at the end of the run; once it passes
# MTD_VM_TEST_BUDGET seconds (default 1200), the remaining VM tests skip with that reason, so that a slow guest
# cannot take the whole CI time. lab/vm.sh's MTD_VM_BUDGET bounds the build and the boot separately.

VM_TEST_BUDGET = float(os.environ.get('MTD_VM_TEST_BUDGET', '1200'))
_vm_seconds = {'spent': 0.0, 'tests': 0, 'skipped_for_budget': 0}


def _is_vm_test(item_or_report):
    return pathlib.Path(str(item_or_report.fspath)).name.startswith('test_vm_')


def pytest_runtest_setup(item):
    if _is_vm_test(item) and _vm_seconds['spent'] > VM_TEST_BUDGET:
        _vm_seconds['skipped_for_budget'] += 1
        pytest.skip('the VM tests used %.0f s, past their budget of %.0f s (MTD_VM_TEST_BUDGET)'
                    % (_vm_seconds['spent'], VM_TEST_BUDGET))


def pytest_runtest_logreport(report):
    if _is_vm_test(report):
        _vm_seconds['spent'] += report.duration
        if report.when == 'call':
            _vm_seconds['tests'] += 1


def pytest_terminal_summary(terminalreporter):
    if _vm_seconds['tests'] or _vm_seconds['skipped_for_budget']:
        terminalreporter.write_line('VM part: %d tests ran in %.0f s (budget %.0f s, MTD_VM_TEST_BUDGET); %d skipped '
                                    'for the budget' % (_vm_seconds['tests'], _vm_seconds['spent'], VM_TEST_BUDGET,
                                                        _vm_seconds['skipped_for_budget']))
