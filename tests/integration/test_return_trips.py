# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The moving-target cycle on the lab: a container comes back to hosts it left (A -> B -> A -> C -> A), with a
named volume, and every host it leaves keeps nothing of it (no volume, no bundle, no checkpoint data). And the
shared /dev/shm places made first by an unprivileged user are avoided, never written through.

The lab hosts share this machine's /dev/shm (lab/lab.sh gives each its own /run, /tmp and /var/lib/docker, not
/dev/shm): the traps below are seen by every lab host, so this file runs under the lab lock and puts the
machine's own directories back whatever happens."""

from __future__ import annotations

import glob
import os
import shutil
import stat

import pytest
from lab_helpers import require_lab
from test_migrate import (
    STATE,
    assert_consecutive,
    counter_lines,
    docker,
    migrate,
    record,
    remove_everywhere,
    start_workload,
    status,
)

HOSTS = ('lab-1', 'lab-2', 'lab-3', 'lab-4')
SHM_PLACES = ('/dev/shm/mtd-migrations', '/dev/shm/mtd-incoming')
NOBODY = 65534


def volumes(host):
    return docker(host, 'volume', 'ls', '-q').stdout.split()


def checkpoint_data(rec):
    """Everything of migration ``rec`` still on any host: bundles and their side files in /dev/shm and the
    data roots, and the engine's checkpoint directories of both containers."""
    found = glob.glob('/dev/shm/mtd-*/%s*' % rec['id'])
    for host in HOSTS:
        found += glob.glob('%s/%s/var-lib-docker/mtd-migrations/%s*' % (STATE, host, rec['id']))
        for cid in (rec.get('container_id'), rec.get('target_container_id')):
            found += glob.glob('%s/%s/var-lib-docker/containers/%s/checkpoints/*' % (STATE, host, cid)) if cid else []
    return found


def assert_left_nothing(left, arrived, name, rec):
    assert status(left, name) == 'absent', '%s still has the container' % left
    assert name + '-vol' not in volumes(left), '%s kept the volume %s-vol' % (left, name)
    assert not os.path.exists('%s/%s/var-lib-docker/containers/%s' % (STATE, left, rec['container_id']))
    assert not checkpoint_data(rec), checkpoint_data(rec)
    assert rec['source_volumes'] == {'removed': [name + '-vol'], 'kept': []}, rec.get('source_volumes')
    # the volume lives on where the container went, made by this migration
    labels = docker(arrived, 'volume', 'inspect', '-f', '{{json .Labels}}', name + '-vol').stdout
    assert '"mtd.migration.id":"%s"' % rec['id'] in labels, labels


@pytest.fixture
def wanderer():
    require_lab()
    name = start_workload('lab-1')
    yield name
    remove_everywhere(name)


def test_return_trips_keep_the_counter_and_leave_nothing_behind(wanderer, tmp_path):
    """lab-1 -> lab-2 -> lab-1 -> lab-3 -> lab-1: four moves, three of them back to a host it left."""
    name = wanderer
    here, seen = 'lab-1', 0
    for hop, there in enumerate(['lab-2', 'lab-1', 'lab-3', 'lab-1']):
        report = str(tmp_path / ('hop-%d.json' % hop))
        migrate(name, here, target=there, report=report)
        rec = record(report)
        assert rec['state'] == 'Succeeded' and rec['target'] == there, rec
        assert_left_nothing(here, there, name, rec)
        layer = counter_lines(there, name, '/state/counter.log')
        volume = counter_lines(there, name, '/vol/counter.log')
        assert_consecutive(layer, 'the writable-layer file after hop %d' % hop)
        assert_consecutive(volume, 'the volume file after hop %d' % hop)
        assert len(volume) > seen, 'the counter did not go on in hop %d' % hop
        seen = len(volume)
        here = there
    # the process counted on from its memory through all four moves
    logs = [int(x) for x in docker('lab-1', 'logs', name).stdout.split()]
    assert logs and logs[0] > 1 and logs == list(range(logs[0], logs[0] + len(logs))), logs[:5]
    assert [h for h in HOSTS if status(h, name) != 'absent'] == ['lab-1']
    assert [h for h in HOSTS if name + '-vol' in volumes(h)] == ['lab-1']


def test_kept_source_volume_is_reported_and_blocks_the_way_back_clearly(wanderer, tmp_path):
    name = wanderer
    first = str(tmp_path / 'out.json')
    migrate(name, 'lab-1', target='lab-2', report=first, extra=['-e', 'migrate_keep_source_volumes=true'])
    rec = record(first)
    assert rec['state'] == 'Succeeded', rec
    assert rec['source_volumes'] == {'removed': [], 'kept': [{'name': name + '-vol', 'reason': 'migrate_keep_source_volumes'}]}
    assert name + '-vol' in volumes('lab-1') and status('lab-1', name) == 'absent'
    # the way back finds the kept copy: refused before anything is frozen, saying why and what to do
    back = str(tmp_path / 'back.json')
    proc = migrate(name, 'lab-2', target='lab-1', report=back, check=False)
    assert proc.returncode != 0 and 'Traceback' not in proc.stdout
    failed = record(back)
    assert failed['state'] == 'Failed' and 'refused before the freeze' in failed['error'], failed
    assert ('A volume named %s-vol already exists on this host and does not belong to migration %s: it was not made '
            'by a migration' % (name, failed['id'])) in failed['error'], failed['error']
    assert 'migrate_keep_source_volumes' in failed['error'] and 'docker volume rm %s-vol' % name in failed['error']
    assert status('lab-2', name) == 'running' and status('lab-1', name) == 'absent'
    before = counter_lines('lab-2', name, '/vol/counter.log')
    assert_consecutive(before, 'the volume file after the refusal')
    # once the operator removed it, the container comes back
    docker('lab-1', 'volume', 'rm', name + '-vol')
    migrate(name, 'lab-2', target='lab-1', report=back)
    rec = record(back)
    assert rec['state'] == 'Succeeded', rec
    assert_left_nothing('lab-2', 'lab-1', name, rec)
    after = counter_lines('lab-1', name, '/vol/counter.log')
    assert_consecutive(after, 'the volume file back on lab-1')
    assert len(after) > len(before)


