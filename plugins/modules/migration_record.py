#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_record
short_description: Write a migration record (JSON) on the controller
version_added: 0.1.0
description:
  - Writes one migration's record as JSON to a file on the Ansible controller, atomically (a temporary
    file in the same directory, flushed to disk, then renamed over the old one), with mode 0600 in a
    directory created with mode 0700 when missing.
  - It is an action plugin that runs in the controller's own process; no module is sent anywhere. The
    C(migrate) role writes its record at every state change, and this costs milliseconds instead of
    the half second of M(ansible.builtin.copy) delegated to C(localhost).
  - The file is only rewritten when its content would change.
extends_documentation_fragment:
  - mtd.containers.attributes
  - mtd.containers.attributes.controller
attributes:
  check_mode:
    support: full
    details: Reports whether the file would change and writes nothing.
  diff_mode:
    support: full
    details: Shows the old and the new JSON text.
  idempotent:
    support: full
options:
  path:
    description:
      - Path of the record on the controller. A relative path is relative to the current directory of
        the C(ansible-playbook) process. Its parent directory is created (mode 0700) when missing.
      - An existing file that is not a regular file (a directory, a symbolic link, a device) is an
        error and is left alone.
    type: path
    required: true
  record:
    description: The record, a dictionary; written as JSON with sorted keys and an indent of 4.
    type: dict
    required: true
notes:
  - The record may hold host names, container names and timings; the mode 0600 keeps it private to the
    controller's user.
seealso:
  - module: mtd.containers.checkpoint
  - module: mtd.containers.restore
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Write the record of this migration
  mtd.containers.migration_record:
    path: "{{ playbook_dir }}/mtd-migrations/lab-1__web-1.json"
    record:
      id: m-0123456789ab
      state: Pending
      history: []
"""

RETURN = r"""
path:
  description: Absolute path of the record.
  returned: always
  type: str
  sample: /home/ops/mtd-migrations/lab-1__web-1.json
bytes:
  description: Size of the JSON text.
  returned: always
  type: int
  sample: 1874
"""
