# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a migration keeps on a host, and what it finds there: state directories and volumes.

Private module_utils file (leading underscore): its API may change without notice. Python 3.8+,
standard library only.

A host where a container is checkpointed or restored may have unprivileged local users, and the
collection's default places for checkpoint bundles are in shared file systems (``/dev/shm`` is
world-writable). Whoever creates ``/dev/shm/mtd-migrations`` first would own the directory that later
holds root's process memory dumps, or could put a symbolic link there that makes root write elsewhere.

- ``dir_problem(st_mode, st_uid, owner_uid, sticky_ok)`` (pure): why a directory described by its
  ``lstat`` is not safe to keep bundles in, or None.
- ``state_dir_problem(path)``: the same for a path (None also when it does not exist yet).
- ``ensure_state_dir(path)``: a DEFAULT place of the collection. Created (with every missing parent)
  0700 by this user, or, when it exists, accepted only when ``dir_problem`` finds nothing; then
  tightened to 0700 (it is ours).
- ``check_given_dir(path, create)``: a place the USER named (a ``dest``, the parent of a ``bundle``,
  for example ``/tmp``): checked the same way except that a sticky world-writable directory (``/tmp``)
  is accepted; missing parts are created 0700; an existing directory is never chmod'ed or chown'ed.
- ``volume_conflict(...)`` (pure): why an existing volume of the name a migration needs must not be
  used by it, in one sentence that names the migration that left it and what to do.
"""

from __future__ import annotations

import os
import stat
from typing import Any, List, Mapping, Optional, Sequence

from ansible_collections.mtd.containers.plugins.module_utils._files import FileError
from ansible_collections.mtd.containers.plugins.module_utils._migration import LABEL_FROM as _LABEL_FROM
from ansible_collections.mtd.containers.plugins.module_utils._migration import LABEL_ID as _LABEL_ID
from ansible_collections.mtd.containers.plugins.module_utils._migration import LABEL_SOURCE_ID as _LABEL_SOURCE_ID

STATE_DIR_MODE = 0o700


def dir_problem(st_mode: int, st_uid: int, owner_uid: int, sticky_ok: bool = False) -> Optional[str]:
    """Why a directory with this ``lstat`` mode and owner must not hold bundles (None: it may).

    It must be a real directory (not a symbolic link), owned by ``owner_uid`` (this user: root) or
    root, and writable by nobody else - except, with ``sticky_ok``, a sticky directory such as /tmp,
    where nobody can rename or remove what another user made.
    """
    if stat.S_ISLNK(st_mode):
        return 'is a symbolic link'
    if not stat.S_ISDIR(st_mode):
        return 'is not a directory'
    if st_uid not in (owner_uid, 0):
        return 'is owned by uid %d, not by uid %d' % (st_uid, owner_uid)
    mode = stat.S_IMODE(st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not (sticky_ok and mode & stat.S_ISVTX):
        return 'is writable by other users (mode %04o)' % mode
    return None


def state_dir_problem(path: str, sticky_ok: bool = False) -> Optional[str]:
    """``dir_problem`` of ``path`` as a sentence part ('/dev/shm/x is a symbolic link'); None when
    ``path`` is fine or does not exist (it will be created)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return '%s cannot be examined (%s)' % (path, exc)
    problem = dir_problem(info.st_mode, info.st_uid, os.geteuid(), sticky_ok=sticky_ok)
    return '%s %s' % (path, problem) if problem else None


def _create_missing(path: str, sticky_ok: bool) -> None:
    """Create ``path`` and its missing parents one by one, 0700; each existing one is checked."""
    path = os.path.abspath(path)
    missing: List[str] = []
    probe = path
    while not os.path.lexists(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for part in reversed(missing):
        try:
            os.mkdir(part, STATE_DIR_MODE)
        except FileExistsError:
            pass    # made meanwhile by someone else: the check below decides
        # mkdir applies the umask: the mode asked for exactly
        problem = state_dir_problem(part, sticky_ok=sticky_ok)
        if problem:
            raise FileError('%s; remove it (it may be another user\'s trap) and run again.' % problem, path=part)
        os.chmod(part, STATE_DIR_MODE)


def ensure_state_dir(path: str) -> None:
    """A default place of the collection (see the module docstring); FileError when it is unsafe."""
    problem = state_dir_problem(path)
    if problem:
        raise FileError('%s; this directory holds checkpoints (process memory) and must be a directory of uid %d '
                        'that nobody else can write: remove it (it may be another user\'s trap) and run again.'
                        % (problem, os.geteuid()), path=path)
    _create_missing(path, sticky_ok=False)
    info = os.lstat(path)
    if stat.S_IMODE(info.st_mode) != STATE_DIR_MODE:
        os.chmod(path, STATE_DIR_MODE)


def check_given_dir(path: str, create: bool = True, what: str = 'dest') -> None:
    """A directory the user named (see the module docstring); FileError when it is unsafe."""
    problem = state_dir_problem(path, sticky_ok=True)
    if problem:
        raise FileError('%s (%s) %s; give a directory of uid %d (or root) that other users cannot write, such as '
                        'a new one below /root or /var/lib.' % (what, path, problem.split(' ', 1)[1], os.geteuid()),
                        path=path)
    if create:
        _create_missing(path, sticky_ok=True)


# ---------------------------------------------------------------------------------------------------
# Volumes a migration finds on its target

def volume_conflict(name: str, labels: Optional[Mapping[str, Any]], migration_id: str,
                    users: Sequence[str] = ()) -> Optional[str]:
    """Why the existing volume ``name`` (its ``labels``, the containers that mount it) must not receive
    the data of migration ``migration_id``; None when it may (this migration made it and no container of
    another migration mounts it).

    A volume is never silently reused: one that another migration made (``mtd.migration.id``) was left
    by an earlier migration - one whose cleanup did not run (a crash), or a copy kept on purpose when the
    container left this host - and one without the label belongs to someone else on this host (or is the
    container's own volume, kept when it left).
    """
    labels = labels or {}
    owner = labels.get(_LABEL_ID) or ''
    users = [u for u in users if u]
    head = 'A volume named %s already exists on this host and does not belong to migration %s' % (name, migration_id)
    if users and owner == migration_id:
        return ('A volume named %s made by migration %s is used by container %s, which is not part of it; refusing '
                'to overwrite it.' % (name, migration_id, ', '.join(sorted(users))))
    if users:
        return '%s: container %s uses it; refusing to overwrite it.' % (head, ', '.join(sorted(users)))
    if owner == migration_id:
        return None
    if owner:
        parts = (['which came from %s' % labels[_LABEL_FROM]] if labels.get(_LABEL_FROM) else []) + \
            (['container %s' % str(labels[_LABEL_SOURCE_ID])[:12]] if labels.get(_LABEL_SOURCE_ID) else [])
        origin = ' (%s)' % ', '.join(parts) if parts else ''
        return ('%s: it was left by the earlier migration %s%s - one that did not finish its cleanup here, or a copy '
                'kept when the container left this host (migrate_keep_source_volumes). Refusing to overwrite it: '
                'check its content, then remove it (docker volume rm %s, or mtd.containers.restore with migration_id %s '
                'and state absent) and run again.' % (head, owner, origin, name, owner))
    return ('%s: it was not made by a migration (no %s label) - another workload\'s data, or the container\'s own '
            'volume kept when it left this host (migrate_keep_source_volumes or migrate_keep_source). Refusing to '
            'overwrite it: check its content, then remove it (docker volume rm %s) and run again.'
            % (head, _LABEL_ID, name))
