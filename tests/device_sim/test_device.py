"""The device logic without sockets: a dict of blobs for a fetcher, a list for a sink."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from device_sim.device import FACTORY_CAPABILITIES, UNCONFIRMED_BOOT, Device
from device_sim.flash import ArtifactRef, Flash
from device_sim.state import StateStore, provision
from schemas import Constraints, DeviceState, Envelope, StatusReport
from signer.constraints import DeviceCapabilities
from signer.keys import SigningKey
from tests.device_sim.director import START, Director, Release


@dataclass
class Blobs:
    """An ``ArtifactFetcher`` serving from memory, counting what it was asked for."""

    blobs: dict[str, bytes]
    fetched: list[str] = field(default_factory=list)

    async def fetch(self, artifact: ArtifactRef, dest: Path) -> None:
        self.fetched.append(artifact.name)
        dest.write_bytes(self.blobs[artifact.sha256])


@dataclass
class Reports:
    reports: list[StatusReport] = field(default_factory=list)

    async def send_status(self, report: StatusReport, envelope: Envelope) -> None:
        self.reports.append(report)

    def states(self) -> list[str]:
        return [r.state.value for r in self.reports]


@dataclass
class Bench:
    director: Director
    store: StateStore
    fetcher: Blobs
    sink: Reports
    directory: Path

    def device(self, capabilities: DeviceCapabilities = FACTORY_CAPABILITIES) -> Device:
        return Device(
            key=SigningKey.generate(),
            store=self.store,
            flash=Flash(self.directory),
            fetcher=self.fetcher,
            sink=self.sink,
            clock=lambda: START,
            rng=random.Random(0),
            capabilities=capabilities,
        )


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    director = Director()
    store = StateStore(tmp_path / "state.json", fsync=False)
    provision(store, device_id="dev-1", device_class="nrf52840-kws", root=director.root)
    return Bench(director, store, Blobs({}), Reports(), tmp_path)


def _offer(bench: Bench, version: str) -> Release:
    release = bench.director.release(version)
    bench.fetcher.blobs.update(release.blobs)
    return release


async def test_an_update_walks_the_whole_lifecycle(bench: Bench) -> None:
    release = _offer(bench, "2.0.0")
    device = bench.device()
    await device.on_desired(bench.director.delivery("dev-1", release))
    assert bench.sink.states() == [
        "notified",
        *["downloading"] * 4,
        "downloaded",
        "verifying",
        "installing",
        "rebooting",
        "healthy",
    ]
    assert [r.counter for r in bench.sink.reports] == list(range(1, 11))
    assert bench.store.load().counter == 10


@pytest.mark.parametrize(
    ("constraints", "capabilities", "code"),
    [
        (Constraints(min_firmware_version="1.0.1"), FACTORY_CAPABILITIES, "firmware_too_old"),
        (
            Constraints(required_ops=("LSTM",)),
            DeviceCapabilities("1.0.0", ops=frozenset({"CONV_2D"})),
            "ops_unsupported",
        ),
        (
            Constraints(ram_bytes=262_145),
            DeviceCapabilities("1.0.0", ram_bytes=262_144),
            "ram_insufficient",
        ),
        (Constraints(), DeviceCapabilities("1.0.0", flash_bytes=4096), "flash_insufficient"),
    ],
)
async def test_a_release_whose_constraints_do_not_hold_is_refused_before_downloading(
    bench: Bench, constraints: Constraints, capabilities: DeviceCapabilities, code: str
) -> None:
    release = bench.director.release("2.0.0", constraints=constraints)
    bench.fetcher.blobs.update(release.blobs)
    device = bench.device(capabilities)
    before = bench.store.load()

    await device.on_desired(bench.director.delivery("dev-1", release))

    (report,) = bench.sink.reports
    assert (report.state, report.error_code) == (DeviceState.REFUSED, code)
    assert bench.fetcher.fetched == []
    after = bench.store.load()
    assert after.last_sequence == before.last_sequence == 0
    assert after.model_copy(update={"counter": 0, "last_status": before.last_status}) == before


async def test_a_device_reports_its_factory_firmware_and_then_the_installed_one(
    bench: Bench,
) -> None:
    device = bench.device(DeviceCapabilities("1.4.2"))
    await device.start()
    assert [(c.kind, c.version) for c in bench.sink.reports[-1].components] == [
        ("firmware", "1.4.2")
    ]
    release = bench.director.release("2.1.0", constraints=Constraints(min_firmware_version="1.4.0"))
    bench.fetcher.blobs.update(release.blobs)
    await device.on_desired(bench.director.delivery("dev-1", release))
    assert bench.sink.reports[-1].state == DeviceState.HEALTHY
    assert {c.kind: c.version for c in bench.sink.reports[-1].components}["firmware"] == "2.1.0"


async def test_the_boot_hook_hears_a_power_on_and_a_reboot_into_a_release(
    bench: Bench,
) -> None:
    boots: list[str] = []
    device = Device(
        key=SigningKey.generate(),
        store=bench.store,
        flash=Flash(bench.directory),
        fetcher=bench.fetcher,
        sink=bench.sink,
        clock=lambda: START,
        rng=random.Random(0),
        on_boot=lambda: boots.append(device.state.active_slot),
    )
    await device.start()
    assert boots == ["a"]
    await device.on_desired(bench.director.delivery("dev-1", _offer(bench, "2.0.0")))
    assert boots == ["a", "b"]


async def test_a_release_already_running_is_confirmed_without_downloading(bench: Bench) -> None:
    release = _offer(bench, "2.0.0")
    device = bench.device()
    await device.on_desired(bench.director.delivery("dev-1", release))
    bench.fetcher.fetched.clear()
    bench.sink.reports.clear()

    await device.on_desired(bench.director.delivery("dev-1", release))  # a new sequence
    assert bench.sink.states() == ["notified", "healthy"]
    assert bench.fetcher.fetched == []
    assert device.state.last_sequence == 2


async def test_power_on_in_an_unconfirmed_trial_returns_to_the_old_slot(bench: Bench) -> None:
    release = _offer(bench, "2.0.0")
    await bench.device().on_desired(bench.director.delivery("dev-1", release))
    # As if the power went after "rebooting" was saved and before the health check.
    bench.store.save(bench.store.load().model_copy(update={"trial": True}))

    device = bench.device()
    await device.start()
    last = bench.sink.reports[-1]
    assert last.state == DeviceState.ROLLED_BACK and last.error_code == UNCONFIRMED_BOOT
    assert device.state.active_slot == "a" and not device.state.trial


async def test_a_restart_reports_the_last_outcome_again(bench: Bench) -> None:
    release = _offer(bench, "2.0.0")
    await bench.device().on_desired(bench.director.delivery("dev-1", release))
    bench.sink.reports.clear()

    await bench.device().start()
    (again,) = bench.sink.reports
    assert again.state == DeviceState.HEALTHY
    assert again.release_digest == again.running_release_digest == release.digest


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"x" * (64 * 1024 + 1), "too_large"),
        (b'{"type": "delivery", "type": "delivery"}', "duplicate_key"),
        (b'{"type": "delivery"}', "malformed"),
        (b"\xff", "malformed"),
    ],
)
async def test_unusable_payloads_are_refused_before_any_check(
    bench: Bench, payload: bytes, code: str
) -> None:
    device = bench.device()
    before = bench.store.load()
    await device.on_desired(payload)
    (report,) = bench.sink.reports
    assert report.state == DeviceState.REFUSED and report.error_code == code
    assert bench.store.load().model_dump(exclude={"counter"}) == before.model_dump(
        exclude={"counter"}
    )


async def test_a_delivery_for_another_device_is_refused(bench: Bench) -> None:
    release = _offer(bench, "2.0.0")
    await bench.device().on_desired(bench.director.delivery("dev-2", release))
    assert bench.sink.reports[-1].error_code == "wrong_device"
    assert bench.fetcher.fetched == []


async def test_an_expired_director_manifest_is_refused(bench: Bench) -> None:
    release = _offer(bench, "2.0.0")
    bench.director.now = START - timedelta(hours=2)
    await bench.device().on_desired(bench.director.delivery("dev-1", release))
    assert bench.sink.reports[-1].error_code == "director_expired"


async def test_a_tampered_release_is_refused(bench: Bench) -> None:
    release = _offer(bench, "2.0.0")
    payload = json.loads(bench.director.delivery("dev-1", release))
    payload["release"]["payload"] = bench.director.release("6.6.6").envelope.payload
    await bench.device().on_desired(json.dumps(payload).encode())
    assert bench.sink.reports[-1].error_code == "signature_invalid"
    assert bench.store.load().last_sequence == 0


async def test_a_newer_root_in_the_delivery_is_pinned_once_accepted(bench: Bench) -> None:
    release = _offer(bench, "2.0.0")
    root_v2 = bench.director.next_root()
    payload = bench.director.delivery("dev-1", release, roots=(root_v2,))
    await bench.device().on_desired(payload)
    assert bench.sink.reports[-1].state == DeviceState.HEALTHY
    assert bench.store.load().root == root_v2
    assert bench.store.load().trust().root.version == 2
