# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one module runtime (_module.run_module) and the one exception root (_common.MtdError)."""

from __future__ import annotations

import ast
import pathlib

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._docker import DockerError
from ansible_collections.mtd.containers.plugins.module_utils._module import run_module
from ansible_collections.mtd.containers.tests.unit.plugins.modules.module_harness import (
    AnsibleExitJson,
    AnsibleFailJson,
    patch_exits,
    set_module_args,
)

PLUGINS = pathlib.Path(__file__).resolve().parents[4] / 'plugins'
SPEC = dict(name=dict(type='str', required=True), state=dict(type='str', default='present'))


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    patch_exits(monkeypatch)


def _run(handler, args, **kwargs):
    with set_module_args(args):
        with pytest.raises((AnsibleExitJson, AnsibleFailJson)) as info:
            run_module(handler, SPEC, **kwargs)
    return info.type is AnsibleFailJson, info.value.args[0]


def test_success_merges_the_returned_dict_into_the_result():
    def handler(mod):
        mod.result['id'] = 'abc'
        return {'changed': True, 'name': mod.params['name']}
    failed, result = _run(handler, {'name': 'web'})
    assert not failed
    assert result == {'changed': True, 'id': 'abc', 'name': 'web'}


def test_an_mtd_error_fails_with_its_sentence_the_result_so_far_and_its_details():
    def handler(mod):
        mod.result['id'] = 'abc'
        raise MtdError('The container is gone; start it again.', container='web')
    failed, result = _run(handler, {'name': 'web'})
    assert failed
    assert result['msg'] == 'The container is gone; start it again.'
    assert result['id'] == 'abc' and result['container'] == 'web'
    assert 'exception' not in result


def test_a_layer_error_is_named_in_the_message():
    def handler(mod):
        raise DockerError('GET /containers/x/json failed with 500', status=500)
    failed, result = _run(handler, {'name': 'web'})
    assert failed
    assert result['msg'] == 'Docker engine error: GET /containers/x/json failed with 500'


def test_anything_unexpected_still_ends_as_one_clear_failure():
    def handler(mod):
        return {}['missing']
    failed, result = _run(handler, {'name': 'web'})
    assert failed
    assert result['msg'].startswith("Unexpected KeyError in ")
    assert result['msg'].endswith(": 'missing'")
    assert 'Traceback' in result['exception']
    assert 'Traceback' not in result['msg']


def test_cleanups_run_on_both_paths_last_first_and_failure_details_only_on_failure():
    calls = []

    def handler(mod):
        mod.add_cleanup(lambda: calls.append('first'))
        mod.add_cleanup(lambda: calls.append('second'))
        mod.add_failure_details(lambda: {'timings': {'dump': 0.5}})
        if mod.params['state'] == 'absent':
            raise MtdError('no')
    failed, result = _run(handler, {'name': 'web'})
    assert not failed and 'timings' not in result
    assert calls == ['second', 'first']
    failed, result = _run(handler, {'name': 'web', 'state': 'absent'})
    assert failed and result['timings'] == {'dump': 0.5}
    assert calls == ['second', 'first', 'second', 'first']


def test_bad_docker_connection_options_are_a_clear_failure():
    def handler(mod):
        return {'api': mod.docker.api_version}
    failed, result = _run(handler, {'name': 'web', 'docker_host': 'ssh://root@lab-1'}, docker=True)
    assert failed
    assert result['msg'].startswith('Invalid Docker connection option: docker_host')


def test_diff_only_when_asked():
    def handler(mod):
        mod.set_diff({'state': 'a'}, {'state': 'b'})
    failed, result = _run(handler, {'name': 'web'})
    assert 'diff' not in result
    failed, result = _run(handler, {'name': 'web', '_ansible_diff': True})
    assert result['diff'] == {'before': {'state': 'a'}, 'after': {'state': 'b'}}


def _exception_classes():
    for path in sorted(PLUGINS.rglob('*.py')):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [getattr(b, 'id', getattr(b, 'attr', '')) for b in node.bases]
                if node.name.endswith(('Error', 'Failure')) or 'Exception' in bases:
                    yield path.relative_to(PLUGINS), node.name, bases


def test_every_collection_exception_derives_from_mtd_error():
    found = list(_exception_classes())
    assert len(found) >= 5
    for path, name, bases in found:
        if name == 'MtdError':
            assert bases == ['Exception'], path
            continue
        assert any(b == 'MtdError' or b.endswith('Error') for b in bases), (path, name, bases)
        assert 'Exception' not in bases, '%s: %s derives from Exception, not MtdError' % (path, name)
