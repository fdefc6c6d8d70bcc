# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The migrate role's filters: preflight, the Completed record, state transitions, the rollback outcome."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.mtd.containers.plugins.filter.migration import (
    FilterModule,
    migration_completed,
    migration_preflight,
    migration_transition,
    rollback_outcome,
)


def host(experimental=True, check_ok=True, version='4.1.1', lazy=True, available=True):
    return {'docker': {'available': available, 'experimental': experimental},
            'criu': {'check_ok': check_ok, 'version': version, 'lazy_pages': lazy}}


CHOICE = {'target': 'lab-3', 'rejected': []}


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {'migration_preflight', 'migration_completed', 'migration_transition',
                                             'rollback_outcome', 'migration_source_volumes'}


# ---- migration_preflight ---------------------------------------------------------------------------

def test_preflight_passes():
    assert migration_preflight(CHOICE, host(), host()) == {'ok': True, 'reason': '', 'warnings': []}
    assert migration_preflight(CHOICE, host(), host(version='4.2'), 'lazy') == {'ok': True, 'reason': '', 'warnings': []}


def test_no_target_names_the_rejected_hosts():
    choice = {'target': None, 'rejected': [{'name': 'lab-2', 'reason': 'same OS'},
                                           {'name': 'lab-4', 'reason': 'not enough memory'}]}
    assert migration_preflight(choice, host(), {}) == {
        'ok': False, 'reason': 'no target host fits: lab-2: same OS; lab-4: not enough memory', 'warnings': []}


@pytest.mark.parametrize('src, tgt, memory, reason', [
    (host(experimental=False), host(), 'copy',
     'engines experimental [False, True], criu check [True, True], criu versions [\'4.1.1\', \'4.1.1\']'),
    (host(), host(check_ok=False), 'copy',
     'engines experimental [True, True], criu check [True, False], criu versions [\'4.1.1\', \'4.1.1\']'),
    (host(), host(version='3.17.1'), 'copy',
     'engines experimental [True, True], criu check [True, True], criu versions [\'4.1.1\', \'3.17.1\']'),
    (host(), {}, 'copy',
     'engines experimental [True, False], criu check [True, False], criu versions [\'4.1.1\', \'none\']'),
    (host(), host(lazy=False), 'lazy',
     'engines experimental [True, True], criu check [True, True], criu versions [\'4.1.1\', \'4.1.1\'], '
     'lazy pages (userfaultfd) on the target False'),
])
def test_preflight_reason_shows_what_was_compared(src, tgt, memory, reason):
    assert migration_preflight(CHOICE, src, tgt, memory) == {'ok': False, 'reason': reason, 'warnings': []}


def test_an_engine_that_does_not_answer_fails_the_preflight():
    result = migration_preflight(CHOICE, host(), host(available=False))
    assert result['ok'] is False and result['reason'].startswith('engines experimental [True, True]')


def test_lazy_pages_matter_only_for_post_copy():
    assert migration_preflight(CHOICE, host(), host(lazy=False), 'copy')['ok'] is True


def engine(version, runc='1.1.15+ds1', criu_path='/usr/sbin/criu', checked='/usr/sbin/criu'):
    facts = host()
    facts['docker'].update(version=version, containerd={'version': '1.7.24~ds1'},
                           runc={'version': runc, 'criu_path': criu_path})
    facts['criu'].update(path=checked)
    return facts


TESTED = {'engine': ['20.10.24', '26.1.5'], 'containerd': ['1.6.20', '1.7.24'], 'runc': ['1.1.5', '1.1.15'],
          'criu': ['4.1.1']}


def test_preflight_refuses_docker_25_0_2_on_the_target():
    result = migration_preflight(CHOICE, engine('20.10.24+dfsg1'), engine('25.0.2'), 'copy', 'none', TESTED)
    assert result['ok'] is False
    assert result['reason'].startswith('target: Docker 25.0.2 fails restores ("content digest not found"')


def test_preflight_docker_28_depends_on_the_network_mode():
    assert migration_preflight(CHOICE, engine('26.1.5'), engine('28.5.2+dfsg4'), 'copy', 'host')['ok'] is True
    assert migration_preflight(CHOICE, engine('26.1.5'), engine('28.5.2+dfsg4'), 'copy', 'none')['ok'] is False
    result = migration_preflight(CHOICE, engine('28.5.2+dfsg4'), engine('26.1.5'), 'copy', 'bridge')
    assert result['ok'] is False and 'source: Docker 28.5.2+dfsg4' in result['reason']
    assert 'moby#50750' in result['reason'] and 'network mode bridge' in result['reason']


