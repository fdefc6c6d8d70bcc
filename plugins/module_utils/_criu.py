# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A thin wrapper around the ``criu`` command line.

This is a private module_utils file (leading underscore): its API may change without notice.
Commands run as argv lists (never through a shell) with ``LANG=C``; each result keeps rc, stdout and
stderr so that callers can put the real cause into their failure result. Python 3.8+.

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

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError, acquire_lock

# Where CRIU is usually installed, besides PATH (a source build installs to /usr/local/sbin).
CRIU_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin']
CRIU_ENV = {'LANG': 'C', 'LC_ALL': 'C', 'LC_MESSAGES': 'C'}
TAIL_LINES = 20

_VERSION_RE = re.compile(r'^\s*Version:\s*(\S+)', re.MULTILINE)


class CriuError(MtdError):
    """CRIU is missing or a command failed; ``result`` is the CriuResult when a command ran."""

    def __init__(self, msg, result=None, **details):
        super().__init__(msg, **details)
        self.result = result


def output_tail(text, lines=TAIL_LINES):
    """The last ``lines`` non-empty lines of ``text``, joined with newlines."""
    kept = [line.rstrip() for line in (text or '').splitlines() if line.strip()]
    return '\n'.join(kept[-lines:])


def log_seconds(path):
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


class CriuResult:
    """rc, stdout and stderr of one criu command."""

    def __init__(self, cmd, rc, stdout, stderr):
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout or ''
        self.stderr = stderr or ''

    @property
    def output(self):
        """stderr then stdout: CRIU prints warnings to stderr before its verdict on stdout."""
        return '\n'.join(part for part in (self.stderr.strip(), self.stdout.strip()) if part)

    def tail(self, lines=TAIL_LINES):
        return output_tail(self.output, lines)

    def as_dict(self):
        """For a module's failure result."""
        return {'cmd': self.cmd, 'rc': self.rc, 'stdout': self.stdout, 'stderr': self.stderr}


def find_criu(module, path=None):
    """Absolute path of the criu binary, or None when it cannot be found.

    With ``path`` given, that file must exist and be executable (CriuError otherwise); else
    ``criu`` is searched in PATH and :data:`CRIU_DIRS`.
    """
    if path:
        if not os.path.isfile(path):
            raise CriuError('criu_path %s does not exist or is not a file.' % (path,))
        if not os.access(path, os.X_OK):
            raise CriuError('criu_path %s is not executable.' % (path,))
        return path
    return module.get_bin_path('criu', required=False, opt_dirs=CRIU_DIRS)


class Criu:
    """Runs criu through ``module.run_command``.

    ``path`` is the binary (see find_criu()). Read-only commands (``--version``, ``check``) run in
    check mode too; callers that change state must skip their commands in check mode themselves.
    """

    def __init__(self, module, path):
        self.module = module
        self.path = path
        self.last = None

    def run(self, args, check_rc=False, data=None, cwd=None):
        """Run ``criu <args>`` and return a CriuResult; with check_rc a non-zero rc raises CriuError."""
        cmd = [self.path] + [str(arg) for arg in args]
        try:
            rc, stdout, stderr = self.module.run_command(
                cmd, data=data, cwd=cwd, environ_update=dict(CRIU_ENV))
        except OSError as exc:
            raise CriuError('Cannot run %s: %s' % (self.path, exc))
        result = CriuResult(cmd, rc, stdout, stderr)
        self.last = result
        if check_rc and rc != 0:
            raise CriuError(
                '"%s" failed with rc %s: %s' % (' '.join(cmd), rc, result.tail(5) or 'no output'), result)
        return result

    def version(self):
        """The version string, as ``4.1.1``; CriuError when criu does not tell it."""
        result = self.run(['--version'])
        match = _VERSION_RE.search(result.stdout) or _VERSION_RE.search(result.stderr)
        if result.rc != 0 or not match:
            raise CriuError('"%s --version" did not report a version (rc %s): %s'
                            % (self.path, result.rc, result.tail(5) or 'no output'), result)
        return match.group(1)

    def check(self):
        """Run ``criu check``; return ``(ok, tail of the output)``.

        ok is True when criu exits with 0 and says "Looks good" (which also covers "Looks good but
        some kernel features are missing").
        """
        result = self.run(['check'])
        ok = result.rc == 0 and 'Looks good' in result.output
        return ok, result.tail()

    def feature(self, name):
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


