# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The transfer between hosts on the lab, attacked: a local user who holds the receiver's port first, an
observer of the wire (a relay that records every byte), and the play's own -vvv output."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import textwrap
import threading
import time

import pytest
from lab_helpers import INVENTORY, ROOT, VENV_BIN, require_lab, run_playbook
from test_migrate import IMAGE, docker, record, remove_everywhere, status

# A workload that holds a random secret in its memory only: made inside the container (never in its
# configuration, its files or its environment), printed once to its log (on the source host, which is
# not migrated) so that the test knows it.
SECRET_WORKLOAD = ('S=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"); echo "secret=$S"; '
                   'i=0; while true; do i=$((i+1)); sleep 0.1; done')


def start_secret_workload(host='lab-1'):
    name = 'it-ts-%06d' % random.randrange(10 ** 6)
    docker(host, 'run', '-d', '--name', name, '--network', 'none', '--memory', '32m', '--label', 'mtd.units=5',
           IMAGE, 'sh', '-c', SECRET_WORKLOAD)
    deadline = time.time() + 30
    while time.time() < deadline:
        logs = docker(host, 'logs', name).stdout
        if 'secret=' in logs:
            secret = logs.split('secret=', 1)[1].split()[0]
            assert len(secret) == 32, logs
            return name, secret
        time.sleep(0.2)
    raise AssertionError('the workload did not start')


def inspect(host, name):
    return json.loads(docker(host, 'inspect', name).stdout)[0]


def pause_events(host, name, since):
    """The engine's pause events for ``name`` since ``since`` (epoch seconds): a freeze leaves one."""
    out = docker(host, 'events', '--since', '%.3f' % since, '--until', '%.3f' % time.time(),
                 '--filter', 'container=%s' % name, '--filter', 'event=pause', '--format', '{{json .}}').stdout
    return [line for line in out.splitlines() if line.strip()]


class Relay:
    """A TCP relay on 127.0.0.1 in front of the receiver that records every byte, both directions."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(('127.0.0.1', 0))
        self.server.listen(4)
        self.server.settimeout(600)
        self.port = self.server.getsockname()[1]
        self.to_receiver = bytearray()
        self.to_sender = bytearray()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            client, dummy = self.server.accept()
        except OSError:
            return
        upstream = socket.create_connection(self.upstream, timeout=60)
        back = threading.Thread(target=self.pump, args=(upstream, client, self.to_sender), daemon=True)
        back.start()
        self.pump(client, upstream, self.to_receiver)
        back.join(60)
        client.close()
        upstream.close()
        self.server.close()

    @staticmethod
    def pump(src, dst, log):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                log.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def migrate_args(name, report, extra=()):
    return ['-e', 'mtd_container=%s' % name, '-e', 'mtd_source=lab-1', '-e', 'mtd_target=lab-3',
            '-e', 'mtd_report=%s' % report] + list(extra)


@pytest.fixture
def secret_workload(tmp_path):
    require_lab()
    name, secret = start_secret_workload()
    yield name, secret, str(tmp_path / 'record.json')
    remove_everywhere(name)


SQUATTER = textwrap.dedent('''
    import socket, sys, time
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((sys.argv[1], int(sys.argv[2])))
    server.listen(8)
    print("listening", flush=True)
    server.settimeout(1)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            conn, peer = server.accept()
        except socket.timeout:
            continue
        conn.settimeout(10)
        got = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                got += data
        except OSError:
            pass
        print("connection %d %s" % (len(got), got.hex()), flush=True)
        conn.close()
''')


def test_a_squatter_on_the_receivers_port_gets_nothing_and_nothing_is_frozen(secret_workload, tmp_path):
    """An unprivileged user of the target binds the receiver's address and port before the role runs.
    The real receiver cannot listen; the sender meets the squatter, whose certificate is not the pinned
    one: the migration fails before the freeze, the container is never paused, nothing is sent."""
    name, secret, report = secret_workload
    port = random.randrange(20000, 30000)
    squatter = subprocess.Popen(['runuser', '-u', 'nobody', '--', '/usr/bin/python3', '-c', SQUATTER, '127.0.1.3',
                                 str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout.readline().strip() == 'listening', squatter.stderr.read()
        before = inspect('lab-1', name)
        t0 = time.time()
        proc = run_playbook('playbooks/migrate.yml', *migrate_args(name, report, ['-e', 'migrate_transfer_port=%d' % port]),
                            check=False)
    finally:
        squatter.terminate()
        out, err = squatter.communicate(timeout=30)
    rec = record(report)
    assert proc.returncode != 0 and rec['state'] == 'Failed', rec
    # the failure says what happened, and that nothing was frozen
    assert 'No checkpoint was made, the container was not frozen' in rec['error'], rec['error']
    assert "it is not this migration's receiver" in rec['error'], rec['error']
    # the container was never paused: no pause event, same process, still running
    assert pause_events('lab-1', name, t0) == []
    after = inspect('lab-1', name)
    assert after['State']['Status'] == 'running' and after['State']['StartedAt'] == before['State']['StartedAt']
    assert after['State']['Pid'] == before['State']['Pid']
    assert status('lab-3', name) == 'absent'
    # the squatter got at most a TLS ClientHello: no token proof, no byte of the container's memory
    connections = [line.split() for line in out.splitlines() if line.startswith('connection ')]
    assert connections, 'the sender never reached the squatter (out=%r err=%r)' % (out, err)
    for fields in connections:
        size, data = int(fields[1]), bytes.fromhex(fields[2]) if len(fields) > 2 else b''
        assert size < 2048, 'the squatter received %d bytes' % size
        assert secret.encode() not in data and not data.startswith(b'MTDX'), data[:64]


def token_playbook(tmp_path):
    """playbooks/migrate.yml, then a play that keeps the run's token in a file (no_log) for the test."""
    playbook = tmp_path / 'migrate_keep_token.yml'
    playbook.write_text(textwrap.dedent('''
        - name: The migration
          ansible.builtin.import_playbook: %s/playbooks/migrate.yml

        - name: Keep the token of that run for the test
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Write it (never printed)
              ansible.builtin.copy:
                content: "{{ _migrate_token }}"
                dest: "%s"
                mode: "0600"
              no_log: true
        ''' % (ROOT, tmp_path / 'token')))
    return str(playbook)


