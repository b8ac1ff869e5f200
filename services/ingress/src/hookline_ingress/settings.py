"""Ingress settings, from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from hookline.config import BaseSettings, load_settings
from hookline.durations import Duration
from hookline.errors import ConfigError

# GitHub gives up on a delivery after 10 s: whatever Redis does, ingress must answer
# well before that, spool included.
GITHUB_TIMEOUT = 10.0
# A body is held in memory and in one spool frame: 1 GiB is far past GitHub's 25 MB.
MAX_BODY_CAP = 1 << 30
# GitHub asks for a random string with high entropy; anything shorter than this is a
# password someone typed, guessable offline from one signed delivery.
MIN_SECRET = 16
_REPLICA = re.compile(r"[A-Za-z0-9._-]{1,128}")


class IngressSettings(BaseSettings, frozen=True, kw_only=True):
    host: str = "0.0.0.0"
    port: int = 5001
    secrets: list[str] = []
    insecure: bool = False
    events: list[str] = []
    status_url: str = "http://127.0.0.1:5002"
    max_body: int = 25 * 1024 * 1024
    max_bytes_in_flight: int = 128 * 1024 * 1024
    dedupe_ttl: Duration = Duration(7 * 86400)
    redis_timeout: Duration = Duration(2.0)
    body_timeout: Duration = Duration(30.0)
    header_timeout: Duration = Duration(10.0)
    max_connections: int = 512
    spool_dir: str = ".hookline/spool"
    replica: str = ""
    spool_adopt_interval: Duration = Duration(30.0)

    ENV: ClassVar[dict[str, str]] = {
        "host": "HOOKLINE_INGRESS_HOST",
        "port": "HOOKLINE_INGRESS_PORT",
        "secrets": "GITHUB_WEBHOOK_SECRET",
        "insecure": "HOOKLINE_INGRESS_INSECURE",
        "events": "HOOKLINE_INGRESS_EVENTS",
        "status_url": "HOOKLINE_STATUS_URL",
        "max_body": "HOOKLINE_INGRESS_MAX_BODY",
        "max_bytes_in_flight": "HOOKLINE_INGRESS_MAX_BYTES_IN_FLIGHT",
        "dedupe_ttl": "HOOKLINE_INGRESS_DEDUPE_TTL",
        "redis_timeout": "HOOKLINE_INGRESS_REDIS_TIMEOUT",
        "body_timeout": "HOOKLINE_INGRESS_BODY_TIMEOUT",
        "header_timeout": "HOOKLINE_INGRESS_HEADER_TIMEOUT",
        "max_connections": "HOOKLINE_INGRESS_MAX_CONNECTIONS",
        "spool_dir": "HOOKLINE_INGRESS_SPOOL_DIR",
        "replica": "HOOKLINE_INGRESS_REPLICA",
        "spool_adopt_interval": "HOOKLINE_INGRESS_SPOOL_ADOPT_INTERVAL",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_signing(self)
        _check_http(self)
        _check_timeouts(self)
        _check_spool(self)


def _check_signing(s: IngressSettings) -> None:
    if not s.secrets and not s.insecure:
        raise ConfigError(
            "GITHUB_WEBHOOK_SECRET",
            "is not set: every webhook must be signed (several secrets may be "
            "comma-separated for rotation; HOOKLINE_INGRESS_INSECURE=1 accepts "
            "unsigned webhooks, for local experiments only)",
        )
    for n, secret in enumerate(s.secrets, start=1):
        if len(secret) < MIN_SECRET:
            raise ConfigError(
                "GITHUB_WEBHOOK_SECRET",
                f"secret {n} of {len(s.secrets)} has {len(secret)} characters: each "
                f"comma-separated secret needs at least {MIN_SECRET} characters (use a "
                "random one, e.g. `python3 -c 'import secrets; print(secrets.token_hex(32))'`)",
            )
    if s.secrets and s.insecure:
        raise ConfigError(
            "HOOKLINE_INGRESS_INSECURE",
            "is set together with GITHUB_WEBHOOK_SECRET: unset one of them",
        )


def _check_http(s: IngressSettings) -> None:
    if not 0 < s.port < 65536:
        raise ConfigError("HOOKLINE_INGRESS_PORT", f"{s.port} is not a TCP port")
    if not 0 < s.max_body <= MAX_BODY_CAP:
        raise ConfigError(
            "HOOKLINE_INGRESS_MAX_BODY",
            f"must be a byte count from 1 to {MAX_BODY_CAP} (GitHub sends at most 25 MB)",
        )
    if s.max_bytes_in_flight < s.max_body:
        raise ConfigError(
            "HOOKLINE_INGRESS_MAX_BYTES_IN_FLIGHT",
            f"must be at least HOOKLINE_INGRESS_MAX_BODY ({s.max_body} bytes): the budget "
            "of request bytes held across all connections must fit one whole body",
        )
    if not s.status_url.startswith(("http://", "https://")):
        raise ConfigError("HOOKLINE_STATUS_URL", "must be an absolute http(s) URL")
    for event in s.events:
        if not event.replace("_", "").isalnum() or not event.islower():
            raise ConfigError(
                "HOOKLINE_INGRESS_EVENTS",
                f"{event!r} is not a GitHub event name (e.g. push,pull_request)",
            )


def _check_timeouts(s: IngressSettings) -> None:
    if s.dedupe_ttl < 1:
        raise ConfigError("HOOKLINE_INGRESS_DEDUPE_TTL", "must be at least 1s")
    if not 0 < s.redis_timeout <= GITHUB_TIMEOUT / 2:
        raise ConfigError(
            "HOOKLINE_INGRESS_REDIS_TIMEOUT",
            f"must be above 0 and at most {GITHUB_TIMEOUT / 2:g}s, so that a webhook "
            "is spooled well before GitHub gives up after 10s",
        )
    if s.body_timeout <= 0:
        raise ConfigError("HOOKLINE_INGRESS_BODY_TIMEOUT", "must be above 0")
    if s.header_timeout <= 0:
        raise ConfigError("HOOKLINE_INGRESS_HEADER_TIMEOUT", "must be above 0")
    if s.max_connections < 1:
        raise ConfigError("HOOKLINE_INGRESS_MAX_CONNECTIONS", "must be at least 1")


def _check_spool(s: IngressSettings) -> None:
    if not s.spool_dir.strip():
        raise ConfigError("HOOKLINE_INGRESS_SPOOL_DIR", "must name a directory")
    if s.replica and (not _REPLICA.fullmatch(s.replica) or s.replica.strip(".") == ""):
        raise ConfigError(
            "HOOKLINE_INGRESS_REPLICA",
            f"{s.replica!r} is not a directory name (letters, digits, '.', '_', '-')",
        )
    if s.spool_adopt_interval <= 0:
        raise ConfigError("HOOKLINE_INGRESS_SPOOL_ADOPT_INTERVAL", "must be above 0")


def load(env: Mapping[str, str]) -> IngressSettings:
    return load_settings(IngressSettings, env)
