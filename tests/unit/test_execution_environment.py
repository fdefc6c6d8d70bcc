# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The execution environment: `ansible-builder create` makes a build context from extensions/ee with this
collection in it, and the collection's own EE dependencies (meta/) name what the modules need, the managed
hosts' programs under the bindep profile managed-host (so an execution environment never installs them).

Building the image itself (`ansible-builder build`) needs the base image from a registry, which this machine
cannot reach: extensions/ee/README.md describes that step.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re
import shutil
import subprocess
import tarfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = ROOT / '.venv' / 'bin'
EE = ROOT / 'extensions' / 'ee'
GALAXY = yaml.safe_load((ROOT / 'galaxy.yml').read_text())
TARBALL = 'mtd-containers-%s.tar.gz' % GALAXY['version']
# program the modules run on a managed host -> where the source calls it
HOST_PROGRAMS = {
    'tar': ('plugins/module_utils/_bundle.py', "CmdRunner('tar')"),
    'zstd': ('plugins/module_utils/_transfer.py', "'zstd': (['zstd'"),
    'gzip': ('plugins/module_utils/_transfer.py', "'gzip': (['gzip'"),
    'openssl': ('plugins/module_utils/_criu.py', "openssl: str = 'openssl'"),
    'criu': ('plugins/module_utils/_criu.py', "get_bin_path('criu'"),
    'runc': ('plugins/module_utils/_criu.py', "get_bin_path('runc'"),
}


def run(*argv, cwd=None):
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    command = ' '.join(str(a) for a in argv)
    assert proc.returncode == 0, '%s failed (rc=%d):\n%s\n%s' % (command, proc.returncode, proc.stdout[-4000:],
                                                                 proc.stderr[-4000:])
    return proc.stdout


@pytest.fixture(scope='module')
def context(tmp_path_factory):
    """extensions/ee with the collection tarball next to it, and the context `ansible-builder create` makes."""
    if not (BIN / 'ansible-builder').exists():
        pytest.fail('ansible-builder is not installed in .venv (requirements.txt lists it): run `make setup`')
    tmp = tmp_path_factory.mktemp('ee')
    shutil.copytree(EE, tmp / 'ee')
    run(BIN / 'ansible-galaxy', 'collection', 'build', '--force', '--output-path', tmp / 'ee', ROOT)
    out = run(BIN / 'ansible-builder', 'create', '-f', tmp / 'ee' / 'execution-environment.yml',
              '-c', tmp / 'context', '--output-filename', 'Containerfile', cwd=tmp)
    assert 'Complete!' in out, out
    return tmp


def test_definition_is_version_3():
    ee = yaml.safe_load((EE / 'execution-environment.yml').read_text())
    assert ee['version'] == 3
    assert ee['images']['base_image']['name']
    assert set(ee['dependencies']) >= {'galaxy', 'python', 'system', 'ansible_core', 'ansible_runner'}
    core = ee['dependencies']['ansible_core']['package_pip']
    pinned = next(line for line in (ROOT / 'requirements.txt').read_text().splitlines() if line.startswith('ansible-core=='))
    assert core == pinned, 'the execution environment and the test venv run different ansible-core versions'


def test_requirements_name_this_version():
    collections = yaml.safe_load((EE / 'requirements.yml').read_text())['collections']
    assert collections == [{'name': '/build/collections/' + TARBALL, 'type': 'file'}]


def test_context_has_containerfile_requirements_and_the_collection(context):
    ctx = context / 'context'
    containerfile = (ctx / 'Containerfile').read_text()
    base = yaml.safe_load((EE / 'execution-environment.yml').read_text())['images']['base_image']['name']
    assert 'ARG EE_BASE_IMAGE="%s"' % base in containerfile
    assert 'ansible-galaxy collection install' in containerfile and '-r requirements.yml' in containerfile
    assert 'introspect.py introspect' in containerfile      # the collections' own EE dependencies are read
    assert 'ANSIBLE_INSTALL_REFS="ansible-core==' in containerfile
    for name in ('requirements.txt', 'bindep.txt', 'requirements.yml'):
        assert (ctx / '_build' / name).read_text() == (EE / name).read_text(), name
    tarball = ctx / '_build' / 'collections' / TARBALL
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile('MANIFEST.json'))['collection_info']
        names = set(tar.getnames())
    assert (manifest['namespace'], manifest['name'], manifest['version']) == ('mtd', 'containers', GALAXY['version'])
    assert {'meta/execution-environment.yml', 'meta/ee-requirements.txt', 'meta/ee-bindep.txt'} <= names
    assert {'playbooks/%s.yml' % p for p in ('plan', 'migrate', 'defend', 'confine', 'rebase_rollout')} <= names


def test_introspection_reads_the_collection_dependencies(context):
    """What the builder stage computes: the installed collection's meta/ files, merged with the EE's own."""
    collections = context / 'collections'
    run(BIN / 'ansible-galaxy', 'collection', 'install', '--force', '-p', collections, context / 'ee' / TARBALL)
    out = yaml.safe_load(run(BIN / 'ansible-builder', 'introspect', '--user-bindep', EE / 'bindep.txt',
                             '--user-pip', EE / 'requirements.txt', collections))
    system = out['system']
    assert any(line.startswith('openssh-clients [platform:rpm]') and line.endswith('# from collection mtd.containers')
               for line in system), system
    assert any(line.startswith('criu [managed-host]') for line in system), system
    assert out.get('python') in (None, [], {}) or not [p for p in out['python'] if 'mtd.containers' in p], out


@functools.lru_cache(maxsize=None)
def _bindep(*profiles):
    """The packages bindep selects on this machine (Debian) for ``profiles``; bindep is slow, so once each."""
    return run(BIN / 'bindep', '-l', 'newline', '-f', ROOT / 'meta' / 'ee-bindep.txt', *profiles).split()


@pytest.mark.parametrize('program', sorted(HOST_PROGRAMS))
def test_every_program_the_modules_run_is_a_managed_host_package(program):
    path, call = HOST_PROGRAMS[program]
    assert call in (ROOT / path).read_text(), 'the modules no longer call %s this way (%s): update the list' % (program, path)
    assert program in _bindep('managed-host'), '%s is missing from meta/ee-bindep.txt' % program
    assert program not in _bindep(), '%s would be installed into the execution environment' % program


def test_the_execution_environment_gets_only_the_controller_side():
    controller = _bindep()
    assert controller == ['openssh-client'] or controller == ['openssh-clients'], controller
    lines = [line for line in (ROOT / 'meta' / 'ee-bindep.txt').read_text().splitlines() if line and not line.startswith('#')]
    for line in lines:
        profiles = set(re.search(r'\[(.*)\]', line).group(1).split())
        assert 'managed-host' in profiles or profiles & {'platform:dpkg', 'platform:rpm'}, line
    meta = yaml.safe_load((ROOT / 'meta' / 'execution-environment.yml').read_text())
    assert meta['dependencies'] == {'python': 'meta/ee-requirements.txt', 'system': 'meta/ee-bindep.txt'}
    python = [line for line in (ROOT / 'meta' / 'ee-requirements.txt').read_text().splitlines()
              if line.strip() and not line.startswith('#')]
    assert python == [], 'the plugins use the standard library only; a Python package here needs a reason'
