"""Server-side cohort aggregates of noised telemetry, and their central-DP release.

Pure: no IO, randomness injected. Formulas in ``docs/telemetry.md``.

An aggregate belongs to one (release, model version, window, cohort): :class:`AggregateKey`.
While its window is open, :class:`OpenAggregate` sums the reports' noised histograms and
remembers opaque reporter tokens, only to refuse a second report from the same device —
the caller passes a token that is not the device id (a keyed hash whose key is dropped
with the window). :meth:`OpenAggregate.close` forgets the tokens: a
:class:`ClosedAggregate` keeps sums and a reporter count and nothing per device.

:func:`release` publishes a closed aggregate only with at least ``k`` reporters, with
central discrete Laplace noise of scale ``2C / epsilon_central`` on every bin (the same
replace-one sensitivity as on a device), debiased to proportions of the known total
``reporters * cap``, and with each bin's predicted error variance (:func:`bin_variance`).
Release once and store the result: every release spends the central epsilon again.

Errors::

    AggregationError (ValueError)
     ├── DuplicateReport     the same reporter twice in one window
     ├── MechanismMismatch   a report noised otherwise than its aggregate
     ├── HistogramMismatch   a histogram missing, unknown, or of the wrong size
     └── TooFewReporters     fewer than k reporters: nothing is released
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from schemas.device import Mechanism
from schemas.privacy import (
    NoiseSampler,
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
    "Release",
    "ReleasedHistogram",
    "TooFewReporters",
    "bin_variance",
    "central_scale",
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


@dataclass(frozen=True)
class OpenAggregate:
    key: AggregateKey
    mechanism: Mechanism
    sums: Mapping[str, tuple[int, ...]]
    tokens: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def start(
        cls, key: AggregateKey, mechanism: Mechanism, sizes: Mapping[str, int]
    ) -> OpenAggregate:
        """An empty aggregate for histograms of these names and bin counts."""
        return cls(key, mechanism, {name: (0,) * size for name, size in sizes.items()})

    def add(
        self, token: str, mechanism: Mechanism, histograms: Mapping[str, Sequence[int]]
    ) -> OpenAggregate:
        """This aggregate with one more report; the report is checked before anything."""
        if token in self.tokens:
            raise DuplicateReport("a report from this device is already in this window")
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
        sums = {
            name: tuple(a + int(b) for a, b in zip(total, histograms[name], strict=True))
            for name, total in self.sums.items()
        }
        return OpenAggregate(self.key, self.mechanism, sums, self.tokens | {token})

    @property
    def reporters(self) -> int:
        return len(self.tokens)

    def close(self) -> ClosedAggregate:
        """The sums and the reporter count; which devices reported is forgotten."""
        return ClosedAggregate(self.key, self.mechanism, dict(self.sums), len(self.tokens))


@dataclass(frozen=True)
class ReleasedHistogram:
    counts: tuple[int, ...]  # aggregate + central noise: unbiased for the capped counts
    proportions: tuple[float, ...]  # counts / (reporters * cap); may be < 0 or > 1
    variance: tuple[float, ...]  # predicted error variance of each count


@dataclass(frozen=True)
class Release:
    key: AggregateKey
    mechanism: Mechanism  # the local mechanism
    central_epsilon: float
    reporters: int
    histograms: Mapping[str, ReleasedHistogram]

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
        aggregate.key, aggregate.mechanism, central_epsilon, aggregate.reporters, histograms
    )
