# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host-to-host transfer of a checkpoint bundle over one TCP connection.

Private module_utils file: its API may change without notice. Python 3.8+, standard library plus the
``gzip``/``zstd`` binaries of the hosts (when the stream is compressed).

Protocol (version 3; the channel is ``_channel``). The sender connects to the receiver, then::

    TLS 1.3 handshake, a certificate on both sides, each the one the other side pinned
                         (not with encryption none, which both ends must have asked for explicitly)
    receiver -> sender   MAGIC + mode (T = TLS, P = none) + 32-byte nonce Nr
    sender -> receiver   nonce Ns + HMAC(token, label "sender" | mode | Nr | Ns)
    receiver -> sender   "Y" + HMAC(token, label "receiver" | mode | Nr | Ns)     (or "N": wrong token)

Both sides have proved themselves before the sender does anything it would have to undo (the freeze).
Then records ``type | sequence number | length | payload [| tag]``, each checked before its payload is
used (with TLS by TLS itself; without it by an HMAC-SHA256 tag under a key derived from the token and
both nonces, label "session")::

    sender -> receiver   header record: JSON {compression, bytes, files} (an object with exactly these)
    sender -> receiver   data records (at most 1 MiB each), then an end record with the byte count
    receiver -> sender   verdict record: JSON {ok, error, bytes_received, ...}

The data is a tar stream of the bundle, compressed with ``zstd -1`` or ``gzip -1`` (or not at all).
With TLS it is encrypted; with encryption none it is authenticated only, and the results say so.
The receiver serves each handshake in a thread of its own, for at most ``auth_timeout`` seconds; the
first sender that authenticates is served, peers that do not are counted and ignored.

A bundle that arrived intact is stamped *beside* it (``<bundle>.received``, 0600, owned by the
receiver, bound to the bundle directory and to its manifest's sha256): nothing inside the bundle can
stand for the stamp.

The modules that send or receive (``checkpoint`` with ``send``, ``restore`` with ``receive``,
``checkpoint_transfer``) describe an end of the stream with ``transfer_spec()`` (one option table,
documented once in the ``mtd.containers.transfer`` doc fragment) and check it with
``check_transfer_options()``. The tar stream is written by ``_tarstream.BundleReader`` straight into
the record buffer (no ``tar`` process: one read of each file, hashed on the way for the manifest when
the caller asks), and unpacked by ``_archive.StreamExtractor``; the compressors run through
``_cmd.CmdRunner``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import stat
import struct
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.mtd.containers.plugins.module_utils._archive import StreamExtractor
from ansible_collections.mtd.containers.plugins.module_utils._channel import (
    DATA,
    END,
    HEADER,
    RECORD,
    VERDICT,
    Listener,
    Pinned,
    Session,
    TransferError,
    client_handshake,
    drain,
    tls_failure,
)
# re-exported: the modules and tests use the channel's names through this module
from ansible_collections.mtd.containers.plugins.module_utils._channel import (  # noqa: F401 pylint: disable=unused-import
    MAGIC,
    ensure_identity,
    load_identity,
)
from ansible_collections.mtd.containers.plugins.module_utils._cmd import CmdRunner
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._files import atomic_write, make_private_dir, remove_tree
from ansible_collections.mtd.containers.plugins.module_utils._tarstream import BundleReader, StreamReadError, hash_work

FRAME = 1024 * 1024
STAMP_SUFFIX = '.received'   # beside a bundle that arrived intact, written by the receiver
COMPRESSORS = {
    'zstd': (['zstd', '-1', '-q', '-T0', '-c'], ['zstd', '-d', '-q', '-c']),
    'gzip': (['gzip', '-1', '-c'], ['gzip', '-d', '-c']),
    'none': (None, None),
}


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
    'encryption': dict(type='str', default='tls', choices=['tls', 'none']),
    'peer_cert': dict(type='str'),
    'auth_timeout': dict(type='int', default=5),
}
COMMON = ('encryption', 'peer_cert', 'auth_timeout')
SENDER = ('address', 'port', 'token', 'compression', 'connect_timeout') + COMMON   # checkpoint's send
RECEIVER = ('address', 'port', 'token', 'timeout') + COMMON                           # restore's receive
MIN_TOKEN = 16
MAX_BUNDLE_BYTES = 1 << 44       # 16 TiB: a header that announces more is not a bundle
MAX_BUNDLE_FILES = 10 ** 7
PLAINTEXT_WARNING = ('The bundle (process memory, secrets included) travels unencrypted (encryption none): it is '
                     'authenticated with the token, but anyone on the network between the hosts can read it. '
                     'Use encryption tls unless that network is trusted.')


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
    limits = [name for name in ('timeout', 'connect_timeout', 'auth_timeout') if name in opts]
    if any(opts[name] <= 0 for name in limits):
        raise TransferError('%s must be positive.' % ' and '.join(prefix + name for name in limits))
    if opts.get('encryption', 'tls') == 'tls':
        if not opts.get('peer_cert') or '-----BEGIN CERTIFICATE-----' not in opts['peer_cert']:
            raise TransferError('%speer_cert (the other end\'s certificate, PEM) is required with encryption tls; '
                                'set encryption none only on a trusted network.' % prefix)


