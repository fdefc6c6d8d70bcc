# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every key a module puts into its result is documented in its RETURN (read from the source, statically).

Found: ``<x>.result[KEY] = ...``, ``<x>.result.update(KEY=..., {KEY: ...})``, ``<x>.result.setdefault(KEY, ...)``
and the dict literals a module's ``run()`` returns (the result run_module merges)."""

from __future__ import annotations

import ast
import pathlib

import pytest
import yaml

MODULES = pathlib.Path(__file__).resolve().parents[2] / 'plugins' / 'modules'
COMMON = {'changed', 'failed', 'msg', 'diff', 'warnings', 'invocation', 'ansible_facts', 'skipped'}


def _is_result(node):
    return isinstance(node, ast.Attribute) and node.attr == 'result'


def _dict_keys(node):
    return {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}


def result_keys(tree):
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_result(node.value) and isinstance(node.ctx, ast.Store):
            if isinstance(node.slice, ast.Constant):
                keys.add(node.slice.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_result(node.func.value):
            if node.func.attr == 'update':
                keys.update(kw.arg for kw in node.keywords if kw.arg)
                keys.update(k for a in node.args if isinstance(a, ast.Dict) for k in _dict_keys(a))
            elif node.func.attr == 'setdefault' and node.args and isinstance(node.args[0], ast.Constant):
                keys.add(node.args[0].value)
        elif isinstance(node, ast.FunctionDef) and node.name == 'run':
            keys.update(k for r in ast.walk(node) if isinstance(r, ast.Return) and isinstance(r.value, ast.Dict)
                        for k in _dict_keys(r.value))
    return keys - COMMON


def documented(tree):
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'RETURN':
            return set(yaml.safe_load(node.value.value) or {})
    return set()


@pytest.mark.parametrize('path', sorted(MODULES.glob('*.py')), ids=lambda p: p.stem)
def test_every_result_key_is_in_return(path):
    tree = ast.parse(path.read_text())
    missing = sorted(result_keys(tree) - documented(tree))
    assert not missing, '%s puts %s in its result without documenting them in RETURN' % (path.name, missing)


def test_the_check_sees_result_keys():
    tree = ast.parse('def run(mod):\n    mod.result["a"] = 1\n    mod.result.update(b=2, **{})\n'
                     '    mod.result.update({"c": 3})\n    return {"d": 4, "changed": True}\n')
    assert result_keys(tree) == {'a', 'b', 'c', 'd'}
