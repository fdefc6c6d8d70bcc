# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure decisions of confinement under Docker's **systemd** cgroup driver (cgroup v2).

With that driver a container's cgroup parent is a systemd slice unit, not a path: ``--cgroup-parent
mtd-web.slice`` puts the container's scope at ``/mtd.slice/mtd-web.slice/docker-<id>.scope``. systemd owns
the slices' cgroup files and writes its own values into them whenever it realises a unit below (a container
start does), so the limits are the slice's unit **properties** (``systemctl set-property``), which systemd
writes to ``memory.max``, ``memory.swap.max``, ``cpu.max``, ``cpu.weight`` and ``pids.max``; the module reads
those files back to verify them.

This is a private module_utils file (leading underscore): its API may change without notice. No I/O.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

SLICE_SUFFIX = '.slice'
INFINITY = 'infinity'
# Characters systemd keeps as they are in a unit name component (systemd-escape); '-' separates levels.
_PLAIN = frozenset('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.')


def escape_component(text: str) -> str:
    """One level of a slice name escaped the way ``systemd-escape`` does: ``web-1`` -> ``web\\x2d1``.

    A '-' inside a level would make systemd nest the slice one level deeper (``mtd-web-1.slice`` lives in
    ``mtd-web.slice``, whose limits would then cap it too), so it is escaped like any other character outside
    ``[A-Za-z0-9:_.]``; a leading '.' is escaped as well.
    """
    out = []
    for index, char in enumerate(text):
        if char in _PLAIN and not (index == 0 and char == '.'):
            out.append(char)
        else:
            out.extend('\\x%02x' % byte for byte in char.encode('utf-8'))
    return ''.join(out)


def slice_unit(cgroup_parent: Optional[str], name: str) -> str:
    """The slice unit of a confinement level: (``mtd``, ``web-1``) -> ``mtd-web\\x2d1.slice``;
    (``mtd/team``, ``web``) -> ``mtd-team-web.slice``. Empty levels are dropped."""
    levels = [part for part in (cgroup_parent or '').split('/') + [name] if part]
    if not levels:
        raise ValueError('a slice needs at least one level')
    return '-'.join(escape_component(level) for level in levels) + SLICE_SUFFIX


def slice_cgroup_path(unit: str) -> str:
    """The cgroup path (relative to the v2 mount) systemd gives a slice: ``mtd-a-b.slice`` ->
    ``mtd.slice/mtd-a.slice/mtd-a-b.slice``; ``-.slice`` (the root slice) -> ``''``."""
    if not unit.endswith(SLICE_SUFFIX):
        raise ValueError('%s is not a slice unit' % unit)
    stem = unit[:-len(SLICE_SUFFIX)]
    if stem in ('', '-'):
        return ''
    parts = stem.split('-')
    return '/'.join('-'.join(parts[:index + 1]) + SLICE_SUFFIX for index in range(len(parts)))


def driver_refusal(driver: Optional[str], cgroup_version: int) -> Optional[str]:
    """A sentence why confine cannot work with this engine's cgroup driver here, else None."""
    driver = driver or 'cgroupfs'
    if driver == 'cgroupfs':
        return None
    if driver == 'systemd' and cgroup_version == 2:
        return None
    if driver == 'systemd':
        return ('The Docker engine uses the systemd cgroup driver on cgroup v%d; confine supports that driver on '
                'cgroup v2 only. Use the cgroupfs driver (exec-opts native.cgroupdriver=cgroupfs) on this host.'
                % cgroup_version)
    return ('The Docker engine uses the %s cgroup driver; confine supports the cgroupfs driver and, on cgroup v2, '
            'the systemd driver.' % driver)


def _size(value: Any) -> str:
    return INFINITY if value == 'max' else str(int(value))


def _permyriad(quota: Any, period: int) -> int:
    """quota / period in hundredths of a percent, rounded half up (integer arithmetic)."""
    return (int(quota) * 20000 + int(period)) // (2 * int(period))


def cpu_quota_percent(quota: Any, period: int) -> str:
    """systemd's CPUQuota= for ``quota`` us per ``period`` us: 50000/100000 -> ``50%``, 12345/100000 ->
    ``12.35%`` (systemd keeps two decimals; it writes quota = percent * period to cpu.max); max -> ``''``."""
    if quota == 'max':
        return ''
    permyriad = _permyriad(quota, period)
    if permyriad % 100 == 0:
        return '%d%%' % (permyriad // 100)
    return '%d.%02d%%' % (permyriad // 100, permyriad % 100)


def slice_properties(limits: Dict[str, Any]) -> List[str]:
    """``systemctl set-property`` assignments for normalised limits (see ``_cgroup``), in a fixed order.

    ``memory_swap`` is memory plus swap (Docker's meaning); systemd's MemorySwapMax is the swap alone, as is
    cgroup v2's memory.swap.max.
    """
    props = []
    memory = limits.get('memory')
    if memory is not None:
        props.append('MemoryMax=%s' % _size(memory))
    swap = limits.get('memory_swap')
    if swap is not None and memory is not None:
        only = 'max' if 'max' in (swap, memory) else int(swap) - int(memory)
        props.append('MemorySwapMax=%s' % _size(only))
    if limits.get('cpu_quota') is not None:
        period = int(limits.get('cpu_period') or 100000)
        props.append('CPUQuota=%s' % cpu_quota_percent(limits['cpu_quota'], period))
        props.append('CPUQuotaPeriodSec=%dus' % period)
    if limits.get('cpu_weight') is not None:
        props.append('CPUWeight=%d' % int(limits['cpu_weight']))
    if limits.get('pids') is not None:
        props.append('TasksMax=%s' % _size(limits['pids']))
    return props


def expected_cpu_quota(quota: Any, period: int) -> Any:
    """The cpu.max quota systemd writes for CPUQuota=cpu_quota_percent(quota, period): percent * period."""
    if quota == 'max':
        return 'max'
    permyriad = _permyriad(quota, period)
    return permyriad * int(period) // 10000
