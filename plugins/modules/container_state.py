#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: container_state
short_description: Resume, freeze, stop or remove a Docker container
version_added: 0.1.0
description:
  - Puts an existing container into a state, with the Engine API and nothing else. The migration uses
    it to resume a frozen source container when a migration fails (rollback) and to remove the source
    once the target runs.
  - V(running) resumes a paused container or starts a stopped one; V(paused) freezes a running one;
    V(stopped) stops it; V(absent) removes it (and, with O(remove_volumes), its anonymous volumes).
extends_documentation_fragment:
  - mtd.containers.docker
  - mtd.containers.attributes
  - mtd.containers.attributes.actiongroup_mtd
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows the container's status before and after.
  idempotent:
    support: full
options:
  container:
    description: Name or id of the container.
    type: str
    required: true
  state:
    description: The state to reach.
    type: str
    choices: [running, paused, stopped, absent]
    required: true
  stop_timeout:
    description: Seconds the container gets to stop before it is killed (V(stopped) and V(absent)).
    type: int
    default: 10
  remove_volumes:
    description: With V(absent), also remove the container's anonymous volumes (never named ones).
    type: bool
    default: false
  missing_ok:
    description: With V(absent), a container that does not exist is not an error (the default). Other
      states fail on a missing container.
    type: bool
    default: true
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Resume the frozen source after a failed migration
  mtd.containers.container_state:
    container: web-1
    state: running

- name: Remove the source after a successful migration
  mtd.containers.container_state:
    container: web-1
    state: absent
"""

RETURN = r"""
before:
  description: Status before (V(absent) when it did not exist).
  returned: always
  type: str
  sample: paused
after:
  description: Status after.
  returned: always
  type: str
  sample: running
id:
  description: The container's id.
  returned: when the container existed
  type: str
labels:
  description: The container's labels.
  returned: when the container existed
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mtd.containers.plugins.module_utils._docker import (
    DockerError,
    client_from_module,
    docker_argument_spec,
)


def status_of(inspect):
    if inspect is None:
        return 'absent'
    state = inspect.get('State') or {}
    if state.get('Paused'):
        return 'paused'
    if state.get('Running'):
        return 'running'
    return 'stopped'


def main():
    argument_spec = docker_argument_spec()
    argument_spec.update(
        container=dict(type='str', required=True),
        state=dict(type='str', required=True, choices=['running', 'paused', 'stopped', 'absent']),
        stop_timeout=dict(type='int', default=10),
        remove_volumes=dict(type='bool', default=False),
        missing_ok=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    client = client_from_module(module)
    try:
        try:
            inspect = client.inspect_container(p['container'])
        except DockerError as exc:
            if exc.status != 404:
                raise
            inspect = None
        before = status_of(inspect)
        want = p['state']
        result = {'changed': False, 'before': before, 'after': before}
        if inspect is None:
            if want == 'absent' and p['missing_ok']:
                module.exit_json(**result)
            module.fail_json(msg='No such container %r on this host.' % p['container'], **result)
        cid = inspect['Id']
        result['id'] = cid
        result['labels'] = (inspect.get('Config') or {}).get('Labels') or {}
        if want == 'paused' and before not in ('running', 'paused'):
            # fails in check mode too: the real run would
            module.fail_json(msg='Only a running container can be paused; %s is %s.' % (p['container'], before), **result)
        if before != want:
            result['changed'] = True
            result['after'] = want
            if not module.check_mode:
                if want == 'running':
                    if before == 'paused':
                        client.post('/containers/%s/unpause' % cid)
                    else:
                        client.start_container(cid)
                elif want == 'paused':
                    client.post('/containers/%s/pause' % cid)
                elif want == 'stopped':
                    if before == 'paused':
                        client.post('/containers/%s/unpause' % cid)
                    client.stop_container(cid, timeout=p['stop_timeout'])
                else:
                    if before == 'paused':
                        # a frozen container cannot receive the stop signal
                        client.post('/containers/%s/kill' % cid)
                    elif before == 'running':
                        client.stop_container(cid, timeout=p['stop_timeout'])
                    client.delete('/containers/%s' % cid, params={'force': 'true', 'v': p['remove_volumes'] or None})
        if module._diff:
            result['diff'] = {'before': {'state': before}, 'after': {'state': result['after']}}
        module.exit_json(**result)
    except DockerError as exc:
        module.fail_json(msg='Docker engine error on %s: %s' % (p['container'], exc))


if __name__ == '__main__':
    main()
