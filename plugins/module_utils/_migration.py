# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The container side of live migration: the captured configuration, the standby's create body, labels.

Private module_utils file (leading underscore): its API may change without notice. Python 3.8+, pure.

The layers of a migration, each in one file:

- ``_migration`` (this file): what is captured of a container and how the standby is created from it;
  ``MigrationError``, the error of every migration step;
- ``_bundle``: the checkpoint bundle (layout, manifest, packing the writable layer and volumes);
- ``_criu``: every runc and CRIU invocation (dump, lazy dump, restore options, ``criu lazy-pages``);
- ``_transfer``: the host-to-host stream of a bundle and the options that describe it;
- ``_cmd`` and ``_files``: programs and file-system helpers shared by the whole collection.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError

LABEL_PREFIX = 'mtd.migration.'
LABEL_ID = LABEL_PREFIX + 'id'
LABEL_FROM = LABEL_PREFIX + 'from'
LABEL_SOURCE_ID = LABEL_PREFIX + 'source_id'

# HostConfig keys that are carried over as they are.
HOSTCONFIG_KEYS = (
    'Binds', 'Tmpfs', 'RestartPolicy', 'Memory', 'MemorySwap', 'MemoryReservation', 'NanoCpus',
    'CpuShares', 'CpuQuota', 'CpuPeriod', 'CpusetCpus', 'CpusetMems', 'PidsLimit', 'CapAdd', 'CapDrop',
    'SecurityOpt', 'ReadonlyRootfs', 'NetworkMode', 'CgroupParent', 'Ulimits', 'ShmSize', 'Init',
    'IpcMode', 'PidMode', 'UTSMode', 'Sysctls', 'LogConfig', 'OomKillDisable', 'OomScoreAdj', 'Devices',
    'GroupAdd', 'Dns', 'DnsOptions', 'DnsSearch', 'ExtraHosts', 'CgroupnsMode', 'MaskedPaths',
    'ReadonlyPaths', 'BlkioWeight', 'KernelMemory', 'MemorySwappiness', 'Runtime', 'Isolation',
)
CONFIG_KEYS = (
    'Hostname', 'Domainname', 'User', 'Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'Labels', 'StopSignal',
    'StopTimeout', 'Tty', 'OpenStdin', 'StdinOnce', 'AttachStdin', 'AttachStdout', 'AttachStderr',
    'ExposedPorts', 'Healthcheck', 'Volumes', 'Shell', 'ArgsEscaped',
)


class MigrationError(MtdError):
    """A migration step failed; ``details`` go into the module's failure result."""


# ---------------------------------------------------------------------------------------------------
# Pure: the captured configuration

def image_reference_by_digest(config_image: Optional[str], repo_digests: Optional[List[str]]) -> Optional[str]:
    """Pick ``repo@sha256:...`` for the image the container was created from.

    ``config_image`` is Config.Image (as the user gave it, e.g. ``127.0.0.1:5000/app:1``), ``repo_digests``
    the image's RepoDigests. Prefer the digest of the same repository; None when the image has none
    (it was never pushed to or pulled from a registry).
    """
    if not repo_digests:
        return None
    name = config_image or ''
    if '@' in name:
        name = name.split('@', 1)[0]
    else:
        # strip a tag, not a registry port: the tag is after the last '/'
        slash = name.rfind('/')
        colon = name.rfind(':')
        if colon > slash:
            name = name[:colon]
    for ref in repo_digests:
        if ref.split('@', 1)[0] == name:
            return ref
    return repo_digests[0]


