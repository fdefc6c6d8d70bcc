# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    # Connection options of the modules that talk to the Docker Engine API (module_utils/_docker.py).
    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - The Docker Engine API endpoint on the managed host.
      - V(unix:///path/to/docker.sock) for the engine's Unix socket, or V(tcp://host:port) for plain
        HTTP. TLS (V(https://), the TLS port 2376) and V(ssh://) are not supported.
      - If the option is not given, the value of the E(DOCKER_HOST) environment variable is used
        when it is set.
    type: str
    default: unix:///var/run/docker.sock
  api_version:
    description:
      - The Engine API version to use, such as V(1.41).
      - V(auto) asks the engine for its version and uses it, capped at the newest version the
        collection knows.
    type: str
    default: auto
  timeout:
    description:
      - Seconds to wait for the engine to connect and to answer each request.
    type: int
    default: 60
notes:
  - The modules talk to the Docker Engine API with the Python standard library only; the Docker SDK
    for Python is not needed on the managed host.
"""
