# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_hoststate: which directories may hold bundles, how the default places are made, which volumes a migration may use."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._files import FileError
from ansible_collections.mtd.containers.plugins.module_utils._hoststate import (
    check_given_dir,
    dir_problem,
    ensure_state_dir,
    state_dir_problem,
    volume_conflict,
)

DIR, LINK, FILE = stat.S_IFDIR, stat.S_IFLNK, stat.S_IFREG


@pytest.mark.parametrize('mode, uid, sticky_ok, problem', [
    (DIR | 0o700, 0, False, None),
    (DIR | 0o755, 0, False, None),                      # root's, nobody else writes: fine (then set 0700)
    (DIR | 0o700, 1000, False, None),                   # this user's (owner_uid below)
    (DIR | 0o777, 0, False, 'is writable by other users (mode 0777)'),
    (DIR | 0o775, 0, False, 'is writable by other users (mode 0775)'),
    (DIR | 0o1777, 0, False, 'is writable by other users (mode 1777)'),
    (DIR | 0o1777, 0, True, None),                      # /tmp, named by the user
    (DIR | 0o777, 0, True, 'is writable by other users (mode 0777)'),   # not sticky: anyone renames
    (DIR | 0o700, 65534, False, 'is owned by uid 65534, not by uid 1000'),
    (DIR | 0o1777, 65534, True, 'is owned by uid 65534, not by uid 1000'),
    (LINK | 0o777, 0, True, 'is a symbolic link'),
    (FILE | 0o600, 0, False, 'is not a directory'),
])
def test_dir_problem(mode, uid, sticky_ok, problem):
    assert dir_problem(mode, uid, 1000, sticky_ok=sticky_ok) == problem


def test_ensure_state_dir_creates_every_missing_part_0700(tmp_path):
    place = tmp_path / 'shm' / 'mtd-migrations'
    os.umask(0o022)
    ensure_state_dir(str(place))
    for path in (place, place.parent):
        info = os.lstat(str(path))
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    ensure_state_dir(str(place))   # again: accepted


def test_ensure_state_dir_tightens_an_existing_directory_of_ours(tmp_path):
    place = tmp_path / 'mtd-incoming'
    place.mkdir()
    os.chmod(str(place), 0o755)
    ensure_state_dir(str(place))
    assert stat.S_IMODE(os.lstat(str(place)).st_mode) == 0o700


@pytest.mark.parametrize('trap', ['link', 'world-writable', 'file'])
def test_ensure_state_dir_refuses_a_trap_and_leaves_it_alone(tmp_path, trap):
    place = tmp_path / 'mtd-migrations'
    target = tmp_path / 'target'
    target.mkdir()
    if trap == 'link':
        os.symlink(str(target), str(place))
    elif trap == 'file':
        place.write_text('')
    else:
        place.mkdir()
        os.chmod(str(place), 0o777)
    before = os.lstat(str(place))
    with pytest.raises(FileError) as err:
        ensure_state_dir(str(place))
    assert err.value.msg.startswith(str(place) + ' ')
    assert 'remove it (it may be another user\'s trap) and run again' in err.value.msg
    after = os.lstat(str(place))
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)
    assert os.listdir(str(target)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to give a directory to another user')
def test_ensure_state_dir_refuses_another_users_directory(tmp_path):
    place = tmp_path / 'mtd-incoming'
    place.mkdir()
    os.chown(str(place), 65534, 65534)
    assert state_dir_problem(str(place)) == '%s is owned by uid 65534, not by uid 0' % place
    with pytest.raises(FileError):
        ensure_state_dir(str(place))
    assert os.lstat(str(place)).st_uid == 65534


def test_check_given_dir_accepts_a_sticky_tmp_and_never_chmods_it(tmp_path):
    tmp = tmp_path / 'tmp'
    tmp.mkdir()
    os.chmod(str(tmp), 0o1777)
    check_given_dir(str(tmp))
    assert stat.S_IMODE(os.lstat(str(tmp)).st_mode) == 0o1777
    # a missing dest below it is created 0700 (and its missing parents)
    check_given_dir(str(tmp / 'a' / 'b'))
    assert stat.S_IMODE(os.lstat(str(tmp / 'a')).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(str(tmp / 'a' / 'b')).st_mode) == 0o700


def test_check_given_dir_refuses_a_link_or_a_world_writable_one(tmp_path):
    open_dir = tmp_path / 'open'
    open_dir.mkdir()
    os.chmod(str(open_dir), 0o777)
    with pytest.raises(FileError) as err:
        check_given_dir(str(open_dir), what='dest')
    assert err.value.msg.startswith('dest (%s) is writable by other users (mode 0777); give a directory of uid' % open_dir)
    assert stat.S_IMODE(os.lstat(str(open_dir)).st_mode) == 0o777
    link = tmp_path / 'link'
    os.symlink(str(tmp_path), str(link))
    with pytest.raises(FileError) as err:
        check_given_dir(str(link), create=False)
    assert 'is a symbolic link' in err.value.msg
    assert state_dir_problem(str(tmp_path / 'missing')) is None


# ---------------------------------------------------------------------------------------------------
# volume_conflict

HEAD = 'A volume named web-data already exists on this host and does not belong to migration m-2'


def test_volume_of_this_migration_may_be_used():
    assert volume_conflict('web-data', {'mtd.migration.id': 'm-2'}, 'm-2') is None


def test_volume_in_use_is_refused_whoever_made_it():
    for labels in ({}, {'mtd.migration.id': 'm-1'}):
        assert volume_conflict('web-data', labels, 'm-2', ['db-1', 'app']) == (
            HEAD + ': container app, db-1 uses it; refusing to overwrite it.')
    assert volume_conflict('web-data', {'mtd.migration.id': 'm-2'}, 'm-2', ['db-1']) == (
        'A volume named web-data made by migration m-2 is used by container db-1, which is not part of it; '
        'refusing to overwrite it.')


def test_volume_of_an_earlier_migration_names_it_and_the_way_out():
    msg = volume_conflict('web-data', {'mtd.migration.id': 'm-1', 'mtd.migration.from': 'lab-3',
                                       'mtd.migration.source_id': 'f' * 64}, 'm-2')
    assert msg == (HEAD + ': it was left by the earlier migration m-1 (which came from lab-3, container ffffffffffff) - '
                   'one that did not finish its cleanup here, or a copy kept when the container left this host '
                   '(migrate_keep_source_volumes). Refusing to overwrite it: check its content, then remove it '
                   '(docker volume rm web-data, or mtd.containers.restore with migration_id m-1 and state absent) and '
                   'run again.')
    bare = volume_conflict('web-data', {'mtd.migration.id': 'm-1'}, 'm-2')
    assert bare.startswith(HEAD + ': it was left by the earlier migration m-1 - one that')


def test_volume_without_migration_label_is_someone_elses():
    for labels in (None, {}, {'com.example': 'x'}):
        msg = volume_conflict('web-data', labels, 'm-2')
        assert msg.startswith(HEAD + ': it was not made by a migration (no mtd.migration.id label)')
        assert 'docker volume rm web-data' in msg
