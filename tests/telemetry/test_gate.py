"""The rollout drift gate: a shift both cohorts share passes; the new release's own holds."""

from __future__ import annotations

import numpy as np
import pytest

from fleet.domain.drift import (
    Decision,
    NoiseSetup,
    StreamKey,
    StreamTest,
    Verdict,
    assess_stream,
    calibrate,
    decide,
    gate,
)
from schemas.privacy import discrete_laplace_sums

BINS = 14
REFERENCE_P = np.r_[0.01, np.full(12, 0.98 / 12), 0.01]
SEASON_P = np.r_[np.zeros(3), REFERENCE_P[:-4], REFERENCE_P[-4:].sum()]
SETUP = NoiseSetup(reporters=300, cap=1, local_scale=2 / 4.0, central_scale=2 / 1.0)
HISTOGRAMS = ("rms_x", "peak")
NEW, CONTROL = "new", "control"


def _window(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    counts = rng.multinomial(SETUP.total, p)
    counts += discrete_laplace_sums(rng, np.full(BINS, SETUP.reporters), SETUP.local_scale)
    return counts + discrete_laplace_sums(rng, np.ones(BINS, np.int64), SETUP.central_scale)


def _decision(seed: int, drifting: set[tuple[str, str]], reference_size: int = 4000) -> Decision:
    """Three windows of both cohorts; ``drifting`` (histogram, cohort) pairs have shifted."""
    rng = np.random.default_rng(seed)
    reference = rng.multinomial(reference_size, REFERENCE_P).tolist()
    null = calibrate(reference, [SETUP] * 3, rng, replicates=4000)
    tests = []
    for histogram in HISTOGRAMS:
        for cohort in (NEW, CONTROL):
            p = SEASON_P if (histogram, cohort) in drifting else REFERENCE_P
            windows = [_window(rng, p) for _ in range(3)]
            key = StreamKey(histogram, cohort)
            tests.append(assess_stream(key, reference, windows, [SETUP] * 3, null))
    return decide(tests)


def test_no_drift_passes() -> None:
    verdict = gate(_decision(20, set()), new=NEW, control=CONTROL)
    assert verdict.verdict is Verdict.PASS and verdict.reasons == ()


def test_a_seasonal_shift_on_both_cohorts_passes_and_is_named() -> None:
    both = {("rms_x", NEW), ("rms_x", CONTROL)}
    verdict = gate(_decision(21, both), new=NEW, control=CONTROL)
    assert verdict.verdict is Verdict.PASS
    assert [(r.code, r.histogram) for r in verdict.reasons] == [("shared_shift", "rms_x")]


def test_drift_on_the_new_release_alone_holds() -> None:
    verdict = gate(_decision(22, {("peak", NEW)}), new=NEW, control=CONTROL)
    assert verdict.verdict is Verdict.HOLD
    assert [(r.code, r.histogram) for r in verdict.reasons] == [("drift", "peak")]


def test_too_little_data_on_the_new_cohort_holds() -> None:
    verdict = gate(_decision(23, set(), reference_size=30), new=NEW, control=CONTROL)
    assert verdict.verdict is Verdict.HOLD
    assert {r.code for r in verdict.reasons} == {"insufficient_data"}


def _test(histogram: str, cohort: str, p_value: float, judged: bool = True) -> StreamTest:
    return StreamTest(StreamKey(histogram, cohort), 3, 0.0, p_value, 1e4, judged, 0.0, 0.0)


@pytest.mark.parametrize(
    ("control_p", "control_judged", "verdict", "code"),
    [
        (0.5, True, Verdict.HOLD, "drift"),
        (1e-5, True, Verdict.PASS, "shared_shift"),
        (1e-5, False, Verdict.HOLD, "no_control"),
    ],
)
def test_the_gate_reads_the_control_cohort(
    control_p: float, control_judged: bool, verdict: Verdict, code: str
) -> None:
    decision = decide(
        [_test("score", NEW, 1e-5), _test("score", CONTROL, control_p, control_judged)]
    )
    assert decision.alert
    result = gate(decision, new=NEW, control=CONTROL)
    assert result.verdict is verdict and [r.code for r in result.reasons] == [code]


def test_a_gate_with_no_streams_for_the_new_cohort_holds() -> None:
    assert gate(decide([]), new=NEW, control=CONTROL).verdict is Verdict.HOLD
