# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_transfer: real senders and receivers over 127.0.0.1 in threads, with a fault-injecting proxy.

Mutual TLS by default, with identities made by the collection's own code (openssl); the plaintext
mode (encryption none) where a test says so.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import tempfile
import threading
import struct
import time

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _channel, _transfer
from ansible_collections.mtd.containers.plugins.module_utils._transfer import TransferError
from ansible_collections.mtd.containers.tests.unit.plugins.modules.module_harness import free_port

TOKEN = 'unit-test-token-0123456789'
HAVE_ZSTD = shutil.which('zstd') is not None
IDENTITIES: dict = {}


def identity(name):
    """(directory, certificate PEM) of a TLS identity made once per test run: sender, receiver, stranger."""
    if name not in IDENTITIES:
        root = IDENTITIES.setdefault('root', tempfile.mkdtemp(prefix='mtd-tls-'))
        directory = os.path.join(root, name)
        IDENTITIES[name] = (directory, _channel.ensure_identity(directory, 'unit-' + name)[0])
    return IDENTITIES[name]


def pinned(me, peer):
    """``me``'s identity, trusting only ``peer``'s certificate."""
    directory = identity(me)[0]
    return _channel.load_identity(directory, identity(peer)[1], 'the test')


def send(*args, **kwargs):
    """_transfer.send as the sender (TLS, pinning the receiver) unless the test says otherwise."""
    if 'channel' not in kwargs:
        kwargs.setdefault('tls', pinned('sender', 'receiver'))
    return _transfer.send(*args, **kwargs)


def connect(*args, **kwargs):
    kwargs.setdefault('tls', pinned('sender', 'receiver'))
    return _transfer.connect(*args, **kwargs)


def make_bundle(root, random_mb=3):
    """A bundle directory: incompressible 'memory', compressible text, nested dirs, an empty file."""
    bundle = root / 'src' / 'm-1'
    (bundle / 'criu').mkdir(parents=True)
    (bundle / 'volumes').mkdir()
    (bundle / 'criu' / 'pages-1.img').write_bytes(os.urandom(random_mb * 1024 * 1024 + 17))
    (bundle / 'criu' / 'core-1.img').write_bytes(b'\x00core' * 1000)
    (bundle / 'rootfs-diff.tar').write_bytes(b'counter 1\n' * 20000)
    (bundle / 'volumes' / 'data.tar').write_bytes(b'')
    (bundle / 'manifest.json').write_text('{"format": 1, "files": []}')
    for path in (bundle, bundle / 'criu', bundle / 'volumes'):
        path.chmod(0o700)
    for path in bundle.rglob('*'):
        if path.is_file():
            path.chmod(0o600)   # as checkpoint leaves them (restrict_tree): the receiver makes every file 0600
    return bundle


def snapshot(path):
    """{relative path: (mode, content)} of every entry below ``path`` (and its own mode)."""
    out = {'.': stat.S_IMODE(os.stat(str(path)).st_mode)}
    for root, dirs, files in os.walk(str(path)):
        for name in dirs + files:
            full = os.path.join(root, name)
            st = os.lstat(full)
            content = open(full, 'rb').read() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(full, str(path))] = (stat.S_IMODE(st.st_mode), content)
    return out


def header_size(bundle, compression):
    """About the bytes the sender writes before the first data byte (the handshake adds a few kB with TLS)."""
    files = raw = 0
    for root, _dummy, names in os.walk(str(bundle)):
        for name in names:
            files += 1
            raw += os.path.getsize(os.path.join(root, name))
    header = json.dumps({'compression': compression, 'bytes': raw, 'files': files}, sort_keys=True)
    return 32 + 4 + len(header.encode('utf-8')) + 4


RECEIVER_TLS = object()   # the default: the receiver's identity, trusting the sender's certificate


def start_receiver(dest, port, token=TOKEN, timeout=20.0, tls=RECEIVER_TLS, auth_timeout=5.0):
    if tls is RECEIVER_TLS:
        tls = pinned('receiver', 'sender')
    return _transfer.start_background(lambda: _transfer.receive(str(dest), '127.0.0.1', port, token, timeout,
                                                                tls=tls, auth_timeout=auth_timeout))


def join(thread, seconds=30):
    thread.join(seconds)
    assert not thread.is_alive(), 'the receiver did not finish'


class Proxy:
    """A TCP proxy on 127.0.0.1 between one sender and the receiver, in threads.

    ``flip_at``: XOR one byte of the sender's stream at that offset. ``cut_at``: close both connections
    once that many bytes of the sender's stream went through. ``hold_at``: stop forwarding there until
    ``release()``.
    """

    def __init__(self, upstream_port, flip_at=None, cut_at=None, hold_at=None):
        self.upstream_port = upstream_port
        self.flip_at, self.cut_at, self.hold_at = flip_at, cut_at, hold_at
        self.forwarded = 0
        self.flipped = False
        self.holding = threading.Event()
        self.released = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def release(self):
        self.released.set()

    def serve(self):
        client, dummy = self.listener.accept()
        upstream = socket.create_connection(('127.0.0.1', self.upstream_port), timeout=10)
        back = threading.Thread(target=self.pump_back, args=(upstream, client), daemon=True)
        back.start()
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    upstream.shutdown(socket.SHUT_WR)
                    break
                start = self.forwarded
                end = start + len(chunk)
                if self.hold_at is not None and start <= self.hold_at < end:
                    upstream.sendall(chunk[:self.hold_at - start])
                    self.holding.set()
                    self.released.wait(30)
                    upstream.sendall(chunk[self.hold_at - start:])
                    self.forwarded = end
                    continue
                if self.flip_at is not None and start <= self.flip_at < end:
                    data = bytearray(chunk)
                    data[self.flip_at - start] ^= 0x40
                    chunk = bytes(data)
                    self.flipped = True
                if self.cut_at is not None and end >= self.cut_at:
                    upstream.sendall(chunk[:self.cut_at - start])
                    self.forwarded = self.cut_at
                    break
                upstream.sendall(chunk)
                self.forwarded = end
        except OSError:
            pass
        finally:
            if self.cut_at is not None:
                for sock in (client, upstream):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    sock.close()
            back.join(30)
            client.close()
            upstream.close()
            self.listener.close()

    @staticmethod
    def pump_back(upstream, client):
        try:
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                client.sendall(chunk)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------------
# The bundle arrives byte-identical

