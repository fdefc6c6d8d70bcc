# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""confine: the pure container-mode decisions (module_utils/_confine.py), the launcher's pure parts, and the
module's main() against a fake cgroupfs and a fake engine (idempotence by profile content, check mode, errors)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import struct
import tempfile

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _cgroup as cgroup_lib
from ansible_collections.mtd.containers.plugins.module_utils import _confine as cf
from ansible_collections.mtd.containers.plugins.module_utils import _confine_launcher as launcher
from ansible_collections.mtd.containers.plugins.module_utils import _seccomp as sc
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.modules import confine
from ansible_collections.mtd.containers.tests.unit.plugins.modules import module_harness

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'module_utils', 'fixtures')
MiB = 1 << 20


def _load_fake_engine():
    spec = importlib.util.spec_from_file_location('mtd_fake_engine', os.path.join(FIXTURES, 'fake_engine.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake_engine = _load_fake_engine()


# -- pure decisions -------------------------------------------------------------------------------------

@pytest.mark.parametrize('version, major', [('20.10.24+dfsg1', 20), ('26.1.4', 26), ('v27.0', 27), ('', None),
                                            (None, None), ('dev', None)])
def test_engine_major(version, major):
    assert cf.engine_major(version) == major


def test_api_at_least():
    assert cf.api_at_least('1.41', (1, 41)) and cf.api_at_least('1.45', (1, 41))
    assert not cf.api_at_least('1.40', (1, 41)) and not cf.api_at_least(None, (1, 41))


def test_cgroup_parent_path():
    assert cf.cgroup_parent_path('mtd', 'web-1') == '/mtd/web-1'
    assert cf.cgroup_parent_path('/a/b/', 'web') == '/a/b/web'
    assert cf.cgroup_parent_path('', 'web') == '/web'


def _inspect(binds=None, mounts=None, privileged=False, name='/web-1', host_mounts=None, **host):
    host_config = {'Binds': binds, 'Mounts': host_mounts, 'Privileged': privileged}
    host_config.update(host)
    return {'Id': 'f' * 64, 'Name': name, 'HostConfig': host_config, 'Mounts': mounts or []}


@pytest.mark.parametrize('binds, reason', [
    (['/var/run/docker.sock:/var/run/docker.sock'], 'exposes the socket /run/docker.sock'),
    (['/run/docker.sock:/sock:ro'], 'exposes the socket /run/docker.sock'),
    (['/var/run:/host-run'], 'exposes the socket /run/docker.sock'),
    (['/:/host:ro'], 'exposes the socket /run/docker.sock'),
    (['/run/dbus/system_bus_socket:/run/dbus/system_bus_socket'], 'exposes the socket /run/dbus/system_bus_socket'),
    (['/var/run/dbus:/dbus'], 'exposes the socket /run/dbus/system_bus_socket'),
    (['/run/containerd:/c'], 'exposes the socket /run/containerd/containerd.sock'),
    (['/run/user/1000/bus:/bus'], 'exposes the user sockets under /run/user (D-Bus session buses)'),
    (['/sys/fs/cgroup:/sys/fs/cgroup:rw'], 'exposes the host cgroup filesystem /sys/fs/cgroup'),
    (['/sys:/host-sys'], 'exposes the host cgroup filesystem /sys/fs/cgroup'),
    (['/var/run/../run/docker.sock:/s'], 'exposes the socket /run/docker.sock'),
])
def test_forbidden_binds(binds, reason):
    found = cf.forbidden_binds(_inspect(binds=binds))
    assert found == [(binds[0].split(':')[0], reason)]


def test_harmless_binds_and_volumes_pass():
    inspect = _inspect(binds=['/srv/data:/data', 'named:/vol', '/run/lock:/lock'],
                       mounts=[{'Type': 'volume', 'Name': 'named', 'Destination': '/vol'}],
                       host_mounts=[{'Type': 'bind', 'Source': '/etc/app', 'Target': '/etc/app'}])
    assert cf.forbidden_binds(inspect) == []
    assert cf.bind_sources(inspect) == ['/srv/data', '/run/lock', '/etc/app']


def test_engine_socket_of_another_path_is_forbidden_too():
    inspect = _inspect(host_mounts=[{'Type': 'bind', 'Source': '/srv/engine', 'Target': '/e'}])
    assert cf.forbidden_binds(inspect, ['/srv/engine/docker.sock']) == [
        ('/srv/engine', 'exposes the socket /srv/engine/docker.sock')]


@pytest.mark.parametrize('privileged, version, refused, ignores', [
    (True, '20.10.24+dfsg1', True, True), (True, '25.0.5', True, True), (True, '26.0.0', True, False),
    (True, '29.1.2', True, False), (True, None, True, False), (False, '20.10.24', False, False),
    (False, '27.5.1', False, False),
])
def test_privileged_refusal_on_every_version(privileged, version, refused, ignores):
    message = cf.privileged_refusal(_inspect(privileged=privileged), version)
    assert bool(message) == refused
    if refused:
        assert message.startswith('Container web-1 is privileged: it holds every capability')
        assert ('Docker %s ignores seccomp profiles' % version in message) == ignores
        assert 'fail' not in message  # says what to do instead
        assert '--cap-add SYS_ADMIN' in message


@pytest.mark.parametrize('host, refused', [
    ({'PidMode': 'host'}, "shares the host's PID namespace (--pid host)"),
    ({'IpcMode': 'host'}, "shares the host's IPC namespace (--ipc host)"),
    ({'PidMode': 'host', 'IpcMode': 'host'}, "shares the host's PID and IPC namespaces (--pid host, --ipc host): "),
    ({'PidMode': '', 'IpcMode': 'private'}, None),
    ({'PidMode': 'container:db', 'IpcMode': 'shareable'}, None),
    ({'NetworkMode': 'host', 'UTSMode': 'host'}, None),
    ({}, None),
])
def test_host_namespace_refusal(host, refused):
    message = cf.host_namespace_refusal(_inspect(**host))
    if refused is None:
        assert message is None
    else:
        assert message.startswith('Container web-1 ' + refused)
        assert message.endswith('and run confine again.')


@pytest.mark.parametrize('host, limits, conflict', [
    ({'NanoCpus': 2000000000}, {'cpu_quota': 50000, 'cpu_period': 100000}, True),
    ({'NanoCpus': 500000000}, {'cpu_quota': 50000, 'cpu_period': 100000}, False),
    ({'CpuQuota': 150000, 'CpuPeriod': 100000}, {'cpu_quota': 100000, 'cpu_period': 100000}, True),
    ({'NanoCpus': 2000000000}, {'cpu_quota': 'max', 'cpu_period': 100000}, False),
    ({}, {'cpu_quota': 50000, 'cpu_period': 100000}, False),
    ({'NanoCpus': 2000000000}, {}, False),
])
def test_cpu_conflict(host, limits, conflict):
    assert bool(cf.cpu_conflict(_inspect(**host), limits)) == conflict


def test_confinement_comparison_is_by_profile_content():
    desired = cf.desired_confinement('/mtd/web-1', cgroupns=True)
    host_config = cf.confine_host_config({'SecurityOpt': ['seccomp=unconfined', 'no-new-privileges'],
                                          'CgroupParent': '', 'Memory': 1}, '/mtd/web-1')
    assert host_config['SecurityOpt'][0] == 'no-new-privileges'
    assert len(host_config['SecurityOpt']) == 2 and host_config['SecurityOpt'][1].startswith('seccomp={')
    assert host_config['CgroupnsMode'] == 'private' and host_config['Memory'] == 1
    current = cf.current_confinement({'HostConfig': host_config})
    assert cf.confinement_differences(current, desired) == []
    # The engine may hand the profile back re-indented: still the same content.
    pretty = dict(host_config, SecurityOpt=['seccomp=' + json.dumps(sc.docker_profile(), indent=2)])
    assert cf.confinement_differences(cf.current_confinement({'HostConfig': pretty}), desired) == []
    # A profile file path or another profile is a difference; so is another parent or the host cgroupns.
    for change, key in ((dict(host_config, SecurityOpt=['seccomp=/etc/docker/seccomp.json']), 'seccomp_sha256'),
                        (dict(host_config, CgroupParent='/docker'), 'cgroup_parent'),
                        (dict(host_config, CgroupnsMode='host'), 'cgroupns_mode')):
        assert cf.confinement_differences(cf.current_confinement({'HostConfig': change}), desired) == [key]
    # Without cgroup namespace support the mode is not compared.
    no_ns = cf.desired_confinement('/mtd/web-1', cgroupns=False)
    assert cf.confinement_differences(cf.current_confinement({'HostConfig': dict(host_config, CgroupnsMode='host')}),
                                      no_ns) == []
    assert 'CgroupnsMode' not in cf.confine_host_config({}, '/x', cgroupns=False)


def test_plan_layer_copy():
    changes = [
        {'Path': '/etc', 'Kind': 0}, {'Path': '/etc/passwd', 'Kind': 0}, {'Path': '/data', 'Kind': 0},
        {'Path': '/data/new', 'Kind': 1}, {'Path': '/data/new/a', 'Kind': 1}, {'Path': '/data/new/b/c', 'Kind': 1},
        {'Path': '/bin', 'Kind': 0}, {'Path': '/bin/vi', 'Kind': 2}, {'Path': '/data/new/gone', 'Kind': 2},
        {'Path': '/vol', 'Kind': 1}, {'Path': '/vol/file', 'Kind': 1}, {'Path': '/probe', 'Kind': 1},
    ]
    copy_plan, deleted = cf.plan_layer_copy(changes, exclude=['/vol'])
    assert copy_plan == [('/bin', 0), ('/data', 0), ('/data/new', 1), ('/etc', 0), ('/etc/passwd', 0),
                         ('/probe', 1)]
    assert deleted == ['/bin/vi']
    assert cf.plan_layer_copy([], exclude=[]) == ([], [])
    assert cf.mount_destinations({'Mounts': [{'Destination': '/vol'}, {'Destination': '/a'}]}) == ['/a', '/vol']


# -- the launcher's pure parts ------------------------------------------------------------------------

def test_readonly_mounts_keep_flags():
    text = ('31 23 0:28 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755\n'
            '35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,relatime - cgroup cgroup rw,memory\n'
            '36 20 0:40 / /run/other-cgroup2 rw - cgroup2 cgroup2 rw\n'
            '37 20 0:41 / /tmp rw - tmpfs tmpfs rw\n')
    base = launcher.MS_REMOUNT | launcher.MS_BIND | launcher.MS_RDONLY
    assert launcher.readonly_mounts(text) == [
        ('/sys/fs/cgroup', base | launcher.MS_NOSUID | launcher.MS_NODEV | launcher.MS_NOEXEC | launcher.MS_RELATIME),
        ('/sys/fs/cgroup/memory', base | launcher.MS_NOSUID | launcher.MS_RELATIME),
        ('/run/other-cgroup2', base),
    ]


@pytest.mark.parametrize('argv, message', [
    (['--spec-json', '{"cgroup": "mtd/x"}'], 'No command given'),
    (['--', 'true'], 'exactly one of --spec and --spec-json'),
    (['--bogus', '--', 'true'], "Unexpected argument '--bogus'"),
    (['--spec-json', '{}', '--', 'true'], 'at least "cgroup"'),
])
def test_launcher_arguments(argv, message):
    with pytest.raises(launcher.LaunchError, match=message):
        launcher.parse_args(argv)


def test_launcher_arguments_ok(tmp_path):
    spec = tmp_path / 'spec.json'
    spec.write_text('{"cgroup": "mtd/web", "limits": {"pids": 8}}')
    options, parsed, command = launcher.parse_args(['--spec', str(spec), '--detach', '--status-file', 'S', '--',
                                                    'sleep', '5'])
    assert options['detach'] and options['status_file'] == 'S'
    assert parsed == {'cgroup': 'mtd/web', 'limits': {'pids': 8}}
    assert command == ['sleep', '5']


def test_launcher_main_reports_bad_usage(capsys):
    assert launcher.main(['--spec-json', 'not json', '--', 'true']) == launcher.EXIT_LAUNCHER_FAILED
    assert capsys.readouterr().err.startswith('mtd-confine: ')


def test_capabilities_kept_and_dropped():
    assert launcher.CAPABILITY_NAMES.index('SYS_ADMIN') == 21 and launcher.CAPABILITY_NAMES.index('BPF') == 39
    assert len(launcher.CAPABILITY_NAMES) == 41 and launcher.CAPABILITY_NAMES[-1] == 'CHECKPOINT_RESTORE'
    drop = [launcher.capability_name(n) for n in launcher.capabilities_to_drop(40)]
    for name in ('SYS_ADMIN', 'SYS_PTRACE', 'SYS_MODULE', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'SYS_RAWIO', 'SYS_BOOT',
                 'SYS_TIME', 'NET_ADMIN', 'NET_RAW', 'MKNOD', 'SETFCAP', 'BPF', 'PERFMON', 'SYS_CHROOT',
                 'CHECKPOINT_RESTORE', 'SYS_RESOURCE', 'MAC_ADMIN', 'LINUX_IMMUTABLE'):
        assert name in drop, name
    assert sorted(set(launcher.CAPABILITY_NAMES) - set(drop)) == sorted(launcher.KEPT_CAPABILITIES)
    # A capability newer than the table (a future kernel's 41) is dropped too.
    assert launcher.capabilities_to_drop(41)[-1] == 41 and launcher.capability_name(41) == 'CAP_41'
    assert launcher.capability_numbers(['CAP_SYS_ADMIN', 'chown']) == [0, 21]
    with pytest.raises(launcher.LaunchError, match="Unknown capability 'CAP_FLY'"):
        launcher.capability_numbers(['CAP_FLY'])


def test_capability_masks_from_proc_status():
    status = ('Name:\tsh\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n'
              'CapBnd:\t00000000200045f9\nCapAmb:\t0000000000000000\n')
    sets = launcher.parse_status_capabilities(status)
    assert sets['CapInh'] == 0 and sets['CapPrm'] == (1 << 41) - 1
    assert launcher.mask_names(sets['CapBnd']) == ['CHOWN', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
                                                   'NET_BIND_SERVICE', 'IPC_LOCK', 'AUDIT_WRITE']
    assert launcher.capability_mask(launcher.capability_numbers(launcher.KEPT_CAPABILITIES)) == 0x200045f9


@pytest.mark.parametrize('euid, permitted, needed', [
    (0, 0x1ffffffffff, True), (0, 0, True), (1000, 0, False), (1000, 1 << 12, True),
])
def test_bounding_drop_needed(euid, permitted, needed):
    assert launcher.bounding_drop_needed(euid, permitted) == needed


@pytest.mark.parametrize('uid, allow_root, refused', [(0, False, True), (0, True, False), (65534, False, False),
                                                      (1000, True, False)])
def test_root_refusal(uid, allow_root, refused):
    assert bool(launcher.root_refusal(uid, allow_root)) == refused


def test_target_uid():
    assert launcher.target_uid(None, 0) == 0 and launcher.target_uid(None, 1000) == 1000
    assert launcher.target_uid('root', 1000) == 0 and launcher.target_uid('0', 1000) == 0
    assert launcher.target_uid('nobody', 0) == 65534 and launcher.target_uid('65534', 0) == 65534
    with pytest.raises(launcher.LaunchError, match="Unknown user 'mtd-no-such-user' on this host"):
        launcher.target_uid('mtd-no-such-user', 0)


def test_launcher_refuses_root_before_touching_anything(monkeypatch):
    touched = []
    monkeypatch.setattr(cgroup_lib.Layout, 'from_host', staticmethod(lambda *a, **k: touched.append(a)))
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    with pytest.raises(launcher.LaunchError, match='^The command would run as root'):
        launcher.confine_self({'cgroup': 'mtd/x'})
    assert touched == []


@pytest.mark.skipif(os.geteuid() != 0, reason='dropping from the bounding set needs CAP_SETPCAP (root)')
def test_capability_drop_on_the_real_kernel():
    """In a child: drop as the launcher does, then read /proc/self/status and try a SYS_ADMIN-only call."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_fd)
            drop = launcher.capabilities_to_drop(launcher._last_cap())
            launcher.drop_bounding(drop)
            launcher.limit_capabilities(drop)
            report = launcher.check_capabilities(drop)
            try:
                socket.sethostname(os.uname().nodename)  # needs CAP_SYS_ADMIN
                report['sethostname'] = 'OK'
            except OSError as exc:
                report['sethostname'] = exc.errno
            os.write(write_fd, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    data = os.read(read_fd, 65536)
    os.close(read_fd)
    assert os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 0
    report = json.loads(data)
    assert set(report['bounding']) <= set(launcher.KEPT_CAPABILITIES)
    assert set(report['effective']) <= set(launcher.KEPT_CAPABILITIES)
    assert 'SETUID' in report['effective'] and 'SYS_ADMIN' not in report['bounding']
    assert report['sethostname'] == 1  # EPERM


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to become an unprivileged user first')
def test_unprivileged_launcher_skips_the_bounding_set_on_the_real_kernel():
    """A launcher without capabilities (a delegated cgroup) cannot cut the bounding set and does not need to."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            drop = launcher.capabilities_to_drop(launcher._last_cap())
            bounding = launcher.bounding_drop_needed(os.geteuid(), launcher.own_capabilities().get('CapPrm', 0))
            launcher.drop_bounding(drop, bounding)
            launcher.limit_capabilities(drop)
            report = launcher.check_capabilities(drop, bounding)
            code = 0 if (not bounding and report['effective'] == [] and 'SYS_ADMIN' in report['bounding']) else 2
        finally:
            os._exit(code)
    assert os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 0


def test_launcher_files_are_the_module_utils_sources():
    files = confine.launcher_files('/usr/bin/python3')
    assert sorted(files) == ['_cgroup.py', '_common.py', '_seccomp.py', 'mtd-confine']
    content, mode = files['mtd-confine']
    assert content.startswith('#!/usr/bin/python3\n# -*- coding: utf-8 -*-')
    assert mode == 0o755 and files['_cgroup.py'][1] == 0o644
    assert 'class Cgroup' in files['_cgroup.py'][0]
    assert 'def process_filter' in files['_seccomp.py'][0]
    assert 'class MtdError' in files['_common.py'][0]


# -- main() -------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def no_docker_host(monkeypatch):
    monkeypatch.delenv('DOCKER_HOST', raising=False)


def run_module(args):
    return module_harness.run_module(confine.main, args, expect_failure=None, default_changed=False)


V1_FILES = {
    'memory': {'memory.limit_in_bytes': '9223372036854771712', 'memory.memsw.limit_in_bytes': '9223372036854771712',
               'memory.usage_in_bytes': '0', 'memory.use_hierarchy': '1', 'cgroup.procs': ''},
    'cpu': {'cpu.cfs_quota_us': '-1', 'cpu.cfs_period_us': '100000', 'cpu.shares': '1024', 'cgroup.procs': ''},
    'pids': {'pids.max': 'max', 'pids.current': '0', 'cgroup.procs': ''},
}


@pytest.fixture
def cgroupfs(tmp_path, monkeypatch):
    """A v1 layout in tmp_path; levels are pre-created by ``make_level``. Layout.from_host returns it."""
    mounts = {}
    for controller, files in V1_FILES.items():
        root = tmp_path / controller
        root.mkdir()
        for name, value in files.items():
            (root / name).write_text(value)
        mounts[controller] = str(root)
    layout = cgroup_lib.Layout(1, mounts, None)

    def from_host(prefer='auto', mountinfo_path=None):
        if str(prefer) == '2':
            raise cgroup_lib.CgroupError('cgroup_version 2 was asked for, but no cgroup2 filesystem is mounted '
                                         'on this host.')
        return layout

    monkeypatch.setattr(cgroup_lib.Layout, 'from_host', staticmethod(from_host))

    def make_level(path, **values):
        for controller, files in V1_FILES.items():
            directory = os.path.join(mounts[controller], path)
            os.makedirs(directory)
            for name, value in files.items():
                with open(os.path.join(directory, name), 'w') as handle:
                    handle.write(str(values.get(name, value)))
    layout.make_level = make_level
    return layout


def test_process_check_mode_changes_nothing(cgroupfs, tmp_path):
    result = run_module({'mode': 'process', 'name': 'job', 'command': ['sleep', '1'], 'user': 'nobody',
                         'launcher_dir': str(tmp_path / 'libexec'), 'limits': {'memory': '64m', 'pids': 8},
                         '_ansible_check_mode': True, '_ansible_diff': True})
    assert result['changed'] is True
    assert result['limits'] == {'memory': 64 * MiB, 'memory_swap': 64 * MiB, 'pids': 8}
    assert result['limits_before'] is None
    assert result['diff']['before']['cgroup'] == {'path': '/mtd/job', 'exists': False, 'limits': None}
    assert result['diff']['after']['cgroup']['limits']['memory'] == 64 * MiB
    assert not os.path.exists(os.path.join(cgroupfs.v1_mounts['memory'], 'mtd'))
    assert not os.path.exists(str(tmp_path / 'libexec'))


@pytest.mark.parametrize('extra', [{}, {'user': 'root'}, {'user': '0'}, {'group': 'nogroup'}])
@pytest.mark.parametrize('check_mode', [True, False])
def test_process_as_root_is_refused_and_nothing_changes(cgroupfs, tmp_path, monkeypatch, extra, check_mode):
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    args = {'mode': 'process', 'name': 'job', 'command': ['sleep', '1'], 'launcher_dir': str(tmp_path / 'libexec'),
            'limits': {'pids': 8}, '_ansible_check_mode': check_mode}
    args.update(extra)
    result = run_module(args)
    assert result['failed'] is True
    assert result['msg'].startswith('The command would run as root, which no cgroup or seccomp filter confines')
    assert result['msg'].endswith('or set allow_root to true to run it as root with a reduced capability set.')
    assert not os.path.exists(os.path.join(cgroupfs.v1_mounts['pids'], 'mtd'))
    assert not os.path.exists(str(tmp_path / 'libexec'))


def test_process_as_root_with_allow_root_is_accepted_with_a_warning(cgroupfs, tmp_path, monkeypatch):
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    warnings = []
    result = module_harness.run_module(confine.main, {
        'mode': 'process', 'name': 'job', 'command': ['sleep', '1'], 'allow_root': True,
        'launcher_dir': str(tmp_path / 'libexec'), '_ansible_check_mode': True}, warnings=warnings)
    assert result['changed'] is True
    assert any('runs as root (allow_root)' in w and 'not a sandbox' in w for w in warnings), warnings


def test_process_unknown_user_is_a_clear_error(cgroupfs, tmp_path):
    result = run_module({'mode': 'process', 'name': 'job', 'command': ['true'], 'user': 'mtd-no-such-user',
                         'launcher_dir': str(tmp_path / 'libexec')})
    assert result['failed'] is True
    assert result['msg'] == "Unknown user 'mtd-no-such-user' on this host; give an existing user name or uid."
    assert not os.path.exists(os.path.join(cgroupfs.v1_mounts['pids'], 'mtd'))


def test_allow_root_is_a_process_option():
    with pytest.raises(MtdError) as info:
        confine.check_mode_options(_params(mode='container', allow_root=True))
    assert info.value.msg == 'allow_root only applies to mode=process; leave it out with mode=container.'


def test_process_missing_command_and_bad_limits(cgroupfs):
    result = run_module({'mode': 'process', 'name': 'job'})
    assert result['failed'] and result['msg'] == 'command is required with mode=process and state=present.'
    result = run_module({'mode': 'process', 'name': 'job', 'command': ['true'], 'limits': {'memory': 'lots'}})
    assert result['failed'] and result['msg'].startswith("memory 'lots' is not a size")
    result = run_module({'mode': 'process', 'name': 'job', 'command': ['true'], 'cgroup_version': '2',
                         'limits': {'memory': '64m'}})
    assert result['failed'] and 'no cgroup2 filesystem' in result['msg']


def test_process_absent_of_nothing_is_no_change(cgroupfs):
    result = run_module({'mode': 'process', 'name': 'gone', 'state': 'absent'})
    assert result['changed'] is False and result['pids'] == []


def test_process_absent_removes_an_empty_level(cgroupfs):
    cgroupfs.make_level('mtd/old')
    for directory in cgroup_lib.Cgroup(cgroupfs, 'mtd/old').directories():
        for name in os.listdir(directory):
            os.remove(os.path.join(directory, name))
    result = run_module({'mode': 'process', 'name': 'old', 'state': 'absent', '_ansible_check_mode': True})
    assert result['changed'] is True
    assert os.path.isdir(os.path.join(cgroupfs.v1_mounts['pids'], 'mtd', 'old'))
    result = run_module({'mode': 'process', 'name': 'old', 'state': 'absent'})
    assert result['changed'] is True
    assert not os.path.exists(os.path.join(cgroupfs.v1_mounts['pids'], 'mtd', 'old'))


# -- container mode against a fake engine -------------------------------------------------------------

def _stream(text):
    data = text.encode()
    return struct.pack('>BxxxL', 1, len(data)) + data


class Engine:
    """The fake engine with one container; exec answers cat /proc/1/status and /proc/1/mountinfo."""

    def __init__(self, inspect, seccomp_line='Seccomp:\t2\nSeccomp_filters:\t1\n'):
        self.sockdir = tempfile.mkdtemp(prefix='mtd-', dir='/tmp')
        self.server = fake_engine.FakeEngine(os.path.join(self.sockdir, 'docker.sock'))
        self.server.standard_routes([inspect])
        self.inspect = inspect
        self.server.routes[('GET', '/containers/web-1/json')] = (200, inspect)
        self.server.routes[('GET', '/containers/no-such/json')] = (404, {'message': 'No such container: no-such'})
        self.execs = []

        def create_exec(request):
            self.execs.append(json.loads(request['body'])['Cmd'])
            return 201, {'Id': 'exec%d' % len(self.execs)}

        def start_exec(request):
            cmd = self.execs[-1]
            if cmd[-1] == '/proc/1/status':
                body = 'Name:\tsleep\n' + seccomp_line
            else:
                body = ('412 411 0:29 / /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu\n'
                        '413 411 0:30 / /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory\n')
            return 200, _stream(body), {'Content-Type': 'application/vnd.docker.raw-stream'}

        self.server.routes[('POST', '/containers/%s/exec' % inspect['Id'])] = create_exec
        for number in range(1, 6):
            self.server.routes[('POST', '/exec/exec%d/start' % number)] = start_exec
            self.server.routes[('GET', '/exec/exec%d/json' % number)] = (200, {'ExitCode': 0})

    @property
    def url(self):
        return self.server.url

    def writes(self):
        return [(r['method'], r['path']) for r in self.server.requests
                if r['method'] != 'GET' and '/exec' not in r['path']]

    def close(self):
        self.server.close()
        shutil.rmtree(self.sockdir, ignore_errors=True)


def _web1(**host_config):
    inspect = fake_engine.load_json('docker-inspect-web-1.json')
    inspect['HostConfig'].update(NanoCpus=0)
    inspect['HostConfig'].update(host_config)
    inspect.setdefault('Mounts', [])
    return inspect


@pytest.fixture
def engine_factory():
    engines = []

    def make(inspect, **kwargs):
        engine = Engine(inspect, **kwargs)
        engines.append(engine)
        return engine
    yield make
    for engine in engines:
        engine.close()


def _confined_web1():
    host_config = cf.confine_host_config(_web1()['HostConfig'], '/mtd/web-1')
    # The engine hands the inline profile back as it got it; compare by content anyway: re-indent it.
    host_config['SecurityOpt'] = ['seccomp=' + json.dumps(sc.docker_profile(), indent=1)]
    return _web1(**host_config)


def test_container_already_confined_is_not_changed(cgroupfs, engine_factory):
    engine = engine_factory(_confined_web1())
    cgroupfs.make_level('mtd/web-1', **{'memory.limit_in_bytes': 64 * MiB, 'memory.memsw.limit_in_bytes': 64 * MiB,
                                        'pids.max': 32})
    result = run_module({'mode': 'container', 'name': 'web-1', 'docker_host': engine.url,
                         'limits': {'memory': '64m', 'pids': 32}, '_ansible_diff': True})
    assert result['changed'] is False, result
    assert result['container']['recreated'] is False
    assert result['seccomp'] == {'mode': 2, 'filters': 1, 'verified_by': 'exec',
                                 'profile_sha256': sc.profile_digest(sc.docker_profile())}
    assert result['container']['cgroupfs_readonly'] is True
    assert result['diff']['before'] == result['diff']['after']
    assert engine.writes() == []
    assert engine.execs == [['cat', '/proc/1/status'], ['cat', '/proc/1/mountinfo']]


def test_container_limits_only_change_without_recreation(cgroupfs, engine_factory):
    engine = engine_factory(_confined_web1())
    cgroupfs.make_level('mtd/web-1', **{'memory.limit_in_bytes': 64 * MiB, 'memory.memsw.limit_in_bytes': 64 * MiB})
    result = run_module({'mode': 'container', 'name': 'web-1', 'docker_host': engine.url,
                         'limits': {'memory': '128m'}, '_ansible_diff': True})
    assert result['changed'] is True and result['container']['recreated'] is False
    assert result['limits_before'] == {'memory': 64 * MiB, 'memory_swap': 64 * MiB}
    assert result['limits'] == {'memory': 128 * MiB, 'memory_swap': 128 * MiB}
    with open(os.path.join(cgroupfs.v1_mounts['memory'], 'mtd/web-1/memory.limit_in_bytes')) as handle:
        assert handle.read() == str(128 * MiB)
    assert engine.writes() == []


def test_container_unconfined_check_mode_predicts_recreation(cgroupfs, engine_factory):
    engine = engine_factory(_web1(SecurityOpt=['seccomp=unconfined']))
    result = run_module({'mode': 'container', 'name': 'web-1', 'docker_host': engine.url, 'limits': {'pids': 16},
                         '_ansible_check_mode': True, '_ansible_diff': True})
    assert result['changed'] is True and result['container']['recreated'] is True
    assert result['diff']['before']['container'] == {'cgroup_parent': None, 'seccomp_sha256': None,
                                                     'cgroupns_mode': None}
    assert result['diff']['after']['container']['cgroup_parent'] == '/mtd/web-1'
    assert engine.writes() == []
    assert not os.path.exists(os.path.join(cgroupfs.v1_mounts['pids'], 'mtd'))


@pytest.mark.parametrize('args, inspect, message', [
    ({'name': 'no-such'}, _web1(), 'There is no container no-such on the Docker engine at unix://'),
    ({}, _web1(Privileged=True), 'Container web-1 is privileged: it holds every capability and host device and a '
                                 'writable cgroup filesystem (and Docker 20.10.24+dfsg1 ignores seccomp'),
    ({}, _web1(PidMode='host'), "Container web-1 shares the host's PID namespace (--pid host)"),
    ({}, _web1(IpcMode='host'), "Container web-1 shares the host's IPC namespace (--ipc host)"),
    ({}, _web1(Binds=['/var/run/docker.sock:/var/run/docker.sock']),
     'Container web-1 bind-mounts /var/run/docker.sock, which exposes the socket /run/docker.sock'),
    ({'limits': {'cpus': 0.25}}, _web1(NanoCpus=1000000000), 'has its own CPU limit of 1.0 CPUs'),
    ({'state': 'absent'}, _web1(), 'state=absent is only supported with mode=process.'),
    ({'cgroup_version': '2'}, _web1(), 'no cgroup2 filesystem is mounted'),
])
def test_container_refusals(cgroupfs, engine_factory, args, inspect, message):
    engine = engine_factory(inspect)
    module_args_ = {'mode': 'container', 'name': 'web-1', 'docker_host': engine.url, 'limits': {'memory': '64m'}}
    module_args_.update(args)
    result = run_module(module_args_)
    assert result['failed'] is True
    assert message in result['msg']
    assert 'Traceback' not in result['msg']
    assert engine.writes() == []
    assert not os.path.exists(os.path.join(cgroupfs.v1_mounts['memory'], 'mtd'))


@pytest.mark.parametrize('version', ['26.1.5', '29.0.1'])
@pytest.mark.parametrize('check_mode', [True, False])
def test_privileged_is_refused_on_engines_that_apply_the_profile(cgroupfs, engine_factory, version, check_mode):
    engine = engine_factory(_web1(Privileged=True))
    answer = fake_engine.load_json('docker-version-20.10.json')
    answer.update(Version=version, ApiVersion='1.45')
    engine.server.routes[('GET', '/version')] = (200, answer)
    result = run_module({'mode': 'container', 'name': 'web-1', 'docker_host': engine.url, 'limits': {'pids': 8},
                         '_ansible_check_mode': check_mode})
    assert result['failed'] is True
    assert result['msg'].startswith('Container web-1 is privileged: it holds every capability')
    assert 'ignores seccomp' not in result['msg']  # the engine's version was read: >= 26 applies the profile
    assert engine.writes() == []
    assert not os.path.exists(os.path.join(cgroupfs.v1_mounts['pids'], 'mtd'))


def test_container_without_seccomp_after_start_is_stopped(cgroupfs, engine_factory):
    engine = engine_factory(_confined_web1(), seccomp_line='Seccomp:\t0\n')
    engine.server.routes[('POST', '/containers/%s/stop' % ('0123abcd' * 8))] = (204, None)
    result = run_module({'mode': 'container', 'name': 'web-1', 'docker_host': engine.url, 'limits': {}})
    assert result['failed'] is True
    assert result['msg'] == 'Container web-1 runs without an active seccomp filter (Seccomp: 0, read via exec); it was ' \
                            'stopped.'
    assert ('POST', '/containers/%s/stop' % ('0123abcd' * 8)) in engine.writes()


def test_module_documentation_mentions_the_honest_policy():
    assert 'whole mount family' in confine.DOCUMENTATION
    assert 'pointer' in confine.DOCUMENTATION
    for name in sc.MOUNT_FAMILY:
        assert 'C(%s)' % name in confine.DOCUMENTATION, name
    assert [entry[0] for entry in confine.LAUNCHER_FILES] == ['_common.py', '_cgroup.py', '_seccomp.py', 'mtd-confine']


def test_container_whose_filter_cannot_be_read_is_left_running(cgroupfs, engine_factory, tmp_path, monkeypatch):
    """No cat in the image and no /proc entry for its PID: a warning, not a stop (its HostConfig has the profile)."""
    monkeypatch.setattr(confine, 'PROC', str(tmp_path / 'no-proc'))
    engine = engine_factory(_confined_web1(), seccomp_line='')
    result = run_module({'mode': 'container', 'name': 'web-1', 'docker_host': engine.url, 'limits': {}})
    assert not result.get('failed'), result
    assert result['seccomp']['mode'] is None and result['seccomp']['verified_by'] is None
    assert engine.writes() == []


# -- the per-mode spec --------------------------------------------------------------------------------

def _params(**given):
    params = dict((name, spec.get('default')) for name, spec in confine.ARGUMENT_SPEC.items())
    params.update(given)
    return params


@pytest.mark.parametrize('given, message', [
    ({'mode': 'process'}, 'command is required with mode=process and state=present.'),
    ({'mode': 'process', 'command': []}, 'command is required with mode=process and state=present.'),
    ({'mode': 'container', 'state': 'absent'}, 'state=absent is only supported with mode=process.'),
    ({'mode': 'container', 'user': 'nobody'}, 'user only applies to mode=process; leave it out with mode=container.'),
    ({'mode': 'container', 'command': ['x'], 'detach': False},
     'command and detach only apply to mode=process; leave them out with mode=container.'),
    ({'mode': 'process', 'command': ['x'], 'stop_timeout': 3},
     'stop_timeout only applies to mode=container; leave it out with mode=process.'),
])
def test_mode_spec_refusals(given, message):
    with pytest.raises(MtdError) as info:
        confine.check_mode_options(_params(**given))
    assert info.value.msg == message


@pytest.mark.parametrize('given', [
    {'mode': 'process', 'command': ['x'], 'user': 'nobody', 'detach': False},
    {'mode': 'process', 'state': 'absent'},
    {'mode': 'process', 'state': 'absent', 'command': ['x']},
    {'mode': 'container', 'stop_timeout': 30},
    {'mode': 'container', 'detach': True, 'launcher_dir': '/usr/local/libexec/mtd-confine'},
])
def test_mode_spec_accepts(given):
    confine.check_mode_options(_params(**given))


def test_every_option_of_a_mode_is_in_the_spec():
    for rules in confine.MODES.values():
        assert set(rules['options']) <= set(confine.ARGUMENT_SPEC)
        for options in rules['required'].values():
            assert set(options) <= set(rules['options'])


def test_container_mode_with_a_process_option_fails_before_any_request(cgroupfs, engine_factory):
    engine = engine_factory(_web1())
    result = run_module({'mode': 'container', 'name': 'web-1', 'docker_host': engine.url, 'user': 'nobody'})
    assert result['failed'] and result['msg'] == 'user only applies to mode=process; leave it out with mode=container.'
    assert engine.server.requests == []
