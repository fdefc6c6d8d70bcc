# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The confinement's seccomp policy as data, its Docker JSON profile and its BPF program.

This is a private module_utils file (leading underscore): its API may change without notice.
Standard library only, Python 3.8+, and no import of other collection files: the process-mode launcher
(``_confine_launcher.py``) runs a copy of this file outside of Ansible.

The policy, honestly
--------------------
seccomp filters see the system call number and its six register arguments, never the memory they point
to. ``mount(2)``'s filesystem type is a pointer, so "deny only cgroup/cgroup2 mounts" cannot be written as
a filter (and reading the string from another thread's memory would be racy anyway). The policy therefore
denies the **whole mount family** with EPERM — what systemd's ``@mount`` set does: ``mount``, ``umount``,
``umount2``, ``pivot_root`` and the new mount API ``fsopen``, ``fsconfig``, ``fsmount``, ``fspick``,
``move_mount``, ``open_tree``, ``open_tree_attr`` and ``mount_setattr``. Checking mount flags instead (to
allow "only bind mounts") would be bypassable and is not offered.

Two artefacts are built from the same data:

- :func:`docker_profile` — a Docker/OCI JSON profile for container mode. It keeps the behaviour of
  Docker's default profile (an allow list with EPERM for everything else; capability-dependent groups;
  ``clone`` namespace flags only with CAP_SYS_ADMIN; ``clone3`` answering ENOSYS without it so that libc
  falls back to ``clone``; a fixed set of ``personality`` values) and never allows the mount family,
  whatever the container's capabilities.
- :func:`process_filter` — a classic BPF program for process mode, installed with
  ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`` by :func:`install_filter`. Any command can run under it,
  so it is a deny list: it checks the audit architecture first (native and compat ABIs, x32 included),
  returns EPERM for the mount family, for ``setns`` and for ``unshare``/``clone`` with a ``CLONE_NEW*``
  flag, ENOSYS for ``clone3`` and for system call numbers newer than its table (so a mount call added to
  a future kernel cannot slip through, and libc falls back) and allows the rest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import struct
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

try:
    from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
except ImportError:  # the confine launcher's installed copy: _common.py sits beside this file
    from _common import MtdError  # type: ignore[no-redef]

EPERM = 1
ENOSYS = 38

# ---------------------------------------------------------------------------------------------
# The policy as data

# Denied with EPERM in both modes, for every capability set.
MOUNT_FAMILY = (
    'mount', 'umount', 'umount2', 'pivot_root',
    'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount', 'open_tree', 'open_tree_attr',
    'mount_setattr',
)

