# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ledger action: a real JSON file under flock, shared by lanes in threads, the action run in-process."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.mtd.containers.plugins.action.fleet_ledger import ActionModule

DEBIAN = {'id': 'debian', 'version_id': '12'}
UBUNTU = {'id': 'ubuntu', 'version_id': '24.04'}


def run(args, check_mode=False):
    task = mock.MagicMock()
    task.args = args
    task.async_val = 0
    task.check_mode = check_mode
    task.action = 'mtd.containers.fleet_ledger'
    action = ActionModule(task, mock.MagicMock(), mock.MagicMock(check_mode=check_mode, diff=False),
                          loader=None, templar=None, shared_loader_obj=None)
    return action.run(task_vars={})


def init(path, n, units, check_mode=False, **limits):
    hosts = {'lab-1': {'os': DEBIAN, 'remaining': {'units': 0}},
             'lab-2': {'os': UBUNTU, 'docker': {'available': True}, 'remaining': {'units': 100}}}
    moves = [{'id': 'c%d' % i, 'name': 'web-%d' % i, 'host': 'lab-1'} for i in range(n)]
    containers = [{'id': 'c%d' % i, 'required': {'units': units}} for i in range(n)]
    return run(dict({'path': path, 'state': 'init', 'moves': moves, 'containers': containers, 'hosts': hosts}, **limits),
               check_mode)


def test_claims_reserve_a_failure_releases_and_the_file_is_private(tmp_path):
    path = str(tmp_path / 'out' / 'ledger.json')
    assert init(path, 3, 40, max_outbound=3, max_inbound=3, concurrency=3)['moves'] == 3
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    one = run({'path': path, 'state': 'claim', 'lane': 'lane-1'})
    two = run({'path': path, 'state': 'claim', 'lane': 'lane-2'})
    assert (one['action'], one['target'], two['action'], two['target']) == ('start', 'lab-2', 'start', 'lab-2')
    assert one['move']['port'] != two['move']['port'] and two['reserved'] == {'lab-2': {'units': 80.0}}
    # 100 - 80 = 20 < 40: the third waits for the two in flight; one fails and releases its 40 units
    timer = threading.Timer(0.5, run, args=({'path': path, 'state': 'release', 'key': 'lab-1/web-0',
                                             'outcome': 'Failed'},))
    timer.start()
    three = run({'path': path, 'state': 'claim', 'lane': 'lane-1', 'poll': 0.05})
    timer.join()
    assert (three['action'], three['move']['key'], three['target']) == ('start', 'lab-1/web-2', 'lab-2')
    assert three['waited'] >= 0.4 and three['counts'] == {'queued': 0, 'running': 2, 'succeeded': 0, 'failed': 1,
                                                          'unplaced': 0}
    for key in ('lab-1/web-1', 'lab-1/web-2'):
        assert run({'path': path, 'state': 'release', 'key': key, 'outcome': 'Succeeded'})['changed']
    done = run({'path': path, 'state': 'claim', 'lane': 'lane-2'})
    assert done['action'] == 'done' and not done['changed'] and done['reserved'] == {'lab-2': {'units': 80.0}}
    on_disk = json.loads(open(path).read())
    assert [m['status'] for m in on_disk['moves']] == ['failed', 'succeeded', 'succeeded']


