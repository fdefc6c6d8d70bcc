# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller-side writer of the run report (see plugins/modules/run_report.py for the docs)."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.action import ActionBase

from ansible_collections.mtd.containers.plugins.action.migration_record import read_existing, write_atomically
from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.plugin_utils._timeline import timeline_html


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('path', 'records', 'title'))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        dummy, args = self.validate_argument_spec(argument_spec={
            'path': {'type': 'path', 'required': True},
            'records': {'type': 'list', 'elements': 'dict', 'required': True},
            'title': {'type': 'str', 'default': 'mtd.containers run report'},
        })
        path = os.path.abspath(args['path'])
        text = timeline_html(args['records'], title=args['title'])
        try:
            changed = read_existing(path) != text
            if changed and not self._task.check_mode:
                write_atomically(path, text)
        except (OSError, UnicodeError, MtdError) as exc:
            raise AnsibleActionFail('Cannot write the run report %s: %s' % (path, to_native(exc)))
        result.update(changed=changed, path=path, bytes=len(to_bytes(text)), rows=len(args['records']))
        return result
