"""``fleet-sign`` end to end: real Ed25519 keys, real files, in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from schemas import Envelope, ReleaseManifest, RootMetadata, decode_payload
from signer.check import verify_document
from signer.cli import app
from signer.errors import RootExpired

RELEASE_KEYS = ("rel1", "rel2", "rel3")
ALL_KEYS = ("root", *RELEASE_KEYS, "director")

SPEC_TOML = """\
name = "kws-demo"
version = "1.0.0"
device_class = "nrf52840-kws"

[constraints]
min_firmware_version = "2.1.0"
required_ops = ["CONV_2D", "FULLY_CONNECTED"]

[[components]]
kind = "firmware"
name = "kws-fw"
version = "2.1.0"
security_version = 3
media_type = "application/octet-stream"
file = "artifacts/firmware.bin"

[[components]]
kind = "model"
name = "kws-model"
version = "1.0.0"
security_version = 1
media_type = "application/vnd.tflite"
file = "artifacts/model.tflite"

[[components]]
kind = "thresholds"
name = "kws-thresholds"
version = "1.0.0"
security_version = 1
media_type = "application/json"
file = "artifacts/thresholds.json"
"""

ARTIFACTS = {
    "firmware.bin": b"\x7fFW" * 100,
    "model.tflite": b"TFL3" + bytes(range(256)),
    "thresholds.json": b'{"score": 0.8}',
}

# The round trip of docs/fleet-sign.md (and the README), run by bash in a fresh environment.
README_ROUND_TRIP = """\
for name in root rel1 rel2 rel3 director; do fleet-sign keygen "$name" --dir keys; done
fleet-sign root init --root-key keys/root.key.pub --root-threshold 1 \\
    --release-key keys/rel1.key.pub --release-key keys/rel2.key.pub \\
    --release-key keys/rel3.key.pub --release-threshold 2 \\
    --director-key keys/director.key.pub --director-threshold 1 \\
    --sign-with keys/root.key --out root.json
fleet-sign release release.toml --key keys/rel1.key --key keys/rel2.key \\
    --out release.json --artifacts-dir store
fleet-sign verify --root root.json release.json --artifacts-dir store
fleet-sign show release.json
"""


def cli(*args: str | Path, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=env, input=input)


def ok(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    result = cli(*args, env=env)
    assert result.exit_code == 0, result.output
    return result


def refused(code: str, *args: str | Path) -> Result:
    result = cli(*args)
    assert result.exit_code == 1, result.output
    assert f"refused ({code})" in result.output
    assert "Traceback" not in result.output
    return result


def bad_input(fragment: str, *args: str | Path, env: dict[str, str] | None = None) -> Result:
    result = cli(*args, env=env)
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output
    return result


def role_options(root: Sequence[str], release: Sequence[str], threshold: int = 2) -> list[str]:
    options = ["--root-threshold=1", f"--release-threshold={threshold}"]
    options += [f"--root-key=keys/{name}.key.pub" for name in root]
    options += [f"--release-key=keys/{name}.key.pub" for name in release]
    return [*options, "--director-key=keys/director.key.pub", "--director-threshold=1"]


def write_spec(directory: Path) -> Path:
    (directory / "artifacts").mkdir()
    for name, data in ARTIFACTS.items():
        (directory / "artifacts" / name).write_bytes(data)
    spec = directory / "release.toml"
    spec.write_text(SPEC_TOML)
    return spec


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keys, a release spec with three artifacts, and root v1 (release 2-of-3), in the cwd."""
    monkeypatch.chdir(tmp_path)
    for name in (*ALL_KEYS, "root2"):
        ok("keygen", name, "--dir", "keys")
    write_spec(tmp_path)
    ok(
        "root",
        "init",
        *role_options(["root"], RELEASE_KEYS),
        "--sign-with=keys/root.key",
        "--out=root.json",
    )
    return tmp_path


def release(*keys: str) -> None:
    """release.json from release.toml, signed by ``keys``; artifacts stored in store/."""
    key_options = [f"--key=keys/{k}.key" for k in keys]
    ok("release", "release.toml", *key_options, "--out=release.json", "--artifacts-dir=store")


