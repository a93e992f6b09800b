"""Server-side cohort aggregates of noised telemetry, and their central-DP release.

Pure: no IO, randomness injected. Formulas in ``docs/telemetry.md``.

An aggregate belongs to one (release, model version, window, cohort): :class:`AggregateKey`.
While its window is open, :class:`OpenAggregate` sums the reports' noised histograms and
counters and counts the reports; refusing a second report from one device is the
caller's (``fleet.services.telemetry`` keeps keyed-hash reporter tokens and drops them
with the window). A :class:`ClosedAggregate` keeps sums and a reporter count and nothing
per device.

:func:`release` publishes a closed aggregate only with at least ``k`` reporters, with
central discrete Laplace noise of scale ``2C / epsilon_central`` on every bin (the same
replace-one sensitivity as on a device), debiased to proportions of the known total
``reporters * cap``, and with each bin's predicted error variance (:func:`bin_variance`).
Counters (noised 0/1 indicators: "at least one inference error / reboot in the window")
get central noise at their own sensitivity and are released as counts and shares of the
reporters (:func:`counter_variance`).
Release once and store the result: every release spends the central epsilon again.

Errors::

    AggregationError (ValueError)
     ├── DuplicateReport     the same reporter twice in one window (raised by callers)
     ├── MechanismMismatch   a report noised otherwise than its aggregate
     ├── HistogramMismatch   a histogram or counter missing, unknown, or misshapen
     └── TooFewReporters     fewer than k reporters: nothing is released
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from schemas.device import Mechanism
from schemas.privacy import (
    NoiseSampler,
    counter_scale,
    discrete_laplace_variance,
    noise_scale,
    opendp_discrete_laplace,
    sensitivity,
)

__all__ = [
    "DEFAULT_CENTRAL_EPSILON",
    "DEFAULT_MIN_REPORTERS",
    "AggregateKey",
    "AggregationError",
    "ClosedAggregate",
    "DuplicateReport",
    "HistogramMismatch",
    "MechanismMismatch",
    "OpenAggregate",
    "OpenWindow",
    "Release",
    "ReleasedCounter",
    "ReleasedHistogram",
    "TooFewReporters",
    "bin_variance",
    "central_scale",
    "counter_variance",
    "release",
]

DEFAULT_MIN_REPORTERS = 50
DEFAULT_CENTRAL_EPSILON = 1.0

Floats = npt.NDArray[np.float64]


class AggregationError(ValueError):
    code = "aggregation_error"


class DuplicateReport(AggregationError):
    code = "duplicate_report"


class MechanismMismatch(AggregationError):
    code = "mechanism_mismatch"


class HistogramMismatch(AggregationError):
    code = "histogram_mismatch"


class TooFewReporters(AggregationError):
    code = "too_few_reporters"


@dataclass(frozen=True, slots=True)
class AggregateKey:
    release_digest: str
    model_version: str
    window_start: datetime
    cohort: str


@dataclass(frozen=True)
class ClosedAggregate:
    key: AggregateKey
    mechanism: Mechanism
    sums: Mapping[str, tuple[int, ...]]
    reporters: int
    counters: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenAggregate:
    """Sums of a window's reports so far, and how many there were; no reporter identity.

    Refusing a second report from one device is the caller's job (it keeps opaque
    reporter tokens, and drops them with the window): here a report is only checked to
    be noised and shaped like the first one.
    """

    key: AggregateKey
    mechanism: Mechanism
    sums: Mapping[str, tuple[int, ...]]
    counters: Mapping[str, int] = field(default_factory=dict)
    reporters: int = 0

    @classmethod
    def start(
        cls,
        key: AggregateKey,
        mechanism: Mechanism,
        sizes: Mapping[str, int],
        counters: Iterable[str] = (),
    ) -> OpenAggregate:
        """An empty aggregate for histograms of these names and bin counts, and counters."""
        return cls(
            key,
            mechanism,
            {name: (0,) * size for name, size in sizes.items()},
            {name: 0 for name in counters},
        )

    def check(
        self,
        mechanism: Mechanism,
        histograms: Mapping[str, Sequence[int]],
        counters: Mapping[str, int] | None = None,
    ) -> None:
        """Raise unless a report of this shape and mechanism can join this aggregate."""
        if mechanism != self.mechanism:
            raise MechanismMismatch(f"expected {self.mechanism!r}, got {mechanism!r}")
        if set(histograms) != set(self.sums):
            raise HistogramMismatch(
                f"expected histograms {sorted(self.sums)}, got {sorted(histograms)}"
            )
        for name, counts in histograms.items():
            if len(counts) != len(self.sums[name]):
                raise HistogramMismatch(
                    f"{name}: expected {len(self.sums[name])} bins, got {len(counts)}"
                )
        if set(counters or {}) != set(self.counters):
            raise HistogramMismatch(
                f"expected counters {sorted(self.counters)}, got {sorted(counters or {})}"
            )

    def add(
        self,
        mechanism: Mechanism,
        histograms: Mapping[str, Sequence[int]],
        counters: Mapping[str, int] | None = None,
    ) -> OpenAggregate:
        """This aggregate with one more report; the report is checked before anything."""
        self.check(mechanism, histograms, counters)
        sums = {
            name: tuple(a + int(b) for a, b in zip(total, histograms[name], strict=True))
            for name, total in self.sums.items()
        }
        added = counters or {}
        totals = {name: total + int(added[name]) for name, total in self.counters.items()}
        return OpenAggregate(self.key, self.mechanism, sums, totals, self.reporters + 1)

    def close(self) -> ClosedAggregate:
        """The sums and the reporter count: all a window leaves behind."""
        return ClosedAggregate(
            self.key, self.mechanism, dict(self.sums), self.reporters, dict(self.counters)
        )


@dataclass(frozen=True)
class OpenWindow:
    """An open aggregate as stored: its window and the key of its reporter tokens."""

    id: int
    aggregate: OpenAggregate
    seconds: int
    secret: bytes  # keys HMAC(secret, device id) reporter tokens; dropped with the window
    closes_at: datetime

    def token(self, device_id: str) -> str:
        return hmac.new(self.secret, device_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ReleasedHistogram:
    counts: tuple[int, ...]  # aggregate + central noise: unbiased for the capped counts
    proportions: tuple[float, ...]  # counts / (reporters * cap); may be < 0 or > 1
    variance: tuple[float, ...]  # predicted error variance of each count


@dataclass(frozen=True, slots=True)
class ReleasedCounter:
    """How many reporters had at least one such event in the window (noised indicators)."""

    count: int  # sum of the devices' noised indicators + central noise: unbiased
    share: float  # count / reporters; may be < 0 or > 1
    variance: float  # predicted error variance of count


@dataclass(frozen=True)
class Release:
    key: AggregateKey
    mechanism: Mechanism  # the local mechanism
    central_epsilon: float
    reporters: int
    histograms: Mapping[str, ReleasedHistogram]
    counters: Mapping[str, ReleasedCounter] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Counts each histogram holds before noise: ``reporters * cap``, exactly."""
        return self.reporters * self.mechanism.cap

    @property
    def local_scale(self) -> float:
        return noise_scale(self.mechanism)

    @property
    def central_scale(self) -> float:
        return central_scale(self.mechanism.cap, self.central_epsilon)


