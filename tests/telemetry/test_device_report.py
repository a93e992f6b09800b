"""A device's telemetry report: the latency histogram, error and reboot counters, and
the daily privacy budget the device enforces over a ledger it keeps across models."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

pytest.importorskip("ai_edge_litert")

from device_sim.inference import Backend, Int8s, OnDeviceModel, histogram_bin
from device_sim.telemetry import PrivacyLedger, TelemetryRecorder
from fleet.toolkit.packaged import packaged_model, packaged_thresholds
from fleet.toolkit.sensors import Task, generate
from schemas import DocumentError, TelemetryReport
from schemas.components import (
    DEFAULT_LATENCY_BINS,
    LATENCY_HISTOGRAM,
    Thresholds,
    parse_component,
)
from schemas.device import Mechanism
from schemas.privacy import (
    COUNTERS,
    DEFAULT_DAILY_BUDGET,
    report_epsilon,
    simulated_discrete_laplace,
)

DAY = datetime(2026, 11, 23, tzinfo=UTC)
MINUTE = timedelta(seconds=60)
LAPLACE = Mechanism(name="discrete_laplace", epsilon=4.0, cap=1)
NONE = Mechanism(name="none", epsilon=1.0, cap=1)  # costs infinite epsilon: budget=inf


def model(mechanism: Mechanism = LAPLACE, window_seconds: int = 60) -> OnDeviceModel:
    thresholds = Thresholds.model_validate_json(packaged_thresholds()).model_copy(
        update={"privacy": mechanism, "window_seconds": window_seconds}
    )
    return OnDeviceModel(packaged_model(), thresholds, backend=Backend.LITERT)


def recorder(
    device: OnDeviceModel,
    seed: int = 0,
    *,
    ledger: PrivacyLedger | None = None,
    budget: float | None = None,
) -> TelemetryRecorder:
    """Seeded simulation of OpenDP's noise (the same law; OpenDP is tested in test_privacy)."""
    noise = simulated_discrete_laplace(np.random.default_rng(seed + 1))
    return TelemetryRecorder(
        device, rng=np.random.default_rng(seed), noise=noise, ledger=ledger, budget=budget
    )


def windows(count: int = 4, seed: int = 0) -> np.ndarray:
    return generate(Task.GESTURE, count, seed=seed).windows


def report(
    telemetry: TelemetryRecorder, start: datetime, batch: Iterable[npt.ArrayLike] | None = None
) -> TelemetryReport | None:
    return telemetry.report(
        windows() if batch is None else batch,
        device_id="dev-00001",
        counter=1,
        start=start,
        release_digest="ab" * 32,
        model_version="1.0.0",
    )


def test_old_thresholds_without_latency_or_budget_parse_with_the_defaults() -> None:
    data = packaged_thresholds()
    assert b"latency" not in data and b"daily_budget" not in data
    thresholds = parse_component(data, Thresholds)
    assert thresholds.latency == DEFAULT_LATENCY_BINS
    assert thresholds.daily_budget == DEFAULT_DAILY_BUDGET == 768.0
    assert thresholds.histogram_sizes()[LATENCY_HISTOGRAM] == len(DEFAULT_LATENCY_BINS.edges) + 1


@pytest.mark.parametrize("budget", [0, -1.0, 1e9])
def test_a_daily_budget_outside_its_range_is_refused(budget: float) -> None:
    value = json.loads(packaged_thresholds())
    value["daily_budget"] = budget
    with pytest.raises(DocumentError, match="daily_budget"):
        parse_component(json.dumps(value).encode(), Thresholds)


def test_the_latency_bin_is_the_real_invoke_time_in_microseconds() -> None:
    device = model()
    prediction = device.infer(windows(1)[0])
    assert prediction.latency_s > 0
    expected = histogram_bin(device.thresholds.latency, prediction.latency_s * 1e6)
    assert prediction.bins[LATENCY_HISTOGRAM] == expected

    runner = device._runner
    invoke = runner.invoke

    def slow(quantized: Int8s) -> Int8s:
        time.sleep(0.003)
        return invoke(quantized)

    runner.invoke = slow  # type: ignore[method-assign]
    slowed = device.infer(windows(1)[0])
    assert slowed.latency_s >= 0.003
    assert slowed.bins[LATENCY_HISTOGRAM] == histogram_bin(
        DEFAULT_LATENCY_BINS, 1e6 * slowed.latency_s
    )
    assert slowed.bins[LATENCY_HISTOGRAM] >= DEFAULT_LATENCY_BINS.edges.index(2_000) + 1


