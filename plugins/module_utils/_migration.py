# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared pieces of live migration: the captured container configuration, the checkpoint bundle and
its manifest, and the engine-side locations (runc state, checkpoint directories, writable layers).

Private module_utils file (leading underscore): its API may change without notice. Python 3.8+.

A checkpoint bundle is one directory::

    BUNDLE/
      manifest.json         every other file with its size and sha256, plus the captured config
      criu/                 CRIU images of the container's process tree
      rootfs-diff.tar       the writable layer (overlay2 upper dir, whiteouts and opaque dirs kept)
      volumes/NAME.tar      the contents of each named volume
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import time

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._criu import output_tail

MANIFEST = 'manifest.json'
CRIU_DIR = 'criu'
ROOTFS_DIFF = 'rootfs-diff.tar'
LAZY_CERT = 'lazy-source-cert.pem'   # the source's page-server certificate, in a post-copy bundle
LAZY_DIR_SUFFIX = '.lazy'            # beside a source bundle: the lazy dump's log, PID and TLS files
VOLUMES_DIR = 'volumes'
BUNDLE_FORMAT = 1

LABEL_PREFIX = 'mtd.migration.'
LABEL_ID = LABEL_PREFIX + 'id'
LABEL_FROM = LABEL_PREFIX + 'from'
LABEL_SOURCE_ID = LABEL_PREFIX + 'source_id'

# Where Docker's runc keeps its state (``runc --root``), relative to the engine's exec-root.
RUNC_ROOTS = ['/run/docker/runtime-runc/moby', '/var/run/docker/runtime-runc/moby', '/run/containerd/runc/moby']

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

def image_reference_by_digest(config_image, repo_digests):
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


def capture_config(inspect, image_inspect):
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


def migration_labels(migration_id, source_host, source_id):
    return {LABEL_ID: migration_id, LABEL_FROM: source_host or '', LABEL_SOURCE_ID: source_id or ''}


# ---------------------------------------------------------------------------------------------------
# I/O: bundle files, manifest, checksums

def sha256_file(path, bufsize=1024 * 1024):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            chunk = f.read(bufsize)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(bundle):
    """Relative paths of the regular files of a bundle, manifest excluded, sorted."""
    out = []
    for root, dirs, files in os.walk(bundle):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, bundle)
            if rel == MANIFEST:
                continue
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                out.append(rel)
    return out


def write_manifest(bundle, captured, extra=None):
    """Hash every file of the bundle and write manifest.json (mode 0600). Returns the manifest."""
    files = []
    total = 0
    for rel in bundle_files(bundle):
        full = os.path.join(bundle, rel)
        size = os.path.getsize(full)
        total += size
        files.append({'path': rel, 'size': size, 'sha256': sha256_file(full)})
    manifest = {
        'format': BUNDLE_FORMAT,
        'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'container': captured,
        'files': files,
        'bytes': total,
    }
    manifest.update(extra or {})
    path = os.path.join(bundle, MANIFEST)
    # written beside the bundle, then renamed in: whoever lists the bundle meanwhile (a transfer that
    # streams the other files while this runs) sees no manifest or the whole one
    tmp = os.path.join(os.path.dirname(os.path.abspath(bundle)), '.%s.%s.tmp' % (os.path.basename(bundle), MANIFEST))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.rename(tmp, path)
    return manifest


