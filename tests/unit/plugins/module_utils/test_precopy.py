# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest

from ansible_collections.mtd.containers.plugins.module_utils._common import MtdError
from ansible_collections.mtd.containers.plugins.module_utils._precopy import (
    DEFAULT_OPTIONS,
    DirtyRatePredictor,
    chain_count,
    chain_links,
    check_options,
    decide,
    error_weights,
    fixed_decide,
    phaul_decide,
    precopy_plan,
    rate_samples,
    replay,
    round_entries,
    rule_of,
    simulate,
)


def _rounds(*pairs):
    return [{'duration': duration, 'pages': pages} for duration, pages in pairs]


# Worked example used below (initial_rate 1000 pages/s):
#   round 1: 2.0 s, 65536 pages (the full copy)
#   round 2: 0.5 s, 3000 pages -> round 1 dirtied 3000 pages in 2.0 s: rate_1 = 1500
#   round 3: 0.2 s,  600 pages -> round 2 dirtied  600 pages in 0.5 s: rate_2 = 1200
#   round 4: 0.1 s,  360 pages -> round 3 dirtied  360 pages in 0.2 s: rate_3 = 1800
WORKED = _rounds((2.0, 65536), (0.5, 3000), (0.2, 600), (0.1, 360))


# ---------------------------------------------------------------- weights

@pytest.mark.parametrize('count, weights, base, expected', [
    (0, 'exponential', 2, []),
    (1, 'exponential', 2, [1.0]),
    (4, 'exponential', 2, [1.0, 2.0, 4.0, 8.0]),
    (3, 'exponential', 1.5, [1.0, 1.5, 2.25]),
    (3, 'exponential', 1, [1.0, 1.0, 1.0]),
    (4, 'linear', 2, [1.0, 2.0, 3.0, 4.0]),
    (3, 'uniform', 2, [1.0, 1.0, 1.0]),
    # A list applies to the most recent errors; older ones get 0 (a window).
    (2, [1, 2, 3], 2, [2.0, 3.0]),
    (3, [1, 2, 3], 2, [1.0, 2.0, 3.0]),
    (5, [1, 2, 3], 2, [0.0, 0.0, 1.0, 2.0, 3.0]),
])
def test_error_weights(count, weights, base, expected):
    assert error_weights(count, weights, base) == expected


@pytest.mark.parametrize('weights, base, message', [
    ([], 2, r'weights is an empty list'),
    ((), 2, r'weights is an empty list'),
    ([1, 0], 2, r'the last weight \(the most recent round\) is 0; it must be > 0'),
    ([1, -1], 2, r'weights\[1\] is -1; it must be >= 0'),
    ([1, 'x'], 2, r"weights\[1\] is 'x'; give a number"),
    ('quadratic', 2, r"weights 'quadratic' is not supported; use one of exponential, linear, uniform"),
    ({'a': 1}, 2, r'weights must be one of .* got dict'),
    (3, 2, r'weights must be one of .* got int'),
    ('exponential', 0.5, r'weight_base is 0.5; it must be >= 1'),
    ('exponential', -2, r'weight_base is -2; it must be >= 0'),
])
def test_error_weights_reject(weights, base, message):
    with pytest.raises(MtdError, match=message):
        error_weights(3, weights, base)


# ---------------------------------------------------------------- predictor, worked numbers

def test_predictor_worked_numbers_exponential():
    predictor = DirtyRatePredictor(1000)
    assert predictor.predict_rate() == 1000          # nothing measured: the initial estimate
    first = predictor.observe(2.0, 3000)
    assert first == {'duration': 2.0, 'dirty_pages': 3000, 'rate': 1500.0, 'predicted_rate': 1000.0, 'error': 500.0}
    # One error (500), weight 1: 1000 + 500 = 1500.
    assert predictor.predict_rate() == pytest.approx(1500)
    second = predictor.observe(0.5, 600)
    assert second['rate'] == 1200 and second['predicted_rate'] == pytest.approx(1500) and second['error'] == 200
    # Errors 500, 200 with weights 1, 2: 1000 + (500 + 2 * 200) / 3 = 1300; over a 0.2 s round: 260 pages.
    assert predictor.predict_rate() == pytest.approx(1300)
    assert predictor.predict_pages(0.2) == pytest.approx(260)
    predictor.observe(0.2, 360)
    # Errors 500, 200, 800 with weights 1, 2, 4: 1000 + (500 + 400 + 3200) / 7 = 1585.714...
    assert predictor.errors() == [500, 200, 800]
    assert predictor.predict_rate() == pytest.approx(1000 + 4100 / 7.0)
    assert predictor.predict_pages(0.1) == pytest.approx(158.5714, abs=1e-4)


