# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the registry client sends credentials (issue 11, found-item 8).

The rules as worked examples of the pure functions, then the client against real HTTP(S) servers on
127.0.0.1: a registry that answers what the test scripts, and a "token service" or "storage backend" on
another port that records whether any ``Authorization`` reached it.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._registry import (
    RegistryClient,
    RegistryError,
    check_realm,
    credentials_allowed,
    origin_of,
    origin_text,
    parse_host_port,
    request_scopes,
    sha256_digest,
)

USER, PASSWORD = 'alice', 's3cr3t-pw'
BASIC = 'Basic ' + base64.b64encode(('%s:%s' % (USER, PASSWORD)).encode()).decode()
DIGEST = 'sha256:' + 'a' * 64


# -- the rules as worked examples -------------------------------------------------------------

@pytest.mark.parametrize('url, origin', [
    ('https://R.Example/v2/', ('https', 'r.example', 443)),
    ('http://127.0.0.1:5000/v2/x', ('http', '127.0.0.1', 5000)),
    ('https://[::1]:5001/token?x=1', ('https', '::1', 5001)),
    ('http://r.example:80/', ('http', 'r.example', 80)),
    ('ftp://r.example/', ('ftp', 'r.example', 0)),
])
def test_origin_of(url, origin):
    assert origin_of(url) == origin


@pytest.mark.parametrize('url', ['/token', 'https:///x', 'http://r.example:99999/', 'http://r.example:x/'])
def test_origin_of_refuses_urls_without_host_or_port(url):
    with pytest.raises(ValueError):
        origin_of(url)


@pytest.mark.parametrize('origin, text', [
    (('https', 'auth.example', 443), 'https://auth.example'),
    (('http', 'auth.example', 80), 'http://auth.example'),
    (('http', '127.0.0.1', 5001), 'http://127.0.0.1:5001'),
    (('https', '::1', 8443), 'https://[::1]:8443'),
])
def test_origin_text(origin, text):
    assert origin_text(origin) == text


@pytest.mark.parametrize('text, parsed', [
    ('auth.example', ('auth.example', None)),
    ('Auth.Example:8443', ('auth.example', 8443)),
    ('127.0.0.1:5001', ('127.0.0.1', 5001)),
    ('[::1]:5001', ('::1', 5001)),
])
def test_parse_host_port(text, parsed):
    assert parse_host_port(text) == parsed


@pytest.mark.parametrize('text', ['', ' ', None, 'https://auth.example', 'auth.example/token', 'u@auth.example',
                                  'auth.example:x', 'auth.example:70000', ':443'])
def test_parse_host_port_refuses_what_is_not_a_host(text):
    with pytest.raises(ValueError, match='is not a host or host:port'):
        parse_host_port(text)


@pytest.mark.parametrize('realm, registry_scheme, origin', [
    ('https://auth.example/token', 'https', ('https', 'auth.example', 443)),
    ('https://auth.example/token', 'http', ('https', 'auth.example', 443)),
    ('http://127.0.0.1:5001/token', 'http', ('http', '127.0.0.1', 5001)),
])
def test_check_realm_accepts(realm, registry_scheme, origin):
    assert check_realm(realm, 'r.example', registry_scheme) == origin


@pytest.mark.parametrize('realm, registry_scheme, message', [
    # an https registry must not send its clients to plain http (host named, path and user info not)
    ('http://u:s3cr3t@auth.example/s3cr3t-path', 'https', 'plain-http token service http://auth.example; refused'),
    ('http://auth.example:8080/token', 'https', 'http://auth.example:8080'),
    ('ftp://auth.example/token', 'https', 'not an http or https URL (scheme ftp)'),
    ('file:///etc/passwd', 'http', 'not an http or https URL (scheme file)'),
    ('/token', 'http', 'not an http or https URL (scheme none)'),
    ('https:///token', 'https', 'not an http or https URL (scheme https)'),
    ('javascript:alert(1)', 'https', 'scheme javascript'),
])
def test_check_realm_refuses(realm, registry_scheme, message):
    with pytest.raises(RegistryError) as info:
        check_realm(realm, 'r.example', registry_scheme)
    assert message in info.value.msg
    assert 's3cr3t' not in info.value.msg
    assert info.value.status == 401


