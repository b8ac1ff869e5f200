"""Which Redis (and key prefix) a command or service run by hand reads, and why:
``REDIS_URL``, else what the ``hookline up`` running in this folder recorded in
``.hookline/up.json``, else the default.

``up`` claims the record before it starts anything: it creates the file (mode 0600: it
may hold a password) and keeps an exclusive ``flock`` on it for its whole life, so a
second ``up`` in the same folder is refused instead of sharing its Redis data. It writes
what it runs once Redis is up and removes the file on a clean stop. A file nobody holds
a lock on was left by an ``up`` that is gone (killed): it is stale and never used.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from hookline.config import FILE_SUFFIX, BaseSettings, secret_value
from hookline.errors import ConfigError
from hookline.redact import redact_url

# Where `hookline up` keeps its state (embedded Redis data, secret, spool, its record).
HOME = Path(".hookline")
RECORD_FILE = "up.json"
DEFAULTS = BaseSettings()


class UpRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What a running ``up`` tells the commands beside it."""

    redis_url: str
    prefix: str
    pid: int


@dataclass(frozen=True)
class RedisTarget:
    url: str
    source: str
    prefix: str | None = None  # set when it comes from the record

    def __str__(self) -> str:
        """What a person may see: the URL without its password, and where it came from."""
        prefix = f" prefix {self.prefix}" if self.prefix and self.prefix != DEFAULTS.prefix else ""
        return f"{redact_url(self.url)}{prefix} (from {self.source})"

    def apply(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with this Redis in it (and the record's prefix, unless one is set)."""
        out = {**env, "REDIS_URL": self.url}
        out.pop("REDIS_URL" + FILE_SUFFIX, None)  # read already: the URL is in REDIS_URL
        if self.prefix and not env.get("HOOKLINE_PREFIX"):
            out["HOOKLINE_PREFIX"] = self.prefix
        return out


def resolve(env: Mapping[str, str], home: Path) -> RedisTarget:
    """``REDIS_URL`` (or the file ``REDIS_URL_FILE`` names) wins; else a live ``up``'s
    record; else the default URL."""
    if url := secret_value(env, "REDIS_URL"):
        source = "REDIS_URL_FILE" if env.get("REDIS_URL" + FILE_SUFFIX) else "REDIS_URL"
        return RedisTarget(url, source)
    path = home / RECORD_FILE
    if not path.exists():
        no_up = "the default: REDIS_URL not set, no hookline up here"
        return RedisTarget(DEFAULTS.redis_url, no_up)
    record = live_record(path)
    if record is None:
        stale = f"{path} is stale (its hookline up is gone)"
        return RedisTarget(DEFAULTS.redis_url, f"the default: REDIS_URL not set, {stale}")
    return RedisTarget(record.redis_url, str(path), record.prefix)


def live_record(path: Path) -> UpRecord | None:
    """The record in ``path`` while the ``up`` that wrote it holds its lock, else None.
    A record that is not private to its owner, or not readable, is refused by name."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a symlink (O_NOFOLLOW), a folder, no permission
        raise ConfigError(str(path), f"cannot be read as up's record: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077 or info.st_uid != os.getuid():
            raise ConfigError(
                str(path), "must be a regular file of yours with mode 0600 (it may hold a password)"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: the up that wrote it is running
            return _decode(path, os.pread(fd, 1 << 16, 0))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _decode(path: Path, data: bytes) -> UpRecord:
    if not data.strip():
        raise ConfigError(str(path), "the hookline up in this folder is still starting; try again")
    try:
        return msgspec.json.decode(data, type=UpRecord)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(str(path), f"not a record hookline up wrote: {exc}") from None


class UpClaim:
    """The record ``up`` holds for its whole life (the lock dies with the process)."""

    def __init__(self, home: Path) -> None:
        self.path = home / RECORD_FILE
        self.fd: int | None = None

    def claim(self) -> None:
        """Take this folder for this ``up``; ConfigError when another one runs here."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 1 << 16, 0)
            os.close(fd)
            try:
                pid = f" (pid {msgspec.json.decode(other, type=UpRecord).pid})"
            except (msgspec.DecodeError, msgspec.ValidationError):
                pid = ""
            raise ConfigError(
                str(self.path),
                f"another hookline up{pid} is running in this folder; stop it first, or run "
                "this one from another folder",
            ) from None
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        self.fd = fd

    def write(self, redis_url: str, prefix: str) -> None:
        assert self.fd is not None, "claim() first"
        data = msgspec.json.encode(UpRecord(redis_url=redis_url, prefix=prefix, pid=os.getpid()))
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data + b"\n", 0)
        os.fsync(self.fd)

    def remove(self) -> None:
        """Remove the file (it is ours: nobody else can hold this folder meanwhile)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                self.path.unlink()
        os.close(self.fd)
        self.fd = None
