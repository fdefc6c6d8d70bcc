#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_facts
short_description: Gather the moving-target-defense facts of a container host
version_added: 0.1.0
description:
  - Gathers what the moving-target-defense modules and playbooks need to know about a container
    host and returns it as the fact C(ansible_facts.mtd).
  - The operating system (from os-release), the host capacity (CPUs and memory from C(/proc),
    overridden per key by a local fact file), the resources the running containers reserve, the
    cgroup layout, the Docker engine and its running containers, and what CRIU can do on the host.
  - The structure is the contract described in the collection's C(docs/facts-schema.md);
    M(mtd.containers.target_host) and M(mtd.containers.migration_schedule) consume it.
  - An unreachable Docker engine does not fail the module; RV(ansible_facts.mtd.docker.available)
    is then V(false) and RV(ansible_facts.mtd.docker.error) tells why. Likewise a missing CRIU gives
    RV(ansible_facts.mtd.criu.available=false).
author:
  - mtd.containers contributors (!UNKNOWN)
requirements:
  - No Python library beyond the standard library on the managed host.
  - Optionally a Docker engine with Engine API 1.41 or newer (Docker 20.10+), reachable at O(docker_host).
  - Optionally CRIU (C(criu)); the checks need root.
extends_documentation_fragment:
  - mtd.containers.docker
  - mtd.containers.attributes
  - mtd.containers.attributes.actiongroup_mtd
  - mtd.containers.attributes.facts
attributes:
  facts:
    description: The module returns an C(ansible_facts) dictionary that updates the facts of the host.
options:
  local_fact_path:
    description:
      - Path of the local fact file on the managed host that overrides the capacity read from C(/proc).
      - 'It holds JSON such as V({"capacity": {"cpus": 4, "memory_mb": 8192, "units": 200}}); each key of
        C(capacity) is optional and replaces the figure from C(/proc) (or the default of
        V(100) units). A V(null) value keeps that figure. Other top-level keys are ignored.'
      - A missing file means no overrides. A file that cannot be read, that is not JSON, or that gives
        unknown keys, non-numbers or negative numbers fails the module.
    type: path
    default: /etc/ansible/facts.d/mtd.fact
  criu_path:
    description:
      - Path of the C(criu) binary.
      - If not given, C(criu) is searched in E(PATH), C(/usr/local/sbin), C(/usr/sbin) and C(/sbin).
      - A path that is given but is not an executable file fails the module.
    type: path
  os_release_path:
    description:
      - Path of the os-release file to read the operating system from.
      - If it cannot be read, C(/usr/lib/os-release) is tried; if neither can be read the module fails.
    type: path
    default: /etc/os-release
  gather_subset:
    description:
      - Which optional parts to gather. V(all) gathers V(docker), V(criu) and V(cgroup).
      - The parts not gathered keep their keys with empty values (for example
        RV(ansible_facts.mtd.docker.available=false)); the reservations are then zero.
      - The host identity, OS and capacity are always gathered.
    type: list
    elements: str
    choices: [all, docker, criu, cgroup]
    default: [all]
notes:
  - The module only reads. It runs C(criu --version), C(criu check) and C(criu check --feature) for
    V(mem_dirty_track) and V(uffd-noncoop), and read-only Docker Engine API calls.
  - C(capacity.cpus) counts the logical CPUs of the host (C(/proc/cpuinfo)); cgroup quotas and CPU
    affinity of the Ansible process are ignored. C(capacity.memory_mb) is C(MemTotal).
  - RV(ansible_facts.mtd.remaining) may be negative when the containers reserve more than the capacity.
seealso:
  - module: mtd.containers.target_host
  - module: mtd.containers.migration_schedule
"""

EXAMPLES = r"""
- name: Gather the MTD facts of the container hosts
  mtd.containers.host_facts:
  register: mtd_result

- name: Show what is left on each host
  ansible.builtin.debug:
    msg: "{{ ansible_facts.mtd.hostname }}: {{ ansible_facts.mtd.remaining.units }} units free"

- name: Talk to a second engine and skip the CRIU checks
  mtd.containers.host_facts:
    docker_host: unix:///var/lib/mtd-lab/lab-1/docker.sock
    api_version: "1.41"
    gather_subset:
      - docker
      - cgroup

- name: Use CRIU from a custom location and another capacity file
  mtd.containers.host_facts:
    criu_path: /opt/criu/sbin/criu
    local_fact_path: /etc/mtd/capacity.json
  register: mtd_result

