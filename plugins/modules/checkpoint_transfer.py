#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_transfer
short_description: Move a checkpoint bundle from host to host directly, compressed and integrity-checked
version_added: 0.1.0
description:
  - Sends a checkpoint bundle made by M(mtd.containers.checkpoint) from the source host straight to
    the target host over one TCP connection, without passing through the controller (an AWX
    controller may be a small pod far away).
  - "On the target, run it with O(mode=receive) as an asynchronous task (C(async) and C(poll: 0)): it
    listens on O(address):O(port) until one sender has delivered the bundle into O(path), then exits."
  - On the source, run it with O(mode=send). It connects (retrying until O(connect_timeout)), streams
    the bundle as a compressed tar and waits for the receiver's verdict.
  - "The stream is TLS 1.3 with mutual authentication by default: each end has a per-migration identity
    made on its own host (O(mode=identity), in C(<path>.tls)) and trusts only the other end's
    certificate, given in O(peer_cert) (pinned: compared byte for byte). Inside it both ends also prove
    O(token) to each other. A peer that is not the other end (for example a local user who bound the
    port first) gets nothing: the handshake fails and so does the sender, before anything is sent."
  - With O(encryption=none) the stream is not encrypted, only authenticated (both ends prove O(token),
    every record carries an HMAC-SHA256 checked before its bytes are used); the result then carries a
    warning. Use it only on a trusted network.
  - A corrupted or cut stream fails on both sides and the receiver removes what it unpacked.
  - The receiver treats the stream as untrusted. It creates only regular files (mode 0600) and
    directories (0700), owned by the user it runs as, inside O(path); a device node, FIFO, socket,
    link, setuid or setgid file, an absolute name or a C(..) in the stream fails the transfer. The
    archive's owners and modes, and its attributes for O(path) itself, are ignored.
extends_documentation_fragment:
  - mtd.containers.transfer
  - mtd.containers.attributes
  - mtd.containers.attributes.actiongroup_mtd
attributes:
  check_mode:
    support: full
    details: Checks the bundle (send) or that the port can be bound (receive) and transfers nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run transfers the bundle again.
options:
  mode:
    description:
      - V(receive) on the target host, V(send) on the source host.
      - V(identity) (on either host, before the transfer) makes this end's TLS identity in C(<path>.tls)
        once and returns its certificate as RV(cert), for the other end's O(peer_cert). The other
        transfer options are then not used. Check mode writes nothing.
    type: str
    choices: [identity, receive, send]
    required: true
  path:
    description:
      - V(send) - the bundle directory to send.
      - V(receive) - the directory to create with the received bundle (replaced if it exists). Its parent
        must be a real directory (not a symbolic link) of root that other users cannot write (a sticky one
        such as C(/tmp) is accepted); missing parents are created 0700, an existing one is never chmod'ed.
      - V(identity) - the same path as in the V(send) or V(receive) run that follows.
    type: path
    required: true
notes:
  - The receiver must be reachable from the source on O(port).
requirements:
  - GNU tar on both hosts; zstd or gzip for compression.
seealso:
  - module: mtd.containers.checkpoint
  - module: mtd.containers.restore
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: The target's identity for this transfer
  mtd.containers.checkpoint_transfer:
    mode: identity
    path: /var/lib/docker/mtd-migrations/m-42
  delegate_to: "{{ target }}"
  register: target_id

- name: The source's identity
  mtd.containers.checkpoint_transfer:
    mode: identity
    path: /dev/shm/mtd-migrations/m-42
  register: source_id

- name: Listen on the target
  mtd.containers.checkpoint_transfer:
    mode: receive
    path: /var/lib/docker/mtd-migrations/m-42
    address: "{{ hostvars[target].ansible_host }}"
    port: 47042
    token: "{{ transfer_token }}"
    peer_cert: "{{ source_id.cert }}"
  delegate_to: "{{ target }}"
  async: 600
  poll: 0
  register: receiver

- name: Send from the source
  mtd.containers.checkpoint_transfer:
    mode: send
    path: /dev/shm/mtd-migrations/m-42
    address: "{{ hostvars[target].ansible_host }}"
    port: 47042
    token: "{{ transfer_token }}"
    peer_cert: "{{ target_id.cert }}"
  register: sent

- name: Wait for the receiver's result
  ansible.builtin.async_status:
    jid: "{{ receiver.ansible_job_id }}"
  delegate_to: "{{ target }}"
  register: received
  until: received.finished
  retries: 120
  delay: 0.5
"""

RETURN = r"""
cert:
  description: This end's certificate (PEM), for the other end's O(peer_cert); V(null) in check mode when it does not exist yet.
  returned: when O(mode=identity)
  type: str
encryption:
  description: V(tls) or V(none).
  returned: success and O(mode) is not V(identity)
  type: str
  sample: tls
connections:
  description: The receiver's count of connections, of those that did not authenticate, and of those turned away while busy.
  returned: success and O(mode=receive)
  type: dict
  sample: {"connections": 2, "unauthenticated": 1, "turned_away": 0}
bundle:
  description: The bundle directory sent or received.
  returned: always
  type: str
  sample: /var/lib/docker/mtd-migrations/m-42
mode:
  description: O(mode), V(send) or V(receive).
  returned: always
  type: str
  sample: send
compression:
  description: The compression used.
  returned: success
  type: str
  sample: zstd
