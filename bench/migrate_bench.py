#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Live-migration benchmark: downtime and total time of five paths, side by side in one run.

For workloads holding 16, 256 and 1024 MB of anonymous memory (python3 fills a bytearray with random
bytes, then prints "<counter> <epoch>" every 10 ms), measure on the lab (lab-1 -> lab-2):

  (a) floor   raw `criu dump` + `criu restore -d` of the same script run with setsid outside containers,
              images in a tmpfs directory, stdout to a file;
  (b) docker  `docker checkpoint create` on the source engine, copy the checkpoint directory into the
              standby container's <data-root>/containers/<id>/checkpoints/, `docker start --checkpoint`;
  (c) ansible the naive Ansible path through the controller (bench/naive_migrate.yml: checkpoint, fetch,
              copy, restore);
  (d) ours    the collection's playbooks/migrate.yml, per-phase timings from its JSON report;
  (e) lazy    the same with migrate_memory=lazy (post-copy: the memory follows after the resume; the total
              includes the wait until every page arrived).

Downtime = last counter line printed before the freeze -> first line printed after the resume, from the
timestamps the workload prints (container logs on source and target; the output file for the floor).
Total = first action of the path -> the restore command returned (the whole ansible-playbook run for (c),
(d) and (e)). With --where (default on at 256 MB) the Docker run is traced: a 5 ms poller follows the files
the engine writes (containerd's temporary CRIU directories, its content-store ingest, the checkpoint
directory, the runtime bundle) and CRIU's own logs, and the engine's runc is timed directly.

Everything it creates is named bench-*, removed at the end of each case (also on failure or SIGTERM);
every command has a timeout and --budget bounds the whole run. Needs root and the lab (lab/lab.sh up).

Run from the repo root:
  PYTHONPATH=.build/collections .venv/bin/python bench/migrate_bench.py [--sizes 16 256 1024]
      [--paths floor docker ansible ours] [--results bench/RESULTS.md | --no-results] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.environ.get('MTD_LAB_STATE', '/var/lib/mtd-lab')
DOCKER = '/usr/bin/docker'
CRIU = '/usr/local/sbin/criu'
PYTHON = '/usr/bin/python3'
ANSIBLE_PLAYBOOK = os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook')
INVENTORY = os.path.join(ROOT, 'lab', 'inventory.yml')
IMAGE = '127.0.0.1:5000/mtd/debian-python:bookworm'
SHM = '/dev/shm'
SECTION = '## Live migration'
PATHS = ('floor', 'docker', 'ansible', 'ours', 'lazy')
OURS_VARS = []   # --ours-var
TITLES = {
    'floor': '(a) raw CRIU floor',
    'docker': "(b) Docker's own path",
    'ansible': '(c) naive Ansible',
    'ours': '(d) ours (migrate.yml)',
    'lazy': '(e) ours, post-copy',
}
TOOL_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

# The workload. Its marker line lets the harness check a PID before it kills it.
WORKLOAD = '''# mtd-bench-workload
import os, sys, time
mb = int(sys.argv[1])
chunk = 1 << 20
buf = bytearray(mb * chunk)
for off in range(0, len(buf), chunk):
    buf[off:off + chunk] = os.urandom(chunk)
print('ready %d MB' % mb, flush=True)
n = 0
while True:
    n += 1
    print('%d %.6f' % (n, time.time()), flush=True)
    time.sleep(0.01)
'''
MARKER = b'mtd-bench-workload'
INTERVAL = 0.01   # the workload's sleep between two lines
COUNTER_RE = re.compile(r'^(\d+) (\d+\.\d+)$')
CRIU_TS_RE = re.compile(r'^\((\d+\.\d+)\)')


class BenchError(Exception):
    pass


class Interrupted(BaseException):
    """Raised from the signal handler so that every finally block (cleanup) still runs."""


def log(message):
    sys.stderr.write('[%s] %s\n' % (time.strftime('%H:%M:%S'), message))
    sys.stderr.flush()


def _tail(text, lines=6):
    return ' | '.join((text or '').strip().splitlines()[-lines:])


def run(argv, timeout=120, check=True, what=None, **kwargs):
    """Run argv (never a shell string), capture text output, fail with the tail of stderr."""
    env = dict(os.environ, LANG='C.UTF-8', LC_ALL='C.UTF-8', PATH=TOOL_PATH + ':' + os.environ.get('PATH', ''))
    env.update(kwargs.pop('env', {}))
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=timeout, check=False, env=env, **kwargs)
    except subprocess.TimeoutExpired:
        raise BenchError('%s timed out after %ss' % (what or ' '.join(argv[:5]), timeout))
    if check and proc.returncode != 0:
        detail = _tail(proc.stderr) or _tail(proc.stdout)
        raise BenchError('%s failed (rc=%d): %s' % (what or ' '.join(argv[:5]), proc.returncode, detail))
    return proc


def dir_bytes(path):
    total = 0
    for base, _dummy, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return total


def counter_lines(text):
    """The (counter, epoch) lines of the workload's output, in order."""
    lines = []
    for line in (text or '').splitlines():
        match = COUNTER_RE.match(line.strip())
        if match:
            lines.append((int(match.group(1)), float(match.group(2))))
    return lines


def gap(before, after):
    """Downtime from the last line before the freeze to the first line after the resume."""
    if not before:
        raise BenchError('no counter line before the freeze')
    if not after:
        raise BenchError('no counter line after the resume')
    last, first = before[-1], after[0]
    missing = first[0] - last[0] - 1
    if missing == 0:
        check = 'ok %d->%d' % (last[0], first[0])
    elif missing > 0:
        check = 'LOST %d (%d->%d)' % (missing, last[0], first[0])
    else:
        check = 'REPEAT %d (%d->%d)' % (-missing, last[0], first[0])
    # A line's timestamp is taken just before it is printed: when the freeze falls between the two, the first
    # line after the resume carries a time from before the freeze, and the stall shows up before the next line.
    downtime = first[1] - last[1]
    if len(after) > 1 and after[1][0] == first[0] + 1:
        downtime = max(downtime, after[1][1] - last[1] - INTERVAL)
    return {'downtime': downtime, 'last_before': list(last), 'first_after': list(first), 'counter': check}


def criu_log_seconds(path):
    """CRIU's own run time: the last "(seconds)" stamp of one of its logs, None when unreadable."""
    try:
        with open(path) as handle:
            stamps = [CRIU_TS_RE.match(line) for line in handle]
    except (IOError, OSError):
        return None
    stamps = [float(match.group(1)) for match in stamps if match]
    return stamps[-1] if stamps else None


