# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pure decisions of container-mode confinement, shared by ``mtd.containers.confine`` and the modules that
create containers on a migration target (they can create a container confined from the start with
:func:`confine_host_config`, so that no recreation is needed later).

This is a private module_utils file (leading underscore): its API may change without notice. No I/O.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ansible_collections.mtd.containers.plugins.module_utils._cgroup import (
    MAX,
    format_size,
    normalise_limits,
)
from ansible_collections.mtd.containers.plugins.module_utils._systemd_slice import driver_refusal
from ansible_collections.mtd.containers.plugins.module_utils._seccomp import (
    docker_profile,
    find_seccomp_opt,
    profile_digest,
    seccomp_security_opt,
    security_opt_digest,
)

# Docker applies a seccomp profile to privileged containers only from this major version on (before it,
# the profile is silently ignored). Privileged containers are refused on every version; the number only
# makes the message precise.
PRIVILEGED_SECCOMP_MIN_MAJOR = 26
# Host namespaces a confined container may not share: the host's PID namespace shows every host process
# (their /proc/<pid>/root and /proc/<pid>/ns lead out of the container, signals and ptrace reach them); the
# host's IPC namespace shares the host's System V and POSIX IPC objects with the host processes. The network
# namespace is allowed (a migrated container runs with none or host networking; it gives no path to the
# cgroup files or host processes' files), as are UTS (changing it needs CAP_SYS_ADMIN and touches only the
# host name) and the user namespace.
REFUSED_HOST_NAMESPACES = (
    ('PidMode', 'PID', '--pid host'),
    ('IpcMode', 'IPC', '--ipc host'),
)
# HostConfig.CgroupnsMode exists from Engine API 1.41 (Docker 20.10).
CGROUPNS_MIN_API = (1, 41)

# Sockets that hand out control of the host: the container engines and the D-Bus buses.
FORBIDDEN_SOCKETS = (
    '/run/docker.sock',
    '/run/containerd/containerd.sock',
    '/run/dbus/system_bus_socket',
)
# Directories whose sockets are just as dangerous, whatever their names (per-user D-Bus session buses,
# rootless engines).
FORBIDDEN_SOCKET_DIRS = ('/run/user',)
# The host's cgroup filesystem must not be bound in either.
FORBIDDEN_CGROUPFS = '/sys/fs/cgroup'

# The option spec of the limits, shared by mtd.containers.confine (limits) and mtd.containers.restore
# (confine.limits): one definition, one normalisation (limits_from_params).
LIMITS_SPEC: Dict[str, Any] = dict(
    memory=dict(type='raw'),
    memory_swap=dict(type='raw'),
    cpus=dict(type='float'),
    cpu_period=dict(type='int', default=100000),
    cpu_weight=dict(type='int'),
    pids=dict(type='raw'),
)
# The label of a container that mtd.containers.restore created confined on arrival (value: its cgroup
# parent, such as /mtd/web-1). mtd.containers.confine takes such a container as confined by itself.
ARRIVAL_LABEL = 'mtd.confine.arrival'
# Its companion: why the container has no private cgroup namespace (the value names the reason).
ARRIVAL_CGROUPNS_LABEL = 'mtd.confine.cgroupns'

_VERSION_RE = re.compile(r'^\s*v?(\d+)(?:\.(\d+))?')


def engine_major(version: Any) -> Optional[int]:
    """The major version of a Docker engine version string (``20.10.24+dfsg1`` -> 20), or None."""
    match = _VERSION_RE.match(str(version or ''))
    return int(match.group(1)) if match else None


def api_at_least(api_version: Any, minimum: Tuple[int, int]) -> bool:
    match = _VERSION_RE.match(str(api_version or ''))
    if not match:
        return False
    return (int(match.group(1)), int(match.group(2) or 0)) >= minimum


def cgroup_parent_path(cgroup_parent: Optional[str], name: str) -> str:
    """The container's cgroup parent as Docker's cgroupfs driver takes it: ``/mtd/web-1``."""
    return '/' + '/'.join(part for part in (cgroup_parent or '').split('/') + [name] if part)


