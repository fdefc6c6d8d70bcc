# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every runc and CRIU invocation of this collection, and the options CRIU gets.

This is a private module_utils file (leading underscore): its API may change without notice. Python 3.8+.
Every program runs through ``_cmd.CmdRunner`` (argv lists, never a shell; ``LANG=C``); results keep rc,
stdout and stderr, and failures carry the tail of CRIU's log, so that callers can show the real cause.

The two CRIU paths of a migration, and why they differ:

- **Capture goes through the engine's runc.** ``Runc.checkpoint`` runs ``runc --root <the engine's runc
  state> --criu <criu> checkpoint --image-path <bundle>/criu --work-path ... --leave-running <id>``
  (``Runc.checkpoint_lazy`` adds ``--lazy-pages --page-server --status-fd`` for post-copy). Docker's own
  ``POST /containers/{id}/checkpoints`` would pass the images through containerd's content store and is
  several times slower; runc on the engine's state directory dumps straight into the bundle, inside the
  freeze, and the engine keeps the container as it was (paused, ours to resume for a rollback).
- **Restore goes through the engine** (``docker start --checkpoint NAME``, an Engine API call that the
  restore module makes inside ``start_from_checkpoint``): only the engine can build the container's
  runtime around the restored processes (containerd task, mounts, cgroups, its own records); a runc
  restore beside the engine would leave a container the engine does not know. The engine, though,
  passes the checkpoint directory through containerd's content store as a tar stream, twice. With
  ``image_delivery: direct`` CRIU therefore reads the images straight from the bundle: the engine's
  checkpoint directory gets only runc's ``descriptors.json``, and ``restore_options`` puts
  ``images-dir``/``work-dir`` (pointing into the bundle) into ``/etc/criu/runc.conf``, the file runc
  hands CRIU (``RuncCriuOptions``, written and removed under a host-wide lock that the dump takes too).
- **Post-copy** adds a page server to the dump and ``criu lazy-pages`` (``start_lazy_pages_daemon``) on
  the target, over mutual TLS with pinned self-signed certificates (``make_tls_identity``).

Outputs of CRIU 4.1.1 this code reads (``criu`` writes its verdicts to stdout, warnings and errors to
stderr)::

    criu --version                            rc 0  stdout "Version: 4.1.1"
    criu check                                rc 0  stdout "Looks good."
    criu check --feature uffd-noncoop         rc 0  stdout "uffd-noncoop is supported"
    criu check --feature mem_dirty_track      rc 1  stderr "Warn (criu/cr-check.c:824): Dirty tracking is OFF. ..."
    criu check --feature nosuch               rc 1  stderr "Error (criu/cr-check.c:1866): Unknown feature nosuch"
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.mtd.containers.plugins.module_utils._cmd import CmdResult, CmdRunner, CommandError, output_tail
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError, acquire_lock
from ansible_collections.mtd.containers.plugins.module_utils._files import (
    atomic_write,
    make_private_dir,
    read_tail,
)

# Where CRIU and runc are usually installed, besides PATH (a source build installs to /usr/local/sbin).
CRIU_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin']
SBIN_DIRS = CRIU_DIRS
TAIL_LINES = 20

# Where Docker's runc keeps its state (``runc --root``), relative to the engine's exec-root.
RUNC_ROOTS = ['/run/docker/runtime-runc/moby', '/var/run/docker/runtime-runc/moby', '/run/containerd/runc/moby']

_VERSION_RE = re.compile(r'^\s*Version:\s*(\S+)', re.MULTILINE)


class CriuError(MtdError):
    """CRIU or runc is missing or a command failed; ``result`` is the CriuResult when a command ran."""

    def __init__(self, msg, result=None, **details):
        super().__init__(msg, **details)
        self.result = result


def log_seconds(path: str) -> Optional[float]:
    """The timestamp of the last timed line of a CRIU log ("(00.621177) ..."): CRIU's own duration."""
    last = None
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith('(') and ')' in line:
                    try:
                        last = float(line[1:line.index(')')])
                    except ValueError:
                        continue
    except (IOError, OSError):
        return None
    return last


# ---------------------------------------------------------------------------------------------------
# The criu command line (read-only commands: version, check, features)

