# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The checkpoint bundle: its layout, its manifest, and packing and unpacking its parts.

Private module_utils file (leading underscore): its API may change without notice. Python 3.8+.

A checkpoint bundle is one directory::

    BUNDLE/
      manifest.json         every other file with its size and sha256 (null for a file the authenticated
                            stream carried unhashed, see ManifestJob), plus the captured config
      criu/                 CRIU images of the container's process tree
      rootfs-diff.tar       the writable layer (overlay2 upper dir, whiteouts and opaque dirs kept)
      volumes/NAME.tar      the contents of each named volume
      lazy-source-cert.pem  (post-copy only) the source page server's certificate

``checkpoint`` writes it (``pack_rootfs``, ``pack_volumes``, then ``write_manifest`` or a
``ManifestJob`` that hashes while the bundle streams), ``restore`` reads it (``read_manifest``,
``verify_manifest``, ``unpack_rootfs``, ``unpack_volume``). Whatever arrives from another host is
untrusted: ``verify_manifest`` refuses paths outside the bundle and every name is ``check_name``'d.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.mtd.containers.plugins.module_utils._archive import LAYER, VOLUME, check_archive, member_path
from ansible_collections.mtd.containers.plugins.module_utils._cmd import CmdRunner, output_tail
from ansible_collections.mtd.containers.plugins.module_utils._files import atomic_write, make_private_dir
from ansible_collections.mtd.containers.plugins.module_utils._migration import MigrationError

MANIFEST = 'manifest.json'
CRIU_DIR = 'criu'
ROOTFS_DIFF = 'rootfs-diff.tar'
LAZY_CERT = 'lazy-source-cert.pem'   # the source's page-server certificate, in a post-copy bundle
LAZY_DIR_SUFFIX = '.lazy'            # beside a source bundle: the lazy dump's log, PID and TLS files
VOLUMES_DIR = 'volumes'
BUNDLE_FORMAT = 1

_SAFE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$')
_SHA256 = re.compile(r'^[0-9a-f]{64}$')
MANIFEST_MAX_BYTES = 64 * 1024 * 1024
_TAR_XATTRS = ['--xattrs', '--xattrs-include=trusted.*', '--xattrs-include=security.capability']


def check_name(value: Optional[str], what: str) -> str:
    """``value`` when it is a safe file and container name (MigrationError otherwise)."""
    if not value or not _SAFE_NAME.match(value):
        raise MigrationError('%s %r must be 1-128 characters of letters, digits, "_", "." or "-".' % (what, value))
    return value


def checkpoint_dir(data_root: str, container_id: str, name: str) -> str:
    """Where ``docker start --checkpoint NAME`` looks for CRIU images."""
    return os.path.join(data_root, 'containers', container_id, 'checkpoints', name)


# ---------------------------------------------------------------------------------------------------
# Files and checksums

def sha256_file(path: str, bufsize: int = 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while True:
            chunk = handle.read(bufsize)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(bundle: str) -> List[str]:
    """Relative paths of the regular files of a bundle, manifest excluded, sorted."""
    out = []
    for root, dirs, files in os.walk(bundle):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, bundle)
            if rel == MANIFEST:
                continue
            if stat.S_ISREG(os.lstat(full).st_mode):
                out.append(rel)
    return out


def part_bytes(manifest: Mapping[str, Any]) -> Dict[str, int]:
    """Bytes per part of a bundle (criu, rootfs, volumes, total), from its manifest."""
    files = manifest.get('files') or []
    part = {'criu': 0, 'rootfs': 0, 'volumes': 0}
    for entry in files:
        if entry['path'].startswith(CRIU_DIR + '/'):
            part['criu'] += entry['size']
        elif entry['path'] == ROOTFS_DIFF:
            part['rootfs'] += entry['size']
        elif entry['path'].startswith(VOLUMES_DIR + '/'):
            part['volumes'] += entry['size']
    part['total'] = sum(entry['size'] for entry in files)
    return part


# ---------------------------------------------------------------------------------------------------
# The manifest

