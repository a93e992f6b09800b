"""The generated parts of docs/protocol.md: the worked example and the field tables.

Every ``<!-- example:NAME -->`` marker in the doc is followed by a fenced block and every
``<!-- fields:Model -->`` marker by a markdown table; this module renders both from fixed
seeds and the models themselves, and ``test_protocol_doc.py`` asserts the doc matches.

    python -m tests.schemas.protocol_example           # rewrite the blocks in place
    python -m tests.schemas.protocol_example --check   # exit 1 if the doc has drifted
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

import schemas
from schemas import (
    Component,
    ComponentKind,
    ComponentVersion,
    Constraints,
    Delivery,
    DeviceState,
    DirectorManifest,
    Envelope,
    Mechanism,
    ReleaseManifest,
    Role,
    RoleKeys,
    RootMetadata,
    StatusReport,
    TelemetryReport,
    TelemetryWindow,
    canonical_bytes,
)
from schemas.canonical import model_bytes
from schemas.components import (
    ClassifierDecision,
    HistogramBins,
    InputSummary,
    SensorCalibration,
    Thresholds,
)
from schemas.oscore import OscoreKeys
from schemas.provisioning import BundleBrokerLogin, ProvisioningBundle
from signer.acceptance import DeviceTrustState, accept_update, payload_digest
from signer.keys import SigningKey
from signer.signing import sign_model

__all__ = [
    "DOC",
    "FIELD_TABLES",
    "NOW",
    "SEEDS",
    "Example",
    "build_example",
    "extract_blocks",
    "render_blocks",
    "update_doc",
]

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
SEEDS: dict[str, bytes] = {
    "root": bytes([0x11]) * 32,
    "release-a": bytes([0x21]) * 32,
    "release-b": bytes([0x22]) * 32,
    "release-c": bytes([0x23]) * 32,
    "director": bytes([0x31]) * 32,
    "device": bytes([0x41]) * 32,
}
ARTIFACT = bytes(range(16))
FIELD_TABLES = (
    "Envelope",
    "Signature",
    "RootMetadata",
    "PublicKey",
    "RoleKeys",
    "ReleaseManifest",
    "Component",
    "FirmwareDeclaration",
    "TensorDeclaration",
    "Constraints",
    "DirectorManifest",
    "Calibration",
    "Delivery",
    "StatusReport",
    "ComponentVersion",
    "TelemetryReport",
    "TelemetryWindow",
    "Mechanism",
)

_BLOCK = re.compile(
    r"<!-- (?P<key>(?:example|fields):[A-Za-z0-9_-]+) -->\n"
    r"(?:(?P<fence>```[a-z]*)\n(?P<code>(?:.*?\n)??)```|(?P<table>(?:\|[^\n]*\n)+))",
    re.S,
)


@dataclass(frozen=True)
class Example:
    keys: dict[str, SigningKey]
    root: RootMetadata
    root_envelope: Envelope
    release: ReleaseManifest
    release_envelope: Envelope
    director: DirectorManifest
    director_envelope: Envelope
    delivery: Delivery
    state: DeviceTrustState
    status_envelope: Envelope
    telemetry_envelope: Envelope


def _ts(text: str) -> datetime:
    return schemas.parse_timestamp(text)


def _root(keys: dict[str, SigningKey]) -> RootMetadata:
    def role(*names: str, threshold: int) -> RoleKeys:
        return RoleKeys(keyids=tuple(keys[n].keyid for n in names), threshold=threshold)

    return RootMetadata(
        version=1,
        expires=_ts("2030-01-01T00:00:00Z"),
        keys={keys[n].keyid: keys[n].public for n in SEEDS if n != "device"},
        roles={
            Role.ROOT: role("root", threshold=1),
            Role.RELEASE: role("release-a", "release-b", "release-c", threshold=2),
            Role.DIRECTOR: role("director", threshold=1),
        },
    )


def _release() -> ReleaseManifest:
    firmware = Component(
        kind=ComponentKind.FIRMWARE,
        name="app",
        version="1.2.0",
        security_version=3,
        sha256=hashlib.sha256(ARTIFACT).hexdigest(),
        length=len(ARTIFACT),
        media_type="application/octet-stream",
    )
    return ReleaseManifest(
        name="env-sensor",
        version="1.2.0",
        device_class="nrf52840",
        created=_ts("2026-01-15T09:30:00Z"),
        components=(firmware,),
        constraints=Constraints(ram_bytes=65_536, flash_bytes=262_144),
    )


def _director(release_digest: str) -> DirectorManifest:
    return DirectorManifest(
        device_id="dev-0001",
        sequence=7,
        issued=_ts("2026-02-01T11:00:00Z"),
        expires=_ts("2026-02-02T11:00:00Z"),
        release_digest=release_digest,
        rollout_id="r-2026-02",
        wave=0,
    )


def _status(release_digest: str) -> StatusReport:
    return StatusReport(
        device_id="dev-0001",
        counter=41,
        sent=_ts("2026-02-01T12:00:05Z"),
        state=DeviceState.DOWNLOADING,
        release_digest=release_digest,
        components=(ComponentVersion(kind="firmware", version="1.1.0", security_version=2),),
        director_sequence=7,
        progress=0.5,
    )


def _telemetry(release_digest: str) -> TelemetryReport:
    return TelemetryReport(
        device_id="dev-0001",
        counter=42,
        window=TelemetryWindow(start=_ts("2026-02-01T11:00:00Z"), seconds=3600),
        release_digest=release_digest,
        model_version="kws-3",
        mechanism=Mechanism(name="discrete_laplace", epsilon=1.0, cap=8),
        histograms={"score": (3, 0, -1, 5)},
        counters={"inference_errors": 0, "reboots": 1},
    )


def _thresholds() -> Thresholds:
    return Thresholds(
        model_sha256=hashlib.sha256(b"model.tflite").hexdigest(),
        labels=("idle", "wave", "tap"),
        decision=ClassifierDecision(min_confidence=0.5),
        inputs={InputSummary.RMS_X: HistogramBins(edges=(0.1, 0.5, 1.0, 2.0))},
        output=HistogramBins(edges=(0.25, 0.5, 0.75)),
        privacy=Mechanism(name="discrete_laplace", epsilon=4.0, cap=100),
        window_seconds=3600,
    )


def build_example() -> Example:
    keys = {n: SigningKey(Ed25519PrivateKey.from_private_bytes(s)) for n, s in SEEDS.items()}
    root = _root(keys)
    release = _release()
    release_envelope = sign_model(release, [keys["release-a"], keys["release-b"]])
    digest = payload_digest(release_envelope)
    director = _director(digest)
    director_envelope = sign_model(director, [keys["director"]])
    return Example(
        keys=keys,
        root=root,
        root_envelope=sign_model(root, [keys["root"]]),
        release=release,
        release_envelope=release_envelope,
        director=director,
        director_envelope=director_envelope,
        delivery=Delivery(director=director_envelope, release=release_envelope),
        state=DeviceTrustState(
            device_id="dev-0001",
            device_class="nrf52840",
            root=root,
            last_sequence=6,
            floors={"firmware": 2},
        ),
        status_envelope=sign_model(_status(digest), [keys["device"]]),
        telemetry_envelope=sign_model(_telemetry(digest), [keys["device"]]),
    )


def _wrap(text: str, width: int = 64) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


def _keys_block(example: Example) -> str:
    lines = []
    for name, key in example.keys.items():
        lines += [name, f"  public {key.public.public}", f"  keyid  {key.keyid}"]
    return "\n".join(lines)


def _signatures_block(envelope: Envelope) -> str:
    lines = []
    for signature in envelope.signatures:
        lines += [f"keyid {signature.keyid}", f"sig   {signature.sig}"]
    return "\n".join(lines)


def _state_block(state: DeviceTrustState) -> str:
    floors = ", ".join(f"{kind}={floor}" for kind, floor in sorted(state.floors.items()))
    return "\n".join(
        [
            f"device_id      {state.device_id}",
            f"device_class   {state.device_class}",
            f"pinned root    version {state.root.version} (example:root-payload)",
            f"last_sequence  {state.last_sequence}",
            f"floors         {floors}",
            f"now            {schemas.format_timestamp(NOW)}",
        ]
    )


def _result_block(example: Example) -> str:
    accepted = accept_update(example.state, example.delivery, NOW)
    component = accepted.release.components[0]
    return "\n".join(
        [
            f"accepted       {accepted.release.name} {accepted.release.version}",
            f"release_digest {accepted.release_digest}",
            f"last_sequence  {example.state.last_sequence} -> {accepted.state.last_sequence}",
            f"then download  {component.kind.value} {component.sha256} ({component.length} bytes)",
        ]
    )


def _text(data: bytes) -> str:
    return data.decode("utf-8")


def render_examples(example: Example) -> dict[str, str]:
    release = example.release_envelope
    return {
        "seeds": "\n".join(f"{name:<10} {seed.hex()}" for name, seed in SEEDS.items()),
        "keys": _keys_block(example),
        "root-payload": _text(example.root_envelope.payload_bytes()),
        "root-envelope": _text(example.root_envelope.to_bytes()),
        "artifact": f"bytes  {ARTIFACT.hex()}\nsha256 {hashlib.sha256(ARTIFACT).hexdigest()}",
        "release-payload": _text(release.payload_bytes()),
        "release-pae-prefix": _text(release.pae()[: release.pae().index(b"{") + 1]),
        "release-pae-hex": _wrap(release.pae().hex()),
        "release-signatures": _signatures_block(release),
        "release-digest": payload_digest(release),
        "release-envelope": _text(release.to_bytes()),
        "director-payload": _text(example.director_envelope.payload_bytes()),
        "director-pae": _text(example.director_envelope.pae()),
        "director-envelope": _text(example.director_envelope.to_bytes()),
        "delivery": _text(canonical_bytes(example.delivery.model_dump(mode="json"))),
        "device-state": _state_block(example.state),
        "acceptance-result": _result_block(example),
        "status-payload": _text(example.status_envelope.payload_bytes()),
        "status-envelope": _text(example.status_envelope.to_bytes()),
        "telemetry-payload": _text(example.telemetry_envelope.payload_bytes()),
        "thresholds-payload": _text(model_bytes(_thresholds())),
        "sensor_calibration-payload": _text(
            model_bytes(SensorCalibration(gain=(1.02, 0.98, 1.0), offset=(0.01, -0.02, 0.0)))
        ),
        "provisioning_bundle-payload": _text(model_bytes(_bundle(example))),
    }


def _bundle(example: Example) -> ProvisioningBundle:
    """A bundle for a device that made its own key (so no private key is printed)."""
    return ProvisioningBundle(
        device_id="dev-0001",
        device_class=example.release.device_class,
        tags=("line:a",),
        public_key=example.keys["device"].public.public,
        private_key_pem=None,
        root=example.root_envelope,
        http_base="https://fleet.example.com/api/v1",
        broker=BundleBrokerLogin(
            url="mqtts://broker.example.com:8883",
            username="dev-0001",
            client_id="dev-0001",
            password="shown-once-in-this-answer-only",
        ),
        coap_keys=OscoreKeys(
            master_secret="0123456789abcdef" * 4,
            master_salt="9e7ca92223786340",
            device_kid="a1b2c3d4e5f6",
        ),
    )


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    ref = schema.get("$ref")
    if ref is None:
        return None, schema
    name = ref.rsplit("/", 1)[1]
    return name, defs[name]


def _bounds(schema: dict[str, Any], low: str, high: str) -> str:
    parts = []
    if low in schema:
        parts.append(f"≥ {schema[low]}")
    if f"exclusiveM{low[1:]}" in schema:
        parts.append(f"> {schema[f'exclusiveM{low[1:]}']}")
    if high in schema:
        parts.append(f"≤ {schema[high]}")
    return ", ".join(parts)


def _describe(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    name, schema = _resolve(schema, defs)
    if "anyOf" in schema:
        return " or ".join(_describe(option, defs) for option in schema["anyOf"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if name is not None:
        return f"object `{name}`"
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items", {})
        count = _bounds(schema, "minItems", "maxItems")
        inner = " ".join(_describe(item, defs) for item in schema.get("prefixItems", [items]))
        return f"array of {inner}" + (f" ({count} items)" if count else "")
    if kind == "object":
        patterns = schema.get("patternProperties") or {}
        key = next(iter(patterns), None)
        values = patterns[key] if key else schema.get("additionalProperties", {})
        names = schema.get("propertyNames")
        key_text = f"`{key}`" if key else _describe(names, defs) if names else "string"
        count = _bounds(schema, "minProperties", "maxProperties")
        suffix = f" ({count} entries)" if count else ""
        return f"object: key {key_text} → {_describe(values, defs)}{suffix}"
    if kind == "string":
        if "pattern" in schema:
            return f"string `{schema['pattern']}`"
        length = _bounds(schema, "minLength", "maxLength")
        return "string" + (f" ({length} chars)" if length else "")
    if kind in ("integer", "number"):
        bounds = _bounds(schema, "minimum", "maximum")
        bounds = bounds.replace("-9007199254740991", "-(2^53-1)").replace(
            "9007199254740991", "2^53-1"
        )
        return f"{kind} {bounds}".strip()
    return str(kind)


def _presence(field: FieldInfo) -> str:
    if field.is_required():
        return "yes"
    default = to_jsonable_python(field.get_default(call_default_factory=True))
    return f"no; default `{json.dumps(default, separators=(',', ':'))}`"


def _field_table(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(mode="serialization")
    defs = schema.get("$defs", {})
    rows = ["| field | type | required |", "|---|---|---|"]
    for field, spec in schema["properties"].items():
        presence = _presence(model.model_fields[field])
        described = _describe(spec, defs).replace("|", "\\|")
        rows.append(f"| `{field}` | {described} | {presence} |")
    return "\n".join(rows)


def render_blocks() -> dict[str, str]:
    """Every generated block of the doc, keyed ``example:NAME`` or ``fields:Model``."""
    blocks = {f"example:{k}": v for k, v in render_examples(build_example()).items()}
    for name in FIELD_TABLES:
        blocks[f"fields:{name}"] = _field_table(getattr(schemas, name))
    return blocks


def extract_blocks(text: str) -> dict[str, str]:
    """The doc's blocks: a fenced block's content without its fences, or a table."""
    blocks: dict[str, str] = {}
    for match in _BLOCK.finditer(text):
        if match["key"] in blocks:
            raise ValueError(f"{match['key']} appears twice in the doc")
        body = match["table"] if match["fence"] is None else match["code"]
        blocks[match["key"]] = body.removesuffix("\n")
    return blocks


def update_doc(text: str, blocks: dict[str, str]) -> str:
    missing = set(blocks) - set(extract_blocks(text))
    if missing:
        raise ValueError(f"the doc lacks markers for {sorted(missing)}")

    def replace(match: re.Match[str]) -> str:
        key = match["key"]
        if key not in blocks:
            raise ValueError(f"the doc has a marker nothing generates: {key}")
        if match["fence"] is None:
            return f"<!-- {key} -->\n{blocks[key]}\n"
        return f"<!-- {key} -->\n{match['fence']}\n{blocks[key]}\n```"

    return _BLOCK.sub(replace, text)


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    updated = update_doc(text, render_blocks())
    if updated == text:
        return 0
    if "--check" in argv:
        sys.stderr.write(f"{DOC} is stale; run python -m tests.schemas.protocol_example\n")
        return 1
    DOC.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