def test_preflight_gate_reasons_come_after_the_base_reason():
    src = engine('25.0.0')
    src['docker']['experimental'] = False
    reason = migration_preflight(CHOICE, src, engine('26.1.5'))['reason']
    assert reason.startswith('engines experimental [False, True]') and '; source: Docker 25.0.0' in reason


def test_preflight_refuses_runc_running_another_criu():
    tgt = engine('27.5.1', runc='1.2.5', criu_path='/usr/sbin/criu', checked='/usr/local/sbin/criu')
    result = migration_preflight(CHOICE, engine('26.1.5'), tgt, 'copy', 'none')
    assert result['ok'] is False
    assert result['reason'] == ('target: runc 1.2.5 runs /usr/sbin/criu (the criu on the engine\'s PATH; it ignores '
                                '--criu), not the checked /usr/local/sbin/criu: make them the same binary')


def test_preflight_warns_about_untested_versions_only():
    result = migration_preflight(CHOICE, engine('20.10.24+dfsg1', runc='1.1.5+ds1'),
                                 engine('27.5.1+dfsg4', runc='1.1.15'), 'copy', 'none', TESTED)
    assert result == {'ok': True, 'reason': '',
                      'warnings': ['target: no integration test has run engine 27.5.1']}
    # without the tested data there is nothing to warn about
    assert migration_preflight(CHOICE, engine('20.10.24'), engine('27.5.1'))['warnings'] == []


# ---- migration_completed ---------------------------------------------------------------------------

CP = {
    'frozen_at': 1000.25, 'precopy': {'used': False, 'reason': 'no dirty tracking'},
    'timings': {'dump': 0.4, 'send': 0.3}, 'bytes': {'criu': 10, 'total': 30},
    'transfer': {'seconds': 0.3, 'bytes_raw': 30, 'bytes_sent': 20, 'compression': 'zstd', 'encryption': 'tls',
                 'throughput_mb_s': 0.1, 'other': 'not kept'},
}
RESTORED = {
    'resumed_at': 1001.1234, 'container': {'id': 'abc'}, 'timings': {'restore': 0.5},
    'received': {'seconds': 0.31, 'bytes_received': 20}, 'image_delivery': {'used': 'direct'},
}


def test_completed_record():
    record = {'precopy': {'used': False, 'reason': 'earlier'}, 'phases': {'prepare': {'pull': 1}, 'memory': 'copy'}}
    extra = migration_completed(record, CP, RESTORED, 'copy')
    assert extra == {
        'target_container_id': 'abc',
        'precopy': CP['precopy'],
        'frozen_seconds': 0.873,
        'frozen_at': 1000.25,
        'resumed_at': 1001.1234,
        'phases': {
            'prepare': {'pull': 1},
            'transfer': {'seconds': 0.3, 'bytes_raw': 30, 'bytes_sent': 20, 'compression': 'zstd',
                         'encryption': 'tls', 'throughput_mb_s': 0.1},
            'checkpoint': {'dump': 0.4, 'send': 0.3}, 'bytes': {'criu': 10, 'total': 30},
            'receive': {'seconds': 0.31, 'bytes_received': 20},
            'restore': {'restore': 0.5}, 'memory': 'copy', 'image_delivery': 'direct',
            'criu_adapted': {'manage_cgroups': None, 'cgroup_mounts': [], 'mounts_dropped': []},
        },
    }
    assert record['phases'] == {'prepare': {'pull': 1}, 'memory': 'copy'}, 'the input record was changed'


