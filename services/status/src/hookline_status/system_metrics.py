"""Prometheus metrics of the whole system, read from Redis at every scrape.

Counters and histograms live in the projection (the Lua script counts each event once
when it applies it), so restarting status replicas resets nothing. Gauges are read
from the projection's indexes, the streams and the worker registry. Only the replica
that holds the metrics lease (``metrics_lease``) exports any of these, so adding
replicas doubles nothing. ``rq_jobs`` and ``rq_workers`` keep dashboards built for
rq-exporter working.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from hookline.keys import Keys
from hookline.metrics import DURATION_BUCKETS
from hookline.records import WorkerView
from hookline.redis_client import Redis
from hookline.text import text
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from hookline_status.documents import STATUSES, QueueStats
from hookline_status.overview import read_workers
from hookline_status.queues import all_queue_stats
from hookline_status.reads import count_jobs
from hookline_status.view_keys import current_views

WORKER_STATES = ("busy", "idle", "dead")


@dataclass
class Snapshot:
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)
    queues: list[QueueStats] = field(default_factory=list)
    completed: dict[str, int] = field(default_factory=dict)
    duration: dict[str, float] = field(default_factory=dict)
    wait: dict[str, float] = field(default_factory=dict)
    workers: list[WorkerView] = field(default_factory=list)
    dead_letters: int = 0


async def read_snapshot(redis: Redis, keys: Keys, worker_ttl: float) -> Snapshot:
    queues = await all_queue_stats(redis, keys)
    views = await current_views(redis, keys)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(views.metric_completed)
        pipe.hgetall(views.metric_duration)
        pipe.hgetall(views.metric_wait)
        pipe.xlen(keys.dead_letter)
        completed, duration, wait, dead = await pipe.execute()
    return Snapshot(
        jobs=await count_jobs(redis, keys, [q.queue for q in queues]),
        queues=queues,
        completed={text(k): int(v) for k, v in completed.items()},
        duration={text(k): float(v) for k, v in duration.items()},
        wait={text(k): float(v) for k, v in wait.items()},
        workers=await read_workers(redis, keys, worker_ttl),
        dead_letters=int(dead),
    )


def _histogram(
    name: str, documentation: str, labels: list[str], stored: dict[str, float]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    series: dict[tuple[str, ...], dict[str, float]] = {}
    for key, value in stored.items():
        *head, part = key.split("\t")
        if len(head) == len(labels):
            series.setdefault(tuple(head), {})[part] = value
    for values, parts in sorted(series.items()):
        buckets: list[tuple[str, float]] = []
        running = 0.0
        for i, bound in enumerate(DURATION_BUCKETS):
            running += parts.get(f"b{i}", 0.0)
            buckets.append((floatToGoString(bound), running))  # type: ignore[no-untyped-call]
        running += parts.get("binf", 0.0)
        buckets.append(("+Inf", running))
        family.add_metric(list(values), buckets, parts.get("sum", 0.0))
    return family


def families(snap: Snapshot) -> Iterator[Metric]:
    """Every system metric family from one snapshot."""
    queue_names = [q.queue for q in snap.queues]
    jobs = GaugeMetricFamily(
        "hookline_jobs", "Jobs in the projection by status and queue.", labels=["status", "queue"]
    )
    rq_jobs = GaugeMetricFamily(
        "rq_jobs", "Jobs by queue and status (rq-exporter compatible).", labels=["queue", "status"]
    )
    for status in STATUSES:
        on_queues = 0
        for queue in queue_names:
            count = snap.jobs.get((status, queue), 0)
            on_queues += count
            jobs.add_metric([status, queue], count)
            rq_jobs.add_metric([queue, status], count)
        # Jobs that never reached a queue (skipped, or only just received).
        jobs.add_metric([status, ""], max(0, snap.jobs.get((status, ""), 0) - on_queues))
    yield jobs
    yield rq_jobs

    completed = CounterMetricFamily(
        "hookline_jobs_completed",
        "Job attempts that ended, by queue, pipeline and outcome.",
        labels=["queue", "pipeline", "outcome"],
    )
    for key, value in sorted(snap.completed.items()):
        parts = key.split("\t")
        if len(parts) == 3:
            completed.add_metric(parts, value)
    yield completed
    yield _histogram(
        "hookline_job_duration_seconds",
        "Run time of job attempts that finished or failed.",
        ["queue", "pipeline"],
        snap.duration,
    )
    yield _histogram(
        "hookline_job_wait_seconds",
        "Time from a job attempt being queued to a worker starting it.",
        ["queue"],
        snap.wait,
    )
    for name, doc, attr in (
        ("hookline_queue_length", "Jobs waiting for a worker to take them.", "length"),
        (
            "hookline_queue_stream_entries",
            "Entries the queue's stream retains (handled ones not yet trimmed too).",
            "stream_entries",
        ),
        ("hookline_queue_pending", "Jobs delivered to a worker, not yet acknowledged.", "pending"),
        ("hookline_queue_lag", "Jobs waiting, not yet delivered to any worker.", "waiting"),
        (
            "hookline_queue_oldest_age_seconds",
            "Age of the oldest waiting or pending job.",
            "oldest_age_seconds",
        ),
    ):
        gauge = GaugeMetricFamily(name, doc, labels=["queue"])
        for stats in snap.queues:
            gauge.add_metric([stats.queue], float(getattr(stats, attr)))
        yield gauge
    workers = GaugeMetricFamily(
        "hookline_workers", "Registered workers by state.", labels=["state"]
    )
    for state in WORKER_STATES:
        workers.add_metric([state], sum(1 for w in snap.workers if w.state == state))
    yield workers
    rq_workers = GaugeMetricFamily(
        "rq_workers",
        "Live workers, one series each (rq-exporter compatible).",
        labels=["name", "queues", "state"],
    )
    for worker in snap.workers:
        if worker.state != "dead":
            rq_workers.add_metric([worker.name, ",".join(worker.queues), worker.state], 1)
    yield rq_workers
    yield GaugeMetricFamily(
        "hookline_dead_letter_length",
        "Entries set aside in the dead-letter stream.",
        value=snap.dead_letters,
    )


class SnapshotCollector(Collector):
    """A collector over one snapshot (a fresh one per scrape)."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        return families(self.snap)
