#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_schedule
short_description: Compute when each container must migrate (moving-target defense schedule)
version_added: 0.1.0
description:
  - Computes T1, the mean time to first attack over O(reference) containers, and a staggered migration plan for
    the running O(containers).
  - Containers are sorted (longest uptime first by default) and numbered i = 1..n; container number i is due for
    migration once its uptime exceeds its threshold, T1 + (i - 1) * delta_t. With O(group_by), numbering restarts
    in every group, so the containers of one service are staggered among themselves.
  - A container under attack (listed in O(attacked) or carrying C(attacked=true)) is due at once, whatever its
    threshold.
  - The module only computes; it reads nothing from and changes nothing on the host it runs on. Run it on the
    controller (task keyword C(delegate_to) set to V(localhost)) and feed it the C(ansible_facts.mtd.docker.containers) gathered by
    M(mtd.containers.host_facts).
extends_documentation_fragment:
  - mtd.containers.attributes
  - mtd.containers.attributes.actiongroup_mtd
  - mtd.containers.attributes.pure
options:
  reference:
    description:
      - The times to first attack of the m reference containers; RV(t1) is their mean.
      - Each item is either a duration (seconds as a number, or a string such as V(90s), V(15m), V(2h), V(1d), V(1h30m)),
        or a dict with the timestamps C(created) and C(first_attack) (epoch seconds or RFC 3339, for example
        V(2026-11-28T09:30:01.123456789Z)).
      - Must not be empty; a negative duration or a first attack before creation is an error.
    type: list
    elements: raw
    required: true
  delta_t:
    description:
      - The stagger (delta t) between two consecutive thresholds, in seconds or as a duration string such as V(30s).
      - Must be >= 0.
    type: raw
    required: true
  containers:
    description:
      - The running containers, as in C(ansible_facts.mtd.docker.containers) (extra keys are ignored).
      - Each dict needs C(id) and/or C(name), and C(uptime_seconds) or C(started_at) (then the uptime is
        O(now) minus C(started_at)).
      - Optional keys are C(host) (inventory name of the host running it; add it yourself when you merge the
        containers of several hosts), C(attacked) (bool), C(severity) and C(labels) (dict).
      - Container ids must be unique, and so must C(host)/C(name) pairs.
    type: list
    elements: dict
    required: true
  sort_key:
    description:
      - How containers are ordered before they are numbered.
      - V(uptime) (longest first when O(descending=true)), V(name), V(started_at), V(given) (the order of
        O(containers); O(descending) is ignored) or V(label:KEY) to sort by the value of label C(KEY) (numerically when
        every value is a number).
      - Containers without a value for the key come last. Ties are broken by name, then id, ascending, so the plan is
        deterministic.
    type: str
    default: uptime
  descending:
    description:
      - Sort in descending order of O(sort_key).
    type: bool
    default: true
  attacked:
    description:
      - Containers under attack, each named by its id (or a unique id prefix of at least 6 characters), its name, or
        V(host/name). They are due at once.
      - An entry that names no container in O(containers) is an error, and so is a name shared by containers on
        several hosts (use V(host/name) then).
    type: list
    elements: str
    default: []
  group_by:
    description:
      - A label key, such as V(mtd.service). Numbering, and so the thresholds, restart at 1 in every group of
        containers with the same label value.
      - Containers without the label form one group, returned as RV(plan[].group=null).
    type: str
  now:
    description:
      - The current time, as epoch seconds or an RFC 3339 timestamp; used only for containers given with
        C(started_at) and no C(uptime_seconds).
      - Defaults to the current time of the host the module runs on.
    type: raw
notes:
  - The RV(t1), RV(plan[].threshold), RV(plan[].uptime) and RV(plan[].start_offset) figures are in seconds.
  - A container is due when its uptime is strictly greater than its threshold.
seealso:
  - module: mtd.containers.target_host
    description: Decide where a due container moves.
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Tag every container with the inventory name of its host
  ansible.builtin.set_fact:
    mtd_host_containers: "{{ ansible_facts.mtd.docker.containers | map('combine', {'host': inventory_hostname}) }}"

- name: Plan the migrations of the containers of all hosts, staggered per service
  mtd.containers.migration_schedule:
    reference:
      - 100
      - 3m20s
      - created: "2026-11-28T08:00:00Z"
        first_attack: "2026-11-28T08:05:00Z"
    delta_t: 30s
    containers: "{{ ansible_play_hosts | map('extract', hostvars, 'mtd_host_containers') | flatten }}"
    group_by: mtd.service
  delegate_to: localhost
  run_once: true
  register: schedule

