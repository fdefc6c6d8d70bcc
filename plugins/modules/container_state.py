#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: container_state
short_description: Resume, freeze, stop or remove a Docker container, or only report its status
version_added: 0.1.0
description:
  - Puts an existing container into a state, with the Engine API and nothing else. The migration uses
    it to resume a frozen source container when a migration fails (rollback) and to remove the source
    once the target runs.
  - V(running) resumes a paused container or starts a stopped one; V(paused) freezes a running one;
    V(stopped) stops it; V(absent) removes it (and, with O(remove_volumes), its anonymous volumes; with
    O(named_volumes), the named volumes a migration carried away, so that no copy of the data stays behind).
  - V(query) changes nothing (not even outside check mode) and reports the container's status, id and
    labels; a missing container is reported as RV(status=absent), not as an error.
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
    description:
      - The state to reach.
      - V(query) only reads the container (a read-only probe) and never reports a change.
    type: str
    choices: [running, paused, stopped, absent, query]
    required: true
  stop_timeout:
    description: Seconds the container gets to stop before it is killed (V(stopped) and V(absent)).
    type: int
    default: 10
  remove_volumes:
    description: With V(absent), also remove the container's anonymous volumes (never named ones).
    type: bool
    default: false
  named_volumes:
    description:
      - With V(absent), also remove these named volumes once the container is gone - the ones a migration
        carried to another host (the source must keep no copy of the container's data).
      - Only a volume the container mounts is removed. A volume another container still uses, one the
        container does not mount, or any of them when the container was already gone (nothing tells that
        the volume is its) is kept and reported in RV(volumes_kept) with the reason; that is not an error.
    type: list
    elements: str
  missing_ok:
    description: With V(absent), a container that does not exist is not an error (the default). Other
      states fail on a missing container, except V(query), which reports it as V(absent).
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

- name: Remove the source after a successful migration, and the named volume it carried away
  mtd.containers.container_state:
    container: web-1
    state: absent
    named_volumes: [web-1-data]
  register: removed

- name: Look at a container without changing it
  mtd.containers.container_state:
    container: web-1
    state: query
  register: web

- name: Say where it stands
  ansible.builtin.debug:
    msg: "web-1 is {{ web.status }} (migration {{ web.labels['mtd.migration.id'] | default('none') }})"
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
status:
  description:
    - The container's status, one of V(running), V(paused), V(stopped) or V(absent) (no such container).
    - Equal to RV(before) and RV(after), since a query changes nothing.
  returned: with O(state=query)
  type: str
  sample: running
id:
  description: The container's id.
  returned: when the container existed
  type: str
  sample: 4f1c0e4a9b3d8a2e6f0c1b7d5e9a3c2b1f0e8d7c6b5a4f3e2d1c0b9a8f7e6d5c
labels:
  description: The container's labels.
  returned: when the container existed
  type: dict
  sample: {"mtd.migration.id": "m-3f9a1c0b2d4e"}
volumes_removed:
  description: The named volumes of O(named_volumes) that were removed (in check mode, would be).
  returned: when O(named_volumes) is given
  type: list
  elements: str
  sample: [web-1-data]
volumes_kept:
  description: The named volumes of O(named_volumes) that were kept, each with the reason.
  returned: when O(named_volumes) is given
  type: list
  elements: dict
  sample: [{"name": "shared-data", "reason": "container other-1 still uses it"}]
"""

from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._docker import DockerError
from ansible_collections.mtd.containers.plugins.module_utils._module import MtdModule, run_module

STATES = ['running', 'paused', 'stopped', 'absent', 'query']


def status_of(inspect: Optional[Dict[str, Any]]) -> str:
    if inspect is None:
        return 'absent'
    state = inspect.get('State') or {}
    if state.get('Paused'):
        return 'paused'
    if state.get('Running'):
        return 'running'
    return 'stopped'


def inspect_or_none(client, container: str) -> Optional[Dict[str, Any]]:
    """The container's inspect document, None when the engine does not know it."""
    try:
        return client.inspect_container(container)
    except DockerError as exc:
        if exc.status != 404:
            raise
        return None


def change(client, cid: str, before: str, want: str, stop_timeout: int, remove_volumes: bool) -> None:
    """The Engine API calls that take the container from ``before`` to ``want``."""
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
        client.stop_container(cid, timeout=stop_timeout)
    else:
        if before == 'paused':
            # a frozen container cannot receive the stop signal
            client.post('/containers/%s/kill' % cid)
        elif before == 'running':
            client.stop_container(cid, timeout=stop_timeout)
        client.delete('/containers/%s' % cid, params={'force': 'true', 'v': remove_volumes or None})


def volume_plan(inspect: Optional[Dict[str, Any]], wanted: List[str]) -> Tuple[List[str], List[Dict[str, str]]]:
    """Which of the ``wanted`` named volumes to remove with the container: (remove, kept with reasons)."""
    if inspect is None:
        return [], [{'name': n, 'reason': 'the container was already gone, so nothing tells that this volume is its'}
                    for n in wanted]
    mounted = {m.get('Name') for m in inspect.get('Mounts') or [] if m.get('Type') == 'volume'}
    remove = [n for n in wanted if n in mounted]
    kept = [{'name': n, 'reason': 'the container does not mount it'} for n in wanted if n not in mounted]
    return remove, kept


def remove_named_volumes(client, names: List[str], kept: List[Dict[str, str]]) -> List[str]:
    """Remove the volumes ``names`` (the container is gone); one still in use goes to ``kept``."""
    removed = []
    for name in names:
        try:
            client.delete('/volumes/%s' % quote(name, safe=''))
            removed.append(name)
        except DockerError as exc:
            if exc.status == 404:
                continue
            users = [(c.get('Names') or ['?'])[0].lstrip('/')
                     for c in client.containers(all=True, filters={'volume': [name]})]
            kept.append({'name': name, 'reason': ('container %s still uses it' % ', '.join(users)) if users
                         else 'the engine refused to remove it: %s' % exc.msg})
    return removed


def reach_state(mod: MtdModule) -> None:
    p = mod.params
    if p['named_volumes'] and p['state'] != 'absent':
        raise MtdError('named_volumes goes with state absent only (the volumes are removed with the container).')
    inspect = inspect_or_none(mod.docker, p['container'])
    before = status_of(inspect)
    want = p['state']
    mod.result.update(before=before, after=before)
    if want == 'query':
        mod.result['status'] = before
    if inspect is not None:
        mod.result['id'] = inspect['Id']
        mod.result['labels'] = (inspect.get('Config') or {}).get('Labels') or {}
    mod.set_diff({'state': before}, {'state': before})
    if want == 'query' or (inspect is None and want == 'absent' and p['missing_ok']):
        return
    if inspect is None:
        raise MtdError('No such container %r on this host.' % p['container'])
    if want == 'paused' and before not in ('running', 'paused'):
        # fails in check mode too: the real run would
        raise MtdError('Only a running container can be paused; %s is %s.' % (p['container'], before))
    if before != want:
        mod.result.update(changed=True, after=want)
        mod.set_diff({'state': before}, {'state': want})
        if not mod.check_mode:
            change(mod.docker, inspect['Id'], before, want, p['stop_timeout'], p['remove_volumes'])


def reach_absent_with_volumes(mod: MtdModule) -> None:
    """state=absent with named_volumes: the container, then the named volumes it carried away."""
    inspect = inspect_or_none(mod.docker, mod.params['container'])
    remove, kept = volume_plan(inspect, list(dict.fromkeys(mod.params['named_volumes'])))
    reach_state(mod)
    if mod.check_mode:
        removed = remove
    else:
        removed = remove_named_volumes(mod.docker, remove, kept)
    mod.result.update(volumes_removed=removed, volumes_kept=kept)
    if removed:
        mod.result['changed'] = True


def run(mod: MtdModule) -> None:
    try:
        if mod.params['named_volumes'] and mod.params['state'] == 'absent':
            reach_absent_with_volumes(mod)
        else:
            reach_state(mod)
    except DockerError as exc:
        raise MtdError('Docker engine error on %s: %s' % (mod.params['container'], exc.msg), **exc.details)


ARGUMENT_SPEC = dict(
    container=dict(type='str', required=True),
    state=dict(type='str', required=True, choices=STATES),
    stop_timeout=dict(type='int', default=10),
    remove_volumes=dict(type='bool', default=False),
    named_volumes=dict(type='list', elements='str'),
    missing_ok=dict(type='bool', default=True),
)


def main():
    run_module(run, ARGUMENT_SPEC, docker=True)


if __name__ == '__main__':
    main()
