# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Small pure helpers shared by the mtd.containers modules.

This is a private module_utils file (leading underscore): its API may change without notice.
It must stay importable on Python 3.8+ on managed hosts and do no I/O.
"""

from __future__ import annotations

import calendar
import datetime
import math
import re


class MtdError(Exception):
    """The root of every exception of this collection: one clear sentence the user can act on.

    ``msg`` is that sentence; ``details`` are extra, JSON-serialisable keys that the module runtime
    (``_module.MtdModule.fail``) adds to the failure result. Subclasses name the layer that failed
    (``DockerError``, ``CriuError`` ...) and may add attributes of their own (``status``), always also
    in ``details`` so that one error path reports them.
    """

    # What the module runtime puts before ``msg`` in a failure ("Docker engine error: "), naming the layer.
    prefix = ''

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def __str__(self):
        return self.msg


def split_image_reference(text):
    """``(name, tag, digest)`` of ``[registry[:port]/]repository[:tag][@digest]``, without normalising.

    The tag is what follows the last ``:`` after the last ``/`` (so a registry port is not a tag);
    missing parts are None. ``127.0.0.1:5000/app:1@sha256:ab`` -> ``('127.0.0.1:5000/app', '1', 'sha256:ab')``.
    For validation and Docker Hub normalisation use ``_registry.parse_reference``.
    """
    name, digest = (text or ''), None
    if '@' in name:
        name, digest = name.split('@', 1)
    tag = None
    slash, colon = name.rfind('/'), name.rfind(':')
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


_DURATION_UNITS = {
    'ms': 0.001,
    's': 1.0,
    'm': 60.0,
    'h': 3600.0,
    'd': 86400.0,
    'w': 604800.0,
}

# One or more "<number><unit>" parts, optionally separated by spaces: "90s", "1h30m", "1d 2h".
_DURATION_PART = re.compile(r'\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|[smhdw])', re.IGNORECASE)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_duration(value):
    """Return ``value`` as a number of seconds (float).

    Accepts a non-negative number (seconds), a numeric string (``"90"``, ``"1.5"``) or a string of
    ``<number><unit>`` parts with units ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``
    (``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1h30m"``, ``"1h 30m"``).

    Raises ``ValueError`` with a readable message for negative, empty or unparsable input.
    """
    if _is_number(value):
        seconds = float(value)
        if math.isnan(seconds) or math.isinf(seconds):
            raise ValueError('duration %r is not a finite number of seconds' % (value,))
        if seconds < 0:
            raise ValueError('duration %r is negative; durations must be >= 0 seconds' % (value,))
        return seconds
    if not isinstance(value, str):
        raise ValueError(
            'duration %r has type %s; give a number of seconds or a string such as "90s", "15m", "1h30m"'
            % (value, type(value).__name__))
    text = value.strip()
    if not text:
        raise ValueError('duration is an empty string; give a number of seconds or a string such as "15m"')
    if text.startswith('-'):
        raise ValueError('duration %r is negative; durations must be >= 0 seconds' % (value,))
    if text.startswith('+'):
        text = text[1:]
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            raise ValueError('duration %r is not a finite number of seconds' % (value,))
        return seconds

    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise ValueError(
                'cannot parse duration %r; use seconds or <number><unit> parts with units ms, s, m, h, d, w '
                '(for example "90s", "15m", "2h", "1d", "1h30m")' % (value,))
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return total


_ISO_RE = re.compile(
    r'^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})'
    r'(?:[Tt ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?)?'
    r'\s*(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?$'
)


def _epoch_from_iso(text):
    match = _ISO_RE.match(text)
    if not match:
        raise ValueError(
            'cannot parse timestamp %r; use epoch seconds or RFC 3339 such as "2026-11-28T09:30:01Z"' % (text,))
    parts = match.groupdict()
    try:
        # datetime validates the ranges (month 13, day 32, hour 25 ...).
        moment = datetime.datetime(
            int(parts['year']), int(parts['month']), int(parts['day']),
            int(parts['hour'] or 0), int(parts['minute'] or 0), int(parts['second'] or 0))
    except ValueError as exc:
        raise ValueError('timestamp %r is not a valid date/time: %s' % (text, exc))
    epoch = float(calendar.timegm(moment.timetuple()))
    if parts['fraction']:
        # Docker gives nanoseconds; datetime only keeps microseconds, so add the fraction ourselves.
        epoch += float('0.' + parts['fraction'])
    tz = parts['tz']
    if tz and tz not in ('Z', 'z'):
        sign = -1 if tz[0] == '-' else 1
        digits = tz[1:].replace(':', '')
        hours = int(digits[:2])
        minutes = int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:
            raise ValueError('timestamp %r has an invalid UTC offset %r' % (text, tz))
        epoch -= sign * (hours * 3600 + minutes * 60)
    return epoch


def to_epoch(value):
    """Return ``value`` as float seconds since the Unix epoch (UTC).

    Accepts an int/float epoch, a numeric string, a ``datetime`` (naive means UTC) or an
    RFC 3339 / ISO 8601 string, including Docker's nanosecond form ``2026-11-28T09:30:01.123456789Z``
    and offsets such as ``+02:00``. A string without offset is taken as UTC.

    Raises ``ValueError`` with a readable message otherwise.
    """
    if _is_number(value):
        epoch = float(value)
        if math.isnan(epoch) or math.isinf(epoch):
            raise ValueError('timestamp %r is not a finite number' % (value,))
        return epoch
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    if not isinstance(value, str):
        raise ValueError(
            'timestamp %r has type %s; give epoch seconds or an RFC 3339 string' % (value, type(value).__name__))
    text = value.strip()
    if not text:
        raise ValueError('timestamp is an empty string; give epoch seconds or an RFC 3339 string')
    try:
        epoch = float(text)
    except ValueError:
        return _epoch_from_iso(text)
    if math.isnan(epoch) or math.isinf(epoch):
        raise ValueError('timestamp %r is not a finite number' % (value,))
    return epoch


def create_no_follow(path, mode=0o600):
    """Open ``path`` read-write, creating it with ``mode`` if missing, never through a symbolic link
    (``O_NOFOLLOW``: OSError ELOOP for a link). Returns the file descriptor."""
    import os
    flags = os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0)
    return os.open(path, flags, mode)


def acquire_lock(path, timeout, poll=0.05):
    """Open ``path`` (created if missing) and take an exclusive flock on it, waiting up to ``timeout``
    seconds. Returns the open file (closing it releases the lock) or None when the wait ran out.

    The lock is released by the kernel when the holder exits, however it exits. A symbolic link at
    ``path`` is refused (OSError ELOOP), never followed: a lock file in a shared place must not let whoever
    put the link there make this process create or open a file elsewhere.
    """
    import fcntl
    import os
    import time
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    handle = os.fdopen(create_no_follow(path), 'r+')
    deadline = time.time() + timeout
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except (IOError, OSError):
            if time.time() >= deadline:
                handle.close()
                return None
            time.sleep(poll)


def read_pid(path):
    """The process id written in ``path``, or None (also for 0 and negative numbers).

    A PID file is data another process wrote: 0 or -1 handed to ``kill``/``killpg`` would signal this
    process's own group or every process, so only a positive number is a process id.
    """
    try:
        with open(path) as handle:
            pid = int(handle.read().strip())
    except (IOError, OSError, ValueError):
        return None
    return pid if pid > 0 else None


def process_argv(pid, proc='/proc'):
    """The command line of process ``pid`` as a list of bytes, or None when there is no such process."""
    import os
    try:
        with open(os.path.join(proc, str(pid), 'cmdline'), 'rb') as handle:
            return handle.read().split(b'\0')
    except (IOError, OSError):
        return None


def group_alive(pgid):
    """Whether any process of process group ``pgid`` is still there."""
    import os
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
