# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The seccomp state of a CRIU image set, read and extended: the collection's filter on every restored task.

This is a private module_utils file (leading underscore): its API may change without notice. Python 3.8+,
standard library only. The image set comes from another host and is treated as hostile input: every size
is bounded, nothing is decoded recursively, and anything this file does not understand is refused with a
:class:`CriuImageError` (one sentence) instead of being passed on.

The image format (CRIU 3.10 to 4.x; facts from CRIU's ``criu/include/magic.h``, ``criu/image.c``,
``criu/protobuf.c``, ``images/{inventory,pstree,core,creds,seccomp}.proto``, ``criu/seccomp.c``,
``criu/cr-restore.c`` and ``criu/pie/restorer.c``):

- Every image file starts with the u32 ``IMG_COMMON_MAGIC`` and then the file's own u32 magic, except
  ``inventory.img``, which starts with ``INVENTORY_MAGIC`` only; then entries, each a u32 size followed
  by that many bytes of one protobuf (proto2) message. The u32 values are in the machine's byte order.
- ``inventory.img`` holds one ``inventory_entry``; its ``img_version`` (field 1) is 2 ("v1.1", the only
  version CRIU writes since 2013; version 1 had no common magic). Anything else is refused.
- ``pstree.img``: one ``pstree_entry`` per process: ``pid`` (1) and ``threads`` (5, the thread ids, the
  leader's included). ``core-<tid>.img`` exists for every thread: one ``core_entry`` with ``mtype`` (1),
  ``tc`` (3, task_core_entry, leaders only: ``task_state`` 1, the deprecated per-task seccomp fields 11
  and 12 of images older than CRIU 3.10) and ``thread_core`` (5): ``seccomp_mode`` (11: 0 disabled,
  1 strict, 2 filter), ``seccomp_filter`` (12, an index into seccomp.img; absent means 0, as CRIU reads
  it) and ``creds`` (10, creds_entry, whose ``no_new_privs`` is field 18).
- ``seccomp.img`` holds one ``seccomp_entry``: ``seccomp_filters`` (1, repeated ``seccomp_filter``:
  ``filter`` (1, bytes of struct sock_filter), ``prev`` (2), ``flags`` (3, SECCOMP_FILTER_FLAG_*)).

The direction of a chain, exactly: a thread's ``seccomp_filter`` names the **oldest** filter (the first
one installed) and each ``prev`` names the next **newer** one; the newest has no ``prev``. CRIU's dump
(``dump_seccomp_filters``) writes the chain newest-first and links each older entry to the one before it,
and its restore (``seccomp_prepare_threads`` + ``restore_seccomp_filter``) installs the entries in the
order the links give, oldest first. Adding a filter "on top" of a chain is therefore: append the new
entry (no ``prev``) and point the chain's last entry (its newest, the one without ``prev``) at it.
No existing filter is dropped, reordered or changed in content; only that last entry gains a ``prev``.

TSYNC: when all threads of a process had identical chains, CRIU's dump keeps the chain on the leader
only, with SECCOMP_FILTER_FLAG_TSYNC on every entry, and marks the other threads disabled; the restore
installs it once on the leader, which synchronises every thread. Such processes (and processes with no
filter on any thread) get the new filter the same way: on the leader's chain, with TSYNC. In any other
layout every thread gets the new filter on its own chain (a thread without a filter gets a chain of one).

no_new_privs: CRIU's restorer installs the filters while it is still privileged (before ``restore_creds``)
and then sets ``PR_SET_NO_NEW_PRIVS`` only for threads whose creds say so; it never clears the flag. A
filter a task installs itself (without CAP_SYS_ADMIN) requires no_new_privs, and no_new_privs is what stops
a set-user-ID program from gaining privileges under a filter it did not expect; :func:`add_filter` sets it
on every thread's creds by default (the process-mode launcher's ``install_filter`` does the same), so the
restored task is in the state it would be in had it installed the filter itself. ``no_new_privs=False``
leaves the creds as dumped (a set flag is never cleared): the filter holds either way, because a seccomp
filter is inherited across fork, clone and execve and cannot be removed.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import struct
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._files import atomic_write
from ansible_collections.mtd.containers.plugins.module_utils._seccomp import (
    encode_program, normalise_machine, parse_status_seccomp, process_filter)


class CriuImageError(MtdError):
    """A CRIU image set (or a task before the dump) this collection cannot read or extend safely."""


IMG_COMMON_MAGIC = 0x54564319
INVENTORY_MAGIC = 0x58313116
PSTREE_MAGIC = 0x50273030
CORE_MAGIC = 0x55053847
SECCOMP_MAGIC = 0x64413049
CGROUP_MAGIC = 0x59383330
MNTS_MAGIC = 0x55563928
IMAGES_V1_1 = 2

SECCOMP_MODE_DISABLED = 0
SECCOMP_MODE_STRICT = 1
SECCOMP_MODE_FILTER = 2
SECCOMP_FILTER_FLAG_TSYNC = 1
TASK_ALIVE = 1
TASK_DEAD = 2
TASK_STOPPED = 3
# core_entry.mtype per machine (images/core.proto: X86_64 = 1, AARCH64 = 3).
MACHINE_MTYPE = {'x86_64': 1, 'aarch64': 3}

# Kernel limits (include/linux/filter.h, kernel/seccomp.c): instructions per filter, and per chain: a
# new filter's length plus (length + 4) for every filter already installed.
BPF_MAXINSNS = 4096
MAX_INSNS_PER_PATH = 32768
SOCK_FILTER_SIZE = 8

# Bounds for hostile input.
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 1 << 20
MAX_PID = 4194304  # PID_MAX_LIMIT
MAX_VARINT_BYTES = 10
U32 = 0xffffffff

# CRIU versions whose image layout this file knows: per-thread seccomp came in 3.10; 4.x is current.
CRIU_MIN_VERSION = (3, 10)
CRIU_MAX_MAJOR = 4

WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_BYTES = 2
WIRE_FIXED32 = 5


# ---------------------------------------------------------------------------------------------
# protobuf wire format, flat: a message is a list of fields that keep their original bytes


class Field(NamedTuple):
    """One field as it was on the wire: number, wire type, value (int, or bytes for WIRE_BYTES) and the
    exact bytes (key included) it was read from."""
    number: int
    wire: int
    value: Any
    raw: bytes


def read_varint(data: bytes, pos: int, end: int, what: str) -> Tuple[int, int]:
    """(value, next position) of the base-128 varint at ``pos``; refuses overlong or cut varints."""
    value = 0
    for index in range(MAX_VARINT_BYTES):
        if pos >= end:
            raise CriuImageError('The %s ends inside a protobuf varint (a truncated or malformed image).' % what)
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7f) << (7 * index)
        if not byte & 0x80:
            if value >> 64:
                break
            return value, pos
    raise CriuImageError('The %s holds a protobuf varint longer than 64 bits (a malformed image).' % what)


def encode_varint(value: int) -> bytes:
    """The shortest base-128 encoding of a non-negative ``value`` below 2**64."""
    if value < 0 or value >> 64:
        raise CriuImageError('Cannot encode %r as a protobuf varint.' % (value,))
    out = bytearray()
    while True:
        byte = value & 0x7f
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_fields(data: bytes, what: str) -> List[Field]:
    """The fields of one message, in wire order, each with its original bytes (unknown ones included).

    Groups (wire types 3 and 4, unused by CRIU) and undefined wire types are refused."""
    fields: List[Field] = []
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        value: Any
        key, pos = read_varint(data, pos, end, what)
        number, wire = key >> 3, key & 7
        if number == 0 or number > 0x1fffffff:
            raise CriuImageError('The %s holds a protobuf field number %d (a malformed image).' % (what, number))
        if wire == WIRE_VARINT:
            value, pos = read_varint(data, pos, end, what)
        elif wire in (WIRE_FIXED64, WIRE_FIXED32):
            size = 8 if wire == WIRE_FIXED64 else 4
            if pos + size > end:
                raise CriuImageError('The %s ends inside a fixed-size protobuf field (a truncated image).' % what)
            value = int.from_bytes(data[pos:pos + size], 'little')
            pos += size
        elif wire == WIRE_BYTES:
            size, pos = read_varint(data, pos, end, what)
            if size > end - pos:
                raise CriuImageError('The %s holds a protobuf field longer than its message (a truncated '
                                     'or malformed image).' % what)
            value = data[pos:pos + size]
            pos += size
        else:
            raise CriuImageError('The %s uses protobuf wire type %d, which CRIU images never use (a '
                                 'malformed image).' % (what, wire))
        fields.append(Field(number, wire, value, data[start:pos]))
    return fields


def make_field(number: int, wire: int, value: Any) -> Field:
    """A new field in canonical encoding (varint or bytes)."""
    key = encode_varint((number << 3) | wire)
    if wire == WIRE_VARINT:
        raw = key + encode_varint(value)
    elif wire == WIRE_BYTES:
        raw = key + encode_varint(len(value)) + bytes(value)
    else:  # pragma: no cover - only varint and bytes fields are ever written
        raise CriuImageError('Cannot encode protobuf wire type %d.' % wire)
    return Field(number, wire, value, raw)


class Message:
    """A decoded message: its fields in order. Unchanged fields are written back byte for byte."""

    def __init__(self, data: bytes, what: str):
        self.what = what
        self.fields = decode_fields(data, what)

    def _only(self, number: int, wire: int) -> Optional[Field]:
        found = [field for field in self.fields if field.number == number]
        if len(found) > 1:
            raise CriuImageError('The %s holds field %d %d times where it may hold it once (a malformed '
                                 'image).' % (self.what, number, len(found)))
        if found and found[0].wire != wire:
            raise CriuImageError('The %s holds field %d with wire type %d instead of %d (a malformed '
                                 'image).' % (self.what, number, found[0].wire, wire))
        return found[0] if found else None

    def uint(self, number: int, limit: int = U32) -> Optional[int]:
        """The value of a singular varint field (None when absent); refuses values above ``limit``."""
        field = self._only(number, WIRE_VARINT)
        if field is None:
            return None
        if field.value > limit:
            raise CriuImageError('The %s holds %d in field %d, more than %d (a malformed image).'
                                 % (self.what, field.value, number, limit))
        return int(field.value)

    def blob(self, number: int) -> Optional[bytes]:
        """The bytes of a singular length-delimited field (an embedded message or bytes), or None."""
        field = self._only(number, WIRE_BYTES)
        return None if field is None else bytes(field.value)

    def repeated(self, number: int, wire: int) -> List[Any]:
        """The values of a repeated field: bytes for WIRE_BYTES, ints for varints (packed or not)."""
        values: List[Any] = []
        for field in self.fields:
            if field.number != number:
                continue
            if field.wire == wire:
                values.append(field.value)
            elif wire == WIRE_VARINT and field.wire == WIRE_BYTES:
                pos, data = 0, field.value
                while pos < len(data):
                    value, pos = read_varint(data, pos, len(data), self.what)
                    values.append(value)
            else:
                raise CriuImageError('The %s holds field %d with wire type %d (a malformed image).'
                                     % (self.what, number, field.wire))
        return values

    def put(self, number: int, wire: int, value: Any) -> None:
        """Set a singular field: replaced where it was, else appended."""
        new = make_field(number, wire, value)
        for index, field in enumerate(self.fields):
            if field.number == number:
                self._only(number, wire)
                self.fields[index] = new
                return
        self.fields.append(new)

    def append(self, number: int, wire: int, value: Any) -> None:
        """Add one element of a repeated field at the end."""
        self.fields.append(make_field(number, wire, value))

    def encode(self) -> bytes:
        return b''.join(field.raw for field in self.fields)


# ---------------------------------------------------------------------------------------------
# Image files