class CriuResult(CmdResult):
    """A finished criu command (``_cmd.CmdResult``) whose output reads stderr first, as CRIU writes it."""

    def __init__(self, cmd: Sequence[str], rc: int, stdout: Optional[str], stderr: Optional[str],
                 seconds: float = 0.0) -> None:
        super().__init__(cmd, rc, stdout or '', stderr or '', seconds)

    @property
    def cmd(self) -> List[str]:
        return self.argv

    @property
    def output(self) -> str:
        """stderr then stdout: CRIU prints warnings to stderr before its verdict on stdout."""
        return '\n'.join(part for part in (self.stderr.strip(), self.stdout.strip()) if part)

    def tail(self, lines: int = TAIL_LINES) -> str:
        return output_tail(self.output, lines)

    def as_dict(self) -> Dict[str, Any]:
        """For a module's failure result (the whole output: criu's answers are short)."""
        return {'cmd': self.argv, 'rc': self.rc, 'stdout': self.stdout, 'stderr': self.stderr}


def find_criu(module, path: Optional[str] = None) -> Optional[str]:
    """Absolute path of the criu binary, or None when it cannot be found.

    With ``path`` given, that file must exist and be executable (CriuError otherwise); else
    ``criu`` is searched in PATH and :data:`CRIU_DIRS` (``module.get_bin_path``).
    """
    if path:
        if not os.path.isfile(path):
            raise CriuError('criu_path %s does not exist or is not a file.' % (path,))
        if not os.access(path, os.X_OK):
            raise CriuError('criu_path %s is not executable.' % (path,))
        return path
    return module.get_bin_path('criu', required=False, opt_dirs=CRIU_DIRS)


class Criu:
    """Runs criu through a ``CmdRunner`` (``runner``, by default one for ``path``).

    ``path`` is the binary (see find_criu()). Read-only commands (``--version``, ``check``) run in
    check mode too; callers that change state must skip their commands in check mode themselves.
    """

    def __init__(self, path: str, runner: Optional[CmdRunner] = None) -> None:
        self.path = path
        self.runner = runner or CmdRunner(path)
        self.last: Optional[CriuResult] = None

    def run(self, args: Sequence[Any], check_rc: bool = False, data: Optional[bytes] = None,
            cwd: Optional[str] = None) -> CriuResult:
        """Run ``criu <args>`` and return a CriuResult; with check_rc a non-zero rc raises CriuError."""
        try:
            done = self.runner.run(args, data=data, cwd=cwd)
        except CommandError as exc:
            raise CriuError(exc.msg, **exc.details)
        result = CriuResult(done.argv, done.rc, done.stdout, done.stderr, done.seconds)
        self.last = result
        if check_rc and done.rc != 0:
            raise CriuError(
                '"%s" failed with rc %s: %s' % (' '.join(done.argv), done.rc, result.tail(5) or 'no output'), result)
        return result

    def version(self) -> str:
        """The version string, as ``4.1.1``; CriuError when criu does not tell it."""
        result = self.run(['--version'])
        match = _VERSION_RE.search(result.stdout) or _VERSION_RE.search(result.stderr)
        if result.rc != 0 or not match:
            raise CriuError('"%s --version" did not report a version (rc %s): %s'
                            % (self.path, result.rc, result.tail(5) or 'no output'), result)
        return match.group(1)

    def check(self) -> Tuple[bool, str]:
        """Run ``criu check``; return ``(ok, tail of the output)``.

        ok is True when criu exits with 0 and says "Looks good" (which also covers "Looks good but
        some kernel features are missing").
        """
        result = self.run(['check'])
        ok = result.rc == 0 and 'Looks good' in result.output
        return ok, result.tail()

    def feature(self, name: str) -> bool:
        """True when ``criu check --feature <name>`` reports the feature as present.

        Present: rc 0 and "<name> is supported", or a "... is ON" line (older CRIU releases reported
        some features that way). Absent: a non-zero rc, "... is OFF", "not supported", an unknown
        feature name.
        """
        result = self.run(['check', '--feature', name])
        text = result.output
        if result.rc != 0:
            return False
        if re.search(r'\bis OFF\b', text) or 'not supported' in text.lower():
            return False
        return bool(re.search(r'\bis supported\b', text) or re.search(r'\bis ON\b', text))


