"""Noise-aware drift detection on released cohort histograms (docs/architecture.md §6).

Pure: no IO, randomness injected. Every formula is in ``docs/telemetry.md``.

* :func:`window_statistic` — ``sum_b (O_b - E_b)^2 / V_b`` of one released histogram
  against the reference, ``V_b`` holding the sampling variance of both sides and the
  mechanism's known noise variance (:class:`NoiseSetup`).
* :func:`calibrate` — the statistic's null distribution, summed over the windows of the
  sliding rule, by Monte-Carlo of the exact mechanism: multinomial capped counts, the sum
  of ``n`` discrete Laplace draws (a difference of negative binomials), central noise,
  and a resampled reference.
* :func:`assess_stream` — one (histogram, cohort) stream: the last ``W`` windows' summed
  statistic, its Monte-Carlo p-value, whether ``N_eff`` is enough to judge, and the
  drift's size for people (:mod:`fleet.domain.drift_size`).
* :func:`decide` — across streams: an alert opens when Benjamini-Hochberg at the alert
  level rejects anything (Simes' global test: the per-window false-alarm rate); the
  streams it names are Benjamini-Hochberg's rejections at ``q`` (false discovery rate).
* :class:`AlertState` — open and close events for the audit log.
* :func:`gate` — a rollout's drift gate: hold when the new release's cohort drifts while
  the control cohort, on the old release in the same windows, does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy.stats import false_discovery_control

from fleet.domain.drift_size import (
    debiased,
    js_divergence,
    psi,
    released_proportions,
    smoothed,
)
from schemas.privacy import discrete_laplace_sums, discrete_laplace_variance

__all__ = [
    "DEFAULT_ALERT_ALPHA",
    "DEFAULT_FDR",
    "DEFAULT_REPLICATES",
    "DEFAULT_WINDOWS",
    "AlertEvent",
    "AlertState",
    "Decision",
    "GateReason",
    "GateVerdict",
    "NoiseSetup",
    "NullDistribution",
    "StreamKey",
    "StreamTest",
    "Verdict",
    "assess_stream",
    "benjamini_hochberg",
    "calibrate",
    "decide",
    "enough_data",
    "gate",
    "n_eff",
    "window_statistic",
]

DEFAULT_WINDOWS = 3  # W: the sliding rule sums the last W windows
DEFAULT_FDR = 0.05  # q: Benjamini-Hochberg across histograms and cohorts
DEFAULT_ALERT_ALPHA = 0.001  # per-window false-alarm budget of the whole family
DEFAULT_REPLICATES = 20_000

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class NoiseSetup:
    """What one window's release adds to its counts: capping and both noises."""

    reporters: int
    cap: int
    local_scale: float
    central_scale: float

    @property
    def total(self) -> int:
        return self.reporters * self.cap

    @property
    def noise_variance(self) -> float:
        """``n * Var(local) + Var(central)`` per bin."""
        local = self.reporters * discrete_laplace_variance(self.local_scale)
        return local + discrete_laplace_variance(self.central_scale)


def n_eff(reference_total: float, current_total: float) -> float:
    """``1 / (1/N_ref + 1/N_cur)``: the two-sample comparison's effective size."""
    return 1.0 / (1.0 / reference_total + 1.0 / current_total)


def enough_data(reference: npt.ArrayLike, effective: float) -> bool:
    """Cochran's rule on ``N_eff * p_b``: every bin ≥ 1 and at least 80 % of bins ≥ 5."""
    expected = effective * smoothed(np.asarray(reference, dtype=np.float64))
    return bool(expected.min() >= 1.0 and np.mean(expected >= 5.0) >= 0.8)


def _moments(reference: Floats, setup: NoiseSetup) -> tuple[Floats, Floats]:
    """E and V per bin (the last axis); ``reference`` holds counts, maybe resampled."""
    p = smoothed(reference)
    reference_total = reference.sum(axis=-1, keepdims=True)
    expected = setup.total * p
    variance = expected * (1.0 + setup.total / reference_total) + setup.noise_variance
    return expected, variance