- name: Treat two containers as under attack
  mtd.containers.migration_schedule:
    reference: [200, 250, 300]
    delta_t: 60
    containers: "{{ ansible_facts.mtd.docker.containers | map('combine', {'host': inventory_hostname}) }}"
    attacked:
      - web-1
      - lab-2/db-1
  delegate_to: localhost
  register: schedule

- name: Show the plan
  ansible.builtin.debug:
    msg: "{{ schedule.plan | mtd.containers.plan_table(['i', 'host', 'name', 'uptime', 'threshold', 'due', 'reason']) }}"
"""

RETURN = r"""
t1:
  description: The mean time to first attack over the O(reference) items, in seconds.
  type: float
  returned: success
  sample: 200.0
delta_t:
  description: O(delta_t) in seconds.
  type: float
  returned: success
  sample: 30.0
m:
  description: The number of reference items T1 was computed from.
  type: int
  returned: success
  sample: 3
n:
  description: The number of containers planned.
  type: int
  returned: success
  sample: 3
now:
  description: The current time used, as epoch seconds.
  type: float
  returned: success
  sample: 1795858801.0
plan:
  description: One entry per container, in sort order.
  type: list
  elements: dict
  returned: success
  contains:
    i:
      description: The number of the container in its group, from 1.
      type: int
      sample: 2
    id:
      description: The container id, or V(null) when only a name was given.
      type: str
      sample: 0123abcd4567ef
    name:
      description: The container name, or V(null) when only an id was given.
      type: str
      sample: web-1
    host:
      description: The C(host) given with the container, or V(null).
      type: str
      sample: lab-1
    group:
      description: The value of the O(group_by) label, or V(null) (no O(group_by), or the label is absent).
      type: str
      sample: web
    threshold:
      description: T1 + (i - 1) * delta_t, in seconds.
      type: float
      sample: 230.0
    uptime:
      description: The uptime of the container, in seconds.
      type: float
      sample: 250.0
    due:
      description: Whether the container must migrate now (uptime > threshold, or under attack).
      type: bool
      sample: true
    immediate:
      description: Whether the container is under attack and so due at once.
      type: bool
      sample: false
    start_offset:
      description: Seconds from now until the container is due; V(0) when due or immediate.
      type: float
      sample: 0.0
    reason:
      description: A short explanation of the decision.
      type: str
      sample: uptime 250s exceeds threshold 230s
    severity:
      description: The C(severity) given with the container, or V(null).
      type: raw
      sample: high
  sample:
    - i: 1
      id: 0123abcd4567ef
      name: web-1
      host: lab-1
      group: null
      threshold: 200.0
      uptime: 250.0
      due: true
      immediate: false
      start_offset: 0.0
      reason: uptime 250s exceeds threshold 200s
      severity: null
due:
  description:
    - The due entries of RV(plan) (same keys), immediate ones first, then by threshold and C(i).
  type: list
  elements: dict
  returned: success
  sample: []
"""

import time

from ansible_collections.mtd.containers.plugins.module_utils._common import (
    MtdError,
    parse_duration,
    to_epoch,
)
from ansible_collections.mtd.containers.plugins.module_utils._module import run_module
from ansible_collections.mtd.containers.plugins.module_utils._schedule import (
    mean_time_to_first_attack,
    plan,
)


def run(params):
    """Compute the schedule from the module parameters; raises MtdError on bad input."""
    try:
        delta_t = parse_duration(params['delta_t'])
    except ValueError as exc:
        raise MtdError('delta_t: %s' % exc)
    if params['now'] in (None, ''):
        now = time.time()
    else:
        try:
            now = to_epoch(params['now'])
        except ValueError as exc:
            raise MtdError('now: %s' % exc)
    t1 = mean_time_to_first_attack(params['reference'])
    result = plan(
        params['containers'],
        t1,
        delta_t,
        sort_key=params['sort_key'],
        descending=params['descending'],
        attacked=params['attacked'],
        group_by=params['group_by'],
        now=now,
    )
    return {
        't1': t1,
        'delta_t': delta_t,
        'm': len(params['reference']),
        'n': len(result['plan']),
        'now': now,
        'plan': result['plan'],
        'due': result['due'],
    }


ARGUMENT_SPEC = dict(
    reference=dict(type='list', elements='raw', required=True),
    delta_t=dict(type='raw', required=True),
    containers=dict(type='list', elements='dict', required=True),
    sort_key=dict(type='str', default='uptime', no_log=False),
    descending=dict(type='bool', default=True),
    attacked=dict(type='list', elements='str', default=[]),
    group_by=dict(type='str'),
    now=dict(type='raw'),
)


def main():
    run_module(lambda mod: run(mod.params), ARGUMENT_SPEC)


if __name__ == '__main__':
    main()
