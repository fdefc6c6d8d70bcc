# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_policy: what a migrated container may be (pure, worked configurations)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _policy as pol
from ansible_collections.mtd.containers.plugins.module_utils._migration import HOSTCONFIG_KEYS

# what capture_config gives for `docker run --network none -v data:/vol --mount type=tmpfs,dst=/scratch`
LAB = {
    'name': 'web', 'image': 'reg/app:1', 'config': {'Cmd': ['sh']},
    'host_config': {'NetworkMode': 'none', 'IpcMode': 'private', 'CgroupnsMode': 'host', 'Runtime': 'runc'},
    'mounts': [{'type': 'volume', 'name': 'data', 'destination': '/vol'},
               {'type': 'tmpfs', 'destination': '/scratch'}],
}


def with_host_config(**host_config):
    config = json.loads(json.dumps(LAB))
    config['host_config'].update(host_config)
    return config


def with_bind(source):
    config = json.loads(json.dumps(LAB))
    config['mounts'].append({'type': 'bind', 'source': source, 'destination': '/x'})
    return config


def violations(config, policy=None, **kwargs):
    return pol.policy_violations(config, policy, known_host_config=HOSTCONFIG_KEYS, **kwargs)


def test_a_plain_lab_container_passes_the_default_policy_on_cgroup_v1():
    assert violations(LAB, cgroup_version=1) == []


def test_host_cgroup_namespace_is_refused_where_it_is_not_the_engine_default():
    [msg] = violations(LAB, cgroup_version=2)
    assert 'CgroupnsMode host' in msg and 'host_namespaces' in msg
    assert violations(LAB, {'host_namespaces': ['cgroup']}, cgroup_version=2) == []


@pytest.mark.parametrize('host_config, needle, widened', [
    ({'PidMode': 'host'}, 'PidMode host', {'host_namespaces': ['pid']}),
    ({'IpcMode': 'host'}, 'IpcMode host', {'host_namespaces': ['ipc']}),
    ({'UTSMode': 'host'}, 'UTSMode host', {'host_namespaces': ['uts']}),
    ({'NetworkMode': 'host'}, 'NetworkMode host', {'host_namespaces': ['network']}),
    ({'Devices': [{'PathOnHost': '/dev/mem', 'PathInContainer': '/dev/mem', 'CgroupPermissions': 'rwm'}]},
     'device /dev/mem', {'devices': ['/dev/mem']}),
    ({'SecurityOpt': ['seccomp=unconfined']}, 'seccomp confinement off', {'unconfined': ['seccomp']}),
    ({'SecurityOpt': ['seccomp:unconfined']}, 'seccomp confinement off', {'unconfined': ['seccomp']}),
    ({'SecurityOpt': ['seccomp=' + json.dumps({'defaultAction': 'SCMP_ACT_ALLOW', 'syscalls': []})]},
     'seccomp confinement off', {'unconfined': ['seccomp']}),
    ({'SecurityOpt': ['apparmor=unconfined']}, 'apparmor confinement off', {'unconfined': ['apparmor']}),
    ({'SecurityOpt': ['label=disable']}, 'selinux confinement off', {'unconfined': ['selinux']}),
    ({'SecurityOpt': ['systempaths=unconfined']}, 'systempaths', {'unconfined': ['systempaths']}),
    ({'CapAdd': ['SYS_ADMIN']}, 'capabilities SYS_ADMIN', {'capabilities': list(pol.DEFAULT_CAPABILITIES) + ['SYS_ADMIN']}),
    ({'CapAdd': ['ALL']}, 'capabilities ALL', {'capabilities': ['ALL']}),
])
def test_each_item_is_refused_by_default_and_allowed_when_widened(host_config, needle, widened):
    config = with_host_config(**host_config)
    [msg] = violations(config, cgroup_version=1)
    assert needle in msg
    assert violations(config, widened, cgroup_version=1) == []


def test_the_issue_s_forged_configuration_gives_one_message_per_item():
    config = with_host_config(Privileged=True, PidMode='host', CapAdd=['ALL'], SecurityOpt=['seccomp=unconfined'],
                              Binds=['/:/host'])
    found = violations(config, cgroup_version=1)
    assert len(found) == 5, found
    assert found[0].startswith('Privileged (no policy allows it')
    assert violations(config, {'host_namespaces': list(pol.NAMESPACES), 'unconfined': list(pol.UNCONFINED),
                               'capabilities': ['ALL'], 'bind_prefixes': ['/']}, cgroup_version=2)[0] == found[0]
    assert any('bind mount of /' in m for m in found)


