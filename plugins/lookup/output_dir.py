# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: output_dir
short_description: The controller directory for the collection's outputs (plan, records, reports), made private
version_added: 0.1.0
author: mtd.containers contributors (!UNKNOWN)
description:
  - Returns the absolute path of the directory on the controller where the playbooks and roles of this collection
    write what they produce (the plan JSON, migration records, the defense report); this is the value behind the
    C(mtd_output_dir) variable.
  - The directory is the term when one is given and not empty, else the environment variable E(MTD_OUTPUT_DIR),
    else C($XDG_STATE_HOME/mtd-containers), else C(~/.local/state/mtd-containers) of the user running
    C(ansible-playbook). A relative path is taken from the current directory of C(ansible-playbook); C(~) is
    expanded. The default is never inside the collection, wherever it is installed, and does not depend on the
    directory the playbook was started from.
  - A missing directory is created with mode 0700 (its missing parents with the usual mode). An existing one is
    used as it is when it is a real directory (not a symbolic link), owned by the controller's user, that no other
    user may write to; anything else is an error naming the fix. The directory is prepared even in check mode.
options:
  _terms:
    description: The directory; empty or none chooses the default described above.
    type: list
    elements: str
    required: false
notes:
  - AWX, Automation Controller and ansible-runner start each job in a temporary directory, often in a container
    whose home directory is discarded after the job. Point C(mtd_output_dir) (or E(MTD_OUTPUT_DIR)) at a
    persistent path there when the migration records must outlive the job (the C(migrate) role reads the record
    of an interrupted migration to converge it); the playbooks' summaries reach the job's artifacts through
    M(ansible.builtin.set_stats) either way.
"""

EXAMPLES = r"""
- name: Where the outputs go
  ansible.builtin.debug:
    msg: "{{ lookup('mtd.containers.output_dir', mtd_output_dir | default('')) }}"
"""

RETURN = r"""
_raw:
  description: The absolute path of the directory, once it exists and is private.
  type: list
  elements: str
"""

import os
import stat

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase

DEFAULT_NAME = 'mtd-containers'


def resolve_output_dir(given, environ, home, cwd):
    """The output directory as an absolute path: ``given``, $MTD_OUTPUT_DIR, $XDG_STATE_HOME/mtd-containers,
    or ``home``/.local/state/mtd-containers, with ``~`` expanded and a relative path taken from ``cwd``."""
    if given:
        path = given
    elif environ.get('MTD_OUTPUT_DIR'):
        path = environ['MTD_OUTPUT_DIR']
    elif environ.get('XDG_STATE_HOME'):
        path = os.path.join(environ['XDG_STATE_HOME'], DEFAULT_NAME)
    else:
        path = os.path.join(home, '.local', 'state', DEFAULT_NAME)
    if path == '~' or path.startswith('~/'):
        path = home + path[1:]
    return os.path.normpath(os.path.join(cwd, path))


def check_private_dir(path, info, uid):
    """Why the existing ``path`` (its lstat ``info``) cannot hold the outputs, or None when it can."""
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return '%s exists and is not a directory (or is a symbolic link); remove it or choose another mtd_output_dir.' % path
    if info.st_uid != uid:
        return ('%s is owned by uid %d, not by the controller user (uid %d); choose another mtd_output_dir.'
                % (path, info.st_uid, uid))
    if stat.S_IMODE(info.st_mode) & 0o022:
        return ('%s may be written by other users (mode %04o); run chmod 0700 on it or choose another mtd_output_dir.'
                % (path, stat.S_IMODE(info.st_mode)))
    return None


def prepare_output_dir(path):
    """Create ``path`` 0700 when missing; check an existing one. Raises AnsibleLookupError with the fix."""
    try:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent)
        try:
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)   # whatever the umask
        except FileExistsError:
            pass
        problem = check_private_dir(path, os.lstat(path), os.geteuid())
    except OSError as exc:
        raise AnsibleLookupError('Cannot create the output directory %s: %s; set mtd_output_dir to a directory '
                                 'the controller user may create.' % (path, to_native(exc)))
    if problem:
        raise AnsibleLookupError(problem)
    return path


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        given = next((str(t) for t in terms or [] if t), '')
        path = resolve_output_dir(given, os.environ, os.path.expanduser('~'), os.getcwd())
        return [prepare_output_dir(path)]
