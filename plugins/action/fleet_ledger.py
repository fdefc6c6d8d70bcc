# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller-side reservation ledger of a fleet run (see plugins/modules/fleet_ledger.py for the docs)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
import uuid
from typing import Any, Dict

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.action import ActionBase

from ansible_collections.mtd.containers.plugins.module_utils import _fleet
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError, acquire_lock
from ansible_collections.mtd.containers.plugins.module_utils._files import atomic_write
from ansible_collections.mtd.containers.plugins.module_utils._placement import build_alert

ARGUMENT_SPEC = {
    'path': {'type': 'path', 'required': True},
    'state': {'type': 'str', 'required': True, 'choices': ['init', 'claim', 'release', 'absent']},
    'moves': {'type': 'list', 'elements': 'dict', 'default': []},
    'containers': {'type': 'list', 'elements': 'dict', 'default': []},
    'hosts': {'type': 'dict', 'default': {}},
    'granularity': {'type': 'str', 'default': 'id', 'choices': ['id', 'id_version', 'kernel']},
    'concurrency': {'type': 'int', 'default': 1},
    'max_outbound': {'type': 'int', 'default': 1},
    'max_inbound': {'type': 'int', 'default': 1},
    'stagger': {'type': 'float', 'default': 0},
    'lane': {'type': 'str', 'default': ''},
    'key': {'type': 'str', 'default': ''},
    'outcome': {'type': 'str', 'default': ''},
    'timeout': {'type': 'float', 'default': 3600},
    'poll': {'type': 'float', 'default': 0.25},
    'run': {'type': 'str', 'default': ''},
}


def read_ledger(path):
    """The ledger at ``path`` (a regular file, never followed through a link)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise MtdError('no ledger at %s: run the task with state=init first' % path)
    if not stat.S_ISREG(info.st_mode):
        raise MtdError('%s is not a regular file; the ledger is not read from there' % path)
    with open(path, 'rb') as handle:
        return json.loads(to_text(handle.read(), errors='surrogate_or_strict'))


def write_ledger(path, ledger):
    atomic_write(path, to_bytes(json.dumps(ledger, indent=2, sort_keys=True) + '\n'), mode=0o600)


class Locked:
    """The ledger's flock (``<path>.lock``) for one read-modify-write."""

    def __init__(self, path):
        self.path = path + '.lock'
        self.handle = None

    def __enter__(self):
        self.handle = acquire_lock(self.path, 60)
        if self.handle is None:
            raise MtdError('the ledger lock %s was held for 60 s; is another run using the same report path?'
                           % self.path)
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.close()
        return False


def summary(ledger):
    """What every answer carries: the counts per status and the reservations per host."""
    counts = dict((status, 0) for status in _fleet.STATUSES)
    for move in ledger['moves']:
        counts[move['status']] += 1
    return {'counts': counts, 'reserved': _fleet.reserved_on(ledger)}


def check_mode_dir(run):
    """Where a check-mode run keeps its ledger: a private directory of its own under the controller's temporary
    directory (never the report's directory), removed by state=absent at the end of the run."""
    if not run or not run.isalnum():
        raise MtdError('in check mode the ledger is found by its run id: give run (the run returned by state=init)')
    return os.path.join(tempfile.gettempdir(), 'mtd-fleet-ledger-check-%s' % run)


def do_init(path, args, run=None):
    directory = os.path.dirname(path)
    if run is not None:
        os.mkdir(directory, 0o700)   # check mode: a new directory of this run (its id is fresh), never an old one
    elif not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
    limits = dict((key, args[key]) for key in ('concurrency', 'max_outbound', 'max_inbound', 'stagger'))
    ledger = _fleet.new_ledger(args['moves'], args['containers'], args['hosts'], limits, args['granularity'])
    ledger['run'] = run or uuid.uuid4().hex
    with Locked(path):
        write_ledger(path, ledger)
    return dict(summary(ledger), changed=True, moves=len(ledger['moves']), run=ledger['run'])


