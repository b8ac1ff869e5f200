"""Every file in deploy/ checked against the code: names, ports, entry points, settings.

Docker cannot run here, so the Dockerfile and compose.yaml are checked statically;
the other files are fed to the real tools (promtool, systemd-analyze, kubectl
kustomize) or loaded by the real programs in test_live.py and test_redis_acl.py.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hookline.keys import DEFAULT_QUEUE, GROUP_WORKERS, Keys
from support.deploy import (
    DEPLOY,
    PORT_VARS,
    PORTS,
    REPO,
    SERVICES,
    all_settings,
    console_scripts,
    dist_name,
    dockerfile_instructions,
    need_tool,
    settings_by_service,
)

COMPOSE = DEPLOY / "compose.yaml"
# Per-process settings that a deploy file sets itself instead of taking from .env:
# bind address (0.0.0.0 in a container), instance names (host name + pid), burst mode
# (a one-off run, not a service).
PER_INSTANCE = {
    "HOOKLINE_INGRESS_HOST",
    "HOOKLINE_INGRESS_REPLICA",
    "HOOKLINE_DISPATCHER_HOST",
    "HOOKLINE_WORKER_HOST",
    "HOOKLINE_STATUS_HOST",
    "HOOKLINE_DISPATCHER_NAME",
    "HOOKLINE_WORKER_NAME",
    "HOOKLINE_STATUS_NAME",
    "HOOKLINE_WORKER_BURST",
}

# Settings that the ingress, dispatcher, worker and status issues (3-6) add on their
# branches; the deploy files already pass them through. Once those branches are merged
# these names are in the settings classes and this set changes nothing.
FROM_OTHER_BRANCHES = {
    "HOOKLINE_INGRESS_SPOOL_DIR",
    "HOOKLINE_INGRESS_EVENTS",
    "HOOKLINE_INGRESS_INSECURE",
    "HOOKLINE_INGRESS_BODY_TIMEOUT",
    "HOOKLINE_DISPATCHER_TICK",
    "HOOKLINE_WORKER_KILL_GRACE",
    "HOOKLINE_WORKER_MAX_DELIVERIES",
    "HOOKLINE_ADMIN_TOKEN",
    "HOOKLINE_READ_TOKEN",
    "HOOKLINE_RETENTION",
    "HOOKLINE_COMMAND_TIMEOUT",
    "HOOKLINE_STATUS_SWEEP_EVERY",
    "HOOKLINE_STATUS_TRIM_EVERY",
}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not NAME=value"
            pairs[key] = value
    return pairs


# -- images ---------------------------------------------------------------------------


def test_dockerfile_builds_each_service_from_its_own_package() -> None:
    steps = dockerfile_instructions(DEPLOY / "docker" / "Dockerfile")
    runs = " ".join(args for op, args in steps if op == "RUN")
    assert "uv sync --frozen --no-dev --no-install-workspace --package hookline-${SERVICE}" in runs
    assert "uv sync --frozen --no-dev --no-editable --package hookline-${SERVICE}" in runs
    assert "/app/.venv/bin/hookline-${SERVICE} /app/.venv/bin/hookline-service" in runs
    for service in SERVICES:
        assert dist_name(service) == f"hookline-{service}"
        assert f"hookline-{service}" in console_scripts(service), service
    entry = [json.loads(args) for op, args in steps if op == "ENTRYPOINT"]
    assert entry == [["hookline-service"]]
    # Everything COPY takes from the build context (the repository root) exists.
    for op, args in steps:
        if op == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert (REPO / source).exists(), source
    users = [args for op, args in steps if op == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")
    (health,) = [args for op, args in steps if op == "HEALTHCHECK"]
    assert "/app/healthcheck.py" in health
    assert [args for op, args in steps if op == "EXPOSE"] == ["${PORT}"]
    stages = [args for op, args in steps if op == "FROM"]
    assert len(stages) == 3, "uv, build and runtime stages"


def test_dockerfile_environment_names_real_settings() -> None:
    steps = dockerfile_instructions(DEPLOY / "docker" / "Dockerfile")
    names = set()
    for op, args in steps:
        if op == "ENV":
            names |= set(re.findall(r"([A-Z_][A-Z0-9_]*)=", args))
    ours = {n for n in names if n.startswith("HOOKLINE_")} - {"HOOKLINE_SERVICE"}
    unknown = ours - all_settings() - FROM_OTHER_BRANCHES
    assert not unknown, unknown
    assert "HOOKLINE_SERVICE" in names  # read by healthcheck.py


def test_healthcheck_knows_every_service_port() -> None:
    import runpy

    module = runpy.run_path(str(DEPLOY / "docker" / "healthcheck.py"))
    assert module["PORTS"] == {s: (PORT_VARS[s], PORTS[s]) for s in SERVICES}


def test_dockerignore_keeps_what_the_build_copies() -> None:
    text = (REPO / ".dockerignore").read_text()
    for needed in (
        "!pyproject.toml",
        "!uv.lock",
        "!libs/**",
        "!services/**",
        "!deploy/docker/healthcheck.py",
    ):
        assert needed in text


# -- compose --------------------------------------------------------------------------


def test_compose_builds_one_image_per_service_on_its_port() -> None:
    services = compose()["services"]
    assert set(SERVICES) | {"redis", "nginx", "prometheus", "grafana"} == set(services)
    for service in SERVICES:
        spec = services[service]
        build = spec["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
        assert build["args"] == {"SERVICE": service, "PORT": str(PORTS[service])}
        env = spec["environment"]
        assert env[PORT_VARS[service]] == str(PORTS[service])
        assert env["REDIS_URL"].startswith(
            f"redis://{service}:${{REDIS_{service.upper()}_PASSWORD}}@redis:6379/"
        )
        assert spec["depends_on"]["redis"]["condition"] == "service_healthy"
        assert spec["image"].startswith(f"hookline-{service}:")
    assert services["worker"]["deploy"]["replicas"] == "${HOOKLINE_WORKER_REPLICAS:-2}"
    assert env_example()["HOOKLINE_WORKER_REPLICAS"] == "2"


def test_compose_environment_names_only_real_settings() -> None:
    known = settings_by_service()
    for service in SERVICES:
        env = compose()["services"][service]["environment"]
        extra = set(env) - known[service] - {"REDIS_URL"} - FROM_OTHER_BRANCHES
        assert not extra, (service, extra)


def test_env_example_lists_every_setting_and_compose_uses_every_entry() -> None:
    example = env_example()
    text = COMPOSE.read_text()
    fixed = {
        name
        for service in SERVICES
        for name in compose()["services"][service]["environment"]
        if "${" not in str(compose()["services"][service]["environment"][name])
    }
    # REDIS_URL is built per service from its ACL user's password in compose.yaml.
    # The *_FILE forms of secrets are for mounted secrets and credentials, not .env.
    files = {name for name in all_settings() if name.endswith("_FILE")}
    missing = all_settings() - set(example) - PER_INSTANCE - fixed - {"REDIS_URL"} - files
    assert not missing, f"settings missing from deploy/.env.example: {sorted(missing)}"
    unused = [name for name in example if f"${{{name}" not in text]
    assert not unused, f".env.example entries compose.yaml never reads: {unused}"
    interpolated = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    assert interpolated <= set(example), interpolated - set(example)


def test_compose_redis_has_aof_noeviction_and_the_acl_users() -> None:
    redis = compose()["services"]["redis"]
    command = " ".join(redis["command"])
    assert "render-acl.sh /usr/local/etc/hookline/users.acl /run/redis/users.acl" in command
    assert "redis-server /usr/local/etc/hookline/redis.conf" in command
    assert "./redis:/usr/local/etc/hookline:ro" in redis["volumes"]
    conf = (DEPLOY / "redis" / "redis.conf").read_text()
    assert re.search(r"^appendonly yes$", conf, re.M)
    assert re.search(r"^maxmemory-policy noeviction$", conf, re.M)
    assert re.search(r"^aclfile /run/redis/users\.acl$", conf, re.M)
    tokens = set(re.findall(r"@([A-Z0-9_]+)@", (DEPLOY / "redis" / "users.acl").read_text()))
    assert tokens == {k for k in redis["environment"]}


def test_compose_volumes_of_the_services_are_directories_the_image_owns() -> None:
    """A new named volume takes the ownership of the image's directory: the services run
    as uid 10001, so every directory they write to must exist in the image."""
    runs = " ".join(
        args
        for op, args in dockerfile_instructions(DEPLOY / "docker" / "Dockerfile")
        if op == "RUN"
    )
    made = set(re.findall(r"(/var/lib/hookline/\w+)", runs))
    assert "chown -R hookline:hookline /var/lib/hookline" in runs
    named = set(compose()["volumes"])
    for service in SERVICES:
        spec = compose()["services"][service]
        for volume in spec.get("volumes", []):
            if isinstance(volume, str) and volume.split(":")[0] in named:
                assert volume.split(":")[1] in made, (service, volume)
        for name, value in spec["environment"].items():
            if name.endswith("_DIR") and str(value).startswith("/var/lib/hookline/"):
                assert value in made, (service, name, value)


def test_compose_mounts_only_files_that_exist() -> None:
    for name, spec in compose()["services"].items():
        for volume in spec.get("volumes", []):
            if isinstance(volume, str) and volume.startswith("./"):
                assert (DEPLOY / volume.split(":")[0]).exists(), (name, volume)
    assert (DEPLOY / "config").is_dir()


def test_nginx_serves_the_old_api_on_port_5001() -> None:
    conf = (DEPLOY / "nginx" / "hookline.conf").read_text()
    assert re.search(r"listen 5001;", conf)
    assert "set $hookline_ingress http://ingress:5001;" in conf
    assert "set $hookline_status http://status:5002;" in conf
    locations = dict(
        re.findall(r"location (= /[\w./-]*|/[\w./-]*) \{\s*(?:[^{}]*?)proxy_pass (\$\w+);", conf)
    )
    assert locations["= /webhook"] == "$hookline_ingress"
    assert locations["= /jobs"] == locations["/jobs/"] == "$hookline_status"
    assert locations["= /health"] == "$hookline_status"
    assert compose()["services"]["nginx"]["ports"] == [
        "${HOOKLINE_BIND:-127.0.0.1}:${HOOKLINE_HTTP_PORT:-5001}:5001"
    ]


# -- Prometheus and Grafana -----------------------------------------------------------


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {f"hookline-{s}" for s in SERVICES}
    for service in SERVICES:
        (sd,) = jobs[f"hookline-{service}"]["dns_sd_configs"]
        assert sd["names"] == [service]
        assert sd["port"] == PORTS[service]
        assert jobs[f"hookline-{service}"]["metrics_path"] == "/metrics"
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts


def test_promtool_checks_the_rules_and_the_config(tmp_path: Path) -> None:
    promtool = need_tool("promtool", "prometheus")
    rules = DEPLOY / "prometheus" / "alerts.yml"
    done = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["rule_files"] = [str(rules)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_fire_each_alert() -> None:
    promtool = need_tool("promtool", "prometheus")
    tests = DEPLOY / "prometheus" / "tests" / "alerts_test.yml"
    done = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    tested = {
        case["alertname"]
        for test in yaml.safe_load(tests.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert alerts == tested, f"alerts without a firing unit test: {alerts - tested}"
    assert {
        "HooklineQueueTooLong",
        "HooklineOldestJobTooOld",
        "HooklineNoLiveWorkers",
        "HooklineFailureRatioHigh",
        "HooklineDeadLetterGrowing",
        "HooklineIngressSpooling",
        "HooklineServiceDown",
    } <= alerts


def test_grafana_dashboard_and_provisioning_fit_together() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "hookline.json").read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in panels}
    for needed in (
        "Job attempts ended, by outcome",
        "Waiting (lag) and running (pending)",
        "Wait time (queued to started)",
        "Run time",
        "Failure ratio",
        "Workers by state",
        "Webhooks by outcome",
        "Spooled webhooks (Redis unreachable)",
    ):
        assert needed in titles
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"] for t in panel["targets"]), panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "hookline.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    grafana = compose()["services"]["grafana"]
    assert f"./grafana/hookline.json:{path}/hookline.json:ro" in grafana["volumes"]
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    assert source["uid"] == dashboard["templating"]["list"][0]["current"]["value"]


# -- systemd --------------------------------------------------------------------------


def units() -> dict[str, dict[str, list[str]]]:
    parsed: dict[str, dict[str, list[str]]] = {}
    for path in sorted((DEPLOY / "systemd").glob("hookline*.service")):
        section = ""
        entries: dict[str, list[str]] = {}
        for line in path.read_text().splitlines():
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
            elif "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                entries.setdefault(f"{section}.{key}", []).append(value)
        parsed[path.name] = entries
    return parsed


def test_systemd_units_run_each_service_with_restart_and_sandboxing() -> None:
    found = units()
    assert set(found) == {
        "hookline-ingress.service",
        "hookline-dispatcher.service",
        "hookline-status.service",
        "hookline-worker@.service",
    }
    known = settings_by_service()
    for name, unit in found.items():
        service = name.removeprefix("hookline-").split("@")[0].split(".")[0]
        (exec_start,) = unit["Service.ExecStart"]
        program = Path(exec_start.split()[0]).name
        assert program in console_scripts(service), (name, program)
        assert unit["Service.Restart"] == ["always"]
        assert "/etc/hookline/hookline.env" in unit["Service.EnvironmentFile"]
        for option in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
            assert unit[f"Service.{option}"], (name, option)
        env = dict(e.split("=", 1) for e in unit["Service.Environment"])
        unknown = set(env) - known[service] - FROM_OTHER_BRANCHES
        assert not unknown, (name, unknown)
        port = env[PORT_VARS[service]]
        assert port == ("%i" if "@" in name else str(PORTS[service]))
    worker = found["hookline-worker@.service"]
    assert worker["Service.RuntimeMaxSec"] == ["1d"]
    assert "--name %H-%i" in worker["Service.ExecStart"][0]


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    """Real systemd parsing: unknown keys, bad values and missing programs all fail."""
    analyze = need_tool("systemd-analyze", "systemd")
    venv_bin = REPO / ".venv" / "bin"
    for path in (DEPLOY / "systemd").glob("hookline*"):
        text = path.read_text().replace("/opt/hookline/.venv/bin", str(venv_bin))
        (tmp_path / path.name).write_text(text)
    shutil.copy(tmp_path / "hookline-worker@.service", tmp_path / "hookline-worker@9103.service")
    names = [
        "hookline-ingress.service",
        "hookline-dispatcher.service",
        "hookline-status.service",
        "hookline-worker@9103.service",
        "hookline.target",
    ]
    done = subprocess.run(
        [analyze, "verify", "--man=no", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


# -- Kubernetes -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    kubectl = need_tool("kubectl", "kubectl")
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(DEPLOY / "k8s", copy)
    overlay = copy / "overlays" / "example"
    shutil.copy(overlay / "secrets.env.example", overlay / "secrets.env")
    done = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_k8s_deployments_run_each_image_with_probes_and_requests(
    k8s: list[dict[str, Any]],
) -> None:
    deployments = by_kind(k8s, "Deployment")
    services = by_kind(k8s, "Service")
    pdbs = by_kind(k8s, "PodDisruptionBudget")
    secrets = by_kind(k8s, "Secret")
    configs = by_kind(k8s, "ConfigMap")
    known = settings_by_service()
    assert set(deployments) == {f"hookline-{s}" for s in SERVICES}
    for service in SERVICES:
        name = f"hookline-{service}"
        pod = deployments[name]["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["image"] == f"registry.example.com/hookline/{service}:0.1.0"
        assert container["ports"] == [{"name": "http", "containerPort": PORTS[service]}]
        env = {e["name"]: e for e in container["env"]}
        assert env[PORT_VARS[service]]["value"] == str(PORTS[service])
        unknown = set(env) - known[service] - {"REDIS_URL"} - FROM_OTHER_BRANCHES
        assert not unknown, (service, unknown)
        for item in env.values():
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["data"], ref
        (source,) = container["envFrom"]
        config = configs[source["configMapRef"]["name"]]["data"]
        assert set(config) <= all_settings(), set(config) - all_settings()
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["requests"]["memory"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        labels = pod["metadata"]["labels"]
        selector = services[name]["spec"]["selector"]
        assert selector.items() <= labels.items()
        assert services[name]["spec"]["ports"][0]["targetPort"] == "http"
        assert pdbs[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    worker = deployments["hookline-worker"]["spec"]
    assert "replicas" not in worker, "KEDA owns the worker replica count"
    grace = worker["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 60, "longer than the worker's default shutdown timeout (60 s)"


def test_keda_scales_workers_on_the_consumer_group_lag_down_to_zero(
    k8s: list[dict[str, Any]],
) -> None:
    (scaled,) = by_kind(k8s, "ScaledObject").values()
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "hookline-worker"
    assert spec["minReplicaCount"] == 0
    triggers = spec["triggers"]
    assert {t["type"] for t in triggers} == {"redis-streams"}
    stream = Keys().job_queued(DEFAULT_QUEUE)
    for trigger in triggers:
        assert trigger["metadata"]["stream"] == stream
        assert trigger["metadata"]["consumerGroup"] == GROUP_WORKERS
    assert any("lagCount" in t["metadata"] for t in triggers), "lag: scales from zero"
    auth = by_kind(k8s, "TriggerAuthentication")[triggers[0]["authenticationRef"]["name"]]
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"username", "password"}
    secret = by_kind(k8s, "Secret")["hookline-secrets"]
    for ref in refs.values():
        assert ref["name"] == "hookline-secrets"
        assert ref["key"] in secret["data"]
    assert base64.b64decode(secret["data"][refs["username"]["key"]]) == b"keda"
    acl = (DEPLOY / "redis" / "users.acl").read_text()
    assert re.search(r"^user keda on .*\+xinfo\|groups", acl, re.M)


def test_ingress_scales_with_an_hpa(k8s: list[dict[str, Any]]) -> None:
    (hpa,) = by_kind(k8s, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "hookline-ingress",
    }
    assert hpa["spec"]["minReplicas"] >= 2


def test_k8s_secret_holds_the_webhook_secret_redis_credentials_and_admin_token(
    k8s: list[dict[str, Any]],
) -> None:
    secret = by_kind(k8s, "Secret")["hookline-secrets"]
    assert set(secret["data"]) == {
        "github-webhook-secret",
        "admin-token",
        "redis-url-ingress",
        "redis-url-dispatcher",
        "redis-url-worker",
        "redis-url-status",
        "redis-username-keda",
        "redis-password-keda",
    }