def _no_delay(sock):
    """Send small writes (the last frame, the trailer, the verdict) at once: with Nagle's algorithm a
    small segment waits for the ACK of the previous one, which the peer may delay by 40 ms."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass   # not TCP (a test's socket pair)


def _send_json(session, kind, obj):
    session.send(kind, json.dumps(obj, sort_keys=True).encode('utf-8'))


def _recv_json(session, kind, what, limit=1024 * 1024):
    """A JSON object in a record of ``kind``; TransferError for anything else."""
    dummy, payload = session.recv((kind,), limit)
    try:
        obj = json.loads(payload.decode('utf-8'))
    except ValueError:
        raise TransferError('the %s is not valid JSON' % what)
    if not isinstance(obj, dict):
        raise TransferError('the %s is not a JSON object' % what)
    return obj


def available_compression(preferred: Optional[str]) -> str:
    """``preferred`` if its binary exists here, else the best one that does."""
    order = [preferred] if preferred and preferred != 'auto' else []
    order += ['zstd', 'gzip', 'none']
    for name in order:
        cmd = COMPRESSORS[name][0]
        if cmd is None or shutil.which(cmd[0]):
            return name
    return 'none'


# 16 samples of 64 KiB spread over the file (1 MiB deflated at level 1, a few ms): a process's memory is
# mostly one kind of data with small islands of another (the program's own pages at both ends of a
# random heap); 4 samples of 256 KiB, two of them at the ends, let those islands decide for the file.
PROBE_CHUNK = 64 * 1024
PROBE_CHUNKS = 16
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


def probe_offsets(size: int, chunks: int = PROBE_CHUNKS, chunk: int = PROBE_CHUNK) -> List[int]:
    """Where to sample a file of ``size`` bytes: the middle of each of ``chunks`` equal slices.

    Pure function. Not the two ends: a dump's pages file begins and ends with the few compressible
    pages of the program itself (its data, its stack), whatever its heap holds.
    """
    return [min(max(0, size * (2 * i + 1) // (2 * chunks) - chunk // 2), max(0, size - chunk)) for i in range(chunks)]


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
            for offset in probe_offsets(size):
                handle.seek(offset)
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


class Channel:
    """An authenticated connection to a receiver, opened before there is anything to send."""

    def __init__(self, session: Session, connect_seconds: float) -> None:
        self.session = session
        self.connect_seconds = connect_seconds

    @property
    def encryption(self) -> str:
        return self.session.encryption

    def close(self) -> None:
        self.session.close()


def _tcp_connect(address, port, connect_timeout):
    """A TCP connection to address:port, retried until ``connect_timeout`` while nothing listens."""
    deadline = time.time() + connect_timeout
    last_error = None
    while time.time() < deadline:
        try:
            return socket.create_connection((address, port), timeout=min(5.0, connect_timeout))
        except OSError as exc:
            last_error = exc
            time.sleep(0.05)
    raise TransferError('no receiver answered on %s:%s within %s s (%s)' % (address, port, connect_timeout, last_error))


def connect(address: str, port: int, token: str, connect_timeout: float = 60.0, io_timeout: float = 300.0, *,
            tls: Optional[Pinned], auth_timeout: float = 5.0) -> Channel:
    """Connect to a receiver; both prove themselves (see the protocol). Returns a Channel; raises TransferError.

    ``tls`` is this end's Pinned identity, or None for plaintext (encryption none). Opening the channel
    first tells whether the real receiver is there (and takes this sender) before the caller does
    anything it would have to undo, such as freezing a container. A peer that answers but does not
    authenticate within ``auth_timeout`` fails the connect at once.
    """
    t0 = time.time()
    sock = _tcp_connect(address, port, connect_timeout)
    where = '%s:%s' % (address, port)
    _no_delay(sock)
    sock.settimeout(auth_timeout)
    try:
        session = client_handshake(sock, token, tls, where)
    except socket.timeout:
        sock.close()
        raise TransferError('the peer on %s did not complete the handshake within %s s: it is not this migration\'s '
                            'receiver' % (where, auth_timeout))
    except (OSError, TransferError) as exc:
        sock.close()
        if isinstance(exc, TransferError) and not str(exc).startswith('the connection was closed'):
            raise
        raise TransferError('the peer on %s broke off the handshake: %s' % (where, exc))
    session.sock.settimeout(io_timeout)
    return Channel(session, round(time.time() - t0, 4))


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


class _CompressedSource:
    """``BundleReader | compressor``: a thread feeds the compressor the tar stream (hashing as it goes);
    the records are read from the compressor's output."""

    def __init__(self, reader, compression):
        self.reader = reader
        self.proc = _popen(COMPRESSORS[compression][0], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        self._errors = []
        self._feeder = threading.Thread(target=self._feed)
        self._feeder.daemon = True
        self._feeder.start()

    def _feed(self):
        view = memoryview(bytearray(FRAME))
        try:
            while True:
                got = self.reader.readinto(view)
                if not got:
                    break
                hash_work(self.reader.take_work())
                self.proc.stdin.write(view[:got])
        except BaseException as exc:  # pylint: disable=broad-except
            self._errors.append(exc)
            self.proc.kill()
        finally:
            self.reader.close()
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def readinto(self, view):
        return self.proc.stdout.readinto(view)

    @staticmethod
    def take_work():
        return []   # the feeder hashes

    def kill(self):
        self.proc.kill()

    def finish(self):
        """Wait for the feeder and the compressor; TransferError when either failed."""
        self._feeder.join()
        if self._errors:
            raise TransferError('the bundle could not be completed: %s' % self._errors[0])
        _finish([self.proc], 'compressing the bundle')


class _DirectSource:
    """compression none: the records are filled straight from the bundle's files."""

    def __init__(self, reader):
        self.reader = reader
        self.readinto = reader.readinto
        self.take_work = reader.take_work

    def kill(self):
        self.reader.close()

    def finish(self):
        self.reader.close()


def _source(path, compression, late, hashes, digest=True):
    reader = BundleReader(path, late, hashes, digest)
    if COMPRESSORS[compression][0] is None:
        return _DirectSource(reader)
    return _CompressedSource(reader, compression)


def _stream_frames(session, source):
    """Send ``source`` as data records; returns the bytes sent. The record buffer is filled in place and
    sent without a copy; the sha256 of the bytes just read runs in a second thread while they are sent
    (hashlib and ssl both release the GIL), and ends before the buffer is filled again."""
    buf = memoryview(bytearray(RECORD.size + FRAME))
    payload = buf[RECORD.size:]
    sent = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        while True:
            got = source.readinto(payload)
            if not got:
                return sent
            work = source.take_work()
            job = pool.submit(hash_work, work) if work else None
            try:
                session.send_view(DATA, buf, got)
            finally:
                if job is not None:
                    job.result()
            sent += got


def _late_verdict(session):
    """The receiver's verdict after a write failed: it may have said why before it stopped reading."""
    try:
        session.sock.settimeout(5)
        return _recv_json(session, VERDICT, 'verdict')
    except ssl.SSLError as exc:
        return {'ok': False, 'error': tls_failure(exc)}
    except (OSError, TransferError, ValueError, struct.error):
        return None


def _send_stream(session, path, compression, late, hashes, digest=True):
    """Header, data, end, verdict over ``session``; returns (verdict, bytes_raw, files, sent, seconds)."""
    packer = None
    try:
        raw_bytes, files = _bundle_size(path, late)
        _send_json(session, HEADER, {'compression': compression, 'bytes': raw_bytes, 'files': files})
        packer = _source(path, compression, late, hashes, digest)
        started = time.time()
        sent = _stream_frames(session, packer)
        packer.finish()
        if late:
            raw_bytes += os.path.getsize(os.path.join(path, late[0]))
        session.send(END, struct.pack('>Q', sent))
        verdict = _recv_json(session, VERDICT, 'verdict')
        return verdict, raw_bytes, files, sent, time.time() - started
    except StreamReadError as exc:
        if packer is not None:
            packer.kill()
        raise TransferError('the bundle could not be completed: %s' % exc)
    except ssl.SSLError as exc:
        if packer is not None:
            packer.kill()
        raise TransferError('the transfer broke off: %s' % tls_failure(exc))
    except OSError as exc:
        if packer is not None:
            packer.kill()
        verdict = _late_verdict(session)
        if verdict and verdict.get('error'):
            raise TransferError('the receiver rejected the transfer: %s' % verdict['error'])
        raise TransferError('the transfer broke off: %s' % exc)


def send(path: str, address: str, port: int, token: str, compression: str = 'zstd', connect_timeout: float = 60.0,
         io_timeout: float = 300.0, late: Optional[Tuple[str, Callable[[], Any]]] = None,
         channel: Optional['Channel'] = None, tls: Any = False, auth_timeout: float = 5.0,
         hashes: Optional[Dict[str, Tuple[int, Optional[str]]]] = None, digest: bool = True) -> Dict[str, Any]:
    """Stream the bundle directory ``path`` to a receiver. Returns stats; raises TransferError.

    ``late`` is an optional ``(name, wait)`` pair: a file at the top of the bundle that is still being
    written (the manifest, hashed while the rest streams). It is sent last, after ``wait()`` returned;
    an exception from ``wait()`` aborts the transfer (the receiver then discards everything).
    ``channel`` is a Channel from connect() (it is closed here); without one, send() connects itself
    with ``tls`` (a Pinned identity, or None for plaintext: it must be given). With ``hashes`` (a
    dict) every file sent is recorded as ``hashes[relative path] = (size, hex digest)``, the sha256 taken
    from the bytes as they are sent (``_tarstream``); with ``digest=False`` nothing is hashed and the
    digest is None (the stream's own integrity check, TLS or HMAC-SHA256, vouches for the bytes).
    ``late``'s ``wait()`` may use them.
    """
    if not os.path.isdir(path):
        if channel is not None:
            channel.close()
        raise TransferError('the bundle %s does not exist' % path)
    if channel is None:
        if tls is False:
            raise TransferError('send() needs tls: a Pinned identity, or None for plaintext')
        channel = connect(address, port, token, connect_timeout, io_timeout, tls=tls, auth_timeout=auth_timeout)
    session = channel.session
    session.sock.settimeout(io_timeout)
    try:
        verdict, raw_bytes, files, sent, elapsed = _send_stream(session, path, compression, late, hashes, digest)
    finally:
        session.close()
    if not verdict.get('ok'):
        raise TransferError('the receiver rejected the transfer: %s' % verdict.get('error'))
    return {
        'bytes_raw': raw_bytes,
        'bytes_sent': sent,
        'files': files,
        'compression': compression,
        'encryption': session.encryption,
        'tls': session.info.get('tls'),
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


def check_header(header: Mapping[str, Any]) -> Mapping[str, Any]:
    """The sender's header: exactly compression (a known one), bytes and files (whole numbers in range)."""
    fields = ('bytes', 'compression', 'files')
    unknown = sorted(set(header) - set(fields))
    missing = sorted(set(fields) - set(header))
    if unknown or missing:
        raise TransferError('the header is not a bundle header (%s)' % '; '.join(
            x for x in ('unknown fields: ' + ', '.join(unknown) if unknown else '',
                        'missing fields: ' + ', '.join(missing) if missing else '') if x))
    if header['compression'] not in COMPRESSORS:
        raise TransferError('unknown compression %r' % (header['compression'],))
    for name, top in (('bytes', MAX_BUNDLE_BYTES), ('files', MAX_BUNDLE_FILES)):
        value = header[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise TransferError('the header announces %r %s; a whole number from 0 to %d was expected' % (value, name, top))
    return header


def _receive_frames(session, sink):
    """The data records into ``sink`` up to the end record, each checked before it is written; returns
    (bytes, the BrokenPipeError that stopped the writes or None)."""
    received = 0
    broken = None
    buf = bytearray(4 * FRAME)   # one buffer for every record: no allocation per record
    while True:
        kind, payload = session.recv_view((DATA, END), buf)
        if kind == END:
            if len(payload) != 8 or struct.unpack('>Q', payload)[0] != received:
                raise TransferError('the stream ended after %d bytes, not where the sender said it would end: it was '
                                    'corrupted or altered in transit (integrity check failed)' % received)
            return received, broken
        received += len(payload)
        if broken is None:
            try:
                sink.write(payload)
            except BrokenPipeError as exc:
                # keep reading: the records' checks tell corruption from a local failure
                broken = exc


def _receive_one(session, dest):
    """Receive one bundle from an authenticated sender into ``dest``; returns stats or raises TransferError."""
    header = check_header(_recv_json(session, HEADER, 'header', limit=64 * 1024))
    compression = header['compression']
    staging = dest + '.part'
    for old in (dest, staging, dest + STAMP_SUFFIX):
        remove_tree(old)
        if os.path.lexists(old):
            raise TransferError('%s could not be removed to make room for the bundle' % old)
    procs = _unpacker(compression, staging)
    sink = procs[0].stdin
    t0 = time.time()
    try:
        received, broken = _receive_frames(session, sink)
    except BaseException:
        # a cut, altered or stalled stream: tar must be gone before the caller removes the staging directory
        _stop(procs)
        raise
    finally:
        try:
            sink.close()
        except OSError:
            pass
    _finish(procs, 'unpacking the bundle')
    if broken is not None:
        raise TransferError('unpacking stopped early: %s' % broken)
    stats = {'bytes_received': received, 'seconds': round(time.time() - t0, 4), 'compression': compression,
             'bytes_raw': header['bytes'], 'files': header['files'], 'encryption': session.encryption,
             'tls': session.info.get('tls')}
    integrity = 'tls' if session.encryption == 'tls' else 'hmac-sha256'
    write_stamp(dest, staging, dict(stats, integrity=integrity, received_at=round(time.time(), 4)))
    # the bundle appears at ``dest`` complete or not at all
    os.rename(staging, dest)
    return stats


def _manifest_sha256(bundle):
    path = os.path.join(bundle, 'manifest.json')
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
    except OSError:
        return None
    with os.fdopen(fd, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def write_stamp(bundle: str, staging: str, stamp: Mapping[str, Any]) -> None:
    """Record beside ``bundle`` (``<bundle>.received``) that the directory ``staging``, renamed to
    ``bundle`` next, arrived through a stream that passed its checks.

    The stamp is bound to that directory (device and inode: the rename keeps them) and to the sha256 of
    its manifest.json; it is created 0600 with O_EXCL|O_NOFOLLOW by the receiver. Nothing the stream
    carries can stand for it: it is outside the bundle.
    """
    info = os.lstat(staging)
    record = dict(stamp, bundle_dev=info.st_dev, bundle_ino=info.st_ino, manifest_sha256=_manifest_sha256(staging))
    path = bundle + STAMP_SUFFIX
    remove_tree(path)
    atomic_write(path, json.dumps(record, sort_keys=True), mode=0o600, fsync=False)


def read_stamp(bundle: str) -> Optional[Dict[str, Any]]:
    """The receiver's stamp of ``bundle`` (see write_stamp), or None.

    Only a regular file of this user, not readable by others, that names this very directory and the
    manifest it now holds.
    """
    path = bundle + STAMP_SUFFIX
    try:
        info = os.lstat(path)
        where = os.lstat(bundle)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
        return None
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))) as handle:
            stamp = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get('integrity') not in ('tls', 'hmac-sha256'):
        return None
    if not stat.S_ISDIR(where.st_mode) or (stamp.get('bundle_dev'), stamp.get('bundle_ino')) != (where.st_dev, where.st_ino):
        return None
    sha = _manifest_sha256(bundle)
    if sha is None or stamp.get('manifest_sha256') != sha:
        return None
    return stamp


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


def _refuse(session, exc, deadline):
    """Tell the sender why (unless TLS itself failed: its alert says it), let it finish writing, close."""
    error = tls_failure(exc) if isinstance(exc, ssl.SSLError) else (str(exc) or exc.__class__.__name__)
    if not isinstance(exc, ssl.SSLError):
        try:
            _send_json(session, VERDICT, {'ok': False, 'error': error})
        except OSError:
            pass
    drain(session.sock, min(30.0, max(0.0, deadline - time.time())))
    session.close()
    return error


def receive(dest: str, address: str, port: int, token: str, timeout: float = 300.0,
            cancelled: Optional[Callable[[], Optional[str]]] = None, *, tls: Optional[Pinned],
            auth_timeout: float = 5.0) -> Dict[str, Any]:
    """Listen on address:port until one sender delivered a bundle into ``dest`` (or the deadline).

    ``tls`` is this end's Pinned identity, or None for plaintext (encryption none). Each connection
    gets ``auth_timeout`` seconds to authenticate, in a thread of its own: the first sender that does
    is served; the others, and peers that never authenticate, only appear in ``connections``.
    Returns stats; raises TransferError. ``dest`` is removed when the transfer fails. ``cancelled`` is
    an optional callable, asked about 10 times a second while no sender is authenticated: a true
    answer (the reason) ends the wait with a TransferError.
    """
    deadline = time.time() + timeout
    listener = Listener(address, port, token, tls, auth_timeout)
    t_listen = time.time()
    try:
        session, peer = listener.wait(deadline, timeout, cancelled)
    finally:
        listener.close()
    session.sock.settimeout(max(1.0, deadline - time.time()))
    try:
        stats = _receive_one(session, dest)
    except (TransferError, OSError, ValueError, struct.error) as exc:
        for partial in (dest, dest + '.part', dest + STAMP_SUFFIX):
            remove_tree(partial)
        raise TransferError('receiving from %s failed: %s' % (peer, _refuse(session, exc, deadline)))
    stats['peer'] = peer
    stats['waited_seconds'] = round(time.time() - t_listen - stats['seconds'], 4)
    stats['connections'] = dict(listener.counts)
    try:
        _send_json(session, VERDICT, dict(stats, ok=True))
    except OSError:
        pass
    session.close()
    return stats


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
