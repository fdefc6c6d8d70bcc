# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tar archives from another host, unpacked so that they cannot reach beyond where they belong.

Private module_utils file (leading underscore): its API may change without notice. Python 3.8+,
standard library only.

Two kinds of archive arrive from a migration's source, and the source may be attacked:

- **the bundle stream** (``StreamExtractor``): the tar stream of a whole bundle, unpacked as it arrives
  by a push parser of our own (``tarfile.TarInfo.frombuf`` reads each header) with our own member rules. A bundle holds only regular files
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
from typing import Dict, IO, Optional, Set

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

BLOCK = tarfile.BLOCKSIZE
_STREAM = 'The bundle stream'


def _make_dirs(root: str, rel: str) -> str:
    """``root/rel`` as a directory (0700, parents too), each component checked with lstat: a real directory."""
    path = root
    for part in rel.split('/'):
        path = os.path.join(path, part)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise MigrationError('%s holds %s both as a file and as a directory.' % (_STREAM, rel))
    return path


def _pax_records(data: bytes) -> Dict[str, str]:
    """The ``length key=value\n`` records of a pax extended header."""
    out = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] != b'\0':
        space = data.index(b' ', pos)
        length = int(data[pos:space])
        if length <= 0:
            raise ValueError('a pax record of length %d' % length)
        key, sep, value = data[space + 1:pos + length - 1].partition(b'=')
        out[key.decode('utf-8', 'surrogateescape')] = value.decode('utf-8', 'surrogateescape')
        pos += length
    return out