# Container mode: allowed whatever the capabilities. Names unknown to an architecture (or to the
# engine's libseccomp) are skipped by the runtime, so 32-bit compat and new names are listed too.
# Grouped by purpose; every name of the x86_64, i386, x32 and generic (arm64) tables up to Linux 6.17
# is either here, in ALLOW_WITH_CAPABILITY, in the argument rules below or deliberately left out
# (DENIED_ALWAYS documents those).
ALLOW_ALWAYS = {
    'file-io': (
        'read', 'write', 'readv', 'writev', 'pread64', 'pwrite64', 'preadv', 'preadv2', 'pwritev', 'pwritev2',
        'lseek', '_llseek', 'llseek', 'close', 'close_range', 'dup', 'dup2', 'dup3', 'fcntl', 'fcntl64', 'ioctl',
        'sendfile', 'sendfile64', 'splice', 'tee', 'vmsplice', 'copy_file_range', 'fsync', 'fdatasync', 'sync',
        'syncfs', 'sync_file_range', 'sync_file_range2', 'arm_sync_file_range', 'fadvise64', 'fadvise64_64',
        'arm_fadvise64_64', 'readahead', 'fallocate', 'flock', 'pipe', 'pipe2', 'memfd_create', 'cachestat',
    ),
    'file-names': (
        'open', 'openat', 'openat2', 'creat', 'access', 'faccessat', 'faccessat2', 'stat', 'lstat', 'fstat',
        'newfstatat', 'fstatat64', 'stat64', 'lstat64', 'fstat64', 'oldstat', 'oldlstat', 'oldfstat', 'statx',
        'statfs', 'statfs64', 'fstatfs', 'fstatfs64', 'getdents', 'getdents64', 'readdir', 'getcwd', 'chdir',
        'fchdir', 'mkdir', 'mkdirat', 'mknod', 'mknodat', 'rmdir', 'rename', 'renameat', 'renameat2', 'link',
        'linkat', 'symlink', 'symlinkat', 'unlink', 'unlinkat', 'readlink', 'readlinkat', 'chmod', 'fchmod',
        'fchmodat', 'fchmodat2', 'chown', 'fchown', 'lchown', 'fchownat', 'chown32', 'fchown32', 'lchown32',
        'umask', 'truncate', 'ftruncate', 'truncate64', 'ftruncate64', 'utime', 'utimes', 'utimensat',
        'utimensat_time64', 'futimesat', 'setxattr', 'lsetxattr', 'fsetxattr', 'getxattr', 'lgetxattr',
        'fgetxattr', 'listxattr', 'llistxattr', 'flistxattr', 'removexattr', 'lremovexattr', 'fremovexattr',
        'setxattrat', 'getxattrat', 'listxattrat', 'removexattrat', 'file_getattr', 'file_setattr',
        'inotify_init', 'inotify_init1', 'inotify_add_watch', 'inotify_rm_watch', 'fanotify_mark',
        # Read-only views of the mount table, like /proc/self/mountinfo.
        'statmount', 'listmount',
    ),
    'memory': (
        'brk', 'mmap', 'mmap2', 'munmap', 'mremap', 'mprotect', 'pkey_mprotect', 'pkey_alloc', 'pkey_free',
        'madvise', 'mincore', 'msync', 'mlock', 'mlock2', 'munlock', 'mlockall', 'munlockall',
        'remap_file_pages', 'membarrier', 'mseal', 'map_shadow_stack', 'process_mrelease',
    ),
    'process': (
        'fork', 'vfork', 'execve', 'execveat', 'exit', 'exit_group', 'wait4', 'waitid', 'waitpid', 'getpid',
        'getppid', 'gettid', 'getpgid', 'setpgid', 'getpgrp', 'getsid', 'setsid', 'set_tid_address',
        'set_robust_list', 'get_robust_list', 'futex', 'futex_time64', 'futex_waitv', 'futex_wake', 'futex_wait',
        'futex_requeue', 'rseq', 'arch_prctl', 'set_thread_area', 'get_thread_area', 'set_tls', 'get_tls',
        'cacheflush', 'breakpoint', 'prctl', 'uname', 'olduname', 'oldolduname', 'capget', 'capset',
        'getrlimit', 'setrlimit', 'prlimit64', 'ugetrlimit', 'getrusage', 'times', 'seccomp',
        'landlock_create_ruleset', 'landlock_add_rule', 'landlock_restrict_self', 'ptrace', 'process_vm_readv',
        'process_vm_writev', 'pidfd_open', 'pidfd_send_signal',
    ),
    'credentials': (
        'getuid', 'geteuid', 'getgid', 'getegid', 'getgroups', 'setgroups', 'setuid', 'setgid', 'setreuid',
        'setregid', 'setresuid', 'setresgid', 'getresuid', 'getresgid', 'setfsuid', 'setfsgid', 'getuid32',
        'geteuid32', 'getgid32', 'getegid32', 'getgroups32', 'setgroups32', 'setuid32', 'setgid32',
        'setreuid32', 'setregid32', 'setresuid32', 'setresgid32', 'getresuid32', 'getresgid32', 'setfsuid32',
        'setfsgid32',
    ),
    'scheduling': (
        'sched_yield', 'sched_getaffinity', 'sched_setaffinity', 'sched_getparam', 'sched_setparam',
        'sched_getscheduler', 'sched_setscheduler', 'sched_get_priority_max', 'sched_get_priority_min',
        'sched_rr_get_interval', 'sched_rr_get_interval_time64', 'sched_getattr', 'sched_setattr',
        'getpriority', 'setpriority', 'nice', 'ioprio_get', 'ioprio_set', 'getcpu',
    ),
    'signals': (
        'kill', 'tkill', 'tgkill', 'rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'rt_sigpending',
        'rt_sigtimedwait', 'rt_sigtimedwait_time64', 'rt_sigqueueinfo', 'rt_tgsigqueueinfo', 'rt_sigsuspend',
        'sigaltstack', 'sigaction', 'sigprocmask', 'sigreturn', 'sigpending', 'sigsuspend', 'signal',
        'sgetmask', 'ssetmask', 'signalfd', 'signalfd4', 'pause', 'alarm', 'getitimer', 'setitimer',
        'restart_syscall',
    ),
    'time': (
        'time', 'gettimeofday', 'clock_gettime', 'clock_gettime64', 'clock_getres', 'clock_getres_time64',
        'clock_nanosleep', 'clock_nanosleep_time64', 'nanosleep', 'timer_create', 'timer_delete',
        'timer_settime', 'timer_settime64', 'timer_gettime', 'timer_gettime64', 'timer_getoverrun',
        'timerfd_create', 'timerfd_settime', 'timerfd_settime64', 'timerfd_gettime', 'timerfd_gettime64',
        # Reading the clock state; setting it needs CAP_SYS_TIME, checked by the kernel.
        'adjtimex',
    ),
    'polling': (
        'poll', 'ppoll', 'ppoll_time64', 'select', '_newselect', 'pselect6', 'pselect6_time64', 'epoll_create',
        'epoll_create1', 'epoll_ctl', 'epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'eventfd', 'eventfd2',
        'io_setup', 'io_destroy', 'io_getevents', 'io_pgetevents', 'io_pgetevents_time64', 'io_submit',
        'io_cancel',
    ),
    'ipc': (
        'shmget', 'shmat', 'shmdt', 'shmctl', 'semget', 'semop', 'semtimedop', 'semtimedop_time64', 'semctl',
        'msgget', 'msgsnd', 'msgrcv', 'msgctl', 'ipc', 'mq_open', 'mq_unlink', 'mq_timedsend',
        'mq_timedsend_time64', 'mq_timedreceive', 'mq_timedreceive_time64', 'mq_notify', 'mq_getsetattr',
    ),
    # socket itself: every family but AF_VSOCK, see SOCKET_FAMILIES_DENIED.
    'network': (
        'socketpair', 'bind', 'listen', 'accept', 'accept4', 'connect', 'getsockname', 'getpeername',
        'sendto', 'recvfrom', 'sendmsg', 'recvmsg', 'sendmmsg', 'recvmmsg', 'recvmmsg_time64', 'shutdown',
        'setsockopt', 'getsockopt', 'socketcall',
    ),
    'system-info': (
        'getrandom', 'sysinfo',
    ),
}

