# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shape the collection keeps (docs/architecture.md): checked on the source, so that it stays that way."""

from __future__ import annotations

import ast
import pathlib

import pytest

PLUGINS = pathlib.Path(__file__).resolve().parents[2] / 'plugins'
MAX_LINES = 80
SOURCES = sorted(PLUGINS.rglob('*.py'))


def _tree(path):
    return ast.parse(path.read_text(), filename=str(path))


def _functions(path):
    lines = path.read_text().splitlines()
    for node in ast.walk(_tree(path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            above = lines[first - 2].strip() if first >= 2 else ''
            yield node, node.end_lineno - node.lineno + 1, above


def test_there_are_sources():
    assert len(SOURCES) > 30


@pytest.mark.parametrize('path', SOURCES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_no_function_is_longer_than_80_lines_without_a_reason(path):
    long_ones = ['%s (%d lines, line %d)' % (node.name, length, node.lineno)
                 for node, length, above in _functions(path)
                 if length > MAX_LINES and not above.startswith('#')]
    assert not long_ones, ('functions over %d lines need a one-line comment above saying why: %s'
                           % (MAX_LINES, ', '.join(long_ones)))


def test_only_the_module_runtime_ends_a_module():
    callers = sorted(str(p.relative_to(PLUGINS)) for p in SOURCES
                     if 'fail_json(' in p.read_text() or 'exit_json(' in p.read_text())
    assert callers == ['module_utils/_module.py']


def test_every_module_main_is_one_run_module_call():
    for path in sorted((PLUGINS / 'modules').glob('*.py')):
        tree = _tree(path)
        mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == 'main']
        if not mains:   # documentation stub of an action plugin
            continue
        body = mains[0].body
        assert len(body) == 1, '%s: main() has %d statements' % (path.name, len(body))
        call = body[0].value if isinstance(body[0], ast.Expr) else None
        assert isinstance(call, ast.Call) and getattr(call.func, 'id', None) == 'run_module', path.name


def test_every_collection_exception_derives_from_mtd_error():
    found = []
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef):
                bases = [getattr(b, 'id', getattr(b, 'attr', '')) for b in node.bases]
                if node.name.endswith(('Error', 'Failure')) or 'Exception' in bases:
                    found.append((str(path.relative_to(PLUGINS)), node.name, bases))
    assert len(found) >= 8
    for where, name, bases in found:
        if name == 'MtdError':
            assert where == 'module_utils/_common.py' and bases == ['Exception']
        else:
            assert 'Exception' not in bases and any(b.endswith('Error') for b in bases), (where, name, bases)


_RUNNERS = {('subprocess', 'run'), ('subprocess', 'Popen'), ('subprocess', 'call'), ('subprocess', 'check_call'),
            ('subprocess', 'check_output'), ('os', 'system'), ('os', 'popen'), ('os', 'execv'), ('os', 'execvp')}


def _starts_programs(path):
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = getattr(node.func.value, 'id', None)
            if (owner, node.func.attr) in _RUNNERS or node.func.attr == 'run_command':
                yield node.lineno


def test_programs_are_run_only_by_the_command_runner():
    users = dict((str(p.relative_to(PLUGINS)), list(_starts_programs(p))) for p in SOURCES)
    users = dict((k, v) for k, v in users.items() if v)
    # the confine launcher execs the confined command itself, after installing the filter: that is its job
    assert sorted(users) in (['module_utils/_cmd.py'], ['module_utils/_cmd.py', 'module_utils/_confine_launcher.py']), users


def test_test_files_have_unique_names():
    """make test collects tests/unit and tests/integration in one pytest session without packages: two test
    files of one name stop the whole collection ("import file mismatch")."""
    tests = pathlib.Path(__file__).resolve().parents[1]
    seen = {}
    for path in sorted(tests.rglob('test_*.py')):
        seen.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
