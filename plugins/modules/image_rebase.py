#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: image_rebase
short_description: Rebase an image's own layers onto an updated base image, in the registry
version_added: 0.1.0
description:
  - Detects that the base image of O(image) was updated (RV(update_available)) and rebases the image's own
    layers onto the new base directly in the registry, without rebuilding and without moving layer bytes.
  - The image's base is read from its manifest annotations C(org.opencontainers.image.base.name) and
    C(org.opencontainers.image.base.digest), or given with O(old_base). The new base is O(new_base) (a tag,
    resolved to its current digest), by default the annotated base name.
  - The module checks strictly that the old base is a prefix of the image (layer digests, C(rootfs.diff_ids)
    and history, empty-layer entries included) and fails before writing anything otherwise, naming the first
    layer that differs.
  - The new image is the new base's layers followed by the image's own layers. Its config is the image's config
    with C(rootfs.diff_ids) and the history prefix of the new base and the C(os.version) / C(variant) of the new
    base; the manifest keeps its format (Docker v2 schema 2 or OCI, layer media types named in that format) and
    gets the base annotations of the new base plus C(io.github.mtd-containers.rebase.source.digest), the digest
    of the source. The JSON is canonical, so the same inputs always give the same digest.
  - Layer blobs reach the target and step repositories by cross-repository mount or are already there; only
    configs and manifests (a few kilobytes) are uploaded. All references must be in one registry.
  - Manifest lists and OCI indexes are rebased per platform (each child onto the new base's child of the same
    platform); the index keeps its children, in order.
  - Layer by layer, stored for reuse. Each own layer is rebased in turn onto the previous result; step k (the
    new base plus the first k own layers) is stored in O(step_repository) under the tag
    C(rb-step-<id>), where the id is the SHA-256 of the new base digest and the chain of layer digests. An image
    that shares its lower own layers with an image rebased before finds these steps and reuses them;
    RV(steps) reports how many were reused and created.
extends_documentation_fragment:
  - mtd.containers.registry
  - mtd.containers.attributes
  - mtd.containers.attributes.actiongroup_mtd
attributes:
  check_mode:
    support: full
    details:
      - Everything is read and planned as usual; nothing is written to the registry. The result's C(changed) tells whether a
        real run would write something, and RV(steps) how many steps would be created.
  diff_mode:
    support: full
    details: The diff shows the digest of the target tag before and after.
  idempotent:
    support: full
    details:
      - A second run with the same inputs finds the steps, blobs and the target tag in place and changes nothing.
options:
  image:
    description:
      - The image to rebase, C(registry/repository:tag) or C(registry/repository@sha256:...).
      - A single-platform manifest (Docker v2 schema 2 or OCI) or a manifest list / OCI index.
    type: str
    required: true
  new_base:
    description:
      - The updated base image, normally a tag such as C(registry/base:12); its current digest is the new base.
      - Defaults to the C(org.opencontainers.image.base.name) annotation of O(image).
    type: str
  old_base:
    description:
      - The base image O(image) was built on, best given by digest (C(registry/base@sha256:...)); a tag is
        resolved to its current digest.
      - Defaults to the C(org.opencontainers.image.base.name) and C(org.opencontainers.image.base.digest)
        annotations of O(image). Images built by C(docker build) carry no such annotations; give O(old_base) then.
    type: str
  target:
    description:
      - The reference to write the rebased image to, C(registry/repository:tag).
      - Defaults to O(image), which then must be given by tag (the tag is moved to the rebased image).
    type: str
  step_repository:
    description:
      - The repository (in the same registry, without the registry host) that stores the rebased steps.
      - Images that should share steps must use the same step repository.
      - Defaults to C(<namespace of the target repository>/rebase-steps), or C(rebase-steps) for a target
        repository without namespace.
    type: str
  detect_only:
    description:
      - Only detect whether an update is available (RV(update_available)); read, plan nothing, write nothing.
    type: bool
    default: false
notes:
  - Only registries that support cross-repository blob mount (Registry HTTP API V2, such as distribution 2.x)
    can rebase without moving layer bytes; a refused mount fails the module rather than copying layers.
  - The Docker v2 schema 2 format has no annotations field; the module writes the annotations into such
    manifests too, where clients ignore them and this module finds them again.
  - Requests and bytes sent are reported in RV(requests), also when the module fails.