def wait_for(predicate, timeout, what, interval=0.05):
    end = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > end:
            raise BenchError('timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(interval)


class Cleanup:
    """Undo actions, run last-in first-out; a failing action is logged and the others still run."""

    def __init__(self):
        self.actions = []

    def add(self, what, func, *args):
        self.actions.append((what, func, args))

    def run(self):
        while self.actions:
            what, func, args = self.actions.pop()
            try:
                func(*args)
            except Exception as exc:  # pylint: disable=broad-except
                log('cleanup: %s failed: %s' % (what, exc))


class Engine:
    """One lab host's Docker engine, seen from the machine."""

    def __init__(self, host):
        self.host = host
        self.dir = os.path.join(LAB, host)
        self.sock = 'unix://' + os.path.join(self.dir, 'docker.sock')
        self.data_root = os.path.join(self.dir, 'var-lib-docker')
        self.tmp = os.path.join(self.dir, 'tmp')
        self.content = os.path.join(self.data_root, 'containerd', 'daemon', 'io.containerd.content.v1.content')
        self.bundles = os.path.join(self.data_root, 'containerd', 'daemon', 'io.containerd.runtime.v2.task', 'moby')

    def docker(self, *args, **kwargs):
        kwargs.setdefault('what', 'docker %s on %s' % (args[0], self.host))
        return run([DOCKER, '-H', self.sock] + list(args), **kwargs)

    def up(self):
        return self.docker('version', '-f', '{{.Server.Version}}', check=False, timeout=20).returncode == 0

    def container_id(self, name):
        return self.docker('inspect', '-f', '{{.Id}}', name).stdout.strip()

    def logs(self, name):
        return self.docker('logs', name, timeout=60, check=False).stdout

    def remove(self, name):
        if not name.startswith('bench-'):
            raise BenchError('refusing to remove %s: not a bench container' % name)
        self.docker('rm', '-f', name, check=False, timeout=120)

    def start_workload(self, name, mb):
        self.docker(*(['run', '-d'] + create_args(name, mb)), timeout=120)

    def wait_counter(self, name, count=30, timeout=180):
        return wait_for(lambda: len(counter_lines(self.logs(name))) >= count, timeout,
                        '%s on %s to print %d counter lines' % (name, self.host, count), interval=0.2)

    def sshd_pid(self):
        with open(os.path.join(self.dir, 'sshd.pid')) as handle:
            return handle.read().strip()

    def daemon_pids(self):
        """PIDs of this host's dockerd and of the containerd it started."""
        with open(os.path.join(self.dir, 'dockerd.pid')) as handle:
            dockerd = int(handle.read().strip())
        children = run(['pgrep', '-P', str(dockerd), '-x', 'containerd'], check=False, timeout=10).stdout.split()
        pids = {'dockerd': dockerd}
        if children:
            pids['containerd'] = int(children[0])
        return pids

    def restore_dirs(self):
        """containerd's restore scratch directories (/tmp/ctrd-checkpoint* inside the host)."""
        return set(glob.glob(os.path.join(self.tmp, 'ctrd-checkpoint*')))


def create_args(name, mb):
    return ['--name', name, '--network', 'none', '--label', 'mtd.bench=migrate_bench', IMAGE,
            'python3', '-c', WORKLOAD, str(mb)]


def _images_of(path, container_id):
    """True when the CRIU images in ``path`` were dumped from ``container_id`` (its id is in the cgroup and
    mount images), so that a scratch directory of someone else's restore is never touched."""
    needle = container_id.encode()
    for image in glob.glob(os.path.join(path, 'cgroup.img')) + glob.glob(os.path.join(path, 'mountpoints-*.img')):
        try:
            with open(image, 'rb') as handle:
                if needle in handle.read():
                    return True
        except (IOError, OSError):
            pass
    return False


def remove_new_restore_dirs(engine, before, source_id, result):
    """containerd 1.6 leaves its restore scratch copy in the host's /tmp: remove the ones of this case."""
    if not source_id:
        return
    leaked = sorted(path for path in engine.restore_dirs() - before if _images_of(path, source_id))
    if leaked:
        result['leaked_restore_dirs'] = len(leaked)
        result['leaked_restore_bytes'] = sum(dir_bytes(path) for path in leaked)
    for path in leaked:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- file poller (where the time goes)

class Poller(threading.Thread):
    """Samples a few probes every 5 ms and keeps, for each, when it first held a value, when that value
    last changed, when it went away and its largest size."""

    def __init__(self, probes, interval=0.005):
        super().__init__(daemon=True)
        self.probes = probes
        self.interval = interval
        self.t0 = None
        self.stats = dict((name, {'first': None, 'last_change': None, 'gone': None, 'max': 0}) for name in probes)
        self._values = {}
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            now = time.time()
            for name, probe in self.probes.items():
                try:
                    value = probe()
                except OSError:
                    value = None
                if value == self._values.get(name, 'unset'):
                    continue
                self._values[name] = value
                stat = self.stats[name]
                if value:
                    if stat['first'] is None:
                        stat['first'] = now
                    stat['last_change'] = now
                    stat['gone'] = None
                    stat['max'] = max(stat['max'], value if isinstance(value, int) else 0)
                elif stat['first'] is not None and stat['gone'] is None:
                    stat['gone'] = now
            self._halt.wait(self.interval)

    def finish(self, t0):
        self._halt.set()
        self.join(5)
        out = {}
        for name, stat in self.stats.items():
            out[name] = dict((key, None if value is None else (round(value - t0, 3) if key != 'max' else value))
                             for key, value in stat.items())
        return out


def _size_of(pattern):
    paths = glob.glob(pattern)
    return sum(dir_bytes(path) if os.path.isdir(path) else os.path.getsize(path) for path in paths) if paths else 0


def _ingest_bytes(engine, accept):
    """Bytes in containerd's content-store ingests whose ref (what is being written) ``accept`` takes."""
    total = 0
    for data in glob.glob(os.path.join(engine.content, 'ingest', '*', 'data')):
        try:
            with open(os.path.join(os.path.dirname(data), 'ref')) as handle:
                ref = handle.read()
            if accept(ref):
                total += os.path.getsize(data)
        except (IOError, OSError):
            pass
    return total


def _ref_is_mine(ref, engine, source_id, mine):
    match = re.search(r'ctd-checkpoint\w+', ref)
    if not match:
        return False
    if match.group(0) not in mine and _images_of(os.path.join(engine.tmp, match.group(0)), source_id):
        mine.add(match.group(0))
    return match.group(0) in mine


def cpu_seconds(pids):
    """User + system CPU seconds used so far by each named PID."""
    tick = float(os.sysconf('SC_CLK_TCK'))
    out = {}
    for name, pid in pids.items():
        try:
            with open('/proc/%d/stat' % pid) as handle:
                fields = handle.read().rsplit(')', 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        except (IOError, OSError, IndexError, ValueError):
            pass
    return out


def cpu_delta(before, after):
    return dict((name, round(after[name] - before[name], 2)) for name in before if name in after)


def _exists(path):
    return 1 if os.path.exists(path) else 0


# ---------------------------------------------------------------- (a) the floor

def _pid_is_workload(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return MARKER in handle.read()
    except (IOError, OSError):
        return False


def _kill_workload(pid):
    if _pid_is_workload(pid):
        os.kill(pid, signal.SIGKILL)


def _reap(proc):
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        log('workload %d did not exit' % proc.pid)


def run_floor(mb, timeout):
    result = {'path': 'floor', 'mb': mb}
    cleanup = Cleanup()
    try:
        work = tempfile.mkdtemp(prefix='bench-floor-%d-' % mb, dir=SHM)
        cleanup.add('remove %s' % work, shutil.rmtree, work, True)
        images = os.path.join(work, 'img')
        os.mkdir(images, 0o700)
        output = os.path.join(work, 'out.log')
        with open(output, 'ab') as handle:
            proc = subprocess.Popen([PYTHON, '-c', WORKLOAD, str(mb)], stdin=subprocess.DEVNULL, stdout=handle,
                                    stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        pid = proc.pid
        cleanup.add('reap workload %d' % pid, _reap, proc)
        cleanup.add('kill workload %d' % pid, _kill_workload, pid)

        def read():
            with open(output) as handle:
                return handle.read()

        wait_for(lambda: len(counter_lines(read())) >= 30, 180, 'the floor workload to print', interval=0.1)
        t_freeze = time.time()
        run([CRIU, 'dump', '-t', str(pid), '-D', images, '-o', 'dump.log', '-v4'], timeout=timeout,
            what='criu dump')
        t_dumped = time.time()
        proc.wait(30)  # the dump killed it; reap it so that its PID is free for the restore
        before = counter_lines(read())
        offset = os.path.getsize(output)
        result['checkpoint_bytes'] = dir_bytes(images)
        t_restore = time.time()
        run([CRIU, 'restore', '-d', '-D', images, '-o', 'restore.log', '-v4'], timeout=timeout, what='criu restore')
        t_restored = time.time()

        def after_lines():
            with open(output) as handle:
                handle.seek(offset)
                return counter_lines(handle.read())

        after = wait_for(after_lines, 30, 'the restored floor workload to print')
        result.update(gap(before, after))
        result['total'] = t_restored - t_freeze
        result['phases'] = {'criu dump': t_dumped - t_freeze, 'criu restore -d': t_restored - t_restore}
        result['criu'] = {'dump': criu_log_seconds(os.path.join(images, 'dump.log')),
                          'restore': criu_log_seconds(os.path.join(images, 'restore.log'))}
        if not _pid_is_workload(pid):
            raise BenchError('the restored workload is not running as PID %d' % pid)
    finally:
        cleanup.run()
    return result


# ---------------------------------------------------------------- (b) Docker's own path

def run_docker(mb, src, dst, timeout, where=False):
    result = {'path': 'docker', 'mb': mb}
    name = 'bench-b-%d-%s' % (mb, uuid.uuid4().hex[:6])
    checkpoint = 'bench'
    cleanup = Cleanup()
    restore_dirs = dst.restore_dirs()
    try:
        cleanup.add('remove %s on %s' % (name, src.host), src.remove, name)
        cleanup.add('remove %s on %s' % (name, dst.host), dst.remove, name)
        ids = {}
        cleanup.add('remove restore scratch on %s' % dst.host, lambda: remove_new_restore_dirs(
            dst, restore_dirs, ids.get('source'), result))
        src.start_workload(name, mb)
        src.wait_counter(name)
        source_id = ids['source'] = src.container_id(name)

        t_start = time.time()
        standby = dst.docker(*(['create'] + create_args(name, mb))).stdout.strip()
        t_created = time.time()
        poller = None
        if where:
            mine = set()
            poller = Poller({
                'ctd_images': lambda: _size_of(os.path.join(src.tmp, 'ctd-checkpoint*')),
                'criu_work': lambda: _exists(os.path.join(src.bundles, source_id, 'criu-work')),
                # ref "moby/1//tmp/ctd-checkpoint<N>": the images of the dump this case made
                'ingest': lambda: _ingest_bytes(src, lambda ref: _ref_is_mine(ref, src, source_id, mine)),
                'cpdir': lambda: dir_bytes(os.path.join(src.data_root, 'containers', source_id, 'checkpoints', checkpoint)),
            })
            poller.start()
        src_pids = src.daemon_pids() if where else {}
        cpu_before = cpu_seconds(src_pids)
        t_freeze = time.time()
        src.docker('checkpoint', 'create', name, checkpoint, timeout=timeout)
        t_checkpointed = time.time()
        if poller:
            result['cpu_checkpoint'] = cpu_delta(cpu_before, cpu_seconds(src_pids))
            result['timeline_checkpoint'] = poller.finish(t_freeze)
            result['timeline_checkpoint_call'] = round(t_checkpointed - t_freeze, 3)
        source_dir = os.path.join(src.data_root, 'containers', source_id, 'checkpoints', checkpoint)
        result['checkpoint_bytes'] = dir_bytes(source_dir)
        target_parent = os.path.join(dst.data_root, 'containers', standby, 'checkpoints')
        if not os.path.isdir(target_parent):
            os.makedirs(target_parent, 0o700)
        run(['cp', '-a', source_dir, target_parent], timeout=timeout, what='copy of the checkpoint')
        t_copied = time.time()
        if where:
            target_log = os.path.join(dst.data_root, 'containers', standby, standby + '-json.log')
            mine = set()
            poller = Poller({
                # ref "moby/1//var/lib/docker/containers/<standby id>/checkpoints/<name>"
                'ingest': lambda: _ingest_bytes(dst, lambda ref: standby in ref),
                'ctrd': lambda: sum(dir_bytes(path) for path in dst.restore_dirs() - restore_dirs
                                    if path in mine or (_images_of(path, source_id) and not mine.add(path))),
                'bundle': lambda: _exists(os.path.join(dst.bundles, standby)),
                'log': lambda: os.path.getsize(target_log) if os.path.exists(target_log) else 0,
            })
            poller.start()
        dst_pids = dst.daemon_pids() if where else {}
        cpu_before = cpu_seconds(dst_pids)
        t_restore = time.time()
        dst.docker('start', '--checkpoint', checkpoint, name, timeout=timeout)
        t_started = time.time()
        if where:
            result['cpu_restore'] = cpu_delta(cpu_before, cpu_seconds(dst_pids))
        after = wait_for(lambda: counter_lines(dst.logs(name)), 30, 'output on %s' % dst.host, interval=0.02)
        if poller:
            time.sleep(0.1)
            result['timeline_restore'] = poller.finish(t_restore)
            result['timeline_restore_call'] = round(t_started - t_restore, 3)
            result['criu_restore_log'] = criu_log_seconds(os.path.join(dst.bundles, standby, 'restore.log'))
            # What moving the bytes alone costs: tar + sha256 of the checkpoint (page cache, no engine).
            t_hash = time.time()
            run(['sh', '-c', 'tar -C "$1" -cf - . | sha256sum >/dev/null', 'tar-sha256', os.path.join(
                target_parent, checkpoint)], timeout=timeout, what='tar | sha256sum')
            result['tar_sha256'] = round(time.time() - t_hash, 3)
        before = counter_lines(src.logs(name))
        result.update(gap(before, after))
        result['total'] = t_started - t_start
        result['phases'] = {'standby create': t_created - t_start, 'checkpoint create': t_checkpointed - t_freeze,
                            'copy (local cp)': t_copied - t_checkpointed, 'start --checkpoint': t_started - t_restore}
    finally:
        cleanup.run()
    return result


# ---------------------------------------------------------------- (c) the naive Ansible path

def run_ansible(mb, src, dst, timeout):
    result = {'path': 'ansible', 'mb': mb}
    name = 'bench-c-%d-%s' % (mb, uuid.uuid4().hex[:6])
    checkpoint = 'bench'
    cleanup = Cleanup()
    restore_dirs = dst.restore_dirs()
    try:
        work = tempfile.mkdtemp(prefix='bench-naive-%d-' % mb, dir='/tmp')
        cleanup.add('remove %s' % work, shutil.rmtree, work, True)
        cleanup.add('remove %s on %s' % (name, src.host), src.remove, name)
        cleanup.add('remove %s on %s' % (name, dst.host), dst.remove, name)
        ids = {}
        cleanup.add('remove restore scratch on %s' % dst.host, lambda: remove_new_restore_dirs(
            dst, restore_dirs, ids.get('source'), result))
        for engine in (src, dst):
            archive = os.path.join(engine.tmp, '%s-%s.tar' % (name, checkpoint))
            cleanup.add('remove %s' % archive, lambda path: os.path.exists(path) and os.unlink(path), archive)
        src.start_workload(name, mb)
        src.wait_counter(name)
        ids['source'] = src.container_id(name)
        timings_path = os.path.join(work, 'timings.json')
        variables = {
            'bench_name': name, 'bench_source': src.host, 'bench_target': dst.host, 'bench_checkpoint': checkpoint,
            'bench_create_args': create_args(name, mb), 'bench_controller_dir': work, 'bench_timings': timings_path,
        }
        vars_path = os.path.join(work, 'vars.json')
        with open(vars_path, 'w') as handle:
            json.dump(variables, handle)
        t_start = time.time()
        proc = run([ANSIBLE_PLAYBOOK, '-i', INVENTORY, os.path.join(ROOT, 'bench', 'naive_migrate.yml'),
                    '-e', '@' + vars_path], timeout=timeout, check=False, cwd=ROOT,
                   env={'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg')})
        t_end = time.time()
        if proc.returncode != 0:
            raise BenchError('naive playbook failed (rc=%d): %s' % (proc.returncode, _tail(proc.stdout, 12)))
        with open(timings_path) as handle:
            stamps = json.load(handle)
        after = wait_for(lambda: counter_lines(dst.logs(name)), 30, 'output on %s' % dst.host, interval=0.05)
        before = counter_lines(src.logs(name))
        result.update(gap(before, after))
        result['total'] = t_end - t_start
        result['phases'] = {
            'ansible start + standby create': stamps['freeze'] - t_start,
            'checkpoint create': stamps['checkpointed'] - stamps['freeze'],
            'tar': stamps['archived'] - stamps['checkpointed'],
            'fetch': stamps['fetched'] - stamps['archived'],
            'copy': stamps['copied'] - stamps['fetched'],
            'untar': stamps['extracted'] - stamps['copied'],
            'start --checkpoint': stamps['started'] - stamps['extracted'],
            'rest of the play': t_end - stamps['started'],
        }
        archive = os.path.join(work, '%s-%s.tar' % (name, checkpoint))
        if os.path.exists(archive):
            result['checkpoint_bytes'] = os.path.getsize(archive)
    finally:
        cleanup.run()
    return result


# ---------------------------------------------------------------- (d) ours

def _flatten(prefix, value, out):
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten('%s.%s' % (prefix, key) if prefix else str(key), item, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = value


def _remove_matching(pattern, name):
    for path in glob.glob(pattern):
        if name in path:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def run_ours(mb, src, dst, timeout, lazy=False):
    result = {'path': 'lazy' if lazy else 'ours', 'mb': mb}
    playbook = os.path.join(ROOT, 'playbooks', 'migrate.yml')
    if not os.path.exists(playbook):
        result['status'] = 'not available yet'
        return result
    name = 'bench-d-%d-%s' % (mb, uuid.uuid4().hex[:6])
    cleanup = Cleanup()
    restore_dirs = dst.restore_dirs()
    follower = None
    try:
        work = tempfile.mkdtemp(prefix='bench-ours-%d-' % mb, dir='/tmp')
        cleanup.add('remove %s' % work, shutil.rmtree, work, True)
        cleanup.add('remove %s on %s' % (name, src.host), src.remove, name)
        cleanup.add('remove %s on %s' % (name, dst.host), dst.remove, name)
        ids = {}
        cleanup.add('remove restore scratch on %s' % dst.host, lambda: remove_new_restore_dirs(
            dst, restore_dirs, ids.get('source'), result))
        for engine in (src, dst):
            # checkpoint data this run may leave behind (paths that carry the container's unique name)
            for pattern in (os.path.join(SHM, 'mtd-migrations', '*'), os.path.join(engine.tmp, '*'),
                            os.path.join(engine.dir, 'var-lib-mtd', '*')):
                cleanup.add('remove leftovers of %s' % name, _remove_matching, pattern, name)
        src.start_workload(name, mb)
        src.wait_counter(name)
        ids['source'] = src.container_id(name)
        source_log = os.path.join(work, 'source.log')
        with open(source_log, 'w') as handle:
            follower = subprocess.Popen([DOCKER, '-H', src.sock, 'logs', '-f', name], stdout=handle,
                                        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        cleanup.add('stop the log follower', lambda proc: proc.poll() is None and proc.kill(), follower)
        report = os.path.join(work, 'report.json')
        t_start = time.time()
        extra = [arg for var in OURS_VARS + (['migrate_memory=lazy'] if lazy else []) for arg in ('-e', var)]
        proc = run([ANSIBLE_PLAYBOOK, '-i', INVENTORY, playbook, '-e', 'mtd_container=%s' % name,
                    '-e', 'mtd_source=%s' % src.host, '-e', 'mtd_target=%s' % dst.host, '-e', 'mtd_report=%s' % report]
                   + extra,
                   timeout=timeout, check=False, cwd=ROOT, env={'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg')})
        t_end = time.time()
        record = {}
        if os.path.exists(report):
            with open(report) as handle:
                record = json.load(handle)
        result['state'] = record.get('state')
        phases = {}
        _flatten('', record.get('phases') or {}, phases)
        result['report_phases'] = phases
        if proc.returncode != 0 or record.get('state') not in (None, 'Succeeded'):
            raise BenchError('migrate.yml failed (rc=%d, state %s): %s' % (
                proc.returncode, record.get('state'), record.get('error') or _tail(proc.stdout, 12)))
        try:
            follower.wait(15)
        except subprocess.TimeoutExpired:
            follower.kill()
        with open(source_log) as handle:
            before = counter_lines(handle.read())
        after = wait_for(lambda: counter_lines(dst.logs(name)), 30, 'output on %s' % dst.host, interval=0.05)
        result.update(gap(before, after))
        result['total'] = t_end - t_start
        result['phases'] = dict((key, value) for key, value in phases.items()
                                if 'byte' not in key and 'throughput' not in key and value >= 0.005)
        result['checkpoint_bytes'] = phases.get('bytes.total') or phases.get('bytes.criu')
    finally:
        cleanup.run()
    return result


# ---------------------------------------------------------------- runc called directly

def run_runc_direct(mb, src, timeout):
    """Checkpoint a running container with the engine's runc (leave running) into tmpfs, timed."""
    result = {'mb': mb}
    name = 'bench-r-%d-%s' % (mb, uuid.uuid4().hex[:6])
    cleanup = Cleanup()
    try:
        cleanup.add('remove %s on %s' % (name, src.host), src.remove, name)
        images = tempfile.mkdtemp(prefix='bench-runc-%d-' % mb, dir=SHM)
        cleanup.add('remove %s' % images, shutil.rmtree, images, True)
        work = tempfile.mkdtemp(prefix='bench-runc-work-%d-' % mb, dir=SHM)
        cleanup.add('remove %s' % work, shutil.rmtree, work, True)
        src.start_workload(name, mb)
        src.wait_counter(name)
        container = src.container_id(name)
        started = time.time()
        run(['nsenter', '-t', src.sshd_pid(), '-m', '--', 'runc', '--root', '/run/docker/runtime-runc/moby',
             'checkpoint', '--image-path', images, '--work-path', work, '--leave-running', container],
            timeout=timeout, what='runc checkpoint')
        result['runc_checkpoint'] = round(time.time() - started, 3)
        result['criu_dump_log'] = criu_log_seconds(os.path.join(work, 'dump.log'))
        result['checkpoint_bytes'] = dir_bytes(images)
    finally:
        cleanup.run()
    return result


# ---------------------------------------------------------------- report

def machine_info(src):
    info = {'date': datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M UTC'), 'nproc': os.cpu_count(),
            'kernel': platform.release()}
    try:
        with open('/proc/cpuinfo') as handle:
            models = [line.split(':', 1)[1].strip() for line in handle if line.startswith('model name')]
        info['cpu'] = models[0] if models else platform.processor()
    except (IOError, OSError):
        info['cpu'] = '?'
    try:
        with open('/proc/meminfo') as handle:
            total = [line.split()[1] for line in handle if line.startswith('MemTotal:')]
        info['memory'] = '%.1f GiB' % (int(total[0]) / 1048576.0)
    except (IOError, OSError, IndexError):
        info['memory'] = '?'

    def first_line(argv):
        try:
            proc = run(argv, timeout=20, check=False)
        except BenchError:
            return '?'
        return (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr).strip() else '?'

    info['docker'] = src.docker('version', '-f', '{{.Server.Version}}', check=False, timeout=20).stdout.strip() or '?'
    info['containerd'] = first_line(['containerd', '--version'])
    info['runc'] = first_line(['runc', '--version'])
    info['criu'] = first_line([CRIU, '--version'])
    info['ansible'] = first_line([ANSIBLE_PLAYBOOK, '--version'])
    info['python'] = first_line([PYTHON, '--version'])
    fs_tmp = run(['stat', '-f', '-c', '%T', src.tmp], check=False, timeout=10).stdout.strip()
    info['lab_tmp_fs'] = fs_tmp or '?'
    return info


def _s(value, digits=2):
    return '-' if value is None else ('%.*f' % (digits, value))


def _mb(value):
    return '-' if not value else '%.0f' % (value / 1048576.0)


def _cell(row, key):
    value = row.get(key)
    spread = row.get(key + '_range')
    if value is None:
        return '-'
    if spread and row.get('runs', 1) > 1:
        return '%s (%s-%s)' % (_s(value), _s(spread[0]), _s(spread[1]))
    return _s(value)


def markdown(info, results, runc_results, traced, hosts):
    runs = max([r.get('runs', 0) + r.get('failed', 0) for r in results] or [1])
    out = [SECTION, '']
    out.append('Measured by `bench/migrate_bench.py` (`make bench`) on %s: all paths side by side in one run, %s -> %s, '
               '%d run(s) per size and path, interleaved; the table shows the median (min-max). The machine was shared '
               'with other work during the run (load average %.1f at the start, %.1f at the end), so single runs '
               'vary.' % (info['date'], hosts[0], hosts[1], runs, info.get('load', 0), info.get('load_end', 0)))
    out.append('')
    out.append('Machine: %s CPUs (%s), %s RAM, kernel %s; Docker %s, %s, %s, CRIU %s, %s; lab hosts\' /tmp '
               'on %s; checkpoint images of (a) and of the runc comparison in /dev/shm (tmpfs).' % (
                   info['nproc'], info['cpu'], info['memory'], info['kernel'], info['docker'], info['containerd'],
                   info['runc'], info['criu'].replace('Version: ', ''), info['ansible'], info['lab_tmp_fs']))
    out.append('')
    out.append('Workload: python3 holding N MB of random bytes in a bytearray, printing `<counter> <epoch>` '
               'every 10 ms (flush). **Downtime** = last line printed before the freeze -> first line after the '
               'resume, from those timestamps (container logs on source and target; the output file for (a)), so it '
               'includes up to one 10 ms sleep. **Total** = first action of the path -> restore done: for (b) '
               'standby `docker create` + checkpoint + local `cp -a` between the data-roots + start, for (c) and (d) '
               'the whole `ansible-playbook` run. "counter" checks that the first line after the resume continues '
               'the last one before the freeze (state kept, nothing lost or repeated).')
    out.append('')
    out.append('(d) runs with the role\'s defaults%s: the checkpoint in tmpfs on the source and, when it fits, on the '
               'target; compression `auto`, which sends this workload\'s random pages uncompressed since they do not '
               'shrink; the restore launched before the freeze, starting as soon as the bundle arrived, with CRIU '
               'reading the images straight from the bundle (`image_delivery: direct`, see docs/migration.md).' % (
                   (' plus ' + ', '.join('`%s`' % var for var in OURS_VARS)) if OURS_VARS else ''))
    out.append('')
    out.append('(e) is (d) with `migrate_memory=lazy` (post-copy): the dump leaves out the memory that can wait, '
               'the target resumes the container at once and CRIU\'s lazy-pages daemon fetches the pages from the '
               'frozen source over mutual TLS, on demand and in the background; the migration (and the total) ends '
               'when every page has arrived.')
    out.append('')
    out.append('| MB | path | downtime s | total s | downtime / floor | counter | checkpoint MB | phases, median s |')
    out.append('|---:|---|---:|---:|---:|---|---:|---|')
    floors = dict((r['mb'], r.get('downtime')) for r in results if r['path'] == 'floor')
    for r in results:
        if r.get('error') or r.get('status'):
            reason = r.get('status') or ('failed: %s' % r['error'])
            out.append('| %d | %s | - | - | - | %s | - | |' % (r['mb'], TITLES[r['path']], reason.replace('|', '/')))
            continue
        ratio = '-'
        if floors.get(r['mb']) and r.get('downtime') is not None:
            ratio = '%.1fx' % (r['downtime'] / floors[r['mb']])
        phases = ', '.join('%s %s' % (key, _s(value)) for key, value in (r.get('phases') or {}).items())
        out.append('| %d | %s | %s | %s | %s | %s | %s | %s |' % (
            r['mb'], TITLES[r['path']], _cell(r, 'downtime'), _cell(r, 'total'), ratio,
            r.get('counter', '-').replace('|', '/'), _mb(r.get('checkpoint_bytes')), phases))
    by_key = dict(((r['mb'], r['path']), r) for r in results if r.get('downtime') is not None)
    goals = []
    for mb in sorted(set(r['mb'] for r in results)):
        floor, naive = by_key.get((mb, 'floor')), by_key.get((mb, 'ansible'))
        for path, letter in (('ours', 'd'), ('lazy', 'e')):
            ours = by_key.get((mb, path))
            if ours and floor and naive:
                fastest = min(floor.get('downtime_range') or [floor['downtime']])
                goals.append('(%s) %d MB: downtime %.1fx the floor (%.1fx its fastest run), total of (c) / total of (%s) '
                             '= %.1fx' % (letter, mb, ours['downtime'] / floor['downtime'], ours['downtime'] / fastest,
                                          letter, naive['total'] / ours['total']))
    if goals:
        out.append('')
        out.append('Issue 3\'s goals for our path are downtime <= 1.5x the floor at 256 MB and a total >= 2x better than '
                   '(c). This run: %s.' % '; '.join(goals))
    leaks = [r for r in results if r.get('leaked_restore_dirs')]
    if leaks:
        out.append('')
        out.append('containerd 1.6 leaves its restore scratch copy (`/tmp/ctrd-checkpoint*` inside the target host, '
                   'as big as the checkpoint) after every `docker start --checkpoint`: this run found %d such '
                   'directories after the restores of %s and removed them.' % (
                       sum(r['leaked_restore_dirs'] for r in leaks),
                       ', '.join(sorted(set(TITLES[r['path']] for r in leaks)))))
    traced_ok = [r for r in traced if r.get('timeline_checkpoint') and r.get('timeline_restore')]
    if traced_ok:
        out.extend(where_section(traced_ok[0], runc_results, results))
    elif traced:
        out.extend(['', 'The traced Docker run failed: %s' % (traced[0].get('error') or '?')])
    out.append('')
    return '\n'.join(out)


def _between(stats, start, end):
    """(start, end, seconds) of a traced step; end/start are (probe, key) pairs."""
    first = stats.get(start[0], {}).get(start[1])
    last = stats.get(end[0], {}).get(end[1])
    if first is None or last is None:
        return None, None, None
    return first, last, last - first


CHECKPOINT_STEPS = [
    ('runc + CRIU dump into /tmp/ctd-checkpoint* (while the bundle\'s criu-work dir exists)',
     ('criu_work', 'first'), ('criu_work', 'gone')),
    ('containerd: tar of the images into its content store (ingest + sha256, then commit)',
     ('ingest', 'first'), ('ingest', 'gone')),
    ('dockerd: reads the blob back from containerd and untars it into containers/<id>/checkpoints/',
     ('cpdir', 'first'), ('cpdir', 'last_change')),
]
RESTORE_STEPS = [
    ('dockerd: tars the checkpoint dir and streams it into containerd\'s content store (ingest + sha256)',
     ('ingest', 'first'), ('ingest', 'gone')),
    ('containerd: untars the blob into /tmp/ctrd-checkpoint* (on the host\'s /tmp)', ('ctrd', 'first'), ('ctrd', 'last_change')),
    ('runc restore: bundle created -> first output of the workload', ('bundle', 'first'), ('log', 'first')),
]


def _steps_table(stats, steps, call):
    rows = ['| step | from s | to s | took s | share |', '|---|---:|---:|---:|---:|']
    took = []
    for label, start, end in steps:
        first, last, seconds = _between(stats, start, end)
        took.append(seconds or 0.0)
        rows.append('| %s | %s | %s | %s | %s |' % (label, _s(first), _s(last), _s(seconds),
                                                    '-' if seconds is None else '%.0f %%' % (100.0 * seconds / call)))
    rows.append('| whole command | 0.00 | %s | %s | 100 %% |' % (_s(call), _s(call)))
    return rows, took


def _cpu_text(cpu):
    if not cpu:
        return 'not measured'
    return ', '.join('%s %.2f s' % (name, seconds) for name, seconds in sorted(cpu.items()))


def where_section(r, runc_results, results):
    mb = r['mb']
    floor = [x for x in results if x['path'] == 'floor' and x['mb'] == mb and not x.get('error')]
    runc = [x for x in runc_results if x['mb'] == mb and not x.get('error')]
    if runc:
        runc = [{'runc_checkpoint': _median([x['runc_checkpoint'] for x in runc]),
                 'criu_dump_log': _median([x['criu_dump_log'] or 0.0 for x in runc]), 'runs': len(runc)}]
    ck_call, rs_call = r['timeline_checkpoint_call'], r['timeline_restore_call']
    out = ['', '### Where Docker\'s checkpoint/restore time goes (%d MB)' % mb, '']
    out.append('Traced in one extra run of (b) (not part of the medians above): a 5 ms poller followed the files the engine writes (containerd\'s '
               'scratch directories, its content-store ingest, the checkpoint directory, the runtime bundle, the '
               'container log); CRIU\'s own time is read from its logs. Seconds from the start of the command.')
    out.append('')
    out.append('`docker checkpoint create` (source):')
    out.append('')
    rows, ck_took = _steps_table(r['timeline_checkpoint'], CHECKPOINT_STEPS, ck_call)
    out.extend(rows)
    out.append('')
    out.append('CPU used during the command: %s.' % _cpu_text(r.get('cpu_checkpoint')))
    out.append('')
    out.append('`docker start --checkpoint` (target):')
    out.append('')
    rows, rs_took = _steps_table(r['timeline_restore'], RESTORE_STEPS, rs_call)
    out.extend(rows)
    out.append('')
    out.append('CPU used during the command: %s.' % _cpu_text(r.get('cpu_restore')))
    out.append('')
    compare = [('`docker checkpoint create`', ck_call)]
    if runc:
        compare.append(('engine\'s runc directly: `runc checkpoint --leave-running` into tmpfs (nsenter), '
                        'median of %d' % runc[0]['runs'], runc[0]['runc_checkpoint']))
        compare.append(('... of which CRIU (its dump.log)', runc[0].get('criu_dump_log')))
    if floor:
        compare.append(('raw `criu dump` (floor, median)', floor[0]['phases'].get('criu dump')))
    compare.append(('`docker start --checkpoint`', rs_call))
    compare.append(('... of which CRIU (restore.log in the runtime bundle)', r.get('criu_restore_log')))
    if floor:
        compare.append(('raw `criu restore -d` (floor, median)', floor[0]['phases'].get('criu restore -d')))
    compare.append(('tar + sha256sum of the same checkpoint, no engine (page cache)', r.get('tar_sha256')))
    out.append('| operation | s |')
    out.append('|---|---:|')
    out.extend('| %s | %s |' % (label, _s(value)) for label, value in compare)
    out.append('')
    criu_dump, moving_ck = ck_took[0], ck_took[1] + ck_took[2]
    moving_rs, extract, restore = rs_took[0], rs_took[1], rs_took[2]
    parts = {'the content-store round trip between dockerd and containerd': moving_rs,
             'the extraction into /tmp': extract, 'runc/CRIU restore': restore}
    biggest = max(parts, key=parts.get)
    others = ' and '.join('not %s' % name for name in parts if name != biggest)
    out.append('**Reading (this run):** of `docker checkpoint create`\'s %.2f s, CRIU\'s dump is %.2f s; %.2f s '
               '(%.0f %%) go to passing the images through containerd\'s content store and back: containerd tars '
               'them into a blob (%.2f s), then dockerd reads that blob back over containerd\'s API and untars it '
               '(%.2f s). Of `docker start --checkpoint`\'s %.2f s, %.2f s (%.0f %%) go to dockerd streaming the '
               'checkpoint as a tar into the content store, %.2f s to containerd extracting it again into /tmp, '
               'and %.2f s to runc restore until the first output (CRIU itself: %s s). Moving the same bytes '
               'through tar + sha256 without the engine takes %s s. On the restore side %s dominates, %s.' % (
                   ck_call, criu_dump, moving_ck, 100.0 * moving_ck / ck_call, ck_took[1], ck_took[2],
                   rs_call, moving_rs, 100.0 * moving_rs / rs_call, extract, restore, _s(r.get('criu_restore_log')),
                   _s(r.get('tar_sha256')), biggest, others))
    return out


def write_section(path, text, heading=SECTION):
    """Replace (or append) the ``heading`` section of RESULTS.md with ``text`` (which starts with that
    heading), leaving every other section alone. scripts/bench.sh uses it for the other benchmarks."""
    existing = ''
    if os.path.exists(path):
        with open(path) as handle:
            existing = handle.read()
    if not existing.strip():
        existing = '# Benchmark results\n\nEach section is written by its own benchmark; `make bench` runs them all.\n'
    lines = existing.splitlines()
    start = next((index for index, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        new = existing.rstrip('\n') + '\n\n' + text.rstrip('\n') + '\n'
    else:
        end = next((index for index in range(start + 1, len(lines)) if lines[index].startswith('## ')), len(lines))
        new = '\n'.join(lines[:start] + text.rstrip('\n').splitlines() + ([''] + lines[end:] if end < len(lines) else []))
        new = new.rstrip('\n') + '\n'
    with open(path, 'w') as handle:
        handle.write(new)


def print_table(results):
    print('%-5s %-24s %10s %9s  %-18s %s' % ('MB', 'path', 'downtime', 'total', 'counter', 'phases / error'))
    for r in results:
        if r.get('error') or r.get('status'):
            print('%-5d %-24s %10s %9s  %-18s %s' % (r['mb'], TITLES[r['path']], '-', '-', '-',
                                                     r.get('status') or 'FAILED: %s' % r['error']))
            continue
        phases = ', '.join('%s %.2f' % item for item in (r.get('phases') or {}).items())
        print('%-5d %-24s %10.3f %9.3f  %-18s %s' % (r['mb'], TITLES[r['path']], r['downtime'], r['total'],
                                                     r['counter'], phases))


def _interrupt(signum, frame):
    raise Interrupted('signal %d' % signum)


def _median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2.0


def aggregate(samples):
    """One row per (size, path): medians over the successful runs, their range, and what failed."""
    first = samples[0]
    ok = [sample for sample in samples if 'downtime' in sample]
    failed = [sample for sample in samples if sample.get('error')]
    row = {'path': first['path'], 'mb': first['mb'], 'runs': len(ok), 'failed': len(failed)}
    if not ok:
        if failed:
            row['error'] = failed[0]['error'] + (' (%d of %d runs)' % (len(failed), len(samples)) if len(samples) > 1 else '')
        else:
            row['status'] = first.get('status', 'no result')
        return row
    for key in ('downtime', 'total'):
        values = [sample[key] for sample in ok]
        row[key] = _median(values)
        row[key + '_range'] = [min(values), max(values)]
    keys = []
    for sample in ok:
        keys.extend(key for key in sample.get('phases', {}) if key not in keys)
    row['phases'] = dict((key, _median([sample['phases'][key] for sample in ok if key in sample.get('phases', {})]))
                         for key in keys)
    sizes = [sample['checkpoint_bytes'] for sample in ok if sample.get('checkpoint_bytes')]
    row['checkpoint_bytes'] = _median(sizes) if sizes else None
    bad = [sample['counter'] for sample in ok if not sample['counter'].startswith('ok')]
    row['counter'] = ('ok %d/%d' % (len(ok), len(ok))) if not bad else '; '.join(bad)
    if failed:
        row['counter'] += '; %d run(s) failed: %s' % (len(failed), failed[0]['error'])
    leaked = [sample for sample in samples if sample.get('leaked_restore_dirs')]
    if leaked:
        row['leaked_restore_dirs'] = sum(sample['leaked_restore_dirs'] for sample in leaked)
        row['leaked_restore_bytes'] = _median([sample['leaked_restore_bytes'] for sample in leaked])
    return row


def run_case(path, mb, src, dst, timeout, where=False):
    started = time.time()
    try:
        if path == 'floor':
            result = run_floor(mb, timeout)
        elif path == 'docker':
            result = run_docker(mb, src, dst, timeout, where=where)
        elif path == 'ansible':
            result = run_ansible(mb, src, dst, timeout)
        else:
            result = run_ours(mb, src, dst, timeout, lazy=(path == 'lazy'))
    except BenchError as exc:
        result = {'path': path, 'mb': mb, 'error': str(exc)}
    log('  %s in %.0f s: %s' % (TITLES[path], time.time() - started, result.get('error') or result.get('status') or
                                'downtime %.3f s, total %.3f s, %s' % (result['downtime'], result['total'], result['counter'])))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[16, 256, 1024], help='workload sizes in MB')
    parser.add_argument('--paths', nargs='+', choices=PATHS, default=list(PATHS))
    parser.add_argument('--repeat', type=int, default=3,
                        help='runs per size and path, interleaved; the table shows medians (default 3)')
    parser.add_argument('--source', default='lab-1')
    parser.add_argument('--target', default='lab-2')
    parser.add_argument('--where', type=int, default=256,
                        help='size of the extra traced Docker run and of the runc comparison (0: off)')
    parser.add_argument('--timeout', type=int, default=600, help='seconds per command (default 600)')
    parser.add_argument('--budget', type=int, default=2400, help='seconds for the whole run; later cases are skipped')
    parser.add_argument('--results', default=os.path.join(ROOT, 'bench', 'RESULTS.md'))
    parser.add_argument('--no-results', action='store_true', help='do not write RESULTS.md')
    parser.add_argument('--json', help='also write the raw results to this file')
    parser.add_argument('--ours-var', action='append', default=[], metavar='KEY=VALUE',
                        help='extra variable for (d), e.g. migrate_transfer_compression=zstd (repeatable)')
    args = parser.parse_args(argv)
    OURS_VARS[:] = args.ours_var

    if os.geteuid() != 0:
        parser.error('run as root (CRIU, the lab engines)')
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    src, dst = Engine(args.source), Engine(args.target)
    for engine in (src, dst):
        if not engine.up():
            log('the engine of %s does not answer at %s: bring the lab up (bash lab/lab.sh up)' % (engine.host, engine.sock))
            return 2
    deadline = time.time() + args.budget
    info = machine_info(src)
    info['load'] = os.getloadavg()[0]
    samples = dict(((mb, path), []) for mb in args.sizes for path in args.paths)
    traced = []
    runc_results = []
    try:
        for mb in args.sizes:
            for index in range(max(1, args.repeat)):
                for path in args.paths:
                    if time.time() > deadline:
                        samples[(mb, path)].append({'path': path, 'mb': mb,
                                                    'status': 'skipped: time budget (--budget) used up'})
                        continue
                    log('%s, %d MB, run %d/%d ...' % (TITLES[path], mb, index + 1, args.repeat))
                    samples[(mb, path)].append(run_case(path, mb, src, dst, args.timeout))
            if mb == args.where and time.time() < deadline:
                log("traced Docker run, %d MB (not in the table's medians) ..." % mb)
                traced.append(run_case('docker', mb, src, dst, args.timeout, where=True))
                for index in range(max(1, args.repeat)):
                    log('runc checkpoint directly, %d MB, run %d/%d ...' % (mb, index + 1, args.repeat))
                    try:
                        runc_results.append(run_runc_direct(mb, src, args.timeout))
                    except BenchError as exc:
                        runc_results.append({'mb': mb, 'error': str(exc)})
    except Interrupted as exc:
        log('interrupted (%s): cleaned up, reporting what was measured' % exc)
    info['load_end'] = os.getloadavg()[0]
    results = [aggregate(runs) for runs in samples.values() if runs]
    print_table(results)
    text = markdown(info, results, runc_results, traced, (args.source, args.target))
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump({'machine': info, 'results': results, 'samples': [run for runs in samples.values() for run in runs],
                       'traced': traced, 'runc': runc_results}, handle, indent=2)
    if not args.no_results:
        write_section(args.results, text)
        log('wrote the "%s" section of %s' % (SECTION[3:], args.results))
    if any(r['path'] in ('ours', 'lazy') and r.get('status') == 'not available yet' for r in results):
        print('(d) ours: not available yet (playbooks/migrate.yml is missing)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
