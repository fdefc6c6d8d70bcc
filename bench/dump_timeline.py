#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""When does CRIU write the memory pages during a dump? The window a stream could overlap.

For the workload of bench/migrate_bench.py (N MB of random anonymous memory), dump it twice per round:

  raw   `criu dump -t PID -v4` of the script run outside containers (the floor's dump);
  runc  the engine's runc on lab-1 (`runc checkpoint --leave-running`, as the checkpoint module calls it).

A 2 ms poller follows the total size of pages-*.img in the image directory (tmpfs). Reported, in seconds
from the command's start: when the first page byte appeared, when the pages reached their final size, when
the command returned; and the largest gaps between consecutive stamps of CRIU's dump.log (where CRIU's time
goes, and what runc adds around it). Nothing is streamed; this only measures what an overlap of the stream
with the dump could win at most. Needs root and the lab (lab/lab.sh up); hold the lab lock.

Run from the repo root:  PYTHONPATH=.build/collections .venv/bin/python bench/dump_timeline.py [--mb 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migrate_bench as mb_  # noqa: E402  pylint: disable=wrong-import-position


def pages_bytes(images):
    total = 0
    for path in glob.glob(os.path.join(images, 'pages-*.img')):
        try:
            total += os.path.getsize(path)
        except OSError:
            pass
    return total


class PagePoller(threading.Thread):
    """(seconds since t0, pages bytes) every time the size changes, sampled every 2 ms."""

    def __init__(self, images, t0):
        super().__init__(daemon=True)
        self.images, self.t0 = images, t0
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        last = -1
        while not self.halt.is_set():
            size = pages_bytes(self.images)
            if size != last:
                self.samples.append((time.time() - self.t0, size))
                last = size
            self.halt.wait(0.002)

    def summary(self):
        grown = [s for s in self.samples if s[1] > 0]
        if not grown:
            return {'first': None, 'final': None, 'bytes': 0}
        final = grown[-1][1]
        reached = next(t for t, size in grown if size == final)
        return {'first': round(grown[0][0], 3), 'final': round(reached, 3), 'bytes': final}


def log_gaps(path, top=5):
    """The ``top`` largest gaps between consecutive CRIU log stamps: (seconds, the line after the gap)."""
    stamps = []
    try:
        with open(path, errors='replace') as handle:
            for line in handle:
                match = mb_.CRIU_TS_RE.match(line)
                if match:
                    stamps.append((float(match.group(1)), line.strip()[:110]))
    except OSError:
        return []
    gaps = [(round(b[0] - a[0], 3), b[1]) for a, b in zip(stamps, stamps[1:])]
    return sorted(gaps, reverse=True)[:top] + [('last stamp', stamps[-1][0] if stamps else None)]


def timed(argv, images, timeout, what):
    t0 = time.time()
    poller = PagePoller(images, t0)
    poller.start()
    try:
        mb_.run(argv, timeout=timeout, what=what)
    finally:
        ended = time.time() - t0
        poller.halt.set()
        poller.join(5)
    return dict(poller.summary(), returned=round(ended, 3))


def raw_dump(mb, timeout):
    cleanup = mb_.Cleanup()
    try:
        work = tempfile.mkdtemp(prefix='bench-tl-raw-%d-' % mb, dir=mb_.SHM)
        cleanup.add('remove %s' % work, shutil.rmtree, work, True)
        images = os.path.join(work, 'img')
        os.mkdir(images, 0o700)
        output = os.path.join(work, 'out.log')
        with open(output, 'ab') as handle:
            proc = subprocess.Popen([mb_.PYTHON, '-c', mb_.WORKLOAD, str(mb)], stdin=subprocess.DEVNULL,
                                    stdout=handle, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        cleanup.add('reap workload %d' % proc.pid, mb_._reap, proc)  # pylint: disable=protected-access
        cleanup.add('kill workload %d' % proc.pid, mb_._kill_workload, proc.pid)  # pylint: disable=protected-access

        def read():
            with open(output) as handle:
                return handle.read()
        mb_.wait_for(lambda: len(mb_.counter_lines(read())) >= 30, 180, 'the workload to print', interval=0.1)
        result = timed([mb_.CRIU, 'dump', '-t', str(proc.pid), '-D', images, '-o', 'dump.log', '-v4'],
                       images, timeout, 'criu dump')
        result['gaps'] = log_gaps(os.path.join(images, 'dump.log'))
        return result
    finally:
        cleanup.run()


def runc_dump(mb, src, timeout):
    name = 'bench-tl-%d-%s' % (mb, uuid.uuid4().hex[:6])
    cleanup = mb_.Cleanup()
    try:
        cleanup.add('remove %s' % name, src.remove, name)
        images = tempfile.mkdtemp(prefix='bench-tl-runc-%d-' % mb, dir=mb_.SHM)
        cleanup.add('remove %s' % images, shutil.rmtree, images, True)
        work = tempfile.mkdtemp(prefix='bench-tl-work-%d-' % mb, dir=mb_.SHM)
        cleanup.add('remove %s' % work, shutil.rmtree, work, True)
        src.start_workload(name, mb)
        src.wait_counter(name)
        container = src.container_id(name)
        result = timed(['nsenter', '-t', src.sshd_pid(), '-m', '--', 'runc', '--root', '/run/docker/runtime-runc/moby',
                        'checkpoint', '--image-path', images, '--work-path', work, '--leave-running', container],
                       images, timeout, 'runc checkpoint')
        result['gaps'] = log_gaps(os.path.join(work, 'dump.log'))
        return result
    finally:
        cleanup.run()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--mb', type=int, default=256)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--source', default='lab-1')
    parser.add_argument('--timeout', type=int, default=300)
    args = parser.parse_args()
    src = mb_.Engine(args.source)
    if not src.up():
        raise SystemExit('the engine of %s does not answer: bring the lab up (lab/lab.sh up)' % args.source)
    out = {'load': os.getloadavg(), 'rounds': []}
    for _dummy in range(args.repeat):
        out['rounds'].append({'raw': raw_dump(args.mb, args.timeout), 'runc': runc_dump(args.mb, src, args.timeout)})
    out['load_end'] = os.getloadavg()
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