def split_image(data: bytes, magic: int, name: str) -> List[bytes]:
    """The entries (protobuf payloads) of one image file; refuses a wrong magic or a cut entry."""
    head = [magic] if magic == INVENTORY_MAGIC else [IMG_COMMON_MAGIC, magic]
    if len(data) < 4 * len(head):
        raise CriuImageError('The CRIU image %s is shorter than its magic numbers (a truncated image).' % name)
    found = list(struct.unpack_from('=%dI' % len(head), data, 0))
    if found != head:
        raise CriuImageError('The CRIU image %s starts with magic %s, not %s: not an image of a CRIU '
                             'version this collection knows.' % (name, _hex(found), _hex(head)))
    entries: List[bytes] = []
    pos = 4 * len(head)
    while pos < len(data):
        if len(data) - pos < 4:
            raise CriuImageError('The CRIU image %s ends inside an entry size (a truncated image).' % name)
        size = struct.unpack_from('=I', data, pos)[0]
        pos += 4
        if size > len(data) - pos:
            raise CriuImageError('The CRIU image %s has an entry of %d bytes where %d remain (a truncated '
                                 'image).' % (name, size, len(data) - pos))
        if len(entries) >= MAX_ENTRIES:
            raise CriuImageError('The CRIU image %s has more than %d entries.' % (name, MAX_ENTRIES))
        entries.append(data[pos:pos + size])
        pos += size
    return entries


def join_image(magic: int, entries: Sequence[bytes]) -> bytes:
    """The bytes of an image file: its magic numbers, then each entry as u32 size + payload."""
    head = [magic] if magic == INVENTORY_MAGIC else [IMG_COMMON_MAGIC, magic]
    parts = [struct.pack('=%dI' % len(head), *head)]
    for entry in entries:
        parts.append(struct.pack('=I', len(entry)))
        parts.append(bytes(entry))
    return b''.join(parts)


def _hex(values: Sequence[int]) -> str:
    return '/'.join('0x%08x' % value for value in values)


