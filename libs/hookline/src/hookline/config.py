"""Settings from the environment: one loader, one frozen Struct per service.

Only :func:`load_settings` reads a mapping of environment variables; services call it
with ``os.environ`` and tests with a dict. A bad value raises :class:`ConfigError`
naming the variable, which ``main`` turns into one line and exit status 2.

A secret (:data:`SECRET_VARIABLES`) may instead be given as a file, ``<VAR>_FILE``, the
way Docker secrets and systemd credentials are: the loader reads it once, and the
service then drops every secret variable from its environment (``hookline.private``).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import msgspec

from hookline.durations import Duration, parse_duration
from hookline.errors import ConfigError
from hookline.keys import DEFAULT_PREFIX, check_name
from hookline.redis_client import redis_url_problem

T = TypeVar("T", bound="BaseSettings")

_PATH = re.compile(r"\$\.([A-Za-z_][A-Za-z0-9_]*)")

# Every variable that holds a secret, whichever service reads it: each may be given as
# a file instead (``REDIS_URL_FILE``: the whole URL, password included), and none is
# ever passed on to a child process.
SECRET_VARIABLES = (
    "REDIS_URL",
    "GITHUB_WEBHOOK_SECRET",
    "HOOKLINE_ADMIN_TOKEN",
    "HOOKLINE_READ_TOKEN",
)
FILE_SUFFIX = "_FILE"
# A secret file is a token or a URL, never more (guards against naming a big file).
MAX_SECRET_FILE = 64 * 1024


class BaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Settings every service shares. ``ENV`` maps each field to its variable."""

    redis_url: str = "redis://localhost:6379/0"
    prefix: str = DEFAULT_PREFIX
    log_level: str = "info"
    log_format: str = "auto"
    # Run on a Redis without persistence or with an evicting policy (tests, throwaway
    # setups): logged loudly and shown in /health. See hookline.redis_safety.
    allow_unsafe_redis: bool = False

    ENV: ClassVar[dict[str, str]] = {
        "redis_url": "REDIS_URL",
        "prefix": "HOOKLINE_PREFIX",
        "log_level": "HOOKLINE_LOG_LEVEL",
        "log_format": "HOOKLINE_LOG_FORMAT",
        "allow_unsafe_redis": "HOOKLINE_ALLOW_UNSAFE_REDIS",
    }

    def __post_init__(self) -> None:
        try:
            check_name("key prefix", self.prefix)
        except ValueError as exc:
            raise ConfigError("HOOKLINE_PREFIX", str(exc)) from None
        problem = redis_url_problem(self.redis_url)
        if problem is not None:
            raise ConfigError("REDIS_URL", problem)
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise ConfigError("HOOKLINE_LOG_LEVEL", "must be debug, info, warning or error")
        if self.log_format not in {"auto", "json", "console"}:
            raise ConfigError("HOOKLINE_LOG_FORMAT", "must be auto, json or console")


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Duration:
        return parse_duration(value)
    raise NotImplementedError(f"no decoder for {kind!r}")


def _is_sequence(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (list, tuple)


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Every field of ``cls`` with its environment variable (inherited ones included)."""
    names: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        names.update(getattr(klass, "ENV", {}))
    return names


def secret_value(env: Mapping[str, str], var: str) -> str | None:
    """``var`` from ``env``, or the content of the file ``<var>_FILE`` names (trailing
    newlines dropped); None when neither is set. Both at once is a ConfigError."""
    value = env.get(var) or None
    path = env.get(var + FILE_SUFFIX) or None
    if path is None:
        return value
    if value is not None:
        raise ConfigError(var + FILE_SUFFIX, f"is set together with {var}: set only one of them")
    return read_secret_file(var + FILE_SUFFIX, path)


def read_secret_file(setting: str, path: str) -> str:
    """The secret in ``path``: UTF-8 text, trailing newlines dropped, not empty."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_SECRET_FILE:
        raise ConfigError(setting, f"{path} is larger than {MAX_SECRET_FILE} bytes")
    try:
        text = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(setting, f"{path} is not UTF-8 text") from None
    if not text:
        raise ConfigError(setting, f"{path} is empty")
    return text


def load_settings(cls: type[T], env: Mapping[str, str], **overrides: Any) -> T:
    """Build ``cls`` from environment variables, then apply explicit ``overrides``
    (command-line flags). Empty variables count as unset; a secret may be read from
    the file its ``<VAR>_FILE`` names."""
    names = env_names(cls)
    hints = typing.get_type_hints(cls)
    raw: dict[str, Any] = {}
    for field, var in names.items():
        value = secret_value(env, var) if var in SECRET_VARIABLES else env.get(var)
        if value is None or value == "":
            continue
        if _is_sequence(hints.get(field)):
            raw[field] = [part.strip() for part in value.split(",") if part.strip()]
        else:
            raw[field] = value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, cls, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        message = str(exc)
        found = _PATH.search(message)
        field = found.group(1) if found else ""
        setting = names.get(field, field or cls.__name__)
        problem = message.split(" - at ")[0]
        got = "a secret, not shown" if setting in SECRET_VARIABLES else repr(raw.get(field))
        raise ConfigError(setting, f"{problem} (got {got})") from None
