# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""image_rebase main() against the in-memory registry of fixtures/fake_registry.py (a real HTTP server)."""

from __future__ import annotations

import importlib.util
import json
import os
import re

import pytest

from ansible_collections.mtd.containers.plugins.modules import image_rebase
from ansible_collections.mtd.containers.tests.unit.plugins.modules.module_harness import run_module

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'module_utils', 'fixtures')
_spec = importlib.util.spec_from_file_location('mtd_fake_registry_m', os.path.join(FIXTURES, 'fake_registry.py'))
fake_registry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_registry)


def run(args, fail=False):
    return run_module(image_rebase.main, args, expect_failure=fail)


H_BASE1 = [{'created_by': 'busybox'}, {'created_by': 'release v1'}]
H_BASE2 = [{'created_by': 'busybox'}, {'created_by': 'release v2'}]


@pytest.fixture
def reg():
    server = fake_registry.FakeRegistry()
    seed = fake_registry.seed_image
    server.digests = {
        'base1': seed(server, 'ns/base', 'v1', [b'busybox', b'rel1'], H_BASE1),
        'base2': seed(server, 'ns/base', 'v2', [b'busybox', b'rel2'], H_BASE2),
        'app': seed(server, 'ns/app', '1', [b'busybox', b'rel1', b'one', b'two'],
                    H_BASE1 + [{'created_by': 'one'}, {'created_by': 'two'}]),
        'app2': seed(server, 'ns/app2', '1', [b'busybox', b'rel1', b'one', b'three'],
                     H_BASE1 + [{'created_by': 'one'}, {'created_by': 'three'}]),
    }
    yield server
    server.close()


def args(reg, **extra):
    result = {'image': '%s/ns/app:1' % reg.addr, 'old_base': '%s/ns/base:v1' % reg.addr,
              'new_base': '%s/ns/base:v2' % reg.addr, 'target': '%s/ns/app:1-rb' % reg.addr}
    result.update(extra)
    return result


def test_rebase_then_idempotent(reg):
    first = run(args(reg))
    assert first['changed'] and first['update_available'] and first['tag_written']
    assert first['steps'] == {'repository': 'ns/rebase-steps', 'total': 2, 'reused': 0, 'created': 2,
                              'tags': first['steps']['tags']}
    assert first['layer_bytes_uploaded'] == 0
    assert first['requests']['by_kind']['manifest_put'] == 3
    stored = json.loads(reg.manifests['ns/app']['1-rb'][0])
    assert [layer['digest'] for layer in stored['layers']][-2:] == first['platforms'][0]['own_layers']
    assert stored['annotations']['org.opencontainers.image.base.digest'] == reg.digests['base2']
    assert reg.digests['app'] == stored['annotations']['io.github.mtd-containers.rebase.source.digest']
    # layers were mounted, never uploaded: only configs went through PUT uploads
    uploaded = [p for m, p in reg.requests if m == 'PUT' and '/blobs/uploads/' in p]
    assert len(uploaded) == first['requests']['by_kind']['blob_upload'] <= 3
    puts_before = reg.count('PUT')
    second = run(args(reg))
    assert not second['changed'] and second['digest'] == first['digest']
    assert second['steps']['reused'] == 2 and second['steps']['created'] == 0
    assert reg.count('PUT') == puts_before and second['requests']['writes'] == 0


def test_check_mode_writes_nothing(reg):
    result = run(dict(args(reg), _ansible_check_mode=True))
    assert result['changed'] and result['steps']['created'] == 2
    assert reg.count('PUT') == 0 and reg.count('POST') == 0


def test_detect_only_and_annotation_detection(reg):
    detect = run(dict(args(reg), detect_only=True))
    assert detect['update_available'] and not detect['changed'] and reg.count('PUT') == 0
    run(args(reg))
    on_rebased = run({'image': '%s/ns/app:1-rb' % reg.addr})
    assert not on_rebased['update_available'] and not on_rebased['changed']
    assert on_rebased['old_base']['source'] == 'annotation'


