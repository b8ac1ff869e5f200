"""deploy/ files against a running ``hookline up``: the metric names the dashboard and
the alert rules use, a real Prometheus scraping with the repo's config, nginx in front,
and the image's health check script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hookline.embedded_redis import free_port
from support.deploy import DEPLOY, PORT_VARS, SERVICES, need_tool
from support.payloads import payload, signed_headers
from support.processes import http_json
from support.prometheus import (
    Prometheus,
    alert_exprs,
    dashboard_exprs,
    dashboard_variables,
    exported_names,
    grafana_to_promql,
    http_status,
    metric_names,
    scrape_config,
)
from support.redis_server import RedisServer
from support.system import System
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

SECRET = "deploy-secret-0123456789"
FINAL = ("finished", "failed", "skipped", "canceled")
DELIVERIES = [
    ("push", "with-new-branch.payload.json"),
    ("pull_request", "opened.payload.json"),
    ("star", "created.payload.json"),
]


def deliver(url: str, event: str, name: str) -> dict[str, Any]:
    body = payload(event, name)
    request = urllib.request.Request(
        url, data=body, method="POST", headers=signed_headers(SECRET, body, event)
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 202
        answer: dict[str, Any] = json.loads(reply.read())
        return answer


def wait_final(system: System, job_id: str) -> dict[str, Any]:
    def final() -> dict[str, Any]:
        view = system.job(job_id)
        return view if view and view["status"] in FINAL else {}

    return wait_until(final, 30, what=f"job {job_id} to end")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[System]:
    """One running system for the module, with a few jobs through it already."""
    workdir = tmp_path_factory.mktemp("deploy-up")
    env = {
        "REDIS_URL": redis_server.url,
        "HOOKLINE_PREFIX": f"t{uuid.uuid4().hex[:12]}",
        "GITHUB_WEBHOOK_SECRET": SECRET,
    }
    running = System(workdir, env, workers=1).start()
    try:
        jobs = [deliver(f"{running.ingress}/webhook", e, n)["job_id"] for e, n in DELIVERIES]
        for job_id in jobs:
            wait_final(running, job_id)
        yield running
    finally:
        running.stop()


def service_ports(system: System) -> dict[str, int]:
    return {
        "ingress": system.ingress_port,
        "dispatcher": system.dispatcher_port,
        "worker": system.worker_port,
        "status": system.status_port,
    }


def used_names() -> dict[str, set[str]]:
    """Every metric each PromQL expression in the dashboard and alert rules names."""
    exprs = [(f"dashboard: {title}", expr) for title, expr in dashboard_exprs()]
    exprs += [(f"dashboard variable {name}", expr) for name, expr in dashboard_variables()]
    exprs += [(f"alert {name}", expr) for name, expr in alert_exprs()]
    used: dict[str, set[str]] = {}
    for where, expr in exprs:
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used


def test_every_metric_in_the_dashboard_and_the_alerts_is_exported(system: System) -> None:
    """Scrape every service of a running system that has run jobs; every metric name a
    PromQL expression uses must be in some service's /metrics."""
    exported: set[str] = set()
    for service, port in service_ports(system).items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            assert reply.status == 200, service
            exported |= exported_names(reply.read().decode())
    used = used_names()
    assert len(used) > 20
    missing = {name: sorted(where) for name, where in used.items() if name not in exported}
    assert not missing, f"metrics no running service exports: {missing}"


