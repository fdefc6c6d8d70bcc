# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a migrated container may be: the policy both ends of a migration apply to its configuration.

Private module_utils file (leading underscore): its API may change without notice. Python 3.8+, pure.

A migration moves a container away from a host presumed attacked, so the configuration it is recreated
with on the target is untrusted input: whoever holds root on the source can make it say ``Privileged``,
``PidMode: host`` or ``Binds: ["/:/host"]``. ``policy_violations(config, policy)`` lists what a captured
configuration (``_migration.capture_config``) asks for beyond the policy; ``checkpoint`` applies it before
anything is frozen, ``restore`` applies it again on the target before anything is created or started.
The policy refuses by default and is widened by the operator, one item at a time (``POLICY_SPEC``,
documented once in the ``mtd.containers.policy`` doc fragment). ``Privileged`` is refused whatever the
policy: a privileged container is root on its host (and ``capture_config`` refuses it on the source);
what it needs is given explicitly instead (capabilities, devices), and those the policy can allow.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set

# Docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPABILITIES = (
    'AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE',
    'NET_RAW', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT',
)
NAMESPACES = ('pid', 'ipc', 'uts', 'network', 'cgroup')
UNCONFINED = ('seccomp', 'apparmor', 'selinux', 'systempaths')
# HostConfig key of each namespace mode
NAMESPACE_KEYS = {'pid': 'PidMode', 'ipc': 'IpcMode', 'uts': 'UTSMode', 'network': 'NetworkMode',
                  'cgroup': 'CgroupnsMode'}
# Host paths no bind mount may be, lie below or contain (``/`` itself only as it is: everything is below it).
PROTECTED_PATHS = (
    '/proc', '/sys', '/sys/fs/cgroup', '/dev', '/boot', '/var/run/docker.sock', '/run/docker.sock',
    '/run/docker', '/var/run/docker', '/run/containerd', '/var/run/containerd', '/var/lib/docker',
    '/var/lib/containerd', '/etc/docker',
)
# The HostConfig keys capture_config carries (_migration.HOSTCONFIG_KEYS); any other is refused on the target.
KNOWN_MOUNT_TYPES = ('volume', 'bind', 'tmpfs')

POLICY_SPEC: Dict[str, Any] = dict(
    host_namespaces=dict(type='list', elements='str', default=[], choices=list(NAMESPACES)),
    devices=dict(type='list', elements='str', default=[]),
    unconfined=dict(type='list', elements='str', default=[], choices=list(UNCONFINED)),
    capabilities=dict(type='list', elements='str', default=list(DEFAULT_CAPABILITIES)),
    bind_prefixes=dict(type='list', elements='str', default=[]),
)


def default_policy() -> Dict[str, Any]:
    """The policy with every item at its default (refuses everything beyond Docker's defaults)."""
    return dict((key, spec['default'] if not isinstance(spec['default'], list) else list(spec['default']))
                for key, spec in POLICY_SPEC.items())


def capability_name(value: str) -> str:
    """``cap_sys_admin`` / ``CAP_SYS_ADMIN`` / ``SYS_ADMIN`` → ``SYS_ADMIN`` (``ALL`` stays ``ALL``)."""
    name = str(value).strip().upper()
    return name[4:] if name.startswith('CAP_') else name


def effective_capabilities(cap_add: Optional[Iterable[str]], cap_drop: Optional[Iterable[str]]) -> Set[str]:
    """The capabilities a container gets: Docker's default set plus CapAdd minus CapDrop (``ALL`` kept as is)."""
    added = set(capability_name(c) for c in cap_add or [])
    dropped = set(capability_name(c) for c in cap_drop or [])
    caps = set() if 'ALL' in dropped else set(DEFAULT_CAPABILITIES)
    caps |= added
    if 'ALL' not in added:
        caps -= dropped - added
    return caps


def _path_clash(source: str, protected: str) -> bool:
    """Whether a bind of ``source`` is, lies below or contains ``protected``."""
    if protected == '/':
        return source == '/'
    return source == protected or source.startswith(protected + '/') or protected.startswith(source.rstrip('/') + '/')


def _under(source: str, prefix: str) -> bool:
    prefix = posixpath.normpath(prefix)
    return prefix == '/' or source == prefix or source.startswith(prefix + '/')