- name: Fail early when a host cannot take part in live migration
  ansible.builtin.assert:
    that:
      - ansible_facts.mtd.docker.available
      - ansible_facts.mtd.docker.experimental
      - ansible_facts.mtd.criu.check_ok
    fail_msg: "{{ ansible_facts.mtd.docker.error or 'CRIU or the experimental engine is missing' }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to C(ansible_facts).
  returned: always
  type: complex
  contains:
    mtd:
      description:
        - The moving-target-defense facts of the host, as described in the collection's
          C(docs/facts-schema.md).
        - CPUs are floats, memory is in MiB, units are integers, timestamps are RFC 3339 in UTC.
      returned: always
      type: dict
      contains:
        hostname:
          description: Host name of the managed host.
          type: str
          returned: always
          sample: lab-1
        gathered_at:
          description: When the facts were gathered (RFC 3339, UTC).
          type: str
          returned: always
          sample: "2026-11-28T09:40:00Z"
        os:
          description: The operating system, from os-release and C(uname).
          type: dict
          returned: always
          sample:
            id: debian
            version_id: "12"
            name: Debian GNU/Linux
            pretty_name: Debian GNU/Linux 12 (bookworm)
            kernel: 6.18.44-fc-v669
            arch: x86_64
        cpu:
          description:
            - C(isa) - the user-visible instruction-set extensions of the host's CPU (from the C(flags) of
              C(/proc/cpuinfo), sorted; C(null) where there are none, as on other architectures). A restored
              process goes on with the code it chose at its start, so the migration preflight refuses a target
              whose CPU lacks one that the source's has.
          type: dict
          returned: always
          sample:
            isa: [aes, avx, avx2, bmi1, bmi2, erms, f16c, fma, movbe, pclmulqdq, popcnt, sse3, sse4_1, sse4_2, ssse3]
        capacity:
          description:
            - The capacity of the host, C(cpus) (float), C(memory_mb) and C(units) (integer).
            - From C(/proc), overridden per key by the local fact; C(units) defaults to V(100).
          type: dict
          returned: always
          sample: {cpus: 2.0, memory_mb: 24105, units: 100}
        capacity_source:
          description:
            - Where each capacity figure comes from, V(local_fact), V(proc) or V(default)
              (C(units) without a local fact).
          type: dict
          returned: always
          sample: {cpus: local_fact, memory_mb: proc, units: local_fact}
        reserved:
          description:
            - The sum of the reservations of the running containers (see RV(ansible_facts.mtd.docker.containers)).
            - Zero when the engine is not available.
          type: dict
          returned: always
          sample: {cpus: 0.5, memory_mb: 256, units: 10}
        remaining:
          description: Capacity minus reserved, per key; may be negative.
          type: dict
          returned: always
          sample: {cpus: 1.5, memory_mb: 23849, units: 90}
        cgroup:
          description:
            - The cgroup layout. C(version) is V(1), V(2) or V(null) (none mounted, or not gathered).
            - A hybrid layout (v1 controllers and a cgroup2 mount) reports version V(1) and the cgroup2
              mount in C(unified_mountpoint).
          type: dict
          returned: always
          sample:
            version: 1
            mountpoint: /sys/fs/cgroup
            controllers: [blkio, cpu, cpuacct, cpuset, devices, freezer, memory, pids]
            unified_mountpoint: /sys/fs/cgroup/unified
        docker:
          description: The Docker engine and its running containers.
          type: dict
          returned: always
          contains:
            available:
              description: Whether the engine answered.
              type: bool
              sample: true
            error:
              description: Why the engine could not be used, else V(null).
              type: str
              sample: null
            version:
              description: Engine version.
              type: str
              sample: 20.10.24+dfsg1
            api_version:
              description: The newest Engine API version the engine supports.
              type: str
              sample: "1.41"
            experimental:
              description: Whether the engine runs with experimental features (needed for checkpoints).
              type: bool
              sample: true
            operating_system:
              description: The operating system the engine reports.
              type: str
              sample: Debian GNU/Linux 12 (bookworm)
            cgroup_driver:
              description: The engine's cgroup driver.
              type: str
              sample: cgroupfs
            containerd:
              description: The containerd the engine uses, as the engine reports it (C(GET /version) components).
              type: dict
              contains:
                version:
                  description: containerd's version, V(null) when the engine does not say.
                  type: str
                  sample: 1.7.24~ds1
                commit:
                  description: containerd's commit or package version.
                  type: str
                  sample: 1.7.24~ds1-6+deb13u1
            runc:
              description:
                - The runc the engine runs containers with (its default runtime) and the CRIU that runc will run.
                - runc 1.2 and later ignore C(--criu) and run the C(criu) found on the engine's PATH
                  (RV(ansible_facts.mtd.docker.runc.criu_from_path=true)); older ones run the CRIU the collection
                  names, the one RV(ansible_facts.mtd.criu.path) checked.
              type: dict
              contains:
                version:
                  description: runc's version as the engine reports it.
                  type: str
                  sample: 1.1.15+ds1
                commit:
                  description: runc's commit or package version.
                  type: str
                  sample: 1.1.15+ds1-2+b4
                path:
                  description: The default runtime's binary, resolved on the engine's PATH when configured by name.
                  type: str
                  sample: /usr/sbin/runc
                criu_from_path:
                  description: Whether this runc takes C(criu) from PATH (runc >= 1.2), V(null) when its version is unknown.
                  type: bool
                  sample: false
                criu_path:
                  description:
                    - The CRIU binary runc will run; equal to RV(ansible_facts.mtd.criu.path) when it is that same file.
                    - V(null) when runc takes CRIU from PATH and none is on the engine's PATH.
                  type: str
                  sample: /usr/sbin/criu
            containers:
              description:
                - The running containers.
                - C(reservations) is C(cpus) = C(NanoCpus)/1e9 else C(CpuQuota)/C(CpuPeriod) else 0,
                  C(memory_mb) = the memory limit else the memory reservation else 0, C(units) = the
                  integer label C(mtd.units) else 0.
                - C(attacked) is true when the label C(mtd.attacked) is C(true), C(yes) or C(1);
                  C(severity) is the label C(mtd.severity) (V(low), V(medium), V(high) or an integer).
              type: list
              elements: dict
              sample:
                - id: 0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd
                  name: web-1
                  image: 127.0.0.1:5000/mtd/busybox:latest
                  image_id: sha256:4567ef014567ef014567ef014567ef014567ef014567ef014567ef014567ef01
                  state: running
                  created: "2026-11-28T09:30:00Z"
                  started_at: "2026-11-28T09:30:01Z"
                  uptime_seconds: 599.0
                  labels: {mtd.units: "10", mtd.service: web}
                  ip: null
                  network_mode: none
                  reservations: {cpus: 0.5, memory_mb: 256, units: 10}
                  attacked: false
                  severity: null
        criu:
          description: CRIU on the host.
          type: dict
          returned: always
          contains:
            available:
              description: Whether a working C(criu) binary was found.
              type: bool
              sample: true
            path:
              description: Path of the binary.
              type: str
              sample: /usr/local/sbin/criu
            version:
              description: CRIU version.
              type: str
              sample: 4.1.1
            check_ok:
              description: Whether C(criu check) said "Looks good".
              type: bool
              sample: true
            check_output:
              description: The tail of the output of C(criu check).
              type: str
              sample: Looks good.
            dirty_tracking:
              description: Whether C(criu check --feature mem_dirty_track) succeeded (needed for pre-dump).
              type: bool
              sample: false
            lazy_pages:
              description: Whether C(criu check --feature uffd-noncoop) succeeded (needed for lazy pages).
              type: bool
              sample: true
