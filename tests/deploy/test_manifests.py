"""The deployment files, validated offline: Kubernetes manifests against the pinned
Kubernetes version's schemas (kubernetes-validate, strict: unknown fields are errors),
the compose file by a compose-spec parser; then the hardening each must carry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyOptions

from service.budget import worker_memory_bound
from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
#: The Kubernetes version the manifests are validated against (kubernetes-validate ships its schemas).
KUBERNETES_VERSION = "1.33.0"
COMPOSE = ROOT / "docker-compose.yml"


def documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_is_valid_for_the_pinned_kubernetes(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_misspelled_field() -> None:
    deployment = documents()["Deployment"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_four_kinds_select_the_same_pods() -> None:
    docs = documents()
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["Service"]["spec"]["selector"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] < docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"]


def test_the_pod_is_locked_down_and_probed() -> None:
    pod = documents()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]  # the only writable path
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    env = {e["name"]: e["value"] for e in container["env"]}
    Settings(**{k.removeprefix("PENALTY_").lower(): v for k, v in env.items()})  # valid settings
    assert int(env["PENALTY_TIMEOUT_GRACEFUL_SHUTDOWN"]) < pod["terminationGracePeriodSeconds"]


def test_memory_limits_cover_the_workers_admission_budgets() -> None:
    """Each worker and its offload pool stay within ``worker_memory_bound`` (README), taking
    128 MiB for a process at rest (measured: 72 MiB)."""
    per_worker = worker_memory_bound(Settings.model_construct(), 128 * 2**20)
    container = documents()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    workers = int({e["name"]: e["value"] for e in container["env"]}["PENALTY_WORKERS"])
    limit = container["resources"]["limits"]["memory"]
    assert int(limit.removesuffix("Gi")) * 2**30 >= workers * per_worker
    compose = yaml.safe_load(COMPOSE.read_text())
    for name in ("api", "replica"):
        service = compose["services"][name]
        megabytes = int(service["mem_limit"].removesuffix("m"))
        assert megabytes * 2**20 >= int(service["environment"]["PENALTY_WORKERS"]) * per_worker, name


# --- docker-compose.yml ----------------------------------------------------------------------


def interpolated(text: str) -> str:
    """``${VAR:-default}`` with its default, as compose does when VAR is unset."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m[2], text)


def test_compose_file_is_valid_compose() -> None:
    PyOptions(apply_merge=True).from_yaml(interpolated(COMPOSE.read_text())).validate()


def test_compose_validation_can_fail() -> None:
    with pytest.raises(ValueError, match=r"pids_limit|u32"):
        PyOptions(apply_merge=True).from_yaml(interpolated(COMPOSE.read_text()).replace("pids_limit: 256", "pids_limit: many"))


def test_compose_containers_are_limited_and_publish_on_loopback() -> None:
    compose = PyOptions(apply_merge=True).from_yaml(interpolated(COMPOSE.read_text())).to_dict()
    for name, service in compose["services"].items():
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["mem_limit"] and service["cpus"] and service["pids_limit"], name
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    for name in ("api", "replica"):
        assert compose["services"][name]["read_only"] is True
        assert compose["services"][name]["tmpfs"] == ["/tmp"]
    raw = COMPOSE.read_text()
    assert raw.count("${PENALTY_PUBLISH_ADDRESS:-127.0.0.1}") == 2  # overridable


def test_nginx_hardening() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    for directive in ("server_tokens off;", "limit_conn per_client_conn", "limit_req zone=per_client_rate",
                      "client_header_timeout", "client_body_timeout", "send_timeout", "proxy_read_timeout",
                      "proxy_buffering off;", "proxy_set_header X-Request-ID $request_id;"):
        assert directive in conf, directive
