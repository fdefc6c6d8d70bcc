# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mtd-confine: run a command inside a new cgroup level under a seccomp filter it cannot remove.

This is a private module_utils file (leading underscore). ``mtd.containers.confine`` (mode=process)
installs it on the managed host as ``<launcher_dir>/mtd-confine`` beside copies of ``_cgroup.py`` and
``_seccomp.py`` (default ``/usr/local/libexec/mtd-confine/``); a service manager can run it directly::

    /usr/local/libexec/mtd-confine/mtd-confine --spec /etc/mtd/web.json -- /usr/sbin/nginx -g 'daemon off;'

Spec (JSON, from ``--spec FILE`` or ``--spec-json TEXT``)::

    {"cgroup": "mtd/web",              # the level, relative to the hierarchy roots
     "cgroup_version": "auto",         # auto | 1 | 2
     "limits": {"memory": 67108864, "memory_swap": 67108864, "cpu_quota": 50000,
                "cpu_period": 100000, "cpu_weight": 100, "pids": 64},   # normalised, see _cgroup.py
     "readonly_cgroupfs": true,        # private mount namespace with every cgroup mount read-only
     "user": null, "group": null,      # run the command as this user / group
     "allow_root": false,              # without it, a command that would run as uid 0 is refused
     "chdir": null,
     "output": null}                   # --detach: append stdout/stderr here (default /dev/null)

Steps, in this order: refuse a command that would run as root unless ``allow_root``; create the level and
write the limits; move this process into it; (optionally) unshare the mount namespace and remount the
cgroup filesystems read-only; remove every capability but KEPT_CAPABILITIES from the bounding, ambient and
inheritable sets; (optionally) switch user; remove them from the permitted and effective sets too;
set no_new_privs and install the process-mode filter of ``_seccomp.py`` with
``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)``; check ``Seccomp: 2`` in /proc/self/status; execve the
command. The command and all its descendants inherit the cgroup and the filter.

``--detach`` forks first: the child calls setsid() and does the steps, the parent reports the child's PID
once the exec succeeded (or the error) and exits. ``--status-file FILE`` receives a JSON report
(``ok``, ``pid``, ``cgroup``, ``seccomp``, or ``error``); exit status 125 means the launcher failed
before the command ran.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import importlib
import json
import os
import pwd
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

if __package__:
    from ansible_collections.mtd.containers.plugins.module_utils import _cgroup as cgroup_lib
    from ansible_collections.mtd.containers.plugins.module_utils import _seccomp as seccomp_lib
    from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
else:  # the installed copy: _cgroup.py and _seccomp.py sit beside this file
    sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
    cgroup_lib = importlib.import_module('_cgroup')
    seccomp_lib = importlib.import_module('_seccomp')
    MtdError = importlib.import_module('_common').MtdError  # type: ignore[misc]

LAUNCHER_NAME = 'mtd-confine'
EXIT_LAUNCHER_FAILED = 125

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 0x80000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
_OPTION_FLAGS = {
    'nosuid': MS_NOSUID, 'nodev': MS_NODEV, 'noexec': MS_NOEXEC, 'noatime': MS_NOATIME,
    'nodiratime': MS_NODIRATIME, 'relatime': MS_RELATIME, 'strictatime': MS_STRICTATIME,
}
CGROUP_ROOT = '/sys/fs/cgroup'


class LaunchError(MtdError):
    """The launcher could not confine and exec the command (exit status 125)."""


# -- capabilities -----------------------------------------------------------------------------------

# linux/capability.h, by number (0..40 as of Linux 6.17). A capability the running kernel knows beyond
# this table (see /proc/sys/kernel/cap_last_cap) is dropped as well: only KEPT_CAPABILITIES stay.
CAPABILITY_NAMES = (
    'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
    'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
    'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE',
    'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP',
    'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
    'CHECKPOINT_RESTORE',
)
# What a command may keep: file ownership on its own files, signals, changing to other users (a root
# service that drops to a worker user), low ports, audit messages, locked memory (charged to the level).
# Everything that reaches other processes' namespaces and memory (SYS_ADMIN, SYS_PTRACE, SYS_CHROOT,
# CHECKPOINT_RESTORE), the kernel and the hardware (SYS_MODULE, SYS_RAWIO, SYS_BOOT, SYS_TIME, BPF,
# PERFMON, SYSLOG, MAC_*, AUDIT_CONTROL), the host's network (NET_ADMIN, NET_RAW: raw sockets in the host
# network namespace can read its traffic), device nodes and file capabilities (MKNOD, SETFCAP), the
# permission checks (DAC_OVERRIDE, DAC_READ_SEARCH: open_by_handle_at, IPC_OWNER, LINUX_IMMUTABLE) and
# the limits (SYS_RESOURCE, SYS_NICE) is dropped.
KEPT_CAPABILITIES = ('CHOWN', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'NET_BIND_SERVICE',
                     'AUDIT_WRITE', 'IPC_LOCK')

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capability_name(number: int) -> str:
    return CAPABILITY_NAMES[number] if 0 <= number < len(CAPABILITY_NAMES) else 'CAP_%d' % number


def capability_numbers(names: Sequence[str]) -> List[int]:
    """The numbers of capability names (with or without ``CAP_``); raises LaunchError for unknown ones."""
    numbers = []
    for name in names:
        short = str(name).upper()
        short = short[4:] if short.startswith('CAP_') else short
        if short not in CAPABILITY_NAMES:
            raise LaunchError('Unknown capability %r.' % (name,))
        numbers.append(CAPABILITY_NAMES.index(short))
    return sorted(set(numbers))


def capabilities_to_drop(last_cap: int, kept: Sequence[str] = KEPT_CAPABILITIES) -> List[int]:
    """Every capability number 0..last_cap except the kept ones."""
    keep = set(capability_numbers(kept))
    return [number for number in range(last_cap + 1) if number not in keep]


def capability_mask(numbers: Sequence[int]) -> int:
    mask = 0
    for number in numbers:
        mask |= 1 << number
    return mask


def mask_names(mask: int) -> List[str]:
    """``['CHOWN', ...]`` for a capability mask such as the hex CapBnd of /proc/<pid>/status."""
    return [capability_name(bit) for bit in range(64) if mask & (1 << bit)]


def parse_status_capabilities(status_text: str) -> Dict[str, int]:
    """``{'CapInh': mask, 'CapPrm': ..., 'CapEff': ..., 'CapBnd': ..., 'CapAmb': ...}`` from /proc/<pid>/status."""
    found = {}
    for line in (status_text or '').splitlines():
        key, sep, value = line.partition(':')
        if sep and key.strip() in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'):
            found[key.strip()] = int(value.strip(), 16)
    return found


def root_refusal(uid: int, allow_root: bool) -> Optional[str]:
    """A sentence why a command that would run as ``uid`` is refused, else None."""
    if uid != 0 or allow_root:
        return None
    return ('The command would run as root, which no cgroup or seccomp filter confines on the host (uid 0 owns '
            'the host\'s files and reaches /proc/<pid>/root of other processes); set user to an unprivileged user, '
            'or set allow_root to true to run it as root with a reduced capability set.')


def target_uid(user: Optional[str], current_uid: int) -> int:
    """The uid the command will have: ``user`` resolved (name or uid), else the current one."""
    if user is None:
        return current_uid
    try:
        return pwd.getpwuid(int(user)).pw_uid if str(user).isdigit() else pwd.getpwnam(str(user)).pw_uid
    except KeyError:
        raise LaunchError('Unknown user %r on this host; give an existing user name or uid.' % (user,))


def _last_cap() -> int:
    try:
        with open('/proc/sys/kernel/cap_last_cap') as handle:
            return int(handle.read().strip())
    except (IOError, OSError, ValueError):
        return len(CAPABILITY_NAMES) - 1


class _CapHeader(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32), ('inheritable', ctypes.c_uint32)]


def bounding_drop_needed(euid: int, permitted: int) -> bool:
    """Whether the bounding set must be cut: for root or a process holding any capability. An unprivileged
    launcher (a delegated cgroup, no capabilities) cannot cut it (no CAP_SETPCAP) and needs not: with an empty
    permitted set and no_new_privs nothing it execs can gain a capability."""
    return euid == 0 or permitted != 0


def own_capabilities() -> Dict[str, int]:
    with open('/proc/self/status') as handle:
        return parse_status_capabilities(handle.read())


