# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The authenticated channel under the host-to-host stream of a bundle (see ``_transfer``).

Private module_utils file: its API may change without notice. Python 3.8+, standard library only
(``ssl``, ``hmac``, ``hashlib``); no cipher or MAC of its own.

- ``Pinned``: this end's TLS identity (a key made on this host for one migration, never sent) and the one
  certificate it trusts, the peer's, which the controller passed. TLS 1.3 only, a certificate required
  on both sides, no name check (the pin is the check), and the DER fingerprint compared again after
  the handshake. ``ensure_identity`` makes the identity once per migration; ``load_identity`` reads it.
- ``client_handshake`` / ``server_handshake``: TLS (unless encryption is ``none``), then a mutual
  challenge on the transfer token inside it: each side proves the token over both sides' fresh nonces
  (HMAC-SHA256, one label per direction), the receiver only after the sender did.
- ``Session``: records ``type (1 byte) | sequence (8) | length (4) | payload [| tag (32)]``; the
  sequence number must be the next one. Without TLS every record carries an HMAC-SHA256 tag under a
  per-connection key derived from the token and both nonces (its own label, unlike the proofs), checked
  before the payload is returned. With TLS the records are authenticated by TLS itself (AEAD) before
  they are read, so they carry no second tag.
- ``Listener``: accepts connections and runs each handshake in its own thread under an overall
  pre-authentication deadline; the first peer that authenticates wins, the others are closed. Peers
  that never authenticate only appear in ``counts``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import queue
import select
import socket
import ssl
import stat
import struct
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple, Union

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._criu import make_tls_identity
from ansible_collections.mtd.containers.plugins.module_utils._files import make_private_dir, remove_tree

MAGIC = b'MTDX3\n'
NONCE_SIZE = 32
TAG_SIZE = 32
LABEL = b'mtd.containers transfer v3 '
MODES = {'tls': b'T', 'none': b'P'}
RECORD = struct.Struct('>BQI')
HEADER, DATA, END, VERDICT = 1, 2, 3, 4
KIND_NAMES = {HEADER: 'header', DATA: 'data', END: 'end', VERDICT: 'verdict'}
MAX_PENDING = 32          # handshakes served at the same time; more connections are closed at once
TLS_CERT = 'cert.pem'
TLS_KEY = 'key.pem'


class TransferError(MtdError):
    """The host-to-host stream failed; the message says at which end and why."""


# ---------------------------------------------------------------------------------------------------
# TLS identities, pinned

def _fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def pem_fingerprint(pem: str) -> str:
    """sha256 of the DER form of the PEM certificate ``pem``; TransferError when it is none."""
    try:
        return _fingerprint(ssl.PEM_cert_to_DER_cert(pem.strip()))
    except (ValueError, TypeError, AttributeError):
        raise TransferError('the peer certificate is not a PEM certificate')


class Pinned:
    """This end's identity (certificate and key files) and the only certificate it trusts (PEM)."""

    def __init__(self, cert: str, key: str, peer_cert: str) -> None:
        self.cert = cert
        self.key = key
        self.peer_cert = peer_cert.strip() + '\n'
        self.peer_fingerprint = pem_fingerprint(peer_cert)

    def context(self, server: bool) -> ssl.SSLContext:
        if not getattr(ssl, 'HAS_TLSv1_3', False):
            raise TransferError('the Python ssl module of this host cannot do TLS 1.3 (OpenSSL %s); use an '
                                'OpenSSL >= 1.1.1, or encryption none on a trusted network' % ssl.OPENSSL_VERSION)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False    # the pinned certificate is the check, not a name in it
        ctx.verify_mode = ssl.CERT_REQUIRED
        if server:
            ctx.num_tickets = 0       # no resumption: a session ticket nobody reads would only reset the close
        try:
            ctx.load_cert_chain(self.cert, self.key)
            ctx.load_verify_locations(cadata=self.peer_cert)
        except (ssl.SSLError, OSError) as exc:
            raise TransferError('the TLS identity in %s or the peer certificate cannot be used: %s'
                                % (os.path.dirname(self.cert), exc))
        return ctx

    def check_peer(self, sock: ssl.SSLSocket) -> None:
        """After the handshake: the peer's certificate is the pinned one, byte for byte."""
        der = sock.getpeercert(binary_form=True)
        if not der or not hmac.compare_digest(_fingerprint(der), self.peer_fingerprint):
            raise TransferError('the peer presented a certificate that is not the pinned one')


def _own_file(path: str) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()


def identity_files(directory: str) -> Tuple[str, str]:
    return os.path.join(directory, TLS_CERT), os.path.join(directory, TLS_KEY)


