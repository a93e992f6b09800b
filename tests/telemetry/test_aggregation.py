"""Cohort aggregates: distinct reporters, k-anonymity, central noise, predicted error."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from fleet.domain.aggregation import (
    AggregateKey,
    DuplicateReport,
    HistogramMismatch,
    MechanismMismatch,
    OpenAggregate,
    TooFewReporters,
    release,
)
from schemas.device import Mechanism
from schemas.privacy import opendp_discrete_laplace, privatise, simulated_discrete_laplace

KEY = AggregateKey("a" * 64, "vib-1", datetime(2026, 11, 23, 10, tzinfo=UTC), "canary")
MECHANISM = Mechanism(name="discrete_laplace", epsilon=4.0, cap=4)
BINS = 14
DEVICES = 1000
CONFIDENCE_SIGMAS = 3.0  # docs/telemetry.md: >= 99 % of bins within 3 sigma
LOOSE_SIGMAS = 4.5  # OpenDP's own CSPRNG, one run: all bins, flakes about 1 in 10^4


def _open(sizes: dict[str, int] | None = None) -> OpenAggregate:
    return OpenAggregate.start(KEY, MECHANISM, sizes or {"rms_x": 3})


def test_a_second_report_from_one_device_in_a_window_is_refused() -> None:
    aggregate = _open().add("t1", MECHANISM, {"rms_x": [1, 2, 1]})
    with pytest.raises(DuplicateReport) as caught:
        aggregate.add("t1", MECHANISM, {"rms_x": [0, 4, 0]})
    assert caught.value.code == "duplicate_report"
    assert aggregate.sums == {"rms_x": (1, 2, 1)} and aggregate.reporters == 1


def test_reports_noised_otherwise_or_shaped_otherwise_are_refused() -> None:
    aggregate = _open()
    other = Mechanism(name="discrete_laplace", epsilon=8.0, cap=4)
    with pytest.raises(MechanismMismatch):
        aggregate.add("t1", other, {"rms_x": [1, 2, 1]})
    with pytest.raises(HistogramMismatch):
        aggregate.add("t1", MECHANISM, {"rms_x": [1, 2]})
    with pytest.raises(HistogramMismatch):
        aggregate.add("t1", MECHANISM, {"peak": [1, 2, 1]})


def test_closing_forgets_who_reported() -> None:
    aggregate = (
        _open()
        .add("t1", MECHANISM, {"rms_x": [4, 0, 0]})
        .add("t2", MECHANISM, {"rms_x": [0, 5, -1]})
    )
    closed = aggregate.close()
    assert closed.reporters == 2 and closed.sums == {"rms_x": (4, 5, -1)}
    assert not any("t1" in repr(value) for value in vars(closed).values())


def test_fewer_than_k_reporters_release_nothing() -> None:
    aggregate = _open()
    for index in range(49):
        aggregate = aggregate.add(f"t{index}", MECHANISM, {"rms_x": [4, 0, 0]})
    with pytest.raises(TooFewReporters):
        release(aggregate.close())
    aggregate = aggregate.add("t49", MECHANISM, {"rms_x": [4, 0, 0]})
    released = release(
        aggregate.close(), noise=simulated_discrete_laplace(np.random.default_rng(0))
    )
    assert released.reporters == 50 and released.total == 200


def _fleet(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Raw window histograms of DEVICES unlike devices, and the mean of their proportions."""
    shapes = rng.dirichlet(np.full(BINS, 2.0), size=DEVICES)
    raw = np.stack([rng.multinomial(int(rng.integers(1, 300)), p) for p in shapes])
    raw[raw.sum(axis=1) == 0, 0] = 1
    return raw, (raw / raw.sum(axis=1, keepdims=True)).mean(axis=0)


def _released_errors(
    raw: np.ndarray, rng: np.random.Generator, noise
) -> tuple[np.ndarray, np.ndarray]:
    aggregate = OpenAggregate.start(KEY, MECHANISM, {"rms_x": BINS})
    for index, counts in enumerate(raw):
        noised = privatise(counts, MECHANISM, rng, noise)
        aggregate = aggregate.add(f"t{index}", MECHANISM, {"rms_x": noised.tolist()})
    published = release(aggregate.close(), central_epsilon=1.0, noise=noise).histograms["rms_x"]
    truth = DEVICES * MECHANISM.cap * (raw / raw.sum(axis=1, keepdims=True)).mean(axis=0)
    return np.asarray(published.counts) - truth, np.sqrt(published.variance)


def test_debiased_aggregates_of_1000_devices_fall_within_the_predicted_error() -> None:
    rng = np.random.default_rng(5)
    raw, _ = _fleet(rng)
    noise = simulated_discrete_laplace(rng)
    within = []
    for _ in range(40):
        error, sigma = _released_errors(raw, rng, noise)
        within.extend(np.abs(error) <= CONFIDENCE_SIGMAS * sigma)
    assert np.mean(within) >= 0.99


def test_with_opendp_noise_every_bin_is_within_the_loose_bound() -> None:
    rng = np.random.default_rng(6)
    raw, _ = _fleet(rng)
    error, sigma = _released_errors(raw, rng, opendp_discrete_laplace)
    assert (np.abs(error) <= LOOSE_SIGMAS * sigma).all()