def test_capabilities_are_the_default_set_plus_added_minus_dropped():
    assert pol.effective_capabilities(None, None) == set(pol.DEFAULT_CAPABILITIES)
    assert pol.effective_capabilities(['cap_net_admin'], ['NET_RAW', 'MKNOD']) == \
        set(pol.DEFAULT_CAPABILITIES) - {'NET_RAW', 'MKNOD'} | {'NET_ADMIN'}
    assert pol.effective_capabilities(['CHOWN'], ['ALL']) == {'CHOWN'}
    # a narrower allow-list refuses default capabilities that were not dropped
    [msg] = violations(LAB, {'capabilities': ['CHOWN']}, cgroup_version=1)
    assert 'NET_RAW' in msg and 'CHOWN,' not in msg
    assert violations(with_host_config(CapDrop=['ALL'], CapAdd=['CHOWN']), {'capabilities': ['CHOWN']},
                      cgroup_version=1) == []


@pytest.mark.parametrize('source, prefixes, allowed', [
    ('/srv/app/data', ['/srv/app'], True),
    ('/srv/app', ['/srv/app/'], True),
    ('/srv/application', ['/srv/app'], False),      # a prefix is a directory, not a string prefix
    ('/srv/app/../../etc', ['/srv/app'], False),    # normalised before the check
    ('/opt/data', [], False),                       # no prefixes: no binds at all
    ('/', ['/'], False),                            # the root itself, whatever the prefixes
    ('/var/run/docker.sock', ['/'], False),         # the engine's socket
    ('/run', ['/'], False),                         # contains the engine's socket directory
    ('/proc/1/root', ['/'], False),
    ('/sys/fs/cgroup/memory', ['/'], False),
    ('/var/lib/mtd-lab/lab-1/docker.sock', ['/var/lib/mtd-lab'], False),   # protected= adds this host's socket
    ('relative/path', ['/'], False),
])
def test_bind_sources(source, prefixes, allowed):
    found = violations(with_bind(source), {'bind_prefixes': prefixes}, cgroup_version=1,
                       protected=['/var/lib/mtd-lab/lab-1/docker.sock'])
    assert (found == []) == allowed, found


def test_binds_given_as_host_config_binds_are_checked_too_and_volume_names_are_not_binds():
    assert violations(with_host_config(Binds=['data:/vol', '/opt/data:/d:ro']), cgroup_version=1) == \
        ['bind mount of /opt/data is outside the allowed prefixes [] (policy.bind_prefixes)']


@pytest.mark.parametrize('config, needle', [
    (with_host_config(PidMode='container:abc'), 'joins another container'),
    (with_host_config(NetworkMode='bridge'), 'only none'),
    (with_host_config(Runtime='kata'), 'runtime kata'),
    (with_host_config(Mounts=[{'Type': 'bind', 'Source': '/'}]), 'HostConfig keys Mounts'),
    (dict(LAB, mounts=[{'type': 'npipe'}]), "mount of type 'npipe'"),
    ('not a dict', 'not a dictionary'),
    (dict(LAB, host_config=['x']), 'host_config is not a dictionary'),
])
def test_structure(config, needle):
    found = violations(config, {'host_namespaces': list(pol.NAMESPACES)}, cgroup_version=1)
    assert any(needle in m for m in found), found


def test_default_policy_matches_the_spec_and_the_message_names_the_fix():
    assert pol.default_policy() == {'host_namespaces': [], 'devices': [], 'unconfined': [],
                                    'capabilities': list(pol.DEFAULT_CAPABILITIES), 'bind_prefixes': []}
    msg = pol.policy_message('web', 'lab-2', ['Privileged (no policy allows it)'])
    assert msg.startswith('The configuration of web is refused by the migration policy on lab-2: Privileged')
    assert 'migrate_policy_' in msg


def test_engine_paths_and_cgroup_version_from_the_engine():
    assert pol.engine_paths('unix:///var/lib/mtd-lab/lab-1//docker.sock', '/var/lib/mtd-lab/lab-1/var-lib-docker') == \
        ['/var/lib/mtd-lab/lab-1/docker.sock', '/var/lib/mtd-lab/lab-1/var-lib-docker']
    assert pol.engine_paths('tcp://127.0.0.1:2375', None) == []
    assert pol.cgroup_version({'CgroupVersion': '1'}) == 1
    assert pol.cgroup_version({}) is None and pol.cgroup_version({'CgroupVersion': 'x'}) is None


@pytest.mark.parametrize('reference, registry', [
    ('127.0.0.1:5000/mtd/busybox@sha256:' + 'a' * 64, '127.0.0.1:5000'),
    ('busybox', 'docker.io'),
    ('library/busybox:1', 'docker.io'),
    ('localhost/app', 'localhost'),
    ('Registry.Example.com/app', 'registry.example.com'),
])
def test_reference_registry(reference, registry):
    assert pol.reference_registry(reference) == registry


def test_same_registry():
    assert pol.same_registry('docker.io', 'index.docker.io')
    assert pol.same_registry('127.0.0.1:5000', 'https://127.0.0.1:5000/')
    assert not pol.same_registry('127.0.0.1:5000', '127.0.0.1')
    assert not pol.same_registry('evil.example.com', 'registry.example.com')