requirements:
  - No Python library beyond the standard library.
  - A registry with the Registry HTTP API V2, reachable from the host the module runs on (usually the controller).
seealso:
  - module: mtd.containers.container_recreate
    description: Recreate containers from the rebased image; the role C(mtd.containers.rebase_rollout) rolls it out
      canary first, with automatic rollback.
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Is a newer base available for the app image?
  mtd.containers.image_rebase:
    image: registry.example.com/team/app:1.4
    detect_only: true
  register: detect
  delegate_to: localhost

- name: Rebase the app image built FROM debian:12 onto the updated base, as a new tag
  mtd.containers.image_rebase:
    image: registry.example.com/team/app:1.4
    old_base: registry.example.com/base/debian@sha256:6f3e0b9ef9d1f2b9cb4dd69c9c2c0c1a0d4e5f6a7b8c9d0e1f2a3b4c5d6e7f80
    new_base: registry.example.com/base/debian:12
    target: registry.example.com/team/app:1.4-rebased
    registry_username: ci
    registry_password: "{{ registry_token }}"
  register: rebase
  delegate_to: localhost

- name: Report
  ansible.builtin.debug:
    msg: >-
      {{ rebase.tag }} is now {{ rebase.digest }}: {{ rebase.steps.reused }} steps reused,
      {{ rebase.steps.created }} created, {{ rebase.bytes_uploaded }} bytes uploaded

- name: Rebase in place a rebased image once its base tag moved again (annotations name the base)
  mtd.containers.image_rebase:
    image: registry.example.com/team/app:1.4-rebased
    ca_path: /etc/pki/registry-ca.pem
  delegate_to: localhost
"""

RETURN = r"""
update_available:
  description: Whether the image is not on the current digest of the new base (a rebase is or was needed).
  type: bool
  returned: success
  sample: true
digest:
  description:
    - The digest of the rebased image (manifest or index) written to RV(tag).
    - The digest of O(image) when no update is available.
  type: str
  returned: success
  sample: sha256:4d3c9d0b0c9f1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3
media_type:
  description: The media type of RV(digest).
  type: str
  returned: success
  sample: application/vnd.docker.distribution.manifest.v2+json
tag:
  description: The reference written (or, in check mode, to be written); V(null) when there is nothing to do.
  type: str
  returned: success
  sample: 127.0.0.1:5000/team/app:1.4-rebased
tag_written:
  description: Whether the target tag was moved (in check mode, whether it would be).
  type: bool
  returned: success
  sample: true
image:
  description: The source image, C(name) as given, C(digest) and C(media_type).
  type: dict
  returned: success
  sample: {name: 127.0.0.1:5000/team/app:1.4, digest: "sha256:9a8b...", media_type: application/vnd.oci.image.index.v1+json}
old_base:
  description: The old base, C(name) and C(digest), and where it came from (C(source) is V(option) or V(annotation)).
  type: dict
  returned: success
  sample: {name: 127.0.0.1:5000/base/debian, digest: "sha256:0b1c...", source: option}
new_base:
  description: The new base, C(name) and its current C(digest).
  type: dict
  returned: success
  sample: {name: "127.0.0.1:5000/base/debian:12", digest: "sha256:7c6d..."}
platforms:
  description: One entry per rebased image manifest (one for a single-platform image, one per platform of an index).
  type: list
  elements: dict
  returned: success
  contains:
    platform:
      description: C(os/architecture[/variant]).
      type: str
    source_digest:
      description: The digest of the source manifest.
      type: str
    digest:
      description: The digest of the rebased manifest.
      type: str
    own_layers:
      description: The digests of the image's own layers (unchanged by the rebase).
      type: list
      elements: str
    old_base_layers:
      description: How many layers the old base had.
      type: int
    new_base_layers:
      description: How many layers the new base has.
      type: int
    steps_reused:
      description: Steps found in the step repository.
      type: int
    steps_created:
      description: Steps created (or, in check mode, to be created).
      type: int
  sample:
    - platform: linux/amd64
      source_digest: "sha256:11aa..."
      digest: "sha256:22bb..."
      own_layers: ["sha256:33cc...", "sha256:44dd..."]
      old_base_layers: 1
      new_base_layers: 1
      steps_reused: 1
      steps_created: 1
