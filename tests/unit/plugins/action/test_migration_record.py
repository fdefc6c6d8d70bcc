# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The controller-side record writer: real files in a temporary directory, the action run in-process."""

from __future__ import annotations

import json
import os
import stat
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.mtd.containers.plugins.action.migration_record import ActionModule


def run(args, check_mode=False, diff=False):
    task = mock.MagicMock()
    task.args = args
    task.async_val = 0
    task.check_mode = check_mode
    task.diff = diff
    task.action = 'mtd.containers.migration_record'
    action = ActionModule(task, mock.MagicMock(), mock.MagicMock(check_mode=check_mode, diff=diff),
                          loader=None, templar=None, shared_loader_obj=None)
    return action.run(task_vars={})


RECORD = {'id': 'm-0123456789ab', 'state': 'Pending', 'history': [{'state': 'Pending', 'epoch': 1.5}]}


def test_writes_private_json_in_a_new_directory(tmp_path):
    path = tmp_path / 'records' / 'lab-1__web-1.json'
    result = run({'path': str(path), 'record': RECORD})
    assert result['changed'] is True
    assert result['path'] == str(path)
    assert json.loads(path.read_text()) == RECORD
    assert path.read_text().endswith('}\n')
    assert result['bytes'] == len(path.read_bytes())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # no temporary file left


def test_second_write_of_the_same_record_changes_nothing(tmp_path):
    path = tmp_path / 'r.json'
    run({'path': str(path), 'record': RECORD})
    before = os.stat(path)
    result = run({'path': str(path), 'record': dict(RECORD)})
    assert result['changed'] is False
    assert os.stat(path).st_ino == before.st_ino


def test_a_new_state_replaces_the_file_and_shows_a_diff(tmp_path):
    path = tmp_path / 'r.json'
    run({'path': str(path), 'record': RECORD})
    newer = dict(RECORD, state='Ready')
    result = run({'path': str(path), 'record': newer}, diff=True)
    assert result['changed'] is True
    assert '"Pending"' in result['diff']['before'] and '"Ready"' in result['diff']['after']
    assert json.loads(path.read_text())['state'] == 'Ready'


def test_check_mode_reports_the_change_and_writes_nothing(tmp_path):
    path = tmp_path / 'sub' / 'r.json'
    result = run({'path': str(path), 'record': RECORD}, check_mode=True)
    assert result['changed'] is True
    assert not (tmp_path / 'sub').exists()


def test_refuses_a_path_that_is_not_a_regular_file(tmp_path):
    target = tmp_path / 'elsewhere.json'
    target.write_text('keep me')
    link = tmp_path / 'r.json'
    link.symlink_to(target)
    with pytest.raises(AnsibleActionFail, match='not a regular file'):
        run({'path': str(link), 'record': RECORD})
    assert target.read_text() == 'keep me'
    with pytest.raises(AnsibleActionFail, match='not a regular file'):
        run({'path': str(tmp_path), 'record': RECORD})


def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path):
    path = tmp_path / 'r.json'
    with pytest.raises(AnsibleActionFail, match="'record' is of type str"):
        run({'path': str(path), 'record': 'not a dict'})
    with pytest.raises(AnsibleActionFail, match='path'):
        run({'record': RECORD})
    with pytest.raises(AnsibleActionFail, match='cannot be written as JSON'):
        run({'path': str(path), 'record': {'when': object()}})
    assert not path.exists()


def test_an_existing_directory_keeps_its_mode_and_a_failed_write_leaves_no_temporary_file(tmp_path):
    directory = tmp_path / 'shared'
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    path = directory / 'r.json'
    run({'path': str(path), 'record': RECORD})
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755
    with mock.patch('os.replace', side_effect=OSError(28, 'No space left on device')):
        with pytest.raises(AnsibleActionFail, match='Cannot write the record .*No space left on device'):
            run({'path': str(path), 'record': dict(RECORD, state='Ready')})
    assert [p.name for p in directory.iterdir()] == ['r.json']
    assert json.loads(path.read_text()) == RECORD
