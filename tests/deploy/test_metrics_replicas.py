"""Two status replicas scraped by a real Prometheus give the dashboard and the alert
rules the numbers of one: only the holder of the metrics lease exports what it reads
from Redis, and when it dies the other takes over within a few seconds."""

from __future__ import annotations

import asyncio
import math
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hookline.events import JobSpec
from hookline.keys import EVENT_FIELD, Keys
from hookline_status.system_metrics import Snapshot, SnapshotCollector
from prometheus_client import CollectorRegistry, generate_latest
from support.jobs import PATHS, history
from support.processes import ServiceProcess
from support.prometheus import (
    Prometheus,
    alert_exprs,
    dashboard_exprs,
    exported_names,
    grafana_to_promql,
    metric_names,
    scrape_config,
)
from support.views import project_into
from support.waiting import wait_until
from support.worker_jobs import queue_job

pytestmark = pytest.mark.e2e

TTL, RENEW = 2.0, 0.25
LEASE_ENV = {
    "HOOKLINE_STATUS_METRICS_LEASE_TTL": str(TTL),
    "HOOKLINE_STATUS_METRICS_LEASE_RENEW": str(RENEW),
}
WAITING = 3  # jobs on a queue no worker reads
LEADER = "hookline_status_metrics_leader"

# One evaluation of every expression: expression -> sorted (labels, value) pairs.
Values = dict[str, list[tuple[tuple[tuple[str, str], ...], str]]]


def system_names() -> set[str]:
    """Every metric name a status replica reads from Redis (an empty snapshot still
    names every family)."""
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(Snapshot()))
    return exported_names(generate_latest(registry).decode())


def operands(expr: str) -> list[str]:
    """An alert's expression, and each side of its ``and`` with the threshold cut off,
    so the numbers are compared even while no alert fires."""
    out = [expr]
    for part in re.split(r"\band on\(\)", expr):
        bare = re.sub(r"\s*(>=|<=|==|!=|>|<)\s*[0-9.]+\s*$", "", part.strip())
        if bare not in out:
            out.append(bare)
    return out


def comparable_exprs() -> list[str]:
    """Every dashboard and alert expression over the series read from Redis."""
    system = system_names()
    exprs = [grafana_to_promql(e) for _, e in dashboard_exprs()]
    exprs += [o for _, e in alert_exprs() for o in operands(e)]
    chosen = [e for e in exprs if metric_names(e) & system]
    # And the plain sum of every such series: the truth, however many replicas run.
    chosen += [f"sum({name})" for name in sorted(system)]
    return list(dict.fromkeys(chosen))


def evaluate(prometheus: Prometheus, exprs: list[str]) -> Values:
    values: Values = {}
    for expr in exprs:
        rows = []
        for series in prometheus.query(expr):
            labels = {k: v for k, v in series["metric"].items() if k not in ("instance",)}
            rows.append((tuple(sorted(labels.items())), series["value"][1]))
        values[expr] = sorted(rows)
    return values


def same(expr: str, want: list[Any], got: list[Any], age_slack: float) -> bool:
    """Equal results; an age may have grown by ``age_slack`` seconds in between."""
    if "oldest_age" not in expr or [r[0] for r in want] != [r[0] for r in got]:
        return want == got
    return all(
        math.isclose(float(a[1]), float(b[1]), abs_tol=age_slack)
        for a, b in zip(want, got, strict=True)
    )


def differences(want: Values, got: Values, age_slack: float) -> dict[str, Any]:
    """The expressions whose results differ, with both results."""
    return {
        expr: {"one replica": rows, "now": got[expr]}
        for expr, rows in want.items()
        if not same(expr, rows, got[expr], age_slack)
    }


