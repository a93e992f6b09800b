"""deploy/k8s: every object valid against the Kubernetes JSON Schemas (strict: unknown
fields refused) of the oldest and newest version checked, and the objects wired to each
other, to the image and to the server's settings."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate.utils as kubernetes_validate
import pytest
import yaml

from fleet.settings import Settings
from tests.deploy.dockerfile import DOCKERFILE, ROOT, instructions, stages

K8S = ROOT / "deploy" / "k8s"
# Oldest and newest Kubernetes minor checked; kubernetes-validate ships schemas of both.
VERSIONS = ["1.31", "1.37"]
FILES = sorted(K8S.rglob("*.yaml"))
OBJECTS = [doc for path in FILES for doc in yaml.safe_load_all(path.read_text()) if doc]
SERVER = stages(instructions(DOCKERFILE.read_text()))["server"]
IMAGE_ENV = next(i for i in SERVER if i.keyword == "ENV").pairs()


def _object(kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


STATEFULSET = _object("StatefulSet", "tinyfleet")
POD = STATEFULSET["spec"]["template"]["spec"]
(FLEET,) = POD["containers"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "manifest", OBJECTS, ids=[f"{o['kind']}/{o['metadata']['name']}" for o in OBJECTS]
)
def test_valid_against_the_kubernetes_schema(manifest: dict[str, Any], version: str) -> None:
    assert kubernetes_validate.validate(manifest, version, strict=True) == version


def _misspelt_field(container: dict[str, Any]) -> None:
    container["readinesProbe"] = container.pop("readinessProbe")


def _wrong_type(container: dict[str, Any]) -> None:
    container["ports"][0]["containerPort"] = "8080"


def _probe_without_a_handler(container: dict[str, Any]) -> None:
    container["livenessProbe"]["httpget"] = container["livenessProbe"].pop("httpGet")


@pytest.mark.parametrize("breakage", [_misspelt_field, _wrong_type, _probe_without_a_handler])
def test_the_schema_refuses_a_broken_manifest(breakage: Any) -> None:
    broken = copy.deepcopy(STATEFULSET)
    breakage(broken["spec"]["template"]["spec"]["containers"][0])
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_the_kinds_are_the_ones_docs_deploy_md_describes() -> None:
    kinds = sorted({o["kind"] for o in OBJECTS})
    assert kinds == ["ConfigMap", "PersistentVolumeClaim", "Secret", "Service", "StatefulSet"]
    secrets = [
        p for p in FILES if any(d["kind"] == "Secret" for d in yaml.safe_load_all(p.read_text()))
    ]
    assert [p.relative_to(K8S).as_posix() for p in secrets] == ["examples/secret.yaml"], (
        "`kubectl apply -f deploy/k8s/` (not recursive) must not install the example Secret"
    )


def test_two_replicas_with_stable_names_as_their_mqtt_client_ids() -> None:
    assert STATEFULSET["spec"]["replicas"] == 2
    assert STATEFULSET["spec"]["podManagementPolicy"] == "Parallel"
    env = {e["name"]: e for e in FLEET["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # Kubernetes expands $(POD_NAME) only from a variable defined before this one.
    names = [e["name"] for e in FLEET["env"]]
    assert names.index("POD_NAME") < names.index("FLEET_MQTT_CLIENT_ID")
    client_id = env["FLEET_MQTT_CLIENT_ID"]["value"]
    assert client_id == "fleet-$(POD_NAME)", "stable per pod, in the server's namespace"
    governing = _object("Service", STATEFULSET["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"


def test_ready_on_readyz_alive_on_healthz_on_the_image_api_port() -> None:
    ports = {p["name"]: p for p in FLEET["ports"]}
    assert ports["http"]["containerPort"] == int(IMAGE_ENV["FLEET_HTTP_PORT"])
    assert (ports["coap"]["containerPort"], ports["coap"]["protocol"]) == (
        int(IMAGE_ENV["FLEET_COAP_PORT"]),
        "UDP",
    )
    assert FLEET["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert FLEET["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert FLEET["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_services_select_the_pods_and_name_their_ports() -> None:
    labels = STATEFULSET["spec"]["template"]["metadata"]["labels"]
    assert STATEFULSET["spec"]["selector"]["matchLabels"].items() <= labels.items()
    names = {p["name"] for p in FLEET["ports"]}
    for service in (o for o in OBJECTS if o["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
    assert _object("Service", "tinyfleet")["spec"]["sessionAffinity"] == "ClientIP"


def test_runs_as_the_image_user_with_the_shared_volume_at_the_data_dir() -> None:
    uid, gid = next(i for i in SERVER if i.keyword == "USER").args.split(":")
    context = POD["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["runAsNonRoot"]) == (
        int(uid), int(gid), True,
    )  # fmt: skip
    for container in (*POD["initContainers"], FLEET):
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["data"] == IMAGE_ENV["FLEET_DATA_DIR"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (data,) = [v for v in POD["volumes"] if v["name"] == "data"]
    claim = _object("PersistentVolumeClaim", data["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_migration_runs_first_from_the_same_image() -> None:
    (migrate,) = POD["initContainers"]
    assert (migrate["image"], migrate["args"]) == (FLEET["image"], ["migrate"])
    assert migrate["envFrom"] == FLEET["envFrom"]


def _settings_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for source in FLEET["envFrom"]:
        kind, ref = (
            ("ConfigMap", "configMapRef") if "configMapRef" in source else ("Secret", "secretRef")
        )
        found = _object(kind, source[ref]["name"])
        env |= found.get("data") or found["stringData"]
    return env


def test_configmap_and_secret_hold_settings_the_server_accepts() -> None:
    env = _settings_env()
    fleet = {k.removeprefix("FLEET_").lower(): v for k, v in env.items()}
    assert all(k.startswith("FLEET_") for k in env)
    assert fleet.keys() <= Settings.model_fields.keys()
    settings = Settings(**fleet)
    assert settings.database_url and settings.database_url.startswith("postgresql://")
    assert settings.broker_accounts == "dynsec"
    assert settings.mqtt_url and urlsplit(settings.mqtt_url).username == "fleet-server"
    secret = _object("Secret", "tinyfleet-secrets")["stringData"]
    assert all("example" in value and "change-me" in value for value in secret.values())


def test_the_root_and_director_key_are_mounted_where_the_settings_point() -> None:
    env = _settings_env()
    mounts = {m["name"]: Path(m["mountPath"]) for m in FLEET["volumeMounts"]}
    volumes = {v["name"]: v for v in POD["volumes"]}
    root, key = Path(env["FLEET_ROOT_PATH"]), Path(env["FLEET_DIRECTOR_KEY_PATH"])
    assert root.parent == mounts["root"] and key.parent == mounts["director-key"]
    assert volumes["root"]["configMap"]["name"] == "tinyfleet-root"
    assert volumes["director-key"]["secret"]["secretName"] == "tinyfleet-director-key"
    assert volumes["director-key"]["secret"]["defaultMode"] == 0o440  # group 10001 reads it
    guide = (K8S / "configmap.yaml").read_text()
    assert f"--from-file={root.name}=" in guide and f"--from-file={key.name}=" in guide
