"""Building root metadata from the operators' public keys, and how far its signing has got."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from schemas import Envelope, PublicKey, Role, RoleKeys, RootMetadata
from signer.errors import SignatureRefusal
from signer.fileio import InputError
from signer.keys import keyid_of
from signer.signing import verify_role

__all__ = ["RoleKeySet", "build_root", "root_signatures"]


@dataclass(frozen=True)
class RoleKeySet:
    role: Role
    keys: tuple[PublicKey, ...]
    threshold: int

    def keyids(self) -> tuple[str, ...]:
        return tuple(keyid_of(key) for key in self.keys)

    def check(self) -> None:
        """Refuse a role no device could ever satisfy, naming the CLI options involved."""
        option = f"--{self.role.value}"
        keyids = self.keyids()
        if not keyids:
            raise InputError(f"{option}-key: give at least one public key")
        if len(set(keyids)) != len(keyids):
            raise InputError(f"{option}-key: the same public key is given twice")
        if not 1 <= self.threshold <= len(keyids):
            raise InputError(
                f"{option}-threshold {self.threshold} is impossible with {len(keyids)} "
                f"{option}-key file(s); it must be between 1 and {len(keyids)}"
            )


def _check_director_is_separate(roles: Sequence[RoleKeySet]) -> None:
    # The director key lives on the online server; if it were also a root or release key,
    # a server compromise could sign releases or roots, which the design rules out.
    offline = {k for r in roles if r.role != Role.DIRECTOR for k in r.keyids()}
    for role in roles:
        if role.role == Role.DIRECTOR:
            shared = offline.intersection(role.keyids())
            if shared:
                raise InputError(
                    f"--director-key {sorted(shared)[0][:16]}… is also a root or release key; "
                    "the online server must never hold an offline key"
                )


def build_root(roles: Sequence[RoleKeySet], *, version: int, expires: datetime) -> RootMetadata:
    """Root metadata listing exactly the keys of ``roles``: a key left out is revoked."""
    for role in roles:
        role.check()
    _check_director_is_separate(roles)
    keys = {keyid_of(key): key for role in roles for key in role.keys}
    return RootMetadata(
        version=version,
        expires=expires,
        keys=keys,
        roles={r.role: RoleKeys(keyids=r.keyids(), threshold=r.threshold) for r in roles},
    )


def root_signatures(envelope: Envelope, root: RootMetadata) -> tuple[int, int]:
    """(valid signatures by ``root``'s root keys, threshold): progress of offline signing."""
    try:
        return len(verify_role(envelope, root, Role.ROOT)), root.role(Role.ROOT).threshold
    except SignatureRefusal as exc:
        return exc.valid, exc.threshold
