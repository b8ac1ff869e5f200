"""The worker's Prometheus metrics; labelled children are cached (the hot path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hookline.metrics import (
    DURATION_BUCKETS,
    CollectorRegistry,
    ConsumerMetrics,
    Counter,
    Gauge,
    Histogram,
)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumer = ConsumerMetrics(registry)
        self.jobs = Counter(
            "hookline_jobs_total",
            "Job attempts run by this worker, by outcome.",
            ["queue", "pipeline", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "hookline_job_duration_seconds",
            "Time to run one job attempt.",
            ["queue", "pipeline"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.busy = Gauge(
            "hookline_worker_busy",
            "Jobs this worker is running now.",
            registry=registry,
        )
        self.reclaimed = Counter(
            "hookline_jobs_reclaimed_total",
            "Jobs taken over from a worker that crashed, stalled or handed them back.",
            ["queue"],
            registry=registry,
        )
        self._children: dict[tuple[str, ...], Any] = {}

    def watch_busy(self, count: Callable[[], int]) -> None:
        """Read the busy gauge at scrape time (nothing to update per job)."""
        self.busy.set_function(count)

    def job_done(self, queue: str, pipeline: str, outcome: str, duration: float) -> None:
        key = (queue, pipeline, outcome)
        pair = self._children.get(key)
        if pair is None:
            pair = (
                self.jobs.labels(queue, pipeline, outcome),
                self.duration.labels(queue, pipeline),
            )
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(duration)
