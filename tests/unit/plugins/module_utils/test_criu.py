# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The CRIU wrapper, with the outputs CRIU 4.1.1 gave on the lab machine (see LAB-NOTES)."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest
from ansible.module_utils import basic

from ansible_collections.mtd.containers.plugins.module_utils._cmd import CmdResult, CmdRunner, command_env, output_tail
from ansible_collections.mtd.containers.plugins.module_utils._criu import (
    CRIU_DIRS,
    LAZY_PIPE_BYTES,
    Criu,
    CriuError,
    CriuResult,
    Runc,
    RuncCriuOptions,
    cgroup_mount_map,
    restore_cgroup_mode,
    find_criu,
    lazy_pages_blocker,
    lazy_tls_options,
    log_seconds,
    make_tls_identity,
    option_args,
    render_runc_conf,
    restore_options,
    runc_conf_is_ours,
    spawn_until_ready,
)

# argv after the binary -> (rc, stdout, stderr), as captured from /usr/local/sbin/criu 4.1.1.
CRIU_411 = {
    ('--version',): (0, 'Version: 4.1.1\n', ''),
    ('check',): (0, 'Looks good.\n', ''),
    ('check', '--feature', 'mem_dirty_track'): (
        1, '', 'Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work.\n'),
    ('check', '--feature', 'uffd-noncoop'): (0, 'uffd-noncoop is supported\n', ''),
    ('check', '--feature', 'nosuch'): (1, '', 'Error (criu/cr-check.c:1866): Unknown feature nosuch\n'),
    ('check', '--all'): (
        1,
        'Looks good but some kernel features are missing\nwhich, depending on your process tree, may cause\n'
        'dump or restore failure.\n',
        'Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work.\n'),
}


class FakeModule(CmdRunner):
    """A CmdRunner for Criu that answers from a table and records the calls (argv and environment), and
    a module's get_bin_path for find_criu."""

    def __init__(self, outputs, bin_path='/usr/local/sbin/criu'):
        super().__init__('/usr/local/sbin/criu')
        self.outputs = outputs
        self.calls = []
        self.bin_path = bin_path
        self.bin_path_calls = []

    def run(self, args=(), check=False, timeout=None, stdin=None, data=None, cwd=None, what=None):
        argv = self.argv(args)
        env = command_env(self.env)
        self.calls.append({'args': argv, 'data': data, 'cwd': cwd,
                           'environ_update': dict((k, env[k]) for k in ('LANG', 'LC_ALL', 'LC_MESSAGES'))})
        rc, out, err = self.outputs[tuple(argv[1:])]
        return CmdResult(argv, rc, out, err, 0.0)

    def get_bin_path(self, arg, required=False, opt_dirs=None):
        self.bin_path_calls.append((arg, required, opt_dirs))
        return self.bin_path


def test_version_check_and_features_of_criu_4_1_1():
    module = FakeModule(CRIU_411)
    criu = Criu('/usr/local/sbin/criu', runner=module)
    assert criu.version() == '4.1.1'
    assert criu.check() == (True, 'Looks good.')
    assert criu.feature('mem_dirty_track') is False
    assert criu.feature('uffd-noncoop') is True
    assert criu.feature('nosuch') is False
    assert module.calls[0]['args'] == ['/usr/local/sbin/criu', '--version']
    assert module.calls[2]['args'] == ['/usr/local/sbin/criu', 'check', '--feature', 'mem_dirty_track']
    for call in module.calls:
        assert call['environ_update'] == {'LANG': 'C', 'LC_ALL': 'C', 'LC_MESSAGES': 'C'}
    assert criu.last.rc == 1
    assert 'Unknown feature nosuch' in criu.last.stderr


def test_check_all_maybe_is_not_ok_when_rc_is_nonzero():
    criu = Criu('/usr/local/sbin/criu', runner=FakeModule(CRIU_411))
    result = criu.run(['check', '--all'])
    assert result.rc == 1
    assert result.tail().splitlines() == [
        'Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work.',
        'Looks good but some kernel features are missing',
        'which, depending on your process tree, may cause',
        'dump or restore failure.',
    ]