def test_lanes_in_threads_never_overfill_the_target(tmp_path):
    # 10 containers of 30 units, one target of 100: three arrive, the other seven raise the alert
    path = str(tmp_path / 'ledger.json')
    init(path, 10, 30, concurrency=4, max_outbound=4, max_inbound=4)
    seen, lock = [], threading.Lock()

    def lane(name):
        while True:
            got = run({'path': path, 'state': 'claim', 'lane': name, 'poll': 0.01})
            if got['action'] == 'done':
                return
            with lock:
                seen.append((got['action'], got['reserved'].get('lab-2', {}).get('units', 0)))
            if got['action'] == 'start':
                time.sleep(0.05)
                run({'path': path, 'state': 'release', 'key': got['move']['key'], 'outcome': 'Succeeded'})

    threads = [threading.Thread(target=lane, args=('lane-%d' % i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(a for a, dummy in seen) == ['alert'] * 7 + ['start'] * 3
    assert max(units for dummy, units in seen) == 90.0


def test_an_alert_carries_the_target_host_alert(tmp_path):
    path = str(tmp_path / 'ledger.json')
    init(path, 1, 500)
    got = run({'path': path, 'state': 'claim', 'lane': 'lane-1'})
    assert got['action'] == 'alert' and got['target'] is None
    assert got['alert']['message'].startswith('no target host for container lab-1/web-0: none of the 2 candidate')
    assert 'counting the reservations of this run' in got['alert']['reason']


def test_misuse_fails_with_the_fix(tmp_path):
    path = str(tmp_path / 'none.json')
    with pytest.raises(AnsibleActionFail, match='run the task with state=init first'):
        run({'path': path, 'state': 'claim', 'lane': 'x'})
    os.symlink('/etc/passwd', path)
    with pytest.raises(AnsibleActionFail, match='not a regular file'):
        run({'path': path, 'state': 'release', 'key': 'a/b', 'outcome': 'Failed'})
    init(str(tmp_path / 'l.json'), 1, 1)
    with pytest.raises(AnsibleActionFail, match='needs lane'):
        run({'path': str(tmp_path / 'l.json'), 'state': 'claim'})
    assert run({'path': str(tmp_path / 'l.json'), 'state': 'claim', 'lane': 'a'})['action'] == 'start'
    with pytest.raises(AnsibleActionFail, match='waited 0 s for a migration to end'):
        run({'path': str(tmp_path / 'l.json'), 'state': 'claim', 'lane': 'b', 'timeout': 0.1, 'poll': 0.05})


def test_a_lane_left_from_a_killed_run_takes_nothing_from_the_rerun_ledger(tmp_path):
    path = str(tmp_path / 'ledger.json')
    old = init(path, 2, 1, concurrency=2)['run']
    new = init(path, 2, 1, concurrency=2)['run']          # the re-run writes its ledger at the same path
    assert old != new
    with pytest.raises(AnsibleActionFail, match='belongs to another run'):
        run({'path': path, 'state': 'claim', 'lane': 'lane-1', 'run': old})
    with pytest.raises(AnsibleActionFail, match='belongs to another run'):
        run({'path': path, 'state': 'release', 'key': 'lab-1/web-0', 'outcome': 'Failed', 'run': old})
    assert run({'path': path, 'state': 'claim', 'lane': 'lane-1', 'run': new})['action'] == 'start'


def test_check_mode_writes_nothing_at_the_path_and_absent_removes_its_private_copy(tmp_path, monkeypatch):
    monkeypatch.setattr('tempfile.tempdir', str(tmp_path / 'tmp'))
    os.mkdir(str(tmp_path / 'tmp'))
    path = str(tmp_path / 'out' / 'ledger.json')
    opened = init(path, 2, 40, check_mode=True, max_outbound=2, max_inbound=2, concurrency=2)
    scratch = opened['check_mode_path']
    assert scratch == str(tmp_path / 'tmp' / ('mtd-fleet-ledger-check-%s' % opened['run']) / 'ledger.json')
    assert stat.S_IMODE(os.stat(os.path.dirname(scratch)).st_mode) == 0o700
    # the lanes of the check-mode run share the private copy: two different moves, then done
    one = run({'path': path, 'state': 'claim', 'lane': 'l1', 'run': opened['run']}, check_mode=True)
    two = run({'path': path, 'state': 'claim', 'lane': 'l2', 'run': opened['run']}, check_mode=True)
    assert (one['move']['key'], two['move']['key']) == ('lab-1/web-0', 'lab-1/web-1')
    assert run({'path': path, 'state': 'release', 'key': 'lab-1/web-0', 'outcome': 'Succeeded',
                'run': opened['run']}, check_mode=True)['changed']
    assert not os.path.exists(str(tmp_path / 'out'))
    # without the run id a check-mode claim cannot find the copy: refused with the fix
    with pytest.raises(AnsibleActionFail, match='give run'):
        run({'path': path, 'state': 'claim', 'lane': 'l1'}, check_mode=True)
    assert run({'path': path, 'state': 'absent', 'run': opened['run']}, check_mode=True)['changed']
    assert os.listdir(str(tmp_path / 'tmp')) == [] and not os.path.exists(str(tmp_path / 'out'))
    assert not run({'path': path, 'state': 'absent', 'run': opened['run']}, check_mode=True)['changed']


def test_absent_removes_the_ledger_and_its_lock(tmp_path):
    path = str(tmp_path / 'ledger.json')
    init(path, 1, 1)
    run({'path': path, 'state': 'claim', 'lane': 'l1'})
    assert os.path.exists(path + '.lock')
    assert run({'path': path, 'state': 'absent'})['changed']
    assert os.listdir(str(tmp_path)) == []
    assert not run({'path': path, 'state': 'absent'})['changed']
