"""Release specs: the operator's TOML or JSON description of a release, turned into a manifest.

A spec is a ``ReleaseManifest`` without the fields the signer fills in: ``created`` (the
signing time) and each component's ``sha256`` and ``length`` (computed from its ``file``,
a path relative to the spec). Validation is the manifest's own, so a spec can never be
looser than what devices accept; errors name the field as ``components[1].kind``.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas import DocumentError, ReleaseManifest, format_timestamp, strict_loads
from schemas.release import MAX_ARTIFACT_LENGTH
from signer.fileio import CHUNK, InputError, read_bytes

__all__ = ["ReleaseSpec", "describe_validation_error", "load_release_spec"]

SPEC_CAP = 1_000_000
SIGNER_FIELDS = ("type", "created")
COMPUTED_FIELDS = ("sha256", "length")


@dataclass(frozen=True)
class ReleaseSpec:
    manifest: ReleaseManifest
    files: Mapping[str, Path]
    """Component kind → the artifact file it was computed from."""


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming its field the way the spec spells it."""
    lines = []
    for error in exc.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        where = where.lstrip(".") or "release"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"{where}: {message}")
    return "\n".join(lines)


def _parse(path: Path) -> Any:
    data = read_bytes(path, what="release spec")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(data.decode("utf-8"))
        if path.suffix == ".json":
            return strict_loads(data, cap=SPEC_CAP, what="release spec")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, DocumentError) as exc:
        raise InputError(f"{path}: {exc}") from exc
    raise InputError(f"{path}: a release spec must end in .toml or .json")


def _digest_file(path: Path, *, field: str) -> tuple[str, int]:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InputError(f"{field}: {path} is not a regular file")
        if size > MAX_ARTIFACT_LENGTH:
            raise InputError(f"{field}: {path} is {size} bytes; the cap is {MAX_ARTIFACT_LENGTH}")
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"{field}: cannot read {path}: {exc.strerror}") from exc
    return digest.hexdigest(), size


def _component(raw: object, index: int, base: Path) -> tuple[dict[str, Any], Path]:
    where = f"components[{index}]"
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a table with kind, name, version, ... and file")
    for name in COMPUTED_FIELDS:
        if name in raw:
            raise InputError(f"{where}.{name}: computed from the file by the signer; remove it")
    fields = dict(raw)
    file = fields.pop("file", None)
    if not isinstance(file, str) or not file:
        raise InputError(f"{where}.file: required, the artifact's path relative to the spec")
    path = base / file
    fields["sha256"], fields["length"] = _digest_file(path, field=f"{where}.file")
    return fields, path


def _check_kinds_unique(components: list[Any]) -> None:
    seen: dict[str, int] = {}
    for index, raw in enumerate(components):
        kind = raw.get("kind") if isinstance(raw, dict) else None
        if not isinstance(kind, str):
            continue  # a missing or non-string kind is reported by validation
        if kind in seen:
            raise InputError(
                f"components[{index}].kind: {kind!r} again (also components[{seen[kind]}]); "
                "a release carries one component of each kind"
            )
        seen[kind] = index


def _components(spec: dict[str, Any], base: Path) -> tuple[list[dict[str, Any]], list[Path]]:
    raw = spec.get("components")
    if raw is None:
        raise InputError("components: required, a list of tables (TOML [[components]])")
    if not isinstance(raw, list):
        raise InputError("components: expected a list of tables (TOML [[components]])")
    _check_kinds_unique(raw)
    built = [_component(item, index, base) for index, item in enumerate(raw)]
    return [fields for fields, _ in built], [path for _, path in built]


def _refuse_non_json(value: object) -> object:
    raise InputError(
        f"TOML {type(value).__name__} values have no JSON form; write {value} as a quoted string"
    )


def _validate(fields: dict[str, Any]) -> ReleaseManifest:
    """Validate exactly as a device decodes: strict, from JSON (no bool-as-int, no floats)."""
    text = json.dumps(fields, default=_refuse_non_json)
    return ReleaseManifest.model_validate_json(text, strict=True)


def load_release_spec(path: Path, *, created: datetime) -> ReleaseSpec:
    """Parse ``path``, hash every artifact and validate the resulting manifest."""
    spec = _parse(path)
    if not isinstance(spec, dict):
        raise InputError(f"{path}: a release spec is a table/object at the top level")
    for name in SIGNER_FIELDS:
        if name in spec:
            raise InputError(f"{name}: set by the signer; remove it from the spec")
    components, files = _components(spec, path.parent)
    fields = {**spec, "components": components, "created": format_timestamp(created)}
    try:
        manifest = _validate(fields)
    except ValidationError as exc:
        raise InputError(describe_validation_error(exc)) from exc
    kinds = [component.kind.value for component in manifest.components]
    return ReleaseSpec(manifest=manifest, files=dict(zip(kinds, files, strict=True)))
