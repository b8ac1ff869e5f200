"""Dispatcher settings, from the environment (and ``hookline.toml`` for routes)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from hookline.config import BaseSettings, load_settings
from hookline.durations import Duration
from hookline.errors import ConfigError
from msgspec.structs import replace

from hookline_dispatcher.config import DEFAULT_CONFIG, RoutingConfig
from hookline_dispatcher.configfile import load_config

DEFAULT_FILE = "hookline.toml"


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class DispatcherSettings(BaseSettings, frozen=True, kw_only=True):
    host: str = "0.0.0.0"
    port: int = 9102
    config_path: str | None = None
    name: str = ""
    claim_idle: Duration = Duration(30)
    marker_ttl: Duration = Duration(86400)
    tick: Duration = Duration(0.25)
    # Read from ``config_path`` by :func:`load`, not from a variable.
    routing: RoutingConfig = DEFAULT_CONFIG

    ENV: ClassVar[dict[str, str]] = {
        "host": "HOOKLINE_DISPATCHER_HOST",
        "port": "HOOKLINE_DISPATCHER_PORT",
        "config_path": "HOOKLINE_CONFIG",
        "name": "HOOKLINE_DISPATCHER_NAME",
        "claim_idle": "HOOKLINE_DISPATCHER_CLAIM_IDLE",
        "marker_ttl": "HOOKLINE_DISPATCHER_MARKER_TTL",
        "tick": "HOOKLINE_DISPATCHER_TICK",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.port < 65536:
            raise ConfigError("HOOKLINE_DISPATCHER_PORT", f"{self.port} is not a TCP port")
        if not 0 < self.tick <= 60:
            raise ConfigError("HOOKLINE_DISPATCHER_TICK", "must be between 1ms and 60s")

    @property
    def consumer_name(self) -> str:
        return self.name or default_name()


def config_file(configured: str | None) -> str | None:
    """``HOOKLINE_CONFIG``, else ``./hookline.toml`` if there is one, else None (the
    built-in default routes)."""
    if configured:
        return configured
    return DEFAULT_FILE if Path(DEFAULT_FILE).is_file() else None


def load(env: Mapping[str, str]) -> DispatcherSettings:
    """Settings from ``env``, with the routes of :func:`config_file` (a bad file raises a
    ConfigError naming its file, line and key)."""
    settings = load_settings(DispatcherSettings, env)
    path = config_file(settings.config_path)
    return replace(settings, config_path=path, routing=load_config(path))
