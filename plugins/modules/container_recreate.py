#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: container_recreate
short_description: Recreate containers from another image, keeping their settings and volumes, and check their health
version_added: 0.1.0
description:
  - Recreates each selected container from O(image) when it does not already run that image, for example to roll
    a rebased image out (see M(mtd.containers.image_rebase) and the role C(mtd.containers.rebase_rollout)).
  - The new container keeps the name, the settings the user gave (environment, labels, command, mounts, network
    mode, limits, restart policy) and all volumes, named and anonymous; what the old container only inherited from
    its old image is left to the new image.
  - After the start, a health check decides RV(healthy) - O(health_cmd) run in the container until it exits
    with V(0), or else the image's own C(HEALTHCHECK), or else that the container keeps running.
  - The containers are selected by O(containers) (names or ids) or by O(from_image) (the running containers
    whose image is that image).
extends_documentation_fragment:
  - mtd.containers.docker
  - mtd.containers.attributes
  - mtd.containers.attributes.actiongroup_mtd
attributes:
  check_mode:
    support: full
    details: Nothing is pulled, stopped or created; RV(containers) lists the containers that would be recreated.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A container that already runs O(image) is left alone.
options:
  image:
    description:
      - The image the containers must run, C(repository:tag) or C(repository@sha256:...), or a local image id.
    type: str
    required: true
  containers:
    description:
      - Names or ids of the containers to recreate. A missing container fails the module.
    type: list
    elements: str
  from_image:
    description:
      - Select the running containers whose image is this image (same image id as the local image of this
        reference, or the same reference in their configuration).
    type: str
  pull:
    description:
      - When to pull O(image). V(missing) pulls only when the engine does not have it.
    type: str
    choices: [missing, always, never]
    default: missing
  stop_timeout:
    description: Seconds the old container gets to stop before it is killed.
    type: int
    default: 10
  health_cmd:
    description:
      - A command (list of arguments) run inside each new container; exit code V(0) means healthy.
    type: list
    elements: str
  health_retries:
    description: How many times the health check is tried.
    type: int
    default: 10
  health_interval:
    description: Seconds between two health checks (and before the first).
    type: float
    default: 1
  fail_unhealthy:
    description:
      - Whether an unhealthy new container fails the module. The role C(mtd.containers.rebase_rollout) sets
        V(false) and rolls back itself.
    type: bool
    default: true
notes:
  - The old container is renamed (to C(<name>-rb-old-<id>)), the new one created, the old one stopped and the new one
    started; if creating or starting the new one fails, the new one is removed and the old one gets its name back
    and is started again. Once the new container runs, the old one is removed (its volumes are kept).
requirements:
  - No Python library beyond the standard library on the managed host.
  - A Docker engine with Engine API 1.41 or newer (Docker 20.10+), reachable at O(docker_host).
