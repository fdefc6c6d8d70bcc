# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small OCI / Docker Registry HTTP API v2 client on the Python standard library.

This is a private module_utils file (leading underscore): its API may change without notice. Python 3.8+.

What it does, and only that: manifests (Docker v2 schema 2, OCI image manifest, manifest list, OCI index)
GET / HEAD / PUT with their exact bytes and digest, blob HEAD / GET (small blobs such as configs),
cross-repository mount (``mount`` + ``from``; a refused mount opens an upload session, which is cancelled),
monolithic blob upload (for configs), basic and bearer-token authentication (one token for every scope the
client was told about), TLS verification on by default with an optional CA bundle, and request / byte
accounting in :attr:`RegistryClient.stats`.

Where credentials go (the registry may be hostile, or someone on the path may answer for it):

- ``Authorization`` (Basic credentials or the bearer token) is attached only to requests whose origin (scheme,
  host, port) is the registry's own. ``http.client`` follows no redirect by itself; the one redirect the client
  follows (a blob GET sent to a storage backend, :meth:`RegistryClient.get_blob`) carries no ``Authorization``
  unless it comes back to the registry's origin, and never goes from https down to http. A 401 from another
  origin (an upload ``Location`` elsewhere) is refused, not answered.
- A ``Bearer`` challenge's realm must be an http(s) URL, and https when the registry is https
  (:func:`check_realm`). The Basic credentials go to the realm only when its host and port are the registry's,
  when it is Docker Hub's own token service, or when the operator listed it in ``realm_hosts``
  (:func:`credentials_allowed`); otherwise the client refuses before sending anything. Anonymous token requests
  carry no credentials and may go to any http(s) realm that passes :func:`check_realm`.
- A token asks for exactly the scopes the client was told about (``add_scope``) plus what the request being
  answered needs (:func:`request_scopes`: ``pull`` for GET/HEAD, ``pull,push`` for writes, ``pull`` on the
  ``from`` repository of a mount); the challenge's own ``scope`` is ignored, so a registry cannot make the
  client ask for ``delete`` or for repositories the operation does not touch.

Every failure raises :class:`RegistryError` whose message is one readable sentence, with the registry's
error code when it gave one; ``status`` is the HTTP status or None when no answer came.

Usage::

    ref = parse_reference('127.0.0.1:5000/team/app:1')
    client = RegistryClient(ref.registry, username='u', password='p')
    client.add_scope(ref.repository, 'pull')
    manifest = client.get_manifest(ref.repository, ref.tag)
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import socket
import ssl
import time
from http import client as http_client
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union, overload
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError

# -- media types ------------------------------------------------------------------------------

DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
DOCKER_SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+json'
DOCKER_SCHEMA1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws'
OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json'
OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'

IMAGE_MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
# Sent with every manifest GET/HEAD: without the schema 2 types, registry 2.x rewrites tags to schema 1.
MANIFEST_ACCEPT = ', '.join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

DEFAULT_TIMEOUT = 60
USER_AGENT = 'mtd.containers-registry/1'
DOCKER_HUB = 'docker.io'
DOCKER_HUB_API = 'registry-1.docker.io'
# Docker Hub's registry sends clients to this token service; its credentials may go there without listing it.
DOCKER_HUB_AUTH = 'auth.docker.io'
DEFAULT_PORTS = {'http': 80, 'https': 443}
READ_METHODS = ('GET', 'HEAD')

_DIGEST_RE = re.compile(r'^sha256:[0-9a-f]{64}$')
_TAG_RE = re.compile(r'^[\w][\w.-]{0,127}$')
_REPO_COMPONENT_RE = re.compile(r'^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$')
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_MAX_ERROR_BODY = 2000
# /v2/<name>/manifests/<ref>, /v2/<name>/blobs/<digest>, /v2/<name>/blobs/uploads/[<session>], /v2/<name>/tags/list
_API_PATH_RE = re.compile(r'^/v2/(?P<name>.+)/(?:manifests/[^/]+|blobs/uploads/[^/]*|blobs/[^/]+|tags/list)$')