def write_manifest(bundle: str, captured: Mapping[str, Any], extra: Optional[Mapping[str, Any]] = None,
                   known: Optional[Mapping[str, Tuple[int, Optional[str]]]] = None) -> Dict[str, Any]:
    """Hash every file of the bundle and write manifest.json (mode 0600). Returns the manifest.

    ``known`` maps a relative path to (size, sha256) already computed from the file's bytes (by the
    sender, as it streamed them); such a file is not read again unless its size differs. A known sha256
    of None (a file the authenticated stream carried without hashing it) is written as null.
    """
    files = []
    total = 0
    for rel in bundle_files(bundle):
        full = os.path.join(bundle, rel)
        size = os.path.getsize(full)
        total += size
        seen = (known or {}).get(rel)
        digest = seen[1] if seen and seen[0] == size else sha256_file(full)
        files.append({'path': rel, 'size': size, 'sha256': digest})
    manifest: Dict[str, Any] = {
        'format': BUNDLE_FORMAT,
        'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'container': captured,
        'files': files,
        'bytes': total,
    }
    manifest.update(extra or {})
    # written beside the bundle, then renamed in: whoever lists the bundle meanwhile (a transfer that
    # streams the other files while this runs) sees no manifest or the whole one
    atomic_write(os.path.join(bundle, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True), mode=0o600,
                 fsync=False, tmp_dir=os.path.dirname(os.path.abspath(bundle)))
    return manifest


class ManifestJob:
    """The manifest of a bundle that is being sent: the sender fills ``hashes`` (path -> (size, sha256))
    from the very bytes it sends (``_transfer.send(hashes=..., digest=...)``), and calls ``wait()`` once
    every other file went out; ``wait()`` writes the manifest from those hashes (hashing only a file the
    stream did not read, or one whose size changed), so the bundle is read once, not once to hash and once
    to send.

    ``digest`` (False by default): whether the sender hashes the files it streams. Without it they are
    listed with their size and ``sha256: null``: the stream is authenticated (TLS 1.3 with pinned
    certificates, or HMAC-SHA256 per record) and the receiver stamps the bundle only when every record
    passed that check, which proves the same as a hash taken by the same source would, without a pass
    over every byte while the container is frozen. ``verify_manifest`` refuses such a file unless the
    caller trusts the stamp (see docs/threat-model.md)."""

    def __init__(self, bundle: str, captured: Mapping[str, Any], extra: Mapping[str, Any], digest: bool = False) -> None:
        self.bundle, self.captured, self.extra = bundle, captured, extra
        self.digest = digest
        self.hashes: Dict[str, Tuple[int, Optional[str]]] = {}
        self.manifest: Optional[Dict[str, Any]] = None
        self.seconds: Optional[float] = None

    def wait(self) -> Optional[Dict[str, Any]]:
        if self.manifest is None:
            started = time.time()
            try:
                self.manifest = write_manifest(self.bundle, self.captured, extra=self.extra, known=self.hashes)
            except (MigrationError, OSError) as exc:
                raise MigrationError('Writing the checkpoint manifest failed: %s' % exc)
            finally:
                self.seconds = round(time.time() - started, 4)
        return self.manifest

    def abandon(self) -> None:
        """The send failed: no manifest is written (the bundle is removed)."""
        self.hashes.clear()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_files(files: Any) -> None:
    if not isinstance(files, list):
        raise MigrationError('its "files" is not a list')
    seen = set()
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get('path'), str):
            raise MigrationError('a "files" entry is not an object with a "path" string: %.80r' % (entry,))
        rel = member_path(entry['path'], 'The checkpoint manifest')
        if rel != entry['path'] or rel == MANIFEST:
            raise MigrationError('it names the unsafe or unnormalised path %r' % entry['path'])
        if rel in seen:
            raise MigrationError('it names %s twice' % rel)
        seen.add(rel)
        if not _is_int(entry.get('size')) or entry['size'] < 0:
            raise MigrationError('the size of %s is not a non-negative integer' % rel)
        digest = entry.get('sha256', 'missing')
        if digest is not None and (not isinstance(digest, str) or not _SHA256.match(digest)):
            raise MigrationError('the sha256 of %s is neither 64 hexadecimal digits nor null' % rel)


