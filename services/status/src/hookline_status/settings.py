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

    ENV: ClassVar[dict[str, str]] = {
        "host": "HOOKLINE_STATUS_HOST",
        "port": "HOOKLINE_STATUS_PORT",
        "name": "HOOKLINE_STATUS_NAME",
        "worker_ttl": "HOOKLINE_WORKER_TTL",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.port < 65536:
            raise ConfigError("HOOKLINE_STATUS_PORT", f"{self.port} is not a TCP port")

    @property
    def consumer_name(self) -> str:
        return self.name or f"{socket.gethostname()}-{os.getpid()}"


def load(env: Mapping[str, str]) -> StatusSettings:
    return load_settings(StatusSettings, env)
