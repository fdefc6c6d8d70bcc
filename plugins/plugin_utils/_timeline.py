# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The run report: migration records drawn as one HTML page with inline SVG timelines.

Pure (no I/O, no clock): the same records give the same page. Every text taken from a record is
escaped. Layout of a record (``layout``):

* the row spans the last attempt in its ``history`` (from its last ``Pending`` to its last entry);
* ``before`` the freeze / ``frozen`` / ``after``: the frozen window is ``[frozen_at, resumed_at]`` (the
  source's and the target's clocks, recorded by migration_completed) when known; a migration that
  failed after ``Migrating`` was frozen at most from ``Migrating`` to ``Failed`` (the rollback resumes the
  source last); one without ``Migrating`` was never frozen;
* phases on two lanes, placed from their durations around the exact instants: on the source
  ``connect``, ``freeze`` end at ``frozen_at``, then ``dump``, ``rootfs``, ``volumes``, ``send``; on the
  target ``pull``, ``create`` end at ``Ready``, ``wait`` … ``restore`` end at ``resumed_at``, then
  ``lazy_fetch``, ``health``.
"""

from __future__ import annotations

import datetime
import html
import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

Span = Tuple[str, float, float]

SOURCE_BEFORE_FREEZE = ('connect', 'freeze')
SOURCE_FROZEN = ('dump', 'rootfs', 'volumes', 'send')
TARGET_PREPARE = ('pull', 'create')
TARGET_BEFORE_RESUME = ('wait', 'receive', 'verify', 'layer', 'volumes', 'place', 'lazy_daemon', 'restore')
TARGET_AFTER_RESUME = ('lazy_fetch', 'health')

COLORS = {
    'before': '#6baed6', 'frozen': '#d62728', 'frozen_approx': '#e8787a', 'frozen_bound': '#f4a6a6', 'after': '#31a354',
    'rollback': '#969696', 'unfinished': '#dadada', 'busy-run': '#4292c6', 'busy-frozen': '#cb181d',
}
PHASE_COLORS = {
    'connect': '#c6dbef', 'freeze': '#fd8d3c', 'dump': '#e6550d', 'rootfs': '#fdae6b', 'volumes': '#fdd0a2',
    'send': '#9e9ac8', 'pull': '#c7e9c0', 'create': '#a1d99b', 'wait': '#eeeeee', 'receive': '#bcbddc',
    'verify': '#dadaeb', 'layer': '#fdae6b', 'place': '#d9d9d9', 'lazy_daemon': '#cccccc', 'restore': '#756bb1',
    'lazy_fetch': '#74c476', 'health': '#41ab5d',
}
SEGMENT_TEXT = {
    'before': 'before the freeze', 'frozen': 'frozen', 'frozen_approx': 'frozen (placed approximately)',
    'frozen_bound': 'frozen at most (failed, rolled back)',
    'after': 'after the resume', 'rollback': 'rollback', 'unfinished': 'not finished',
}


def esc(value: Any) -> str:
    """Text of a record for HTML (text and attribute values alike)."""
    return html.escape('' if value is None else str(value), quote=True)


def num(value: Any) -> Optional[float]:
    """A number of a record (numbers or numeric strings), None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def seconds_text(value: Optional[float]) -> str:
    if value is None:
        return '-'
    if value == 0:
        return '0 s'
    if abs(value) >= 100:
        return '%.0f s' % value
    if abs(value) >= 10:
        return '%.1f s' % value
    return '%.3g s' % value if abs(value) >= 0.001 else '%.4f s' % value


def _dict(value: Any) -> Dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def last_attempt(history: Any) -> List[Tuple[str, float]]:
    """The (state, epoch) entries of the last attempt: from the last Pending on (earlier runs of a
    converged migration stay in its history)."""
    entries = []
    for entry in history if isinstance(history, list) else []:
        entry = _dict(entry)
        epoch = num(entry.get('epoch'))
        if epoch is not None and entry.get('state'):
            entries.append((str(entry['state']), epoch))
    pending = [i for i, (state, dummy) in enumerate(entries) if state == 'Pending']
    return entries[pending[-1]:] if pending else entries


def chain(timings: Mapping[str, Any], names: Sequence[str], anchor: float, backward: bool = False) -> List[Span]:
    """Phases one after another from ``anchor`` (forward), or ending at it (backward); absent or
    non-numeric durations take no time."""
    spans: List[Span] = []
    at = anchor
    for name in (reversed(names) if backward else names):
        seconds = num(timings.get(name))
        if seconds is None or seconds < 0:
            continue
        start, end = (at - seconds, at) if backward else (at, at + seconds)
        spans.append((name, start, end))
        at = start if backward else end
    return sorted(spans, key=lambda span: span[1]) if backward else spans


def freeze_window(record: Mapping[str, Any], states: Mapping[str, float], end: float) -> Optional[Tuple[float, float, bool]]:
    """``(start, end, exact)`` of the time the source was frozen, None when it never was."""
    frozen_at, resumed_at = num(record.get('frozen_at')), num(record.get('resumed_at'))
    if frozen_at is not None and resumed_at is not None and resumed_at >= frozen_at:
        return frozen_at, resumed_at, True
    migrating = states.get('Migrating')
    if migrating is None:
        return None
    frozen = num(record.get('frozen_seconds'))
    if frozen is not None and 'Completed' in states:
        return migrating, migrating + frozen, False
    return migrating, states.get('Failed', end), False


def outcome(record: Mapping[str, Any], states: Mapping[str, float]) -> str:
    state = record.get('state')
    if state == 'Succeeded':
        return 'succeeded'
    if state == 'Failed':
        return 'rolled_back' if 'Migrating' in states else 'refused'
    return 'unfinished'


def segments(row_start: float, row_end: float, window: Optional[Tuple[float, float, bool]], result: str) -> List[Span]:
    """before / frozen / after pieces of a row (the after piece of a failed one is its rollback)."""
    after = {'succeeded': 'after', 'rolled_back': 'rollback', 'refused': 'rollback'}.get(result, 'unfinished')
    if window is None:
        return [('before', row_start, row_end)] if result != 'unfinished' else [('unfinished', row_start, row_end)]
    start, end = max(row_start, min(window[0], row_end)), max(row_start, min(window[1], row_end))
    frozen = 'frozen' if window[2] else ('frozen_approx' if result == 'succeeded' else 'frozen_bound')
    pieces = [('before', row_start, start), (frozen, start, end), (after, end, row_end)]
    return [piece for piece in pieces if piece[2] > piece[1] or piece[0] == frozen]


def lanes(record: Mapping[str, Any], states: Mapping[str, float], window) -> Dict[str, List[Span]]:
    """The phases of the source and of the target, placed in time (see the module's docstring)."""
    phases = _dict(record.get('phases'))
    source: List[Span] = []
    target: List[Span] = []
    if 'Ready' in states:
        target += chain(_dict(phases.get('prepare')), TARGET_PREPARE, states['Ready'], backward=True)
    if window is not None and window[2]:
        checkpoint, restore = _dict(phases.get('checkpoint')), _dict(phases.get('restore'))
        source += chain(checkpoint, SOURCE_BEFORE_FREEZE, window[0], backward=True)
        source += chain(checkpoint, SOURCE_FROZEN, window[0])
        target += chain(restore, TARGET_BEFORE_RESUME, window[1], backward=True)
        target += chain(restore, TARGET_AFTER_RESUME, window[1])
    return {'source': source, 'target': target}


def layout(record: Any) -> Dict[str, Any]:
    """Everything the page draws of one record, in epoch seconds."""
    record = _dict(record)
    history = last_attempt(record.get('history'))
    states = dict(history)
    start = history[0][1] if history else 0.0
    end = max([start] + [epoch for dummy, epoch in history])
    window = freeze_window(record, states, end)
    result = outcome(record, states)
    return {
        'id': str(record.get('id') or '?'), 'name': str(record.get('name') or '?'),
        'source': record.get('source') or '?', 'target': record.get('target') or '-',
        'state': str(record.get('state') or '?'), 'outcome': result,
        'start': start, 'end': end, 'history': history, 'window': window,
        'segments': segments(start, end, window, result), 'lanes': lanes(record, states, window),
        'frozen_seconds': num(record.get('frozen_seconds')) if window else None,
        'duration': end - start if history else None,
        'error': record.get('error'), 'rollback': _dict(record.get('rollback')),
        'phases': _dict(record.get('phases')),
        'source_os': _dict(record.get('source_os')), 'target_os': _dict(record.get('target_os')),
    }


