"""Prometheus helpers: one registry per service process, rendered by ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# Latency buckets from 1 ms to 10 min: webhooks take milliseconds, pipelines minutes.
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

__all__ = [
    "CONTENT_TYPE_LATEST",
    "DURATION_BUCKETS",
    "CollectorRegistry",
    "ConsumerMetrics",
    "Counter",
    "Gauge",
    "Histogram",
    "render",
]


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class ConsumerMetrics:
    """What every consumer loop reports, labelled by stream group."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.entries = Counter(
            "hookline_consumer_entries_total",
            "Stream entries handled by this process, by group and result.",
            ["group", "result"],
            registry=registry,
        )
        self.redis_errors = Counter(
            "hookline_redis_errors_total",
            "Redis calls that failed with a connection or timeout error.",
            registry=registry,
        )
        self.streams_recreated = Counter(
            "hookline_streams_recreated_total",
            "Consumer groups (and their streams) recreated after they vanished: deleted, "
            "destroyed or evicted under a reader.",
            ["group"],
            registry=registry,
        )
        self.redis_up = Gauge(
            "hookline_redis_up",
            "1 while this process reaches Redis, else 0.",
            registry=registry,
        )
