# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's seccomp filter added to a real CRIU image set before the restore (issue 14, item 2).

No lab: root on this machine and ``criu`` on PATH. A small process tree (a parent with a second thread,
and a child process) is dumped with ``criu dump``, :func:`_criuimg.add_filter` adds the collection's
process filter to the image set, ``criu restore`` brings the tree back, and then every task shows
``Seccomp: 2`` with one filter more than before the dump, ``NoNewPrivs: 1``, and in every task (each
thread probes itself) mount(2), umount2(2) and unshare(CLONE_NEWNS) fail with EPERM while open(2) works.
Three sources: never confined; an own filter installed before the fork (CRIU dumps it in TSYNC form);
the same plus a second own filter on the thread only (per-thread chains). The own filters (EXDEV for
getpriority, and for getpgid on the thread) must still answer after the restore.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _criuimg
from ansible_collections.mtd.containers.plugins.module_utils._seccomp import parse_status_seccomp

PROGRAM = r'''
import ctypes, errno, json, os, struct, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
OUT, VARIANT = sys.argv[1], sys.argv[2]
NR_SECCOMP, NR_GETPRIORITY, NR_GETPGID = 317, 140, 121   # x86_64


def own_filter(nr):
    """EXDEV for system call nr (x86_64 only), everything else allowed; installed as root, no NNP."""
    prog = [(0x20, 0, 0, 4), (0x15, 0, 3, 0xC000003E), (0x20, 0, 0, 0), (0x15, 0, 1, nr),
            (0x06, 0, 0, 0x00050000 | errno.EXDEV), (0x06, 0, 0, 0x7fff0000)]
    code = ctypes.create_string_buffer(b''.join(struct.pack('=HBBI', *insn) for insn in prog))
    fprog = ctypes.create_string_buffer(struct.pack('=HxxxxxxQ', len(prog), ctypes.addressof(code)))
    if libc.syscall(NR_SECCOMP, 1, 0, fprog) != 0:
        raise OSError(ctypes.get_errno(), 'seccomp')


def probe(full):
    result = {}
    calls = [('mount', lambda: libc.mount(b'none', b'/nonexistent-mtd', b'tmpfs', 0, None)),
             ('umount2', lambda: libc.umount2(b'/nonexistent-mtd', 0))]
    if full:   # before the dump this would really give the child a new mount namespace
        calls.append(('unshare_newns', lambda: libc.unshare(0x00020000)))
    for key, call in calls:
        ctypes.set_errno(0)
        result[key] = 0 if call() == 0 else ctypes.get_errno()
    for key, call in (('getpriority', lambda: os.getpriority(os.PRIO_PROCESS, 0)), ('getpgid', lambda: os.getpgid(0)),
                      ('open', lambda: os.close(os.open('/dev/null', os.O_RDONLY)))):
        try:
            call()
            result[key] = 0
        except OSError as exc:
            result[key] = exc.errno
    return result


def loop(name):
    with open(os.path.join(OUT, 'tid-%s' % name), 'w') as handle:
        handle.write(str(threading.get_native_id()))
    while True:
        for trigger, full in (('go-pre', False), ('go', True)):
            done = os.path.join(OUT, 'result-%s-%s' % (trigger, name))
            if os.path.exists(os.path.join(OUT, trigger)) and not os.path.exists(done):
                with open(done + '.tmp', 'w') as handle:
                    json.dump(probe(full), handle)
                os.rename(done + '.tmp', done)
        time.sleep(0.05)


if VARIANT in ('own', 'own-thread'):
    own_filter(NR_GETPRIORITY)
if os.fork() == 0:
    loop('child')


def thread_main():
    if VARIANT == 'own-thread':
        own_filter(NR_GETPGID)
    loop('thread')


threading.Thread(target=thread_main, daemon=True).start()
loop('parent')
'''

NAMES = ('parent', 'thread', 'child')


def _criu_usable():
    if os.geteuid() != 0:
        return 'needs root (criu dump/restore)'
    if platform.machine() != 'x86_64':
        return 'the probe program uses x86_64 system call numbers'
    if not shutil.which('criu'):
        return 'criu is not on PATH'
    return None


pytestmark = pytest.mark.skipif(_criu_usable() is not None, reason=str(_criu_usable()))


