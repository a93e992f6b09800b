"""Every change leaves an audit entry naming the token that made it; the log is tailed
with a cursor."""

from __future__ import annotations

import pytest

from fleet.domain.records import Role
from tests.api.support import API, TOKEN_NAMES, Fleet

ADMIN, OPERATOR = TOKEN_NAMES[Role.ADMIN], TOKEN_NAMES[Role.OPERATOR]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
async def test_each_change_is_audited_with_the_token_name(fleet: Fleet) -> None:
    operator, admin = fleet.auth(Role.OPERATOR), fleet.auth(Role.ADMIN)
    await fleet.create_class()
    await fleet.enroll("dev-00001")
    await fleet.client.put(
        f"{API}/devices/dev-00001/tags", json={"tags": ["canary"]}, headers=operator
    )
    await fleet.client.post(
        f"{API}/devices/dev-00001/calibration",
        content=b"gain=1",
        headers=operator | {"Content-Type": "application/octet-stream"},
    )
    _, digest = await fleet.released()
    await fleet.client.post(
        f"{API}/releases/{digest}/assign", json={"device_ids": ["dev-00001"]}, headers=operator
    )
    await fleet.client.post(f"{API}/tokens", json={"name": "ci", "role": "viewer"}, headers=admin)
    await fleet.client.delete(f"{API}/tokens/ci", headers=admin)

    entries = (await fleet.client.get(f"{API}/audit", headers=fleet.auth(Role.VIEWER))).json()
    changes = [(e["action"], e["actor"]) for e in entries["items"] if e["actor"] != "test"]
    assert changes == [
        ("device_class.create", OPERATOR),
        ("device.enroll", OPERATOR),
        ("device.tags", OPERATOR),
        ("calibration.upload", OPERATOR),
        ("artifact.upload", OPERATOR),
        ("artifact.upload", OPERATOR),
        ("artifact.upload", OPERATOR),
        ("release.register", OPERATOR),
        ("release.assign", OPERATOR),
        ("token.create", ADMIN),
        ("token.revoke", ADMIN),
    ]
    assert entries["next_after"] is None


async def test_the_log_is_read_a_page_at_a_time_and_by_subject(fleet: Fleet) -> None:
    viewer = fleet.auth(Role.VIEWER)
    await fleet.create_class()
    await fleet.enroll("dev-00001")
    await fleet.client.put(
        f"{API}/devices/dev-00001/tags", json={"tags": ["a"]}, headers=fleet.auth(Role.OPERATOR)
    )
    everything = (await fleet.client.get(f"{API}/audit", headers=viewer)).json()["items"]
    seen, after = [], None
    while True:
        params = {"limit": 2} | ({} if after is None else {"after": after})
        page = (await fleet.client.get(f"{API}/audit", params=params, headers=viewer)).json()
        seen += page["items"]
        if (after := page["next_after"]) is None:
            break
    assert seen == everything
    about = await fleet.client.get(
        f"{API}/audit", params={"subject": "device:dev-00001"}, headers=viewer
    )
    assert [e["action"] for e in about.json()["items"]] == ["device.tags"]
