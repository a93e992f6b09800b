"""The noise-aware detector: its statistic, calibration, false alarms, power and BH."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import false_discovery_control

from fleet.domain.drift import (
    AlertEvent,
    AlertState,
    Decision,
    NoiseSetup,
    StreamKey,
    assess_stream,
    benjamini_hochberg,
    calibrate,
    decide,
    enough_data,
    n_eff,
    window_statistic,
)
from fleet.domain.drift_size import PSI_ALERT
from schemas.privacy import discrete_laplace_sums

BINS = 14
REFERENCE_P = np.r_[0.01, np.full(12, 0.98 / 12), 0.01]
SHIFTED_P = np.r_[np.zeros(4), REFERENCE_P[:-5], REFERENCE_P[-5:].sum()]  # 4 bins to the right
DEVICES = 500
SETUP = NoiseSetup(reporters=DEVICES, cap=1, local_scale=2 / 4.0, central_scale=2 / 1.0)


def _reference(rng: np.random.Generator, size: int = 4000) -> list[int]:
    return rng.multinomial(size, REFERENCE_P).tolist()


def _window(rng: np.random.Generator, drifted: int, setup: NoiseSetup = SETUP) -> np.ndarray:
    """One released window: ``drifted`` devices draw from the shifted distribution."""
    counts = rng.multinomial(setup.total - drifted, REFERENCE_P) + rng.multinomial(
        drifted, SHIFTED_P
    )
    counts += discrete_laplace_sums(rng, np.full(BINS, setup.reporters), setup.local_scale)
    return counts + discrete_laplace_sums(rng, np.ones(BINS, np.int64), setup.central_scale)


def test_the_statistic_is_pearsons_with_the_noise_in_the_variance() -> None:
    reference = [1000, 1000]
    exact = NoiseSetup(reporters=100, cap=1, local_scale=0.0, central_scale=0.0)
    # E = 50 each, V = E (1 + 100/2000) = 52.5
    assert window_statistic([60, 40], reference, exact) == pytest.approx(2 * 100 / 52.5, rel=1e-2)
    noised = NoiseSetup(reporters=100, cap=1, local_scale=0.5, central_scale=2.0)
    assert window_statistic([60, 40], reference, noised) < window_statistic(
        [60, 40], reference, exact
    )


def test_n_eff_and_cochrans_rule() -> None:
    assert n_eff(1000, 1000) == 500
    assert enough_data([10, 80, 10], 100)
    assert not enough_data([1, 98, 1], 50)


def test_monte_carlo_p_values_are_uniform_with_no_drift() -> None:
    rng = np.random.default_rng(10)
    reference = _reference(rng)
    null = calibrate(reference, [SETUP], rng, replicates=5000)
    p = np.array(
        [null.p_value(window_statistic(_window(rng, 0), reference, SETUP)) for _ in range(600)]
    )
    assert 0.02 <= np.mean(p <= 0.05) <= 0.09
    assert 0.42 <= np.mean(p <= 0.5) <= 0.58


def _stream_tests(rng, reference, nulls, history, cohort="canary"):
    recent = history[-3:]
    return [
        assess_stream(
            StreamKey("rms_x", cohort), reference, recent, [SETUP] * len(recent), nulls[len(recent)]
        )
    ]


def test_false_alarms_and_power_of_the_sliding_rule() -> None:
    """A fast version of bench.drift_power: 400 clean windows, 40 drift trials."""
    rng = np.random.default_rng(11)
    reference = _reference(rng)
    nulls = {w: calibrate(reference, [SETUP] * w, rng, replicates=5000) for w in (1, 2, 3)}
    history: list[np.ndarray] = []
    alarms = 0
    for _ in range(400):
        history = [*history[-2:], _window(rng, 0)]
        alarms += decide(_stream_tests(rng, reference, nulls, history)).alert
    assert alarms / 400 <= 0.005
    detected = 0
    for _ in range(40):
        history = [_window(rng, 0), _window(rng, 0)]
        for _ in range(3):
            history = [*history[-2:], _window(rng, DEVICES // 2)]
            if decide(_stream_tests(rng, reference, nulls, history)).alert:
                detected += 1
                break
    assert detected >= 38


def test_debiased_psi_is_near_zero_without_drift_and_large_with_it() -> None:
    rng = np.random.default_rng(12)
    reference = _reference(rng)
    null = calibrate(reference, [SETUP], rng, replicates=4000)
    key = StreamKey("rms_x", "canary")
    clean = [assess_stream(key, reference, [_window(rng, 0)], [SETUP], null).psi for _ in range(50)]
    drift = assess_stream(key, reference, [_window(rng, DEVICES)], [SETUP], null)
    assert np.median(clean) < 0.05 < null.psi_floor
    assert drift.psi > PSI_ALERT and drift.js_distance > 0.2


def test_benjamini_hochberg_hand_example() -> None:
    # sorted: 0.005 <= 0.01, 0.01 <= 0.02, 0.03 <= 0.03, 0.04 <= 0.04, 0.5 > 0.05
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005, 0.5], 0.05) == (
        True,
        True,
        True,
        True,
        False,
    )
    # step-up: 0.02 > 1 * 0.05 / 3, yet 0.04 <= 3 * 0.05 / 3 rejects all three
    assert benjamini_hochberg([0.04, 0.02, 0.03], 0.05) == (True, True, True)
    assert benjamini_hochberg([0.02, 0.5], 0.03) == (False, False)
    assert benjamini_hochberg([], 0.05) == ()


def _step_up(p: list[float], q: float) -> tuple[bool, ...]:
    """BH by definition, in exact rationals: reject the k smallest, k = max{i: p_(i) <= iq/m}."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    passing = [rank for rank, i in enumerate(order, 1) if Fraction(p[i]) <= Fraction(q) * rank / m]
    k = max(passing, default=0)
    rejected = set(order[:k])
    return tuple(i in rejected for i in range(m))


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30), st.floats(0.001, 0.5))
def test_benjamini_hochberg_is_the_step_up_rule(p: list[float], q: float) -> None:
    ours = benjamini_hochberg(p, q)
    exact = _step_up(p, q)
    adjusted = false_discovery_control(p, method="bh")
    # the adjustment is floating-point; only a value on the boundary may differ
    mismatched = [i for i, (a, b) in enumerate(zip(ours, exact, strict=True)) if a != b]
    assert all(abs(adjusted[i] - q) < 1e-12 for i in mismatched)


