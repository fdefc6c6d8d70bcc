# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the collection ships: the tarball's file list, its metadata, and the action group against the README."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAX_TARBALL_BYTES = 1024 * 1024
# top-level entries of the tarball: everything else (lab/, bench/, scripts/, Makefile, ansible.cfg, virtualenvs,
# .build, dotfiles, test output) stays out
SHIPPED = {'COPYING', 'FILES.json', 'MANIFEST.json', 'README.md', 'bindep.txt', 'changelogs', 'docs', 'extensions',
           'meta', 'playbooks', 'plugins', 'requirements-host.txt', 'requirements.txt', 'roles', 'tests'}
MODULES = sorted(p.stem for p in (ROOT / 'plugins' / 'modules').glob('*.py') if p.stem != '__init__')


def _galaxy_bin():
    candidate = pathlib.Path(sys.executable).parent / 'ansible-galaxy'
    return str(candidate) if candidate.exists() else 'ansible-galaxy'


@pytest.fixture(scope='module')
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp('build')
    subprocess.run([_galaxy_bin(), 'collection', 'build', '--output-path', str(out), str(ROOT)],
                   check=True, capture_output=True, text=True, timeout=300)
    built = list(out.glob('mtd-containers-*.tar.gz'))
    assert len(built) == 1, built
    return built[0]


def test_the_tarball_ships_the_collection_and_nothing_of_the_development_tree(tarball):
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    top = {n.split('/')[0] for n in names}
    assert top == SHIPPED, 'unexpected: %s, missing: %s' % (sorted(top - SHIPPED), sorted(SHIPPED - top))
    assert not [n for n in names if any(part.startswith('.') for part in n.split('/'))], 'dotfiles in the tarball'
    assert not [n for n in names if '__pycache__' in n or n.endswith('.pyc') or n.startswith('tests/output')]
    for needed in ['plugins/modules/checkpoint.py', 'plugins/lookup/output_dir.py', 'playbooks/plan.yml',
                   'playbooks/templates/migration_summary.j2', 'roles/migrate/meta/argument_specs.yml',
                   'meta/runtime.yml', 'docs/docsite/extra-docs.yml', 'docs/docsite/links.yml']:
        assert needed in names, needed
    assert tarball.stat().st_size < MAX_TARBALL_BYTES, '%d bytes' % tarball.stat().st_size


def test_the_license_text_is_shipped_and_named_in_galaxy_yml():
    galaxy = yaml.safe_load((ROOT / 'galaxy.yml').read_text())
    assert galaxy['license'] == ['GPL-3.0-or-later']
    text = (ROOT / 'COPYING').read_text()
    assert 'GNU GENERAL PUBLIC LICENSE' in text and 'Version 3, 29 June 2007' in text


def test_galaxy_metadata_is_complete():
    galaxy = yaml.safe_load((ROOT / 'galaxy.yml').read_text())
    for key in ('namespace', 'name', 'version', 'readme', 'authors', 'description', 'license', 'tags',
                'repository', 'documentation', 'homepage', 'issues', 'build_ignore'):
        assert galaxy.get(key), key
    assert all(re.fullmatch(r'[a-z0-9_]+', t) for t in galaxy['tags']) and len(galaxy['tags']) <= 20


def _readme_table_names():
    names = {}
    for line in (ROOT / 'README.md').read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 3 and cells[0].startswith('`mtd.containers.'):
            for name in re.findall(r'`mtd\.containers\.([a-z_]+)`', cells[0]):
                names.setdefault(name, set()).add(cells[1])
    return names


def test_every_module_is_in_the_action_group_and_in_the_readme_table():
    runtime = yaml.safe_load((ROOT / 'meta' / 'runtime.yml').read_text())
    group = runtime['action_groups']['mtd']
    assert sorted(group) == MODULES, 'action group %s, modules %s' % (group, MODULES)
    table = _readme_table_names()
    missing = [m for m in MODULES if not table.get(m, set()) & {'module', 'action'}]
    assert not missing, 'modules missing in the README content table: %s' % missing
    assert 'group/mtd.containers.mtd' in (ROOT / 'README.md').read_text()