def rotate(*signers: str, out: str = "root2.json", extra: Sequence[str] = ()) -> Result:
    """Root v2: root key 'root2', release keys rel1, rel2 (rel3 revoked)."""
    return cli(
        "root",
        "rotate",
        "--previous=root.json",
        *role_options(["root2"], ["rel1", "rel2"]),
        *[f"--sign-with=keys/{s}.key" for s in signers],
        f"--out={out}",
        *extra,
    )


def read_envelope(path: str) -> Envelope:
    return Envelope.from_bytes(Path(path).read_bytes())


def decode_release(path: str) -> ReleaseManifest:
    return decode_payload(read_envelope(path), ReleaseManifest)


# --- the README round trip and its refusals --------------------------------------------


def test_release_signed_by_two_of_three_verifies_with_artifacts(workspace: Path) -> None:
    release("rel1", "rel2")
    result = ok("verify", "--root=root.json", "release.json", "--artifacts-dir=store")
    assert "OK: release trusted under root v1; every artifact matches" in result.output
    assert "signed by 2 release key(s), 2 needed" in result.output
    assert sorted(p.name for p in (workspace / "store").iterdir()) == sorted(
        c.sha256 for c in decode_release("release.json").components
    )


def test_release_signed_by_one_key_is_refused_below_threshold(workspace: Path) -> None:
    release("rel1")
    result = refused("threshold_not_met", "verify", "--root=root.json", "release.json")
    assert "1 valid of 2 needed" in result.output


def test_tampered_artifact_is_refused(workspace: Path) -> None:
    release("rel1", "rel2")
    stored = next((workspace / "store").iterdir())
    data = bytearray(stored.read_bytes())
    data[0] ^= 0xFF
    stored.write_bytes(bytes(data))
    refused(
        "artifact_digest_mismatch",
        "verify",
        "--root=root.json",
        "release.json",
        "--artifacts-dir=store",
    )


def test_truncated_artifact_is_refused(workspace: Path) -> None:
    release("rel1", "rel2")
    stored = next((workspace / "store").iterdir())
    stored.write_bytes(stored.read_bytes()[:-1])
    refused(
        "artifact_too_short", "verify", "--root=root.json", "release.json", "--artifacts-dir=store"
    )


def test_missing_artifact_is_an_input_error(workspace: Path) -> None:
    release("rel1", "rel2")
    bad_input("is missing", "verify", "--root=root.json", "release.json", "--artifacts-dir=keys")


def test_verify_refuses_a_malformed_document(workspace: Path) -> None:
    Path("broken.json").write_text('{"payloadType": "x", "payloadType": "y"}')
    refused("malformed", "verify", "--root=root.json", "broken.json")
    bad_input("No such file", "verify", "--root=root.json", "absent.json")


def test_pinned_root_must_meet_its_own_threshold(workspace: Path) -> None:
    release("rel1", "rel2")
    ok("root", "init", *role_options(["root"], RELEASE_KEYS), "--out=unsigned.json", "--partial")
    refused("threshold_not_met", "verify", "--root=unsigned.json", "release.json")


def test_expired_root_is_refused(workspace: Path) -> None:
    release("rel1", "rel2")
    pinned = read_envelope("root.json")
    expires = decode_payload(pinned, RootMetadata).expires
    with pytest.raises(RootExpired):
        verify_document(pinned, [], read_envelope("release.json"), expires + timedelta(seconds=1))


# --- keys --------------------------------------------------------------------------------


def test_private_key_is_mode_0600_and_never_overwritten(workspace: Path) -> None:
    assert stat.S_IMODE((workspace / "keys" / "rel1.key").stat().st_mode) == 0o600
    result = ok("keygen", "fresh", "--dir", "keys")
    assert "keyid " in result.output
    bad_input("refusing to overwrite", "keygen", "fresh", "--dir", "keys")


def test_keygen_refuses_a_name_that_is_not_a_file_name(workspace: Path) -> None:
    bad_input("key name", "keygen", "../escape")