# ---------------------------------------------------------------------------------------------------
# Options for the CRIU that the engine's runc runs.
#
# runc (>= 1.0) hands CRIU a configuration file, /etc/criu/runc.conf, unless the container carries an
# ``org.criu.config`` annotation (Docker 20.10 cannot set one). CRIU (>= 3.11) lets the options of that
# file override the ones runc sends over RPC, among them ``images-dir`` and ``work-dir``. That is the only
# way to give ``docker start --checkpoint`` a restore-time option, and the way restore avoids passing
# the CRIU images through containerd's content store (see the restore module).
#
# The file is host-wide: it would redirect any runc checkpoint or restore that runs while it exists. It
# is therefore written only while holding RUNC_CONF_LOCK, carries RUNC_CONF_MARKER on its first line,
# and is removed before the lock is released. A file of ours found while holding the lock is a leftover
# of a killed process and is removed; a file without the marker belongs to the operator and is never
# touched.

RUNC_CONF = '/etc/criu/runc.conf'
RUNC_CONF_LOCK = '/run/mtd-containers-runc-criu.lock'
RUNC_CONF_MARKER = '# mtd.containers: temporary CRIU options for the engine\'s runc'
_CONF_KEY_RE = re.compile(r'^[a-z][a-z0-9-]*$')


# CRIU options whose argument is optional (--manage-cgroups[=MODE]): "manage-cgroups ignore" in a configuration
# file is --manage-cgroups (soft mode) and a stray word, as measured on CRIU 4.1.1 (restore mode 0x4).
OPTIONAL_ARGUMENT = frozenset(['manage-cgroups'])


def render_runc_conf(options: Mapping[str, Any], owner: str) -> str:
    """The text of a runc CRIU configuration file with ``options`` (name -> value, True for a flag).

    Pure function. Values must be single-line and must not contain whitespace: CRIU's configuration
    parser splits on whitespace and has no quoting that every release understands.
    """
    lines = [RUNC_CONF_MARKER, '# written by %s; removed again when it is done' % owner.replace('\n', ' ')]
    for key in sorted(options):
        value = options[key]
        if not _CONF_KEY_RE.match(key):
            raise CriuError('%r is not a CRIU option name.' % (key,))
        if value is True:
            lines.append(key)
            continue
        if value in (None, False):
            continue
        # a list: the option once per value (ext-mount-map KEY:VAL, one line per mount)
        for one in (value if isinstance(value, (list, tuple)) else [value]):
            one = str(one)
            if not one or any(ch.isspace() for ch in one):
                raise CriuError('The value %r of CRIU option %s is empty or contains whitespace.' % (one, key))
            # an option whose argument is optional (getopt) takes it only as key=value
            lines.append(('%s=%s' if key in OPTIONAL_ARGUMENT else '%s %s') % (key, one))
    return '\n'.join(lines) + '\n'


def runc_conf_is_ours(text: Optional[str]) -> bool:
    """True when a runc CRIU configuration file's text was written by this collection."""
    return (text or '').startswith(RUNC_CONF_MARKER)


def _read(path):
    try:
        with open(path, 'r') as handle:
            return handle.read()
    except (IOError, OSError):
        return None


