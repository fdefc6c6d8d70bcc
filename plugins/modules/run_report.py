#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: run_report
short_description: Draw migration records as an HTML page with SVG timelines, on the controller
version_added: 0.1.0
description:
  - Writes one self-contained HTML file (inline SVG and CSS, no script, no external resource) that draws
    the given migration records, as the C(mtd.containers.migrate) role writes them.
  - "The fleet view puts every migration on one time axis, one row each: before the freeze, frozen,
    after the resume (for a failed migration, the rollback), with ticks at its state changes and two thin
    lanes with the phases of the source (connect, freeze, dump, rootfs, volumes, send) and of the target
    (pull, create, wait, receive, verify, layer, volumes, place, restore, lazy_fetch, health). A strip
    above the rows counts the migrations that ran, and that were frozen, at the same time."
  - Below it, each migration has its facts (hosts, states, frozen time, error, rollback outcome), a close-up
    of the phases around its freeze, and a table of every recorded phase.
  - The frozen window is placed from the record's C(frozen_at) and C(resumed_at) (the source's and the
    target's clocks); a record without them is placed approximately from its C(Migrating) state and
    marked so. A migration that failed after C(Migrating) is drawn as frozen at most until C(Failed).
  - Every text taken from a record is HTML-escaped. The page depends only on the records (no clock), so
    the file is only rewritten when a record changed.
  - It is an action plugin that runs in the controller's own process; no module is sent anywhere.
extends_documentation_fragment:
  - mtd.containers.attributes
  - mtd.containers.attributes.controller
attributes:
  check_mode:
    support: full
    details: Reports whether the file would change and writes nothing.
  diff_mode:
    support: none
    details: The page is not shown as a diff (it is large); the records it is drawn from are.
  idempotent:
    support: full
options:
  path:
    description:
      - Path of the HTML file on the controller, written atomically with mode 0600. A relative path is
        relative to the current directory of the C(ansible-playbook) process. Its parent directory is
        created (mode 0700) when missing.
      - An existing file that is not a regular file (a directory, a symbolic link, a device) is an error
        and is left alone.
    type: path
    required: true
  records:
    description:
      - The migration records to draw (one row each), as the C(mtd.containers.migrate) role writes them
        (C(id), C(name), C(source), C(target), C(state), C(history), C(phases), C(frozen_at),
        C(resumed_at), C(frozen_seconds), C(error), C(rollback)); missing keys are drawn as unknown.
      - An empty list gives a page that says no migration ran.
    type: list
    elements: dict
    required: true
  title:
    description: Title of the page.
    type: str
    default: mtd.containers run report
notes:
  - The page holds host names, container names, errors and timings; the mode 0600 keeps it private to the
    controller's user.
  - To look at it without a desktop, C(chromium --headless --screenshot=run.png --window-size=1140,900 file:///path/run.html).
seealso:
  - module: mtd.containers.migration_record
author:
  - mtd.containers contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Draw the migrations of this run
  mtd.containers.run_report:
    path: "{{ playbook_dir }}/mtd-migrations/defend-report.html"
    records: "{{ defend_results }}"
    title: Moving-target defense of the fleet

- name: Draw one migration from its record file
  mtd.containers.run_report:
    path: /var/tmp/mtd/lab-1__web-1.html
    records:
      - "{{ lookup('ansible.builtin.file', '/var/tmp/mtd/lab-1__web-1.json') | from_json }}"
"""

RETURN = r"""
path:
  description: Absolute path of the HTML file.
  returned: always
  type: str
  sample: /home/ops/mtd-migrations/defend-report.html
bytes:
  description: Size of the HTML text.
  returned: always
  type: int
  sample: 21873
rows:
  description: Number of records drawn.
  returned: always
  type: int
  sample: 3
"""
