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
    max_deliveries: int = 3
    kill_grace: Duration = Duration(5)

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
        "max_deliveries": "HOOKLINE_WORKER_MAX_DELIVERIES",
        "kill_grace": "HOOKLINE_WORKER_KILL_GRACE",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.port < 65536:
            raise ConfigError("HOOKLINE_WORKER_PORT", f"{self.port} is not a TCP port")
        if not self.queues:
            raise ConfigError("HOOKLINE_WORKER_QUEUES", "name at least one queue")
        for queue in self.queues:
            try:
                check_name("queue", queue)
            except ValueError as exc:
                raise ConfigError("HOOKLINE_WORKER_QUEUES", str(exc)) from None
        if self.concurrency < 1:
            raise ConfigError("HOOKLINE_WORKER_CONCURRENCY", "must be at least 1")
        if self.batch < 1:
            raise ConfigError("HOOKLINE_WORKER_BATCH", "must be at least 1")
        if self.max_deliveries < 1:
            raise ConfigError("HOOKLINE_WORKER_MAX_DELIVERIES", "must be at least 1")
        if self.lease_timeout < 0.3:
            raise ConfigError("HOOKLINE_WORKER_LEASE_TIMEOUT", "must be at least 0.3s")
        if self.worker_ttl < 0.3:
            raise ConfigError("HOOKLINE_WORKER_TTL", "must be at least 0.3s")
        if self.shutdown_timeout < 0:
            raise ConfigError("HOOKLINE_WORKER_SHUTDOWN_TIMEOUT", "must not be negative")
        if self.kill_grace < 0:
            raise ConfigError("HOOKLINE_WORKER_KILL_GRACE", "must not be negative")
        if self.name:
            try:
                check_name("worker name", self.name)
            except ValueError as exc:
                raise ConfigError("HOOKLINE_WORKER_NAME", str(exc)) from None

    @property
    def worker_name(self) -> str:
        return self.name or f"{socket.gethostname()}-{os.getpid()}"


def load(env: Mapping[str, str], **flags: Any) -> WorkerSettings:
    return load_settings(WorkerSettings, env, **flags)
