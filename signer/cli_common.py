"""What every ``fleet-sign`` command shares: output, exit codes, passphrases, signing keys.

``outcome()`` is the one place expected failures become a message and an exit code:
1 for a verification refusal (``signer.errors.Refusal``, its ``code`` printed), 2 for
input that cannot be used. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, RenderableType
from rich.text import Text

from schemas import DocumentError
from signer.errors import Refusal
from signer.fileio import InputError, is_encrypted_key
from signer.keys import KeyFileError, SigningKey, load_signing_key

__all__ = [
    "AskPassphrase",
    "OutNew",
    "PassphraseEnv",
    "load_signing_keys",
    "outcome",
    "passphrase",
    "say",
    "utc_now",
    "warn",
]

PassphraseEnv = Annotated[
    str | None,
    typer.Option(
        "--passphrase-env",
        metavar="VAR",
        help="Read the passphrase of encrypted keys from environment variable VAR.",
    ),
]
AskPassphrase = Annotated[
    bool, typer.Option("--ask-passphrase", help="Prompt for passphrases (input hidden).")
]
OutNew = Annotated[Path, typer.Option("--out", help="Output file; never overwritten.")]


def say(message: str | RenderableType) -> None:
    # Plain strings become Text so a '[' in a path or name is never read as rich markup.
    renderable = Text(message) if isinstance(message, str) else message
    Console(soft_wrap=True, highlight=False).print(renderable)


def warn(message: str, *, style: str = "yellow") -> None:
    Console(stderr=True, soft_wrap=True, highlight=False).print(Text(message, style=style))


@contextmanager
def outcome() -> Iterator[None]:
    """Map every expected failure to one message and its exit code, in one place."""
    try:
        yield
    except Refusal as exc:
        warn(f"refused ({exc.code}): {exc}", style="bold red")
        raise typer.Exit(1) from exc
    except (InputError, KeyFileError, DocumentError) as exc:
        warn(f"error: {exc}", style="red")
        raise typer.Exit(2) from exc
    except typer.Abort as exc:  # end of input or Ctrl-C at a passphrase prompt
        warn("error: passphrase prompt aborted", style="red")
        raise typer.Exit(2) from exc
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        warn(f"error: {where}{exc.strerror or exc}", style="red")
        raise typer.Exit(2) from exc


def utc_now() -> datetime:
    """The CLI edge's clock; everything below it takes the time as an argument."""
    return datetime.now(UTC)


def _from_env(var: str) -> bytes:
    value = os.environ.get(var)
    if value is None:
        raise InputError(f"--passphrase-env {var}: environment variable {var} is not set")
    if not value:
        raise InputError(f"--passphrase-env {var}: environment variable {var} is empty")
    return value.encode("utf-8")


def passphrase(env_var: str | None, ask: bool, *, prompt: str, confirm: bool) -> bytes | None:
    """From the environment or a hidden prompt; never from a CLI argument (shell history)."""
    if env_var is not None and ask:
        raise InputError("give --passphrase-env or --ask-passphrase, not both")
    if env_var is not None:
        return _from_env(env_var)
    if not ask:
        return None
    value: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    if not value:
        raise InputError("empty passphrase; omit --ask-passphrase for an unencrypted key")
    return value.encode("utf-8")


def _load(path: Path, env_var: str | None, ask: bool) -> SigningKey:
    if not is_encrypted_key(path):
        return load_signing_key(path)
    secret = passphrase(env_var, ask, prompt=f"Passphrase for {path}", confirm=False)
    if secret is None:
        raise InputError(
            f"{path} is encrypted; give its passphrase with --passphrase-env VAR "
            "or --ask-passphrase"
        )
    return load_signing_key(path, passphrase=secret)


def load_signing_keys(paths: Sequence[Path], env_var: str | None, ask: bool) -> list[SigningKey]:
    """Load private keys; the passphrase source is used only for the encrypted ones."""
    return [_load(path, env_var, ask) for path in paths]
