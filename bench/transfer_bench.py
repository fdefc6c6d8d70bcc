# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The bundle stream alone, with and without encryption, side by side in one run (no lab needed):

    PYTHONPATH=.build/collections .venv/bin/python bench/transfer_bench.py [--mb 256 1024] [--repeat 5]

A bundle of N MB of random bytes (incompressible, like a process's memory) in /dev/shm is sent over
127.0.0.1 by ``_transfer.send`` to ``_transfer.receive`` running in another process (as on two hosts), with
compression none: encryption tls (the default, identities made by the collection's code) and none
(HMAC-SHA256 per record), interleaved. Prints the median seconds from the first to the last byte and the
bundle MB/s, per size and mode, and the ratio tls / none, with the machine's description. With
``--hashes`` the sender also takes every file's sha256 from the bytes as it sends them (as the checkpoint
module does for the manifest with ``send.hashes: true``, and did by default before 2026-12-02).
"sender CPU s" is the CPU time of the sending process and of the programs it ran and reaped (the ``tar``
of older versions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

from ansible_collections.mtd.containers.plugins.module_utils import _channel, _transfer

TOKEN = 'bench-token-0123456789abcdef'
RECEIVER = r'''
import json, sys
from ansible_collections.mtd.containers.plugins.module_utils import _channel, _transfer
dest, port, mode, tls_dir, peer = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
tls = _channel.load_identity(tls_dir, open(peer).read(), 'bench') if mode == 'tls' else None
stats = _transfer.receive(dest, '127.0.0.1', port, sys.argv[6], timeout=120, tls=tls)
print(json.dumps(stats))
'''


def free_port():
    import socket
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def one_run(root, bundle, mode, ids, hashes=False):
    dest = os.path.join(root, 'dst-%s' % mode)
    for path in (dest, dest + '.received'):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, '-c', RECEIVER, dest, str(port), mode, ids['receiver'][0],
                                 ids['sender'][0] + '/cert.pem', TOKEN], stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ))
    tls = _channel.load_identity(ids['sender'][0], ids['receiver'][1], 'bench') if mode == 'tls' else None
    extra = {'hashes': {}} if hashes else {}
    cpu = os.times()
    sent = _transfer.send(bundle, '127.0.0.1', port, TOKEN, compression='none', connect_timeout=30, tls=tls, **extra)
    cpu_after = os.times()
    out, dummy = receiver.communicate(timeout=120)
    received = json.loads(out.strip().splitlines()[-1])
    shutil.rmtree(dest)
    return {'seconds': sent['seconds'], 'mb_s': sent['throughput_mb_s'], 'connect': sent['connect_seconds'],
            'receive_seconds': received['seconds'],
            'cpu': sum(cpu_after[:4]) - sum(cpu[:4])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--mb', type=int, nargs='+', default=[256, 1024])
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--hashes', action='store_true',
                        help='hash every file as it is sent (as checkpoint does with send.hashes true)')
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix='mtd-transfer-bench-', dir='/dev/shm' if os.path.isdir('/dev/shm') else None)
    try:
        ids = dict((name, (os.path.join(root, name + '.tls'),
                           _channel.ensure_identity(os.path.join(root, name + '.tls'), 'bench-' + name)[0]))
                   for name in ('sender', 'receiver'))
        results = {}
        for mb in args.mb:
            bundle = os.path.join(root, 'src-%d' % mb)
            os.makedirs(os.path.join(bundle, 'criu'))
            with open(os.path.join(bundle, 'criu', 'pages-1.img'), 'wb') as handle:
                for _dummy in range(mb):
                    handle.write(os.urandom(1 << 20))
            with open(os.path.join(bundle, 'manifest.json'), 'w') as handle:
                handle.write('{}')
            for i in range(args.repeat):
                for mode in (('tls', 'none') if i % 2 == 0 else ('none', 'tls')):
                    results.setdefault((mb, mode), []).append(one_run(root, bundle, mode, ids, args.hashes))
            shutil.rmtree(bundle)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    with open('/proc/cpuinfo') as handle:
        cpu = [line.split(':', 1)[1].strip() for line in handle if line.startswith('model name')][0]
    print('\n%s; %d CPUs (%s), kernel %s, Python %s, %s; load average %.1f at the end\n' % (
        time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), os.cpu_count(), cpu, platform.release(),
        platform.python_version(), ssl.OPENSSL_VERSION, os.getloadavg()[0]))
    print('| MB | encryption | transfer s, median (min-max) | bundle MB/s | connected after s (receiver start + handshakes) '
          '| sender CPU s | runs |')
    print('|---:|---|---:|---:|---:|---:|---:|')
    for mb in args.mb:
        rows = {}
        for mode in ('none', 'tls'):
            rs = results[(mb, mode)]
            secs = [r['seconds'] for r in rs]
            rows[mode] = statistics.median(secs)
            print('| %d | %s | %.3f (%.3f-%.3f) | %.0f | %.4f | %.2f | %d |' % (
                mb, mode, rows[mode], min(secs), max(secs), statistics.median(r['mb_s'] for r in rs),
                statistics.median(r['connect'] for r in rs), statistics.median(r['cpu'] for r in rs), len(rs)))
        print('| %d | tls / none | %.2f | %.2f | | | |' % (mb, rows['tls'] / rows['none'], rows['none'] / rows['tls']))


if __name__ == '__main__':
    main()
