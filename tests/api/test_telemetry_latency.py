"""Latency travels in every report but is no drift feature: the model card's reference
never holds it, so drift reports and the rollout gate never test or name it."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from sqlalchemy import Engine

from fleet.domain.aggregation import AggregateKey, OpenAggregate, release
from fleet.domain.drift import Verdict
from fleet.services.drift import assess_release, drift_gate
from fleet.store import SqlUnitOfWork
from fleet.store.db import make_session_factory
from schemas.components import DEFAULT_LATENCY_BINS, LATENCY_HISTOGRAM
from schemas.privacy import privatise, simulated_discrete_laplace
from tests.api.test_telemetry_drift import (
    BINS,
    CONTROL,
    DEVICES,
    MECHANISM,
    NEW,
    START,
    P,
    reference,
)

LATENCY_BINS = DEFAULT_LATENCY_BINS.bin_count
FAST = np.eye(LATENCY_BINS)[2]  # every invoke in [100, 200) us
SLOW = np.eye(LATENCY_BINS)[8]  # every invoke in [10, 20) ms: a 100x regression


def store_windows(engine: Engine, digest: str, latency: np.ndarray, windows: int) -> None:
    """``windows`` released windows: ``rms`` as the reference, latency from ``latency``."""
    rng = np.random.default_rng(int(digest[:2], 16))
    noise = simulated_discrete_laplace(rng)
    sizes = {"rms": BINS, LATENCY_HISTOGRAM: LATENCY_BINS}
    for index in range(windows):
        key = AggregateKey(digest, "1.0.0", START + timedelta(minutes=index), "gesture-m4")
        aggregate = OpenAggregate.start(key, MECHANISM, sizes)
        for _ in range(DEVICES):
            raw = {"rms": rng.multinomial(3, P), LATENCY_HISTOGRAM: rng.multinomial(3, latency)}
            noised = {n: privatise(r, MECHANISM, rng, noise).tolist() for n, r in raw.items()}
            aggregate = aggregate.add(MECHANISM, noised)
        with SqlUnitOfWork(make_session_factory(engine)) as uow:
            released = release(aggregate.close(), noise=noise)
            uow.telemetry.add(released, window_seconds=60, released_at=START)
            uow.commit()


def test_a_latency_regression_is_never_judged_as_drift(engine: Engine) -> None:
    store_windows(engine, NEW, SLOW, 3)
    store_windows(engine, CONTROL, FAST, 3)
    with SqlUnitOfWork(make_session_factory(engine)) as uow:
        stored = uow.telemetry.find(NEW, limit=10)
    assert len(stored) == 3 and all(LATENCY_HISTOGRAM in r.histograms for r in stored)
    report = assess_release(SqlUnitOfWork(make_session_factory(engine)), NEW, reference=reference())
    assert len(report) == 3
    for window in report:
        assert {t.stream.histogram for t in window.decision.tests} == {"rms"}
        assert not window.decision.alert
    gate = drift_gate(
        SqlUnitOfWork(make_session_factory(engine)), NEW, CONTROL, reference=reference()
    )
    assert gate.verdict is Verdict.PASS
    assert all(r.histogram != LATENCY_HISTOGRAM for r in gate.reasons)