@pytest.mark.parametrize('weights, rate', [
    # Errors 500, 200, 800.
    ('linear', 1550.0),        # 1000 + (1*500 + 2*200 + 3*800) / 6
    ('uniform', 1500.0),       # 1000 + (500 + 200 + 800) / 3: the plain mean of the rates
    ([1, 1], 1500.0),          # window of the last two errors: 1000 + (200 + 800) / 2
    ([0, 0, 1], 1800.0),       # only the last error: the last measured rate
    ('exponential', 1000 + 4100 / 7.0),
])
def test_predictor_weight_schemes(weights, rate):
    predictor = DirtyRatePredictor(1000, weights=weights)
    for duration, pages in ((2.0, 3000), (0.5, 600), (0.2, 360)):
        predictor.observe(duration, pages)
    assert predictor.predict_rate() == pytest.approx(rate)


def test_predictor_estimate_last_follows_the_trend():
    predictor = DirtyRatePredictor(1000, estimate='last')
    for duration, pages in ((2.0, 3000), (0.5, 600), (0.2, 360)):
        predictor.observe(duration, pages)
    # Rates 1500, 1200, 1800; errors of "the last rate" 1500-1000, 1200-1500, 1800-1200 = 500, -300, 600;
    # weights 1, 2, 4: 1800 + (500 - 600 + 2400) / 7 = 2128.571...
    assert predictor.errors() == [500, -300, 600]
    assert predictor.predict_rate() == pytest.approx(1800 + 2300 / 7.0)


def test_errors_against_a_fixed_base_settle_on_a_constant_rate():
    predictor = DirtyRatePredictor(100, weights='linear')
    for _dummy in range(6):
        predictor.observe(1.0, 400)
        assert predictor.predict_rate() == pytest.approx(400)


def test_predictor_never_predicts_a_negative_rate():
    predictor = DirtyRatePredictor(0, estimate='last')
    predictor.observe(1.0, 1000)
    predictor.observe(1.0, 0)
    # last rate 0, errors 1000 and -1000, weights 1, 2: 0 - 1000/3 -> clamped to 0.
    assert predictor.predict_rate() == 0


def test_predictor_state_round_trips_through_json():
    predictor = DirtyRatePredictor(1000, weights=[1, 3], estimate='last')
    predictor.observe(2.0, 3000)
    predictor.observe(0.5, 600)
    state = json.loads(json.dumps(predictor.to_dict()))
    assert state == {'initial_rate': 1000.0, 'weights': [1.0, 3.0], 'weight_base': 2.0, 'estimate': 'last',
                     'samples': [{'duration': 2.0, 'dirty_pages': 3000}, {'duration': 0.5, 'dirty_pages': 600}]}
    again = DirtyRatePredictor.from_dict(state)
    assert again.predict_rate() == predictor.predict_rate()
    assert again.samples == predictor.samples


@pytest.mark.parametrize('call, message', [
    (lambda p: p.observe(-0.5, 10), r'duration is -0.5; it must be > 0'),
    (lambda p: p.observe(0, 10), r'duration is 0; it must be > 0'),
    (lambda p: p.observe(1, -5), r'dirty_pages is -5; it must be >= 0'),
    (lambda p: p.observe(1, 2.5), r'dirty_pages is 2.5; give a whole number'),
    (lambda p: p.observe(1, True), r'dirty_pages has type bool; give a number'),
    (lambda p: p.observe(float('nan'), 1), r'duration is nan; give a finite number'),
    (lambda p: p.predict_pages(-1), r'next_duration is -1; it must be >= 0'),
])
def test_predictor_rejects_bad_observations(call, message):
    predictor = DirtyRatePredictor(1000)
    with pytest.raises(MtdError, match=message):
        call(predictor)
    assert predictor.samples == []


