# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine version gates, with the versions the engines' trackers and Debian's archive name."""

from __future__ import annotations

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._versions import (
    cpu_refusal,
    criu_downgrade,
    criu_mismatch,
    engine_components,
    engine_refusal,
    host_versions,
    parse_version,
    release,
    runc_takes_criu_from_path,
    untested,
    version_gates,
)


@pytest.mark.parametrize('text, version', [
    ('20.10.24+dfsg1', (20, 10, 24)), ('26.1.5+dfsg1', (26, 1, 5)), ('1.7.24~ds1', (1, 7, 24)),
    ('v1.2.0-rc.1', (1, 2, 0)), ('4.1.1', (4, 1, 1)), ('28', (28,)), ('', None), (None, None), ('dev', None),
])
def test_parse_version(text, version):
    assert parse_version(text) == version


def test_release():
    assert release('27.5.1+dfsg4') == '27.5.1' and release('2.1.9+unknown') == '2.1.9' and release('x') is None


@pytest.mark.parametrize('version, mode, refused', [
    ('25.0.0', 'none', True), ('25.0.3', 'none', True), ('25.0.4', 'none', False), ('25.1.0', 'none', False),
    ('26.0.0', 'none', False), ('24.0.9', 'bridge', False), ('20.10.24+dfsg1', 'bridge', False),
    ('28.0.0', 'none', True), ('28.5.2+dfsg4', 'host', False), ('28.5.2+dfsg4', 'bridge', True),
    ('28.1.1', 'container:abc', True), ('28.1.1', None, True), ('27.5.1', 'bridge', False),
    ('29.0.0', 'bridge', False), (None, None, False), ('unknown', 'bridge', False),
])
def test_engine_refusal(version, mode, refused):
    assert bool(engine_refusal(version, mode)) is refused


def test_engine_refusal_names_the_fix():
    assert 'fixed in 25.0.4 and 26.0' in engine_refusal('25.0.1')
    said = engine_refusal('28.2.2', 'bridge')
    assert 'moby#50750' in said and '--network host' in said and 'network mode bridge' in said


@pytest.mark.parametrize('runc, result', [
    ('1.1.15+ds1', False), ('1.1.5', False), ('1.2.0', True), ('1.3.6+ds1', True), ('2.0.0', True), (None, None),
])
def test_runc_takes_criu_from_path(runc, result):
    assert runc_takes_criu_from_path(runc) is result


def test_criu_mismatch():
    checked = {'path': '/usr/local/sbin/criu'}
    # runc 1.1 runs the criu it is given: never a mismatch
    assert criu_mismatch({'version': '1.1.15', 'criu_path': '/usr/sbin/criu'}, checked) is None
    assert criu_mismatch({'version': '1.3.6', 'criu_path': '/usr/local/sbin/criu'}, checked) is None
    assert 'runs /usr/sbin/criu' in criu_mismatch({'version': '1.3.6', 'criu_path': '/usr/sbin/criu'}, checked)
    assert 'none is on the engine\'s PATH' in criu_mismatch({'version': '1.2.0', 'criu_path': None}, checked)
    # no CRIU checked at all is the base preflight's refusal, not this one's
    assert criu_mismatch({'version': '1.2.0', 'criu_path': None}, {'path': None}) is None


FACTS_26 = {'docker': {'version': '26.1.5+dfsg1', 'containerd': {'version': '1.7.24~ds1'},
                       'runc': {'version': '1.1.15+ds1', 'criu_path': '/usr/sbin/criu'}},
            'criu': {'version': '4.1.1', 'path': '/usr/sbin/criu'}}


def test_host_versions_and_untested():
    assert host_versions(FACTS_26) == {'engine': '26.1.5', 'containerd': '1.7.24', 'runc': '1.1.15', 'criu': '4.1.1'}
    assert host_versions({}) == {'engine': None, 'containerd': None, 'runc': None, 'criu': None}
    tested = {'engine': ['26.1.5'], 'containerd': ['1.7.24'], 'runc': ['1.1.5'], 'criu': ['4.1.1']}
    assert untested(FACTS_26, tested) == ['runc 1.1.15']
    assert untested(FACTS_26, {'engine': ['20.10.24']}) == ['engine 26.1.5']   # others not judged
    assert untested(FACTS_26, None) == []