class RegistryError(MtdError):
    """A failed registry operation; ``status`` is the HTTP status, or None when no answer came.

    ``code`` is the first error code of the registry's JSON error body (such as ``MANIFEST_UNKNOWN``).
    """

    def __init__(self, msg: str, status: Optional[int] = None, code: Optional[str] = None, **details: Any) -> None:
        super().__init__(msg, **details)
        self.status = status
        self.code = code


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data`` (bytes)."""
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def is_digest(value: Any) -> bool:
    return isinstance(value, str) and bool(_DIGEST_RE.match(value))


# -- references -------------------------------------------------------------------------------

class Reference:
    """A parsed image reference: ``registry``, ``repository``, ``tag`` and/or ``digest``."""

    def __init__(self, registry: str, repository: str, tag: Optional[str] = None, digest: Optional[str] = None) -> None:
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest

    @property
    def reference(self) -> str:
        """What goes into ``/v2/<repo>/manifests/<reference>``: the digest when there is one, else the tag.

        ``parse_reference`` always gives one unless called with ``default_tag=None``; without either the
        reference names no manifest (ValueError).
        """
        value = self.digest or self.tag
        if not value:
            raise ValueError('%s has neither a tag nor a digest' % (self.name,))
        return value

    @property
    def name(self) -> str:
        """``registry/repository`` (the docker.io short form is not used)."""
        return '%s/%s' % (self.registry, self.repository)

    def with_digest(self, digest: str) -> str:
        return '%s@%s' % (self.name, digest)

    def with_tag(self, tag: str) -> str:
        return '%s:%s' % (self.name, tag)

    def __str__(self):
        text = self.name
        if self.tag:
            text += ':' + self.tag
        if self.digest:
            text += '@' + self.digest
        return text

    def __repr__(self):
        return 'Reference(%r)' % (str(self),)

    def __eq__(self, other):
        return isinstance(other, Reference) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


def parse_reference(text: Any, default_tag: Optional[str] = 'latest') -> Reference:
    """Parse ``[registry/]repository[:tag][@sha256:...]``.

    The first path component is the registry when it contains ``.`` or ``:`` or is ``localhost``;
    otherwise the registry is Docker Hub (``docker.io``, with ``library/`` for one-component names).
    Without tag and digest the tag is ``default_tag`` (None keeps it unset).

    Raises ValueError with a readable message.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError('an image reference must be a non-empty string, got %r' % (text,))
    rest = text.strip()
    digest = None
    if '@' in rest:
        rest, digest = rest.split('@', 1)
        if not is_digest(digest):
            raise ValueError('%r has an invalid digest %r; expected sha256: and 64 hex digits' % (text, digest))
    tag = None
    slash = rest.rfind('/')
    colon = rest.rfind(':')
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG_RE.match(tag):
            raise ValueError('%r has an invalid tag %r' % (text, tag))
    parts = rest.split('/')
    if len(parts) > 1 and ('.' in parts[0] or ':' in parts[0] or parts[0] == 'localhost'):
        registry, components = parts[0], parts[1:]
    else:
        registry, components = DOCKER_HUB, parts
        if len(components) == 1:
            components = ['library'] + components
    if not components or not all(_REPO_COMPONENT_RE.match(c) for c in components):
        raise ValueError('%r has an invalid repository name %r (lowercase letters, digits and . _ - separators)'
                         % (text, '/'.join(components)))
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, '/'.join(components), tag=tag, digest=digest)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``), with or without port."""
    name = host
    if name.startswith('['):
        name = name[1:name.find(']')] if ']' in name else name[1:]
    elif name.count(':') == 1:
        name = name.split(':', 1)[0]
    if name == 'localhost':
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# -- challenges and errors --------------------------------------------------------------------

def parse_challenge(header: Optional[str]) -> Tuple[Optional[str], Dict[str, str]]:
    """``WWW-Authenticate`` → ``(scheme, {param: value})``; scheme lowercased, ``(None, {})`` if empty."""
    if not header:
        return None, {}
    header = header.strip()
    scheme, _sep, rest = header.partition(' ')
    params = {}
    for match in _CHALLENGE_PARAM_RE.finditer(rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = value.replace('\\"', '"')
    return scheme.lower(), params


def registry_error_detail(body: Union[bytes, str, None]) -> Tuple[Optional[str], str]:
    """``(code, text)`` from a registry error body ``{"errors": [{"code", "message", "detail"}]}``."""
    text = body.decode('utf-8', 'replace').strip() if isinstance(body, bytes) else (body or '').strip()
    try:
        data = json.loads(text)
    except ValueError:
        return None, text[:300]
    errors = data.get('errors') if isinstance(data, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = first.get('code')
        message = first.get('message') or ''
        detail = first.get('detail')
        if detail and not isinstance(detail, str):
            detail = json.dumps(detail, sort_keys=True)[:200]
        parts = [p for p in (code, message, detail) if p]
        return code, ': '.join(parts)
    return None, text[:300]


# -- where credentials may go -----------------------------------------------------------------

Origin = Tuple[str, str, int]


def origin_of(url: str) -> Origin:
    """``(scheme, host, port)`` of an absolute URL: scheme and host lowercased, the scheme's default port filled in.

    Raises ValueError when the URL has no host or an invalid port.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or '').lower()
    if not host:
        raise ValueError('%r has no host' % (url,))
    port = parts.port  # ValueError for a port that is not a number in 0-65535
    return scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme, 0)


