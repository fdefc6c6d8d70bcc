# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Engine version gates: which engine, runc and CRIU combinations a migration refuses or warns about.

Pure functions over ``ansible_facts.mtd`` (docs/facts-schema.md); the migrate role's preflight calls
them through the ``migration_preflight`` filter. The known-broken versions come from the engines' own
trackers (docs/lab.md); the tested versions are data written by scripts/support_matrix.py from what the
integration tests really ran on.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

Version = Tuple[int, ...]

# runc >= 1.2 takes criu from PATH and ignores --criu (runc 1.2.0 release notes).
RUNC_CRIU_FROM_PATH = (1, 2)
# network modes in which Docker 28 restores work: no network namespace set up by the engine (moby#50750).
# Not none: the engine makes a namespace (with only loopback) for it too, and on the lab Docker 28.5.2
# restores of --network none containers failed ("bind-mount /proc/0/ns/net -> /var/run/docker/netns/...").
DOCKER_28_NETWORK_MODES = ('host',)
COMPONENTS = ('engine', 'containerd', 'runc', 'criu')


def _sub(facts: Any, key: str) -> Mapping[str, Any]:
    """``facts[key]`` when both are mappings, else an empty mapping."""
    value = facts.get(key) if isinstance(facts, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def parse_version(text: Any) -> Optional[Version]:
    """The leading numeric release of a version string: ``'26.1.5+dfsg1'`` -> ``(26, 1, 5)``.

    A leading ``v`` is allowed (``'v1.7.24'``); ``None`` when the text does not start with a number.
    """
    if text is None:
        return None
    match = re.match(r'\s*v?(\d+(?:\.\d+)*)', str(text))
    if not match:
        return None
    return tuple(int(part) for part in match.group(1).split('.'))


def release(text: Any) -> Optional[str]:
    """The upstream release of a version string (``'27.5.1+dfsg4'`` -> ``'27.5.1'``), else None."""
    version = parse_version(text)
    return '.'.join(str(part) for part in version) if version else None


def runc_takes_criu_from_path(runc_version: Any) -> Optional[bool]:
    """Whether this runc ignores ``--criu`` and runs the ``criu`` on its PATH (None when unknown)."""
    version = parse_version(runc_version)
    return None if version is None else version[:2] >= RUNC_CRIU_FROM_PATH


def engine_refusal(engine_version: Any, network_mode: Any = None) -> Optional[str]:
    """Why checkpoint/restore is known to fail on this Docker version, or None.

    - 25.0.0 - 25.0.3: restore fails "content digest ... not found" (fixed in 25.0.4 and 26.0).
    - 28.x: restore fails where the engine sets up a network namespace (moby#50750): refused unless
      ``network_mode`` is host (none gets a namespace too; measured on Docker 28.5.2).
    """
    version = parse_version(engine_version)
    if version is None:
        return None
    padded = (version + (0, 0, 0))[:3]
    if padded[:2] == (25, 0) and padded[2] <= 3:
        return ('Docker %s fails restores ("content digest not found"; fixed in 25.0.4 and 26.0): upgrade the '
                'engine' % engine_version)
    if padded[0] == 28 and str(network_mode or '') not in DOCKER_28_NETWORK_MODES:
        return ('Docker %s fails restores of a container whose network namespace the engine sets up (moby#50750); '
                'network mode %s is affected (every mode but host, none too): use Docker 27 or 29, or run the '
                'container with --network host' % (engine_version, network_mode or 'unknown'))
    return None


def criu_mismatch(runc: Mapping[str, Any], criu: Mapping[str, Any]) -> Optional[str]:
    """Why the CRIU runc would run is not the CRIU that was checked (``criu check``), or None.

    ``runc`` is host_facts' ``docker.runc`` (``version``, ``criu_path``: the criu it runs), ``criu`` its
    ``criu`` (``path``). Only runc >= 1.2 can differ: older ones run the criu the collection names.
    """
    if not runc_takes_criu_from_path(runc.get('version')):
        return None
    used, checked = runc.get('criu_path'), criu.get('path')
    if not checked:
        return None   # no CRIU at all: the preflight's criu check refuses already
    if not used:
        return ('runc %s runs the criu on its PATH and ignores --criu, but none is on the engine\'s PATH (the '
                'checked one is %s): put that criu on the engine\'s PATH' % (runc.get('version'), checked))
    if used != checked:
        return ('runc %s runs %s (the criu on the engine\'s PATH; it ignores --criu), not the checked %s: make '
                'them the same binary' % (runc.get('version'), used, checked))
    return None


def criu_downgrade(source_criu: Any, target_criu: Any) -> Optional[str]:
    """Why the target's CRIU cannot restore what the source's dumps, or None: an older minor release.

    Measured on the lab: images dumped by CRIU 4.2.1 (Debian testing) failed to restore with 4.1.1 ("vdso: ELF
    header magic mismatch"); the other way round worked.
    """
    src, tgt = parse_version(source_criu), parse_version(target_criu)
    # another major is the preflight's own refusal (CRIU versions of one major only)
    if src is None or tgt is None or src[0] != tgt[0] or tgt[:2] >= src[:2]:
        return None
    return ('the target\'s CRIU %s is older than the source\'s %s, and images of a newer CRIU failed to restore '
            '(vdso: ELF header magic mismatch): move it to a host with CRIU %s or newer' % (
                target_criu, source_criu, '.'.join(str(p) for p in src[:2])))


def cpu_refusal(source_isa: Any, target_isa: Any) -> Optional[str]:
    """Why the target's CPU cannot run what the source's processes may execute, or None. Pure.

    The arguments are host_facts' ``cpu.isa`` lists; when either is unknown (None, older facts) nothing is
    refused: CRIU's own CPU check (``--cpu-cap``) stays the only one.
    """
    if not isinstance(source_isa, (list, tuple)) or not isinstance(target_isa, (list, tuple)):
        return None
    missing = sorted(set(source_isa) - set(target_isa))
    if not missing:
        return None
    return ('the target\'s CPU lacks instruction sets the source\'s CPU has (%s): a process chooses its code at '
            'its start (glibc picks AVX-512 routines where the CPU has them), and once restored it would execute '
            'them and die with SIGILL (seen on the lab\'s VM host: "trap invalid opcode" in busybox)' % ', '.join(missing))


def host_versions(facts: Mapping[str, Any]) -> Dict[str, Optional[str]]:
    """The upstream releases of one host's engine, containerd, runc and CRIU (host_facts' ``mtd``)."""
    docker, criu = _sub(facts, 'docker'), _sub(facts, 'criu')
    return {'engine': release(docker.get('version')), 'containerd': release(_sub(docker, 'containerd').get('version')),
            'runc': release(_sub(docker, 'runc').get('version')), 'criu': release(criu.get('version'))}


def untested(facts: Mapping[str, Any], tested: Optional[Mapping[str, Iterable[Any]]]) -> List[str]:
    """The components of a host whose versions no integration test has run (``component version``).

    ``tested`` maps each component to the releases the tests ran (scripts/support_matrix.py); a component
    without a list, or an unknown version, is not judged.
    """
    if not isinstance(tested, Mapping):
        return []
    found = []
    for component, version in host_versions(facts).items():
        known = tested.get(component)
        if version and isinstance(known, (list, tuple)) and version not in [release(v) for v in known]:
            found.append('%s %s' % (component, version))
    return found


def version_gates(hosts: Mapping[str, Mapping[str, Any]], network_mode: Any = None,
                  tested: Optional[Mapping[str, Iterable[Any]]] = None) -> Dict[str, List[str]]:
    """Refusals and warnings for the hosts of one migration (``{refuse: [...], warn: [...]}``).

    ``hosts`` maps a role (source, target) to that host's ``ansible_facts.mtd``; ``network_mode`` is the
    container's; ``tested`` see untested().
    """
    refuse: List[str] = []
    warn: List[str] = []
    for role, facts in hosts.items():
        if not isinstance(facts, Mapping) or not facts:
            continue
        docker, criu = _sub(facts, 'docker'), _sub(facts, 'criu')
        runc = _sub(docker, 'runc')
        for reason in (engine_refusal(docker.get('version'), network_mode), criu_mismatch(runc, criu)):
            if reason:
                refuse.append('%s: %s' % (role, reason))
        missing = untested(facts, tested)
        if missing:
            warn.append('%s: no integration test has run %s' % (role, ', '.join(missing)))
    older = criu_downgrade(_sub(hosts.get('source'), 'criu').get('version'),
                           _sub(hosts.get('target'), 'criu').get('version'))
    if older:
        refuse.append('target: ' + older)
    cpu = cpu_refusal(_sub(hosts.get('source'), 'cpu').get('isa'), _sub(hosts.get('target'), 'cpu').get('isa'))
    if cpu:
        refuse.append('target: ' + cpu)
    return {'refuse': refuse, 'warn': warn}


def engine_components(version: Mapping[str, Any], info: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """containerd and runc as the engine reports them (``GET /version`` Components, ``GET /info``).

    Returns ``{containerd: {version, commit}, runc: {version, commit, path}}``; ``runc.path`` is the
    default runtime's path as configured in the engine (often the bare name ``runc``, found on the
    engine's PATH). Unknown values are None.
    """
    parts: Dict[str, Mapping[str, Any]] = {}
    for comp in version.get('Components') or []:
        if isinstance(comp, Mapping) and comp.get('Name'):
            parts[str(comp['Name']).lower()] = comp
    result: Dict[str, Dict[str, Any]] = {}
    for name, commit_key in (('containerd', 'ContainerdCommit'), ('runc', 'RuncCommit')):
        comp = parts.get(name) or {}
        commit = _sub(comp, 'Details').get('GitCommit') or _sub(info, commit_key).get('ID')
        result[name] = {'version': comp.get('Version'), 'commit': commit}
    default = _sub(_sub(info, 'Runtimes'), str(info.get('DefaultRuntime') or 'runc'))
    result['runc']['path'] = default.get('path')
    return result
