# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure helpers of _docker.py used by container_recreate: recreate_body and demux_stream."""

from __future__ import annotations

from ansible_collections.mtd.containers.plugins.module_utils._docker import demux_stream, recreate_body

CONTAINER = {
    'Id': '0123456789abcdef' * 4,
    'Name': '/web-1',
    'Config': {
        'Hostname': '0123456789ab', 'Image': 'r.example/app:1',
        'Env': ['PATH=/bin', 'KEEP=me'], 'Cmd': ['app'], 'Entrypoint': None, 'WorkingDir': '/srv',
        'Labels': {'from.image': 'x', 'mtd.units': '3'},
    },
    'HostConfig': {'Binds': ['data:/data'], 'NetworkMode': 'none', 'Memory': 67108864},
    'Mounts': [
        {'Type': 'volume', 'Name': 'data', 'Destination': '/data', 'RW': True},
        {'Type': 'volume', 'Name': 'f00dcafe', 'Destination': '/cache', 'RW': True},
        {'Type': 'bind', 'Source': '/etc/x', 'Destination': '/x'},
    ],
    'NetworkSettings': {'Networks': {'none': {}}},
}
OLD_IMAGE = {'Env': ['PATH=/bin'], 'Cmd': ['app'], 'WorkingDir': '/srv', 'Labels': {'from.image': 'x'}}


def test_recreate_body_keeps_user_settings_and_all_volumes():
    body = recreate_body(CONTAINER, OLD_IMAGE, 'r.example/app@sha256:' + 'a' * 64)
    assert body['Image'] == 'r.example/app@sha256:' + 'a' * 64
    assert body['Env'] == ['KEEP=me']
    assert body['Labels'] == {'mtd.units': '3'}
    for key in ('Hostname', 'Cmd', 'WorkingDir'):
        assert key not in body
    assert body['HostConfig']['Binds'] == ['data:/data', 'f00dcafe:/cache']
    assert body['HostConfig']['Memory'] == 67108864
    assert 'NetworkingConfig' not in body


def test_recreate_body_user_command_and_network():
    container = dict(CONTAINER, Config=dict(CONTAINER['Config'], Cmd=['other']),
                     HostConfig={'NetworkMode': 'appnet'},
                     NetworkSettings={'Networks': {'appnet': {'Aliases': ['web', '0123456789ab']}}})
    body = recreate_body(container, OLD_IMAGE, 'img')
    assert body['Cmd'] == ['other']
    assert body['NetworkingConfig'] == {'EndpointsConfig': {'appnet': {'Aliases': ['web']}}}


def test_demux_stream():
    raw = b'\x01\x00\x00\x00\x00\x00\x00\x03out' + b'\x02\x00\x00\x00\x00\x00\x00\x04err!'
    assert demux_stream(raw) == b'outerr!'
    assert demux_stream(b'plain tty output') == b'plain tty output'
    assert demux_stream(b'') == b''
