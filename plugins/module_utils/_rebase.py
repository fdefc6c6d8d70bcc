# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pure planning functions of the image rebase: no I/O, deterministic, Python 3.8+.

This is a private module_utils file (leading underscore): its API may change without notice.

Vocabulary: an *image* is a manifest (dict) plus its config (dict). A base is a *prefix* of an image when
its layer digests, its ``rootfs.diff_ids`` and its history entries (empty-layer entries included) start the
image's. The image's *upper* part is what follows the prefix. Rebasing puts the upper part on a new base
without touching the layer blobs: the new manifest lists the new base's layer descriptors then the upper
ones; the new config is the image's config with ``rootfs.diff_ids`` and ``history`` re-prefixed and
``os.version`` / ``variant`` taken from the new base.

Each upper layer is also rebased in turn onto the previous result: step k is the new base plus the first k
upper layers. A step is identified by ``(new base digest, chain of layer digests)`` and can be stored and
found again in the registry, so that images sharing lower layers reuse it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError

DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json'
OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'

ANNOTATION_BASE_NAME = 'org.opencontainers.image.base.name'
ANNOTATION_BASE_DIGEST = 'org.opencontainers.image.base.digest'
ANNOTATION_SOURCE = 'io.github.mtd-containers.rebase.source.digest'
ANNOTATION_STEP = 'io.github.mtd-containers.rebase.step'

STEP_TAG_PREFIX = 'rb-step-'
STEP_ID_VERSION = 1

# Layer media types and their counterpart in the other format (same bytes, other name).
_DOCKER_TO_OCI_LAYER = {
    'application/vnd.docker.image.rootfs.diff.tar.gzip': 'application/vnd.oci.image.layer.v1.tar+gzip',
    'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip':
        'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
}
_OCI_TO_DOCKER_LAYER: Dict[str, Optional[str]] = dict((v, k) for k, v in _DOCKER_TO_OCI_LAYER.items())
_OCI_TO_DOCKER_LAYER['application/vnd.oci.image.layer.v1.tar'] = None  # no Docker name for uncompressed


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no insignificant whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode('utf-8')


def sha256_digest(data: bytes) -> str:
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def short(digest: Any) -> str:
    """``sha256:0123456789ab`` for messages."""
    return digest[:19] if isinstance(digest, str) else str(digest)


def manifest_format(media_type: Optional[str]) -> str:
    """``docker`` or ``oci`` for an image manifest media type; MtdError otherwise."""
    if media_type == DOCKER_MANIFEST:
        return 'docker'
    if media_type == OCI_MANIFEST:
        return 'oci'
    raise MtdError('Unsupported manifest media type %r: only Docker v2 schema 2 and OCI image manifests '
                   'can be rebased.' % (media_type,))


def convert_layer_media_type(media_type: str, fmt: str) -> str:
    """The layer media type ``media_type`` named in manifest format ``fmt`` (``docker`` or ``oci``)."""
    if fmt == 'oci':
        if media_type.startswith('application/vnd.oci.'):
            return media_type
        if media_type in _DOCKER_TO_OCI_LAYER:
            return _DOCKER_TO_OCI_LAYER[media_type]
    else:
        if media_type.startswith('application/vnd.docker.'):
            return media_type
        converted = _OCI_TO_DOCKER_LAYER.get(media_type)
        if converted:
            return converted
    raise MtdError('The new base has a layer of media type %s, which has no equivalent in a %s manifest; '
                   'rebase onto a base of the same format.' % (media_type, 'Docker' if fmt == 'docker' else 'OCI'))


def layer_digests(manifest: Dict[str, Any]) -> List[Optional[str]]:
    return [layer.get('digest') for layer in manifest.get('layers') or []]


def diff_ids(config: Dict[str, Any]) -> List[str]:
    return list(((config.get('rootfs') or {}).get('diff_ids')) or [])


def history(config: Dict[str, Any]) -> List[Dict[str, Any]]:
    return list(config.get('history') or [])


def _non_empty(entries):
    return sum(1 for entry in entries if not entry.get('empty_layer'))