# Container mode: allowed only when the container holds the capability (Docker's "includes.caps").
# The kernel checks the capability too; the filter keeps the attack surface of the call away from
# containers that could not use it anyway. The mount family is never here.
ALLOW_WITH_CAPABILITY = {
    'CAP_SYS_ADMIN': (
        'bpf', 'clone3', 'fanotify_init', 'lookup_dcookie', 'name_to_handle_at', 'perf_event_open', 'quotactl',
        'quotactl_fd', 'setdomainname', 'sethostname', 'setns', 'syslog', 'unshare',
    ),
    'CAP_BPF': ('bpf',),
    'CAP_PERFMON': ('perf_event_open',),
    'CAP_SYS_BOOT': ('reboot',),
    'CAP_SYS_CHROOT': ('chroot',),
    'CAP_SYS_PACCT': ('acct',),
    'CAP_SYS_PTRACE': ('kcmp', 'pidfd_getfd', 'process_madvise'),
    'CAP_SYS_TIME': ('settimeofday', 'stime', 'clock_settime', 'clock_settime64', 'clock_adjtime',
                     'clock_adjtime64'),
    'CAP_SYS_TTY_CONFIG': ('vhangup',),
    'CAP_SYS_NICE': ('get_mempolicy', 'set_mempolicy', 'set_mempolicy_home_node', 'mbind'),
    'CAP_SYSLOG': ('syslog',),
    'CAP_DAC_READ_SEARCH': ('open_by_handle_at',),
}