def _wait_for(paths, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(os.path.exists(path) for path in paths):
            return
        time.sleep(0.05)
    raise AssertionError('timed out waiting for %s' % ', '.join(path for path in paths if not os.path.exists(path)))


def _probe(out, trigger):
    with open(os.path.join(out, trigger), 'w'):
        pass
    paths = [os.path.join(out, 'result-%s-%s' % (trigger, name)) for name in NAMES]
    _wait_for(paths)
    results = {}
    for name, path in zip(NAMES, paths):
        with open(path) as handle:
            results[name] = json.load(handle)
    return results


def _status(pid, tid):
    with open('/proc/%d/task/%d/status' % (pid, tid)) as handle:
        text = handle.read()
    nnp = [line.split(':')[1].strip() for line in text.splitlines() if line.startswith('NoNewPrivs:')]
    return dict(parse_status_seccomp(text), nnp=int(nnp[0]) if nnp else None)


def _wait_gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while any(os.path.exists('/proc/%d' % pid) for pid in pids):
        assert time.monotonic() < deadline, 'the dumped tree did not go away'
        time.sleep(0.05)


def _files(directory):
    result = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), 'rb') as handle:
            result[name] = handle.read()
    return result


def _read(path):
    with open(path) as handle:
        return handle.read()


def _kill(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize('variant', ['none', 'own', 'own-thread'])
def test_restored_tree_runs_under_the_added_filter(tmp_path, variant):
    out, images = str(tmp_path / 'out'), str(tmp_path / 'images')
    os.mkdir(out)
    os.mkdir(images)
    script = tmp_path / 'tree.py'
    script.write_text(PROGRAM)
    log = open(str(tmp_path / 'tree.log'), 'wb')
    proc = subprocess.Popen([sys.executable, str(script), out, variant], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, start_new_session=True, close_fds=True)
    pids = [proc.pid]
    try:
        _wait_for([os.path.join(out, 'tid-%s' % name) for name in NAMES])
        tids = {name: int(_read(os.path.join(out, 'tid-%s' % name))) for name in NAMES}
        owner = {'parent': proc.pid, 'thread': proc.pid, 'child': tids['child']}
        pids.append(tids['child'])
        before = {name: _status(owner[name], tids[name]) for name in NAMES}
        pre = _probe(out, 'go-pre')
        version = subprocess.run(['criu', '--version'], capture_output=True, text=True, check=True).stdout
        checked = _criuimg.precheck(version, _criuimg.task_statuses(proc.pid))
        assert checked['threads'] == 3

        dump = subprocess.run(['criu', 'dump', '-t', str(proc.pid), '-D', images, '-o', 'dump.log'],
                              capture_output=True, text=True, check=False)
        assert dump.returncode == 0, _read(os.path.join(images, 'dump.log'))[-3000:]
        proc.wait(timeout=10)  # CRIU killed the tree; its pids must be free for the restore
        _wait_gone(pids)
        dumped = _files(images)
        for name, data in dumped.items():  # the codec reads and writes CRIU's own files byte for byte
            if name.startswith('core-') or name in ('seccomp.img', 'pstree.img'):
                magic = {'c': _criuimg.CORE_MAGIC, 's': _criuimg.SECCOMP_MAGIC, 'p': _criuimg.PSTREE_MAGIC}[name[0]]
                payloads = _criuimg.split_image(data, magic, name)
                assert _criuimg.join_image(magic, [_criuimg.Message(p, name).encode() for p in payloads]) == data
        summary = _criuimg.add_filter(images)
        changed = _files(images)
        assert sorted(name for name in dumped if changed[name] != dumped[name]) == sorted(summary['changed_files'])
        assert set(changed) == set(dumped)
        rows = {row['tid']: row for task in summary['tasks'] for row in task['threads']}
        assert {rows[tids[name]]['filters_before'] for name in NAMES} == {before[name]['filters'] for name in NAMES}
        for name in NAMES:
            assert rows[tids[name]]['filters_before'] == before[name]['filters'], name

        os.unlink(os.path.join(out, 'go-pre'))
        restore = subprocess.run(['criu', 'restore', '-D', images, '-d', '-o', 'restore.log'],
                                 capture_output=True, text=True, check=False)
        assert restore.returncode == 0, _read(os.path.join(images, 'restore.log'))[-3000:]
        after = {name: _status(owner[name], tids[name]) for name in NAMES}
        for name in NAMES:
            assert after[name]['mode'] == 2, (name, after[name])
            assert after[name]['filters'] == before[name]['filters'] + 1, (name, before[name], after[name])
            assert after[name]['filters'] == rows[tids[name]]['filters_after']
            assert after[name]['nnp'] == 1, name
        post = _probe(out, 'go')
    finally:
        _kill(pids)
        if proc.returncode is None:
            proc.wait(timeout=10)
        log.close()

    own = variant in ('own', 'own-thread')
    for name in NAMES:
        # The control: before the dump nothing of the collection's filter was there.
        assert pre[name]['mount'] == errno.ENOENT, (name, pre[name])
        assert pre[name]['getpriority'] == (errno.EXDEV if own else 0), (name, pre[name])
        # After the restore: the mount family and new namespaces are denied in every task...
        assert post[name]['mount'] == errno.EPERM, (name, post[name])
        assert post[name]['umount2'] == errno.EPERM, (name, post[name])
        assert post[name]['unshare_newns'] == errno.EPERM, (name, post[name])
        # ... ordinary calls work, and the source's own filters still answer.
        assert post[name]['open'] == 0, (name, post[name])
        assert post[name]['getpriority'] == (errno.EXDEV if own else 0), (name, post[name])
        thread_only = variant == 'own-thread' and name == 'thread'
        assert post[name]['getpgid'] == (errno.EXDEV if thread_only else 0), (name, post[name])
        assert pre[name]['getpgid'] == post[name]['getpgid'], name


# ---------------------------------------------------------------------------------------------
# The same on a lab host: a Docker container's checkpoint (runc + CRIU), restored by the engine


LAB_HOST = 'lab-1'
LOOP = ('i=0; while true; do i=$((i+1)); echo $i > /tmp/c; '
        'if [ -e /tmp/go ] && [ ! -e /tmp/r ]; then mount -t tmpfs none /mnt 2>/dev/null; echo "mount=$?" > /tmp/r1; '
        'unshare -m true 2>/dev/null; echo "unshare=$?" >> /tmp/r1; ls / >/dev/null; echo "ls=$?" >> /tmp/r1; '
        'grep -E "^(Seccomp|Seccomp_filters|NoNewPrivs):" /proc/self/status >> /tmp/r1; mv /tmp/r1 /tmp/r; fi; '
        'sleep 0.2; done')


def _lab_status(pid):
    with open('/proc/%d/status' % pid) as handle:  # the lab hosts share this machine's pid namespace
        text = handle.read()
    return dict(parse_status_seccomp(text), nnp='NoNewPrivs:\t1' in text)


def test_a_docker_checkpoint_restores_under_the_added_filter():
    """A never-confined CAP_SYS_ADMIN container: checkpoint, add_filter on the engine's checkpoint directory,
    ``docker start --checkpoint``; the restored shell's children cannot mount or unshare, the counter in
    its memory continues. ``docker exec`` processes are NOT covered (runc exec applies the container's own
    seccomp configuration), which the last assertion records."""
    from lab_helpers import STATE, docker, require_lab

    require_lab()
    name = 'mtd-criu-seccomp-%d' % os.getpid()
    docker(LAB_HOST, 'run', '-d', '--name', name, '--cap-add', 'SYS_ADMIN', '--security-opt', 'seccomp=unconfined',
           '--network', 'none', '127.0.0.1:5000/mtd/busybox:latest', 'sh', '-c', LOOP)
    try:
        cid = docker(LAB_HOST, 'inspect', '-f', '{{.Id}}', name).stdout.strip()
        pid = int(docker(LAB_HOST, 'inspect', '-f', '{{.State.Pid}}', name).stdout)
        assert _lab_status(pid)['mode'] == 0
        time.sleep(1)
        counted = int(docker(LAB_HOST, 'exec', name, 'cat', '/tmp/c').stdout)
        docker(LAB_HOST, 'checkpoint', 'create', name, 'cp1')
        with open('%s/%s/unshare.pid' % (STATE, LAB_HOST)) as handle:
            host_root = '/proc/%d/root' % int(handle.read())
        summary = _criuimg.add_filter('%s/var/lib/docker/containers/%s/checkpoints/cp1' % (host_root, cid))
        assert {row['filters_after'] for task in summary['tasks'] for row in task['threads']} == {1}  # sh (+ a sleep)
        time.sleep(4)  # moby#42900: a restore right after the checkpoint finds its content "already exists"
        docker(LAB_HOST, 'start', '--checkpoint', 'cp1', name)
        pid = int(docker(LAB_HOST, 'inspect', '-f', '{{.State.Pid}}', name).stdout)
        assert _lab_status(pid) == {'mode': 2, 'filters': 1, 'nnp': True}
        resumed = int(docker(LAB_HOST, 'exec', name, 'cat', '/tmp/c').stdout)
        assert counted <= resumed < counted + 100, (counted, resumed)  # the memory was kept, not restarted
        docker(LAB_HOST, 'exec', name, 'touch', '/tmp/go')
        deadline = time.monotonic() + 15
        while docker(LAB_HOST, 'exec', name, 'test', '-e', '/tmp/r', check=False).returncode != 0:
            assert time.monotonic() < deadline, 'the restored shell did not probe'
            time.sleep(0.2)
        probe = docker(LAB_HOST, 'exec', name, 'cat', '/tmp/r').stdout
        assert 'mount=1' in probe and 'unshare=1' in probe and 'ls=0' in probe, probe
        assert 'Seccomp:\t2' in probe and 'Seccomp_filters:\t1' in probe, probe
        exec_status = docker(LAB_HOST, 'exec', name, 'grep', '^Seccomp:', '/proc/self/status').stdout
        assert exec_status.split() == ['Seccomp:', '0'], exec_status
    finally:
        docker(LAB_HOST, 'rm', '-f', name, check=False)
