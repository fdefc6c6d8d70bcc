# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What streaming the pages while CRIU dumps could win on this machine, without the collection's protocol (no lab):

    PYTHONPATH=bench:.build/collections .venv/bin/python bench/overlap_ceiling.py [--mb 256] [--repeat 3]

The workload of bench/migrate_bench.py (N MB of random anonymous memory, outside containers) is dumped with
``criu dump -t PID`` into a /dev/shm directory, and its images are sent over TLS 1.3 on 127.0.0.1 (the
collection's pinned identities, as bench/stream_ceiling.py) to another process that writes them into a new
/dev/shm file. Two modes, alternating:

- ``after``: as the copy path does today: the dump, then the stream of every image file.
- ``follow``: the sender starts with the dump and follows the growing pages-*.img files, never reading past
  their current size, until criu has exited; then it sends the rest of what is still missing and the other
  image files.

Bench-only framing: an 8-byte length before each piece, 0 at the end. Reported: the dump's time and the
time from the dump's start until the receiver holds the last byte, which is the part of a freeze that the
two would take. Both share the machine's 2 CPUs with CRIU, which is the point of measuring it.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migrate_bench as mb_  # noqa: E402  pylint: disable=wrong-import-position
import stream_ceiling as sc  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.mtd.containers.plugins.module_utils import _channel  # noqa: E402

CHUNK = 1 << 20
LEN = struct.Struct('>Q')


def _recv_exact(conn, view):
    got = 0
    while got < len(view):
        n = conn.recv_into(view[got:])
        if not n:
            raise EOFError('the sender closed the stream')
        got += n


def receiver(listen, ids, dest, pipe_w):
    conn, _dummy = listen.accept()
    conn = sc._server_ctx(ids).wrap_socket(conn, server_side=True)  # pylint: disable=protected-access
    head = memoryview(bytearray(LEN.size))
    buf = memoryview(bytearray(4 * CHUNK))
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    total = 0
    while True:
        _recv_exact(conn, head)
        size = LEN.unpack(head)[0]
        if not size:
            break
        part = buf[:size]
        _recv_exact(conn, part)
        while part:
            part = part[os.write(fd, part):]
        total += size
    os.close(fd)
    os.write(pipe_w, b'%d %.6f\n' % (total, time.time()))
    conn.close()


class Sender:
    def __init__(self, sock):
        self.sock = sock
        self.buf = memoryview(bytearray(LEN.size + CHUNK))
        self.sent = 0

    def piece(self, fin, size):
        """Send up to ``size`` bytes from ``fin`` (at its position); returns how many."""
        n = fin.readinto(self.buf[LEN.size:LEN.size + min(size, CHUNK)])
        if n:
            self.buf[:LEN.size] = LEN.pack(n)
            self.sock.sendall(self.buf[:LEN.size + n])
            self.sent += n
        return n

    def whole(self, path, start=0):
        with open(path, 'rb', buffering=0) as fin:
            fin.seek(start)
            while self.piece(fin, CHUNK):
                pass

    def end(self):
        self.sock.sendall(LEN.pack(0))


def follow(sender, images, proc):
    """Send pages-*.img as criu writes them; returns the set of files (name -> bytes) sent so far."""
    done = {}
    handles = {}
    try:
        while True:
            exited = proc.poll() is not None
            progress = False
            for path in sorted(glob.glob(os.path.join(images, 'pages-*.img'))):
                fin = handles.get(path)
                if fin is None:
                    fin = handles[path] = open(path, 'rb', buffering=0)  # pylint: disable=consider-using-with
                    done[path] = 0
                size = os.fstat(fin.fileno()).st_size
                while done[path] < size:
                    n = sender.piece(fin, size - done[path])
                    if not n:
                        break
                    done[path] += n
                    progress = True
            if exited:
                return done
            if not progress:
                time.sleep(0.001)
    finally:
        for fin in handles.values():
            fin.close()


def one_run(mode, ids, root, mb, timeout):
    cleanup = mb_.Cleanup()
    try:
        work = tempfile.mkdtemp(prefix='bench-overlap-', dir=root)
        cleanup.add('remove %s' % work, shutil.rmtree, work, True)
        images = os.path.join(work, 'img')
        os.mkdir(images, 0o700)
        output = os.path.join(work, 'out.log')
        with open(output, 'ab') as handle:
            proc = subprocess.Popen([mb_.PYTHON, '-c', mb_.WORKLOAD, str(mb)], stdin=subprocess.DEVNULL,
                                    stdout=handle, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        cleanup.add('reap workload', mb_._reap, proc)  # pylint: disable=protected-access
        cleanup.add('kill workload', mb_._kill_workload, proc.pid)  # pylint: disable=protected-access

        def read():
            with open(output) as handle:
                return handle.read()
        mb_.wait_for(lambda: len(mb_.counter_lines(read())) >= 30, 180, 'the workload to print', interval=0.1)

        listen = socket.socket()
        listen.bind(('127.0.0.1', 0))
        listen.listen(1)
        pipe_r, pipe_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                receiver(listen, ids, os.path.join(work, 'received'), pipe_w)
            finally:
                os._exit(0)  # pylint: disable=protected-access
        sock = socket.create_connection(listen.getsockname())
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = sc._client_ctx(ids).wrap_socket(sock)  # pylint: disable=protected-access
        sender = Sender(sock)
        t0 = time.time()
        dump = subprocess.Popen([mb_.CRIU, 'dump', '-t', str(proc.pid), '-D', images, '-o', 'dump.log'],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sent = follow(sender, images, dump) if mode == 'follow' else {}
        rc = dump.wait(timeout)
        t_dump = time.time() - t0
        if rc != 0:
            raise mb_.BenchError('criu dump failed (rc=%d)' % rc)
        for path in sorted(glob.glob(os.path.join(images, '*'))):
            if os.path.isfile(path):
                sender.whole(path, sent.get(path, 0))
        sender.end()
        total, t_end = os.read(pipe_r, 64).split()
        os.waitpid(pid, 0)
        sock.close()
        listen.close()
        os.close(pipe_r)
        os.close(pipe_w)
        expected = mb_.dir_bytes(images)
        if int(total) != expected or sender.sent != expected:
            raise mb_.BenchError('%s: received %s of %d bytes' % (mode, total, expected))
        return {'dump': t_dump, 'done': float(t_end) - t0, 'bytes': expected,
                'during_dump': sum(sent.values())}
    finally:
        cleanup.run()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--mb', type=int, default=256)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--timeout', type=int, default=300)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    root = tempfile.mkdtemp(prefix='bench-overlap-', dir='/dev/shm')
    results = {}
    try:
        ids = dict((name, (os.path.join(root, name + '.tls'),
                           _channel.ensure_identity(os.path.join(root, name + '.tls'), 'bench-' + name)[0]))
                   for name in ('sender', 'receiver'))
        for _dummy in range(args.repeat):
            for mode in ('after', 'follow'):
                results.setdefault(mode, []).append(one_run(mode, ids, root, args.mb, args.timeout))
    finally:
        shutil.rmtree(root, True)
    print('\n%s; %d CPUs, Python %s, %s; load average %.1f at the start, %.1f at the end\n' % (
        time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), os.cpu_count(), sys.version.split()[0],
        sc.ssl.OPENSSL_VERSION, load, os.getloadavg()[0]))
    print('| %d MB | dump s, median (min-max) | dump start -> last byte received s, median (min-max) | '
          'sent while dumping MB (median) | runs |' % args.mb)
    print('|---|---:|---:|---:|---:|')
    for mode in ('after', 'follow'):
        rows = results[mode]
        dump = [r['dump'] for r in rows]
        done = [r['done'] for r in rows]
        during = statistics.median(r['during_dump'] for r in rows) / 1e6
        print('| %s | %.3f (%.3f-%.3f) | %.3f (%.3f-%.3f) | %.0f | %d |' % (
            mode, statistics.median(dump), min(dump), max(dump), statistics.median(done), min(done), max(done),
            during, len(rows)))


if __name__ == '__main__':
    main()