"""

import os
import platform
import shutil
import socket
from typing import Any, Dict, List, Tuple

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._criu import (
    Criu,
    CriuError,
    find_criu,
)
from ansible_collections.mtd.containers.plugins.module_utils._docker import DockerError
from ansible_collections.mtd.containers.plugins.module_utils._hostinfo import (
    HostInfoError,
    container_summary,
    count_cpus,
    cpu_isa_flags,
    detect_cgroup,
    format_timestamp,
    merge_capacity,
    os_facts,
    parse_cgroup_controllers,
    parse_local_fact,
    parse_meminfo,
    parse_os_release,
    remaining_capacity,
    sum_reservations,
    utc_now,
    zero_reservations,
)
from ansible_collections.mtd.containers.plugins.module_utils._module import run_module
from ansible_collections.mtd.containers.plugins.module_utils._versions import (
    engine_components,
    runc_takes_criu_from_path,
)

# Internal paths; tests patch them. They are not options: /proc is not something users point elsewhere.
PROC_MEMINFO = '/proc/meminfo'
PROC_CPUINFO = '/proc/cpuinfo'
PROC_MOUNTINFO = '/proc/self/mountinfo'
OS_RELEASE_FALLBACK = '/usr/lib/os-release'
ENGINE_PIDFILE = '/var/run/docker.pid'
DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

DEFAULT_UNITS = 100
SUBSETS = ('docker', 'criu', 'cgroup')


def _read_text(path):
    with open(path, 'rb') as handle:
        return to_text(handle.read(), errors='surrogate_or_strict')


class HostFactsCollector:
    """Gathers ``ansible_facts.mtd`` (docs/facts-schema.md); read-only, so it runs as is in check mode."""

    def __init__(self, mod):
        self.mod = mod
        self.module = mod.module
        self.params = mod.params
        subsets = set(self.params['gather_subset'] or ['all'])
        self.subsets = set(SUBSETS) if 'all' in subsets else subsets
        self.now = utc_now()

    # -- always gathered ----------------------------------------------------------------------

    def os_release(self):
        errors: List[Tuple[str, str]] = []
        for path in (self.params['os_release_path'], OS_RELEASE_FALLBACK):
            if any(path == tried for tried, dummy in errors):
                continue
            try:
                return parse_os_release(_read_text(path))
            except (IOError, OSError, UnicodeError) as exc:
                errors.append((path, to_text(exc)))
        raise MtdError('Cannot read an os-release file (%s). Set os_release_path to a readable file.'
                       % ('; '.join('%s: %s' % item for item in errors),))

    def proc_capacity(self):
        try:
            memory_mb = parse_meminfo(_read_text(PROC_MEMINFO))
        except (IOError, OSError, UnicodeError, HostInfoError) as exc:
            raise MtdError('Cannot read the memory size from %s: %s.' % (PROC_MEMINFO, to_text(exc)))
        try:
            cpuinfo = _read_text(PROC_CPUINFO)
        except (IOError, OSError, UnicodeError):
            cpuinfo = ''
        cpus = count_cpus(cpuinfo)
        self.cpu_isa = cpu_isa_flags(cpuinfo)
        if not cpus:
            try:
                cpus = len(os.sched_getaffinity(0))
            except (AttributeError, OSError):
                cpus = os.cpu_count() or 0
        return {'cpus': float(cpus), 'memory_mb': memory_mb}

    def local_fact(self):
        path = self.params['local_fact_path']
        if not path or not os.path.exists(path):
            return {}
        try:
            text = _read_text(path)
        except (IOError, OSError, UnicodeError) as exc:
            raise MtdError('Cannot read the local fact file %s: %s. Fix its permissions or set local_fact_path.'
                           % (path, to_text(exc)))
        try:
            return parse_local_fact(text)
        except HostInfoError as exc:
            raise MtdError('The local fact file %s cannot be used: %s.' % (path, to_text(exc)))

    # -- optional parts -----------------------------------------------------------------------

    def cgroup(self):
        if 'cgroup' not in self.subsets:
            return {'version': None, 'mountpoint': None, 'controllers': [], 'unified_mountpoint': None}
        try:
            info = detect_cgroup(_read_text(PROC_MOUNTINFO))
        except (IOError, OSError, UnicodeError):
            return {'version': None, 'mountpoint': None, 'controllers': [], 'unified_mountpoint': None}
        if info['version'] == 2:
            try:
                info['controllers'] = parse_cgroup_controllers(
                    _read_text(os.path.join(info['mountpoint'], 'cgroup.controllers')))
            except (IOError, OSError, UnicodeError):
                info['controllers'] = []
        return info

    @staticmethod
    def _docker_unavailable(error):
        return {
            'available': False,
            'error': error,
            'version': None,
            'api_version': None,
            'experimental': None,
            'operating_system': None,
            'cgroup_driver': None,
            'containerd': {'version': None, 'commit': None},
            'runc': {'version': None, 'commit': None, 'path': None, 'criu_from_path': None, 'criu_path': None},
            'containers': [],
        }

    @staticmethod
    def engine_path():
        """The engine's PATH (its runc and, for runc >= 1.2, its criu come from there): /proc of the pid in
        the engine's pidfile, else the standard PATH."""
        try:
            with open(ENGINE_PIDFILE) as handle:
                pid = int(handle.read().strip())
            with open('/proc/%d/environ' % pid, 'rb') as handle:
                env = handle.read().split(b'\0')
        except (IOError, OSError, ValueError):
            return DEFAULT_PATH
        for item in env:
            if item.startswith(b'PATH='):
                return to_text(item[5:], errors='surrogate_or_strict')
        return DEFAULT_PATH

    def runc_facts(self, version, info, criu_path):
        """containerd and runc of the engine; ``runc.criu_path`` is the criu that runc will run: the one the
        collection passes with --criu (``criu_path``) for runc < 1.2, the engine's PATH's for runc >= 1.2."""
        parts = engine_components(version, info)
        runc = parts['runc']
        path_env = self.engine_path()
        if runc['path'] and '/' not in runc['path']:
            runc['path'] = shutil.which(runc['path'], path=path_env)
        runc['criu_from_path'] = runc_takes_criu_from_path(runc['version'])
        if runc['criu_from_path']:
            found = shutil.which('criu', path=path_env)
            same = bool(found and criu_path and os.path.realpath(found) == os.path.realpath(criu_path))
            runc['criu_path'] = criu_path if same else found
        else:
            runc['criu_path'] = criu_path
        return parts

    def docker(self, criu_path=None):
        if 'docker' not in self.subsets:
            return self._docker_unavailable('Not gathered: docker is not in gather_subset.')
        client = self.mod.docker
        try:
            version = client.version() or {}
            info = client.info() or {}
            containers = []
            for listed in client.containers():
                try:
                    inspect = client.inspect_container(listed['Id'])
                except DockerError as exc:
                    if exc.status == 404:
                        # Gone between the listing and the inspection.
                        continue
                    raise
                containers.append(container_summary(inspect, self.now))
        except DockerError as exc:
            return self._docker_unavailable(to_text(exc))
        except HostInfoError as exc:
            return self._docker_unavailable('The engine returned data that cannot be used: %s' % to_text(exc))
        experimental = info.get('ExperimentalBuild')
        if experimental is None:
            experimental = version.get('Experimental', False)
        facts = {
            'available': True,
            'error': None,
            'version': version.get('Version'),
            'api_version': version.get('ApiVersion'),
            'experimental': bool(experimental),
            'operating_system': info.get('OperatingSystem'),
            'cgroup_driver': info.get('CgroupDriver'),
            'containers': containers,
        }
        facts.update(self.runc_facts(version, info, criu_path))
        return facts

    def criu(self):
        facts: Dict[str, Any] = {
            'available': False,
            'path': None,
            'version': None,
            'check_ok': False,
            'check_output': None,
            'dirty_tracking': False,
            'lazy_pages': False,
        }
        if 'criu' not in self.subsets:
            return facts
        path = find_criu(self.module, self.params['criu_path'])   # CriuError is an MtdError
        if not path:
            return facts
        facts['path'] = path
        criu = Criu(path)
        try:
            facts['version'] = criu.version()
        except CriuError as exc:
            facts['check_output'] = to_text(exc)
            return facts
        facts['available'] = True
        facts['check_ok'], facts['check_output'] = criu.check()
        facts['dirty_tracking'] = criu.feature('mem_dirty_track')
        facts['lazy_pages'] = criu.feature('uffd-noncoop')
        return facts

    # -- all together -------------------------------------------------------------------------

    def gather(self):
        os_release = self.os_release()
        uname = platform.uname()
        overrides = self.local_fact()
        capacity, capacity_source = merge_capacity(self.proc_capacity(), overrides, DEFAULT_UNITS)
        cgroup = self.cgroup()
        criu = self.criu()
        docker = self.docker(criu['path'])
        if docker['available']:
            reserved = sum_reservations([c['reservations'] for c in docker['containers']])
        else:
            reserved = zero_reservations()
        return {
            'hostname': socket.gethostname(),
            'gathered_at': format_timestamp(self.now),
            'os': os_facts(os_release, uname.release, uname.machine),
            'cpu': {'isa': getattr(self, 'cpu_isa', None)},
            'capacity': capacity,
            'capacity_source': capacity_source,
            'reserved': reserved,
            'remaining': remaining_capacity(capacity, reserved),
            'cgroup': cgroup,
            'docker': docker,
            'criu': criu,
        }


ARGUMENT_SPEC = dict(
    local_fact_path=dict(type='path', default='/etc/ansible/facts.d/mtd.fact'),
    criu_path=dict(type='path'),
    os_release_path=dict(type='path', default='/etc/os-release'),
    gather_subset=dict(type='list', elements='str', default=['all'], choices=['all'] + list(SUBSETS)),
)


def run(mod):
    return {'ansible_facts': {'mtd': HostFactsCollector(mod).gather()}}


def main():
    run_module(run, ARGUMENT_SPEC, docker=True)


if __name__ == '__main__':
    main()
