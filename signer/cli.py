"""``fleet-sign``: the offline signing CLI (keys, root metadata, releases, verification).

Exit codes: 0 success, 1 a verification refusal (its ``code`` is printed), 2 bad usage or
input (``signer.cli_common.outcome``). Runs without the server installed: it imports
``schemas``, ``signer``, typer and rich only. Reference: docs/fleet-sign.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import RenderableType

from schemas import DocumentError, Envelope, ReleaseManifest, RootMetadata, decode_payload
from signer.acceptance import payload_digest
from signer.check import VerifiedRelease, verify_document
from signer.cli_common import (
    AskPassphrase,
    OutNew,
    PassphraseEnv,
    load_signing_keys,
    outcome,
    passphrase,
    say,
    utc_now,
)
from signer.cli_root import root_app
from signer.errors import MalformedDocument
from signer.fileio import (
    InputError,
    ensure_absent,
    read_envelope,
    store_artifact,
    verify_artifact_file,
    write_new,
    write_replacing,
)
from signer.keys import SigningKey, save_signing_key
from signer.report import envelope_view, release_view, verified_view
from signer.rootbuild import root_signatures
from signer.signing import sign_envelope, sign_model
from signer.spec import ReleaseSpec, load_release_spec

__all__ = ["app", "main"]

app = typer.Typer(
    name="fleet-sign",
    help="Offline signing for tinyfleet: keys, root metadata, releases, verification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(root_app, name="root")

KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

KeyFiles = Annotated[
    list[Path], typer.Option("--key", metavar="KEY", help="Private key file; repeat per key.")
]
ArtifactsDir = Annotated[
    Path | None,
    typer.Option("--artifacts-dir", metavar="DIR", help="Artifacts stored as DIR/<sha256>."),
]


@app.command()
def keygen(
    name: Annotated[str, typer.Argument(help="Key name: files NAME.key and NAME.key.pub.")],
    directory: Annotated[Path, typer.Option("--dir", metavar="DIR")] = Path("."),
    passphrase_env: PassphraseEnv = None,
    ask_passphrase: AskPassphrase = False,
) -> None:
    """Generate an Ed25519 key: DIR/NAME.key (PKCS#8 PEM, mode 0600) and DIR/NAME.key.pub."""
    with outcome():
        if not KEY_NAME.match(name):
            raise InputError(f"key name {name!r}: use letters, digits, '.', '_' or '-' only")
        secret = passphrase(passphrase_env, ask_passphrase, prompt="Passphrase", confirm=True)
        private = directory / f"{name}.key"
        ensure_absent(private)
        ensure_absent(private.with_name(f"{name}.key.pub"))
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = SigningKey.generate()
        public = save_signing_key(key, private, passphrase=secret)
        encrypted = "encrypted" if secret else "unencrypted"
        say(f"wrote {private} ({encrypted}, mode 0600) and {public}")
        say(f"keyid {key.keyid}")


# --- releases, extra signatures -------------------------------------------------------


def _store_artifacts(loaded: ReleaseSpec, directory: Path) -> None:
    for component in loaded.manifest.components:
        source = loaded.files[component.kind.value]
        store_artifact(source, directory, length=component.length, sha256=component.sha256)


@app.command()
def release(
    spec: Annotated[Path, typer.Argument(help="Release spec, .toml or .json.")],
    key: KeyFiles,
    out: OutNew,
    artifacts_dir: ArtifactsDir = None,
    passphrase_env: PassphraseEnv = None,
    ask_passphrase: AskPassphrase = False,
) -> None:
    """Build a release manifest from SPEC (hashing its files) and sign it with release keys."""
    with outcome():
        ensure_absent(out)
        keys = load_signing_keys(key, passphrase_env, ask_passphrase)
        loaded = load_release_spec(spec, created=utc_now())
        envelope = sign_model(loaded.manifest, keys)
        if artifacts_dir is not None:
            _store_artifacts(loaded, artifacts_dir)
        write_new(out, envelope.to_bytes())
        say(release_view(loaded.manifest, payload_digest(envelope)))
        say(f"wrote {out}, signed by {len(envelope.signatures)} key(s)")
        if artifacts_dir is not None:
            say(f"stored artifacts in {artifacts_dir} by sha256")


def _describe_signable(envelope: Envelope) -> RenderableType:
    """Decode what is about to be signed, so a signer sees it and never signs garbage."""
    if envelope.kind == "root":
        root = decode_payload(envelope, RootMetadata)
        valid, needed = root_signatures(envelope, root)
        return (
            f"root v{root.version}: {valid} of {needed} needed signatures by its own root keys"
            " (a rotated root also needs the previous root's: check with fleet-sign verify)"
        )
    if envelope.kind == "release":
        manifest = decode_payload(envelope, ReleaseManifest)
        return release_view(manifest, payload_digest(envelope))
    raise InputError(
        f"fleet-sign signs root and release envelopes; {envelope.payloadType!r} is signed online"
    )


@app.command()
def sign(
    envelope_path: Annotated[Path, typer.Argument(metavar="ENVELOPE", help="Envelope to sign.")],
    key: KeyFiles,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of updating ENVELOPE.")
    ] = None,
    passphrase_env: PassphraseEnv = None,
    ask_passphrase: AskPassphrase = False,
) -> None:
    """Add signatures to a root or release envelope (offline holders sign in turn)."""
    with outcome():
        envelope = read_envelope(envelope_path)
        keys = load_signing_keys(key, passphrase_env, ask_passphrase)
        signed = sign_envelope(envelope, keys)
        description = _describe_signable(signed)
        if out is None:
            write_replacing(envelope_path, signed.to_bytes())
        else:
            write_new(out, signed.to_bytes())
        say(description)
        say(f"wrote {out or envelope_path} with {len(signed.signatures)} signature(s)")


