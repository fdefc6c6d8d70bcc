# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test helper, independent of the collection's client: read and craft images in a plain-HTTP registry.

  regtool.py show REG REPO REF | REG REPO:TAG  -> JSON {digest, mediaType, manifest, config}
  regtool.py variant REG SRC_REPO SRC_REF DST_REPO DST_TAG ARCH [VARIANT]
                                            -> copy an image with another architecture in its config
  regtool.py oci REG SRC_REPO SRC_REF DST_REPO DST_TAG
                                            -> copy an image as an OCI manifest/config (same layer blobs)
  regtool.py index REG DST_REPO DST_TAG REF1 REF2 ...
                                            -> a Docker manifest list of REFs (in DST_REPO) with their platforms
  regtool.py logsize FILE                   -> byte size of the registry access log
  regtool.py logcount FILE OFFSET PREFIX [DIGEST ...]
                                            -> JSON counts of requests in the log since OFFSET for repos PREFIX*
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.request

ACCEPT = ', '.join([
    'application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json',
    'application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'])


def _req(method, url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), response.read()


def get_manifest(reg, repo, ref):
    _status, headers, body = _req('GET', 'http://%s/v2/%s/manifests/%s' % (reg, repo, ref), headers={'Accept': ACCEPT})
    return body, headers.get('Content-Type')


def get_blob(reg, repo, digest):
    return _req('GET', 'http://%s/v2/%s/blobs/%s' % (reg, repo, digest))[2]


def digest_of(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def put_blob(reg, repo, data):
    digest = digest_of(data)
    _s, headers, _b = _req('POST', 'http://%s/v2/%s/blobs/uploads/' % (reg, repo))
    location = headers['Location']
    _req('PUT', location + ('&' if '?' in location else '?') + 'digest=' + digest, data=data,
         headers={'Content-Type': 'application/octet-stream'})
    return digest


def mount(reg, repo, digest, src):
    try:
        _req('HEAD', 'http://%s/v2/%s/blobs/%s' % (reg, repo, digest))
        return
    except urllib.error.HTTPError:
        pass
    status, headers, _b = _req('POST', 'http://%s/v2/%s/blobs/uploads/?mount=%s&from=%s' % (reg, repo, digest, src))
    if status != 201:
        raise SystemExit('mount of %s from %s into %s refused' % (digest, src, repo))


def put_manifest(reg, repo, ref, data, media_type):
    _req('PUT', 'http://%s/v2/%s/manifests/%s' % (reg, repo, ref), data=data, headers={'Content-Type': media_type})
    return digest_of(data)


def show(reg, repo, ref):
    body, ctype = get_manifest(reg, repo, ref)
    manifest = json.loads(body)
    out = {'digest': digest_of(body), 'mediaType': manifest.get('mediaType') or ctype, 'manifest': manifest}
    if 'config' in manifest:
        out['config'] = json.loads(get_blob(reg, repo, manifest['config']['digest']))
    return out


def copy_image(reg, src_repo, src_ref, dst_repo, dst_tag, arch=None, variant=None, oci=False):
    body, _ctype = get_manifest(reg, src_repo, src_ref)
    manifest = json.loads(body)
    config = json.loads(get_blob(reg, src_repo, manifest['config']['digest']))
    if arch:
        config['architecture'] = arch
        if variant:
            config['variant'] = variant
    for layer in manifest['layers']:
        mount(reg, dst_repo, layer['digest'], src_repo)
    if oci:
        manifest['mediaType'] = 'application/vnd.oci.image.manifest.v1+json'
        manifest['config']['mediaType'] = 'application/vnd.oci.image.config.v1+json'
        for layer in manifest['layers']:
            layer['mediaType'] = 'application/vnd.oci.image.layer.v1.tar+gzip'
    config_bytes = json.dumps(config).encode()
    manifest['config']['digest'] = put_blob(reg, dst_repo, config_bytes)
    manifest['config']['size'] = len(config_bytes)
    data = json.dumps(manifest, indent=3).encode()
    return put_manifest(reg, dst_repo, dst_tag, data, manifest['mediaType'])


def make_index(reg, dst_repo, dst_tag, refs):
    children = []
    for ref in refs:
        body, _ctype = get_manifest(reg, dst_repo, ref)
        manifest = json.loads(body)
        config = json.loads(get_blob(reg, dst_repo, manifest['config']['digest']))
        platform = {'architecture': config['architecture'], 'os': config['os']}
        if config.get('variant'):
            platform['variant'] = config['variant']
        children.append({'mediaType': manifest['mediaType'], 'digest': digest_of(body), 'size': len(body),
                         'platform': platform})
    index = {'schemaVersion': 2, 'mediaType': 'application/vnd.docker.distribution.manifest.list.v2+json',
             'manifests': children}
    data = json.dumps(index, indent=3).encode()
    return put_manifest(reg, dst_repo, dst_tag, data, index['mediaType'])


_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>/v2/\S*) HTTP/[0-9.]+" (?P<status>\d{3}) (?P<size>\d+)')


def log_count(path, offset, prefix, digests):
    with open(path, 'rb') as handle:
        handle.seek(int(offset))
        text = handle.read().decode('utf-8', 'replace')
    counts = {'requests': 0, 'manifest_puts': 0, 'blob_upload_puts': 0, 'patches': 0, 'mounts': 0,
              'upload_posts': 0, 'digest_uploads': 0, 'upload_bytes': 0}
    for line in text.splitlines():
        match = _LINE.search(line)
        if not match or not match.group('path').startswith('/v2/' + prefix):
            continue
        method, path = match.group('method'), match.group('path')
        counts['requests'] += 1
        if method == 'PUT' and '/manifests/' in path:
            counts['manifest_puts'] += 1
        elif method == 'PUT' and '/blobs/uploads/' in path:
            counts['blob_upload_puts'] += 1
            if any(d in path for d in digests):
                counts['digest_uploads'] += 1
        elif method == 'PATCH':
            counts['patches'] += 1
        elif method == 'POST' and 'mount=' in path:
            counts['mounts'] += 1
        elif method == 'POST' and '/blobs/uploads/' in path:
            counts['upload_posts'] += 1
    return counts


def main(argv):
    cmd = argv[1]
    if cmd == 'show':
        if len(argv) == 4:  # REG REPO:TAG
            repo, ref = argv[3].rsplit(':', 1) if '@' not in argv[3] else argv[3].split('@', 1)
            print(json.dumps(show(argv[2], repo, ref)))
        else:
            print(json.dumps(show(*argv[2:5])))
    elif cmd == 'variant':
        print(copy_image(argv[2], argv[3], argv[4], argv[5], argv[6], arch=argv[7],
                         variant=argv[8] if len(argv) > 8 else None))
    elif cmd == 'oci':
        print(copy_image(*argv[2:7], oci=True))
    elif cmd == 'index':
        print(make_index(argv[2], argv[3], argv[4], argv[5:]))
    elif cmd == 'logsize':
        print(os.path.getsize(argv[2]))
    elif cmd == 'logcount':
        print(json.dumps(log_count(argv[2], argv[3], argv[4], argv[5:])))
    else:
        raise SystemExit('unknown command %s' % cmd)


if __name__ == '__main__':
    main(sys.argv)
