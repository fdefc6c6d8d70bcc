# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ansible_collections.mtd.containers.plugins.modules import target_host
from ansible_collections.mtd.containers.tests.unit.plugins.modules import module_harness
from ansible_collections.mtd.containers.tests.unit.plugins.modules.module_harness import free_port


def run_module(args, expect_failure=False):
    """Run main(); return (result, list of warnings)."""
    warnings = []
    result = module_harness.run_module(target_host.main, args, expect_failure, warnings=warnings)
    return result, warnings


# ---------------------------------------------------------------- a tiny webhook receiver

class Receiver:
    """An HTTP server on 127.0.0.1 (free port) in a thread; answers POSTs with the scripted statuses."""

    def __init__(self, statuses=(200,), location=None):
        self.statuses = list(statuses)
        self.location = location
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length)
                receiver.requests.append({'path': self.path, 'headers': dict(self.headers), 'body': body})
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                payload = b'{"ok": true}' if status < 300 else b'{"error": "scripted"}'
                self.send_response(status)
                if receiver.location:
                    self.send_header('Location', receiver.location)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args):  # pylint: disable=redefined-builtin
                pass

        self.server = HTTPServer(('127.0.0.1', 0), Handler)
        self.origin = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.url = self.origin + '/hook'
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def bodies(self):
        return [json.loads(request['body'].decode('utf-8')) for request in self.requests]


# ---------------------------------------------------------------- data

DEBIAN12 = {'id': 'debian', 'version_id': '12', 'kernel': '6.1.0-28-amd64'}
UBUNTU = {'id': 'ubuntu', 'version_id': '24.04', 'kernel': '6.8.0-45-generic'}
ALPINE = {'id': 'alpine', 'version_id': '3.20.3', 'kernel': '6.6.58-0-lts'}
FEDORA = {'id': 'fedora', 'version_id': '41', 'kernel': '6.11.4-301.fc41.x86_64'}


def facts(os, units, memory_mb=4096, cpus=4.0):
    return {
        'hostname': 'h',
        'os': dict(os),
        'capacity': {'cpus': cpus, 'memory_mb': memory_mb, 'units': 100},
        'reserved': {'cpus': 0.0, 'memory_mb': 0, 'units': 100 - units},
        'docker': {'available': True},
    }


CANDIDATES = {
    'lab-1': facts(DEBIAN12, 50),
    'lab-2': facts(UBUNTU, 4),
    'lab-3': facts(ALPINE, 5),
    'lab-4': facts(FEDORA, 7),
}

SAME_OS = {'lab-1': facts(DEBIAN12, 50), 'lab-2': facts(DEBIAN12, 50), 'lab-3': facts(DEBIAN12, 50)}


def container(**extra):
    result = {'id': 'c0ffee', 'name': 'web-1', 'ip': '10.0.0.5', 'host': 'lab-1', 'required': {'units': 5}}
    result.update(extra)
    return result


# ---------------------------------------------------------------- decisions

def test_chooses_the_largest_fitting_host():
    result, warnings = run_module({'container': container(), 'candidates': CANDIDATES})
    assert warnings == []
    assert result['changed'] is False
    assert result['target'] == 'lab-4'
    assert result['fits'] is True
    assert result['preliminary'] == ['lab-2', 'lab-3', 'lab-4']
    assert [(e['name'], e['reason']) for e in result['rejected']] == [
        ('lab-1', "is the container's current host"),
        ('lab-2', 'insufficient units: remaining 4 < required 5'),
        ('lab-3', 'fits but has less remaining than lab-4'),
    ]
    assert [entry['name'] for entry in result['ranking']] == ['lab-4', 'lab-3']
    assert result['target_facts'] == CANDIDATES['lab-4']
    assert result['chosen']['remaining_after'] == {'units': 2.0}
    assert result['alert'] is None
    assert result['rebuild'] is None
    assert result['webhook'] == {'url': None, 'sent': False, 'would_send': False, 'status': None, 'attempts': 0,
                                 'error': None}
    assert isinstance(result['elapsed_ms'], float)
    json.dumps(result)


def test_candidates_as_a_list_and_granularity():
    candidates = [{'name': 'lab-1', 'mtd': facts(DEBIAN12, 50)},
                  {'name': 'lab-2', 'facts': facts(dict(DEBIAN12, version_id='11'), 9)}]
    result, dummy = run_module({'container': container(), 'candidates': candidates})
    assert result['target'] is None
    result, dummy = run_module({'container': container(), 'candidates': candidates, 'granularity': 'id_version'})
    assert result['target'] == 'lab-2'