def render_runc_conf(options, owner):
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
        elif value in (None, False):
            continue
        else:
            value = str(value)
            if not value or any(ch.isspace() for ch in value):
                raise CriuError('The value %r of CRIU option %s is empty or contains whitespace.' % (value, key))
            lines.append('%s %s' % (key, value))
    return '\n'.join(lines) + '\n'


def runc_conf_is_ours(text):
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

    def __init__(self, options=None, owner='mtd.containers', path=None, lock_path=None, timeout=120.0):
        self.options = options or {}
        self.owner = owner
        self.path = path or RUNC_CONF
        self.lock_path = lock_path or RUNC_CONF_LOCK
        self.timeout = timeout
        self._lock = None
        self.removed_leftover = False
        self.written = False

    def foreign(self):
        text = _read(self.path)
        return text is not None and not runc_conf_is_ours(text)

    def __enter__(self):
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
                tmp = '%s.mtd-%d' % (self.path, os.getpid())
                with open(tmp, 'w') as handle:
                    handle.write(text)
                os.chmod(tmp, 0o644)
                os.rename(tmp, self.path)
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


# -- post-copy (lazy pages) ------------------------------------------------------------------------
#
# The source's CRIU dumps everything but the memory that can be fetched later, then serves those pages
# from the frozen tasks to the target's "criu lazy-pages" daemon, which hands them to the restored tasks
# on demand (userfaultfd) and copies the rest in the background. The channel is mutual TLS with one
# self-signed certificate per side, each side trusting exactly the other's certificate.

LAZY_PIPE_BYTES = 3354624   # F_SETPIPE_SZ that CRIU's lazy page server asks for (page-pipe.c, 819 pages)
PIPE_MAX_SIZE = '/proc/sys/fs/pipe-max-size'
CAP_SYS_RESOURCE = 24


def lazy_pages_blocker(pipe_max_path=PIPE_MAX_SIZE, status_path='/proc/self/status'):
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


def make_tls_identity(directory, name, run_command, openssl='openssl'):
    """A fresh private key and self-signed certificate in ``directory`` (0700); returns (cert, key).

    ``run_command(argv)`` returns (rc, stdout, stderr). The key never leaves this host; the peer gets the
    certificate and pins it (it is the only CA the peer trusts for this migration).
    """
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
    os.chmod(directory, 0o700)
    key = os.path.join(directory, 'key.pem')
    cert = os.path.join(directory, 'cert.pem')
    rc, out, err = run_command([openssl, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                                '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=%s' % name])
    if rc != 0 or not os.path.isfile(cert):
        raise CriuError('openssl could not make the TLS certificate for %s: %s' % (name, output_tail(err or out, 3)))
    os.chmod(key, 0o600)
    return cert, key


def lazy_tls_options(peer_cert, cert, key):
    """CRIU options for mutual TLS where the only trusted peer is ``peer_cert`` (pinned, so the name in
    it is not checked)."""
    return {'tls': True, 'tls-no-cn-verify': True, 'tls-cacert': peer_cert, 'tls-cert': cert, 'tls-key': key}


def option_args(options):
    """Command-line form of CRIU options (name -> value, True for a flag)."""
    args = []
    for key in sorted(options):
        value = options[key]
        if value is True:
            args.append('--' + key)
        elif value not in (None, False):
            args.extend(['--' + key, str(value)])
    return args


def spawn_until_ready(argv_for_fd, timeout, log_path, detach=False):
    """Start a CRIU (or runc) command that reports readiness on a status fd; returns (proc, state).

    ``argv_for_fd(fd)`` builds the command line given the fd number. state is 'ready' (a byte arrived),
    'exited' (the process ended without being ready) or 'timeout' (it still runs; the caller decides).
    With ``detach`` the process gets its own session and outlives the caller.
    """
    import select
    import subprocess
    import time
    read_end, write_end = os.pipe()
    try:
        with open(log_path, 'ab') as log:
            proc = subprocess.Popen(argv_for_fd(write_end), pass_fds=(write_end,), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=detach,
                                    env=dict(os.environ, **CRIU_ENV))
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
