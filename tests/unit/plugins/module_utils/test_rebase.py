# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure rebase planning: prefix check, new config/manifest, steps and reuse, indexes (worked examples)."""

from __future__ import annotations

import copy
import json

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._rebase import (
    ANNOTATION_BASE_DIGEST,
    ANNOTATION_BASE_NAME,
    ANNOTATION_SOURCE,
    ANNOTATION_STEP,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    base_sources,
    canonical_json,
    check_prefix,
    convert_layer_media_type,
    default_step_repository,
    index_child,
    is_image_descriptor,
    plan_steps,
    platform_of,
    platform_string,
    platform_summary,
    rebase_image,
    rebased_config,
    rebased_index,
    reuse_plan,
    select_platform,
    sha256_digest,
    step_id,
    step_tag,
    steps_summary,
    upper_part,
    would_write,
)

GZ = 'application/vnd.docker.image.rootfs.diff.tar.gzip'
OCI_GZ = 'application/vnd.oci.image.layer.v1.tar+gzip'


def d(name):
    """A readable fake digest: sha256 of the name."""
    return sha256_digest(name.encode())


def image(layers, history, media_type=DOCKER_MANIFEST, arch='amd64', extra=None, layer_type=GZ):
    manifest = {'schemaVersion': 2, 'mediaType': media_type,
                'config': {'mediaType': 'application/vnd.docker.container.image.v1+json', 'size': 1,
                           'digest': d('cfg')},
                'layers': [{'mediaType': layer_type, 'size': 10, 'digest': d(n)} for n in layers]}
    config = {'architecture': arch, 'os': 'linux', 'created': '2026-01-01T00:00:00Z',
              'config': {'Env': ['PATH=/bin'], 'Cmd': ['app']},
              'rootfs': {'type': 'layers', 'diff_ids': [d('diff-' + n) for n in layers]},
              'history': history}
    config.update(extra or {})
    return manifest, config


H_BASE1 = [{'created_by': 'ADD busybox'}, {'created_by': 'CMD ["sh"]', 'empty_layer': True},
           {'created_by': 'COPY base-release v1'}]
H_BASE2 = [{'created_by': 'ADD busybox'}, {'created_by': 'COPY base-release v2'}, {'created_by': 'COPY v2-only'}]
H_APP = [{'created_by': 'COPY one'}, {'created_by': 'ENV A=1', 'empty_layer': True}, {'created_by': 'COPY two'}]

BASE1 = image(['busybox', 'rel1'], H_BASE1)
BASE2 = image(['busybox', 'rel2', 'v2only'], H_BASE2, extra={'os.version': '12.5', 'variant': 'v3'})
APP = image(['busybox', 'rel1', 'one', 'two'], H_BASE1 + H_APP)


# -- prefix check -------------------------------------------------------------------------------

def test_prefix_split_counts_empty_layer_history():
    assert check_prefix(APP[0], APP[1], BASE1[0], BASE1[1]) == {'layers': 2, 'history': 3}


def test_upper_part():
    upper = upper_part(APP[0], APP[1], {'layers': 2, 'history': 3})
    assert [layer['digest'] for layer in upper['layers']] == [d('one'), d('two')]
    assert upper['diff_ids'] == [d('diff-one'), d('diff-two')]
    assert upper['history'] == H_APP


def test_not_a_prefix_names_the_first_differing_layer():
    with pytest.raises(MtdError) as info:
        check_prefix(APP[0], APP[1], BASE2[0], BASE2[1])
    assert 'layer 2 differs' in info.value.msg
    assert info.value.details['differing_layer'] == 2


def test_diff_id_mismatch_is_reported():
    app = copy.deepcopy(APP)
    app[1]['rootfs']['diff_ids'][1] = d('other')
    with pytest.raises(MtdError, match='diff_id of layer 2 differs'):
        check_prefix(app[0], app[1], BASE1[0], BASE1[1])


