# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a loopback stream can reach on this machine at all, without the collection's protocol (no lab needed):

    PYTHONPATH=.build/collections .venv/bin/python bench/stream_ceiling.py [--mb 256] [--repeat 3]

Two processes on 127.0.0.1, N MB of random bytes, 1 MiB writes, the fastest that Python's standard library
does (``sendall``/``recv_into`` into one reused buffer; TLS 1.3 with the collection's pinned identities):

- ``tcp mem->mem``: plain TCP from a buffer to a buffer (nothing read from or written to files);
- ``tcp file->file``: plain TCP, ``os.sendfile`` from a /dev/shm file, ``recv_into`` + ``os.write`` into a new
  /dev/shm file (what a plaintext receiver has to do at the least);
- ``tls mem->mem`` and ``tls file->file``: the same inside TLS (``readinto`` from the file, no sendfile);
- ``local copy``: one process copying the file into a new /dev/shm file (memory bandwidth and tmpfs page
  allocation, no socket).

These are ceilings for ``bench/transfer_bench.py``: the collection's stream adds its tar framing, its record
headers and (plaintext) the HMAC-SHA256 of every byte on both ends.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time

from ansible_collections.mtd.containers.plugins.module_utils import _channel

CHUNK = 1 << 20


def _server_ctx(ids):
    return _channel.Pinned(ids['receiver'][0] + '/cert.pem', ids['receiver'][0] + '/key.pem', ids['sender'][1]).context(True)


def _client_ctx(ids):
    return _channel.Pinned(ids['sender'][0] + '/cert.pem', ids['sender'][0] + '/key.pem', ids['receiver'][1]).context(False)


def receiver(listen, mode, ids, dest, total, pipe_w):
    conn, dummy = listen.accept()
    if mode.startswith('tls'):
        conn = _server_ctx(ids).wrap_socket(conn, server_side=True)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600) if 'file' in mode else None
    got = 0
    while got < total:
        n = conn.recv_into(view, CHUNK)
        if not n:
            break
        if fd is not None:
            part = view[:n]
            while part:
                part = part[os.write(fd, part):]
        got += n
    if fd is not None:
        os.close(fd)
    os.write(pipe_w, b'%d\n' % got)
    conn.close()


def one_run(mode, ids, src, root, mb):
    total = mb * CHUNK
    dest = os.path.join(root, 'dest')
    if os.path.exists(dest):
        os.unlink(dest)
    if mode == 'local copy':
        t0 = time.time()
        with open(src, 'rb', buffering=0) as fin:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            buf = memoryview(bytearray(CHUNK))
            while True:
                n = fin.readinto(buf)
                if not n:
                    break
                os.write(fd, buf[:n])
            os.close(fd)
        return time.time() - t0
    listen = socket.socket()
    listen.bind(('127.0.0.1', 0))
    listen.listen(1)
    pipe_r, pipe_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            receiver(listen, mode, ids, dest, total, pipe_w)
        finally:
            os._exit(0)
    sock = socket.create_connection(listen.getsockname())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if mode.startswith('tls'):
        sock = _client_ctx(ids).wrap_socket(sock)
    buf = memoryview(bytearray(os.urandom(CHUNK)))
    t0 = time.time()
    if mode == 'tcp file->file':
        with open(src, 'rb') as fin:
            offset = 0
            while offset < total:
                offset += os.sendfile(sock.fileno(), fin.fileno(), offset, total - offset)
    elif 'file' in mode:
        with open(src, 'rb', buffering=0) as fin:
            while True:
                n = fin.readinto(buf)
                if not n:
                    break
                sock.sendall(buf[:n])
    else:
        for _dummy in range(mb):
            sock.sendall(buf)
    got = int(os.read(pipe_r, 64).strip() or 0)
    seconds = time.time() - t0
    os.waitpid(pid, 0)
    sock.close()
    listen.close()
    os.close(pipe_r)
    os.close(pipe_w)
    if got != total:
        raise SystemExit('%s: %d of %d bytes' % (mode, got, total))
    return seconds


MODES = ('tcp mem->mem', 'tcp file->file', 'tls mem->mem', 'tls file->file', 'local copy')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--mb', type=int, default=256)
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix='mtd-ceiling-', dir='/dev/shm')
    try:
        ids = dict((name, (os.path.join(root, name + '.tls'),
                           _channel.ensure_identity(os.path.join(root, name + '.tls'), 'bench-' + name)[0]))
                   for name in ('sender', 'receiver'))
        src = os.path.join(root, 'src')
        with open(src, 'wb') as handle:
            for _dummy in range(args.mb):
                handle.write(os.urandom(CHUNK))
        results = {}
        for _dummy in range(args.repeat):
            for mode in MODES:
                results.setdefault(mode, []).append(one_run(mode, ids, src, root, args.mb))
    finally:
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            for name in filenames:
                os.unlink(os.path.join(dirpath, name))
            for name in dirnames:
                os.rmdir(os.path.join(dirpath, name))
        os.rmdir(root)
    print('\n%s; %d CPUs, Python %s, %s; load average %.1f at the end\n' % (
        time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), os.cpu_count(), sys.version.split()[0], ssl.OPENSSL_VERSION,
        os.getloadavg()[0]))
    print('| %d MB | s, median (min-max) | MB/s (median) | runs |' % args.mb)
    print('|---|---:|---:|---:|')
    for mode in MODES:
        secs = results[mode]
        med = statistics.median(secs)
        print('| %s | %.3f (%.3f-%.3f) | %.0f | %d |' % (mode, med, min(secs), max(secs), args.mb / med, len(secs)))


if __name__ == '__main__':
    main()
