#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: target_host
short_description: Choose the host a container moves to, on a different OS, or raise an alert
version_added: 0.1.0
description:
  - Chooses the target host of a container migration among O(candidates), from their C(ansible_facts.mtd) facts
    (see M(mtd.containers.host_facts)).
  - Step 1, the preliminary hosts are the candidates whose OS differs from the OS of the container's current host
    (compared at O(granularity)); the current host itself is never chosen.
  - Step 2, the remaining capacity of each preliminary host is C(remaining) from its facts, or C(capacity - reserved).
  - Step 3, among the preliminary hosts whose remaining figure is at least the required one for B(every) resource in
    O(container.required), the host with the largest remaining figures wins, compared in the order of O(rank_by);
    ties go to the host name that sorts first, so the choice is deterministic.
  - Every candidate that is not chosen is listed in RV(rejected) with the reason.
  - When no host fits, the module returns an RV(alert) and a RV(rebuild) decision (rebuild when the severity level of
    the container exceeds O(rebuild_threshold)), and, when O(webhook) is set, POSTs them as JSON to the webhook.
  - The decision itself reads nothing and changes nothing; run the module on the controller (task keyword
    C(delegate_to) set to V(localhost)).
extends_documentation_fragment:
  - mtd.containers.attributes
  - mtd.containers.attributes.actiongroup_mtd
attributes:
  check_mode:
    support: full
    details:
      - The decision is computed as usual; the webhook is not called, and RV(webhook.would_send) tells whether it would
        have been.
  diff_mode:
    support: N/A
    details: The module changes nothing on any host.
  idempotent:
    support: partial
    details:
      - The decision is idempotent. Every run in which no host fits POSTs the alert to O(webhook) again and reports
        RV(ignore:changed=true) when the POST is delivered.
options:
  container:
    description:
      - The container that must move.
    type: dict
    required: true
    suboptions:
      id:
        description: The container id.
        type: str
      name:
        description: The container name.
        type: str
      ip:
        description: The IP address of the container, passed on in the alert.
        type: str
      host:
        description:
          - The inventory name of the host currently running the container. It is excluded from the choice.
          - When O(container.os) is not given, the OS of this host is read from O(candidates).
        type: str
      os:
        description:
          - The OS facts (C(id), C(version_id), C(kernel)) of the host running the container, as in
            C(ansible_facts.mtd.os).
          - Defaults to the OS of O(container.host) in O(candidates).
        type: dict
      required:
        description:
          - The resources the container needs on its target, a dict with the keys C(cpus), C(memory_mb) and C(units),
            as the C(reservations) of a container in C(ansible_facts.mtd.docker.containers).
          - Only the resources given are checked; values must be >= 0.
        type: dict
      attacked:
        description: Whether the container is under attack; passed on in the alert.
        type: bool
        default: false
      severity:
        description:
          - The severity of the attack, a name from O(severity_levels) (case-insensitive) or an integer level.
          - No severity is level V(0).
        type: raw
  candidates:
    description:
      - The candidate hosts and their facts, either a dict of inventory host name to C(ansible_facts.mtd) facts, or a
        list of dicts each with C(name) and the facts (inline, or in a C(mtd) or C(facts) sub-dict).
      - The facts used are C(os), C(remaining) (or C(capacity) and C(reserved)) and C(docker.available) (a host whose
        engine is unavailable is rejected).
      - An empty dict or list is allowed; no host fits then.
    type: raw
    required: true
  granularity:
    description:
      - When two hosts run the "same OS".
      - V(id), same C(os.id) (V(debian) and V(ubuntu) differ, Debian 11 and 12 do not).
      - V(id_version), same C(os.id) and C(os.version_id).
      - V(kernel), same C(os.id), C(os.version_id) and C(os.kernel).
    type: str
    choices: [id, id_version, kernel]
    default: id
  rank_by:
    description:
      - The remaining figures that pick the largest host, compared in this order (lexicographically, larger first).
      - A host without a figure ranks after the hosts that have it.
    type: list
    elements: str
    default: [units, memory_mb, cpus]
  severity_levels:
    description:
      - Severity names and their integer levels.
    type: dict
    default:
      low: 3
      medium: 6
      high: 9
  rebuild_threshold:
    description:
      - When no host fits, the container must be rebuilt when its severity level is greater than this threshold.
    type: int
    default: 5
  webhook:
    description:
      - Where to POST the alert when no host fits. Nothing is sent when a host fits.
      - The JSON body is an object with the keys C(event) (V(mtd.no_target)), C(alert) (RV(alert)) and C(rebuild)
        (RV(rebuild)); C(rebuild) is present only when the rebuild is decided.
      - A delivery that fails after all retries does not fail the task; it is reported by a warning and in
        RV(webhook.error).
    type: dict
    suboptions:
      url:
        description:
          - The URL to POST to.
          - Its path and query often carry a secret (a webhook token), so the option is C(no_log) and results,
            warnings and errors show only its scheme and host (RV(webhook.url)). Redirects are not followed.
        type: str
        required: true
      headers:
        description: Extra HTTP headers, such as an C(Authorization) token. C(Content-Type) is V(application/json).
        type: dict
      timeout:
        description: Timeout of one attempt, in seconds.
        type: float
        default: 10
      retries:
        description:
          - How many times to try again after a connection error or an HTTP status 408, 429 or 5xx. Other statuses
            are not retried.
        type: int
        default: 3
      retry_delay:
        description: Seconds to wait between two attempts.
        type: float
        default: 1
      validate_certs:
        description: Whether to validate the TLS certificate of an HTTPS URL.
        type: bool
        default: true
