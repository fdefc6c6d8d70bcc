#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Cost of the confinement's seccomp filters on a syscall-heavy loop (getpid + stat per iteration).

Same run, interleaved rounds, CPU time of the looping process (not wall time: the machine is shared):
  1. process mode, Python loop (os.getpid + os.stat): a forked child without / with the process filter
     (_seccomp.process_filter, installed as the launcher does);
  2. process mode, C loop (a static binary built here with gcc): exec'd without / with the filter;
  3. container mode, the same C loop in a busybox container: seccomp=unconfined, Docker's default profile,
     and the collection's profile (_seccomp.docker_profile) - needs a Docker engine (--docker-host).

Run from the repo root:
  PYTHONPATH=.build/collections .venv/bin/python bench/confine_bench.py [--markdown] [--results bench/RESULTS.md]
With --results, the section "## bench/confine_bench.py" of that file is replaced (or appended); other
sections are left alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from ansible_collections.mtd.containers.plugins.module_utils import _seccomp as seccomp_lib

SECTION = '## bench/confine_bench.py'
GOAL_VARIANTS = ('process filter', 'mtd profile')
DOCKER = '/usr/bin/docker'
IMAGE = '127.0.0.1:5000/mtd/busybox:latest'

LOOP_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct stat st;
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    for (long i = 0; i < n; i++) {
        syscall(SYS_getpid);
        stat("/", &st);
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
"""


def machine_info():
    cpu = platform.processor() or ''
    try:
        with open('/proc/cpuinfo') as handle:
            for line in handle:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ''
    try:
        with open('/proc/meminfo') as handle:
            kib = int(handle.readline().split()[1])
            mem = '%.1f GiB' % (kib / 1048576.0)
    except (OSError, ValueError, IndexError):
        pass
    return {'nproc': os.cpu_count(), 'kernel': platform.release(), 'cpu': cpu, 'memory': mem,
            'machine': platform.machine()}


# -- 1. Python loop -------------------------------------------------------------------------------

def python_round(iterations, confined):
    """CPU ns per iteration of os.getpid() + os.stat('/') in a forked child."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(read_fd)
            if confined:
                seccomp_lib.install_filter()
            getpid, stat = os.getpid, os.stat
            start = time.process_time()
            for _dummy in range(iterations):
                getpid()
                stat('/')
            elapsed = time.process_time() - start
            os.write(write_fd, ('%.3f' % (elapsed * 1e9 / iterations)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    data = os.read(read_fd, 64)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return float(data)


# -- 2. C loop, process mode ----------------------------------------------------------------------

def build_loop(workdir):
    if not shutil.which('gcc'):
        return None
    source = os.path.join(workdir, 'loop.c')
    binary = os.path.join(workdir, 'mtd-confine-loop')
    with open(source, 'w') as handle:
        handle.write(LOOP_C)
    result = subprocess.run(['gcc', '-static', '-O2', '-o', binary, source], capture_output=True, text=True, check=False)
    return binary if result.returncode == 0 else None


# The smallest possible filter: what seccomp itself costs on the system call path, whatever the program.
TRIVIAL_PROGRAM = [(seccomp_lib.BPF_RET_K, 0, 0, seccomp_lib.SECCOMP_RET_ALLOW)]


def c_round(binary, iterations, program):
    def confine():  # pragma: no cover - runs in the child before exec
        seccomp_lib.install_filter(program)
    out = subprocess.run([binary, str(iterations)], capture_output=True, text=True, check=True,
                         preexec_fn=confine if program else None)
    return float(out.stdout.strip())


# -- 3. C loop, container mode --------------------------------------------------------------------

def docker(host, *args, **kwargs):
    return subprocess.run([DOCKER, '-H', host] + list(args), capture_output=True, text=True, check=False, **kwargs)


def container_round(host, binary, iterations, seccomp):
    name = 'cf-bench-%d-%d' % (os.getpid(), int(time.time() * 1000) % 100000000)
    options = ['--security-opt', seccomp] if seccomp else []  # None: the engine's default profile
    created = docker(host, 'create', '--name', name, '--network', 'none', *(options + [IMAGE, '/loop', str(iterations)]))
    if created.returncode != 0:
        raise RuntimeError(created.stderr.strip())
    try:
        copied = docker(host, 'cp', binary, '%s:/loop' % name)
        if copied.returncode != 0:
            raise RuntimeError(copied.stderr.strip())
        started = docker(host, 'start', '-a', name)
        if started.returncode != 0:
            raise RuntimeError(started.stderr.strip() or started.stdout.strip())
        return float(started.stdout.strip().splitlines()[-1])
    finally:
        docker(host, 'rm', '-f', name)


def default_docker_host():
    if os.environ.get('DOCKER_HOST'):
        return os.environ['DOCKER_HOST']
    for path in ('/var/run/docker.sock', '/var/lib/mtd-lab/lab-1/docker.sock'):
        if os.path.exists(path):
            return 'unix://' + path
    return None


# -- report -------------------------------------------------------------------------------------------

def interleave(rounds, variants):
    """Run each variant once per round, in alternating order; returns {name: [values]}."""
    results = dict((name, []) for name, dummy in variants)
    for index in range(rounds):
        order = variants if index % 2 == 0 else list(reversed(variants))
        for name, run in order:
            results[name].append(run())
    return results


def paired_overhead(base_values, values):
    """Median over the rounds of (variant / baseline - 1) in %: each pair ran back to back, so the slow drift
    of a shared machine's load cancels out better than in a ratio of two medians."""
    return statistics.median((v / b - 1.0) * 100.0 for b, v in zip(base_values, values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=21)
    parser.add_argument('--container-rounds', type=int, default=7)
    parser.add_argument('--py-iterations', type=int, default=100000)
    parser.add_argument('--c-iterations', type=int, default=500000)
    parser.add_argument('--docker-host', default=default_docker_host())
    parser.add_argument('--markdown', action='store_true', help='print the Markdown section')
    parser.add_argument('--results', help='replace/append the section in this Markdown file')
    args = parser.parse_args(argv)

    info = machine_info()
    load = ' / '.join('%.1f' % v for v in os.getloadavg())
    program = seccomp_lib.process_filter()
    rows = []
    notes = []
    extra = []

    py = interleave(args.rounds, [
        ('unconfined', lambda: python_round(args.py_iterations, False)),
        ('process filter', lambda: python_round(args.py_iterations, True)),
    ])
    rows.append(('process mode, Python loop (%d iterations)' % args.py_iterations, py,
                 'unconfined', ['process filter']))

    workdir = tempfile.mkdtemp(prefix='cf-bench-')
    try:
        binary = build_loop(workdir)
        if binary is None:
            notes.append('SKIPPED the C loops: gcc with a static libc is not available.')
        else:
            c = interleave(args.rounds, [
                ('unconfined', lambda: c_round(binary, args.c_iterations, None)),
                ('trivial filter (only RET_ALLOW)', lambda: c_round(binary, args.c_iterations, TRIVIAL_PROGRAM)),
                ('process filter', lambda: c_round(binary, args.c_iterations, program)),
            ])
            rows.append(('process mode, C loop (%d iterations)' % args.c_iterations, c, 'unconfined',
                         ['trivial filter (only RET_ALLOW)', 'process filter']))
            extra.append(('process filter vs trivial filter, C loop',
                          paired_overhead(c['trivial filter (only RET_ALLOW)'], c['process filter'])))
            if not args.docker_host:
                notes.append('SKIPPED container mode: no Docker engine (give --docker-host).')
            else:
                profile_path = os.path.join(workdir, 'mtd-profile.json')
                with open(profile_path, 'w') as handle:
                    handle.write(seccomp_lib.canonical_json(seccomp_lib.docker_profile()))
                try:
                    containers = interleave(args.container_rounds, [
                        ('seccomp=unconfined', lambda: container_round(args.docker_host, binary, args.c_iterations,
                                                                       'seccomp=unconfined')),
                        ("Docker's default profile", lambda: container_round(args.docker_host, binary,
                                                                             args.c_iterations, None)),
                        ('mtd profile', lambda: container_round(args.docker_host, binary, args.c_iterations,
                                                                'seccomp=' + profile_path)),
                    ])
                    rows.append(('container mode, C loop in %s (%d iterations)' % (IMAGE, args.c_iterations),
                                 containers, 'seccomp=unconfined', ["Docker's default profile", 'mtd profile']))
                except (RuntimeError, OSError) as exc:
                    notes.append('SKIPPED container mode: %s' % exc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    lines = []
    lines.append('Seccomp overhead of `mtd.containers.confine` (`bench/confine_bench.py`), %s. Machine: %s CPUs '
                 '(nproc), kernel %s, %s, %s memory. Each iteration is one `getpid` and one `stat("/")`; %d '
                 'interleaved rounds per variant (container mode: %d), in CPU time of the looping process per iteration '
                 '(CLOCK_PROCESS_CPUTIME_ID, so that other load on the machine counts less); the overhead is the median of '
                 'the per-round ratios to the baseline run next to it. Load average at the start: %s. The process '
                 'filter has %d BPF instructions; the container profile is compiled by the engine\'s runc/libseccomp.'
                 % (datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), info['nproc'],
                    info['kernel'], info['cpu'], info['memory'], args.rounds, args.container_rounds, load,
                    len(program)))
    lines.append('')
    lines.append('| loop | variant | median CPU ns/iter | min | max | overhead vs baseline (paired median) |')
    lines.append('| --- | --- | ---: | ---: | ---: | ---: |')
    verdicts = []
    for title, results, base_name, others in rows:
        for name in [base_name] + others:
            values = results[name]
            median = statistics.median(values)
            paired = None if name == base_name else paired_overhead(results[base_name], values)
            over = '-' if paired is None else '%+.1f %%' % paired
            lines.append('| %s | %s | %.1f | %.1f | %.1f | %s |' % (title, name, median, min(values), max(values), over))
            if paired is not None:
                verdicts.append((title, name, paired))
    lines.append('')
    for title, value in extra:
        lines.append('%s: %+.1f %% (what the policy\'s program adds to the fixed cost of having a filter).'
                     % (title, value))
        lines.append('')
    for title, name, value in verdicts:
        if name in GOAL_VARIANTS:
            lines.append('- %s, %s: %+.1f %% - goal < 5 %% %s.'
                         % (title, name, value, 'met' if value < 5 else 'NOT met'))
    lines.append('')
    lines.append('The trivial filter and Docker\'s default profile are references: any seccomp filter puts the system '
                 'call on the kernel\'s slower entry path, a fixed cost per call that shows in a loop of the two '
                 'cheapest calls and vanishes in real code (the Python loop).')
    for note in notes:
        lines.append('')
        lines.append(note)
    text = '\n'.join(lines) + '\n'

    if args.markdown or args.results:
        sys.stdout.write(text)
    else:
        sys.stdout.write(json.dumps({'machine': info, 'rows': [(t, r) for t, r, dummy, dummy2 in rows],
                                     'notes': notes}, indent=1) + '\n')
    if args.results:
        write_section(args.results, SECTION + '\n\n' + text)
    return 0


def write_section(path, body):
    """Replace the section that starts with SECTION in ``path`` (up to the next '## '), or append it."""
    try:
        with open(path) as handle:
            current = handle.read()
    except FileNotFoundError:
        info = machine_info()
        current = ('# Benchmark results\n\nMachine: %s CPUs (nproc), kernel %s, %s, %s memory.\n'
                   % (info['nproc'], info['kernel'], info['cpu'], info['memory']))
    start = current.find(SECTION + '\n')
    if start < 0:
        updated = current.rstrip('\n') + '\n\n' + body
    else:
        end = current.find('\n## ', start + len(SECTION))
        updated = current[:start] + body + (current[end + 1:] if end >= 0 else '')
        if end >= 0 and not body.endswith('\n\n'):
            updated = current[:start] + body + '\n' + current[end + 1:]
    tmp = path + '.tmp-confine'
    with open(tmp, 'w') as handle:
        handle.write(updated)
    os.rename(tmp, path)


if __name__ == '__main__':
    sys.exit(main())
