# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""migration_target: the migrate role's target choice on the controller, the same as target_host's."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.mtd.containers.plugins.filter.migration_target import FilterModule, migration_target
from ansible_collections.mtd.containers.tests.unit.plugins.modules.test_target_host import (
    CANDIDATES,
    DEBIAN12,
    container,
    facts,
    run_module,
)


def test_registered():
    assert FilterModule().filters() == {'migration_target': migration_target}


def test_same_decision_as_the_module():
    module, dummy = run_module({'container': container(), 'candidates': CANDIDATES})
    choice = migration_target(container(), CANDIDATES)
    assert choice['target'] == module['target'] == 'lab-4'
    for key in ('fits', 'reason', 'target_facts', 'chosen', 'preliminary', 'rejected', 'ranking', 'required'):
        assert choice[key] == module[key], key
    assert choice['preliminary'] == ['lab-2', 'lab-3', 'lab-4']
    assert [e['name'] for e in choice['rejected']] == ['lab-1', 'lab-2', 'lab-3']


def test_one_given_target_that_does_not_fit():
    # the role with migrate_target: the source and that one host; 4 units left < 5 required
    choice = migration_target(container(), {'lab-1': CANDIDATES['lab-1'], 'lab-2': CANDIDATES['lab-2']})
    assert choice['target'] is None and choice['fits'] is False
    assert ('lab-2', 'insufficient units: remaining 4 < required 5') in [(e['name'], e['reason']) for e in choice['rejected']]


def test_granularity():
    candidates = {'lab-1': facts(DEBIAN12, 50), 'lab-2': facts(dict(DEBIAN12, version_id='11'), 9)}
    assert migration_target(container(), candidates)['target'] is None
    assert migration_target(container(), candidates, 'id_version')['target'] == 'lab-2'


@pytest.mark.parametrize('bad', [None, 'web-1', {'host': 'lab-1'}])
def test_bad_container(bad):
    with pytest.raises(AnsibleFilterError, match='the container must be a dict with an id or a name'):
        migration_target(bad, CANDIDATES)


def test_bad_granularity_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match='^migration_target: '):
        migration_target(container(), CANDIDATES, 'planet')
