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
  - The sender proves it knows O(token) (HMAC-SHA256 challenge); every byte of the stream is covered
    by an HMAC-SHA256 keyed with O(token), checked by the receiver before it accepts the bundle. A
    corrupted or cut stream fails on both sides and the receiver removes what it unpacked.
  - The stream is B(not encrypted). Checkpoint data holds process memory, so use it on a trusted
    network between the hosts, or inside a tunnel.
extends_documentation_fragment:
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
    description: V(receive) on the target host, V(send) on the source host.
    type: str
    choices: [receive, send]
    required: true
  path:
    description:
      - V(send) - the bundle directory to send.
      - V(receive) - the directory to create with the received bundle (replaced if it exists).
    type: path
    required: true
  address:
    description:
      - V(receive) - the address to listen on (the target's address as the source reaches it).
      - V(send) - the receiver's address.
    type: str
    required: true
  port:
    description: TCP port of the receiver.
    type: int
    required: true
  token:
    description:
      - Shared secret of this transfer, at least 16 characters. Use a fresh random value per migration.
    type: str
    required: true
  compression:
    description:
      - Compression of the stream, chosen by the sender. V(auto) deflates a few samples of the bundle's
        largest file and sends data that does not shrink to 90 % as it is; otherwise it takes V(zstd)
        when the C(zstd) binary is present, else V(gzip).
    type: str
    choices: [auto, zstd, gzip, none]
    default: auto
  timeout:
    description:
      - V(receive) - seconds to wait for a sender and the whole transfer.
      - V(send) - seconds allowed for the transfer once connected.
    type: int
    default: 600
  connect_timeout:
    description: V(send) only - seconds to keep retrying the connection while the receiver starts.
    type: int
    default: 60
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
- name: Listen on the target
  mtd.containers.checkpoint_transfer:
    mode: receive
    path: /var/lib/docker/mtd-migrations/m-42
    address: "{{ hostvars[target].ansible_host }}"
    port: 47042
    token: "{{ transfer_token }}"
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
bundle:
  description: The bundle directory sent or received.
  returned: always
  type: str
  sample: /var/lib/docker/mtd-migrations/m-42
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mtd.containers.plugins.module_utils._transfer import (
    TransferError,
    choose_compression,
    probe_listen,
    receive,
    send,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type='str', required=True, choices=['receive', 'send']),
            path=dict(type='path', required=True),
            address=dict(type='str', required=True),
            port=dict(type='int', required=True),
            token=dict(type='str', required=True, no_log=True),
            compression=dict(type='str', default='auto', choices=['auto', 'zstd', 'gzip', 'none']),
            timeout=dict(type='int', default=600),
            connect_timeout=dict(type='int', default=60),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if len(p['token']) < 16:
        module.fail_json(msg='token must be at least 16 characters long.')
    if not 0 < p['port'] < 65536:
        module.fail_json(msg='port must be between 1 and 65535, got %s.' % p['port'])
    if p['timeout'] <= 0 or p['connect_timeout'] <= 0:
        module.fail_json(msg='timeout and connect_timeout must be positive.')
    result = {'changed': False, 'bundle': p['path'], 'mode': p['mode']}

    if p['mode'] == 'send':
        if not os.path.isdir(p['path']) or not os.path.isfile(os.path.join(p['path'], 'manifest.json')):
            module.fail_json(msg='%s is not a checkpoint bundle (no manifest.json).' % p['path'], **result)
        compression, choice = choose_compression(p['path'], p['compression'])
        if p['compression'] not in ('auto', compression):
            module.fail_json(msg='Compression %s was asked for but its binary is not installed on this host.'
                             % p['compression'], **result)
        result['compression'] = compression
        result['compression_choice'] = choice
        if module.check_mode:
            result['changed'] = True
            module.exit_json(**result)
        try:
            stats = send(p['path'], p['address'], p['port'], p['token'], compression=compression,
                         connect_timeout=p['connect_timeout'], io_timeout=p['timeout'])
        except TransferError as exc:
            module.fail_json(msg='Sending the checkpoint failed: %s.' % exc, **result)
        result.update(stats)
        result['changed'] = True
        module.exit_json(**result)

    # receive
    if module.check_mode:
        try:
            probe_listen(p['address'], p['port'])
        except TransferError as exc:
            module.fail_json(msg='%s.' % str(exc).capitalize(), **result)
        result['changed'] = True
        module.exit_json(**result)
    try:
        stats = receive(p['path'], p['address'], p['port'], p['token'], timeout=p['timeout'])
    except TransferError as exc:
        module.fail_json(msg='Receiving the checkpoint failed: %s.' % exc, **result)
    result.update(stats)
    result['changed'] = True
    module.exit_json(**result)


if __name__ == '__main__':
    main()
