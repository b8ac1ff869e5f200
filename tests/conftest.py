"""Session-wide fixtures: one real Redis, a private key prefix per test, and a test run
that sees nothing of the user's environment, config files or ``.hookline/``."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hookline.keys import Keys
from hookline.lua import load_on_connect
from support.processes import ServiceProcess
from support.redis_server import RedisServer, start_redis

# Settings a user may have exported; a test sets what it needs explicitly.
USER_SETTINGS = ("HOOKLINE_", "REDIS_", "GITHUB_", "OTEL_")
TEST_SETTINGS = ("HOOKLINE_TEST_", "HOOKLINE_CHAOS_")


def pytest_configure(config: pytest.Config) -> None:
    for name in list(os.environ):
        if name.startswith(USER_SETTINGS) and not name.startswith(TEST_SETTINGS):
            del os.environ[name]
    # A shell that runs the suite in the background ignores SIGINT, and children inherit
    # that: tests that stop a CLI with Ctrl-C need the default disposition back.
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test (and every process it starts) runs in its own empty folder, so a
    ``hookline.toml`` or ``.hookline/`` in the checkout is never seen."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    """Every test writes under its own key prefix, so tests never see each other."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # Loads the Lua scripts on every connection, as hookline.redis_client.connect does.
    client = aioredis.Redis.from_url(
        redis_url, decode_responses=False, redis_connect_func=load_on_connect
    )
    yield client
    await client.aclose()


@pytest.fixture
def base_env(redis_url: str, prefix: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a service process of this test."""
    return {
        "REDIS_URL": redis_url,
        "HOOKLINE_PREFIX": prefix,
        "GITHUB_WEBHOOK_SECRET": "test-secret-0123456789",
        "HOOKLINE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "HOOKLINE_WORK_DIR": str(tmp_path / "work"),
        "HOOKLINE_INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
    }


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    """Service processes a test starts; each is stopped by its own pid afterwards."""
    started: list[ServiceProcess] = []
    yield started
    for proc in reversed(started):
        proc.stop(timeout=15)
