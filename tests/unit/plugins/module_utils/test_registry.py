# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The stdlib registry client against a real HTTP server on 127.0.0.1 (fixtures/fake_registry.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._registry import (
    DOCKER_HUB,
    Reference,
    RegistryClient,
    RegistryError,
    is_loopback_host,
    parse_challenge,
    parse_reference,
    registry_error_detail,
    sha256_digest,
)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
_spec = importlib.util.spec_from_file_location('mtd_fake_registry', os.path.join(FIXTURES, 'fake_registry.py'))
fake_registry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_registry)


@pytest.fixture
def registry():
    server = fake_registry.FakeRegistry()
    yield server
    server.close()


def _client(server, **kwargs):
    kwargs.setdefault('timeout', 5)
    return RegistryClient(server.addr, **kwargs)


# -- references ---------------------------------------------------------------------------------

@pytest.mark.parametrize('text, registry, repository, tag, digest', [
    ('127.0.0.1:5000/mtd/busybox:latest', '127.0.0.1:5000', 'mtd/busybox', 'latest', None),
    ('127.0.0.1:5000/mtd/busybox', '127.0.0.1:5000', 'mtd/busybox', 'latest', None),
    ('registry.example.com/a/b/c:1.2-x', 'registry.example.com', 'a/b/c', '1.2-x', None),
    ('localhost/app:1', 'localhost', 'app', '1', None),
    ('debian:12', DOCKER_HUB, 'library/debian', '12', None),
    ('team/app', DOCKER_HUB, 'team/app', 'latest', None),
    ('r.example:443/app@sha256:' + 'a' * 64, 'r.example:443', 'app', None, 'sha256:' + 'a' * 64),
    ('r.example/app:1@sha256:' + 'b' * 64, 'r.example', 'app', '1', 'sha256:' + 'b' * 64),
])
def test_parse_reference(text, registry, repository, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.reference == (digest or tag)


@pytest.mark.parametrize('text, fragment', [
    ('', 'non-empty'),
    ('r.example/App:1', 'invalid repository'),
    ('r.example/app@sha256:xyz', 'invalid digest'),
    ('r.example/app:-bad', 'invalid tag'),
])
def test_parse_reference_errors(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_reference(text)


def test_reference_helpers():
    ref = Reference('r.example', 'team/app', tag='1')
    assert str(ref) == 'r.example/team/app:1'
    assert ref.with_digest('sha256:' + 'c' * 64) == 'r.example/team/app@sha256:' + 'c' * 64
    assert parse_reference('r.example/team/app', default_tag=None).tag is None


@pytest.mark.parametrize('host, loopback', [
    ('127.0.0.1:5000', True), ('127.3.2.1', True), ('localhost:5000', True), ('[::1]:5000', True),
    ('registry.example.com', False), ('10.0.0.1:5000', False),
])
def test_loopback(host, loopback):
    assert is_loopback_host(host) is loopback
    assert RegistryClient(host).scheme == ('http' if loopback else 'https')


def test_challenge_and_error_parsing():
    scheme, params = parse_challenge('Bearer realm="https://auth.example/token",service="reg",'
                                     'scope="repository:a/b:pull,push"')
    assert scheme == 'bearer'
    assert params == {'realm': 'https://auth.example/token', 'service': 'reg', 'scope': 'repository:a/b:pull,push'}
    assert parse_challenge('Basic realm="x"') == ('basic', {'realm': 'x'})
    assert parse_challenge(None) == (None, {})
    code, text = registry_error_detail(b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown",'
                                       b'"detail":{"Tag":"x"}}]}')
    assert code == 'MANIFEST_UNKNOWN'
    assert text.startswith('MANIFEST_UNKNOWN: manifest unknown')
    assert registry_error_detail(b'plain text') == (None, 'plain text')


def test_scopes_are_merged_and_sorted():
    client = RegistryClient('r.example')
    client.add_scope('team/app', 'pull')
    client.add_scope('team/app', ['push'])
    client.add_scope('base/debian', 'pull')
    assert client.scopes() == ['repository:base/debian:pull', 'repository:team/app:pull,push']


def test_bad_construction():
    with pytest.raises(ValueError):
        RegistryClient('r.example', scheme='ftp')
    with pytest.raises(ValueError):
        RegistryClient('')


# -- manifests and blobs ------------------------------------------------------------------------

def test_manifest_roundtrip_exact_bytes(registry):
    client = _client(registry)
    config = b'{"architecture":"amd64","os":"linux"}'
    client.upload_blob('team/app', config)
    data = json.dumps({'schemaVersion': 2, 'mediaType': fake_registry.DOCKER_MANIFEST,
                       'config': {'mediaType': fake_registry.DOCKER_CONFIG, 'size': len(config),
                                  'digest': sha256_digest(config)}, 'layers': []}, indent=1).encode()
    digest = client.put_manifest('team/app', 'v1', data, fake_registry.DOCKER_MANIFEST)
    assert digest == sha256_digest(data)
    manifest = client.get_manifest('team/app', 'v1')
    assert manifest.data == data and manifest.digest == digest
    assert manifest.media_type == fake_registry.DOCKER_MANIFEST
    assert client.get_manifest('team/app', digest).data == data
    assert client.head_manifest('team/app', 'v1') == (digest, fake_registry.DOCKER_MANIFEST, len(data))
    assert client.head_manifest('team/app', 'nope') is None
    assert client.get_manifest('team/app', 'nope', missing_ok=True) is None
    with pytest.raises(RegistryError, match='no manifest nope'):
        client.get_manifest('team/app', 'nope')
    stats = client.stats.as_dict()
    assert stats['by_kind']['manifest_put'] == 1
    assert stats['by_kind']['blob_upload'] == 1
    assert stats['blob_bytes_uploaded'] == len(config)
    assert stats['bytes_uploaded'] == len(config) + len(data)
    assert stats['writes'] == 2


def test_manifest_put_with_wrong_content_type_is_a_clear_error(registry):
    client = _client(registry)
    data = json.dumps({'schemaVersion': 2, 'mediaType': fake_registry.DOCKER_MANIFEST, 'layers': []}).encode()
    with pytest.raises(RegistryError) as info:
        client.put_manifest('team/app', 'v1', data, 'application/json')
    assert info.value.status == 400
    assert 'MANIFEST_INVALID' in str(info.value)


def test_blob_mount_and_fallback(registry):
    layer = registry.put_blob('base/debian', b'layer bytes')
    client = _client(registry)
    assert not client.blob_exists('team/app', layer)
    assert client.mount_blob('team/app', layer, 'base/debian') is True
    assert client.blob_exists('team/app', layer)
    missing = sha256_digest(b'not there')
    assert client.mount_blob('team/app2', missing, 'base/debian') is False
    # the upload session the refused mount opened was cancelled
    assert registry.uploads == {}
    assert registry.count('DELETE', '/blobs/uploads/') == 1
    assert client.stats.by_kind['blob_mount'] == 1
    assert client.stats.by_kind['blob_mount_fallback'] == 1
    assert client.ensure_blob('team/app', layer, ['base/debian']) == 'present'
    assert client.ensure_blob('team/app3', layer, ['base/debian']) == 'mounted'
    assert client.ensure_blob('team/app3', sha256_digest(b'cfg'), [], data=b'cfg') == 'uploaded'
    with pytest.raises(RegistryError, match='cannot be mounted'):
        client.ensure_blob('team/app4', missing, ['base/debian'])


def test_get_blob_checks_the_digest(registry):
    digest = registry.put_blob('team/app', b'config')
    client = _client(registry)
    assert client.get_blob('team/app', digest) == b'config'
    registry.blobs['team/app'][digest] = b'tampered'
    with pytest.raises(RegistryError, match='do not match'):
        client.get_blob('team/app', digest)
    with pytest.raises(RegistryError, match='has no blob'):
        client.get_blob('team/app', sha256_digest(b'x'))


def test_keep_alive_reuses_one_connection(registry):
    client = _client(registry)
    for _dummy in range(5):
        client.ping()
    assert client.stats.requests == 5
    assert len(client._connections) == 1


# -- auth ---------------------------------------------------------------------------------------

def test_basic_auth():
    server = fake_registry.FakeRegistry(auth='basic', user='alice', password='pw')
    try:
        client = _client(server, username='alice', password='pw')
        assert client.ping()
        wrong = _client(server, username='alice', password='nope')
        with pytest.raises(RegistryError, match="rejected the credentials of user 'alice'"):
            wrong.ping()
        anonymous = _client(server)
        with pytest.raises(RegistryError, match='requires authentication'):
            anonymous.ping()
    finally:
        server.close()


def test_bearer_token_one_token_for_all_scopes():
    server = fake_registry.FakeRegistry(auth='bearer', user='alice', password='pw')
    try:
        client = _client(server, username='alice', password='pw')
        client.add_scope('team/app', 'pull,push')
        client.add_scope('base/debian', 'pull')
        client.ping()
        client.head_manifest('team/app', 'x')
        client.blob_exists('base/debian', sha256_digest(b'x'))
        assert client.stats.by_kind['token'] == 1
        assert server.token_requests[0]['scope'] == ['repository:base/debian:pull', 'repository:team/app:pull,push']
        assert server.token_requests[0]['service'] == ['fake']
        wrong = _client(server, username='alice', password='nope')
        with pytest.raises(RegistryError, match='token service .* rejected the credentials'):
            wrong.ping()
        with pytest.raises(RegistryError, match='anonymous token'):
            _client(server).ping()
    finally:
        server.close()


# -- transport errors ---------------------------------------------------------------------------

def test_unreachable_registry_is_one_sentence():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    client = RegistryClient('127.0.0.1:%d' % port, timeout=2)
    with pytest.raises(RegistryError) as info:
        client.ping()
    assert 'Cannot reach the registry at http://127.0.0.1:%d' % port in str(info.value)
    assert info.value.status is None
    assert '\n' not in str(info.value)


def test_tls_against_plain_http_is_explained(registry):
    client = RegistryClient(registry.addr, scheme='https', timeout=3)
    with pytest.raises(RegistryError, match='TLS|Cannot reach'):
        client.ping()


def test_missing_ca_file_is_explained(registry, tmp_path):
    client = RegistryClient(registry.addr, scheme='https', ca_path=str(tmp_path / 'none.pem'), timeout=3)
    with pytest.raises(RegistryError, match='CA bundle'):
        client.ping()