# --- reading --------------------------------------------------------------------------


def _read_judged(path: Path, what: str) -> Envelope:
    """In ``verify`` a document that does not parse is refused, like a device would."""
    try:
        return read_envelope(path, what=what)
    except DocumentError as exc:
        raise MalformedDocument(str(exc)) from exc


def _check_artifacts(release: ReleaseManifest, directory: Path) -> None:
    for c in release.components:
        path = directory / c.sha256
        if not path.is_file():
            raise InputError(f"no artifact for {c.kind.value} {c.name}: {path} is missing")
        name = f"{c.kind.value} {c.name} {c.version}"
        verify_artifact_file(path, name=name, length=c.length, sha256=c.sha256)


@app.command()
def verify(
    document: Annotated[Path, typer.Argument(metavar="DOC", help="Release or newer root.")],
    root: Annotated[Path, typer.Option("--root", help="The pinned (trusted) root.")],
    root_chain: Annotated[
        list[Path] | None,
        typer.Option("--root-chain", metavar="ROOT", help="Newer roots in version order; repeat."),
    ] = None,
    artifacts_dir: ArtifactsDir = None,
) -> None:
    """Verify DOC as a device would: root chain, expiry, thresholds, artifacts."""
    with outcome():
        pinned = _read_judged(root, "pinned root")
        chain = [_read_judged(path, "root") for path in root_chain or []]
        envelope = _read_judged(document, "document")
        result = verify_document(pinned, chain, envelope, utc_now())
        if isinstance(result, VerifiedRelease) and artifacts_dir is not None:
            _check_artifacts(result.release, artifacts_dir)
        checked = artifacts_dir is not None
        say(verified_view(result, payload_digest(envelope), artifacts_checked=checked))


@app.command()
def show(file: Annotated[Path, typer.Argument(help="Any DSSE envelope.")]) -> None:
    """Print an envelope's decoded payload and its signatures' keyids (nothing verified)."""
    with outcome():
        say(envelope_view(read_envelope(file)))


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point; ``argv`` lets tests and embedders run it in-process."""
    app(args=list(argv) if argv is not None else None, prog_name="fleet-sign")
