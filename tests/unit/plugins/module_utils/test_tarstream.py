# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The sender's tar stream (_tarstream.BundleReader): what it emits, what it hashes, what it refuses."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile

import pytest

from ansible_collections.mtd.containers.plugins.module_utils import _bundle, _tarstream
from ansible_collections.mtd.containers.plugins.module_utils._archive import StreamExtractor

LONG = 'd' * 60 + '/' + 'f' * 80   # over the 100 characters of a ustar name: a GNU long-name block


def make_bundle(root):
    bundle = root / 'm-1'
    (bundle / 'criu').mkdir(parents=True)
    (bundle / 'criu' / 'pages-1.img').write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (bundle / 'criu' / 'core-1.img').write_bytes(b'core')
    (bundle / 'criu' / 'empty.img').write_bytes(b'')
    (bundle / os.path.dirname(LONG)).mkdir()
    (bundle / LONG).write_bytes(b'x' * 513)
    (bundle / 'manifest.json').write_text('{}')
    return bundle


def read_all(reader, chunk=1 << 20, hash_inline=True):
    out = bytearray()
    view = memoryview(bytearray(chunk))
    while True:
        got = reader.readinto(view)
        if not got:
            return bytes(out)
        if hash_inline:
            _tarstream.hash_work(reader.take_work())
        out += view[:got]


@pytest.mark.parametrize('chunk', [512, 4096 + 13, 1 << 20])
def test_the_stream_is_a_tar_of_the_bundle_and_every_file_is_hashed_from_the_sent_bytes(tmp_path, chunk):
    bundle = make_bundle(tmp_path)
    hashes = {}
    data = read_all(_tarstream.BundleReader(str(bundle), hashes=hashes), chunk)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[0] == '.' and names.index('./criu') < names.index('./criu/core-1.img')
        for member in members:
            if member.isfile():
                assert tar.extractfile(member).read() == (bundle / member.name).read_bytes()
                assert member.mode == 0o600
            else:
                assert member.isdir() and member.mode == 0o700
    expected = dict((rel, (os.path.getsize(str(bundle / rel)), _bundle.sha256_file(str(bundle / rel))))
                    for rel in _bundle.bundle_files(str(bundle)))
    expected['manifest.json'] = (2, hashlib.sha256(b'{}').hexdigest())
    assert hashes == expected
    assert len(data) % 512 == 0


def test_gnu_tar_and_our_extractor_both_unpack_it(tmp_path):
    bundle = make_bundle(tmp_path)
    data = read_all(_tarstream.BundleReader(str(bundle)))
    ours = tmp_path / 'ours'
    ours.mkdir(mode=0o700)
    extractor = StreamExtractor(str(ours))
    extractor.write(data)
    extractor.close()
    assert extractor.returncode == 0
    gnu = tmp_path / 'gnu'
    gnu.mkdir()
    subprocess.run(['tar', '-xf', '-', '-C', str(gnu)], input=data, check=True)
    for rel in _bundle.bundle_files(str(bundle)) + ['manifest.json']:
        assert (ours / rel).read_bytes() == (bundle / rel).read_bytes() == (gnu / rel).read_bytes()


def test_the_late_file_goes_last_after_its_wait_and_may_use_the_hashes(tmp_path):
    bundle = make_bundle(tmp_path)
    os.unlink(str(bundle / 'manifest.json'))
    hashes = {}
    seen = []

    def wait():
        seen.append(sorted(hashes))
        (bundle / 'manifest.json').write_text('{"late": 1}')

    data = read_all(_tarstream.BundleReader(str(bundle), late=('manifest.json', wait), hashes=hashes), 4096)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert names[-1] == './manifest.json'
    # every other file was hashed before the late file's writer ran
    assert seen == [sorted(_bundle.bundle_files(str(bundle)))]


def test_a_manifest_job_uses_the_streamed_hashes_and_reads_nothing_again(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path)
    os.unlink(str(bundle / 'manifest.json'))
    job = _bundle.ManifestJob(str(bundle), {'name': 'web'}, {'method': 'runc'})
    read_all(_tarstream.BundleReader(str(bundle), late=(_bundle.MANIFEST, job.wait), hashes=job.hashes))
    os.rename(str(bundle / _bundle.MANIFEST), str(tmp_path / 'streamed.json'))
    files = _bundle.write_manifest(str(bundle), {'name': 'web'})['files']
    assert job.manifest['files'] == files
    # a file the stream did not read (or whose size changed) is hashed; the others are not read again
    calls = []
    monkeypatch.setattr(_bundle, 'sha256_file', lambda path: calls.append(path) or '0' * 64)
    known = dict(job.hashes)
    known['criu/core-1.img'] = (99, 'f' * 64)
    del known['criu/empty.img']
    _bundle.write_manifest(str(bundle), {}, known=known)
    assert sorted(os.path.relpath(p, str(bundle)) for p in calls) == ['criu/core-1.img', 'criu/empty.img']


def test_a_link_or_a_file_that_shrinks_is_refused(tmp_path):
    bundle = make_bundle(tmp_path)
    os.symlink('/etc/shadow', str(bundle / 'criu' / 'zz.img'))
    with pytest.raises(_tarstream.StreamReadError, match='criu/zz.img in the bundle is not a regular file'):
        read_all(_tarstream.BundleReader(str(bundle)))
    os.unlink(str(bundle / 'criu' / 'zz.img'))
    os.mkfifo(str(bundle / 'criu' / 'zz.img'))   # never opened (an open would wait for a writer)
    with pytest.raises(_tarstream.StreamReadError, match='criu/zz.img in the bundle is not a regular file'):
        read_all(_tarstream.BundleReader(str(bundle)))
    os.unlink(str(bundle / 'criu' / 'zz.img'))
    reader = _tarstream.BundleReader(str(bundle))
    view = memoryview(bytearray(4096))
    while reader._file is None or reader._rel != 'criu/pages-1.img':   # pylint: disable=protected-access
        reader.readinto(view[:512])
    os.truncate(str(bundle / 'criu' / 'pages-1.img'), 1000)
    with pytest.raises(_tarstream.StreamReadError, match='shrank while it was sent'):
        read_all(reader)


def test_without_digest_the_files_are_listed_unhashed(tmp_path):
    """digest=False: every file sent is recorded with its size and no digest, and nothing is hashed."""
    bundle = tmp_path / 'b'
    (bundle / 'criu').mkdir(parents=True)
    (bundle / 'criu' / 'pages-1.img').write_bytes(b'x' * 5000)
    (bundle / 'empty').write_bytes(b'')
    hashes = {}
    reader = _tarstream.BundleReader(str(bundle), None, hashes, digest=False)
    view = memoryview(bytearray(4096))
    total = 0
    while True:
        got = reader.readinto(view)
        if not got:
            break
        assert reader.take_work() == []
        total += got
    assert hashes == {'criu/pages-1.img': (5000, None), 'empty': (0, None)}
    # 4 headers (., empty, criu, pages-1.img), 10 blocks of data, the two end-of-archive blocks
    assert total == 512 * (1 + 1 + 1 + 10 + 1) + 1024
