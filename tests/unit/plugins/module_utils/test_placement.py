# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._placement import (
    build_alert,
    build_rebuild_request,
    choose_target,
    normalise_candidates,
    os_key,
    rebuild_decision,
    remaining_of,
    severity_level,
    shortfall,
)

DEBIAN12 = {'id': 'debian', 'version_id': '12', 'kernel': '6.1.0-28-amd64'}
DEBIAN11 = {'id': 'debian', 'version_id': '11', 'kernel': '5.10.0-33-amd64'}
UBUNTU = {'id': 'ubuntu', 'version_id': '24.04', 'kernel': '6.8.0-45-generic'}
ALPINE = {'id': 'alpine', 'version_id': '3.20.3', 'kernel': '6.6.58-0-lts'}
FEDORA = {'id': 'fedora', 'version_id': '41', 'kernel': '6.11.4-301.fc41.x86_64'}


def host(os, units, memory_mb=4096, cpus=4.0):
    return {'os': dict(os), 'remaining': {'units': units, 'memory_mb': memory_mb, 'cpus': cpus}}


def container(required=None, **extra):
    result = {'id': 'c0ffee', 'name': 'web-1', 'ip': '10.0.0.5', 'host': 'lab-1',
              'required': {'units': 5} if required is None else required}
    result.update(extra)
    return result


def reasons(result):
    return dict((entry['name'], entry['reason']) for entry in result['rejected'])


# ---------------------------------------------------------------- os_key

@pytest.mark.parametrize('granularity, expected', [
    ('id', ('debian',)),
    ('id_version', ('debian', '12')),
    ('kernel', ('debian', '12', '6.1.0-28-amd64')),
])
def test_os_key(granularity, expected):
    assert os_key(DEBIAN12, granularity) == expected


def test_os_key_granularity_decides_sameness():
    assert os_key(DEBIAN11, 'id') == os_key(DEBIAN12, 'id')
    assert os_key(DEBIAN11, 'id_version') != os_key(DEBIAN12, 'id_version')
    same_release_other_kernel = dict(DEBIAN12, kernel='6.1.0-30-amd64')
    assert os_key(same_release_other_kernel, 'id_version') == os_key(DEBIAN12, 'id_version')
    assert os_key(same_release_other_kernel, 'kernel') != os_key(DEBIAN12, 'kernel')
    assert os_key({'id': 'Debian ', 'version_id': 12}, 'id_version') == ('debian', '12')
    assert os_key({'id': 'alpine'}, 'id_version') == ('alpine', '')


@pytest.mark.parametrize('facts, granularity, message', [
    (None, 'id', r'missing OS facts \(os.id\)'),
    ({}, 'id', r'missing OS facts \(os.id\)'),
    ({'id': 'debian', 'version_id': '12'}, 'kernel', r'missing OS facts \(os.kernel\)'),
    (DEBIAN12, 'distro', r"granularity 'distro' is not supported"),
])
def test_os_key_rejects(facts, granularity, message):
    with pytest.raises(MtdError, match=message):
        os_key(facts, granularity)


# ---------------------------------------------------------------- candidates and remaining

def test_remaining_from_facts_or_capacity_minus_reserved():
    assert remaining_of({'remaining': {'units': 7}, 'capacity': {'units': 100}, 'reserved': {'units': 10}}) == {'units': 7}
    assert remaining_of({'capacity': {'cpus': 2.0, 'memory_mb': 24045, 'units': 100},
                         'reserved': {'cpus': 0.5, 'memory_mb': 256, 'units': 10}}) == {
        'cpus': 1.5, 'memory_mb': 23789, 'units': 90}
    # Per key: remaining wins, capacity - reserved fills the gaps, no reserved means 0 reserved.
    assert remaining_of({'remaining': {'units': 3}, 'capacity': {'units': 100, 'cpus': 2}}) == {'units': 3, 'cpus': 2}
    # 1.0 - 0.7 is 0.30000000000000004 in floats; rounded so that a 0.3 requirement still fits.
    assert remaining_of({'capacity': {'cpus': 1.0}, 'reserved': {'cpus': 0.7}}) == {'cpus': 0.3}
    assert remaining_of({'remaining': {'units': 'lots'}}) == {}


def test_normalise_candidates_forms():
    facts = host(UBUNTU, 5)
    from_dict = normalise_candidates({'lab-2': facts, 'lab-3': {'mtd': facts}, 'lab-4': {'ansible_facts': {'mtd': facts}}})
    from_list = normalise_candidates([
        dict(facts, name='lab-2'),
        {'name': 'lab-3', 'mtd': facts},
        {'name': 'lab-4', 'facts': facts},
    ])
    for result in (from_dict, from_list):
        assert [entry['name'] for entry in result] == ['lab-2', 'lab-3', 'lab-4']
        assert all(entry['os'] == UBUNTU for entry in result)
    assert normalise_candidates(None) == []
    assert normalise_candidates([]) == []


