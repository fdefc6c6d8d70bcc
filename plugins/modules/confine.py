#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: confine
short_description: Confine a process or a Docker container with cgroup limits and a seccomp filter it cannot undo
version_added: 0.1.0
description:
  - Puts cgroup limits (memory, memory+swap, CPU quota and weight, number of tasks) on a process tree or a
    Docker container, and a seccomp filter that denies the whole mount family, so that even a root process
    with C(CAP_SYS_ADMIN) cannot mount a cgroup filesystem and raise its own limits.
  - O(mode=process) installs a small launcher on the host (see O(launcher_dir)) and starts O(command) with it.
    A command that would run as root (no O(user), or O(user) resolving to uid 0) is B(refused) unless
    O(allow_root=true); the refusal happens before anything is created or installed, in check mode too.
    The launcher creates the cgroup level C(<cgroup_parent>/<name>) (cgroup v1 - one directory per controller
    hierarchy; cgroup v2 - with the controllers enabled in every parent's C(cgroup.subtree_control)), writes the
    limits, moves itself into the level, by default unshares its mount namespace and remounts every cgroup
    filesystem read-only, removes every capability but C(CHOWN), C(FOWNER), C(FSETID), C(KILL), C(SETGID),
    C(SETUID), C(SETPCAP), C(NET_BIND_SERVICE), C(AUDIT_WRITE) and C(IPC_LOCK) from its bounding, ambient and
    inheritable sets (so C(SYS_ADMIN), C(SYS_PTRACE), C(SYS_MODULE), C(SYS_RAWIO), C(SYS_CHROOT), C(SYS_BOOT),
    C(SYS_TIME), C(SYS_RESOURCE), C(SYS_NICE), C(DAC_OVERRIDE), C(DAC_READ_SEARCH), C(NET_ADMIN), C(NET_RAW),
    C(MKNOD), C(SETFCAP), C(BPF), C(PERFMON), C(CHECKPOINT_RESTORE), C(MAC_ADMIN) and every other one are gone
    for good), optionally switches to O(user), removes the same capabilities from its permitted and effective sets,
    sets C(no_new_privs), installs the seccomp filter with
    C(prctl) (C(PR_SET_SECCOMP), C(SECCOMP_MODE_FILTER); a classic BPF program built by the collection, no
    libseccomp),
    checks that the C(Seccomp) field of C(/proc/self/status) is V(2) and execs the command. The command and every descendant inherit the cgroup and the
    filter and cannot remove them.
  - O(mode=container) refuses, before anything is changed, a B(privileged) container (on every Docker version -
    it has every capability, every host device and a writable cgroup filesystem) and a container that shares the
    host's B(PID) or B(IPC) namespace (C(--pid host), C(--ipc host) - host processes, their C(/proc/<pid>/root)
    and the host's shared memory are reachable from it). Host networking (C(--network host)) is accepted - the
    migration modules support only C(none) and C(host) networking, and it opens no path to the cgroup files -
    as are the host UTS and user namespaces.
  - O(mode=container) confines an existing container. The limits go on a B(parent) cgroup C(<cgroup_parent>/<name>)
    that the module creates and writes (the container is created with it as C(--cgroup-parent), so its own cgroup
    is only a child and the parent is out of its reach); the container gets a private cgroup namespace (Engine API
    1.41 and later) and its cgroup filesystem stays read-only (Docker mounts it so for non-privileged containers);
    and it carries the collection's seccomp profile inline.
    When the container does not have this configuration yet, it is recreated with the same configuration (its
    own image, C(Config), C(HostConfig), networks, named and anonymous volumes) and its data (the files added
    or changed in its writable layer are copied into the new container); it is started again when it was
    running. After the start, the C(Seccomp) field of C(/proc/1/status) is read inside the container, must be V(2)
    (else the container is stopped and the module fails) and is reported.
  - When the container already carries this configuration, only the limits of the parent cgroup are compared
    and written, so a second run reports no change. The profile is compared by the sha256 of its canonical
    JSON, never by a path.
  - B(The filter policy, honestly.) seccomp sees system call numbers and register values, not the memory that
    arguments point to. The filesystem type argument of C(mount) is a pointer, so "deny only cgroup mounts" cannot be
    expressed by a filter. The policy therefore denies the B(whole mount family) with EPERM, as systemd's
    C(@mount) set does - C(mount), C(umount), C(umount2), C(pivot_root) and the new mount API C(fsopen),
    C(fsconfig), C(fsmount), C(fspick), C(move_mount), C(open_tree), C(open_tree_attr) and C(mount_setattr) -
    whatever the capabilities. No flag-based exception (such as "allow bind mounts") is offered, since it would
    be bypassable.
  - The container profile keeps the behaviour of Docker's default profile (an allow list, EPERM for everything
    else, capability-dependent groups, C(clone) namespace flags only with C(CAP_SYS_ADMIN), C(clone3) answering
    ENOSYS without it, a fixed set of C(personality) values; C(keyctl), C(io_uring) and kernel-wide calls stay
    denied; C(socket) for every family but C(AF_VSOCK); no C(userfaultfd), C(move_pages), C(migrate_pages),
    C(lsm_set_self_attr), C(lsm_get_self_attr) or C(lsm_list_modules)) with the mount family removed for every
    capability set. Stricter than Docker, C(init_module), C(finit_module), C(delete_module), C(iopl) and
    C(ioperm) are denied whatever capabilities the container was given (Docker allows them with
    C(CAP_SYS_MODULE) / C(CAP_SYS_RAWIO)).
  - The process filter is a deny list, since any command may run under it. It checks the audit architecture
    first (x86_64 with its i386 and x32 ABIs, aarch64 with its arm ABI; any other ABI kills the process), returns
    EPERM for the mount family, for C(setns) (entering another process' namespaces, such as the host's mount
    namespace through C(/proc/<pid>/ns/mnt)) and for C(unshare) and C(clone) with any C(CLONE_NEW*) flag (no
    new user, mount, PID, network, IPC, UTS or cgroup namespace), ENOSYS for C(clone3) (its flags are in memory;
    the C library falls back to C(clone)) and ENOSYS for system call numbers newer than its table (Linux 6.17),
    so a mount call added by a future kernel cannot slip through.
extends_documentation_fragment:
  - mtd.containers.docker
  - mtd.containers.attributes
  - mtd.containers.attributes.actiongroup_mtd
