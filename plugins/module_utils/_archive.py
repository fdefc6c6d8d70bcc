# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tar archives from another host, unpacked so that they cannot reach beyond where they belong.

Private module_utils file (leading underscore): its API may change without notice. Python 3.8+,
standard library only.

Two kinds of archive arrive from a migration's source, and the source may be attacked:

- **the bundle stream** (``StreamExtractor``): the tar stream of a whole bundle, unpacked as it arrives
  with Python's ``tarfile`` in streaming mode and our own member rules. A bundle holds only regular files
  and directories, so nothing else is ever created: no device node, FIFO, socket, link, setuid or
  setgid bit. Every file is created ``O_EXCL|O_NOFOLLOW`` mode 0600 and every directory 0700, owned by
  whoever unpacks (root); the archive's owners, modes and the attributes of its top directory are
  ignored.
- **the writable layer and the volumes** (``check_archive`` before GNU tar unpacks them, which keeps
  owners, modes and the overlay's xattrs): a listing check of every member first. No absolute name, no
  ``..``, nothing written through a symbolic link (one of the archive or one already in the
  destination), hard links only to regular files the archive itself made, and no device node, FIFO or
  socket - except, in the container's own layer, the overlay's whiteouts (character device 0:0). Setuid
  and setgid bits are accepted only in the container's own layer (its files, for its processes).

Why a listing check before GNU tar for those two and not tarfile: they are files in the bundle (a
private 0700 directory nobody else can change between the check and the extraction), and GNU tar
restores the ``trusted.overlay.*`` xattrs (opaque directories) and ``security.capability`` that
``tarfile`` cannot write.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import subprocess
import tarfile
import threading
from typing import Any, Dict, IO, List, Optional, Set

from ansible_collections.mtd.containers.plugins.module_utils._migration import MigrationError

LAYER = 'layer'     # the container's own writable layer (overlay2 upper directory)
VOLUME = 'volume'   # a named volume's contents
CHUNK = 1024 * 1024
SETID = stat.S_ISUID | stat.S_ISGID


def member_path(name: str, what: str) -> Optional[str]:
    """The normalised relative path of an archive member (None for the archive's top directory).

    Raises MigrationError for an absolute name, a ``..`` component, an empty one or a NUL byte.
    """
    text = str(name)
    if '\0' in text or text.startswith('/'):
        raise MigrationError('%s holds a member with an absolute or invalid name %r; refusing it.' % (what, text))
    while text.startswith('./'):
        text = text[2:]
    text = text.rstrip('/')
    if text in ('', '.'):
        return None
    parts = text.split('/')
    if any(part in ('', '.', '..') for part in parts):
        raise MigrationError('%s holds a member named %r, which leaves or bends its directory; refusing it.'
                             % (what, name))
    return text


def _kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return 'directory'
    if member.issym():
        return 'symbolic link'
    if member.islnk():
        return 'hard link'
    if member.ischr():
        return 'character device %d:%d' % (member.devmajor, member.devminor)
    if member.isblk():
        return 'block device %d:%d' % (member.devmajor, member.devminor)
    if member.isfifo():
        return 'FIFO'
    if member.isreg():
        return 'regular file'
    return 'member of tar type %r' % member.type


class ArchiveRules:
    """The member rules of one archive of a kind (:data:`LAYER` or :data:`VOLUME`), member by member."""

    def __init__(self, kind: str, what: str, dest: Optional[str] = None) -> None:
        self.kind = kind
        self.what = what
        self.dest = dest
        self.links: Set[str] = set()      # symbolic links the archive made
        self.files: Set[str] = set()      # regular files the archive made (hard-link targets)
        self._checked: Dict[str, bool] = {}

    def refuse(self, name: str, why: str) -> None:
        raise MigrationError('%s holds %s: %s; nothing of it was unpacked.' % (self.what, name, why))

    def _through_link(self, rel: str) -> Optional[str]:
        """The first parent of ``rel`` that is a symbolic link (the archive's, or one in the destination)."""
        parts = rel.split('/')
        for i in range(1, len(parts)):
            parent = '/'.join(parts[:i])
            if parent in self.links:
                return parent
            if self.dest is not None:
                if parent not in self._checked:
                    try:
                        self._checked[parent] = stat.S_ISLNK(os.lstat(os.path.join(self.dest, parent)).st_mode)
                    except OSError:
                        self._checked[parent] = False
                if self._checked[parent]:
                    return parent
        return None

    def check(self, member: tarfile.TarInfo) -> Optional[str]:
        """Raise MigrationError when ``member`` breaks a rule; returns its normalised path."""
        rel = member_path(member.name, self.what)
        kind = _kind(member)
        if rel is None:
            if not member.isdir():
                self.refuse('its top entry', 'a %s instead of a directory' % kind)
            return None
        if member.isdev() or member.isfifo() or not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            whiteout = member.ischr() and member.devmajor == 0 and member.devminor == 0
            if not (self.kind == LAYER and whiteout):
                self.refuse(rel, 'a %s, which is never created on this host' % kind)
        if member.mode & SETID and self.kind != LAYER and not member.isdir():
            self.refuse(rel, 'a %s with the setuid or setgid bit (mode %04o), kept only in the container\'s own layer'
                        % (kind, member.mode))
        link = self._through_link(rel)
        if link:
            self.refuse(rel, 'a %s below the symbolic link %s, which would be written through it' % (kind, link))
        if member.islnk():
            target = member_path(member.linkname, self.what)
            if target is None or target not in self.files:
                self.refuse(rel, 'a hard link to %r, which is not a regular file of this archive' % member.linkname)
        if member.issym():
            self.links.add(rel)
        else:
            self.links.discard(rel)
        if member.isreg() and not member.islnk():
            self.files.add(rel)
        else:
            self.files.discard(rel)
        return rel


def check_archive(tar_file: str, kind: str, dest: Optional[str] = None, what: Optional[str] = None) -> int:
    """List ``tar_file`` and apply the rules of ``kind`` to every member (``dest``: where it will be
    unpacked, whose existing symbolic links count too). Raises MigrationError; returns the member count."""
    what = what or os.path.basename(tar_file)
    rules = ArchiveRules(kind, what, dest)
    count = 0
    try:
        with tarfile.open(tar_file, 'r:') as archive:
            for member in archive:
                rules.check(member)
                count += 1
    except (tarfile.TarError, EOFError) as exc:
        raise MigrationError('%s is not a readable tar archive: %s' % (what, exc))
    return count


# ---------------------------------------------------------------------------------------------------
# The bundle stream

def _make_dirs(root: str, rel: str) -> str:
    """``root/rel`` as a directory (0700, parents too), each component checked with lstat: a real directory."""
    path = root
    for part in rel.split('/'):
        path = os.path.join(path, part)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise MigrationError('The bundle stream holds %s both as a file and as a directory.' % rel)
    return path


def _write_file(fileobj: IO[bytes], path: str, size: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), 0o600)
    except FileExistsError:
        raise MigrationError('The bundle stream holds %s twice.' % path)
    try:
        left = size
        while left > 0:
            chunk = fileobj.read(min(CHUNK, left))
            if not chunk:
                raise MigrationError('The bundle stream ended inside %s.' % path)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            left -= len(chunk)
    finally:
        os.close(fd)


