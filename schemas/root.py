"""Root metadata: the keys and t-of-n thresholds of every role, pinned on each device."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Literal, Self

from pydantic import Field, model_validator

from schemas.common import KeyId, PositiveCount, WireModel
from schemas.timestamps import Timestamp

__all__ = ["PublicKey", "Role", "RoleKeys", "RootMetadata"]


class Role(StrEnum):
    ROOT = "root"
    RELEASE = "release"
    DIRECTOR = "director"


class PublicKey(WireModel):
    keytype: Literal["ed25519"] = "ed25519"
    scheme: Literal["ed25519"] = "ed25519"
    public: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex of the raw 32-byte key")

    @property
    def keyid(self) -> str:
        """sha256 of the raw 32-byte public key, hex."""
        return hashlib.sha256(bytes.fromhex(self.public)).hexdigest()


class RoleKeys(WireModel):
    keyids: tuple[KeyId, ...] = Field(min_length=1)
    threshold: int = Field(ge=1)

    @model_validator(mode="after")
    def _threshold_reachable(self) -> Self:
        if len(set(self.keyids)) != len(self.keyids):
            raise ValueError("a role lists the same keyid twice")
        if self.threshold > len(self.keyids):
            raise ValueError(
                f"threshold {self.threshold} exceeds the {len(self.keyids)} keys of the role"
            )
        return self


class RootMetadata(WireModel):
    type: Literal["root"] = "root"
    spec_version: Literal["1"] = "1"
    version: PositiveCount
    expires: Timestamp
    keys: dict[KeyId, PublicKey]
    roles: dict[Role, RoleKeys]

    @model_validator(mode="after")
    def _roles_complete(self) -> Self:
        # A keyid must name exactly one key, or one key listed twice would count twice.
        for keyid, key in self.keys.items():
            if keyid != key.keyid:
                raise ValueError(f"keyid {keyid[:12]} is not the sha256 of its public key")
        missing = set(Role) - set(self.roles)
        if missing:
            raise ValueError(f"root lacks roles: {sorted(missing)}")
        for role, role_keys in self.roles.items():
            unknown = [k for k in role_keys.keyids if k not in self.keys]
            if unknown:
                raise ValueError(f"role {role.value} names keys not in 'keys': {unknown}")
        return self

    def role(self, role: Role) -> RoleKeys:
        return self.roles[role]
