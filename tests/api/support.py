"""A real admin API over a migrated database, and the requests its tests repeat.

``Fleet`` bundles the app's client, its context and a ``RepositorySimulator`` whose
root the server pins: the simulator's release keys (2-of-3) sign what operators upload,
and its ``director-1`` key is the server's online director key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from fleet.api.app import create_api
from fleet.api.context import ApiContext
from fleet.domain.records import Role
from fleet.observability import Metrics
from fleet.services.director import Director
from fleet.services.tokens import create_token
from fleet.store import BlobStore, SqlUnitOfWork, make_session_factory
from schemas import Envelope, ReleaseManifest, RootMetadata, decode_payload
from tests.signer.simulator import DEVICE_CLASS, RepositorySimulator

__all__ = [
    "API",
    "TOKEN_NAMES",
    "Fleet",
    "build_context",
    "client_for",
    "device_entry",
    "problem_of",
    "seed_tokens",
]

API = "/api/v1"
MAX_ARTIFACT_BYTES = 256 * 1024
TOKEN_NAMES = {Role.ADMIN: "admin-ada", Role.OPERATOR: "op-olga", Role.VIEWER: "viewer-vic"}


@dataclass
class Fleet:
    client: httpx.AsyncClient
    context: ApiContext
    sim: RepositorySimulator
    secrets: dict[Role, str]
    blob_dir: Path
    queued: list[int] = field(default_factory=list)

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[role]}"}

    async def create_class(self, name: str = DEVICE_CLASS) -> httpx.Response:
        body = {"name": name, "ram_bytes": 262_144, "flash_bytes": 1_048_576, "cpu": "m4"}
        return await self.client.post(
            f"{API}/device-classes", json=body, headers=self.auth(Role.OPERATOR)
        )

    async def enroll(self, *ids: str, tags: tuple[str, ...] = ()) -> httpx.Response:
        body = [device_entry(i, tags=tags) for i in ids]
        return await self.client.post(
            f"{API}/devices/bulk", json=body, headers=self.auth(Role.OPERATOR)
        )

    async def upload(self, data: bytes, media_type: str = "application/octet-stream") -> Any:
        headers = {**self.auth(Role.OPERATOR), "Content-Type": media_type}
        return await self.client.post(f"{API}/artifacts", content=data, headers=headers)

    async def upload_components(self, manifest: ReleaseManifest) -> None:
        for component in manifest.components:
            response = await self.upload(self.sim.artifacts[component.sha256], component.media_type)
            assert response.status_code in (200, 201), response.text

    async def register(self, envelope: Envelope | bytes) -> httpx.Response:
        data = envelope if isinstance(envelope, bytes) else envelope.to_bytes()
        headers = {**self.auth(Role.OPERATOR), "Content-Type": "application/json"}
        return await self.client.post(f"{API}/releases", content=data, headers=headers)

    async def released(self, version: str = "1.0.0") -> tuple[Envelope, str]:
        """A signed release whose artifacts are uploaded and which is registered."""
        envelope = self.sim.sign_release(self.sim.release(version))
        await self.upload_components(decode_payload(envelope, ReleaseManifest))
        response = await self.register(envelope)
        assert response.status_code == 201, response.text
        return envelope, response.json()["digest"]


def device_entry(device_id: str, *, tags: tuple[str, ...] = ()) -> dict[str, Any]:
    """An entry of devices.json; the key is a stand-in (enrollment never verifies with it)."""
    public = hashlib.sha256(f"device key {device_id}".encode()).hexdigest()
    return {"id": device_id, "device_class": DEVICE_CLASS, "public_key": public, "tags": tags}


def build_context(
    engine: Engine, blob_dir: Path, sim: RepositorySimulator, *, now: datetime, queued: list[int]
) -> ApiContext:
    sessions = make_session_factory(engine)
    return ApiContext(
        new_uow=lambda: SqlUnitOfWork(sessions),
        blobs=BlobStore(blob_dir),
        director=Director(key=sim.keys("director-1"), ttl=timedelta(hours=1)),
        # The newest root, as the server's root store gives: a test may publish another.
        root=lambda: decode_payload(sim.roots[-1], RootMetadata),
        roots=lambda: tuple(sim.roots),
        clock=lambda: now,
        metrics=Metrics(),
        max_artifact_bytes=MAX_ARTIFACT_BYTES,
        on_directions_queued=lambda: queued.append(1),
    )


def seed_tokens(context: ApiContext, now: datetime) -> dict[Role, str]:
    secrets = {}
    for role, name in TOKEN_NAMES.items():
        secret, _ = create_token(context.new_uow(), name=name, role=role, actor="test", now=now)
        secrets[role] = secret
    return secrets


def client_for(context: ApiContext) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_api(context))
    return httpx.AsyncClient(transport=transport, base_url="http://fleet.test")


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem document, after checking it is one."""
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body