def read_own(path, run):
    """The ledger, when it is the one of ``run`` (a worker of an earlier, killed run must not take moves from the
    ledger a re-run wrote at the same path)."""
    ledger = read_ledger(path)
    if run and ledger.get('run') != run:
        raise MtdError('the ledger now belongs to another run (%s, not %s); this lane is left from an earlier run'
                       % (ledger.get('run'), run))
    return ledger


def claim_once(path, lane, run):
    with Locked(path):
        ledger = read_own(path, run)
        decision = _fleet.claim(ledger, lane, time.time())
        if decision['action'] in ('start', 'alert'):
            write_ledger(path, ledger)
    return decision, ledger


def do_claim(path, args):
    """Wait (polling the ledger) until this lane may start a move, must raise an alert, or all is done."""
    if not args['lane']:
        raise MtdError('state=claim needs lane, the name of the lane that claims')
    deadline = time.time() + args['timeout']
    waited = 0.0
    while True:
        decision, ledger = claim_once(path, args['lane'], args['run'])
        if decision['action'] != 'wait':
            break
        if time.time() >= deadline:
            raise MtdError('waited %d s for a migration to end (%s); raise timeout or look for a stuck lane'
                           % (args['timeout'], decision['reason']))
        time.sleep(args['poll'])
        waited += args['poll']
    result = dict(summary(ledger), action=decision['action'], reason=decision['reason'], waited=round(waited, 2),
                  changed=decision['action'] != 'done', move=decision.get('move'), target=decision.get('target'))
    if decision['action'] == 'alert':
        move = decision['move']
        result['alert'] = build_alert({'id': move['id'], 'name': move['name'], 'host': move['host']},
                                      None, 0, decision['reason'] + ' (counting the reservations of this run)')
    return result


def do_release(path, args):
    if not args['key']:
        raise MtdError('state=release needs key, the host/name of the move that ended')
    with Locked(path):
        ledger = read_own(path, args['run'])
        move = _fleet.release(ledger, args['key'], args['outcome'], time.time())
        if move is not None:
            write_ledger(path, ledger)
    return dict(summary(ledger), changed=move is not None, move=move)


def do_absent(path, args):
    """Remove the ledger and its lock file (a link or anything but a regular file there is left alone)."""
    removed = False
    for name in (path, path + '.lock'):
        try:
            info = os.lstat(name)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode):
            raise MtdError('%s is not a regular file; it is not removed' % name)
        os.unlink(name)
        removed = True
    return {'changed': removed}


def in_check_mode(state, args):
    """Check mode: the ledger lives in the run's private directory under the controller's temporary directory
    (lanes of the run still share it, so the run shows what it would do); the path given is never written, and
    state=absent removes that directory. Returns the result."""
    run = args['run'] or (uuid.uuid4().hex if state == 'init' else '')
    directory = check_mode_dir(run)
    scratch = os.path.join(directory, 'ledger.json')
    result: Dict[str, Any]
    if state == 'absent':
        changed = os.path.isdir(directory) and not os.path.islink(directory)
        if changed:
            shutil.rmtree(directory)
        result = {'changed': changed}
    elif state == 'init':
        result = do_init(scratch, args, run)
    else:
        result = {'claim': do_claim, 'release': do_release}[state](scratch, args)
    result['check_mode_path'] = scratch
    return result


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        path = os.path.abspath(args['path'])
        steps = {'init': do_init, 'claim': do_claim, 'release': do_release, 'absent': do_absent}
        try:
            if self._task.check_mode:
                result.update(in_check_mode(args['state'], args))
            else:
                result.update(steps[args['state']](path, args))
        except (OSError, ValueError, UnicodeError, MtdError) as exc:
            raise AnsibleActionFail('Ledger %s: %s' % (path, to_native(exc)))
        result['path'] = path
        return result
