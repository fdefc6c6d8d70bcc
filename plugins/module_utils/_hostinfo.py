# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pure parsers for the host facts of mtd.containers (see docs/facts-schema.md).

This is a private module_utils file (leading underscore): its API may change without notice.
Nothing here does I/O: the callers read /proc, /etc/os-release, the local fact file and the Docker
Engine API and hand the text or the decoded JSON to these functions. Python 3.8+.
"""

from __future__ import annotations

import datetime
import json
import math
import posixpath
import re
from typing import Any, Dict, List, Optional, Tuple, Union

# One mountinfo parser for the collection (also used by the confine launcher, which is standalone).
from ansible_collections.mtd.containers.plugins.module_utils._cgroup import parse_mountinfo
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError


class HostInfoError(MtdError, ValueError):
    """Input that cannot be used; the message is one sentence the user can act on."""


# ---------------------------------------------------------------------------------------------
# Small number helpers

MIB = 1048576


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def round_cpus(value: Any) -> float:
    """CPUs are floats; keep three decimals so that sums like 0.1 + 0.2 print as 0.3."""
    return round(float(value), 3)


def round_mb(value: Any) -> Union[int, float]:
    """MiB figures are integers when whole, else floats with two decimals."""
    value = float(value)
    if value.is_integer():
        return int(value)
    return round(value, 2)


def bytes_to_mb(value: Any) -> Union[int, float]:
    return round_mb(float(value) / MIB)


# ---------------------------------------------------------------------------------------------
# /etc/os-release

_OS_RELEASE_KEY = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
_DQ_ESCAPE = re.compile(r'\\([\\$"`])')


def _os_release_value(raw):
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        # Shell double quotes: only \\ \$ \" \` are escapes.
        return _DQ_ESCAPE.sub(r'\1', raw[1:-1])
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    return raw


def parse_os_release(text: Optional[str]) -> Dict[str, str]:
    """Parse os-release(5) text into a dict of all its variables.

    Blank lines, comments and malformed lines are skipped, as the specification asks.
    """
    result = {}
    for line in (text or '').splitlines():
        line = line.strip()
        if not line or line.startswith('#') or '=' not in line:
            continue
        key, value = line.split('=', 1)
        key = key.strip()
        if not _OS_RELEASE_KEY.match(key):
            continue
        result[key] = _os_release_value(value)
    return result


def os_facts(os_release: Optional[Dict[str, str]], kernel: str, arch: str) -> Dict[str, Any]:
    """The ``os`` part of the facts from a parse_os_release() dict, ``uname -r`` and the machine."""
    os_release = os_release or {}
    os_id = os_release.get('ID', '') or 'linux'
    name = os_release.get('NAME', '') or 'Linux'
    return {
        'id': os_id,
        'version_id': os_release.get('VERSION_ID', ''),
        'name': name,
        'pretty_name': os_release.get('PRETTY_NAME', '') or name,
        'kernel': kernel,
        'arch': arch,
    }


# ---------------------------------------------------------------------------------------------
# /proc/meminfo and /proc/cpuinfo

_MEMINFO_LINE = re.compile(r'^(?P<key>[A-Za-z0-9_()]+):\s+(?P<value>\d+)(?:\s+(?P<unit>[kKmMgG]B))?\s*$')
_UNIT_FACTOR = {None: 1, 'kb': 1024, 'mb': 1024 ** 2, 'gb': 1024 ** 3}


def parse_meminfo(text: str) -> int:
    """Return MemTotal from /proc/meminfo text in MiB (an integer, rounded down).

    Raises HostInfoError when the text has no MemTotal line.
    """
    for line in (text or '').splitlines():
        match = _MEMINFO_LINE.match(line.strip())
        if match and match.group('key') == 'MemTotal':
            unit = match.group('unit')
            factor = _UNIT_FACTOR[unit.lower() if unit else None]
            return int(match.group('value')) * factor // MIB
    raise HostInfoError('no MemTotal line in the meminfo text')


# x86/arm: "processor\t: 0"; s390x: "processor 0: version = ...".
_CPUINFO_PROCESSOR = re.compile(r'^processor(?:\s+\d+)?\s*:', re.MULTILINE)


# The user-visible x86 instruction-set extensions of /proc/cpuinfo's flags: what a process may have chosen at
# its start (glibc's ifuncs and hwcaps, a JIT) and would execute again after a restore. Kernel-only flags
# (xsaves, pcid, x2apic, ...) and the hypervisor's are left out: they do not decide what user code runs.
USER_ISA_FLAGS = frozenset([
    '3dnow', '3dnowext', 'abm', 'adx', 'aes', 'amx_bf16', 'amx_fp16', 'amx_int8', 'amx_tile', 'avx', 'avx2',
    'avx512_bf16', 'avx512_bitalg', 'avx512_fp16', 'avx512_vbmi2', 'avx512_vnni', 'avx512_vp2intersect',
    'avx512_vpopcntdq', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512f', 'avx512ifma', 'avx512vbmi', 'avx512vl',
    'avx_ifma', 'avx_vnni', 'avx_vnni_int8', 'bmi1', 'bmi2', 'cldemote', 'clflushopt', 'clwb', 'cx16', 'erms',
    'f16c', 'fma', 'fma4', 'fsrm', 'gfni', 'hle', 'mmxext', 'movbe', 'movdir64b', 'movdiri', 'pclmulqdq', 'pku',
    'popcnt', 'rdpid', 'rdrand', 'rdseed', 'rtm', 'serialize', 'sha_ni', 'sse3', 'sse4_1', 'sse4_2', 'sse4a',
    'ssse3', 'tsxldtrk', 'vaes', 'vpclmulqdq', 'waitpkg', 'xop', 'xsavec', 'xsaveopt',
])


def cpu_isa_flags(text: str) -> Optional[List[str]]:
    """The user-visible instruction-set flags (USER_ISA_FLAGS) of the first CPU in /proc/cpuinfo text, sorted;
    None when the text has no ``flags`` line (another architecture). Pure."""
    for line in text.splitlines():
        key, sep, value = line.partition(':')
        if sep and key.strip() == 'flags':
            return sorted(set(value.split()) & USER_ISA_FLAGS)
    return None


def count_cpus(text: str) -> int:
    """Number of logical CPUs listed in /proc/cpuinfo text (0 when none is recognised).

    This is the host capacity: cgroup quotas and the affinity mask of the caller are deliberately
    ignored. When it returns 0 the caller falls back to ``os.sched_getaffinity`` / ``os.cpu_count``.
    """
    return len(_CPUINFO_PROCESSOR.findall(text or ''))


# ---------------------------------------------------------------------------------------------
# cgroups from /proc/self/mountinfo

# The cgroup v1 controllers (subsystems) of Linux; v1 is frozen, so the list is complete. Other
# superblock options (rw, xattr, seclabel, name=systemd, release_agent=...) are not controllers.
CGROUP_V1_CONTROLLERS = frozenset([
    'blkio', 'cpu', 'cpuacct', 'cpuset', 'debug', 'devices', 'freezer', 'hugetlb', 'memory', 'misc',
    'net_cls', 'net_prio', 'perf_event', 'pids', 'rdma',
])


def detect_cgroup(mountinfo_text: str) -> Dict[str, Any]:
    """Find the cgroup layout from /proc/self/mountinfo text.

    Returns ``{'version', 'mountpoint', 'controllers', 'unified_mountpoint'}``:

    - cgroup v1 (controllers on ``cgroup`` mounts): version 1, mountpoint the parent directory of the
      controller mounts (``/sys/fs/cgroup``), controllers the v1 controllers found;
    - hybrid (v1 controllers plus a ``cgroup2`` mount such as ``/sys/fs/cgroup/unified``): version 1,
      with that cgroup2 mount in ``unified_mountpoint``;
    - cgroup v2 (unified): version 2, mountpoint the ``cgroup2`` mount and controllers empty: the caller
      reads ``<mountpoint>/cgroup.controllers`` and passes it to parse_cgroup_controllers();
    - nothing mounted: version None.
    """
    v1_controllers = []
    v1_parents = []
    v1_named = []
    unified = None
    for mount in parse_mountinfo(mountinfo_text):
        if mount['fstype'] == 'cgroup2':
            if unified is None:
                unified = mount['mountpoint']
        elif mount['fstype'] == 'cgroup':
            controllers = [opt for opt in mount['super_options'] if opt in CGROUP_V1_CONTROLLERS]
            parent = posixpath.dirname(mount['mountpoint'].rstrip('/')) or '/'
            if controllers:
                v1_parents.append(parent)
                for controller in controllers:
                    if controller not in v1_controllers:
                        v1_controllers.append(controller)
            else:
                v1_named.append(parent)

    if v1_controllers or (v1_named and unified is None):
        parents = v1_parents or v1_named
        # The most frequent parent directory; ties go to the first one seen.
        mountpoint = max(parents, key=parents.count)
        return {
            'version': 1,
            'mountpoint': mountpoint,
            'controllers': sorted(v1_controllers),
            'unified_mountpoint': unified,
        }
    if unified is not None:
        return {
            'version': 2,
            'mountpoint': unified,
            'controllers': [],
            'unified_mountpoint': unified,
        }
    return {'version': None, 'mountpoint': None, 'controllers': [], 'unified_mountpoint': None}


def parse_cgroup_controllers(text: Optional[str]) -> List[str]:
    """Controllers listed in a cgroup v2 ``cgroup.controllers`` file, sorted."""
    return sorted(set((text or '').split()))


# ---------------------------------------------------------------------------------------------
# Timestamps

_TIMESTAMP = re.compile(
    r'^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?'
    r'(?P<tz>[Zz]|[+-]\d{2}:?\d{2})?$'
)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def format_timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 UTC with second precision: ``2026-11-28T09:30:01Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_timestamp(text: Optional[str]) -> Optional[float]:
    """Parse a Docker timestamp (RFC 3339, up to nanoseconds) into epoch seconds (float).

    Returns None for an empty value and for Go's zero time ``0001-01-01T00:00:00Z`` (never started).
    Raises HostInfoError for anything else that is not a timestamp.
    """
    if not text:
        return None
    match = _TIMESTAMP.match(text.strip())
    if not match:
        raise HostInfoError('cannot parse timestamp %r' % (text,))
    if match.group('date') == '0001-01-01':
        return None
    try:
        moment = datetime.datetime.strptime(
            '%s %s' % (match.group('date'), match.group('time')), '%Y-%m-%d %H:%M:%S')
    except ValueError:
        raise HostInfoError('invalid timestamp %r' % (text,))
    epoch = (moment.replace(tzinfo=datetime.timezone.utc) - _EPOCH).total_seconds()
    if match.group('fraction'):
        epoch += float('0.' + match.group('fraction'))
    tz = match.group('tz')
    if tz and tz not in ('Z', 'z'):
        digits = tz[1:].replace(':', '')
        offset = int(digits[:2]) * 3600 + int(digits[2:]) * 60
        epoch += -offset if tz[0] == '+' else offset
    return epoch


def epoch_to_rfc3339(epoch: Optional[float]) -> Optional[str]:
    if epoch is None:
        return None
    return format_timestamp(_EPOCH + datetime.timedelta(seconds=int(math.floor(epoch))))


def _now_epoch(now):
    if now is None:
        now = utc_now()
    if isinstance(now, datetime.datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=datetime.timezone.utc)
        return (now - _EPOCH).total_seconds()
    return float(now)


# ---------------------------------------------------------------------------------------------
# Containers (from GET /containers/{id}/json)

_TRUE_LABEL = ('true', 'yes', '1')
_SEVERITIES = ('low', 'medium', 'high')
_DEFAULT_CPU_PERIOD = 100000  # microseconds; the kernel's CFS default used when CpuPeriod is 0


def _int_label(value):
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def container_reservations(inspect: Dict[str, Any]) -> Dict[str, Any]:
    """``{cpus, memory_mb, units}`` a container reserves, per docs/facts-schema.md.

    cpus = NanoCpus / 1e9, else CpuQuota / CpuPeriod, else 0; memory_mb = Memory, else
    MemoryReservation, else 0 (bytes / 1048576); units = the integer label ``mtd.units``, else 0.
    """
    host_config = (inspect or {}).get('HostConfig') or {}
    labels = ((inspect or {}).get('Config') or {}).get('Labels') or {}

    cpus = 0.0
    nano_cpus = host_config.get('NanoCpus') or 0
    quota = host_config.get('CpuQuota') or 0
    period = host_config.get('CpuPeriod') or 0
    if nano_cpus > 0:
        cpus = nano_cpus / 1e9
    elif quota > 0:
        cpus = float(quota) / (period if period > 0 else _DEFAULT_CPU_PERIOD)

    memory = host_config.get('Memory') or 0
    if memory <= 0:
        memory = host_config.get('MemoryReservation') or 0

    units = _int_label(labels.get('mtd.units'))
    if units is None or units < 0:
        units = 0

    return {
        'cpus': round_cpus(cpus),
        'memory_mb': bytes_to_mb(max(memory, 0)),
        'units': units,
    }


def _container_ip(inspect):
    settings = inspect.get('NetworkSettings') or {}
    networks = settings.get('Networks') or {}
    for network in networks.values():
        if network and network.get('IPAddress'):
            return network['IPAddress']
    if settings.get('IPAddress'):
        return settings['IPAddress']
    for network in networks.values():
        if network and network.get('GlobalIPv6Address'):
            return network['GlobalIPv6Address']
    return None


def _severity(value):
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in _SEVERITIES:
        return text
    return _int_label(text)


def container_summary(inspect: Dict[str, Any], now: Any = None) -> Dict[str, Any]:
    """The per-container dict of docs/facts-schema.md from a container inspect result.

    ``now`` is an aware datetime or epoch seconds (default: the current time); uptime_seconds is
    ``now - State.StartedAt`` for a running container and 0.0 otherwise.
    """
    inspect = inspect or {}
    config = inspect.get('Config') or {}
    state = inspect.get('State') or {}
    labels = config.get('Labels') or {}

    created = parse_timestamp(inspect.get('Created'))
    started = parse_timestamp(state.get('StartedAt'))
    uptime = 0.0
    if started is not None and state.get('Running'):
        uptime = round(max(_now_epoch(now) - started, 0.0), 3)

    status = state.get('Status')
    if not status:
        status = 'running' if state.get('Running') else 'unknown'

    return {
        'id': inspect.get('Id'),
        'name': (inspect.get('Name') or '').lstrip('/'),
        'image': config.get('Image'),
        'image_id': inspect.get('Image'),
        'state': status,
        'created': epoch_to_rfc3339(created),
        'started_at': epoch_to_rfc3339(started),
        'uptime_seconds': uptime,
        'labels': dict(labels),
        'ip': _container_ip(inspect),
        'network_mode': (inspect.get('HostConfig') or {}).get('NetworkMode'),
        'reservations': container_reservations(inspect),
        'attacked': str(labels.get('mtd.attacked', '')).strip().lower() in _TRUE_LABEL,
        'severity': _severity(labels.get('mtd.severity')),
    }


# ---------------------------------------------------------------------------------------------
# Capacity, reservations and the local fact

CAPACITY_KEYS = ('cpus', 'memory_mb', 'units')


def zero_reservations() -> Dict[str, Any]:
    return {'cpus': 0.0, 'memory_mb': 0, 'units': 0}


def sum_reservations(reservations: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Sum a list of ``{cpus, memory_mb, units}`` dicts."""
    total = {'cpus': 0.0, 'memory_mb': 0.0, 'units': 0}
    for item in reservations:
        total['cpus'] += float(item.get('cpus') or 0)
        total['memory_mb'] += float(item.get('memory_mb') or 0)
        total['units'] += int(item.get('units') or 0)
    return {
        'cpus': round_cpus(total['cpus']),
        'memory_mb': round_mb(total['memory_mb']),
        'units': total['units'],
    }


