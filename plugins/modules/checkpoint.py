#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint
short_description: Checkpoint a running Docker container with CRIU into a self-contained bundle
version_added: 0.1.0
description:
  - Runs on the host of the container (the migration's source). Freezes the container with the
    cgroup freezer (C(docker pause)), dumps its process tree with CRIU through the engine's own runc
    (C(runc checkpoint --leave-running) into O(dest), ideally a tmpfs), and captures everything needed
    to bring it back on another host in one bundle directory.
  - "The bundle holds: C(criu/) (the CRIU images), C(rootfs-diff.tar) (the container's writable layer:
    the overlay2 upper directory with its whiteouts and opaque directories), C(volumes/NAME.tar) (the
    contents of each named volume) and C(manifest.json) (the captured configuration: image by
    digest, command, entrypoint, environment, labels, working directory, user, mounts and volumes, tmpfs,
    restart policy, resource limits, security options, network mode; and every file with its size and
    sha256)."
  - By default the container is left B(frozen) after the dump, so that nothing it writes after the
    checkpoint can be lost, and so that a failed migration resumes it in an instant (see
    M(mtd.containers.container_state)). With O(leave_running=true) it is resumed right after the dump.
  - "The bundle holds process memory, secrets included: its directories are created 0700 and its files
    0600. O(state=absent) deletes it."
  - "Pre-copy: when the kernel tracks dirty pages (C(criu check --feature mem_dirty_track)), iterative
    pre-copy can shorten the freeze. This module reports whether it is available in RV(precopy); it
    performs a single stop-and-copy dump and says so. On kernels without soft-dirty tracking (such as
    the lab's) pre-copy is impossible and RV(precopy) says why."
  - Docker's own C(POST /containers/{id}/checkpoints) passes the images through containerd's content
    store and is several times slower than CRIU itself; this module calls runc directly on the
    engine's runc state directory instead.
extends_documentation_fragment:
  - mtd.containers.docker
  - mtd.containers.attributes
  - mtd.containers.attributes.actiongroup_mtd
attributes:
  check_mode:
    support: full
    details: Checks the container, the engine, runc and CRIU, and reports what would be done; freezes
      and writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A bundle that already holds a checkpoint of this container, while the container is still
      frozen, is reported unchanged.
options:
  container:
    description: Name or id of the running container.
    type: str
    required: true
  name:
    description:
      - Name of the checkpoint and of its bundle directory below O(dest).
      - Defaults to V(mtd-) and the container's short id.
    type: str
  dest:
    description:
      - Directory that receives the bundle directory.
      - Defaults to C(/dev/shm/mtd-migrations) when C(/dev/shm) is a tmpfs (fastest), else to
        C(mtd-migrations) in the engine's data root.
    type: path
  state:
    description:
      - V(present) makes the checkpoint. V(absent) deletes the bundle (the container is not touched).
    type: str
    choices: [present, absent]
    default: present
  leave_running:
    description:
      - Resume the container right after the dump instead of leaving it frozen.
      - Use it for a snapshot that does not stop the workload; for a migration leave it V(false).
    type: bool
    default: false
  runc_path:
    description: The runc binary the engine uses. Found on PATH and in the usual sbin directories by default.
    type: path
  runc_root:
    description:
      - The engine's runc state directory (C(runc --root)). Found by looking for the container's
        C(state.json) below C(/run/docker/runtime-runc/moby) and the other usual places.
    type: path
  criu_path:
    description: The criu binary runc should use. Found on PATH and in C(/usr/local/sbin) by default.
    type: path
  timeout:
    description: Seconds allowed for the Engine API calls and for the dump.
    type: int
    default: 300
  send:
    description:
      - Stream the bundle to a M(mtd.containers.checkpoint_transfer) receiver right after the dump, in
        the same task, which keeps the freeze short (one task fewer while the container is frozen).
      - When the transfer fails the module fails; the container stays frozen as after any dump (resume
        it with M(mtd.containers.container_state) to roll back).
    type: dict
    suboptions:
      address:
        description: The receiver's address.
        type: str
        required: true
      port:
        description: The receiver's port.
        type: int
        required: true
      token:
        description: The transfer's shared secret (at least 16 characters).
        type: str
        required: true
      compression:
        description:
          - Compression of the stream. V(auto) deflates a few samples of the bundle's largest file (the
            memory pages) and sends data that does not shrink to 90 % as it is, since compressing it
            would only add CPU time while the container is frozen; otherwise it takes zstd when present,
            else gzip.
        type: str
        choices: [auto, zstd, gzip, none]
        default: auto
      connect_timeout:
        description: Seconds to keep retrying the connection.
        type: int
        default: 60
      keep:
        description:
          - Keep the bundle on this host after the receiver confirmed it. By default it is deleted right
            then, while the target restores. The frozen container itself is the rollback, and the copy of
            its memory only costs RAM (in tmpfs) exactly when the target needs RAM for the restore.
        type: bool
        default: false
  lazy_pages:
    description:
      - Post-copy. The dump leaves out the memory that can be fetched later; CRIU then serves those pages
        from the frozen container to the target's C(criu lazy-pages) daemon (started by
        M(mtd.containers.restore)), which gives them to the restored process on demand and copies the
        rest in the background. The bundle that is sent holds only the other images (a few MB), so the
        freeze no longer grows with the container's memory.
      - Needs O(send). The page channel is mutual TLS; each side has a fresh self-signed certificate and
        trusts only the other's (this module makes the source's and puts it into the bundle).
      - The page server outlives this task (it runs until the target fetched every page). The container
        stays frozen throughout and afterwards, so resuming it stays a valid rollback until it is
        removed. O(state=absent) ends a page server that still waits (freezing the container's cgroup
        first, so that it stays frozen) and removes its files.
      - Fails before anything is frozen when this host cannot run CRIU's lazy page server (see notes).
    type: dict
    suboptions:
      address:
        description: Address of this host on which the page server listens (the target connects to it).
        type: str
        required: true
      port:
        description: TCP port of the page server.
        type: int
        required: true
      peer_cert:
        description: The target's certificate (PEM), RV(mtd.containers.restore#module:lazy_cert) of its O(state=prepared) run.
        type: str
        required: true
      ready_timeout:
        description: Seconds the dump may take until the page server is ready.
        type: int
        default: 60
