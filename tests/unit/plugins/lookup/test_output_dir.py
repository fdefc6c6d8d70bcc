# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mtd_output_dir: which directory, and that it is private (real directories in tmp_path)."""

from __future__ import annotations

import os
import stat

import pytest
from ansible.errors import AnsibleLookupError

from ansible_collections.mtd.containers.plugins.lookup.output_dir import (LookupModule, prepare_output_dir,
                                                                          resolve_output_dir)

HOME = '/home/ops'
CWD = '/tmp/awx_42_job'


@pytest.mark.parametrize('given, environ, expected', [
    ('', {}, '/home/ops/.local/state/mtd-containers'),
    ('', {'XDG_STATE_HOME': '/srv/state'}, '/srv/state/mtd-containers'),
    ('', {'MTD_OUTPUT_DIR': '/var/lib/mtd', 'XDG_STATE_HOME': '/srv/state'}, '/var/lib/mtd'),
    ('/data/mtd', {'MTD_OUTPUT_DIR': '/var/lib/mtd'}, '/data/mtd'),
    ('~/mtd', {}, '/home/ops/mtd'),
    ('~', {}, '/home/ops'),
    ('out', {}, '/tmp/awx_42_job/out'),                       # relative: from ansible-playbook's directory
    ('', {'MTD_OUTPUT_DIR': 'runs/../out/'}, '/tmp/awx_42_job/out'),
    ('', {'MTD_OUTPUT_DIR': ''}, '/home/ops/.local/state/mtd-containers'),   # empty = unset
])
def test_resolve_output_dir(given, environ, expected):
    assert resolve_output_dir(given, environ, HOME, CWD) == expected


def test_a_missing_directory_is_created_0700_with_its_parents(tmp_path):
    old = os.umask(0)
    try:
        path = prepare_output_dir(str(tmp_path / 'state' / 'mtd-containers'))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700
    assert os.path.isdir(tmp_path / 'state')


def test_an_existing_private_directory_is_kept_as_it_is(tmp_path):
    path = tmp_path / 'out'
    path.mkdir(mode=0o750)
    os.chmod(path, 0o750)
    (path / 'old.json').write_text('{}')
    assert prepare_output_dir(str(path)) == str(path)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o750 and (path / 'old.json').exists()


def test_a_directory_others_may_write_is_refused_not_changed(tmp_path):
    path = tmp_path / 'shared'
    path.mkdir()
    os.chmod(path, 0o1777)
    with pytest.raises(AnsibleLookupError, match='may be written by other users .*chmod 0700'):
        prepare_output_dir(str(path))
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o1777


@pytest.mark.parametrize('kind', ['link', 'file'])
def test_a_link_or_a_file_is_refused(tmp_path, kind):
    path = tmp_path / 'out'
    if kind == 'link':
        (tmp_path / 'elsewhere').mkdir(mode=0o700)
        path.symlink_to(tmp_path / 'elsewhere')
    else:
        path.write_text('')
    with pytest.raises(AnsibleLookupError, match='not a directory'):
        prepare_output_dir(str(path))


def test_a_directory_of_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip('needs root to give a directory to another user')
    path = tmp_path / 'theirs'
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)
    with pytest.raises(AnsibleLookupError, match='owned by uid 65534'):
        prepare_output_dir(str(path))


def test_a_directory_that_cannot_be_created_names_the_fix(tmp_path):
    (tmp_path / 'file').write_text('')
    with pytest.raises(AnsibleLookupError, match='set mtd_output_dir'):
        prepare_output_dir(str(tmp_path / 'file' / 'out'))


def test_the_lookup_returns_the_prepared_directory(tmp_path, monkeypatch):
    monkeypatch.setenv('MTD_OUTPUT_DIR', str(tmp_path / 'from-env'))
    lookup = LookupModule()
    assert lookup.run([''], variables={}) == [str(tmp_path / 'from-env')]
    assert lookup.run([str(tmp_path / 'given')], variables={}) == [str(tmp_path / 'given')]
    assert stat.S_IMODE(os.lstat(tmp_path / 'from-env').st_mode) == 0o700
