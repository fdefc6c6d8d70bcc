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

The modules that send or receive (``checkpoint`` with ``send``, ``restore`` with ``receive``,
``checkpoint_transfer``) describe an end of the stream with ``transfer_spec()`` (one option table,
documented once in the ``mtd.containers.transfer`` doc fragment) and check it with
``check_transfer_options()``. The packing and unpacking pipelines (tar, zstd, gzip) run through
``_cmd.CmdRunner``.
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
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from ansible_collections.mtd.containers.plugins.module_utils._archive import StreamExtractor
from ansible_collections.mtd.containers.plugins.module_utils._cmd import CmdRunner
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._files import atomic_write, make_private_dir, remove_tree

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


# ---------------------------------------------------------------------------------------------------
# The options of an end of the stream: one table, documented in doc_fragments/transfer.py

COMPRESSION_CHOICES = ['auto', 'zstd', 'gzip', 'none']
TRANSFER_OPTIONS: Dict[str, Dict[str, Any]] = {
    'address': dict(type='str', required=True),
    'port': dict(type='int', required=True),
    'token': dict(type='str', required=True, no_log=True),
    'compression': dict(type='str', default='auto', choices=COMPRESSION_CHOICES),
    'timeout': dict(type='int', default=600),
    'connect_timeout': dict(type='int', default=60),
}
SENDER = ('address', 'port', 'token', 'compression', 'connect_timeout')   # checkpoint's send
RECEIVER = ('address', 'port', 'token', 'timeout')                           # restore's receive
MIN_TOKEN = 16


def transfer_spec(names: Sequence[str] = tuple(TRANSFER_OPTIONS), **extra: Dict[str, Any]) -> Dict[str, Any]:
    """The argument spec of the transfer options ``names`` (copies of TRANSFER_OPTIONS), plus ``extra``."""
    spec = dict((name, dict(TRANSFER_OPTIONS[name])) for name in names)
    spec.update(extra)
    return spec


def check_transfer_options(opts: Mapping[str, Any], prefix: str = '') -> None:
    """What the argument spec cannot say: a long enough token, a TCP port, positive time limits.

    ``prefix`` names the option that holds them in messages (``'receive.'``). Raises TransferError.
    """
    if len(opts['token']) < MIN_TOKEN:
        raise TransferError('%stoken must be at least %d characters long.' % (prefix, MIN_TOKEN))
    if not 0 < opts['port'] < 65536:
        raise TransferError('%sport must be between 1 and 65535, got %s.' % (prefix, opts['port']))
    limits = [name for name in ('timeout', 'connect_timeout') if name in opts]
    if any(opts[name] <= 0 for name in limits):
        raise TransferError('%s must be positive.' % ' and '.join(prefix + name for name in limits))


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


def available_compression(preferred: Optional[str]) -> str:
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


def compression_worthwhile(samples: Sequence[bytes], level: int = 1) -> Tuple[bool, Optional[float]]:
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


def choose_compression(path: str, preferred: Optional[str]) -> Tuple[str, Dict[str, Any]]:
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


def _popen(cmd, **kwargs):
    try:
        return CmdRunner(cmd[0]).popen(cmd[1:], **kwargs)
    except MtdError as exc:
        raise TransferError(exc.msg)


def _pipeline(first_cmd, second_cmd, stdin=None, stdout=None):
    """Start ``first | second`` (second may be None); returns the list of Popen objects."""
    procs = [_popen(first_cmd, stdin=stdin, stdout=subprocess.PIPE if second_cmd or stdout is None else stdout,
                    stderr=subprocess.PIPE)]
    if second_cmd:
        try:
            procs.append(_popen(second_cmd, stdin=procs[0].stdout, stdout=stdout or subprocess.PIPE,
                                stderr=subprocess.PIPE))
        except TransferError:
            _stop(procs)
            raise
        procs[0].stdout.close()
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
            sink.write(('./' + late[0]).encode('utf-8') + b'\0')
    finally:
        sink.close()


class Channel:
    """An authenticated connection to a receiver, opened before there is anything to send."""

    def __init__(self, sock: socket.socket, key: bytes, nonce: bytes, connect_seconds: float) -> None:
        self.sock = sock
        self.key = key
        self.nonce = nonce
        self.connect_seconds = connect_seconds

    def close(self) -> None:
        self.sock.close()


def connect(address: str, port: int, token: str, connect_timeout: float = 60.0,
            io_timeout: float = 300.0) -> Channel:
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


def _bundle_size(path, late):
    """(bytes, files) of the bundle, the ``late`` file counted but not its size (not known yet)."""
    raw_bytes = 0
    files = 1 if late else 0
    for root, _dummy, names in os.walk(path):
        for name in names:
            if late and root == path and name == late[0]:
                continue
            files += 1
            raw_bytes += os.path.getsize(os.path.join(root, name))
    return raw_bytes, files


class _Packer:
    """``tar -T - | compressor`` over the bundle; a thread feeds tar the names (the late file last)."""

    def __init__(self, path, compression, late):
        tar_cmd = ['tar', '--numeric-owner', '-C', path, '--no-recursion', '--null', '-T', '-', '-cf', '-']
        self.procs = _pipeline(tar_cmd, COMPRESSORS[compression][0], stdin=subprocess.PIPE)
        self.output = self.procs[-1].stdout
        self._errors = []
        self._feeder = threading.Thread(target=self._feed, args=(path, late))
        self._feeder.daemon = True
        self._feeder.start()

    def _feed(self, path, late):
        try:
            _feed_names(path, self.procs[0].stdin, late)
        except BaseException as exc:  # pylint: disable=broad-except
            self._errors.append(exc)
            self.kill()

    def kill(self):
        for proc in self.procs:
            proc.kill()

    def finish(self):
        """Wait for the feeder and the pipeline; TransferError when either failed."""
        self._feeder.join()
        if self._errors:
            raise TransferError('the bundle could not be completed: %s' % self._errors[0])
        _finish(self.procs, 'packing the bundle')