def check_manifest(manifest: Any) -> Dict[str, Any]:
    """The manifest's schema (types, required keys, safe names and paths); raises MigrationError (the
    reason, without the file's name) or returns it. Nothing of a manifest is used before this passed."""
    if not isinstance(manifest, dict):
        raise MigrationError('it is not a JSON object')
    if manifest.get('format') != BUNDLE_FORMAT or isinstance(manifest.get('format'), bool):
        raise MigrationError('its format is %.40r, not %s' % (manifest.get('format'), BUNDLE_FORMAT))
    _check_files(manifest.get('files'))
    if not isinstance(manifest.get('container'), dict):
        raise MigrationError('its "container" is not an object')
    if manifest.get('checkpoint') is not None:
        if not isinstance(manifest['checkpoint'], str):
            raise MigrationError('its "checkpoint" is not a string')
        check_name(manifest['checkpoint'], 'The checkpoint name')
    for key in ('bytes',):
        if manifest.get(key) is not None and not _is_int(manifest[key]):
            raise MigrationError('its "%s" is not an integer' % key)
    for key in ('timings',):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise MigrationError('its "%s" is not an object' % key)
    lazy = manifest.get('lazy_pages')
    if lazy is not None:
        if not isinstance(lazy, dict) or not isinstance(lazy.get('address'), str) \
                or not re.match(r'^[A-Za-z0-9.:\[\]-]{1,255}$', lazy['address']):
            raise MigrationError('its "lazy_pages" has no valid address')
        if not _is_int(lazy.get('port')) or not 0 < lazy['port'] < 65536:
            raise MigrationError('its "lazy_pages" port is not between 1 and 65535')
        if lazy.get('source_cert') not in (None, LAZY_CERT):
            raise MigrationError('its "lazy_pages" names a certificate other than %s' % LAZY_CERT)
    return manifest


def read_manifest(bundle: str) -> Dict[str, Any]:
    """The bundle's manifest, schema-checked (see check_manifest); MigrationError otherwise."""
    path = os.path.join(bundle, MANIFEST)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, 'rb') as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise MigrationError('it is not a regular file')
            data = handle.read(MANIFEST_MAX_BYTES + 1)
        if len(data) > MANIFEST_MAX_BYTES:
            raise MigrationError('it is larger than %d MB' % (MANIFEST_MAX_BYTES >> 20))
        manifest = json.loads(data.decode('utf-8'))
    except (OSError, ValueError) as exc:
        raise MigrationError('Cannot read the checkpoint manifest %s: %s' % (path, exc))
    except MigrationError as exc:
        raise MigrationError('Cannot read the checkpoint manifest %s: %s.' % (path, exc.msg))
    try:
        return check_manifest(manifest)
    except MigrationError as exc:
        raise MigrationError('%s is not a valid checkpoint manifest of format %s: %s; the bundle is refused.'
                             % (path, BUNDLE_FORMAT, exc.msg.rstrip('.')))


def verify_manifest(bundle: str, manifest: Mapping[str, Any], moved: Optional[Mapping[str, str]] = None,
                    hashes: bool = True) -> int:
    """Check every file's size and (with ``hashes``) sha256. ``moved`` maps a bundle subdirectory to where
    it lives now. With ``hashes``, a file whose sha256 is null (streamed unhashed) is refused: only the
    receiver's stamp of the stream vouches for it, and the caller did not rely on one.

    Raises MigrationError naming the first file that differs. Returns the number of bytes checked.
    """
    checked = 0
    for entry in manifest['files']:
        rel = entry['path']
        try:
            safe = member_path(rel, 'The checkpoint manifest') == rel
        except MigrationError:
            safe = False
        if not safe:
            raise MigrationError('The checkpoint manifest names an unsafe path %r.' % rel)
        full = os.path.join(bundle, rel)
        for prefix, location in (moved or {}).items():
            if rel.startswith(prefix + '/'):
                full = os.path.join(location, rel[len(prefix) + 1:])
        try:
            info = os.lstat(full)
        except OSError:
            raise MigrationError('Checkpoint file %s is missing.' % rel, file=rel)
        if not stat.S_ISREG(info.st_mode):
            raise MigrationError('Checkpoint file %s is not a regular file.' % rel, file=rel)
        size = info.st_size
        if size != entry['size']:
            raise MigrationError('Checkpoint file %s has %d bytes, the manifest says %d: the checkpoint is '
                                 'corrupt or incomplete.' % (rel, size, entry['size']), file=rel)
        if hashes and entry['sha256'] is None:
            raise MigrationError('Checkpoint file %s has no sha256 in the manifest: the source streamed it without '
                                 'hashing it, so only the receiver\'s stamp of the authenticated stream vouches for '
                                 'it; use verify auto on a bundle the receiver stamped, or checkpoint with '
                                 'send.hashes true.' % rel, file=rel)
        if hashes and sha256_file(full) != entry['sha256']:
            raise MigrationError('Checkpoint file %s does not match its sha256 in the manifest: the checkpoint '
                                 'was corrupted.' % rel, file=rel)
        checked += size
    return checked