class StreamExtractor:
    """Unpacks a bundle's tar stream into ``staging`` as the bytes arrive (a push parser: no thread and no
    copy without a decompressor), with the rules of the module docstring.

    Shaped like a process of a pipeline so that the receiver treats it like ``tar -x``: ``stdin`` (itself:
    ``write``/``close``), ``stderr``, ``args``, ``returncode``, ``poll``, ``wait``, ``kill``. After an error it
    refuses further writes with BrokenPipeError, as a dead ``tar`` would. With ``source`` (a decompressor's
    output) a thread reads it and feeds the parser.
    """

    def __init__(self, staging: str, source: Optional[IO[bytes]] = None) -> None:
        self.staging = staging
        self.args = ['unpack (bundle rules)']
        self.returncode: Optional[int] = None
        self.stderr: Optional[IO[bytes]] = None
        self.stdin = self
        self.stats = {'files': 0, 'bytes': 0}
        self._error: Optional[str] = None
        self._state = 'header'
        self._buf = bytearray()
        self._need = BLOCK       # bytes the current state still needs
        self._fd: Optional[int] = None
        self._pad = 0
        self._meta: Dict[str, str] = {}
        self._meta_kind = ''
        self._meta_size = 0
        self._zero_blocks = 0
        self._thread: Optional[threading.Thread] = None
        if source is not None:
            self._thread = threading.Thread(target=self._pump, args=(source,))
            self._thread.daemon = True
            self._thread.start()

    # -- the pipeline side -----------------------------------------------------------------------

    def _pump(self, source: IO[bytes]) -> None:
        try:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                try:
                    self.write(chunk)
                except BrokenPipeError:
                    break
        except OSError as exc:
            self._fail('reading the decompressed stream failed: %s' % exc)
        finally:
            source.close()   # the decompressor, still writing, gets EPIPE
            self.close()

    def write(self, data: bytes) -> int:
        if self._error is not None or self.returncode is not None:
            raise BrokenPipeError(self._error or 'the bundle stream was closed')
        try:
            self._feed(memoryview(data))
        except MigrationError as exc:
            self._fail(exc.msg)
        except (tarfile.TarError, OSError, ValueError, UnicodeError) as exc:
            self._fail('%s is not a valid tar stream: %s' % (_STREAM, exc))
        if self._error is not None:
            raise BrokenPipeError(self._error)
        return len(data)

    def close(self) -> None:
        if self.returncode is not None:
            return
        if self._error is None and self._state != 'end':
            self._fail('%s ended before its end-of-archive blocks (it was cut short).' % _STREAM)
        self._close_fd()
        self.stderr = io.BytesIO((self._error or '').encode('utf-8'))
        self.returncode = 1 if self._error else 0

    def _fail(self, message: str) -> None:
        if self._error is None:
            self._error = message
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def poll(self) -> Optional[int]:
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.close()
        return self.returncode

    def kill(self) -> None:
        """Stop: nothing more is written (the caller removes the staging directory)."""
        self._fail('the unpacking was stopped')
        if self._thread is None:
            self.close()

    # -- the parser ------------------------------------------------------------------------------

    def _feed(self, view: memoryview) -> None:
        while view:
            if self._state == 'data':
                view = self._data(view)
            elif self._state == 'skip':
                used = min(self._need, len(view))
                self._need -= used
                view = view[used:]
                if not self._need:
                    self._state, self._need = 'header', BLOCK
            elif self._state == 'end':
                return   # the blocking padding after the end-of-archive blocks
            else:
                used = min(self._need - len(self._buf), len(view))
                self._buf += view[:used]
                view = view[used:]
                if len(self._buf) == self._need:
                    block, self._buf = bytes(self._buf), bytearray()
                    if self._state == 'header':
                        self._header(block)
                    else:
                        self._meta_done(block)

    def _data(self, view: memoryview) -> memoryview:
        part = view[:self._need]
        while part:
            part = part[os.write(self._fd, part):]   # type: ignore[arg-type]
        used = min(self._need, len(view))
        self._need -= used
        if not self._need:
            self._close_fd()
            self._state, self._need = ('skip', self._pad) if self._pad else ('header', BLOCK)
        return view[used:]

    def _meta_done(self, payload: bytes) -> None:
        """A GNU long name or a pax header's payload (with its padding) arrived: it applies to the next member."""
        data = payload[:self._meta_size]
        if self._meta_kind == 'name':
            self._meta['path'] = data.rstrip(b'\0').decode('utf-8', 'surrogateescape')
        elif self._meta_kind == 'link':
            self._meta['linkpath'] = data.rstrip(b'\0').decode('utf-8', 'surrogateescape')
        else:
            self._meta.update(_pax_records(data))
        self._state, self._need = 'header', BLOCK

    def _header(self, block: bytes) -> None:
        if block == bytes(BLOCK):
            self._zero_blocks += 1
            if self._zero_blocks == 2:
                self._state = 'end'
            return
        self._zero_blocks = 0
        info = tarfile.TarInfo.frombuf(block, 'utf-8', 'surrogateescape')
        if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE):
            self._meta_kind = {tarfile.GNUTYPE_LONGNAME: 'name', tarfile.GNUTYPE_LONGLINK: 'link'}.get(info.type, 'pax')
            self._meta_size = info.size
            self._state, self._need = 'meta', info.size + (-info.size) % BLOCK
            if info.size > 1024 * 1024:
                raise MigrationError('%s holds an extended header of %d bytes.' % (_STREAM, info.size))
            if not self._need:
                self._meta_done(b'')
            return
        meta, self._meta = self._meta, {}
        if 'path' in meta:
            info.name = meta['path']
        if 'size' in meta:
            info.size = int(meta['size'])
        if any(key.startswith('GNU.sparse') for key in meta):
            info.type = tarfile.GNUTYPE_SPARSE
        self._member(info)

    def _member(self, info: tarfile.TarInfo) -> None:
        rel = member_path(info.name, _STREAM)
        if not (info.isdir() or (info.isreg() and info.type != tarfile.GNUTYPE_SPARSE)):
            raise MigrationError('%s holds %s, a %s; a bundle holds only regular files and directories, '
                                 'nothing else is created on this host.' % (_STREAM, rel or '.', _kind(info)))
        if info.mode & SETID:
            raise MigrationError('%s holds %s with the setuid or setgid bit (mode %04o); refusing it.'
                                 % (_STREAM, rel or '.', info.mode))
        if info.isdir():
            if rel is not None:   # the top directory: the staging directory stays as it was made
                _make_dirs(self.staging, rel)
            self._state, self._need = ('skip', info.size + (-info.size) % BLOCK) if info.size else ('header', BLOCK)
            return
        if rel is None:
            raise MigrationError('%s holds a file without a name.' % _STREAM)
        parent = posixpath.dirname(rel)
        path = os.path.join(_make_dirs(self.staging, parent) if parent else self.staging, posixpath.basename(rel))
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0),
                               0o600)
        except FileExistsError:
            raise MigrationError('%s holds %s twice.' % (_STREAM, rel))
        self.stats['files'] += 1
        self.stats['bytes'] += info.size
        self._pad = (-info.size) % BLOCK
        if info.size:
            self._state, self._need = 'data', info.size
        else:
            self._close_fd()
            self._state, self._need = ('header', BLOCK)


def extract_stream(fileobj: IO[bytes], staging: str) -> Dict[str, int]:
    """Unpack the tar stream read from ``fileobj`` into the existing private directory ``staging``
    (StreamExtractor's rules). Raises MigrationError; returns ``{'files': n, 'bytes': n}``."""
    extractor = StreamExtractor(staging)
    while True:
        chunk = fileobj.read(CHUNK)
        if not chunk:
            break
        try:
            extractor.write(chunk)
        except BrokenPipeError:
            break
    extractor.close()
    if extractor.returncode:
        raise MigrationError(extractor._error or 'unpacking failed')   # pylint: disable=protected-access
    return extractor.stats
