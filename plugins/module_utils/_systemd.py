# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The systemd client of confinement under Docker's **systemd** cgroup driver (cgroup v2): one slice unit.

With that driver a container's cgroup parent is a slice unit (``mtd-web.slice``), its cgroup is
``<slice path>/docker-<id>.scope``, and systemd owns the slices' files: the limits are the slice's unit
properties, read back from the files systemd writes. The decisions (unit names, property values) are
``_systemd_slice``'s; this file runs ``systemctl``. Used by mtd.containers.confine (container mode) and by
mtd.containers.restore (confinement on arrival).

This is a private module_utils file (leading underscore): its API may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from ansible_collections.mtd.containers.plugins.module_utils import _cgroup as cgroup_lib
from ansible_collections.mtd.containers.plugins.module_utils._cmd import CmdRunner
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._systemd_slice import (
    expected_cpu_quota,
    slice_cgroup_path,
    slice_properties,
    slice_unit,
)


def uses_systemd_driver(info: Optional[Dict[str, Any]]) -> bool:
    """True when the engine (its ``/info``) puts containers in systemd scopes."""
    return ((info or {}).get('CgroupDriver') or 'cgroupfs') == 'systemd'


def quota_refusal(limits: Dict[str, Any]) -> Optional[str]:
    """A sentence when the CPU quota cannot be given through CPUQuota= (two decimals of a percent), else None."""
    quota = limits.get('cpu_quota')
    period = limits.get('cpu_period') or cgroup_lib.DEFAULT_CPU_PERIOD
    if quota is not None and expected_cpu_quota(quota, period) != quota:
        return ('cpus gives a quota of %s us per %s us, which systemd cannot express (CPUQuota keeps two decimals '
                'of a percent); round cpus to a multiple of 0.0001.' % (quota, period))
    return None


class SliceLevel:
    """The confinement level ``<cgroup_parent>/<name>`` as a systemd slice unit and its cgroup."""

    def __init__(self, layout: cgroup_lib.Layout, cgroup_parent: Optional[str], name: str,
                 systemctl: Optional[CmdRunner] = None) -> None:
        # the level's plain form is checked like the cgroupfs one before it is escaped into a unit name
        cgroup_lib.validate_relative_path('%s/%s' % (cgroup_parent or '', name))
        self.layout = layout
        self.unit = slice_unit(cgroup_parent, name)
        self.cgroup = cgroup_lib.Cgroup(layout, slice_cgroup_path(self.unit))
        self.systemctl = systemctl or CmdRunner('systemctl', timeout=60)

    def scope(self, cid: str) -> cgroup_lib.Cgroup:
        """The cgroup Docker's systemd driver gives the container ``cid`` below this slice."""
        return cgroup_lib.Cgroup(self.layout, '%s/docker-%s.scope' % (self.cgroup.path, cid))

    def apply(self, limits: Dict[str, Any], before: Optional[Dict[str, Any]],
              writes: Sequence[Any]) -> Tuple[Optional[Dict[str, Any]], bool]:
        """Give the slice ``limits`` as unit properties, start it and read its files back: ``(the limits they
        hold, whether properties were set)``. ``before`` is the level's limits (None: no level yet) and
        ``writes`` the cgroup plan against them (``Cgroup.plan``): limits below the current usage are refused
        first, and the properties are set when the level is new or the plan has writes. MtdError when a file
        does not hold its limit (systemd rewrites the files of the slices it manages whenever it realises a
        unit below them, so only its properties last)."""
        refusal = quota_refusal(limits)
        if refusal:
            raise MtdError(refusal)
        if before is not None:
            self.cgroup.check_usage(writes)
        write = bool(writes) or before is None
        if write:
            self.systemctl.run(['set-property', self.unit] + slice_properties(limits), check=True,
                               what='systemctl set-property %s' % self.unit)
        self.systemctl.run(['start', self.unit], check=True, what='systemctl start %s' % self.unit)
        after = self.cgroup.read_limits()
        wrong: List[str] = [key for key in cgroup_lib.LIMIT_KEYS if key in limits
                            and (after or {}).get(key) != limits[key]]
        if wrong:
            raise MtdError('The slice %s does not hold the limits systemd was given (%s differ in %s); check '
                           'systemctl show %s.' % (self.unit, ', '.join(wrong), self.cgroup.directory(), self.unit),
                           limits=after)
        return after, write

    def remove(self) -> None:
        """Stop the slice and drop its properties (best effort: used on a failure path)."""
        self.systemctl.run(['stop', self.unit])
        self.systemctl.run(['revert', self.unit])
