#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_ledger
short_description: Reservation ledger of a fleet run - which migration starts next, where, and what it holds
version_added: 0.1.0
description:
  - Keeps, on the Ansible controller, the ledger of one fleet run (the C(mtd.containers.defend) playbook) in a JSON
    file (mode 0600) that every read-modify-write takes under an exclusive lock (C(<path>.lock)), so that several
    lanes of the run, each migrating one container at a time, share it.
  - O(state=init) writes the ledger - the moves of the run in order, the hosts' facts as gathered at its start,
    the limits.
  - O(state=claim) waits until the calling lane may start a move and returns it with its target and a transfer
    port. A move waits while O(concurrency) migrations run, while its source host has O(max_outbound) migrations
    running, and for O(stagger) seconds after the last start from its source. Its target is chosen by the rule of
    M(mtd.containers.target_host) (another OS, the largest remaining resources that fit) among the hosts with
    fewer than O(max_inbound) migrations arriving, where the resources of the migrations in flight and of the
    succeeded ones are already taken from each host's remaining figures. When no host fits, and none would
    even if every migration in flight failed, the move gets an RV(alert) instead. When no move is left it
    returns RV(action=done).
  - O(state=absent) removes the ledger and its lock file (in check mode, the run's private copy).
  - O(state=release) ends a claimed move - V(Succeeded) keeps its reservation on the target, anything else (a
    failed, rolled-back migration) releases it.
  - It is an action plugin that runs in the controller's own process; no module is sent anywhere.
extends_documentation_fragment:
  - mtd.containers.attributes
  - mtd.containers.attributes.controller
attributes:
  check_mode:
    support: full
    details:
      - Nothing is written at O(path). The lanes of a check-mode run still share a ledger, so that the run shows
        which moves it would start and where - in a private directory of the run under the controller's temporary
        directory (RV(check_mode_path)), which O(state=absent) of the same O(run) removes (the defend playbook
        does so at its end; a check-mode run killed before its end leaves that directory behind).
  diff_mode:
    support: none
  idempotent:
    support: none
    details: O(state=claim) hands out each move once.
options:
  path:
    description:
      - Path of the ledger on the controller; its parent directory is created (mode 0700) when missing. A link or
        anything but a regular file there is refused.
    type: path
    required: true
  state:
    description: V(init) writes a new ledger, V(claim) takes the next move, V(release) ends one, V(absent) removes
      the ledger.
    type: str
    required: true
    choices: [init, claim, release, absent]
  moves:
    description: With O(state=init) - the moves of the run, most urgent first (the C(due) entries of
      M(mtd.containers.migration_schedule) - C(id), C(name), C(host)).
    type: list
    elements: dict
    default: []
  containers:
    description: With O(state=init) - the fleet's containers (the C(mtd.containers.fleet_containers) filter's list),
      whose C(required) resources are reserved on the target of their move.
    type: list
    elements: dict
    default: []
  hosts:
    description: With O(state=init) - the candidate hosts' C(ansible_facts.mtd) by inventory name (the
      C(mtd.containers.fleet_hosts) filter), including the source hosts.
    type: dict
    default: {}
  granularity:
    description: What "a different OS" means, as in M(mtd.containers.target_host).
    type: str
    default: id
    choices: [id, id_version, kernel]
  concurrency:
    description: With O(state=init) - migrations running at the same time in the whole run.
    type: int
    default: 1
  max_outbound:
    description: With O(state=init) - migrations running at the same time from one source host.
    type: int
    default: 1
  max_inbound:
    description: With O(state=init) - migrations running at the same time into one target host.
    type: int
    default: 1
  stagger:
    description: With O(state=init) - seconds between two migration starts from one source host.
    type: float
    default: 0
  lane:
    description: With O(state=claim) - the name of the lane that claims (kept in the ledger).
    type: str
    default: ''
  key:
    description: With O(state=release) - the move that ended, C(<source host>/<container name>) (the C(key) of RV(move)).
    type: str
    default: ''
  outcome:
    description: With O(state=release) - the migration's final state; V(Succeeded) keeps the reservation.
    type: str
    default: ''
  timeout:
    description: With O(state=claim) - seconds to wait for a move to become startable before failing.
    type: float
    default: 3600
  poll:
    description: With O(state=claim) - seconds between two looks at the ledger while waiting.
    type: float
    default: 0.25
  run:
    description:
      - With O(state=claim) and O(state=release) - the RV(run) that O(state=init) returned. When given, a ledger
        written by another run (a re-run at the same path after the controller was killed, whose
        workers may still wait in a claim) is refused instead of handing its moves out.
      - In check mode it is required for every state but V(init) - it names the run's private copy of the ledger.
    type: str
    default: ''
