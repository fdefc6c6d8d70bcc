# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The command runner (_cmd) and the file helpers (_files), on real processes and a real file system."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._cmd import CmdRunner, CommandError, output_tail, run
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._files import (
    FileError,
    atomic_write,
    make_private_dir,
    remove_tree,
)


def test_runner_runs_an_argv_list_in_the_c_locale():
    result = CmdRunner(sys.executable, prefix=['-c']).run(['import os; print(os.environ["LANG"], os.environ["LC_ALL"])'])
    assert result.ok and result.stdout.strip() == 'C C'
    rc, out, err = result
    assert rc == 0 and err == ''
    assert result.seconds >= 0


def test_arguments_are_never_a_shell_string(tmp_path):
    marker = tmp_path / 'pwned'
    result = run(['echo', 'a; touch %s' % marker])
    assert result.stdout.strip() == 'a; touch %s' % marker
    assert not marker.exists()


def test_check_raises_with_rc_and_the_tail_of_the_output():
    script = 'import sys\nfor i in range(40): print("line", i)\nsys.stderr.write("bad thing\\n")\nsys.exit(3)'
    with pytest.raises(CommandError) as info:
        CmdRunner(sys.executable).run(['-c', script], check=True, what='the dump')
    exc = info.value
    assert isinstance(exc, MtdError)
    assert exc.msg.startswith('the dump failed (rc=3): ')
    assert exc.msg.endswith('bad thing')
    assert 'line 0' not in exc.msg          # only the tail
    assert exc.details['rc'] == 3 and exc.details['stderr_tail'] == 'bad thing'
    assert CmdRunner(sys.executable).run(['-c', script]).rc == 3     # without check: a result


def test_timeout_and_missing_program_are_clear_errors(tmp_path):
    with pytest.raises(CommandError) as info:
        run(['sleep', '5'], timeout=0.2, what='sleep')
    assert info.value.msg == 'sleep did not finish within 0.2 s.'
    with pytest.raises(CommandError) as info:
        run([str(tmp_path / 'no-such-program')])
    assert info.value.msg.startswith('Cannot run %s' % (tmp_path / 'no-such-program'))


def test_data_goes_to_stdin_and_popen_uses_the_same_environment():
    assert run(['cat'], data=b'hello').stdout == 'hello'
    proc = CmdRunner('sh').popen(['-c', 'echo $LANG'], stdout=-1)
    out = proc.communicate()[0]
    assert out.strip() == b'C'


def test_output_tail_keeps_the_last_non_empty_lines():
    assert output_tail('a\n\nb\nc\n', 2) == 'b\nc'
    assert output_tail(None) == ''


def test_atomic_write_replaces_content_and_never_follows_a_link(tmp_path):
    target = tmp_path / 'record.json'
    atomic_write(str(target), '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    victim = tmp_path / 'victim'
    victim.write_text('keep')
    link = tmp_path / 'link'
    link.symlink_to(victim)
    atomic_write(str(link), b'new', mode=0o644)
    assert victim.read_text() == 'keep'
    assert not link.is_symlink() and link.read_bytes() == b'new'
    assert stat.S_IMODE(link.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ['link', 'record.json', 'victim']


def test_private_dir_is_created_0700_and_a_link_or_a_file_is_refused(tmp_path):
    path = tmp_path / 'a' / 'b'
    make_private_dir(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    os.chmod(str(path), 0o755)
    make_private_dir(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    (tmp_path / 'link').symlink_to(path)
    with pytest.raises(FileError) as info:
        make_private_dir(str(tmp_path / 'link'))
    assert 'symbolic link' in info.value.msg
    (tmp_path / 'file').write_text('x')
    with pytest.raises(FileError):
        make_private_dir(str(tmp_path / 'file'))


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to give a directory to another user')
def test_private_dir_owned_by_another_user_is_refused(tmp_path):
    path = tmp_path / 'shared'
    path.mkdir(mode=0o777)
    os.chown(str(path), 65534, 65534)
    with pytest.raises(FileError) as info:
        make_private_dir(str(path))
    assert 'owned by uid 65534' in info.value.msg


def test_remove_tree_removes_links_not_their_targets(tmp_path):
    keep = tmp_path / 'keep'
    keep.mkdir()
    (keep / 'f').write_text('x')
    link = tmp_path / 'link'
    link.symlink_to(keep)
    assert remove_tree(str(link)) is True
    assert (keep / 'f').exists()
    assert remove_tree(str(keep)) is True and not keep.exists()
    assert remove_tree(str(keep)) is False
    assert remove_tree(None) is False