@pytest.mark.parametrize('kwargs, message', [
    ({'initial_rate': -1}, r'initial_rate is -1; it must be >= 0'),
    ({'initial_rate': 1, 'weights': []}, r'weights is an empty list'),
    ({'initial_rate': 1, 'estimate': 'median'}, r"estimate 'median' is not supported; use one of initial, last"),
    ({'initial_rate': 1, 'samples': [{'duration': -2, 'dirty_pages': 1}]}, r'samples\[0\]\.duration is -2'),
    ({'initial_rate': 1, 'samples': ['x']}, r'samples\[0\] must be a dict'),
])
def test_predictor_rejects_bad_construction(kwargs, message):
    with pytest.raises(MtdError, match=message):
        DirtyRatePredictor(**kwargs)


def test_predictor_from_dict_rejects_bad_state():
    with pytest.raises(MtdError, match='predictor state must be a dict'):
        DirtyRatePredictor.from_dict([])
    with pytest.raises(MtdError, match='predictor state has no initial_rate'):
        DirtyRatePredictor.from_dict({'weights': 'linear'})


# ---------------------------------------------------------------- decide, worked numbers

def test_rate_samples_pair_each_round_with_what_the_next_copied():
    assert rate_samples(WORKED) == [(2.0, 3000), (0.5, 600), (0.2, 360)]
    assert rate_samples(WORKED[:1]) == []


def test_decide_without_history_starts_the_full_copy():
    result = decide([])
    assert result['continue'] is True
    assert result['code'] == 'first_round'
    assert result['reason'] == 'first round: full copy while the container runs'


def test_decide_after_the_full_copy_uses_the_initial_estimate():
    # Nothing measured yet: 1000 pages/s over the 2 s full copy -> 2000 pages predicted, 65536 copied.
    result = decide(WORKED[:1], {'initial_rate': 1000})
    assert (result['continue'], result['code'], result['predicted_rate'], result['predicted_pages']) == (
        True, 'converging', 1000, 2000)
    assert result['reason'] == 'converging: predicted 2000 <= produced 65536 pages'
    # A workload that dirties more than its memory during the full copy: pre-copy is pointless.
    result = decide(WORKED[:1], {'initial_rate': 40000})
    assert result['continue'] is False
    assert result['reason'] == 'diverging: predicted 80000 > produced 65536 pages'


def test_decide_worked_round_three():
    # Rates 1500, 1200; errors 500, 200; weights 1, 2 (normalised 1/3, 2/3): rate 1300;
    # predicted pages = 1300 * 0.2 s (round 3's duration) = 260 <= 600 copied in round 3.
    result = decide(WORKED[:3], {'initial_rate': 1000})
    assert result == {
        'continue': True,
        'code': 'converging',
        'reason': 'converging: predicted 260 <= produced 600 pages',
        'round': 3,
        'produced_pages': 600,
        'predicted_rate': 1300.0,
        'predicted_pages': 260.0,
        'total_time': 2.7,
        'rates': [1500.0, 1200.0],
        'errors': [500.0, 200.0],
        'weights': [0.333333, 0.666667],
    }


def test_decide_worked_round_four_linear_weights():
    # Errors 500, 200, 800, weights 1, 2, 3: rate 1550; 1550 * 0.1 s = 155 pages <= 360.
    result = decide(WORKED, {'initial_rate': 1000, 'weights': 'linear'})
    assert result['predicted_rate'] == 1550
    assert result['predicted_pages'] == 155
    assert result['weights'] == [0.166667, 0.333333, 0.5]
    assert result['continue'] is True


def test_decide_diverging_on_prediction():
    # rate_1 = 2000/1.0 = 2000, rate_2 = 1500/0.25 = 6000; errors 1000, 5000, weights 1, 2:
    # 1000 + 11000/3 = 4666.67 pages/s * 0.4 s = 1866.7 > 1500 copied in round 3.
    history = _rounds((1.0, 10000), (0.25, 2000), (0.4, 1500))
    result = decide(history, {'initial_rate': 1000})
    assert result['continue'] is False
    assert result['code'] == 'diverging'
    assert result['reason'] == 'diverging: predicted 1866.7 > produced 1500 pages'


def test_decide_diverging_on_observed_growth():
    # Predicted 6266.67 * 0.05 = 313.3 pages is small, but round 3 already copied more than round 2.
    history = _rounds((1.0, 10000), (0.25, 2000), (0.05, 2100))
    result = decide(history, {'initial_rate': 1000})
    assert result['predicted_pages'] == 313.3
    assert result['reason'] == 'diverging: round 3 copied 2100 > 2000 pages of round 2'