def read_manifest(bundle):
    path = os.path.join(bundle, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as exc:
        raise MigrationError('Cannot read the checkpoint manifest %s: %s' % (path, exc))
    if manifest.get('format') != BUNDLE_FORMAT or not isinstance(manifest.get('files'), list):
        raise MigrationError('%s is not a checkpoint manifest of format %s.' % (path, BUNDLE_FORMAT))
    return manifest


def verify_manifest(bundle, manifest, moved=None, hashes=True):
    """Check every file's size and (with ``hashes``) sha256. ``moved`` maps a bundle subdirectory to where
    it lives now.

    Raises MigrationError naming the first file that differs. Returns the number of bytes checked.
    """
    checked = 0
    for entry in manifest['files']:
        rel = entry['path']
        if os.path.isabs(rel) or '..' in rel.split('/'):
            raise MigrationError('The checkpoint manifest names an unsafe path %r.' % rel)
        full = os.path.join(bundle, rel)
        for prefix, location in (moved or {}).items():
            if rel.startswith(prefix + '/'):
                full = os.path.join(location, rel[len(prefix) + 1:])
        try:
            size = os.path.getsize(full)
        except OSError:
            raise MigrationError('Checkpoint file %s is missing.' % rel, file=rel)
        if size != entry['size']:
            raise MigrationError('Checkpoint file %s has %d bytes, the manifest says %d: the checkpoint is '
                                 'corrupt or incomplete.' % (rel, size, entry['size']), file=rel)
        if hashes and sha256_file(full) != entry['sha256']:
            raise MigrationError('Checkpoint file %s does not match its sha256 in the manifest: the checkpoint '
                                 'was corrupted.' % rel, file=rel)
        checked += size
    return checked


def make_private_dir(path):
    """Create ``path`` (and parents) with mode 0700: checkpoint data holds process memory."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def restrict_tree(path):
    """Directories 0700, files 0600 below ``path``."""
    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o700)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, 0o600)


def remove_tree(path):
    if path and os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
        return True
    return False


def move_tree(src, dst):
    """Rename ``src`` to ``dst``; copy then delete when they are on different mounts."""
    if os.path.lexists(dst):
        shutil.rmtree(dst)
    try:
        os.rename(src, dst)
        return 'rename'
    except OSError:
        shutil.copytree(src, dst, symlinks=True)
        shutil.rmtree(src)
        return 'copy'


def run(cmd, timeout=None, stdin=None):
    """Run an argv list with LANG=C; returns (rc, stdout, stderr) as text.

    Raises MigrationError when the command cannot be started or does not finish within ``timeout``.
    """
    env = dict(os.environ)
    env.update({'LANG': 'C', 'LC_ALL': 'C'})
    try:
        proc = subprocess.run(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MigrationError('%s did not finish within %s s.' % (os.path.basename(cmd[0]), timeout))
    except OSError as exc:
        raise MigrationError('Cannot run %s: %s.' % (cmd[0], exc))
    return proc.returncode, proc.stdout.decode('utf-8', 'replace'), proc.stderr.decode('utf-8', 'replace')


def tail(text, lines=25):
    """The last ``lines`` non-empty lines of ``text``."""
    return output_tail(text, lines)


def read_tail(path, lines=25):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            return tail(f.read().decode('utf-8', 'replace'), lines)
    except OSError:
        return ''


# ---------------------------------------------------------------------------------------------------
# Engine-side locations

def find_runc_root(container_id, candidates=None):
    """The ``runc --root`` directory that holds this container's state, or None."""
    for root in candidates or RUNC_ROOTS:
        if os.path.isfile(os.path.join(root, container_id, 'state.json')):
            return root
    return None


def checkpoint_dir(data_root, container_id, name):
    """Where ``docker start --checkpoint NAME`` looks for CRIU images."""
    return os.path.join(data_root, 'containers', container_id, 'checkpoints', name)


_SAFE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$')


def check_name(value, what):
    if not value or not _SAFE_NAME.match(value):
        raise MigrationError('%s %r must be 1-128 characters of letters, digits, "_", "." or "-".' % (what, value))
    return value


def tar_create(src_dir, dest_file, xattrs=False):
    """GNU tar of a directory's contents (numeric owners; overlay whiteouts and xattrs when asked)."""
    cmd = ['tar', '--numeric-owner', '--sparse']
    if xattrs:
        cmd += ['--xattrs', '--xattrs-include=trusted.*', '--xattrs-include=security.capability']
    cmd += ['-C', src_dir, '-cf', dest_file, '.']
    rc, out, err = run(cmd)
    if rc != 0:
        raise MigrationError('tar of %s failed: %s' % (src_dir, tail(err or out, 5)))


def tar_extract(tar_file, dest_dir, xattrs=False):
    cmd = ['tar', '--numeric-owner', '-p']
    if xattrs:
        cmd += ['--xattrs', '--xattrs-include=trusted.*', '--xattrs-include=security.capability']
    cmd += ['-C', dest_dir, '-xf', tar_file]
    rc, out, err = run(cmd)
    if rc != 0:
        raise MigrationError('Extracting %s into %s failed: %s' % (tar_file, dest_dir, tail(err or out, 5)))


def tmpfs_free_bytes(path):
    """Free bytes of ``path`` when it is a writable tmpfs mount point, else None."""
    try:
        with open('/proc/self/mounts') as handle:
            is_tmpfs = any(line.split()[1:3] == [path, 'tmpfs'] for line in handle if len(line.split()) > 2)
        if not is_tmpfs or not os.access(path, os.W_OK):
            return None
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize
