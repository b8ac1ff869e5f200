"""Worker settings: environment first, then command-line flags."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
from hookline.config import BaseSettings, load_settings
from hookline.durations import Duration
from hookline.errors import ConfigError
from hookline.keys import DEFAULT_QUEUE, check_name

from hookline_worker.runners.run_as import RunAs


class WorkerSettings(BaseSettings, frozen=True, kw_only=True):
    host: str = "0.0.0.0"
    port: int = 9103
    name: str = ""
    queues: list[str] = msgspec.field(default_factory=lambda: [DEFAULT_QUEUE])
    concurrency: int = 1
    burst: bool = False
    artifacts_dir: str = "./.hookline/artifacts"
    work_dir: str = "./.hookline/work"
    batch: int = 100
    lease_timeout: Duration = Duration(30)
    shutdown_timeout: Duration = Duration(60)
    worker_ttl: Duration = Duration(30)
    liveness_ttl: Duration = Duration(3)
    max_deliveries: int = 3
    kill_grace: Duration = Duration(5)
    # A worker running as root runs command pipelines as this user (name or uid).
    run_as: str = ""

    ENV: ClassVar[dict[str, str]] = {
        "host": "HOOKLINE_WORKER_HOST",
        "port": "HOOKLINE_WORKER_PORT",
        "name": "HOOKLINE_WORKER_NAME",
        "queues": "HOOKLINE_WORKER_QUEUES",
        "concurrency": "HOOKLINE_WORKER_CONCURRENCY",
        "burst": "HOOKLINE_WORKER_BURST",
        "artifacts_dir": "HOOKLINE_ARTIFACTS_DIR",
        "work_dir": "HOOKLINE_WORK_DIR",
        "batch": "HOOKLINE_WORKER_BATCH",
        "lease_timeout": "HOOKLINE_WORKER_LEASE_TIMEOUT",
        "shutdown_timeout": "HOOKLINE_WORKER_SHUTDOWN_TIMEOUT",
        "worker_ttl": "HOOKLINE_WORKER_TTL",
        "liveness_ttl": "HOOKLINE_WORKER_LIVENESS_TTL",
        "max_deliveries": "HOOKLINE_WORKER_MAX_DELIVERIES",
        "kill_grace": "HOOKLINE_WORKER_KILL_GRACE",
        "run_as": "HOOKLINE_WORKER_RUN_AS",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        for env, problem in self._problems():
            raise ConfigError(env, problem)

    def _problems(self) -> list[tuple[str, str]]:
        """Every bad value, as (variable, problem); the first one stops the start."""
        limits = [
            ("HOOKLINE_WORKER_PORT", 0 <= self.port < 65536, f"{self.port} is not a TCP port"),
            ("HOOKLINE_WORKER_QUEUES", bool(self.queues), "name at least one queue"),
            ("HOOKLINE_WORKER_CONCURRENCY", self.concurrency >= 1, "must be at least 1"),
            ("HOOKLINE_WORKER_BATCH", self.batch >= 1, "must be at least 1"),
            ("HOOKLINE_WORKER_MAX_DELIVERIES", self.max_deliveries >= 1, "must be at least 1"),
            ("HOOKLINE_WORKER_LEASE_TIMEOUT", self.lease_timeout >= 0.3, "must be at least 0.3s"),
            ("HOOKLINE_WORKER_TTL", self.worker_ttl >= 0.3, "must be at least 0.3s"),
            ("HOOKLINE_WORKER_LIVENESS_TTL", self.liveness_ttl >= 0.3, "must be at least 0.3s"),
            (
                "HOOKLINE_WORKER_SHUTDOWN_TIMEOUT",
                self.shutdown_timeout >= 0,
                "must not be negative",
            ),
            ("HOOKLINE_WORKER_KILL_GRACE", self.kill_grace >= 0, "must not be negative"),
        ]
        found = [(env, problem) for env, ok, problem in limits if not ok]
        if self.run_as and (problem := run_as_problem(self.run_as)) is not None:
            found.append(("HOOKLINE_WORKER_RUN_AS", problem))
        names = [("HOOKLINE_WORKER_QUEUES", "queue", q) for q in self.queues]
        if self.name:
            names.append(("HOOKLINE_WORKER_NAME", "worker name", self.name))
        for env, what, value in names:
            try:
                check_name(what, value)
            except ValueError as exc:
                found.append((env, str(exc)))
        return found

    @property
    def worker_name(self) -> str:
        return self.name or f"{socket.gethostname()}-{os.getpid()}"


def run_as_problem(user: str) -> str | None:
    """Why commands cannot be switched to ``user``, or None."""
    try:
        RunAs.named(user)
    except KeyError:
        return f"no such user {user!r}"
    if os.geteuid() != 0:
        return "switching commands to another user needs the worker to run as root"
    return None


def load(env: Mapping[str, str], **flags: Any) -> WorkerSettings:
    return load_settings(WorkerSettings, env, **flags)
