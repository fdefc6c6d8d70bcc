#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: restore
short_description: Bring a checkpointed Docker container back to life on this host
version_added: 0.1.0
description:
  - Runs on the migration's target host, in two steps.
  - O(state=prepared) (while the source still runs) pulls the image by its digest and creates the
    standby container with the captured configuration and empty named volumes. Nothing runs yet. It also
    makes this host's TLS identity for the migration (RV(transfer_cert)), which the source pins.
  - A volume of a needed name that already exists on this host is used only when this migration made it
    (its C(mtd.migration.id) label) and no other container mounts it. Any other is refused before anything
    is frozen, never overwritten; the message names the earlier migration that left it (a migration back to
    a host the container left, where a copy was kept or a cleanup did not run) or says that no migration made
    it, and how to remove it.
  - O(state=started) verifies every file of the bundle against the manifest (see O(verify)), creates the
    standby if it is missing, lays back the writable-layer changes and the volume contents, starts the
    container from the checkpoint (C(docker start --checkpoint)) and waits until it runs and
    O(health_cmd) passes. On CRIU failure the tail of CRIU's restore.log is returned.
  - Docker refuses a custom checkpoint directory on start and passes whatever is in
    C(<data-root>/containers/<id>/checkpoints/<name>/) through containerd's content store as a tar
    stream, twice, which costs seconds per 100 MB of process memory. See O(image_delivery) for how this
    module avoids that.
  - O(state=absent) removes the standby container (only one this migration created, identified by its
    C(mtd.migration.id) label), the volumes it created and the bundle - the target's cleanup after a
    failed migration. It first calls off a O(state=started) run of the same migration that still waits
    for its bundle (a C(<bundle>.cancel) marker) and waits until that run has finished (each run holds
    C(<bundle>.lock)), so that nothing of this migration starts on this host after it.
  - O(state=started) can therefore be launched (asynchronously, with O(receive) or O(wait_for_bundle))
    before the source is frozen, and starts the container within a few milliseconds of the bundle's
    arrival. With O(receive) it is the bundle's receiver itself (the protocol of
    M(mtd.containers.checkpoint_transfer)), so one asynchronous task on the target does both.
  - Without Ansible's C(async), O(state=prepared) with O(receive) and O(detach=true) starts that receiver itself, as a
    process of its own that outlives the module (it holds C(<bundle>.lock) from before it is started until it
    ends), and returns once the standby is ready; O(state=started) with O(wait_detached) then waits for that
    receiver's result (C(<bundle>.result)) and ends with it as its own - one call before the freeze and one after it,
    instead of an asynchronous launch and its polling.
  - The container carries the labels C(mtd.migration.id), C(mtd.migration.from) and
    C(mtd.migration.source_id).
extends_documentation_fragment:
  - mtd.containers.docker
  - mtd.containers.transfer.receive
  - mtd.containers.policy
  - mtd.containers.attributes
  - mtd.containers.attributes.actiongroup_mtd
attributes:
  check_mode:
    support: full
    details: Checks the inputs, the engine and name clashes; pulls, creates and starts nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A container of this migration that already runs (or is already prepared) is not changed.
