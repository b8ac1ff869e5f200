"""Dispatcher settings, from the environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import ClassVar

from hookline.config import BaseSettings, load_settings
from hookline.durations import Duration
from hookline.errors import ConfigError


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class DispatcherSettings(BaseSettings, frozen=True, kw_only=True):
    host: str = "0.0.0.0"
    port: int = 9102
    config_path: str | None = None
    name: str = ""
    claim_idle: Duration = Duration(30)
    marker_ttl: Duration = Duration(86400)

    ENV: ClassVar[dict[str, str]] = {
        "host": "HOOKLINE_DISPATCHER_HOST",
        "port": "HOOKLINE_DISPATCHER_PORT",
        "config_path": "HOOKLINE_CONFIG",
        "name": "HOOKLINE_DISPATCHER_NAME",
        "claim_idle": "HOOKLINE_DISPATCHER_CLAIM_IDLE",
        "marker_ttl": "HOOKLINE_DISPATCHER_MARKER_TTL",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.port < 65536:
            raise ConfigError("HOOKLINE_DISPATCHER_PORT", f"{self.port} is not a TCP port")

    @property
    def consumer_name(self) -> str:
        return self.name or default_name()


def load(env: Mapping[str, str]) -> DispatcherSettings:
    return load_settings(DispatcherSettings, env)
