# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The stdlib Docker client against a real HTTP server on an AF_UNIX socket (fixtures/fake_engine.py)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import socket
import tempfile
import threading

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._docker import (
    DEFAULT_DOCKER_HOST,
    MAX_API_VERSION,
    DockerClient,
    DockerError,
    client_from_params,
    compare_versions,
    demux_stream,
    docker_argument_spec,
    encode_filters,
)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


def _load_fake_engine():
    spec = importlib.util.spec_from_file_location('mtd_fake_engine', os.path.join(FIXTURES, 'fake_engine.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake_engine = _load_fake_engine()


@pytest.fixture
def sockdir():
    # AF_UNIX paths are limited to ~108 bytes: keep them short, not under pytest's tmp_path.
    path = tempfile.mkdtemp(prefix='mtd-', dir='/tmp')
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def engine(sockdir):
    server = fake_engine.FakeEngine(os.path.join(sockdir, 'docker.sock'))
    yield server
    server.close()


def _client(engine, **kwargs):
    kwargs.setdefault('timeout', 5)
    return DockerClient(engine.url, **kwargs)


# -- construction ---------------------------------------------------------------------------------

@pytest.mark.parametrize('host, socket_path, netloc', [
    ('unix:///var/run/docker.sock', '/var/run/docker.sock', None),
    ('/run/docker.sock', '/run/docker.sock', None),
    ('tcp://127.0.0.1:2375', None, ('127.0.0.1', 2375)),
    ('tcp://docker.example', None, ('docker.example', 2375)),
    ('http://10.0.0.5:12375', None, ('10.0.0.5', 12375)),
])
def test_docker_host_forms(host, socket_path, netloc):
    client = DockerClient(host)
    assert client._socket_path == socket_path
    assert client._netloc == netloc


def test_default_host():
    assert DockerClient().docker_host == DEFAULT_DOCKER_HOST == 'unix:///var/run/docker.sock'


@pytest.mark.parametrize('host', ['ssh://user@host', 'https://host:2376', 'unix://relative.sock', 'npipe:////./pipe/x'])
def test_unsupported_hosts(host):
    with pytest.raises(ValueError, match='docker_host'):
        DockerClient(host)


@pytest.mark.parametrize('version', ['latest', '1', '1.x', ''])
def test_bad_api_version(version):
    if version == '':
        # Empty means the default, auto.
        assert DockerClient(api_version=version)._api_version is None
        return
    with pytest.raises(ValueError, match='API version'):
        DockerClient(api_version=version)


def test_explicit_api_version_is_used_without_negotiation(engine):
    engine.routes[('GET', '/info')] = (200, {'Name': 'lab-1'})
    client = _client(engine, api_version='v1.40')
    assert client.api_version == '1.40'
    assert client.info() == {'Name': 'lab-1'}
    assert [r['raw_path'] for r in engine.requests] == ['/v1.40/info']


@pytest.mark.parametrize('a, b, expected', [
    ('1.41', '1.41', 0), ('1.9', '1.41', -1), ('1.47', '1.41', 1), ('2.0', '1.99', 1),
])
def test_compare_versions(a, b, expected):
    assert compare_versions(a, b) == expected


# -- negotiation ----------------------------------------------------------------------------------

def test_auto_negotiates_from_ping_header(engine):
    engine.routes[('GET', '/version')] = (200, fake_engine.load_json('docker-version-20.10.json'))
    client = _client(engine)
    version = client.version()
    assert version['Version'] == '20.10.24+dfsg1'
    assert client.api_version == '1.41'
    assert [(r['method'], r['raw_path']) for r in engine.requests] == [('GET', '/_ping'), ('GET', '/v1.41/version')]


def test_auto_caps_at_max_api_version(sockdir):
    server = fake_engine.FakeEngine(os.path.join(sockdir, 'new.sock'), api_version='1.51')
    try:
        client = DockerClient(server.url, timeout=5)
        assert client.api_version == MAX_API_VERSION
    finally:
        server.close()


def test_auto_falls_back_to_version_endpoint(engine):
    engine.routes[('GET', '/_ping')] = (200, 'OK', {'Api-Version': ''})
    engine.routes[('GET', '/version')] = (200, {'ApiVersion': '1.40', 'Version': '19.03.15'})
    client = _client(engine)
    assert client.api_version == '1.40'
    assert [r['raw_path'] for r in engine.requests] == ['/_ping', '/version']


# -- calls and errors -----------------------------------------------------------------------------

def test_ping_info_and_containers(engine):
    web = fake_engine.load_json('docker-inspect-web-1.json')
    engine.standard_routes([web])
    client = _client(engine)
    assert client.ping() is True
    info = client.info()
    assert info['CgroupDriver'] == 'cgroupfs'
    assert info['ExperimentalBuild'] is True
    listing = client.containers()
    assert [c['Id'] for c in listing] == [web['Id']]
    assert client.inspect_container(web['Id'])['Name'] == '/web-1'
    listing_request = [r for r in engine.requests if r['path'] == '/containers/json'][0]
    assert listing_request['query'] == {}
    assert listing_request['headers']['Host'] == 'docker'


def test_containers_all_and_filters(engine):
    engine.routes[('GET', '/containers/json')] = (200, [])
    client = _client(engine, api_version='1.41')
    assert client.containers(all=True, filters={'label': ['mtd.service=web'], 'status': 'exited'}) == []
    query = engine.requests[-1]['query']
    assert query['all'] == ['1']
    assert json.loads(query['filters'][0]) == {'label': ['mtd.service=web'], 'status': ['exited']}


def test_encode_filters():
    assert encode_filters(None) is None
    assert encode_filters({'dangling': True, 'label': ('a=b', 'c')}) == {'dangling': ['true'], 'label': ['a=b', 'c']}


@pytest.mark.parametrize('status, reason', [(404, 'Not Found'), (500, 'Internal Server Error'), (409, 'Conflict')])
def test_error_body_message_is_included(engine, status, reason):
    engine.routes[('GET', '/containers/nope/json')] = (status, {'message': 'No such container: nope'})
    client = _client(engine, api_version='1.41')
    with pytest.raises(DockerError) as excinfo:
        client.inspect_container('nope')
    assert excinfo.value.status == status
    assert str(excinfo.value) == 'GET /containers/nope/json failed with %s %s: No such container: nope' % (status, reason)


def test_error_without_json_body(engine):
    engine.routes[('POST', '/containers/x/start')] = (500, 'runtime exploded\n')
    client = _client(engine, api_version='1.41')
    with pytest.raises(DockerError, match='failed with 500 Internal Server Error: runtime exploded$'):
        client.post('/containers/x/start')


def test_unknown_path_gives_404(engine):
    client = _client(engine, api_version='1.41')
    with pytest.raises(DockerError) as excinfo:
        client.get('/no/such/endpoint')
    assert excinfo.value.status == 404
    assert 'page not found' in excinfo.value.msg


def test_post_json_body_and_empty_answer(engine):
    engine.routes[('POST', '/containers/abc/checkpoints')] = (201, b'')
    client = _client(engine, api_version='1.41')
    assert client.post('/containers/abc/checkpoints', body={'CheckpointID': 'cp1', 'Exit': False}) is None
    request = engine.requests[-1]
    assert request['headers']['Content-Type'] == 'application/json'
    assert json.loads(request['body']) == {'CheckpointID': 'cp1', 'Exit': False}


def test_delete_with_params_and_204(engine):
    engine.routes[('DELETE', '/containers/abc')] = (204, None)
    client = _client(engine, api_version='1.41')
    assert client.delete('/containers/abc', params={'force': True, 'v': False, 'link': None}) is None
    assert engine.requests[-1]['query'] == {'force': ['1'], 'v': ['0']}


def test_put_streams_a_file_object(engine):
    engine.routes[('PUT', '/containers/abc/archive')] = (200, b'')
    tarball = io.BytesIO(b'\x00' * 70000)
    client = _client(engine, api_version='1.41')
    assert client.put('/containers/abc/archive', params={'path': '/tmp'}, body=tarball,
                      headers={'Content-Type': 'application/x-tar'}) is None
    request = engine.requests[-1]
    assert request['headers']['Content-Type'] == 'application/x-tar'
    assert request['body'] == b'\x00' * 70000
    assert request['query'] == {'path': ['/tmp']}


def test_stream_response_in_chunks(engine):
    chunks = [b'a' * 1000, b'b' * 70000, b'c']
    engine.routes[('GET', '/containers/abc/export')] = (200, chunks, {'Content-Type': 'application/x-tar'})
    client = _client(engine, api_version='1.41')
    with client.request('GET', '/containers/abc/export', stream=True) as response:
        assert response.status == 200
        assert response.header('Content-Type') == 'application/x-tar'
        data = b''.join(response.iter_content(4096))
    assert data == b''.join(chunks)


def test_stream_json_lines(engine):
    lines = [b'{"status":"Pulling"}\n{"status":"Down', b'loading"}\n', b'{"status":"Done"}']
    engine.routes[('POST', '/images/create')] = (200, lines)
    client = _client(engine, api_version='1.41')
    with client.request('POST', '/images/create', params={'fromImage': 'busybox'}, stream=True) as response:
        assert [item['status'] for item in response.iter_json()] == ['Pulling', 'Downloading', 'Done']


@pytest.mark.parametrize('reference, from_image, tag', [
    ('busybox', 'busybox', 'latest'),
    ('127.0.0.1:5000/team/app', '127.0.0.1:5000/team/app', 'latest'),
    ('127.0.0.1:5000/team/app:1.4', '127.0.0.1:5000/team/app', '1.4'),
    ('127.0.0.1:5000/team/app@sha256:' + 'a' * 64, '127.0.0.1:5000/team/app', 'sha256:' + 'a' * 64),
])
def test_pull_image_splits_the_reference(engine, reference, from_image, tag):
    engine.routes[('POST', '/images/create')] = (200, [b'{"status":"Done"}\n'])
    _client(engine, api_version='1.41').pull_image(reference)
    query = engine.requests[-1]['query']
    assert query == {'fromImage': [from_image], 'tag': [tag]}


def test_pull_image_error_in_the_stream(engine):
    engine.routes[('POST', '/images/create')] = (200, [b'{"error":"manifest unknown"}\n'])
    with pytest.raises(DockerError, match='Pulling app:9 failed: manifest unknown'):
        _client(engine, api_version='1.41').pull_image('app:9')


def test_stream_error_raises_before_reading(engine):
    engine.routes[('GET', '/containers/gone/export')] = (404, {'message': 'No such container: gone'})
    client = _client(engine, api_version='1.41')
    with pytest.raises(DockerError, match='No such container: gone') as excinfo:
        client.request('GET', '/containers/gone/export', stream=True)
    assert excinfo.value.status == 404


def test_non_json_answer_is_a_docker_error(engine):
    engine.routes[('GET', '/info')] = (200, '<html>proxy</html>')
    client = _client(engine, api_version='1.41')
    with pytest.raises(DockerError, match='not JSON'):
        client.info()


def test_path_is_quoted(engine):
    client = _client(engine, api_version='1.41')
    with pytest.raises(DockerError):
        client.inspect_container('a/../b')
    assert engine.requests[-1]['raw_path'] == '/v1.41/containers/a%2F..%2Fb/json'


# -- connection problems --------------------------------------------------------------------------

def test_missing_socket(sockdir):
    client = DockerClient('unix://%s/absent.sock' % sockdir, timeout=2)
    with pytest.raises(DockerError) as excinfo:
        client.ping()
    assert excinfo.value.status is None
    assert 'does not exist' in str(excinfo.value)
    assert 'Is the daemon running' in str(excinfo.value)


def test_socket_without_listener(sockdir):
    path = os.path.join(sockdir, 'dead.sock')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()  # the file stays, nobody listens: connection refused
    with pytest.raises(DockerError, match='Cannot reach the Docker engine at unix://'):
        DockerClient('unix://' + path, timeout=2).info()


def test_timeout(sockdir):
    path = os.path.join(sockdir, 'slow.sock')
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    accepted = []

    def accept():
        conn, dummy = listener.accept()
        accepted.append(conn)  # never answers

    thread = threading.Thread(target=accept)
    thread.daemon = True
    thread.start()
    try:
        with pytest.raises(DockerError, match='no answer within 0.3 seconds'):
            DockerClient('unix://' + path, api_version='1.41', timeout=0.3).info()
    finally:
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()


# -- Ansible glue ---------------------------------------------------------------------------------

def test_argument_spec():
    spec = docker_argument_spec()
    assert sorted(spec) == ['api_version', 'docker_host', 'timeout']
    assert spec['docker_host']['default'] == 'unix:///var/run/docker.sock'
    assert spec['docker_host']['fallback'][1] == ['DOCKER_HOST']
    assert spec['api_version']['default'] == 'auto'
    assert spec['timeout'] == {'type': 'int', 'default': 60}


class _FakeModule:
    def __init__(self, params):
        self.params = params
        self.failed = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise SystemExit(1)


def test_client_from_params():
    client = client_from_params({'docker_host': 'tcp://127.0.0.1:2375', 'api_version': '1.41', 'timeout': 7})
    assert client._netloc == ('127.0.0.1', 2375)
    assert client.api_version == '1.41'
    assert client.timeout == 7


@pytest.mark.parametrize('params, message', [
    ({'docker_host': 'ssh://root@lab-1', 'api_version': 'auto', 'timeout': 60}, 'Invalid Docker connection option: docker_host'),
    ({'docker_host': DEFAULT_DOCKER_HOST, 'api_version': 'newest', 'timeout': 60}, "Invalid Docker connection option: 'newest'"),
    ({'docker_host': DEFAULT_DOCKER_HOST, 'api_version': 'auto', 'timeout': 0}, 'timeout must be a positive number'),
])
def test_client_from_params_bad_options(params, message):
    module = _FakeModule(params)
    with pytest.raises(MtdError) as info:
        client_from_params(module.params)
    assert info.value.msg.startswith(message)
    assert module.failed is None


def test_demux_stream():
    raw = b'\x01\x00\x00\x00\x00\x00\x00\x03out' + b'\x02\x00\x00\x00\x00\x00\x00\x04err!'
    assert demux_stream(raw) == b'outerr!'
    assert demux_stream(b'plain tty output') == b'plain tty output'
    assert demux_stream(b'') == b''