def test_ranking_is_limited_to_20():
    candidates = dict(('lab-%03d' % index, facts(UBUNTU, index)) for index in range(1, 51))
    result, dummy = run_module({'container': container(os=DEBIAN12, required={}), 'candidates': candidates})
    assert result['target'] == 'lab-050'
    assert len(result['ranking']) == 20
    assert len(result['rejected']) == 49


def test_empty_candidates_alert_without_webhook():
    result, warnings = run_module({'container': container(os=DEBIAN12, severity='medium'), 'candidates': []})
    assert result['target'] is None
    assert result['fits'] is False
    assert result['changed'] is False
    assert result['level'] == 6
    assert result['alert']['reason'] == 'no candidate hosts were given'
    assert result['alert']['level'] == 6
    assert result['rebuild']['decision'] is True
    assert result['rebuild']['os'] == DEBIAN12
    assert result['webhook']['would_send'] is False
    assert warnings == []


@pytest.mark.parametrize('severity, level, rebuild', [('low', 3, False), ('medium', 6, True), ('high', 9, True),
                                                      (3, 3, False), ('6', 6, True), (None, 0, False)])
def test_rebuild_decision_by_severity(severity, level, rebuild):
    result, dummy = run_module({'container': container(severity=severity), 'candidates': SAME_OS})
    assert result['target'] is None
    assert all(e['reason'].startswith("same OS as the container's host") for e in result['rejected'][1:])
    assert result['rebuild']['level'] == level
    assert result['rebuild']['threshold'] == 5
    assert result['rebuild']['decision'] is rebuild


def test_custom_levels_and_threshold():
    result, dummy = run_module({'container': container(severity='Critical'), 'candidates': SAME_OS,
                                'severity_levels': {'critical': 10}, 'rebuild_threshold': 10})
    assert result['level'] == 10
    assert result['rebuild']['decision'] is False


# ---------------------------------------------------------------- webhook

def test_webhook_receives_the_alert_and_rebuild():
    with Receiver([200]) as receiver:
        result, warnings = run_module({
            'container': container(severity='high', attacked=True),
            'candidates': SAME_OS,
            'webhook': {'url': receiver.url, 'headers': {'Authorization': 'Bearer s3cret'}, 'retry_delay': 0},
        })
    assert warnings == []
    assert result['changed'] is True
    assert result['webhook'] == {'url': receiver.origin, 'sent': True, 'would_send': True, 'status': 200, 'attempts': 1,
                                 'error': None}
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request['path'] == '/hook'
    assert request['headers']['Content-Type'] == 'application/json'
    assert request['headers']['Authorization'] == 'Bearer s3cret'
    body = receiver.bodies()[0]
    assert set(body) == {'event', 'alert', 'rebuild'}
    assert body['event'] == 'mtd.no_target'
    assert body['alert'] == result['alert']
    assert body['alert']['container'] == {'id': 'c0ffee', 'name': 'web-1', 'ip': '10.0.0.5', 'host': 'lab-1',
                                          'attacked': True}
    assert body['alert']['severity'] == 'high'
    assert body['alert']['level'] == 9
    assert body['rebuild'] == result['rebuild']
    assert body['rebuild']['decision'] is True
    assert body['rebuild']['os'] == DEBIAN12
    assert body['rebuild']['required'] == {'units': 5.0}


def test_webhook_body_without_rebuild_when_not_decided():
    with Receiver([204]) as receiver:
        result, dummy = run_module({'container': container(severity='low'), 'candidates': SAME_OS,
                                    'webhook': {'url': receiver.url}})
    assert result['webhook']['sent'] is True
    assert result['webhook']['status'] == 204
    assert result['rebuild']['decision'] is False
    assert set(receiver.bodies()[0]) == {'event', 'alert'}


def test_webhook_retries_after_500():
    with Receiver([500, 200]) as receiver:
        result, warnings = run_module({'container': container(severity='high'), 'candidates': SAME_OS,
                                       'webhook': {'url': receiver.url, 'retries': 3, 'retry_delay': 0}})
    assert warnings == []
    assert len(receiver.requests) == 2
    assert receiver.bodies()[0] == receiver.bodies()[1]
    assert result['changed'] is True
    assert result['webhook']['sent'] is True
    assert result['webhook']['attempts'] == 2
    assert result['webhook']['status'] == 200
    assert result['webhook']['error'] is None


def test_webhook_gives_up_after_retries():
    with Receiver([503]) as receiver:
        result, warnings = run_module({'container': container(), 'candidates': SAME_OS,
                                       'webhook': {'url': receiver.url, 'retries': 2, 'retry_delay': 0}})
    assert len(receiver.requests) == 3
    assert result['changed'] is False
    assert 'failed' not in result
    assert result['webhook']['sent'] is False
    assert result['webhook']['attempts'] == 3
    assert result['webhook']['status'] == 503
    assert result['webhook']['error'] == 'HTTP status 503 from %s' % receiver.origin
    assert len(warnings) == 1 and 'after 3 attempt(s)' in warnings[0]


