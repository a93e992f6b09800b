"""The thresholds component a release ships next to its model, as canonical JSON.

Its model is :class:`schemas.components.Thresholds`, in the wire contract rather than
here because devices parse it and a device never imports the server. This module fills
it in from a trained model and its reference bins, and reads it back strictly.
"""

from __future__ import annotations

import hashlib

from fleet.toolkit.sensors import Task
from schemas.canonical import model_bytes
from schemas.components import (
    DEFAULT_LATENCY_BINS,
    AnomalyDecision,
    ClassifierDecision,
    HistogramBins,
    InputSummary,
    Thresholds,
    parse_component,
)
from schemas.device import DEFAULT_DAILY_BUDGET, Mechanism

__all__ = [
    "DEFAULT_PRIVACY",
    "DEFAULT_WINDOW_SECONDS",
    "load_thresholds",
    "make_thresholds",
    "thresholds_bytes",
]

# A moderate local epsilon (4-8, docs/telemetry.md §3) and a cap of one count per histogram per
# window: the least noise per count, and the only cap for which the drift detector's
# simulated null stays exact when devices differ (docs/telemetry.md §13).
DEFAULT_PRIVACY = Mechanism(name="discrete_laplace", epsilon=4.0, cap=1)
DEFAULT_WINDOW_SECONDS = 3600


def make_thresholds(
    model: bytes,
    task: Task,
    decision: float,
    *,
    inputs: dict[InputSummary, HistogramBins],
    output: HistogramBins,
    privacy: Mechanism = DEFAULT_PRIVACY,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
    latency: HistogramBins = DEFAULT_LATENCY_BINS,
    daily_budget: float = DEFAULT_DAILY_BUDGET,
) -> Thresholds:
    """``decision`` is the min confidence (gesture) or the anomaly score threshold.

    ``latency`` edges are fixed rather than chosen from the host's invoke times: the
    host is not the device, and latency is not a drift feature (the reference never
    holds it). ``daily_budget`` is the epsilon a day devices enforce (docs/telemetry.md §4).
    """
    rule = (
        AnomalyDecision(max_score=decision)
        if task is Task.VIBRATION
        else ClassifierDecision(min_confidence=decision)
    )
    return Thresholds(
        model_sha256=hashlib.sha256(model).hexdigest(),
        labels=task.labels,
        decision=rule,
        inputs=inputs,
        output=output,
        privacy=privacy,
        window_seconds=window_seconds,
        latency=latency,
        daily_budget=daily_budget,
    )


def thresholds_bytes(thresholds: Thresholds) -> bytes:
    """The artifact's bytes: RFC 8785 JSON, so the same thresholds have one digest."""
    return model_bytes(thresholds)


def load_thresholds(data: bytes) -> Thresholds:
    """Parse as a device does; DocumentError on anything unknown, duplicated or oversize."""
    return parse_component(data, Thresholds)
