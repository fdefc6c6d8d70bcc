# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for integration tests: they drive the real lab through ansible-playbook, never mocks."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
INVENTORY = ROOT / 'lab' / 'inventory.yml'
VENV_BIN = ROOT / '.venv' / 'bin'
DOCKER = '/usr/bin/docker'
STATE = '/var/lib/mtd-lab'            # lab/lab.sh: each host's engine socket, ssh key, known_hosts


def docker(host, *args, check=True, stdin=None, timeout=120):
    """The docker CLI against a lab host's own engine; AssertionError (with its stderr) when it fails."""
    cmd = [DOCKER, '-H', 'unix://%s/%s/docker.sock' % (STATE, host)] + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError('docker %s failed: %s' % (' '.join(args), proc.stderr))
    return proc


def require_lab():
    if not INVENTORY.exists():
        pytest.fail('the lab is not up (lab/inventory.yml missing): run `make lab-up` first')


def run_playbook(playbook, *args, check=True, timeout=900):
    """Run ansible-playbook against the lab; fail the test with the play output when it fails."""
    require_lab()
    env = dict(os.environ)
    env['ANSIBLE_CONFIG'] = str(ROOT / 'ansible.cfg')
    env['ANSIBLE_FORCE_COLOR'] = '0'
    env['ANSIBLE_NOCOLOR'] = '1'
    env['PATH'] = '%s:%s' % (VENV_BIN, env.get('PATH', ''))
    cmd = [str(VENV_BIN / 'ansible-playbook'), '-i', str(INVENTORY), str(playbook)] + list(args)
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and proc.returncode != 0:
        pytest.fail('%s failed (rc=%d):\n%s\n%s' % (' '.join(cmd[2:]), proc.returncode,
                                                    proc.stdout[-12000:], proc.stderr[-4000:]))
    return proc