def origin_text(origin: Origin) -> str:
    """``scheme://host[:port]`` (the port only when it is not the scheme's default), for messages."""
    scheme, host, port = origin
    shown = '[%s]' % host if ':' in host else host
    if port != DEFAULT_PORTS.get(scheme):
        shown += ':%d' % port
    return '%s://%s' % (scheme, shown)


def parse_host_port(text: Any) -> Tuple[str, Optional[int]]:
    """``host``, ``host:port`` or ``[v6]:port`` → ``(host lowercased, port or None)``; ValueError otherwise."""
    if not isinstance(text, str) or not text.strip() or any(c in text for c in '/?#@ '):
        raise ValueError('%r is not a host or host:port' % (text,))
    parts = urlsplit('//' + text.strip())
    try:
        port = parts.port
    except ValueError:
        raise ValueError('%r is not a host or host:port (bad port)' % (text,))
    if not parts.hostname:
        raise ValueError('%r is not a host or host:port' % (text,))
    return parts.hostname.lower(), port


def check_realm(realm: str, registry: str, registry_scheme: str) -> Origin:
    """The origin of a bearer challenge's ``realm``, or RegistryError when the client must not go there.

    Refused: a realm that is not an absolute http(s) URL, and a plain-http realm of an https registry (the
    credentials and the token would cross the network unencrypted). The message names the realm's host only.
    """
    try:
        origin = origin_of(realm)
    except ValueError:
        origin = None
    if origin is None or origin[0] not in DEFAULT_PORTS:
        scheme = urlsplit(realm).scheme or 'none'
        raise RegistryError('The registry %s names a token service (realm) that is not an http or https URL '
                            '(scheme %s); refused.' % (registry, scheme), status=401)
    if registry_scheme == 'https' and origin[0] != 'https':
        raise RegistryError('The registry %s is reached over https but sends clients to the plain-http token service '
                            '%s; refused, because credentials and tokens would cross the network unencrypted. Ask '
                            'the registry operator to serve the token service over https.'
                            % (registry, origin_text(origin)), status=401)
    return origin


def credentials_allowed(realm_origin: Origin, registry_origin: Origin, allowed: Sequence[Tuple[str, Optional[int]]]
                        ) -> bool:
    """Whether the Basic credentials may be sent to a token service at ``realm_origin``.

    Yes for the registry's own host and port, for Docker Hub's token service when the registry is Docker
    Hub, and for an entry of ``allowed`` (``(host, port)``; a None port means the realm scheme's default port).
    """
    scheme, host, port = realm_origin
    if (host, port) == registry_origin[1:]:
        return True
    if registry_origin[1] == DOCKER_HUB_API and (host, port) == (DOCKER_HUB_AUTH, 443) and scheme == 'https':
        return True
    for allowed_host, allowed_port in allowed:
        wanted = allowed_port if allowed_port is not None else DEFAULT_PORTS[scheme]
        if (allowed_host, wanted) == (host, port):
            return True
    return False


def request_scopes(method: str, url: str) -> Dict[str, Set[str]]:
    """What one API request needs, ``{repository: actions}``; ``{}`` for requests outside a repository.

    ``pull`` for GET/HEAD, ``pull`` and ``push`` for every other method (upload sessions are cancelled with
    DELETE, which is a push right too), and ``pull`` on the ``from`` repository of a cross-repository mount.
    """
    parts = urlsplit(url)
    match = _API_PATH_RE.match(parts.path)
    if not match:
        return {}
    scopes = {match.group('name'): {'pull'} if method in READ_METHODS else {'pull', 'push'}}
    if method == 'POST' and '/blobs/uploads/' in parts.path:
        for source in parse_qs(parts.query).get('from', []):
            scopes.setdefault(source, set()).add('pull')
    return scopes


class Manifest:
    """A manifest as the registry holds it: the exact ``data`` bytes, their ``digest`` and ``media_type``."""

    def __init__(self, data: bytes, media_type: str, digest: Optional[str] = None) -> None:
        self.data = data
        self.digest = digest or sha256_digest(data)
        try:
            self.json = json.loads(data.decode('utf-8'))
        except ValueError as exc:
            raise RegistryError('The manifest %s is not JSON: %s.' % (self.digest, exc))
        if not isinstance(self.json, dict):
            raise RegistryError('The manifest %s is not a JSON object.' % (self.digest,))
        self.media_type = self.json.get('mediaType') or media_type

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def descriptor(self) -> Dict[str, Any]:
        return {'mediaType': self.media_type, 'digest': self.digest, 'size': self.size}


