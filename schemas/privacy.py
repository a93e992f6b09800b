"""The device-side privacy mechanism for telemetry, and its accounting (docs/architecture.md §6).

Pure: no IO, randomness injected. Every formula is in ``docs/telemetry.md``.

It lives with the wire contract because it *is* the meaning of a report's ``mechanism``
field: a device (``device_sim``, which never imports the server) noises with it, and the
server (``fleet.domain``) debiases and computes
variances with the same functions. ``schemas/__init__`` does not import it, so the signer
never loads NumPy or OpenDP.

Privacy unit and neighbouring relation: one device's data in one telemetry window.
Two inputs are neighbours when they are *any* two sets of windows of the same device
(replace-one); whether a device reported at all is not protected — its report is signed
and the reporter count is released. A device normalises each histogram to exactly
``cap`` counts (:func:`cap_histogram`), so any two capped histograms differ by at most
``2 * cap`` in L1: the sensitivity. Discrete Laplace noise of scale ``2 * cap / epsilon``
on every bin then makes one histogram ``epsilon``-DP.

Counters (``COUNTERS``: inference errors, reboots) travel as one more vector: a device
clips each to an indicator (0 or 1, "at least one in this window"), so two windows'
vectors differ by at most ``len(COUNTERS)`` in L1, and discrete Laplace noise of scale
``len(COUNTERS) / epsilon`` on each makes the vector ``epsilon``-DP
(:func:`privatise_counters`). A report of ``H`` histograms and the counters costs
``(H + 1) * epsilon`` by basic composition, and so does every report a device sends in a
day, up to the budget the device enforces (:func:`charge`): ``Thresholds.daily_budget``,
by default ``DEFAULT_DAILY_BUDGET`` = 768 — one report an hour of up to 8 vectors at
epsilon 4 (``8 * 4 * 24``); it binds for anything more frequent, at a higher epsilon or
with more histograms (60 s windows stop after 24 reports a day).

The noise a device adds comes from OpenDP (:func:`opendp_discrete_laplace`), whose
sampler is exact on integers. :func:`simulated_discrete_laplace` draws the *same*
distribution from a seeded NumPy generator for benches and tests only: a float sampler
must never run on a device.

Errors::

    PrivacyError (ValueError)
     ├── NothingToReport     a window without a single inference
     └── BudgetExceeded      the day's epsilon would pass the budget
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import numpy.typing as npt

# COUNTERS and DEFAULT_DAILY_BUDGET (768.0; its docstring gives the reasoning) are
# defined without NumPy in schemas.device, because the report and the thresholds component
# (which the signer parses) use them; the device and the server read them from here.
from schemas.device import COUNTERS, DEFAULT_DAILY_BUDGET, Mechanism

__all__ = [
    "COUNTERS",
    "DEFAULT_DAILY_BUDGET",
    "SECONDS_PER_DAY",
    "BudgetExceeded",
    "Counts",
    "NoiseSampler",
    "NothingToReport",
    "PrivacyError",
    "Spend",
    "cap_histogram",
    "charge",
    "counter_scale",
    "counter_sensitivity",
    "daily_epsilon",
    "discrete_laplace_sums",
    "discrete_laplace_variance",
    "epsilon_spent",
    "noise_scale",
    "opendp_discrete_laplace",
    "privatise",
    "privatise_counters",
    "report_epsilon",
    "sensitivity",
    "simulated_discrete_laplace",
    "vectors_per_report",
]

SECONDS_PER_DAY = 86_400

Counts = npt.NDArray[np.int64]
NoiseSampler = Callable[[Counts, float], Counts]
"""``(counts, scale) -> counts + discrete Laplace(scale) noise on every bin``."""


class PrivacyError(ValueError):
    code = "privacy_error"


class NothingToReport(PrivacyError):
    code = "nothing_to_report"


class BudgetExceeded(PrivacyError):
    code = "privacy_budget_exceeded"

    def __init__(self, *, day: date, spent: float, cost: float, budget: float) -> None:
        super().__init__(
            f"{day}: spent epsilon {spent:g} + {cost:g} would pass the daily budget {budget:g}"
        )
        self.day, self.spent, self.cost, self.budget = day, spent, cost, budget


def sensitivity(cap: int) -> int:
    """L1 distance between two capped histograms of one device: each sums to ``cap``."""
    if cap < 1:
        raise PrivacyError(f"cap must be at least 1, not {cap}")
    return 2 * cap


def noise_scale(mechanism: Mechanism) -> float:
    """Discrete Laplace scale ``b = 2C / epsilon``; 0 for ``none`` (no local noise)."""
    if mechanism.name == "none":
        return 0.0
    return sensitivity(mechanism.cap) / mechanism.epsilon


def discrete_laplace_variance(scale: float) -> float:
    """Exact variance of P(k) ∝ exp(-|k| / scale): ``2a / (1 - a)^2`` with a = exp(-1/scale).

    Tends to the continuous ``2 * scale^2`` from below as the scale grows.
    """
    if scale == 0:
        return 0.0
    a = math.exp(-1.0 / scale)
    return 2.0 * a / (1.0 - a) ** 2


def cap_histogram(counts: npt.ArrayLike, cap: int, rng: np.random.Generator) -> Counts:
    """This window's histogram as exactly ``cap`` of its inferences, chosen at random.

    Without replacement when the window has at least ``cap`` inferences, with replacement
    otherwise; either way the expected result is ``cap`` times the window's proportions,
    so the server recovers proportions by dividing by ``reporters * cap``.
    """
    raw = np.asarray(counts, dtype=np.int64)
    if raw.ndim != 1 or (raw < 0).any():
        raise PrivacyError("a histogram is a vector of non-negative counts")
    sensitivity(cap)
    total = int(raw.sum())
    if total == 0:
        raise NothingToReport("the window holds no inference to report")
    if total >= cap:
        return rng.multivariate_hypergeometric(raw, cap).astype(np.int64)
    return rng.multinomial(cap, raw / total).astype(np.int64)


def counter_sensitivity() -> int:
    """L1 distance between two windows' counter vectors: each counter is an indicator."""
    return len(COUNTERS)