def window_statistic(observed: npt.ArrayLike, reference: npt.ArrayLike, setup: NoiseSetup) -> float:
    """``sum_b (O_b - E_b)^2 / V_b`` for one window's released counts."""
    expected, variance = _moments(np.asarray(reference, dtype=np.float64), setup)
    residual = np.asarray(observed, dtype=np.float64) - expected
    return float(np.sum(residual**2 / variance))


@dataclass(frozen=True)
class NullDistribution:
    """Monte-Carlo draws of the summed statistic with no drift, sorted, and the mean
    plug-in PSI and JS divergence of the pooled windows: the sizes' noise floors."""

    sample: Floats
    psi_floor: float
    js_floor: float
    setups: tuple[NoiseSetup, ...]  # the windows it was calibrated for

    def p_value(self, statistic: float) -> float:
        """``(1 + #{T* >= t}) / (R + 1)``: never 0, exact in level."""
        above = len(self.sample) - np.searchsorted(self.sample, statistic, side="left")
        return float((1 + above) / (len(self.sample) + 1))

    def threshold(self, alpha: float) -> float:
        return float(np.quantile(self.sample, 1.0 - alpha))


def calibrate(
    reference: npt.ArrayLike,
    setups: Sequence[NoiseSetup],
    rng: np.random.Generator,
    replicates: int = DEFAULT_REPLICATES,
) -> NullDistribution:
    """The null of ``sum_t window_statistic`` over windows with these setups.

    Each replicate draws a reference of the same size from the smoothed reference
    proportions (shared by its windows, as the real reference is) and, per window,
    multinomial capped counts, the sum of ``n`` local discrete Laplace draws and one
    central draw per bin.
    """
    counts = np.asarray(reference, dtype=np.int64)
    p = smoothed(counts.astype(np.float64))
    resampled = rng.multinomial(int(counts.sum()), p, size=replicates).astype(np.float64)
    statistic, pooled = np.zeros(replicates), np.zeros_like(resampled)
    for setup in setups:
        observed = rng.multinomial(setup.total, p, size=replicates)
        shape = observed.shape
        observed += discrete_laplace_sums(rng, np.full(shape, setup.reporters), setup.local_scale)
        observed += discrete_laplace_sums(rng, np.ones(shape, dtype=np.int64), setup.central_scale)
        expected, variance = _moments(resampled, setup)
        statistic += np.sum((observed - expected) ** 2 / variance, axis=1)
        pooled += observed
    current = released_proportions(pooled, sum(s.total for s in setups))
    return NullDistribution(
        np.sort(statistic),
        psi_floor=float(np.mean(psi(smoothed(resampled), current))),
        js_floor=float(np.mean(js_divergence(smoothed(resampled), current))),
        setups=tuple(setups),
    )


@dataclass(frozen=True, slots=True)
class StreamKey:
    histogram: str
    cohort: str


@dataclass(frozen=True)
class StreamTest:
    stream: StreamKey
    windows: int  # how many windows the statistic sums
    statistic: float
    p_value: float
    n_eff: float
    judged: bool  # N_eff passed Cochran's rule; an unjudged stream is not tested
    psi: float  # debiased, 0.1 warn, 0.25 alert: for people, not the test
    js_distance: float  # debiased, base 2


def assess_stream(
    stream: StreamKey,
    reference: npt.ArrayLike,
    observed: Sequence[npt.ArrayLike],
    setups: Sequence[NoiseSetup],
    null: NullDistribution,
) -> StreamTest:
    """The last windows of one stream (oldest first), ``null`` calibrated on ``setups``."""
    if len(observed) != len(setups) or not observed:
        raise ValueError("one setup per observed window, and at least one window")
    if tuple(setups) != null.setups:
        raise ValueError(f"the null was calibrated for {null.setups}, not {tuple(setups)}")
    statistic = sum(
        window_statistic(o, reference, s) for o, s in zip(observed, setups, strict=True)
    )
    current_total = sum(s.total for s in setups)
    effective = n_eff(float(np.sum(reference)), current_total)
    pooled = np.sum([np.asarray(o, dtype=np.float64) for o in observed], axis=0)
    r, c = smoothed(reference), released_proportions(pooled, current_total)
    return StreamTest(
        stream=stream,
        windows=len(observed),
        statistic=statistic,
        p_value=null.p_value(statistic),
        n_eff=effective,
        judged=enough_data(reference, effective),
        psi=debiased(float(psi(r, c)), null.psi_floor),
        js_distance=math.sqrt(debiased(float(js_divergence(r, c)), null.js_floor)),
    )


