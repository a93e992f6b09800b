"""Cohort aggregates: distinct reporters, k-anonymity, central noise, predicted error."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from fleet.domain.aggregation import (
    AggregateKey,
    ClosedAggregate,
    HistogramMismatch,
    MechanismMismatch,
    OpenAggregate,
    TooFewReporters,
    central_scale,
    counter_variance,
    release,
)
from schemas.device import Mechanism
from schemas.privacy import (
    counter_scale,
    discrete_laplace_sums,
    opendp_discrete_laplace,
    privatise,
    simulated_discrete_laplace,
)

KEY = AggregateKey("a" * 64, "vib-1", datetime(2026, 11, 23, 10, tzinfo=UTC), "canary")
MECHANISM = Mechanism(name="discrete_laplace", epsilon=4.0, cap=4)
BINS = 14
DEVICES = 1000
CONFIDENCE_SIGMAS = 3.0  # docs/telemetry.md: >= 99 % of bins within 3 sigma
LOOSE_SIGMAS = 4.5  # OpenDP's own CSPRNG, one run: all bins, flakes about 1 in 10^4


def _open(sizes: dict[str, int] | None = None) -> OpenAggregate:
    return OpenAggregate.start(KEY, MECHANISM, sizes or {"rms_x": 3})


def test_a_refused_report_changes_nothing() -> None:
    aggregate = _open().add(MECHANISM, {"rms_x": [1, 2, 1]})
    with pytest.raises(HistogramMismatch) as caught:
        aggregate.add(MECHANISM, {"rms_x": [0, 4, 0]}, {"reboots": 1})
    assert caught.value.code == "histogram_mismatch"
    assert aggregate.sums == {"rms_x": (1, 2, 1)} and aggregate.reporters == 1


def test_reports_noised_otherwise_or_shaped_otherwise_are_refused() -> None:
    aggregate = _open()
    other = Mechanism(name="discrete_laplace", epsilon=8.0, cap=4)
    with pytest.raises(MechanismMismatch):
        aggregate.add(other, {"rms_x": [1, 2, 1]})
    with pytest.raises(HistogramMismatch):
        aggregate.add(MECHANISM, {"rms_x": [1, 2]})
    with pytest.raises(HistogramMismatch):
        aggregate.add(MECHANISM, {"peak": [1, 2, 1]})


def test_a_closed_aggregate_holds_sums_and_a_count_only() -> None:
    aggregate = _open().add(MECHANISM, {"rms_x": [4, 0, 0]}).add(MECHANISM, {"rms_x": [0, 5, -1]})
    closed = aggregate.close()
    assert closed.reporters == 2 and closed.sums == {"rms_x": (4, 5, -1)}
    assert set(vars(closed)) == {"key", "mechanism", "sums", "reporters", "counters"}


def test_fewer_than_k_reporters_release_nothing() -> None:
    aggregate = _open()
    for _ in range(49):
        aggregate = aggregate.add(MECHANISM, {"rms_x": [4, 0, 0]})
    with pytest.raises(TooFewReporters):
        release(aggregate.close())
    aggregate = aggregate.add(MECHANISM, {"rms_x": [4, 0, 0]})
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
    for counts in raw:
        noised = privatise(counts, MECHANISM, rng, noise)
        aggregate = aggregate.add(MECHANISM, {"rms_x": noised.tolist()})
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


def test_released_counters_fall_within_their_predicted_error() -> None:
    """Indicators of 1,000 devices, 10 % with an error and 3 % rebooted, noised at the
    counters' sensitivity (two counters → scale 2 / epsilon) on device and server.
    A device-by-device sum is ``OpenAggregate``'s, tested above; here the sum of the
    devices' noise is drawn at once, so 400 releases take no time."""
    rng = np.random.default_rng(9)
    noise = simulated_discrete_laplace(rng)
    truth = {"inference_errors": 100, "reboots": 30}
    local = counter_scale(MECHANISM, len(truth))
    assert local == 2 / MECHANISM.epsilon
    within = []
    for _ in range(400):
        # the sum of DEVICES devices' noised indicators, drawn at once (same law)
        local_noise = discrete_laplace_sums(rng, np.full(len(truth), DEVICES), local)
        sums = {
            name: count + int(n)
            for (name, count), n in zip(truth.items(), local_noise, strict=True)
        }
        closed = ClosedAggregate(KEY, MECHANISM, {"rms_x": (4 * DEVICES, 0, 0)}, DEVICES, sums)
        released = release(closed, noise=noise)
        for name, count in truth.items():
            counter = released.counters[name]
            assert counter.share == counter.count / DEVICES
            within.append(abs(counter.count - count) <= CONFIDENCE_SIGMAS * counter.variance**0.5)
    expected = counter_variance(
        reporters=DEVICES, local_scale=local, central_scale=central_scale(1, 1.0)
    )
    assert released.counters["reboots"].variance == pytest.approx(expected)
    assert np.mean(within) >= 0.99
