"""deploy/: the compose file and Kubernetes manifests agree with the image and with each other.

They are written, not run here (no cluster, no registry to pull Redis from): these checks catch the
mistakes that would only show at deploy time (a selector that matches nothing, a secret path that
is not mounted, probes on the wrong paths, a grace period SIGKILL cuts short).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bffgate.cli import _parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
CONTAINERFILE = (DEPLOY.parent / "Containerfile").read_text()
SECRET_SETTINGS = {"ETLS_ACCESS_FILE", "ETLS_REFRESH_FILE", "REDIS_URL_FILE"}


def kubernetes() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of the kustomization, by (kind, name)."""
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    objects = {}
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((DEPLOY / "kubernetes" / resource).read_text()):
            objects[document["kind"], document["metadata"]["name"]] = document
    return objects


def image_setting(name: str) -> str:
    match = re.search(rf"^\s*{name}[= ](\S+)", CONTAINERFILE, re.MULTILINE)
    assert match, name
    return match.group(1)


def test_the_deployment_runs_replicas_with_probes_and_secrets_as_files() -> None:
    """Two or more replicas share Redis, probe /healthz and /readyz, and read secrets from a mount."""
    objects = kubernetes()
    deployment = objects["Deployment", "bffgate"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] >= 2
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert str(ports["http"]) == image_setting("BFF_PORT")

    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert set(env) >= SECRET_SETTINGS and not {"ETLS_ACCESS", "ETLS_REFRESH", "REDIS_URL"} & set(env)
    assert env["BFF_SESSION_STORE"] == "redis"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "secrets"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    for setting in SECRET_SETTINGS:
        directory, _, key = env[setting].rpartition("/")
        assert directory == mount["mountPath"], setting
        assert key == setting.removesuffix("_FILE").lower()  # the key `kubectl create secret` is told
    assert volume["secret"]["secretName"] == "bffgate-secrets"
    assert ("Service", "redis") in objects


def test_the_pods_are_non_root_read_only_and_outlive_their_graceful_stop() -> None:
    """The pod runs as the image's user on a read-only root; SIGKILL never cuts a graceful stop short."""
    pod = kubernetes()["Deployment", "bffgate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    user = image_setting("USER")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == user
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    graceful = _parser().parse_args(["serve"]).graceful_timeout
    assert pod["terminationGracePeriodSeconds"] > pre_stop + graceful


def test_the_disruption_budget_and_service_select_the_gateway_pods() -> None:
    """The PodDisruptionBudget and the Service select exactly the Deployment's pods."""
    objects = kubernetes()
    labels = objects["Deployment", "bffgate"]["spec"]["template"]["metadata"]["labels"]
    budget = objects["PodDisruptionBudget", "bffgate"]["spec"]
    assert budget["selector"]["matchLabels"] == labels
    assert budget["minAvailable"] >= 1
    assert objects["Service", "bffgate"]["spec"]["selector"] == labels


def test_compose_mounts_every_secret_it_names() -> None:
    """In compose, bffgate reads ETLS and Redis settings from secret files it actually mounts."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    gateway = compose["services"]["bffgate"]
    assert set(compose["services"]) == {"bffgate", "redis", "api"}
    assert gateway["read_only"] is True
    assert gateway["build"]["dockerfile"] == "Containerfile"
    assert gateway["ports"] == [f"127.0.0.1:8000:{image_setting('BFF_PORT')}"]
    env = gateway["environment"]
    mounted = {f"/run/secrets/{name}" for name in gateway["secrets"]}
    assert {env[setting] for setting in SECRET_SETTINGS} == mounted
    assert set(gateway["secrets"]) <= set(compose["secrets"])
    assert env["REMOTE_API"] == "http://api:9000"
    assert env["REDIS_URL_FILE"] and gateway["depends_on"]["redis"]["condition"] == "service_healthy"