def test_a_failed_window_counts_an_error_and_enters_no_histogram() -> None:
    telemetry = recorder(model(NONE), budget=math.inf)
    good = windows(2)
    malformed = np.zeros((good.shape[1], 2), dtype=np.float32)  # two axes, not three
    tally = telemetry.count([good[0], malformed, good[1]])
    assert (tally.inferences, tally.inference_errors) == (2, 1)
    assert all(int(h.sum()) == 2 for h in tally.histograms.values())
    sent = report(telemetry, DAY, [good[0], malformed, good[1]])
    assert isinstance(sent, TelemetryReport)
    assert sent.counters == {"inference_errors": 1, "reboots": 0}
    assert LATENCY_HISTOGRAM in sent.histograms
    assert all(sum(h) == NONE.cap for h in sent.histograms.values())


def test_a_window_where_every_inference_failed_sends_nothing_and_spends_nothing() -> None:
    telemetry = recorder(model())
    assert report(telemetry, DAY, [np.zeros((4, 2), dtype=np.float32)]) is None
    assert telemetry.spent(DAY) == 0.0


def test_a_boot_is_reported_once_as_an_indicator() -> None:
    telemetry = recorder(model(NONE), budget=math.inf)
    telemetry.note_boot()
    telemetry.note_boot()
    first = report(telemetry, DAY)
    second = report(telemetry, DAY + MINUTE)
    assert isinstance(first, TelemetryReport) and isinstance(second, TelemetryReport)
    assert first.counters == {"inference_errors": 0, "reboots": 1}
    assert second.counters == {"inference_errors": 0, "reboots": 0}


def test_a_noised_report_carries_every_counter_and_charges_histograms_plus_one() -> None:
    device = model()
    telemetry = recorder(device)
    sent = report(telemetry, DAY)
    assert isinstance(sent, TelemetryReport)
    assert tuple(sent.counters) == COUNTERS
    histograms = len(device.thresholds.histogram_sizes())
    assert set(sent.histograms) == set(device.thresholds.histogram_sizes())
    assert telemetry.spent(DAY) == report_epsilon(LAPLACE, histograms) == 4.0 * (histograms + 1)


def sent_in_day(telemetry: TelemetryRecorder, day: datetime, windows_a_day: int) -> int:
    batch = windows(1)
    return sum(
        report(telemetry, day + index * MINUTE, batch) is not None for index in range(windows_a_day)
    )


def test_60_s_windows_stop_at_the_default_budget_until_the_next_utc_day() -> None:
    device = model(window_seconds=60)
    telemetry = recorder(device)
    per_report = report_epsilon(LAPLACE, len(device.thresholds.histogram_sizes()))
    assert per_report == 32.0  # 7 histograms and the counters at epsilon 4
    assert telemetry.budget == DEFAULT_DAILY_BUDGET
    assert sent_in_day(telemetry, DAY, 1440) == DEFAULT_DAILY_BUDGET // per_report == 24
    assert telemetry.spent(DAY) == 768.0
    assert report(telemetry, DAY + timedelta(days=1)) is not None


def test_the_ledger_is_the_devices_and_survives_a_model_swap() -> None:
    ledger = PrivacyLedger()
    first = recorder(model(), ledger=ledger)
    assert sent_in_day(first, DAY, 20) == 20
    swapped = recorder(model(), seed=7, ledger=first.ledger)
    assert sent_in_day(swapped, DAY + 20 * MINUTE, 20) == 4
    assert swapped.spent(DAY) == ledger.spent(DAY.date()) == 768.0
    fresh = recorder(model())  # a ledger of its own: a different device
    assert sent_in_day(fresh, DAY, 1) == 1


def test_an_explicit_budget_overrides_the_thresholds() -> None:
    telemetry = recorder(model(), budget=math.inf)
    assert sent_in_day(telemetry, DAY, 40) == 40


def test_a_report_names_only_known_counters_and_may_carry_none() -> None:
    sent = report(recorder(model()), DAY)
    assert isinstance(sent, TelemetryReport)
    body = sent.model_dump(mode="json")
    assert TelemetryReport.model_validate({**body, "counters": {}}).counters == {}
    with pytest.raises(ValidationError, match="unknown counters"):
        TelemetryReport.model_validate({**body, "counters": {"watchdog": 1}})