compression_choice:
  description: How the sender chose the compression (with V(auto), the deflate ratio of its samples).
  returned: when O(mode=send)
  type: dict
  sample: {"requested": "auto", "used": "none", "probe_ratio": 1.0, "probe_file": "criu/pages-1.img"}
bytes_raw:
  description: Bytes of the bundle's files.
  returned: success
  type: int
  sample: 268530720
bytes_sent:
  description: Bytes on the wire (compressed), V(send) only.
  returned: success and O(mode=send)
  type: int
  sample: 1203456
bytes_received:
  description: Bytes received on the wire, V(receive) only.
  returned: success and O(mode=receive)
  type: int
  sample: 1203456
throughput_mb_s:
  description: Bundle MiB per second of transfer, V(send) only.
  returned: success and O(mode=send)
  type: float
  sample: 512.3
seconds:
  description: Seconds the data transfer took.
  returned: success
  type: float
  sample: 0.52
receiver:
  description: The receiver's verdict as the sender got it.
  returned: success and O(mode=send)
  type: dict
"""

import os
from typing import Any, Dict

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._hoststate import check_given_dir
from ansible_collections.mtd.containers.plugins.module_utils._module import run_module
from ansible_collections.mtd.containers.plugins.module_utils._transfer import (
    PLAINTEXT_WARNING,
    TransferError,
    check_transfer_options,
    choose_compression,
    ensure_identity,
    load_identity,
    probe_listen,
    receive,
    send,
    transfer_spec,
)

ARGUMENT_SPEC = transfer_spec(
    mode=dict(type='str', required=True, choices=['identity', 'receive', 'send']),
    path=dict(type='path', required=True),
)
for _name in ('address', 'port', 'token'):
    ARGUMENT_SPEC[_name] = dict(ARGUMENT_SPEC[_name], required=False)
REQUIRED_IF = [('mode', 'send', ('address', 'port', 'token')), ('mode', 'receive', ('address', 'port', 'token'))]
TLS_DIR_SUFFIX = '.tls'


def security(mod):
    """This end's Pinned identity, or None (encryption none, with a warning)."""
    p = mod.params
    if p['encryption'] == 'none':
        mod.warn(PLAINTEXT_WARNING)
        return None
    try:
        return load_identity(p['path'] + TLS_DIR_SUFFIX, p['peer_cert'], 'checkpoint_transfer with mode=identity')
    except TransferError as exc:
        raise MtdError('%s%s.' % (str(exc)[:1].upper(), str(exc)[1:]))


def run_identity(mod) -> Dict[str, Any]:
    # beside the bundle, so the same rules as for the bundle's parent
    check_given_dir(os.path.dirname(os.path.abspath(mod.params['path'])), create=not mod.check_mode,
                    what='The directory of path')
    try:
        pem, made = ensure_identity(mod.params['path'] + TLS_DIR_SUFFIX, 'mtd-transfer-' + os.path.basename(
            mod.params['path'].rstrip('/')), check_mode=mod.check_mode)
    except (MtdError, OSError) as exc:
        raise MtdError('Cannot make the TLS identity in %s%s: %s' % (mod.params['path'], TLS_DIR_SUFFIX, exc))
    return {'changed': made, 'cert': pem}


def run_send(mod) -> Dict[str, Any]:
    p = mod.params
    if not os.path.isdir(p['path']) or not os.path.isfile(os.path.join(p['path'], 'manifest.json')):
        raise MtdError('%s is not a checkpoint bundle (no manifest.json).' % p['path'])
    compression, choice = choose_compression(p['path'], p['compression'])
    if p['compression'] not in ('auto', compression):
        raise MtdError('Compression %s was asked for but its binary is not installed on this host.' % p['compression'])
    mod.result.update(compression=compression, compression_choice=choice)
    tls = security(mod)
    if mod.check_mode:
        return {'changed': True}
    try:
        stats = send(p['path'], p['address'], p['port'], p['token'], compression=compression,
                     connect_timeout=p['connect_timeout'], io_timeout=p['timeout'], tls=tls,
                     auth_timeout=p['auth_timeout'])
    except TransferError as exc:
        raise MtdError('Sending the checkpoint failed: %s.' % exc)
    return dict(stats, changed=True)


def run_receive(mod) -> Dict[str, Any]:
    p = mod.params
    # the bundle's parent holds process memory for a while: not a link, not another user's, nobody else writes
    check_given_dir(os.path.dirname(os.path.abspath(p['path'])), create=not mod.check_mode,
                    what='The directory of path')
    tls = security(mod)
    if mod.check_mode:
        try:
            probe_listen(p['address'], p['port'])
        except TransferError as exc:
            raise MtdError('%s.' % str(exc).capitalize())
        return {'changed': True}
    try:
        stats = receive(p['path'], p['address'], p['port'], p['token'], timeout=p['timeout'], tls=tls,
                        auth_timeout=p['auth_timeout'])
    except TransferError as exc:
        raise MtdError('Receiving the checkpoint failed: %s.' % exc)
    return dict(stats, changed=True)


def run(mod) -> Dict[str, Any]:
    mod.result.update(bundle=mod.params['path'], mode=mod.params['mode'])
    if mod.params['mode'] == 'identity':
        return run_identity(mod)
    check_transfer_options(mod.params)
    return run_send(mod) if mod.params['mode'] == 'send' else run_receive(mod)


def main():
    run_module(run, ARGUMENT_SPEC, required_if=REQUIRED_IF)


if __name__ == '__main__':
    main()
