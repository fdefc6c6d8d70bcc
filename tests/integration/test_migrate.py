# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Live migration on the lab, with real engines and CRIU: state intact, faults rolled back, re-runs converge."""

from __future__ import annotations

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from lab_helpers import INVENTORY, ROOT, STATE, VENV_BIN, docker, require_lab, run_playbook

IMAGE = '127.0.0.1:5000/mtd/busybox:latest'
PROXY = str(ROOT / 'tests' / 'integration' / 'files' / 'fault_proxy.py')
COUNTER = ('mkdir -p /state; i=0; while true; do i=$((i+1)); echo "$i"; echo "$i" >> /state/counter.log; '
           'echo "$i" >> /vol/counter.log; echo "$i" >> /scratch/counter.log; sleep 0.1; done')


def status(host, name):
    proc = docker(host, 'inspect', '-f', '{{.State.Status}}', name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else 'absent'


def counter_lines(host, name, path):
    out = docker(host, 'exec', name, 'cat', path).stdout.split()
    return [int(x) for x in out]


def assert_consecutive(values, what):
    assert values, '%s is empty' % what
    assert values[0] == 1, '%s does not start at 1: %s' % (what, values[:5])
    gaps = [(a, b) for a, b in zip(values, values[1:]) if b != a + 1]
    assert not gaps, '%s is not consecutive (reset, repeat or loss): %s' % (what, gaps[:5])


def start_workload(host):
    name = 'it-mg-%06d' % random.randrange(10 ** 6)
    docker(host, 'run', '-d', '--name', name, '--network', 'none', '--cpus', '0.25', '--memory', '32m',
           '--label', 'mtd.units=5', '-v', '%s-vol:/vol' % name,
           '--mount', 'type=tmpfs,dst=/scratch,tmpfs-size=4m,tmpfs-mode=1770', IMAGE, 'sh', '-c', COUNTER)
    time.sleep(1.5)
    return name


def remove_everywhere(name):
    for host in ('lab-1', 'lab-2', 'lab-3', 'lab-4'):
        docker(host, 'rm', '-f', name, check=False)
        docker(host, 'volume', 'rm', '-f', name + '-vol', check=False)


def migrate(name, source, target=None, report=None, extra=(), check=True):
    args = ['-e', 'mtd_container=%s' % name, '-e', 'mtd_source=%s' % source, '-e', 'mtd_report=%s' % report,
            '-e', '{"mtd_health_cmd": ["cat", "/state/counter.log"]}']
    if target:
        args += ['-e', 'mtd_target=%s' % target]
    return run_playbook('playbooks/migrate.yml', *(args + list(extra)), check=check)


def record(report):
    with open(report) as f:
        return json.load(f)


def leftover_checkpoints(rec):
    """Checkpoint data of this migration left on any host (bundles, engine checkpoint dirs)."""
    found = []
    hosts = ('lab-1', 'lab-2', 'lab-3', 'lab-4')
    for root in ['/dev/shm/mtd-migrations', '/dev/shm/mtd-incoming'] + [
            '%s/%s/var-lib-docker/mtd-migrations' % (STATE, h) for h in hosts]:
        for suffix in ('', '.part', '.lock', '.cancel'):
            if os.path.exists(os.path.join(root, rec['id'] + suffix)):
                found.append(os.path.join(root, rec['id'] + suffix))
    for cid in (rec.get('container_id'), rec.get('target_container_id')):
        for h in hosts:
            cps = '%s/%s/var-lib-docker/containers/%s/checkpoints' % (STATE, h, cid)
            if cid and os.path.isdir(cps) and os.listdir(cps):
                found.append(cps)
    return found


@pytest.fixture
def workload(tmp_path):
    require_lab()
    name = start_workload('lab-1')
    yield name, str(tmp_path / 'record.json')
    remove_everywhere(name)


def engine_copies():
    """containerd's unpacked copies of restored checkpoints in the hosts' /tmp."""
    return set(glob.glob('%s/lab-*/tmp/ctrd-checkpoint*' % STATE))


def test_migrate_keeps_state_and_converges(workload):
    name, report = workload
    copies_before = engine_copies()
    before = counter_lines('lab-1', name, '/state/counter.log')
    proc = migrate(name, 'lab-1', report=report)
    rec = record(report)
    assert rec['state'] == 'Succeeded', rec
    assert [h['state'] for h in rec['history']] == ['Pending', 'Ready', 'Started', 'Migrating', 'Completed', 'Succeeded']
    target = rec['target']
    facts = {'lab-1': 'debian', 'lab-2': 'ubuntu', 'lab-3': 'rocky', 'lab-4': 'debian'}
    assert facts[target] != facts['lab-1'], 'moved to a host with the same OS: %s' % target
    assert status(target, name) == 'running'
    assert status('lab-1', name) == 'absent', 'the source container is still there'
    time.sleep(0.5)
    layer = counter_lines(target, name, '/state/counter.log')
    volume = counter_lines(target, name, '/vol/counter.log')
    assert_consecutive(layer, 'the writable-layer file')
    assert_consecutive(volume, 'the volume file')
    # the --mount type=tmpfs mount: same options on the target, content carried by CRIU
    scratch = counter_lines(target, name, '/scratch/counter.log')
    assert_consecutive(scratch, 'the tmpfs file')
    assert len(scratch) > len(before), 'the tmpfs counter did not go on'
    mounts = json.loads(docker(target, 'inspect', '-f', '{{json .HostConfig.Mounts}}', name).stdout)
    [scratch_mount] = [m for m in mounts if m.get('Target') == '/scratch']
    assert scratch_mount['Type'] == 'tmpfs' and scratch_mount['TmpfsOptions'] == {'SizeBytes': 4194304, 'Mode': 1016}
    assert len(layer) > len(before) and len(volume) > len(before), 'the counter did not go on'
    # the process went on from its memory: its output after the resume continues the file's numbers
    logs = [int(x) for x in docker(target, 'logs', name).stdout.split()]
    assert logs and logs[0] > 1 and logs == list(range(logs[0], logs[0] + len(logs))), logs[:5]
    assert not leftover_checkpoints(rec)
    assert not engine_copies() - copies_before, 'containerd kept a copy of the checkpoint in /tmp'
    # CRIU read the images straight from the bundle; runc's CRIU config existed only during the start
    assert rec['phases']['image_delivery'] == 'direct'
    assert rec['phases']['bundle_on_tmpfs'] is True, 'the target received the checkpoint on disk'
    assert 0 < rec['phases']['restore']['restore_criu'] <= rec['phases']['restore']['restore']
    assert not glob.glob('%s/lab-*/etc-criu/runc.conf' % STATE)
    labels = json.loads(docker(target, 'inspect', '-f', '{{json .Config.Labels}}', name).stdout)
    assert labels['mtd.migration.id'] == rec['id'] and labels['mtd.migration.from'] == 'lab-1'
    assert rec['phases']['checkpoint']['dump'] > 0 and rec['phases']['transfer']['bytes_sent'] > 0
    assert 'Succeeded' in proc.stdout
    assert rec['precopy']['used'] is False and rec['precopy']['reason']

    # idempotence: the same request again changes nothing
    again = migrate(name, 'lab-1', report=report)
    assert '(no change)' in again.stdout and 'changed=0' in again.stdout, again.stdout[-3000:]
    assert status(target, name) == 'running'


def wait_for_port_and_start_proxy(mode, offset, ready=''):
    port = random.randrange(20000, 30000)
    receiver_port = port + 10000
    proxy = subprocess.Popen([sys.executable, PROXY, str(port), '127.0.1.3', str(receiver_port), mode,
                              str(offset), ready], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    extra = ['-e', 'migrate_transfer_port=%d' % receiver_port, '-e', 'migrate_transfer_connect=127.0.0.1:%d' % port]
    return proxy, extra


def assert_rolled_back(name, report, cause):
    rec = record(report)
    assert rec['state'] == 'Failed', rec
    assert cause in rec['error'], rec['error']
    assert status('lab-1', name) == 'running', 'the source does not run after the rollback'
    first = counter_lines('lab-1', name, '/state/counter.log')
    time.sleep(0.6)
    later = counter_lines('lab-1', name, '/state/counter.log')
    assert_consecutive(later, 'the source file after rollback')
    assert len(later) > len(first), 'the source counter does not go on after the rollback'
    assert status('lab-3', name) == 'absent', 'the target kept a copy'
    assert not leftover_checkpoints(rec)
    return rec


@pytest.mark.parametrize('mode,cause', [
    ('corrupt', 'integrity'),
    ('cut', 'Sending the checkpoint failed'),
])
def test_transfer_faults_roll_back(workload, mode, cause):
    name, report = workload
    proxy, extra = wait_for_port_and_start_proxy(mode, 16384)
    try:
        proc = migrate(name, 'lab-1', target='lab-3', report=report, extra=extra, check=False)
    finally:
        proxy.kill()
        proxy.wait()
    assert proc.returncode != 0
    assert 'runs on lab-1' in proc.stdout
    assert_rolled_back(name, report, cause)


def test_target_engine_killed_before_restore(workload, tmp_path):
    name, report = workload
    ready = str(tmp_path / 'held')
    proxy, extra = wait_for_port_and_start_proxy('hold', 16384, ready)
    run = subprocess.Popen([str(VENV_BIN / 'ansible-playbook'), '-i', str(INVENTORY), 'playbooks/migrate.yml',
                            '-e', 'mtd_container=%s' % name, '-e', 'mtd_source=lab-1', '-e', 'mtd_target=lab-3',
                            '-e', 'mtd_report=%s' % report] + extra,
                           cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg')))
    try:
        deadline = time.time() + 120
        while not os.path.exists(ready) and time.time() < deadline:
            time.sleep(0.1)
        assert os.path.exists(ready), 'the transfer never started'
        with open('%s/lab-3/dockerd.pid' % STATE) as f:
            os.kill(int(f.read()), signal.SIGKILL)       # the target's engine dies mid-migration
        os.unlink(ready)                                  # let the transfer finish
        out, dummy = run.communicate(timeout=300)
    finally:
        proxy.kill()
        proxy.wait()
        if run.poll() is None:
            run.kill()
        subprocess.run(['bash', str(ROOT / 'lab' / 'lab.sh'), 'up'], capture_output=True, check=False, timeout=300)
    assert run.returncode != 0, out[-3000:]
    rec = record(report)
    assert rec['state'] == 'Failed' and 'Docker engine' in rec['error'], rec
    assert status('lab-1', name) == 'running'
    first = counter_lines('lab-1', name, '/state/counter.log')
    time.sleep(0.5)
    assert_consecutive(counter_lines('lab-1', name, '/state/counter.log'), 'the source file')
    assert len(counter_lines('lab-1', name, '/state/counter.log')) > len(first)
    # with its engine back, a re-run clears the target's standby and completes the move
    migrate(name, 'lab-1', target='lab-3', report=report)
    assert record(report)['state'] == 'Succeeded'
    assert status('lab-3', name) == 'running' and status('lab-1', name) == 'absent'
    assert_consecutive(counter_lines('lab-3', name, '/state/counter.log'), 'the file after the re-run')


@pytest.mark.parametrize('memory', ['copy', 'lazy'])
def test_controller_killed_then_rerun_converges(workload, memory):
    name, report = workload
    run = subprocess.Popen([str(VENV_BIN / 'ansible-playbook'), '-i', str(INVENTORY), 'playbooks/migrate.yml',
                            '-e', 'mtd_container=%s' % name, '-e', 'mtd_source=lab-1', '-e', 'mtd_target=lab-2',
                            '-e', 'mtd_report=%s' % report, '-e', 'migrate_memory=%s' % memory],
                           cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                           env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg')))
    deadline = time.time() + 120
    state = None
    while time.time() < deadline and run.poll() is None:
        try:
            state = record(report)['state']
        except (OSError, ValueError):
            state = None
        if state == 'Migrating':
            break
        time.sleep(0.05)
    frozen = False
    while time.time() < deadline and run.poll() is None and not frozen:
        frozen = status('lab-1', name) == 'paused'
    os.killpg(run.pid, signal.SIGKILL)                    # the controller dies with the source frozen
    run.wait()
    assert state == 'Migrating', 'the run ended before the freeze (state %s)' % state
    assert frozen, 'the controller was not killed while the source was frozen'
    copies = [h for h in ('lab-1', 'lab-2') if status(h, name) == 'running']
    assert len(copies) <= 1
    migrate(name, 'lab-1', target='lab-2', report=report, extra=['-e', 'migrate_memory=%s' % memory])
    rec = record(report)
    assert rec['state'] == 'Succeeded', rec
    running = [h for h in ('lab-1', 'lab-2', 'lab-3', 'lab-4') if status(h, name) == 'running']
    assert running == ['lab-2'], running
    assert_consecutive(counter_lines('lab-2', name, '/state/counter.log'), 'the file after convergence')
    assert_consecutive(counter_lines('lab-2', name, '/vol/counter.log'), 'the volume after convergence')
    assert not lazy_processes(rec) and not lazy_leftovers(rec) and not leftover_checkpoints(rec)


def sender_pids(port):
    """Processes holding a TCP connection to 127.0.0.1:port (the lab hosts share this network namespace)."""
    inodes = set()
    with open('/proc/net/tcp') as handle:
        for line in handle.readlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].split(':')[1], 16)
            if remote_port == port and fields[3] == '01':      # ESTABLISHED
                inodes.add('socket:[%s]' % fields[9])
    found = set()
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir('/proc/%s/fd' % pid):
                if os.readlink('/proc/%s/fd/%s' % (pid, fd)) in inodes:
                    found.add(int(pid))
        except OSError:
            continue
    return found


def test_failed_cleanup_on_converge_still_resumes_the_source(workload, tmp_path):
    """An interrupted run leaves the source frozen; on the re-run the cleanup of the target fails for
    real (a foreign container uses the standby's volume, so the engine refuses to remove it). The
    rollback goes on: the source must run again, the only running copy, its files intact."""
    name, report = workload
    ready = str(tmp_path / 'held')
    proxy, extra = wait_for_port_and_start_proxy('hold', 16384, ready)
    proxy_port = int(extra[-1].rsplit(':', 1)[1])
    run = subprocess.Popen([str(VENV_BIN / 'ansible-playbook'), '-i', str(INVENTORY), 'playbooks/migrate.yml',
                            '-e', 'mtd_container=%s' % name, '-e', 'mtd_source=lab-1', '-e', 'mtd_target=lab-3',
                            '-e', 'mtd_report=%s' % report] + extra,
                           cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                           env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg')))
    holder = name + '-holder'
    try:
        deadline = time.time() + 120
        while not os.path.exists(ready) and time.time() < deadline and run.poll() is None:
            time.sleep(0.05)
        assert os.path.exists(ready), 'the transfer never started'
        # the controller dies while the frozen source sends; so does the module that sends (a host-side
        # crash: nothing is left on the source that could resume the container by itself)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        senders = sender_pids(proxy_port) - {proxy.pid}
        assert senders, 'no process sends to the proxy'
        for pid in senders:
            os.kill(pid, signal.SIGKILL)
        rec = record(report)
        assert rec['state'] == 'Migrating' and rec['target'] == 'lab-3', rec
        assert status('lab-1', name) == 'paused'
        # the real fault: a container that is not part of the migration uses the standby's volume
        labels = json.loads(docker('lab-3', 'volume', 'inspect', '-f', '{{json .Labels}}', name + '-vol').stdout)
        assert labels.get('mtd.migration.id') == rec['id'], labels
        docker('lab-3', 'run', '-d', '--name', holder, '--network', 'none', '-v', '%s-vol:/held' % name, IMAGE,
               'sleep', '600')
        proxy.kill()                                      # the rest of the stream goes nowhere
        proxy.wait()

        # The re-run converges first (its cleanup of lab-3 fails), then tries again towards lab-4, which
        # has the source's OS and is refused before anything is frozen: the source must run on.
        seen = []
        again = subprocess.Popen([str(VENV_BIN / 'ansible-playbook'), '-i', str(INVENTORY), 'playbooks/migrate.yml',
                                  '-e', 'mtd_container=%s' % name, '-e', 'mtd_source=lab-1', '-e', 'mtd_target=lab-4',
                                  '-e', 'mtd_report=%s' % report, '-e', '{"mtd_health_cmd": ["cat", "/state/counter.log"]}'],
                                 cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1'))
        while again.poll() is None:
            try:
                now = record(report)
            except (OSError, ValueError):
                continue
            if now['state'] == 'Failed' and now not in seen:
                seen.append(now)
            time.sleep(0.01)
        out = again.stdout.read()
        converged = [r for r in seen if r['error'].startswith('interrupted in state Migrating')]
        assert converged, 'the re-run never recorded the rolled-back attempt:\n' + out[-4000:]
        # the cleanup of the target really failed, and the source was resumed all the same
        assert converged[0]['rollback'] == {'source': 'running', 'target_cleaned': False, 'checkpoint_cleaned': True}, \
            converged[0]['rollback']
        assert again.returncode != 0 and 'no target host fits' in out, out[-4000:]
        assert 'volume is in use' in docker('lab-3', 'volume', 'rm', name + '-vol', check=False).stderr
    finally:
        for process in (proxy, run):
            if process.poll() is None:
                process.kill()
                process.wait()
        docker('lab-3', 'rm', '-f', holder, check=False)
    running = [h for h in ('lab-1', 'lab-2', 'lab-3', 'lab-4') if status(h, name) == 'running']
    assert running == ['lab-1'], running
    rec = record(report)
    assert rec['state'] == 'Failed' and 'refused before the freeze' in rec['error'], rec
    first = counter_lines('lab-1', name, '/state/counter.log')
    time.sleep(0.6)
    later = counter_lines('lab-1', name, '/state/counter.log')
    assert_consecutive(later, 'the source file after the rollback')
    assert_consecutive(counter_lines('lab-1', name, '/vol/counter.log'), 'the source volume after the rollback')
    assert len(later) > len(first), 'the source counter does not go on'
    assert not leftover_checkpoints(converged[0])


def test_bad_input_changes_nothing(workload, tmp_path):
    name, report = workload
    unknown = migrate('it-mg-no-such', 'lab-1', report=str(tmp_path / 'u.json'), check=False)
    assert unknown.returncode != 0 and 'No container it-mg-no-such on lab-1' in unknown.stdout
    same = migrate(name, 'lab-1', target='lab-1', report=report, check=False)
    assert same.returncode != 0 and 'target must differ from the source' in same.stdout
    docker('lab-1', 'stop', '-t', '1', name)
    try:
        stopped = migrate(name, 'lab-1', report=report, check=False)
        assert stopped.returncode != 0 and 'only a running container is migrated' in stopped.stdout
    finally:
        docker('lab-1', 'start', name)
    for out in (unknown.stdout, same.stdout, stopped.stdout):
        assert 'Traceback' not in out
    assert status('lab-1', name) == 'running'
    assert all(status(h, name) == 'absent' for h in ('lab-2', 'lab-3', 'lab-4'))


# ---------------------------------------------------------------------------------------------------
# Post-copy (migrate_memory=lazy): a workload that holds memory and can prove it is intact

PY_IMAGE = '127.0.0.1:5000/mtd/debian-python:bookworm'
MEMORY_WORKLOAD = r'''
import hashlib, os, signal, sys, time
os.makedirs("/state", exist_ok=True)
buf = bytearray(os.urandom(int(sys.argv[1]) << 20))
def sha(*args):
    with open("/state/sha.log", "a") as f:
        f.write(hashlib.sha256(buf).hexdigest() + "\n")
signal.signal(signal.SIGUSR1, sha)
sha()
i = 0
while True:
    i += 1
    print(i, flush=True)
    for path in ("/state/counter.log", "/vol/counter.log"):
        with open(path, "a") as f:
            f.write("%d\n" % i)
    time.sleep(0.1)
'''
LAZY = ['-e', 'migrate_memory=lazy']


def lazy_processes(rec):
    """Page servers and lazy-pages daemons of this migration still running on the machine."""
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                cmdline = handle.read().replace(b'\0', b' ').decode('utf-8', 'replace')
        except OSError:
            continue
        if rec['id'] in cmdline and ('lazy-pages' in cmdline or 'checkpoint' in cmdline or 'criu' in cmdline):
            found.append(cmdline.strip())
    return found


def lazy_leftovers(rec):
    return glob.glob('/dev/shm/mtd-*/%s.*' % rec['id']) + glob.glob(
        '%s/lab-*/var-lib-docker/mtd-migrations/%s.*' % (STATE, rec['id']))


def memory_sha(host, name):
    """Ask the workload to hash its buffer again; the first and the last line of its log."""
    docker(host, 'kill', '-s', 'USR1', name)
    deadline = time.time() + 20
    while time.time() < deadline:
        lines = docker(host, 'exec', name, 'cat', '/state/sha.log').stdout.split()
        if len(lines) >= 2:
            return lines[0], lines[-1]
        time.sleep(0.2)
    raise AssertionError('the workload did not hash its memory again on %s' % host)


@pytest.fixture
def memory_workload(tmp_path):
    require_lab()
    name = 'it-lz-%06d' % random.randrange(10 ** 6)
    docker('lab-1', 'run', '-d', '--name', name, '--network', 'none', '--memory', '512m', '--label', 'mtd.units=5',
           '-v', '%s-vol:/vol' % name, PY_IMAGE, 'python3', '-c', MEMORY_WORKLOAD, '128')
    deadline = time.time() + 60
    while time.time() < deadline and len(docker('lab-1', 'logs', name).stdout.split()) < 5:
        time.sleep(0.2)
    yield name, str(tmp_path / 'record.json')
    remove_everywhere(name)


def test_lazy_migration_keeps_memory_and_files(memory_workload):
    name, report = memory_workload
    migrate(name, 'lab-1', target='lab-2', report=report, extra=LAZY)
    rec = record(report)
    assert rec['state'] == 'Succeeded', rec
    assert rec['phases']['memory'] == 'lazy'
    assert rec['precopy']['used'] is False and 'post-copy (lazy pages) was used' in rec['precopy']['reason']
    restore = rec['phases']['restore']
    assert restore['lazy_fetch'] > 0 and restore['lazy_daemon'] > 0
    # only the images that cannot be fetched later travelled in the bundle (128 MB of memory stayed behind)
    assert rec['phases']['transfer']['bytes_raw'] < 32 * 1024 * 1024, rec['phases']['transfer']
    assert status('lab-2', name) == 'running' and status('lab-1', name) == 'absent'
    first, last = memory_sha('lab-2', name)
    assert first == last, 'the 128 MB buffer changed in the move'
    assert_consecutive(counter_lines('lab-2', name, '/state/counter.log'), 'the writable-layer file')
    assert_consecutive(counter_lines('lab-2', name, '/vol/counter.log'), 'the volume file')
    logs = [int(x) for x in docker('lab-2', 'logs', name).stdout.split()]
    assert logs and logs[0] > 1 and logs == list(range(logs[0], logs[0] + len(logs))), logs[:5]
    assert not leftover_checkpoints(rec) and not lazy_leftovers(rec)
    assert not lazy_processes(rec)
    assert not glob.glob('%s/lab-*/etc-criu/runc.conf' % STATE)


def test_lazy_page_server_is_ended_when_the_target_never_fetches(memory_workload):
    """The bundle is corrupted in transit: the target never starts its lazy-pages daemon, so the source's
    page server waits for ever. The rollback ends it without letting the container run behind the
    engine's back, then resumes it."""
    name, report = memory_workload
    proxy, extra = wait_for_port_and_start_proxy('corrupt', 16384)
    try:
        proc = migrate(name, 'lab-1', target='lab-3', report=report, extra=extra + LAZY, check=False)
    finally:
        proxy.kill()
        proxy.wait()
    assert proc.returncode != 0 and 'runs on lab-1' in proc.stdout
    rec = record(report)
    assert rec['state'] == 'Failed' and 'integrity' in rec['error'], rec
    assert status('lab-1', name) == 'running' and status('lab-3', name) == 'absent'
    first = counter_lines('lab-1', name, '/state/counter.log')
    time.sleep(0.6)
    later = counter_lines('lab-1', name, '/state/counter.log')
    assert_consecutive(later, 'the source file after rollback')
    assert len(later) > len(first)
    assert memory_sha('lab-1', name)[0] == memory_sha('lab-1', name)[1]
    assert not lazy_processes(rec) and not lazy_leftovers(rec) and not leftover_checkpoints(rec)


def test_lazy_daemon_killed_mid_transfer_rolls_back_to_the_frozen_source(memory_workload):
    """The target's lazy-pages daemon dies while the restored copy already runs: that copy cannot go on
    (its missing pages will never come). The source stayed frozen with all of its memory and takes over."""
    name, report = memory_workload
    run = subprocess.Popen([str(VENV_BIN / 'ansible-playbook'), '-i', str(INVENTORY), 'playbooks/migrate.yml',
                            '-e', 'mtd_container=%s' % name, '-e', 'mtd_source=lab-1', '-e', 'mtd_target=lab-3',
                            '-e', 'mtd_report=%s' % report] + LAZY,
                           cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg')))
    killed = None
    try:
        deadline = time.time() + 180
        mid = None
        while mid is None and time.time() < deadline and run.poll() is None:
            try:
                mid = record(report)['id'].encode()
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        while killed is None and time.time() < deadline and run.poll() is None:
            for pid in os.listdir('/proc'):
                if not pid.isdigit():
                    continue
                try:
                    with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                        argv = handle.read().split(b'\0')
                except OSError:
                    continue
                if b'lazy-pages' in argv and any(mid in a for a in argv) and status('lab-3', name) == 'running':
                    os.kill(int(pid), signal.SIGKILL)   # the restored copy runs, its pages are still coming
                    killed = pid
                    break
            time.sleep(0.01)
        out, dummy = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    if killed is None:
        pytest.fail('the lazy-pages daemon finished before it could be killed:\n' + out[-2000:])
    assert run.returncode != 0, out[-3000:]
    rec = record(report)
    assert rec['state'] == 'Failed' and 'did not get all of its memory' in rec['error'], rec
    assert status('lab-1', name) == 'running' and status('lab-3', name) == 'absent'
    first, last = memory_sha('lab-1', name)
    assert first == last, 'the source lost memory'
    time.sleep(0.5)
    assert_consecutive(counter_lines('lab-1', name, '/state/counter.log'), 'the source file after rollback')
    assert not lazy_processes(rec) and not lazy_leftovers(rec) and not leftover_checkpoints(rec)
