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
      - Required with V(send) and V(receive).
    type: str
  port:
    description: TCP port of the receiver. Required with V(send) and V(receive).
    type: int
  token:
    description: >-
      The transfer's shared secret, at least 16 characters, the same on both ends. Use a fresh
      random value per migration and keep it out of logs (C(no_log)). Both ends prove they know it to
      each other (HMAC-SHA256 challenges over fresh nonces from both sides), inside TLS by default; with
      encryption V(none) it also keys the HMAC-SHA256 of every record. Required with V(send) and V(receive).
    type: str
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
  encryption:
    description:
      - V(tls) (default) - TLS 1.3, a certificate required on both sides; each end has a per-migration
        identity made on its own host and trusts only the other end's certificate, given in O(peer_cert)
        (pinned; its fingerprint is compared again after the handshake). A peer that is not the other
        end gets nothing; the handshake fails before anything is sent (and, for M(mtd.containers.checkpoint),
        before anything is frozen).
      - V(none) - no encryption, for a network between the hosts that you trust. Both ends still prove
        the token to each other, and every record (the header included) carries an HMAC-SHA256 checked
        before its bytes are used; the result carries a warning. The other end must use V(none) too.
    type: str
    choices: [tls, none]
    default: tls
  peer_cert:
    description:
      - The other end's certificate (PEM), the only one trusted. Required with O(encryption=tls).
      - RV(mtd.containers.checkpoint_transfer#module:cert) of the other end's O(mode=identity) run.
    type: str
  auth_timeout:
    description:
      - Seconds a peer has to complete the TLS handshake and prove the token. The receiver handles each
        connection in a thread of its own and keeps waiting for the real sender meanwhile; peers that do
        not authenticate are counted, never fatal.
    type: int
    default: 5
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
      - The connection is opened and both ends authenticated (TLS with the pinned certificates, then the
        token, see O(send.encryption)) before anything is frozen; without the real receiver (nothing
        listens, or a peer that cannot prove itself, such as a local user who bound the port first) the
        module fails and the container is left as it was.
      - With the default O(send.encryption=tls), run the module with O(state=prepared) first. It makes
        this host's identity and returns the certificate the receiver pins.
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
          random value per migration and keep it out of logs (C(no_log)). Both ends prove they know it to
          each other (HMAC-SHA256 challenges over fresh nonces from both sides), inside TLS by default; with
          encryption V(none) it also keys the HMAC-SHA256 of every record.
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
      encryption:
        description:
          - V(tls) (default) - TLS 1.3, a certificate required on both sides; each end has a per-migration
            identity made on its own host and trusts only the other end's certificate, given in O(send.peer_cert)
            (pinned; its fingerprint is compared again after the handshake). A peer that is not the other
            end gets nothing; the handshake fails before anything is sent (and, for M(mtd.containers.checkpoint),
            before anything is frozen).
          - V(none) - no encryption, for a network between the hosts that you trust. Both ends still prove
            the token to each other, and every record (the header included) carries an HMAC-SHA256 checked
            before its bytes are used; the result carries a warning. The other end must use V(none) too.
        type: str
        choices: [tls, none]
        default: tls
      peer_cert:
        description:
          - The other end's certificate (PEM), the only one trusted. Required with O(send.encryption=tls).
          - The receiver's RV(mtd.containers.restore#module:transfer_cert) (its O(mtd.containers.restore#module:state=prepared) run).
        type: str
      auth_timeout:
        description:
          - Seconds a peer has to complete the TLS handshake and prove the token. The receiver handles each
            connection in a thread of its own and keeps waiting for the real sender meanwhile; peers that do
            not authenticate are counted, never fatal.
        type: int
        default: 5
      keep:
        description:
          - Keep the bundle on this host after the receiver confirmed it. By default it is deleted right
            then, while the target restores. The frozen container itself is the rollback, and the copy of
            its memory only costs RAM (in tmpfs) exactly when the target needs RAM for the restore.
        type: bool
        default: false
      hashes:
        description:
          - Also take the sha256 of every file as it is streamed and write it into the manifest, so that
            O(mtd.containers.restore#module:verify=sha256) can check the files again on the target.
          - By default (V(false)) the manifest lists the streamed files with their size and a null sha256.
            The stream is authenticated (TLS 1.3 with pinned certificates, or an HMAC-SHA256 per record with
            O(send.encryption=none)); the receiver stamps the bundle only when every record passed that check,
            and O(mtd.containers.restore#module:verify=auto) relies on that stamp. A hash taken by the same
            source proves nothing more, and would cost a pass over every byte while the container is frozen
            (about 0.15-0.3 s per 256 MB on two loaded CPUs, see bench/RESULTS.md).
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
        The stream is TLS 1.3 with both ends' certificates pinned (see O(receive.encryption)), both ends
        prove the token, every record is checked before its bytes reach tar; the bundle appears at
        O(bundle) complete and stamped (beside it), or not at all.
      - With the default O(receive.encryption=tls) the identity made by O(state=prepared) is used.
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
          random value per migration and keep it out of logs (C(no_log)). Both ends prove they know it to
          each other (HMAC-SHA256 challenges over fresh nonces from both sides), inside TLS by default; with
          encryption V(none) it also keys the HMAC-SHA256 of every record.
        type: str
        required: true
      timeout:
        description: Seconds to wait for a sender and its whole stream.
        type: int
        default: 600
      encryption:
        description:
          - V(tls) (default) - TLS 1.3, a certificate required on both sides; each end has a per-migration
            identity made on its own host and trusts only the other end's certificate, given in O(receive.peer_cert)
            (pinned; its fingerprint is compared again after the handshake). A peer that is not the other
            end gets nothing; the handshake fails before anything is sent (and, for M(mtd.containers.checkpoint),
            before anything is frozen).
          - V(none) - no encryption, for a network between the hosts that you trust. Both ends still prove
            the token to each other, and every record (the header included) carries an HMAC-SHA256 checked
            before its bytes are used; the result carries a warning. The other end must use V(none) too.
        type: str
        choices: [tls, none]
        default: tls
      peer_cert:
        description:
          - The other end's certificate (PEM), the only one trusted. Required with O(receive.encryption=tls).
          - The sender's RV(mtd.containers.checkpoint#module:transfer_cert) (its O(mtd.containers.checkpoint#module:state=prepared) run).
        type: str
      auth_timeout:
        description:
          - Seconds a peer has to complete the TLS handshake and prove the token. The receiver handles each
            connection in a thread of its own and keeps waiting for the real sender meanwhile; peers that do
            not authenticate are counted, never fatal.
        type: int
        default: 5
"""