async def seed(redis_url: str, keys: Keys) -> None:
    """Job views on every path a job can take (counters, histograms, job counts), jobs
    waiting on a queue no worker reads, and one dead letter."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        for i, path in enumerate(PATHS):
            await project_into(client, keys, history(f"job-{i}", start=i, path=path))
        for _ in range(WAITING):
            await queue_job(client, keys, JobSpec(pipeline="demo", queue="slow"))
        await client.sadd(keys.queues, "slow", "pipeline_tasks")
        await client.xadd(keys.dead_letter, {EVENT_FIELD: b"{}"})
    finally:
        await client.aclose()


def metrics_text(proc: ServiceProcess) -> str:
    with urllib.request.urlopen(f"{proc.url}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def leader_value(text: str) -> float | None:
    found = re.search(rf"^{LEADER} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def instance(proc: ServiceProcess) -> str:
    return f"127.0.0.1:{proc.port}"


def test_two_status_replicas_give_the_numbers_of_one_and_the_survivor_takes_over(
    base_env: dict[str, str],
    keys: Keys,
    redis_url: str,
    services: list[ServiceProcess],
    tmp_path: Path,
) -> None:
    asyncio.run(seed(redis_url, keys))
    logs = tmp_path / "logs"
    for name in ("w1", "w2"):
        worker = ServiceProcess("worker", base_env, logs, args=["--name", name])
        services.append(worker)
        worker.start()
    env = {**base_env, **LEASE_ENV}
    first = ServiceProcess("status", env, logs)
    second = ServiceProcess("status", env, logs)
    services += [first, second]
    first.start()
    prometheus = Prometheus(
        scrape_config({"status": [first.port, second.port]}, tmp_path), tmp_path
    ).start()
    try:
        run_the_replicas(prometheus, first, second)
    finally:
        prometheus.stop()


def run_the_replicas(prometheus: Prometheus, first: ServiceProcess, second: ServiceProcess) -> None:
    exprs = comparable_exprs()
    assert len(exprs) > 15, exprs
    # -- one replica: the numbers to keep ----------------------------------------
    wait_until(
        lambda: (
            prometheus.scalar('sum(hookline_workers{state=~"busy|idle"})') == 2
            and prometheus.scalar('sum(hookline_jobs{status="queued",queue="slow"})') == WAITING
            # two samples in a window: rate() and delta() have a value
            and prometheus.scalar("sum(rate(hookline_jobs_completed_total[1m]))") is not None
        ),
        30,
        interval=0.2,
        what="prometheus to see the one replica's workers, jobs and two samples",
    )
    one = evaluate(prometheus, exprs)
    one_at = time.monotonic()
    assert prometheus.scalar(f"sum({LEADER})") == 1

    # -- two replicas: the same numbers ------------------------------------------
    second.start()
    scraped = f'count_over_time({LEADER}{{instance="{instance(second)}"}}[1m])'
    wait_until(
        lambda: (prometheus.scalar(scraped) or 0) >= 2,
        30,
        interval=0.2,
        what="prometheus to scrape the second replica twice",
    )
    two = evaluate(prometheus, exprs)
    gap = differences(one, two, time.monotonic() - one_at + 3)
    assert not gap, gap
    assert prometheus.scalar(f"sum({LEADER})") == 1
    assert prometheus.scalar(f"count({LEADER})") == 2
    assert prometheus.scalar('sum(hookline_workers{state=~"busy|idle"})') == 2
    assert prometheus.scalar("sum(rq_workers)") == 2
    assert prometheus.scalar("sum(hookline_queue_lag)") == WAITING
    assert prometheus.scalar("sum(hookline_dead_letter_length)") == 1
    assert prometheus.scalar("count(hookline_dead_letter_length)") == 1
    follower = metrics_text(second)
    assert leader_value(follower) == 0
    assert not exported_names(follower) & system_names()
    assert "hookline_redis_up" in exported_names(follower)  # its own metrics stay

    # -- the leader dies: the survivor takes over within ttl + renew --------------
    first.kill()
    killed_at = time.monotonic()
    wait_until(lambda: leader_value(metrics_text(second)) == 1, TTL + 10, interval=0.05)
    took = time.monotonic() - killed_at
    assert took <= TTL + RENEW + 2, took
    assert system_names() <= exported_names(metrics_text(second))
    survivor = instance(second)
    last: list[Values] = []

    def same_as_one() -> bool:
        if prometheus.scalar(f'{LEADER}{{instance="{survivor}"}}') != 1:
            return False
        if prometheus.scalar(f'up{{instance="{instance(first)}"}}') != 0:
            return False
        last[:] = [evaluate(prometheus, exprs)]
        return not differences(one, last[0], time.monotonic() - one_at + 3)

    try:
        wait_until(same_as_one, 30, interval=0.5, what="the survivor's numbers in prometheus")
    except AssertionError as exc:
        left = differences(one, last[0], time.monotonic() - one_at + 3) if last else "none"
        raise AssertionError(f"{exc}: {left}") from None
    assert prometheus.scalar(f"sum({LEADER})") == 1
    assert prometheus.scalar('sum(hookline_workers{state=~"busy|idle"})') == 2
