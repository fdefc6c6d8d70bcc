# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Container primitives shared by every module that creates, replaces or waits for a container.

This is a private module_utils file (leading underscore): its API may change without notice. Python 3.8+.
The pure parts (a container's spec, the create body) do no I/O; the others talk to the engine only
through the ``_docker.DockerClient`` handed in.

- :func:`container_spec` turns ``GET /containers/{id}/json`` into a spec (a JSON-safe dict: ``config``,
  ``host_config``, ``mounts``, ``networks`` ...); :func:`create_body` turns a spec into the
  ``POST /containers/create`` body. :func:`recreate_body` is both for a container recreated on the same
  engine from another image (container_recreate, confine); a migration captures the spec on the source
  and creates from it on the target with ``mounts=REBUILD``.
- :func:`replace_container`: the old container is parked under another name, the new one created (under
  the old name), the old one stopped, the new one started and checked; any failure removes the new one
  and puts the old one back as it was; on success the parked one is removed.
- :func:`wait_running`: poll until the container runs (and passes a health command, or its image's
  ``HEALTHCHECK``), stops, or the time or the tries run out. Returns a small result dict.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError, split_image_reference
from ansible_collections.mtd.containers.plugins.module_utils._docker import DockerClient, DockerError

# Config keys whose value the container inherits from its image unless the user set them.
IMAGE_DEFAULT_KEYS = ('Cmd', 'Entrypoint', 'WorkingDir', 'User', 'StopSignal', 'Healthcheck', 'ExposedPorts',
                      'Volumes', 'OnBuild', 'Shell')

# create_body's two ways of mounting: KEEP the engine's own Binds/Mounts (same engine) and bind the volumes
# they miss by name; REBUILD every mount from the spec's mount list (a spec that travelled to another engine).
KEEP = 'keep'
REBUILD = 'rebuild'

# Statuses from which a container that is not running yet may still get there.
_NOT_YET_RUNNING = ('created', 'restarting')


# ---------------------------------------------------------------------------------------------------
# Pure: image references

def repository(reference: Optional[str]) -> str:
    """``registry[:port]/repository`` of an image reference, without tag and digest."""
    return split_image_reference(reference)[0]


def repo_digest_for(reference: Optional[str], repo_digests: Optional[Sequence[str]]) -> Optional[str]:
    """The ``repo@sha256:...`` of ``repo_digests`` (an image's RepoDigests) for the image ``reference``.

    Prefer the digest of the same repository; else the first one; None when the image has none (it was
    never pushed to or pulled from a registry).
    """
    if not repo_digests:
        return None
    wanted = repository(reference)
    for digest_ref in repo_digests:
        if repository(digest_ref) == wanted:
            return digest_ref
    return repo_digests[0]


# ---------------------------------------------------------------------------------------------------
# Pure: inspect -> spec -> create body

def _mount_entries(inspect: Dict[str, Any]) -> List[Dict[str, Any]]:
    host_config = inspect.get('HostConfig') or {}
    # --mount type=tmpfs keeps its size and mode only in HostConfig.Mounts
    tmpfs_options = dict((spec.get('Target'), spec.get('TmpfsOptions'))
                         for spec in host_config.get('Mounts') or [] if spec.get('Type') == 'tmpfs')
    mounts = []
    for m in inspect.get('Mounts') or []:
        entry = {
            'type': m.get('Type'),
            'name': m.get('Name'),
            'source': m.get('Source'),
            'destination': m.get('Destination'),
            'driver': m.get('Driver'),
            'rw': m.get('RW', True),
            'mode': m.get('Mode', ''),
            'propagation': m.get('Propagation') or '',
        }
        if m.get('Type') == 'tmpfs' and tmpfs_options.get(m.get('Destination')):
            entry['tmpfs_options'] = tmpfs_options[m.get('Destination')]
        mounts.append(entry)
    return mounts


def _drop_inherited(config: Dict[str, Any], image_config: Dict[str, Any]) -> None:
    """Leave out what ``config`` only inherited from the image (Env entries, labels, Cmd ...), in place."""
    image_env = set(image_config.get('Env') or [])
    env = [item for item in (config.get('Env') or []) if item not in image_env]
    if env:
        config['Env'] = env
    else:
        config.pop('Env', None)
    image_labels = image_config.get('Labels') or {}
    config['Labels'] = dict((k, v) for k, v in (config.get('Labels') or {}).items() if image_labels.get(k) != v)
    for key in IMAGE_DEFAULT_KEYS:
        if key in config and config[key] == image_config.get(key):
            config.pop(key)


def _endpoints(inspect: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The endpoint of the network-mode network (the API before 1.44 takes one endpoint at create)."""
    container_id = inspect.get('Id') or ''
    mode = (inspect.get('HostConfig') or {}).get('NetworkMode') or 'default'
    endpoints = {}
    for net_name, net in ((inspect.get('NetworkSettings') or {}).get('Networks') or {}).items():
        if net_name != mode or net_name in ('none', 'host', 'bridge', 'default'):
            continue
        endpoint = {}
        if net.get('Aliases'):
            endpoint['Aliases'] = [a for a in net['Aliases'] if not container_id.startswith(a)]
        if net.get('IPAMConfig'):
            endpoint['IPAMConfig'] = net['IPAMConfig']
        endpoints[net_name] = endpoint
    return endpoints


def container_spec(inspect: Dict[str, Any], image_config: Optional[Dict[str, Any]] = None,
                   keep_hostname: bool = True, config_keys: Optional[Sequence[str]] = None,
                   host_config_keys: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """What recreates the container of ``inspect`` (``GET /containers/{id}/json``), as a JSON-safe dict.

    Keys: ``name``, ``id``, ``image`` (Config.Image), ``image_id``, ``config`` (Config without Image),
    ``host_config``, ``mounts`` (one dict per mount - type, name, source, destination, driver, rw, mode,
    propagation, tmpfs_options) and, when the container has a user-defined network, ``networks``
    (endpoint configs by network name).

    ``image_config`` (the Config of the image the container was created from; ``{}`` when unknown) leaves
    out what the container only inherited from it, so that the image it is recreated from brings its own.
    ``keep_hostname=False`` leaves out a hostname that the engine generated from the container id.
    ``config_keys`` / ``host_config_keys`` keep only those keys (and only set values: no None, '' or []);
    by default everything is kept. Does not modify ``inspect``.
    """
    config = dict(inspect.get('Config') or {})
    image = config.pop('Image', None)
    if config_keys is not None:
        config = dict((k, config[k]) for k in config_keys if config.get(k) is not None)
    if not keep_hostname and config.get('Hostname') and (inspect.get('Id') or '').startswith(config['Hostname']):
        config.pop('Hostname')
    if image_config is not None:
        _drop_inherited(config, image_config)
    host_config = dict(inspect.get('HostConfig') or {})
    if host_config_keys is not None:
        host_config = dict((k, host_config[k]) for k in host_config_keys if host_config.get(k) not in (None, '', []))
    spec = {
        'name': (inspect.get('Name') or '').lstrip('/'),
        'id': inspect.get('Id'),
        'image': image,
        'image_id': inspect.get('Image'),
        'config': config,
        'host_config': host_config,
        'mounts': _mount_entries(inspect),
    }
    endpoints = _endpoints(inspect)
    if endpoints:
        spec['networks'] = endpoints
    return spec


def bind_spec(mount: Dict[str, Any]) -> str:
    """``source:destination[:options]`` of a spec's bind mount, keeping ro, SELinux labels (z/Z),
    consistency flags and the propagation mode (rprivate, Docker's default, is left out)."""
    flags = [flag for flag in (mount.get('mode') or '').split(',') if flag and flag not in ('ro', 'rw')]
    if not mount.get('rw', True):
        flags.insert(0, 'ro')
    propagation = mount.get('propagation') or ''
    if propagation and propagation != 'rprivate' and propagation not in flags:
        flags.append(propagation)
    return '%s:%s%s' % (mount['source'], mount['destination'], (':' + ','.join(flags)) if flags else '')


def _keep_mounts(host_config: Dict[str, Any], mounts: Sequence[Dict[str, Any]]) -> None:
    """The engine's Binds and Mounts as they are, plus a bind by name for every volume they miss."""
    binds = list(host_config.get('Binds') or [])
    bound = set(bind.split(':')[1] for bind in binds if ':' in bind)
    bound.update(m.get('Target') for m in host_config.get('Mounts') or [])
    for mount in mounts:
        if mount.get('type') == 'volume' and mount.get('name') and mount.get('destination') not in bound:
            binds.append('%s:%s%s' % (mount['name'], mount['destination'], '' if mount.get('rw', True) else ':ro'))
    if binds:
        host_config['Binds'] = binds


def _rebuild_mounts(host_config: Dict[str, Any], mounts: Sequence[Dict[str, Any]]) -> None:
    """Volumes by name and tmpfs mounts as HostConfig.Mounts, bind mounts as Binds with their host paths."""
    host_config['Mounts'] = [
        {'Type': 'volume', 'Source': m['name'], 'Target': m['destination'], 'ReadOnly': not m.get('rw', True)}
        for m in mounts if m.get('type') == 'volume' and m.get('name')
    ]
    for m in mounts:
        if m.get('type') == 'tmpfs' and m.get('destination'):
            spec = {'Type': 'tmpfs', 'Target': m['destination'], 'ReadOnly': not m.get('rw', True)}
            if m.get('tmpfs_options'):
                spec['TmpfsOptions'] = m['tmpfs_options']
            host_config['Mounts'].append(spec)
    host_config.pop('Binds', None)
    binds = [bind_spec(m) for m in mounts if m.get('type') == 'bind']
    if binds:
        host_config['Binds'] = binds


def create_body(spec: Dict[str, Any], image: Optional[str] = None, labels: Optional[Dict[str, str]] = None,
                mounts: str = KEEP) -> Dict[str, Any]:
    """The ``POST /containers/create`` body of a spec (see :func:`container_spec`). Pure.

    ``image`` defaults to the spec's ``image_digest_ref``, else its ``image``; ``labels`` are added to
    (and override) the spec's labels. ``mounts`` is :data:`KEEP` or :data:`REBUILD` (see there).
    """
    if mounts not in (KEEP, REBUILD):
        raise ValueError('mounts must be %r or %r, not %r' % (KEEP, REBUILD, mounts))
    body = dict(spec.get('config') or {})
    body['Image'] = image or spec.get('image_digest_ref') or spec.get('image')
    merged = dict(body.get('Labels') or {})
    merged.update(labels or {})
    body['Labels'] = merged
    host_config = dict(spec.get('host_config') or {})
    if mounts == KEEP:
        _keep_mounts(host_config, spec.get('mounts') or [])
    else:
        _rebuild_mounts(host_config, spec.get('mounts') or [])
    body['HostConfig'] = host_config
    if spec.get('networks'):
        body['NetworkingConfig'] = {'EndpointsConfig': dict(spec['networks'])}
    return body


def recreate_body(inspect: Dict[str, Any], old_image_config: Optional[Dict[str, Any]], image: str) -> Dict[str, Any]:
    """The create body that recreates the container of ``inspect`` on the same engine from ``image``.

    What the container got from its old image (``old_image_config``: Env entries, labels, Cmd ...) is left
    out so that the new image's own defaults apply; what the user set is kept, and so are the volumes,
    named and anonymous (bound again by name). Pure.
    """
    spec = container_spec(inspect, image_config=old_image_config or {}, keep_hostname=False)
    return create_body(spec, image=image, mounts=KEEP)


def container_name(inspect: Dict[str, Any]) -> str:
    """The container's name without the leading ``/`` (its short id when it has none)."""
    return (inspect.get('Name') or '').lstrip('/') or (inspect.get('Id') or '')[:12]


# ---------------------------------------------------------------------------------------------------
# I/O through the client: the image, waiting, replacing

def same_image_reference(client: DockerClient, inspect: Dict[str, Any]) -> str:
    """The container's image name (Config.Image) when it still names the container's image, else the image id.

    Recreating from the name keeps the name in the new container's configuration; a name that was moved to
    another image meanwhile must not be used.
    """
    image_id = inspect.get('Image')
    wanted = (inspect.get('Config') or {}).get('Image')
    if wanted:
        found = client.inspect_image(wanted)
        if found and found.get('Id') == image_id:
            return wanted
    return image_id or ''


def _is_running(state: Dict[str, Any]) -> bool:
    return bool(state.get('Running')) and not state.get('Restarting') and state.get('Pid') != 0


def _not_running_reason(state: Dict[str, Any]) -> str:
    return 'the container is not running (status %s, exit code %s)' % (state.get('Status'), state.get('ExitCode'))


def _wait_result(ended: str, reason: str, state: Dict[str, Any], output: str, exit_code: Optional[int],
                 attempts: int, started: float, clock: Callable[[], float]) -> Dict[str, Any]:
    return {'healthy': ended == 'healthy', 'ended': ended, 'reason': reason, 'state': state, 'output': output,
            'exit_code': exit_code, 'attempts': attempts, 'seconds': round(clock() - started, 3)}


def wait_running(client: DockerClient, container_id: str, timeout: Optional[float] = 10.0, interval: float = 0.2,
                 health_cmd: Optional[Sequence[str]] = None, image_health: bool = False,
                 attempts: Optional[int] = None, first_delay: float = 0.0, stop_on_exit: bool = True,
                 output_limit: int = 2000, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> Dict[str, Any]:
    """Poll the container until it is healthy, has stopped, or the time (``timeout`` s) or tries run out.

    One try: inspect; the container must run (State.Running, not restarting); then ``health_cmd`` (run
    with ``exec_run``) must exit 0, or else - with ``image_health`` - the image's HEALTHCHECK must not
    say unhealthy (``starting`` is waited for), or else running is enough. ``first_delay`` s pass before
    the first try and ``interval`` s between tries; ``attempts`` caps the tries (None: only ``timeout``
    does; None for both waits for ever). ``stop_on_exit`` ends the wait at once when the container has
    stopped (exited, dead); False keeps waiting (a restart policy may bring it back).

    Returns ``{healthy, ended, reason, state, output, exit_code, attempts, seconds}``: ``ended`` is
    ``healthy``, ``stopped``, ``unhealthy`` (the image says so) or ``timeout``; ``reason`` one phrase
    for a message ('' when healthy); ``state`` the last State; ``output`` the last ``output_limit``
    characters of the last health command's output; ``exit_code`` its exit code. DockerError of an
    inspect or exec is raised.
    """
    started = clock()
    if first_delay:
        sleep(first_delay)
    tries, output, exit_code = 0, '', None
    reason = 'not checked yet'
    while True:
        tries += 1
        state = client.inspect_container(container_id).get('State') or {}
        if not _is_running(state):
            reason = _not_running_reason(state)
            if stop_on_exit and state.get('Status') not in _NOT_YET_RUNNING:
                return _wait_result('stopped', reason, state, output, exit_code, tries, started, clock)
        elif health_cmd:
            exit_code, text = client.exec_run(container_id, list(health_cmd))
            output = (text or '')[-output_limit:] if output_limit else ''
            if exit_code == 0:
                return _wait_result('healthy', '', state, output, exit_code, tries, started, clock)
            reason = 'health command exited %s: %s' % (exit_code, (text or '')[-300:])
        else:
            health = (state.get('Health') or {}).get('Status') if image_health else None
            if health is None or health == 'healthy':
                return _wait_result('healthy', '', state, output, exit_code, tries, started, clock)
            reason = 'the image health check reports %s' % health
            if health == 'unhealthy':
                return _wait_result('unhealthy', reason, state, output, exit_code, tries, started, clock)
        if (attempts is not None and tries >= attempts) or (timeout is not None and clock() - started >= timeout):
            return _wait_result('timeout', reason, state, output, exit_code, tries, started, clock)
        sleep(interval)


class ReplaceError(MtdError):
    """Replacing a container failed and the old one was put back; ``msg`` is the cause's own sentence.

    ``details`` hold ``rollback_errors`` when putting the old container back went wrong too.
    """


def _quietly(errors: List[str], what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        function(*args, **kwargs)
    except DockerError as exc:
        if exc.status != 404:
            errors.append('%s: %s' % (what, exc.msg))


def _roll_back(client: DockerClient, old_id: str, new_id: Optional[str], name: str, renamed: bool,
               restart: bool) -> List[str]:
    """Remove the new container, give the old one its name back and start it again; the errors as text."""
    errors: List[str] = []
    if new_id:
        _quietly(errors, 'removing the new container', client.remove_container, new_id, force=True)
    if renamed:
        _quietly(errors, 'renaming the old container back', client.rename_container, old_id, name)
    if restart:
        _quietly(errors, 'starting the old container', client.start_container, old_id)
    return errors


def replace_container(client: DockerClient, inspect: Dict[str, Any], body: Dict[str, Any], park_name: str,
                      start: Optional[bool] = None, stop_timeout: int = 10,
                      carry: Optional[Callable[[str, str], Any]] = None, carry_before_stop: bool = False,
                      check: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Replace the container of ``inspect`` by a new one created from ``body`` under the same name.

    Steps: rename the old container to ``park_name``; create the new one; stop the old one (when it runs);
    ``carry(old_id, new_id)`` (copy data across; before the stop with ``carry_before_stop``, e.g. for an
    auto-remove container that a stop deletes); start the new one (``start``: None starts it when the old
    one was running, True always, False never) and ``check(new_id)`` (raise MtdError to refuse it). Any
    failure removes the new container, renames the old one back and starts it again when it was stopped
    here, then raises ReplaceError with the cause's message. On success the parked container is removed
    (its volumes are kept).

    Returns ``{id, previous_id, started, carried (what carry returned), warnings (list of sentences)}``.
    """
    old_id = inspect['Id']
    name = container_name(inspect)
    was_running = bool((inspect.get('State') or {}).get('Running'))
    auto_remove = bool((inspect.get('HostConfig') or {}).get('AutoRemove'))
    start_new = was_running if start is None else start
    new_id, renamed, stopped, carried = None, False, False, None
    try:
        client.rename_container(old_id, park_name)
        renamed = True
        new_id = client.create_container(name, body)
        if carry is not None and carry_before_stop:
            carried = carry(old_id, new_id)
        if was_running:
            client.stop_container(old_id, timeout=stop_timeout)
            stopped = True
        if carry is not None and not carry_before_stop:
            carried = carry(old_id, new_id)
        if start_new:
            client.start_container(new_id)
            if check is not None:
                check(new_id)
    except Exception as exc:
        # a stopped auto-remove container is gone: nothing to rename or start again
        errors = _roll_back(client, old_id, new_id, name, renamed and not (stopped and auto_remove),
                            stopped and not auto_remove)
        if not isinstance(exc, MtdError):
            raise
        details = dict(exc.details)
        if errors:
            details['rollback_errors'] = errors
        raise ReplaceError(exc.msg, **details)
    warnings = []
    try:
        client.remove_container(old_id, force=True)
    except DockerError as exc:
        if exc.status != 404:
            warnings.append('The replaced container %s (%s) could not be removed: %s' % (park_name, old_id[:12], exc.msg))
    return {'id': new_id, 'previous_id': old_id, 'started': bool(start_new), 'carried': carried,
            'warnings': warnings}