def read_image_file(path: str, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of a regular file (never through a symbolic link), at most ``limit`` of them."""
    name = os.path.basename(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0))
    except FileNotFoundError:
        raise CriuImageError('The CRIU image set lacks %s.' % name)
    except OSError as exc:
        raise CriuImageError('Cannot open the CRIU image %s (%s; a symbolic link is refused).'
                             % (name, exc.strerror))
    with os.fdopen(fd, 'rb') as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CriuImageError('The CRIU image %s is not a regular file.' % name)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise CriuImageError('The CRIU image %s is larger than %d bytes.' % (name, limit))
    return data


def _one_entry(entries: List[bytes], name: str) -> bytes:
    if len(entries) != 1:
        raise CriuImageError('The CRIU image %s holds %d entries where CRIU writes one.' % (name, len(entries)))
    return entries[0]


# ---------------------------------------------------------------------------------------------
# The image set's cgroups (cgroup.img: CgroupEntry, field 2 = controllers, each with field 1 = names)


def cgroup_names(images_dir: str) -> Optional[List[str]]:
    """The controller names of the dump's cgroup.img (``cpu,cpuacct``, ``name=systemd``, ``""`` ...), or
    None when the image set has no cgroup.img."""
    path = os.path.join(images_dir, 'cgroup.img')
    if not os.path.lexists(path):
        return None
    entry = _one_entry(split_image(read_image_file(path), CGROUP_MAGIC, 'cgroup.img'), 'cgroup.img')
    names: List[str] = []
    for controller in Message(entry, 'cgroup entry').fields:
        if controller.number != 2 or controller.wire != WIRE_BYTES:
            continue
        for field in decode_fields(controller.value, 'cgroup controller entry'):
            if field.number == 1 and field.wire == WIRE_BYTES:
                names.append(bytes(field.value).decode('utf-8', 'replace'))
    return names


def images_cgroup_version(names: Sequence[str]) -> int:
    """1 when the dump was made on cgroup v1 (it names a v1 controller hierarchy), else 2. Pure.

    A named hierarchy (``name=systemd``) and the unified one (``""``, ``unified``) exist on both kinds of host.
    """
    for name in names:
        for part in name.split(','):
            if part and part != 'unified' and not part.startswith('name='):
                return 1
    return 2


# ---------------------------------------------------------------------------------------------
# The image set's external mounts (mountpoints-<id>.img: MntEntry, 7 = mountpoint, 18 = ext_key)


def mountpoints_images(images_dir: str) -> List[Tuple[str, str, List[bytes]]]:
    """(file name, path, entries) of every mountpoints-<id>.img of the set (one per mount namespace), in name
    order. Refuses a malformed image."""
    found = []
    for entry_name in sorted(os.listdir(images_dir)):
        if entry_name.startswith('mountpoints-') and entry_name.endswith('.img'):
            path = os.path.join(images_dir, entry_name)
            found.append((entry_name, path, split_image(read_image_file(path), MNTS_MAGIC, entry_name)))
    return found


def external_mounts(images_dir: str) -> List[Tuple[str, str]]:
    """(mountpoint, key) of every mount the dump recorded as external (a key the restore must map), in the
    order of the mountpoints images. Refuses a malformed image."""
    found: List[Tuple[str, str]] = []
    for entry_name, _path, entries in mountpoints_images(images_dir):
        for entry in entries:
            mountpoint = key = None
            for field in decode_fields(entry, 'mount entry'):
                if field.wire != WIRE_BYTES:
                    continue
                if field.number == 7:
                    mountpoint = bytes(field.value).decode('utf-8', 'replace')
                elif field.number == 18:
                    key = bytes(field.value).decode('utf-8', 'replace')
            if key is not None:
                if mountpoint is None:
                    raise CriuImageError('The CRIU image %s has an external mount without a mountpoint.' % entry_name)
                found.append((mountpoint, key))
    return found


# Mounts on kernel files the target's kernel does not have (mountpoints-<id>.img: MntEntry, 1 = fstype,
# 2 = mnt_id, 4 = parent_mnt_id, 6 = root, 7 = mountpoint)

FSTYPE_PROC = 1
FSTYPE_SYSFS = 2
KERNEL_FS = {FSTYPE_PROC: '/proc', FSTYPE_SYSFS: '/sys'}


class MountEntry(NamedTuple):
    mnt_id: int
    parent: int
    fstype: int
    root: str          # the mounted directory or file inside its filesystem (/ for a whole procfs)
    mountpoint: str    # from the namespace's root


def _plain(text: str) -> str:
    """``/a/b`` from CRIU's ``./a/b``, ``a/b`` or ``/a/b``."""
    return '/' + text.lstrip('.').lstrip('/')


def _mount_entry(entry: bytes, name: str) -> MountEntry:
    message = Message(entry, 'mount entry of %s' % name)
    point, root = message.blob(7), message.blob(6)
    mnt_id, parent, fstype = message.uint(2), message.uint(4), message.uint(1)
    if point is None or root is None or mnt_id is None or parent is None or fstype is None:
        raise CriuImageError('The CRIU image %s has a mount entry without its id, parent, type, root or '
                             'mountpoint (a malformed image).' % name)
    return MountEntry(mnt_id, parent, fstype, _plain(root.decode('utf-8', 'replace')),
                      _plain(point.decode('utf-8', 'replace')))


def absent_kernel_mounts(mounts: Sequence[MountEntry], exists: Any) -> List[MountEntry]:
    """The mounts of one mount namespace that are mounted on a procfs or sysfs mount, at a file which ``exists``
    (a path of this host's /proc or /sys -> bool) says this kernel does not have, and that have no mounts below
    them.

    Docker masks kernel files (``/proc/sysrq-trigger`` read-only, ``/proc/kcore`` under /dev/null, ...) where
    the source's kernel has them; CRIU restores every mount on its mountpoint and fails at one this kernel
    lacks ("Can't stat mountpoint"). Such a mount hides a file that is not there: leaving it out takes
    nothing from the restored container. A mountpoint that is not a plain path (``..``, ``//``) is never chosen.
    """
    # each procfs or sysfs mount: its id -> (its mountpoint, the directory of this host it shows; a bind of
    # /proc/sys at /proc/sys shows /proc/sys)
    kernel = dict((m.mnt_id, (m.mountpoint, (KERNEL_FS[m.fstype] + m.root).rstrip('/'))) for m in mounts
                  if m.fstype in KERNEL_FS and posixpath.normpath(m.mountpoint) == m.mountpoint
                  and posixpath.normpath(m.root) == m.root)
    parents = set(m.parent for m in mounts)
    found = []
    for mount in mounts:
        point = mount.mountpoint
        if posixpath.normpath(point) != point or mount.mnt_id in parents or mount.parent not in kernel:
            continue
        # mounted on a procfs or sysfs mount (not on a tmpfs that sits on one, as /sys/fs/cgroup/<controller>)
        base, shown = kernel[mount.parent]
        prefix = base.rstrip('/')
        if point.startswith(prefix + '/') and not exists(shown + point[len(prefix):]):
            found.append(mount)
    return found


def drop_absent_kernel_mounts(images_dir: str, exists: Any = os.path.lexists) -> List[str]:
    """Remove from the mountpoints images the mounts :func:`absent_kernel_mounts` finds; the mountpoints
    removed (each file replaced atomically; none when nothing is absent). Refuses a malformed image before
    anything is written."""
    plans = []
    for entry_name, path, entries in mountpoints_images(images_dir):
        mounts = [_mount_entry(entry, entry_name) for entry in entries]
        drop = set(m.mnt_id for m in absent_kernel_mounts(mounts, exists))
        if drop:
            kept = [entry for entry, mount in zip(entries, mounts) if mount.mnt_id not in drop]
            plans.append((path, kept, [m.mountpoint for m in mounts if m.mnt_id in drop]))
    dropped: List[str] = []
    for path, kept, points in plans:
        atomic_write(path, join_image(MNTS_MAGIC, kept), mode=_mode_of(path))
        dropped.extend(points)
    return dropped


# ---------------------------------------------------------------------------------------------
# The image set's seccomp state


class Thread(NamedTuple):
    tid: int
    mode: int
    start: int  # the oldest filter's index (meaningful in mode 2 only)


class Task(NamedTuple):
    pid: int
    alive: bool
    threads: List[Thread]


class FilterEntry(NamedTuple):
    length: int  # bytes of struct sock_filter
    prev: Optional[int]  # the next newer filter, None for the newest
    flags: int


class ImageSet:
    """What :func:`read_image_set` found: tasks, filters and the decoded messages to change."""

    def __init__(self, images_dir: str):
        self.images_dir = images_dir
        self.tasks: List[Task] = []
        self.filters: List[FilterEntry] = []
        self.seccomp_entry: Optional[Message] = None
        self.filter_messages: List[Message] = []
        self.cores: Dict[int, Tuple[Message, Message]] = {}  # tid -> (core_entry, thread_core)


def check_inventory(images_dir: str) -> int:
    """The image-format version of the set; refuses every version but 2 (CRIU's v1.1)."""
    entries = split_image(read_image_file(os.path.join(images_dir, 'inventory.img')), INVENTORY_MAGIC,
                          'inventory.img')
    version = Message(_one_entry(entries, 'inventory.img'), 'inventory.img entry').uint(1)
    if version != IMAGES_V1_1:
        raise CriuImageError('The CRIU image set has image-format version %s; only version %d (CRIU 1.x to '
                             '4.x) is known: refusing to change it.' % (version, IMAGES_V1_1))
    return version


def read_pstree(images_dir: str) -> List[Tuple[int, List[int]]]:
    """(pid, thread ids) for every process of ``pstree.img``; ids bounded, unique, leader among threads.

    A zombie is the exception: CRIU's dump never gives a dead task's one thread its id in the namespace
    (``dump_task_threads`` runs for live tasks only), so its entry may list a stale id. A process whose one
    thread is not itself is returned with the thread list ``[]``; :func:`read_image_set` accepts it only when
    its core says it is dead."""
    entries = split_image(read_image_file(os.path.join(images_dir, 'pstree.img')), PSTREE_MAGIC, 'pstree.img')
    if not entries:
        raise CriuImageError('The CRIU image pstree.img holds no process.')
    seen = set()
    result: List[Tuple[int, List[int]]] = []
    for payload in entries:
        message = Message(payload, 'pstree.img entry')
        pid = message.uint(1)
        threads = message.repeated(5, WIRE_VARINT)
        if not pid or pid > MAX_PID or not threads:
            raise CriuImageError('The CRIU image pstree.img has a process with pid %r and %d threads (a '
                                 'malformed image).' % (pid, len(threads)))
        if pid not in threads:
            if len(threads) != 1:
                raise CriuImageError('The CRIU image pstree.img lists process %d without its own thread.' % pid)
            if pid in seen:
                raise CriuImageError('The CRIU image pstree.img lists thread id %d twice or out of range.' % pid)
            seen.add(pid)
            result.append((pid, []))
            continue
        for tid in threads:
            if not 0 < tid <= MAX_PID or tid in seen:
                raise CriuImageError('The CRIU image pstree.img lists thread id %d twice or out of range.' % tid)
            seen.add(tid)
        result.append((pid, [int(tid) for tid in threads]))
    return result


def _read_core(images_dir: str, tid: int, leader: bool, mtype: Optional[int]) -> Tuple[Message, Message, bool]:
    """(core_entry, thread_core, alive) of one thread's core-<tid>.img."""
    name = 'core-%d.img' % tid
    core = Message(_one_entry(split_image(read_image_file(os.path.join(images_dir, name)), CORE_MAGIC, name),
                              name), name)
    if leader:
        blob = core.blob(3)
        if blob is None:
            raise CriuImageError('The CRIU image %s of a process leader has no task core.' % name)
        task_core = Message(blob, name + ' task core')
        state = task_core.uint(1)
        if state not in (TASK_ALIVE, TASK_DEAD, TASK_STOPPED):
            raise CriuImageError('The CRIU image %s has task state %r, unknown to this collection.' % (name, state))
        if task_core.uint(11) is not None or task_core.uint(12) is not None:
            raise CriuImageError('The CRIU image %s carries the per-task seccomp fields of CRIU before 3.10: '
                                 'an image format this collection does not change.' % name)
        if state == TASK_DEAD:  # a zombie: nothing of it runs after the restore
            return core, Message(b'', name), False
    blob = core.blob(5)
    if blob is None:
        raise CriuImageError('The CRIU image %s has no thread core (an image format this collection does '
                             'not know).' % name)
    if mtype is not None and core.uint(1) != mtype:
        raise CriuImageError('The CRIU image %s is of machine type %r, not the %d of this machine: the '
                             'filter would not match its architecture.' % (name, core.uint(1), mtype))
    return core, Message(blob, name + ' thread core'), True


def _thread_state(thread_core: Message, tid: int) -> Thread:
    mode = thread_core.uint(11)
    mode = SECCOMP_MODE_DISABLED if mode is None else mode
    if mode not in (SECCOMP_MODE_DISABLED, SECCOMP_MODE_STRICT, SECCOMP_MODE_FILTER):
        raise CriuImageError('Thread %d of the CRIU image set has seccomp mode %d, unknown to this '
                             'collection.' % (tid, mode))
    start = thread_core.uint(12)
    return Thread(tid, mode, 0 if start is None else start)


def read_seccomp(images_dir: str) -> Tuple[Optional[Message], List[Message]]:
    """(seccomp_entry, its filters) of seccomp.img; (None, []) when the set has no seccomp.img."""
    path = os.path.join(images_dir, 'seccomp.img')
    if not os.path.lexists(path):
        return None, []
    entries = split_image(read_image_file(path), SECCOMP_MAGIC, 'seccomp.img')
    if not entries:
        return None, []
    entry = Message(_one_entry(entries, 'seccomp.img'), 'seccomp.img entry')
    filters = [Message(blob, 'seccomp.img filter %d' % index)
               for index, blob in enumerate(entry.repeated(1, WIRE_BYTES))]
    return entry, filters


def _filter_entry(message: Message, index: int) -> FilterEntry:
    program = message.blob(1)
    if program is None or not program or len(program) % SOCK_FILTER_SIZE \
            or len(program) > BPF_MAXINSNS * SOCK_FILTER_SIZE:
        raise CriuImageError('Filter %d of the CRIU image seccomp.img has %s bytes, not a BPF program the '
                             'kernel accepts.' % (index, 'no' if program is None else len(program)))
    return FilterEntry(len(program), message.uint(2), message.uint(3) or 0)


def read_image_set(images_dir: str, machine: Optional[str] = None) -> ImageSet:
    """Read the seccomp state of the image set in ``images_dir`` (see the module docstring).

    ``machine``: the machine the set will be restored on (``uname -m``; default: this one): every live
    thread's core must be of that machine type. Raises CriuImageError for anything malformed or unknown."""
    mtype = MACHINE_MTYPE[normalise_machine(machine if machine is not None else os.uname().machine)]
    check_inventory(images_dir)
    image_set = ImageSet(images_dir)
    image_set.seccomp_entry, image_set.filter_messages = read_seccomp(images_dir)
    image_set.filters = [_filter_entry(message, index) for index, message in enumerate(image_set.filter_messages)]
    for pid, tids in read_pstree(images_dir):
        threads = []
        alive = True
        if not tids:   # a zombie's entry (see read_pstree): only a dead task may be listed so
            if _read_core(images_dir, pid, True, mtype)[2]:
                raise CriuImageError('The CRIU image pstree.img lists process %d without its own thread.' % pid)
            image_set.tasks.append(Task(pid, False, []))
            continue
        for tid in [pid] + [tid for tid in tids if tid != pid]:
            core, thread_core, thread_alive = _read_core(images_dir, tid, tid == pid, mtype)
            alive = alive and thread_alive
            if not alive:
                break
            image_set.cores[tid] = (core, thread_core)
            threads.append(_thread_state(thread_core, tid))
        image_set.tasks.append(Task(pid, alive, threads))
    return image_set


# ---------------------------------------------------------------------------------------------
# The plan (pure): which entries to add, which links to set, which threads to point elsewhere


class Chain(NamedTuple):
    length: int  # number of filters
    insns: int  # sum of (instructions + 4), the kernel's per-path measure
    last: int  # index of the newest filter
    tsync: bool  # any filter of the chain carries SECCOMP_FILTER_FLAG_TSYNC


def chains(filters: Sequence[FilterEntry]) -> List[Chain]:
    """The chain that starts at every filter index; refuses a link out of range or a loop. Linear time."""
    memo: List[Optional[Chain]] = [None] * len(filters)
    for start in range(len(filters)):
        path: List[int] = []
        on_path = set()
        index: Optional[int] = start
        while index is not None and memo[index] is None:
            if index in on_path:
                raise CriuImageError('The filters of the CRIU image seccomp.img form a loop at %d (a malformed '
                                     'image).' % index)
            on_path.add(index)
            path.append(index)
            index = filters[index].prev
            if index is not None and index >= len(filters):
                raise CriuImageError('A filter of the CRIU image seccomp.img links to filter %d of %d (a '
                                     'malformed image).' % (index, len(filters)))
        following = memo[index] if index is not None else None
        for item in reversed(path):
            entry = filters[item]
            insns = entry.length // SOCK_FILTER_SIZE + 4
            if following is None:
                following = Chain(1, insns, item, bool(entry.flags & SECCOMP_FILTER_FLAG_TSYNC))
            else:
                following = Chain(following.length + 1, following.insns + insns, following.last,
                                  following.tsync or bool(entry.flags & SECCOMP_FILTER_FLAG_TSYNC))
            memo[item] = following
    return [chain for chain in memo if chain is not None]


class Plan(NamedTuple):
    new_flags: List[int]  # flags of each new filter (appended after the existing ones, in this order)
    links: Dict[int, int]  # existing newest filter -> new filter (position in new_flags)
    starts: Dict[int, int]  # tid -> new filter (position in new_flags) for threads that had no filter
    summary: List[Dict[str, Any]]


def _thread_chain(thread: Thread, all_chains: Sequence[Chain]) -> Optional[Chain]:
    if thread.mode != SECCOMP_MODE_FILTER:
        return None
    if thread.start >= len(all_chains):
        raise CriuImageError('Thread %d of the CRIU image set points at seccomp filter %d of %d (a malformed '
                             'image).' % (thread.tid, thread.start, len(all_chains)))
    return all_chains[thread.start]


def _process_form(task: Task, all_chains: Sequence[Chain]) -> bool:
    """True when the process gets the filter once, on its leader with TSYNC (see the module docstring)."""
    leader = _thread_chain(task.threads[0], all_chains)
    others = [thread for thread in task.threads[1:] if thread.mode != SECCOMP_MODE_DISABLED]
    if leader is not None and leader.tsync:
        if others:
            raise CriuImageError('Process %d of the CRIU image set has a TSYNC filter chain on its leader and '
                                 'its own filters on thread %d: a layout CRIU does not write.'
                                 % (task.pid, others[0].tid))
        return True
    return leader is None and not others


def plan_injection(tasks: Sequence[Task], filters: Sequence[FilterEntry], program_length: int) -> Plan:
    """Where one new filter of ``program_length`` bytes goes so that every live thread runs under it last.

    Refuses strict mode (a strict task cannot take a filter) and a chain the kernel would refuse once
    the filter is added (more than MAX_INSNS_PER_PATH)."""
    all_chains = chains(filters)
    new_flags: List[int] = []
    links: Dict[int, int] = {}
    link_flags: Dict[int, int] = {}
    starts: Dict[int, int] = {}
    fresh: Dict[int, int] = {}  # flags -> the new filter that threads without a filter share
    summary = []
    added_insns = program_length // SOCK_FILTER_SIZE  # the kernel: new length + sum(length + 4) below it
    for task in tasks:
        if not task.alive:
            summary.append({'pid': task.pid, 'alive': False, 'threads': []})
            continue
        strict = [thread.tid for thread in task.threads if thread.mode == SECCOMP_MODE_STRICT]
        if strict:
            raise CriuImageError('Thread %d of the CRIU image set is in seccomp strict mode, which cannot take '
                                 'a filter: refusing to restore it confined.' % strict[0])
        tsync = _process_form(task, all_chains)
        leader = _thread_chain(task.threads[0], all_chains)
        targets = set(thread.tid for thread in (task.threads[:1] if tsync else task.threads))
        flags = SECCOMP_FILTER_FLAG_TSYNC if tsync else 0
        rows = []
        for thread in task.threads:
            chain = _thread_chain(thread, all_chains)
            effective = leader if (tsync and thread is not task.threads[0]) else chain
            before = effective.length if effective else 0
            if chain is not None and chain.insns + added_insns > MAX_INSNS_PER_PATH:
                raise CriuImageError('Thread %d of the CRIU image set has filters of %d instructions; with the '
                                     'one added the kernel limit of %d would be passed.'
                                     % (thread.tid, chain.insns, MAX_INSNS_PER_PATH))
            if thread.tid in targets:
                if chain is None:
                    if flags not in fresh:
                        fresh[flags] = len(new_flags)
                        new_flags.append(flags)
                    starts[thread.tid] = fresh[flags]
                elif chain.last not in links:
                    links[chain.last] = len(new_flags)
                    link_flags[chain.last] = flags
                    new_flags.append(flags)
                elif link_flags[chain.last] != flags:
                    raise CriuImageError('Filter %d of the CRIU image seccomp.img ends chains of TSYNC and non-TSYNC '
                                         'processes alike: a layout CRIU does not write.' % chain.last)
            rows.append({'tid': thread.tid, 'mode_before': thread.mode, 'filters_before': before,
                         'mode_after': SECCOMP_MODE_FILTER, 'filters_after': before + 1})
        summary.append({'pid': task.pid, 'alive': True, 'tsync': tsync, 'threads': rows})
    return Plan(new_flags, links, starts, summary)


# ---------------------------------------------------------------------------------------------
# Public entry points


def collection_program(machine: Optional[str] = None) -> bytes:
    """The collection's process filter for ``machine`` (``uname -m``; default: this one) as the bytes of a
    struct sock_filter array: the same program confine's process mode installs (mount family denied)."""
    return encode_program(process_filter(machine))


def parse_criu_version(text: str) -> Tuple[int, int, int]:
    """(major, minor, sublevel) from ``criu --version`` output (``Version: 4.1.1``) or a bare ``4.1``."""
    match = re.search(r'(?:Version:\s*)?(\d+)\.(\d+)(?:\.(\d+))?', text or '')
    if not match:
        raise CriuImageError('Cannot read a CRIU version from %r.' % ((text or '')[:80],))
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def precheck(criu_version: str, statuses: Mapping[int, str], machine: Optional[str] = None) -> Dict[str, Any]:
    """Refuse, before the freeze, what :func:`add_filter` could not do for the tasks about to be dumped.

    ``criu_version``: ``criu --version`` output of the host that dumps (and of the one that restores);
    ``statuses``: thread id -> text of /proc/<pid>/task/<tid>/status for every thread of the container
    (:func:`task_statuses`); ``machine``: the restoring host's ``uname -m``. Pure. Returns
    ``{'criu_version', 'threads', 'filtered', 'unfiltered', 'machine'}``; raises CriuImageError for an
    unknown CRIU version, a thread in strict mode, or a status without seccomp fields."""
    version = parse_criu_version(criu_version)
    if version[:2] < CRIU_MIN_VERSION or version[0] > CRIU_MAX_MAJOR:
        raise CriuImageError('CRIU %d.%d.%d writes an image format this collection does not know (it knows '
                             '3.10 to %d.x): refusing to add a seccomp filter to its images.'
                             % (version + (CRIU_MAX_MAJOR,)))
    machine = normalise_machine(machine if machine is not None else os.uname().machine)
    if not statuses:
        raise CriuImageError('No task status was given to check before the dump.')
    counts = {SECCOMP_MODE_DISABLED: 0, SECCOMP_MODE_FILTER: 0}
    for tid in sorted(statuses):
        mode = parse_status_seccomp(statuses[tid])['mode']
        if mode == SECCOMP_MODE_STRICT:
            raise CriuImageError('Thread %d is in seccomp strict mode, which cannot take a filter: it cannot '
                                 'be restored confined.' % tid)
        if mode not in counts:
            raise CriuImageError('Thread %d has no known seccomp mode in its status (%r): the kernel must '
                                 'have CONFIG_SECCOMP.' % (tid, mode))
        counts[mode] += 1
    return {'criu_version': '%d.%d.%d' % version, 'threads': len(statuses), 'machine': machine,
            'filtered': counts[SECCOMP_MODE_FILTER], 'unfiltered': counts[SECCOMP_MODE_DISABLED]}


def task_statuses(root_pid: int, proc: str = '/proc', limit: int = 65536) -> Dict[int, str]:
    """thread id -> /proc/<pid>/task/<tid>/status text for ``root_pid`` and all its descendants.

    Reads ``task/<tid>/children`` (CONFIG_PROC_CHILDREN); at most ``limit`` threads. A task that ends
    while it is read is left out."""
    statuses: Dict[int, str] = {}
    pending = [root_pid]
    seen = set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        base = os.path.join(proc, str(pid), 'task')
        try:
            tids = sorted(int(name) for name in os.listdir(base) if name.isdigit())
        except OSError:
            continue
        for tid in tids:
            if len(statuses) >= limit:
                raise CriuImageError('Process %d has more than %d threads.' % (root_pid, limit))
            try:
                with open(os.path.join(base, str(tid), 'status')) as handle:
                    statuses[tid] = handle.read()
                with open(os.path.join(base, str(tid), 'children')) as handle:
                    pending.extend(int(child) for child in handle.read().split())
            except OSError:
                continue
    return statuses


def _apply_plan(image_set: ImageSet, plan: Plan, program: bytes, no_new_privs: bool) -> List[int]:
    """Change the decoded messages as planned; the thread ids whose core changed."""
    base = len(image_set.filter_messages)
    if image_set.seccomp_entry is None:
        image_set.seccomp_entry = Message(b'', 'seccomp.img entry')
    for index, target in sorted(plan.links.items()):
        message = image_set.filter_messages[index]
        message.put(2, WIRE_VARINT, base + target)
        image_set.seccomp_entry.fields = _replace_nth(image_set.seccomp_entry.fields, 1, index, message.encode())
    for flags in plan.new_flags:
        new = Message(b'', 'new filter')
        new.put(1, WIRE_BYTES, program)
        new.put(3, WIRE_VARINT, flags)
        image_set.seccomp_entry.append(1, WIRE_BYTES, new.encode())
    changed = []
    for tid, (core, thread_core) in sorted(image_set.cores.items()):
        touched = False
        if tid in plan.starts:
            thread_core.put(11, WIRE_VARINT, SECCOMP_MODE_FILTER)
            thread_core.put(12, WIRE_VARINT, base + plan.starts[tid])
            touched = True
        creds_blob = thread_core.blob(10)
        if no_new_privs and creds_blob is not None:
            creds = Message(creds_blob, 'creds of thread %d' % tid)
            if creds.uint(18) != 1:
                creds.put(18, WIRE_VARINT, 1)
                thread_core.put(10, WIRE_BYTES, creds.encode())
                touched = True
        elif no_new_privs:
            raise CriuImageError('Thread %d of the CRIU image set keeps its creds outside its core (an image '
                                 'format older than this collection knows).' % tid)
        if touched:
            core.put(5, WIRE_BYTES, thread_core.encode())
            changed.append(tid)
    return changed


def _replace_nth(fields: List[Field], number: int, nth: int, value: bytes) -> List[Field]:
    """``fields`` with the ``nth`` occurrence of repeated field ``number`` set to ``value``."""
    result = []
    seen = 0
    for field in fields:
        if field.number == number:
            if seen == nth:
                field = make_field(number, WIRE_BYTES, value)
            seen += 1
        result.append(field)
    return result


def _mode_of(path: str) -> int:
    try:
        return stat.S_IMODE(os.lstat(path).st_mode) & 0o666
    except FileNotFoundError:
        return 0o600


def add_filter(images_dir: str, program: Optional[bytes] = None, machine: Optional[str] = None,
               no_new_privs: bool = True) -> Dict[str, Any]:
    """Add ``program`` (default: :func:`collection_program`) as the newest seccomp filter of every live
    thread of the CRIU image set in ``images_dir``, before ``criu restore``.

    Existing filters stay, in their order and content; threads without a filter get mode 2 and a chain of
    one (see the module docstring for the TSYNC case). ``no_new_privs``: set no_new_privs in every
    thread's creds (never cleared either way). Changed files are replaced atomically, seccomp.img first
    (the set is consistent after every single write). Returns ``{'tasks': [{'pid', 'alive', 'tsync',
    'threads': [{'tid', 'mode_before', 'filters_before', 'mode_after', 'filters_after'}]}],
    'filters_before', 'filters_after', 'changed_files'}``; ``filters_*`` per thread are the counts
    /proc/<pid>/status shows (``Seccomp_filters``) before the dump and after the restore. Raises
    CriuImageError for a malformed, unknown or unsuitable image set; nothing is written then."""
    program = collection_program(machine) if program is None else bytes(program)
    if not program or len(program) % SOCK_FILTER_SIZE or len(program) > BPF_MAXINSNS * SOCK_FILTER_SIZE:
        raise CriuImageError('The seccomp program to add has %d bytes, not a BPF program the kernel accepts.'
                             % len(program))
    image_set = read_image_set(images_dir, machine)
    plan = plan_injection(image_set.tasks, image_set.filters, len(program))
    before = len(image_set.filters)
    changed = _apply_plan(image_set, plan, program, no_new_privs)
    files = []
    if plan.new_flags and image_set.seccomp_entry is not None:
        path = os.path.join(images_dir, 'seccomp.img')
        atomic_write(path, join_image(SECCOMP_MAGIC, [image_set.seccomp_entry.encode()]), mode=_mode_of(path))
        files.append('seccomp.img')
    for tid in changed:
        path = os.path.join(images_dir, 'core-%d.img' % tid)
        atomic_write(path, join_image(CORE_MAGIC, [image_set.cores[tid][0].encode()]), mode=_mode_of(path))
        files.append('core-%d.img' % tid)
    return {'tasks': plan.summary, 'filters_before': before, 'filters_after': before + len(plan.new_flags),
            'changed_files': files}


# ---------------------------------------------------------------------------------------------
# The dump statistics (stats-dump): what a dump or pre-dump wrote, for pre-copy's stop rule

IMG_SERVICE_MAGIC = 0x55105940   # service images (stats, irmap cache) start with it instead of IMG_COMMON_MAGIC
STATS_MAGIC = 0x57093306
STATS_FILE = 'stats-dump'
# dump_stats_entry (CRIU's images/stats.proto): field number -> key
DUMP_STATS_FIELDS = {1: 'freezing_time_us', 2: 'frozen_time_us', 3: 'memdump_time_us', 4: 'memwrite_time_us',
                     5: 'pages_scanned', 6: 'pages_skipped_parent', 7: 'pages_written', 9: 'pages_lazy'}


def parse_dump_stats(data: bytes, name: str = STATS_FILE) -> Dict[str, int]:
    """The ``dump`` part of a ``stats-dump`` image: ``{'pages_written': n, 'pages_scanned': n,
    'pages_skipped_parent': n, 'frozen_time_us': n, ...}`` (keys of the fields present). CriuImageError
    when the bytes are not a stats image with one entry holding dump statistics."""
    if len(data) < 8:
        raise CriuImageError('The CRIU image %s is shorter than its magic numbers (a truncated image).' % name)
    first, second = struct.unpack_from('=2I', data, 0)
    if first not in (IMG_SERVICE_MAGIC, IMG_COMMON_MAGIC) or second != STATS_MAGIC:
        raise CriuImageError('The CRIU image %s starts with magic %s, not %s: not CRIU dump statistics.'
                             % (name, _hex([first, second]), _hex([IMG_SERVICE_MAGIC, STATS_MAGIC])))
    # split_image checks the common head; the service head is re-labelled for it (the entries are the same)
    entries = split_image(struct.pack('=2I', IMG_COMMON_MAGIC, STATS_MAGIC) + data[8:], STATS_MAGIC, name)
    dump = Message(_one_entry(entries, name), name).blob(1)
    if dump is None:
        raise CriuImageError('The CRIU image %s holds no dump statistics (a restore\'s?).' % name)
    message = Message(dump, name + ' (dump)')
    out = {}
    for number, key in DUMP_STATS_FIELDS.items():
        value = message.uint(number, limit=2 ** 64 - 1)
        if value is not None:
            out[key] = value
    return out


def read_dump_stats(*directories: str) -> Optional[Dict[str, int]]:
    """The dump statistics of the first of ``directories`` that holds a ``stats-dump`` (CRIU writes it into
    its work directory), or None when none does. CriuImageError when one is there but unreadable."""
    for directory in directories:
        path = os.path.join(directory, STATS_FILE)
        if os.path.lexists(path):
            return parse_dump_stats(read_image_file(path), STATS_FILE)
    return None
