# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one way this collection runs a program: argv lists, ``LANG=C``, a time limit, the tail in failures.

This is a private module_utils file (leading underscore): its API may change without notice.
In the spirit of community.general's ``CmdRunner``, without its argument formatters: every caller builds
an argv list (never a shell string), the environment is the host's with ``LANG=C``/``LC_ALL=C`` (tools
answer in English, parsable), and a failed or overdue command becomes a ``CommandError`` whose message
names the program and whose details carry ``rc`` and the last lines of its output::

    runner = CmdRunner('/usr/local/sbin/criu')
    result = runner.run(['check'])                 # CmdResult(argv, rc, stdout, stderr, seconds)
    if not result.ok: ...
    runner.run(['dump', '-t', '42'], check=True)   # raises CommandError on rc != 0
    proc = runner.popen(['lazy-pages', ...])       # a long-running child with the same environment

Nothing here knows about Ansible: modules hand in the binary they resolved (``get_bin_path``) or a path.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence, Union

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError

TAIL_LINES = 25
C_LOCALE = {'LANG': 'C', 'LC_ALL': 'C', 'LC_MESSAGES': 'C'}


def output_tail(text: Optional[str], lines: int = TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of ``text``, joined with newlines."""
    kept = [line.rstrip() for line in (text or '').splitlines() if line.strip()]
    return '\n'.join(kept[-lines:])


def command_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The host's environment with the C locale (and ``extra``) for a child process."""
    env = dict(os.environ)
    env.update(C_LOCALE)
    env.update(extra or {})
    return env


class CommandError(MtdError):
    """A program could not be started, did not finish in time, or failed (``check=True``)."""

    prefix = ''


class CmdResult:
    """What a finished command left: argv, rc, stdout and stderr as text, and its wall time."""

    def __init__(self, argv: Sequence[str], rc: int, stdout: str, stderr: str, seconds: float) -> None:
        self.argv = list(argv)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def output(self) -> str:
        return '\n'.join(part for part in (self.stdout, self.stderr) if part)

    def tail(self, lines: int = TAIL_LINES) -> str:
        return output_tail(self.output, lines)

    def as_dict(self) -> Dict[str, Any]:
        return {'cmd': self.argv, 'rc': self.rc, 'stdout_tail': output_tail(self.stdout),
                'stderr_tail': output_tail(self.stderr)}

    def __iter__(self):
        """``rc, stdout, stderr = result`` (the shape of ``AnsibleModule.run_command``)."""
        return iter((self.rc, self.stdout, self.stderr))


class CmdRunner:
    """Runs one program with fixed leading arguments and environment."""

    def __init__(self, binary: str, prefix: Optional[Sequence[str]] = None,
                 env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None) -> None:
        self.binary = binary
        self.prefix = list(prefix or [])
        self.env = dict(env or {})
        self.timeout = timeout

    @property
    def name(self) -> str:
        return os.path.basename(self.binary)

    def argv(self, args: Sequence[Any]) -> List[str]:
        return [self.binary] + self.prefix + [str(arg) for arg in args]

    def run(self, args: Sequence[Any] = (), check: bool = False, timeout: Optional[float] = None,
            stdin: Union[None, int, IO[Any]] = None, data: Optional[bytes] = None,
            cwd: Optional[str] = None, what: Optional[str] = None) -> CmdResult:
        """Run to the end. ``check`` raises CommandError on a non-zero exit; ``what`` names the step."""
        argv = self.argv(args)
        limit = timeout if timeout is not None else self.timeout
        label = what or self.name
        started = time.time()
        try:
            proc = subprocess.run(argv, input=data, stdin=None if data is not None else stdin,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                  env=command_env(self.env), timeout=limit, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CommandError('%s did not finish within %s s.' % (label, limit), cmd=argv,
                               stdout_tail=output_tail(_text(exc.stdout)),
                               stderr_tail=output_tail(_text(exc.stderr)))
        except OSError as exc:
            raise CommandError('Cannot run %s: %s.' % (argv[0], exc), cmd=argv)
        result = CmdResult(argv, proc.returncode, _text(proc.stdout), _text(proc.stderr), time.time() - started)
        if check and not result.ok:
            tail = result.tail()
            raise CommandError('%s failed (rc=%d)%s' % (label, result.rc, ': ' + tail if tail else '.'),
                               **result.as_dict())
        return result

    def popen(self, args: Sequence[Any] = (), **kwargs: Any) -> subprocess.Popen:
        """Start without waiting (a daemon, a pipeline stage); same argv rules and environment."""
        argv = self.argv(args)
        kwargs.setdefault('env', command_env(self.env))
        try:
            return subprocess.Popen(argv, **kwargs)
        except OSError as exc:
            raise CommandError('Cannot run %s: %s.' % (argv[0], exc), cmd=argv)


def run(argv: Sequence[Any], **kwargs: Any) -> CmdResult:
    """``CmdRunner(argv[0]).run(argv[1:], **kwargs)`` for a one-off command."""
    return CmdRunner(str(argv[0])).run(list(argv[1:]), **kwargs)


def _text(data: Union[None, bytes, str]) -> str:
    if data is None:
        return ''
    if isinstance(data, bytes):
        return data.decode('utf-8', 'replace')
    return data
