# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The run report's renderer with worked records: where each piece lands, in seconds and in pixels."""

from __future__ import annotations

import html.parser
import re
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.mtd.containers.plugins.plugin_utils import _timeline as tl


def history(*pairs):
    return [{'state': state, 'epoch': epoch, 'at': 'x'} for state, epoch in pairs]


# Two migrations that overlap in time (B starts 3 s after A), A's freeze before B's; C failed after the
# freeze and was rolled back; D was refused before the freeze.
A = {
    'id': 'm-aaaa', 'name': 'web-1', 'source': 'lab-1', 'target': 'lab-2', 'state': 'Succeeded',
    'history': history(('Pending', 1000.0), ('Ready', 1006.0), ('Started', 1007.5), ('Migrating', 1007.6),
                       ('Completed', 1009.6), ('Succeeded', 1010.8)),
    'frozen_at': 1008.0, 'resumed_at': 1008.7, 'frozen_seconds': 0.7, 'duration_seconds': 10.8,
    'phases': {
        'prepare': {'pull': 0.5, 'create': 0.1},
        'checkpoint': {'connect': 0.01, 'freeze': 0.02, 'dump': 0.2, 'rootfs': 0.01, 'volumes': 0.01, 'send': 0.05,
                       'manifest': 0.02, 'total': 0.3},
        'restore': {'wait': 0.8, 'receive': 0.03, 'verify': 0.01, 'layer': 0.01, 'volumes': 0.01, 'place': 0.01,
                    'restore': 0.4, 'health': 0.1},
        'transfer': {'seconds': 0.05, 'bytes_sent': 39836, 'compression': 'zstd'},
    },
}
B = dict(A, id='m-bbbb', name='db-1', source='lab-3', target='lab-4',
         history=history(('Pending', 1003.0), ('Ready', 1007.0), ('Started', 1008.0), ('Migrating', 1008.5),
                         ('Completed', 1010.0), ('Succeeded', 1012.0)),
         frozen_at=1009.0, resumed_at=1009.5, frozen_seconds=0.5)
C = {
    'id': 'm-cccc', 'name': '<script>alert("x")</script>', 'source': 'lab-1', 'target': 'lab-3', 'state': 'Failed',
    'history': history(('Pending', 2000.0), ('Ready', 2005.0), ('Started', 2006.0), ('Migrating', 2006.1),
                       ('Failed', 2009.0)),
    'error': 'Freeze, checkpoint and send: Sending the checkpoint failed: cut </svg><b>',
    'rollback': {'source': 'running', 'target_cleaned': True, 'checkpoint_cleaned': True},
    'phases': {'prepare': {'pull': 0.2, 'create': 0.1}},
}
D = {'id': 'm-dddd', 'name': 'cache-1', 'source': 'lab-4', 'target': '', 'state': 'Failed',
     'history': history(('Pending', 3000.0), ('Failed', 3002.5)), 'error': 'refused before the freeze - no target'}


def approx_spans(spans):
    return [(name, pytest.approx(start), pytest.approx(end)) for name, start, end in spans]


def test_a_succeeded_migration_before_frozen_after():
    row = tl.layout(A)
    assert row['outcome'] == 'succeeded'
    assert (row['start'], row['end']) == (1000.0, 1010.8)
    assert row['window'] == (1008.0, 1008.7, True)
    assert row['segments'] == approx_spans([('before', 1000.0, 1008.0), ('frozen', 1008.0, 1008.7),
                                            ('after', 1008.7, 1010.8)])
    assert row['frozen_seconds'] == 0.7


def test_the_phases_are_placed_around_the_freeze_and_the_resume():
    lanes = tl.layout(A)['lanes']
    # source: connect and freeze end at frozen_at, the rest follows it
    assert lanes['source'] == approx_spans([
        ('connect', 1007.97, 1007.98), ('freeze', 1007.98, 1008.0), ('dump', 1008.0, 1008.2),
        ('rootfs', 1008.2, 1008.21), ('volumes', 1008.21, 1008.22), ('send', 1008.22, 1008.27)])
    # target: the standby's pull and create end at Ready; the restore ends at resumed_at, health follows
    assert lanes['target'] == approx_spans([
        ('pull', 1005.4, 1005.9), ('create', 1005.9, 1006.0),
        ('wait', 1007.43, 1008.23), ('receive', 1008.23, 1008.26), ('verify', 1008.26, 1008.27),
        ('layer', 1008.27, 1008.28), ('volumes', 1008.28, 1008.29), ('place', 1008.29, 1008.3),
        ('restore', 1008.3, 1008.7), ('health', 1008.7, 1008.8)])


