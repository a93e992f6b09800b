"""How ``fleet-sign`` shows documents: rich renderables built from verified or decoded models.

Builds renderables only; the CLI decides which console they go to.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from schemas import (
    Envelope,
    ReleaseManifest,
    Role,
    RootMetadata,
    format_timestamp,
    strict_loads,
)
from schemas.dsse import DEFAULT_ENVELOPE_CAP, ENVELOPE_CAP
from signer.acceptance import payload_digest
from signer.check import VerifiedRelease, VerifiedRoot

__all__ = [
    "envelope_view",
    "release_view",
    "root_view",
    "verified_view",
]


def _short(keyid: str) -> str:
    return f"{keyid[:16]}…"


def _signed_by(role: Role, root: RootMetadata, keyids: Iterable[str]) -> Text:
    signers = sorted(keyids)
    heading = f"signed by {len(signers)} {role.value} key(s), {root.role(role).threshold} needed:"
    return Text("\n  ".join([heading, *signers]))


def _components_table(release: ReleaseManifest) -> Table:
    table = Table("kind", "name", "version", "security", "length", "sha256", title="components")
    for c in release.components:
        security, length = str(c.security_version), str(c.length)
        table.add_row(c.kind.value, c.name, c.version, security, length, _short(c.sha256))
    return table


def release_view(release: ReleaseManifest, digest: str) -> RenderableType:
    heading = Text.assemble(
        ("release ", "bold"),
        f"{release.name} {release.version} for device class {release.device_class}",
        f"\ncreated {format_timestamp(release.created)}, digest {digest}",
    )
    return Group(heading, _components_table(release))


def root_view(root: RootMetadata) -> RenderableType:
    table = Table("role", "threshold", title=f"root v{root.version}")
    table.add_column("keyids", overflow="fold")
    for role, keys in root.roles.items():
        table.add_row(role.value, f"{keys.threshold} of {len(keys.keyids)}", "\n".join(keys.keyids))
    return Group(Text(f"expires {format_timestamp(root.expires)}"), table)


def verified_view(
    result: VerifiedRoot | VerifiedRelease, digest: str, *, artifacts_checked: bool
) -> RenderableType:
    if isinstance(result, VerifiedRoot):
        return Group(
            Text(f"OK: root v{result.root.version} trusted from root v{result.previous_version}"),
            root_view(result.root),
            _signed_by(Role.ROOT, result.root, result.signers),
        )
    artifacts = "every artifact matches" if artifacts_checked else "artifacts not checked"
    return Group(
        Text(f"OK: release trusted under root v{result.root.version}; {artifacts}"),
        release_view(result.release, digest),
        _signed_by(Role.RELEASE, result.root, result.signers),
    )


def envelope_view(envelope: Envelope) -> RenderableType:
    """Any envelope, decoded but not verified: say so, then payload and signatures."""
    cap = ENVELOPE_CAP.get(envelope.kind, DEFAULT_ENVELOPE_CAP)
    payload = strict_loads(envelope.payload_bytes(), cap=cap, what="payload")
    signatures = Table(title=f"{len(envelope.signatures)} signature(s), not verified")
    signatures.add_column("keyid", overflow="fold")
    for signature in envelope.signatures:
        signatures.add_row(signature.keyid)
    return Group(
        Text(f"payloadType {envelope.payloadType}\npayload sha256 {payload_digest(envelope)}"),
        JSON.from_data(payload),
        signatures,
    )