def _stream_frames(sock, source, mac):
    """Send ``source`` as length-prefixed frames, each also fed to ``mac``; returns the bytes sent."""
    sent = 0
    while True:
        chunk = source.read(FRAME)
        if not chunk:
            return sent
        mac.update(chunk)
        sock.sendall(struct.pack('>I', len(chunk)) + chunk)
        sent += len(chunk)


def send(path: str, address: str, port: int, token: str, compression: str = 'zstd', connect_timeout: float = 60.0,
         io_timeout: float = 300.0, late: Optional[Tuple[str, Callable[[], Any]]] = None,
         channel: Optional['Channel'] = None) -> Dict[str, Any]:
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
    sock = channel.sock
    sock.settimeout(io_timeout)
    packer = None
    try:
        raw_bytes, files = _bundle_size(path, late)
        _send_json(sock, {'compression': compression, 'bytes': raw_bytes, 'files': files})
        mac = hmac.new(channel.key, channel.nonce, hashlib.sha256)
        packer = _Packer(path, compression, late)
        started = time.time()
        sent = _stream_frames(sock, packer.output, mac)
        packer.finish()
        if late:
            raw_bytes += os.path.getsize(os.path.join(path, late[0]))
        sock.sendall(struct.pack('>I', 0) + mac.digest())
        verdict = _recv_json(sock)
        elapsed = time.time() - started
    except (OSError, socket.timeout) as exc:
        if packer is not None:
            packer.kill()
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
        'connect_seconds': round(channel.connect_seconds, 4),
        'throughput_mb_s': round(raw_bytes / 1048576.0 / elapsed, 1) if elapsed > 0 else None,
        'receiver': verdict,
    }


def _stop(procs):
    """Kill and reap a pipeline, so that nothing writes into the staging directory any more."""
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def _authenticate(conn, key):
    """Challenge the peer on ``conn``; returns the nonce. PermissionError when it does not prove the token."""
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
    return nonce


def _unpacker(compression, staging):
    """``decompressor | safe unpacking`` into ``staging`` (created empty, 0700); returns the pipeline.

    The unpacking is ``_archive.StreamExtractor`` (tarfile with our member rules), not ``tar -x``: the
    stream comes from a host that may be attacked, and a bundle holds only regular files and directories;
    nothing else, no owner, mode or setuid bit of the archive, reaches this host.
    """
    make_private_dir(staging)
    decompress = COMPRESSORS[compression][1]
    if not decompress:
        return [StreamExtractor(staging)]
    first = _popen(decompress, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return [first, StreamExtractor(staging, source=first.stdout)]


def _receive_frames(conn, sink, mac):
    """Read the data frames into ``sink`` (and ``mac``) up to the 0-length one; returns (bytes, trailer,
    the BrokenPipeError that stopped the writes or None)."""
    received = 0
    broken = None
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
                # keep reading: the integrity check tells corruption from a local failure
                broken = exc
    return received, _recv_exact(conn, 32), broken


def _receive_one(conn, key, dest):
    """Serve one authenticated sender on ``conn``; returns stats or raises TransferError.

    PermissionError: the peer did not authenticate (wrong token, or it left before proving it).
    """
    nonce = _authenticate(conn, key)
    header = _recv_json(conn)
    compression = header.get('compression')
    if compression not in COMPRESSORS:
        raise TransferError('unknown compression %r' % compression)
    staging = dest + '.part'
    for old in (dest, staging):
        remove_tree(old)
        if os.path.lexists(old):
            raise TransferError('%s could not be removed to make room for the bundle' % old)
    procs = _unpacker(compression, staging)
    sink = procs[0].stdin
    mac = hmac.new(key, nonce, hashlib.sha256)
    t0 = time.time()
    try:
        received, trailer, broken = _receive_frames(conn, sink, mac)
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


def write_stamp(bundle: str, stamp: Mapping[str, Any]) -> None:
    """Record in ``bundle`` that it arrived through a stream that passed its integrity check.

    Whatever the stream itself put at that name (a file, a directory, a symbolic link) is removed first,
    and the stamp is created with O_EXCL|O_NOFOLLOW: only the receiver writes it.
    """
    path = os.path.join(bundle, STAMP)
    remove_tree(path)
    atomic_write(path, json.dumps(stamp, sort_keys=True), mode=0o600, fsync=False)


def read_stamp(bundle: str) -> Optional[Dict[str, Any]]:
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


def probe_listen(address: str, port: int) -> None:
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


def receive(dest: str, address: str, port: int, token: str, timeout: float = 300.0, auth_failures: int = 5,
            cancelled: Optional[Callable[[], Optional[str]]] = None) -> Dict[str, Any]:
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
                    remove_tree(partial)
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


def start_background(target: Callable[..., Any], *args: Any) -> Tuple[threading.Thread, Dict[str, Any]]:
    """Run ``target(*args)`` in a daemon thread (used by tests)."""
    holder: Dict[str, Any] = {}

    def runner():
        try:
            holder['result'] = target(*args)
        except Exception as exc:  # pylint: disable=broad-except
            holder['error'] = exc

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    return thread, holder
