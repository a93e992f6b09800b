"""Privacy accounting of a release's telemetry: computed from the thresholds it ships,
with the numbers checked against ``schemas.privacy``'s own functions."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from fleet.domain.records import Role
from fleet.services.privacy_accounting import reports_within_budget
from fleet.toolkit.packaged import packaged_thresholds
from schemas import ComponentKind, DeviceState
from schemas.components import Thresholds
from schemas.device import Mechanism
from schemas.privacy import (
    DEFAULT_DAILY_BUDGET,
    Spend,
    charge,
    daily_epsilon,
    report_epsilon,
)
from tests.api.support import API, Fleet, problem_of
from tests.rollout.test_engine import report
from tests.signer.simulator import START

MECHANISM = Mechanism(name="discrete_laplace", epsilon=4.0, cap=1)
WINDOW_SECONDS = 70  # 86400 / 70 is not whole: a day holds ceil(1234.3) = 1235 windows


async def release_with(
    fleet: Fleet, thresholds: Thresholds | None, version: str
) -> tuple[str, str]:
    """Register a release whose thresholds component is ``thresholds`` (or none), made for
    the release's model; its digest and the model's."""
    manifest = fleet.sim.release(version)
    model = manifest.component(ComponentKind.MODEL)
    assert model is not None
    components = []
    for component in manifest.components:
        if component.kind is not ComponentKind.THRESHOLDS:
            components.append(component)
        elif thresholds is not None:
            data = (
                thresholds.model_copy(update={"model_sha256": model.sha256})
                .model_dump_json()
                .encode()
            )
            sha = fleet.sim.add_artifact(data)
            components.append(component.model_copy(update={"sha256": sha, "length": len(data)}))
    manifest = manifest.model_copy(update={"components": tuple(components)})
    await fleet.create_class()
    await fleet.upload_components(manifest)
    response = await fleet.register(fleet.sim.sign_release(manifest))
    assert response.status_code == 201, response.text
    return str(response.json()["digest"]), model.sha256


async def test_epsilon_per_report_per_day_and_the_budget(fleet: Fleet) -> None:
    thresholds = Thresholds.model_validate_json(packaged_thresholds()).model_copy(
        update={"privacy": MECHANISM, "window_seconds": WINDOW_SECONDS}
    )
    body, digest, model_sha256 = await account_of(fleet, thresholds, "1.0.0")

    sizes = thresholds.histogram_sizes()
    h = len(sizes)
    assert h == 7  # 4 input summaries, confidence, predicted, latency_us
    assert body["histograms"] == sizes
    assert body["mechanism"] == {"name": "discrete_laplace", "epsilon": 4.0, "cap": 1}
    assert body["window_seconds"] == WINDOW_SECONDS
    assert body["report_epsilon"] == report_epsilon(MECHANISM, h) == 4.0 * (h + 1) == 32.0
    assert body["reports_per_day"] == math.ceil(86_400 / WINDOW_SECONDS) == 1235
    assert body["daily_epsilon"] == daily_epsilon(MECHANISM, h, WINDOW_SECONDS) == 32.0 * 1235
    assert body["daily_budget"] == thresholds.daily_budget == DEFAULT_DAILY_BUDGET == 768.0
    assert body["within_budget"] is False
    assert body["reports_within_budget"] == 24
    assert body["model_sha256"] == model_sha256
    assert body["release_digest"] == digest


async def test_the_budget_shown_is_the_one_the_thresholds_set(fleet: Fleet) -> None:
    thresholds = Thresholds.model_validate_json(packaged_thresholds()).model_copy(
        update={"privacy": MECHANISM, "window_seconds": 3600, "daily_budget": 32.0 * 24}
    )
    body, _, _ = await account_of(fleet, thresholds, "1.0.0")
    assert body["daily_budget"] == 768.0
    assert body["within_budget"] is True
    assert body["reports_within_budget"] == body["reports_per_day"] == 24
    tighter = thresholds.model_copy(update={"daily_budget": 100.0})
    body, _, _ = await account_of(fleet, tighter, "1.0.1")
    assert body["daily_budget"] == 100.0
    assert body["reports_within_budget"] == 3  # floor(100 / 32)


async def account_of(
    fleet: Fleet, thresholds: Thresholds, version: str
) -> tuple[dict[str, Any], str, str]:
    """The privacy endpoint's body for a new release shipping ``thresholds``."""
    digest, model_sha256 = await release_with(fleet, thresholds, version)
    response = await fleet.client.get(
        f"{API}/telemetry/privacy", params={"release": digest}, headers=fleet.auth(Role.VIEWER)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body, digest, model_sha256


def test_reports_within_budget_agrees_with_the_device_ledger() -> None:
    """What the API says a budget lets through is what ``charge`` lets through."""
    for epsilon, budget in [(24.0, 100.0), (0.1, 1.0), (3.0, 3.0), (5.0, 4.0), (0.3, 0.9)]:
        ledger: tuple[Spend, ...] = ()
        sent = 0
        for _ in range(50):
            try:
                ledger = charge(ledger, Spend(START, epsilon), budget=budget)
            except ValueError:
                break
            sent += 1
        assert reports_within_budget(epsilon, 50, budget) == sent, (epsilon, budget)
    assert reports_within_budget(math.inf, 1440, DEFAULT_DAILY_BUDGET) == 0


async def test_unknown_release_and_release_without_thresholds_are_404(fleet: Fleet) -> None:
    unknown = hashlib.sha256(b"nothing").hexdigest()
    without, _ = await release_with(fleet, None, "2.0.0")
    for digest in (unknown, without):
        response = await fleet.client.get(
            f"{API}/telemetry/privacy", params={"release": digest}, headers=fleet.auth(Role.VIEWER)
        )
        assert response.status_code == 404, response.text
        assert problem_of(response)["code"] == "not_found"


async def test_privacy_needs_a_token(fleet: Fleet) -> None:
    response = await fleet.client.get(f"{API}/telemetry/privacy", params={"release": "ab" * 32})
    assert response.status_code == 401


async def test_a_device_shows_what_it_can_spend_on_the_release_it_runs(fleet: Fleet) -> None:
    thresholds = Thresholds.model_validate_json(packaged_thresholds()).model_copy(
        update={"privacy": MECHANISM, "window_seconds": WINDOW_SECONDS}
    )
    digest, _ = await release_with(fleet, thresholds, "1.0.0")
    await fleet.enroll("dev-on-it", "dev-idle")
    report(fleet, ["dev-on-it"], digest, DeviceState.HEALTHY, START)
    viewer = fleet.auth(Role.VIEWER)

    on_it = await fleet.client.get(f"{API}/devices/dev-on-it/privacy", headers=viewer)
    assert on_it.status_code == 200, on_it.text
    body = on_it.json()
    assert body["running_release"] == digest == body["release"]["release_digest"]
    # reporting every 70 s window would cost 32 * 1235 a day; its ledger stops it at 768
    assert body["daily_epsilon_bound"] == min(32.0 * 1235, 768.0) == 768.0

    idle = (await fleet.client.get(f"{API}/devices/dev-idle/privacy", headers=viewer)).json()
    assert (idle["running_release"], idle["daily_epsilon_bound"], idle["release"]) == (
        None, 0.0, None
    )  # fmt: skip
    missing = await fleet.client.get(f"{API}/devices/nobody/privacy", headers=viewer)
    assert missing.status_code == 404
