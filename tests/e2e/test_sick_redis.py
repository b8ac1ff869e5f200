"""A sick Redis against the real services: one that may evict (or forget) what it is
given is refused loudly, and a frozen one never stops a freshly started service from
answering."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hookline.embedded_redis import EmbeddedRedis
from hookline.keys import Keys
from support.payloads import payload, signed_headers
from support.processes import ServiceProcess, http_json, post_webhook
from support.redis_server import own_redis
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

SECRET = "sick-redis-secret"
PUSH = payload("push", "with-new-branch.payload.json")


def env_for(server: EmbeddedRedis, tmp_path: Path, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": server.url,
        "HOOKLINE_PREFIX": prefix,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "HOOKLINE_INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
        **extra,
    }


def start(service: str, env: dict[str, str], tmp_path: Path, started: list[ServiceProcess]) -> Any:
    proc = ServiceProcess(service, env, tmp_path / "logs")
    started.append(proc)
    proc.start(wait=False)
    return proc


def timed(url: str, timeout: float = 5) -> tuple[float, int, Any]:
    began = time.monotonic()
    status, body = http_json(url, timeout=timeout)
    return time.monotonic() - began, status, body


@pytest.fixture
def evicting(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = own_redis(tmp_path / "redis", extra_args=["--maxmemory-policy", "allkeys-lru"])
    yield server
    server.stop()


def test_an_evicting_redis_gets_no_webhook_and_every_service_says_why(
    evicting: EmbeddedRedis, tmp_path: Path, prefix: str, services: list[ServiceProcess]
) -> None:
    env = env_for(evicting, tmp_path, prefix)
    ingress = start("ingress", env, tmp_path, services)
    status = start("status", env, tmp_path, services)
    ingress.wait_healthy(path="/livez")
    status.wait_healthy(path="/livez")
    direct = redis.Redis.from_url(evicting.url)
    keys = Keys(prefix)

    code, answer = post_webhook(ingress.url, PUSH, signed_headers(SECRET, PUSH, "push"))
    assert code == 202, answer
    assert answer["outcome"] == "spooled"  # never a 202 from a Redis that may evict it
    assert direct.xlen(keys.webhook_received) == 0
    for proc in (ingress, status):
        code, health = http_json(f"{proc.url}/health")
        assert code == 503, (proc.service, health)
        assert health["status"] == "unhealthy"
        assert any("maxmemory-policy is allkeys-lru" in p for p in health["problems"]), health
    code, ready = http_json(f"{status.url}/readyz")
    assert code == 503
    assert any("allkeys-lru" in p for p in ready["problems"])
    assert "redis_unsafe" in ingress.logs()

    direct.config_set("maxmemory-policy", "noeviction")  # fixed: the spool drains into it
    wait_until(lambda: direct.xlen(keys.webhook_received) == 1, 20, what="the spool replay")
    wait_until(lambda: http_json(f"{status.url}/readyz")[0] == 200, 10, what="status ready")
    direct.close()


def test_the_opt_out_runs_on_an_unsafe_redis_and_says_so(
    evicting: EmbeddedRedis, tmp_path: Path, prefix: str, services: list[ServiceProcess]
) -> None:
    env = env_for(evicting, tmp_path, prefix, HOOKLINE_ALLOW_UNSAFE_REDIS="1")
    ingress = start("ingress", env, tmp_path, services)
    ingress.wait_healthy(path="/livez")
    code, answer = post_webhook(ingress.url, PUSH, signed_headers(SECRET, PUSH, "push"))
    assert (code, answer["outcome"]) == (202, "accepted"), answer
    code, health = http_json(f"{ingress.url}/health")
    assert code == 200, health
    assert health["redis_safety"]["unsafe_allowed"] is True
    assert health["redis_safety"]["safe"] is False
    assert any("allkeys-lru" in p for p in health["problems"])
    assert "redis_unsafe_allowed" in ingress.logs()


def test_a_frozen_redis_never_stops_a_restarted_ingress_or_status_from_answering(
    tmp_path: Path, prefix: str, services: list[ServiceProcess]
) -> None:
    server = own_redis(tmp_path / "redis")
    assert server.process is not None
    env = env_for(server, tmp_path, prefix)
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        ingress = start("ingress", env, tmp_path, services)
        status = start("status", env, tmp_path, services)
        ingress.wait_healthy(path="/livez")
        status.wait_healthy(path="/livez")
        for proc in (ingress, status):
            for path in ("/readyz", "/health"):
                took, code, body = timed(f"{proc.url}{path}")
                assert took < 1.0, (proc.service, path, took)
                assert any("Redis unreachable" in p for p in body["problems"]), body
            if proc is status:
                assert code == 503
        code, ready = http_json(f"{ingress.url}/readyz")
        assert (code, ready["spooling"]) == (200, True)  # it takes webhooks into its spool

        began = time.monotonic()
        code, answer = post_webhook(ingress.url, PUSH, signed_headers(SECRET, PUSH, "push"))
        took = time.monotonic() - began
        assert (code, answer["outcome"]) == (202, "spooled"), answer
        assert took < 2.5, took  # HOOKLINE_INGRESS_REDIS_TIMEOUT (2 s) and a margin
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        for proc in services:
            proc.stop(timeout=15)
        server.stop()