def counter_scale(mechanism: Mechanism, counters: int = len(COUNTERS)) -> float:
    """Discrete Laplace scale on each counter, ``n / epsilon`` for ``n`` indicators; 0 for
    ``none``. The server's variance per counter and reporter is
    ``discrete_laplace_variance(counter_scale(mechanism))``."""
    if mechanism.name == "none":
        return 0.0
    return counters / mechanism.epsilon


def opendp_discrete_laplace(counts: Counts, scale: float) -> Counts:
    """OpenDP's discrete Laplace on every bin (its own CSPRNG): what a device runs."""
    noised = _opendp_laplace(scale)([int(c) for c in counts])
    return np.asarray(noised, dtype=np.int64)


@functools.lru_cache(maxsize=64)
def _opendp_laplace(scale: float) -> Callable[[list[int]], list[int]]:
    """The measurement for one scale, built once (it takes most of a call's time)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    measurement: Callable[[list[int]], list[int]] = dp.m.make_laplace(*space, scale=scale)
    return measurement


def simulated_discrete_laplace(rng: np.random.Generator) -> NoiseSampler:
    """SIMULATION ONLY — benches and tests; never on a device.

    The same distribution as OpenDP's, ``P(k) = (1-a)/(1+a) * a^|k|`` with
    a = exp(-1/scale), drawn as the difference of two geometric failure counts.
    """

    def sample(counts: Counts, scale: float) -> Counts:
        return np.asarray(counts, dtype=np.int64) + discrete_laplace_sums(
            rng, np.ones(np.shape(counts), dtype=np.int64), scale
        )

    return sample


def discrete_laplace_sums(
    rng: np.random.Generator, terms: npt.NDArray[np.int64], scale: float
) -> Counts:
    """SIMULATION ONLY: each entry the sum of ``terms`` independent discrete Laplace draws.

    A sum of ``n`` geometric failure counts is negative binomial, so the sum of ``n``
    discrete Laplace draws is the difference of two NB(n, 1 - a): exact, in O(1).
    """
    if scale == 0:
        return np.zeros(np.shape(terms), dtype=np.int64)
    success = -math.expm1(-1.0 / scale)
    terms = np.asarray(terms, dtype=np.int64)
    safe = np.maximum(terms, 1)
    up = rng.negative_binomial(safe, success)
    down = rng.negative_binomial(safe, success)
    return np.where(terms > 0, up - down, 0).astype(np.int64)


def privatise(
    counts: npt.ArrayLike,
    mechanism: Mechanism,
    rng: np.random.Generator,
    noise: NoiseSampler = opendp_discrete_laplace,
) -> Counts:
    """Cap one histogram to ``mechanism.cap`` counts, then add the mechanism's noise."""
    capped = cap_histogram(counts, mechanism.cap, rng)
    scale = noise_scale(mechanism)
    return capped if scale == 0 else noise(capped, scale)


