"""The container and the manifests say what SPEC and the operators need (checked statically;
deploy/verify-image-steps.sh runs the image's steps for real in CI)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).parent.parent.parent
DEPLOY = REPO / "deploy"


def _dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    """Two slim stages; the runtime stage runs as uid 10001, never root."""
    steps = _dockerfile()
    bases = [arg for cmd, arg in steps if cmd == "FROM"]
    assert len(bases) == 2 and all("-slim" in base for base in bases)
    users = [arg for cmd, arg in steps if cmd == "USER"]
    assert users == ["10001:10001"]


def test_dockerfile_runs_the_daemon_as_pid_1_with_a_healthcheck() -> None:
    """Exec-form ENTRYPOINT (SIGTERM reaches riskwatch), HEALTHCHECK on /healthz."""
    steps = dict(_dockerfile())
    assert json.loads(steps["ENTRYPOINT"]) == ["riskwatch"]
    assert json.loads(steps["CMD"]) == ["run"]
    assert "/healthz" in steps["HEALTHCHECK"] and "CMD [" in steps["HEALTHCHECK"]


def test_dockerfile_reads_rules_from_etc_and_keeps_state_on_a_volume() -> None:
    """Rules in /etc/riskwatch/rules, state on /var/lib/riskwatch, HTTP on all interfaces."""
    steps = _dockerfile()
    env = " ".join(arg for cmd, arg in steps if cmd == "ENV")
    assert "RISKWATCH_RULES=/etc/riskwatch/rules" in env
    assert "RISKWATCH_STATE=sqlite:////var/lib/riskwatch/state.db" in env
    assert "RISKWATCH_HTTP=0.0.0.0:9464" in env
    assert ("VOLUME", '["/var/lib/riskwatch"]') in steps
    for cmd, arg in steps:
        if cmd == "COPY" and "--from" not in arg:
            source = arg.split()[0]
            assert (REPO / source).exists(), source


def _manifests() -> dict[str, Any]:
    docs: dict[str, Any] = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_kubernetes_deployment_is_hardened_and_probed() -> None:
    """Probes on /healthz and /readyz, limits, non-root, read-only root, secrets as files."""
    docs = _manifests()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(container["resources"]) == {"requests", "limits"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/run/secrets"]]["secret"]["secretName"] == "riskwatch-secrets"
    assert volumes[mounts["/etc/riskwatch/rules"]]["configMap"]["name"] == "riskwatch-rules"
    assert "RISKWATCH_TREAD_TOKEN" in docs["Secret"]["stringData"]
    generator = docs["Kustomization"]["configMapGenerator"][0]
    assert all((DEPLOY / "kubernetes" / f).resolve().exists() for f in generator["files"])


def test_compose_has_a_single_service_and_a_replica_profile() -> None:
    """Compose runs riskwatch alone, or two replicas on PostgreSQL under a profile."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["riskwatch"]["read_only"] is True
    assert services["postgres"]["profiles"] == ["replicas"]
    assert {"riskwatch-a", "riskwatch-b"} <= set(services)
    assert "RISKWATCH_STATE" in services["riskwatch-b"]["secrets"]


def test_systemd_unit_is_hardened_and_reloads_with_sighup() -> None:
    """The unit drops privileges, protects the system and maps reload to SIGHUP."""
    unit = (DEPLOY / "systemd" / "riskwatch.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.MULTILINE))
    assert settings["ExecStart"] == "/opt/riskwatch/bin/riskwatch run"
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    for key, value in {"DynamicUser": "yes", "NoNewPrivileges": "yes",
                       "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": ""}.items():
        assert settings[key] == value, key