def test_completed_without_clocks_or_optional_results():
    record = {'precopy': {'used': False, 'reason': 'earlier'}, 'phases': {}}
    cp = dict(CP, frozen_at=None)
    del cp['precopy']
    restored = {'resumed_at': 5, 'container': {'id': 'abc'}, 'timings': {}}
    extra = migration_completed(record, cp, restored)
    assert extra['frozen_seconds'] is None
    assert extra['frozen_at'] is None and extra['resumed_at'] == 5
    assert extra['precopy'] == {'used': False, 'reason': 'earlier'}
    assert extra['phases']['receive'] == {'seconds': None, 'bytes_received': None}
    # a VM (cgroup v2) -> lab-1 restore: what the target adapted is in the record
    restored = dict(restored, criu_manage_cgroups='ignore', criu_cgroup_mounts=['/sys/fs/cgroup'],
                    criu_mounts_dropped=['/proc/sysrq-trigger'])
    assert migration_completed(record, cp, restored)['phases']['criu_adapted'] == {
        'manage_cgroups': 'ignore', 'cgroup_mounts': ['/sys/fs/cgroup'], 'mounts_dropped': ['/proc/sysrq-trigger']}
    assert extra['phases']['image_delivery'] is None


# ---- migration_transition --------------------------------------------------------------------------

def test_transition_appends_history_and_merges_extra():
    record = {'id': 'm-1', 'state': 'Pending', 'history': [{'state': 'Pending', 'at': 'x', 'epoch': 1.0}],
              'phases': {}, 'target': ''}
    out = migration_transition(record, 'Ready', {'target': 'lab-3', 'phases': {'memory': 'copy'}}, now=0.5)
    assert out['state'] == 'Ready' and out['target'] == 'lab-3' and out['phases'] == {'memory': 'copy'}
    assert out['updated'] == '1970-01-01T00:00:00.500000Z'
    assert out['history'] == [{'state': 'Pending', 'at': 'x', 'epoch': 1.0},
                              {'state': 'Ready', 'at': '1970-01-01T00:00:00.500000Z', 'epoch': 0.5}]
    assert record['state'] == 'Pending' and len(record['history']) == 1, 'the input record was changed'


def test_transition_uses_the_clock():
    out = migration_transition({'history': []}, 'Pending')
    assert out['history'][0]['epoch'] > 1.6e9 and out['updated'].endswith('Z')


@pytest.mark.parametrize('record, state', [({}, 'Done'), ([], 'Ready')])
def test_transition_refuses_bad_input(record, state):
    with pytest.raises(AnsibleFilterError):
        migration_transition(record, state)


# ---- rollback_outcome ------------------------------------------------------------------------------

def test_rollback_that_cleaned_everything():
    assert rollback_outcome({'changed': True, 'removed': ['x']}, {'changed': False}, {'after': 'running'}) == {
        'source': 'running', 'target_cleaned': True, 'checkpoint_cleaned': True}


@pytest.mark.parametrize('cleanup', [
    {'failed': False, 'failed_when_result': False, 'msg': 'A restore of migration m-1 still runs on this host'},
    {'unreachable': True, 'msg': 'Failed to connect'},
    {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'},
    {},
])
def test_cleanups_that_failed_or_did_not_run(cleanup):
    out = rollback_outcome(cleanup, cleanup, {})
    assert out == {'source': 'unknown', 'target_cleaned': False, 'checkpoint_cleaned': False}


# ---------------------------------------------------------------------------------------------------
# migration_source_volumes: what the source kept of the data the migration carried away

def test_source_volumes_removed_and_kept_from_the_result():
    from ansible_collections.mtd.containers.plugins.filter.migration import migration_source_volumes
    result = {'volumes_removed': ['web-data'], 'volumes_kept': [{'name': 'shared', 'reason': 'container x still uses it'}]}
    assert migration_source_volumes(result, ['web-data', 'shared']) == {
        'removed': ['web-data'], 'kept': [{'name': 'shared', 'reason': 'container x still uses it'}]}
    # no volumes carried: container_state got no named_volumes and returned no such keys
    assert migration_source_volumes({'changed': True}, []) == {'removed': [], 'kept': []}


@pytest.mark.parametrize('keep_source, keep_volumes, reason', [
    (True, False, 'migrate_keep_source (the source container was kept, stopped)'),
    (False, True, 'migrate_keep_source_volumes'),
    (True, True, 'migrate_keep_source (the source container was kept, stopped)'),
])
def test_source_volumes_kept_on_purpose_are_reported(keep_source, keep_volumes, reason):
    from ansible_collections.mtd.containers.plugins.filter.migration import migration_source_volumes
    assert migration_source_volumes({}, ['a', 'b'], keep_source, keep_volumes) == {
        'removed': [], 'kept': [{'name': 'a', 'reason': reason}, {'name': 'b', 'reason': reason}]}