@pytest.mark.parametrize('rc, stdout, stderr, ok', [
    (0, 'Looks good.\n', 'Warn  (criu/kerndat.c:1013): Can\'t setup RLIMIT_NOFILE for self\n', True),
    (0, 'Looks good but some kernel features are missing\nwhich, depending on your process tree, may cause\n'
        'dump or restore failure.\n', '', True),
    (1, '', 'Error (criu/cr-check.c:1260): vdso: Unexpected rt vDSO area bounds\nWarn  (criu/cr-check.c:1652): '
        'Does not look good.\n', False),
    (1, '', 'Error (criu/cr-check.c:1470): CRIU needs to have the CAP_SYS_ADMIN or the CAP_CHECKPOINT_RESTORE '
        'capability: \nsetcap cap_checkpoint_restore+eip /usr/local/sbin/criu\n', False),
    (0, '', '', False),
])
def test_check_verdicts(rc, stdout, stderr, ok):
    criu = Criu('/usr/local/sbin/criu', runner=FakeModule({('check',): (rc, stdout, stderr)}))
    verdict, tail = criu.check()
    assert verdict is ok
    if stdout or stderr:
        assert tail
        assert tail.splitlines()[-1] == (stdout or stderr).strip().splitlines()[-1]


@pytest.mark.parametrize('rc, stdout, stderr, present', [
    (0, 'mem_dirty_track is supported\n', '', True),
    (0, 'Dirty tracking is ON\n', '', True),            # older CRIU wording
    (0, '', 'Dirty tracking is OFF. Memory snapshot will not work.\n', False),
    (1, 'mem_dirty_track is supported\n', '', False),    # a non-zero rc always means absent
    (0, 'uffd is NOT supported\n', '', False),
    (0, 'something else\n', '', False),
])
def test_feature_semantics(rc, stdout, stderr, present):
    module = FakeModule({('check', '--feature', 'x'): (rc, stdout, stderr)})
    assert Criu('/usr/local/sbin/criu', runner=module).feature('x') is present


def test_version_errors_keep_the_output():
    module = FakeModule({('--version',): (127, '', 'criu: error while loading shared libraries: libnet.so.9\n')})
    with pytest.raises(CriuError) as excinfo:
        Criu('/opt/criu', runner=module).version()
    assert 'did not report a version (rc 127)' in str(excinfo.value)
    assert 'libnet.so.9' in str(excinfo.value)
    assert excinfo.value.result.rc == 127
    module = FakeModule({('--version',): (0, 'criu 3.x\n', '')})
    with pytest.raises(CriuError):
        Criu('/opt/criu', runner=module).version()


def test_run_check_rc_raises_with_result():
    module = FakeModule(CRIU_411)
    with pytest.raises(CriuError) as excinfo:
        Criu('/usr/local/sbin/criu', runner=module).run(['check', '--feature', 'nosuch'], check_rc=True)
    message = str(excinfo.value)
    assert message.startswith('"/usr/local/sbin/criu check --feature nosuch" failed with rc 1: ')
    assert 'Unknown feature nosuch' in message
    assert excinfo.value.result.as_dict()['cmd'] == ['/usr/local/sbin/criu', 'check', '--feature', 'nosuch']


def test_output_tail_and_result():
    text = '\n'.join('line %d' % i for i in range(30)) + '\n\n'
    assert output_tail(text, 3) == 'line 27\nline 28\nline 29'
    assert output_tail('') == ''
    result = CriuResult(['criu'], 0, 'out\n', 'err\n')
    assert result.output == 'err\nout'


# -- finding the binary ---------------------------------------------------------------------------

def _executable(path, content='#!/bin/sh\nexit 0\n'):
    with open(path, 'w') as handle:
        handle.write(content)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_find_criu_searches_sbin_dirs():
    module = FakeModule({})
    assert find_criu(module) == '/usr/local/sbin/criu'
    assert module.bin_path_calls == [('criu', False, CRIU_DIRS)]
    assert CRIU_DIRS[:2] == ['/usr/local/sbin', '/usr/sbin']
    assert find_criu(FakeModule({}, bin_path=None)) is None


