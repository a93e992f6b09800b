"""What telemetry costs a device in privacy, from the thresholds component a release ships.

Nothing here reads telemetry: a device's spend follows from its mechanism alone, and
the server stores no device identifier with telemetry, so it accounts for the release,
not for a device. Basic composition (``schemas.privacy``, docs/telemetry.md §4): a report
of ``H`` histograms and the counters vector costs ``(H + 1) * epsilon``; a device
reporting every window of ``T`` seconds sends ``ceil(86400 / T)`` reports a UTC day. The
budget shown is the one the release's thresholds component sets (``daily_budget``), which
devices enforce (``device_sim.telemetry.TelemetryRecorder``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleet.services.errors import NotFoundError
from fleet.store import BlobStore, UnitOfWork
from schemas import ComponentKind, DocumentError
from schemas.components import THRESHOLDS_CAP, Thresholds, parse_component
from schemas.privacy import SECONDS_PER_DAY, daily_epsilon, report_epsilon

__all__ = [
    "DevicePrivacy",
    "PrivacyAccount",
    "device_privacy",
    "privacy_account",
    "reports_within_budget",
]


@dataclass(frozen=True)
class PrivacyAccount:
    release_digest: str
    thresholds: Thresholds
    histogram_sizes: dict[str, int]
    report_epsilon: float  # (H + 1) * epsilon: histograms and counters; inf without noise
    reports_per_day: int
    daily_epsilon: float  # inf without local noise
    daily_budget: float
    reports_within_budget: int


def reports_within_budget(epsilon: float, reports_per_day: int, budget: float) -> int:
    """How many of a day's reports ``charge`` lets through before refusing: at most
    ``budget / epsilon``, at most one per window; none without local noise."""
    if math.isinf(epsilon):
        return 0
    n = min(reports_per_day, math.floor(budget / epsilon))
    while n > 0 and math.fsum([epsilon] * n) > budget:
        n -= 1
    while n < reports_per_day and math.fsum([epsilon] * (n + 1)) <= budget:
        n += 1
    return n


@dataclass(frozen=True)
class DevicePrivacy:
    device_id: str
    account: PrivacyAccount | None  # of the release it runs; None: it runs none
    daily_epsilon_bound: float  # the most it can spend in a UTC day on that release


def device_privacy(uow: UnitOfWork, blobs: BlobStore, device_id: str) -> DevicePrivacy:
    """What a device can spend on telemetry per day, from the release it runs.

    An upper bound, not a measurement: the server keeps no record of which devices
    reported. A device reporting every window spends ``daily_epsilon``; its ledger stops
    it at ``daily_budget`` (a release swap mid-day keeps the day's spend), so the bound is
    the smaller. NotFoundError for an unknown device.
    """
    with uow:
        device = uow.devices.get(device_id)
    if device is None:
        raise NotFoundError(f"no device {device_id!r}")
    if device.running_release_digest is None:
        return DevicePrivacy(device_id, None, 0.0)
    account = privacy_account(uow, blobs, device.running_release_digest)
    bound = min(account.daily_epsilon, account.daily_budget)
    return DevicePrivacy(device_id, account, bound)


def privacy_account(uow: UnitOfWork, blobs: BlobStore, release_digest: str) -> PrivacyAccount:
    """The release's per-report and per-day epsilon; NotFoundError for an unknown release
    or one without a (readable) thresholds component."""
    with uow:
        release = uow.releases.get(release_digest)
    if release is None:
        raise NotFoundError(f"release {release_digest} is not registered")
    manifest = release.manifest()
    component = manifest.component(ComponentKind.THRESHOLDS)
    if component is None or not blobs.exists(component.sha256):
        raise NotFoundError(f"release {release_digest} ships no thresholds component")
    data = b"".join(blobs.open_range(component.sha256, 0, THRESHOLDS_CAP + 1))
    try:
        thresholds = parse_component(data, Thresholds)
    except DocumentError as exc:
        raise NotFoundError(
            f"release {release_digest} ships no readable thresholds component: {exc}"
        ) from exc
    sizes = thresholds.histogram_sizes()
    mechanism, window = thresholds.privacy, thresholds.window_seconds
    per_report = report_epsilon(mechanism, len(sizes))
    per_day = -(-SECONDS_PER_DAY // window)
    return PrivacyAccount(
        release_digest=release_digest,
        thresholds=thresholds,
        histogram_sizes=sizes,
        report_epsilon=per_report,
        reports_per_day=per_day,
        daily_epsilon=daily_epsilon(mechanism, len(sizes), window),
        daily_budget=thresholds.daily_budget,
        reports_within_budget=reports_within_budget(per_report, per_day, thresholds.daily_budget),
    )
