"""Ingress settings, from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from hookline.config import BaseSettings, load_settings
from hookline.durations import Duration
from hookline.errors import ConfigError


class IngressSettings(BaseSettings, frozen=True, kw_only=True):
    host: str = "0.0.0.0"
    port: int = 5001
    secrets: list[str] = []
    status_url: str = "http://127.0.0.1:5002"
    max_body: int = 25 * 1024 * 1024
    dedupe_ttl: Duration = Duration(7 * 86400)
    redis_timeout: Duration = Duration(2.0)

    ENV: ClassVar[dict[str, str]] = {
        "host": "HOOKLINE_INGRESS_HOST",
        "port": "HOOKLINE_INGRESS_PORT",
        "secrets": "GITHUB_WEBHOOK_SECRET",
        "status_url": "HOOKLINE_STATUS_URL",
        "max_body": "HOOKLINE_INGRESS_MAX_BODY",
        "dedupe_ttl": "HOOKLINE_INGRESS_DEDUPE_TTL",
        "redis_timeout": "HOOKLINE_INGRESS_REDIS_TIMEOUT",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.secrets:
            raise ConfigError(
                "GITHUB_WEBHOOK_SECRET",
                "is not set: every webhook must be signed (several secrets may be "
                "comma-separated for rotation)",
            )
        if not 0 < self.port < 65536:
            raise ConfigError("HOOKLINE_INGRESS_PORT", f"{self.port} is not a TCP port")
        if self.max_body <= 0:
            raise ConfigError("HOOKLINE_INGRESS_MAX_BODY", "must be a positive byte count")
        if not self.status_url.startswith(("http://", "https://")):
            raise ConfigError("HOOKLINE_STATUS_URL", "must be an absolute http(s) URL")


def load(env: Mapping[str, str]) -> IngressSettings:
    return load_settings(IngressSettings, env)
