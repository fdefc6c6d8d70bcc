# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ansible-rulebook event filter: read a Falco-style alert into ``event.mtd``.

The rulebook ``intrusion_defense.yml`` decides on ``event.mtd`` only, never on the raw payload, and
the playbook receives only the values checked here (the alert comes from the network: a container
or host name carrying Jinja, spaces or a path must not reach ``ansible-playbook``'s extra vars).
"""

from __future__ import annotations

import re

DOCUMENTATION = r"""
---
short_description: Read a Falco-style intrusion alert for the mtd.containers rulebook.
description:
  - Adds C(event.mtd) to every event, with C(valid) (bool) and C(reason) (why not valid), and for a
    valid alert C(container), C(host), C(priority) (Falco's canonical spelling), C(rank) (0 for Debug
    up to 7 for Emergency), C(severity) (low, medium or high, the collection's mtd.severity labels),
    C(rule) and C(meets), the thresholds the alert reaches (every priority at or below its own, in
    Falco's spelling and in lower case), so a rulebook tests C(event.mtd.meets contains vars.threshold).
  - The alert is the webhook body C(event.payload) with C(priority), C(output_fields) with
    C(container.name) (or C(container.id)), and the host in C(hostname) (Falco's own field) or
    C(output_fields.host).
options: {}
"""

# Falco's priorities, lowest first (falco.yaml / rule files accept them case-insensitively).
PRIORITIES = ('Debug', 'Informational', 'Notice', 'Warning', 'Error', 'Critical', 'Alert', 'Emergency')
ALIASES = {'info': 'Informational'}
# The collection's severity labels (mtd.severity) for each priority rank.
SEVERITY_BY_RANK = ('low', 'low', 'low', 'medium', 'medium', 'high', 'high', 'high')
# Docker container names, and inventory host names as this collection's playbooks accept them.
CONTAINER_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$')
HOST_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$')
# Falco names events of processes outside any container "host".
NOT_A_CONTAINER = ('host', '<NA>', '')


def priority_rank(priority):
    """Return (canonical name, rank) of a Falco priority, or (None, None) when it is not one."""
    if not isinstance(priority, str):
        return None, None
    wanted = ALIASES.get(priority.strip().lower(), priority.strip())
    for rank, name in enumerate(PRIORITIES):
        if name.lower() == wanted.lower():
            return name, rank
    return None, None


def thresholds_met(rank):
    """Every threshold a priority of this rank reaches, in Falco's spelling and in lower case."""
    names = PRIORITIES[:rank + 1]
    return list(names) + [name.lower() for name in names] + (['info'] if rank >= 1 else [])


def _invalid(reason):
    return {'valid': False, 'reason': reason}


def _target(payload):
    """(container, host) named by the alert, or a reason string when they are missing or unsafe."""
    fields = payload.get('output_fields')
    if not isinstance(fields, dict):
        return 'the alert has no output_fields object'
    container = fields.get('container.name') or fields.get('container.id')
    host = payload.get('hostname') or fields.get('host')
    if not isinstance(container, str) or container in NOT_A_CONTAINER:
        return 'the alert names no container (output_fields container.name or container.id)'
    if not CONTAINER_RE.match(container):
        return 'the container name %r is not a Docker container name' % (container[:80],)
    if not isinstance(host, str) or not HOST_RE.match(host):
        return 'the alert names no valid host (hostname or output_fields host)'
    return container, host


def falco_alert(payload):
    """The ``event.mtd`` of one webhook body: what the rulebook decides on."""
    if not isinstance(payload, dict):
        return _invalid('the webhook body is not a JSON object')
    priority, rank = priority_rank(payload.get('priority'))
    if priority is None:
        return _invalid('unknown priority %r; use one of %s' % (str(payload.get('priority'))[:40],
                                                                ', '.join(PRIORITIES)))
    target = _target(payload)
    if isinstance(target, str):
        return _invalid(target)
    rule = payload.get('rule')
    return {
        'valid': True,
        'reason': '',
        'container': target[0],
        'host': target[1],
        'priority': priority,
        'rank': rank,
        'severity': SEVERITY_BY_RANK[rank],
        'rule': rule[:200] if isinstance(rule, str) else '',
        'meets': thresholds_met(rank),
    }


def main(event, *args, **kwargs):
    """ansible-rulebook's entry point: every event gets ``event.mtd``."""
    if isinstance(event, dict):
        event['mtd'] = falco_alert(event.get('payload'))
    return event