def concurrency(rows: Iterable[Mapping[str, Any]], key: str = 'run') -> List[Tuple[float, float, int]]:
    """``(start, end, count)`` of the intervals in which ``count`` > 0 migrations were in progress
    (``key='run'``) or frozen (``key='frozen'``)."""
    events: List[Tuple[float, int]] = []
    for row in rows:
        if key == 'run':
            span = (row['start'], row['end'])
        elif row['window'] is not None:
            span = (row['window'][0], row['window'][1])
        else:
            continue
        if span[1] > span[0]:
            events += [(span[0], 1), (span[1], -1)]
    out: List[Tuple[float, float, int]] = []
    count = 0
    events.sort()
    for n, (at, delta) in enumerate(events):
        count += delta
        nxt = events[n + 1][0] if n + 1 < len(events) else at
        if count > 0 and nxt > at:
            out.append((at, nxt, count))
    return out


def nice_step(span: float, ticks: int = 8) -> float:
    """1, 2 or 5 times a power of ten, so that ``span`` gets at most about ``ticks`` ticks."""
    raw = max(span, 1e-6) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5):
        if power * factor >= raw * (1 - 1e-9):
            return power * factor
    return power * 10


class Scale:
    """Epoch seconds to x pixels between ``left`` and ``right``."""

    def __init__(self, start: float, end: float, left: float, right: float):
        self.start, self.span = start, max(end - start, 1e-6)
        self.left, self.width = left, right - left

    def x(self, epoch: float) -> float:
        return self.left + (epoch - self.start) / self.span * self.width

    def w(self, start: float, end: float) -> float:
        """Width of an interval, at least one pixel (a phase of a millisecond stays visible)."""
        return max(1.0, (end - start) / self.span * self.width)


def svg_axis(scale: Scale, top: float, bottom: float, origin: float) -> List[str]:
    """Grid lines and labels: seconds since ``origin``."""
    step = nice_step(scale.span)
    first = origin + step * int((scale.start - origin) / step)
    out = []
    tick = first
    while tick <= scale.start + scale.span + 1e-9:
        if tick >= scale.start - 1e-9:
            x = scale.x(tick)
            label = ('%g' % round(tick - origin, 6)) + ' s'
            out.append('<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>' % (x, top, x, bottom))
            out.append('<text class="tick" x="%.1f" y="%.1f">%s</text>' % (x, top - 4, esc(label)))
        tick += step
    return out


def svg_span(scale: Scale, span: Span, y: float, height: float, cls: str, color: str, tip: str,
             attrs: str = '') -> str:
    name, start, end = span
    return ('<rect class="%s" %s x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>'
            % (cls, attrs, scale.x(start), y, scale.w(start, end), height, color, esc(tip)))


def row_note(row: Mapping[str, Any]) -> str:
    """The third line of a row's label: its outcome, or how long it was frozen."""
    if row['outcome'] == 'rolled_back':
        back = row['rollback'].get('source')
        return 'FAILED, rolled back%s' % ((' - source %s again' % back) if back else '')
    if row['outcome'] == 'refused':
        return 'FAILED before the freeze (never frozen)'
    if row['outcome'] == 'unfinished':
        return 'not finished (%s)' % row['state']
    approx = '' if row['window'] is None or row['window'][2] else ' (placed approximately)'
    return 'frozen %s of %s%s' % (seconds_text(row['frozen_seconds']), seconds_text(row['duration']), approx)