def test_webhook_4xx_is_not_retried():
    with Receiver([404]) as receiver:
        result, warnings = run_module({'container': container(), 'candidates': SAME_OS,
                                       'webhook': {'url': receiver.url, 'retries': 3, 'retry_delay': 0}})
    assert len(receiver.requests) == 1
    assert result['webhook']['attempts'] == 1
    assert result['webhook']['status'] == 404
    assert result['webhook']['sent'] is False
    assert len(warnings) == 1


def test_webhook_connection_refused_is_reported_not_failed():
    url = 'http://127.0.0.1:%d/hook' % free_port()
    result, warnings = run_module({'container': container(severity='high'), 'candidates': SAME_OS,
                                   'webhook': {'url': url, 'retries': 1, 'retry_delay': 0, 'timeout': 2}})
    assert 'failed' not in result
    assert result['changed'] is False
    assert result['target'] is None
    assert result['alert'] is not None
    assert result['webhook']['sent'] is False
    assert result['webhook']['would_send'] is True
    assert result['webhook']['status'] is None
    assert result['webhook']['attempts'] == 2
    assert result['webhook']['error'].startswith('cannot reach %s: ' % url[:-len('/hook')])
    assert 'refused' in result['webhook']['error'].lower()
    assert len(warnings) == 1
    assert result['webhook']['error'] in warnings[0]


def test_webhook_not_called_when_a_host_fits():
    with Receiver([200]) as receiver:
        result, dummy = run_module({'container': container(), 'candidates': CANDIDATES,
                                    'webhook': {'url': receiver.url}})
    assert receiver.requests == []
    assert result['target'] == 'lab-4'
    assert result['changed'] is False
    assert result['webhook']['would_send'] is False
    assert result['webhook']['url'] == receiver.origin


def test_check_mode_does_not_post():
    with Receiver([200]) as receiver:
        result, warnings = run_module({'container': container(severity='high'), 'candidates': SAME_OS,
                                       'webhook': {'url': receiver.url}, '_ansible_check_mode': True})
    assert receiver.requests == []
    assert warnings == []
    assert result['changed'] is False
    assert result['webhook'] == {'url': receiver.origin, 'sent': False, 'would_send': True, 'status': None,
                                 'attempts': 0, 'error': None}
    assert result['alert'] is not None
    assert result['rebuild']['decision'] is True


def test_check_mode_decides_the_same():
    normal, dummy = run_module({'container': container(), 'candidates': CANDIDATES})
    checked, dummy = run_module({'container': container(), 'candidates': CANDIDATES, '_ansible_check_mode': True})
    for key in ('target', 'preliminary', 'rejected', 'ranking', 'chosen', 'alert', 'rebuild'):
        assert checked[key] == normal[key]


# ---------------------------------------------------------------- the webhook URL is a secret

SECRET_PATH = '/services/T0/B1/s3cr3t-path'
SECRET_QUERY = 'token=s3cr3t-query'


@pytest.mark.parametrize('url, shown', [
    ('https://hooks.example.com/services/T0/B1/XyZ?token=abc', 'https://hooks.example.com'),
    ('https://user:pw@hooks.example.com:8443/x', 'https://hooks.example.com:8443'),
    ('http://[::1]:9000/hook?k=v#frag', 'http://[::1]:9000'),
    ('http://Hooks.Example.com', 'http://hooks.example.com'),
    ('http://host:99999/x', '(an invalid URL)'),
    ('no url at all', '(an invalid URL)'),
])
def test_redact_keeps_scheme_and_host_only(url, shown):
    assert target_host._redact(url) == shown


def test_scrub_removes_the_url_path_and_query_from_a_message():
    url = 'https://hooks.example.com/services/T0/B1/XyZ?token=abc'
    assert target_host._scrub('bad thing at %s, retry /services/T0/B1/XyZ' % url, url) == \
        'bad thing at https://hooks.example.com, retry /***'
    assert 'token=abc' not in target_host._scrub('query token=abc was refused', url)


def _no_secret(*values):
    text = json.dumps(values, sort_keys=True, default=str)
    assert 's3cr3t' not in text, text


def test_webhook_url_option_is_no_log():
    assert target_host.ARGUMENT_SPEC['webhook']['options']['url']['no_log'] is True
    assert target_host.ARGUMENT_SPEC['webhook']['options']['headers']['no_log'] is True