def test_decide_stalled_and_the_bare_rule():
    # Rates 2000, 2000: predicted 2000 * 0.95 = 1900 of 2000 copied: saves 5 % only.
    history = _rounds((1.0, 10000), (1.0, 2000), (0.95, 2000))
    result = decide(history, {'initial_rate': 2000})
    assert result['code'] == 'stalled'
    assert result['reason'] == 'stalled: predicted 1900 of produced 2000 pages saves less than 10%'
    # min_shrink 0: the bare rule (stop only when predicted > produced) goes on.
    result = decide(history, {'initial_rate': 2000, 'min_shrink': 0})
    assert (result['continue'], result['code']) == (True, 'converging')


@pytest.mark.parametrize('history, options, code, reason', [
    (_rounds((2.0, 65536), (0.5, 64)), {}, 'converged', 'converged: below floor: round 2 copied 64 <= 64 pages'),
    (_rounds((2.0, 65536), (0.5, 500)), {'min_pages': 500}, 'converged',
     'converged: below floor: round 2 copied 500 <= 500 pages'),
    (_rounds((2.0, 65536), (0.5, 3000)), {'max_time': 2.5}, 'time_limit', 'time limit: pre-copy took 2.5s >= 2.5s'),
    (_rounds((2.0, 65536), (0.5, 3000)), {'max_rounds': 2}, 'max_rounds', 'max rounds: 2 rounds done, cap 2'),
    (_rounds((2.0, 65536)), {'max_rounds': 1}, 'max_rounds', 'max rounds: 1 rounds done, cap 1'),
])
def test_decide_stop_reasons(history, options, code, reason):
    result = decide(history, options)
    assert result['continue'] is False
    assert (result['code'], result['reason']) == (code, reason)


def test_decide_floor_wins_over_the_other_reasons():
    history = _rounds((30.0, 65536), (20.0, 10))
    result = decide(history, {'max_time': 1, 'max_rounds': 2, 'initial_rate': 1000})
    assert result['code'] == 'converged'


def test_decide_without_time_limit():
    history = _rounds((500.0, 65536), (0.5, 3000))
    assert decide(history, {'max_time': None})['continue'] is True
    assert decide(history)['code'] == 'time_limit'


@pytest.mark.parametrize('history, message', [
    ('rounds', r'history must be a list of \{duration, pages\} rounds, got str'),
    ({'duration': 1}, r'history must be a list .* got dict'),
    ([5], r'history\[0\] must be a dict with duration and pages, got int'),
    ([{'duration': 1}], r'history\[0\] has no pages'),
    (_rounds((1, 10), (-0.2, 5)), r'history\[1\]\.duration is -0.2; it must be > 0'),
    (_rounds((1, 10), (0, 5)), r'history\[1\]\.duration is 0; it must be > 0'),
    (_rounds((1, -10)), r'history\[0\]\.pages is -10; it must be >= 0'),
    (_rounds((1, 1.5)), r'history\[0\]\.pages is 1.5; give a whole number'),
    (_rounds(('soon', 1)), r"history\[0\]\.duration is 'soon'; give a number"),
])
def test_decide_rejects_bad_history(history, message):
    with pytest.raises(MtdError, match=message):
        decide(history)


@pytest.mark.parametrize('options, message', [
    ({'weights': []}, r'weights is an empty list'),
    ({'max_round': 3}, r'unknown option max_round; known options: estimate, initial_rate'),
    ({'a': 1, 'b': 2}, r'unknown options a, b'),
    ({'min_shrink': 1}, r'min_shrink is 1; it is a fraction and must be < 1'),
    ({'max_rounds': 0}, r'max_rounds is 0; it must be > 0'),
    ({'max_rounds': 2.5}, r'max_rounds is 2.5; give a whole number'),
    ({'max_time': 0}, r'max_time is 0; it must be > 0'),
    ({'initial_rate': -3}, r'initial_rate is -3; it must be >= 0'),
    ({'estimate': 'avg'}, r"estimate 'avg' is not supported"),
    ([], r'options must be a dict, got list'),
])
def test_check_options_rejects(options, message):
    with pytest.raises(MtdError, match=message):
        check_options(options)


def test_check_options_defaults():
    assert check_options(None) == DEFAULT_OPTIONS
    assert check_options({'min_pages': '128', 'weights': None})['min_pages'] == 128


# ---------------------------------------------------------------- P.Haul's rules