def test_an_unjudged_stream_cannot_open_an_alert() -> None:
    rng = np.random.default_rng(13)
    reference = _reference(rng, size=40)  # N_eff < 100: Cochran's rule fails
    null = calibrate(reference, [SETUP], rng, replicates=2000)
    result = assess_stream(
        StreamKey("rms_x", "canary"), reference, [_window(rng, DEVICES)], [SETUP], null
    )
    assert not result.judged
    assert not decide([result]).alert


def test_an_alert_opens_once_and_closes_after_w_quiet_windows() -> None:
    loud, quiet = Decision(True, frozenset(), ()), Decision(False, frozenset(), ())
    state, events = AlertState(), []
    for decision in (quiet, loud, loud, quiet, loud, quiet, quiet, quiet, quiet):
        state, event = state.step(decision)
        events.append(event)
    assert events == [
        None,
        AlertEvent.OPENED,
        None,
        None,
        None,
        None,
        None,
        AlertEvent.CLOSED,
        None,
    ]
    assert state == AlertState()


def test_the_threshold_is_the_nulls_high_quantile() -> None:
    rng = np.random.default_rng(14)
    null = calibrate(_reference(rng), [SETUP], rng, replicates=10_000)
    threshold = null.threshold(0.01)
    assert null.p_value(threshold) == pytest.approx(0.01, abs=0.002)
    assert null.p_value(threshold * 10) == 1 / 10_001


def test_a_null_calibrated_for_other_windows_is_refused() -> None:
    rng = np.random.default_rng(15)
    reference = _reference(rng)
    null = calibrate(reference, [SETUP], rng, replicates=100)
    with pytest.raises(ValueError, match="calibrated for"):
        assess_stream(StreamKey("rms_x", "c"), reference, [_window(rng, 0)] * 2, [SETUP] * 2, null)