def _canonical_host_path(path):
    path = posixpath.normpath('/' + (path or '').lstrip('/'))
    if path == '/var/run' or path.startswith('/var/run/'):
        path = '/run' + path[len('/var/run'):]
    return path


def bind_sources(inspect: Dict[str, Any]) -> List[str]:
    """Host paths bound into the container (HostConfig.Binds, HostConfig.Mounts and the inspect's Mounts)."""
    sources = []
    host_config = inspect.get('HostConfig') or {}
    for bind in host_config.get('Binds') or []:
        source = bind.split(':', 1)[0]
        if source.startswith('/'):
            sources.append(source)
    for mount in host_config.get('Mounts') or []:
        if mount.get('Type') == 'bind' and mount.get('Source'):
            sources.append(mount['Source'])
    for mount in inspect.get('Mounts') or []:
        if mount.get('Type') == 'bind' and mount.get('Source'):
            sources.append(mount['Source'])
    unique = []
    for source in sources:
        if source not in unique:
            unique.append(source)
    return unique


def forbidden_binds(inspect: Dict[str, Any], extra_sockets: Sequence[str] = ()) -> List[Tuple[str, str]]:
    """``[(source, reason)]`` for binds that expose an engine or D-Bus socket, or the host cgroupfs.

    A bind of a directory above a socket (``/run``, ``/var/run``, ``/``) exposes it too.
    """
    sockets = [_canonical_host_path(s) for s in FORBIDDEN_SOCKETS + tuple(extra_sockets or ())]
    found = []
    for source in bind_sources(inspect):
        path = _canonical_host_path(source)
        reason = None
        for socket_path in sockets:
            if path == socket_path or socket_path.startswith(path.rstrip('/') + '/'):
                reason = 'exposes the socket %s' % socket_path
                break
        if reason is None:
            for directory in FORBIDDEN_SOCKET_DIRS:
                if path == directory or path.startswith(directory + '/') or directory.startswith(path.rstrip('/') + '/'):
                    reason = 'exposes the user sockets under %s (D-Bus session buses)' % directory
                    break
        if reason is None:
            if path == FORBIDDEN_CGROUPFS or path.startswith(FORBIDDEN_CGROUPFS + '/') \
                    or FORBIDDEN_CGROUPFS.startswith(path.rstrip('/') + '/'):
                reason = 'exposes the host cgroup filesystem %s' % FORBIDDEN_CGROUPFS
        if reason:
            found.append((source, reason))
    return found


def _display_name(inspect: Dict[str, Any]) -> str:
    return (inspect.get('Name') or '').lstrip('/') or inspect.get('Id', '')[:12]


def privileged_refusal(inspect: Dict[str, Any], engine_version: Optional[str]) -> Optional[str]:
    """A sentence why a privileged container cannot be confined (on every engine version), else None.

    A privileged container has every capability and every host device, and its cgroup filesystem is mounted
    read-write: no filter keeps it in its cgroup (and Docker < 26 does not even apply the profile).
    """
    if not (inspect.get('HostConfig') or {}).get('Privileged'):
        return None
    major = engine_major(engine_version)
    ignored = (' (and Docker %s ignores seccomp profiles of privileged containers)' % engine_version
               if major is not None and major < PRIVILEGED_SECCOMP_MIN_MAJOR else '')
    return ('Container %s is privileged: it holds every capability and host device and a writable cgroup '
            'filesystem%s, so it cannot be confined. Recreate it without --privileged, with the capabilities it '
            'needs (for example --cap-add SYS_ADMIN), and run confine again.' % (_display_name(inspect), ignored))


def host_namespace_refusal(inspect: Dict[str, Any]) -> Optional[str]:
    """A sentence why a container that shares the host's PID or IPC namespace cannot be confined, else None."""
    host_config = inspect.get('HostConfig') or {}
    shared = [(label, option) for key, label, option in REFUSED_HOST_NAMESPACES
              if str(host_config.get(key) or '').strip().lower() == 'host']
    if not shared:
        return None
    return ('Container %s shares the host\'s %s namespace%s (%s): host processes and their files are reachable '
            'from it, so it cannot be confined. Recreate it without %s and run confine again.'
            % (_display_name(inspect), ' and '.join(s[0] for s in shared), 's' if len(shared) > 1 else '',
               ', '.join(s[1] for s in shared), ' and '.join(s[1] for s in shared)))


