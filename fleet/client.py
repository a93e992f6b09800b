"""A small synchronous client for the admin API (demo, benchmarks, scripts)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx

__all__ = ["AdminClient", "ApiError"]


class ApiError(RuntimeError):
    def __init__(self, response: httpx.Response) -> None:
        try:
            problem = response.json()
        except ValueError:
            problem = {"code": "http_error", "detail": response.text[:200]}
        self.status = response.status_code
        self.code = str(problem.get("code", "http_error"))
        super().__init__(
            f"{response.request.method} {response.request.url.path}: "
            f"{self.status} {self.code}: {problem.get('detail', '')}"
        )


class AdminClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0) -> None:
        self._http = httpx.Client(
            base_url=f"{base_url.rstrip('/')}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any endpoint under /api/v1; the decoded JSON answer, or ``ApiError``."""
        return self._call(method, path, **kwargs)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(response)
        return response.json()

    def telemetry_drift(self, release_digest: str, *, history: int = 12) -> Any:
        params = {"release": release_digest, "history": history}
        return self._call("GET", "/telemetry/drift", params=params)

    def create_device_class(self, name: str, *, ram_bytes: int, flash_bytes: int) -> Any:
        body = {"name": name, "ram_bytes": ram_bytes, "flash_bytes": flash_bytes}
        return self._call("POST", "/device-classes", json=body)

    def enroll(self, enrollment_json: bytes) -> Any:
        """Enroll the devices of a ``fleet-sim keys`` ``devices.json``."""
        return self._call(
            "POST",
            "/devices/bulk",
            content=enrollment_json,
            headers={"Content-Type": "application/json"},
        )

    def upload_artifact(self, data: bytes, *, media_type: str) -> str:
        result = self._call(
            "POST", "/artifacts", content=data, headers={"Content-Type": media_type}
        )
        return str(result["sha256"])

    def model(self, sha256: str) -> Any:
        """The model card of an uploaded model, and its reference if registered."""
        return self._call("GET", f"/models/{sha256}")

    def register_model_reference(self, sha256: str, reference_json: bytes) -> Any:
        return self._call(
            "PUT",
            f"/models/{sha256}/reference",
            content=reference_json,
            headers={"Content-Type": "application/json"},
        )

    def register_release(self, envelope: bytes) -> str:
        result = self._call(
            "POST", "/releases", content=envelope, headers={"Content-Type": "application/json"}
        )
        return str(result["digest"])

    def assign(self, release_digest: str, device_ids: Sequence[str]) -> Any:
        body = {"device_ids": list(device_ids)}
        return self._call("POST", f"/releases/{release_digest}/assign", json=body)

    def revoke_device(self, device_id: str) -> Any:
        return self._call("POST", f"/devices/{device_id}/revoke")

    def new_broker_login(self, device_id: str) -> Any:
        return self._call("POST", f"/devices/{device_id}/broker-login")

    def new_coap_keys(self, device_id: str) -> Any:
        return self._call("POST", f"/devices/{device_id}/coap-keys")

    def device(self, device_id: str) -> Any:
        return self._call("GET", f"/devices/{device_id}")

    def history(self, device_id: str) -> Any:
        return self._call("GET", f"/devices/{device_id}/history")

    def devices(self, *, page: int = 1000) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page}
            if after:
                params["after"] = after
            result = self._call("GET", "/devices", params=params)
            yield from result["items"]
            after = result["next_after"]
            if not after:
                return

    # -- staged rollouts (docs/api.md) ------------------------------------------------

    def create_rollout(
        self,
        release_digest: str,
        plan: dict[str, Any],
        *,
        device_class: str,
        tags: Sequence[str] = (),
        current_release: str | None = None,
        rollout_id: str | None = None,
    ) -> Any:
        body: dict[str, Any] = {
            "release_digest": release_digest,
            "plan": plan,
            "target": {
                "device_class": device_class,
                "tags": list(tags),
                "current_release": current_release,
            },
        }
        if rollout_id is not None:
            body["id"] = rollout_id
        return self._call("POST", "/rollouts", json=body)

    def rollouts(self, *, active: bool = False) -> Any:
        return self._call("GET", "/rollouts", params={"active": active})["items"]

    def rollout(self, rollout_id: str) -> Any:
        return self._call("GET", f"/rollouts/{rollout_id}")

    def act_on_rollout(self, rollout_id: str, action: str) -> Any:
        """``approve``, ``pause``, ``resume``, ``abort`` or ``rollback``."""
        return self._call("POST", f"/rollouts/{rollout_id}/{action}")
