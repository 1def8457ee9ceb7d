"""The deployment files say what the code does: docker-compose.yml is a valid Compose file
with every hardening option, and each Kubernetes manifest parses and names the queue the
code consumes.

No Docker engine or cluster runs here. `docker compose config` / `docker-compose config`
is run when either client can (it needs no engine); the Compose file is always checked
against the Compose Specification's JSON schema (tests/deploy/compose-spec.json, from
compose-spec/compose-spec at 170098b). KEDA's ScaledObject is a CRD with no schema to hand,
so its fields are checked by name."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lucid.settings import STAGES, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
SCHEMA = Path(__file__).with_name("compose-spec.json")
LUCID_SERVICES = ["api", "beat", "flower", *(f"worker-{stage}" for stage in STAGES)]


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _all_manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _docs(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} is defined twice"
            found[key] = doc
    return found


def _config_map() -> dict[str, str]:
    data = _all_manifests()[("ConfigMap", "lucid-config")]["data"]
    assert isinstance(data, dict)
    return data


def _validator() -> jsonschema.Draft7Validator:
    # the schema names draft-07 by an https URL jsonschema does not know: say it here
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def test_compose_file_is_valid_against_the_compose_spec_schema() -> None:
    _validator().validate(_compose())


def test_compose_schema_check_rejects_a_broken_file() -> None:
    # the schema check above can fail: a misspelt key is refused
    broken = _compose()
    broken["services"]["api"]["read_onyl"] = True
    with pytest.raises(jsonschema.ValidationError):
        _validator().validate(broken)


def _compose_client() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


def test_compose_client_accepts_the_file(tmp_path: Path) -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here")
    # secrets are files the operator makes; config only needs them to exist
    project = tmp_path / "project"
    shutil.copytree(ROOT / "deploy", project / "deploy")
    shutil.copy(COMPOSE, project / "docker-compose.yml")
    for secret in _compose()["secrets"].values():
        target = project / secret["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("placeholder\n")
    result = subprocess.run(
        [*client, "-f", str(project / "docker-compose.yml"), "config", "--quiet"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_compose_has_seaweedfs_and_no_shared_data_volume() -> None:
    compose = _compose()
    assert "seaweedfs" in compose["services"]
    for name in LUCID_SERVICES:
        service = compose["services"][name]
        assert service["environment"]["BLOB_BACKEND"] == "s3", name
        assert service["environment"]["S3_ENDPOINT_URL"].startswith("http://seaweedfs:"), name
        # no named volume: a Lucid container shares no filesystem with another
        assert not service.get("volumes"), f"{name} mounts {service.get('volumes')}"


def test_every_service_is_hardened_and_health_checked() -> None:
    for name, service in _compose()["services"].items():
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_secrets_are_mounted_per_role() -> None:
    services = _compose()["services"]

    def secrets_of(name: str) -> set[str]:
        return {
            s["source"] if isinstance(s, dict) else s for s in services[name].get("secrets", [])
        }

    # only the anchoring roles can sign the ledger; nobody in the stack can decrypt
    signers = {name for name in services if "ledger-key" in secrets_of(name)}
    assert signers == {"worker-merkle", "worker-anchor"}
    assert not any("recipient-key" in secrets_of(name) for name in services)
    assert "recipient-pub" in secrets_of("worker-encrypt")
    assert secrets_of("flower") == {"flower-basic-auth"}
    assert secrets_of("worker-compress") == {"s3-credentials"}
    for name in LUCID_SERVICES:
        env = services[name]["environment"]
        assert not any("SECRET" in key or "PASSWORD" in key for key in env), name


def test_published_ports_bind_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_flower_needs_a_password_and_has_no_default() -> None:
    conf = (ROOT / "deploy" / "flower" / "flowerconfig.py").read_text()
    assert "change-me" not in conf
    run = subprocess.run(
        ["python3", str(ROOT / "deploy" / "flower" / "flowerconfig.py")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert run.returncode != 0 and "FLOWER_BASIC_AUTH" in run.stderr


def test_workers_join_with_lucid_workers_stages() -> None:
    services = _compose()["services"]
    for stage in STAGES:
        assert services[f"worker-{stage}"]["command"] == ["lucid", "workers", "--stages", stage]


def test_runtime_image_is_distroless_python3_debian12() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    stages = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert stages[-1].startswith("gcr.io/distroless/python3-debian12")
    # the build stage's python must be the one distroless ships (Debian 12's 3.11)
    assert stages[0].startswith("debian:12")
    assert "USER 65532" in dockerfile


def test_every_manifest_parses_and_is_hardened() -> None:
    manifests = _all_manifests()
    deployments = [doc for (kind, _), doc in manifests.items() if kind == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} >= {
        "lucid-api",
        "lucid-flower",
        *(f"lucid-worker-{stage}" for stage in STAGES),
    }
    for deployment in deployments:
        spec = deployment["spec"]
        assert (
            spec["selector"]["matchLabels"].items()
            <= spec["template"]["metadata"]["labels"].items()
        )
        for container in spec["template"]["spec"]["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["runAsNonRoot"] is True
    for name in ("lucid-api", "lucid-flower"):
        service = manifests[("Service", name)]
        assert (
            service["spec"]["selector"]
            == manifests[("Deployment", name)]["spec"]["selector"]["matchLabels"]
        )


def test_flower_manifest_requires_its_auth_secret() -> None:
    container = _all_manifests()[("Deployment", "lucid-flower")]["spec"]["template"]["spec"][
        "containers"
    ][0]
    auth = next(e for e in container["env"] if e["name"] == "FLOWER_BASIC_AUTH")
    assert auth["valueFrom"]["secretKeyRef"]["optional"] is False


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_has_a_deployment_and_a_scaled_object_on_its_prefixed_queue(stage: str) -> None:
    manifests = _all_manifests()
    name = f"lucid-worker-{stage}"
    deployment = manifests[("Deployment", name)]
    scaled = manifests[("ScaledObject", name)]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["lucid", "workers", "--stages", stage]
    assert {"configMapRef": {"name": "lucid-config"}} in container["envFrom"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == name
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    # the list the workers consume: the code's queue name under the ConfigMap's prefix
    settings = load_settings(dict(_config_map()))
    assert settings.queue_prefix, "the manifests are meant to show a QUEUE_PREFIX"
    assert trigger["metadata"]["listName"] == settings.queue_name(stage)
    assert trigger["metadata"]["address"].split(":")[0] in _config_map()["REDIS_URL"]


def test_lucid_sends_no_priorities_so_one_list_per_queue_is_the_whole_depth() -> None:
    # KEDA watches one list per queue; kombu would put prioritised messages on
    # "<queue>\x06\x16<n>" lists it does not see. Nothing in the code sets a priority.
    import celeryconfig

    assert not getattr(celeryconfig, "task_default_priority", None)
    assert not getattr(celeryconfig, "task_queue_max_priority", None)
    for folder in ("tasks", "api", "cli", "lucid"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "priority=" not in path.read_text(), path