def test_healthcheck_script_of_the_image_reports_each_service(system: System) -> None:
    script = DEPLOY / "docker" / "healthcheck.py"
    for service, port in service_ports(system).items():
        env = {**os.environ, "HOOKLINE_SERVICE": service, PORT_VARS[service]: str(port)}
        for path in ([], ["/livez"], ["/health"]):  # /readyz unless told
            done = subprocess.run(
                [sys.executable, str(script), *path],
                env=env,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            assert done.returncode == 0, (service, path, done.stdout)
    closed = free_port()
    env = {**os.environ, "HOOKLINE_SERVICE": "status", "HOOKLINE_STATUS_PORT": str(closed)}
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 1
    assert f"port {closed}" in done.stdout
    env = {**os.environ, "HOOKLINE_SERVICE": "nope"}
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 1
    assert "not a hookline service" in done.stdout


@pytest.fixture
def nginx(system: System, tmp_path: Path) -> Iterator[str]:
    """nginx with deploy/nginx/hookline.conf, its upstreams pointed at this system."""
    binary = need_tool("nginx", "nginx-light")
    port = free_port()
    conf = (DEPLOY / "nginx" / "hookline.conf").read_text()
    conf = conf.replace("listen 5001;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("http://ingress:5001", f"http://127.0.0.1:{system.ingress_port}")
    conf = conf.replace("http://status:5002", f"http://127.0.0.1:{system.status_port}")
    assert "ingress:5001" not in conf
    assert "status:5002" not in conf
    (tmp_path / "hookline.conf").write_text(conf)
    (tmp_path / "nginx.conf").write_text(
        f"""daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/hookline.conf;
}}
"""
    )
    with (tmp_path / "stderr.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited: {(tmp_path / 'stderr.log').read_text()}")
        return http_status(f"{url}/health") == 200

    try:
        wait_until(up, 15, what="nginx to answer")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_nginx_serves_webhook_jobs_and_health_on_one_port(system: System, nginx: str) -> None:
    answer = deliver(f"{nginx}/webhook", "push", "with-new-branch.payload.json")
    view = wait_until(
        lambda: (
            (r := http_json(f"{nginx}/jobs/{answer['job_id']}"))[0] == 200
            and r[1]["status"] in FINAL
            and r[1]
        ),
        30,
        what="the job through nginx",
    )
    assert view["status"] == "finished"
    status, listing = http_json(f"{nginx}/jobs?status=all&limit=5")
    assert status == 200
    assert listing["count"] >= 1
    status, health = http_json(f"{nginx}/health")
    assert status == 200
    assert {"status", "redis_connected", "queue_available", "queue_length", "workers_count"} <= set(
        health
    )
    status, body = http_json(f"{nginx}/metrics")
    assert status == 404, "metrics stay internal"
    assert body["error"] == "not_found"
    # Ingress's own JSON errors pass through unchanged.
    request = urllib.request.Request(
        f"{nginx}/webhook", data=b"{}", method="POST", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code in (400, 401)
    assert "error" in json.loads(refused.value.read())


@pytest.fixture(scope="module")
def prometheus(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus with the repo's scrape config and rules, scraping the module's system."""
    tmp_path = tmp_path_factory.mktemp("prometheus")
    targets = {service: [port] for service, port in service_ports(system).items()}
    server = Prometheus(scrape_config(targets, tmp_path), tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def test_prometheus_scrapes_every_service_and_loads_the_alerts(
    system: System, prometheus: Prometheus
) -> None:
    def all_up() -> list[dict[str, Any]]:
        result = prometheus.query('up{job=~"hookline-.*"} == 1')
        return result if len(result) == len(SERVICES) else []

    up = wait_until(all_up, 30, interval=0.5, what="every hookline target up")
    assert {r["metric"]["job"] for r in up} == {f"hookline-{s}" for s in SERVICES}
    status, rules = http_json(f"{prometheus.base}/api/v1/rules")
    assert status == 200
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert names == {name for name, _ in alert_exprs()}
    assert "HooklineServiceDown" in names


def test_prometheus_sees_the_jobs_completed(system: System, prometheus: Prometheus) -> None:
    """A real scrape: webhooks in, then hookline_jobs_completed_total in Prometheus."""
    # The module's system already ran one push and one pull request to "finished".
    answers = [deliver(f"{system.ingress}/webhook", e, n) for e, n in DELIVERIES[:2]]
    for answer in answers:
        assert wait_final(system, answer["job_id"])["status"] == "finished"

    def completed() -> float:
        return prometheus.scalar('sum(hookline_jobs_completed_total{outcome="finished"})') or 0.0

    total = wait_until(
        lambda: completed() >= 4,
        30,
        interval=0.5,
        what="hookline_jobs_completed_total to count the finished jobs",
    )
    assert total


def test_every_dashboard_and_alert_expression_is_valid_promql(
    system: System, prometheus: Prometheus
) -> None:
    """Prometheus itself parses and evaluates each expression (a typo is a 400)."""
    for _, expr in [*dashboard_exprs(), *alert_exprs()]:
        promql = grafana_to_promql(expr)
        assert "$" not in promql, promql
        prometheus.query(promql)
