# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The run report as a browser shows it: pages written by real runs on the lab (defend with migrations at
the same time, a migrate that fails and is rolled back), opened in headless Chromium; the rendered DOM
must hold one row per migration with its freeze and phases, and the screenshot must show the bars.

MTD_REPORT_PNG=<path> also keeps the screenshot of the defend run (the README's picture)."""

from __future__ import annotations

import html.parser
import json
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import zlib

import pytest
from lab_helpers import ROOT, run_playbook
from test_migrate import migrate, remove_everywhere, start_workload, wait_for_port_and_start_proxy

from ansible_collections.mtd.containers.plugins.plugin_utils import _timeline as tl


def chromium(*args, timeout=120):
    binary = shutil.which('chromium')
    if not binary:
        pytest.fail('chromium is not installed: run `make setup` (scripts/setup.sh installs Debian\'s chromium)')
    profile = tempfile.mkdtemp(prefix='mtd-chromium-')
    cmd = [binary, '--headless', '--no-sandbox', '--disable-gpu', '--force-color-profile=srgb', '--hide-scrollbars',
           '--user-data-dir=%s' % profile]
    try:
        proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, 'chromium failed (rc=%d): %s' % (proc.returncode, proc.stderr[-3000:])
    return proc.stdout


class Dom(html.parser.HTMLParser):
    """Elements of the DOM chromium serialised: tag, attributes, the enclosing svg/row, and their text."""

    def __init__(self):
        super().__init__()
        self.elements, self.stack = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        svg = attrs.get('class') if tag == 'svg' else next((e['svg'] for e in reversed(self.stack) if e['svg']), None)
        row = attrs.get('data-migration') if attrs.get('class') == 'row' else next(
            (e['row'] for e in reversed(self.stack) if e['row']), None)
        element = dict(tag=tag, attrs=attrs, svg=svg, row=row, text='')
        self.elements.append(element)
        if tag not in ('meta', 'br', 'img', 'input', 'link'):
            self.stack.append(element)

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()['tag'] == tag:
                break

    def handle_data(self, data):
        if self.stack:
            self.stack[-1]['text'] += data

    def find(self, tag, cls=None, svg=None):
        return [e for e in self.elements if e['tag'] == tag and (cls is None or cls in e['attrs'].get('class', '').split())
                and (svg is None or e['svg'] == svg)]


def rendered(page):
    dom = Dom()
    dom.feed(chromium('--dump-dom', 'file://%s' % page))
    return dom


def read_png(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA PNG (what chromium writes)."""
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    pos, idat, head = 8, b'', None
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b'IHDR':
            head = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            idat += body
        pos += 12 + length
    width, height, depth, color, dummy, dummy2, interlace = head
    assert depth == 8 and color in (2, 6) and interlace == 0, head
    bpp = 4 if color == 6 else 3
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def color_counts(png, colors):
    """How many pixels have exactly each of the given #rrggbb colors."""
    wanted = {bytes.fromhex(c[1:]): c for c in colors}
    counts = dict.fromkeys(colors, 0)
    width, dummy, bpp, rows = png
    for row in rows:
        for x in range(0, width * bpp, bpp):
            hit = wanted.get(row[x:x + 3])
            if hit:
                counts[hit] += 1
    return counts


def check_screenshot(page, dom, png_path):
    """Each kind of bar in the fleet view is painted: at least 80 % of the area its rectangles declare, in
    exactly its color (legend swatches aside)."""
    height = int(float(dom.find('svg', 'fleet')[0]['attrs']['height'])) + 400   # the header, then the fleet view
    chromium('--screenshot=%s' % png_path, '--window-size=1140,%d' % height, 'file://%s' % page)
    segs = [e['attrs'] for e in dom.find('rect', 'seg', svg='fleet')]
    area = {}
    for seg in segs:
        area[seg['fill']] = area.get(seg['fill'], 0) + float(seg['width']) * float(seg['height'])
    counts = color_counts(read_png(png_path), list(area))
    for color, declared in area.items():
        assert counts[color] >= 0.8 * declared, 'bars of %s: %d pixels painted, %d declared' % (color, counts[color], declared)
    return counts


def check_rows(dom, records):
    """One row per record in the fleet view, with its before / frozen / after and its phases."""
    rows = dom.find('g', 'row', svg='fleet')
    assert sorted(r['attrs']['data-migration'] for r in rows) == sorted(r['id'] for r in records)
    for rec in records:
        kinds = [e['attrs']['data-kind'] for e in dom.find('rect', 'seg', svg='fleet') if e['row'] == rec['id']]
        phases = {(e['attrs']['data-lane'], e['attrs']['data-phase'])
                  for e in dom.find('rect', 'phase', svg='fleet') if e['row'] == rec['id']}
        names = [e['text'] for e in dom.find('text', 'name', svg='fleet') if e['row'] == rec['id']]
        assert names == [rec['name']], names
        if rec['state'] == 'Succeeded':
            assert kinds == ['before', 'frozen', 'after'], (rec['id'], kinds)
            assert {('source', 'freeze'), ('source', 'dump'), ('source', 'send'), ('target', 'receive'),
                    ('target', 'restore')} <= phases, (rec['id'], phases)
        else:
            assert kinds[0] == 'before' and 'frozen' not in kinds, kinds
        states = [e['attrs']['data-state'] for e in dom.find('line', 'state', svg='fleet') if e['row'] == rec['id']]
        assert states == [h['state'] for h in rec['history']][-len(states):]


def overlap(records):
    """Most migrations in progress at one instant, from the records' own history (not the page's)."""
    events = sorted([(r['history'][0]['epoch'], 1) for r in records] + [(r['history'][-1]['epoch'], -1) for r in records])
    most = count = 0
    for event in events:
        count += event[1]
        most = max(most, count)
    return most


def assert_private(path):
    assert path.is_file(), '%s was not written' % path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)


# ---- worked records, no lab ----------------------------------------------------------------------

def worked(name, source, start, frozen_at, state='Succeeded'):
    steps = [('Pending', 0.0), ('Ready', 5.0), ('Started', 6.0), ('Migrating', 6.2)]
    steps += [('Completed', 8.0), ('Succeeded', 9.0)] if state == 'Succeeded' else [('Failed', 8.5)]
    rec = {'id': 'm-' + name, 'name': name, 'source': source, 'target': 'lab-3', 'state': state,
           'history': [{'state': s, 'epoch': start + t} for s, t in steps],
           'phases': {'prepare': {'pull': 0.3, 'create': 0.1}}}
    if state == 'Succeeded':
        rec.update(frozen_at=frozen_at, resumed_at=frozen_at + 0.7, frozen_seconds=0.7, phases=dict(
            rec['phases'], checkpoint={'connect': 0.01, 'freeze': 0.02, 'dump': 0.2, 'rootfs': 0.01, 'volumes': 0.01,
                                       'send': 0.05},
            restore={'wait': 0.8, 'receive': 0.03, 'verify': 0.01, 'layer': 0.01, 'place': 0.01, 'restore': 0.4,
                     'health': 0.1}))
    else:
        rec.update(error='cut', rollback={'source': 'running', 'target_cleaned': True, 'checkpoint_cleaned': True})
    return rec


def test_chromium_renders_two_overlapping_migrations_and_a_rolled_back_one(tmp_path):
    records = [worked('web-1', 'lab-1', 1000.0, 1006.6), worked('db-1', 'lab-2', 1003.0, 1009.5),
               worked('<img src=x onerror=alert(1)>', 'lab-4', 1004.0, None, state='Failed')]
    page = tmp_path / 'run.html'
    page.write_text(tl.timeline_html(records, title='worked'))
    dom = rendered(page)
    check_rows(dom, records)
    assert not dom.find('img') and not dom.find('script'), 'text of a record became an element'
    failed = [e for e in dom.find('g', 'row', svg='fleet') if e['attrs']['data-outcome'] == 'rolled_back']
    assert [e['attrs']['data-migration'] for e in failed] == ['m-<img src=x onerror=alert(1)>']
    notes = [e['text'] for e in dom.find('text', 'note', svg='fleet') if e['row'] == failed[0]['row']]
    assert notes == ['FAILED, rolled back - source running again']
    assert max(int(e['attrs']['data-count']) for e in dom.find('rect', 'busy-run', svg='fleet')) == 3
    assert len(dom.find('svg', 'closeup')) == 2
    counts = check_screenshot(page, dom, tmp_path / 'run.png')
    assert counts[tl.COLORS['frozen_bound']] > 0 and counts[tl.COLORS['frozen']] > 0


# ---- real runs on the lab ------------------------------------------------------------------------

def test_defend_draws_every_migration_of_the_run(tmp_path):
    report = tmp_path / 'defend.json'
    # defend runs its migrations in lanes (one play host per lane, the free strategy), so those of lab-1 and
    # lab-2 overlap; one attacked container on each, so that both have one due whatever the uptimes.
    run_playbook('lab/demo/workloads.yml')
    try:
        proc = run_playbook('playbooks/defend.yml', '-e', '@lab/demo/plan-vars.yml',
                            '-e', '{"mtd_defend_reference": [6, 8, 10], "mtd_defend_delta_t": 3}',
                            '-e', '{"mtd_defend_attacked": ["lab-1/web-1", "lab-2/web-2"], "mtd_defend_concurrency": 4}',
                            '-e', '{"mtd_defend_health_cmd": ["true"]}', '-e', 'mtd_defend_report=%s' % report)
    finally:
        run_playbook('lab/demo/cleanup.yml')
    migrations = json.loads(report.read_text())['migrations']
    assert len(migrations) >= 2, 'fewer than two containers were due: %s' % [m['name'] for m in migrations]
    assert all(m['state'] == 'Succeeded' for m in migrations), [(m['name'], m['error']) for m in migrations]
    page = tmp_path / 'defend.html'
    assert_private(page)
    assert 'Timeline of this run: %s' % page in proc.stdout
    # progress, as it happened: one line per state change of every migration
    for m in migrations:
        for state in ('Pending', 'Ready', 'Started', 'Migrating', 'Completed', 'Succeeded'):
            line = '%s %s %s -> %s: %s at +' % (m['id'], m['name'], m['source'],
                                                '?' if state == 'Pending' else m['target'], state)
            assert line in proc.stdout, line
        assert m['frozen_at'] <= m['resumed_at'] and m['frozen_seconds'] == pytest.approx(m['resumed_at'] - m['frozen_at'], abs=0.002)
        assert_private(tmp_path / ('%s__%s.html' % (m['source'], m['name'])))
    dom = rendered(page)
    check_rows(dom, migrations)
    most = max(int(e['attrs']['data-count']) for e in dom.find('rect', 'busy-run', svg='fleet'))
    assert most == overlap(migrations) and most >= 2, 'the migrations did not run at the same time (%d)' % most
    png = tmp_path / 'defend.png'
    check_screenshot(page, dom, png)
    if os.environ.get('MTD_REPORT_PNG'):
        chromium('--screenshot=%s' % os.environ['MTD_REPORT_PNG'], '--window-size=1140,%d' % readme_height(dom),
                 'file://%s' % page)


def readme_height(dom):
    """The height of the page down to the end of the first close-up (the README shows that much)."""
    fleet = dom.find('svg', 'fleet')[0]['attrs']
    closeup = dom.find('svg', 'closeup')[0]['attrs']
    return int(float(fleet['height']) + float(closeup['height']) + 445)


def test_a_rolled_back_migration_is_drawn_as_failed(tmp_path):
    name = start_workload('lab-1')
    record = tmp_path / 'record.json'
    try:
        proxy, extra = wait_for_port_and_start_proxy('cut', 3000)
        try:
            proc = migrate(name, 'lab-1', target='lab-3', report=str(record), extra=extra, check=False)
        finally:
            proxy.kill()
            proxy.wait()
    finally:
        remove_everywhere(name)
    rec = json.loads(record.read_text())
    assert rec['state'] == 'Failed' and rec['rollback']['source'] == 'running', rec
    assert ': Failed at +' in proc.stdout and 'FAILED - rolled back, the source is running' in proc.stdout
    page = tmp_path / 'record.html'
    assert_private(page)
    dom = rendered(page)
    check_rows(dom, [rec])
    [row] = dom.find('g', 'row', svg='fleet')
    assert row['attrs']['data-outcome'] == 'rolled_back'
    kinds = [e['attrs']['data-kind'] for e in dom.find('rect', 'seg', svg='fleet')]
    assert kinds[:2] == ['before', 'frozen_bound'], kinds
    assert any('Sending the checkpoint failed' in e['text'] for e in dom.find('dd'))
    check_screenshot(page, dom, tmp_path / 'record.png')


def test_the_readme_shows_a_picture_of_a_real_run():
    png = ROOT / 'docs' / 'images' / 'timeline.png'
    assert png.is_file() and png.stat().st_size < 200 * 1024
    width, height, dummy, dummy2 = read_png(png)
    assert width >= 800 and height >= 300
    assert '](docs/images/timeline.png)' in (ROOT / 'README.md').read_text()