# ---------------------------------------------------------------------------------------------------
# /dev/shm places made first by an unprivileged user

@pytest.fixture
def shm_traps(tmp_path):
    """/dev/shm/mtd-migrations: a link (nobody's) to nobody's 0777 directory; /dev/shm/mtd-incoming: nobody's
    0777 directory. The machine's own directories are moved aside meanwhile and put back afterwards."""
    saved = {}
    suffix = '.saved-%d' % os.getpid()
    bait = '/dev/shm/mtd-trap-%d' % os.getpid()
    try:
        for place in SHM_PLACES:
            if os.path.lexists(place):
                os.rename(place, place + suffix)
                saved[place] = place + suffix
        os.mkdir(bait)
        os.chmod(bait, 0o777)
        os.chown(bait, NOBODY, NOBODY)
        os.symlink(bait, SHM_PLACES[0])
        os.lchown(SHM_PLACES[0], NOBODY, NOBODY)
        os.mkdir(SHM_PLACES[1])
        os.chmod(SHM_PLACES[1], 0o777)
        os.chown(SHM_PLACES[1], NOBODY, NOBODY)
        yield {'bait': bait, 'incoming': SHM_PLACES[1], 'link': SHM_PLACES[0]}
    finally:
        for place in SHM_PLACES:
            if os.path.islink(place) or (os.path.isdir(place) and os.lstat(place).st_uid == NOBODY):
                os.unlink(place) if os.path.islink(place) else shutil.rmtree(place)
        shutil.rmtree(bait, ignore_errors=True)
        for place, aside in saved.items():
            if not os.path.lexists(place):
                os.rename(aside, place)


def test_shm_places_of_another_user_are_avoided_and_not_written_through(wanderer, shm_traps, tmp_path):
    name = wanderer
    trap = {p: os.lstat(p) for p in (shm_traps['link'], shm_traps['incoming'], shm_traps['bait'])}
    report = str(tmp_path / 'avoided.json')
    proc = migrate(name, 'lab-1', target='lab-2', report=report, extra=['-v'])
    rec = record(report)
    assert rec['state'] == 'Succeeded', rec
    # both sides went to their data roots instead, and said why
    assert rec['phases']['bundle_on_tmpfs'] is False
    said = proc.stdout + proc.stderr
    assert '/dev/shm/mtd-incoming is owned by uid 65534, not by uid 0' in said, said[-3000:]
    assert '/dev/shm/mtd-migrations is a symbolic link' in said, said[-3000:]
    # nothing was written through them, and they were neither chmod'ed nor chown'ed
    assert os.listdir(shm_traps['bait']) == [] and os.listdir(shm_traps['incoming']) == []
    for path, before in trap.items():
        after = os.lstat(path)
        assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid), path
    # the data-root places are root's and private, and empty again
    for host in ('lab-1', 'lab-2'):
        place = '%s/%s/var-lib-docker/mtd-migrations' % (STATE, host)
        info = os.lstat(place)
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == 0, place
        assert not glob.glob(place + '/%s*' % rec['id'])
    assert_left_nothing('lab-1', 'lab-2', name, rec)
    assert_consecutive(counter_lines('lab-2', name, '/vol/counter.log'), 'the volume file')

    # a dest the operator names that another user can write (here nobody's 0777 directory in lab-2's /tmp) is
    # refused before anything is frozen, and left as it was
    given = '%s/lab-2/tmp/mtd-given-%d' % (STATE, os.getpid())
    os.mkdir(given)
    try:
        os.chmod(given, 0o777)
        os.chown(given, NOBODY, NOBODY)
        back = str(tmp_path / 'refused.json')
        proc = migrate(name, 'lab-2', target='lab-1', report=back, check=False,
                       extra=['-e', 'migrate_checkpoint_dir=/tmp/%s' % os.path.basename(given)])
        failed = record(back)
        assert failed['state'] == 'Failed' and 'refused before the freeze' in failed['error'], failed
        assert 'is owned by uid 65534, not by uid 0' in failed['error'], failed['error']
        assert os.listdir(given) == [] and stat.S_IMODE(os.lstat(given).st_mode) == 0o777
        assert 'Traceback' not in proc.stdout
    finally:
        shutil.rmtree(given, ignore_errors=True)
    assert status('lab-2', name) == 'running' and status('lab-1', name) == 'absent'
