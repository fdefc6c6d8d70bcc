# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pre-copy live migration: when to stop the copy rounds and do the final stop-and-copy.

Private module_utils file: its API may change without notice. Pure functions, no I/O. ``checkpoint``
(option ``precopy``) asks ``decide`` (or P.Haul's rules, ``phaul_decide``) after every CRIU pre-dump round
whether to run another one, with the round's real page count (CRIU's ``stats-dump``, read by
``_criuimg.read_dump_stats``); ``round_entries`` makes the per-round list of the result and the record.
``bench/precopy_compare.py`` compares the rules on synthetic traces (``simulate``) and
``bench/precopy_real.py`` on rounds measured on the lab's VM host (``replay``). Unit tests:
``tests/unit/plugins/module_utils/test_precopy.py``.

The model
---------
Round 1 copies every page of the workload while it keeps running. Each later round copies only the pages
dirtied during the round before it (the kernel's soft-dirty bits, reset at every snapshot). A round is
described by what a CRIU ``pre-dump`` reports::

    {'duration': seconds from this round's snapshot to the next one, 'pages': pages copied in the round}

So the pages copied in round ``k + 1`` were dirtied during round ``k``, and the dirty rate of round ``k``
is observed one round later: ``rate_k = pages_{k+1} / duration_k``. After round ``M`` the rates of rounds
``1 .. M-1`` are known; the rate of round ``M`` is what the rule predicts.

The prediction
--------------
``initial_rate`` (pages per second) is the estimate before anything is measured. Every measured rate gives
the error that estimate made, ``e_k = rate_k - initial_rate``, and the prediction is the estimate
corrected by the weighted average of those errors::

    predicted_rate = initial_rate + sum(w_k * e_k) / sum(w_k)
    predicted_pages(round M + 1) = predicted_rate * duration_M

The errors are measured against the fixed initial estimate, not against the corrected predictions of the
earlier rounds: a correction that chases the errors of earlier corrections keeps overshooting (on a
constant dirty rate it never settles), whereas errors against a fixed base settle at once. Once rates are
measured the prediction is their weighted mean; ``initial_rate`` decides the first round (is a pre-copy
worth it at all?).

``estimate: last`` (option) uses the last measured rate as the estimate instead, each error being what that
estimate would have missed (``rate_k - rate_{k-1}``, ``rate_1 - initial_rate`` for the first): the
prediction then follows a trend. It stops earlier on steadily growing dirty rates and worse on noisy ones
(it reads a noisy rise as a trend); ``bench/precopy_compare.py`` shows both.

Weights, oldest round first (``k = 1 .. n``), all growing toward the most recent round because a dirty
rate drifts (the workload changes phase, the set of hot pages shrinks as rounds get shorter):

- ``exponential`` (default): ``w_k = base ** (k - 1)``, ``base`` = ``weight_base`` (default 2): the last
  round weighs as much as all earlier rounds together, so a trend is followed within one or two rounds
  while a single noisy round still moves the prediction only half-way;
- ``linear``: ``w_k = k``; slower to follow a trend, steadier on noisy traces;
- ``uniform``: ``w_k = 1``, the plain mean of the measured rates;
- a list of non-negative numbers: applied to the most recent errors (the list's last number to the last
  round); older errors get weight 0, so a list is also a window. Its last number must be > 0.

The stop rule (``decide``), checked after every round, first match wins
-----------------------------------------------------------------------
1. ``converged``: the round copied at most ``min_pages`` pages (the dirty set is small; freeze now);
2. ``diverging``: the predicted pages of the next round exceed the pages this round copied, or this round
   already copied more than the round before it (the prediction lags one round by construction: the rate
   of the round just done is only measured by the next dump, so observed growth is the freshest evidence);
3. ``stalled``: the next round would copy more than ``(1 - min_shrink)`` of this round's pages: a round
   freezes the workload briefly and costs a pass over the dirty set, so a round that barely shrinks the
   final copy is not worth it (``min_shrink: 0`` gives the bare rule 2);
4. ``time_limit``: the pre-copy time (sum of the durations) reached ``max_time`` seconds;
5. ``max_rounds``: ``max_rounds`` rounds were done (the full copy counts as round 1).

``phaul_decide`` applies P.Haul's fixed rules for comparison: stop at <= 64 pages, at more than 10 %
growth over the previous round, or after 8 rounds. ``simulate`` runs either policy over a synthetic trace.
"""

from __future__ import annotations

import math
from typing import Any, Dict

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError

WEIGHT_SCHEMES = ('exponential', 'linear', 'uniform')
ESTIMATES = ('initial', 'last')

DEFAULT_OPTIONS = {
    'initial_rate': 0.0,
    'weights': 'exponential',
    'weight_base': 2.0,
    'min_pages': 64,
    'min_shrink': 0.1,
    'max_time': 60.0,
    'max_rounds': 8,
    'estimate': 'initial',
}

# P.Haul's fixed iteration rules (phaul/iters.py): the comparison policy.
PHAUL_MAX_ROUNDS = 8
PHAUL_MIN_PAGES = 64
PHAUL_MAX_GROWTH = 0.10

# simulate() gives up on a policy that never stops.
SIMULATE_ROUND_CAP = 1000


def _fmt(number):
    """Format a number for messages: ``230`` or ``230.5`` (no float noise)."""
    number = float(number)
    if number.is_integer():
        return '%d' % number
    if abs(number) >= 100:
        return '%.1f' % number
    return ('%.3f' % number).rstrip('0').rstrip('.')


def _number(value, what, positive=False, integer=False):
    """Return ``value`` as a finite float (or int) >= 0 (> 0 when ``positive``), else raise MtdError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise MtdError('%s is %r; give a number' % (what, value))
        else:
            raise MtdError('%s has type %s; give a number' % (what, type(value).__name__))
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise MtdError('%s is %r; give a finite number' % (what, value))
    if positive and value <= 0:
        raise MtdError('%s is %s; it must be > 0' % (what, _fmt(value)))
    if value < 0:
        raise MtdError('%s is %s; it must be >= 0' % (what, _fmt(value)))
    if integer:
        if not value.is_integer():
            raise MtdError('%s is %s; give a whole number' % (what, _fmt(value)))
        return int(value)
    return value


# ---------------------------------------------------------------- weights

def check_weights(weights, base=2.0):
    """Validate a weight scheme; return it normalised (a scheme name or a list of floats)."""
    if isinstance(weights, str):
        if weights not in WEIGHT_SCHEMES:
            raise MtdError('weights %r is not supported; use one of %s or a list of numbers'
                           % (weights, ', '.join(WEIGHT_SCHEMES)))
        if weights == 'exponential':
            base = _number(base, 'weight_base')
            if base < 1:
                raise MtdError('weight_base is %s; it must be >= 1 so that recent rounds weigh at least as much '
                               'as older ones' % _fmt(base))
        return weights
    if isinstance(weights, (bytes, dict)) or not hasattr(weights, '__iter__'):
        raise MtdError('weights must be one of %s or a list of numbers, got %s'
                       % (', '.join(WEIGHT_SCHEMES), type(weights).__name__))
    weights = [_number(weight, 'weights[%d]' % index) for index, weight in enumerate(weights)]
    if not weights:
        raise MtdError('weights is an empty list; give at least one weight (the last one for the most recent round)')
    if weights[-1] <= 0:
        raise MtdError('the last weight (the most recent round) is %s; it must be > 0 so that the measured '
                       'errors always count' % _fmt(weights[-1]))
    return weights


def error_weights(count, weights='exponential', base=2.0):
    """Return the weights of ``count`` errors, oldest first (see the module docstring)."""
    weights = check_weights(weights, base)
    if count <= 0:
        return []
    if weights == 'uniform':
        return [1.0] * count
    if weights == 'linear':
        return [float(k) for k in range(1, count + 1)]
    if weights == 'exponential':
        base = float(base)
        return [base ** k for k in range(count)]
    if len(weights) >= count:
        return list(weights[-count:])
    return [0.0] * (count - len(weights)) + list(weights)


# ---------------------------------------------------------------- predictor

class DirtyRatePredictor:
    """Dirty-rate prediction: an estimate corrected by the weighted average of its past errors.

    ``observe(duration, dirty_pages)`` records that ``dirty_pages`` pages were dirtied during a round of
    ``duration`` seconds; ``predict_rate()`` and ``predict_pages(next_duration)`` give the prediction for the
    next round. ``estimate`` is ``initial`` (the fixed ``initial_rate``) or ``last`` (the last measured rate).
    ``to_dict()`` / ``from_dict()`` carry the state between module runs as plain data.
    """

    def __init__(self, initial_rate, weights='exponential', weight_base=2.0, estimate='initial', samples=None):
        self.initial_rate = _number(initial_rate, 'initial_rate')
        self.weight_base = _number(weight_base, 'weight_base')
        self.weights = check_weights(weights, self.weight_base)
        if estimate not in ESTIMATES:
            raise MtdError('estimate %r is not supported; use one of %s' % (estimate, ', '.join(ESTIMATES)))
        self.estimate = estimate
        self.samples = []
        if isinstance(samples, (str, bytes, dict)) or (samples is not None and not hasattr(samples, '__iter__')):
            raise MtdError('samples must be a list of {duration, dirty_pages} dicts')
        for index, sample in enumerate(samples or []):
            if not isinstance(sample, dict):
                raise MtdError('samples[%d] must be a dict with duration and dirty_pages' % index)
            self._add(sample.get('duration'), sample.get('dirty_pages'), 'samples[%d].' % index)

    def _add(self, duration, dirty_pages, where=''):
        duration = _number(duration, '%sduration' % where, positive=True)
        dirty_pages = _number(dirty_pages, '%sdirty_pages' % where, integer=True)
        predicted = self.predict_rate()
        base = self.base_rate()
        rate = dirty_pages / duration
        sample = {
            'duration': duration,
            'dirty_pages': dirty_pages,
            'rate': rate,
            'predicted_rate': predicted,
            'error': rate - base,
        }
        self.samples.append(sample)
        return dict(sample)

    def observe(self, round_duration, dirty_pages):
        """Record one measured round; return it with its rate, the prediction made for it and its error."""
        return self._add(round_duration, dirty_pages)

    def base_rate(self):
        """The uncorrected estimate for the next round."""
        if self.estimate == 'last' and self.samples:
            return self.samples[-1]['rate']
        return self.initial_rate

    def rates(self):
        return [sample['rate'] for sample in self.samples]

    def errors(self):
        """The errors of the uncorrected estimate, oldest first."""
        return [sample['error'] for sample in self.samples]

    def current_weights(self):
        """The weights of ``errors()``, oldest first (not normalised)."""
        return error_weights(len(self.samples), self.weights, self.weight_base)

    def predict_rate(self):
        """The predicted dirty rate (pages per second) of the next round, never below 0."""
        errors = self.errors()
        if not errors:
            return self.base_rate()
        weights = self.current_weights()
        correction = math.fsum(w * e for w, e in zip(weights, errors)) / math.fsum(weights)
        return max(0.0, self.base_rate() + correction)

    def predict_pages(self, next_duration):
        """The pages predicted to be dirtied during a round of ``next_duration`` seconds."""
        return self.predict_rate() * _number(next_duration, 'next_duration')

    def to_dict(self):
        return {
            'initial_rate': self.initial_rate,
            'weights': self.weights if isinstance(self.weights, str) else list(self.weights),
            'weight_base': self.weight_base,
            'estimate': self.estimate,
            'samples': [{'duration': s['duration'], 'dirty_pages': s['dirty_pages']} for s in self.samples],
        }

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise MtdError('predictor state must be a dict, got %s' % type(data).__name__)
        if 'initial_rate' not in data:
            raise MtdError('predictor state has no initial_rate')
        return cls(data['initial_rate'], weights=data.get('weights', 'exponential'),
                   weight_base=data.get('weight_base', 2.0), estimate=data.get('estimate', 'initial'),
                   samples=data.get('samples') or [])


# ---------------------------------------------------------------- history and options

def normalise_history(history):
    """Validate the rounds; return them as ``[{'duration': float, 'pages': int}, ...]``."""
    if isinstance(history, (str, bytes, dict)) or not hasattr(history, '__iter__'):
        raise MtdError('history must be a list of {duration, pages} rounds, got %s' % type(history).__name__)
    rounds = []
    for index, item in enumerate(history):
        where = 'history[%d]' % index
        if not isinstance(item, dict):
            raise MtdError('%s must be a dict with duration and pages, got %s' % (where, type(item).__name__))
        for key in ('duration', 'pages'):
            if item.get(key) is None:
                raise MtdError('%s has no %s; every round needs its duration (seconds) and pages copied'
                               % (where, key))
        rounds.append({
            'duration': _number(item['duration'], '%s.duration' % where, positive=True),
            'pages': _number(item['pages'], '%s.pages' % where, integer=True),
        })
    return rounds


def rate_samples(rounds):
    """The measured dirty rates: round ``k`` lasted ``duration_k`` and dirtied what round ``k + 1`` copied."""
    return [(rounds[k]['duration'], rounds[k + 1]['pages']) for k in range(len(rounds) - 1)]


def check_options(options):
    """Merge ``options`` over ``DEFAULT_OPTIONS`` and validate them."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise MtdError('options must be a dict, got %s' % type(options).__name__)
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise MtdError('unknown option%s %s; known options: %s' % (
            's' if len(unknown) > 1 else '', ', '.join(unknown), ', '.join(sorted(DEFAULT_OPTIONS))))
    merged: Dict[str, Any] = dict(DEFAULT_OPTIONS)
    merged.update((key, value) for key, value in options.items() if value is not None or key == 'max_time')
    merged['initial_rate'] = _number(merged['initial_rate'], 'initial_rate')
    merged['weight_base'] = _number(merged['weight_base'], 'weight_base')
    merged['weights'] = check_weights(merged['weights'], merged['weight_base'])
    if merged['estimate'] not in ESTIMATES:
        raise MtdError('estimate %r is not supported; use one of %s' % (merged['estimate'], ', '.join(ESTIMATES)))
    merged['min_pages'] = _number(merged['min_pages'], 'min_pages', integer=True)
    merged['min_shrink'] = _number(merged['min_shrink'], 'min_shrink')
    if merged['min_shrink'] >= 1:
        raise MtdError('min_shrink is %s; it is a fraction and must be < 1 (0 disables the check)'
                       % _fmt(merged['min_shrink']))
    if merged['max_time'] is not None:
        merged['max_time'] = _number(merged['max_time'], 'max_time', positive=True)
    merged['max_rounds'] = _number(merged['max_rounds'], 'max_rounds', positive=True, integer=True)
    return merged


# ---------------------------------------------------------------- policies

def decide(history, options=None):
    """Decide after the last round in ``history`` whether to do another pre-copy round.

    ``history``: the rounds done so far, ``[{'duration': s, 'pages': n}, ...]`` (round 1 = the full copy).
    ``options``: see ``DEFAULT_OPTIONS`` and the module docstring.

    Returns ``{'continue', 'code', 'reason', 'round', 'produced_pages', 'predicted_rate', 'predicted_pages',
    'total_time', 'rates', 'errors', 'weights'}``; ``code`` is one of ``first_round``, ``converging``
    (both continue), ``converged``, ``diverging``, ``stalled``, ``time_limit``, ``max_rounds``.
    """
    rounds = normalise_history(history)
    opts = check_options(options)
    predictor = DirtyRatePredictor(opts['initial_rate'], opts['weights'], opts['weight_base'], opts['estimate'])
    for duration, pages in rate_samples(rounds):
        predictor.observe(duration, pages)
    weights = predictor.current_weights()
    total = math.fsum(weights)
    result = {
        'round': len(rounds),
        'produced_pages': None,
        'predicted_rate': round(predictor.predict_rate(), 3),
        'predicted_pages': None,
        'total_time': round(math.fsum(item['duration'] for item in rounds), 6),
        'rates': [round(rate, 3) for rate in predictor.rates()],
        'errors': [round(error, 3) for error in predictor.errors()],
        'weights': [round(weight / total, 6) for weight in weights] if total else [],
    }
    if not rounds:
        result.update({'continue': True, 'code': 'first_round',
                       'reason': 'first round: full copy while the container runs'})
        return result

    last = rounds[-1]
    produced = last['pages']
    predicted = predictor.predict_pages(last['duration'])
    result['produced_pages'] = produced
    result['predicted_pages'] = round(predicted, 1)
    count = len(rounds)
    if produced <= opts['min_pages']:
        code, reason = 'converged', 'converged: below floor: round %d copied %d <= %d pages' % (
            count, produced, opts['min_pages'])
    elif predicted > produced:
        code, reason = 'diverging', 'diverging: predicted %s > produced %d pages' % (_fmt(predicted), produced)
    elif count >= 2 and produced > rounds[-2]['pages']:
        code, reason = 'diverging', 'diverging: round %d copied %d > %d pages of round %d' % (
            count, produced, rounds[-2]['pages'], count - 1)
    elif opts['min_shrink'] > 0 and predicted > produced * (1 - opts['min_shrink']):
        code, reason = 'stalled', 'stalled: predicted %s of produced %d pages saves less than %s%%' % (
            _fmt(predicted), produced, _fmt(opts['min_shrink'] * 100))
    elif opts['max_time'] is not None and result['total_time'] >= opts['max_time']:
        code, reason = 'time_limit', 'time limit: pre-copy took %ss >= %ss' % (
            _fmt(result['total_time']), _fmt(opts['max_time']))
    elif count >= opts['max_rounds']:
        code, reason = 'max_rounds', 'max rounds: %d rounds done, cap %d' % (count, opts['max_rounds'])
    else:
        result.update({'continue': True, 'code': 'converging',
                       'reason': 'converging: predicted %s <= produced %d pages' % (_fmt(predicted), produced)})
        return result
    result.update({'continue': False, 'code': code, 'reason': reason})
    return result


def phaul_decide(history, options=None):
    """P.Haul's fixed rules: stop at <= 64 pages, > 10 % growth over the previous round, or 8 rounds.

    ``options`` is accepted for a common policy signature and ignored: these rules have no knobs.
    """
    rounds = normalise_history(history)
    result: Dict[str, Any] = {'round': len(rounds), 'produced_pages': None, 'growth': None,
                              'total_time': round(math.fsum(item['duration'] for item in rounds), 6)}
    if not rounds:
        result.update({'continue': True, 'code': 'first_round',
                       'reason': 'first round: full copy while the container runs'})
        return result
    produced = rounds[-1]['pages']
    result['produced_pages'] = produced
    count = len(rounds)
    growth = None
    if count >= 2:
        previous = rounds[-2]['pages']
        growth = (produced - previous) / float(previous) if previous else (math.inf if produced else 0.0)
        result['growth'] = None if math.isinf(growth) else round(growth, 6)
    if produced <= PHAUL_MIN_PAGES:
        code, reason = 'converged', 'converged: below floor: round %d copied %d <= %d pages' % (
            count, produced, PHAUL_MIN_PAGES)
    elif growth is not None and growth > PHAUL_MAX_GROWTH:
        code, reason = 'diverging', 'diverging: round %d copied %d pages, %s%% more than round %d' % (
            count, produced, 'inf' if math.isinf(growth) else _fmt(growth * 100), count - 1)
    elif count >= PHAUL_MAX_ROUNDS:
        code, reason = 'max_rounds', 'max rounds: %d rounds done, cap %d' % (count, PHAUL_MAX_ROUNDS)
    else:
        result.update({'continue': True, 'code': 'converging',
                       'reason': 'converging: round %d copied %d pages' % (count, produced)})
        return result
    result.update({'continue': False, 'code': code, 'reason': reason})
    return result


def fixed_decide(history, options=None):
    """Exactly ``max_rounds`` rounds, whatever they copy (to record a trace for ``replay``)."""
    rounds = normalise_history(history)
    cap = check_options(options)['max_rounds']
    result: Dict[str, Any] = {'round': len(rounds), 'produced_pages': rounds[-1]['pages'] if rounds else None,
                              'total_time': round(math.fsum(item['duration'] for item in rounds), 6)}
    if len(rounds) >= cap:
        result.update({'continue': False, 'code': 'max_rounds',
                       'reason': 'max rounds: %d rounds done, cap %d' % (len(rounds), cap)})
    else:
        result.update({'continue': True, 'code': 'first_round' if not rounds else 'fixed',
                       'reason': 'fixed: round %d of %d' % (len(rounds) + 1, cap)})
    return result


POLICIES = {'predictive': decide, 'phaul': phaul_decide, 'fixed': fixed_decide}


# ---------------------------------------------------------------- simulation

def _series(trace, key):
    values = trace[key]
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, '__iter__'):
        raise MtdError('trace.%s must be a list of numbers' % key)
    values = [_number(value, 'trace.%s[%d]' % (key, index)) for index, value in enumerate(values)]
    if not values:
        raise MtdError('trace.%s is empty; give at least one value (the last one repeats)' % key)
    return values


def simulate(trace, policy='predictive', options=None):
    """Run a stop policy over a synthetic dirty-page trace.

    ``trace``: ``{'total_pages': N, 'bandwidth': pages/s, 'overhead': s per round (default 0),
    'working_set': cap on the pages dirtied in a round (default N)}`` plus exactly one of
    ``'rates'`` (pages/s dirtied during round k) or ``'dirty_pages'`` (pages dirtied during round k); the
    last value repeats when the rounds outlast the list.

    Round k copies ``pages_k`` pages (round 1: all N) and lasts ``overhead + pages_k / bandwidth``; what it
    dirties is what round k + 1 (or the final stop-and-copy) copies. ``policy`` is ``'predictive'``
    (``decide``), ``'phaul'`` or a callable ``(history, options) -> {'continue', 'reason', ...}``.

    Returns ``{'rounds', 'pages_copied', 'downtime_pages', 'downtime', 'precopy_time', 'total_time',
    'code', 'reason', 'history'}``; ``downtime`` is the stop-and-copy time of the final dirty set.
    """
    if not isinstance(trace, dict):
        raise MtdError('trace must be a dict, got %s' % type(trace).__name__)
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise MtdError('policy %r is not known; use one of %s or a callable'
                           % (policy, ', '.join(sorted(POLICIES))))
        policy = POLICIES[policy]
    elif not callable(policy):
        raise MtdError('policy must be a policy name or a callable, got %s' % type(policy).__name__)
    if ('rates' in trace) == ('dirty_pages' in trace):
        raise MtdError('trace needs exactly one of rates (pages/s per round) or dirty_pages (pages per round)')
    for key in ('total_pages', 'bandwidth'):
        if key not in trace:
            raise MtdError('trace has no %s' % key)
    total_pages = _number(trace['total_pages'], 'trace.total_pages', positive=True, integer=True)
    bandwidth = _number(trace['bandwidth'], 'trace.bandwidth', positive=True)
    overhead = _number(trace.get('overhead', 0.0), 'trace.overhead')
    working_set = _number(trace.get('working_set', total_pages), 'trace.working_set', integer=True)
    by_rate = 'rates' in trace
    series = _series(trace, 'rates' if by_rate else 'dirty_pages')

    history = []
    to_copy = total_pages
    decision = None
    for index in range(SIMULATE_ROUND_CAP):
        duration = overhead + to_copy / bandwidth
        if duration <= 0:
            raise MtdError('round %d would take no time; give trace.overhead > 0 or pages to copy' % (index + 1))
        history.append({'duration': duration, 'pages': to_copy})
        value = series[min(index, len(series) - 1)]
        dirtied = value * duration if by_rate else value
        to_copy = int(min(working_set, round(dirtied)))
        decision = policy(history, options)
        if not decision.get('continue'):
            break
    else:
        raise MtdError('the policy did not stop within %d rounds' % SIMULATE_ROUND_CAP)

    downtime = overhead + to_copy / bandwidth
    precopy_time = math.fsum(item['duration'] for item in history)
    return {
        'rounds': len(history),
        'pages_copied': sum(item['pages'] for item in history) + to_copy,
        'downtime_pages': to_copy,
        'downtime': round(downtime, 6),
        'precopy_time': round(precopy_time, 6),
        'total_time': round(precopy_time + downtime, 6),
        'code': decision.get('code'),
        'reason': decision.get('reason'),
        'history': history,
    }


# ---------------------------------------------------------------- the module's side

# checkpoint's ``precopy`` option (argument_spec as data); the rule's knobs are DEFAULT_OPTIONS'
PRECOPY_SPEC = dict(
    mode=dict(type='str', default='off', choices=['off', 'auto']),
    rule=dict(type='str', default='predictive', choices=['predictive', 'phaul', 'fixed']),
    initial_rate=dict(type='float', default=DEFAULT_OPTIONS['initial_rate']),
    min_pages=dict(type='int', default=DEFAULT_OPTIONS['min_pages']),
    min_shrink=dict(type='float', default=DEFAULT_OPTIONS['min_shrink']),
    max_time=dict(type='float', default=DEFAULT_OPTIONS['max_time']),
    max_rounds=dict(type='int', default=DEFAULT_OPTIONS['max_rounds']),
)
PRECOPY_DIR = 'precopy'   # in the bundle: precopy/1 .. precopy/N, one directory of images per pre-dump round
PARENT_LINK = 'parent'    # CRIU's link from an image directory to the round before it


def rule_of(params):
    """The stop policy and its options from checkpoint's ``precopy`` option (validated). MtdError."""
    params = dict(params or {})
    rule = params.get('rule') or 'predictive'
    if rule not in POLICIES:
        raise MtdError('precopy.rule %r is not known; use one of %s' % (rule, ', '.join(sorted(POLICIES))))
    options = dict((key, params[key]) for key in DEFAULT_OPTIONS if params.get(key) is not None)
    return POLICIES[rule], check_options(options)


def precopy_plan(mode, dirty_tracking, lazy, paused):
    """Whether to run pre-dump rounds: ``(used, reason)``. Pure.

    ``mode`` is the option's (off|auto), ``dirty_tracking`` what ``criu check --feature mem_dirty_track``
    said, ``lazy`` a post-copy dump was asked, ``paused`` the container was frozen already (pre-dump rounds
    copy while it runs: a frozen one has nothing to gain).
    """
    single = 'post-copy (lazy pages)' if lazy else 'stop-and-copy'
    if not dirty_tracking:
        return False, ('the kernel does not track dirty pages (criu check --feature mem_dirty_track: Dirty tracking '
                       'is OFF), so iterative pre-copy is impossible; %s was used' % single)
    if mode != 'auto':
        return False, 'the kernel tracks dirty pages, but precopy.mode is off: a single %s dump' % single
    if lazy:
        return False, 'the kernel tracks dirty pages, but post-copy (lazy pages) was asked: a single lazy dump'
    if paused:
        return False, 'the container was frozen already, so no round could copy while it runs: a single dump'
    return True, 'pre-dump rounds while the container runs, then the final dump with the last round as parent'


def round_dir(index):
    """The bundle-relative directory of pre-dump round ``index`` (1-based)."""
    return '%s/%d' % (PRECOPY_DIR, index)


def chain_links(count, images='criu'):
    """The parent links a bundle with ``count`` pre-dump rounds needs, ``[(link, target), ...]``,
    bundle-relative link paths and targets relative to the link's directory. Pure."""
    links = [('%s/%s' % (round_dir(k), PARENT_LINK), '../%d' % (k - 1)) for k in range(2, count + 1)]
    if count:
        links.append(('%s/%s' % (images, PARENT_LINK), '../%s' % round_dir(count)))
    return links


def chain_count(precopy):
    """The number of pre-dump rounds a manifest's ``precopy`` entry declares, validated (0: none). The
    manifest arrives from the source: only a plain count of rounds numbered 1..N is taken from it, every link
    target is built here (``chain_links``). MtdError when the entry is malformed."""
    if not precopy:
        return 0
    if not isinstance(precopy, dict):
        raise MtdError('the manifest\'s precopy entry is not an object')
    if not precopy.get('used'):
        return 0
    rounds = precopy.get('rounds')
    if not isinstance(rounds, list) or len(rounds) < 2 or len(rounds) > SIMULATE_ROUND_CAP:
        raise MtdError('the manifest says pre-copy was used but lists no pre-dump rounds and final dump')
    final = rounds[-1]
    if not isinstance(final, dict) or final.get('kind') != 'final':
        raise MtdError('the last pre-copy entry of the manifest is not the final dump')
    rounds = rounds[:-1]
    for index, entry in enumerate(rounds, 1):
        if not isinstance(entry, dict) or entry.get('kind') != 'pre-dump' or entry.get('dir') != round_dir(index):
            raise MtdError('pre-copy round %d of the manifest is not in %s' % (index, round_dir(index)))
    return len(rounds)


def round_entries(rounds, decisions, final):
    """The per-round list of the result and of the record. Pure.

    ``rounds``: the pre-dump rounds, ``[{'duration', 'pages', 'frozen_ms', ...}]``; ``decisions``: the
    rule's answer after each of them (same length); ``final``: the final dump's ``{'pages', 'duration',
    'frozen_ms'}``. Each entry: ``round``, ``kind`` (pre-dump|final), ``pages`` (actual),
    ``predicted_pages`` (what the rule predicted after the round before; None for round 1 and under
    rules that do not predict), ``duration``, ``frozen_ms``, ``decision`` (the code after the round).
    """
    out = []
    previous = None
    for index, (item, decision) in enumerate(zip(rounds, decisions), 1):
        entry = dict(item, round=index, kind='pre-dump', dir=round_dir(index),
                     predicted_pages=previous.get('predicted_pages') if previous else None,
                     decision=decision.get('code'))
        out.append(entry)
        previous = decision
    if final is not None:
        out.append(dict(final, round=len(out) + 1, kind='final',
                        predicted_pages=previous.get('predicted_pages') if previous else None, decision=None))
    return out


def replay(rounds, policy='predictive', options=None, final_pages=None):
    """Run a stop policy over rounds measured back to back (a ``fixed`` run): where it would have stopped
    and what its final dump would have copied. Pure.

    ``rounds``: ``[{'duration', 'pages'}, ...]`` of pre-dump rounds done without stopping; the pages of
    round ``k + 1`` are what a final dump right after round ``k`` would have copied (the pages dirtied
    during round ``k``), so a policy that stops after round ``k < N`` gets ``downtime_pages =
    pages_{k+1}``. One that does not stop before the last round gets ``final_pages`` (the measured final
    dump after round ``N``), and ``code`` ``trace_end`` when it wanted more.
    Returns ``{'rounds', 'pages_copied', 'downtime_pages', 'code', 'reason'}``.
    """
    history = normalise_history(rounds)
    if not history:
        raise MtdError('replay needs at least one measured round')
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise MtdError('policy %r is not known' % policy)
        policy = POLICIES[policy]
    for count in range(1, len(history) + 1):
        decision = policy(history[:count], options)
        if not decision.get('continue') or count == len(history):
            break
    if count < len(history):
        downtime = history[count]['pages']
    else:
        downtime = final_pages
    code = decision.get('code') if not decision.get('continue') else 'trace_end'
    reason = decision.get('reason') if not decision.get('continue') else 'the measured rounds ended first'
    copied = sum(item['pages'] for item in history[:count]) + (downtime or 0)
    return {'rounds': count, 'pages_copied': copied, 'downtime_pages': downtime, 'code': code, 'reason': reason}