notes:
  - The transfer port of a claimed move (the C(port) of RV(move)) differs, with the next one (the post-copy page server's),
    from those of all migrations in flight, so that two migrations into or out of one host never collide.
seealso:
  - module: mtd.containers.target_host
  - module: mtd.containers.migration_schedule
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Open the ledger of the run
  mtd.containers.fleet_ledger:
    path: /home/ops/.local/state/mtd-containers/defend-ledger.json
    state: init
    moves: "{{ schedule.due }}"
    containers: "{{ hostvars | mtd.containers.fleet_containers(groups['lab']) }}"
    hosts: "{{ hostvars | mtd.containers.fleet_hosts(groups['lab']) }}"
    concurrency: 3

- name: Take the next move
  mtd.containers.fleet_ledger:
    path: /home/ops/.local/state/mtd-containers/defend-ledger.json
    state: claim
    lane: lane-1
  register: claimed

- name: Release it
  mtd.containers.fleet_ledger:
    path: /home/ops/.local/state/mtd-containers/defend-ledger.json
    state: release
    key: "{{ claimed.move.key }}"
    outcome: Failed
"""

RETURN = r"""
path:
  description: Absolute path of the ledger.
  returned: always
  type: str
  sample: /home/ops/.local/state/mtd-containers/defend-ledger.json
check_mode_path:
  description: In check mode - where the run's private copy of the ledger is (never at O(path)).
  returned: in check mode
  type: str
  sample: /tmp/mtd-fleet-ledger-check-3f1c2a9e6b7d4c0e8a5f1b2c3d4e5f60/ledger.json
counts:
  description: How many moves are queued, running, succeeded, failed and unplaced.
  returned: when state is not absent
  type: dict
  sample: {queued: 3, running: 2, succeeded: 1, failed: 0, unplaced: 0}
reserved:
  description: The resources held on each target by the running and succeeded moves.
  returned: when state is not absent
  type: dict
  sample: {lab-3: {cpus: 0.5, memory_mb: 64, units: 10}}
run:
  description: With O(state=init) - the id of this ledger (pass it to O(run) in the claims and releases).
  returned: when state is init
  type: str
  sample: 3f1c2a9e6b7d4c0e8a5f1b2c3d4e5f60
moves:
  description: With O(state=init) - the number of moves in the ledger.
  returned: when state is init
  type: int
  sample: 12
action:
  description: With O(state=claim) - V(start) (run RV(move) to RV(target)), V(alert) (no host fits it), V(done).
  returned: when state is claim
  type: str
  sample: start
reason:
  description: Why (the target choice's reason, or what the lane waited for).
  returned: when state is claim
  type: str
  sample: lab-3 has the largest remaining units, memory_mb, cpus among 2 fitting hosts
target:
  description: With V(start) - the target host of the move.
  returned: when state is claim
  type: str
  sample: lab-3
waited:
  description: Seconds the lane waited before the answer.
  returned: when state is claim
  type: float
  sample: 4.25
move:
  description: The ledger's entry of the move claimed or released (C(key), C(id), C(name), C(host), C(required),
    C(status), C(target), C(port), C(lane), C(started), C(ended)); null when there was none.
  returned: when state is claim or release
  type: dict
  sample: {key: lab-1/web-1, name: web-1, host: lab-1, target: lab-3, port: 47410, status: running}
alert:
  description: With V(alert) - the alert of M(mtd.containers.target_host) (container, reason, message).
  returned: when the action is alert
  type: dict
  sample: {message: "no target host for container lab-1/web-1: none of the 4 candidate hosts fits"}
"""
