"""deploy/kubernetes/ holds valid manifests for the scale-out deployment: each checked offline
against the schemas of a pinned Kubernetes version (kubernetes-validate bundles them), the
probes and the Prometheus scrape naming routes the processes really serve, the settings naming
keys the hub really reads, and the hardening and disruption rules every process type keeps."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, cast

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]
from kubernetes_validate.utils import SchemaNotFoundError  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry

from chat4all.config import Settings, load_settings
from chat4all.entrypoints.rest import create_app, create_probes_app
from chat4all.entrypoints.services import Services
from chat4all.metrics import HubMetrics
from chat4all.service_layer.readiness import Readiness

ROOT: Final = Path(__file__).resolve().parent.parent
MANIFESTS: Final = ROOT / "deploy" / "kubernetes"
KUBERNETES: Final = "1.33"
"""The oldest Kubernetes the manifests are for (the preStop sleep action needs 1.30)."""
NOT_APPLIED: Final = {"secret.example.yaml", "migrate-job.yaml"}
"""Manifests kustomization.yaml leaves out: an example of the Secret, and the migration Job
each release runs by hand before it rolls."""
SERVES_HTTP: Final = {"api", "serve", "worker", "relay"}
"""The ``chat4all`` commands whose process serves HTTP: the REST app (the ``api`` role), or the
probes' app alone (``worker``, ``relay``): only those can be probed over HTTP or scraped."""


def _files() -> list[Path]:
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _resources(kind: str) -> list[dict[str, Any]]:
    return [d for p in _files() for d in _documents(p) if d["kind"] == kind]


def _pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for workload in _resources(kind):
            name = workload["metadata"].get("name") or workload["metadata"]["generateName"]
            yield name, workload["spec"]["template"]