class RuncCriuOptions:
    """Context manager: hold the host's runc-CRIU lock and, with ``options``, put them in runc.conf.

    Without options it only takes the lock (and removes a leftover file of ours), which is what a
    runc checkpoint needs so that no restore of ours can redirect it. ``foreign()`` tells whether the
    operator keeps a runc.conf of their own, which this class never overwrites (CriuError).
    """

    def __init__(self, options: Optional[Mapping[str, Any]] = None, owner: str = 'mtd.containers',
                 path: Optional[str] = None, lock_path: Optional[str] = None, timeout: float = 120.0) -> None:
        self.options = options or {}
        self.owner = owner
        self.path = path or RUNC_CONF
        self.lock_path = lock_path or RUNC_CONF_LOCK
        self.timeout = timeout
        self._lock = None
        self.removed_leftover = False
        self.written = False

    def foreign(self) -> bool:
        text = _read(self.path)
        return text is not None and not runc_conf_is_ours(text)

    def __enter__(self) -> 'RuncCriuOptions':
        text = render_runc_conf(self.options, self.owner) if self.options else None
        self._lock = acquire_lock(self.lock_path, self.timeout)
        if self._lock is None:
            raise CriuError('Another checkpoint or restore held %s for more than %s s.'
                            % (self.lock_path, self.timeout))
        try:
            current = _read(self.path)
            if current is not None and runc_conf_is_ours(current):
                os.unlink(self.path)
                self.removed_leftover = True
                current = None
            if text is not None:
                if current is not None:
                    raise CriuError('%s exists and is not managed by mtd.containers; it is left alone, so '
                                    'CRIU options cannot be given to the engine\'s runc.' % self.path)
                os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
                atomic_write(self.path, text, mode=0o644, fsync=False)
                self.written = True
        except BaseException:
            self._release()
            raise
        return self

    def _release(self):
        if self._lock is not None:
            self._lock.close()   # closing the file drops the flock
            self._lock = None

    def __exit__(self, *exc):
        try:
            if self.written and runc_conf_is_ours(_read(self.path)):
                os.unlink(self.path)
        except OSError:
            pass   # a leftover of ours is removed by the next holder of the lock
        finally:
            self.written = False
            self._release()
        return False


# ---------------------------------------------------------------------------------------------------
# Capture: the engine's runc

def find_runc(module, path: Optional[str] = None) -> str:
    """The runc binary the engine uses: ``path``, or ``runc`` on PATH and in :data:`SBIN_DIRS`."""
    runc = path or module.get_bin_path('runc', opt_dirs=SBIN_DIRS)
    if not runc:
        raise CriuError('runc was not found on this host; set runc_path.')
    if not (os.path.isfile(runc) and os.access(runc, os.X_OK)):
        raise CriuError('runc_path %s is not an executable file.' % runc)
    return runc


def find_runc_root(container_id: str, candidates: Optional[Sequence[str]] = None) -> Optional[str]:
    """The ``runc --root`` directory that holds this container's state, or None."""
    for root in candidates or RUNC_ROOTS:
        if os.path.isfile(os.path.join(root, container_id, 'state.json')):
            return root
    return None


