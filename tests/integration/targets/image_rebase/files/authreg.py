# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test helper: throwaway registries with authentication, on loopback ports, stopped by PID.

  authreg.py start htpasswd DIR USER PASSWORD   -> JSON {addr, pids, log}
  authreg.py start token DIR USER PASSWORD      -> JSON {addr, token_addr, pids, log}  (bearer tokens)
  authreg.py token-server DIR PORT USER PASSWORD   (internal: the token service)
  authreg.py stop PID...

The token service signs RS256 JWTs with a self-signed certificate that the registry trusts
(rootcertbundle); it grants the requested actions to USER with PASSWORD and refuses everyone else.
Needs the python packages bcrypt and cryptography (both in the project's virtualenv).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SERVICE = 'it-rb-registry'
ISSUER = 'it-rb-token-issuer'


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode('ascii')


def make_cert(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    with open(os.path.join(directory, 'token.key'), 'wb') as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    with open(os.path.join(directory, 'token.crt'), 'wb') as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))


def wait_ready(url, seconds=20):
    end = time.time() + seconds
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.2)
    return False


def start(kind, directory, user, password):
    import bcrypt

    os.makedirs(os.path.join(directory, 'data'), exist_ok=True)
    port = free_port()
    pids = []
    if kind == 'htpasswd':
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        with open(os.path.join(directory, 'htpasswd'), 'w') as handle:
            handle.write('%s:%s\n' % (user, hashed))
        auth = 'auth:\n  htpasswd:\n    realm: it-rb\n    path: %s\n' % os.path.join(directory, 'htpasswd')
        token_addr = None
    elif kind == 'token':
        make_cert(directory)
        token_port = free_port()
        token_addr = '127.0.0.1:%d' % token_port
        log = open(os.path.join(directory, 'token.log'), 'ab')
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), 'token-server', directory,
                                 str(token_port), user, password], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        pids.append(proc.pid)
        if not wait_ready('http://%s/ready' % token_addr):
            raise SystemExit('the token service did not start: see %s/token.log' % directory)
        auth = ('auth:\n  token:\n    realm: http://%s/token\n    service: %s\n    issuer: %s\n'
                '    rootcertbundle: %s\n' % (token_addr, SERVICE, ISSUER, os.path.join(directory, 'token.crt')))
    else:
        raise SystemExit('unknown kind %s' % kind)
    config = os.path.join(directory, 'config.yml')
    with open(config, 'w') as handle:
        handle.write('version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n'
                     'storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n'
                     'http:\n  addr: 127.0.0.1:%d\n%s' % (os.path.join(directory, 'data'), port, auth))
    log_path = os.path.join(directory, 'registry.log')
    log = open(log_path, 'ab')
    proc = subprocess.Popen(['docker-registry', 'serve', config], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    pids.append(proc.pid)
    if not wait_ready('http://127.0.0.1:%d/v2/' % port):
        stop(pids)
        raise SystemExit('the registry did not start: see %s' % log_path)
    print(json.dumps({'addr': '127.0.0.1:%d' % port, 'token_addr': token_addr, 'pids': pids, 'log': log_path}))


def token_server(directory, port, user, password):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    with open(os.path.join(directory, 'token.key'), 'rb') as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    with open(os.path.join(directory, 'token.crt'), 'rb') as handle:
        from cryptography import x509
        cert_der = x509.load_pem_x509_certificate(handle.read()).public_bytes(serialization.Encoding.DER)
    expected = 'Basic ' + base64.b64encode(('%s:%s' % (user, password)).encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            sys.stderr.write('token: ' + (fmt % args) + '\n')

        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            if parts.path == '/ready':
                return self._send(200, {'ok': True})
            if parts.path != '/token':
                return self._send(404, {'errors': [{'code': 'NOT_FOUND'}]})
            if self.headers.get('Authorization') != expected:
                return self._send(401, {'errors': [{'code': 'UNAUTHORIZED', 'message': 'bad credentials'}]})
            query = parse_qs(parts.query)
            access = []
            for scope in query.get('scope', []):
                for item in scope.split(' '):
                    bits = item.split(':')
                    if len(bits) == 3:
                        access.append({'type': bits[0], 'name': bits[1], 'actions': bits[2].split(',')})
            now = int(time.time())
            header = {'typ': 'JWT', 'alg': 'RS256', 'x5c': [base64.b64encode(cert_der).decode()]}
            claims = {'iss': ISSUER, 'sub': user, 'aud': query.get('service', [SERVICE])[0], 'iat': now,
                      'nbf': now - 10, 'exp': now + 300, 'jti': str(now) + str(os.getpid()), 'access': access}
            signing_input = b64url(json.dumps(header).encode()) + '.' + b64url(json.dumps(claims).encode())
            signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
            token = signing_input + '.' + b64url(signature)
            return self._send(200, {'token': token, 'access_token': token, 'expires_in': 300})

    server = ThreadingHTTPServer(('127.0.0.1', int(port)), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


def stop(pids):
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


def main(argv):
    if argv[1] == 'start':
        start(argv[2], argv[3], argv[4], argv[5])
    elif argv[1] == 'token-server':
        token_server(argv[2], argv[3], argv[4], argv[5])
    elif argv[1] == 'stop':
        stop(argv[2:])
    else:
        raise SystemExit('unknown command %s' % argv[1])


if __name__ == '__main__':
    main(sys.argv)