@pytest.mark.parametrize('candidates, message', [
    ('lab-2', 'candidates must be a dict of host name'),
    ([{'os': UBUNTU}], r'candidates\[0\] has no name'),
    (['lab-2'], r'candidates\[0\] must be a dict'),
    ([{'name': 'lab-2'}, {'name': 'lab-2'}], 'candidate lab-2 appears twice'),
    ({'lab-2': 'facts'}, 'the facts of candidate lab-2 must be a dict'),
])
def test_normalise_candidates_rejects(candidates, message):
    with pytest.raises(MtdError, match=message):
        normalise_candidates(candidates)


# ---------------------------------------------------------------- choose_target: worked numbers

def test_required_5_remaining_4_5_7_largest_wins():
    candidates = {
        'lab-1': host(DEBIAN12, 50),   # the container's host
        'lab-2': host(UBUNTU, 4),
        'lab-3': host(ALPINE, 5),
        'lab-4': host(FEDORA, 7),
    }
    result = choose_target(container(), candidates)
    assert result['target'] == 'lab-4'
    assert result['fits'] is True
    assert result['preliminary'] == ['lab-2', 'lab-3', 'lab-4']
    assert reasons(result) == {
        'lab-1': "is the container's current host",
        'lab-2': 'insufficient units: remaining 4 < required 5',
        'lab-3': 'fits but has less remaining than lab-4',
    }
    assert [entry['code'] for entry in result['rejected']] == ['current_host', 'insufficient', 'not_chosen']
    assert [(entry['rank'], entry['name'], entry['remaining']['units']) for entry in result['ranking']] == [
        (1, 'lab-4', 7), (2, 'lab-3', 5)]
    assert result['chosen']['name'] == 'lab-4'
    assert result['chosen']['remaining_after'] == {'units': 2}
    assert result['chosen']['os'] == FEDORA
    assert result['target_facts'] is candidates['lab-4']
    assert result['reason'] == 'lab-4 has the largest remaining units, memory_mb, cpus among 2 fitting hosts'


def test_required_5_remaining_5_accepted_when_only_fit():
    candidates = {'lab-1': host(DEBIAN12, 50), 'lab-2': host(UBUNTU, 4), 'lab-3': host(ALPINE, 5)}
    result = choose_target(container(), candidates)
    assert result['target'] == 'lab-3'
    assert result['chosen']['remaining_after'] == {'units': 0}
    assert reasons(result)['lab-2'] == 'insufficient units: remaining 4 < required 5'
    assert result['reason'].endswith('among 1 fitting host')


def test_every_required_resource_must_fit_and_every_shortfall_is_told():
    candidates = {
        'lab-2': host(UBUNTU, 9, memory_mb=100, cpus=0.25),
        'lab-3': host(ALPINE, 9, memory_mb=300, cpus=1),
    }
    result = choose_target(container({'units': 5, 'memory_mb': 200, 'cpus': 0.5}, os=DEBIAN12), candidates)
    assert result['target'] == 'lab-3'
    assert reasons(result) == {
        'lab-2': 'insufficient memory_mb: remaining 100 < required 200; insufficient cpus: remaining 0.25 < required 0.5'}


def test_lexicographic_rank_by_and_name_tie_break():
    candidates = {
        'lab-9': host(UBUNTU, 7, memory_mb=1000),
        'lab-3': host(ALPINE, 7, memory_mb=2000),
        'lab-2': host(FEDORA, 7, memory_mb=2000),
        'lab-5': host(UBUNTU, 6, memory_mb=9000),
    }
    result = choose_target(container(os=DEBIAN12), candidates)
    # units tie at 7, memory_mb 2000 beats 1000, lab-2 and lab-3 tie on everything: the name decides.
    assert result['target'] == 'lab-2'
    assert [entry['name'] for entry in result['ranking']] == ['lab-2', 'lab-3', 'lab-9', 'lab-5']
    assert reasons(result)['lab-3'] == 'fits but ties with lab-2 on remaining units, memory_mb, cpus; lab-2 comes first by name'
    assert reasons(result)['lab-9'] == 'fits but has less remaining than lab-2'
    # The same input in another order decides the same.
    again = choose_target(container(os=DEBIAN12), dict(reversed(list(candidates.items()))))
    assert again['target'] == 'lab-2'
    assert again['ranking'] == result['ranking']
    # Another rank_by order: memory first.
    assert choose_target(container(os=DEBIAN12), candidates, rank_by=['memory_mb'])['target'] == 'lab-5'


def test_empty_candidates_no_target():
    for empty in ({}, [], None):
        result = choose_target(container(os=DEBIAN12), empty)
        assert result['target'] is None
        assert result['fits'] is False
        assert result['rejected'] == []
        assert result['ranking'] == []
        assert result['chosen'] is None
        assert result['reason'] == 'no candidate hosts were given'


