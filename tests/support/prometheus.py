"""A real Prometheus with deploy/prometheus's scrape config and alert rules, pointed at
ports on loopback, and the PromQL expressions of the dashboard and the alert rules."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from hookline.embedded_redis import free_port

from support.deploy import DEPLOY, need_tool
from support.processes import http_json, terminate
from support.waiting import wait_until

DASHBOARD = DEPLOY / "grafana" / "hookline.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"


def http_status(url: str) -> int:
    """The HTTP status of a GET, whatever the body; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def scrape_config(targets: dict[str, list[int]], tmp_path: Path) -> Path:
    """The repo's prometheus.yml with Docker DNS discovery swapped for loopback ports
    (``targets``: service -> its replicas' ports; jobs of other services are left out),
    scraping and evaluating every second."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(ALERTS)]
    jobs = []
    for job in config["scrape_configs"]:
        (sd,) = job.pop("dns_sd_configs")
        (service,) = sd["names"]
        if service in targets:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in targets[service]]}]
            jobs.append(job)
    config["scrape_configs"] = jobs
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus:
    """The ``prometheus`` binary on a free loopback port, stopped by its own pid."""

    def __init__(self, config: Path, tmp_path: Path) -> None:
        self.config = config
        self.tmp_path = tmp_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        binary = need_tool("prometheus", "prometheus")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(self.log_path.read_text()[-3000:])
            return http_status(f"{self.base}/-/ready") == 200

        wait_until(ready, 30, what="prometheus to be ready")
        return self

    def stop(self) -> None:
        terminate(self.process, 15)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (a 400 for bad PromQL fails the test)."""
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, body = http_json(url)
        assert status == 200, (expr, body)
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        """The value of a query that yields one series; None when it yields none."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the Grafana dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def dashboard_variables() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (v["name"], v["definition"])
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
    ]


def alert_exprs() -> list[tuple[str, str]]:
    """(alert name, PromQL) of every alert rule."""
    rules = yaml.safe_load(ALERTS.read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression as Grafana sends it: its variables filled in."""
    return expr.replace("$__rate_interval", "1m").replace('=~"$queue"', '=~".*"')


def metric_names(expr: str) -> set[str]:
    """The hookline (and rq-exporter) metric names a PromQL expression uses."""
    return set(re.findall(r"\b((?:hookline|rq)_[a-z0-9_]+)\b", expr))


def exported_names(text: str) -> set[str]:
    """Metric names in Prometheus text format, as PromQL can name them (a histogram
    ``x`` is queried as ``x_bucket``, ``x_sum``, ``x_count``)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