def test_encrypted_key_round_trip_and_wrong_passphrase(workspace: Path) -> None:
    ok("keygen", "sealed", "--dir", "keys", "--passphrase-env=PW", env={"PW": "correct horse"})
    assert (workspace / "keys" / "sealed.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED")
    signing = ("release", "release.toml", "--key=keys/sealed.key", "--key=keys/rel1.key")
    ok(*signing, "--out=sealed.json", "--passphrase-env=PW", env={"PW": "correct horse"})
    assert len(read_envelope("sealed.json").signatures) == 2
    bad_input("wrong passphrase", *signing, "--out=x.json", "--passphrase-env=PW", env={"PW": "no"})
    bad_input("is encrypted; give its passphrase", *signing, "--out=x.json")
    bad_input("PW is not set", *signing, "--out=x.json", "--passphrase-env=PW")


def test_ask_passphrase_prompts_with_confirmation(workspace: Path) -> None:
    result = cli("keygen", "asked", "--dir", "keys", "--ask-passphrase", input="s3cret\ns3cret\n")
    assert result.exit_code == 0, result.output
    signed = cli(
        "release",
        "release.toml",
        "--key=keys/asked.key",
        "--out=asked.json",
        "--ask-passphrase",
        input="s3cret\n",
    )
    assert signed.exit_code == 0, signed.output


# --- root metadata -----------------------------------------------------------------------


def test_root_init_refuses_a_threshold_above_the_key_count(workspace: Path) -> None:
    bad_input(
        "--release-threshold 3 is impossible with 2",
        "root",
        "init",
        *role_options(["root"], ["rel1", "rel2"], threshold=3),
        "--out=r.json",
    )
    assert not Path("r.json").exists()


def test_root_init_refuses_a_director_key_that_is_also_a_release_key(workspace: Path) -> None:
    options = role_options(["root"], ["rel1", "director"], threshold=1)
    bad_input(
        "online server must never hold an offline key", "root", "init", *options, "--out=r.json"
    )


def test_root_init_below_threshold_writes_only_with_partial(workspace: Path) -> None:
    refused(
        "threshold_not_met", "root", "init", *role_options(["root"], RELEASE_KEYS), "--out=r.json"
    )
    assert not Path("r.json").exists()
    partial = ok("root", "init", *role_options(["root"], RELEASE_KEYS), "--out=r.json", "--partial")
    assert "partially signed" in partial.output
    ok("sign", "r.json", "--key=keys/root.key")
    release("rel1", "rel2")
    ok("verify", "--root=r.json", "release.json")


def test_root_signed_with_a_non_root_key_is_refused(workspace: Path) -> None:
    bad_input(
        "is not a root key of root v1",
        "root",
        "init",
        *role_options(["root"], RELEASE_KEYS),
        "--sign-with=keys/rel1.key",
        "--out=r.json",
    )


def test_rotation_signed_only_by_new_keys_is_refused(workspace: Path) -> None:
    result = rotate("root2")
    assert result.exit_code == 1, result.output
    assert "refused (root_rotation_refused)" in result.output
    assert not Path("root2.json").exists()


def test_rotation_signed_by_old_and_new_keys_is_walked_by_verify(workspace: Path) -> None:
    assert rotate("root", "root2").exit_code == 0
    assert (
        "OK: root v2 trusted from root v1" in ok("verify", "--root=root.json", "root2.json").output
    )
    release("rel1", "rel2")
    result = ok("verify", "--root=root.json", "--root-chain=root2.json", "release.json")
    assert "under root v2" in result.output


def test_partial_rotation_is_completed_by_the_old_key_holder(workspace: Path) -> None:
    assert rotate("root2", extra=["--partial"]).exit_code == 0
    refused("root_rotation_refused", "verify", "--root=root.json", "root2.json")
    ok("sign", "root2.json", "--key=keys/root.key")
    ok("verify", "--root=root.json", "root2.json")


def test_release_signed_by_a_revoked_key_is_refused(workspace: Path) -> None:
    assert rotate("root", "root2").exit_code == 0
    release("rel1", "rel3")
    ok("verify", "--root=root.json", "release.json")
    refused(
        "untrusted_key", "verify", "--root=root.json", "--root-chain=root2.json", "release.json"
    )