def svg_row(scale: Scale, row: Mapping[str, Any], y: float) -> List[str]:
    """One migration: its label, the before / frozen / after bar, state ticks and the two phase lanes."""
    out = ['<g class="row" data-migration="%s" data-outcome="%s">' % (esc(row['id']), esc(row['outcome'])),
           '<text class="name" x="8" y="%.1f">%s</text>' % (y + 11, esc(row['name'])),
           '<text class="sub" x="8" y="%.1f">%s &#8594; %s &#183; %s</text>'
           % (y + 25, esc(row['source']), esc(row['target']), esc(row['state'])),
           '<text class="note note-%s" x="8" y="%.1f">%s</text>' % (esc(row['outcome']), y + 39, esc(row_note(row)))]
    for seg in row['segments']:
        tip = '%s: %s (from %s to %s after the start)' % (
            SEGMENT_TEXT[seg[0]], seconds_text(seg[2] - seg[1]), seconds_text(seg[1] - row['start']),
            seconds_text(seg[2] - row['start']))
        out.append(svg_span(scale, seg, y, 18, 'seg seg-' + seg[0], COLORS[seg[0]], tip, 'data-kind="%s"' % seg[0]))
    for state, epoch in row['history']:
        x = scale.x(epoch)
        out.append('<line class="state" data-state="%s" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f">'
                   '<title>%s at %s</title></line>'
                   % (esc(state), x, y - 3, x, y + 21, esc(state), esc(seconds_text(epoch - row['start']))))
    for n, lane in enumerate(('source', 'target')):
        for span in row['lanes'][lane]:
            tip = '%s %s: %s' % (lane, span[0], seconds_text(span[2] - span[1]))
            out.append(svg_span(scale, span, y + 22 + n * 11, 9, 'phase', PHASE_COLORS.get(span[0], '#bbbbbb'), tip,
                                'data-lane="%s" data-phase="%s"' % (lane, esc(span[0]))))
    out.append('</g>')
    return out


LEFT, RIGHT, WIDTH = 250.0, 1080.0, 1100
ROW_HEIGHT = 58


def svg_open(cls: str, height: float, label: str) -> str:
    return ('<svg class="%s" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
            'role="img" aria-label="%s">' % (cls, WIDTH, height, WIDTH, height, esc(label)))


def svg_fleet(rows: Sequence[Mapping[str, Any]]) -> str:
    """All migrations on one time axis, with a strip of how many ran (and were frozen) at once."""
    origin = min(row['start'] for row in rows)
    scale = Scale(origin, max(row['end'] for row in rows), LEFT, RIGHT)
    top, strip = 24.0, 16.0
    first = top + 2 * strip + 12
    height = first + ROW_HEIGHT * len(rows)
    out = [svg_open('fleet', height, 'timeline of %d migration(s)' % len(rows))]
    out += svg_axis(scale, top, height - 4, origin)
    for n, (key, text) in enumerate((('run', 'running at once'), ('frozen', 'frozen at once'))):
        y = top + 4 + n * strip
        out.append('<text class="lane" x="8" y="%.1f">%s</text>' % (y + 10, text))
        for start, end, count in concurrency(rows, key):
            out.append(svg_span(scale, ('', start, end), y, strip - 4, 'busy busy-' + key, COLORS['busy-' + key],
                                '%d %s for %s' % (count, text, seconds_text(end - start)),
                                'data-count="%d" opacity="%.2f"' % (count, min(0.9, 0.3 * count))))
    for n, row in enumerate(rows):
        out += svg_row(scale, row, first + n * ROW_HEIGHT)
    out.append('</svg>')
    return '\n'.join(out)


def clip(spans: Iterable[Span], low: float, high: float) -> List[Span]:
    return [(name, max(start, low), min(end, high)) for name, start, end in spans if end > low and start < high]


