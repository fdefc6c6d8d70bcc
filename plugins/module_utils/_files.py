# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""File-system helpers shared by every module: atomic writes, private directories, tree removal.

This is a private module_utils file (leading underscore): its API may change without notice. Python 3.8+,
standard library only; used by modules on managed hosts and by the controller-side action plugin.

- ``atomic_write(path, data, mode)``: a temporary file created ``O_EXCL|O_NOFOLLOW`` in the same
  directory, written, fsync'd, chmod'ed, then renamed over ``path`` — readers see the old content or the
  new one, never a part; a symbolic link at ``path`` is replaced, never followed.
- ``make_private_dir(path)``: create it 0700 or accept an existing one only when it is a real directory
  owned by this user (``lstat``: not a link) — then force 0700.
- ``remove_tree(path)``: remove a file, link or directory tree if it is there; True when something went.
- ``restrict_tree(path)``: directories 0700, files 0600 below ``path`` (links are not followed).
- ``move_tree(src, dst)``: rename, or copy and delete across file systems; an old ``dst`` is replaced.
- ``read_tail(path)``: the last lines of a (log) file, '' when it cannot be read.
- ``tmpfs_free_bytes(path)``: free bytes of a writable tmpfs mount point, else None.
"""

from __future__ import annotations

import os
import shutil
import stat
from typing import Optional, Union

from ansible_collections.mtd.containers.plugins.module_utils._cmd import TAIL_LINES, output_tail
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError


class FileError(MtdError):
    """A path that is not what it must be (owner, type, mode) or could not be written."""


def atomic_write(path: str, data: Union[str, bytes], mode: int = 0o600, fsync: bool = True,
                 tmp_dir: Optional[str] = None) -> None:
    """Replace ``path`` with ``data`` atomically (see the module docstring). ``tmp_dir``: where the
    temporary file goes (default: beside ``path``; it must be on the same file system)."""
    payload = data.encode('utf-8') if isinstance(data, str) else data
    directory = tmp_dir or os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0)
    for attempt in range(100):
        tmp = os.path.join(directory, '.%s.%d.%d.tmp' % (base, os.getpid(), attempt))
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - a hundred leftovers of this very pid
        raise FileError('Cannot create a temporary file beside %s.' % path)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(payload)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def make_private_dir(path: str, mode: int = 0o700) -> None:
    """Create ``path`` (parents as needed) with ``mode``; an existing one must be a directory of ours.

    Raises FileError for a symbolic link, a non-directory or a directory owned by another user: those
    could be an unprivileged user's trap (a pre-created directory they can read or swap).
    """
    try:
        os.makedirs(path, mode=mode)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise FileError('%s exists and is not a directory (or is a symbolic link); remove it and run again.'
                        % path, path=path)
    if info.st_uid != os.geteuid():
        raise FileError('%s is owned by uid %d, not by this user (uid %d); remove it and run again.'
                        % (path, info.st_uid, os.geteuid()), path=path)
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)


def remove_tree(path: Optional[str]) -> bool:
    """Remove ``path`` (a file, a link — not what it points to — or a directory tree). True when it was there."""
    if not path or not os.path.lexists(path):
        return False
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)
    return True


def restrict_tree(path: str) -> None:
    """Directories 0700, files 0600 below ``path`` (what a bundle of process memory needs)."""
    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o700)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, 0o600)


def move_tree(src: str, dst: str) -> str:
    """Rename ``src`` to ``dst`` ('rename'); copy then delete when they are on different mounts ('copy')."""
    if os.path.lexists(dst):
        shutil.rmtree(dst)
    try:
        os.rename(src, dst)
        return 'rename'
    except OSError:
        shutil.copytree(src, dst, symlinks=True)
        shutil.rmtree(src)
        return 'copy'


def read_tail(path: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of the file ``path`` (its last 64 KiB read); '' when unreadable."""
    try:
        with open(path, 'rb') as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            return output_tail(handle.read().decode('utf-8', 'replace'), lines)
    except OSError:
        return ''


def tmpfs_free_bytes(path: str) -> Optional[int]:
    """Free bytes of ``path`` when it is a writable tmpfs mount point, else None."""
    try:
        with open('/proc/self/mounts') as handle:
            is_tmpfs = any(line.split()[1:3] == [path, 'tmpfs'] for line in handle if len(line.split()) > 2)
        if not is_tmpfs or not os.access(path, os.W_OK):
            return None
        info = os.statvfs(path)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize
