# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The seccomp policy: Docker profile generation, the BPF program (run in a small classic-BPF interpreter
below) and, in a child process, the real kernel's verdicts once the filter is installed."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _seccomp as sc

RET_ALLOW = sc.SECCOMP_RET_ALLOW
RET_EPERM = sc.SECCOMP_RET_ERRNO | errno.EPERM
RET_ENOSYS = sc.SECCOMP_RET_ERRNO | errno.ENOSYS
RET_KILL = sc.SECCOMP_RET_KILL_PROCESS


def run_bpf(program, arch, nr, args=(0, 0, 0, 0, 0, 0)):
    """A classic-BPF interpreter for the instructions the policy uses, over struct seccomp_data."""
    data = struct.pack('=iIQ6Q', nr, arch, 0, *args)
    acc = 0
    pc = 0
    steps = 0
    while True:
        steps += 1
        assert steps < 10000, 'loop in BPF program'
        code, jt, jf, k = program[pc]
        pc += 1
        if code == sc.BPF_LD_W_ABS:
            acc = struct.unpack_from('=I', data, k)[0]
        elif code == sc.BPF_ALU_AND_K:
            acc &= k
        elif code == sc.BPF_JMP_JEQ_K:
            pc += jt if acc == k else jf
        elif code == sc.BPF_JMP_JGT_K:
            pc += jt if acc > k else jf
        elif code == sc.BPF_JMP_JGE_K:
            pc += jt if acc >= k else jf
        elif code == sc.BPF_JMP_JSET_K:
            pc += jt if acc & k else jf
        elif code == sc.BPF_RET_K:
            return k
        else:
            raise AssertionError('unexpected opcode %#x' % code)


# -- the policy data --------------------------------------------------------------------------------

def _allowed_always():
    names = set()
    for group in sc.ALLOW_ALWAYS.values():
        names.update(group)
    return names


def test_mount_family_is_complete():
    assert set(sc.MOUNT_FAMILY) == {
        'mount', 'umount', 'umount2', 'pivot_root', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount',
        'open_tree', 'open_tree_attr', 'mount_setattr'}


def test_mount_family_is_never_allowed():
    assert not _allowed_always() & set(sc.MOUNT_FAMILY)
    for capability, names in sc.ALLOW_WITH_CAPABILITY.items():
        assert not set(names) & set(sc.MOUNT_FAMILY), capability


def test_denied_and_allowed_do_not_overlap():
    denied = set()
    for names in sc.DENIED_ALWAYS.values():
        denied.update(names)
    allowed = _allowed_always()
    for names in sc.ALLOW_WITH_CAPABILITY.values():
        allowed.update(names)
    assert not denied & allowed
    # Kernel-wide or risky calls stay out of the profile whatever the capabilities.
    for name in ('kexec_load', 'keyctl', 'add_key', 'io_uring_setup', 'swapon', 'uselib'):
        assert name in denied


# -- Docker profile -----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def profile():
    return sc.docker_profile()


def _rules_for(profile, name):
    return [rule for rule in profile['syscalls'] if name in rule['names']]


def test_profile_default_is_eperm(profile):
    assert profile['defaultAction'] == 'SCMP_ACT_ERRNO'
    assert profile['defaultErrnoRet'] == errno.EPERM
    assert [a['architecture'] for a in profile['archMap']] == ['SCMP_ARCH_X86_64', 'SCMP_ARCH_AARCH64']
    assert profile['archMap'][0]['subArchitectures'] == ['SCMP_ARCH_X86', 'SCMP_ARCH_X32']


@pytest.mark.parametrize('name', sc.MOUNT_FAMILY)
def test_profile_denies_mount_family_with_eperm(profile, name):
    rules = _rules_for(profile, name)
    assert len(rules) == 1
    assert rules[0]['action'] == 'SCMP_ACT_ERRNO'
    assert rules[0]['errnoRet'] == errno.EPERM
    assert 'includes' not in rules[0] and 'excludes' not in rules[0]


def test_no_rule_allows_a_mount_call(profile):
    for rule in profile['syscalls']:
        if rule['action'] == 'SCMP_ACT_ALLOW':
            assert not set(rule['names']) & set(sc.MOUNT_FAMILY), rule


def test_profile_clone_rules(profile):
    clone = _rules_for(profile, 'clone')
    assert len(clone) == 2
    restricted = [r for r in clone if 'args' in r][0]
    # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET must all be clear without CAP_SYS_ADMIN.
    assert restricted['args'] == [{'index': 0, 'value': 0x7E020000, 'valueTwo': 0, 'op': 'SCMP_CMP_MASKED_EQ'}]
    assert restricted['excludes'] == {'caps': ['CAP_SYS_ADMIN']}
    free = [r for r in clone if 'args' not in r][0]
    assert free['includes'] == {'caps': ['CAP_SYS_ADMIN']}
    clone3 = _rules_for(profile, 'clone3')
    enosys = [r for r in clone3 if r['action'] == 'SCMP_ACT_ERRNO'][0]
    assert enosys['errnoRet'] == errno.ENOSYS and enosys['excludes'] == {'caps': ['CAP_SYS_ADMIN']}
    assert [r for r in clone3 if r['action'] == 'SCMP_ACT_ALLOW'][0]['includes'] == {'caps': ['CAP_SYS_ADMIN']}


def test_profile_personality_values(profile):
    values = sorted(r['args'][0]['value'] for r in _rules_for(profile, 'personality'))
    assert values == [0x0, 0x8, 0x20000, 0x20008, 0xffffffff]


def test_profile_capability_groups(profile):
    caps = {}
    for rule in profile['syscalls']:
        for cap in (rule.get('includes') or {}).get('caps', []):
            caps.setdefault(cap, set()).update(rule['names'])
    assert {'setns', 'unshare', 'bpf', 'clone', 'clone3'} <= caps['CAP_SYS_ADMIN']
    assert 'ptrace' in _allowed_always()  # as Docker does on kernels >= 4.8
    assert 'chroot' in caps['CAP_SYS_CHROOT']
    assert caps['CAP_SYS_PTRACE'] == {'kcmp', 'pidfd_getfd', 'process_madvise'}
    assert caps['CAP_SYS_NICE'] == {'get_mempolicy', 'set_mempolicy', 'set_mempolicy_home_node', 'mbind'}
    # Kernel modules and port I/O: no capability opens them (privileged containers are refused too).
    assert 'CAP_SYS_MODULE' not in caps and 'CAP_SYS_RAWIO' not in caps


# Calls Docker's default profile denies (or confine denies outright): no rule of the profile may allow them,
# whatever the capabilities - they get the default EPERM.
NEVER_ALLOWED = ('userfaultfd', 'move_pages', 'migrate_pages', 'lsm_set_self_attr', 'lsm_get_self_attr',
                 'lsm_list_modules', 'init_module', 'finit_module', 'delete_module', 'iopl', 'ioperm',
                 'kexec_load', 'kexec_file_load', 'keyctl', 'io_uring_setup')


@pytest.mark.parametrize('name', NEVER_ALLOWED)
def test_profile_never_allows(profile, name):
    assert _rules_for(profile, name) == []
    assert any(name in names for names in sc.DENIED_ALWAYS.values()), name


def test_profile_denies_af_vsock_sockets(profile):
    rules = _rules_for(profile, 'socket')
    assert rules == [{'names': ['socket'], 'action': 'SCMP_ACT_ALLOW', 'comment': 'mtd: socket, not AF_VSOCK',
                      'args': [{'index': 0, 'value': 40, 'valueTwo': 0, 'op': 'SCMP_CMP_NE'}]}]
    assert 'socket' not in _allowed_always()
    # socketpair (AF_UNIX only) and the i386 socketcall multiplexer stay allowed, as in Docker's profile.
    assert {'socketpair', 'socketcall'} <= _allowed_always()


def test_profile_allows_the_basics(profile):
    always = set()
    for rule in profile['syscalls']:
        if rule['action'] == 'SCMP_ACT_ALLOW' and 'includes' not in rule and 'args' not in rule:
            always.update(rule['names'])
    for name in ('read', 'write', 'openat', 'execve', 'exit_group', 'futex', 'faccessat2', 'close_range',
                 'epoll_pwait2', 'getpid', 'newfstatat', 'statx', 'connect', 'rt_sigreturn', 'statmount'):
        assert name in always, name


def test_canonical_json_and_digest_ignore_formatting(profile):
    text = sc.canonical_json(profile)
    assert ' ' not in text.split('"comment"')[0]
    pretty = json.dumps(profile, indent=4, sort_keys=False)
    assert sc.profile_digest(pretty) == sc.profile_digest(profile) == sc.profile_digest(text)
    changed = json.loads(text)
    changed['defaultErrnoRet'] = errno.ENOSYS
    assert sc.profile_digest(changed) != sc.profile_digest(profile)


def test_security_opt_round_trip(profile):
    opt = sc.seccomp_security_opt(profile)
    assert opt.startswith('seccomp={')
    options = ['no-new-privileges', opt]
    assert sc.find_seccomp_opt(options) == (1, opt[len('seccomp='):])
    assert sc.security_opt_digest(options) == sc.profile_digest(profile)
    # The same profile indented, in the old colon form, still compares equal.
    assert sc.security_opt_digest(['seccomp:' + json.dumps(profile, indent=2)]) == sc.profile_digest(profile)
    assert sc.security_opt_digest(['seccomp=unconfined']) is None
    assert sc.security_opt_digest(['seccomp={broken']) is None
    assert sc.security_opt_digest(None) is None
    assert sc.find_seccomp_opt(['label=disable']) == (None, None)


@pytest.mark.parametrize('text, expected', [
    ('Name:\tsh\nSeccomp:\t2\nSeccomp_filters:\t1\n', {'mode': 2, 'filters': 1}),
    ('Seccomp:\t0\n', {'mode': 0, 'filters': None}),
    ('', {'mode': None, 'filters': None}),
])
def test_parse_status_seccomp(text, expected):
    assert sc.parse_status_seccomp(text) == expected


# -- BPF program --------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def x86():
    return sc.process_filter('x86_64')


@pytest.fixture(scope='module')
def arm64():
    return sc.process_filter('aarch64')


def test_program_starts_by_loading_the_arch_and_kills_unknown_abis(x86, arm64):
    for program in (x86, arm64):
        assert program[0] == (sc.BPF_LD_W_ABS, 0, 0, sc.SECCOMP_DATA_ARCH)
        assert run_bpf(program, 0xdeadbeef, 39) == RET_KILL
    # An x86_64 filter does not know aarch64 and the other way round.
    assert run_bpf(x86, sc.AUDIT_ARCH_AARCH64, 172) == RET_KILL
    assert run_bpf(arm64, sc.AUDIT_ARCH_X86_64, 39) == RET_KILL


def test_program_structure(x86):
    assert len(x86) < 96
    assert sc.encode_program(x86) == b''.join(struct.pack('=HBBI', *ins) for ins in x86)
    assert len(sc.encode_program(x86)) == 8 * len(x86)
    returns = [ins[3] for ins in x86 if ins[0] == sc.BPF_RET_K]
    assert sorted(returns) == sorted([RET_KILL, RET_EPERM, RET_ENOSYS, RET_ALLOW])
    for _code, jt, jf, _k in x86:
        assert 0 <= jt <= 255 and 0 <= jf <= 255


# (abi, audit arch, number, expected) - numbers from the kernel's syscall tables.
X86_CASES = [
    ('mount', sc.AUDIT_ARCH_X86_64, 165, RET_EPERM),
    ('umount2', sc.AUDIT_ARCH_X86_64, 166, RET_EPERM),
    ('pivot_root', sc.AUDIT_ARCH_X86_64, 155, RET_EPERM),
    ('open_tree', sc.AUDIT_ARCH_X86_64, 428, RET_EPERM),
    ('move_mount', sc.AUDIT_ARCH_X86_64, 429, RET_EPERM),
    ('fsopen', sc.AUDIT_ARCH_X86_64, 430, RET_EPERM),
    ('fsconfig', sc.AUDIT_ARCH_X86_64, 431, RET_EPERM),
    ('fsmount', sc.AUDIT_ARCH_X86_64, 432, RET_EPERM),
    ('fspick', sc.AUDIT_ARCH_X86_64, 433, RET_EPERM),
    ('mount_setattr', sc.AUDIT_ARCH_X86_64, 442, RET_EPERM),
    ('open_tree_attr', sc.AUDIT_ARCH_X86_64, 467, RET_EPERM),
    ('getpid', sc.AUDIT_ARCH_X86_64, 39, RET_ALLOW),
    ('newfstatat', sc.AUDIT_ARCH_X86_64, 262, RET_ALLOW),
    ('setns', sc.AUDIT_ARCH_X86_64, 308, RET_EPERM),
    ('clone3', sc.AUDIT_ARCH_X86_64, 435, RET_ENOSYS),
    ('x32 setns', sc.AUDIT_ARCH_X86_64, 0x40000000 | 308, RET_EPERM),
    ('i386 setns', sc.AUDIT_ARCH_I386, 346, RET_EPERM),
    ('i386 clone3', sc.AUDIT_ARCH_I386, 435, RET_ENOSYS),
    ('statmount', sc.AUDIT_ARCH_X86_64, 457, RET_ALLOW),
    ('file_setattr', sc.AUDIT_ARCH_X86_64, 469, RET_ALLOW),
    ('future call', sc.AUDIT_ARCH_X86_64, 470, RET_ENOSYS),
    ('far future', sc.AUDIT_ARCH_X86_64, 1000, RET_ENOSYS),
    ('x32 mount', sc.AUDIT_ARCH_X86_64, 0x40000000 | 165, RET_EPERM),
    ('x32 fsopen', sc.AUDIT_ARCH_X86_64, 0x40000000 | 430, RET_EPERM),
    ('x32 getpid', sc.AUDIT_ARCH_X86_64, 0x40000000 | 39, RET_ALLOW),
    ('x32 rt_sigaction', sc.AUDIT_ARCH_X86_64, 0x40000000 | 512, RET_ALLOW),
    ('x32 last private', sc.AUDIT_ARCH_X86_64, 0x40000000 | 547, RET_ALLOW),
    ('x32 future', sc.AUDIT_ARCH_X86_64, 0x40000000 | 470, RET_ENOSYS),
    ('x32 beyond', sc.AUDIT_ARCH_X86_64, 0x40000000 | 548, RET_ENOSYS),
    ('i386 mount', sc.AUDIT_ARCH_I386, 21, RET_EPERM),
    ('i386 umount', sc.AUDIT_ARCH_I386, 22, RET_EPERM),
    ('i386 umount2', sc.AUDIT_ARCH_I386, 52, RET_EPERM),
    ('i386 pivot_root', sc.AUDIT_ARCH_I386, 217, RET_EPERM),
    ('i386 fsopen', sc.AUDIT_ARCH_I386, 430, RET_EPERM),
    ('i386 getpid', sc.AUDIT_ARCH_I386, 20, RET_ALLOW),
    ('i386 165 is getresuid, not mount', sc.AUDIT_ARCH_I386, 165, RET_ALLOW),
    ('i386 future', sc.AUDIT_ARCH_I386, 470, RET_ENOSYS),
]
ARM64_CASES = [
    ('mount', sc.AUDIT_ARCH_AARCH64, 40, RET_EPERM),
    ('umount2', sc.AUDIT_ARCH_AARCH64, 39, RET_EPERM),
    ('pivot_root', sc.AUDIT_ARCH_AARCH64, 41, RET_EPERM),
    ('fsmount', sc.AUDIT_ARCH_AARCH64, 432, RET_EPERM),
    ('open_tree_attr', sc.AUDIT_ARCH_AARCH64, 467, RET_EPERM),
    ('getpid', sc.AUDIT_ARCH_AARCH64, 172, RET_ALLOW),
    ('165 is getrusage here', sc.AUDIT_ARCH_AARCH64, 165, RET_ALLOW),
    ('setns', sc.AUDIT_ARCH_AARCH64, 268, RET_EPERM),
    ('clone3', sc.AUDIT_ARCH_AARCH64, 435, RET_ENOSYS),
    ('arm setns', sc.AUDIT_ARCH_ARM, 375, RET_EPERM),
    ('future', sc.AUDIT_ARCH_AARCH64, 470, RET_ENOSYS),
    ('arm mount', sc.AUDIT_ARCH_ARM, 21, RET_EPERM),
    ('arm umount2', sc.AUDIT_ARCH_ARM, 52, RET_EPERM),
    ('arm pivot_root', sc.AUDIT_ARCH_ARM, 218, RET_EPERM),
    ('arm getpid', sc.AUDIT_ARCH_ARM, 20, RET_ALLOW),
    ('arm set_tls (private)', sc.AUDIT_ARCH_ARM, 0x0f0005, RET_ALLOW),
    ('arm beyond private', sc.AUDIT_ARCH_ARM, 0x0f0800, RET_ENOSYS),
    ('arm future', sc.AUDIT_ARCH_ARM, 470, RET_ENOSYS),
]


@pytest.mark.parametrize('what, arch, nr, expected', X86_CASES, ids=[c[0] for c in X86_CASES])
def test_x86_64_verdicts(x86, what, arch, nr, expected):
    assert run_bpf(x86, arch, nr) == expected


@pytest.mark.parametrize('what, arch, nr, expected', ARM64_CASES, ids=[c[0] for c in ARM64_CASES])
def test_aarch64_verdicts(arm64, what, arch, nr, expected):
    assert run_bpf(arm64, arch, nr) == expected


def test_every_number_below_the_table_end_is_allowed_unless_denied(x86):
    denied = set(sc.deny_numbers('x86_64', sc.MOUNT_FAMILY + ('setns',)))
    assert denied == {155, 165, 166, 308, 428, 429, 430, 431, 432, 433, 442, 467}
    for nr in range(sc.LAST_KNOWN_SYSCALL + 1):
        verdict = run_bpf(x86, sc.AUDIT_ARCH_X86_64, nr)
        expected = RET_EPERM if nr in denied else RET_ENOSYS if nr == 435 else RET_ALLOW
        assert verdict == expected, nr


CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
# What glibc passes for fork() and pthread_create() (SIGCHLD, CLONE_VM|CLONE_FS|CLONE_FILES|...).
FORK_FLAGS, THREAD_FLAGS = 0x01200011, 0x003d0f00


@pytest.mark.parametrize('machine, abi_arch, numbers', [
    ('x86_64', sc.AUDIT_ARCH_X86_64, {'clone': 56, 'unshare': 272}),
    ('x86_64', sc.AUDIT_ARCH_X86_64, {'clone': 0x40000000 | 56, 'unshare': 0x40000000 | 272}),  # x32
    ('x86_64', sc.AUDIT_ARCH_I386, {'clone': 120, 'unshare': 310}),
    ('aarch64', sc.AUDIT_ARCH_AARCH64, {'clone': 220, 'unshare': 97}),
    ('aarch64', sc.AUDIT_ARCH_ARM, {'clone': 120, 'unshare': 337}),
])
def test_new_namespaces_are_denied_plain_clone_is_not(machine, abi_arch, numbers):
    program = sc.process_filter(machine)
    for name, nr in numbers.items():
        for flags in (CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID | CLONE_NEWNET, FORK_FLAGS | CLONE_NEWUSER):
            assert run_bpf(program, abi_arch, nr, (flags, 0, 0, 0, 0, 0)) == RET_EPERM, (name, hex(flags))
        for flags in (0, FORK_FLAGS, THREAD_FLAGS, 0x200):  # 0x200 = CLONE_FS (unshare of the cwd and umask)
            assert run_bpf(program, abi_arch, nr, (flags, 0, 0, 0, 0, 0)) == RET_ALLOW, (name, hex(flags))