def ensure_identity(directory: str, name: str, check_mode: bool = False) -> Tuple[Optional[str], bool]:
    """This host's identity for one migration in ``directory`` (0700), made once: (certificate PEM, made).

    An existing one is kept when both files are regular files of this user; anything else there is
    removed and made again. The parent directory must be one the caller checked (or made) already. In
    check mode nothing is written: (the certificate or None, would make).
    """
    cert, key = identity_files(directory)
    if os.path.isdir(directory) and not os.path.islink(directory) and _own_file(cert) and _own_file(key):
        make_private_dir(directory)
        with open(cert) as handle:
            return handle.read(), False
    if check_mode:
        return None, True
    remove_tree(directory)
    make_tls_identity(directory, name)   # the caller checked or made the parent directory
    with open(cert) as handle:
        return handle.read(), True


def load_identity(directory: str, peer_cert: str, what: str) -> Pinned:
    """The Pinned identity of ``directory``; TransferError naming ``what`` makes it when it is missing."""
    cert, key = identity_files(directory)
    if not (_own_file(cert) and _own_file(key)):
        raise TransferError('this host has no TLS identity for this migration in %s (%s makes it and returns '
                            'its certificate for the peer)' % (directory, what))
    return Pinned(cert, key, peer_cert)


# ---------------------------------------------------------------------------------------------------
# Bytes, proofs and records

def recv_exact(sock: Any, size: int) -> bytearray:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if not n:
            raise TransferError('the connection was closed after %d of %d expected bytes' % (got, size))
        got += n
    return buf


def _recv_into_exact(sock: Any, view: memoryview) -> None:
    got, size = 0, len(view)
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if not n:
            raise TransferError('the connection was closed after %d of %d expected bytes' % (got, size))
        got += n


def _sendmsg_all(sock: socket.socket, parts: Any) -> None:
    """sendall() of several buffers in one system call where the kernel takes them all (plain TCP)."""
    views = [memoryview(part).cast('B') for part in parts]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]


