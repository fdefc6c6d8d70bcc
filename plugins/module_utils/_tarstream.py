# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The sending side of the bundle stream: a bundle directory read as a tar stream, straight into the
caller's buffer, each file hashed as it is read.

Private module_utils file: its API may change without notice. Python 3.8+, standard library only.

``BundleReader.readinto(view)`` fills ``view`` with the next bytes of a GNU tar archive of the bundle
(directories first at each level, names sorted, ``./``-relative like ``tar -C bundle``): no ``tar``
process, no pipe, no copy between the file and the record buffer the channel encrypts and sends.
Only directories and regular files are read (opened ``O_NOFOLLOW``; anything else in the bundle is an
error, as it cannot be part of a checkpoint); the archive carries mode 0600/0700 and no owner names,
which the receiver ignores anyway (``_archive.StreamExtractor``).

With ``hashes`` (a dict), every file sent is recorded as ``hashes[relative path] = (size, hex digest)``
for the manifest, the sha256 computed from the very bytes that are sent: the bundle is read once, not
once to hash and once to send. With ``digest=False`` the files are recorded with their size and a
digest of None, and nothing is hashed: the authenticated stream itself proves that they arrived intact
(the receiver's stamp), and a hash would only cost CPU time while the container is frozen. The hashing is handed out in ``take_work()`` so that the caller can
run it in a second thread while it sends the same buffer (hashlib and ssl both release the GIL on
large buffers); ``hash_work()`` does it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)


class StreamReadError(MtdError):
    """The bundle could not be read as it was being sent (a file vanished, shrank or is not a regular file)."""


def bundle_entries(path: str, late: Optional[str] = None) -> Iterator[Tuple[str, str]]:
    """``('dir', rel)`` and ``('file', rel)`` of the bundle in stream order (``rel`` like ``./criu/x``);
    the top-level file ``late`` is left out (the caller sends it last)."""
    for root, dirs, names in os.walk(path):
        dirs.sort()
        rel_root = os.path.relpath(root, path)
        prefix = './' if rel_root == '.' else './' + rel_root + '/'
        yield 'dir', prefix.rstrip('/') or '.'
        for name in sorted(names):
            if rel_root == '.' and name == late:
                continue
            yield 'file', prefix + name


def tar_header(name: str, kind: str, size: int = 0, mtime: Optional[float] = None) -> bytes:
    """A GNU tar header (with a long-name block when needed) for a directory or a regular file."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if kind == 'dir' else tarfile.REGTYPE
    info.mode = 0o700 if kind == 'dir' else 0o600
    info.size = size if kind == 'file' else 0
    info.mtime = int(mtime if mtime is not None else time.time())
    return info.tobuf(format=tarfile.GNU_FORMAT, encoding='utf-8', errors='surrogateescape')


class BundleReader:
    """The bundle ``path`` as a tar stream (see the module docstring).

    ``late`` is an optional ``(name, wait)`` pair: a top-level file still being written (the manifest);
    it is read last, after ``wait()`` returned (all hashing of the other files is done by then, so
    ``wait`` may use ``hashes``).
    """

    def __init__(self, path: str, late: Optional[Tuple[str, Callable[[], Any]]] = None,
                 hashes: Optional[Dict[str, Tuple[int, Optional[str]]]] = None, digest: bool = True) -> None:
        self.path = path
        self.late = late
        self.hashes = hashes
        self.digest = digest
        self.bytes = 0
        self._entries = bundle_entries(path, late[0] if late else None)
        self._pending = memoryview(b'')
        self._file: Any = None
        self._rel = ''
        self._size = 0
        self._left = 0
        self._hash: Any = None
        self._work: List[Tuple[Any, Any, Optional[str], int]] = []
        self._late_done = late is None
        self._ended = False

    # -- entries ---------------------------------------------------------------------------------

    def _open(self, rel: str) -> None:
        full = os.path.join(self.path, rel[2:])
        try:
            if not stat.S_ISREG(os.lstat(full).st_mode):
                raise StreamReadError('%s in the bundle is not a regular file' % rel[2:])
            # O_NONBLOCK: a FIFO put in place after the lstat must not block the open (and is refused below)
            fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0))
        except OSError as exc:
            raise StreamReadError('the bundle file %s cannot be read: %s' % (rel[2:], exc))
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise StreamReadError('%s in the bundle is not a regular file' % rel[2:])
        self._file = os.fdopen(fd, 'rb', buffering=0)
        self._rel, self._size, self._left = rel[2:], info.st_size, info.st_size
        self._hash = hashlib.sha256() if self.hashes is not None and self.digest else None
        self._pending = memoryview(tar_header(rel, 'file', info.st_size, info.st_mtime))
        if not info.st_size:
            self._close_file()

    def _close_file(self) -> None:
        if self._hash is not None:
            self._work.append((self._hash, None, self._rel, self._size))
        elif self.hashes is not None:
            self.hashes[self._rel] = (self._size, None)   # sent, not hashed (digest=False)
        self._file.close()
        self._file, self._hash = None, None
        pad = (-self._size) % BLOCK
        self._pending = memoryview(bytes(self._pending) + bytes(pad)) if pad else self._pending

    def _next(self) -> bool:
        """Queue the next entry's header; False at the end of the archive."""
        for kind, rel in self._entries:
            if kind == 'dir':
                self._pending = memoryview(tar_header(rel, 'dir'))
            else:
                self._open(rel)
            return True
        if not self._late_done:
            self._late_done = True
            hash_work(self.take_work())   # the late file's writer may use every hash so far
            try:
                self.late[1]()  # type: ignore[index]
            except Exception as exc:  # pylint: disable=broad-exception-caught
                raise StreamReadError(str(exc) or exc.__class__.__name__)
            self._open('./' + self.late[0])  # type: ignore[index]
            return True
        if not self._ended:
            self._ended = True
            self._pending = memoryview(END_OF_ARCHIVE)
            return True
        return False

    # -- the stream ------------------------------------------------------------------------------

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` with the next bytes of the archive; returns how many (0 at its end)."""
        filled = 0
        size = len(view)
        while filled < size:
            if self._pending:
                used = min(len(self._pending), size - filled)
                view[filled:filled + used] = self._pending[:used]
                self._pending = self._pending[used:]
                filled += used
            elif self._file is not None:
                want = min(self._left, size - filled)
                got = self._file.readinto(view[filled:filled + want])
                if not got:
                    raise StreamReadError('the bundle file %s shrank while it was sent (%d of %d bytes)'
                                          % (self._rel, self._size - self._left, self._size))
                if self._hash is not None:
                    self._work.append((self._hash, view[filled:filled + got], None, 0))
                filled += got
                self._left -= got
                if not self._left:
                    self._close_file()
            elif not self._next():
                break
        self.bytes += filled
        return filled

    def take_work(self) -> List[Tuple[Any, Any, Optional[str], int]]:
        """The hashing owed for the bytes read so far (run it with hash_work before the buffer is reused)."""
        work, self._work = self._work, []
        if self.hashes is None:
            return []
        return [item + (self.hashes,) for item in work]   # type: ignore[misc]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def hash_work(work: List[Any]) -> None:
    """Run what take_work() returned: feed the hashers, record finished files' digests."""
    for hasher, data, rel, size, hashes in work:
        if data is not None:
            hasher.update(data)
        else:
            hashes[rel] = (size, hasher.hexdigest())