steps:
  description: The layer-by-layer steps over all platforms.
  type: dict
  returned: success
  contains:
    repository:
      description: The step repository.
      type: str
    total:
      description: How many steps the rebase has.
      type: int
    reused:
      description: How many were found and reused.
      type: int
    created:
      description: How many were created (in check mode, would be).
      type: int
    tags:
      description: The step tags, lowest step first per platform.
      type: list
      elements: str
  sample: {repository: team/rebase-steps, total: 2, reused: 1, created: 1, tags: ["rb-step-5f1e...", "rb-step-a0b9..."]}
bytes_uploaded:
  description: Bytes of request bodies sent to the registry (configs and manifests; never layers).
  type: int
  returned: success
  sample: 5120
layer_bytes_uploaded:
  description: Bytes of layer blobs uploaded; always V(0), layers are mounted.
  type: int
  returned: success
  sample: 0
blobs:
  description: What happened to the blobs of the written manifests, counted per repository and blob.
  type: dict
  returned: success
  sample: {present: 6, mounted: 3, uploaded: 2}
requests:
  description: Requests sent to the registry, in total, per method and per kind, and bytes up and down.
  type: dict
  returned: always
  sample:
    requests: 21
    by_method: {GET: 7, HEAD: 10, POST: 2, PUT: 2}
    by_kind: {manifest_get: 6, manifest_head: 4, manifest_put: 2, blob_head: 6, blob_mount: 1, blob_upload: 1}
    bytes_uploaded: 4811
    blob_bytes_uploaded: 1790
    bytes_downloaded: 6250
    writes: 4
timings:
  description: Seconds spent reading and planning, writing, and in total.
  type: dict
  returned: success
  sample: {plan_s: 0.041, write_s: 0.032, total_s: 0.075}
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._rebase import (
    ANNOTATION_BASE_DIGEST,
    ANNOTATION_BASE_NAME,
    check_prefix,
    is_image_descriptor,
    is_prefix,
    manifest_format,
    plan_steps,
    platform_of,
    platform_string,
    rebase_image,
    rebased_index,
    reuse_plan,
    select_platform,
    sha256_digest,
)
from ansible_collections.mtd.containers.plugins.module_utils._registry import (
    RegistryClient,
    RegistryError,
    parse_reference,
)


def registry_argument_spec():
    return dict(
        registry_username=dict(type='str', fallback=(env_fallback, ['MTD_REGISTRY_USERNAME'])),
        registry_password=dict(type='str', no_log=True, fallback=(env_fallback, ['MTD_REGISTRY_PASSWORD'])),
        registry_scheme=dict(type='str', default='auto', choices=['auto', 'https', 'http']),
        validate_certs=dict(type='bool', default=True),
        ca_path=dict(type='path'),
        registry_timeout=dict(type='int', default=60),
    )


ARGUMENT_SPEC = dict(
    image=dict(type='str', required=True),
    new_base=dict(type='str'),
    old_base=dict(type='str'),
    target=dict(type='str'),
    step_repository=dict(type='str'),
    detect_only=dict(type='bool', default=False),
)
ARGUMENT_SPEC.update(registry_argument_spec())


class _Unit:
    """One image manifest to rebase (the image itself, or one platform child of an index)."""

    def __init__(self, manifest_json, digest, descriptor=None):
        self.manifest = manifest_json
        self.digest = digest
        self.descriptor = descriptor
        self.config = None
        self.platform = None
        self.old_base = None      # (manifest json, digest, config)
        self.new_base = None
        self.plan = None
        self.steps = []
        self.reuse = None