@pytest.mark.parametrize('pages, code, reason', [
    ([65536], 'converging', 'converging: round 1 copied 65536 pages'),
    ([65536, 64], 'converged', 'converged: below floor: round 2 copied 64 <= 64 pages'),
    ([65536, 1000, 1100], 'converging', 'converging: round 3 copied 1100 pages'),      # +10 %: still fine
    ([65536, 1000, 1101], 'diverging', 'diverging: round 3 copied 1101 pages, 10.1% more than round 2'),
    ([65536] + [5000] * 7, 'max_rounds', 'max rounds: 8 rounds done, cap 8'),
    ([65536] + [5000] * 6, 'converging', 'converging: round 7 copied 5000 pages'),
])
def test_phaul_decide(pages, code, reason):
    result = phaul_decide([{'duration': 1.0, 'pages': count} for count in pages])
    assert (result['code'], result['reason']) == (code, reason)
    assert result['continue'] is (code == 'converging')


def test_phaul_decide_first_round():
    assert phaul_decide([])['code'] == 'first_round'


# ---------------------------------------------------------------- synthetic traces

TOTAL = 65536               # 256 MiB of 4 KiB pages
TRACES = {
    # Geometric decay of the dirty set: each round dirties a quarter of what the one before did.
    'converging': {'total_pages': TOTAL, 'bandwidth': 50000, 'overhead': 0.01,
                   'dirty_pages': [16384 * 0.25 ** k for k in range(8)]},
    # A dirty rate growing 1.9x per round toward the bandwidth (50000 pages/s).
    'diverging': {'total_pages': TOTAL, 'bandwidth': 50000, 'overhead': 0.02,
                  'rates': [3000 * 1.9 ** k for k in range(12)]},
    # A spike above the bandwidth in round 3, then calm.
    'bursty': {'total_pages': TOTAL, 'bandwidth': 50000, 'overhead': 0.02,
               'rates': [4000, 2000, 60000, 1500, 1000, 500]},
    # The same 5000 pages dirtied every round: pre-copy cannot get below them.
    'constant': {'total_pages': TOTAL, 'bandwidth': 50000, 'overhead': 0.02, 'dirty_pages': [5000]},
}


def test_simulate_round_arithmetic():
    # Round 1: 0.01 + 65536/50000 = 1.32072 s, then 16384 pages; round 2: 0.01 + 16384/50000 = 0.33768 s ...
    result = simulate(TRACES['converging'], 'predictive', {'initial_rate': 2000})
    assert [item['pages'] for item in result['history']] == [65536, 16384, 4096, 1024, 256, 64]
    assert result['history'][0]['duration'] == pytest.approx(1.32072)
    assert result['history'][1]['duration'] == pytest.approx(0.33768)
    # The final stop-and-copy takes what round 6 dirtied: 16384 * 0.25**5 = 16 pages.
    assert (result['rounds'], result['downtime_pages'], result['code']) == (6, 16, 'converged')
    assert result['pages_copied'] == 65536 + 16384 + 4096 + 1024 + 256 + 64 + 16
    assert result['downtime'] == pytest.approx(0.01 + 16 / 50000.0)
    assert result['total_time'] == pytest.approx(result['precopy_time'] + result['downtime'])


@pytest.mark.parametrize('name, policy, options, rounds, downtime_pages, code', [
    ('converging', 'predictive', {'initial_rate': 2000}, 6, 16, 'converged'),
    ('converging', 'phaul', None, 6, 16, 'converged'),
    # Ours sees round 5 grow over round 4 (551 > 340) like P.Haul; the trend estimate predicts it one round early.
    ('diverging', 'predictive', {'initial_rate': 2000}, 5, 1213, 'diverging'),
    ('diverging', 'predictive', {'initial_rate': 2000, 'estimate': 'last'}, 4, 551, 'diverging'),
    ('diverging', 'phaul', None, 5, 1213, 'diverging'),
    # The spike is copied in round 4; the final copy holds only the calm dirty set.
    ('bursty', 'predictive', {'initial_rate': 2000}, 4, 75, 'diverging'),
    ('bursty', 'phaul', None, 4, 75, 'diverging'),
    # Ours gives up once a round stops paying off; P.Haul runs to its 8-round cap for the same downtime.
    ('constant', 'predictive', {'initial_rate': 2000}, 5, 5000, 'stalled'),
    ('constant', 'phaul', None, 8, 5000, 'max_rounds'),
])
def test_simulate_traces(name, policy, options, rounds, downtime_pages, code):
    result = simulate(TRACES[name], policy, options)
    assert (result['rounds'], result['downtime_pages'], result['code']) == (rounds, downtime_pages, code)


