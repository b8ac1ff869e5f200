"""Two ingress processes on one spool root (``--scale ingress=2``): both start and spool
while Redis is down; one dies by kill -9 with webhooks in its spool, and they still all
reach ``webhook.received``, each exactly once, in order per replica."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hookline.embedded_redis import EmbeddedRedis
from hookline.events import WebhookReceived
from hookline.keys import Keys
from support.payloads import payload, signed_headers
from support.processes import ServiceProcess, http_json, post_webhook
from support.redis_server import own_redis
from support.streams import events
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

PUSH = payload("push", "with-new-branch.payload.json")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = own_redis(tmp_path / "redis")
    yield server
    server.stop()


def received(url: str, keys: Keys) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        reply = client.xrange(keys.webhook_received)
    finally:
        client.close()
    return [e.delivery_id for e in events(reply) if isinstance(e, WebhookReceived)]


def spool_entries(ingress: ServiceProcess) -> int:
    return int(http_json(f"{ingress.url}/health")[1]["spool_entries"])


def spool_while_down(
    replicas: dict[str, ServiceProcess], secret: str, count: int
) -> dict[str, list[str]]:
    sent: dict[str, list[str]] = {name: [] for name in replicas}
    for n in range(count):
        for name, ingress in replicas.items():
            delivery = f"{name}-{n}"
            headers = signed_headers(secret, PUSH, "push", delivery)
            status, answer = post_webhook(ingress.url, PUSH, headers)
            assert status == 202, answer
            sent[name].append(delivery)
    for ingress in replicas.values():
        assert spool_entries(ingress) == count
    return sent


def in_order_once(got: list[str], sent: dict[str, list[str]]) -> None:
    assert sorted(got) == sorted(d for ids in sent.values() for d in ids)  # each once
    for ids in sent.values():
        assert [d for d in got if d in ids] == ids  # each replica's in its order


@pytest.mark.parametrize("who_replays", ["the survivor", "a new replica"])
def test_a_replica_killed_with_a_full_spool_loses_nothing(
    who_replays: str,
    private_redis: EmbeddedRedis,
    base_env: dict[str, str],
    services: list[ServiceProcess],
    tmp_path: Path,
    keys: Keys,
) -> None:
    env = {
        **base_env,
        "REDIS_URL": private_redis.url,
        "HOOKLINE_INGRESS_REDIS_TIMEOUT": "300ms",
        # The survivor looks for orphans often in one case, only at its start in the other.
        "HOOKLINE_INGRESS_SPOOL_ADOPT_INTERVAL": "300ms" if who_replays == "the survivor" else "1h",
    }
    secret = env["GITHUB_WEBHOOK_SECRET"]
    replicas = {name: ServiceProcess("ingress", env, tmp_path / "logs") for name in "ab"}
    for ingress in replicas.values():
        services.append(ingress.start())  # the same root, no replica names given
    root = Path(base_env["HOOKLINE_INGRESS_SPOOL_DIR"])
    assert len([p for p in root.iterdir() if p.is_dir()]) == 2

    private_redis.stop()
    sent = spool_while_down(replicas, secret, 5)
    replicas["a"].kill()

    if who_replays == "the survivor":
        wait_until(lambda: spool_entries(replicas["b"]) == 10, timeout=20, what="adoption")
        replaying = replicas["b"]
    else:
        replaying = ServiceProcess("ingress", env, tmp_path / "logs")
        services.append(replaying.start())
    private_redis.start()

    wait_until(lambda: len(received(private_redis.url, keys)) >= 10, timeout=30, what="replay")
    wait_until(
        lambda: http_json(f"{replaying.url}/health")[1]["status"] == "ok",
        timeout=10,
        what="an empty spool",
    )
    in_order_once(received(private_redis.url, keys), sent)
    assert spool_entries(replicas["b"]) == 0