def benjamini_hochberg(p_values: Sequence[float], q: float) -> tuple[bool, ...]:
    """Reject the ``k`` smallest p-values, ``k = max{i : p_(i) <= i q / m}`` (step-up).

    SciPy's BH-adjusted p-values are ``<= q`` exactly for those; it does the sort and the
    running minimum.
    """
    if not p_values:
        return ()
    adjusted = false_discovery_control(np.asarray(p_values, dtype=np.float64), method="bh")
    return tuple(bool(a <= q) for a in adjusted)


@dataclass(frozen=True)
class Decision:
    alert: bool
    flagged: frozenset[StreamKey]  # BH at q, among judged streams, when the alert is open
    tests: tuple[StreamTest, ...]

    def judged(self, stream: StreamKey) -> bool:
        return any(t.judged for t in self.tests if t.stream == stream)


def decide(
    tests: Iterable[StreamTest],
    *,
    q: float = DEFAULT_FDR,
    alert_alpha: float = DEFAULT_ALERT_ALPHA,
) -> Decision:
    """Alert when BH at ``alert_alpha`` rejects any judged stream; name BH's at ``q``."""
    tests = tuple(tests)
    judged = [t for t in tests if t.judged]
    p_values = [t.p_value for t in judged]
    alert = any(benjamini_hochberg(p_values, alert_alpha))
    named = benjamini_hochberg(p_values, q) if alert else (False,) * len(judged)
    flagged = frozenset(t.stream for t, hit in zip(judged, named, strict=True) if hit)
    return Decision(alert=alert, flagged=flagged, tests=tests)


class AlertEvent(StrEnum):
    OPENED = "opened"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class AlertState:
    """Whether an alert is open. It closes after ``close_after`` quiet windows, so one
    drifted window, which stays in the sliding sum for W windows, does not flap it."""

    open: bool = False
    quiet: int = 0

    def step(
        self, decision: Decision, close_after: int = DEFAULT_WINDOWS
    ) -> tuple[AlertState, AlertEvent | None]:
        """The next state and the event for the audit log, if any."""
        if decision.alert:
            return AlertState(open=True), None if self.open else AlertEvent.OPENED
        if not self.open:
            return self, None
        if self.quiet + 1 >= close_after:
            return AlertState(), AlertEvent.CLOSED
        return AlertState(open=True, quiet=self.quiet + 1), None


class Verdict(StrEnum):
    PASS = "pass"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class GateReason:
    code: str  # drift | shared_shift | insufficient_data | no_control
    histogram: str
    detail: str


@dataclass(frozen=True)
class GateVerdict:
    verdict: Verdict
    reasons: tuple[GateReason, ...]
    windows: int = 0  # windows both cohorts reported in that were judged (at most W)


def _reason(decision: Decision, histogram: str, new: str, control: str) -> GateReason | None:
    new_stream, control_stream = StreamKey(histogram, new), StreamKey(histogram, control)
    if not decision.judged(new_stream):
        return GateReason("insufficient_data", histogram, f"{new}: N_eff too small to judge")
    if new_stream not in decision.flagged:
        return None
    if not decision.judged(control_stream):
        return GateReason("no_control", histogram, f"{new} drifts; {control} cannot be judged")
    if control_stream in decision.flagged:
        return GateReason("shared_shift", histogram, f"{new} and {control} both drift")
    return GateReason("drift", histogram, f"{new} drifts from its reference; {control} does not")


def gate(decision: Decision, *, new: str, control: str) -> GateVerdict:
    """Pass unless a histogram of cohort ``new`` drifts alone or cannot be judged.

    A shift both cohorts show in the same windows (a season, a site) does not hold a
    rollout; it is still named in the reasons.
    """
    histograms = sorted({t.stream.histogram for t in decision.tests if t.stream.cohort == new})
    reasons = tuple(r for h in histograms if (r := _reason(decision, h, new, control)) is not None)
    hold = any(r.code != "shared_shift" for r in reasons) or not histograms
    return GateVerdict(Verdict.HOLD if hold else Verdict.PASS, reasons)
