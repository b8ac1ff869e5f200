"""Status service settings, from the environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import ClassVar

from hookline.config import BaseSettings, load_settings
from hookline.durations import Duration
from hookline.errors import ConfigError


class StatusSettings(BaseSettings, frozen=True, kw_only=True):
    host: str = "0.0.0.0"
    port: int = 5002
    name: str = ""
    worker_ttl: Duration = Duration(30)
    # Bearer token the admin endpoints (POST) require; empty: every POST is refused.
    admin_token: str = ""
    # Bearer token the read endpoints require; empty: reads are open.
    read_token: str = ""
    # How long a POST waits for the dispatcher's answer before replying 202 pending.
    command_timeout: Duration = Duration(2)
    # Stream entries older than this are trimmed (never before every group read them).
    retention: Duration = Duration(7 * 86400)
    trim_every: Duration = Duration(60)
    sweep_every: Duration = Duration(5)
    # The one replica holding this lease in Redis exports the system metrics read from
    # Redis (so sum() over replicas is the truth); it renews the lease this often, and
    # another replica takes over within about ttl + renew after its holder dies.
    metrics_lease_ttl: Duration = Duration(5)
    metrics_lease_renew: Duration = Duration(1)

    ENV: ClassVar[dict[str, str]] = {
        "host": "HOOKLINE_STATUS_HOST",
        "port": "HOOKLINE_STATUS_PORT",
        "name": "HOOKLINE_STATUS_NAME",
        "worker_ttl": "HOOKLINE_WORKER_TTL",
        "admin_token": "HOOKLINE_ADMIN_TOKEN",
        "read_token": "HOOKLINE_READ_TOKEN",
        "command_timeout": "HOOKLINE_COMMAND_TIMEOUT",
        "retention": "HOOKLINE_RETENTION",
        "trim_every": "HOOKLINE_STATUS_TRIM_EVERY",
        "sweep_every": "HOOKLINE_STATUS_SWEEP_EVERY",
        "metrics_lease_ttl": "HOOKLINE_STATUS_METRICS_LEASE_TTL",
        "metrics_lease_renew": "HOOKLINE_STATUS_METRICS_LEASE_RENEW",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.port < 65536:
            raise ConfigError("HOOKLINE_STATUS_PORT", f"{self.port} is not a TCP port")
        if not 0 < self.command_timeout <= 60:
            raise ConfigError("HOOKLINE_COMMAND_TIMEOUT", "must be more than 0s and at most 60s")
        if self.retention < 60:
            raise ConfigError("HOOKLINE_RETENTION", "must be at least 1m")
        for name, value in (
            ("HOOKLINE_STATUS_TRIM_EVERY", self.trim_every),
            ("HOOKLINE_STATUS_SWEEP_EVERY", self.sweep_every),
        ):
            if value <= 0:
                raise ConfigError(name, "must be more than 0s")
        if self.metrics_lease_ttl < 0.01:
            raise ConfigError("HOOKLINE_STATUS_METRICS_LEASE_TTL", "must be at least 10ms")
        if not 0 < self.metrics_lease_renew <= self.metrics_lease_ttl / 2:
            raise ConfigError(
                "HOOKLINE_STATUS_METRICS_LEASE_RENEW",
                "must be more than 0s and at most half of HOOKLINE_STATUS_METRICS_LEASE_TTL",
            )
        for name, token in (
            ("HOOKLINE_ADMIN_TOKEN", self.admin_token),
            ("HOOKLINE_READ_TOKEN", self.read_token),
        ):
            if token and (
                len(token) < 16 or not token.isascii() or not token.isprintable() or " " in token
            ):
                raise ConfigError(name, "must be at least 16 printable ASCII characters, no spaces")

    @property
    def consumer_name(self) -> str:
        return self.name or f"{socket.gethostname()}-{os.getpid()}"


def load(env: Mapping[str, str]) -> StatusSettings:
    return load_settings(StatusSettings, env)