class RequestStats:
    """What a client sent: requests per method and per kind, bytes up and down."""

    KINDS = ('ping', 'token', 'manifest_get', 'manifest_head', 'manifest_put', 'blob_head', 'blob_get',
             'blob_mount', 'blob_mount_fallback', 'blob_upload', 'upload_cancel', 'tags')

    def __init__(self):
        self.requests = 0
        self.by_method: Dict[str, int] = {}
        self.by_kind = dict((kind, 0) for kind in self.KINDS)
        self.bytes_uploaded = 0
        self.blob_bytes_uploaded = 0
        self.bytes_downloaded = 0

    def count(self, method: str, kind: Optional[str], sent: int = 0) -> None:
        self.requests += 1
        self.by_method[method] = self.by_method.get(method, 0) + 1
        if kind:
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        self.bytes_uploaded += sent

    @property
    def writes(self) -> int:
        """How many requests changed something in the registry (manifest PUTs, mounts, uploads)."""
        return self.by_kind['manifest_put'] + self.by_kind['blob_mount'] + self.by_kind['blob_upload']

    def as_dict(self) -> Dict[str, Any]:
        return {
            'requests': self.requests,
            'by_method': dict(sorted(self.by_method.items())),
            'by_kind': dict((k, v) for k, v in sorted(self.by_kind.items()) if v),
            'bytes_uploaded': self.bytes_uploaded,
            'blob_bytes_uploaded': self.blob_bytes_uploaded,
            'bytes_downloaded': self.bytes_downloaded,
            'writes': self.writes,
        }


class _Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        value = self.headers.get(name)
        return default if value is None else value