def test_all_candidates_same_os_no_target():
    candidates = {
        'lab-1': host(DEBIAN12, 100),
        'lab-2': host(DEBIAN12, 100),
        'lab-3': host(DEBIAN11, 100),
    }
    result = choose_target(container(), candidates, granularity='id')
    assert result['target'] is None
    assert result['preliminary'] == []
    assert reasons(result) == {
        'lab-1': "is the container's current host",
        'lab-2': "same OS as the container's host (debian)",
        'lab-3': "same OS as the container's host (debian)",
    }
    assert result['reason'] == ("none of the 3 candidate hosts fits (1 the container's current host, "
                                "2 same OS as the container's host)")
    # With id_version, Debian 11 differs from Debian 12.
    result = choose_target(container(), candidates, granularity='id_version')
    assert result['target'] == 'lab-3'
    assert reasons(result)['lab-2'] == "same OS as the container's host (debian 12)"


def test_same_os_reason_at_kernel_granularity():
    candidates = {'lab-2': host(DEBIAN12, 9), 'lab-3': host(dict(DEBIAN12, kernel='6.1.0-30-amd64'), 9)}
    result = choose_target(container(os=DEBIAN12), candidates, granularity='kernel')
    assert result['target'] == 'lab-3'
    assert reasons(result) == {'lab-2': "same OS as the container's host (debian 12, kernel 6.1.0-28-amd64)"}


def test_container_os_read_from_its_host_or_given():
    candidates = {'lab-1': host(UBUNTU, 1), 'lab-2': host(UBUNTU, 9), 'lab-3': host(DEBIAN12, 9)}
    assert choose_target(container(), candidates)['target'] == 'lab-3'
    # An explicit os wins over the candidates' facts.
    assert choose_target(container(os=DEBIAN12), candidates)['target'] == 'lab-2'
    with pytest.raises(MtdError, match=r'cannot tell the OS of the host of container lab-9/web-1: give container.os '
                                       r'or include its host lab-9 in the candidates'):
        choose_target(container(host='lab-9'), candidates)
    with pytest.raises(MtdError, match=r"the OS of the container's host is unusable: missing OS facts"):
        choose_target(container(os={'name': 'Debian'}), candidates)


def test_missing_facts_are_rejections():
    candidates = {
        'lab-2': {'remaining': {'units': 9}},
        'lab-3': {'os': UBUNTU, 'remaining': {'memory_mb': 9000}},
        'lab-4': {'os': ALPINE, 'remaining': {'units': 9}, 'docker': {'available': False}},
        'lab-5': {'os': FEDORA, 'capacity': {'units': 20}, 'reserved': {'units': 15}},
    }
    result = choose_target(container(os=DEBIAN12), candidates)
    assert result['target'] == 'lab-5'
    assert result['preliminary'] == ['lab-3', 'lab-4', 'lab-5']
    assert reasons(result) == {
        'lab-2': 'missing OS facts (os.id)',
        'lab-3': 'missing facts: no remaining units',
        'lab-4': 'docker is not available on the host',
    }
    assert [entry['code'] for entry in result['rejected']] == ['missing_facts', 'missing_facts', 'no_docker']


def test_no_required_resources_means_largest_wins():
    candidates = {'lab-2': host(UBUNTU, 1), 'lab-3': host(ALPINE, 2)}
    assert choose_target(container({}, os=DEBIAN12), candidates)['target'] == 'lab-3'
    assert choose_target({'name': 'x', 'os': DEBIAN12}, candidates)['target'] == 'lab-3'


def test_resources_limits_the_checked_figures():
    candidates = {'lab-2': host(UBUNTU, 1, memory_mb=9000)}
    required = {'units': 5, 'memory_mb': 512}
    assert choose_target(container(required, os=DEBIAN12), candidates)['target'] is None
    assert choose_target(container(required, os=DEBIAN12), candidates, resources=['memory_mb'])['target'] == 'lab-2'


def test_host_without_rank_figure_ranks_last():
    candidates = {'lab-2': {'os': UBUNTU, 'remaining': {'units': 9}},
                  'lab-3': {'os': ALPINE, 'remaining': {'units': 9, 'memory_mb': 1}}}
    result = choose_target(container(os=DEBIAN12), candidates)
    assert [entry['name'] for entry in result['ranking']] == ['lab-3', 'lab-2']
    assert result['ranking'][1]['remaining'] == {'units': 9, 'memory_mb': None, 'cpus': None}


def test_ranking_limit():
    candidates = dict(('lab-%03d' % index, host(UBUNTU, index)) for index in range(100))
    result = choose_target(container(os=DEBIAN12), candidates, ranking_limit=20)
    assert len(result['ranking']) == 20
    assert result['ranking'][0]['name'] == 'lab-099'
    assert result['ranking'][-1]['name'] == 'lab-080'
    assert len(result['rejected']) == 99
    json.dumps(result)


