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
  - The old container is stopped and renamed, the new one created and started; if creating or starting the new
    one fails, the old one is renamed back and started again. Once the new container runs, the old one is
    removed (its volumes are kept).
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

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mtd.containers.plugins.module_utils._docker import (
    DockerError,
    client_from_module,
    docker_argument_spec,
    recreate_body,
)

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
ARGUMENT_SPEC.update(docker_argument_spec())


def _repository(reference):
    name = reference.split('@', 1)[0]
    slash, colon = name.rfind('/'), name.rfind(':')
    return name[:colon] if colon > slash else name


class Recreator:
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params

    def _state(self, container):
        image_id = container.get('Image')
        image_ref = (container.get('Config') or {}).get('Image')
        repo_digest = None
        image = self.client.inspect_image(image_id) if image_id else None
        digests = (image or {}).get('RepoDigests') or []
        if image_ref:
            wanted = _repository(image_ref)
            repo_digest = next((d for d in digests if d.split('@', 1)[0] == wanted), None)
        if repo_digest is None and digests:
            repo_digest = digests[0]
        return {'id': container.get('Id'), 'name': container.get('Name', '').lstrip('/'), 'image': image_ref,
                'image_id': image_id, 'repo_digest': repo_digest}

    def select(self):
        selected = []
        for name in self.params['containers'] or []:
            try:
                selected.append(self.client.inspect_container(name))
            except DockerError as exc:
                if exc.status == 404:
                    self.module.fail_json(msg='There is no container %s on this engine.' % (name,))
                raise
        if self.params['from_image']:
            ref = self.params['from_image']
            local = self.client.inspect_image(ref)
            local_id = (local or {}).get('Id')
            for summary in self.client.containers():
                inspect = self.client.inspect_container(summary['Id'])
                if any(c['Id'] == inspect['Id'] for c in selected):
                    continue
                if (local_id and inspect.get('Image') == local_id) or (inspect.get('Config') or {}).get('Image') == ref:
                    selected.append(inspect)
        return selected

    def ensure_image(self):
        image = self.params['image']
        local = self.client.inspect_image(image)
        if self.params['pull'] == 'always' or (local is None and self.params['pull'] == 'missing'):
            if self.module.check_mode:
                return local.get('Id') if local else None
            self.client.pull_image(image)
            local = self.client.inspect_image(image)
        if local is None:
            self.module.fail_json(msg='The engine has no image %s and pull is never.' % (image,))
        return local['Id']

    def health(self, container_id):
        params = self.params
        output = ''
        for _attempt in range(max(params['health_retries'], 1)):
            time.sleep(params['health_interval'])
            state = (self.client.inspect_container(container_id).get('State') or {})
            if not state.get('Running'):
                return False, 'the container is not running (status %s, exit code %s)' % (
                    state.get('Status'), state.get('ExitCode'))
            if params['health_cmd']:
                code, output = self.client.exec_run(container_id, params['health_cmd'])
                if code == 0:
                    return True, output[-2000:]
                continue
            health = (state.get('Health') or {}).get('Status')
            if health is None or health == 'healthy':
                return True, ''
            if health == 'unhealthy':
                return False, 'the image health check reports unhealthy'
        return False, output[-2000:] if output else 'no healthy answer after %d tries' % (params['health_retries'],)

    def recreate(self, container, image_id):
        before = self._state(container)
        name = before['name']
        if before['image_id'] == image_id:
            return {'name': name, 'changed': False, 'before': before, 'after': before, 'healthy': None,
                    'health_output': ''}
        if self.module.check_mode:
            return {'name': name, 'changed': True, 'before': before, 'after': None, 'healthy': None,
                    'health_output': ''}
        old_image = self.client.inspect_image(before['image_id']) or {}
        body = recreate_body(container, old_image.get('Config'), self.params['image'])
        was_running = (container.get('State') or {}).get('Running')
        self.client.stop_container(before['id'], timeout=self.params['stop_timeout'])
        parked = '%s-rb-old-%s' % (name, before['id'][:12])
        self.client.rename_container(before['id'], parked)
        new_id = None
        try:
            new_id = self.client.create_container(name, body)
            self.client.start_container(new_id)
        except DockerError as exc:
            if new_id:
                self.client.remove_container(new_id, force=True)
            self.client.rename_container(before['id'], name)
            if was_running:
                self.client.start_container(before['id'])
            self.module.fail_json(msg='Recreating container %s from %s failed, the old container was restored: %s'
                                  % (name, self.params['image'], exc))
        self.client.remove_container(before['id'], force=True)
        healthy, output = self.health(new_id)
        after = self._state(self.client.inspect_container(new_id))
        return {'name': name, 'changed': True, 'before': before, 'after': after, 'healthy': healthy,
                'health_output': output}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_one_of=[('containers', 'from_image')])
    client = client_from_module(module)
    recreator = Recreator(module, client)
    try:
        selected = recreator.select()
        image_id = recreator.ensure_image() if selected else client.inspect_image(module.params['image'])
        if isinstance(image_id, dict):
            image_id = image_id.get('Id')
        results = [recreator.recreate(container, image_id) for container in selected]
    except DockerError as exc:
        module.fail_json(msg=str(exc))
    healthy = all(r['healthy'] is not False for r in results)
    result = dict(changed=any(r['changed'] for r in results), containers=results, healthy=healthy,
                  image_id=image_id)
    if not healthy and module.params['fail_unhealthy']:
        bad = ', '.join(r['name'] for r in results if r['healthy'] is False)
        module.fail_json(msg='The recreated containers %s are not healthy.' % (bad,), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