# --- release specs -----------------------------------------------------------------------


def json_spec() -> dict[str, Any]:
    components = [
        {
            "kind": "firmware",
            "name": "fw",
            "version": "2.1.0",
            "security_version": 3,
            "media_type": "application/octet-stream",
            "file": "artifacts/firmware.bin",
        },
        {
            "kind": "model",
            "name": "kws",
            "version": "1.0.0",
            "security_version": 1,
            "media_type": "application/vnd.tflite",
            "file": "artifacts/model.tflite",
        },
    ]
    return {"name": "kws", "version": "1.0.0", "device_class": "nrf52840", "components": components}


@pytest.mark.parametrize(
    ("index", "field", "value", "message"),
    [
        (1, "file", "artifacts/absent.bin", "components[1].file: cannot read"),
        (1, "kind", "bootloader", "components[1].kind: Input should be"),
        (1, "kind", "firmware", "components[1].kind: 'firmware' again"),
        (0, "security_version", -1, "components[0].security_version: Input should be greater"),
        (0, "version", 2, "components[0].version: Input should be a valid string"),
        (0, "sha256", "00" * 32, "components[0].sha256: computed from the file"),
        (0, "colour", "red", "components[0].colour: unknown field"),
    ],
)
def test_bad_spec_names_the_field(
    workspace: Path, index: int, field: str, value: object, message: str
) -> None:
    spec = json_spec()
    spec["components"][index][field] = value
    Path("spec.json").write_text(json.dumps(spec))
    bad_input(message, "release", "spec.json", "--key=keys/rel1.key", "--out=r.json")
    assert not Path("r.json").exists()


def test_json_spec_is_accepted(workspace: Path) -> None:
    Path("spec.json").write_text(json.dumps(json_spec()))
    ok("release", "spec.json", "--key=keys/rel1.key", "--key=keys/rel2.key", "--out=r.json")
    ok("verify", "--root=root.json", "r.json")


FIRMWARE_TOML = """\
[components.firmware]
builtin_ops = ["FULLY_CONNECTED", "SOFTMAX"]
custom_ops = ["Lowpass"]
ram_bytes = 49152

[[components.firmware.inputs]]
shape = [1, 8]
dtype = "INT8"
scale = 0.05
zero_point = -3
"""


def test_a_firmware_declaration_round_trips_through_the_signed_release(workspace: Path) -> None:
    spec = Path("release.toml")
    text = spec.read_text()
    end_of_firmware = text.index("\n[[components]]", text.index('kind = "firmware"'))
    spec.write_text(f"{text[:end_of_firmware]}\n{FIRMWARE_TOML}{text[end_of_firmware:]}")
    release("rel1", "rel2")
    ok("verify", "--root=root.json", "release.json", "--artifacts-dir=store")
    firmware = decode_release("release.json").components[0].firmware
    assert firmware is not None
    assert (firmware.builtin_ops, firmware.custom_ops, firmware.ram_bytes) == (
        ("FULLY_CONNECTED", "SOFTMAX"),
        ("Lowpass",),
        49152,
    )
    assert firmware.inputs is not None and firmware.outputs is None
    assert firmware.inputs[0].model_dump() == {
        "shape": (1, 8),
        "dtype": "INT8",
        "scale": 0.05,
        "zero_point": -3,
    }


def test_a_spec_without_a_declaration_signs_no_firmware_field(workspace: Path) -> None:
    release("rel1", "rel2")
    payload = json.loads(read_envelope("release.json").payload_bytes())
    assert all("firmware" not in component for component in payload["components"])


def test_only_the_firmware_component_may_carry_a_declaration(workspace: Path) -> None:
    spec = json_spec()
    spec["components"][1]["firmware"] = {"builtin_ops": ["CONV_2D"], "ram_bytes": 1024}
    Path("spec.json").write_text(json.dumps(spec))
    bad_input(
        "components[1]: Value error, only a firmware component carries a firmware declaration",
        "release",
        "spec.json",
        "--key=keys/rel1.key",
        "--out=r.json",
    )


