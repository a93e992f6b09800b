"""deploy/compose.yaml: valid against the Compose Specification's JSON Schema, and its
services wired to each other, to the image and to the configs they name."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from fleet.settings import Settings
from tests.deploy.compose import COMPOSE, dotenv, load, variables
from tests.deploy.dockerfile import DOCKERFILE, ROOT, dockerignored, instructions, stages

SCHEMA_FILE = ROOT / "tests" / "deploy" / "schemas" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
COMPOSE_DOC = load()
SERVICES: dict[str, Any] = COMPOSE_DOC["services"]
REPLICAS = ["fleet-1", "fleet-2"]
IMAGE_ENV = next(
    i for i in stages(instructions(DOCKERFILE.read_text()))["server"] if i.keyword == "ENV"
).pairs()


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _problems(document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator().iter_errors(document)
    ]


def test_the_vendored_schema_is_the_one_its_readme_names() -> None:
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert SCHEMA_SHA256 in (SCHEMA_FILE.parent / "README.md").read_text()


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert _problems(COMPOSE_DOC) == []


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        ("lb", "imagee", "nginx"),  # a misspelt key
        ("postgres", "restart", ["always"]),  # a wrong type
        ("fleet-1", "depends_on", {"migrate": {"condition": "service_done"}}),  # no such value
    ],
)
def test_the_schema_refuses_what_compose_would(where: str, key: str, value: object) -> None:
    broken = load()
    broken["services"][where][key] = value
    assert _problems(broken)


def test_every_variable_has_an_example_and_every_example_is_obviously_one() -> None:
    assert variables(COMPOSE.read_text()) - {"TINYFLEET_IMAGE", "TINYFLEET_SIM_IMAGE"} <= set(
        dotenv()
    )
    secrets = {k: v for k, v in dotenv().items() if re.search("PASSWORD|TOKEN", k)}
    assert len(secrets) == 3
    assert all("example" in value and "change-me" in value for value in secrets.values())


def test_a_missing_secret_stops_compose_with_its_name() -> None:
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        load({k: v for k, v in dotenv().items() if k != "POSTGRES_PASSWORD"})


def test_no_secret_is_written_in_the_compose_file() -> None:
    text = COMPOSE.read_text()
    raw = load({name: f"<{name}>" for name in variables(text)})
    urls = [
        raw["x-fleet"]["environment"][name] for name in ("FLEET_DATABASE_URL", "FLEET_MQTT_URL")
    ]
    assert [urlsplit(url).password for url in urls] == [
        "<POSTGRES_PASSWORD>",
        "<MQTT_SERVER_PASSWORD>",
    ]
    for service in raw["services"].values():
        for name, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|TOKEN", name):
                assert re.fullmatch(r"<\w+>", value), f"{name} is not interpolated"


def test_referenced_services_configs_secrets_volumes_and_networks_are_declared() -> None:
    for name, service in SERVICES.items():
        assert set(service.get("depends_on", {})) <= set(SERVICES), name
        for kind in ("configs", "secrets"):
            for ref in service.get(kind, []):
                assert (ref if isinstance(ref, str) else ref["source"]) in COMPOSE_DOC[kind], name
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in COMPOSE_DOC["volumes"], name
        assert set(service.get("networks", [])) <= set(COMPOSE_DOC["networks"]), name


def test_config_files_exist_and_local_ones_are_kept_out_of_git_and_the_image() -> None:
    gitignore = (ROOT / ".gitignore").read_text().split()
    for kind in ("configs", "secrets"):
        for entry in COMPOSE_DOC[kind].values():
            path = (COMPOSE.parent / entry["file"]).resolve().relative_to(ROOT).as_posix()
            local = path.split("/")[1] in ("trust", "secrets")
            assert local or (ROOT / path).is_file(), path
            if local:
                assert f"/{path.rsplit('/', 1)[0]}/" in gitignore, path
                assert dockerignored(path), path
    assert "/deploy/.env" in gitignore and dockerignored("deploy/.env")


def test_migrations_run_once_after_postgres_is_healthy_and_before_the_replicas() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "healthcheck" in SERVICES["postgres"]
    for replica in REPLICAS:
        needs = SERVICES[replica]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}
        assert "command" not in SERVICES[replica], "the image's default: fleet serve"


def test_replicas_share_the_data_volume_and_have_their_own_mqtt_client_ids() -> None:
    client_ids = [SERVICES[r]["environment"]["FLEET_MQTT_CLIENT_ID"] for r in REPLICAS]
    assert len(set(client_ids)) == len(REPLICAS)
    mounts = {tuple(SERVICES[r]["volumes"]) for r in REPLICAS}
    assert mounts == {(f"fleet-data:{IMAGE_ENV['FLEET_DATA_DIR']}",)}


def test_every_fleet_variable_is_a_setting_and_the_settings_load() -> None:
    for replica in REPLICAS:
        env = SERVICES[replica]["environment"]
        fleet = {
            k.removeprefix("FLEET_").lower(): v for k, v in env.items() if k.startswith("FLEET_")
        }
        assert fleet.keys() <= Settings.model_fields.keys(), replica
        Settings(**fleet)
    assert (
        SERVICES["fleet-1"]["environment"]["FLEET_DIRECTOR_KEY_PATH"] == "/run/secrets/director_key"
    )


def _listeners(conf: str) -> dict[int, list[str]]:
    """Port → the option lines under its ``listener`` line."""
    found: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in (raw.strip() for raw in conf.splitlines()):
        if line.startswith("listener "):
            current = found.setdefault(int(line.split()[1]), [])
        elif line and not line.startswith("#") and current is not None:
            current.append(line)
    return found


def test_every_login_is_checked_by_the_dynsec_plugin_on_both_listeners() -> None:
    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.compose.conf").read_text()
    lines = conf.splitlines()
    # Global settings: 2.0's dynsec plugin cannot be one listener's alone.
    assert "per_listener_settings false" in lines
    assert "allow_anonymous false" in lines and "allow_anonymous true" not in lines
    plugin_file = next(
        line.split()[1] for line in lines if line.startswith("plugin_opt_config_file")
    )
    listeners = _listeners(conf)
    assert not any("use_username_as_clientid" in o for opts in listeners.values() for o in opts)
    server = urlsplit(SERVICES["fleet-1"]["environment"]["FLEET_MQTT_URL"])
    assert (server.hostname, server.username) == ("mosquitto", "fleet-server")
    published = [int(p.split(":")[0]) for p in SERVICES["mosquitto"]["ports"]]
    assert server.port in listeners and server.port not in published
    assert published == [urlsplit(SERVICES["fleet-sim"]["environment"]["SIM_MQTT_URL"]).port]
    assert set(listeners) == {server.port, *published}
    # The plugin's file lives on the broker's volume, which broker-init writes first.
    init = SERVICES["broker-init"]
    assert SERVICES["mosquitto"]["depends_on"] == {
        "broker-init": {"condition": "service_completed_successfully"}
    }
    (volume,) = SERVICES["mosquitto"]["volumes"]
    assert init["volumes"] == [volume]
    assert plugin_file.startswith(volume.split(":", 1)[1] + "/")
    assert f"--out {plugin_file}" in init["command"][0]
    assert f"[ -f {plugin_file} ]" in init["command"][0], "a restart keeps the plugin's file"


def test_the_replicas_manage_device_logins_and_bundles_name_the_device_listener() -> None:
    for replica in REPLICAS:
        env = SERVICES[replica]["environment"]
        assert env["FLEET_BROKER_ACCOUNTS"] == "dynsec"
        assert env["FLEET_MQTT_CLIENT_ID"].startswith("fleet-"), "the server's namespace"
        public = urlsplit(env["FLEET_PUBLIC_MQTT_URL"])
        assert public.port == int(SERVICES["mosquitto"]["ports"][0].split(":")[0])


def test_the_sim_service_scales_and_sets_only_what_its_entrypoint_reads() -> None:
    sim = SERVICES["fleet-sim"]
    assert "container_name" not in sim and "ports" not in sim
    assert sim["build"]["target"] == "sim" and sim["profiles"] == ["sim"]
    script = (ROOT / "deploy" / "fleet-sim" / "entrypoint.py").read_text()
    read = set(re.findall(r'_env\("([A-Z_]+)"', script))
    assert set(sim["environment"]) <= read
    assert urlsplit(sim["environment"]["FLEET_URL"]).hostname == "lb"
    assert sim["configs"][0]["target"] == sim["environment"]["SIM_ROOT"]
