# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller-side writer of migration records (see plugins/modules/migration_record.py for the docs)."""

from __future__ import annotations

import json
import os
import stat

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.action import ActionBase

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._files import atomic_write


def render(record):
    """The file's text for a record: stable (sorted keys), readable, ending with a newline."""
    return json.dumps(record, indent=4, sort_keys=True, ensure_ascii=False) + '\n'


def read_existing(path):
    """Text of the regular file at path, None when nothing is there; fails for anything else."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise AnsibleActionFail('%s exists and is not a regular file; the record is not written there' % path)
    with open(path, 'rb') as handle:
        return to_text(handle.read(), errors='surrogate_or_strict')


def write_atomically(path, text):
    """Write text to path with _files.atomic_write (temporary file beside it, fsync'd, renamed over it);
    a missing directory is created 0700 (an existing one is left as it is)."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
    atomic_write(path, to_bytes(text, errors='surrogate_or_strict'), mode=0o600)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('path', 'record'))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        dummy, args = self.validate_argument_spec(argument_spec={
            'path': {'type': 'path', 'required': True},
            'record': {'type': 'dict', 'required': True},
        })
        path = os.path.abspath(args['path'])
        try:
            text = render(args['record'])
        except (TypeError, ValueError) as exc:
            raise AnsibleActionFail('The record cannot be written as JSON: %s' % to_native(exc))
        try:
            old = read_existing(path)
            changed = old != text
            if changed and not self._task.check_mode:
                write_atomically(path, text)
        except (OSError, UnicodeError, MtdError) as exc:
            raise AnsibleActionFail('Cannot write the record %s: %s' % (path, to_native(exc)))
        result.update(changed=changed, path=path, bytes=len(to_bytes(text)))
        if self._task.diff and changed:
            result['diff'] = {'before': old or '', 'after': text,
                              'before_header': path if old is not None else '(absent)', 'after_header': path}
        return result