def remaining_capacity(capacity: Dict[str, Any], reserved: Dict[str, Any]) -> Dict[str, Any]:
    """capacity - reserved, per key (may go negative when the host is overcommitted)."""
    return {
        'cpus': round_cpus(float(capacity['cpus']) - float(reserved['cpus'])),
        'memory_mb': round_mb(float(capacity['memory_mb']) - float(reserved['memory_mb'])),
        'units': int(capacity['units']) - int(reserved['units']),
    }


def merge_capacity(proc_capacity: Dict[str, Any], overrides: Dict[str, Any],
                   default_units: int) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Combine the /proc figures with the local fact overrides.

    ``proc_capacity`` has ``cpus`` and ``memory_mb``; ``overrides`` is what parse_local_fact()
    returned. Returns ``(capacity, capacity_source)``; a source is ``local_fact``, ``proc`` or, for
    ``units`` (which /proc cannot tell), ``default``.
    """
    capacity = {
        'cpus': round_cpus(proc_capacity['cpus']),
        'memory_mb': round_mb(proc_capacity['memory_mb']),
        'units': int(default_units),
    }
    source = {'cpus': 'proc', 'memory_mb': 'proc', 'units': 'default'}
    for key in CAPACITY_KEYS:
        if key in overrides:
            capacity[key] = overrides[key]
            source[key] = 'local_fact'
    return capacity, source


def _override_value(key, value):
    if not _is_number(value):
        raise HostInfoError(
            'capacity.%s must be a number, got %s %r' % (key, type(value).__name__, value))
    if math.isnan(value) or math.isinf(value):
        raise HostInfoError('capacity.%s must be a finite number, got %r' % (key, value))
    if value < 0:
        raise HostInfoError('capacity.%s must not be negative, got %r' % (key, value))
    if key == 'cpus':
        return round_cpus(value)
    if key == 'memory_mb':
        return round_mb(value)
    if float(value).is_integer():
        return int(value)
    raise HostInfoError('capacity.units must be an integer, got %r' % (value,))


def parse_local_fact(text: Optional[str]) -> Dict[str, Any]:
    """Capacity overrides from the JSON text of the local fact file.

    The file is ``{"capacity": {"cpus": 4, "memory_mb": 8192, "units": 200}}``; every key is optional
    and a ``null`` value means "use /proc". Other top-level keys are ignored (the file is an ordinary
    Ansible local fact and may carry other data). Returns a dict with the keys that were given.

    Raises HostInfoError for invalid JSON, a non-object, unknown capacity keys, non-numbers and
    negative or non-finite numbers.
    """
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise HostInfoError('it is not valid JSON (%s)' % (exc,))
    if not isinstance(data, dict):
        raise HostInfoError('it must hold a JSON object such as {"capacity": {"cpus": 4}}, not %s'
                            % (type(data).__name__,))
    capacity = data.get('capacity')
    if capacity is None:
        return {}
    if not isinstance(capacity, dict):
        raise HostInfoError('"capacity" must be an object with the keys %s, not %s'
                            % (', '.join(CAPACITY_KEYS), type(capacity).__name__))
    unknown = sorted(set(capacity) - set(CAPACITY_KEYS))
    if unknown:
        raise HostInfoError('"capacity" has unknown key(s) %s; allowed are %s'
                            % (', '.join(unknown), ', '.join(CAPACITY_KEYS)))
    overrides = {}
    for key in CAPACITY_KEYS:
        if capacity.get(key) is not None:
            overrides[key] = _override_value(key, capacity[key])
    return overrides