def svg_closeup(row: Mapping[str, Any]) -> str:
    """The phases around the freeze at a scale where milliseconds show, with their names."""
    window = row['window']
    near = [span for lane in row['lanes'].values() for span in lane if span[0] not in ('wait', 'pull', 'create')]
    low = min([window[0]] + [span[1] for span in near])
    high = max([window[1]] + [span[2] for span in near])
    pad = (high - low) * 0.04 or 0.001
    scale = Scale(low - pad, high + pad, LEFT, RIGHT)
    top, lane_h = 24.0, 22.0
    out = [svg_open('closeup', top + 2 * lane_h + 22, 'phases of %s around the freeze' % row['name'])]
    out += svg_axis(scale, top, top + 2 * lane_h + 8, window[0])
    out.append(svg_span(scale, ('frozen', window[0], window[1]), top + 2, 2 * lane_h, 'frozen-band',
                        COLORS['frozen'], 'frozen: %s' % seconds_text(window[1] - window[0]), 'opacity="0.15"'))
    for n, lane in enumerate(('source', 'target')):
        y = top + 4 + n * lane_h
        host = row['source'] if lane == 'source' else row['target']
        out.append('<text class="lane" x="8" y="%.1f">%s %s</text>' % (y + 12, lane, esc(host)))
        for span in clip(row['lanes'][lane], scale.start, scale.start + scale.span):
            out.append(svg_span(scale, span, y, lane_h - 6, 'phase', PHASE_COLORS.get(span[0], '#bbbbbb'),
                                '%s %s: %s' % (lane, span[0], seconds_text(span[2] - span[1])),
                                'data-lane="%s" data-phase="%s"' % (lane, esc(span[0]))))
            if scale.w(span[1], span[2]) > 6.5 * len(span[0]) + 4:
                out.append('<text class="pname" x="%.1f" y="%.1f">%s</text>' % (scale.x(span[1]) + 2, y + 12, esc(span[0])))
    frozen = row['frozen_seconds'] if row['frozen_seconds'] is not None else window[1] - window[0]
    out.append('<text class="lane" x="%.1f" y="%.1f">frozen %s (axis: seconds after the freeze)</text>'
               % (LEFT, top + 2 * lane_h + 20, esc(seconds_text(frozen))))
    out.append('</svg>')
    return '\n'.join(out)


PHASE_GROUPS = (('prepare', 'target, before the freeze'), ('checkpoint', 'source'), ('transfer', 'the stream'),
                ('receive', 'target'), ('restore', 'target'), ('bytes', 'checkpoint size'))


def phase_table(row: Mapping[str, Any]) -> str:
    """Every recorded phase value: seconds where the key is a phase, the value itself otherwise."""
    lines = ['<table class="phases"><tr><th>step</th><th>phase</th><th>value</th></tr>']
    for group, where in PHASE_GROUPS:
        values = _dict(row['phases'].get(group))
        for key in sorted(values):
            value = values[key]
            timed = group in ('prepare', 'checkpoint', 'restore') or key == 'seconds'
            text = seconds_text(num(value)) if timed and num(value) is not None else str(value)
            lines.append('<tr data-group="%s" data-phase="%s"><td>%s (%s)</td><td>%s</td><td>%s</td></tr>'
                         % (esc(group), esc(key), esc(group), esc(where), esc(key), esc(text)))
    lines.append('</table>')
    return '\n'.join(lines)


def os_text(facts: Mapping[str, Any]) -> str:
    return ' '.join(str(facts[key]) for key in ('id', 'version_id') if facts.get(key))


def frozen_text(row: Mapping[str, Any]) -> str:
    window = row['window']
    if window is None:
        return 'never'
    if row['frozen_seconds'] is not None:
        return seconds_text(row['frozen_seconds']) + ('' if window[2] else ' (the instants were not recorded)')
    return 'at most %s (from Migrating to Failed; the rollback resumed the source)' % seconds_text(window[1] - window[0])


def section(row: Mapping[str, Any]) -> str:
    """One migration's details: what happened, the close-up of its freeze, its phases."""
    facts = [('migration', row['id']), ('from', '%s %s' % (row['source'], os_text(row['source_os']))),
             ('to', '%s %s' % (row['target'], os_text(row['target_os']))), ('state', row['state']),
             ('states', ' > '.join('%s +%s' % (state, seconds_text(epoch - row['start']))
                                   for state, epoch in row['history'])),
             ('frozen', frozen_text(row)),
             ('total', seconds_text(row['duration']))]
    if row['error']:
        facts.append(('error', row['error']))
    if row['rollback']:
        facts.append(('rollback', ', '.join('%s: %s' % (k, row['rollback'][k]) for k in sorted(row['rollback']))))
    out = ['<section class="migration" data-migration="%s" data-outcome="%s">' % (esc(row['id']), esc(row['outcome'])),
           '<h3>%s <span class="note-%s">%s</span></h3>' % (esc(row['name']), esc(row['outcome']), esc(row_note(row))),
           '<dl>' + ''.join('<dt>%s</dt><dd>%s</dd>' % (esc(k), esc(v)) for k, v in facts) + '</dl>']
    if row['window'] and row['window'][2]:
        out.append(svg_closeup(row))
    out.append(phase_table(row))
    out.append('</section>')
    return '\n'.join(out)