class Runc:
    """``runc checkpoint`` of one container, with the engine's runc, its state directory and our criu.

    Both dumps hold the runc-CRIU lock (``RuncCriuOptions``) for their whole run: runc hands CRIU
    /etc/criu/runc.conf, and a restore of ours must not have its options in there meanwhile.
    """

    def __init__(self, binary: str, root: str, criu: str, owner: str = 'mtd.containers.checkpoint') -> None:
        self.binary = binary
        self.root = root
        self.criu = criu
        self.owner = owner
        self.runner = CmdRunner(binary, prefix=['--root', root, '--criu', criu])

    def checkpoint_args(self, container_id: str, images: str, work: str,
                        page_server: Optional[str] = None, status_fd: Optional[int] = None,
                        parent: Optional[str] = None, pre_dump: bool = False) -> List[str]:
        """The arguments after ``runc --root R --criu C``: a dump that leaves the tasks to the freezer, or
        (``pre_dump``) a pre-dump of the memory while the container runs. ``parent``: the previous round's
        image directory, relative to ``images`` (CRIU links it as ``parent`` and writes only what changed)."""
        args = ['checkpoint', '--image-path', images, '--work-path', work]
        args += ['--pre-dump'] if pre_dump else ['--leave-running']
        if parent:
            args += ['--parent-path', parent]
        if page_server:
            args += ['--lazy-pages', '--page-server', page_server, '--status-fd', str(status_fd)]
        return args + [container_id]

    def checkpoint(self, container_id: str, images: str, work: str, timeout: float,
                   parent: Optional[str] = None, pre_dump: bool = False) -> None:
        """Dump (or pre-dump) into ``images`` (CRIU's log in ``work``); CriuError with the log's tail on failure."""
        what = 'pre-dump' if pre_dump else 'dump'
        try:
            with RuncCriuOptions(owner='%s (pid %d)' % (self.owner, os.getpid()), timeout=timeout):
                result = self.runner.run(self.checkpoint_args(container_id, images, work, parent=parent,
                                                              pre_dump=pre_dump), timeout=timeout)
        except (MtdError, OSError) as exc:
            raise CriuError('CRIU could not %s the container: %s' % (what, exc))
        if not result.ok:
            raise CriuError('CRIU could not %s the container (runc checkpoint rc=%d): %s'
                            % (what, result.rc, output_tail(result.stderr or result.stdout, 5)),
                            criu_log=read_tail(os.path.join(work, 'dump.log')))

    def checkpoint_lazy(self, container_id: str, images: str, work: str, address: str, port: int,
                        tls_options: Mapping[str, Any], ready_timeout: float, log_path: str, pid_path: str,
                        timeout: float) -> subprocess.Popen:
        """``runc checkpoint --lazy-pages``: returns once CRIU's page server is ready; it keeps running
        (detached, leading its own process group, its PID in ``pid_path``) until every page was fetched.
        """
        # runc keeps only the port of --page-server in lazy mode; "address" in runc.conf binds the page
        # server to the given address instead of every interface.
        options = dict(tls_options, address=address)
        page_server = '%s:%d' % (address, port)

        def argv(fd):
            return self.runner.argv(self.checkpoint_args(container_id, images, work, page_server, fd))
        try:
            with RuncCriuOptions(options, owner='%s (pid %d)' % (self.owner, os.getpid()), timeout=timeout):
                proc, state = spawn_until_ready(argv, ready_timeout, log_path, detach=True)
                atomic_write(pid_path, '%d\n' % proc.pid, mode=0o600, fsync=False)
        except (MtdError, OSError) as exc:
            raise CriuError('CRIU could not start the lazy dump: %s' % exc)
        if state != 'ready':
            why = ('runc exited with rc %s' % proc.wait() if state == 'exited'
                   else 'no answer within %s s' % ready_timeout)
            raise CriuError('CRIU\'s lazy dump did not get ready (%s): %s' % (why, output_tail(read_tail(log_path), 5)),
                            criu_log=read_tail(os.path.join(work, 'dump.log')))
        return proc


# ---------------------------------------------------------------------------------------------------
# Restore: through the engine, CRIU's options through runc.conf

def restore_options(images_link: str, work: str, lazy: bool = False,
                    manage_cgroups: Optional[str] = None,
                    ext_mounts: Sequence[str] = ()) -> Dict[str, Any]:
    """runc.conf options for ``image_delivery: direct``: CRIU reads the images where they arrived.

    ``images_link`` must be a symbolic link to the images (CRIU resolves a configured images-dir with
    readlink()); ``work`` receives restore.log. ``lazy`` makes the restored tasks fetch their memory
    from the ``criu lazy-pages`` daemon. ``manage_cgroups`` is CRIU's --manage-cgroups mode
    (restore_cgroup_mode).
    """
    options: Dict[str, Any] = {'images-dir': images_link, 'work-dir': work}
    if lazy:
        options['lazy-pages'] = True
    if manage_cgroups:
        options['manage-cgroups'] = manage_cgroups
    if ext_mounts:
        options['ext-mount-map'] = list(ext_mounts)
    return options


_CGROUP_KEY_RE = re.compile(r'^/sys/fs/cgroup(/[A-Za-z0-9_.=,-]+)?$')


