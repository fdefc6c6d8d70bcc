# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The target choice of mtd.containers.target_host as a filter: the migrate role decides on the controller
without a module run (no webhook, no alert: the role records a refusal itself)."""

from __future__ import annotations

from typing import Any, Dict, Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._placement import choose_target

RANKING_LIMIT = 20   # as mtd.containers.target_host
KEYS = ('target', 'fits', 'reason', 'target_facts', 'chosen', 'preliminary', 'rejected', 'ranking', 'required')


def migration_target(container: Any, candidates: Any, granularity: str = 'id') -> Dict[str, Any]:
    """``choose_target`` of ``container`` among ``candidates``: the keys of target_host's result that a choice
    has (target, fits, reason, target_facts, chosen, preliminary, rejected, ranking, required)."""
    if not isinstance(container, Mapping) or not (container.get('id') or container.get('name')):
        raise AnsibleFilterError('migration_target: the container must be a dict with an id or a name, got %r'
                                 % (container,))
    try:
        decision = choose_target(dict(container), candidates, granularity=granularity, ranking_limit=RANKING_LIMIT)
    except MtdError as exc:
        raise AnsibleFilterError('migration_target: %s' % exc)
    return {key: decision.get(key) for key in KEYS}


class FilterModule:
    def filters(self):
        return {'migration_target': migration_target}