STYLE = """
body { font-family: sans-serif; margin: 16px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 24px; } h3 { font-size: 14px; }
svg { display: block; background: #fff; }
svg text { font-size: 11px; fill: #333; }
svg text.name { font-weight: bold; font-size: 12px; }
svg text.tick { text-anchor: middle; fill: #777; font-size: 10px; }
svg text.pname { fill: #000; font-size: 10px; }
svg line.grid { stroke: #e4e4e4; }
svg line.state { stroke: #333; stroke-width: 1; }
.note-rolled_back, .note-refused { fill: #b10000; color: #b10000; font-weight: bold; }
.legend span.sw { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; font-size: 13px; }
dt { color: #666; } dd { margin: 0; white-space: pre-wrap; }
table.phases { border-collapse: collapse; font-size: 12px; margin-top: 8px; }
table.phases td, table.phases th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
section.migration { border-top: 1px solid #ccc; margin-top: 16px; }
"""


def summary(rows: Sequence[Mapping[str, Any]]) -> str:
    done = [row for row in rows if row['outcome'] == 'succeeded']
    failed = [row for row in rows if row['outcome'] in ('rolled_back', 'refused')]
    running = max([count for dummy, dummy2, count in concurrency(rows)] or [0])
    frozen = max([count for dummy, dummy2, count in concurrency(rows, 'frozen')] or [0])
    longest = max([row['frozen_seconds'] for row in rows if row['frozen_seconds'] is not None] or [None], key=lambda v: v or 0)
    origin = datetime.datetime.fromtimestamp(min(row['start'] for row in rows), datetime.timezone.utc)
    return ('%d migration(s): %d succeeded, %d failed. At the same time: at most %d running, %d frozen. The longest '
            'freeze: %s. Time 0 is %s UTC (the controller\'s clock; the freeze and the resume are the hosts\' '
            'clocks).' % (len(rows), len(done), len(failed), running, frozen, seconds_text(longest),
                          origin.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]))


def legend() -> str:
    kinds = ('before', 'frozen', 'frozen_approx', 'frozen_bound', 'after', 'rollback')
    items = ''.join('<span class="sw" style="background:%s"></span>%s' % (COLORS[k], esc(SEGMENT_TEXT[k])) for k in kinds)
    names = dict.fromkeys(SOURCE_BEFORE_FREEZE + SOURCE_FROZEN + TARGET_PREPARE + TARGET_BEFORE_RESUME
                          + TARGET_AFTER_RESUME)
    phases = ''.join('<span class="sw" style="background:%s"></span>%s' % (PHASE_COLORS[name], esc(name))
                     for name in names)
    return ('<p class="legend">%s</p><p class="legend">phases (upper lane: the source, lower lane: the target): %s</p>'
            % (items, phases))


def timeline_html(records: Any, title: str = 'mtd.containers run report') -> str:
    """The HTML page of a run: a fleet timeline of every record (a common time axis: what ran at the
    same time), then each migration with a close-up of its freeze and the table of its phases."""
    rows = sorted((layout(record) for record in (records if isinstance(records, list) else [records])
                   if isinstance(record, Mapping)), key=lambda row: (row['start'], row['id']))
    body = ['<h1>%s</h1>' % esc(title)]
    if rows:
        body += ['<p class="summary">%s</p>' % esc(summary(rows)), legend(), svg_fleet(rows),
                 '<h2>Each migration</h2>'] + [section(row) for row in rows]
    else:
        body.append('<p class="summary">No migration in this run.</p>')
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">\n'
            '<title>%s</title><style>%s</style></head>\n<body>\n%s\n</body></html>\n'
            % (esc(title), STYLE, '\n'.join(body)))