REGISTRY = ('https', 'r.example', 443)
LAB = ('http', '127.0.0.1', 5000)
HUB = ('https', 'registry-1.docker.io', 443)


@pytest.mark.parametrize('realm, registry, allowed, expected', [
    (('https', 'r.example', 443), REGISTRY, [], True),             # the registry's own host and port
    (('http', '127.0.0.1', 5000), LAB, [], True),
    (('http', '127.0.0.1', 5001), LAB, [], False),                 # same host, another port: anyone may bind it
    (('https', 'auth.example', 443), REGISTRY, [], False),         # another host
    (('https', 'auth.example', 443), REGISTRY, [('auth.example', None)], True),
    (('https', 'auth.example', 8443), REGISTRY, [('auth.example', None)], False),   # no port = the default one
    (('https', 'auth.example', 8443), REGISTRY, [('auth.example', 8443)], True),
    (('http', '127.0.0.1', 5001), LAB, [('127.0.0.1', 5001)], True),
    (('https', 'auth.docker.io', 443), HUB, [], True),             # Docker Hub's own token service
    (('https', 'auth.docker.io', 443), REGISTRY, [], False),       # ... only for Docker Hub
    (('http', 'auth.docker.io', 443), HUB, [], False),
])
def test_credentials_allowed(realm, registry, allowed, expected):
    assert credentials_allowed(realm, registry, allowed) is expected


@pytest.mark.parametrize('method, url, scopes', [
    ('GET', '/v2/team/app/manifests/1', {'team/app': {'pull'}}),
    ('HEAD', 'https://r.example/v2/team/app/blobs/' + DIGEST, {'team/app': {'pull'}}),
    ('GET', '/v2/team/app/tags/list', {'team/app': {'pull'}}),
    ('PUT', '/v2/team/app/manifests/1', {'team/app': {'pull', 'push'}}),
    ('POST', '/v2/team/app/blobs/uploads/', {'team/app': {'pull', 'push'}}),
    ('POST', '/v2/team/app/blobs/uploads/?mount=%s&from=base/debian' % DIGEST,
     {'team/app': {'pull', 'push'}, 'base/debian': {'pull'}}),
    ('PUT', '/v2/team/app/blobs/uploads/5f1c?_state=x&digest=' + DIGEST, {'team/app': {'pull', 'push'}}),
    ('DELETE', '/v2/team/app/blobs/uploads/5f1c', {'team/app': {'pull', 'push'}}),
    ('GET', '/v2/a/blobs/b/blobs/' + DIGEST, {'a/blobs/b': {'pull'}}),   # "blobs" may be a name component
    ('GET', '/v2/', {}),
    ('GET', '/v2/_catalog', {}),
    ('GET', 'https://storage.example/some/blob?sig=1', {}),
])
def test_request_scopes(method, url, scopes):
    assert request_scopes(method, url) == scopes


@pytest.mark.parametrize('url, same', [
    ('https://r.example/v2/x', True),
    ('https://R.EXAMPLE:443/v2/x', True),
    ('http://r.example/v2/x', False),         # same host, other scheme
    ('https://r.example:444/v2/x', False),    # same host, other port
    ('https://storage.example/v2/x', False),
    ('https://r.example.evil/v2/x', False),
    ('https://r.example@evil.example/v2/x', False),
    ('not a url', False),
])
def test_authorization_goes_only_to_the_registry_origin(url, same):
    assert RegistryClient('r.example', scheme='https').is_registry_origin(url) is same


def test_realm_hosts_option_is_checked():
    assert RegistryClient('r.example', realm_hosts=['Auth.Example', 'auth2.example:8443']).realm_hosts == [
        ('auth.example', None), ('auth2.example', 8443)]
    with pytest.raises(ValueError, match="'https://auth.example' is not a host or host:port"):
        RegistryClient('r.example', realm_hosts=['https://auth.example'])


# -- real servers -------------------------------------------------------------------------------