def test_shared_layer_reuses_step(reg):
    run(args(reg))
    shared = run(args(reg, image='%s/ns/app2:1' % reg.addr, target='%s/ns/app2:1-rb' % reg.addr))
    assert shared['steps']['reused'] == 1 and shared['steps']['created'] == 1


@pytest.mark.parametrize('override, fragment', [
    ({'old_base': '{addr}/ns/base:v2', 'new_base': '{addr}/ns/app2:1'}, 'layer 2 differs'),
    ({'image': '{addr}/ns/app:missing'}, 'does not exist'),
    ({'image': '{addr}/ns/app@sha256:' + 'a' * 64, 'target': None}, 'give target'),
    ({'new_base': 'other.example/ns/base:v2'}, 'one registry'),
    ({'old_base': None}, 'give old_base'),
    ({'image': 'BAD REF'}, 'Option image'),
    ({'registry_realm_hosts': ['https://auth.example/token']},
     "Invalid registry option: 'https://auth.example/token' is not a host or host:port."),
])
def test_bad_input_fails_before_writing(reg, override, fragment):
    values = dict((k, v.format(addr=reg.addr) if isinstance(v, str) else v) for k, v in override.items())
    result = run(dict(args(reg), **values), fail=True)
    assert fragment in result['msg']
    assert 'Traceback' not in result['msg']
    assert reg.count('PUT') == 0 and reg.count('POST') == 0


def test_wrong_credentials():
    server = fake_registry.FakeRegistry(auth='basic', user='alice', password='pw')
    try:
        result = run({'image': '%s/ns/app:1' % server.addr, 'registry_username': 'alice',
                      'registry_password': 'nope', 'old_base': '%s/ns/b:1' % server.addr}, fail=True)
        assert "rejected the credentials of user 'alice'" in result['msg']
        assert result['requests']['writes'] == 0
    finally:
        server.close()


def test_bearer_token_asks_for_what_the_rebase_needs():
    """Read the image and the bases (pull), write the target and the step repository (pull,push); no more."""
    server = fake_registry.FakeRegistry(auth='bearer', user='alice', password='pw')
    try:
        seed = fake_registry.seed_image
        seed(server, 'ns/base', 'v1', [b'busybox', b'rel1'], H_BASE1)
        seed(server, 'ns/base', 'v2', [b'busybox', b'rel2'], H_BASE2)
        seed(server, 'ns/app', '1', [b'busybox', b'rel1', b'one'], H_BASE1 + [{'created_by': 'one'}])
        result = run(dict(args(server), registry_username='alice', registry_password='pw'))
        assert result['changed'] is True
        assert result['requests']['by_kind']['token'] == 1
        assert server.token_requests[0]['scope'] == [
            'repository:ns/app:pull,push', 'repository:ns/base:pull', 'repository:ns/rebase-steps:pull,push']
        checked = run(dict(args(server), registry_username='alice', registry_password='pw', _ansible_check_mode=True))
        assert checked['changed'] is False
        assert server.token_requests[-1]['scope'] == [
            'repository:ns/app:pull', 'repository:ns/base:pull', 'repository:ns/rebase-steps:pull']
    finally:
        server.close()


