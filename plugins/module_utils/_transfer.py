# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host-to-host transfer of a checkpoint bundle over one TCP connection.

Private module_utils file: its API may change without notice. Python 3.8+, standard library plus the
``tar`` and ``gzip``/``zstd`` binaries of the hosts.

Protocol (sender -> receiver unless noted), after the receiver accepted the connection::

    receiver -> sender   MAGIC + 32-byte random nonce
    sender -> receiver   HMAC-SHA256(token, nonce)                        (authentication)
    receiver -> sender   4-byte length + JSON {ok, error}                 (the token was right, or not)
    sender -> receiver   4-byte length + JSON header {compression, bytes, files}
    sender -> receiver   frames: 4-byte length + data ... then a 0-length frame
    sender -> receiver   HMAC-SHA256(token, nonce + every data byte)      (integrity, end to end)
    receiver -> sender   4-byte length + JSON verdict {ok, error, bytes, ...}

The data is a tar stream of the bundle, compressed with ``zstd -1`` or ``gzip -1`` (or not at all).
The stream is authenticated and integrity-checked, not encrypted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError

MAGIC = b'MTDX2\n'
NONCE_SIZE = 32
FRAME = 1024 * 1024
STAMP = 'received.json'   # written by the receiver into a bundle that arrived intact
COMPRESSORS = {
    'zstd': (['zstd', '-1', '-q', '-T0', '-c'], ['zstd', '-d', '-q', '-c']),
    'gzip': (['gzip', '-1', '-c'], ['gzip', '-d', '-c']),
    'none': (None, None),
}


class TransferError(MtdError):
    """The host-to-host stream failed; the message says at which end and why."""


