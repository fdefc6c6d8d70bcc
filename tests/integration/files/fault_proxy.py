# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A one-connection TCP proxy that injects one fault into the sender -> receiver direction.

    fault_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT MODE [OFFSET] [READY_FILE]

MODE: pass | corrupt (flip one bit of the byte at OFFSET) | cut (close both sides after OFFSET bytes) |
hold (stop forwarding at OFFSET bytes, touch READY_FILE, and wait until READY_FILE is deleted, then pass).
Exits after one connection, or after 300 s.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time


def pump(src, dst, mode, offset, ready, state):
    seen = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if mode in ('corrupt', 'cut', 'hold') and seen <= offset < seen + len(data):
                k = offset - seen
                if mode == 'corrupt' and not state.get('done'):
                    data = data[:k] + bytes([data[k] ^ 0x01]) + data[k + 1:]
                    state['done'] = True
                elif mode == 'cut':
                    dst.sendall(data[:k])
                    raise ConnectionAbortedError('cut')
                elif mode == 'hold' and not state.get('done'):
                    dst.sendall(data[:k])
                    data = data[k:]
                    with open(ready, 'w') as f:
                        f.write('held\n')
                    deadline = time.time() + 120
                    while os.path.exists(ready) and time.time() < deadline:
                        time.sleep(0.1)
                    state['done'] = True
            dst.sendall(data)
            seen += len(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    port, host, tport, mode = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    offset = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    ready = sys.argv[6] if len(sys.argv) > 6 else ''
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(('127.0.0.1', port))
    server.listen(1)
    server.settimeout(300)
    client, dummy = server.accept()
    upstream = socket.create_connection((host, tport), timeout=30)
    state = {}
    forward = threading.Thread(target=pump, args=(client, upstream, mode, offset, ready, state))
    back = threading.Thread(target=pump, args=(upstream, client, 'pass', 0, '', {}))
    forward.start()
    back.start()
    forward.join()
    back.join()
    client.close()
    upstream.close()
    server.close()


if __name__ == '__main__':
    main()