def test_namespace_mask_is_dockers():
    assert sc.namespace_flag_mask() == 0x7E020000


def test_arguments_do_not_matter(x86):
    # The policy never looks at arguments: a mount with any flags is denied.
    assert run_bpf(x86, sc.AUDIT_ARCH_X86_64, 165, (0, 0, 0, 0x1000, 0, 0)) == RET_EPERM


@pytest.mark.parametrize('machine, expected', [('x86_64', 'x86_64'), ('amd64', 'x86_64'), ('aarch64', 'aarch64'),
                                               ('arm64', 'aarch64')])
def test_normalise_machine(machine, expected):
    assert sc.normalise_machine(machine) == expected


def test_unsupported_machine_is_a_clear_error():
    with pytest.raises(sc.SeccompError, match="no system call table for the 'riscv64' architecture"):
        sc.process_filter('riscv64')


def test_program_digest_is_stable(x86):
    assert sc.program_digest(x86) == sc.program_digest(sc.process_filter('x86_64'))
    assert sc.program_digest(x86) != sc.program_digest(sc.process_filter('aarch64'))


# -- the real kernel --------------------------------------------------------------------------------

def _fork_works():
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the grandchild
        os._exit(7)
    return os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 7


def _errno_of(libc, nr, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(nr, *args)
    return 0 if rc >= 0 else ctypes.get_errno()


@pytest.mark.skipif(os.uname().machine not in ('x86_64', 'aarch64'), reason='no syscall table for this machine')
def test_installed_filter_denies_mount_family_in_a_child():
    """Fork, install the filter in the child, report the kernel's errnos back through a pipe."""
    machine = sc.normalise_machine(os.uname().machine)
    umount2 = sc.SYSCALL_TABLES[machine]['umount2']
    fsopen = sc.SYSCALL_TABLES[machine]['fsopen']
    getpid = 39 if machine == 'x86_64' else 172
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_fd)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            sc.install_filter()
            with open('/proc/self/status') as handle:
                status = sc.parse_status_seccomp(handle.read())
            result = {
                'status': status,
                'umount2': _errno_of(libc, umount2, b'/mtd-no-such-dir', 0),
                'fsopen': _errno_of(libc, fsopen, b'cgroup2', 0),
                'future': _errno_of(libc, 470, 0),
                # without the filter: EBADF, EINVAL (or EPERM when user namespaces are off), 0, and EFAULT
                'setns': _errno_of(libc, sc.SYSCALL_TABLES[machine]['setns'], -1, 0),
                'unshare_user': _errno_of(libc, sc.SYSCALL_TABLES[machine]['unshare'], CLONE_NEWUSER),
                'unshare_files': _errno_of(libc, sc.SYSCALL_TABLES[machine]['unshare'], 0x400),
                'clone3': _errno_of(libc, 435, 0, 0),
                'forked': _fork_works(),
                'getpid': libc.syscall(getpid) == os.getpid(),
                'stat': os.stat('/').st_ino > 0,
            }
            os.write(write_fd, json.dumps(result).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    data = b''
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        data += chunk
    os.close(read_fd)
    dummy, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    result = json.loads(data)
    assert result['status']['mode'] == 2
    assert result['umount2'] == errno.EPERM
    assert result['fsopen'] == errno.EPERM
    assert result['future'] == errno.ENOSYS
    assert result['setns'] == errno.EPERM
    assert result['unshare_user'] == errno.EPERM
    assert result['unshare_files'] == 0
    assert result['clone3'] == errno.ENOSYS
    assert result['forked']
    assert result['getpid'] and result['stat']