class RegistryClient:
    """A client for one registry (``host[:port]``).

    ``scheme`` is ``auto`` (plain HTTP for loopback registries, HTTPS otherwise), ``https`` or ``http``.
    ``username``/``password`` are used for basic auth, or to obtain bearer tokens. ``validate_certs`` and
    ``ca_path`` control TLS verification. Scopes (``add_scope``) are requested together in one token.
    ``realm_hosts`` (``host`` or ``host:port`` strings) are token services other than the registry's own host
    that may receive the credentials (see the module docstring).
    """

    def __init__(self, registry: str, scheme: str = 'auto', username: Optional[str] = None,
                 password: Optional[str] = None, validate_certs: bool = True, ca_path: Optional[str] = None,
                 timeout: Optional[float] = DEFAULT_TIMEOUT, realm_hosts: Sequence[str] = ()) -> None:
        if not registry:
            raise ValueError('a registry host is required')
        self.registry = registry
        if scheme not in ('auto', 'http', 'https'):
            raise ValueError('registry scheme must be auto, http or https, got %r' % (scheme,))
        if scheme == 'auto':
            scheme = 'http' if is_loopback_host(registry) else 'https'
        self.scheme = scheme
        self.api_host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        self.base_url = '%s://%s' % (scheme, self.api_host)
        try:
            self.origin = origin_of(self.base_url)
        except ValueError:
            raise ValueError('%r is not a registry host or host:port' % (registry,))
        self.realm_hosts = [parse_host_port(entry) for entry in realm_hosts or ()]
        self.username = username
        self.password = password
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout if timeout else DEFAULT_TIMEOUT
        self.stats = RequestStats()
        self._scopes: Dict[str, Set[str]] = {}
        self._token_scopes: Optional[List[str]] = None
        self._authorization: Optional[str] = None
        self._auth_scheme: Optional[str] = None
        self._challenge = None
        self._connections: Dict[Tuple[str, str], http_client.HTTPConnection] = {}
        self._ssl_context: Optional[ssl.SSLContext] = None

    # -- scopes and auth --------------------------------------------------------------------

    def add_scope(self, repository: str, actions: Union[str, Sequence[str]]) -> None:
        """Remember that the operation needs ``actions`` (``pull`` / ``push``, str or list) on ``repository``."""
        if isinstance(actions, str):
            actions = [a.strip() for a in actions.split(',') if a.strip()]
        current = self._scopes.setdefault(repository, set())
        current.update(actions)

    def scopes(self) -> List[str]:
        """The scope strings of a token request, ``repository:<name>:<actions>``, sorted."""
        order = {'pull': 0, 'push': 1}
        return ['repository:%s:%s' % (repo, ','.join(sorted(actions, key=lambda a: (order.get(a, 9), a))))
                for repo, actions in sorted(self._scopes.items())]

    def _basic_header(self):
        raw = ('%s:%s' % (self.username or '', self.password or '')).encode('utf-8')
        return 'Basic ' + base64.b64encode(raw).decode('ascii')

    def _authenticate(self, challenge_header, method, url):
        """Answer a 401 of the registry: set ``self._authorization`` or raise RegistryError."""
        path = urlsplit(url).path
        scheme, params = parse_challenge(challenge_header)
        if scheme == 'basic':
            if not self.username:
                raise RegistryError('The registry %s requires authentication (basic) for %s %s; give registry_username '
                                    'and registry_password.' % (self.registry, method, path), status=401)
            if self._auth_scheme == 'basic':
                raise RegistryError('The registry %s rejected the credentials of user %r (basic auth); check '
                                    'registry_username and registry_password.' % (self.registry, self.username),
                                    status=401, code='UNAUTHORIZED')
            self._auth_scheme = 'basic'
            self._authorization = self._basic_header()
            return
        if scheme == 'bearer':
            realm = params.get('realm')
            if not realm:
                raise RegistryError('The registry %s asked for a bearer token without a realm.' % (self.registry,),
                                    status=401)
            # The challenge's own scope is not merged: the token asks for what the operation needs, no more.
            for repository, actions in request_scopes(method, url).items():
                self.add_scope(repository, sorted(actions))
            scopes = self.scopes()
            if self._auth_scheme == 'bearer' and scopes == self._token_scopes:
                raise RegistryError('The registry %s refused the bearer token for %s %s (scopes %s); the account %s '
                                    'lacks these rights.' % (self.registry, method, path, ' '.join(scopes) or 'none',
                                                             repr(self.username) if self.username else '(anonymous)'),
                                    status=401, code='UNAUTHORIZED')
            self._authorization = 'Bearer ' + self._fetch_token(realm, params.get('service'), scopes)
            self._auth_scheme = 'bearer'
            self._token_scopes = scopes
            return
        raise RegistryError('The registry %s answered %s %s with 401 and an unsupported challenge %r.'
                            % (self.registry, method, path, challenge_header or ''), status=401)

    def _token_credentials(self, realm):
        """``(realm origin, whether the Basic credentials go there)``; RegistryError when it must not be asked."""
        origin = check_realm(realm, self.registry, self.scheme)
        if not self.username:
            return origin, False
        if not credentials_allowed(origin, self.origin, self.realm_hosts):
            raise RegistryError('The registry %s sends clients to the token service %s, which is not the registry\'s '
                                'own host; the credentials are sent there only when it is listed in '
                                'registry_realm_hosts (%s).' % (self.registry, origin_text(origin),
                                                                origin_text(origin).split('://', 1)[1]), status=401)
        return origin, True

    def _fetch_token(self, realm, service, scopes):
        origin, with_credentials = self._token_credentials(realm)
        shown = origin_text(origin)
        query = []
        if service:
            query.append(('service', service))
        for scope in scopes:
            query.append(('scope', scope))
        if with_credentials:
            query.append(('account', self.username))
        url = realm + ('&' if '?' in realm else '?') + urlencode(query)
        headers = {}
        if with_credentials:
            headers['Authorization'] = self._basic_header()
        response = self._send('GET', url, headers=headers, kind='token')
        if response.status in (401, 403) and not with_credentials:
            raise RegistryError('The token service %s refused an anonymous token for %s; give registry_username '
                                'and registry_password.' % (shown, ' '.join(scopes) or 'the registry'),
                                status=response.status, code='UNAUTHORIZED')
        if response.status in (401, 403):
            raise RegistryError('The token service %s rejected the credentials of user %r; check registry_username '
                                'and registry_password.' % (shown, self.username), status=response.status,
                                code='UNAUTHORIZED')
        if response.status != 200:
            code, detail = registry_error_detail(response.body)
            raise RegistryError('The token service %s answered %s %s: %s.'
                                % (shown, response.status, response.reason, detail or 'no detail'),
                                status=response.status, code=code)
        try:
            data = json.loads(response.body.decode('utf-8'))
        except ValueError:
            raise RegistryError('The token service %s answered with something that is not JSON.' % (shown,))
        token = (data.get('token') or data.get('access_token')) if isinstance(data, dict) else None
        if not token or not isinstance(token, str):
            raise RegistryError('The token service %s answered without a token.' % (shown,))
        return token

    # -- transport --------------------------------------------------------------------------

    def _context(self):
        if self._ssl_context is None:
            if self.validate_certs:
                context = ssl.create_default_context(cafile=self.ca_path) if self.ca_path \
                    else ssl.create_default_context()
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl_context = context
        return self._ssl_context

    def _connection(self, scheme, netloc, fresh=False):
        key = (scheme, netloc)
        if fresh and key in self._connections:
            self._connections.pop(key).close()
        if key not in self._connections:
            if scheme == 'https':
                try:
                    context = self._context()
                except (OSError, ssl.SSLError) as exc:
                    raise RegistryError('Cannot load the CA bundle %s: %s.' % (self.ca_path, exc))
                conn: http_client.HTTPConnection = http_client.HTTPSConnection(
                    netloc, timeout=self.timeout, context=context)
            elif scheme == 'http':
                conn = http_client.HTTPConnection(netloc, timeout=self.timeout)
            else:
                raise RegistryError('Unsupported URL scheme %r.' % (scheme,))
            self._connections[key] = conn
        return self._connections[key]

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections = {}

    def _unreachable(self, url, exc):
        if isinstance(exc, ssl.SSLCertVerificationError):
            return RegistryError('TLS verification of %s failed: %s. Give the CA bundle with ca_path (or, only for '
                                 'tests, validate_certs=false).' % (url, exc.verify_message or exc))
        if isinstance(exc, ssl.SSLError):
            return RegistryError('TLS with %s failed: %s. Is registry_scheme right (http vs https)?' % (url, exc))
        if isinstance(exc, socket.timeout):
            reason = 'no answer within %s seconds' % (self.timeout,)
        else:
            reason = getattr(exc, 'strerror', None) or str(exc) or exc.__class__.__name__
        return RegistryError('Cannot reach the registry at %s: %s. Is the registry running, and are the registry '
                             'address and registry_scheme right?' % (url, reason))

    def _send(self, method, url, headers=None, body=None, kind=None):
        """One HTTP exchange without auth handling; counts it; reuses keep-alive connections."""
        parts = urlsplit(url)
        target = parts.path or '/'
        if parts.query:
            target += '?' + parts.query
        send_headers = {'User-Agent': USER_AGENT, 'Host': parts.netloc}
        send_headers.update(headers or {})
        if body is not None:
            send_headers['Content-Length'] = str(len(body))
        elif method in ('PUT', 'POST', 'PATCH'):
            send_headers['Content-Length'] = '0'
        for attempt in (0, 1):
            conn = self._connection(parts.scheme, parts.netloc, fresh=attempt > 0)
            reused = conn.sock is not None
            try:
                conn.request(method, target, body=body, headers=send_headers)
                response = conn.getresponse()
                data = response.read()  # also for HEAD: it frees the connection for the next request
            except (http_client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http_client.CannotSendRequest, http_client.BadStatusLine) as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # a kept-alive connection the server had closed: try once on a new one
                raise self._unreachable(url, exc)
            except (OSError, http_client.HTTPException) as exc:
                conn.close()
                raise self._unreachable(url, exc)
            self.stats.count(method, kind, len(body) if body else 0)
            self.stats.bytes_downloaded += len(data)
            if response.getheader('Connection', '').lower() == 'close':
                conn.close()
            return _Response(response.status, response.reason, response.headers, data)
        raise RegistryError('Cannot reach the registry at %s.' % (url,))  # pragma: no cover

    def request(self, method: str, path: str, headers: Optional[Dict[str, str]] = None, body: Optional[bytes] = None,
                kind: Optional[str] = None, expect: Sequence[int] = (200,), allow: Sequence[int] = ()) -> _Response:
        """A request to ``/v2/...`` (or an absolute URL) with authentication; returns the response.

        Statuses in ``expect`` and ``allow`` are returned; others raise RegistryError.
        """
        url = path if '://' in path else self.base_url + path
        same_origin = self.is_registry_origin(url)
        for _attempt in range(3):
            send_headers = dict(headers or {})
            if same_origin and self._authorization:
                send_headers['Authorization'] = self._authorization
            response = self._send(method, url, headers=send_headers, body=body, kind=kind)
            if response.status == 401:
                if not same_origin:
                    raise RegistryError('The registry %s sent %s %s to %s, which asked for credentials; they are '
                                        'sent only to the registry itself.'
                                        % (self.registry, method, urlsplit(url).path, self._origin_shown(url)),
                                        status=401, code='UNAUTHORIZED')
                self._authenticate(response.header('WWW-Authenticate'), method, url)
                continue
            if response.status in expect or response.status in allow:
                return response
            raise self._status_error(method, url, response)
        raise RegistryError('The registry %s kept answering 401 to %s %s; check the credentials.'
                            % (self.registry, method, urlsplit(url).path), status=401, code='UNAUTHORIZED')

    def is_registry_origin(self, url: str) -> bool:
        """Whether ``url`` has the registry's scheme, host and port: the only origin ``Authorization`` goes to."""
        try:
            return origin_of(url) == self.origin
        except ValueError:
            return False

    @staticmethod
    def _origin_shown(url):
        try:
            return origin_text(origin_of(url))
        except ValueError:
            return 'an invalid URL'

    def _follow_redirects(self, response, url, kind):
        """Follow up to 3 redirects of a GET by hand; ``Authorization`` only when a hop is the registry's origin.

        A hop from https down to http, or to a scheme other than http(s), is refused.
        """
        hops = 0
        while response.status in (301, 302, 303, 307, 308) and hops < 3:
            location = response.header('Location')
            if not location:
                raise RegistryError('The registry %s answered GET %s with a redirect without Location.'
                                    % (self.registry, urlsplit(url).path), status=response.status)
            target = urljoin(url, location)
            scheme, before = urlsplit(target).scheme.lower(), urlsplit(url).scheme
            if scheme not in DEFAULT_PORTS or (before == 'https' and scheme != 'https'):
                raise RegistryError('The registry %s redirected GET %s from %s to %s; only redirects to https (or '
                                    'from http to http) are followed.'
                                    % (self.registry, urlsplit(url).path, before, scheme or 'no scheme'))
            headers = {}
            if self._authorization and self.is_registry_origin(target):
                headers['Authorization'] = self._authorization
            url = target
            response = self._send('GET', url, headers=headers, kind=kind)
            hops += 1
        return response

    def _status_error(self, method, url, response):
        code, detail = registry_error_detail(response.body[:_MAX_ERROR_BODY])
        path = urlsplit(url).path
        if response.status == 403:
            hint = ' The account lacks the right for this operation.'
        elif response.status == 404 and code in (None, 'NAME_UNKNOWN', 'MANIFEST_UNKNOWN', 'BLOB_UNKNOWN'):
            hint = ''
        else:
            hint = ''
        return RegistryError('The registry %s answered %s %s with %s %s%s.%s'
                             % (self.registry, method, path, response.status, response.reason,
                                ': ' + detail if detail else '', hint),
                             status=response.status, code=code)

    # -- API --------------------------------------------------------------------------------

    @staticmethod
    def _path(repository, kind, reference=''):
        return '/v2/%s/%s/%s' % (repository, kind, quote(reference, safe=':@'))

    def ping(self) -> bool:
        """``GET /v2/``: checks that the registry answers and authenticates; True on 200."""
        self.request('GET', '/v2/', kind='ping')
        return True

    def head_manifest(self, repository: str, reference: str) -> Optional[Tuple[str, str, int]]:
        """``(digest, media_type, size)`` of a manifest, or None when the registry does not have it."""
        response = self.request('HEAD', self._path(repository, 'manifests', reference),
                                headers={'Accept': MANIFEST_ACCEPT}, kind='manifest_head', allow=(404,))
        if response.status == 404:
            return None
        digest = response.header('Docker-Content-Digest')
        media_type = (response.header('Content-Type') or '').split(';')[0].strip()
        size = int(response.header('Content-Length') or 0)
        if not digest:
            # Some registries leave the digest out on HEAD: fetch the bytes and hash them.
            manifest = self.get_manifest(repository, reference)
            return manifest.digest, manifest.media_type, manifest.size
        return digest, media_type, size

    @overload
    def get_manifest(self, repository: str, reference: str) -> Manifest:
        ...

    @overload
    def get_manifest(self, repository: str, reference: str, missing_ok: bool) -> Optional[Manifest]:
        ...

    def get_manifest(self, repository, reference, missing_ok=False):
        """The Manifest at ``reference`` (tag or digest); None when missing and ``missing_ok``.

        A manifest fetched by digest is checked against that digest.
        """
        response = self.request('GET', self._path(repository, 'manifests', reference),
                                headers={'Accept': MANIFEST_ACCEPT}, kind='manifest_get', allow=(404,))
        if response.status == 404:
            if missing_ok:
                return None
            raise RegistryError('The registry %s has no manifest %s in repository %s.'
                                % (self.registry, reference, repository), status=404, code='MANIFEST_UNKNOWN')
        media_type = (response.header('Content-Type') or '').split(';')[0].strip()
        manifest = Manifest(response.body, media_type)
        if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or manifest.json.get('schemaVersion') == 1:
            raise RegistryError('%s/%s:%s is a Docker schema 1 manifest; only schema 2 and OCI images can be rebased.'
                                % (self.registry, repository, reference))
        if is_digest(reference) and manifest.digest != reference:
            raise RegistryError('The registry %s sent a manifest for %s whose bytes hash to %s.'
                                % (self.registry, reference, manifest.digest))
        header_digest = response.header('Docker-Content-Digest')
        if header_digest and header_digest != manifest.digest:
            raise RegistryError('The registry %s sent %s:%s with Docker-Content-Digest %s, but its bytes hash to %s.'
                                % (self.registry, repository, reference, header_digest, manifest.digest))
        return manifest

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT the exact ``data`` with ``Content-Type: media_type``; returns the digest (checked)."""
        digest = sha256_digest(data)
        response = self.request('PUT', self._path(repository, 'manifests', reference), body=data,
                                headers={'Content-Type': media_type}, kind='manifest_put', expect=(201, 200))
        answered = response.header('Docker-Content-Digest')
        if answered and answered != digest:
            raise RegistryError('The registry %s stored the manifest for %s:%s as %s, but the bytes sent hash to %s.'
                                % (self.registry, repository, reference, answered, digest))
        return digest

    def blob_exists(self, repository: str, digest: str) -> bool:
        """HEAD a blob in one repository (registry 2.x answers per repository)."""
        response = self.request('HEAD', self._path(repository, 'blobs', digest), kind='blob_head', allow=(404,))
        return response.status == 200

    def get_blob(self, repository: str, digest: str, max_size: int = 64 * 1024 * 1024) -> bytes:
        """GET a (small) blob and check its digest.

        A redirect (to a storage backend) is followed without the registry's ``Authorization`` unless it
        points back to the registry's own origin (see :meth:`_follow_redirects`).
        """
        response = self.request('GET', self._path(repository, 'blobs', digest), kind='blob_get',
                                allow=(301, 302, 303, 307, 308, 404))
        response = self._follow_redirects(response, self.base_url + self._path(repository, 'blobs', digest),
                                          'blob_get')
        if response.status == 404:
            raise RegistryError('The registry %s has no blob %s in repository %s.' % (self.registry, digest, repository),
                                status=404, code='BLOB_UNKNOWN')
        if response.status != 200:
            raise self._status_error('GET', self._path(repository, 'blobs', digest), response)
        data = response.body
        if len(data) > max_size:
            raise RegistryError('The blob %s is larger than %d bytes.' % (digest, max_size))
        if sha256_digest(data) != digest:
            raise RegistryError('The registry %s sent blob %s of %s whose bytes do not match the digest.'
                                % (self.registry, digest, repository))
        return data

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository mount; True when mounted (201).

        When the registry refuses (202, it opened an upload session instead) the session is cancelled with
        DELETE and False is returned.
        """
        path = '/v2/%s/blobs/uploads/?%s' % (repository, urlencode([('mount', digest), ('from', from_repository)]))
        response = self.request('POST', path, kind='blob_mount', expect=(201, 202))
        if response.status == 201:
            return True
        self.stats.by_kind['blob_mount'] -= 1
        self.stats.by_kind['blob_mount_fallback'] += 1
        location = response.header('Location')
        if location:
            self.request('DELETE', urljoin(self.base_url + path, location), kind='upload_cancel',
                         expect=(204, 200, 202), allow=(404,))
        return False

    def upload_blob(self, repository: str, data: bytes) -> str:
        """Monolithic upload (POST then PUT with the bytes); returns the digest. For small blobs only."""
        digest = sha256_digest(data)
        response = self.request('POST', '/v2/%s/blobs/uploads/' % (repository,), kind=None, expect=(202,))
        location = response.header('Location')
        if not location:
            raise RegistryError('The registry %s opened an upload session in %s without a Location.'
                                % (self.registry, repository))
        url = urljoin(self.base_url + '/v2/%s/blobs/uploads/' % (repository,), location)
        url += ('&' if '?' in url else '?') + urlencode([('digest', digest)])
        try:
            self.request('PUT', url, body=data, headers={'Content-Type': 'application/octet-stream'},
                         kind='blob_upload', expect=(201,))
        except RegistryError:
            self.request('DELETE', url.split('?')[0], kind='upload_cancel', expect=(204, 200, 202), allow=(404,))
            raise
        self.stats.blob_bytes_uploaded += len(data)
        return digest

    def ensure_blob(self, repository: str, digest: str, sources: Sequence[str], data: Optional[bytes] = None) -> str:
        """Make blob ``digest`` present in ``repository`` without moving layer bytes when possible.

        Returns ``present``, ``mounted`` or ``uploaded``. ``sources`` are repositories that hold the blob
        (tried in order for a mount); ``data`` are the bytes, uploaded when no mount works.
        """
        if self.blob_exists(repository, digest):
            return 'present'
        for source in sources:
            if source == repository:
                continue
            if self.mount_blob(repository, digest, source):
                return 'mounted'
        if data is None:
            raise RegistryError('The blob %s cannot be mounted into %s from %s and its bytes are not at hand.'
                                % (digest, repository, ', '.join(sources) or 'no repository'))
        self.upload_blob(repository, data)
        return 'uploaded'

    def list_tags(self, repository: str) -> List[str]:
        response = self.request('GET', '/v2/%s/tags/list' % (repository,), kind='tags', allow=(404,))
        if response.status == 404:
            return []
        try:
            return json.loads(response.body.decode('utf-8')).get('tags') or []
        except (ValueError, AttributeError):
            raise RegistryError('The registry %s answered the tag list of %s with something that is not JSON.'
                                % (self.registry, repository))


def elapsed_since(start: float) -> float:
    """Seconds since ``start`` (a ``time.monotonic()`` value), rounded to milliseconds."""
    return round(time.monotonic() - start, 3)
