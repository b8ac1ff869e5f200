"""The ingress as a real process: the spool across an ingress restart with Redis down,
and what its logs never contain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hookline.embedded_redis import EmbeddedRedis
from hookline.events import JobQueued
from hookline.ids import job_id_for_delivery
from hookline.keys import DEFAULT_QUEUE, Keys
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


def queued(client: redis.Redis, keys: Keys) -> list[str]:
    """Delivery ids of every ``job.queued`` entry on the default queue, in stream order."""
    queued = events(client.xrange(keys.job_queued(DEFAULT_QUEUE)))
    return [e.delivery_id for e in queued if isinstance(e, JobQueued)]


def test_webhooks_spooled_while_redis_is_down_survive_an_ingress_restart(
    private_redis: EmbeddedRedis,
    base_env: dict[str, str],
    services: list[ServiceProcess],
    tmp_path: Path,
    keys: Keys,
) -> None:
    env = {**base_env, "REDIS_URL": private_redis.url, "HOOKLINE_INGRESS_REDIS_TIMEOUT": "500ms"}
    secret = env["GITHUB_WEBHOOK_SECRET"]
    dispatcher = ServiceProcess("dispatcher", env, tmp_path / "logs")
    services.append(dispatcher.start())
    ingress = ServiceProcess("ingress", env, tmp_path / "logs")
    services.append(ingress.start())

    private_redis.stop()
    ids = [f"spooled-{n}" for n in range(8)]
    for delivery in ids:
        status, answer = post_webhook(
            ingress.url, PUSH, signed_headers(secret, PUSH, "push", delivery)
        )
        assert status == 202, answer
        assert answer["job_id"] == job_id_for_delivery(delivery)
    status, health = http_json(f"{ingress.url}/health")
    assert (status, health["status"], health["spool_entries"]) == (200, "degraded", len(ids))

    assert ingress.stop() == 0
    restarted = ServiceProcess("ingress", env, tmp_path / "logs")
    services.append(restarted.start())  # still no Redis: healthy (degraded), spool loaded
    status, health = http_json(f"{restarted.url}/health")
    assert (health["status"], health["spool_entries"]) == ("degraded", len(ids))
    # a redelivery after the restart is recognised from the spool itself
    status, _ = post_webhook(restarted.url, PUSH, signed_headers(secret, PUSH, "push", ids[3]))
    assert status == 202

    private_redis.start()
    client = redis.Redis.from_url(private_redis.url)
    try:
        wait_until(lambda: len(queued(client, keys)) >= len(ids), timeout=30, what="job.queued")
        wait_until(
            lambda: http_json(f"{restarted.url}/health")[1]["status"] == "ok",
            timeout=10,
            what="ingress to report ok",
        )
        assert queued(client, keys) == ids  # all, each once, in arrival order
        assert client.xlen(keys.webhook_received) == len(ids)
    finally:
        client.close()


SECRET = "s3cr3t-never-in-a-log-line"
MARKER = "body-marker-never-in-a-log-line"


def test_no_secret_signature_or_body_reaches_a_log_line(
    base_env: dict[str, str], services: list[ServiceProcess], tmp_path: Path
) -> None:
    env = {**base_env, "GITHUB_WEBHOOK_SECRET": SECRET, "HOOKLINE_LOG_LEVEL": "debug"}
    ingress = ServiceProcess("ingress", env, tmp_path / "logs")
    services.append(ingress.start())
    body = json.dumps({"zen": MARKER, "repository": {"full_name": MARKER}}).encode()
    good = signed_headers(SECRET, body, "push", delivery="log-good")
    wrong = signed_headers("wrong-secret", body, "push", delivery="log-wrong")
    legacy = {k: v for k, v in good.items() if k != "X-Hub-Signature-256"}
    legacy["X-Hub-Signature"] = "sha1=" + "5" * 40
    legacy["X-GitHub-Delivery"] = "log-legacy"
    bad_json = MARKER.encode()
    cases = [
        (body, good, 202),
        (body, wrong, 401),
        (body, legacy, 401),
        (bad_json, signed_headers(SECRET, bad_json, "push", delivery="log-json"), 400),
        (b"[1]", signed_headers(SECRET, b"[1]", "push", delivery="log-array"), 422),
        (body, {**good, "Content-Type": "text/plain", "X-GitHub-Delivery": "log-415"}, 415),
    ]
    signatures = [h.get("X-Hub-Signature-256", "") for _, h, _ in cases]
    for data, headers, expected in cases:
        assert post_webhook(ingress.url, data, headers)[0] == expected
    wait_until(lambda: "log-415" in ingress.logs(), timeout=10, what="the last log line")
    logs = ingress.logs()
    for secret_thing in [SECRET, MARKER, "5" * 40, *(s[7:] for s in signatures if s)]:
        assert secret_thing not in logs
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    webhook_lines = [line for line in lines if line["event"].startswith("webhook_")]
    assert len(webhook_lines) == len(cases)
    assert all(line["delivery_id"].startswith("log-") for line in webhook_lines)


def test_insecure_mode_warns_at_start_and_on_every_request(
    base_env: dict[str, str], services: list[ServiceProcess], tmp_path: Path
) -> None:
    env = {**base_env, "GITHUB_WEBHOOK_SECRET": "", "HOOKLINE_INGRESS_INSECURE": "1"}
    ingress = ServiceProcess("ingress", env, tmp_path / "logs")
    services.append(ingress.start())
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    for n in range(3):
        status, _ = post_webhook(
            ingress.url, PUSH, {**headers, "X-GitHub-Delivery": f"insecure-{n}"}
        )
        assert status == 202

    def warnings() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in ingress.logs().splitlines() if line.startswith("{")]
        return [line for line in lines if line["level"] == "warning"]

    found = wait_until(lambda: len(warnings()) >= 4 and warnings(), timeout=10, what="warnings")
    assert found[0]["event"] == "insecure_mode"
    per_request = [w for w in found if w["event"] == "webhook_signature_not_checked"]
    assert [w["delivery_id"] for w in per_request] == [f"insecure-{n}" for n in range(3)]


def test_starting_without_a_secret_is_refused(base_env: dict[str, str], tmp_path: Path) -> None:
    ingress = ServiceProcess("ingress", {**base_env, "GITHUB_WEBHOOK_SECRET": ""}, tmp_path)
    ingress.start(wait=False)
    assert ingress.process is not None
    assert ingress.process.wait(timeout=20) == 2
    assert "GITHUB_WEBHOOK_SECRET" in ingress.logs()


def test_a_replica_name_in_use_is_refused(
    base_env: dict[str, str], services: list[ServiceProcess], tmp_path: Path
) -> None:
    env = {**base_env, "HOOKLINE_INGRESS_REPLICA": "one"}
    services.append(ServiceProcess("ingress", env, tmp_path / "a").start())
    second = ServiceProcess("ingress", env, tmp_path / "b")
    second.start(wait=False)
    assert second.process is not None
    assert second.process.wait(timeout=20) == 2
    assert "HOOKLINE_INGRESS_REPLICA" in second.logs()
