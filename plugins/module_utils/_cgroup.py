# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small cgroupfs client: find the layout (v1 or v2), create a level, write and read limits, join it.

This is a private module_utils file (leading underscore): its API may change without notice.
Standard library only, Python 3.8+, and no import of other collection files: the process-mode launcher
(``_confine_launcher.py``) runs a copy of this file outside of Ansible.

Limits are handled in one normalised form, whatever the cgroup version::

    {'memory': 67108864,          # bytes, or 'max'
     'memory_swap': 67108864,     # memory + swap in bytes (Docker's --memory-swap), or 'max'
     'cpu_quota': 50000,          # microseconds per period, or 'max'
     'cpu_period': 100000,        # microseconds
     'cpu_weight': 100,           # 1..10000 (v2 cpu.weight; v1 cpu.shares = weight * 1024 / 100)
     'pids': 64}                  # or 'max'

A key that is absent (or None) is not managed: its file is neither read for comparison nor written.

Interface files: v1 ``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes`` (absent without swap
accounting), ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, ``cpu.shares``, ``pids.max``; v2 ``memory.max``,
``memory.swap.max`` (swap only: memory_swap - memory), ``cpu.max``, ``cpu.weight``, ``pids.max``.

Every failure raises CgroupError with one clear sentence (limit below usage, missing controller,
missing interface file, permission).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

try:
    from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
except ImportError:  # the confine launcher's installed copy: _common.py sits beside this file
    from _common import MtdError  # type: ignore[no-redef]

MAX = 'max'
MANAGED_CONTROLLERS = ('memory', 'cpu', 'pids')
LIMIT_KEYS = ('memory', 'memory_swap', 'cpu_quota', 'cpu_period', 'cpu_weight', 'pids')
# Which controller each normalised limit needs.
LIMIT_CONTROLLER = {
    'memory': 'memory',
    'memory_swap': 'memory',
    'cpu_quota': 'cpu',
    'cpu_period': 'cpu',
    'cpu_weight': 'cpu',
    'pids': 'pids',
}
DEFAULT_CPU_PERIOD = 100000
# v1 memory limits at or above this are "unlimited" (the kernel reports PAGE_COUNTER_MAX * page size).
V1_UNLIMITED_THRESHOLD = 1 << 62
PAGE_SIZE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096

_SIZE_RE = re.compile(r'^\s*(\d+)\s*([kmgtp]?)(i?b)?\s*$', re.IGNORECASE)
_SIZE_UNITS = {'': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40, 'p': 1 << 50}
# \xNN: systemd's escapes in slice names (a '-' inside a level of mtd-web\x2d1.slice)
_NAME_RE = re.compile(r'^(?:[A-Za-z0-9_.@:+-]|\\x[0-9a-f]{2})+$')


class CgroupError(MtdError):
    """A cgroup problem the user can act on; ``msg`` is one clear sentence."""


# ---------------------------------------------------------------------------------------------
# Input parsing and formatting

def parse_size(value: Any, what: str = 'memory') -> Union[int, str]:
    """Bytes (int) or MAX from ``64m``, ``1g``, ``512MiB``, ``67108864``, an int, ``max``/``-1``."""
    if isinstance(value, bool):
        raise CgroupError('%s must be a size such as 64m or 1g, not a boolean.' % what)
    if isinstance(value, int):
        if value == -1:
            return MAX
        if value < 0:
            raise CgroupError('%s must be a positive size, got %d.' % (what, value))
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if not isinstance(value, str):
        raise CgroupError('%s must be a size such as 64m or 1g, got %r.' % (what, value))
    text = value.strip().lower()
    if text in ('max', 'unlimited', '-1'):
        return MAX
    match = _SIZE_RE.match(text)
    if not match:
        raise CgroupError('%s %r is not a size; use bytes or a number with k, m, g or t (for example 64m), '
                          'or max.' % (what, value))
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def parse_count(value: Any, what: str = 'pids') -> Union[int, str]:
    """A positive integer or MAX from an int, a numeric string, ``max`` or ``-1``."""
    if isinstance(value, bool):
        raise CgroupError('%s must be a number or max, not a boolean.' % what)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ('max', 'unlimited', '-1'):
            return MAX
        if not text.isdigit():
            raise CgroupError('%s must be a positive number or max, got %r.' % (what, value))
        value = int(text)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise CgroupError('%s must be a positive number or max, got %r.' % (what, value))
    if value == -1:
        return MAX
    if value < 1:
        raise CgroupError('%s must be at least 1, got %d.' % (what, value))
    return value