def test_spec_may_not_set_the_signing_time(workspace: Path) -> None:
    Path("spec.json").write_text(json.dumps({**json_spec(), "created": "2020-01-01T00:00:00Z"}))
    bad_input(
        "created: set by the signer", "release", "spec.json", "--key=keys/rel1.key", "--out=r.json"
    )


# --- show and sign ------------------------------------------------------------------------


def test_show_prints_payload_and_keyids(workspace: Path) -> None:
    release("rel1", "rel2")
    result = ok("show", "release.json")
    assert "application/vnd.tinyfleet.release+json" in result.output
    assert '"device_class": "nrf52840-kws"' in result.output
    for signature in read_envelope("release.json").signatures:
        assert signature.keyid in result.output


def test_sign_adds_a_signature_to_a_release(workspace: Path) -> None:
    release("rel1")
    ok("sign", "release.json", "--key=keys/rel2.key", "--out=both.json")
    ok("verify", "--root=root.json", "both.json")
    bad_input(
        "refusing to overwrite", "sign", "release.json", "--key=keys/rel2.key", "--out=both.json"
    )


# --- as a real process --------------------------------------------------------------------


def fresh_env(home: Path) -> dict[str, str]:
    """No inherited variables: only the interpreter's bin directory on PATH."""
    bin_dir = Path(sys.executable).parent
    return {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(home),
        "LC_ALL": "C.UTF-8",
        "COLUMNS": "160",
    }


def test_docs_show_the_round_trip_that_is_tested() -> None:
    root = Path(__file__).resolve().parents[2]
    docs = (root / "docs" / "fleet-sign.md").read_text()
    section = docs.split("## Round trip\n\n```sh\n", 1)[1]
    assert section.split("```", 1)[0] == README_ROUND_TRIP
    readme = (root / "README.md").read_text()
    assert f"```sh\n{README_ROUND_TRIP}```" in readme


def test_readme_round_trip_in_a_fresh_shell(tmp_path: Path) -> None:
    write_spec(tmp_path)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", README_ROUND_TRIP],
        cwd=tmp_path,
        env=fresh_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "OK: release trusted under root v1; every artifact matches" in done.stdout
    refusal = subprocess.run(
        ["fleet-sign", "verify", "--root", "root.json", "release.toml"],
        cwd=tmp_path,
        env=fresh_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refusal.returncode == 1
    assert "refused (malformed)" in refusal.stderr
    assert "Traceback" not in refusal.stderr


BLOCKED_SERVER_DEPS = """
import importlib.abc, sys
BLOCKED = {"fastapi", "sqlmodel", "sqlalchemy", "paho", "aiocoap", "structlog", "fleet"}

class ServerBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is blocked: the signer must not need it")
        return None

sys.meta_path.insert(0, ServerBlocker())
from signer.cli import main

def run(expected, *argv):
    try:
        main(list(argv))
    except SystemExit as exc:
        assert (exc.code or 0) == expected, (argv, exc.code)

for name in ("root", "rel1", "rel2", "rel3", "director"):
    run(0, "keygen", name, "--dir", "keys")
run(0, "root", "init", "--root-key=keys/root.key.pub", "--root-threshold=1",
    "--release-key=keys/rel1.key.pub", "--release-key=keys/rel2.key.pub",
    "--release-key=keys/rel3.key.pub", "--release-threshold=2",
    "--director-key=keys/director.key.pub", "--director-threshold=1",
    "--sign-with=keys/root.key", "--out=root.json")
run(0, "release", "release.toml", "--key=keys/rel1.key", "--key=keys/rel2.key",
    "--out=release.json", "--artifacts-dir=store")
run(0, "verify", "--root=root.json", "release.json", "--artifacts-dir=store")
run(0, "release", "release.toml", "--key=keys/rel1.key", "--out=weak.json")
run(1, "verify", "--root=root.json", "weak.json")
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
assert not loaded, loaded
"""


def test_signer_runs_without_the_server_dependencies(tmp_path: Path) -> None:
    write_spec(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_SERVER_DEPS],
        cwd=tmp_path,
        env=fresh_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "OK: release trusted" in done.stdout