def test_constant_trace_ours_is_shorter_for_the_same_downtime():
    ours = simulate(TRACES['constant'], 'predictive', {'initial_rate': 2000})
    phaul = simulate(TRACES['constant'], 'phaul')
    assert ours['downtime_pages'] == phaul['downtime_pages']
    assert ours['total_time'] < phaul['total_time']
    assert phaul['pages_copied'] - ours['pages_copied'] == 3 * 5000


def test_simulate_caps_the_dirty_set_at_the_working_set():
    trace = dict(TRACES['constant'], dirty_pages=[90000], working_set=20000)
    result = simulate(trace, 'phaul')
    assert [item['pages'] for item in result['history']] == [65536] + [20000] * 7
    assert (result['downtime_pages'], result['code']) == (20000, 'max_rounds')


def test_simulate_accepts_a_callable_policy():
    seen = []

    def two_rounds(history, options):
        seen.append(len(history))
        return {'continue': len(history) < 2, 'code': 'custom', 'reason': 'two rounds'}

    result = simulate(TRACES['constant'], two_rounds)
    assert seen == [1, 2]
    assert (result['rounds'], result['reason']) == (2, 'two rounds')


@pytest.mark.parametrize('trace, policy, message', [
    ([], 'phaul', r'trace must be a dict, got list'),
    ({'total_pages': 10, 'bandwidth': 1}, 'phaul', r'trace needs exactly one of rates .* or dirty_pages'),
    ({'total_pages': 10, 'bandwidth': 1, 'rates': [1], 'dirty_pages': [1]}, 'phaul', r'exactly one of'),
    ({'total_pages': 10, 'rates': [1]}, 'phaul', r'trace has no bandwidth'),
    ({'total_pages': 10, 'bandwidth': 0, 'rates': [1]}, 'phaul', r'trace\.bandwidth is 0; it must be > 0'),
    ({'total_pages': 10, 'bandwidth': 1, 'rates': []}, 'phaul', r'trace\.rates is empty'),
    ({'total_pages': 10, 'bandwidth': 1, 'rates': [1, -1]}, 'phaul', r'trace\.rates\[1\] is -1; it must be >= 0'),
    ({'total_pages': 10, 'bandwidth': 1, 'rates': [1]}, 'fastest', r"policy 'fastest' is not known"),
    ({'total_pages': 10, 'bandwidth': 1, 'rates': [1]}, 42, r'policy must be a policy name or a callable'),
])
def test_simulate_rejects_bad_input(trace, policy, message):
    with pytest.raises(MtdError, match=message):
        simulate(trace, policy)


def test_simulate_stops_a_policy_that_never_stops():
    with pytest.raises(MtdError, match=r'the policy did not stop within 1000 rounds'):
        simulate(TRACES['constant'], lambda history, options: {'continue': True})


# ---------------------------------------------------------------- the module's side

def test_precopy_plan():
    used, reason = precopy_plan('auto', True, False, False)
    assert used and 'pre-dump rounds' in reason
    assert precopy_plan('auto', False, False, False) == (False, (
        'the kernel does not track dirty pages (criu check --feature mem_dirty_track: Dirty tracking is OFF), so '
        'iterative pre-copy is impossible; stop-and-copy was used'))
    assert 'post-copy (lazy pages) was used' in precopy_plan('auto', False, True, False)[1]
    assert precopy_plan('off', True, False, False) == (
        False, 'the kernel tracks dirty pages, but precopy.mode is off: a single stop-and-copy dump')
    assert precopy_plan('auto', True, True, False)[0] is False
    assert 'frozen already' in precopy_plan('auto', True, False, True)[1]


def test_rule_of_takes_the_knobs_and_refuses_bad_ones():
    policy, options = rule_of({'mode': 'auto', 'rule': 'phaul', 'max_rounds': 5, 'min_pages': None})
    assert policy is phaul_decide and options['max_rounds'] == 5 and options['min_pages'] == 64
    assert rule_of(None)[0] is decide
    with pytest.raises(MtdError, match='precopy.rule'):
        rule_of({'rule': 'greedy'})
    with pytest.raises(MtdError, match='min_shrink is 1'):
        rule_of({'min_shrink': 1.0})


