# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    # Connection options of the modules that talk to a registry (module_utils/_registry.py).
    DOCUMENTATION = r"""
options:
  registry_username:
    description:
      - The user name for the registry, used for basic authentication or to obtain a bearer token from the
        registry's token service.
      - If the option is not given, the value of the E(MTD_REGISTRY_USERNAME) environment variable is used.
      - Without a user name, requests are anonymous (a token service may still hand out anonymous tokens).
    type: str
  registry_password:
    description:
      - The password or access token of O(registry_username).
      - If the option is not given, the value of the E(MTD_REGISTRY_PASSWORD) environment variable is used.
    type: str
  registry_scheme:
    description:
      - How to talk to the registry.
      - V(auto) uses plain HTTP for loopback registries (V(localhost), V(127.0.0.0/8), V(::1)), as the Docker
        engine does, and HTTPS for every other registry.
    type: str
    choices: [auto, https, http]
    default: auto
  registry_realm_hosts:
    description:
      - Token services, other than the registry's own host and port, that may receive O(registry_username) and
        O(registry_password), as V(host) or V(host:port) (without a port, the default port of the token service's
        scheme, 443 for https). Use it for a registry whose C(WWW-Authenticate) challenge names a token service
        (its C(realm)) on another host, such as V(gitlab.example.com) for V(registry.gitlab.example.com).
      - The credentials go without listing to a token service on the registry's own host and port, and, for
        Docker Hub (V(docker.io)), to V(auth.docker.io). For any other realm the module fails before sending the
        credentials, and names the host to list here. Anonymous token requests (no O(registry_username)) carry no
        credentials and need no listing.
      - Whatever this option says, a realm that is not an http or https URL, and a plain-http realm of an https
        registry, are refused.
    type: list
    elements: str
    default: []
  validate_certs:
    description:
      - Whether to verify the TLS certificate of an HTTPS registry and of its token service.
      - Turn it off only for tests; give O(ca_path) for a registry with a private CA.
    type: bool
    default: true
  ca_path:
    description:
      - A PEM file of CA certificates that verify the registry's certificate, instead of the system store.
    type: path
  registry_timeout:
    description:
      - Seconds to wait for the registry to connect and to answer each request.
    type: int
    default: 60
notes:
  - The registry is reached with the Python standard library only (the Registry HTTP API V2 over
    C(http.client)); no Docker SDK or registry library is needed.
  - The C(Authorization) header (basic credentials or the bearer token) is sent only to the registry's own
    scheme, host and port. A blob download that the registry redirects to a storage backend is followed without
    it (and never from https down to http); a request to another host that asks for credentials fails.
  - A bearer token is requested with exactly the scopes the operation needs (C(pull) on the repositories it
    reads, C(pull,push) on those it writes); the scopes named in the registry's challenge are not added.
"""
