# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The run report writer: real files in a temporary directory, the action run in-process."""

from __future__ import annotations

import os
import stat
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.mtd.containers.plugins.action.run_report import ActionModule

RECORD = {'id': 'm-0123456789ab', 'name': 'web-1', 'source': 'lab-1', 'target': 'lab-2', 'state': 'Succeeded',
          'history': [{'state': 'Pending', 'epoch': 10.0}, {'state': 'Migrating', 'epoch': 12.0},
                      {'state': 'Succeeded', 'epoch': 15.0}],
          'frozen_at': 12.5, 'resumed_at': 13.0, 'frozen_seconds': 0.5}


def run(args, check_mode=False):
    task = mock.MagicMock()
    task.args = args
    task.async_val = 0
    task.check_mode = check_mode
    task.diff = False
    task.action = 'mtd.containers.run_report'
    action = ActionModule(task, mock.MagicMock(), mock.MagicMock(check_mode=check_mode, diff=False),
                          loader=None, templar=None, shared_loader_obj=None)
    return action.run(task_vars={})


def test_writes_a_private_page_in_a_new_directory(tmp_path):
    path = tmp_path / 'out' / 'run.html'
    result = run({'path': str(path), 'records': [RECORD], 'title': 'the run'})
    assert result['changed'] is True and result['rows'] == 1 and result['path'] == str(path)
    text = path.read_text()
    assert text.startswith('<!DOCTYPE html>') and '<title>the run</title>' in text
    assert 'data-migration="m-0123456789ab"' in text
    assert result['bytes'] == len(path.read_bytes())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_the_same_records_change_nothing(tmp_path):
    path = tmp_path / 'run.html'
    run({'path': str(path), 'records': [RECORD]})
    inode = os.stat(path).st_ino
    assert run({'path': str(path), 'records': [dict(RECORD)]})['changed'] is False
    assert os.stat(path).st_ino == inode
    assert run({'path': str(path), 'records': [dict(RECORD, state='Failed')]})['changed'] is True


def test_check_mode_writes_nothing(tmp_path):
    path = tmp_path / 'sub' / 'run.html'
    assert run({'path': str(path), 'records': []}, check_mode=True)['changed'] is True
    assert not (tmp_path / 'sub').exists()


def test_refuses_a_link(tmp_path):
    target = tmp_path / 'elsewhere'
    target.write_text('keep me')
    (tmp_path / 'run.html').symlink_to(target)
    with pytest.raises(AnsibleActionFail, match='not a regular file'):
        run({'path': str(tmp_path / 'run.html'), 'records': [RECORD]})
    assert target.read_text() == 'keep me'


def test_records_must_be_dicts(tmp_path):
    with pytest.raises(AnsibleActionFail):
        run({'path': str(tmp_path / 'run.html'), 'records': ['not a record']})