def _no_delay(sock):
    """Send small writes (the last frame, the trailer, the verdict) at once: with Nagle's algorithm a
    small segment waits for the ACK of the previous one, which the peer may delay by 40 ms."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass   # not TCP (a test's socket pair)


def _recv_exact(sock, size):
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise TransferError('the connection was closed after %d of %d expected bytes' % (len(buf), size))
        buf.extend(chunk)
    return bytes(buf)


def _send_json(sock, obj):
    data = json.dumps(obj, sort_keys=True).encode('utf-8')
    sock.sendall(struct.pack('>I', len(data)) + data)


def _recv_json(sock, limit=1024 * 1024):
    (size,) = struct.unpack('>I', _recv_exact(sock, 4))
    if size > limit:
        raise TransferError('a control message of %d bytes is too large' % size)
    return json.loads(_recv_exact(sock, size).decode('utf-8'))


def available_compression(preferred):
    """``preferred`` if its binary exists here, else the best one that does."""
    order = [preferred] if preferred and preferred != 'auto' else []
    order += ['zstd', 'gzip', 'none']
    for name in order:
        cmd = COMPRESSORS[name][0]
        if cmd is None or shutil.which(cmd[0]):
            return name
    return 'none'


PROBE_CHUNK = 256 * 1024
PROBE_CHUNKS = 4
WORTHWHILE_RATIO = 0.9   # compress only when a sample shrinks to at most 90 %


def compression_worthwhile(samples, level=1):
    """Whether compressing data like ``samples`` (a list of bytes) is worth its CPU time.

    Pure function: deflates the samples at ``level`` and compares the sizes with WORTHWHILE_RATIO.
    Returns (worthwhile, ratio); no samples -> (True, None).
    """
    import zlib
    raw = sum(len(x) for x in samples)
    if not raw:
        return True, None
    packed = sum(len(zlib.compress(x, level)) for x in samples)
    ratio = round(float(packed) / raw, 3)
    return ratio <= WORTHWHILE_RATIO, ratio


def _largest_file(path):
    best, best_size = None, -1
    for root, _dummy, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                size = os.lstat(full).st_size
            except OSError:
                continue
            if size > best_size and os.path.isfile(full) and not os.path.islink(full):
                best, best_size = full, size
    return best, best_size


def choose_compression(path, preferred):
    """The compression for sending the bundle ``path``, and why.

    ``auto`` samples the bundle's largest file (for a checkpoint: the memory pages) at a few offsets:
    data that does not shrink (random bytes, already compressed data) is sent as it is, where
    compressing would only cost CPU time inside the freeze; otherwise the best available compressor.
    Any other value is taken as it is (falling back to what exists on this host).
    Returns (name, details dict).
    """
    if preferred and preferred != 'auto':
        name = available_compression(preferred)
        return name, {'requested': preferred, 'used': name}
    largest, size = _largest_file(path)
    samples = []
    if largest and size >= PROBE_CHUNK:   # below that, compressing or not makes no difference
        with open(largest, 'rb') as handle:
            for i in range(PROBE_CHUNKS):
                handle.seek(max(0, (size - PROBE_CHUNK) * i // max(1, PROBE_CHUNKS - 1)))
                samples.append(handle.read(PROBE_CHUNK))
    worthwhile, ratio = compression_worthwhile(samples)
    name = available_compression('auto') if worthwhile else 'none'
    return name, {'requested': 'auto', 'used': name, 'probe_ratio': ratio,
                  'probe_file': os.path.relpath(largest, path) if largest else None}


def _pipeline(first_cmd, second_cmd, stdin=None, stdout=None):
    """Start ``first | second`` (second may be None); returns the list of Popen objects."""
    procs = []
    p1 = subprocess.Popen(first_cmd, stdin=stdin, stdout=subprocess.PIPE if second_cmd or stdout is None else stdout,
                          stderr=subprocess.PIPE)
    procs.append(p1)
    if second_cmd:
        p2 = subprocess.Popen(second_cmd, stdin=p1.stdout, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE)
        p1.stdout.close()
        procs.append(p2)
    return procs


def _finish(procs, what):
    errors = []
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        err = p.stderr.read().decode('utf-8', 'replace').strip() if p.stderr else ''
        if p.returncode != 0:
            errors.append('%s exited %s%s' % (p.args[0], p.returncode, (': ' + err[-300:]) if err else ''))
    if errors:
        raise TransferError('%s failed: %s' % (what, '; '.join(errors)))


def _feed_names(path, sink, late):
    """Write the bundle's entries (NUL-terminated, directories first) to tar's ``-T -`` list; the
    ``late`` file (relative name, wait callable) goes last, once ``wait()`` returned."""
    late_name = late[0] if late else None
    try:
        for root, dirs, names in os.walk(path):
            dirs.sort()
            rel_root = os.path.relpath(root, path)
            prefix = './' if rel_root == '.' else './' + rel_root + '/'
            sink.write((prefix.rstrip('/') or '.').encode('utf-8') + b'\0')
            for name in sorted(names):
                if rel_root == '.' and name == late_name:
                    continue
                sink.write((prefix + name).encode('utf-8') + b'\0')
        if late:
            late[1]()
            sink.write(('./' + late_name).encode('utf-8') + b'\0')
    finally:
        sink.close()


class Channel:
    """An authenticated connection to a receiver, opened before there is anything to send."""

    def __init__(self, sock, key, nonce, connect_seconds):
        self.sock = sock
        self.key = key
        self.nonce = nonce
        self.connect_seconds = connect_seconds

    def close(self):
        self.sock.close()


def connect(address, port, token, connect_timeout=60.0, io_timeout=300.0):
    """Connect to a receiver and prove the token; returns a Channel. Raises TransferError.

    Opening the channel first tells whether the receiver is there (and takes this sender) before the
    caller does anything it would have to undo, such as freezing a container.
    """
    key = token.encode('utf-8')
    deadline = time.time() + connect_timeout
    sock = None
    last_error = None
    t0 = time.time()
    while time.time() < deadline:
        try:
            sock = socket.create_connection((address, port), timeout=min(5.0, connect_timeout))
            break
        except OSError as exc:
            last_error = exc
            time.sleep(0.05)
    if sock is None:
        raise TransferError('no receiver answered on %s:%s within %s s (%s)' % (address, port, connect_timeout, last_error))
    sock.settimeout(io_timeout)
    _no_delay(sock)
    try:
        hello = _recv_exact(sock, len(MAGIC) + NONCE_SIZE)
        if not hello.startswith(MAGIC):
            raise TransferError('the peer on %s:%s is not a checkpoint_transfer receiver' % (address, port))
        nonce = hello[len(MAGIC):]
        sock.sendall(hmac.new(key, nonce, hashlib.sha256).digest())
        auth = _recv_json(sock)
        if not auth.get('ok'):
            raise TransferError('the receiver rejected the transfer: %s' % auth.get('error'))
    except (OSError, socket.timeout) as exc:
        sock.close()
        raise TransferError('the receiver on %s:%s broke off the handshake: %s' % (address, port, exc))
    except TransferError:
        sock.close()
        raise
    return Channel(sock, key, nonce, round(time.time() - t0, 4))


def send(path, address, port, token, compression='zstd', connect_timeout=60.0, io_timeout=300.0, late=None,
         channel=None):
    """Stream the bundle directory ``path`` to a receiver. Returns stats; raises TransferError.

    ``late`` is an optional ``(name, wait)`` pair: a file at the top of the bundle that is still being
    written (the manifest, hashed while the rest streams). It is sent last, after ``wait()`` returned;
    an exception from ``wait()`` aborts the transfer (the receiver then discards everything).
    ``channel`` is a Channel from connect() (it is closed here); without one, send() connects itself.
    """
    if not os.path.isdir(path):
        if channel is not None:
            channel.close()
        raise TransferError('the bundle %s does not exist' % path)
    if channel is None:
        channel = connect(address, port, token, connect_timeout, io_timeout)
    sock, key, nonce, t_connect = channel.sock, channel.key, channel.nonce, channel.connect_seconds
    sock.settimeout(io_timeout)
    procs = []
    try:
        raw_bytes = 0
        files = 1 if late else 0
        for root, _dummy, names in os.walk(path):
            for name in names:
                if late and root == path and name == late[0]:
                    continue
                files += 1
                raw_bytes += os.path.getsize(os.path.join(root, name))
        # (the late file's size is not known yet: it is added to the returned bytes_raw only)
        _send_json(sock, {'compression': compression, 'bytes': raw_bytes, 'files': files})
        mac = hmac.new(key, nonce, hashlib.sha256)
        tar_cmd = ['tar', '--numeric-owner', '-C', path, '--no-recursion', '--null', '-T', '-', '-cf', '-']
        procs = _pipeline(tar_cmd, COMPRESSORS[compression][0], stdin=subprocess.PIPE)
        feeder_error = []

        def feed():
            try:
                _feed_names(path, procs[0].stdin, late)
            except BaseException as exc:  # pylint: disable=broad-except
                feeder_error.append(exc)
                for proc in procs:
                    proc.kill()

        feeder = threading.Thread(target=feed)
        feeder.daemon = True
        feeder.start()
        out = procs[-1].stdout
        sent = 0
        t1 = time.time()
        while True:
            chunk = out.read(FRAME)
            if not chunk:
                break
            mac.update(chunk)
            sock.sendall(struct.pack('>I', len(chunk)) + chunk)
            sent += len(chunk)
        feeder.join()
        if feeder_error:
            raise TransferError('the bundle could not be completed: %s' % feeder_error[0])
        _finish(procs, 'packing the bundle')
        if late:
            raw_bytes += os.path.getsize(os.path.join(path, late[0]))
        sock.sendall(struct.pack('>I', 0) + mac.digest())
        verdict = _recv_json(sock)
        elapsed = time.time() - t1
    except (OSError, socket.timeout) as exc:
        for p in procs:
            p.kill()
        raise TransferError('the transfer to %s:%s broke off: %s' % (address, port, exc))
    finally:
        sock.close()
    if not verdict.get('ok'):
        raise TransferError('the receiver rejected the transfer: %s' % verdict.get('error'))
    return {
        'bytes_raw': raw_bytes,
        'bytes_sent': sent,
        'files': files,
        'compression': compression,
        'ratio': round(raw_bytes / float(sent), 3) if sent else None,
        'seconds': round(elapsed, 4),
        'connect_seconds': round(t_connect, 4),
        'throughput_mb_s': round(raw_bytes / 1048576.0 / elapsed, 1) if elapsed > 0 else None,
        'receiver': verdict,
    }


def _stop(procs):
    """Kill and reap a pipeline, so that nothing writes into the staging directory any more."""
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def _receive_one(conn, key, dest):
    """Serve one authenticated sender on ``conn``; returns stats or raises TransferError.

    PermissionError: the peer did not authenticate (wrong token, or it left before proving it).
    """
    nonce = os.urandom(NONCE_SIZE)
    try:
        conn.sendall(MAGIC + nonce)
        answer = _recv_exact(conn, 32)
    except (TransferError, OSError) as exc:
        # a port probe or a stray client: not the sender this receiver waits for
        raise PermissionError('the peer left before it authenticated: %s' % exc)
    if not hmac.compare_digest(answer, hmac.new(key, nonce, hashlib.sha256).digest()):
        try:
            _send_json(conn, {'ok': False, 'error': 'the sender did not prove the transfer token '
                                                    '(is the token the same on both hosts?)'})
        except OSError:
            pass
        raise PermissionError('the sender did not prove the transfer token')
    _send_json(conn, {'ok': True})
    header = _recv_json(conn)
    compression = header.get('compression')
    if compression not in COMPRESSORS:
        raise TransferError('unknown compression %r' % compression)
    staging = dest + '.part'
    for old in (dest, staging):
        if os.path.lexists(old):
            shutil.rmtree(old)
    os.makedirs(staging, mode=0o700)
    os.chmod(staging, 0o700)
    decompress = COMPRESSORS[compression][1]
    tar_cmd = ['tar', '--numeric-owner', '-p', '-C', staging, '-xf', '-']
    if decompress:
        procs = _pipeline(decompress, tar_cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    else:
        procs = _pipeline(tar_cmd, None, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    sink = procs[0].stdin
    mac = hmac.new(key, nonce, hashlib.sha256)
    received = 0
    t0 = time.time()
    broken = None
    try:
        while True:
            (size,) = struct.unpack('>I', _recv_exact(conn, 4))
            if size == 0:
                break
            if size > 16 * FRAME:
                raise TransferError('a data frame of %d bytes is too large' % size)
            chunk = _recv_exact(conn, size)
            mac.update(chunk)
            received += size
            if broken is None:
                try:
                    sink.write(chunk)
                except BrokenPipeError as exc:
                    # keep reading: the integrity check below tells corruption from a local failure
                    broken = exc
        trailer = _recv_exact(conn, 32)
    except BaseException:
        # a cut or stalled stream: tar must be gone before the caller removes the staging directory
        _stop(procs)
        raise
    finally:
        try:
            sink.close()
        except OSError:
            pass
    if not hmac.compare_digest(trailer, mac.digest()):
        _stop(procs)
        raise TransferError('the data failed its integrity check (HMAC-SHA256 over the stream): it was '
                            'corrupted or altered in transit')
    _finish(procs, 'unpacking the bundle')
    if broken is not None:
        raise TransferError('unpacking stopped early: %s' % broken)
    stats = {'bytes_received': received, 'seconds': round(time.time() - t0, 4), 'compression': compression,
             'bytes_raw': header.get('bytes'), 'files': header.get('files')}
    write_stamp(staging, dict(stats, integrity='hmac-sha256', received_at=round(time.time(), 4)))
    # the bundle appears at ``dest`` complete or not at all
    os.rename(staging, dest)
    return stats


def write_stamp(bundle, stamp):
    """Record in ``bundle`` that it arrived through a stream that passed its integrity check.

    Whatever the stream itself put at that name (a file, a directory, a symbolic link) is removed first,
    and the stamp is created with O_EXCL|O_NOFOLLOW: only the receiver writes it.
    """
    path = os.path.join(bundle, STAMP)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
    with os.fdopen(fd, 'w') as handle:
        json.dump(stamp, handle, sort_keys=True)


def read_stamp(bundle):
    """The receiver's stamp of ``bundle`` (see write_stamp), or None."""
    path = os.path.join(bundle, STAMP)
    if os.path.islink(path) or not os.path.isfile(path):
        return None
    try:
        with open(path) as handle:
            stamp = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get('integrity') == 'hmac-sha256' else None


