# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run every integration target (tests/integration/targets/<name>/runme.yml) against the real lab."""

from __future__ import annotations

import pathlib

import pytest
from lab_helpers import ROOT, run_playbook

TARGETS = sorted(p.parent.name for p in (ROOT / 'tests' / 'integration' / 'targets').glob('*/runme.yml'))


def test_there_are_targets():
    assert len(TARGETS) >= 3, TARGETS


@pytest.mark.parametrize('target', TARGETS)
def test_target(target):
    run_playbook(pathlib.Path('tests/integration/targets') / target / 'runme.yml')
