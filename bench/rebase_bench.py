#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Rebase vs rebuild of an image with a 200 MB app layer, on the lab (registry 127.0.0.1:5000, engine lab-1).

Setup (not timed): base v1 and base v2 (busybox + a small layer each), app FROM base v1 with one COPY of a
200 MB incompressible file, all built with ``docker build --network none`` and pushed.
Timed, in the same run:
  - rebase: ``mtd.containers.image_rebase`` (ansible ad-hoc, so Ansible's own start-up is included; the
    module's own time is reported too), cold (no stored steps) then warm (steps reused, new target);
  - rebuild: ``docker build --network none`` of the same Dockerfile FROM base v2 (the COPY runs again)
    and ``docker push``.
Bytes uploaded: the module's accounting and the registry access log (PUT/PATCH blob uploads) for the rebase;
the compressed size of the layers the rebuilt image adds to the registry for the rebuild.

Run from the repo root (brings the lab up when it is down; never takes it down):
  PYTHONPATH=.build/collections .venv/bin/python bench/rebase_bench.py [--size-mb 200] [--markdown]
                                                                        [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REG = '127.0.0.1:5000'
NS = 'it-rb/bench'
DOCKER = ['/usr/bin/docker', '-H', 'unix:///var/lib/mtd-lab/lab-1/docker.sock']
REGISTRY_LOG = '/var/lib/mtd-lab/registry/registry.log'
HEADING = '## bench/rebase_bench.py'
ACCEPT = 'application/vnd.docker.distribution.manifest.v2+json'
_LOG_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>/v2/\S*) HTTP/[0-9.]+" (?P<status>\d{3})')


def sh(cmd, **kwargs):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs).stdout


def registry_up():
    try:
        urllib.request.urlopen('http://%s/v2/' % REG, timeout=3)
        return True
    except OSError:
        return False


def manifest(repo, ref):
    request = urllib.request.Request('http://%s/v2/%s/manifests/%s' % (REG, repo, ref), headers={'Accept': ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def log_uploads(offset):
    """Blob upload requests (PATCH / PUT to blobs/uploads) and manifest PUTs under NS since ``offset``."""
    with open(REGISTRY_LOG, 'rb') as handle:
        handle.seek(offset)
        text = handle.read().decode('utf-8', 'replace')
    counts = {'blob_upload_puts': 0, 'patches': 0, 'manifest_puts': 0, 'mounts': 0}
    for line in text.splitlines():
        match = _LOG_LINE.search(line)
        if not match or not match.group('path').startswith('/v2/' + NS):
            continue
        method, path = match.group('method'), match.group('path')
        if method == 'PATCH':
            counts['patches'] += 1
        elif method == 'PUT' and '/blobs/uploads/' in path:
            counts['blob_upload_puts'] += 1
        elif method == 'PUT' and '/manifests/' in path:
            counts['manifest_puts'] += 1
        elif method == 'POST' and 'mount=' in path:
            counts['mounts'] += 1
    return counts


def build(context, tag, dockerfile='Dockerfile'):
    sh(DOCKER + ['build', '-q', '--network', 'none', '-t', tag, '-f', os.path.join(context, dockerfile), context])


def push(tag):
    sh(DOCKER + ['push', '-q', tag])


def rebase(target):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_CALLBACK_RESULT_FORMAT='json',
               PATH=os.path.join(ROOT, '.venv', 'bin') + ':' + os.environ['PATH'])
    args = 'image=%s/%s/app:1 old_base=%s/%s/base:v1 new_base=%s/%s/base:v2 target=%s/%s/app:%s' % (
        REG, NS, REG, NS, REG, NS, REG, NS, target)
    start = time.monotonic()
    out = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible'), 'localhost', '-m',
                          'mtd.containers.image_rebase', '-o', '-a', args], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=False)
    elapsed = time.monotonic() - start
    if out.returncode != 0:
        raise SystemExit('rebase failed: %s %s' % (out.stdout[-2000:], out.stderr[-2000:]))
    # one line: "localhost | CHANGED => {...}"
    line = next(text for text in out.stdout.splitlines() if text.startswith('localhost |'))
    return elapsed, json.loads(line.split('=> ', 1)[1])