def test_two_overlapping_migrations_run_and_freeze_at_the_same_time_only_where_they_do():
    rows = [tl.layout(A), tl.layout(B)]
    assert tl.concurrency(rows) == [(1000.0, 1003.0, 1), (1003.0, 1010.8, 2), (1010.8, 1012.0, 1)]
    assert tl.concurrency(rows, 'frozen') == [(1008.0, 1008.7, 1), (1009.0, 1009.5, 1)]
    overlapping = dict(B, frozen_at=1008.5, resumed_at=1009.0)
    assert tl.concurrency([tl.layout(A), tl.layout(overlapping)], 'frozen') == [
        (1008.0, 1008.5, 1), (1008.5, 1008.7, 2), (1008.7, 1009.0, 1)]


class Svg(html.parser.HTMLParser):
    """The drawn rectangles of the page: (attributes, the enclosing row's migration id)."""

    def __init__(self):
        super().__init__()
        self.rects, self.rows, self.svg, self.row = [], [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'svg':
            self.svg = attrs['class']
        elif tag == 'g' and attrs.get('class') == 'row':
            self.row = attrs['data-migration']
            self.rows.append(attrs)
        elif tag == 'rect':
            self.rects.append(dict(attrs, svg=self.svg, row=self.row))

    def handle_endtag(self, tag):
        if tag == 'g':
            self.row = None


def parse(page):
    parser = Svg()
    parser.feed(page)
    return parser


def test_overlapping_bars_share_the_fleet_axis():
    page = tl.timeline_html([B, A], title='two')
    fleet = [r for r in parse(page).rects if r['svg'] == 'fleet']
    seg = {(r['row'], r['data-kind']): (float(r['x']), float(r['x']) + float(r['width']))
           for r in fleet if 'data-kind' in r}
    # 12 s over 830 px from x=250: A starts at 0 s, B at 3 s; A's freeze at 8 s, B's at 9 s
    px = (tl.RIGHT - tl.LEFT) / 12.0
    assert seg[('m-aaaa', 'before')][0] == pytest.approx(tl.LEFT, abs=0.06)
    assert seg[('m-bbbb', 'before')][0] == pytest.approx(tl.LEFT + 3 * px, abs=0.06)
    assert seg[('m-aaaa', 'frozen')] == (pytest.approx(tl.LEFT + 8 * px, abs=0.06), pytest.approx(tl.LEFT + 8.7 * px, abs=0.1))
    assert seg[('m-bbbb', 'frozen')][0] == pytest.approx(tl.LEFT + 9 * px, abs=0.06)
    a_run = (seg[('m-aaaa', 'before')][0], seg[('m-aaaa', 'after')][1])
    b_run = (seg[('m-bbbb', 'before')][0], seg[('m-bbbb', 'after')][1])
    assert b_run[0] < a_run[1] and a_run[0] < b_run[1], 'the two bars do not overlap'
    # the strip above the rows counts 2 running at once between 3 s and 10.8 s
    busy = [(int(r['data-count']), float(r['x'])) for r in fleet if 'busy-run' in r['class']]
    assert busy == [(1, pytest.approx(tl.LEFT, abs=0.06)), (2, pytest.approx(tl.LEFT + 3 * px, abs=0.06)),
                    (1, pytest.approx(tl.LEFT + 10.8 * px, abs=0.06))]
    # rows in order of their start, phases on both lanes
    assert [r['data-migration'] for r in parse(page).rows] == ['m-aaaa', 'm-bbbb']
    phases = {(r['row'], r['data-lane'], r['data-phase']) for r in fleet if 'data-phase' in r}
    assert {('m-aaaa', 'source', 'dump'), ('m-aaaa', 'target', 'restore'), ('m-bbbb', 'source', 'send')} <= phases
    assert 'At the same time: at most 2 running, 1 frozen.' in page


def test_a_failed_migration_is_marked_rolled_back_and_drawn_as_frozen_at_most():
    row = tl.layout(C)
    assert row['outcome'] == 'rolled_back'
    assert row['window'] == (2006.1, 2009.0, False)
    assert row['segments'] == approx_spans([('before', 2000.0, 2006.1), ('frozen_bound', 2006.1, 2009.0)])
    assert row['lanes']['source'] == [] and [s[0] for s in row['lanes']['target']] == ['pull', 'create']
    page = tl.timeline_html([C])
    assert 'data-outcome="rolled_back"' in page
    assert 'FAILED, rolled back - source running again' in page
    assert 'data-kind="frozen_bound"' in page and 'data-kind="frozen"' not in page
    assert 'at most 2.9 s' in page


def test_a_migration_refused_before_the_freeze_was_never_frozen():
    row = tl.layout(D)
    assert row['outcome'] == 'refused' and row['window'] is None
    assert row['segments'] == [('before', 3000.0, 3002.5)]
    assert 'FAILED before the freeze (never frozen)' in tl.timeline_html([D])


def test_every_text_of_a_record_is_escaped():
    page = tl.timeline_html([C, D], title='<i>run</i>')
    assert '<script>' not in page and '</svg><b>' not in page and '<i>' not in page
    assert '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' in page
    assert 'cut &lt;/svg&gt;&lt;b&gt;' in page
    hostile = dict(C, id='m-"><x y="', source='a" onload="b')
    page = tl.timeline_html([hostile])
    assert 'onload="b' not in page and 'data-migration="m-&quot;&gt;&lt;x y=&quot;"' in page


def test_every_svg_is_well_formed_xml():
    page = tl.timeline_html([A, B, C, D])
    svgs = re.findall(r'<svg.*?</svg>', page, flags=re.S)
    assert len(svgs) == 3   # the fleet, and the close-ups of A and B (C has no exact freeze, D none)
    for svg in svgs:
        ET.fromstring(svg)


def test_a_record_without_freeze_instants_is_placed_approximately():
    old = {k: v for k, v in A.items() if k not in ('frozen_at', 'resumed_at')}
    row = tl.layout(old)
    assert row['window'] == (1007.6, pytest.approx(1008.3), False)
    assert [s[0] for s in row['segments']] == ['before', 'frozen_approx', 'after']
    assert row['lanes']['source'] == []
    assert 'frozen 0.7 s of 10.8 s (placed approximately)' in tl.timeline_html([old])


def test_only_the_last_attempt_of_a_converged_record_is_drawn():
    record = dict(A, history=history(('Pending', 1.0), ('Migrating', 2.0), ('Failed', 3.0)) + A['history'])
    row = tl.layout(record)
    assert row['start'] == 1000.0 and [s for s, e in row['history']][0] == 'Pending' and len(row['history']) == 6


@pytest.mark.parametrize('records', [[], [{}], [{'history': 'nonsense', 'phases': [1], 'frozen_at': 'x'}], 'not a list'])
def test_odd_input_gives_a_page(records):
    page = tl.timeline_html(records)
    assert page.startswith('<!DOCTYPE html>') and page.endswith('</html>\n')


def test_empty_run_says_so_and_the_page_allows_no_script():
    page = tl.timeline_html([])
    assert 'No migration in this run.' in page and '<svg' not in page
    assert "default-src 'none'" in page


def test_same_records_same_page():
    assert tl.timeline_html([A, C]) == tl.timeline_html([C, A])


@pytest.mark.parametrize('span, step', [(12.0, 2.0), (0.9, 0.2), (100.0, 20.0), (7.0, 1.0), (0.0, 2e-7)])
def test_nice_steps(span, step):
    assert tl.nice_step(span) == pytest.approx(step)


@pytest.mark.parametrize('value, text', [(None, '-'), (0, '0 s'), (0.0007, '0.0007 s'), (0.727, '0.727 s'),
                                         (12.503, '12.5 s'), (612.0, '612 s')])
def test_seconds_text(value, text):
    assert tl.seconds_text(value) == text


@pytest.mark.parametrize('value, number', [(1, 1.0), ('2.5', 2.5), (True, None), ('nan', None), (float('inf'), None),
                                           (None, None), ('x', None)])
def test_numbers_of_a_record(value, number):
    assert tl.num(value) == number