def drop_bounding(drop: Sequence[int], bounding: bool = True) -> None:
    """Remove ``drop`` from the bounding set (needs CAP_SETPCAP; skipped unless ``bounding``), clear the
    ambient set and the inheritable set of them. Fails closed: a capability that stays in the bounding set is
    an error."""
    libc = seccomp_lib.libc()
    libc.prctl.restype = ctypes.c_int
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    for number in drop if bounding else ():
        if libc.prctl(PR_CAPBSET_READ, number, 0, 0, 0) == 1 and libc.prctl(PR_CAPBSET_DROP, number, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise LaunchError('Cannot drop CAP_%s from the bounding set: %s; the launcher must run as root.'
                              % (capability_name(number), os.strerror(err)))
    # Kernels before 4.3 have no ambient set (EINVAL): nothing to clear there.
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    limit_capabilities(drop, inheritable_only=True)


def limit_capabilities(drop: Sequence[int], inheritable_only: bool = False) -> None:
    """Remove ``drop`` from the inheritable set (and, unless ``inheritable_only``, the permitted and
    effective sets) of this thread with capget/capset."""
    libc = seccomp_lib.libc()
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise LaunchError('capget failed: %s.' % os.strerror(ctypes.get_errno()))
    mask = capability_mask(drop)
    for index in range(2):
        keep = ~(mask >> (32 * index)) & 0xffffffff
        data[index].inheritable &= keep
        if not inheritable_only:
            data[index].permitted &= keep
            data[index].effective &= keep
    if libc.capset(ctypes.byref(header), data) != 0:
        raise LaunchError('capset failed: %s.' % os.strerror(ctypes.get_errno()))


def readonly_mounts(mountinfo_text: str) -> List[Tuple[str, int]]:
    """(mountpoint, flags) for every mount to make read-only: all cgroup/cgroup2 mounts and everything at or
    below /sys/fs/cgroup. The flags keep each mount's nosuid/nodev/noexec/atime options."""
    result = []
    for mount in cgroup_lib.parse_mountinfo(mountinfo_text):
        mountpoint = mount['mountpoint']
        below = mountpoint == CGROUP_ROOT or mountpoint.startswith(CGROUP_ROOT + '/')
        if mount['fstype'] not in ('cgroup', 'cgroup2') and not below:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in mount['options']:
            flags |= _OPTION_FLAGS.get(option, 0)
        if (mountpoint, flags) not in result:
            result.append((mountpoint, flags))
    return result


def private_readonly_cgroupfs() -> List[str]:
    """A new mount namespace (slave of the current one) where every cgroup mount is read-only."""
    libc = seccomp_lib.libc()
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise LaunchError('unshare(CLONE_NEWNS) failed: %s; run as root or set readonly_cgroupfs to false.'
                          % os.strerror(err))
    if libc.mount(None, b'/', None, MS_REC | MS_SLAVE, None) != 0:
        err = ctypes.get_errno()
        raise LaunchError('Cannot make the new mount namespace a slave: %s.' % os.strerror(err))
    with open('/proc/self/mountinfo') as handle:
        mounts = readonly_mounts(handle.read())
    for mountpoint, flags in mounts:
        if libc.mount(None, mountpoint.encode('utf-8'), None, flags, None) != 0:
            err = ctypes.get_errno()
            raise LaunchError('Cannot remount %s read-only: %s.' % (mountpoint, os.strerror(err)))
    return [mountpoint for mountpoint, dummy in mounts]


def switch_user(user: Optional[str], group: Optional[str]) -> Dict[str, str]:
    """Drop to ``user`` (name or uid) and ``group`` (name or gid; default: the user's group)."""
    env = {}
    gid = None
    if group is not None:
        try:
            gid = int(group) if str(group).isdigit() else grp.getgrnam(str(group)).gr_gid
        except KeyError:
            raise LaunchError('Unknown group %r.' % (group,))
    if user is not None:
        try:
            entry = pwd.getpwuid(int(user)) if str(user).isdigit() else pwd.getpwnam(str(user))
        except KeyError:
            raise LaunchError('Unknown user %r.' % (user,))
        if gid is None:
            gid = entry.pw_gid
        os.initgroups(entry.pw_name, gid)
        os.setgid(gid)
        os.setuid(entry.pw_uid)
        env = {'HOME': entry.pw_dir, 'USER': entry.pw_name, 'LOGNAME': entry.pw_name}
    elif gid is not None:
        os.setgroups([])
        os.setgid(gid)
    return env


def read_seccomp_status(pid: Any = 'self') -> Dict[str, Optional[int]]:
    with open('/proc/%s/status' % pid) as handle:
        return seccomp_lib.parse_status_seccomp(handle.read())


def confine_self(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Do every step but the exec, in this process. Returns the report (without ``ok``)."""
    refusal = root_refusal(target_uid(spec.get('user'), os.geteuid()), bool(spec.get('allow_root')))
    if refusal:
        raise LaunchError(refusal)
    layout = cgroup_lib.Layout.from_host(spec.get('cgroup_version') or 'auto')
    cgroup = cgroup_lib.Cgroup(layout, spec['cgroup'])
    limits = dict((k, v) for k, v in (spec.get('limits') or {}).items() if v is not None)
    cgroup.ensure(limits)
    cgroup.join()
    readonly = []
    if spec.get('readonly_cgroupfs', True):
        readonly = private_readonly_cgroupfs()
    drop = capabilities_to_drop(_last_cap())
    bounding = bounding_drop_needed(os.geteuid(), own_capabilities().get('CapPrm', 0))
    drop_bounding(drop, bounding)
    env = switch_user(spec.get('user'), spec.get('group'))
    if spec.get('chdir'):
        try:
            os.chdir(spec['chdir'])
        except OSError as exc:
            raise LaunchError('Cannot change to directory %s: %s.' % (spec['chdir'], exc.strerror))
    limit_capabilities(drop)
    program = seccomp_lib.process_filter()
    seccomp_lib.install_filter(program, no_new_privs=True)
    status = read_seccomp_status()
    if status['mode'] != 2:
        raise LaunchError('The seccomp filter is not active after installing it (Seccomp: %s).' % status['mode'])
    return {
        'capabilities': check_capabilities(drop, bounding),
        'pid': os.getpid(),
        'cgroup': {'path': '/' + cgroup.path, 'version': layout.version, 'directories': cgroup.directories()},
        'readonly_mounts': readonly,
        'seccomp': {'mode': status['mode'], 'filters': status['filters'],
                    'program_sha256': seccomp_lib.program_digest(program), 'instructions': len(program)},
        'env': env,
    }


def check_capabilities(drop: Sequence[int], bounding: bool = True) -> Dict[str, List[str]]:
    """The bounding and effective sets of this process now; a dropped capability still in one is an error
    (the bounding set is checked only when it was cut, see :func:`bounding_drop_needed`)."""
    sets = own_capabilities()
    mask = capability_mask(drop)
    for key in (('CapBnd',) if bounding else ()) + ('CapInh', 'CapPrm', 'CapEff', 'CapAmb'):
        left = sets.get(key, 0) & mask
        if left:
            raise LaunchError('%s still holds %s after the drop.' % (key, ', '.join(mask_names(left))))
    return {'bounding': mask_names(sets.get('CapBnd', 0)), 'effective': mask_names(sets.get('CapEff', 0))}


class StatusFile:
    """The JSON report, written through a descriptor opened before any privilege is dropped (the command may
    run as another user that could not open the file) and closed on exec."""

    def __init__(self, path):
        self.handle = open(path, 'w') if path else None  # pylint: disable=consider-using-with

    def write(self, report: Dict[str, Any]) -> None:
        if self.handle is None:
            return
        self.handle.seek(0)
        self.handle.truncate()
        json.dump(report, self.handle)
        self.handle.flush()


def _exec(command, env_update):
    env = dict(os.environ)
    env.update(env_update or {})
    os.execvpe(command[0], command, env)


def _failure(exc):
    if isinstance(exc, (cgroup_lib.CgroupError, seccomp_lib.SeccompError)):
        return exc.msg
    if isinstance(exc, OSError):
        return '%s: %s.' % (exc.__class__.__name__, exc.strerror or exc)
    return str(exc) or exc.__class__.__name__


def run_foreground(spec: Dict[str, Any], command: List[str], status_file: Optional[str]) -> int:
    status = StatusFile(status_file)
    try:
        report = confine_self(spec)
    except Exception as exc:  # pylint: disable=broad-except
        status.write({'ok': False, 'error': _failure(exc)})
        sys.stderr.write('%s: %s\n' % (LAUNCHER_NAME, _failure(exc)))
        return EXIT_LAUNCHER_FAILED
    env = report.pop('env')
    report['ok'] = True
    status.write(report)
    try:
        _exec(command, env)
    except OSError as exc:
        message = 'Cannot execute %s: %s.' % (command[0], exc.strerror or exc)
        status.write({'ok': False, 'error': message})
        sys.stderr.write('%s: %s\n' % (LAUNCHER_NAME, message))
        return 127 if exc.errno == 2 else 126
    return EXIT_LAUNCHER_FAILED  # not reached


def run_detached(spec: Dict[str, Any], command: List[str], status_file: Optional[str]) -> int:
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, False)
    pid = os.fork()
    if pid == 0:  # the child becomes the command
        os.close(read_fd)
        stage = 'setup'
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            output = spec.get('output') or os.devnull
            out = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            os.dup2(out, 1)
            os.dup2(out, 2)
            confined = confine_self(spec)
            env = confined.pop('env')
            os.write(write_fd, ('R' + json.dumps(confined)).encode('utf-8') + b'\n')
            stage = 'exec'
            _exec(command, env)
        except Exception as exc:  # pylint: disable=broad-except
            if stage == 'exec' and isinstance(exc, OSError):
                message = 'Cannot execute %s: %s.' % (command[0], exc.strerror or exc)
            else:
                message = _failure(exc)
            try:
                os.write(write_fd, ('E' + json.dumps(message)).encode('utf-8') + b'\n')
            finally:
                os._exit(EXIT_LAUNCHER_FAILED)
    os.close(write_fd)
    data = b''
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_fd)
    lines = data.decode('utf-8', 'replace').splitlines()
    report: Optional[Dict[str, Any]] = None
    error = None
    for line in lines:
        if line.startswith('R'):
            report = json.loads(line[1:])
        elif line.startswith('E'):
            error = json.loads(line[1:])
    if error is None and report is None:
        error = 'The confined child exited before reporting.'
    status = StatusFile(status_file)
    if error is not None or report is None:
        os.waitpid(pid, 0)
        status.write({'ok': False, 'error': error})
        sys.stderr.write('%s: %s\n' % (LAUNCHER_NAME, error))
        return EXIT_LAUNCHER_FAILED
    report['ok'] = True
    report['pid'] = pid
    status.write(report)
    sys.stdout.write(json.dumps(report) + '\n')
    return 0


USAGE = ('usage: %s (--spec FILE | --spec-json JSON) [--status-file FILE] [--detach] -- COMMAND [ARG...]'
         % LAUNCHER_NAME)


def parse_args(argv: Sequence[str]) -> Tuple[Dict[str, Any], Dict[str, Any], List[str]]:
    options: Dict[str, Any] = {'spec': None, 'spec_json': None, 'status_file': None, 'detach': False}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == '--':
            break
        if arg == '--detach':
            options['detach'] = True
        elif arg in ('--spec', '--spec-json', '--status-file') and args:
            options[arg[2:].replace('-', '_')] = args.pop(0)
        else:
            raise LaunchError('Unexpected argument %r. %s' % (arg, USAGE))
    if not args:
        raise LaunchError('No command given. %s' % USAGE)
    if (options['spec'] is None) == (options['spec_json'] is None):
        raise LaunchError('Give exactly one of --spec and --spec-json. %s' % USAGE)
    if options['spec'] is not None:
        with open(options['spec']) as handle:
            spec = json.load(handle)
    else:
        spec = json.loads(options['spec_json'])
    if not isinstance(spec, dict) or not spec.get('cgroup'):
        raise LaunchError('The spec must be a JSON object with at least "cgroup".')
    return options, spec, args


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        options, spec, command = parse_args(argv)
    except (LaunchError, ValueError, OSError) as exc:
        sys.stderr.write('%s: %s\n' % (LAUNCHER_NAME, exc))
        return EXIT_LAUNCHER_FAILED
    try:
        if options['detach']:
            return run_detached(spec, command, options['status_file'])
        return run_foreground(spec, command, options['status_file'])
    except Exception as exc:  # pylint: disable=broad-except
        sys.stderr.write('%s: %s\n' % (LAUNCHER_NAME, _failure(exc)))
        return EXIT_LAUNCHER_FAILED


if __name__ == '__main__':
    raise SystemExit(main())