notes:
  - O(lazy_pages) needs C(fs.pipe-max-size) of at least 3354624 bytes (or CAP_SYS_RESOURCE, which some
    virtual machines and containers lack). CRIU's page server grows a pipe to that size, ignores the
    failure, and would only fail when the target asks for pages.
  - Only containers with network mode V(none) or V(host) are supported (no bridge endpoints), and
    only the overlay2 storage driver. Privileged containers are refused.
  - The image must have a registry digest (C(RepoDigests)) so that the target can pull the exact
    same bytes, because CRIU restores only into byte-identical files.
requirements:
  - Docker Engine with experimental features on (checkpoint/restore), using runc.
  - CRIU >= 4.1 on the host.
  - GNU tar on the host.
seealso:
  - module: mtd.containers.restore
  - module: mtd.containers.checkpoint_transfer
  - module: mtd.containers.container_state
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Freeze web-1 and checkpoint it into /dev/shm/mtd-migrations/m-42
  mtd.containers.checkpoint:
    container: web-1
    name: m-42
  register: cp

- name: Snapshot without stopping the workload
  mtd.containers.checkpoint:
    container: web-1
    name: snapshot-1
    leave_running: true

- name: Delete the bundle
  mtd.containers.checkpoint:
    container: web-1
    name: m-42
    state: absent
"""

RETURN = r"""
bundle:
  description: The bundle directory.
  returned: always
  type: str
  sample: /dev/shm/mtd-migrations/m-42
container:
  description: The container as captured.
  returned: when O(state=present)
  type: dict
  sample: {"id": "0123...", "name": "web-1", "image_digest_ref": "127.0.0.1:5000/app@sha256:...", "state": "paused"}
files:
  description: Number of files in the bundle (manifest excluded).
  returned: when O(state=present)
  type: int
  sample: 42
bytes:
  description: Bytes per part of the bundle.
  returned: when O(state=present)
  type: dict
  sample: {"criu": 268500000, "rootfs": 10240, "volumes": 20480, "total": 268530720}