def test_history_mismatch_is_reported_with_the_layer():
    app = copy.deepcopy(APP)
    app[1]['history'][2] = {'created_by': 'COPY base-release (rebuilt)'}
    with pytest.raises(MtdError) as info:
        check_prefix(app[0], app[1], BASE1[0], BASE1[1])
    assert 'history entry 3 (layer 2) differs' in info.value.msg
    app[1]['history'][1] = {'created_by': 'CMD ["bash"]', 'empty_layer': True}
    with pytest.raises(MtdError, match='empty-layer step after layer 1'):
        check_prefix(app[0], app[1], BASE1[0], BASE1[1])


def test_base_longer_than_image():
    with pytest.raises(MtdError, match='has 4 layers and the image only 2'):
        check_prefix(BASE1[0], BASE1[1], APP[0], APP[1])


def test_inconsistent_images_are_refused():
    app = copy.deepcopy(APP)
    app[1]['rootfs']['diff_ids'].pop()
    with pytest.raises(MtdError, match='lists 4 layers but its config has 3 diff_ids'):
        check_prefix(app[0], app[1], BASE1[0], BASE1[1])
    app = copy.deepcopy(APP)
    app[1]['history'].append({'created_by': 'extra'})
    with pytest.raises(MtdError, match='non-empty history entries'):
        check_prefix(app[0], app[1], BASE1[0], BASE1[1])


# -- rebase -------------------------------------------------------------------------------------

def test_rebased_config_keeps_everything_but_rootfs_history_and_platform_details():
    upper = upper_part(APP[0], APP[1], {'layers': 2, 'history': 3})
    config = rebased_config(APP[1], BASE2[1], upper)
    assert config['rootfs']['diff_ids'] == [d('diff-busybox'), d('diff-rel2'), d('diff-v2only'), d('diff-one'),
                                            d('diff-two')]
    assert config['history'] == H_BASE2 + H_APP
    assert config['os.version'] == '12.5' and config['variant'] == 'v3'
    for key in ('config', 'created', 'architecture', 'os'):
        assert config[key] == APP[1][key]
    # the new base has no os.version: it is removed
    with_version = dict(APP[1], **{'os.version': 'old'})
    assert 'os.version' not in rebased_config(with_version, BASE1[1], upper)


def test_rebase_image_manifest_and_determinism():
    plan = rebase_image(APP[0], APP[1], BASE1[0], BASE1[1], BASE2[0], BASE2[1], 'r.example/base:2',
                        'sha256:' + '2' * 64, 'sha256:' + 'a' * 64)
    manifest = json.loads(plan['manifest'])
    expected = [d('busybox'), d('rel2'), d('v2only'), d('one'), d('two')]
    assert [layer['digest'] for layer in manifest['layers']] == expected
    assert manifest['mediaType'] == DOCKER_MANIFEST
    assert manifest['config']['digest'] == sha256_digest(plan['config'])
    assert manifest['config']['size'] == len(plan['config'])
    assert manifest['annotations'] == {ANNOTATION_BASE_NAME: 'r.example/base:2',
                                       ANNOTATION_BASE_DIGEST: 'sha256:' + '2' * 64,
                                       ANNOTATION_SOURCE: 'sha256:' + 'a' * 64}
    assert plan['manifest'] == canonical_json(manifest)
    assert plan['digest'] == sha256_digest(plan['manifest'])
    again = rebase_image(copy.deepcopy(APP[0]), copy.deepcopy(APP[1]), BASE1[0], BASE1[1], BASE2[0], BASE2[1],
                         'r.example/base:2', 'sha256:' + '2' * 64, 'sha256:' + 'a' * 64)
    assert again['digest'] == plan['digest']