def test_version_gates_over_both_hosts():
    broken = {'docker': {'version': '25.0.3', 'runc': {'version': '1.2.1', 'criu_path': '/usr/bin/criu'}},
              'criu': {'version': '4.1.1', 'path': '/usr/sbin/criu'}}
    gates = version_gates({'source': FACTS_26, 'target': broken}, 'none', {'engine': ['26.1.5']})
    assert [r.split(':')[0] for r in gates['refuse']] == ['target', 'target']
    assert gates['warn'] == ['target: no integration test has run engine 25.0.3']
    assert version_gates({'source': FACTS_26, 'target': {}}) == {'refuse': [], 'warn': []}


def test_engine_components_from_the_api():
    version = {'Components': [
        {'Name': 'Engine', 'Version': '26.1.5+dfsg1'},
        {'Name': 'containerd', 'Version': '1.7.24~ds1', 'Details': {'GitCommit': '1.7.24~ds1-6+deb13u1'}},
        {'Name': 'runc', 'Version': '1.1.15+ds1', 'Details': {'GitCommit': '1.1.15+ds1-2+b4'}}]}
    info = {'DefaultRuntime': 'runc', 'Runtimes': {'runc': {'path': 'runc'}, 'crun': {'path': '/usr/bin/crun'}}}
    assert engine_components(version, info) == {
        'containerd': {'version': '1.7.24~ds1', 'commit': '1.7.24~ds1-6+deb13u1'},
        'runc': {'version': '1.1.15+ds1', 'commit': '1.1.15+ds1-2+b4', 'path': 'runc'}}
    info['DefaultRuntime'] = 'crun'
    assert engine_components({}, info)['runc'] == {'version': None, 'commit': None, 'path': '/usr/bin/crun'}
    # an old engine without Components: the commits from /info
    assert engine_components({}, {'RuncCommit': {'ID': 'v1.0.0'}})['runc']['commit'] == 'v1.0.0'


@pytest.mark.parametrize('source, target, refused', [
    ('4.2.1', '4.1.1', True), ('4.1.1', '4.2.1', False), ('4.1.1', '4.1.0', False), ('4.1.1', '4.1.1', False),
    ('5.0', '4.2.1', False), (None, '4.1.1', False), ('4.2.1', None, False),
])
def test_criu_downgrade(source, target, refused):
    assert bool(criu_downgrade(source, target)) is refused


def test_version_gates_refuse_a_target_with_an_older_criu():
    newer = {'docker': {'version': '28.5.2', 'runc': {'version': '1.3.6', 'criu_path': '/usr/sbin/criu'}},
             'criu': {'version': '4.2.1', 'path': '/usr/sbin/criu'}}
    gates = version_gates({'source': newer, 'target': FACTS_26}, 'host')
    assert gates['refuse'] == ["target: the target's CRIU 4.1.1 is older than the source's 4.2.1, and images of a "
                               "newer CRIU failed to restore (vdso: ELF header magic mismatch): move it to a host "
                               "with CRIU 4.2 or newer"]
    assert version_gates({'source': FACTS_26, 'target': newer}, 'host')['refuse'] == []


# the lab's CPUs (2026-12-02): the machine (a Xeon with AVX-512) and its TCG guest (-cpu max without the AMD-only sets)
HOST_ISA = ['aes', 'avx', 'avx2', 'avx512bw', 'avx512f', 'avx512vl', 'gfni', 'sha_ni', 'sse4_2', 'xsavec']
VM_ISA = ['aes', 'avx', 'avx2', 'sse4_2', 'xsavec']


def test_cpu_refusal_of_a_target_without_the_sources_instruction_sets():
    reason = cpu_refusal(HOST_ISA, VM_ISA)
    assert reason.startswith("the target's CPU lacks instruction sets the source's CPU has "
                             "(avx512bw, avx512f, avx512vl, gfni, sha_ni)")
    assert cpu_refusal(VM_ISA, HOST_ISA) is None          # a subset may move up
    assert cpu_refusal(HOST_ISA, HOST_ISA) is None
    assert cpu_refusal(None, VM_ISA) is None and cpu_refusal(HOST_ISA, None) is None   # facts of an older collection


def test_version_gates_refuse_the_cpu_of_the_target():
    source = {'cpu': {'isa': HOST_ISA}}
    gates = version_gates({'source': source, 'target': {'cpu': {'isa': VM_ISA}}})
    assert len(gates['refuse']) == 1 and gates['refuse'][0].startswith("target: the target's CPU lacks")
    assert version_gates({'source': {'cpu': {'isa': VM_ISA}}, 'target': source})['refuse'] == []
