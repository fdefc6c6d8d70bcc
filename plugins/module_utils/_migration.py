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
from ansible_collections.mtd.containers.plugins.module_utils._container import (
    REBUILD,
    container_spec,
    repo_digest_for,
)
from ansible_collections.mtd.containers.plugins.module_utils._container import create_body as container_create_body

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

def capture_config(inspect: Mapping[str, Any], image_inspect: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The configuration needed to recreate the container elsewhere, from the engine's inspect data.

    The container's spec (``_container.container_spec``, restricted to :data:`CONFIG_KEYS` and
    :data:`HOSTCONFIG_KEYS`) plus ``image_digest_ref`` (the image by digest, for the target's pull) and
    ``graph_driver``. Raises MigrationError for containers that cannot be migrated faithfully.
    """
    host_config = inspect.get('HostConfig') or {}
    name = (inspect.get('Name') or '').lstrip('/')
    if host_config.get('Privileged'):
        raise MigrationError('Container %s runs privileged; privileged containers are not migrated '
                             '(give it explicit capabilities instead).' % name)
    network_mode = host_config.get('NetworkMode') or 'default'
    if network_mode not in ('none', 'host'):
        raise MigrationError('Container %s uses network mode %r; only "none" and "host" can be migrated '
                             '(CRIU cannot move a bridge-network endpoint between engines).' % (name, network_mode))
    captured = container_spec(dict(inspect), config_keys=CONFIG_KEYS, host_config_keys=HOSTCONFIG_KEYS)
    captured.pop('networks', None)   # none and host have no endpoint to carry
    captured['image_digest_ref'] = repo_digest_for(captured['image'], (image_inspect or {}).get('RepoDigests'))
    captured['graph_driver'] = (inspect.get('GraphDriver') or {}).get('Name')
    return captured


def named_volumes(captured: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [m for m in captured.get('mounts') or [] if m.get('type') == 'volume' and m.get('name')]


def bind_mounts(captured: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [m for m in captured.get('mounts') or [] if m.get('type') == 'bind']


def tmpfs_mounts(captured: Dict[str, Any]) -> List[Dict[str, Any]]:
    """``--mount type=tmpfs`` mounts (CRIU dumps their content and restores it into the same mounts)."""
    return [m for m in captured.get('mounts') or [] if m.get('type') == 'tmpfs' and m.get('destination')]


def create_body(captured: Dict[str, Any], labels: Optional[Dict[str, str]] = None,
                image: Optional[str] = None) -> Dict[str, Any]:
    """Engine API ``POST /containers/create`` body for the standby container: the shared converter with
    every mount rebuilt from the captured list (named volumes by name, tmpfs with its options, binds with
    their host paths, checked by the caller)."""
    return container_create_body(captured, image=image, labels=labels, mounts=REBUILD)


def migration_labels(migration_id: str, source_host: Optional[str], source_id: Optional[str]) -> Dict[str, str]:
    return {LABEL_ID: migration_id, LABEL_FROM: source_host or '', LABEL_SOURCE_ID: source_id or ''}
