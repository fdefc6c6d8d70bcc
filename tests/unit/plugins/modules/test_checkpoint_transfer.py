# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""checkpoint_transfer main(): send and receive over 127.0.0.1, check mode, bad input."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _bundle, _channel, _transfer
from ansible_collections.mtd.containers.plugins.modules import checkpoint_transfer
from ansible_collections.mtd.containers.tests.unit.plugins.modules import migration_fakes as fakes
from ansible_collections.mtd.containers.tests.unit.plugins.modules.module_harness import free_port

TOKEN = 'transfer-unit-token-0123456'


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / 'src' / 'm-1'
    (path / 'criu').mkdir(parents=True)
    (path / 'criu' / 'pages-1.img').write_bytes(os.urandom(300000))
    (path / 'rootfs-diff.tar').write_bytes(b'layer\n' * 5000)
    _bundle.write_manifest(str(path), {'name': 'it-web'})
    return str(path)


def run(fail=False, **args):
    """The module; plaintext unless the test asks for TLS (the TLS tests are below)."""
    args.setdefault('address', '127.0.0.1')
    args.setdefault('token', TOKEN)
    args.setdefault('encryption', 'none')
    return fakes.run_module(checkpoint_transfer, args, fail=fail)


class Listener:
    """Counts the connections made to a port (to prove that check mode connects to nothing)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_send_to_a_receiver(bundle, tmp_path):
    port = free_port()
    dest = str(tmp_path / 'dst' / 'm-1')
    os.makedirs(os.path.dirname(dest))
    thread, holder = _transfer.start_background(lambda: _transfer.receive(dest, '127.0.0.1', port, TOKEN, 20.0, tls=None))
    result = run(mode='send', path=bundle, port=port, compression='gzip')
    thread.join(20)
    assert result['changed'] is True and result['mode'] == 'send' and result['bundle'] == bundle
    assert result['compression'] == 'gzip'
    assert result['bytes_raw'] == holder['result']['bytes_raw']
    assert result['bytes_sent'] == holder['result']['bytes_received'] < result['bytes_raw']
    assert result['receiver']['ok'] is True
    assert _bundle.verify_manifest(dest, _bundle.read_manifest(dest)) > 0
    assert TOKEN not in repr(result)


def test_receive_from_a_sender(bundle, tmp_path):
    port = free_port()
    dest = str(tmp_path / 'dst' / 'm-1')
    os.makedirs(os.path.dirname(dest))
    holder = {}

    def receive():
        try:
            holder['result'] = run(mode='receive', path=dest, port=port, timeout=20)
        except Exception as exc:  # pylint: disable=broad-except
            holder['error'] = exc

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    sent = _transfer.send(bundle, '127.0.0.1', port, TOKEN, compression='none', connect_timeout=10, tls=None)
    thread.join(20)
    result = holder['result']
    assert result['changed'] is True and result['mode'] == 'receive'
    assert result['bytes_received'] == sent['bytes_sent'] and result['compression'] == 'none'
    assert result['peer'] == '127.0.0.1'
    assert _bundle.verify_manifest(dest, _bundle.read_manifest(dest)) > 0


def test_send_without_receiver_fails_within_connect_timeout(bundle):
    port = free_port()
    t0 = time.time()
    result = run(fail=True, mode='send', path=bundle, port=port, connect_timeout=1)
    assert time.time() - t0 < 4
    assert result['msg'].startswith('Sending the checkpoint failed: no receiver answered on 127.0.0.1:%d within 1 s'
                                    % port)
    assert result['changed'] is False


def test_send_with_the_wrong_token(bundle, tmp_path):
    port = free_port()
    thread, holder = _transfer.start_background(
        lambda: _transfer.receive(str(tmp_path / 'm-1'), '127.0.0.1', port, TOKEN, 3.0, tls=None))
    result = run(fail=True, mode='send', path=bundle, port=port, token='another-token-of-20-chars')
    thread.join(20)
    assert result['msg'] == ('Sending the checkpoint failed: the receiver rejected the transfer: the sender did not '
                             'prove the transfer token (is the token the same on both hosts?).')
    # the receiver does not give up on a wrong token: it waits on for the right sender until its deadline
    assert str(holder['error']) == 'no sender delivered a bundle within 3.0 s (1 connection(s) did not authenticate)'


def test_receive_times_out(tmp_path):
    result = run(fail=True, mode='receive', path=str(tmp_path / 'm-1'), port=free_port(), timeout=1)
    assert result['msg'] == 'Receiving the checkpoint failed: no sender delivered a bundle within 1 s.'


@pytest.mark.parametrize('check_mode', [False, True])
def test_receive_into_a_directory_others_can_write_is_refused(tmp_path, check_mode):
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(str(shared), 0o777)
    result = run(fail=True, mode='receive', path=str(shared / 'm-1'), port=free_port(), timeout=1,
                 _ansible_check_mode=check_mode)
    assert result['msg'].startswith('The directory of path (%s) is writable by other users (mode 0777); ' % shared)
    assert os.listdir(str(shared)) == [] and (os.lstat(str(shared)).st_mode & 0o777) == 0o777


def test_check_mode_send_connects_to_nothing(bundle):
    listener = Listener()
    try:
        result = run(mode='send', path=bundle, port=listener.port, _ansible_check_mode=True)
        time.sleep(0.3)
        # the bundle's largest file is random: auto sends it as it is
        assert result['changed'] is True and result['compression'] == 'none'
        assert result['compression_choice']['probe_file'] == 'criu/pages-1.img'
        assert result['compression_choice']['probe_ratio'] > 0.99
        assert listener.accepted == 0
    finally:
        listener.close()


def test_check_mode_receive_only_probes_the_port(tmp_path):
    dest = str(tmp_path / 'm-1')
    result = run(mode='receive', path=dest, port=free_port(), _ansible_check_mode=True)
    assert result['changed'] is True and not os.path.exists(dest)
    busy = Listener()
    try:
        result = run(fail=True, mode='receive', path=dest, port=busy.port, _ansible_check_mode=True)
        assert result['msg'].startswith('Cannot listen on 127.0.0.1:%d: ' % busy.port)
        assert 'in use' in result['msg']
    finally:
        busy.close()


def test_send_of_something_that_is_not_a_bundle(tmp_path):
    result = run(fail=True, mode='send', path=str(tmp_path), port=4700)
    assert result['msg'] == '%s is not a checkpoint bundle (no manifest.json).' % tmp_path
    result = run(fail=True, mode='send', path=str(tmp_path / 'nope'), port=4700, _ansible_check_mode=True)
    assert result['msg'] == '%s/nope is not a checkpoint bundle (no manifest.json).' % tmp_path


@pytest.mark.parametrize('extra, message', [
    ({'token': 'short'}, 'token must be at least 16 characters long.'),
    ({'port': 0}, 'port must be between 1 and 65535, got 0.'),
    ({'port': 70000}, 'port must be between 1 and 65535, got 70000.'),
    ({'timeout': 0}, 'timeout and connect_timeout and auth_timeout must be positive.'),
    ({'connect_timeout': -1}, 'timeout and connect_timeout and auth_timeout must be positive.'),
])
def test_bad_input(bundle, extra, message):
    args = dict(mode='send', path=bundle, port=4700)
    args.update(extra)
    assert run(fail=True, **args)['msg'] == message


def test_compression_whose_binary_is_missing(bundle, monkeypatch):
    monkeypatch.setattr(_transfer.shutil, 'which', lambda name: None if name == 'zstd' else '/usr/bin/' + name)
    result = run(fail=True, mode='send', path=bundle, port=4700, compression='zstd')
    assert result['msg'] == 'Compression zstd was asked for but its binary is not installed on this host.'
    with open(os.path.join(bundle, 'criu', 'pages-1.img'), 'wb') as handle:   # compressible memory
        handle.write(b'\x00' * 400000)
    result = run(mode='send', path=bundle, port=4700, compression='auto', _ansible_check_mode=True)
    assert result['compression'] == 'gzip'


# ---------------------------------------------------------------------------------------------------
# TLS (the default): mode=identity on each end, each pins the other's certificate

def test_identity_is_made_once_and_check_mode_writes_nothing(tmp_path):
    path = str(tmp_path / 'm-1')
    check = fakes.run_module(checkpoint_transfer, {'mode': 'identity', 'path': path, '_ansible_check_mode': True})
    assert check['changed'] is True and check['cert'] is None and not os.path.exists(path + '.tls')
    first = fakes.run_module(checkpoint_transfer, {'mode': 'identity', 'path': path})
    assert first['changed'] is True and first['cert'].startswith('-----BEGIN CERTIFICATE-----')
    again = fakes.run_module(checkpoint_transfer, {'mode': 'identity', 'path': path})
    assert again['changed'] is False and again['cert'] == first['cert']


def test_send_and_receive_over_mutual_tls(bundle, tmp_path):
    dest = str(tmp_path / 'dst' / 'm-1')
    os.makedirs(os.path.dirname(dest))
    target = fakes.run_module(checkpoint_transfer, {'mode': 'identity', 'path': dest})['cert']
    source = fakes.run_module(checkpoint_transfer, {'mode': 'identity', 'path': bundle})['cert']
    port = free_port()
    # the receiving end through the library (two modules cannot run at once in one process)
    tls = _channel.load_identity(dest + '.tls', source, 'the test')
    thread, holder = _transfer.start_background(
        lambda: _transfer.receive(dest, '127.0.0.1', port, TOKEN, 20.0, tls=tls))
    sent = run(mode='send', path=bundle, port=port, encryption='tls', peer_cert=target, connect_timeout=10)
    thread.join(20)
    assert sent['encryption'] == 'tls' and sent['tls']['version'] == 'TLSv1.3' and not sent['_warnings']
    assert holder['result']['encryption'] == 'tls' and holder['result']['connections']['connections'] == 1
    assert _bundle.verify_manifest(dest, _bundle.read_manifest(dest)) > 0
    assert TOKEN not in repr(sent) and TOKEN not in repr(holder['result'])


def test_tls_without_peer_cert_or_identity(bundle, tmp_path):
    result = run(fail=True, mode='send', path=bundle, port=4700, encryption='tls')
    assert result['msg'] == ("peer_cert (the other end's certificate, PEM) is required with encryption tls; set "
                             'encryption none only on a trusted network.')
    other = fakes.run_module(checkpoint_transfer, {'mode': 'identity', 'path': str(tmp_path / 'x')})['cert']
    result = run(fail=True, mode='send', path=bundle, port=4700, encryption='tls', peer_cert=other)
    assert result['msg'] == ('This host has no TLS identity for this migration in %s.tls (checkpoint_transfer with '
                             'mode=identity makes it and returns its certificate for the peer).' % bundle)


def test_plaintext_warns(bundle, tmp_path):
    result = run(mode='send', path=bundle, port=4700, _ansible_check_mode=True)
    assert any('travels unencrypted' in w for w in result['_warnings'])