def extract_stream(fileobj: IO[bytes], staging: str) -> Dict[str, int]:
    """Unpack the tar stream of a bundle into the existing private directory ``staging``.

    Only regular files (0600) and directories (0700) are created; anything else, a setuid/setgid bit, an
    absolute name or a ``..`` ends it with MigrationError. Returns ``{'files': n, 'bytes': n}``.
    """
    what = 'The bundle stream'
    files = written = 0
    try:
        with tarfile.open(fileobj=fileobj, mode='r|', bufsize=CHUNK) as archive:
            for member in archive:
                rel = member_path(member.name, what)
                if not (member.isdir() or (member.isreg() and not member.issparse())):
                    raise MigrationError('%s holds %s, a %s; a bundle holds only regular files and directories, '
                                         'nothing else is created on this host.' % (what, rel or '.', _kind(member)))
                if member.mode & SETID:
                    raise MigrationError('%s holds %s with the setuid or setgid bit (mode %04o); refusing it.'
                                         % (what, rel or '.', member.mode))
                if rel is None:
                    continue   # the top directory: the staging directory stays as it was made
                if member.isdir():
                    _make_dirs(staging, rel)
                    continue
                parent = posixpath.dirname(rel)
                path = os.path.join(_make_dirs(staging, parent) if parent else staging, posixpath.basename(rel))
                source = archive.extractfile(member)
                if source is None:
                    raise MigrationError('%s holds %s, which cannot be read as a file.' % (what, rel))
                _write_file(source, path, member.size)
                files += 1
                written += member.size
    except (tarfile.TarError, EOFError) as exc:
        raise MigrationError('%s is not a valid tar stream: %s' % (what, exc))
    return {'files': files, 'bytes': written}


class StreamExtractor:
    """``extract_stream`` in a thread, shaped like a process of a pipeline (``stdin``, ``stderr``,
    ``args``, ``returncode``, ``wait``, ``kill``, ``poll``), so that the receiver treats it like ``tar -x``.

    ``source`` is the decompressor's output; without one, ``stdin`` is the write end of a pipe.
    """

    def __init__(self, staging: str, source: Optional[IO[bytes]] = None) -> None:
        self.args = ['unpack (tarfile)']
        self.returncode: Optional[int] = None
        self.stderr: Optional[IO[bytes]] = None
        self.stdin: Optional[IO[bytes]] = None
        self.stats: Dict[str, Any] = {}
        if source is None:
            read_fd, write_fd = os.pipe()
            source = os.fdopen(read_fd, 'rb', buffering=CHUNK)
            self.stdin = os.fdopen(write_fd, 'wb', buffering=0)
        self._source = source
        self._thread = threading.Thread(target=self._run, args=(staging,))
        self._thread.daemon = True
        self._thread.start()

    def _run(self, staging: str) -> None:
        errors: List[str] = []
        try:
            self.stats = extract_stream(self._source, staging)
            # tar's padding after the end-of-archive blocks: read, so that the writer never sees a broken pipe
            while self._source.read(CHUNK):
                pass
        except (MigrationError, OSError, ValueError) as exc:
            errors.append(str(exc))
        finally:
            try:
                self._source.close()   # a writer still writing gets EPIPE
            except OSError:
                pass
        self.stderr = io.BytesIO('\n'.join(errors).encode('utf-8'))
        self.returncode = 1 if errors else 0

    def poll(self) -> Optional[int]:
        return self.returncode if not self._thread.is_alive() else None

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def kill(self) -> None:
        """End the stream: the extraction sees its end (and fails unless it was complete)."""
        if self.stdin is not None:
            try:
                self.stdin.close()
            except OSError:
                pass