def test_fixed_runs_exactly_max_rounds():
    rounds = _rounds((1.0, 100), (1.0, 5000))     # growth would stop the other rules
    assert fixed_decide(rounds, {'max_rounds': 3})['continue']
    done = fixed_decide(rounds + _rounds((1.0, 1)), {'max_rounds': 3})
    assert not done['continue'] and done['code'] == 'max_rounds'


def test_chain_links_for_three_rounds():
    assert chain_links(3) == [('precopy/2/parent', '../1'), ('precopy/3/parent', '../2'),
                              ('criu/parent', '../precopy/3')]
    assert chain_links(1) == [('criu/parent', '../precopy/1')]
    assert chain_links(0) == []


def _entry(index, kind='pre-dump'):
    return {'round': index, 'kind': kind, 'dir': 'precopy/%d' % index if kind == 'pre-dump' else 'criu'}


def test_chain_count_takes_only_a_plain_numbered_chain():
    assert chain_count(None) == 0
    assert chain_count({'used': False, 'rounds': []}) == 0
    assert chain_count({'used': True, 'rounds': [_entry(1), _entry(2), _entry(3, 'final')]}) == 2
    for bad in ([_entry(1)],                                        # no final dump
                [_entry(2), _entry(3, 'final')],                    # not numbered from 1
                [dict(_entry(1), dir='../../etc'), _entry(2, 'final')],
                [_entry(1), _entry(2, 'final'), _entry(3, 'final')],
                'precopy/1'):
        with pytest.raises(MtdError):
            chain_count({'used': True, 'rounds': bad})
    with pytest.raises(MtdError, match='not an object'):
        chain_count(['x'])


def test_round_entries_pair_each_round_with_the_prediction_made_before_it():
    # the rounds measured on the lab VM (64 MiB held, 512 pages/s rewritten), with the decisions of decide()
    rounds = [{'pages': 16400, 'duration': 1.1806}, {'pages': 1030, 'duration': 0.9236},
              {'pages': 518, 'duration': 0.8055}]
    history = [{'duration': item['duration'], 'pages': item['pages']} for item in rounds]
    decisions = [decide(history[:k]) for k in (1, 2, 3)]
    # after round 1 nothing is measured: initial_rate 0 predicts 0 pages; after round 2 the rate of round 1 is
    # 1030 / 1.1806 = 872.4 pages/s, times 0.9236 s = 805.8; after round 3 the rates are 872.4 and
    # 518 / 0.9236 = 560.9, weighted 1:2 -> 664.7 pages/s, times 0.8055 s = 535.4 > 518: diverging
    assert [d['predicted_pages'] for d in decisions] == [0.0, 805.8, 535.4]
    assert [d['code'] for d in decisions] == ['converging', 'converging', 'diverging']
    out = round_entries(rounds, decisions, {'pages': 1027, 'duration': 2.3853})
    assert [(e['round'], e['kind'], e['pages'], e['predicted_pages'], e['decision']) for e in out] == [
        (1, 'pre-dump', 16400, None, 'converging'), (2, 'pre-dump', 1030, 0.0, 'converging'),
        (3, 'pre-dump', 518, 805.8, 'diverging'), (4, 'final', 1027, 535.4, None)]
    assert out[2]['dir'] == 'precopy/3'


def test_replay_stops_where_the_rule_does_and_charges_the_next_rounds_pages():
    trace = _rounds((1.2, 16400), (0.9, 1030), (0.8, 518), (0.8, 505), (0.8, 512))
    ours = replay(trace, 'predictive', None, final_pages=900)
    # decide stops after round 3 (see above): the final dump copies round 4's 505 pages
    assert (ours['rounds'], ours['downtime_pages'], ours['code']) == (3, 505, 'diverging')
    assert ours['pages_copied'] == 16400 + 1030 + 518 + 505
    phaul = replay(trace, 'phaul')
    # P.Haul: round 4 (505) is not > 10 % over 518, round 5 (512) is 1.4 % over 505: on to the end of the trace
    assert (phaul['rounds'], phaul['downtime_pages'], phaul['code']) == (5, None, 'trace_end')
    assert replay(trace, 'phaul', final_pages=900)['downtime_pages'] == 900
    with pytest.raises(MtdError):
        replay([], 'phaul')