def test_oci_image_on_docker_base_gets_oci_layer_types():
    app = image(['busybox', 'rel1', 'one', 'two'], H_BASE1 + H_APP, media_type=OCI_MANIFEST, layer_type=OCI_GZ)
    plan = rebase_image(app[0], app[1], BASE1[0], BASE1[1], BASE2[0], BASE2[1], 'b', 'sha256:' + '2' * 64, None)
    manifest = json.loads(plan['manifest'])
    assert {layer['mediaType'] for layer in manifest['layers']} == {OCI_GZ}
    assert ANNOTATION_SOURCE not in manifest['annotations']


@pytest.mark.parametrize('media_type, fmt, expected', [
    (GZ, 'oci', OCI_GZ), (OCI_GZ, 'docker', GZ), (GZ, 'docker', GZ), (OCI_GZ, 'oci', OCI_GZ),
    ('application/vnd.oci.image.layer.v1.tar+zstd', 'oci', 'application/vnd.oci.image.layer.v1.tar+zstd'),
])
def test_layer_media_type_conversion(media_type, fmt, expected):
    assert convert_layer_media_type(media_type, fmt) == expected


def test_layer_media_type_without_docker_name():
    with pytest.raises(MtdError, match='no equivalent in a Docker manifest'):
        convert_layer_media_type('application/vnd.oci.image.layer.v1.tar+zstd', 'docker')


def test_platform_mismatch_is_refused():
    arm_base = image(['busybox', 'rel2', 'v2only'], H_BASE2, arch='arm64')
    with pytest.raises(MtdError, match='new base is for linux/arm64 but the image is for linux/amd64'):
        rebase_image(APP[0], APP[1], BASE1[0], BASE1[1], arm_base[0], arm_base[1], 'b', 'sha256:' + '2' * 64, None)


def test_unsupported_manifest_type():
    schema1 = copy.deepcopy(APP[0])
    schema1['mediaType'] = 'application/vnd.docker.distribution.manifest.v1+json'
    with pytest.raises(MtdError, match='Unsupported manifest media type'):
        rebase_image(schema1, APP[1], BASE1[0], BASE1[1], BASE2[0], BASE2[1], 'b', 'sha256:' + '2' * 64, None)


# -- steps --------------------------------------------------------------------------------------

def _steps(app=APP, base_digest='sha256:' + '2' * 64):
    upper = upper_part(app[0], app[1], check_prefix(app[0], app[1], BASE1[0], BASE1[1]))
    return plan_steps(BASE2[0], BASE2[1], 'r.example/base:2', base_digest, upper, 'docker')


def test_step_chain():
    steps = _steps()
    assert [s['index'] for s in steps] == [1, 2]
    assert [len(s['layers']) for s in steps] == [4, 5]
    assert steps[0]['id'] == step_id('sha256:' + '2' * 64, [d('one')])
    assert steps[1]['id'] == step_id('sha256:' + '2' * 64, [d('one'), d('two')])
    assert steps[1]['tag'] == step_tag(steps[1]['id']) == 'rb-step-' + steps[1]['id']
    assert len(steps[1]['tag']) <= 128
    manifest = json.loads(steps[1]['manifest'])
    assert manifest['annotations'][ANNOTATION_STEP] == steps[1]['id']
    config = json.loads(steps[1]['config'])
    assert config['rootfs']['diff_ids'][-2:] == [d('diff-one'), d('diff-two')]
    assert len(config['history']) == len(H_BASE2) + 2


def test_step_ids_depend_on_base_and_chain_only():
    first = _steps()
    # a second image sharing the first own layer (different config, Cmd, history text)
    other = image(['busybox', 'rel1', 'one', 'three'], H_BASE1 + [{'created_by': 'COPY one'},
                                                                  {'created_by': 'COPY three'}],
                  extra={'config': {'Cmd': ['other']}})
    second = _steps(other)
    assert second[0]['id'] == first[0]['id'] and second[0]['digest'] == first[0]['digest']
    assert second[1]['id'] != first[1]['id']
    assert _steps(base_digest='sha256:' + '3' * 64)[0]['id'] != first[0]['id']
    assert step_id('sha256:' + '2' * 64, ['a', 'b']) != step_id('sha256:' + '2' * 64, ['b', 'a'])


