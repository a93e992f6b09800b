"""Drift over stored releases and the rollout drift gate, on simulated cohorts.

Each window, 300 devices per release report one capped count (C = 1) from the fleet's
distribution, locally noised (epsilon 4, the exact discrete Laplace law, seeded); the
aggregate is released through the real path (k, central noise) and stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from rich.console import Console
from sqlalchemy import Engine

from fleet.api.models.telemetry import DriftReport, WindowDriftPublic
from fleet.domain.aggregation import AggregateKey, OpenAggregate, release
from fleet.domain.drift import Verdict
from fleet.domain.model_card import ModelReference, ReferenceHistogram
from fleet.domain.records import Role
from fleet.drift_cli import drift_table
from fleet.services.drift import assess_release, drift_gate
from fleet.store import SqlUnitOfWork
from fleet.store.db import make_session_factory
from schemas.device import Mechanism
from schemas.privacy import privatise, simulated_discrete_laplace
from tests.api.support import API, Fleet

MECHANISM = Mechanism(name="discrete_laplace", epsilon=4.0, cap=1)
DEVICES = 300
BINS = 12
NEW, CONTROL = "aa" * 32, "cc" * 32
START = datetime(2026, 11, 23, 10, tzinfo=UTC)
P = np.exp(-0.5 * ((np.arange(BINS) - 5.5) / 2.0) ** 2)
P /= P.sum()
SHIFTED = np.roll(P, 2)  # a gain drift moves mass to higher bins


def reference() -> ModelReference:
    counts = np.random.default_rng(7).multinomial(20_000, P)
    return ModelReference(
        task="toy",
        seed=0,
        size=20_000,
        model_sha256="ee" * 32,
        float_accuracy=1.0,
        int8_accuracy=1.0,
        histograms={
            "rms": ReferenceHistogram(
                counts=tuple(int(c) for c in counts),
                proportions=tuple(float(c) / 20_000 for c in counts),
            )
        },
    )


def store_windows(
    engine: Engine, digest: str, p: list[np.ndarray], rng: np.random.Generator
) -> None:
    """One released window per entry of ``p``, the fleet's distribution in that window."""
    new_uow = make_session_factory(engine)
    noise = simulated_discrete_laplace(rng)
    for index, dist in enumerate(p):
        key = AggregateKey(digest, "1.0.0", START + timedelta(minutes=index), "gesture-m4")
        aggregate = OpenAggregate.start(key, MECHANISM, {"rms": BINS})
        for _ in range(DEVICES):
            raw = rng.multinomial(3, dist)
            noised = privatise(raw, MECHANISM, rng, noise)
            aggregate = aggregate.add(MECHANISM, {"rms": noised.tolist()})
        released = release(aggregate.close(), noise=noise)
        with SqlUnitOfWork(new_uow) as uow:
            uow.telemetry.add(released, window_seconds=60, released_at=START)
            uow.commit()


def uow_for(engine: Engine) -> SqlUnitOfWork:
    return SqlUnitOfWork(make_session_factory(engine))


def test_no_alert_on_clean_windows_and_one_within_three_after_a_drift(engine: Engine) -> None:
    rng = np.random.default_rng(1)
    store_windows(engine, NEW, [P] * 6 + [SHIFTED] * 3, rng)
    report = assess_release(uow_for(engine), NEW, reference=reference())
    assert [w.decision.alert for w in report[:6]] == [False] * 6
    assert any(w.decision.alert for w in report[6:])
    assert report[-1].alert_open and report[-1].decision.tests[0].psi > 0.1
    events = [w.event.value for w in report if w.event is not None]
    assert events == ["opened"]


def test_drift_gate_holds_new_only_drift_and_passes_a_shared_shift(engine: Engine) -> None:
    rng = np.random.default_rng(2)
    store_windows(engine, NEW, [SHIFTED] * 3, rng)
    store_windows(engine, CONTROL, [P] * 3, rng)
    held = drift_gate(uow_for(engine), NEW, CONTROL, reference=reference())
    assert held.verdict is Verdict.HOLD
    assert [r.code for r in held.reasons] == ["drift"]

    store_windows(engine, "dd" * 32, [SHIFTED] * 3, rng)  # the season hits the old release too
    shared = drift_gate(uow_for(engine), NEW, "dd" * 32, reference=reference())
    assert shared.verdict is Verdict.PASS
    assert [r.code for r in shared.reasons] == ["shared_shift"]

    clean = "ee" * 32
    store_windows(engine, clean, [P] * 3, rng)
    assert drift_gate(uow_for(engine), clean, CONTROL, reference=reference()).verdict is (
        Verdict.PASS
    )


async def test_the_drift_endpoint_answers_without_a_reference(fleet: Fleet) -> None:
    response = await fleet.client.get(
        f"{API}/telemetry/drift", params={"release": NEW}, headers=fleet.auth(Role.VIEWER)
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"release_digest": NEW, "windows": []}


def test_the_cli_table_shows_every_window_and_the_open_alert(engine: Engine) -> None:
    store_windows(engine, NEW, [P] * 2 + [SHIFTED] * 2, np.random.default_rng(3))
    windows = assess_release(uow_for(engine), NEW, reference=reference())
    body = DriftReport(
        release_digest=NEW, windows=[WindowDriftPublic.from_drift(w) for w in windows]
    )
    console = Console(width=200, record=True)
    console.print(drift_table(body.model_dump(mode="json")))
    text = console.export_text()
    assert text.count("rms@gesture-m4") == 4
    assert "OPEN (opened)" in text