def probe_listen(address, port):
    """Raise TransferError when address:port cannot be listened on (check mode of the receivers)."""
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((address, port))
    except OSError as exc:
        raise TransferError('cannot listen on %s:%s: %s' % (address, port, exc))
    finally:
        probe.close()


def receive(dest, address, port, token, timeout=300.0, auth_failures=5, cancelled=None):
    """Listen on address:port until one sender delivered a bundle into ``dest`` (or the deadline).

    Returns stats; raises TransferError. ``dest`` is removed when the transfer fails. ``cancelled`` is an
    optional callable, asked about 5 times a second while no sender is connected: a true answer (the
    reason) ends the wait with a TransferError.
    """
    key = token.encode('utf-8')
    deadline = time.time() + timeout
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind((address, port))
    except OSError as exc:
        server.close()
        raise TransferError('cannot listen on %s:%s: %s' % (address, port, exc))
    server.listen(4)
    t_listen = time.time()
    failures = 0
    try:
        while True:
            reason = cancelled() if cancelled else None
            if reason:
                raise TransferError('the wait for the checkpoint was called off: %s' % reason)
            left = deadline - time.time()
            if left <= 0:
                raise TransferError('no sender delivered a bundle within %s s' % timeout)
            server.settimeout(min(left, 0.2) if cancelled else left)
            try:
                conn, peer = server.accept()
            except socket.timeout:
                continue
            conn.settimeout(max(1.0, deadline - time.time()))
            _no_delay(conn)
            try:
                stats = _receive_one(conn, key, dest)
            except PermissionError:
                failures += 1
                conn.close()
                if failures >= auth_failures:
                    raise TransferError('%d connections failed authentication; giving up' % failures)
                continue
            except (TransferError, OSError, ValueError, struct.error) as exc:
                error = str(exc) or exc.__class__.__name__
                for partial in (dest, dest + '.part'):
                    if os.path.lexists(partial):
                        shutil.rmtree(partial, ignore_errors=True)
                try:
                    _send_json(conn, {'ok': False, 'error': error})
                except OSError:
                    pass
                conn.close()
                raise TransferError('receiving from %s failed: %s' % (peer[0], error))
            stats['peer'] = peer[0]
            stats['waited_seconds'] = round(time.time() - t_listen - stats['seconds'], 4)
            try:
                _send_json(conn, dict(stats, ok=True))
            except OSError:
                pass
            conn.close()
            return stats
    finally:
        server.close()


def start_background(target, *args):
    """Run ``target(*args)`` in a daemon thread (used by tests)."""
    holder = {}

    def runner():
        try:
            holder['result'] = target(*args)
        except Exception as exc:  # pylint: disable=broad-except
            holder['error'] = exc

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    return thread, holder