def capture_config(inspect: Mapping[str, Any], image_inspect: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The configuration needed to recreate the container elsewhere, from the engine's inspect data.

    Raises MigrationError for containers that cannot be migrated faithfully.
    """
    config = inspect.get('Config') or {}
    host_config = inspect.get('HostConfig') or {}
    if host_config.get('Privileged'):
        raise MigrationError('Container %s runs privileged; privileged containers are not migrated '
                             '(give it explicit capabilities instead).' % inspect.get('Name', '').lstrip('/'))
    network_mode = host_config.get('NetworkMode') or 'default'
    if network_mode not in ('none', 'host'):
        raise MigrationError('Container %s uses network mode %r; only "none" and "host" can be migrated '
                             '(CRIU cannot move a bridge-network endpoint between engines).'
                             % (inspect.get('Name', '').lstrip('/'), network_mode))
    digest_ref = image_reference_by_digest(config.get('Image'), (image_inspect or {}).get('RepoDigests'))
    mounts = []
    # --mount type=tmpfs keeps its size and mode only in HostConfig.Mounts
    tmpfs_options = dict((spec.get('Target'), spec.get('TmpfsOptions'))
                         for spec in host_config.get('Mounts') or [] if spec.get('Type') == 'tmpfs')
    for m in inspect.get('Mounts') or []:
        entry = {
            'type': m.get('Type'),
            'name': m.get('Name'),
            'source': m.get('Source'),
            'destination': m.get('Destination'),
            'driver': m.get('Driver'),
            'rw': m.get('RW', True),
            'mode': m.get('Mode', ''),
            'propagation': m.get('Propagation') or '',
        }
        if m.get('Type') == 'tmpfs' and tmpfs_options.get(m.get('Destination')):
            entry['tmpfs_options'] = tmpfs_options[m.get('Destination')]
        mounts.append(entry)
    return {
        'name': inspect.get('Name', '').lstrip('/'),
        'id': inspect.get('Id'),
        'image': config.get('Image'),
        'image_id': inspect.get('Image'),
        'image_digest_ref': digest_ref,
        'config': dict((k, config[k]) for k in CONFIG_KEYS if config.get(k) is not None),
        'host_config': dict((k, host_config[k]) for k in HOSTCONFIG_KEYS if host_config.get(k) not in (None, '', [])),
        'mounts': mounts,
        'graph_driver': (inspect.get('GraphDriver') or {}).get('Name'),
    }


def named_volumes(captured):
    return [m for m in captured.get('mounts') or [] if m.get('type') == 'volume' and m.get('name')]


def bind_mounts(captured):
    return [m for m in captured.get('mounts') or [] if m.get('type') == 'bind']


def tmpfs_mounts(captured):
    """``--mount type=tmpfs`` mounts (CRIU dumps their content and restores it into the same mounts)."""
    return [m for m in captured.get('mounts') or [] if m.get('type') == 'tmpfs' and m.get('destination')]


def bind_spec(mount):
    """``source:destination[:options]`` of a captured bind mount, keeping ro, SELinux labels (z/Z),
    consistency flags and the propagation mode (rprivate, Docker's default, is left out)."""
    flags = [flag for flag in (mount.get('mode') or '').split(',') if flag and flag not in ('ro', 'rw')]
    if not mount.get('rw', True):
        flags.insert(0, 'ro')
    propagation = mount.get('propagation') or ''
    if propagation and propagation != 'rprivate' and propagation not in flags:
        flags.append(propagation)
    return '%s:%s%s' % (mount['source'], mount['destination'], (':' + ','.join(flags)) if flags else '')


def create_body(captured, labels=None, image=None):
    """Engine API ``POST /containers/create`` body for the standby container."""
    body = dict(captured.get('config') or {})
    body['Image'] = image or captured.get('image_digest_ref') or captured.get('image')
    merged = dict(body.get('Labels') or {})
    merged.update(labels or {})
    body['Labels'] = merged
    host_config = dict(captured.get('host_config') or {})
    # Named volumes are mounted by name; binds keep their host paths (checked by the caller).
    host_config['Mounts'] = [
        {'Type': 'volume', 'Source': m['name'], 'Target': m['destination'], 'ReadOnly': not m.get('rw', True)}
        for m in named_volumes(captured)
    ]
    for m in tmpfs_mounts(captured):
        spec = {'Type': 'tmpfs', 'Target': m['destination'], 'ReadOnly': not m.get('rw', True)}
        if m.get('tmpfs_options'):
            spec['TmpfsOptions'] = m['tmpfs_options']
        host_config['Mounts'].append(spec)
    host_config.pop('Binds', None)
    binds = [bind_spec(m) for m in bind_mounts(captured)]
    if binds:
        host_config['Binds'] = binds
    body['HostConfig'] = host_config
    return body


def migration_labels(migration_id: str, source_host: Optional[str], source_id: Optional[str]) -> Dict[str, str]:
    return {LABEL_ID: migration_id, LABEL_FROM: source_host or '', LABEL_SOURCE_ID: source_id or ''}
