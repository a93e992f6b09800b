"""``fleet-sign root init`` and ``root rotate``: root metadata from public key files.

Both refuse to write a root below its threshold unless ``--partial`` asks for one, so
several offline key holders can sign it in turn with ``fleet-sign sign``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from schemas import DocumentError, Envelope, Role, RootMetadata, decode_payload
from signer.cli_common import (
    AskPassphrase,
    OutNew,
    PassphraseEnv,
    load_signing_keys,
    outcome,
    say,
    utc_now,
    warn,
)
from signer.errors import Refusal, SignatureRefusal
from signer.fileio import InputError, ensure_absent, read_envelope, write_new
from signer.keys import SigningKey, load_public_key
from signer.rootbuild import RoleKeySet, build_root, root_signatures
from signer.rotation import trust_next_root
from signer.signing import sign_model, verify_role

__all__ = ["root_app"]

root_app = typer.Typer(help="Create and rotate root metadata.", no_args_is_help=True)


def _keys_option(role: Role) -> Any:
    return typer.Option(
        f"--{role.value}-key", metavar="PUB", help=f"Public key file of a {role.value} key; repeat."
    )


def _threshold_option(role: Role) -> Any:
    return typer.Option(
        f"--{role.value}-threshold", metavar="N", min=1, help=f"{role.value} signatures needed."
    )


RootKeys = Annotated[list[Path], _keys_option(Role.ROOT)]
RootThreshold = Annotated[int, _threshold_option(Role.ROOT)]
ReleaseKeys = Annotated[list[Path], _keys_option(Role.RELEASE)]
ReleaseThreshold = Annotated[int, _threshold_option(Role.RELEASE)]
DirectorKeys = Annotated[list[Path], _keys_option(Role.DIRECTOR)]
DirectorThreshold = Annotated[int, _threshold_option(Role.DIRECTOR)]
SignWith = Annotated[
    list[Path] | None,
    typer.Option("--sign-with", metavar="KEY", help="Private root key to sign with; repeat."),
]
ExpiresDays = Annotated[
    int, typer.Option("--expires-days", min=1, max=3650, help="Days until the root expires.")
]
Partial = Annotated[
    bool, typer.Option("--partial", help="Write a root below its threshold for others to sign.")
]


def _role_sets(options: Sequence[tuple[Role, Sequence[Path], int]]) -> list[RoleKeySet]:
    return [
        RoleKeySet(role=role, keys=tuple(load_public_key(p) for p in paths), threshold=threshold)
        for role, paths, threshold in options
    ]


def _refuse_non_root_keys(keys: Sequence[SigningKey], roots: Sequence[RootMetadata]) -> None:
    # A signature by any other key counts for nothing; refusing it catches a swapped file.
    allowed = {k for root in roots for k in root.role(Role.ROOT).keyids}
    versions = " or ".join(f"v{root.version}" for root in roots)
    for key in keys:
        if key.keyid not in allowed:
            raise InputError(
                f"--sign-with key {key.keyid[:16]}… is not a root key of root {versions}"
            )


def _finish(envelope: Envelope, out: Path, *, partial: bool, refusal: Refusal | None) -> None:
    """Write the root if trusted, or below threshold only when ``--partial`` asks for it."""
    if refusal is not None and not partial:
        warn(f"nothing written to {out}; sign with more keys, or use --partial to collect them")
        raise refusal
    write_new(out, envelope.to_bytes())
    say(f"wrote {out} with {len(envelope.signatures)} signature(s)")
    if refusal is not None:
        warn(f"partially signed: {refusal}")
        warn(f"other key holders add theirs with: fleet-sign sign {out} --key KEY")


def _self_refusal(envelope: Envelope, root: RootMetadata) -> Refusal | None:
    try:
        verify_role(envelope, root, Role.ROOT)
    except SignatureRefusal as exc:
        return exc
    return None


def _rotation_refusal(previous: RootMetadata, envelope: Envelope) -> Refusal | None:
    try:
        trust_next_root(previous, envelope)
    except Refusal as exc:
        return exc
    return None


def _report(envelope: Envelope, label: str, root: RootMetadata) -> None:
    valid, needed = root_signatures(envelope, root)
    say(f"{label} root keys (v{root.version}): {valid} of {needed} needed signatures")


@root_app.command("init")
def root_init(
    root_key: RootKeys,
    root_threshold: RootThreshold,
    release_key: ReleaseKeys,
    release_threshold: ReleaseThreshold,
    director_key: DirectorKeys,
    director_threshold: DirectorThreshold,
    out: OutNew,
    sign_with: SignWith = None,
    expires_days: ExpiresDays = 365,
    partial: Partial = False,
    passphrase_env: PassphraseEnv = None,
    ask_passphrase: AskPassphrase = False,
) -> None:
    """Create root metadata version 1, signed by a threshold of its own root keys."""
    with outcome():
        ensure_absent(out)
        roles = _role_sets(
            [
                (Role.ROOT, root_key, root_threshold),
                (Role.RELEASE, release_key, release_threshold),
                (Role.DIRECTOR, director_key, director_threshold),
            ]
        )
        root = build_root(roles, version=1, expires=utc_now() + timedelta(days=expires_days))
        keys = load_signing_keys(sign_with or [], passphrase_env, ask_passphrase)
        _refuse_non_root_keys(keys, [root])
        envelope = sign_model(root, keys)
        _report(envelope, "own", root)
        _finish(envelope, out, partial=partial, refusal=_self_refusal(envelope, root))


def _previous_root(path: Path) -> RootMetadata:
    envelope = read_envelope(path, what="previous root")
    try:
        return decode_payload(envelope, RootMetadata)
    except DocumentError as exc:
        raise InputError(f"--previous {path}: {exc}") from exc


@root_app.command("rotate")
def root_rotate(
    previous: Annotated[Path, typer.Option("--previous", help="The currently trusted root.")],
    root_key: RootKeys,
    root_threshold: RootThreshold,
    release_key: ReleaseKeys,
    release_threshold: ReleaseThreshold,
    director_key: DirectorKeys,
    director_threshold: DirectorThreshold,
    out: OutNew,
    sign_with: SignWith = None,
    expires_days: ExpiresDays = 365,
    partial: Partial = False,
    passphrase_env: PassphraseEnv = None,
    ask_passphrase: AskPassphrase = False,
) -> None:
    """Create root version N+1, signed by a threshold of the old AND of the new root keys."""
    with outcome():
        ensure_absent(out)
        old = _previous_root(previous)
        roles = _role_sets(
            [
                (Role.ROOT, root_key, root_threshold),
                (Role.RELEASE, release_key, release_threshold),
                (Role.DIRECTOR, director_key, director_threshold),
            ]
        )
        expires = utc_now() + timedelta(days=expires_days)
        new = build_root(roles, version=old.version + 1, expires=expires)
        keys = load_signing_keys(sign_with or [], passphrase_env, ask_passphrase)
        _refuse_non_root_keys(keys, [old, new])
        envelope = sign_model(new, keys)
        _report(envelope, "old", old)
        _report(envelope, "new", new)
        _finish(envelope, out, partial=partial, refusal=_rotation_refusal(old, envelope))