def cgroup_mount_map(external: Sequence[Tuple[str, str]], images_version: Optional[int],
                     host_version: Optional[int], placeholder: str) -> List[str]:
    """ext-mount-map values (``KEY:VAL``) for the cgroup mounts of images made on the other cgroup version than
    the host's; [] when both are the same (or unknown). Pure.

    runc records a container's cgroup mounts as external mounts keyed by their mountpoint: on cgroup v1 the
    per-controller ``/sys/fs/cgroup/<controller>`` binds, on cgroup v2 the one ``/sys/fs/cgroup``. On a host of
    the other version runc maps only its own kind, so CRIU stops with "No mapping for ... mountpoint". Each
    such key is mapped to ``placeholder``, an empty directory of the target: the restored tree sees an empty
    directory where the source's cgroup files were (its real cgroup is the one the target's engine made) and
    reaches no cgroup file of this host through it.
    """
    if images_version not in (1, 2) or host_version not in (1, 2) or images_version == host_version:
        return []
    if ':' in placeholder or any(ch.isspace() for ch in placeholder):
        raise CriuError('The placeholder %r cannot be given to CRIU.' % placeholder)
    values = []
    for mountpoint, key in external:
        ours = (mountpoint.startswith('/sys/fs/cgroup/') if images_version == 1 else mountpoint == '/sys/fs/cgroup')
        if not ours:
            continue
        if not _CGROUP_KEY_RE.match(key):
            raise CriuError('The external cgroup mount %r of the checkpoint has a key this collection does not map '
                            '(%r).' % (mountpoint, key))
        values.append('%s:%s' % (key, placeholder))
    return values


def restore_cgroup_mode(images_version: Optional[int], host_version: Optional[int]) -> Optional[str]:
    """CRIU's --manage-cgroups mode for a restore of images made on cgroup ``images_version`` on a host with
    ``host_version`` (None: unknown). Pure.

    ``ignore`` leaves the restored tasks in the cgroup runc made for the new container (runc moves CRIU there
    before the restore), so the target's engine and cgroup driver decide the cgroup, as for any container it
    starts - and nothing in the images (cgroup.img, written by the source) can place a task elsewhere:

    - different kinds: CRIU would rebuild the dump's hierarchies (a v1 dump mounts v1 controllers, which a v2
      host has bound to its unified hierarchy: "Can't mount controller dir ...: Device or resource busy");
    - cgroup v2 on both: runc (1.1) hands CRIU the new container's cgroup as the root of the controller named
      ``""``, which CRIU's unified set does not match, so CRIU put the tasks back at the path the dump names - the
      source's ``/system.slice/docker-<id>.scope``, recreated on the target, outside the new container's cgroup
      and its limits (measured on the lab's VM, 2026-12-02; confinement on arrival found them outside its slice).

    cgroup v1 on both: None (runc's own mode; runc maps every controller's root to the new container's).
    """
    if images_version is None or host_version is None:
        return None
    if images_version != host_version or host_version == 2:
        return 'ignore'
    return None


def start_from_checkpoint(start: Callable[[], Any], options: Optional[Mapping[str, Any]], owner: str) -> Any:
    """Call ``start()`` (the engine's ``POST /containers/{id}/start?checkpoint=NAME``) while runc.conf
    holds ``options`` (None: only the lock, the engine's own delivery)."""
    with RuncCriuOptions(options, owner='%s (pid %d)' % (owner, os.getpid())):
        return start()


# -- post-copy (lazy pages) ------------------------------------------------------------------------
#
# The source's CRIU dumps everything but the memory that can be fetched later, then serves those pages
# from the frozen tasks to the target's "criu lazy-pages" daemon, which hands them to the restored tasks
# on demand (userfaultfd) and copies the rest in the background. The channel is mutual TLS with one
# self-signed certificate per side, each side trusting exactly the other's certificate.

LAZY_PIPE_BYTES = 3354624   # F_SETPIPE_SZ that CRIU's lazy page server asks for (page-pipe.c, 819 pages)
PIPE_MAX_SIZE = '/proc/sys/fs/pipe-max-size'
CAP_SYS_RESOURCE = 24


def lazy_pages_blocker(pipe_max_path: str = PIPE_MAX_SIZE, status_path: str = '/proc/self/status') -> Optional[str]:
    """Why CRIU's lazy page server would fail on this host, or None.

    Without CAP_SYS_RESOURCE, CRIU cannot grow its page pipe beyond fs.pipe-max-size; it ignores that
    error and later fails the transfer with a short tee() (and a stale errno in its log).
    """
    status = _read(status_path) or ''
    match = re.search(r'^CapEff:\s*([0-9a-fA-F]+)', status, re.MULTILINE)
    if match and int(match.group(1), 16) & (1 << CAP_SYS_RESOURCE):
        return None
    try:
        limit = int((_read(pipe_max_path) or '').strip())
    except ValueError:
        return 'fs.pipe-max-size cannot be read (%s)' % pipe_max_path
    if limit < LAZY_PIPE_BYTES:
        return ('fs.pipe-max-size is %d and this process lacks CAP_SYS_RESOURCE; CRIU\'s lazy page server needs '
                'pipes of %d bytes (set fs.pipe-max-size to 4194304)' % (limit, LAZY_PIPE_BYTES))
    return None


