# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every role's Molecule scenario (extensions/molecule/<scenario>), run against the lab."""

from __future__ import annotations

import os
import subprocess

import pytest
from lab_helpers import ROOT, VENV_BIN, require_lab

SCENARIOS = sorted(p.parent.name for p in (ROOT / 'extensions' / 'molecule').glob('*/molecule.yml'))
ROLES = sorted(p.name for p in (ROOT / 'roles').iterdir() if p.is_dir())


def test_every_role_has_a_scenario():
    assert ROLES and set(ROLES) <= set(SCENARIOS), 'roles without a Molecule scenario: %s' % (set(ROLES) - set(SCENARIOS))


@pytest.mark.parametrize('scenario', SCENARIOS)
def test_scenario(scenario):
    require_lab()
    env = dict(os.environ, PATH='%s:%s' % (VENV_BIN, os.environ.get('PATH', '')), ANSIBLE_FORCE_COLOR='0',
               NO_COLOR='1', ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'))
    proc = subprocess.run([str(VENV_BIN / 'molecule'), 'test', '-s', scenario], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, '%s\n%s' % (proc.stdout[-12000:], proc.stderr[-4000:])
