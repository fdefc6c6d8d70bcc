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
from typing import Any, Dict, List, Optional, Tuple

from ansible.module_utils.basic import env_fallback

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._module import MtdModule, error_message, run_module
from ansible_collections.mtd.containers.plugins.module_utils._rebase import (
    ANNOTATION_BASE_DIGEST,
    base_sources,
    check_prefix,
    default_step_repository,
    index_child,
    is_image_descriptor,
    is_prefix,
    manifest_format,
    plan_steps,
    platform_of,
    platform_string,
    platform_summary,
    rebase_image,
    rebased_index,
    reuse_plan,
    select_platform,
    sha256_digest,
    steps_summary,
    would_write,
)
from ansible_collections.mtd.containers.plugins.module_utils._registry import (
    Manifest,
    Reference,
    RegistryClient,
    parse_reference,
)


def registry_argument_spec():
    return dict(
        registry_username=dict(type='str', fallback=(env_fallback, ['MTD_REGISTRY_USERNAME'])),
        registry_password=dict(type='str', no_log=True, fallback=(env_fallback, ['MTD_REGISTRY_PASSWORD'])),
        registry_scheme=dict(type='str', default='auto', choices=['auto', 'https', 'http']),
        registry_realm_hosts=dict(type='list', elements='str', default=[]),
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

# A base image as read for one platform: (manifest json, digest, config).
Base = Tuple[Dict[str, Any], str, Dict[str, Any]]


def reference(text: str, option: str, default_tag: Optional[str] = 'latest') -> Reference:
    """``parse_reference`` whose error names the option the text came from."""
    try:
        return parse_reference(text, default_tag=default_tag)
    except ValueError as exc:
        raise MtdError('Option %s: %s.' % (option, exc))


def image_and_target(params: Dict[str, Any]) -> Tuple[Reference, Reference]:
    """The image to rebase and the tag to write to (by default the image's own tag); no I/O."""
    image = reference(params['image'], 'image', default_tag='latest')
    if params['target']:
        target = reference(params['target'], 'target', default_tag=None)
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
    return image, target


def check_one_registry(image: Reference, target: Reference, new_base: Reference,
                       old_base: Optional[Reference]) -> None:
    """Every reference must be in the image's registry: layers are mounted between repositories, never copied."""
    for ref, what in ((new_base, 'new_base'), (old_base, 'old_base')):
        if ref is not None and ref.registry != image.registry:
            raise MtdError('%s is in registry %s but the image is in %s; all references must be in one registry '
                           '(layers are mounted, never copied).' % (what, ref.registry, image.registry))
    if target.registry != image.registry:
        raise MtdError('target is in registry %s but the image is in %s; all references must be in one registry.'
                       % (target.registry, image.registry))


def registry_client(params: Dict[str, Any], image: Reference) -> RegistryClient:
    try:
        return RegistryClient(image.registry, scheme=params['registry_scheme'], username=params['registry_username'],
                              password=params['registry_password'], validate_certs=params['validate_certs'],
                              ca_path=params['ca_path'], timeout=params['registry_timeout'],
                              realm_hosts=params['registry_realm_hosts'])
    except ValueError as exc:
        raise MtdError('Invalid registry option: %s.' % (exc,))


class _Unit:
    """One image manifest to rebase (the image itself, or one platform child of an index)."""

    def __init__(self, manifest_json: Dict[str, Any], digest: str, descriptor: Optional[Dict[str, Any]] = None):
        self.manifest = manifest_json
        self.digest = digest
        self.descriptor = descriptor
        self.config: Dict[str, Any] = {}
        self.platform: Dict[str, Any] = {}
        self.old_base: Base = ({}, '', {})
        self.new_base: Base = ({}, '', {})
        self.plan: Dict[str, Any] = {}
        self.steps: List[Dict[str, Any]] = []
        self.reuse: Dict[str, List[Any]] = {}

    def error(self, exc: MtdError) -> MtdError:
        """``exc`` naming this unit's platform when the unit is a child of an index."""
        if self.descriptor is not None:
            return MtdError('Platform %s: %s' % (platform_string(self.platform), exc.msg), **exc.details)
        return exc


class ImageRebaser:
    """Read and plan everything (validate → bases → detect → plan), then write (or count, in check mode)."""

    def __init__(self, mod: MtdModule, client: RegistryClient, image: Reference, target: Reference):
        self.mod = mod
        self.params = mod.params
        self.client = client
        self.image = image
        self.target = target
        self.step_repo = self.params['step_repository'] or default_step_repository(target.repository)
        self.result: Dict[str, Any] = {'changed': False, 'requests': client.stats.as_dict()}
        self.blob_counts = {'present': 0, 'mounted': 0, 'uploaded': 0}
        self._config_cache: Dict[str, Dict[str, Any]] = {}
        self._old_source: Optional[str] = None

    # -- registry reads -----------------------------------------------------------------------

    def _config(self, repository: str, manifest_json: Dict[str, Any]) -> Dict[str, Any]:
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

    def _manifest(self, repository: str, reference_text: str, what: str) -> Manifest:
        manifest = self.client.get_manifest(repository, reference_text, missing_ok=True)
        if manifest is None:
            raise MtdError('%s %s/%s%s%s does not exist in the registry (no manifest).'
                           % (what, self.client.registry, repository,
                              '@' if reference_text.startswith('sha256:') else ':', reference_text))
        if not manifest.is_index:
            manifest_format(manifest.media_type)
        return manifest

    # -- the steps ----------------------------------------------------------------------------

    def run(self) -> Dict[str, Any]:
        start = time.monotonic()
        self._request_scopes()
        source = self._manifest(self.image.repository, self.image.reference, 'The image')
        self.result['image'] = {'name': self.params['image'], 'digest': source.digest, 'media_type': source.media_type}
        new_base, old_base = self._bases(source)
        new_base_manifest, old_base_manifest = self._base_manifests(new_base, old_base)
        units = self._units(source)
        update = self._update_available(units, old_base, new_base, new_base_manifest, old_base_manifest)
        self.result['update_available'] = update
        self.result.update(self._empty_result(source))
        if not update or self.params['detect_only']:
            self._finish(start, start)
            return self.result
        if old_base is None or old_base_manifest is None:
            raise MtdError('The image %s does not record its base (no %s annotation): give old_base, the base it '
                           'was built on.' % (self.params['image'], ANNOTATION_BASE_DIGEST))
        # Plan every platform before writing anything.
        for unit in units:
            self._plan_unit(unit, old_base, old_base_manifest, new_base, new_base_manifest)
        final_bytes, final_digest, final_type = self._final_manifest(source, units, new_base, new_base_manifest)
        current = self.client.head_manifest(self.target.repository, self.target.reference)
        current_digest = current[0] if current else None
        planned = time.monotonic()
        if self.mod.check_mode:
            self._count_writes(units, current_digest, final_digest)
        else:
            self._write(units, new_base, source.is_index, current_digest, (final_bytes, final_digest, final_type))
        self._report(units, current_digest, final_digest, final_type)
        self._finish(start, planned)
        return self.result

    def _request_scopes(self) -> None:
        """Every repository known now goes into the first token; an annotated base adds its scope later."""
        writing = not (self.mod.check_mode or self.params['detect_only'])
        self.client.add_scope(self.image.repository, 'pull')
        self.client.add_scope(self.target.repository, 'pull,push' if writing else 'pull')
        self.client.add_scope(self.step_repo, 'pull,push' if writing else 'pull')
        for option in ('new_base', 'old_base'):
            if self.params[option]:
                self.client.add_scope(reference(self.params[option], option).repository, 'pull')

    def _bases(self, source: Manifest) -> Tuple[Reference, Optional[Reference]]:
        """The new base (option, else annotated name) and the old base (option, else annotations) as references."""
        texts = base_sources(self.params['image'], self.params['new_base'], self.params['old_base'],
                             source.json.get('annotations'))
        new_base = reference(texts['new_base'], 'new_base')
        old_base = None
        if texts['old_base']:
            old_base = reference(texts['old_base'], texts['old_option'])
            if texts['old_base_digest']:
                old_base.digest = texts['old_base_digest']
        check_one_registry(self.image, self.target, new_base, old_base)
        self.client.add_scope(new_base.repository, 'pull')
        if old_base is not None:
            self.client.add_scope(old_base.repository, 'pull')
        self._old_source = texts['old_source']
        return new_base, old_base

    def _base_manifests(self, new_base: Reference,
                        old_base: Optional[Reference]) -> Tuple[Manifest, Optional[Manifest]]:
        new_base_manifest = self._manifest(new_base.repository, new_base.reference, 'The new base')
        self.result['new_base'] = {'name': str(new_base), 'digest': new_base_manifest.digest}
        if old_base is None:
            self.result['old_base'] = None
            return new_base_manifest, None
        old_base_manifest = self._manifest(old_base.repository, old_base.reference, 'The old base')
        self.result['old_base'] = {'name': old_base.name, 'digest': old_base_manifest.digest,
                                   'source': self._old_source}
        return new_base_manifest, old_base_manifest

    def _empty_result(self, source: Manifest) -> Dict[str, Any]:
        """The result when nothing is (or is to be) written; a rebase overwrites its keys."""
        return {
            'digest': source.digest, 'media_type': source.media_type, 'tag': None, 'tag_written': False,
            'platforms': [], 'bytes_uploaded': 0, 'layer_bytes_uploaded': 0, 'blobs': dict(self.blob_counts),
            'steps': {'repository': self.step_repo, 'total': 0, 'reused': 0, 'created': 0, 'tags': []},
        }

    def _final_manifest(self, source: Manifest, units: List[_Unit], new_base: Reference,
                        new_base_manifest: Manifest) -> Tuple[bytes, str, str]:
        """(bytes, digest, media type) of what the target tag is to hold: the one rebased manifest, or the index."""
        if not source.is_index:
            plan = units[0].plan
            return plan['manifest'], plan['digest'], plan['media_type']
        children = {}
        for unit in units:
            children[unit.digest] = index_child(unit.plan, unit.new_base[2])
        data, digest = rebased_index(source.json, children, str(new_base), new_base_manifest.digest, source.digest)
        return data, digest, source.media_type

    def _report(self, units: List[_Unit], current_digest: Optional[str], final_digest: str, final_type: str) -> None:
        self.result.update({
            'digest': final_digest,
            'media_type': final_type,
            'tag': '%s:%s' % (self.target.name, self.target.tag),
            'tag_written': current_digest != final_digest,
            'platforms': [platform_summary(unit.platform, unit.digest, unit.plan, unit.reuse) for unit in units],
            'steps': steps_summary(self.step_repo, [unit.steps for unit in units], [unit.reuse for unit in units]),
        })
        self.mod.set_diff({'tag': self.result['tag'], 'digest': current_digest},
                          {'tag': self.result['tag'], 'digest': final_digest})

    def _finish(self, start: float, planned: float) -> None:
        stats = self.client.stats
        self.result['requests'] = stats.as_dict()
        self.result['bytes_uploaded'] = stats.bytes_uploaded
        self.result['layer_bytes_uploaded'] = 0
        self.result['blobs'] = dict(self.blob_counts)
        now = time.monotonic()
        self.result['timings'] = {'plan_s': round(planned - start, 3), 'write_s': round(now - planned, 3),
                                  'total_s': round(now - start, 3)}

    # -- planning -----------------------------------------------------------------------------

    def _units(self, source: Manifest) -> List[_Unit]:
        if not source.is_index:
            return [_Unit(source.json, source.digest)]
        units = []
        for descriptor in source.json.get('manifests') or []:
            if is_image_descriptor(descriptor):
                child = self.client.get_manifest(self.image.repository, descriptor['digest'])
                manifest_format(child.media_type)
                units.append(_Unit(child.json, child.digest, descriptor))
        if not units:
            raise MtdError('The index %s has no image manifest to rebase.' % (self.params['image'],))
        return units

    def _base_for(self, unit: _Unit, base_ref: Reference, base_manifest: Manifest, what: str) -> Base:
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

    def _update_available(self, units: List[_Unit], old_base: Optional[Reference], new_base: Reference,
                          new_base_manifest: Manifest, old_base_manifest: Optional[Manifest]) -> bool:
        for unit in units:
            unit.config = self._config(self.image.repository, unit.manifest)
            unit.platform = platform_of(unit.config, (unit.descriptor or {}).get('platform'))
        if old_base_manifest is not None and old_base_manifest.digest == new_base_manifest.digest:
            return False
        first_error = None
        if old_base is not None and old_base_manifest is not None:
            # The usual case: the image is on its old base, so an update is available.
            first_error = self._first_prefix_error(units, old_base, old_base_manifest)
            if first_error is None:
                return True
        # Not on the old base (or none known): already on the new base, for instance rebased before in place?
        for unit in units:
            base_json, _digest, base_config = self._base_for(unit, new_base, new_base_manifest, 'The new base')
            if not is_prefix(unit.manifest, unit.config, base_json, base_config):
                if first_error is None:
                    raise MtdError('The image %s does not record its base (no %s annotation) and is not on the new '
                                   'base %s: give old_base, the base it was built on.'
                                   % (self.params['image'], ANNOTATION_BASE_DIGEST, new_base))
                raise first_error
        return False

    def _first_prefix_error(self, units: List[_Unit], old_base: Reference,
                            old_base_manifest: Manifest) -> Optional[MtdError]:
        """The error of the first unit that is not on the old base, or None when all are."""
        for unit in units:
            base_json, _digest, base_config = self._base_for(unit, old_base, old_base_manifest, 'The old base')
            try:
                check_prefix(unit.manifest, unit.config, base_json, base_config)
            except MtdError as exc:
                return unit.error(exc)
        return None

    def _plan_unit(self, unit: _Unit, old_base: Reference, old_base_manifest: Manifest,
                   new_base: Reference, new_base_manifest: Manifest) -> None:
        unit.old_base = self._base_for(unit, old_base, old_base_manifest, 'The old base')
        unit.new_base = self._base_for(unit, new_base, new_base_manifest, 'The new base')
        try:
            unit.plan = rebase_image(unit.manifest, unit.config, unit.old_base[0], unit.old_base[2],
                                     unit.new_base[0], unit.new_base[2], str(new_base), unit.new_base[1], unit.digest)
        except MtdError as exc:
            raise unit.error(exc)
        fmt = manifest_format(unit.plan['media_type'])
        unit.steps = plan_steps(unit.new_base[0], unit.new_base[2], str(new_base), unit.new_base[1],
                                unit.plan['upper'], fmt)
        # Find the highest stored step (each contains the lower ones): look from the top down.
        found = {}
        for step in reversed(unit.steps):
            head = self.client.head_manifest(self.step_repo, step['tag'])
            found[step['tag']] = head[0] if head else None
            if head and head[0] == step['digest']:
                break
        unit.reuse = reuse_plan(unit.steps, found)
        if unit.reuse['mismatch']:
            self.mod.warn('Step tags %s in %s hold other content than planned; they are written again.'
                          % (', '.join(unit.reuse['mismatch']), self.step_repo))

    # -- writing ------------------------------------------------------------------------------

    def _write(self, units: List[_Unit], new_base: Reference, index_children: bool, current_digest: Optional[str],
               final: Tuple[bytes, str, str]) -> None:
        for unit in units:
            self._write_unit(unit, new_base.repository, in_index=index_children)
        final_bytes, final_digest, final_type = final
        if current_digest != final_digest:
            self.client.put_manifest(self.target.repository, self.target.reference, final_bytes, final_type)
        self.result['changed'] = self.client.stats.writes > 0

    def _layer_sources(self, unit: _Unit, new_base_repository: str) -> Dict[str, List[str]]:
        sources = {}
        for layer in unit.plan['base_layers']:
            sources[layer['digest']] = [new_base_repository, self.step_repo]
        for layer in unit.plan['upper']['layers']:
            sources[layer['digest']] = [self.image.repository, self.step_repo]
        return sources

    def _ensure(self, repository: str, digest: str, sources: List[str], data: Optional[bytes] = None,
                known: Optional[set] = None) -> None:
        if known is not None and (repository, digest) in known:
            return
        outcome = self.client.ensure_blob(repository, digest, sources, data=data)
        self.blob_counts[outcome] += 1
        if known is not None:
            known.add((repository, digest))

    def _write_unit(self, unit: _Unit, new_base_repository: str, in_index: bool) -> None:
        step_repo, target = self.step_repo, self.target
        sources = self._layer_sources(unit, new_base_repository)
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
        if in_index:
            head = self.client.head_manifest(target.repository, unit.plan['digest'])
            if not head:
                self.client.put_manifest(target.repository, unit.plan['digest'], unit.plan['manifest'],
                                         unit.plan['media_type'])

    def _count_writes(self, units: List[_Unit], current_digest: Optional[str], final_digest: str) -> None:
        """Check mode: count what would be mounted / uploaded into the target repository (HEAD only)."""
        for unit in units:
            for layer in unit.plan['base_layers'] + unit.plan['upper']['layers']:
                if self.client.blob_exists(self.target.repository, layer['digest']):
                    self.blob_counts['present'] += 1
                else:
                    self.blob_counts['mounted'] += 1
            if self.client.blob_exists(self.target.repository, sha256_digest(unit.plan['config'])):
                self.blob_counts['present'] += 1
            else:
                self.blob_counts['uploaded'] += 1
        self.result['changed'] = would_write(current_digest, final_digest,
                                             sum(len(unit.reuse['create']) for unit in units), self.blob_counts)


def run(mod: MtdModule) -> Dict[str, Any]:
    """Validate the references, open the registry client (closed on every exit), rebase."""
    image, target = image_and_target(mod.params)
    client = registry_client(mod.params, image)
    mod.add_cleanup(client.close)
    # A failure reports the requests sent so far, as a success does.
    mod.add_failure_details(lambda: {'requests': client.stats.as_dict()})
    try:
        return ImageRebaser(mod, client, image, target).run()
    except MtdError as exc:
        if not exc.details:
            raise
        # This module's failures keep the error's details under one key, ``details`` (documented shape).
        raise MtdError(error_message(exc, mod.module._name), details=exc.details) from exc


def main():
    run_module(run, ARGUMENT_SPEC)


if __name__ == '__main__':
    main()
