# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the integration tests ran on: each passed test appends one line per host it used to the run record
(``$MTD_SUPPORT_RECORD``, default .build/support-record.jsonl), which scripts/support_matrix.py turns into the
README's support matrix and the versions the migrate role's preflight knows as tested."""

from __future__ import annotations

import datetime
import json
import os
import pathlib

from lab_helpers import ROOT, run_playbook

RECORD = pathlib.Path(os.environ.get('MTD_SUPPORT_RECORD', str(ROOT / '.build' / 'support-record.jsonl')))
# one pytest session is one run (unless MTD_SUPPORT_RUN names the run several sessions belong to)
RUN = os.environ.get('MTD_SUPPORT_RUN') or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def versions_row(host, facts):
    """The support-matrix row of one host from its ``ansible_facts.mtd``."""
    docker, criu, cgroup, osf = (facts.get(k) or {} for k in ('docker', 'criu', 'cgroup', 'os'))
    return {
        'host': host,
        'os': osf.get('pretty_name'),
        'engine': docker.get('version'),
        'containerd': (docker.get('containerd') or {}).get('version'),
        'runc': (docker.get('runc') or {}).get('version'),
        'criu': criu.get('version'),
        'kernel': osf.get('kernel'),
        'cgroup': cgroup.get('version'),
        'driver': docker.get('cgroup_driver'),
    }


def gather(hosts, directory, *inventory_args):
    """host_facts of ``hosts`` (a list), as ``{host: facts}``, read through the lab's inventories."""
    run_playbook('tests/integration/files/support_facts.yml', *inventory_args, '-e', 'sf_hosts=%s' % ','.join(hosts),
                 '-e', 'sf_dir=%s' % directory)
    return {h: json.loads((pathlib.Path(directory) / ('%s.json' % h)).read_text()) for h in hosts}


def record(test, rows):
    """Append that ``test`` passed on the hosts of ``rows`` (versions_row results)."""
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    with open(RECORD, 'a') as handle:
        for row in rows:
            handle.write(json.dumps(dict(row, test=test, run=RUN), sort_keys=True) + '\n')
