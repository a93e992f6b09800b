"""The operator's whole path through the API, on SQLite and on PostgreSQL.

class → bulk enroll → upload artifacts → register a release signed 2-of-3 offline →
assign → the director record is there, and a device accepts what the server signed.
"""

from __future__ import annotations

import pytest

from fleet.domain.records import Role
from schemas import Delivery, DirectorManifest, Envelope, ReleaseManifest, decode_payload
from schemas import Role as KeyRole
from signer.signing import verify_role
from tests.api.support import API, Fleet
from tests.signer.simulator import DEVICE_CLASS, START

BACKENDS = pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)


@BACKENDS
async def test_operator_flow_ends_in_a_manifest_a_device_accepts(fleet: Fleet) -> None:
    client, operator, viewer = fleet.client, fleet.auth(Role.OPERATOR), fleet.auth(Role.VIEWER)
    assert (await fleet.create_class()).status_code == 201
    enrolled = await fleet.enroll("dev-00001", "dev-00002", "dev-00003", tags=("site:lab",))
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json() == {
        "enrolled": 3,
        "ids": ["dev-00001", "dev-00002", "dev-00003"],
        "broker_logins": [],  # this server does not manage broker logins
    }

    manifest = fleet.sim.release("1.0.0")
    envelope = fleet.sim.sign_release(manifest, ["release-1", "release-3"])
    await fleet.upload_components(manifest)
    registered = await fleet.register(envelope)
    assert registered.status_code == 201, registered.text
    digest = registered.json()["digest"]

    assigned = await client.post(
        f"{API}/releases/{digest}/assign",
        json={"device_ids": ["dev-00001", "dev-00002"]},
        headers=operator,
    )
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["count"] == 2
    assert [a["sequence"] for a in assigned.json()["assignments"]] == [1, 1]
    assert fleet.queued == [1]

    direction = (await client.get(f"{API}/devices/dev-00001/director", headers=viewer)).json()
    assert (direction["sequence"], direction["release_digest"]) == (1, digest)
    assert direction["published"] is False
    director_envelope = Envelope.model_validate(direction["envelope"])
    root = fleet.context.root()
    assert verify_role(director_envelope, root, KeyRole.DIRECTOR) == {
        fleet.sim.keys("director-1").keyid
    }
    signed = decode_payload(director_envelope, DirectorManifest)
    assert (signed.device_id, signed.sequence, signed.release_digest) == ("dev-00001", 1, digest)

    release = (await client.get(f"{API}/releases/{digest}", headers=viewer)).json()
    served = Envelope.model_validate(release["envelope"])
    assert served.to_bytes() == envelope.to_bytes()
    device = fleet.sim.provision("dev-00001")
    accepted = device.receive(Delivery(director=director_envelope, release=served), START)
    assert accepted.release.version == "1.0.0"
    for component in accepted.release.components:
        download = await client.get(f"{API}/artifacts/{component.sha256}")
        device.download(component, [download.content])

    untouched = await client.get(f"{API}/devices/dev-00003/director", headers=viewer)
    assert untouched.status_code == 404


async def test_a_registered_release_shows_its_manifest(fleet: Fleet) -> None:
    await fleet.create_class()
    envelope, digest = await fleet.released("2.1.0")
    viewer = fleet.auth(Role.VIEWER)
    listed = (await fleet.client.get(f"{API}/releases", headers=viewer)).json()["items"]
    assert [(r["digest"], r["version"]) for r in listed] == [(digest, "2.1.0")]
    shown = (await fleet.client.get(f"{API}/releases/{digest}", headers=viewer)).json()
    manifest = ReleaseManifest.model_validate(shown["manifest"])
    assert manifest == decode_payload(envelope, ReleaseManifest)
    assert manifest.device_class == DEVICE_CLASS
    again = await fleet.register(envelope)
    assert (again.status_code, again.json()["digest"]) == (200, digest)
    other_class = await fleet.client.get(
        f"{API}/releases", params={"device_class": "other"}, headers=viewer
    )
    assert other_class.json()["items"] == []