# clone(2) flags that create namespaces: without CAP_SYS_ADMIN, clone is allowed only without them.
CLONE_NAMESPACE_FLAGS = {
    'CLONE_NEWNS': 0x00020000,
    'CLONE_NEWCGROUP': 0x02000000,
    'CLONE_NEWUTS': 0x04000000,
    'CLONE_NEWIPC': 0x08000000,
    'CLONE_NEWUSER': 0x10000000,
    'CLONE_NEWPID': 0x20000000,
    'CLONE_NEWNET': 0x40000000,
}

# socket(2) address families a container may not open (the family is the first argument, a plain
# register value). AF_VSOCK (40) reaches the hypervisor and the other guests of a VM host; Docker's
# default profile denies it too. socketcall(2) (the i386 multiplexer, whose arguments are in memory)
# cannot be checked and stays allowed, as in Docker's profile.
SOCKET_FAMILIES_DENIED = {'AF_VSOCK': 40}

# personality(2) values a container may set: PER_LINUX, PER_LINUX32, UNAME26 (alone and with
# PER_LINUX32), and 0xffffffff, which only queries.
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xffffffff)

# Never allowed in container mode (they fall to the default EPERM): documented, not emitted.
DENIED_ALWAYS = {
    'mount': MOUNT_FAMILY,
    'kernel-wide state': ('kexec_load', 'kexec_file_load', 'swapon', 'swapoff', 'add_key', 'request_key',
                          'keyctl', 'nfsservctl', 'sysfs', '_sysctl', 'ustat', 'uselib', 'bdflush'),
    'io_uring (not covered by seccomp once set up)': ('io_uring_setup', 'io_uring_enter', 'io_uring_register'),
    # Code in the host kernel and direct port I/O on the host's hardware. Docker allows them with
    # CAP_SYS_MODULE / CAP_SYS_RAWIO; confine refuses privileged containers and denies them whatever
    # capabilities were added, since no confined workload needs them and either one ends the confinement.
    'kernel modules and port I/O': ('init_module', 'finit_module', 'delete_module', 'iopl', 'ioperm'),
    # Denied by Docker's default profile for every capability set: userfaultfd (a page-fault handler in
    # user space, the classic primitive to win kernel races), moving another process' pages between NUMA
    # nodes, and writing LSM attributes of the caller.
    'as in Docker\'s default profile': ('userfaultfd', 'move_pages', 'migrate_pages', 'lsm_set_self_attr',
                                        'lsm_get_self_attr', 'lsm_list_modules'),
    'legacy or unimplemented': ('vm86', 'vm86old', 'modify_ldt', 'create_module', 'get_kernel_syms',
                                'query_module', 'afs_syscall', 'break', 'ftime', 'gtty', 'stty', 'idle', 'lock',
                                'mpx', 'prof', 'profil', 'getpmsg', 'putpmsg', 'security', 'tuxcall', 'ulimit',
                                'vserver', 'epoll_ctl_old', 'epoll_wait_old', 'usr26', 'usr32',
                                'memfd_secret'),
}

PROFILE_ARCHITECTURES = (
    {'architecture': 'SCMP_ARCH_X86_64', 'subArchitectures': ['SCMP_ARCH_X86', 'SCMP_ARCH_X32']},
    {'architecture': 'SCMP_ARCH_AARCH64', 'subArchitectures': ['SCMP_ARCH_ARM']},
)

POLICY_NAME = 'mtd-confine'
POLICY_VERSION = 1


