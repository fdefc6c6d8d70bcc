# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared by the checkpoint, restore, container_state and checkpoint_transfer module tests.

``DockerModel`` puts a small, stateful Docker engine behind fixtures/fake_engine.py (the real HTTP
server on a Unix socket): containers that pause, resume, start, stop, get killed and removed the way the
engine does it (a paused container refuses ``stop``; a running one refuses a delete without force),
images, volumes, pulls, creates and execs. Every request stays recorded in ``engine.requests``.

Also: running a module's main() through module_harness.py (with its warnings, and no traceback in a
failure), and fake criu and runc scripts.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import stat
from urllib.parse import unquote

import pytest

from ansible_collections.mtd.containers.tests.unit.plugins.modules import module_harness

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'module_utils', 'fixtures')


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake_engine = _load('mtd_fake_engine_mig', os.path.join(FIXTURES, 'fake_engine.py'))

REGISTRY = '127.0.0.1:5000'
IMAGE_ID = 'sha256:' + '1' * 64
DIGEST = 'sha256:' + 'd' * 64
IMAGE_REF = REGISTRY + '/mtd/busybox:latest'
IMAGE_DIGEST_REF = REGISTRY + '/mtd/busybox@' + DIGEST

# Requests that change the engine's state; check mode must send none of them.
STATE_CHANGING = re.compile(r'^(POST /containers/[^/]+/(pause|unpause|start|stop|kill|restart|exec)'
                            r'|POST /containers/create|POST /images/create|POST /volumes/create'
                            r'|POST /exec/.*|DELETE .*)$')


# ---------------------------------------------------------------------------------------------------
# Running a module

def run_module(module, args, fail=False):
    """Run ``module.main()``; return its result (and the warnings under ``_warnings``).

    A failure must be one clear message, never a traceback.
    """
    warnings = []
    result = module_harness.run_module(module.main, args, expect_failure=fail, warnings=warnings)
    result['_warnings'] = warnings
    if fail:
        assert 'Traceback' not in result['msg'] and 'exception' not in result, result
    return result


# ---------------------------------------------------------------------------------------------------
# Fake binaries

FAKE_CRIU = r"""#!/bin/sh
case "$*" in
  --version) echo "Version: 4.1.1" ;;
  check) echo "Looks good." ;;
  "check --feature mem_dirty_track") echo "Warn  (criu/cr-check.c:824): Dirty tracking is OFF." >&2; exit 1 ;;
  *) exit 1 ;;
esac
"""

BROKEN_CRIU = r"""#!/bin/sh
case "$*" in
  check) echo "Error (criu/cr-check.c:1234): CRIU needs CAP_SYS_ADMIN" >&2; exit 1 ;;
  *) exit 1 ;;
esac
"""

# runc checkpoint --image-path I --work-path W ... ID: CRIU images into I, dump.log into W; the args into
# RUNC_ARGS when that variable names a file.
FAKE_RUNC = r"""#!/bin/sh
[ -n "$RUNC_ARGS" ] && echo "$*" > "$RUNC_ARGS"
images=; work=
while [ $# -gt 0 ]; do
  case "$1" in
    --image-path) images=$2; shift ;;
    --work-path) work=$2; shift ;;
  esac
  shift
done
echo "(00.000100) Dumping finished successfully" > "$work/dump.log"
printf 'pages of the counter process' > "$images/pages-1.img"
printf 'core' > "$images/core-1.img"
printf '["/dev/null","pipe:[1]","pipe:[2]"]' > "$images/descriptors.json"
"""

FAILING_RUNC = r"""#!/bin/sh
work=
while [ $# -gt 0 ]; do
  case "$1" in --work-path) work=$2; shift ;; esac
  shift
done
printf '(00.01) Error (criu/cr-dump.c:1637): Dumping FAILED.\n(00.01) Error (criu/sk-unix.c:123): unix: external socket\n' > "$work/dump.log"
echo "criu failed: type NOTIFY errno 0" >&2
exit 1
"""