def privatise_counters(
    values: Mapping[str, int],
    mechanism: Mechanism,
    noise: NoiseSampler = opendp_discrete_laplace,
) -> dict[str, int]:
    """Every name of ``COUNTERS``: its window count clipped to 0 or 1, plus noise.

    A name missing from ``values`` counts 0; an unknown name or a negative count is a
    PrivacyError (the vector's sensitivity holds only for these names, clipped).
    """
    unknown = sorted(set(values) - set(COUNTERS))
    if unknown:
        raise PrivacyError(f"unknown counters {unknown}; counters are {list(COUNTERS)}")
    negative = sorted(name for name, value in values.items() if value < 0)
    if negative:
        raise PrivacyError(f"counters cannot be negative: {negative}")
    indicators = np.asarray([min(values.get(name, 0), 1) for name in COUNTERS], dtype=np.int64)
    scale = counter_scale(mechanism)
    noised = indicators if scale == 0 else noise(indicators, scale)
    return {name: int(value) for name, value in zip(COUNTERS, noised, strict=True)}


def vectors_per_report(histograms: int, *, counters: bool = True) -> int:
    """The noised vectors one report holds: its histograms, and the counters vector."""
    return histograms + int(counters)


def report_epsilon(mechanism: Mechanism, histograms: int, *, counters: bool = True) -> float:
    """One report of ``histograms`` noised histograms and (by default) the counters
    vector, each ``epsilon``-DP: ``(H + 1) * epsilon`` by basic composition.

    Without local noise (``none``) a report is not locally private: infinite epsilon.
    """
    if mechanism.name == "none":
        return math.inf
    return mechanism.epsilon * vectors_per_report(histograms, counters=counters)


def daily_epsilon(
    mechanism: Mechanism, histograms: int, window_seconds: int, *, counters: bool = True
) -> float:
    """What a device spends in a day reporting every window: ``(H + 1) eps ceil(day / T)``."""
    windows = -(-SECONDS_PER_DAY // window_seconds)
    return report_epsilon(mechanism, histograms, counters=counters) * windows


@dataclass(frozen=True, slots=True)
class Spend:
    """One report's epsilon, charged to the UTC day its window starts on."""

    window_start: datetime
    epsilon: float

    @property
    def day(self) -> date:
        return self.window_start.date()


def epsilon_spent(ledger: Iterable[Spend], day: date) -> float:
    return math.fsum(spend.epsilon for spend in ledger if spend.day == day)


def charge(ledger: tuple[Spend, ...], spend: Spend, *, budget: float) -> tuple[Spend, ...]:
    """The ledger with ``spend`` added, keeping only its day; BudgetExceeded past ``budget``.

    A device calls this before it sends a report and sends nothing when it raises.
    """
    spent = epsilon_spent(ledger, spend.day)
    if spent + spend.epsilon > budget:
        raise BudgetExceeded(day=spend.day, spent=spent, cost=spend.epsilon, budget=budget)
    return (*(s for s in ledger if s.day == spend.day), spend)