attributes:
  check_mode:
    support: full
    details:
      - Reads the engine, the container and the cgroup files and predicts the changes; creates, writes, starts
        and installs nothing.
  diff_mode:
    support: full
    details: The limits before and after, and for containers the cgroup parent, the profile hash and the cgroup
      namespace mode.
  idempotent:
    support: full
    details:
      - A confined container is not recreated again; only differing limits are written.
      - With O(mode=process) and O(detach=true), a level that still has processes is not started again (its
        limits are still brought to the requested values). O(detach=false) runs the command every time.
options:
  mode:
    description:
      - V(process) starts O(command) confined; V(container) confines the Docker container O(name).
      - The options marked O(mode=process) or O(mode=container) apply to that mode only; one given a value other
        than its default with the other mode fails the module.
    type: str
    choices: [process, container]
    required: true
  name:
    description:
      - V(container) - the name or id of the container.
      - V(process) - the name of the confinement; the cgroup level is C(<cgroup_parent>/<name>).
    type: str
    required: true
  state:
    description:
      - V(present) confines.
      - V(absent) is for O(mode=process) only - it kills every process of the level and removes the level.
    type: str
    choices: [present, absent]
    default: present
  limits:
    description:
      - The limits written to the cgroup level. Limits not given are not managed.
    type: dict
    default: {}
    suboptions:
      memory:
        description:
          - Memory limit - bytes or a size such as V(64m) or V(1g) (binary units), or V(max).
          - The kernel keeps whole pages; the value is rounded down to a page.
        type: raw
      memory_swap:
        description:
          - The limit of memory plus swap, like Docker's C(--memory-swap) - a size or V(max).
          - Defaults to O(limits.memory) (no swap beyond the memory limit).
          - On cgroup v1 it is C(memory.memsw.limit_in_bytes) (written before the memory limit when raising
            and after it when lowering, so that memsw is never below memory); it needs swap accounting. On
            cgroup v2 C(memory.swap.max) gets O(limits.memory_swap) minus O(limits.memory).
        type: raw
      cpus:
        description:
          - CPU bandwidth in CPUs (V(0.5) = half a CPU per period); V(0) means no limit.
        type: float
      cpu_period:
        description: The period of O(limits.cpus) in microseconds (1000..1000000).
        type: int
        default: 100000
      cpu_weight:
        description:
          - Relative CPU weight 1..10000 (cgroup v2 C(cpu.weight), default 100). On cgroup v1
            C(cpu.shares) = weight * 1024 / 100.
        type: int
      pids:
        description: The maximum number of tasks (processes and threads), or V(max).
        type: raw
  cgroup_parent:
    description:
      - The path, below the root of each cgroup hierarchy, under which the levels are created.
      - With O(mode=container) on an engine that uses the C(systemd) cgroup driver (cgroup v2), the level is the
        systemd slice made of O(cgroup_parent) and the level name, each part escaped like C(systemd-escape)
        does (C(mtd) and C(web-1) give C(mtd-web\x2d1.slice), at C(/mtd.slice/mtd-web\x2d1.slice)).
    type: str
    default: mtd
  cgroup_name:
    description:
      - The name of the level under O(cgroup_parent). Defaults to O(name) (for containers, the name without the
        leading C(/)).
    type: str
  cgroup_version:
    description:
      - V(auto) uses cgroup v1 when any of the memory, cpu or pids controllers is mounted as v1 (also on a hybrid
        host), else cgroup v2. V(1) or V(2) forces one; a controller that a limit needs but that is not available
        in that hierarchy fails the module.
      - With O(mode=container) it must match the engine's cgroup version.
    type: str
    choices: [auto, '1', '2']
    default: auto
  command:
    description:
      - O(mode=process) - the command and its arguments (no shell). Required with O(state=present).
    type: list
    elements: str
  detach:
    description:
      - O(mode=process) - V(true) starts the command in the background in a new session (stdin from
        C(/dev/null), output to O(output)) and returns its PID; V(false) waits for it and returns its exit code
        and output (the module fails when it is not 0).
    type: bool
    default: true
  output:
    description: O(mode=process) with O(detach=true) - a file that receives the command's output (appended).
    type: path
  chdir:
    description: O(mode=process) - the working directory of the command.
    type: path
  user:
    description:
      - O(mode=process) - run the command as this user (name or uid), after the cgroup and mount setup and
        before the filter. Required unless O(allow_root=true) (a user that resolves to uid 0 counts as root); an
        unknown user fails the module before anything is changed.
    type: str
  allow_root:
    description:
      - O(mode=process) - V(true) lets the command run as root (no O(user)). It then keeps only the small
        capability set listed above (no C(SYS_ADMIN), C(SYS_PTRACE), C(DAC_OVERRIDE)...), cannot enter or create
        namespaces and cannot read C(/proc/<pid>/root) of processes with more capabilities, and the module warns.
      - B(Not a sandbox for a hostile command) - uid 0 still owns most of the host's files (it can, for example,
        write a cron job that runs outside the confinement). Use it for trusted commands that need root; the
        limits then hold against accidents, not against an attacker.
      - V(false) (the default) refuses such a command with a clear message.
    type: bool
    default: false
  group:
    description: O(mode=process) - run the command with this group (name or gid; default the user's group).
    type: str
  readonly_cgroupfs:
    description:
      - O(mode=process) - run the command in a private mount namespace (a slave of the host's) in which every
        cgroup filesystem is remounted read-only. The filter then keeps it from remounting them.
    type: bool
    default: true
  launcher_dir:
    description:
      - O(mode=process) - where the launcher is installed (C(mtd-confine) and its two helper files). Files are
        only rewritten when their content differs.
    type: path
    default: /usr/local/libexec/mtd-confine
  stop_timeout:
    description: O(mode=container) - seconds Docker waits for the old container to stop before killing it.
    type: int
    default: 10
notes:
  - B(What the confinement does not do.) In process mode the command runs on the host, in the host's PID and
    network namespaces, with the host's files. As an unprivileged O(user) it cannot write the root-owned cgroup
    files, cannot enter the host's mount namespace (C(setns) is denied) nor reach C(/proc/<pid>/root) of other
    users' processes (no C(CAP_SYS_PTRACE)); it can still do whatever that user may do on the host, including
    signalling or tracing that user's other processes (use a dedicated user). As root (O(allow_root)) see that
    option. Confine a container for a stronger boundary.
  - Because the whole mount family is denied, a command that must mount (a container runtime such as C(runc)
    or C(dockerd), C(systemd-nspawn), FUSE file systems) does not work under the process filter, and a
    confined container cannot mount anything, even with C(CAP_SYS_ADMIN).
  - Privileged containers are refused on every Docker version (Docker before 26 even ignores seccomp profiles of
    privileged containers); recreate such a container with explicit capabilities (C(--cap-add)).
  - The module refuses containers that bind-mount the Docker, containerd or D-Bus sockets (or a directory that
    holds them, such as C(/run)), or the host's C(/sys/fs/cgroup); it never adds such a mount.
  - Recreating a container changes its id. The writable layer's added and modified files are copied with the
    Engine API's archive endpoints; deleted image files cannot be deleted that way and are listed in
    RV(layer.deleted_not_replayed). Volumes, named or anonymous, are reattached by name.
  - cgroup levels live in memory. After a reboot, Docker recreates the parent of a confined container without
    limits; run the module (or the C(mtd.containers.confine) role) again at boot.
  - With Docker's C(cgroupfs) driver the module writes the level's cgroup files itself. With the C(systemd)
    driver (cgroup v2 only; on cgroup v1 that driver is refused) the level is a slice unit - the container's
    C(CgroupParent) is the slice name, its scope is created below the slice - and the limits are the slice's
    unit properties (C(systemctl set-property), persistent, so they survive a reboot); systemd writes them to
    the cgroup files, which the module reads back and compares. systemd would overwrite limits written
    directly into the files of a slice it manages.
  - A limit below the current usage fails with the numbers (cgroup v1 memory - when the kernel cannot
    reclaim enough; cgroup v2 memory and pids - checked before writing, since v2 would reclaim or OOM-kill
    instead of failing).
requirements:
  - Linux with seccomp filter support, root on the managed host, Python 3.8+ (standard library only).
  - For O(mode=container), Docker Engine 20.10 or newer (Engine API 1.41) with seccomp support and the cgroupfs
    cgroup driver, or the systemd cgroup driver on cgroup v2 (then C(systemctl) on the host), reachable at
    O(docker_host) on the same host (the cgroup files are written or read locally).
seealso:
  - module: mtd.containers.host_facts
  - name: systemd.exec(5) SystemCallFilter @mount
    description: The mount set this policy follows.
    link: https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html#System%20Call%20Filtering
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Confine a container (recreated once with a cgroup parent and the seccomp profile)
  mtd.containers.confine:
    mode: container
    name: web-1
    limits:
      memory: 256m
      cpus: 0.5
      pids: 128
  register: confined

- name: Show that the filter is on
  ansible.builtin.debug:
    msg: "{{ confined.container.id[:12] }} runs with Seccomp {{ confined.seccomp.mode }}"

- name: Run a service confined, as an unprivileged user
  mtd.containers.confine:
    mode: process
    name: report-builder
    command: [/usr/local/bin/report-builder, --serve]
    user: reports
    output: /var/log/report-builder.log
    limits:
      memory: 512m
      pids: 64
  register: service

- name: Run a one-shot job confined and wait for it
  mtd.containers.confine:
    mode: process
    name: import-job
    command: [/usr/bin/python3, /opt/jobs/import.py]
    user: importer
    detach: false
    limits:
      memory: 1g
      cpus: 1.5

- name: Stop the confined service and remove its cgroup level
  mtd.containers.confine:
    mode: process
    name: report-builder
    state: absent
"""

RETURN = r"""
cgroup:
  description: The cgroup level of the confinement.
  returned: always
  type: dict
  contains:
    version:
      description: The cgroup version used, V(1) or V(2).
      type: int
      sample: 1
    path:
      description: The level, relative to the hierarchy roots (the container's C(CgroupParent) in container mode).
      type: str
      sample: /mtd/web-1
    directories:
      description: The level's directories, one per hierarchy on cgroup v1.
      type: list
      elements: str
      sample: [/sys/fs/cgroup/memory/mtd/web-1, /sys/fs/cgroup/cpu/mtd/web-1, /sys/fs/cgroup/pids/mtd/web-1]
    systemd_slice:
      description:
        - With O(mode=container) and Docker's systemd cgroup driver, the slice unit that holds the limits (the
          container's C(CgroupParent)); C(path) is then the slice's cgroup.
      type: str
      returned: when the engine uses the systemd cgroup driver
      sample: mtd-web.slice
limits:
  description:
    - The managed limits after the run (predicted in check mode) - C(memory) and C(memory_swap) in bytes or
      V(max), C(cpus) (V(0.0) = no limit) with C(cpu_period), C(cpu_weight), C(pids) (a number or V(max)).
  returned: when O(state=present)
  type: dict
  sample: {"memory": 268435456, "memory_swap": 268435456, "cpus": 0.5, "cpu_period": 100000, "pids": 128}
limits_before:
  description: The managed limits before the run; V(null) when the level did not exist.
  returned: when O(state=present)
  type: dict
  sample: {"memory": "max", "memory_swap": "max", "cpus": 0.0, "cpu_period": 100000, "pids": "max"}
seccomp:
  description: The filter.
  returned: when O(state=present)
  type: dict
  contains:
    mode:
      description:
        - The C(Seccomp) field of C(/proc/<pid>/status) of the confined process (container mode - PID 1 of the
          container, read inside it); V(2) means a filter is active. V(null) when nothing runs (check mode, a
          stopped container).
      type: int
      sample: 2
    filters:
      description: The C(Seccomp_filters) field (the number of stacked filters), when the kernel shows it.
      type: int
      sample: 1
    verified_by:
      description:
        - How RV(seccomp.mode) was read - V(exec) (C(cat /proc/1/status) inside the container), V(host_proc)
          (the host's C(/proc/<pid>/status), when the image has no C(cat)) or V(launcher).
      type: str
      sample: exec
    profile_sha256:
      description: Container mode - the sha256 of the canonical JSON of the profile.
      type: str
      sample: 6f1d0c3c0a9c2d1e4d4a4c9e0b7e3d6f9b3a0e2c1d5f7a9b8c6e4d2f0a1b3c5d
    program_sha256:
      description: Process mode - the sha256 of the BPF program.
      type: str
      sample: e81ee7de5502b48addc6c21967e245a29dc5c5318330fe4ddfe6f5e854c7c013
container:
  description: Container mode - the confined container.
  returned: when O(mode=container)
  type: dict
  sample:
    id: 4f1c0ffee0d1f1c0ffee0d1f1c0ffee0d1f1c0ffee0d1f1c0ffee0d1f1c0ffee
    name: web-1
    previous_id: 0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd
    recreated: true
    running: true
    cgroupns_mode: private
    cgroupfs_readonly: true
layer:
  description: Container mode, after a recreation - what was copied from the old container's writable layer.
  returned: when the container was recreated
  type: dict
  contains:
    copied:
      description: Added or modified paths copied into the new container (an added directory with its content).
      type: list
      elements: str
      sample: [/data/state.json, /probe]
    skipped_directories:
      description: Modified directories whose changed entries were copied one by one instead.
      type: list
      elements: str
      sample: [/data]
    deleted_not_replayed:
      description: Image files the old container had deleted; the archive API cannot delete them in the new one.
      type: list
      elements: str
      sample: [/bin/vi]
capabilities:
  description:
    - Process mode - the capability sets of the confined command right before the exec, as the launcher read them
      from C(/proc/self/status) (names without C(CAP_)); a dropped capability still present fails the launch.
  returned: when O(mode=process) and the command was started by this run
  type: dict
  contains:
    bounding:
      description: The bounding set (the most the command and its children can ever hold).
      type: list
      elements: str
      sample: [CHOWN, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, IPC_LOCK, AUDIT_WRITE]
    effective:
      description: The effective set (empty for an unprivileged O(user)).
      type: list
      elements: str
      sample: []
pid:
  description: Process mode - the PID of the confined command (the first one, when the level already ran).
  returned: when O(mode=process) and O(state=present)
  type: int
  sample: 4242
pids:
  description: Process mode - the PIDs in the level after the run (before it, with O(state=absent)).
  returned: when O(mode=process)
  type: list
  elements: int
  sample: [4242, 4250]
readonly_mounts:
  description:
    - Process mode - the mount points the launcher remounted read-only in the command's private mount namespace
      (every cgroup and cgroup2 mount, and everything at or below C(/sys/fs/cgroup)), so that the confined
      command cannot write its limits. Empty when O(readonly_cgroupfs=false).
  returned: when O(mode=process) and O(state=present)
  type: list
  elements: str
  sample: ["/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/pids"]
started:
  description: Process mode - whether the command was started by this run.
  returned: when O(mode=process) and O(state=present)
  type: bool
  sample: true
launcher:
  description: Process mode - the launcher's path on the host.
  returned: when O(mode=process) and O(state=present)
  type: str
  sample: /usr/local/libexec/mtd-confine/mtd-confine
rc:
  description: Process mode with O(detach=false) - the exit status of the command (negative - killed by that signal).
  returned: when O(detach=false)
  type: int
  sample: 0
stdout:
  description: Process mode with O(detach=false) - the command's standard output.
  returned: when O(detach=false)
  type: str
stderr:
  description: Process mode with O(detach=false) - the command's standard error.
  returned: when O(detach=false)
  type: str
"""

import base64
import json
import os
import stat
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.mtd.containers.plugins.module_utils import _cgroup as cgroup_lib
from ansible_collections.mtd.containers.plugins.module_utils import _common as common_lib
from ansible_collections.mtd.containers.plugins.module_utils import _confine_launcher as launcher_lib
from ansible_collections.mtd.containers.plugins.module_utils import _seccomp as seccomp_lib
from ansible_collections.mtd.containers.plugins.module_utils._cmd import CmdRunner
from ansible_collections.mtd.containers.plugins.module_utils._systemd import SliceLevel, uses_systemd_driver
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._confine import (
    CGROUPNS_MIN_API,
    CHANGE_ADDED,
    LIMITS_SPEC,
    api_at_least,
    confine_host_config,
    confinement_differences,
    container_refusal,
    current_confinement,
    desired_confinement,
    limits_from_params,
    mount_destinations,
    plan_layer_copy,
    recognised_differences,
)
from ansible_collections.mtd.containers.plugins.module_utils._container import (
    ReplaceError,
    container_name,
    recreate_body,
    replace_container,
    same_image_reference,
    wait_running,
)
from ansible_collections.mtd.containers.plugins.module_utils._docker import DockerError
from ansible_collections.mtd.containers.plugins.module_utils._files import atomic_write
from ansible_collections.mtd.containers.plugins.module_utils._module import MtdModule, run_module

ARGUMENT_SPEC: Dict[str, Any] = dict(
    mode=dict(type='str', required=True, choices=['process', 'container']),
    name=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    limits=dict(type='dict', default={}, options=LIMITS_SPEC),
    cgroup_parent=dict(type='str', default='mtd'),
    cgroup_name=dict(type='str'),
    cgroup_version=dict(type='str', default='auto', choices=['auto', '1', '2']),
    # mode=process
    command=dict(type='list', elements='str'),
    detach=dict(type='bool', default=True),
    output=dict(type='path'),
    chdir=dict(type='path'),
    user=dict(type='str'),
    group=dict(type='str'),
    readonly_cgroupfs=dict(type='bool', default=True),
    allow_root=dict(type='bool', default=False),
    launcher_dir=dict(type='path', default='/usr/local/libexec/mtd-confine'),
    # mode=container (and the connection options of the docker doc fragment)
    stop_timeout=dict(type='int', default=10),
)

# What each mode accepts: its states, the options a state requires, and the options that only it takes
# (given with the other mode - set to anything but their default - they fail the module).
MODES: Dict[str, Dict[str, Any]] = {
    'process': {
        'states': ('present', 'absent'),
        'required': {'present': ('command',)},
        'options': ('command', 'detach', 'output', 'chdir', 'user', 'group', 'readonly_cgroupfs', 'allow_root',
                    'launcher_dir'),
    },
    'container': {
        'states': ('present',),
        'required': {},
        'options': ('stop_timeout',),
    },
}

LAUNCHER_FILES = (
    # (installed name, module_utils module, mode)
    ('_common.py', common_lib, 0o644),
    ('_cgroup.py', cgroup_lib, 0o644),
    ('_seccomp.py', seccomp_lib, 0o644),
    ('mtd-confine', launcher_lib, 0o755),
)
PROC = '/proc'
# The name of the original container while its confined copy takes over.
PARK_NAME = '%s_mtd_replaced_%s'
# Seconds a recreated container gets to reach the running state.
START_TIMEOUT = 10.0


def check_mode_options(params: Dict[str, Any], modes: Optional[Dict[str, Dict[str, Any]]] = None,
                       spec: Optional[Dict[str, Any]] = None) -> None:
    """Raise MtdError when ``params`` do not fit the spec of their mode (``modes``, default MODES)."""
    modes = MODES if modes is None else modes
    spec = ARGUMENT_SPEC if spec is None else spec
    mode, state = params['mode'], params['state']
    rules = modes[mode]
    if state not in rules['states']:
        able = [name for name, other in modes.items() if state in other['states']]
        raise MtdError('state=%s is only supported with mode=%s.' % (state, ' or '.join(able)))
    for option in rules['required'].get(state, ()):
        if not params.get(option):
            raise MtdError('%s is required with mode=%s and state=%s.' % (option, mode, state))
    for other, other_rules in modes.items():
        if other == mode:
            continue
        given = [o for o in other_rules['options'] if params.get(o) != spec[o].get('default')]
        if len(given) == 1:
            raise MtdError('%s only applies to mode=%s; leave it out with mode=%s.' % (given[0], other, mode))
        if given:
            raise MtdError('%s and %s only apply to mode=%s; leave them out with mode=%s.'
                           % (', '.join(given[:-1]), given[-1], other, mode))


def module_source(module_obj: Any) -> str:
    """The source text of a module_utils module, also when it is imported from the AnsiballZ zip."""
    loader = getattr(module_obj, '__loader__', None)
    if loader is not None and hasattr(loader, 'get_source'):
        try:
            source = loader.get_source(module_obj.__name__)
        except (ImportError, OSError):
            source = None
        if source:
            return to_text(source)
    with open(module_obj.__file__, 'rb') as handle:
        return to_text(handle.read())


def launcher_files(interpreter: str) -> Dict[str, Tuple[str, int]]:
    """``{name: (content, mode)}`` of the launcher directory; the launcher gets ``interpreter`` as shebang."""
    files = {}
    for name, module_obj, mode in LAUNCHER_FILES:
        content = module_source(module_obj)
        if name == 'mtd-confine':
            content = '#!%s\n%s' % (interpreter, content)
        files[name] = (content, mode)
    return files


def project(limits: Optional[Dict[str, Any]], keys: List[str]) -> Optional[Dict[str, Any]]:
    """Only ``keys`` of normalised limits, shown the user's way."""
    if limits is None:
        return None
    return cgroup_lib.limits_for_display(dict((k, limits.get(k)) for k in keys if k in limits))


class Confiner:
    """Common part of both modes: the cgroup level and its limits."""

    def __init__(self, mod: MtdModule) -> None:
        self.mod = mod
        self.params = mod.params
        self.result = mod.result
        self.diff: Dict[str, Dict[str, Any]] = {'before': {}, 'after': {}}
        # CgroupError is an MtdError: a bad limit or a missing hierarchy fails the module as it is
        self.limits = limits_from_params(self.params['limits'])
        self.layout = cgroup_lib.Layout.from_host(self.params['cgroup_version'])

    def level(self, name: str) -> cgroup_lib.Cgroup:
        return cgroup_lib.Cgroup(self.layout, '%s/%s' % (self.params['cgroup_parent'] or '', name))

    def managed_keys(self) -> List[str]:
        return [k for k in cgroup_lib.LIMIT_KEYS if k in self.limits]

    def plan_limits(self, cgroup: cgroup_lib.Cgroup) -> Tuple[Optional[Dict[str, Any]], Any]:
        """(before, writes) of the managed limits; fails on a missing controller."""
        cgroup.check_controllers(self.limits)
        before = cgroup.read_limits() if cgroup.exists() else None
        writes = cgroup.plan(self.limits, before)
        after = dict(before or cgroup_lib.Cgroup.fresh_defaults())
        after.update(self.limits)
        self.result['cgroup'] = {
            'version': self.layout.version,
            'path': '/' + cgroup.path,
            'directories': cgroup.directories(),
        }
        self.result['limits_before'] = project(before, self.managed_keys())
        self.result['limits'] = project(after, self.managed_keys())
        self.diff['before']['cgroup'] = {'path': '/' + cgroup.path, 'exists': before is not None,
                                         'limits': self.result['limits_before']}
        self.diff['after']['cgroup'] = {'path': '/' + cgroup.path, 'exists': True, 'limits': self.result['limits']}
        return before, writes

    def apply_limits(self, cgroup: cgroup_lib.Cgroup, writes: Any) -> None:
        created = cgroup.create(self.limits)
        cgroup.apply(writes)
        if created or writes:
            self.result['changed'] = True
        self.result['limits'] = project(cgroup.read_limits(), self.managed_keys())
        self.diff['after']['cgroup']['limits'] = self.result['limits']

    def finish(self) -> None:
        self.mod.set_diff(self.diff['before'], self.diff['after'])


# ---------------------------------------------------------------------------------------------
# mode=process

class ProcessConfiner(Confiner):

    def __init__(self, mod: MtdModule) -> None:
        super().__init__(mod)
        self.cgroup = self.level(self.params['cgroup_name'] or self.params['name'])
        self.launcher_dir = self.params['launcher_dir']
        self.launcher = os.path.join(self.launcher_dir, 'mtd-confine')

    def run(self) -> None:
        if self.params['state'] == 'absent':
            self.run_absent()
        else:
            self.run_present()
        self.finish()

    def refuse_root(self) -> None:
        """Fail, before anything is changed, when the command would run as root without allow_root."""
        uid = launcher_lib.target_uid(self.params['user'], os.geteuid())
        refusal = launcher_lib.root_refusal(uid, self.params['allow_root'])
        if refusal:
            raise MtdError(refusal)
        if uid == 0:
            self.mod.warn('The command %s runs as root (allow_root); it keeps only the capabilities %s and the '
                          'filter denies setns and new namespaces, but uid 0 still owns the host\'s files: this is '
                          'not a sandbox for a hostile command.'
                          % (self.params['command'][0], ', '.join(launcher_lib.KEPT_CAPABILITIES)))

    def run_present(self) -> None:
        self.refuse_root()
        before, writes = self.plan_limits(self.cgroup)
        pids = self.cgroup.procs() if before is not None else []
        running = bool(pids) and self.params['detach']
        install = self.launcher_changes()
        self.result.update(launcher=self.launcher, started=not running, pids=pids, pid=pids[0] if pids else None)
        self.diff['before']['running'] = bool(pids)
        self.diff['after']['running'] = True
        if self.mod.check_mode:
            self.result['changed'] = bool(install or writes or before is None or not running)
            self.result['seccomp'] = {'mode': None, 'filters': None, 'verified_by': None,
                                      'program_sha256': seccomp_lib.program_digest(seccomp_lib.process_filter())}
            return
        if install:
            self.install_launcher(install)
        self.apply_limits(self.cgroup, writes)
        if running:
            self.result['seccomp'] = self.read_process_seccomp(pids[0])
            return
        failure = self.start()
        if failure:
            self.finish()
            raise MtdError(failure)

    # -- launcher ------------------------------------------------------------------------------

    def launcher_changes(self) -> Dict[str, Tuple[str, int]]:
        """``{name: (content, mode)}`` of the launcher files whose content or mode differs."""
        changes = {}
        for name, (content, mode) in launcher_files(sys.executable).items():
            path = os.path.join(self.launcher_dir, name)
            try:
                with open(path, 'rb') as handle:
                    current = to_text(handle.read(), errors='surrogate_or_strict')
                current_mode = stat.S_IMODE(os.stat(path).st_mode)
            except (IOError, OSError, UnicodeError):
                current, current_mode = None, None
            if current != content or current_mode != mode:
                changes[name] = (content, mode)
        return changes

    def install_launcher(self, files: Dict[str, Tuple[str, int]]) -> None:
        try:
            os.makedirs(self.launcher_dir, 0o755)
        except OSError:
            if not os.path.isdir(self.launcher_dir):
                raise MtdError('Cannot create the launcher directory %s.' % self.launcher_dir)
        for name, (content, mode) in files.items():
            path = os.path.join(self.launcher_dir, name)
            try:
                atomic_write(path, content, mode=mode)
            except (IOError, OSError) as exc:
                raise MtdError('Cannot install the launcher file %s: %s.' % (path, to_text(exc)))
        self.result['changed'] = True

    # -- starting ------------------------------------------------------------------------------

    def spec(self) -> Dict[str, Any]:
        return {
            'cgroup': self.cgroup.path,
            'cgroup_version': str(self.layout.version),
            'limits': self.limits,
            'readonly_cgroupfs': self.params['readonly_cgroupfs'],
            'allow_root': self.params['allow_root'],
            'user': self.params['user'],
            'group': self.params['group'],
            'chdir': self.params['chdir'],
            'output': self.params['output'],
        }

    def launch(self) -> Tuple[int, str, str, Optional[Dict[str, Any]]]:
        """Run the launcher; (rc, stdout, stderr, the status it wrote or None)."""
        status_file = os.path.join(self.mod.module.tmpdir, 'mtd-confine-status.json')
        args = [self.launcher, '--spec-json', json.dumps(self.spec()), '--status-file', status_file]
        if self.params['detach']:
            args.append('--detach')
        args.append('--')
        args.extend(self.params['command'])
        rc, out, err = CmdRunner(sys.executable).run(args)
        self.result['changed'] = True
        try:
            with open(status_file) as handle:
                status = json.load(handle)
        except (IOError, OSError, ValueError):
            status = None
        return rc, out, err, status

    def start(self) -> Optional[str]:
        """Start the command confined; the failure message when it ran (detach=false) and failed."""
        rc, out, err, status = self.launch()
        if status is None or not status.get('ok'):
            message = (status or {}).get('error') or (err.strip() or 'the launcher gave no status (rc %s)' % rc)
            raise MtdError('The launcher could not start %s confined: %s' % (self.params['command'][0], message),
                           rc=rc, stderr=err)
        self.result['seccomp'] = {'mode': status['seccomp']['mode'], 'filters': status['seccomp']['filters'],
                                  'verified_by': 'launcher', 'program_sha256': status['seccomp']['program_sha256']}
        self.result['readonly_mounts'] = status.get('readonly_mounts', [])
        self.result['capabilities'] = status.get('capabilities')
        self.result['pid'] = status['pid']
        if self.params['detach']:
            observed = self.read_process_seccomp(status['pid'])
            if observed['mode'] is not None:
                self.result['seccomp'].update(mode=observed['mode'], filters=observed['filters'],
                                              verified_by='host_proc')
            self.result['pids'] = self.cgroup.procs()
            return None
        self.result.update(rc=rc, stdout=out, stderr=err, pids=self.cgroup.procs())
        if rc == 0:
            return None
        return ('The confined command %s exited with %s.'
                % (self.params['command'][0], 'signal %d' % -rc if rc < 0 else 'status %d' % rc))

    def read_process_seccomp(self, pid: int) -> Dict[str, Any]:
        try:
            with open(os.path.join(PROC, str(pid), 'status')) as handle:
                found: Dict[str, Any] = dict(seccomp_lib.parse_status_seccomp(handle.read()))
        except (IOError, OSError, ValueError):
            return {'mode': None, 'filters': None, 'verified_by': None}
        found['verified_by'] = 'host_proc'
        return found

    # -- state=absent --------------------------------------------------------------------------

    def run_absent(self) -> None:
        exists = self.cgroup.exists() or any(os.path.isdir(d) for d in self.cgroup.directories())
        self.result['cgroup'] = {'version': self.layout.version, 'path': '/' + self.cgroup.path,
                                 'directories': self.cgroup.directories()}
        self.result['pids'] = self.cgroup.procs() if exists else []
        self.diff['before'] = {'cgroup': {'path': '/' + self.cgroup.path, 'exists': exists}}
        self.diff['after'] = {'cgroup': {'path': '/' + self.cgroup.path, 'exists': False}}
        if not exists:
            return
        self.result['changed'] = True
        if not self.mod.check_mode:
            self.cgroup.remove()


# ---------------------------------------------------------------------------------------------
# mode=container

class ContainerConfiner(Confiner):

    def __init__(self, mod: MtdModule) -> None:
        super().__init__(mod)
        self.client = mod.docker
        # Docker's systemd cgroup driver: the level is this slice (None with the cgroupfs driver).
        self.slice_level: Optional[SliceLevel] = None

    @property
    def slice(self) -> Optional[str]:
        """The slice unit of the level under the systemd driver, else None."""
        return self.slice_level.unit if self.slice_level else None

    def engine_socket(self) -> Optional[str]:
        host = self.client.docker_host
        if host.startswith('unix://'):
            return host[len('unix://'):]
        return host if host.startswith('/') else None

    # -- steps ---------------------------------------------------------------------------------

    def find(self) -> Dict[str, Any]:
        name = self.params['name']
        try:
            return self.client.inspect_container(name)
        except DockerError as exc:
            if exc.status != 404:
                raise
        raise MtdError('There is no container %s on the Docker engine at %s; create it first, then confine it.'
                       % (name, self.client.docker_host))

    def preflight(self, inspect: Dict[str, Any], version: Dict[str, Any], info: Dict[str, Any]) -> None:
        refusal = container_refusal(inspect, version.get('Version'), info, self.limits, self.engine_socket(),
                                    self.layout.version)
        if refusal:
            raise MtdError(refusal[0], **refusal[1])

    def check_version_match(self, info: Dict[str, Any]) -> None:
        engine_version = str(info.get('CgroupVersion') or '')
        if engine_version in ('1', '2') and int(engine_version) != self.layout.version:
            raise MtdError('The Docker engine uses cgroup v%s but cgroup v%d was selected (cgroup_version=%s); the '
                           'limits must be on the hierarchy the engine uses.'
                           % (engine_version, self.layout.version, self.params['cgroup_version']))

    def plan_container(self, inspect: Dict[str, Any], cgroup: cgroup_lib.Cgroup) -> Tuple[Dict[str, Any], bool, List[str]]:
        """(desired confinement, cgroupns, differences); fills the first result and diff entries."""
        cgroupns = api_at_least(self.client.api_version, CGROUPNS_MIN_API) and os.path.exists('/proc/self/ns/cgroup')
        desired = desired_confinement(self.slice or '/' + cgroup.path, cgroupns)
        current = current_confinement(inspect)
        self.diff['before']['container'] = current
        self.diff['after']['container'] = desired
        self.result['container'] = {
            'id': inspect['Id'], 'name': container_name(inspect), 'previous_id': None, 'recreated': False,
            'running': bool((inspect.get('State') or {}).get('Running')),
            'cgroupns_mode': current.get('cgroupns_mode'), 'cgroupfs_readonly': None,
        }
        self.result['seccomp'] = {'mode': None, 'filters': None, 'verified_by': None,
                                  'profile_sha256': desired['seccomp_sha256']}
        return desired, cgroupns, recognised_differences(confinement_differences(current, desired), inspect, desired)

    def run(self) -> None:
        inspect = self.find()
        info = self.client.info() or {}
        self.preflight(inspect, self.client.version() or {}, info)
        cgroup = self.container_level(info, self.params['cgroup_name'] or container_name(inspect))
        before, writes = self.plan_limits(cgroup)
        if self.slice:
            self.result['cgroup']['systemd_slice'] = self.slice
        self.check_version_match(info)
        plan = self.plan_container(inspect, cgroup)
        if self.mod.check_mode:
            self.predict(inspect, before, writes, plan[2])
        else:
            self.apply(inspect, cgroup, before, writes, plan)
        self.finish()

    def predict(self, inspect: Dict[str, Any], before: Optional[Dict[str, Any]], writes: Any,
                differences: List[str]) -> None:
        self.result['changed'] = bool(writes or before is None or differences)
        if differences:
            self.result['container']['recreated'] = True
        elif self.result['container']['running']:
            self.verify(inspect['Id'], enforce=False)

    def apply(self, inspect: Dict[str, Any], cgroup: cgroup_lib.Cgroup, before: Optional[Dict[str, Any]],
              writes: Any, plan: Tuple[Dict[str, Any], bool, List[str]]) -> None:
        """Write the limits; recreate the container when it differs from the plan; verify it."""
        desired, cgroupns, differences = plan
        if self.slice_level is not None:
            self.apply_slice(self.slice_level, before, writes)
        else:
            self.apply_limits(cgroup, writes)
        cid = inspect['Id']
        if differences:
            try:
                cid = self.recreate(inspect, desired, cgroupns)
            except MtdError:
                if before is None:
                    # The level was made for this container only: do not leave it behind.
                    self.remove_level(cgroup)
                raise
            self.result['changed'] = True
        final = self.client.inspect_container(cid)
        self.result['container'].update(
            id=final['Id'], running=bool((final.get('State') or {}).get('Running')),
            cgroupns_mode=(final.get('HostConfig') or {}).get('CgroupnsMode'))
        if self.result['container']['running']:
            self.verify(cid, enforce=True)

    # -- the level under the systemd driver -----------------------------------------------------

    def container_level(self, info: Dict[str, Any], name: str) -> cgroup_lib.Cgroup:
        """The confinement level: a plain cgroup (cgroupfs driver) or a systemd slice's (systemd driver)."""
        if not uses_systemd_driver(info):
            return self.level(name)
        self.slice_level = SliceLevel(self.layout, self.params['cgroup_parent'], name)
        return self.slice_level.cgroup

    def apply_slice(self, level: SliceLevel, before: Optional[Dict[str, Any]], writes: Any) -> None:
        """The slice's limits as unit properties, read back from its files."""
        after, written = level.apply(self.limits, before, writes)
        if written:
            self.result['changed'] = True
        self.result['limits'] = project(after, self.managed_keys())
        self.diff['after']['cgroup']['limits'] = self.result['limits']

    def remove_level(self, cgroup: cgroup_lib.Cgroup) -> None:
        """Remove a level made for this run only (best effort: the error being raised is the one to show)."""
        if self.slice_level is not None:
            self.slice_level.remove()
            return
        try:
            cgroup.remove()
        except cgroup_lib.CgroupError:
            pass

    # -- recreation ----------------------------------------------------------------------------

    def recreate(self, inspect: Dict[str, Any], desired: Dict[str, Any], cgroupns: bool) -> str:
        old_id = inspect['Id']
        name = container_name(inspect)
        was_running = bool((inspect.get('State') or {}).get('Running'))
        auto_remove = bool((inspect.get('HostConfig') or {}).get('AutoRemove'))
        image = self.client.inspect_image(inspect.get('Image')) or {}
        body = recreate_body(inspect, image.get('Config') or {}, same_image_reference(self.client, inspect))
        body['HostConfig'] = confine_host_config(body.get('HostConfig'), desired['cgroup_parent'], cgroupns)
        try:
            replaced = replace_container(
                self.client, inspect, body, PARK_NAME % (name, old_id[:12]), stop_timeout=self.params['stop_timeout'],
                carry=lambda old, new: self.copy_layer(old, new, inspect),
                # stopping an auto-remove container deletes it: copy while it runs
                carry_before_stop=auto_remove and was_running,
                check=self.check_started)
        except ReplaceError as exc:
            raise MtdError('Recreating container %s confined failed, the original was put back: %s' % (name, exc.msg),
                           **exc.details)
        for warning in replaced['warnings']:
            self.mod.warn(warning)
        layer = replaced['carried']
        self.result['container'].update(previous_id=old_id, recreated=True)
        self.result['layer'] = layer
        if layer and layer['deleted_not_replayed']:
            self.mod.warn('Container %s: %d files deleted from its image could not be deleted in the new container '
                          '(see layer.deleted_not_replayed).' % (name, len(layer['deleted_not_replayed'])))
        return replaced['id']

    def check_started(self, cid: str) -> None:
        """Refuse a recreated container that does not reach the running state."""
        waited = wait_running(self.client, cid, timeout=START_TIMEOUT, interval=0.1)
        state = waited['state']
        if waited['ended'] == 'stopped':
            raise MtdError('the new container exited right after its start (exit code %s%s); are the limits too low?'
                           % (state.get('ExitCode'), ', OOM-killed' if state.get('OOMKilled') else ''))
        if not waited['healthy']:
            raise MtdError('the new container did not reach the running state within %s seconds' % START_TIMEOUT)

    def copy_layer(self, old_id: str, new_id: str, inspect: Dict[str, Any]) -> Dict[str, List[str]]:
        """Copy the added and modified files of the old writable layer into the new container."""
        changes = self.client.get('/containers/%s/changes' % quote(old_id, safe='')) or []
        plan, deleted = plan_layer_copy(changes, exclude=mount_destinations(inspect))
        copied, skipped = [], []
        for path, kind in plan:
            if kind != CHANGE_ADDED and self.is_directory(old_id, path):
                skipped.append(path)
                continue
            self.copy_path(old_id, new_id, path)
            copied.append(path)
        return {'copied': copied, 'skipped_directories': skipped, 'deleted_not_replayed': deleted}

    def copy_path(self, old_id: str, new_id: str, path: str) -> None:
        with self.client.request('GET', '/containers/%s/archive' % quote(old_id, safe=''),
                                 params={'path': path}, stream=True) as response:
            with tempfile.TemporaryFile() as spool:
                for chunk in response.iter_content():
                    spool.write(chunk)
                spool.seek(0)
                self.client.request('PUT', '/containers/%s/archive' % quote(new_id, safe=''),
                                    params={'path': os.path.dirname(path) or '/'}, body=spool,
                                    headers={'Content-Type': 'application/x-tar',
                                             'Content-Length': str(os.fstat(spool.fileno()).st_size)})

    def is_directory(self, cid: str, path: str) -> bool:
        response = self.client.request('HEAD', '/containers/%s/archive' % quote(cid, safe=''), params={'path': path})
        header = response.header('X-Docker-Container-Path-Stat')
        if not header:
            return False
        try:
            info = json.loads(base64.b64decode(header).decode('utf-8'))
        except (ValueError, TypeError):
            return False
        # Go's os.ModeDir is the top bit of a 32-bit mode.
        return bool(int(info.get('mode', 0)) & (1 << 31))

    # -- verification --------------------------------------------------------------------------

    def exec_cat(self, cid: str, path: str) -> Optional[str]:
        """The content of ``path`` inside the container (by ``cat``), or None."""
        try:
            rc, out = self.client.exec_run(cid, ['cat', path])
        except DockerError:
            return None
        return out if rc == 0 else None

    def read_status(self, cid: str) -> Tuple[Optional[str], Optional[str], Optional[str]]:
        """(status text, mountinfo text, how) of PID 1: by exec inside the container, else the host's /proc."""
        status_text = self.exec_cat(cid, '/proc/1/status')
        if status_text is not None and 'Seccomp' in status_text:
            return status_text, self.exec_cat(cid, '/proc/1/mountinfo'), 'exec'
        pid = (self.client.inspect_container(cid).get('State') or {}).get('Pid')
        if not (self.engine_socket() and pid):
            return None, None, None
        status_text = None
        try:
            with open(os.path.join(PROC, str(pid), 'status')) as handle:
                status_text = handle.read()
            with open(os.path.join(PROC, str(pid), 'mountinfo')) as handle:
                return status_text, handle.read(), 'host_proc'
        except (IOError, OSError):
            return status_text, None, 'host_proc' if status_text is not None else None

    def verify(self, cid: str, enforce: bool) -> None:
        """Report the Seccomp field of the container's PID 1; with ``enforce``, stop it when it is not 2."""
        status_text, mountinfo, via = self.read_status(cid)
        found = seccomp_lib.parse_status_seccomp(status_text) if status_text else {'mode': None, 'filters': None}
        self.result['seccomp'].update(mode=found['mode'], filters=found['filters'], verified_by=via)
        if mountinfo is not None:
            cgroup_mounts = [m for m in cgroup_lib.parse_mountinfo(mountinfo) if m['fstype'] in ('cgroup', 'cgroup2')]
            self.result['container']['cgroupfs_readonly'] = bool(cgroup_mounts) and all(
                'ro' in m['options'] for m in cgroup_mounts)
        if found['mode'] is None:
            self.mod.warn('Could not read the Seccomp field of container %s (no cat in its image, and the engine is '
                          'not on this host); its HostConfig carries the profile.' % self.params['name'])
        elif enforce and found['mode'] != 2:
            try:
                self.client.stop_container(cid, timeout=self.params['stop_timeout'])
            except DockerError:
                pass
            raise MtdError('Container %s runs without an active seccomp filter (Seccomp: %s, read via %s); it was '
                           'stopped.' % (self.params['name'], found['mode'], via))


def run(mod: MtdModule) -> None:
    check_mode_options(mod.params)
    confiner = ProcessConfiner(mod) if mod.params['mode'] == 'process' else ContainerConfiner(mod)
    confiner.run()


def main() -> None:
    run_module(run, ARGUMENT_SPEC, docker=True)


if __name__ == '__main__':
    main()
