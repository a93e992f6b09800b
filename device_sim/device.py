"""A simulated device's update logic: receive, accept, download, install, boot, confirm.

Trust decisions are not made here: ``signer.acceptance.accept_update`` accepts or refuses
a Delivery and ``signer.artifacts.ArtifactVerifier`` accepts or refuses bytes. This class
only fetches (through an injected ``ArtifactFetcher``), stores (``StateStore``, ``Flash``)
and reports (through an injected ``StatusSink``). It opens no sockets; time, randomness
and faults are injected.

Every step that must survive a power cut is persisted before it is acted on or reported:

1. accept → save the new trust state and the pending update, report ``notified``;
2. download and verify into the download area (resumable; nothing to persist);
3. forget the inactive slot, save, write it, save its new contents (``installing``);
4. save "boot the new slot, on trial", report ``rebooting``;
5. boot and health check → save the raised floors and clear the trial (``healthy``), or
   save "boot the old slot" (``rolled_back``).

A restart (``start``) resumes a pending update, and a device that finds itself on an
unconfirmed trial slot returns to the old one, as an A/B bootloader would.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from device_sim.errors import ArtifactUnavailable, DownloadFailed, PowerLoss
from device_sim.faults import Faults, in_share
from device_sim.flash import ArtifactRef, Flash, verify_file
from device_sim.ports import ArtifactFetcher, Clock, StatusSink
from device_sim.state import (
    LastStatus,
    PendingUpdate,
    PersistentState,
    Slot,
    SlotName,
    StateStore,
    other_slot,
)
from device_sim.wire import parse_delivery, signed_status
from schemas import (
    Action,
    ComponentVersion,
    DeviceState,
    DirectorManifest,
    Envelope,
    ReleaseManifest,
    RootMetadata,
    StatusReport,
    TelemetryReport,
    decode_payload,
)
from schemas.errors import DocumentError
from signer.acceptance import accept_update, commit_installed, payload_digest
from signer.constraints import DeviceCapabilities
from signer.errors import ArtifactRefusal, Refusal
from signer.keys import SigningKey
from signer.signing import sign_model

__all__ = [
    "BOOT_FAILED",
    "FACTORY_CAPABILITIES",
    "HEALTH_CHECK_FAILED",
    "UNCONFIRMED_BOOT",
    "Device",
    "artifacts_of",
    "components_of",
]

log = logging.getLogger(__name__)

BOOT_FAILED = "boot_failed"
HEALTH_CHECK_FAILED = "health_check_failed"
UNCONFIRMED_BOOT = "unconfirmed_boot"
DETAIL_MAX = 256

FACTORY_CAPABILITIES = DeviceCapabilities(firmware_version="1.0.0")
"""A simulated device as it leaves the factory: firmware 1.0.0, and no RAM, flash or op
resolver declared (so only ``min_firmware_version`` is checked unless told more)."""


def artifacts_of(release: ReleaseManifest, director: DirectorManifest) -> tuple[ArtifactRef, ...]:
    refs = [ArtifactRef(c.kind.value, c.sha256, c.length) for c in release.components]
    if director.calibration is not None:
        calibration = director.calibration
        refs.append(ArtifactRef("calibration", calibration.sha256, calibration.length))
    return tuple(refs)


def components_of(
    release: ReleaseManifest, director: DirectorManifest
) -> tuple[ComponentVersion, ...]:
    versions = [
        ComponentVersion(kind=c.kind.value, version=c.version, security_version=c.security_version)
        for c in release.components
    ]
    if director.calibration is not None:
        version = str(director.calibration.version)
        versions.append(ComponentVersion(kind="calibration", version=version, security_version=0))
    return tuple(versions)


def _root_envelope(
    current: Envelope, trusted: RootMetadata, offered: tuple[Envelope, ...]
) -> Envelope:
    """The envelope of the root ``accept_update`` ended up trusting, to persist it."""
    for envelope in reversed(offered):
        try:
            if decode_payload(envelope, RootMetadata) == trusted:
                return envelope
        except DocumentError:
            continue
    return current


# Pauses (seconds, jittered ±50 %) before retrying a download that failed for a transient
# reason; a real device would use minutes, the simulator keeps tests short.
DOWNLOAD_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)


class Device:
    def __init__(
        self,
        *,
        key: SigningKey,
        store: StateStore,
        flash: Flash,
        fetcher: ArtifactFetcher,
        sink: StatusSink,
        clock: Clock,
        rng: random.Random,
        faults: Faults | None = None,
        retry_delays: tuple[float, ...] = DOWNLOAD_RETRY_DELAYS,
        on_boot: Callable[[], None] | None = None,
        capabilities: DeviceCapabilities = FACTORY_CAPABILITIES,
    ) -> None:
        # What this hardware offers a release; the firmware version is the factory one
        # until a release with a firmware component runs (``_offers``).
        self._capabilities = capabilities
        # Told of every boot, power-on or into a new slot: telemetry's reboot counter
        # (``TelemetryRecorder.note_boot``), an indicator, so a boot told twice is harmless.
        self._on_boot = on_boot or (lambda: None)
        self._retry_delays = retry_delays
        self._key = key
        self._store = store
        self._flash = flash
        self._fetcher = fetcher
        self._sink = sink
        self._clock = clock
        self._rng = rng
        self._faults = faults or Faults()
        self._state = store.load()

    @property
    def state(self) -> PersistentState:
        return self._state

    @property
    def device_id(self) -> str:
        return self._state.device_id

    async def start(self) -> None:
        """Power-on: undo an unconfirmed trial boot, resume a pending update, or report."""
        self._on_boot()
        if self._state.trial:
            pending = self._state.pending
            digest = pending.release_digest if pending else self._state.running_digest
            await self._revert(digest, UNCONFIRMED_BOOT, "reset before the new image confirmed")
        elif self._state.pending is not None:
            log.info(
                "%s: resuming update to %.12s", self.device_id, self._state.pending.release_digest
            )
            await self._run(self._state.pending)
        else:
            last = self._state.last_status
            await self._report(
                last.state, release_digest=last.release_digest, error_code=last.error_code
            )

    async def on_desired(self, payload: bytes) -> None:
        """Handle one ``desired`` message; refusals are reported and change nothing."""
        try:
            delivery = parse_delivery(payload)
        except DocumentError as exc:
            await self._refuse(exc.code, str(exc))
            return
        director_digest = payload_digest(delivery.director)
        if director_digest == self._state.last_director_digest:
            log.debug("%s: delivery already accepted; ignoring the redelivery", self.device_id)
            return
        try:
            accepted = accept_update(
                self._state.trust(), delivery, self._clock(), device=self._offers()
            )
        except Refusal as exc:
            await self._refuse(exc.code, str(exc))
            return
        pending = PendingUpdate(
            director=delivery.director,
            release=delivery.release,
            release_digest=accepted.release_digest,
            sequence=accepted.director.sequence,
        )
        log.info("%s: accepted sequence %d", self.device_id, pending.sequence)
        await self._report(
            DeviceState.NOTIFIED,
            pending=pending,
            changes={
                "root": _root_envelope(self._state.root, accepted.state.root, delivery.roots),
                "last_sequence": accepted.state.last_sequence,
                "floors": dict(accepted.state.floors),
                "last_director_digest": director_digest,
                "pending": pending,
            },
        )
        await self._run(pending)

    # -- the update, step by step --------------------------------------------------------

    async def _run(self, pending: PendingUpdate) -> None:
        release = decode_payload(pending.release, ReleaseManifest)
        director = decode_payload(pending.director, DirectorManifest)
        if pending.release_digest == self._state.running_digest:
            await self._confirm(pending, release)
            return
        artifacts = artifacts_of(release, director)
        try:
            await self._download_with_retries(pending, artifacts)
            await self._verify(pending, artifacts)
        except (ArtifactRefusal, DownloadFailed) as exc:
            log.warning(
                "%s: update to %.12s failed: %s", self.device_id, pending.release_digest, exc
            )
            self._flash.clear_downloads()
            await self._report(
                DeviceState.FAILED,
                pending=pending,
                error_code=exc.code,
                detail=str(exc),
                final=True,
            )
            return
        target = await self._install(pending, artifacts, release, director)
        await self._boot(pending, artifacts, release, target)

    async def _download_with_retries(
        self, pending: PendingUpdate, artifacts: tuple[ArtifactRef, ...]
    ) -> None:
        """A transient failure (server restarting, link down) is retried with growing
        pauses, keeping what was downloaded; a missing artifact is not."""
        for delay in (*self._retry_delays, None):
            try:
                await self._download(pending, artifacts)
                return
            except ArtifactUnavailable:
                raise
            except DownloadFailed as exc:
                if delay is None:
                    raise
                log.info("%s: %s; retrying in %.1f s", self.device_id, exc, delay)
                await asyncio.sleep(delay * (0.5 + self._rng.random()))

    async def _download(self, pending: PendingUpdate, artifacts: tuple[ArtifactRef, ...]) -> None:
        total = sum(artifact.length for artifact in artifacts) or 1
        done = 0
        await self._report(DeviceState.DOWNLOADING, pending=pending, progress=0.0)
        for artifact in artifacts:
            done += artifact.length
            if self._flash.has_download(artifact):  # kept from before a restart
                continue
            await self._fetcher.fetch(artifact, self._flash.download_path(artifact))
            if self._roll(self._faults.corrupt_download):
                self._flash.flip_byte(artifact, self._rng)
            await self._report(DeviceState.DOWNLOADING, pending=pending, progress=done / total)
        await self._report(DeviceState.DOWNLOADED, pending=pending, progress=1.0)

    async def _verify(self, pending: PendingUpdate, artifacts: tuple[ArtifactRef, ...]) -> None:
        await self._report(DeviceState.VERIFYING, pending=pending)
        for artifact in artifacts:
            verify_file(self._flash.download_path(artifact), artifact)

    async def _install(
        self,
        pending: PendingUpdate,
        artifacts: tuple[ArtifactRef, ...],
        release: ReleaseManifest,
        director: DirectorManifest,
    ) -> SlotName:
        target = self._state.inactive_slot
        others = {name: slot for name, slot in self._state.slots.items() if name != target}
        await self._report(DeviceState.INSTALLING, pending=pending, changes={"slots": others})
        self._flash.erase_slot(target)
        cut_at = len(artifacts) // 2 if self._roll(self._faults.power_loss_during_install) else None
        for index, artifact in enumerate(artifacts):
            if index == cut_at:
                self._flash.write_to_slot(target, artifact, limit=artifact.length // 2)
                raise PowerLoss(f"{self.device_id}: power lost writing {artifact.name} to {target}")
            self._flash.write_to_slot(target, artifact)
            await asyncio.sleep(0)
        calibration = director.calibration
        slot = Slot(
            release_digest=pending.release_digest,
            release=pending.release,
            components=components_of(release, director),
            calibration_digest=calibration.sha256 if calibration else None,
        )
        self._save({"slots": {**others, target: slot}})
        return target

    async def _boot(
        self,
        pending: PendingUpdate,
        artifacts: tuple[ArtifactRef, ...],
        release: ReleaseManifest,
        target: SlotName,
    ) -> None:
        changes = {"active_slot": target, "trial": True}
        await self._report(DeviceState.REBOOTING, pending=pending, changes=changes)
        self._on_boot()
        # A bad release: a rollback returns to an image that booted here before.
        installing = decode_payload(pending.director, DirectorManifest).action is Action.INSTALL
        share = self._faults.fail_boot_share if installing else 0.0
        bad = in_share(share, self.device_id, pending.release_digest)
        if bad or not self._image_boots(target, artifacts):
            await self._revert(pending.release_digest, BOOT_FAILED, f"slot {target} did not boot")
        elif self._roll(self._faults.health_check_failure):
            detail = f"slot {target} failed its post-boot health check"
            await self._revert(pending.release_digest, HEALTH_CHECK_FAILED, detail)
        else:
            await self._confirm(pending, release)

    def _image_boots(self, slot: SlotName, artifacts: tuple[ArtifactRef, ...]) -> bool:
        try:
            for artifact in artifacts:
                verify_file(self._flash.slot_file(slot, artifact), artifact)
        except (ArtifactRefusal, OSError) as exc:
            log.warning("%s: slot %s holds a broken image: %s", self.device_id, slot, exc)
            return False
        return not self._roll(self._faults.fail_boot_probability)

    async def _confirm(self, pending: PendingUpdate, release: ReleaseManifest) -> None:
        trust = commit_installed(self._state.trust(), release)
        changes = {"floors": dict(trust.floors), "trial": False}
        await self._report(DeviceState.HEALTHY, pending=pending, changes=changes, final=True)
        self._flash.clear_downloads()
        log.info("%s: healthy on %.12s", self.device_id, pending.release_digest)

    async def _revert(self, release_digest: str | None, code: str, detail: str) -> None:
        back = other_slot(self._state.active_slot)
        log.warning("%s: %s; back to slot %s", self.device_id, detail, back)
        await self._report(
            DeviceState.ROLLED_BACK,
            release_digest=release_digest,
            error_code=code,
            detail=detail,
            changes={"active_slot": back, "trial": False},
            final=True,
        )
        self._flash.clear_downloads()

    async def _refuse(self, code: str, detail: str) -> None:
        log.warning("%s: refused a delivery (%s): %s", self.device_id, code, detail)
        await self._report(DeviceState.REFUSED, error_code=code, detail=detail)

    # -- persistence and reports --------------------------------------------------------

    def _offers(self) -> DeviceCapabilities:
        firmware = next((c for c in self._running_components() if c.kind == "firmware"), None)
        version = firmware.version if firmware else self._capabilities.firmware_version
        return replace(self._capabilities, firmware_version=version)

    def _running_components(self) -> tuple[ComponentVersion, ...]:
        """What the active slot runs; a device always reports its firmware, so a slot
        without a firmware component (or no slot yet) runs the factory image."""
        running = self._state.running
        components = running.components if running else ()
        factory = self._capabilities.firmware_version
        if factory is None or any(c.kind == "firmware" for c in components):
            return components
        return (ComponentVersion(kind="firmware", version=factory, security_version=0), *components)

    def sign_telemetry(self, report: TelemetryReport) -> Envelope:
        """Persist the report's counter, then sign it: status and telemetry share it."""
        if report.device_id != self.device_id or report.counter != self._state.counter + 1:
            raise ValueError("a telemetry report must carry this device's next counter")
        self._save({"counter": report.counter})
        return sign_model(report, [self._key])

    def _roll(self, probability: float) -> bool:
        return probability > 0.0 and self._rng.random() < probability

    def _save(self, changes: Mapping[str, Any]) -> None:
        state = self._state.model_copy(update=dict(changes))
        self._store.save(state)
        self._state = state

    async def _report(
        self,
        state: DeviceState,
        *,
        pending: PendingUpdate | None = None,
        release_digest: str | None = None,
        progress: float | None = None,
        error_code: str | None = None,
        detail: str | None = None,
        changes: Mapping[str, Any] | None = None,
        final: bool = False,
    ) -> None:
        """Persist ``changes`` and the next counter in one write, then send the report.

        ``final`` ends the pending update and records ``state`` as the one to report again
        after a restart.
        """
        if pending is not None:
            release_digest = pending.release_digest
        updates = dict(changes or {})
        updates["counter"] = self._state.counter + 1
        if final:
            updates["pending"] = None
            updates["last_status"] = LastStatus(
                state=state, release_digest=release_digest, error_code=error_code
            )
        self._save(updates)
        running = self._state.running
        report = StatusReport(
            device_id=self.device_id,
            counter=self._state.counter,
            sent=self._clock(),
            state=state,
            release_digest=release_digest,
            running_release_digest=running.release_digest if running else None,
            components=self._running_components(),
            director_sequence=pending.sequence if pending else None,
            progress=progress,
            error_code=error_code,
            detail=detail[:DETAIL_MAX] if detail else None,
        )
        await self._sink.send_status(report, signed_status(report, self._key))
