# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rulebook's event filter (extensions/eda/plugins/event_filter/falco_alert.py): what an alert becomes."""

from __future__ import annotations

import pathlib
import runpy

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
FILTER = runpy.run_path(str(ROOT / 'extensions' / 'eda' / 'plugins' / 'event_filter' / 'falco_alert.py'))
falco_alert = FILTER['falco_alert']


def alert(priority='Critical', name='web-1', hostname='lab-1', **fields):
    body = {'output': '10:00:00 Critical Shell spawned in a container', 'priority': priority,
            'rule': 'Terminal shell in container', 'hostname': hostname,
            'output_fields': dict({'container.name': name, 'container.id': '0123456789ab'}, **fields)}
    if hostname is None:
        del body['hostname']
    return body


@pytest.mark.parametrize('priority, canonical, rank, severity', [
    ('Debug', 'Debug', 0, 'low'), ('informational', 'Informational', 1, 'low'), ('info', 'Informational', 1, 'low'),
    ('NOTICE', 'Notice', 2, 'low'), ('Warning', 'Warning', 3, 'medium'), ('Error', 'Error', 4, 'medium'),
    ('Critical', 'Critical', 5, 'high'), ('Alert', 'Alert', 6, 'high'), ('Emergency', 'Emergency', 7, 'high'),
])
def test_priority_gives_rank_and_severity(priority, canonical, rank, severity):
    out = falco_alert(alert(priority))
    assert out['valid'] is True, out
    assert (out['priority'], out['rank'], out['severity']) == (canonical, rank, severity)
    assert (out['container'], out['host'], out['rule']) == ('web-1', 'lab-1', 'Terminal shell in container')


@pytest.mark.parametrize('priority, threshold, meets', [
    ('Critical', 'Critical', True), ('Critical', 'critical', True), ('Critical', 'Warning', True),
    ('Alert', 'Critical', True), ('Error', 'Critical', False), ('Notice', 'Warning', False),
    ('Informational', 'info', True), ('Debug', 'info', False), ('Emergency', 'Emergency', True),
])
def test_the_threshold_is_met_by_this_priority_and_above(priority, threshold, meets):
    assert (threshold in falco_alert(alert(priority))['meets']) is meets


def test_host_from_output_fields_when_falco_gives_no_hostname():
    out = falco_alert(alert(hostname=None, host='lab-2'))
    assert out['valid'] and out['host'] == 'lab-2'


def test_container_id_when_no_name():
    body = alert()
    del body['output_fields']['container.name']
    assert falco_alert(body)['container'] == '0123456789ab'


@pytest.mark.parametrize('body, reason', [
    ('not an object', 'not a JSON object'),
    (alert(priority='Severe'), "unknown priority 'Severe'"),
    (dict(alert(), priority=None), 'unknown priority'),
    ({'priority': 'Critical', 'hostname': 'lab-1'}, 'no output_fields'),
    (alert(name='host'), 'names no container'),              # Falco's name for processes outside containers
    (alert(name="{{ lookup('pipe', 'id') }}"), 'not a Docker container name'),
    (alert(name='../etc'), 'not a Docker container name'),
    (alert(hostname='lab-1 x'), 'no valid host'),
    (alert(hostname="{{ 7 * 7 }}"), 'no valid host'),
    (alert(hostname=None), 'no valid host'),
])
def test_unusable_alerts_are_invalid_with_a_reason(body, reason):
    out = falco_alert(body)
    assert out['valid'] is False and reason in out['reason'], out
    assert 'container' not in out and 'host' not in out


def test_main_adds_mtd_to_the_event():
    event = {'payload': alert('Warning'), 'meta': {'endpoint': 'falco'}}
    out = FILTER['main'](event)
    assert out['mtd']['severity'] == 'medium' and out['payload'] == alert('Warning')
    assert FILTER['main']({'meta': {}})['mtd']['valid'] is False


def test_the_rulebook_decides_on_the_filtered_fields():
    book = yaml.safe_load((ROOT / 'extensions' / 'eda' / 'rulebooks' / 'intrusion_defense.yml').read_text())
    [ruleset] = book
    [source] = ruleset['sources']
    assert source['filters'] == [{'mtd.containers.falco_alert': None}]
    assert source['mtd.containers.webhook']['token'] == '{{ MTD_EDA_TOKEN }}'
    move, ignore, reject = ruleset['rules']
    assert move['throttle']['group_by_attributes'] == ['event.mtd.host', 'event.mtd.container']
    assert move['action']['run_playbook']['name'] == 'mtd.containers.defend_alert'
    assert 'event.mtd.valid == true' in move['condition'] and ' contains ' in move['condition']
    assert ' not contains ' in ignore['condition'] and reject['condition'] == 'event.mtd.valid == false'
    runtime = yaml.safe_load((ROOT / 'extensions' / 'eda' / 'eda_runtime.yml').read_text())
    assert runtime['plugin_routing']['event_source']['webhook']['redirect'] == 'eda.builtin.webhook'