# ---------------------------------------------------------------------------------------------------
# Packing and unpacking the writable layer and the volumes (GNU tar)

def tar_create(src_dir: str, dest_file: str, xattrs: bool = False) -> None:
    """GNU tar of a directory's contents (numeric owners; overlay whiteouts and xattrs when asked)."""
    args = ['--numeric-owner', '--sparse'] + (_TAR_XATTRS if xattrs else []) + ['-C', src_dir, '-cf', dest_file, '.']
    result = CmdRunner('tar').run(args)
    if not result.ok:
        raise MigrationError('tar of %s failed: %s' % (src_dir, output_tail(result.stderr or result.stdout, 5)))


def tar_extract(tar_file: str, dest_dir: str, xattrs: bool = False) -> None:
    args = ['--numeric-owner', '-p'] + (_TAR_XATTRS if xattrs else []) + ['-C', dest_dir, '-xf', tar_file]
    result = CmdRunner('tar').run(args)
    if not result.ok:
        raise MigrationError('Extracting %s into %s failed: %s'
                             % (tar_file, dest_dir, output_tail(result.stderr or result.stdout, 5)))


def pack_rootfs(bundle: str, upper: Optional[str], name: str) -> None:
    """The container's writable layer (overlay2 upper directory) into the bundle."""
    if not upper or not os.path.isdir(upper):
        raise MigrationError('The writable layer of %s (%s) is not readable on this host.' % (name, upper))
    tar_create(upper, os.path.join(bundle, ROOTFS_DIFF), xattrs=True)


def pack_volumes(bundle: str, volumes: Sequence[Mapping[str, Any]]) -> None:
    """Each named volume's contents into ``volumes/NAME.tar``."""
    if volumes:
        make_private_dir(os.path.join(bundle, VOLUMES_DIR))
    for vol in volumes:
        tar_create(vol['source'], os.path.join(bundle, VOLUMES_DIR, vol['name'] + '.tar'))


def unpack_rootfs(bundle: str, upper: str) -> None:
    """The writable layer into the standby's upper directory, after the listing check (``_archive``)."""
    tar_file = os.path.join(bundle, ROOTFS_DIFF)
    check_archive(tar_file, LAYER, dest=upper, what='The writable layer (%s)' % ROOTFS_DIFF)
    tar_extract(tar_file, upper, xattrs=True)


def check_parts(bundle: str, volume_names: Sequence[str]) -> None:
    """The listing check of the writable layer and of the named volumes' archives, before anything is
    created for them (``unpack_rootfs`` and ``unpack_volume`` check again against their destinations)."""
    check_archive(os.path.join(bundle, ROOTFS_DIFF), LAYER, what='The writable layer (%s)' % ROOTFS_DIFF)
    for name in volume_names:
        check_name(name, 'Volume name')
        tar_file = os.path.join(bundle, VOLUMES_DIR, name + '.tar')
        if not os.path.isfile(tar_file) or os.path.islink(tar_file):
            raise MigrationError('The bundle has no contents for volume %s (%s/%s.tar is missing).'
                                 % (name, VOLUMES_DIR, name))
        check_archive(tar_file, VOLUME, what='The contents of volume %s' % name)


def unpack_volume(bundle: str, name: str, mountpoint: Optional[str]) -> None:
    """A volume's contents into its mount point, after the listing check: no device node, FIFO, setuid or
    setgid file, nothing outside the volume (the caller has just re-checked that the volume is ours)."""
    check_name(name, 'Volume name')
    if not mountpoint:
        raise MigrationError('Volume %s has no mount point on this host.' % name)
    tar_file = os.path.join(bundle, VOLUMES_DIR, name + '.tar')
    if not os.path.isfile(tar_file) or os.path.islink(tar_file):
        raise MigrationError('The bundle has no contents for volume %s (%s/%s.tar is missing).' % (name, VOLUMES_DIR, name))
    check_archive(tar_file, VOLUME, dest=mountpoint, what='The contents of volume %s' % name)
    tar_extract(tar_file, mountpoint)
