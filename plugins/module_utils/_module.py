# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one runtime of every mtd.containers module: options in, one result, one error path out.

This is a private module_utils file (leading underscore): its API may change without notice.

A module's ``main()`` is its argument spec as data plus one call::

    ARGUMENT_SPEC = dict(container=dict(type='str', required=True), ...)

    def run(mod):                       # mod is an MtdModule
        inspect = mod.docker.inspect_container(mod.params['container'])
        mod.result['id'] = inspect['Id']
        if not mod.check_mode:
            ...
        mod.result['changed'] = True
        mod.set_diff({'state': before}, {'state': after})

    def main():
        run_module(run, ARGUMENT_SPEC, docker=True, required_if=[('state', 'present', ('image',))])

What ``run_module`` guarantees:

- ``run`` raises ``MtdError`` (or a subclass) to fail: the module then ends with
  ``fail_json(msg=<the sentence>, **result, **details)``; nothing else calls ``fail_json``;
- anything else that escapes ``run`` still ends as a clear failure (``Unexpected <Type> in <module>:
  <text>``, the traceback under ``exception``), never as a bare traceback;
- cleanups registered with ``add_cleanup`` run on every exit, in reverse order, and
  ``add_failure_details`` callables add keys (timings, request counts) to a failure result only;
- ``docker=True`` merges the connection options of the ``mtd.containers.docker`` doc fragment and gives
  ``mod.docker``, a client created on first use (bad connection options are an ``MtdError``).
"""

from __future__ import annotations

import traceback
from typing import Any, Callable, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError


class MtdModule:
    """One run of a module: the AnsibleModule, its params, check/diff mode and the result being built."""

    def __init__(self, argument_spec: Dict[str, Any], docker: bool = False, supports_check_mode: bool = True,
                 **module_kwargs: Any) -> None:
        spec: Dict[str, Any] = {}
        if docker:
            from ansible_collections.mtd.containers.plugins.module_utils._docker import docker_argument_spec
            spec.update(docker_argument_spec())
        spec.update(argument_spec)
        self.module = AnsibleModule(argument_spec=spec, supports_check_mode=supports_check_mode, **module_kwargs)
        self.params: Dict[str, Any] = self.module.params
        self.check_mode: bool = bool(self.module.check_mode)
        self.diff_mode: bool = bool(getattr(self.module, '_diff', False))
        self.result: Dict[str, Any] = {'changed': False}
        self._docker: Optional[Any] = None   # a _docker.DockerClient, created on first use
        self._cleanups: List[Callable[[], None]] = []
        self._failure_details: List[Callable[[], Dict[str, Any]]] = []

    # -- clients -----------------------------------------------------------------------------------

    @property
    def docker(self):
        """The Docker Engine client of the connection options (created on first use, connects lazily)."""
        if self._docker is None:
            from ansible_collections.mtd.containers.plugins.module_utils._docker import client_from_params
            self._docker = client_from_params(self.params)
        return self._docker

    # -- result ------------------------------------------------------------------------------------

    def set_diff(self, before: Any, after: Any) -> None:
        """``diff: {before, after}`` in the result, only when the user asked for a diff."""
        if self.diff_mode:
            self.result['diff'] = {'before': before, 'after': after}

    def warn(self, text: str) -> None:
        self.module.warn(text)

    def add_cleanup(self, function: Callable[[], None]) -> None:
        """Run ``function`` when the module ends, whatever way it ends (last added runs first)."""
        self._cleanups.append(function)

    def add_failure_details(self, function: Callable[[], Dict[str, Any]]) -> None:
        """Merge what ``function`` returns into the result of a failure (not of a success)."""
        self._failure_details.append(function)

    # -- ending --------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the result, cleanups, failure details and client so far (a forked child that starts a run of
        its own: the parent's connection and cleanups stay the parent's)."""
        self.result = {'changed': False}
        self._docker = None
        self._cleanups = []
        self._failure_details = []

    def close(self) -> None:
        while self._cleanups:
            function = self._cleanups.pop()
            try:
                function()
            except Exception as exc:  # pylint: disable=broad-exception-caught
                self.module.warn('A cleanup step failed: %s' % (exc,))

    def failure_result(self, details: Dict[str, Any]) -> Dict[str, Any]:
        result = dict(self.result)
        for function in self._failure_details:
            try:
                result.update(function() or {})
            except Exception:  # pylint: disable=broad-exception-caught
                pass
        result.update(details)
        result.pop('msg', None)
        result.pop('failed', None)
        return result

    def fail(self, msg: str, **details: Any) -> None:
        """End the module as failed: ``msg`` plus the result so far plus ``details``. Does not return."""
        self.module.fail_json(msg=msg, **self.failure_result(details))

    def exit(self) -> None:
        self.module.exit_json(**self.result)


class Worker:
    """Base of a module's worker class: the run's MtdModule and its parts under short names, and the
    per-phase timings (``timings``) that long operations report."""

    def __init__(self, mod: MtdModule) -> None:
        self.mod = mod
        self.module = mod.module
        self.p: Dict[str, Any] = mod.params
        self.result: Dict[str, Any] = mod.result
        self.timings: Dict[str, Any] = {}


def error_message(exc: BaseException, where: str) -> str:
    """The one sentence a failure shows: the MtdError's own, or a clear one for anything unexpected."""
    if isinstance(exc, MtdError):
        return exc.prefix + exc.msg if not exc.msg.startswith(exc.prefix) else exc.msg
    text = str(exc) or repr(exc)
    return 'Unexpected %s in %s: %s' % (type(exc).__name__, where, text)


def run_module(run: Callable[[MtdModule], Optional[Dict[str, Any]]], argument_spec: Dict[str, Any],
               docker: bool = False, supports_check_mode: bool = True, **module_kwargs: Any) -> None:
    """Build the module, call ``run(mod)``, end it through one success path and one error path.

    ``run`` may return a dict: it is merged into ``mod.result``. ``module_kwargs`` go to AnsibleModule
    (``mutually_exclusive``, ``required_if``, ``required_by``, ``required_one_of`` ...).
    """
    run_with(MtdModule(argument_spec, docker=docker, supports_check_mode=supports_check_mode, **module_kwargs), run)


def run_with(mod: MtdModule, run: Callable[[MtdModule], Optional[Dict[str, Any]]]) -> None:
    """``run(mod)`` and the module's one success path or one error path (exit_json / fail_json, which end the
    process with SystemExit)."""
    failure = None
    try:
        returned = run(mod)
        if returned:
            mod.result.update(returned)
    except MtdError as exc:
        failure = (error_message(exc, mod.module._name), dict(exc.details))
    except Exception as exc:  # pylint: disable=broad-exception-caught
        failure = (error_message(exc, mod.module._name), {'exception': traceback.format_exc()})
    finally:
        mod.close()
    if failure is not None:
        mod.fail(failure[0], **failure[1])
    mod.exit()