@pytest.mark.parametrize('compression', [
    'none',
    'gzip',
    pytest.param('zstd', marks=pytest.mark.skipif(not HAVE_ZSTD, reason='the zstd binary is not installed')),
])
def test_bundle_arrives_byte_identical(tmp_path, compression):
    bundle = make_bundle(tmp_path)
    dest = tmp_path / 'dst' / 'm-1'
    dest.parent.mkdir()
    port = free_port()
    thread, holder = start_receiver(dest, port)
    stats = send(str(bundle), '127.0.0.1', port, TOKEN, compression=compression, connect_timeout=10)
    join(thread)
    assert 'error' not in holder, holder.get('error')
    assert snapshot(dest) == snapshot(bundle)
    assert not os.path.exists(str(dest) + '.part')
    received = holder['result']
    raw = sum(len(v[1]) for v in snapshot(bundle).values() if isinstance(v, tuple) and v[1] is not None)
    assert stats['bytes_raw'] == raw == received['bytes_raw']
    assert stats['files'] == 5 == received['files']
    assert stats['compression'] == compression == received['compression']
    assert stats['bytes_sent'] == received['bytes_received']
    assert stats['receiver']['ok'] is True and stats['receiver']['bytes_received'] == stats['bytes_sent']
    assert received['peer'] == '127.0.0.1'
    stamp = _transfer.read_stamp(str(dest))
    assert stamp['integrity'] == 'tls' and stamp['bytes_received'] == stats['bytes_sent']
    assert stat.S_IMODE(os.stat(str(dest) + _transfer.STAMP_SUFFIX).st_mode) == 0o600
    assert stats['encryption'] == received['encryption'] == 'tls'
    assert stats['tls']['version'] == received['tls']['version'] == 'TLSv1.3'
    assert received['connections'] == {'connections': 1, 'unauthenticated': 0, 'turned_away': 0}
    if compression == 'none':
        # a tar of the files: more bytes than the files themselves
        assert stats['bytes_sent'] > raw
    else:
        # the 200 kB of repeated text shrinks; the random pages do not
        assert stats['bytes_sent'] < raw - 150000
        assert stats['ratio'] > 1.0


def test_receiver_replaces_an_old_destination(tmp_path):
    bundle = make_bundle(tmp_path, random_mb=0)
    dest = tmp_path / 'm-1'
    (dest / 'stale').mkdir(parents=True)
    os.makedirs(str(dest) + '.part/leftover')
    port = free_port()
    thread, holder = start_receiver(dest, port)
    send(str(bundle), '127.0.0.1', port, TOKEN, compression='gzip', connect_timeout=10)
    join(thread)
    assert 'result' in holder
    assert snapshot(dest) == snapshot(bundle)
    assert not os.path.exists(str(dest) + '.part')


def test_the_bundle_appears_only_complete(tmp_path):
    bundle = make_bundle(tmp_path)
    dest = tmp_path / 'm-1'
    port = free_port()
    thread, holder = start_receiver(dest, port)
    proxy = Proxy(port, hold_at=header_size(bundle, 'none') + 2 * 1024 * 1024)
    sender, sent = _transfer.start_background(send, str(bundle), '127.0.0.1', proxy.port, TOKEN, 'none', 10)
    assert proxy.holding.wait(20), 'the stream never reached the hold point'
    # half of the data is in: the receiver unpacks into dest.part, dest does not exist yet
    deadline = time.time() + 10
    while not os.path.isdir(str(dest) + '.part') and time.time() < deadline:
        time.sleep(0.02)
    assert os.path.isdir(str(dest) + '.part')
    assert stat.S_IMODE(os.stat(str(dest) + '.part').st_mode) == 0o700
    assert not os.path.exists(str(dest))
    proxy.release()
    sender.join(30)
    join(thread)
    assert 'error' not in sent and 'error' not in holder, (sent.get('error'), holder.get('error'))
    assert snapshot(dest) == snapshot(bundle)
    assert not os.path.exists(str(dest) + '.part')


# ---------------------------------------------------------------------------------------------------
# Authentication

@pytest.mark.parametrize('encryption', ['tls', 'none'])
def test_wrong_token_the_receiver_keeps_waiting_for_the_right_sender(tmp_path, encryption):
    bundle = make_bundle(tmp_path, random_mb=0)
    dest = tmp_path / 'm-1'
    port = free_port()
    ends = (pinned('sender', 'receiver'), pinned('receiver', 'sender')) if encryption == 'tls' else (None, None)
    thread, holder = start_receiver(dest, port, tls=ends[1])
    for _dummy in range(7):   # more than the 5 failures that used to end the receiver
        with pytest.raises(TransferError) as info:
            send(str(bundle), '127.0.0.1', port, 'not-the-token-xxxxxxx', compression='none',
                 connect_timeout=10, io_timeout=10, tls=ends[0])
        assert str(info.value) == ('the receiver rejected the transfer: the sender did not prove the transfer '
                                   'token (is the token the same on both hosts?)')
        assert thread.is_alive(), 'the receiver gave up after a wrong token'
        assert not os.path.exists(str(dest)) and not os.path.exists(str(dest) + '.part')
    stats = send(str(bundle), '127.0.0.1', port, TOKEN, compression='none', connect_timeout=10, tls=ends[0])
    join(thread)
    assert 'result' in holder, holder.get('error')
    assert snapshot(dest) == snapshot(bundle)
    assert stats['encryption'] == encryption
    assert holder['result']['connections'] == {'connections': 8, 'unauthenticated': 7, 'turned_away': 0}


