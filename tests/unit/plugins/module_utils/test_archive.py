# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_archive: hostile tar archives and streams (built member by member) against the unpacking rules."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _archive
from ansible_collections.mtd.containers.plugins.module_utils._migration import MigrationError


def member(name, kind=tarfile.REGTYPE, data=b'', mode=0o644, linkname='', major=0, minor=0, uid=0):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    info.devmajor, info.devminor = major, minor
    info.uid = uid
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def archive(path, *members):
    with tarfile.open(str(path), 'w', format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, data)
    return str(path)


def stream(*members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w|', format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, data)
    return buf.getvalue()


@pytest.mark.parametrize('name, expected', [
    ('./a/b', 'a/b'), ('a/', 'a'), ('.', None), ('./', None), ('criu/pages-1.img', 'criu/pages-1.img'),
])
def test_member_path(name, expected):
    assert _archive.member_path(name, 'x') == expected


@pytest.mark.parametrize('name', ['/etc/passwd', '../x', 'a/../../x', 'a//b', 'a/./b', 'a\0b'])
def test_member_path_refuses(name):
    with pytest.raises(MigrationError):
        _archive.member_path(name, 'x')


# ---------------------------------------------------------------------------------------------------
# the writable layer and the volumes: the listing check

OK_LAYER = [
    member('.', tarfile.DIRTYPE, mode=0o755),
    member('./etc', tarfile.DIRTYPE),
    member('./etc/hosts.new', data=b'x'),
    member('./etc/deleted', tarfile.CHRTYPE),                      # an overlay whiteout, 0:0
    member('./bin/su', data=b'ELF', mode=0o4755),                  # setuid, in the container's own layer
    member('./bin/sh', tarfile.SYMTYPE, linkname='/bin/busybox'),  # absolute targets are the container's
    member('./etc/hosts.link', tarfile.LNKTYPE, linkname='./etc/hosts.new'),
]


def test_a_normal_layer_passes(tmp_path):
    assert _archive.check_archive(archive(tmp_path / 'l.tar', *OK_LAYER), _archive.LAYER, dest=str(tmp_path)) == 7


@pytest.mark.parametrize('bad, kind, needle', [
    (member('./mem', tarfile.CHRTYPE, major=1, minor=1), _archive.LAYER, 'character device 1:1'),
    (member('./sda', tarfile.BLKTYPE, major=8), _archive.LAYER, 'block device 8:0'),
    (member('./fifo', tarfile.FIFOTYPE), _archive.LAYER, 'FIFO'),
    (member('./etc/deleted', tarfile.CHRTYPE), _archive.VOLUME, 'character device 0:0'),   # no whiteouts in a volume
    (member('./sh', data=b'ELF', mode=0o4755), _archive.VOLUME, 'setuid or setgid'),
    (member('./sh', data=b'ELF', mode=0o2755), _archive.VOLUME, 'setuid or setgid'),
    (member('../escape', data=b'x'), _archive.VOLUME, 'leaves or bends'),
    (member('/etc/cron.d/x', data=b'x'), _archive.LAYER, 'absolute'),
    (member('./h', tarfile.LNKTYPE, linkname='/etc/shadow'), _archive.VOLUME, 'absolute'),
    (member('./h', tarfile.LNKTYPE, linkname='etc/not-in-archive'), _archive.LAYER, 'not a regular file of this archive'),
])
def test_a_bad_member_is_refused(tmp_path, bad, kind, needle):
    path = archive(tmp_path / 'bad.tar', member('./etc', tarfile.DIRTYPE), bad)
    with pytest.raises(MigrationError, match=needle):
        _archive.check_archive(path, kind, dest=str(tmp_path))


def test_nothing_is_written_through_a_link_of_the_archive(tmp_path):
    path = archive(tmp_path / 'l.tar', member('./x', tarfile.SYMTYPE, linkname='/'),
                   member('./x/etc/shadow', data=b'root::0:0'))
    with pytest.raises(MigrationError, match='below the symbolic link x'):
        _archive.check_archive(path, _archive.VOLUME)
    # nor a hard link made through one
    path = archive(tmp_path / 'h.tar', member('./x', tarfile.SYMTYPE, linkname='/etc'),
                   member('./h', tarfile.LNKTYPE, linkname='./x/shadow'))
    with pytest.raises(MigrationError, match='hard link'):
        _archive.check_archive(path, _archive.VOLUME)


def test_nothing_is_written_through_a_link_already_in_the_destination(tmp_path):
    dest = tmp_path / 'vol'
    dest.mkdir()
    os.symlink('/etc', str(dest / 'conf'))
    path = archive(tmp_path / 'v.tar', member('./conf/passwd', data=b'x'))
    with pytest.raises(MigrationError, match='below the symbolic link conf'):
        _archive.check_archive(path, _archive.VOLUME, dest=str(dest))


def test_not_a_tar_archive(tmp_path):
    (tmp_path / 'junk.tar').write_bytes(b'\x01' * 2000)
    with pytest.raises(MigrationError, match='is not a readable tar archive'):
        _archive.check_archive(str(tmp_path / 'junk.tar'), _archive.VOLUME)


# ---------------------------------------------------------------------------------------------------
# the bundle stream

def test_the_stream_makes_private_files_and_directories_only(tmp_path):
    staging = tmp_path / 'staging'
    staging.mkdir(mode=0o700)
    data = stream(member('.', tarfile.DIRTYPE, mode=0o777, uid=65534), member('./criu', tarfile.DIRTYPE, mode=0o777),
                  member('./criu/pages-1.img', data=b'p' * 3000000, mode=0o666, uid=65534),
                  member('./manifest.json', data=b'{}', mode=0o644))
    stats = _archive.extract_stream(io.BytesIO(data), str(staging))
    assert stats == {'files': 2, 'bytes': 3000002}
    assert stat.S_IMODE(os.stat(str(staging)).st_mode) == 0o700   # the archive's '.' entry is ignored
    assert stat.S_IMODE(os.stat(str(staging / 'criu')).st_mode) == 0o700
    info = os.stat(str(staging / 'criu' / 'pages-1.img'))
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
    assert (staging / 'criu' / 'pages-1.img').read_bytes() == b'p' * 3000000


@pytest.mark.parametrize('bad, needle', [
    (member('./mem', tarfile.CHRTYPE, major=1, minor=1), 'character device 1:1'),
    (member('./fifo', tarfile.FIFOTYPE), 'FIFO'),
    (member('./link', tarfile.SYMTYPE, linkname='/etc'), 'symbolic link'),
    (member('./hard', tarfile.LNKTYPE, linkname='./manifest.json'), 'hard link'),
    (member('./sh', data=b'ELF', mode=0o4755), 'setuid or setgid'),
    (member('../../etc/cron.d/x', data=b'x'), 'leaves or bends'),
    (member('/etc/cron.d/x', data=b'x'), 'absolute'),
    (member('./manifest.json', data=b'again'), 'twice'),
])
def test_the_stream_refuses(tmp_path, bad, needle):
    staging = tmp_path / 'staging'
    staging.mkdir(mode=0o700)
    data = stream(member('./manifest.json', data=b'{}'), bad)
    with pytest.raises(MigrationError, match=needle):
        _archive.extract_stream(io.BytesIO(data), str(staging))
    assert sorted(os.listdir(str(tmp_path))) == ['staging']
    assert os.listdir(str(staging)) == ['manifest.json']


def test_the_extractor_behaves_like_a_process_of_a_pipeline(tmp_path):
    staging = tmp_path / 'staging'
    staging.mkdir(mode=0o700)
    proc = _archive.StreamExtractor(str(staging))
    proc.stdin.write(stream(member('./a', data=b'1' * 100)) + b'\0' * 20480)   # trailing padding is read
    proc.stdin.close()
    assert proc.wait(10) == 0 and proc.stderr.read() == b''
    assert (staging / 'a').read_bytes() == b'1' * 100
    bad = _archive.StreamExtractor(str(tmp_path / 'staging'))
    try:
        bad.stdin.write(stream(member('./d', tarfile.CHRTYPE, major=1, minor=3)))
    except BrokenPipeError:
        pass
    bad.kill()
    assert bad.wait(10) == 1 and b'character device 1:3' in bad.stderr.read()
    assert not os.path.exists(str(staging / 'd'))