memory_bytes:
  description:
    - What the container's memory cgroup charges (about the size of the CRIU pages to expect), measured
      before the freeze; V(null) when it cannot be read. M(mtd.containers.restore) takes it as
      O(mtd.containers.restore#module:expected_bytes).
  returned: when O(state=present)
  type: int
  sample: 270532608
bundle_removed:
  description: The bundle was deleted after the receiver confirmed it (see O(send.keep)).
  returned: when O(send) is given and O(send.keep=false)
  type: bool
  sample: true
lazy_pages:
  description:
    - With O(lazy_pages), the page server that still runs after this task (PID of the runc checkpoint that
      leads its process group, address, port) and the directory with its log and TLS files.
  returned: when O(lazy_pages) was used and the page server is ready
  type: dict
  sample: {"pid": 43121, "address": "127.0.1.1", "port": 47113, "dir": "/dev/shm/mtd-migrations/m-42.lazy"}
frozen_at:
  description:
    - Epoch seconds (this host's clock) at which the engine had frozen the container; V(null) when it
      was frozen already.
  returned: when O(state=present) and a checkpoint was made
  type: float
  sample: 1795866647.9
timings:
  description: Seconds spent per phase.
  returned: when O(state=present)
  type: dict
  sample: {"freeze": 0.03, "dump": 0.31, "rootfs": 0.01, "volumes": 0.01, "manifest": 0.2, "total": 0.6}
precopy:
  description: Whether iterative pre-copy was possible and used, and why not.
  returned: when O(state=present)
  type: dict
  sample: {"available": false, "used": false, "reason": "the kernel does not track dirty pages (criu: Dirty tracking is OFF)"}
config:
  description:
    - The captured configuration of the container (also in check mode), as M(mtd.containers.restore)
      takes it in O(mtd.containers.restore#module:config) to prepare the standby container.
  returned: when O(state=present)
  type: dict
transfer:
  description: Statistics of the transfer when O(send) was given (see M(mtd.containers.checkpoint_transfer)).
  returned: when O(send) is given
  type: dict
  sample: {"bytes_raw": 268530720, "bytes_sent": 1203456, "compression": "zstd", "seconds": 0.5, "throughput_mb_s": 512.3,
           "compression_choice": {"requested": "auto", "used": "zstd", "probe_ratio": 0.004, "probe_file": "criu/pages-1.img"}}
method:
  description: How the dump was made (V(runc)).
  returned: when O(state=present)
  type: str
  sample: runc
page_server:
  description:
    - With O(state=absent), what became of a lazy dump's page server; V(finished) (it had ended),
      V(stopped) (it still waited and was ended, the container kept frozen) or V(null) (there was none).
  returned: when O(state=absent) found a lazy dump's directory
  type: str
  sample: finished
criu_log:
  description: Tail of CRIU's dump.log when the dump failed.
  returned: on failure
  type: str
"""

import os
import shutil
import signal
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mtd.containers.plugins.module_utils._cgroup import (
    CgroupError,
    freeze_cgroup_of_pid,
    memory_usage_of_pid,
)
from ansible_collections.mtd.containers.plugins.module_utils._common import group_alive, process_argv, read_pid
from ansible_collections.mtd.containers.plugins.module_utils._criu import (
    Criu,
    CriuError,
    RuncCriuOptions,
    find_criu,
    lazy_pages_blocker,
    lazy_tls_options,
    make_tls_identity,
    spawn_until_ready,
)
from ansible_collections.mtd.containers.plugins.module_utils._docker import (
    DockerError,
    client_from_module,
    docker_argument_spec,
)
from ansible_collections.mtd.containers.plugins.module_utils._migration import (
    CRIU_DIR,
    LAZY_CERT,
    LAZY_DIR_SUFFIX,
    MANIFEST,
    ROOTFS_DIFF,
    VOLUMES_DIR,
    MigrationError,
    capture_config,
    check_name,
    find_runc_root,
    make_private_dir,
    named_volumes,
    read_manifest,
    read_tail,
    remove_tree,
    restrict_tree,
    run,
    tail,
    tar_create,
    tmpfs_free_bytes,
    write_manifest,
)
from ansible_collections.mtd.containers.plugins.module_utils._transfer import (
    TransferError,
    choose_compression,
    connect,
)
from ansible_collections.mtd.containers.plugins.module_utils._transfer import (
    send as send_bundle,
)

SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin']


def default_dest(data_root):
    if tmpfs_free_bytes('/dev/shm') is not None:
        return '/dev/shm/mtd-migrations'
    return os.path.join(data_root, 'mtd-migrations')


class ManifestJob:
    """write_manifest() in a thread (hashlib releases the GIL), so the manifest is hashed while the
    rest of the bundle streams to the target; ``wait()`` returns once it is written, or raises."""

    def __init__(self, bundle, captured, extra):
        import threading
        self.manifest = None
        self.error = None
        self.seconds = None
        self._thread = threading.Thread(target=self._run, args=(bundle, captured, extra))
        self._thread.daemon = True
        self._thread.start()

    def _run(self, bundle, captured, extra):
        started = time.time()
        try:
            self.manifest = write_manifest(bundle, captured, extra=extra)
        except (MigrationError, OSError) as exc:
            self.error = exc
        self.seconds = round(time.time() - started, 4)

    def wait(self):
        self._thread.join()
        if self.error is not None:
            raise MigrationError('Writing the checkpoint manifest failed: %s' % self.error)
        return self.manifest


class Checkpointer:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.client = client_from_module(module)
        self.result = {'changed': False}

    def fail(self, msg, **kw):
        self.result.update(kw)
        self.module.fail_json(msg=msg, **self.result)

    def inspect(self):
        try:
            return self.client.inspect_container(self.p['container'])
        except DockerError as exc:
            if exc.status == 404:
                self.fail('No such container %r on this host.' % self.p['container'])
            self.fail('Cannot inspect container %r: %s' % (self.p['container'], exc))

    def run_present(self):
        if self.p['send'] and len(self.p['send']['token']) < 16:
            self.fail('send.token must be at least 16 characters long.')
        lazy = self.p['lazy_pages']
        if lazy:
            if not self.p['send']:
                self.fail('lazy_pages needs send: the target must get the rest of the checkpoint in the same task.')
            if self.p['leave_running']:
                self.fail('lazy_pages and leave_running exclude each other (the pages are served from the frozen container).')
            if not 0 < lazy['port'] < 65536:
                self.fail('lazy_pages.port must be between 1 and 65535, got %s.' % lazy['port'])
            if '-----BEGIN CERTIFICATE-----' not in lazy['peer_cert']:
                self.fail('lazy_pages.peer_cert is not a PEM certificate.')
            blocker = lazy_pages_blocker()
            if blocker:
                self.fail('This host cannot serve lazy pages: %s.' % blocker)
        info = self.client.info()
        data_root = info.get('DockerRootDir') or '/var/lib/docker'
        if not info.get('ExperimentalBuild'):
            self.fail('The Docker engine on this host does not run with experimental features on; '
                      'checkpoint/restore needs "experimental": true in daemon.json.')
        inspect = self.inspect()
        cid = inspect['Id']
        name = check_name(self.p['name'] or 'mtd-' + cid[:12], 'Checkpoint name')
        dest = self.p['dest'] or default_dest(data_root)
        bundle = os.path.join(dest, name)
        self.result['bundle'] = bundle
        state = inspect.get('State') or {}
        paused = bool(state.get('Paused'))
        if not state.get('Running'):
            self.fail('Container %s is not running (status %s); only a running container can be checkpointed.'
                      % (self.p['container'], state.get('Status')))

        # A finished checkpoint of this container, still frozen: nothing to do.
        if paused and os.path.isfile(os.path.join(bundle, MANIFEST)):
            try:
                manifest = read_manifest(bundle)
            except MigrationError:
                manifest = None
            if manifest and (manifest.get('container') or {}).get('id') == cid:
                self.result.update(self.summary(manifest, 'paused', method=manifest.get('method')))
                self.result['timings'] = manifest.get('timings', {})
                self.result['config'] = manifest.get('container')
                return

        image = {}
        try:
            image = self.client.get('/images/%s/json' % inspect.get('Image'))
        except DockerError as exc:
            self.fail('Cannot inspect the image of %s: %s' % (self.p['container'], exc))
        try:
            captured = capture_config(inspect, image)
        except MigrationError as exc:
            self.fail(str(exc))
        if not captured['image_digest_ref']:
            self.fail('The image %s of %s has no registry digest; push it to a registry the target host can '
                      'pull from (CRIU restores only into byte-identical files).' % (captured['image'], captured['name']))
        if captured['graph_driver'] != 'overlay2':
            self.fail('Storage driver %r is not supported; the writable layer is captured from overlay2 only.'
                      % captured['graph_driver'])
        for vol in named_volumes(captured):
            if (vol.get('driver') or 'local') != 'local':
                self.fail('Volume %s uses driver %s; only local volumes are migrated.' % (vol['name'], vol['driver']))

        criu = self.find_criu()
        runc = self.p['runc_path'] or self.module.get_bin_path('runc', opt_dirs=SBIN_DIRS)
        if not runc:
            self.fail('runc was not found on this host; set runc_path.')
        if not (os.path.isfile(runc) and os.access(runc, os.X_OK)):
            self.fail('runc_path %s is not an executable file.' % runc)
        runc_root = self.p['runc_root'] or find_runc_root(cid)
        if not runc_root:
            self.fail('The runc state of container %s was not found; set runc_root to the engine\'s runc '
                      'root (for Docker: <exec-root>/runtime-runc/moby).' % captured['name'])
        self.result['precopy'] = self.precopy_status(criu, lazy=bool(lazy))
        self.result['method'] = 'runc'
        self.result['changed'] = True
        self.result['config'] = captured
        pid = (inspect.get('State') or {}).get('Pid')
        self.result['memory_bytes'] = memory_usage_of_pid(pid) if pid else None
        if self.module.check_mode:
            self.result['container'] = {'id': cid, 'name': captured['name'],
                                        'image_digest_ref': captured['image_digest_ref'], 'state': 'running'}
            return

        timings = {}
        t_all = time.time()
        channel = None
        if self.p['send']:
            # the receiver must be there, and take us, before anything is frozen
            t = time.time()
            channel = self.open_channel()
            timings['connect'] = round(time.time() - t, 4)
        try:
            remove_tree(bundle)
            make_private_dir(bundle)
            lazy_dir = self.prepare_lazy(bundle, captured['name']) if lazy else None
        except (OSError, CriuError) as exc:
            self.close_channel(channel)
            remove_tree(bundle)
            self.fail('Cannot create the checkpoint directory %s: %s' % (bundle, exc))
        t = time.time()
        if not paused:
            try:
                self.client.post('/containers/%s/pause' % cid)
            except DockerError as exc:
                self.close_channel(channel)
                remove_tree(bundle)
                self.fail('Cannot freeze %s: %s' % (captured['name'], exc))
        timings['freeze'] = round(time.time() - t, 4)
        self.result['frozen_at'] = None if paused else round(time.time(), 4)

        try:
            t = time.time()
            if lazy:
                self.dump_lazy(runc, runc_root, criu.path, cid, bundle, lazy_dir)
            else:
                self.dump(runc, runc_root, criu.path, cid, bundle)
            timings['dump'] = round(time.time() - t, 4)
            t = time.time()
            upper = ((inspect.get('GraphDriver') or {}).get('Data') or {}).get('UpperDir')
            if not upper or not os.path.isdir(upper):
                raise MigrationError('The writable layer of %s (%s) is not readable on this host.' % (captured['name'], upper))
            tar_create(upper, os.path.join(bundle, ROOTFS_DIFF), xattrs=True)
            timings['rootfs'] = round(time.time() - t, 4)
            t = time.time()
            vols = named_volumes(captured)
            if vols:
                make_private_dir(os.path.join(bundle, VOLUMES_DIR))
            for vol in vols:
                tar_create(vol['source'], os.path.join(bundle, VOLUMES_DIR, vol['name'] + '.tar'))
            timings['volumes'] = round(time.time() - t, 4)
            restrict_tree(bundle)
            extra = {'method': 'runc', 'checkpoint': name, 'precopy': self.result['precopy']}
            if lazy:
                extra['lazy_pages'] = {'address': lazy['address'], 'port': lazy['port'], 'source_cert': LAZY_CERT}
            if self.p['send']:
                # hashed while the other files stream; sent last (see transfer())
                manifest_job = ManifestJob(bundle, captured, extra)
            else:
                t = time.time()
                manifest = write_manifest(bundle, captured, extra=extra)
                timings['manifest'] = round(time.time() - t, 4)
        except (MigrationError, OSError) as exc:
            # Leave the container as it was found: resume it if this module froze it (a page server
            # that may hold its tasks is ended first, the container kept frozen meanwhile).
            self.close_channel(channel)
            log = read_tail(os.path.join(lazy_dir or bundle, 'work', 'dump.log'))
            if lazy_dir:
                self.end_page_server(lazy_dir, inspect)
                remove_tree(lazy_dir)
            if not paused:
                self.resume(cid)
            remove_tree(bundle)
            details = getattr(exc, 'details', {})
            self.fail(str(exc), criu_log=log or details.get('criu_log', ''))

        if self.p['send']:
            t = time.time()
            self.transfer(bundle, channel, late=(MANIFEST, manifest_job.wait))
            timings['send'] = round(time.time() - t, 4)
            manifest = manifest_job.manifest
            timings['manifest'] = manifest_job.seconds
            if not self.p['send']['keep']:
                remove_tree(bundle)
                self.result['bundle_removed'] = True
        if self.p['leave_running'] and not paused:
            t = time.time()
            self.resume(cid)
            timings['resume'] = round(time.time() - t, 4)
        timings['total'] = round(time.time() - t_all, 4)
        manifest['timings'] = timings
        after = 'running' if self.p['leave_running'] and not paused else 'paused'
        self.result.update(self.summary(manifest, after, method='runc'))
        self.result['timings'] = timings

    def open_channel(self):
        opts = self.p['send']
        try:
            return connect(opts['address'], opts['port'], opts['token'],
                           connect_timeout=opts['connect_timeout'], io_timeout=self.p['timeout'])
        except TransferError as exc:
            self.fail('No checkpoint was made, the container was not frozen: %s.' % exc)

    @staticmethod
    def close_channel(channel):
        if channel is not None:
            channel.close()

    def transfer(self, bundle, channel, late=None):
        opts = self.p['send']
        compression, choice = choose_compression(bundle, opts['compression'])
        try:
            self.result['transfer'] = send_bundle(bundle, opts['address'], opts['port'], opts['token'],
                                                  compression=compression,
                                                  connect_timeout=opts['connect_timeout'],
                                                  io_timeout=self.p['timeout'], late=late, channel=channel)
        except TransferError as exc:
            self.fail('Sending the checkpoint failed: %s.' % exc)
        self.result['transfer']['compression_choice'] = choice

    def find_criu(self):
        try:
            path = find_criu(self.module, self.p['criu_path'])
        except CriuError as exc:
            self.fail('CRIU was not found on this host: %s' % exc)
        if not path:
            self.fail('CRIU was not found on this host (install CRIU >= 4.1, or set criu_path).')
        try:
            criu = Criu(self.module, path)
            ok, out = criu.check()
        except CriuError as exc:
            self.fail('CRIU is not usable on this host: %s' % exc)
        if not ok:
            self.fail('"criu check" fails on this host, so no checkpoint can be made: %s' % out)
        return criu

    def precopy_status(self, criu, lazy=False):
        try:
            dirty = criu.feature('mem_dirty_track')
        except CriuError:
            dirty = False
        if dirty:
            return {'available': True, 'used': False,
                    'reason': 'the kernel tracks dirty pages, but this module makes a single %s dump'
                              % ('post-copy (lazy pages)' if lazy else 'stop-and-copy')}
        return {'available': False, 'used': False,
                'reason': 'the kernel does not track dirty pages (criu check --feature mem_dirty_track: '
                          'Dirty tracking is OFF), so iterative pre-copy is impossible; %s'
                          % ('post-copy (lazy pages) was used instead' if lazy else 'stop-and-copy was used')}

    def dump(self, runc, runc_root, criu_path, cid, bundle):
        images = os.path.join(bundle, CRIU_DIR)
        work = os.path.join(bundle, 'work')
        make_private_dir(images)
        make_private_dir(work)
        cmd = [runc, '--root', runc_root, '--criu', criu_path, 'checkpoint', '--image-path', images,
               '--work-path', work, '--leave-running', cid]
        # runc hands CRIU /etc/criu/runc.conf: wait until no restore of ours has CRIU options in it.
        try:
            with RuncCriuOptions(owner='mtd.containers.checkpoint (pid %d)' % os.getpid(),
                                 timeout=self.p['timeout']):
                rc, out, err = run(cmd, timeout=self.p['timeout'])
        except (CriuError, OSError) as exc:
            raise MigrationError('CRIU could not dump the container: %s' % exc)
        if rc != 0:
            raise MigrationError('CRIU could not dump the container (runc checkpoint rc=%d): %s'
                                 % (rc, tail(err or out, 5)), criu_log=read_tail(os.path.join(work, 'dump.log')))
        # dump.log stays out of the bundle's images but is kept for the record
        log = os.path.join(work, 'dump.log')
        if os.path.exists(log):
            os.rename(log, os.path.join(bundle, 'dump.log'))
        remove_tree(work)

    # -- post-copy ---------------------------------------------------------------------------------

    def prepare_lazy(self, bundle, name):
        """The source's TLS identity and the target's pinned certificate, beside the bundle (which is
        deleted after the send, while the page server still runs)."""
        lazy_dir = bundle + LAZY_DIR_SUFFIX
        remove_tree(lazy_dir)
        make_private_dir(lazy_dir)
        make_tls_identity(os.path.join(lazy_dir, 'tls'), 'mtd-source-' + name,
                          self.module.run_command)
        peer = os.path.join(lazy_dir, 'tls', 'peer.pem')
        with open(peer, 'w') as handle:
            handle.write(self.p['lazy_pages']['peer_cert'])
        make_private_dir(os.path.join(lazy_dir, 'work'))
        return lazy_dir

    def dump_lazy(self, runc, runc_root, criu_path, cid, bundle, lazy_dir):
        """runc checkpoint --lazy-pages: returns once the page server is ready; it keeps running."""
        opts = self.p['lazy_pages']
        images = os.path.join(bundle, CRIU_DIR)
        work = os.path.join(lazy_dir, 'work')
        make_private_dir(images)
        tls = os.path.join(lazy_dir, 'tls')
        # runc keeps only the port of --page-server in lazy mode; "address" in runc.conf binds the page
        # server to the given address instead of every interface.
        options = dict(lazy_tls_options(os.path.join(tls, 'peer.pem'), os.path.join(tls, 'cert.pem'),
                                        os.path.join(tls, 'key.pem')), address=opts['address'])

        def argv(fd):
            return [runc, '--root', runc_root, '--criu', criu_path, 'checkpoint', '--image-path', images,
                    '--work-path', work, '--leave-running', '--lazy-pages',
                    '--page-server', '%s:%d' % (opts['address'], opts['port']), '--status-fd', str(fd), cid]
        try:
            with RuncCriuOptions(options, owner='mtd.containers.checkpoint (pid %d)' % os.getpid(),
                                 timeout=self.p['timeout']):
                proc, state = spawn_until_ready(argv, opts['ready_timeout'], os.path.join(lazy_dir, 'runc.log'),
                                                detach=True)
                with open(os.path.join(lazy_dir, 'runc.pid'), 'w') as handle:
                    handle.write('%d\n' % proc.pid)
        except (CriuError, OSError) as exc:
            raise MigrationError('CRIU could not start the lazy dump: %s' % exc)
        if state != 'ready':
            why = ('runc exited with rc %s' % proc.wait() if state == 'exited'
                   else 'no answer within %s s' % opts['ready_timeout'])
            raise MigrationError('CRIU\'s lazy dump did not get ready (%s): %s' % (
                why, tail(read_tail(os.path.join(lazy_dir, 'runc.log')), 5)),
                criu_log=read_tail(os.path.join(work, 'dump.log')))
        shutil.copy2(os.path.join(tls, 'cert.pem'), os.path.join(bundle, LAZY_CERT))
        self.result['lazy_pages'] = {'pid': proc.pid, 'address': opts['address'], 'port': opts['port'],
                                     'dir': lazy_dir}

    def end_page_server(self, lazy_dir, inspect):
        """End a lazy dump that still runs. Returns 'finished' (it had ended), 'stopped' or None (none).

        CRIU holds the container's tasks with ptrace and has thawed the freezer, so killing it would let
        the container run while the engine still calls it paused. The freezer cgroup is frozen again
        first; the tasks then stay frozen when CRIU lets go of them.
        """
        pid = read_pid(os.path.join(lazy_dir, 'runc.pid'))
        if pid is None:
            return None
        if not group_alive(pid):
            return 'finished'
        # runc leads the group; once it is gone, its CRIU child may still be there (a number stays in use
        # while its group has members). A leader that is not runc's lazy checkpoint reused the number.
        argv = process_argv(pid)
        if argv is not None and b'--lazy-pages' not in argv:
            return 'finished'
        task = (inspect.get('State') or {}).get('Pid')
        if task:
            try:
                freeze_cgroup_of_pid(task)
            except CgroupError as exc:
                self.module.warn('Could not re-freeze container %s before ending its page server: %s'
                                 % (inspect.get('Id', '?')[:12], exc))
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        deadline = time.time() + 10
        while group_alive(pid) and time.time() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)   # runc is this process's child when the dump failed here
            except ChildProcessError:
                pass
            time.sleep(0.05)
        return 'stopped'

    def resume(self, cid):
        try:
            self.client.post('/containers/%s/unpause' % cid)
        except DockerError as exc:
            self.module.warn('Could not resume container %s: %s' % (cid, exc))

    @staticmethod
    def summary(manifest, after, method=None):
        files = manifest.get('files') or []
        part = {'criu': 0, 'rootfs': 0, 'volumes': 0}
        for f in files:
            if f['path'].startswith(CRIU_DIR + '/'):
                part['criu'] += f['size']
            elif f['path'] == ROOTFS_DIFF:
                part['rootfs'] += f['size']
            elif f['path'].startswith(VOLUMES_DIR + '/'):
                part['volumes'] += f['size']
        part['total'] = sum(f['size'] for f in files)
        c = manifest.get('container') or {}
        return {
            'container': {'id': c.get('id'), 'name': c.get('name'), 'image_digest_ref': c.get('image_digest_ref'),
                          'state': after},
            'files': len(files),
            'bytes': part,
            'precopy': manifest.get('precopy'),
            'method': method,
        }

    def run_absent(self):
        info = self.client.info()
        data_root = info.get('DockerRootDir') or '/var/lib/docker'
        name = self.p['name']
        if not name:
            try:
                name = 'mtd-' + self.client.inspect_container(self.p['container'])['Id'][:12]
            except DockerError:
                self.fail('Give name: the container %r is gone, so the default name cannot be derived.'
                          % self.p['container'])
        check_name(name, 'Checkpoint name')
        bundle = os.path.join(self.p['dest'] or default_dest(data_root), name)
        self.result['bundle'] = bundle
        lazy_dir = bundle + LAZY_DIR_SUFFIX
        for path in (bundle, lazy_dir):
            if os.path.lexists(path):
                self.result['changed'] = True
        if self.module.check_mode:
            return
        if os.path.isdir(lazy_dir):
            try:
                inspect = self.client.inspect_container(self.p['container'])
            except DockerError:
                inspect = {}
            self.result['page_server'] = self.end_page_server(lazy_dir, inspect)
            remove_tree(lazy_dir)
        if os.path.lexists(bundle):
            remove_tree(bundle)


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(
        container=dict(type='str', required=True),
        name=dict(type='str'),
        dest=dict(type='path'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        leave_running=dict(type='bool', default=False),
        runc_path=dict(type='path'),
        runc_root=dict(type='path'),
        criu_path=dict(type='path'),
        send=dict(type='dict', options=dict(
            address=dict(type='str', required=True),
            port=dict(type='int', required=True),
            token=dict(type='str', required=True, no_log=True),
            compression=dict(type='str', default='auto', choices=['auto', 'zstd', 'gzip', 'none']),
            connect_timeout=dict(type='int', default=60),
            keep=dict(type='bool', default=False),
        )),
        lazy_pages=dict(type='dict', options=dict(
            address=dict(type='str', required=True),
            port=dict(type='int', required=True),
            peer_cert=dict(type='str', required=True),
            ready_timeout=dict(type='int', default=60),
        )),
    )
    argument_spec['timeout'] = dict(type='int', default=300)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    worker = Checkpointer(module)
    try:
        if module.params['state'] == 'absent':
            worker.run_absent()
        else:
            worker.run_present()
    except MigrationError as exc:
        worker.fail(str(exc))
    except DockerError as exc:
        worker.fail('Docker engine error: %s' % exc)
    module.exit_json(**worker.result)


if __name__ == '__main__':
    main()