def test_secret_url_is_delivered_but_never_returned():
    with Receiver([200]) as receiver:
        url = receiver.origin + SECRET_PATH + '?' + SECRET_QUERY
        result, warnings = run_module({'container': container(severity='high'), 'candidates': SAME_OS,
                                       'webhook': {'url': url, 'retry_delay': 0}})
    assert receiver.requests[0]['path'] == SECRET_PATH + '?' + SECRET_QUERY
    assert result['webhook']['sent'] is True
    assert result['webhook']['url'] == receiver.origin
    _no_secret(result, warnings)


@pytest.mark.parametrize('check_mode', [False, True])
def test_secret_url_absent_from_failures_and_warnings(check_mode):
    with Receiver([503]) as receiver:
        url = receiver.origin + SECRET_PATH + '?' + SECRET_QUERY
        result, warnings = run_module({'container': container(severity='high'), 'candidates': SAME_OS,
                                       'webhook': {'url': url, 'retries': 1, 'retry_delay': 0},
                                       '_ansible_check_mode': check_mode})
    assert len(receiver.requests) == (0 if check_mode else 2)
    if not check_mode:
        assert result['webhook']['error'] == 'HTTP status 503 from %s' % receiver.origin
        assert len(warnings) == 1
    _no_secret(result, warnings)


def test_secret_url_absent_when_unreachable():
    url = 'http://127.0.0.1:%d%s?%s' % (free_port(), SECRET_PATH, SECRET_QUERY)
    result, warnings = run_module({'container': container(severity='high'), 'candidates': SAME_OS,
                                   'webhook': {'url': url, 'retries': 0, 'timeout': 2}})
    assert result['webhook']['error'].startswith('cannot reach http://127.0.0.1:')
    assert len(warnings) == 1
    _no_secret(result, warnings)


@pytest.mark.parametrize('url', [
    'ftp://user:s3cr3t-pw@example.invalid/s3cr3t-path?token=s3cr3t-query',
    'gopher://example.invalid:70/s3cr3t-path',
])
def test_secret_url_absent_from_the_option_error(url):
    result, dummy = run_module({'container': container(), 'candidates': CANDIDATES, 'webhook': {'url': url}},
                               expect_failure=True)
    assert 'webhook.url must be an http or https URL' in result['msg']
    _no_secret(result)


def test_redirect_is_not_followed_so_headers_stay_home():
    """A real 307 to a second server on another port: nothing (no Authorization) reaches it."""
    with Receiver([200]) as elsewhere:
        with Receiver([307], location=elsewhere.url) as receiver:
            url = receiver.origin + SECRET_PATH
            result, warnings = run_module({
                'container': container(severity='high'), 'candidates': SAME_OS,
                'webhook': {'url': url, 'headers': {'Authorization': 'Bearer s3cr3t-header'}, 'retries': 2,
                            'retry_delay': 0}})
    assert len(receiver.requests) == 1
    assert receiver.requests[0]['headers']['Authorization'] == 'Bearer s3cr3t-header'
    assert elsewhere.requests == []
    assert result['webhook']['sent'] is False
    assert result['webhook']['status'] == 307
    assert result['webhook']['attempts'] == 1
    assert len(warnings) == 1
    _no_secret(result, warnings)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize('args, message', [
    ({'container': container(required={'units': -1})},
     'container.required.units is negative (-1); required resources must be >= 0'),
    ({'container': container(severity='critical')},
     "unknown severity 'critical'; use one of high, low, medium or an integer"),
    ({'container': container(host='lab-9')},
     'cannot tell the OS of the host of container lab-9/web-1: give container.os or include its host lab-9'),
    ({'candidates': 'lab-2'}, 'candidates must be a dict of host name to mtd facts or a list of dicts'),
    ({'candidates': [{'name': 'lab-2'}, {'name': 'lab-2'}]}, 'candidate lab-2 appears twice'),
    ({'granularity': 'distro'}, 'value of granularity must be one of: id, id_version, kernel'),
    ({'rank_by': []}, 'rank_by must be a non-empty list'),
    ({'webhook': {'url': 'ftp://example.invalid/hook'}}, 'webhook.url must be an http or https URL'),
    ({'webhook': {'url': 'http://127.0.0.1:9/', 'retries': -1}}, 'webhook.retries must be >= 0'),
    ({'webhook': {'url': 'http://127.0.0.1:9/', 'timeout': 0}}, 'webhook.timeout must be > 0 seconds'),
    ({'webhook': {}}, 'missing required arguments: url'),
    ({'container': {'host': 'lab-1'}}, 'one of the following is required: id, name'),
])
def test_bad_input_fails_with_a_clear_message(args, message):
    full = {'container': container(), 'candidates': CANDIDATES}
    full.update(args)
    result, dummy = run_module(full, expect_failure=True)
    assert result['failed'] is True
    assert message in result['msg']
    assert 'Traceback' not in result['msg']
    assert 'exception' not in result
