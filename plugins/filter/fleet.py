# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible.errors import AnsibleFilterError

RESOURCE_KEYS = ('cpus', 'memory_mb', 'units')


def _facts_of(hostvars, host):
    try:
        hv = hostvars[host]
    except KeyError:
        raise AnsibleFilterError('fleet: host %r is not in hostvars' % (host,))
    mtd = None
    if hasattr(hv, 'get'):
        mtd = (hv.get('ansible_facts') or {}).get('mtd') or hv.get('mtd')
    return hv, mtd


def fleet_hosts(hostvars, hosts):
    """Map inventory name -> ansible_facts.mtd for every host that has gathered them."""
    out = {}
    for host in hosts or []:
        dummy, mtd = _facts_of(hostvars, host)
        if mtd:
            out[host] = dict(mtd)
    return out


def fleet_containers(hostvars, hosts, attacked=None):
    """Flatten the running containers of every host into one list for migration_schedule/target_host.

    Each item is the container's facts plus ``host`` (inventory name), ``host_address`` (ansible_host),
    ``host_os``, ``required`` (its reservations) and ``attacked`` (its label, or named in ``attacked``
    as ``name``, ``id``, ``host/name``).
    """
    flagged = set(str(a) for a in (attacked or []))
    out = []
    for host in hosts or []:
        hv, mtd = _facts_of(hostvars, host)
        if not mtd:
            continue
        docker = mtd.get('docker') or {}
        for c in docker.get('containers') or []:
            item = dict(c)
            names = {str(c.get('name')), str(c.get('id')), '%s/%s' % (host, c.get('name'))}
            cid = str(c.get('id') or '')
            names.update(a for a in flagged if len(a) >= 12 and cid.startswith(a))
            item['host'] = host
            item['host_address'] = hv.get('ansible_host', host)
            item['host_os'] = dict(mtd.get('os') or {})
            item['ip'] = c.get('ip') or item['host_address']
            reservations = c.get('reservations') or {}
            item['required'] = dict((k, reservations.get(k, 0)) for k in RESOURCE_KEYS)
            item['attacked'] = bool(c.get('attacked')) or bool(names & flagged)
            out.append(item)
    return out


class FilterModule:
    def filters(self):
        return {
            'fleet_hosts': fleet_hosts,
            'fleet_containers': fleet_containers,
        }
