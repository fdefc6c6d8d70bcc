# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small Docker Engine API client on the Python standard library.

This is a private module_utils file (leading underscore): its API may change without notice.
Managed hosts need no docker SDK: requests go through ``http.client`` over the engine's AF_UNIX socket
(``unix:///var/run/docker.sock``) or over plain HTTP (``tcp://host:2375``). TLS and ssh:// are not
supported. Python 3.8+.

Usage::

    client = DockerClient('unix:///var/run/docker.sock', api_version='auto', timeout=60)
    info = client.info()
    running = client.containers()
    with client.request('GET', '/containers/%s/export' % cid, stream=True) as response:
        for chunk in response.iter_content():
            ...

Every failure raises DockerError whose message is one readable sentence that includes the engine's
JSON ``message`` when there is one; ``status`` is the HTTP status or None when no answer came.
"""

from __future__ import annotations

import json
import re
import socket
from http import client as http_client
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote, urlencode, urlsplit

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError, split_image_reference

DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock'
DEFAULT_TIMEOUT = 60
DEFAULT_API_VERSION = 'auto'
# The newest API version this client asks for when negotiating ('auto'): the engine's version, capped
# here, the way the docker CLI negotiates. Engines accept older versions down to their minimum
# (1.24 for Docker 25+, 1.44 for Docker 29+), so keep this >= 1.44.
MAX_API_VERSION = '1.47'

_API_VERSION_RE = re.compile(r'^v?(\d+)\.(\d+)$')
_CHUNK_SIZE = 65536


class DockerError(MtdError):
    """A failed Engine API call; ``status`` is the HTTP status, or None when no answer came."""

    prefix = 'Docker engine error: '

    def __init__(self, msg: str, status: Optional[int] = None, **details: Any) -> None:
        super().__init__(msg, **details)
        self.status = status


def _version_tuple(version: Any) -> Tuple[int, int]:
    match = _API_VERSION_RE.match(str(version).strip())
    if not match:
        raise ValueError('%r is not an API version like "1.41"' % (version,))
    return int(match.group(1)), int(match.group(2))


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as API version ``a`` is older than, equal to or newer than ``b``."""
    ta, tb = _version_tuple(a), _version_tuple(b)
    return (ta > tb) - (ta < tb)


class _UnixHTTPConnection(http_client.HTTPConnection):
    """HTTPConnection over an AF_UNIX stream socket."""

    def __init__(self, socket_path, timeout):
        super().__init__('localhost', timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except Exception:
            sock.close()
            raise
        self.sock = sock


class DockerResponse:
    """An answer of the engine.

    For ``stream=False`` the body is already read (``data``); for ``stream=True`` read it with
    ``read()``, ``iter_content()`` or ``iter_json()`` and close the response (it is a context manager).
    """

    def __init__(self, response, connection, method, path, data=None):
        self._response = response
        self._connection = connection
        self.method = method
        self.path = path
        self.status = response.status
        self.reason = response.reason
        self.headers = response.headers
        self.data = data

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        return self._response.getheader(name, default)

    def read(self, amt: Optional[int] = None) -> bytes:
        if self.data is not None:
            if amt is None:
                data, self.data = self.data, b''
            else:
                data, self.data = self.data[:amt], self.data[amt:]
            return data
        try:
            return self._response.read(amt) if amt is not None else self._response.read()
        except (OSError, http_client.HTTPException) as exc:
            raise DockerError('Reading the answer to %s %s failed: %s' % (self.method, self.path, exc))

    def iter_content(self, chunk_size: int = _CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the body in chunks of bytes (e.g. a checkpoint or export tarball)."""
        while True:
            chunk = self.read(chunk_size)
            if not chunk:
                break
            yield chunk

    def iter_json(self) -> Iterator[Any]:
        """Yield the decoded objects of a JSON stream (one object per line, as pull/build progress)."""
        buffer = b''
        for chunk in self.iter_content():
            buffer += chunk
            while b'\n' in buffer:
                line, buffer = buffer.split(b'\n', 1)
                if line.strip():
                    yield _decode_json(line, self.method, self.path)
        if buffer.strip():
            yield _decode_json(buffer, self.method, self.path)

    def json(self) -> Any:
        body = self.read()
        if not body or not body.strip():
            return None
        return _decode_json(body, self.method, self.path)

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            self._connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _decode_json(body, method, path):
    try:
        return json.loads(body.decode('utf-8') if isinstance(body, bytes) else body)
    except ValueError as exc:
        raise DockerError('The engine answered %s %s with something that is not JSON (%s): %r'
                          % (method, path, exc, body[:200]))


def _error_message(body):
    """The ``message`` of an engine error body, else the body text."""
    text = body.decode('utf-8', 'replace').strip() if isinstance(body, bytes) else (body or '').strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(data, dict) and data.get('message'):
        return str(data['message'])
    return text[:500]


def _query_value(value):
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(',', ':'))
    return str(value)


def encode_filters(filters: Optional[Dict[str, Any]]) -> Optional[Dict[str, List[str]]]:
    """Engine filter map ``{"label": ["a=b"], "status": ["running"]}``; plain strings become lists."""
    if not filters:
        return None
    encoded = {}
    for key, value in filters.items():
        if isinstance(value, (list, tuple, set)):
            encoded[key] = [str(item) for item in value]
        elif isinstance(value, bool):
            encoded[key] = ['true' if value else 'false']
        else:
            encoded[key] = [str(value)]
    return encoded


class DockerClient:
    """Docker Engine API client.

    ``docker_host`` is ``unix:///path/to/docker.sock`` (default :data:`DEFAULT_DOCKER_HOST`),
    ``tcp://host:port`` or ``http://host:port`` (plain HTTP). ``api_version`` is ``auto`` (negotiate
    with the engine on first use) or a version such as ``1.41``. ``timeout`` is in seconds.

    Raises ValueError for a ``docker_host`` or ``api_version`` this client cannot use.
    """

    def __init__(self, docker_host: Optional[str] = None, api_version: Optional[str] = DEFAULT_API_VERSION,
                 timeout: Optional[float] = DEFAULT_TIMEOUT) -> None:
        self.docker_host = docker_host or DEFAULT_DOCKER_HOST
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self._socket_path: Optional[str] = None
        self._netloc: Optional[Tuple[str, int]] = None
        self._api_version: Optional[str]
        self._parse_host(self.docker_host)
        requested = (api_version or DEFAULT_API_VERSION).strip()
        if requested.lower() == 'auto':
            self._api_version = None
        else:
            major, minor = _version_tuple(requested)
            self._api_version = '%d.%d' % (major, minor)

    def _parse_host(self, docker_host):
        if docker_host.startswith('unix://'):
            path = docker_host[len('unix://'):]
            if not path.startswith('/'):
                raise ValueError('docker_host %r must give an absolute socket path, as unix:///var/run/docker.sock'
                                 % (docker_host,))
            self._socket_path = path
            return
        if docker_host.startswith('/'):
            self._socket_path = docker_host
            return
        parts = urlsplit(docker_host)
        if parts.scheme in ('tcp', 'http') and parts.hostname:
            port = parts.port or 2375
            host = parts.hostname
            self._netloc = (host, port)
            return
        raise ValueError(
            'docker_host %r is not supported; use unix:///path/to/docker.sock or tcp://host:port '
            '(plain HTTP; TLS and ssh:// are not supported by this client)' % (docker_host,))

    # -- connection ---------------------------------------------------------------------------

    def _connection(self) -> http_client.HTTPConnection:
        if self._socket_path is not None:
            return _UnixHTTPConnection(self._socket_path, self.timeout)
        host, port = self._netloc or ('localhost', 2375)
        return http_client.HTTPConnection(host, port, timeout=self.timeout)

    def _connect_error(self, exc):
        if isinstance(exc, socket.timeout):
            reason = 'no answer within %s seconds' % (self.timeout,)
        elif isinstance(exc, FileNotFoundError):
            reason = 'the socket %s does not exist' % (self._socket_path,)
        elif isinstance(exc, PermissionError):
            reason = 'permission denied on %s' % (self._socket_path or self.docker_host,)
        else:
            reason = str(exc) or exc.__class__.__name__
        return DockerError(
            'Cannot reach the Docker engine at %s: %s. Is the daemon running, and is docker_host '
            '(or DOCKER_HOST) right?' % (self.docker_host, reason))

    @property
    def api_version(self) -> str:
        """The API version in use (negotiated on first access when ``auto``)."""
        if self._api_version is None:
            self._api_version = self._negotiate()
        return self._api_version

    def _negotiate(self):
        response = self._raw('GET', '/_ping', versioned=False)
        server = response.header('Api-Version')
        if not server:
            version = self._raw('GET', '/version', versioned=False).json() or {}
            server = version.get('ApiVersion')
        if not server:
            raise DockerError('The Docker engine at %s did not tell its API version; set api_version.'
                              % (self.docker_host,))
        try:
            if compare_versions(server, MAX_API_VERSION) > 0:
                return MAX_API_VERSION
            major, minor = _version_tuple(server)
        except ValueError:
            raise DockerError('The Docker engine at %s reported an unusable API version %r; set api_version.'
                              % (self.docker_host, server))
        return '%d.%d' % (major, minor)

    def _url(self, path, params, versioned):
        if not path.startswith('/'):
            path = '/' + path
        if versioned:
            path = '/v%s%s' % (self.api_version, path)
        if params:
            query = [(key, _query_value(value)) for key, value in params.items() if value is not None]
            if query:
                path += '?' + urlencode(query)
        return path

    def _raw(self, method, path, params=None, body=None, headers=None, stream=False, versioned=True):
        url = self._url(path, params, versioned)
        send_headers = {'Host': 'docker' if self._socket_path else '%s:%s' % (self._netloc or ('localhost', 2375))}
        send_headers.update(headers or {})
        payload = body
        if isinstance(body, (dict, list)):
            payload = json.dumps(body).encode('utf-8')
            send_headers.setdefault('Content-Type', 'application/json')
        elif isinstance(body, str):
            payload = body.encode('utf-8')

        connection = self._connection()
        try:
            connection.request(method, url, body=payload, headers=send_headers)
            response = connection.getresponse()
        except (OSError, http_client.HTTPException) as exc:
            connection.close()
            raise self._connect_error(exc)

        if response.status >= 400:
            try:
                error_body = response.read()
            except (OSError, http_client.HTTPException):
                error_body = b''
            finally:
                connection.close()
            message = _error_message(error_body) or response.reason
            raise DockerError('%s %s failed with %s %s: %s'
                              % (method, path, response.status, response.reason, message),
                              status=response.status)

        if stream:
            return DockerResponse(response, connection, method, path)
        try:
            data = response.read()
        except (OSError, http_client.HTTPException) as exc:
            raise DockerError('Reading the answer to %s %s failed: %s' % (method, path, exc))
        finally:
            connection.close()
        return DockerResponse(response, connection, method, path, data=data)

    # -- generic calls ------------------------------------------------------------------------

    def request(self, method: str, path: str, params: Optional[Dict[str, Any]] = None, body: Any = None,
                headers: Optional[Dict[str, str]] = None, stream: bool = False) -> DockerResponse:
        """Send one request to the versioned API and return a DockerResponse.

        ``body`` may be a dict/list (sent as JSON), str, bytes or a binary file object (sent as is;
        give ``Content-Type``, e.g. ``application/x-tar``). Statuses >= 400 raise DockerError.
        """
        return self._raw(method, path, params=params, body=body, headers=headers, stream=stream)

    def get(self, path: str, params: Optional[Dict[str, Any]] = None, headers: Optional[Dict[str, str]] = None) -> Any:
        return self.request('GET', path, params=params, headers=headers).json()

    def post(self, path: str, params: Optional[Dict[str, Any]] = None, body: Any = None,
             headers: Optional[Dict[str, str]] = None) -> Any:
        return self.request('POST', path, params=params, body=body, headers=headers).json()

    def put(self, path: str, params: Optional[Dict[str, Any]] = None, body: Any = None,
            headers: Optional[Dict[str, str]] = None) -> Any:
        return self.request('PUT', path, params=params, body=body, headers=headers).json()

    def delete(self, path: str, params: Optional[Dict[str, Any]] = None,
               headers: Optional[Dict[str, str]] = None) -> Any:
        return self.request('DELETE', path, params=params, headers=headers).json()

    # -- convenience --------------------------------------------------------------------------

    def ping(self) -> bool:
        """True when the engine answers ``GET /_ping`` with OK (raises DockerError otherwise)."""
        response = self._raw('GET', '/_ping', versioned=False)
        return response.read().strip() == b'OK'

    def version(self) -> Dict[str, Any]:
        return self.get('/version')

    def info(self) -> Dict[str, Any]:
        return self.get('/info')

    def containers(self, all: bool = False,  # pylint: disable=redefined-builtin
                   filters: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
        """``GET /containers/json``: running containers, or all of them with ``all=True``."""
        params = {'all': all or None, 'filters': encode_filters(filters)}
        return self.get('/containers/json', params=params) or []

    def inspect_container(self, container_id: str) -> Dict[str, Any]:
        return self.get('/containers/%s/json' % quote(container_id, safe=''))

    # -- images and container lifecycle (used by container_recreate / the rebase_rollout role) -------

    def inspect_image(self, image: str) -> Optional[Dict[str, Any]]:
        """``GET /images/{name}/json``, or None when the engine does not have the image."""
        try:
            return self.get('/images/%s/json' % quote(image, safe=':@/'))
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise

    def pull_image(self, reference: str, registry_auth: Optional[str] = None) -> None:
        """``POST /images/create`` for ``repo:tag`` or ``repo@sha256:...``; raises DockerError on a failed pull."""
        name, tag, digest = split_image_reference(reference)
        headers = {'X-Registry-Auth': registry_auth} if registry_auth else None
        with self.request('POST', '/images/create', params={'fromImage': name, 'tag': digest or tag or 'latest'}, headers=headers,
                          stream=True) as response:
            for item in response.iter_json():
                if isinstance(item, dict) and item.get('error'):
                    raise DockerError('Pulling %s failed: %s' % (reference, item['error']))

    def create_container(self, name: str, body: Dict[str, Any]) -> str:
        """``POST /containers/create``; returns the new container's id."""
        created = self.post('/containers/create', params={'name': name}, body=body) or {}
        if not created.get('Id'):
            raise DockerError('The engine answered POST /containers/create for %s without the new id.' % (name,))
        return created['Id']

    def start_container(self, container_id: str) -> None:
        self.request('POST', '/containers/%s/start' % quote(container_id, safe=''))

    def stop_container(self, container_id: str, timeout: int = 10) -> None:
        try:
            self.request('POST', '/containers/%s/stop' % quote(container_id, safe=''), params={'t': timeout})
        except DockerError as exc:
            if exc.status != 304:  # already stopped
                raise

    def rename_container(self, container_id: str, name: str) -> None:
        self.request('POST', '/containers/%s/rename' % quote(container_id, safe=''), params={'name': name})

    def remove_container(self, container_id: str, force: bool = False, volumes: bool = False) -> None:
        """Remove a container; anonymous volumes are kept unless ``volumes``; named volumes always are."""
        self.request('DELETE', '/containers/%s' % quote(container_id, safe=''),
                     params={'force': force or None, 'v': volumes or None})

    def exec_run(self, container_id: str, cmd: List[str], timeout: Optional[float] = None) -> Tuple[Optional[int], str]:
        """Run ``cmd`` (list) in a running container; returns ``(exit_code, output_text)``."""
        created = self.post('/containers/%s/exec' % quote(container_id, safe=''),
                            body={'Cmd': list(cmd), 'AttachStdout': True, 'AttachStderr': True, 'Tty': False})
        exec_id = created['Id']
        with self.request('POST', '/exec/%s/start' % exec_id, body={'Detach': False, 'Tty': False},
                          stream=True) as response:
            raw = b''.join(response.iter_content())
        info = self.get('/exec/%s/json' % exec_id) or {}
        return info.get('ExitCode'), demux_stream(raw).decode('utf-8', 'replace')


def demux_stream(raw: bytes) -> bytes:
    """The payload of a multiplexed attach/exec stream (8-byte frame headers), stdout and stderr joined.

    Data that does not start with a frame header (a TTY stream) is returned as is.
    """
    out = []
    pos = 0
    while pos + 8 <= len(raw) and raw[pos] in (0, 1, 2) and raw[pos + 1:pos + 4] == b'\x00\x00\x00':
        size = int.from_bytes(raw[pos + 4:pos + 8], 'big')
        out.append(raw[pos + 8:pos + 8 + size])
        pos += 8 + size
    if pos == 0:
        return raw
    return b''.join(out)


# ---------------------------------------------------------------------------------------------
# Ansible glue

def docker_argument_spec() -> Dict[str, Any]:
    """The connection options documented by the ``mtd.containers.docker`` doc fragment."""
    # Imported here so that the client above stays usable outside of Ansible modules.
    from ansible.module_utils.basic import env_fallback

    return dict(
        docker_host=dict(type='str', default=DEFAULT_DOCKER_HOST, fallback=(env_fallback, ['DOCKER_HOST'])),
        api_version=dict(type='str', default=DEFAULT_API_VERSION),
        timeout=dict(type='int', default=DEFAULT_TIMEOUT),
    )


def client_from_params(params: Dict[str, Any]) -> DockerClient:
    """A DockerClient from the connection options in ``params``; bad values raise MtdError.

    Nothing is sent to the engine here: the first call connects.
    """
    if params.get('timeout') is not None and params['timeout'] <= 0:
        raise MtdError('timeout must be a positive number of seconds, got %s.' % (params['timeout'],))
    try:
        return DockerClient(
            docker_host=params.get('docker_host'),
            api_version=params.get('api_version'),
            timeout=params.get('timeout'),
        )
    except ValueError as exc:
        raise MtdError('Invalid Docker connection option: %s.' % (exc,))