notes:
  - Resources are compared as in C(ansible_facts.mtd), CPUs as floats, memory in MiB, C(units) as an abstract figure.
  - A required resource that a host's facts lack rejects that host, with the reason.
seealso:
  - module: mtd.containers.migration_schedule
    description: Decide when containers move.
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Choose where each due container of the schedule moves
  mtd.containers.target_host:
    container:
      id: "{{ item.id }}"
      name: "{{ item.name }}"
      host: "{{ item.host }}"
      attacked: "{{ item.immediate }}"
      severity: "{{ item.severity }}"
      required: >-
        {{ (hostvars[item.host].ansible_facts.mtd.docker.containers
            | selectattr('id', 'equalto', item.id) | first).reservations }}
    candidates: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, ['ansible_facts', 'mtd']))) }}"
    granularity: id_version
  loop: "{{ schedule.due }}"
  delegate_to: localhost
  register: targets

- name: Choose a target and raise an alert through a webhook when none fits
  mtd.containers.target_host:
    container:
      name: db-1
      host: lab-1
      required: {cpus: 1, memory_mb: 512, units: 20}
      severity: high
    candidates:
      - name: lab-2
        mtd: "{{ hostvars['lab-2'].ansible_facts.mtd }}"
      - name: lab-3
        mtd: "{{ hostvars['lab-3'].ansible_facts.mtd }}"
      - name: lab-1
        mtd: "{{ hostvars['lab-1'].ansible_facts.mtd }}"
    webhook:
      url: https://alerts.example.com/mtd
      headers:
        Authorization: "Bearer {{ mtd_alert_token }}"
      retries: 5
  delegate_to: localhost
  register: placement

- name: Explain the choice
  ansible.builtin.debug:
    msg: "{{ placement.rejected | mtd.containers.plan_table(['name', 'reason']) }}"
"""

RETURN = r"""
target:
  description: The inventory name of the chosen host, or V(null) when no host fits.
  type: str
  returned: success
  sample: lab-3
fits:
  description: Whether a host fits (RV(target) is not V(null)).
  type: bool
  returned: success
  sample: true
reason:
  description: Why RV(target) was chosen, or why no host fits.
  type: str
  returned: success
  sample: lab-3 has the largest remaining units, memory_mb, cpus among 2 fitting hosts
target_facts:
  description: The facts of the chosen host as given in O(candidates), or V(null).
  type: dict
  returned: success
  sample: {os: {id: alpine, version_id: "3.20"}, remaining: {cpus: 1.5, memory_mb: 23789, units: 90}}