def write_script(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


# ---------------------------------------------------------------------------------------------------
# The stateful engine

def _status(inspect):
    return inspect['State']['Status']


class DockerModel:
    """Containers, images and volumes behind a FakeEngine; ``root`` is a tmp dir for layers and volumes."""

    def __init__(self, socket_path, root, experimental=True):
        self.root = str(root)
        self.engine = fake_engine.FakeEngine(socket_path)
        self.engine.routes = _Router(self)
        self.info = fake_engine.load_json('docker-info-20.10.json')
        self.info['ExperimentalBuild'] = experimental
        self.info['DockerRootDir'] = os.path.join(self.root, 'data-root')
        os.makedirs(self.info['DockerRootDir'], exist_ok=True)
        self.containers = {}
        self.images = {}
        self.volumes = {}
        self.execs = {}
        self.exec_exit_code = 0
        self.start_error = None
        self.errors = {}          # action ('/pause', ...) -> (status, message) the engine answers instead
        self.started_from_checkpoint = []
        self.runc_conf_path = None   # set by the runc_conf fixture: what runc would hand CRIU
        self.seen_at_start = []      # (runc.conf text or None, files in the engine's checkpoint dir)
        self.serial = 0

    @property
    def url(self):
        return self.engine.url

    @property
    def requests(self):
        return self.engine.requests

    def close(self):
        self.engine.close()

    def calls(self):
        return ['%s %s' % (r['method'], r['path']) for r in self.engine.requests]

    def state_changes(self):
        return [c for c in self.calls() if STATE_CHANGING.match(c)]

    # -- setting the scene -----------------------------------------------------------------------

    def add_image(self, ref=IMAGE_REF, image_id=IMAGE_ID, repo_digests=(IMAGE_DIGEST_REF,)):
        image = {'Id': image_id, 'RepoTags': [ref] if ref else [], 'RepoDigests': list(repo_digests)}
        self.images[image_id] = image
        return image

    def add_volume(self, name, labels=None):
        mountpoint = os.path.join(self.root, 'volumes', name, '_data')
        os.makedirs(mountpoint, exist_ok=True)
        self.volumes[name] = {'Name': name, 'Driver': 'local', 'Mountpoint': mountpoint, 'Labels': labels or {},
                              'Scope': 'local'}
        return self.volumes[name]

    def add_container(self, name, status='running', image=IMAGE_REF, image_id=IMAGE_ID, labels=None,
                      network_mode='none', privileged=False, volumes=(), binds=(), cid=None):
        self.serial += 1
        cid = cid or ('%02d' % self.serial) * 32
        upper = os.path.join(self.root, 'overlay2', cid, 'diff')
        os.makedirs(upper, exist_ok=True)
        mounts = []
        for vol in volumes:
            volume = self.volumes.get(vol) or self.add_volume(vol)
            mounts.append({'Type': 'volume', 'Name': vol, 'Source': volume['Mountpoint'], 'Destination': '/' + vol,
                           'Driver': 'local', 'Mode': 'z', 'RW': True})
        for source, destination in binds:
            mounts.append({'Type': 'bind', 'Source': source, 'Destination': destination, 'Mode': '', 'RW': True})
        inspect = {
            'Id': cid,
            'Name': '/' + name,
            'Image': image_id,
            'State': {'Status': status, 'Running': status in ('running', 'paused'), 'Paused': status == 'paused',
                      'ExitCode': 0, 'StartedAt': '2026-11-28T10:00:00Z'},
            'Config': {'Hostname': cid[:12], 'Image': image, 'Env': ['PATH=/bin'], 'Cmd': ['sh', '-c', 'count'],
                       'Labels': dict(labels or {})},
            'HostConfig': {'NetworkMode': network_mode, 'Privileged': privileged, 'Memory': 33554432,
                           'Binds': ['%s:%s' % b for b in binds] + ['%s:/%s' % (v, v) for v in volumes] or None},
            'Mounts': mounts,
            'GraphDriver': {'Name': 'overlay2', 'Data': {'UpperDir': upper}},
        }
        self.containers[cid] = inspect
        return inspect

    def container(self, ref):
        ref = unquote(ref)
        for inspect in self.containers.values():
            if ref in (inspect['Id'], inspect['Name'].lstrip('/')) or (len(ref) >= 12 and inspect['Id'].startswith(ref)):
                return inspect
        return None

    def status(self, ref):
        inspect = self.container(ref)
        return _status(inspect) if inspect else 'absent'

    # -- the API ---------------------------------------------------------------------------------

    def handle(self, method, path, request):  # pylint: disable=too-many-return-statements,too-many-branches
        query = dict((k, v[0]) for k, v in request['query'].items())
        body = json.loads(request['body'].decode('utf-8')) if request['body'] else None
        if path == '/_ping':
            return 200, 'OK', {'Docker-Experimental': 'true'}
        if (method, path) == ('GET', '/version'):
            return 200, fake_engine.load_json('docker-version-20.10.json')
        if (method, path) == ('GET', '/info'):
            return 200, self.info
        if (method, path) == ('GET', '/containers/json'):
            return 200, self.listing(query)
        if (method, path) == ('POST', '/containers/create'):
            return self.create(query.get('name'), body)
        match = re.match(r'^/containers/([^/]+)(/[a-z]+)?$', path)
        if match:
            inspect = self.container(match.group(1))
            if inspect is None:
                return 404, {'message': 'No such container: %s' % unquote(match.group(1))}
            return self.container_call(method, match.group(2) or '', inspect, query, body)
        match = re.match(r'^/images/(.+)/json$', path)
        if match and method == 'GET':
            image = self.image(unquote(match.group(1)))
            return (200, image) if image else (404, {'message': 'No such image: %s' % unquote(match.group(1))})
        if (method, path) == ('POST', '/images/create'):
            return self.pull(query)
        if (method, path) == ('GET', '/volumes'):
            return 200, {'Volumes': self.volume_listing(query), 'Warnings': None}
        if (method, path) == ('POST', '/volumes/create'):
            volume = self.add_volume(body['Name'], body.get('Labels'))
            return 201, volume
        match = re.match(r'^/volumes/([^/]+)$', path)
        if match:
            name = unquote(match.group(1))
            if name not in self.volumes:
                return 404, {'message': 'get %s: no such volume' % name}
            if method == 'DELETE':
                users = [c['Id'] for c in self.containers.values()
                         if any(m.get('Name') == name for m in c.get('Mounts') or [])]
                if users:
                    return 409, {'message': 'remove %s: volume is in use - [%s]' % (name, ', '.join(users))}
                del self.volumes[name]
                return 204, None
            return 200, self.volumes[name]
        match = re.match(r'^/exec/([^/]+)/(start|json)$', path)
        if match:
            return self.exec_call(match.group(1), match.group(2))
        return 404, {'message': 'page not found'}

    def listing(self, query):
        filters = json.loads(query['filters']) if query.get('filters') else {}
        wanted = filters.get('label', [])
        out = []
        for c in self.containers.values():
            if not query.get('all') and not c['State']['Running']:
                continue
            mounted = [m.get('Name') for m in c.get('Mounts') or [] if m.get('Type') == 'volume']
            if filters.get('volume') and not set(filters['volume']) & set(mounted):
                continue
            labels = c['Config'].get('Labels') or {}
            if all(labels.get(f.split('=', 1)[0]) == f.split('=', 1)[1] for f in wanted):
                out.append({'Id': c['Id'], 'Names': [c['Name']], 'Image': c['Config']['Image'],
                            'ImageID': c['Image'], 'State': _status(c), 'Labels': labels})
        return out

    def volume_listing(self, query):
        wanted = json.loads(query['filters']).get('label', []) if query.get('filters') else []
        return [v for v in self.volumes.values()
                if all((v.get('Labels') or {}).get(f.split('=', 1)[0]) == f.split('=', 1)[1] for f in wanted)]

    def image(self, ref):
        if ref in self.images:
            return self.images[ref]
        for image in self.images.values():
            if ref in image['RepoTags'] or ref in image['RepoDigests']:
                return image
        return None

    def pull(self, query):
        ref = '%s@%s' % (query['fromImage'], query['tag'])
        if query['tag'] != DIGEST:
            return 200, [b'{"error": "manifest for %s not found"}\n' % ref.encode()]
        self.add_image(ref=None, repo_digests=(ref,))
        return 200, [b'{"status": "Pulling from mtd/busybox"}\n', b'{"status": "Digest: %s"}\n' % DIGEST.encode()]

    def create(self, name, body):
        if self.container(name):
            return 409, {'message': 'Conflict. The container name "/%s" is already in use.' % name}
        if not self.image(body['Image']):
            return 404, {'message': 'No such image: %s' % body['Image']}
        host_config = body.pop('HostConfig', {})
        volumes = [m['Source'] for m in host_config.get('Mounts') or [] if m['Type'] == 'volume']
        inspect = self.add_container(name, status='created', image=body['Image'], labels=body.get('Labels'),
                                     network_mode=host_config.get('NetworkMode'), volumes=volumes)
        inspect['Config'].update(body)
        inspect['HostConfig'].update(host_config)
        return 201, {'Id': inspect['Id'], 'Warnings': []}

    def container_call(self, method, action, inspect, query, body):  # pylint: disable=too-many-return-statements
        state = inspect['State']
        name = inspect['Name'].lstrip('/')
        if method == 'GET' and action == '/json':
            return 200, copy.deepcopy(inspect)
        if method == 'DELETE' and action == '':
            if state['Running'] and query.get('force') not in ('1', 'true', 'True'):
                return 409, {'message': 'You cannot remove a running container %s. Stop the container before '
                                        'attempting removal or force remove' % inspect['Id']}
            del self.containers[inspect['Id']]
            return 204, None
        if method != 'POST':
            return 404, {'message': 'page not found'}
        if action in self.errors:
            return self.errors[action][0], {'message': self.errors[action][1]}
        if action == '/pause':
            if not state['Running'] or state['Paused']:
                return 409, {'message': 'Container %s is not running' % inspect['Id']}
            state.update(Paused=True, Status='paused')
        elif action == '/unpause':
            if not state['Paused']:
                return 500, {'message': 'Container %s is not paused' % inspect['Id']}
            state.update(Paused=False, Status='running')
        elif action == '/start':
            if state['Running']:
                return 304, None
            if query.get('checkpoint') and self.start_error:
                # CRIU writes its restore.log into the work-dir that runc.conf names, if any
                conf = self.runc_conf_path and os.path.exists(self.runc_conf_path) and open(self.runc_conf_path).read()
                for line in (conf or '').splitlines():
                    if line.startswith('work-dir '):
                        with open(os.path.join(line.split(' ', 1)[1], 'restore.log'), 'w') as handle:
                            handle.write('(00.01) Error (criu/cr-restore.c:1) restore failed in the fake\n')
            if self.start_error:
                return 500, {'message': self.start_error}
            if query.get('checkpoint'):
                self.started_from_checkpoint.append((name, query['checkpoint']))
                cp_dir = os.path.join(self.info['DockerRootDir'], 'containers', inspect['Id'], 'checkpoints',
                                      query['checkpoint'])
                conf = None
                if self.runc_conf_path and os.path.exists(self.runc_conf_path):
                    with open(self.runc_conf_path) as handle:
                        conf = handle.read()
                self.seen_at_start.append((conf, sorted(os.listdir(cp_dir)) if os.path.isdir(cp_dir) else None))
            state.update(Running=True, Paused=False, Status='running')
        elif action == '/stop':
            if state['Paused']:
                return 409, {'message': 'cannot stop container: %s: Container %s is paused. Unpause the container '
                                        'before stopping or killing' % (name, inspect['Id'])}
            if not state['Running']:
                return 304, None
            state.update(Running=False, Status='exited')
        elif action == '/kill':
            if not state['Running']:
                return 409, {'message': 'Cannot kill container: %s: Container %s is not running' % (name, inspect['Id'])}
            state.update(Running=False, Paused=False, Status='exited', ExitCode=137)
        elif action == '/exec':
            exec_id = 'e%063d' % (len(self.execs) + 1)
            self.execs[exec_id] = {'Cmd': body['Cmd'], 'Container': inspect['Id']}
            return 201, {'Id': exec_id}
        else:
            return 404, {'message': 'page not found'}
        return 204, None

    def exec_call(self, exec_id, action):
        if exec_id not in self.execs:
            return 404, {'message': 'No such exec instance: %s' % exec_id}
        if action == 'start':
            text = ('ran %s\n' % ' '.join(self.execs[exec_id]['Cmd'])).encode()
            return 200, b'\x01\x00\x00\x00' + len(text).to_bytes(4, 'big') + text
        return 200, {'ExitCode': self.exec_exit_code, 'Running': False}


class _Router(dict):
    """FakeEngine's route table, answered by the model for every (method, path)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def get(self, key, default=None):
        method, path = key
        return lambda request: self.model.handle(method, path, request)


@pytest.fixture
def runc_conf(tmp_path, monkeypatch):
    """Point the runc CRIU configuration file and its lock into tmp_path (never the machine's /etc)."""
    from ansible_collections.mtd.containers.plugins.module_utils import _criu
    path = str(tmp_path / 'etc-criu' / 'runc.conf')
    monkeypatch.setattr(_criu, 'RUNC_CONF', path)
    monkeypatch.setattr(_criu, 'RUNC_CONF_LOCK', str(tmp_path / 'run' / 'runc-criu.lock'))
    return path


@pytest.fixture
def model(tmp_path_factory):
    """A DockerModel with the busybox image; the socket lives in a short /tmp path."""
    sockdir = tmp_path_factory.mktemp('sock')
    path = str(sockdir / 'd.sock')
    if len(path) > 100:  # AF_UNIX paths are short
        import tempfile
        path = os.path.join(tempfile.mkdtemp(prefix='mtd-', dir='/tmp'), 'd.sock')
    engine = DockerModel(path, tmp_path_factory.mktemp('engine'))
    engine.add_image()
    yield engine
    engine.close()
