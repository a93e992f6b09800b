"""A device's field telemetry: histograms of one window, capped, noised, signed.

Per window a device runs its int8 model on a few sensor windows and counts, over the bin
edges its thresholds component ships, the input summaries, the predicted class and the
top-1 confidence (:meth:`OnDeviceModel.infer` gives each window's bins). At the window's
end it caps every histogram to ``C`` counts and adds OpenDP's discrete Laplace noise of
scale ``2C / epsilon`` (``schemas.privacy``: the server debiases with the same code),
charges ``H * epsilon`` to the day's budget — and sends nothing when the budget would be
passed — then signs a ``TelemetryReport`` with its own key under its next message counter
and publishes it on ``tf/d/{id}/telemetry`` (QoS 1). The raw windows, summaries and
un-noised counts never leave :class:`TelemetryRecorder`.

Field conditions (gain drift, offset, noise, class mix) belong to the world, not to the
device: the caller's :data:`WindowSource` applies them (``fleet.toolkit.sensors``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from device_sim.device import Device
from device_sim.inference import OnDeviceModel
from schemas import TelemetryReport
from schemas.device import Mechanism, TelemetryWindow
from schemas.privacy import (
    DEFAULT_DAILY_BUDGET,
    BudgetExceeded,
    NoiseSampler,
    Spend,
    charge,
    epsilon_spent,
    opendp_discrete_laplace,
    privatise,
    report_epsilon,
)

__all__ = [
    "DEFAULT_DAILY_BUDGET",
    "Publish",
    "TelemetryRecorder",
    "WindowSource",
    "report_window",
    "telemetry_topic",
    "window_start",
]

log = logging.getLogger(__name__)

WindowSource = Callable[[int], npt.NDArray[np.float32]]
"""``n -> (n, samples, 3)`` sensor windows as this device's sensor reports them."""
Publish = Callable[[str, bytes], Awaitable[None]]


def telemetry_topic(device_id: str) -> str:
    return f"tf/d/{device_id}/telemetry"


def window_start(now: datetime, seconds: int) -> datetime:
    """The start of the window ``now`` falls in: windows tile the epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    elapsed = (now - epoch) // timedelta(seconds=seconds)
    return epoch + timedelta(seconds=elapsed * seconds)


class TelemetryRecorder:
    """One device's telemetry for the model it runs; the ledger is its privacy budget."""

    def __init__(
        self,
        model: OnDeviceModel,
        *,
        rng: np.random.Generator,
        budget: float = DEFAULT_DAILY_BUDGET,
        noise: NoiseSampler = opendp_discrete_laplace,
    ) -> None:
        self._model = model
        self._rng = rng
        self._budget = budget
        self._noise = noise
        self._ledger: tuple[Spend, ...] = ()

    @property
    def mechanism(self) -> Mechanism:
        return self._model.thresholds.privacy

    @property
    def window_seconds(self) -> int:
        return self._model.thresholds.window_seconds

    def count(self, windows: npt.ArrayLike) -> dict[str, npt.NDArray[np.int64]]:
        """This window's raw histograms: never sent as such."""
        sizes = self._model.thresholds.histogram_sizes()
        counts = {name: np.zeros(size, dtype=np.int64) for name, size in sizes.items()}
        for window in np.asarray(windows, dtype=np.float32):
            for name, index in self._model.infer(window).bins.items():
                counts[name][index] += 1
        return counts

    def report(
        self,
        windows: npt.ArrayLike,
        *,
        device_id: str,
        counter: int,
        start: datetime,
        release_digest: str,
        model_version: str,
    ) -> TelemetryReport | None:
        """The noised report of this window, or None when the day's budget is spent."""
        counts = self.count(windows)
        mechanism = self.mechanism
        try:
            self._ledger = charge(
                self._ledger,
                Spend(start, report_epsilon(mechanism, len(counts))),
                budget=self._budget,
            )
        except BudgetExceeded as exc:
            log.info("%s: telemetry withheld: %s", device_id, exc)
            return None
        noised = {
            name: tuple(int(c) for c in privatise(raw, mechanism, self._rng, self._noise))
            for name, raw in counts.items()
        }
        return TelemetryReport(
            device_id=device_id,
            counter=counter,
            window=TelemetryWindow(start=start, seconds=self.window_seconds),
            release_digest=release_digest,
            model_version=model_version,
            mechanism=mechanism,
            histograms=noised,
        )

    def spent(self, day: datetime) -> float:
        """Epsilon charged to ``day`` (UTC) so far."""
        return epsilon_spent(self._ledger, day.date())


def _model_version(device: Device) -> tuple[str, str] | None:
    running = device.state.running
    if running is None:
        return None
    versions = [c.version for c in running.components if c.kind == "model"]
    return (running.release_digest, versions[0]) if versions else None


async def report_window(
    device: Device,
    recorder: TelemetryRecorder,
    windows: npt.ArrayLike,
    *,
    start: datetime,
    publish: Publish,
) -> bool:
    """One window's report from ``device``, published; False when nothing was sent.

    Nothing is sent by a device that runs no model yet, or whose budget is spent.
    """
    running = _model_version(device)
    if running is None:
        return False
    report = recorder.report(
        windows,
        device_id=device.device_id,
        counter=device.state.counter + 1,
        start=start,
        release_digest=running[0],
        model_version=running[1],
    )
    if report is None:
        return False
    envelope = device.sign_telemetry(report)
    await publish(telemetry_topic(report.device_id), envelope.to_bytes())
    return True