@pytest.mark.parametrize('found, reuse, create, mismatch', [
    ({}, 0, 2, 0),
    ({'S1': 'D1'}, 1, 1, 0),
    ({'S2': 'D2'}, 2, 0, 0),
    ({'S1': 'D1', 'S2': 'other'}, 1, 1, 1),
    ({'S1': None, 'S2': None}, 0, 2, 0),
])
def test_reuse_plan(found, reuse, create, mismatch):
    steps = _steps()
    names = {'S1': steps[0], 'S2': steps[1]}
    real = {}
    for key, value in found.items():
        step = names[key]
        real[step['tag']] = {'D1': steps[0]['digest'], 'D2': steps[1]['digest']}.get(value, value)
    plan = reuse_plan(steps, real)
    assert (len(plan['reuse']), len(plan['create']), len(plan['mismatch'])) == (reuse, create, mismatch)


# -- indexes ------------------------------------------------------------------------------------

INDEX = {'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': [
    {'mediaType': DOCKER_MANIFEST, 'digest': d('amd'), 'size': 100,
     'platform': {'os': 'linux', 'architecture': 'amd64'}},
    {'mediaType': DOCKER_MANIFEST, 'digest': d('arm'), 'size': 101,
     'platform': {'os': 'linux', 'architecture': 'arm64', 'variant': 'v8'}},
    {'mediaType': OCI_MANIFEST, 'digest': d('att'), 'size': 50,
     'platform': {'os': 'unknown', 'architecture': 'unknown'}},
]}


def test_select_platform_and_descriptors():
    assert select_platform(INDEX, {'os': 'linux', 'architecture': 'arm64'})['digest'] == d('arm')
    assert select_platform(INDEX, {'os': 'linux', 'architecture': 'arm64', 'variant': 'v7'}) is None
    assert select_platform(INDEX, {'os': 'windows', 'architecture': 'amd64'}) is None
    assert [is_image_descriptor(m) for m in INDEX['manifests']] == [True, True, False]
    assert platform_string(platform_of({'os': 'linux', 'architecture': 'arm64', 'variant': 'v8'})) == \
        'linux/arm64/v8'


def test_rebased_index_keeps_children_and_order():
    children = {d('amd'): {'digest': d('amd2'), 'size': 200, 'mediaType': DOCKER_MANIFEST, 'os.version': None},
                d('arm'): {'digest': d('arm2'), 'size': 201, 'mediaType': DOCKER_MANIFEST}}
    data, digest = rebased_index(INDEX, children, 'r.example/base:2', 'sha256:' + '2' * 64, d('index'))
    index = json.loads(data)
    assert digest == sha256_digest(data)
    assert [m['digest'] for m in index['manifests']] == [d('amd2'), d('arm2'), d('att')]
    assert [m['size'] for m in index['manifests']] == [200, 201, 50]
    assert index['manifests'][1]['platform']['variant'] == 'v8'
    assert index['annotations'][ANNOTATION_SOURCE] == d('index')
    assert rebased_index(INDEX, children, 'r.example/base:2', 'sha256:' + '2' * 64, d('index'))[1] == digest


# -- the module's decisions ---------------------------------------------------------------------

@pytest.mark.parametrize('repository, expected', [
    ('team/app', 'team/rebase-steps'),
    ('a/b/app', 'a/b/rebase-steps'),
    ('app', 'rebase-steps'),
])
def test_default_step_repository(repository, expected):
    assert default_step_repository(repository) == expected


ANNOTATED = {ANNOTATION_BASE_NAME: 'r.example/base:1', ANNOTATION_BASE_DIGEST: 'sha256:' + '1' * 64}