def bind_violations(source: Any, policy: Mapping[str, Any], protected: Sequence[str]) -> List[str]:
    """Why a bind mount of host path ``source`` is refused (empty: allowed)."""
    if not isinstance(source, str) or not source.startswith('/'):
        return ['bind mount source %r is not an absolute host path' % (source,)]
    path = posixpath.normpath(source)
    if path.startswith('//'):
        path = '/' + path.lstrip('/')
    for item in ['/'] + list(protected):
        if _path_clash(path, item):
            return ['bind mount of %s (it is, contains or lies below %s, which no container may reach)' % (source, item)]
    prefixes = policy.get('bind_prefixes') or []
    if not any(_under(path, p) for p in prefixes):
        return ['bind mount of %s is outside the allowed prefixes %s (policy.bind_prefixes)' % (source, prefixes or '[]')]
    return []


def _binds(config: Mapping[str, Any]) -> List[Any]:
    """Every host path the configuration bind-mounts: the mounts list and HostConfig.Binds."""
    sources = [m.get('source') for m in config.get('mounts') or [] if isinstance(m, dict) and m.get('type') == 'bind']
    for bind in (config.get('host_config') or {}).get('Binds') or []:
        src = str(bind).split(':', 1)[0]
        if src.startswith('/') or src.startswith('.'):
            sources.append(src)   # a plain name is a named volume
    unique: List[Any] = []
    for item in sources:   # the same bind in both lists counts once
        if item not in unique:
            unique.append(item)
    return unique


def namespace_violations(host_config: Mapping[str, Any], policy: Mapping[str, Any],
                         cgroup_version: Optional[int] = None) -> List[str]:
    """Host namespaces and namespaces of other containers the configuration joins."""
    out = []
    allowed = set(policy.get('host_namespaces') or [])
    for ns in NAMESPACES:
        key = NAMESPACE_KEYS[ns]
        mode = str(host_config.get(key) or '')
        if mode.startswith('container:'):
            out.append('%s %s joins another container\'s %s namespace' % (key, mode, ns))
        elif mode == 'host' and ns not in allowed:
            if ns == 'cgroup' and cgroup_version == 1:
                continue   # Docker's default on cgroup v1, where a container cannot write cgroupfs anyway
            out.append('%s host shares the host\'s %s namespace (policy.host_namespaces: [%s] allows it)'
                       % (key, ns, ns))
    network = str(host_config.get('NetworkMode') or 'none')
    if network not in ('none', 'host') and not network.startswith('container:'):
        out.append('NetworkMode %s: only none (and host, when allowed) can be migrated' % network)
    return out


def _seccomp_unconfined(value: str) -> bool:
    if value == 'unconfined':
        return True
    try:
        profile = json.loads(value)
    except ValueError:
        return False   # a path on the source: the engine inlines the profile in the inspect data
    return isinstance(profile, dict) and profile.get('defaultAction') in ('SCMP_ACT_ALLOW', 'SCMP_ACT_LOG')


def confinement_violations(host_config: Mapping[str, Any], policy: Mapping[str, Any]) -> List[str]:
    """seccomp, AppArmor, SELinux or the masked system paths switched off."""
    out = []
    allowed = set(policy.get('unconfined') or [])
    for opt in host_config.get('SecurityOpt') or []:
        text = str(opt)
        cut = min([i for i in (text.find('='), text.find(':')) if i >= 0] or [len(text)])
        key, value = text[:cut], text[cut + 1:]
        kind = None
        if key == 'seccomp' and _seccomp_unconfined(value):
            kind = 'seccomp'
        elif key == 'apparmor' and value == 'unconfined':
            kind = 'apparmor'
        elif key == 'label' and value == 'disable':
            kind = 'selinux'
        elif key == 'systempaths' and value == 'unconfined':
            kind = 'systempaths'
        if kind and kind not in allowed:
            out.append('security option %s switches %s confinement off (policy.unconfined: [%s] allows it)'
                       % ('%s=%s' % (key, value if len(value) < 40 else value[:37] + '...'), kind, kind))
    return out


def device_violations(host_config: Mapping[str, Any], policy: Mapping[str, Any]) -> List[str]:
    allowed = set(policy.get('devices') or [])
    out = []
    for dev in host_config.get('Devices') or []:
        path = dev.get('PathOnHost') if isinstance(dev, dict) else dev
        if path not in allowed:
            out.append('device %s of the host (policy.devices lists the host devices allowed)' % (path,))
    return out