options:
  migration_id:
    description: Id of the migration; labels the standby and identifies it later.
    type: str
    required: true
  state:
    description: See the description.
    type: str
    choices: [prepared, started, absent]
    default: started
  bundle:
    description:
      - The bundle directory received on this host.
      - With O(state=prepared) it defaults to C(/dev/shm/mtd-incoming/<migration_id>) when C(/dev/shm) is
        a tmpfs with room for O(expected_bytes) (times 1.25, plus 64 MB), else to
        C(<data-root>/mtd-migrations/<migration_id>); RV(bundle) tells where, and the receiver and
        O(state=started) should be given that path.
      - With O(state=started) it defaults to whichever of the two exists; with O(state=absent) both are
        cleaned.
      - "The bundle's directory holds process memory and the C(.lock), C(.cancel) and C(.tls) files beside it.
        The module creates its default places (and their missing parents) owned by root with mode 0700, or
        uses an existing one only when C(lstat) shows a real directory (not a symbolic link) of root that
        nobody else can write, which it then sets to 0700. A C(/dev/shm/mtd-incoming) that fails this check
        (another user may have made it) is avoided: O(state=prepared) chooses the data root instead, with a
        warning and the reason in RV(bundle_location); O(state=absent) skips it (nothing of this module can
        be in it)."
      - The parent of a given O(bundle) outside these places is checked the same way, except that a sticky
        directory such as C(/tmp) is accepted; it is never chmod'ed or chown'ed. A link, a directory of
        another user or one that others can write is refused.
    type: path
  config:
    description:
      - The captured configuration (RV(mtd.containers.checkpoint#module:config)) the controller approved
        before the freeze. Required for O(state=prepared).
      - With O(state=started) give the same value. The container is then built, named and given its volumes
        from it alone; the manifest's copy of the configuration (written by the source, which may be attacked)
        is ignored, not compared - nothing of it is used, so a difference could not change what runs, and a
        configuration the source changed after the capture (C(docker update)) should not fail a migration.
        Without it (standalone use) the manifest's copy is used, checked against O(policy) like any other,
        with a warning.
      - Either way it is checked against O(policy) on this host before anything is pulled, created or started.
    type: dict
  name:
    description: Name of the restored container. Defaults to the source container's name.
    type: str
  source_host:
    description: Name of the source host, recorded in the C(mtd.migration.from) label.
    type: str
  health_cmd:
    description:
      - Command run inside the restored container (exec, no shell) that must exit 0.
    type: list
    elements: str
  health_timeout:
    description: Seconds to wait for the container to run and O(health_cmd) to pass.
    type: int
    default: 30
  registry_auth:
    description:
      - Credentials for pulling the image, C(username) and C(password), and the O(registry_auth.registry) they
        belong to.
      - They are sent only when the image reference's registry is that registry. An image of any other
        registry (the reference comes from the source host) is pulled without credentials, with a warning.
    type: dict
    suboptions:
      registry:
        description:
          - The registry these credentials belong to, as image references name it (C(host[:port]), for
            example V(registry.example.com:5000); V(docker.io) for Docker Hub).
        type: str
        required: true
      username:
        description: Registry user name.
        type: str
        required: true
      password:
        description: Registry password.
        type: str
        required: true
  keep_bundle:
    description: Keep the bundle and the engine's copy of the CRIU images after a successful start.
    type: bool
    default: false
  expected_bytes:
    description:
      - Expected size of the bundle in bytes (RV(mtd.containers.checkpoint#module:memory_bytes) of the source
        container is a good estimate). Used by O(state=prepared) to decide whether the bundle fits in
        C(/dev/shm); V(0) (unknown) keeps it on disk.
    type: int
    default: 0
  verify:
    description:
      - How the bundle is checked against its manifest before anything starts.
      - V(sha256) hashes every file and compares it with the manifest. A bundle whose manifest lists a file
        without a sha256 (streamed by M(mtd.containers.checkpoint) with the default
        O(mtd.containers.checkpoint#module:send.hashes=false)) is refused.
      - V(auto) does that too, unless the receiver (O(receive), or M(mtd.containers.checkpoint_transfer)) stamped the bundle
        after every record of the stream passed its check (TLS, or HMAC-SHA256 with O(receive.encryption=none)).
        The content was then checked on arrival, so only the presence and size of every file are checked
        again, which keeps a second full hash pass out of the time the container is frozen. Without a stamp,
        a file without a sha256 in the manifest is refused, so that every file is vouched for by the stream or by its hash.
      - The stamp is the file C(<bundle>.received) beside the bundle, owned by root and 0600, bound to the
        bundle directory and to the sha256 of its manifest; a file inside the bundle never counts as one.
    type: str
    choices: [auto, sha256]
    default: auto
  image_delivery:
    description:
      - How CRIU gets the checkpoint's images when the container starts from its checkpoint.
      - V(direct) puts only runc's C(descriptors.json) into the engine's checkpoint directory and, for the
        duration of the start, writes runc's CRIU configuration file C(/etc/criu/runc.conf) with
        C(images-dir) and C(work-dir) pointing into the bundle, so CRIU reads the images where they
        arrived and containerd moves a few hundred bytes instead of the whole memory. The file is written
        and removed under a host-wide lock that M(mtd.containers.checkpoint) takes too; a
        C(/etc/criu/runc.conf) of the operator's own is never touched.
      - V(engine) moves the images into the engine's checkpoint directory, the way Docker documents it.
      - V(auto) is V(direct) unless the host has a C(/etc/criu/runc.conf) of its own, then V(engine).
      - A checkpoint made with pre-copy (its final images read the unchanged pages from the rounds before,
        C(precopy/1..N) of the bundle) needs V(direct); with V(engine) it is refused (the engine would pass the
        final images alone).
    type: str
    choices: [auto, direct, engine]
    default: auto
  wait_for_bundle:
    description:
      - Seconds to wait for the bundle to appear (a M(mtd.containers.checkpoint_transfer) receiver
        renames it into place only once it arrived complete and checked). V(0) does not wait.
      - Not used with O(receive).
    type: int
    default: 0
  detach:
    description:
      - With O(state=prepared) and O(receive) - once the standby is ready, start the receiver (everything
        O(state=started) with these O(receive) options does, with this run's O(config), O(policy), O(health_cmd),
        O(image_delivery), O(confine) ...) as a detached process on this host, and return.
      - It takes the migration's lock before it is started, so O(state=absent) calls it off and waits for it as it
        does for any restore of the migration, and it leaves its result in C(<bundle>.result) (mode 0600, in this
        host's private state directory) for O(wait_detached).
      - A result left by an earlier attempt of the same migration is removed first. In check mode nothing is
        started (the receive options are checked as O(state=started) checks them).
    type: bool
    default: false
  wait_detached:
    description:
      - With O(state=started) (and no O(receive)) - wait up to this many seconds for the result of the receiver that
        O(detach) started, and end with that result (its failure as this task's failure, with its message and
        details). The result is consumed (removed).
      - Fails at once when the receiver has ended without a result (it was killed) and after the wait when it still
        runs. V(0) (the default) does not wait for a detached receiver.
    type: int
    default: 0
  lazy_pages:
    description:
      - Post-copy (see M(mtd.containers.checkpoint) O(mtd.containers.checkpoint#module:lazy_pages)).
      - With O(state=prepared), V(true) also returns this host's certificate as RV(lazy_cert) for the page
        channel, which the source pins; it is the identity of RV(transfer_cert) (a fresh key made for the
        migration that never leaves this host).
      - With O(state=started) it is not needed; a bundle made with lazy pages is recognised by its
        manifest. Before the start, a C(criu lazy-pages) daemon connects to the source's page server (mutual TLS,
        pinned certificates); the container resumes at once and gets the rest of its memory on demand
        and in the background. The run ends when every page has arrived (C(lazy_fetch) in
        RV(timings)); if the daemon fails, the restored container cannot continue and the module fails,
        so that the caller resumes the source, which stays frozen until it is removed. What the
        restored container wrote in that time is lost.
      - Needs O(image_delivery) V(direct) or V(auto) (CRIU's options reach the engine's runc through
        C(/etc/criu/runc.conf)).
    type: bool
    default: false
  lazy_timeout:
    description: Seconds the restored container may take to get all of its memory from the source (post-copy).
    type: int
    default: 300
  confine:
    description:
      - Confinement on arrival. The standby is created under the parent cgroup C(<cgroup_parent>/<cgroup_name>)
        (the level of M(mtd.containers.confine)), whose limits are written before the standby exists, with the
        collection's seccomp profile inline and the labels C(mtd.confine.arrival) (the parent) and, when the
        host cgroup namespace is kept, C(mtd.confine.cgroupns). The restored process tree is therefore limited
        from its first instruction and keeps its memory (no restart); M(mtd.containers.confine) takes such a
        container as confined by itself (a second confine changes nothing).
      - Under Docker's systemd cgroup driver (cgroup v2 only) the parent is the slice unit of that level
        (C(mtd-<name>.slice), escaped as M(mtd.containers.confine) does), whose limits are given as its unit
        properties (C(systemctl set-property)) and read back from its files; the restored tasks are in
        C(<slice>/docker-<id>.scope).
      - Refused before anything is created (with O(state=prepared) that is before the source is frozen) - what
        M(mtd.containers.confine) refuses (privileged, host PID or IPC namespace, binds of the engine's socket or
        of the host's cgroupfs, no seccomp, a cgroup driver other than cgroupfs and, on cgroup v2, systemd, its
        own CPU limit above the confinement's; under systemd a CPU quota CPUQuota= cannot express), an engine
        cgroup version other than the host's, a cgroup namespace mode the restore cannot give (see
        O(confine.cgroupns)), and limits below O(confine.source_usage).
      - After the start (O(state=started)) the limits of the level, the cgroup of every task of the container and
        their C(Seccomp) mode (V(2)) are read on this host; a difference fails the module (the caller rolls back),
        RV(confinement) reports them.
      - C(mtd.confine.*) labels in a captured configuration are dropped either way (the source may claim any).
      - Give the same value to O(state=prepared) and O(state=started).
    type: dict
    suboptions:
      limits:
        description: The limits of the parent level, as O(mtd.containers.confine#module:limits).
        type: dict
        default: {}
        suboptions:
          memory:
            description: Memory limit, a size such as V(64m), or V(max).
            type: raw
          memory_swap:
            description: Memory plus swap, a size or V(max); defaults to O(confine.limits.memory).
            type: raw
          cpus:
            description: CPU bandwidth in CPUs; V(0) means no limit.
            type: float
          cpu_period:
            description: The period of O(confine.limits.cpus) in microseconds.
            type: int
            default: 100000
          cpu_weight:
            description: Relative CPU weight 1..10000.
            type: int
          pids:
            description: The maximum number of tasks, or V(max).
            type: raw
      cgroup_parent:
        description: The path below each cgroup hierarchy's root under which the level is created.
        type: str
        default: mtd
      cgroup_name:
        description: The name of the level; defaults to the container's name.
        type: str
      cgroupns:
        description:
          - The cgroup namespace of the restored container. V(auto) keeps the source's (Docker's default when the
            configuration names none - the host's on cgroup v1, a private one on v2).
          - A different mode is refused. runc checkpoints the cgroup v1 mounts of a container without a cgroup
            namespace of its own as external bind mounts and, on restore into a container with one, gives CRIU
            no mapping for them (it expects real cgroup mounts), so CRIU fails (C(mnt - No mapping for ...
            mountpoint)); and CRIU creates a cgroup namespace only for a task that had one when it was dumped.
            What keeps the limits without one is described in docs/confine.md.
        type: str
        choices: [auto, private, host]
        default: auto
      seccomp:
        description:
          - The collection's seccomp profile in the container's configuration (what a later start gets) and the
            check that every restored task has C(Seccomp) V(2).
          - V(false) keeps the source's C(SecurityOpt).
        type: bool
        default: true
      source_usage:
        description:
          - What the container uses on its source, measured before the freeze
            (RV(mtd.containers.checkpoint#module:memory_bytes) and RV(mtd.containers.checkpoint#module:pids_current)).
            Limits at or below it are refused (the restore would be OOM-killed or fail to fork after the freeze).
        type: dict
        suboptions:
          memory:
            description: Bytes.
            type: int
          pids:
            description: Tasks.
            type: int
notes:
  - The checkpoint data holds process memory; it is deleted after a successful start unless
    O(keep_bundle=true).
  - With O(image_delivery=direct), a runc checkpoint or restore that something else starts on this host
    during the start from the checkpoint (usually well under a second) would also read the temporary
    C(/etc/criu/runc.conf). M(mtd.containers.checkpoint) waits for the lock; C(docker checkpoint create)
    does not know about it.
requirements:
  - Docker Engine with experimental features on, runc with CRIU >= 4.1, the overlay2 storage driver.
  - GNU tar on the host.
seealso:
  - module: mtd.containers.checkpoint
  - module: mtd.containers.checkpoint_transfer
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Prepare the standby while the source still runs
  mtd.containers.restore:
    migration_id: m-42
    state: prepared
    config: "{{ checkpoint_check.config }}"
    source_host: lab-1
  register: standby

- name: Start it from the checkpoint
  mtd.containers.restore:
    migration_id: m-42
    bundle: "{{ standby.bundle }}"
    health_cmd: [cat, /data/counter.log]
  register: restored
"""

RETURN = r"""
container:
  description: The restored (or prepared) container.
  returned: when O(state) is not V(absent)
  type: dict
  sample: {"id": "4567...", "name": "web-1", "state": "running", "image": "127.0.0.1:5000/app@sha256:..."}
bundle:
  description: The bundle directory on this host (where the receiver should put it).
  returned: always
  type: str
  sample: /var/lib/docker/mtd-migrations/m-42
bundle_location:
  description: Whether O(state=prepared) put the bundle in tmpfs, and why.
  returned: when O(state=prepared) chose the bundle directory
  type: dict
  sample: {"tmpfs": true, "reason": "/dev/shm has 11980 MB free, 400 MB are needed"}
timings:
  description:
    - Seconds per phase (pull, create, wait, receive, verify, layer, volumes, seccomp_filter, place, lazy_daemon,
      restore, lazy_fetch, health).
    - C(restore_criu) is CRIU's own part of C(restore), from its restore.log (O(image_delivery=direct) only).
  returned: when O(state) is not V(absent)
  type: dict
  sample: {"verify": 0.2, "layer": 0.01, "volumes": 0.01, "place": 0.0, "restore": 0.4, "health": 0.1}
verified:
  description: What was checked against the manifest (see O(verify)).
  returned: when O(state=started) and the bundle was checked
  type: str
  sample: sha256
bytes_verified:
  description: Bytes checked against the manifest.
  returned: when O(state=started)
  type: int
  sample: 268530720
engine_copies_removed:
  description:
    - The copies of the checkpoint that containerd unpacked into its temporary directory
      (C(ctrd-checkpoint*)) and left behind, which this module removed.
  returned: when O(state=started) and the container was started
  type: list
  elements: str
lazy_cert:
  description: This host's certificate for the post-copy page channel (PEM), for the source to pin (the same as RV(transfer_cert)).
  returned: when O(state=prepared) and O(lazy_pages=true), not in check mode
  type: str
transfer_cert:
  description:
    - This host's certificate for this migration (PEM), for the source to pin in
      O(mtd.containers.checkpoint#module:send.peer_cert). Its key was made on this host and never leaves it.
    - Made once per migration by O(state=prepared) (beside the bundle, C(<bundle>.tls)) and removed with the bundle.
  returned: when O(state=prepared), not in check mode
  type: str
lazy_daemon_ended:
  description: With O(state=absent), whether a post-copy restore's lazy-pages daemon of this migration was still running and was ended.
  returned: when O(state=absent), not in check mode
  type: bool
lazy_pages:
  description: With a post-copy bundle, the page server it fetched from and how it went.
  returned: when O(state=started) restored a bundle made with lazy pages
  type: dict
  sample: {"address": "127.0.1.1", "port": 47113, "rc": 0}
received:
  description:
    - With O(receive), the receiver's account of the stream.
    - C(seconds) is the time from the first to the last byte; C(waited_seconds) the time spent
      listening before the sender sent its data.
  returned: when O(receive) was used and the bundle arrived
  type: dict
  sample: {"bytes_received": 268697600, "bytes_raw": 268697600, "compression": "none", "files": 38,
           "seconds": 0.41, "waited_seconds": 2.3, "peer": "127.0.1.1"}
detached:
  description:
    - With O(detach) - where the detached receiver leaves its result (C(result)) and the lock it holds (C(lock)).
    - With O(wait_detached) - C(waited_seconds), how long this run waited for that result.
  returned: with O(detach) outside check mode, and with O(wait_detached)
  type: dict
  sample: {"result": "/dev/shm/mtd-incoming/m-1a2b3c4d5e6f.result", "lock": "/dev/shm/mtd-incoming/m-1a2b3c4d5e6f.lock"}
resumed_at:
  description: Epoch seconds (this host's clock) at which the engine reported the container started from its checkpoint.
  returned: when O(state=started) started the container
  type: float
  sample: 1795866648.33
image_delivery:
  description:
    - How the CRIU images reached CRIU (V(direct) or V(engine)), see O(image_delivery), and why.
  returned: when O(state=started) and a start from the checkpoint was attempted
  type: dict
  sample: {"used": "direct", "reason": "image_delivery=auto"}
criu_log:
  description: Tail of CRIU's restore.log when the start from the checkpoint failed.
  returned: on failure
  type: str
precopy_rounds:
  description:
    - The number of pre-copy rounds the checkpoint's final images depend on (M(mtd.containers.checkpoint)'s
      O(mtd.containers.checkpoint#module:precopy)). Their C(parent) links were rebuilt on this host
      (C(criu/parent) to C(../precopy/N), C(precopy/k/parent) to C(../k-1)) and CRIU read them in place
      (O(image_delivery=direct)).
  returned: when O(state=started) and the bundle was made with pre-copy
  type: int
  sample: 3

criu_manage_cgroups:
  description:
    - CRIU's C(--manage-cgroups) mode given through runc.conf when the images were made on another cgroup version
      than this host's (cgroup v1 to v2 or back) or this host is on cgroup v2.
      V(ignore) - CRIU does not rebuild the source's cgroups; the restored tasks stay in the cgroup the engine made
      for the new container (on cgroup v2 runc's mapping of the new cgroup does not reach CRIU, which would put
      them back at the source's path, outside the container's cgroup and its limits).
  returned: when O(state=started) restored images of another cgroup version, or on a cgroup v2 host
  type: str
  sample: ignore
criu_mounts_dropped:
  description:
    - Mounts of the images on files of the container's procfs or sysfs that this host's kernel does not have,
      left out of the restore (the image's C(mountpoints-*.img) rewritten on this host) - the source's engine
      masked or made read-only a kernel file (C(/proc/sysrq-trigger), C(/proc/kcore), ...) that is not there,
      and CRIU would fail at its mountpoint. Only mounts with nothing mounted below them are left out.
  returned: when O(state=started) restored images that had such mounts
  type: list
  elements: str
  sample: [/proc/sysrq-trigger]
criu_cgroup_mounts:
  description:
    - The cgroup mounts of images made on the other cgroup version (runc's external C(/sys/fs/cgroup/<controller>)
      mounts of cgroup v1, C(/sys/fs/cgroup) of cgroup v2), which this host's runc does not map. CRIU mounted an
      empty directory of the new container there (C(containers/<id>/mtd-cgroup-other) in the engine's data root).
  returned: when O(state=started) restored images of another cgroup version that had such mounts
  type: list
  elements: str
  sample: [/sys/fs/cgroup/memory, /sys/fs/cgroup/pids]
place_method:
  description:
    - How the CRIU images were put where the engine's start reads them. V(direct) - CRIU reads them straight from
      the bundle (the C(used) key of RV(image_delivery)); V(rename) - the images directory was renamed into the engine's
      checkpoint directory (same file system); V(copy) - it was copied there and the original deleted (another
      file system).
  returned: when O(state=started) and the images were placed
  type: str
  sample: direct
seccomp_filter:
  description:
    - With O(confine) (and O(confine.seccomp)), what adding the collection's filter to the image set did before the
      start - the number of filter entries before and after, and how many image files changed.
  returned: when O(state=started) restored with O(confine)
  type: dict
  sample: {"filters_before": 1, "filters_after": 2, "changed_files": 3}
confinement:
  description:
    - With O(confine), how the container is confined - C(how) (V(arrival)), C(cgroup) (version, path of the
      parent level; C(systemd_slice), its unit, under the systemd driver), C(limits) (as read from the level),
      C(cgroupns_mode), C(seccomp_profile), and after the start C(verified) (every check passed) and C(tasks)
      (per task id, its C(seccomp) mode and C(filters) count).
  returned: when O(confine) was given and O(state) is not V(absent)
  type: dict
  sample: {"how": "arrival", "cgroup": {"version": 1, "path": "/mtd/web-1"}, "limits": {"memory": "48m",
           "memory_swap": "48m", "pids": 40}, "cgroupns_mode": "host", "seccomp_profile": true, "verified": true,
           "tasks": {"4242": {"seccomp": 2, "filters": 2}}}
removed:
  description:
    - What O(state=absent) removed (or would remove, in check mode) - the containers of this migration by name,
      its volumes as C(volume:<name>), and its bundles as C(bundle:<path>) (with their C(.part) and TLS siblings).
    - Empty when nothing was left; RV(ignore:changed) is then false.
  returned: when O(state=absent)
  type: list
  elements: str
  sample: [web-1, "volume:mtd-m-42-data", "bundle:/dev/shm/mtd-incoming/m-42"]
"""

import base64
import fcntl
import glob
import json
import os
import shutil
import signal
import stat
import subprocess
import time
import traceback
from typing import Any, Dict, Optional
from urllib.parse import quote

from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.common.warnings import get_warnings

from ansible_collections.mtd.containers.plugins.module_utils import _cgroup as cgroup_lib
from ansible_collections.mtd.containers.plugins.module_utils import _seccomp as seccomp_lib
from ansible_collections.mtd.containers.plugins.module_utils._bundle import (
    CRIU_DIR,
    LAZY_CERT,
    check_name,
    check_parts,
    checkpoint_dir,
    read_manifest,
    sha256_file,
    unpack_rootfs,
    unpack_volume,
    verify_manifest,
)
from ansible_collections.mtd.containers.plugins.module_utils._common import (
    MtdError,
    acquire_lock,
    create_no_follow,
    process_argv,
    read_pid,
)
from ansible_collections.mtd.containers.plugins.module_utils._confine import (
    ARRIVAL_LABEL,
    CGROUPNS_KEPT_REASON,
    LIMITS_SPEC,
    arrival_cgroupns,
    arrival_labels,
    cgroup_outside,
    cgroup_parent_path,
    confine_host_config,
    container_refusal,
    limits_from_params,
    limits_mismatch,
    usage_refusal,
)
from ansible_collections.mtd.containers.plugins.module_utils._container import wait_running
from ansible_collections.mtd.containers.plugins.module_utils._criu import (
    CriuError,
    RuncCriuOptions,
    cgroup_mount_map,
    restore_cgroup_mode,
    find_criu,
    lazy_tls_options,
    log_seconds,
    restore_options,
    start_from_checkpoint,
    start_lazy_pages_daemon,
)
from ansible_collections.mtd.containers.plugins.module_utils._criuimg import add_filter as add_seccomp_filter
from ansible_collections.mtd.containers.plugins.module_utils._criuimg import (
    cgroup_names,
    drop_absent_kernel_mounts,
    external_mounts,
    images_cgroup_version,
)
from ansible_collections.mtd.containers.plugins.module_utils._docker import DockerError
from ansible_collections.mtd.containers.plugins.module_utils._files import (
    atomic_write,
    move_tree,
    read_tail,
    remove_tree,
    tmpfs_free_bytes,
)
from ansible_collections.mtd.containers.plugins.module_utils._hoststate import (
    check_given_dir,
    ensure_state_dir,
    state_dir_problem,
    volume_conflict,
)
from ansible_collections.mtd.containers.plugins.module_utils._migration import (
    HOSTCONFIG_KEYS,
    LABEL_ID,
    MigrationError,
    bind_mounts,
    create_body,
    migration_labels,
    named_volumes,
)
from ansible_collections.mtd.containers.plugins.module_utils._module import Worker, error_message, run_module
from ansible_collections.mtd.containers.plugins.module_utils._policy import (
    POLICY_SPEC,
    cgroup_version,
    engine_paths,
    policy_message,
    policy_violations,
    reference_registry,
    same_registry,
)
from ansible_collections.mtd.containers.plugins.module_utils._precopy import chain_count, chain_links, round_dir
from ansible_collections.mtd.containers.plugins.module_utils._systemd import (
    SliceLevel,
    quota_refusal,
    uses_systemd_driver,
)
from ansible_collections.mtd.containers.plugins.module_utils._transfer import (
    PLAINTEXT_WARNING,
    RECEIVER,
    STAMP_SUFFIX,
    TransferError,
    check_transfer_options,
    ensure_identity,
    load_identity,
    probe_listen,
    read_stamp,
    receive,
    transfer_spec,
)

ARGUMENT_SPEC = dict(
    migration_id=dict(type='str', required=True),
    state=dict(type='str', default='started', choices=['prepared', 'started', 'absent']),
    bundle=dict(type='path'),
    config=dict(type='dict'),
    name=dict(type='str'),
    source_host=dict(type='str'),
    health_cmd=dict(type='list', elements='str'),
    health_timeout=dict(type='int', default=30),
    registry_auth=dict(type='dict', options=dict(
        registry=dict(type='str', required=True),
        username=dict(type='str', required=True),
        password=dict(type='str', required=True, no_log=True),
    )),
    keep_bundle=dict(type='bool', default=False),
    wait_for_bundle=dict(type='int', default=0),
    lazy_pages=dict(type='bool', default=False),
    detach=dict(type='bool', default=False),
    wait_detached=dict(type='int', default=0),
    lazy_timeout=dict(type='int', default=300),
    receive=dict(type='dict', options=transfer_spec(RECEIVER)),
    image_delivery=dict(type='str', default='auto', choices=['auto', 'direct', 'engine']),
    verify=dict(type='str', default='auto', choices=['auto', 'sha256']),
    expected_bytes=dict(type='int', default=0),
    policy=dict(type='dict', apply_defaults=True, options=POLICY_SPEC),
    confine=dict(type='dict', options=dict(
        limits=dict(type='dict', default={}, options=LIMITS_SPEC),
        cgroup_parent=dict(type='str', default='mtd'),
        cgroup_name=dict(type='str'),
        cgroupns=dict(type='str', default='auto', choices=['auto', 'private', 'host']),
        seccomp=dict(type='bool', default=True),
        source_usage=dict(type='dict', options=dict(memory=dict(type='int'), pids=dict(type='int'))),
    )),
)
REQUIRED_IF = [('state', 'prepared', ('config',))]
# receive and wait_for_bundle exclude each other only when wait_for_bundle is not 0 (its default): a hand check.

DESCRIPTORS = 'descriptors.json'      # runc's record of the container's stdio, read by runc restore
CRIU_IMAGES_LINK = 'criu-images'      # symbolic link to the bundle's CRIU images (image_delivery=direct)
CRIU_WORK_DIR = 'criu-work'           # CRIU's work directory and restore.log (image_delivery=direct)
CGROUP_PLACEHOLDER = 'mtd-cgroup-other'  # empty stand-in for the cgroup mounts of a dump of the other cgroup version
INCOMING_TMPFS = '/dev/shm/mtd-incoming'   # bundles received in memory
TLS_DIR_SUFFIX = '.tls'                    # beside the bundle: this host's key for the post-copy page channel
LAZY_PID = 'lazy-pages.pid'                # in it: the running lazy-pages daemon
TMPFS_MARGIN = 1.25                   # room asked for in /dev/shm: expected_bytes x this + TMPFS_RESERVE
TMPFS_RESERVE = 64 * 1024 * 1024
RESULT_SUFFIX = '.result'              # beside the bundle: the detached receiver's result (detach, wait_detached)
DETACHED_POLL = 0.05                  # s between two looks for that result
LOCK_WAIT = 10                        # s a restore waits for another restore of the same migration
LOCK_WAIT_ABSENT = 120                # s (plus health_timeout) state=absent waits for a running restore

RESTORE_LOG_GLOBS = [
    '/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby/{id}/**/restore.log',
    '/run/containerd/io.containerd.runtime.v2.task/moby/{id}/**/restore.log',
    '/var/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby/{id}/**/restore.log',
]


class Restorer(Worker):
    """One run of the module: ``run_prepared``, ``run_started`` (validate → receive/wait → verify → lay back
    layer and volumes → place → start → health) or ``run_absent``."""

    def __init__(self, mod):
        super().__init__(mod)
        self.client = mod.docker
        mod.add_failure_details(lambda: {'timings': self.timings} if self.timings else {})
        info = self.info = self.client.info()
        self.data_root = info.get('DockerRootDir') or '/var/lib/docker'
        self.experimental = bool(info.get('ExperimentalBuild'))
        self.migration_id = check_name(self.p['migration_id'], 'migration_id')
        if self.p['receive']:
            check_transfer_options(self.p['receive'], 'receive.')
            if self.p['wait_for_bundle']:
                raise MigrationError('receive and wait_for_bundle exclude each other (the receiver does the waiting).')
        if self.p['detach'] and (self.p['state'] != 'prepared' or not self.p['receive']):
            raise MigrationError('detach starts the receiver of state=prepared: give it with state=prepared and receive.')
        if self.p['wait_detached'] and (self.p['state'] != 'started' or self.p['receive'] or self.p['wait_for_bundle']):
            raise MigrationError('wait_detached waits for the receiver that state=prepared with detach started: give it '
                                 'with state=started and without receive or wait_for_bundle.')
        # Where a bundle of this migration can be: in memory (tmpfs) or below the engine's data root.
        self.candidates = [os.path.join(INCOMING_TMPFS, self.migration_id),
                           os.path.join(self.data_root, 'mtd-migrations', self.migration_id)]
        if self.p['bundle']:
            self.bundle = self.p['bundle']
        elif self.p['state'] == 'prepared':
            self.bundle = self.choose_bundle_dir()
        else:
            self.bundle = next((c for c in self.candidates if os.path.lexists(c)), self.candidates[-1])
        self.result['bundle'] = self.bundle
        self._lock = None
        self._criu: Optional[str] = None
        self._warned_manifest_config = False
        self.arrival = ArrivalConfinement(self) if self.p['confine'] is not None else None

    def choose_bundle_dir(self):
        """tmpfs (/dev/shm) when it has room for O(expected_bytes) with a margin, else the data root.

        The bundle holds process memory: in tmpfs it never reaches a disk, and receiving it does not
        make the kernel write hundreds of MB back to disk while the restore runs.
        """
        expected = self.p['expected_bytes']
        free = tmpfs_free_bytes(os.path.dirname(INCOMING_TMPFS))
        need = int(expected * TMPFS_MARGIN) + TMPFS_RESERVE if expected > 0 else None
        if free is None:
            where, reason = self.candidates[1], '/dev/shm is not a writable tmpfs'
        elif need is None:
            where, reason = self.candidates[1], 'expected_bytes is unknown, so the room in /dev/shm cannot be judged'
        elif free < need:
            where, reason = self.candidates[1], '/dev/shm has %d MB free, %d MB are needed' % (free >> 20, need >> 20)
        elif state_dir_problem(INCOMING_TMPFS):
            where, reason = self.candidates[1], '%s (another user may have made it), so it is not used' \
                % state_dir_problem(INCOMING_TMPFS)
            self.module.warn('The bundle goes to %s: %s.' % (os.path.dirname(where), reason))
        else:
            where, reason = self.candidates[0], '/dev/shm has %d MB free, %d MB are needed' % (free >> 20, need >> 20)
        self.result['bundle_location'] = {'tmpfs': where == self.candidates[0], 'reason': reason}
        return where

    def secure_parent(self, bundle=None, create=True):
        """The directory that holds the bundle (and its .lock, .cancel, .tls): a default place of this module
        is created 0700 or checked (lstat: a directory of root that nobody else can write) and set to 0700; one
        the user named (the parent of O(bundle)) is checked the same way (a sticky /tmp is accepted), never
        chmod'ed. FileError (a MtdError) when it is unsafe: nothing is written through it."""
        parent = os.path.dirname(os.path.abspath(bundle or self.bundle))
        if parent in [os.path.dirname(c) for c in self.candidates]:
            if create:
                ensure_state_dir(parent)
            elif state_dir_problem(parent):
                self.fail('%s; remove it (it may be another user\'s trap) and run again.' % state_dir_problem(parent))
        else:
            check_given_dir(parent, create=create, what='The directory of bundle')
        return parent

    def fail(self, msg, **details):
        """End the run as failed (raises): ``msg`` and ``details`` go into the failure result."""
        raise MigrationError(msg, **details)

    def phase(self, name, started):
        self.timings[name] = round(time.time() - started, 4)

    # -- engine lookups --------------------------------------------------------------------------

    def find(self, name):
        try:
            return self.client.inspect_container(name)
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise

    def ours(self, inspect):
        return ((inspect.get('Config') or {}).get('Labels') or {}).get(LABEL_ID) == self.migration_id

    def volume(self, name):
        try:
            return self.client.get('/volumes/%s' % quote(name, safe=''))
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise

    # -- steps ---------------------------------------------------------------------------------

    def container_name(self, captured):
        return check_name(self.p['name'] or captured.get('name'), 'Container name')

    def check_policy(self, captured):
        """The migration policy on this host: the configuration may come from an attacked source."""
        found = policy_violations(captured, self.p['policy'], cgroup_version=cgroup_version(self.info),
                                  protected=engine_paths(self.client.docker_host, self.data_root),
                                  known_host_config=HOSTCONFIG_KEYS)
        if found:
            self.fail(policy_message(captured.get('name') if isinstance(captured, dict) else None,
                                     'the target (nothing was created or started)', found), violations=found)

    def approved_config(self, manifest):
        """The configuration to restore with: the controller's (option config), else the manifest's copy;
        checked against the policy either way."""
        captured = self.p['config']
        if not captured:
            captured = manifest['container']
            if not self._warned_manifest_config:
                self.mod.warn('restore builds the container from the configuration in the bundle\'s manifest, which '
                              'the source host wrote; give config (the one the controller captured) instead.')
                self._warned_manifest_config = True
        self.check_policy(captured)
        return captured

    def preflight(self, captured):
        if not self.experimental:
            self.fail('The Docker engine on this host does not run with experimental features on; '
                      'restoring from a checkpoint needs "experimental": true in daemon.json.')
        if not captured.get('image_digest_ref'):
            self.fail('The captured configuration names no image digest; cannot restore byte-identical files.')
        for bind in bind_mounts(captured):
            if not os.path.exists(bind['source']):
                self.fail('Bind-mounted path %s of the container does not exist on this host.' % bind['source'])
        for vol in named_volumes(captured):
            existing = self.volume(vol['name'])
            if existing:
                conflict = volume_conflict(vol['name'], existing.get('Labels'), self.migration_id,
                                           self.volume_users(vol['name']))
                if conflict:
                    self.fail(conflict, volume=vol['name'], volume_labels=existing.get('Labels') or {})

    def volume_users(self, name):
        """Names of the containers (not of this migration) that mount the volume ``name``."""
        users = self.client.containers(all=True, filters={'volume': [name]})
        return [(c.get('Names') or ['?'])[0].lstrip('/') for c in users
                if (c.get('Labels') or {}).get(LABEL_ID) != self.migration_id]

    def pull(self, ref):
        if self.client.inspect_image(ref) is not None:
            return False
        header = None
        auth = self.p['registry_auth']
        if auth and not same_registry(reference_registry(ref), auth['registry']):
            self.mod.warn('The image %s is not in %s, the registry of registry_auth: it is pulled without credentials.'
                          % (ref, auth['registry']))
            auth = None
        if auth:
            blob = json.dumps({'username': auth['username'], 'password': auth['password'],
                               'serveraddress': reference_registry(ref)})
            header = base64.urlsafe_b64encode(blob.encode('utf-8')).decode('ascii')
        try:
            self.client.pull_image(ref, registry_auth=header)
        except DockerError as exc:
            self.fail(str(exc))
        if self.client.inspect_image(ref) is None:
            self.fail('Pulling %s failed: the image is not present after the pull' % ref)
        return True

    def create(self, captured, name):
        labels = migration_labels(self.migration_id, self.p['source_host'], captured.get('id'))
        for vol in named_volumes(captured):
            if not self.volume(vol['name']):
                self.client.post('/volumes/create', body={'Name': vol['name'], 'Driver': 'local', 'Labels': labels})
        body = create_body(captured, labels=labels)
        body = self.arrival.body(body) if self.arrival else strip_confine_labels(body)
        created = self.client.post('/containers/create', params={'name': name}, body=body)
        return created['Id']

    def ensure_standby(self, captured):
        """The standby container of this migration (created when missing). Returns (inspect, changed)."""
        name = self.container_name(captured)
        existing = self.find(name)
        if existing and not self.ours(existing):
            self.fail('A container named %s already exists on this host and is not part of migration %s.'
                      % (name, self.migration_id))
        if existing:
            return existing, False
        self.preflight(captured)
        if self.arrival:
            self.arrival.plan(captured, name)
        if self.module.check_mode:
            return None, True
        t = time.time()
        self.pull(captured['image_digest_ref'])
        self.phase('pull', t)
        t = time.time()
        if self.arrival:
            self.arrival.prepare_level(name)
        cid = self.create(captured, name)
        self.phase('create', t)
        return self.client.inspect_container(cid), True

    def describe(self, inspect):
        state = inspect.get('State') or {}
        status = 'paused' if state.get('Paused') else ('running' if state.get('Running') else state.get('Status'))
        return {'id': inspect['Id'], 'name': inspect.get('Name', '').lstrip('/'), 'state': status,
                'image': (inspect.get('Config') or {}).get('Image'), 'started_at': state.get('StartedAt')}

    def run_prepared(self):
        captured = self.p['config']   # required_if: given with state=prepared
        self.check_policy(captured)
        self.secure_parent(create=not self.module.check_mode)
        inspect, changed = self.ensure_standby(captured)
        self.result['changed'] = changed
        if inspect:
            self.result['container'] = self.describe(inspect)
        pem, made = self.tls_identity()
        if pem:
            self.result['transfer_cert'] = pem
            if self.p['lazy_pages']:
                self.result['lazy_cert'] = pem
        self.result['changed'] = self.result['changed'] or made
        self.result['timings'] = self.timings
        if self.p['detach']:
            self.launch_detached()

    # -- the receiver started by state=prepared (detach) and its result (wait_detached) -------------

    @property
    def result_path(self):
        return self.bundle + RESULT_SUFFIX

    def launch_detached(self):
        """Start the receiver (state=started with this run's options) as a process of its own and return. It
        gets the migration's lock before it exists (taken here, inherited), so no moment is without a holder."""
        if self.module.check_mode:
            if self.receive_bundle():   # check mode: the receive options and the port, nothing started
                self.result['changed'] = True
            return
        lock = acquire_lock(self.lock_path, LOCK_WAIT)
        if lock is None:
            self.fail('Another restore of migration %s runs on this host (it holds %s).'
                      % (self.migration_id, self.lock_path))
        # under the lock no receiver of this migration runs: what is there is an earlier attempt's
        for path in (self.result_path, self.result_path + '.part'):
            unlink_quietly(path)
        # the receiver's result file, locked while it lives (the lock goes with it through the rename): made here,
        # so that from now on it is there, locked, or complete
        out = os.open(self.result_path + '.part', os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        fcntl.flock(out, fcntl.LOCK_EX)
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                if os.fork() == 0:
                    self.detached_receiver(lock, out)
            finally:
                os._exit(0)   # pylint: disable=protected-access
        lock.close()   # the receiver holds its own copies of the locked files
        os.close(out)
        os.waitpid(pid, 0)
        self.result['changed'] = True
        self.result['detached'] = {'result': self.result_path, 'lock': self.lock_path}

    def detached_receiver(self, lock, out):
        """The detached process: this module's state=started run, its result written as JSON to <bundle>.result (the
        file appears complete, by a rename, before the exit releases the lock). The result is written here, not by
        exit_json: Ansible's module wrapper has removed its payload by then, so nothing may be imported late."""
        part = self.result_path + '.part'
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        mod = self.mod
        mod.params.update(state='started', bundle=self.bundle, detach=False)
        mod.reset()
        try:
            try:
                worker = Restorer(mod)
                worker._lock = lock   # pylint: disable=protected-access
                worker.run_started()
                result = dict(mod.result)
            except MtdError as exc:
                result = mod.failure_result(dict(exc.details))
                result.update(failed=True, msg=error_message(exc, 'the detached restore'))
            except Exception as exc:  # pylint: disable=broad-exception-caught
                result = mod.failure_result({'exception': traceback.format_exc()})
                result.update(failed=True, msg=error_message(exc, 'the detached restore'))
            finally:
                mod.close()
            warnings = list(get_warnings())
            if warnings:
                result['warnings'] = warnings
            text = json.dumps(remove_values(result, mod.module.no_log_values), default=str)
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            text = json.dumps({'failed': True, 'changed': False,
                               'msg': 'The detached restore failed: %s' % (error_message(exc, 'the detached restore'),)})
        with os.fdopen(out, 'w') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(part, self.result_path)

    def collect_detached(self):
        """Wait for the detached receiver's result and make it this run's (its failure, this run's failure)."""
        if self.module.check_mode:
            self.result['changed'] = True
            return
        t = time.time()
        deadline = t + self.p['wait_detached']
        while not os.path.lexists(self.result_path):
            if not self.receiver_running() and not os.path.lexists(self.result_path):
                self.fail('The detached restore of migration %s ended without a result (%s is missing; was it '
                          'killed, or called off?); roll the migration back.' % (self.migration_id, self.result_path))
            if time.time() >= deadline:
                self.fail('The detached restore of migration %s gave no result within %d s (wait_detached); it still '
                          'holds %s.' % (self.migration_id, self.p['wait_detached'], self.lock_path))
            time.sleep(DETACHED_POLL)
        waited = round(time.time() - t, 4)
        try:
            got = read_private_json(self.result_path)
        finally:
            unlink_quietly(self.result_path)
        for text in got.pop('warnings', None) or []:
            self.module.warn(text)
        for key in ('invocation', 'deprecations', '_ansible_no_log'):
            got.pop(key, None)
        got['detached'] = {'waited_seconds': waited}
        if got.pop('failed', False):
            self.result.update(changed=got.pop('changed', False))
            raise MigrationError(got.pop('msg', 'the detached restore failed'), **got)
        self.result.update(got)

    def receiver_running(self):
        """True while the detached receiver lives: its unfinished result file is there and locked."""
        try:
            fd = os.open(self.result_path + '.part', os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def tls_identity(self):
        """This host's key and certificate for this migration (the bundle stream and the post-copy page
        channel), made once: (certificate PEM or None in check mode, made)."""
        tls = self.bundle + TLS_DIR_SUFFIX
        try:
            return ensure_identity(tls, 'mtd-target-' + self.migration_id, check_mode=self.module.check_mode)
        except (MtdError, OSError) as exc:
            self.fail('Cannot make the TLS identity of this migration in %s: %s' % (tls, exc))

    # -- one restore per migration at a time, and a way to call a waiting one off ----------------

    @property
    def lock_path(self):
        return self.bundle + '.lock'

    @property
    def cancel_path(self):
        return self.bundle + '.cancel'

    def check_cancelled(self):
        if os.path.exists(self.cancel_path):
            self.fail('The restore of migration %s was called off (%s exists: the migration is being rolled back); '
                      'nothing was started.' % (self.migration_id, self.cancel_path))

    def cancel_reason(self):
        return ('%s exists: the migration is being rolled back' % self.cancel_path
                if os.path.exists(self.cancel_path) else None)

    def receive_bundle(self):
        """Receive the bundle into self.bundle; True when check mode ends the run here."""
        opts = self.p['receive']
        if self.module.check_mode:
            try:
                probe_listen(opts['address'], opts['port'])
            except TransferError as exc:
                self.fail('%s.' % str(exc).capitalize())
            self.result['changed'] = True
            return True
        t = time.time()
        try:
            tls = None
            if opts['encryption'] == 'tls':
                tls = load_identity(self.bundle + TLS_DIR_SUFFIX, opts['peer_cert'], 'restore with state=prepared')
            else:
                self.module.warn(PLAINTEXT_WARNING)
            stats = receive(self.bundle, opts['address'], opts['port'], opts['token'], timeout=opts['timeout'],
                            cancelled=self.cancel_reason, tls=tls, auth_timeout=opts['auth_timeout'])
        except TransferError as exc:
            self.phase('wait', t)
            self.check_cancelled()
            self.fail('Receiving the checkpoint failed: %s.' % exc)
        self.result['received'] = stats
        self.timings['wait'] = stats.get('waited_seconds')
        self.timings['receive'] = stats.get('seconds')
        return False

    def run_started(self):
        self.secure_parent(create=not self.module.check_mode)
        if self.p['wait_detached']:
            self.collect_detached()
            return
        self.take_lock()
        self.check_cancelled()
        if not self.arrive():
            return
        manifest = self.load_manifest()
        if manifest is None:
            return
        captured = self.approved_config(manifest)
        name = self.container_name(captured)
        self.verify(manifest)
        # every archive is listed and checked before anything is created for it
        check_parts(self.bundle, [vol['name'] for vol in named_volumes(captured)])
        delivery = self.choose_delivery()
        lazy = manifest.get('lazy_pages')
        if lazy:
            self.check_lazy(delivery)
        rounds = self.precopy_chain(manifest, delivery)
        inspect, dummy = self.ensure_standby(captured)
        self.result['changed'] = True
        if self.module.check_mode:
            return
        if self.arrival:
            self.arrival.check_standby(inspect, name)
        cid = inspect['Id']
        cp_name = check_name(manifest.get('checkpoint') or self.migration_id, 'The checkpoint name of the bundle')
        try:
            self.lay_back(inspect, captured)
            dropped = drop_absent_kernel_mounts(os.path.join(self.bundle, CRIU_DIR))
            if dropped:
                self.result['criu_mounts_dropped'] = dropped
            if self.arrival:
                self.arrival.add_filter(os.path.join(self.bundle, CRIU_DIR))
            if rounds:
                self.link_rounds(rounds)
            placed = self.place(cid, cp_name, delivery, bool(lazy))
        except (MigrationError, OSError, MtdError) as exc:
            self.fail('Preparing the restore of %s failed: %s' % (name, exc))
        self.check_cancelled()
        daemon = self.start(cid, name, cp_name, placed, lazy)
        if daemon is not None:
            t = time.time()
            self.finish_lazy(daemon, lazy, placed['options']['work-dir'])
            self.phase('lazy_fetch', t)
        t = time.time()
        self.wait_healthy(cid, name)
        self.phase('health', t)
        if self.arrival:
            self.arrival.verify(cid, name)
        self.clean_up(cid, cp_name)

    def take_lock(self):
        """One restore of this migration at a time (state=absent waits for it); released when the module ends."""
        if self.module.check_mode or self._lock is not None:   # a detached receiver got it before it was started
            return
        try:
            self._lock = acquire_lock(self.lock_path, LOCK_WAIT)
        except OSError as exc:
            self.fail('Cannot take the lock %s: %s' % (self.lock_path, exc))
        if self._lock is None:
            self.fail('Another restore of migration %s runs on this host (it holds %s).'
                      % (self.migration_id, self.lock_path))
        self.mod.add_cleanup(self.release_lock)

    def release_lock(self):
        if self._lock is not None:
            self._lock.close()   # the process exit would release it too
            self._lock = None

    def arrive(self):
        """The bundle is here: received (receive), waited for (wait_for_bundle) or given. False when
        check mode ends the run here."""
        if self.p['receive']:
            return not self.receive_bundle()
        if self.p['wait_for_bundle'] > 0:
            t = time.time()
            deadline = t + self.p['wait_for_bundle']
            while not os.path.exists(os.path.join(self.bundle, 'manifest.json')) and time.time() < deadline:
                self.check_cancelled()
                time.sleep(0.02)
            self.phase('wait', t)
        return True

    def load_manifest(self):
        """The bundle's manifest, or None when this migration's container already runs (a rerun)."""
        try:
            manifest = read_manifest(self.bundle)
        except MigrationError as exc:
            name = self.p['name'] or (self.p['config'] or {}).get('name')
            done = self.find(name) if name else None
            if done and self.ours(done) and (done.get('State') or {}).get('Running'):
                self.result['container'] = self.describe(done)
                return None
            self.fail(str(exc))
        name = self.container_name(self.approved_config(manifest))
        existing = self.find(name)
        if existing and self.ours(existing) and (existing.get('State') or {}).get('Running'):
            self.result['container'] = self.describe(existing)
            return None
        if existing and self.ours(existing) and (existing.get('State') or {}).get('Status') not in ('created',):
            self.fail('Container %s of migration %s exists in state %s; remove it (state=absent) and retry.'
                      % (name, self.migration_id, existing['State'].get('Status')))
        return manifest

    def verify(self, manifest):
        t = time.time()
        stamp = read_stamp(self.bundle) if self.p['verify'] == 'auto' else None
        self.result['bytes_verified'] = verify_manifest(self.bundle, manifest, hashes=not stamp)
        self.result['verified'] = ('sizes (the content passed the %s check of the stream on arrival)'
                                   % ('TLS' if stamp['integrity'] == 'tls' else 'HMAC-SHA256') if stamp else 'sha256')
        self.phase('verify', t)

    def lay_back(self, inspect, captured):
        """The writable layer into the standby's overlay2 upper directory, the volumes' contents into theirs."""
        t = time.time()
        upper = ((inspect.get('GraphDriver') or {}).get('Data') or {}).get('UpperDir')
        if (inspect.get('GraphDriver') or {}).get('Name') != 'overlay2' or not upper or not os.path.isdir(upper):
            raise MigrationError('The standby container has no overlay2 writable layer on this host.')
        unpack_rootfs(self.bundle, upper)
        self.phase('layer', t)
        t = time.time()
        for vol in named_volumes(captured):
            unpack_volume(self.bundle, vol['name'], self.own_volume(vol['name']).get('Mountpoint'))
        self.phase('volumes', t)

    def own_volume(self, name):
        """The volume ``name``, right before its contents are laid back: it must still be this migration's."""
        vol = self.volume(name)
        if not vol:
            raise MigrationError('Volume %s of the standby does not exist on this host any more.' % name)
        owner = (vol.get('Labels') or {}).get(LABEL_ID)
        if owner != self.migration_id:
            raise MigrationError('Volume %s on this host does not belong to migration %s (its %s label is %r); its '
                                 'contents are not overwritten.' % (name, self.migration_id, LABEL_ID, owner))
        return vol

    def place(self, cid, cp_name, delivery, lazy):
        """The CRIU images where the engine's start finds them (see image_delivery). Returns what the start
        needs: the checkpoint directory, the images, runc's CRIU options (direct) and a marker file."""
        t = time.time()
        target = checkpoint_dir(self.data_root, cid, cp_name)
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        images = os.path.join(self.bundle, CRIU_DIR)
        if delivery['used'] == 'direct':
            placed = {'options': self.place_direct(images, target, lazy, cid=cid), 'marker_file': DESCRIPTORS}
        else:
            mode = self.cgroup_mode(images)[2]
            self.result['place_method'] = move_tree(images, target)
            placed = {'options': {'manage-cgroups': mode} if mode else None, 'marker_file': 'inventory.img'}
        placed.update(target=target, images=images, direct=delivery['used'] == 'direct')
        self.phase('place', t)
        return placed

    def start(self, cid, name, cp_name, placed, lazy):
        """``docker start --checkpoint`` (with a lazy-pages daemon first for post-copy); returns the daemon."""
        daemon = None
        if lazy:
            t = time.time()
            daemon = self.start_lazy_daemon(lazy, placed['images'], placed['options']['work-dir'])
            self.phase('lazy_daemon', t)
        t = time.time()
        with StartAttempt(self, cid, name, placed, daemon, t):
            start_from_checkpoint(
                lambda: self.client.post('/containers/%s/start' % cid, params={'checkpoint': cp_name}),
                placed['options'], owner='mtd.containers.restore %s' % self.migration_id)
        self.phase('restore', t)
        self.result['resumed_at'] = round(time.time(), 4)
        if placed['direct']:
            criu_seconds = log_seconds(os.path.join(self.bundle, CRIU_WORK_DIR, 'restore.log'))
            if criu_seconds is not None:
                self.timings['restore_criu'] = criu_seconds
        self.remove_engine_copies(placed['before'], placed['marker'])
        return daemon

    def clean_up(self, cid, cp_name):
        if not self.p['keep_bundle']:
            remove_tree(checkpoint_dir(self.data_root, cid, cp_name))
            remove_tree(self.bundle)
            remove_tree(self.bundle + STAMP_SUFFIX)
        remove_tree(self.bundle + TLS_DIR_SUFFIX)
        unlink_quietly(self.lock_path)
        self.result['container'] = self.describe(self.client.inspect_container(cid))
        self.result['timings'] = self.timings

    # -- post-copy ---------------------------------------------------------------------------------

    def check_lazy(self, delivery):
        """Before anything changes: what a post-copy start needs is there."""
        if delivery['used'] != 'direct':
            self.fail('A post-copy checkpoint needs image_delivery direct (CRIU gets its options through %s), '
                      'but %s.' % (RuncCriuOptions().path, delivery['reason']))
        tls = self.bundle + TLS_DIR_SUFFIX
        for path in (os.path.join(self.bundle, LAZY_CERT), os.path.join(tls, 'cert.pem'), os.path.join(tls, 'key.pem')):
            if not os.path.isfile(path):
                self.fail('The post-copy restore needs %s (run state=prepared with lazy_pages=true first, and '
                          'checkpoint with lazy_pages).' % path)
        try:
            self._criu = find_criu(self.module, None)
        except CriuError as exc:
            self.fail('CRIU was not found on this host: %s' % exc)
        if not self._criu:
            self.fail('CRIU was not found on this host; the post-copy restore needs its lazy-pages daemon.')

    def start_lazy_daemon(self, lazy, images, work):
        """criu lazy-pages, connected to the source's page server once the restore hands it the
        userfaultfds; returns the running process."""
        tls = self.bundle + TLS_DIR_SUFFIX
        options = lazy_tls_options(os.path.join(self.bundle, LAZY_CERT), os.path.join(tls, 'cert.pem'),
                                   os.path.join(tls, 'key.pem'))
        try:
            proc, state = start_lazy_pages_daemon(str(self._criu), lazy['address'], lazy['port'], images, work, options)
            # a rollback (state=absent) ends it instead of waiting until the transfer gives up
            atomic_write(os.path.join(tls, LAZY_PID), '%d\n' % proc.pid, mode=0o600, fsync=False)
        except (MtdError, OSError) as exc:
            self.fail('Cannot start CRIU\'s lazy-pages daemon: %s' % exc)
        if state != 'ready':
            stop_process(proc)
            self.fail('CRIU\'s lazy-pages daemon did not get ready (%s).' % state,
                      criu_log=read_tail(os.path.join(work, 'lazy-pages.log')))
        return proc

    def finish_lazy(self, daemon, lazy, work):
        """Wait until the daemon has copied every page; a failure means the restored copy is broken."""
        try:
            rc = daemon.wait(self.p['lazy_timeout'])
        except subprocess.TimeoutExpired:
            stop_process(daemon)
            rc = None
        self.result['lazy_pages'] = {'address': lazy['address'], 'port': lazy['port'], 'rc': rc}
        if rc != 0:
            self.fail('The restored container did not get all of its memory from the source (criu lazy-pages %s); '
                      'it cannot run on, so the migration must be rolled back (the source is still frozen).'
                      % ('rc %s' % rc if rc is not None else 'still copying after %s s' % self.p['lazy_timeout']),
                      criu_log=read_tail(os.path.join(work, 'lazy-pages.log')))

    def choose_delivery(self):
        """direct or engine (see the image_delivery option), with the reason."""
        wanted = self.p['image_delivery']
        runc_conf = RuncCriuOptions()
        if wanted == 'engine':
            choice = {'used': 'engine', 'reason': 'image_delivery=engine'}
        elif runc_conf.foreign():
            conf = runc_conf.path
            if wanted == 'direct':
                raise MigrationError('image_delivery=direct needs %s, which this host keeps for its own CRIU '
                                     'options; use image_delivery=engine or auto.' % conf)
            choice = {'used': 'engine', 'reason': 'image_delivery=auto and the host has its own %s' % conf}
        else:
            choice = {'used': 'direct', 'reason': 'image_delivery=%s' % wanted}
        self.result['image_delivery'] = choice
        return choice

    def precopy_chain(self, manifest, delivery):
        """The number of pre-copy rounds the images depend on (0: a single dump). CRIU reads the final images'
        ``parent`` chain from the bundle, which only direct delivery keeps (the engine's would copy the final
        directory alone), so engine delivery is refused for it."""
        try:
            count = chain_count(manifest.get('precopy'))
        except MtdError as exc:
            self.fail('The checkpoint bundle cannot be restored: %s.' % exc)
        if count:
            self.result['precopy_rounds'] = count
            if delivery['used'] != 'direct':
                self.fail('The checkpoint was made with %d pre-copy rounds, whose images only image_delivery=direct '
                          'gives CRIU (%s); use image_delivery=direct or auto on a host without a runc.conf of its own.'
                          % (count, delivery['reason']))
        return count

    def link_rounds(self, count):
        """The ``parent`` links of the pre-copy chain, made here from the round count alone (the stream carries
        only directories and regular files): ``criu/parent`` -> ``../precopy/N``, ``precopy/k/parent`` ->
        ``../k-1``. Every round directory must be a real directory of the bundle; an existing link is replaced."""
        for k in range(1, count + 1):
            path = os.path.join(self.bundle, round_dir(k))
            if not os.path.isdir(path) or os.path.islink(path):
                raise MigrationError('The bundle lacks the pre-copy round directory %s.' % round_dir(k))
        for link, target in chain_links(count, CRIU_DIR):
            full = os.path.join(self.bundle, link)
            if os.path.lexists(full):
                if not os.path.islink(full):
                    raise MigrationError('%s in the bundle is not a link CRIU made.' % link)
                os.unlink(full)
            os.symlink(target, full)

    def cgroup_mode(self, images):
        """(images' cgroup version, this host's, CRIU's --manage-cgroups mode): see restore_cgroup_mode (on
        cgroup v2, or across versions, the target's engine places the restored tasks)."""
        names = cgroup_names(images)
        images_version = None if names is None else images_cgroup_version(names)
        host_version = cgroup_version(self.info)
        mode = restore_cgroup_mode(images_version, host_version)
        if mode:
            self.result['criu_manage_cgroups'] = mode
        return images_version, host_version, mode

    def place_direct(self, images, target, lazy=False, cid=None):
        """Give the engine only what runc itself reads (descriptors.json); CRIU gets the images' path
        through runc's CRIU configuration file. Returns the CRIU options for it."""
        descriptors = os.path.join(images, DESCRIPTORS)
        if not os.path.isfile(descriptors):
            raise MigrationError('The bundle has no %s: it was not made by runc checkpoint.' % DESCRIPTORS)
        if os.path.lexists(target):
            remove_tree(target)
        os.mkdir(target, 0o700)   # fresh (a leftover that could not be removed fails here)
        shutil.copy2(descriptors, os.path.join(target, DESCRIPTORS))
        # CRIU resolves a configured images-dir with readlink(), so it has to be a symbolic link.
        link = os.path.join(self.bundle, CRIU_IMAGES_LINK)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(images, link)
        work = os.path.join(self.bundle, CRIU_WORK_DIR)
        if os.path.lexists(work):
            remove_tree(work)
        os.mkdir(work, 0o700)
        self.result['place_method'] = 'direct'
        images_version, host_version, mode = self.cgroup_mode(images)
        # the cgroup mounts of a dump made on the other cgroup version: an empty directory in the new container's
        # own engine directory (removed with the container)
        placeholder = os.path.join(self.data_root, 'containers', cid or 'none', CGROUP_PLACEHOLDER)
        ext = cgroup_mount_map(external_mounts(images), images_version, host_version, placeholder)
        if ext:
            if not cid:
                raise CriuError('A checkpoint of the other cgroup version needs the new container\'s id.')
            os.makedirs(placeholder, mode=0o555, exist_ok=True)
            self.result['criu_cgroup_mounts'] = [value.split(':', 1)[0] for value in ext]
        return restore_options(link, work, lazy=lazy, manage_cgroups=mode, ext_mounts=ext)

    def remove_engine_copies(self, before, marker):
        """containerd unpacks every checkpoint it restores into $TMPDIR/ctrd-checkpoint* and leaves it
        there (with image_delivery=engine a full copy of the process memory). Remove the copies of this
        checkpoint, recognised by ``marker``: (file name, sha256)."""
        removed = []
        for path in set(engine_checkpoint_copies()) - before:
            if not marker:
                break
            probe = os.path.join(path, marker[0])
            if os.path.isfile(probe) and sha256_file(probe) == marker[1]:
                remove_tree(path)
                removed.append(path)
        self.result['engine_copies_removed'] = removed

    def wait_healthy(self, cid, name):
        waited = wait_running(self.client, cid, timeout=self.p['health_timeout'], interval=0.2,
                              health_cmd=self.p['health_cmd'], stop_on_exit=False)
        if not waited['healthy']:
            self.fail('Container %s did not become healthy within %s s: %s'
                      % (name, self.p['health_timeout'], waited['reason']))

    def run_absent(self):
        bundles = [self.p['bundle']] if self.p['bundle'] else self.candidates
        if self.module.check_mode:
            self.remove_what_this_migration_made(bundles)
            return
        # Call off a restore of this migration that may still wait for its bundle (launched before the
        # freeze), and wait until it has finished whatever it was doing, so nothing starts after this.
        t = time.time()
        locks = []
        wait = self.p['health_timeout'] + LOCK_WAIT_ABSENT
        usable = []
        for bundle in bundles:
            try:
                self.secure_parent(bundle)
                usable.append(bundle)
            except (OSError, MtdError) as exc:
                if self.p['bundle']:
                    self.fail('Cannot use the bundle directory %s: %s' % (os.path.dirname(bundle), exc))
                # a default place that cannot exist here, or another user's (never written through), holds
                # nothing of this migration
                self.module.warn('Skipped %s: %s' % (os.path.dirname(bundle), exc))
        bundles = usable
        try:
            for bundle in bundles:
                os.close(create_no_follow(bundle + '.cancel'))
                # a post-copy restore whose copy is being removed need not get the rest of its memory
                self.result['lazy_daemon_ended'] = end_lazy_daemon(bundle + TLS_DIR_SUFFIX) or \
                    self.result.get('lazy_daemon_ended', False)
            for bundle in bundles:
                lock = acquire_lock(bundle + '.lock', wait)
                if lock is None:
                    self.fail('A restore of migration %s still runs on this host after %s s (it holds %s.lock).'
                              % (self.migration_id, wait, bundle))
                locks.append((bundle, lock))
            self.phase('wait_restore', t)
            self.remove_what_this_migration_made(bundles)
        finally:
            for bundle, lock in locks:
                unlink_quietly(bundle + '.lock')
                lock.close()
            for bundle in bundles:
                unlink_quietly(bundle + '.cancel')
        self.result['timings'] = self.timings

    def remove_what_this_migration_made(self, bundles):
        removed = []
        name = self.p['name'] or (self.p['config'] or {}).get('name')
        candidates = []
        if name:
            found = self.find(name)
            if found:
                candidates.append(found)
        for c in self.client.containers(all=True, filters={'label': ['%s=%s' % (LABEL_ID, self.migration_id)]}):
            if not any(x['Id'] == c['Id'] for x in candidates):
                candidates.append(self.client.inspect_container(c['Id']))
        for inspect in candidates:
            if not self.ours(inspect):
                continue
            removed.append(inspect.get('Name', '').lstrip('/'))
            if not self.module.check_mode:
                self.client.delete('/containers/%s' % inspect['Id'], params={'force': 'true'})
        volumes = self.client.get('/volumes', params={'filters': '{"label": ["%s=%s"]}' % (LABEL_ID, self.migration_id)})
        for vol in (volumes or {}).get('Volumes') or []:
            removed.append('volume:' + vol['Name'])
            if not self.module.check_mode:
                self.client.delete('/volumes/%s' % quote(vol['Name'], safe=''))
        for bundle in bundles:
            for path in (bundle, bundle + '.part', bundle + TLS_DIR_SUFFIX, bundle + STAMP_SUFFIX,
                         bundle + RESULT_SUFFIX, bundle + RESULT_SUFFIX + '.part'):
                if os.path.lexists(path):
                    removed.append('bundle:' + path)
                    if not self.module.check_mode:
                        remove_tree(path)
        self.result['removed'] = removed
        self.result['changed'] = bool(removed)


def read_private_json(path):
    """The JSON result a detached receiver of this host left at ``path``: a regular file of this user, readable by
    no one else, never followed through a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, 'rb') as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise MigrationError('%s is not a private regular file of this user; its result is not used.' % path)
        text = handle.read(16 * 1024 * 1024).decode('utf-8', 'replace')
    try:
        got = json.loads(text)
    except ValueError:
        got = None
    if not isinstance(got, dict):
        raise MigrationError('The detached restore left no readable result in %s: %s' % (path, text[-500:] or 'empty'))
    return got


def namespace_pid(status_text):
    """The innermost pid of a /proc/<pid>/status (its NSpid line: the container's pid namespace last), or None."""
    for line in (status_text or '').splitlines():
        if line.startswith('NSpid:'):
            values = line.split()[1:]
            return int(values[-1]) if values and values[-1].isdigit() else None
    return None


def strip_confine_labels(body):
    """The create body without ``mtd.confine.*`` labels: the captured configuration comes from the source,
    which may claim a confinement it does not have (only this host's restore sets them)."""
    config = dict(body)
    labels = dict(config.get('Labels') or {})
    for key in [k for k in labels if k.startswith('mtd.confine.')]:
        labels.pop(key)
    config['Labels'] = labels
    return config


class ArrivalConfinement:
    """Option confine: the standby is created under the confinement's parent cgroup with its limits (written
    before the freeze), so the restored tree is limited from its first instruction; verified after the resume.
    The decisions are mtd.containers.confine's (module_utils/_confine.py)."""

    def __init__(self, worker):
        self.worker = worker
        self.opts = worker.p['confine']
        # CgroupError (an MtdError) for a bad limit: before anything is created
        self.limits = limits_from_params(self.opts['limits'])
        self.layout = cgroup_lib.Layout.from_host('auto')
        self.cgroup: Optional[cgroup_lib.Cgroup] = None
        self.slice: Optional[SliceLevel] = None   # the level under Docker's systemd driver
        self.parent = '/'                           # the standby's CgroupParent: a path, or the slice unit
        self.cgroupns: Optional[str] = None   # private | host, from the captured configuration (arrival_cgroupns)
        self.expected: Dict[int, int] = {}    # thread id in the container -> Seccomp_filters after the restore

    def level(self, name) -> cgroup_lib.Cgroup:
        """The parent level ``<cgroup_parent>/<cgroup_name or name>``: the container's CgroupParent is that path
        (cgroupfs driver) or the slice unit of it (systemd driver, cgroup v2: ``mtd-<name>.slice``)."""
        if self.cgroup is None:
            own = self.opts['cgroup_name'] or name
            if uses_systemd_driver(self.worker.info):
                self.slice = SliceLevel(self.layout, self.opts['cgroup_parent'], own)
                self.parent, self.cgroup = self.slice.unit, self.slice.cgroup
            else:
                self.parent = cgroup_parent_path(self.opts['cgroup_parent'], own)
                self.cgroup = cgroup_lib.Cgroup(self.layout, self.parent.lstrip('/'))
        return self.cgroup

    def plan(self, captured, name):
        """Refuse, before anything is created, what cannot be confined on arrival."""
        worker = self.worker
        info = worker.info
        level = self.level(name)
        engine = str(info.get('CgroupVersion') or '')
        if engine in ('1', '2') and int(engine) != self.layout.version:
            worker.fail('The Docker engine uses cgroup v%s but this host\'s limits would go on cgroup v%d.'
                        % (engine, self.layout.version))
        self.cgroupns, kept = arrival_cgroupns(self.opts['cgroupns'], (captured.get('host_config') or {}).get(
            'CgroupnsMode'), self.layout.version)
        if kept:
            worker.fail('Cannot confine %s on arrival: %s' % (name, kept))
        body = self.body(create_body(captured))
        shaped = {'Name': name, 'HostConfig': body.get('HostConfig') or {}}
        refusal = container_refusal(shaped, (worker.client.version() or {}).get('Version'), info, self.limits,
                                    None, cgroup_version=self.layout.version)
        if refusal:
            worker.fail('Cannot confine %s on arrival: %s' % (name, refusal[0]), **refusal[1])
        quota = quota_refusal(self.limits) if self.slice else None
        if quota:
            worker.fail('Cannot confine %s on arrival: %s' % (name, quota))
        too_small = usage_refusal(name, self.limits, self.opts['source_usage'])
        if too_small:
            worker.fail(too_small, source_usage=self.opts['source_usage'],
                        limits=cgroup_lib.limits_for_display(self.limits))
        level.check_controllers(self.limits)
        self.describe(level.read_limits() if level.exists() else None)

    def describe(self, limits):
        cgroup = {'version': self.layout.version, 'path': '/' + self.cgroup.path if self.cgroup else self.parent}
        if self.slice:
            cgroup['systemd_slice'] = self.slice.unit
        self.worker.result['confinement'] = {
            'how': 'arrival', 'cgroup': cgroup,
            'limits': cgroup_lib.limits_for_display(dict((k, (limits or {}).get(k)) for k in self.limits)),
            'cgroupns_mode': self.cgroupns,
            'seccomp_profile': bool(self.opts['seccomp']), 'verified': None}

    def prepare_level(self, name):
        """The parent level and its limits, before the standby exists (nothing runs in it yet)."""
        level = self.level(name)
        before = level.read_limits() if level.exists() else None
        writes = level.plan(self.limits, before)
        if self.slice:
            # systemd owns a slice's files: its limits are unit properties, read back from the files
            self.slice.apply(self.limits, before, writes)
        else:
            level.create(self.limits)
            level.apply(writes)
        self.describe(level.read_limits())

    def body(self, body):
        """The create body with the confinement: the parent cgroup, the collection's profile (seccomp), a
        private cgroup namespace (cgroupns) and the labels that say so."""
        body = strip_confine_labels(body)
        host_config = confine_host_config(body.get('HostConfig'), self.parent, self.cgroupns == 'private')
        if not self.opts['seccomp']:
            host_config['SecurityOpt'] = (body.get('HostConfig') or {}).get('SecurityOpt')
        body['HostConfig'] = host_config
        if self.cgroup is not None:
            body['Labels'].update(arrival_labels(self.parent, CGROUPNS_KEPT_REASON if self.cgroupns == 'host' else None))
        return body

    def add_filter(self, images):
        """The collection's filter as the newest of every restored task's chain (CRIU installs what the image set
        holds, not the container's profile): the source cannot vouch for it, so the target adds it."""
        if not self.opts['seccomp']:
            return
        t = time.time()
        added = add_seccomp_filter(images)
        self.worker.phase('seccomp_filter', t)
        self.expected = dict((thread['tid'], thread['filters_after']) for task in added['tasks']
                             for thread in task['threads'])
        self.worker.result['seccomp_filter'] = {'filters_before': added['filters_before'],
                                                'filters_after': added['filters_after'],
                                                'changed_files': len(added['changed_files'])}

    def check_standby(self, inspect, name):
        """The standby this run starts must be the confined one (a standby made without confine is not)."""
        level = self.level(name)
        labels = (inspect.get('Config') or {}).get('Labels') or {}
        if (inspect.get('HostConfig') or {}).get('CgroupParent') != self.parent or labels.get(ARRIVAL_LABEL) != self.parent:
            self.worker.fail('The standby %s was not created confined under %s (give the same confine to state=prepared '
                             'and state=started); nothing was started.' % (name, self.parent))
        if self.cgroupns is None:   # state=started: the mode the standby was created with
            self.cgroupns = (inspect.get('HostConfig') or {}).get('CgroupnsMode') or None
        if self.worker.result.get('confinement') is None:
            self.describe(level.read_limits())

    def verify(self, cid, name):
        """After the resume: every task in the level, the level's limits as asked, every task filtered."""
        worker = self.worker
        level = self.level(name)
        found = level.read_limits()
        problems = ['limit %s' % key for key in limits_mismatch(self.limits, found)]
        tasks = {}
        pid = (worker.client.inspect_container(cid).get('State') or {}).get('Pid')
        # Docker's cgroupfs driver: <parent>/<id>; its systemd driver: <slice>/docker-<id>.scope
        own = self.slice.scope(cid) if self.slice else cgroup_lib.Cgroup(self.layout, '%s/%s' % (level.path, cid))
        for task in sorted(set(own.procs()) | set([pid] if pid else [])):
            tasks[task] = self.task_state(task, level)
        problems += ['task %d %s' % (task, what) for task, state in tasks.items() for what in state['problems']]
        if not tasks:
            problems.append('no task in %s' % self.parent)
        self.describe(found)
        worker.result['confinement'].update(
            verified=not problems, tasks=dict((str(t), {'seccomp': s['seccomp'], 'filters': s['filters']})
                                              for t, s in tasks.items()))
        if problems:
            worker.fail('Container %s runs but is not confined as asked (%s); it is rolled back.'
                        % (name, ', '.join(problems)), confinement=worker.result['confinement'])

    def task_state(self, pid, level):
        problems = []
        try:
            with open('/proc/%d/cgroup' % pid) as handle:
                paths = cgroup_lib.parse_proc_cgroup(handle.read())
            with open('/proc/%d/status' % pid) as handle:
                status_text = handle.read()
            status = seccomp_lib.parse_status_seccomp(status_text)
        except (IOError, OSError):
            return {'seccomp': None, 'filters': None, 'problems': []}   # ended meanwhile
        controllers = [c for c in cgroup_lib.MANAGED_CONTROLLERS if self.layout.version == 1] or ['']
        outside = cgroup_outside(paths, '/' + level.path, controllers)
        if outside:
            problems.append('outside %s (in %s)' % ('/' + level.path, ', '.join(
                '%s%s' % ('%s:' % c if c else '', paths[c]) for c in outside)))
        if self.opts['seccomp'] and status['mode'] != 2:
            problems.append('without a seccomp filter (Seccomp %s)' % status['mode'])
        expected = self.expected.get(namespace_pid(status_text))
        if self.opts['seccomp'] and expected is not None and status['filters'] != expected:
            problems.append('with %s seccomp filters, not %d' % (status['filters'], expected))
        return {'seccomp': status['mode'], 'filters': status['filters'], 'problems': problems}


def end_lazy_daemon(tls_dir):
    """Kill the lazy-pages daemon recorded in tls_dir if it still runs; True when one was ended."""
    pid = read_pid(os.path.join(tls_dir, LAZY_PID))
    if pid is None:
        return False
    argv = process_argv(pid)
    if argv is None or b'lazy-pages' not in argv:
        return False   # gone, or the number was reused by another process
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return False
    return True


def stop_process(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def engine_checkpoint_copies():
    dirs = set(['/tmp', os.environ.get('TMPDIR') or '/tmp'])
    found = []
    for d in dirs:
        found.extend(glob.glob(os.path.join(d, 'ctrd-checkpoint*')))
    return found


class StartAttempt:
    """The rollback of the restore side, around the start from the checkpoint.

    Before: notes containerd's unpacked copies and a marker of this checkpoint. On a failed start: the
    lazy-pages daemon is stopped, the copies containerd left are removed, and the start fails with the
    tail of CRIU's restore.log. (The standby itself is removed by state=absent, the caller's rollback.)
    """

    def __init__(self, worker, cid, name, placed, daemon, started):
        self.worker = worker
        self.cid = cid
        self.name = name
        self.daemon = daemon
        self.started = started
        marker_path = os.path.join(placed['target'], placed['marker_file'])
        placed['marker'] = (placed['marker_file'], sha256_file(marker_path)) if os.path.isfile(marker_path) else None
        placed['before'] = set(engine_checkpoint_copies())
        self.placed = placed

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if not isinstance(exc, (DockerError, CriuError, OSError)):
            return False
        worker = self.worker
        if self.daemon is not None:
            stop_process(self.daemon)
        worker.phase('restore', self.started)
        log = ''
        patterns = [os.path.join(worker.bundle, CRIU_WORK_DIR, 'restore.log')] + [
            pattern.format(id=self.cid) for pattern in RESTORE_LOG_GLOBS]
        for pattern in patterns:
            for path in glob.glob(pattern, recursive=True):
                log = read_tail(path)
        worker.remove_engine_copies(self.placed['before'], self.placed['marker'])
        worker.fail('Starting %s from its checkpoint failed: %s' % (self.name, exc), criu_log=log)
        return False


def run(mod) -> Optional[Dict[str, Any]]:
    state = mod.params['state']
    try:
        worker = Restorer(mod)
        if state == 'prepared':
            worker.run_prepared()
        elif state == 'absent':
            worker.run_absent()
        else:
            worker.run_started()
    except OSError as exc:
        raise MtdError('%s failed on this host: %s' % (state, exc))
    return None


def main():
    run_module(run, ARGUMENT_SPEC, docker=True, required_if=REQUIRED_IF)


if __name__ == '__main__':
    main()