@pytest.mark.parametrize('new_base, old_base, annotations, expected', [
    # options win over annotations
    ('r.example/base:2', 'r.example/base@sha256:' + '0' * 64, ANNOTATED,
     ('r.example/base:2', 'r.example/base@sha256:' + '0' * 64, None, 'option', 'old_base')),
    # annotations name both bases: the annotated digest pins the old one
    (None, None, ANNOTATED,
     ('r.example/base:1', 'r.example/base:1', 'sha256:' + '1' * 64, 'annotation',
      'annotation ' + ANNOTATION_BASE_NAME)),
    # a name without digest gives the new base only
    (None, None, {ANNOTATION_BASE_NAME: 'r.example/base:1'}, ('r.example/base:1', None, None, None, 'old_base')),
    ('r.example/base:2', None, None, ('r.example/base:2', None, None, None, 'old_base')),
])
def test_base_sources(new_base, old_base, annotations, expected):
    texts = base_sources('r.example/app:1', new_base, old_base, annotations)
    assert (texts['new_base'], texts['old_base'], texts['old_base_digest'], texts['old_source'],
            texts['old_option']) == expected


def test_base_sources_without_new_base():
    with pytest.raises(MtdError, match=r'The image r.example/app:1 does not name its base \(no '
                                       r'org.opencontainers.image.base.name annotation\): give new_base.'):
        base_sources('r.example/app:1', None, 'r.example/base:1', {ANNOTATION_BASE_DIGEST: 'sha256:' + '1' * 64})


def test_index_child_takes_the_new_base_platform_details():
    plan = {'digest': d('m'), 'manifest': b'x' * 321, 'media_type': DOCKER_MANIFEST}
    assert index_child(plan, {'os': 'windows', 'architecture': 'amd64', 'os.version': '10.0.20348'}) == {
        'digest': d('m'), 'size': 321, 'mediaType': DOCKER_MANIFEST, 'os.version': '10.0.20348', 'variant': None}
    assert index_child(plan, {'os': 'linux', 'architecture': 'arm64', 'variant': 'v8'})['variant'] == 'v8'


@pytest.mark.parametrize('current, steps_to_create, mounted, uploaded, expected', [
    ('D', 0, 0, 0, False),    # the tag holds the final digest, every step and blob is there
    (None, 0, 0, 0, True),    # the tag does not exist yet
    ('old', 0, 0, 0, True),   # the tag holds another digest
    ('D', 1, 0, 0, True),     # a step to create
    ('D', 0, 2, 0, True),     # blobs to mount
    ('D', 0, 0, 1, True),     # a config to upload
])
def test_would_write(current, steps_to_create, mounted, uploaded, expected):
    counts = {'present': 7, 'mounted': mounted, 'uploaded': uploaded}
    assert would_write(current, 'D', steps_to_create, counts) is expected


def test_platform_and_steps_summaries():
    steps = _steps()
    plan = rebase_image(APP[0], APP[1], BASE1[0], BASE1[1], BASE2[0], BASE2[1], 'r.example/base:2',
                        'sha256:' + '2' * 64, d('app'))
    reuse = reuse_plan(steps, {steps[0]['tag']: steps[0]['digest']})
    entry = platform_summary({'os': 'linux', 'architecture': 'amd64'}, d('app'), plan, reuse)
    assert entry == {'platform': 'linux/amd64', 'source_digest': d('app'), 'digest': plan['digest'],
                     'own_layers': [d('one'), d('two')], 'old_base_layers': 2, 'new_base_layers': 3,
                     'steps_reused': 1, 'steps_created': 1}
    # two platforms: 2 + 2 steps, 1 + 0 reused
    summary = steps_summary('ns/rebase-steps', [steps, steps], [reuse, reuse_plan(steps, {})])
    assert summary == {'repository': 'ns/rebase-steps', 'total': 4, 'reused': 1, 'created': 3,
                       'tags': [steps[0]['tag'], steps[1]['tag'], steps[0]['tag'], steps[1]['tag']]}
