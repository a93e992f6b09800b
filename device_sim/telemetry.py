"""A device's field telemetry: histograms and counters of one window, capped, noised, signed.

Per window a device runs its int8 model on a few sensor windows and counts, over the bin
edges its thresholds component ships, the input summaries, the predicted class, the
top-1 confidence (or anomaly score) and the invoke latency (:meth:`OnDeviceModel.infer`
gives each window's bins). It also counts inference errors (a window ``infer`` raised
on, which enters no histogram) and boots (:meth:`TelemetryRecorder.note_boot`). At the
window's end it caps every histogram to ``C`` counts and adds OpenDP's discrete Laplace
noise of scale ``2C / epsilon``, clips each counter to an indicator and adds noise of
scale ``len(COUNTERS) / epsilon`` (``schemas.privacy``: the server debiases with the
same code), charges ``(H + 1) * epsilon`` to the device's :class:`PrivacyLedger` — and
sends nothing when the day's budget would be passed — then signs a ``TelemetryReport``
with its own key under its next message counter and publishes it on
``tf/d/{id}/telemetry`` (QoS 1). The raw windows, summaries, un-noised counts and raw
counters never leave :class:`TelemetryRecorder`.

A window in which every inference failed sends nothing: a report needs histograms (each
capped to ``C`` counts of real inferences), so its errors are lost to telemetry and the
server sees one reporter fewer.

Field conditions (gain drift, offset, noise, class mix) belong to the world, not to the
device: the caller's :data:`WindowSource` applies them (``fleet.toolkit.sensors``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import numpy.typing as npt

from device_sim.device import Device
from device_sim.inference import OnDeviceModel
from schemas import TelemetryReport
from schemas.device import Mechanism, TelemetryWindow
from schemas.privacy import (
    BudgetExceeded,
    Counts,
    NoiseSampler,
    Spend,
    charge,
    epsilon_spent,
    opendp_discrete_laplace,
    privatise,
    privatise_counters,
    report_epsilon,
)

__all__ = [
    "PrivacyLedger",
    "Publish",
    "TelemetryRecorder",
    "WindowCounts",
    "WindowSource",
    "report_window",
    "telemetry_topic",
    "window_start",
]

log = logging.getLogger(__name__)

WindowSource = Callable[[int], npt.NDArray[np.float32]]
"""``n -> (n, samples, 3)`` sensor windows as this device's sensor reports them."""
Publish = Callable[[str, bytes], Awaitable[None]]

# What a failed inference raises: a malformed window (ValueError, as ModelMismatch) or
# the interpreter failing (RuntimeError, as ArenaTooSmall). Anything else is our bug.
INFERENCE_ERRORS = (ValueError, RuntimeError)


def telemetry_topic(device_id: str) -> str:
    return f"tf/d/{device_id}/telemetry"


def window_start(now: datetime, seconds: int) -> datetime:
    """The start of the window ``now`` falls in: windows tile the epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    elapsed = (now - epoch) // timedelta(seconds=seconds)
    return epoch + timedelta(seconds=elapsed * seconds)


class PrivacyLedger:
    """A device's epsilon spend in the current UTC day (``schemas.privacy.charge``).

    The device owns one and hands it to every recorder it runs, so a device that swaps
    release mid-day keeps the day's spend.
    """

    def __init__(self) -> None:
        self._spends: tuple[Spend, ...] = ()

    def charge(self, spend: Spend, *, budget: float) -> None:
        """Record ``spend``, or raise BudgetExceeded and record nothing."""
        self._spends = charge(self._spends, spend, budget=budget)

    def spent(self, day: date) -> float:
        return epsilon_spent(self._spends, day)


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """One window's raw tallies: never sent as such."""

    histograms: dict[str, Counts]
    inferences: int
    inference_errors: int


