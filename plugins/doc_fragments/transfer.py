# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

# The options of an end of the host-to-host stream of a checkpoint bundle, documented once; the argument
# spec is module_utils/_transfer.py (transfer_spec: one table). Three fragments, one per way to give them
# (plain literals: ansible-test reads them without running Python):
#   mtd.containers.transfer          top-level options (checkpoint_transfer, both ends)
#   mtd.containers.transfer.send     the send option of checkpoint (the sending end)
#   mtd.containers.transfer.receive  the receive option of restore (the receiving end)


class ModuleDocFragment:

    # checkpoint_transfer: the options at the top level, for both modes.
    DOCUMENTATION = r"""
options:
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
    description: >-
      The transfer's shared secret, at least 16 characters, the same on both ends. Use a fresh
      random value per migration. The sender proves it knows it (HMAC-SHA256 challenge) and every byte of
      the stream is covered by an HMAC-SHA256 keyed with it.
    type: str
    required: true
  compression:
    description: >-
      Compression of the stream, chosen by the sender. V(auto) deflates a few samples of the
      bundle's largest file (the memory pages) and sends data that does not shrink to 90 % as it is, since
      compressing it would only add CPU time while the container is frozen; otherwise it takes V(zstd) when the
      C(zstd) binary is present, else V(gzip).
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
    description: V(send) only - seconds the sender keeps retrying the connection while the receiver starts.
    type: int
    default: 60
"""

    # checkpoint: stream the bundle right after the dump.
    SEND = r"""
options:
  send:
    description:
      - Stream the bundle to a receiver (M(mtd.containers.restore) with O(mtd.containers.restore#module:receive),
        or M(mtd.containers.checkpoint_transfer) with O(mtd.containers.checkpoint_transfer#module:mode=receive))
        right after the dump, in the same task, which keeps the freeze short (one task fewer while the
        container is frozen).
      - The connection is opened and authenticated before anything is frozen; without a receiver
        the module fails and the container is left as it was.
      - When the transfer fails the module fails; the container stays frozen as after any dump (resume
        it with M(mtd.containers.container_state) to roll back).
      - The stream's network operations are limited by O(timeout).
    type: dict
    suboptions:
      address:
        description: The receiver's address.
        type: str
        required: true
      port:
        description: The receiver's port.
        type: int
        required: true
      token:
        description: >-
          The transfer's shared secret, at least 16 characters, the same on both ends. Use a fresh
          random value per migration. The sender proves it knows it (HMAC-SHA256 challenge) and every byte of
          the stream is covered by an HMAC-SHA256 keyed with it.
        type: str
        required: true
      compression:
        description: >-
          Compression of the stream, chosen by the sender. V(auto) deflates a few samples of the
          bundle's largest file (the memory pages) and sends data that does not shrink to 90 % as it is, since
          compressing it would only add CPU time while the container is frozen; otherwise it takes V(zstd) when the
          C(zstd) binary is present, else V(gzip).
        type: str
        choices: [auto, zstd, gzip, none]
        default: auto
      connect_timeout:
        description: Seconds the sender keeps retrying the connection while the receiver starts.
        type: int
        default: 60
      keep:
        description:
          - Keep the bundle on this host after the receiver confirmed it. By default it is deleted right
            then, while the target restores. The frozen container itself is the rollback, and the copy of
            its memory only costs RAM (in tmpfs) exactly when the target needs RAM for the restore.
        type: bool
        default: false
"""

    # restore: be the bundle's receiver.
    RECEIVE = r"""
options:
  receive:
    description:
      - With O(state=started), receive the bundle here first, from M(mtd.containers.checkpoint) with
        O(mtd.containers.checkpoint#module:send) or M(mtd.containers.checkpoint_transfer)
        O(mtd.containers.checkpoint_transfer#module:mode=send).
        The stream is authenticated with the token and checked end to end (HMAC-SHA256); the bundle
        appears at O(bundle) complete and stamped, or not at all.
      - A O(state=absent) run of the same migration calls the wait off (within a fifth of a second).
      - In check mode only whether the address can be listened on is checked.
    type: dict
    suboptions:
      address:
        description: Address to listen on (an address of this host that the source host reaches).
        type: str
        required: true
      port:
        description: TCP port to listen on.
        type: int
        required: true
      token:
        description: >-
          The transfer's shared secret, at least 16 characters, the same on both ends. Use a fresh
          random value per migration. The sender proves it knows it (HMAC-SHA256 challenge) and every byte of
          the stream is covered by an HMAC-SHA256 keyed with it.
        type: str
        required: true
      timeout:
        description: Seconds to wait for a sender and its whole stream.
        type: int
        default: 600
"""