class Server:
    """An HTTP(S) server on 127.0.0.1 (free port) answering with ``answer(request) -> (status, headers, body)``.

    Every request is recorded as a dict with ``method``, ``path``, ``query`` (parsed) and ``headers``.
    """

    def __init__(self, answer, tls=None):
        self.answer = answer
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def handle_one(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else b''
                request = {'method': self.command, 'path': urlsplit(self.path).path, 'raw_path': self.path,
                           'query': parse_qs(urlsplit(self.path).query), 'headers': dict(self.headers), 'body': body}
                server.requests.append(request)
                status, headers, data = server.answer(request)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                if self.command != 'HEAD':
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_one  # noqa: N815

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.addr = '127.0.0.1:%d' % self.port
        self.origin = '%s://%s' % ('https' if tls else 'http', self.addr)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def authorizations(self):
        return [r['headers'].get('Authorization') for r in self.requests]


@pytest.fixture
def servers():
    started = []

    def start(answer, tls=None):
        started.append(Server(answer, tls=tls))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope='module')
def tls_identity(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (it is also the CA bundle the client trusts)."""
    openssl = shutil.which('openssl')
    if not openssl:
        pytest.skip('openssl is not installed: the https registry tests need a certificate')
    directory = tmp_path_factory.mktemp('tls')
    cert, key = str(directory / 'cert.pem'), str(directory / 'key.pem')
    subprocess.run([openssl, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
                    '-addext', 'subjectAltName=IP:127.0.0.1'], check=True, capture_output=True)
    return cert, key


def token_service():
    """A token service that hands out ``tok`` to every request (it records whether credentials came)."""
    return lambda request: (200, {'Content-Type': 'application/json'}, json.dumps({'token': 'tok'}).encode())


def bearer_registry(realm, scope='repository:team/app:pull,push,delete', blob=b'blob'):
    """A registry that wants ``Bearer tok``, and names ``realm`` (and a greedy ``scope``) in its challenge."""
    def answer(request):
        if request['headers'].get('Authorization') != 'Bearer tok':
            challenge = 'Bearer realm="%s",service="reg",scope="%s"' % (realm(), scope)
            return 401, {'WWW-Authenticate': challenge}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'
        if request['method'] == 'PUT':
            return 201, {'Docker-Content-Digest': sha256_digest(request['body'])}, b''
        if request['method'] == 'POST':
            return 201, {'Location': '/v2/team/app/blobs/' + DIGEST}, b''
        return 200, {'Docker-Content-Digest': sha256_digest(blob)}, blob
    return answer


def test_http_realm_on_another_port_gets_no_credentials(servers):
    """The lab case: a plain-http registry whose challenge points to a token service on another local port."""
    realm = servers(token_service())
    registry = servers(bearer_registry(lambda: realm.origin + '/token'))
    client = RegistryClient(registry.addr, username=USER, password=PASSWORD, timeout=5)
    with pytest.raises(RegistryError) as info:
        client.blob_exists('team/app', DIGEST)
    assert realm.requests == []       # nothing at all reached it, credentials least of all
    assert info.value.msg == (
        "The registry %s sends clients to the token service %s, which is not the registry's own host; the "
        "credentials are sent there only when it is listed in registry_realm_hosts (%s)."
        % (registry.addr, realm.origin, realm.addr))
    assert PASSWORD not in info.value.msg and BASIC not in info.value.msg
    assert registry.authorizations() == [None]


def test_listed_realm_gets_credentials_and_only_the_scope_needed(servers):
    realm = servers(token_service())
    registry = servers(bearer_registry(lambda: realm.origin + '/token'))
    client = RegistryClient(registry.addr, username=USER, password=PASSWORD, timeout=5,
                            realm_hosts=['127.0.0.1:%d' % realm.port])
    assert client.blob_exists('team/app', DIGEST) is True
    assert realm.authorizations() == [BASIC]
    query = realm.requests[0]['query']
    # the challenge asked for pull,push,delete: a HEAD needs pull, and only pull is asked for
    assert query == {'service': ['reg'], 'scope': ['repository:team/app:pull'], 'account': [USER]}
    assert registry.authorizations() == [None, 'Bearer tok']


def test_write_and_mount_ask_for_push_and_for_pull_on_the_source(servers):
    realm = servers(token_service())
    registry = servers(bearer_registry(lambda: realm.origin + '/token', scope='repository:team/app:*'))
    client = RegistryClient(registry.addr, username=USER, password=PASSWORD, timeout=5,
                            realm_hosts=['127.0.0.1:%d' % realm.port])
    assert client.mount_blob('team/app', DIGEST, 'base/debian') is True
    assert realm.requests[0]['query']['scope'] == ['repository:base/debian:pull', 'repository:team/app:pull,push']
    writer = RegistryClient(registry.addr, username=USER, password=PASSWORD, timeout=5,
                            realm_hosts=['127.0.0.1:%d' % realm.port])
    writer.put_manifest('team/app', '1', b'{"schemaVersion": 2}', 'application/vnd.oci.image.manifest.v1+json')
    assert realm.requests[1]['query']['scope'] == ['repository:team/app:pull,push']


def test_declared_scopes_are_kept_and_the_challenge_adds_nothing(servers):
    realm = servers(token_service())
    registry = servers(bearer_registry(lambda: realm.origin + '/token',
                                       scope='repository:team/app:pull,push,delete repository:other/x:pull,push'))
    client = RegistryClient(registry.addr, username=USER, password=PASSWORD, timeout=5,
                            realm_hosts=['127.0.0.1:%d' % realm.port])
    client.add_scope('base/debian', 'pull')
    client.get_blob('team/app', sha256_digest(b'blob'))
    assert realm.requests[0]['query']['scope'] == ['repository:base/debian:pull', 'repository:team/app:pull']


def test_anonymous_token_carries_no_credentials_to_any_realm(servers):
    realm = servers(token_service())
    registry = servers(bearer_registry(lambda: realm.origin + '/token'))
    client = RegistryClient(registry.addr, timeout=5)
    assert client.blob_exists('team/app', DIGEST) is True
    assert realm.authorizations() == [None]
    assert 'account' not in realm.requests[0]['query']


@pytest.mark.parametrize('realm_url', ['file:///etc/passwd', 'ftp://127.0.0.1/token', '/token'])
def test_realm_that_is_not_http_is_refused(servers, realm_url):
    registry = servers(bearer_registry(lambda: realm_url))
    for client in (RegistryClient(registry.addr, username=USER, password=PASSWORD, timeout=5),
                   RegistryClient(registry.addr, timeout=5)):
        with pytest.raises(RegistryError, match='names a token service .* that is not an http or https URL'):
            client.ping()
    assert len(registry.requests) == 2


def test_https_registry_with_plain_http_realm_is_refused(servers, tls_identity):
    """A real TLS registry whose challenge downgrades to an http token service: nothing reaches the service."""
    realm = servers(token_service())
    registry = servers(bearer_registry(lambda: realm.origin + '/token'), tls=tls_identity)
    for client in (RegistryClient(registry.addr, scheme='https', ca_path=tls_identity[0], username=USER,
                                  password=PASSWORD, timeout=5, realm_hosts=['127.0.0.1:%d' % realm.port]),
                   RegistryClient(registry.addr, scheme='https', ca_path=tls_identity[0], timeout=5)):
        with pytest.raises(RegistryError) as info:
            client.get_manifest('team/app', '1')
        assert ('The registry %s is reached over https but sends clients to the plain-http token service %s; '
                'refused' % (registry.addr, realm.origin)) in info.value.msg
        assert PASSWORD not in info.value.msg
    assert realm.requests == []
    assert len(registry.requests) == 2


def test_https_registry_with_https_realm_on_its_own_port_works(servers, tls_identity):
    """The positive control of the test above: the same TLS registry, its token service at /token."""
    box = {}
    registry = servers(lambda request: (token_service()(request) if request['path'] == '/token'
                                        else bearer_registry(lambda: box['origin'] + '/token')(request)),
                       tls=tls_identity)
    box['origin'] = registry.origin
    client = RegistryClient(registry.addr, scheme='https', ca_path=tls_identity[0], username=USER, password=PASSWORD,
                            timeout=5)
    assert client.blob_exists('team/app', DIGEST) is True
    assert [(r['path'], r['headers'].get('Authorization')) for r in registry.requests] == [
        ('/v2/team/app/blobs/' + DIGEST, None), ('/token', BASIC), ('/v2/team/app/blobs/' + DIGEST, 'Bearer tok')]


def basic_registry(on_authorized):
    def answer(request):
        if request['headers'].get('Authorization') != BASIC:
            return 401, {'WWW-Authenticate': 'Basic realm="reg"'}, b''
        return on_authorized(request)
    return answer


def test_blob_redirect_to_storage_carries_no_authorization(servers):
    blob = b'layer bytes'
    storage = servers(lambda request: (200, {}, blob))
    registry = servers(basic_registry(lambda request: (307, {'Location': storage.origin + '/b?sig=1'}, b'')))
    client = RegistryClient(registry.addr, username=USER, password=PASSWORD, timeout=5)
    assert client.get_blob('team/app', sha256_digest(blob)) == blob
    assert registry.authorizations() == [None, BASIC]
    assert storage.authorizations() == [None]
    assert storage.requests[0]['raw_path'] == '/b?sig=1'


def test_blob_redirect_back_to_the_registry_keeps_authorization(servers):
    blob = b'layer bytes'

    def on_authorized(request):
        if request['path'].startswith('/v2/'):
            return 302, {'Location': '/storage/1'}, b''
        return 200, {}, blob
    registry = servers(basic_registry(on_authorized))
    client = RegistryClient(registry.addr, username=USER, password=PASSWORD, timeout=5)
    assert client.get_blob('team/app', sha256_digest(blob)) == blob
    assert [(r['path'], r['headers'].get('Authorization')) for r in registry.requests] == [
        ('/v2/team/app/blobs/' + sha256_digest(blob), None), ('/v2/team/app/blobs/' + sha256_digest(blob), BASIC),
        ('/storage/1', BASIC)]


def test_blob_redirect_from_https_down_to_http_is_refused(servers, tls_identity):
    storage = servers(lambda request: (200, {}, b'x'))
    registry = servers(basic_registry(lambda request: (307, {'Location': storage.origin + '/b'}, b'')),
                       tls=tls_identity)
    client = RegistryClient(registry.addr, scheme='https', ca_path=tls_identity[0], username=USER, password=PASSWORD,
                            timeout=5)
    with pytest.raises(RegistryError, match='redirected GET .* from https to http; only redirects to https'):
        client.get_blob('team/app', sha256_digest(b'x'))
    assert storage.requests == []


@pytest.mark.parametrize('location', ['file:///etc/passwd', 'gopher://127.0.0.1/x'])
def test_blob_redirect_to_another_scheme_is_refused(servers, location):
    registry = servers(lambda request: (307, {'Location': location}, b''))
    with pytest.raises(RegistryError, match='redirected GET'):
        RegistryClient(registry.addr, timeout=5).get_blob('team/app', DIGEST)


def test_upload_location_elsewhere_gets_no_authorization(servers):
    """An upload session whose Location is another origin: the PUT (and its cancel) go there without credentials,
    and its 401 is refused instead of answered."""
    other = servers(lambda request: (401, {'WWW-Authenticate': 'Basic realm="other"'}, b''))
    registry = servers(basic_registry(lambda request: (202, {'Location': other.origin + '/upload/1?_state=s'}, b'')))
    client = RegistryClient(registry.addr, username=USER, password=PASSWORD, timeout=5)
    with pytest.raises(RegistryError) as info:
        client.upload_blob('team/app', b'config')
    assert info.value.msg.startswith('The registry %s sent ' % registry.addr)
    assert 'to %s, which asked for credentials; they are sent only to the registry itself.' % other.origin \
        in info.value.msg
    assert [r['method'] for r in other.requests] == ['PUT', 'DELETE']
    assert other.authorizations() == [None, None]
    assert registry.authorizations() == [None, BASIC]
