"""Released telemetry aggregates as the API shows them: cohort sums, never a device."""

from __future__ import annotations

import math
from datetime import datetime

from pydantic import Field

from fleet.api.models.common import ResponseModel
from fleet.domain.aggregation import Release
from fleet.services.drift import WindowDrift
from fleet.services.privacy_accounting import DevicePrivacy, PrivacyAccount

__all__ = [
    "AggregateList",
    "AggregatePublic",
    "CounterPublic",
    "DevicePrivacyPublic",
    "DriftReport",
    "HistogramPublic",
    "MechanismPublic",
    "PrivacyAccountPublic",
    "StreamPublic",
    "WindowDriftPublic",
]


class MechanismPublic(ResponseModel):
    name: str
    epsilon: float
    cap: int


class HistogramPublic(ResponseModel):
    counts: list[int]
    proportions: list[float]
    variance: list[float]


class CounterPublic(ResponseModel):
    count: int = Field(description="reporters with at least one such event, noised")
    share: float = Field(description="count / reporters; may fall outside [0, 1]")
    variance: float = Field(description="predicted error variance of count")


class AggregatePublic(ResponseModel):
    release_digest: str
    model_version: str
    window_start: datetime
    cohort: str
    reporters: int
    mechanism: MechanismPublic
    central_epsilon: float
    histograms: dict[str, HistogramPublic]
    counters: dict[str, CounterPublic] = Field(
        description="inference_errors, reboots: devices with at least one in the window"
    )

    @classmethod
    def from_release(cls, released: Release) -> AggregatePublic:
        key, mechanism = released.key, released.mechanism
        return cls(
            release_digest=key.release_digest,
            model_version=key.model_version,
            window_start=key.window_start,
            cohort=key.cohort,
            reporters=released.reporters,
            mechanism=MechanismPublic(
                name=mechanism.name, epsilon=mechanism.epsilon, cap=mechanism.cap
            ),
            central_epsilon=released.central_epsilon,
            histograms={
                name: HistogramPublic(
                    counts=list(h.counts),
                    proportions=list(h.proportions),
                    variance=list(h.variance),
                )
                for name, h in released.histograms.items()
            },
            counters={
                name: CounterPublic(count=c.count, share=c.share, variance=c.variance)
                for name, c in released.counters.items()
            },
        )


class AggregateList(ResponseModel):
    min_reporters: int
    items: list[AggregatePublic]


class StreamPublic(ResponseModel):
    histogram: str
    cohort: str
    windows: int
    statistic: float
    p_value: float
    n_eff: float
    judged: bool
    flagged: bool
    psi: float
    js_distance: float


class WindowDriftPublic(ResponseModel):
    window_start: datetime
    alert: bool  # this window's test rejects
    alert_open: bool  # the alert state after this window
    event: str | None  # opened | closed
    streams: list[StreamPublic]

    @classmethod
    def from_drift(cls, drift: WindowDrift) -> WindowDriftPublic:
        decision = drift.decision
        return cls(
            window_start=drift.window_start,
            alert=decision.alert,
            alert_open=drift.alert_open,
            event=drift.event.value if drift.event else None,
            streams=[
                StreamPublic(
                    histogram=t.stream.histogram,
                    cohort=t.stream.cohort,
                    windows=t.windows,
                    statistic=t.statistic,
                    p_value=t.p_value,
                    n_eff=t.n_eff,
                    judged=t.judged,
                    flagged=t.stream in decision.flagged,
                    psi=t.psi,
                    js_distance=t.js_distance,
                )
                for t in decision.tests
            ],
        )


class DriftReport(ResponseModel):
    release_digest: str
    windows: list[WindowDriftPublic]


def _finite(epsilon: float) -> float | None:
    return None if math.isinf(epsilon) else epsilon


class DevicePrivacyPublic(ResponseModel):
    """The most a device can spend on telemetry in a UTC day, on the release it runs."""

    device_id: str
    running_release: str | None
    daily_epsilon_bound: float | None = Field(
        description="min(daily_epsilon, daily_budget); null: no local noise (unbounded)"
    )
    release: PrivacyAccountPublic | None

    @classmethod
    def from_privacy(cls, privacy: DevicePrivacy) -> DevicePrivacyPublic:
        account = privacy.account
        return cls(
            device_id=privacy.device_id,
            running_release=account.release_digest if account else None,
            daily_epsilon_bound=_finite(privacy.daily_epsilon_bound),
            release=PrivacyAccountPublic.from_account(account) if account else None,
        )


class PrivacyAccountPublic(ResponseModel):
    """Epsilon a device spends on a release's telemetry (basic composition); null epsilon
    means no local noise (`none`): not locally private, so a device sends nothing."""

    release_digest: str
    model_sha256: str
    mechanism: MechanismPublic
    window_seconds: int
    histograms: dict[str, int]  # name -> bins, as Thresholds.histogram_sizes()
    report_epsilon: float | None  # (H + 1) * epsilon: H histograms and the counters
    reports_per_day: int  # ceil(86400 / window_seconds)
    daily_epsilon: float | None  # report_epsilon * reports_per_day
    daily_budget: float  # the budget devices enforce (the thresholds' daily_budget)
    within_budget: bool  # daily_epsilon <= daily_budget: every window is reported
    reports_within_budget: int  # reports a day the budget lets through

    @classmethod
    def from_account(cls, account: PrivacyAccount) -> PrivacyAccountPublic:
        thresholds = account.thresholds
        mechanism = thresholds.privacy
        return cls(
            release_digest=account.release_digest,
            model_sha256=thresholds.model_sha256,
            mechanism=MechanismPublic(
                name=mechanism.name, epsilon=mechanism.epsilon, cap=mechanism.cap
            ),
            window_seconds=thresholds.window_seconds,
            histograms=dict(account.histogram_sizes),
            report_epsilon=_finite(account.report_epsilon),
            reports_per_day=account.reports_per_day,
            daily_epsilon=_finite(account.daily_epsilon),
            daily_budget=account.daily_budget,
            within_budget=account.daily_epsilon <= account.daily_budget,
            reports_within_budget=account.reports_within_budget,
        )