class ImageRebaser:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.client = None
        self.result = {'changed': False}
        self.blob_counts = {'present': 0, 'mounted': 0, 'uploaded': 0}
        self._config_cache = {}

    # -- helpers ------------------------------------------------------------------------------

    def _ref(self, text, option, default_tag='latest'):
        try:
            return parse_reference(text, default_tag=default_tag)
        except ValueError as exc:
            raise MtdError('Option %s: %s.' % (option, exc))

    def _config(self, repository, manifest_json):
        descriptor = manifest_json.get('config') or {}
        digest = descriptor.get('digest')
        if not digest:
            raise MtdError('A manifest in %s has no config descriptor.' % (repository,))
        if digest not in self._config_cache:
            data = self.client.get_blob(repository, digest, max_size=16 * 1024 * 1024)
            try:
                self._config_cache[digest] = json.loads(data.decode('utf-8'))
            except ValueError:
                raise MtdError('The config %s in %s is not JSON.' % (digest, repository))
        return self._config_cache[digest]

    def _manifest(self, repository, reference, what):
        manifest = self.client.get_manifest(repository, reference, missing_ok=True)
        if manifest is None:
            raise MtdError('%s %s/%s%s%s does not exist in the registry (no manifest).'
                           % (what, self.client.registry, repository, '@' if reference.startswith('sha256:') else ':',
                              reference))
        if not manifest.is_index:
            manifest_format(manifest.media_type)
        return manifest

    def _child_manifest(self, repository, descriptor):
        return self.client.get_manifest(repository, descriptor['digest']).json

    # -- main ---------------------------------------------------------------------------------

    def run(self):
        start = time.monotonic()
        params = self.params
        image = self._ref(params['image'], 'image', default_tag='latest')
        if params['target']:
            target = self._ref(params['target'], 'target', default_tag=None)
            if not target.tag or target.digest:
                raise MtdError('Option target must be a reference with a tag and without digest, got %r.'
                               % (params['target'],))
        else:
            if not image.tag or image.digest:
                raise MtdError('The image %s is given by digest: give target, the tag to write the rebased image to.'
                               % (params['image'],))
            target = image
        if params['registry_timeout'] is not None and params['registry_timeout'] <= 0:
            raise MtdError('registry_timeout must be a positive number of seconds, got %s.' % (params['registry_timeout'],))

        try:
            self.client = RegistryClient(image.registry, scheme=params['registry_scheme'],
                                         username=params['registry_username'],
                                         password=params['registry_password'],
                                         validate_certs=params['validate_certs'], ca_path=params['ca_path'],
                                         timeout=params['registry_timeout'])
        except ValueError as exc:
            raise MtdError('Invalid registry option: %s.' % (exc,))
        self.result['requests'] = self.client.stats.as_dict()
        writing = not (self.check_mode or params['detect_only'])
        step_repo = params['step_repository'] or (
            target.repository.rsplit('/', 1)[0] + '/rebase-steps' if '/' in target.repository else 'rebase-steps')
        self.client.add_scope(image.repository, 'pull')
        self.client.add_scope(target.repository, 'pull,push' if writing else 'pull')
        self.client.add_scope(step_repo, 'pull,push' if writing else 'pull')
        # Every repository known now goes into the first token; an annotated base adds its scope later.
        for option in ('new_base', 'old_base'):
            if params[option]:
                self.client.add_scope(self._ref(params[option], option).repository, 'pull')

        source = self._manifest(image.repository, image.reference, 'The image')
        self.result['image'] = {'name': params['image'], 'digest': source.digest, 'media_type': source.media_type}
        annotations = source.json.get('annotations') or {}

        # The new base: option, else the annotated base name.
        new_base_text = params['new_base'] or annotations.get(ANNOTATION_BASE_NAME)
        if not new_base_text:
            raise MtdError('The image %s does not name its base (no %s annotation): give new_base.'
                           % (params['image'], ANNOTATION_BASE_NAME))
        new_base = self._ref(new_base_text, 'new_base')
        # The old base: option, else annotations.
        old_base, old_source = None, None
        if params['old_base']:
            old_base, old_source = self._ref(params['old_base'], 'old_base'), 'option'
        elif annotations.get(ANNOTATION_BASE_DIGEST) and annotations.get(ANNOTATION_BASE_NAME):
            annotated = self._ref(annotations[ANNOTATION_BASE_NAME], 'annotation %s' % ANNOTATION_BASE_NAME)
            annotated.digest = annotations[ANNOTATION_BASE_DIGEST]
            old_base, old_source = annotated, 'annotation'
        for ref, what in ((new_base, 'new_base'), (old_base, 'old_base')):
            if ref is not None and ref.registry != image.registry:
                raise MtdError('%s is in registry %s but the image is in %s; all references must be in one registry '
                               '(layers are mounted, never copied).' % (what, ref.registry, image.registry))
        if target.registry != image.registry:
            raise MtdError('target is in registry %s but the image is in %s; all references must be in one registry.'
                           % (target.registry, image.registry))
        self.client.add_scope(new_base.repository, 'pull')
        if old_base is not None:
            self.client.add_scope(old_base.repository, 'pull')

        new_base_manifest = self._manifest(new_base.repository, new_base.reference, 'The new base')
        self.result['new_base'] = {'name': str(new_base), 'digest': new_base_manifest.digest}
        old_base_manifest = None
        if old_base is not None:
            old_base_manifest = self._manifest(old_base.repository, old_base.reference, 'The old base')
            self.result['old_base'] = {'name': old_base.name, 'digest': old_base_manifest.digest,
                                       'source': old_source}
        else:
            self.result['old_base'] = None

        units = self._units(image, source)
        update = self._update_available(image, source, units, old_base, new_base, new_base_manifest,
                                        old_base_manifest)
        self.result['update_available'] = update
        base_result = {
            'digest': source.digest, 'media_type': source.media_type, 'tag': None, 'tag_written': False,
            'platforms': [], 'steps': {'repository': step_repo, 'total': 0, 'reused': 0, 'created': 0, 'tags': []},
            'bytes_uploaded': 0, 'layer_bytes_uploaded': 0, 'blobs': dict(self.blob_counts),
        }
        if not update or params['detect_only']:
            self.result.update(base_result)
            self._finish(start, start)
            return self.result
        if old_base_manifest is None:
            raise MtdError('The image %s does not record its base (no %s annotation): give old_base, the base it '
                           'was built on.' % (params['image'], ANNOTATION_BASE_DIGEST))

        # Plan every platform before writing anything.
        for unit in units:
            self._plan_unit(image, unit, old_base, old_base_manifest, new_base, new_base_manifest, step_repo)
        if source.is_index:
            children = {}
            for unit in units:
                new_platform = platform_of(unit.new_base[2])
                children[unit.digest] = {'digest': unit.plan['digest'], 'size': len(unit.plan['manifest']),
                                         'mediaType': unit.plan['media_type'],
                                         'os.version': new_platform.get('os.version'),
                                         'variant': new_platform.get('variant')}
            final_bytes, final_digest = rebased_index(source.json, children, str(new_base),
                                                      new_base_manifest.digest, source.digest)
            final_type = source.media_type
        else:
            final_bytes, final_digest = units[0].plan['manifest'], units[0].plan['digest']
            final_type = units[0].plan['media_type']
        current = self.client.head_manifest(target.repository, target.tag)
        current_digest = current[0] if current else None
        planned = time.monotonic()

        if self.check_mode:
            for unit in units:
                self._check_blobs(unit, target, image, new_base, step_repo)
            would_write = bool(current_digest != final_digest or any(u.reuse['create'] for u in units)
                               or self.blob_counts['mounted'] or self.blob_counts['uploaded'])
            self.result['changed'] = would_write
        else:
            for unit in units:
                self._write_unit(unit, target, image, new_base, step_repo, index_child=source.is_index)
            if current_digest != final_digest:
                self.client.put_manifest(target.repository, target.tag, final_bytes, final_type)
            self.result['changed'] = self.client.stats.writes > 0

        steps_tags = []
        for unit in units:
            steps_tags.extend(step['tag'] for step in unit.steps)
        self.result.update(base_result)
        self.result.update({
            'digest': final_digest,
            'media_type': final_type,
            'tag': '%s:%s' % (target.name, target.tag),
            'tag_written': current_digest != final_digest,
            'platforms': [{
                'platform': platform_string(unit.platform),
                'source_digest': unit.digest,
                'digest': unit.plan['digest'],
                'own_layers': [layer['digest'] for layer in unit.plan['upper']['layers']],
                'old_base_layers': unit.plan['split']['layers'],
                'new_base_layers': len(unit.plan['base_layers']),
                'steps_reused': len(unit.reuse['reuse']),
                'steps_created': len(unit.reuse['create']),
            } for unit in units],
            'steps': {
                'repository': step_repo,
                'total': sum(len(u.steps) for u in units),
                'reused': sum(len(u.reuse['reuse']) for u in units),
                'created': sum(len(u.reuse['create']) for u in units),
                'tags': steps_tags,
            },
        })
        if self.module._diff:
            self.result['diff'] = {'before': {'tag': self.result['tag'], 'digest': current_digest},
                                   'after': {'tag': self.result['tag'], 'digest': final_digest}}
        self._finish(start, planned)
        return self.result

    def _finish(self, start, planned):
        stats = self.client.stats
        self.result['requests'] = stats.as_dict()
        self.result['bytes_uploaded'] = stats.bytes_uploaded
        self.result['layer_bytes_uploaded'] = 0
        self.result['blobs'] = dict(self.blob_counts)
        now = time.monotonic()
        self.result['timings'] = {'plan_s': round(planned - start, 3), 'write_s': round(now - planned, 3),
                                  'total_s': round(now - start, 3)}

    # -- planning -----------------------------------------------------------------------------

    def _units(self, image, source):
        if not source.is_index:
            return [_Unit(source.json, source.digest)]
        units = []
        for descriptor in source.json.get('manifests') or []:
            if is_image_descriptor(descriptor):
                child = self.client.get_manifest(image.repository, descriptor['digest'])
                manifest_format(child.media_type)
                units.append(_Unit(child.json, child.digest, descriptor))
        if not units:
            raise MtdError('The index %s has no image manifest to rebase.' % (self.params['image'],))
        return units

    def _base_for(self, unit, base_ref, base_manifest, what):
        """(manifest json, digest, config) of the base for this unit's platform."""
        if base_manifest.is_index:
            descriptor = select_platform(base_manifest.json, unit.platform)
            if descriptor is None:
                raise MtdError('%s %s has no manifest for platform %s.'
                               % (what, base_ref, platform_string(unit.platform)))
            child = self.client.get_manifest(base_ref.repository, descriptor['digest'])
            manifest_format(child.media_type)
            return child.json, child.digest, self._config(base_ref.repository, child.json)
        return base_manifest.json, base_manifest.digest, self._config(base_ref.repository, base_manifest.json)

    def _update_available(self, image, source, units, old_base, new_base, new_base_manifest, old_base_manifest):
        for unit in units:
            unit.config = self._config(image.repository, unit.manifest)
            unit.platform = platform_of(unit.config, (unit.descriptor or {}).get('platform'))
        if old_base_manifest is not None and old_base_manifest.digest == new_base_manifest.digest:
            return False
        if old_base_manifest is not None:
            # The usual case: the image is on its old base, so an update is available.
            first_error = None
            for unit in units:
                base_json, _digest, base_config = self._base_for(unit, old_base, old_base_manifest, 'The old base')
                try:
                    check_prefix(unit.manifest, unit.config, base_json, base_config)
                except MtdError as exc:
                    first_error = self._platform_error(unit, exc)
                    break
            if first_error is None:
                return True
        # Not on the old base (or none known): already on the new base, for instance rebased before in place?
        for unit in units:
            base_json, _digest, base_config = self._base_for(unit, new_base, new_base_manifest, 'The new base')
            if not is_prefix(unit.manifest, unit.config, base_json, base_config):
                if old_base_manifest is None:
                    raise MtdError('The image %s does not record its base (no %s annotation) and is not on the new '
                                   'base %s: give old_base, the base it was built on.'
                                   % (self.params['image'], ANNOTATION_BASE_DIGEST, new_base))
                raise first_error
        return False

    @staticmethod
    def _platform_error(unit, exc):
        if unit.descriptor is not None:
            return MtdError('Platform %s: %s' % (platform_string(unit.platform), exc.msg), **exc.details)
        return exc

    def _plan_unit(self, image, unit, old_base, old_base_manifest, new_base, new_base_manifest, step_repo):
        unit.old_base = self._base_for(unit, old_base, old_base_manifest, 'The old base')
        unit.new_base = self._base_for(unit, new_base, new_base_manifest, 'The new base')
        try:
            unit.plan = rebase_image(unit.manifest, unit.config, unit.old_base[0], unit.old_base[2],
                                     unit.new_base[0], unit.new_base[2], str(new_base), unit.new_base[1], unit.digest)
        except MtdError as exc:
            raise self._platform_error(unit, exc)
        fmt = manifest_format(unit.plan['media_type'])
        unit.steps = plan_steps(unit.new_base[0], unit.new_base[2], str(new_base), unit.new_base[1],
                                unit.plan['upper'], fmt)
        # Find the highest stored step (each contains the lower ones): look from the top down.
        found = {}
        for step in reversed(unit.steps):
            head = self.client.head_manifest(step_repo, step['tag'])
            found[step['tag']] = head[0] if head else None
            if head and head[0] == step['digest']:
                break
        unit.reuse = reuse_plan(unit.steps, found)
        if unit.reuse['mismatch']:
            self.module.warn('Step tags %s in %s hold other content than planned; they are written again.'
                             % (', '.join(unit.reuse['mismatch']), step_repo))

    # -- writing ------------------------------------------------------------------------------

    def _layer_sources(self, unit, image, new_base, step_repo):
        sources = {}
        for layer in unit.plan['base_layers']:
            sources[layer['digest']] = [new_base.repository, step_repo]
        for layer in unit.plan['upper']['layers']:
            sources[layer['digest']] = [image.repository, step_repo]
        return sources

    def _ensure(self, repository, digest, sources, data=None, known=None):
        if known is not None and (repository, digest) in known:
            return
        outcome = self.client.ensure_blob(repository, digest, sources, data=data)
        self.blob_counts[outcome] += 1
        if known is not None:
            known.add((repository, digest))

    def _write_unit(self, unit, target, image, new_base, step_repo, index_child):
        sources = self._layer_sources(unit, image, new_base, step_repo)
        known = set()
        if unit.reuse['reuse']:
            for layer in unit.reuse['reuse'][-1]['layers']:
                known.add((step_repo, layer['digest']))
        for step in unit.reuse['create']:
            for layer in step['layers']:
                self._ensure(step_repo, layer['digest'], [s for s in sources[layer['digest']] if s != step_repo],
                             known=known)
            self._ensure(step_repo, step['config_digest'], [], data=step['config'], known=known)
            self.client.put_manifest(step_repo, step['tag'], step['manifest'], step['media_type'])
        final_layers = unit.steps[-1]['layers'] if unit.steps else unit.plan['base_layers']
        for layer in final_layers:
            self._ensure(target.repository, layer['digest'], sources[layer['digest']], known=known)
        self._ensure(target.repository, sha256_digest(unit.plan['config']), [], data=unit.plan['config'], known=known)
        if index_child:
            head = self.client.head_manifest(target.repository, unit.plan['digest'])
            if not head:
                self.client.put_manifest(target.repository, unit.plan['digest'], unit.plan['manifest'],
                                         unit.plan['media_type'])

    def _check_blobs(self, unit, target, image, new_base, step_repo):
        """Check mode: count what would be mounted / uploaded into the target repository (HEAD only)."""
        for layer in unit.plan['base_layers'] + unit.plan['upper']['layers']:
            if self.client.blob_exists(target.repository, layer['digest']):
                self.blob_counts['present'] += 1
            else:
                self.blob_counts['mounted'] += 1
        if self.client.blob_exists(target.repository, sha256_digest(unit.plan['config'])):
            self.blob_counts['present'] += 1
        else:
            self.blob_counts['uploaded'] += 1


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    rebaser = ImageRebaser(module)
    try:
        result = rebaser.run()
    except (MtdError, RegistryError) as exc:
        extra = {}
        if rebaser.client is not None:
            extra['requests'] = rebaser.client.stats.as_dict()
        if isinstance(exc, MtdError) and exc.details:
            extra['details'] = exc.details
        module.fail_json(msg=exc.msg if isinstance(exc, MtdError) else exc.message, **extra)
    finally:
        if rebaser.client is not None:
            rebaser.client.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