def format_size(value: Any) -> str:
    """``64 MiB``-style text for messages; MAX stays ``max``."""
    if value == MAX or value is None:
        return 'max' if value == MAX else 'unset'
    for unit, factor in (('GiB', 1 << 30), ('MiB', 1 << 20), ('KiB', 1 << 10)):
        if value >= factor and value % factor == 0:
            return '%d %s' % (value // factor, unit)
    if value >= 1 << 20:
        return '%.1f MiB' % (value / float(1 << 20))
    return '%d bytes' % value


def page_align(value: Any) -> Any:
    """The kernel keeps memory limits in whole pages, rounded down."""
    if value == MAX or value is None:
        return value
    return value - value % PAGE_SIZE


def normalise_limits(memory: Any = None, memory_swap: Any = None, cpus: Optional[float] = None,
                     cpu_period: Optional[int] = None, cpu_weight: Optional[int] = None,
                     pids: Any = None) -> Dict[str, Any]:
    """Normalised limits (see the module docstring) from user-facing values.

    ``memory``/``memory_swap`` sizes; ``cpus`` a float (0.5 = half a CPU; 0 or ``max`` = unlimited);
    ``cpu_period`` microseconds (default 100000 when cpus is given); ``cpu_weight`` 1..10000;
    ``pids`` a count or ``max``. When memory is set and memory_swap is not, memory_swap equals memory
    (no swap beyond the memory limit).
    """
    limits = {}
    if memory is not None:
        limits['memory'] = page_align(parse_size(memory, 'memory'))
        if limits['memory'] != MAX and limits['memory'] < 4 * (1 << 20):
            raise CgroupError('memory %s is too small; give at least 4m.' % format_size(limits['memory']))
    if memory_swap is not None:
        if 'memory' not in limits:
            raise CgroupError('memory_swap needs memory: it is the limit of memory plus swap.')
        limits['memory_swap'] = page_align(parse_size(memory_swap, 'memory_swap'))
        if limits['memory'] == MAX and limits['memory_swap'] != MAX:
            raise CgroupError('memory_swap cannot be limited when memory is max.')
        if limits['memory_swap'] != MAX and limits['memory'] != MAX and limits['memory_swap'] < limits['memory']:
            raise CgroupError('memory_swap (%s) must be at least memory (%s): it counts memory plus swap.'
                              % (format_size(limits['memory_swap']), format_size(limits['memory'])))
    elif 'memory' in limits:
        limits['memory_swap'] = limits['memory']
    if cpus is not None:
        if isinstance(cpus, str) and cpus.strip().lower() == 'max':
            cpus = 0
        try:
            cpus = float(cpus)
        except (TypeError, ValueError):
            raise CgroupError('cpus must be a number of CPUs such as 0.5 or 2, got %r.' % (cpus,))
        if cpus < 0:
            raise CgroupError('cpus must not be negative, got %s.' % cpus)
        period = int(cpu_period) if cpu_period is not None else DEFAULT_CPU_PERIOD
        if period < 1000 or period > 1000000:
            raise CgroupError('cpu_period must be between 1000 and 1000000 microseconds, got %d.' % period)
        limits['cpu_period'] = period
        if cpus == 0:
            limits['cpu_quota'] = MAX
        else:
            quota = int(round(cpus * period))
            if quota < 1000:
                raise CgroupError('cpus %s gives a quota of %d us per %d us period; the kernel needs at least '
                                  '1000 us: raise cpus or cpu_period.' % (cpus, quota, period))
            limits['cpu_quota'] = quota
    elif cpu_period is not None:
        raise CgroupError('cpu_period needs cpus.')
    if cpu_weight is not None:
        try:
            weight = int(cpu_weight)
        except (TypeError, ValueError):
            raise CgroupError('cpu_weight must be an integer between 1 and 10000, got %r.' % (cpu_weight,))
        if weight < 1 or weight > 10000:
            raise CgroupError('cpu_weight must be between 1 and 10000, got %d.' % weight)
        limits['cpu_weight'] = weight
    if pids is not None:
        limits['pids'] = parse_count(pids, 'pids')
    return limits


def limits_for_display(limits: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """User-facing form of normalised limits: sizes in bytes, cpus as a float."""
    if limits is None:
        return None
    shown: Dict[str, Any] = {}
    for key in ('memory', 'memory_swap', 'cpu_weight', 'pids'):
        if key in limits and limits[key] is not None:
            shown[key] = limits[key]
    if limits.get('cpu_quota') is not None:
        period = limits.get('cpu_period') or DEFAULT_CPU_PERIOD
        shown['cpus'] = 0.0 if limits['cpu_quota'] == MAX else round(limits['cpu_quota'] / float(period), 4)
        shown['cpu_period'] = period
    return shown


def validate_relative_path(path: Optional[str]) -> str:
    """``a/b/c`` from ``/a/b/c/``; every part a plain name (no ``..``)."""
    parts = [part for part in (path or '').strip().split('/') if part]
    if not parts:
        raise CgroupError('The cgroup path %r is empty.' % (path,))
    for part in parts:
        if part in ('.', '..') or not _NAME_RE.match(part):
            raise CgroupError('The cgroup path %r has an invalid part %r; use letters, digits and . _ - @ : + '
                              'separated by /.' % (path, part))
    return '/'.join(parts)


# ---------------------------------------------------------------------------------------------
# Write ordering (pure)

def _as_number(value):
    return float('inf') if value == MAX else value


def order_memory_writes(current_memory: Any, current_swap: Any, new_memory: Any,
                        new_swap: Any) -> List[Tuple[str, Any]]:
    """The v1 order of writes for memory and memory+swap: a list of ``('memory'|'memory_swap', value)``.

    The kernel requires memory <= memsw at every moment. Writing memsw first is valid when the current
    memory fits under the new memsw; writing memory first is valid when the new memory fits under the
    current memsw; one of the two always is. Raising memsw goes first, lowering it goes last.
    Unchanged values are not written. ``current_swap`` None means memsw is not available (only memory
    is written).
    """
    memory_changes = new_memory is not None and new_memory != current_memory
    if current_swap is None or new_swap is None:
        return [('memory', new_memory)] if memory_changes else []
    swap_changes = new_swap != current_swap
    if not swap_changes:
        return [('memory', new_memory)] if memory_changes else []
    if not memory_changes:
        return [('memory_swap', new_swap)]
    if _as_number(new_swap) >= _as_number(current_swap):
        # (current memory, new memsw) is valid: current memory <= current memsw <= new memsw.
        return [('memory_swap', new_swap), ('memory', new_memory)]
    # (new memory, current memsw) is valid: new memory <= new memsw < current memsw.
    return [('memory', new_memory), ('memory_swap', new_swap)]


def v1_shares_from_weight(weight: int) -> int:
    """cpu.shares for a cpu weight: proportional, so the defaults match (100 -> 1024)."""
    return max(2, min(262144, int(round(weight * 1024 / 100.0))))


def weight_from_v1_shares(shares: int) -> int:
    return max(1, min(10000, int(round(shares * 100 / 1024.0))))


# ---------------------------------------------------------------------------------------------
# Layout

def _unescape(field):
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> List[Dict[str, Any]]:
    """Mounts from /proc/self/mountinfo: dicts with mountpoint, fstype, options, super_options, root."""
    mounts = []
    for line in (text or '').splitlines():
        fields = line.split()
        if '-' not in fields:
            continue
        sep = fields.index('-')
        if sep < 6 or len(fields) < sep + 3:
            continue
        mounts.append({
            'root': _unescape(fields[3]),
            'mountpoint': _unescape(fields[4]),
            'options': fields[5].split(','),
            'fstype': fields[sep + 1],
            'source': _unescape(fields[sep + 2]),
            'super_options': fields[sep + 3].split(',') if len(fields) > sep + 3 else [],
        })
    return mounts


class Layout:
    """Where the controllers are: v1 ``{controller: mountpoint}`` or the v2 (unified) mountpoint."""

    def __init__(self, version: int, v1_mounts: Optional[Dict[str, str]] = None,
                 unified: Optional[str] = None) -> None:
        self.version = version
        self.v1_mounts = dict(v1_mounts or {})
        self.unified: Any = unified  # the unified (v2) mountpoint, or None

    @classmethod
    def detect(cls, mountinfo_text: str, prefer: Any = 'auto') -> 'Layout':
        """The layout from mountinfo text. ``prefer`` is ``auto``, ``1`` or ``2``.

        ``auto`` uses v1 when any managed controller is mounted as cgroup v1 (a hybrid host keeps its
        controllers there), else the cgroup2 mount.
        """
        prefer = str(prefer or 'auto')
        v1_mounts = {}
        unified = None
        for mount in parse_mountinfo(mountinfo_text):
            if mount['fstype'] == 'cgroup2':
                # The first cgroup2 mount that shows the hierarchy's root.
                if unified is None and mount['root'] == '/':
                    unified = mount['mountpoint']
            elif mount['fstype'] == 'cgroup' and mount['root'] == '/':
                for option in mount['super_options']:
                    if option in MANAGED_CONTROLLERS and option not in v1_mounts:
                        v1_mounts[option] = mount['mountpoint']
        if prefer == '1':
            if not v1_mounts:
                raise CgroupError('cgroup_version 1 was asked for, but no cgroup v1 controller (memory, cpu, pids) '
                                  'is mounted on this host.')
            return cls(1, v1_mounts, unified)
        if prefer == '2':
            if unified is None:
                raise CgroupError('cgroup_version 2 was asked for, but no cgroup2 filesystem is mounted on this host.')
            return cls(2, {}, unified)
        if prefer != 'auto':
            raise CgroupError('cgroup_version must be auto, 1 or 2, got %r.' % (prefer,))
        if v1_mounts:
            return cls(1, v1_mounts, unified)
        if unified is not None:
            return cls(2, {}, unified)
        raise CgroupError('No cgroup filesystem is mounted on this host (neither cgroup v1 controllers nor cgroup2).')

    @classmethod
    def from_host(cls, prefer: Any = 'auto', mountinfo_path: str = '/proc/self/mountinfo') -> 'Layout':
        try:
            with open(mountinfo_path) as handle:
                text = handle.read()
        except (IOError, OSError) as exc:
            raise CgroupError('Cannot read %s: %s.' % (mountinfo_path, exc.strerror or exc))
        return cls.detect(text, prefer)

    def as_dict(self) -> Dict[str, Any]:
        return {'version': self.version, 'v1_mounts': dict(self.v1_mounts), 'unified': self.unified}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> 'Layout':
        return cls(int(data['version']), data.get('v1_mounts'), data.get('unified'))


# ---------------------------------------------------------------------------------------------
# A cgroup level

def _errno_text(exc):
    return exc.strerror or errno.errorcode.get(exc.errno, str(exc))


class Cgroup:
    """One level ``path`` (relative to the hierarchy roots, e.g. ``mtd/web-1``) in a Layout."""

    def __init__(self, layout: Layout, path: str) -> None:
        self.layout = layout
        self.path = validate_relative_path(path)

    # -- raw file access (tests override these two) ---------------------------------------------

    def _read(self, filename):
        with open(filename) as handle:
            return handle.read()

    def _write(self, filename, value):
        fd = os.open(filename, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(value).encode('ascii'))
        finally:
            os.close(fd)

    def _mkdir(self, directory):
        os.mkdir(directory, 0o755)

    # -- where things are --------------------------------------------------------------------------

    def root_of(self, controller: Optional[str]) -> Optional[str]:
        """The hierarchy root holding ``controller`` or None (v1: its mount; v2: the unified mount)."""
        if self.layout.version == 1:
            return self.layout.v1_mounts.get(controller) if controller else None
        return self.layout.unified

    def directory(self, controller: Optional[str] = None) -> Any:
        """This level's directory in the hierarchy of ``controller`` (v2: the one directory); None when
        that controller is not mounted."""
        if self.layout.version == 2:
            return os.path.join(self.layout.unified, self.path)
        root = self.root_of(controller)
        return os.path.join(root, self.path) if root else None

    def directories(self) -> List[str]:
        """The distinct directories of this level, one per hierarchy (v1) or one (v2)."""
        if self.layout.version == 2:
            return [self.directory()]
        seen = []
        for controller in MANAGED_CONTROLLERS:
            directory = self.directory(controller)
            if directory and directory not in seen:
                seen.append(directory)
        return seen

    def exists(self) -> bool:
        return all(os.path.isdir(directory) for directory in self.directories())

    def required_controllers(self, limits: Dict[str, Any]) -> List[str]:
        needed = []
        for key in LIMIT_KEYS:
            if limits.get(key) is not None and LIMIT_CONTROLLER[key] not in needed:
                needed.append(LIMIT_CONTROLLER[key])
        return needed

    def v2_available(self, directory: str) -> List[str]:
        try:
            return self._read(os.path.join(directory, 'cgroup.controllers')).split()
        except (IOError, OSError):
            return []

    def check_controllers(self, limits: Dict[str, Any]) -> None:
        """Raise CgroupError when a controller that a requested limit needs is missing."""
        for controller in self.required_controllers(limits):
            if self.layout.version == 1:
                if not self.root_of(controller):
                    raise CgroupError(
                        'The %s controller is not mounted as cgroup v1 on this host, so %s limits cannot be set; '
                        'mount it or leave those limits unset.' % (controller, controller),
                        missing_controller=controller)
            else:
                available = self.v2_available(self.layout.unified)
                if controller not in available:
                    raise CgroupError(
                        'The %s controller is not available in %s (cgroup.controllers lists: %s), so %s limits '
                        'cannot be set; give it to cgroup v2 or leave those limits unset.'
                        % (controller, os.path.join(self.layout.unified, 'cgroup.controllers'),
                           ' '.join(available) or 'nothing', controller),
                        missing_controller=controller)
        if limits.get('memory_swap') is not None and limits.get('memory_swap') != limits.get('memory'):
            if not self._swap_file_supported():
                raise CgroupError('memory_swap differs from memory, but this kernel has no swap accounting '
                                  '(%s is missing); boot with swapaccount=1 or set memory_swap equal to memory.'
                                  % self._swap_file_name(), missing_file=self._swap_file_name())

    def _swap_file_name(self):
        return 'memory.memsw.limit_in_bytes' if self.layout.version == 1 else 'memory.swap.max'

    def _swap_file_supported(self):
        """Whether the kernel accounts swap here. v1 shows memsw files in the root cgroup; v2 has no memory
        files in the root, so the level, its parents or any other child cgroup with a memory.max decide."""
        root = self.root_of('memory')
        if not root:
            return False
        name = self._swap_file_name()
        if self.layout.version == 1:
            return os.path.exists(os.path.join(root, name))
        candidates = []
        current = root
        for part in self.path.split('/'):
            current = os.path.join(current, part)
            candidates.append(current)
        try:
            candidates.extend(os.path.join(root, entry) for entry in sorted(os.listdir(root)))
        except OSError:
            pass
        for directory in reversed(candidates[:len(self.path.split('/'))]):
            if os.path.exists(os.path.join(directory, 'memory.max')):
                return os.path.exists(os.path.join(directory, name))
        for directory in candidates[len(self.path.split('/')):]:
            if os.path.exists(os.path.join(directory, 'memory.max')):
                return os.path.exists(os.path.join(directory, name))
        return True

    # -- reading ---------------------------------------------------------------------------------

    def _file(self, controller, name):
        return os.path.join(self.directory(controller), name)

    def _read_value(self, controller, name):
        path = self._file(controller, name)
        try:
            return self._read(path).strip()
        except (IOError, OSError) as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise CgroupError('Cannot read %s: %s.' % (path, _errno_text(exc)))

    def _read_int_or_max(self, controller, name, v1_memory=False):
        text = self._read_value(controller, name)
        if text is None:
            return None
        if text == 'max' or text == '-1':
            return MAX
        try:
            value = int(text.split()[0])
        except (ValueError, IndexError):
            raise CgroupError('Unexpected content %r in %s.' % (text, self._file(controller, name)))
        if v1_memory and value >= V1_UNLIMITED_THRESHOLD:
            return MAX
        return value

    def read_limits(self, keys: Sequence[str] = LIMIT_KEYS) -> Optional[Dict[str, Any]]:
        """The current normalised limits for ``keys`` (None for a key whose file is missing), or None when
        the level does not exist."""
        if not self.exists():
            return None
        current: Dict[str, Any] = {}
        version = self.layout.version
        for key in keys:
            controller = LIMIT_CONTROLLER[key]
            if not self.root_of(controller):
                current[key] = None
                continue
            if key == 'memory':
                current[key] = self._read_int_or_max(
                    'memory', 'memory.limit_in_bytes' if version == 1 else 'memory.max', v1_memory=True)
            elif key == 'memory_swap':
                if version == 1:
                    current[key] = self._read_int_or_max('memory', 'memory.memsw.limit_in_bytes', v1_memory=True)
                else:
                    swap = self._read_int_or_max('memory', 'memory.swap.max')
                    memory = self._read_int_or_max('memory', 'memory.max')
                    if swap is None or memory is None:
                        current[key] = None
                    elif swap == MAX or memory == MAX:
                        current[key] = MAX
                    else:
                        current[key] = memory + swap
            elif key in ('cpu_quota', 'cpu_period'):
                if version == 1:
                    quota = self._read_int_or_max('cpu', 'cpu.cfs_quota_us')
                    period = self._read_int_or_max('cpu', 'cpu.cfs_period_us')
                else:
                    text = self._read_value('cpu', 'cpu.max')
                    quota = period = None
                    if text:
                        parts = text.split()
                        quota = MAX if parts[0] == 'max' else int(parts[0])
                        period = int(parts[1]) if len(parts) > 1 else DEFAULT_CPU_PERIOD
                current[key] = quota if key == 'cpu_quota' else period
            elif key == 'cpu_weight':
                if version == 1:
                    shares = self._read_int_or_max('cpu', 'cpu.shares')
                    current[key] = None if shares is None else weight_from_v1_shares(shares)
                else:
                    current[key] = self._read_int_or_max('cpu', 'cpu.weight')
            elif key == 'pids':
                current[key] = self._read_int_or_max('pids', 'pids.max')
        return current

    def usage(self) -> Dict[str, Optional[int]]:
        """Current usage: ``{'memory': bytes|None, 'pids': count|None}``."""
        result: Dict[str, Optional[int]] = {'memory': None, 'pids': None}
        if self.root_of('memory') and os.path.isdir(self.directory('memory')):
            name = 'memory.usage_in_bytes' if self.layout.version == 1 else 'memory.current'
            value = self._read_int_or_max('memory', name)
            result['memory'] = value if value != MAX else None
        if self.root_of('pids') and os.path.isdir(self.directory('pids')):
            value = self._read_int_or_max('pids', 'pids.current')
            result['pids'] = value if value != MAX else None
        return result

    def procs(self) -> List[int]:
        """PIDs in this level (all hierarchies), sorted."""
        pids: Set[int] = set()
        for directory in self.directories():
            try:
                text = self._read(os.path.join(directory, 'cgroup.procs'))
            except (IOError, OSError):
                continue
            pids.update(int(line) for line in text.split() if line.strip().isdigit())
        return sorted(pids)

    # -- planning and writing ------------------------------------------------------------------

    def _cpu_weight_value(self, weight):
        return v1_shares_from_weight(weight) if self.layout.version == 1 else weight

    def plan(self, limits: Dict[str, Any], current: Optional[Dict[str, Any]] = None) -> List[Tuple[str, str, str, str]]:
        """The ordered writes ``[(controller, filename, value_text, key)]`` that bring the level to
        ``limits``; ``current`` is read_limits() (None = the level does not exist yet)."""
        limits = dict((key, value) for key, value in limits.items() if value is not None)
        if current is None:
            current = self.read_limits() if self.exists() else None
        fresh = current is None
        if current is None:
            current = self.fresh_defaults()
        writes = []
        version = self.layout.version
        if 'memory' in limits or 'memory_swap' in limits:
            new_memory = limits.get('memory', current.get('memory'))
            if version == 1:
                has_swap = self._swap_file_supported()
                new_swap = limits.get('memory_swap') if has_swap else None
                cur_swap = current.get('memory_swap') if has_swap else None
                if has_swap and cur_swap is None:
                    cur_swap = MAX
                for key, value in order_memory_writes(current.get('memory'), cur_swap, new_memory, new_swap):
                    name = 'memory.limit_in_bytes' if key == 'memory' else 'memory.memsw.limit_in_bytes'
                    writes.append(('memory', name, '-1' if value == MAX else str(value), key))
            else:
                if new_memory != current.get('memory'):
                    writes.append(('memory', 'memory.max', str(new_memory), 'memory'))
                if 'memory_swap' in limits and self._swap_file_supported():
                    new_swap_total = limits['memory_swap']
                    if new_swap_total == MAX or new_memory == MAX:
                        swap_only = MAX
                    else:
                        swap_only = new_swap_total - new_memory
                    cur_total = current.get('memory_swap')
                    cur_memory = current.get('memory')
                    if cur_total == MAX or cur_total is None or cur_memory == MAX or cur_memory is None:
                        cur_swap_only = MAX
                    else:
                        cur_swap_only = cur_total - cur_memory
                    if swap_only != cur_swap_only:
                        writes.append(('memory', 'memory.swap.max', str(swap_only), 'memory_swap'))
        if 'cpu_quota' in limits:
            quota, period = limits['cpu_quota'], limits.get('cpu_period', DEFAULT_CPU_PERIOD)
            if version == 1:
                if period != current.get('cpu_period'):
                    # A smaller period with the old quota could exceed a parent's bandwidth; clear the
                    # quota first when the period changes.
                    if current.get('cpu_quota') not in (MAX, None):
                        writes.append(('cpu', 'cpu.cfs_quota_us', '-1', 'cpu_quota'))
                    writes.append(('cpu', 'cpu.cfs_period_us', str(period), 'cpu_period'))
                    writes.append(('cpu', 'cpu.cfs_quota_us', '-1' if quota == MAX else str(quota), 'cpu_quota'))
                elif quota != current.get('cpu_quota'):
                    writes.append(('cpu', 'cpu.cfs_quota_us', '-1' if quota == MAX else str(quota), 'cpu_quota'))
            elif quota != current.get('cpu_quota') or period != current.get('cpu_period'):
                writes.append(('cpu', 'cpu.max', '%s %d' % ('max' if quota == MAX else quota, period), 'cpu_quota'))
        if 'cpu_weight' in limits:
            wanted = self._cpu_weight_value(limits['cpu_weight'])
            have = current.get('cpu_weight')
            have_native = None if have is None else self._cpu_weight_value(have)
            if version == 1:
                # Compare shares with shares: the weight read back is rounded.
                have_native = self._read_int_or_max('cpu', 'cpu.shares') if not fresh else 1024
            if wanted != have_native:
                writes.append(('cpu', 'cpu.shares' if version == 1 else 'cpu.weight', str(wanted), 'cpu_weight'))
        if 'pids' in limits and limits['pids'] != current.get('pids'):
            writes.append(('pids', 'pids.max', str(limits['pids']), 'pids'))
        return writes

    @staticmethod
    def fresh_defaults() -> Dict[str, Any]:
        """What a newly created level holds."""
        return {'memory': MAX, 'memory_swap': MAX, 'cpu_quota': MAX, 'cpu_period': DEFAULT_CPU_PERIOD,
                'cpu_weight': 100, 'pids': MAX}

    def check_usage(self, writes: Sequence[Tuple[str, str, str, str]]) -> None:
        """Refuse planned writes whose limits are below the current usage (see _precheck)."""
        self._precheck(writes)

    def _precheck(self, writes):
        """Refuse limits below the current usage, with the numbers (v2 would reclaim or OOM-kill instead
        of failing; pids would only stop new tasks)."""
        keys = set(write[3] for write in writes)
        if not keys.intersection(('memory', 'pids')) or not self.exists():
            return
        use = self.usage()
        tasks = use['pids']
        for _controller, _name, value, key in writes:
            if key == 'pids' and value != 'max' and tasks is not None and int(value) < tasks:
                raise CgroupError(
                    'The pids limit %s is below the current usage of cgroup %s (%s tasks); raise the limit or '
                    'stop some processes first.' % (value, '/' + self.path, tasks),
                    limit=int(value), usage=tasks)
            if (self.layout.version == 2 and key == 'memory' and value != 'max' and use['memory'] is not None
                    and int(value) < use['memory']):
                raise CgroupError(
                    'The memory limit %s is below the current usage of cgroup %s (%s); raise the limit or '
                    'reduce the usage first.' % (format_size(int(value)), '/' + self.path, format_size(use['memory'])),
                    limit=int(value), usage=use['memory'])

    def _enable_v2_controllers(self, controllers):
        """Enable ``controllers`` in cgroup.subtree_control of every level above this one."""
        parts = self.path.split('/')
        current = self.layout.unified
        for part in parts:
            control = os.path.join(current, 'cgroup.subtree_control')
            try:
                enabled = self._read(control).split()
            except (IOError, OSError) as exc:
                raise CgroupError('Cannot read %s: %s.' % (control, _errno_text(exc)))
            missing = [c for c in controllers if c not in enabled]
            if missing:
                available = self.v2_available(current)
                for controller in missing:
                    if controller not in available:
                        raise CgroupError(
                            'The %s controller is not available in %s (cgroup.controllers lists: %s); enable it '
                            'in the parent\'s cgroup.subtree_control or leave those limits unset.'
                            % (controller, current, ' '.join(available) or 'nothing'),
                            missing_controller=controller)
                try:
                    self._write(control, ' '.join('+' + c for c in missing))
                except (IOError, OSError) as exc:
                    hint = ''
                    if exc.errno == errno.EBUSY:
                        hint = ' (the cgroup has processes of its own; cgroup v2 allows controllers only in ' \
                               'cgroups whose processes live in leaves)'
                    raise CgroupError('Cannot enable %s in %s: %s%s.' % (' '.join(missing), control,
                                                                         _errno_text(exc), hint))
            current = os.path.join(current, part)
            if not os.path.isdir(current):
                self._mkdir_checked(current)

    def _mkdir_checked(self, directory):
        try:
            self._mkdir(directory)
        except (IOError, OSError) as exc:
            if exc.errno == errno.EEXIST:
                return
            raise CgroupError('Cannot create the cgroup %s: %s.' % (directory, _errno_text(exc)))

    def create(self, limits: Optional[Dict[str, Any]] = None) -> bool:
        """Create the level (and its parents). Returns True when a directory was created."""
        limits = limits or {}
        self.check_controllers(limits)
        created = False
        if self.layout.version == 2:
            before = os.path.isdir(self.directory())
            self._enable_v2_controllers(self.required_controllers(limits))
            if not os.path.isdir(self.directory()):
                self._mkdir_checked(self.directory())
            return not before
        for directory in self.directories():
            root = directory[:-len(self.path) - 1]
            current = root
            for part in self.path.split('/'):
                current = os.path.join(current, part)
                if not os.path.isdir(current):
                    self._mkdir_checked(current)
                    created = True
        memory = self.directory('memory')
        if memory:
            hierarchy = os.path.join(memory, 'memory.use_hierarchy')
            if os.path.exists(hierarchy) and self._read(hierarchy).strip() == '0':
                try:
                    self._write(hierarchy, '1')
                except (IOError, OSError) as exc:
                    raise CgroupError('Cannot turn on memory.use_hierarchy in %s (%s): limits would not apply to '
                                      'child cgroups.' % (memory, _errno_text(exc)))
        return created

    def apply(self, writes: Sequence[Tuple[str, str, str, str]]) -> None:
        """Perform planned writes in order; errors name the file, the value and the usage."""
        self._precheck(writes)
        for controller, name, value, key in writes:
            path = self._file(controller, name)
            try:
                self._write(path, value)
            except (IOError, OSError) as exc:
                raise self._write_error(path, name, value, key, exc)

    def _write_error(self, path, name, value, key, exc):
        if exc.errno == errno.ENOENT:
            return CgroupError('The interface file %s does not exist; the kernel lacks this feature (for memsw, '
                               'boot with swapaccount=1) or the controller is not enabled here.' % path,
                               missing_file=path)
        if exc.errno == errno.EBUSY and key in ('memory', 'memory_swap'):
            use = self.usage().get('memory')
            return CgroupError(
                'The memory limit %s is below the current usage of cgroup %s (%s) and the kernel could not '
                'reclaim enough; raise the limit or reduce the usage first.'
                % (format_size(int(value)) if value.isdigit() else value, '/' + self.path,
                   format_size(use) if use is not None else 'unknown'),
                limit=value, usage=use)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return CgroupError('Cannot write %s to %s: %s; run as root on a writable cgroup filesystem.'
                               % (value, path, _errno_text(exc)))
        if exc.errno == errno.EINVAL:
            return CgroupError('The kernel refused %s = %s (invalid argument); for cpu limits, a child may not get '
                               'more CPU bandwidth than its parent.' % (path, value))
        return CgroupError('Cannot write %s to %s: %s.' % (value, path, _errno_text(exc)))

    def ensure(self, limits: Dict[str, Any]) -> Tuple[bool, Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
        """Create the level when missing and write what differs. Returns (changed, before, after)."""
        before = self.read_limits() if self.exists() else None
        self.check_controllers(limits)
        writes = self.plan(limits, before)
        created = self.create(limits)
        if writes:
            self.apply(writes)
        after = self.read_limits()
        return bool(created or writes), before, after

    def join(self, pid: Optional[int] = None) -> None:
        """Move ``pid`` (default: the caller) into this level in every hierarchy."""
        pid = os.getpid() if pid is None else pid
        for directory in self.directories():
            procs = os.path.join(directory, 'cgroup.procs')
            try:
                self._write(procs, str(pid))
            except (IOError, OSError) as exc:
                raise CgroupError('Cannot move process %d into %s: %s.' % (pid, directory, _errno_text(exc)))

    def remove(self, timeout: float = 10.0) -> List[int]:
        """Kill every process of the level and remove its directories. Returns the PIDs killed."""
        killed = []
        deadline = time.time() + timeout
        while True:
            pids = self.procs()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    if pid not in killed:
                        killed.append(pid)
                except OSError:
                    pass
            if time.time() > deadline:
                raise CgroupError('Processes %s in cgroup %s did not exit within %s seconds.'
                                  % (', '.join(str(p) for p in pids), self.path, timeout))
            time.sleep(0.05)
        for directory in self.directories():
            while os.path.isdir(directory):
                try:
                    os.rmdir(directory)
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        break
                    if exc.errno == errno.EBUSY and time.time() < deadline:
                        time.sleep(0.05)
                        continue
                    raise CgroupError('Cannot remove the cgroup %s: %s (does it have child cgroups?).'
                                      % (directory, _errno_text(exc)))
        return killed


def parse_proc_cgroup(text: str) -> Dict[str, str]:
    """/proc/<pid>/cgroup as ``{'memory': '/mtd/web', ..., '': '/unified/path'}``."""
    result = {}
    for line in (text or '').splitlines():
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        controllers = parts[1].split(',') if parts[1] else ['']
        for controller in controllers:
            result[controller] = parts[2]
    return result


def _counter_of_pid(pid: int, controller: str, v1_file: str, v2_file: str, layout: Optional[Layout],
                    proc: str) -> Optional[int]:
    """The integer in one counter file of the cgroup process ``pid`` is in (``v1_file`` in the v1 hierarchy
    of ``controller``, ``v2_file`` in the unified one), or None when it cannot be read."""
    try:
        layout = layout or Layout.from_host()
        with open(os.path.join(proc, str(pid), 'cgroup')) as handle:
            paths = parse_proc_cgroup(handle.read())
    except (CgroupError, IOError, OSError):
        return None
    if layout.version == 1 and controller in layout.v1_mounts and controller in paths:
        path = os.path.join(layout.v1_mounts[controller], paths[controller].lstrip('/'), v1_file)
    elif layout.unified and '' in paths:
        path = os.path.join(layout.unified, paths[''].lstrip('/'), v2_file)
    else:
        return None
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (IOError, OSError, ValueError):
        return None


def memory_usage_of_pid(pid: int, layout: Optional[Layout] = None, proc: str = '/proc') -> Optional[int]:
    """Bytes the memory cgroup of process ``pid`` charges now (v1 memory.usage_in_bytes, v2
    memory.current), or None when it cannot be read."""
    return _counter_of_pid(pid, 'memory', 'memory.usage_in_bytes', 'memory.current', layout, proc)


def pids_usage_of_pid(pid: int, layout: Optional[Layout] = None, proc: str = '/proc') -> Optional[int]:
    """Tasks the pids cgroup of process ``pid`` counts now (``pids.current``, v1 and v2), or None when it
    cannot be read."""
    return _counter_of_pid(pid, 'pids', 'pids.current', 'pids.current', layout, proc)


def freeze_cgroup_of_pid(pid: int, proc: str = '/proc', mountinfo_path: str = '/proc/self/mountinfo') -> str:
    """Freeze the freezer cgroup of process ``pid`` (v1 freezer.state FROZEN, v2 cgroup.freeze 1), the way
    the engine's pause does; returns the file written. Raises CgroupError.

    Used to keep a container frozen when a CRIU process that holds its tasks with ptrace (after thawing
    the freezer) has to be ended: the tasks then stay frozen and the engine's "paused" stays true.
    """
    try:
        with open(mountinfo_path) as handle:
            mounts = parse_mountinfo(handle.read())
        with open(os.path.join(proc, str(pid), 'cgroup')) as handle:
            paths = parse_proc_cgroup(handle.read())
    except (IOError, OSError) as exc:
        raise CgroupError('Cannot find the cgroup of process %s: %s.' % (pid, _errno_text(exc)))
    target: Optional[str] = None
    value = ''
    for mount in mounts:
        if mount['fstype'] == 'cgroup' and mount['root'] == '/' and 'freezer' in mount['super_options'] \
                and 'freezer' in paths:
            target = os.path.join(mount['mountpoint'], paths['freezer'].lstrip('/'), 'freezer.state')
            value = 'FROZEN'
            break
    if target is None:
        for mount in mounts:
            if mount['fstype'] == 'cgroup2' and mount['root'] == '/' and '' in paths:
                target = os.path.join(mount['mountpoint'], paths[''].lstrip('/'), 'cgroup.freeze')
                value = '1'
                break
    if target is None:
        raise CgroupError('Process %s has no freezer cgroup on this host.' % pid)
    try:
        with open(target, 'w') as handle:
            handle.write(value)
    except (IOError, OSError) as exc:
        raise CgroupError('Cannot freeze %s: %s.' % (target, _errno_text(exc)))
    return target