def central_scale(cap: int, central_epsilon: float) -> float:
    return sensitivity(cap) / central_epsilon


def bin_variance(
    proportions: npt.ArrayLike,
    *,
    reporters: int,
    cap: int,
    local_scale: float,
    central_scale: float,
) -> Floats:
    """Predicted error variance of each released count around ``reporters * cap * p``.

    ``N p (1 - p)`` for capping (an upper bound, exact when devices are alike), plus
    ``n`` local discrete Laplace variances, plus one central one; ``p`` clipped to [0, 1].
    """
    p = np.clip(np.asarray(proportions, dtype=np.float64), 0.0, 1.0)
    sampling = reporters * cap * p * (1.0 - p)
    local = reporters * discrete_laplace_variance(local_scale)
    central = discrete_laplace_variance(central_scale)
    variance: Floats = sampling + local + central
    return variance


def release(
    aggregate: ClosedAggregate,
    *,
    min_reporters: int = DEFAULT_MIN_REPORTERS,
    central_epsilon: float = DEFAULT_CENTRAL_EPSILON,
    noise: NoiseSampler = opendp_discrete_laplace,
) -> Release:
    """Central noise on every bin, debiased proportions and their variance; or refuse."""
    if aggregate.reporters < min_reporters:
        raise TooFewReporters(
            f"{aggregate.reporters} reporters; a release needs at least {min_reporters}"
        )
    cap = aggregate.mechanism.cap
    scale = central_scale(cap, central_epsilon)
    total = aggregate.reporters * cap
    histograms = {}
    for name, sums in aggregate.sums.items():
        counts = noise(np.asarray(sums, dtype=np.int64), scale)
        proportions = counts / total
        variance = bin_variance(
            proportions,
            reporters=aggregate.reporters,
            cap=cap,
            local_scale=noise_scale(aggregate.mechanism),
            central_scale=scale,
        )
        histograms[name] = ReleasedHistogram(
            counts=tuple(int(c) for c in counts),
            proportions=tuple(float(p) for p in proportions),
            variance=tuple(float(v) for v in variance),
        )
    return Release(
        aggregate.key,
        aggregate.mechanism,
        central_epsilon,
        aggregate.reporters,
        histograms,
        _release_counters(aggregate, central_epsilon, noise),
    )


def counter_variance(*, reporters: int, local_scale: float, central_scale: float) -> float:
    """Predicted error variance of a released counter: only noise, no sampling — each
    device's indicator is its own window's truth, not a sample of it."""
    return reporters * discrete_laplace_variance(local_scale) + discrete_laplace_variance(
        central_scale
    )


def _release_counters(
    aggregate: ClosedAggregate, central_epsilon: float, noise: NoiseSampler
) -> dict[str, ReleasedCounter]:
    """Central noise at the counters vector's own sensitivity (one per counter)."""
    names = sorted(aggregate.counters)
    if not names:
        return {}
    central = len(names) / central_epsilon
    counts = noise(np.asarray([aggregate.counters[n] for n in names], dtype=np.int64), central)
    variance = counter_variance(
        reporters=aggregate.reporters,
        local_scale=counter_scale(aggregate.mechanism, len(names)),
        central_scale=central,
    )
    return {
        name: ReleasedCounter(int(count), int(count) / aggregate.reporters, variance)
        for name, count in zip(names, counts, strict=True)
    }