chosen:
  description: A summary of the chosen host, or V(null).
  type: dict
  returned: success
  contains:
    name:
      description: The host name.
      type: str
    os:
      description: The OS facts of the host.
      type: dict
    remaining:
      description: Every remaining figure of the host.
      type: dict
    remaining_after:
      description: The remaining figures of the required resources once the container has moved.
      type: dict
  sample:
    name: lab-3
    os: {id: alpine, version_id: "3.20", kernel: 6.6.0}
    remaining: {cpus: 1.5, memory_mb: 23789, units: 90}
    remaining_after: {cpus: 1.0, memory_mb: 23533, units: 80}
preliminary:
  description: The candidates whose OS differs from the OS of the container's host (before the resource check).
  type: list
  elements: str
  returned: success
  sample: [lab-2, lab-3]
rejected:
  description: One entry for every candidate that is not the target, in the order of O(candidates).
  type: list
  elements: dict
  returned: success
  contains:
    name:
      description: The host name.
      type: str
    reason:
      description: Why the host was not chosen.
      type: str
    code:
      description:
        - The kind of reason, one of V(current_host), V(same_os), V(missing_facts), V(no_docker), V(insufficient),
          V(not_chosen).
      type: str
  sample:
    - {name: lab-1, reason: "is the container's current host", code: current_host}
    - {name: lab-4, reason: "same OS as the container's host (debian)", code: same_os}
    - {name: lab-2, reason: "insufficient units: remaining 4 < required 5", code: insufficient}
    - {name: lab-5, reason: "fits but has less remaining than lab-3", code: not_chosen}
ranking:
  description:
    - The fitting hosts, best first (at most 20).
  type: list
  elements: dict
  returned: success
  contains:
    rank:
      description: The position, from 1.
      type: int
    name:
      description: The host name.
      type: str
    remaining:
      description: The remaining figures of the O(rank_by) and required resources.
      type: dict
  sample:
    - {rank: 1, name: lab-3, remaining: {units: 7, memory_mb: 2048, cpus: 2.0}}
    - {rank: 2, name: lab-5, remaining: {units: 5, memory_mb: 4096, cpus: 4.0}}
required:
  description: The required resources that were checked, as numbers.
  type: dict
  returned: success
  sample: {cpus: 0.5, memory_mb: 256.0, units: 5.0}
level:
  description: The severity level of the container (V(0) without severity).
  type: int
  returned: success
  sample: 6
alert:
  description: The alert, when no host fits; V(null) otherwise.
  type: dict
  returned: success
  contains:
    container:
      description: C(id), C(name), C(ip), C(host) and C(attacked) of the container.
      type: dict
    severity:
      description: O(container.severity) as given.
      type: raw
    level:
      description: The severity level.
      type: int
    reason:
      description: Why no host fits.
      type: str
    message:
      description: A one-line message for humans.
      type: str
  sample:
    container: {id: 0123abcd, name: db-1, ip: 10.0.0.5, host: lab-1, attacked: true}
    severity: high
    level: 9
    reason: "none of the 3 candidate hosts fits (1 the container's current host, 2 same OS as the container's host)"
    message: "no target host for container lab-1/db-1: none of the 3 candidate hosts fits (...)"
rebuild:
  description: The rebuild decision, when no host fits; V(null) otherwise.
  type: dict
  returned: success
  contains:
    decision:
      description: Whether the container must be rebuilt (level greater than threshold).
      type: bool
    level:
      description: The severity level.
      type: int
    threshold:
      description: O(rebuild_threshold).
      type: int
    reason:
      description: The decision in words.
      type: str
    container:
      description: C(id), C(name), C(ip), C(host) and C(attacked) of the container.
      type: dict
    os:
      description: The OS facts of the container's host.
      type: dict
    required:
      description: The required resources.
      type: dict
  sample:
    decision: true
    level: 9
    threshold: 5
    reason: "severity level 9 exceeds threshold 5: rebuild the container"
    container: {id: 0123abcd, name: db-1, ip: 10.0.0.5, host: lab-1, attacked: true}
    os: {id: debian, version_id: "12", kernel: 6.1.0}
    required: {cpus: 1.0, memory_mb: 512.0, units: 20.0}