def make_tls_identity(directory: str, name: str, openssl: str = 'openssl') -> Tuple[str, str]:
    """A fresh private key and self-signed certificate in ``directory`` (0700); returns (cert, key).

    The key never leaves this host; the peer gets the certificate and pins it (it is the only CA the
    peer trusts for this migration).
    """
    make_private_dir(directory)
    key = os.path.join(directory, 'key.pem')
    cert = os.path.join(directory, 'cert.pem')
    try:
        result = CmdRunner(openssl).run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                                         '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=%s' % name])
        rc, out, err = result.rc, result.stdout, result.stderr
    except CommandError as exc:
        rc, out, err = None, '', exc.msg
    if rc != 0 or not os.path.isfile(cert):
        raise CriuError('openssl could not make the TLS certificate for %s: %s' % (name, output_tail(err or out, 3)))
    os.chmod(key, 0o600)
    return cert, key


def lazy_tls_options(peer_cert: str, cert: str, key: str) -> Dict[str, Any]:
    """CRIU options for mutual TLS where the only trusted peer is ``peer_cert`` (pinned, so the name in
    it is not checked)."""
    return {'tls': True, 'tls-no-cn-verify': True, 'tls-cacert': peer_cert, 'tls-cert': cert, 'tls-key': key}


def option_args(options: Mapping[str, Any]) -> List[str]:
    """Command-line form of CRIU options (name -> value, True for a flag)."""
    args = []
    for key in sorted(options):
        value = options[key]
        if value is True:
            args.append('--' + key)
        elif value not in (None, False):
            args.extend(['--' + key, str(value)])
    return args


def start_lazy_pages_daemon(criu: str, address: str, port: int, images: str, work: str,
                            tls_options: Mapping[str, Any], ready_timeout: float = 30) -> Tuple[subprocess.Popen, str]:
    """``criu lazy-pages`` that connects to the source's page server once the restore hands it the
    userfaultfds; returns (process, state) as spawn_until_ready() does (its output in work/lazy-pages.out,
    its log in work/lazy-pages.log)."""
    def argv(fd):
        return ([criu, 'lazy-pages', '--page-server', '--address', str(address), '--port', str(port),
                 '-D', images, '-W', work, '-o', 'lazy-pages.log', '-v4', '--status-fd', str(fd)]
                + option_args(tls_options))
    return spawn_until_ready(argv, ready_timeout, os.path.join(work, 'lazy-pages.out'))


def spawn_until_ready(argv_for_fd: Callable[[int], Sequence[str]], timeout: float, log_path: str,
                      detach: bool = False) -> Tuple[subprocess.Popen, str]:
    """Start a CRIU (or runc) command that reports readiness on a status fd; returns (proc, state).

    ``argv_for_fd(fd)`` builds the command line given the fd number. state is 'ready' (a byte arrived),
    'exited' (the process ended without being ready) or 'timeout' (it still runs; the caller decides).
    With ``detach`` the process gets its own session and outlives the caller.
    """
    read_end, write_end = os.pipe()
    try:
        argv = list(argv_for_fd(write_end))
        # never through a link someone put in its place; created 0600 (the log names the migration's paths)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0)
        with os.fdopen(os.open(log_path, flags, 0o600), 'ab') as log:
            proc = CmdRunner(argv[0]).popen(argv[1:], pass_fds=(write_end,), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=detach)
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    os.close(write_end)
    try:
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                return proc, 'timeout'
            readable, dummy, dummy2 = select.select([read_end], [], [], min(left, 0.5))
            if readable:
                return proc, ('ready' if os.read(read_end, 1) else 'exited')
            if proc.poll() is not None:
                return proc, 'exited'
    finally:
        os.close(read_end)
