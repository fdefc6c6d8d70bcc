# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running a module's main() in a unit test: its arguments handed over the way ansible-core does it, and
exit_json/fail_json turned into exceptions that carry the result.

Shared by the module tests (and migration_fakes.py); import it as
``ansible_collections.mtd.containers.tests.unit.plugins.modules.module_harness``.
"""

from __future__ import annotations

import contextlib
import json
import socket
from unittest import mock

import pytest
from ansible.module_utils import basic


class AnsibleExitJson(Exception):
    """exit_json was called; the result is in ``args[0]``."""


class AnsibleFailJson(Exception):
    """fail_json was called; the result is in ``args[0]`` (with ``failed=True`` and ``msg``)."""


@contextlib.contextmanager
def set_module_args(args):
    """Hand ``args`` to the next AnsibleModule, the way ansible-core passes them to a module."""
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # ansible-core < 2.19
        patch_module_args = None
    if patch_module_args is not None:
        with patch_module_args(args):
            yield
    else:
        payload = json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode('utf-8')
        with mock.patch.object(basic, '_ANSIBLE_ARGS', payload):
            yield


def exit_functions(default_changed=True):
    """Replacements for AnsibleModule.exit_json and fail_json, by name.

    ``default_changed``: exit_json fills in ``changed=False`` when the module leaves it out (as the executor
    does); False hands the result over exactly as the module gave it.
    """
    def exit_json(self, **kwargs):
        if default_changed:
            kwargs.setdefault('changed', False)
        raise AnsibleExitJson(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs.update(failed=True, msg=msg)
        raise AnsibleFailJson(kwargs)

    return {'exit_json': exit_json, 'fail_json': fail_json}


def patch_exits(monkeypatch, default_changed=True):
    """Turn AnsibleModule.exit_json/fail_json into AnsibleExitJson/AnsibleFailJson for the rest of a test."""
    for name, function in exit_functions(default_changed).items():
        monkeypatch.setattr(basic.AnsibleModule, name, function)


@pytest.fixture
def module_exits(monkeypatch):
    """``patch_exits`` as a fixture (import it into a test file to use it)."""
    patch_exits(monkeypatch)


def run_module(main, args, expect_failure=False, warnings=None, default_changed=True):
    """Run ``main()`` with ``args``; return the result it exits with.

    ``expect_failure``: False wants exit_json, True wants fail_json, None takes either. ``warnings``: a list
    that collects the messages of ``module.warn()``. ``default_changed``: see ``exit_functions``.
    """
    patches = exit_functions(default_changed)
    if warnings is not None:
        patches['warn'] = lambda self, msg: warnings.append(msg)
    if expect_failure is None:
        expected = (AnsibleExitJson, AnsibleFailJson)
    else:
        expected = AnsibleFailJson if expect_failure else AnsibleExitJson
    with set_module_args(args), mock.patch.multiple(basic.AnsibleModule, **patches):
        with pytest.raises(expected) as info:
            main()
    return info.value.args[0]


def free_port():
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