class SeccompError(MtdError):
    """The filter cannot be built or installed here; the message is one clear sentence."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg


# ---------------------------------------------------------------------------------------------
# Docker JSON profile (container mode)

def _rule(names, action='SCMP_ACT_ALLOW', comment=None, **extra):
    rule = {'names': sorted(set(names)), 'action': action}
    if comment:
        rule['comment'] = comment
    rule.update(extra)
    return rule


def _socket_rule():
    """socket(2) for every address family but those of SOCKET_FAMILIES_DENIED (they get the default EPERM)."""
    families = sorted(SOCKET_FAMILIES_DENIED.values())
    return _rule(['socket'], args=[{'index': 0, 'value': family, 'valueTwo': 0, 'op': 'SCMP_CMP_NE'}
                                   for family in families],
                 comment='mtd: socket, not AF_VSOCK')


def docker_profile() -> Dict[str, Any]:
    """The container-mode profile as a dict (Docker/moby seccomp JSON format, Docker >= 20.10)."""
    always: Set[str] = set()
    for names in ALLOW_ALWAYS.values():
        always.update(names)
    overlap = always.intersection(MOUNT_FAMILY)
    if overlap:  # pragma: no cover - a guard against editing mistakes in the tables above
        raise SeccompError('The allow list contains mount-family calls: %s.' % ', '.join(sorted(overlap)))

    syscalls = [
        _rule(MOUNT_FAMILY, 'SCMP_ACT_ERRNO', errnoRet=EPERM,
              comment='mtd: the mount family, for every capability set (seccomp cannot read the fstype)'),
        _rule(always, comment='mtd: allowed for every container'),
    ]
    mask = 0
    for flag in CLONE_NAMESPACE_FLAGS.values():
        mask |= flag
    syscalls.append(_rule(
        ['clone'], args=[{'index': 0, 'value': mask, 'valueTwo': 0, 'op': 'SCMP_CMP_MASKED_EQ'}],
        excludes={'caps': ['CAP_SYS_ADMIN']},
        comment='mtd: clone without namespace flags unless CAP_SYS_ADMIN'))
    syscalls.append(_rule(['clone'], includes={'caps': ['CAP_SYS_ADMIN']}, comment='mtd: clone with CAP_SYS_ADMIN'))
    syscalls.append(_socket_rule())
    syscalls.append(_rule(
        ['clone3'], 'SCMP_ACT_ERRNO', errnoRet=ENOSYS, excludes={'caps': ['CAP_SYS_ADMIN']},
        comment='mtd: clone3 flags are in memory; ENOSYS makes libc fall back to clone'))
    for value in PERSONALITY_ALLOWED:
        syscalls.append(_rule(['personality'], args=[{'index': 0, 'value': value, 'valueTwo': 0,
                                                      'op': 'SCMP_CMP_EQ'}]))
    for capability in sorted(ALLOW_WITH_CAPABILITY):
        allowed = [name for name in ALLOW_WITH_CAPABILITY[capability] if name not in MOUNT_FAMILY]
        syscalls.append(_rule(allowed, includes={'caps': [capability]},
                              comment='mtd: allowed with %s' % capability))
    return {
        'defaultAction': 'SCMP_ACT_ERRNO',
        'defaultErrnoRet': EPERM,
        'archMap': [dict(arch) for arch in PROFILE_ARCHITECTURES],
        'syscalls': syscalls,
    }


def canonical_json(profile: Union[str, Dict[str, Any]]) -> str:
    """One canonical text for a profile (a dict or JSON text): sorted keys, no whitespace.

    Raises ValueError when ``profile`` is text that is not JSON.
    """
    if isinstance(profile, (bytes, str)):
        profile = json.loads(profile)
    return json.dumps(profile, sort_keys=True, separators=(',', ':'))


def profile_digest(profile: Union[str, Dict[str, Any]]) -> str:
    """sha256 hex digest of the canonical JSON of a profile (dict or JSON text)."""
    return hashlib.sha256(canonical_json(profile).encode('utf-8')).hexdigest()


def seccomp_security_opt(profile: Union[str, Dict[str, Any]]) -> str:
    """The ``HostConfig.SecurityOpt`` entry carrying the profile inline, as the docker CLI sends it."""
    return 'seccomp=' + canonical_json(profile)


def find_seccomp_opt(security_opt: Optional[Sequence[str]]) -> Tuple[Optional[int], Optional[str]]:
    """(index, value) of the seccomp entry in a SecurityOpt list, else (None, None).

    Docker accepts ``seccomp=VALUE`` and the old ``seccomp:VALUE``; VALUE is ``unconfined``, a builtin
    name or the profile's JSON text.
    """
    for index, entry in enumerate(security_opt or []):
        for prefix in ('seccomp=', 'seccomp:'):
            if entry.startswith(prefix):
                return index, entry[len(prefix):]
    return None, None


def security_opt_digest(security_opt: Optional[Sequence[str]]) -> Optional[str]:
    """sha256 of the inline profile found in SecurityOpt, or None (no profile, unconfined, not JSON)."""
    dummy, value = find_seccomp_opt(security_opt)
    if not value or not value.lstrip().startswith('{'):
        return None
    try:
        return profile_digest(value)
    except ValueError:
        return None


def parse_status_seccomp(status_text: Optional[str]) -> Dict[str, Optional[int]]:
    """``{'mode': int|None, 'filters': int|None}`` from the text of /proc/<pid>/status."""
    result: Dict[str, Optional[int]] = {'mode': None, 'filters': None}
    for line in (status_text or '').splitlines():
        key, sep, value = line.partition(':')
        if not sep:
            continue
        key = key.strip()
        if key == 'Seccomp':
            result['mode'] = int(value.strip())
        elif key == 'Seccomp_filters':
            result['filters'] = int(value.strip())
    return result


# ---------------------------------------------------------------------------------------------
# Classic BPF program (process mode)

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xC00000B7
AUDIT_ARCH_ARM = 0x40000028

X32_SYSCALL_BIT = 0x40000000
# The highest system call number in the tables below (file_setattr, Linux 6.17). Newer numbers return
# ENOSYS under the process filter, so a future mount-family call cannot pass unchecked.
LAST_KNOWN_SYSCALL = 469

# Mount-family numbers per ABI. Since Linux 5.x new calls share one number on all of these ABIs.
_NEW_MOUNT_API = {
    'open_tree': 428, 'move_mount': 429, 'fsopen': 430, 'fsconfig': 431, 'fsmount': 432, 'fspick': 433,
    'mount_setattr': 442, 'open_tree_attr': 467,
}
SYSCALL_TABLES = {
    'x86_64': dict(_NEW_MOUNT_API, mount=165, umount2=166, pivot_root=155,
                   clone=56, unshare=272, setns=308, clone3=435),
    'i386': dict(_NEW_MOUNT_API, mount=21, umount=22, umount2=52, pivot_root=217,
                 clone=120, unshare=310, setns=346, clone3=435),
    'aarch64': dict(_NEW_MOUNT_API, mount=40, umount2=39, pivot_root=41,
                    clone=220, unshare=97, setns=268, clone3=435),
    'arm': dict(_NEW_MOUNT_API, mount=21, umount=22, umount2=52, pivot_root=218,
                clone=120, unshare=337, setns=375, clone3=435),
}

# Process mode, beyond the mount family: no entering another process' namespaces (setns: the way into
# the host's mount namespace, where the cgroup filesystems are writable) and no new namespaces
# (unshare/clone with a CLONE_NEW* flag: a new user namespace would hand the command a full capability
# set there). The flags of unshare and clone are their first argument (on every ABI above), a register
# value the filter can test; clone3 keeps its flags in memory, so it answers ENOSYS and the C library
# falls back to clone (as under Docker's default profile without CAP_SYS_ADMIN).
PROCESS_DENIED = ('setns',)
PROCESS_NAMESPACE_FLAG_CHECKED = ('unshare', 'clone')
PROCESS_ENOSYS = ('clone3',)

# Which ABIs a filter installed on a given machine must handle, with their audit architecture.
MACHINE_ABIS = {
    'x86_64': (('x86_64', AUDIT_ARCH_X86_64), ('i386', AUDIT_ARCH_I386)),
    'aarch64': (('aarch64', AUDIT_ARCH_AARCH64), ('arm', AUDIT_ARCH_ARM)),
}
_MACHINE_ALIASES = {'amd64': 'x86_64', 'x86_64': 'x86_64', 'aarch64': 'aarch64', 'arm64': 'aarch64'}

# x32 has its own calls at 512..547 (compat variants of non-mount calls); ARM private calls at
# 0x0f0000 and up (cacheflush, set_tls, ...). Both are above LAST_KNOWN_SYSCALL and must pass.
X32_PRIVATE_RANGE = (512, 547)
ARM_PRIVATE_RANGE = (0x0f0000, 0x0f07ff)

# BPF opcodes (linux/bpf_common.h) and seccomp return values (linux/seccomp.h).
BPF_LD_W_ABS = 0x20
BPF_JMP_JEQ_K = 0x15
BPF_JMP_JGT_K = 0x25
BPF_JMP_JGE_K = 0x35
BPF_JMP_JSET_K = 0x45
BPF_ALU_AND_K = 0x54
BPF_RET_K = 0x06
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7fff0000
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4
# The low 32 bits of the first argument (little-endian; all flags of unshare and clone are there, and the
# kernel ignores or refuses the upper half).
SECCOMP_DATA_ARG0_LOW = 16

BPF_MAXINSNS = 4096


def normalise_machine(machine: Optional[str]) -> str:
    """``x86_64`` or ``aarch64`` for a ``uname -m`` value; raises SeccompError for anything else."""
    name = _MACHINE_ALIASES.get((machine or '').strip().lower())
    if name is None:
        raise SeccompError(
            'The process-mode seccomp filter has no system call table for the %r architecture '
            '(supported: x86_64 and aarch64 with their 32-bit compat ABIs).' % (machine,))
    return name


def deny_numbers(abi: str, names: Sequence[str] = MOUNT_FAMILY) -> List[int]:
    """The sorted system call numbers of ``names`` on one ABI (names the ABI lacks are skipped)."""
    table = SYSCALL_TABLES[abi]
    return sorted(set(table[name] for name in names if name in table))


class _Asm:
    """A tiny assembler with forward labels for classic BPF."""

    def __init__(self):
        self.items = []

    def label(self, name):
        self.items.append(('label', name))

    def stmt(self, code, k):
        self.items.append((code, 0, 0, k))

    def jump(self, code, k, jt, jf):
        self.items.append((code, jt, jf, k))

    def assemble(self):
        positions = {}
        index = 0
        for item in self.items:
            if item[0] == 'label':
                positions[item[1]] = index
            else:
                index += 1
        program: List[Tuple[int, int, int, int]] = []
        for item in self.items:
            if item[0] == 'label':
                continue
            code, jt, jf, k = item
            here = len(program)
            offsets = []
            for target in (jt, jf):
                if isinstance(target, str):
                    offset = positions[target] - here - 1
                    if offset < 0 or offset > 255:
                        raise SeccompError('BPF jump to %s is out of range (%d).' % (target, offset))
                    offsets.append(offset)
                else:
                    offsets.append(target)
            program.append((code, offsets[0], offsets[1], k & 0xffffffff))
        if len(program) > BPF_MAXINSNS:
            raise SeccompError('The BPF program has %d instructions, more than the kernel accepts.' % len(program))
        return program


def namespace_flag_mask() -> int:
    """The CLONE_NEW* flags that unshare/clone may not carry under the process filter."""
    mask = 0
    for flag in CLONE_NAMESPACE_FLAGS.values():
        mask |= flag
    return mask


def _deny_block(asm, abi, prefix, extra_allowed=None, masked_x32=False):
    """Checks on the system call number already in the accumulator."""
    checks = [(number, 'eperm') for number in deny_numbers(abi, MOUNT_FAMILY + PROCESS_DENIED)]
    checks += [(number, 'nsflags') for number in deny_numbers(abi, PROCESS_NAMESPACE_FLAG_CHECKED)]
    checks += [(number, 'enosys') for number in deny_numbers(abi, PROCESS_ENOSYS)]
    for number, target in sorted(checks):
        asm.jump(BPF_JMP_JEQ_K, number, target, prefix + 'next%d' % number)
        asm.label(prefix + 'next%d' % number)
    if extra_allowed:
        low, high = extra_allowed
        asm.jump(BPF_JMP_JGT_K, high, 'enosys', prefix + 'le_high')
        asm.label(prefix + 'le_high')
        asm.jump(BPF_JMP_JGE_K, low, 'allow', prefix + 'below_private')
        asm.label(prefix + 'below_private')
    asm.jump(BPF_JMP_JGT_K, LAST_KNOWN_SYSCALL, 'enosys', 'allow')


def process_filter(machine: Optional[str] = None) -> List[Tuple[int, int, int, int]]:
    """The process-mode filter for ``machine`` (default: this one) as a list of (code, jt, jf, k)."""
    machine = normalise_machine(machine if machine is not None else os.uname().machine)
    abis = MACHINE_ABIS[machine]
    asm = _Asm()
    asm.stmt(BPF_LD_W_ABS, SECCOMP_DATA_ARCH)
    for abi, audit_arch in abis:
        asm.jump(BPF_JMP_JEQ_K, audit_arch, 'abi_' + abi, 'not_' + abi)
        asm.label('not_' + abi)
    # An ABI this filter does not know: fail closed.
    asm.stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS)
    for abi, _dummy in abis:
        asm.label('abi_' + abi)
        asm.stmt(BPF_LD_W_ABS, SECCOMP_DATA_NR)
        if abi == 'x86_64':
            # x32 calls are x86_64 numbers with bit 30 set: the same mount numbers, and 512..547.
            asm.jump(BPF_JMP_JSET_K, X32_SYSCALL_BIT, 'x32', 'x64')
            asm.label('x64')
            _deny_block(asm, 'x86_64', 'x64_')
            asm.label('x32')
            asm.stmt(BPF_ALU_AND_K, ~X32_SYSCALL_BIT & 0xffffffff)
            _deny_block(asm, 'x86_64', 'x32_', extra_allowed=X32_PRIVATE_RANGE)
        elif abi == 'arm':
            _deny_block(asm, 'arm', 'arm_', extra_allowed=ARM_PRIVATE_RANGE)
        else:
            _deny_block(asm, abi, abi + '_')
    asm.label('nsflags')
    asm.stmt(BPF_LD_W_ABS, SECCOMP_DATA_ARG0_LOW)
    asm.jump(BPF_JMP_JSET_K, namespace_flag_mask(), 'eperm', 'allow')
    asm.label('eperm')
    asm.stmt(BPF_RET_K, SECCOMP_RET_ERRNO | EPERM)
    asm.label('enosys')
    asm.stmt(BPF_RET_K, SECCOMP_RET_ERRNO | ENOSYS)
    asm.label('allow')
    asm.stmt(BPF_RET_K, SECCOMP_RET_ALLOW)
    return asm.assemble()


def encode_program(program: Sequence[Tuple[int, int, int, int]]) -> bytes:
    """The program as the bytes of a ``struct sock_filter`` array (native byte order)."""
    return b''.join(struct.pack('=HBBI', code, jt, jf, k) for code, jt, jf, k in program)


def program_digest(program: Sequence[Tuple[int, int, int, int]]) -> str:
    return hashlib.sha256(encode_program(program)).hexdigest()


class _SockFilter(ctypes.Structure):
    _fields_ = [('code', ctypes.c_ushort), ('jt', ctypes.c_ubyte), ('jf', ctypes.c_ubyte), ('k', ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.POINTER(_SockFilter))]


PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def libc():
    """The C library through ctypes (errno kept), for prctl/mount calls of this file and the launcher."""
    name = ctypes.util.find_library('c') or 'libc.so.6'
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return ctypes.CDLL(None, use_errno=True)


def install_filter(program: Optional[Sequence[Tuple[int, int, int, int]]] = None, no_new_privs: bool = True) -> None:
    """Install ``program`` (default: :func:`process_filter`) on the calling thread; it is inherited by
    every child and kept across execve. Raises SeccompError when the kernel refuses."""
    if program is None:
        program = process_filter()
    lib = libc()
    prctl = lib.prctl
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if no_new_privs and prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise SeccompError('prctl(PR_SET_NO_NEW_PRIVS) failed: %s.' % os.strerror(err))
    filters = (_SockFilter * len(program))(*[_SockFilter(code, jt, jf, k) for code, jt, jf, k in program])
    fprog = _SockFprog(len(program), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    if prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise SeccompError('prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) failed: %s (does the kernel have '
                           'CONFIG_SECCOMP_FILTER?).' % os.strerror(err))