def test_find_criu_explicit_path(tmp_path):
    good = _executable(str(tmp_path / 'criu'))
    assert find_criu(FakeModule({}), good) == good
    plain = tmp_path / 'not-executable'
    plain.write_text('x')
    with pytest.raises(CriuError, match='is not executable'):
        find_criu(FakeModule({}), str(plain))
    with pytest.raises(CriuError, match='does not exist or is not a file'):
        find_criu(FakeModule({}), str(tmp_path / 'absent'))
    with pytest.raises(CriuError, match='does not exist or is not a file'):
        find_criu(FakeModule({}), str(tmp_path))


# -- through a real AnsibleModule.run_command -------------------------------------------------------

FAKE_CRIU = r"""#!/bin/sh
# Echo what the wrapper passed, then behave like criu 4.1.1.
echo "LANG=$LANG LC_ALL=$LC_ALL ARGS=$*" >> "$(dirname "$0")/calls.log"
case "$*" in
  --version) echo "Version: 4.1.1"; echo "GitID: v4.1.1" ;;
  check) echo "Warn  (criu/kerndat.c:1013): Can't setup RLIMIT_NOFILE for self" >&2; echo "Looks good." ;;
  "check --feature mem_dirty_track") echo "Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work." >&2; exit 1 ;;
  "check --feature uffd-noncoop") echo "uffd-noncoop is supported" ;;
  *) echo "Error (criu/cr-check.c:1866): Unknown feature" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def ansible_module(monkeypatch):
    args = json.dumps({'ANSIBLE_MODULE_ARGS': {}}).encode()
    monkeypatch.setattr(basic, '_ANSIBLE_ARGS', args)
    if hasattr(basic, '_ANSIBLE_PROFILE'):
        monkeypatch.setattr(basic, '_ANSIBLE_PROFILE', 'legacy')
    monkeypatch.setenv('LANG', 'de_DE.UTF-8')
    return basic.AnsibleModule(argument_spec={})


def test_real_run_command_with_fake_criu(tmp_path, ansible_module):
    path = _executable(str(tmp_path / 'criu'), FAKE_CRIU)
    criu = Criu(find_criu(ansible_module, path))
    assert criu.version() == '4.1.1'
    ok, tail = criu.check()
    assert ok is True
    assert tail == "Warn  (criu/kerndat.c:1013): Can't setup RLIMIT_NOFILE for self\nLooks good."
    assert criu.feature('mem_dirty_track') is False
    assert criu.feature('uffd-noncoop') is True
    calls = (tmp_path / 'calls.log').read_text().splitlines()
    assert calls == [
        'LANG=C LC_ALL=C ARGS=--version',
        'LANG=C LC_ALL=C ARGS=check',
        'LANG=C LC_ALL=C ARGS=check --feature mem_dirty_track',
        'LANG=C LC_ALL=C ARGS=check --feature uffd-noncoop',
    ]


@pytest.mark.skipif(not (os.path.exists('/usr/local/sbin/criu') and os.geteuid() == 0),
                    reason='needs the lab CRIU at /usr/local/sbin/criu and root')
def test_lab_criu(ansible_module):
    criu = Criu(find_criu(ansible_module))
    assert criu.version()
    ok, tail = criu.check()
    assert ok is True, tail
    assert criu.feature('nosuch-feature') is False


# ---------------------------------------------------------------------------------------------------
# runc's CRIU configuration file

def test_render_runc_conf():
    text = render_runc_conf({'work-dir': '/b/criu-work', 'images-dir': '/b/criu-images', 'tcp-established': True,
                             'skip-me': None}, 'restore m-1 (pid 7)')
    assert text == ("# mtd.containers: temporary CRIU options for the engine's runc\n"
                    "# written by restore m-1 (pid 7); removed again when it is done\n"
                    "images-dir /b/criu-images\ntcp-established\nwork-dir /b/criu-work\n")
    assert runc_conf_is_ours(text) and not runc_conf_is_ours('tcp-established\n') and not runc_conf_is_ours(None)


@pytest.mark.parametrize('options, message', [
    ({'Images-Dir': '/x'}, "'Images-Dir' is not a CRIU option name."),
    ({'images-dir': '/a b'}, "The value '/a b' of CRIU option images-dir is empty or contains whitespace."),
    ({'images-dir': ''}, "The value '' of CRIU option images-dir is empty or contains whitespace."),
    ({'images-dir': '/a\n/b'}, "The value '/a\\n/b' of CRIU option images-dir is empty or contains whitespace."),
])
def test_render_runc_conf_refuses(options, message):
    with pytest.raises(CriuError) as err:
        render_runc_conf(options, 'x')
    assert str(err.value) == message


@pytest.fixture
def conf_paths(tmp_path):
    return str(tmp_path / 'etc' / 'criu' / 'runc.conf'), str(tmp_path / 'run' / 'lock')


def test_runc_options_exist_only_inside_the_block(conf_paths):
    path, lock = conf_paths
    with RuncCriuOptions({'images-dir': '/b/l'}, 'test', path=path, lock_path=lock) as held:
        assert held.written and open(path).read().endswith('images-dir /b/l\n')
        assert oct(os.stat(path).st_mode & 0o777) == '0o644'
    assert not os.path.exists(path)
    assert os.listdir(os.path.dirname(path)) == []   # no temporary file left


def test_runc_options_removed_when_the_block_raises(conf_paths):
    path, lock = conf_paths
    with pytest.raises(ValueError):
        with RuncCriuOptions({'images-dir': '/b/l'}, 'test', path=path, lock_path=lock):
            raise ValueError('engine said no')
    assert not os.path.exists(path)


def test_a_foreign_runc_conf_is_never_touched(conf_paths):
    path, lock = conf_paths
    os.makedirs(os.path.dirname(path))
    with open(path, 'w') as handle:
        handle.write('tcp-established\n')
    assert RuncCriuOptions(path=path, lock_path=lock).foreign()
    with pytest.raises(CriuError) as err:
        with RuncCriuOptions({'images-dir': '/b/l'}, 'test', path=path, lock_path=lock):
            pass
    assert str(err.value).startswith('%s exists and is not managed by mtd.containers' % path)
    with RuncCriuOptions(path=path, lock_path=lock) as held:   # lock only: fine, and the file stays
        assert not held.written and not held.removed_leftover
    assert open(path).read() == 'tcp-established\n'


def test_a_leftover_of_ours_is_removed_under_the_lock(conf_paths):
    path, lock = conf_paths
    os.makedirs(os.path.dirname(path))
    with open(path, 'w') as handle:
        handle.write(render_runc_conf({'images-dir': '/gone'}, 'a killed restore'))
    assert not RuncCriuOptions(path=path, lock_path=lock).foreign()
    with RuncCriuOptions(path=path, lock_path=lock) as held:
        assert held.removed_leftover and not os.path.exists(path)


def test_the_lock_serialises_holders(conf_paths):
    import fcntl
    path, lock = conf_paths
    os.makedirs(os.path.dirname(lock))
    with open(lock, 'a') as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(CriuError) as err:
            with RuncCriuOptions({'images-dir': '/b/l'}, 'test', path=path, lock_path=lock, timeout=0.2):
                pass
        assert str(err.value) == 'Another checkpoint or restore held %s for more than 0.2 s.' % lock
        assert not os.path.exists(path)
    with RuncCriuOptions({'images-dir': '/b/l'}, 'test', path=path, lock_path=lock, timeout=0.2) as held:
        assert held.written


def test_criu_log_seconds(tmp_path):
    log = tmp_path / 'restore.log'
    log.write_text('(00.000060) Would overwrite RPC settings\n(00.164786) pie: 1: Preadv 0x41f000:4096\n'
                   'not a timed line\n(02.875309) pie: 1: `- returned 1076600832\n')
    assert log_seconds(str(log)) == 2.875309
    assert log_seconds(str(tmp_path / 'missing.log')) is None


# ---------------------------------------------------------------------------------------------------
# post-copy helpers

CAP_ALL_BUT_SYS_RESOURCE = '000001fffeffffff'   # this lab's root: bit 24 clear


@pytest.mark.parametrize('cap, pipe_max, blocked', [
    (CAP_ALL_BUT_SYS_RESOURCE, '1048576', 'fs.pipe-max-size is 1048576'),
    (CAP_ALL_BUT_SYS_RESOURCE, str(LAZY_PIPE_BYTES - 1), 'fs.pipe-max-size is 3354623'),
    (CAP_ALL_BUT_SYS_RESOURCE, str(LAZY_PIPE_BYTES), None),
    (CAP_ALL_BUT_SYS_RESOURCE, '4194304', None),
    ('000001ffffffffff', '1048576', None),          # with CAP_SYS_RESOURCE the limit does not apply
    (CAP_ALL_BUT_SYS_RESOURCE, 'garbage', 'cannot be read'),
])
def test_lazy_pages_blocker(tmp_path, cap, pipe_max, blocked):
    status = tmp_path / 'status'
    status.write_text('Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t%s\n' % cap)
    limit = tmp_path / 'pipe-max-size'
    limit.write_text(pipe_max + '\n')
    reason = lazy_pages_blocker(str(limit), str(status))
    if blocked is None:
        assert reason is None
    else:
        assert blocked in reason


def test_option_args_and_tls_options():
    options = lazy_tls_options('/x/peer.pem', '/x/cert.pem', '/x/key.pem')
    assert option_args(dict(options, address='127.0.1.1', skip=False)) == [
        '--address', '127.0.1.1', '--tls', '--tls-cacert', '/x/peer.pem', '--tls-cert', '/x/cert.pem',
        '--tls-key', '/x/key.pem', '--tls-no-cn-verify']
    # the same options are valid runc.conf lines
    assert 'tls-cacert /x/peer.pem' in render_runc_conf(options, 'test').splitlines()


def test_make_tls_identity_with_openssl(tmp_path, ansible_module):
    cert, key = make_tls_identity(str(tmp_path / 'tls'), 'mtd-target-m-1')
    assert open(cert).read().startswith('-----BEGIN CERTIFICATE-----')
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(tmp_path / 'tls')).st_mode) == 0o700
    rc, out, err = ansible_module.run_command(['openssl', 'x509', '-in', cert, '-noout', '-subject'])
    assert rc == 0 and 'mtd-target-m-1' in out


def test_make_tls_identity_reports_openssl_failure(tmp_path):
    openssl = _executable(str(tmp_path / 'openssl'), '#!/bin/sh\necho bad >&2\nexit 1\n')
    with pytest.raises(CriuError, match='openssl could not make the TLS certificate for x: bad'):
        make_tls_identity(str(tmp_path / 'tls'), 'x', openssl=openssl)


@pytest.mark.parametrize('script, state', [
    ('os.write(FD, b"\\0"); time.sleep(5)', 'ready'),
    ('sys.exit(3)', 'exited'),
    ('time.sleep(5)', 'timeout'),
])
def test_spawn_until_ready(tmp_path, script, state):
    log = str(tmp_path / 'out.log')
    proc, got = spawn_until_ready(
        lambda fd: [sys.executable, '-c', 'import os, sys, time; ' + script.replace('FD', str(fd))], 1.0, log)
    try:
        assert got == state
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_runc_checkpoint_args_for_pre_dump_rounds_and_the_final_dump():
    runc = Runc('/usr/sbin/runc', '/run/docker/runtime-runc/moby', '/usr/sbin/criu')
    assert runc.checkpoint_args('c1', '/b/precopy/1', '/b/work', pre_dump=True) == [
        'checkpoint', '--image-path', '/b/precopy/1', '--work-path', '/b/work', '--pre-dump', 'c1']
    assert runc.checkpoint_args('c1', '/b/precopy/2', '/b/work', parent='../1', pre_dump=True) == [
        'checkpoint', '--image-path', '/b/precopy/2', '--work-path', '/b/work', '--pre-dump', '--parent-path', '../1',
        'c1']
    # the final dump: frozen by the engine, left to the freezer, the last round as parent
    assert runc.checkpoint_args('c1', '/b/criu', '/b/work', parent='../precopy/2') == [
        'checkpoint', '--image-path', '/b/criu', '--work-path', '/b/work', '--leave-running', '--parent-path',
        '../precopy/2', 'c1']
    assert runc.checkpoint_args('c1', '/b/criu', '/b/work') == [
        'checkpoint', '--image-path', '/b/criu', '--work-path', '/b/work', '--leave-running', 'c1']


@pytest.mark.parametrize('images, host, mode', [
    (1, 1, None),                          # v1 on both: runc's own mode (it maps every controller's root)
    (2, 2, 'ignore'),                      # v2 on both: runc's root does not match CRIU's unified set
    (1, 2, 'ignore'), (2, 1, 'ignore'),    # lab-1 (v1) -> the VM (v2) and back
    (None, 2, None), (1, None, None),      # unknown: nothing changes
])
def test_restore_cgroup_mode(images, host, mode):
    assert restore_cgroup_mode(images, host) == mode


def test_restore_options_with_a_manage_cgroups_mode():
    assert restore_options('/b/images', '/b/work') == {'images-dir': '/b/images', 'work-dir': '/b/work'}
    options = restore_options('/b/images', '/b/work', lazy=True, manage_cgroups='ignore')
    assert options == {'images-dir': '/b/images', 'work-dir': '/b/work', 'lazy-pages': True, 'manage-cgroups': 'ignore'}
    assert 'manage-cgroups=ignore' in render_runc_conf(options, 'test').splitlines()


# the external mounts of a Docker 20.10 container on cgroup v1 (lab-1) and of one on cgroup v2 (the VM host)
V1_EXTERNAL = [('/etc/hosts', '/etc/hosts'), ('/sys/fs/cgroup/systemd', '/sys/fs/cgroup/systemd'),
               ('/sys/fs/cgroup/memory', '/sys/fs/cgroup/memory'), ('/sys/fs/cgroup/cpu,cpuacct', '/sys/fs/cgroup/cpu,cpuacct')]
V2_EXTERNAL = [('/etc/hosts', '/etc/hosts'), ('/sys/fs/cgroup', '/sys/fs/cgroup')]


def test_cgroup_mount_map_maps_the_other_versions_cgroup_mounts_to_the_placeholder():
    assert cgroup_mount_map(V1_EXTERNAL, 1, 2, '/d/empty') == [
        '/sys/fs/cgroup/systemd:/d/empty', '/sys/fs/cgroup/memory:/d/empty', '/sys/fs/cgroup/cpu,cpuacct:/d/empty']
    assert cgroup_mount_map(V2_EXTERNAL, 2, 1, '/d/empty') == ['/sys/fs/cgroup:/d/empty']
    assert cgroup_mount_map(V1_EXTERNAL, 1, 1, '/d/empty') == []      # runc maps its own kind
    assert cgroup_mount_map(V2_EXTERNAL, 2, None, '/d/empty') == []   # unknown: nothing changes
    assert 'ext-mount-map /sys/fs/cgroup:/d/empty' in render_runc_conf(
        restore_options('/b/i', '/b/w', ext_mounts=['/sys/fs/cgroup:/d/empty']), 'test').splitlines()


def test_cgroup_mount_map_refuses_a_key_it_cannot_pass_to_criu():
    with pytest.raises(CriuError, match='has a key this collection does not map'):
        cgroup_mount_map([('/sys/fs/cgroup/memory', '/sys/fs/cgroup/mem ory:/etc')], 1, 2, '/d/empty')
    with pytest.raises(CriuError, match='cannot be given to CRIU'):
        cgroup_mount_map(V1_EXTERNAL, 1, 2, '/d/em:pty')