def container_cpu_quota(inspect: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    """The container's own CPU bandwidth as (quota_us, period_us), or None when it has none."""
    host_config = inspect.get('HostConfig') or {}
    if host_config.get('NanoCpus'):
        return int(host_config['NanoCpus'] * 100000 // 1000000000), 100000
    if host_config.get('CpuQuota') and host_config['CpuQuota'] > 0:
        return int(host_config['CpuQuota']), int(host_config.get('CpuPeriod') or 100000)
    return None


def cpu_conflict(inspect: Dict[str, Any], limits: Dict[str, Any]) -> Optional[str]:
    """A sentence when the container's own --cpus exceeds the confinement's cpus (v1 refuses that)."""
    own = container_cpu_quota(inspect)
    quota = limits.get('cpu_quota')
    if own is None or quota in (None, 'max'):
        return None
    period = limits.get('cpu_period') or 100000
    own_cpus = own[0] / float(own[1])
    if own_cpus > quota / float(period) + 1e-9:
        return ('Container %s has its own CPU limit of %s CPUs, more than the confinement\'s %s; the kernel refuses '
                'a child cgroup more bandwidth than its parent. Lower the container\'s limit or raise cpus.'
                % ((inspect.get('Name') or '').lstrip('/'), round(own_cpus, 3), round(quota / float(period), 3)))
    return None


def desired_confinement(cgroup_parent: str, cgroupns: bool) -> Dict[str, Any]:
    """What a confined container's HostConfig carries: ``{cgroup_parent, seccomp_sha256, cgroupns_mode}``."""
    return {
        'cgroup_parent': cgroup_parent,
        'seccomp_sha256': profile_digest(docker_profile()),
        'cgroupns_mode': 'private' if cgroupns else None,
    }


def current_confinement(inspect: Dict[str, Any]) -> Dict[str, Any]:
    """The same three facts read from a container's inspect."""
    host_config = inspect.get('HostConfig') or {}
    return {
        'cgroup_parent': host_config.get('CgroupParent') or None,
        'seccomp_sha256': security_opt_digest(host_config.get('SecurityOpt')),
        'cgroupns_mode': host_config.get('CgroupnsMode') or None,
    }


def confinement_differences(current: Dict[str, Any], desired: Dict[str, Any]) -> List[str]:
    """The keys whose values differ (``cgroupns_mode`` only when a mode is wanted)."""
    keys = []
    for key in ('cgroup_parent', 'seccomp_sha256', 'cgroupns_mode'):
        if key == 'cgroupns_mode' and desired.get(key) is None:
            continue
        if (current.get(key) or None) != (desired.get(key) or None):
            keys.append(key)
    return keys


def confine_host_config(host_config: Optional[Dict[str, Any]], cgroup_parent: str,
                        cgroupns: bool = True) -> Dict[str, Any]:
    """A copy of ``host_config`` with the confinement: the cgroup parent, the inline seccomp profile in
    place of any other seccomp option, and a private cgroup namespace when ``cgroupns``."""
    result = dict(host_config or {})
    result['CgroupParent'] = cgroup_parent
    options = list(result.get('SecurityOpt') or [])
    while True:
        index, dummy = find_seccomp_opt(options)
        if index is None:
            break
        options.pop(index)
    options.append(seccomp_security_opt(docker_profile()))
    result['SecurityOpt'] = options
    if cgroupns:
        result['CgroupnsMode'] = 'private'
    return result


# Kinds of GET /containers/{id}/changes.
CHANGE_MODIFIED = 0
CHANGE_ADDED = 1
CHANGE_DELETED = 2


def mount_destinations(inspect: Dict[str, Any]) -> List[str]:
    """Where volumes and binds are mounted in the container: their data is not in the writable layer."""
    return sorted(set(m['Destination'] for m in inspect.get('Mounts') or [] if m.get('Destination')))


def _under(path, directories):
    return any(path == d or path.startswith(d.rstrip('/') + '/') for d in directories)


def plan_layer_copy(changes: Sequence[Dict[str, Any]],
                    exclude: Sequence[str] = ()) -> Tuple[List[Tuple[str, int]], List[str]]:
    """Which paths to copy from an old container's writable layer to its replacement.

    Returns ``(copy, deleted)``: ``copy`` is a sorted list of ``(path, kind)``: every added path whose
    parent was not added too (the archive of a directory carries its content) and every modified path
    (the caller skips modified directories: their changed children are listed on their own);
    ``deleted`` lists deleted paths, which the archive API cannot replay. Paths at or under ``exclude``
    (the mount destinations: volumes are reattached, not copied) are left out.
    """
    added = set(c['Path'] for c in changes or [] if c.get('Kind') == CHANGE_ADDED)
    copy = []
    deleted = []
    for change in sorted(changes or [], key=lambda c: c.get('Path', '')):
        path, kind = change.get('Path'), change.get('Kind')
        if not path or path == '/' or _under(path, exclude):
            continue
        parent = posixpath.dirname(path)
        covered = False
        while parent not in ('/', ''):
            if parent in added:
                covered = True
                break
            parent = posixpath.dirname(parent)
        if kind == CHANGE_DELETED:
            if not covered:
                deleted.append(path)
            continue
        if covered:
            continue
        if kind in (CHANGE_ADDED, CHANGE_MODIFIED):
            copy.append((path, kind))
    return copy, deleted


# ---------------------------------------------------------------------------------------------------
# Shared by both confinement paths: mtd.containers.confine (recreate) and mtd.containers.restore
# (confinement on arrival, option confine)

def limits_from_params(limits: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Normalised limits from an option shaped like :data:`LIMITS_SPEC`; raises CgroupError."""
    limits = limits or {}
    return normalise_limits(
        memory=limits.get('memory'),
        memory_swap=limits.get('memory_swap'),
        cpus=limits.get('cpus'),
        cpu_period=limits.get('cpu_period') if limits.get('cpus') is not None else None,
        cpu_weight=limits.get('cpu_weight'),
        pids=limits.get('pids'),
    )


def container_refusal(inspect: Dict[str, Any], engine_version: Optional[str], info: Dict[str, Any],
                      limits: Dict[str, Any], engine_socket: Optional[str],
                      cgroup_version: int) -> Optional[Tuple[str, Dict[str, Any]]]:
    """``(sentence, details)`` when the container (an inspect, or a create body shaped like one) cannot be
    confined on this engine, else None: privileged, host PID/IPC, forbidden binds, no seccomp, a cgroup
    driver it cannot use on this ``cgroup_version`` (cgroupfs; systemd on v2 only, its levels are slices),
    its own CPU limit above the confinement's. Shared by confine and restore's confinement on arrival."""
    refusal = privileged_refusal(inspect, engine_version) or host_namespace_refusal(inspect)
    if refusal:
        return refusal, {}
    bad = forbidden_binds(inspect, [engine_socket] if engine_socket else [])
    if bad:
        source, reason = bad[0]
        return ('Container %s bind-mounts %s, which %s; a confined container must not have it. Remove that mount '
                'and run confine again.' % (_display_name(inspect), source, reason),
                {'forbidden_binds': [b[0] for b in bad]})
    options = ' '.join(info.get('SecurityOptions') or [])
    if 'seccomp' not in options:
        return ('The Docker engine has no seccomp support (SecurityOptions: %s), so the container cannot be '
                'confined.' % (options or 'none'), {})
    refusal = driver_refusal(info.get('CgroupDriver'), cgroup_version)
    if refusal:
        return refusal, {}
    conflict = cpu_conflict(inspect, limits)
    if conflict:
        return conflict, {}
    return None


def usage_refusal(name: str, limits: Dict[str, Any], usage: Optional[Dict[str, Any]]) -> Optional[str]:
    """A sentence when the container's current usage on its source (``{'memory': bytes, 'pids': tasks}``,
    None = unknown) does not fit the limits it is to be restored under, else None.

    A restored tree needs at least the memory it had (CRIU restores every page) and as many tasks: under a
    lower limit the restore would be OOM-killed or fail at fork, after the source was frozen.
    """
    usage = usage or {}
    problems = []
    memory, swap = limits.get('memory'), limits.get('memory_swap')
    used = usage.get('memory')
    ceiling = min([v for v in (memory, swap) if v not in (None, MAX)] or [0])
    if used is not None and ceiling and int(used) >= ceiling:
        problems.append('memory %s is at or above the limit %s' % (format_size(int(used)), format_size(ceiling)))
    pids, tasks = limits.get('pids'), usage.get('pids')
    if tasks is not None and pids not in (None, MAX) and int(tasks) >= int(pids):
        problems.append('%d tasks reach the pids limit %d' % (int(tasks), int(pids)))
    if not problems:
        return None
    return ('Container %s uses more than its confinement on arrival allows (%s); raise the limits or leave '
            'confinement off - nothing was frozen.' % (name, ', '.join(problems)))


def arrival_labels(cgroup_parent: str, cgroupns_reason: Optional[str]) -> Dict[str, str]:
    """The labels of a container confined on arrival (see :data:`ARRIVAL_LABEL`)."""
    labels = {ARRIVAL_LABEL: cgroup_parent}
    if cgroupns_reason:
        labels[ARRIVAL_CGROUPNS_LABEL] = cgroupns_reason
    return labels


def recognised_differences(differences: List[str], inspect: Dict[str, Any], desired: Dict[str, Any]) -> List[str]:
    """``differences`` less those a container confined on arrival has by design.

    restore's confinement on arrival keeps the host cgroup namespace where CRIU cannot restore into a new
    one (the container is labelled with the reason, :data:`ARRIVAL_CGROUPNS_LABEL`); with the same cgroup
    parent and profile that container is confined as this module would confine it, and recreating it would
    only throw its memory away.
    """
    labels = (inspect.get('Config') or {}).get('Labels') or {}
    if labels.get(ARRIVAL_LABEL) != desired.get('cgroup_parent') or not labels.get(ARRIVAL_CGROUPNS_LABEL):
        return differences
    return [d for d in differences if d != 'cgroupns_mode']


def limits_mismatch(wanted: Dict[str, Any], found: Optional[Dict[str, Any]]) -> List[str]:
    """The keys of ``wanted`` (normalised limits) whose values ``found`` (read_limits) does not have."""
    found = found or {}
    return [key for key in sorted(wanted) if wanted[key] is not None and found.get(key) != wanted[key]]


def cgroup_outside(paths: Dict[str, str], level: str, controllers: Sequence[str]) -> List[str]:
    """The controllers whose path (parse_proc_cgroup of a restored task) is not at or below ``level``."""
    level = '/' + level.strip('/')
    return [c for c in controllers if c in paths and not (paths[c] == level or paths[c].startswith(level + '/'))]


# Why a restored container keeps the host cgroup namespace (the value of ARRIVAL_CGROUPNS_LABEL).
CGROUPNS_KEPT_REASON = 'host-as-dumped'


def arrival_cgroupns(requested: str, captured_mode: Optional[str], cgroup_version: int) -> Tuple[str, Optional[str]]:
    """``(mode, refusal)``: the cgroup namespace mode the standby gets (``private`` or ``host``), or a sentence.

    runc checkpoints a container's cgroup v1 mounts as external bind mounts when it has no cgroup namespace of
    its own, and on restore gives CRIU those bind mounts only when the new container has none either (with one,
    it expects real cgroup mounts): CRIU then fails with "No mapping for ... mountpoint". CRIU also creates a
    cgroup namespace only for a task that had one when it was dumped. So the mode is the source's: ``auto`` takes
    it (Docker's default when the configuration names none - host on cgroup v1, private on v2), and a different
    mode is refused before the freeze.
    """
    source = (captured_mode or '').strip().lower() or ('host' if cgroup_version == 1 else 'private')
    if requested in (None, '', 'auto') or requested == source:
        return source, None
    return source, ('A private cgroup namespace cannot be given on arrival to a container that ran without one '
                    '(CRIU restores the namespace it dumped, and runc restores cgroup v1 mounts only into the same '
                    'mode); use cgroupns auto, or confine it with mtd.containers.confine (recreated).'
                    if requested == 'private' else
                    'The container ran in a private cgroup namespace; it cannot be restored into the host\'s. Use '
                    'cgroupns auto.')