webhook:
  description: What happened with O(webhook).
  type: dict
  returned: success
  contains:
    url:
      description:
        - The scheme, host and port of O(webhook.url) (C(scheme://host[:port])), or V(null) when no webhook is set.
        - The path, the query and any user name or password of the URL are left out, since they often carry a secret.
      type: str
    sent:
      description: Whether the alert was delivered (HTTP status 2xx).
      type: bool
    would_send:
      description: Whether the alert is to be sent (no host fits and a webhook is set), in check mode too.
      type: bool
    status:
      description: The HTTP status of the last attempt, or V(null).
      type: int
    attempts:
      description: How many POSTs were made.
      type: int
    error:
      description: Why the delivery failed, or V(null).
      type: str
  sample: {url: "https://alerts.example.com", sent: true, would_send: true, status: 200, attempts: 2, error: null}
elapsed_ms:
  description: The time the decision took, in milliseconds (the webhook excluded).
  type: float
  returned: success
  sample: 3.2
"""

import json
import time
from typing import Any, Dict, Optional
from urllib.error import HTTPError
from urllib.parse import urlsplit, urlunsplit

from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.urls import open_url

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._module import MtdModule, run_module
from ansible_collections.mtd.containers.plugins.module_utils._placement import (
    build_alert,
    build_rebuild_request,
    choose_target,
    severity_level,
)

RANKING_LIMIT = 20
RETRY_STATUSES = (408, 429)
EVENT = 'mtd.no_target'


def _redact(url):
    """``scheme://host[:port]`` of the URL, for results and messages: no user, password, path or query.

    The path and query of a webhook URL often are its secret (``https://hooks.example/T0/B1/XyZ``).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return '(an invalid URL)'
    if not parts.scheme or not host:
        return '(an invalid URL)'
    shown = '[%s]' % host if ':' in host else host
    if port is not None:
        shown += ':%d' % port
    return urlunsplit((parts.scheme, shown, '', '', ''))


def _scrub(text, url):
    """``text`` (an exception's message) with the URL and its path + query replaced by the redacted form."""
    parts = urlsplit(url)
    text = text.replace(url, _redact(url))
    for secret in (parts.path + ('?' + parts.query if parts.query else ''), parts.query, parts.path):
        if len(secret) > 1:
            text = text.replace(secret, '/***')
    return text


class Webhook:
    """POSTs one JSON document, retrying connection errors and 408/429/5xx answers."""

    def __init__(self, options):
        self.url = options['url']
        self.headers = dict(options.get('headers') or {})
        self.timeout = options['timeout']
        self.retries = options['retries']
        self.retry_delay = options['retry_delay']
        self.validate_certs = options['validate_certs']

    def check(self):
        if self.timeout <= 0:
            raise MtdError('webhook.timeout must be > 0 seconds, got %s' % self.timeout)
        if self.retries < 0:
            raise MtdError('webhook.retries must be >= 0, got %s' % self.retries)
        if self.retry_delay < 0:
            raise MtdError('webhook.retry_delay must be >= 0 seconds, got %s' % self.retry_delay)
        if urlsplit(self.url).scheme not in ('http', 'https'):
            raise MtdError('webhook.url must be an http or https URL, got %s' % _redact(self.url))

    def post(self, document):
        headers = {'Content-Type': 'application/json'}
        headers.update(self.headers)
        body = json.dumps(document, sort_keys=True).encode('utf-8')
        result = {'url': _redact(self.url), 'sent': False, 'would_send': True, 'status': None, 'attempts': 0, 'error': None}
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_delay)
            result['attempts'] = attempt + 1
            try:
                # No redirect is followed: it would carry the headers (an Authorization token) elsewhere.
                response = open_url(self.url, data=body, headers=headers, method='POST', timeout=self.timeout,
                                    validate_certs=self.validate_certs, follow_redirects='none')
                try:
                    response.read()
                    status = response.getcode()
                finally:
                    response.close()
            except HTTPError as exc:
                status = exc.code
                exc.close()
            except Exception as exc:  # pylint: disable=broad-exception-caught
                # URLError, socket errors, timeouts, TLS errors: the endpoint was not reached.
                result['status'] = None
                reason = _scrub(to_native(getattr(exc, 'reason', exc)), self.url)
                result['error'] = 'cannot reach %s: %s' % (_redact(self.url), reason)
                continue
            result['status'] = status
            if 200 <= status < 300:
                result['sent'] = True
                result['error'] = None
                return result
            result['error'] = 'HTTP status %s from %s' % (status, _redact(self.url))
            if status < 500 and status not in RETRY_STATUSES:
                break
        return result


class TargetHost:
    """Decide the target, build the alert and the rebuild decision, notify the webhook."""

    def __init__(self, mod: MtdModule):
        self.mod = mod
        self.params = mod.params

    def run(self) -> Dict[str, Any]:
        params = self.params
        container = dict(params['container'])
        webhook = Webhook(params['webhook']) if params['webhook'] else None
        if webhook:
            webhook.check()
        level = severity_level(container.get('severity'), params['severity_levels'])

        started = time.perf_counter()
        decision = choose_target(container, params['candidates'], granularity=params['granularity'],
                                 rank_by=params['rank_by'], ranking_limit=RANKING_LIMIT)
        alert = None
        rebuild = None
        if not decision['fits']:
            alert = build_alert(container, container.get('severity'), level, decision['reason'])
            rebuild = build_rebuild_request(container, decision['container_os'], decision['required'], level,
                                            params['rebuild_threshold'])
        elapsed_ms = round((time.perf_counter() - started) * 1000.0, 3)
        delivery = self._notify(webhook, alert, rebuild)
        return {
            'changed': delivery['sent'],
            'target': decision['target'],
            'fits': decision['fits'],
            'reason': decision['reason'],
            'target_facts': decision['target_facts'],
            'chosen': decision['chosen'],
            'preliminary': decision['preliminary'],
            'rejected': decision['rejected'],
            'ranking': decision['ranking'],
            'required': decision['required'],
            'level': level,
            'alert': alert,
            'rebuild': rebuild,
            'webhook': delivery,
            'elapsed_ms': elapsed_ms,
        }

    def _notify(self, webhook: Optional[Webhook], alert: Optional[Dict[str, Any]],
                rebuild: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """POST the no-target alert (and the rebuild request when decided) to the webhook, unless in check mode."""
        delivery = {'url': _redact(webhook.url) if webhook else None, 'sent': False, 'would_send': False, 'status': None,
                    'attempts': 0, 'error': None}
        if webhook is None or alert is None or rebuild is None:
            return delivery
        delivery['would_send'] = True
        if self.mod.check_mode:
            return delivery
        document = {'event': EVENT, 'alert': alert}
        if rebuild['decision']:
            document['rebuild'] = rebuild
        delivery = webhook.post(document)
        if not delivery['sent']:
            self.mod.warn('The no-target alert was not delivered to the webhook after %d attempt(s): %s'
                          % (delivery['attempts'], delivery['error']))
        return delivery


ARGUMENT_SPEC = dict(
    container=dict(
        type='dict',
        required=True,
        options=dict(
            id=dict(type='str'),
            name=dict(type='str'),
            ip=dict(type='str'),
            host=dict(type='str'),
            os=dict(type='dict'),
            required=dict(type='dict'),
            attacked=dict(type='bool', default=False),
            severity=dict(type='raw'),
        ),
        required_one_of=[('id', 'name')],
    ),
    candidates=dict(type='raw', required=True),
    granularity=dict(type='str', default='id', choices=['id', 'id_version', 'kernel']),
    rank_by=dict(type='list', elements='str', default=['units', 'memory_mb', 'cpus']),
    severity_levels=dict(type='dict', default=dict(low=3, medium=6, high=9)),
    rebuild_threshold=dict(type='int', default=5),
    webhook=dict(
        type='dict',
        options=dict(
            url=dict(type='str', required=True, no_log=True),
            headers=dict(type='dict', no_log=True),
            timeout=dict(type='float', default=10),
            retries=dict(type='int', default=3),
            retry_delay=dict(type='float', default=1),
            validate_certs=dict(type='bool', default=True),
        ),
    ),
)


def main():
    run_module(lambda mod: TargetHost(mod).run(), ARGUMENT_SPEC)


if __name__ == '__main__':
    main()
