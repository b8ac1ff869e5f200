"""Which Redis an operator command reads, and why: ``REDIS_URL``, else the one a running
``hookline up`` recorded in ``.hookline/redis.url``, else the default.

``up`` writes the file atomically (mode 0600: it may hold a password) and keeps an
exclusive ``flock`` on it while it runs; it removes the file on a clean stop. A file
nobody holds a lock on was left by an ``up`` that is gone (killed): it is stale and
never used, so a command never silently reads a Redis that no longer serves this system.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hookline.config import BaseSettings
from hookline.redact import redact_url

URL_FILE = "redis.url"
DEFAULT_URL = BaseSettings().redis_url


@dataclass(frozen=True)
class RedisTarget:
    url: str
    source: str

    def __str__(self) -> str:
        """What a person may see: the URL without its password, and where it came from."""
        return f"{redact_url(self.url)} (from {self.source})"


def resolve(env: Mapping[str, str], home: Path) -> RedisTarget:
    """``REDIS_URL`` wins; else a live ``up``'s record; else the default URL."""
    if env.get("REDIS_URL"):
        return RedisTarget(env["REDIS_URL"], "REDIS_URL")
    path = home / URL_FILE
    if not path.exists():
        return RedisTarget(DEFAULT_URL, "the default: REDIS_URL not set, no hookline up here")
    recorded = live_record(path)
    if recorded is None:
        stale = f"{path} is stale (its hookline up is gone)"
        return RedisTarget(DEFAULT_URL, f"the default: REDIS_URL not set, {stale}")
    return RedisTarget(recorded, str(path))


def live_record(path: Path) -> str | None:
    """The URL in ``path`` while the ``up`` that wrote it holds its lock, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: the up that wrote it is running
            with os.fdopen(os.dup(fd)) as handle:
                return handle.read().strip() or None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class UrlRecord:
    """The record ``up`` holds for its whole life (the lock dies with the process)."""

    def __init__(self, home: Path) -> None:
        self.path = home / URL_FILE
        self.fd: int | None = None

    def write(self, url: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{URL_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, f"{url}\n".encode())
            os.fsync(fd)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self.fd = fd

    def remove(self) -> None:
        """Remove the file if it is still ours (another ``up`` may have replaced it)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                self.path.unlink()
        os.close(self.fd)
        self.fd = None