def test_index_is_rebased_per_platform(reg):
    seed = fake_registry.seed_image
    arm1 = seed(reg, 'ns/base', 'v1-arm', [b'busybox', b'rel1'], H_BASE1, arch='arm64')
    arm2 = seed(reg, 'ns/base', 'v2-arm', [b'busybox', b'rel2'], H_BASE2, arch='arm64')
    app_arm = seed(reg, 'ns/app', '1-arm', [b'busybox', b'rel1', b'arm'], H_BASE1 + [{'created_by': 'arm'}],
                   arch='arm64')

    def index(repo, tag, children):
        manifests = []
        for digest, arch in children:
            data = reg.manifests[repo][digest][0]
            manifests.append({'mediaType': fake_registry.DOCKER_MANIFEST, 'digest': digest, 'size': len(data),
                              'platform': {'os': 'linux', 'architecture': arch}})
        return reg.put_manifest(repo, tag, {'schemaVersion': 2, 'manifests': manifests,
                                            'mediaType': 'application/vnd.oci.image.index.v1+json'})

    index('ns/base', 'm1', [(reg.digests['base1'], 'amd64'), (arm1, 'arm64')])
    index('ns/base', 'm2', [(reg.digests['base2'], 'amd64'), (arm2, 'arm64')])
    index('ns/app', 'm', [(reg.digests['app'], 'amd64'), (app_arm, 'arm64')])
    result = run(args(reg, image='%s/ns/app:m' % reg.addr, old_base='%s/ns/base:m1' % reg.addr,
                      new_base='%s/ns/base:m2' % reg.addr, target='%s/ns/app:m-rb' % reg.addr))
    assert [p['platform'] for p in result['platforms']] == ['linux/amd64', 'linux/arm64']
    stored = json.loads(reg.manifests['ns/app']['m-rb'][0])
    assert len(stored['manifests']) == 2
    assert [m['digest'] for m in stored['manifests']] == [p['digest'] for p in result['platforms']]
    assert result['steps']['created'] == 3


def test_failure_keeps_requests_and_details(reg):
    """A failure carries the registry's request counts and the error's details under ``details``."""
    result = run(args(reg, old_base='%s/ns/base:v2' % reg.addr, new_base='%s/ns/app2:1' % reg.addr), fail=True)
    assert 'layer 2 differs' in result['msg']
    assert result['details']['differing_layer'] == 2
    assert 'differing_layer' not in result
    assert result['requests']['writes'] == 0 and result['requests']['requests'] > 0


def test_failure_before_the_client_has_no_requests():
    result = run({'image': 'BAD REF'}, fail=True)
    assert result['msg'].startswith('Option image: ')
    assert 'requests' not in result and 'details' not in result


def _params(**extra):
    params = {'image': 'r.example/ns/app:1', 'target': None, 'registry_timeout': 60}
    params.update(extra)
    return params


@pytest.mark.parametrize('params, expected', [
    (_params(), ('ns/app', '1', 'ns/app', '1')),
    (_params(target='r.example/ns/app:1-rb'), ('ns/app', '1', 'ns/app', '1-rb')),
    (_params(image='r.example/ns/app@sha256:' + 'a' * 64, target='r.example/ns/app:rb'),
     ('ns/app', None, 'ns/app', 'rb')),
])
def test_image_and_target(params, expected):
    image, target = image_rebase.image_and_target(params)
    assert (image.repository, image.tag, target.repository, target.tag) == expected


@pytest.mark.parametrize('params, message', [
    (_params(target='r.example/ns/app@sha256:' + 'a' * 64),
     'Option target must be a reference with a tag and without digest'),
    (_params(image='r.example/ns/app@sha256:' + 'a' * 64),
     'is given by digest: give target, the tag to write the rebased image to.'),
    (_params(registry_timeout=0), 'registry_timeout must be a positive number of seconds, got 0.'),
])
def test_image_and_target_refuses(params, message):
    with pytest.raises(image_rebase.MtdError, match=re.escape(message)):
        image_rebase.image_and_target(params)


def test_check_one_registry():
    ref = image_rebase.parse_reference
    image, other = ref('r.example/ns/app:1'), ref('o.example/ns/base:2')
    image_rebase.check_one_registry(image, image, ref('r.example/ns/base:2'), None)
    with pytest.raises(image_rebase.MtdError, match='new_base is in registry o.example but the image is in r.example'):
        image_rebase.check_one_registry(image, image, other, None)
    with pytest.raises(image_rebase.MtdError, match='old_base is in registry o.example'):
        image_rebase.check_one_registry(image, image, image, other)
    with pytest.raises(image_rebase.MtdError, match='target is in registry o.example'):
        image_rebase.check_one_registry(image, other, image, None)