class TelemetryRecorder:
    """One device's telemetry for the model it runs, charged to the device's ledger.

    ``budget`` defaults to the thresholds' ``daily_budget``; an explicit one is for
    simulations that compress days into seconds. Without ``ledger`` the recorder starts
    a ledger of its own (:attr:`ledger`), to hand to the next model's recorder.
    """

    def __init__(
        self,
        model: OnDeviceModel,
        *,
        rng: np.random.Generator,
        budget: float | None = None,
        noise: NoiseSampler = opendp_discrete_laplace,
        ledger: PrivacyLedger | None = None,
    ) -> None:
        self._model = model
        self._rng = rng
        self._budget = model.thresholds.daily_budget if budget is None else budget
        self._noise = noise
        self.ledger = ledger or PrivacyLedger()
        self._boots = 0

    @property
    def mechanism(self) -> Mechanism:
        return self._model.thresholds.privacy

    @property
    def window_seconds(self) -> int:
        return self._model.thresholds.window_seconds

    @property
    def budget(self) -> float:
        return self._budget

    def note_boot(self) -> None:
        """The device booted (power-on, or into a release): counted in the next report.

        ``Device(on_boot=...)`` calls it; call it on the recorder of the model the device
        booted into.
        """
        self._boots += 1

    def count(self, windows: Iterable[npt.ArrayLike]) -> WindowCounts:
        """This window's raw histograms and error count; a failed window counts only as
        an error."""
        sizes = self._model.thresholds.histogram_sizes()
        counts = {name: np.zeros(size, dtype=np.int64) for name, size in sizes.items()}
        inferences = errors = 0
        for window in windows:
            try:
                bins = self._model.infer(window).bins
            except INFERENCE_ERRORS as exc:
                log.debug("inference failed on a window: %s", exc)
                errors += 1
                continue
            inferences += 1
            for name, index in bins.items():
                counts[name][index] += 1
        return WindowCounts(counts, inferences, errors)

    def report(
        self,
        windows: Iterable[npt.ArrayLike],
        *,
        device_id: str,
        counter: int,
        start: datetime,
        release_digest: str,
        model_version: str,
    ) -> TelemetryReport | None:
        """The noised report of this window, or None when the day's budget is spent or
        no inference succeeded. Either way the window's boots and errors are consumed."""
        tally = self.count(windows)
        raw_counters = {"inference_errors": tally.inference_errors, "reboots": self._boots}
        self._boots = 0
        if tally.inferences == 0:
            log.info("%s: telemetry withheld: no inference succeeded in the window", device_id)
            return None
        mechanism = self.mechanism
        epsilon = report_epsilon(mechanism, len(tally.histograms))
        try:
            self.ledger.charge(Spend(start, epsilon), budget=self._budget)
        except BudgetExceeded as exc:
            log.info("%s: telemetry withheld: %s", device_id, exc)
            return None
        noised = {
            name: tuple(int(c) for c in privatise(raw, mechanism, self._rng, self._noise))
            for name, raw in tally.histograms.items()
        }
        return TelemetryReport(
            device_id=device_id,
            counter=counter,
            window=TelemetryWindow(start=start, seconds=self.window_seconds),
            release_digest=release_digest,
            model_version=model_version,
            mechanism=mechanism,
            histograms=noised,
            counters=privatise_counters(raw_counters, mechanism, self._noise),
        )

    def spent(self, day: datetime) -> float:
        """Epsilon charged to ``day`` (UTC) so far, by every recorder on this ledger."""
        return self.ledger.spent(day.date())


def _model_version(device: Device) -> tuple[str, str] | None:
    running = device.state.running
    if running is None:
        return None
    versions = [c.version for c in running.components if c.kind == "model"]
    return (running.release_digest, versions[0]) if versions else None


async def report_window(
    device: Device,
    recorder: TelemetryRecorder,
    windows: Iterable[npt.ArrayLike],
    *,
    start: datetime,
    publish: Publish,
) -> bool:
    """One window's report from ``device``, published; False when nothing was sent.

    Nothing is sent by a device that runs no model yet, whose budget is spent, or whose
    every inference in the window failed.
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