def run_verbose(playbook, args):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    env['PATH'] = '%s:%s' % (VENV_BIN, env.get('PATH', ''))
    return subprocess.run([str(VENV_BIN / 'ansible-playbook'), '-vvv', '-i', str(INVENTORY), playbook] + args,
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.parametrize('encryption', ['tls', 'none'])
def test_the_wire_never_shows_the_memory_and_the_token_is_never_printed(secret_workload, tmp_path, encryption):
    """A relay between the hosts records every byte of a migration of a workload whose memory holds a
    random secret (compression off, so that plaintext would show it literally). With TLS the secret is
    not in the capture; the plaintext run proves the check can fail: there it is. The play runs at -vvv;
    the run's token is in neither output."""
    name, secret, report = secret_workload
    port = random.randrange(30000, 39000)
    relay = Relay(('127.0.1.3', port))
    extra = ['-e', 'migrate_transfer_port=%d' % port, '-e', 'migrate_transfer_connect=127.0.0.1:%d' % relay.port,
             '-e', 'migrate_transfer_compression=none', '-e', 'migrate_transfer_encryption=%s' % encryption]
    proc = run_verbose(token_playbook(tmp_path), migrate_args(name, report, extra))
    relay.thread.join(60)
    rec = record(report)
    assert proc.returncode == 0 and rec['state'] == 'Succeeded', (rec, proc.stdout[-4000:])
    assert status('lab-3', name) == 'running'
    wire = bytes(relay.to_receiver)
    transfer = rec['phases']['transfer']
    # the capture is the whole checkpoint (the memory pages with it), not an empty connection
    assert len(wire) >= transfer['bytes_sent'] > 100000, (len(wire), transfer)
    if encryption == 'tls':
        assert secret.encode() not in wire, 'the secret crossed the wire readable'
        assert secret.encode() not in bytes(relay.to_sender)
        assert transfer.get('encryption') == 'tls', transfer
    else:
        assert secret.encode() in wire, 'the plaintext capture should show the secret (else this test proves nothing)'
        assert 'travels unencrypted' in proc.stdout
    # the token of this very run: in no line of the -vvv output
    token = (tmp_path / 'token').read_text()
    assert len(token) == 40 and token.isalnum()
    assert token not in proc.stdout and token not in proc.stderr
    assert 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in proc.stdout   # the modules' invocations were shown, masked