def rebase_process(target, work):
    """The module as one Python process (how Ansible runs it on the controller, without Ansible's start-up)."""
    args = {'ANSIBLE_MODULE_ARGS': {
        'image': '%s/%s/app:1' % (REG, NS), 'old_base': '%s/%s/base:v1' % (REG, NS),
        'new_base': '%s/%s/base:v2' % (REG, NS), 'target': '%s/%s/app:%s' % (REG, NS, target)}}
    path = os.path.join(work, 'args-%s.json' % target)
    with open(path, 'w') as handle:
        json.dump(args, handle)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, '.build', 'collections'))
    start = time.monotonic()
    out = subprocess.run([sys.executable, '-m', 'ansible_collections.mtd.containers.plugins.modules.image_rebase',
                          path], env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    result = json.loads(out.stdout)
    if result.get('failed'):
        raise SystemExit('rebase failed: %s' % result.get('msg'))
    return elapsed, result


def machine():
    cpu = ''
    with open('/proc/cpuinfo') as handle:
        for line in handle:
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    with open('/proc/meminfo') as handle:
        mem_kb = int(handle.readline().split()[1])
    return {'nproc': os.cpu_count(), 'kernel': platform.release(), 'cpu': cpu, 'memory_gib': round(mem_kb / 1048576, 1)}


def write_section(path, text):
    """Replace (or append) the section under HEADING in RESULTS.md; create the file with machine info."""
    if os.path.exists(path):
        with open(path) as handle:
            content = handle.read()
    else:
        info = machine()
        content = ('# Benchmark results\n\nMachine: %d CPUs (nproc), kernel %s, %s, %.1f GiB memory.\n'
                   % (info['nproc'], info['kernel'], info['cpu'], info['memory_gib']))
    start = content.find(HEADING + '\n')
    if start >= 0:
        end = content.find('\n## ', start + len(HEADING))
        content = content[:start] + text.rstrip('\n') + '\n' + (content[end:] if end >= 0 else '')
    else:
        content = content.rstrip('\n') + '\n\n' + text.rstrip('\n') + '\n'
    with open(path, 'w') as handle:
        handle.write(content)


def run(size_mb):
    if not registry_up():
        subprocess.run(['bash', os.path.join(ROOT, 'lab', 'lab.sh'), 'up'], check=True)
    work = tempfile.mkdtemp(prefix='rb-bench-')
    tags = []
    try:
        for name, files in (('base1', {'base-release': b'v1\n'}),
                            ('base2', {'base-release': b'v2\n', 'base-v2-only': b'security fix\n'})):
            os.makedirs(os.path.join(work, name))
            lines = ['FROM %s/mtd/busybox:latest' % REG]
            for fname, content in files.items():
                with open(os.path.join(work, name, fname), 'wb') as handle:
                    handle.write(content)
                lines.append('COPY %s /etc/%s' % (fname, fname))
            with open(os.path.join(work, name, 'Dockerfile'), 'w') as handle:
                handle.write('\n'.join(lines) + '\n')
        app = os.path.join(work, 'app')
        os.makedirs(app)
        big = os.path.join(app, 'big.bin')
        rng = random.Random(20261128)
        with open(big, 'wb') as handle:
            for _dummy in range(size_mb):
                handle.write(rng.getrandbits(8 * 1048576).to_bytes(1048576, 'little'))
        os.utime(big, (0, 0))
        for version in ('v1', 'v2'):
            with open(os.path.join(app, 'Dockerfile.%s' % version), 'w') as handle:
                handle.write('FROM %s/%s/base:%s\nCOPY big.bin /app/big.bin\nCMD ["ls", "-l", "/app"]\n'
                             % (REG, NS, version))
        # setup, not timed
        for name, tag in (('base1', 'base:v1'), ('base2', 'base:v2')):
            build(os.path.join(work, name), '%s/%s/%s' % (REG, NS, tag))
            push('%s/%s/%s' % (REG, NS, tag))
            tags.append('%s/%s/%s' % (REG, NS, tag))
        build(app, '%s/%s/app:1' % (REG, NS), 'Dockerfile.v1')
        push('%s/%s/app:1' % (REG, NS))
        tags.append('%s/%s/app:1' % (REG, NS))
        app_layer = manifest('%s/app' % NS, '1')['layers'][-1]
        run_id = '%d' % time.time()

        # rebase, cold: base v2 is built anew in every run (file times differ), so no stored step matches it
        offset = os.path.getsize(REGISTRY_LOG)
        cold_s, cold = rebase_process('rb-%s' % run_id, work)
        cold_log = log_uploads(offset)
        adhoc_s, _adhoc = rebase('rb-%s-adhoc' % run_id)
        offset = os.path.getsize(REGISTRY_LOG)
        warm_s, warm = rebase('rb-%s-warm' % run_id)
        warm_log = log_uploads(offset)

        # rebuild: docker build FROM base v2 (the COPY runs again) + push
        rebuilt_tag = '%s/%s/app:rebuilt-%s' % (REG, NS, run_id)
        start = time.monotonic()
        build(app, rebuilt_tag, 'Dockerfile.v2')
        build_s = time.monotonic() - start
        offset = os.path.getsize(REGISTRY_LOG)
        push(rebuilt_tag)
        rebuild_s = time.monotonic() - start
        tags.append(rebuilt_tag)
        rebuild_log = log_uploads(offset)
        rebuilt = manifest('%s/app' % NS, 'rebuilt-%s' % run_id)
        base2_layers = set(layer['digest'] for layer in manifest('%s/base' % NS, 'v2')['layers'])
        rebuild_bytes = sum(layer['size'] for layer in rebuilt['layers'] if layer['digest'] not in base2_layers)
        # the rebased image runs and shows base v2's file
        check = sh(DOCKER + ['run', '--rm', '--network', 'none', cold['tag'], 'cat', '/etc/base-v2-only'])
        tags.append(cold['tag'])
        return {
            'size_mb': size_mb, 'app_layer_bytes': app_layer['size'],
            'rebase_cold_s': round(cold_s, 2), 'rebase_adhoc_s': round(adhoc_s, 2), 'rebase_cold_module_s': cold['timings']['total_s'],
            'rebase_warm_s': round(warm_s, 2), 'rebase_warm_module_s': warm['timings']['total_s'],
            'rebase_bytes_uploaded': cold['bytes_uploaded'], 'rebase_layer_bytes_uploaded': cold['layer_bytes_uploaded'],
            'rebase_requests': cold['requests']['requests'], 'rebase_steps': cold['steps'],
            'rebase_log': cold_log, 'rebase_warm_log': warm_log, 'rebase_warm_steps': warm['steps'],
            'rebuild_build_s': round(build_s, 2), 'rebuild_s': round(rebuild_s, 2), 'rebuild_bytes_uploaded': rebuild_bytes,
            'rebuild_log': rebuild_log,
            'speedup_cold': round(rebuild_s / cold_s, 1), 'speedup_adhoc': round(rebuild_s / adhoc_s, 1),
            'speedup_module': round(rebuild_s / cold['timings']['total_s'], 1),
            'rebased_runs': check.strip() == 'security fix',
            'machine': machine(),
        }
    finally:
        for tag in tags:
            subprocess.run(DOCKER + ['rmi', '-f', tag], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def markdown(r, heading=True):
    lines = [HEADING, ''] if heading else []
    lines += [
        'Image rebase vs rebuild (`bench/rebase_bench.py`), %s: app image = base (busybox + 1 small layer) + one '
        'COPY of a %d MB incompressible file (compressed layer %.1f MB); base v2 adds a file. Lab registry '
        '(Debian docker-registry 2.8) and lab-1 engine (Docker 20.10) on loopback; %d CPUs, %s, %.0f GiB.'
        % (time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), r['size_mb'], r['app_layer_bytes'] / 1e6,
           r['machine']['nproc'], r['machine']['cpu'], r['machine']['memory_gib']),
        '',
        '| approach | time (s) | bytes uploaded | registry log: blob upload PUTs / PATCHes / manifest PUTs / mounts |',
        '| --- | ---: | ---: | --- |',
        '| rebuild: `docker build --network none` FROM base v2 + `docker push` | %.2f (build %.2f) | %s | %d / %d / %d / %d |'
        % (r['rebuild_s'], r['rebuild_build_s'], format(r['rebuild_bytes_uploaded'], ','), r['rebuild_log']['blob_upload_puts'],
           r['rebuild_log']['patches'], r['rebuild_log']['manifest_puts'], r['rebuild_log']['mounts']),
        '| rebase, cold: the module as one Python process (%d steps created) | %.2f (in the module %.3f) | %s (layers: %d) | %d / %d / %d / %d |'
        % (r['rebase_steps']['created'], r['rebase_cold_s'], r['rebase_cold_module_s'], format(r['rebase_bytes_uploaded'], ','),
           r['rebase_layer_bytes_uploaded'], r['rebase_log']['blob_upload_puts'], r['rebase_log']['patches'],
           r['rebase_log']['manifest_puts'], r['rebase_log']['mounts']),
        '| rebase, same, through `ansible localhost -m mtd.containers.image_rebase` (steps reused) | %.2f | - | - |'
        % (r['rebase_adhoc_s'],),
        '| rebase, warm, through `ansible` ad hoc (steps reused: %d, new target tag) | %.2f (in the module %.3f) | - | %d / %d / %d / %d |'
        % (r['rebase_warm_steps']['reused'], r['rebase_warm_s'], r['rebase_warm_module_s'], r['rebase_warm_log']['blob_upload_puts'],
           r['rebase_warm_log']['patches'], r['rebase_warm_log']['manifest_puts'], r['rebase_warm_log']['mounts']),
        '',
        'Speed-up of the cold rebase over the rebuild: **%.1f×** for the module process (Python start-up and imports '
        'included), %.0f× inside the module; through `ansible` ad hoc, whose own start-up (%.1f s more here) dominates, '
        '%.1f×. Goal ≥ 20×, < 1 MB uploaded (module process): %s. The rebased image ran on the lab engine and '
        'showed base v2\'s file: %s.'
        % (r['speedup_cold'], r['speedup_module'], r['rebase_adhoc_s'] - r['rebase_cold_s'], r['speedup_adhoc'],
           'met' if r['speedup_cold'] >= 20 and r['rebase_bytes_uploaded'] < 1e6 else 'NOT met',
           'yes' if r['rebased_runs'] else 'NO'),
    ]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--size-mb', type=int, default=200)
    parser.add_argument('--markdown', action='store_true', help='print the Markdown section instead of JSON')
    parser.add_argument('--results', help='write (or replace) this script\'s section in this RESULTS.md')
    args = parser.parse_args(argv)
    result = run(args.size_mb)
    if args.results:
        write_section(args.results, markdown(result))
    # make bench (scripts/bench.sh) puts --markdown output under its own "## bench/rebase_bench.py" heading
    print(markdown(result, heading=False) if args.markdown else json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
