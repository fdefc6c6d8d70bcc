# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Bench helper, not part of the collection: the wall time of every task of a linear play (from its start to the
next task's start), written as JSON lines to $MTD_TASK_TIMES. Enable it with
ANSIBLE_CALLBACK_PLUGINS=bench/callbacks ANSIBLE_CALLBACKS_ENABLED=task_times (bench/lean_breakdown.sh)."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: task_times
type: aggregate
short_description: Wall time per task, as JSON lines (a bench helper)
description: Writes one JSON line per task (name, action, delegated host, seconds) to the file in E(MTD_TASK_TIMES).
requirements: [enable it in the configuration]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'task_times'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.current = None
        self.rows = []

    def close(self, now):
        if self.current is not None:
            name, action, delegate, began = self.current
            self.rows.append({'task': name, 'action': action, 'delegate': delegate, 'seconds': round(now - began, 4)})
        self.current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        now = time.time()
        self.close(now)
        self.current = (task.get_name(), task.action, str(task.delegate_to or ''), now)

    def v2_playbook_on_stats(self, stats):
        self.close(time.time())
        path = os.environ.get('MTD_TASK_TIMES')
        if path:
            with open(path, 'a') as handle:
                for row in self.rows:
                    handle.write(json.dumps(row) + '\n')