def raw_connect(port, deadline=10):
    end = time.time() + deadline
    while True:
        try:
            return socket.create_connection(('127.0.0.1', port), timeout=5)
        except OSError:
            assert time.time() < end, 'the receiver never listened'
            time.sleep(0.05)


def test_a_peer_that_leaves_before_authenticating_does_not_stop_the_receiver(tmp_path):
    bundle = make_bundle(tmp_path, random_mb=0)
    dest = tmp_path / 'm-1'
    port = free_port()
    thread, holder = start_receiver(dest, port, tls=None)
    # a port probe: connect, read the greeting (plaintext), leave
    probe = raw_connect(port)
    assert probe.recv(6) == _transfer.MAGIC
    probe.close()
    time.sleep(0.2)
    assert thread.is_alive()
    send(str(bundle), '127.0.0.1', port, TOKEN, compression='none', connect_timeout=10, tls=None)
    join(thread)
    assert 'result' in holder, holder.get('error')
    assert snapshot(dest) == snapshot(bundle)


def test_idle_peers_do_not_block_the_real_sender(tmp_path):
    """Ten connections that say nothing (no TLS hello) hold their handshake threads; the real sender,
    coming after them, is served at once, long before their pre-authentication time is up."""
    bundle = make_bundle(tmp_path, random_mb=1)
    dest = tmp_path / 'm-1'
    port = free_port()
    thread, holder = start_receiver(dest, port, auth_timeout=8.0)
    idle = [raw_connect(port) for _dummy in range(10)]
    try:
        t0 = time.time()
        send(str(bundle), '127.0.0.1', port, TOKEN, compression='none', connect_timeout=10)
        assert time.time() - t0 < 4, 'the real sender waited for the idle peers'
        join(thread)
        assert snapshot(dest) == snapshot(bundle)
        assert holder['result']['connections']['connections'] == 11
    finally:
        for sock in idle:
            sock.close()


def test_a_flood_beyond_the_pending_limit_is_turned_away_and_the_receiver_goes_on(tmp_path, monkeypatch):
    """At most MAX_PENDING handshakes at a time: more connections are closed at once (counted); once the
    idle ones' pre-authentication time is up, the real sender gets through."""
    monkeypatch.setattr(_channel, 'MAX_PENDING', 2)
    bundle = make_bundle(tmp_path, random_mb=0)
    dest = tmp_path / 'm-1'
    port = free_port()
    thread, holder = start_receiver(dest, port, auth_timeout=1.0)
    idle = [raw_connect(port) for _dummy in range(2)]
    time.sleep(0.3)
    extra = raw_connect(port)
    extra.settimeout(0.5)
    assert extra.recv(10) == b''    # turned away at once (well before the 1 s limit)
    time.sleep(1.2)                 # the two idle ones are dropped
    send(str(bundle), '127.0.0.1', port, TOKEN, compression='none', connect_timeout=10)
    join(thread)
    for sock in idle + [extra]:
        sock.close()
    assert holder['result']['connections'] == {'connections': 4, 'unauthenticated': 2, 'turned_away': 1}
    assert snapshot(dest) == snapshot(bundle)


def test_an_idle_peer_is_dropped_after_the_pre_authentication_timeout(tmp_path):
    port = free_port()
    thread, holder = start_receiver(tmp_path / 'm-1', port, timeout=6.0, auth_timeout=1.0)
    idle = raw_connect(port)
    idle.settimeout(5)
    t0 = time.time()
    assert idle.recv(100) == b''   # closed by the receiver, which waits on
    assert 0.8 < time.time() - t0 < 3
    assert thread.is_alive()
    idle.close()
    join(thread)
    assert str(holder['error']) == 'no sender delivered a bundle within 6.0 s (1 connection(s) did not authenticate)'


@pytest.mark.parametrize('encryption, message', [
    ('tls', 'the TLS handshake with 127.0.0.1:'),
    ('none', 'is not a checkpoint_transfer receiver'),
])
def test_a_peer_that_is_not_a_receiver(tmp_path, encryption, message):
    bundle = make_bundle(tmp_path, random_mb=0)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(('127.0.0.1', 0))
    server.listen(1)

    def answer():
        conn, dummy = server.accept()
        conn.sendall(b'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n')
        time.sleep(0.5)
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with pytest.raises(TransferError) as info:
            send(str(bundle), '127.0.0.1', server.getsockname()[1], TOKEN, compression='none',
                 connect_timeout=5, io_timeout=5, tls=pinned('sender', 'receiver') if encryption == 'tls' else None)
        assert message in str(info.value)
    finally:
        thread.join(5)
        server.close()