seealso:
  - module: mtd.containers.image_rebase
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Move the containers that run the old image to the rebased one, with a health check
  mtd.containers.container_recreate:
    from_image: registry.example.com/team/app:1.4
    image: registry.example.com/team/app@sha256:4d3c9d0b0c9f1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3
    health_cmd: [wget, -q, -O-, http://127.0.0.1:8080/health]
  register: moved

- name: Which containers would move?
  mtd.containers.container_recreate:
    from_image: registry.example.com/team/app:1.4
    image: registry.example.com/team/app:1.4-rebased
  check_mode: true
  register: plan
"""

RETURN = r"""
containers:
  description: One entry per selected container, in the order selected.
  type: list
  elements: dict
  returned: success
  contains:
    name:
      description: The container name.
      type: str
    changed:
      description: Whether the container was (or, in check mode, would be) recreated.
      type: bool
    before:
      description: C(id), C(image) (reference in its configuration), C(image_id) and C(repo_digest) before.
      type: dict
    after:
      description: The same after; equal to C(before) when nothing changed, V(null) in check mode.
      type: dict
    healthy:
      description: The health check result of the new container; V(null) when not recreated.
      type: bool
    health_output:
      description: The output of the last health check command (at most 2000 characters).
      type: str
  sample:
    - name: web-1
      changed: true
      before: {id: "0a1b...", image: "127.0.0.1:5000/team/app:1", image_id: "sha256:11aa...",
               repo_digest: "127.0.0.1:5000/team/app@sha256:22bb..."}
      after: {id: "3c4d...", image: "127.0.0.1:5000/team/app:1-rb", image_id: "sha256:55ee...",
              repo_digest: "127.0.0.1:5000/team/app@sha256:66ff..."}
      healthy: true
      health_output: ""
healthy:
  description: Whether every recreated container is healthy (V(true) when none was recreated).
  type: bool
  returned: success
  sample: true
image_id:
  description: The local id of O(image); V(null) in check mode when the engine does not have it yet.
  type: str
  returned: success
  sample: sha256:55ee55ee55ee55ee55ee55ee55ee55ee55ee55ee55ee55ee55ee55ee55ee55ee
"""

from typing import Any, Dict, List, Optional

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._container import (
    ReplaceError,
    recreate_body,
    repo_digest_for,
    replace_container,
    wait_running,
)
from ansible_collections.mtd.containers.plugins.module_utils._docker import DockerError
from ansible_collections.mtd.containers.plugins.module_utils._module import MtdModule, run_module

ARGUMENT_SPEC = dict(
    image=dict(type='str', required=True),
    containers=dict(type='list', elements='str'),
    from_image=dict(type='str'),
    pull=dict(type='str', default='missing', choices=['missing', 'always', 'never']),
    stop_timeout=dict(type='int', default=10),
    health_cmd=dict(type='list', elements='str'),
    health_retries=dict(type='int', default=10),
    health_interval=dict(type='float', default=1),
    fail_unhealthy=dict(type='bool', default=True),
)
REQUIRED_ONE_OF = [('containers', 'from_image')]

# The name the old container has while the new one takes over (rebase_rollout's cleanups look for it).
PARK_NAME = '%s-rb-old-%s'
OUTPUT_LIMIT = 2000


def health_verdict(waited: Dict[str, Any], retries: int) -> Any:
    """``(healthy, health_output)`` of a ``_container.wait_running`` result, in this module's words."""
    if waited['healthy']:
        return True, waited['output']
    if waited['ended'] == 'timeout':
        return False, waited['output'] or 'no healthy answer after %d tries' % (retries,)
    return False, waited['reason']


class Recreator:
    """Select the containers, make sure the image is there, recreate each one that runs another image."""

    def __init__(self, mod: MtdModule) -> None:
        self.mod = mod
        self.client = mod.docker
        self.params = mod.params

    def _state(self, container: Dict[str, Any]) -> Dict[str, Any]:
        image_id = container.get('Image')
        image_ref = (container.get('Config') or {}).get('Image')
        image = self.client.inspect_image(image_id) if image_id else None
        return {'id': container.get('Id'), 'name': container.get('Name', '').lstrip('/'), 'image': image_ref,
                'image_id': image_id, 'repo_digest': repo_digest_for(image_ref, (image or {}).get('RepoDigests'))}

    def _named(self) -> List[Dict[str, Any]]:
        selected = []
        for name in self.params['containers'] or []:
            try:
                selected.append(self.client.inspect_container(name))
            except DockerError as exc:
                if exc.status == 404:
                    raise MtdError('There is no container %s on this engine.' % (name,))
                raise
        return selected

    def select(self) -> List[Dict[str, Any]]:
        selected = self._named()
        if self.params['from_image']:
            ref = self.params['from_image']
            local_id = (self.client.inspect_image(ref) or {}).get('Id')
            for summary in self.client.containers():
                inspect = self.client.inspect_container(summary['Id'])
                if any(c['Id'] == inspect['Id'] for c in selected):
                    continue
                if (local_id and inspect.get('Image') == local_id) or (inspect.get('Config') or {}).get('Image') == ref:
                    selected.append(inspect)
        return selected

    def ensure_image(self) -> Optional[str]:
        image = self.params['image']
        local = self.client.inspect_image(image)
        if self.params['pull'] == 'always' or (local is None and self.params['pull'] == 'missing'):
            if self.mod.check_mode:
                return local.get('Id') if local else None
            self.client.pull_image(image)
            local = self.client.inspect_image(image)
        if local is None:
            raise MtdError('The engine has no image %s and pull is never.' % (image,))
        return local['Id']

    def health(self, container_id: str) -> Any:
        """``(healthy, output)``: the health command, else the image's HEALTHCHECK, else still running."""
        retries = self.params['health_retries']
        interval = self.params['health_interval']
        waited = wait_running(self.client, container_id, timeout=None, interval=interval,
                              health_cmd=self.params['health_cmd'], image_health=True,
                              attempts=max(retries, 1), first_delay=interval, output_limit=OUTPUT_LIMIT)
        return health_verdict(waited, retries)

    def recreate(self, container: Dict[str, Any], image_id: Optional[str]) -> Dict[str, Any]:
        before = self._state(container)
        name = before['name']
        entry = {'name': name, 'changed': False, 'before': before, 'after': before, 'healthy': None,
                 'health_output': ''}
        if before['image_id'] == image_id:
            return entry
        entry.update(changed=True, after=None)
        if self.mod.check_mode:
            return entry
        old_image = self.client.inspect_image(before['image_id']) or {}
        body = recreate_body(container, old_image.get('Config'), self.params['image'])
        try:
            replaced = replace_container(self.client, container, body, PARK_NAME % (name, before['id'][:12]),
                                         start=True, stop_timeout=self.params['stop_timeout'])
        except ReplaceError as exc:
            raise MtdError('Recreating container %s from %s failed, the old container was restored: %s'
                           % (name, self.params['image'], exc.msg), **exc.details)
        for warning in replaced['warnings']:
            self.mod.warn(warning)
        healthy, output = self.health(replaced['id'])
        entry.update(after=self._state(self.client.inspect_container(replaced['id'])), healthy=healthy,
                     health_output=output)
        return entry


def run(mod: MtdModule) -> None:
    recreator = Recreator(mod)
    selected = recreator.select()
    if selected:
        image_id = recreator.ensure_image()
    else:
        image_id = (mod.docker.inspect_image(mod.params['image']) or {}).get('Id')
    results = [recreator.recreate(container, image_id) for container in selected]
    healthy = all(r['healthy'] is not False for r in results)
    mod.result.update(changed=any(r['changed'] for r in results), containers=results, healthy=healthy,
                      image_id=image_id)
    if not healthy and mod.params['fail_unhealthy']:
        bad = ', '.join(r['name'] for r in results if r['healthy'] is False)
        raise MtdError('The recreated containers %s are not healthy.' % (bad,))


def main() -> None:
    run_module(run, ARGUMENT_SPEC, docker=True, required_one_of=REQUIRED_ONE_OF)


if __name__ == '__main__':
    main()