def _validate(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


async def _statuses(command: str, paths: set[str]) -> dict[str, int]:
    """The status ``command``'s HTTP app (the REST app as ``chat4all api`` serves it, or the
    probes' app of ``chat4all worker``) answers a GET of each path with; a ready process, no
    request reaching a use case."""

    ready = Readiness()  # no check: ready
    registry = CollectorRegistry(auto_describe=True)
    metrics = HubMetrics(registry)
    app = (
        create_probes_app(ready=ready, metrics=metrics)
        if command == "worker"
        else create_app(cast(Services, None), ready=ready, metrics=metrics)
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
        return {path: (await client.get(path)).status_code for path in paths}


def _configmap() -> dict[str, str]:
    (configmap,) = _resources("ConfigMap")
    return cast(dict[str, str], configmap["data"])


def test_the_schemas_are_bundled_for_the_pinned_version() -> None:
    """No network: the schemas come with the package, for the version the tests pin."""
    versions = kubernetes_validate.utils.all_versions()
    assert any(v.startswith(f"{KUBERNETES}.") for v in versions), versions


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_every_manifest_is_valid_for_the_pinned_kubernetes(path: Path) -> None:
    documents = _documents(path)
    assert documents, f"{path.name} holds no manifest"
    for document in documents:
        try:
            _validate(document)
        except SchemaNotFoundError as exc:  # the package only warns about these
            pytest.fail(f"{path.name}: {exc.message}")
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{path.name}: {document['kind']} {where}: {exc.message}")


def test_an_invalid_manifest_is_refused() -> None:
    """The check can fail: a misspelt field, a wrong type, an unknown kind."""
    (api,) = (d for d in _resources("Deployment") if d["metadata"]["name"] == "chat4all-api")
    _validate(api)
    misspelt = copy.deepcopy(api)
    probe = misspelt["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    probe["httpGet"]["pth"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError, match="pth"):
        _validate(misspelt)
    wrong_type = copy.deepcopy(api)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(wrong_type)
    with pytest.raises(SchemaNotFoundError):
        _validate({**api, "kind": "Deploymnet"})


def test_kustomization_applies_every_manifest_but_the_example_and_the_job() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in _files() if p.name not in NOT_APPLIED
    )
    assert {i["name"] for i in kustomization["images"]} == {
        c["image"] for _, t in _pod_templates() for c in t["spec"]["containers"]
    } - {c["image"] for d in _documents(MANIFESTS / "migrate-job.yaml")
         for c in d["spec"]["template"]["spec"]["containers"]}  # fmt: skip


async def test_the_probes_and_the_scrape_name_routes_the_process_serves() -> None:
    port = int(_configmap()["CHAT4ALL_PORT"])
    probed = set()
    paths: dict[str, set[str]] = {}
    for name, template in _pod_templates():
        containers = template["spec"]["containers"]
        annotations = template["metadata"].get("annotations", {})
        for container in containers:
            command = container["command"]
            assert command[0] == "chat4all", name
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if kind not in container:
                    continue
                http = container[kind]["httpGet"]
                assert command[1] in SERVES_HTTP, f"{name}: {command} serves no HTTP to probe"
                paths.setdefault(command[1], set()).add(http["path"])
                assert ports.get(http["port"], http["port"]) == port, f"{name} {kind}: port"
                probed.add((command[1], kind, http["path"]))
            if annotations.get("prometheus.io/scrape") == "true":
                assert command[1] in SERVES_HTTP, f"{name}: {command} serves no /metrics"
                paths.setdefault(command[1], set()).add(annotations["prometheus.io/path"])
                assert int(annotations["prometheus.io/port"]) == port
    for command in ("api", "worker"):
        assert {
            (command, "livenessProbe", "/health"),
            (command, "readinessProbe", "/ready"),
        } <= probed
        assert "/metrics" in paths[command]
    for command, served in paths.items():
        statuses = await _statuses(command, served | {"/no-such-route", "/v1/openapi.json"})
        assert statuses.pop("/no-such-route") == 404  # the check can fail
        api = statuses.pop("/v1/openapi.json")
        assert api == (404 if command == "worker" else 200)  # the worker serves no API
        assert statuses == dict.fromkeys(served, 200), command


def test_the_services_reach_ports_the_pods_open() -> None:
    settings = _configmap()
    for service in _resources("Service"):
        selector = service["spec"]["selector"]
        (template,) = (
            t for _, t in _pod_templates() if selector.items() <= t["metadata"]["labels"].items()
        )
        opened = {
            p["name"]: p["containerPort"]
            for c in template["spec"]["containers"]
            for p in c["ports"]
        }
        targets = {p["targetPort"] for p in service["spec"]["ports"]}
        assert targets <= opened.keys(), service["metadata"]["name"]
    assert opened == {
        "http": int(settings["CHAT4ALL_PORT"]),
        "grpc": int(settings["CHAT4ALL_GRPC_PORT"]),
    }


def test_every_process_runs_hardened_with_resources() -> None:
    for name, template in _pod_templates():
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), name
            assert {"cpu", "memory"} <= resources["limits"].keys(), name
            # the read-only root leaves these writable: scratch, DATA_DIR
            mounted = {m["mountPath"] for m in container["volumeMounts"]}
            assert {"/tmp", _configmap()["CHAT4ALL_DATA_DIR"]} <= mounted, name
            assert [
                e.get("configMapRef", e.get("secretRef"))["name"] for e in container["envFrom"]
            ] == [
                "chat4all-settings",
                "chat4all-secrets",
            ], name


def test_every_deployment_has_a_disruption_budget_and_the_scalable_ones_an_autoscaler() -> None:
    deployments = {d["metadata"]["name"]: d for d in _resources("Deployment")}
    assert set(deployments) == {"chat4all-api", "chat4all-worker", "chat4all-relay"}
    budgets = _resources("PodDisruptionBudget")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        chosen = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(chosen) == 1, f"{name}: {len(chosen)} PodDisruptionBudgets"
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    scaled = {h["spec"]["scaleTargetRef"]["name"]: h for h in _resources("HorizontalPodAutoscaler")}
    assert set(scaled) == {"chat4all-api", "chat4all-worker"}
    for name, autoscaler in scaled.items():
        assert autoscaler["spec"]["minReplicas"] == deployments[name]["spec"]["replicas"]
        assert autoscaler["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # more workers than partitions would idle
    assert scaled["chat4all-worker"]["spec"]["maxReplicas"] <= int(
        _configmap()["CHAT4ALL_PARTITIONS"]
    )
    assert deployments["chat4all-relay"]["spec"]["replicas"] == 2


def test_the_settings_name_keys_the_hub_reads_and_are_valid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A misspelt key would be ignored without a word (the settings ignore unknown keys): each
    key of the ConfigMap and of the Secret's example is one the hub reads, and together they
    are valid settings."""
    (secret,) = _documents(MANIFESTS / "secret.example.yaml")
    values = {**_configmap(), **secret["stringData"]}
    for key in [k for k in os.environ if k.startswith("CHAT4ALL_")]:
        monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(None)
    known = {f"CHAT4ALL_{field}".upper() for field in Settings.model_fields}
    for name, config in settings.channels.items():
        known |= {
            f"CHAT4ALL_{name}_{field}".upper() for field in type(config.settings).model_fields
        }
    unknown = set(values) - known
    assert not unknown, f"keys chat4all does not read: {sorted(unknown)}"
    assert settings.HOST == "0.0.0.0"  # in a pod: the Service and the probes reach it there
    assert settings.DATABASE_URL.startswith("postgresql+asyncpg://")