def capability_violations(host_config: Mapping[str, Any], policy: Mapping[str, Any]) -> List[str]:
    allowed = set(capability_name(c) for c in policy.get('capabilities') or [])
    caps = effective_capabilities(host_config.get('CapAdd'), host_config.get('CapDrop'))
    if 'ALL' in allowed:
        return []
    beyond = sorted(caps - allowed)
    if not beyond:
        return []
    return ['capabilities %s beyond the allowed set (policy.capabilities)' % ', '.join(beyond)]


def structure_violations(config: Mapping[str, Any], known_host_config: Optional[Sequence[str]]) -> List[str]:
    """HostConfig keys the collection never captures, mounts of unknown types, a runtime other than runc."""
    out = []
    host_config = config.get('host_config') or {}
    if known_host_config is not None:
        # Privileged is reported by its own rule
        unknown = sorted(k for k in host_config if k not in known_host_config and k != 'Privileged')
        if unknown:
            out.append('HostConfig keys %s are not part of a captured configuration' % ', '.join(unknown))
    for mount in config.get('mounts') or []:
        kind = mount.get('type') if isinstance(mount, dict) else None
        if kind not in KNOWN_MOUNT_TYPES:
            out.append('mount of type %r (only volume, bind and tmpfs are migrated)' % (kind,))
    if str(host_config.get('Runtime') or 'runc') != 'runc':
        out.append('runtime %s (only runc can restore a checkpoint)' % host_config.get('Runtime'))
    return out


def policy_violations(config: Mapping[str, Any], policy: Optional[Mapping[str, Any]] = None,
                      cgroup_version: Optional[int] = None, protected: Sequence[str] = (),
                      known_host_config: Optional[Sequence[str]] = None) -> List[str]:
    """Everything ``config`` (a captured configuration) asks for beyond ``policy`` (defaults when None).

    ``cgroup_version`` is the host engine's (Docker's default cgroup namespace is the host's on v1),
    ``protected`` adds host paths no bind may touch (the engine's socket and data root on this host),
    ``known_host_config`` restricts HostConfig to those keys. Returns one message per violation.
    """
    if not isinstance(config, Mapping):
        return ['the configuration is not a dictionary']
    policy = dict(default_policy(), **dict(policy or {}))
    host_config = config.get('host_config') or {}
    if not isinstance(host_config, Mapping):
        return ['host_config is not a dictionary']
    out = structure_violations(config, known_host_config)
    if host_config.get('Privileged'):
        out.append('Privileged (no policy allows it: give the container the capabilities and devices it needs)')
    out += namespace_violations(host_config, policy, cgroup_version)
    out += device_violations(host_config, policy)
    out += confinement_violations(host_config, policy)
    out += capability_violations(host_config, policy)
    for source in _binds(config):
        out += bind_violations(source, policy, PROTECTED_PATHS + tuple(protected))
    return out


def engine_paths(docker_host: Optional[str], data_root: Optional[str]) -> List[str]:
    """This host's engine socket (from a ``unix://`` docker_host) and data root: protected from binds too."""
    paths = []
    if docker_host and docker_host.startswith('unix://'):
        paths.append(posixpath.normpath(docker_host[len('unix://'):]))
    if data_root and data_root.startswith('/'):
        paths.append(posixpath.normpath(data_root))
    return paths


def cgroup_version(info: Mapping[str, Any]) -> Optional[int]:
    """The engine's cgroup version from ``GET /info`` (None when it does not say)."""
    try:
        return int(info.get('CgroupVersion') or 0) or None
    except (TypeError, ValueError):
        return None


def reference_registry(reference: str) -> str:
    """The registry an image reference names, as Docker reads it (``docker.io`` when it names none)."""
    first, sep, rest = str(reference).partition('/')
    if not sep or not ('.' in first or ':' in first or first == 'localhost'):
        return 'docker.io'
    return first.lower()


def same_registry(one: str, other: str) -> bool:
    """Whether two registry names are the same registry (Docker Hub's aliases count as one)."""
    hub = ('docker.io', 'index.docker.io', 'registry-1.docker.io')
    one, other = str(one).strip().lower().rstrip('/'), str(other).strip().lower().rstrip('/')
    for scheme in ('https://', 'http://'):
        other = other[len(scheme):] if other.startswith(scheme) else other
    return one == other or (one in hub and other in hub)


def policy_message(name: Optional[str], where: str, violations: Sequence[str]) -> str:
    """One sentence for the failure: what was refused, and where to widen it."""
    return ('The configuration of %s is refused by the migration policy on %s: %s. Widen the policy option '
            '(role variables migrate_policy_*) only for what this container really needs.'
            % (name or '?', where, '; '.join(violations)))