def _mac(key: bytes, *parts: Union[bytes, bytearray, memoryview]) -> bytes:
    mac = hmac.new(key, b'', hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def proof(key: bytes, role: bytes, mode: bytes, nonce_r: bytes, nonce_s: bytes) -> bytes:
    """What ``role`` (b'sender', b'receiver', b'session') computes from the token and both nonces."""
    return _mac(key, LABEL, role, b' ', mode, bytes(nonce_r), bytes(nonce_s))


class Session:
    """An authenticated connection: records in order, each checked before it is returned."""

    def __init__(self, sock: Any, key: Optional[bytes], encryption: str, info: Dict[str, Any]) -> None:
        self.sock = sock
        self.key = key              # None with TLS (TLS authenticates the records)
        self.encryption = encryption
        self.info = info
        self.sent = 0
        self.received = 0

    def send(self, kind: int, payload: bytes) -> None:
        head = RECORD.pack(kind, self.sent, len(payload))
        tag = _mac(self.key, head, payload) if self.key else b''
        self.sock.sendall(head + payload + tag)
        self.sent += 1

    def send_view(self, kind: int, buf: memoryview, size: int) -> None:
        """Send the record whose payload is ``buf[RECORD.size:RECORD.size + size]``: its header goes into
        the room before it, so that the payload is never copied (one write for header and payload)."""
        RECORD.pack_into(buf, 0, kind, self.sent, size)
        record = buf[:RECORD.size + size]
        if self.key:
            tag = _mac(self.key, record)
            if hasattr(self.sock, 'sendmsg') and not isinstance(self.sock, ssl.SSLSocket):
                _sendmsg_all(self.sock, [record, tag])
            else:
                self.sock.sendall(record)
                self.sock.sendall(tag)
        else:
            self.sock.sendall(record)
        self.sent += 1

    def recv_view(self, kinds: Tuple[int, ...], buf: bytearray) -> Tuple[int, memoryview]:
        """Like recv(), into the caller's buffer (reused: no allocation per record); ``len(buf)`` is the
        limit. Returns (kind, a view of the payload in ``buf``)."""
        head = recv_exact(self.sock, RECORD.size)
        kind, seq, size = RECORD.unpack(head)
        self._check(head, kinds, len(buf))
        view = memoryview(buf)[:size]
        _recv_into_exact(self.sock, view)
        if self.key and not hmac.compare_digest(recv_exact(self.sock, TAG_SIZE), _mac(self.key, head, view)):
            raise TransferError('record %d failed its integrity check (HMAC-SHA256): the stream was corrupted or '
                                'altered in transit' % seq)
        self.received += 1
        return kind, view

    def _check(self, head: Union[bytes, bytearray], kinds: Tuple[int, ...], limit: int) -> None:
        kind, seq, size = RECORD.unpack(head)
        if kind not in kinds or seq != self.received or size > limit:
            raise TransferError('record %d is not the %s record expected (type %d, number %d, %d bytes): the stream '
                                'was corrupted or altered in transit (integrity check failed)'
                                % (self.received, '/'.join(KIND_NAMES[k] for k in kinds), kind, seq, size))

    def recv(self, kinds: Tuple[int, ...], limit: int) -> Tuple[int, bytearray]:
        head = recv_exact(self.sock, RECORD.size)
        kind, seq, size = RECORD.unpack(head)
        what = 'record %d' % self.received
        if kind not in kinds or seq != self.received or size > limit:
            raise TransferError('%s is not the %s record expected (type %d, number %d, %d bytes): the stream was '
                                'corrupted or altered in transit (integrity check failed)'
                                % (what, '/'.join(KIND_NAMES[k] for k in kinds), kind, seq, size))
        payload = recv_exact(self.sock, size)
        if self.key and not hmac.compare_digest(recv_exact(self.sock, TAG_SIZE), _mac(self.key, head, payload)):
            raise TransferError('%s failed its integrity check (HMAC-SHA256): the stream was corrupted or altered '
                                'in transit' % what)
        self.received += 1
        return kind, payload

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def describe_tls(sock: Any) -> Dict[str, Any]:
    cipher = sock.cipher() or (None, None, None)
    return {'version': sock.version(), 'cipher': cipher[0]}


def tls_failure(exc: BaseException) -> str:
    """A TLS error in plain words; an integrity failure says so."""
    reason = getattr(exc, 'reason', None) or str(exc)
    if 'BAD_RECORD_MAC' in str(reason).upper() or 'DECRYPT' in str(reason).upper():
        return ('TLS refused a record (%s): the stream failed its integrity check, it was corrupted or altered '
                'in transit' % reason)
    return 'TLS failed: %s' % reason


# ---------------------------------------------------------------------------------------------------
# Handshakes

def client_handshake(sock: socket.socket, token: str, tls: Optional[Pinned], where: str) -> Session:
    """The sender's side, on a connected socket (its timeout is the pre-authentication limit)."""
    key = token.encode('utf-8')
    encryption = 'tls' if tls else 'none'
    info: Dict[str, Any] = {'encryption': encryption}
    if tls:
        try:
            sock = tls.context(server=False).wrap_socket(sock)
        except ssl.SSLError as exc:
            raise TransferError('the TLS handshake with %s failed (%s): the peer is not this migration\'s '
                                'receiver (its certificate is not the pinned one, or it refused ours)'
                                % (where, getattr(exc, 'reason', None) or exc))
        tls.check_peer(sock)
        info['tls'] = describe_tls(sock)
    hello = recv_exact(sock, len(MAGIC) + 1 + NONCE_SIZE)
    if not hello.startswith(MAGIC):
        raise TransferError('the peer on %s is not a checkpoint_transfer receiver' % where)
    mode = bytes(hello[len(MAGIC):len(MAGIC) + 1])
    if mode != MODES[encryption]:
        raise TransferError('the receiver on %s does not use encryption %s' % (where, encryption))
    nonce_r, nonce_s = bytes(hello[len(MAGIC) + 1:]), os.urandom(NONCE_SIZE)
    sock.sendall(nonce_s + proof(key, b'sender', mode, nonce_r, nonce_s))
    if recv_exact(sock, 1) != b'Y':
        raise TransferError('the receiver rejected the transfer: the sender did not prove the transfer token '
                            '(is the token the same on both hosts?)')
    if not hmac.compare_digest(bytes(recv_exact(sock, TAG_SIZE)), proof(key, b'receiver', mode, nonce_r, nonce_s)):
        raise TransferError('the peer on %s did not prove the transfer token: it is not this migration\'s '
                            'receiver' % where)
    return Session(sock, None if tls else proof(key, b'session', mode, nonce_r, nonce_s), encryption, info)


def server_handshake(sock: socket.socket, token: str, tls: Optional[Pinned]) -> Session:
    """The receiver's side. PermissionError when the peer does not authenticate."""
    key = token.encode('utf-8')
    encryption = 'tls' if tls else 'none'
    info: Dict[str, Any] = {'encryption': encryption}
    try:
        if tls:
            sock = tls.context(server=True).wrap_socket(sock, server_side=True)
            tls.check_peer(sock)
            info['tls'] = describe_tls(sock)
        mode = MODES[encryption]
        nonce_r = os.urandom(NONCE_SIZE)
        sock.sendall(MAGIC + mode + nonce_r)
        answer = recv_exact(sock, NONCE_SIZE + TAG_SIZE)
    except (TransferError, OSError, ValueError) as exc:
        sock.close()
        raise PermissionError('the peer did not complete the handshake: %s' % exc)
    nonce_s = bytes(answer[:NONCE_SIZE])
    if not hmac.compare_digest(bytes(answer[NONCE_SIZE:]), proof(key, b'sender', mode, nonce_r, nonce_s)):
        try:
            sock.sendall(b'N')
        except OSError:
            pass
        sock.close()
        raise PermissionError('the sender did not prove the transfer token')
    try:
        sock.sendall(b'Y' + proof(key, b'receiver', mode, nonce_r, nonce_s))
    except OSError as exc:
        sock.close()
        raise PermissionError('the peer left during the handshake: %s' % exc)
    return Session(sock, None if tls else proof(key, b'session', mode, nonce_r, nonce_s), encryption, info)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def drain(sock: Any, seconds: float) -> None:
    """Read and drop what the peer still sends (raw bytes, below TLS) until it closes or ``seconds``
    pass: a sender that is still writing then reads the verdict or TLS alert instead of a reset."""
    deadline = time.time() + seconds
    try:
        fd = sock.fileno()
        while time.time() < deadline:
            ready, dummy, dummy2 = select.select([fd], [], [], min(1.0, max(0.0, deadline - time.time())))
            if ready and not os.read(fd, 1 << 16):
                return
    except (OSError, ValueError):
        return


# ---------------------------------------------------------------------------------------------------
# The receiver's accept loop

class Listener:
    """Accepts senders on address:port; each handshake runs in its own thread (``auth_timeout`` in all).

    ``wait(deadline, cancelled)`` returns (Session, peer address) of the first sender that authenticated.
    """

    def __init__(self, address: str, port: int, token: str, tls: Optional[Pinned], auth_timeout: float) -> None:
        family = socket.AF_INET6 if ':' in address else socket.AF_INET
        self.server = socket.socket(family, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.server.bind((address, port))
        except OSError as exc:
            self.server.close()
            raise TransferError('cannot listen on %s:%s: %s' % (address, port, exc))
        self.server.listen(16)
        self.token, self.tls, self.auth_timeout = token, tls, auth_timeout
        self.winners: 'queue.Queue[Tuple[Session, str]]' = queue.Queue()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.pending = 0
        self.counts = {'connections': 0, 'unauthenticated': 0, 'turned_away': 0}

    def _handshake(self, conn: socket.socket, peer: str) -> None:
        # the limit is for the whole handshake, not for each read: a second descriptor of the socket
        # (TLS takes the first one over) shuts it down when the time is up
        guard = conn.dup()
        timer = threading.Timer(self.auth_timeout, _shut, [guard])
        timer.daemon = True
        timer.start()
        try:
            conn.settimeout(self.auth_timeout)
            session = server_handshake(conn, self.token, self.tls)
        except Exception:  # pylint: disable=broad-exception-caught
            with self.lock:
                self.counts['unauthenticated'] += 1
            return
        finally:
            timer.cancel()
            guard.close()
            with self.lock:
                self.pending -= 1
        with self.lock:
            late = self.done.is_set()
            if not late:
                self.winners.put((session, peer))
        if late:
            session.close()

    def _accept(self, seconds: float) -> None:
        self.server.settimeout(seconds)
        try:
            conn, peer = self.server.accept()
        except socket.timeout:
            return
        with self.lock:
            self.counts['connections'] += 1
            busy = self.pending >= MAX_PENDING
            if busy:
                self.counts['turned_away'] += 1
            else:
                self.pending += 1
        if busy:
            conn.close()
            return
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        threading.Thread(target=self._handshake, args=(conn, peer[0]), daemon=True).start()

    def wait(self, deadline: float, timeout: float, cancelled: Optional[Callable[[], Optional[str]]]) -> Tuple[Session, str]:
        while True:
            try:
                return self.winners.get_nowait()
            except queue.Empty:
                pass
            reason = cancelled() if cancelled else None
            if reason:
                raise TransferError('the wait for the checkpoint was called off: %s' % reason)
            left = deadline - time.time()
            if left <= 0:
                raise TransferError('no sender delivered a bundle within %s s%s' % (timeout, self.summary()))
            self._accept(min(left, 0.1))

    def summary(self) -> str:
        n = self.counts['unauthenticated'] + self.counts['turned_away']
        return ' (%d connection(s) did not authenticate)' % n if n else ''

    def close(self) -> None:
        with self.lock:
            self.done.set()
        self.server.close()
        while True:
            try:
                session, dummy = self.winners.get_nowait()
            except queue.Empty:
                return
            session.close()