class Squatter:
    """Whoever bound the port first: records every byte it gets. ``tls``: it answers TLS with an identity
    of its own (a stranger's), otherwise it only listens."""

    def __init__(self, tls=False):
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(('127.0.0.1', 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        self.received = bytearray()
        self.tls = tls
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, dummy = self.server.accept()
        conn.settimeout(8)
        try:
            if self.tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                directory = identity('stranger')[0]
                ctx.load_cert_chain(os.path.join(directory, 'cert.pem'), os.path.join(directory, 'key.pem'))
                conn = ctx.wrap_socket(conn, server_side=True)   # no client certificate asked for
                conn.sendall(_transfer.MAGIC + b'T' + os.urandom(32))
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                self.received.extend(data)
        except OSError:
            pass
        finally:
            conn.close()
            self.server.close()


@pytest.mark.parametrize('answers_tls', [False, True])
def test_a_squatter_on_the_port_gets_nothing(tmp_path, answers_tls):
    """A local user bound the receiver's port first: the sender's handshake fails (the pinned certificate
    is not there) before the token proof or any byte of the bundle is sent."""
    bundle = make_bundle(tmp_path, random_mb=1)
    squatter = Squatter(tls=answers_tls)
    t0 = time.time()
    with pytest.raises(TransferError) as info:
        connect('127.0.0.1', squatter.port, TOKEN, connect_timeout=5, auth_timeout=2)
    assert time.time() - t0 < 4
    if answers_tls:
        assert 'the TLS handshake with 127.0.0.1:%d failed' % squatter.port in str(info.value)
        assert 'CERTIFICATE_VERIFY_FAILED' in str(info.value)
    else:
        assert str(info.value) == ('the peer on 127.0.0.1:%d did not complete the handshake within 2 s: it is not '
                                   'this migration\'s receiver' % squatter.port)
    squatter.thread.join(10)
    got = bytes(squatter.received)
    # at most the TLS ClientHello (public); never the token, a proof, or a byte of the bundle
    assert len(got) < 2048 and TOKEN.encode() not in got
    assert open(str(bundle / 'criu' / 'pages-1.img'), 'rb').read(64) not in got


def test_a_receiver_with_another_certificate_is_refused(tmp_path):
    """The real protocol, but the receiver's identity is not the one the sender pinned (and the other way
    round): the handshake fails on both sides, the receiver waits on for the right sender."""
    bundle = make_bundle(tmp_path, random_mb=0)
    port = free_port()
    thread, holder = start_receiver(tmp_path / 'm-1', port, timeout=4.0, tls=pinned('stranger', 'sender'))
    with pytest.raises(TransferError) as info:
        send(str(bundle), '127.0.0.1', port, TOKEN, compression='none', connect_timeout=10)
    assert 'CERTIFICATE_VERIFY_FAILED' in str(info.value)
    # a sender with the stranger's key, pinning the right receiver: the receiver refuses its certificate
    with pytest.raises(TransferError) as info:
        send(str(bundle), '127.0.0.1', port, TOKEN, compression='none', connect_timeout=10,
             tls=pinned('stranger', 'stranger'))
    assert thread.is_alive()
    join(thread, 25)
    assert holder['error'].msg == 'no sender delivered a bundle within 4.0 s (2 connection(s) did not authenticate)'


def test_the_pin_is_checked_again_after_the_handshake(tmp_path):
    tls = pinned('sender', 'receiver')
    tls.peer_fingerprint = '0' * 64     # as if the chain check had let another certificate through

    class Peer:
        @staticmethod
        def getpeercert(binary_form=False):
            return ssl.PEM_cert_to_DER_cert(identity('receiver')[1])

    with pytest.raises(TransferError, match='not the pinned one'):
        tls.check_peer(Peer())
    with pytest.raises(TransferError, match='not a PEM certificate'):
        _channel.Pinned('c', 'k', 'junk')


def test_a_receiver_that_does_not_know_the_token_is_refused_in_plaintext(tmp_path):
    """Without TLS the receiver must prove the token too: a peer that speaks the protocol but cannot gets
    the sender's proof (useless to it: bound to its own nonce) and nothing else."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    got = bytearray()

    def fake():
        conn, dummy = server.accept()
        conn.sendall(_transfer.MAGIC + b'P' + os.urandom(32))
        got.extend(_channel.recv_exact(conn, 64))
        conn.sendall(b'Y' + os.urandom(32))
        conn.settimeout(2)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                got.extend(data)
        except OSError:
            pass
        conn.close()

    thread = threading.Thread(target=fake, daemon=True)
    thread.start()
    with pytest.raises(TransferError) as info:
        connect('127.0.0.1', server.getsockname()[1], TOKEN, connect_timeout=5, tls=None)
    thread.join(5)
    server.close()
    assert 'did not prove the transfer token: it is not this migration\'s receiver' in str(info.value)
    assert len(got) == 64, 'the sender sent more than its proof'


def test_the_proofs_and_the_record_key_are_domain_separated():
    key, nr, ns = b'k' * 20, b'r' * 32, b's' * 32
    values = {role: _channel.proof(key, role, b'P', nr, ns) for role in (b'sender', b'receiver', b'session')}
    assert len(set(values.values())) == 3
    # the mode is bound: a TLS run's proofs are not a plaintext run's
    assert _channel.proof(key, b'sender', b'T', nr, ns) != values[b'sender']
    # a record's tag is keyed with the session key, never with the token, and covers type, number, length
    head = _channel.RECORD.pack(_channel.END, 0, 0)
    assert _channel._mac(values[b'session'], head, b'') not in values.values()


# ---------------------------------------------------------------------------------------------------
# Integrity and broken connections

@pytest.mark.parametrize('compression', ['none', 'gzip'])
@pytest.mark.parametrize('encryption', ['tls', 'none'])
def test_a_flipped_byte_fails_the_integrity_check_on_both_sides(tmp_path, compression, encryption):
    bundle = make_bundle(tmp_path)
    dest = tmp_path / 'm-1'
    port = free_port()
    ends = (pinned('sender', 'receiver'), pinned('receiver', 'sender')) if encryption == 'tls' else (None, None)
    thread, holder = start_receiver(dest, port, tls=ends[1])
    proxy = Proxy(port, flip_at=header_size(bundle, compression) + 70000)
    with pytest.raises(TransferError) as info:
        send(str(bundle), '127.0.0.1', proxy.port, TOKEN, compression=compression, connect_timeout=10, tls=ends[0])
    join(thread)
    assert proxy.flipped
    assert 'integrity' in str(info.value) and 'corrupted or altered in transit' in str(info.value), str(info.value)
    if encryption == 'none':
        assert str(info.value).startswith('the receiver rejected the transfer: record ')
    else:
        assert 'TLS refused a record' in str(info.value)
    assert isinstance(holder.get('error'), TransferError)
    assert 'integrity' in str(holder['error']) and 'corrupted or altered in transit' in str(holder['error'])
    assert not os.path.exists(str(dest)) and not os.path.exists(str(dest) + '.part')


class SpySink:
    """Stands between the receiver and tar's stdin: what tar was given."""

    def __init__(self, real):
        self.real = real
        self.written = bytearray()

    def write(self, data):
        self.written.extend(data)
        return self.real.write(data)

    def close(self):
        self.real.close()


def plaintext_sender(port, token=TOKEN):
    sock = raw_connect(port)
    sock.settimeout(10)
    return _channel.client_handshake(sock, token, None, '127.0.0.1:%d' % port)


def test_a_tampered_record_never_reaches_tar(tmp_path, monkeypatch):
    """Plaintext: the first data record is genuine, the second carries a wrong tag. tar gets the first
    record's bytes and not one byte of the second; the receiver fails and says why."""
    real = _transfer._unpacker
    spies = []

    def spy(compression, staging):
        procs = real(compression, staging)
        procs[0].stdin = SpySink(procs[0].stdin)
        spies.append(procs[0].stdin)
        return procs

    monkeypatch.setattr(_transfer, '_unpacker', spy)
    port = free_port()
    dest = tmp_path / 'm-1'
    thread, holder = start_receiver(dest, port, tls=None)
    session = plaintext_sender(port)
    session.send(_channel.HEADER, json.dumps({'compression': 'none', 'bytes': 20480, 'files': 1}).encode())
    first, second = b'A' * 10240, b'B' * 10240
    session.send(_channel.DATA, first)
    head = _channel.RECORD.pack(_channel.DATA, session.sent, len(second))
    session.sock.sendall(head + second + b'\0' * 32)   # a forged tag
    verdict = _transfer._recv_json(session, _channel.VERDICT, 'verdict')
    session.close()
    join(thread)
    assert verdict['ok'] is False and 'record 2 failed its integrity check' in verdict['error']
    assert 'record 2 failed its integrity check (HMAC-SHA256)' in str(holder['error'])
    assert bytes(spies[0].written) == first
    assert not os.path.exists(str(dest)) and not os.path.exists(str(dest) + '.part')
    session.close()


@pytest.mark.parametrize('header, message', [
    ([1, 2, 3], 'the header is not a JSON object'),
    ('"text"', 'the header is not a JSON object'),
    (b'{not json', 'the header is not valid JSON'),
    ({'compression': 'none', 'bytes': 1, 'files': 1, 'path': '/etc'}, 'unknown fields: path'),
    ({'compression': 'none', 'bytes': 1}, 'missing fields: files'),
    ({'compression': 'lz4', 'bytes': 1, 'files': 1}, "unknown compression 'lz4'"),
    ({'compression': 'none', 'bytes': 1 << 60, 'files': 1}, 'the header announces 1152921504606846976 bytes'),
    ({'compression': 'none', 'bytes': -1, 'files': 1}, 'the header announces -1 bytes'),
    ({'compression': 'none', 'bytes': 1, 'files': True}, 'the header announces True files'),
])
def test_a_bad_header_is_refused_clearly(tmp_path, header, message):
    port = free_port()
    dest = tmp_path / 'm-1'
    thread, holder = start_receiver(dest, port, tls=None)
    session = plaintext_sender(port)
    payload = header if isinstance(header, bytes) else (header.encode() if isinstance(header, str) else json.dumps(header).encode())
    session.send(_channel.HEADER, payload)
    verdict = _transfer._recv_json(session, _channel.VERDICT, 'verdict')
    session.close()
    join(thread)
    assert verdict['ok'] is False and message in verdict['error'], verdict
    assert isinstance(holder['error'], TransferError) and message in str(holder['error'])
    assert not os.path.exists(str(dest) + '.part')


def test_a_record_out_of_order_is_refused(tmp_path):
    port = free_port()
    thread, holder = start_receiver(tmp_path / 'm-1', port, tls=None)
    session = plaintext_sender(port)
    session.sent = 5      # a replayed or reordered record
    session.send(_channel.HEADER, b'{}')
    verdict = _transfer._recv_json(session, _channel.VERDICT, 'verdict')
    session.close()
    join(thread)
    assert verdict['ok'] is False and 'number 5' in verdict['error']
    assert 'record 0 is not the header record expected (type 1, number 5' in str(holder['error'])


def make_many_files(root, dirs=40, files=60):
    """A bundle of many small files: tar is still creating files when the stream breaks."""
    bundle = root / 'src' / 'many'
    for d in range(dirs):
        (bundle / ('d%02d' % d)).mkdir(parents=True)
        for f in range(files):
            (bundle / ('d%02d' % d) / ('f%03d' % f)).write_bytes(os.urandom(900))
    return bundle


@pytest.mark.parametrize('compression, kind', [
    ('none', 'large'), ('gzip', 'large'), ('none', 'many-small'), ('gzip', 'many-small'),
])
def test_a_connection_cut_mid_stream_fails_both_sides(tmp_path, compression, kind):
    bundle = make_bundle(tmp_path, random_mb=4) if kind == 'large' else make_many_files(tmp_path)
    dest = tmp_path / 'm-1'
    port = free_port()
    thread, holder = start_receiver(dest, port)
    proxy = Proxy(port, cut_at=header_size(bundle, compression) + 1200 * 1024)
    t0 = time.time()
    with pytest.raises(TransferError) as info:
        send(str(bundle), '127.0.0.1', proxy.port, TOKEN, compression=compression, connect_timeout=10,
             io_timeout=20)
    join(thread)
    assert time.time() - t0 < 15
    assert 'broke off' in str(info.value) or 'closed' in str(info.value), str(info.value)
    assert isinstance(holder.get('error'), TransferError)
    assert 'the connection was closed after' in str(holder['error'])
    # the receiver stopped its tar before it cleaned up: nothing is left, not even a few late files
    time.sleep(0.3)
    assert not os.path.exists(str(dest)) and not os.path.exists(str(dest) + '.part')


# ---------------------------------------------------------------------------------------------------
# Nobody there

def test_sender_without_receiver_gives_up_after_connect_timeout(tmp_path):
    bundle = make_bundle(tmp_path, random_mb=0)
    port = free_port()
    t0 = time.time()
    with pytest.raises(TransferError) as info:
        send(str(bundle), '127.0.0.1', port, TOKEN, compression='none', connect_timeout=1.5)
    elapsed = time.time() - t0
    assert 1.4 <= elapsed < 4, elapsed
    assert str(info.value).startswith('no receiver answered on 127.0.0.1:%d within 1.5 s (' % port)
    assert 'refused' in str(info.value)


def test_sender_of_a_missing_bundle(tmp_path):
    with pytest.raises(TransferError) as info:
        send(str(tmp_path / 'nope'), '127.0.0.1', free_port(), TOKEN, connect_timeout=1)
    assert str(info.value) == 'the bundle %s does not exist' % (tmp_path / 'nope')


def test_receiver_without_sender_gives_up_after_timeout(tmp_path):
    dest = tmp_path / 'm-1'
    t0 = time.time()
    with pytest.raises(TransferError) as info:
        _transfer.receive(str(dest), '127.0.0.1', free_port(), TOKEN, timeout=1.0, tls=None)
    assert 0.9 <= time.time() - t0 < 4
    assert str(info.value) == 'no sender delivered a bundle within 1.0 s'
    assert not os.path.exists(str(dest))


def test_receiver_on_a_busy_port(tmp_path):
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(('127.0.0.1', 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        with pytest.raises(TransferError) as info:
            _transfer.receive(str(tmp_path / 'm-1'), '127.0.0.1', port, TOKEN, timeout=1.0, tls=None)
        assert str(info.value).startswith('cannot listen on 127.0.0.1:%d: ' % port)
    finally:
        busy.close()


def test_available_compression(monkeypatch):
    present = {'gzip'}
    monkeypatch.setattr(_transfer.shutil, 'which', lambda name: '/usr/bin/' + name if name in present else None)
    assert _transfer.available_compression('auto') == 'gzip'
    assert _transfer.available_compression('zstd') == 'gzip'
    assert _transfer.available_compression('none') == 'none'
    assert _transfer.available_compression(None) == 'gzip'
    present.add('zstd')
    assert _transfer.available_compression('auto') == 'zstd'
    assert _transfer.available_compression('gzip') == 'gzip'
    present.clear()
    assert _transfer.available_compression('auto') == 'none'


def test_start_background_keeps_result_and_error():
    thread, holder = _transfer.start_background(lambda a, b: a + b, 2, 3)
    thread.join(5)
    assert holder == {'result': 5}

    def boom():
        raise TransferError('boom')

    thread, holder = _transfer.start_background(boom)
    thread.join(5)
    assert str(holder['error']) == 'boom' and 'result' not in holder


# ---------------------------------------------------------------------------------------------------
# The receiver's stamp and the compression probe

def test_a_stamp_inside_the_bundle_counts_for_nothing(tmp_path):
    """The receiver's stamp lives beside the bundle; a sender's file of the old stamp's name (or a link)
    travels as bundle content, is never followed and never read as a stamp."""
    bundle = make_bundle(tmp_path, random_mb=0)
    (bundle / 'received.json').write_text('{"integrity": "hmac-sha256", "forged": true}')
    (bundle / 'dest.received').write_text('{"integrity": "tls", "forged": true}')
    dest = tmp_path / 'dst' / 'm-1'
    dest.parent.mkdir()
    port = free_port()
    thread, holder = start_receiver(dest, port)
    send(str(bundle), '127.0.0.1', port, TOKEN, compression='none', connect_timeout=10)
    join(thread)
    assert 'result' in holder, holder
    stamp = _transfer.read_stamp(str(dest))
    assert stamp['integrity'] == 'tls' and 'forged' not in stamp
    # the stamp is bound to the directory and to its manifest
    (dest / 'manifest.json').write_text('{"format": 1, "files": [], "forged": true}')
    assert _transfer.read_stamp(str(dest)) is None


def test_a_link_in_the_stream_is_refused_and_nothing_is_written_through_it(tmp_path):
    """A hostile sender's tar stream with a symbolic link: the receiver refuses it, writes nothing through it."""
    import io
    import tarfile
    victim = tmp_path / 'victim'
    victim.write_text('keep me')
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode='w', format=tarfile.GNU_FORMAT) as tar:
        link = tarfile.TarInfo('./received.json')
        link.type, link.linkname = tarfile.SYMTYPE, str(victim)
        tar.addfile(link)
    data = stream.getvalue()
    dest = tmp_path / 'dst' / 'm-1'
    dest.parent.mkdir()
    port = free_port()
    thread, holder = start_receiver(dest, port, tls=None)
    session = plaintext_sender(port)
    session.send(_channel.HEADER, json.dumps({'compression': 'none', 'bytes': len(data), 'files': 1}).encode())
    session.send(_channel.DATA, data)
    session.send(_channel.END, struct.pack('>Q', len(data)))
    verdict = _transfer._recv_json(session, _channel.VERDICT, 'verdict')
    session.close()
    join(thread)
    assert verdict['ok'] is False
    assert 'symbolic link; a bundle holds only regular files and directories' in str(holder['error'])
    assert victim.read_text() == 'keep me'
    assert not os.path.lexists(str(dest)) and not os.path.lexists(str(dest) + '.part')


def test_the_sender_never_follows_a_link_in_its_bundle(tmp_path):
    bundle = make_bundle(tmp_path, random_mb=0)
    victim = tmp_path / 'victim'
    victim.write_text('secret of the source host')
    os.symlink(str(victim), str(bundle / 'received.json'))
    dest = tmp_path / 'dst' / 'm-1'
    dest.parent.mkdir()
    port = free_port()
    thread, holder = start_receiver(dest, port, timeout=10)
    with pytest.raises(_transfer.TransferError, match='received.json in the bundle is not a regular file'):
        send(str(bundle), '127.0.0.1', port, TOKEN, compression='none', connect_timeout=10)
    join(thread)
    assert not os.path.lexists(str(dest)) and not os.path.lexists(str(dest) + '.part')


def test_read_stamp_accepts_only_the_receivers_file(tmp_path):
    bundle = tmp_path / 'm-1'
    bundle.mkdir()
    (bundle / 'manifest.json').write_text('{}')
    stamp = str(bundle) + _transfer.STAMP_SUFFIX
    assert _transfer.read_stamp(str(bundle)) is None
    # a stamp written by the receiver for a staging directory, renamed into place
    staging = tmp_path / 'm-1.part'
    os.rename(str(bundle), str(staging))
    _transfer.write_stamp(str(bundle), str(staging), {'integrity': 'tls', 'bytes_received': 5})
    os.rename(str(staging), str(bundle))
    good = _transfer.read_stamp(str(bundle))
    assert good['integrity'] == 'tls' and good['bytes_received'] == 5
    # another directory of that name (a new inode) is not the one stamped
    os.rename(str(bundle), str(tmp_path / 'old'))
    bundle.mkdir()
    (bundle / 'manifest.json').write_text('{}')
    assert _transfer.read_stamp(str(bundle)) is None
    # a link, a readable file, an unknown integrity, junk
    record = json.loads(open(stamp).read())
    os.unlink(stamp)
    (tmp_path / 'elsewhere').write_text(json.dumps(record))
    os.symlink(str(tmp_path / 'elsewhere'), stamp)
    assert _transfer.read_stamp(str(bundle)) is None
    os.unlink(stamp)
    info = os.lstat(str(bundle))
    record.update(bundle_dev=info.st_dev, bundle_ino=info.st_ino)
    with open(stamp, 'w') as handle:
        handle.write(json.dumps(record))
    os.chmod(stamp, 0o644)
    assert _transfer.read_stamp(str(bundle)) is None
    os.chmod(stamp, 0o600)
    assert _transfer.read_stamp(str(bundle))['integrity'] == 'tls'
    with open(stamp, 'w') as handle:
        handle.write(json.dumps(dict(record, integrity='none')))
    assert _transfer.read_stamp(str(bundle)) is None
    with open(stamp, 'w') as handle:
        handle.write('not json')
    assert _transfer.read_stamp(str(bundle)) is None


def test_compression_worthwhile():
    # zeros shrink to almost nothing, random bytes do not shrink at all
    assert _transfer.compression_worthwhile([b'\x00' * 65536]) == (True, 0.005)
    worthwhile, ratio = _transfer.compression_worthwhile([os.urandom(65536)])
    assert worthwhile is False and ratio > 0.99
    # the 90 % line: half random, half zeros is worth it
    worthwhile, ratio = _transfer.compression_worthwhile([os.urandom(32768) + b'\x00' * 32768])
    assert worthwhile is True and 0.49 < ratio < 0.52
    assert _transfer.compression_worthwhile([]) == (True, None)


def test_choose_compression_samples_the_largest_file(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path, random_mb=1)   # largest file: random pages
    name, why = _transfer.choose_compression(str(bundle), 'auto')
    assert name == 'none' and why['probe_file'] == 'criu/pages-1.img' and why['probe_ratio'] > 0.99
    (bundle / 'criu' / 'pages-1.img').write_bytes(b'\x00' * (2 * 1024 * 1024))   # now compressible
    name, why = _transfer.choose_compression(str(bundle), 'auto')
    assert why == {'requested': 'auto', 'used': name, 'probe_ratio': 0.005, 'probe_file': 'criu/pages-1.img'}
    assert name == _transfer.available_compression('auto')
    # an explicit choice is taken as it is
    assert _transfer.choose_compression(str(bundle), 'gzip') == ('gzip', {'requested': 'gzip', 'used': 'gzip'})
    assert _transfer.choose_compression(str(bundle), 'none')[0] == 'none'
    monkeypatch.setattr(_transfer.shutil, 'which', lambda name: None)
    assert _transfer.choose_compression(str(bundle), 'auto')[0] == 'none'


def test_probe_offsets_are_the_middles_of_equal_slices():
    assert _transfer.probe_offsets(16 << 20, 4, 1 << 20) == [1536 << 10, 5632 << 10, 9728 << 10, 13824 << 10]
    assert _transfer.probe_offsets(100, 2, 64) == [0, 36]         # never past the end
    assert _transfer.probe_offsets(10, 3, 64) == [0, 0, 0]        # a file smaller than a sample


def test_the_compressible_ends_of_a_random_pages_file_do_not_decide_for_it(tmp_path):
    # 64 MiB of random memory with 512 KiB of compressible pages at each end (the program's data and
    # stack, as in a python3 dump of the bench workload): compressing it would save 1.5 %, not worth
    # the CPU time inside the freeze. Samples at the two ends estimated 0.88 and chose a compressor.
    bundle = make_bundle(tmp_path, random_mb=0)
    with open(str(bundle / 'criu' / 'pages-1.img'), 'wb') as handle:
        handle.write(b'\x00' * (512 << 10))
        for _dummy in range(63):
            handle.write(os.urandom(1 << 20))
        handle.write(os.urandom(512 << 10) + b'\x00' * (512 << 10))
    name, why = _transfer.choose_compression(str(bundle), 'auto')
    assert name == 'none' and why['probe_ratio'] > 0.99


# ---------------------------------------------------------------------------------------------------
# A file still being written while the rest streams (the manifest)

def test_a_late_file_is_sent_last_once_written(tmp_path):
    bundle = make_bundle(tmp_path)
    os.unlink(str(bundle / 'manifest.json'))
    order = []

    def wait():
        order.append('wait')
        time.sleep(0.3)
        (bundle / 'manifest.json').write_text('{"format": 1, "late": true}')
        (bundle / 'manifest.json').chmod(0o600)

    dest = tmp_path / 'dst' / 'm-1'
    dest.parent.mkdir()
    port = free_port()
    thread, holder = start_receiver(dest, port)
    stats = send(str(bundle), '127.0.0.1', port, TOKEN, compression='gzip', connect_timeout=10,
                 late=('manifest.json', wait))
    join(thread)
    assert 'result' in holder, holder.get('error')
    assert order == ['wait']
    assert snapshot(dest) == snapshot(bundle)
    assert (dest / 'manifest.json').read_text() == '{"format": 1, "late": true}'
    assert stats['files'] == 5 and stats['bytes_raw'] == sum(
        os.path.getsize(os.path.join(r, n)) for r, d, ns in os.walk(str(bundle)) for n in ns)


def test_a_late_file_that_fails_aborts_the_transfer(tmp_path):
    bundle = make_bundle(tmp_path, random_mb=0)
    os.unlink(str(bundle / 'manifest.json'))

    def wait():
        raise ValueError('the disk is full')

    dest = tmp_path / 'dst' / 'm-1'
    dest.parent.mkdir()
    port = free_port()
    thread, holder = start_receiver(dest, port, timeout=10)
    with pytest.raises(_transfer.TransferError) as err:
        send(str(bundle), '127.0.0.1', port, TOKEN, compression='none', connect_timeout=10,
             late=('manifest.json', wait))
    join(thread)
    assert str(err.value) == 'the bundle could not be completed: the disk is full'
    assert not os.path.exists(str(dest)) and not os.path.exists(str(dest) + '.part')


# ---------------------------------------------------------------------------------------------------
# A channel opened before there is anything to send; a receiver that can be called off

def test_a_channel_opened_first_carries_the_bundle_later(tmp_path):
    bundle = make_bundle(tmp_path)
    dest = tmp_path / 'dst' / 'm-1'
    dest.parent.mkdir()
    port = free_port()
    thread, holder = start_receiver(dest, port)
    channel = connect('127.0.0.1', port, TOKEN, connect_timeout=10)
    assert channel.connect_seconds >= 0
    time.sleep(0.3)   # e.g. the freeze and the dump happen here
    stats = send(str(bundle), None, None, TOKEN, compression='none', channel=channel)
    join(thread)
    assert 'error' not in holder, holder.get('error')
    assert snapshot(dest) == snapshot(bundle)
    assert stats['receiver']['ok'] is True and stats['connect_seconds'] == channel.connect_seconds
    assert holder['result']['waited_seconds'] >= 0.25


def test_a_channel_with_the_wrong_token_is_refused_at_once(tmp_path):
    port = free_port()
    thread, holder = start_receiver(tmp_path / 'm-1', port)
    with pytest.raises(TransferError) as info:
        connect('127.0.0.1', port, 'x' * 24, connect_timeout=5)
    assert 'did not prove the transfer token' in str(info.value)
    channel = connect('127.0.0.1', port, TOKEN, connect_timeout=5)   # the receiver still waits
    channel.close()
    join(thread)


def test_a_channel_to_nobody(tmp_path):
    port = free_port()
    with pytest.raises(TransferError) as info:
        connect('127.0.0.1', port, TOKEN, connect_timeout=0.5)
    assert str(info.value).startswith('no receiver answered on 127.0.0.1:%d within 0.5 s (' % port)


def test_a_waiting_receiver_is_called_off(tmp_path):
    dest = tmp_path / 'm-1'
    t0 = time.time()
    with pytest.raises(TransferError) as info:
        _transfer.receive(str(dest), '127.0.0.1', free_port(), TOKEN, timeout=30,
                          cancelled=lambda: 'rolled back' if time.time() - t0 > 0.5 else None,
                          tls=pinned('receiver', 'sender'))
    assert 0.45 <= time.time() - t0 < 2
    assert str(info.value) == 'the wait for the checkpoint was called off: rolled back'
    assert not os.path.exists(str(dest))


def test_probe_listen(tmp_path):
    _transfer.probe_listen('127.0.0.1', free_port())
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(('127.0.0.1', 0))
    busy.listen(1)
    try:
        with pytest.raises(TransferError, match='cannot listen on 127.0.0.1:%d: ' % busy.getsockname()[1]):
            _transfer.probe_listen('127.0.0.1', busy.getsockname()[1])
    finally:
        busy.close()
