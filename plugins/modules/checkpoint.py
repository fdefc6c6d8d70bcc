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
  - "Pre-copy (O(precopy.mode=auto)): when the kernel tracks dirty pages (C(criu check --feature
    mem_dirty_track)), CRIU pre-dump rounds (C(runc checkpoint --pre-dump), each with the round before as
    C(--parent-path)) copy the memory into C(precopy/1), C(precopy/2) ... of the bundle while the container
    runs; after every round a stop rule (O(precopy.rule)) decides, from the pages CRIU really wrote (its
    C(stats-dump)), whether another round is worth it. The final dump, frozen, then writes only the pages
    dirtied since the last round, with that round as its C(parent). RV(precopy) lists every round. Where the
    kernel does not track dirty pages (the namespace lab hosts), with post-copy (O(lazy_pages)) or with
    O(precopy.mode=off), the module makes the single stop-and-copy dump and RV(precopy) says why."
  - Docker's own C(POST /containers/{id}/checkpoints) passes the images through containerd's content
    store and is several times slower than CRIU itself; this module calls runc directly on the
    engine's runc state directory instead.
extends_documentation_fragment:
  - mtd.containers.docker
  - mtd.containers.transfer.send
  - mtd.containers.policy
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
        C(mtd-migrations) in the engine's data root. The module creates a default place (and its missing
        parents) owned by root with mode 0700, or uses an existing one only when C(lstat) shows a real
        directory (not a symbolic link) of root that nobody else can write, which it then sets to 0700.
        A C(/dev/shm/mtd-migrations) that fails this check (another user may have made it) is avoided;
        the bundle goes to the data root, with a warning and the reason in RV(bundle_location).
      - A given O(dest) must pass the same check, except that a sticky directory such as C(/tmp) is
        accepted; it is never chmod'ed or chown'ed, and its missing parts are created 0700. A link, a
        directory of another user or one that others can write is refused before anything is frozen.
      - O(state=absent) without O(dest) looks into both default places (skipping one that fails the check).
    type: path
  state:
    description:
      - V(present) makes the checkpoint. V(absent) deletes the bundle and this host's TLS identity of it
        (the container is not touched).
      - V(prepared) (before the migration, nothing is frozen) makes this host's TLS identity for sending
        this checkpoint with O(send) - a fresh key that never leaves this host, in C(<bundle>.tls) (0700)
        beside the bundle - and returns its certificate as RV(transfer_cert), for the receiver to pin
        (O(mtd.containers.restore#module:receive.peer_cert)). Made once; a second run returns the same
        certificate, unchanged. Check mode writes nothing. The identity is removed after the send and by
        O(state=absent).
      - With O(capture=true), V(prepared) first looks at the container as the check mode of V(present) does.
    type: str
    choices: [prepared, present, absent]
    default: present
  capture:
    description:
      - With O(state=prepared), first check and capture the container as the check mode of O(state=present)
        does (it runs, its image has a registry digest, O(policy), CRIU and the runc state), and return
        RV(config), RV(memory_bytes) and RV(precopy) beside RV(transfer_cert). Nothing is frozen, and a
        refused container gets no TLS identity. One call instead of two before a migration's freeze.
      - Ignored unless O(state=prepared).
    type: bool
    default: false
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
  seccomp_precheck:
    description:
      - V(true) checks, before anything is frozen (in check mode too), that the collection's seccomp filter can be
        added to the checkpoint's image set on the target (M(mtd.containers.restore)'s
        O(mtd.containers.restore#module:confine)) - the CRIU version that will write the images must write a
        format the collection knows (3.10 to 4.x), and no thread of the container may be in seccomp strict mode.
        A refusal fails the module with nothing frozen; RV(seccomp_precheck) reports what was checked.
    type: bool
    default: false
  timeout:
    description:
      - Seconds allowed for each Engine API call and for each network operation of O(send).
    type: int
    default: 300
  dump_timeout:
    description:
      - Seconds allowed for the dump (C(runc checkpoint)), including the wait for another checkpoint or
        restore on this host that holds the runc-CRIU lock.
      - With O(lazy_pages), the time until the page server is ready is O(lazy_pages.ready_timeout).
    type: int
    default: 300
  precopy:
    description:
      - Iterative pre-copy before the freeze (see the description). The target restores the chain of rounds
        only with O(mtd.containers.restore#module:image_delivery=direct) (the engine's own delivery would lose
        it), which M(mtd.containers.restore) then requires.
    type: dict
    suboptions:
      mode:
        description:
          - V(auto) runs pre-dump rounds where the kernel tracks dirty pages (else the single dump, with the
            reason in RV(precopy)); V(off) always makes the single dump.
        type: str
        choices: [auto, 'off']
        default: 'off'
      rule:
        description:
          - The stop rule. V(predictive) predicts the next round's pages from the measured dirty rates
            (weighted errors against O(precopy.initial_rate)) and stops when the round copied at most
            O(precopy.min_pages) (C(converged)), when the next round would copy more (C(diverging)), when
            it would save less than O(precopy.min_shrink) (C(stalled)), after O(precopy.max_time) seconds
            (C(time_limit)) or O(precopy.max_rounds) rounds (C(max_rounds)).
          - V(phaul) applies P.Haul's fixed rules (at most 64 pages, more than 10 % growth over the round
            before, 8 rounds). V(fixed) runs exactly O(precopy.max_rounds) rounds (to record a trace).
        type: str
        choices: [predictive, phaul, fixed]
        default: predictive
      initial_rate:
        description: Dirty pages per second expected before anything is measured (V(predictive)).
        type: float
        default: 0.0
      min_pages:
        description: A round that copied at most this many pages ends pre-copy (V(predictive)).
        type: int
        default: 64
      min_shrink:
        description: The fraction a next round must save to be worth it (V(predictive); V(0) disables it).
        type: float
        default: 0.1
      max_time:
        description: Seconds of pre-copy after which no round starts (V(predictive)).
        type: float
        default: 60.0
      max_rounds:
        description: Rounds at most, the full first copy included (V(predictive), V(fixed)).
        type: int
        default: 8
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
      connect_address:
        description:
          - The address the target connects to when it is not O(lazy_pages.address), for a forwarder between
            the hosts (the lab's VM host is reached so, see the lab's C(vm.sh)). It is what the manifest tells the
            target; the page server still listens on O(lazy_pages.address) and the same O(lazy_pages.port).
          - The channel stays mutual TLS with pinned certificates, so a forwarder sees only ciphertext.
        type: str
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
- name: Before the migration, this host's TLS identity for sending m-42 (nothing is frozen)
  mtd.containers.checkpoint:
    container: web-1
    name: m-42
    state: prepared
  register: source_identity

- name: Freeze web-1, checkpoint it and send it to the target's receiver over mutual TLS
  mtd.containers.checkpoint:
    container: web-1
    name: m-42
    send:
      address: 192.0.2.20
      port: 47042
      token: "{{ transfer_token }}"
      peer_cert: "{{ standby.transfer_cert }}"   # restore state=prepared on the target
  register: cp

- name: Freeze web-1 and checkpoint it into /dev/shm/mtd-migrations/m-42
  mtd.containers.checkpoint:
    container: web-1
    name: m-42
  register: cp

- name: Pre-copy where the kernel tracks dirty pages, then the short freeze (the single dump elsewhere)
  mtd.containers.checkpoint:
    container: web-1
    name: m-43
    precopy:
      mode: auto
      max_rounds: 5
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
  returned: when O(state=present), and when O(state=prepared) with O(capture=true)
  type: int
  sample: 270532608
seccomp_precheck:
  description:
    - With O(seccomp_precheck), what was checked before the freeze - C(criu_version), C(threads), C(filtered) and
      C(unfiltered) (threads with and without a seccomp filter now), C(machine).
  returned: when O(seccomp_precheck=true) and O(state=present), or O(state=prepared) with O(capture=true)
  type: dict
  sample: {"criu_version": "4.1.1", "threads": 2, "filtered": 2, "unfiltered": 0, "machine": "x86_64"}
pids_current:
  description:
    - The tasks (processes and threads) the container's pids cgroup counts, measured before the freeze; V(null)
      when it cannot be read. M(mtd.containers.restore) compares it with the pids limit of its
      O(mtd.containers.restore#module:confine) before anything is frozen.
  returned: when O(state=present)
  type: int
  sample: 3
bundle_removed:
  description:
    - The bundle was deleted after the receiver confirmed it (see O(send.keep)), or because the send failed
      (a failed send never leaves process memory behind, whatever O(send.keep) says).
  returned: when O(send) is given and O(send.keep=false), and when the send failed
  type: bool
  sample: true
bundle_location:
  description:
    - Whether the bundle went to the default place in tmpfs (C(/dev/shm/mtd-migrations)) or to the data root's
      C(mtd-migrations), and why.
  returned: when O(dest) is not given and O(state=present)
  type: dict
  sample: {"tmpfs": false, "reason": "/dev/shm/mtd-migrations is owned by uid 65534, not by uid 0 (another user may have made it), so it is not used"}
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
  description:
    - Whether iterative pre-copy was possible and used, and why (not); C(mode), and with pre-copy the C(rule).
    - "C(final) (after a dump): the final dump's C(pages) (CRIU's pages written; with pre-copy only those dirtied
      since the last round), C(frozen_ms) (how long CRIU held the tasks), C(duration) (seconds)."
    - "C(rounds) (with pre-copy): every pre-dump round and then the final dump (C(kind) pre-dump|final), each
      with C(round), C(dir) (in the bundle), C(pages) (actual), C(predicted_pages) (what the rule predicted
      after the round before), C(duration), C(frozen_ms), C(pages_scanned), C(pages_skipped_parent) and
      C(decision) (the rule's code after the round); C(stop) is the rule's last C(code) and C(reason)."
  returned: when O(state=present), and when O(state=prepared) with O(capture=true)
  type: dict
  sample: {"available": true, "used": true, "mode": "auto", "rule": "predictive",
           "reason": "pre-dump rounds while the container runs, then the final dump with the last round as parent",
           "stop": {"code": "stalled", "reason": "stalled: predicted 1210 of produced 1180 pages saves less than 10%"},
           "final": {"pages": 1190, "frozen_ms": 2104.5, "duration": 3.1},
           "rounds": [{"round": 1, "kind": "pre-dump", "dir": "precopy/1", "pages": 24710, "predicted_pages": null,
                       "duration": 4.2, "frozen_ms": 801.2, "decision": "converging"},
                      {"round": 2, "kind": "final", "dir": "criu", "pages": 1190, "predicted_pages": 0.0,
                       "duration": 3.1, "frozen_ms": 2104.5, "decision": null}]}
config:
  description:
    - The captured configuration of the container (also in check mode), as M(mtd.containers.restore)
      takes it in O(mtd.containers.restore#module:config) to prepare the standby container.
  returned: when O(state=present), and when O(state=prepared) with O(capture=true)
  type: dict
transfer:
  description: Statistics of the transfer when O(send) was given (see M(mtd.containers.checkpoint_transfer)).
  returned: when O(send) is given
  type: dict
  sample: {"bytes_raw": 268530720, "bytes_sent": 1203456, "compression": "zstd", "seconds": 0.5, "throughput_mb_s": 512.3,
           "compression_choice": {"requested": "auto", "used": "zstd", "probe_ratio": 0.004, "probe_file": "criu/pages-1.img"}}
transfer_cert:
  description: With O(state=prepared), this host's certificate (PEM) for the stream of this checkpoint; V(null) in check mode when it does not exist yet.
  returned: when O(state=prepared)
  type: str
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

import contextlib
import os
import signal
import time
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.mtd.containers.plugins.module_utils._bundle import (
    CRIU_DIR,
    LAZY_CERT,
    LAZY_DIR_SUFFIX,
    MANIFEST,
    ManifestJob,
    check_name,
    pack_rootfs,
    pack_volumes,
    part_bytes,
    read_manifest,
    write_manifest,
)
from ansible_collections.mtd.containers.plugins.module_utils._cgroup import (
    CgroupError,
    freeze_cgroup_of_pid,
    memory_usage_of_pid,
    pids_usage_of_pid,
)
from ansible_collections.mtd.containers.plugins.module_utils._common import (
    MtdError,
    group_alive,
    process_argv,
    read_pid,
)
from ansible_collections.mtd.containers.plugins.module_utils._criu import (
    Criu,
    CriuError,
    Runc,
    find_criu,
    find_runc,
    find_runc_root,
    lazy_pages_blocker,
    lazy_tls_options,
    make_tls_identity,
)
from ansible_collections.mtd.containers.plugins.module_utils._criuimg import CriuImageError, read_dump_stats
from ansible_collections.mtd.containers.plugins.module_utils._criuimg import precheck as filter_precheck
from ansible_collections.mtd.containers.plugins.module_utils._criuimg import task_statuses
from ansible_collections.mtd.containers.plugins.module_utils._docker import DockerError
from ansible_collections.mtd.containers.plugins.module_utils._files import (
    atomic_write,
    make_private_dir,
    read_tail,
    remove_tree,
    restrict_tree,
    tmpfs_free_bytes,
)
from ansible_collections.mtd.containers.plugins.module_utils._hoststate import (
    check_given_dir,
    ensure_state_dir,
    state_dir_problem,
)
from ansible_collections.mtd.containers.plugins.module_utils._migration import (
    MigrationError,
    capture_config,
    named_volumes,
)
from ansible_collections.mtd.containers.plugins.module_utils._module import Worker, run_module
from ansible_collections.mtd.containers.plugins.module_utils._policy import (
    POLICY_SPEC,
    cgroup_version,
    engine_paths,
    policy_message,
    policy_violations,
)
from ansible_collections.mtd.containers.plugins.module_utils._precopy import (
    PRECOPY_DIR,
    PRECOPY_SPEC,
    precopy_plan,
    round_dir,
    round_entries,
    rule_of,
)
from ansible_collections.mtd.containers.plugins.module_utils._transfer import (
    PLAINTEXT_WARNING,
    SENDER,
    TransferError,
    check_transfer_options,
    choose_compression,
    connect,
    ensure_identity,
    load_identity,
    transfer_spec,
)
from ansible_collections.mtd.containers.plugins.module_utils._transfer import (
    send as send_bundle,
)

ARGUMENT_SPEC = dict(
    container=dict(type='str', required=True),
    name=dict(type='str'),
    dest=dict(type='path'),
    state=dict(type='str', default='present', choices=['prepared', 'present', 'absent']),
    capture=dict(type='bool', default=False),
    leave_running=dict(type='bool', default=False),
    runc_path=dict(type='path'),
    runc_root=dict(type='path'),
    criu_path=dict(type='path'),
    seccomp_precheck=dict(type='bool', default=False),
    timeout=dict(type='int', default=300),
    dump_timeout=dict(type='int', default=300),
    send=dict(type='dict', options=transfer_spec(SENDER, keep=dict(type='bool', default=False),
                                                 hashes=dict(type='bool', default=False))),
    policy=dict(type='dict', apply_defaults=True, options=POLICY_SPEC),
    precopy=dict(type='dict', apply_defaults=True, options=PRECOPY_SPEC),
    lazy_pages=dict(type='dict', options=dict(
        address=dict(type='str', required=True),
        connect_address=dict(type='str'),
        port=dict(type='int', required=True),
        peer_cert=dict(type='str', required=True),
        ready_timeout=dict(type='int', default=60),
    )),
)
# lazy_pages and leave_running exclude each other only when leave_running is true: checked in validate()
REQUIRED_BY = {'lazy_pages': 'send'}
TLS_DIR_SUFFIX = '.tls'   # beside the bundle: this host's identity for the bundle stream (state=prepared)


SOURCE_TMPFS = '/dev/shm/mtd-migrations'   # the default place of bundles when /dev/shm is a tmpfs


def default_dest(data_root):
    return dest_choice(data_root)[0]


def dest_choice(data_root):
    """The default directory for bundles: (path, reason, avoided). /dev/shm/mtd-migrations when /dev/shm is a
    tmpfs and that directory is not another user's (missing, or a real directory of ours that nobody else
    can write), else <data_root>/mtd-migrations; ``avoided`` tells that the tmpfs place was refused."""
    fallback = os.path.join(data_root, 'mtd-migrations')
    if tmpfs_free_bytes(os.path.dirname(SOURCE_TMPFS)) is None:
        return fallback, '%s is not a writable tmpfs' % os.path.dirname(SOURCE_TMPFS), False
    problem = state_dir_problem(SOURCE_TMPFS)
    if problem:
        return fallback, '%s (another user may have made it), so it is not used' % problem, True
    return SOURCE_TMPFS, '%s is a tmpfs' % os.path.dirname(SOURCE_TMPFS), False


def default_dests(data_root):
    """Every default place a bundle of this host can be in (a cleanup looks in all of them)."""
    return [SOURCE_TMPFS, os.path.join(data_root, 'mtd-migrations')]


class Rollback:
    """What a checkpoint that fails between connecting and packing leaves behind, undone in one place.

    Inside ``with Rollback(...) as undo:`` the steps record what they did (``undo.frozen``,
    ``undo.lazy_dir``, ``undo.dumping``). On an exception: the channel to the receiver is closed, a page
    server that may hold the container's tasks is ended (the container kept frozen meanwhile), the
    container is resumed if this run froze it, the bundle is removed - each step also when one before it
    failed (``rollback_errors`` in the failure) - and CRIU's log is added to the failure (``criu_log``)
    once the dump had started. The exception then goes on (one that is no MtdError as a MigrationError
    when there is something to add). The send itself is outside: after a failed send the container stays
    frozen (the caller's rollback resumes it); ``send()`` removes the bundle itself.
    """

    def __init__(self, worker, bundle, channel):
        self.worker = worker
        self.bundle = bundle
        self.channel = channel
        self.frozen = False
        self.lazy_dir = None
        self.dumping = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc is None or not isinstance(exc, Exception):
            return False
        log = read_tail(os.path.join(self.lazy_dir or self.bundle, 'work', 'dump.log')) if self.dumping else None
        # every step runs even when one before it fails: above all, a container this run froze is resumed
        errors: List[str] = []
        if self.channel is not None:
            self._quietly(errors, self.channel.close)
        if self.lazy_dir:
            self._quietly(errors, self.worker.end_page_server, self.lazy_dir, self.worker.inspected)
            self._quietly(errors, remove_tree, self.lazy_dir)
        if self.frozen:
            self._quietly(errors, self.worker.resume, self.worker.inspected['Id'])
        self._quietly(errors, remove_tree, self.bundle)
        extra: Dict[str, Any] = {'rollback_errors': errors} if errors else {}
        if log is not None:
            extra['criu_log'] = log
        if not extra:
            return False
        if isinstance(exc, MtdError):
            if 'criu_log' in extra:
                extra['criu_log'] = extra['criu_log'] or exc.details.get('criu_log', '')
            exc.details.update(extra)
            return False
        raise MigrationError(str(exc), **extra)

    @staticmethod
    def _quietly(errors, function, *args):
        try:
            function(*args)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            errors.append('%s: %s' % (getattr(function, '__name__', 'cleanup'), exc))


class Checkpointer(Worker):
    """One run of the module: ``run_present`` (validate → preflight → connect → freeze → dump → package
    → send → finish) or ``run_absent``."""

    def __init__(self, mod):
        super().__init__(mod)
        self.rule: Any = None
        self._precopy: Tuple[List[Dict[str, Any]], List[Dict[str, Any]]] = ([], [])
        self.client = mod.docker
        self.inspected: Dict[str, Any] = {}
        self.manifest: Dict[str, Any] = {}

    @contextlib.contextmanager
    def phase(self, name):
        started = time.time()
        yield
        self.timings[name] = round(time.time() - started, 4)

    def inspect(self):
        try:
            return self.client.inspect_container(self.p['container'])
        except DockerError as exc:
            if exc.status == 404:
                raise MtdError('No such container %r on this host.' % self.p['container'])
            raise MtdError('Cannot inspect container %r: %s' % (self.p['container'], exc))

    # -- state=present -----------------------------------------------------------------------------

    def run_present(self):
        self.validate()
        plan = self.preflight()
        if plan is None or self.mod.check_mode:
            return
        started = time.time()
        channel = self.open_channel(plan['bundle']) if self.p['send'] else None
        with Rollback(self, plan['bundle'], channel) as undo:
            self.prepare(plan, undo)
            if plan['precopy']:
                self.precopy_rounds(plan)
            self.freeze(plan, undo)
            undo.dumping = True
            self.dump(plan, undo.lazy_dir)
            manifest_job = self.package(plan)
        if self.p['send']:
            self.send(plan['bundle'], channel, manifest_job)
        self.finish(plan, started)

    def validate(self):
        """The options, before anything is looked at (required_by covers lazy_pages without send)."""
        if self.p['send']:
            check_transfer_options(self.p['send'], 'send.')
        lazy = self.p['lazy_pages']
        self.rule = rule_of(self.p['precopy'])
        if not lazy:
            return
        if self.p['leave_running']:
            raise MtdError('lazy_pages and leave_running exclude each other (the pages are served from the frozen container).')
        if not 0 < lazy['port'] < 65536:
            raise MtdError('lazy_pages.port must be between 1 and 65535, got %s.' % lazy['port'])
        if '-----BEGIN CERTIFICATE-----' not in lazy['peer_cert']:
            raise MtdError('lazy_pages.peer_cert is not a PEM certificate.')
        blocker = lazy_pages_blocker()
        if blocker:
            raise MtdError('This host cannot serve lazy pages: %s.' % blocker)

    def preflight(self):
        """Engine, container, image, CRIU and runc: everything is checked before the freeze. Returns the
        plan (bundle, captured config, runc ...), or None when a finished checkpoint is already there."""
        info = self.client.info()
        if not info.get('ExperimentalBuild'):
            raise MtdError('The Docker engine on this host does not run with experimental features on; '
                           'checkpoint/restore needs "experimental": true in daemon.json.')
        inspect = self.inspected = self.inspect()
        cid = inspect['Id']
        name = check_name(self.p['name'] or 'mtd-' + cid[:12], 'Checkpoint name')
        bundle = os.path.join(self.bundle_parent(info, create=False), name)
        self.result['bundle'] = bundle
        state = inspect.get('State') or {}
        if not state.get('Running'):
            raise MtdError('Container %s is not running (status %s); only a running container can be checkpointed.'
                           % (self.p['container'], state.get('Status')))
        paused = bool(state.get('Paused'))
        if paused and self.already_done(bundle, cid):
            return None
        captured = self.capture(inspect)
        self.check_policy(captured, info)
        plan = {'bundle': bundle, 'name': name, 'cid': cid, 'paused': paused, 'captured': captured,
                'criu': self.usable_criu(), 'runc': find_runc(self.module, self.p['runc_path']),
                'runc_root': self.p['runc_root'] or find_runc_root(cid)}
        if not plan['runc_root']:
            raise MtdError('The runc state of container %s was not found; set runc_root to the engine\'s runc '
                           'root (for Docker: <exec-root>/runtime-runc/moby).' % captured['name'])
        self.result['precopy'] = self.precopy_status(plan['criu'], lazy=bool(self.p['lazy_pages']), paused=paused)
        plan['precopy'] = self.result['precopy']['used']
        plan['rounds'] = 0
        self.result['method'] = 'runc'
        self.result['changed'] = True
        self.result['config'] = captured
        pid = state.get('Pid')
        self.result['memory_bytes'] = memory_usage_of_pid(pid) if pid else None
        self.result['pids_current'] = pids_usage_of_pid(pid) if pid else None
        if self.p['seccomp_precheck']:
            self.check_filter_possible(plan['criu'], pid)
        if self.mod.check_mode:
            self.result['container'] = {'id': cid, 'name': captured['name'],
                                        'image_digest_ref': captured['image_digest_ref'], 'state': 'running'}
        return plan

    def already_done(self, bundle, cid):
        """A finished checkpoint of this container, still frozen: nothing to do (its summary is the result)."""
        if not os.path.isfile(os.path.join(bundle, MANIFEST)):
            return False
        try:
            manifest = read_manifest(bundle)
        except MigrationError:
            return False
        if (manifest.get('container') or {}).get('id') != cid:
            return False
        self.result.update(self.summary(manifest, 'paused', method=manifest.get('method')))
        self.result['timings'] = manifest.get('timings', {})
        self.result['config'] = manifest.get('container')
        return True

    def capture(self, inspect):
        """The container's configuration, refused when it cannot be migrated faithfully."""
        try:
            image = self.client.get('/images/%s/json' % inspect.get('Image'))
        except DockerError as exc:
            raise MtdError('Cannot inspect the image of %s: %s' % (self.p['container'], exc))
        captured = capture_config(inspect, image)
        if not captured['image_digest_ref']:
            raise MtdError('The image %s of %s has no registry digest; push it to a registry the target host can '
                           'pull from (CRIU restores only into byte-identical files).' % (captured['image'], captured['name']))
        if captured['graph_driver'] != 'overlay2':
            raise MtdError('Storage driver %r is not supported; the writable layer is captured from overlay2 only.'
                           % captured['graph_driver'])
        for vol in named_volumes(captured):
            if (vol.get('driver') or 'local') != 'local':
                raise MtdError('Volume %s uses driver %s; only local volumes are migrated.' % (vol['name'], vol['driver']))
        return captured

    def bundle_parent(self, info, create):
        """The directory that receives the bundle: ``dest`` (checked, never chmod'ed: it may be /tmp) or the
        default place (created 0700, or checked; another user's directory there is avoided, with a warning)."""
        dest = self.p['dest']
        if dest:
            check_given_dir(dest, create=create)
            return dest
        parent, reason, avoided = dest_choice(info.get('DockerRootDir') or '/var/lib/docker')
        self.result['bundle_location'] = {'tmpfs': parent == SOURCE_TMPFS, 'reason': reason}
        if avoided and not create:
            self.module.warn('The checkpoint goes to %s: %s.' % (parent, reason))
        if create:
            ensure_state_dir(parent)
        return parent

    def check_policy(self, captured, info):
        """The migration policy, before anything is frozen (the target applies it again)."""
        found = policy_violations(captured, self.p['policy'], cgroup_version=cgroup_version(info),
                                  protected=engine_paths(self.client.docker_host, info.get('DockerRootDir')))
        if found:
            raise MtdError(policy_message(captured.get('name'), 'the source (nothing was frozen)', found),
                           violations=found)

    def check_filter_possible(self, criu, pid):
        """Before the freeze: the target will be able to add the collection's filter to this image set
        (seccomp_precheck). CriuImageError (an MtdError) when not."""
        if not pid:
            raise MtdError('The engine names no process of container %s, so its threads cannot be checked for the '
                           'seccomp filter on arrival.' % self.p['container'])
        try:
            version = criu.version()
        except CriuError as exc:
            raise MtdError('The CRIU version of this host cannot be read, so the seccomp filter cannot be promised on '
                           'arrival: %s' % exc)
        self.result['seccomp_precheck'] = filter_precheck(version, task_statuses(pid))

    def usable_criu(self):
        try:
            path = find_criu(self.module, self.p['criu_path'])
        except CriuError as exc:
            raise MtdError('CRIU was not found on this host: %s' % exc)
        if not path:
            raise MtdError('CRIU was not found on this host (install CRIU >= 4.1, or set criu_path).')
        criu = Criu(path)
        try:
            ok, out = criu.check()
        except CriuError as exc:
            raise MtdError('CRIU is not usable on this host: %s' % exc)
        if not ok:
            raise MtdError('"criu check" fails on this host, so no checkpoint can be made: %s' % out)
        return criu

    def precopy_status(self, criu, lazy=False, paused=False):
        try:
            dirty = criu.feature('mem_dirty_track')
        except CriuError:
            dirty = False
        used, reason = precopy_plan(self.p['precopy']['mode'], dirty, lazy, paused)
        status = {'available': dirty, 'used': used, 'reason': reason, 'mode': self.p['precopy']['mode']}
        if used:
            status['rule'] = self.p['precopy']['rule']
        return status

    def precopy_rounds(self, plan):
        """Pre-dump rounds while the container runs (CRIU copies the memory, each round only what changed
        since the one before: its ``parent``), the rule deciding after each round. A failed round ends
        pre-copy: the rounds are removed and the single dump follows, as without it (with the reason)."""
        bundle = plan['bundle']
        policy, options = self.rule
        runc = Runc(plan['runc'], plan['runc_root'], plan['criu'].path, owner='mtd.containers.checkpoint')
        rounds: List[Dict[str, Any]] = []
        decisions: List[Dict[str, Any]] = []
        status = self.result['precopy']
        started = time.time()
        try:
            make_private_dir(os.path.join(bundle, PRECOPY_DIR))
            while True:
                index = len(rounds) + 1
                rounds.append(self.one_dump(runc, plan, round_dir(index), '../%d' % (index - 1) if index > 1 else None,
                                            pre_dump=True))
                decision = policy([{'duration': item['duration'], 'pages': item['pages']} for item in rounds], options)
                decisions.append(decision)
                if not decision.get('continue'):
                    break
        except (CriuError, CriuImageError, OSError) as exc:
            remove_tree(os.path.join(bundle, PRECOPY_DIR))
            status.update(used=False, reason='pre-dump round %d failed (%s), so the single stop-and-copy dump was '
                                             'used' % (len(rounds) + 1, exc), rounds=[])
            self.module.warn('Pre-copy was given up: %s' % status['reason'])
            return
        finally:
            self.timings['precopy'] = round(time.time() - started, 4)
        plan['rounds'] = len(rounds)
        status['stop'] = {'code': decisions[-1].get('code'), 'reason': decisions[-1].get('reason')}
        self._precopy = (rounds, decisions)

    def one_dump(self, runc, plan, rel, parent, pre_dump=False):
        """One CRIU dump (or pre-dump) of the container into ``bundle/rel``: its pages written (CRIU's
        stats-dump), its duration and how long CRIU held the tasks frozen."""
        bundle = plan['bundle']
        images = os.path.join(bundle, rel)
        work = os.path.join(bundle, 'work')
        make_private_dir(images)
        remove_tree(work)
        make_private_dir(work)
        started = time.time()
        runc.checkpoint(plan['cid'], images, work, timeout=self.p['dump_timeout'], parent=parent, pre_dump=pre_dump)
        duration = time.time() - started
        try:
            stats = read_dump_stats(work, images) or {}
        except CriuImageError as exc:
            if pre_dump:
                raise
            self.module.warn('The statistics of the dump could not be read: %s' % exc)
            stats = {}
        if pre_dump:
            remove_tree(work)
            if 'pages_written' not in stats:
                raise CriuError('CRIU wrote no statistics (stats-dump) for the round, so its dirty pages are unknown')
        return {'pages': stats.get('pages_written'), 'pages_scanned': stats.get('pages_scanned'),
                'pages_skipped_parent': stats.get('pages_skipped_parent'),
                'frozen_ms': round(stats['frozen_time_us'] / 1000.0, 3) if 'frozen_time_us' in stats else None,
                'duration': round(duration, 4)}

    def open_channel(self, bundle):
        """The receiver must be there, and prove itself (and take us), before anything is frozen."""
        opts = self.p['send']
        with self.phase('connect'):
            try:
                tls = None
                if opts['encryption'] == 'tls':
                    tls = load_identity(bundle + TLS_DIR_SUFFIX, opts['peer_cert'], 'checkpoint with state=prepared')
                else:
                    self.module.warn(PLAINTEXT_WARNING)
                return connect(opts['address'], opts['port'], opts['token'], connect_timeout=opts['connect_timeout'],
                               io_timeout=self.p['timeout'], tls=tls, auth_timeout=opts['auth_timeout'])
            except TransferError as exc:
                raise MtdError('No checkpoint was made, the container was not frozen: %s.' % exc)

    def prepare(self, plan, undo):
        bundle = plan['bundle']
        try:
            if self.bundle_parent(self.client.info(), create=True) != os.path.dirname(bundle):
                raise MtdError('the place for bundles changed since the preflight (%s)'
                               % self.result['bundle_location']['reason'])
            remove_tree(bundle)
            make_private_dir(bundle)
            if self.p['lazy_pages']:
                undo.lazy_dir = self.prepare_lazy(bundle, plan['captured']['name'])
        except (OSError, MtdError) as exc:
            raise MtdError('Cannot create the checkpoint directory %s: %s' % (bundle, exc))

    def freeze(self, plan, undo):
        with self.phase('freeze'):
            if not plan['paused']:
                try:
                    self.client.post('/containers/%s/pause' % plan['cid'])
                except DockerError as exc:
                    raise MtdError('Cannot freeze %s: %s' % (plan['captured']['name'], exc))
                undo.frozen = True
        self.result['frozen_at'] = None if plan['paused'] else round(time.time(), 4)

    def dump(self, plan, lazy_dir):
        bundle = plan['bundle']
        images = os.path.join(bundle, CRIU_DIR)
        runc = Runc(plan['runc'], plan['runc_root'], plan['criu'].path, owner='mtd.containers.checkpoint')
        with self.phase('dump'):
            make_private_dir(images)
            if lazy_dir:
                self.dump_lazy(runc, plan, images, lazy_dir)
                return
            work = os.path.join(bundle, 'work')
            rounds = plan.get('rounds') or 0
            final = self.one_dump(runc, plan, CRIU_DIR, '../%s' % round_dir(rounds) if rounds else None)
            status = self.result['precopy']
            status['final'] = final
            if rounds:
                status['rounds'] = round_entries(self._precopy[0], self._precopy[1], dict(final, dir=CRIU_DIR))
            # dump.log stays out of the bundle's images but is kept for the record
            log = os.path.join(work, 'dump.log')
            if os.path.exists(log):
                os.rename(log, os.path.join(bundle, 'dump.log'))
            remove_tree(work)

    def package(self, plan):
        """The writable layer and the volumes into the bundle, then the manifest (with send: a job that
        writes it from the hashes the stream took of the bytes it sent, sent last)."""
        bundle, captured = plan['bundle'], plan['captured']
        with self.phase('rootfs'):
            upper = ((self.inspected.get('GraphDriver') or {}).get('Data') or {}).get('UpperDir')
            pack_rootfs(bundle, upper, captured['name'])
        with self.phase('volumes'):
            pack_volumes(bundle, named_volumes(captured))
        restrict_tree(bundle)
        extra = {'method': 'runc', 'checkpoint': plan['name'], 'precopy': self.result['precopy']}
        lazy = self.p['lazy_pages']
        if lazy:
            extra['lazy_pages'] = {'address': lazy['connect_address'] or lazy['address'], 'port': lazy['port'],
                                   'source_cert': LAZY_CERT}
        if self.p['send']:
            return ManifestJob(bundle, captured, extra, digest=self.p['send']['hashes'])
        with self.phase('manifest'):
            self.manifest = write_manifest(bundle, captured, extra=extra)
        return None

    def send(self, bundle, channel, manifest_job):
        opts = self.p['send']
        with self.phase('send'):
            try:
                compression, choice = choose_compression(bundle, opts['compression'])
                self.result['transfer'] = send_bundle(bundle, opts['address'], opts['port'], opts['token'],
                                                      compression=compression, connect_timeout=opts['connect_timeout'],
                                                      io_timeout=self.p['timeout'], late=(MANIFEST, manifest_job.wait),
                                                      channel=channel, hashes=manifest_job.hashes,
                                                      digest=manifest_job.digest)
            except BaseException as exc:
                # the bundle (process memory) goes whatever failed; the frozen container is the rollback's
                manifest_job.abandon()
                remove_tree(bundle)
                self.result['bundle_removed'] = True
                if isinstance(exc, TransferError):
                    raise MtdError('Sending the checkpoint failed: %s; the bundle was removed.' % exc)
                raise
        self.result['transfer']['compression_choice'] = choice
        self.manifest = manifest_job.manifest
        self.timings['manifest'] = manifest_job.seconds
        remove_tree(bundle + TLS_DIR_SUFFIX)   # the identity served this one stream
        if not opts['keep']:
            remove_tree(bundle)
            self.result['bundle_removed'] = True

    def finish(self, plan, started):
        resume = self.p['leave_running'] and not plan['paused']
        if resume:
            with self.phase('resume'):
                self.resume(plan['cid'])
        self.timings['total'] = round(time.time() - started, 4)
        self.manifest['timings'] = self.timings
        self.result.update(self.summary(self.manifest, 'running' if resume else 'paused', method='runc'))
        self.result['timings'] = self.timings

    # -- post-copy ---------------------------------------------------------------------------------

    def prepare_lazy(self, bundle, name):
        """The source's TLS identity and the target's pinned certificate, beside the bundle (which is
        deleted after the send, while the page server still runs)."""
        lazy_dir = bundle + LAZY_DIR_SUFFIX
        remove_tree(lazy_dir)
        make_private_dir(lazy_dir)
        make_tls_identity(os.path.join(lazy_dir, 'tls'), 'mtd-source-' + name)
        atomic_write(os.path.join(lazy_dir, 'tls', 'peer.pem'), self.p['lazy_pages']['peer_cert'], mode=0o600,
                     fsync=False)
        make_private_dir(os.path.join(lazy_dir, 'work'))
        return lazy_dir

    def dump_lazy(self, runc, plan, images, lazy_dir):
        """runc checkpoint --lazy-pages: returns once the page server is ready; it keeps running."""
        opts = self.p['lazy_pages']
        tls = os.path.join(lazy_dir, 'tls')
        proc = runc.checkpoint_lazy(
            plan['cid'], images, os.path.join(lazy_dir, 'work'), opts['address'], opts['port'],
            lazy_tls_options(os.path.join(tls, 'peer.pem'), os.path.join(tls, 'cert.pem'), os.path.join(tls, 'key.pem')),
            ready_timeout=opts['ready_timeout'], log_path=os.path.join(lazy_dir, 'runc.log'),
            pid_path=os.path.join(lazy_dir, 'runc.pid'), timeout=self.p['dump_timeout'])
        with open(os.path.join(tls, 'cert.pem'), 'rb') as handle:
            atomic_write(os.path.join(plan['bundle'], LAZY_CERT), handle.read(), mode=0o600, fsync=False)
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
        c = manifest.get('container') or {}
        return {
            'container': {'id': c.get('id'), 'name': c.get('name'), 'image_digest_ref': c.get('image_digest_ref'),
                          'state': after},
            'files': len(manifest.get('files') or []),
            'bytes': part_bytes(manifest),
            'precopy': manifest.get('precopy'),
            'method': method,
        }

    # -- state=prepared and state=absent -----------------------------------------------------------

    def run_absent(self):
        info = self.client.info()
        data_root = info.get('DockerRootDir') or '/var/lib/docker'
        name = self.p['name']
        if not name:
            try:
                name = 'mtd-' + self.client.inspect_container(self.p['container'])['Id'][:12]
            except DockerError:
                raise MtdError('Give name: the container %r is gone, so the default name cannot be derived.'
                               % self.p['container'])
        check_name(name, 'Checkpoint name')
        bundles = [os.path.join(parent, name) for parent in self.absent_parents(data_root)]
        present = [b for b in bundles if any(os.path.lexists(p) for p in (b, b + LAZY_DIR_SUFFIX, b + TLS_DIR_SUFFIX))]
        self.result['bundle'] = (present or bundles or [os.path.join(default_dest(data_root), name)])[0]
        self.result['changed'] = bool(present)
        if self.mod.check_mode:
            return
        for bundle in present:
            lazy_dir = bundle + LAZY_DIR_SUFFIX
            if os.path.isdir(lazy_dir) and not os.path.islink(lazy_dir):
                try:
                    inspect = self.client.inspect_container(self.p['container'])
                except DockerError:
                    inspect = {}
                self.result['page_server'] = self.end_page_server(lazy_dir, inspect)
            remove_tree(lazy_dir)
            remove_tree(bundle)
            remove_tree(bundle + TLS_DIR_SUFFIX)

    def absent_parents(self, data_root):
        """Where the bundle to delete can be: ``dest`` (refused when unsafe), else every default place that is
        safe to look into (another user's directory or link there never held a bundle of ours: it is skipped,
        never followed)."""
        if self.p['dest']:
            check_given_dir(self.p['dest'], create=False)
            return [self.p['dest']]
        parents = []
        for parent in default_dests(data_root):
            problem = state_dir_problem(parent)
            if problem:
                self.module.warn('Skipped a default place for bundles: %s.' % problem)
            else:
                parents.append(parent)
        return parents

    def run_prepared(self):
        """This host's TLS identity for the stream of this checkpoint (made once; its key stays here), in
        ``<bundle>.tls`` where state=present will look for it. With ``capture``, the checks and the capture
        of state=present's check mode come first (a refused container gets no identity)."""
        if self.p['capture']:
            self.preflight()
            self.result['changed'] = False
        inspect = self.inspected or self.inspect()   # the container must exist here
        name = check_name(self.p['name'] or 'mtd-' + inspect['Id'][:12], 'Checkpoint name')
        bundle = os.path.join(self.bundle_parent(self.client.info(), create=not self.mod.check_mode), name)
        self.result['bundle'] = bundle
        tls = bundle + TLS_DIR_SUFFIX
        try:
            pem, made = ensure_identity(tls, 'mtd-source-' + name, check_mode=self.mod.check_mode)
        except (MtdError, OSError) as exc:
            raise MtdError('Cannot make the TLS identity of this checkpoint in %s: %s' % (tls, exc))
        self.result['changed'] = made
        self.result['transfer_cert'] = pem


def run(mod) -> Optional[Dict[str, Any]]:
    worker = Checkpointer(mod)
    if mod.params['state'] == 'absent':
        worker.run_absent()
    elif mod.params['state'] == 'prepared':
        worker.run_prepared()
    else:
        worker.run_present()
    return None


def main():
    run_module(run, ARGUMENT_SPEC, docker=True, required_by=REQUIRED_BY)


if __name__ == '__main__':
    main()