@pytest.mark.parametrize('kwargs, message', [
    (dict(required={'units': -1}), r'container.required.units is negative \(-1\)'),
    (dict(required={'units': 'five'}), r'container.required.units must be a number'),
    (dict(required=[5]), r'container.required must be a dict'),
])
def test_choose_target_rejects_bad_requirements(kwargs, message):
    with pytest.raises(MtdError, match=message):
        choose_target(container(os=DEBIAN12, **kwargs), {'lab-2': host(UBUNTU, 9)})


@pytest.mark.parametrize('kwargs, message', [
    (dict(granularity='distro'), r"granularity 'distro' is not supported"),
    (dict(rank_by=[]), r'rank_by must be a non-empty list'),
])
def test_choose_target_rejects_bad_options(kwargs, message):
    with pytest.raises(MtdError, match=message):
        choose_target(container(os=DEBIAN12), {'lab-2': host(UBUNTU, 9)}, **kwargs)


def test_choose_target_rejects_non_dict_container():
    with pytest.raises(MtdError, match='container must be a dict'):
        choose_target('web-1', {})


# ---------------------------------------------------------------- severity and rebuild

@pytest.mark.parametrize('severity, level', [
    ('low', 3), ('medium', 6), ('high', 9), ('HIGH', 9), (' Medium ', 6),
    (0, 0), (7, 7), ('8', 8), (None, 0), ('', 0), (6.0, 6),
])
def test_severity_level(severity, level):
    assert severity_level(severity) == level


def test_severity_level_custom_levels():
    assert severity_level('critical', {'critical': 10, 'Low': 1}) == 10
    assert severity_level('low', {'critical': 10, 'Low': 1}) == 1


@pytest.mark.parametrize('severity, message', [
    ('critical', r"unknown severity 'critical'; use one of high, low, medium or an integer"),
    (-1, 'negative'),
    (True, 'boolean'),
    ([9], 'must be a name or an integer'),
])
def test_severity_level_rejects(severity, message):
    with pytest.raises(MtdError, match=message):
        severity_level(severity)


@pytest.mark.parametrize('level, rebuild', [(3, False), (5, False), (6, True), (9, True)])
def test_rebuild_decision_threshold_5(level, rebuild):
    assert rebuild_decision(level, 5) is rebuild


@pytest.mark.parametrize('severity, rebuild', [('low', False), ('medium', True), ('high', True), (3, False), (6, True), (9, True)])
def test_severity_to_rebuild(severity, rebuild):
    assert rebuild_decision(severity_level(severity), 5) is rebuild


def test_build_alert_and_rebuild_request():
    cont = container(os=DEBIAN12, attacked=True)
    alert = build_alert(cont, 'high', 9, 'no candidate hosts were given')
    assert alert == {
        'container': {'id': 'c0ffee', 'name': 'web-1', 'ip': '10.0.0.5', 'host': 'lab-1', 'attacked': True},
        'severity': 'high',
        'level': 9,
        'reason': 'no candidate hosts were given',
        'message': 'no target host for container lab-1/web-1: no candidate hosts were given',
    }
    request = build_rebuild_request(cont, DEBIAN12, {'units': 5.0}, 9, 5)
    assert request['decision'] is True
    assert request['reason'] == 'severity level 9 exceeds threshold 5: rebuild the container'
    assert request['os'] == DEBIAN12 and request['os'] is not DEBIAN12
    assert request['required'] == {'units': 5.0}
    assert request['container']['name'] == 'web-1'
    low = build_rebuild_request(cont, DEBIAN12, {}, 3, 5)
    assert low['decision'] is False
    assert low['reason'] == 'severity level 3 does not exceed threshold 5: no rebuild'
    json.dumps([alert, request, low])


@pytest.mark.parametrize('remaining, required, expected', [
    ({'units': 5, 'cpus': 1.5}, {'units': 5, 'cpus': 1.5}, ([], 'insufficient')),     # exactly enough fits
    ({'units': 4}, {'units': 5}, (['insufficient units: remaining 4 < required 5'], 'insufficient')),
    ({'units': 9, 'memory_mb': 255.5}, {'units': 5, 'memory_mb': 256},
     (['insufficient memory_mb: remaining 255.5 < required 256'], 'insufficient')),
    ({'units': 4}, {'units': 5, 'cpus': 1},
     (['insufficient units: remaining 4 < required 5', 'missing facts: no remaining cpus'], 'missing_facts')),
    ({}, {}, ([], 'insufficient')),                                                     # nothing required
])
def test_shortfall(remaining, required, expected):
    assert shortfall(remaining, required) == expected