def platform_of(config: Dict[str, Any], descriptor_platform: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``{os, architecture[, variant][, os.version]}`` from a config, else from an index descriptor."""
    source = descriptor_platform or {}
    result = {
        'os': config.get('os') or source.get('os'),
        'architecture': config.get('architecture') or source.get('architecture'),
    }
    variant = config.get('variant') or source.get('variant')
    if variant:
        result['variant'] = variant
    os_version = config.get('os.version') or source.get('os.version')
    if os_version:
        result['os.version'] = os_version
    return result


def platform_string(platform: Dict[str, Any]) -> str:
    text = '%s/%s' % (platform.get('os') or '?', platform.get('architecture') or '?')
    if platform.get('variant'):
        text += '/' + platform['variant']
    return text


def platform_matches(wanted: Dict[str, Any], candidate: Optional[Dict[str, Any]]) -> bool:
    """Same os and architecture, and same variant when both give one."""
    if not candidate or wanted.get('os') != candidate.get('os'):
        return False
    if wanted.get('architecture') != candidate.get('architecture'):
        return False
    if wanted.get('variant') and candidate.get('variant') and wanted['variant'] != candidate['variant']:
        return False
    return True


def check_consistent(manifest: Dict[str, Any], config: Dict[str, Any], what: str) -> None:
    """The layers of a manifest, its config's diff_ids and its history must agree in number."""
    layers = layer_digests(manifest)
    ids = diff_ids(config)
    if len(layers) != len(ids):
        raise MtdError('%s lists %d layers but its config has %d diff_ids; the image is inconsistent.'
                       % (what, len(layers), len(ids)))
    entries = history(config)
    if entries and _non_empty(entries) != len(layers):
        raise MtdError('%s has %d layers but %d non-empty history entries; the image is inconsistent.'
                       % (what, len(layers), _non_empty(entries)))


def _describe_entry(entry):
    text = (entry or {}).get('created_by') or (entry or {}).get('comment') or ''
    text = ' '.join(text.split())
    return text[:80] + ('...' if len(text) > 80 else '')


def check_prefix(image_manifest: Dict[str, Any], image_config: Dict[str, Any], base_manifest: Dict[str, Any],
                 base_config: Dict[str, Any], base_name: str = 'the old base') -> Dict[str, int]:
    """Check strictly that the base is a prefix of the image; return the split.

    Returns ``{'layers': n, 'history': h}``: the image's first n layers / h history entries are the base's.
    Raises MtdError naming the first differing layer (1-based) otherwise.
    """
    check_consistent(image_manifest, image_config, 'The image')
    check_consistent(base_manifest, base_config, base_name[0].upper() + base_name[1:])
    image_layers, base_layers = layer_digests(image_manifest), layer_digests(base_manifest)
    if len(base_layers) > len(image_layers):
        raise MtdError('%s is not a prefix of the image: it has %d layers and the image only %d.'
                       % (base_name[0].upper() + base_name[1:], len(base_layers), len(image_layers)))
    for index, (mine, theirs) in enumerate(zip(image_layers, base_layers)):
        if mine != theirs:
            raise MtdError('%s is not a prefix of the image: layer %d differs (image %s, base %s).'
                           % (base_name[0].upper() + base_name[1:], index + 1, short(mine), short(theirs)),
                           differing_layer=index + 1, image_layer=mine, base_layer=theirs)
    image_ids, base_ids = diff_ids(image_config), diff_ids(base_config)
    for index, (mine, theirs) in enumerate(zip(image_ids, base_ids)):
        if mine != theirs:
            raise MtdError('%s is not a prefix of the image: the diff_id of layer %d differs (image %s, base %s).'
                           % (base_name[0].upper() + base_name[1:], index + 1, short(mine), short(theirs)),
                           differing_layer=index + 1, image_diff_id=mine, base_diff_id=theirs)
    image_history, base_history = history(image_config), history(base_config)
    if len(base_history) > len(image_history):
        raise MtdError('%s is not a prefix of the image: it has %d history entries and the image only %d.'
                       % (base_name[0].upper() + base_name[1:], len(base_history), len(image_history)))
    layer = 0
    for index, (image_entry, base_entry) in enumerate(zip(image_history, base_history)):
        if not base_entry.get('empty_layer'):
            layer += 1
        if canonical_json(image_entry) != canonical_json(base_entry):
            where = ('layer %d' % layer if not base_entry.get('empty_layer')
                     else 'an empty-layer step after layer %d' % layer)
            raise MtdError('%s is not a prefix of the image: history entry %d (%s) differs: image "%s", base "%s".'
                           % (base_name[0].upper() + base_name[1:], index + 1, where, _describe_entry(image_entry),
                              _describe_entry(base_entry)),
                           differing_layer=layer, differing_history_entry=index + 1)
    if _non_empty(base_history) != len(base_layers) and base_history:
        raise MtdError('%s has inconsistent history.' % (base_name,))  # pragma: no cover (check_consistent)
    return {'layers': len(base_layers), 'history': len(base_history)}


def is_prefix(image_manifest: Dict[str, Any], image_config: Dict[str, Any], base_manifest: Dict[str, Any],
              base_config: Dict[str, Any]) -> bool:
    try:
        check_prefix(image_manifest, image_config, base_manifest, base_config)
    except MtdError:
        return False
    return True


def check_platform(image_config: Dict[str, Any], new_base_config: Dict[str, Any]) -> None:
    image_platform, base_platform = platform_of(image_config), platform_of(new_base_config)
    if not platform_matches(image_platform, base_platform):
        raise MtdError('The new base is for %s but the image is for %s; give a base of the same platform.'
                       % (platform_string(base_platform), platform_string(image_platform)))


def upper_part(image_manifest: Dict[str, Any], image_config: Dict[str, Any], split: Dict[str, int]) -> Dict[str, Any]:
    """The image's own layers (descriptors), diff_ids and history entries above the base."""
    n, h = split['layers'], split['history']
    return {
        'layers': [copy.deepcopy(layer) for layer in (image_manifest.get('layers') or [])[n:]],
        'diff_ids': diff_ids(image_config)[n:],
        'history': [copy.deepcopy(entry) for entry in history(image_config)[h:]],
    }


def base_layer_descriptors(new_base_manifest: Dict[str, Any], fmt: str) -> List[Dict[str, Any]]:
    """The new base's layer descriptors, with media types named in the image's format."""
    result = []
    for layer in new_base_manifest.get('layers') or []:
        descriptor = copy.deepcopy(layer)
        descriptor['mediaType'] = convert_layer_media_type(descriptor.get('mediaType', ''), fmt)
        result.append(descriptor)
    return result


def rebased_config(image_config: Dict[str, Any], new_base_config: Dict[str, Any], upper: Dict[str, Any]) -> Dict[str, Any]:
    """The image's config with rootfs/history re-prefixed and os.version/variant of the new base."""
    config = copy.deepcopy(image_config)
    config['rootfs'] = {'type': 'layers', 'diff_ids': diff_ids(new_base_config) + list(upper['diff_ids'])}
    base_history = history(new_base_config)
    if base_history or upper['history'] or 'history' in config:
        config['history'] = copy.deepcopy(base_history) + copy.deepcopy(upper['history'])
    for key in ('os.version', 'variant', 'os.features'):
        if key in new_base_config:
            config[key] = copy.deepcopy(new_base_config[key])
        else:
            config.pop(key, None)
    return config


def base_annotations(base_name: str, base_digest: str, source_digest: str,
                     existing: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    annotations = dict(existing or {})
    annotations[ANNOTATION_BASE_NAME] = base_name
    annotations[ANNOTATION_BASE_DIGEST] = base_digest
    if source_digest:
        annotations[ANNOTATION_SOURCE] = source_digest
    else:
        annotations.pop(ANNOTATION_SOURCE, None)
    return annotations


def build_manifest(media_type: str, config_media_type: str, config_bytes: bytes, layers: List[Dict[str, Any]],
                   annotations: Optional[Dict[str, str]] = None, extra: Optional[Dict[str, Any]] = None) -> bytes:
    """Canonical manifest bytes for ``layers`` (descriptors) and the config bytes."""
    manifest = dict(extra or {})
    manifest.update({
        'schemaVersion': 2,
        'mediaType': media_type,
        'config': {'mediaType': config_media_type, 'digest': sha256_digest(config_bytes), 'size': len(config_bytes)},
        'layers': layers,
    })
    if annotations:
        manifest['annotations'] = annotations
    else:
        manifest.pop('annotations', None)
    return canonical_json(manifest)


def rebase_image(image_manifest: Dict[str, Any], image_config: Dict[str, Any], old_base_manifest: Dict[str, Any],
                 old_base_config: Dict[str, Any], new_base_manifest: Dict[str, Any], new_base_config: Dict[str, Any],
                 new_base_name: str, new_base_digest: str, source_digest: str) -> Dict[str, Any]:
    """Plan the rebase of one image manifest.

    Returns a dict with ``split`` (from :func:`check_prefix`), ``upper`` (see :func:`upper_part`),
    ``base_layers`` (new base descriptors in the image's format), ``config`` (bytes), ``manifest`` (bytes),
    ``digest`` and ``media_type``. Raises MtdError before anything could be written.
    """
    media_type = image_manifest.get('mediaType') or DOCKER_MANIFEST
    fmt = manifest_format(media_type)
    manifest_format(new_base_manifest.get('mediaType') or DOCKER_MANIFEST)
    split = check_prefix(image_manifest, image_config, old_base_manifest, old_base_config)
    check_consistent(new_base_manifest, new_base_config, 'The new base')
    check_platform(image_config, new_base_config)
    upper = upper_part(image_manifest, image_config, split)
    base_layers = base_layer_descriptors(new_base_manifest, fmt)
    config = canonical_json(rebased_config(image_config, new_base_config, upper))
    config_media_type = (image_manifest.get('config') or {}).get('mediaType') or (
        DOCKER_CONFIG if fmt == 'docker' else OCI_CONFIG)
    extra = dict((k, v) for k, v in image_manifest.items()
                 if k not in ('schemaVersion', 'mediaType', 'config', 'layers', 'annotations'))
    annotations = base_annotations(new_base_name, new_base_digest, source_digest, image_manifest.get('annotations'))
    manifest = build_manifest(media_type, config_media_type, config, base_layers + upper['layers'], annotations,
                              extra)
    return {
        'split': split,
        'upper': upper,
        'base_layers': base_layers,
        'config': config,
        'config_media_type': config_media_type,
        'manifest': manifest,
        'digest': sha256_digest(manifest),
        'media_type': media_type,
    }


# -- steps ------------------------------------------------------------------------------------

def step_id(new_base_digest: str, chain: List[str]) -> str:
    """The id of the step "new base + these upper layers": hex sha256 of a canonical description."""
    return hashlib.sha256(canonical_json({'v': STEP_ID_VERSION, 'base': new_base_digest,
                                          'layers': list(chain)})).hexdigest()


def step_tag(identifier: str) -> str:
    return STEP_TAG_PREFIX + identifier


def step_config(new_base_config: Dict[str, Any], upper_diff_ids: List[str]) -> Dict[str, Any]:
    """The config of a step: the new base's config with the step's diff_ids and one history entry per layer.

    It depends only on the new base and the layers, so that any image sharing the layers shares the step.
    """
    config = copy.deepcopy(new_base_config)
    config['rootfs'] = {'type': 'layers', 'diff_ids': diff_ids(new_base_config) + list(upper_diff_ids)}
    config['history'] = history(new_base_config) + [
        {'created_by': 'mtd.containers.image_rebase: upper layer %s' % (diff_id,), 'comment': 'rebase step'}
        for diff_id in upper_diff_ids]
    return config


def plan_steps(new_base_manifest: Dict[str, Any], new_base_config: Dict[str, Any], new_base_name: str,
               new_base_digest: str, upper: Dict[str, Any], fmt: str) -> List[Dict[str, Any]]:
    """The chain of steps for ``upper`` layers on the new base: one dict per upper layer, lowest first.

    Each step has ``index`` (1-based), ``id``, ``tag``, ``layer`` (its own layer digest), ``layers`` (all
    descriptors), ``config`` (bytes), ``config_digest``, ``manifest`` (bytes), ``digest`` and ``media_type``.
    """
    media_type = DOCKER_MANIFEST if fmt == 'docker' else OCI_MANIFEST
    config_media_type = DOCKER_CONFIG if fmt == 'docker' else OCI_CONFIG
    base_layers = base_layer_descriptors(new_base_manifest, fmt)
    steps = []
    chain = []
    for index, layer in enumerate(upper['layers']):
        chain.append(layer['digest'])
        identifier = step_id(new_base_digest, chain)
        config = canonical_json(step_config(new_base_config, upper['diff_ids'][:index + 1]))
        annotations = {
            ANNOTATION_BASE_NAME: new_base_name,
            ANNOTATION_BASE_DIGEST: new_base_digest,
            ANNOTATION_STEP: identifier,
        }
        layers = base_layers + [copy.deepcopy(item) for item in upper['layers'][:index + 1]]
        manifest = build_manifest(media_type, config_media_type, config, layers, annotations)
        steps.append({
            'index': index + 1,
            'id': identifier,
            'tag': step_tag(identifier),
            'layer': layer['digest'],
            'layers': layers,
            'config': config,
            'config_digest': sha256_digest(config),
            'manifest': manifest,
            'digest': sha256_digest(manifest),
            'media_type': media_type,
        })
    return steps


def reuse_plan(steps: List[Dict[str, Any]], found: Dict[str, Optional[str]]) -> Dict[str, List[Any]]:
    """Which steps to reuse and which to create.

    ``found`` maps a step tag to the digest the registry has under it (missing tags are absent or None).
    A step is reused when the registry holds exactly the planned manifest under its tag; the chain is
    reused up to the highest such step (each step contains all lower ones), the rest is created.
    Returns ``{'reuse': [steps], 'create': [steps], 'mismatch': [tags whose content differs]}``.
    """
    highest = 0
    mismatch = []
    for step in steps:
        digest = found.get(step['tag'])
        if digest is None:
            continue
        if digest == step['digest']:
            highest = max(highest, step['index'])
        else:
            mismatch.append(step['tag'])
    return {
        'reuse': [s for s in steps if s['index'] <= highest],
        'create': [s for s in steps if s['index'] > highest],
        'mismatch': mismatch,
    }


# -- indexes ----------------------------------------------------------------------------------

def select_platform(index_manifest: Dict[str, Any], platform: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The descriptor of ``index_manifest`` for ``platform`` (dict), or None."""
    for descriptor in index_manifest.get('manifests') or []:
        if platform_matches(platform, descriptor.get('platform')):
            return descriptor
    return None


def is_image_descriptor(descriptor: Dict[str, Any]) -> bool:
    """False for attestation / unknown-platform children that are not runnable images."""
    platform = descriptor.get('platform') or {}
    if platform.get('os') == 'unknown' or platform.get('architecture') == 'unknown':
        return False
    return descriptor.get('mediaType') in (DOCKER_MANIFEST, OCI_MANIFEST)


def rebased_index(index_manifest: Dict[str, Any], children: Dict[str, Dict[str, Any]], new_base_name: str,
                  new_base_digest: str, source_digest: str) -> Tuple[bytes, str]:
    """New index bytes: the same children in the same order, rebased ones replaced.

    ``children`` maps an old child digest to ``{'digest', 'size', 'mediaType', 'os.version'?}``.
    """
    index = copy.deepcopy(index_manifest)
    media_type = index.get('mediaType') or OCI_INDEX
    manifests = []
    for descriptor in index.get('manifests') or []:
        replacement = children.get(descriptor.get('digest'))
        descriptor = copy.deepcopy(descriptor)
        if replacement:
            descriptor['digest'] = replacement['digest']
            descriptor['size'] = replacement['size']
            descriptor['mediaType'] = replacement['mediaType']
            platform = descriptor.get('platform')
            if isinstance(platform, dict):
                for key in ('os.version', 'variant'):
                    if replacement.get(key):
                        platform[key] = replacement[key]
                    elif key == 'os.version':
                        platform.pop(key, None)
        manifests.append(descriptor)
    index['manifests'] = manifests
    index['schemaVersion'] = 2
    index['mediaType'] = media_type
    index['annotations'] = base_annotations(new_base_name, new_base_digest, source_digest, index.get('annotations'))
    data = canonical_json(index)
    return data, sha256_digest(data)


# -- the module's decisions -------------------------------------------------------------------

STEP_REPOSITORY = 'rebase-steps'


def default_step_repository(target_repository: str) -> str:
    """``<namespace of the target repository>/rebase-steps``, or ``rebase-steps`` without namespace.

    ``team/app`` -> ``team/rebase-steps``; ``a/b/app`` -> ``a/b/rebase-steps``; ``app`` -> ``rebase-steps``.
    """
    if '/' in target_repository:
        return target_repository.rsplit('/', 1)[0] + '/' + STEP_REPOSITORY
    return STEP_REPOSITORY


def base_sources(image: str, new_base: Optional[str], old_base: Optional[str],
                 annotations: Optional[Dict[str, str]]) -> Dict[str, Any]:
    """Which texts name the new and the old base: the options first, else the image's base annotations.

    Returns ``{'new_base': text, 'old_base': text or None, 'old_base_digest': the annotated digest or None,
    'old_source': 'option' | 'annotation' | None, 'old_option': what to name in a message about the text}``.
    The annotations give the old base only when they carry both its name and its digest (the digest then
    replaces whatever the name points to). Raises MtdError when nothing names the new base.
    """
    annotations = annotations or {}
    new_text = new_base or annotations.get(ANNOTATION_BASE_NAME)
    if not new_text:
        raise MtdError('The image %s does not name its base (no %s annotation): give new_base.'
                       % (image, ANNOTATION_BASE_NAME))
    result: Dict[str, Any] = {'new_base': new_text, 'old_base': None, 'old_base_digest': None, 'old_source': None,
                              'old_option': 'old_base'}
    if old_base:
        result.update(old_base=old_base, old_source='option')
    elif annotations.get(ANNOTATION_BASE_DIGEST) and annotations.get(ANNOTATION_BASE_NAME):
        result.update(old_base=annotations[ANNOTATION_BASE_NAME], old_base_digest=annotations[ANNOTATION_BASE_DIGEST],
                      old_source='annotation', old_option='annotation %s' % ANNOTATION_BASE_NAME)
    return result


def index_child(plan: Dict[str, Any], new_base_config: Dict[str, Any]) -> Dict[str, Any]:
    """The entry of ``rebased_index``'s ``children`` for one rebased platform ``plan`` (see ``rebase_image``)."""
    new_platform = platform_of(new_base_config)
    return {'digest': plan['digest'], 'size': len(plan['manifest']), 'mediaType': plan['media_type'],
            'os.version': new_platform.get('os.version'), 'variant': new_platform.get('variant')}


def would_write(current_digest: Optional[str], final_digest: str, steps_to_create: int,
                blob_counts: Dict[str, int]) -> bool:
    """Check mode: would a real run write anything (the target tag, a step, a mounted or uploaded blob)?"""
    return bool(current_digest != final_digest or steps_to_create or blob_counts.get('mounted')
                or blob_counts.get('uploaded'))


def platform_summary(platform: Dict[str, Any], source_digest: str, plan: Dict[str, Any],
                     reuse: Dict[str, List[Any]]) -> Dict[str, Any]:
    """One entry of the module's ``platforms`` result: what the rebase of one image manifest did."""
    return {
        'platform': platform_string(platform),
        'source_digest': source_digest,
        'digest': plan['digest'],
        'own_layers': [layer['digest'] for layer in plan['upper']['layers']],
        'old_base_layers': plan['split']['layers'],
        'new_base_layers': len(plan['base_layers']),
        'steps_reused': len(reuse['reuse']),
        'steps_created': len(reuse['create']),
    }


def steps_summary(repository: str, chains: List[List[Dict[str, Any]]],
                  reuses: List[Dict[str, List[Any]]]) -> Dict[str, Any]:
    """The module's ``steps`` result over all platforms: ``chains`` (steps per platform) and their reuse plans."""
    return {
        'repository': repository,
        'total': sum(len(chain) for chain in chains),
        'reused': sum(len(reuse['reuse']) for reuse in reuses),
        'created': sum(len(reuse['create']) for reuse in reuses),
        'tags': [step['tag'] for chain in chains for step in chain],
    }
