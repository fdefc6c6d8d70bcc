# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import os
import time

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._common import (
    MtdError,
    acquire_lock,
    create_no_follow,
    group_alive,
    parse_duration,
    process_argv,
    read_pid,
    to_epoch,
)


@pytest.mark.parametrize('value, expected', [
    (0, 0.0),
    (90, 90.0),
    (1.5, 1.5),
    ('90', 90.0),
    ('2.5', 2.5),
    ('90s', 90.0),
    ('15m', 900.0),
    ('2h', 7200.0),
    ('1d', 86400.0),
    ('1w', 604800.0),
    ('1h30m', 5400.0),
    ('1h 30m 15s', 5415.0),
    ('1H30M', 5400.0),
    ('500ms', 0.5),
    ('1m500ms', 60.5),
    ('0.5h', 1800.0),
    ('  15m ', 900.0),
    ('+10s', 10.0),
])
def test_parse_duration(value, expected):
    assert parse_duration(value) == expected


@pytest.mark.parametrize('value, message', [
    (-1, 'negative'),
    ('-5m', 'negative'),
    ('', 'empty'),
    ('   ', 'empty'),
    ('abc', 'cannot parse duration'),
    ('15x', 'cannot parse duration'),
    ('1h30', 'cannot parse duration'),
    ('m', 'cannot parse duration'),
    (float('nan'), 'finite'),
    (float('inf'), 'finite'),
    ('inf', 'finite'),
    (None, 'type NoneType'),
    (True, 'type bool'),
    ([1], 'type list'),
])
def test_parse_duration_rejects(value, message):
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


@pytest.mark.parametrize('value, expected', [
    (0, 0.0),
    (1795858201, 1795858201.0),
    (1795858201.25, 1795858201.25),
    ('1795858201', 1795858201.0),
    ('1970-01-01T00:00:00Z', 0.0),
    ('1970-01-01T00:01:00Z', 60.0),
    ('2026-11-28T09:30:01Z', 1795858201.0),
    ('2026-11-28T09:30:01.5Z', 1795858201.5),
    ('2026-11-28T09:30:01+00:00', 1795858201.0),
    ('2026-11-28T10:30:01+01:00', 1795858201.0),
    ('2026-11-28T07:30:01-0200', 1795858201.0),
    ('2026-11-28T09:30:01', 1795858201.0),
    ('2026-11-28 09:30:01Z', 1795858201.0),
    ('2026-11-28T09:30Z', 1795858200.0),
    ('2026-11-28', 1795824000.0),
    (datetime.datetime(2026, 11, 28, 9, 30, 1), 1795858201.0),
    (datetime.datetime(2026, 11, 28, 10, 30, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1))), 1795858201.0),
])
def test_to_epoch(value, expected):
    assert to_epoch(value) == pytest.approx(expected, abs=1e-6)


def test_to_epoch_docker_nanoseconds():
    epoch = to_epoch('2026-11-28T09:30:01.123456789Z')
    assert epoch == pytest.approx(1795858201.123456789, abs=1e-6)
    assert to_epoch('2026-11-28T09:30:01.123456789Z') - to_epoch('2026-11-28T09:30:00Z') == pytest.approx(1.123456789)


@pytest.mark.parametrize('value, message', [
    ('yesterday', 'cannot parse timestamp'),
    ('2026-13-01T00:00:00Z', 'not a valid date'),
    ('2026-11-28T25:00:00Z', 'not a valid date'),
    ('2026-11-28T09:30:01+25:00', 'invalid UTC offset'),
    ('', 'empty'),
    (None, 'type NoneType'),
    (True, 'type bool'),
    (float('nan'), 'finite'),
])
def test_to_epoch_rejects(value, message):
    with pytest.raises(ValueError, match=message):
        to_epoch(value)


def test_mtd_error_carries_message_and_details():
    exc = MtdError('something is wrong', host='lab-1')
    assert str(exc) == 'something is wrong'
    assert exc.msg == 'something is wrong'
    assert exc.details == {'host': 'lab-1'}
    assert MtdError('plain').details == {}
    assert isinstance(exc, Exception)


def test_process_argv_and_group_alive():
    import subprocess
    import sys
    argv = [sys.executable, '-c', 'import time; time.sleep(30)', 'marker']
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        for _attempt in range(1000):  # until the child has exec'd (before, its cmdline is its parent's)
            if process_argv(proc.pid)[-2:] == [b'marker', b'']:
                break
            time.sleep(0.01)
        assert process_argv(proc.pid) == [arg.encode() for arg in argv] + [b'']
        assert group_alive(proc.pid) is True
    finally:
        proc.kill()
        proc.wait()
    assert process_argv(proc.pid) is None
    assert group_alive(proc.pid) is False


@pytest.mark.parametrize('text, expected', [
    ('4242\n', 4242),
    ('0', None),          # kill(0) / killpg(0): the caller's own process group
    ('-1', None),         # kill(-1): every process the caller may signal
    ('-4242', None),
    ('abc', None),
    ('', None),
])
def test_read_pid_only_takes_a_positive_process_id(tmp_path, text, expected):
    path = tmp_path / 'daemon.pid'
    path.write_text(text)
    assert read_pid(str(path)) == expected
    assert read_pid(str(tmp_path / 'missing.pid')) is None


def test_lock_and_marker_files_are_never_opened_through_a_link(tmp_path):
    import errno
    victim = tmp_path / 'victim'
    link = tmp_path / 'm-1.lock'
    link.symlink_to(victim)
    with pytest.raises(OSError) as info:
        acquire_lock(str(link), 0.1)
    assert info.value.errno == errno.ELOOP
    assert not victim.exists()
    with pytest.raises(OSError):
        create_no_follow(str(link))
    assert not victim.exists()
    handle = acquire_lock(str(tmp_path / 'm-2.lock'), 0.1)
    assert handle is not None and oct(os.stat(str(tmp_path / 'm-2.lock')).st_mode & 0o777) == '0o600'
    assert acquire_lock(str(tmp_path / 'm-2.lock'), 0.1) is None   # held: the wait runs out
    handle.close()
    os.close(create_no_follow(str(tmp_path / 'm-2.cancel')))
    assert (tmp_path / 'm-2.cancel').exists()
